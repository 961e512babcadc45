/*
 * wheel.c - the hierarchical timer wheel (see wheel.h for the interface).
 *
 * Owns: the slot lists, their counts and the occupancy bitmaps of a
 * pn__wheel, and the next/prev/level/slot fields of every entry filed in
 * it.  It reads e->deadline and touches nothing else of an entry (no
 * wakers, no state).
 *
 * Time is counted in ticks of PN_TIMER_TICK_NS = 2^16 ns.  An entry with
 * deadline d is due at tick t = ceil(d / TICK) (at most 2^48, no overflow).
 *
 *   level  slot span (ticks)  slot span (time)   level range (time)
 *     0    1                  65.5 us            4.19 ms
 *     1    64                 4.19 ms            268 ms
 *     2    64^2               268 ms             17.2 s
 *     3    64^3               17.2 s             18.3 min
 *     4    64^4               18.3 min           19.5 h
 *     5    64^5               19.5 h             52 days
 *     6    64^6               52 days            9.1 years (a ring)
 *
 * Digit L of a tick is bits [6L, 6L+6).  Filing rule: with e = elapsed and
 * f = the filing tick of the entry (t, clamped to e + 2^42 - 2^36 so that a
 * deadline beyond the wheel's range lands in a level-6 slot that comes up
 * before it, where it is re-filed), the level is the highest digit in which
 * e and f differ; the slot is digit L of f.  An entry already due (t <= e) is
 * filed in level 0's current slot.
 *
 * Invariants, between calls:
 *  - Level 0, slot digit0(e) holds only entries that are due (t <= e).
 *  - For 0 < L < 6, an entry in level L agrees with e in every digit above
 *    L and its slot is > digit L of e; its slot "starts" (comes up) at the
 *    tick whose digits above L are e's, digit L is the slot, the rest zero.
 *  - Level 6 is a ring: a slot s starts at the first tick > e whose digit 6
 *    is s and whose lower digits are zero (so slot digit6(e) is the farthest).
 *  - Every entry's slot starts at a tick <= its due tick, so the earliest
 *    slot start is never later than the earliest due tick.  pn__wheel_next
 *    returns it, or, when that slot is short (<= PEEK_MAX entries, levels
 *    0-5), the earliest of its entries' deadline and the start of the next
 *    slot: no extra reactor wake-up to cascade a lone timer, nor a wait to
 *    the end of its tick.  The deadline is returned only when an advance to
 *    it fires that entry (fires_at_deadline); otherwise its due tick.
 *
 * Advance processes slots in order of start tick (ties: higher level first):
 * it sets elapsed to the slot's start, then pops its entries one at a time,
 * firing those due and re-filing the others (into lower levels, or a later
 * level-6 slot).  Popping from the live list (not a detached copy) keeps
 * fire() free to insert and remove any entry, including ones of the slot
 * being processed; entries it inserts that are due fire in the same advance.
 * Then (fire_early) the next tick's level-0 slot, if short, gives up the
 * entries whose deadline is <= now: the tick is not over, but they are due.
 */
#include "wheel.h"

#define BITS 6
#define MASK 63ull
#define TOP (PN__WHEEL_LEVELS - 1)
#define RANGE_BITS (BITS * PN__WHEEL_LEVELS)            /* 42 */
#define TOP_SPAN_BITS (BITS * TOP)                       /* 36 */
#define FAR_LIMIT ((1ull << RANGE_BITS) - (1ull << TOP_SPAN_BITS))

static uint64_t due_tick(uint64_t deadline)
{
    return (deadline >> PN_TIMER_TICK_SHIFT) +
           ((deadline & (PN_TIMER_TICK_NS - 1)) != 0);
}

static unsigned digit(uint64_t tick, unsigned level)
{
    return (unsigned)((tick >> (BITS * level)) & MASK);
}

static uint64_t rotr64(uint64_t x, unsigned n)
{
    n &= 63;
    return n ? (x >> n) | (x << (64 - n)) : x;
}

void pn__wheel_init(pn__wheel *w, pn_instant now)
{
    w->elapsed = now >> PN_TIMER_TICK_SHIFT;
    for (unsigned l = 0; l < PN__WHEEL_LEVELS; l++) {
        w->levels[l].occupied = 0;
        for (unsigned s = 0; s < PN__WHEEL_SLOTS; s++) {
            w->levels[l].slots[s] = NULL;
            w->levels[l].count[s] = 0;
        }
    }
}

static void link_at(pn__wheel *w, pn_timer_entry *e, unsigned level, unsigned slot)
{
    pn__wheel_level *lv = &w->levels[level];
    e->level = (uint8_t)level;
    e->slot = (uint8_t)slot;
    e->prev = NULL;
    e->next = lv->slots[slot];
    if (e->next)
        e->next->prev = e;
    lv->slots[slot] = e;
    lv->count[slot]++;
    lv->occupied |= 1ull << slot;
}

