/*
 * bench_fiber.c - what a stackful task (pollen/fiber.h) costs against a
 * stackless one: the bare context switch, a yield through the scheduler,
 * and spawning.
 *
 * Owns no library code; links the static library, so it calls pollen's
 * private switch (pn__ctx_make, pn__ctx_switch from src/fiber/switch.h)
 * directly.  Figures (one per process run; each prints two lines, the
 * stackful one first, measured alternately in the same process so that a
 * slow second of the machine hits both):
 *
 *   switch        two contexts switch to each other N times in all (N/2
 *                 round trips, default N = 10M): pollen's hand-written
 *                 switch (ctx_switch_pollen) and glibc's swapcontext
 *                 (ctx_switch_ucontext), which also sets the signal mask
 *                 with a system call per switch.  ns_per_switch.
 *   yield         ONE task on the current-thread runtime yields N times
 *                 (default 1M): a fiber calling pn_fiber_yield()
 *                 (fiber_yield_1) and a future using PN_YIELD (wake self,
 *                 return pending: future_yield_1).  ns_per_yield: the whole
 *                 round trip, task -> run queue -> poll -> back in the task.
 *   yield_many    1000 tasks x N yields (default 1000) spawned from a task
 *                 and joined, the shape of bench_runtime's (and the Tokio
 *                 peer's) yield_many: fibers (fiber_yield_many) and futures
 *                 (future_yield_many).  ns_per_yield = elapsed / (1000 N),
 *                 spawns and joins included.
 *   spawn         N tasks (default 10000) that finish at once, spawned from
 *                 a task and joined: fibers (fiber_spawn: a stack from the
 *                 runtime's cache, or a new mapping past its 256 stacks)
 *                 and futures (future_spawn).  ns_per_task.
 *
 * Every figure runs REPS (5) times in the process, after one untimed warm-up;
 * it prints the median and the min.  Usage:
 *   bench_fiber switch|yield|yield_many|spawn [--n N] [--workers W] [--driver D]
 * (--workers 0, the current-thread runtime, is the default and what run.sh
 * uses.)
 */
#include <pollen.h>
#include <pollen/fiber.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "bench_util.h"
#include "fiber/switch.h"

#define REPS 5

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..REPS) and returns the median. */
static uint64_t median(uint64_t *v)
{
    qsort(v, REPS, sizeof *v, cmp_u64);
    return v[REPS / 2];
}

static void print(const char *fig, const char *unit, long n, double units, uint64_t *ns)
{
    uint64_t med = median(ns);
    printf("%s n=%ld reps=%d ns=%llu %s=%.2f min_%s=%.2f\n", fig, n, REPS,
           (unsigned long long)med, unit, (double)med / units, unit, (double)ns[0] / units);
}

/* ---- switch ------------------------------------------------------------------ */

static pn__ctx main_ctx, co_ctx;

static void co_pollen(void *arg)
{
    (void)arg;
    for (;;)
        pn__ctx_switch(&co_ctx, &main_ctx);
}

static uint64_t run_pollen(long rounds)
{
    uint64_t t0 = now_ns();
    for (long i = 0; i < rounds; i++)
        pn__ctx_switch(&main_ctx, &co_ctx);
    return now_ns() - t0;
}

static ucontext_t main_uc, co_uc;

static void co_ucontext(void)
{
    for (;;)
        swapcontext(&co_uc, &main_uc);
}

static uint64_t run_ucontext(long rounds)
{
    uint64_t t0 = now_ns();
    for (long i = 0; i < rounds; i++)
        swapcontext(&main_uc, &co_uc);
    return now_ns() - t0;
}

/* Prepare co_uc on `stack` (getcontext returns twice: kept out of the
 * caller, whose locals it could clobber). */
static __attribute__((noinline)) void make_ucontext(void *stack, size_t sz)
{
    if (getcontext(&co_uc) != 0)
        die("getcontext", -errno);
    co_uc.uc_stack.ss_sp = stack;
    co_uc.uc_stack.ss_size = sz;
    co_uc.uc_link = NULL;
    makecontext(&co_uc, co_ucontext, 0);
}

static void fig_switch(long n)
{
    if (n <= 0)
        n = 10000000;
    long rounds = n / 2;              /* each round trip is two switches */
    size_t sz = 64 << 10;
    void *s1 = malloc(sz), *s2 = malloc(sz);
    if (!s1 || !s2)
        die("malloc", -ENOMEM);
    pn__ctx_make(&co_ctx, s1, sz, co_pollen, NULL);
    make_ucontext(s2, sz);
    run_pollen(rounds / 10);          /* warm-up */
    run_ucontext(rounds / 10);
    uint64_t a[REPS], b[REPS];
    for (int r = 0; r < REPS; r++) {
        a[r] = run_pollen(rounds);
        b[r] = run_ucontext(rounds);
    }
    print("ctx_switch_pollen", "ns_per_switch", 2 * rounds, 2.0 * (double)rounds, a);
    print("ctx_switch_ucontext", "ns_per_switch", 2 * rounds, 2.0 * (double)rounds, b);
    /* the coroutines stay suspended; their stacks go with the process */
}

/* ---- one task yielding -------------------------------------------------------- */

typedef struct yield_arg {
    long n;
    uint64_t ns;
} yield_arg;

static void fiber_yielder(void *p)
{
    yield_arg *a = p;
    uint64_t t0 = now_ns();
    for (long i = 0; i < a->n; i++)
        if (pn_fiber_yield() != 0)
            die("pn_fiber_yield", -ECANCELED);
    a->ns = now_ns() - t0;
}

