/*
 * broadcast.c - the broadcast channel (pollen/broadcast.h): a ring of the
 * last `capacity` values that every receiver reads at its own cursor.
 *
 * Owns: the channel (lock, ring, counts, queue of waiting receives) and
 * the receivers (a cursor each).
 *
 * Positions.  Values are numbered from 0 in send order; `tail` is the
 * number sent so far, and value p lives in slot p % capacity while
 * tail - capacity <= p < tail.  A receiver's cursor `next` is the position
 * it reads next: next == tail is "nothing new", next < tail - capacity is
 * "lagged" (its value was overwritten).  Everything is read and written
 * under the lock except two fast checks: `tail` and `closed` are atomics
 * stored under the lock, so try_recv and a receive's poll can tell
 * "nothing new" without taking it.
 *
 * Waiting.  A receive that finds nothing registers its waker and queues
 * its waiter under the lock, after checking again under the lock: a send
 * that ran between the lock-free check and the lock is seen by that
 * second check (the point "broadcast.recv.check" sits in that window for
 * tests).  A send or the close takes every waiter off the queue and wakes
 * them after unlocking; the woken receive polls again and copies its value
 * under the lock.  Nothing is handed to a waiter, so a dropped waiter has
 * nothing to give back.
 */
#include <stdlib.h>
#include <string.h>
#include "pollen/broadcast.h"
#include "sync/wait.h"
#include "core/chaos.h"

typedef struct bchan {
    pn__lock lock;
    _Atomic uint64_t tail;      /* values sent so far (stored under lock) */
    _Atomic bool closed;        /* every sender gone (stored under lock) */
    size_t cap, esz;
    size_t tx_count, rx_count;  /* under lock */
    pn__waitq waiters;          /* receives waiting, under lock */
    unsigned char buf[];        /* cap * esz */
} bchan;

struct pn_broadcast_rx {
    bchan *ch;
    uint64_t next;              /* the receiver owner's only */
};

/* The handle type of senders is the channel itself (counted). */
#define CH(tx) ((bchan *)(void *)(tx))

int pn_broadcast_new(size_t capacity, size_t elem_size, pn_broadcast_tx **tx,
                     pn_broadcast_rx **rx)
{
    if (tx)
        *tx = NULL;
    if (rx)
        *rx = NULL;
    if (!tx || capacity == 0 || elem_size == 0 ||
        capacity > (SIZE_MAX - sizeof(bchan)) / elem_size)
        return -EINVAL;
    bchan *ch = malloc(sizeof *ch + capacity * elem_size);
    if (!ch)
        return -ENOMEM;
    pn_broadcast_rx *r = NULL;
    if (rx && !(r = malloc(sizeof *r))) {
        free(ch);
        return -ENOMEM;
    }
    pn__lock_init(&ch->lock);
    atomic_init(&ch->tail, 0);
    atomic_init(&ch->closed, false);
    ch->cap = capacity;
    ch->esz = elem_size;
    ch->tx_count = 1;
    ch->rx_count = r ? 1 : 0;
    ch->waiters = (pn__waitq){ NULL, NULL };
    if (r) {
        r->ch = ch;
        r->next = 0;
        *rx = r;
    }
    *tx = (pn_broadcast_tx *)(void *)ch;
    return 0;
}

static void chan_free(bchan *ch)
{
    pn__lock_destroy(&ch->lock);
    free(ch);
}

/* Move every waiter's waker into `wl`, waking in batches when it fills
 * (the lock is dropped and taken again for that: the caller keeps the
 * channel alive).  Called and returns with the lock held. */
static void drain_waiters(bchan *ch, pn__wakelist *wl)
{
    pn_sync_waiter *w;
    while ((w = pn__waitq_pop(&ch->waiters))) {
        if (pn__wakelist_full(wl)) {
            pn__lock_release(&ch->lock);
            pn__wakelist_wake(wl);
            pn__lock_acquire(&ch->lock);
        }
        pn__wakelist_push(wl, &w->waker);
    }
}

