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
