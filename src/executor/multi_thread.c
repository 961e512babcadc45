/*
 * multi_thread.c - the multi-thread runtime: workers, work stealing,
 * parking, and a driver for I/O and timers.
 *
 * Workers.  Each of cfg.workers threads owns a local queue (local_queue.h:
 * 256 slots, steal-half) and a LIFO slot.  A task woken or spawned by the
 * task a worker is running goes to the LIFO slot (the previous occupant to
 * the queue), so a message and its receiver stay hot in cache; at most
 * LIFO_MAX tasks run from the slot in a row, then the queue gets a turn.
 * The slot is not stolen.  Tasks spawned or woken off the workers go to the
 * injection queue (inject.h), which every worker checks first once every
 * GLOBAL_INTERVAL picks, and from which a worker with an empty queue takes
 * its share in one lock.  Pinned tasks (pn_spawn_local) have per-worker
 * queues no thief looks at.
 *
 * Finding work, in order: a few tasks of the injection queue every
 * GLOBAL_INTERVAL picks, the LIFO slot, the local queue, a share of the
 * injection queue, the deferred list (tasks that yielded wait there until
 * nothing else is left, or the next maintenance turn), then steal half the
 * queue of another worker (starting at a random one).  Stealing is
 * "searching": at most half the workers search at once.
 *
 * Parking (no lost wakeup, no thundering herd).  A worker with nothing to do
 * stops searching, pushes itself on the sleepers stack (num_idle + 1), then
 * looks at every queue once more before it waits on its own futex word.  A
 * producer publishes its task, then (seq_cst fence) reads num_searching and
 * num_idle: if nobody searches and somebody sleeps, it pops one sleeper,
 * counts it as searching and wakes it.  Either the producer sees the
 * sleeper, or the sleeper's last look sees the task; a searcher that the
 * producer relied on does its own last look after it stops searching.  A
 * searcher that finds work and was the last one searching wakes one more
 * sleeper, so a burst spreads over the workers one wake at a time.
 *
 * The driver (driver_turn: epoll until the next timer, dispatch readiness,
 * fire timers; arming an earlier timer kicks it through the eventfd).
 * PN_DRIVER_REACTOR_THREAD: a dedicated thread runs it in a loop; each
 * turn's wakes enter the injection queue in one batch.  PN_DRIVER_WORKERS
 * (the default, Tokio's way): a
 * worker about to park takes the driver if it is free and parks in epoll
 * instead of on its futex (unpark then writes the eventfd); the wakes it
 * fires land in its own queue.  Busy workers turn it without blocking every
 * event_interval polls so I/O is never starved.
 *
 * A ring per worker (io_uring, cfg.uring_rings PER_WORKER or AUTO with
 * PN_DRIVER_WORKERS: ring_park).  Every worker adopts its own ring (its
 * lane) and parks in it instead of on the futex, so its requests'
 * completions, an unpark (pn__reactor_wake_lane) and, for the worker that
 * holds the driver, the next timer end its wait; busy workers turn their
 * own ring every event_interval polls.  A worker that leaves waits until
 * every worker has left its loop (`running`) before it lets go of its
 * ring, which drains it: no task can then still be using a request of it.
 *
 * Timers are one shared wheel under an adaptive mutex (timers.h, shared
 * mode); docs/ARCHITECTURE.md has the measured cost.
 *
 * Paused clock (cfg.start_paused; pollen/time.h).  The workers share one
 * epoll reactor (runtime.c refuses io_uring there: a completion is posted
 * as task work of the submitting thread, possibly after the idle check),
 * so one zero-timeout turn sees all I/O.
 * The driver auto-advances only when the runtime is idle as a whole
 * (paused_all_idle): every worker on the sleepers stack, a thread in
 * pn_block_on and none of them polling or woken (busy_blockers, kept
 * exact by the parker: a block_on thread counts itself out under the
 * parker's lock before it waits, and the wake that ends the wait counts
 * it back in), no blocking call in flight, nothing queued.  It checks
 * that, then turns the reactor without blocking (the I/O the tasks did
 * before they parked is there by then), checks again and jumps.  Whoever
 * makes the runtime idle kicks the driver (kick_paused): the last worker
 * to park, the last block_on thread to wait, the end of the last blocking
 * call; otherwise the driver waits in the reactor with no timeout.
 *
 * Task cells come from the spawning worker's cache (cell_cache.h); a task
 * that waited is on the owned list of the worker that ran that poll (no
 * lock: "owned tasks" below).
 *
 * Shutdown: refuse new spawns, close the injection queue, stop and join the
 * workers (each finishes the poll it is in) and the driver, then, on the
 * calling thread, drain every queue (dropping the never-polled tasks
 * whole), walk the owned lists, and at destroy close the cell caches.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <linux/futex.h>
#include <unistd.h>
#include "rt.h"
#include "fiber/fiber_int.h"
#include "inject.h"
#include "task_list.h"
#include "local_queue.h"
#include "cell_cache.h"
#include "core/chaos.h"
#include "core/spin.h"
#include "core/sys.h"
#include "reactor/reactor.h"
#include "timer/timers.h"

#define GLOBAL_INTERVAL 31
#define GLOBAL_BATCH 8                   /* injected tasks taken on that turn */
#define LIFO_MAX 3
#define PINNED_INTERVAL 7                /* pinned tasks get a turn this often */

typedef struct mt_runtime mt_runtime;

/* Grouped by who writes: the owner's hot fields, then each field other
 * threads write on a cache line of its own (a 64-byte gap before it), so
 * a thief, a waker or a remote completion does not take the line the
 * owner writes on every poll. */
typedef struct worker {
    /* the owner's (and, read-mostly, everyone's) */
    mt_runtime *rt;
    unsigned index;
    pthread_t thread;
    bool started;
    pn__task *lifo;
    pn__task_fifo deferred;        /* yielded tasks (defer_flush) */
    unsigned lifo_streak;
    bool in_poll;                  /* a wake now comes from the running task */
    bool park_turn;                /* parked in the driver: what its turn wakes
                                      waits in our queue for us (no notify) */
    bool searching;
    unsigned tick;
    uint32_t rng;
    pn__task_fifo pinned_local;    /* pinned tasks woken here */
    pn__task *owned;               /* tasks that waited here */
    pn__sched pinned_sched;        /* scheduler of the tasks pinned here */
    /* metrics, kept by this worker */
    pn__counter polls, completed, steals, stolen, inject_pops, parks, budget_exhausted,
                overflows, spawns;
    pn__cell_cache cells;          /* task cells allocated here (its remote
                                      stacks are padded apart inside) */
    char pad_wake[64];
    /* written by the threads that wake this one */
    _Atomic uint32_t unparked;     /* futex word: 1 = wake up */
    _Atomic bool woken_searching;  /* the waker counted us as searching */
    _Atomic bool in_driver;        /* parked in the reactor (the driver's
                                      epoll or ring, or its own ring) */
    char pad_done[64];
    _Atomic(pn__task *) owned_done; /* tasks of `owned` completed elsewhere */
    char pad_pinned[64];
    pn__inject pinned_remote;      /* pinned tasks woken elsewhere */
    char pad_queue[64];
    pn__local_queue q;             /* thieves claim at its head */
    char pad_end[64];
} worker;


struct mt_runtime {
    struct pn_runtime base;        /* first: the common head (rt.h) */
    unsigned nworkers;
    worker *workers;
    pn__inject inject;
    _Atomic bool owned_closed;
    pn__spin foreign_lock;         /* the owner side of foreign_cells */
    pn__cell_cache foreign_cells;  /* cells of tasks spawned off the workers */

