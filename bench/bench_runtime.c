/*
 * bench_runtime.c - runtime micro-benchmarks: spawning, yielding, waking.
 *
 * Owns no library code.  One figure per process run (bench/run.sh starts a
 * fresh process for each, so the heap of one figure never flatters the
 * next):
 *
 *   spawn_many     a task spawns N trivial tasks (a future that is ready on
 *                  its first poll), keeping every join handle, then awaits
 *                  each handle in turn.  tasks_per_s = N / elapsed.
 *   spawn_many_remote  the same N spawns from a thread that is not one of the
 *                  runtime's (main, outside pn_block_on: pn_spawn(rt, ...)),
 *                  then that thread awaits the handles in one pn_block_on.
 *                  On the multi-thread runtime the workers run the tasks
 *                  while they are being spawned (Tokio's
 *                  spawn_many_remote_idle shape).
 *   yield_many     T tasks each yield Y times (PN_YIELD: wake self, return
 *                  pending); a task spawns them and awaits them all.
 *                  yields_per_s = T*Y / elapsed.
 *   ping_pong      P pairs of tasks; each pair bounces a message R times
 *                  (A sends, B receives and replies, A receives).
 *                  round_trips_per_s = P*R / elapsed.  Each direction is
 *                  a pn_mpsc channel of capacity 1, as the Tokio peer's
 *                  tokio::sync::mpsc::channel(1).
 *   chained_spawn  each task spawns the next (detached) and completes, N
 *                  deep; the last one wakes the driver.  tasks_per_s.
 *   task_memory    N detached tasks that stay pending forever; bytes per
 *                  task = (RSS after every task was polled once - RSS
 *                  before the spawns) / N, and the same from malloc's
 *                  accounting (mallinfo2 uordblks).  future_bytes is the
 *                  size of the future itself, which is included.
 *
 * The timed figures run their workload twice in the same runtime and
 * report the second (warm) run: the first pays for page faults of a fresh
 * heap.  Timing runs inside the driver task, from before the first spawn to
 * after the last join.
 *
 * Output: `<figure> key=value ...`, one line.  Usage:
 *   bench_runtime FIGURE [--n N] [--workers W] [--driver workers|reactor]
 * --workers 0 (the default) is the current-thread runtime; W >= 1 the
 * multi-thread runtime with W workers, whose epoll and timers are driven by
 * the worker about to park (--driver workers, PN_DRIVER_WORKERS, the
 * default here) or by a dedicated reactor thread (--driver reactor,
 * PN_DRIVER_REACTOR_THREAD).
 */
#include <pollen.h>
#include <stdatomic.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* ---- spawn_many ------------------------------------------------------------- */

typedef struct spawn_many {
    pn_future base;
    int pc;
    int iter;
    size_t n;
    pn_join_handle **h;
    uint64_t t0, elapsed;
    join_each join;
} spawn_many;

