/*
 * test_uring_rings.c - the multi-thread runtime's io_uring rings: one per
 * worker (PN_URING_RINGS_PER_WORKER, SINGLE_ISSUER | DEFER_TASKRUN) or one
 * shared, and the reactor's lanes underneath.
 *
 * A socket's requests stay on the ring of the worker that first did I/O
 * on it.  These tests make a task on the other worker, and a thread that
 * is no worker, use such a socket (deterministically: the first worker is
 * kept busy in a poll until the second has started), check that every
 * byte arrives, that a close from outside lets go of the file at once,
 * that freeing the runtime drains every ring, and that wakes between
 * workers never go through the eventfd.  On epoll (and with the ring
 * shared) they check the same behaviour, without the ring counts.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef PN_WITH_URING
#include <liburing.h>
#endif
#include "helpers.h"
#include "core/sys.h"
#include "executor/rt.h"
#include "reactor/reactor.h"
#include "reactor/uio.h"

TestSuite(uring_rings, .timeout = PN_TEST_TIMEOUT);

static pn_runtime *mt_new(pn_uring_rings rings)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = PN_RUNTIME_MULTI_THREAD;
    cfg.workers = 2;
    cfg.uring_rings = rings;
    pn_runtime *rt = NULL;
    int err = pn_runtime_new(&cfg, &rt);
    cr_assert_eq(err, 0, "pn_runtime_new: %s", pn_strerror(err));
    return rt;
}

static pn_runtime_metrics metrics(pn_runtime *rt)
{
    pn_runtime_metrics m;
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
    return m;
}

/* Whether this kernel sets up a SINGLE_ISSUER | DEFER_TASKRUN ring. */
static bool kernel_has_single_issuer(void)
{
#ifndef PN_WITH_URING
    return false;
#else
    struct io_uring ring;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (io_uring_queue_init_params(4, &ring, &p) < 0)
        return false;
    io_uring_queue_exit(&ring);
    return true;
#endif
}

/* The worker polling right now (its thread's name), or -1 off the workers. */
static int worker_index(void)
{
    char name[16];
    unsigned w;
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 ||
        sscanf(name, "pollen-w%u", &w) != 1)
        return -1;
    return (int)w;
}

/* ---- which rings a runtime gets ----------------------------------------- */

Test(uring_rings, rings_follow_the_config)
{
    unsetenv("POLLEN_URING_RINGS");
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    pn_runtime_metrics m = metrics(rt);
    bool uring = m.backend == PN_BACKEND_URING;
    cr_assert_eq(m.uring_rings, uring ? 2u : 0u, "AUTO with workers driving: one ring each");
    if (uring)
        cr_assert_eq(m.uring_single_issuer, kernel_has_single_issuer());
    cr_assert_eq(pn_runtime_free(rt), 0);

    rt = mt_new(PN_URING_RINGS_SHARED);
    m = metrics(rt);
    cr_assert_eq(m.uring_rings, uring ? 1u : 0u);
    cr_assert_not(m.uring_single_issuer, "a ring several threads submit to");
    cr_assert_eq(pn_runtime_free(rt), 0);

    /* The reactor thread's layout keeps one ring whatever is asked. */
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = PN_RUNTIME_MULTI_THREAD;
    cfg.workers = 2;
    cfg.driver = PN_DRIVER_REACTOR_THREAD;
    cfg.uring_rings = PN_URING_RINGS_PER_WORKER;
    cr_assert_eq(pn_runtime_new(&cfg, &rt), 0);
    cr_assert_eq(metrics(rt).uring_rings, uring ? 1u : 0u);
    cr_assert_eq(pn_runtime_free(rt), 0);

    /* So does the current-thread runtime. */
    rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(metrics(rt).uring_rings, uring ? 1u : 0u);
    cr_assert_eq(pn_runtime_free(rt), 0);

    /* The environment overrides the config; a bad value is refused. */
    setenv("POLLEN_URING_RINGS", "shared", 1);
    rt = mt_new(PN_URING_RINGS_PER_WORKER);
    cr_assert_eq(metrics(rt).uring_rings, uring ? 1u : 0u);
    cr_assert_eq(pn_runtime_free(rt), 0);
    setenv("POLLEN_URING_RINGS", "per-worker", 1);
    rt = mt_new(PN_URING_RINGS_SHARED);
    cr_assert_eq(metrics(rt).uring_rings, uring ? 2u : 0u);
    cr_assert_eq(pn_runtime_free(rt), 0);
    setenv("POLLEN_URING_RINGS", "one-each", 1);
    pn_runtime_config_init(&cfg);
    cr_assert_eq(pn_runtime_new(&cfg, &rt), -EINVAL);
    unsetenv("POLLEN_URING_RINGS");
    cfg.uring_rings = (pn_uring_rings)7;
    cr_assert_eq(pn_runtime_new(&cfg, &rt), -EINVAL);
}

