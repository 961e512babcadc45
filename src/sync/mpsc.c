/*
 * mpsc.c - pn_mpsc: many senders, one receiver, bounded or unbounded
 * (pollen/channel.h).
 *
 * Owns: the channel, one heap block shared by every handle (a handle
 * pointer is the block), and its ring of elem_size-byte slots.
 * Invariants, all under `lock`:
 *   - the queued values are ring slots head .. head+len-1 (mod bufcap);
 *   - len + reserved <= cap, where `reserved` counts the slots granted to
 *     waiting senders that have not polled yet and the slots held by READY
 *     reserve futures (permits) (a put-back value, below, may pass cap
 *     by one until it is received);
 *   - a sender waits only when there was no room, and the receiver grants
 *     each slot it frees to the head of the queue at once: so, outside the
 *     lock, a non-empty queue means no free slot, and a newcomer (or a
 *     try_send) cannot overtake a queued sender;
 *   - `closed` only goes from false to true; a closed channel queues no
 *     sender and takes no value;
 *   - rx_wait is set only while the ring is empty and the receive waits:
 *     the next value, if no sender waits, is handed to it (copied into
 *     its out, no slot used) instead of queued; the ring keeps one spare
 *     slot (bounded: capacity + 1 slots) so a dropped receive can put a
 *     handed value back at the head.
 * The block is freed by the last handle to go (txs == 0 and rx_gone).
 * Wakes: the receiver's waker (one pending receive) and the granted
 * senders' wakers are taken out under the lock and woken after it; a send
 * wakes only when a receive is pending.
 * Schedule point "mpsc.granted" (core/chaos.h): slots were granted to
 * waiting senders and the lock is released, their wakes not made yet.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include "pollen/channel.h"
#include "sync/wait.h"
#include "core/chaos.h"

/* The channel's lock (wait.h: a spin lock released by a plain store). */
typedef pn__lock chan_lock;
#define chan_lock_init pn__lock_init
#define chan_lock_destroy pn__lock_destroy
#define chan_lock_acquire pn__lock_acquire
#define chan_lock_release pn__lock_release

#define UNBOUNDED_INITIAL 16

typedef struct mpsc {
    chan_lock lock;
    size_t head, len, bufcap;  /* the ring */
    size_t cap;                /* at most this many queued + reserved */
    size_t reserved;           /* granted or held slots */
    size_t txs;                /* sender handles */
    bool closed;               /* no new value enters */
    bool rx_gone;              /* the receiver was freed */
    bool unbounded;
    pn__waitq senders;         /* senders waiting for a slot */
    pn__waitq closers;         /* pending pn_mpsc_closed futures */
    pn_waker rx_waker;         /* a pending receive */
    pn_mpsc_recv_future *rx_wait; /* that receive, waiting on an empty ring:
                                   * the next value is handed to it */
    size_t elem_size;
    unsigned char *buf;
} mpsc;

/* A waiting sender's waiter.state */
#define W_WAIT 0u
#define W_GRANTED 1u   /* a slot is counted in `reserved` for it */
#define W_CLOSED 2u    /* woken by close */

/* A send or reserve future's phase */
#define P_NEW 0
#define P_WAIT 1       /* its waiter was queued (it may be granted since) */
#define P_HELD 2       /* a READY reserve holding a slot */
#define P_DONE 3

static mpsc *of_tx(const pn_mpsc_tx *tx) { return (mpsc *)tx; }
static mpsc *of_rx(const pn_mpsc_rx *rx) { return (mpsc *)rx; }

/* ---- creation and the handles ------------------------------------------ */

static int chan_new(size_t cap, size_t bufcap, size_t elem_size, bool unbounded,
                    pn_mpsc_tx **tx, pn_mpsc_rx **rx)
{
    if (tx)
        *tx = NULL;
    if (rx)
        *rx = NULL;
    if (!tx || !rx || cap == 0 || elem_size == 0 || bufcap > SIZE_MAX / elem_size)
        return -EINVAL;
    mpsc *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->buf = malloc(bufcap * elem_size);
    if (!c->buf) {
        free(c);
        return -ENOMEM;
    }
    chan_lock_init(&c->lock);
    c->bufcap = bufcap;
    c->cap = cap;
    c->txs = 1;
    c->unbounded = unbounded;
    c->elem_size = elem_size;
    c->rx_waker = PN_WAKER_NONE;
    *tx = (pn_mpsc_tx *)c;
    *rx = (pn_mpsc_rx *)c;
    return 0;
}

