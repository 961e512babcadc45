/*
 * dgram.c - the datagram core shared by UDP and Unix datagram sockets (see
 * dgram.h).
 */
#include <string.h>
#include "dgram.h"
#include "core/sys.h"

struct dg_send {
    const void *buf;
    size_t len;
    const pn_sockaddr *to;
};

struct dg_recv {
    void *buf;
    size_t len;
    pn_sockaddr *from;
    pn__dgram_addr_fn conv;
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
    struct sockaddr_storage ss;
    struct iovec iov = { a->buf, a->len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (a->from) {
        memset(&ss, 0, sizeof(ss));
        m.msg_name = &ss;
        m.msg_namelen = sizeof(ss);
    }
    /* MSG_TRUNC: the return value is the datagram's real length. */
    ssize_t n = pn__sys.recvmsg(fd, &m, MSG_TRUNC);
    if (n < 0)
        return -errno;
    if (a->from)
        a->conv(a->from, &ss, m.msg_namelen);
    a->full = (size_t)n;
    return (size_t)n > a->len ? (ssize_t)a->len : n;
}

pn_poll pn__dgram_poll_send(pn_async_fd *afd, pn_cx *cx, const void *buf, size_t len,
                            const pn_sockaddr *to, ssize_t *res)
{
    struct dg_send a = { buf, len, to };
    return pn_async_fd_poll_io(afd, cx, PN_WRITABLE, op_send, &a, res);
}

pn_poll pn__dgram_poll_recv(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                            pn_sockaddr *from, pn__dgram_addr_fn conv,
                            size_t *datagram_len, ssize_t *res)
{
    struct dg_recv a = { buf, len, conv ? from : NULL, conv, 0 };
    pn_poll p = pn_async_fd_poll_io(afd, cx, PN_READABLE, op_recv, &a, res);
    if (p == PN_READY && datagram_len)
        *datagram_len = *res >= 0 ? a.full : 0;
    return p;
}
