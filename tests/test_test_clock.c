/*
 * test_test_clock.c - the paused clock (cfg.start_paused, pn_time_pause /
 * advance / resume, auto-advance) of the current-thread runtime.
 *
 * Owns no library code.  Under a paused clock every check of time is
 * exact: virtual time moves only by pn_time_advance or auto-advance, so a
 * timer completes with pn_now() equal to its deadline.  The real-time
 * checks (no CPU burnt while parked) are one-sided.
 */
#include "helpers.h"
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "timer/timers.h"
#include "executor/rt.h"
#include "core/chaos.h"

static void clock_fini(void) { pn__point_set_hook(NULL); }

TestSuite(test_clock, .timeout = PN_TEST_TIMEOUT, .fini = clock_fini);

/* The runtimes the clock is tested on: current-thread, multi-thread with
 * the workers driving the reactor, multi-thread with a reactor thread. */
#define NFLAVOURS 3
static const char *const flavour_names[NFLAVOURS] = { "current-thread", "mt-workers",
                                                      "mt-reactor-thread" };

static pn_runtime *paused_flavour(int fl)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.backend = pn_test_backend();
    cfg.start_paused = true;
    if (fl > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = 2;
        cfg.driver = fl == 1 ? PN_DRIVER_WORKERS : PN_DRIVER_REACTOR_THREAD;
    }
    pn_runtime *rt = NULL;
    int err = pn_runtime_new(&cfg, &rt);
    if (fl > 0 && cfg.backend == PN_BACKEND_URING) {
        /* the multi-thread runtime's paused clock needs epoll */
        cr_assert_eq(err, -ENOTSUP, "%s on uring: %s", flavour_names[fl], pn_strerror(err));
        return NULL;
    }
    cr_assert_eq(err, 0, "pn_runtime_new(%s): %s", flavour_names[fl], pn_strerror(err));
    cr_assert(pn_time_is_paused(rt));
    return rt;
}


static pn_runtime *paused_new(void)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.backend = pn_test_backend();
    cfg.start_paused = true;
    pn_runtime *rt = NULL;
    int err = pn_runtime_new(&cfg, &rt);
    cr_assert_eq(err, 0, "pn_runtime_new: %s", pn_strerror(err));
    cr_assert(pn_time_is_paused(rt));
    return rt;
}

static size_t armed_of(pn_runtime *rt)
{
    pn__timers *t = pn__runtime_timers(rt);
    if (!t->shared)
        return t->armed;
    pthread_mutex_lock(&t->lock);
    size_t n = t->armed;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* Keep the runtime busy (no auto-advance: this thread's block_on future
 * wakes itself) until cond(arg) holds; the watchdog bounds it. */
static void run_until(pn_runtime *rt, bool (*cond)(pn_runtime *rt, void *arg), void *arg)
{
    do {
        steps_future st = steps_new(8, NULL);
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&st)), 0);
    } while (!cond(rt, arg));
}

static bool armed_is(pn_runtime *rt, void *n) { return armed_of(rt) == (size_t)(uintptr_t)n; }
static bool finished(pn_runtime *rt, void *h)
{
    (void)rt;
    return pn_join_handle_is_finished(h);
}

/* Run the loop a few turns without letting it go idle (a self-waking
 * future keeps it busy, so auto-advance does not kick in). */
static void run_a_little(pn_runtime *rt)
{
    steps_future st = steps_new(8, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&st)), 0);
}

/* ---- auto-advance ------------------------------------------------------ */

Test(test_clock, hour_sleep_completes_at_once)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    cr_assert_eq(pn_runtime_now(rt), t0);
    pn_sleep_future s = pn_sleep(PN_SEC(3600));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(pn_now() - t0, PN_SEC(3600), "moved by %llu ns",
                 (unsigned long long)(pn_now() - t0));
    cr_assert_eq(pn_runtime_now(rt), t0 + PN_SEC(3600));
    cr_assert_eq(armed_of(rt), 0);
    /* and again, from the new instant, with a deadline off the tick grid */
    pn_sleep_future s2 = pn_sleep(PN_SEC(10) + 12345);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s2)), 0);
    cr_assert_eq(pn_now() - t0, PN_SEC(3610) + 12345);
    cr_assert_eq(pn_runtime_free(rt), 0);
    /* the runtime is gone: the thread reads real time again */
    pn_instant a = pn_now(), b = pn_now();
    cr_assert_leq(a, b);
  }
}

/* A task: sleep `ns`, then record pn_now() and set *done. */
typedef struct sleeper {
    pn_future base;
    int pc;
    uint64_t ns;
    pn_sleep_future s;
    int id;
    pn_instant *woke_at;
    int *log;
    atomic_int *nlog;
} sleeper;

static pn_poll sleeper_poll(pn_future *f, pn_cx *cx)
{
    sleeper *t = (sleeper *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->s = pn_sleep(t->ns);
    PN_AWAIT(t->pc, &t->s, cx);
    *t->woke_at = pn_now();
    if (t->log)
        t->log[atomic_fetch_add(t->nlog, 1)] = t->id;
    PN_ASYNC_END(t->pc);
}

static void sleeper_drop(pn_future *f)
{
    sleeper *t = (sleeper *)f;
    if (PN_ASYNC_AT(t->pc) > 0)
        pn_future_drop(PN_FUTURE(&t->s));
}

static const pn_future_vtable sleeper_vt = { sleeper_poll, sleeper_drop, "sleeper" };

static pn_join_handle *spawn_sleeper(pn_runtime *rt, uint64_t ns, pn_instant *woke_at)
{
    sleeper t = { .base = { &sleeper_vt }, .ns = ns, .woke_at = woke_at };
    pn_join_handle *h = NULL;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&t), sizeof(t), &h), 0);
    return h;
}

