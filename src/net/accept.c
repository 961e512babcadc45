/*
 * accept.c - the accept path of TCP and Unix stream listeners (see
 * accept.h).
 *
 * accept4 goes through the pn__sys table (tests inject EMFILE and
 * ECONNABORTED there) with SOCK_NONBLOCK|SOCK_CLOEXEC, in
 * pn__async_fd_poll_accept_addr: the readiness protocol of io.c (try,
 * EAGAIN -> clear -> wait), or on io_uring in completion mode the
 * connections the listener's window of IORING_OP_ACCEPT requests brought,
 * accept4, and on EAGAIN that window filled (uio.c).
 *
 * The accept futures are streams: they may be awaited again after
 * PN_READY.  Their back-off sleep is embedded (no allocation): 10 ms
 * doubling to 1 s while the process is out of descriptors or memory, reset
 * to 10 ms after an accept succeeds.  While sleeping a future holds no
 * waker in the listener's record, only its timer entry; drop cancels
 * whichever it holds.
 */
#include "net/accept.h"

#include <string.h>

#include "core/sys.h"
#include "net/socket.h"
#include "reactor/slab.h"

#define BACKOFF_MIN_NS PN_MS(10)
#define BACKOFF_MAX_NS PN_SEC(1)

pn_poll pn__accept_poll_once(pn_async_fd *listener, pn_cx *cx, pn_async_fd *out,
                             pn_sockaddr *peer, int *res)
{
    ssize_t n = 0;
    if (peer)
        peer->len = sizeof(peer->storage);
    if (pn__async_fd_poll_accept_addr(listener, cx, peer ? &peer->sa : NULL,
                                      peer ? &peer->len : NULL, &n) == PN_PENDING)
        return PN_PENDING;
    if (n >= 0)
        pn__sock_adopt(out, (int)n, true);
    *res = n < 0 ? (int)n : 0;
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

void pn__accept_init(pn_accept_state *st, pn_async_fd *listener)
{
    memset(st, 0, sizeof(*st));
    st->listener = listener;
    st->backoff_ns = BACKOFF_MIN_NS;
}

pn_poll pn__accept_poll(pn_accept_state *st, pn_cx *cx, pn_async_fd *out, pn_sockaddr *peer,
                        unsigned *backoffs, int *res)
{
    for (;;) {
        if (st->sleeping) {
            if (pn_future_poll(PN_FUTURE(&st->backoff), cx) == PN_PENDING)
                return PN_PENDING;
            st->sleeping = false;
        }
        int r = -EINVAL;
        if (st->listener &&
            pn__accept_poll_once(st->listener, cx, out, peer, &r) == PN_PENDING) {
            st->parked = *cx->waker;
            return PN_PENDING;
        }
        if (r == 0)
            st->backoff_ns = BACKOFF_MIN_NS;
        else if (per_connection_error(r))
            continue;
        else if (resource_error(r)) {
            st->backoff = pn_sleep(st->backoff_ns);
            st->sleeping = true;
            (*backoffs)++;
            st->backoff_ns = st->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS
                                                                 : st->backoff_ns * 2;
            continue;
        }
        st->parked = PN_WAKER_NONE;     /* READY: nothing to forget */
        *res = r;
        return PN_READY;
    }
}

void pn__accept_drop(pn_accept_state *st)
{
    if (st->sleeping) {
        pn_future_drop(PN_FUTURE(&st->backoff));
        st->sleeping = false;
    }
    pn__async_fd_forget(st->listener, PN_READABLE, &st->parked);
    st->parked = PN_WAKER_NONE;
}