static pn_poll spawn_many_poll(pn_future *f, pn_cx *cx)
{
    spawn_many *s = (spawn_many *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        s->t0 = now_ns();
        for (size_t i = 0; i < s->n; i++) {
            trivial t = { .base = { &trivial_vt } };
            SPAWN(cx, t, &s->h[i]);
        }
        s->join = join_each_of(s->h, s->n);
        PN_AWAIT(s->pc, &s->join, cx);
        s->elapsed = now_ns() - s->t0;
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable spawn_many_vt = { spawn_many_poll, NULL, "spawn_many" };

/* ---- yield_many --------------------------------------------------------------- */


typedef struct yield_many {
    pn_future base;
    int pc;
    int iter;
    size_t tasks, yields;
    pn_join_handle **h;
    uint64_t t0, elapsed;
    join_each join;
} yield_many;

static pn_poll yield_many_poll(pn_future *f, pn_cx *cx)
{
    yield_many *s = (yield_many *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        s->t0 = now_ns();
        for (size_t i = 0; i < s->tasks; i++) {
            yield_n y = { .base = { &yield_n_vt }, .n = s->yields };
            SPAWN(cx, y, &s->h[i]);
        }
        s->join = join_each_of(s->h, s->tasks);
        PN_AWAIT(s->pc, &s->join, cx);
        s->elapsed = now_ns() - s->t0;
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable yield_many_vt = { yield_many_poll, NULL, "yield_many" };

/* ---- ping_pong ------------------------------------------------------------------ */

/*
 * Each direction is a pn_mpsc channel of capacity 1 (pollen/channel.h), as
 * in the Tokio peer: A sends and waits for B's reply, B receives and
 * replies.
 */
typedef struct player {
    pn_future base;
    int pc;
    bool serves;            /* A: send first; B: receive first */
    size_t i, rounds;
    uint64_t v;
    pn_mpsc_tx *out;
    pn_mpsc_rx *in;
    pn_mpsc_send_future send;
    pn_mpsc_recv_future recv;
} player;

static pn_poll player_poll(pn_future *f, pn_cx *cx)
{
    player *p = (player *)f;
    PN_ASYNC_BEGIN(p->pc);
    for (p->i = 0; p->i < p->rounds; p->i++) {
        if (p->serves) {
            p->v = p->i;
            p->send = pn_mpsc_send(p->out, &p->v);
            PN_AWAIT(p->pc, &p->send, cx);
            p->recv = pn_mpsc_recv(p->in, &p->v);
            PN_AWAIT(p->pc, &p->recv, cx);
        } else {
            p->recv = pn_mpsc_recv(p->in, &p->v);
            PN_AWAIT(p->pc, &p->recv, cx);
            p->send = pn_mpsc_send(p->out, &p->v);
            PN_AWAIT(p->pc, &p->send, cx);
        }
        if (p->send.res || p->recv.res)
            die("ping_pong channel", p->send.res ? p->send.res : p->recv.res);
    }
    PN_ASYNC_END(p->pc);
}

static const pn_future_vtable player_vt = { player_poll, NULL, "player" };

typedef struct ping_pong {
    pn_future base;
    int pc;
    int iter;
    size_t pairs, rounds;
    pn_mpsc_tx **tx;        /* 2 channels per pair */
    pn_mpsc_rx **rx;
    pn_join_handle **h;     /* 2 per pair */
    uint64_t t0, elapsed;
    join_each join;
} ping_pong;

static pn_poll ping_pong_poll(pn_future *f, pn_cx *cx)
{
    ping_pong *s = (ping_pong *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        for (size_t i = 0; i < 2 * s->pairs; i++) {
            int err = pn_mpsc_new(1, sizeof(uint64_t), &s->tx[i], &s->rx[i]);
            if (err)
                die("pn_mpsc_new", err);
        }
        s->t0 = now_ns();
        for (size_t i = 0; i < s->pairs; i++) {
            size_t ab = 2 * i, ba = 2 * i + 1;
            player a = { .base = { &player_vt }, .serves = true, .rounds = s->rounds,
                         .in = s->rx[ba], .out = s->tx[ab] };
            player b = { .base = { &player_vt }, .serves = false, .rounds = s->rounds,
                         .in = s->rx[ab], .out = s->tx[ba] };
            SPAWN(cx, a, &s->h[2 * i]);
            SPAWN(cx, b, &s->h[2 * i + 1]);
        }
        s->join = join_each_of(s->h, 2 * s->pairs);
        PN_AWAIT(s->pc, &s->join, cx);
        s->elapsed = now_ns() - s->t0;
        for (size_t i = 0; i < 2 * s->pairs; i++) {
            pn_mpsc_tx_free(s->tx[i]);
            pn_mpsc_rx_free(s->rx[i]);
        }
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable ping_pong_vt = { ping_pong_poll, NULL, "ping_pong" };

/* ---- chained_spawn ---------------------------------------------------------------- */

typedef struct chain_state {
    _Atomic size_t left;
    pn_waker done;
} chain_state;

typedef struct chain_link {
    pn_future base;
    chain_state *st;
} chain_link;

static const pn_future_vtable chain_link_vt;

static pn_poll chain_link_poll(pn_future *f, pn_cx *cx)
{
    chain_link *l = (chain_link *)f;
    if (--l->st->left == 0) {
        pn_waker_wake(&l->st->done);
    } else {
        chain_link next = { .base = { &chain_link_vt }, .st = l->st };
        SPAWN(cx, next, NULL);
    }
    return PN_READY;
}

static const pn_future_vtable chain_link_vt = { chain_link_poll, NULL, "chain_link" };

typedef struct chained_spawn {
    pn_future base;
    int pc;
    int iter;
    size_t n;
    chain_state st;
    uint64_t t0, elapsed;
} chained_spawn;

static pn_poll chained_spawn_poll(pn_future *f, pn_cx *cx)
{
    chained_spawn *s = (chained_spawn *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->iter = 0; s->iter < 2; s->iter++) {
        s->t0 = now_ns();
        s->st.left = s->n;
        pn_waker_set(&s->st.done, cx->waker);
        {
            chain_link first = { .base = { &chain_link_vt }, .st = &s->st };
            SPAWN(cx, first, NULL);
        }
        /* Wait for the last link (the waker slot is emptied by its wake). */
        PN_AWAIT_POLL(s->pc, s->st.left == 0 ? PN_READY : PN_PENDING);
        s->elapsed = now_ns() - s->t0;
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable chained_spawn_vt = { chained_spawn_poll, NULL, "chained_spawn" };

/* ---- task_memory ------------------------------------------------------------------- */

static _Atomic size_t polled_once;

/* Pending forever; counts its first poll.  (It never stores its waker:
 * nothing will wake it, and the runtime drops it at pn_runtime_free.) */
typedef struct idle_task {
    pn_future base;
    bool seen;
} idle_task;

static pn_poll idle_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    idle_task *t = (idle_task *)f;
    if (!t->seen) {
        t->seen = true;
        polled_once++;
    }
    return PN_PENDING;
}

static const pn_future_vtable idle_task_vt = { idle_task_poll, NULL, "idle_task" };

typedef struct task_memory {
    pn_future base;
    int pc;
    size_t n;
    long rss0, rss1;
    size_t heap0, heap1;
} task_memory;

static pn_poll task_memory_poll(pn_future *f, pn_cx *cx)
{
    task_memory *s = (task_memory *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->rss0 = rss_bytes();
    s->heap0 = mallinfo2().uordblks;
    for (size_t i = 0; i < s->n; i++) {
        idle_task t = { .base = { &idle_task_vt } };
        SPAWN(cx, t, NULL);
    }
    while (polled_once < s->n)
        PN_YIELD(s->pc, cx);
    s->rss1 = rss_bytes();
    s->heap1 = mallinfo2().uordblks;
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable task_memory_vt = { task_memory_poll, NULL, "task_memory" };

/* ---- driver ---------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_runtime spawn_many|spawn_many_remote|yield_many|ping_pong|"
                    "chained_spawn|task_memory [--n N] [--workers W] [--driver workers|reactor]\n");
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

    if (!strcmp(fig, "spawn_many")) {
        if (n <= 0)
            n = 1000000;
        spawn_many s = { .base = { &spawn_many_vt }, .n = (size_t)n };
        s.h = malloc((size_t)n * sizeof *s.h);
        if (!s.h)
            die("malloc", -ENOMEM);
        pn_join_handle **h = s.h;
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("spawn_many n=%ld ns=%llu tasks_per_s=%.0f\n", n,
               (unsigned long long)s.elapsed, (double)n * 1e9 / (double)s.elapsed);
        free(h);
    } else if (!strcmp(fig, "spawn_many_remote")) {
        if (n <= 0)
            n = 1000000;
        pn_join_handle **h = malloc((size_t)n * sizeof *h);
        if (!h)
            die("malloc", -ENOMEM);
        uint64_t elapsed = 0;
        for (int iter = 0; iter < 2; iter++) {
            uint64_t t0 = now_ns();
            for (long i = 0; i < n; i++) {
                trivial t = { .base = { &trivial_vt } };
                int err = PN_SPAWN(rt, t, &h[i]);
                if (err)
                    die("pn_spawn", err);
            }
            join_each j = join_each_of(h, (size_t)n);
            int err = pn_block_on(rt, PN_FUTURE(&j));
            if (err)
                die("pn_block_on", err);
            elapsed = now_ns() - t0;
        }
        printf("spawn_many_remote n=%ld ns=%llu tasks_per_s=%.0f\n", n,
               (unsigned long long)elapsed, (double)n * 1e9 / (double)elapsed);
        free(h);
    } else if (!strcmp(fig, "yield_many")) {
        size_t tasks = 1000, yields = n > 0 ? (size_t)n : 1000;
        yield_many s = { .base = { &yield_many_vt }, .tasks = tasks, .yields = yields };
        s.h = malloc(tasks * sizeof *s.h);
        if (!s.h)
            die("malloc", -ENOMEM);
        pn_join_handle **h = s.h;
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("yield_many tasks=%zu yields=%zu ns=%llu yields_per_s=%.0f\n", tasks, yields,
               (unsigned long long)s.elapsed,
               (double)(tasks * yields) * 1e9 / (double)s.elapsed);
        free(h);
    } else if (!strcmp(fig, "ping_pong")) {
        size_t pairs = 1000, rounds = n > 0 ? (size_t)n : 1000;
        ping_pong s = { .base = { &ping_pong_vt }, .pairs = pairs, .rounds = rounds };
        s.h = malloc(2 * pairs * sizeof *s.h);
        s.tx = malloc(2 * pairs * sizeof *s.tx);
        s.rx = malloc(2 * pairs * sizeof *s.rx);
        if (!s.h || !s.tx || !s.rx)
            die("malloc", -ENOMEM);
        pn_join_handle **h = s.h;
        pn_mpsc_tx **tx = s.tx;
        pn_mpsc_rx **rx = s.rx;
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("ping_pong pairs=%zu rounds=%zu ns=%llu round_trips_per_s=%.0f\n", pairs,
               rounds, (unsigned long long)s.elapsed,
               (double)(pairs * rounds) * 1e9 / (double)s.elapsed);
        free(h);
        free(tx);
        free(rx);
    } else if (!strcmp(fig, "chained_spawn")) {
        if (n <= 0)
            n = 1000000;
        chained_spawn s = { .base = { &chained_spawn_vt }, .n = (size_t)n };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("chained_spawn n=%ld ns=%llu tasks_per_s=%.0f\n", n,
               (unsigned long long)s.elapsed, (double)n * 1e9 / (double)s.elapsed);
    } else if (!strcmp(fig, "task_memory")) {
        if (n <= 0)
            n = 100000;
        task_memory s = { .base = { &task_memory_vt }, .n = (size_t)n };
        run_in_task(rt, PN_FUTURE(&s), sizeof s, &s);
        printf("task_memory n=%ld future_bytes=%zu rss_bytes_per_task=%.1f "
               "heap_bytes_per_task=%.1f\n", n, sizeof(idle_task),
               (double)(s.rss1 - s.rss0) / (double)n,
               (double)(s.heap1 - s.heap0) / (double)n);
    } else {
        usage();
    }
    pn_runtime_free(rt);
    return 0;
}
