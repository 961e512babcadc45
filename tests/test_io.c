/*
 * test_io.c - the I/O futures through the current-thread runtime: 1 MiB
 * through a socketpair between a writer task and a reader task (every byte
 * checked), writes to a closed peer (-EPIPE, no SIGPIPE), accept on a
 * loopback listener, readiness futures, and close while a task waits.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

TestSuite(io, .timeout = PN_TEST_TIMEOUT);

#define BIG (1u << 20)

static unsigned char pattern(size_t i) { return (unsigned char)((i * 7u + (i >> 13)) & 0xff); }

/* ---- writer task: write_all of a buffer, in two halves ---- */

typedef struct writer_task {
    pn_future base;
    int pc;
    pn_async_fd *afd;
    const unsigned char *buf;
    pn_write_all_future w;
    ssize_t res;
} writer_task;

static pn_poll writer_poll(pn_future *f, pn_cx *cx)
{
    writer_task *t = (writer_task *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->w = pn_write_all(t->afd, t->buf, BIG / 2);
    PN_AWAIT(t->pc, &t->w, cx);
    if (t->w.res != (ssize_t)(BIG / 2)) {
        t->res = t->w.res;
        return PN_READY;
    }
    t->w = pn_write_all(t->afd, t->buf + BIG / 2, BIG / 2);
    PN_AWAIT(t->pc, &t->w, cx);
    t->res = t->w.res < 0 ? t->w.res : (ssize_t)BIG;
    /* Done: close our end so the reader sees EOF after the data. */
    pn_async_fd_close(t->afd);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable writer_vt = { writer_poll, NULL, "test_writer" };

/* ---- reader task: read_some until EOF ---- */

typedef struct reader_task {
    pn_future base;
    int pc;
    pn_async_fd *afd;
    unsigned char *buf;
    size_t got;
    int reads;
    pn_read_future r;
    ssize_t res;
} reader_task;

static pn_poll reader_poll(pn_future *f, pn_cx *cx)
{
    reader_task *t = (reader_task *)f;
    PN_ASYNC_BEGIN(t->pc);
    for (;;) {
        t->r = pn_read(t->afd, t->buf + t->got, BIG + 1 - t->got);
        PN_AWAIT(t->pc, &t->r, cx);
        t->reads++;
        if (t->r.res <= 0)
            break;
        t->got += (size_t)t->r.res;
    }
    t->res = t->r.res;
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable reader_vt = { reader_poll, NULL, "test_reader" };

/* ---- main: spawn the writer, read everything, join the writer ---- */

typedef struct pipe_main {
    pn_future base;
    int pc;
    writer_task *writer;  /* template copied by spawn */
    pn_join_handle *wh;
    pn_join_future join;
    reader_task reader;
    int spawn_err;
} pipe_main;

static pn_poll pipe_main_poll(pn_future *f, pn_cx *cx)
{
    pipe_main *m = (pipe_main *)f;
    PN_ASYNC_BEGIN(m->pc);
    m->spawn_err = pn_spawn_cx(cx, &m->writer->base, sizeof *m->writer, &m->wh);
    if (m->spawn_err)
        return PN_READY;
    PN_AWAIT(m->pc, &m->reader, cx);
    m->join = pn_join(m->wh);
    PN_AWAIT(m->pc, &m->join, cx);
    PN_ASYNC_END(m->pc);
}

static const pn_future_vtable pipe_main_vt = { pipe_main_poll, NULL, "test_pipe_main" };

Test(io, one_mebibyte_through_a_socketpair)
{
    pn_runtime *rt = rt_new();
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd wfd, rfd;
    cr_assert_eq(pn_async_fd_init(&wfd, p[0]), 0);
    cr_assert_eq(pn_async_fd_init(&rfd, p[1]), 0);
    unsigned char *src = malloc(BIG), *dst = calloc(1, BIG + 1);
    cr_assert(src && dst);
    for (size_t i = 0; i < BIG; i++)
        src[i] = pattern(i);

    writer_task w = { .base = { &writer_vt }, .afd = &wfd, .buf = src };
    pipe_main m = {
        .base = { &pipe_main_vt }, .writer = &w,
        .reader = { .base = { &reader_vt }, .afd = &rfd, .buf = dst },
    };
    cr_assert_eq(pn_block_on(rt, &m.base), 0);
    cr_assert_eq(m.spawn_err, 0);
    cr_assert_eq(m.join.res, 0);
    writer_task *done = m.join.output;
    cr_assert_eq(done->res, (ssize_t)BIG, "writer: %zd", done->res);
    cr_assert_eq(done->w.done, BIG / 2);
    cr_assert_eq(m.reader.res, 0, "reader ended on EOF");
    cr_assert_eq(m.reader.got, BIG);
    cr_assert_gt(m.reader.reads, 2, "the data came in several reads");
    for (size_t i = 0; i < BIG; i++)
        cr_assert_eq(dst[i], pattern(i), "byte %zu", i);
    pn_join_handle_free(m.wh);
    cr_assert_eq(pn_async_fd_close(&rfd), 0);
    pn_runtime_free(rt);
    free(src);
    free(dst);
}

/* ---- write to a closed peer ---- */

typedef struct write_one {
    pn_future base;
    pn_write_future w;
} write_one;

static pn_poll write_one_poll(pn_future *f, pn_cx *cx)
{
    return pn_future_poll(&((write_one *)f)->w.base, cx);
}

static const pn_future_vtable write_one_vt = { write_one_poll, NULL, "test_write_one" };

Test(io, write_to_closed_peer_is_epipe_without_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);  /* a SIGPIPE would kill the test */
    pn_runtime *rt = rt_new();
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    close(p[1]);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    write_one f = { .base = { &write_one_vt }, .w = pn_write(&a, "data", 4) };
    cr_assert_eq(pn_block_on(rt, &f.base), 0);
    cr_assert_eq(f.w.res, -EPIPE);
    pn_async_fd_close(&a);
    pn_runtime_free(rt);
}

Test(io, write_all_to_tcp_peer_that_closed_is_an_error)
{
    signal(SIGPIPE, SIG_DFL);
    pn_runtime *rt = rt_new();
    int lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(lst, (struct sockaddr *)&sa, sl), 0);
    cr_assert_eq(listen(lst, 4), 0);
    cr_assert_eq(getsockname(lst, (struct sockaddr *)&sa, &sl), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sl), 0);
    int s = accept(lst, NULL, NULL);
    cr_assert_geq(s, 0);
    close(s);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, c), 0);
    /* The peer is gone: the first write may succeed (RST comes back), the
     * stream then fails with EPIPE or ECONNRESET, never a signal. */
    static char big[BIG];
    pn_write_all_future w = pn_write_all(&a, big, sizeof big);
    cr_assert_eq(pn_block_on(rt, &w.base), 0);
    cr_assert(w.res == -EPIPE || w.res == -ECONNRESET, "res %zd", w.res);
    cr_assert_lt(w.done, sizeof big);
    pn_async_fd_close(&a);
    close(lst);
    pn_runtime_free(rt);
}

