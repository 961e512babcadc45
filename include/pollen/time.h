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
 * finest slot is PN_TIMER_TICK_NS (65.536 us), but a lone timer (or a few
 * per tick) fires at its exact deadline; only the timers of a crowded tick
 * (more than 8) wait for its end.  The reactor waits with a nanosecond
 * timeout (epoll_pwait2), so a sleep typically completes tens of
 * microseconds after its deadline (the time the kernel takes to wake the
 * thread), not a millisecond.
 *
 * Threads: time futures are polled by the runtime thread that owns their
 * task; they must be dropped on that thread, before the runtime is freed.
 *
 * Which clock.  Every time future reads the clock of the runtime that
 * polls it, and pn_now() reads, in this order: the clock of the runtime
 * running on the calling thread (inside a task, a pn_block_on future or a
 * worker); else the paused clock the thread is bound to (below); else
 * CLOCK_MONOTONIC.  Unless a test pauses a clock, all of these are the
 * same CLOCK_MONOTONIC.
 *
 * Paused clock (tests; Tokio's time::pause / advance / resume).  A
 * runtime made with cfg.start_paused (pollen/runtime.h), or a
 * current-thread runtime paused with pn_time_pause, has a virtual clock:
 * it starts at the real monotonic time of the pause (of pn_runtime_new for
 * start_paused) and moves only when
 *   - pn_time_advance(rt, ns) moves it forward and fires every timer due,
 *   - the runtime has nothing to do (auto-advance): no task is queued or
 *     running, a zero-timeout reactor turn delivered no I/O, no
 *     pn_spawn_blocking call of the runtime is queued or running, and, on
 *     the multi-thread runtime, every worker is parked and at least one
 *     thread is inside pn_block_on, none of them polling.  Then, instead
 *     of sleeping until the next timer, the runtime sets the clock to that
 *     timer's exact deadline at once and fires it.  A test of a 10 s
 *     timeout runs in microseconds, and each timer completes with pn_now()
 *     equal to its deadline: timers with different deadlines fire (and
 *     their tasks run) in deadline order.  With no timer armed the runtime
 *     sleeps in the reactor as usual (no CPU): I/O, a wake from another
 *     thread or the end of a blocking call wakes it.  A wake that another
 *     thread will send "later" in real time does not hold the clock back.
 * Between pn_block_on calls nothing auto-advances (a current-thread
 * runtime does not run then; a multi-thread one keeps running its tasks
 * but its clock stands still), so a test can advance and look in between.
 * A thread is bound to the clock (its pn_now() outside a runtime reads it)
 * once it made a runtime with start_paused, called pn_block_on on a
 * runtime whose clock was ever paused, or called pn_time_pause / resume /
 * advance; so a test's main thread may write
 *     pn_sleep_future s = pn_sleep(PN_SEC(3600));   // deadline in virtual time
 *     pn_instant t0 = pn_now();
 *     pn_block_on(rt, PN_FUTURE(&s));            // returns at once
 *     // pn_now() - t0 == PN_SEC(3600) exactly
 * The binding lasts until the thread binds another runtime's clock or the
 * runtime is freed.  Any other thread reads real time outside a runtime:
 * a deadline it computes with pn_now() does not follow the virtual clock
 * (use pn_runtime_now(rt) there).  Never early still holds: a time future
 * completes when the runtime's clock reaches its deadline.
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

/* The current time: the calling thread's runtime's clock, or the paused
 * clock it is bound to, or CLOCK_MONOTONIC (see "Which clock" above).
 * Thread-safe; never goes backwards on one thread (except when a thread
 * enters or leaves a runtime whose clock is paused). */
PN_EXTERN pn_instant pn_now(void);

/* ---- paused clock (tests) ---------------------------------------------- */

struct pn_runtime;

/*
 * The clock of `rt` (its virtual time when paused; CLOCK_MONOTONIC for NULL
 * or a runtime without a virtual clock).  Thread-safe.
 */
PN_EXTERN pn_instant pn_runtime_now(struct pn_runtime *rt);

/* True when rt's clock is paused.  Thread-safe. */
PN_EXTERN bool pn_time_is_paused(struct pn_runtime *rt);

/*
 * Pause / advance / resume the clock of a runtime.
 *
 * Where.  Current-thread runtime: from a task or the pn_block_on future of
 * `rt` (on its thread), or from any thread while no thread is in
 * pn_block_on on `rt` (typically the test's main thread between two
 * pn_block_on calls; for the few microseconds such a call takes, a
 * pn_block_on on another thread gets -EDEADLK as if a thread were in it).
 * Multi-thread runtime: from any thread, but it must have been made with
 * cfg.start_paused (its workers then share one reactor and one wheel;
 * pausing one made without it gives -ENOTSUP).
 * Each call binds the calling thread to the clock (see "Paused clock").
 *
 * pn_time_pause: freeze the clock at its current reading; auto-advance
 * starts.  pn_time_resume: let it run again at the real rate from the
 * instant it shows (it never jumps back).
 *
 * pn_time_advance: move the paused clock forward by `ns` (saturating) and
 * fire every timer whose deadline it reached.  The tasks those timers
 * wake run afterwards: current-thread, at the loop's next turn, i.e. once
 * the calling task returns PN_PENDING, or in the next pn_block_on when
 * called from outside; multi-thread, on the workers as soon as they take
 * them.  All timers an advance reaches fire in one batch, their tasks in
 * no set order, and each sees pn_now() = the new time; to see them in
 * deadline order, let auto-advance do it or advance in smaller steps.
 * Tokio's advance is async and yields; here the call returns and the
 * caller yields when it likes (e.g. awaiting pn_yield()).
 *
 * Returns 0, or -EINVAL (rt NULL; advance or resume while the clock is
 * not paused), -EALREADY (pause while paused), -ENOTSUP (a multi-thread
 * runtime made without cfg.start_paused: it has no virtual clock),
 * -ESHUTDOWN (after pn_runtime_shutdown), -EBUSY (current-thread runtime:
 * called from outside it while a thread is inside pn_block_on on it;
 * nothing was done).
 */
PN_EXTERN int pn_time_pause(struct pn_runtime *rt);
PN_EXTERN int pn_time_advance(struct pn_runtime *rt, uint64_t ns);
PN_EXTERN int pn_time_resume(struct pn_runtime *rt);

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

typedef struct pn_sleep_future {
    pn_future base;
    pn_timer_entry entry;  /* private */
} pn_sleep_future;

/* A future that completes once `ns` nanoseconds have passed (the deadline is
 * taken now, when the future is made, not at its first poll). */
PN_EXTERN PN_MUST_USE pn_sleep_future pn_sleep(uint64_t ns);
/* A future that completes at `deadline` (immediately if it has passed). */
PN_EXTERN PN_MUST_USE pn_sleep_future pn_sleep_until(pn_instant deadline);
/* Move the deadline of a sleep, pending or completed; it may then be polled
 * again and completes at the new deadline.  Must be called on the thread that
 * polls it. */
PN_EXTERN void pn_sleep_reset(pn_sleep_future *s, pn_instant deadline);
/* The deadline of a sleep. */
static inline pn_instant pn_sleep_deadline(const pn_sleep_future *s) { return s->entry.deadline; }

/* ---- timeout ------------------------------------------------------------ */

/*
 * pn_timeout_future: run `inner` with a time limit.  Output in .res: 0 when the
 * inner future completed first (read its own output), -ETIMEDOUT when the
 * deadline came first, in which case the inner future has been dropped.
 * `inner` is borrowed: it must outlive the timeout future and not move
 * (keep both in the same struct).  Dropping the timeout drops the inner
 * future if it has not completed.  `inner` NULL: ready at the first poll
 * with .res -EINVAL (there is nothing to run).
 */
typedef struct pn_timeout_future {
    pn_future base;
    pn_future *inner;   /* private */
    pn_sleep_future timer;     /* private */
    int res;            /* output */
} pn_timeout_future;

PN_EXTERN PN_MUST_USE pn_timeout_future pn_timeout(pn_future *inner, uint64_t ns);
PN_EXTERN PN_MUST_USE pn_timeout_future pn_timeout_at(pn_future *inner, pn_instant deadline);

/* ---- interval ----------------------------------------------------------- */

/* What an interval does when ticks were missed (the task was busy). */
typedef enum pn_missed_tick {
    PN_MISSED_BURST = 0, /* fire the missed ticks back to back (default) */
    PN_MISSED_DELAY,     /* next tick is one period after the late one */
    PN_MISSED_SKIP       /* skip to the next multiple of the period */
} pn_missed_tick;

/*
 * pn_interval_future: a stream of ticks, one per period, the first at `start`.
 * It is a future that can be awaited again after each PN_READY: every
 * PN_READY is one tick, and .tick holds the instant that tick was
 * scheduled for.  Dropping it cancels its timer.
 */
typedef struct pn_interval_future {
    pn_future base;
    pn_sleep_future timer;     /* private */
    uint64_t period;           /* read-only */
    pn_missed_tick missed;     /* public: policy, may be changed between ticks */
    pn_instant tick;           /* output: the scheduled instant of the last tick */
} pn_interval_future;

/* First tick immediately, then every `period` ns (period 0 is taken as 1). */
PN_EXTERN PN_MUST_USE pn_interval_future pn_interval(uint64_t period);
PN_EXTERN PN_MUST_USE pn_interval_future pn_interval_at(pn_instant start, uint64_t period);

#ifdef __cplusplus
}
#endif
#endif
