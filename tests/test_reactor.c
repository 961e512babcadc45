/*
 * test_reactor.c - the reactor driven by hand (no runtime): readiness on
 * pipes and socketpairs, wakes exactly on arrival, wake coalescing, the
 * readiness tick, peer close / half close, generation isolation of a
 * reused fd number, cross-thread wake, deregistration, slab growth and
 * freeing a reactor with live registrations.
 *
 * Wakers are counting wakers; contexts are hand-made pn_cx values whose
 * reactor is the one under test.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"
#include "core/sys.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"

static void reactor_fini(void) { pn__sys_reset(); }
/* These tests drive the readiness protocol by hand: on io_uring, stream
 * sockets stay in readiness mode (completion mode: test_uring_io.c). */
static void reactor_init(void) { setenv("POLLEN_URING_MODE", "readiness", 1); }

TestSuite(reactor, .timeout = PN_TEST_TIMEOUT, .init = reactor_init, .fini = reactor_fini);

/* ---- counting wakers ---------------------------------------------------- */

typedef struct wcount {
    atomic_int wakes, clones, drops;  /* drops counts wake too (consumes) */
} wcount;

static pn_waker wc_clone(const void *d);
static void wc_wake(const void *d)
{
    wcount *c = (wcount *)d;
    atomic_fetch_add(&c->wakes, 1);
    atomic_fetch_add(&c->drops, 1);
}
static void wc_wake_by_ref(const void *d) { atomic_fetch_add(&((wcount *)d)->wakes, 1); }
static void wc_drop(const void *d) { atomic_fetch_add(&((wcount *)d)->drops, 1); }
static const pn_waker_vtable wc_vt = { wc_clone, wc_wake, wc_wake_by_ref, wc_drop };
static pn_waker wc_clone(const void *d)
{
    atomic_fetch_add(&((wcount *)d)->clones, 1);
    return (pn_waker){ d, &wc_vt };
}

/* Outstanding clones (held by the reactor). */
static int wc_held(wcount *c) { return c->clones - c->drops; }

typedef struct hand {
    wcount count;
    pn_waker waker;
    pn_cx cx;
} hand;

static void hand_init(hand *h, pn__reactor *r)
{
    memset(h, 0, sizeof *h);
    h->waker = (pn_waker){ &h->count, &wc_vt };
    h->cx = (pn_cx){ .waker = &h->waker, .reactor = r, .budget = 128 };
}

static pn__reactor *reactor_new(void)
{
    pn__reactor *r = NULL;
    cr_assert_eq(pn__reactor_new(64, pn_test_backend(), &r), 0);
    cr_assert_not_null(r);
    return r;
}

static void make_pipe(int p[2]) { cr_assert_eq(pipe2(p, O_CLOEXEC), 0); }
static void make_pair(int p[2]) { cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0); }

/* Drive the reactor without blocking until it has nothing more. */
static int turn(pn__reactor *r)
{
    int n = pn__reactor_poll(r, 0);
    cr_assert_geq(n, 0);
    return n;
}

/* ---- basics -------------------------------------------------------------- */

Test(reactor, new_rejects_bad_config)
{
    pn__reactor *r = (pn__reactor *)1;
    cr_assert_eq(pn__reactor_new(0, PN_BACKEND_AUTO, &r), -EINVAL);
    cr_assert_eq(pn__reactor_new(16, PN_BACKEND_AUTO, NULL), -EINVAL);
    pn__reactor_free(NULL);
}

