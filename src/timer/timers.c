/*
 * timers.c - the timer driver: one wheel per runtime thread, turning due
 * entries into wakes (interface in timers.h).
 *
 * Owns: the state, timers and waker fields of every pn_timer_entry it arms,
 * and the count of armed entries.  Single-threaded (the owning runtime
 * thread).
 *
 * Invariants:
 *  - state == ARMED  <=>  the entry is filed in t->wheel and e->timers == t;
 *    t->armed counts exactly those entries.
 *  - An ARMED entry holds a waker (a clone it owns); FIRED and IDLE entries
 *    hold none (firing consumes it with pn_waker_wake, cancel drops it).
 *  - Firing unlinks the entry before waking, and never touches the entry
 *    after the wake (the wake may free the task that embeds it).
 */
#include "timers.h"

void pn__timers_init(pn__timers *t, pn_instant now)
{
    pn__wheel_init(&t->wheel, now);
    t->armed = 0;
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
        e->state = PN__TIMER_IDLE;
        pn_waker_drop(&e->waker);
    }
    t->armed = 0;
}

void pn__timers_arm(pn__timers *t, pn_timer_entry *e, const pn_waker *w)
{
    if (e->state == PN__TIMER_ARMED) {
        if (e->timers == t) {
            pn_waker_set(&e->waker, w);
            /* Re-file: O(1), and right whether or not the deadline moved. */
            pn__wheel_remove(&t->wheel, e);
            pn__wheel_insert(&t->wheel, e);
            return;
        }
        pn__timers_cancel(e);
    }
    pn_waker_set(&e->waker, w);
    e->timers = t;
    e->state = PN__TIMER_ARMED;
    pn__wheel_insert(&t->wheel, e);
    t->armed++;
}

void pn__timers_cancel(pn_timer_entry *e)
{
    if (e->state == PN__TIMER_ARMED && e->timers) {
        pn__wheel_remove(&e->timers->wheel, e);
        e->timers->armed--;
    }
    e->timers = NULL;
    e->state = PN__TIMER_IDLE;
    pn_waker_drop(&e->waker);
}

int64_t pn__timers_timeout(const pn__timers *t, pn_instant now)
{
    pn_instant next = pn__wheel_next(&t->wheel);
    if (next == UINT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    /* next is a tick boundary: advancing to it fires the slot, so waking at
     * now + (next - now) is never early. */
    uint64_t d = next - now;
    return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

static void fire_one(pn_timer_entry *e, void *arg)
{
    pn__timers *t = arg;
    t->armed--;
    e->timers = NULL;
    e->state = PN__TIMER_FIRED;
    pn_waker w = e->waker;
    e->waker = PN_WAKER_NONE;
    pn_waker_wake(&w); /* e may be gone after this */
}

size_t pn__timers_fire(pn__timers *t, pn_instant now)
{
    return pn__wheel_advance(&t->wheel, now, fire_one, t);
}
