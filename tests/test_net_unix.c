/*
 * test_net_unix.c - Unix domain sockets (pollen/unix.h): names (paths,
 * abstract names, exact lengths, too long), stream listener / accept /
 * connect / echo over a path and over an abstract name, connect errors and
 * the full-backlog retry, stale-path unlink and unlink on close, socket
 * pairs and shutdown, datagram sockets (send_to / recv_from with replies
 * to an autobound sender, connected send / recv, truncation, zero-length
 * datagrams, back-pressure with thousands of datagrams), error paths
 * (closed peer, missing path, wrong socket type, bad addresses) and close
 * while another future waits (-ECANCELED).
 *
 * Each runtime case runs on the current-thread runtime and on the
 * multi-thread runtime with 2 workers and checks that no fd is left
 * behind.  Operations of the test thread are awaited one by one with
 * pn_block_on; the peer side runs as a spawned task.  Sockets are closed
 * inside a future, or after pn_runtime_free.  Data is checked byte for
 * byte; no timing is asserted.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "helpers.h"

TestSuite(net_unix, .timeout = PN_TEST_TIMEOUT);

/* ---- fixtures ------------------------------------------------------------- */

/* A fresh directory for socket files; removed (with its files) by rm_dir. */
static void tmp_dir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/pn-unix-XXXXXX");
    cr_assert_not_null(mkdtemp(out));
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* A unique abstract name. */
static void abstract_name(char *out, size_t size, const char *tag)
{
    static int n;
    snprintf(out, size, "@pollen-test-%d-%s-%d", (int)getpid(), tag, n++);
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 11) + 3); }

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- stream futures ----------------------------------------------------- */

/* Write `total` pattern bytes, then shut the write half. */
typedef struct writer {
    pn_future base;
    int pc;
    pn_async_fd *afd;
    size_t total, sent;
    pn_write_all_future w;
    unsigned char buf[4096];
} writer;

