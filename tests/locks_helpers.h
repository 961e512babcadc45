/*
 * locks_helpers.h - what test_semaphore.c, test_locks.c and test_notify.c
 * share: polling a future by hand with a probe waker, and joining a batch
 * of spawned tasks.
 */
#ifndef PN_TESTS_LOCKS_HELPERS_H
#define PN_TESTS_LOCKS_HELPERS_H

#include "helpers.h"
#include "core/chaos.h"
#include "pollen/semaphore.h"
#include "pollen/notify.h"

/* Poll f once on this thread, its waker being the probe's. */
static inline pn_poll poll_by_hand(pn_future *f, waker_probe *p)
{
    pn_waker w = { p, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .budget = 1000 };
    return pn_future_poll(f, &cx);
}

#define POLL(fut, probe) poll_by_hand(PN_FUTURE(fut), (probe))

/* Await and free every handle; returns how many were cancelled. */
static inline int join_all(pn_runtime *rt, pn_join_handle **hs, int n)
{
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        pn_join_future j = pn_join(hs[i]);
        AWAIT(rt, j);
        cr_assert(j.res == 0 || j.res == -ECANCELED, "join: %d", j.res);
        cancelled += j.res == -ECANCELED;
        pn_join_handle_free(hs[i]);
    }
    return cancelled;
}

#endif
