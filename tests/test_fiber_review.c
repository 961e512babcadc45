/*
 * test_fiber_review.c - fibers (pollen/fiber.h) at their edges: a runtime
 * freed on another thread than the one that ran its fibers, the usable
 * stack a fiber is promised, the stack layout on large pages.
 */
#include "helpers.h"

#include <pthread.h>
#include <signal.h>
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

/* ---- the usable stack ------------------------------------------------------ */

typedef struct room_arg {
    size_t room;                              /* usable bytes below fn's frame */
    size_t guard;                             /* the mapping's guard region */
    unsigned char blob[PN_FIBER_ARG_MAX - 2 * sizeof(size_t)];
} room_arg;                                   /* the largest argument copy */
_Static_assert(sizeof(room_arg) == PN_FIBER_ARG_MAX, "room_arg is the largest copy");

static __attribute__((noinline)) void measure(room_arg *a)
{
    volatile char here = 0;
    pn__stack *s = pn__fiber_running_stack();
    cr_assert_not_null(s);
    a->guard = s->map_size - s->usable - sizeof(pn__stack);
    a->room = (size_t)((const char *)&here - (s->map + a->guard));
    (void)here;
}

static void room_fn(void *p)
{
    room_arg *a = p;
    cr_assert_eq(a->blob[sizeof(a->blob) - 1], 0xab, "the copy is whole");
    measure(a);
}

static room_arg *room_out;
static void room_copy_fn(void *p)
{
    room_fn(p);
    *room_out = *(room_arg *)p;
}

/* A fiber gets stack_size usable bytes whatever its argument copy: the
 * control block and the copy come on top (a frame or two of slack). */
RTEST(stack_size_is_usable_whatever_the_argument)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    static room_arg a, out;
    memset(a.blob, 0xab, sizeof(a.blob));
    room_out = &out;
    size_t sizes[] = { PN_FIBER_STACK_MIN, PN_FIBER_STACK_DEFAULT, 100000 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pn_fiber_opts o = { .stack_size = sizes[i], .arg_size = sizeof(a) };
        memset(&out, 0, sizeof(out));
        cr_assert_eq(pn_fiber_run(rt, room_copy_fn, &a, &o), 0);
        cr_assert_geq(out.room, sizes[i] - 512, "stack_size %zu: %zu usable bytes below the function",
                      sizes[i], out.room);
    }
    pn_runtime_free(rt);
}

/* ---- large pages ------------------------------------------------------------ */

/* With 64 KiB pages (aarch64 and ppc64 kernels built so) the guard must be
 * whole pages below a page-aligned stack: mprotect rounds a 16 KiB guard
 * up to a page, which would take the first 48 KiB of the stack with it
 * (and a fault there names no fiber).  Laid out here as if pages were
 * 64 KiB. */
RTEST(guard_is_whole_pages_on_large_pages)
{
    pn__stack_set_page_size((size_t)64 << 10);
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    static room_arg a, out;
    memset(a.blob, 0xab, sizeof(a.blob));
    room_out = &out;
    pn_fiber_opts o = { .arg_size = sizeof(a) };
    cr_assert_eq(pn_fiber_run(rt, room_copy_fn, &a, &o), 0);
    pn_runtime_free(rt);
    pn__stack_set_page_size(0);
    cr_assert_geq(out.guard, (size_t)64 << 10, "guard %zu", out.guard);
    cr_assert_eq(out.guard % ((size_t)64 << 10), 0, "guard %zu", out.guard);
    cr_assert_geq(out.room, PN_FIBER_STACK_DEFAULT - 512, "%zu usable bytes", out.room);
}

/* ---- the SIGSEGV handler ---------------------------------------------------- */

/* The overflow handler is installed with the first stack.  A SIGSEGV that
 * no fault raised (kill -SEGV, raise: a way to get a core) is not a guard
 * hit and does not come again by itself: it must still end the process
 * under the action that was there before (here the default).  The
 * sanitizers install their own SIGSEGV handling. */