int pn_mpsc_new(size_t capacity, size_t elem_size, pn_mpsc_tx **tx, pn_mpsc_rx **rx)
{
    if (capacity == SIZE_MAX) {
        if (tx)
            *tx = NULL;
        if (rx)
            *rx = NULL;
        return -EINVAL;
    }
    /* One slot more than the capacity: room for a handed-over value that
     * a dropped receive puts back (recv_drop). */
    return chan_new(capacity, capacity + 1, elem_size, false, tx, rx);
}

int pn_mpsc_unbounded_new(size_t elem_size, pn_mpsc_tx **tx, pn_mpsc_rx **rx)
{
    return chan_new(SIZE_MAX, UNBOUNDED_INITIAL, elem_size, true, tx, rx);
}

static void chan_destroy(mpsc *c)
{
    chan_lock_destroy(&c->lock);
    free(c->buf);
    free(c);
}

pn_mpsc_tx *pn_mpsc_tx_clone(pn_mpsc_tx *tx)
{
    if (!tx)
        return NULL;
    mpsc *c = of_tx(tx);
    chan_lock_acquire(&c->lock);
    c->txs++;
    chan_lock_release(&c->lock);
    return tx;
}

void pn_mpsc_tx_free(pn_mpsc_tx *tx)
{
    if (!tx)
        return;
    mpsc *c = of_tx(tx);
    pn_waker w = PN_WAKER_NONE;
    chan_lock_acquire(&c->lock);
    if (--c->txs == 0) {            /* the receiver must see -EPIPE */
        w = c->rx_waker;
        c->rx_waker = PN_WAKER_NONE;
    }
    bool last = c->txs == 0 && c->rx_gone;
    chan_lock_release(&c->lock);
    pn_waker_wake(&w);
    if (last)
        chan_destroy(c);
}

bool pn_mpsc_tx_is_closed(const pn_mpsc_tx *tx)
{
    if (!tx)
        return true;
    mpsc *c = of_tx(tx);
    chan_lock_acquire(&c->lock);
    bool closed = c->closed;
    chan_lock_release(&c->lock);
    return closed;
}

/* A closed future's waiter.tag, the owner's own: its waiter is in the
 * channel (queued, or popped by the close with its waker taken). */
#define CF_REGISTERED 1u

