/*
 * tcp_stream.c - pn_tcp_stream: connect (with a time limit), read_exact,
 * vectored write_all, peek, shutdown, options, addresses, split
 * (pollen/net.h).
 *
 * Owns: the connect state machine and the stream futures that io.h does not
 * already provide (read/write/write_all are io.h's, through inline wrappers
 * in net.h).  Every future here is a thin loop over a poll helper of io.c;
 * while pending it remembers the waker it left in the socket's record
 * (`parked`, an identity) so that its drop takes back its own waker only.
 *
 * Connect: state IDLE -> (first poll) socket + connect(2) -> WAIT (the
 * stream *out is registered and we wait for writability, with the embedded
 * sleep as the time limit) -> DONE.  Writability alone proves nothing: the
 * result is SO_ERROR, and a spurious wake (SO_ERROR 0 but getpeername says
 * ENOTCONN) clears the readiness and waits again.  On an io_uring reactor
 * in completion mode the connect is an IORING_OP_CONNECT instead (state
 * RING): its completion is the result, with no connect(2), wait or
 * getsockopt.  Every failure and the drop of a pending connect close
 * *out.
 */
#include "pollen/net.h"

#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include "core/sys.h"
#include "net/socket.h"
#include "reactor/slab.h"

enum { CONNECT_IDLE = 0, CONNECT_WAIT, CONNECT_RING, CONNECT_DONE };

/* ---- connect ------------------------------------------------------------- */

/* A connect in progress has the socket in *out and may hold a waker. */
static bool connect_pending(const pn_tcp_connect_future *c)
{
    return c->state == CONNECT_WAIT || c->state == CONNECT_RING;
}

/* Done with err (0: connected): the time limit goes, and a failed
 * connect's socket is closed.  PN_READY. */
static pn_poll connect_end(pn_tcp_connect_future *c, int err)
{
    pn_future_drop(PN_FUTURE(&c->timer));
    if (err && c->out && connect_pending(c))
        pn_async_fd_close(&c->out->afd);
    c->parked = PN_WAKER_NONE;
    c->state = CONNECT_DONE;
    c->res = err;
    return PN_READY;
}

/* Start: 0 (connected at once), CONNECT_WAIT or CONNECT_RING (in
 * progress), or -errno; *out holds the socket unless -errno. */
static int connect_start(pn_tcp_connect_future *c, pn_cx *cx)
{
    int family = pn_sockaddr_family(&c->addr);
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    int fd = pn__socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    pn__sock_adopt(&c->out->afd, fd, true);
    int r;
    pn_poll p;
    if (pn__async_fd_poll_connect(&c->out->afd, cx, &c->addr.sa, c->addr.len, &r, &p)) {
        if (p == PN_PENDING)
            return CONNECT_RING;
    } else {
        /* EINTR: the connect goes on in the background, as EINPROGRESS. */
        r = pn__sys.connect(fd, &c->addr.sa, c->addr.len);
        if (r < 0 && (errno == EINPROGRESS || errno == EINTR))
            return CONNECT_WAIT;
        r = r < 0 ? -errno : 0;
    }
    if (r < 0)
        pn_async_fd_close(&c->out->afd);
    return r;
}

/* The connect is pending with cx's waker kept: remember it, and fail with
 * -ETIMEDOUT if the time limit has passed. */
static pn_poll connect_wait(pn_tcp_connect_future *c, pn_cx *cx)
{
    c->parked = *cx->waker;
    if (c->timeout_ns && pn_future_poll(PN_FUTURE(&c->timer), cx) == PN_READY) {
        pn__async_fd_forget(&c->out->afd, PN_WRITABLE, &c->parked);
        return connect_end(c, -ETIMEDOUT);
    }
    return PN_PENDING;
}

static pn_poll connect_poll(pn_future *f, pn_cx *cx)
{
    pn_tcp_connect_future *c = (pn_tcp_connect_future *)f;
    if (c->state == CONNECT_DONE)
        return PN_READY;
    if (c->state == CONNECT_IDLE) {
        if (!c->out) {
            c->state = CONNECT_DONE;
            c->res = -EINVAL;
            return PN_READY;
        }
        pn__sock_init_closed(&c->out->afd);
        if (c->res == -EINVAL) {              /* NULL address */
            c->state = CONNECT_DONE;
            return PN_READY;
        }
        int r = connect_start(c, cx);
        if (r <= 0) {
            c->state = CONNECT_DONE;
            c->res = r;
            return PN_READY;
        }
        c->state = (uint8_t)r;
        if (c->timeout_ns)
            c->timer = pn_sleep(c->timeout_ns);
    }
    if (c->state == CONNECT_RING) {
        int r;
        pn_poll p;
        (void)pn__async_fd_poll_connect(&c->out->afd, cx, NULL, 0, &r, &p);
        if (p == PN_PENDING)
            return connect_wait(c, cx);
        if (r != -EINPROGRESS && r != -EALREADY)
            return connect_end(c, r);
        /* Kernels of 2022-2023 could complete the request while the
         * handshake was still going on: wait for it as after connect(2). */
        c->state = CONNECT_WAIT;
    }
    for (;;) {
        int ready;
        if (pn_async_fd_poll_ready(&c->out->afd, cx, PN_WRITABLE, &ready) == PN_PENDING)
            return connect_wait(c, cx);
        if (ready < 0)
            return connect_end(c, ready);
        int err = pn__sock_error(c->out->afd.fd);
        if (err)
            return connect_end(c, err);
        pn_sockaddr peer;
        err = pn__sock_addr(c->out->afd.fd, &peer, true);
        if (err == -ENOTCONN) {                /* spurious: wait for a new edge */
            pn_async_fd_clear_ready(&c->out->afd, PN_WRITABLE);
            continue;
        }
        return connect_end(c, err);
    }
}