void pn__wheel_insert(pn__wheel *w, pn_timer_entry *e)
{
    uint64_t now = w->elapsed;
    uint64_t t = due_tick(e->deadline);
    if (t <= now) {
        link_at(w, e, 0, digit(now, 0));
        return;
    }
    uint64_t f = t - now > FAR_LIMIT ? now + FAR_LIMIT : t;
    uint64_t x = (now ^ f) | MASK;
    unsigned level = (unsigned)(63 - __builtin_clzll(x)) / BITS;
    if (level > TOP)
        level = TOP; /* f is in the next 2^42 window: the ring wraps */
    link_at(w, e, level, digit(f, level));
}

void pn__wheel_remove(pn__wheel *w, pn_timer_entry *e)
{
    pn__wheel_level *lv = &w->levels[e->level];
    if (e->prev)
        e->prev->next = e->next;
    else
        lv->slots[e->slot] = e->next;
    if (e->next)
        e->next->prev = e->prev;
    lv->count[e->slot]--;
    if (!lv->slots[e->slot])
        lv->occupied &= ~(1ull << e->slot);
    e->next = e->prev = NULL;
}

/* The first occupied slot of level l (occupancy occ, a subset of the
 * level's bitmap) and the tick at which it starts. */
static void level_first(const pn__wheel *w, unsigned l, uint64_t occ, unsigned *slot,
                        uint64_t *start)
{
    unsigned cur = digit(w->elapsed, l);
    unsigned s = (cur + (unsigned)__builtin_ctzll(rotr64(occ, cur))) & MASK;
    unsigned span_bits = BITS * l;
    uint64_t range = 1ull << (span_bits + BITS);
    uint64_t st = (w->elapsed & ~(range - 1)) + ((uint64_t)s << span_bits);
    if (s < cur)
        st += range; /* level 6 wrapping into the next window */
    *slot = s;
    *start = st;
}

/* The earliest slot start over all levels (ties: the highest level), or
 * false if the wheel is empty.  (skip_level, skip_slot) is left out. */
static bool next_slot_but(const pn__wheel *w, unsigned skip_level, unsigned skip_slot,
                          unsigned *level, unsigned *slot, uint64_t *start)
{
    bool found = false;
    uint64_t best = 0;
    for (int l = TOP; l >= 0; l--) {
        uint64_t occ = w->levels[l].occupied;
        if ((unsigned)l == skip_level)
            occ &= ~(1ull << skip_slot);
        if (!occ)
            continue;
        unsigned s;
        uint64_t st;
        level_first(w, (unsigned)l, occ, &s, &st);
        if (!found || st < best) {
            found = true;
            best = st;
            *level = (unsigned)l;
            *slot = s;
        }
    }
    *start = best;
    return found;
}

static bool next_slot(const pn__wheel *w, unsigned *level, unsigned *slot, uint64_t *start)
{
    return next_slot_but(w, PN__WHEEL_LEVELS, 0, level, slot, start);
}

/* A slot with at most this many entries is "short": pn__wheel_next walks
 * it for the exact earliest deadline, and an advance fires the entries of
 * the next tick's slot whose deadline has passed (0: never).  So a lone
 * timer wakes the reactor once, at its deadline: not at a cascade point,
 * nor at the end of its tick (up to 65.5 us later, 33 on average).  A
 * crowded slot is taken a whole tick at a time; its count says so without
 * a walk (walking its first entries at every turn cost a million sleeps
 * about 1% more CPU). */
#ifndef PN__WHEEL_PEEK_MAX
#define PN__WHEEL_PEEK_MAX 8
#endif
#define PEEK_MAX PN__WHEEL_PEEK_MAX

/* The list of slot s of lv if it is short and not empty (else NULL), and
 * its earliest deadline.  A crowded slot costs one look at its count. */
static pn_timer_entry *short_slot(const pn__wheel_level *lv, unsigned s, pn_instant *min)
{
    if (lv->count[s] > PEEK_MAX)
        return NULL;
    pn_instant m = UINT64_MAX;
    for (const pn_timer_entry *e = lv->slots[s]; e; e = e->next)
        if (e->deadline < m)
            m = e->deadline;
    *min = m;
    return lv->slots[s];
}

/* Whether an advance to d, the deadline of an entry filed in (level,
 * start), fires it.  A deadline on a tick boundary is due at that tick.
 * Otherwise d is in the tick before its due tick t: the advance takes
 * every slot that starts by then (the entry's, if it starts before t) and
 * then fires from the next tick's level-0 slot, where the entry is once
 * its slot was taken, unless t starts a level-1 span (its digit 0 is 0:
 * the entry then waits in a higher slot starting at t). */
