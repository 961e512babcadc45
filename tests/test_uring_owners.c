/*
 * test_uring_owners.c - who owns what the io_uring reactor has in flight,
 * on whichever backend `make test` picks (each must pass on epoll too: the
 * behaviour checked is the API's, not the backend's).
 *
 *  - two_writers_neither_duplicate_nor_lose: two tasks write to one
 *    stream; in completion mode the send in flight belongs to the future
 *    that queued it, and its result goes to that future only (uio.c,
 *    pn__uio_write).  The order of the polls that used to lose the bytes
 *    is forced with the schedule point "uio.send.done" (core/chaos.h), so
 *    the test fails on every run without the fix.
 *  - block_on_leaves_nothing_that_interrupts_its_thread (and _mt): the
 *    caller's thread owns nothing in the kernel once pn_block_on has
 *    returned.  io_uring runs a request's completion as task work on the
 *    thread that submitted it, and that work interrupts the thread's
 *    syscalls: a blocking recv with a timeout, made there after
 *    pn_block_on returned while the runtime's socket gets data, must time
 *    out (EAGAIN), not fail with EINTR.  The current-thread runtime takes
 *    down what its thread submitted when pn_block_on returns (park_ring,
 *    uring.c); without that the test fails on every run on io_uring.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include "helpers.h"
#include "core/chaos.h"
#include "core/sys.h"
#include "executor/rt.h"
#include "reactor/reactor.h"
#include "reactor/uio.h"

TestSuite(uring_owners, .timeout = PN_TEST_TIMEOUT);

static bool completion_mode(pn_runtime *rt)
{
    return pn__uio_applies(pn__runtime_reactor(rt));
}

/* ---- a send's result goes to the future that queued it -------------------- */

#define WLEN 64

/* What the two writers share.  The first (A) writes at once; the second
 * (B) waits until A's send has completed (the "uio.send.done" point, or
 * A's write returning at once on the readiness path), then polls its
 * write once before A may look at its result: B's poll is the one that
 * used to take A's result. */
static struct two_writers {
    pthread_mutex_t lock;
    bool a_sent;            /* A's send completed (or A's write returned) */
    bool b_polled;          /* B's write was polled after that */
    pn_waker a_waits, b_waits;
    atomic_int point_hits;
} tw = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Park cx's waker in *slot (tw.lock held). */
static void tw_park(pn_waker *slot, pn_cx *cx)
{
    pn_waker old = *slot;
    *slot = pn_waker_clone(cx->waker);
    pn_waker_drop(&old);
}

static void on_point(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "uio.send.done"))
        return;
    atomic_fetch_add(&tw.point_hits, 1);
    pthread_mutex_lock(&tw.lock);
    tw.a_sent = true;
    pn_waker b = tw.b_waits;
    tw.b_waits = PN_WAKER_NONE;
    pthread_mutex_unlock(&tw.lock);
    pn_waker_wake(&b);
}

typedef struct writer_task {
    pn_future base;
    pn_async_fd *afd;
    bool is_a;
    bool started;           /* its write was polled */
    pn_write_future w;
    char bytes[WLEN];
    ssize_t res;
} writer_task;

static pn_poll writer_poll(pn_future *f, pn_cx *cx)
{
    writer_task *t = (writer_task *)f;
    pthread_mutex_lock(&tw.lock);
    if (t->is_a && t->started && tw.a_sent && !tw.b_polled) {
        /* A's send is done: B polls first. */
        tw_park(&tw.a_waits, cx);
        pthread_mutex_unlock(&tw.lock);
        return PN_PENDING;
    }
    if (!t->is_a && !tw.a_sent) {
        tw_park(&tw.b_waits, cx);       /* until A's send is done */
        pthread_mutex_unlock(&tw.lock);
        return PN_PENDING;
    }
    pthread_mutex_unlock(&tw.lock);
    if (!t->started) {
        /* The task's copy of the future never moves from here on. */
        t->w = pn_write(t->afd, t->bytes, WLEN);
        t->started = true;
    }
    pn_poll p = pn_future_poll(PN_FUTURE(&t->w), cx);
    pn_waker wake = PN_WAKER_NONE;
    pthread_mutex_lock(&tw.lock);
    if (t->is_a && p == PN_READY && !tw.a_sent) {
        /* The readiness path: the write was done at once. */
        tw.a_sent = true;
        wake = tw.b_waits;
        tw.b_waits = PN_WAKER_NONE;
    }
    if (!t->is_a && !tw.b_polled) {
        tw.b_polled = true;
        wake = tw.a_waits;
        tw.a_waits = PN_WAKER_NONE;
    }
    pthread_mutex_unlock(&tw.lock);
    pn_waker_wake(&wake);
    if (p == PN_READY)
        t->res = t->w.res;
    return p;
}