static void connect_drop(pn_future *f)
{
    pn_tcp_connect_future *c = (pn_tcp_connect_future *)f;
    if (connect_pending(c)) {
        pn__async_fd_forget(&c->out->afd, PN_WRITABLE, &c->parked);
        (void)connect_end(c, -ECANCELED);
    }
}

static const pn_future_vtable connect_vt = { connect_poll, connect_drop, "pn_tcp_connect_future" };

pn_tcp_connect_future pn_tcp_connect(pn_tcp_stream *out, const pn_sockaddr *addr,
                                     uint64_t timeout_ns)
{
    pn_tcp_connect_future c;
    memset(&c, 0, sizeof(c));
    c.base.vt = &connect_vt;
    c.out = out;
    c.timer = pn_sleep_until(0);
    c.timeout_ns = timeout_ns;
    if (addr)
        c.addr = *addr;      /* a non-IP family gives -EAFNOSUPPORT */
    else
        c.res = -EINVAL;     /* reported at the first poll */
    return c;
}

int pn_tcp_stream_init(pn_tcp_stream *s, int fd)
{
    if (!s)
        return -EINVAL;
    return pn_async_fd_init(&s->afd, fd);
}

int pn_tcp_close(pn_tcp_stream *s)
{
    if (!s)
        return -EINVAL;
    return pn_async_fd_close(&s->afd);
}

/* ---- read_exact ----------------------------------------------------------- */

static pn_poll read_exact_step(pn_future *f, pn_cx *cx)
{
    pn_tcp_read_exact_future *r = (pn_tcp_read_exact_future *)f;
    while (r->done < r->len) {
        ssize_t n;
        if (pn_async_fd_poll_read(r->afd, cx, r->buf + r->done, r->len - r->done, &n) ==
            PN_PENDING) {
            r->parked = *cx->waker;
            return PN_PENDING;
        }
        if (n < 0) {
            r->res = n;
            return PN_READY;
        }
        if (n == 0) {
            r->res = -EPIPE;
            return PN_READY;
        }
        r->done += (size_t)n;
    }
    r->res = (ssize_t)r->len;
    return PN_READY;
}

/* A READY future forgets its parked waker: its drop then touches nothing. */
static pn_poll read_exact_poll(pn_future *f, pn_cx *cx)
{
    pn_poll p = read_exact_step(f, cx);
    if (p == PN_READY)
        ((pn_tcp_read_exact_future *)f)->parked = PN_WAKER_NONE;
    return p;
}

static void read_exact_drop(pn_future *f)
{
    pn_tcp_read_exact_future *r = (pn_tcp_read_exact_future *)f;
    pn__async_fd_forget(r->afd, PN_READABLE, &r->parked);
}

static const pn_future_vtable read_exact_vt = { read_exact_poll, read_exact_drop,
                                                "pn_tcp_read_exact_future" };

pn_tcp_read_exact_future pn_tcp_read_exact(pn_tcp_stream *s, void *buf, size_t len)
{
    return (pn_tcp_read_exact_future){ .base = { &read_exact_vt }, .afd = s ? &s->afd : NULL,
                                .buf = buf, .len = len };
}

/* ---- writev_all ----------------------------------------------------------- */

#define WINDOW 64   /* iovecs per sendmsg (well under IOV_MAX) */

static pn_poll writev_step(pn_future *f, pn_cx *cx)
{
    pn_tcp_writev_future *w = (pn_tcp_writev_future *)f;
    if (w->iovcnt < 0 || (w->iovcnt > 0 && !w->iov)) {
        w->res = -EINVAL;
        return PN_READY;
    }
    for (;;) {
        while (w->idx < w->iovcnt && w->off >= w->iov[w->idx].iov_len) {
            w->idx++;
            w->off = 0;
        }
        if (w->idx >= w->iovcnt)
            break;
        struct iovec win[WINDOW];
        int n = 0;
        for (int i = w->idx; i < w->iovcnt && n < WINDOW; i++) {
            win[n] = w->iov[i];
            if (i == w->idx) {
                win[n].iov_base = (char *)win[n].iov_base + w->off;
                win[n].iov_len -= w->off;
            }
            n++;
        }
        ssize_t r;
        if (pn_async_fd_poll_writev(w->afd, cx, win, n, &r) == PN_PENDING) {
            w->parked = *cx->waker;
            return PN_PENDING;
        }
        if (r < 0) {
            w->res = r;
            return PN_READY;
        }
        if (r == 0) {     /* sendmsg of > 0 bytes never says 0: do not spin */
            w->res = -EIO;
            return PN_READY;
        }
        w->done += (size_t)r;
        /* advance idx/off by r bytes */
        size_t left = (size_t)r;
        while (left > 0) {
            size_t avail = w->iov[w->idx].iov_len - w->off;
            if (left < avail) {
                w->off += left;
                left = 0;
            } else {
                left -= avail;
                w->idx++;
                w->off = 0;
            }
        }
    }
    w->res = (ssize_t)w->done;
    return PN_READY;
}

