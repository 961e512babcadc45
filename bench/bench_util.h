/*
 * bench_util.h - the helpers every bench program had its own copy of:
 * dying with a message, the monotonic clock, the resident set, spawning
 * from a task, awaiting an array of join handles, running a future as a
 * task from pn_block_on, and the runtime the command line asks for.
 *
 * Header-only (each bench is one .c file): static inline functions and one
 * static const vtable.  A program sets bench_prog (its name in die's
 * messages) first thing in main: bench_prog = argv[0];
 */
#ifndef PN_BENCH_UTIL_H
#define PN_BENCH_UTIL_H

#include <pollen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_args.h"

/* The program's name in die's messages (main sets it from argv[0]). */
static const char *bench_prog = "bench";

/* Print "<prog>: <what>: <error>" and exit 1.  err is a negative errno. */
static inline void die(const char *what, int err)
{
    const char *slash = strrchr(bench_prog, '/');
    fprintf(stderr, "%s: %s: %s\n", slash ? slash + 1 : bench_prog, what, pn_strerror(err));
    exit(1);
}

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The process's resident set now, in bytes (/proc/self/statm). */
static inline long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2)
        die("read /proc/self/statm", -EIO);
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

/* Spawn `fut` (a variable) on the runtime polling cx, or die. */
#define SPAWN(cx, fut, out)                                                 \
    do {                                                                    \
        int e_ = pn_spawn_cx((cx), PN_FUTURE(&(fut)), sizeof(fut), (out));  \
        if (e_)                                                             \
            die("pn_spawn", e_);                                            \
    } while (0)

/* ---- a trivial task: a future that is ready on its first poll ---------- */

typedef struct trivial {
    pn_future base;
} trivial;

static inline pn_poll trivial_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    (void)cx;
    return PN_READY;
}

static const pn_future_vtable trivial_vt = { trivial_poll, NULL, "trivial" };

/* A future that yields n times (PN_YIELD), then is ready: the stackless
 * side of every yield figure. */
typedef struct yield_n {
    pn_future base;
    int pc;
    size_t i, n;
} yield_n;

static inline pn_poll yield_n_poll(pn_future *f, pn_cx *cx)
{
    yield_n *y = (yield_n *)f;
    PN_ASYNC_BEGIN(y->pc);
    for (y->i = 0; y->i < y->n; y->i++)
        PN_YIELD(y->pc, cx);
    PN_ASYNC_END(y->pc);
}

static const pn_future_vtable yield_n_vt = { yield_n_poll, NULL, "yield_n" };

/* ---- awaiting an array of join handles --------------------------------- */

/* Awaits h[0..n) in order and frees them; a task that did not complete
 * (join status != 0) is fatal. */
typedef struct join_each {
    pn_future base;
    int pc;
    pn_join_handle **h;
    size_t i, n;
    pn_join_future jf;
} join_each;

static inline pn_poll join_each_poll(pn_future *f, pn_cx *cx)
{
    join_each *j = (join_each *)f;
    PN_ASYNC_BEGIN(j->pc);
    for (j->i = 0; j->i < j->n; j->i++) {
        j->jf = pn_join(j->h[j->i]);
        PN_AWAIT(j->pc, &j->jf, cx);
        if (j->jf.res != 0)
            die("join", j->jf.res);
        pn_join_handle_free(j->h[j->i]);
    }
    PN_ASYNC_END(j->pc);
}

static const pn_future_vtable join_each_vt = { join_each_poll, NULL, "join_each" };

static inline join_each join_each_of(pn_join_handle **h, size_t n)
{
    return (join_each){ .base = { &join_each_vt }, .h = h, .n = n };
}

/* ---- running ------------------------------------------------------------ */

/* Run `fut` as a spawned task (so its spawns come from inside a task),
 * wait for it from pn_block_on, and copy the finished future (its outputs)
 * back to `out`. */
static inline void run_in_task(pn_runtime *rt, pn_future *fut, size_t size, void *out)
{
    pn_join_handle *h;
    int err = pn_spawn(rt, fut, size, &h);
    if (err)
        die("pn_spawn", err);
    pn_join_future jf = pn_join(h);
    err = pn_block_on(rt, PN_FUTURE(&jf));
    if (err)
        die("pn_block_on", err);
    if (jf.res)
        die("driver task", jf.res);
    memcpy(out, jf.output, size);
    pn_join_handle_free(h);
}

/* The runtime the command line asks for (bench_args.h), or die. */
static inline pn_runtime *bench_runtime_new(const bench_args *args)
{
    pn_runtime_config cfg;
    bench_args_config(args, &cfg);
    pn_runtime *rt;
    int err = pn_runtime_new(&cfg, &rt);
    if (err)
        die("pn_runtime_new", err);
    return rt;
}

#endif