static pn_poll writer_poll(pn_future *f, pn_cx *cx)
{
    writer *w = (writer *)f;
    PN_ASYNC_BEGIN(w->pc);
    while (w->sent < w->total) {
        {
            size_t n = w->total - w->sent < sizeof(w->buf) ? w->total - w->sent : sizeof(w->buf);
            for (size_t i = 0; i < n; i++)
                w->buf[i] = pattern(w->sent + i);
            w->w = pn_write_all(w->afd, w->buf, n);
        }
        PN_AWAIT(w->pc, &w->w, cx);
        cr_assert_gt(w->w.res, 0, "write: %s", pn_strerror((int)w->w.res));
        w->sent += (size_t)w->w.res;
    }
    cr_assert_eq(shutdown(w->afd->fd, SHUT_WR), 0);
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable writer_vt = { writer_poll, NULL, "writer" };

static writer writer_new(pn_async_fd *afd, size_t total)
{
    return (writer){ .base = { &writer_vt }, .afd = afd, .total = total };
}

/* Read to end of stream, checking the pattern; .got counts the bytes. */
typedef struct reader {
    pn_future base;
    int pc;
    pn_async_fd *afd;
    size_t got;
    ssize_t n;
    unsigned char buf[3001];
} reader;

static pn_poll reader_poll(pn_future *f, pn_cx *cx)
{
    reader *r = (reader *)f;
    PN_ASYNC_BEGIN(r->pc);
    for (;;) {
        PN_AWAIT_POLL(r->pc, pn_async_fd_poll_read(r->afd, cx, r->buf, sizeof(r->buf), &r->n));
        cr_assert_geq(r->n, 0, "read: %s", pn_strerror((int)r->n));
        if (r->n == 0)
            break;
        for (ssize_t i = 0; i < r->n; i++)
            cr_assert_eq(r->buf[i], pattern(r->got + (size_t)i), "byte %zu", r->got + (size_t)i);
        r->got += (size_t)r->n;
    }
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable reader_vt = { reader_poll, NULL, "reader" };

static reader reader_new(pn_async_fd *afd)
{
    return (reader){ .base = { &reader_vt }, .afd = afd };
}

/* Server task: accept one connection, echo it to end of stream, close it.
 * .peer_fmt gets the accepted stream's local address as text. */
typedef struct accept_echo {
    pn_future base;
    int pc;
    pn_unix_listener *l;
    pn_unix_accept_future acc;
    pn_unix_stream s;
    ssize_t n;
    pn_write_all_future w;
    size_t echoed;
    char local[PN_SOCKADDR_STRLEN];
    char buf[8192];
} accept_echo;

static pn_poll accept_echo_poll(pn_future *f, pn_cx *cx)
{
    accept_echo *a = (accept_echo *)f;
    PN_ASYNC_BEGIN(a->pc);
    a->acc = pn_unix_accept(a->l);
    PN_AWAIT(a->pc, &a->acc, cx);
    cr_assert_eq(a->acc.res, 0, "accept: %s", pn_strerror(a->acc.res));
    a->s = a->acc.stream;                /* unregistered yet: movable */
    {
        pn_sockaddr la;
        cr_assert_eq(pn_unix_local_addr(&a->s.afd, &la), 0);
        cr_assert_geq(pn_sockaddr_format(&la, a->local, sizeof(a->local)), 0);
    }
    for (;;) {
        PN_AWAIT_POLL(a->pc, pn_async_fd_poll_read(&a->s.afd, cx, a->buf, sizeof(a->buf), &a->n));
        cr_assert_geq(a->n, 0, "server read: %s", pn_strerror((int)a->n));
        if (a->n == 0)
            break;
        a->w = pn_write_all(&a->s.afd, a->buf, (size_t)a->n);
        PN_AWAIT(a->pc, &a->w, cx);
        cr_assert_eq(a->w.res, a->n);
        a->echoed += (size_t)a->n;
    }
    cr_assert_eq(pn_unix_close(&a->s), 0);
    PN_ASYNC_END(a->pc);
}

static const pn_future_vtable accept_echo_vt = { accept_echo_poll, NULL, "accept_echo" };

/* ---- names ------------------------------------------------------------------ */

Test(net_unix, names_paths_abstract_and_lengths)
{
    pn_sockaddr a;
    char buf[PN_SOCKADDR_STRLEN];
    const size_t off = offsetof(struct sockaddr_un, sun_path);

    cr_assert_eq(pn_sockaddr_unix(&a, "/tmp/x.sock"), 0);
    cr_assert_eq(a.un.sun_family, AF_UNIX);
    cr_assert_eq(a.len, off + strlen("/tmp/x.sock") + 1, "path length includes its NUL");
    cr_assert_str_eq(a.un.sun_path, "/tmp/x.sock");
    cr_assert_eq(pn_sockaddr_format(&a, buf, sizeof(buf)), (int)strlen("/tmp/x.sock"));
    cr_assert_str_eq(buf, "/tmp/x.sock");
    cr_assert_eq(pn_sockaddr_family(&a), AF_UNIX);

    cr_assert_eq(pn_sockaddr_unix(&a, "@abc"), 0);
    cr_assert_eq(a.un.sun_path[0], '\0');
    cr_assert_eq(memcmp(a.un.sun_path + 1, "abc", 3), 0);
    cr_assert_eq(a.len, off + 1 + 3, "abstract: exactly the 0 and the name, no NUL");
    cr_assert_eq(pn_sockaddr_format(&a, buf, sizeof(buf)), 4);
    cr_assert_str_eq(buf, "@abc");

    cr_assert_eq(pn_sockaddr_unix(&a, "rel.sock"), 0);
    cr_assert_str_eq(a.un.sun_path, "rel.sock");

    /* Limits: sun_path is 108 bytes. */
    char name[200];
    memset(name, 'p', sizeof(name));
    name[107] = '\0';                    /* 107 bytes + NUL: fits */
    cr_assert_eq(pn_sockaddr_unix(&a, name), 0);
    cr_assert_eq(a.len, off + 108);
    name[107] = 'p';
    name[108] = '\0';                    /* 108 bytes: no room for the NUL */
    pn_sockaddr keep = a;
    cr_assert_eq(pn_sockaddr_unix(&a, name), -ENAMETOOLONG);
    cr_assert_eq(memcmp(&a, &keep, sizeof(a)), 0, "unchanged on error");
    name[0] = '@';                       /* '@' + 107 bytes: fits */
    cr_assert_eq(pn_sockaddr_unix(&a, name), 0);
    cr_assert_eq(a.len, off + 108);
    name[108] = 'p';
    name[109] = '\0';                    /* '@' + 108 bytes: too long */
    cr_assert_eq(pn_sockaddr_unix(&a, name), -ENAMETOOLONG);

    cr_assert_eq(pn_sockaddr_unix(&a, NULL), -EINVAL);
    cr_assert_eq(pn_sockaddr_unix(&a, ""), -EINVAL);
    cr_assert_eq(pn_sockaddr_unix(&a, "@"), -EINVAL);
    cr_assert_eq(pn_sockaddr_unix(NULL, "/x"), -EINVAL);
}

Test(net_unix, abstract_name_meets_a_raw_socket_of_the_exact_length)
{
    /* A plain socket bound by hand with the exact length must be found by
     * a pollen connect of "@name", and vice versa. */
    char name[64];
    abstract_name(name, sizeof(name), "raw");
    pn_sockaddr a;
    cr_assert_eq(pn_sockaddr_unix(&a, name), 0);
    int raw = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    memcpy(sun.sun_path + 1, name + 1, strlen(name) - 1);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    cr_assert_eq(bind(raw, (struct sockaddr *)&sun, len), 0);

    pn_unix_dgram d;
    cr_assert_eq(pn_unix_dgram_bind(&d, NULL, NULL), 0);
    cr_assert_eq(pn_unix_dgram_connect(&d, name), 0, "pollen's name is the raw one");
    cr_assert_eq(send(d.afd.fd, "hi", 2, 0), 2);
    char got[8];
    cr_assert_eq(recv(raw, got, sizeof(got), 0), 2);
    cr_assert_eq(memcmp(got, "hi", 2), 0);
    /* The raw socket's own name formats as "@name". */
    pn_async_fd rafd;
    cr_assert_eq(pn_async_fd_init(&rafd, raw), 0);
    pn_sockaddr la;
    char buf[PN_SOCKADDR_STRLEN];
    cr_assert_eq(pn_unix_local_addr(&rafd, &la), 0);
    cr_assert(pn_sockaddr_equal(&la, &a));
    cr_assert_geq(pn_sockaddr_format(&la, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, name);
    pn_async_fd_close(&rafd);
    pn_unix_dgram_close(&d);
}

/* ---- stream: echo over a path and over an abstract name ------------------ */

static void stream_echo(pn_runtime_flavor fl, const char *name, size_t total)
{
    pn_runtime *rt = flavour_new(fl);
    pn_unix_listener l;
    int err = pn_unix_listen(&l, name, NULL);
    cr_assert_eq(err, 0, "listen %s: %s", name, pn_strerror(err));
    {
        pn_sockaddr la;
        char buf[PN_SOCKADDR_STRLEN];
        cr_assert_eq(pn_unix_local_addr(&l.afd, &la), 0);
        cr_assert(pn_sockaddr_equal(&la, &l.addr));
        cr_assert_geq(pn_sockaddr_format(&la, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, name);
    }
    accept_echo srv = { .base = { &accept_echo_vt }, .l = &l };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, srv, &h), 0);

    pn_unix_stream c;
    pn_unix_connect_future conn = pn_unix_connect(&c, name);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, 0, "connect: %s", pn_strerror(conn.res));
    {
        pn_sockaddr pa, la;
        char buf[PN_SOCKADDR_STRLEN];
        cr_assert_eq(pn_unix_peer_addr(&c.afd, &pa), 0);
        cr_assert(pn_sockaddr_equal(&pa, &l.addr), "client's peer is the listener's name");
        cr_assert_eq(pn_unix_local_addr(&c.afd, &la), 0);
        cr_assert_eq(la.len, sizeof(sa_family_t), "the client is unnamed");
        cr_assert_eq(pn_sockaddr_format(&la, buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, "");
    }
    writer w = writer_new(&c.afd, total);
    reader r = reader_new(&c.afd);
    pn_join2_future both = pn_join2(PN_FUTURE(&w), PN_FUTURE(&r));
    AWAIT(rt, both);
    cr_assert_eq(r.got, total, "every byte came back");

    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    accept_echo *done = j.output;
    cr_assert_eq(done->echoed, total);
    cr_assert_str_eq(done->local, name, "accepted stream's local name");
    pn_join_handle_free(h);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(pn_unix_close(&c), 0);
    cr_assert_eq(pn_unix_listener_close(&l), 0);
    cr_assert_eq(pn_unix_listener_close(&l), 0, "twice is harmless");
}

BOTH(net_unix, stream_echo_over_a_path)
{
    char dir[64], path[128];
    tmp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/echo.sock", dir);
    stream_echo(fl, path, 256 * 1024 + 77);
    cr_assert(exists(path), "without unlink_on_close the file stays");
    rm_dir(dir);
}

BOTH(net_unix, stream_echo_over_an_abstract_name_leaves_no_file)
{
    char name[64];
    abstract_name(name, sizeof(name), "echo");
    stream_echo(fl, name, 100000);
    cr_assert(!exists(name + 1));
}

/* ---- listen: errors, stale files, unlink on close ------------------------ */

Test(net_unix, listen_errors_leave_nothing_open)
{
    char dir[64], path[160], name[200];
    tmp_dir(dir, sizeof(dir));
    int before = count_fds();
    pn_unix_listener l, l2;

    memset(name, 'n', sizeof(name));
    name[150] = '\0';
    cr_assert_eq(pn_unix_listen(&l, name, NULL), -ENAMETOOLONG);
    cr_assert_eq(l.afd.fd, -1);
    cr_assert_eq(pn_unix_listener_close(&l), 0, "close after a failed listen is harmless");
    cr_assert_eq(pn_unix_listen(&l, "", NULL), -EINVAL);
    cr_assert_eq(pn_unix_listen(&l, NULL, NULL), -EINVAL);
    cr_assert_eq(pn_unix_listen(NULL, "/x", NULL), -EINVAL);

    snprintf(path, sizeof(path), "%s/missing/dir.sock", dir);
    cr_assert_eq(pn_unix_listen(&l, path, NULL), -ENOENT);

    snprintf(path, sizeof(path), "%s/taken.sock", dir);
    cr_assert_eq(pn_unix_listen(&l, path, NULL), 0);
    cr_assert_eq(pn_unix_listen(&l2, path, NULL), -EADDRINUSE);
    cr_assert_eq(pn_unix_listen(&l2, path, &(pn_unix_opts){ .unlink_stale = true }),
                 -EADDRINUSE, "a live listener is not stale");
    cr_assert_eq(l2.afd.fd, -1);
    cr_assert(exists(path), "and its file was not removed");
    pn_unix_listener_close(&l);

    char abs[64];
    abstract_name(abs, sizeof(abs), "taken");
    cr_assert_eq(pn_unix_listen(&l, abs, NULL), 0);
    cr_assert_eq(pn_unix_listen(&l2, abs, &(pn_unix_opts){ .unlink_stale = true }), -EADDRINUSE);
    pn_unix_listener_close(&l);

    cr_assert_eq(count_fds(), before);
    rm_dir(dir);
}

BOTH(net_unix, unlink_stale_replaces_a_dead_socket_file_only)
{
    char dir[64], path[128], file[128];
    tmp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/stale.sock", dir);
    snprintf(file, sizeof(file), "%s/regular", dir);

    /* A server that died: its socket file stays, nobody listens. */
    {
        pn_unix_listener dead;
        cr_assert_eq(pn_unix_listen(&dead, path, NULL), 0);
        pn_unix_listener_close(&dead);
    }
    cr_assert(exists(path));
    pn_unix_listener l;
    cr_assert_eq(pn_unix_listen(&l, path, NULL), -EADDRINUSE, "without the option");
    cr_assert_eq(pn_unix_listen(&l, path, &(pn_unix_opts){ .unlink_stale = true }), 0);

    /* The new listener works. */
    pn_runtime *rt = flavour_new(fl);
    accept_echo srv = { .base = { &accept_echo_vt }, .l = &l };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, srv, &h), 0);
    pn_unix_stream c;
    pn_unix_connect_future conn = pn_unix_connect(&c, path);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, 0);
    writer w = writer_new(&c.afd, 5000);
    reader r = reader_new(&c.afd);
    pn_join2_future both = pn_join2(PN_FUTURE(&w), PN_FUTURE(&r));
    AWAIT(rt, both);
    cr_assert_eq(r.got, 5000);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    pn_join_handle_free(h);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_close(&c);
    pn_unix_listener_close(&l);

    /* A regular file is never unlinked. */
    FILE *fp = fopen(file, "w");
    cr_assert_not_null(fp);
    fputs("keep me", fp);
    fclose(fp);
    cr_assert_eq(pn_unix_listen(&l, file, &(pn_unix_opts){ .unlink_stale = true }), -EADDRINUSE);
    cr_assert(exists(file));
    pn_unix_dgram d;
    cr_assert_eq(pn_unix_dgram_bind(&d, file, &(pn_unix_opts){ .unlink_stale = true }),
                 -EADDRINUSE);
    cr_assert_eq(d.afd.fd, -1);
    rm_dir(dir);
}