static pn_poll closed_poll(pn_future *f, pn_cx *cx)
{
    pn_mpsc_closed_future *cf = (pn_mpsc_closed_future *)f;
    if (!cf->tx) {
        cf->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    mpsc *c = of_tx(cf->tx);
    pn_sync_waiter *w = &cf->waiter;
    chan_lock_acquire(&c->lock);
    if (c->closed) {
        pn__waitq_remove(&c->closers, w);
        pn_waker stale = w->waker;
        w->waker = PN_WAKER_NONE;
        chan_lock_release(&c->lock);
        pn_waker_drop(&stale);
        w->tag = 0;                     /* nothing of ours in the channel */
        cf->res = 0;
        return PN_READY;
    }
    pn_waker_set(&w->waker, cx->waker);
    if (!w->queued)
        pn__waitq_push(&c->closers, w);
    w->tag = CF_REGISTERED;
    chan_lock_release(&c->lock);
    return PN_PENDING;
}

static void closed_drop(pn_future *f)
{
    pn_mpsc_closed_future *cf = (pn_mpsc_closed_future *)f;
    pn_sync_waiter *w = &cf->waiter;
    /* READY or never polled: a no-op (the sender may be gone already). */
    if (!cf->tx || w->tag != CF_REGISTERED)
        return;
    w->tag = 0;
    mpsc *c = of_tx(cf->tx);
    chan_lock_acquire(&c->lock);
    pn__waitq_remove(&c->closers, w);
    pn_waker stale = w->waker;
    w->waker = PN_WAKER_NONE;
    chan_lock_release(&c->lock);
    pn_waker_drop(&stale);
}

static const pn_future_vtable closed_vt = { closed_poll, closed_drop, "pn_mpsc_closed" };

pn_mpsc_closed_future pn_mpsc_closed(pn_mpsc_tx *tx)
{
    return (pn_mpsc_closed_future){ .base = { &closed_vt }, .tx = tx };
}

size_t pn_mpsc_len(const pn_mpsc_rx *rx)
{
    if (!rx)
        return 0;
    mpsc *c = of_rx(rx);
    chan_lock_acquire(&c->lock);
    size_t n = c->len;
    chan_lock_release(&c->lock);
    return n;
}

size_t pn_mpsc_capacity(const pn_mpsc_tx *tx)
{
    if (!tx)
        return 0;
    mpsc *c = of_tx(tx);
    if (c->unbounded)
        return SIZE_MAX;
    chan_lock_acquire(&c->lock);
    /* A put-back value (recv_drop) may leave len + reserved at cap + 1. */
    size_t used = c->len + c->reserved;
    size_t n = used < c->cap ? c->cap - used : 0;
    chan_lock_release(&c->lock);
    return n;
}

size_t pn_mpsc_max_capacity(const pn_mpsc_tx *tx)
{
    return tx ? of_tx(tx)->cap : 0;
}

/* ---- the ring (lock held) ------------------------------------------------- */

static bool has_room(const mpsc *c) { return c->len + c->reserved < c->cap; }

/* memcpy of n bytes, inlined for the common small element sizes (a call
 * through the PLT otherwise, on every send and receive). */
static inline void copy_bytes(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
    }
}

/* Append one value (the ring has a free slot), or hand it straight to the
 * receive that waits on an empty ring when no sender waits for a slot
 * (handing over uses no slot): the value goes into its `out` and
 * its `delivered` flag is set (release), so its next poll completes
 * without the lock.  Nothing of the receive is touched after the flag.
 * Returns the receiver's waker to wake after unlocking (none when no
 * receive is pending). */
static pn_waker push_locked(mpsc *c, const void *value)
{
    pn_mpsc_recv_future *r = c->rx_wait;
    c->rx_wait = NULL;
    if (r && pn__waitq_empty(&c->senders)) {
        copy_bytes(r->out, value, c->elem_size);
        atomic_store_explicit(&r->delivered, true, memory_order_release);
    } else {
        /* Into the ring.  Also when senders wait: a hand-over would free
         * the sender's slot with nobody granting it (the receiver grants
         * when it pops).  The woken receive then polls under the lock. */
        size_t i = c->head + c->len;
        if (i >= c->bufcap)
            i -= c->bufcap;
        copy_bytes(c->buf + i * c->elem_size, value, c->elem_size);
        c->len++;
    }
    pn_waker w = c->rx_waker;
    c->rx_waker = PN_WAKER_NONE;
    return w;
}

/* Unbounded: double the ring before a push that would leave it without a
 * spare slot (the spare is for recv_drop's put-back).  Returns the old
 * buffer to free after unlocking (NULL if none), or sets *err to -ENOMEM. */
static unsigned char *grow_locked(mpsc *c, int *err)
{
    *err = 0;
    if (c->len + 2 <= c->bufcap)
        return NULL;
    if (c->bufcap > SIZE_MAX / 2 / c->elem_size) {
        *err = -ENOMEM;
        return NULL;
    }
    size_t ncap = c->bufcap * 2, es = c->elem_size;
    unsigned char *nb = malloc(ncap * es);
    if (!nb) {
        *err = -ENOMEM;
        return NULL;
    }
    size_t first = c->bufcap - c->head;
    if (first > c->len)
        first = c->len;
    memcpy(nb, c->buf + c->head * es, first * es);
    memcpy(nb + first * es, c->buf, (c->len - first) * es);
    unsigned char *old = c->buf;
    c->buf = nb;
    c->bufcap = ncap;
    c->head = 0;
    return old;
}