static void join(pn_runtime *rt, pn_join_handle *h)
{
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, 0);
    pn_join_handle_free(h);
}

Test(test_clock, advance_fires_what_is_due_only)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    pn_instant w3 = 0, w7 = 0;
    pn_join_handle *h3 = spawn_sleeper(rt, PN_SEC(3), &w3);
    pn_join_handle *h7 = spawn_sleeper(rt, PN_SEC(7), &w7);
    run_until(rt, armed_is, (void *)(uintptr_t)2);  /* both sleeps armed */
    cr_assert_eq(pn_now(), t0, "%s: time moved while the runtime was busy",
                 flavour_names[fl]);

    cr_assert_eq(pn_time_advance(rt, PN_SEC(5)), 0);
    cr_assert_eq(pn_now(), t0 + PN_SEC(5));
    run_until(rt, finished, h3);
    cr_assert_not(pn_join_handle_is_finished(h7));
    cr_assert_eq(w3, t0 + PN_SEC(5), "the 3 s sleeper ran at the advanced time");
    cr_assert_eq(armed_of(rt), 1);

    /* the 7 s one: auto-advance to its exact deadline */
    join(rt, h7);
    cr_assert_eq(w7, t0 + PN_SEC(7));
    cr_assert_eq(pn_now(), t0 + PN_SEC(7));
    join(rt, h3);
    cr_assert_eq(pn_runtime_free(rt), 0);
  }
}

/* A deadline exactly at the advanced instant fires; 1 ns later does not. */
Test(test_clock, advance_boundary_is_inclusive)
{
    pn_runtime *rt = paused_new();
    pn_instant t0 = pn_now();
    pn_instant a = 0, b = 0;
    pn_join_handle *ha = spawn_sleeper(rt, PN_MS(2), &a);
    pn_join_handle *hb = spawn_sleeper(rt, PN_MS(2) + 1, &b);
    run_a_little(rt);
    cr_assert_eq(pn_time_advance(rt, PN_MS(2)), 0);
    run_a_little(rt);
    cr_assert_eq(a, t0 + PN_MS(2));
    cr_assert_eq(b, 0, "a sleep fired 1 ns early");
    cr_assert_eq(pn_time_advance(rt, 1), 0);
    run_a_little(rt);
    cr_assert_eq(b, t0 + PN_MS(2) + 1);
    join(rt, ha);
    join(rt, hb);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

/* ---- interval ------------------------------------------------------------ */

typedef struct tick_counter {
    pn_future base;
    int pc;
    pn_interval_future iv;
    int *ticks;
    pn_instant *last;
} tick_counter;

static pn_poll tick_counter_poll(pn_future *f, pn_cx *cx)
{
    tick_counter *t = (tick_counter *)f;
    PN_ASYNC_BEGIN(t->pc);
    for (;;) {
        PN_AWAIT(t->pc, &t->iv, cx);
        (*t->ticks)++;
        *t->last = t->iv.tick;
    }
    PN_ASYNC_END(t->pc);
}

static void tick_counter_drop(pn_future *f)
{
    pn_future_drop(PN_FUTURE(&((tick_counter *)f)->iv));
}

static const pn_future_vtable tick_counter_vt = { tick_counter_poll, tick_counter_drop,
                                                  "tick_counter" };

Test(test_clock, interval_ticks_count_exactly)
{
    const pn_missed_tick pol[] = { PN_MISSED_BURST, PN_MISSED_DELAY, PN_MISSED_SKIP };
    for (int p = 0; p < 3; p++) {
        pn_runtime *rt = paused_new();
        pn_instant t0 = pn_now();
        int ticks = 0;
        pn_instant last = 0;
        tick_counter tc = { .base = { &tick_counter_vt }, .iv = pn_interval(PN_SEC(1)),
                            .ticks = &ticks, .last = &last };
        tc.iv.missed = pol[p];
        pn_join_handle *h = NULL;
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&tc), sizeof(tc), &h), 0);
        run_a_little(rt);
        cr_assert_eq(ticks, 1, "the first tick is immediate");
        cr_assert_eq(last, t0);

        /* In steps of exactly one period: one tick per step, on the grid. */
        for (int k = 1; k <= 5; k++) {
            cr_assert_eq(pn_time_advance(rt, PN_SEC(1)), 0);
            run_a_little(rt);
            cr_assert_eq(ticks, 1 + k, "policy %d step %d: %d ticks", p, k, ticks);
            cr_assert_eq(last, t0 + PN_SEC(k));
        }
        /* Half periods: a tick every second step. */
        for (int k = 1; k <= 4; k++) {
            cr_assert_eq(pn_time_advance(rt, PN_MS(500)), 0);
            run_a_little(rt);
            cr_assert_eq(ticks, 6 + k / 2);
        }
        cr_assert_eq(last, t0 + PN_SEC(7));

        /* One jump of 10 periods: the policy decides what was missed. */
        cr_assert_eq(pn_time_advance(rt, PN_SEC(10)), 0);
        run_a_little(rt);
        pn_instant now = pn_now();
        cr_assert_eq(now, t0 + PN_SEC(17));
        switch (pol[p]) {
        case PN_MISSED_BURST:   /* 8..17, back to back */
            cr_assert_eq(ticks, 18);
            cr_assert_eq(last, t0 + PN_SEC(17));
            break;
        case PN_MISSED_DELAY:   /* the late tick 8, then one a period after now */
        case PN_MISSED_SKIP:    /* the late tick 8, then the next on the grid after now */
            cr_assert_eq(ticks, 9);
            cr_assert_eq(last, t0 + PN_SEC(8));
            break;
        }
        /* The next tick, for all three: t0 + 18 s (DELAY: now + 1 s; SKIP:
         * the next grid point after now; BURST: caught up, 17 + 1). */
        cr_assert_eq(pn_time_advance(rt, PN_SEC(1) - 1), 0);
        run_a_little(rt);
        int before = ticks;
        cr_assert_eq(pn_time_advance(rt, 1), 0);
        run_a_little(rt);
        cr_assert_eq(ticks, before + 1);
        cr_assert_eq(last, t0 + PN_SEC(18));
        pn_join_handle_abort(h);
        pn_join_handle_free(h);
        pn_runtime_free(rt);
    }
}

