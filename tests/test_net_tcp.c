/*
 * test_net_tcp.c - TCP over loopback (pollen/net.h): listen, accept,
 * connect (refused, timed out, dropped), read/write/read_exact/writev/peek,
 * split halves in two futures at once, shutdown and half-close, options
 * and addresses, hostile peers (reset, closed: -EPIPE/-ECONNRESET and no
 * SIGPIPE), close while another task waits (-ECANCELED), accept under
 * EMFILE (backs off, no spin, serves again), and 10,000 connections held
 * at once against a forked client process.
 *
 * Every case runs on the current-thread runtime and on the multi-thread
 * runtime with 2 workers, and checks that the runtime left no fd behind.
 * Data is checked byte for byte.  No timing is asserted.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "helpers.h"
#include "core/sys.h"

static void net_fini(void) { pn__sys_reset(); }

TestSuite(net_tcp, .timeout = PN_TEST_TIMEOUT, .fini = net_fini);

/* ---- fixtures ------------------------------------------------------------- */

/* Block on `f` in a fresh runtime of flavour `fl` (BOTH checks that no fd
 * is left behind). */
static void run_on(pn_runtime_flavor fl, pn_future *f)
{
    pn_runtime *rt = flavour_new(fl);
    cr_assert_eq(pn_block_on(rt, f), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 11) + 3); }

/* A connected pair made through the API: listener, client, server. */
typedef struct pair {
    pn_tcp_listener l;
    pn_tcp_stream c, s;
} pair;

typedef struct pair_open {
    pn_future base;
    int pc;
    pair *p;
    bool v6;
    pn_tcp_connect_future conn;
    pn_tcp_accept_future acc;
} pair_open;

static pn_poll pair_open_poll(pn_future *f, pn_cx *cx)
{
    pair_open *o = (pair_open *)f;
    PN_ASYNC_BEGIN(o->pc);
    {
        pn_sockaddr any = o->v6 ? pn_sockaddr_loopback6(0) : pn_sockaddr_loopback4(0);
        int err = pn_tcp_listen(&o->p->l, &any, NULL);
        cr_assert_eq(err, 0, "listen: %s", pn_strerror(err));
        pn_sockaddr local;
        cr_assert_eq(pn_tcp_listener_local_addr(&o->p->l, &local), 0);
        cr_assert_gt(pn_sockaddr_port(&local), 0, "port 0 became a real port");
        o->conn = pn_tcp_connect(&o->p->c, &local, PN_SEC(5));
    }
    PN_AWAIT(o->pc, &o->conn, cx);
    cr_assert_eq(o->conn.res, 0, "connect: %s", pn_strerror(o->conn.res));
    o->acc = pn_tcp_accept(&o->p->l);
    PN_AWAIT(o->pc, &o->acc, cx);
    cr_assert_eq(o->acc.res, 0, "accept: %s", pn_strerror(o->acc.res));
    o->p->s = o->acc.stream;            /* not registered yet: movable */
    {
        pn_sockaddr cl, lo, srv_local, peer;
        cr_assert_eq(pn_tcp_local_addr(&o->p->c, &cl), 0);
        cr_assert(pn_sockaddr_equal(&cl, &o->acc.peer), "accept's peer is the client");
        cr_assert_eq(pn_tcp_peer_addr(&o->p->s, &peer), 0);
        cr_assert(pn_sockaddr_equal(&cl, &peer));
        cr_assert_eq(pn_tcp_listener_local_addr(&o->p->l, &lo), 0);
        cr_assert_eq(pn_tcp_peer_addr(&o->p->c, &peer), 0);
        cr_assert(pn_sockaddr_equal(&lo, &peer), "client's peer is the listener");
        cr_assert_eq(pn_tcp_local_addr(&o->p->s, &srv_local), 0);
        cr_assert(pn_sockaddr_equal(&lo, &srv_local));
    }
    PN_ASYNC_END(o->pc);
}

static const pn_future_vtable pair_open_vt = { pair_open_poll, NULL, "pair_open" };

static pair_open pair_open_new(pair *p, bool v6)
{
    return (pair_open){ .base = { &pair_open_vt }, .p = p, .v6 = v6 };
}

static void pair_close(pair *p)
{
    cr_assert_eq(pn_tcp_close(&p->c), 0);
    cr_assert_eq(pn_tcp_close(&p->s), 0);
    cr_assert_eq(pn_tcp_listener_close(&p->l), 0);
}

/* ---- small exchanges in one task --------------------------------------- */

typedef struct basics {
    pn_future base;
    int pc;
    bool v6;
    pair p;
    pair_open open;
    pn_write_all_future wa;
    pn_tcp_read_exact_future re;
    pn_tcp_peek_future pk;
    pn_read_future rd;
    pn_write_future wr;
    ssize_t n;
    char buf[64];
} basics;

