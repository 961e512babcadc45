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
 * Parking protocol (no lost wakeup): the loop stores parked = 1, then checks
 * the inject queue and the block_on flag once more before epoll_wait; a
 * remote waker pushes first, then reads parked and writes the eventfd if it
 * is set.  Both sides use sequentially consistent operations, so either the
 * loop sees the work or the waker sees the parked flag.
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
#include "core/sys.h"
#include "reactor/reactor.h"
#include "timer/timers.h"

#define DEFAULT_BUDGET 128
#define DEFAULT_EVENT_INTERVAL 61
#define DEFAULT_MAX_EVENTS 1024
#define GLOBAL_INTERVAL 31
#define DEFAULT_TIMER_SLACK_NS 1000

typedef struct task_fifo {
    pn__task *head, *tail;
} task_fifo;

struct pn_runtime {
    pn__sched sched;                 /* first: tasks point at it */
    pn_runtime_config cfg;
    pn__reactor *reactor;
    pn__timers timers;

    /* Owned by the runtime thread. */
    task_fifo local;
    pn__task *owned;                 /* every live task spawned here */
    unsigned tick;
    bool shutting_down;
    bool shut_down;

    /* Shared with other threads. */
    pthread_mutex_t inject_lock;
    task_fifo inject;                /* guarded by inject_lock */
    bool inject_closed;              /* guarded by inject_lock */
    _Atomic size_t inject_len;
    _Atomic int parked;              /* the loop is (about to be) in epoll_wait */
    _Atomic int main_woken;          /* the block_on future was woken */
    _Atomic int in_block_on;
};

/* The runtime whose loop runs on this thread, if any. */
static _Thread_local pn_runtime *tls_rt;
/* Set while this thread polls a future (nested block_on detection). */
static _Thread_local bool tls_polling;

static void fifo_push(task_fifo *q, pn__task *t)
{
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

static pn__task *fifo_pop(task_fifo *q)
{
    pn__task *t = q->head;
    if (t) {
        q->head = t->next;
        if (!q->head)
            q->tail = NULL;
        t->next = NULL;
    }
    return t;
}

static void owned_add(pn_runtime *rt, pn__task *t)
{
    t->owned = true;
    t->owned_prev = NULL;
    t->owned_next = rt->owned;
    if (rt->owned)
        rt->owned->owned_prev = t;
    rt->owned = t;
}

static void owned_remove(pn_runtime *rt, pn__task *t)
{
    if (!t->owned)
        return;
    if (t->owned_prev)
        t->owned_prev->owned_next = t->owned_next;
    else
        rt->owned = t->owned_next;
    if (t->owned_next)
        t->owned_next->owned_prev = t->owned_prev;
    t->owned = false;
    t->owned_prev = t->owned_next = NULL;
}

static void unpark(pn_runtime *rt)
{
    if (atomic_load(&rt->parked))
        pn__reactor_wake(rt->reactor);
}

/* Push from another thread.  Returns false if the queue is closed. */
static bool inject_push(pn_runtime *rt, pn__task *t)
{
    pthread_mutex_lock(&rt->inject_lock);
    if (rt->inject_closed) {
        pthread_mutex_unlock(&rt->inject_lock);
        return false;
    }
    fifo_push(&rt->inject, t);
    atomic_fetch_add(&rt->inject_len, 1);
    pthread_mutex_unlock(&rt->inject_lock);
    unpark(rt);
    return true;
}

static pn__task *inject_pop(pn_runtime *rt)
{
    if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&rt->inject_lock);
    pn__task *t = fifo_pop(&rt->inject);
    if (t)
        atomic_fetch_sub(&rt->inject_len, 1);
    pthread_mutex_unlock(&rt->inject_lock);
    return t;
}

static void ct_schedule(pn__sched *s, pn__task *t)
{
    pn_runtime *rt = (pn_runtime *)s;
    if (tls_rt == rt) {
        if (rt->shutting_down) {
            pn__task_unref(t);      /* stays NOTIFIED; shutdown drops it */
            return;
        }
        fifo_push(&rt->local, t);
        return;
    }
    if (!inject_push(rt, t))
        pn__task_unref(t);
}

