/*
 * task.h - the task cell and its state word (private).
 *
 * A spawned future lives in one allocation that never moves until freed:
 *
 *     +------------------------------+  only with a join handle (JOINABLE):
 *     | join_waker (16 bytes)        |  the joiner's waker, guarded by join_lock
 *     +------------------------------+  <- pn__task *, also the waker data
 *     | state (atomic u64)           |  hot: flags + refcount
 *     | next (run-queue link)        |
 *     | sched (who schedules it)     |
 *     | owned_prev / owned_next      |  live tasks, for shutdown
 *     | owned, join_lock, cell       |
 *     +------------------------------+  16-byte aligned (48 bytes in)
 *     | the future's bytes           |  output stays here after PN_READY
 *     +------------------------------+
 *
 * The header is 48 bytes so that a detached task costs header + future
 * only (a program with a million sleeping tasks holds a million of them):
 * the join waker, which a detached task never uses, sits before the
 * header, only in tasks spawned with a handle.
 *
 * State word: flags in the low bits, the reference count above them.
 *
 *   RUNNING        being polled (or dropped) by its runtime thread
 *   COMPLETE       the future returned PN_READY or was dropped; final
 *   NOTIFIED       a wake is pending: the task is in a run queue, or is
 *                  RUNNING and will be queued again after the poll
 *   CANCELLED      abort or shutdown asked for the future to be dropped
 *   JOIN_INTEREST  a join handle exists
 *   JOINABLE       spawned with a join handle: the allocation starts with
 *                  the join waker (set at creation, never changes)
 *   REF            count of: its runtime (until COMPLETE; the owned list
 *                  holds it once the task is linked there), the run queue
 *                  entry (while NOTIFIED and queued, or RUNNING), the join
 *                  handle, and every waker clone.  Freed at zero.
 *
 * Transitions (all compare-and-swap loops in task.c):
 *   idle     -> NOTIFIED           pn__task_wake_by_ref: +1 ref, schedule
 *   RUNNING  -> RUNNING|NOTIFIED   wake during poll: no schedule; the
 *                                  poller re-queues after the poll
 *   NOTIFIED -> RUNNING            pn__task_run start (queue ref -> runner)
 *   RUNNING  -> idle               pending, not notified: runner drops ref
 *   RUNNING|NOTIFIED -> NOTIFIED   pending, notified: runner re-queues
 *   RUNNING  -> COMPLETE           ready (or cancelled: future dropped)
 *   any      -> |CANCELLED         pn_join_handle_abort (+ schedule if idle)
 * NOTIFIED therefore means "queued at most once": a task woken many times
 * before it runs is polled once, and a wake during a poll is never lost.
 */
#ifndef PN_EXECUTOR_TASK_H
#define PN_EXECUTOR_TASK_H

#include <stdatomic.h>
#include <stdalign.h>
#include "pollen/task.h"

#define PN__RUNNING       ((uint64_t)1 << 0)
#define PN__COMPLETE      ((uint64_t)1 << 1)
#define PN__NOTIFIED      ((uint64_t)1 << 2)
#define PN__CANCELLED     ((uint64_t)1 << 3)
#define PN__JOIN_INTEREST ((uint64_t)1 << 4)
#define PN__JOINABLE      ((uint64_t)1 << 5)
#define PN__REF_SHIFT     6
#define PN__REF_ONE       ((uint64_t)1 << PN__REF_SHIFT)
#define PN__FLAGS_MASK    (PN__REF_ONE - 1)

typedef struct pn__task pn__task;
typedef struct pn__sched pn__sched;

/* What a scheduler provides to the tasks it owns. */
typedef struct pn__sched_ops {
    /* Queue a task that just became NOTIFIED; the queue takes the ref the
     * caller passes.  Called from any thread. */
    void (*schedule)(pn__sched *s, pn__task *t);
    /* Free the runtime's scheduling memory (root scheduler only). */
    void (*release)(pn__sched *s);
    /* Root only, may be NULL.  t is not in its runtime's owned list and
     * is the caller's (RUNNING, or never polled and refused by a closed
     * queue): link it in the calling thread's owned list.  False when this
     * thread has none (it is not one of the runtime's workers).  Called by
     * pn__task_run on the polling thread when a poll returned pending,
     * before t can be woken and run elsewhere, and by
     * pn__task_drop_queued.  The multi-thread runtime links tasks here
     * rather than at spawn, so a task that completes on its first poll
     * never takes an owned-list lock. */
    bool (*pending)(pn__sched *root, pn__task *t);
    /* Root only, may be NULL (then cells are malloc'd and each takes a
     * reference on the root).  cell_alloc: a cell of `bytes` for a task
     * spawned on this thread, with its reference on the root taken; sets
     * *where (0: not served here, malloc it; then it returns NULL) and
     * returns NULL on -ENOMEM.  cell_free: give back a cell that
     * cell_alloc served (`where` as it set it) with its root reference;
     * called by the task's last unref, on any thread. */
    void *(*cell_alloc)(pn__sched *root, size_t bytes, uint32_t *where);
    void (*cell_free)(pn__sched *root, void *cell, uint32_t where);
} pn__sched_ops;

