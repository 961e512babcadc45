/*
 * runtime.c - the public runtime calls: check arguments, pick the flavour,
 * dispatch.  Flavours live in current_thread.c and multi_thread.c.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "rt.h"
#include "fiber/stack.h"
#include "reactor/reactor.h"
#include "blocking.h"
#include "core/chaos.h"

_Thread_local pn_runtime *pn__tls_rt;
_Thread_local bool pn__tls_polling;

#define DEFAULT_BUDGET 128
#define DEFAULT_EVENT_INTERVAL 61
#define DEFAULT_MAX_EVENTS 1024
#define DEFAULT_TIMER_SLACK_NS 1000
#define MAX_WORKERS 1024

void pn_runtime_config_init(pn_runtime_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->flavor = PN_RUNTIME_CURRENT_THREAD;
    cfg->workers = 0;
    cfg->driver = PN_DRIVER_WORKERS;   /* faster on I/O: docs/BENCHMARKS.md */
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
    if (c.budget == 0 || c.event_interval == 0 || c.max_events == 0 ||
        c.max_events > (1u << 20) || c.workers > MAX_WORKERS ||
        (unsigned)c.backend > PN_BACKEND_URING ||
        (unsigned)c.uring_rings > PN_URING_RINGS_PER_WORKER)
        return -EINVAL;
    int err = pn__backend_resolve(c.backend, &c.backend);
    if (err)
        return err;
    const char *rings = getenv("POLLEN_URING_RINGS");
    if (rings && *rings) {
        if (!strcmp(rings, "shared"))
            c.uring_rings = PN_URING_RINGS_SHARED;
        else if (!strcmp(rings, "per-worker"))
            c.uring_rings = PN_URING_RINGS_PER_WORKER;
        else if (!strcmp(rings, "auto"))
            c.uring_rings = PN_URING_RINGS_AUTO;
        else
            return -EINVAL;
    }
    switch (c.flavor) {
    case PN_RUNTIME_CURRENT_THREAD:
        return pn__current_thread_new(&c, out);
    case PN_RUNTIME_MULTI_THREAD:
        if (c.start_paused) {
            /* io_uring posts a completion as task work of the thread that
             * submitted the request, maybe after the driver found every
             * thread idle: the clock could jump before it is seen. */
            if (c.backend == PN_BACKEND_URING)
                return -ENOTSUP;
            c.backend = PN_BACKEND_EPOLL;
        }
        if (c.workers == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            c.workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
        }
        if (c.driver != PN_DRIVER_REACTOR_THREAD && c.driver != PN_DRIVER_WORKERS)
            return -EINVAL;
        return pn__multi_thread_new(&c, out);
    }
    return -EINVAL;
}

struct pn__reactor *pn__runtime_reactor(pn_runtime *rt) { return rt->reactor; }

pn_backend pn_runtime_backend(pn_runtime *rt)
{
    return rt ? pn__reactor_backend(rt->reactor) : PN_BACKEND_AUTO;
}

const char *pn_backend_name(pn_backend b)
{
    switch (b) {
    case PN_BACKEND_AUTO: return "auto";
    case PN_BACKEND_EPOLL: return "epoll";
    case PN_BACKEND_URING: return "uring";
    }
    return NULL;
}
struct pn__timers *pn__runtime_timers(pn_runtime *rt) { return &rt->timers; }

pn_runtime *pn_runtime_current(void) { return pn__tls_rt; }

int pn_block_on(pn_runtime *rt, pn_future *f)
{
    if (!rt || !f || !f->vt || !f->vt->poll)
        return -EINVAL;
    if (pn__tls_polling)
        return -EDEADLK;
    pthread_mutex_lock(&rt->life_lock);
    if (atomic_load(&rt->shut_down)) {
        pthread_mutex_unlock(&rt->life_lock);
        return -ESHUTDOWN;
    }
    rt->blockers++;
    pthread_mutex_unlock(&rt->life_lock);
    int err = rt->ops->block_on(rt, f);
    pthread_mutex_lock(&rt->life_lock);
    rt->blockers--;
    pthread_mutex_unlock(&rt->life_lock);
    return err;
}