#if !defined(PN__ASAN) && !defined(PN__TSAN)   /* they own SIGSEGV */
Test(fiber_review, a_sent_sigsegv_still_kills, .signal = SIGSEGV, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    int mark = 0;
    cr_assert_eq(pn_fiber_run(rt, plain_fn, &mark, NULL), 0);
    pn_runtime_free(rt);
    raise(SIGSEGV);
    cr_assert_fail("still alive after raise(SIGSEGV)");
}
#endif

/* ---- a fiber inside a combinator inside a task ------------------------------ */

typedef struct where_ctx {
    _Atomic int started, cleaned, moved;
} where_ctx;

static void parked_where_fn(void *p)
{
    where_ctx *c = *(where_ctx **)p;
    pthread_t self = pthread_self();
    atomic_fetch_add(&c->started, 1);
    forever_future f = forever_new(NULL);
    cr_assert_eq(pn_await(&f), -ECANCELED);
    if (!pthread_equal(self, pthread_self()))
        atomic_fetch_add(&c->moved, 1);
    atomic_fetch_add(&c->cleaned, 1);
}

/* A hand-written future holding a fiber under a timeout: the task is
 * pinned by the fiber's first poll, and the timeout's drop unwinds the
 * fiber on that same thread. */
typedef struct timed_fiber {
    pn_future base;
    pn_fiber_future fib;
    pn_timeout_future to;
    bool armed;
    int res;
} timed_fiber;

static pn_poll timed_poll(pn_future *f, pn_cx *cx)
{
    timed_fiber *t = (timed_fiber *)f;
    if (!t->armed) {                          /* the task's copy: point at it */
        t->to = pn_timeout(&t->fib.base, PN_MS(2));
        t->armed = true;
    }
    if (pn_future_poll(&t->to.base, cx) == PN_PENDING)
        return PN_PENDING;
    t->res = t->to.res;
    return PN_READY;
}

static void timed_drop(pn_future *f)
{
    timed_fiber *t = (timed_fiber *)f;
    if (t->armed)
        pn_future_drop(&t->to.base);
    else
        pn_future_drop(&t->fib.base);
}

static const pn_future_vtable timed_vt = { timed_poll, timed_drop, "timed_fiber" };

RTEST(a_timeout_around_a_fiber_unwinds_it_where_it_ran)
{
    enum { N = 32 };
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    size_t live0 = pn__stack_live();
    where_ctx c = { 0 };
    where_ctx *cp = &c;
    pn_fiber_opts o = { .arg_size = sizeof(cp) };
    pn_join_handle *h[N];
    for (int i = 0; i < N; i++) {
        timed_fiber t = { .base = { &timed_vt }, .fib = pn_fiber(parked_where_fn, &cp, &o) };
        cr_assert_eq(pn_spawn(rt, &t.base, sizeof(t), &h[i]), 0);
        steps_future busy = steps_new(20, NULL);
        cr_assert_eq(PN_SPAWN(rt, busy, NULL), 0);
    }
    for (int i = 0; i < N; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        cr_assert_eq(((timed_fiber *)j.output)->res, -ETIMEDOUT);
        pn_join_handle_free(h[i]);
    }
    cr_assert_eq(atomic_load(&c.started), N);
    cr_assert_eq(atomic_load(&c.cleaned), N);
    cr_assert_eq(atomic_load(&c.moved), 0, "unwound on another thread than it ran on");
    pn_runtime_free(rt);
    cr_assert_eq(pn__stack_live(), live0);
}

/* ---- spawning while cancelled, nesting at shutdown ---------------------------- */

typedef struct spawner_ctx {
    _Atomic int started, child_ran, spawned, refused, other;
} spawner_ctx;

static void child_fn(void *p)
{
    spawner_ctx *c = *(spawner_ctx **)p;
    atomic_fetch_add(&c->child_ran, 1);
}

static void spawner_fn(void *p)
{
    spawner_ctx *c = *(spawner_ctx **)p;
    atomic_fetch_add(&c->started, 1);
    forever_future f = forever_new(NULL);
    cr_assert_eq(pn_await(&f), -ECANCELED);
    pn_fiber_opts o = { .arg_size = sizeof(c) };
    int err = pn_fiber_spawn(pn_fiber_runtime(), child_fn, &c, &o, NULL);
    atomic_fetch_add(err == 0 ? &c->spawned : err == -ESHUTDOWN ? &c->refused : &c->other, 1);
}

