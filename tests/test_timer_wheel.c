/*
 * test_timer_wheel.c - the hierarchical wheel against a reference model.
 *
 * Owns no library code.  The model is an array of entries with deadlines and
 * live/fired flags; after every advance to `now` the set the wheel fired must
 * hold every live entry with ceil(d / TICK) <= floor(now / TICK) (never
 * lost) and only entries with d <= now (never early: those of the next tick
 * may fire at their deadline), pn__wheel_next must never be later than the
 * earliest due instant of a live entry, and an advance to what
 * pn__wheel_next said makes progress (fires, or moves next later).  Random runs use a fixed-seed
 * xorshift generator; targeted tests cover every level's cascade, the
 * current slot, already-due entries, removal from every level, fire
 * callbacks that insert and cancel, far and huge deadlines.
 */
#include <criterion/criterion.h>
#include <string.h>
#include "timer/wheel.h"

#define CHECK(cond, ...)                   \
    do {                                   \
        if (!(cond))                       \
            cr_assert_fail(__VA_ARGS__);   \
    } while (0)

#define TICK PN_TIMER_TICK_NS

/* ---- helpers ----------------------------------------------------------- */

static uint64_t rng;

static uint64_t xr(void)
{
    uint64_t x = rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng = x;
}

static uint64_t below(uint64_t n) { return n ? xr() % n : 0; }

static uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }
static uint64_t sat_sub(uint64_t a, uint64_t b) { return a < b ? 0 : a - b; }

static uint64_t due_tick(uint64_t d) { return (d >> 16) + ((d & (TICK - 1)) != 0); }

/* The instant at which an advance fires d (saturating). */
static uint64_t due_instant(uint64_t d)
{
    uint64_t t = due_tick(d);
    return t >= (1ull << 48) ? UINT64_MAX : t << 16;
}

#define YEAR (365ull * 24 * 3600 * 1000000000ull)

/* A delay drawn from one of several scales. */
static uint64_t random_delay(void)
{
    switch (below(9)) {
    case 0: return below(TICK);                        /* sub-tick */
    case 1: return below(PN_MS(5));                    /* level 0-1 */
    case 2: return below(PN_SEC(2));                   /* ms..s */
    case 3: return below(PN_SEC(3600 * 5));            /* hours */
    case 4: return below(PN_SEC(3600 * 24 * 60));      /* days */
    case 5: return below(20 * YEAR);                   /* years, beyond range */
    case 6: return xr();                               /* huge */
    case 7: return below(64) * TICK;                   /* exact ticks */
    default: {                                          /* exact 64^L ticks */
        unsigned l = (unsigned)below(8);
        uint64_t v = 1ull << (6 * l);
        return (v << 16) + below(3) - 1;
    }
    }
}

/* ---- the model ----------------------------------------------------------- */

typedef struct ent {
    pn_timer_entry e;   /* first: the wheel hands back &ent->e */
    bool live;
    bool fired;
} ent;

typedef struct model {
    pn__wheel w;
    ent *ents;
    size_t n;
    uint64_t now;
    uint64_t target;    /* floor(now / TICK) of the advance in progress */
    size_t live;
    size_t fired;       /* fired during the advance in progress */
    int mutate;         /* fire callback inserts and cancels at random */
} model;

static void model_init(model *m, size_t n, uint64_t now)
{
    memset(m, 0, sizeof *m);
    m->ents = calloc(n, sizeof *m->ents);
    cr_assert_not_null(m->ents);
    m->n = n;
    m->now = now;
    pn__wheel_init(&m->w, now);
}

static void model_free(model *m) { free(m->ents); }

static void model_insert(model *m, ent *x, uint64_t deadline)
{
    x->e.deadline = deadline;
    x->live = true;
    x->fired = false;
    m->live++;
    pn__wheel_insert(&m->w, &x->e);
}

static void model_cancel(model *m, ent *x)
{
    pn__wheel_remove(&m->w, &x->e);
    x->live = false;
    m->live--;
}

static ent *random_free(model *m)
{
    size_t i = below(m->n);
    for (size_t k = 0; k < m->n; k++) {
        ent *x = &m->ents[(i + k) % m->n];
        if (!x->live)
            return x;
    }
    return NULL;
}

