/*
 * timeout.c - pn_timeout_future: run a future with a deadline.
 *
 * Owns: the pn_timeout_future future and its embedded sleep.  The inner future is
 * borrowed; the timeout drops it when the deadline comes first or when the
 * timeout itself is dropped before completing.
 *
 * Invariants:
 *  - The inner future is polled first on every poll, so a future that is
 *    ready at the same time as the deadline wins (.res 0).
 *  - inner == NULL once the timeout completed: the inner future then either
 *    returned PN_READY or was dropped exactly once, and is never touched
 *    again.
 *  - On completion the sleep is unlinked (no waker left in the wheel).
 */
#include "pollen/time.h"
#include "timer/timers.h"

static pn_poll timeout_poll(pn_future *f, pn_cx *cx)
{
    pn_timeout_future *t = (pn_timeout_future *)f;
    if (!t->inner)
        return PN_READY; /* already completed; .res is set */
    if (pn_future_poll(t->inner, cx) == PN_READY) {
        pn__timers_cancel(&t->timer.entry);
        t->inner = NULL;
        t->res = 0;
        return PN_READY;
    }
    if (pn_future_poll(PN_FUTURE(&t->timer), cx) == PN_READY) {
        pn_future *inner = t->inner;
        t->inner = NULL;
        pn_future_drop(inner);
        t->res = -ETIMEDOUT;
        return PN_READY;
    }
    return PN_PENDING;
}

static void timeout_drop(pn_future *f)
{
    pn_timeout_future *t = (pn_timeout_future *)f;
    if (t->inner) {
        pn_future *inner = t->inner;
        t->inner = NULL;
        pn_future_drop(inner);
    }
    pn__timers_cancel(&t->timer.entry);
}

static const pn_future_vtable timeout_vt = {
    .poll = timeout_poll,
    .drop = timeout_drop,
    .name = "pn_timeout_future",
};

/* With no inner future the timeout starts out completed (inner NULL) with
 * -EINVAL, so its first poll is ready instead of reporting a success. */
pn_timeout_future pn_timeout_at(pn_future *inner, pn_instant deadline)
{
    pn_timeout_future t = {
        .base = { &timeout_vt },
        .inner = inner,
        .timer = pn_sleep_until(deadline),
        .res = inner ? 0 : -EINVAL,
    };
    return t;
}

pn_timeout_future pn_timeout(pn_future *inner, uint64_t ns)
{
    pn_timeout_future t = pn_timeout_at(inner, 0);
    t.timer = pn_sleep(ns);
    return t;
}
