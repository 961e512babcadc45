/*
 * waker_slot.c - pn_waker_slot: one waiter's waker, woken from any thread
 * without a lock (pollen/sync.h).
 *
 * Owns: the slot's state word and the waker it guards.
 *
 * The state is three values and their union (Tokio's AtomicWaker):
 *   IDLE         nobody touches the waker: a register or a wake may start
 *   REGISTERING  the waiter is storing its waker (it holds the waker)
 *   WAKING       a waker is taking the waker out (it holds the waker)
 *   REGISTERING | WAKING
 *                a wake came while the waiter stored: the waiter sees it
 *                when it tries to go back to IDLE, and wakes its own
 *                waker instead of leaving it stored
 * Only the thread that moved the state off IDLE touches `waker`; acquire
 * on the way in and release on the way out order those touches.  A wake
 * that finds REGISTERING or WAKING leaves the waking to the thread that
 * holds the waker, so no wake is lost and none runs twice.
 *
 * The schedule point "waker_slot.register" (core/chaos.h) sits where the
 * waiter holds the waker, for tests that wake right there.
 */
#include "pollen/sync.h"
#include "core/chaos.h"

#define IDLE 0u
#define REGISTERING 1u
#define WAKING 2u

void pn_waker_slot_register(pn_waker_slot *slot, const pn_waker *w)
{
    if (!slot || !w || !w->vt)
        return;
    unsigned cur = IDLE;
    if (!atomic_compare_exchange_strong_explicit(&slot->state, &cur, REGISTERING,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        /* A wake holds the waker (it may miss ours), or another register
         * does (not supported): wake ours, so the task polls again. */
        pn_waker_wake_by_ref(w);
        return;
    }
    pn_waker old = PN_WAKER_NONE;
    if (!slot->waker.vt || !pn_waker_will_wake(&slot->waker, w)) {
        old = slot->waker;
        slot->waker = pn_waker_clone(w);
    }
    PN_POINT("waker_slot.register", slot);
    unsigned expect = REGISTERING;
    if (atomic_compare_exchange_strong_explicit(&slot->state, &expect, IDLE,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        pn_waker_drop(&old);
        return;
    }
    /* REGISTERING | WAKING: a wake came meanwhile and left the waking to
     * us.  Take the waker back out and wake it. */
    pn_waker mine = slot->waker;
    slot->waker = PN_WAKER_NONE;
    atomic_store_explicit(&slot->state, IDLE, memory_order_release);
    pn_waker_drop(&old);
    pn_waker_wake(&mine);
}

pn_waker pn_waker_slot_take(pn_waker_slot *slot)
{
    if (!slot)
        return PN_WAKER_NONE;
    unsigned prev = atomic_fetch_or_explicit(&slot->state, WAKING, memory_order_acq_rel);
    if (prev != IDLE)
        return PN_WAKER_NONE;   /* the registerer, or the other waker, wakes */
    pn_waker w = slot->waker;
    slot->waker = PN_WAKER_NONE;
    atomic_fetch_and_explicit(&slot->state, ~WAKING, memory_order_release);
    return w;
}

void pn_waker_slot_wake(pn_waker_slot *slot)
{
    pn_waker w = pn_waker_slot_take(slot);
    pn_waker_wake(&w);
}

void pn_waker_slot_clear(pn_waker_slot *slot)
{
    pn_waker w = pn_waker_slot_take(slot);
    pn_waker_drop(&w);
}