/* ---- the reactor's lanes, driven by threads of the test's ---------------- */

typedef struct lane_thread {
    pn__reactor *r;
    int fd;                     /* a pipe's read end to register */
    pn_async_fd afd;
    atomic_int turns_with_events, turns;
    atomic_bool registered, stop;
} lane_thread;

static void *drive_lane_1(void *arg)
{
    lane_thread *t = arg;
    pn__reactor_adopt_lane(t->r, 1);
    pn__registration *reg;
    cr_assert_eq(pn__reactor_register(t->r, t->fd, NULL, &reg), 0);
    atomic_store(&t->registered, true);
    while (!atomic_load(&t->stop)) {
        int n = pn__reactor_poll(t->r, -1);     /* no timeout: only a wake ends it */
        cr_assert_geq(n, 0);
        atomic_fetch_add(&t->turns, 1);
        if (n > 0)
            atomic_fetch_add(&t->turns_with_events, 1);
    }
    pn__reactor_deregister(t->r, reg);
    pn__reactor_flush(t->r);
    pn__reactor_disown_thread(t->r);            /* drains lane 1 */
    return NULL;
}

static void wait_for(atomic_int *v, int at_least)
{
    pn_instant end = pn_now() + PN_MS(5000);
    while (atomic_load(v) < at_least) {
        cr_assert_lt(pn_now(), end, "the lane's thread was never woken");
        sched_yield();
    }
}

Test(uring_rings, a_lane_is_turned_and_woken_by_its_own_thread)
{
    pn__reactor *r;
    cr_assert_eq(pn__reactor_new_lanes(64, pn_test_backend(), 2, &r), 0);
    bool lanes = pn__reactor_lanes(r) == 2;
    cr_assert_eq(pn__reactor_lanes(r), pn__reactor_backend(r) == PN_BACKEND_URING ? 2u : 1u);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    lane_thread t = { .r = r, .fd = p[0] };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, drive_lane_1, &t), 0);
    while (!atomic_load(&t.registered))
        sched_yield();
    /* Readiness of an fd registered by lane 1's thread ends its wait. */
    cr_assert_eq(write(p[1], "x", 1), 1);
    wait_for(&t.turns_with_events, 1);
    /* So does a wake of that lane, with no event. */
    int before = atomic_load(&t.turns);
    pn__reactor_wake_lane(r, lanes ? 1 : 0);
    wait_for(&t.turns, before + 1);
    atomic_store(&t.stop, true);
    pn__reactor_wake_lane(r, lanes ? 1 : 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    /* Lane 0's thread never came: freeing sends and cancels for it. */
    pn__reactor_free(r);
    close(p[0]);
    close(p[1]);
}

/* ---- a socket used from the other worker -------------------------------- */

#define ROUNDS 100
#define CHUNK 1000

/* The peer: echo every byte back until end of stream. */
static void *echo_peer(void *arg)
{
    int fd = *(int *)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t k = write(fd, buf + off, (size_t)(n - off));
            if (k <= 0)
                return NULL;
            off += k;
        }
    }
    return NULL;
}

/* ROUNDS write-then-read-back round trips on a. */
typedef struct pinger {
    pn_future base;
    int pc;
    pn_async_fd *a;
    atomic_bool *started;
    int worker;                 /* where its first poll ran */
    int round;
    size_t off;
    ssize_t n;
    bool bad;
    char out[CHUNK], in[CHUNK];
} pinger;

static pn_poll pinger_poll(pn_future *f, pn_cx *cx)
{
    pinger *p = (pinger *)f;
    PN_ASYNC_BEGIN(p->pc);
    p->worker = worker_index();
    if (p->started)
        atomic_store(p->started, true);
    for (p->round = 0; p->round < ROUNDS; p->round++) {
        for (int i = 0; i < CHUNK; i++)
            p->out[i] = (char)(p->round * 7 + i);
        for (p->off = 0; p->off < CHUNK; p->off += (size_t)p->n) {
            PN_AWAIT_POLL(p->pc, pn_async_fd_poll_write(p->a, cx, p->out + p->off,
                                                        CHUNK - p->off, &p->n));
            if (p->n <= 0) {
                p->bad = true;
                p->pc = PN_ASYNC_DONE;
                return PN_READY;
            }
        }
        for (p->off = 0; p->off < CHUNK; p->off += (size_t)p->n) {
            PN_AWAIT_POLL(p->pc, pn_async_fd_poll_read(p->a, cx, p->in + p->off,
                                                       CHUNK - p->off, &p->n));
            if (p->n <= 0) {
                p->bad = true;
                p->pc = PN_ASYNC_DONE;
                return PN_READY;
            }
        }
        if (memcmp(p->in, p->out, CHUNK))
            p->bad = true;
    }
    PN_ASYNC_END(p->pc);
}

