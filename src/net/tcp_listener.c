/*
 * tcp_listener.c - pn_tcp_listener: listen, accept (poll helper and
 * future with EMFILE back-off), local address, close (pollen/net.h).
 *
 * Owns: the listening socket's life.  The accept helper and future are
 * thin wrappers over accept.c, which Unix listeners share.
 */
#include "pollen/net.h"

#include <netinet/in.h>
#include <string.h>

#include "net/accept.h"
#include "reactor/slab.h"
#include "net/socket.h"

int pn_tcp_listen(pn_tcp_listener *l, const pn_sockaddr *addr, const pn_tcp_listen_opts *opts)
{
    if (!l)
        return -EINVAL;
    pn__sock_init_closed(&l->afd);
    if (!addr)
        return -EINVAL;
    int family = pn_sockaddr_family(addr);
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    pn_tcp_listen_opts o = { 0 };
    if (opts)
        o = *opts;
    int backlog = o.backlog > 0 ? o.backlog : 1024;

    int fd = pn__socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = pn__set_sockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!err && o.reuseport)
        err = pn__set_sockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (!err && family == AF_INET6 && o.v6only)
        err = pn__set_sockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (!err && bind(fd, &addr->sa, addr->len) < 0)
        err = -errno;
    if (!err && listen(fd, backlog) < 0)
        err = -errno;
    if (err) {
        pn__close_fd(fd);
        return err;
    }
    pn__sock_adopt_listener(&l->afd, fd);
    return 0;
}

int pn_tcp_listener_local_addr(const pn_tcp_listener *l, pn_sockaddr *out)
{
    if (!l || !out)
        return -EINVAL;
    return pn__sock_addr(l->afd.fd, out, false);
}

int pn_tcp_listener_close(pn_tcp_listener *l)
{
    if (!l)
        return -EINVAL;
    return pn__async_fd_close_listener(&l->afd);
}

/* ---- accept ------------------------------------------------------------ */

pn_poll pn_tcp_poll_accept(pn_tcp_listener *l, pn_cx *cx, pn_tcp_stream *out,
                           pn_sockaddr *peer, int *res)
{
    if (!res)
        return PN_READY;
    if (!l || !out) {
        *res = -EINVAL;
        return PN_READY;
    }
    return pn__accept_poll_once(&l->afd, cx, &out->afd, peer, res);
}

static pn_poll accept_poll(pn_future *f, pn_cx *cx)
{
    pn_tcp_accept_future *a = (pn_tcp_accept_future *)f;
    return pn__accept_poll(&a->st, cx, &a->stream.afd, &a->peer, &a->backoffs, &a->res);
}

static void accept_drop(pn_future *f)
{
    pn__accept_drop(&((pn_tcp_accept_future *)f)->st);
}

static const pn_future_vtable accept_vt = { accept_poll, accept_drop, "pn_tcp_accept_future" };

pn_tcp_accept_future pn_tcp_accept(pn_tcp_listener *l)
{
    pn_tcp_accept_future a;
    memset(&a, 0, sizeof(a));
    a.base.vt = &accept_vt;
    pn__accept_init(&a.st, l ? &l->afd : NULL);
    pn__sock_init_closed(&a.stream.afd);
    return a;
}
