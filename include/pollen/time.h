/*
 * pollen/time.h - time: instants, sleep, timeout, interval.
 *
 * Time is CLOCK_MONOTONIC in nanoseconds (pn_instant).  Timers live in a
 * hierarchical wheel owned by the runtime (see src/timer/wheel.c); a sleep
 * future embeds its wheel entry, so sleeping allocates nothing.  The entry
 * is linked into the wheel on the future's first poll and unlinked when the
 * future completes or is dropped (dropping a sleep cancels it).
 *
 * Precision: a sleep never completes before its deadline.  The wheel's
 * finest slot is PN_TIMER_TICK_NS (65.536 us); the reactor waits with a
 * nanosecond timeout (epoll_pwait2), so a sleep typically completes tens of
 * microseconds after its deadline, not a millisecond.
 *
 * Threads: time futures are polled by the runtime thread that owns their
 * task; they must be dropped on that thread, before the runtime is freed.
 */
#ifndef POLLEN_TIME_H
#define POLLEN_TIME_H

#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t pn_instant;   /* CLOCK_MONOTONIC, nanoseconds */

#define PN_NS(x) ((uint64_t)(x))
#define PN_US(x) ((uint64_t)(x) * 1000ull)
#define PN_MS(x) ((uint64_t)(x) * 1000000ull)
#define PN_SEC(x) ((uint64_t)(x) * 1000000000ull)

/* log2 of the wheel's tick in nanoseconds, and the tick. */
#define PN_TIMER_TICK_SHIFT 16
#define PN_TIMER_TICK_NS (1ull << PN_TIMER_TICK_SHIFT)

/* The current monotonic time.  Thread-safe. */
PN_EXTERN pn_instant pn_now(void);

/*
 * A timer wheel entry, embedded in every timer future.  All fields are
 * private to the timer driver.
 */
typedef struct pn_timer_entry {
    struct pn_timer_entry *next, *prev; /* slot list links */
    uint64_t deadline;                  /* pn_instant at which it is due */
    struct pn__timers *timers;          /* driver it is linked in, or NULL */
    pn_waker waker;                     /* who to wake when it fires */
    uint8_t level, slot;                /* where in the wheel */
    uint8_t state;                      /* PN__TIMER_IDLE / ARMED / FIRED */
} pn_timer_entry;

/* ---- sleep -------------------------------------------------------------- */

typedef struct pn_sleep {
    pn_future base;
    pn_timer_entry entry;  /* private */
} pn_sleep;

/* A future that completes once `ns` nanoseconds have passed (the deadline is
 * taken now, when the future is made, not at its first poll). */
PN_EXTERN pn_sleep pn_sleep_for(uint64_t ns);
/* A future that completes at `deadline` (immediately if it has passed). */
PN_EXTERN pn_sleep pn_sleep_until(pn_instant deadline);
/* Move the deadline of a sleep, pending or completed; it may then be polled
 * again and completes at the new deadline.  Must be called on the thread that
 * polls it. */
PN_EXTERN void pn_sleep_reset(pn_sleep *s, pn_instant deadline);
/* The deadline of a sleep. */
static inline pn_instant pn_sleep_deadline(const pn_sleep *s) { return s->entry.deadline; }

/* ---- timeout ------------------------------------------------------------ */

/*
 * pn_timeout: run `inner` with a time limit.  Output in .status: 0 when the
 * inner future completed first (read its own output), -ETIMEDOUT when the
 * deadline came first, in which case the inner future has been dropped.
 * `inner` is borrowed: it must outlive the timeout future and not move
 * (keep both in the same struct).  Dropping the timeout drops the inner
 * future if it has not completed.  `inner` NULL: ready at the first poll
 * with .status -EINVAL (there is nothing to run).
 */
typedef struct pn_timeout {
    pn_future base;
    pn_future *inner;   /* private */
    pn_sleep timer;     /* private */
    int status;         /* output */
} pn_timeout;

PN_EXTERN pn_timeout pn_timeout_for(pn_future *inner, uint64_t ns);
PN_EXTERN pn_timeout pn_timeout_at(pn_future *inner, pn_instant deadline);

/* ---- interval ----------------------------------------------------------- */

/* What an interval does when ticks were missed (the task was busy). */
typedef enum pn_missed_tick {
    PN_MISSED_BURST = 0, /* fire the missed ticks back to back (default) */
    PN_MISSED_DELAY,     /* next tick is one period after the late one */
    PN_MISSED_SKIP       /* skip to the next multiple of the period */
} pn_missed_tick;

/*
 * pn_interval: a stream of ticks, one per period, the first at `start`.
 * It is a future that can be awaited again after each PN_READY: every
 * PN_READY is one tick, and .tick holds the instant that tick was
 * scheduled for.  Dropping it cancels its timer.
 */
typedef struct pn_interval {
    pn_future base;
    pn_sleep timer;            /* private */
    uint64_t period;           /* read-only */
    pn_missed_tick missed;     /* public: policy, may be changed between ticks */
    pn_instant tick;           /* output: the scheduled instant of the last tick */
} pn_interval;

/* First tick immediately, then every `period` ns (period 0 is taken as 1). */
PN_EXTERN pn_interval pn_interval_every(uint64_t period);
PN_EXTERN pn_interval pn_interval_at(pn_instant start, uint64_t period);

#ifdef __cplusplus
}
#endif
#endif
