/*
 * pollen/broadcast.h - a multi-producer, multi-consumer channel where every
 * receiver sees every value (Tokio's tokio::sync::broadcast).
 *
 *     pn_broadcast_tx *tx;
 *     pn_broadcast_rx *rx;
 *     if (pn_broadcast_new(16, sizeof(int), &tx, &rx) < 0) ...;
 *
 *     // any thread or task: never waits
 *     int v = 42;
 *     long n = pn_broadcast_send(tx, &v);   // n receivers will see it
 *
 *     // a task's poll (the future lives in the task's struct):
 *     t->recv = pn_broadcast_recv(t->rx, &t->value);
 *     PN_AWAIT(t->pc, &t->recv, cx);
 *     if (t->recv.res == -EOVERFLOW) ...     // missed t->recv.lagged values
 *     else if (t->recv.res == -EPIPE) ...    // every sender gone, all read
 *
 *     pn_broadcast_rx_free(rx);
 *     pn_broadcast_tx_free(tx);
 *
 * The ring.  A channel keeps the last `capacity` values sent.  Each
 * receiver has its own cursor: the position of the next value it reads.
 * A send never waits: it overwrites the oldest value whatever receivers
 * have read.  A receiver whose next value was overwritten has lagged: its
 * next receive reports -EOVERFLOW with `lagged` = how many values it missed
 * and moves its cursor to the oldest value still kept, which the receive
 * after gives.  Example: capacity 4, ten values sent before a receiver
 * reads: -EOVERFLOW lagged 6, then values 7, 8, 9, 10 in order.
 * (Unlike Tokio the capacity is not rounded up to a power of two.)
 *
 * Values are `elem_size` bytes, copied in by send and copied out by a
 * receive under the channel's lock: a receiver never sees a value half
 * written, and a value is never freed or shared (there is no per-value
 * reference count; a slot is simply overwritten later).
 *
 * Closing.  When the last sender handle is freed the channel is closed:
 * receivers read what is left for them, then get -EPIPE.  When no receiver
 * exists, send fails with -EPIPE and stores nothing (the value is still
 * the caller's); a receiver subscribed later makes sends succeed again.
 *
 * Ownership.  pn_broadcast_new gives one sender handle and one receiver.
 * Sender handles are counted: pn_broadcast_tx_clone makes another (it may
 * be the same pointer: free each handle you hold once).  Each receiver is
 * its own object (its cursor) freed with pn_broadcast_rx_free.  The channel
 * is freed when its last handle is.
 *
 * Threads.  Send, tx_clone, tx_free, subscribe, receiver_count: any thread
 * or task, concurrently.  A receiver is used by one thread or task at a
 * time (recv, try_recv, blocking_recv, rx_clone, len and rx_free of one
 * receiver must not run concurrently); different receivers of one channel
 * are independent.  recv is for tasks on either runtime; try_recv for any
 * thread; blocking_recv for plain threads only.
 *
 * Cancel safety.  Dropping a pending recv loses nothing: a receive moves
 * the cursor only when it completes, so the next receive gets the value
 * the dropped one would have got (or reports the lag, if that value was
 * overwritten meanwhile).  A send wakes every waiting receiver, so a
 * dropped waiter has no wake to pass on.
 *
 * Memory: an idle channel is one allocation of 104 + capacity * elem_size
 * bytes (x86-64 glibc, before malloc's own overhead), plus 16 bytes per
 * receiver (each its own allocation); nothing per operation.  A waiting
 * recv is the future itself (96 bytes, no allocation).
 */
#ifndef POLLEN_BROADCAST_H
#define POLLEN_BROADCAST_H

#include "future.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_broadcast_tx pn_broadcast_tx;
typedef struct pn_broadcast_rx pn_broadcast_rx;

/* A channel keeping the last `capacity` values of `elem_size` bytes each.
 * *tx receives the sender handle, *rx (if rx is not NULL) the first
 * receiver, whose cursor is at the start.  Returns 0; -EINVAL (tx NULL,
 * capacity or elem_size 0, or capacity * elem_size overflows); -ENOMEM.
 * On error *tx and *rx are NULL. */