static const pn_future_vtable pinger_vt = { pinger_poll, NULL, "pinger" };

static pn_poll nothing_poll(pn_future *f, pn_cx *cx)
{
    (void)f, (void)cx;
    return PN_READY;
}

static const pn_future_vtable nothing_vt = { nothing_poll, NULL, "nothing" };

/* Spawn `f` so that the other worker runs it: the first spawn from a task
 * goes to this worker's LIFO slot, the second pushes it to the queue the
 * other worker steals from (and wakes it); then keep this worker busy in
 * this poll until it has started.  False if it never did. */
static bool spawn_on_other_worker(pn_cx *cx, pn_future *f, size_t size, atomic_bool *started,
                                  pn_join_handle **h)
{
    pn_future nothing = { &nothing_vt };
    pn_join_handle *hn;
    cr_assert_eq(pn_spawn_cx(cx, f, size, h), 0);
    cr_assert_eq(pn_spawn_cx(cx, &nothing, sizeof nothing, &hn), 0);
    pn_join_handle_free(hn);
    pn_instant end = pn_now() + PN_MS(5000);
    while (!atomic_load(started))
        if (pn_now() > end)
            return false;
    return true;
}

static int make_pair(pn_async_fd *a)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(pn_async_fd_init(a, sv[0]), 0);
    return sv[1];
}

/* On X: the socket's first I/O (a read: it belongs to X's ring from here),
 * then `then` on the other worker. */
typedef struct binder {
    pn_future base;
    pn_async_fd *a;
    atomic_bool *started;
    pn_future *then;
    size_t then_size;
    pn_join_handle *h;
    int worker;                 /* X */
    bool spawned;
} binder;

static pn_poll binder_poll(pn_future *f, pn_cx *cx)
{
    binder *b = (binder *)f;
    char c;
    ssize_t n;
    b->worker = worker_index();
    cr_assert_eq(pn_async_fd_poll_read(b->a, cx, &c, 1, &n), PN_PENDING);
    b->spawned = spawn_on_other_worker(cx, b->then, b->then_size, b->started, &b->h);
    return PN_READY;
}

static const pn_future_vtable binder_vt = { binder_poll, NULL, "binder" };

/* Run a binder for `then` and return the handle of `then`'s task (and
 * X's index in *x, if x). */
static pn_join_handle *bind_then(pn_runtime *rt, pn_async_fd *a, pn_future *then, size_t size,
                                 atomic_bool *started, int *x)
{
    binder b = { .base = { &binder_vt }, .a = a, .started = started, .then = then,
                 .then_size = size };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&b), sizeof b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert(((binder *)j.output)->spawned, "the other worker never ran it");
    pn_join_handle *then_h = ((binder *)j.output)->h;
    if (x)
        *x = ((binder *)j.output)->worker;
    pn_join_handle_free(h);
    return then_h;
}

Test(uring_rings, a_task_on_the_other_worker_uses_a_socket_of_this_ones_ring)
{
    int before = count_fds();
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    pn_async_fd a;
    int peer = make_pair(&a);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, echo_peer, &peer), 0);
    atomic_bool started = false;
    pinger p = { .base = { &pinger_vt }, .a = &a, .started = &started };
    int x;
    pn_join_handle *ph = bind_then(rt, &a, PN_FUTURE(&p), sizeof p, &started, &x);
    cr_assert_geq(x, 0);
    pn_join_future pj = pn_join(ph);
    AWAIT(rt, pj);
    cr_assert_eq(pj.res, 0);
    pinger *done = pj.output;
    cr_assert_neq(done->worker, x, "the pinger started on the other worker");
    cr_assert_not(done->bad, "a round trip lost, reordered or failed");
    cr_assert_eq(done->round, ROUNDS);
    pn_join_handle_free(ph);

    cr_assert_eq(pn_async_fd_close(&a), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), before);
}

/* ---- a socket of a worker's ring used and closed by a user's thread ------ */

/* The first I/O on a, on a worker. */
typedef struct touch {
    pn_future base;
    pn_async_fd *a;
    int worker;
    ssize_t n;
} touch;