Test(reactor, pending_read_on_pipe_is_woken_exactly_when_data_arrives)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pipe(p);
    pn_async_fd rd;
    cr_assert_eq(pn_async_fd_init(&rd, p[0]), 0);
    cr_assert_not(rd.is_socket);
    cr_assert(fcntl(p[0], F_GETFL) & O_NONBLOCK);

    char buf[16];
    ssize_t res = 12345;
    cr_assert_eq(pn_async_fd_poll_read(&rd, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(res, 12345);
    cr_assert_not_null(rd.reg, "lazy registration on first poll");
    cr_assert_eq(pn__reactor_count(r), 1);

    /* Nothing arrives: no wake however often the reactor turns. */
    for (int i = 0; i < 5; i++)
        turn(r);
    cr_assert_eq(h.count.wakes, 0);

    cr_assert_eq(write(p[1], "hello", 5), 5);
    cr_assert_eq(turn(r), 1);
    cr_assert_eq(h.count.wakes, 1);
    cr_assert_eq(turn(r), 0, "edge-triggered: one event per edge");
    cr_assert_eq(h.count.wakes, 1);

    cr_assert_eq(pn_async_fd_poll_read(&rd, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(h.cx.budget, 127, "a completed op spends one unit");

    /* Drained: the next read waits again (the EAGAIN cleared READ). */
    cr_assert_eq(pn_async_fd_poll_read(&rd, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(rd.reg->readiness & PN__READY_READ, 0);

    cr_assert_eq(pn_async_fd_close(&rd), 0);
    cr_assert_eq(rd.fd, -1);
    cr_assert_eq(pn__reactor_count(r), 0);
    cr_assert_eq(h.count.wakes, 2, "close wakes the waiting reader");
    cr_assert_eq(pn_async_fd_poll_read(&rd, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, -ECANCELED);
    close(p[1]);
    pn__reactor_free(r);
    cr_assert_eq(wc_held(&h.count), 0);
}

Test(reactor, socketpair_readiness_both_directions)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a, b;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    cr_assert_eq(pn_async_fd_init(&b, p[1]), 0);
    cr_assert(a.is_socket);

    int mask = -1;
    char buf[8];
    ssize_t res;
    /* A new registration is optimistically ready: the first read tries the
     * syscall, gets EAGAIN, clears READ and waits. */
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE | PN_WRITABLE, &mask), PN_READY);
    cr_assert_eq(mask, PN_READABLE | PN_WRITABLE);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    turn(r);  /* the initial edge (EPOLLOUT) */
    cr_assert_eq(h.count.wakes, 0, "no read edge yet");
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE | PN_WRITABLE, &mask), PN_READY);
    cr_assert_eq(mask, PN_WRITABLE, "writable, not readable");
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE, &mask), PN_PENDING);

    cr_assert_eq(pn_async_fd_poll_write(&b, &h.cx, "ping", 4, &res), PN_READY);
    cr_assert_eq(res, 4);
    turn(r);
    cr_assert_eq(h.count.wakes, 1);
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE, &mask), PN_READY);
    cr_assert_eq(mask, PN_READABLE);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);

    pn_async_fd_close(&a);
    pn_async_fd_close(&b);
    pn__reactor_free(r);
    cr_assert_eq(wc_held(&h.count), 0);
}

Test(reactor, write_waits_for_buffer_space)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    h.cx.budget = 1000000;
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    static char chunk[4096];
    ssize_t res;
    turn(r);
    size_t total = 0;
    /* Fill the socket buffer until the write parks. */
    pn_poll st;
    while ((st = pn_async_fd_poll_write(&a, &h.cx, chunk, sizeof chunk, &res)) == PN_READY) {
        cr_assert_gt(res, 0);
        total += (size_t)res;
        turn(r);
    }
    cr_assert_gt(total, 0);
    int wakes = h.count.wakes;
    turn(r);
    cr_assert_eq(h.count.wakes, wakes);
    /* Drain on the other side: the writer is woken. */
    char sink[65536];
    while (recv(p[1], sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    turn(r);
    cr_assert_gt(h.count.wakes, wakes);
    cr_assert_eq(pn_async_fd_poll_write(&a, &h.cx, chunk, sizeof chunk, &res), PN_READY);
    cr_assert_gt(res, 0);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

/* ---- the wake channel ---------------------------------------------------- */

Test(reactor, wakes_are_coalesced)
{
    pn__reactor *r = reactor_new();
    for (int i = 0; i < 100; i++)
        pn__reactor_wake(r);
    cr_assert_eq(pn__reactor_wake_signals(r), 1, "one signal for 100 wakes");
    cr_assert_eq(pn__reactor_poll(r, -1), 0, "returns at once, wake not counted");
    cr_assert_eq(pn__reactor_poll(r, 0), 0, "drained");
    pn__reactor_wake(r);
    pn__reactor_wake(r);
    cr_assert_eq(pn__reactor_wake_signals(r), 2, "the flag was cleared by the drain");
    cr_assert_eq(pn__reactor_poll(r, -1), 0);
    pn__reactor_free(r);
}

static void *wake_later(void *arg)
{
    usleep(20000);
    pn__reactor_wake(arg);
    return NULL;
}

Test(reactor, wake_from_another_thread_unblocks_poll_forever)
{
    pn__reactor *r = reactor_new();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, wake_later, r), 0);
    cr_assert_eq(pn__reactor_poll(r, -1), 0);
    pthread_join(t, NULL);
    pn__reactor_free(r);
}

