/*
 * timers.h - the timer driver's private interface.
 *
 * A pn__timers owns one wheel (wheel.h) and turns due entries into wakes.
 * Timer futures link their embedded pn_timer_entry on first poll and unlink
 * it on completion or drop.
 *
 * Two modes.  Private (pn__timers_init): one runtime thread does everything,
 * no lock.  Shared (pn__timers_init_shared, the multi-thread runtime): any
 * worker arms and cancels, one driver thread fires; a mutex guards the wheel
 * and the entries' links and wakers, an entry's state is read and written
 * with atomics so a poll can see FIRED without the lock, and arming a
 * deadline earlier than the one the driver sleeps until calls kick() so the
 * driver recomputes its timeout.
 *
 * The clock.  A driver reads its runtime's clock (clock.h) when it has one
 * (the current-thread runtime) and the monotonic clock otherwise.  While
 * that clock is paused the wheel is advanced to the tick boundary at or
 * after the virtual now, and the entries of that last tick whose deadline
 * is still after the virtual now are held back (filed again, not fired), so
 * a timer fires at exactly its deadline in virtual time, never early;
 * pn__timers_next_deadline gives the exact instant auto-advance jumps to.
 * With a clock, entries due after now are held back even while it runs
 * (after a resume the wheel may be up to a tick ahead of the clock).
 */
#ifndef PN_TIMERS_H
#define PN_TIMERS_H

#include "pollen/time.h"
#include "wheel.h"
#include "clock.h"

enum { PN__TIMER_IDLE = 0, PN__TIMER_ARMED = 1, PN__TIMER_FIRED = 2 };

#include <pthread.h>

typedef struct pn__timers {
    pn__wheel wheel;
    size_t armed;             /* entries linked in the wheel */
    bool shared;              /* lock and kick (multi-thread runtime) */
    pthread_mutex_t lock;     /* shared mode: guards everything above */
    pn_instant sleeping_until;/* shared mode: the driver's wait deadline */
    void (*kick)(void *arg);  /* shared mode: wake the driver */
    void *kick_arg;
    pn_waker *due;            /* wakers of fired entries, woken after unlock */
    size_t ndue, capdue;
    pn__clock *clock;         /* the runtime's clock, or NULL: monotonic */
    pn_instant hold_after;    /* during a paused fire: hold entries due after this */
    pn_timer_entry *held;     /* during a paused fire: entries held back */
    pthread_mutex_t fire_lock;/* shared mode: one pn__timers_fire at a time (the
                                 driver, and pn_time_advance from any thread) */
} pn__timers;

void pn__timers_init(pn__timers *t, pn_instant now);
void pn__timers_init_shared(pn__timers *t, pn_instant now,
                            void (*kick)(void *arg), void *kick_arg);
/* Shared mode: the driver is about to wait until `until` (UINT64_MAX:
 * forever) / has woken up (pass 0). */
void pn__timers_set_sleeping(pn__timers *t, pn_instant until);
/* True once the entry fired (acquire: safe from any thread). */
bool pn__timers_fired(const pn_timer_entry *e);
/* The owner marks a completed entry FIRED (it is not linked). */
void pn__timers_mark_fired(pn_timer_entry *e);
/* Mark every linked entry as unlinked (timers = NULL, state IDLE) and drop
 * its waker, so a future dropped after the runtime is gone does nothing. */
void pn__timers_shutdown(pn__timers *t);

/* Link e (deadline already set) with a clone of waker w; if already armed,
 * just refresh the waker (will_wake) and move it if the deadline changed.
 * If the deadline is already past it is linked anyway and fires on the next
 * pn__timers_fire. */
void pn__timers_arm(pn__timers *t, pn_timer_entry *e, const pn_waker *w);
/* Move the deadline of e: an armed entry stays armed with its waker and is
 * re-filed (under the lock in shared mode); otherwise it becomes IDLE. */
void pn__timers_reset(pn_timer_entry *e, pn_instant deadline);
/* Unlink e if armed and drop its waker.  Idempotent. */
void pn__timers_cancel(pn_timer_entry *e);

/* The time of the runtime polling with cx (cx->timers' clock), or pn_now()
 * without timers (sleep.c). */
pn_instant pn__cx_now(const pn_cx *cx);
/* The driver's current time: its clock's reading, or the monotonic clock. */
pn_instant pn__timers_now(const pn__timers *t);
/* The exact earliest deadline of an armed entry, UINT64_MAX if none (the
 * instant a paused clock auto-advances to).  Walks a slot per level. */
pn_instant pn__timers_next_deadline(pn__timers *t);

/* How long the reactor may sleep: -1 if no timer, else ns until the next
 * advance has work (pn__wheel_next: a slot coming up, or the exact deadline
 * of the first entry of a short slot), 0 if one is due now. */
int64_t pn__timers_timeout(pn__timers *t, pn_instant now);
/* Fire every entry due at `now`: state FIRED, waker woken.  Returns count.
 * Shared mode: callable from any thread (calls are serialised). */
size_t pn__timers_fire(pn__timers *t, pn_instant now);

#endif
