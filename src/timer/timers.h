/*
 * timers.h - the timer driver's private interface.
 *
 * A pn__timers owns one wheel (wheel.h) and turns due entries into wakes.
 * Timer futures link their embedded pn_timer_entry on first poll and unlink
 * it on completion or drop.  Single-threaded: the runtime thread that owns it
 * does everything.
 */
#ifndef PN_TIMERS_H
#define PN_TIMERS_H

#include "pollen/time.h"
#include "wheel.h"

enum { PN__TIMER_IDLE = 0, PN__TIMER_ARMED = 1, PN__TIMER_FIRED = 2 };

typedef struct pn__timers {
    pn__wheel wheel;
    size_t armed;        /* entries linked in the wheel */
} pn__timers;

void pn__timers_init(pn__timers *t, pn_instant now);
/* Mark every linked entry as unlinked (timers = NULL, state IDLE) and drop
 * its waker, so a future dropped after the runtime is gone does nothing. */
void pn__timers_shutdown(pn__timers *t);

/* Link e (deadline already set) with a clone of waker w; if already armed,
 * just refresh the waker (will_wake) and move it if the deadline changed.
 * If the deadline is already past it is linked anyway and fires on the next
 * pn__timers_fire. */
void pn__timers_arm(pn__timers *t, pn_timer_entry *e, const pn_waker *w);
/* Unlink e if armed and drop its waker.  Idempotent. */
void pn__timers_cancel(pn_timer_entry *e);

/* How long the reactor may sleep: -1 if no timer, else ns until the next
 * slot is due (0 if one is due now), rounded up so it never wakes early. */
int64_t pn__timers_timeout(const pn__timers *t, pn_instant now);
/* Fire every entry due at `now`: state FIRED, waker woken.  Returns count. */
size_t pn__timers_fire(pn__timers *t, pn_instant now);

#endif