/* ---- timeout -------------------------------------------------------------- */

Test(test_clock, timeout_of_never_ready_future)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    int drops = 0;
    forever_future ff = forever_new(&drops);
    pn_timeout_future to = pn_timeout(PN_FUTURE(&ff), PN_SEC(10));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&to)), 0);
    cr_assert_eq(to.res, -ETIMEDOUT);
    cr_assert_eq(pn_now() - t0, PN_SEC(10));
    cr_assert_eq(drops, 1);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
  }
}

/* ---- ordering ------------------------------------------------------------- */

#define NORDER 64

Test(test_clock, many_timers_fire_in_deadline_order)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    uint64_t dl[NORDER];
    pn_instant woke[NORDER];
    int log[NORDER];
    atomic_int nlog = 0;
    pn_join_handle *h[NORDER];
    /* Distinct deadlines in a scrambled order, some 1 ns apart (the same
     * wheel tick), some hours apart (higher wheel levels). */
    for (int i = 0; i < NORDER; i++) {
        unsigned k = (unsigned)(i * 37) % NORDER;       /* a permutation */
        dl[i] = k % 4 == 0 ? PN_SEC(3600) * (k + 1) : PN_MS(7) * (k / 2 + 1) + k % 2;
        woke[i] = 0;
    }
    for (int i = 0; i < NORDER; i++) {
        sleeper t = { .base = { &sleeper_vt }, .ns = dl[i], .woke_at = &woke[i], .id = i,
                      .log = log, .nlog = &nlog };
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&t), sizeof(t), &h[i]), 0);
    }
    for (int i = 0; i < NORDER; i++)
        join(rt, h[i]);
    cr_assert_eq(atomic_load(&nlog), NORDER);
    for (int i = 0; i < NORDER; i++)
        cr_assert_eq(woke[i], t0 + dl[i], "timer %d woke %lld ns off", i,
                     (long long)(woke[i] - (t0 + dl[i])));
    for (int i = 1; i < NORDER; i++)
        cr_assert_lt(dl[log[i - 1]], dl[log[i]], "%s: timer %d ran before %d",
                     flavour_names[fl], log[i - 1], log[i]);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
  }
}

/* ---- I/O while paused -------------------------------------------------------- */

/* A task: read one byte from afd (with an optional time limit), then
 * record the time. */
typedef struct byte_reader {
    pn_future base;
    int pc;
    pn_async_fd *afd;
    char byte;
    pn_read_future rd;
    pn_timeout_future to;
    uint64_t limit;            /* 0: no time limit */
    int status;
    pn_instant done_at;
} byte_reader;

static pn_poll byte_reader_poll(pn_future *f, pn_cx *cx)
{
    byte_reader *r = (byte_reader *)f;
    PN_ASYNC_BEGIN(r->pc);
    r->rd = pn_read(r->afd, &r->byte, 1);
    if (r->limit) {
        r->to = pn_timeout(PN_FUTURE(&r->rd), r->limit);
        PN_AWAIT(r->pc, &r->to, cx);
        r->status = r->to.res ? r->to.res : (int)r->rd.res;
    } else {
        PN_AWAIT(r->pc, &r->rd, cx);
        r->status = (int)r->rd.res;
    }
    r->done_at = pn_now();
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable byte_reader_vt = { byte_reader_poll, NULL, "byte_reader" };

static void socket_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Bytes already in the socket win over a long timeout: the reactor is
 * turned (zero timeout) before the clock jumps. */
Test(test_clock, io_ready_before_auto_advance)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    int sv[2];
    socket_pair(sv);
    pn_async_fd afd;
    cr_assert_eq(pn_async_fd_init(&afd, sv[0]), 0);
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(write(sv[1], "x", 1), 1);
        byte_reader r = { .base = { &byte_reader_vt }, .afd = &afd, .limit = PN_SEC(3600) };
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&r)), 0);
        cr_assert_eq(r.status, 1, "round %d: %d", round, r.status);
        cr_assert_eq(r.byte, 'x');
        cr_assert_eq(r.done_at, t0, "time jumped before the ready I/O was seen");
    }
    pn_async_fd_close(&afd);
    close(sv[1]);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
  }
}

/* A writer task sleeps 2 s (virtual), then writes; the reader has 10 s. */
typedef struct late_writer {
    pn_future base;
    int pc;
    int fd;
    pn_sleep_future s;
} late_writer;

