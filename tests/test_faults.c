/*
 * test_faults.c - the reactor and the I/O helpers under injected syscall
 * failures: entries of pn__sys are swapped for fakes that fail on a chosen
 * fd a chosen number of times, then behave.  Checked: EINTR is retried,
 * EAGAIN is waited out without a busy loop (syscalls counted), ECONNRESET
 * surfaces, EMFILE from accept4 is returned and not spun on, ENOMEM and
 * epoll_ctl failures during registration leave a clean state that a retry
 * can use, EINTR from epoll_wait is survived, failed reactor creation
 * leaks nothing, a failed wake write does not lose later wakes, and a
 * multi-thread runtime whose epoll_wait keeps failing backs off instead of
 * spinning and recovers.
 * pn__sys_reset() runs in the suite's .fini.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"
#include "core/sys.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"

static void faults_fini(void) { pn__sys_reset(); }

TestSuite(faults, .timeout = PN_TEST_TIMEOUT, .fini = faults_fini);

/* ---- counting wakers and a hand-made context ---------------------------- */

typedef struct wcount { atomic_int wakes, clones, drops; } wcount;
static pn_waker wc_clone(const void *d);
static void wc_wake(const void *d)
{
    atomic_fetch_add(&((wcount *)d)->wakes, 1);
    atomic_fetch_add(&((wcount *)d)->drops, 1);
}
static void wc_wake_by_ref(const void *d) { atomic_fetch_add(&((wcount *)d)->wakes, 1); }
static void wc_drop(const void *d) { atomic_fetch_add(&((wcount *)d)->drops, 1); }
static const pn_waker_vtable wc_vt = { wc_clone, wc_wake, wc_wake_by_ref, wc_drop };
static pn_waker wc_clone(const void *d)
{
    atomic_fetch_add(&((wcount *)d)->clones, 1);
    return (pn_waker){ d, &wc_vt };
}

typedef struct hand { wcount count; pn_waker waker; pn_cx cx; } hand;

static void hand_init(hand *h, pn__reactor *r)
{
    memset(h, 0, sizeof *h);
    h->waker = (pn_waker){ &h->count, &wc_vt };
    h->cx = (pn_cx){ .waker = &h->waker, .reactor = r, .budget = 128 };
}

static pn__reactor *reactor_new(void)
{
    pn__reactor *r = NULL;
    cr_assert_eq(pn__reactor_new(64, PN_BACKEND_EPOLL, &r), 0);
    return r;
}

static void make_pair(int p[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, p), 0);
}

/* ---- the fakes ----------------------------------------------------------- */

static int fault_fd = -1;    /* the fd the fakes fail on (-2: any fd) */
static int fail_left;        /* failures still to inject */
static int fail_errno;
static int calls;            /* calls of the faked entry on fault_fd */

static bool inject(int fd)
{
    if (fd != fault_fd && fault_fd != -2)
        return false;
    calls++;
    if (fail_left > 0) {
        fail_left--;
        errno = fail_errno;
        return true;
    }
    return false;
}

static void arm(int fd, int n, int err)
{
    fault_fd = fd;
    fail_left = n;
    fail_errno = err;
    calls = 0;
}

static ssize_t fake_read(int fd, void *b, size_t n)
{
    return inject(fd) ? -1 : read(fd, b, n);
}

static ssize_t fake_recv(int fd, void *b, size_t n, int flags)
{
    return inject(fd) ? -1 : recv(fd, b, n, flags);
}

static ssize_t fake_send(int fd, const void *b, size_t n, int flags)
{
    return inject(fd) ? -1 : send(fd, b, n, flags);
}

static ssize_t fake_write(int fd, const void *b, size_t n)
{
    return inject(fd) ? -1 : write(fd, b, n);
}

static int fake_accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
    return inject(fd) ? -1 : accept4(fd, a, l, flags);
}

static int fake_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    return inject(fd) ? -1 : epoll_ctl(epfd, op, fd, ev);
}

static int epoll_wait_fails;
static int (*real_epoll_wait)(int, struct epoll_event *, int, const struct timespec *);
static int fake_epoll_wait(int epfd, struct epoll_event *evs, int max, const struct timespec *t)
{
    if (epoll_wait_fails > 0) {
        epoll_wait_fails--;
        errno = EINTR;
        return -1;
    }
    return real_epoll_wait(epfd, evs, max, t);
}

static int malloc_skip;      /* successful mallocs before failures start */
static int malloc_fails;     /* failures to inject after that */
static void *fake_malloc(size_t n)
{
    if (malloc_skip > 0) {
        malloc_skip--;
        return malloc(n);
    }
    if (malloc_fails > 0) {
        malloc_fails--;
        return NULL;
    }
    return malloc(n);
}
static void *fake_calloc(size_t n, size_t s)
{
    if (malloc_skip > 0) {
        malloc_skip--;
        return calloc(n, s);
    }
    if (malloc_fails > 0) {
        malloc_fails--;
        return NULL;
    }
    return calloc(n, s);
}

static int fake_eventfd_fail(unsigned v, int flags)
{
    (void)v;
    (void)flags;
    errno = EMFILE;
    return -1;
}

