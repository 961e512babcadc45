/*
 * test_backend.c - choosing the reactor backend, and the paths where the
 * io_uring backend differs from epoll.
 *
 * Choice: the config value, POLLEN_BACKEND overriding it, AUTO falling
 * back to epoll when ring setup fails (setup made to fail through the
 * pn__sys table with ENOSYS, EPERM and ENOMEM), an explicit URING failing
 * instead, and the choice shown by pn_runtime_backend and the metrics.
 *
 * Threads (run on whichever backend `make test` selects, so both):
 *  - a thread that is not driving the reactor registers an fd while the
 *    driver is blocked: the driver must be woken to arm the watch;
 *  - such a thread closes a watched fd while the driver is blocked: the
 *    peer must see end-of-stream (the kernel let go of the file);
 *  - the thread that armed a watch exits: the watch must keep working
 *    (io_uring cancels an exiting thread's requests; they are re-armed).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"
#include "core/sys.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"

static void backend_fini(void) { pn__sys_reset(); }

TestSuite(backend, .timeout = PN_TEST_TIMEOUT, .fini = backend_fini);

/* Does this machine (and build) set up io_uring at all? */
static bool uring_works(void)
{
    pn__reactor *r = NULL;
    int err = pn__reactor_new(16, PN_BACKEND_URING, &r);
    pn__reactor_free(r);
    return err == 0;
}

static pn_runtime *rt_with(pn_backend b, pn_runtime_flavor fl, int *err)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.backend = b;
    cfg.flavor = fl;
    cfg.workers = 2;
    pn_runtime *rt = NULL;
    *err = pn_runtime_new(&cfg, &rt);
    return rt;
}

/* ---- choice --------------------------------------------------------------- */

Test(backend, names)
{
    cr_assert_str_eq(pn_backend_name(PN_BACKEND_AUTO), "auto");
    cr_assert_str_eq(pn_backend_name(PN_BACKEND_EPOLL), "epoll");
    cr_assert_str_eq(pn_backend_name(PN_BACKEND_URING), "uring");
    cr_assert_null(pn_backend_name((pn_backend)7));
    cr_assert_eq(pn_runtime_backend(NULL), PN_BACKEND_AUTO);
}

Test(backend, explicit_epoll_and_metrics_say_so)
{
    unsetenv("POLLEN_BACKEND");
    for (int fl = 0; fl < 2; fl++) {
        int err;
        pn_runtime *rt = rt_with(PN_BACKEND_EPOLL, (pn_runtime_flavor)fl, &err);
        cr_assert_eq(err, 0);
        cr_assert_eq(pn_runtime_backend(rt), PN_BACKEND_EPOLL);
        pn_runtime_metrics m;
        cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
        cr_assert_eq(m.backend, PN_BACKEND_EPOLL);
        cr_assert_eq(pn_runtime_free(rt), 0);
    }
}

Test(backend, auto_picks_uring_where_it_works)
{
    unsetenv("POLLEN_BACKEND");
    int err;
    pn_runtime *rt = rt_with(PN_BACKEND_AUTO, PN_RUNTIME_CURRENT_THREAD, &err);
    cr_assert_eq(err, 0);
    pn_backend want = uring_works() ? PN_BACKEND_URING : PN_BACKEND_EPOLL;
    cr_assert_eq(pn_runtime_backend(rt), want, "AUTO chose %s",
                 pn_backend_name(pn_runtime_backend(rt)));
    cr_assert_eq(pn_runtime_free(rt), 0);
}

static int setup_errno;
static int fail_uring_init(unsigned entries, struct io_uring *ring,
                           struct io_uring_params *p)
{
    (void)entries, (void)ring, (void)p;
    return -setup_errno;
}

