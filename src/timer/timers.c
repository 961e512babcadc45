/*
 * timers.c - the timer driver: one wheel per runtime thread, turning due
 * entries into wakes (interface in timers.h).
 *
 * Owns: the state, timers and waker fields of every pn_timer_entry it arms,
 * and the count of armed entries.  Private mode: single-threaded (the owning
 * runtime thread).  Shared mode: the mutex guards the wheel, the count and
 * the entries' links and wakers; e->state is stored with release and read
 * with acquire, so a FIRED seen without the lock means the driver is done
 * with the entry.
 *
 * Invariants:
 *  - state == ARMED  <=>  the entry is filed in t->wheel and e->timers == t;
 *    t->armed counts exactly those entries.
 *  - An ARMED entry holds a waker (a clone it owns); FIRED and IDLE entries
 *    hold none (firing consumes it with pn_waker_wake, cancel drops it).
 *  - Firing unlinks the entry before waking, and never touches the entry
 *    after the wake (the wake may free the task that embeds it).
 */
#include "core/chaos.h"
#include "timers.h"
#include "core/sys.h"

void pn__timers_init(pn__timers *t, pn_instant now)
{
    pn__wheel_init(&t->wheel, now);
    t->armed = 0;
    t->shared = false;
    t->kick = NULL;
    t->kick_arg = NULL;
    t->sleeping_until = 0;
    t->due = NULL;
    t->ndue = t->capdue = 0;
    t->clock = NULL;
    t->hold_after = UINT64_MAX;
    t->held = NULL;
}

void pn__timers_init_shared(pn__timers *t, pn_instant now,
                            void (*kick)(void *arg), void *kick_arg)
{
    pn__timers_init(t, now);
    t->shared = true;
    t->kick = kick;
    t->kick_arg = kick_arg;
    /* Critical sections are a few pointer moves: spin briefly before
     * sleeping in the kernel when two workers meet here. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&t->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&t->fire_lock, NULL);
}

static void lock(pn__timers *t)
{
    if (t->shared)
        pthread_mutex_lock(&t->lock);
}

static void unlock(pn__timers *t)
{
    if (t->shared)
        pthread_mutex_unlock(&t->lock);
}

static uint8_t load_state(const pn_timer_entry *e)
{
    return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
}

static void store_state(pn_timer_entry *e, uint8_t st)
{
    __atomic_store_n(&e->state, st, __ATOMIC_RELEASE);
}

bool pn__timers_fired(const pn_timer_entry *e)
{
    return load_state(e) == PN__TIMER_FIRED;
}

void pn__timers_mark_fired(pn_timer_entry *e)
{
    store_state(e, PN__TIMER_FIRED);
}

void pn__timers_set_sleeping(pn__timers *t, pn_instant until)
{
    lock(t);
    t->sleeping_until = until;
    unlock(t);
}

static bool pop_any(pn__wheel *w, pn_timer_entry **out)
{
    for (unsigned l = 0; l < PN__WHEEL_LEVELS; l++) {
        uint64_t occ = w->levels[l].occupied;
        if (occ) {
            *out = w->levels[l].slots[__builtin_ctzll(occ)];
            return true;
        }
    }
    return false;
}

void pn__timers_shutdown(pn__timers *t)
{
    pn_timer_entry *e;
    /* Pop one at a time, and unlink before dropping the waker: dropping it
     * may free the memory the entry lives in. */
    while (pop_any(&t->wheel, &e)) {
        pn__wheel_remove(&t->wheel, e);
        t->armed--;
        e->timers = NULL;
        store_state(e, PN__TIMER_IDLE);
        pn_waker_drop(&e->waker);
    }
    t->armed = 0;
    pn__free(t->due);
    t->due = NULL;
    t->ndue = t->capdue = 0;
    if (t->shared) {
        pthread_mutex_destroy(&t->lock);
        pthread_mutex_destroy(&t->fire_lock);
    }
}

/* Unlink e from t (locked) and take its waker into *w. */
static void unlink_locked(pn__timers *t, pn_timer_entry *e, pn_waker *w)
{
    pn__wheel_remove(&t->wheel, e);
    t->armed--;
    e->timers = NULL;
    *w = e->waker;
    e->waker = PN_WAKER_NONE;
    store_state(e, PN__TIMER_IDLE);
}

void pn__timers_arm(pn__timers *t, pn_timer_entry *e, const pn_waker *w)
{
    pn_waker old = PN_WAKER_NONE;
    if (load_state(e) == PN__TIMER_ARMED && e->timers != t)
        pn__timers_cancel(e);               /* armed in another driver */
    lock(t);
    if (load_state(e) == PN__TIMER_ARMED) {
        /* Re-file: O(1), and right whether or not the deadline moved. */
        pn__wheel_remove(&t->wheel, e);
    } else {
        old = e->waker;                     /* FIRED/IDLE hold none; be safe */
        e->waker = PN_WAKER_NONE;
        e->timers = t;
        t->armed++;
    }
    pn_waker_set(&e->waker, w);
    pn__wheel_insert(&t->wheel, e);
    store_state(e, PN__TIMER_ARMED);
    bool kick = t->shared && e->deadline < t->sleeping_until;
    if (kick)
        t->sleeping_until = e->deadline;    /* one kick per earlier deadline */
    unlock(t);
    pn_waker_drop(&old);
    if (kick && t->kick)
        t->kick(t->kick_arg);
}

