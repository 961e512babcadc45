/*
 * pollen/notify.h - wake one task, or all that wait, without data
 * (Tokio's Notify).
 *
 *     static pn_notify changed = PN_NOTIFY_INIT;   // or pn_notify_init
 *
 *     // the waiter, in a future's struct: int pc; pn_notified_future wait;
 *     PN_ASYNC_BEGIN(t->pc);
 *     for (;;) {
 *         t->wait = pn_notify_notified(&changed);  // made BEFORE the check
 *         if (condition_holds())
 *             break;                               // (drop t->wait: a no-op
 *         PN_AWAIT(t->pc, &t->wait, cx);           //  unless it was polled)
 *     }
 *     PN_ASYNC_END(t->pc);
 *
 *     // the other side, on any thread:
 *     make_condition_hold();
 *     pn_notify_waiters(&changed);                 // or pn_notify_one
 *
 * pn_notify_one wakes the waiter that has waited longest; with nobody
 * waiting it stores one permit (at most one: more calls change nothing),
 * which the next notified future takes at its first poll, completing at
 * once.
 *
 * pn_notify_waiters wakes every notified future made before the call
 * (polled yet or not), and no later one; it stores no permit.  A notified
 * future records the notify's generation when it is made (an atomic load,
 * the one thing its constructor does), so "make the future, check the
 * condition, await" cannot miss a pn_notify_waiters that runs between
 * the check and the first poll.  That is the pattern above.
 *
 * Threads.  pn_notify_one and pn_notify_waiters may be called from any
 * thread, any number at a time; a notified future is polled by its owner.
 *
 * Ownership.  A pn_notify is the caller's memory; destroy it once no
 * notified future of it is pending.  A notified future holds a pointer.
 *
 * Cancel safety.  Dropping a pending notified future that pn_notify_one
 * had chosen (woken but not yet polled) passes that notification on: to
 * the next waiter, or back to the notify as its stored permit.  Dropping
 * one that was woken by pn_notify_waiters, or not woken, loses nothing.
 * Dropping a READY or never-polled one is a no-op (a never-polled one had
 * taken no permit).
 */
#ifndef POLLEN_NOTIFY_H
#define POLLEN_NOTIFY_H

#include <pthread.h>
#ifndef __cplusplus
#include <stdatomic.h> /* C only: in C++ it clashes with <atomic> */
#endif
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_notify {
    PN__ATOMIC(size_t) state;          /* private: generation << 2 | EMPTY/WAITING/NOTIFIED */
    pthread_mutex_t lock;              /* private */
    pn_sync_queue waiting;             /* private: FIFO */
    pn_sync_queue woken;               /* private: woken by notify_waiters, waker not yet taken */
} pn_notify;

#define PN_NOTIFY_INIT { 0, PTHREAD_MUTEX_INITIALIZER, { NULL, NULL }, { NULL, NULL } }

/* Returns 0, -EINVAL (NULL). */
PN_EXTERN int pn_notify_init(pn_notify *n);

/* No notified future may be pending.  NULL: no effect. */
PN_EXTERN void pn_notify_destroy(pn_notify *n);

/* Wake the longest waiter, or store one permit.  NULL: no effect. */
PN_EXTERN void pn_notify_one(pn_notify *n);

/* Wake every notified future made before this call.  NULL: no effect. */
PN_EXTERN void pn_notify_waiters(pn_notify *n);

/*
 * The wait.  READY when: it took the stored permit, pn_notify_one chose
 * it, or pn_notify_waiters ran after it was made.  .res is 0, or
 * -EINVAL for a NULL notify (READY at the first poll).
 */
typedef struct pn_notified_future {
    pn_future base;
    int res;                /* output */
    /* private */
    pn_notify *n;
    size_t gen;             /* the generation when made */
    unsigned char st;       /* idle, queued, done */
    pn_sync_waiter w;       /* w.state: chosen by notify_one */
} pn_notified_future;

PN_EXTERN PN_MUST_USE pn_notified_future pn_notify_notified(pn_notify *n);

#ifdef __cplusplus
}
#endif
#endif