Test(backend, failed_ring_setup_falls_back_to_epoll)
{
    unsetenv("POLLEN_BACKEND");
    /* ENOSYS: old kernel; EPERM: seccomp or kernel.io_uring_disabled;
     * ENOMEM: RLIMIT_MEMLOCK on old kernels. */
    const int errs[] = { ENOSYS, EPERM, ENOMEM };
    pn__sys.uring_init = fail_uring_init;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        setup_errno = errs[i];
        for (int fl = 0; fl < 2; fl++) {
            int err;
            pn_runtime *rt = rt_with(PN_BACKEND_AUTO, (pn_runtime_flavor)fl, &err);
            cr_assert_eq(err, 0, "AUTO must fall back: %s", pn_strerror(err));
            cr_assert_eq(pn_runtime_backend(rt), PN_BACKEND_EPOLL);
            pn_runtime_metrics m;
            cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
            cr_assert_eq(m.backend, PN_BACKEND_EPOLL);
            /* and it works: a sleep completes */
            pn_sleep_future s = pn_sleep(PN_MS(1));
            cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
            cr_assert_eq(pn_runtime_free(rt), 0);
            /* An explicit URING fails with the setup's error (or ENOSYS
             * when pollen was built without liburing). */
            rt = rt_with(PN_BACKEND_URING, (pn_runtime_flavor)fl, &err);
            cr_assert_null(rt);
            cr_assert(err == -errs[i] || err == -ENOSYS, "URING: %s", pn_strerror(err));
        }
    }
}

Test(backend, environment_overrides_config)
{
    int err;
    setenv("POLLEN_BACKEND", "epoll", 1);
    pn_runtime *rt = rt_with(PN_BACKEND_URING, PN_RUNTIME_CURRENT_THREAD, &err);
    cr_assert_eq(err, 0);
    cr_assert_eq(pn_runtime_backend(rt), PN_BACKEND_EPOLL);
    cr_assert_eq(pn_runtime_free(rt), 0);

    setenv("POLLEN_BACKEND", "uring", 1);
    rt = rt_with(PN_BACKEND_EPOLL, PN_RUNTIME_MULTI_THREAD, &err);
    if (uring_works()) {
        cr_assert_eq(err, 0);
        cr_assert_eq(pn_runtime_backend(rt), PN_BACKEND_URING);
        cr_assert_eq(pn_runtime_free(rt), 0);
    } else {
        cr_assert_null(rt);
        cr_assert_lt(err, 0);
    }

    setenv("POLLEN_BACKEND", "kqueue", 1);
    rt = rt_with(PN_BACKEND_AUTO, PN_RUNTIME_CURRENT_THREAD, &err);
    cr_assert_null(rt);
    cr_assert_eq(err, -EINVAL);
    unsetenv("POLLEN_BACKEND");

    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.backend = (pn_backend)9;
    cr_assert_eq(pn_runtime_new(&cfg, &rt), -EINVAL);
}

/* ---- threads (on the backend under test) ---------------------------------- */

typedef struct wcount { atomic_int wakes; } wcount;
static pn_waker wc_clone(const void *d);
static void wc_wake(const void *d) { atomic_fetch_add(&((wcount *)d)->wakes, 1); }
static void wc_drop(const void *d) { (void)d; }
static const pn_waker_vtable wc_vt = { wc_clone, wc_wake, wc_wake, wc_drop };
static pn_waker wc_clone(const void *d) { return (pn_waker){ d, &wc_vt }; }

typedef struct driver {
    pn__reactor *r;
    pthread_t th;
    atomic_bool stop;
    atomic_int turns;
} driver;

/* Turns the reactor, blocking for ever each time, until told to stop. */
static void *drive(void *arg)
{
    driver *d = arg;
    while (!atomic_load(&d->stop)) {
        cr_assert_geq(pn__reactor_poll(d->r, -1), 0);
        atomic_fetch_add(&d->turns, 1);
    }
    return NULL;
}

