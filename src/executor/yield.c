/*
 * yield.c - pn_yield: give the other tasks a turn.
 */
#include "pollen/future.h"

static pn_poll yield_poll(pn_future *f, pn_cx *cx)
{
    pn_yield_now_future *y = (pn_yield_now_future *)f;
    if (y->yielded)
        return PN_READY;
    y->yielded = true;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}

static const pn_future_vtable yield_vt = { yield_poll, NULL, "pn_yield" };

pn_yield_now_future pn_yield(void)
{
    return (pn_yield_now_future){ .base = { &yield_vt }, .yielded = false };
}
