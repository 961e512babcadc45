/*
 * tcp_listener.c - pn_tcp_listener: listen, accept (poll helper and
 * future with EMFILE back-off), local address, close (pollen/net.h).
 *
 * Owns: the listening socket's life and the accept path.  accept4 goes
 * through the pn__sys table (tests inject EMFILE there) with the peer
 * address and SOCK_NONBLOCK|SOCK_CLOEXEC, inside pn_async_fd_poll_io, so
 * the readiness protocol of io.c (try, EAGAIN -> clear -> wait) applies.
 *
 * The accept future is a stream: it may be awaited again after PN_READY.
 * Its back-off sleep is embedded (no allocation): 10 ms doubling to 1 s
 * while the process is out of descriptors or memory, reset to 10 ms after
 * an accept succeeds.  While sleeping it holds no waker in the listener's
 * record, only its timer entry; drop cancels whichever it holds.
 */
#include "pollen/net.h"

#include <netinet/in.h>
#include <string.h>

#include "core/sys.h"
#include "net/socket.h"
#include "reactor/slab.h"

#define BACKOFF_MIN_NS PN_MS(10)
#define BACKOFF_MAX_NS PN_SEC(1)

int pn_tcp_listen(pn_tcp_listener *l, const pn_sockaddr *addr, const pn_tcp_listen_opts *opts)
{
    if (!l)
        return -EINVAL;
    l->afd = (pn_async_fd){ .fd = -1, .closed = true };
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
    pn__sock_adopt(&l->afd, fd, true);
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
    return pn_async_fd_close(&l->afd);
}

/* ---- accept ------------------------------------------------------------ */

struct accept_arg {
    pn_sockaddr *peer;
};

static ssize_t op_accept(int fd, void *p)
{
    struct accept_arg *a = p;
    a->peer->len = sizeof(a->peer->storage);
    int n = pn__sys.accept4(fd, &a->peer->sa, &a->peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return n < 0 ? -errno : n;
}

pn_poll pn_tcp_poll_accept(pn_tcp_listener *l, pn_cx *cx, pn_tcp_stream *out,
                           pn_sockaddr *peer, int *res)
{
    if (!res)
        return PN_READY;
    if (!l || !out) {
        *res = -EINVAL;
        return PN_READY;
    }
    pn_sockaddr scratch;
    struct accept_arg a = { peer ? peer : &scratch };
    ssize_t n = 0;
    if (pn_async_fd_poll_io(&l->afd, cx, PN_READABLE, op_accept, &a, &n) == PN_PENDING)
        return PN_PENDING;
    if (n < 0) {
        *res = (int)n;
        return PN_READY;
    }
    pn__sock_adopt(&out->afd, (int)n, true);
    *res = 0;
    return PN_READY;
}

/* accept(2) errors that belong to one connection: skip it, accept the
 * next (accept(2), "Error handling"). */
static bool per_connection_error(int e)
{
    switch (-e) {
    case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP:
    case ENETUNREACH: case EPERM:   /* EPERM: a firewall rule refused it */
        return true;
    default:
        return false;
    }
}

static bool resource_error(int e)
{
    return e == -EMFILE || e == -ENFILE || e == -ENOBUFS || e == -ENOMEM;
}

static pn_poll accept_poll(pn_future *f, pn_cx *cx)
{
    pn_tcp_accept *a = (pn_tcp_accept *)f;
    for (;;) {
        if (a->sleeping) {
            if (pn_future_poll(PN_FUTURE(&a->backoff), cx) == PN_PENDING)
                return PN_PENDING;
            a->sleeping = false;
        }
        int r;
        if (pn_tcp_poll_accept(a->l, cx, &a->stream, &a->peer, &r) == PN_PENDING) {
            a->parked = *cx->waker;
            return PN_PENDING;
        }
        if (r == 0) {
            a->backoff_ns = BACKOFF_MIN_NS;
            a->res = 0;
            return PN_READY;
        }
        if (per_connection_error(r))
            continue;
        if (resource_error(r)) {
            a->backoff = pn_sleep_for(a->backoff_ns);
            a->sleeping = true;
            a->backoffs++;
            a->backoff_ns = a->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS
                                                                : a->backoff_ns * 2;
            continue;
        }
        a->res = r;
        return PN_READY;
    }
}

static void accept_drop(pn_future *f)
{
    pn_tcp_accept *a = (pn_tcp_accept *)f;
    if (a->sleeping) {
        pn_future_drop(PN_FUTURE(&a->backoff));
        a->sleeping = false;
    }
    if (a->l)
        pn__async_fd_forget(&a->l->afd, PN_READABLE, &a->parked);
    a->parked = PN_WAKER_NONE;
}

static const pn_future_vtable accept_vt = { accept_poll, accept_drop, "pn_tcp_accept" };

pn_tcp_accept pn_tcp_accept_on(pn_tcp_listener *l)
{
    pn_tcp_accept a;
    memset(&a, 0, sizeof(a));
    a.base.vt = &accept_vt;
    a.l = l;
    a.backoff_ns = BACKOFF_MIN_NS;
    a.stream.afd = (pn_async_fd){ .fd = -1, .closed = true };
    return a;
}
