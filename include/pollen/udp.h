/*
 * pollen/udp.h - UDP sockets: bind, send_to / recv_from, connect + send /
 * recv, broadcast, multicast (IPv4 and IPv6).
 *
 * A pn_udp_socket wraps one pn_async_fd (pollen/io.h), so everything io.h
 * and net.h say about ownership and threads holds:
 *  - Ownership: the struct owns its socket from pn_udp_bind (or
 *    pn_udp_init) until pn_udp_close, which must be called.  It lives in
 *    the caller's memory, may be moved until its first operation (the lazy
 *    registration) and must then stay where it is.  On a pn_udp_bind error
 *    nothing is left open and the struct is closed (afd.fd == -1):
 *    pn_udp_close on it is harmless.
 *  - Threads: one task may receive and another send on the same socket at
 *    once (two waker slots); two tasks waiting in the same direction
 *    displace each other (io.h).  Close on a thread of the runtime, never
 *    while another thread is inside an operation on it.  Closing it while
 *    a task waits on it wakes that task, whose operation completes with
 *    -ECANCELED.  The option calls are plain setsockopt/getsockopt calls.
 *  - Errors: every call returns 0 (or a count, or a flag) or -errno, the
 *    futures' outputs likewise; never -EAGAIN (waited out) nor -EINTR
 *    (retried).  Common to all: -EINVAL on NULL, -EBADF on a closed
 *    socket for the plain calls, -ECANCELED for an operation on a closed
 *    socket, -ENOMEM or an epoll_ctl error when the lazy registration
 *    fails.  Addresses: an empty pn_sockaddr (len 0), one whose length is
 *    too short for its family, or a length beyond sockaddr_storage gives
 *    -EINVAL; a family other than AF_INET / AF_INET6 gives -EAFNOSUPPORT.
 *
 * Datagrams are sent whole or not at all (a send gives len or an error),
 * keep their boundaries, and, UDP being UDP, may be lost, duplicated or
 * reordered on a real network (on loopback only a full receive buffer
 * drops them).  A datagram of length 0 is a datagram, not an end of stream.
 *
 * Truncation (MSG_TRUNC): a receive buffer shorter than the datagram gets
 * its first `len` bytes and the rest of that datagram is discarded (as
 * recv(2)).  The byte count (*res, .res) is then `len`, the bytes stored,
 * and the datagram's full length is reported separately: the helpers'
 * *datagram_len, the futures' .datagram_len and .truncated.  A datagram
 * was truncated exactly when datagram_len > len.  Pass len 0 to learn the
 * length of the next datagram (it is consumed).
 *
 * ICMP errors: on a connected socket, a datagram to a port nobody listens
 * on makes a later recv (or send) fail with -ECONNREFUSED (Linux reports
 * the ICMP port-unreachable there); unconnected sockets ignore them.
 */
#ifndef POLLEN_UDP_H
#define POLLEN_UDP_H

#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_udp_socket {
    pn_async_fd afd;         /* public: the socket, for io.h calls */
} pn_udp_socket;

/* Bind options; a zeroed struct (or NULL) gives the defaults. */
typedef struct pn_udp_opts {
    bool reuseaddr;          /* SO_REUSEADDR: several sockets (e.g. multicast
                                receivers) on one port */
    bool reuseport;          /* SO_REUSEPORT: load-balance datagrams between
                                sockets of the same user on one port */
    bool v6only;             /* IPV6_V6ONLY on an IPv6 socket (default: the
                                system's, usually dual-stack) */
    bool broadcast;          /* SO_BROADCAST (see pn_udp_set_broadcast) */
} pn_udp_opts;

/*
 * Create a UDP socket of addr's family and bind it to `addr` (port 0: the
 * kernel picks one, see pn_udp_local_addr; "0.0.0.0:0" for a client that
 * only needs some local port).  Registers nothing yet.  Returns 0, or
 * -EINVAL / -EAFNOSUPPORT (the address, see above), -EADDRINUSE,
 * -EACCES (port below 1024), -EADDRNOTAVAIL (not a local address),
 * -EMFILE / -ENFILE, -ENOMEM / -ENOBUFS.
 */
