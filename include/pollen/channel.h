/*
 * pollen/channel.h - oneshot and mpsc channels: values passed between
 * tasks and threads.
 *
 *     // one value, once
 *     pn_oneshot_tx *tx; pn_oneshot_rx *rx;
 *     pn_oneshot_new(sizeof(int), &tx, &rx);
 *     int v = 42;
 *     pn_oneshot_send(tx, &v);                // tx is gone now
 *     int got;
 *     pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
 *     ... await r ...                         // r.res == 0, got == 42
 *     pn_oneshot_rx_free(rx);
 *
 *     // many producers, one consumer, at most 64 values queued
 *     pn_mpsc_tx *tx; pn_mpsc_rx *rx;
 *     pn_mpsc_new(64, sizeof(struct job), &tx, &rx);
 *     pn_mpsc_tx *tx2 = pn_mpsc_tx_clone(tx);  // give one to each producer
 *     // producer task:  s = pn_mpsc_send(tx, &job); await s; s.res
 *     // consumer task:  r = pn_mpsc_recv(rx, &job); await r; r.res
 *     //                 (-EPIPE once every sender is freed and all is read)
 *     pn_mpsc_tx_free(tx); pn_mpsc_tx_free(tx2); pn_mpsc_rx_free(rx);
 *
 * Values are fixed-size elements of `elem_size` bytes given at creation,
 * copied in and out with memcpy.  A send future takes `const void *value`
 * that must stay valid until the send is READY (the copy is made then: a
 * dropped pending send loses nothing, the value is still the caller's).  A
 * receive takes `void *out` where the value is written.
 *
 * Futures follow pollen/future.h: made lazily by value, must not move once
 * polled, outputs in public fields (.res is 0 or a negative errno),
 * pn_future_drop cancels.  A future borrows its handle: finish or drop it
 * before the handle is freed.  Any handle may be used from any thread, but
 * one handle is not to be used by two threads at once except where a call
 * says "any thread" (the senders of mpsc are shared by cloning).
 *
 * Cancel safety (what pn_future_drop on a pending future does):
 *   pn_oneshot_recv     nothing lost: the value stays for the next recv
 *   pn_oneshot_closed   nothing held
 *   pn_mpsc_closed      nothing held
 *   pn_mpsc_send        the value was not sent (still the caller's); a
 *                       slot granted to it and not used goes to the next
 *                       waiting sender
 *   pn_mpsc_reserve     likewise; a READY reserve holds a slot, and its
 *                       drop gives the slot back (to the next waiting
 *                       sender, else to the channel)
 *   pn_mpsc_recv        nothing lost: a value a sender already handed
 *                       to it is put back first in line
 *   pn_mpsc_recv_many   likewise
 */
#ifndef POLLEN_CHANNEL_H
#define POLLEN_CHANNEL_H

#include "future.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== oneshot ============================================================
 *
 * One value from one sender to one receiver.  The sender is consumed by
 * pn_oneshot_send or pn_oneshot_tx_free; the receiver is freed by
 * pn_oneshot_rx_free.  The channel's memory goes with the last of the two.
 * Every call may be made from any thread (one thread per handle at a
 * time).
 */
typedef struct pn_oneshot_tx pn_oneshot_tx;
typedef struct pn_oneshot_rx pn_oneshot_rx;

/* Create a channel for one value of elem_size bytes.  0, -EINVAL (NULL
 * outputs, elem_size 0), -ENOMEM.  On error *tx and *rx are NULL. */
PN_EXTERN int pn_oneshot_new(size_t elem_size, pn_oneshot_tx **tx, pn_oneshot_rx **rx);

/* Send the value (copied) and free the sender: never waits, wakes the
 * receiver.  0; -EPIPE when the receiver was freed (the value was not
 * taken, it is still the caller's; the sender is freed all the same);
 * -EINVAL (NULL tx or value: nothing happens, tx is not freed). */
PN_EXTERN int pn_oneshot_send(pn_oneshot_tx *tx, const void *value);

/* Free the sender without sending: the receiver gets -EPIPE.  NULL: no-op. */
PN_EXTERN void pn_oneshot_tx_free(pn_oneshot_tx *tx);

