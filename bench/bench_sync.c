/*
 * bench_sync.c - the coordination toolkit's figures (pollen/sync.h), in
 * the shapes of bench/peers/tokio/src/bin/sync.rs, which runs the same
 * workloads on tokio::sync.
 *
 * Owns no library code.  One figure per process run:
 *
 *   mpsc_throughput   4 producer tasks send N/4 uint64_t each into one
 *                     bounded(1024) pn_mpsc; the driver task receives them
 *                     all (one pn_mpsc_recv per value, as Tokio's recv).
 *                     msgs_per_s = N / elapsed
 *   mutex_contention  100 tasks x N pn_mutex_lock / pn_mutex_unlock of one
 *                     mutex, each incrementing the guarded counter (checked
 *                     at the end).  locks_per_s = 100 * N / elapsed
 *   semaphore_pair    one task, N x (acquire 1, release) on an uncontended
 *                     pn_semaphore.  ns_per_pair
 *   channel_memory    N idle bounded(16) channels of uint64_t, both ends
 *                     kept: RSS bytes per channel
 *   waiter_memory     N tasks waiting in pn_semaphore_acquire on a
 *                     semaphore with no permits: RSS bytes per waiting task
 *                     (the task and its future included)
 *
 * Timed figures run twice in the same runtime and report the second run.
 * Usage: bench_sync FIGURE [--n N] [--workers W] [--driver workers|reactor]
 */
#include <pollen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* ---- mpsc_throughput ------------------------------------------------------- */

typedef struct producer {
    pn_future base;
    int pc;
    pn_mpsc_tx *tx;
    uint64_t first, i, n, v;
    pn_mpsc_send_future send;
} producer;

static pn_poll producer_poll(pn_future *f, pn_cx *cx)
{
    producer *p = (producer *)f;
    PN_ASYNC_BEGIN(p->pc);
    for (p->i = 0; p->i < p->n; p->i++) {
        p->v = p->first + p->i;
        p->send = pn_mpsc_send(p->tx, &p->v);
        PN_AWAIT(p->pc, &p->send, cx);
        if (p->send.res)
            die("pn_mpsc_send", p->send.res);
    }
    pn_mpsc_tx_free(p->tx);
    PN_ASYNC_END(p->pc);
}

static const pn_future_vtable producer_vt = { producer_poll, NULL, "producer" };

typedef struct mpsc_throughput {
    pn_future base;
    int pc, iter;
    uint64_t n, got, sum, v;
    pn_mpsc_rx *rx;
    pn_mpsc_recv_future recv;
    uint64_t t0, elapsed;
} mpsc_throughput;