static pn_poll late_writer_poll(pn_future *f, pn_cx *cx)
{
    late_writer *w = (late_writer *)f;
    PN_ASYNC_BEGIN(w->pc);
    w->s = pn_sleep(PN_SEC(2));
    PN_AWAIT(w->pc, &w->s, cx);
    cr_assert_eq(write(w->fd, "y", 1), 1);
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable late_writer_vt = { late_writer_poll, NULL, "late_writer" };

Test(test_clock, io_from_a_task_woken_by_virtual_time)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    int sv[2];
    socket_pair(sv);
    pn_async_fd afd;
    cr_assert_eq(pn_async_fd_init(&afd, sv[0]), 0);
    late_writer w = { .base = { &late_writer_vt }, .fd = sv[1] };
    pn_join_handle *h = NULL;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&w), sizeof(w), &h), 0);
    byte_reader r = { .base = { &byte_reader_vt }, .afd = &afd, .limit = PN_SEC(10) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&r)), 0);
    cr_assert_eq(r.status, 1, "status %d", r.status);
    cr_assert_eq(r.byte, 'y');
    cr_assert_eq(r.done_at, t0 + PN_SEC(2), "%s: done %lld ns after t0", flavour_names[fl],
                 (long long)(r.done_at - t0));
    join(rt, h);
    pn_async_fd_close(&afd);
    close(sv[1]);
    pn_runtime_free(rt);
  }
}

/* ---- idle: parked, no CPU --------------------------------------------------------- */

typedef struct delayed_write {
    int fd;
    unsigned delay_ms;
    pn_runtime *rt;
    int advance_err;            /* pn_time_advance from this thread */
} delayed_write;

static void *delayed_write_main(void *arg)
{
    delayed_write *d = arg;
    struct timespec ts = { 0, (long)d->delay_ms * 1000000L };
    nanosleep(&ts, NULL);
    if (d->rt)
        d->advance_err = pn_time_advance(d->rt, PN_SEC(1));
    cr_assert_eq(write(d->fd, "z", 1), 1);
    return NULL;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Nothing to do and no timer: the paused loop sleeps in the reactor until
 * another thread's write (and does not spin on a zero timeout).  That
 * thread also sees -EBUSY from pn_time_advance: the loop is running. */
Test(test_clock, idle_paused_runtime_parks)
{
    pn_runtime *rt = paused_new();
    pn_instant t0 = pn_now();
    int sv[2];
    socket_pair(sv);
    pn_async_fd afd;
    cr_assert_eq(pn_async_fd_init(&afd, sv[0]), 0);
    delayed_write d = { .fd = sv[1], .delay_ms = 200, .rt = rt };
    pthread_t th;
    uint64_t cpu0 = thread_cpu_ns(), real0 = real_ns();
    cr_assert_eq(pthread_create(&th, NULL, delayed_write_main, &d), 0);
    byte_reader r = { .base = { &byte_reader_vt }, .afd = &afd };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&r)), 0);
    uint64_t cpu = thread_cpu_ns() - cpu0, real = real_ns() - real0;
    pthread_join(th, NULL);
    cr_assert_eq(r.status, 1);
    cr_assert_eq(d.advance_err, -EBUSY);
    cr_assert_eq(r.done_at, t0, "no timer, no advance: the clock stood still");
    cr_assert_lt(cpu, real / 2, "the parked loop used %llu of %llu ns",
                 (unsigned long long)cpu, (unsigned long long)real);
    pn_async_fd_close(&afd);
    close(sv[1]);
    pn_runtime_free(rt);
}

/* ---- blocking calls hold auto-advance back --------------------------------------- */

static void *slow_call(void *arg)
{
    (void)arg;
    struct timespec ts = { 0, 30 * 1000000L };     /* 30 ms of real time */
    nanosleep(&ts, NULL);
    return (void *)(uintptr_t)42;
}

Test(test_clock, blocking_call_inhibits_auto_advance)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    pn_blocking_future b = pn_spawn_blocking(slow_call, NULL);
    pn_timeout_future to = pn_timeout(PN_FUTURE(&b), PN_MS(1));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&to)), 0);
    cr_assert_eq(to.res, 0, "the clock jumped while a blocking call ran");
    cr_assert_eq(b.res, 0);
    cr_assert_eq((uintptr_t)b.value, 42);
    cr_assert_eq(pn_now(), t0);
    /* Once it is over, auto-advance works again. */
    pn_sleep_future s = pn_sleep(PN_SEC(5));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(pn_now(), t0 + PN_SEC(5));
    cr_assert_eq(atomic_load(&rt->blocking_inflight), 0);
    pn_runtime_free(rt);
  }
}

/* A blocking call that says when it started and when it ended. */
static atomic_int call_started, call_ended;

static void *marked_slow_call(void *arg)
{
    (void)arg;
    atomic_store(&call_started, 1);
    struct timespec ts = { 0, 30 * 1000000L };
    nanosleep(&ts, NULL);
    atomic_store(&call_ended, 1);
    return NULL;
}

/* Poll a blocking call once, keep the loop busy until a pool thread runs
 * it, then drop its future (the call runs on, detached). */
typedef struct drop_when_started {
    pn_future base;
    pn_blocking_future b;
    bool polled;
} drop_when_started;