Test(reactor, poll_times_out)
{
    pn__reactor *r = reactor_new();
    cr_assert_eq(pn__reactor_poll(r, 1000000), 0);
    pn__reactor_free(r);
}

/* ---- the tick ------------------------------------------------------------- */

Test(reactor, clear_with_stale_tick_keeps_newer_event)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    int mask;
    char c;
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, &c, 1, &res), PN_PENDING);
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE, &mask), PN_PENDING);
    cr_assert_eq(write(p[1], "1", 1), 1);
    turn(r);
    pn__registration *reg = a.reg;
    uint64_t seen = atomic_load(&reg->readiness);
    cr_assert(seen & PN__READY_READ);

    /* A newer event comes in after `seen` was observed (the reactor's OR). */
    uint64_t newer = pn__reg_set_ready(reg, PN__READY_READ);
    cr_assert_neq(PN__TICK(newer), PN__TICK(seen));
    pn__reg_clear_ready(reg, PN__READY_READ, seen);
    cr_assert(atomic_load(&reg->readiness) & PN__READY_READ, "stale clear erased a newer event");
    pn__reg_clear_ready(reg, PN__READY_READ, newer);
    cr_assert_eq(atomic_load(&reg->readiness) & PN__READY_READ, 0, "current clear works");

    /* Same through the public API: poll_ready remembers the tick it saw. */
    pn__reg_set_ready(reg, PN__READY_READ);
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE, &mask), PN_READY);
    cr_assert_eq(write(p[1], "2", 1), 1);
    cr_assert_eq(turn(r), 1, "a new edge while readable");
    pn_async_fd_clear_ready(&a, PN_READABLE);
    cr_assert(atomic_load(&reg->readiness) & PN__READY_READ);
    cr_assert_eq(pn_async_fd_poll_ready(&a, &h.cx, PN_READABLE, &mask), PN_READY);
    pn_async_fd_clear_ready(&a, PN_READABLE);
    cr_assert_eq(atomic_load(&reg->readiness) & PN__READY_READ, 0);

    /* The tick wraps in 16 bits without touching the ready bits. */
    uint32_t bits = atomic_load(&reg->readiness) & PN__READY_MASK;
    for (int i = 0; i < 70000; i++)
        pn__reg_set_ready(reg, 0);
    cr_assert_eq(atomic_load(&reg->readiness) & PN__READY_MASK, bits);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

/* ---- hang-ups -------------------------------------------------------------- */

Test(reactor, peer_close_gives_read_closed_and_eof)
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
    close(p[1]);
    turn(r);
    cr_assert_eq(h.count.wakes, 1);
    uint32_t w = atomic_load(&a.reg->readiness);
    cr_assert(w & PN__READY_READ_CLOSED);
    cr_assert(w & PN__READY_WRITE_CLOSED, "EPOLLHUP closes both sides");
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 0);
    /* CLOSED is final: reading again gives EOF again, no wait. */
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 0);
    pn_async_fd_close(&a);
    pn__reactor_free(r);
}

Test(reactor, rdhup_on_peer_shutdown_wr)
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
    turn(r);
    cr_assert_eq(shutdown(p[1], SHUT_WR), 0);
    turn(r);
    uint32_t w = atomic_load(&a.reg->readiness);
    cr_assert(w & PN__READY_READ_CLOSED);
    cr_assert_eq(w & PN__READY_WRITE_CLOSED, 0, "our write side is still open");
    cr_assert_geq(h.count.wakes, 1);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 0);
    cr_assert_eq(pn_async_fd_poll_write(&a, &h.cx, "x", 1, &res), PN_READY);
    cr_assert_eq(res, 1);
    cr_assert_eq(read(p[1], buf, 1), 1);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}

/* ---- fd reuse and generations ------------------------------------------- */

static uint64_t stale_token;
static atomic_int stale_pending;
static int stale_epoll_wait(int epfd, struct epoll_event *evs, int max, const struct timespec *t)
{
    if (atomic_exchange(&stale_pending, 0) && max > 0) {
        evs[0].events = EPOLLIN | EPOLLOUT;
        evs[0].data.u64 = stale_token;
        return 1;
    }
    pn__sys_reset();
    return pn__sys.epoll_wait(epfd, evs, max, t);
}

