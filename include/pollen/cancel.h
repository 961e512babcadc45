/*
 * pollen/cancel.h - cancellation tokens (tokio_util's CancellationToken).
 *
 *     pn_cancel_token *root = pn_cancel_token_new();       // NULL: -ENOMEM
 *     pn_cancel_token *job = pn_cancel_token_child(root);   // cancelled with root
 *     // a task (state in its struct) waits for cancellation:
 *     t->stop = pn_cancel_token_cancelled(job);
 *     PN_AWAIT(t->pc, &t->stop, cx);                        // READY once cancelled
 *     // or looks now and then:  if (pn_cancel_token_is_cancelled(job)) ...
 *     // anyone, any thread:
 *     pn_cancel_token_cancel(root);                         // wakes root's and job's waiters
 *     pn_cancel_token_free(job);
 *     pn_cancel_token_free(root);
 *
 * A token is a refcounted heap object: pn_cancel_token_new and
 * pn_cancel_token_child give a reference, pn_cancel_token_clone another
 * one to the same token, pn_cancel_token_free releases one.  Tokens form a
 * tree: cancelling a token cancels every descendant (now and later: a
 * child of a cancelled token is born cancelled); cancelling a child does
 * not touch its parent.  When a token's last reference goes, it leaves the
 * tree and its children are adopted by its parent (Tokio does the same),
 * so they keep working and are still cancelled by their grandparent; the
 * children of a freed root become roots.
 *
 * Locking: a whole tree (a root and every token made from it with
 * pn_cancel_token_child) shares one lock, so there is no lock order
 * between parent and child to get wrong; cancel, child creation, free and
 * the waiting future's poll and drop take it for a short walk, and wakes
 * run after it is released.
 *
 * Threads: every call may be made from any thread, concurrently; only the
 * cancelled() future is polled by its task.  Errors are reported through
 * NULL returns with errno set, as listed per call.
 */
#ifndef POLLEN_CANCEL_H
#define POLLEN_CANCEL_H

#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_cancel_token pn_cancel_token;

/* A new root token, not cancelled, with one reference.  NULL with errno
 * ENOMEM when the allocation fails. */
PN_EXTERN pn_cancel_token *pn_cancel_token_new(void);

/* A new token, child of `parent` (cancelled when the parent or any of its
 * ancestors is; born cancelled when the parent already is), with one
 * reference.  NULL with errno EINVAL (NULL parent) or ENOMEM. */
PN_EXTERN pn_cancel_token *pn_cancel_token_child(pn_cancel_token *parent);

/* One more reference to the same token (Tokio's clone): returns t.  NULL
 * gives NULL. */
PN_EXTERN pn_cancel_token *pn_cancel_token_clone(pn_cancel_token *t);

/* Release one reference.  The last one takes the token out of its tree
 * (its children are adopted by its parent) and frees it; a pending
 * cancelled() future holds a reference of its own, so it keeps working.
 * NULL is a no-op. */
PN_EXTERN void pn_cancel_token_free(pn_cancel_token *t);

/* Cancel t and every descendant, and wake every pending cancelled() future
 * of them (when two cancels of one tree run at once, some of these wakes
 * may be run by the other one).  Idempotent; NULL is a no-op. */
PN_EXTERN void pn_cancel_token_cancel(pn_cancel_token *t);

/* True once t (or an ancestor) was cancelled; false for NULL. */
PN_EXTERN bool pn_cancel_token_is_cancelled(const pn_cancel_token *t);

/*
 * READY (.res 0) once the token is cancelled (at once when it already
 * is); .res -EINVAL for a NULL token.  It borrows t: keep your
 * reference until the future was first polled (or use the _owned variant
 * below).  From its first poll until READY or dropped it holds a
 * reference of its own, so yours may go then.  Waits intrusively (no
 * allocation).  Cancel safety: dropping it pending just unqueues it (a
 * cancellation is a state, not a permit: nothing is lost, any other
 * waiter is woken anyway); dropping it READY or never polled is a no-op.
 */
typedef struct pn_cancel_wait_future {
    pn_future base;
    pn_cancel_token *token;  /* private */
    pn_sync_waiter w;        /* private */
    bool holds;              /* private: holds a reference, may be queued */
    int res;                 /* output */
} pn_cancel_wait_future;

PN_EXTERN PN_MUST_USE pn_cancel_wait_future pn_cancel_token_cancelled(pn_cancel_token *t);

/*
 * The same future owning one reference to t from its creation (Tokio's
 * cancelled_owned): pass it a reference of its own, typically
 * pn_cancel_token_cancelled_owned(pn_cancel_token_clone(t)), for a task
 * that may outlive your reference or may not have been polled yet when
 * you free yours.  The reference is released when the future is READY or
 * dropped, so an owned future must be dropped if it never completes (a
 * spawned task's future is dropped by abort and shutdown; dropping one
 * that was never polled releases it too).
 */
PN_EXTERN PN_MUST_USE pn_cancel_wait_future pn_cancel_token_cancelled_owned(pn_cancel_token *t);

/* Block this plain thread until t is cancelled.  Returns 0, -EINVAL
 * (NULL), -EDEADLK (called from a thread that is polling a task). */
PN_EXTERN int pn_cancel_token_blocking_wait(pn_cancel_token *t);

#ifdef __cplusplus
}
#endif
#endif