/* Every task cell holds a reference on its root scheduler (the runtime's),
 * so a wake through a waker clone that races with pn_runtime_free (a
 * foreign thread preempted between its transition and the end of
 * schedule()) never touches freed memory.  The runtime holds one more,
 * dropped by destroy. */
struct pn__sched {
    const pn__sched_ops *ops;
    pn__sched *root;                 /* itself, or the runtime's (pinned) */
    _Atomic size_t refs;             /* root only */
};

void pn__sched_unref(pn__sched *s);

struct pn__task {
    _Atomic uint64_t state;
    pn__task *next;                  /* run-queue link */
    pn__sched *sched;
    pn__task *owned_prev, *owned_next;
    uint16_t owned;                  /* 0: in no owned list; else 1, or (multi-
                                        thread) 1 + the index of the worker
                                        whose list holds it.  Read and set by
                                        the thread that runs the task */
    atomic_flag join_lock;           /* guards the join waker */
    uint32_t cell;                   /* 0: malloc'd; else the sched's cell_alloc's */
    alignas(16) unsigned char future[];
};

static inline pn_future *pn__task_future(pn__task *t) { return (pn_future *)(void *)t->future; }

/* Allocate a task holding a copy of f with `refs` references, NOTIFIED,
 * plus JOIN_INTEREST when `join`.  NULL on -ENOMEM, or for a size over
 * PN_SPAWN_MAX_SIZE (which callers refuse first with -EINVAL). */
pn__task *pn__task_new(pn__sched *s, const pn_future *f, size_t size,
                       unsigned refs, bool join);
/* Free a task that was never published (spawn failure). */
void pn__task_free_unpublished(pn__task *t);

void pn__task_ref(pn__task *t);
void pn__task_unref(pn__task *t);
void pn__task_unref_n(pn__task *t, unsigned n);

/* The waker vtable of tasks (data = pn__task *). */
extern const pn_waker_vtable pn__task_waker_vt;

/* Result of pn__task_run. */
typedef enum pn__run_result {
    PN__RUN_IDLE,       /* pending; the runner's ref was released */
    PN__RUN_REQUEUE,    /* pending and woken meanwhile: queue it again (ref kept) */
    PN__RUN_DONE        /* completed or cancelled: caller removes it from the
                           owned list and drops that ref; runner ref released */
} pn__run_result;

/* Poll a task taken from a run queue (the caller holds the queue's ref).
 * cx must be filled except for its waker. */
pn__run_result pn__task_run(pn__task *t, pn_cx *cx);

/* Drop the future of a task that is not running and mark it COMPLETE|
 * CANCELLED, waking its joiner.  Returns false if it was already complete.
 * Used by shutdown on the runtime thread. */
bool pn__task_shutdown(pn__task *t);

/* A queue reference to t that no queue can take (its runtime shuts down):
 * drop it.  A task not in its runtime's owned list (the multi-thread
 * runtime links a task at its first pending poll) was never polled, so
 * only queues know it.  On one of the runtime's workers (a push that met
 * the closed injection queue, maybe inside another task's poll, under
 * whatever locks that poll holds) it is linked in the worker's owned list
 * (sched op `pending`), and shutdown drops it once the workers are gone;
 * elsewhere its future is dropped here and the runtime's reference with
 * it.  The caller holds the queue's reference and t is not running. */
void pn__task_drop_queued(pn__task *t);

/* Pin the task this thread is polling, through cx, to this thread for the
 * rest of its life (a fiber's stack cannot move): its scheduler becomes
 * the thread's pinned one.  Safe because nobody else reads t->sched while
 * the task is RUNNING, and the poll's final compare-and-swap publishes the
 * change.  A no-op outside a task's poll, and on a thread whose runtime
 * pins everything already (current-thread) or that is not a worker. */
void pn__task_pin_running(pn_cx *cx);

#endif
