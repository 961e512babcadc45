/*
 * accept.h - the accept path shared by TCP and Unix stream listeners
 * (private).
 *
 * One accept4 on a listening pn_async_fd, waited out on EAGAIN, and the
 * loop behind the accept futures (pn_tcp_accept_future, pn_unix_accept_future): skip the
 * errors that belong to one connection, sleep instead of spinning when the
 * process is out of descriptors or memory.  The future's state is the
 * public pn_accept_state (pollen/net.h).
 */
#ifndef PN_NET_ACCEPT_H
#define PN_NET_ACCEPT_H

#include "pollen/net.h"

/* Accept one connection on `listener`: PN_READY with *res 0, *out holding
 * the new socket (nonblocking, close-on-exec, not registered) and *peer its
 * address (peer may be NULL), or *res -errno and *out untouched; or
 * PN_PENDING.  Arguments are the caller's to check. */
pn_poll pn__accept_poll_once(pn_async_fd *listener, pn_cx *cx, pn_async_fd *out,
                             pn_sockaddr *peer, int *res);

/* State of an accept future on `listener` (NULL: the first poll gives
 * -EINVAL). */
void pn__accept_init(pn_accept_state *st, pn_async_fd *listener);

/* Poll an accept future: as pn__accept_poll_once, but errors of one
 * connection are skipped and EMFILE / ENFILE / ENOBUFS / ENOMEM sleep (10
 * ms, doubling to 1 s, back to 10 ms after a success; each sleep counted in
 * *backoffs) before the next try.  PN_READY when a connection came (*res 0)
 * or with an error retrying cannot cure. */
pn_poll pn__accept_poll(pn_accept_state *st, pn_cx *cx, pn_async_fd *out, pn_sockaddr *peer,
                        unsigned *backoffs, int *res);

/* Drop a pending accept future: cancel its sleep, take back its waker. */
void pn__accept_drop(pn_accept_state *st);

#endif
