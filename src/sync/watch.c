/*
 * watch.c - the watch channel (pollen/watch.h): one value, a version
 * number bumped by each send, and receivers that remember the version they
 * last saw.
 *
 * Owns: the channel (lock, value, version, counts, queue of waiting
 * changed() futures) and the receivers (a seen version each).
 *
 * The value is copied in and out under the lock, so no reader sees a torn
 * value.  `version` and `closed` are atomics stored under the lock, so
 * has_changed and the first check of changed() take no lock.  They are
 * read closed first, version second: the close is stored after the last
 * send's version, so a reader that sees the close also sees that version
 * and never reports -EPIPE while a change it has not seen exists.
 *
 * Waiting.  A changed() that finds nothing new takes the lock, checks
 * again, and queues its waiter: a send that ran between the lock-free
 * check and the lock (the point "watch.changed.check" sits there for
 * tests) is seen by the second check.  A send or the close takes every
 * waiter off the queue and wakes them after unlocking.
 */
#include <stdlib.h>
#include <string.h>
#include "pollen/watch.h"
#include "sync/wait.h"
#include "core/chaos.h"

typedef struct wchan {
    pn__lock lock;
    _Atomic uint64_t version;   /* sends so far (stored under lock) */
    _Atomic bool closed;        /* the sender is gone (stored under lock) */
    bool tx_alive;              /* under lock */
    size_t esz;
    size_t rx_count;            /* under lock */
    pn__waitq waiters;          /* changed() futures, under lock */
    pn__waitq tx_waiters;       /* pn_watch_tx_closed futures, under lock */
    unsigned char val[];        /* esz bytes, under lock */
} wchan;

struct pn_watch_rx {
    wchan *ch;
    uint64_t seen;              /* the receiver owner's only */
};

#define CH(tx) ((wchan *)(void *)(tx))

int pn_watch_new(size_t elem_size, const void *initial, pn_watch_tx **tx, pn_watch_rx **rx)
{
    if (tx)
        *tx = NULL;
    if (rx)
        *rx = NULL;
    if (!tx || !initial || elem_size == 0 || elem_size > SIZE_MAX - sizeof(wchan))
        return -EINVAL;
    wchan *ch = malloc(sizeof *ch + elem_size);
    if (!ch)
        return -ENOMEM;
    pn_watch_rx *r = NULL;
    if (rx && !(r = malloc(sizeof *r))) {
        free(ch);
        return -ENOMEM;
    }
    pn__lock_init(&ch->lock);
    atomic_init(&ch->version, 0);
    atomic_init(&ch->closed, false);
    ch->tx_alive = true;
    ch->esz = elem_size;
    ch->rx_count = r ? 1 : 0;
    ch->waiters = (pn__waitq){ NULL, NULL };
    ch->tx_waiters = (pn__waitq){ NULL, NULL };
    memcpy(ch->val, initial, elem_size);
    if (r) {
        r->ch = ch;
        r->seen = 0;
        *rx = r;
    }
    *tx = (pn_watch_tx *)(void *)ch;
    return 0;
}

/* As broadcast.c: every waiter's waker into wl, lock held on entry and
 * exit, dropped while a full list is woken (the caller keeps ch alive). */
static void drain_waiters(wchan *ch, pn__waitq *q, pn__wakelist *wl)
{
    pn_sync_waiter *w;
    while ((w = pn__waitq_pop(q))) {
        if (pn__wakelist_full(wl)) {
            pn__lock_release(&ch->lock);
            pn__wakelist_wake(wl);
            pn__lock_acquire(&ch->lock);
        }
        pn__wakelist_push(wl, &w->waker);
    }
}

static int store(pn_watch_tx *tx, const void *value, void *old, bool need_rx)
{
    if (!tx || !value)
        return -EINVAL;
    wchan *ch = CH(tx);
    pn__wakelist wl = { 0 };
    pn__lock_acquire(&ch->lock);
    if (need_rx && ch->rx_count == 0) {
        pn__lock_release(&ch->lock);
        return -EPIPE;
    }
    if (old)
        memcpy(old, ch->val, ch->esz);
    memcpy(ch->val, value, ch->esz);
    uint64_t v = atomic_load_explicit(&ch->version, memory_order_relaxed);
    atomic_store_explicit(&ch->version, v + 1, memory_order_release);
    drain_waiters(ch, &ch->waiters, &wl);
    pn__lock_release(&ch->lock);
    pn__wakelist_wake(&wl);
    return 0;
}

int pn_watch_send(pn_watch_tx *tx, const void *value) { return store(tx, value, NULL, true); }

int pn_watch_send_replace(pn_watch_tx *tx, const void *value, void *old)
{
    return store(tx, value, old, false);
}

