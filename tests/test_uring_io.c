/*
 * test_uring_io.c - stream-socket I/O across cancellation, close, runtime
 * teardown and buffer exhaustion, on whichever backend `make test` picks.
 *
 * On io_uring these cover completion mode (src/reactor/uio.c): a receive
 * or send may be in the kernel when its future is dropped, its socket
 * closed or its runtime freed, and the kernel may write into receive
 * buffers of the runtime's ring until the last CQE.  Each test checks the
 * data byte for byte (nothing lost, duplicated or reordered); ASan and LSan
 * (make test-asan) check that no buffer is used after free or leaked; the
 * buffer count checks that every ring buffer comes back.  On epoll the same
 * tests check the same behaviour of the readiness path, and that no
 * completion state is ever created.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "helpers.h"
#include "pollen/net.h"
#include "core/sys.h"
#include "executor/rt.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"
#include "reactor/uio.h"

TestSuite(uring_io, .timeout = PN_TEST_TIMEOUT);

static bool completion_mode(pn_runtime *rt)
{
    return pn__uio_applies(pn__runtime_reactor(rt));
}

static bool on_uring(pn_runtime *rt)
{
    return pn__reactor_backend(pn__runtime_reactor(rt)) == PN_BACKEND_URING;
}

static void pair(pn_async_fd *a, int *peer)
{
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    cr_assert_eq(pn_async_fd_init(a, p[0]), 0);
    *peer = p[1];
}

/* Read exactly n bytes through the runtime. */
static void read_n(pn_runtime *rt, pn_async_fd *a, char *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        pn_read_future r = pn_read(a, dst + got, n - got);
        AWAIT(rt, r);
        cr_assert_gt(r.res, 0, "read: %s", r.res < 0 ? pn_strerror((int)r.res) : "eof");
        got += (size_t)r.res;
    }
}

static void sleep_in(pn_runtime *rt, uint64_t ns)
{
    pn_sleep_future s = pn_sleep(ns);
    AWAIT(rt, s);
}

/* ---- a read dropped while its receive is in the kernel ------------------ */