Test(net_unix, unlink_on_close_removes_the_path)
{
    char dir[64], p1[128], p2[128];
    tmp_dir(dir, sizeof(dir));
    snprintf(p1, sizeof(p1), "%s/a.sock", dir);
    snprintf(p2, sizeof(p2), "%s/b.sock", dir);
    pn_unix_listener l;
    pn_unix_dgram d;
    cr_assert_eq(pn_unix_listen(&l, p1, &(pn_unix_opts){ .unlink_on_close = true, .backlog = 4 }), 0);
    cr_assert_eq(pn_unix_dgram_bind(&d, p2, &(pn_unix_opts){ .unlink_on_close = true }), 0);
    cr_assert(exists(p1) && exists(p2));
    cr_assert_eq(pn_unix_listener_close(&l), 0);
    cr_assert_eq(pn_unix_dgram_close(&d), 0);
    cr_assert(!exists(p1) && !exists(p2));
    cr_assert_eq(rmdir(dir), 0, "nothing left in the directory");
}

/* ---- connect ---------------------------------------------------------------- */

BOTH(net_unix, connect_errors)
{
    char dir[64], path[128], dpath[128], big[200];
    tmp_dir(dir, sizeof(dir));
    pn_runtime *rt = flavour_new(fl);
    pn_unix_stream c;

    snprintf(path, sizeof(path), "%s/nobody.sock", dir);
    pn_unix_connect_future conn = pn_unix_connect(&c, path);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -ENOENT);
    cr_assert_eq(c.afd.fd, -1, "out is closed on error");

    /* A stale file: refused. */
    pn_unix_listener l;
    cr_assert_eq(pn_unix_listen(&l, path, NULL), 0);
    pn_unix_listener_close(&l);
    conn = pn_unix_connect(&c, path);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -ECONNREFUSED);

    char abs[64];
    abstract_name(abs, sizeof(abs), "nobody");
    conn = pn_unix_connect(&c, abs);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -ECONNREFUSED, "an abstract name nobody bound");

    /* A datagram socket there: wrong type. */
    snprintf(dpath, sizeof(dpath), "%s/dgram.sock", dir);
    pn_unix_dgram d;
    cr_assert_eq(pn_unix_dgram_bind(&d, dpath, NULL), 0);
    conn = pn_unix_connect(&c, dpath);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -EPROTOTYPE);

    memset(big, 'x', sizeof(big));
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    conn = pn_unix_connect(&c, big);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -ENAMETOOLONG);
    conn = pn_unix_connect(&c, "");
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -EINVAL);
    conn = pn_unix_connect(NULL, path);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, -EINVAL);

    /* Dropped before its first poll: nothing to release. */
    conn = pn_unix_connect(&c, path);
    pn_future_drop(PN_FUTURE(&conn));

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_dgram_close(&d);
    rm_dir(dir);
}

