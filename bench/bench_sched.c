/*
 * bench_sched.c - the scheduler against Tokio's own benchmark shapes: the
 * figures of Tokio's benches/rt_multi_threaded.rs (and, at --workers 0, of
 * benches/rt_current_thread.rs), plus spawn_counter, a
 * shared-counter spawn_many, each written as its Tokio peer
 * bench/peers/tokio/src/bin/sched.rs writes it: pn_block_on where it calls
 * block_on, a spawned task where it spawns, the same counts.
 *
 * Owns no library code.  Figures (sizes as in Tokio's benches; --n changes
 * the count):
 *
 *   spawn_many_local        10,000 spawns from inside pn_block_on's future;
 *                           each task decrements a shared counter, the last
 *                           one signals the waiter, which blocks inside
 *                           pn_block_on.  --workers 0 (rt_current_thread):
 *                           1,000 spawns keeping the join handles, then
 *                           awaits each.  Unit: task
 *   spawn_many_remote_idle  10,000 (--workers 0: 1,000) pn_spawn(rt, ...)
 *                           from the main thread, then one pn_block_on
 *                           awaits every handle.  Unit: task
 *   spawn_many_remote_busy1 the same while 8 tasks loop yield + stall(10
 *                           µs).  Multi-thread only.  Unit: task
 *   spawn_many_remote_busy2 1,000 remote spawns while 4 chains of tasks
 *                           stall(10 µs) and spawn their successor (LIFO
 *                           stress).  Multi-thread only.  Unit: task
 *   spawn_many_remote_busy  --workers 0 only (rt_current_thread): 1,000
 *                           remote spawns while one task respawns itself
 *                           forever.  Unit: task
 *   yield_many              200 tasks spawned from the main thread, each
 *                           yields 1,000 times, then signals; the main
 *                           thread waits for the 200 signals.  Unit: yield
 *   ping_pong               in pn_block_on: a spawned task spawns 1,000
 *                           tasks; each spawns a peer and does a round trip
 *                           with it over two pn_oneshot channels; the last
 *                           to finish signals.  Unit: round_trip
 *   chained_spawn           in pn_block_on: a spawned task spawns the next,
 *                           1,000 deep (1,001 tasks); the last signals.
 *                           Unit: task (of the 1,000)
 *   spawn_counter           in pn_block_on: ONE spawned task spawns
 *                           1,000,000 tasks; each decrements a shared
 *                           counter, the last one calls pn_notify_one on
 *                           the pn_notify pn_block_on awaits.  Unit: task
 *
 * The waiter's signal: Tokio's benches block the waiting thread on a
 * std::sync::mpsc::sync_channel; here a POSIX semaphore (sem_t: futex
 * based, like it).  The current-thread runtime runs its tasks only inside
 * pn_block_on, so at --workers 0 the waiter awaits permits of a
 * pn_semaphore inside pn_block_on instead (the Tokio peer: a
 * tokio::sync::Semaphore).  Tokio's tasks clone an Arc per shared object;
 * here they hold a pointer.
 *
 * Measurement (criterion-like): iterations run back to back in one
 * runtime, first a warm-up of at least --warmup-ms (default 100), then at
 * least --min-iters (default 5) timed iterations and at least --ms
 * (default 300) of them.  Output, one line:
 *
 *   <figure> workers=W n=N iters=I median_us=.. min_us=.. ns_per_<unit>=..
 *            finished=1 <counter>_per_<unit>=.. ...
 *
 * where the counters are every counter of pn_runtime_metrics, the change
 * over the timed iterations divided by the units of work they did.  A
 * watchdog thread gives up when one iteration lasts longer than
 * --deadline-ms (default 2,000 + 1 per 100 units): it prints
 *
 *   <figure> workers=W n=N iters=<completed> finished=0 deadline_ms=D
 *
 * and ends the process at once (exit status 0).
 *
 * Usage: bench_sched FIGURE [--n N] [--workers W|cpus] [--driver workers|reactor]
 *                    [--ms M] [--warmup-ms M] [--min-iters K] [--deadline-ms D]
 */