static const pn__sched_ops ct_ops = { ct_schedule };

/* ---- Lifecycle ------------------------------------------------------------ */

void pn_runtime_config_init(pn_runtime_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->flavor = PN_RUNTIME_CURRENT_THREAD;
    cfg->budget = DEFAULT_BUDGET;
    cfg->event_interval = DEFAULT_EVENT_INTERVAL;
    cfg->max_events = DEFAULT_MAX_EVENTS;
    cfg->timer_slack_ns = DEFAULT_TIMER_SLACK_NS;
}

int pn_runtime_new(const pn_runtime_config *cfg, pn_runtime **out)
{
    pn_runtime_config c;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (cfg)
        c = *cfg;
    else
        pn_runtime_config_init(&c);
    if (c.flavor != PN_RUNTIME_CURRENT_THREAD || c.budget == 0 ||
        c.event_interval == 0 || c.max_events == 0 || c.max_events > (1u << 20))
        return -EINVAL;

    pn_runtime *rt = pn__calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    rt->sched.ops = &ct_ops;
    rt->cfg = c;
    int err = pn__reactor_new(c.max_events, &rt->reactor);
    if (err < 0) {
        pn__free(rt);
        return err;
    }
    pn__timers_init(&rt->timers, pn_now());
    pthread_mutex_init(&rt->inject_lock, NULL);
    *out = rt;
    return 0;
}

struct pn__reactor *pn__runtime_reactor(pn_runtime *rt) { return rt->reactor; }
struct pn__timers *pn__runtime_timers(pn_runtime *rt) { return &rt->timers; }

pn_runtime *pn_runtime_current(void) { return tls_rt; }