static pn_poll touch_poll(pn_future *f, pn_cx *cx)
{
    touch *t = (touch *)f;
    t->worker = worker_index();
    pn_poll r = pn_async_fd_poll_write(t->a, cx, "ping", 4, &t->n);
    return r;
}

static const pn_future_vtable touch_vt = { touch_poll, NULL, "touch" };


Test(uring_rings, a_user_thread_uses_and_closes_a_socket_of_a_worker_ring)
{
    int before = count_fds();
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    pn_async_fd a;
    int peer = make_pair(&a);
    touch t = { .base = { &touch_vt }, .a = &a };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&t), sizeof t, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((touch *)j.output)->n, 4);
    cr_assert_geq(((touch *)j.output)->worker, 0);
    pn_join_handle_free(h);
    char got[4];
    cr_assert_eq(read(peer, got, 4), 4);

    /* From here on this thread (no worker) writes and reads it: its
     * requests wait in the worker's ring until that worker, woken, sends
     * them. */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, echo_peer, &peer), 0);
    pinger p = { .base = { &pinger_vt }, .a = &a };
    AWAIT(rt, p);
    cr_assert_not(p.bad);
    cr_assert_eq(p.round, ROUNDS);
    cr_assert_eq(p.worker, -1, "the pinger ran on this thread");

    /* The receive armed by the reads is in the worker's ring: a close
     * from here must have it cancelled before close(2), or the peer
     * would not see the end of the stream. */
    cr_assert_eq(pn_async_fd_close(&a), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);   /* the peer saw it */
    wait_peer_closed(peer);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), before);
}

/* ---- freeing the runtime drains every ring ------------------------------ */

#define NSOCK 16

typedef struct blocked_reader {
    pn_future base;
    pn_async_fd *a;
    ssize_t n;
    char buf[64];
} blocked_reader;

static pn_poll blocked_reader_poll(pn_future *f, pn_cx *cx)
{
    blocked_reader *b = (blocked_reader *)f;
    return pn_async_fd_poll_read(b->a, cx, b->buf, sizeof b->buf, &b->n);
}

static const pn_future_vtable blocked_reader_vt = { blocked_reader_poll, NULL, "blocked" };

Test(uring_rings, freeing_the_runtime_drains_every_worker_ring)
{
    int before = count_fds();
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    static pn_async_fd a[NSOCK];
    int peer[NSOCK];
    static blocked_reader br[NSOCK];
    pn_join_handle *h[NSOCK];
    for (int i = 0; i < NSOCK; i++) {
        peer[i] = make_pair(&a[i]);
        br[i] = (blocked_reader){ .base = { &blocked_reader_vt }, .a = &a[i] };
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&br[i]), sizeof br[i], &h[i]), 0);
    }
    /* Half of them get bytes, so some receives have filled buffers. */
    for (int i = 0; i < NSOCK; i += 2)
        cr_assert_eq(write(peer[i], "hello", 5), 5);
    for (int i = 0; i < NSOCK; i += 2) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        cr_assert_eq(((blocked_reader *)j.output)->n, 5);
    }
    /* The others wait in the kernel, on whichever worker's ring. */
    cr_assert_eq(pn_runtime_free(rt), 0);
    for (int i = 0; i < NSOCK; i++) {
        pn_join_handle_free(h[i]);
        cr_assert_eq(pn_async_fd_close(&a[i]), 0);
        wait_peer_closed(peer[i]);              /* nothing held the file */
        close(peer[i]);
    }
    cr_assert_eq(count_fds(), before);
}

/* ---- wakes between workers never write the eventfd ----------------------- */

static atomic_int worker_writes;
static ssize_t (*real_write)(int, const void *, size_t);

static ssize_t counting_write(int fd, const void *buf, size_t len)
{
    if (worker_index() >= 0)
        atomic_fetch_add(&worker_writes, 1);
    return real_write(fd, buf, len);
}

/* Sets *started when polled. */
typedef struct flagger {
    pn_future base;
    atomic_bool *started;
} flagger;

static pn_poll flagger_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    atomic_store(((flagger *)f)->started, true);
    return PN_READY;
}

static const pn_future_vtable flagger_vt = { flagger_poll, NULL, "flagger" };

/* 50 times: have the other worker (asleep by then) run a child. */
typedef struct bouncer {
    pn_future base;
    int pc;
    int i, misses;
    atomic_bool started;
    flagger child;
    pn_join_handle *h;
} bouncer;

