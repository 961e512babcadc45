/*
 * pollen/unix.h - Unix domain sockets: stream listener and stream,
 * datagram sockets, filesystem and abstract names.
 *
 * Names.  Every call that takes a name takes a C string:
 *   "/run/app.sock", "rel/app.sock"  a filesystem path (the socket file);
 *   "@app"                           a Linux abstract name: sun_path[0] is 0
 *                                    and the bytes "app" follow, without a
 *                                    NUL; the address length is exactly
 *                                    offsetof(sun_path) + 1 + strlen("app"),
 *                                    so that every program naming "@app"
 *                                    this way meets the same socket.
 * Abstract names live in the network namespace, need no file and vanish
 * with the last socket bound to them.  Errors of a name: -EINVAL (NULL,
 * "", or "@" alone), -ENAMETOOLONG (a path, or an abstract name without
 * its '@', of 108 bytes or more: sun_path holds 108 bytes, a path with its
 * NUL, an abstract name after its leading 0).  Addresses are pn_sockaddr
 * values (pollen/net.h; .un is the sockaddr_un): pn_sockaddr_format writes
 * them back as the path, "@name", or "" for an unnamed socket (the peer of
 * a socketpair, an unbound sender).
 *
 * Types.  Each socket type embeds a pn_async_fd named `afd` as its first
 * member: read and write a pn_unix_stream with the io.h helpers and futures
 * (pn_async_fd_poll_read(&s.afd, ...), pn_write_all(&s.afd, ...)).  As
 * with pollen/net.h: the struct lives in the caller's memory, may be
 * copied or moved until its first operation (the lazy registration) and
 * must then stay where it is; it owns its socket from a successful
 * constructor until its close function, which must be called.  On a
 * constructor error nothing is left open (no fd, no socket file) and the
 * struct is closed (afd.fd == -1): its close function is a harmless no-op.
 *
 * Threads.  As pn_async_fd: one task may wait to read (recv, accept) and
 * one to write (send) on a socket at once, on any thread of the runtime;
 * close on a thread of the runtime, never while another thread is inside
 * an operation on it.  Closing a socket that another task waits on wakes
 * that task, whose operation completes with -ECANCELED.  The plain calls
 * (addresses, connect of a datagram socket, shutdown) are thread-safe in
 * the sense of the syscall they make.
 *
 * Errors.  Every function returns 0 (or a count) or a negative errno; the
 * futures' outputs follow the same rule.  Listed per call below; besides
 * those, socket creation may give -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM, and
 * every I/O operation may give the pn_async_fd errors (-ECANCELED once the
 * socket was closed, -ENOMEM or an epoll_ctl error from the lazy
 * registration).  Never -EAGAIN (waited out) nor -EINTR (retried).  No call
 * raises SIGPIPE: a write to a stream whose peer is gone gives -EPIPE.
 */
#ifndef POLLEN_UNIX_H
#define POLLEN_UNIX_H

#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Names and addresses ---------------------------------------------- */

/* The pn_sockaddr (AF_UNIX) of `name` (see "Names").  Returns 0, -EINVAL,
 * -ENAMETOOLONG; *out is unchanged on error.  Pure: no syscall. */
PN_EXTERN int pn_sockaddr_unix(pn_sockaddr *out, const char *name);

/* getsockname / getpeername of any socket of this header (pass &s.afd).
 * An unnamed socket gives family AF_UNIX with len sizeof(sa_family_t).
 * Returns 0, -EINVAL (NULL), -EBADF (closed), -ENOTCONN (peer of an
 * unconnected socket). */
PN_EXTERN int pn_unix_local_addr(const pn_async_fd *afd, pn_sockaddr *out);
PN_EXTERN int pn_unix_peer_addr(const pn_async_fd *afd, pn_sockaddr *out);