    /* idle coordination */
    pthread_mutex_t idle_lock;
    unsigned *sleepers;            /* stack of worker indices, guarded by idle_lock */
    unsigned nsleepers;
    _Atomic unsigned num_searching;
    _Atomic unsigned num_idle;
    bool threads_gone;             /* idle_lock: workers joined, reactor may be freed */
    _Atomic uint64_t unparks, unparks_reactor, remote_spawns;
    _Atomic uint64_t reactor_errors;   /* failed turns (not EINTR) */
    _Atomic uint32_t turn_backoff_us;  /* sleep after a failed turn */

    _Atomic bool stopping;
    pn__task *closed_inject;       /* injection queue taken at shutdown */
    pthread_t driver;
    bool driver_started;
    atomic_flag driver_busy;       /* PN_DRIVER_WORKERS: who turns the reactor */
    /* A ring per worker (io_uring, PN_URING_RINGS_PER_WORKER): every worker
     * parks in its own ring, and the one holding the driver also waits for
     * the next timer there. */
    bool ring_park;
    _Atomic unsigned driver_lane;  /* the worker that holds the driver */
    _Atomic uint32_t running;      /* workers still in their loop */

    /* Paused clock (cfg.start_paused): pn_block_on threads that are polling
     * or were woken and will poll (not waiting).  Auto-advance needs 0. */
    _Atomic unsigned busy_blockers;
    _Atomic unsigned blockers_in;  /* threads inside pn_block_on: with none,
                                      the clock stands still (as between the
                                      current-thread runtime's block_ons) */
};

static _Thread_local worker *tls_worker;
/* The dedicated driver thread collects the tasks one turn wakes and hands
 * them to the injection queue in one batch (one lock per turn, not per
 * wake). */
static _Thread_local pn__task_fifo *tls_collect;
static _Thread_local size_t tls_collected;

static inline mt_runtime *mt(pn_runtime *rt) { return (mt_runtime *)rt; }

/* ---- futex ---------------------------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

/* As futex_wait, for at most ns nanoseconds: false once they have passed. */
static bool futex_wait_for(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0) == 0 ||
           errno != ETIMEDOUT;
}

static void futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* n workers have left their loop (or never started): the last one out
 * wakes those waiting for it (worker_main, ring per worker). */
static void leave_running(mt_runtime *rt, uint32_t n)
{
    if (atomic_fetch_sub(&rt->running, n) == n)
        syscall(SYS_futex, (uint32_t *)&rt->running, FUTEX_WAKE_PRIVATE, INT32_MAX,
                NULL, NULL, 0);
}

/* ---- owned tasks ------------------------------------------------------------
 * A task that returned pending once is on the owned list of the worker
 * that ran that poll, so that shutdown finds it while it waits for a
 * waker; one that completes on its first poll is never linked (until then
 * it is always in a queue, which shutdown drains: pn__task_drop_queued;
 * one that a push on a worker finds no room for once the injection queue
 * is closed is linked then, and dropped by shutdown's walk, never inside
 * the poll that pushed it).
 * Only its worker touches a list: no lock.  A task that completes on
 * another worker goes on its list's `owned_done` stack (one CAS, through
 * t->next, which a completed task no longer uses); the owner unlinks those
 * and drops their owned reference at its next link, maintenance turn or
 * park, and shutdown (the workers joined) does the rest. */

/* The owner: unlink the tasks other workers completed. */
static void owned_reap(worker *w)
{
    if (!atomic_load_explicit(&w->owned_done, memory_order_relaxed))
        return;
    pn__task *t = atomic_exchange_explicit(&w->owned_done, NULL, memory_order_acquire);
    for (pn__task *nx; t; t = nx) {
        nx = t->next;
        pn__owned_unlink(&w->owned, t);
        pn__task_unref(t);
    }
}

/* Sched op `pending`: a poll of t (not linked yet) returned pending, on
 * this worker, and t is still RUNNING; or t was never polled and a queue
 * push on this worker met the closed injection queue (shutdown drops it
 * with the others).  False off the workers. */
static bool mt_pending(pn__sched *s, pn__task *t)
{
    worker *w = tls_worker;
    if (!w || &w->rt->base.sched != s)
        return false;
    owned_reap(w);
    pn__owned_link(&w->owned, t);
    t->owned = (uint16_t)(w->index + 1);
    return true;
}

/* t completed on worker x: unlink it and drop the owned reference, here
 * or through its list's owner. */
static void owned_done(worker *x, pn__task *t)
{
    if (!t->owned) {
        pn__task_unref(t);
        return;
    }
    worker *o = &x->rt->workers[t->owned - 1];
    if (o == x) {
        pn__owned_unlink(&x->owned, t);
        pn__task_unref(t);
        return;
    }
    pn__task *head = atomic_load_explicit(&o->owned_done, memory_order_relaxed);
    do
        t->next = head;
    while (!atomic_compare_exchange_weak_explicit(&o->owned_done, &head, t,
                                                  memory_order_release,
                                                  memory_order_relaxed));
}

/* ---- idle workers ------------------------------------------------------------ */

/* Returns true when the wake went through the reactor (metrics). */
static bool unpark_worker(worker *w)
{
    atomic_store(&w->unparked, 1);
    /* A worker parked in the reactor is woken through it (the driver's
     * eventfd or ring, or its own ring); it stores in_driver before it
     * looks at `unparked` one last time. */
    if (!atomic_load(&w->in_driver)) {
        futex_wake(&w->unparked);
        return false;
    }
    if (w->rt->ring_park)
        pn__reactor_wake_lane(w->rt->base.reactor, w->index);
    else
        pn__reactor_wake(w->rt->base.reactor);
    return true;
}

/* Count a wake for new work (metrics: unparks, unparks_reactor; the
 * second after the first, and read before it, so a reader never sees more
 * of them than of all unparks). */
static void count_unpark(mt_runtime *rt, bool reactor)
{
    atomic_fetch_add_explicit(&rt->unparks, 1, memory_order_relaxed);
    if (reactor)
        atomic_fetch_add_explicit(&rt->unparks_reactor, 1, memory_order_release);
}

/* Wake one sleeping worker if nobody is searching. */
static void notify_parked(mt_runtime *rt)
{
    pn__store_load_barrier();
    if (atomic_load(&rt->num_searching) != 0 || atomic_load(&rt->num_idle) == 0)
        return;
    pthread_mutex_lock(&rt->idle_lock);
    if (rt->nsleepers == 0 || atomic_load(&rt->num_searching) != 0 || rt->threads_gone) {
        pthread_mutex_unlock(&rt->idle_lock);
        return;
    }
    worker *w = &rt->workers[rt->sleepers[--rt->nsleepers]];
    atomic_fetch_sub(&rt->num_idle, 1);
    atomic_fetch_add(&rt->num_searching, 1);
    atomic_store(&w->woken_searching, true);
    /* Unpark under the lock: a waker on a foreign thread may get here while
     * the runtime shuts down, and stop_threads sets threads_gone under this
     * lock before the reactor (whose eventfd unpark may write) is freed. */
    bool reactor = !rt->threads_gone && unpark_worker(w);
    pthread_mutex_unlock(&rt->idle_lock);
    count_unpark(rt, reactor);
}