/* Take up to max values into out; returns how many. */
static size_t pop_locked(mpsc *c, unsigned char *out, size_t max)
{
    size_t n = c->len < max ? c->len : max, es = c->elem_size;
    size_t first = c->bufcap - c->head;
    if (first > n)
        first = n;
    copy_bytes(out, c->buf + c->head * es, first * es);
    if (n > first)
        memcpy(out + first * es, c->buf, (n - first) * es);
    c->head += n;
    if (c->head >= c->bufcap)
        c->head -= c->bufcap;
    c->len -= n;
    if (c->len == 0)
        c->head = 0;
    return n;
}

/* Grant free slots to waiting senders, in order, taking their wakers into
 * wl.  Returns true when wl filled up with more to grant (wake it and call
 * again). */
static bool grant_locked(mpsc *c, pn__wakelist *wl)
{
    while (!pn__waitq_empty(&c->senders) && has_room(c)) {
        if (pn__wakelist_full(wl))
            return true;
        pn_sync_waiter *w = pn__waitq_pop(&c->senders);
        w->state = W_GRANTED;
        c->reserved++;
        pn__wakelist_push(wl, &w->waker);
    }
    return false;
}

/* Release the lock, then wake what was granted; grants again while the
 * wake list overflowed.  Lock held on entry, released on return. */
static void release_and_grant(mpsc *c, pn__wakelist *wl)
{
    for (;;) {
        bool more = grant_locked(c, wl);
        chan_lock_release(&c->lock);
        if (wl->n) {
            PN_POINT("mpsc.granted", c);
            pn__wakelist_wake(wl);
        }
        if (!more)
            return;
        chan_lock_acquire(&c->lock);
    }
}

/* Give back one slot counted in `reserved`: it goes to the next waiting
 * sender.  Lock held on entry, released on return. */
static void give_back_and_release(mpsc *c)
{
    c->reserved--;
    pn__wakelist wl;
    wl.n = 0;
    release_and_grant(c, &wl);
}

/* ---- sending ------------------------------------------------------------------ */

static const pn_future_vtable send_vt, reserve_vt;

static pn_poll send_ready(pn_mpsc_send_future *s, int status, int phase)
{
    s->res = status;
    s->phase = phase;
    return PN_READY;
}

/*
 * The poll of a send and of a reserve.  Lock held on entry, released on
 * return.  A slot in hand (granted, or free with nobody queued) is used at
 * once: a send copies its value in, a reserve keeps the slot (P_HELD).
 */
static pn_poll send_poll_locked(mpsc *c, pn_mpsc_send_future *s, bool reserve, pn_cx *cx)
{
    pn_sync_waiter *w = &s->waiter;
    pn_waker stale = PN_WAKER_NONE, rxw = PN_WAKER_NONE;
    bool granted = false;
    if (s->phase == P_WAIT) {
        if (w->state == W_WAIT && !c->closed) {
            /* Still queued (a grant or a close takes it off): keep its
             * place, refresh its waker. */
            pn_waker_set(&w->waker, cx->waker);
            chan_lock_release(&c->lock);
            return PN_PENDING;
        }
        granted = w->state == W_GRANTED;
        pn__waitq_remove(&c->senders, w);
        stale = w->waker;
        w->waker = PN_WAKER_NONE;
        w->state = W_WAIT;
    }
    if (c->closed) {
        if (granted)
            c->reserved--;              /* nobody waits on a closed channel */
        chan_lock_release(&c->lock);
        pn_waker_drop(&stale);
        return send_ready(s, -EPIPE, P_DONE);
    }
    if (!granted) {
        if (c->unbounded) {
            int err;
            unsigned char *old = grow_locked(c, &err);
            if (!err)
                rxw = push_locked(c, s->value);
            chan_lock_release(&c->lock);
            free(old);
            pn_waker_wake(&rxw);
            return send_ready(s, err, P_DONE);
        }
        if (!pn__waitq_empty(&c->senders) || !has_room(c)) {
            /* No slot, or others wait first: queue for a grant. */
            w->state = W_WAIT;
            w->waker = PN_WAKER_NONE;
            pn_waker_set(&w->waker, cx->waker);
            pn__waitq_push(&c->senders, w);
            s->phase = P_WAIT;
            chan_lock_release(&c->lock);
            return PN_PENDING;
        }
        c->reserved++;
    }
    /* A slot is ours, counted in `reserved`. */
    if (reserve) {
        chan_lock_release(&c->lock);
        pn_waker_drop(&stale);
        return send_ready(s, 0, P_HELD);
    }
    c->reserved--;
    rxw = push_locked(c, s->value);
    chan_lock_release(&c->lock);
    pn_waker_drop(&stale);
    pn_waker_wake(&rxw);
    return send_ready(s, 0, P_DONE);
}