static pn_poll bouncer_poll(pn_future *f, pn_cx *cx)
{
    bouncer *b = (bouncer *)f;
    PN_ASYNC_BEGIN(b->pc);
    for (b->i = 0; b->i < 50; b->i++) {
        atomic_store(&b->started, false);
        b->child = (flagger){ .base = { &flagger_vt }, .started = &b->started };
        if (!spawn_on_other_worker(cx, PN_FUTURE(&b->child), sizeof b->child, &b->started,
                                   &b->h))
            b->misses++;
        pn_join_handle_free(b->h);
        PN_YIELD(b->pc, cx);
    }
    PN_ASYNC_END(b->pc);
}

static const pn_future_vtable bouncer_vt = { bouncer_poll, NULL, "bouncer" };

/* A worker that wakes another (a task it spawned, a task woken on it) does
 * it through the ring, never by writing the eventfd: an IORING_OP_MSG_RING
 * from its own ring to the sleeper's with a ring per worker, from the
 * small waker ring with the ring shared. */
Test(uring_rings, worker_wakes_do_not_write_the_eventfd)
{
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    bool uring = pn_runtime_backend(rt) == PN_BACKEND_URING;
    real_write = pn__sys.write;
    pn__sys.write = counting_write;
    atomic_store(&worker_writes, 0);
    uint64_t unparks = metrics(rt).unparks;
    bouncer b = { .base = { &bouncer_vt } };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&b), sizeof b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((bouncer *)j.output)->misses, 0, "the other worker never ran a child");
    pn_join_handle_free(h);
    int writes = atomic_load(&worker_writes);
    pn__sys.write = real_write;
    cr_assert_gt(metrics(rt).unparks, unparks, "no worker was woken");
    if (uring)                 /* (epoll wakes its driver through the eventfd) */
        cr_assert_eq(writes, 0, "a worker wrote the eventfd %d times", writes);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- freeing while a worker queued on a parked worker's ring ------------- */

/* On worker Y: a write on a socket of X's ring (while X is parked), then
 * keep this poll busy while the runtime is freed.  X must be woken to
 * submit it (and later to leave), whatever Y is doing. */
typedef struct late_writer {
    pn_future base;
    pn_async_fd *a;
    atomic_bool *started, *sent;
    ssize_t n;
} late_writer;

static pn_poll late_writer_poll(pn_future *f, pn_cx *cx)
{
    late_writer *w = (late_writer *)f;
    atomic_store(w->started, true);
    pn_instant end = pn_now() + PN_MS(50);     /* X finishes its poll and parks */
    while (pn_now() < end)
        ;
    pn_poll p = pn_async_fd_poll_write(w->a, cx, "x", 1, &w->n);
    atomic_store(w->sent, true);
    end = pn_now() + PN_MS(200);               /* the runtime is freed meanwhile */
    while (pn_now() < end)
        ;
    if (p == PN_PENDING)
        pn__uio_forget(w->a, PN_WRITABLE, cx->waker);
    return PN_READY;
}

static const pn_future_vtable late_writer_vt = { late_writer_poll, NULL, "late_writer" };

static atomic_bool freed;

static void *free_runtime(void *arg)
{
    cr_assert_eq(pn_runtime_free(arg), 0);
    atomic_store(&freed, true);
    return NULL;
}

Test(uring_rings, freeing_while_a_worker_queued_on_a_parked_ring_does_not_hang)
{
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    pn_async_fd a;
    int peer = make_pair(&a);
    atomic_bool started = false, sent = false;
    late_writer w = { .base = { &late_writer_vt }, .a = &a, .started = &started, .sent = &sent };
    pn_join_handle *h = bind_then(rt, &a, PN_FUTURE(&w), sizeof w, &started, NULL);
    while (!atomic_load(&sent))
        sched_yield();
    pn_join_handle_free(h);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, free_runtime, rt), 0);
    pn_instant end = pn_now() + PN_MS(5000);
    while (!atomic_load(&freed) && pn_now() < end)
        usleep(1000);
    cr_assert(atomic_load(&freed), "pn_runtime_free hung");
    cr_assert_eq(pthread_join(th, NULL), 0);
    char c;
    cr_assert_eq(read(peer, &c, 1), 1, "the write reached the peer");
    cr_assert_eq(c, 'x');
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(peer);
}

/* ---- a close from another worker lets go of the file at once ------------- */

/* On Y: close a socket of X's ring (its receive waits there), then, still
 * inside this poll (nothing of Y's is flushed meanwhile), watch the peer. */
typedef struct far_closer {
    pn_future base;
    pn_async_fd *a;
    int peer;
    atomic_bool *started;
    bool peer_saw_it;
} far_closer;

