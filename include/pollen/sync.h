/*
 * pollen/sync.h - tasks and threads that signal each other: the
 * coordination toolkit (docs/GUIDE.md, "Tasks that talk to each other").
 *
 *   channel.h     pn_oneshot (one value, once), pn_mpsc (a queue: many
 *                 producers, one consumer, bounded with back-pressure or
 *                 unbounded)
 *   broadcast.h   pn_broadcast: every receiver sees every value
 *   watch.h       pn_watch: the latest value, and change notification
 *   semaphore.h   pn_semaphore, pn_mutex, pn_rwlock: fair, async
 *   notify.h      pn_notify: wake one waiter or all, without data
 *   waitgroup.h   pn_wait_group: wait until a count reaches zero
 *   cancel.h      pn_cancel_token: a tree of cancellation flags
 *   task.h        pn_task_group: tasks joined in the order they finish
 *
 * This header itself holds the blocks they are built from, public for
 * futures of your own: pn_waker_slot, and the intrusive pn_sync_waiter
 * node with its FIFO, pn_sync_queue.
 *
 * pn_waker_slot: where a leaf future keeps the waker of the task that
 * waits, when the wake comes from another task or another thread.  It is
 * the way to write your own cross-task leaf future (a flag, a counter, a
 * queue of your own), and the building block of pollen's channels and
 * locks.  One waiter registers; any number of threads wake, at any time,
 * without a lock and without losing a wake.
 *
 *     typedef struct done_flag {          // set by a thread, awaited by a task
 *         atomic_bool done;
 *         pn_waker_slot waiter;
 *     } done_flag;
 *
 *     // the setter, on any thread:
 *     atomic_store(&flag->done, true);
 *     pn_waker_slot_wake(&flag->waiter);
 *
 *     // the future's poll:
 *     if (atomic_load(&flag->done))
 *         return PN_READY;
 *     pn_waker_slot_register(&flag->waiter, cx->waker);
 *     if (atomic_load(&flag->done))      // check again: see "The rule"
 *         return PN_READY;
 *     return PN_PENDING;
 *
 *     // its drop (and once the flag is no longer used):
 *     pn_waker_slot_clear(&flag->waiter);
 *
 * The rule: register, then check the condition again before returning
 * PN_PENDING.  A wake finds the waker registered before it, or the waiter's
 * check after registering finds what the waker published before waking.
 * A wake with no waker registered does nothing: the slot keeps no "woken"
 * permit (pn_waker_slot is Tokio's AtomicWaker).
 *
 * Threads: wake, take and clear may be called from any thread,
 * concurrently with each other and with one register.  Register belongs
 * to the one waiter: two threads registering into one slot at the same
 * time is not supported (one of the two registrations then wakes its own
 * waker at once instead of being kept, and its task polls again).
 * Compare pn_waker_set (future.h), which is for a slot guarded by a lock
 * or touched by one thread only.
 *
 * Ownership: the slot holds a clone of the registered waker, released by
 * a wake, by take (then it is the caller's), by a later register of a
 * different waker, or by clear.  A slot must be cleared before its memory
 * goes.  Zero-initialised memory is an empty slot; so is
 * PN_WAKER_SLOT_INIT.
 */
#ifndef POLLEN_SYNC_H
#define POLLEN_SYNC_H

#ifndef __cplusplus
#include <stdatomic.h> /* C only: in C++ it clashes with <atomic> */
#endif
#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_waker_slot {
    PN__ATOMIC(unsigned) state; /* private: idle, registering, waking bits */
    pn_waker waker;            /* private: guarded by the state */
} pn_waker_slot;

#define PN_WAKER_SLOT_INIT { 0, { NULL, NULL } }

/*
 * pn_sync_waiter: the place of one waiting future in a primitive's queue.
 * Every pending acquire, lock, send, recv or notified future of this
 * header embeds one, so waiting allocates nothing: the queue is a list
 * through the futures themselves (which is why a future must not move
 * once polled, future.h "Pinning").  All fields are private; the
 * primitive guards them with its lock.
 */
typedef struct pn_sync_waiter {
    struct pn_sync_waiter *prev, *next;  /* private: the queue */
    pn_waker waker;                      /* private: who to wake */
    size_t need;                         /* private: e.g. permits still wanted */
    uint64_t tag;                        /* private: e.g. a generation */
    unsigned state;                      /* private: the primitive's own */
    bool queued;                         /* private: on the queue now */
} pn_sync_waiter;

/* A FIFO of waiters, for primitives that users embed (pn_semaphore,
 * pn_notify, pn_wait_group).  Private; { NULL, NULL } is empty. */
typedef struct pn_sync_queue {
    pn_sync_waiter *head, *tail;         /* private */
} pn_sync_queue;

/* Keep a clone of w as the waiter's waker (nothing is cloned when the slot
 * already holds a waker of the same task).  If a wake runs meanwhile, w is
 * woken at once instead, so the waiter polls again.  NULL slot or waker:
 * no effect. */
PN_EXTERN void pn_waker_slot_register(pn_waker_slot *slot, const pn_waker *w);

/* Wake the registered waker, if any, and empty the slot.  Any thread.  A
 * wake that runs while the waiter registers makes that registration wake
 * its own waker.  NULL: no effect. */
PN_EXTERN void pn_waker_slot_wake(pn_waker_slot *slot);

/* Take the registered waker out of the slot without waking it (wake or
 * drop it yourself, for example after releasing a lock of yours).  Any
 * thread.  PN_WAKER_NONE when the slot is empty, or while another thread
 * wakes or registers (that one then owns the wake). */
PN_EXTERN pn_waker pn_waker_slot_take(pn_waker_slot *slot);

/* Drop the registered waker, if any, without waking it: the waiter's drop
 * calls this.  Any thread (a register running at the same time wakes its
 * own waker).  NULL: no effect. */
PN_EXTERN void pn_waker_slot_clear(pn_waker_slot *slot);

#ifdef __cplusplus
}
#endif

/* The toolkit built on the two blocks above (docs/GUIDE.md, "Tasks that
 * talk to each other"). */
#include "channel.h"
#include "semaphore.h"
#include "notify.h"
#include "broadcast.h"
#include "watch.h"
#include "cancel.h"
#include "waitgroup.h"

#endif
