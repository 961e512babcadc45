/*
 * socket.h - private socket helpers shared by src/net/ (TCP, UDP, Unix).
 *
 * Owns: creating sockets the way every pollen socket is created
 * (nonblocking + close-on-exec, in one syscall), the small getsockopt /
 * setsockopt wrappers, and the checks and steps the socket files share.
 * Every helper returns 0 / a value >= 0, or -errno; none of them aborts.
 * Not part of the public API (nothing under src/ is included by users);
 * the definitions are in socket.c.
 */
#ifndef PN_NET_SOCKET_H
#define PN_NET_SOCKET_H

#include <stdbool.h>
#include <sys/socket.h>
#include "pollen/io.h"
#include "pollen/net.h"

/* socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto).  Returns the
 * fd or -errno (-EAFNOSUPPORT, -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM...). */
int pn__socket(int domain, int type, int proto);

/* setsockopt(fd, level, opt, &v, sizeof(int)).  Returns 0 or -errno. */
int pn__set_sockopt_int(int fd, int level, int opt, int v);

/* getsockopt of an int option.  Returns 0 and stores it in *v, or -errno. */
int pn__get_sockopt_int(int fd, int level, int opt, int *v);

/* The pending socket error (getsockopt SO_ERROR, which clears it) as -errno,
 * 0 if none, or getsockopt's own -errno. */
int pn__sock_error(int fd);

/* Close a raw fd through the pn__sys table, keeping errno intact. */
void pn__close_fd(int fd);

/* connect(2) through the pn__sys table, retried on EINTR: 0 or -errno.
 * For sockets whose connect completes at once (UDP, Unix); an interrupted
 * TCP connect goes on in the background instead (see tcp_stream.c). */
int pn__sock_connect(int fd, const struct sockaddr *sa, socklen_t len);

/* The fd of an open *afd, or -EBADF when it is closed. */
int pn__sock_fd(const pn_async_fd *afd);

/* Make *afd closed and owning nothing (fd -1): closing it is a no-op.
 * The state every socket struct is in before its constructor succeeds. */
void pn__sock_init_closed(pn_async_fd *afd);

/* Wrap a socket fd that is already nonblocking and close-on-exec (from
 * pn__socket, socketpair or accept4 with SOCK_NONBLOCK) in *afd without the
 * fstat, fcntl and getsockopt of pn_async_fd_init: the state
 * pn_async_fd_init would leave for a socket of that kind (stream: TCP or
 * Unix stream; else datagram).  Cannot fail.  pn__sock_adopt_listener: a
 * stream socket listen(2) was called on (afd->is_listener). */
void pn__sock_adopt(pn_async_fd *afd, int fd, bool stream);
void pn__sock_adopt_listener(pn_async_fd *afd, int fd);

/* getsockname (peer false) or getpeername (peer true) into *out.
 * 0 or -errno (-EBADF when fd < 0). */
int pn__sock_addr(int fd, pn_sockaddr *out, bool peer);

#endif
