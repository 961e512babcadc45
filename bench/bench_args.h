/*
 * bench_args.h - the command line shared by bench_runtime, bench_timers,
 * bench_sync and bench_sched:
 *
 *     <figure> [--n N] [--workers W|cpus] [--driver workers|reactor]
 *
 * and the runtime it asks for: W = 0 (default) the current-thread runtime,
 * W >= 1 the multi-thread runtime with W workers whose epoll and timers are
 * driven as --driver says; `cpus`: as many workers as the CPUs this
 * process may run on.  Header-only: each bench is one .c file.
 */
#ifndef PN_BENCH_ARGS_H
#define PN_BENCH_ARGS_H

#include <pollen.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench_args {
    const char *fig;          /* the figure to measure */
    long n;                   /* --n, -1 when not given: the figure's default */
    long workers;             /* --workers */
    pn_driver_mode driver;    /* --driver */
} bench_args;

/* The CPUs this process may run on (its affinity mask), at least 1. */
static inline long bench_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* Parse argv into *a.  false when the command line is malformed. */
static inline bool bench_args_parse(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){ .n = -1, .driver = PN_DRIVER_WORKERS };
    if (argc < 2)
        return false;
    a->fig = argv[1];
    for (int i = 2; i < argc; i++) {
        if (i + 1 == argc)
            return false;                 /* every option takes a value */
        const char *opt = argv[i], *val = argv[++i];
        if (!strcmp(opt, "--n"))
            a->n = atol(val);
        else if (!strcmp(opt, "--workers"))
            a->workers = !strcmp(val, "cpus") ? bench_cpus() : atol(val);
        else if (!strcmp(opt, "--driver") && !strcmp(val, "workers"))
            a->driver = PN_DRIVER_WORKERS;
        else if (!strcmp(opt, "--driver") && !strcmp(val, "reactor"))
            a->driver = PN_DRIVER_REACTOR_THREAD;
        else
            return false;
    }
    return true;
}

/* The runtime configuration the arguments ask for. */
static inline void bench_args_config(const bench_args *a, pn_runtime_config *cfg)
{
    pn_runtime_config_init(cfg);
    if (a->workers > 0) {
        cfg->flavor = PN_RUNTIME_MULTI_THREAD;
        cfg->workers = (unsigned)a->workers;
        cfg->driver = a->driver;
    }
}

#endif
