/*
 * pollen/watch.h - the latest value, with change notification: one sender
 * publishes, any number of receivers read the newest value and wait for
 * the next change (configuration, shutdown state; Tokio's
 * tokio::sync::watch).
 *
 *     typedef struct config { int level; char name[28]; } config;
 *     config init = { 1, "start" };
 *     pn_watch_tx *tx;
 *     pn_watch_rx *rx;
 *     if (pn_watch_new(sizeof(config), &init, &tx, &rx) < 0) ...;
 *
 *     // the publisher, any thread or task:
 *     config c = { 2, "busy" };
 *     pn_watch_send_replace(tx, &c, NULL);   // stored even with no receiver
 *
 *     // a task's poll: wait for a change, then read the newest value
 *     t->changed = pn_watch_changed(t->rx);
 *     PN_AWAIT(t->pc, &t->changed, cx);
 *     if (t->changed.res == -EPIPE) ...     // the sender is gone
 *     pn_watch_borrow_and_update(t->rx, &t->cfg);  // a copy, never torn
 *
 *     pn_watch_rx_free(rx);
 *     pn_watch_tx_free(tx);
 *
 * Versions.  Every send makes a new version of the value.  Each receiver
 * remembers the last version it has seen: a new receiver has seen the
 * value current when it was made (pn_watch_new's first receiver has seen
 * the initial value), a clone has seen what its original had seen.
 * changed() completes at once when a newer version exists, else waits for
 * the next send, and marks the newest version seen.  Intermediate values
 * sent between two looks are not kept: a receiver sees the latest.
 *
 * Values are `elem_size` bytes, copied in by send and out by borrow under
 * the channel's lock, so a reader never sees half of one value and half of
 * another.
 *
 * Closing.  Freeing the sender closes the channel: waiting changed()
 * futures complete, a receiver still gets a version it has not seen (0),
 * then -EPIPE.  The last value stays readable with borrow.  When no
 * receiver exists, pn_watch_send fails with -EPIPE and stores nothing (as
 * Tokio's send); pn_watch_send_replace stores anyway, so a receiver made
 * later with pn_watch_subscribe reads it with borrow (as already seen).
 *
 * Ownership.  One sender handle, freed once with pn_watch_tx_free.  Each
 * receiver is its own object (its seen version), freed with
 * pn_watch_rx_free.  The channel is freed with its last handle.
 *
 * Threads.  The sender's calls: any thread or task, concurrently with each
 * other (they take the lock), pn_watch_tx_free last.  A receiver is used by one thread or
 * task at a time (its seen version is not shared); different receivers are
 * independent.  changed() is for tasks on either runtime,
 * pn_watch_blocking_changed for plain threads.
 *
 * Cancel safety.  Dropping a pending changed() loses nothing: it marks a
 * version seen only when it completes, so the next changed() (or
 * has_changed) still sees the change the dropped one was woken for.  A
 * send wakes every waiter, so there is no wake to pass on.
 *
 * Memory: an idle channel is one allocation of 104 + elem_size bytes
 * (x86-64 glibc, before malloc's own overhead), plus 16 bytes per
 * receiver; nothing per operation.  A waiting changed() is the future
 * itself (80 bytes, no allocation).
 */
#ifndef POLLEN_WATCH_H
#define POLLEN_WATCH_H

#include "future.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_watch_tx pn_watch_tx;
typedef struct pn_watch_rx pn_watch_rx;

/* A channel holding `initial` (elem_size bytes, copied).  *tx receives the
 * sender, *rx (if rx is not NULL) a receiver that has seen the initial
 * value.  Returns 0; -EINVAL (tx or initial NULL, elem_size 0 or too
 * large); -ENOMEM.  On error *tx and *rx are NULL. */
PN_EXTERN int pn_watch_new(size_t elem_size, const void *initial, pn_watch_tx **tx,
                           pn_watch_rx **rx);

/* Store *value as a new version and wake every waiting changed().  Never
 * waits.  Returns 0; -EPIPE when no receiver exists (nothing stored, the
 * version is not bumped); -EINVAL on NULL. */
PN_EXTERN int pn_watch_send(pn_watch_tx *tx, const void *value);

/* Store *value as a new version whether or not a receiver exists, copying
 * the previous value into *old first if old is not NULL (old may not
 * overlap value).  Returns 0, or -EINVAL (tx or value NULL). */
PN_EXTERN int pn_watch_send_replace(pn_watch_tx *tx, const void *value, void *old);

/* Change the value in place: modify(value, arg) runs under the channel's
 * lock with the stored value (elem_size bytes) and returns whether it
 * changed it.  When it did, the version is bumped and waiting changed()
 * futures wake, receivers or not (Tokio's send_if_modified).  modify must
 * be short and must not call any pn_watch_* function of this channel (the
 * lock is not recursive).  Returns 1 (changed), 0 (not), -EINVAL (tx or
 * modify NULL). */