static bool work_available(mt_runtime *rt, worker *self)
{
    if (self->deferred.head || pn__inject_len(&rt->inject) ||
        pn__inject_len(&self->pinned_remote))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (pn__lq_len(&rt->workers[i].q))
            return true;
    return false;
}

/* One turn of the I/O and timer driver: wait in epoll until the next timer
 * (or not at all), dispatch readiness, fire due timers.  The deadline we
 * sleep until is published so that arming an earlier timer kicks us; a
 * timer armed between the two looks is seen by the second one. */
/* Turn the reactor (the driver's, or this worker's own ring).  A failed
 * epoll_wait or io_uring_enter (not EINTR) has no caller to return to: it
 * is counted (metrics: reactor_errors) and the worker sleeps before its
 * next turn, 1 ms doubling to 100 ms while failures go on, so a reactor
 * that keeps failing never makes a worker spin.  The first turn that works
 * resets the back-off. */
static void reactor_turn(mt_runtime *rt, int64_t timeout)
{
    int n = pn__reactor_poll(rt->base.reactor, timeout);
    if (n >= 0 || n == -EINTR) {
        if (atomic_load_explicit(&rt->turn_backoff_us, memory_order_relaxed))
            atomic_store_explicit(&rt->turn_backoff_us, 0, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&rt->reactor_errors, 1, memory_order_relaxed);
    uint32_t us = atomic_load_explicit(&rt->turn_backoff_us, memory_order_relaxed);
    us = us ? (us >= 50000 ? 100000 : us * 2) : 1000;
    atomic_store_explicit(&rt->turn_backoff_us, us, memory_order_relaxed);
    struct timespec ts = { 0, (long)us * 1000 };
    nanosleep(&ts, NULL);
}

/* Paused clock: a task is queued somewhere (the injection queue, a
 * worker's queue or pinned queue, or the driver thread's batch). */
static bool paused_work_queued(mt_runtime *rt)
{
    if (tls_collect && tls_collected)
        return true;
    if (pn__inject_len(&rt->inject))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (pn__lq_len(&rt->workers[i].q) || pn__inject_len(&rt->workers[i].pinned_remote))
            return true;
    return false;
}

/* Paused clock: nothing runs anywhere, and a test waits for something.
 * Every worker is on the sleepers stack (the caller, holding the driver,
 * included), some thread is in pn_block_on and none of them polls or is
 * about to, no blocking call is in flight, nothing is queued.
 * Whoever ends the last of these kicks the driver (kick_paused), so the
 * check is made again when it may have become true. */
static bool paused_all_idle(mt_runtime *rt)
{
    pn__store_load_barrier();
    return atomic_load(&rt->num_idle) == rt->nworkers &&
           atomic_load(&rt->blockers_in) != 0 && atomic_load(&rt->busy_blockers) == 0 &&
           atomic_load(&rt->base.blocking_inflight) == 0 && !paused_work_queued(rt);
}

/* Paused clock: the runtime may have gone idle; let the driver look. */
static void kick_paused(mt_runtime *rt)
{
    pn__clock *c = rt->base.timers.clock;
    if (c && pn__clock_paused(c))
        pn__reactor_wake(rt->base.reactor);
}

/* The driver's turn under a paused clock.  When the whole runtime is idle:
 * a turn without blocking first (whatever I/O the tasks did before they
 * parked is in the reactor by then, since they did it before counting
 * themselves idle), and if that woke nothing and all is still idle, jump
 * the clock to the next deadline and fire it (auto-advance).  Otherwise
 * wait in the reactor with no timeout (virtual deadlines mean nothing to
 * epoll) until I/O, a wake or a kick_paused; or do not wait at all when
 * not asked to block or a task is queued. */
static void driver_turn_paused(mt_runtime *rt, pn__clock *c, bool block)
{
    pn__timers *tm = &rt->base.timers;
    int64_t timeout = -1;
    if (!block || paused_work_queued(rt)) {
        timeout = 0;
    } else if (paused_all_idle(rt)) {
        int n = pn__reactor_poll(rt->base.reactor, 0);
        if (n == 0 && paused_all_idle(rt)) {
            pn_instant d = pn__timers_next_deadline(tm);
            if (d != UINT64_MAX) {
                PN_POINT("clock.auto_advance", rt);
                pn__clock_advance_to(c, d);
                pn__timers_fire(tm, pn__clock_now(c));
                return;
            }
        } else {
            if (n < 0 && n != -EINTR)
                reactor_turn(rt, 0);    /* failing: count it, back off */
            pn__timers_fire(tm, pn__clock_now(c));
            return;                     /* something woke: look again */
        }
    }
    reactor_turn(rt, timeout);
    pn__timers_fire(tm, pn__clock_now(c));
}

static void driver_turn(mt_runtime *rt, bool block)
{
    pn__timers *tm = &rt->base.timers;
    pn__clock *c = tm->clock;
    if (c && pn__clock_paused(c)) {
        driver_turn_paused(rt, c, block);
        return;
    }
    int64_t timeout = 0;
    if (block) {
        pn_instant now = pn__timers_now(tm);
        timeout = pn__timers_timeout(tm, now);
        pn__timers_set_sleeping(tm, timeout < 0 ? UINT64_MAX : now + (uint64_t)timeout);
        int64_t again = pn__timers_timeout(tm, now);
        if (again >= 0 && (timeout < 0 || again < timeout))
            timeout = again;
    }
    reactor_turn(rt, timeout);
    if (block)
        pn__timers_set_sleeping(tm, 0);
    pn__timers_fire(tm, pn__timers_now(tm));
}

/* Take ourselves off the sleepers stack.  False if a waker popped us first
 * (then its unpark is on the way and must be consumed). */
static bool leave_sleepers(worker *w)
{
    mt_runtime *rt = w->rt;
    bool removed = false;
    pthread_mutex_lock(&rt->idle_lock);
    for (unsigned i = 0; i < rt->nsleepers; i++) {
        if (rt->sleepers[i] == w->index) {
            rt->sleepers[i] = rt->sleepers[--rt->nsleepers];
            atomic_fetch_sub(&rt->num_idle, 1);
            removed = true;
            break;
        }
    }
    pthread_mutex_unlock(&rt->idle_lock);
    return removed;
}

/* Stop searching; returns true if we were the last searcher. */
static bool stop_searching(worker *w)
{
    if (!w->searching)
        return false;
    w->searching = false;
    return atomic_fetch_sub(&w->rt->num_searching, 1) == 1;
}

/* A worker that parks without the driver (another worker holds it) sleeps
 * at most until the earliest timer plus this: if the holder leaves the
 * driver to run what it woke and stays in one long poll, nobody else waits
 * for the timers.  A tick after the deadline, so that when the holder does
 * fire it we do not wake at the same instant and race it. */
#define BACKSTOP_NS ((int64_t)PN_TIMER_TICK_NS)

/* How long such a worker may sleep: -1 (until woken) when no timer is
 * armed, when a dedicated thread drives the timers, or under a paused
 * clock (its deadlines are virtual; the driver auto-advances). */
static int64_t park_backstop(mt_runtime *rt)
{
    pn__timers *tm = &rt->base.timers;
    if (rt->base.cfg.driver != PN_DRIVER_WORKERS || (tm->clock && pn__clock_paused(tm->clock)))
        return -1;
    int64_t to = pn__timers_timeout(tm, pn__timers_now(tm));
    return to < 0 ? -1 : to + BACKSTOP_NS;
}

/* After a driver turn in park(): the tasks it woke wait in our queue
 * unannounced (mt_schedule).  We run the first; if there are more, wake
 * one sleeper to share them (it searches and passes the wake on). */
static void share_park_turn(worker *w)
{
    if (pn__lq_len(&w->q) > 1)
        notify_parked(w->rt);
}

static void park(worker *w)
{
    mt_runtime *rt = w->rt;
    /* I/O our tasks queued (io_uring completion mode) must be in the
     * kernel before we sleep: nobody else submits it. */
    pn__reactor_flush(rt->base.reactor);
    stop_searching(w);
    owned_reap(w);                      /* free what others completed */
    pn__count(&w->parks, 1);
    int64_t backstop = -1;

    pthread_mutex_lock(&rt->idle_lock);
    rt->sleepers[rt->nsleepers++] = w->index;
    atomic_fetch_add(&rt->num_idle, 1);
    pthread_mutex_unlock(&rt->idle_lock);
    pn__store_load_barrier();
    PN_POINT("mt.park", w);             /* a sleeper, before its last look */
    if (atomic_load(&rt->num_idle) == rt->nworkers)
        kick_paused(rt);                /* the last one: the clock may jump */

    if (work_available(rt, w) || atomic_load(&rt->stopping)) {
        if (leave_sleepers(w))
            return;
    } else if (rt->ring_park) {
        /* Park in our own ring: our requests' completions, a wake from
         * another worker and, if we hold the driver, the next timer end
         * the wait. */
        bool driver = !atomic_flag_test_and_set(&rt->driver_busy);
        if (driver)
            atomic_store(&rt->driver_lane, w->index);
        atomic_store(&w->in_driver, true);
        bool block = !atomic_load(&w->unparked);
        w->park_turn = true;
        if (driver)
            driver_turn(rt, block);
        else
            reactor_turn(rt, block ? park_backstop(rt) : 0);
        w->park_turn = false;
        atomic_store(&w->in_driver, false);
        if (driver)
            atomic_flag_clear(&rt->driver_busy);
        if (leave_sleepers(w)) {
            share_park_turn(w);
            return;
        }
    } else if (rt->base.cfg.driver == PN_DRIVER_WORKERS &&
               !atomic_flag_test_and_set(&rt->driver_busy)) {
        /* Park in epoll: I/O and timers wake us directly. */
        atomic_store(&w->in_driver, true);
        w->park_turn = true;
        driver_turn(rt, !atomic_load(&w->unparked));
        w->park_turn = false;
        atomic_store(&w->in_driver, false);
        atomic_flag_clear(&rt->driver_busy);
        if (leave_sleepers(w)) {
            share_park_turn(w);
            return;
        }
    } else {
        /* Another worker holds the driver (or a thread drives it): wait
         * until woken, or until the earliest timer is past due, then go
         * back to the loop (the next park takes the driver if it is free). */
        backstop = park_backstop(rt);
    }
    while (!atomic_exchange(&w->unparked, 0)) {
        if (backstop < 0) {
            futex_wait(&w->unparked, 0);
        } else if (!futex_wait_for(&w->unparked, 0, backstop)) {
            if (leave_sleepers(w))
                return;
            backstop = -1;              /* popped meanwhile: the unpark comes */
        }
    }
    if (atomic_exchange(&w->woken_searching, false))
        w->searching = true;
}

/* ---- scheduling ------------------------------------------------------------- */

/* From a thread that is not a worker: a waker's thread, maybe racing
 * pn_runtime_free.  The caller's reference went to the queue (a wake by
 * value hands over its own), and once t is queued a shutdown may take it,
 * drop it and free the runtime: hold one more reference (so the runtime's
 * memory, which every task cell keeps) until the notification is done, as
 * Tokio's wake_by_val does. */
static void push_remote(mt_runtime *rt, pn__task *t)
{
    pn__task_ref(t);
    if (!pn__inject_push(&rt->inject, t)) {
        PN_POINT("mt.push_refused", t);
        pn__task_drop_queued(t);         /* shut down */
    } else {
        PN_POINT("mt.pushed_remote", t);
        notify_parked(rt);
    }
    pn__task_unref(t);
}

/* Wake worker w in particular (its pinned queue has work): take it off the
 * sleepers stack if it is there.  If it is not, it is running or about to
 * park, and its last look at its own pinned queue will see the task. */
static void wake_worker(worker *w)
{
    mt_runtime *rt = w->rt;
    pn__store_load_barrier();
    if (atomic_load(&rt->num_idle) == 0)
        return;
    pthread_mutex_lock(&rt->idle_lock);
    for (unsigned i = 0; i < rt->nsleepers && !rt->threads_gone; i++) {
        if (rt->sleepers[i] == w->index) {
            rt->sleepers[i] = rt->sleepers[--rt->nsleepers];
            atomic_fetch_sub(&rt->num_idle, 1);
            count_unpark(rt, unpark_worker(w)); /* under the lock: see notify_parked */
            break;
        }
    }
    pthread_mutex_unlock(&rt->idle_lock);
}

static void pinned_schedule(pn__sched *s, pn__task *t)
{
    worker *w = pn_container_of(s, worker, pinned_sched);
    if (tls_worker == w) {
        pn__fifo_push(&w->pinned_local, t);
        return;
    }
    pn__task_ref(t);                     /* the runtime's memory: push_remote */
    if (!pn__inject_push(&w->pinned_remote, t))
        pn__task_drop_queued(t);         /* shut down */
    else
        wake_worker(w);
    pn__task_unref(t);
}

static const pn__sched_ops pinned_sched_ops = { pinned_schedule, NULL, NULL, NULL, NULL };

static bool is_pinned(mt_runtime *rt, pn__task *t)
{
    return t->sched != &rt->base.sched;
}

static void mt_schedule(pn__sched *s, pn__task *t)
{
    mt_runtime *rt = (mt_runtime *)s;
    worker *w = tls_worker;
    if (!w || w->rt != rt) {
        if (tls_collect) {                  /* the driver thread, mid-turn */
            pn__fifo_push(tls_collect, t);
            tls_collected++;
            return;
        }
        push_remote(rt, t);
        return;
    }
    if (w->in_poll) {
        /* Woken by the running task: keep it hot in the LIFO slot. */
        pn__task *prev = w->lifo;
        w->lifo = t;
        if (!prev)
            return;
        t = prev;
    }
    if (pn__lq_push(&w->q, t, &rt->inject))
        pn__count(&w->overflows, 1);
    /* Woken by the driver turn we park in: we run it ourselves as soon as
     * the turn ends (park() wakes a helper if the turn queued more than
     * one), so waking a sleeper here only lets it race us for the task. */
    if (!w->park_turn)
        notify_parked(rt);
}

/* Task cells (cell_cache.h): a task spawned on a worker takes its cell
 * from that worker's cache, and gives it back there when it is freed,
 * wherever that happens.  Tasks spawned from other threads share one more
 * cache, whose owner side a mutex guards (those threads are not known in
 * advance); the workers that complete them free into its stack without
 * the lock, as into any other.  `where`: home << 8 | class, home 1..n a
 * worker, n + 1 the shared one. */
static void *mt_cell_alloc(pn__sched *root, size_t bytes, uint32_t *where)
{
    mt_runtime *rt = (mt_runtime *)root;
    worker *w = tls_worker;
    pn__cell_cache *c = w && w->rt == rt ? &w->cells : &rt->foreign_cells;
    unsigned cls = pn__cells_class(c, bytes);
    if (cls == PN__CELL_NONE)
        return NULL;
    if (c != &rt->foreign_cells) {
        *where = (w->index + 1) << 8 | cls;
        return pn__cells_alloc(c, cls);
    }
    *where = (rt->nworkers + 1) << 8 | cls;
    pn__spin_lock(&rt->foreign_lock);
    void *cell = pn__cells_alloc(c, cls);  /* a malloc at worst */
    pn__spin_unlock(&rt->foreign_lock);
    return cell;
}

static void mt_cell_free(pn__sched *root, void *cell, uint32_t where)
{
    mt_runtime *rt = (mt_runtime *)root;
    unsigned home = (where >> 8) - 1, cls = where & 0xff;
    worker *w = home < rt->nworkers ? &rt->workers[home] : NULL;
    if (w && tls_worker == w) {
        pn__cells_free_local(&w->cells, cell, cls);
    } else if (!pn__cells_free_remote(w ? &w->cells : &rt->foreign_cells, cell, cls)) {
        pn__free(cell);                 /* the runtime is being freed */
        pn__sched_unref(root);
    }
}

static void mt_release(pn__sched *s);
static const pn__sched_ops mt_sched_ops = {
    mt_schedule, mt_release, mt_pending, mt_cell_alloc, mt_cell_free,
};

/* Publish a new task: in a queue, where shutdown's drain finds it until
 * its first poll (it is linked in the owned list only if that poll returns
 * pending: mt_pending).  A spawn from outside the workers goes to the
 * injection queue, whose close is the fence: either the push fails (the
 * future is still the caller's: -ESHUTDOWN) or shutdown drains the task. */
static bool mt_spawn(pn_runtime *base, pn__task *t)
{
    mt_runtime *rt = mt(base);
    worker *w = tls_worker;
    bool pinned = is_pinned(rt, t), local = w && w->rt == rt;
    if (atomic_load_explicit(&rt->owned_closed, memory_order_acquire))
        return false;
    if (pinned) {                        /* pn_spawn_local: from its own worker */
        pn__fifo_push(&pn_container_of(t->sched, worker, pinned_sched)->pinned_local, t);
        pn__count(&w->spawns, 1);
        return true;
    }
    if (!local) {
        if (!pn__inject_push(&rt->inject, t))
            return false;
        PN_POINT("spawn.queued", t);
        atomic_fetch_add_explicit(&rt->remote_spawns, 1, memory_order_relaxed);
        notify_parked(rt);
        return true;
    }
    pn__count(&w->spawns, 1);
    if (w->in_poll) {
        /* Spawned by the running task: like a wake from it, the new task
         * goes to the LIFO slot (it is hot in cache), and only a displaced
         * occupant goes to the queue and wakes a sleeper. */
        pn__task *prev = w->lifo;
        w->lifo = t;
        if (!prev)
            return true;
        t = prev;
    }
    if (pn__lq_push(&w->q, t, &rt->inject))
        pn__count(&w->overflows, 1);
    notify_parked(rt);
    return true;
}

/* ---- the worker loop --------------------------------------------------------- */

static uint32_t rng_next(worker *w)
{
    uint32_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->rng = x;
}

static pn__task *take_injected(worker *w, size_t max);

static pn__task *steal(worker *w)
{
    mt_runtime *rt = w->rt;
    if (rt->nworkers < 2)
        return NULL;
    if (!w->searching) {
        /* At most half the workers search at once. */
        unsigned s = atomic_load(&rt->num_searching);
        if (2 * s >= rt->nworkers)
            return NULL;
        atomic_fetch_add(&rt->num_searching, 1);
        w->searching = true;
    }
    unsigned start = rng_next(w) % rt->nworkers;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *v = &rt->workers[(start + i) % rt->nworkers];
        if (v == w)
            continue;
        PN_POINT("mt.steal", v);
        uint32_t moved;
        pn__task *t = pn__lq_steal_into(&v->q, &w->q, &moved);
        if (t) {
            pn__count(&w->steals, 1);
            pn__count(&w->stolen, moved);
            return t;
        }
    }
    return take_injected(w, 1);
}

