/*
 * test_async.c - the PN_ASYNC_* macros: the pn_async state tracks the live
 * child so that pn_async_drop drops exactly it, the int form still works,
 * and an await inside a switch of the body aborts at its first resume.
 */
#include <signal.h>
#include "helpers.h"

/* ---- a parent that awaits: a ready child, a re-assigned child in a loop,
 * a poll expression, a yield, then a child that never completes ---------- */

typedef struct parent {
    pn_future base;
    pn_async as;
    steps_future kid;        /* re-assigned on each turn of the loop */
    steps_future last;       /* pending for as long as these tests poll */
    int turns, polled_expr;
    int stop_at;             /* 1: stop in PN_AWAIT_POLL, 2: in PN_YIELD, 0: at .last */
    int *kid_drops, *last_drops;
} parent;

static pn_poll count_then_ready(parent *p, pn_cx *cx)
{
    if (++p->polled_expr >= 2)
        return PN_READY;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}

static pn_poll parent_poll(pn_future *f, pn_cx *cx)
{
    parent *p = (parent *)f;
    PN_ASYNC_BEGIN(p->as);
    for (p->turns = 0; p->turns < 3; p->turns++) {
        p->kid = steps_new(1, p->kid_drops);
        PN_AWAIT(p->as, &p->kid, cx);
        cr_assert_null(p->as.live, "a READY child is no longer live");
    }
    if (p->stop_at == 1)
        p->polled_expr = -1000;  /* stays pending */
    PN_AWAIT_POLL(p->as, count_then_ready(p, cx));
    cr_assert_null(p->as.live);
    if (p->stop_at == 2) {
        PN_YIELD(p->as, cx);
        return PN_PENDING;       /* never resumed in these tests */
    }
    PN_AWAIT(p->as, &p->last, cx);
    PN_ASYNC_END(p->as);
}

PN_ASYNC_VTABLE(parent_vt, parent, as, parent_poll);

/* `last_steps`: polls of .last before it is ready (1000: never, here). */
static parent parent_new(int stop_at, int last_steps, int *kid_drops, int *last_drops)
{
    return (parent){ .base = { &parent_vt }, .stop_at = stop_at, .kid_drops = kid_drops,
                     .last_drops = last_drops, .last = steps_new(last_steps, last_drops) };
}

/* Poll `f` until it is pending with nothing left to run on its own (each
 * steps child wakes itself), then drop it.  Returns how many polls. */
typedef struct run_then_drop {
    pn_future base;
    pn_future *child;
    int polls, max;
} run_then_drop;

static pn_poll run_then_drop_poll(pn_future *f, pn_cx *cx)
{
    run_then_drop *r = (run_then_drop *)f;
    while (r->polls < r->max) {
        r->polls++;
        pn_waker none = PN_WAKER_NONE;
        pn_cx sub = *cx;
        sub.waker = &none;        /* the steps children's self-wakes go nowhere */
        cr_assert_eq(pn_future_poll(r->child, &sub), PN_PENDING);
    }
    pn_future_drop(r->child);
    return PN_READY;
}

static const pn_future_vtable run_then_drop_vt = { run_then_drop_poll, NULL, "run_then_drop" };

static void run_and_drop(pn_future *child, int polls)
{
    pn_runtime *rt = rt_new();
    run_then_drop r = { .base = { &run_then_drop_vt }, .child = child, .max = polls };
    AWAIT(rt, r);
    pn_runtime_free(rt);
}

Test(async, drop_before_the_first_poll_drops_nothing, .timeout = PN_TEST_TIMEOUT)
{
    int kid = 0, last = 0;
    parent p = parent_new(0, 1000, &kid, &last);
    pn_future_drop(PN_FUTURE(&p));
    cr_assert_eq(kid + last, 0);
    cr_assert_eq(p.as.pc, PN_ASYNC_DONE);
    pn_future_drop(PN_FUTURE(&p));                 /* again: still nothing */
    cr_assert_eq(kid + last, 0);
}