/* ---- accept ---- */

struct connect_arg { struct sockaddr_in sa; int fd; };

static void *connect_later(void *p)
{
    struct connect_arg *a = p;
    usleep(20000);
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(a->fd, (struct sockaddr *)&a->sa, sizeof a->sa) == 0)
        (void)!write(a->fd, "hi", 2);
    return NULL;
}

typedef struct accept_read {
    pn_future base;
    int pc;
    pn_accept_future acc;
    pn_async_fd conn;
    char buf[4];
    pn_read_future rd;
} accept_read;

static pn_poll accept_read_poll(pn_future *f, pn_cx *cx)
{
    accept_read *t = (accept_read *)f;
    PN_ASYNC_BEGIN(t->pc);
    PN_AWAIT(t->pc, &t->acc, cx);
    if (t->acc.res < 0 || pn_async_fd_init(&t->conn, t->acc.res) != 0)
        return PN_READY;
    t->rd = pn_read(&t->conn, t->buf, sizeof t->buf);
    PN_AWAIT(t->pc, &t->rd, cx);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable accept_read_vt = { accept_read_poll, NULL, "test_accept_read" };

Test(io, accept_on_loopback_listener)
{
    pn_runtime *rt = rt_new();
    int lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct connect_arg ca = { .sa = { .sin_family = AF_INET,
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) } };
    socklen_t sl = sizeof ca.sa;
    cr_assert_eq(bind(lst, (struct sockaddr *)&ca.sa, sl), 0);
    cr_assert_eq(listen(lst, 4), 0);
    cr_assert_eq(getsockname(lst, (struct sockaddr *)&ca.sa, &sl), 0);
    pn_async_fd l;
    cr_assert_eq(pn_async_fd_init(&l, lst), 0);
    cr_assert_eq(pn_async_fd_register(&l, rt), 0);
    cr_assert_eq(pn_async_fd_register(&l, rt), -EEXIST);

    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, connect_later, &ca), 0);
    accept_read f = { .base = { &accept_read_vt }, .acc = pn_accept(&l) };
    cr_assert_eq(pn_block_on(rt, &f.base), 0);
    pthread_join(t, NULL);
    cr_assert_geq(f.acc.res, 0, "accept: %s", pn_strerror(f.acc.res));
    cr_assert(fcntl(f.acc.res, F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(f.acc.res, F_GETFD) & FD_CLOEXEC);
    cr_assert(f.conn.is_socket);
    cr_assert_eq(f.rd.res, 2);
    cr_assert_eq(memcmp(f.buf, "hi", 2), 0);
    pn_async_fd_close(&f.conn);
    pn_async_fd_close(&l);
    close(ca.fd);
    pn_runtime_free(rt);
}

