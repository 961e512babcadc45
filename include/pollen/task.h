/*
 * pollen/task.h - spawning tasks and joining them.
 *
 * pn_spawn copies a future into one allocation (a task header followed by
 * the future's bytes, 16-byte aligned) that never moves until it is freed,
 * and schedules it.  The caller's copy is dead after the call: do not poll
 * or drop it.
 *
 * A join handle is the spawner's interest in the task.  Await it with a
 * pn_join_future to get the finished future (whose fields hold the output),
 * abort it, or free it (which detaches the task: it keeps running).  The
 * task's memory lives until the task is done and its handle is freed.
 *
 * Threads: pn_spawn, pn_join_handle_abort, pn_join_handle_is_finished and
 * pn_join_handle_free may be called from any thread.  A task is polled and
 * dropped by its runtime's thread only.
 *
 * Lifetime of a handle: it stays valid until pn_join_handle_free, even
 * after its runtime was shut down or freed (the task is then finished, as
 * cancelled unless it had completed, and its output can still be awaited
 * from another runtime).  A handle is a plain pointer: using it after
 * pn_join_handle_free, freeing it twice, or freeing a pointer that is not a
 * handle is undefined and cannot be detected (the second free may release
 * another owner's reference to the task).  Set your copy to NULL when you
 * free it; the calls below accept NULL.
 */
#ifndef POLLEN_TASK_H
#define POLLEN_TASK_H

#include "future.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_join_handle pn_join_handle;

/* The largest future pn_spawn accepts: PTRDIFF_MAX (the largest object C
 * can index) less room for the task header, which is far smaller. */
#define PN_SPAWN_MAX_SIZE ((size_t)PTRDIFF_MAX - 4096)

/*
 * Spawn a copy of the `size`-byte future at `f` on `rt`.  If `out` is NULL
 * the task is detached; otherwise *out receives its join handle, which the
 * caller must eventually pass to pn_join_handle_free (*out is NULL on any
 * error).  Returns 0, -ENOMEM (the allocation failed: nothing was spawned,
 * the future was not dropped, it is still the caller's), -ESHUTDOWN (after
 * pn_runtime_shutdown; likewise), -EINVAL (NULL rt or f, a future whose
 * vtable or poll is NULL, size smaller than a pn_future or larger than
 * PN_SPAWN_MAX_SIZE; likewise).
 *
 * Memory: the copy touches every byte of the future, so a large buffer
 * kept inside it is resident from the spawn on, used or not.  A task that
 * may wait long before it needs a big buffer (an idle connection) should
 * allocate it on its first poll and free it when done or dropped
 * (examples/echo_server.c does: 4.4 KB per idle connection instead of 16.7).
 */
PN_EXTERN int pn_spawn(pn_runtime *rt, const pn_future *f, size_t size,
                       pn_join_handle **out);

/* Spawn onto the runtime polling `cx` (from inside a task). */
static inline int pn_spawn_cx(pn_cx *cx, const pn_future *f, size_t size,
                              pn_join_handle **out)
{
    return pn_spawn(cx->rt, f, size, out);
}

/*
 * Spawn a task pinned to the thread that is polling `cx` (a worker of the
 * multi-thread runtime, or the current-thread runtime's loop): it is never
 * stolen, so its future may use thread-local state or objects that are not
 * safe to move between threads.  Wakes from anywhere bring it back to that
 * thread.  Errors as pn_spawn, plus -EPERM when `cx` is not a task's context
 * (e.g. the future of a multi-thread pn_block_on, which runs outside the
 * workers).  If the pinned thread stops (shutdown) the task is dropped by
 * the thread that shuts the runtime down.
 */
PN_EXTERN int pn_spawn_local(pn_cx *cx, const pn_future *f, size_t size,
                             pn_join_handle **out);

/* pn_spawn for a future variable: PN_SPAWN(rt, my_fut, &h) */
#define PN_SPAWN(rt, fut, out) pn_spawn((rt), (const pn_future *)&(fut), sizeof(fut), (out))

/* Ask the task to stop: it is dropped by its runtime at its next scheduling
 * point (an idle task is queued for that; a running one is dropped when its
 * current poll returns PN_PENDING) and its join completes with -ECANCELED.
 * A task whose current poll completes keeps its output (join gives 0).  No
 * effect on a finished task, or on a NULL handle.  Thread-safe. */
PN_EXTERN void pn_join_handle_abort(pn_join_handle *h);

/* True once the task completed or was cancelled; false for NULL. */
PN_EXTERN bool pn_join_handle_is_finished(pn_join_handle *h);

/* Release the handle.  An unfinished task keeps running, detached; a
 * finished one is freed with its output.  NULL is a no-op; a second free
 * of the same handle is undefined (see "Lifetime of a handle"). */
PN_EXTERN void pn_join_handle_free(pn_join_handle *h);

/*
 * Awaiting a task.  Outputs once PN_READY:
 *   .status  0 when the task's future completed, -ECANCELED when it was
 *            aborted or dropped by shutdown;
 *   .output  on success, the task's future (cast it to your type and read
 *            its output fields); valid until pn_join_handle_free.  NULL on
 *            -ECANCELED.
 * Dropping a pn_join_future does not affect the task.  Only one
 * pn_join_future per handle may be pending at a time: a second one takes
 * the waker slot and the first is never woken (it hangs).  A NULL handle
 * gives .status -EINVAL at the first poll.
 */
typedef struct pn_join_future {
    pn_future base;
    pn_join_handle *handle;  /* private */
    void *output;            /* output */
    int status;              /* output */
} pn_join_future;

PN_EXTERN pn_join_future pn_join_handle_await(pn_join_handle *h);

#ifdef __cplusplus
}
#endif
#endif
