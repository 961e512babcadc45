/*
 * uv_timers.c - libuv peer of bench/bench_timers.c (no tasks: timers only).
 *
 *   timers_many   N (1,000,000) uv_timer_t, each started with a timeout
 *                 uniform in 1-1000 ms (same xorshift and seed as pollen);
 *                 wall time from the first uv_timer_start to the last
 *                 callback, process CPU time (getrusage), peak RSS.
 *   timer_memory  N (100,000) timers of 60-61 s started: RSS growth per
 *                 timer (the uv_timer_t, allocated by the program, and the
 *                 loop's heap node inside it).
 *   timer_cancel  1,000 timers, K = N / 1,000 rounds: each round stops and
 *                 restarts every timer with a 60 s timeout (uv_timer_stop +
 *                 uv_timer_start on a 1,000-node heap, never firing).
 *                 arm_cancel_ns = elapsed / (1,000 * K), second (warm) run.
 *                 No task, no future, no wake: the bare cost of the heap.
 * libuv's timeouts are whole milliseconds of the loop's cached clock.
 * Usage: uv_timers FIGURE [--n N]
 */
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void rusage_now(uint64_t *cpu, long *maxrss)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
    *maxrss = ru.ru_maxrss;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
        exit(1);
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t left;

static void fire(uv_timer_t *t)
{
    (void)t;
    left--;
}

static void never(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "uv_timers: a 60 s timer fired\n");
    exit(1);
}

static int usage(void)
{
    fprintf(stderr, "usage: uv_timers timers_many|timer_memory|timer_cancel [--n N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *fig = argv[1];
    long n = -1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = atol(argv[++i]);
        else
            return usage();
    }
    uv_loop_t *loop = uv_default_loop();
    uint64_t seed = 88172645463325252ull;
    if (!strcmp(fig, "timers_many") || !strcmp(fig, "timer_memory")) {
        int mem = !strcmp(fig, "timer_memory");
        if (n <= 0)
            n = mem ? 100000 : 1000000;
        long rss0 = rss_bytes();
        uv_timer_t *t = malloc((size_t)n * sizeof *t);
        if (!t)
            return 1;
        uint64_t t0 = now_ns(), c0, c1;
        long maxrss;
        rusage_now(&c0, &maxrss);
        uv_update_time(loop);
        for (long i = 0; i < n; i++) {
            uint64_t ms = 1 + xorshift(&seed) % 1000 + (mem ? 60000 : 0);
            uv_timer_init(loop, &t[i]);
            uv_timer_start(&t[i], mem ? never : fire, ms, 0);
        }
        if (mem) {
            printf("timer_memory n=%ld bytes_per_timer=%.1f\n", n,
                   (double)(rss_bytes() - rss0) / (double)n);
            return 0;
        }
        left = (size_t)n;
        while (left > 0)
            uv_run(loop, UV_RUN_ONCE);
        uint64_t wall = now_ns() - t0;
        rusage_now(&c1, &maxrss);
        printf("timers_many n=%ld total_ms=%.1f cpu_ms=%.1f peak_rss_mb=%.1f\n", n,
               (double)wall / 1e6, (double)(c1 - c0) / 1e6, (double)maxrss / 1024.0);
        return 0;
    }
    if (!strcmp(fig, "timer_cancel")) {
        if (n <= 0)
            n = 1000000;
        size_t timers = 1000, k = ((size_t)n + timers - 1) / timers;
        uv_timer_t *t = calloc(timers, sizeof *t);
        for (size_t i = 0; i < timers; i++)
            uv_timer_init(loop, &t[i]);
        uint64_t elapsed = 0;
        for (int iter = 0; iter < 2; iter++) {
            uint64_t t0 = now_ns();
            for (size_t r = 0; r < k; r++) {
                for (size_t i = 0; i < timers; i++) {
                    uv_timer_stop(&t[i]);
                    uv_timer_start(&t[i], never, 60000, 0);
                }
            }
            elapsed = now_ns() - t0;
        }
        double ops = (double)(timers * k);
        printf("timer_cancel n=%.0f arm_cancel_ns=%.1f\n", ops, (double)elapsed / ops);
        return 0;
    }
    return usage();
}