static pn_poll far_closer_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    far_closer *c = (far_closer *)f;
    atomic_store(c->started, true);
    pn_instant end = pn_now() + PN_MS(50);     /* X finishes its poll and parks */
    while (pn_now() < end)
        ;
    cr_assert_eq(pn_async_fd_close(c->a), 0);
    struct pollfd p = { .fd = c->peer, .events = POLLRDHUP };
    c->peer_saw_it = poll(&p, 1, 5000) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
    return PN_READY;
}

static const pn_future_vtable far_closer_vt = { far_closer_poll, NULL, "far_closer" };

Test(uring_rings, a_close_from_another_worker_lets_go_of_the_file)
{
    int before = count_fds();
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    pn_async_fd a;
    int peer = make_pair(&a);
    atomic_bool started = false;
    far_closer c = { .base = { &far_closer_vt }, .a = &a, .peer = peer, .started = &started };
    pn_join_handle *h = bind_then(rt, &a, PN_FUTURE(&c), sizeof c, &started, NULL);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert(((far_closer *)j.output)->peer_saw_it,
              "the peer did not see the close while the closing worker stayed busy");
    pn_join_handle_free(h);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), before);
}

/* ---- more requests than another worker's ring holds ---------------------- */

/* Worker X binds every socket to its ring, then stays busy in one poll (so
 * it submits nothing) while worker Y, in one poll: writes a byte to each
 * of NFULL sockets (more than X's SQ holds: the rest go by send(2)), reads
 * a socket of X's whose receive cannot be queued (recv(2) and the
 * readiness path then), and closes a socket whose receive is in X's ring
 * (its cancel waits for X's next turn).  Nothing may be lost, hang or stay
 * open. */
#define NFULL 1100      /* > the 1024 entries of a lane's SQ */

static pn_async_fd full_a[NFULL], full_r, full_c;

/* On Y, pinned: a read of full_r that nothing but its own wake polls
 * again.  Its first poll (X still busy, its ring full) must wait. */
typedef struct lone_reader {
    pn_future base;
    int pc;
    atomic_bool *flooded;
    int again;
    ssize_t n;
    char got[8];
} lone_reader;

static pn_poll lone_reader_poll(pn_future *f, pn_cx *cx)
{
    lone_reader *r = (lone_reader *)f;
    PN_ASYNC_BEGIN(r->pc);
    cx->budget = 1000;
    cr_assert_eq(pn_async_fd_poll_read(&full_r, cx, r->got, sizeof r->got, &r->n), PN_PENDING);
    atomic_store(r->flooded, true);          /* X may go on */
    /* Polled again only when that read's waker fires (not at once here). */
    PN_AWAIT_POLL(r->pc, r->again++ ? pn_async_fd_poll_read(&full_r, cx, r->got,
                                                            sizeof r->got, &r->n)
                                    : PN_PENDING);
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable lone_reader_vt = { lone_reader_poll, NULL, "lone_reader" };

typedef struct flooder {
    pn_future base;
    int pc;
    atomic_bool *started, *flooded;
    int left, failed, at_once;
    lone_reader reader;
    pn_join_handle *rh;
    bool done[NFULL];
} flooder;

/* Poll every write not done yet; ready when all are. */
static pn_poll poll_writes(flooder *fl, pn_cx *cx)
{
    for (int i = 0; i < NFULL; i++) {
        ssize_t n = 0;
        if (fl->done[i])
            continue;
        cx->budget = 1000;
        if (pn_async_fd_poll_write(&full_a[i], cx, "x", 1, &n) == PN_PENDING)
            continue;
        fl->done[i] = true;
        fl->left--;
        fl->failed += n != 1;
    }
    return fl->left ? PN_PENDING : PN_READY;
}

static pn_poll flooder_poll(pn_future *f, pn_cx *cx)
{
    flooder *fl = (flooder *)f;
    PN_ASYNC_BEGIN(fl->pc);
    atomic_store(fl->started, true);
    fl->left = NFULL;
    /* Every write is tried in this first poll (those with no room in X's
     * ring are sent at once, by send(2)); the others are polled again
     * below until done. */
    (void)poll_writes(fl, cx);
    fl->at_once = NFULL - fl->left;
    cr_assert_eq(pn_async_fd_close(&full_c), 0);
    /* Nothing to read yet: the read must wait, and be woken. */
    fl->reader = (lone_reader){ .base = { &lone_reader_vt }, .flooded = fl->flooded };
    cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&fl->reader), sizeof fl->reader, &fl->rh), 0);
    PN_AWAIT_POLL(fl->pc, poll_writes(fl, cx));
    PN_ASYNC_END(fl->pc);
}

static const pn_future_vtable flooder_vt = { flooder_poll, NULL, "flooder" };