void pn_runtime_shutdown(pn_runtime *rt)
{
    if (!rt || rt->shut_down || tls_polling)
        return;
    pn_runtime *prev = tls_rt;
    tls_rt = rt;
    rt->shutting_down = true;

    pthread_mutex_lock(&rt->inject_lock);
    rt->inject_closed = true;
    task_fifo inj = rt->inject;
    rt->inject.head = rt->inject.tail = NULL;
    atomic_store(&rt->inject_len, 0);
    pthread_mutex_unlock(&rt->inject_lock);

    /* Queued tasks: make sure they are in the owned list, then drop the
     * queue's reference (the owned list keeps them alive). */
    pn__task *t;
    while ((t = fifo_pop(&inj)) || (t = fifo_pop(&rt->local))) {
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
    rt->shut_down = true;
    tls_rt = prev;
}

void pn_runtime_free(pn_runtime *rt)
{
    if (!rt || tls_polling)
        return;
    pn_runtime_shutdown(rt);
    pn__timers_shutdown(&rt->timers);
    pn__reactor_free(rt->reactor);
    pthread_mutex_destroy(&rt->inject_lock);
    pn__free(rt);
}

/* ---- Spawning ------------------------------------------------------------- */

int pn_spawn(pn_runtime *rt, const pn_future *f, size_t size, pn_join_handle **out)
{
    if (out)
        *out = NULL;
    if (!rt || !f || !f->vt || !f->vt->poll || size < sizeof(pn_future))
        return -EINVAL;
    if (rt->shut_down || (tls_rt == rt && rt->shutting_down))
        return -ESHUTDOWN;
    /* refs: owned list + run queue (+ join handle) */
    pn__task *t = pn__task_new(&rt->sched, f, size, out ? 3 : 2, out != NULL);
    if (!t)
        return -ENOMEM;
    if (tls_rt == rt) {
        owned_add(rt, t);
        fifo_push(&rt->local, t);
    } else if (!inject_push(rt, t)) {
        pn__task_free_unpublished(t);
        return -ESHUTDOWN;
    }
    if (out)
        *out = (pn_join_handle *)(void *)t;
    return 0;
}

/* ---- The block_on waker ---------------------------------------------------
 * data = the runtime.  It carries no reference: it is valid while the
 * runtime lives (every place that stores it is cleared at shutdown). */

static void main_wake_by_ref(const void *data)
{
    pn_runtime *rt = (pn_runtime *)data;
    atomic_store(&rt->main_woken, 1);
    if (tls_rt != rt)
        unpark(rt);
}

static pn_waker main_clone(const void *data);
static void main_drop(const void *data) { (void)data; }

static const pn_waker_vtable main_waker_vt = {
    .clone = main_clone,
    .wake = main_wake_by_ref,
    .wake_by_ref = main_wake_by_ref,
    .drop = main_drop,
};

static pn_waker main_clone(const void *data)
{
    return (pn_waker){ data, &main_waker_vt };
}

/* ---- The loop --------------------------------------------------------------- */

static pn__task *next_task(pn_runtime *rt)
{
    pn__task *t;
    if (++rt->tick % GLOBAL_INTERVAL == 0 && (t = inject_pop(rt)))
        return t;
    if ((t = fifo_pop(&rt->local)))
        return t;
    return inject_pop(rt);
}

static void run_task(pn_runtime *rt, pn__task *t, pn_cx *cx)
{
    if (!t->owned && !(atomic_load_explicit(&t->state, memory_order_acquire) & PN__COMPLETE))
        owned_add(rt, t);                   /* spawned from another thread */
    cx->budget = rt->cfg.budget;
    switch (pn__task_run(t, cx)) {
    case PN__RUN_IDLE:
        break;
    case PN__RUN_REQUEUE:
        fifo_push(&rt->local, t);
        break;
    case PN__RUN_DONE:
        owned_remove(rt, t);
        pn__task_unref(t);                  /* the owned list's ref */
        break;
    }
}

static bool has_work(pn_runtime *rt)
{
    return rt->local.head || atomic_load(&rt->inject_len) || atomic_load(&rt->main_woken);
}

int pn_block_on(pn_runtime *rt, pn_future *f)
{
    if (!rt || !f || !f->vt || !f->vt->poll)
        return -EINVAL;
    if (tls_polling || (tls_rt && tls_rt != rt))
        return -EDEADLK;
    if (rt->shut_down)
        return -ESHUTDOWN;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&rt->in_block_on, &expected, 1))
        return -EDEADLK;

    pn_runtime *prev = tls_rt;
    tls_rt = rt;
    pn_cx cx = { .waker = NULL, .rt = rt, .reactor = rt->reactor,
                 .timers = &rt->timers, .budget = 0 };
    pn_waker main_waker = { rt, &main_waker_vt };
    int err = 0;
    atomic_store(&rt->main_woken, 1);
    /* Sleeps wake within the thread's timer slack: narrow it while we run. */
    int old_slack = -1;
    if (rt->cfg.timer_slack_ns) {
        old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
        prctl(PR_SET_TIMERSLACK, (unsigned long)rt->cfg.timer_slack_ns, 0, 0, 0);
    }

    for (;;) {
        if (atomic_exchange(&rt->main_woken, 0)) {
            cx.waker = &main_waker;
            cx.budget = rt->cfg.budget;
            tls_polling = true;
            pn_poll r = pn_future_poll(f, &cx);
            tls_polling = false;
            if (r == PN_READY)
                break;
        }

        tls_polling = true;
        for (unsigned n = 0; n < rt->cfg.event_interval; n++) {
            pn__task *t = next_task(rt);
            if (!t)
                break;
            run_task(rt, t, &cx);
        }
        tls_polling = false;

        int64_t timeout = 0;
        if (!has_work(rt)) {
            timeout = pn__timers_timeout(&rt->timers, pn_now());
            if (timeout != 0) {
                atomic_store(&rt->parked, 1);
                if (has_work(rt))
                    timeout = 0;
            }
        }
        int n = pn__reactor_poll(rt->reactor, timeout);
        atomic_store(&rt->parked, 0);
        if (n < 0 && n != -EINTR) {
            err = n;                        /* epoll itself failed: give up */
            break;
        }
        pn__timers_fire(&rt->timers, pn_now());
    }
    if (old_slack > 0)
        prctl(PR_SET_TIMERSLACK, (unsigned long)old_slack, 0, 0, 0);
    tls_rt = prev;
    atomic_store(&rt->in_block_on, 0);
    return err;
}