BOTH(uring_io, dropped_read_loses_nothing)
{
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char buf[64];
    pn_read_future r = pn_read(&a, buf, sizeof buf);
    pn_timeout_future t = pn_timeout(PN_FUTURE(&r), PN_MS(20));
    AWAIT(rt, t);
    cr_assert_eq(t.res, -ETIMEDOUT);
    if (completion_mode(rt))
        cr_assert(pn__uio_active(&a), "the read went through completion mode");
    else
        cr_assert_not(pn__uio_active(&a));
    /* The receive the dropped read armed may take these bytes: they must
     * wait for the next read. */
    cr_assert_eq(write(peer, "hello, world", 12), 12);
    sleep_in(rt, PN_MS(5));
    char got[12];
    read_n(rt, &a, got, sizeof got);
    cr_assert_eq(memcmp(got, "hello, world", 12), 0);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- a write dropped while its send is in the kernel -------------------- */

#define BIG (4u << 20)

static void *drain_peer(void *arg)
{
    int fd = *(int *)arg;
    size_t cap = BIG + 64, len = 0;
    char *all = malloc(cap);
    cr_assert_not_null(all);
    for (;;) {
        ssize_t n = read(fd, all + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    /* A prefix of the big write, then the tail, nothing interleaved. */
    cr_assert_geq(len, 4);
    cr_assert_eq(memcmp(all + len - 4, "TAIL", 4), 0, "the tail comes last");
    for (size_t i = 0; i + 4 < len; i++)
        cr_assert_eq(all[i], (char)('a' + i % 26), "byte %zu of the dropped write", i);
    free(all);
    return NULL;
}

BOTH(uring_io, dropped_write_is_cancelled_in_order)
{
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char *big = malloc(BIG);
    cr_assert_not_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    /* Nobody reads yet: the send fills the socket buffer and waits. */
    pn_write_future w = pn_write(&a, big, BIG);
    pn_timeout_future t = pn_timeout(PN_FUTURE(&w), PN_MS(20));
    AWAIT(rt, t);
    if (t.res == 0) {
        /* Readiness mode: a short write completed at once. */
        cr_assert_gt(w.res, 0);
        cr_assert_lt(w.res, (ssize_t)BIG);
    } else {
        cr_assert_eq(t.res, -ETIMEDOUT);
    }
    free(big);     /* the kernel must not read it any more: it copied it */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, drain_peer, &peer), 0);
    pn_write_all_future tail = pn_write_all(&a, "TAIL", 4);
    AWAIT(rt, tail);
    cr_assert_eq(tail.res, 4);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- close with received data buffered ---------------------------------- */

Test(uring_io, close_gives_every_buffer_back)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    pn__reactor *r = pn__runtime_reactor(rt);
    for (int round = 0; round < 50; round++) {
        pn_async_fd a;
        int peer;
        pair(&a, &peer);
        static char chunk[32768];
        memset(chunk, 'x', sizeof chunk);
        cr_assert_eq(write(peer, chunk, sizeof chunk), (ssize_t)sizeof chunk);
        char one[10];
        read_n(rt, &a, one, sizeof one);
        sleep_in(rt, PN_MS(1));           /* let more chunks land */
        cr_assert_eq(pn_async_fd_close(&a), 0);
        close(peer);
    }
    sleep_in(rt, PN_MS(5));               /* cancelled receives report back */
    if (completion_mode(rt))
        cr_assert_eq(pn__uio_buffers_out(r), 0, "every receive buffer is back");
    else
        cr_assert_eq(pn__uio_buffers_out(r), -1);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- the runtime goes away with data buffered ---------------------------- */

Test(uring_io, data_buffered_when_the_runtime_goes_is_read_later)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char msg[3000];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (char)(i * 7);
    cr_assert_eq(write(peer, msg, sizeof msg), (ssize_t)sizeof msg);
    char got[sizeof msg];
    read_n(rt, &a, got, 100);
    cr_assert_eq(write(peer, "more", 4), 4);
    sleep_in(rt, PN_MS(5));
    cr_assert_eq(pn_runtime_free(rt), 0);
    /* The afd outlived its runtime; a new one reads on where it stopped. */
    rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    read_n(rt, &a, got + 100, sizeof msg - 100);
    cr_assert_eq(memcmp(got, msg, sizeof msg), 0);
    char more[4];
    read_n(rt, &a, more, 4);
    cr_assert_eq(memcmp(more, "more", 4), 0);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- peek ------------------------------------------------------------------ */

Test(uring_io, peek_does_not_consume)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    pn_tcp_stream s;
    int peer;
    pair(&s.afd, &peer);
    cr_assert_eq(write(peer, "peekaboo", 8), 8);
    char buf[8];
    pn_tcp_peek_future pk = pn_tcp_peek(&s, buf, sizeof buf);
    AWAIT(rt, pk);
    cr_assert_gt(pk.res, 0);
    cr_assert_eq(memcmp(buf, "peekaboo", (size_t)pk.res), 0);
    char all[8];
    read_n(rt, &s.afd, all, 8);
    cr_assert_eq(memcmp(all, "peekaboo", 8), 0);
    cr_assert_eq(pn_async_fd_close(&s.afd), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- more held data than the buffer ring has ------------------------------ */

#define NCONN 300   /* x 4 held buffers > the ring's 1024 */
#define FLOOD (80 * 1024)

typedef struct flood {
    int peer;
    size_t sent;
} flood;

static void *flood_all(void *arg)
{
    flood *f = arg;
    static char pat[FLOOD];
    for (int c = 0; c < NCONN; c++) {
        for (size_t i = 0; i < FLOOD; i++)
            pat[i] = (char)(c * 31 + i % 251);
        size_t off = 0;
        while (off < FLOOD) {
            ssize_t n = write(f[c].peer, pat + off, FLOOD - off);
            cr_assert_gt(n, 0);
            off += (size_t)n;
        }
    }
    return NULL;
}

typedef struct reader {
    pn_future base;
    int pc;
    pn_async_fd *a;
    int conn;
    size_t got;
    ssize_t n;
    bool bad;
    char buf[5000];
} reader;

static pn_poll reader_poll(pn_future *f, pn_cx *cx)
{
    reader *r = (reader *)f;
    PN_ASYNC_BEGIN(r->pc);
    while (r->got < FLOOD) {
        PN_AWAIT_POLL(r->pc, pn_async_fd_poll_read(r->a, cx, r->buf, sizeof r->buf, &r->n));
        if (r->n <= 0) {
            r->bad = true;
            break;
        }
        for (ssize_t i = 0; i < r->n; i++)
            if (r->buf[i] != (char)(r->conn * 31 + (r->got + (size_t)i) % 251))
                r->bad = true;
        r->got += (size_t)r->n;
    }
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable reader_vt = { reader_poll, NULL, "reader" };

BOTH(uring_io, exhausted_ring_falls_back_without_loss)
{
    pn_runtime *rt = flavour_new(fl);
    static pn_async_fd a[NCONN];
    static flood f[NCONN];
    static reader rd[NCONN];
    pn_join_handle *h[NCONN];
    for (int c = 0; c < NCONN; c++) {
        pair(&a[c], &f[c].peer);
        rd[c] = (reader){ .base = { &reader_vt }, .a = &a[c], .conn = c };
    }
    /* Every socket has a receive armed and nobody reads for a while. */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, flood_all, f), 0);
    for (int c = 0; c < NCONN; c++) {
        char one;
        read_n(rt, &a[c], &one, 1);
        cr_assert_eq(one, (char)(c * 31));
        rd[c].got = 1;
    }
    sleep_in(rt, PN_MS(20));
    if (completion_mode(rt))
        cr_assert_gt(pn__uio_nobufs(pn__runtime_reactor(rt)), 0,
                     "the ring ran dry (the fallback is what this tests)");
    for (int c = 0; c < NCONN; c++)
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&rd[c]), sizeof rd[c], &h[c]), 0);
    for (int c = 0; c < NCONN; c++) {
        pn_join_future j = pn_join(h[c]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        reader *done = j.output;
        cr_assert_not(done->bad, "connection %d: bytes out of order or lost", c);
        cr_assert_eq(done->got, FLOOD);
        pn_join_handle_free(h[c]);
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    for (int c = 0; c < NCONN; c++) {
        cr_assert_eq(pn_async_fd_close(&a[c]), 0);
        close(f[c].peer);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- close while another task's send waits for the peer ----------------- */

typedef struct stuck_writer {
    pn_future base;
    int pc;
    pn_async_fd *a;
    const char *data;
    atomic_bool *finished;
    pn_write_all_future w;
    ssize_t res;
} stuck_writer;

static pn_poll stuck_writer_poll(pn_future *f, pn_cx *cx)
{
    stuck_writer *s = (stuck_writer *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->w = pn_write_all(s->a, s->data, BIG);
    PN_AWAIT(s->pc, &s->w, cx);
    s->res = s->w.res;
    atomic_store(s->finished, true);
    PN_ASYNC_END(s->pc);
}

static void stuck_writer_drop(pn_future *f)
{
    stuck_writer *s = (stuck_writer *)f;
    if (s->pc)
        pn_future_drop(PN_FUTURE(&s->w));
}

static const pn_future_vtable stuck_writer_vt = { stuck_writer_poll, stuck_writer_drop,
                                                  "stuck_writer" };

/* A task that closes an afd. */
typedef struct closer {
    pn_future base;
    pn_async_fd *a;
    int res;
} closer;

static pn_poll closer_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    closer *c = (closer *)f;
    c->res = pn_async_fd_close(c->a);
    return PN_READY;
}

static const pn_future_vtable closer_vt = { closer_poll, NULL, "closer" };

/* Run `fut` as a spawned task (on a worker, on the multi-thread runtime)
 * and copy its final state back into it. */
#define AWAIT_SPAWNED(rt, fut)                                                   \
    do {                                                                         \
        pn_join_handle *h_;                                                      \
        cr_assert_eq(pn_spawn((rt), PN_FUTURE(&(fut)), sizeof(fut), &h_), 0);     \
        pn_join_future j_ = pn_join(h_);                                         \
        AWAIT((rt), j_);                                                         \
        cr_assert_eq(j_.res, 0);                                                 \
        memcpy(&(fut), j_.output, sizeof(fut));                                  \
        pn_join_handle_free(h_);                                                 \
    } while (0)


BOTH(uring_io, close_cancels_a_waiting_send)
{
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char *big = malloc(BIG);
    cr_assert_not_null(big);
    memset(big, 'x', BIG);
    atomic_bool finished = false;
    stuck_writer s = { .base = { &stuck_writer_vt }, .a = &a, .data = big,
                       .finished = &finished };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&s), sizeof s, &h), 0);
    /* Nobody reads: the writer fills the socket buffers and waits. */
    sleep_in(rt, PN_MS(20));
    cr_assert_not(atomic_load(&finished), "4 MiB fit in the socket buffers: nothing waits");
    /* Close under the waiting writer, from a task of the runtime (as
     * io.h asks). */
    closer c = { .base = { &closer_vt }, .a = &a, .res = 1 };
    AWAIT_SPAWNED(rt, c);
    cr_assert_eq(c.res, 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    stuck_writer *done = j.output;
    cr_assert_eq(done->res, -ECANCELED, "the writer sees the close: %zd", done->res);
    pn_join_handle_free(h);
    /* The socket is really closed, with the runtime still running and the
     * peer still not reading: no send holds it open. */
    wait_peer_closed(peer);
    close(peer);
    free(big);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- a write dropped after its send completed ----------------------------- */

/* Writes "AAAA"; when woken (its send done, the waker taken), drops that
 * write instead of polling it, as a select that picked another branch
 * would, and writes "BBBB": those bytes must be sent, not the first
 * write's result handed back for them. */
typedef struct drop_after_done {
    pn_future base;
    int pc;
    pn_async_fd *a;
    ssize_t n1, n2;
    bool dropped;          /* the first write was pending and dropped */
} drop_after_done;

static pn_poll drop_after_done_poll(pn_future *f, pn_cx *cx)
{
    drop_after_done *d = (drop_after_done *)f;
    PN_ASYNC_BEGIN(d->pc);
    if (pn_async_fd_poll_write(d->a, cx, "AAAA", 4, &d->n1) == PN_PENDING) {
        d->pc = 1;
        return PN_PENDING;
    case 1:
        pn__async_fd_forget(d->a, PN_WRITABLE, cx->waker);
        d->dropped = true;
    }
    PN_AWAIT_POLL(d->pc, pn_async_fd_poll_write(d->a, cx, "BBBB", 4, &d->n2));
    PN_ASYNC_END(d->pc);
}

static const pn_future_vtable drop_after_done_vt = { drop_after_done_poll, NULL, "drop_after_done" };

BOTH(uring_io, a_write_dropped_after_its_send_completed_does_not_answer_the_next)
{
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    drop_after_done d = { .base = { &drop_after_done_vt }, .a = &a };
    AWAIT_SPAWNED(rt, d);
    if (completion_mode(rt))           /* the case this tests */
        cr_assert(d.dropped, "the first write completed at once");
    cr_assert_eq(d.n2, 4);
    char got[9] = { 0 };
    size_t n = 0;
    while (n < 8) {
        struct pollfd p = { .fd = peer, .events = POLLIN };
        cr_assert_eq(poll(&p, 1, 5000), 1, "only %zu bytes came: '%s'", n, got);
        ssize_t k = read(peer, got + n, 8 - n);
        cr_assert_gt(k, 0);
        n += (size_t)k;
    }
    cr_assert_str_eq(got, "AAAABBBB");
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- a send and a receive across pn_block_on returns -------------------- */

#define ACROSS (1u << 20)

/* The peer's side: one thread writes ACROSS bytes of the pattern, another
 * reads what the runtime sends, slowly (16 KiB a millisecond), so that
 * the runtime's send waits in the kernel when a pn_block_on returns. */
static void *feed_peer(void *arg)
{
    int fd = *(int *)arg;
    char *buf = malloc(ACROSS);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < ACROSS; i++)
        buf[i] = (char)('A' + i % 23);
    for (size_t off = 0; off < ACROSS;) {
        ssize_t n = write(fd, buf + off, ACROSS - off);
        cr_assert_gt(n, 0, "write: %s", strerror(errno));
        off += (size_t)n;
    }
    free(buf);
    return NULL;
}

static void *slow_drain(void *arg)
{
    int fd = *(int *)arg;
    char chunk[16384];
    size_t len = 0;
    while (len < ACROSS) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        cr_assert_gt(n, 0, "read: %s", n < 0 ? strerror(errno) : "eof");
        for (ssize_t i = 0; i < n; i++, len++)
            cr_assert_eq(chunk[i], (char)('a' + len % 26), "byte %zu sent", len);
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Reads ACROSS bytes and checks them against the feed's pattern. */
typedef struct read_all {
    pn_future base;
    int pc;
    pn_async_fd *a;
    size_t len;
    pn_read_future r;
    char buf[4096];
} read_all;

static pn_poll read_all_poll(pn_future *f, pn_cx *cx)
{
    read_all *t = (read_all *)f;
    PN_ASYNC_BEGIN(t->pc);
    while (t->len < ACROSS) {
        t->r = pn_read(t->a, t->buf, sizeof t->buf);
        PN_AWAIT(t->pc, &t->r, cx);
        cr_assert_gt(t->r.res, 0, "read: %s", t->r.res < 0 ? pn_strerror((int)t->r.res) : "eof");
        for (ssize_t i = 0; i < t->r.res; i++, t->len++)
            cr_assert_eq(t->buf[i], (char)('A' + t->len % 23), "byte %zu received", t->len);
    }
    PN_ASYNC_END(t->pc);
}

static void read_all_drop(pn_future *f)
{
    read_all *t = (read_all *)f;
    if (t->pc > 0)
        pn_future_drop(PN_FUTURE(&t->r));
}

static const pn_future_vtable read_all_vt = { read_all_poll, read_all_drop, "read_all" };

/* Two tasks, one writing a stream and one reading it, while the caller's
 * pn_block_on calls come and go (a 2 ms sleep each).  On the current-
 * thread runtime on io_uring every return takes the send and the receive
 * down (park_ring: a send that had sent nothing goes back to its future,
 * a partial one reports its count, the receive's chunks stay queued) and
 * the next call arms them again: every byte arrives once, in order, both
 * ways. */
BOTH(uring_io, streams_survive_block_on_returns)
{
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char *big = malloc(ACROSS);
    cr_assert_not_null(big);
    for (size_t i = 0; i < ACROSS; i++)
        big[i] = (char)('a' + i % 26);
    pn_write_all_future w = pn_write_all(&a, big, ACROSS);
    read_all rd = { .base = { &read_all_vt }, .a = &a };
    pn_join_handle *hw, *hr;
    cr_assert_eq(PN_SPAWN(rt, w, &hw), 0);
    cr_assert_eq(PN_SPAWN(rt, rd, &hr), 0);
    pthread_t feeder, drainer;
    cr_assert_eq(pthread_create(&feeder, NULL, feed_peer, &peer), 0);
    cr_assert_eq(pthread_create(&drainer, NULL, slow_drain, &peer), 0);
    int returns = 0;
    while (!pn_join_handle_is_finished(hw) || !pn_join_handle_is_finished(hr)) {
        cr_assert_lt(returns, 5000, "the streams stalled");
        sleep_in(rt, PN_MS(2));
        returns++;
    }
    pn_join_future jw = pn_join(hw);
    AWAIT(rt, jw);
    cr_assert_eq(jw.res, 0);
    cr_assert_eq(((pn_write_all_future *)jw.output)->res, (ssize_t)ACROSS);
    pn_join_future jr = pn_join(hr);
    AWAIT(rt, jr);
    cr_assert_eq(jr.res, 0);
    cr_assert_eq(((read_all *)jr.output)->len, ACROSS);
    pn_join_handle_free(hw);
    pn_join_handle_free(hr);
    cr_assert_eq(pthread_join(feeder, NULL), 0);
    cr_assert_eq(pthread_join(drainer, NULL), 0);
    cr_assert_gt(returns, 1, "the streams crossed pn_block_on returns");
    free(big);
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- connect through the ring ------------------------------------------- */

static atomic_int connect_calls;

static int counting_connect(int fd, const struct sockaddr *a, socklen_t len)
{
    atomic_fetch_add(&connect_calls, 1);
    return connect(fd, a, len);
}

static void listen_local(pn_tcp_listener *l, pn_sockaddr *at);

BOTH(uring_io, connect_without_a_connect_syscall)
{
    /* The table is switched while no runtime thread reads it. */
    atomic_store(&connect_calls, 0);
    pn__sys.connect = counting_connect;
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    pn_tcp_stream s;
    pn_tcp_connect_future c = pn_tcp_connect(&s, &at, PN_SEC(5));
    AWAIT(rt, c);
    cr_assert_eq(c.res, 0, "connect: %s", pn_strerror(c.res));
    /* Completion mode: an IORING_OP_CONNECT; readiness: connect(2). */
    cr_assert_eq(atomic_load(&connect_calls), completion_mode(rt) ? 0 : 1);
    pn_tcp_accept_future acc = pn_tcp_accept(&l);
    AWAIT(rt, acc);
    cr_assert_eq(acc.res, 0);
    pn_write_all_future w = pn_write_all(&s.afd, "ring-connected", 14);
    AWAIT(rt, w);
    cr_assert_eq(w.res, 14);
    char got[14];
    read_n(rt, &acc.stream.afd, got, sizeof got);
    cr_assert_eq(memcmp(got, "ring-connected", 14), 0);
    cr_assert_eq(pn_tcp_close(&acc.stream), 0);
    cr_assert_eq(pn_tcp_close(&s), 0);
    /* Refused: the error comes back through the same path. */
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    c = pn_tcp_connect(&s, &at, PN_SEC(5));
    AWAIT(rt, c);
    cr_assert_eq(c.res, -ECONNREFUSED, "connect: %s", pn_strerror(c.res));
    cr_assert_eq(s.afd.fd, -1, "a failed connect closes its socket");
    cr_assert_eq(atomic_load(&connect_calls), completion_mode(rt) ? 0 : 2);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
}

/* ---- one pn_block_on with the requests armed ------------------------------
 *
 * A current-thread runtime on io_uring leaves nothing in the kernel between
 * two pn_block_on: when one returns, every request its thread submitted is
 * cancelled and reaped (park_ring, uring.c), because the kernel would run
 * their completions as task work on that thread, which interrupts whatever
 * syscall the caller makes there (EINTR).  The accept window and the
 * multishot receive live only while a pn_block_on runs, and the next one
 * arms them again; what they had brought (a connection a finished accept
 * holds, bytes in receive buffers) stays the runtime's.  So a test of what
 * the requests do with what comes (connections the window takes, bytes the
 * receive takes, a release or a close while they wait) makes it come inside
 * one pn_block_on.  A `script` is that pn_block_on's future; it
 *   1. awaits `first`, if any (a read, which arms the receive);
 *   2. leaves an accept waiting on `arm`, if any (polled 10 ms with nobody
 *      connecting, then dropped: the window it filled stays armed);
 *   3. runs the runtime until `before(arg)` holds (5 s at most), then 5 ms
 *      more, if `before` is given;
 *   4. calls `then(arg)`, if given: the clients connect, the peer writes
 *      (plain syscalls on this thread, no turn of the runtime in between);
 *   5. runs the runtime until `until(arg)` holds (5 s at most), then 20 ms
 *      more so that too much would show, if `until` is given;
 *   6. awaits `last`, if any.
 * The multi-thread runtime (whose workers keep their requests armed) and
 * epoll run the same scripts and keep the same promises.
 */
typedef struct script {
    pn_future base;
    int pc, i;
    pn_future *first, *last;
    pn_tcp_listener *arm;
    bool (*before)(void *arg);
    void (*then)(void *arg);
    bool (*until)(void *arg);
    void *arg;
    pn_tcp_accept_future acc;
    pn_timeout_future t;
    pn_sleep_future nap;
} script;

static pn_poll script_poll(pn_future *f, pn_cx *cx)
{
    script *s = (script *)f;
    PN_ASYNC_BEGIN(s->pc);
    if (s->first) {
        PN_AWAIT(s->pc, s->first, cx);
    }
    if (s->arm) {
        s->acc = pn_tcp_accept(s->arm);
        s->t = pn_timeout(PN_FUTURE(&s->acc), PN_MS(10));
        PN_AWAIT(s->pc, &s->t, cx);
        cr_assert_eq(s->t.res, -ETIMEDOUT, "nobody connected yet");
    }
    if (s->before) {
        for (s->i = 0; s->i < 5000 && !s->before(s->arg); s->i++) {
            s->nap = pn_sleep(PN_MS(1));
            PN_AWAIT(s->pc, &s->nap, cx);
        }
        s->nap = pn_sleep(PN_MS(5));
        PN_AWAIT(s->pc, &s->nap, cx);
    }
    if (s->then)
        s->then(s->arg);
    if (s->until) {
        for (s->i = 0; s->i < 5000 && !s->until(s->arg); s->i++) {
            s->nap = pn_sleep(PN_MS(1));
            PN_AWAIT(s->pc, &s->nap, cx);
        }
        s->nap = pn_sleep(PN_MS(20));
        PN_AWAIT(s->pc, &s->nap, cx);
    }
    if (s->last) {
        PN_AWAIT(s->pc, s->last, cx);
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable script_vt = { script_poll, NULL, "script" };

#define SCRIPT(...) ((script){ .base = { &script_vt }, __VA_ARGS__ })

static int client_to(const pn_sockaddr *at);

/* Clients of a listener at `at` (a script's arg): `n` connect in then(),
 * each writing one byte ('a' + its index) if `say`; until() holds once
 * `want` of them were accepted behind the server's back (the process's fds
 * less `base`, counted before the clients came, and the clients). */
typedef struct clients {
    const pn_sockaddr *at;
    int n;
    bool say;
    int base, want;
    int c[3 * PN__ACCEPT_AHEAD + 1];
} clients;

static void clients_connect(void *arg)
{
    clients *k = arg;
    for (int i = 0; i < k->n; i++) {
        k->c[i] = client_to(k->at);
        char b = (char)('a' + i);
        if (k->say)
            cr_assert_eq(write(k->c[i], &b, 1), 1);
    }
}

/* Connections accepted that no accept has taken. */
static int clients_ahead(const clients *k)
{
    return count_fds() - k->base - k->n;
}

static bool clients_taken(void *arg)
{
    clients *k = arg;
    return clients_ahead(k) >= k->want;
}

/* pn_async_fd_release until it hands the fd back, as a future (so that it
 * can run inside a script, its requests in the kernel).  -EBUSY: pollen
 * holds bytes (a stream: read them into got[]) or connections (a listener
 * `l`: accept and close them, counted in `accepted`); -EINPROGRESS: a
 * request is still in the kernel, turn the runtime and try again.  `first`
 * is the first try's result, `fd` the fd handed back. */
typedef struct releaser {
    pn_future base;
    int pc, tries, first, fd, accepted, waited;
    pn_async_fd *a;
    pn_tcp_listener *l;
    char *got;
    size_t n, cap;
    pn_read_future r;
    pn_tcp_accept_future acc;
    pn_sleep_future nap;
} releaser;

static pn_poll releaser_poll(pn_future *f, pn_cx *cx)
{
    releaser *z = (releaser *)f;
    PN_ASYNC_BEGIN(z->pc);
    for (z->tries = 0;; z->tries++) {
        cr_assert_lt(z->tries, 1000, "the release never completed");
        z->fd = pn_async_fd_release(z->a);
        if (z->tries == 0)
            z->first = z->fd;
        if (z->fd >= 0)
            break;
        if (z->fd == -EBUSY && z->l) {      /* pollen accepted: take it */
            z->acc = pn_tcp_accept(z->l);
            PN_AWAIT(z->pc, &z->acc, cx);
            cr_assert_eq(z->acc.res, 0, "accept: %s", pn_strerror(z->acc.res));
            cr_assert_eq(pn_tcp_close(&z->acc.stream), 0);
            z->accepted++;
        } else if (z->fd == -EBUSY) {       /* pollen holds bytes: read them */
            z->r = pn_read(z->a, z->got + z->n, z->cap - z->n);
            PN_AWAIT(z->pc, &z->r, cx);
            cr_assert_gt(z->r.res, 0);
            z->n += (size_t)z->r.res;
        } else {
            cr_assert_eq(z->fd, -EINPROGRESS, "release: %s", pn_strerror(z->fd));
            z->waited++;
            z->nap = pn_sleep(PN_MS(1));
            PN_AWAIT(z->pc, &z->nap, cx);
        }
    }
    PN_ASYNC_END(z->pc);
}

static const pn_future_vtable releaser_vt = { releaser_poll, NULL, "releaser" };

/* The peer writes (a script's then()). */
typedef struct peer_says {
    int fd;
    const char *what;
} peer_says;

static void peer_write(void *arg)
{
    peer_says *p = arg;
    size_t n = strlen(p->what);
    cr_assert_eq(write(p->fd, p->what, n), (ssize_t)n);
}

/* ---- release: no byte lost or read twice -------------------------------- */

/* Bytes come while the fd is released.  during: inside the pn_block_on
 * whose read armed the receive (in completion mode a request in the
 * kernel, which the release must wait for); else after it returned (on
 * the current-thread runtime nothing of pollen's is in the kernel then,
 * and the release is immediate). */
static void release_stream(pn_runtime_flavor fl, bool during)
{
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char got[16];
    cr_assert_eq(write(peer, "first", 5), 5);
    pn_read_future first = pn_read(&a, got, sizeof got);
    peer_says second = { peer, "second" };
    releaser z = { .base = { &releaser_vt }, .a = &a, .got = got, .cap = sizeof got };
    if (during) {
        script s = SCRIPT(.first = PN_FUTURE(&first), .then = peer_write, .last = PN_FUTURE(&z),
                          .arg = &second);
        AWAIT(rt, s);
    } else {
        AWAIT(rt, first);
        peer_write(&second);
        AWAIT(rt, z);
    }
    cr_assert_eq(first.res, 5, "read: %zd", first.res);
    if (completion_mode(rt) && (during || fl == PN_RUNTIME_MULTI_THREAD))
        cr_assert_lt(z.first, 0, "a receive was armed: the release must wait for it");
    if (on_uring(rt) && !during && fl == PN_RUNTIME_CURRENT_THREAD)
        cr_assert_geq(z.first, 0, "between two pn_block_on nothing of pollen's is in the kernel");
    cr_assert(completion_mode(rt) || !z.waited, "only completion mode has requests in flight");
    /* The rest is still in the kernel: read it from the fd. */
    int fd = z.fd;
    size_t n = z.n;
    while (n < 6) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        cr_assert_eq(poll(&p, 1, 10000), 1, "bytes lost in the release");
        ssize_t k = read(fd, got + n, sizeof got - n);
        cr_assert_gt(k, 0);
        n += (size_t)k;
    }
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(got, "second", 6), 0);
    /* The fd is the caller's now and nothing of pollen's reads it. */
    cr_assert_eq(write(peer, "third", 5), 5);
    sleep_in(rt, PN_MS(5));
    struct pollfd p = { .fd = fd, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 10000), 1);
    cr_assert_eq(read(fd, got, sizeof got), 5);
    cr_assert_eq(memcmp(got, "third", 5), 0);
    close(fd);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(uring_io, release_loses_nothing)
{
    release_stream(fl, true);
    release_stream(fl, false);
}

/* ---- close as a future ---------------------------------------------------- */

static atomic_int close_calls;

static int counting_close(int fd)
{
    atomic_fetch_add(&close_calls, 1);
    return close(fd);
}

static void wait_closed_by_server(int c);

/* A script's arg: the peer writes `say`; until() holds once the bytes sit
 * in pollen's receive buffers (at once outside completion mode). */
typedef struct unread_case {
    peer_says say;
    pn_runtime *rt;
} unread_case;

static void unread_write(void *arg)
{
    peer_write(&((unread_case *)arg)->say);
}

static bool unread_buffered(void *arg)
{
    pn_runtime *rt = ((unread_case *)arg)->rt;
    return !completion_mode(rt) || pn__uio_buffers_out(pn__runtime_reactor(rt)) > 0;
}

/* pn_close_async on a socket with bytes unread in pollen's buffers: on
 * io_uring the close is a request of the ring (no close(2)), and the
 * buffers holding the unread bytes go back.  inside: the close runs in the
 * pn_block_on whose read armed the receive (in the kernel still); else in
 * the next one (on the current-thread runtime the receive was taken down
 * when the first returned, and the bytes it brought stayed in the
 * buffers). */
static void close_with_bytes_unread(pn_runtime_flavor fl, bool inside)
{
    int fds = count_fds();
    pn__sys.close = counting_close;      /* before any worker runs */
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    char got[8];
    cr_assert_eq(write(peer, "x", 1), 1);
    pn_read_future first = pn_read(&a, got, 1);
    unread_case u = { { peer, "unread" }, rt };
    int calls = atomic_load(&close_calls);
    pn_close_future c = pn_close_async(&a);
    script s = SCRIPT(.first = PN_FUTURE(&first), .then = unread_write, .until = unread_buffered,
                      .last = inside ? PN_FUTURE(&c) : NULL, .arg = &u);
    AWAIT(rt, s);
    cr_assert_eq(first.res, 1);
    cr_assert_eq(got[0], 'x');
    if (completion_mode(rt) && !inside)  /* the bytes sit in pollen's buffers */
        cr_assert_gt(pn__uio_buffers_out(pn__runtime_reactor(rt)), 0, "the buffers stay ours");
    if (!inside)
        AWAIT(rt, c);
    cr_assert_eq(c.res, 0, "close: %s", pn_strerror(c.res));
    cr_assert_eq(a.fd, -1);
    cr_assert_eq(atomic_load(&close_calls) - calls, on_uring(rt) ? 0 : 1);
    wait_closed_by_server(peer);
    if (completion_mode(rt))
        cr_assert_eq(pn__uio_buffers_out(pn__runtime_reactor(rt)), 0, "buffers kept");
    /* Closed already: 0 at once; no afd: -EINVAL. */
    pn_close_future again = pn_close_async(&a);
    AWAIT(rt, again);
    cr_assert_eq(again.res, 0);
    pn_close_future none = pn_close_async(NULL);
    AWAIT(rt, none);
    cr_assert_eq(none.res, -EINVAL);
    close(peer);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
    cr_assert_eq(count_fds(), fds, "an fd was left open");
}

BOTH(uring_io, close_future_closes)
{
    close_with_bytes_unread(fl, true);
    close_with_bytes_unread(fl, false);
}

/* A task that polls a close once and drops it. */
typedef struct close_once {
    pn_future base;
    pn_async_fd *a;
    pn_poll first;
} close_once;

static pn_poll close_once_poll(pn_future *f, pn_cx *cx)
{
    close_once *t = (close_once *)f;
    pn_close_future c = pn_close_async(t->a);
    t->first = pn_future_poll(PN_FUTURE(&c), cx);
    pn_future_drop(PN_FUTURE(&c));
    return PN_READY;
}

static const pn_future_vtable close_once_vt = { close_once_poll, NULL, "close_once" };

/* A close dropped before it ran still closes the descriptor: while the
 * runtime keeps running, or when it is freed right after. */
static void dropped_close_still_closes(pn_runtime_flavor fl, bool free_at_once)
{
    int fds = count_fds();
    pn_runtime *rt = flavour_new(fl);
    pn_async_fd a;
    int peer;
    pair(&a, &peer);
    close_once t = { .base = { &close_once_vt }, .a = &a };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&t), sizeof t, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    close_once *done = j.output;
    cr_assert_eq(done->first, on_uring(rt) ? PN_PENDING : PN_READY,
                 "on io_uring the close waits for the ring");
    pn_join_handle_free(h);
    cr_assert_eq(a.fd, -1);
    if (free_at_once) {
        cr_assert_eq(pn_runtime_free(rt), 0);
        wait_closed_by_server(peer);
    } else {
        sleep_in(rt, PN_MS(2));
        wait_closed_by_server(peer);
        cr_assert_eq(pn_runtime_free(rt), 0);
    }
    close(peer);
    cr_assert_eq(count_fds(), fds, "an fd was left open");
}

BOTH(uring_io, dropped_close_still_closes)
{
    dropped_close_still_closes(fl, false);
    dropped_close_still_closes(fl, true);
}

/* ---- accept through the ring -------------------------------------------- */

static atomic_int accept4_calls;

static int counting_accept4(int fd, struct sockaddr *a, socklen_t *len, int flags)
{
    atomic_fetch_add(&accept4_calls, 1);
    return accept4(fd, a, len, flags);
}

typedef struct acceptor {
    pn_future base;
    int pc;
    pn_tcp_listener *l;
    pn_tcp_accept_future acc;
} acceptor;

static pn_poll acceptor_poll(pn_future *f, pn_cx *cx)
{
    acceptor *a = (acceptor *)f;
    PN_ASYNC_BEGIN(a->pc);
    a->acc = pn_tcp_accept(a->l);
    PN_AWAIT(a->pc, &a->acc, cx);
    PN_ASYNC_END(a->pc);
}

static void acceptor_drop(pn_future *f)
{
    acceptor *a = (acceptor *)f;
    if (a->pc)
        pn_future_drop(PN_FUTURE(&a->acc));
}

static const pn_future_vtable acceptor_vt = { acceptor_poll, acceptor_drop, "acceptor" };

/* A blocking client connected to `at` (the listener's backlog takes it). */
static int client_to(const pn_sockaddr *at)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, &at->sa, at->len), 0, "connect: %s", strerror(errno));
    return fd;
}

