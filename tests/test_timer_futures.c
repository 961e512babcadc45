/*
 * test_timer_futures.c - sleep, timeout and interval through the runtime.
 *
 * Owns no library code.  Timing checks on the real clock are one-sided
 * ("never early", "eventually"): the machines are noisy, so no test
 * asserts an upper bound on lateness (bench/bench_sleep_lateness.c
 * measures it).  The tests marked "paused clock" run on a runtime whose
 * clock is virtual (cfg.start_paused): there every instant is exact.
 * Every test also checks that the driver's armed count returns to 0
 * (nothing left linked).
 */
#include "helpers.h"
#include <time.h>
#include "timer/timers.h"
#include "executor/rt.h"

TestSuite(timer_futures, .timeout = PN_TEST_TIMEOUT);

static size_t armed_of(pn_runtime *rt)
{
    return ((pn__timers *)pn__runtime_timers(rt))->armed;
}

/* Let spawned sleepers run until n timers are armed: a nap at a time, as
 * long as it takes (the suite's watchdog bounds it), never one nap and a
 * hope that they all ran within it. */
static void wait_armed(pn_runtime *rt, size_t n)
{
    while (armed_of(rt) < n) {
        pn_sleep_future nap = pn_sleep(PN_MS(1));
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&nap)), 0);
    }
}

/* A current-thread runtime whose clock starts paused (auto-advance). */
static pn_runtime *paused_rt_new(void)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.backend = pn_test_backend();
    cfg.start_paused = true;
    pn_runtime *rt = NULL;
    cr_assert_eq(pn_runtime_new(&cfg, &rt), 0);
    return rt;
}

static void busy_wait(uint64_t ns)
{
    pn_instant end = pn_now() + ns;
    while (pn_now() < end)
        ;
}

/* ---- sleep ------------------------------------------------------------- */

Test(timer_futures, sleep_never_early)
{
    pn_runtime *rt = rt_new();
    const uint64_t durs[] = { 0, 1, PN_US(10), PN_US(70), PN_US(500), PN_MS(1),
                              PN_MS(3), PN_MS(5), PN_MS(10) };
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < sizeof durs / sizeof *durs; i++) {
            pn_sleep_future s = pn_sleep(durs[i]);
            cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
            pn_instant now = pn_now();
            cr_assert_geq(now, pn_sleep_deadline(&s), "sleep of %llu ns completed %llu ns early",
                          (unsigned long long)durs[i],
                          (unsigned long long)(pn_sleep_deadline(&s) - now));
            cr_assert_eq(armed_of(rt), 0);
        }
    pn_runtime_free(rt);
}