Test(reactor, stale_event_for_reused_fd_number_never_reaches_new_owner)
{
    pn__reactor *r = reactor_new();
    hand ha, hb;
    hand_init(&ha, r);
    hand_init(&hb, r);
    int p[2], q[2];
    make_pipe(p);
    pn_async_fd a, b;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    char buf[8];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &ha.cx, buf, sizeof buf, &res), PN_PENDING);
    int old_fd = p[0];
    uint32_t old_index = a.reg->index, old_gen = a.gen;
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[1]);

    make_pipe(q);
    cr_assert_eq(q[0], old_fd, "the kernel reuses the lowest fd number");
    cr_assert_eq(pn_async_fd_init(&b, q[0]), 0);
    cr_assert_eq(pn_async_fd_poll_read(&b, &hb.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(b.reg->index, old_index, "the freed record is reused");
    cr_assert_neq(b.gen, old_gen, "with a new generation");

    /* An event for the old registration is still "in flight". */
    stale_token = (uint64_t)old_index | (uint64_t)old_gen << 32;
    stale_pending = 1;
    uint64_t before = atomic_load(&b.reg->readiness);
    cr_assert_eq(before & PN__READY_READ, 0);
    pn__sys.epoll_wait = stale_epoll_wait;
    cr_assert_eq(pn__reactor_poll(r, 0), 0, "stale event dropped, not dispatched");
    cr_assert_eq(atomic_load(&b.reg->readiness), before, "neither bits nor tick touched");
    cr_assert_eq(hb.count.wakes, 0);

    /* Real events still reach the new owner. */
    cr_assert_eq(write(q[1], "z", 1), 1);
    cr_assert_eq(pn__reactor_poll(r, 0), 1);
    cr_assert_eq(hb.count.wakes, 1);
    cr_assert_eq(pn_async_fd_poll_read(&b, &hb.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 1);
    pn_async_fd_close(&b);
    close(q[1]);
    pn__reactor_free(r);
    cr_assert_eq(wc_held(&ha.count), 0);
    cr_assert_eq(wc_held(&hb.count), 0);
}

/* ---- deregistration ----------------------------------------------------- */

Test(reactor, deregister_wakes_both_waiters_with_ecanceled)
{
    pn__reactor *r = reactor_new();
    hand hr, hw;
    hand_init(&hr, r);
    hand_init(&hw, r);
    hw.cx.budget = 1000000;
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    char buf[8];
    static char chunk[65536];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &hr.cx, buf, sizeof buf, &res), PN_PENDING);
    turn(r);
    while (pn_async_fd_poll_write(&a, &hw.cx, chunk, sizeof chunk, &res) == PN_READY)
        cr_assert_gt(res, 0);
    int rw = hr.count.wakes, ww = hw.count.wakes;

    /* The reactor-level deregistration (not through the afd). */
    pn__reactor_deregister(r, a.reg);
    cr_assert_eq(hr.count.wakes, rw + 1);
    cr_assert_eq(hw.count.wakes, ww + 1);
    cr_assert_eq(pn__reactor_count(r), 0);
    cr_assert_eq(pn_async_fd_poll_read(&a, &hr.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, -ECANCELED);
    cr_assert_eq(pn_async_fd_poll_write(&a, &hw.cx, "x", 1, &res), PN_READY);
    cr_assert_eq(res, -ECANCELED);
    int mask;
    cr_assert_eq(pn_async_fd_poll_ready(&a, &hw.cx, PN_WRITABLE, &mask), PN_READY);
    cr_assert_eq(mask, -ECANCELED);
    /* close does not deregister a record that is no longer ours. */
    cr_assert_eq(pn_async_fd_close(&a), 0);
    cr_assert_eq(pn_async_fd_close(&a), 0, "idempotent");
    close(p[1]);
    pn__reactor_free(r);
    cr_assert_eq(wc_held(&hr.count), 0);
    cr_assert_eq(wc_held(&hw.count), 0);
}

Test(reactor, release_gives_the_fd_back)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pipe(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    char buf[4];
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(pn_async_fd_release(&a), p[0]);
    cr_assert_eq(h.count.wakes, 1);
    cr_assert_eq(pn_async_fd_release(&a), -EBADF);
    cr_assert_eq(pn__reactor_count(r), 0);
    cr_assert_neq(fcntl(p[0], F_GETFD), -1, "still open");
    close(p[0]);
    close(p[1]);
    pn__reactor_free(r);
}

Test(reactor, bad_input_does_not_crash)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, -1), -EBADF);
    cr_assert_eq(pn_async_fd_init(NULL, 0), -EINVAL);
    int p[2];
    make_pipe(p);
    close(p[1]);
    int dead = p[1];
    cr_assert_eq(pn_async_fd_init(&a, dead), -EBADF);
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(NULL, &h.cx, NULL, 0, &res), PN_READY);
    cr_assert_eq(res, -EINVAL);
    cr_assert_eq(pn__reactor_register(r, -1, NULL, NULL), -EINVAL);
    pn__registration *reg;
    cr_assert_eq(pn__reactor_register(r, -1, NULL, &reg), -EBADF);
    pn__reactor_deregister(r, NULL);
    cr_assert_eq(pn_async_fd_close(NULL), -EINVAL);
    /* A regular file: epoll refuses it, the slab stays clean. */
    char path[] = "/tmp/pollen-reactor-XXXXXX";
    int f = mkstemp(path);
    cr_assert_geq(f, 0);
    unlink(path);
    cr_assert_eq(pn_async_fd_init(&a, f), 0);
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, path, 1, &res), PN_READY);
    cr_assert_eq(res, -EPERM);
    cr_assert_eq(pn__reactor_count(r), 0);
    cr_assert_null(a.reg);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[0]);
    pn__reactor_free(r);
}