/*
 * Options of pn_unix_listen and pn_unix_dgram_bind; a zeroed struct (or
 * NULL) gives the defaults.
 *
 * unlink_stale: when the path is taken (bind says EADDRINUSE) by a socket
 * file that nobody serves any more (a nonblocking connect to it is refused:
 * its server died without unlinking it), unlink it and bind again, once.
 * A path that is live (the probe connects, or is queued), that is not a
 * socket (a regular file, a directory) or that was replaced during the
 * probe is left alone and the bind fails with -EADDRINUSE.  The probe never
 * waits; a live stream server sees one connection that closes at once.
 * Ignored for abstract names (the kernel frees them with their last
 * socket).  Between the probe and the unlink another process could bind
 * the path: servers started at the same moment on one path must agree by
 * other means (a lock file).
 *
 * unlink_on_close: the close function unlinks the path that was bound
 * (filesystem names only), before closing the socket, whether or not the
 * path still names this socket.
 */
typedef struct pn_unix_opts {
    int backlog;             /* listen(2) backlog; <= 0 means 1024 (capped by
                                net.core.somaxconn); Linux queues backlog + 1
                                connections.  Ignored by datagram sockets. */
    bool unlink_stale;
    bool unlink_on_close;
} pn_unix_opts;

/* ---- Stream: listener ------------------------------------------------- */

typedef struct pn_unix_listener {
    pn_async_fd afd;         /* public: the socket, for io.h calls */
    pn_sockaddr addr;        /* read-only: the name bound */
    bool unlink_on_close;    /* private */
} pn_unix_listener;

typedef struct pn_unix_stream {
    pn_async_fd afd;         /* public: read and write it with io.h */
} pn_unix_stream;

/*
 * Create a SOCK_STREAM socket, bind it to `name` and listen.  Registers
 * nothing (the first accept does).  Returns 0, or -EINVAL / -ENAMETOOLONG
 * (the name, NULL l), -EADDRINUSE (the name is taken; see unlink_stale),
 * -EACCES, -ENOENT (a directory of the path is missing), -ENOTDIR, -EROFS,
 * or a socket() error.
 */
PN_EXTERN int pn_unix_listen(pn_unix_listener *l, const char *name,
                             const pn_unix_opts *opts);

/* Close (a pending accept completes with -ECANCELED) and, with
 * unlink_on_close, unlink the path first.  Harmless on a closed listener.
 * Returns 0 or close()'s -errno (the unlink's errors are ignored). */
PN_EXTERN int pn_unix_listener_close(pn_unix_listener *l);

/*
 * Accept one connection.  PN_READY with *res = 0 and *out initialised (a
 * new stream, nonblocking, close-on-exec, not registered yet: movable
 * until its first operation; the caller owns it), or *res = -errno and
 * *out untouched: -EMFILE / -ENFILE / -ENOBUFS / -ENOMEM (returned, never
 * spun on: back off, e.g. with pn_sleep, and accept again),
 * -ECONNABORTED and the other errors of one connection (accept again),
 * -ECANCELED (listener closed), -EINVAL (NULL, or not listening).
 */
PN_EXTERN pn_poll pn_unix_poll_accept(pn_unix_listener *l, pn_cx *cx,
                                      pn_unix_stream *out, int *res);

/* The accept future, as pn_tcp_accept_future (pollen/net.h): outputs .res as
 * above, .stream when .res == 0, except that it handles two kinds of error
 * itself.  Errors that belong to one connection (ECONNABORTED, EPROTO, ...)
 * are skipped: it accepts the next.  On -EMFILE / -ENFILE / -ENOBUFS /
 * -ENOMEM it sleeps (10 ms, doubling up to 1 s, back to 10 ms after the
 * next success) and accepts again, so a server keeps serving the
 * connections it has and never spins; .backoffs counts those sleeps.  It
 * may be awaited again after PN_READY for the next connection (take
 * .stream first).  Dropping it releases its waker and its back-off timer;
 * it never owns the listener, which must outlive it. */
typedef struct pn_unix_accept_future {
    pn_future base;
    pn_accept_state st;      /* private */
    unsigned backoffs;       /* read-only: sleeps taken so far */
    pn_unix_stream stream;   /* output, when res == 0 */
    int res;                 /* output */
} pn_unix_accept_future;