static bool fires_at_deadline(unsigned level, uint64_t start, pn_instant d)
{
    uint64_t t = due_tick(d);
    if ((d & (PN_TIMER_TICK_NS - 1)) == 0)
        return true;
    return digit(t, 0) != 0 && (level == 0 || start < t);
}

pn_instant pn__wheel_next(const pn__wheel *w)
{
    unsigned l, s, l2, s2;
    uint64_t st, st2;
    if (!next_slot(w, &l, &s, &st))
        return UINT64_MAX;
    if (st > w->elapsed && l < TOP) {
        /* Every entry of the slot is due at or after its start; the other
         * slots start no earlier (level 0: later), and hold nothing due
         * before they start. */
        pn_instant m;
        if (short_slot(&w->levels[l], s, &m)) {
            uint64_t t = due_tick(m);       /* the slot's earliest due tick */
            if (l > 0 && next_slot_but(w, l, s, &l2, &s2, &st2) && st2 < t)
                st = st2;                   /* another slot comes up first */
            else if (fires_at_deadline(l, st, m))
                return m;
            else
                st = t;
        }
    }
    if (st >= (1ull << (64 - PN_TIMER_TICK_SHIFT)))
        return UINT64_MAX; /* tick 2^48: UINT64_MAX rounds up to it */
    return st << PN_TIMER_TICK_SHIFT;
}

static pn_instant list_min(const pn_timer_entry *e, pn_instant m)
{
    for (; e; e = e->next)
        if (e->deadline < m)
            m = e->deadline;
    return m;
}

pn_instant pn__wheel_min_deadline(const pn__wheel *w)
{
    pn_instant m = UINT64_MAX;
    for (unsigned l = 0; l < TOP; l++) {
        uint64_t occ = w->levels[l].occupied;
        if (!occ)
            continue;
        unsigned s;
        uint64_t st;
        level_first(w, l, occ, &s, &st);
        m = list_min(w->levels[l].slots[s], m);
    }
    for (uint64_t occ = w->levels[TOP].occupied; occ; occ &= occ - 1)
        m = list_min(w->levels[TOP].slots[__builtin_ctzll(occ)], m);
    return m;
}

/* After an advance to tick `target` at `now`: fire the entries of the next
 * tick's level-0 slot whose deadline is <= now, if that slot is short.
 * (When the next tick starts a level-1 span, its digit 0 is 0 and its
 * entries are still in a higher slot: nothing to do.)  The list is scanned
 * again after each fire, which may change it. */
static size_t fire_early(pn__wheel *w, pn_instant now,
                         void (*fire)(pn_timer_entry *e, void *arg), void *arg)
{
    unsigned s = digit(w->elapsed + 1, 0);
    size_t fired = 0;
    if (s == 0)
        return 0;
    for (;;) {
        pn_instant m;
        pn_timer_entry *e = short_slot(&w->levels[0], s, &m);
        if (!e || m > now)
            return fired;
        while (e->deadline != m)
            e = e->next;
        pn__wheel_remove(w, e);
        fired++;
        fire(e, arg);
    }
}

size_t pn__wheel_advance(pn__wheel *w, pn_instant now,
                         void (*fire)(pn_timer_entry *e, void *arg), void *arg)
{
    uint64_t target = now >> PN_TIMER_TICK_SHIFT;
    size_t fired = 0, early;
    unsigned l, s;
    uint64_t st;
    if (target < w->elapsed)
        return 0; /* time does not go backwards */
    do {
        while (next_slot(w, &l, &s, &st) && st <= target) {
            w->elapsed = st;
            pn_timer_entry *e;
            while ((e = w->levels[l].slots[s]) != NULL) {
                pn__wheel_remove(w, e);
                if (due_tick(e->deadline) <= st) {
                    fired++;
                    fire(e, arg);
                } else {
                    pn__wheel_insert(w, e);
                }
            }
        }
        w->elapsed = target;
        /* What those fires inserted already due fires in this advance too. */
        early = fire_early(w, now, fire, arg);
        fired += early;
    } while (early);
    return fired;
}

void pn__wheel_each(pn__wheel *w, void (*visit)(pn_timer_entry *e, void *arg), void *arg)
{
    for (unsigned l = 0; l < PN__WHEEL_LEVELS; l++) {
        uint64_t occ = w->levels[l].occupied;
        while (occ) {
            unsigned s = (unsigned)__builtin_ctzll(occ);
            occ &= occ - 1;
            pn_timer_entry *e = w->levels[l].slots[s];
            while (e) {
                pn_timer_entry *next = e->next;
                visit(e, arg);
                e = next;
            }
        }
    }
}