long pn_broadcast_send(pn_broadcast_tx *tx, const void *value)
{
    if (!tx || !value)
        return -EINVAL;
    bchan *ch = CH(tx);
    pn__wakelist wl = { 0 };
    pn__lock_acquire(&ch->lock);
    size_t n = ch->rx_count;
    if (n == 0) {
        pn__lock_release(&ch->lock);
        return -EPIPE;
    }
    uint64_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    memcpy(ch->buf + (size_t)(t % ch->cap) * ch->esz, value, ch->esz);
    atomic_store_explicit(&ch->tail, t + 1, memory_order_release);
    drain_waiters(ch, &wl);
    pn__lock_release(&ch->lock);
    pn__wakelist_wake(&wl);
    return (long)n;
}

pn_broadcast_tx *pn_broadcast_tx_clone(pn_broadcast_tx *tx)
{
    if (!tx)
        return NULL;
    bchan *ch = CH(tx);
    pn__lock_acquire(&ch->lock);
    ch->tx_count++;
    pn__lock_release(&ch->lock);
    return tx;
}

void pn_broadcast_tx_free(pn_broadcast_tx *tx)
{
    if (!tx)
        return;
    bchan *ch = CH(tx);
    pn__wakelist wl = { 0 };
    pn__lock_acquire(&ch->lock);
    if (ch->tx_count == 1) {
        /* Our count is kept until the end: the channel stays alive while
         * drain_waiters drops the lock. */
        atomic_store_explicit(&ch->closed, true, memory_order_release);
        drain_waiters(ch, &wl);
    }
    ch->tx_count--;
    bool last = ch->tx_count == 0 && ch->rx_count == 0;
    pn__lock_release(&ch->lock);
    pn__wakelist_wake(&wl);
    if (last)
        chan_free(ch);
}

/* A receiver at position `next`, or at the tail when `at_tail`. */
static int rx_new(bchan *ch, uint64_t next, bool at_tail, pn_broadcast_rx **out)
{
    pn_broadcast_rx *r = malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    r->ch = ch;
    pn__lock_acquire(&ch->lock);
    ch->rx_count++;
    r->next = at_tail ? atomic_load_explicit(&ch->tail, memory_order_relaxed) : next;
    pn__lock_release(&ch->lock);
    *out = r;
    return 0;
}

int pn_broadcast_subscribe(pn_broadcast_tx *tx, pn_broadcast_rx **out)
{
    if (out)
        *out = NULL;
    if (!tx || !out)
        return -EINVAL;
    return rx_new(CH(tx), 0, true, out);
}

int pn_broadcast_rx_clone(pn_broadcast_rx *rx, pn_broadcast_rx **out)
{
    if (out)
        *out = NULL;
    if (!rx || !out)
        return -EINVAL;
    return rx_new(rx->ch, rx->next, false, out);
}

void pn_broadcast_rx_free(pn_broadcast_rx *rx)
{
    if (!rx)
        return;
    bchan *ch = rx->ch;
    pn__lock_acquire(&ch->lock);
    ch->rx_count--;
    bool last = ch->tx_count == 0 && ch->rx_count == 0;
    pn__lock_release(&ch->lock);
    free(rx);
    if (last)
        chan_free(ch);
}

size_t pn_broadcast_receiver_count(pn_broadcast_tx *tx)
{
    if (!tx)
        return 0;
    bchan *ch = CH(tx);
    pn__lock_acquire(&ch->lock);
    size_t n = ch->rx_count;
    pn__lock_release(&ch->lock);
    return n;
}

size_t pn_broadcast_len(pn_broadcast_rx *rx)
{
    if (!rx)
        return 0;
    uint64_t t = atomic_load_explicit(&rx->ch->tail, memory_order_acquire);
    uint64_t d = t - rx->next;
    return d > rx->ch->cap ? rx->ch->cap : (size_t)d;
}

/* Nothing new for rx, read without the lock (tail and closed only grow). */
static bool looks_empty(pn_broadcast_rx *rx)
{
    bchan *ch = rx->ch;
    return !atomic_load_explicit(&ch->closed, memory_order_acquire) &&
           atomic_load_explicit(&ch->tail, memory_order_acquire) == rx->next;
}