#include <pollen.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define STALL_NS 10000          /* Tokio's STALL_DUR: 10 µs */
#define YIELD_TASKS 200

/* Busy for 10 µs, giving the CPU away meanwhile (Tokio's stall()). */
static void stall(void)
{
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < STALL_NS)
        sched_yield();
}

/* ---- the waiter's signal -------------------------------------------------- */

typedef struct done_sig {
    bool in_task;               /* --workers 0: awaited inside pn_block_on */
    sem_t sem;                  /* else: the waiting thread blocks on it */
    pn_semaphore permits;
} done_sig;

static void done_init(done_sig *d, bool in_task)
{
    d->in_task = in_task;
    if (sem_init(&d->sem, 0, 0))
        die("sem_init", -errno);
    int err = pn_semaphore_init(&d->permits, 0);
    if (err)
        die("pn_semaphore_init", err);
}

/* The blocking wait for n signals. */
static void done_wait_thread(done_sig *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        while (sem_wait(&d->sem))
            if (errno != EINTR)
                die("sem_wait", -errno);
}

static void done_send(done_sig *d)
{
    if (d->in_task)
        pn_semaphore_add_permits(&d->permits, 1);
    else
        sem_post(&d->sem);
}

/* Wait for `n` signals: blocks the thread polling it, or awaits the permits
 * (--workers 0). */
typedef struct done_recv {
    pn_future base;
    int pc;
    done_sig *d;
    size_t n;
    pn_semaphore_permit p;
} done_recv;

static pn_poll done_recv_poll(pn_future *f, pn_cx *cx)
{
    done_recv *r = (done_recv *)f;
    PN_ASYNC_BEGIN(r->pc);
    if (!r->d->in_task) {
        done_wait_thread(r->d, r->n);
    } else {
        r->p = pn_semaphore_acquire(&r->d->permits, r->n);
        PN_AWAIT(r->pc, &r->p, cx);
        if (r->p.res)
            die("pn_semaphore_acquire", r->p.res);
        pn_semaphore_forget(&r->p);
    }
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable done_recv_vt = { done_recv_poll, NULL, "done_recv" };

static done_recv done_recv_of(done_sig *d, size_t n)
{
    return (done_recv){ .base = { &done_recv_vt }, .d = d, .n = n };
}

/* The same from outside the runtime (at --workers 0 through pn_block_on). */
static void done_recv_outside(pn_runtime *rt, done_sig *d, size_t n)
{
    if (!d->in_task) {
        done_wait_thread(d, n);
        return;
    }
    done_recv r = done_recv_of(d, n);
    int err = pn_block_on(rt, PN_FUTURE(&r));
    if (err)
        die("pn_block_on", err);
}

/* ---- what the shapes share ------------------------------------------------ */

typedef struct sched {
    pn_runtime *rt;
    bool ct;                    /* --workers 0 */
    size_t n;
    done_sig done;
    _Atomic size_t rem;
    _Atomic bool flag;          /* the busy tasks run while set */
    pn_join_handle **h;         /* n join handles */
    pn_notify notify;           /* spawn_counter */
} sched;

/* ---- spawn_many_local ------------------------------------------------------ */

typedef struct sml_task {
    pn_future base;
    sched *s;
} sml_task;

static pn_poll sml_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    sched *s = ((sml_task *)f)->s;
    if (atomic_fetch_sub_explicit(&s->rem, 1, memory_order_relaxed) == 1)
        done_send(&s->done);
    return PN_READY;
}

static const pn_future_vtable sml_task_vt = { sml_task_poll, NULL, "sml_task" };

/* pn_block_on's future: n spawns, then the wait (a blocking one). */
typedef struct sml_block {
    pn_future base;
    int pc;
    sched *s;
    done_recv wait;
    join_each join;             /* --workers 0 */
} sml_block;

