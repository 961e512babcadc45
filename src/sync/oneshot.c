/*
 * oneshot.c - pn_oneshot: one value from one sender to one receiver
 * (pollen/channel.h).
 *
 * Owns: the channel, one heap block shared by the two handles (both
 * handle pointers are the block), with the value cell at its end.
 * Invariants: every field but elem_size is guarded by `lock`.  The value
 * cell holds a value exactly while SENT is set and TAKEN is not.  The
 * block is freed by whichever handle goes second (TX_GONE and RX_GONE
 * both set, seen under the lock).
 * Wakes: the receiver's waker (a pending recv) and the sender's (a pending
 * closed) are taken out under the lock and woken after it.
 */
#include <stdlib.h>
#include <string.h>
#include "pollen/channel.h"
#include "sync/wait.h"

#define SENT 1u      /* the value was sent */
#define TAKEN 2u     /* the value was received */
#define TX_GONE 4u   /* the sender was consumed */
#define RX_GONE 8u   /* the receiver was freed */

typedef struct oneshot {
    pn__lock lock;
    unsigned state;
    pn_waker rx_waker;   /* a pending recv */
    pn_waker tx_waker;   /* a pending closed */
    size_t elem_size;
    unsigned char value[];
} oneshot;

static oneshot *of_tx(const pn_oneshot_tx *tx) { return (oneshot *)tx; }
static oneshot *of_rx(const pn_oneshot_rx *rx) { return (oneshot *)rx; }

static void oneshot_destroy(oneshot *o)
{
    pn__lock_destroy(&o->lock);
    free(o);
}

int pn_oneshot_new(size_t elem_size, pn_oneshot_tx **tx, pn_oneshot_rx **rx)
{
    if (tx)
        *tx = NULL;
    if (rx)
        *rx = NULL;
    if (!tx || !rx || elem_size == 0 || elem_size > SIZE_MAX - sizeof(oneshot))
        return -EINVAL;
    oneshot *o = malloc(sizeof *o + elem_size);
    if (!o)
        return -ENOMEM;
    pn__lock_init(&o->lock);
    o->state = 0;
    o->rx_waker = PN_WAKER_NONE;
    o->tx_waker = PN_WAKER_NONE;
    o->elem_size = elem_size;
    *tx = (pn_oneshot_tx *)o;
    *rx = (pn_oneshot_rx *)o;
    return 0;
}

/* The sender goes, with or without a value: wake the receiver, free the
 * block if the receiver went first. */
static int tx_finish(oneshot *o, const void *value)
{
    int err = 0;
    pn__lock_acquire(&o->lock);
    if (value) {
        if (o->state & RX_GONE) {
            err = -EPIPE;
        } else {
            memcpy(o->value, value, o->elem_size);
            o->state |= SENT;
        }
    }
    o->state |= TX_GONE;
    pn_waker w = o->rx_waker;
    o->rx_waker = PN_WAKER_NONE;
    pn_waker mine = o->tx_waker;         /* a closed future of ours: not woken */
    o->tx_waker = PN_WAKER_NONE;
    bool last = o->state & RX_GONE;
    pn__lock_release(&o->lock);
    pn_waker_wake(&w);
    pn_waker_drop(&mine);
    if (last)
        oneshot_destroy(o);
    return err;
}

int pn_oneshot_send(pn_oneshot_tx *tx, const void *value)
{
    if (!tx || !value)
        return -EINVAL;
    return tx_finish(of_tx(tx), value);
}

void pn_oneshot_tx_free(pn_oneshot_tx *tx)
{
    if (tx)
        tx_finish(of_tx(tx), NULL);
}

bool pn_oneshot_tx_is_closed(const pn_oneshot_tx *tx)
{
    if (!tx)
        return true;
    oneshot *o = of_tx(tx);
    pn__lock_acquire(&o->lock);
    bool closed = o->state & RX_GONE;
    pn__lock_release(&o->lock);
    return closed;
}

/* ---- the sender's closed future ---------------------------------------- */

