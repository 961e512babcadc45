/*
 * uv_sleep_lateness.c - libuv peer of bench/bench_sleep_lateness.c.
 *
 * Same figures and output format (`<name> n=.. p50_us=.. p99_us=..
 * max_us=..`):
 *   sleep_lateness_5ms        1,000 sequential 5 ms one-shot uv_timers: each
 *                             callback records its lateness and starts the
 *                             next timer
 *   sleep_lateness_1ms        the same with 1 ms
 *   sleep_lateness_10ms       count / 3 sequential 10 ms timers (333)
 *   sleep_lateness_concurrent 1,000 uv_timers, deadlines uniform in 1-50 ms,
 *                             repeated ROUNDS times
 *
 * Deadline = uv_hrtime() when the timer is started + the duration;
 * lateness = uv_hrtime() at the start of the callback - deadline.  libuv's
 * timers count in whole milliseconds of a cached loop clock, so the program
 * calls uv_update_time() before each uv_timer_start (the documented way to
 * start a timer from a fresh clock).  Even so the loop clock is truncated to
 * the millisecond, so a libuv timer can fire up to 1 ms before the
 * nanosecond deadline: such a sample is negative.  The figures below report
 * signed lateness (a negative p50 means early), plus `early=` the count of
 * early samples.  Concurrent deadlines are nanosecond instants; the timeout
 * passed to libuv is rounded up to the next millisecond.
 *
 * Usage: uv_sleep_lateness [rounds] [count]  (defaults 3 and 1000)
 */
#include <uv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, int64_t *v, size_t n)
{
    size_t early = 0;
    for (size_t i = 0; i < n; i++)
        early += v[i] < 0;
    qsort(v, n, sizeof *v, cmp_i64);
    size_t i50 = n / 2, i99 = n * 99 / 100;
    if (i99 >= n)
        i99 = n - 1;
    printf("%s n=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f early=%zu\n", name, n,
           (double)v[i50] / 1e3, (double)v[i99] / 1e3, (double)v[n - 1] / 1e3, early);
    fflush(stdout);
}

/* ---- sequential --------------------------------------------------------- */

typedef struct seq {
    uv_timer_t t;
    size_t i, n;
    uint64_t dur_ms;
    uint64_t deadline;
    int64_t *late;
} seq;

static void seq_cb(uv_timer_t *t)
{
    seq *s = (seq *)t;
    s->late[s->i++] = (int64_t)(uv_hrtime() - s->deadline);
    if (s->i < s->n) {
        uv_update_time(t->loop);
        s->deadline = uv_hrtime() + s->dur_ms * 1000000ull;
        uv_timer_start(t, seq_cb, s->dur_ms, 0);
    }
}

static void run_seq(uv_loop_t *loop, const char *name, uint64_t dur_ms, size_t n)
{
    seq s = { .n = n, .dur_ms = dur_ms };
    s.late = calloc(n, sizeof *s.late);
    if (!s.late)
        abort();
    uv_timer_init(loop, &s.t);
    uv_update_time(loop);
    s.deadline = uv_hrtime() + dur_ms * 1000000ull;
    uv_timer_start(&s.t, seq_cb, dur_ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&s.t, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    report(name, s.late, n);
    free(s.late);
}

/* ---- concurrent ---------------------------------------------------------- */

typedef struct sleeper {
    uv_timer_t t;
    uint64_t deadline;
    int64_t *late;
} sleeper;

static void sleeper_cb(uv_timer_t *t)
{
    sleeper *s = (sleeper *)t;
    *s->late = (int64_t)(uv_hrtime() - s->deadline);
    uv_close((uv_handle_t *)t, NULL);
}

static uint64_t xr(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    if (rounds < 1)
        rounds = 1;
    long count = argc > 2 ? atol(argv[2]) : 1000;
    if (count < 1)
        count = 1;
    uv_loop_t *loop = uv_default_loop();

    run_seq(loop, "sleep_lateness_5ms", 5, (size_t)count);
    run_seq(loop, "sleep_lateness_1ms", 1, (size_t)count);
    run_seq(loop, "sleep_lateness_10ms", 10, (size_t)(count >= 3 ? count / 3 : 1));

    enum { N = 1000 };
    size_t total = (size_t)rounds * N;
    int64_t *late = calloc(total, sizeof *late);
    sleeper *sl = calloc(N, sizeof *sl);
    if (!late || !sl)
        abort();
    for (int r = 0; r < rounds; r++) {
        uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)r;
        uv_update_time(loop);
        uint64_t base = uv_hrtime();
        for (size_t i = 0; i < N; i++) {
            sleeper *s = &sl[i];
            s->deadline = base + 1000000ull + xr(&seed) % 49000000ull;
            s->late = &late[(size_t)r * N + i];
            uv_timer_init(loop, &s->t);
            uint64_t now = uv_hrtime();
            uint64_t ms = s->deadline > now ? (s->deadline - now + 999999) / 1000000 : 0;
            uv_timer_start(&s->t, sleeper_cb, ms, 0);
        }
        uv_run(loop, UV_RUN_DEFAULT);
    }
    report("sleep_lateness_concurrent", late, total);
    free(late);
    free(sl);
    uv_loop_close(loop);
    return 0;
}
