/*
 * blocking.h - the blocking pool's private interface (blocking.c).
 *
 * The runtime struct has no field for the pool: pools live in a small
 * registry keyed by the runtime pointer, made on first use.  The runtime
 * must call pn__blocking_shutdown(rt) when it is freed, after its tasks
 * were dropped (pn_runtime_shutdown) and before the reactor and the timers
 * are freed: it completes the queued calls with -ESHUTDOWN (waking their
 * futures), waits for the running ones, joins every pool thread and frees
 * the pool.  Idempotent; a runtime that never used the pool costs a lookup.
 */
#ifndef PN_EXECUTOR_BLOCKING_H
#define PN_EXECUTOR_BLOCKING_H

#include <pthread.h>
#include "pollen/blocking.h"

struct pn__blocking_pool;

/* rt's pool, made (with no thread yet) on first use; NULL on ENOMEM. */
struct pn__blocking_pool *pn__blocking_pool_get(pn_runtime *rt);

/* Stop and free a pool already taken out of the registry: queued calls get
 * -ESHUTDOWN, running calls finish, every thread is joined. */
void pn__blocking_pool_free(struct pn__blocking_pool *p);

/* Take rt's pool out of the registry and free it (no-op if none). */
void pn__blocking_shutdown(pn_runtime *rt);

/* For tests and metrics: threads of rt's pool (alive, not retired), of
 * which idle; calls queued and not started.  All 0 when rt has no pool. */
typedef struct pn__blocking_stats {
    unsigned threads, idle, queued;
    uint64_t spawned_threads;   /* threads ever started */
} pn__blocking_stats;

void pn__blocking_pool_stats(pn_runtime *rt, pn__blocking_stats *out);

/* Tests: replaces pthread_create for pool threads (NULL restores it). */
typedef int (*pn__blocking_thread_create_fn)(pthread_t *tid, const pthread_attr_t *attr,
                                             void *(*start)(void *), void *arg);
void pn__blocking_set_thread_create(pn__blocking_thread_create_fn fn);

#endif
