/*
 * dgram.h - the datagram core shared by UDP and Unix datagram sockets
 * (private).
 *
 * One sendmsg(MSG_NOSIGNAL) or recvmsg(MSG_TRUNC) per operation on a
 * pn_async_fd, waited out on EAGAIN through pn_async_fd_poll_io, and the
 * send / receive futures (pn_dgram_send_future, pn_dgram_recv_future in pollen/net.h).
 * A receive reports the bytes stored as its result and the datagram's real
 * length in *datagram_len (larger when the buffer truncated it).  What
 * differs between the families is passed in: which addresses a send may
 * name (a check) and how the sender's address is completed (a from
 * function).
 */
#ifndef PN_NET_DGRAM_H
#define PN_NET_DGRAM_H

#include <sys/socket.h>
#include "pollen/io.h"
#include "pollen/net.h"

/* 0 if `to` is an address of the family, else -errno (-EINVAL for NULL). */
typedef int (*pn__dgram_check_fn)(const pn_sockaddr *to);

/* The kernel wrote the sender's address, namelen bytes, into
 * from->storage (the rest is zeroed): set from->len and whatever else the
 * family needs. */
typedef void (*pn__dgram_from_fn)(pn_sockaddr *from, socklen_t namelen);

/* The poll helpers.  afd NULL, cx NULL or a NULL buf with a length give
 * -EINVAL; then check(to) (check NULL: nothing to check).  to NULL: the
 * connected peer. */
pn_poll pn__dgram_poll_send(pn_async_fd *afd, pn_cx *cx, const void *buf, size_t len,
                            const pn_sockaddr *to, pn__dgram_check_fn check, ssize_t *res);
/* from NULL: the sender is not wanted (then from_fn may be NULL). */
pn_poll pn__dgram_poll_recv(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                            pn_sockaddr *from, pn__dgram_from_fn from_fn,
                            size_t *datagram_len, ssize_t *res);

/* The futures.  The constructors check the arguments as the helpers do
 * (the first poll reports an error); vt names the family's operation and
 * its poll and drop are the functions below (recv: a function of the
 * family that calls pn__dgram_recv_poll with its from_fn, or NULL when the
 * sender is not wanted). */
pn_dgram_send_future pn__dgram_send_new(const pn_future_vtable *vt, pn_async_fd *afd,
                                        const void *buf, size_t len, const pn_sockaddr *to,
                                        pn__dgram_check_fn check);
pn_poll pn__dgram_send_poll(pn_future *f, pn_cx *cx);
void pn__dgram_send_drop(pn_future *f);

pn_dgram_recv_future pn__dgram_recv_new(const pn_future_vtable *vt, pn_async_fd *afd, void *buf,
                                        size_t len);
pn_poll pn__dgram_recv_poll(pn_future *f, pn_cx *cx, pn__dgram_from_fn from_fn);
void pn__dgram_recv_drop(pn_future *f);

#endif