static void driver_start(driver *d)
{
    d->r = NULL;
    cr_assert_eq(pn__reactor_new(64, pn_test_backend(), &d->r), 0);
    atomic_init(&d->stop, false);
    atomic_init(&d->turns, 0);
    cr_assert_eq(pthread_create(&d->th, NULL, drive, d), 0);
    /* Most likely blocked in its first turn after this (the tests hold
     * either way; this makes the interesting order the usual one). */
    usleep(10000);
}

static void driver_stop(driver *d)
{
    atomic_store(&d->stop, true);
    pn__reactor_wake(d->r);
    pthread_join(d->th, NULL);
    pn__reactor_free(d->r);
}

static void wait_wakes(wcount *c, int n)
{
    /* Bounded by the suite's timeout: a lost wake fails the test. */
    while (atomic_load(&c->wakes) < n)
        usleep(200);
}

Test(backend, registration_from_a_foreign_thread_reaches_a_blocked_driver)
{
    driver d;
    driver_start(&d);
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    wcount c = { 0 };
    pn_waker w = { &c, &wc_vt };
    pn_cx cx = { .waker = &w, .reactor = d.r, .budget = 128 };
    char buf[8];
    ssize_t res;
    /* Registers here, on a thread that never turned this reactor. */
    cr_assert_eq(pn_async_fd_poll_read(&a, &cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(write(p[1], "ping", 4), 4);
    wait_wakes(&c, 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[1]);
    driver_stop(&d);
}

Test(backend, close_from_a_foreign_thread_lets_the_peer_see_the_end)
{
    driver d;
    driver_start(&d);
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    wcount c = { 0 };
    pn_waker w = { &c, &wc_vt };
    pn_cx cx = { .waker = &w, .reactor = d.r, .budget = 128 };
    char buf[8];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    wait_wakes(&c, 1);   /* the pending reader is told */
    /* The peer sees end-of-stream: nothing holds the file any more. */
    struct timeval tv = { 5, 0 };
    cr_assert_eq(setsockopt(p[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    ssize_t got = read(p[1], buf, sizeof buf);
    cr_assert_eq(got, 0, "read: %zd (%s)", got, got < 0 ? strerror(errno) : "data");
    close(p[1]);
    cr_assert_eq(pn__reactor_count(d.r), 0);
    driver_stop(&d);
}

typedef struct armer {
    pn__reactor *r;
    pn_async_fd *a;
    pn_cx *cx;
} armer;

/* Turns the reactor once (so it counts as a driver) and registers. */
static void *arm_and_exit(void *arg)
{
    armer *m = arg;
    cr_assert_geq(pn__reactor_poll(m->r, 0), 0);
    char buf[8];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(m->a, m->cx, buf, sizeof buf, &res), PN_PENDING);
    return NULL;
}

Test(backend, a_watch_outlives_the_thread_that_armed_it)
{
    pn__reactor *r = NULL;
    cr_assert_eq(pn__reactor_new(64, pn_test_backend(), &r), 0);
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    wcount c = { 0 };
    pn_waker w = { &c, &wc_vt };
    pn_cx cx = { .waker = &w, .reactor = r, .budget = 128 };
    armer m = { r, &a, &cx };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, arm_and_exit, &m), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    /* Its thread is gone; data arrives; this thread drives now. */
    cr_assert_eq(write(p[1], "late", 4), 4);
    while (atomic_load(&c.wakes) == 0)
        cr_assert_geq(pn__reactor_poll(r, PN_MS(100)), 0);
    char buf[8];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 4);
    /* And it keeps working for later data. */
    cr_assert_eq(pn_async_fd_poll_read(&a, &cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(write(p[1], "more", 4), 4);
    while (atomic_load(&c.wakes) < 2)
        cr_assert_geq(pn__reactor_poll(r, PN_MS(100)), 0);
    cr_assert_eq(pn_async_fd_poll_read(&a, &cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 4);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[1]);
    pn__reactor_free(r);
}