static ent *random_live(model *m)
{
    if (!m->live)
        return NULL;
    size_t i = below(m->n);
    for (size_t k = 0; k < m->n; k++) {
        ent *x = &m->ents[(i + k) % m->n];
        if (x->live)
            return x;
    }
    return NULL;
}

static uint64_t random_deadline(model *m)
{
    if (below(10) == 0) {
        /* absolute: past, huge, or at the very end of time */
        switch (below(4)) {
        case 0: return sat_sub(m->now, below(PN_SEC(10)));
        case 1: return UINT64_MAX - below(3 * TICK);
        case 2: return UINT64_MAX;
        default: return (1ull << 63) + below(1ull << 62);
        }
    }
    return sat_add(m->now, random_delay());
}

static void on_fire(pn_timer_entry *e, void *arg)
{
    model *m = arg;
    ent *x = (ent *)e;
    CHECK(x >= m->ents && x < m->ents + m->n, "fired an unknown entry");
    CHECK(x->live, "fired entry %zu which is not live (cancelled or fired twice)",
          (size_t)(x - m->ents));
    CHECK(e->deadline <= m->now,
          "fired early: deadline %llu (tick %llu) at %llu (tick %llu)",
          (unsigned long long)e->deadline, (unsigned long long)due_tick(e->deadline),
          (unsigned long long)m->now, (unsigned long long)m->target);
    x->live = false;
    x->fired = true;
    m->live--;
    m->fired++;
    if (m->mutate) {
        uint64_t r = below(8);
        if (r < 2) {
            ent *y = random_free(m);
            if (y)
                model_insert(m, y, random_deadline(m));
        } else if (r == 2) {
            ent *y = random_live(m);
            if (y)
                model_cancel(m, y);
        }
    }
}

/* Each slot's count is the length of its list. */
static void check_counts(const pn__wheel *w)
{
    for (unsigned l = 0; l < PN__WHEEL_LEVELS; l++)
        for (unsigned s = 0; s < PN__WHEEL_SLOTS; s++) {
            uint32_t n = 0;
            for (const pn_timer_entry *e = w->levels[l].slots[s]; e; e = e->next)
                n++;
            CHECK(w->levels[l].count[s] == n, "level %u slot %u: count %u, list %u", l, s,
                  w->levels[l].count[s], n);
        }
}

static void model_check_next(model *m)
{
    check_counts(&m->w);
    uint64_t min = UINT64_MAX;
    ent *first = NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->ents[i].live) {
            uint64_t d = due_instant(m->ents[i].e.deadline);
            if (d < min) {
                min = d;
                first = &m->ents[i];
            }
        }
    /* An entry already overdue is reported as due now (not in the past). */
    if (min < m->now)
        min = m->now;
    uint64_t next = pn__wheel_next(&m->w);
    if (m->live == 0)
        CHECK(next == UINT64_MAX, "empty wheel: next %llu", (unsigned long long)next);
    CHECK(next <= min, "next %llu later than earliest due %llu (tick %llu, level %u slot %u, "
          "elapsed %llu)", (unsigned long long)next, (unsigned long long)min,
          (unsigned long long)(min >> 16), first ? first->e.level : 0u,
          first ? first->e.slot : 0u, (unsigned long long)m->w.elapsed);
}

static void model_advance(model *m, uint64_t now)
{
    if (now < m->now)
        now = m->now;
    m->now = now;
    m->target = now >> 16;
    m->fired = 0;
    size_t n = pn__wheel_advance(&m->w, now, on_fire, m);
    CHECK(n == m->fired, "advance returned %zu, fired %zu", n, m->fired);
    for (size_t i = 0; i < m->n; i++) {
        ent *x = &m->ents[i];
        if (x->live)
            CHECK(due_tick(x->e.deadline) > m->target,
                  "lost: entry %zu deadline %llu (tick %llu) still live at tick %llu",
                  i, (unsigned long long)x->e.deadline,
                  (unsigned long long)due_tick(x->e.deadline),
                  (unsigned long long)m->target);
    }
    model_check_next(m);
}

static uint64_t random_step(void)
{
    switch (below(8)) {
    case 0: return 0;
    case 1: return below(TICK);
    case 2: return below(PN_MS(10));
    case 3: return below(PN_SEC(1));
    case 4: return below(PN_SEC(3600));
    case 5: return below(PN_SEC(3600 * 24 * 30));
    case 6: return below(3 * YEAR);
    default: return below(4) * TICK;
    }
}