static void listen_local(pn_tcp_listener *l, pn_sockaddr *at)
{
    *at = pn_sockaddr_loopback4(0);
    cr_assert_eq(pn_tcp_listen(l, at, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(l, at), 0);
}

/* An accept on l that waits (10 ms, nobody connects) and is dropped. */
static void drop_a_waiting_accept(pn_runtime *rt, pn_tcp_listener *l)
{
    pn_tcp_accept_future acc = pn_tcp_accept(l);
    pn_timeout_future t = pn_timeout(PN_FUTURE(&acc), PN_MS(10));
    AWAIT(rt, t);
    cr_assert_eq(t.res, -ETIMEDOUT);
}

/* One accept on l (within 5 s, else the connection was lost): the
 * accepted stream (not registered yet, so movable) and its peer. */
static pn_tcp_stream accept_one(pn_runtime *rt, pn_tcp_listener *l, pn_sockaddr *peer)
{
    pn_tcp_accept_future acc = pn_tcp_accept(l);
    pn_timeout_future t = pn_timeout(PN_FUTURE(&acc), PN_SEC(5));
    AWAIT(rt, t);
    cr_assert_eq(t.res, 0, "the connection was lost");
    cr_assert_eq(acc.res, 0, "accept: %s", pn_strerror(acc.res));
    if (peer)
        *peer = acc.peer;
    return acc.stream;
}

static bool accept4_tried(void *arg)
{
    (void)arg;
    return atomic_load(&accept4_calls) > 0;
}

/* An accept task whose first try (accept4) finds the backlog empty; a
 * client comes while it waits (inside the pn_block_on that awaits it, so
 * that on io_uring its accept window is in the kernel): the window brings
 * the connection, with the peer's address. */
BOTH(uring_io, accept_waits_in_the_ring)
{
    atomic_store(&accept4_calls, 0);
    pn__sys.accept4 = counting_accept4;
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    acceptor a = { .base = { &acceptor_vt }, .l = &l };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), sizeof a, &h), 0);
    pn_join_future j = pn_join(h);
    clients k = { .at = &at, .n = 1, .say = true };
    script s = SCRIPT(.before = accept4_tried, .then = clients_connect, .last = PN_FUTURE(&j),
                      .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(j.res, 0);
    acceptor *done = j.output;
    cr_assert_eq(done->acc.res, 0, "accept: %s", pn_strerror(done->acc.res));
    pn_tcp_stream st = done->acc.stream;     /* not registered yet: movable */
    pn_sockaddr peer = done->acc.peer;
    pn_join_handle_free(h);
    /* One try found the backlog empty; on io_uring the accept request
     * brought the connection (no second accept4), with the peer's address;
     * on epoll a second accept4 did. */
    cr_assert_eq(atomic_load(&accept4_calls), completion_mode(rt) ? 1 : 2);
    pn_sockaddr mine;
    mine.len = sizeof(mine.storage);
    cr_assert_eq(getsockname(k.c[0], &mine.sa, &mine.len), 0);
    cr_assert_eq(peer.len, mine.len);
    cr_assert_eq(pn_sockaddr_port(&peer), pn_sockaddr_port(&mine));
    char got;
    read_n(rt, &st.afd, &got, 1);
    cr_assert_eq(got, 'a');
    cr_assert_eq(pn_tcp_close(&st), 0);
    close(k.c[0]);
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
}