int pn_watch_send_if_modified(pn_watch_tx *tx, bool (*modify)(void *value, void *arg),
                              void *arg)
{
    if (!tx || !modify)
        return -EINVAL;
    wchan *ch = CH(tx);
    pn__wakelist wl = { 0 };
    pn__lock_acquire(&ch->lock);
    bool changed = modify(ch->val, arg);
    if (changed) {
        uint64_t v = atomic_load_explicit(&ch->version, memory_order_relaxed);
        atomic_store_explicit(&ch->version, v + 1, memory_order_release);
        drain_waiters(ch, &ch->waiters, &wl);
    }
    pn__lock_release(&ch->lock);
    pn__wakelist_wake(&wl);
    return changed;
}

int pn_watch_tx_borrow(pn_watch_tx *tx, void *out)
{
    if (!tx || !out)
        return -EINVAL;
    wchan *ch = CH(tx);
    pn__lock_acquire(&ch->lock);
    memcpy(out, ch->val, ch->esz);
    pn__lock_release(&ch->lock);
    return 0;
}

size_t pn_watch_receiver_count(pn_watch_tx *tx)
{
    if (!tx)
        return 0;
    wchan *ch = CH(tx);
    pn__lock_acquire(&ch->lock);
    size_t n = ch->rx_count;
    pn__lock_release(&ch->lock);
    return n;
}

static void chan_free(wchan *ch)
{
    pn__lock_destroy(&ch->lock);
    free(ch);
}

void pn_watch_tx_free(pn_watch_tx *tx)
{
    if (!tx)
        return;
    wchan *ch = CH(tx);
    pn__wakelist wl = { 0 };
    pn__lock_acquire(&ch->lock);
    atomic_store_explicit(&ch->closed, true, memory_order_release);
    drain_waiters(ch, &ch->waiters, &wl);
    ch->tx_alive = false;       /* only now: ch lived through the drain */
    bool last = ch->rx_count == 0;
    pn__lock_release(&ch->lock);
    pn__wakelist_wake(&wl);
    if (last)
        chan_free(ch);
}

/* A receiver that has seen `seen`, or the current version when `current`. */
static int rx_new(wchan *ch, uint64_t seen, bool current, pn_watch_rx **out)
{
    pn_watch_rx *r = malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    r->ch = ch;
    pn__lock_acquire(&ch->lock);
    ch->rx_count++;
    r->seen = current ? atomic_load_explicit(&ch->version, memory_order_relaxed) : seen;
    pn__lock_release(&ch->lock);
    *out = r;
    return 0;
}

int pn_watch_subscribe(pn_watch_tx *tx, pn_watch_rx **out)
{
    if (out)
        *out = NULL;
    if (!tx || !out)
        return -EINVAL;
    return rx_new(CH(tx), 0, true, out);
}

int pn_watch_rx_clone(pn_watch_rx *rx, pn_watch_rx **out)
{
    if (out)
        *out = NULL;
    if (!rx || !out)
        return -EINVAL;
    return rx_new(rx->ch, rx->seen, false, out);
}

void pn_watch_rx_free(pn_watch_rx *rx)
{
    if (!rx)
        return;
    wchan *ch = rx->ch;
    pn__wakelist wl = { 0 };
    pn__lock_acquire(&ch->lock);
    ch->rx_count--;
    if (ch->rx_count == 0)      /* tx_closed futures exist only while tx does */
        drain_waiters(ch, &ch->tx_waiters, &wl);
    bool last = ch->rx_count == 0 && !ch->tx_alive;
    pn__lock_release(&ch->lock);
    pn__wakelist_wake(&wl);
    free(rx);
    if (last)
        chan_free(ch);
}

static int borrow(pn_watch_rx *rx, void *out, bool update)
{
    if (!rx || !out)
        return -EINVAL;
    wchan *ch = rx->ch;
    pn__lock_acquire(&ch->lock);
    memcpy(out, ch->val, ch->esz);
    uint64_t v = atomic_load_explicit(&ch->version, memory_order_relaxed);
    pn__lock_release(&ch->lock);
    int changed = v != rx->seen;
    if (update)
        rx->seen = v;
    return changed;
}

int pn_watch_borrow(pn_watch_rx *rx, void *out) { return borrow(rx, out, false); }

int pn_watch_borrow_and_update(pn_watch_rx *rx, void *out) { return borrow(rx, out, true); }

/* 1 and *v = the newer version, 0 nothing new, -EPIPE nothing new and
 * closed.  Lock-free; closed is read first (see the top). */
static int check(pn_watch_rx *rx, uint64_t *v)
{
    bool closed = atomic_load_explicit(&rx->ch->closed, memory_order_acquire);
    *v = atomic_load_explicit(&rx->ch->version, memory_order_acquire);
    if (*v != rx->seen)
        return 1;
    return closed ? -EPIPE : 0;
}

int pn_watch_has_changed(pn_watch_rx *rx)
{
    uint64_t v;
    return rx ? check(rx, &v) : -EINVAL;
}