static pn_poll basics_poll(pn_future *f, pn_cx *cx)
{
    basics *t = (basics *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, t->v6);
    PN_AWAIT(t->pc, &t->open, cx);

    /* write_all / read_exact */
    t->wa = pn_tcp_write_all(&t->p.c, "hello, pollen", 13);
    PN_AWAIT(t->pc, &t->wa, cx);
    cr_assert_eq(t->wa.res, 13);
    /* peek leaves the bytes queued */
    memset(t->buf, 0, sizeof(t->buf));
    t->pk = pn_tcp_peek(&t->p.s, t->buf, 5);
    PN_AWAIT(t->pc, &t->pk, cx);
    cr_assert_eq(t->pk.res, 5);
    cr_assert_arr_eq(t->buf, "hello", 5);
    PN_AWAIT_POLL(t->pc, pn_tcp_poll_peek(&t->p.s, cx, t->buf, 2, &t->n));
    cr_assert_eq(t->n, 2);
    cr_assert_arr_eq(t->buf, "he", 2);
    memset(t->buf, 0, sizeof(t->buf));
    t->re = pn_tcp_read_exact(&t->p.s, t->buf, 13);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, 13);
    cr_assert_eq(t->re.done, 13);
    cr_assert_arr_eq(t->buf, "hello, pollen", 13);

    /* write / read, and the poll helpers, the other way */
    t->wr = pn_tcp_write(&t->p.s, "pong", 4);
    PN_AWAIT(t->pc, &t->wr, cx);
    cr_assert_eq(t->wr.res, 4);
    PN_AWAIT_POLL(t->pc, pn_tcp_poll_write(&t->p.s, cx, "!", 1, &t->n));
    cr_assert_eq(t->n, 1);
    t->re = pn_tcp_read_exact(&t->p.c, t->buf, 5);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, 5);
    cr_assert_arr_eq(t->buf, "pong!", 5);

    /* half-close: the peer reads 0 (again and again) and can still write */
    cr_assert_eq(pn_tcp_write(&t->p.c, "0123456789", 10).afd, &t->p.c.afd);
    t->wa = pn_tcp_write_all(&t->p.c, "0123456789", 10);
    PN_AWAIT(t->pc, &t->wa, cx);
    cr_assert_eq(pn_tcp_shutdown(&t->p.c, SHUT_WR), 0);
    memset(t->buf, 0, sizeof(t->buf));
    t->re = pn_tcp_read_exact(&t->p.s, t->buf, 20);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, -EPIPE, "early end of stream: %zd", t->re.res);
    cr_assert_eq(t->re.done, 10);
    cr_assert_arr_eq(t->buf, "0123456789", 10);
    t->rd = pn_tcp_read(&t->p.s, t->buf, sizeof(t->buf));
    PN_AWAIT(t->pc, &t->rd, cx);
    cr_assert_eq(t->rd.res, 0);
    PN_AWAIT_POLL(t->pc, pn_tcp_poll_peek(&t->p.s, cx, t->buf, 4, &t->n));
    cr_assert_eq(t->n, 0);
    t->re = pn_tcp_read_exact(&t->p.s, t->buf, 4);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, -EPIPE);
    cr_assert_eq(t->re.done, 0, "a clean close at a boundary: .done == 0");
    t->wa = pn_tcp_write_all(&t->p.s, "still here", 10);
    PN_AWAIT(t->pc, &t->wa, cx);
    cr_assert_eq(t->wa.res, 10);
    t->re = pn_tcp_read_exact(&t->p.c, t->buf, 10);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, 10);
    cr_assert_arr_eq(t->buf, "still here", 10);
    /* read_exact of 0 bytes */
    t->re = pn_tcp_read_exact(&t->p.c, t->buf, 0);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, 0);
    pair_close(&t->p);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable basics_vt = { basics_poll, NULL, "basics" };

BOTH(net_tcp, basics_ipv4)
{
    basics t = { .base = { &basics_vt }, .v6 = false };
    run_on(fl, PN_FUTURE(&t));
}

BOTH(net_tcp, basics_ipv6)
{
    basics t = { .base = { &basics_vt }, .v6 = true };
    run_on(fl, PN_FUTURE(&t));
}

/* ---- a megabyte each way through split halves -------------------------- */

#define BULK (1u << 20)

/* Server: echo everything back, then close (a spawned task). */
typedef struct echo_task {
    pn_future base;
    int pc;
    pn_tcp_stream s;
    ssize_t n;
    pn_write_all_future w;
    char buf[5000];
} echo_task;

static pn_poll echo_task_poll(pn_future *f, pn_cx *cx)
{
    echo_task *e = (echo_task *)f;
    PN_ASYNC_BEGIN(e->pc);
    for (;;) {
        PN_AWAIT_POLL(e->pc, pn_tcp_poll_read(&e->s, cx, e->buf, sizeof(e->buf), &e->n));
        cr_assert_geq(e->n, 0, "echo read: %s", pn_strerror((int)e->n));
        if (e->n == 0)
            break;
        e->w = pn_tcp_write_all(&e->s, e->buf, (size_t)e->n);
        PN_AWAIT(e->pc, &e->w, cx);
        cr_assert_eq(e->w.res, e->n);
    }
    pn_tcp_close(&e->s);
    PN_ASYNC_END(e->pc);
}

static void echo_task_drop(pn_future *f) { pn_tcp_close(&((echo_task *)f)->s); }

static const pn_future_vtable echo_task_vt = { echo_task_poll, echo_task_drop, "echo_task" };

/* Writer half: BULK bytes through writev_all with odd iovecs, then SHUT_WR. */
typedef struct bulk_writer {
    pn_future base;
    int pc;
    pn_tcp_write_half h;
    size_t sent;
    unsigned char *data;
    struct iovec iov[5];
    pn_tcp_writev_future wv;
} bulk_writer;