/* The receive itself, under the lock. */
static int take_locked(pn_broadcast_rx *rx, void *out, uint64_t *lagged)
{
    bchan *ch = rx->ch;
    uint64_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    *lagged = 0;
    if (rx->next == t)
        return atomic_load_explicit(&ch->closed, memory_order_relaxed) ? -EPIPE : -EAGAIN;
    uint64_t oldest = t > ch->cap ? t - ch->cap : 0;
    if (rx->next < oldest) {
        *lagged = oldest - rx->next;
        rx->next = oldest;
        return -EOVERFLOW;
    }
    memcpy(out, ch->buf + (size_t)(rx->next % ch->cap) * ch->esz, ch->esz);
    rx->next++;
    return 0;
}

int pn_broadcast_try_recv(pn_broadcast_rx *rx, void *out, uint64_t *lagged)
{
    uint64_t lag = 0;
    if (lagged)
        *lagged = 0;
    if (!rx || !out)
        return -EINVAL;
    if (looks_empty(rx))
        return -EAGAIN;
    pn__lock_acquire(&rx->ch->lock);
    int r = take_locked(rx, out, &lag);
    pn__lock_release(&rx->ch->lock);
    if (lagged)
        *lagged = lag;
    return r;
}

/* ---- the recv future ------------------------------------------------------ */

/* waiter.state, touched by the future's owner only (queued and waker are
 * the lock's). */
#define W_WAITED 1u   /* it queued once: the first lock-free check is done */
#define W_DONE 2u     /* READY: drop is a no-op, rx may be gone */

static pn_poll recv_poll(pn_future *f, pn_cx *cx)
{
    pn_broadcast_recv_future *r = (pn_broadcast_recv_future *)f;
    if (!r->rx || !r->out) {
        r->res = -EINVAL;
        r->waiter.state = W_DONE;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    bchan *ch = r->rx->ch;
    if (!(r->waiter.state & W_WAITED) && looks_empty(r->rx))
        PN_POINT("broadcast.recv.check", ch);   /* a send may land here */
    pn__lock_acquire(&ch->lock);
    int st = take_locked(r->rx, r->out, &r->lagged);
    if (st != -EAGAIN) {
        pn__waitq_remove(&ch->waiters, &r->waiter);
        pn_waker w = r->waiter.waker;
        r->waiter.waker = PN_WAKER_NONE;
        pn__lock_release(&ch->lock);
        pn_waker_drop(&w);
        r->res = st;
        r->waiter.state = W_DONE;
        return PN_READY;
    }
    r->waiter.state |= W_WAITED;
    pn_waker_set(&r->waiter.waker, cx->waker);
    if (!r->waiter.queued)
        pn__waitq_push(&ch->waiters, &r->waiter);
    pn__lock_release(&ch->lock);
    return PN_PENDING;
}

static void recv_drop(pn_future *f)
{
    pn_broadcast_recv_future *r = (pn_broadcast_recv_future *)f;
    if (!r->rx || (r->waiter.state & W_DONE))
        return;                 /* never polled is fine too: nothing queued */
    bchan *ch = r->rx->ch;
    pn__lock_acquire(&ch->lock);
    pn__waitq_remove(&ch->waiters, &r->waiter);
    pn_waker w = r->waiter.waker;
    r->waiter.waker = PN_WAKER_NONE;
    pn__lock_release(&ch->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable recv_vt = { recv_poll, recv_drop, "broadcast_recv" };

pn_broadcast_recv_future pn_broadcast_recv(pn_broadcast_rx *rx, void *out)
{
    return (pn_broadcast_recv_future){ .base = { &recv_vt }, .rx = rx, .out = out };
}

int pn_broadcast_blocking_recv(pn_broadcast_rx *rx, void *out, uint64_t *lagged)
{
    if (lagged)
        *lagged = 0;
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, out);
    int e = pn__sync_block(&f.base);
    if (e < 0)
        return e;
    if (lagged)
        *lagged = f.lagged;
    return f.res;
}