static pn_poll send_poll(pn_future *f, pn_cx *cx)
{
    pn_mpsc_send_future *s = (pn_mpsc_send_future *)f;
    bool reserve = f->vt == &reserve_vt;
    if (s->phase == P_HELD || s->phase == P_DONE)
        return PN_READY;
    if (!s->tx || (!reserve && !s->value) || (reserve && of_tx(s->tx)->unbounded))
        return send_ready(s, -EINVAL, P_DONE);
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    mpsc *c = of_tx(s->tx);
    chan_lock_acquire(&c->lock);
    return send_poll_locked(c, s, reserve, cx);
}

static void send_drop(pn_future *f)
{
    pn_mpsc_send_future *s = (pn_mpsc_send_future *)f;
    if (s->phase == P_HELD) {
        pn_mpsc_permit_release(s);
        return;
    }
    if (s->phase != P_WAIT)
        return;
    mpsc *c = of_tx(s->tx);
    pn_sync_waiter *w = &s->waiter;
    chan_lock_acquire(&c->lock);
    pn__waitq_remove(&c->senders, w);
    pn_waker mine = w->waker;
    w->waker = PN_WAKER_NONE;
    s->phase = P_DONE;
    if (w->state == W_GRANTED) {
        w->state = W_WAIT;
        give_back_and_release(c);       /* to the next waiting sender */
    } else {
        chan_lock_release(&c->lock);
    }
    pn_waker_drop(&mine);
}

static const pn_future_vtable send_vt = { send_poll, send_drop, "pn_mpsc_send" };
static const pn_future_vtable reserve_vt = { send_poll, send_drop, "pn_mpsc_reserve" };

pn_mpsc_send_future pn_mpsc_send(pn_mpsc_tx *tx, const void *value)
{
    return (pn_mpsc_send_future){ .base = { &send_vt }, .tx = tx, .value = value };
}

pn_mpsc_reserve_future pn_mpsc_reserve(pn_mpsc_tx *tx)
{
    return (pn_mpsc_reserve_future){ .base = { &reserve_vt }, .tx = tx };
}

int pn_mpsc_unbounded_send(pn_mpsc_tx *tx, const void *value)
{
    if (!tx || !value || !of_tx(tx)->unbounded)
        return -EINVAL;
    mpsc *c = of_tx(tx);
    chan_lock_acquire(&c->lock);
    if (c->closed) {
        chan_lock_release(&c->lock);
        return -EPIPE;
    }
    int err;
    unsigned char *old = grow_locked(c, &err);
    pn_waker rxw = PN_WAKER_NONE;
    if (!err)
        rxw = push_locked(c, value);
    chan_lock_release(&c->lock);
    free(old);
    pn_waker_wake(&rxw);
    return err;
}

int pn_mpsc_try_send(pn_mpsc_tx *tx, const void *value)
{
    if (!tx || !value)
        return -EINVAL;
    mpsc *c = of_tx(tx);
    if (c->unbounded)
        return pn_mpsc_unbounded_send(tx, value);
    chan_lock_acquire(&c->lock);
    if (c->closed) {
        chan_lock_release(&c->lock);
        return -EPIPE;
    }
    if (!pn__waitq_empty(&c->senders) || !has_room(c)) {
        chan_lock_release(&c->lock);
        return -EAGAIN;
    }
    pn_waker rxw = push_locked(c, value);
    chan_lock_release(&c->lock);
    pn_waker_wake(&rxw);
    return 0;
}