/* Accepts `n` connections after yielding `yields` times; keeps them. */
typedef struct late_acceptor {
    pn_future base;
    int pc, yields, n, i;
    pn_unix_listener *l;
    pn_unix_accept_future acc;
    pn_unix_stream got[4];
} late_acceptor;

static pn_poll late_acceptor_poll(pn_future *f, pn_cx *cx)
{
    late_acceptor *a = (late_acceptor *)f;
    PN_ASYNC_BEGIN(a->pc);
    while (a->yields-- > 0)
        PN_YIELD(a->pc, cx);
    for (a->i = 0; a->i < a->n; a->i++) {
        a->acc = pn_unix_accept(a->l);
        PN_AWAIT(a->pc, &a->acc, cx);
        cr_assert_eq(a->acc.res, 0, "accept: %s", pn_strerror(a->acc.res));
        a->got[a->i] = a->acc.stream;
    }
    PN_ASYNC_END(a->pc);
}

static const pn_future_vtable late_acceptor_vt = { late_acceptor_poll, NULL, "late_acceptor" };

/* Is the listener's backlog full?  A raw nonblocking connect says EAGAIN.
 * (When it is not, the probe's connection stays queued: probe only a
 * backlog believed full.) */
static bool backlog_full(const char *name)
{
    pn_sockaddr a;
    pn_sockaddr_unix(&a, name);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(fd, &a.sa, a.len);
    int e = errno;
    close(fd);
    return r < 0 && e == EAGAIN;
}

BOTH(net_unix, connect_waits_out_a_full_backlog)
{
    char name[64];
    abstract_name(name, sizeof(name), "backlog");
    pn_runtime *rt = flavour_new(fl);
    pn_unix_listener l;
    cr_assert_eq(pn_unix_listen(&l, name, &(pn_unix_opts){ .backlog = 1 }), 0);

    /* Fill the backlog (Linux queues backlog + 1). */
    enum { queued = 2 };
    pn_unix_stream q[queued];
    for (int i = 0; i < queued; i++) {
        pn_unix_connect_future c = pn_unix_connect(&q[i], name);
        AWAIT(rt, c);
        cr_assert_eq(c.res, 0);
    }
    cr_assert(backlog_full(name), "a third connect would get EAGAIN");

    /* Bounded by a timeout while nobody accepts: times out, and the drop
     * closes the half-made socket (the fd count proves it). */
    pn_unix_stream t;
    pn_unix_connect_future tc = pn_unix_connect(&t, name);
    pn_timeout_future lim = pn_timeout(PN_FUTURE(&tc), PN_MS(20));
    AWAIT(rt, lim);
    cr_assert_eq(lim.res, -ETIMEDOUT);
    cr_assert_eq(t.afd.fd, -1);

    /* Now the acceptor drains the queue after the connect's first try
     * failed with EAGAIN: the connect retries and gets in. */
    pn_unix_stream c3;
    pn_unix_connect_future conn = pn_unix_connect(&c3, name);
    late_acceptor acc = { .base = { &late_acceptor_vt }, .yields = 3, .n = queued + 1, .l = &l };
    pn_join2_future both = pn_join2(PN_FUTURE(&conn), PN_FUTURE(&acc));
    AWAIT(rt, both);
    cr_assert_eq(conn.res, 0, "connect: %s", pn_strerror(conn.res));
    cr_assert_gt(conn.backoff_ns, 1000000u, "it did retry");

    /* The last accepted stream is c3's peer: bytes flow. */
    cr_assert_eq(write(c3.afd.fd, "xyz", 3), 3);
    char buf[4];
    pn_read_future rd = pn_read(&acc.got[queued].afd, buf, sizeof(buf));
    AWAIT(rt, rd);
    cr_assert_eq(rd.res, 3);
    cr_assert_eq(memcmp(buf, "xyz", 3), 0);

    cr_assert_eq(pn_runtime_free(rt), 0);
    for (int i = 0; i < queued; i++)
        pn_unix_close(&q[i]);
    for (int i = 0; i <= queued; i++)
        pn_unix_close(&acc.got[i]);
    pn_unix_close(&c3);
    pn_unix_listener_close(&l);
}

/* ---- pairs, shutdown, EPIPE ---------------------------------------------- */

