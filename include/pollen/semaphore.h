/*
 * pollen/semaphore.h - a fair async semaphore, and the mutex and
 * reader-writer lock built on it.
 *
 *     static pn_semaphore slots = PN_SEMAPHORE_INIT(4);   // or pn_semaphore_init
 *
 *     // in a future's struct:  int pc; pn_semaphore_permit p;
 *     PN_ASYNC_BEGIN(t->pc);
 *     t->p = pn_semaphore_acquire(&slots, 2);
 *     PN_AWAIT(t->pc, &t->p, cx);
 *     if (t->p.res < 0) return ...;              // -ESHUTDOWN: closed
 *     ... two permits are held: the READY future is the guard ...
 *     pn_semaphore_release(&t->p);               // or pn_future_drop(&t->p.base)
 *     PN_ASYNC_END(t->pc);
 *
 *     pn_mutex m = PN_MUTEX_INIT;                // likewise pn_rwlock
 *     t->g = pn_mutex_lock(&m);
 *     PN_AWAIT(t->pc, &t->g, cx);                // READY: we hold the lock
 *     counter++;
 *     pn_mutex_unlock(&t->g);
 *
 * Fairness.  Waiters are served first come, first served, and nobody
 * overtakes a queued waiter: while anyone waits, permits released go to
 * the head of the queue (partly, when it wants more than are free, as in
 * Tokio's batch semaphore), so acquire(5) is not starved by a stream of
 * acquire(1).  try_acquire fails while anyone is queued.
 *
 * Cost.  Uncontended, an acquire is one compare-and-swap on the permit
 * count and a release is one more: no lock.  The lock (a pthread mutex)
 * and the queue are used only when someone has to wait.
 *
 * Threads.  Every call may be made from any thread; futures are polled by
 * whichever task owns them.  try_*, release, add_permits, available,
 * close and the blocking_* variants are for plain threads too.
 *
 * Ownership.  A pn_semaphore, pn_mutex or pn_rwlock is the caller's memory
 * (embed it, or use the static initializer); destroy it once no future of
 * it is pending and no guard holds it.  Futures hold a pointer to it.
 *
 * Guards.  A pn_semaphore_permit (pn_mutex_guard, pn_rwlock_guard are the
 * same type) that returned PN_READY with .res 0 holds its permits until
 * released: pn_semaphore_release (pn_mutex_unlock, pn_rwlock_unlock) or
 * pn_future_drop give them back; pn_semaphore_forget keeps them out of
 * the semaphore for good.  Releasing, dropping or forgetting a guard that
 * holds nothing (released, failed, never polled) is a no-op.  Like every
 * polled future, a pending one must not move; a READY guard may.
 *
 * Cancel safety.  Dropping a pending acquire (lock, read, write) returns
 * every permit already assigned to it (a waiter at the head can hold part
 * of what it asked for), which may complete the next waiter; a pending
 * acquire that was granted but has not been polled since is a holder, and
 * its drop releases what it was granted.  Nothing is lost, nobody stalls.
 */
#ifndef POLLEN_SEMAPHORE_H
#define POLLEN_SEMAPHORE_H

#include <pthread.h>
#ifndef __cplusplus
#include <stdatomic.h> /* C only: in C++ it clashes with <atomic> */
#endif
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most permits a semaphore can hold (Tokio's bound: room for two flag
 * bits and headroom). */
#define PN_SEMAPHORE_MAX_PERMITS (SIZE_MAX >> 3)

typedef struct pn_semaphore {
    PN__ATOMIC(size_t) state;      /* private: permits << 2 | WAITERS | CLOSED */
    pthread_mutex_t lock;          /* private: guards the queue */
    pn_sync_queue waiters;         /* private: FIFO */
} pn_semaphore;

/* A semaphore of `n` permits (n <= PN_SEMAPHORE_MAX_PERMITS), usable
 * without init (static or automatic storage). */
#define PN_SEMAPHORE_INIT(n) { ((size_t)(n)) << 2, PTHREAD_MUTEX_INITIALIZER, { NULL, NULL } }