/* True once the receiver was freed (a send would give -EPIPE).  NULL: true. */
PN_EXTERN bool pn_oneshot_tx_is_closed(const pn_oneshot_tx *tx);

/* Ready when the receiver is freed (Tokio's Sender::closed): a producer can
 * stop working on a value nobody will read.  .res 0, or -EINVAL for a
 * NULL tx.  Drop: releases its waker.  One pending closed future per
 * sender. */
typedef struct pn_oneshot_closed_future {
    pn_future base;
    pn_oneshot_tx *tx;  /* private */
    int res;            /* output */
    bool waiting;       /* private: its waker is in the channel */
} pn_oneshot_closed_future;

PN_EXTERN PN_MUST_USE pn_oneshot_closed_future pn_oneshot_closed(pn_oneshot_tx *tx);

/* Receive the value into *out.  .res 0 (the value is in *out), -EPIPE
 * (the sender was freed without sending, or the value was already
 * received), -EINVAL (NULL rx or out).  Cancel-safe: a dropped pending
 * recv takes nothing.  One pending recv per receiver. */
typedef struct pn_oneshot_recv_future {
    pn_future base;
    pn_oneshot_rx *rx;  /* private */
    void *out;          /* private */
    int res;            /* output */
    bool waiting;       /* private: its waker is in the channel */
} pn_oneshot_recv_future;

PN_EXTERN PN_MUST_USE pn_oneshot_recv_future pn_oneshot_recv(pn_oneshot_rx *rx, void *out);

/* Without waiting: 0 (the value is in *out), -EAGAIN (not sent yet),
 * -EPIPE (sender freed without sending, or already received), -EINVAL. */
PN_EXTERN int pn_oneshot_try_recv(pn_oneshot_rx *rx, void *out);

/* Wait on this plain thread: the results of pn_oneshot_recv, or -EDEADLK
 * when called from a thread that is polling a task (nothing taken). */
PN_EXTERN int pn_oneshot_blocking_recv(pn_oneshot_rx *rx, void *out);

/* Free the receiver: a value sent and not received is discarded, a later
 * send gets -EPIPE, a pending pn_oneshot_closed is woken.  NULL: no-op. */
PN_EXTERN void pn_oneshot_rx_free(pn_oneshot_rx *rx);

/* ==== mpsc ===============================================================
 *
 * Many senders, one receiver, values delivered in the order they entered
 * the queue (so in order per sender).
 *
 * Bounded (pn_mpsc_new): at most `capacity` values are queued or reserved;
 * a send waits for room, and waiting senders are served first come, first
 * served (a newcomer never overtakes a queued sender).  The ring is
 * allocated at creation: no allocation afterwards.
 * Unbounded (pn_mpsc_unbounded_new): pn_mpsc_unbounded_send never waits;
 * the ring doubles when full (-ENOMEM if it cannot), so a channel that has
 * grown to its working size allocates nothing more.
 *
 * Handles.  pn_mpsc_tx_clone adds a sender; each clone is freed once with
 * pn_mpsc_tx_free (a clone may be the same pointer: count your clones, not
 * your pointers).  When the last sender is freed the receiver still gets
 * every queued value, then -EPIPE.  pn_mpsc_rx_close stops new sends
 * (queued values are still received); pn_mpsc_rx_free closes and discards
 * what is queued.  The channel's memory goes with the last handle.
 *
 * Threads: every sender call may be made from any thread or task, on any
 * clone, concurrently.  The receiver is one owner's (one thread or task at
 * a time, one pending receive at a time); pn_mpsc_rx_close may be called
 * from any thread.
 */
typedef struct pn_mpsc_tx pn_mpsc_tx;
typedef struct pn_mpsc_rx pn_mpsc_rx;

/* A bounded channel (its ring takes (capacity + 1) * elem_size bytes).
 * 0, -EINVAL (NULL outputs, capacity or elem_size 0, the ring's size
 * overflows), -ENOMEM.  On error *tx, *rx are NULL. */
PN_EXTERN int pn_mpsc_new(size_t capacity, size_t elem_size, pn_mpsc_tx **tx, pn_mpsc_rx **rx);