BOTH(net_unix, stream_pair_shutdown_and_closed_peer)
{
    pn_runtime *rt = flavour_new(fl);
    pn_unix_stream a, b;
    cr_assert_eq(pn_unix_stream_pair(&a, &b), 0);
    pn_write_all_future w = pn_write_all(&a.afd, "hello", 5);
    AWAIT(rt, w);
    cr_assert_eq(w.res, 5);
    cr_assert_eq(pn_unix_stream_shutdown(&a, SHUT_WR), 0);
    char buf[16];
    pn_read_future r = pn_read(&b.afd, buf, sizeof(buf));
    AWAIT(rt, r);
    cr_assert_eq(r.res, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    r = pn_read(&b.afd, buf, sizeof(buf));
    AWAIT(rt, r);
    cr_assert_eq(r.res, 0, "end of stream after shutdown(SHUT_WR)");
    cr_assert_eq(pn_unix_stream_shutdown(&a, 12345), -EINVAL);

    /* The peer goes away: -EPIPE, no SIGPIPE (the test would die). */
    cr_assert_eq(pn_runtime_free(rt), 0);
    rt = flavour_new(fl);
    pn_unix_close(&a);
    pn_write_future wr = pn_write(&b.afd, "x", 1);
    AWAIT(rt, wr);
    cr_assert_eq(wr.res, -EPIPE);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_close(&b);
    cr_assert_eq(pn_unix_stream_shutdown(&b, SHUT_RDWR), -EBADF);
    cr_assert_eq(pn_unix_stream_pair(NULL, &b), -EINVAL);
    cr_assert_eq(pn_unix_close(NULL), -EINVAL);
}

/* ---- close while another future waits ------------------------------------ */

/* Closes the socket it is given on its first poll. */
typedef struct closer {
    pn_future base;
    pn_async_fd *afd;
} closer;

static pn_poll closer_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    cr_assert_eq(pn_async_fd_close(((closer *)f)->afd), 0);
    return PN_READY;
}

static const pn_future_vtable closer_vt = { closer_poll, NULL, "closer" };

/* One task: [waiter, closer] joined; the waiter is pending when the closer
 * runs (join polls in order), so the close wakes it. */
typedef struct close_race {
    pn_future base;
    int pc;
    pn_future *waiter;
    closer c;
    pn_join2_future j;
} close_race;

static pn_poll close_race_poll(pn_future *f, pn_cx *cx)
{
    close_race *r = (close_race *)f;
    PN_ASYNC_BEGIN(r->pc);
    r->j = pn_join2(r->waiter, PN_FUTURE(&r->c));
    PN_AWAIT(r->pc, &r->j, cx);
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable close_race_vt = { close_race_poll, NULL, "close_race" };

/* Run the race as a spawned task (a worker on the multi-thread runtime). */
static void race(pn_runtime *rt, pn_future *waiter, pn_async_fd *afd)
{
    close_race cr = { .base = { &close_race_vt }, .waiter = waiter,
                      .c = { .base = { &closer_vt }, .afd = afd } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, cr, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    pn_join_handle_free(h);
}

BOTH(net_unix, close_wakes_waiters_with_ecanceled)
{
    pn_runtime *rt = flavour_new(fl);
    char name[64], buf[8];
    abstract_name(name, sizeof(name), "cancel");

    pn_unix_listener l;
    cr_assert_eq(pn_unix_listen(&l, name, NULL), 0);
    pn_unix_accept_future acc = pn_unix_accept(&l);
    race(rt, PN_FUTURE(&acc), &l.afd);
    cr_assert_eq(acc.res, -ECANCELED);
    cr_assert_eq(acc.stream.afd.fd, -1);

    pn_unix_stream a, b;
    cr_assert_eq(pn_unix_stream_pair(&a, &b), 0);
    pn_read_future rd = pn_read(&a.afd, buf, sizeof(buf));
    race(rt, PN_FUTURE(&rd), &a.afd);
    cr_assert_eq(rd.res, -ECANCELED);

    pn_unix_dgram d, e;
    cr_assert_eq(pn_unix_dgram_pair(&d, &e), 0);
    pn_unix_recv_future rv = pn_unix_recv_from(&d, buf, sizeof(buf));
    race(rt, PN_FUTURE(&rv), &d.afd);
    cr_assert_eq(rv.res, -ECANCELED);
    /* Later operations on the closed socket: -ECANCELED too. */
    rv = pn_unix_recv(&d, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, -ECANCELED);
    pn_unix_send_future sd = pn_unix_send(&d, "x", 1);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -ECANCELED);

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_close(&b);
    pn_unix_dgram_close(&e);
}

/* ---- datagrams -------------------------------------------------------------- */

/* Server task: `n` times, receive a datagram and send it back to its sender. */
typedef struct dgram_echo {
    pn_future base;
    int pc, n;
    pn_unix_dgram *d;
    pn_unix_recv_future rv;
    pn_unix_send_future sd;
    char from[PN_SOCKADDR_STRLEN];
    char buf[70000];
} dgram_echo;

static pn_poll dgram_echo_poll(pn_future *f, pn_cx *cx)
{
    dgram_echo *e = (dgram_echo *)f;
    PN_ASYNC_BEGIN(e->pc);
    while (e->n-- > 0) {
        e->rv = pn_unix_recv_from(e->d, e->buf, sizeof(e->buf));
        PN_AWAIT(e->pc, &e->rv, cx);
        cr_assert_geq(e->rv.res, 0, "recv_from: %s", pn_strerror((int)e->rv.res));
        cr_assert(!e->rv.truncated);
        cr_assert_geq(pn_sockaddr_format(&e->rv.from, e->from, sizeof(e->from)), 0);
        e->sd = pn_unix_send_to(e->d, e->buf, (size_t)e->rv.res, &e->rv.from);
        PN_AWAIT(e->pc, &e->sd, cx);
        cr_assert_eq(e->sd.res, e->rv.res, "send_to: %s", pn_strerror((int)e->sd.res));
    }
    PN_ASYNC_END(e->pc);
}

static const pn_future_vtable dgram_echo_vt = { dgram_echo_poll, NULL, "dgram_echo" };

static void dgram_echo_with(pn_runtime_flavor fl, const char *srv_name)
{
    static const size_t sizes[] = { 1, 0, 100, 4096, 60000 };
    const int n = (int)(sizeof(sizes) / sizeof(sizes[0]));
    pn_runtime *rt = flavour_new(fl);
    pn_unix_dgram srv, cli;
    cr_assert_eq(pn_unix_dgram_bind(&srv, srv_name, NULL), 0);
    cr_assert_eq(pn_unix_dgram_bind(&cli, NULL, NULL), 0, "autobind");
    char cli_name[PN_SOCKADDR_STRLEN];
    cr_assert_geq(pn_sockaddr_format(&cli.addr, cli_name, sizeof(cli_name)), 0);
    cr_assert_eq(cli_name[0], '@', "autobind gives an abstract name");
    cr_assert_eq(strlen(cli_name), 6, "five hex digits");
    cr_assert_eq(setsockopt(cli.afd.fd, SOL_SOCKET, SO_SNDBUF, &(int){ 1 << 20 }, sizeof(int)), 0);

    dgram_echo *e = calloc(1, sizeof(*e));
    e->base.vt = &dgram_echo_vt;
    e->n = n;
    e->d = &srv;
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(e), sizeof(*e), &h), 0);
    free(e);

    static unsigned char out[60000], in[60001];
    for (int k = 0; k < n; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            out[i] = pattern(i + (size_t)k);
        pn_unix_send_future sd = pn_unix_send_to(&cli, out, sizes[k], &srv.addr);
        AWAIT(rt, sd);
        cr_assert_eq(sd.res, (ssize_t)sizes[k], "send_to: %s", pn_strerror((int)sd.res));
        pn_unix_recv_future rv = pn_unix_recv_from(&cli, in, sizeof(in));
        AWAIT(rt, rv);
        cr_assert_eq(rv.res, (ssize_t)sizes[k], "recv_from: %s", pn_strerror((int)rv.res));
        cr_assert_eq(rv.datagram_len, sizes[k]);
        cr_assert(!rv.truncated);
        cr_assert_eq(memcmp(in, out, sizes[k]), 0, "datagram %d", k);
        cr_assert(pn_sockaddr_equal(&rv.from, &srv.addr), "from the server's name");
    }
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_str_eq(((dgram_echo *)j.output)->from, cli_name, "the server saw the client's name");
    pn_join_handle_free(h);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_dgram_close(&srv);
    pn_unix_dgram_close(&cli);
}