Test(timer_futures, sleep_until_past_is_ready_at_once)
{
    pn_runtime *rt = rt_new();
    pn_sleep_future s = pn_sleep_until(0);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    s = pn_sleep_until(pn_now());
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

/* A task that sleeps until its deadline and records when it woke. */
typedef struct sleeper {
    pn_future base;
    int pc;
    pn_sleep_future nap;
    pn_instant deadline, done_at;
} sleeper;

static pn_poll sleeper_poll(pn_future *f, pn_cx *cx)
{
    sleeper *s = (sleeper *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->nap = pn_sleep_until(s->deadline);
    PN_AWAIT(s->pc, &s->nap, cx);
    s->done_at = pn_now();
    PN_ASYNC_END(s->pc);
}

static void sleeper_drop(pn_future *f)
{
    sleeper *s = (sleeper *)f;
    if (s->pc != 0 && s->pc != PN_ASYNC_DONE)
        pn_future_drop(PN_FUTURE(&s->nap));
}

static const pn_future_vtable sleeper_vt = { sleeper_poll, sleeper_drop, "sleeper" };

/* Awaits every join handle in turn. */
#define MANY 1000
typedef struct join_all {
    pn_future base;
    int pc;
    size_t i, n;
    pn_join_handle **h;
    pn_join_future jf;
    int bad;
} join_all;

static pn_poll join_all_poll(pn_future *f, pn_cx *cx)
{
    join_all *j = (join_all *)f;
    PN_ASYNC_BEGIN(j->pc);
    for (j->i = 0; j->i < j->n; j->i++) {
        j->jf = pn_join(j->h[j->i]);
        PN_AWAIT(j->pc, &j->jf, cx);
        sleeper *s = j->jf.output;
        if (j->jf.res != 0 || !s || s->done_at < s->deadline)
            j->bad++;
    }
    PN_ASYNC_END(j->pc);
}

static const pn_future_vtable join_all_vt = { join_all_poll, NULL, "join_all" };

Test(timer_futures, thousand_concurrent_sleeps)
{
    pn_runtime *rt = rt_new();
    pn_join_handle **h = calloc(MANY, sizeof *h);
    cr_assert_not_null(h);
    uint64_t seed = 0x2545f4914f6cdd1dull;
    pn_instant base = pn_now();
    for (size_t i = 0; i < MANY; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        sleeper s = { .base = { &sleeper_vt },
                      .deadline = base + PN_MS(1) + seed % PN_MS(49) };
        cr_assert_eq(PN_SPAWN(rt, s, &h[i]), 0);
    }
    join_all j = { .base = { &join_all_vt }, .n = MANY, .h = h };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.bad, 0, "%d sleeps completed early or failed", j.bad);
    for (size_t i = 0; i < MANY; i++) {
        cr_assert(pn_join_handle_is_finished(h[i]));
        pn_join_handle_free(h[i]);
    }
    cr_assert_eq(armed_of(rt), 0);
    free(h);
    pn_runtime_free(rt);
}

/* Polls a long sleep once (PENDING, armed), then drops it. */
typedef struct poll_then_drop {
    pn_future base;
    pn_sleep_future nap;
    size_t armed_after_poll, armed_after_drop;
    pn_poll first;
} poll_then_drop;

static pn_poll poll_then_drop_poll(pn_future *f, pn_cx *cx)
{
    poll_then_drop *p = (poll_then_drop *)f;
    p->first = pn_future_poll(PN_FUTURE(&p->nap), cx);
    /* polling again with the same waker must not double-link */
    pn_future_poll(PN_FUTURE(&p->nap), cx);
    p->armed_after_poll = ((pn__timers *)cx->timers)->armed;
    pn_future_drop(PN_FUTURE(&p->nap));
    p->armed_after_drop = ((pn__timers *)cx->timers)->armed;
    /* dropping twice is harmless */
    pn_future_drop(PN_FUTURE(&p->nap));
    return PN_READY;
}

static const pn_future_vtable poll_then_drop_vt = { poll_then_drop_poll, NULL, "ptd" };

Test(timer_futures, dropping_pending_sleep_unlinks)
{
    pn_runtime *rt = rt_new();
    poll_then_drop p = { .base = { &poll_then_drop_vt }, .nap = pn_sleep(PN_SEC(3600)) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&p)), 0);
    cr_assert_eq(p.first, PN_PENDING);
    cr_assert_eq(p.armed_after_poll, 1);
    cr_assert_eq(p.armed_after_drop, 0);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

Test(timer_futures, aborting_sleeping_task_unlinks)
{
    pn_runtime *rt = rt_new();
    pn_join_handle *h[10];
    for (int i = 0; i < 10; i++) {
        sleeper s = { .base = { &sleeper_vt }, .deadline = pn_now() + PN_SEC(3600) };
        cr_assert_eq(PN_SPAWN(rt, s, &h[i]), 0);
    }
    wait_armed(rt, 10);
    cr_assert_eq(armed_of(rt), 10);
    for (int i = 0; i < 10; i++)
        pn_join_handle_abort(h[i]);
    for (int i = 0; i < 10; i++) {
        pn_join_future jf = pn_join(h[i]);
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&jf)), 0);
        cr_assert_eq(jf.res, -ECANCELED);
        pn_join_handle_free(h[i]);
    }
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

Test(timer_futures, runtime_free_with_armed_sleeps)
{
    pn_runtime *rt = rt_new();
    for (int i = 0; i < 10; i++) {
        sleeper s = { .base = { &sleeper_vt }, .deadline = pn_now() + PN_SEC(3600) };
        cr_assert_eq(PN_SPAWN(rt, s, NULL), 0);
    }
    wait_armed(rt, 10);
    cr_assert_eq(armed_of(rt), 10);
    pn_runtime_free(rt); /* drops the tasks: nothing leaks (ASan run) */
}

/* ---- sleep_reset --------------------------------------------------------- */

typedef struct reset_fut {
    pn_future base;
    int pc;
    pn_sleep_future nap;
    pn_instant new_deadline, done_at;
    pn_poll first;
} reset_fut;