static pn_poll drop_when_started_poll(pn_future *f, pn_cx *cx)
{
    drop_when_started *d = (drop_when_started *)f;
    if (!d->polled) {
        d->polled = true;
        cr_assert_eq(pn_future_poll(PN_FUTURE(&d->b), cx), PN_PENDING);
    }
    if (!atomic_load(&call_started)) {
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    pn_future_drop(PN_FUTURE(&d->b));
    return PN_READY;
}

static const pn_future_vtable drop_when_started_vt = { drop_when_started_poll, NULL,
                                                       "drop_when_started" };

/* The call's future is gone, nobody will be woken when it ends: the end
 * itself must wake the parked loop so that it auto-advances, and not
 * before (the sleep completes after the call ended). */
Test(test_clock, dropped_blocking_call_releases_auto_advance)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    atomic_store(&call_started, 0);
    atomic_store(&call_ended, 0);
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    drop_when_started d = { .base = { &drop_when_started_vt },
                            .b = pn_spawn_blocking(marked_slow_call, NULL) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&d)), 0);
    pn_sleep_future s = pn_sleep(PN_SEC(1));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(atomic_load(&call_ended), 1, "the clock jumped during the call");
    cr_assert_eq(pn_now(), t0 + PN_SEC(1));
    pn_runtime_free(rt);
  }
}

/* The loop parks while the call runs; the call's end is slowed down right
 * between its count going to 0 and its wake of the loop: the loop still
 * wakes and auto-advances (no lost wake-up), and only after the end. */
static void slow_blocking_done(const char *name, void *arg)
{
    (void)arg;
    if (!strcmp(name, "clock.blocking_done")) {
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

Test(test_clock, blocking_done_wakes_a_parked_loop)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    atomic_store(&call_started, 0);
    atomic_store(&call_ended, 0);
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    pn__point_set_hook(slow_blocking_done);
    drop_when_started d = { .base = { &drop_when_started_vt },
                            .b = pn_spawn_blocking(marked_slow_call, NULL) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&d)), 0);
    pn_sleep_future s = pn_sleep(PN_SEC(2));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(atomic_load(&call_ended), 1);
    cr_assert_eq(pn_now(), t0 + PN_SEC(2));
    pn__point_set_hook(NULL);
    pn_runtime_free(rt);
  }
}

/* A call dropped before a pool thread took it never runs: it no longer
 * holds the clock. */
Test(test_clock, queued_blocking_call_dropped)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    waker_probe probe = { 0 };
    pn_blocking_future b = pn_spawn_blocking(slow_call, NULL);
    probed_drop pd = probed_drop_of(PN_FUTURE(&b), &probe);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&pd)), 0);
    cr_assert_eq(pd.first, PN_PENDING);
    pn_sleep_future s = pn_sleep(PN_SEC(1));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(pn_now(), t0 + PN_SEC(1));
    cr_assert_eq(waker_probe_held(&probe), 0);
    pn_runtime_free(rt);
  }
}

/* ---- advance from inside ------------------------------------------------------------ */

typedef struct self_advancer {
    pn_future base;
    int step;
    pn_sleep_future s;
    int err;
    pn_instant done_at;
} self_advancer;

static pn_poll self_advancer_poll(pn_future *f, pn_cx *cx)
{
    self_advancer *a = (self_advancer *)f;
    if (a->step == 0) {
        a->s = pn_sleep(PN_SEC(3));
        cr_assert_eq(pn_future_poll(PN_FUTURE(&a->s), cx), PN_PENDING);
        a->err = pn_time_advance(cx->rt, PN_SEC(3));   /* fires our sleep: wakes us */
        a->step = 1;
        return PN_PENDING;
    }
    if (pn_future_poll(PN_FUTURE(&a->s), cx) == PN_PENDING)
        return PN_PENDING;
    a->done_at = pn_now();
    return PN_READY;
}

static const pn_future_vtable self_advancer_vt = { self_advancer_poll, NULL, "self_advancer" };

Test(test_clock, advance_from_inside_the_runtime)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    pn_instant t0 = pn_now();
    self_advancer a = { .base = { &self_advancer_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&a)), 0);
    cr_assert_eq(a.err, 0);
    cr_assert_eq(a.done_at, t0 + PN_SEC(3));
    pn_runtime_free(rt);
  }
}

/* ---- pause / resume and errors ---------------------------------------------------------- */

Test(test_clock, pause_and_resume_a_running_clock)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_not(pn_time_is_paused(rt));
    cr_assert_eq(pn_time_advance(rt, 1), -EINVAL);
    cr_assert_eq(pn_time_resume(rt), -EINVAL);
    cr_assert_eq(pn_time_pause(rt), 0);
    cr_assert(pn_time_is_paused(rt));
    cr_assert_eq(pn_time_pause(rt), -EALREADY);
    pn_instant t = pn_now();
    cr_assert_eq(pn_runtime_now(rt), t);
    cr_assert_eq(pn_time_advance(rt, PN_SEC(5)), 0);
    cr_assert_eq(pn_now(), t + PN_SEC(5));
    pn_sleep_future s = pn_sleep(PN_SEC(60));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(pn_now(), t + PN_SEC(65));
    cr_assert_eq(pn_time_resume(rt), 0);
    cr_assert_not(pn_time_is_paused(rt));
    /* running again, from where it stood: never back */
    pn_instant r1 = pn_now();
    cr_assert_geq(r1, t + PN_SEC(65));
    pn_sleep_future s2 = pn_sleep(PN_MS(1));        /* real time again */
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s2)), 0);
    cr_assert_geq(pn_now(), pn_sleep_deadline(&s2));
    cr_assert_eq(pn_time_advance(rt, 1), -EINVAL);
    pn_runtime_free(rt);
}

