/*
 * unix.c - Unix domain sockets (pollen/unix.h): names, stream listener,
 * accept, connect, socketpair, datagram sockets.
 *
 * Owns: turning "path" / "@abstract" into a sockaddr_un of the exact
 * length, binding with the optional stale-file unlink, the connect future
 * (START -> SLEEP* -> DONE: a nonblocking AF_UNIX connect succeeds or fails
 * at once, never EINPROGRESS, except that a full backlog answers EAGAIN;
 * the unconnected socket already polls writable and gets no event when
 * room appears, so that case retries on a timer), and the Unix side of
 * the datagram operations: the address check and the sender's address.
 * The accept loop is accept.c's, the datagram operations and futures are
 * dgram.c's, both shared with TCP and UDP.
 *
 * Every socket is made by pn__socket (nonblocking, close-on-exec).
 */
#include "pollen/unix.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/accept.h"
#include "reactor/slab.h"
#include "net/dgram.h"
#include "net/socket.h"

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)
#define SUN_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* ---- names ---------------------------------------------------------------- */

int pn_sockaddr_unix(pn_sockaddr *out, const char *name)
{
    if (!out || !name || !name[0])
        return -EINVAL;
    size_t n = strlen(name);
    pn_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.un.sun_family = AF_UNIX;
    if (name[0] == '@') {
        if (n == 1)
            return -EINVAL;
        if (n - 1 >= SUN_MAX)             /* 0 + the name must fit */
            return -ENAMETOOLONG;
        memcpy(a.un.sun_path + 1, name + 1, n - 1);
        a.len = (socklen_t)(SUN_OFF + n);   /* the 0, then n - 1 bytes */
    } else {
        if (n >= SUN_MAX)                 /* the path and its NUL must fit */
            return -ENAMETOOLONG;
        memcpy(a.un.sun_path, name, n + 1);
        a.len = (socklen_t)(SUN_OFF + n + 1);
    }
    *out = a;
    return 0;
}

static bool is_path(const pn_sockaddr *a)
{
    return a->len > SUN_OFF && a->un.sun_path[0] != '\0';
}

/* Complete a Unix address the kernel wrote, namelen bytes, into a zeroed
 * *a: an unnamed one (no path, no abstract name) becomes family AF_UNIX
 * with len sizeof(sa_family_t).  Also the datagrams' from function
 * (dgram.h). */
static void un_from(pn_sockaddr *a, socklen_t namelen)
{
    if (namelen > sizeof(a->un))
        namelen = sizeof(a->un);
    a->un.sun_family = AF_UNIX;
    a->len = namelen > SUN_OFF ? namelen : (socklen_t)sizeof(sa_family_t);
}

static int sock_name(const pn_async_fd *afd, pn_sockaddr *out, bool peer)
{
    if (!afd || !out)
        return -EINVAL;
    int err = pn__sock_addr(pn__sock_fd(afd), out, peer);
    if (!err)
        un_from(out, out->len);
    return err;
}

int pn_unix_local_addr(const pn_async_fd *afd, pn_sockaddr *out)
{
    return sock_name(afd, out, false);
}

int pn_unix_peer_addr(const pn_async_fd *afd, pn_sockaddr *out)
{
    return sock_name(afd, out, true);
}

/* ---- binding ------------------------------------------------------------ */

/* Is the socket file at `a` one that nobody serves (connect refused)?
 * Fills *ino with its inode when it is. */