static pn_poll reset_fut_poll(pn_future *f, pn_cx *cx)
{
    reset_fut *r = (reset_fut *)f;
    PN_ASYNC_BEGIN(r->pc);
    r->nap = pn_sleep(PN_SEC(3600));
    r->first = pn_future_poll(PN_FUTURE(&r->nap), cx);
    r->new_deadline = pn_now() + PN_MS(3);
    /* reset while pending: it keeps its waker, so waiting without polling it
     * again here (a yield) is fine */
    pn_sleep_reset(&r->nap, r->new_deadline);
    PN_YIELD(r->pc, cx);
    PN_AWAIT(r->pc, &r->nap, cx);
    r->done_at = pn_now();
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable reset_fut_vt = { reset_fut_poll, NULL, "reset" };

Test(timer_futures, sleep_reset_pending_and_completed)
{
    pn_runtime *rt = rt_new();
    reset_fut r = { .base = { &reset_fut_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&r)), 0);
    cr_assert_eq(r.first, PN_PENDING);
    cr_assert_geq(r.done_at, r.new_deadline);
    cr_assert_eq(armed_of(rt), 0);

    /* reset a completed sleep: it can be awaited again */
    pn_sleep_future s = pn_sleep(PN_MS(1));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    pn_instant d2 = pn_now() + PN_MS(4);
    pn_sleep_reset(&s, d2);
    cr_assert_eq(pn_sleep_deadline(&s), d2);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_geq(pn_now(), d2);

    /* reset to earlier and later deadlines before the first poll */
    s = pn_sleep(PN_SEC(3600));
    pn_instant d3 = pn_now() + PN_MS(2);
    pn_sleep_reset(&s, d3);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_geq(pn_now(), d3);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

/* ---- timeout ------------------------------------------------------------- */

typedef struct with_timeout {
    pn_future base;
    int pc;
    forever_future inner;
    pn_timeout_future to;
    pn_instant deadline;
} with_timeout;

static pn_poll with_timeout_poll(pn_future *f, pn_cx *cx)
{
    with_timeout *w = (with_timeout *)f;
    PN_ASYNC_BEGIN(w->pc);
    w->to = pn_timeout_at(PN_FUTURE(&w->inner), w->deadline);
    PN_AWAIT(w->pc, &w->to, cx);
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable with_timeout_vt = { with_timeout_poll, NULL, "with_timeout" };

/* Paused clock: the timeout fires at exactly its deadline. */
Test(timer_futures, timeout_fires_on_never_ready_inner)
{
    pn_runtime *rt = paused_rt_new();
    int drops = 0;
    with_timeout w = { .base = { &with_timeout_vt }, .inner = forever_new(&drops),
                       .deadline = pn_now() + PN_MS(5) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&w)), 0);
    cr_assert_eq(w.to.res, -ETIMEDOUT);
    cr_assert_eq(pn_now(), w.deadline);
    cr_assert_eq(drops, 1, "inner dropped %d times", drops);
    cr_assert_geq(w.inner.polls, 1);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

typedef struct timeout_sleep {
    pn_future base;
    int pc;
    pn_sleep_future inner;
    pn_timeout_future to;
    uint64_t limit;
} timeout_sleep;

static pn_poll timeout_sleep_poll(pn_future *f, pn_cx *cx)
{
    timeout_sleep *t = (timeout_sleep *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->to = pn_timeout(PN_FUTURE(&t->inner), t->limit);
    PN_AWAIT(t->pc, &t->to, cx);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable timeout_sleep_vt = { timeout_sleep_poll, NULL, "timeout_sleep" };

Test(timer_futures, timeout_returns_0_when_inner_first)
{
    pn_runtime *rt = rt_new();
    timeout_sleep t = { .base = { &timeout_sleep_vt }, .inner = pn_sleep(PN_MS(3)),
                        .limit = PN_SEC(3600) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&t)), 0);
    cr_assert_eq(t.to.res, 0);
    cr_assert_geq(pn_now(), pn_sleep_deadline(&t.inner));
    cr_assert_eq(armed_of(rt), 0, "the timeout's timer must be unlinked");

    /* an inner future ready at once */
    int drops = 0;
    steps_future st = steps_new(3, &drops);
    pn_timeout_future to = pn_timeout(PN_FUTURE(&st), PN_SEC(3600));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&to)), 0);
    cr_assert_eq(to.res, 0);
    cr_assert_eq(drops, 0, "a completed inner future is never dropped");
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