/* A READY future forgets its parked waker: its drop then touches nothing. */
static pn_poll writev_poll(pn_future *f, pn_cx *cx)
{
    pn_poll p = writev_step(f, cx);
    if (p == PN_READY)
        ((pn_tcp_writev_future *)f)->parked = PN_WAKER_NONE;
    return p;
}

static void writev_drop(pn_future *f)
{
    pn_tcp_writev_future *w = (pn_tcp_writev_future *)f;
    pn__async_fd_forget(w->afd, PN_WRITABLE, &w->parked);
}

static const pn_future_vtable writev_vt = { writev_poll, writev_drop, "pn_tcp_writev" };

pn_tcp_writev_future pn_tcp_writev(pn_tcp_stream *s, const struct iovec *iov, int iovcnt)
{
    return (pn_tcp_writev_future){ .base = { &writev_vt }, .afd = s ? &s->afd : NULL,
                            .iov = iov, .iovcnt = iovcnt };
}

/* ---- peek ----------------------------------------------------------------- */

pn_poll pn_tcp_poll_peek(pn_tcp_stream *s, pn_cx *cx, void *buf, size_t len, ssize_t *res)
{
    return pn__async_fd_poll_peek(s ? &s->afd : NULL, cx, buf, len, res);
}

static pn_poll peek_poll(pn_future *f, pn_cx *cx)
{
    pn_tcp_peek_future *p = (pn_tcp_peek_future *)f;
    pn_poll r = pn__async_fd_poll_peek(p->afd, cx, p->buf, p->len, &p->res);
    p->parked = r == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return r;
}

static void peek_drop(pn_future *f)
{
    pn_tcp_peek_future *p = (pn_tcp_peek_future *)f;
    pn__async_fd_forget(p->afd, PN_READABLE, &p->parked);
}

static const pn_future_vtable peek_vt = { peek_poll, peek_drop, "pn_tcp_peek_future" };

pn_tcp_peek_future pn_tcp_peek(pn_tcp_stream *s, void *buf, size_t len)
{
    return (pn_tcp_peek_future){ .base = { &peek_vt }, .afd = s ? &s->afd : NULL, .buf = buf,
                          .len = len };
}

/* ---- plain calls ---------------------------------------------------------- */

static int stream_fd(const pn_tcp_stream *s)
{
    return s ? pn__sock_fd(&s->afd) : -EINVAL;
}

int pn_tcp_shutdown(pn_tcp_stream *s, int how)
{
    int fd = stream_fd(s);
    if (fd < 0)
        return fd;
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return -EINVAL;
    return shutdown(fd, how) < 0 ? -errno : 0;
}

int pn_tcp_set_nodelay(pn_tcp_stream *s, bool on)
{
    int fd = stream_fd(s);
    return fd < 0 ? fd : pn__set_sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int pn_tcp_nodelay(const pn_tcp_stream *s)
{
    int fd = stream_fd(s);
    if (fd < 0)
        return fd;
    int v = 0;
    int err = pn__get_sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, &v);
    return err ? err : (v != 0);
}

int pn_tcp_set_keepalive(pn_tcp_stream *s, bool on, unsigned idle_s, unsigned interval_s,
                         unsigned count)
{
    int fd = stream_fd(s);
    if (fd < 0)
        return fd;
    if (idle_s > INT_MAX || interval_s > INT_MAX || count > INT_MAX)
        return -EINVAL;
    int err = pn__set_sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0);
    if (err || !on)
        return err;
    if (idle_s && (err = pn__set_sockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)idle_s)))
        return err;
    if (interval_s &&
        (err = pn__set_sockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, (int)interval_s)))
        return err;
    if (count && (err = pn__set_sockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)count)))
        return err;
    return 0;
}

int pn_tcp_local_addr(const pn_tcp_stream *s, pn_sockaddr *out)
{
    int fd = stream_fd(s);
    if (fd < 0)
        return fd;
    return out ? pn__sock_addr(fd, out, false) : -EINVAL;
}

int pn_tcp_peer_addr(const pn_tcp_stream *s, pn_sockaddr *out)
{
    int fd = stream_fd(s);
    if (fd < 0)
        return fd;
    return out ? pn__sock_addr(fd, out, true) : -EINVAL;
}

void pn_tcp_split(pn_tcp_stream *s, pn_tcp_read_half *rd, pn_tcp_write_half *wr)
{
    if (rd)
        rd->stream = s;
    if (wr)
        wr->stream = s;
}
