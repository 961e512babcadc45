/*
 * bench_timers.c - the timer suite: many concurrent sleeps, and timeouts
 * that are armed and cancelled without ever firing.
 *
 * Owns no library code.  One figure per process run:
 *
 *   timers_many    a task spawns N detached tasks (default 1,000,000), each
 *                  sleeping a deadline uniform in 1-1000 ms (pn_sleep,
 *                  xorshift with a fixed seed), and waits until the last
 *                  one has fired.  Reports the wall time from the first
 *                  spawn to the last wake (total_ms: 1000 ms is the floor),
 *                  the CPU time of the whole process over that window
 *                  (cpu_ms: getrusage, every thread), the process's peak
 *                  RSS (peak_rss_mb, ru_maxrss).
 *   timer_memory   N (default 100,000) tasks sleeping 60-61 s; once each
 *                  has been polled once (its timer armed), bytes_per_timer
 *                  = RSS growth / N (task + sleep future + wheel entry);
 *                  then the runtime is freed with every timer pending.
 *   timer_cancel   T = 1,000 tasks each await K = N / T (default 1,000)
 *                  futures in a row, three ways, each timed separately:
 *                    base    a future that is pending once (wakes itself)
 *                            then ready: a yield;
 *                    timeout pn_timeout(that future, 60 s): the first
 *                            poll arms the timer (the inner future is
 *                            pending), the second cancels it (the inner one
 *                            is ready), so every timeout is armed and
 *                            cancelled and never fires;
 *                    ready   pn_timeout(a future ready on its first
 *                            poll, 60 s): pollen polls the inner future
 *                            first and never arms the timer.
 *                  arm_cancel_ns = (timeout - base) / (T*K): what a timeout
 *                  that is armed and cancelled adds to the await.
 *                  ready_ns = ready / (T*K).  Each way runs twice in the
 *                  same runtime and reports the second (warm) run.
 *
 * Usage: bench_timers timers_many|timer_memory|timer_cancel [--n N] [--workers W] [--driver workers|reactor]
 * (W = 0, default: the current-thread runtime; W >= 1: the multi-thread
 * runtime, whose timers are one wheel shared by the workers under a mutex.)
 * Output: `<figure> key=value ...`.
 */
#include <pollen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- timers_many ------------------------------------------------------------ */

typedef struct many_state {
    _Atomic size_t polled, left;
    pn_waker done;
} many_state;

typedef struct sleeper {
    pn_future base;
    bool seen;
    many_state *st;
    pn_sleep_future s;
} sleeper;

static pn_poll sleeper_poll(pn_future *f, pn_cx *cx)
{
    sleeper *t = (sleeper *)f;
    if (!t->seen) {
        t->seen = true;
        atomic_fetch_add_explicit(&t->st->polled, 1, memory_order_relaxed);
    }
    if (pn_future_poll(PN_FUTURE(&t->s), cx) == PN_PENDING)
        return PN_PENDING;
    if (atomic_fetch_sub(&t->st->left, 1) == 1)
        pn_waker_wake(&t->st->done);
    return PN_READY;
}

static void sleeper_drop(pn_future *f)
{
    pn_future_drop(PN_FUTURE(&((sleeper *)f)->s));
}

static const pn_future_vtable sleeper_vt = { sleeper_poll, sleeper_drop, "sleeper" };

typedef struct timers_many {
    pn_future base;
    int pc;
    size_t n;
    bool memory_only;       /* timer_memory: deadlines 60-61 s, do not wait */
    many_state st;
    uint64_t seed;
    uint64_t t0, c0, elapsed, cpu;
    long rss0, rss1;
} timers_many;