/* The client's end sees its connection closed (EOF or reset) by then. */
static void wait_closed_by_server(int c)
{
    struct pollfd p = { .fd = c, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 10000), 1, "the server never closed the connection");
    char b;
    ssize_t n = read(c, &b, 1);
    cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "read: %zd", n);
}

BOTH(uring_io, dropped_accept_loses_no_connection)
{
    int fds = count_fds();
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    /* An accept that waits, dropped; then a client comes, in the same
     * pn_block_on.  On io_uring the dropped future's accept window is still
     * in the kernel and takes it: the next accept must return it (taken
     * from what the window holds), not lose it. */
    int want = completion_mode(rt) ? 1 : 0;
    clients k = { .at = &at, .n = 1, .say = true, .base = count_fds(), .want = want };
    script s = SCRIPT(.arm = &l, .then = clients_connect, .until = clients_taken, .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(clients_ahead(&k), want, "the window took it: %d", clients_ahead(&k));
    pn_tcp_stream s2 = accept_one(rt, &l, NULL);
    char got;
    read_n(rt, &s2.afd, &got, 1);
    cr_assert_eq(got, 'a');
    cr_assert_eq(pn_tcp_close(&s2), 0);
    close(k.c[0]);
    /* The client comes after that pn_block_on returned: on the current-
     * thread runtime the window was taken down then (nothing of pollen's
     * stays in the kernel between two pn_block_on), so the connection
     * waits in the backlog for the next accept. */
    drop_a_waiting_accept(rt, &l);
    int c = client_to(&at);
    cr_assert_eq(write(c, "x", 1), 1);
    s2 = accept_one(rt, &l, NULL);
    read_n(rt, &s2.afd, &got, 1);
    cr_assert_eq(got, 'x');
    cr_assert_eq(pn_tcp_close(&s2), 0);
    close(c);
    /* As the first, but the listener is closed instead: a connection the
     * dropped future's window took is closed with it. */
    k.base = count_fds();
    s = SCRIPT(.arm = &l, .then = clients_connect, .until = clients_taken, .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(clients_ahead(&k), want, "the window took it: %d", clients_ahead(&k));
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    wait_closed_by_server(k.c[0]);
    close(k.c[0]);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), fds, "an accepted fd was left open");
}

