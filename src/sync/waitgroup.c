/*
 * waitgroup.c - pn_wait_group (pollen/waitgroup.h): a count and the
 * futures that wait for it to reach zero.
 *
 * Owns nothing on the heap: the count, a generation and a FIFO of the
 * waiting futures' pn_sync_waiter nodes, all under the group's lock.
 *
 * A waiter is tagged with the generation (how many times the count reached
 * zero) it was queued in.  When the count reaches zero the generation goes
 * up and the waiters of the old one (a prefix of the FIFO: later ones are
 * pushed behind) are taken out in batches and woken after unlocking.  A
 * waiter that polls while still queued with an old tag was released too:
 * it unqueues itself and is READY, even if the count went up again.
 */
#include "pollen/waitgroup.h"
#include "sync/wait.h"
#include "core/chaos.h"

void pn_wait_group_init(pn_wait_group *wg)
{
    if (!wg)
        return;
    pn__mutex_init(&wg->lock);
    wg->count = 0;
    wg->gen = 0;
    wg->waiters = (pn_sync_queue){ NULL, NULL };
}

void pn_wait_group_destroy(pn_wait_group *wg)
{
    if (wg)
        pn__mutex_destroy(&wg->lock);
}

int pn_wait_group_add(pn_wait_group *wg, size_t n)
{
    if (!wg || n == 0)
        return -EINVAL;
    pn__mutex_acquire(&wg->lock);
    if (wg->count + n < wg->count) {
        pn__mutex_release(&wg->lock);
        return -EOVERFLOW;
    }
    wg->count += n;
    pn__mutex_release(&wg->lock);
    return 0;
}

int pn_wait_group_done(pn_wait_group *wg)
{
    if (!wg)
        return -EINVAL;
    pn__mutex_acquire(&wg->lock);
    if (wg->count == 0) {
        pn__mutex_release(&wg->lock);
        return -EINVAL;
    }
    if (--wg->count > 0) {
        pn__mutex_release(&wg->lock);
        return 0;
    }
    uint64_t old = wg->gen++;
    pn__wakelist wl;
    wl.n = 0;
    for (;;) {
        while (!pn__wakelist_full(&wl) && wg->waiters.head && wg->waiters.head->tag == old) {
            pn_sync_waiter *w = wg->waiters.head;
            pn__waitq_remove(&wg->waiters, w);
            w->state = 1;                     /* released */
            pn__wakelist_push(&wl, &w->waker);
        }
        bool more = wg->waiters.head && wg->waiters.head->tag == old;
        pn__mutex_release(&wg->lock);
        PN_POINT("wait_group.wake", wg);
        pn__wakelist_wake(&wl);
        if (!more)
            return 0;
        pn__mutex_acquire(&wg->lock);
    }
}

size_t pn_wait_group_count(pn_wait_group *wg)
{
    if (!wg)
        return 0;
    pn__mutex_acquire(&wg->lock);
    size_t n = wg->count;
    pn__mutex_release(&wg->lock);
    return n;
}

static pn_poll wait_poll(pn_future *f, pn_cx *cx)
{
    pn_wait_group_wait_future *c = (pn_wait_group_wait_future *)f;
    pn_wait_group *wg = c->wg;
    if (!wg) {
        c->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    pn__mutex_acquire(&wg->lock);
    /* Released: the count is zero, or our generation ended (we were taken
     * out, state 1, or are still queued with an old tag). */
    if (wg->count == 0 || c->w.state == 1 || (c->w.queued && c->w.tag != wg->gen)) {
        pn__waitq_remove(&wg->waiters, &c->w);
        pn_waker k = c->w.waker;
        c->w.waker = PN_WAKER_NONE;
        c->w.state = 2;
        pn__mutex_release(&wg->lock);
        pn_waker_drop(&k);
        c->w.need = 0;
        c->res = 0;
        return PN_READY;
    }
    pn_waker_set(&c->w.waker, cx->waker);
    if (!c->w.queued) {
        c->w.tag = wg->gen;
        pn__waitq_push(&wg->waiters, &c->w);
    }
    c->w.need = 1;                            /* the owner's: drop has work */
    pn__mutex_release(&wg->lock);
    return PN_PENDING;
}

static void wait_drop(pn_future *f)
{
    pn_wait_group_wait_future *c = (pn_wait_group_wait_future *)f;
    /* w.need is the owner's own (1 while pending); w.state is written by
     * pn_wait_group_done under the lock, so it is not read here. */
    if (!c->wg || !c->w.need)
        return;
    c->w.need = 0;
    pn__mutex_acquire(&c->wg->lock);
    pn__waitq_remove(&c->wg->waiters, &c->w);
    pn_waker k = c->w.waker;
    c->w.waker = PN_WAKER_NONE;
    c->w.state = 2;
    pn__mutex_release(&c->wg->lock);
    pn_waker_drop(&k);
}

static const pn_future_vtable wait_vt = { wait_poll, wait_drop, "pn_wait_group_wait" };

pn_wait_group_wait_future pn_wait_group_wait(pn_wait_group *wg)
{
    return (pn_wait_group_wait_future){ .base = { &wait_vt }, .wg = wg };
}

int pn_wait_group_blocking_wait(pn_wait_group *wg)
{
    if (!wg)
        return -EINVAL;
    pn_wait_group_wait_future c = pn_wait_group_wait(wg);
    int err = pn__sync_block(&c.base);
    if (err)
        pn_future_drop(&c.base);
    return err;
}
