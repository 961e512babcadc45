/*
 * pollen/metrics.h - counters a program can read while its runtime runs.
 *
 * Every counter is kept by the thread it describes with plain (relaxed)
 * stores, so keeping them costs no atomic read-modify-write on a hot path;
 * reading them from another thread gives a recent, not an exact, value.
 * Counters only grow; depths are snapshots.
 */
#ifndef POLLEN_METRICS_H
#define POLLEN_METRICS_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One worker (the current-thread runtime has one, index 0). */
typedef struct pn_worker_metrics {
    uint64_t polls;             /* task polls */
    uint64_t tasks_completed;   /* tasks that completed or were cancelled here */
    uint64_t steals;            /* successful steals from other workers */
    uint64_t stolen_tasks;      /* tasks those steals moved here */
    uint64_t inject_pops;       /* takes from the injection queue (each
                                   one lock, one task or a batch) */
    uint64_t parks;             /* times the worker went to sleep */
    uint64_t budget_exhausted;  /* polls that spent the whole cooperative budget */
    uint64_t overflows;         /* local queue overflows to the injection queue */
    uint64_t local_queue_depth; /* tasks in its local queue now */
} pn_worker_metrics;

/* The whole runtime: the workers summed, plus what is shared. */
typedef struct pn_runtime_metrics {
    unsigned workers;           /* worker threads (1 for current-thread) */
    uint64_t tasks_spawned;
    uint64_t tasks_completed;
    uint64_t polls;
    uint64_t steals;
    uint64_t stolen_tasks;
    uint64_t inject_pops;
    uint64_t parks;
    uint64_t unparks;           /* sleeping workers woken for new work */
    uint64_t unparks_reactor;   /* of those, woken through the reactor (a
                                   worker parked in epoll or its io_uring
                                   ring: an eventfd write or a ring
                                   message); the others: a futex wake */
    uint64_t budget_exhausted;
    uint64_t overflows;
    uint64_t injection_queue_depth;
    uint64_t local_queue_depth; /* summed over workers */
    pn_backend backend;         /* the reactor's backend (EPOLL or URING) */
    unsigned uring_rings;       /* io_uring rings: 1, or one per worker
                                   (pn_uring_rings); 0 on epoll */
    bool uring_single_issuer;   /* they are SINGLE_ISSUER | DEFER_TASKRUN */
    uint64_t reactor_errors;    /* multi-thread: reactor turns that failed
                                   (epoll_wait or io_uring_enter, not EINTR);
                                   each is followed by a back-off sleep of
                                   1-100 ms, so a broken reactor never spins.
                                   The current-thread runtime returns such
                                   an error from pn_block_on instead (0). */
} pn_runtime_metrics;

/* Fill *out.  Returns 0, or -EINVAL on NULL.  Thread-safe. */
PN_EXTERN int pn_runtime_metrics_get(pn_runtime *rt, pn_runtime_metrics *out);
/* Fill *out for worker `index`.  Returns 0, or -EINVAL (NULL, or no such
 * worker).  Thread-safe. */
PN_EXTERN int pn_runtime_worker_metrics_get(pn_runtime *rt, unsigned index,
                                            pn_worker_metrics *out);

#ifdef __cplusplus
}
#endif
#endif