PN_EXTERN PN_MUST_USE pn_unix_accept_future pn_unix_accept(pn_unix_listener *l);

/* ---- Stream: connection ------------------------------------------------ */

/*
 * Connect to the stream listener at `name`, initialising the caller's
 * stream *out in place (it must not move from the first poll on, and is
 * the caller's to close once .res is 0).  `name` is copied now.  Lazy: the
 * socket is made at the first poll.  Output .res: 0, or -EINVAL /
 * -ENAMETOOLONG (the name, NULL out), -ENOENT (no such path),
 * -ECONNREFUSED (nobody listens there), -EACCES, -ENOTDIR, -EPROTOTYPE
 * (the name is a datagram socket), or a socket() error; on error *out is
 * closed and nothing is left open.
 *
 * A listener whose backlog is full does not fail the connect: Linux
 * answers EAGAIN and has no readiness event for "room in the backlog", so
 * the future sleeps 1 ms, doubling up to 64 ms, and tries again until it
 * connects or the listener goes away (-ECONNREFUSED).  Bound the wait with
 * pn_timeout.  Dropping the future before it is ready closes *out.
 */
typedef struct pn_unix_connect_future {
    pn_future base;
    /* private */
    pn_unix_stream *out;
    pn_sockaddr addr;
    int err;                 /* the name's error, reported by the first poll */
    uint8_t state;
    int fd;
    uint64_t backoff_ns;
    pn_sleep_future nap;
    /* output */
    int res;
} pn_unix_connect_future;

PN_EXTERN PN_MUST_USE pn_unix_connect_future pn_unix_connect(pn_unix_stream *out, const char *name);

/* A connected pair (socketpair(AF_UNIX, SOCK_STREAM)), both nonblocking and
 * close-on-exec, both the caller's.  Returns 0, -EINVAL, -EMFILE, -ENFILE. */
PN_EXTERN int pn_unix_stream_pair(pn_unix_stream *a, pn_unix_stream *b);

/* shutdown(2): SHUT_RD, SHUT_WR (the peer then reads end of stream, 0,
 * after the data already sent) or SHUT_RDWR.  Returns 0, -EINVAL,
 * -ENOTCONN, -EBADF (closed). */
PN_EXTERN int pn_unix_stream_shutdown(pn_unix_stream *s, int how);

/* Close (a waiting task completes with -ECANCELED).  Harmless on a closed
 * stream.  Returns 0 or close()'s -errno. */
PN_EXTERN int pn_unix_close(pn_unix_stream *s);
/* Close as a future (pn_close_async, see pollen/io.h). */
static inline PN_MUST_USE pn_close_future pn_unix_close_async(pn_unix_stream *s)
{ return pn_close_async(s ? &s->afd : NULL); }

/* ---- Datagram ---------------------------------------------------------
 *
 * Datagrams keep their boundaries and, on Unix sockets, are never lost or
 * reordered: a sender whose peer's queue is full waits (the send stays
 * pending) rather than drop.  A datagram of length 0 is a datagram, not an
 * end of stream.
 *
 * Truncation: a receive buffer shorter than the datagram gets its first
 * `len` bytes and the rest of that datagram is discarded (as recv(2)).
 * The byte count (*res, .res) is then `len`, the bytes stored, and the
 * datagram's full length is reported separately (*datagram_len, or the
 * futures' .datagram_len and .truncated): truncated exactly when
 * datagram_len > len.
 */

typedef struct pn_unix_dgram {
    pn_async_fd afd;         /* public: the socket */
    pn_sockaddr addr;        /* read-only: the name bound (len 0: none) */
    bool unlink_on_close;    /* private */
} pn_unix_dgram;

/*
 * Create a SOCK_DGRAM socket bound to `name` (opts as pn_unix_listen,
 * backlog ignored).  name NULL: autobind, the kernel picks a unique
 * abstract name (five hex digits) so that peers can reply.  Errors: as
 * pn_unix_listen.
 */
