/*
 * current_thread.c - the current-thread runtime: one thread polls every task.
 *
 * The thread that calls pn_block_on runs the loop below; tasks spawned or
 * woken on that thread go to a plain FIFO (no atomics), tasks spawned or
 * woken from any other thread go to the inject queue (a mutex-protected
 * intrusive list) and, if the loop is parked in epoll, wake it through the
 * reactor's eventfd.
 *
 * One turn of the loop:
 *   1. poll the block_on future if it was woken;
 *   2. run up to event_interval tasks (the inject queue is looked at first
 *      every global_interval polls, so remote wakes are never starved);
 *   3. turn the reactor: without blocking if work is left, else blocking
 *      until the next timer (no timer: forever; an idle runtime uses no CPU);
 *   4. fire due timers.
 *
 * Paused clock (cfg.start_paused, pn_time_pause): step 3 first turns the
 * reactor without blocking; if that woke nothing, no task is queued and no
 * pn_spawn_blocking call is in flight, the clock jumps to the earliest
 * timer's deadline at once instead of waiting for it (auto-advance), and
 * step 4 fires it.  With no timer armed (or a blocking call in flight) the
 * loop parks in the reactor as usual: only I/O or a wake from another
 * thread (or the blocking call's end) gets it going again.
 *
 * Parking protocol (no lost wakeup): the loop stores parked = 1, then checks
 * the inject queue and the block_on flag once more before epoll_wait; a
 * remote waker pushes first, then reads parked and writes the eventfd if it
 * is set.  This is the store-buffer pattern: each side stores, then loads
 * what the other stored.  The queue's length is a release increment and an
 * acquire load, which C11 lets both loads miss (ARMv8's LDAPR does), so
 * each side puts a seq_cst fence between its store and its load: then
 * either the loop sees the work or the waker sees the parked flag.
 *
 * Shutdown (pn_runtime_shutdown, also run by pn_runtime_free):
 *   1. close the inject queue (later remote spawns get -ESHUTDOWN, later
 *      remote wakes drop their reference);
 *   2. drain both queues, dropping their references (the tasks stay NOTIFIED
 *      so no new wake can queue them);
 *   3. drop the future of every task in the owned list, mark it COMPLETE|
 *      CANCELLED and wake its joiner;
 *   4. (free only) detach timers, free the reactor, free the runtime.
 */
#include <pthread.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include "task.h"
#include "rt.h"
#include "inject.h"
#include "task_list.h"
#include "core/sys.h"
#include "reactor/reactor.h"
#include "timer/timers.h"
#include "core/chaos.h"

#define GLOBAL_INTERVAL 31

typedef struct ct_runtime {
    struct pn_runtime base;          /* first: the common head (rt.h) */

    /* Owned by the runtime thread. */
    pn__task_fifo local;
    pn__task *owned;                 /* every live task spawned here */
    unsigned tick;
    bool shutting_down;

    /* Metrics: kept by the runtime thread, except remote_spawns. */
    pn__counter polls, completed, parks, budget_exhausted, local_spawns;
    _Atomic uint64_t remote_spawns;

    /* Shared with other threads. */
    pn__inject inject;
    _Atomic int parked;              /* the loop is (about to be) in epoll_wait */
    _Atomic int main_woken;          /* the block_on future was woken */
    _Atomic int in_block_on;
} ct_runtime;

static inline ct_runtime *ct(pn_runtime *rt) { return (ct_runtime *)rt; }

static void owned_add(ct_runtime *rt, pn__task *t)
{
    pn__owned_link(&rt->owned, t);
}

static void owned_remove(ct_runtime *rt, pn__task *t)
{
    pn__owned_unlink(&rt->owned, t);
}

static void unpark(ct_runtime *rt)
{
    pn__store_load_barrier();               /* the work, then parked */
    if (atomic_load(&rt->parked))
        pn__reactor_wake(rt->base.reactor);
}

static void unpark_cb(void *arg) { unpark((ct_runtime *)arg); }

/* Push from another thread and wake the loop if it sleeps in epoll; the
 * wake happens under the queue's lock, so it cannot reach a reactor that
 * shutdown (which closes the queue first) has freed.  Returns false if the
 * queue is closed. */
static bool remote_push(ct_runtime *rt, pn__task *t)
{
    return pn__inject_push_notify(&rt->inject, t, unpark_cb, rt);
}

static void ct_schedule(pn__sched *s, pn__task *t)
{
    ct_runtime *rt = (ct_runtime *)s;
    if (pn__tls_rt == &rt->base) {
        if (rt->shutting_down) {
            pn__task_unref(t);      /* stays NOTIFIED; shutdown drops it */
            return;
        }
        pn__fifo_push(&rt->local, t);
        return;
    }
    if (!remote_push(rt, t))
        pn__task_unref(t);
}