/* ---- EINTR -------------------------------------------------------------- */

Test(faults, eintr_from_read_and_send_is_retried)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    cr_assert_eq(write(p[1], "abc", 3), 3);
    pn__sys.read = fake_read;
    pn__sys.recv = fake_recv;     /* sockets read with recv(2) */
    arm(p[0], 3, EINTR);
    char buf[8];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 3);
    cr_assert_eq(calls, 4, "three EINTRs retried, then the read (%d calls)", calls);

    pn__sys.send = fake_send;
    arm(p[0], 2, EINTR);
    cr_assert_eq(pn_async_fd_poll_write(&a, &h.cx, "xy", 2, &res), PN_READY);
    cr_assert_eq(res, 2);
    cr_assert_eq(calls, 3);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

Test(faults, eintr_from_epoll_wait_is_survived)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    char buf[8];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    real_epoll_wait = pn__sys.epoll_wait;
    pn__sys.epoll_wait = fake_epoll_wait;
    epoll_wait_fails = 3;
    cr_assert_eq(write(p[1], "q", 1), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pn__reactor_poll(r, -1), 0, "EINTR: a turn with no events");
    cr_assert_eq(h.count.wakes, 0);
    cr_assert_eq(pn__reactor_poll(r, -1), 1, "the event was kept by the kernel");
    cr_assert_eq(h.count.wakes, 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 1);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

/* ---- EAGAIN -------------------------------------------------------------- */

Test(faults, eagain_is_waited_out_without_busy_loop)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    cr_assert_eq(write(p[1], "1", 1), 1);
    pn__sys.read = fake_read;
    pn__sys.recv = fake_recv;     /* sockets read with recv(2) */
    arm(p[0], 3, EAGAIN);
    char buf[8];
    ssize_t res;

    /* Optimistic first try: EAGAIN (fake), readiness cleared, waits. */
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(calls, 1);
    /* The initial edge (data was there) wakes it; EAGAIN again. */
    cr_assert_eq(pn__reactor_poll(r, 0), 1);
    cr_assert_eq(h.count.wakes, 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(calls, 2);
    /* No new edge: polling again does not call read, turning wakes no one. */
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
        cr_assert_eq(pn__reactor_poll(r, 0), 0);
    }
    cr_assert_eq(calls, 2, "no syscall without readiness");
    cr_assert_eq(h.count.wakes, 1, "no self-wake loop");
    /* New data, new edge: EAGAIN once more, then the real read. */
    cr_assert_eq(write(p[1], "2", 1), 1);
    cr_assert_eq(pn__reactor_poll(r, 0), 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(write(p[1], "3", 1), 1);
    cr_assert_eq(pn__reactor_poll(r, 0), 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 3);
    cr_assert_eq(memcmp(buf, "123", 3), 0);
    cr_assert_eq(calls, 4);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

/* ---- errors that surface ------------------------------------------------- */

Test(faults, econnreset_is_surfaced)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    pn__sys.read = fake_read;
    pn__sys.recv = fake_recv;     /* sockets read with recv(2) */
    pn__sys.send = fake_send;
    char buf[8];
    ssize_t res;
    arm(p[0], 1, ECONNRESET);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, -ECONNRESET);
    cr_assert_eq(calls, 1);
    arm(p[0], 1, ECONNRESET);
    cr_assert_eq(pn_async_fd_poll_write(&a, &h.cx, "z", 1, &res), PN_READY);
    cr_assert_eq(res, -ECONNRESET);
    cr_assert_eq(calls, 1);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

Test(faults, emfile_on_accept_is_returned_not_spun_on)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(lst, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(listen(lst, 4), 0);
    cr_assert_eq(getsockname(lst, (struct sockaddr *)&sa, &sl), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sl), 0);
    pn_async_fd l;
    cr_assert_eq(pn_async_fd_init(&l, lst), 0);
    pn__sys.accept4 = fake_accept4;
    arm(lst, 1, EMFILE);
    int res;
    cr_assert_eq(pn_async_fd_poll_accept(&l, &h.cx, &res), PN_READY);
    cr_assert_eq(res, -EMFILE);
    cr_assert_eq(calls, 1, "one try, no spin");
    /* When the caller tries again (fds freed), the connection is there. */
    cr_assert_eq(pn_async_fd_poll_accept(&l, &h.cx, &res), PN_READY);
    cr_assert_geq(res, 0);
    cr_assert_eq(calls, 2);
    close(res);
    close(c);
    pn_async_fd_close(&l);
    pn__reactor_free(r);
}

/* ---- registration failures ------------------------------------------------ */

Test(faults, enomem_during_registration_leaves_clean_state)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    pn__sys.malloc = fake_malloc;
    char buf[4];
    ssize_t res;
    /* 1st malloc (chunk array) fails, then 2nd (the chunk) fails. */
    for (int skip = 0; skip < 2; skip++) {
        malloc_skip = skip;
        malloc_fails = 1;
        cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
        cr_assert_eq(res, -ENOMEM);
        cr_assert_null(a.reg);
        cr_assert_null(a.reactor);
        cr_assert_eq(pn__reactor_count(r), 0);
        cr_assert_eq(h.count.clones, 0, "no waker stored");
    }
    /* Memory is back: the retry registers and works. */
    cr_assert_eq(write(p[1], "m", 1), 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 1);
    cr_assert_eq(pn__reactor_count(r), 1);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