PN_EXTERN int pn_watch_send_if_modified(pn_watch_tx *tx, bool (*modify)(void *value, void *arg),
                                        void *arg);

/* Copy the current value into *out (the sender's view).  0 or -EINVAL. */
PN_EXTERN int pn_watch_tx_borrow(pn_watch_tx *tx, void *out);

/* The number of receivers now (0 for NULL). */
PN_EXTERN size_t pn_watch_receiver_count(pn_watch_tx *tx);

/* A new receiver that has seen the current value.  0, -EINVAL, -ENOMEM
 * (*out NULL). */
PN_EXTERN int pn_watch_subscribe(pn_watch_tx *tx, pn_watch_rx **out);

/* Close the channel and release the sender (see Closing).  Pending
 * pn_watch_tx_closed futures must have been dropped first.  NULL: no-op. */
PN_EXTERN void pn_watch_tx_free(pn_watch_tx *tx);

/* A new receiver that has seen what rx has seen.  0, -EINVAL, -ENOMEM
 * (*out NULL).  Works after the close. */
PN_EXTERN int pn_watch_rx_clone(pn_watch_rx *rx, pn_watch_rx **out);

/* Release a receiver.  Its pending changed() future, if any, must have
 * been dropped first.  NULL is a no-op. */
PN_EXTERN void pn_watch_rx_free(pn_watch_rx *rx);

/* Copy the current value into *out without marking it seen.  Returns 1
 * when the copied version is newer than the last seen, 0 when not,
 * -EINVAL on NULL.  Works after the close. */
PN_EXTERN int pn_watch_borrow(pn_watch_rx *rx, void *out);

/* Copy the current value into *out and mark it seen.  Returns 1 when it
 * was newer than the last seen, 0 when not, -EINVAL on NULL. */
PN_EXTERN int pn_watch_borrow_and_update(pn_watch_rx *rx, void *out);

/* Whether a version newer than the last seen exists, without marking it:
 * 1 yes (even after the close), 0 no, -EPIPE no and the sender is gone,
 * -EINVAL on NULL.  Takes no lock. */
PN_EXTERN int pn_watch_has_changed(pn_watch_rx *rx);

/* Mark the current version seen (changed() then waits for the next send).
 * NULL: no-op. */
PN_EXTERN void pn_watch_mark_unchanged(pn_watch_rx *rx);

/* Make the current version count as unseen (changed() completes at once).
 * NULL: no-op. */
PN_EXTERN void pn_watch_mark_changed(pn_watch_rx *rx);

/*
 * Wait until a version newer than the last seen exists, and mark it seen.
 * Outputs once PN_READY:
 *   .res     0: a newer version was there.  Read it with
 *            pn_watch_borrow_and_update: a send may land between the
 *            completion and the read, and borrow_and_update marks what you
 *            read as seen, so the next changed() does not fire for a value
 *            you already have;
 *            -EPIPE: the sender is gone and rx has seen the last version;
 *            -EINVAL: rx NULL.
 * Cancel-safe (see above).  Spends one unit of the task's budget per poll.
 */
typedef struct pn_watch_changed_future {
    pn_future base;
    pn_watch_rx *rx;        /* private */
    pn_sync_waiter waiter;  /* private */
    int res;                /* output */
} pn_watch_changed_future;

PN_EXTERN PN_MUST_USE pn_watch_changed_future pn_watch_changed(pn_watch_rx *rx);

/*
 * The sender's side: wait until no receiver exists (every receiver freed;
 * at once if there is none now), e.g. to stop producing values nobody
 * reads.  A receiver subscribed afterwards does not undo a READY future.
 * Outputs once PN_READY: .res 0, or -EINVAL (tx NULL).  Any number of
 * these may wait, from any tasks; all must be dropped or READY before
 * pn_watch_tx_free.  Cancel-safe: a drop only unlinks it (a receiver
 * freed meanwhile wakes every one of these, so no wake needs passing on).
 * Spends one unit of the task's budget per poll.
 */
typedef struct pn_watch_closed_future {
    pn_future base;
    pn_watch_tx *tx;        /* private */
    pn_sync_waiter waiter;  /* private */
    int res;                /* output */
} pn_watch_closed_future;

PN_EXTERN PN_MUST_USE pn_watch_closed_future pn_watch_tx_closed(pn_watch_tx *tx);

/* changed() for a plain thread: 0, -EPIPE, -EINVAL as the future, or
 * -EDEADLK from a thread that is polling a task (nothing marked), -ENOMEM. */
PN_EXTERN int pn_watch_blocking_changed(pn_watch_rx *rx);

#ifdef __cplusplus
}
#endif
#endif