static void run_model(uint64_t seed, uint64_t start, size_t n, int ops, int mutate)
{
    model m;
    rng = seed;
    model_init(&m, n, start);
    m.mutate = mutate;
    for (int op = 0; op < ops; op++) {
        uint64_t r = below(10);
        if (r < 5) {
            ent *x = random_free(&m);
            if (x)
                model_insert(&m, x, random_deadline(&m));
            model_check_next(&m);
        } else if (r < 7) {
            ent *x = random_live(&m);
            if (x)
                model_cancel(&m, x);
            model_check_next(&m);
        } else if (r < 9) {
            model_advance(&m, sat_add(m.now, random_step()));
        } else {
            /* Where the reactor would wake: something happens there. */
            uint64_t next = pn__wheel_next(&m.w);
            if (next != UINT64_MAX && next > m.now) {
                m.mutate = 0;
                model_advance(&m, next);
                m.mutate = mutate;
                CHECK(m.fired > 0 || pn__wheel_next(&m.w) > next,
                      "advance to next %llu fired nothing and next did not move",
                      (unsigned long long)next);
            }
        }
    }
    /* Drain: advance to the end of time; only deadlines in the last tick
     * (due at tick 2^48, past UINT64_MAX) may remain. */
    m.mutate = 0;
    model_advance(&m, UINT64_MAX);
    for (size_t i = 0; i < m.n; i++)
        if (m.ents[i].live)
            CHECK(due_tick(m.ents[i].e.deadline) == (1ull << 48), "left after drain");
    model_free(&m);
}

static const uint64_t seeds[] = {
    0x9e3779b97f4a7c15ull, 1, 0xdeadbeefcafef00dull, 42, 0x123456789abcdefull,
    7777777, 0xfeedfacefeedfaceull, 31337,
};

/* Starting points: zero, a realistic uptime, just before a level-6 window
 * boundary (2^42 ticks), and far in the future. */
static uint64_t start_at(size_t i)
{
    switch (i % 5) {
    case 0: return 0;
    case 1: return PN_SEC(12345) + 6789;
    case 2: return ((1ull << 42) - 3) << 16;
    case 3: return (((1ull << 42) - 1) << 16) + TICK - 1;
    default: return 1ull << 61;
    }
}

Test(timer_wheel, model_random, .timeout = 20)
{
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++)
        run_model(seeds[i], start_at(i), 256, 20000, 0);
}

Test(timer_wheel, model_random_boundaries, .timeout = 20)
{
    for (size_t i = 0; i < 5; i++)
        run_model(seeds[i] ^ 0x5555, start_at(i), 64, 6000, 0);
}

Test(timer_wheel, model_random_mutating_callbacks, .timeout = 20)
{
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++)
        run_model(seeds[i] * 3 + 1, start_at(i + 2), 256, 20000, 1);
}

/* ---- targeted tests ---------------------------------------------------- */

static size_t count_fire;
static void count_cb(pn_timer_entry *e, void *arg)
{
    (void)e;
    (void)arg;
    count_fire++;
}

Test(timer_wheel, empty_next_is_max, .timeout = 20)
{
    pn__wheel w;
    pn__wheel_init(&w, PN_SEC(5));
    cr_assert_eq(pn__wheel_next(&w), UINT64_MAX);
    count_fire = 0;
    cr_assert_eq(pn__wheel_advance(&w, PN_SEC(100), count_cb, NULL), 0);
    cr_assert_eq(pn__wheel_next(&w), UINT64_MAX);
}

/* An entry exactly 64^L ticks ahead, for every level (and beyond range),
 * fires exactly at its tick, not one tick before; also from unaligned
 * starting points. */