static pn_poll bulk_writer_poll(pn_future *f, pn_cx *cx)
{
    bulk_writer *w = (bulk_writer *)f;
    PN_ASYNC_BEGIN(w->pc);
    while (w->sent < BULK) {
        {
            size_t left = BULK - w->sent, off = w->sent, sizes[5] = { 1, 0, 7001, 3, 100000 };
            for (int i = 0; i < 5; i++) {
                size_t n = sizes[i] < left ? sizes[i] : left;
                w->iov[i] = (struct iovec){ w->data + off, n };
                off += n;
                left -= n;
            }
            w->wv = pn_tcp_wr_writev(w->h, w->iov, 5);
        }
        PN_AWAIT(w->pc, &w->wv, cx);
        cr_assert_gt(w->wv.res, 0, "writev: %s", pn_strerror((int)w->wv.res));
        cr_assert_eq((size_t)w->wv.res, w->wv.done);
        w->sent += (size_t)w->wv.res;
    }
    cr_assert_eq(pn_tcp_wr_shutdown(w->h), 0);
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable bulk_writer_vt = { bulk_writer_poll, NULL, "bulk_writer" };

/* Reader half: read_exact the echo, check it, then end of stream. */
typedef struct bulk_reader {
    pn_future base;
    int pc;
    pn_tcp_read_half h;
    unsigned char *got;
    pn_tcp_read_exact_future re;
    pn_read_future rd;
    char tail[8];
} bulk_reader;

static pn_poll bulk_reader_poll(pn_future *f, pn_cx *cx)
{
    bulk_reader *r = (bulk_reader *)f;
    PN_ASYNC_BEGIN(r->pc);
    r->re = pn_tcp_rd_read_exact(r->h, r->got, BULK);
    PN_AWAIT(r->pc, &r->re, cx);
    cr_assert_eq(r->re.res, (ssize_t)BULK, "read_exact: %zd", r->re.res);
    for (size_t i = 0; i < BULK; i++)
        cr_assert_eq(r->got[i], pattern(i), "byte %zu", i);
    r->rd = pn_tcp_rd_read(r->h, r->tail, sizeof(r->tail));
    PN_AWAIT(r->pc, &r->rd, cx);
    cr_assert_eq(r->rd.res, 0);
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable bulk_reader_vt = { bulk_reader_poll, NULL, "bulk_reader" };

typedef struct bulk {
    pn_future base;
    int pc;
    pair p;
    pair_open open;
    bulk_writer w;
    bulk_reader r;
    pn_join2_future both;
    pn_join_handle *echo;
    pn_join_future j;
} bulk;

static pn_poll bulk_poll(pn_future *f, pn_cx *cx)
{
    bulk *t = (bulk *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, false);
    PN_AWAIT(t->pc, &t->open, cx);
    {
        echo_task e = { .base = { &echo_task_vt }, .s = t->p.s };
        t->p.s.afd = (pn_async_fd){ .fd = -1, .closed = true };   /* moved to the task */
        cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&e), sizeof(e), &t->echo), 0);
        pn_tcp_read_half rd;
        pn_tcp_write_half wr;
        pn_tcp_split(&t->p.c, &rd, &wr);
        cr_assert_eq(rd.stream, &t->p.c);
        t->w.h = wr;
        t->r.h = rd;
        t->both = pn_join2(PN_FUTURE(&t->w), PN_FUTURE(&t->r));
    }
    PN_AWAIT(t->pc, &t->both, cx);
    t->j = pn_join(t->echo);
    PN_AWAIT(t->pc, &t->j, cx);
    cr_assert_eq(t->j.res, 0);
    pn_join_handle_free(t->echo);
    pair_close(&t->p);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable bulk_vt = { bulk_poll, NULL, "bulk" };

BOTH(net_tcp, split_halves_echo_a_megabyte_each_way)
{
    unsigned char *data = malloc(BULK), *got = malloc(BULK);
    for (size_t i = 0; i < BULK; i++)
        data[i] = pattern(i);
    bulk t = { .base = { &bulk_vt } };
    t.w = (bulk_writer){ .base = { &bulk_writer_vt }, .data = data };
    t.r = (bulk_reader){ .base = { &bulk_reader_vt }, .got = got };
    run_on(fl, PN_FUTURE(&t));
    free(data);
    free(got);
}

/* ---- connect errors ------------------------------------------------------- */

typedef struct connect_one {
    pn_future base;
    int pc;
    pn_sockaddr addr;
    bool use_addr;
    uint64_t timeout;
    pn_tcp_stream s;
    pn_tcp_connect_future conn;
} connect_one;

static pn_poll connect_one_poll(pn_future *f, pn_cx *cx)
{
    connect_one *c = (connect_one *)f;
    PN_ASYNC_BEGIN(c->pc);
    c->conn = pn_tcp_connect(&c->s, c->use_addr ? &c->addr : NULL, c->timeout);
    PN_AWAIT(c->pc, &c->conn, cx);
    PN_ASYNC_END(c->pc);
}

static const pn_future_vtable connect_one_vt = { connect_one_poll, NULL, "connect_one" };

static int connect_result(pn_runtime_flavor fl, const pn_sockaddr *a, uint64_t timeout)
{
    connect_one c = { .base = { &connect_one_vt }, .timeout = timeout };
    if (a) {
        c.addr = *a;
        c.use_addr = true;
    }
    run_on(fl, PN_FUTURE(&c));
    if (c.conn.res == 0)
        pn_tcp_close(&c.s);
    else
        cr_assert_eq(c.s.afd.fd, -1, "failed connect closed its socket");
    return c.conn.res;
}

/* A port nobody listens on (bound, then closed). */
static uint16_t dead_port(void)
{
    pn_tcp_listener l;
    pn_sockaddr a = pn_sockaddr_loopback4(0);
    cr_assert_eq(pn_tcp_listen(&l, &a, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&l, &a), 0);
    pn_tcp_listener_close(&l);
    return (uint16_t)pn_sockaddr_port(&a);
}