static pn_poll closed_poll(pn_future *f, pn_cx *cx)
{
    pn_oneshot_closed_future *c = (pn_oneshot_closed_future *)f;
    if (!c->tx) {
        c->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    oneshot *o = of_tx(c->tx);
    pn__lock_acquire(&o->lock);
    if (o->state & RX_GONE) {
        /* rx_free took our waker out (if any): nothing of ours is left
         * in the channel, so a drop from now on does not touch it. */
        pn__lock_release(&o->lock);
        c->waiting = false;
        c->res = 0;
        return PN_READY;
    }
    pn_waker_set(&o->tx_waker, cx->waker);
    c->waiting = true;
    pn__lock_release(&o->lock);
    return PN_PENDING;
}

static void closed_drop(pn_future *f)
{
    pn_oneshot_closed_future *c = (pn_oneshot_closed_future *)f;
    /* READY or never polled: a no-op (the sender may be gone already). */
    if (!c->tx || !c->waiting)
        return;
    c->waiting = false;
    oneshot *o = of_tx(c->tx);
    pn__lock_acquire(&o->lock);
    pn_waker w = o->tx_waker;
    o->tx_waker = PN_WAKER_NONE;
    pn__lock_release(&o->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable closed_vt = { closed_poll, closed_drop, "pn_oneshot_closed" };

pn_oneshot_closed_future pn_oneshot_closed(pn_oneshot_tx *tx)
{
    return (pn_oneshot_closed_future){ .base = { &closed_vt }, .tx = tx };
}

/* ---- the receiver ------------------------------------------------------------ */

/* Lock held.  0 / -EPIPE / -EAGAIN. */
static int take_locked(oneshot *o, void *out)
{
    if ((o->state & (SENT | TAKEN)) == SENT) {
        memcpy(out, o->value, o->elem_size);
        o->state |= TAKEN;
        return 0;
    }
    if (o->state & (TX_GONE | TAKEN))
        return -EPIPE;
    return -EAGAIN;
}

int pn_oneshot_try_recv(pn_oneshot_rx *rx, void *out)
{
    if (!rx || !out)
        return -EINVAL;
    oneshot *o = of_rx(rx);
    pn__lock_acquire(&o->lock);
    int err = take_locked(o, out);
    pn__lock_release(&o->lock);
    return err;
}

static pn_poll recv_poll(pn_future *f, pn_cx *cx)
{
    pn_oneshot_recv_future *r = (pn_oneshot_recv_future *)f;
    if (!r->rx || !r->out) {
        r->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    oneshot *o = of_rx(r->rx);
    pn__lock_acquire(&o->lock);
    int err = take_locked(o, r->out);
    pn_waker old = PN_WAKER_NONE;
    if (err == -EAGAIN) {
        pn_waker_set(&o->rx_waker, cx->waker);
    } else {
        old = o->rx_waker;
        o->rx_waker = PN_WAKER_NONE;
    }
    pn__lock_release(&o->lock);
    pn_waker_drop(&old);
    r->waiting = err == -EAGAIN;
    if (err == -EAGAIN)
        return PN_PENDING;
    r->res = err;
    return PN_READY;
}

static void recv_drop(pn_future *f)
{
    pn_oneshot_recv_future *r = (pn_oneshot_recv_future *)f;
    /* READY or never polled: a no-op (the receiver may be gone already). */
    if (!r->rx || !r->waiting)
        return;
    r->waiting = false;
    oneshot *o = of_rx(r->rx);
    pn__lock_acquire(&o->lock);
    pn_waker w = o->rx_waker;
    o->rx_waker = PN_WAKER_NONE;
    pn__lock_release(&o->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable recv_vt = { recv_poll, recv_drop, "pn_oneshot_recv" };

pn_oneshot_recv_future pn_oneshot_recv(pn_oneshot_rx *rx, void *out)
{
    return (pn_oneshot_recv_future){ .base = { &recv_vt }, .rx = rx, .out = out };
}

int pn_oneshot_blocking_recv(pn_oneshot_rx *rx, void *out)
{
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, out);
    int err = pn__sync_block(&r.base);
    if (err)
        return err;
    return r.res;
}

void pn_oneshot_rx_free(pn_oneshot_rx *rx)
{
    if (!rx)
        return;
    oneshot *o = of_rx(rx);
    pn__lock_acquire(&o->lock);
    o->state |= RX_GONE;
    pn_waker mine = o->rx_waker;
    o->rx_waker = PN_WAKER_NONE;
    pn_waker w = o->tx_waker;
    o->tx_waker = PN_WAKER_NONE;
    bool last = o->state & TX_GONE;
    pn__lock_release(&o->lock);
    pn_waker_drop(&mine);
    pn_waker_wake(&w);
    if (last)
        oneshot_destroy(o);
}