/* Polls a timeout once, then drops it: inner dropped once, timer unlinked. */
typedef struct drop_timeout {
    pn_future base;
    forever_future inner;
    pn_timeout_future to;
    size_t armed_mid;
} drop_timeout;

static pn_poll drop_timeout_poll(pn_future *f, pn_cx *cx)
{
    drop_timeout *d = (drop_timeout *)f;
    d->to = pn_timeout(PN_FUTURE(&d->inner), PN_SEC(3600));
    cr_assert_eq(pn_future_poll(PN_FUTURE(&d->to), cx), PN_PENDING);
    d->armed_mid = ((pn__timers *)cx->timers)->armed;
    pn_future_drop(PN_FUTURE(&d->to));
    return PN_READY;
}

static const pn_future_vtable drop_timeout_vt = { drop_timeout_poll, NULL, "drop_timeout" };

Test(timer_futures, dropping_timeout_drops_inner_once)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    drop_timeout d = { .base = { &drop_timeout_vt }, .inner = forever_new(&drops) };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&d)), 0);
    cr_assert_eq(d.armed_mid, 1);
    cr_assert_eq(drops, 1);
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

/* ---- interval ------------------------------------------------------------ */

#define TICKS 8
typedef struct ticker {
    pn_future base;
    int pc;
    pn_interval_future iv;
    int k, stall_at;
    uint64_t stall_ns;
    pn_instant ticks[TICKS], delivered[TICKS], stall_end;
} ticker;

static pn_poll ticker_poll(pn_future *f, pn_cx *cx)
{
    ticker *t = (ticker *)f;
    PN_ASYNC_BEGIN(t->pc);
    for (t->k = 0; t->k < TICKS; t->k++) {
        if (t->k == t->stall_at) {
            /* the task is busy: ticks are missed (on a paused clock the
             * busy time is an advance, exactly stall_ns) */
            if (pn_time_is_paused(cx->rt))
                cr_assert_eq(pn_time_advance(cx->rt, t->stall_ns), 0);
            else
                busy_wait(t->stall_ns);
            t->stall_end = pn_now();
        }
        PN_AWAIT(t->pc, &t->iv, cx);
        t->ticks[t->k] = t->iv.tick;
        t->delivered[t->k] = pn_now();
    }
    pn_future_drop(PN_FUTURE(&t->iv));
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable ticker_vt = { ticker_poll, NULL, "ticker" };

static ticker run_ticker(pn_runtime *rt, pn_missed_tick policy, pn_instant start,
                         uint64_t period, int stall_at, uint64_t stall_ns)
{
    ticker t = { .base = { &ticker_vt }, .iv = pn_interval_at(start, period),
                 .stall_at = stall_at, .stall_ns = stall_ns };
    t.iv.missed = policy;
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&t)), 0);
    for (int k = 0; k < TICKS; k++)
        cr_assert_geq(t.delivered[k], t.ticks[k], "tick %d delivered early", k);
    cr_assert_eq(armed_of(rt), 0);
    return t;
}

Test(timer_futures, interval_ticks_on_schedule)
{
    pn_runtime *rt = rt_new();
    const pn_missed_tick pol[] = { PN_MISSED_BURST, PN_MISSED_DELAY, PN_MISSED_SKIP };
    for (int p = 0; p < 3; p++) {
        uint64_t period = PN_MS(2);
        pn_instant start = pn_now() + PN_MS(1);
        ticker t = run_ticker(rt, pol[p], start, period, -1, 0);
        cr_assert_eq(t.ticks[0], start);
        for (int k = 1; k < TICKS; k++) {
            if (pol[p] == PN_MISSED_BURST)
                cr_assert_eq(t.ticks[k], start + (uint64_t)k * period);
            else /* a late wake-up may count as missed under DELAY/SKIP */
                cr_assert_geq(t.ticks[k], t.ticks[k - 1] + period);
            if (pol[p] == PN_MISSED_SKIP)
                cr_assert_eq((t.ticks[k] - start) % period, 0);
        }
    }
    pn_runtime_free(rt);
}

/* Paused clock: no wake-up is late, so every policy stays on the grid and
 * every tick is delivered at exactly its instant. */