typedef struct binder_all {
    pn_future base;
    int pc;
    atomic_bool *started, *flooded;
    flooder *then;
    pn_join_handle *h;
    ssize_t wn;
    bool spawned, x_waited;
} binder_all;

static pn_poll binder_all_poll(pn_future *f, pn_cx *cx)
{
    binder_all *b = (binder_all *)f;
    char c;
    ssize_t n;
    PN_ASYNC_BEGIN(b->pc);
    /* full_r is bound by a write, done (its receive is not armed). */
    PN_AWAIT_POLL(b->pc, pn_async_fd_poll_write(&full_r, cx, "r", 1, &b->wn));
    cr_assert_eq(b->wn, 1);
    for (int i = 0; i < NFULL; i++) {
        cx->budget = 1000;
        cr_assert_eq(pn_async_fd_poll_read(&full_a[i], cx, &c, 1, &n), PN_PENDING);
    }
    cx->budget = 1000;
    cr_assert_eq(pn_async_fd_poll_read(&full_c, cx, &c, 1, &n), PN_PENDING);
    pn__reactor_flush(cx->reactor);           /* our receives are in the kernel */
    b->spawned = spawn_on_other_worker(cx, PN_FUTURE(b->then), sizeof *b->then, b->started,
                                       &b->h);
    /* Stay busy (no turn, no submit) until Y has done its part. */
    pn_instant end = pn_now() + PN_MS(10000);
    while (!atomic_load(b->flooded) && pn_now() < end)
        ;
    b->x_waited = atomic_load(b->flooded);
    PN_ASYNC_END(b->pc);
}

static const pn_future_vtable binder_all_vt = { binder_all_poll, NULL, "binder_all" };

Test(uring_rings, a_full_ring_of_another_worker_loses_nothing)
{
    int before = count_fds();
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    static int peer[NFULL];
    for (int i = 0; i < NFULL; i++)
        peer[i] = make_pair(&full_a[i]);
    int peer_r = make_pair(&full_r), peer_c = make_pair(&full_c);
    char r0;
    atomic_bool started = false, flooded = false;
    flooder fl = { .base = { &flooder_vt }, .started = &started, .flooded = &flooded };
    binder_all b = { .base = { &binder_all_vt }, .started = &started, .flooded = &flooded,
                     .then = &fl };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&b), sizeof b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert(((binder_all *)j.output)->spawned);
    cr_assert(((binder_all *)j.output)->x_waited, "worker Y never got through its part");
    pn_join_handle *fh = ((binder_all *)j.output)->h;
    pn_join_handle_free(h);

    /* X turns again: the cancel it was left lets go of the closed socket. */
    wait_peer_closed(peer_c);

    cr_assert_eq(read(peer_r, &r0, 1), 1);     /* the binder's byte */
    /* The read waiting on Y is woken. */
    cr_assert_eq(write(peer_r, "hello", 5), 5);
    pn_join_future fj = pn_join(fh);
    AWAIT(rt, fj);
    flooder *done = fj.output;
    pn_join_future rj = pn_join(done->rh);
    AWAIT(rt, rj);
    lone_reader *rd = rj.output;
    cr_assert_eq(rd->n, 5, "the read: %zd", rd->n);
    cr_assert_eq(memcmp(rd->got, "hello", 5), 0);
    pn_join_handle_free(done->rh);
    cr_assert_eq(done->failed, 0, "writes failed instead of being sent");
    pn_runtime_metrics m = metrics(rt);
    if (m.uring_rings == 2 && m.uring_single_issuer)
        cr_assert_gt(done->at_once, 0, "X's ring never filled up (what this tests)");
    pn_join_handle_free(fh);
    for (int i = 0; i < NFULL; i++) {
        struct pollfd q = { .fd = peer[i], .events = POLLIN };
        cr_assert_eq(poll(&q, 1, 5000), 1, "socket %d: the byte never came", i);
        char c;
        cr_assert_eq(read(peer[i], &c, 1), 1);
        cr_assert_eq(c, 'x');
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
    for (int i = 0; i < NFULL; i++) {
        cr_assert_eq(pn_async_fd_close(&full_a[i]), 0);
        close(peer[i]);
    }
    cr_assert_eq(pn_async_fd_close(&full_r), 0);
    close(peer_r);
    close(peer_c);
    cr_assert_eq(count_fds(), before);
}

/* ---- a readiness wait that finds the ring full ---------------------------- */

/* Both workers busy (lane 0 not turning); this thread, which drives no
 * ring, fills lane 0's SQ with writes, then waits to read a pipe: the
 * pipe's poll finds no room in the SQ, and must still be armed (by lane
 * 0's thread, once it turns), or the read would never be woken. */
