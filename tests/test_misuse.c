/*
 * test_misuse.c - what the public calls do when they are called wrongly:
 * NULL arguments, zero and huge sizes, empty combinators, handles used
 * after shutdown, futures dropped before or after they ran.  Each test is
 * one documented behaviour (an error code or a defined no-op); none may
 * crash, hang or leak.
 */
#include <stdint.h>
#include "helpers.h"

TestSuite(misuse, .timeout = PN_TEST_TIMEOUT);

/* A future that is ready at once with a value in its output field. */
typedef struct answer {
    pn_future base;
    int out;
} answer;

static pn_poll answer_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    ((answer *)f)->out = 42;
    return PN_READY;
}

static const pn_future_vtable answer_vt = { answer_poll, NULL, "answer" };

static answer answer_new(void) { return (answer){ .base = { &answer_vt } }; }

/* Spawn an answer, join it and check its output: the runtime still works. */
static void runtime_still_works(pn_runtime *rt)
{
    answer a = answer_new();
    pn_join_handle *h = NULL;
    cr_assert_eq(PN_SPAWN(rt, a, &h), 0);
    pn_join_future j = pn_join_handle_await(h);
    AWAIT(rt, j);
    cr_assert_eq(j.status, 0);
    cr_assert_eq(((answer *)j.output)->out, 42);
    pn_join_handle_free(h);
}

/* ---- pn_spawn: sizes ------------------------------------------------------ */

BOTH(misuse, spawn_with_a_huge_size_is_einval)
{
    pn_runtime *rt = flavour_new(fl);
    answer a = answer_new();
    /* The header plus these sizes wraps around SIZE_MAX, or passes
     * PTRDIFF_MAX: no object that large can exist. */
    const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 40, SIZE_MAX / 2 + 1, PTRDIFF_MAX };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pn_join_handle *h = (pn_join_handle *)1;
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), sizes[i], &h), -EINVAL,
                     "size %zu", sizes[i]);
        cr_assert_null(h, "no handle on failure");
    }
    runtime_still_works(rt);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- combinators with nothing to wait for -------------------------------- */

/* Await `f` with a one-second limit: a future that returns PN_PENDING and
 * never wakes fails the assertion instead of hanging the test. */
static void await_briefly(pn_runtime *rt, pn_future *f)
{
    pn_timeout t = pn_timeout_for(f, PN_MS(1000));
    AWAIT(rt, t);
    cr_assert_eq(t.status, 0, "the future never completed (%s)", pn_strerror(t.status));
}

BOTH(misuse, select_of_no_children_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_select s = pn_select_of(NULL, 0);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, select_of_only_null_children_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_future *futs[3] = { NULL, NULL, NULL };
    pn_select s = pn_select_of(futs, 3);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, select_of_a_null_array_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_select s = pn_select_of(NULL, 4);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, select_either_of_two_nulls_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_select2 s = pn_select_either(NULL, NULL);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, select_with_one_null_child_waits_for_the_other)
{
    pn_runtime *rt = rt_new();
    steps_future b = steps_new(3, NULL);
    pn_select2 s = pn_select_either(NULL, PN_FUTURE(&b));
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, 1);
    cr_assert_eq(b.polls, 4);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, select_polled_again_after_ready_keeps_its_winner)
{
    pn_runtime *rt = rt_new();
    steps_future a = steps_new(0, NULL);
    int drops = 0;
    forever_future b = forever_new(&drops);
    pn_future *futs[2] = { PN_FUTURE(&b), PN_FUTURE(&a) };
    pn_select s = pn_select_of(futs, 2);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, 1);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, 1, "a second poll does not turn the winner into PN_SELECT_NONE");
    cr_assert_eq(drops, 1);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, join_of_no_children_is_ready_at_once)
{
    pn_runtime *rt = flavour_new(fl);
    pn_future *nulls[2] = { NULL, NULL };
    pn_join_all e = pn_join_all_of(NULL, 0), z = pn_join_all_of(NULL, 5),
                a = pn_join_all_of(nulls, 2);
    pn_join2 j = pn_join_both(NULL, NULL);
    await_briefly(rt, PN_FUTURE(&e));
    await_briefly(rt, PN_FUTURE(&z));
    await_briefly(rt, PN_FUTURE(&a));
    await_briefly(rt, PN_FUTURE(&j));
    cr_assert_eq(z.left, 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, join_counts_children_stored_after_it_was_made)
{
    pn_runtime *rt = rt_new();
    pn_future *futs[2] = { NULL, NULL };
    pn_join_all j = pn_join_all_of(futs, 2);
    cr_assert_eq(j.left, 0);
    steps_future a = steps_new(1, NULL), b = steps_new(4, NULL);
    futs[0] = PN_FUTURE(&a);
    futs[1] = PN_FUTURE(&b);
    await_briefly(rt, PN_FUTURE(&j));
    cr_assert_eq(a.left, 0);
    cr_assert_eq(b.left, 0, "the join waited for both late children");
    cr_assert_eq(j.left, 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
