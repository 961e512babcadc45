/*
 * timers.c - sleep, timeout, interval and select in one small program.
 *
 * Usage: timers [MS]   (the first sleep lasts MS milliseconds, default 100)
 *
 * One future walks through the timer API with the PN_ASYNC_* macros: it
 * sleeps and reports how late the wake-up was, puts a time limit on a future
 * that never finishes (pn_timeout_future drops it when the limit passes), takes
 * five ticks of an interval, and races two sleeps with pn_select2
 * (the loser is dropped, which unlinks its timer).  While it sleeps the
 * process uses no CPU: the runtime waits in epoll_pwait2 until the deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <pollen.h>

/* A future that never completes: the thing we put a time limit on. */
static pn_poll never_poll(pn_future *f, pn_cx *cx) { (void)f; (void)cx; return PN_PENDING; }
static const pn_future_vtable never_vt = { never_poll, NULL, "never" };

typedef struct tour {
    pn_future base;
    int pc;
    uint64_t first_ms;
    pn_sleep_future nap;
    pn_future never;
    pn_timeout_future limit;
    pn_interval_future every;
    int ticks;
    pn_instant started;
    pn_sleep_future slow, fast;
    pn_select2_future race;
} tour;

static pn_poll tour_poll(pn_future *f, pn_cx *cx)
{
    tour *t = (tour *)f;
    PN_ASYNC_BEGIN(t->pc);

    t->nap = pn_sleep(PN_MS(t->first_ms));
    PN_AWAIT(t->pc, &t->nap, cx);
    printf("slept %llu ms, woke %.1f us after the deadline\n",
           (unsigned long long)t->first_ms,
           (double)(pn_now() - pn_sleep_deadline(&t->nap)) / 1000.0);

    t->never = (pn_future){ &never_vt };
    t->limit = pn_timeout(&t->never, PN_MS(30));
    PN_AWAIT(t->pc, &t->limit, cx);
    printf("timeout after 30 ms: %s\n", t->limit.res == -ETIMEDOUT ? "timed out" : "completed");

    t->started = pn_now();
    t->every = pn_interval(PN_MS(20));
    for (t->ticks = 0; t->ticks < 5; t->ticks++) {
        PN_AWAIT(t->pc, &t->every, cx);       /* an interval is re-awaited per tick */
        printf("tick %d at +%.1f ms\n", t->ticks,
               (double)(t->every.tick - t->started) / 1e6);
    }
    pn_future_drop(PN_FUTURE(&t->every));     /* stop it: unlinks its timer */

    t->slow = pn_sleep(PN_MS(50));
    t->fast = pn_sleep(PN_MS(10));
    t->race = pn_select2(PN_FUTURE(&t->slow), PN_FUTURE(&t->fast));
    PN_AWAIT(t->pc, &t->race, cx);
    printf("select: the %s sleep won\n", t->race.index == 1 ? "10 ms" : "50 ms");

    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable tour_vt = { tour_poll, NULL, "tour" };

int main(int argc, char **argv)
{
    long ms = argc > 1 ? atol(argv[1]) : 100;
    if (ms < 0) {
        fprintf(stderr, "usage: %s [MS]\n", argv[0]);
        return 2;
    }
    pn_runtime *rt;
    int err = pn_runtime_new(NULL, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        return 1;
    }
    tour t = { .base = { &tour_vt }, .first_ms = (uint64_t)ms };
    err = pn_block_on(rt, PN_FUTURE(&t));
    pn_runtime_free(rt);
    if (err < 0) {
        fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
        return 1;
    }
    return 0;
}
