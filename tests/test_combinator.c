/*
 * test_combinator.c - join and select: completion, outputs, and that every
 * loser or unfinished child is dropped exactly once (and finished ones
 * never).
 */
#include "helpers.h"

TestSuite(combinator, .timeout = PN_TEST_TIMEOUT);

Test(combinator, join_both_waits_for_the_slower)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    steps_future a = steps_new(2, &drops), b = steps_new(5, &drops);
    pn_join2_future j = pn_join2(PN_FUTURE(&a), PN_FUTURE(&b));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(a.left, 0);
    cr_assert_eq(b.left, 0);
    cr_assert_eq(a.polls, 3, "a finished child is not polled again");
    cr_assert_eq(b.polls, 6);
    cr_assert_eq(drops, 0);
    pn_runtime_free(rt);
}

Test(combinator, join_all_of_many)
{
    pn_runtime *rt = rt_new();
    enum { N = 50 };
    steps_future s[N];
    pn_future *ptrs[N];
    for (int i = 0; i < N; i++) {
        s[i] = steps_new(i % 7, NULL);
        ptrs[i] = PN_FUTURE(&s[i]);
    }
    pn_join_all_future j = pn_join_all(ptrs, N);
    cr_assert_eq(j.left, N);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.left, 0);
    for (int i = 0; i < N; i++) {
        cr_assert_null(ptrs[i]);
        cr_assert_eq(s[i].polls, i % 7 + 1);
    }
    /* An empty join is ready at once. */
    pn_join_all_future e = pn_join_all(NULL, 0);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&e)), 0);
    pn_runtime_free(rt);
}

Test(combinator, dropping_a_join_drops_only_unfinished_children)
{
    pn_runtime *rt = rt_new();
    int drops_fast = 0, drops_slow = 0;
    steps_future fast = steps_new(0, &drops_fast);
    forever_future slow = forever_new(&drops_slow);
    pn_join2_future j = pn_join2(PN_FUTURE(&fast), PN_FUTURE(&slow));
    /* Race the join against a short future: select drops the join. */
    steps_future quick = steps_new(2, NULL);
    pn_select2_future s = pn_select2(PN_FUTURE(&j), PN_FUTURE(&quick));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(s.index, 1);
    cr_assert_eq(drops_fast, 0, "a completed child is never dropped");
    cr_assert_eq(drops_slow, 1);
    pn_runtime_free(rt);
}

Test(combinator, select_drops_the_losers_once)
{
    pn_runtime *rt = rt_new();
    int drops[4] = { 0 };
    forever_future f0 = forever_new(&drops[0]), f1 = forever_new(&drops[1]);
    steps_future win = steps_new(3, &drops[2]);
    forever_future f3 = forever_new(&drops[3]);
    pn_future *ptrs[4] = { PN_FUTURE(&f0), PN_FUTURE(&f1), PN_FUTURE(&win), PN_FUTURE(&f3) };
    pn_select_future sel = pn_select(ptrs, 4);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&sel)), 0);
    cr_assert_eq(sel.index, 2);
    cr_assert_eq(drops[0], 1);
    cr_assert_eq(drops[1], 1);
    cr_assert_eq(drops[2], 0, "the winner completed: not dropped");
    cr_assert_eq(drops[3], 1);
    for (int i = 0; i < 4; i++)
        cr_assert_null(ptrs[i]);
    /* Dropping the finished select drops nothing more. */
    pn_future_drop(PN_FUTURE(&sel));
    cr_assert_eq(drops[0] + drops[1] + drops[2] + drops[3], 3);
    pn_runtime_free(rt);
}

/* A child that is always ready must not starve its siblings across polls:
 * the rotation gives each child the first turn in turn. */
typedef struct first_seen { pn_future base; int *order; int *n; int id; int left; } first_seen;
static pn_poll first_seen_poll(pn_future *f, pn_cx *cx)
{
    first_seen *s = (first_seen *)f;
    s->order[(*s->n)++] = s->id;
    if (s->left-- == 0)
        return PN_READY;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}
static const pn_future_vtable first_seen_vt = { first_seen_poll, NULL, "first_seen" };

Test(combinator, select_rotates_its_start)
{
    pn_runtime *rt = rt_new();
    int order[64], n = 0;
    first_seen a = { .base = { &first_seen_vt }, .order = order, .n = &n, .id = 0, .left = 100 };
    first_seen b = { .base = { &first_seen_vt }, .order = order, .n = &n, .id = 1, .left = 2 };
    pn_select2_future s = pn_select2(PN_FUTURE(&a), PN_FUTURE(&b));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(s.index, 1);
    cr_assert_eq(order[0], 0);
    cr_assert_eq(order[2], 1, "second poll starts with the second child");
    pn_runtime_free(rt);
}

Test(combinator, select_on_an_always_ready_pair_picks_one)
{
    pn_runtime *rt = rt_new();
    int d0 = 0, d1 = 0;
    steps_future a = steps_new(0, &d0), b = steps_new(0, &d1);
    pn_select2_future s = pn_select2(PN_FUTURE(&a), PN_FUTURE(&b));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(s.index, 0, "first ready in polling order wins");
    cr_assert_eq(d0, 0);
    cr_assert_eq(d1, 1);
    pn_runtime_free(rt);
}