static pn__task *pop_pinned(worker *w)
{
    pn__task *t = pn__fifo_pop(&w->pinned_local);
    return t ? t : pn__inject_pop(&w->pinned_remote);
}

/* Take a fair share of the injection queue, at most `max`, in one lock:
 * run the first, queue the rest locally where others may steal them.
 * With an empty local queue max is half its size; on the GLOBAL_INTERVAL
 * turn, when the local queue may be full of busy tasks, a few
 * (GLOBAL_BATCH), so that tasks spawned from outside are not served one
 * per GLOBAL_INTERVAL polls (spawn_many_remote_busy2's shape). */
static pn__task *take_injected(worker *w, size_t max)
{
    mt_runtime *rt = w->rt;
    size_t len = pn__inject_len(&rt->inject);
    if (len == 0)
        return NULL;
    size_t want = len / rt->nworkers + 1;
    if (want > max)
        want = max;
    size_t n;
    pn__task *t = pn__inject_pop_batch(&rt->inject, want, &n);
    pn__count(&w->inject_pops, 1);
    if (!t)
        return NULL;
    for (pn__task *c = t->next, *nx; c; c = nx) {
        nx = c->next;
        pn__lq_push(&w->q, c, &rt->inject);
    }
    t->next = NULL;
    if (n > 1)
        notify_parked(rt);
    return t;
}