/* ---- slab growth and reactor free ----------------------------------------- */

#define MANY 300  /* more than one chunk of 256 */

Test(reactor, free_with_live_registrations_detaches_and_leaks_nothing)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    static pn_async_fd afd[MANY];
    static int peer[MANY];
    char buf[4];
    ssize_t res;
    for (int i = 0; i < MANY; i++) {
        int p[2];
        make_pair(p);
        peer[i] = p[1];
        cr_assert_eq(pn_async_fd_init(&afd[i], p[0]), 0);
        cr_assert_eq(pn_async_fd_poll_read(&afd[i], &h.cx, buf, sizeof buf, &res), PN_PENDING);
        for (int j = 0; j < i; j++)
            cr_assert_neq(afd[j].reg, afd[i].reg);
    }
    cr_assert_eq(pn__reactor_count(r), MANY);
    cr_assert_gt(wc_held(&h.count), 0);
    /* Free some in the middle and reuse their records. */
    for (int i = 0; i < MANY; i += 3) {
        int fd = pn_async_fd_release(&afd[i]);
        cr_assert_eq(pn_async_fd_init(&afd[i], fd), 0);
    }
    for (int i = 0; i < MANY; i += 3)
        cr_assert_eq(pn_async_fd_poll_read(&afd[i], &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(pn__reactor_count(r), MANY);

    pn__reactor_free(r);
    cr_assert_eq(wc_held(&h.count), 0, "every stored waker dropped");
    for (int i = 0; i < MANY; i++) {
        cr_assert_null(afd[i].reg);
        cr_assert_null(afd[i].reactor);
        cr_assert_neq(fcntl(afd[i].fd, F_GETFD), -1, "the fd stays open for its owner");
    }
    /* The owner stays usable: the next poll registers with a new reactor. */
    pn__reactor *r2 = reactor_new();
    hand h2;
    hand_init(&h2, r2);
    cr_assert_eq(write(peer[7], "k", 1), 1);
    cr_assert_eq(pn_async_fd_poll_read(&afd[7], &h2.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 1);
    cr_assert(afd[7].reactor == r2);
    for (int i = 0; i < MANY; i++) {
        cr_assert_eq(pn_async_fd_close(&afd[i]), 0);
        close(peer[i]);
    }
    cr_assert_eq(pn__reactor_count(r2), 0);
    pn__reactor_free(r2);
}

Test(reactor, budget_exhausted_yields_without_consuming_data)
{
    pn__reactor *r = reactor_new();
    hand h;
    hand_init(&h, r);
    int p[2];
    make_pair(p);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    char buf[8];
    ssize_t res = 77;
    cr_assert_eq(write(p[1], "abc", 3), 3);
    h.cx.budget = 0;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    turn(r);
    int wakes = h.count.wakes;
    h.cx.budget = 0;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_PENDING);
    cr_assert_eq(h.count.wakes, wakes + 1, "woke itself");
    cr_assert_eq(res, 77);
    h.cx.budget = 1;
    cr_assert_eq(pn_async_fd_poll_read(&a, &h.cx, buf, sizeof buf, &res), PN_READY);
    cr_assert_eq(res, 3, "the data was not lost");
    cr_assert_eq(h.cx.budget, 0);
    pn_async_fd_close(&a);
    close(p[1]);
    pn__reactor_free(r);
}