/* Initialise with `permits` permits.  Returns 0, -EINVAL (NULL, or
 * permits > PN_SEMAPHORE_MAX_PERMITS). */
PN_EXTERN int pn_semaphore_init(pn_semaphore *s, size_t permits);

/* Release the semaphore's lock.  No future of it may be pending.  NULL:
 * no effect. */
PN_EXTERN void pn_semaphore_destroy(pn_semaphore *s);

/*
 * The acquire future, which is the guard once READY.  Outputs:
 *   .res      0: `permits` permits are held;  -ESHUTDOWN: the semaphore
 *             is closed (before, or while, it waited; nothing held);
 *             -EINVAL: NULL semaphore, n == 0 or n > the max (given at
 *             the first poll, which is READY at once).
 *   .permits  the permits it holds now: n once READY with .res 0, back
 *             to 0 after release or forget.
 */
typedef struct pn_semaphore_permit {
    pn_future base;
    int res;                       /* output */
    size_t permits;                /* output: held now */
    /* private */
    pn_semaphore *sem;
    size_t n;
    PN__ATOMIC(unsigned) granted;  /* set under the lock by the granter */
    unsigned char st;              /* the owner's view: idle, queued, held, done */
    pn_sync_waiter w;
} pn_semaphore_permit;

/* Acquire `n` permits, in FIFO order with the other waiters.  Lazy. */
PN_EXTERN PN_MUST_USE pn_semaphore_permit pn_semaphore_acquire(pn_semaphore *s, size_t n);

/* Give back the permits `p` holds (READY, .res 0); a pending `p` is
 * dropped (cancelled, as pn_future_drop).  Anything else, and NULL: no-op.
 * Any thread, once the owner hands the guard over. */
PN_EXTERN void pn_semaphore_release(pn_semaphore_permit *p);

/* Keep the permits `p` holds out of the semaphore for good (the guard
 * then holds nothing); a pending `p` is dropped instead.  NULL: no-op. */
PN_EXTERN void pn_semaphore_forget(pn_semaphore_permit *p);

/* Take `n` permits now, without waiting.  Returns 0 (the caller holds n
 * permits: give them back with pn_semaphore_add_permits(s, n)), -EAGAIN
 * (fewer than n are free, or someone is queued: try_acquire never
 * overtakes a waiter), -ESHUTDOWN (closed), -EINVAL (NULL, n == 0 or n >
 * the max). */
PN_EXTERN int pn_semaphore_try_acquire(pn_semaphore *s, size_t n);

/* Add `n` permits (serving the queue first, in order).  Returns 0, or
 * -EINVAL (NULL, or the semaphore would hold more than the max: nothing
 * added).  n == 0 is a no-op.  Allowed on a closed semaphore (the permits
 * are counted; nobody can take them).  The max counts free permits only:
 * permits added while guards hold others, up to the max, leave no room
 * for those guards, and a release that would go past the max drops the
 * excess (Tokio panics there).  Keep the total below
 * PN_SEMAPHORE_MAX_PERMITS. */
PN_EXTERN int pn_semaphore_add_permits(pn_semaphore *s, size_t n);

/* The permits free right now (0 while anyone waits).  A snapshot. NULL: 0. */
PN_EXTERN size_t pn_semaphore_available(const pn_semaphore *s);

/* Close: every queued acquire completes with -ESHUTDOWN (and gives back
 * what it was partly assigned), later acquires and try_acquires fail
 * with -ESHUTDOWN.  Held permits stay held and may be released.
 * Idempotent; NULL: no effect. */
PN_EXTERN void pn_semaphore_close(pn_semaphore *s);

/* True once pn_semaphore_close ran (false for NULL). */
PN_EXTERN bool pn_semaphore_is_closed(const pn_semaphore *s);

/* ---- Mutex ----------------------------------------------------------------
 * A semaphore of one permit: FIFO, no barging, the lock handed to the
 * first waiter on unlock.  A mutex is never closed, so a lock's .res is
 * always 0 (or -EINVAL for a NULL mutex; -EDEADLK from blocking_lock). */