static pn_poll sml_block_poll(pn_future *f, pn_cx *cx)
{
    sml_block *b = (sml_block *)f;
    sched *s = b->s;
    PN_ASYNC_BEGIN(b->pc);
    if (s->ct) {                /* rt_current_thread.rs */
        for (size_t i = 0; i < s->n; i++) {
            trivial t = { .base = { &trivial_vt } };
            SPAWN(cx, t, &s->h[i]);
        }
        b->join = join_each_of(s->h, s->n);
        PN_AWAIT(b->pc, &b->join, cx);
    } else {
        for (size_t i = 0; i < s->n; i++) {
            sml_task t = { .base = { &sml_task_vt }, .s = s };
            SPAWN(cx, t, NULL);
        }
        b->wait = done_recv_of(&s->done, 1);
        PN_AWAIT(b->pc, &b->wait, cx);
    }
    PN_ASYNC_END(b->pc);
}

static const pn_future_vtable sml_block_vt = { sml_block_poll, NULL, "sml_block" };

static void spawn_many_local(sched *s)
{
    atomic_store_explicit(&s->rem, s->n, memory_order_relaxed);
    sml_block b = { .base = { &sml_block_vt }, .s = s };
    int err = pn_block_on(s->rt, PN_FUTURE(&b));
    if (err)
        die("pn_block_on", err);
}

/* ---- spawn_many_remote_idle, _busy1, _busy2, _busy ------------------------- */

/* n spawns from the main thread, then one pn_block_on awaits them all. */
static void remote_spawns(sched *s)
{
    for (size_t i = 0; i < s->n; i++) {
        trivial t = { .base = { &trivial_vt } };
        int err = PN_SPAWN(s->rt, t, &s->h[i]);
        if (err)
            die("pn_spawn", err);
    }
    join_each j = join_each_of(s->h, s->n);
    int err = pn_block_on(s->rt, PN_FUTURE(&j));
    if (err)
        die("pn_block_on", err);
}

/* busy1: while the flag is up, yield then stall. */
typedef struct busy_yielder {
    pn_future base;
    int pc;
    sched *s;
} busy_yielder;

static pn_poll busy_yielder_poll(pn_future *f, pn_cx *cx)
{
    busy_yielder *y = (busy_yielder *)f;
    PN_ASYNC_BEGIN(y->pc);
    while (atomic_load_explicit(&y->s->flag, memory_order_relaxed)) {
        PN_YIELD(y->pc, cx);
        stall();
    }
    PN_ASYNC_END(y->pc);
}

static const pn_future_vtable busy_yielder_vt = { busy_yielder_poll, NULL, "busy_yielder" };

/* busy2: one link of a chain; while the flag is up, stall and spawn the
 * next link (Tokio's iter(flag)). */
typedef struct busy_link {
    pn_future base;
    sched *s;
} busy_link;

static const pn_future_vtable busy_link_vt;

/* Spawn the next link; at the end, pn_runtime_free may refuse it
 * (-ESHUTDOWN), as Tokio drops a spawn during its shutdown. */
static void busy_iter(sched *s, pn_cx *cx)
{
    busy_link l = { .base = { &busy_link_vt }, .s = s };
    int err = pn_spawn_cx(cx, PN_FUTURE(&l), sizeof l, NULL);
    if (err && err != -ESHUTDOWN)
        die("pn_spawn", err);
}

static pn_poll busy_link_poll(pn_future *f, pn_cx *cx)
{
    sched *s = ((busy_link *)f)->s;
    if (atomic_load_explicit(&s->flag, memory_order_relaxed)) {
        stall();
        busy_iter(s, cx);
    }
    return PN_READY;
}

static const pn_future_vtable busy_link_vt = { busy_link_poll, NULL, "busy_link" };

/* busy2's first task: starts a chain (rt.spawn(async { iter(flag); })). */
typedef struct busy_start {
    pn_future base;
    sched *s;
} busy_start;

static pn_poll busy_start_poll(pn_future *f, pn_cx *cx)
{
    busy_iter(((busy_start *)f)->s, cx);
    return PN_READY;
}