/* A client comes while an accept task waits, and the kernel's accept
 * request takes the connection, but pn_block_on returns before the
 * runtime has seen the request's CQE (the script's then() waits for the
 * accepted fd without turning the runtime), so it is reaped while the ring
 * is taken down (park_ring); then the task is aborted.  The connection is
 * not lost: the next accept returns it (on io_uring from what the request
 * brought, without an accept4 of its own); or closing the listener closes
 * it. */
typedef struct kept_case {
    clients k;
    int calls0;                /* accept4 calls before the task's first */
    bool completion;
} kept_case;

static bool kept_task_tried(void *arg)
{
    return atomic_load(&accept4_calls) > ((kept_case *)arg)->calls0;
}

static void kept_connect(void *arg)
{
    kept_case *kc = arg;
    kc->k.base = count_fds();
    clients_connect(&kc->k);
    for (int i = 0; kc->completion && i < 5000 && !clients_taken(&kc->k); i++) {
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);        /* a syscall: the request's task work runs */
    }
    if (kc->completion)
        cr_assert(clients_taken(&kc->k), "the accept request never took the connection");
}

Test(uring_io, accept_completed_for_an_aborted_task_is_kept)
{
    atomic_store(&accept4_calls, 0);
    pn__sys.accept4 = counting_accept4;
    int fds = count_fds();
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    for (int round = 0; round < 2; round++) {
        acceptor a = { .base = { &acceptor_vt }, .l = &l };
        pn_join_handle *h;
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), sizeof a, &h), 0);
        kept_case kc = { .k = { .at = &at, .n = 1, .say = true, .want = 1 },
                         .calls0 = atomic_load(&accept4_calls), .completion = completion_mode(rt) };
        script s = SCRIPT(.before = kept_task_tried, .then = kept_connect, .arg = &kc);
        AWAIT(rt, s);
        int c = kc.k.c[0];
        int calls = atomic_load(&accept4_calls);
        pn_join_handle_abort(h);
        pn_join_future j = pn_join(h);
        AWAIT(rt, j);
        cr_assert_eq(j.res, -ECANCELED);
        pn_join_handle_free(h);
        if (round == 1) {
            /* Closing the listener closes the connection it kept. */
            cr_assert_eq(pn_tcp_listener_close(&l), 0);
            wait_closed_by_server(c);
            close(c);
            break;
        }
        pn_tcp_stream st = accept_one(rt, &l, NULL);
        if (completion_mode(rt))
            cr_assert_eq(atomic_load(&accept4_calls), calls, "it came from the kept request");
        char got;
        read_n(rt, &st.afd, &got, 1);
        cr_assert_eq(got, 'a');
        cr_assert_eq(pn_tcp_close(&st), 0);
        close(c);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
    cr_assert_eq(count_fds(), fds, "an accepted fd was left open");
}