typedef struct pn_mutex {
    pn_semaphore sem;              /* private */
} pn_mutex;

typedef pn_semaphore_permit pn_mutex_guard;

#define PN_MUTEX_INIT { PN_SEMAPHORE_INIT(1) }

/* Returns 0 or -EINVAL (NULL).  Destroy once no lock future is pending
 * and no guard holds it (NULL: no effect). */
PN_EXTERN int pn_mutex_init(pn_mutex *m);
PN_EXTERN void pn_mutex_destroy(pn_mutex *m);

/* The lock future: READY with .res 0 means it holds the lock (.res
 * -EINVAL: NULL mutex).  Drop while pending: leaves the queue; if the lock
 * had been handed to it meanwhile, hands it on to the next waiter. */
PN_EXTERN PN_MUST_USE pn_mutex_guard pn_mutex_lock(pn_mutex *m);

/* Unlock (the guard of a READY lock), or cancel a pending lock. */
PN_EXTERN void pn_mutex_unlock(pn_mutex_guard *g);

/* Lock now if it is free and nobody waits: returns 0 and fills *g with a
 * holding guard; -EAGAIN; -EINVAL (NULL m or g). */
PN_EXTERN int pn_mutex_try_lock(pn_mutex *m, pn_mutex_guard *g);

/* Lock from a plain thread, parking it until the lock is ours: returns 0
 * (*g holds the lock), -EDEADLK (called from a thread polling a task:
 * nothing done), -ENOMEM, -EINVAL (NULL). */
PN_EXTERN int pn_mutex_blocking_lock(pn_mutex *m, pn_mutex_guard *g);

/* ---- RwLock ---------------------------------------------------------------
 * A semaphore of PN_RWLOCK_MAX_READS permits: a reader takes one, a writer
 * takes all.  FIFO: a waiting writer blocks the readers that come after
 * it, so writers are not starved.  Never closed. */

#define PN_RWLOCK_MAX_READS ((size_t)(UINT32_MAX >> 3))

typedef struct pn_rwlock {
    pn_semaphore sem;              /* private */
} pn_rwlock;

typedef pn_semaphore_permit pn_rwlock_guard;

#define PN_RWLOCK_INIT { PN_SEMAPHORE_INIT(PN_RWLOCK_MAX_READS) }

/* Returns 0 or -EINVAL (NULL).  Destroy as a mutex. */
PN_EXTERN int pn_rwlock_init(pn_rwlock *rw);
PN_EXTERN void pn_rwlock_destroy(pn_rwlock *rw);

/* Shared and exclusive lock futures; READY with .res 0 holds the lock
 * (-EINVAL: NULL rwlock).  Drop while pending as pn_mutex_lock; a pending
 * write may hold part of the read permits already (the readers that left
 * before it), and its drop gives them back, letting in the readers queued
 * behind it. */
PN_EXTERN PN_MUST_USE pn_rwlock_guard pn_rwlock_read(pn_rwlock *rw);
PN_EXTERN PN_MUST_USE pn_rwlock_guard pn_rwlock_write(pn_rwlock *rw);

/* Unlock a read or write guard, or cancel a pending one. */
PN_EXTERN void pn_rwlock_unlock(pn_rwlock_guard *g);

/* Returns 0 (*g holds), -EAGAIN (held incompatibly, or anyone waits),
 * -EINVAL (NULL rw or g). */
PN_EXTERN int pn_rwlock_try_read(pn_rwlock *rw, pn_rwlock_guard *g);
PN_EXTERN int pn_rwlock_try_write(pn_rwlock *rw, pn_rwlock_guard *g);

/* Plain-thread variants: 0, -EDEADLK, -ENOMEM, -EINVAL as blocking_lock. */
PN_EXTERN int pn_rwlock_blocking_read(pn_rwlock *rw, pn_rwlock_guard *g);
PN_EXTERN int pn_rwlock_blocking_write(pn_rwlock *rw, pn_rwlock_guard *g);

#ifdef __cplusplus
}
#endif
#endif
