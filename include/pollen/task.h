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
 *   .res     0 when the task's future completed, -ECANCELED when it was
 *            aborted or dropped by shutdown;
 *   .output  on success, the task's future (cast it to your type and read
 *            its output fields); valid until pn_join_handle_free.  NULL on
 *            -ECANCELED.
 * Dropping a pn_join_future does not affect the task.  Only one
 * pn_join_future per handle may be pending at a time: a second one takes
 * the waker slot and the first is never woken (it hangs).  A NULL handle
 * gives .res -EINVAL at the first poll.
 */
typedef struct pn_join_future {
    pn_future base;
    pn_join_handle *handle;  /* private */
    void *output;            /* output */
    int res;                 /* output */
} pn_join_future;

PN_EXTERN PN_MUST_USE pn_join_future pn_join(pn_join_handle *h);

/* ==== Task groups ==========================================================
 *
 * A task group (Tokio's JoinSet) owns the tasks spawned into it and hands
 * them back in the order they finish:
 *
 *     pn_task_group *g;
 *     if (pn_task_group_new(rt, &g) < 0) ...;
 *     for (int i = 0; i < n; i++)
 *         PN_TASK_GROUP_SPAWN(g, my_fut[i]);          // errors as pn_spawn
 *     // in a task (state in its struct): loop until .res == -ENOENT
 *     t->join = pn_task_group_join_next(g);
 *     PN_AWAIT(t->pc, &t->join, cx);
 *     if (t->join.res == 0) use((my_fut_t *)t->join.output);
 *     pn_task_group_join_release(&t->join);           // frees that task
 *     ...
 *     pn_task_group_free(g);                          // aborts the rest
 *
 * Completion order costs no polling of every task: each task's join waker
 * is a small node of the group; when the task finishes the node moves to
 * the group's ready list and the group's waiter is woken.
 *
 * Threads: spawn, len and abort_all may be called from any thread, on
 * either runtime.  Only one join_next or shutdown future may be pending at
 * a time (they share one waiter: a second one takes it over, and the first
 * is not woken again until polled again).  pn_task_group_free must not run
 * concurrently with any other call on the group, and every join_next or
 * shutdown future of the group must be READY or dropped before it; results
 * already taken stay valid after it (release them as usual).
 *
 * Ownership: the group is a heap object owned by the caller of
 * pn_task_group_new, freed by pn_task_group_free.  A READY join_next
 * future owns the finished task it returned until
 * pn_task_group_join_release (or pn_future_drop) on it.
 */

typedef struct pn_task_group pn_task_group;

/* A new empty group spawning onto `rt` (which must outlive the spawns).
 * Returns 0, -EINVAL (NULL rt or out), -ENOMEM; *out is NULL on error. */
PN_EXTERN int pn_task_group_new(pn_runtime *rt, pn_task_group **out);

/* Spawn a copy of the `size`-byte future at `f` into the group (like
 * pn_spawn: the caller's copy is dead after a success).  Returns 0,
 * -EINVAL (NULL g, or as pn_spawn), -ENOMEM, -ESHUTDOWN (as pn_spawn:
 * the future was not dropped and is still the caller's).  Any thread. */
PN_EXTERN int pn_task_group_spawn(pn_task_group *g, const pn_future *f, size_t size);

#define PN_TASK_GROUP_SPAWN(g, fut) \
    pn_task_group_spawn((g), (const pn_future *)&(fut), sizeof(fut))

/* Tasks in the group: running ones plus finished ones not yet returned by
 * join_next.  0 for NULL.  Any thread. */
PN_EXTERN size_t pn_task_group_len(pn_task_group *g);

/* pn_join_handle_abort every task of the group (each finishes as
 * -ECANCELED unless its current poll completes it; the results still come
 * out of join_next).  Tasks spawned afterwards are not affected.  NULL:
 * no effect.  Any thread. */
PN_EXTERN void pn_task_group_abort_all(pn_task_group *g);

/* Abort every task and release the group.  Running tasks are dropped by
 * their runtime later (detached); finished ones are freed now.  NULL is a
 * no-op. */
PN_EXTERN void pn_task_group_free(pn_task_group *g);

/*
 * The next task to finish.  Outputs once PN_READY:
 *   .res     0 the task's future completed: .output is it (cast it to
 *            your future's type and read its outputs);
 *            -ECANCELED it was aborted (or dropped by its runtime's
 *            shutdown): .output is NULL;
 *            -ENOENT the group has no task left: .output is NULL;
 *            -EINVAL NULL group.
 * The future owns the returned task until pn_task_group_join_release (or
 * pn_future_drop) on the READY future; .output is valid until then.
 * Cancel safety: dropping a pending join_next loses nothing (a task that
 * finished meanwhile stays in the group for the next join_next).
 */
typedef struct pn_task_group_join_future {
    pn_future base;
    pn_task_group *group;  /* private */
    void *entry;           /* private: the task this READY future owns */
    bool waiting;          /* private: registered as the group's waiter */
    void *output;          /* output */
    int res;               /* output */
} pn_task_group_join_future;

PN_EXTERN PN_MUST_USE pn_task_group_join_future pn_task_group_join_next(pn_task_group *g);

/* Without waiting: fills *out as a READY join_next future would and
 * returns its .res, or returns -EAGAIN (tasks are running, none has
 * finished; *out is then empty).  Release *out as usual.  -EINVAL for
 * NULL arguments. */
PN_EXTERN int pn_task_group_try_join_next(pn_task_group *g, pn_task_group_join_future *out);

/* Free the task a READY join_next future owns (its .output becomes NULL).
 * A second release, a pending or never-polled future, NULL: no effect. */
PN_EXTERN void pn_task_group_join_release(pn_task_group_join_future *j);

/*
 * Abort every task of the group (at the first poll), then wait until every
 * task has finished, freeing each one as it does (their outputs are
 * discarded).  READY with .res 0 when the group is empty (tasks spawned
 * while it waits are waited for too, not aborted); -EINVAL for a NULL
 * group.  Cancel safety: dropping it pending loses nothing but the
 * results it already discarded; the tasks stay aborted.
 */
typedef struct pn_task_group_shutdown_future {
    pn_future base;
    pn_task_group *group;  /* private */
    int state;             /* private: 0 new, 1 waiting, 2 done */
    int res;               /* output */
} pn_task_group_shutdown_future;

PN_EXTERN PN_MUST_USE pn_task_group_shutdown_future pn_task_group_shutdown(pn_task_group *g);

#ifdef __cplusplus
}
#endif
#endif