BOTH(net_tcp, connect_refused_and_bad_arguments)
{
    pn_sockaddr a = pn_sockaddr_loopback4(dead_port());
    cr_assert_eq(connect_result(fl, &a, 0), -ECONNREFUSED);
    cr_assert_eq(connect_result(fl, &a, PN_SEC(5)), -ECONNREFUSED);
    pn_sockaddr b = pn_sockaddr_loopback6(dead_port());
    cr_assert_eq(connect_result(fl, &b, 0), -ECONNREFUSED);
    pn_sockaddr u;
    memset(&u, 0, sizeof(u));
    u.un.sun_family = AF_UNIX;
    u.len = sizeof(sa_family_t) + 2;
    cr_assert_eq(connect_result(fl, &u, 0), -EAFNOSUPPORT);
    cr_assert_eq(connect_result(fl, NULL, 0), -EINVAL);
}

/* A listener with backlog 0 whose queue is full: the next SYN is dropped,
 * so a connect to it stays in progress until something gives up. */
static int full_listener(pn_sockaddr *addr, int *filler)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    pn_sockaddr a = pn_sockaddr_loopback4(0);
    cr_assert_eq(bind(l, &a.sa, a.len), 0);
    cr_assert_eq(listen(l, 0), 0);
    a.len = sizeof(a.storage);
    getsockname(l, &a.sa, &a.len);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(*filler, &a.sa, a.len), 0);   /* fills the queue of 1 */
    *addr = a;
    return l;
}

typedef struct connect_dropped {
    pn_future base;
    int pc;
    pn_sockaddr addr;
    pn_tcp_stream s;
    pn_tcp_connect_future conn;
    pn_timeout_future limit;
} connect_dropped;

static pn_poll connect_dropped_poll(pn_future *f, pn_cx *cx)
{
    connect_dropped *c = (connect_dropped *)f;
    PN_ASYNC_BEGIN(c->pc);
    c->conn = pn_tcp_connect(&c->s, &c->addr, 0);
    c->limit = pn_timeout(PN_FUTURE(&c->conn), PN_MS(50));
    PN_AWAIT(c->pc, &c->limit, cx);
    cr_assert_eq(c->limit.res, -ETIMEDOUT);
    cr_assert_eq(c->s.afd.fd, -1, "the dropped connect closed its socket");
    PN_ASYNC_END(c->pc);
}

static const pn_future_vtable connect_dropped_vt = { connect_dropped_poll, NULL, "connect_dropped" };

BOTH(net_tcp, connect_times_out_and_a_dropped_connect_closes_its_socket)
{
    pn_sockaddr a;
    int filler;
    int l = full_listener(&a, &filler);
    cr_assert_eq(connect_result(fl, &a, PN_MS(50)), -ETIMEDOUT);
    connect_dropped c = { .base = { &connect_dropped_vt }, .addr = a };
    run_on(fl, PN_FUTURE(&c));
    close(filler);
    close(l);
}

/* ---- hostile peers -------------------------------------------------------- */

typedef struct hostile {
    pn_future base;
    int pc;
    bool reset;           /* peer closes with RST (SO_LINGER 0) */
    pair p;
    pair_open open;
    pn_write_all_future wa;
    pn_read_future rd;
    char *big;
    char buf[16];
} hostile;

static pn_poll hostile_poll(pn_future *f, pn_cx *cx)
{
    hostile *t = (hostile *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, false);
    PN_AWAIT(t->pc, &t->open, cx);
    if (t->reset) {
        struct linger lg = { 1, 0 };
        cr_assert_eq(setsockopt(t->p.s.afd.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    }
    pn_tcp_close(&t->p.s);
    /* Write until the kernel tells us the peer is gone: never SIGPIPE. */
    for (;;) {
        t->wa = pn_tcp_write_all(&t->p.c, t->big, 1 << 20);
        PN_AWAIT(t->pc, &t->wa, cx);
        if (t->wa.res < 0)
            break;
    }
    cr_assert(t->wa.res == -EPIPE || t->wa.res == -ECONNRESET, "write: %s",
              pn_strerror((int)t->wa.res));
    t->rd = pn_tcp_read(&t->p.c, t->buf, sizeof(t->buf));
    PN_AWAIT(t->pc, &t->rd, cx);
    cr_assert(t->rd.res == 0 || t->rd.res == -ECONNRESET, "read: %zd", t->rd.res);
    pair_close(&t->p);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable hostile_vt = { hostile_poll, NULL, "hostile" };

BOTH(net_tcp, writing_to_a_closed_or_reset_peer_fails_without_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);     /* a SIGPIPE would kill this test */
    char *big = calloc(1, 1 << 20);
    for (int reset = 0; reset < 2; reset++) {
        hostile t = { .base = { &hostile_vt }, .reset = reset, .big = big };
        run_on(fl, PN_FUTURE(&t));
    }
    free(big);
}

/* ---- close while another task waits ------------------------------------ */

typedef struct waiter {
    pn_future base;
    int pc;
    pn_tcp_stream *s;
    pn_tcp_listener *l;
    atomic_int *parked;      /* set once the wait is registered */
    pn_tcp_stream accepted;
    pn_sockaddr peer;
    ssize_t n;
    int ires;
    char buf[8];
} waiter;

/* Poll the read by hand so that the flag is raised after PENDING. */
static pn_poll waiter_poll(pn_future *f, pn_cx *cx)
{
    waiter *w = (waiter *)f;
    pn_poll p;
    if (w->s) {
        p = pn_tcp_poll_read(w->s, cx, w->buf, sizeof(w->buf), &w->n);
    } else {
        p = pn_tcp_poll_accept(w->l, cx, &w->accepted, &w->peer, &w->ires);
        w->n = w->ires;
    }
    if (p == PN_PENDING)
        atomic_store_explicit(w->parked, 1, memory_order_release);
    return p;
}

static const pn_future_vtable waiter_vt = { waiter_poll, NULL, "waiter" };

typedef struct closer {
    pn_future base;
    int pc;
    pair p;
    pair_open open;
    atomic_int parked;
    pn_join_handle *h;
    pn_join_future j;
    pn_sleep_future nap;
    bool listener;
} closer;

static pn_poll closer_poll(pn_future *f, pn_cx *cx)
{
    closer *t = (closer *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, false);
    PN_AWAIT(t->pc, &t->open, cx);
    {
        waiter w = { .base = { &waiter_vt }, .parked = &t->parked };
        if (t->listener)
            w.l = &t->p.l;
        else
            w.s = &t->p.s;
        cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&w), sizeof(w), &t->h), 0);
    }
    while (!atomic_load_explicit(&t->parked, memory_order_acquire)) {
        t->nap = pn_sleep(PN_MS(1));
        PN_AWAIT(t->pc, &t->nap, cx);
    }
    if (t->listener)
        cr_assert_eq(pn_tcp_listener_close(&t->p.l), 0);
    else
        cr_assert_eq(pn_tcp_close(&t->p.s), 0);
    t->j = pn_join(t->h);
    PN_AWAIT(t->pc, &t->j, cx);
    cr_assert_eq(t->j.res, 0);
    cr_assert_eq(((waiter *)t->j.output)->n, -ECANCELED, "woken with %zd",
                 ((waiter *)t->j.output)->n);
    pn_join_handle_free(t->h);
    pair_close(&t->p);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable closer_vt = { closer_poll, NULL, "closer" };