static void writer_drop(pn_future *f)
{
    writer_task *t = (writer_task *)f;
    if (t->started)
        pn_future_drop(PN_FUTURE(&t->w));
}

static const pn_future_vtable writer_vt = { writer_poll, writer_drop, "writer" };

/* Spawns A and B and waits for both. */
typedef struct two_writes {
    pn_future base;
    pn_async_fd *a;
    pn_join_handle *h[2];
    pn_join_future j;
    int step;
    ssize_t res[2];
    int status[2];
} two_writes;

static pn_poll two_writes_poll(pn_future *f, pn_cx *cx)
{
    two_writes *s = (two_writes *)f;
    if (s->step == 0) {
        for (int i = 0; i < 2; i++) {
            writer_task t = { .base = { &writer_vt }, .afd = s->a, .is_a = i == 0 };
            memset(t.bytes, i == 0 ? 'A' : 'B', WLEN);
            int err = pn_spawn_cx(cx, PN_FUTURE(&t), sizeof t, &s->h[i]);
            if (err) {
                s->status[0] = s->status[1] = err;
                return PN_READY;     /* (a spawned A finishes detached) */
            }
        }
        s->step = 1;
    }
    while (s->step <= 2) {
        int i = s->step - 1;
        if (!s->j.base.vt)
            s->j = pn_join(s->h[i]);
        if (pn_future_poll(PN_FUTURE(&s->j), cx) == PN_PENDING)
            return PN_PENDING;
        s->status[i] = s->j.res;
        if (s->j.res == 0)
            s->res[i] = ((writer_task *)s->j.output)->res;
        s->j.base.vt = NULL;
        pn_join_handle_free(s->h[i]);
        s->step++;
    }
    return PN_READY;
}

static const pn_future_vtable two_writes_vt = { two_writes_poll, NULL, "two_writes" };

BOTH(uring_owners, two_writers_neither_duplicate_nor_lose)
{
    pn_runtime *rt = flavour_new(fl);
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    pthread_mutex_lock(&tw.lock);
    tw.a_sent = tw.b_polled = false;
    tw.a_waits = tw.b_waits = PN_WAKER_NONE;
    atomic_store(&tw.point_hits, 0);
    pthread_mutex_unlock(&tw.lock);
    pn__point_set_hook(on_point);
    two_writes s = { .base = { &two_writes_vt }, .a = &a };
    AWAIT(rt, s);
    pn__point_set_hook(NULL);
    bool uio = completion_mode(rt);
    cr_assert_eq(s.status[0], 0, "writer A: %s", pn_strerror(s.status[0]));
    cr_assert_eq(s.status[1], 0, "writer B: %s", pn_strerror(s.status[1]));
    if (uio)
        cr_assert_geq(atomic_load(&tw.point_hits), 1, "A's write went through a send");
    char got[4 * WLEN];
    ssize_t n = recv(p[1], got, sizeof got, MSG_DONTWAIT);
    int na = 0, nb = 0;
    for (ssize_t i = 0; i < n; i++) {
        na += got[i] == 'A';
        nb += got[i] == 'B';
    }
    cr_assert_eq(s.res[0], WLEN, "writer A reported %zd", s.res[0]);
    cr_assert_eq(s.res[1], WLEN, "writer B reported %zd", s.res[1]);
    cr_assert_eq(n, 2 * WLEN, "the peer got %zd bytes (%d 'A', %d 'B')", n, na, nb);
    cr_assert_eq(na, WLEN, "the peer got %d 'A' and %d 'B'", na, nb);
    cr_assert_eq(nb, WLEN, "the peer got %d 'A' and %d 'B'", na, nb);
    /* Either block first, neither split. */
    for (int i = 1; i < WLEN; i++)
        cr_assert_eq(got[i], got[0], "the two writes interleaved");
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[1]);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- nothing of a returned pn_block_on interrupts its thread -------------- */

/* A helper that waits until `tid` sleeps in recvfrom(2), then writes a
 * byte to `fd` (the peer of a socket whose receive the runtime may still
 * have armed). */