static void ct_release(pn__sched *s);
static const pn__sched_ops ct_sched_ops = { ct_schedule, ct_release, NULL, NULL, NULL };

/* ---- Lifecycle ------------------------------------------------------------ */

static int ct_shutdown(pn_runtime *base, uint64_t deadline)
{
    (void)deadline;                     /* no other thread polls our tasks */
    ct_runtime *rt = ct(base);
    pn_runtime *prev = pn__tls_rt;
    pn__tls_rt = base;
    rt->shutting_down = true;

    pn__task *inj = pn__inject_close(&rt->inject);

    /* Queued tasks: make sure they are in the owned list, then drop the
     * queue's reference (the owned list keeps them alive). */
    pn__task *t;
    for (;;) {
        if (inj) {
            t = inj;
            inj = inj->next;
        } else if (!(t = pn__fifo_pop(&rt->local))) {
            break;
        }
        if (!t->owned && !(atomic_load(&t->state) & PN__COMPLETE))
            owned_add(rt, t);               /* spawned from another thread, never run */
        pn__task_unref(t);
    }
    /* Drop every live future.  A drop may wake or abort other tasks; those
     * wakes are refused (shutting_down) and the walk reaches them anyway. */
    while ((t = rt->owned)) {
        owned_remove(rt, t);
        pn__task_shutdown(t);
        pn__task_unref(t);
    }
    pn__tls_rt = prev;
    return 0;
}

static void ct_destroy(pn_runtime *base)
{
    pn__sched_unref(&base->sched);
}

static void ct_release(pn__sched *s)
{
    ct_runtime *rt = (ct_runtime *)s;
    pn__inject_destroy(&rt->inject);
    pn__free(rt);
}

/* ---- Spawning ------------------------------------------------------------- */

static bool ct_spawn(pn_runtime *base, pn__task *t)
{
    ct_runtime *rt = ct(base);
    if (pn__tls_rt == base) {
        if (rt->shutting_down)
            return false;
        owned_add(rt, t);
        pn__fifo_push(&rt->local, t);
        pn__count(&rt->local_spawns, 1);
        return true;
    }
    atomic_fetch_add_explicit(&rt->remote_spawns, 1, memory_order_relaxed);
    return remote_push(rt, t);
}

/* ---- The block_on waker ---------------------------------------------------
 * data = a small refcounted parker that points at the runtime while
 * pn_block_on runs.  A clone may outlive the call (left in a waker slot, or
 * handed to another thread): once the call returns the parker forgets the
 * runtime, and a late wake does nothing. */

typedef struct ct_parker {
    atomic_flag lock;               /* guards rt against the block_on exit */
    _Atomic size_t refs;
    ct_runtime *rt;                 /* NULL once pn_block_on returned */
} ct_parker;

static void parker_lock(ct_parker *p)
{
    while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire))
        ;
}

static void parker_unlock(ct_parker *p)
{
    atomic_flag_clear_explicit(&p->lock, memory_order_release);
}

static void parker_unref(ct_parker *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        pn__free(p);
}

static void main_wake_by_ref(const void *data)
{
    ct_parker *p = (ct_parker *)data;
    parker_lock(p);
    ct_runtime *rt = p->rt;
    if (rt) {
        atomic_store(&rt->main_woken, 1);
        if (pn__tls_rt != &rt->base)
            unpark(rt);
    }
    parker_unlock(p);
}

static void main_wake(const void *data)
{
    main_wake_by_ref(data);
    parker_unref((ct_parker *)data);
}

static void main_drop(const void *data) { parker_unref((ct_parker *)data); }
static pn_waker main_clone(const void *data);

static const pn_waker_vtable main_waker_vt = {
    .clone = main_clone,
    .wake = main_wake,
    .wake_by_ref = main_wake_by_ref,
    .drop = main_drop,
};

static pn_waker main_clone(const void *data)
{
    atomic_fetch_add_explicit(&((ct_parker *)data)->refs, 1, memory_order_relaxed);
    return (pn_waker){ data, &main_waker_vt };
}

/* ---- The loop --------------------------------------------------------------- */

static pn__task *next_task(ct_runtime *rt)
{
    pn__task *t;
    if (++rt->tick % GLOBAL_INTERVAL == 0 && (t = pn__inject_pop(&rt->inject)))
        return t;
    if ((t = pn__fifo_pop(&rt->local)))
        return t;
    return pn__inject_pop(&rt->inject);
}

