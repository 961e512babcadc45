/*
 * bench_sleep_lateness.c - how late do sleeps complete?
 *
 * Owns no library code.  Lateness = the instant a sleep's awaiting code runs
 * again (pn_now() right after the await) minus the sleep's deadline; it is
 * never negative (sleeps never complete early).  Figures, one line each:
 *
 *   sleep_lateness_5ms        1,000 sequential 5 ms sleeps in one future
 *                             driven by pn_block_on
 *   sleep_lateness_1ms        the same with 1 ms sleeps
 *   sleep_lateness_10ms       count / 3 sequential 10 ms sleeps (333)
 *   sleep_lateness_concurrent 1,000 spawned tasks, deadlines uniform in
 *                             1-50 ms, repeated ROUNDS times
 *
 * Output: `<name> n=.. p50_us=.. p99_us=.. max_us=..` (microseconds, 1
 * decimal).  Usage: bench_sleep_lateness [rounds] [count] [--workers W]
 * (W >= 1: multi-thread runtime, W workers, a worker drives timers; the
 * sequential sleeps then run in pn_block_on's future on the main thread
 * and are woken from a worker; the concurrent sleepers run on any worker).
 * Defaults 3 and
 * 1000; count is the number of sequential sleeps, bench/run.sh lowers it
 * in QUICK mode).  Peers: bench/peers/uv_sleep_lateness.c and
 * bench/peers/tokio/src/bin/sleep_lateness.rs, same figures and format.
 */
#include <pollen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    size_t i50 = n / 2, i99 = n * 99 / 100;
    if (i99 >= n)
        i99 = n - 1;
    printf("%s n=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f\n", name, n,
           (double)v[i50] / 1e3, (double)v[i99] / 1e3, (double)v[n - 1] / 1e3);
    fflush(stdout);
}

/* ---- sequential --------------------------------------------------------- */

typedef struct seq {
    pn_future base;
    int pc;
    size_t i, n;
    uint64_t dur;
    pn_sleep_future nap;
    uint64_t *late;
} seq;

static pn_poll seq_poll(pn_future *f, pn_cx *cx)
{
    seq *s = (seq *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->i = 0; s->i < s->n; s->i++) {
        s->nap = pn_sleep(s->dur);
        PN_AWAIT(s->pc, &s->nap, cx);
        s->late[s->i] = pn_now() - pn_sleep_deadline(&s->nap);
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable seq_vt = { seq_poll, NULL, "seq" };

static void run_seq(pn_runtime *rt, const char *name, uint64_t dur, size_t n)
{
    uint64_t *late = calloc(n, sizeof *late);
    if (!late)
        abort();
    seq s = { .base = { &seq_vt }, .n = n, .dur = dur, .late = late };
    int err = pn_block_on(rt, PN_FUTURE(&s));
    if (err) {
        fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
        exit(1);
    }
    report(name, late, n);
    free(late);
}

/* ---- concurrent ---------------------------------------------------------- */

/* The sleepers of one round may run on any worker: they count down
 * `left` and the last one notifies the spawner. */
typedef struct round_state {
    _Atomic size_t left;
    pn_notify done;
} round_state;

typedef struct sleeper {
    pn_future base;
    int pc;
    pn_sleep_future nap;
    pn_instant deadline;
    uint64_t *late;
    round_state *st;
} sleeper;

static pn_poll sleeper_poll(pn_future *f, pn_cx *cx)
{
    sleeper *s = (sleeper *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->nap = pn_sleep_until(s->deadline);
    PN_AWAIT(s->pc, &s->nap, cx);
    *s->late = pn_now() - s->deadline;
    if (atomic_fetch_sub(&s->st->left, 1) == 1)
        pn_notify_one(&s->st->done);
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable sleeper_vt = { sleeper_poll, NULL, "sleeper" };

/* Spawns the sleepers on first poll, then waits for the last one. */
typedef struct spawner {
    pn_future base;
    int pc;
    size_t n;
    uint64_t *late;
    uint64_t seed;
    round_state *st;
    pn_notified_future wait;
} spawner;

static uint64_t xr(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static pn_poll spawner_poll(pn_future *f, pn_cx *cx)
{
    spawner *sp = (spawner *)f;
    PN_ASYNC_BEGIN(sp->pc);
    atomic_store(&sp->st->left, sp->n);
    {
        pn_instant base = pn_now();
        for (size_t i = 0; i < sp->n; i++) {
            sleeper s = { .base = { &sleeper_vt },
                          .deadline = base + PN_MS(1) + xr(&sp->seed) % PN_MS(49),
                          .late = &sp->late[i], .st = sp->st };
            int err = PN_SPAWN(cx->rt, s, NULL);
            if (err) {
                fprintf(stderr, "pn_spawn: %s\n", pn_strerror(err));
                exit(1);
            }
        }
    }
    /* the last sleeper's pn_notify_one stores a permit if it comes first */
    sp->wait = pn_notify_notified(&sp->st->done);
    PN_AWAIT(sp->pc, &sp->wait, cx);
    PN_ASYNC_END(sp->pc);
}

static const pn_future_vtable spawner_vt = { spawner_poll, NULL, "spawner" };

int main(int argc, char **argv)
{
    long workers = 0;
    if (argc > 2 && !strcmp(argv[argc - 2], "--workers")) {
        workers = atol(argv[argc - 1]);
        argc -= 2;
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    if (rounds < 1)
        rounds = 1;
    long count = argc > 2 ? atol(argv[2]) : 1000;
    if (count < 1)
        count = 1;
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
        cfg.driver = PN_DRIVER_WORKERS;
    }
    pn_runtime *rt;
    int err = pn_runtime_new(&cfg, &rt);
    if (err) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        return 1;
    }

    run_seq(rt, "sleep_lateness_5ms", PN_MS(5), (size_t)count);
    run_seq(rt, "sleep_lateness_1ms", PN_MS(1), (size_t)count);
    run_seq(rt, "sleep_lateness_10ms", PN_MS(10), (size_t)(count >= 3 ? count / 3 : 1));

    enum { N = 1000 };
    size_t total = (size_t)rounds * N;
    uint64_t *late = calloc(total, sizeof *late);
    if (!late)
        abort();
    round_state st;
    pn_notify_init(&st.done);
    for (int r = 0; r < rounds; r++) {
        /* The spawner runs as a task, as the Tokio peer's spawns do. */
        spawner sp = { .base = { &spawner_vt }, .n = N, .late = late + (size_t)r * N,
                       .seed = 0x9e3779b97f4a7c15ull + (uint64_t)r, .st = &st };
        pn_join_handle *h;
        err = PN_SPAWN(rt, sp, &h);
        if (err) {
            fprintf(stderr, "pn_spawn: %s\n", pn_strerror(err));
            return 1;
        }
        pn_join_future jf = pn_join(h);
        err = pn_block_on(rt, PN_FUTURE(&jf));
        if (err || jf.res) {
            fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err ? err : jf.res));
            return 1;
        }
        pn_join_handle_free(h);
    }
    report("sleep_lateness_concurrent", late, total);
    free(late);
    pn_runtime_free(rt);
    pn_notify_destroy(&st.done);
    return 0;
}