static const pn_future_vtable busy_start_vt = { busy_start_poll, NULL, "busy_start" };

/* --workers 0, spawn_many_remote_busy: a task that spawns its successor,
 * forever (the runtime's free drops the last one). */
typedef struct forever {
    pn_future base;
} forever;

static const pn_future_vtable forever_vt;

static pn_poll forever_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    forever next = { .base = { &forever_vt } };
    int err = pn_spawn_cx(cx, PN_FUTURE(&next), sizeof next, NULL);
    if (err && err != -ESHUTDOWN)
        die("pn_spawn", err);
    return PN_READY;
}

static const pn_future_vtable forever_vt = { forever_poll, NULL, "forever" };

/* ---- yield_many -------------------------------------------------------------- */

typedef struct yielder {
    pn_future base;
    int pc;
    sched *s;
    size_t i;
} yielder;

static pn_poll yielder_poll(pn_future *f, pn_cx *cx)
{
    yielder *y = (yielder *)f;
    PN_ASYNC_BEGIN(y->pc);
    for (y->i = 0; y->i < y->s->n; y->i++)
        PN_YIELD(y->pc, cx);
    done_send(&y->s->done);
    PN_ASYNC_END(y->pc);
}

static const pn_future_vtable yielder_vt = { yielder_poll, NULL, "yielder" };

static void yield_many(sched *s)
{
    for (size_t i = 0; i < YIELD_TASKS; i++) {
        yielder y = { .base = { &yielder_vt }, .s = s };
        int err = PN_SPAWN(s->rt, y, NULL);
        if (err)
            die("pn_spawn", err);
    }
    done_recv_outside(s->rt, &s->done, YIELD_TASKS);
}

/* ---- ping_pong ----------------------------------------------------------------- */

/* The peer: waits for the ping on rx1, answers on tx2. */
typedef struct pong {
    pn_future base;
    int pc;
    pn_oneshot_rx *rx1;
    pn_oneshot_tx *tx2;
    char v;
    pn_oneshot_recv_future r;
} pong;

static pn_poll pong_poll(pn_future *f, pn_cx *cx)
{
    pong *p = (pong *)f;
    PN_ASYNC_BEGIN(p->pc);
    p->r = pn_oneshot_recv(p->rx1, &p->v);
    PN_AWAIT(p->pc, &p->r, cx);
    if (p->r.res)
        die("pong: pn_oneshot_recv", p->r.res);
    {
        int err = pn_oneshot_send(p->tx2, &p->v);
        p->tx2 = NULL;
        if (err)
            die("pong: pn_oneshot_send", err);
    }
    pn_oneshot_rx_free(p->rx1);
    p->rx1 = NULL;
    PN_ASYNC_END(p->pc);
}

static void pong_drop(pn_future *f)
{
    pong *p = (pong *)f;
    pn_future_drop(PN_FUTURE(&p->r));
    pn_oneshot_rx_free(p->rx1);
    pn_oneshot_tx_free(p->tx2);
}

static const pn_future_vtable pong_vt = { pong_poll, pong_drop, "pong" };

/* One ping: two oneshots, spawn the peer, send, await the answer; the last
 * ping to finish signals. */
typedef struct ping {
    pn_future base;
    int pc;
    sched *s;
    pn_oneshot_rx *rx2;
    char v;
    pn_oneshot_recv_future r;
} ping;