/* Yielded tasks (PN__RUN_REQUEUE: woken during their own poll, as
 * pn_yield and a spent budget do) wait on the worker's deferred list
 * until the queues have nothing else (or the next maintenance turn), then
 * go to the back of the local queue, where others may steal them.  So a
 * task that yields lets the injection queue and the other workers' spare
 * tasks in, instead of only its neighbours in the local queue (Tokio's
 * defer list; spawn_many_remote_busy1's shape). */
static pn__task *defer_flush(worker *w, bool keep_one)
{
    mt_runtime *rt = w->rt;
    pn__task *t = keep_one ? pn__fifo_pop(&w->deferred) : NULL;
    if (!w->deferred.head)
        return t;
    for (pn__task *c; (c = pn__fifo_pop(&w->deferred));)
        if (pn__lq_push(&w->q, c, &rt->inject))
            pn__count(&w->overflows, 1);
    notify_parked(rt);
    return t;
}

/* The queues are empty: a deferred task's turn.  While every worker is
 * busy, run them straight from the list (no queue traffic: a yield costs
 * the task's own two state changes); when one is idle, put them where it
 * can steal them and wake it. */
static pn__task *defer_next(worker *w)
{
    if (!w->deferred.head)
        return NULL;
    mt_runtime *rt = w->rt;
    if (w->tick % 16 == 0 && rt->nworkers > 1) {
        /* Now and then, a backlog elsewhere goes before our yielders (a
         * steal comes before the deferred list in Tokio too; we look
         * first, so a worker of yielders does not search at every yield). */
        for (unsigned i = 0; i < rt->nworkers; i++) {
            if (&rt->workers[i] != w && pn__lq_len(&rt->workers[i].q) > 1) {
                pn__task *t = steal(w);
                if (t)
                    return t;
                break;
            }
        }
    }
    if (atomic_load_explicit(&rt->num_idle, memory_order_relaxed) == 0)
        return pn__fifo_pop(&w->deferred);
    return defer_flush(w, true);
}

