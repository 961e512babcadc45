/*
 * clock.h - a runtime's clock: the monotonic clock, or a virtual one that
 * tests pause, advance and resume (private interface of clock.c).
 *
 * A pn__clock reads CLOCK_MONOTONIC plus an offset while it runs, and a
 * stored instant while it is paused.  Each current-thread runtime owns one
 * (pn__timers.clock); a multi-thread runtime has one only when made with
 * cfg.start_paused (otherwise it always reads the monotonic clock).
 *
 * Threads bind to a clock (pn__clock_bind) so that pn_now() outside any
 * runtime reads it: the thread that makes a paused runtime, calls
 * pn_block_on on a runtime whose clock was ever paused, or calls
 * pn_time_*().  A binding holds a reference; it is dropped when the thread
 * binds another clock, at its next pn_now() after the runtime was freed
 * (the clock is then "dead"), or when the thread exits.
 *
 * Thread-safety: reads (pn__clock_now, pn__clock_paused) and advance_to
 * (a CAS: the later instant wins) from any thread; pause and resume from
 * one thread at a time (the test's; the current-thread runtime also keeps
 * its loop out meanwhile).
 */
#ifndef PN_TIMER_CLOCK_H
#define PN_TIMER_CLOCK_H

#include <stdbool.h>
#include <stdatomic.h>
#include "pollen/time.h"

typedef struct pn__clock {
    _Atomic size_t refs;        /* the runtime's, plus one per bound thread */
    _Atomic bool paused;        /* reads give `frozen` */
    _Atomic bool controlled;    /* was ever paused: block_on binds its thread */
    _Atomic bool dead;          /* the runtime was freed */
    _Atomic uint64_t frozen;    /* the instant while paused */
    _Atomic uint64_t offset;    /* while running: now = monotonic + offset (mod 2^64) */
} pn__clock;

/* CLOCK_MONOTONIC in nanoseconds, whatever the thread is bound to. */
pn_instant pn__mono_now(void);

/* A clock at the current monotonic time, paused or running.  NULL on ENOMEM. */
pn__clock *pn__clock_new(bool paused);
pn_instant pn__clock_now(const pn__clock *c);
bool pn__clock_paused(const pn__clock *c);
bool pn__clock_controlled(const pn__clock *c);
/* Freeze at the current reading. */
void pn__clock_pause(pn__clock *c);
/* Run again from the frozen instant at the monotonic clock's rate. */
void pn__clock_resume(pn__clock *c);
/* Paused: move the frozen instant to max(frozen, t). */
void pn__clock_advance_to(pn__clock *c, pn_instant t);
/* The calling thread's pn_now() reads `c` when it runs no runtime. */
void pn__clock_bind(pn__clock *c);
/* The runtime is gone: bound threads fall back to the monotonic clock.
 * Drops the runtime's reference. */
void pn__clock_kill(pn__clock *c);

#endif