Test(timer_wheel, cascade_every_level_on_time, .timeout = 20)
{
    const uint64_t starts[] = { 0, 1, 63, 64 * 64 - 1, 123456789, (1ull << 42) - 1 };
    for (size_t si = 0; si < sizeof starts / sizeof *starts; si++) {
        for (unsigned l = 0; l <= 7; l++) {
            for (int off = -1; off <= 1; off++) {
                uint64_t s = starts[si];
                uint64_t ticks = (1ull << (6 * l)) + (uint64_t)(int64_t)off;
                if (ticks == 0)
                    continue;
                pn__wheel w;
                pn__wheel_init(&w, s << 16);
                pn_timer_entry e = { 0 };
                e.deadline = (s + ticks) << 16;
                pn__wheel_insert(&w, &e);
                cr_assert_leq(pn__wheel_next(&w), e.deadline);
                count_fire = 0;
                /* Walk up to one tick (one ns) before, in a few big steps
                 * and then via pn__wheel_next. */
                uint64_t now = s << 16;
                while (count_fire == 0) {
                    uint64_t nx = pn__wheel_next(&w);
                    cr_assert_neq(nx, UINT64_MAX);
                    cr_assert_leq(nx, e.deadline, "level %u: next %llu > deadline %llu", l,
                                  (unsigned long long)nx, (unsigned long long)e.deadline);
                    if (nx > now)
                        now = nx;
                    if (now >= e.deadline)
                        break;
                    pn__wheel_advance(&w, now, count_cb, NULL);
                    cr_assert_eq(count_fire, 0, "level %u off %d fired early", l, off);
                    pn__wheel_advance(&w, e.deadline - 1, count_cb, NULL);
                    cr_assert_eq(count_fire, 0, "level %u off %d fired early", l, off);
                    now = e.deadline - 1;
                }
                cr_assert_eq(pn__wheel_advance(&w, e.deadline, count_cb, NULL), 1,
                             "level %u off %d start %llu: not fired at its tick", l, off,
                             (unsigned long long)s);
                cr_assert_eq(pn__wheel_next(&w), UINT64_MAX);
            }
        }
    }
}

/* Same, but jumping straight to the deadline in one advance. */
Test(timer_wheel, cascade_every_level_single_jump, .timeout = 20)
{
    for (unsigned l = 0; l <= 7; l++) {
        pn__wheel w;
        pn__wheel_init(&w, 777ull << 16);
        pn_timer_entry e = { 0 };
        e.deadline = (777ull + (1ull << (6 * l))) << 16;
        pn__wheel_insert(&w, &e);
        count_fire = 0;
        cr_assert_eq(pn__wheel_advance(&w, e.deadline - 1, count_cb, NULL), 0);
        cr_assert_eq(pn__wheel_advance(&w, e.deadline, count_cb, NULL), 1, "level %u", l);
    }
}

Test(timer_wheel, insert_current_slot_and_already_due, .timeout = 20)
{
    pn__wheel w;
    uint64_t now = (1000ull << 16) + 5;
    pn__wheel_init(&w, now);
    pn_timer_entry cur = { 0 }, past = { 0 }, zero = { 0 }, next = { 0 }, later = { 0 };
    cur.deadline = now;                 /* tick 1001: after floor(now), but due */
    past.deadline = now - PN_MS(1);     /* already due */
    zero.deadline = 0;                  /* due at the start of time */
    next.deadline = 1000ull << 16;      /* tick 1000 == floor(now): due now */
    later.deadline = now + 100;         /* tick 1001 too, not yet due */
    pn__wheel_insert(&w, &cur);
    pn__wheel_insert(&w, &past);
    pn__wheel_insert(&w, &zero);
    pn__wheel_insert(&w, &next);
    pn__wheel_insert(&w, &later);
    cr_assert_leq(pn__wheel_next(&w), now);
    count_fire = 0;
    cr_assert_eq(pn__wheel_advance(&w, now, count_cb, NULL), 4);
    cr_assert_eq(pn__wheel_next(&w), later.deadline); /* exact: a short slot */
    cr_assert_eq(pn__wheel_advance(&w, later.deadline - 1, count_cb, NULL), 0);
    cr_assert_eq(pn__wheel_advance(&w, later.deadline, count_cb, NULL), 1);
    cr_assert_eq(pn__wheel_next(&w), UINT64_MAX);
}