static pn_poll timers_many_poll(pn_future *f, pn_cx *cx)
{
    timers_many *s = (timers_many *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->rss0 = rss_bytes();
    s->st.left = s->n;
    pn_waker_set(&s->st.done, cx->waker);
    s->t0 = now_ns();
    s->c0 = cpu_ns();
    for (size_t i = 0; i < s->n; i++) {
        uint64_t ms = 1 + xorshift(&s->seed) % 1000 + (s->memory_only ? 60000 : 0);
        sleeper t = { .base = { &sleeper_vt }, .st = &s->st, .s = pn_sleep(PN_MS(ms)) };
        SPAWN(cx, t, NULL);
    }
    /* Every sleep armed: measure the memory they hold. */
    while (atomic_load(&s->st.polled) < s->n && atomic_load(&s->st.left) > 0)
        PN_YIELD(s->pc, cx);
    s->rss1 = rss_bytes();
    if (s->memory_only) {
        pn_waker_drop(&s->st.done);
        s->pc = PN_ASYNC_DONE;
        return PN_READY;
    }
    /* Then wait for the last one (its wake consumes the waker set above). */
    PN_AWAIT_POLL(s->pc, atomic_load(&s->st.left) == 0 ? PN_READY : PN_PENDING);
    s->elapsed = now_ns() - s->t0;
    s->cpu = cpu_ns() - s->c0;
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable timers_many_vt = { timers_many_poll, NULL, "timers_many" };

/* ---- timer_cancel ----------------------------------------------------------- */

/* Pending once (wakes itself), then ready: a yield. */
typedef struct once_pending {
    pn_future base;
    bool yielded;
} once_pending;

static pn_poll once_pending_poll(pn_future *f, pn_cx *cx)
{
    once_pending *o = (once_pending *)f;
    if (o->yielded)
        return PN_READY;
    o->yielded = true;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}

static const pn_future_vtable once_pending_vt = { once_pending_poll, NULL, "once_pending" };

static pn_poll ready_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    (void)cx;
    return PN_READY;
}

static const pn_future_vtable ready_vt = { ready_poll, NULL, "ready" };

enum { WAY_BASE, WAY_TIMEOUT, WAY_READY };

typedef struct canceller {
    pn_future base;
    int pc;
    int way;
    size_t i, k;
    once_pending inner;
    pn_future ready;
    pn_timeout_future t;
} canceller;

static pn_poll canceller_poll(pn_future *f, pn_cx *cx)
{
    canceller *c = (canceller *)f;
    PN_ASYNC_BEGIN(c->pc);
    for (c->i = 0; c->i < c->k; c->i++) {
        c->inner = (once_pending){ .base = { &once_pending_vt } };
        if (c->way == WAY_BASE) {
            PN_AWAIT(c->pc, &c->inner, cx);
        } else {
            c->ready = (pn_future){ &ready_vt };
            c->t = pn_timeout(c->way == WAY_TIMEOUT ? PN_FUTURE(&c->inner) : &c->ready,
                              PN_SEC(60));
            PN_AWAIT(c->pc, &c->t, cx);
            if (c->t.res != 0)
                die("timeout fired", c->t.res);
        }
    }
    PN_ASYNC_END(c->pc);
}

static void canceller_drop(pn_future *f)
{
    canceller *c = (canceller *)f;
    if (c->way != WAY_BASE && PN_ASYNC_AT(c->pc) > 0)
        pn_future_drop(PN_FUTURE(&c->t));
}

static const pn_future_vtable canceller_vt = { canceller_poll, canceller_drop, "canceller" };

typedef struct timer_cancel {
    pn_future base;
    int pc;
    int way, iter;
    size_t tasks, k;
    pn_join_handle **h;
    uint64_t t0, elapsed[3];
    join_each join;
} timer_cancel;

static pn_poll timer_cancel_poll(pn_future *f, pn_cx *cx)
{
    timer_cancel *s = (timer_cancel *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->way = 0; s->way < 3; s->way++) {
        for (s->iter = 0; s->iter < 2; s->iter++) {
            s->t0 = now_ns();
            for (size_t i = 0; i < s->tasks; i++) {
                canceller c = { .base = { &canceller_vt }, .way = s->way, .k = s->k };
                SPAWN(cx, c, &s->h[i]);
            }
            s->join = join_each_of(s->h, s->tasks);
            PN_AWAIT(s->pc, &s->join, cx);
            s->elapsed[s->way] = now_ns() - s->t0;
        }
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable timer_cancel_vt = { timer_cancel_poll, NULL, "timer_cancel" };

/* ---- driver ----------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_timers timers_many|timer_memory|timer_cancel [--n N] [--workers W] "
                    "[--driver workers|reactor]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_prog = argv[0];
    bench_args args;
    if (!bench_args_parse(argc, argv, &args))
        usage();
    const char *fig = args.fig;
    long n = args.n;
    pn_runtime *rt = bench_runtime_new(&args);

    if (!strcmp(fig, "timers_many")) {
        if (n <= 0)
            n = 1000000;
        timers_many s = { .base = { &timers_many_vt }, .n = (size_t)n, .seed = 88172645463325252ull };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("timers_many n=%ld total_ms=%.1f cpu_ms=%.1f peak_rss_mb=%.1f\n",
               n, (double)s.elapsed / 1e6, (double)s.cpu / 1e6, (double)peak_rss_kb() / 1024.0);
    } else if (!strcmp(fig, "timer_memory")) {
        if (n <= 0)
            n = 100000;
        timers_many s = { .base = { &timers_many_vt }, .n = (size_t)n, .memory_only = true,
                          .seed = 88172645463325252ull };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("timer_memory n=%ld bytes_per_timer=%.1f\n", n,
               (double)(s.rss1 - s.rss0) / (double)n);
    } else if (!strcmp(fig, "timer_cancel")) {
        if (n <= 0)
            n = 1000000;
        size_t tasks = 1000, k = ((size_t)n + tasks - 1) / tasks;
        timer_cancel s = { .base = { &timer_cancel_vt }, .tasks = tasks, .k = k };
        s.h = malloc(tasks * sizeof *s.h);
        if (!s.h)
            die("malloc", -ENOMEM);
        pn_join_handle **h = s.h;
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        double ops = (double)(tasks * k);
        printf("timer_cancel n=%.0f base_ns=%.1f timeout_ns=%.1f arm_cancel_ns=%.1f "
               "ready_ns=%.1f\n",
               ops, (double)s.elapsed[WAY_BASE] / ops, (double)s.elapsed[WAY_TIMEOUT] / ops,
               ((double)s.elapsed[WAY_TIMEOUT] - (double)s.elapsed[WAY_BASE]) / ops,
               (double)s.elapsed[WAY_READY] / ops);
        free(h);
    } else {
        usage();
    }
    pn_runtime_free(rt);
    return 0;
}