BOTH(net_tcp, closing_a_stream_or_listener_wakes_its_waiter_with_ecanceled)
{
    for (int listener = 0; listener < 2; listener++) {
        closer t = { .base = { &closer_vt }, .listener = listener };
        run_on(fl, PN_FUTURE(&t));
    }
}

/* ---- options and plain-call errors ------------------------------------- */

typedef struct opts_test {
    pn_future base;
    int pc;
    pair p;
    pair_open open;
} opts_test;

static int getint(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof(v);
    cr_assert_eq(getsockopt(fd, level, opt, &v, &len), 0);
    return v;
}

static pn_poll opts_poll(pn_future *f, pn_cx *cx)
{
    opts_test *t = (opts_test *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, false);
    PN_AWAIT(t->pc, &t->open, cx);
    {
        pn_tcp_stream *c = &t->p.c;
        int fd = c->afd.fd;
        cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
        cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        cr_assert(fcntl(t->p.s.afd.fd, F_GETFL) & O_NONBLOCK);
        cr_assert(fcntl(t->p.s.afd.fd, F_GETFD) & FD_CLOEXEC);
        cr_assert(fcntl(t->p.l.afd.fd, F_GETFD) & FD_CLOEXEC);
        cr_assert_eq(getint(t->p.l.afd.fd, SOL_SOCKET, SO_REUSEADDR), 1);

        cr_assert_eq(pn_tcp_nodelay(c), 0);
        cr_assert_eq(pn_tcp_set_nodelay(c, true), 0);
        cr_assert_eq(pn_tcp_nodelay(c), 1);
        cr_assert_eq(getint(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        cr_assert_eq(pn_tcp_set_nodelay(c, false), 0);
        cr_assert_eq(pn_tcp_nodelay(c), 0);

        cr_assert_eq(pn_tcp_set_keepalive(c, true, 30, 5, 4), 0);
        cr_assert_eq(getint(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
        cr_assert_eq(getint(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
        cr_assert_eq(getint(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
        cr_assert_eq(getint(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
        cr_assert_eq(pn_tcp_set_keepalive(c, true, 0, 0, 0), 0);   /* keeps the values */
        cr_assert_eq(getint(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
        cr_assert_eq(pn_tcp_set_keepalive(c, true, 40000, 0, 0), -EINVAL);
        cr_assert_eq(pn_tcp_set_keepalive(c, true, 0xFFFFFFFFu, 0, 0), -EINVAL);
        cr_assert_eq(pn_tcp_set_keepalive(c, false, 0, 0, 0), 0);
        cr_assert_eq(getint(fd, SOL_SOCKET, SO_KEEPALIVE), 0);

        cr_assert_eq(pn_tcp_shutdown(c, 42), -EINVAL);
        cr_assert_eq(pn_tcp_shutdown(c, SHUT_RD), 0);
        cr_assert_eq(pn_tcp_shutdown(c, SHUT_RDWR), 0);
        cr_assert_eq(pn_tcp_shutdown(NULL, SHUT_RD), -EINVAL);

        pn_sockaddr a;
        cr_assert_eq(pn_tcp_local_addr(c, NULL), -EINVAL);
        cr_assert_eq(pn_tcp_listener_local_addr(NULL, &a), -EINVAL);
        pair_close(&t->p);
        /* Everything on a closed stream: -EBADF, close again harmless. */
        cr_assert_eq(pn_tcp_nodelay(c), -EBADF);
        cr_assert_eq(pn_tcp_set_nodelay(c, true), -EBADF);
        cr_assert_eq(pn_tcp_set_keepalive(c, true, 1, 1, 1), -EBADF);
        cr_assert_eq(pn_tcp_shutdown(c, SHUT_WR), -EBADF);
        cr_assert_eq(pn_tcp_local_addr(c, &a), -EBADF);
        cr_assert_eq(pn_tcp_peer_addr(c, &a), -EBADF);
        cr_assert_eq(pn_tcp_listener_local_addr(&t->p.l, &a), -EBADF);
        cr_assert_eq(pn_tcp_close(c), 0);
        cr_assert_eq(pn_tcp_listener_close(&t->p.l), 0);
        cr_assert_eq(pn_tcp_close(NULL), -EINVAL);
    }
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable opts_vt = { opts_poll, NULL, "opts" };

BOTH(net_tcp, options_addresses_and_errors_of_plain_calls)
{
    opts_test t = { .base = { &opts_vt } };
    run_on(fl, PN_FUTURE(&t));
}

/* Operations on a closed stream complete with -ECANCELED. */
typedef struct closed_ops {
    pn_future base;
    int pc;
    pair p;
    pair_open open;
    pn_tcp_read_exact_future re;
    pn_tcp_writev_future wv;
    pn_tcp_accept_future acc;
    struct iovec iov[1];
    char buf[4];
} closed_ops;

static pn_poll closed_ops_poll(pn_future *f, pn_cx *cx)
{
    closed_ops *t = (closed_ops *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, false);
    PN_AWAIT(t->pc, &t->open, cx);
    pair_close(&t->p);
    t->re = pn_tcp_read_exact(&t->p.c, t->buf, 4);
    PN_AWAIT(t->pc, &t->re, cx);
    cr_assert_eq(t->re.res, -ECANCELED);
    t->iov[0] = (struct iovec){ t->buf, 4 };
    t->wv = pn_tcp_writev(&t->p.c, t->iov, 1);
    PN_AWAIT(t->pc, &t->wv, cx);
    cr_assert_eq(t->wv.res, -ECANCELED);
    t->wv = pn_tcp_writev(&t->p.c, t->iov, -1);
    PN_AWAIT(t->pc, &t->wv, cx);
    cr_assert_eq(t->wv.res, -EINVAL);
    t->wv = pn_tcp_writev(&t->p.c, t->iov, 0);        /* nothing to write */
    PN_AWAIT(t->pc, &t->wv, cx);
    cr_assert_eq(t->wv.res, 0);
    t->acc = pn_tcp_accept(&t->p.l);
    PN_AWAIT(t->pc, &t->acc, cx);
    cr_assert_eq(t->acc.res, -ECANCELED);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable closed_ops_vt = { closed_ops_poll, NULL, "closed_ops" };

BOTH(net_tcp, futures_on_a_closed_stream_complete_with_ecanceled)
{
    closed_ops t = { .base = { &closed_ops_vt } };
    run_on(fl, PN_FUTURE(&t));
}

Test(net_tcp, listen_errors_and_reuseport, .timeout = PN_TEST_TIMEOUT)
{
    int before = count_fds();
    pn_tcp_listener a, b, c;
    pn_sockaddr any = pn_sockaddr_loopback4(0), bound;
    cr_assert_eq(pn_tcp_listen(&a, &any, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&a, &bound), 0);
    cr_assert_eq(pn_tcp_listen(&b, &bound, NULL), -EADDRINUSE);
    cr_assert_eq(b.afd.fd, -1);
    cr_assert_eq(pn_tcp_listener_close(&b), 0);   /* harmless after a failure */
    pn_tcp_listener_close(&a);

    pn_tcp_listen_opts o = { .reuseport = true, .backlog = 16 };
    cr_assert_eq(pn_tcp_listen(&a, &any, &o), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&a, &bound), 0);
    cr_assert_eq(pn_tcp_listen(&b, &bound, &o), 0, "SO_REUSEPORT shares the port");
    cr_assert_eq(pn_tcp_listen(&c, &bound, NULL), -EADDRINUSE);
    pn_tcp_listener_close(&a);
    pn_tcp_listener_close(&b);

    pn_sockaddr v6 = pn_sockaddr_loopback6(0);
    pn_tcp_listen_opts only6 = { .v6only = true };
    cr_assert_eq(pn_tcp_listen(&a, &v6, &only6), 0);
    cr_assert_eq(getint(a.afd.fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    pn_tcp_listener_close(&a);

    pn_sockaddr empty, bad;
    memset(&empty, 0, sizeof(empty));
    cr_assert_eq(pn_tcp_listen(&a, &empty, NULL), -EAFNOSUPPORT);
    cr_assert_eq(pn_tcp_listen(&a, NULL, NULL), -EINVAL);
    cr_assert_eq(pn_tcp_listen(NULL, &any, NULL), -EINVAL);
    cr_assert_eq(pn_sockaddr_parse(&bad, "192.0.2.1:0"), 0);   /* not a local address */
    cr_assert_eq(pn_tcp_listen(&a, &bad, NULL), -EADDRNOTAVAIL);
    cr_assert_eq(count_fds(), before);
}

/* ---- accept under EMFILE -------------------------------------------------- */

static atomic_int accept_calls;

static int counting_accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
    atomic_fetch_add(&accept_calls, 1);
    return accept4(fd, a, l, flags);
}

#define HOG_MAX 4096

typedef struct emfile {
    pn_future base;
    int pc;
    int hogs[HOG_MAX];
    int nhogs;
    int clients[2];
    pair p;
    pair_open open;
    pn_tcp_accept_future acc;
    pn_tcp_stream got[2];
    pn_sleep_future nap;
    pn_write_all_future wa;
    pn_tcp_read_exact_future re;
    int i;
    char buf[8];
} emfile;

static pn_poll emfile_poll(pn_future *f, pn_cx *cx)
{
    emfile *t = (emfile *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->open = pair_open_new(&t->p, false);        /* an established connection */
    PN_AWAIT(t->pc, &t->open, cx);
    {
        pn_sockaddr a;
        pn_tcp_listener_local_addr(&t->p.l, &a);
        for (int i = 0; i < 2; i++) {     /* queued, waiting for accept */
            t->clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            cr_assert_eq(connect(t->clients[i], &a.sa, a.len), 0);
        }
        /* Take every descriptor left. */
        int fd;
        while (t->nhogs < HOG_MAX && (fd = dup(0)) >= 0)
            t->hogs[t->nhogs++] = fd;
        cr_assert_eq(errno, EMFILE);
        atomic_store(&accept_calls, 0);
    }
    t->acc = pn_tcp_accept(&t->p.l);
    /* Poll the accept a few times while the process is out of fds: it
     * sleeps instead of spinning, and the established connection keeps
     * working meanwhile. */
    for (t->i = 0; t->i < 3; t->i++) {
        t->nap = pn_sleep(PN_MS(15));
        t->wa = pn_tcp_write_all(&t->p.c, "abc", 3);
        PN_AWAIT(t->pc, &t->wa, cx);
        cr_assert_eq(t->wa.res, 3);
        t->re = pn_tcp_read_exact(&t->p.s, t->buf, 3);
        PN_AWAIT(t->pc, &t->re, cx);
        cr_assert_eq(t->re.res, 3);
        cr_assert_arr_eq(t->buf, "abc", 3);
        cr_assert_eq(pn_future_poll(PN_FUTURE(&t->acc), cx), PN_PENDING);
        PN_AWAIT(t->pc, &t->nap, cx);
    }
    cr_assert_geq(t->acc.backoffs, 1);
    cr_assert_leq(atomic_load(&accept_calls), 8, "accept4 called %d times: spinning",
                  atomic_load(&accept_calls));
    while (t->nhogs > 0)
        close(t->hogs[--t->nhogs]);
    /* With descriptors back, it serves both queued clients. */
    for (t->i = 0; t->i < 2; t->i++) {
        PN_AWAIT(t->pc, &t->acc, cx);
        cr_assert_eq(t->acc.res, 0, "accept: %s", pn_strerror(t->acc.res));
        t->got[t->i] = t->acc.stream;
    }
    for (t->i = 0; t->i < 2; t->i++) {
        cr_assert_eq(send(t->clients[t->i], "xy", 2, 0), 2);
        t->re = pn_tcp_read_exact(&t->got[t->i], t->buf, 2);
        PN_AWAIT(t->pc, &t->re, cx);
        cr_assert_eq(t->re.res, 2);
        cr_assert_arr_eq(t->buf, "xy", 2);
        pn_tcp_close(&t->got[t->i]);
        close(t->clients[t->i]);
    }
    pair_close(&t->p);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable emfile_vt = { emfile_poll, NULL, "emfile" };

BOTH(net_tcp, accept_backs_off_on_emfile_and_serves_again)
{
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)count_fds() + 64;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    pn__sys.accept4 = counting_accept4;
    emfile *t = calloc(1, sizeof(*t));
    t->base.vt = &emfile_vt;
    run_on(fl, PN_FUTURE(t));
    free(t);
    pn__sys_reset();
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* ---- 10,000 connections at once ----------------------------------------- */

#define MANY 10000
#define MSG 32

static void raise_nofile(void)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
}

static unsigned char msg_byte(int conn, int i) { return (unsigned char)(conn * 31 + i * 17 + 1); }

/* The client side, in a forked child: plain nonblocking sockets and epoll.
 * Connect all MANY (at most 256 handshakes in flight), then send one
 * message on each, check every echo byte for byte, then close them all.
 * Exit status 0 on success. */
static int many_clients(pn_sockaddr addr)
{
    raise_nofile();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = calloc(MANY, sizeof(int));
    int *got = calloc(MANY, sizeof(int));
    unsigned char (*buf)[MSG] = calloc(MANY, MSG);
    struct epoll_event evs[256];
    if (ep < 0 || !fds || !got || !buf)
        return 10;
    int next = 0, inflight = 0, up = 0;
    while (up < MANY) {
        while (next < MANY && inflight < 256) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0)
                return 11;
            fds[next] = fd;
            if (connect(fd, &addr.sa, addr.len) == 0) {
                up++;
            } else {
                if (errno != EINPROGRESS)
                    return 12;
                struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)next };
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                inflight++;
            }
            next++;
        }
        int n = epoll_wait(ep, evs, 256, 10000);
        if (n <= 0)
            return 13;
        for (int i = 0; i < n; i++) {
            int fd = fds[evs[i].data.u32], err = 0;
            socklen_t len = sizeof(err);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err)
                return 14;
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            inflight--;
            up++;
        }
    }
    for (int c = 0; c < MANY; c++) {
        unsigned char m[MSG];
        for (int i = 0; i < MSG; i++)
            m[i] = msg_byte(c, i);
        if (send(fds[c], m, MSG, MSG_NOSIGNAL) != MSG)
            return 15;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)c };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[c], &ev);
    }
    int done = 0;
    while (done < MANY) {
        int n = epoll_wait(ep, evs, 256, 10000);
        if (n <= 0)
            return 16;
        for (int i = 0; i < n; i++) {
            int c = (int)evs[i].data.u32;
            ssize_t r = recv(fds[c], buf[c] + got[c], (size_t)(MSG - got[c]), 0);
            if (r <= 0)
                return 17;
            got[c] += (int)r;
            if (got[c] == MSG) {
                for (int k = 0; k < MSG; k++)
                    if (buf[c][k] != msg_byte(c, k))
                        return 18;
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[c], NULL);
                done++;
            }
        }
    }
    for (int c = 0; c < MANY; c++)
        close(fds[c]);
    close(ep);
    return 0;
}

static atomic_int many_open, many_peak;

/* One server connection: read the message, echo it, wait for the close. */
typedef struct many_conn {
    pn_future base;
    int pc;
    pn_tcp_stream s;
    pn_tcp_read_exact_future re;
    pn_write_all_future wa;
    pn_read_future rd;
    char buf[MSG];
} many_conn;

static pn_poll many_conn_poll(pn_future *f, pn_cx *cx)
{
    many_conn *c = (many_conn *)f;
    PN_ASYNC_BEGIN(c->pc);
    {
        int now = atomic_fetch_add(&many_open, 1) + 1, peak = atomic_load(&many_peak);
        while (now > peak && !atomic_compare_exchange_weak(&many_peak, &peak, now))
            ;
    }
    c->re = pn_tcp_read_exact(&c->s, c->buf, MSG);
    PN_AWAIT(c->pc, &c->re, cx);
    cr_assert_eq(c->re.res, MSG, "read_exact: %zd", c->re.res);
    c->wa = pn_tcp_write_all(&c->s, c->buf, MSG);
    PN_AWAIT(c->pc, &c->wa, cx);
    cr_assert_eq(c->wa.res, MSG);
    c->rd = pn_tcp_read(&c->s, c->buf, sizeof(c->buf));
    PN_AWAIT(c->pc, &c->rd, cx);
    cr_assert_eq(c->rd.res, 0, "the client closes after its echo");
    atomic_fetch_sub(&many_open, 1);
    pn_tcp_close(&c->s);
    PN_ASYNC_END(c->pc);
}

static void many_conn_drop(pn_future *f) { pn_tcp_close(&((many_conn *)f)->s); }

static const pn_future_vtable many_conn_vt = { many_conn_poll, many_conn_drop, "many_conn" };

typedef struct many_server {
    pn_future base;
    int pc, i;
    pn_tcp_listener *l;
    pn_tcp_accept_future acc;
    pn_join_handle **h;
    pn_join_future j;
} many_server;

static pn_poll many_server_poll(pn_future *f, pn_cx *cx)
{
    many_server *m = (many_server *)f;
    PN_ASYNC_BEGIN(m->pc);
    m->acc = pn_tcp_accept(m->l);
    for (m->i = 0; m->i < MANY; m->i++) {
        PN_AWAIT(m->pc, &m->acc, cx);       /* the accept stream, awaited again */
        cr_assert_eq(m->acc.res, 0, "accept %d: %s", m->i, pn_strerror(m->acc.res));
        {
            many_conn c = { .base = { &many_conn_vt }, .s = m->acc.stream };
            cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&c), sizeof(c), &m->h[m->i]), 0);
        }
    }
    cr_assert_eq(pn_tcp_listener_close(m->l), 0);
    for (m->i = 0; m->i < MANY; m->i++) {
        m->j = pn_join(m->h[m->i]);
        PN_AWAIT(m->pc, &m->j, cx);
        cr_assert_eq(m->j.res, 0);
        pn_join_handle_free(m->h[m->i]);
    }
    PN_ASYNC_END(m->pc);
}

static const pn_future_vtable many_server_vt = { many_server_poll, NULL, "many_server" };

static void ten_thousand_on(pn_runtime_flavor fl)
{
    raise_nofile();
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    cr_assert_geq(r.rlim_cur, (rlim_t)MANY + 200, "need %d fds", MANY + 200);
    int before = count_fds();
    pn_tcp_listener l;
    pn_sockaddr a = pn_sockaddr_loopback4(0);
    pn_tcp_listen_opts o = { .backlog = 4096 };
    cr_assert_eq(pn_tcp_listen(&l, &a, &o), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&l, &a), 0);
    fflush(NULL);
    pid_t pid = fork();             /* before any runtime thread exists */
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(l.afd.fd);
        _exit(many_clients(a));
    }
    atomic_store(&many_open, 0);
    atomic_store(&many_peak, 0);
    pn_runtime *rt = flavour_new(fl);
    many_server m = { .base = { &many_server_vt }, .l = &l };
    m.h = calloc(MANY, sizeof(*m.h));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&m)), 0);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client child: status %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    cr_assert_eq(atomic_load(&many_peak), MANY, "all %d connections were open at once", MANY);
    cr_assert_eq(atomic_load(&many_open), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_tcp_listener_close(&l);
    free(m.h);
    cr_assert_eq(count_fds(), before, "no fd left behind");
}

Test(net_tcp, ten_thousand_connections_current_thread, .timeout = 90)
{
    ten_thousand_on(PN_RUNTIME_CURRENT_THREAD);
}

Test(net_tcp, ten_thousand_connections_multi_thread, .timeout = 90)
{
    ten_thousand_on(PN_RUNTIME_MULTI_THREAD);
}