BOTH(net_unix, dgram_send_to_recv_from_abstract)
{
    char name[64];
    abstract_name(name, sizeof(name), "dgram");
    dgram_echo_with(fl, name);
}

BOTH(net_unix, dgram_send_to_recv_from_path)
{
    char dir[64], path[128];
    tmp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/d.sock", dir);
    dgram_echo_with(fl, path);
    rm_dir(dir);
}

BOTH(net_unix, dgram_truncation_and_zero_length)
{
    pn_runtime *rt = flavour_new(fl);
    pn_unix_dgram a, b;
    cr_assert_eq(pn_unix_dgram_pair(&a, &b), 0);
    unsigned char out[300], in[300];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = pattern(i);

    pn_unix_send_future sd = pn_unix_send(&a, out, 300);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, 300);
    sd = pn_unix_send(&a, out + 1, 7);
    AWAIT(rt, sd);
    sd = pn_unix_send(&a, NULL, 0);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, 0);

    memset(in, 0, sizeof(in));
    pn_unix_recv_future rv = pn_unix_recv(&b, in, 10);
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 10, "the bytes stored");
    cr_assert_eq(rv.datagram_len, 300, "the datagram's length");
    cr_assert(rv.truncated);
    cr_assert_eq(memcmp(in, out, 10), 0);
    cr_assert_eq(in[10], 0, "nothing stored past len");

    rv = pn_unix_recv(&b, in, sizeof(in));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 7, "the rest of the long datagram was discarded");
    cr_assert(!rv.truncated);
    cr_assert_eq(memcmp(in, out + 1, 7), 0);

    rv = pn_unix_recv_from(&b, in, sizeof(in));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 0, "a zero-length datagram");
    cr_assert_eq(rv.datagram_len, 0);
    cr_assert(!rv.truncated);
    char fbuf[PN_SOCKADDR_STRLEN];
    cr_assert_eq(pn_sockaddr_format(&rv.from, fbuf, sizeof(fbuf)), 0, "unnamed sender");

    /* The poll helpers, through a length probe: len 0. */
    sd = pn_unix_send(&a, out, 42);
    AWAIT(rt, sd);
    rv = pn_unix_recv(&b, NULL, 0);
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 0);
    cr_assert_eq(rv.datagram_len, 42);
    cr_assert(rv.truncated);

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_dgram_close(&a);
    pn_unix_dgram_close(&b);
}

/* Sends `n` datagrams (4-byte sequence number + pattern) as fast as it can. */
typedef struct flood {
    pn_future base;
    int pc, n, i;
    pn_unix_dgram *d;
    const pn_sockaddr *to;       /* NULL: connected */
    pn_unix_send_future sd;
    unsigned char buf[512];
} flood;

static size_t flood_len(int i) { return 4 + (size_t)(i * 37 % 500); }

static void flood_fill(unsigned char *buf, int i)
{
    memcpy(buf, &i, 4);
    for (size_t k = 4; k < flood_len(i); k++)
        buf[k] = pattern(k + (size_t)i);
}

static pn_poll flood_poll(pn_future *f, pn_cx *cx)
{
    flood *fl = (flood *)f;
    PN_ASYNC_BEGIN(fl->pc);
    for (fl->i = 0; fl->i < fl->n; fl->i++) {
        flood_fill(fl->buf, fl->i);
        fl->sd = fl->to ? pn_unix_send_to(fl->d, fl->buf, flood_len(fl->i), fl->to)
                        : pn_unix_send(fl->d, fl->buf, flood_len(fl->i));
        PN_AWAIT(fl->pc, &fl->sd, cx);
        cr_assert_eq(fl->sd.res, (ssize_t)flood_len(fl->i), "send %d: %s", fl->i,
                     pn_strerror((int)fl->sd.res));
    }
    PN_ASYNC_END(fl->pc);
}