Test(timer_wheel, remove_from_every_level, .timeout = 20)
{
    pn__wheel w;
    pn__wheel_init(&w, 5ull << 16);
    pn_timer_entry e[9];
    memset(e, 0, sizeof e);
    for (unsigned l = 0; l < 9; l++) {
        e[l].deadline = l == 8 ? UINT64_MAX : (5ull + 3 * (1ull << (6 * l))) << 16;
        pn__wheel_insert(&w, &e[l]);
        if (l < PN__WHEEL_LEVELS)
            cr_assert_eq(e[l].level, l, "entry %u filed at level %u", l, e[l].level);
    }
    /* remove in a scrambled order, including list middles */
    const unsigned order[] = { 3, 0, 8, 6, 1, 7, 4, 2, 5 };
    for (unsigned i = 0; i < 9; i++) {
        pn__wheel_remove(&w, &e[order[i]]);
        uint64_t min = UINT64_MAX;
        for (unsigned j = i + 1; j < 9; j++)
            if (e[order[j]].deadline < min)
                min = e[order[j]].deadline;
        cr_assert_leq(pn__wheel_next(&w), min);
    }
    for (unsigned l = 0; l < PN__WHEEL_LEVELS; l++)
        cr_assert_eq(w.levels[l].occupied, 0);
    count_fire = 0;
    cr_assert_eq(pn__wheel_advance(&w, UINT64_MAX, count_cb, NULL), 0);
}

Test(timer_wheel, same_slot_list_removal, .timeout = 20)
{
    pn__wheel w;
    pn__wheel_init(&w, 0);
    pn_timer_entry e[5];
    memset(e, 0, sizeof e);
    for (int i = 0; i < 5; i++) {
        e[i].deadline = PN_SEC(3);
        pn__wheel_insert(&w, &e[i]);
    }
    pn__wheel_remove(&w, &e[2]); /* middle */
    pn__wheel_remove(&w, &e[4]); /* head */
    pn__wheel_remove(&w, &e[0]); /* tail */
    count_fire = 0;
    cr_assert_eq(pn__wheel_advance(&w, PN_SEC(3) - 1, count_cb, NULL), 0);
    cr_assert_eq(pn__wheel_advance(&w, PN_SEC(4), count_cb, NULL), 2);
}

/* Fire callbacks that insert new entries (due now, in the slot being
 * processed, later) and cancel entries of the slot being processed. */
static pn_timer_entry cb_pool[8];
static pn_timer_entry *cb_victim;
static pn__wheel *cb_wheel;
static int cb_fired[8];
static uint64_t cb_base;

static void chain_cb(pn_timer_entry *e, void *arg)
{
    (void)arg;
    int i = (int)(e - cb_pool);
    cb_fired[i]++;
    if (e == cb_victim)
        cb_victim = NULL; /* fired first: nothing left to cancel */
    if (i == 0) {
        /* the same tick: must fire in this advance */
        cb_pool[1].deadline = e->deadline;
        pn__wheel_insert(cb_wheel, &cb_pool[1]);
        /* already past */
        cb_pool[2].deadline = 1;
        pn__wheel_insert(cb_wheel, &cb_pool[2]);
        /* one level-1 span later: must not fire in this advance */
        cb_pool[3].deadline = e->deadline + 64 * TICK;
        pn__wheel_insert(cb_wheel, &cb_pool[3]);
        /* cancel a sibling in the same slot, not yet fired */
        if (cb_victim) {
            pn__wheel_remove(cb_wheel, cb_victim);
            cb_victim = NULL;
        }
    }
}

Test(timer_wheel, callback_inserts_and_cancels, .timeout = 20)
{
    pn__wheel w;
    cb_wheel = &w;
    cb_base = 100ull << 16;
    pn__wheel_init(&w, cb_base);
    memset(cb_pool, 0, sizeof cb_pool);
    memset(cb_fired, 0, sizeof cb_fired);
    /* 0 and 4 share a slot at level 2; whichever fires first, the other must
     * not fire after being cancelled (only 0 cancels). */
    uint64_t d = cb_base + (5000ull << 16);
    cb_pool[0].deadline = d;
    cb_pool[4].deadline = d;
    pn__wheel_insert(&w, &cb_pool[4]);
    pn__wheel_insert(&w, &cb_pool[0]);
    cb_victim = &cb_pool[4];
    cr_assert_eq(pn__wheel_advance(&w, d - 1, chain_cb, NULL), 0);
    size_t n = pn__wheel_advance(&w, d, chain_cb, NULL);
    cr_assert_eq(cb_fired[0], 1);
    cr_assert_eq(cb_fired[1], 1, "inserted at the current tick during fire: not fired");
    cr_assert_eq(cb_fired[2], 1, "inserted already due during fire: not fired");
    cr_assert_eq(cb_fired[3], 0);
    /* 4 either fired before 0 or was cancelled by 0's callback. */
    cr_assert_eq(n, (size_t)(3 + cb_fired[4]));
    cr_assert_leq(pn__wheel_next(&w), d + 64 * TICK);
    cr_assert_eq(pn__wheel_advance(&w, d + 64 * TICK - 1, chain_cb, NULL), 0);
    cr_assert_eq(pn__wheel_advance(&w, d + 64 * TICK, chain_cb, NULL), 1);
    cr_assert_eq(cb_fired[3], 1);
}