/* An unbounded channel.  0, -EINVAL (NULL outputs, elem_size 0), -ENOMEM. */
PN_EXTERN int pn_mpsc_unbounded_new(size_t elem_size, pn_mpsc_tx **tx, pn_mpsc_rx **rx);

/* One more sender handle (never fails; NULL gives NULL).  Any thread. */
PN_EXTERN pn_mpsc_tx *pn_mpsc_tx_clone(pn_mpsc_tx *tx);

/* Free one sender handle; with the last one the receiver, once it has read
 * what is queued, gets -EPIPE.  Its futures must be finished or dropped
 * first (a READY reserve included).  NULL: no-op.  Any thread. */
PN_EXTERN void pn_mpsc_tx_free(pn_mpsc_tx *tx);

/* True once the receiver closed or was freed.  NULL: true.  Any thread. */
PN_EXTERN bool pn_mpsc_tx_is_closed(const pn_mpsc_tx *tx);

/* Ready once the receiver closed or was freed (Tokio's Sender::closed): a
 * producer can stop preparing values nobody will read.  .res 0, or
 * -EINVAL for a NULL tx.  Any number may be pending, on any clones.
 * Drop while pending: releases its waker, nothing else. */
typedef struct pn_mpsc_closed_future {
    pn_future base;
    pn_mpsc_tx *tx;         /* private */
    pn_sync_waiter waiter;  /* private */
    int res;                /* output */
} pn_mpsc_closed_future;

PN_EXTERN PN_MUST_USE pn_mpsc_closed_future pn_mpsc_closed(pn_mpsc_tx *tx);

/*
 * Send (bounded or unbounded channel): wait for room, copy the value in.
 * .res 0, -EPIPE (the receiver closed or was freed, before or while
 * waiting: the value was not sent, it is still the caller's), -EINVAL
 * (NULL tx or value).  `value` must stay valid until READY.
 * Drop while pending: nothing sent; a slot the receiver had already
 * granted to this send goes to the next waiting sender.
 */
typedef struct pn_mpsc_send_future {
    pn_future base;
    pn_mpsc_tx *tx;         /* private */
    const void *value;      /* private */
    pn_sync_waiter waiter;  /* private */
    int phase;              /* private */
    int res;                /* output */
} pn_mpsc_send_future;

PN_EXTERN PN_MUST_USE pn_mpsc_send_future pn_mpsc_send(pn_mpsc_tx *tx, const void *value);

/* Without waiting: 0, -EAGAIN (full, or senders are queued for room),
 * -EPIPE (closed), -EINVAL.  On an unbounded channel as
 * pn_mpsc_unbounded_send.  Any thread. */
PN_EXTERN int pn_mpsc_try_send(pn_mpsc_tx *tx, const void *value);

/* Wait on this plain thread: the results of pn_mpsc_send, or -EDEADLK
 * from a thread that is polling a task (nothing sent). */
PN_EXTERN int pn_mpsc_blocking_send(pn_mpsc_tx *tx, const void *value);

/* Unbounded channel: append, never waits.  0, -EPIPE (closed: not sent),
 * -ENOMEM (the ring could not grow: not sent), -EINVAL (NULL arguments, or
 * a bounded channel).  Any thread. */
PN_EXTERN int pn_mpsc_unbounded_send(pn_mpsc_tx *tx, const void *value);

/*
 * Reserve one slot (a permit) of a bounded channel, waiting for room like
 * a send.  Once READY with .res 0 the future holds the slot: send
 * through it with pn_mpsc_permit_send (which cannot wait), or give it back
 * with pn_mpsc_permit_release or pn_future_drop (it goes to the next
 * waiting sender).  .res -EPIPE (closed; nothing held), -EINVAL (NULL
 * tx, or an unbounded channel).
 * Drop while pending: as pn_mpsc_send.  Drop when READY: the slot is given
 * back.  Drop after the permit was used or released: no-op.
 */
typedef pn_mpsc_send_future pn_mpsc_reserve_future;

PN_EXTERN PN_MUST_USE pn_mpsc_reserve_future pn_mpsc_reserve(pn_mpsc_tx *tx);

