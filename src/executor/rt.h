/*
 * rt.h - the parts every runtime flavour shares, and what the rest of
 * pollen may ask of a runtime (private).
 *
 * struct pn_runtime is the common head of each flavour's runtime struct
 * (current_thread.c, multi_thread.c); the public calls in runtime.c check
 * their arguments and dispatch through `ops`.
 */
#ifndef PN_EXECUTOR_RT_H
#define PN_EXECUTOR_RT_H

#include "pollen/runtime.h"
#include "pollen/metrics.h"
#include "task.h"
#include <pthread.h>
#include <stdatomic.h>
#include "timer/timers.h"
#include "core/sanitize.h"

struct pn__reactor;

typedef struct pn__rt_ops {
    int (*block_on)(pn_runtime *rt, pn_future *f);
    /* Publish a freshly made task (refs: owned + queue [+ join]).  False
     * when shut down (the task was not published). */
    bool (*spawn)(pn_runtime *rt, pn__task *t);
    /* Stop threads (waiting until `deadline`, a pn_instant; UINT64_MAX: no
     * limit) and drop every task.  0, or -ETIMEDOUT when a thread is still
     * inside a poll at the deadline (nothing was dropped; call again). */
    int (*shutdown)(pn_runtime *rt, uint64_t deadline);
    /* The scheduler of tasks pinned to the calling thread, or NULL when the
     * caller is not one of the runtime's threads. */
    pn__sched *(*local_sched)(pn_runtime *rt);
    void (*destroy)(pn_runtime *rt);      /* after shutdown: free the flavour's parts */
    unsigned (*nworkers)(pn_runtime *rt);
    void (*worker_metrics)(pn_runtime *rt, unsigned index, pn_worker_metrics *out);
    void (*shared_metrics)(pn_runtime *rt, pn_runtime_metrics *out); /* spawned, unparks, injection depth */
    /* pn_time_pause / resume / advance (PN__TIME_*), arguments checked;
     * NULL: the flavour has no virtual clock (-ENOTSUP). */
    int (*time_ctl)(pn_runtime *rt, int op, uint64_t ns);
} pn__rt_ops;

enum { PN__TIME_PAUSE, PN__TIME_RESUME, PN__TIME_ADVANCE };

/* A counter kept by one thread and read by any: relaxed load and store, no
 * read-modify-write. */
typedef _Atomic uint64_t pn__counter;
static inline void pn__count(pn__counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline uint64_t pn__counter_get(pn__counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

struct pn_runtime {
    pn__sched sched;                      /* first: tasks point at it */
    const pn__rt_ops *ops;
    pn_runtime_config cfg;
    struct pn__reactor *reactor;
    pn__timers timers;
    pthread_mutex_t life_lock;            /* guards blockers and shut_down's transition */
    unsigned blockers;                    /* threads inside pn_block_on */
    _Atomic bool shut_down;               /* no new spawn or block_on */
    pthread_mutex_t shutdown_lock;        /* one shutdown at a time */
    bool shutdown_done;                   /* every task dropped (shutdown_lock) */
    bool shutdown_timed_out;              /* the last attempt hit its deadline */
    struct pn__stack_pool *_Atomic stacks; /* fiber stacks, made on first use */
    _Atomic unsigned blocking_inflight;   /* pn_spawn_blocking calls queued or
                                             running: a paused clock does not
                                             auto-advance meanwhile */
};

/* blocking.c: a blocking call of rt ended (after its waker was woken).
 * The last one lets a paused runtime auto-advance again: wake its loop. */
void pn__runtime_blocking_done(pn_runtime *rt);

/* The runtime whose loop or worker runs on this thread, if any. */
extern _Thread_local pn_runtime *pn__tls_rt;
/* Set while this thread polls a future (nested block_on detection). */
extern _Thread_local bool pn__tls_polling;

void pn__runtime_init_common(pn_runtime *rt, const pn_runtime_config *cfg);
int pn__current_thread_new(const pn_runtime_config *cfg, pn_runtime **out);
int pn__multi_thread_new(const pn_runtime_config *cfg, pn_runtime **out);

/* The reactor / timer driver of a runtime (never NULL for a live runtime). */
struct pn__reactor *pn__runtime_reactor(pn_runtime *rt);
struct pn__timers *pn__runtime_timers(pn_runtime *rt);

/* The store-load barrier of the parking protocols (a store, then a load of
 * what the other side stored).  ThreadSanitizer does not model fences, so
 * under it both sides do a seq_cst read-modify-write on one word of their
 * file instead (the same guarantee, slower, and TSan understands it). */
static inline void pn__store_load_barrier(void)
{
#ifdef PN__TSAN
    static _Atomic unsigned word;
    (void)atomic_fetch_add(&word, 0);
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

#endif