Test(timer_futures, interval_ticks_on_schedule_paused)
{
    pn_runtime *rt = paused_rt_new();
    const pn_missed_tick pol[] = { PN_MISSED_BURST, PN_MISSED_DELAY, PN_MISSED_SKIP };
    for (int p = 0; p < 3; p++) {
        uint64_t period = PN_MS(2);
        pn_instant start = pn_now() + PN_MS(1);
        ticker t = run_ticker(rt, pol[p], start, period, -1, 0);
        for (int k = 0; k < TICKS; k++) {
            cr_assert_eq(t.ticks[k], start + (uint64_t)k * period, "policy %d tick %d", p, k);
            cr_assert_eq(t.delivered[k], t.ticks[k]);
        }
    }
    pn_runtime_free(rt);
}

Test(timer_futures, interval_every_first_tick_immediate)
{
    pn_runtime *rt = rt_new();
    pn_instant before = pn_now();
    pn_interval_future iv = pn_interval(PN_MS(1));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&iv)), 0);
    cr_assert_geq(iv.tick, before);
    pn_instant first = iv.tick;
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&iv)), 0);
    cr_assert_eq(iv.tick, first + iv.period);
    cr_assert_eq(pn_sleep_deadline(&iv.timer), iv.tick + iv.period);
    cr_assert_geq(pn_now(), iv.tick);
    pn_future_drop(PN_FUTURE(&iv));
    /* period 0 is taken as 1 ns */
    pn_interval_future z = pn_interval(0);
    cr_assert_eq(z.period, 1);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&z)), 0);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&z)), 0);
    pn_future_drop(PN_FUTURE(&z));
    cr_assert_eq(armed_of(rt), 0);
    pn_runtime_free(rt);
}

/* The task stalls 3.5 periods before tick 2: ticks 2..4 were missed. */
#define P PN_MS(4)
#define STALL (P * 7 / 2)

/* Paused clock: the stall is an advance of exactly STALL inside the task. */
Test(timer_futures, interval_missed_burst)
{
    pn_runtime *rt = paused_rt_new();
    pn_instant start = pn_now() + PN_MS(1);
    ticker t = run_ticker(rt, PN_MISSED_BURST, start, P, 2, STALL);
    cr_assert_eq(t.stall_end, start + P + STALL);
    /* every scheduled instant is delivered, back to back after the stall */
    for (int k = 0; k < TICKS; k++) {
        cr_assert_eq(t.ticks[k], start + (uint64_t)k * P, "tick %d", k);
        pn_instant expect = k >= 2 && t.ticks[k] < t.stall_end ? t.stall_end : t.ticks[k];
        cr_assert_eq(t.delivered[k], expect, "tick %d", k);
    }
    pn_runtime_free(rt);
}

/* Paused clock: DELAY restarts the grid a period after the late tick. */
Test(timer_futures, interval_missed_delay)
{
    pn_runtime *rt = paused_rt_new();
    pn_instant start = pn_now() + PN_MS(1);
    ticker t = run_ticker(rt, PN_MISSED_DELAY, start, P, 2, STALL);
    cr_assert_eq(t.ticks[0], start);
    cr_assert_eq(t.ticks[1], start + P);
    cr_assert_eq(t.ticks[2], start + 2 * P);          /* scheduled on the grid... */
    cr_assert_eq(t.delivered[2], t.stall_end);        /* ...delivered late */
    for (int k = 3; k < TICKS; k++) {
        cr_assert_eq(t.ticks[k], t.stall_end + (uint64_t)(k - 2) * P, "tick %d", k);
        cr_assert_eq(t.delivered[k], t.ticks[k]);
    }
    pn_runtime_free(rt);
}

/* Paused clock: SKIP drops the ticks the stall covered, stays on the grid. */
Test(timer_futures, interval_missed_skip)
{
    pn_runtime *rt = paused_rt_new();
    pn_instant start = pn_now() + PN_MS(1);
    ticker t = run_ticker(rt, PN_MISSED_SKIP, start, P, 2, STALL);
    /* the stall ends at start + 4.5 P: tick 2 (start + 2 P) is delivered
     * late, 3 and 4 are skipped, then 5, 6, ... */
    cr_assert_eq(t.ticks[2], start + 2 * P);
    cr_assert_eq(t.delivered[2], t.stall_end);
    for (int k = 3; k < TICKS; k++) {
        cr_assert_eq(t.ticks[k], start + (uint64_t)(k + 2) * P, "tick %d", k);
        cr_assert_eq(t.delivered[k], t.ticks[k]);
    }
    pn_runtime_free(rt);
}