typedef struct future_yielder {
    pn_future base;
    int pc;
    long i, n;
    uint64_t t0;
    yield_arg *out;
} future_yielder;

static pn_poll future_yielder_poll(pn_future *f, pn_cx *cx)
{
    future_yielder *y = (future_yielder *)f;
    PN_ASYNC_BEGIN(y->pc);
    y->t0 = now_ns();
    for (y->i = 0; y->i < y->n; y->i++)
        PN_YIELD(y->pc, cx);
    y->out->ns = now_ns() - y->t0;
    PN_ASYNC_END(y->pc);
}

static const pn_future_vtable future_yielder_vt = { future_yielder_poll, NULL, "future_yielder" };

static void join(pn_runtime *rt, pn_join_handle *h)
{
    pn_join_future jf = pn_join(h);
    int err = pn_block_on(rt, PN_FUTURE(&jf));
    if (err || jf.res)
        die("join", err ? err : jf.res);
    pn_join_handle_free(h);
}

/* One spawned task yielding n times: fiber or future; returns the ns. */
static uint64_t yield_once(pn_runtime *rt, bool fiber, long n)
{
    yield_arg a = { .n = n };
    pn_join_handle *h;
    int err;
    if (fiber) {
        err = pn_fiber_spawn(rt, fiber_yielder, &a, NULL, &h);
    } else {
        future_yielder y = { .base = { &future_yielder_vt }, .n = n, .out = &a };
        err = PN_SPAWN(rt, y, &h);
    }
    if (err)
        die("spawn", err);
    join(rt, h);
    return a.ns;
}

static void fig_yield(pn_runtime *rt, long n)
{
    if (n <= 0)
        n = 1000000;
    yield_once(rt, true, n / 10);
    yield_once(rt, false, n / 10);
    uint64_t a[REPS], b[REPS];
    for (int r = 0; r < REPS; r++) {
        a[r] = yield_once(rt, true, n);
        b[r] = yield_once(rt, false, n);
    }
    print("fiber_yield_1", "ns_per_yield", n, (double)n, a);
    print("future_yield_1", "ns_per_yield", n, (double)n, b);
}

/* ---- many tasks: yield_many and spawn ----------------------------------------- */

static void fiber_yield_n(void *p)
{
    long n = *(long *)p;
    for (long i = 0; i < n; i++)
        if (pn_fiber_yield() != 0)
            return;
}


/* The driver task: spawns `tasks` fibers or futures that yield `yields`
 * times each (0: finish at once), then joins them in order. */
typedef struct many {
    pn_future base;
    int pc;
    bool fiber;
    long tasks, yields;
    pn_join_handle **h;
    uint64_t t0, elapsed;
    join_each join;
} many;

static pn_poll many_poll(pn_future *f, pn_cx *cx)
{
    many *m = (many *)f;
    PN_ASYNC_BEGIN(m->pc);
    m->t0 = now_ns();
    for (long i = 0; i < m->tasks; i++) {
        int err;
        if (m->fiber) {
            pn_fiber_opts o = { .arg_size = sizeof(long) };
            err = pn_fiber_spawn(cx->rt, fiber_yield_n, &m->yields, &o, &m->h[i]);
        } else {
            yield_n y = { .base = { &yield_n_vt }, .n = (size_t)m->yields };
            err = pn_spawn_cx(cx, PN_FUTURE(&y), sizeof y, &m->h[i]);
        }
        if (err)
            die("spawn", err);
    }
    m->join = join_each_of(m->h, (size_t)m->tasks);
    PN_AWAIT(m->pc, &m->join, cx);
    m->elapsed = now_ns() - m->t0;
    PN_ASYNC_END(m->pc);
}

static const pn_future_vtable many_vt = { many_poll, NULL, "many" };

static uint64_t many_once(pn_runtime *rt, bool fiber, long tasks, long yields)
{
    many m = { .base = { &many_vt }, .fiber = fiber, .tasks = tasks, .yields = yields };
    pn_join_handle **h = malloc((size_t)tasks * sizeof *h);
    if (!h)
        die("malloc", -ENOMEM);
    m.h = h;
    run_in_task(rt, PN_FUTURE(&m), sizeof m, &m);
    free(h);
    return m.elapsed;
}

static void fig_many(pn_runtime *rt, long tasks, long yields, const char *fa, const char *fb,
                     const char *unit)
{
    many_once(rt, true, tasks, yields);
    many_once(rt, false, tasks, yields);
    uint64_t a[REPS], b[REPS];
    for (int r = 0; r < REPS; r++) {
        a[r] = many_once(rt, true, tasks, yields);
        b[r] = many_once(rt, false, tasks, yields);
    }
    double units = (double)tasks * (double)(yields ? yields : 1);
    print(fa, unit, tasks, units, a);
    print(fb, unit, tasks, units, b);
}

/* ---- main ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_fiber switch|yield|yield_many|spawn [--n N] [--workers W] "
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
    if (!strcmp(fig, "switch")) {
        fig_switch(n);
        return 0;
    }
    pn_runtime *rt = bench_runtime_new(&args);
    if (!strcmp(fig, "yield"))
        fig_yield(rt, n);
    else if (!strcmp(fig, "yield_many"))
        fig_many(rt, 1000, n > 0 ? n : 1000, "fiber_yield_many", "future_yield_many",
                 "ns_per_yield");
    else if (!strcmp(fig, "spawn"))
        fig_many(rt, n > 0 ? n : 10000, 0, "fiber_spawn", "future_spawn", "ns_per_task");
    else
        usage();
    pn_runtime_free(rt);
    return 0;
}