PN_EXTERN int pn_unix_dgram_bind(pn_unix_dgram *d, const char *name,
                                 const pn_unix_opts *opts);

/* A connected, unnamed pair (socketpair(AF_UNIX, SOCK_DGRAM)).  Errors as
 * pn_unix_stream_pair. */
PN_EXTERN int pn_unix_dgram_pair(pn_unix_dgram *a, pn_unix_dgram *b);

/* Set the default peer: send/recv then need no address and only that
 * peer's datagrams are received.  Immediate (nothing to wait for).
 * Returns 0, -EINVAL / -ENAMETOOLONG (the name), -ENOENT, -ECONNREFUSED
 * (nobody bound there), -EPROTOTYPE (a stream socket), -EPERM (the peer is
 * connected to another socket), -EBADF (closed). */
PN_EXTERN int pn_unix_dgram_connect(pn_unix_dgram *d, const char *name);

/* Close (waiting tasks complete with -ECANCELED); unlink_on_close unlinks
 * the path first.  Harmless on a closed socket.  0 or close()'s -errno. */
PN_EXTERN int pn_unix_dgram_close(pn_unix_dgram *d);

/*
 * Poll helpers.  *res: the bytes sent (all of them: a datagram goes whole)
 * or stored (see "Truncation"), or -errno.  Send errors: -ENOENT (no such
 * path), -ECONNREFUSED (nobody bound there any more, or the connected peer
 * was closed), -EMSGSIZE (larger than the send buffer), -ENOTCONN (send
 * without a peer), -EISCONN (send_to on a connected socket), -EPERM (the
 * peer is connected to another socket), -EPROTOTYPE (a stream socket
 * there), -EAFNOSUPPORT (`to` is not AF_UNIX), -EINVAL (NULL).  `from` (may
 * be NULL) gets the sender's address, unnamed for an unbound sender;
 * `datagram_len` (may be NULL) the datagram's full length.
 */
PN_EXTERN pn_poll pn_unix_poll_send_to(pn_unix_dgram *d, pn_cx *cx, const void *buf,
                                       size_t len, const pn_sockaddr *to, ssize_t *res);
PN_EXTERN pn_poll pn_unix_poll_send(pn_unix_dgram *d, pn_cx *cx, const void *buf,
                                    size_t len, ssize_t *res);
PN_EXTERN pn_poll pn_unix_poll_recv_from(pn_unix_dgram *d, pn_cx *cx, void *buf,
                                         size_t len, pn_sockaddr *from,
                                         size_t *datagram_len, ssize_t *res);
PN_EXTERN pn_poll pn_unix_poll_recv(pn_unix_dgram *d, pn_cx *cx, void *buf, size_t len,
                                    size_t *datagram_len, ssize_t *res);

/* The send future: output .res as the poll helper.  The buffer is borrowed
 * until it is ready or dropped; the address is copied.  (The layout is
 * pn_dgram_send_future, pollen/net.h.) */
typedef pn_dgram_send_future pn_unix_send_future;

/* The receive future: outputs .res (bytes stored or -errno), .from (the
 * sender; recv_from only), .datagram_len and .truncated (see
 * "Truncation").  (The layout is pn_dgram_recv_future, pollen/net.h.) */
typedef pn_dgram_recv_future pn_unix_recv_future;

/* `to` NULL gives .res -EINVAL at the first poll. */
PN_EXTERN PN_MUST_USE pn_unix_send_future pn_unix_send_to(pn_unix_dgram *d, const void *buf,
                                                          size_t len, const pn_sockaddr *to);
PN_EXTERN PN_MUST_USE pn_unix_send_future pn_unix_send(pn_unix_dgram *d, const void *buf,
                                                       size_t len);
PN_EXTERN PN_MUST_USE pn_unix_recv_future pn_unix_recv_from(pn_unix_dgram *d, void *buf,
                                                            size_t len);
PN_EXTERN PN_MUST_USE pn_unix_recv_future pn_unix_recv(pn_unix_dgram *d, void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