static void run_task(ct_runtime *rt, pn__task *t, pn_cx *cx)
{
    if (!t->owned && !(atomic_load_explicit(&t->state, memory_order_acquire) & PN__COMPLETE))
        owned_add(rt, t);                   /* spawned from another thread */
    cx->budget = rt->base.cfg.budget;
    pn__run_result r = pn__task_run(t, cx);
    pn__count(&rt->polls, 1);
    if (cx->budget == 0)
        pn__count(&rt->budget_exhausted, 1);
    switch (r) {
    case PN__RUN_IDLE:
        break;
    case PN__RUN_REQUEUE:
        pn__fifo_push(&rt->local, t);
        break;
    case PN__RUN_DONE:
        owned_remove(rt, t);
        pn__task_unref(t);                  /* the owned list's ref */
        pn__count(&rt->completed, 1);
        break;
    }
}

static bool has_work(ct_runtime *rt)
{
    return rt->local.head || pn__inject_len(&rt->inject) || atomic_load(&rt->main_woken);
}

static int ct_block_on(pn_runtime *base, pn_future *f)
{
    ct_runtime *rt = ct(base);
    if (pn__tls_rt && pn__tls_rt != base)
        return -EDEADLK;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&rt->in_block_on, &expected, 1))
        return -EDEADLK;
    ct_parker *parker = pn__malloc(sizeof(*parker));
    if (!parker) {
        atomic_store(&rt->in_block_on, 0);
        return -ENOMEM;
    }
    atomic_flag_clear(&parker->lock);
    atomic_init(&parker->refs, 1);
    parker->rt = rt;

    /* A test that controls the clock reads it outside too (clock.h). */
    if (pn__clock_controlled(base->timers.clock))
        pn__clock_bind(base->timers.clock);
    pn_runtime *prev = pn__tls_rt;
    pn__tls_rt = base;
    pn_cx cx = { .waker = NULL, .rt = base, .reactor = base->reactor,
                 .timers = &base->timers, .budget = 0 };
    pn_waker main_waker = { parker, &main_waker_vt };
    int err = 0;
    atomic_store(&rt->main_woken, 1);
    /* Sleeps wake within the thread's timer slack: narrow it while we run. */
    int old_slack = -1;
    if (base->cfg.timer_slack_ns) {
        old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
        prctl(PR_SET_TIMERSLACK, (unsigned long)base->cfg.timer_slack_ns, 0, 0, 0);
    }
    /* This thread runs the tasks: with io_uring it submits their I/O. */
    pn__reactor_adopt_thread(base->reactor);

    for (;;) {
        if (atomic_exchange(&rt->main_woken, 0)) {
            cx.waker = &main_waker;
            cx.budget = base->cfg.budget;
            pn__tls_polling = true;
            pn_poll r = pn_future_poll(f, &cx);
            pn__tls_polling = false;
            if (r == PN_READY)
                break;
        }

        pn__tls_polling = true;
        for (unsigned n = 0; n < base->cfg.event_interval; n++) {
            pn__task *t = next_task(rt);
            if (!t)
                break;
            run_task(rt, t, &cx);
        }
        pn__tls_polling = false;

        int64_t timeout = 0;
        pn__clock *clock = base->timers.clock;
        if (!has_work(rt) && pn__clock_paused(clock)) {
            /* I/O first (a zero-timeout turn), then jump to the next timer. */
            int n = pn__reactor_poll(base->reactor, 0);
            if (n < 0 && n != -EINTR) {
                err = n;
                break;
            }
            if (!has_work(rt) && !atomic_load(&base->blocking_inflight)) {
                pn_instant d = pn__timers_next_deadline(&base->timers);
                if (d != UINT64_MAX) {
                    PN_POINT("clock.auto_advance", rt);
                    pn__clock_advance_to(clock, d);
                    pn__timers_fire(&base->timers, pn__clock_now(clock));
                    continue;
                }
            }
            timeout = has_work(rt) ? 0 : -1;
            if (timeout == 0) {
                pn__timers_fire(&base->timers, pn__clock_now(clock));
                continue;
            }
        } else if (!has_work(rt)) {
            timeout = pn__timers_timeout(&base->timers, pn__timers_now(&base->timers));
        }
        if (timeout != 0) {
            atomic_store(&rt->parked, 1);
            pn__store_load_barrier();       /* parked, then work */
            if (has_work(rt))
                timeout = 0;
            else
                pn__count(&rt->parks, 1);
        }
        int n = pn__reactor_poll(base->reactor, timeout);
        atomic_store(&rt->parked, 0);
        if (n < 0 && n != -EINTR) {
            err = n;                        /* epoll itself failed: give up */
            break;
        }
        pn__timers_fire(&base->timers, pn__timers_now(&base->timers));
    }
    pn__reactor_flush(base->reactor);      /* I/O queued by the last polls */
    /* Another thread may run the next pn_block_on: from now on this one
     * hands its requests to whichever does. */
    pn__reactor_disown_thread(base->reactor);
    if (old_slack > 0)
        prctl(PR_SET_TIMERSLACK, (unsigned long)old_slack, 0, 0, 0);
    pn__tls_rt = prev;
    parker_lock(parker);
    parker->rt = NULL;
    parker_unlock(parker);
    parker_unref(parker);
    atomic_store(&rt->in_block_on, 0);
    return err;
}