/* Two tasks accepting on one listener: each gets a connection (they
 * displace each other's waker while they wait, as io.h says; neither is
 * left asleep). */
static void two_acceptors_both_get_one(pn_runtime_flavor fl)
{
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    acceptor a[2];
    pn_join_handle *h[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (acceptor){ .base = { &acceptor_vt }, .l = &l };
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a[i]), sizeof a[i], &h[i]), 0);
    }
    sleep_in(rt, PN_MS(10));
    int c[2] = { client_to(&at), client_to(&at) };
    for (int i = 0; i < 2; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        acceptor *done = j.output;
        cr_assert_eq(done->acc.res, 0, "acceptor %d: %s", i, pn_strerror(done->acc.res));
        pn_tcp_stream s = done->acc.stream;
        pn_join_handle_free(h[i]);
        cr_assert_eq(pn_tcp_close(&s), 0);
        close(c[i]);
    }
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* Current-thread only: two tasks of a multi-thread runtime waiting in the
 * same direction on one fd is outside io.h's contract (the readiness
 * path's per-direction state is one task's). */
Test(uring_io, two_acceptors_both_get_one)
{
    two_acceptors_both_get_one(PN_RUNTIME_CURRENT_THREAD);
}

/* Releasing a listener while a client comes: a connection is either
 * accepted through pollen (-EBUSY) or left in the backlog of the released
 * fd, never lost.  during: inside the pn_block_on whose dropped accept
 * left the window waiting (on io_uring its requests are in the kernel:
 * the release cancels them and must wait for them); else after it
 * returned (on the current-thread runtime the window was taken down then,
 * and the release is immediate). */
