/*
 * dgram.c - the datagram core shared by UDP and Unix datagram sockets (see
 * dgram.h): the operations behind the poll helpers, and the send / receive
 * futures.
 *
 * A receive has recvmsg write the sender's address straight into the
 * caller's pn_sockaddr; the family's from function only completes it.  The
 * futures check their arguments when they are made, remember the waker
 * they left in the registration (`parked`) and their drop takes back only
 * that one (as io_futures.c).
 */
#include <string.h>
#include "dgram.h"
#include "core/sys.h"
#include "reactor/slab.h"

struct dg_send {
    const void *buf;
    size_t len;
    const pn_sockaddr *to;
};

struct dg_recv {
    void *buf;
    size_t len;
    pn_sockaddr *from;
    pn__dgram_from_fn from_fn;
    size_t full;
};

static ssize_t op_send(int fd, void *p)
{
    struct dg_send *a = p;
    struct iovec iov = { (void *)a->buf, a->len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (a->to) {
        m.msg_name = (void *)&a->to->storage;
        m.msg_namelen = a->to->len;
    }
    ssize_t n = pn__sys.sendmsg(fd, &m, MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

static ssize_t op_recv(int fd, void *p)
{
    struct dg_recv *a = p;
    struct iovec iov = { a->buf, a->len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (a->from) {
        m.msg_name = &a->from->storage;
        m.msg_namelen = sizeof(a->from->storage);
    }
    /* MSG_TRUNC: the return value is the datagram's real length. */
    ssize_t n = pn__sys.recvmsg(fd, &m, MSG_TRUNC);
    if (n < 0)
        return -errno;
    if (a->from) {
        socklen_t got = m.msg_namelen < sizeof(a->from->storage) ? m.msg_namelen
                                                                : sizeof(a->from->storage);
        memset((char *)&a->from->storage + got, 0, sizeof(a->from->storage) - got);
        a->from_fn(a->from, got);
    }
    a->full = (size_t)n;
    return (size_t)n > a->len ? (ssize_t)a->len : n;
}

/* The arguments' check, one for both directions (a receive has no
 * address to check), the poll helpers and the futures' constructors. */
static int check_args(const pn_async_fd *afd, const void *buf, size_t len,
                     const pn_sockaddr *to, pn__dgram_check_fn check)
{
    return !afd || (!buf && len) ? -EINVAL : check ? check(to) : 0;
}

pn_poll pn__dgram_poll_send(pn_async_fd *afd, pn_cx *cx, const void *buf, size_t len,
                            const pn_sockaddr *to, pn__dgram_check_fn check, ssize_t *res)
{
    if (!res)
        return PN_READY;
    int err = cx ? check_args(afd, buf, len, to, check) : -EINVAL;
    if (err) {
        *res = err;
        return PN_READY;
    }
    struct dg_send a = { buf, len, to };
    return pn_async_fd_poll_io(afd, cx, PN_WRITABLE, op_send, &a, res);
}

pn_poll pn__dgram_poll_recv(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                            pn_sockaddr *from, pn__dgram_from_fn from_fn,
                            size_t *datagram_len, ssize_t *res)
{
    if (!res)
        return PN_READY;
    int err = cx ? check_args(afd, buf, len, NULL, NULL) : -EINVAL;
    if (err) {
        *res = err;
        return PN_READY;
    }
    struct dg_recv a = { buf, len, from, from_fn, 0 };
    pn_poll p = pn_async_fd_poll_io(afd, cx, PN_READABLE, op_recv, &a, res);
    if (p == PN_READY && datagram_len)
        *datagram_len = *res >= 0 ? a.full : 0;
    return p;
}

/* ---- futures -------------------------------------------------------------- */

pn_dgram_send_future pn__dgram_send_new(const pn_future_vtable *vt, pn_async_fd *afd,
                                        const void *buf, size_t len, const pn_sockaddr *to,
                                        pn__dgram_check_fn check)
{
    pn_dgram_send_future s;
    memset(&s, 0, sizeof(s));
    s.base.vt = vt;
    s.buf = buf;
    s.len = len;
    s.res = check_args(afd, buf, len, to, check);
    if (s.res == 0) {
        s.afd = afd;
        if (to)
            s.to = *to;
    }
    return s;
}

pn_poll pn__dgram_send_poll(pn_future *f, pn_cx *cx)
{
    pn_dgram_send_future *s = (pn_dgram_send_future *)f;
    if (!s->afd)
        return PN_READY;
    pn_poll p = pn__dgram_poll_send(s->afd, cx, s->buf, s->len, s->to.len ? &s->to : NULL,
                                    NULL, &s->res);
    s->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

void pn__dgram_send_drop(pn_future *f)
{
    pn_dgram_send_future *s = (pn_dgram_send_future *)f;
    pn__async_fd_forget(s->afd, PN_WRITABLE, &s->parked);
}

pn_dgram_recv_future pn__dgram_recv_new(const pn_future_vtable *vt, pn_async_fd *afd, void *buf,
                                        size_t len)
{
    pn_dgram_recv_future r;
    memset(&r, 0, sizeof(r));
    r.base.vt = vt;
    r.buf = buf;
    r.len = len;
    r.res = check_args(afd, buf, len, NULL, NULL);
    if (r.res == 0)
        r.afd = afd;
    return r;
}

pn_poll pn__dgram_recv_poll(pn_future *f, pn_cx *cx, pn__dgram_from_fn from_fn)
{
    pn_dgram_recv_future *r = (pn_dgram_recv_future *)f;
    if (!r->afd)
        return PN_READY;
    pn_poll p = pn__dgram_poll_recv(r->afd, cx, r->buf, r->len, from_fn ? &r->from : NULL,
                                    from_fn, &r->datagram_len, &r->res);
    if (p == PN_PENDING) {
        r->parked = *cx->waker;
        return p;
    }
    r->parked = PN_WAKER_NONE;      /* READY: nothing to forget */
    r->truncated = r->res >= 0 && r->datagram_len > r->len;
    return p;
}

void pn__dgram_recv_drop(pn_future *f)
{
    pn_dgram_recv_future *r = (pn_dgram_recv_future *)f;
    pn__async_fd_forget(r->afd, PN_READABLE, &r->parked);
}
