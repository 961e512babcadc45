/*
 * dgram.h - the datagram core shared by UDP and Unix datagram sockets
 * (private).
 *
 * One sendmsg(MSG_NOSIGNAL) or recvmsg(MSG_TRUNC) per operation on a
 * pn_async_fd, waited out on EAGAIN through pn_async_fd_poll_io.  A receive
 * reports the bytes stored as its result and the datagram's real length in
 * *datagram_len (larger when the buffer truncated it); the sender's address
 * is converted by the family's own function.
 */
#ifndef PN_NET_DGRAM_H
#define PN_NET_DGRAM_H

#include <sys/socket.h>
#include "pollen/io.h"
#include "pollen/net.h"

/* Turn the kernel's address (name, namelen) into *out. */
typedef void (*pn__dgram_addr_fn)(pn_sockaddr *out, const struct sockaddr_storage *name,
                                  socklen_t namelen);

/* to NULL: the connected peer.  Arguments are the caller's to check. */
pn_poll pn__dgram_poll_send(pn_async_fd *afd, pn_cx *cx, const void *buf, size_t len,
                            const pn_sockaddr *to, ssize_t *res);
/* from NULL: the sender is not wanted (then conv may be NULL). */
pn_poll pn__dgram_poll_recv(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                            pn_sockaddr *from, pn__dgram_addr_fn conv,
                            size_t *datagram_len, ssize_t *res);

#endif
