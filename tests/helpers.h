/*
 * helpers.h - small futures and fixtures shared by the Criterion suites.
 *
 * Every test sets `.timeout` (see PN_TEST_TIMEOUT): a lost wakeup fails the
 * test through Criterion's watchdog instead of hanging the run.
 */
#ifndef PN_TESTS_HELPERS_H
#define PN_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <pollen.h>

#define PN_TEST_TIMEOUT 20

/* A future that never completes and counts how often it is dropped. */
typedef struct forever_future {
    pn_future base;
    int *drops;
    int polls;
} forever_future;

static inline pn_poll forever_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    ((forever_future *)f)->polls++;
    return PN_PENDING;
}

static inline void forever_drop(pn_future *f)
{
    forever_future *ff = (forever_future *)f;
    if (ff->drops)
        (*ff->drops)++;
}

static const pn_future_vtable forever_vt = { forever_poll, forever_drop, "forever" };

static inline forever_future forever_new(int *drops)
{
    return (forever_future){ .base = { &forever_vt }, .drops = drops };
}

/* Ready after `n` self-woken polls (n + 1 polls in all); counts drops. */
typedef struct steps_future {
    pn_future base;
    int left, polls;
    int *drops;
} steps_future;

static inline pn_poll steps_poll(pn_future *f, pn_cx *cx)
{
    steps_future *s = (steps_future *)f;
    s->polls++;
    if (s->left == 0)
        return PN_READY;
    s->left--;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}

static inline void steps_drop(pn_future *f)
{
    steps_future *s = (steps_future *)f;
    if (s->drops)
        (*s->drops)++;
}

static const pn_future_vtable steps_vt = { steps_poll, steps_drop, "steps" };

static inline steps_future steps_new(int n, int *drops)
{
    return (steps_future){ .base = { &steps_vt }, .left = n, .drops = drops };
}

/* The backend tests run on: POLLEN_BACKEND from the environment (the
 * Makefile runs the suites once per backend), else AUTO. */
static inline pn_backend pn_test_backend(void)
{
    const char *e = getenv("POLLEN_BACKEND");
    if (e && !strcmp(e, "epoll"))
        return PN_BACKEND_EPOLL;
    if (e && (!strcmp(e, "uring") || !strcmp(e, "io_uring")))
        return PN_BACKEND_URING;
    return PN_BACKEND_AUTO;
}

/* A runtime with default config; fails the test on error. */
static inline pn_runtime *rt_new(void)
{
    pn_runtime *rt = NULL;
    int err = pn_runtime_new(NULL, &rt);
    cr_assert_eq(err, 0, "pn_runtime_new: %s", pn_strerror(err));
    return rt;
}

#endif