Test(timer_wheel, far_and_huge_deadlines, .timeout = 20)
{
    pn__wheel w;
    uint64_t start = PN_SEC(1000);
    pn__wheel_init(&w, start);
    pn_timer_entry far = { 0 }, max = { 0 }, big = { 0 };
    far.deadline = start + 30 * YEAR;  /* beyond the 9-year range */
    max.deadline = UINT64_MAX;
    big.deadline = UINT64_MAX - 2 * TICK;
    pn__wheel_insert(&w, &far);
    pn__wheel_insert(&w, &max);
    pn__wheel_insert(&w, &big);
    cr_assert_leq(pn__wheel_next(&w), far.deadline);
    count_fire = 0;
    /* Walk by years: nothing fires before 30 years. */
    uint64_t now = start;
    while (now + YEAR < far.deadline) {
        now += YEAR;
        cr_assert_eq(pn__wheel_advance(&w, now, count_cb, NULL), 0);
        cr_assert_leq(pn__wheel_next(&w), far.deadline);
    }
    /* Alone in its slot: due at its deadline, or at the end of its tick
     * when that tick starts a level-1 span (then it waits in a higher
     * slot until the tick starts); never before. */
    uint64_t at = due_tick(far.deadline) & 63 ? far.deadline : due_instant(far.deadline);
    cr_assert_eq(pn__wheel_advance(&w, at - 1, count_cb, NULL), 0);
    cr_assert_eq(pn__wheel_advance(&w, at, count_cb, NULL), 1);
    cr_assert_neq(due_tick(big.deadline) & 63, 0);
    cr_assert_eq(pn__wheel_advance(&w, big.deadline - 1, count_cb, NULL), 0);
    cr_assert_eq(pn__wheel_advance(&w, big.deadline, count_cb, NULL), 1);
    /* UINT64_MAX rounds up to tick 2^48, which no instant reaches. */
    cr_assert_eq(pn__wheel_advance(&w, UINT64_MAX, count_cb, NULL), 0);
    cr_assert_eq(pn__wheel_next(&w), UINT64_MAX);
    pn__wheel_remove(&w, &max);
    cr_assert_eq(pn__wheel_next(&w), UINT64_MAX);
}

static size_t visited;
static void visit_cb(pn_timer_entry *e, void *arg)
{
    (void)e;
    (void)arg;
    visited++;
}

Test(timer_wheel, each_visits_all, .timeout = 20)
{
    pn__wheel w;
    pn__wheel_init(&w, 0);
    pn_timer_entry e[100];
    memset(e, 0, sizeof e);
    rng = 99;
    for (int i = 0; i < 100; i++) {
        e[i].deadline = random_delay();
        pn__wheel_insert(&w, &e[i]);
    }
    visited = 0;
    pn__wheel_each(&w, visit_cb, NULL);
    cr_assert_eq(visited, 100);
}

/* Many entries at the same instants, advancing one tick at a time. */
Test(timer_wheel, tick_by_tick_dense, .timeout = 20)
{
    model m;
    rng = 4242;
    model_init(&m, 2000, PN_SEC(77) + 3);
    for (size_t i = 0; i < m.n; i++)
        model_insert(&m, &m.ents[i], m.now + below(PN_MS(300)));
    while (m.live)
        model_advance(&m, m.now + TICK);
    model_free(&m);
}

/* ---- the driver (timers.c) with a counting waker, no runtime ------------ */

#include "timer/timers.h"

