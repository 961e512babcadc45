/*
 * helpers.h - small futures and fixtures shared by the Criterion suites.
 *
 * Every test sets `.timeout` (see PN_TEST_TIMEOUT): a lost wakeup fails the
 * test through Criterion's watchdog instead of hanging the run.
 */
#ifndef PN_TESTS_HELPERS_H
#define PN_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <pollen.h>

/* Watchdogs, in seconds.  The chaos build (make test-chaos) slows every
 * atomic and lock on purpose, so its watchdogs are four times longer. */
#ifdef PN_CHAOS
#define PN_TIMEOUT(s) ((s) * 4)
#else
#define PN_TIMEOUT(s) (s)
#endif
#define PN_TEST_TIMEOUT PN_TIMEOUT(20)

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

/* A waker that counts what is done with it: clones taken, wakes, and
 * clones given back (consumed by a wake, or dropped).  A future that was
 * dropped must hold no clone any more: waker_probe_held() is then 0. */
typedef struct waker_probe {
    atomic_int clones, wakes, released;
} waker_probe;

static inline pn_waker waker_probe_clone(const void *d);

static inline void waker_probe_wake_by_ref(const void *d)
{
    atomic_fetch_add(&((waker_probe *)d)->wakes, 1);
}

static inline void waker_probe_wake(const void *d)
{
    waker_probe_wake_by_ref(d);
    atomic_fetch_add(&((waker_probe *)d)->released, 1);
}

static inline void waker_probe_drop(const void *d)
{
    atomic_fetch_add(&((waker_probe *)d)->released, 1);
}

static const pn_waker_vtable waker_probe_vt = { waker_probe_clone, waker_probe_wake,
                                                waker_probe_wake_by_ref, waker_probe_drop };

static inline pn_waker waker_probe_clone(const void *d)
{
    atomic_fetch_add(&((waker_probe *)d)->clones, 1);
    return (pn_waker){ d, &waker_probe_vt };
}

/* Clones of the probe's waker that something still holds. */
static inline int waker_probe_held(waker_probe *p)
{
    return atomic_load(&p->clones) - atomic_load(&p->released);
}

/* Poll `child` once with the probe's waker in place of the task's (the rest
 * of the context is the task's: its runtime, reactor and timers), and drop
 * it if that poll said PN_PENDING.  Ready at once; .first is what the
 * child's poll returned.  Whatever the child registered while pending
 * belongs to the probe, so a drop that forgets to take it back shows in
 * waker_probe_held(), and a wake that reaches it in .wakes. */
typedef struct probed_drop {
    pn_future base;
    pn_future *child;
    waker_probe *probe;
    pn_poll first;
} probed_drop;

static inline pn_poll probed_drop_poll(pn_future *f, pn_cx *cx)
{
    probed_drop *p = (probed_drop *)f;
    pn_waker w = { p->probe, &waker_probe_vt };
    pn_cx sub = *cx;
    sub.waker = &w;
    p->first = pn_future_poll(p->child, &sub);
    cx->budget = sub.budget;
    if (p->first == PN_PENDING)
        pn_future_drop(p->child);
    return PN_READY;
}

static const pn_future_vtable probed_drop_vt = { probed_drop_poll, NULL, "probed_drop" };

static inline probed_drop probed_drop_of(pn_future *child, waker_probe *probe)
{
    return (probed_drop){ .base = { &probed_drop_vt }, .child = child, .probe = probe };
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

/* A runtime of flavour `fl`, with 2 workers when it is the multi-thread
 * one; fails the test on error. */
static inline pn_runtime *flavour_new(pn_runtime_flavor fl)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = fl;
    if (fl == PN_RUNTIME_MULTI_THREAD)
        cfg.workers = 2;
    pn_runtime *rt = NULL;
    int err = pn_runtime_new(&cfg, &rt);
    cr_assert_eq(err, 0, "pn_runtime_new: %s", pn_strerror(err));
    return rt;
}

/* A multi-thread runtime of `workers` workers whose reactor is driven as
 * `driver` says; fails the test on error. */
static inline pn_runtime *mt_driver_new(unsigned workers, pn_driver_mode driver)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = PN_RUNTIME_MULTI_THREAD;
    cfg.workers = workers;
    cfg.driver = driver;
    pn_runtime *rt = NULL;
    int err = pn_runtime_new(&cfg, &rt);
    cr_assert_eq(err, 0, "pn_runtime_new: %s", pn_strerror(err));
    return rt;
}

/* The number of open file descriptors of this process (plus the one
 * opendir holds while counting). */
static inline int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Wait until the peer's other end is gone (POLLRDHUP), whatever it still
 * has unread; fails (instead of hanging) if that never comes. */
static inline void wait_peer_closed(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    int n;
    do
        n = poll(&p, 1, 10000);
    while (n < 0 && errno == EINTR);
    cr_assert_eq(n, 1, "the peer never saw the socket closed");
    cr_assert(p.revents & (POLLRDHUP | POLLHUP));
}

/* pn_block_on a future struct (not a pointer); fails the test if block_on
 * itself fails. */
#define AWAIT(rt, fut)                                                   \
    do {                                                                 \
        int e_ = pn_block_on((rt), PN_FUTURE(&(fut)));                   \
        cr_assert_eq(e_, 0, "pn_block_on: %s", pn_strerror(e_));         \
    } while (0)

/* A test body run on the current-thread runtime, then on the multi-thread
 * one, each run leaving no fd open:
 *     BOTH(suite, name) { ... the runtime flavour is `fl` ... } */
#define BOTH(suite, name)                                                \
    static void name##_on(pn_runtime_flavor fl);                         \
    Test(suite, name)                                                    \
    {                                                                    \
        int before_ = count_fds();                                       \
        name##_on(PN_RUNTIME_CURRENT_THREAD);                            \
        cr_assert_eq(count_fds(), before_, "fds left (current-thread)"); \
        name##_on(PN_RUNTIME_MULTI_THREAD);                              \
        cr_assert_eq(count_fds(), before_, "fds left (multi-thread)");   \
    }                                                                    \
    static void name##_on(pn_runtime_flavor fl)

#endif