int pn_mpsc_blocking_send(pn_mpsc_tx *tx, const void *value)
{
    pn_mpsc_send_future s = pn_mpsc_send(tx, value);
    int err = pn__sync_block(&s.base);
    return err ? err : s.res;
}

int pn_mpsc_try_reserve(pn_mpsc_tx *tx, pn_mpsc_reserve_future *out)
{
    if (!tx || !out || of_tx(tx)->unbounded)
        return -EINVAL;
    *out = pn_mpsc_reserve(tx);
    mpsc *c = of_tx(tx);
    chan_lock_acquire(&c->lock);
    int err = 0;
    if (c->closed)
        err = -EPIPE;
    else if (!pn__waitq_empty(&c->senders) || !has_room(c))
        err = -EAGAIN;
    else
        c->reserved++;
    chan_lock_release(&c->lock);
    out->res = err;
    out->phase = err ? P_DONE : P_HELD;
    return err;
}

int pn_mpsc_permit_send(pn_mpsc_reserve_future *p, const void *value)
{
    if (!p || !value || p->phase != P_HELD)
        return -EINVAL;
    mpsc *c = of_tx(p->tx);
    p->phase = P_DONE;
    chan_lock_acquire(&c->lock);
    c->reserved--;
    if (c->closed) {
        chan_lock_release(&c->lock);   /* nobody waits on a closed channel */
        return -EPIPE;
    }
    pn_waker rxw = push_locked(c, value);
    chan_lock_release(&c->lock);
    pn_waker_wake(&rxw);
    return 0;
}

void pn_mpsc_permit_release(pn_mpsc_reserve_future *p)
{
    if (!p || p->phase != P_HELD)
        return;
    mpsc *c = of_tx(p->tx);
    p->phase = P_DONE;
    chan_lock_acquire(&c->lock);
    give_back_and_release(c);
}

/* ---- receiving ------------------------------------------------------------------ */

