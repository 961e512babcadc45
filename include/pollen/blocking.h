/*
 * pollen/blocking.h - run blocking calls on a pool of threads.
 *
 * A task must never block its thread: a read() on a regular file, a
 * getaddrinfo(), a compression step or a sqlite query stalls every other
 * task of that thread.  pn_spawn_blocking hands such a call to the blocking
 * pool of the runtime and gives a future of its result:
 *
 *     static void *slow_sum(void *arg) { ...; return (void *)(intptr_t)sum; }
 *
 *     self->job = pn_spawn_blocking(slow_sum, &self->input);
 *     PN_AWAIT(self->pc, &self->job, cx);
 *     if (self->job.res == 0)
 *         total = (intptr_t)self->job.value;
 *
 * The function returns a void *: a pointer, or an integer cast through
 * intptr_t (an ssize_t or a negative errno fits).
 *
 * Lazy: creating the future runs nothing.  Its first poll submits the call
 * to the pool of the runtime polling it (cx->rt), from either runtime
 * flavour.  The call then runs on a pool thread, never on a runtime thread,
 * and the pool thread wakes the task when it returns.
 *
 * The pool: one per runtime, made on first use.  Threads are started on
 * demand, up to 64 (pn_blocking_pool_configure); when all are busy, calls
 * wait in a FIFO queue.  A thread idle for the keep-alive (10 s) exits.
 * Pool threads block every signal.
 *
 * Dropping the future before it is ready: a call that has not started is
 * taken off the queue and never runs; a call that has started cannot be
 * interrupted, so it runs to the end and its result is discarded.  Since the
 * dropper cannot know which, a call whose `arg` or result owns memory
 * should use pn_spawn_blocking_ex: its `discard` callback is called exactly
 * once when, and only when, the future was dropped before it returned
 * PN_READY, with the .res it would have had (0: fn ran and `value` is
 * its return value; -ECANCELED: fn never ran; -ESHUTDOWN: see below).  It
 * may run on the dropping thread or on a pool thread.  When the future
 * returns PN_READY, `arg` and `.value` are the caller's again and discard
 * is not called.
 *
 * The future holds no pointer into itself: it may be moved even after its
 * first poll (unlike most pollen futures).
 *
 * Shutdown: freeing the runtime waits for the calls already running (a call
 * that blocks forever therefore blocks pn_runtime_free: give blocking calls
 * their own timeouts) and completes the queued ones with -ESHUTDOWN without
 * running them.  Threads: pool threads are joined; none is left behind.
 * As with every pollen future, drop a pending pn_blocking_future before freeing
 * its runtime (tasks are dropped by pn_runtime_free itself; a future you
 * poll with pn_block_on is yours to drop first).
 */
#ifndef POLLEN_BLOCKING_H
#define POLLEN_BLOCKING_H

#include "future.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(*pn_blocking_fn)(void *arg);
typedef void (*pn_blocking_discard_fn)(void *arg, void *value, int res);

struct pn__blocking_job;

/*
 * The future of a blocking call.  Outputs once PN_READY:
 *   .res     0 when fn ran; -ENOMEM (no memory for the job record or the
 *            pool), -EAGAIN (no pool thread could be started and none is
 *            running), -ESHUTDOWN (the runtime's pool shut down before the
 *            call started), -EINVAL (fn NULL, or polled without a
 *            runtime): then fn never ran.  Never -ECANCELED: a call
 *            that started always finishes.
 *   .value   fn's return value when .res is 0, else NULL.
 */
typedef struct pn_blocking_future {
    pn_future base;
    /* private */
    pn_blocking_fn fn;
    void *arg;
    pn_blocking_discard_fn discard;
    struct pn__blocking_job *job;
    /* output */
    void *value;
    int res;
} pn_blocking_future;

/* A future that runs fn(arg) on the blocking pool (see above). */
PN_EXTERN PN_MUST_USE pn_blocking_future pn_spawn_blocking(pn_blocking_fn fn, void *arg);

/* The same, with a discard callback (may be NULL) for a dropped future. */
PN_EXTERN PN_MUST_USE pn_blocking_future pn_spawn_blocking_ex(pn_blocking_fn fn, void *arg,
                                                              pn_blocking_discard_fn discard);

/*
 * Set the limits of rt's blocking pool (made now if it does not exist yet):
 * at most `max_threads` threads (default 64; lowering it below the number
 * running lets the extra threads finish their call and exit) and the time
 * an idle thread waits for work before it exits (default 10 s; 0: exit as
 * soon as the queue is empty).  Returns 0, -EINVAL (NULL rt, max_threads 0),
 * -ENOMEM.  Thread-safe.
 */
PN_EXTERN int pn_blocking_pool_configure(pn_runtime *rt, unsigned max_threads,
                                         uint64_t keep_alive_ns);

#ifdef __cplusplus
}
#endif
#endif