void pn__timers_reset(pn_timer_entry *e, pn_instant deadline)
{
    if (load_state(e) == PN__TIMER_ARMED) {
        pn__timers *t = e->timers;
        PN_POINT("timers.cancel", e);       /* the driver may fire it now */
        lock(t);
        if (load_state(e) == PN__TIMER_ARMED) {
            pn__wheel_remove(&t->wheel, e);
            e->deadline = deadline;
            pn__wheel_insert(&t->wheel, e);
            bool kick = t->shared && deadline < t->sleeping_until;
            if (kick)
                t->sleeping_until = deadline;
            unlock(t);
            if (kick && t->kick)
                t->kick(t->kick_arg);
            return;
        }
        unlock(t);                          /* fired meanwhile */
    }
    pn__timers_cancel(e);
    e->deadline = deadline;
}

void pn__timers_cancel(pn_timer_entry *e)
{
    pn_waker w = PN_WAKER_NONE;
    if (load_state(e) == PN__TIMER_ARMED) {
        pn__timers *t = e->timers;
        lock(t);
        /* The driver may have fired it meanwhile (then it took the waker). */
        if (load_state(e) == PN__TIMER_ARMED)
            unlink_locked(t, e, &w);
        unlock(t);
    } else {
        w = e->waker;
        e->waker = PN_WAKER_NONE;
    }
    store_state(e, PN__TIMER_IDLE);
    e->timers = NULL;
    pn_waker_drop(&w);
}

int64_t pn__timers_timeout(pn__timers *t, pn_instant now)
{
    lock(t);
    pn_instant next = pn__wheel_next(&t->wheel);
    unlock(t);
    if (next == UINT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    /* Advancing to next fires something (or moves next later; wheel.h), and
     * never fires an entry early, so waking at now + (next - now) is right. */
    uint64_t d = next - now;
    return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

/* Called by the wheel for each due entry, under the lock: take the waker
 * (woken after unlock, so a waker may arm timers) and mark it FIRED. */
static void fire_one(pn_timer_entry *e, void *arg)
{
    pn__timers *t = arg;
    if (e->deadline > t->hold_after) {
        /* Paused clock: due in this tick, not yet at the virtual now.  It
         * stays ARMED with its waker; filed again after the advance. */
        e->next = t->held;
        t->held = e;
        return;
    }
    t->armed--;
    /* e->timers stays: a canceller that saw ARMED may be reading it. */
    pn_waker w = e->waker;
    e->waker = PN_WAKER_NONE;
    if (t->ndue == t->capdue) {
        size_t cap = t->capdue ? 2 * t->capdue : 64;
        pn_waker *d = pn__malloc(cap * sizeof(*d));
        if (!d) {
            /* No room to defer: wake now (still correct, only under the lock). */
            store_state(e, PN__TIMER_FIRED);
            pn_waker_wake(&w);
            return;
        }
        for (size_t i = 0; i < t->ndue; i++)
            d[i] = t->due[i];
        pn__free(t->due);
        t->due = d;
        t->capdue = cap;
    }
    t->due[t->ndue++] = w;
    /* Last touch of e: once FIRED is visible its owner may free it. */
    store_state(e, PN__TIMER_FIRED);
}

pn_instant pn__timers_now(const pn__timers *t)
{
    return t->clock ? pn__clock_now(t->clock) : pn__mono_now();
}

pn_instant pn__timers_next_deadline(pn__timers *t)
{
    lock(t);
    pn_instant d = pn__wheel_min_deadline(&t->wheel);
    unlock(t);
    return d;
}

size_t pn__timers_fire(pn__timers *t, pn_instant now)
{
    if (t->shared)
        pthread_mutex_lock(&t->fire_lock);
    lock(t);
    pn_instant to = now;
    if (t->clock) {
        /* Never fire an entry due after the clock's now (fire_one holds
         * it): a paused clock's tick can be reached early (below), and so
         * can a resumed clock's last paused tick. */
        t->hold_after = now;
        if (pn__clock_paused(t->clock)) {
            /* The wheel fires whole ticks: go to the end of now's tick,
             * so what is due at exactly now fires now. */
            uint64_t up = (now + (PN_TIMER_TICK_NS - 1)) & ~(PN_TIMER_TICK_NS - 1);
            to = up < now ? now : up;
        }
    }
    size_t n = pn__wheel_advance(&t->wheel, to, fire_one, t);
    t->hold_after = UINT64_MAX;
    for (pn_timer_entry *e = t->held, *nx; e; e = nx) {
        nx = e->next;
        pn__wheel_insert(&t->wheel, e);     /* due by tick: fires when now reaches it */
        n--;
    }
    t->held = NULL;
    /* Wake outside the lock.  One thread fires at a time (fire_lock in
     * shared mode), so the array is ours until the next call. */
    size_t nd = t->ndue;
    t->ndue = 0;
    unlock(t);
    PN_POINT("timers.fire", t);             /* fired, not yet woken */
    for (size_t i = 0; i < nd; i++)
        pn_waker_wake(&t->due[i]);
    if (t->shared)
        pthread_mutex_unlock(&t->fire_lock);
    return n;
}
