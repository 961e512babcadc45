/*
 * pollen/waitgroup.h - a wait group (Go's sync.WaitGroup, a countdown
 * latch): wait until a count of outstanding jobs drops to zero.
 *
 *     pn_wait_group wg = PN_WAIT_GROUP_INIT;    // or pn_wait_group_init(&wg)
 *     pn_wait_group_add(&wg, n);                // before starting n jobs
 *     // each job, on any thread or task, when it is done:
 *     pn_wait_group_done(&wg);
 *     // a task waits (state in its struct):
 *     t->w = pn_wait_group_wait(&wg);
 *     PN_AWAIT(t->pc, &t->w, cx);               // READY once the count is 0
 *     // or a plain thread:  pn_wait_group_blocking_wait(&wg);
 *     pn_wait_group_destroy(&wg);               // no waiter left
 *
 * The group is embeddable: the caller owns its memory, which must stay
 * put and outlive every wait future.  It may be reused: a count that
 * went to zero may go up again.  Every call may be made from any thread;
 * a wait future is polled by its task.  Waiting is intrusive (no
 * allocation): every waiter pending when the count reaches zero is woken
 * and completes, even if the count goes up again before it polls.
 */
#ifndef POLLEN_WAITGROUP_H
#define POLLEN_WAITGROUP_H

#include <pthread.h>
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_wait_group {
    pthread_mutex_t lock;           /* private */
    size_t count;                   /* private: guarded by lock */
    uint64_t gen;                   /* private: times the count reached 0 */
    pn_sync_queue waiters;          /* private: FIFO */
} pn_wait_group;

#define PN_WAIT_GROUP_INIT { PTHREAD_MUTEX_INITIALIZER, 0, 0, { NULL, NULL } }

/* Initialise a group with a count of 0.  NULL: no effect. */
PN_EXTERN void pn_wait_group_init(pn_wait_group *wg);

/* Release the group's resources; no wait future may be pending.  NULL: no
 * effect. */
PN_EXTERN void pn_wait_group_destroy(pn_wait_group *wg);

/* Add n to the count.  Returns 0, -EINVAL (NULL, or n == 0), -EOVERFLOW
 * (the count would wrap; nothing is added). */
PN_EXTERN int pn_wait_group_add(pn_wait_group *wg, size_t n);

/* Take 1 from the count; at zero every pending waiter is woken.  Returns
 * 0, -EINVAL (NULL, or the count is already 0: nothing changes). */
PN_EXTERN int pn_wait_group_done(pn_wait_group *wg);

/* The count now (0 for NULL); it may change at once. */
PN_EXTERN size_t pn_wait_group_count(pn_wait_group *wg);

/*
 * READY with .res 0 once the count is (or was, after this future was
 * first queued) zero; -EINVAL for a NULL group.  Cancel safety: dropping
 * it pending unqueues it; nothing else is affected.  Dropping it READY or
 * never polled is a no-op.
 */
typedef struct pn_wait_group_wait_future {
    pn_future base;
    pn_wait_group *wg;   /* private */
    pn_sync_waiter w;    /* private */
    int res;             /* output */
} pn_wait_group_wait_future;

PN_EXTERN PN_MUST_USE pn_wait_group_wait_future pn_wait_group_wait(pn_wait_group *wg);

/* Block this plain thread until the count is zero.  Returns 0, -EINVAL
 * (NULL), -EDEADLK (called from a thread that is polling a task). */
PN_EXTERN int pn_wait_group_blocking_wait(pn_wait_group *wg);

#ifdef __cplusplus
}
#endif
#endif