#define NPOLLFULL 1100

static pn_async_fd pf_a[NPOLLFULL], pf_pipe;
static atomic_int pf_spinning;
static atomic_bool pf_release, pf_waiting;

static pn_poll spinner_poll(pn_future *f, pn_cx *cx)
{
    (void)f, (void)cx;
    atomic_fetch_add(&pf_spinning, 1);
    pn_instant end = pn_now() + PN_MS(10000);
    while (!atomic_load(&pf_release) && pn_now() < end)
        ;
    return PN_READY;
}

static const pn_future_vtable spinner_vt = { spinner_poll, NULL, "spinner" };

typedef struct pipe_reader {
    pn_future base;
    int pc, again, queued;
    ssize_t n;
    char c;
} pipe_reader;

static pn_poll pipe_reader_poll(pn_future *f, pn_cx *cx)
{
    pipe_reader *m = (pipe_reader *)f;
    PN_ASYNC_BEGIN(m->pc);
    for (int i = 0; i < NPOLLFULL; i++) {
        ssize_t n = 0;
        cx->budget = 1000;
        m->queued += pn_async_fd_poll_write(&pf_a[i], cx, "x", 1, &n) == PN_PENDING;
    }
    cx->budget = 1000;
    cr_assert_eq(pn_async_fd_poll_read(&pf_pipe, cx, &m->c, 1, &m->n), PN_PENDING);
    atomic_store(&pf_waiting, true);
    atomic_store(&pf_release, true);
    /* Polled again only when the read's waker fires. */
    PN_AWAIT_POLL(m->pc, m->again++ ? pn_async_fd_poll_read(&pf_pipe, cx, &m->c, 1, &m->n)
                                    : PN_PENDING);
    PN_ASYNC_END(m->pc);
}

static const pn_future_vtable pipe_reader_vt = { pipe_reader_poll, NULL, "pipe_reader" };

static void *write_when_waiting(void *arg)
{
    int fd = *(int *)arg;
    pn_instant end = pn_now() + PN_MS(10000);
    while (!atomic_load(&pf_waiting) && pn_now() < end)
        sched_yield();
    cr_assert_eq(write(fd, "z", 1), 1);
    return NULL;
}

Test(uring_rings, a_readiness_wait_on_a_full_ring_is_armed_later)
{
    int before = count_fds();
    pn_runtime *rt = mt_new(PN_URING_RINGS_AUTO);
    static int peer[NPOLLFULL];
    for (int i = 0; i < NPOLLFULL; i++)
        peer[i] = make_pair(&pf_a[i]);
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(pn_async_fd_init(&pf_pipe, pfd[0]), 0);
    pn_future s1 = { &spinner_vt }, s2 = { &spinner_vt };
    pn_join_handle *h1, *h2;
    cr_assert_eq(pn_spawn(rt, &s1, sizeof s1, &h1), 0);
    cr_assert_eq(pn_spawn(rt, &s2, sizeof s2, &h2), 0);
    pn_instant end = pn_now() + PN_MS(5000);
    while (atomic_load(&pf_spinning) < 2 && pn_now() < end)
        sched_yield();
    cr_assert_eq(atomic_load(&pf_spinning), 2, "both workers kept busy");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, write_when_waiting, &pfd[1]), 0);
    pipe_reader m = { .base = { &pipe_reader_vt } };
    AWAIT(rt, m);                              /* this thread drives no ring */
    cr_assert_eq(m.n, 1);
    cr_assert_eq(m.c, 'z');
    pn_runtime_metrics mt = metrics(rt);
    if (mt.uring_rings == 2 && mt.uring_single_issuer)
        cr_assert_lt(m.queued, NPOLLFULL, "lane 0's ring never filled up (what this tests)");
    cr_assert_eq(pthread_join(th, NULL), 0);
    for (pn_join_handle **h = (pn_join_handle *[]){ h1, h2, NULL }; *h; h++) {
        pn_join_future j = pn_join(*h);
        AWAIT(rt, j);
        pn_join_handle_free(*h);
    }
    for (int i = 0; i < NPOLLFULL; i++) {
        struct pollfd q = { .fd = peer[i], .events = POLLIN };
        cr_assert_eq(poll(&q, 1, 5000), 1, "socket %d: the byte never came", i);
        cr_assert_eq(pn_async_fd_close(&pf_a[i]), 0);
        close(peer[i]);
    }
    cr_assert_eq(pn_async_fd_close(&pf_pipe), 0);
    close(pfd[1]);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), before);
}