static void release_listener(pn_runtime_flavor fl, bool during)
{
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    clients k = { .at = &at, .n = 1 };
    releaser z = { .base = { &releaser_vt }, .a = &l.afd, .l = &l };
    if (during) {
        script s = SCRIPT(.arm = &l, .then = clients_connect, .last = PN_FUTURE(&z), .arg = &k);
        AWAIT(rt, s);
    } else {
        drop_a_waiting_accept(rt, &l);
        clients_connect(&k);
        AWAIT(rt, z);
    }
    if (completion_mode(rt) && (during || fl == PN_RUNTIME_MULTI_THREAD))
        cr_assert_lt(z.first, 0, "the window was in the kernel: the release must wait for it");
    if (on_uring(rt) && !during && fl == PN_RUNTIME_CURRENT_THREAD)
        cr_assert_geq(z.first, 0, "between two pn_block_on nothing of pollen's is in the kernel");
    cr_assert(completion_mode(rt) || !z.waited, "only completion mode has requests in flight");
    int got = z.accepted, fd = z.fd;
    if (!got) {                         /* still in the backlog */
        struct pollfd p = { .fd = fd, .events = POLLIN };
        cr_assert_eq(poll(&p, 1, 10000), 1, "the connection was lost");
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        cr_assert_geq(c, 0);
        close(c);
        got++;
    }
    cr_assert_eq(got, 1);
    close(fd);
    close(k.c[0]);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(uring_io, release_listener_loses_no_connection)
{
    release_listener(fl, true);
    release_listener(fl, false);
}

/* The local port of a client socket. */
static int local_port(int c)
{
    pn_sockaddr a;
    a.len = sizeof(a.storage);
    cr_assert_eq(getsockname(c, &a.sa, &a.len), 0);
    return pn_sockaddr_port(&a);
}

/* Which of the n clients `peer` is; each may be found once (seen[]). */
static int client_of(const int *c, int n, const pn_sockaddr *peer, bool *seen)
{
    int i = 0;
    while (i < n && local_port(c[i]) != pn_sockaddr_port(peer))
        i++;
    cr_assert_lt(i, n, "the peer address names no client");
    cr_assert(!seen[i], "client %d accepted twice", i);
    seen[i] = true;
    return i;
}

/* Connections that come while the accept window waits (inside the
 * pn_block_on that left it waiting) are all brought by its requests (no
 * accept4 each), each with its own peer address and its own bytes; the
 * accepts after that pn_block_on returned take them from what the window
 * holds. */
BOTH(uring_io, accept_window_brings_many_connections)
{
    enum { N = 5 };
    atomic_store(&accept4_calls, 0);
    pn__sys.accept4 = counting_accept4;
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    clients k = { .at = &at, .n = N, .say = true, .base = count_fds(),
                  .want = completion_mode(rt) ? N : 0 };
    /* One accept4 (an empty backlog) fills the window; the clients come. */
    script s = SCRIPT(.arm = &l, .then = clients_connect, .until = clients_taken, .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(clients_ahead(&k), k.want, "the window took %d", clients_ahead(&k));
    bool seen[N] = { false };
    for (int n = 0; n < N; n++) {
        pn_sockaddr peer;
        pn_tcp_stream st = accept_one(rt, &l, &peer);
        int i = client_of(k.c, N, &peer, seen);
        char got;
        read_n(rt, &st.afd, &got, 1);
        cr_assert_eq(got, 'a' + i, "the address belongs to another connection");
        cr_assert_eq(pn_tcp_close(&st), 0);
    }
    if (completion_mode(rt))
        cr_assert_eq(atomic_load(&accept4_calls), 1, "the window brought them all");
    else
        cr_assert_geq(atomic_load(&accept4_calls), 1 + N);
    for (int i = 0; i < N; i++)
        close(k.c[i]);
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
}

/* Accept `n` connections on `l` and close them, as a future (a script's
 * first step). */
typedef struct accept_some {
    pn_future base;
    int pc, i, n;
    pn_tcp_listener *l;
    pn_tcp_accept_future acc;
} accept_some;

static pn_poll accept_some_poll(pn_future *f, pn_cx *cx)
{
    accept_some *a = (accept_some *)f;
    PN_ASYNC_BEGIN(a->pc);
    for (a->i = 0; a->i < a->n; a->i++) {
        a->acc = pn_tcp_accept(a->l);
        PN_AWAIT(a->pc, &a->acc, cx);
        cr_assert_eq(a->acc.res, 0, "accept: %s", pn_strerror(a->acc.res));
        cr_assert_eq(pn_tcp_close(&a->acc.stream), 0);
    }
    PN_ASYNC_END(a->pc);
}

static const pn_future_vtable accept_some_vt = { accept_some_poll, NULL, "accept_some" };

/* A flood of connections while the runtime runs but nobody accepts (the
 * clients connect inside the pn_block_on whose dropped accept left the
 * window waiting): the kernel accepts exactly PN__ACCEPT_AHEAD of them
 * behind the server's back, one per request of the window, and leaves the
 * rest in its backlog.  That pn_block_on returning takes down what is
 * still in flight, and keeps what the window accepted.  Accepting (in the
 * next pn_block_on) refills the window, to the bound again, with no
 * accept4; nothing is lost, and closing the listener closes what the
 * window holds. */
BOTH(uring_io, accept_ahead_is_bounded)
{
    enum { N = 3 * PN__ACCEPT_AHEAD };
    atomic_store(&accept4_calls, 0);
    pn__sys.accept4 = counting_accept4;
    int fds = count_fds();
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    int expect = completion_mode(rt) ? (int)PN__ACCEPT_AHEAD : 0;
    clients k = { .at = &at, .n = N, .base = count_fds(), .want = expect };
    script s = SCRIPT(.arm = &l, .then = clients_connect, .until = clients_taken, .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(clients_ahead(&k), expect, "%d accepted ahead", clients_ahead(&k));
    accept_some half = { .base = { &accept_some_vt }, .n = N / 2, .l = &l };
    s = SCRIPT(.first = PN_FUTURE(&half), .until = clients_taken, .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(clients_ahead(&k), expect, "%d accepted ahead after the refill",
                 clients_ahead(&k));
    if (completion_mode(rt))
        cr_assert_eq(atomic_load(&accept4_calls), 1, "the window did every accept");
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    for (int i = 0; i < N; i++) {
        wait_closed_by_server(k.c[i]);
        close(k.c[i]);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
    cr_assert_eq(count_fds(), fds, "an accepted fd was left open");
}

/* The runtime is freed while the window holds connections (taken while a
 * pn_block_on ran): a later runtime's accepts take them (none lost), then
 * the readiness path takes over. */
BOTH(uring_io, accepted_connections_outlive_the_runtime)
{
    enum { N = 3 };
    int fds = count_fds();
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    clients k = { .at = &at, .n = N, .base = count_fds(), .want = completion_mode(rt) ? N : 0 };
    script s = SCRIPT(.arm = &l, .then = clients_connect, .until = clients_taken, .arg = &k);
    AWAIT(rt, s);
    cr_assert_eq(clients_ahead(&k), k.want, "the window took %d", clients_ahead(&k));
    cr_assert_eq(pn_runtime_free(rt), 0);
    rt = flavour_new(fl);
    k.c[N] = client_to(&at);
    bool seen[N + 1] = { false };
    for (int n = 0; n <= N; n++) {
        pn_sockaddr peer;
        pn_tcp_stream st = accept_one(rt, &l, &peer);
        (void)client_of(k.c, N + 1, &peer, seen);
        cr_assert_eq(pn_tcp_close(&st), 0);
    }
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    for (int i = 0; i <= N; i++)
        close(k.c[i]);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), fds, "an fd was left open");
}

/* A listener closed from outside the runtime (the test's thread, while
 * the runtime idles) is closed for the kernel when the close returns: a
 * connect right after is refused, not queued in a backlog that the
 * requests of pollen's (the accept window, a readiness poll) would keep
 * alive until the runtime next turns. */
BOTH(uring_io, close_from_outside_releases_at_once)
{
    int fds = count_fds();
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 20; round++) {
        pn_tcp_listener l;
        pn_sockaddr at;
        listen_local(&l, &at);
        drop_a_waiting_accept(rt, &l);    /* requests in the kernel now */
        cr_assert_eq(pn_tcp_listener_close(&l), 0);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(c, 0);
        int r = connect(c, &at.sa, at.len);
        cr_assert(r < 0 && errno == ECONNREFUSED,
                  "%s round %d: connect after close: %s", fl == PN_RUNTIME_MULTI_THREAD ? "mt" : "ct", round, r == 0 ? "accepted" : strerror(errno));
        close(c);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), fds, "an fd was left open");
}

/* A task that arms the listener's requests in its worker's ring (one poll
 * of an accept, dropped), then keeps that worker busy in the same poll
 * until told to stop: the ring's owner cannot turn it meanwhile. */
typedef struct arm_then_spin {
    pn_future base;
    pn_tcp_listener *l;
    atomic_int *armed, *release;
} arm_then_spin;

static pn_poll arm_then_spin_poll(pn_future *f, pn_cx *cx)
{
    arm_then_spin *a = (arm_then_spin *)f;
    pn_tcp_accept_future acc = pn_tcp_accept(a->l);
    if (pn_future_poll(PN_FUTURE(&acc), cx) == PN_PENDING)
        pn_future_drop(PN_FUTURE(&acc));
    else if (acc.res == 0)
        pn_tcp_close(&acc.stream);
    atomic_store(a->armed, 1);
    pn_instant end = pn_now() + PN_SEC(10);
    while (!atomic_load(a->release) && pn_now() < end)
        ;
    return PN_READY;
}

static const pn_future_vtable arm_then_spin_vt = { arm_then_spin_poll, NULL, "arm_then_spin" };

/* The same while the worker whose ring holds the listener's requests is
 * kept busy, so they cannot be cancelled before the close returns: the
 * close must still stop the listening (before: the requests held the
 * file, and the socket kept taking connections into its backlog). */
Test(uring_io, close_from_outside_stops_listening_while_the_ring_owner_is_busy)
{
    int fds = count_fds();
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    atomic_int armed = 0, release = 0;
    arm_then_spin a = { { &arm_then_spin_vt }, &l, &armed, &release };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, &a.base, sizeof a, &h), 0);
    while (!atomic_load(&armed))
        sched_yield();
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(c, 0);
    int r = connect(c, &at.sa, at.len);
    int err = errno;
    close(c);
    atomic_store(&release, 1);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    pn_join_handle_free(h);
    cr_assert(r < 0 && err == ECONNREFUSED, "connect after close: %s",
              r == 0 ? "accepted" : strerror(err));
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(count_fds(), fds, "an fd was left open");
}