/* ---- readiness futures and close while waiting ---- */

typedef struct wait_readable {
    pn_future base;
    pn_ready_future ready;
} wait_readable;

static pn_poll wait_readable_poll(pn_future *f, pn_cx *cx)
{
    return pn_future_poll(&((wait_readable *)f)->ready.base, cx);
}

static const pn_future_vtable wait_readable_vt = { wait_readable_poll, NULL, "test_wait_readable" };

struct closer { pn_async_fd *afd; int peer; };

typedef struct close_later {
    pn_future base;
    int pc;
    struct closer *c;
    pn_yield_now_future y;
} close_later;

static pn_poll close_later_poll(pn_future *f, pn_cx *cx)
{
    close_later *t = (close_later *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->y = pn_yield();
    PN_AWAIT(t->pc, &t->y, cx);
    pn_async_fd_close(t->c->afd);
    PN_ASYNC_END(t->pc);
}

static const pn_future_vtable close_later_vt = { close_later_poll, NULL, "test_close_later" };

Test(io, close_while_a_task_waits_gives_ecanceled)
{
    pn_runtime *rt = rt_new();
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    struct closer cl = { &a, p[1] };
    close_later task = { .base = { &close_later_vt }, .c = &cl };
    cr_assert_eq(pn_async_fd_register(&a, rt), 0);
    /* Drop the optimistic initial readiness so pn_readable really waits. */
    pn_async_fd_clear_ready(&a, PN_READABLE);
    cr_assert_eq(PN_SPAWN(rt, task, NULL), 0);
    wait_readable w = { .base = { &wait_readable_vt }, .ready = pn_readable(&a) };
    cr_assert_eq(pn_block_on(rt, &w.base), 0);
    cr_assert_eq(w.ready.res, -ECANCELED);
    cr_assert_eq(a.fd, -1);
    close(p[1]);
    pn_runtime_free(rt);
}

Test(io, writable_and_readable_futures)
{
    pn_runtime *rt = rt_new();
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    wait_readable w = { .base = { &wait_readable_vt }, .ready = pn_writable(&a) };
    cr_assert_eq(pn_block_on(rt, &w.base), 0);
    cr_assert_eq(w.ready.res, PN_WRITABLE);
    cr_assert_eq(write(p[1], "x", 1), 1);
    w.ready = pn_readable(&a);
    cr_assert_eq(pn_block_on(rt, &w.base), 0);
    cr_assert_eq(w.ready.res, PN_READABLE);
    pn_async_fd_close(&a);
    close(p[1]);
    pn_runtime_free(rt);
}

Test(io, runtime_free_leaves_registered_fd_open)
{
    pn_runtime *rt = rt_new();
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd a;
    cr_assert_eq(pn_async_fd_init(&a, p[0]), 0);
    cr_assert_eq(pn_async_fd_register(&a, rt), 0);
    pn_runtime_free(rt);
    cr_assert_null(a.reg);
    cr_assert_neq(fcntl(p[0], F_GETFD), -1);
    /* Usable with another runtime (lazy registration). */
    pn_runtime *rt2 = rt_new();
    cr_assert_eq(write(p[1], "y", 1), 1);
    char c = 0;
    pn_read_future r = pn_read(&a, &c, 1);
    cr_assert_eq(pn_block_on(rt2, &r.base), 0);
    cr_assert_eq(r.res, 1);
    cr_assert_eq(c, 'y');
    cr_assert_eq(pn_async_fd_close(&a), 0);
    close(p[1]);
    pn_runtime_free(rt2);
}