Test(test_clock, errors)
{
    cr_assert_eq(pn_time_pause(NULL), -EINVAL);
    cr_assert_eq(pn_time_resume(NULL), -EINVAL);
    cr_assert_eq(pn_time_advance(NULL, 1), -EINVAL);
    cr_assert_not(pn_time_is_paused(NULL));

    /* A multi-thread runtime has a virtual clock only if made paused. */
    pn_runtime *mt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    cr_assert_eq(pn_time_pause(mt), -ENOTSUP);
    cr_assert_eq(pn_time_advance(mt, 1), -ENOTSUP);
    cr_assert_eq(pn_time_resume(mt), -ENOTSUP);
    cr_assert_not(pn_time_is_paused(mt));
    pn_runtime_free(mt);
    mt = paused_flavour(1);
    if (mt) {
        cr_assert_eq(pn_time_pause(mt), -EALREADY);
        cr_assert_eq(pn_time_resume(mt), 0);
        cr_assert_eq(pn_time_advance(mt, 1), -EINVAL);
        cr_assert_eq(pn_time_resume(mt), -EINVAL);
        pn_runtime_free(mt);
    }

    /* After shutdown. */
    for (int fl = 0; fl < NFLAVOURS; fl++) {
        pn_runtime *rt = paused_flavour(fl);
        if (!rt)
            continue;                       /* multi-thread on uring */
        cr_assert_eq(pn_runtime_shutdown(rt), 0);
        cr_assert_eq(pn_time_advance(rt, 1), -ESHUTDOWN);
        cr_assert_eq(pn_time_resume(rt), -ESHUTDOWN);
        pn_runtime_free(rt);
    }
}

/* A pending sleep whose tick was reached by an advance that stopped short
 * of its deadline (the same wheel tick) is held, not woken early, and is
 * still dropped cleanly. */
Test(test_clock, held_entry_dropped_cleanly)
{
    pn_runtime *rt = paused_new();
    pn_instant t0 = pn_now();
    pn_instant w = 0;
    pn_join_handle *h = spawn_sleeper(rt, PN_TIMER_TICK_NS * 3 + PN_TIMER_TICK_NS / 2, &w);
    run_a_little(rt);
    /* step through the tick in 1 ns short of the deadline */
    cr_assert_eq(pn_time_advance(rt, PN_TIMER_TICK_NS * 3 + PN_TIMER_TICK_NS / 2 - 1), 0);
    run_a_little(rt);
    cr_assert_eq(w, 0);
    cr_assert_eq(armed_of(rt), 1);
    pn_join_handle_abort(h);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, -ECANCELED);
    pn_join_handle_free(h);
    cr_assert_eq(armed_of(rt), 0);
    cr_assert_eq(pn_now(), t0 + PN_TIMER_TICK_NS * 3 + PN_TIMER_TICK_NS / 2 - 1);
    pn_runtime_free(rt);
}

/* ---- the wheel's exact minimum (what auto-advance jumps to) ---------------------- */

#include "timer/wheel.h"

static uint64_t xr_state = 0x9e3779b97f4a7c15ull;

static uint64_t xr(void)
{
    uint64_t x = xr_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return xr_state = x;
}

static void drop_fired(pn_timer_entry *e, void *arg)
{
    (void)arg;
    e->state = 2;                       /* fired: out of the model */
}

/* Random entries over every level, random advances and removals: after each
 * step pn__wheel_min_deadline equals the brute-force minimum. */
Test(test_clock, wheel_min_deadline_is_exact)
{
#define NW 400
    static pn_timer_entry es[NW];
    pn__wheel w;
    pn_instant now = PN_SEC(1000) + 12345;
    pn__wheel_init(&w, now);
    memset(es, 0, sizeof(es));
    const uint64_t spans[] = { PN_US(50), PN_MS(3), PN_MS(200), PN_SEC(10), PN_SEC(600),
                               PN_SEC(36000), PN_SEC(86400) * 40, PN_SEC(86400) * 4000 };
    for (int i = 0; i < NW; i++) {
        es[i].deadline = now + xr() % spans[xr() % 8];
        es[i].state = 1;
        pn__wheel_insert(&w, &es[i]);
    }
    for (int step = 0; step < 300; step++) {
        pn_instant m = UINT64_MAX;
        for (int i = 0; i < NW; i++)
            if (es[i].state == 1 && es[i].deadline < m)
                m = es[i].deadline;
        cr_assert_eq(pn__wheel_min_deadline(&w), m, "step %d", step);
        switch (xr() % 3) {
        case 0: {                       /* jump to the minimum, as auto-advance does */
            if (m == UINT64_MAX)
                break;
            now = m;
            pn__wheel_advance(&w, (now + PN_TIMER_TICK_NS - 1) & ~(PN_TIMER_TICK_NS - 1),
                              drop_fired, NULL);
            break;
        }
        case 1: {                       /* remove one */
            int i = (int)(xr() % NW);
            if (es[i].state == 1) {
                pn__wheel_remove(&w, &es[i]);
                es[i].state = 0;
            }
            break;
        }
        default: {                      /* re-insert one later */
            int i = (int)(xr() % NW);
            if (es[i].state == 1)
                pn__wheel_remove(&w, &es[i]);
            es[i].deadline = now + 1 + xr() % spans[xr() % 8];
            es[i].state = 1;
            pn__wheel_insert(&w, &es[i]);
            break;
        }
        }
    }
#undef NW
}

/* ---- stress: many tasks, plain-thread spawns, aborts ---------------------------- */

/* A task: `n` sleeps of pseudo-random lengths, each checked to end at
 * exactly its deadline; counts what it did into shared totals. */
typedef struct chain {
    pn_future base;
    int pc;
    int n, i;
    uint64_t seed;
    pn_sleep_future s;
    pn_instant start;
    uint64_t dur;
    atomic_int *sleeps_done, *exact_misses, *chains_done;
} chain;