PN_EXTERN int pn_udp_bind(pn_udp_socket *s, const pn_sockaddr *addr,
                          const pn_udp_opts *opts);

/* Adopt a UDP socket made elsewhere; sets O_NONBLOCK.  0, or -EBADF (then
 * the fd stays the caller's). */
PN_EXTERN int pn_udp_init(pn_udp_socket *s, int fd);

/* Close (waiting tasks complete with -ECANCELED).  Harmless on a closed
 * socket.  Returns 0 or close()'s -errno. */
PN_EXTERN int pn_udp_close(pn_udp_socket *s);
/* Close as a future (pn_close_async on the socket, see pollen/io.h):
 * .res = close's result, 0 at once on a closed socket, -EINVAL for NULL.
 * On io_uring the close goes out with the runtime's next batch of
 * submissions instead of a close(2) of its own. */
static inline PN_MUST_USE pn_close_future pn_udp_close_async(pn_udp_socket *s)
{ return pn_close_async(s ? &s->afd : NULL); }

/* Set the default peer: send/recv need no address and only that peer's
 * datagrams are received (and its ICMP errors reported).  Immediate: UDP
 * connect sends nothing.  Connecting again changes the peer.  Returns 0,
 * -EINVAL / -EAFNOSUPPORT (the address), -ENETUNREACH, -EBADF. */
PN_EXTERN int pn_udp_connect(pn_udp_socket *s, const pn_sockaddr *peer);

/* Forget the default peer (connect to AF_UNSPEC).  0, -EBADF. */
PN_EXTERN int pn_udp_disconnect(pn_udp_socket *s);

/* getsockname / getpeername.  0, -EBADF, -ENOTCONN (peer, unconnected). */
PN_EXTERN int pn_udp_local_addr(const pn_udp_socket *s, pn_sockaddr *out);
PN_EXTERN int pn_udp_peer_addr(const pn_udp_socket *s, pn_sockaddr *out);

/* ---- options ------------------------------------------------------------ */

/* SO_BROADCAST: without it, sending to a broadcast address (255.255.255.255,
 * a subnet's broadcast such as 127.255.255.255) fails with -EACCES.  A
 * receiver gets broadcasts when bound to the wildcard address (0.0.0.0)
 * and the port.  IPv4 only (IPv6 has multicast instead).  0 or -errno. */
PN_EXTERN int pn_udp_set_broadcast(pn_udp_socket *s, bool on);
/* 1 or 0, or -errno. */
PN_EXTERN int pn_udp_broadcast(const pn_udp_socket *s);

/* IP_TTL / IPV6_UNICAST_HOPS of unicast datagrams: 1-255, or -1 for the
 * system default.  -EINVAL out of range. */
PN_EXTERN int pn_udp_set_ttl(pn_udp_socket *s, int ttl);

/*
 * Join / leave a multicast group (`group`'s port is ignored) on the
 * interface `ifindex` (if_nametoindex("eth0"); 0: the kernel picks one by
 * route, which fails with -ENODEV when no route covers the group).  An
 * IPv4 group uses IP_ADD/DROP_MEMBERSHIP (struct ip_mreqn), an IPv6 group
 * IPV6_JOIN/LEAVE_GROUP; the socket must be bound to the group's port
 * (and the wildcard address or the group) to receive.  Note Linux's
 * IP_MULTICAST_ALL (on by default): a wildcard-bound IPv4 socket also
 * receives the groups other sockets of the host joined on its port; set
 * it to 0 with setsockopt(afd.fd, ...) to receive only its own.  Returns 0, or
 * -EINVAL (not a multicast address, NULL), -EAFNOSUPPORT (not an IP
 * address, or an IPv6 group on an IPv4 socket), -EADDRINUSE (joined
 * already), -EADDRNOTAVAIL (leave of a group not joined), -ENODEV (no
 * such interface), -ENOBUFS (too many memberships: net.ipv4.igmp_max_memberships).
 */