static pn_poll recv_poll(pn_future *f, pn_cx *cx)
{
    pn_mpsc_recv_future *r = (pn_mpsc_recv_future *)f;
    if (!r->rx || !r->out || r->max == 0) {
        r->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    if (r->waiting && atomic_load_explicit(&r->delivered, memory_order_acquire)) {
        r->waiting = false;             /* a send handed its value over */
        r->count = 1;
        r->res = 0;
        return PN_READY;
    }
    mpsc *c = of_rx(r->rx);
    chan_lock_acquire(&c->lock);
    if (r->waiting) {
        r->waiting = false;
        if (atomic_load_explicit(&r->delivered, memory_order_relaxed)) {
            chan_lock_release(&c->lock);
            r->count = 1;
            r->res = 0;
            return PN_READY;
        }
        c->rx_wait = NULL;              /* it was us; registered again below */
    }
    if (c->len) {
        r->count = pop_locked(c, r->out, r->max);
        r->res = 0;
        pn_waker stale = c->rx_waker;
        c->rx_waker = PN_WAKER_NONE;
        if (pn__waitq_empty(&c->senders)) {
            chan_lock_release(&c->lock);
        } else {
            pn__wakelist wl;
            wl.n = 0;
            release_and_grant(c, &wl);
        }
        pn_waker_drop(&stale);
        return PN_READY;
    }
    if (c->closed || c->txs == 0) {
        pn_waker stale = c->rx_waker;
        c->rx_waker = PN_WAKER_NONE;
        chan_lock_release(&c->lock);
        pn_waker_drop(&stale);
        r->count = 0;
        r->res = -EPIPE;
        return PN_READY;
    }
    pn_waker_set(&c->rx_waker, cx->waker);
    c->rx_wait = r;
    r->waiting = true;
    chan_lock_release(&c->lock);
    return PN_PENDING;
}

/* A pending receive goes.  If a send already handed it a value, that
 * value is put back first in line (the ring keeps a spare slot for it), so
 * a dropped receive loses nothing. */
static void recv_drop(pn_future *f)
{
    pn_mpsc_recv_future *r = (pn_mpsc_recv_future *)f;
    if (!r->rx || !r->waiting)
        return;
    mpsc *c = of_rx(r->rx);
    pn_waker w = PN_WAKER_NONE;
    chan_lock_acquire(&c->lock);
    r->waiting = false;
    if (atomic_load_explicit(&r->delivered, memory_order_relaxed)) {
        c->head = c->head ? c->head - 1 : c->bufcap - 1;
        copy_bytes(c->buf + c->head * c->elem_size, r->out, c->elem_size);
        c->len++;
    } else {
        c->rx_wait = NULL;
        w = c->rx_waker;
        c->rx_waker = PN_WAKER_NONE;
    }
    chan_lock_release(&c->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable recv_vt = { recv_poll, recv_drop, "pn_mpsc_recv" };

pn_mpsc_recv_future pn_mpsc_recv(pn_mpsc_rx *rx, void *out)
{
    return (pn_mpsc_recv_future){ .base = { &recv_vt }, .rx = rx, .out = out, .max = 1 };
}

pn_mpsc_recv_future pn_mpsc_recv_many(pn_mpsc_rx *rx, void *out_array, size_t max)
{
    return (pn_mpsc_recv_future){ .base = { &recv_vt }, .rx = rx, .out = out_array, .max = max };
}

int pn_mpsc_try_recv(pn_mpsc_rx *rx, void *out)
{
    if (!rx || !out)
        return -EINVAL;
    mpsc *c = of_rx(rx);
    chan_lock_acquire(&c->lock);
    if (c->len) {
        pop_locked(c, out, 1);
        pn__wakelist wl;
        wl.n = 0;
        release_and_grant(c, &wl);
        return 0;
    }
    int err = c->closed || c->txs == 0 ? -EPIPE : -EAGAIN;
    chan_lock_release(&c->lock);
    return err;
}

int pn_mpsc_blocking_recv(pn_mpsc_rx *rx, void *out)
{
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, out);
    int err = pn__sync_block(&r.base);
    return err ? err : r.res;
}

/* Close: every waiting sender is woken to see it.  Lock held on entry,
 * released on return; the receiver's waker is woken too unless `drop_rx`
 * (the receiver is going). */
static void close_and_release(mpsc *c, bool drop_rx)
{
    c->closed = true;
    pn_waker rxw = c->rx_waker;
    c->rx_waker = PN_WAKER_NONE;
    pn__wakelist wl;
    wl.n = 0;
    for (;;) {
        pn__waitq *q = !pn__waitq_empty(&c->senders) ? &c->senders : &c->closers;
        if (pn__waitq_empty(q))
            break;
        if (pn__wakelist_full(&wl)) {
            chan_lock_release(&c->lock);
            pn__wakelist_wake(&wl);
            chan_lock_acquire(&c->lock);
            continue;
        }
        pn_sync_waiter *w = pn__waitq_pop(q);
        w->state = W_CLOSED;
        pn__wakelist_push(&wl, &w->waker);
    }
    chan_lock_release(&c->lock);
    pn__wakelist_wake(&wl);
    if (drop_rx)
        pn_waker_drop(&rxw);
    else
        pn_waker_wake(&rxw);
}

void pn_mpsc_rx_close(pn_mpsc_rx *rx)
{
    if (!rx)
        return;
    mpsc *c = of_rx(rx);
    chan_lock_acquire(&c->lock);
    close_and_release(c, false);
}

void pn_mpsc_rx_free(pn_mpsc_rx *rx)
{
    if (!rx)
        return;
    mpsc *c = of_rx(rx);
    chan_lock_acquire(&c->lock);
    close_and_release(c, true);
    /* rx_gone is set last, in one lock hold with the test of txs: from
     * then on the last sender's free may free the block. */
    chan_lock_acquire(&c->lock);
    c->rx_gone = true;
    c->rx_wait = NULL;
    c->len = 0;                         /* queued values are discarded */
    c->head = 0;
    bool last = c->txs == 0;
    chan_lock_release(&c->lock);
    if (last)
        chan_destroy(c);
}