static int spawn_with(pn_runtime *rt, pn__sched *sched, const pn_future *f, size_t size,
                      pn_join_handle **out)
{
    if (atomic_load(&rt->shut_down))
        return -ESHUTDOWN;
    /* refs: owned list + run queue (+ join handle) */
    pn__task *t = pn__task_new(sched, f, size, out ? 3 : 2, out != NULL);
    if (!t)
        return -ENOMEM;
    if (!rt->ops->spawn(rt, t)) {
        pn__task_free_unpublished(t);
        return -ESHUTDOWN;
    }
    if (out)
        *out = (pn_join_handle *)(void *)t;
    return 0;
}

/* A spawnable future: a poll function and a size that a task can hold (a
 * larger size would wrap the task's allocation size around). */
static bool spawn_future_ok(const pn_future *f, size_t size)
{
    return f && f->vt && f->vt->poll && size >= sizeof(pn_future) &&
           size <= PN_SPAWN_MAX_SIZE;
}

int pn_spawn(pn_runtime *rt, const pn_future *f, size_t size, pn_join_handle **out)
{
    if (out)
        *out = NULL;
    if (!rt || !spawn_future_ok(f, size))
        return -EINVAL;
    return spawn_with(rt, &rt->sched, f, size, out);
}

int pn_spawn_local(pn_cx *cx, const pn_future *f, size_t size, pn_join_handle **out)
{
    if (out)
        *out = NULL;
    if (!cx || !cx->rt || !spawn_future_ok(f, size))
        return -EINVAL;
    pn__sched *sched = cx->rt->ops->local_sched(cx->rt);
    if (!sched)
        return -EPERM;
    return spawn_with(cx->rt, sched, f, size, out);
}

int pn_runtime_shutdown_timeout(pn_runtime *rt, uint64_t timeout_ns)
{
    if (!rt)
        return -EINVAL;
    if (pn__tls_polling)
        return -EDEADLK;
    pthread_mutex_lock(&rt->life_lock);
    if (rt->blockers) {
        pthread_mutex_unlock(&rt->life_lock);
        return -EBUSY;
    }
    atomic_store(&rt->shut_down, true);
    pthread_mutex_unlock(&rt->life_lock);

    uint64_t deadline = UINT64_MAX;
    if (timeout_ns != UINT64_MAX) {
        pn_instant now = pn__mono_now();  /* real time, whatever the clock */
        deadline = now + timeout_ns < now ? UINT64_MAX : now + timeout_ns;
    }
    int err = 0;
    pthread_mutex_lock(&rt->shutdown_lock);
    if (!rt->shutdown_done) {
        /* Drops run here: a drop that calls back into the runtime's
         * block_on or shutdown gets -EDEADLK instead of a deadlock. */
        pn__tls_polling = true;
        err = rt->ops->shutdown(rt, deadline);
        pn__tls_polling = false;
        rt->shutdown_done = err == 0;
        rt->shutdown_timed_out = err == -ETIMEDOUT;
    }
    pthread_mutex_unlock(&rt->shutdown_lock);
    return err;
}

int pn_runtime_shutdown(pn_runtime *rt)
{
    return pn_runtime_shutdown_timeout(rt, UINT64_MAX);
}

int pn_runtime_free(pn_runtime *rt)
{
    if (!rt)
        return 0;
    /* After a shutdown that timed out, look once more without waiting. */
    int err = pn_runtime_shutdown_timeout(rt, rt->shutdown_timed_out ? 0 : UINT64_MAX);
    if (err < 0)
        return err;
    pn__blocking_shutdown(rt);          /* queued calls: -ESHUTDOWN; running ones finish */
    pn__timers_shutdown(&rt->timers);
    if (rt->timers.clock) {
        pn__clock_kill(rt->timers.clock);
        rt->timers.clock = NULL;
    }
    pn__reactor_free(rt->reactor);
    pn__stack_pool_close(atomic_load(&rt->stacks));   /* every fiber is gone */
    pthread_mutex_destroy(&rt->life_lock);
    pthread_mutex_destroy(&rt->shutdown_lock);
    rt->ops->destroy(rt);
    return 0;
}