/* A thread of the caller's registers a pipe with an idle current-thread
 * runtime, then blocks in a recv with a timeout while the pipe becomes
 * readable again and again: nothing pollen submitted from that thread may
 * interrupt it (io_uring runs a request's completion as task work on the
 * thread that submitted it: EINTR). */
typedef struct reg_thread {
    pn_runtime *rt;
    int pipe_rd;
    atomic_int in_recv;        /* set just before the recv */
    int res, err;
} reg_thread;

static void *register_then_block(void *arg)
{
    reg_thread *t = arg;
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, t->pipe_rd), 0);
    cr_assert_eq(pn_async_fd_register(&a, t->rt), 0);
    int sp[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    struct timeval tv = { 0, 500 * 1000 };
    cr_assert_eq(setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    char b;
    atomic_store(&t->in_recv, 1);
    t->res = (int)recv(sp[0], &b, 1, 0);
    t->err = errno;
    close(sp[0]);
    close(sp[1]);
    cr_assert_eq(pn_async_fd_release(&a), t->pipe_rd);
    return NULL;
}

Test(uring_io, registering_from_a_user_thread_does_not_interrupt_it)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    sleep_in(rt, PN_MS(1));
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    reg_thread t = { .rt = rt, .pipe_rd = p[0] };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, register_then_block, &t), 0);
    while (!atomic_load(&t.in_recv)) {
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 10; i++) {         /* the pipe turns readable */
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        cr_assert_eq(write(p[1], "x", 1), 1);
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(t.res, -1);
    cr_assert(t.err == EAGAIN || t.err == EWOULDBLOCK, "recv: %s", strerror(t.err));
    close(p[0]);
    close(p[1]);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* The first result of one accept poll loop (no back-off, unlike
 * pn_tcp_accept_future). */
typedef struct first_accept {
    pn_future base;
    pn_tcp_listener *l;
    pn_tcp_stream s;
    int res;
} first_accept;

static pn_poll first_accept_poll(pn_future *f, pn_cx *cx)
{
    first_accept *a = (first_accept *)f;
    return pn_tcp_poll_accept(a->l, cx, &a->s, NULL, &a->res);
}

static const pn_future_vtable first_accept_vt = { first_accept_poll, NULL, "first_accept" };

/* The process runs out of descriptors while the window waits and a client
 * comes (inside the pn_block_on whose dropped accept left the window
 * waiting): on io_uring a request ends with EMFILE (no accept4), the accept
 * returns it, and the connection stays in the kernel's backlog; it is
 * served once descriptors are back (by the next pn_block_on's accept). */
enum { HOGS = 4096 };

typedef struct emfile_case {
    const pn_sockaddr *at;
    int c, calls, nhogs;
    int hogs[HOGS];
} emfile_case;

static void hog_then_connect(void *arg)
{
    emfile_case *e = arg;
    e->calls = atomic_load(&accept4_calls);
    int fd;
    while (e->nhogs < HOGS && (fd = dup(0)) >= 0)
        e->hogs[e->nhogs++] = fd;
    cr_assert_eq(errno, EMFILE);
    cr_assert_eq(connect(e->c, &e->at->sa, e->at->len), 0, "connect: %s", strerror(errno));
    cr_assert_eq(write(e->c, "m", 1), 1);
}

BOTH(uring_io, emfile_while_an_accept_waits)
{
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)count_fds() + 64;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    atomic_store(&accept4_calls, 0);
    pn__sys.accept4 = counting_accept4;
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    static emfile_case e;
    e = (emfile_case){ .at = &at };
    e.c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(e.c, 0);
    first_accept fa = { .base = { &first_accept_vt }, .l = &l };
    pn_timeout_future t = pn_timeout(PN_FUTURE(&fa), PN_SEC(5));
    script s = SCRIPT(.arm = &l, .then = hog_then_connect, .last = PN_FUTURE(&t), .arg = &e);
    AWAIT(rt, s);
    cr_assert_eq(t.res, 0);
    cr_assert_eq(fa.res, -EMFILE, "accept: %s", pn_strerror(fa.res));
    if (completion_mode(rt))
        cr_assert_eq(atomic_load(&accept4_calls), e.calls, "the request brought the EMFILE");
    while (e.nhogs > 0)
        close(e.hogs[--e.nhogs]);
    pn_tcp_stream st = accept_one(rt, &l, NULL);
    char got;
    read_n(rt, &st.afd, &got, 1);
    cr_assert_eq(got, 'm');
    cr_assert_eq(pn_tcp_close(&st), 0);
    close(e.c);
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn__sys_reset();
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* Readiness waits on a listener: not ready with an empty backlog, ready
 * once a client connects. */
typedef struct wait_readable {
    pn_future base;
    pn_async_fd *a;
    pn_waker parked;
    int res;
} wait_readable;

static pn_poll wait_readable_poll(pn_future *f, pn_cx *cx)
{
    wait_readable *w = (wait_readable *)f;
    pn_poll p = pn_async_fd_poll_ready(w->a, cx, PN_READABLE, &w->res);
    if (p == PN_PENDING)
        w->parked = *cx->waker;
    return p;
}

static void wait_readable_drop(pn_future *f)
{
    wait_readable *w = (wait_readable *)f;
    pn__async_fd_forget(w->a, PN_READABLE, &w->parked);
}

static const pn_future_vtable wait_readable_vt = { wait_readable_poll, wait_readable_drop,
                                                   "wait_readable" };

BOTH(uring_io, listener_readiness)
{
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr at;
    listen_local(&l, &at);
    /* A fresh registration may report ready once (readiness is assumed
     * until a syscall says EAGAIN): clear it, as a caller does after an
     * accept that found nothing. */
    wait_readable w = { .base = { &wait_readable_vt }, .a = &l.afd };
    pn_timeout_future t = pn_timeout(PN_FUTURE(&w), PN_MS(20));
    AWAIT(rt, t);
    pn_async_fd_clear_ready(&l.afd, PN_READABLE);
    w = (wait_readable){ .base = { &wait_readable_vt }, .a = &l.afd };
    t = pn_timeout(PN_FUTURE(&w), PN_MS(20));
    AWAIT(rt, t);
    cr_assert_eq(t.res, -ETIMEDOUT, "readable with an empty backlog");
    int c = client_to(&at);
    w = (wait_readable){ .base = { &wait_readable_vt }, .a = &l.afd };
    t = pn_timeout(PN_FUTURE(&w), PN_SEC(5));
    AWAIT(rt, t);
    cr_assert_eq(t.res, 0, "not readable with a connection waiting");
    cr_assert_eq(w.res, PN_READABLE);
    pn_tcp_accept_future acc = pn_tcp_accept(&l);
    AWAIT(rt, acc);
    cr_assert_eq(acc.res, 0);
    cr_assert_eq(pn_tcp_close(&acc.stream), 0);
    close(c);
    cr_assert_eq(pn_tcp_listener_close(&l), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