static pn_poll ping_poll(pn_future *f, pn_cx *cx)
{
    ping *p = (ping *)f;
    PN_ASYNC_BEGIN(p->pc);
    {
        pn_oneshot_tx *tx1, *tx2;
        pn_oneshot_rx *rx1;
        int err = pn_oneshot_new(1, &tx1, &rx1);
        if (err)
            die("pn_oneshot_new", err);
        if ((err = pn_oneshot_new(1, &tx2, &p->rx2)))
            die("pn_oneshot_new", err);
        pong q = { .base = { &pong_vt }, .rx1 = rx1, .tx2 = tx2 };
        SPAWN(cx, q, NULL);
        p->v = 1;
        if ((err = pn_oneshot_send(tx1, &p->v)))
            die("ping: pn_oneshot_send", err);
    }
    p->r = pn_oneshot_recv(p->rx2, &p->v);
    PN_AWAIT(p->pc, &p->r, cx);
    if (p->r.res)
        die("ping: pn_oneshot_recv", p->r.res);
    pn_oneshot_rx_free(p->rx2);
    p->rx2 = NULL;
    if (atomic_fetch_sub_explicit(&p->s->rem, 1, memory_order_relaxed) == 1)
        done_send(&p->s->done);
    PN_ASYNC_END(p->pc);
}

static void ping_drop(pn_future *f)
{
    ping *p = (ping *)f;
    pn_future_drop(PN_FUTURE(&p->r));
    pn_oneshot_rx_free(p->rx2);
}

static const pn_future_vtable ping_vt = { ping_poll, ping_drop, "ping" };

/* The task pn_block_on spawns: n pings. */
typedef struct pingers {
    pn_future base;
    sched *s;
} pingers;

static pn_poll pingers_poll(pn_future *f, pn_cx *cx)
{
    sched *s = ((pingers *)f)->s;
    for (size_t i = 0; i < s->n; i++) {
        ping p = { .base = { &ping_vt }, .s = s };
        SPAWN(cx, p, NULL);
    }
    return PN_READY;
}

static const pn_future_vtable pingers_vt = { pingers_poll, NULL, "pingers" };

/* pn_block_on's future for ping_pong and chained_spawn: spawn the first
 * task, then the wait. */
typedef struct spawn_wait {
    pn_future base;
    int pc;
    sched *s;
    const pn_future *first;
    size_t first_size;
    done_recv wait;
} spawn_wait;

static pn_poll spawn_wait_poll(pn_future *f, pn_cx *cx)
{
    spawn_wait *b = (spawn_wait *)f;
    PN_ASYNC_BEGIN(b->pc);
    {
        int err = pn_spawn_cx(cx, b->first, b->first_size, NULL);
        if (err)
            die("pn_spawn", err);
    }
    b->wait = done_recv_of(&b->s->done, 1);
    PN_AWAIT(b->pc, &b->wait, cx);
    PN_ASYNC_END(b->pc);
}

static const pn_future_vtable spawn_wait_vt = { spawn_wait_poll, NULL, "spawn_wait" };

static void block_on_spawn_wait(sched *s, const pn_future *first, size_t size)
{
    spawn_wait b = { .base = { &spawn_wait_vt }, .s = s, .first = first, .first_size = size };
    int err = pn_block_on(s->rt, PN_FUTURE(&b));
    if (err)
        die("pn_block_on", err);
}

static void ping_pong(sched *s)
{
    atomic_store_explicit(&s->rem, s->n, memory_order_relaxed);
    pingers first = { .base = { &pingers_vt }, .s = s };
    block_on_spawn_wait(s, PN_FUTURE(&first), sizeof first);
}

/* ---- chained_spawn ------------------------------------------------------------- */

/* Tokio's iter(done_tx, k): k == 0 signals, else spawns iter(k - 1). */
typedef struct chain_link {
    pn_future base;
    sched *s;
    size_t k;
} chain_link;

static const pn_future_vtable chain_link_vt;

static pn_poll chain_link_poll(pn_future *f, pn_cx *cx)
{
    chain_link *l = (chain_link *)f;
    if (l->k == 0) {
        done_send(&l->s->done);
    } else {
        chain_link next = { .base = { &chain_link_vt }, .s = l->s, .k = l->k - 1 };
        SPAWN(cx, next, NULL);
    }
    return PN_READY;
}

static const pn_future_vtable chain_link_vt = { chain_link_poll, NULL, "chain_link" };

static void chained_spawn(sched *s)
{
    chain_link first = { .base = { &chain_link_vt }, .s = s, .k = s->n };
    block_on_spawn_wait(s, PN_FUTURE(&first), sizeof first);
}