static const pn_future_vtable flood_vt = { flood_poll, NULL, "flood" };

/* Receives and checks `n` datagrams in order. */
typedef struct sink {
    pn_future base;
    int pc, n, i;
    pn_unix_dgram *d;
    pn_unix_recv_future rv;
    unsigned char buf[512], want[512];
} sink;

static pn_poll sink_poll(pn_future *f, pn_cx *cx)
{
    sink *s = (sink *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->i = 0; s->i < s->n; s->i++) {
        s->rv = pn_unix_recv(s->d, s->buf, sizeof(s->buf));
        PN_AWAIT(s->pc, &s->rv, cx);
        cr_assert_eq(s->rv.res, (ssize_t)flood_len(s->i), "datagram %d: %zd", s->i, s->rv.res);
        flood_fill(s->want, s->i);
        cr_assert_eq(memcmp(s->buf, s->want, flood_len(s->i)), 0, "datagram %d", s->i);
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable sink_vt = { sink_poll, NULL, "sink" };

/* The sender outruns the receiver's queue (max_dgram_qlen, 10 by default):
 * its sends wait for room; nothing is lost or reordered. */
static void flood_test(pn_runtime_flavor fl, bool connected)
{
    enum { N = 3000 };
    pn_runtime *rt = flavour_new(fl);
    pn_unix_dgram a, b;
    if (connected) {
        cr_assert_eq(pn_unix_dgram_pair(&a, &b), 0);
    } else {
        char name[64];
        abstract_name(name, sizeof(name), "flood");
        cr_assert_eq(pn_unix_dgram_bind(&b, name, NULL), 0);
        cr_assert_eq(pn_unix_dgram_bind(&a, NULL, NULL), 0);
    }
    flood f = { .base = { &flood_vt }, .n = N, .d = &a, .to = connected ? NULL : &b.addr };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, f, &h), 0);
    sink s = { .base = { &sink_vt }, .n = N, .d = &b };
    AWAIT(rt, s);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    pn_join_handle_free(h);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_dgram_close(&a);
    pn_unix_dgram_close(&b);
}

BOTH(net_unix, dgram_back_pressure_connected_pair) { flood_test(fl, true); }
BOTH(net_unix, dgram_back_pressure_send_to) { flood_test(fl, false); }

BOTH(net_unix, dgram_errors)
{
    char dir[64], path[128], spath[128], big[200];
    tmp_dir(dir, sizeof(dir));
    pn_runtime *rt = flavour_new(fl);
    pn_unix_dgram a, b;
    char name_b[64], buf[8];
    abstract_name(name_b, sizeof(name_b), "peer");

    /* Send to a closed peer. */
    cr_assert_eq(pn_unix_dgram_bind(&a, NULL, NULL), 0);
    cr_assert_eq(pn_unix_dgram_bind(&b, name_b, NULL), 0);
    cr_assert_eq(pn_unix_dgram_connect(&a, name_b), 0);
    {
        pn_sockaddr pa;
        cr_assert_eq(pn_unix_peer_addr(&a.afd, &pa), 0);
        cr_assert(pn_sockaddr_equal(&pa, &b.addr));
    }
    pn_unix_send_future sd = pn_unix_send(&a, "ok", 2);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, 2);
    pn_unix_recv_future rv = pn_unix_recv_from(&b, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 2);
    cr_assert(pn_sockaddr_equal(&rv.from, &a.addr));
    cr_assert_eq(pn_runtime_free(rt), 0);
    rt = flavour_new(fl);
    pn_unix_dgram_close(&b);
    sd = pn_unix_send(&a, "gone", 4);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -ECONNREFUSED, "the connected peer was closed: %s",
                 pn_strerror((int)sd.res));

    /* send_to: missing path, stale path, wrong family, NULL, bad address. */
    pn_unix_dgram c;
    cr_assert_eq(pn_unix_dgram_bind(&c, NULL, NULL), 0);
    pn_sockaddr to;
    snprintf(path, sizeof(path), "%s/none.sock", dir);
    cr_assert_eq(pn_sockaddr_unix(&to, path), 0);
    sd = pn_unix_send_to(&c, "x", 1, &to);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -ENOENT);
    {
        pn_unix_dgram dead;
        cr_assert_eq(pn_unix_dgram_bind(&dead, path, NULL), 0);
        pn_unix_dgram_close(&dead);
    }
    sd = pn_unix_send_to(&c, "x", 1, &to);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -ECONNREFUSED, "a stale path");
    pn_sockaddr v4 = pn_sockaddr_loopback4(9);
    sd = pn_unix_send_to(&c, "x", 1, &v4);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EAFNOSUPPORT);
    sd = pn_unix_send_to(&c, "x", 1, NULL);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EINVAL);
    sd = pn_unix_send(&c, "x", 1);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -ENOTCONN, "no peer");
    sd = pn_unix_send(&c, NULL, 3);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EINVAL, "NULL buffer with a length");

    /* A stream listener there: wrong type. */
    pn_unix_listener l;
    snprintf(spath, sizeof(spath), "%s/stream.sock", dir);
    cr_assert_eq(pn_unix_listen(&l, spath, NULL), 0);
    cr_assert_eq(pn_unix_dgram_connect(&c, spath), -EPROTOTYPE);
    cr_assert_eq(pn_unix_dgram_connect(&c, path), -ECONNREFUSED);
    snprintf(buf, sizeof(buf), "/nope");
    cr_assert_eq(pn_unix_dgram_connect(&c, "/nonexistent/x.sock"), -ENOENT);
    cr_assert_eq(pn_unix_dgram_connect(&c, "@"), -EINVAL);
    memset(big, 'x', sizeof(big));
    big[0] = '@';
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(pn_unix_dgram_connect(&c, big), -ENAMETOOLONG);
    cr_assert_eq(pn_unix_dgram_bind(&b, big, NULL), -ENAMETOOLONG);
    cr_assert_eq(b.afd.fd, -1);
    cr_assert_eq(pn_unix_dgram_close(&b), 0, "harmless after a failed bind");

    /* Plain calls on a closed socket. */
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_dgram_close(&c);
    cr_assert_eq(pn_unix_dgram_connect(&c, name_b), -EBADF);
    pn_sockaddr la;
    cr_assert_eq(pn_unix_local_addr(&c.afd, &la), -EBADF);
    cr_assert_eq(pn_unix_local_addr(NULL, &la), -EINVAL);
    cr_assert_eq(pn_unix_dgram_pair(NULL, &c), -EINVAL);
    pn_unix_dgram_close(&a);
    pn_unix_listener_close(&l);
    rm_dir(dir);
}