static uint64_t chain_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static pn_poll chain_poll(pn_future *f, pn_cx *cx)
{
    chain *c = (chain *)f;
    PN_ASYNC_BEGIN(c->pc);
    for (c->i = 0; c->i < c->n; c->i++) {
        /* 1 ns .. ~1 h, biased to short */
        c->dur = 1 + chain_next(&c->seed) % (PN_SEC(1) << (chain_next(&c->seed) % 12));
        c->start = pn_now();
        c->s = pn_sleep(c->dur);
        PN_AWAIT(c->pc, &c->s, cx);
        if (pn_now() != c->start + c->dur)
            atomic_fetch_add(c->exact_misses, 1);
        atomic_fetch_add(c->sleeps_done, 1);
    }
    atomic_fetch_add(c->chains_done, 1);
    PN_ASYNC_END(c->pc);
}

static void chain_drop(pn_future *f)
{
    chain *c = (chain *)f;
    if (c->pc > 0)
        pn_future_drop(PN_FUTURE(&c->s));
}

static const pn_future_vtable chain_vt = { chain_poll, chain_drop, "chain" };

typedef struct spawner {
    pn_runtime *rt;
    int count, base_seed;
    pn_join_handle **handles;
    atomic_int *sleeps_done, *exact_misses, *chains_done;
} spawner;

static void *spawner_main(void *arg)
{
    spawner *sp = arg;
    for (int i = 0; i < sp->count; i++) {
        chain c = { .base = { &chain_vt }, .n = 1 + i % 5,
                    .seed = 0x1234567ull * (uint64_t)(sp->base_seed + i + 1),
                    .sleeps_done = sp->sleeps_done, .exact_misses = sp->exact_misses,
                    .chains_done = sp->chains_done };
        cr_assert_eq(pn_spawn(sp->rt, PN_FUTURE(&c), sizeof(c), &sp->handles[i]), 0);
        if (i % 16 == 0)
            sched_yield();
    }
    return NULL;
}

#define NSPAWNERS 3
#define PER_SPAWNER 100

Test(test_clock, stress_plain_thread_spawns_and_aborts)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    pn_runtime *rt = paused_flavour(fl);
    if (!rt)
        continue;                       /* multi-thread on uring */
    atomic_int sleeps_done = 0, exact_misses = 0, chains_done = 0;
    static pn_join_handle *handles[NSPAWNERS][PER_SPAWNER];
    spawner sp[NSPAWNERS];
    pthread_t th[NSPAWNERS];
    int expected_sleeps = 0;
    for (int t = 0; t < NSPAWNERS; t++) {
        sp[t] = (spawner){ .rt = rt, .count = PER_SPAWNER, .base_seed = t * PER_SPAWNER,
                           .handles = handles[t], .sleeps_done = &sleeps_done,
                           .exact_misses = &exact_misses, .chains_done = &chains_done };
        for (int i = 0; i < PER_SPAWNER; i++)
            expected_sleeps += 1 + i % 5;
        cr_assert_eq(pthread_create(&th[t], NULL, spawner_main, &sp[t]), 0);
    }
    /* The loop runs (and auto-advances) while the threads spawn. */
    for (int k = 0; k < 50; k++) {
        pn_sleep_future s = pn_sleep(PN_MS(k % 7 + 1));
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    }
    for (int t = 0; t < NSPAWNERS; t++)
        pthread_join(th[t], NULL);
    /* Abort every 7th chain (pending or done: both fine), join the rest. */
    int aborted = 0;
    for (int t = 0; t < NSPAWNERS; t++)
        for (int i = 0; i < PER_SPAWNER; i++) {
            pn_join_handle *h = handles[t][i];
            if ((t * PER_SPAWNER + i) % 7 == 0) {
                bool finished = pn_join_handle_is_finished(h);
                pn_join_handle_abort(h);
                pn_join_future j = pn_join(h);
                cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
                if (j.res == -ECANCELED) {
                    cr_assert_not(finished);
                    aborted++;
                    expected_sleeps -= 1 + i % 5; /* at most; checked below */
                }
                pn_join_handle_free(h);
            } else {
                join(rt, h);
            }
        }
    cr_assert_eq(atomic_load(&exact_misses), 0, "%d sleeps ended off their deadline",
                 atomic_load(&exact_misses));
    cr_assert_eq(atomic_load(&chains_done), NSPAWNERS * PER_SPAWNER - aborted);
    cr_assert_geq(atomic_load(&sleeps_done), expected_sleeps);
    cr_assert_eq(armed_of(rt), 0, "an aborted chain left its sleep armed");
    pn_runtime_free(rt);
  }
}

/* Multi-thread: resume, sleep in real time, pause again, advance from a
 * plain thread while this one waits in pn_block_on (allowed there). */
typedef struct advancer {
    pn_runtime *rt;
    int err;
} advancer;

static void *advancer_main(void *arg)
{
    advancer *a = arg;
    struct timespec ts = { 0, 20 * 1000000L };
    nanosleep(&ts, NULL);
    a->err = pn_time_advance(a->rt, PN_SEC(3600));
    return NULL;
}