Test(faults, epoll_ctl_failure_during_registration_leaves_clean_state)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    pn__sys.epoll_ctl = fake_epoll_ctl;
    arm(p[0], 1, ENOSPC);
    char buf[4];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, -ENOSPC);
    cr_assert_null(a.reg);
    cr_assert_eq(pn__reactor_count(r), 0);
    cr_assert_eq(write(p[1], "e", 1), 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 1);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

Test(faults, reactor_new_failures_leak_nothing)
{
    pn__reactor *r = (pn__reactor *)1;
    pn__sys.malloc = fake_malloc;
    pn__sys.calloc = fake_calloc;
    for (int skip = 0; skip < 2; skip++) {
        malloc_skip = skip;
        malloc_fails = 1;
        cr_assert_eq(pn__reactor_new(16, PN_BACKEND_EPOLL, &r), -ENOMEM);
        cr_assert_null(r);
    }
    pn__sys.eventfd = fake_eventfd_fail;
    cr_assert_eq(pn__reactor_new(16, PN_BACKEND_EPOLL, &r), -EMFILE);
    cr_assert_null(r);
    pn__sys_reset();
    cr_assert_eq(pn__reactor_new(16, PN_BACKEND_EPOLL, &r), 0);
    pn__reactor_free(r);
}

/* ---- the wake path -------------------------------------------------------- */

Test(faults, failed_wake_write_does_not_lose_later_wakes)
{
    pn__reactor *r = reactor_new();
    pn__sys.write = fake_write;
    arm(-2, 1, EIO);
    pn__reactor_wake(r);   /* the write fails */
    pn__reactor_wake(r);   /* must write again, not trust the flag */
    cr_assert_eq(calls, 2);
    cr_assert_eq(pn__reactor_poll(r, -1), 0, "woken");
    pn__reactor_free(r);
}

/* ---- a reactor that keeps failing, on the multi-thread runtime ------------- */

static _Atomic int ew_fail_left;
static _Atomic uint64_t ew_last_ns, ew_min_gap_ns;
static int (*ew_real)(int, struct epoll_event *, int, const struct timespec *);

static int failing_epoll_wait(int epfd, struct epoll_event *evs, int maxevents,
                              const struct timespec *timeout)
{
    int left = atomic_load(&ew_fail_left);
    while (left > 0 && !atomic_compare_exchange_weak(&ew_fail_left, &left, left - 1))
        ;
    if (left <= 0)
        return ew_real(epfd, evs, maxevents, timeout);
    uint64_t now = pn_now(), last = atomic_exchange(&ew_last_ns, now);
    if (last && now - last < atomic_load(&ew_min_gap_ns))
        atomic_store(&ew_min_gap_ns, now - last);
    errno = EINVAL;
    return -1;
}

/* Before: a failed epoll_wait in the multi-thread runtime's driver was
 * ignored, and a worker parked in it turned again at once (a spin for as
 * long as the failure lasted).  Now each failure is counted and followed
 * by a back-off sleep (1 ms at least) before the driver's next turn, and
 * the runtime works again once epoll does. */
static void reactor_failures_run(pn_driver_mode driver)
{
    setenv("POLLEN_BACKEND", "epoll", 1);     /* the fault is epoll's */
    ew_real = pn__sys.epoll_wait;
    pn__sys.epoll_wait = failing_epoll_wait;
    atomic_store(&ew_fail_left, 12);
    atomic_store(&ew_last_ns, 0);
    atomic_store(&ew_min_gap_ns, UINT64_MAX);
    pn_runtime *rt = mt_driver_new(2, driver);
    pn_sleep_future nap = pn_sleep(1000 * 1000);
    AWAIT(rt, nap);                           /* the timer still fires */
    while (atomic_load(&ew_fail_left) > 0) {  /* workers drive only when idle */
        pn_sleep_future more = pn_sleep(1000 * 1000);
        AWAIT(rt, more);
    }
    pn_runtime_metrics m;
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
    cr_assert_geq(atomic_load(&ew_min_gap_ns), 1000 * 1000,
                  "a failed turn was tried again after %llu ns (no back-off)",
                  (unsigned long long)atomic_load(&ew_min_gap_ns));
    cr_assert_eq(m.reactor_errors, 12, "failed turns counted: %llu",
                 (unsigned long long)m.reactor_errors);
    pn_runtime_free(rt);
    pn__sys_reset();
}

Test(faults, failing_epoll_backs_off_and_recovers_reactor_thread)
{
    reactor_failures_run(PN_DRIVER_REACTOR_THREAD);
}

Test(faults, failing_epoll_backs_off_and_recovers_workers_drive)
{
    reactor_failures_run(PN_DRIVER_WORKERS);
}