typedef struct poker {
    pid_t tid;
    int fd;
    atomic_bool wrote_while_blocked;
} poker;

/* Whether thread tid is asleep inside recvfrom (its /proc syscall line
 * names the call it is blocked in). */
static bool blocked_in_recv(pid_t tid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool in = fgets(line, sizeof line, f) && atol(line) == SYS_recvfrom &&
              strncmp(line, "running", 7) != 0;
    fclose(f);
    if (!in)
        return false;
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    f = fopen(path, "r");
    if (!f)
        return false;
    char state = 0;
    if (fgets(line, sizeof line, f)) {
        char *rp = strrchr(line, ')');
        state = rp && rp[1] ? rp[2] : 0;
    }
    fclose(f);
    return state == 'S';
}

static void *poke_when_blocked(void *arg)
{
    poker *p = arg;
    for (int i = 0; i < 20000 && !blocked_in_recv(p->tid); i++)
        sched_yield();                 /* bounded: ~seconds at most */
    bool blocked = blocked_in_recv(p->tid);
    if (write(p->fd, "y", 1) == 1 && blocked)
        atomic_store(&p->wrote_while_blocked, true);
    return NULL;
}

/* A blocking recv with a 100 ms timeout on a fresh socket nobody writes
 * to, on this thread: -1 with errno EAGAIN unless something interrupts it. */
static int recv_timeout_errno(void)
{
    int sp[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    struct timeval tv = { 0, 100 * 1000 };
    cr_assert_eq(setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    char b;
    ssize_t n = recv(sp[0], &b, 1, 0);
    int err = n < 0 ? errno : 0;
    close(sp[0]);
    close(sp[1]);
    return err;
}

/* Then the runtime is freed, and the same recv must time out too: the
 * kernel signals every thread that ever submitted to a ring when it tears
 * the ring down (io_ring_exit_work), so the current-thread runtime's free,
 * on the thread that drove the ring, waits for that signal before it
 * returns (ur_close); the multi-thread runtime's caller thread never
 * submits (on the shared ring, the free's cancel_all did, until it stopped
 * submitting to a ring with nothing in flight).  One flavour per test:
 * each test is a process of its own. */
static void block_on_then_recv(pn_runtime_flavor fl)
{
    int before = count_fds();
    pn_runtime *rt = flavour_new(fl);
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    /* A read that gets data: in completion mode its multishot receive
     * stays armed after it, and the turn armed the eventfd's poll. */
    cr_assert_eq(write(p[1], "x", 1), 1);
    char c = 0;
    pn_read_future r = pn_read(&a, &c, 1);
    AWAIT(rt, r);
    cr_assert_eq(r.res, 1);
    cr_assert_eq(c, 'x');
    /* A plain blocking recv with a timeout on an unrelated socket, on the
     * thread that ran pn_block_on, while the peer of the first socket
     * writes (a completion for the still-armed receive, if any). */
    int sp[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    struct timeval tv = { 0, 300 * 1000 };
    cr_assert_eq(setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    poker pk = { .tid = (pid_t)syscall(SYS_gettid), .fd = p[1] };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, poke_when_blocked, &pk), 0);
    char b;
    ssize_t n = recv(sp[0], &b, 1, 0);
    int err = errno;
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert(atomic_load(&pk.wrote_while_blocked), "the byte was not written during the recv");
    cr_assert_eq(n, -1);
    cr_assert(err == EAGAIN || err == EWOULDBLOCK, "recv: %s (want EAGAIN)", strerror(err));
    close(sp[0]);
    close(sp[1]);
    /* The runtime still reads what came meanwhile. */
    r = pn_read(&a, &c, 1);
    AWAIT(rt, r);
    cr_assert_eq(r.res, 1);
    cr_assert_eq(c, 'y');
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[1]);
    cr_assert_eq(pn_runtime_free(rt), 0);
    err = recv_timeout_errno();
    cr_assert(err == EAGAIN || err == EWOULDBLOCK, "recv after the free: %s (want EAGAIN)",
              strerror(err));
    cr_assert_eq(count_fds(), before, "fds left");
}

Test(uring_owners, block_on_leaves_nothing_that_interrupts_its_thread)
{
    block_on_then_recv(PN_RUNTIME_CURRENT_THREAD);
}

Test(uring_owners, block_on_leaves_nothing_that_interrupts_its_thread_mt)
{
    block_on_then_recv(PN_RUNTIME_MULTI_THREAD);
}