/* Cancelled fibers that spawn fibers: after an abort the child runs; in a
 * shutdown the spawn is refused.  No stack is left either way. */
BOTH(fiber_review, a_cancelled_fiber_spawns_fibers)
{
    enum { N = 8 };
    pn_runtime *rt = flavour_new(fl);
    size_t live0 = pn__stack_live();
    spawner_ctx c = { 0 };
    spawner_ctx *cp = &c;
    pn_fiber_opts o = { .arg_size = sizeof(cp) };
    pn_join_handle *h[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(pn_fiber_spawn(rt, spawner_fn, &cp, &o, i < N / 2 ? &h[i] : NULL), 0);
    while (atomic_load(&c.started) < N) {
        pn_sleep_future s = pn_sleep(PN_MS(1));
        AWAIT(rt, s);
    }
    for (int i = 0; i < N / 2; i++) {
        pn_join_handle_abort(h[i]);
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, -ECANCELED);
        pn_join_handle_free(h[i]);
    }
    while (atomic_load(&c.child_ran) < N / 2) {
        pn_sleep_future s = pn_sleep(PN_MS(1));
        AWAIT(rt, s);
    }
    pn_runtime_free(rt);
    cr_assert_eq(atomic_load(&c.spawned), N / 2);
    cr_assert_eq(atomic_load(&c.refused), N / 2);
    cr_assert_eq(atomic_load(&c.other), 0);
    cr_assert_eq(atomic_load(&c.child_ran), N / 2);
    cr_assert_eq(pn__stack_live(), live0);
}

typedef struct nest_ctx {
    _Atomic int inner_started, inner_cleaned, outer_cleaned, moved;
    int inner_res, outer_res;
} nest_ctx;

static void nest_inner_fn(void *p)
{
    nest_ctx *c = p;
    pthread_t self = pthread_self();
    atomic_fetch_add(&c->inner_started, 1);
    forever_future f = forever_new(NULL);
    c->inner_res = pn_await(&f);
    cr_assert(pn_fiber_cancelled());
    cr_assert_eq(pn_fiber_yield(), -ECANCELED);
    if (!pthread_equal(self, pthread_self()))
        atomic_fetch_add(&c->moved, 1);
    atomic_fetch_add(&c->inner_cleaned, 1);
}

static void nest_outer_fn(void *p)
{
    nest_ctx *c = p;
    pthread_t self = pthread_self();
    pn_fiber_future in = pn_fiber(nest_inner_fn, c, NULL);
    c->outer_res = pn_await(&in);
    cr_assert_eq(atomic_load(&c->inner_cleaned), 1, "the inner fiber returned first");
    if (!pthread_equal(self, pthread_self()))
        atomic_fetch_add(&c->moved, 1);
    atomic_fetch_add(&c->outer_cleaned, 1);
}

/* Freeing the runtime with a fiber suspended inside a fiber it awaits:
 * both return, the inner one first, each on its own thread. */
BOTH(fiber_review, shutdown_unwinds_nested_fibers)
{
    enum { N = 6 };
    pn_runtime *rt = flavour_new(fl);
    size_t live0 = pn__stack_live();
    nest_ctx c[N];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < N; i++)
        cr_assert_eq(pn_fiber_spawn(rt, nest_outer_fn, &c[i], NULL, NULL), 0);
    for (int i = 0; i < N; i++)
        while (!atomic_load(&c[i].inner_started)) {
            pn_sleep_future s = pn_sleep(PN_MS(1));
            AWAIT(rt, s);
        }
    pn_runtime_free(rt);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&c[i].inner_cleaned), 1);
        cr_assert_eq(atomic_load(&c[i].outer_cleaned), 1);
        cr_assert_eq(c[i].inner_res, -ECANCELED);
        cr_assert_eq(c[i].outer_res, -ECANCELED);
        cr_assert_eq(atomic_load(&c[i].moved), 0);
    }
    cr_assert_eq(pn__stack_live(), live0);
}