/* Called by each flavour's constructor. */
void pn__runtime_init_common(pn_runtime *rt, const pn_runtime_config *cfg)
{
    rt->cfg = *cfg;
    pthread_mutex_init(&rt->life_lock, NULL);
    pthread_mutex_init(&rt->shutdown_lock, NULL);
    rt->shutdown_done = false;
    rt->shutdown_timed_out = false;
    rt->blockers = 0;
    atomic_init(&rt->shut_down, false);
    atomic_init(&rt->blocking_inflight, 0);
}

/* ---- the clock (pollen/time.h) ---------------------------------------------- */

static int time_ctl(pn_runtime *rt, int op, uint64_t ns)
{
    if (!rt)
        return -EINVAL;
    if (!rt->ops->time_ctl)
        return -ENOTSUP;
    if (atomic_load(&rt->shut_down))
        return -ESHUTDOWN;
    return rt->ops->time_ctl(rt, op, ns);
}

int pn_time_pause(pn_runtime *rt) { return time_ctl(rt, PN__TIME_PAUSE, 0); }
int pn_time_resume(pn_runtime *rt) { return time_ctl(rt, PN__TIME_RESUME, 0); }
int pn_time_advance(pn_runtime *rt, uint64_t ns) { return time_ctl(rt, PN__TIME_ADVANCE, ns); }

bool pn_time_is_paused(pn_runtime *rt)
{
    return rt && rt->timers.clock && pn__clock_paused(rt->timers.clock);
}

pn_instant pn_runtime_now(pn_runtime *rt)
{
    return rt && rt->timers.clock ? pn__clock_now(rt->timers.clock) : pn__mono_now();
}

void pn__runtime_blocking_done(pn_runtime *rt)
{
    if (atomic_fetch_sub(&rt->blocking_inflight, 1) != 1)
        return;
    /* The loop may have seen the call in flight and parked: wake it so
     * that it may auto-advance now (a spare wake costs one turn). */
    PN_POINT("clock.blocking_done", rt);
    if (rt->timers.clock && pn__clock_paused(rt->timers.clock))
        pn__reactor_wake(rt->reactor);
}

int pn_runtime_worker_metrics_get(pn_runtime *rt, unsigned index, pn_worker_metrics *out)
{
    if (!rt || !out || index >= rt->ops->nworkers(rt))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    rt->ops->worker_metrics(rt, index, out);
    return 0;
}

int pn_runtime_metrics_get(pn_runtime *rt, pn_runtime_metrics *out)
{
    if (!rt || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->workers = rt->ops->nworkers(rt);
    out->backend = pn__reactor_backend(rt->reactor);
    if (out->backend == PN_BACKEND_URING) {
        out->uring_rings = pn__reactor_lanes(rt->reactor);
        out->uring_single_issuer = pn__reactor_single_issuer(rt->reactor);
    }
    for (unsigned i = 0; i < out->workers; i++) {
        pn_worker_metrics w;
        memset(&w, 0, sizeof(w));
        rt->ops->worker_metrics(rt, i, &w);
        out->polls += w.polls;
        out->tasks_completed += w.tasks_completed;
        out->steals += w.steals;
        out->stolen_tasks += w.stolen_tasks;
        out->inject_pops += w.inject_pops;
        out->parks += w.parks;
        out->budget_exhausted += w.budget_exhausted;
        out->overflows += w.overflows;
        out->local_queue_depth += w.local_queue_depth;
    }
    rt->ops->shared_metrics(rt, out);
    return 0;
}