void pn_watch_mark_unchanged(pn_watch_rx *rx)
{
    if (rx)
        rx->seen = atomic_load_explicit(&rx->ch->version, memory_order_acquire);
}

void pn_watch_mark_changed(pn_watch_rx *rx)
{
    if (rx)
        rx->seen = atomic_load_explicit(&rx->ch->version, memory_order_acquire) - 1;
}

/* ---- the changed() future ------------------------------------------------- */

/* waiter.state, the future owner's only. */
#define W_WAITED 1u   /* queued once: later polls go straight to the lock */
#define W_DONE 2u     /* READY: drop is a no-op, rx may be gone */

static pn_poll changed_poll(pn_future *f, pn_cx *cx)
{
    pn_watch_changed_future *c = (pn_watch_changed_future *)f;
    if (!c->rx) {
        c->res = -EINVAL;
        c->waiter.state = W_DONE;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    wchan *ch = c->rx->ch;
    uint64_t v;
    int r;
    if (!(c->waiter.state & W_WAITED)) {
        r = check(c->rx, &v);
        if (r != 0)
            goto done;
        PN_POINT("watch.changed.check", ch);   /* a send may land here */
    }
    pn__lock_acquire(&ch->lock);
    r = check(c->rx, &v);
    if (r != 0) {
        pn__waitq_remove(&ch->waiters, &c->waiter);
        pn_waker w = c->waiter.waker;
        c->waiter.waker = PN_WAKER_NONE;
        pn__lock_release(&ch->lock);
        pn_waker_drop(&w);
        goto done;
    }
    c->waiter.state |= W_WAITED;
    pn_waker_set(&c->waiter.waker, cx->waker);
    if (!c->waiter.queued)
        pn__waitq_push(&ch->waiters, &c->waiter);
    pn__lock_release(&ch->lock);
    return PN_PENDING;
done:
    if (r == 1) {
        c->rx->seen = v;
        c->res = 0;
    } else {
        c->res = r;
    }
    c->waiter.state = W_DONE;
    return PN_READY;
}

static void changed_drop(pn_future *f)
{
    pn_watch_changed_future *c = (pn_watch_changed_future *)f;
    if (!c->rx || (c->waiter.state & W_DONE))
        return;
    wchan *ch = c->rx->ch;
    pn__lock_acquire(&ch->lock);
    pn__waitq_remove(&ch->waiters, &c->waiter);
    pn_waker w = c->waiter.waker;
    c->waiter.waker = PN_WAKER_NONE;
    pn__lock_release(&ch->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable changed_vt = { changed_poll, changed_drop, "watch_changed" };

pn_watch_changed_future pn_watch_changed(pn_watch_rx *rx)
{
    return (pn_watch_changed_future){ .base = { &changed_vt }, .rx = rx };
}

int pn_watch_blocking_changed(pn_watch_rx *rx)
{
    pn_watch_changed_future f = pn_watch_changed(rx);
    int e = pn__sync_block(&f.base);
    return e < 0 ? e : f.res;
}

/* ---- the sender's closed() future ------------------------------------------- */

static pn_poll closed_poll(pn_future *f, pn_cx *cx)
{
    pn_watch_closed_future *c = (pn_watch_closed_future *)f;
    if (!c->tx) {
        c->res = -EINVAL;
        c->waiter.state = W_DONE;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    wchan *ch = CH(c->tx);
    pn__lock_acquire(&ch->lock);
    if (ch->rx_count == 0) {
        pn__waitq_remove(&ch->tx_waiters, &c->waiter);
        pn_waker w = c->waiter.waker;
        c->waiter.waker = PN_WAKER_NONE;
        pn__lock_release(&ch->lock);
        pn_waker_drop(&w);
        c->res = 0;
        c->waiter.state = W_DONE;
        return PN_READY;
    }
    pn_waker_set(&c->waiter.waker, cx->waker);
    if (!c->waiter.queued)
        pn__waitq_push(&ch->tx_waiters, &c->waiter);
    pn__lock_release(&ch->lock);
    return PN_PENDING;
}

static void closed_drop(pn_future *f)
{
    pn_watch_closed_future *c = (pn_watch_closed_future *)f;
    if (!c->tx || (c->waiter.state & W_DONE))
        return;
    wchan *ch = CH(c->tx);
    pn__lock_acquire(&ch->lock);
    pn__waitq_remove(&ch->tx_waiters, &c->waiter);
    pn_waker w = c->waiter.waker;
    c->waiter.waker = PN_WAKER_NONE;
    pn__lock_release(&ch->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable closed_vt = { closed_poll, closed_drop, "watch_tx_closed" };

pn_watch_closed_future pn_watch_tx_closed(pn_watch_tx *tx)
{
    return (pn_watch_closed_future){ .base = { &closed_vt }, .tx = tx };
}