static pn_poll mpsc_throughput_poll(pn_future *f, pn_cx *cx)
{
    mpsc_throughput *s = (mpsc_throughput *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        s->t0 = now_ns();
        {   /* locals end before the await: they would not survive it */
            pn_mpsc_tx *tx;
            int err = pn_mpsc_new(1024, sizeof(uint64_t), &tx, &s->rx);
            if (err)
                die("pn_mpsc_new", err);
            uint64_t per = s->n / 4;
            for (int p = 0; p < 4; p++) {
                producer pr = { .base = { &producer_vt }, .tx = p ? pn_mpsc_tx_clone(tx) : tx,
                                .first = (uint64_t)p * per, .n = per };
                SPAWN(cx, pr, NULL);
            }
        }
        s->got = s->sum = 0;
        for (;;) {
            s->recv = pn_mpsc_recv(s->rx, &s->v);
            PN_AWAIT(s->pc, &s->recv, cx);
            if (s->recv.res == -EPIPE)
                break;
            if (s->recv.res)
                die("pn_mpsc_recv", s->recv.res);
            s->got++;
            s->sum += s->v;
        }
        if (s->got != s->n || s->sum != s->n * (s->n - 1) / 2)
            die("mpsc_throughput: lost or duplicated values", -EIO);
        pn_mpsc_rx_free(s->rx);
        s->elapsed = now_ns() - s->t0;
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable mpsc_throughput_vt = { mpsc_throughput_poll, NULL, "mpsc_throughput" };

/* ---- mutex_contention ---------------------------------------------------------- */

typedef struct locker {
    pn_future base;
    int pc;
    pn_mutex *m;
    size_t *counter;
    size_t i, n;
    pn_mutex_guard g;
} locker;

static pn_poll locker_poll(pn_future *f, pn_cx *cx)
{
    locker *l = (locker *)f;
    PN_ASYNC_BEGIN(l->pc);
    for (l->i = 0; l->i < l->n; l->i++) {
        l->g = pn_mutex_lock(l->m);
        PN_AWAIT(l->pc, &l->g, cx);
        (*l->counter)++;
        pn_mutex_unlock(&l->g);
    }
    PN_ASYNC_END(l->pc);
}

static const pn_future_vtable locker_vt = { locker_poll, NULL, "locker" };

#define LOCK_TASKS 100

typedef struct mutex_contention {
    pn_future base;
    int pc, iter;
    size_t n, counter;
    pn_mutex m;
    pn_join_handle *h[LOCK_TASKS];
    join_each join;
    uint64_t t0, elapsed;
} mutex_contention;

static pn_poll mutex_contention_poll(pn_future *f, pn_cx *cx)
{
    mutex_contention *s = (mutex_contention *)f;
    PN_ASYNC_BEGIN(s->pc);
    pn_mutex_init(&s->m);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        s->counter = 0;
        s->t0 = now_ns();
        for (size_t i = 0; i < LOCK_TASKS; i++) {
            locker l = { .base = { &locker_vt }, .m = &s->m, .counter = &s->counter, .n = s->n };
            SPAWN(cx, l, &s->h[i]);
        }
        s->join = join_each_of(s->h, LOCK_TASKS);
        PN_AWAIT(s->pc, &s->join, cx);
        s->elapsed = now_ns() - s->t0;
        if (s->counter != LOCK_TASKS * s->n)
            die("mutex_contention: the counter is wrong", -EIO);
    }
    pn_mutex_destroy(&s->m);
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable mutex_contention_vt = { mutex_contention_poll, NULL,
                                                      "mutex_contention" };

/* ---- semaphore_pair --------------------------------------------------------------- */

typedef struct semaphore_pair {
    pn_future base;
    int pc, iter;
    size_t i, n;
    pn_semaphore s;
    pn_semaphore_permit p;
    uint64_t t0, elapsed;
} semaphore_pair;

static pn_poll semaphore_pair_poll(pn_future *f, pn_cx *cx)
{
    semaphore_pair *s = (semaphore_pair *)f;
    PN_ASYNC_BEGIN(s->pc);
    pn_semaphore_init(&s->s, 1);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        s->t0 = now_ns();
        for (s->i = 0; s->i < s->n; s->i++) {
            s->p = pn_semaphore_acquire(&s->s, 1);
            PN_AWAIT(s->pc, &s->p, cx);
            pn_semaphore_release(&s->p);
        }
        s->elapsed = now_ns() - s->t0;
    }
    pn_semaphore_destroy(&s->s);
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable semaphore_pair_vt = { semaphore_pair_poll, NULL, "semaphore_pair" };

/* ---- waiter_memory ------------------------------------------------------------------ */

static _Atomic size_t waiting;

typedef struct waiter_task {
    pn_future base;
    pn_semaphore_permit p;
    bool seen;
} waiter_task;

static pn_poll waiter_task_poll(pn_future *f, pn_cx *cx)
{
    waiter_task *t = (waiter_task *)f;
    if (!t->seen) {
        t->seen = true;
        waiting++;
    }
    return pn_future_poll(PN_FUTURE(&t->p), cx);
}

static void waiter_task_drop(pn_future *f) { pn_future_drop(PN_FUTURE(&((waiter_task *)f)->p)); }

static const pn_future_vtable waiter_task_vt = { waiter_task_poll, waiter_task_drop, "waiter" };

typedef struct waiter_memory {
    pn_future base;
    int pc;
    size_t n;
    pn_semaphore *sem;
    long rss0, rss1;
} waiter_memory;

static pn_poll waiter_memory_poll(pn_future *f, pn_cx *cx)
{
    waiter_memory *s = (waiter_memory *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->rss0 = rss_bytes();
    for (size_t i = 0; i < s->n; i++) {
        waiter_task t = { .base = { &waiter_task_vt }, .p = pn_semaphore_acquire(s->sem, 1) };
        SPAWN(cx, t, NULL);
    }
    while (waiting < s->n)
        PN_YIELD(s->pc, cx);
    PN_YIELD(s->pc, cx);
    s->rss1 = rss_bytes();
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable waiter_memory_vt = { waiter_memory_poll, NULL, "waiter_memory" };

/* ---- driver ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_sync mpsc_throughput|mutex_contention|semaphore_pair|"
                    "channel_memory|waiter_memory [--n N] [--workers W] "
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
    int err;
    pn_semaphore sem;             /* waiter_memory: outlives the runtime's tasks */
    pn_semaphore_init(&sem, 0);

    if (!strcmp(fig, "mpsc_throughput")) {
        if (n <= 0)
            n = 4000000;
        mpsc_throughput s = { .base = { &mpsc_throughput_vt }, .n = (uint64_t)n / 4 * 4 };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("mpsc_throughput n=%llu ns=%llu msgs_per_s=%.0f\n", (unsigned long long)s.n,
               (unsigned long long)s.elapsed, (double)s.n * 1e9 / (double)s.elapsed);
    } else if (!strcmp(fig, "mutex_contention")) {
        if (n <= 0)
            n = 1000;
        mutex_contention s = { .base = { &mutex_contention_vt }, .n = (size_t)n };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("mutex_contention tasks=%d locks=%ld ns=%llu locks_per_s=%.0f\n", LOCK_TASKS, n,
               (unsigned long long)s.elapsed,
               (double)LOCK_TASKS * (double)n * 1e9 / (double)s.elapsed);
    } else if (!strcmp(fig, "semaphore_pair")) {
        if (n <= 0)
            n = 10000000;
        semaphore_pair s = { .base = { &semaphore_pair_vt }, .n = (size_t)n };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("semaphore_pair n=%ld ns=%llu ns_per_pair=%.2f\n", n,
               (unsigned long long)s.elapsed, (double)s.elapsed / (double)n);
    } else if (!strcmp(fig, "channel_memory")) {
        if (n <= 0)
            n = 100000;
        pn_mpsc_tx **tx = malloc((size_t)n * sizeof *tx);
        pn_mpsc_rx **rx = malloc((size_t)n * sizeof *rx);
        if (!tx || !rx)
            die("malloc", -ENOMEM);
        memset(tx, 0, (size_t)n * sizeof *tx);   /* resident before the first reading */
        memset(rx, 0, (size_t)n * sizeof *rx);
        long rss0 = rss_bytes();
        for (long i = 0; i < n; i++)
            if ((err = pn_mpsc_new(16, sizeof(uint64_t), &tx[i], &rx[i])))
                die("pn_mpsc_new", err);
        long rss1 = rss_bytes();
        printf("channel_memory n=%ld bytes_per_channel=%.1f\n", n,
               (double)(rss1 - rss0) / (double)n);
        for (long i = 0; i < n; i++) {
            pn_mpsc_tx_free(tx[i]);
            pn_mpsc_rx_free(rx[i]);
        }
        free(tx);
        free(rx);
    } else if (!strcmp(fig, "waiter_memory")) {
        if (n <= 0)
            n = 100000;
        waiter_memory s = { .base = { &waiter_memory_vt }, .n = (size_t)n, .sem = &sem };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("waiter_memory n=%ld future_bytes=%zu bytes_per_waiter=%.1f\n", n,
               sizeof(waiter_task), (double)(s.rss1 - s.rss0) / (double)n);
    } else {
        usage();
    }
    pn_runtime_free(rt);
    pn_semaphore_destroy(&sem);
    return 0;
}
