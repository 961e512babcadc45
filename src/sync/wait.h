/*
 * wait.h - what every primitive of pollen/sync.h waits with (private).
 *
 *   pn__lock        the lock of a primitive that lives on the heap: a spin
 *                   lock whose waiters yield their CPU after a few spins
 *                   (core/spin.h; every hold is a few loads and stores, a
 *                   waker clone and at most a memcpy of an element)
 *   pn__mutex       the pthread mutex the embeddable primitives (pn_notify,
 *                   pn_semaphore, pn_wait_group) carry in their public
 *                   struct, for PTHREAD_MUTEX_INITIALIZER
 *   pn__waitq       a FIFO of pn_sync_waiter nodes embedded in the waiting
 *                   futures, guarded by the primitive's lock
 *   pn__wakelist    wakers taken out under the lock, woken after unlocking
 *                   (a wake may run the woken task's code: never under a
 *                   lock of ours)
 *   pn__sync_budget the cooperative budget check every waiting poll makes
 *                   before it takes anything
 *   pn__sync_block  poll a future to completion on a plain thread (the
 *                   blocking_* variants), parking the thread between polls
 *
 * The pattern of a waiting future's poll:
 *
 *     if (pn__sync_budget(cx) == PN_PENDING) return PN_PENDING;
 *     pn__lock_acquire(&p->lock);
 *     if (the waiter was granted what it waits for) { ...; unlock; READY }
 *     if (it can be taken now and nobody queued before us) { take; unlock; READY }
 *     pn_waker_set(&w->waker, cx->waker);      // under the lock
 *     if (!w->queued) pn__waitq_push(&p->waiters, w);
 *     pn__lock_release(&p->lock);
 *     return PN_PENDING;
 *
 * and of its drop: lock; if queued, unlink; if it was granted something it
 * never used, give it back (which may grant the next waiter: the wake is
 * passed on, nobody stalls); drop the waker; unlock; wake what was granted.
 */
#ifndef PN_SYNC_WAIT_H
#define PN_SYNC_WAIT_H

#include <pthread.h>
#include "pollen/sync.h"
#include "core/spin.h"

/* ---- the locks ----------------------------------------------------------- */

/* core/spin.h: one exchange to take, a plain store to release. */
typedef pn__spin pn__lock;

static inline void pn__lock_init(pn__lock *l) { pn__spin_init(l); }
static inline void pn__lock_destroy(pn__lock *l) { (void)l; }
static inline void pn__lock_acquire(pn__lock *l) { pn__spin_lock(l); }
static inline void pn__lock_release(pn__lock *l) { pn__spin_unlock(l); }

typedef pthread_mutex_t pn__mutex;

static inline void pn__mutex_init(pn__mutex *m) { pthread_mutex_init(m, NULL); }
static inline void pn__mutex_destroy(pn__mutex *m) { pthread_mutex_destroy(m); }
static inline void pn__mutex_acquire(pn__mutex *m) { pthread_mutex_lock(m); }
static inline void pn__mutex_release(pn__mutex *m) { pthread_mutex_unlock(m); }

/* ---- the FIFO of waiters --------------------------------------------------- */

typedef pn_sync_queue pn__waitq;     /* public as a field of pn_semaphore & co. */

static inline bool pn__waitq_empty(const pn__waitq *q) { return q->head == NULL; }

static inline void pn__waitq_push(pn__waitq *q, pn_sync_waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->queued = true;
}

/* Unlink w if it is queued (no-op otherwise). */
static inline void pn__waitq_remove(pn__waitq *q, pn_sync_waiter *w)
{
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
}

static inline pn_sync_waiter *pn__waitq_pop(pn__waitq *q)
{
    pn_sync_waiter *w = q->head;
    if (w)
        pn__waitq_remove(q, w);
    return w;
}

/* ---- wakes after unlocking ------------------------------------------------- */

#define PN__WAKELIST_CAP 32

typedef struct pn__wakelist {
    unsigned n;
    pn_waker w[PN__WAKELIST_CAP];
} pn__wakelist;

static inline bool pn__wakelist_full(const pn__wakelist *l) { return l->n == PN__WAKELIST_CAP; }

/* Move *w (taken out of a waiter under the lock) into the list; the list is
 * not full (check pn__wakelist_full first: when it is, release the lock,
 * wake the list, and take the lock again). */
static inline void pn__wakelist_push(pn__wakelist *l, pn_waker *w)
{
    if (w->vt)
        l->w[l->n++] = *w;
    *w = PN_WAKER_NONE;
}

/* Wake and empty the list.  Call without holding the lock. */
static inline void pn__wakelist_wake(pn__wakelist *l)
{
    for (unsigned i = 0; i < l->n; i++)
        pn_waker_wake(&l->w[i]);
    l->n = 0;
}

/* ---- budget and blocking ----------------------------------------------------- */

/* A waiting primitive's poll starts with this: when the task's budget is
 * spent it wakes the task and says PN_PENDING before anything is taken (so
 * nothing is lost); otherwise it spends one unit. */
static inline pn_poll pn__sync_budget(pn_cx *cx)
{
    return pn_cx_budget_spend(cx);
}

/* Poll `f` until PN_READY on this plain thread, parking between polls.
 * Returns 0, or -EDEADLK when this thread is polling a task right now (a
 * worker would block; the future is left unpolled).  The future's context
 * has no runtime: only pollen/sync.h futures may be blocked on. */
int pn__sync_block(pn_future *f);

#endif
