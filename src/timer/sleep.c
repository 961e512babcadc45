/*
 * sleep.c - pn_sleep_future: a future that completes at a deadline.
 *
 * Owns: the pn_sleep_future future.  Its embedded pn_timer_entry is linked into the
 * runtime's timer driver (cx->timers) on the first PENDING poll and unlinked
 * when the sleep completes, is reset to an idle state, or is dropped.
 *
 * Invariants:
 *  - A sleep returns PN_READY only once the polling runtime's clock reads
 *    >= deadline (or its entry FIRED, which the driver does only when its
 *    clock has reached the deadline: timers.h),
 *    so it never completes early.
 *  - When it returns PN_PENDING its entry is armed with the task's waker
 *    (the PENDING contract), or it spent the last unit of budget and woke
 *    the task itself.
 *  - After PN_READY the entry is unlinked and holds no waker.
 */
#include "pollen/time.h"
#include "timer/timers.h"

/* The time of the runtime that polls (its clock may be paused). */
pn_instant pn__cx_now(const pn_cx *cx)
{
    return cx && cx->timers ? pn__timers_now(cx->timers) : pn_now();
}

static pn_poll sleep_poll(pn_future *f, pn_cx *cx)
{
    pn_sleep_future *s = (pn_sleep_future *)f;
    pn_timer_entry *e = &s->entry;
    if (pn__timers_fired(e) || e->deadline <= pn__cx_now(cx)) {
        if (pn_cx_budget_spend(cx) == PN_PENDING)
            return PN_PENDING;
        pn__timers_cancel(e);
        /* stays complete: polling it again (a reset-less re-await) is READY */
        pn__timers_mark_fired(e);
        return PN_READY;
    }
    pn__timers_arm(cx->timers, e, cx->waker);
    return PN_PENDING;
}

static void sleep_drop(pn_future *f)
{
    pn_sleep_future *s = (pn_sleep_future *)f;
    pn__timers_cancel(&s->entry);
}

static const pn_future_vtable sleep_vt = {
    .poll = sleep_poll,
    .drop = sleep_drop,
    .name = "pn_sleep_future",
};

pn_sleep_future pn_sleep_until(pn_instant deadline)
{
    pn_sleep_future s = {
        .base = { &sleep_vt },
        .entry = {
            .next = NULL,
            .prev = NULL,
            .deadline = deadline,
            .timers = NULL,
            .waker = PN_WAKER_NONE,
            .level = 0,
            .slot = 0,
            .state = PN__TIMER_IDLE,
        },
    };
    return s;
}

pn_sleep_future pn_sleep(uint64_t ns)
{
    pn_instant now = pn_now();
    pn_instant d = now + ns;
    return pn_sleep_until(d < now ? UINT64_MAX : d);
}

void pn_sleep_reset(pn_sleep_future *s, pn_instant deadline)
{
    pn__timers_reset(&s->entry, deadline);
}