/* Reserve without waiting: 0 (*out is a READY reserve future holding a
 * slot), -EAGAIN (full, or senders queued), -EPIPE, -EINVAL.  Any thread. */
PN_EXTERN int pn_mpsc_try_reserve(pn_mpsc_tx *tx, pn_mpsc_reserve_future *out);

/* Send through the permit held by a READY reserve future: copies the value
 * in, never waits, the permit is used up.  0; -EPIPE (the receiver closed
 * meanwhile: not sent, the slot is released); -EINVAL (NULL arguments, or
 * the future holds no permit: not READY, failed, or already used). */
PN_EXTERN int pn_mpsc_permit_send(pn_mpsc_reserve_future *permit, const void *value);

/* Give the permit back without sending (what pn_future_drop does on a
 * READY reserve).  No permit held: no-op. */
PN_EXTERN void pn_mpsc_permit_release(pn_mpsc_reserve_future *permit);

/*
 * Receive one value into *out.  .res 0, -EPIPE (every sender is freed,
 * or the receiver closed, and nothing is queued), -EINVAL (NULL rx or out).
 * While the receive is pending a sender may write the next value into
 * *out (a hand-over that saves the receiver a lock): leave *out alone
 * until READY or the drop.
 * Drop while pending: nothing lost (a value already handed over is put
 * back first in line).
 */
typedef struct pn_mpsc_recv_future {
    pn_future base;
    pn_mpsc_rx *rx;           /* private */
    void *out;                /* private */
    size_t max;               /* private */
    bool waiting;             /* private: registered with the channel */
    PN__ATOMIC(bool) delivered; /* private: a send wrote into out */
    size_t count;             /* output: values written to out (recv_many) */
    int res;                  /* output */
} pn_mpsc_recv_future;

PN_EXTERN PN_MUST_USE pn_mpsc_recv_future pn_mpsc_recv(pn_mpsc_rx *rx, void *out);

/* Receive between 1 and max values into out_array (max * elem_size bytes),
 * taken in one lock hold: .count of them, .res 0; or .count 0 and
 * .res -EPIPE (closed and drained), -EINVAL (NULL arguments, max 0).
 * Drop while pending: nothing taken. */
PN_EXTERN PN_MUST_USE pn_mpsc_recv_future pn_mpsc_recv_many(pn_mpsc_rx *rx, void *out_array,
                                                            size_t max);

/* Without waiting: 0, -EAGAIN (empty, senders remain), -EPIPE (empty and
 * closed or every sender freed), -EINVAL. */
PN_EXTERN int pn_mpsc_try_recv(pn_mpsc_rx *rx, void *out);

/* Wait on this plain thread: the results of pn_mpsc_recv, or -EDEADLK
 * from a thread that is polling a task (nothing taken). */
PN_EXTERN int pn_mpsc_blocking_recv(pn_mpsc_rx *rx, void *out);

/* Close the channel from the receiving side: sends and reserves (waiting
 * or new) get -EPIPE, permits held give -EPIPE on pn_mpsc_permit_send,
 * pending pn_mpsc_closed futures are woken, queued values are still
 * received, then -EPIPE.  Idempotent.  NULL:
 * no-op.  Any thread. */
PN_EXTERN void pn_mpsc_rx_close(pn_mpsc_rx *rx);

/* Close and free the receiver; queued values are discarded.  Its pending
 * receive must be finished or dropped first, and no pn_mpsc_rx_close (or
 * other call on rx) may still run on another thread.  NULL: no-op. */
PN_EXTERN void pn_mpsc_rx_free(pn_mpsc_rx *rx);

/* Values queued now (a snapshot).  NULL: 0.  Any thread. */
PN_EXTERN size_t pn_mpsc_len(const pn_mpsc_rx *rx);

/* Free slots now: capacity less queued and reserved values (a snapshot;
 * SIZE_MAX for unbounded).  NULL: 0.  Any thread. */
PN_EXTERN size_t pn_mpsc_capacity(const pn_mpsc_tx *tx);

/* The capacity given at creation (SIZE_MAX for unbounded).  NULL: 0. */
PN_EXTERN size_t pn_mpsc_max_capacity(const pn_mpsc_tx *tx);

#ifdef __cplusplus
}
#endif
#endif