static pn__sched *ct_local_sched(pn_runtime *base)
{
    /* One thread runs everything: any task of ours is pinned to it. */
    return pn__tls_rt == base ? &base->sched : NULL;
}

static unsigned ct_nworkers(pn_runtime *base)
{
    (void)base;
    return 1;
}

static void ct_worker_metrics(pn_runtime *base, unsigned index, pn_worker_metrics *out)
{
    ct_runtime *rt = ct(base);
    (void)index;
    out->polls = pn__counter_get(&rt->polls);
    out->tasks_completed = pn__counter_get(&rt->completed);
    out->parks = pn__counter_get(&rt->parks);
    out->budget_exhausted = pn__counter_get(&rt->budget_exhausted);
    out->local_queue_depth = 0;            /* the local FIFO is the loop's own */
}

static void ct_shared_metrics(pn_runtime *base, pn_runtime_metrics *out)
{
    ct_runtime *rt = ct(base);
    out->tasks_spawned = pn__counter_get(&rt->local_spawns) +
                         atomic_load_explicit(&rt->remote_spawns, memory_order_relaxed);
    out->injection_queue_depth = pn__inject_len(&rt->inject);
}

/* ---- The clock --------------------------------------------------------------
 * pause / resume / advance touch the wheel, which only the loop's thread
 * may: from anywhere else they hold the loop out (in_block_on) meanwhile. */

static int ct_time_ctl(pn_runtime *base, int op, uint64_t ns)
{
    ct_runtime *rt = ct(base);
    pn__clock *c = base->timers.clock;
    bool inside = pn__tls_rt == base;
    int expected = 0;
    if (!inside && !atomic_compare_exchange_strong(&rt->in_block_on, &expected, 1))
        return -EBUSY;
    int err = 0;
    switch (op) {
    case PN__TIME_PAUSE:
        if (pn__clock_paused(c))
            err = -EALREADY;
        else
            pn__clock_pause(c);
        break;
    case PN__TIME_RESUME:
        if (!pn__clock_paused(c))
            err = -EINVAL;
        else
            pn__clock_resume(c);
        break;
    case PN__TIME_ADVANCE: {
        if (!pn__clock_paused(c)) {
            err = -EINVAL;
            break;
        }
        pn_instant now = pn__clock_now(c);
        pn__clock_advance_to(c, now + ns < now ? UINT64_MAX : now + ns);
        /* Wakes from here reach the loop's queue (inside) or the
         * injection queue (outside): the tasks run at its next turn. */
        pn__timers_fire(&base->timers, pn__clock_now(c));
        break;
    }
    default:
        err = -EINVAL;
    }
    if (err == 0)
        pn__clock_bind(c);
    if (!inside)
        atomic_store(&rt->in_block_on, 0);
    return err;
}

static const pn__rt_ops ct_rt_ops = {
    .time_ctl = ct_time_ctl,
    .block_on = ct_block_on,
    .spawn = ct_spawn,
    .shutdown = ct_shutdown,
    .local_sched = ct_local_sched,
    .destroy = ct_destroy,
    .nworkers = ct_nworkers,
    .worker_metrics = ct_worker_metrics,
    .shared_metrics = ct_shared_metrics,
};

int pn__current_thread_new(const pn_runtime_config *cfg, pn_runtime **out)
{
    ct_runtime *rt = pn__calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    rt->base.sched.ops = &ct_sched_ops;
    rt->base.sched.root = &rt->base.sched;
    atomic_init(&rt->base.sched.refs, 1);
    rt->base.ops = &ct_rt_ops;
    pn__runtime_init_common(&rt->base, cfg);
    int err = pn__reactor_new(cfg->max_events, cfg->backend, &rt->base.reactor);
    if (err < 0) {
        pn__free(rt);
        return err;
    }
    pn__clock *clock = pn__clock_new(cfg->start_paused);
    if (!clock) {
        pn__reactor_free(rt->base.reactor);
        pn__free(rt);
        return -ENOMEM;
    }
    pn__timers_init(&rt->base.timers, pn__clock_now(clock));
    rt->base.timers.clock = clock;
    if (cfg->start_paused)
        pn__clock_bind(clock);          /* its maker reads it (clock.h) */
    pn__inject_init(&rt->inject);
    *out = &rt->base;
    return 0;
}