static bool is_stale(const pn_sockaddr *a, int type, ino_t *ino)
{
    struct stat st;
    if (lstat(a->un.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return false;
    int fd = pn__socket(AF_UNIX, type, 0);
    if (fd < 0)
        return false;
    bool refused = pn__sock_connect(fd, &a->sa, a->len) == -ECONNREFUSED;
    pn__close_fd(fd);
    *ino = st.st_ino;
    return refused;
}

static int bind_name(int fd, int type, const pn_sockaddr *a, bool unlink_stale)
{
    if (bind(fd, &a->sa, a->len) == 0)
        return 0;
    int err = -errno;
    if (err != -EADDRINUSE || !unlink_stale || !is_path(a))
        return err;
    ino_t ino;
    if (!is_stale(a, type, &ino))
        return -EADDRINUSE;
    struct stat st;   /* still the file we probed? */
    if (lstat(a->un.sun_path, &st) < 0 || st.st_ino != ino || !S_ISSOCK(st.st_mode))
        return -EADDRINUSE;
    if (unlink(a->un.sun_path) < 0 && errno != ENOENT)
        return -EADDRINUSE;
    return bind(fd, &a->sa, a->len) == 0 ? 0 : -errno;
}

/* Socket of `type` bound to `a` (NULL: autobind).  fd or -errno. */
static int bound_socket(int type, const pn_sockaddr *a, const pn_unix_opts *opts)
{
    int fd = pn__socket(AF_UNIX, type, 0);
    if (fd < 0)
        return fd;
    int err;
    if (a) {
        err = bind_name(fd, type, a, opts && opts->unlink_stale);
    } else {
        sa_family_t fam = AF_UNIX;  /* address length of the family alone: autobind */
        err = bind(fd, (struct sockaddr *)&fam, sizeof(fam)) == 0 ? 0 : -errno;
    }
    if (err) {
        pn__close_fd(fd);
        return err;
    }
    return fd;
}

static void unlink_bound(const pn_sockaddr *a)
{
    if (is_path(a))
        (void)unlink(a->un.sun_path);
}

/* ---- listener ------------------------------------------------------------ */

int pn_unix_listen(pn_unix_listener *l, const char *name, const pn_unix_opts *opts)
{
    if (!l)
        return -EINVAL;
    pn__sock_init_closed(&l->afd);
    memset(&l->addr, 0, sizeof(l->addr));
    l->unlink_on_close = false;
    pn_sockaddr a;
    int err = pn_sockaddr_unix(&a, name);
    if (err)
        return err;
    int fd = bound_socket(SOCK_STREAM, &a, opts);
    if (fd < 0)
        return fd;
    int backlog = opts && opts->backlog > 0 ? opts->backlog : 1024;
    if (listen(fd, backlog) < 0) {
        err = -errno;
        goto fail;
    }
    pn__sock_adopt_listener(&l->afd, fd);
    l->addr = a;
    l->unlink_on_close = opts && opts->unlink_on_close;
    return 0;
fail:
    unlink_bound(&a);           /* we made the file: do not leave it behind */
    pn__close_fd(fd);
    pn__sock_init_closed(&l->afd);
    return err;
}

int pn_unix_listener_close(pn_unix_listener *l)
{
    if (!l)
        return -EINVAL;
    if (l->unlink_on_close && !l->afd.closed)
        unlink_bound(&l->addr);
    l->unlink_on_close = false;
    return pn__async_fd_close_listener(&l->afd);
}

pn_poll pn_unix_poll_accept(pn_unix_listener *l, pn_cx *cx, pn_unix_stream *out, int *res)
{
    if (!res)
        return PN_READY;
    if (!l || !out || !cx) {
        *res = -EINVAL;
        return PN_READY;
    }
    return pn__accept_poll_once(&l->afd, cx, &out->afd, NULL, res);
}

static pn_poll accept_poll(pn_future *f, pn_cx *cx)
{
    pn_unix_accept_future *a = (pn_unix_accept_future *)f;
    return pn__accept_poll(&a->st, cx, &a->stream.afd, NULL, &a->backoffs, &a->res);
}

static void accept_drop(pn_future *f)
{
    pn__accept_drop(&((pn_unix_accept_future *)f)->st);
}

static const pn_future_vtable accept_vt = { accept_poll, accept_drop, "pn_unix_accept" };

pn_unix_accept_future pn_unix_accept(pn_unix_listener *l)
{
    pn_unix_accept_future a;
    memset(&a, 0, sizeof(a));
    a.base.vt = &accept_vt;
    pn__accept_init(&a.st, l ? &l->afd : NULL);
    pn__sock_init_closed(&a.stream.afd);
    return a;
}

/* ---- connect -------------------------------------------------------------- */

enum { C_START, C_SLEEP, C_DONE };

#define BACKOFF_MIN_NS 1000000ull       /* 1 ms */
#define BACKOFF_MAX_NS 64000000ull      /* 64 ms */

/* Try connect(2) once: 0 (connected: *out owns the socket now), 1 (the
 * backlog is full: c->nap is armed, state C_SLEEP) or -errno (the socket
 * is closed). */
static int connect_try(pn_unix_connect_future *c)
{
    int err = pn__sock_connect(c->fd, &c->addr.sa, c->addr.len);
    if (err == -EAGAIN) {
        c->nap = pn_sleep(c->backoff_ns);
        c->backoff_ns = c->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : c->backoff_ns * 2;
        c->state = C_SLEEP;
        return 1;
    }
    if (err == 0)
        pn__sock_adopt(&c->out->afd, c->fd, true);   /* from pn__socket */
    else
        pn__close_fd(c->fd);
    c->fd = -1;
    return err;
}

/* The first poll: check, make the socket, try once (as connect_try). */
static int connect_start(pn_unix_connect_future *c)
{
    if (!c->out)
        return -EINVAL;
    pn__sock_init_closed(&c->out->afd);
    if (c->err)
        return c->err;
    int fd = pn__socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    c->fd = fd;
    c->backoff_ns = BACKOFF_MIN_NS;
    return connect_try(c);
}

static pn_poll connect_poll(pn_future *f, pn_cx *cx)
{
    pn_unix_connect_future *c = (pn_unix_connect_future *)f;
    if (c->state == C_DONE)
        return PN_READY;
    int r = c->state == C_START ? connect_start(c) : 1;
    while (r == 1) {
        if (pn_future_poll(PN_FUTURE(&c->nap), cx) == PN_PENDING)
            return PN_PENDING;
        r = connect_try(c);
    }
    c->res = r;
    c->state = C_DONE;
    return PN_READY;
}

static void connect_drop(pn_future *f)
{
    pn_unix_connect_future *c = (pn_unix_connect_future *)f;
    if (c->state == C_SLEEP) {
        pn_future_drop(PN_FUTURE(&c->nap));
        pn__close_fd(c->fd);
        c->fd = -1;
    }
    c->state = C_DONE;
}

static const pn_future_vtable connect_vt = { connect_poll, connect_drop, "pn_unix_connect" };

pn_unix_connect_future pn_unix_connect(pn_unix_stream *out, const char *name)
{
    pn_unix_connect_future c;
    memset(&c, 0, sizeof(c));
    c.base.vt = &connect_vt;
    c.out = out;
    c.fd = -1;
    c.state = C_START;
    c.err = pn_sockaddr_unix(&c.addr, name);
    return c;
}

/* ---- stream ------------------------------------------------------------- */

static int make_pair(int type, pn_async_fd *a, pn_async_fd *b)
{
    if (!a || !b)
        return -EINVAL;
    pn__sock_init_closed(a);
    pn__sock_init_closed(b);
    int sv[2];
    if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pn__sock_adopt(a, sv[0], type == SOCK_STREAM);
    pn__sock_adopt(b, sv[1], type == SOCK_STREAM);
    return 0;
}

int pn_unix_stream_pair(pn_unix_stream *a, pn_unix_stream *b)
{
    return make_pair(SOCK_STREAM, a ? &a->afd : NULL, b ? &b->afd : NULL);
}

int pn_unix_stream_shutdown(pn_unix_stream *s, int how)
{
    if (!s)
        return -EINVAL;
    int fd = pn__sock_fd(&s->afd);
    if (fd < 0)
        return fd;
    return shutdown(fd, how) < 0 ? -errno : 0;
}

int pn_unix_close(pn_unix_stream *s)
{
    return s ? pn_async_fd_close(&s->afd) : -EINVAL;
}

/* ---- datagram ----------------------------------------------------------- */

int pn_unix_dgram_bind(pn_unix_dgram *d, const char *name, const pn_unix_opts *opts)
{
    if (!d)
        return -EINVAL;
    pn__sock_init_closed(&d->afd);
    memset(&d->addr, 0, sizeof(d->addr));
    d->unlink_on_close = false;
    pn_sockaddr a;
    int err = name ? pn_sockaddr_unix(&a, name) : 0;
    if (err)
        return err;
    int fd = bound_socket(SOCK_DGRAM, name ? &a : NULL, opts);
    if (fd < 0)
        return fd;
    pn__sock_adopt(&d->afd, fd, false);
    if (!name)
        err = pn_unix_local_addr(&d->afd, &a);
    if (err) {
        if (name)
            unlink_bound(&a);
        pn__close_fd(fd);
        pn__sock_init_closed(&d->afd);
        return err;
    }
    d->addr = a;
    d->unlink_on_close = opts && opts->unlink_on_close;
    return 0;
}

int pn_unix_dgram_pair(pn_unix_dgram *a, pn_unix_dgram *b)
{
    int err = make_pair(SOCK_DGRAM, a ? &a->afd : NULL, b ? &b->afd : NULL);
    if (a) {
        memset(&a->addr, 0, sizeof(a->addr));
        a->unlink_on_close = false;
    }
    if (b) {
        memset(&b->addr, 0, sizeof(b->addr));
        b->unlink_on_close = false;
    }
    return err;
}

int pn_unix_dgram_connect(pn_unix_dgram *d, const char *name)
{
    if (!d)
        return -EINVAL;
    pn_sockaddr a;
    int err = pn_sockaddr_unix(&a, name);
    if (err)
        return err;
    int fd = pn__sock_fd(&d->afd);
    if (fd < 0)
        return fd;
    return pn__sock_connect(fd, &a.sa, a.len);
}

int pn_unix_dgram_close(pn_unix_dgram *d)
{
    if (!d)
        return -EINVAL;
    if (d->unlink_on_close && !d->afd.closed)
        unlink_bound(&d->addr);
    d->unlink_on_close = false;
    return pn_async_fd_close(&d->afd);
}

/* 0 if `to` is a Unix address (dgram.h). */
static int check_un(const pn_sockaddr *to)
{
    if (!to)
        return -EINVAL;
    return to->sa.sa_family == AF_UNIX ? 0 : -EAFNOSUPPORT;
}

static pn_async_fd *afd_of(pn_unix_dgram *d)
{
    return d ? &d->afd : NULL;
}

pn_poll pn_unix_poll_send_to(pn_unix_dgram *d, pn_cx *cx, const void *buf, size_t len,
                             const pn_sockaddr *to, ssize_t *res)
{
    return pn__dgram_poll_send(afd_of(d), cx, buf, len, to, check_un, res);
}

pn_poll pn_unix_poll_send(pn_unix_dgram *d, pn_cx *cx, const void *buf, size_t len,
                          ssize_t *res)
{
    return pn__dgram_poll_send(afd_of(d), cx, buf, len, NULL, NULL, res);
}

pn_poll pn_unix_poll_recv_from(pn_unix_dgram *d, pn_cx *cx, void *buf, size_t len,
                               pn_sockaddr *from, size_t *datagram_len, ssize_t *res)
{
    return pn__dgram_poll_recv(afd_of(d), cx, buf, len, from, un_from, datagram_len, res);
}

pn_poll pn_unix_poll_recv(pn_unix_dgram *d, pn_cx *cx, void *buf, size_t len,
                          size_t *datagram_len, ssize_t *res)
{
    return pn__dgram_poll_recv(afd_of(d), cx, buf, len, NULL, NULL, datagram_len, res);
}

/* The futures are dgram.c's. */

static pn_poll recv_from_poll(pn_future *f, pn_cx *cx)
{
    return pn__dgram_recv_poll(f, cx, un_from);
}

static pn_poll recv_of_poll(pn_future *f, pn_cx *cx)
{
    return pn__dgram_recv_poll(f, cx, NULL);
}

static const pn_future_vtable send_to_vt = { pn__dgram_send_poll, pn__dgram_send_drop,
                                             "pn_unix_send_to" };
static const pn_future_vtable send_of_vt = { pn__dgram_send_poll, pn__dgram_send_drop,
                                             "pn_unix_send" };
static const pn_future_vtable recv_from_vt = { recv_from_poll, pn__dgram_recv_drop,
                                               "pn_unix_recv_from" };
static const pn_future_vtable recv_of_vt = { recv_of_poll, pn__dgram_recv_drop,
                                             "pn_unix_recv" };

pn_unix_send_future pn_unix_send_to(pn_unix_dgram *d, const void *buf, size_t len,
                                    const pn_sockaddr *to)
{
    return pn__dgram_send_new(&send_to_vt, afd_of(d), buf, len, to, check_un);
}

pn_unix_send_future pn_unix_send(pn_unix_dgram *d, const void *buf, size_t len)
{
    return pn__dgram_send_new(&send_of_vt, afd_of(d), buf, len, NULL, NULL);
}

pn_unix_recv_future pn_unix_recv_from(pn_unix_dgram *d, void *buf, size_t len)
{
    return pn__dgram_recv_new(&recv_from_vt, afd_of(d), buf, len);
}

pn_unix_recv_future pn_unix_recv(pn_unix_dgram *d, void *buf, size_t len)
{
    return pn__dgram_recv_new(&recv_of_vt, afd_of(d), buf, len);
}