Test(test_clock, multi_thread_pause_resume_and_remote_advance)
{
    pn_runtime *rt = paused_flavour(1);
    if (!rt)
        return;                         /* uring: the paused clock needs epoll */
    pn_instant t0 = pn_now();
    cr_assert_eq(pn_time_resume(rt), 0);
    pn_sleep_future s = pn_sleep(PN_MS(2));            /* real time */
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_geq(pn_now(), pn_sleep_deadline(&s));
    cr_assert_eq(pn_time_pause(rt), 0);
    pn_instant t1 = pn_now();
    cr_assert_geq(t1, t0 + PN_MS(2));
    /* A blocking call keeps the clock still while the other thread
     * advances it by an hour: the sleep ends by that advance, exactly. */
    cr_assert_eq(pn_time_advance(rt, 0), 0);
    advancer a = { .rt = rt, .err = 1 };
    pthread_t th;
    pn_blocking_future b = pn_spawn_blocking(slow_call, NULL);   /* 30 ms */
    pn_sleep_future s2 = pn_sleep(PN_SEC(1800));
    pn_join2_future both = pn_join2(PN_FUTURE(&b), PN_FUTURE(&s2));
    cr_assert_eq(pthread_create(&th, NULL, advancer_main, &a), 0);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&both)), 0);
    pthread_join(th, NULL);
    cr_assert_eq(a.err, 0);
    cr_assert_geq(pn_now(), t1 + PN_SEC(1800));
    pn_runtime_free(rt);
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Multi-thread: an idle paused runtime with a thread in pn_block_on and no
 * timer: every thread sleeps (the whole process uses little CPU). */
Test(test_clock, multi_thread_idle_paused_runtime_parks)
{
    for (int fl = 1; fl < NFLAVOURS; fl++) {
        pn_runtime *rt = paused_flavour(fl);
        if (!rt)
            continue;                       /* multi-thread on uring */
        pn_instant t0 = pn_now();
        int sv[2];
        socket_pair(sv);
        pn_async_fd afd;
        cr_assert_eq(pn_async_fd_init(&afd, sv[0]), 0);
        delayed_write d = { .fd = sv[1], .delay_ms = 200 };
        pthread_t th;
        uint64_t cpu0 = process_cpu_ns(), real0 = real_ns();
        cr_assert_eq(pthread_create(&th, NULL, delayed_write_main, &d), 0);
        byte_reader r = { .base = { &byte_reader_vt }, .afd = &afd };
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&r)), 0);
        uint64_t cpu = process_cpu_ns() - cpu0, real = real_ns() - real0;
        pthread_join(th, NULL);
        cr_assert_eq(r.status, 1);
        cr_assert_eq(r.done_at, t0);
        cr_assert_lt(cpu, real / 2, "%s: the idle runtime used %llu of %llu ns",
                     flavour_names[fl], (unsigned long long)cpu, (unsigned long long)real);
        pn_async_fd_close(&afd);
        close(sv[1]);
        pn_runtime_free(rt);
    }
}

/* ---- stress: I/O between tasks, each pair woken by virtual time ------------------ */

/* A reader task (byte_reader as a task) and a late writer per socket pair,
 * the writer sleeping k s, the reader allowing k + 1 s: every read must
 * win, at exactly k s.  An auto-advance that jumped before the reactor had
 * delivered a write would time a reader out. */
typedef struct timed_writer {
    pn_future base;
    int pc;
    int fd;
    uint64_t after;
    pn_sleep_future s;
} timed_writer;

static pn_poll timed_writer_poll(pn_future *f, pn_cx *cx)
{
    timed_writer *w = (timed_writer *)f;
    PN_ASYNC_BEGIN(w->pc);
    w->s = pn_sleep(w->after);
    PN_AWAIT(w->pc, &w->s, cx);
    cr_assert_eq(write(w->fd, "p", 1), 1);
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable timed_writer_vt = { timed_writer_poll, NULL, "timed_writer" };

#define NPAIRS 16

Test(test_clock, stress_io_pairs_on_virtual_time)
{
  for (int fl = 0; fl < NFLAVOURS; fl++) {
    for (int rep = 0; rep < 4; rep++) {
        pn_runtime *rt = paused_flavour(fl);
        if (!rt)
            continue;                       /* multi-thread on uring */
        pn_instant t0 = pn_now();
        int sv[NPAIRS][2];
        static pn_async_fd afd[NPAIRS];
        pn_join_handle *hr[NPAIRS], *hw[NPAIRS];
        for (int i = 0; i < NPAIRS; i++) {
            socket_pair(sv[i]);
            cr_assert_eq(pn_async_fd_init(&afd[i], sv[i][0]), 0);
            uint64_t k = PN_SEC(1 + (i * 7) % NPAIRS);
            byte_reader r = { .base = { &byte_reader_vt }, .afd = &afd[i], .limit = k + PN_SEC(1) };
            timed_writer w = { .base = { &timed_writer_vt }, .fd = sv[i][1], .after = k };
            cr_assert_eq(pn_spawn(rt, PN_FUTURE(&r), sizeof(r), &hr[i]), 0);
            cr_assert_eq(pn_spawn(rt, PN_FUTURE(&w), sizeof(w), &hw[i]), 0);
        }
        for (int i = 0; i < NPAIRS; i++) {
            uint64_t k = PN_SEC(1 + (i * 7) % NPAIRS);
            pn_join_future j = pn_join(hr[i]);
            cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
            cr_assert_eq(j.res, 0);
            byte_reader *r = j.output;
            cr_assert_eq(r->status, 1, "%s rep %d pair %d: status %d", flavour_names[fl], rep, i,
                         r->status);
            cr_assert_eq(r->done_at, t0 + k, "%s pair %d: read at %lld", flavour_names[fl], i,
                         (long long)(r->done_at - t0));
            pn_join_handle_free(hr[i]);
            join(rt, hw[i]);
        }
        cr_assert_eq(pn_runtime_free(rt), 0);
        for (int i = 0; i < NPAIRS; i++) {
            pn_async_fd_close(&afd[i]);
            close(sv[i][1]);
        }
    }
  }
}
