/*
 * test_fiber_review.c - fibers (pollen/fiber.h) at their edges: a runtime
 * freed on another thread than the one that ran its fibers, the usable
 * stack a fiber is promised, the stack layout on large pages.
 */
#include "helpers.h"

#include <pthread.h>
#include <unistd.h>

#include "fiber/stack.h"
#include "fiber/fiber_int.h"

#define RTEST(name) Test(fiber_review, name, .timeout = PN_TEST_TIMEOUT)

/* ---- a current-thread runtime freed on another thread ------------------- */

typedef struct parked_arg {
    _Atomic int started, cleaned;
    int res;
} parked_arg;

static void parked_fn(void *p)
{
    parked_arg *a = p;
    int drops = 0;
    forever_future f = forever_new(&drops);
    atomic_store(&a->started, 1);
    a->res = pn_await(&f);                    /* until the runtime goes */
    atomic_fetch_add(&a->cleaned, 1);
}

static void starter_fn(void *p)
{
    parked_arg *a = p;
    cr_assert_eq(pn_fiber_spawn(pn_fiber_runtime(), parked_fn, a, NULL, NULL), 0);
    while (!atomic_load(&a->started))
        cr_assert_eq(pn_fiber_yield(), 0);
}

static void plain_fn(void *p)
{
    *(int *)p = 7;
}

typedef struct ct_thread {
    pn_runtime *rt;
    parked_arg arg;
    _Atomic int phase;                        /* 1: fibers parked, 2: runtime freed */
    int later;                                /* plain_fn's mark, after the free */
    int later_res;
    size_t count_after;
} ct_thread;

static void *ct_thread_main(void *p)
{
    ct_thread *c = p;
    cr_assert_eq(pn_fiber_run(c->rt, starter_fn, &c->arg, NULL), 0);
    atomic_store(&c->phase, 1);
    while (atomic_load(&c->phase) != 2)
        sched_yield();
    /* The thread goes on using fibers, with another runtime. */
    c->count_after = pn__fiber_thread_count();
    pn_runtime *rt2 = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    c->later_res = pn_fiber_run(rt2, plain_fn, &c->later, NULL);
    pn_runtime_free(rt2);
    return NULL;
}

/* runtime.h lets another thread free a current-thread runtime; its
 * suspended fibers are unwound by that free, and the thread that ran them
 * must be left with nothing of theirs. */
RTEST(current_thread_runtime_freed_on_another_thread)
{
    ct_thread c = { .rt = flavour_new(PN_RUNTIME_CURRENT_THREAD) };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, ct_thread_main, &c), 0);
    while (atomic_load(&c.phase) != 1)
        sched_yield();
    cr_assert_eq(pn_runtime_free(c.rt), 0);
    cr_assert_eq(atomic_load(&c.arg.cleaned), 1, "the parked fiber returned");
    cr_assert_eq(c.arg.res, -ECANCELED);
    cr_assert_eq(pn__fiber_thread_count(), 0);
    atomic_store(&c.phase, 2);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(c.count_after, 0, "the fiber thread still lists a fiber freed elsewhere");
    cr_assert_eq(c.later_res, 0);
    cr_assert_eq(c.later, 7);
}