PN_EXTERN int pn_broadcast_new(size_t capacity, size_t elem_size, pn_broadcast_tx **tx,
                               pn_broadcast_rx **rx);

/* Copy *value into the ring, overwriting the oldest value when full, and
 * wake every waiting receiver.  Never waits; any thread.  Returns the
 * number of receivers at the time of the send (> 0), -EPIPE when there is
 * no receiver (nothing stored; *value is untouched), -EINVAL on NULL. */
PN_EXTERN long pn_broadcast_send(pn_broadcast_tx *tx, const void *value);

/* Another sender handle of the same channel (may equal tx; free each one
 * you hold once).  NULL for NULL.  Any thread. */
PN_EXTERN pn_broadcast_tx *pn_broadcast_tx_clone(pn_broadcast_tx *tx);

/* Release a sender handle.  The last one closes the channel: waiting
 * receivers wake, drain what is left for them, then get -EPIPE.  NULL is a
 * no-op. */
PN_EXTERN void pn_broadcast_tx_free(pn_broadcast_tx *tx);

/* A new receiver that sees the values sent after this call.  Returns 0,
 * -EINVAL (NULL), -ENOMEM (*out NULL). */
PN_EXTERN int pn_broadcast_subscribe(pn_broadcast_tx *tx, pn_broadcast_rx **out);

/* A new receiver with the same cursor as rx: it will see what rx has not
 * read yet.  Returns 0, -EINVAL (NULL), -ENOMEM (*out NULL).  Works after
 * the channel closed (the clone drains too). */
PN_EXTERN int pn_broadcast_rx_clone(pn_broadcast_rx *rx, pn_broadcast_rx **out);

/* Release a receiver.  Its pending recv future, if any, must have been
 * dropped first.  NULL is a no-op. */
PN_EXTERN void pn_broadcast_rx_free(pn_broadcast_rx *rx);

/* The number of receivers now (0 for NULL).  Any thread. */
PN_EXTERN size_t pn_broadcast_receiver_count(pn_broadcast_tx *tx);

/* How many values rx can receive now without waiting, at most capacity
 * (a lagged receiver counts the values still kept; 0 for NULL).  Takes no
 * lock; by the owner of rx. */
PN_EXTERN size_t pn_broadcast_len(pn_broadcast_rx *rx);

/*
 * Receive the next value into `out` (elem_size bytes; valid until READY).
 * Outputs once PN_READY:
 *   .res     0: *out holds the value;
 *            -EOVERFLOW: rx fell behind and missed .lagged values; *out is
 *            untouched, the cursor moved to the oldest kept value (the
 *            next receive gives it);
 *            -EPIPE: every sender is gone and rx has read everything;
 *            -EINVAL: rx or out NULL.
 *   .lagged  the count of missed values with -EOVERFLOW, else 0.
 * Cancel-safe (see above): a drop of the pending future moves nothing.
 * Spends one unit of the task's budget per poll.
 */
typedef struct pn_broadcast_recv_future {
    pn_future base;
    pn_broadcast_rx *rx;    /* private */
    void *out;              /* private */
    pn_sync_waiter waiter;  /* private */
    int res;                /* output */
    uint64_t lagged;        /* output */
} pn_broadcast_recv_future;

PN_EXTERN PN_MUST_USE pn_broadcast_recv_future pn_broadcast_recv(pn_broadcast_rx *rx, void *out);

/* Receive without waiting.  Returns 0 (*out holds the value), -EAGAIN
 * (nothing new yet), -EOVERFLOW (*lagged, if not NULL, = values missed;
 * cursor moved as for recv), -EPIPE (closed and drained), -EINVAL (rx or
 * out NULL).  Takes no lock when there is nothing new.  Any thread. */
PN_EXTERN int pn_broadcast_try_recv(pn_broadcast_rx *rx, void *out, uint64_t *lagged);

/* recv for a plain thread: parks the thread until a value, a lag or the
 * close.  Returns as try_recv without -EAGAIN, plus -EDEADLK when called
 * from a thread that is polling a task (nothing received), -ENOMEM. */
PN_EXTERN int pn_broadcast_blocking_recv(pn_broadcast_rx *rx, void *out, uint64_t *lagged);

#ifdef __cplusplus
}
#endif
#endif