PN_EXTERN int pn_udp_join_multicast(pn_udp_socket *s, const pn_sockaddr *group,
                                    unsigned ifindex);
PN_EXTERN int pn_udp_leave_multicast(pn_udp_socket *s, const pn_sockaddr *group,
                                     unsigned ifindex);

/* The interface outgoing multicast leaves by (IP_MULTICAST_IF with an
 * ip_mreqn / IPV6_MULTICAST_IF; 0: by route), whether this host's own
 * members receive it (IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP, default on),
 * and its hop limit (IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS, 0-255, default
 * 1: the local network).  The socket's family picks the IPv4 or IPv6
 * option.  0, -EINVAL (out of range), -ENODEV, -EBADF. */
PN_EXTERN int pn_udp_set_multicast_if(pn_udp_socket *s, unsigned ifindex);
PN_EXTERN int pn_udp_set_multicast_loop(pn_udp_socket *s, bool on);
PN_EXTERN int pn_udp_set_multicast_ttl(pn_udp_socket *s, int ttl);

/* ---- poll helpers ------------------------------------------------------
 *
 * *res: bytes sent (len: a datagram goes whole) or stored (see
 * "Truncation"), or -errno.  Send errors: -EMSGSIZE (larger than 65507
 * bytes for IPv4, 65527 for IPv6, or the path MTU with DF set), -EACCES
 * (a broadcast address without SO_BROADCAST), -ENETUNREACH /
 * -EHOSTUNREACH (no route), -EDESTADDRREQ (send without a peer),
 * -ECONNREFUSED (connected socket, see "ICMP errors"), and the address
 * errors above.  send_to on a connected socket sends to `to` (Linux lets
 * the address override the peer).
 * Receive: `from` (may be NULL) gets the sender, `datagram_len` (may be
 * NULL) the datagram's full length; -ECONNREFUSED as above.
 */
PN_EXTERN pn_poll pn_udp_poll_send_to(pn_udp_socket *s, pn_cx *cx, const void *buf,
                                      size_t len, const pn_sockaddr *to, ssize_t *res);
PN_EXTERN pn_poll pn_udp_poll_send(pn_udp_socket *s, pn_cx *cx, const void *buf,
                                   size_t len, ssize_t *res);
PN_EXTERN pn_poll pn_udp_poll_recv_from(pn_udp_socket *s, pn_cx *cx, void *buf,
                                        size_t len, pn_sockaddr *from,
                                        size_t *datagram_len, ssize_t *res);
PN_EXTERN pn_poll pn_udp_poll_recv(pn_udp_socket *s, pn_cx *cx, void *buf, size_t len,
                                   size_t *datagram_len, ssize_t *res);

/* ---- futures -------------------------------------------------------------- */

/* Send: output .res as the helper.  The buffer is borrowed until the
 * future is ready or dropped; the address is copied.  Dropping it pending
 * sends nothing.  (The layout is pn_dgram_send_future, pollen/net.h.) */
typedef pn_dgram_send_future pn_udp_send_future;

/* Receive: outputs .res (bytes stored or -errno), .from (the sender;
 * recv_from only), .datagram_len and .truncated (see "Truncation").
 * Dropping it pending receives nothing (no datagram is consumed).  (The
 * layout is pn_dgram_recv_future, pollen/net.h.) */
typedef pn_dgram_recv_future pn_udp_recv_future;

/* `to` NULL gives .res -EINVAL at the first poll. */
PN_EXTERN PN_MUST_USE pn_udp_send_future pn_udp_send_to(pn_udp_socket *s, const void *buf,
                                                        size_t len, const pn_sockaddr *to);
/* To the connected peer. */
PN_EXTERN PN_MUST_USE pn_udp_send_future pn_udp_send(pn_udp_socket *s, const void *buf, size_t len);
PN_EXTERN PN_MUST_USE pn_udp_recv_future pn_udp_recv_from(pn_udp_socket *s, void *buf, size_t len);
/* From the connected peer (or anyone, unconnected), without the address. */
PN_EXTERN PN_MUST_USE pn_udp_recv_future pn_udp_recv(pn_udp_socket *s, void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