static pn__task *next_task(worker *w)
{
    mt_runtime *rt = w->rt;
    pn__task *t;
    ++w->tick;
    if (w->tick % GLOBAL_INTERVAL == 0 && (t = take_injected(w, GLOBAL_BATCH)))
        return t;
    if (w->tick % PINNED_INTERVAL == 0 && (t = pop_pinned(w)))
        return t;
    if (w->lifo && w->lifo_streak < LIFO_MAX) {
        t = w->lifo;
        w->lifo = NULL;
        w->lifo_streak++;
        return t;
    }
    w->lifo_streak = 0;
    if (w->lifo) {                        /* capped: let the queue go first */
        pn__lq_push(&w->q, w->lifo, &rt->inject);
        w->lifo = NULL;
    }
    if ((t = pn__lq_pop(&w->q)) || (t = pop_pinned(w)) ||
        (t = take_injected(w, PN__LQ_CAP / 2)) || (t = defer_next(w)))
        return t;
    return steal(w);
}

static void run_task(worker *w, pn__task *t, pn_cx *cx)
{
    mt_runtime *rt = w->rt;
    cx->budget = rt->base.cfg.budget;
    w->in_poll = true;
    pn__run_result r = pn__task_run(t, cx);
    w->in_poll = false;
    pn__count(&w->polls, 1);
    if (cx->budget == 0)
        pn__count(&w->budget_exhausted, 1);
    switch (r) {
    case PN__RUN_IDLE:
        break;
    case PN__RUN_REQUEUE:               /* yielded: after everything else */
        if (is_pinned(rt, t)) {
            pn__fifo_push(&w->pinned_local, t);
            break;
        }
        pn__fifo_push(&w->deferred, t);
        break;
    case PN__RUN_DONE:
        owned_done(w, t);
        pn__count(&w->completed, 1);
        break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    mt_runtime *rt = w->rt;
    char name[16];
    snprintf(name, sizeof(name), "pollen-w%u", w->index);
    pthread_setname_np(pthread_self(), name);
    tls_worker = w;
    pn__tls_rt = &rt->base;
    if (rt->base.cfg.driver == PN_DRIVER_WORKERS && rt->base.cfg.timer_slack_ns)
        prctl(PR_SET_TIMERSLACK, (unsigned long)rt->base.cfg.timer_slack_ns, 0, 0, 0);
    pn__tls_polling = true;             /* block_on from a worker: -EDEADLK */
    pn__fiber_thread_start();           /* our fibers are unwound below */
    pn__reactor_adopt_lane(rt->base.reactor, w->index);
    pn_cx cx = { .waker = NULL, .rt = &rt->base, .reactor = rt->base.reactor,
                 .timers = &rt->base.timers, .budget = 0 };
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        pn__task *t = next_task(w);
        if (!t) {
            park(w);
            continue;
        }
        if (stop_searching(w))
            notify_parked(rt);          /* last searcher found work: pass it on */
        run_task(w, t, &cx);
        /* Busy workers still look at I/O and timers now and then, and
         * send the I/O their tasks queued. */
        if (w->tick % rt->base.cfg.event_interval == 0) {
            if (w->deferred.head &&
                (w->lifo || pn__lq_len(&w->q) ||
                 atomic_load_explicit(&rt->num_idle, memory_order_relaxed)))
                defer_flush(w, false);  /* never starved behind the others */
            owned_reap(w);
            if (rt->base.cfg.driver == PN_DRIVER_WORKERS &&
                !atomic_flag_test_and_set(&rt->driver_busy)) {
                driver_turn(rt, false);
                atomic_flag_clear(&rt->driver_busy);
            } else if (rt->ring_park) {
                reactor_turn(rt, 0);                     /* our own ring */
            }
            pn__reactor_flush(rt->base.reactor);
        }
    }
    stop_searching(w);
    /* Our fibers unwind here, on the thread whose stack variables and
     * thread-locals their frames may hold. */
    pn__fiber_thread_exit();
    if (rt->ring_park) {
        /* What our tasks queued on our ring goes before we wait for the
         * others: one of them may be waiting for it. */
        pn__reactor_flush(rt->base.reactor);
        /* Our ring is drained when we let go of it (nobody else may
         * submit to it), which cancels its requests: wait until no
         * worker runs a task that could still be using one of them. */
        leave_running(rt, 1);
        uint32_t v;
        while ((v = atomic_load(&rt->running)) != 0)
            futex_wait(&rt->running, v);
    }
    /* No longer a thread that submits: closes made after the workers are
     * gone (futures dropped by the shutdown) submit their own cancels. */
    pn__reactor_flush(rt->base.reactor);
    pn__reactor_disown_thread(rt->base.reactor);
    return NULL;
}

/* ---- the driver thread --------------------------------------------------------- */

static void kick_driver(void *arg)
{
    mt_runtime *rt = arg;
    if (rt->ring_park)
        pn__reactor_wake_lane(rt->base.reactor, atomic_load(&rt->driver_lane));
    else
        pn__reactor_wake(rt->base.reactor);
}

static void *driver_main(void *arg)
{
    mt_runtime *rt = arg;
    pthread_setname_np(pthread_self(), "pollen-io");
    if (rt->base.cfg.timer_slack_ns)
        prctl(PR_SET_TIMERSLACK, (unsigned long)rt->base.cfg.timer_slack_ns, 0, 0, 0);
    pn__task_fifo batch = { NULL, NULL };
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        tls_collect = &batch;
        tls_collected = 0;
        driver_turn(rt, true);
        tls_collect = NULL;
        if (batch.head) {
            if (!pn__inject_push_batch(&rt->inject, batch.head, batch.tail, tls_collected)) {
                for (pn__task *t = batch.head, *nx; t; t = nx) {
                    nx = t->next;
                    pn__task_drop_queued(t); /* shut down */
                }
            } else {
                notify_parked(rt);          /* the searcher wakes the next */
            }
            batch.head = batch.tail = NULL;
        }
    }
    pn__reactor_flush(rt->base.reactor);
    pn__reactor_disown_thread(rt->base.reactor);
    return NULL;
}

/* ---- block_on from a thread that is not a worker ----------------------------------
 * The block_on waker points at a small refcounted parker (a futex word): a
 * clone of it may outlive the call (left in a registration's waker slot),
 * and several threads may block on the same runtime at once. */

typedef struct parker {
    _Atomic uint32_t woken;        /* futex word */
    _Atomic size_t refs;
    /* Paused-clock accounting (rt->busy_blockers), when `rt` has a clock:
     * `waiting` (under `lock`) says the block_on thread counted itself out
     * and waits; the wake that ends the wait counts it back in. */
    mt_runtime *rt;                /* NULL: no accounting (immutable) */
    atomic_flag lock;
    bool waiting;
} parker;

static void parker_lock(parker *p)
{
    while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire))
        ;
}

static void parker_unlock(parker *p)
{
    atomic_flag_clear_explicit(&p->lock, memory_order_release);
}

static void parker_unref(parker *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        pn__free(p);
}

static void parker_wake_by_ref(const void *data)
{
    parker *p = (parker *)data;
    if (p->rt) {
        parker_lock(p);
        atomic_store(&p->woken, 1);
        if (p->waiting) {               /* rt is live while it waits */
            p->waiting = false;
            atomic_fetch_add(&p->rt->busy_blockers, 1);
        }
        parker_unlock(p);
    } else {
        atomic_store(&p->woken, 1);
    }
    futex_wake(&p->woken);
}