/* ---- spawn_counter ----------------------------------------------------------------- */

typedef struct sc_task {
    pn_future base;
    sched *s;
} sc_task;

static pn_poll sc_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    sched *s = ((sc_task *)f)->s;
    if (atomic_fetch_sub_explicit(&s->rem, 1, memory_order_relaxed) == 1)
        pn_notify_one(&s->notify);
    return PN_READY;
}

static const pn_future_vtable sc_task_vt = { sc_task_poll, NULL, "sc_task" };

/* The one task that spawns them all. */
typedef struct sc_spawner {
    pn_future base;
    sched *s;
} sc_spawner;

static pn_poll sc_spawner_poll(pn_future *f, pn_cx *cx)
{
    sched *s = ((sc_spawner *)f)->s;
    for (size_t i = 0; i < s->n; i++) {
        sc_task t = { .base = { &sc_task_vt }, .s = s };
        SPAWN(cx, t, NULL);
    }
    return PN_READY;
}

static const pn_future_vtable sc_spawner_vt = { sc_spawner_poll, NULL, "sc_spawner" };

typedef struct sc_block {
    pn_future base;
    int pc;
    sched *s;
    pn_notified_future w;
} sc_block;

static pn_poll sc_block_poll(pn_future *f, pn_cx *cx)
{
    sc_block *b = (sc_block *)f;
    PN_ASYNC_BEGIN(b->pc);
    {
        sc_spawner sp = { .base = { &sc_spawner_vt }, .s = b->s };
        SPAWN(cx, sp, NULL);
    }
    b->w = pn_notify_notified(&b->s->notify);
    PN_AWAIT(b->pc, &b->w, cx);
    PN_ASYNC_END(b->pc);
}

static const pn_future_vtable sc_block_vt = { sc_block_poll, NULL, "sc_block" };

static void spawn_counter(sched *s)
{
    atomic_store_explicit(&s->rem, s->n, memory_order_relaxed);
    sc_block b = { .base = { &sc_block_vt }, .s = s };
    int err = pn_block_on(s->rt, PN_FUTURE(&b));
    if (err)
        die("pn_block_on", err);
}

/* ---- the runtime's counters ------------------------------------------------------ */

/* Every counter of pn_runtime_metrics (uint64_t fields that only grow);
 * a new one is one line here. */
#define COUNTER(field) { #field, offsetof(pn_runtime_metrics, field) }
static const struct counter {
    const char *name;
    size_t off;
} counters[] = {
    COUNTER(tasks_spawned),
    COUNTER(tasks_completed),
    COUNTER(polls),
    COUNTER(steals),
    COUNTER(stolen_tasks),
    COUNTER(inject_pops),
    COUNTER(parks),
    COUNTER(unparks),
    COUNTER(unparks_reactor),
    COUNTER(budget_exhausted),
    COUNTER(overflows),
    COUNTER(reactor_errors),
};
#define NCOUNTERS (sizeof counters / sizeof counters[0])

static uint64_t counter_of(const pn_runtime_metrics *m, size_t i)
{
    uint64_t v;
    memcpy(&v, (const char *)m + counters[i].off, sizeof v);
    return v;
}

/* ---- measuring --------------------------------------------------------------------- */

typedef struct bench {
    const char *fig;
    long workers;
    size_t n;
    const char *unit;
    double units;               /* units of work per iteration */
    long ms, warmup_ms, min_iters, deadline_ms;
} bench;

/* Start of the running iteration (now_ns), 0 between iterations; the
 * iterations completed.  Read by the watchdog. */
static _Atomic uint64_t iter_t0, iters_done;

static void *watchdog(void *arg)
{
    const bench *b = arg;
    for (;;) {
        usleep(50000);
        uint64_t t0 = atomic_load(&iter_t0);
        if (t0 && now_ns() - t0 > (uint64_t)b->deadline_ms * 1000000u &&
            atomic_load(&iter_t0) == t0) {
            printf("%s workers=%ld n=%zu iters=%llu finished=0 deadline_ms=%ld\n", b->fig,
                   b->workers, b->n, (unsigned long long)atomic_load(&iters_done),
                   b->deadline_ms);
            fflush(stdout);
            _exit(0);
        }
    }
    return NULL;
}