typedef struct wcount {
    int clones, wakes, drops;
} wcount;

static pn_waker wc_clone(const void *d);
static void wc_wake(const void *d) { ((wcount *)d)->wakes++; }
static void wc_wake_by_ref(const void *d) { ((wcount *)d)->wakes++; }
static void wc_drop(const void *d) { ((wcount *)d)->drops++; }
static const pn_waker_vtable wc_vt = { wc_clone, wc_wake, wc_wake_by_ref, wc_drop };
static pn_waker wc_clone(const void *d)
{
    ((wcount *)d)->clones++;
    return (pn_waker){ d, &wc_vt };
}

/* Every clone the driver took was either woken or dropped. */
static void wc_balanced(const wcount *c)
{
    cr_assert_eq(c->clones, c->wakes + c->drops, "clones %d wakes %d drops %d", c->clones,
                 c->wakes, c->drops);
}

Test(timer_driver, arm_fire_cancel_and_waker_accounting, .timeout = 20)
{
    pn__timers t;
    pn_instant now = PN_SEC(50);
    pn__timers_init(&t, now);
    wcount c = { 0 }, c2 = { 0 };
    pn_waker w = { &c, &wc_vt }, w2 = { &c2, &wc_vt };
    cr_assert_eq(pn__timers_timeout(&t, now), -1);

    pn_timer_entry a = { 0 }, b = { 0 };
    a.deadline = now + PN_MS(3);
    b.deadline = now + PN_SEC(10);
    pn__timers_arm(&t, &a, &w);
    pn__timers_arm(&t, &a, &w);   /* same task: no second clone, not linked twice */
    pn__timers_arm(&t, &b, &w);
    cr_assert_eq(t.armed, 2);
    cr_assert_eq(c.clones, 2);
    pn__timers_arm(&t, &a, &w2);  /* another task: swap the waker */
    cr_assert_eq(c.drops, 1);
    cr_assert_eq(c2.clones, 1);
    cr_assert_eq(t.armed, 2);

    /* Wake when the driver says (maybe first at a cascade point, never
     * after a is due) until a fires. */
    size_t n = 0;
    while (n == 0) {
        int64_t to = pn__timers_timeout(&t, now);
        cr_assert_gt(to, 0);
        cr_assert_leq(now + (uint64_t)to, due_instant(a.deadline));
        now += (uint64_t)to;
        n = pn__timers_fire(&t, now);
        if (now < a.deadline)
            cr_assert_eq(n, 0, "fired early");
    }
    cr_assert_eq(n, 1);
    cr_assert_eq(a.state, PN__TIMER_FIRED);
    cr_assert_eq(c2.wakes, 1);
    cr_assert(pn_waker_is_none(&a.waker));
    cr_assert_eq(t.armed, 1);

    pn__timers_cancel(&b);
    pn__timers_cancel(&b);        /* idempotent */
    pn__timers_cancel(&a);        /* fired: nothing to unlink */
    cr_assert_eq(t.armed, 0);
    cr_assert_eq(b.state, PN__TIMER_IDLE);
    cr_assert_eq(pn__timers_timeout(&t, now), -1);
    wc_balanced(&c);
    wc_balanced(&c2);
    pn__timers_shutdown(&t);
}

Test(timer_driver, already_due_gives_zero_timeout, .timeout = 20)
{
    pn__timers t;
    pn_instant now = PN_SEC(1) + 12345;
    pn__timers_init(&t, now);
    wcount c = { 0 };
    pn_waker w = { &c, &wc_vt };
    pn_timer_entry a = { 0 }, b = { 0 };
    a.deadline = now - TICK;     /* its tick has passed: due now */
    b.deadline = now - 10;       /* past, but its tick is still ahead */
    pn__timers_arm(&t, &a, &w);
    cr_assert_eq(pn__timers_timeout(&t, now), 0);
    cr_assert_eq(pn__timers_fire(&t, now), 1);
    cr_assert_eq(c.wakes, 1);
    /* b fires at its tick boundary, less than a tick from now: the driver
     * resolution is one tick; pn_sleep_future itself checks pn_now() on poll. */
    pn__timers_arm(&t, &b, &w);
    int64_t to = pn__timers_timeout(&t, now);
    cr_assert_geq(to, 0);
    cr_assert_leq((uint64_t)to, TICK);
    cr_assert_eq(pn__timers_fire(&t, now + (uint64_t)to), 1);
    cr_assert_eq(c.wakes, 2);
    wc_balanced(&c);
    pn__timers_shutdown(&t);
}