static void parker_wake(const void *data)
{
    parker_wake_by_ref(data);
    parker_unref((parker *)data);
}

static void parker_drop(const void *data) { parker_unref((parker *)data); }
static pn_waker parker_clone(const void *data);

static const pn_waker_vtable parker_vt = {
    .clone = parker_clone, .wake = parker_wake, .wake_by_ref = parker_wake_by_ref,
    .drop = parker_drop,
};

static pn_waker parker_clone(const void *data)
{
    atomic_fetch_add_explicit(&((parker *)data)->refs, 1, memory_order_relaxed);
    return (pn_waker){ data, &parker_vt };
}

static int mt_block_on(pn_runtime *base, pn_future *f)
{
    if (tls_worker || pn__tls_rt)
        return -EDEADLK;
    parker *p = pn__malloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    atomic_init(&p->woken, 1);
    atomic_init(&p->refs, 1);
    atomic_flag_clear(&p->lock);
    p->waiting = false;
    p->rt = base->timers.clock ? mt(base) : NULL;
    if (p->rt) {
        atomic_fetch_add(&p->rt->busy_blockers, 1);
        atomic_fetch_add(&p->rt->blockers_in, 1);
        if (pn__clock_controlled(base->timers.clock))
            pn__clock_bind(base->timers.clock);
    }
    pn_waker mw = { p, &parker_vt };
    pn_cx cx = { .waker = &mw, .rt = base, .reactor = base->reactor,
                 .timers = &base->timers, .budget = 0 };
    pn__tls_rt = base;
    for (;;) {
        if (atomic_exchange(&p->woken, 0)) {
            cx.budget = base->cfg.budget;
            pn__tls_polling = true;
            pn_poll r = pn_future_poll(f, &cx);
            pn__tls_polling = false;
            if (r == PN_READY)
                break;
            continue;
        }
        if (p->rt) {
            /* Count ourselves out before waiting (paused clock): unless a
             * wake came in meanwhile, which counted nothing. */
            bool out = false;
            parker_lock(p);
            if (!atomic_load(&p->woken) && !p->waiting)
                out = p->waiting = true;
            parker_unlock(p);
            if (out && atomic_fetch_sub(&p->rt->busy_blockers, 1) == 1)
                kick_paused(p->rt);
        }
        futex_wait(&p->woken, 0);
    }
    /* Not waiting (a wake counted us back in before the poll): out now. */
    if (p->rt) {
        atomic_fetch_sub(&p->rt->blockers_in, 1);
        if (atomic_fetch_sub(&p->rt->busy_blockers, 1) == 1)
            kick_paused(p->rt);
    }
    pn__tls_rt = NULL;
    parker_unref(p);
    return 0;
}

/* ---- the clock ------------------------------------------------------------------- */

/* pn_time_pause / resume / advance.  The wheel is shared (its own locks,
 * fires serialised), so any thread may call these. */
static int mt_time_ctl(pn_runtime *base, int op, uint64_t ns)
{
    mt_runtime *rt = mt(base);
    pn__clock *c = base->timers.clock;
    if (!c)
        return -ENOTSUP;                /* made without start_paused */
    int err = 0;
    switch (op) {
    case PN__TIME_PAUSE:
        if (pn__clock_paused(c))
            return -EALREADY;
        pn__clock_pause(c);
        break;
    case PN__TIME_RESUME:
        if (!pn__clock_paused(c))
            return -EINVAL;
        pn__clock_resume(c);
        pn__reactor_wake(base->reactor); /* the driver waits with no timeout */
        break;
    case PN__TIME_ADVANCE: {
        if (!pn__clock_paused(c))
            return -EINVAL;
        pn_instant now = pn__clock_now(c);
        pn__clock_advance_to(c, now + ns < now ? UINT64_MAX : now + ns);
        pn__timers_fire(&base->timers, pn__clock_now(c));
        break;
    }
    default:
        err = -EINVAL;
    }
    (void)rt;
    if (err == 0)
        pn__clock_bind(c);
    return err;
}

/* ---- lifecycle ------------------------------------------------------------------- */

/* Ask every thread to stop and join them, waiting until `deadline` at most.
 * 0, or -ETIMEDOUT if one is still busy (it stays asked to stop and is
 * joined by a later call). */
static int stop_threads(mt_runtime *rt, uint64_t deadline)
{
    atomic_store(&rt->stopping, true);
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].started)
            unpark_worker(&rt->workers[i]);
    pn__reactor_wake(rt->base.reactor);

    struct timespec abs;
    if (deadline != UINT64_MAX) {
        /* pthread_timedjoin_np takes CLOCK_REALTIME: convert the remaining time. */
        pn_instant now = pn__mono_now();
        uint64_t left = deadline > now ? deadline - now : 0;
        clock_gettime(CLOCK_REALTIME, &abs);
        uint64_t ns = (uint64_t)abs.tv_nsec + left % 1000000000u;
        abs.tv_sec += (time_t)(left / 1000000000u + ns / 1000000000u);
        abs.tv_nsec = (long)(ns % 1000000000u);
    }
    int err = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *w = &rt->workers[i];
        if (!w->started)
            continue;
        int r = deadline == UINT64_MAX ? pthread_join(w->thread, NULL)
                                       : pthread_timedjoin_np(w->thread, NULL, &abs);
        if (r == 0)
            w->started = false;
        else
            err = -ETIMEDOUT;               /* stuck in a poll */
    }
    if (rt->driver_started) {
        pthread_join(rt->driver, NULL);     /* never in user code: returns promptly */
        rt->driver_started = false;
    }
    if (err == 0) {
        pthread_mutex_lock(&rt->idle_lock);
        rt->threads_gone = true;
        pthread_mutex_unlock(&rt->idle_lock);
    }
    return err;
}

static int mt_shutdown(pn_runtime *base, uint64_t deadline)
{
    mt_runtime *rt = mt(base);
    atomic_store(&rt->owned_closed, true);      /* no new spawn from here */
    pn__task *inj = pn__inject_close(&rt->inject);
    if (inj) {                          /* keep them until the threads are gone */
        pn__task *last = inj;
        while (last->next)
            last = last->next;
        last->next = rt->closed_inject;
        rt->closed_inject = inj;
    }
    int err = stop_threads(rt, deadline);
    if (err < 0)
        return err;
    /* From here the workers are gone: a pinned wake goes to pinned_remote,
     * drained (and closed) below.  One thread from here on.  Drop the queue
     * references (and the tasks never polled, which no owned list knows:
     * pn__task_drop_queued); the others stay NOTIFIED, so wakes from the
     * drops below do not queue them again. */
    for (pn__task *t = rt->closed_inject, *nx; t; t = nx) {
        nx = t->next;
        pn__task_drop_queued(t);
    }
    rt->closed_inject = NULL;
    for (pn__task *t; (t = pn__inject_close(&rt->inject));)
        for (pn__task *nx; t; t = nx) {
            nx = t->next;
            pn__task_drop_queued(t);
        }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *w = &rt->workers[i];
        pn__task *t;
        if (w->lifo) {
            pn__task_drop_queued(w->lifo);
            w->lifo = NULL;
        }
        while ((t = pn__lq_pop(&w->q)) || (t = pn__fifo_pop(&w->pinned_local)) ||
               (t = pn__fifo_pop(&w->deferred)))
            pn__task_drop_queued(t);
        for (pn__task *c = pn__inject_close(&w->pinned_remote), *nx; c; c = nx) {
            nx = c->next;
            pn__task_drop_queued(c);
        }
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *w = &rt->workers[i];
        owned_reap(w);
        for (pn__task *t; (t = w->owned);) {
            /* Popped, with t->owned left as it is: a wake on another
             * thread that finds the injection queue closed reads it
             * (pn__task_drop_queued), and must not take t for a task
             * never polled and drop it too. */
            w->owned = t->owned_next;
            PN_POINT("mt.shutdown.walk", t);
            pn__task_shutdown(t);
            pn__task_unref(t);
        }
    }
    return 0;
}