Test(async, drop_drops_the_live_child_only, .timeout = PN_TEST_TIMEOUT)
{
    int kid = 0, last = 0;
    parent p = parent_new(0, 1000, &kid, &last);
    /* 3 children x 2 polls, 2 polls of the expression: the 8th poll parks
     * in .last. */
    run_and_drop(PN_FUTURE(&p), 8);
    cr_assert_eq(p.turns, 3);
    cr_assert_eq(kid, 0, "completed children are not dropped");
    cr_assert_eq(last, 1, "the live child is dropped once");
    cr_assert_null(p.as.live);
}

Test(async, drop_in_a_reassigned_child_drops_that_child, .timeout = PN_TEST_TIMEOUT)
{
    int kid = 0, last = 0;
    parent p = parent_new(0, 1000, &kid, &last);
    run_and_drop(PN_FUTURE(&p), 2);                /* pending in the 2nd child */
    cr_assert_eq(p.turns, 1);
    cr_assert_eq(kid, 1);
    cr_assert_eq(last, 0);
}

Test(async, drop_in_await_poll_or_yield_drops_no_child, .timeout = PN_TEST_TIMEOUT)
{
    for (int stop = 1; stop <= 2; stop++) {
        int kid = 0, last = 0;
        parent p = parent_new(stop, 1000, &kid, &last);
        run_and_drop(PN_FUTURE(&p), 7 + stop);
        cr_assert_null(p.as.live);
        cr_assert_eq(kid + last, 0, "stop %d: no child was live", stop);
    }
}

Test(async, completed_future_drop_is_a_noop, .timeout = PN_TEST_TIMEOUT)
{
    int kid = 0, last = 0;
    parent p = parent_new(0, 0, &kid, &last);
    pn_runtime *rt = rt_new();
    AWAIT(rt, p);
    pn_runtime_free(rt);
    cr_assert_eq(p.as.pc, PN_ASYNC_DONE);
    pn_future_drop(PN_FUTURE(&p));
    cr_assert_eq(kid + last, 0);
}

/* ---- the int form ------------------------------------------------------- */

typedef struct old_style {
    pn_future base;
    int pc;
    pn_sleep_future nap;
    int out;
} old_style;

static pn_poll old_style_poll(pn_future *f, pn_cx *cx)
{
    old_style *t = (old_style *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->nap = pn_sleep(PN_MS(1));
    PN_AWAIT(t->pc, &t->nap, cx);
    PN_YIELD(t->pc, cx);
    t->out = 2;
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable old_style_vt = { old_style_poll, NULL, "old_style" };

Test(async, int_resume_point_still_works, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();
    old_style t = { .base = { &old_style_vt } };
    AWAIT(rt, t);
    cr_assert_eq(t.out, 2);
    cr_assert_eq(PN_ASYNC_AT(t.pc), PN_ASYNC_DONE);
    pn_runtime_free(rt);
}

/* ---- an await inside a switch of the body -------------------------------- */

typedef struct switched {
    pn_future base;
    pn_async as;
    int mode;
} switched;

static pn_poll switched_poll(pn_future *f, pn_cx *cx)
{
    switched *t = (switched *)f;
    PN_ASYNC_BEGIN(t->as);
    switch (t->mode) {
    case 1:
        PN_YIELD(t->as, cx);     /* its resume label belongs to this switch */
        break;
    default:
        break;
    }
    PN_ASYNC_END(t->as);
}

PN_ASYNC_VTABLE(switched_vt, switched, as, switched_poll);

#ifndef NDEBUG
Test(async, await_inside_a_switch_aborts_on_resume, .signal = SIGABRT,
     .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();
    switched t = { .base = { &switched_vt }, .mode = 1 };
    pn_block_on(rt, PN_FUTURE(&t));              /* aborts on the 2nd poll */
    pn_runtime_free(rt);
}
#endif

Test(async, a_switch_without_an_await_is_fine, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();
    switched t = { .base = { &switched_vt }, .mode = 0 };
    AWAIT(rt, t);
    cr_assert_eq(t.as.pc, PN_ASYNC_DONE);
    pn_runtime_free(rt);
}