BOTH(net_unix, pending_futures_dropped_release_their_wakers)
{
    /* A recv and an accept, each polled once with a probe's waker while
     * nothing has arrived, then dropped: the drop takes the waker back, the
     * sockets stay usable, and what arrives later wakes nobody stale. */
    pn_runtime *rt = flavour_new(fl);
    pn_unix_dgram a, b;
    cr_assert_eq(pn_unix_dgram_pair(&a, &b), 0);
    char buf[8];
    waker_probe probe = { 0 };
    pn_unix_recv_future rv = pn_unix_recv(&b, buf, sizeof(buf));
    probed_drop pd = probed_drop_of(PN_FUTURE(&rv), &probe);
    AWAIT(rt, pd);
    cr_assert_eq(pd.first, PN_PENDING, "nothing to receive yet");
    cr_assert_gt(atomic_load(&probe.clones), 0, "the pending recv left a waker");
    cr_assert_eq(waker_probe_held(&probe), 0, "the recv's drop took its waker back");

    char name[64];
    abstract_name(name, sizeof(name), "drop");
    pn_unix_listener l;
    cr_assert_eq(pn_unix_listen(&l, name, NULL), 0);
    pn_unix_accept_future acc = pn_unix_accept(&l);
    int clones_before = atomic_load(&probe.clones);
    pd = probed_drop_of(PN_FUTURE(&acc), &probe);
    AWAIT(rt, pd);
    cr_assert_eq(pd.first, PN_PENDING, "nobody connects yet");
    cr_assert_gt(atomic_load(&probe.clones), clones_before, "the pending accept left a waker");
    cr_assert_eq(waker_probe_held(&probe), 0, "the accept's drop took its waker back");

    pn_unix_send_future sd = pn_unix_send(&a, "after", 5);
    AWAIT(rt, sd);
    rv = pn_unix_recv(&b, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 5);
    cr_assert_eq(memcmp(buf, "after", 5), 0);
    pn_unix_stream c;
    pn_unix_connect_future conn = pn_unix_connect(&c, name);
    AWAIT(rt, conn);
    cr_assert_eq(conn.res, 0);
    acc = pn_unix_accept(&l);
    AWAIT(rt, acc);
    cr_assert_eq(acc.res, 0);

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_unix_close(&acc.stream);
    pn_unix_close(&c);
    pn_unix_dgram_close(&a);
    pn_unix_dgram_close(&b);
    pn_unix_listener_close(&l);
    cr_assert_eq(atomic_load(&probe.wakes), 0, "nothing woke a dropped future's task");
}

/* ---- the accept future: back-off on EMFILE, skipping per-connection errors ---- */

#include "core/sys.h"

static int fail_left, fail_errno, accept_calls;
static int fake_accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
    accept_calls++;
    if (fail_left > 0) {
        fail_left--;
        errno = fail_errno;
        return -1;
    }
    return accept4(fd, a, l, flags);
}
static void sys_restore(void) { pn__sys_reset(); }

typedef struct backoff_main {
    pn_future base;
    int pc;
    pn_unix_listener *l;
    pn_unix_accept_future acc;
} backoff_main;

static pn_poll backoff_main_poll(pn_future *f, pn_cx *cx)
{
    backoff_main *m = (backoff_main *)f;
    PN_ASYNC_BEGIN(m->pc);
    m->acc = pn_unix_accept(m->l);
    PN_AWAIT(m->pc, &m->acc, cx);
    PN_ASYNC_END(m->pc);
}
static const pn_future_vtable backoff_main_vt = { backoff_main_poll, NULL, "backoff_main" };

/* Accept one queued connection while accept4 first fails `fails` times
 * with `err`; returns how long it took. */
static uint64_t accept_through(int err, int fails, backoff_main *m)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    char name[64];
    abstract_name(name, sizeof(name), "faulty-accept");
    pn_unix_listener l;
    cr_assert_eq(pn_unix_listen(&l, name, NULL), 0);
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    pn_sockaddr sa;
    cr_assert_eq(pn_sockaddr_unix(&sa, name), 0);
    cr_assert_eq(connect(c, &sa.sa, sa.len), 0);   /* queued in the backlog */

    pn__sys.accept4 = fake_accept4;
    fail_errno = err;
    fail_left = fails;
    accept_calls = 0;
    *m = (backoff_main){ .base = { &backoff_main_vt }, .l = &l };
    pn_instant t0 = pn_now();
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(m)), 0);
    uint64_t took = pn_now() - t0;
    cr_assert_eq(m->acc.res, 0, "accepted in the end: %s", pn_strerror(m->acc.res));
    cr_assert_eq(accept_calls, fails + 1, "%d failures, then the accept", fails);
    pn_unix_close(&m->acc.stream);
    pn_unix_listener_close(&l);
    close(c);
    pn_runtime_free(rt);
    return took;
}

Test(net_unix, accept_future_backs_off_on_emfile, .fini = sys_restore)
{
    backoff_main m;
    uint64_t took = accept_through(EMFILE, 3, &m);
    cr_assert_eq(m.acc.backoffs, 3);
    /* It slept between them (10 + 20 + 40 ms: a sleep never ends early),
     * where a spinning accept would have taken microseconds. */
    cr_assert_geq(took, PN_MS(70), "backed off for %llu ns only", (unsigned long long)took);
}

Test(net_unix, accept_future_skips_per_connection_errors, .fini = sys_restore)
{
    backoff_main m;
    accept_through(ECONNABORTED, 2, &m);
    cr_assert_eq(m.acc.backoffs, 0, "a connection's own error is no reason to sleep");
    accept_through(EPROTO, 1, &m);
    cr_assert_eq(m.acc.backoffs, 0);
}