static void mt_destroy(pn_runtime *base)
{
    /* The workers are gone: close their cell caches and give back the
     * references they held for cells (a cell freed from now on gives its
     * own back: mt_cell_free). */
    mt_runtime *rt = mt(base);
    size_t tokens = pn__cells_close(&rt->foreign_cells);
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].rt)
            tokens += pn__cells_close(&rt->workers[i].cells);
    atomic_fetch_sub_explicit(&base->sched.refs, tokens, memory_order_acq_rel);
    pn__sched_unref(&base->sched);      /* freed with the last task cell */
}

static void mt_release(pn__sched *s)
{
    mt_runtime *rt = (mt_runtime *)s;
    pthread_mutex_destroy(&rt->idle_lock);
    pn__inject_destroy(&rt->inject);
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].rt)
            pn__inject_destroy(&rt->workers[i].pinned_remote);
    pn__free(rt->sleepers);
    pn__free(rt->workers);
    pn__free(rt);
}

static pn__sched *mt_local_sched(pn_runtime *base)
{
    worker *w = tls_worker;
    return w && w->rt == mt(base) ? &w->pinned_sched : NULL;
}

static unsigned mt_nworkers(pn_runtime *base) { return mt(base)->nworkers; }

static void mt_worker_metrics(pn_runtime *base, unsigned index, pn_worker_metrics *out)
{
    worker *w = &mt(base)->workers[index];
    out->polls = pn__counter_get(&w->polls);
    out->tasks_completed = pn__counter_get(&w->completed);
    out->steals = pn__counter_get(&w->steals);
    out->stolen_tasks = pn__counter_get(&w->stolen);
    out->inject_pops = pn__counter_get(&w->inject_pops);
    out->parks = pn__counter_get(&w->parks);
    out->budget_exhausted = pn__counter_get(&w->budget_exhausted);
    out->overflows = pn__counter_get(&w->overflows);
    out->local_queue_depth = pn__lq_len(&w->q);
}

static void mt_shared_metrics(pn_runtime *base, pn_runtime_metrics *out)
{
    mt_runtime *rt = mt(base);
    uint64_t spawned = atomic_load_explicit(&rt->remote_spawns, memory_order_relaxed);
    for (unsigned i = 0; i < rt->nworkers; i++)
        spawned += pn__counter_get(&rt->workers[i].spawns);
    out->tasks_spawned = spawned;
    out->unparks_reactor = atomic_load_explicit(&rt->unparks_reactor, memory_order_acquire);
    out->unparks = atomic_load_explicit(&rt->unparks, memory_order_relaxed);
    out->reactor_errors = atomic_load_explicit(&rt->reactor_errors, memory_order_relaxed);
    out->injection_queue_depth = pn__inject_len(&rt->inject);
}

static const pn__rt_ops mt_rt_ops = {
    .time_ctl = mt_time_ctl,
    .block_on = mt_block_on,
    .spawn = mt_spawn,
    .shutdown = mt_shutdown,
    .local_sched = mt_local_sched,
    .destroy = mt_destroy,
    .nworkers = mt_nworkers,
    .worker_metrics = mt_worker_metrics,
    .shared_metrics = mt_shared_metrics,
};

int pn__multi_thread_new(const pn_runtime_config *cfg, pn_runtime **out)
{
    mt_runtime *rt = pn__calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    rt->nworkers = cfg->workers;
    rt->workers = pn__calloc(cfg->workers, sizeof(worker));
    rt->sleepers = pn__calloc(cfg->workers, sizeof(unsigned));
    if (!rt->workers || !rt->sleepers) {
        pn__free(rt->workers);
        pn__free(rt->sleepers);
        pn__free(rt);
        return -ENOMEM;
    }
    rt->base.sched.ops = &mt_sched_ops;
    rt->base.sched.root = &rt->base.sched;
    atomic_init(&rt->base.sched.refs, 1);
    rt->base.ops = &mt_rt_ops;
    pn__runtime_init_common(&rt->base, cfg);
    /* A ring per worker needs the workers to park in the reactor, which
     * the dedicated driver thread's layout does not do. */
    bool per_worker = cfg->driver == PN_DRIVER_WORKERS &&
                      cfg->uring_rings != PN_URING_RINGS_SHARED;
    int err = pn__reactor_new_lanes(cfg->max_events, cfg->backend,
                                    per_worker ? cfg->workers : 1, &rt->base.reactor);
    if (err < 0) {
        pn__free(rt->workers);
        pn__free(rt->sleepers);
        pn__free(rt);
        return err;
    }
    rt->ring_park = pn__reactor_lanes(rt->base.reactor) > 1;
    pn__clock *clock = NULL;
    if (cfg->start_paused && !(clock = pn__clock_new(true))) {
        pn__reactor_free(rt->base.reactor);
        pn__free(rt->workers);
        pn__free(rt->sleepers);
        pn__free(rt);
        return -ENOMEM;
    }
    pn__timers_init_shared(&rt->base.timers, clock ? pn__clock_now(clock) : pn__mono_now(),
                           kick_driver, rt);
    rt->base.timers.clock = clock;      /* before any worker reads it */
    if (clock)
        pn__clock_bind(clock);          /* its maker reads it (clock.h) */
    pn__inject_init(&rt->inject);
    pthread_mutex_init(&rt->idle_lock, NULL);
    pn__spin_init(&rt->foreign_lock);
    pn__cells_init(&rt->foreign_cells, sizeof(pn__task), &rt->base.sched.refs);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker *w = &rt->workers[i];
        w->rt = rt;
        w->index = i;
        w->rng = 0x9e3779b9u * (i + 1);
        pn__lq_init(&w->q);
        w->pinned_sched.ops = &pinned_sched_ops;
        w->pinned_sched.root = &rt->base.sched;
        pn__inject_init(&w->pinned_remote);
        pn__cells_init(&w->cells, sizeof(pn__task), &rt->base.sched.refs);
    }
    atomic_store(&rt->running, rt->nworkers);
    unsigned started = 0;
    for (unsigned i = 0; i < rt->nworkers && err == 0; i++) {
        err = -pthread_create(&rt->workers[i].thread, NULL, worker_main, &rt->workers[i]);
        rt->workers[i].started = err == 0;
        started += err == 0;
    }
    if (started < rt->nworkers)
        leave_running(rt, rt->nworkers - started);   /* they never will */
    if (err == 0 && cfg->driver == PN_DRIVER_REACTOR_THREAD) {
        err = -pthread_create(&rt->driver, NULL, driver_main, rt);
        rt->driver_started = err == 0;
    }
    if (err < 0) {
        stop_threads(rt, UINT64_MAX);
        pn__timers_shutdown(&rt->base.timers);
        if (rt->base.timers.clock)
            pn__clock_kill(rt->base.timers.clock);
        pn__reactor_free(rt->base.reactor);
        mt_destroy(&rt->base);
        return err;
    }
    *out = &rt->base;
    return 0;
}