Test(timer_driver, shutdown_unlinks_and_drops_wakers, .timeout = 20)
{
    pn__timers t;
    pn__timers_init(&t, 0);
    wcount c = { 0 };
    pn_waker w = { &c, &wc_vt };
    pn_timer_entry e[50];
    memset(e, 0, sizeof e);
    rng = 5;
    for (int i = 0; i < 50; i++) {
        e[i].deadline = random_delay();
        pn__timers_arm(&t, &e[i], &w);
    }
    cr_assert_eq(t.armed, 50);
    pn__timers_shutdown(&t);
    cr_assert_eq(t.armed, 0);
    cr_assert_eq(c.drops, 50);
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(e[i].state, PN__TIMER_IDLE);
        cr_assert_null(e[i].timers);
        pn__timers_cancel(&e[i]); /* a future dropped after shutdown: no-op */
    }
    cr_assert_eq(pn__timers_timeout(&t, 0), -1);
    wc_balanced(&c);
}

/* Simulate the runtime loop with a fake clock that jumps by exactly the
 * driver's timeout each turn: every entry fires, none early, and the loop
 * never spins (a zero timeout is always followed by progress). */
Test(timer_driver, reactor_loop_never_early_never_spins, .timeout = 20)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        pn__timers t;
        pn_instant now = PN_SEC(1000) + seed * 7777;
        pn__timers_init(&t, now);
        wcount c = { 0 };
        pn_waker w = { &c, &wc_vt };
        enum { N = 300 };
        static pn_timer_entry e[N];
        memset(e, 0, sizeof e);
        rng = seed * 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < N; i++) {
            uint64_t d = random_delay();
            e[i].deadline = now + (d > 2 * YEAR ? d % (2 * YEAR) : d);
            pn__timers_arm(&t, &e[i], &w);
        }
        size_t turns = 0, fired = 0;
        int64_t prev = -2;
        while (t.armed) {
            int64_t to = pn__timers_timeout(&t, now);
            cr_assert_geq(to, 0);
            if (to == 0)
                cr_assert_neq(prev, 0, "two zero timeouts in a row: a busy loop");
            now += (uint64_t)to;
            size_t n = pn__timers_fire(&t, now);
            fired += n;
            prev = n ? -2 : to;
            turns++;
            cr_assert_lt(turns, 100000, "too many turns");
        }
        cr_assert_eq(fired, N);
        for (int i = 0; i < N; i++) {
            cr_assert_eq(e[i].state, PN__TIMER_FIRED);
            cr_assert_leq(e[i].deadline, now);
        }
        cr_assert_eq(c.wakes, N);
        wc_balanced(&c);
        pn__timers_shutdown(&t);
    }
}

/* A lone timer (or a few) at levels 1-5: next is its exact deadline (or
 * its due instant when its tick starts a level-1 span), so the reactor does
 * not wake just to cascade it, nor at the end of its tick. */
Test(timer_wheel, next_is_exact_for_short_slots, .timeout = 20)
{
    for (unsigned l = 1; l < PN__WHEEL_LEVELS - 1; l++) {
        pn__wheel w;
        uint64_t start = PN_SEC(3) + 17;
        pn__wheel_init(&w, start);
        pn_timer_entry e[3];
        memset(e, 0, sizeof e);
        for (int i = 0; i < 3; i++) {
            e[i].deadline = start + (3ull << (6 * l + 16)) + (uint64_t)(3 - i) * 1000 * TICK + 5;
            pn__wheel_insert(&w, &e[i]);
        }
        cr_assert_eq(e[2].level, l);
        uint64_t at = due_tick(e[2].deadline) & 63 ? e[2].deadline : due_instant(e[2].deadline);
        cr_assert_eq(pn__wheel_next(&w), at, "level %u", l);
        count_fire = 0;
        cr_assert_eq(pn__wheel_advance(&w, at - 1, count_cb, NULL), 0);
        cr_assert_eq(pn__wheel_advance(&w, at, count_cb, NULL), 1);
    }
}