static uint64_t timed(void (*iter)(sched *), sched *s)
{
    uint64_t t0 = now_ns();
    atomic_store(&iter_t0, t0);
    iter(s);
    uint64_t t1 = now_ns();
    atomic_store(&iter_t0, 0);
    atomic_fetch_add(&iters_done, 1);
    return t1 - t0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(const bench *b, void (*iter)(sched *), sched *s)
{
    pthread_t wd;
    int err = pthread_create(&wd, NULL, watchdog, (void *)b);
    if (err)
        die("pthread_create", -err);
    pthread_detach(wd);

    uint64_t w0 = now_ns();
    do
        timed(iter, s);
    while (now_ns() - w0 < (uint64_t)b->warmup_ms * 1000000u);

    size_t cap = 1024, k = 0;
    uint64_t *v = malloc(cap * sizeof *v);
    if (!v)
        die("malloc", -ENOMEM);
    pn_runtime_metrics m0, m1;
    pn_runtime_metrics_get(s->rt, &m0);
    uint64_t t0 = now_ns();
    while (k < (size_t)b->min_iters ||
           (now_ns() - t0 < (uint64_t)b->ms * 1000000u && k < 100000)) {
        if (k == cap && !(v = realloc(v, (cap *= 2) * sizeof *v)))
            die("realloc", -ENOMEM);
        v[k++] = timed(iter, s);
    }
    pn_runtime_metrics_get(s->rt, &m1);

    qsort(v, k, sizeof *v, cmp_u64);
    double med = (double)v[k / 2], total = b->units * (double)k;
    printf("%s workers=%ld n=%zu iters=%zu median_us=%.1f min_us=%.1f ns_per_%s=%.1f finished=1",
           b->fig, b->workers, b->n, k, med / 1e3, (double)v[0] / 1e3, b->unit, med / b->units);
    for (size_t i = 0; i < NCOUNTERS; i++)
        printf(" %s_per_%s=%.4g", counters[i].name, b->unit,
               (double)(counter_of(&m1, i) - counter_of(&m0, i)) / total);
    printf("\n");
    fflush(stdout);
    free(v);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: bench_sched spawn_many_local|spawn_many_remote_idle|"
                    "spawn_many_remote_busy1|spawn_many_remote_busy2|spawn_many_remote_busy|"
                    "yield_many|ping_pong|chained_spawn|spawn_counter [--n N] [--workers W|cpus] "
                    "[--driver workers|reactor] [--ms M] [--warmup-ms M] [--min-iters K] "
                    "[--deadline-ms D]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_prog = argv[0];
    /* Take this program's own options out, hand the rest to bench_args. */
    bench b = { .ms = 300, .warmup_ms = 100, .min_iters = 5, .deadline_ms = -1 };
    char **rest = malloc((size_t)(argc + 1) * sizeof *rest);
    if (!rest)
        die("malloc", -ENOMEM);
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        long *opt = NULL;
        if (i + 1 < argc) {
            if (!strcmp(argv[i], "--ms"))
                opt = &b.ms;
            else if (!strcmp(argv[i], "--warmup-ms"))
                opt = &b.warmup_ms;
            else if (!strcmp(argv[i], "--min-iters"))
                opt = &b.min_iters;
            else if (!strcmp(argv[i], "--deadline-ms"))
                opt = &b.deadline_ms;
        }
        if (opt)
            *opt = atol(argv[++i]);
        else
            rest[nrest++] = argv[i];
    }
    rest[nrest] = NULL;
    bench_args args;
    bool ok = bench_args_parse(nrest, rest, &args);    /* args points into argv */
    free(rest);
    if (!ok)
        usage();
    if (b.min_iters < 1)
        b.min_iters = 1;

    sched s = { .ct = args.workers == 0 };
    b.fig = args.fig;
    b.workers = args.workers;
    const char *fig = args.fig;
    size_t n_arg = args.n > 0 ? (size_t)args.n : 0;
#define N(dflt) (n_arg ? n_arg : (size_t)(dflt))
    void (*iter)(sched *) = NULL;
    b.unit = "task";
    if (!strcmp(fig, "spawn_many_local")) {
        s.n = N(s.ct ? 1000 : 10000);
        iter = spawn_many_local;
    } else if (!strcmp(fig, "spawn_many_remote_idle")) {
        s.n = N(s.ct ? 1000 : 10000);
        iter = remote_spawns;
    } else if (!strcmp(fig, "spawn_many_remote_busy1") ||
               !strcmp(fig, "spawn_many_remote_busy2")) {
        if (s.ct) {
            fprintf(stderr, "bench_sched: %s runs on the multi-thread runtime only "
                            "(--workers >= 1)\n", fig);
            return 2;
        }
        s.n = N(fig[strlen(fig) - 1] == '1' ? 10000 : 1000);
        iter = remote_spawns;
    } else if (!strcmp(fig, "spawn_many_remote_busy")) {
        if (!s.ct) {
            fprintf(stderr, "bench_sched: %s runs on the current-thread runtime only "
                            "(--workers 0)\n", fig);
            return 2;
        }
        s.n = N(1000);
        iter = remote_spawns;
    } else if (!strcmp(fig, "yield_many")) {
        s.n = N(1000);
        b.unit = "yield";
        iter = yield_many;
    } else if (!strcmp(fig, "ping_pong")) {
        s.n = N(1000);
        b.unit = "round_trip";
        iter = ping_pong;
    } else if (!strcmp(fig, "chained_spawn")) {
        s.n = N(1000);
        iter = chained_spawn;
    } else if (!strcmp(fig, "spawn_counter")) {
        s.n = N(1000000);
        iter = spawn_counter;
    } else {
        usage();
    }
#undef N
    b.n = s.n;
    b.units = (double)s.n * (iter == yield_many ? YIELD_TASKS : 1);
    if (b.deadline_ms < 0)
        b.deadline_ms = 2000 + (long)(b.units / 100);

    s.rt = bench_runtime_new(&args);
    done_init(&s.done, s.ct);
    pn_notify_init(&s.notify);
    s.h = malloc(s.n * sizeof *s.h);
    if (!s.h)
        die("malloc", -ENOMEM);

    if (!strcmp(fig, "spawn_many_remote_busy1")) {
        atomic_store(&s.flag, true);
        /* 2 * NUM_WORKERS (4 in Tokio's bench) tasks keep the workers busy */
        for (int i = 0; i < 8; i++) {
            busy_yielder y = { .base = { &busy_yielder_vt }, .s = &s };
            int err = PN_SPAWN(s.rt, y, NULL);
            if (err)
                die("pn_spawn", err);
        }
    } else if (!strcmp(fig, "spawn_many_remote_busy2")) {
        atomic_store(&s.flag, true);
        /* NUM_WORKERS (4 in Tokio's bench) chains keep the workers busy */
        for (int i = 0; i < 4; i++) {
            busy_start c = { .base = { &busy_start_vt }, .s = &s };
            int err = PN_SPAWN(s.rt, c, NULL);
            if (err)
                die("pn_spawn", err);
        }
    } else if (!strcmp(fig, "spawn_many_remote_busy")) {
        forever f = { .base = { &forever_vt } };
        int err = PN_SPAWN(s.rt, f, NULL);
        if (err)
            die("pn_spawn", err);
    }

    run(&b, iter, &s);

    atomic_store(&s.flag, false);
    pn_runtime_free(s.rt);
    free(s.h);
    pn_notify_destroy(&s.notify);
    pn_semaphore_destroy(&s.done.permits);
    sem_destroy(&s.done.sem);
    return 0;
}
