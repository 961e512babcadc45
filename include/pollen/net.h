/*
 * pollen/net.h - socket addresses, TCP, and the layout of the datagram
 * futures (pollen/udp.h, pollen/unix.h).
 *
 * Addresses: pn_sockaddr holds any socket address (IPv4, IPv6, Unix) with
 * its length; it is a plain value, copied freely.  pn_sockaddr_parse reads
 * "127.0.0.1:8080" and "[::1]:8080" (numeric only: names go through
 * pollen/resolve.h), pn_sockaddr_format writes the same forms back.
 *
 * TCP: a pn_tcp_listener and a pn_tcp_stream each wrap one pn_async_fd
 * (pollen/io.h), so everything io.h says holds for them:
 *  - Ownership: the struct owns its socket from the call that initializes
 *    it (pn_tcp_listen, an accept, a connect, pn_tcp_stream_init) until
 *    pn_tcp_*_close, which must be called (a future that embeds one closes
 *    it in its drop).  The struct lives in the caller's memory.  It may be
 *    copied or moved until its first operation (the lazy registration with
 *    the reactor); from then on it must stay where it is.
 *  - Threads: one task may read and another write the same stream at once
 *    (two waker slots; see pn_tcp_split); two tasks waiting in the same
 *    direction displace each other (io.h).  Close on a thread of the
 *    runtime it is registered with, and never while another thread is
 *    inside an operation on it.  Closing it while another task waits on it
 *    wakes that task, whose operation completes with -ECANCELED.
 *  - Errors: operations give whatever the syscall gives as -errno (never
 *    -EAGAIN: that is waited out, nor -EINTR: that is retried), -ECANCELED
 *    once the socket is closed, -EBADF on a closed struct for the plain
 *    calls, and -ENOMEM or an epoll_ctl error if the lazy registration
 *    failed.  Writes use MSG_NOSIGNAL: a peer that has gone gives -EPIPE
 *    or -ECONNRESET, never SIGPIPE.  A peer that shut down its write half
 *    (or closed) reads as end of stream (0).
 *
 * Every socket pollen creates is nonblocking and close-on-exec.
 */
#ifndef POLLEN_NET_H
#define POLLEN_NET_H

#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <sys/un.h>
#include "future.h"
#include "io.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Addresses
 * ====================================================================== */

/* A socket address of any family and its length (len == 0: empty).
 * Read the member that .sa.sa_family names. */
typedef struct pn_sockaddr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage storage;
    };
    socklen_t len;
} pn_sockaddr;

/* Room for any string pn_sockaddr_format writes, with its NUL:
 * "[ffff:...:255.255.255.255%4294967295]:65535" or a Unix path. */
#define PN_SOCKADDR_STRLEN 112

/*
 * Parse "a.b.c.d:port" or "[ipv6]:port" (an IPv6 literal may carry a zone,
 * "[fe80::1%2]:80" or "[fe80::1%eth0]:80").  The port is 0 to 65535 in
 * decimal, without sign or spaces; port 0 asks bind for any port.  Returns
 * 0 with *out filled, or -EINVAL on anything else (empty string, no port,
 * port out of range, bad octet, unbalanced brackets, trailing bytes, an
 * IPv6 literal without brackets, an unknown zone, NULL).  Host names are
 * not resolved.  Thread-safe.  *out is unchanged on error.
 */
PN_EXTERN int pn_sockaddr_parse(pn_sockaddr *out, const char *s);

/* Build an address from an IP literal without port ("10.0.0.1", "::1",
 * "fe80::1%2") and a port.  0 or -EINVAL. */
PN_EXTERN int pn_sockaddr_ip(pn_sockaddr *out, const char *ip, uint16_t port);

/* 127.0.0.1:port and [::1]:port. */
PN_EXTERN pn_sockaddr pn_sockaddr_loopback4(uint16_t port);
PN_EXTERN pn_sockaddr pn_sockaddr_loopback6(uint16_t port);

/* Copy `len` bytes of a kernel address (from recvfrom, getsockname...).
 * 0, or -EINVAL when sa is NULL or len is 0 or larger than a
 * sockaddr_storage. */
PN_EXTERN int pn_sockaddr_from(pn_sockaddr *out, const struct sockaddr *sa, socklen_t len);

/*
 * Write the address as text with a NUL: "127.0.0.1:8080", "[::1]:8080",
 * "[fe80::1%2]:80" (zone as its number), a Unix path as is, an abstract
 * Unix name as "@name", an unnamed Unix socket as "".  Returns the length
 * written (without the NUL), -ENOSPC when `size` is too small (buf then
 * holds nothing useful; PN_SOCKADDR_STRLEN is always enough), -EINVAL on
 * NULL, -EAFNOSUPPORT for another family.  Thread-safe.
 */
PN_EXTERN int pn_sockaddr_format(const pn_sockaddr *a, char *buf, size_t size);

/* The port (0-65535) of an IPv4/IPv6 address, -EAFNOSUPPORT for another
 * family, -EINVAL on NULL. */
PN_EXTERN int pn_sockaddr_port(const pn_sockaddr *a);

/* Set the port of an IPv4/IPv6 address: 0, -EAFNOSUPPORT or -EINVAL. */
PN_EXTERN int pn_sockaddr_set_port(pn_sockaddr *a, uint16_t port);

/* The family (AF_INET, AF_INET6, AF_UNIX), AF_UNSPEC when empty or NULL. */
PN_EXTERN int pn_sockaddr_family(const pn_sockaddr *a);

/* Same family, address, port (and IPv6 zone), or same Unix path. */
PN_EXTERN bool pn_sockaddr_equal(const pn_sockaddr *a, const pn_sockaddr *b);

/* ======================================================================
 * TCP
 * ====================================================================== */

typedef struct pn_tcp_listener {
    pn_async_fd afd;   /* public: the socket, for io.h calls */
} pn_tcp_listener;

typedef struct pn_tcp_stream {
    pn_async_fd afd;   /* public: the socket, for io.h calls */
} pn_tcp_stream;

/* Listen options; a zeroed struct (or NULL) gives the defaults.
 * SO_REUSEADDR is always set (a restarted server can bind at once). */
typedef struct pn_tcp_listen_opts {
    int backlog;        /* listen(2) backlog; <= 0 means 1024 (the kernel
                           caps it at net.core.somaxconn) */
    bool reuseport;     /* SO_REUSEPORT: several listeners share the port
                           (one runtime per core) */
    bool v6only;        /* IPV6_V6ONLY on an IPv6 listener (default: the
                           system's, usually dual-stack) */
} pn_tcp_listen_opts;

/*
 * Create a TCP socket, bind it to `addr` (port 0: the kernel picks one,
 * see pn_tcp_listener_local_addr) and listen.  Registers nothing yet.
 * Returns 0 with *l initialized, or -EINVAL (NULL argument),
 * -EAFNOSUPPORT (not an IPv4/IPv6 address), -EADDRINUSE, -EACCES (port
 * below 1024), -EADDRNOTAVAIL (not a local address), -EMFILE/-ENFILE,
 * -ENOMEM/-ENOBUFS.  On error nothing is left open and *l is closed
 * (afd.fd == -1), so pn_tcp_listener_close on it is harmless.
 */
PN_EXTERN int pn_tcp_listen(pn_tcp_listener *l, const pn_sockaddr *addr,
                            const pn_tcp_listen_opts *opts);

/* The bound address (with the chosen port).  0, -EINVAL, -EBADF (closed)
 * or getsockname's -errno. */
PN_EXTERN int pn_tcp_listener_local_addr(const pn_tcp_listener *l, pn_sockaddr *out);

/* Stop listening and close (pn_async_fd_close): a pending accept completes
 * with -ECANCELED; connections already accepted are not affected.  0, or
 * close's -errno; harmless on a closed listener. */
PN_EXTERN int pn_tcp_listener_close(pn_tcp_listener *l);

/*
 * Accept one connection, as a poll helper.  PN_READY with *res = 0, *out
 * initialized (a new stream, not registered yet: movable until its first
 * operation; the caller owns it) and *peer filled (peer may be NULL); or
 * PN_READY with *res = -errno and *out untouched: -EMFILE/-ENFILE/-ENOBUFS/
 * -ENOMEM are returned here (the caller backs off; the future below does
 * it for you), -ECONNABORTED when a client reset before being accepted,
 * -ECANCELED when the listener was closed.  Or PN_PENDING with the waker
 * registered.
 */
PN_EXTERN pn_poll pn_tcp_poll_accept(pn_tcp_listener *l, pn_cx *cx, pn_tcp_stream *out,
                                     pn_sockaddr *peer, int *res);

/* What an accept future (pn_tcp_accept_future below, pn_unix_accept_future in
 * pollen/unix.h) keeps between polls; private. */
typedef struct pn_accept_state {
    pn_async_fd *listener;    /* the listening socket */
    pn_waker parked;          /* the waker left with it while pending */
    pn_sleep_future backoff;  /* the back-off sleep, while sleeping */
    uint64_t backoff_ns;      /* the next sleep */
    bool sleeping;
} pn_accept_state;

/*
 * The accept future, and a stream of accepts: after each PN_READY it may be
 * awaited again for the next connection (the outputs are overwritten; take
 * .stream first).  Outputs: .res 0 with .stream (yours: movable until its
 * first operation, close it) and .peer; or -errno: -ECANCELED (listener
 * closed), -EINVAL/-EBADF (not a listening socket) and other errors that
 * retrying cannot cure.
 *
 * Errors that belong to one connection (ECONNABORTED, EPROTO, the network
 * errors Linux passes through accept) are skipped: it accepts the next.
 * Running out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
 * does not spin: the future sleeps on an embedded pn_sleep_future, 10 ms at first,
 * doubling to 1 s, retrying after each sleep, and goes back to 10 ms after
 * the next accept succeeds; meanwhile every other task keeps running and
 * the connections already open keep being served.  .backoffs counts the
 * sleeps taken.  Dropping it releases its waker and cancels its sleep; it
 * never owns the listener.
 */
typedef struct pn_tcp_accept_future {
    pn_future base;
    pn_accept_state st;       /* private */
    unsigned backoffs;        /* read-only: sleeps taken so far */
    pn_tcp_stream stream;     /* output, when res == 0 */
    pn_sockaddr peer;         /* output, when res == 0 */
    int res;                  /* output */
} pn_tcp_accept_future;

PN_EXTERN PN_MUST_USE pn_tcp_accept_future pn_tcp_accept(pn_tcp_listener *l);

/* ---- streams ----------------------------------------------------------- */

/*
 * Connect to `addr` (IPv4 or IPv6), initializing the caller's stream *out
 * in place: *out must not move from the first poll on (it is registered
 * with the reactor while connecting) and is the caller's to close once .res
 * is 0.  timeout_ns 0 means no time limit (the kernel gives up after its
 * SYN retries, minutes).  Lazy: the socket is made at the first poll.
 * Output .res: 0 (connected), or -ETIMEDOUT (the time limit passed),
 * -ECONNREFUSED (nobody listens), -ENETUNREACH/-EHOSTUNREACH,
 * -EADDRNOTAVAIL (no local port left), -EAFNOSUPPORT (not an IP address),
 * -EINVAL (NULL), -EMFILE/-ENFILE, -ENOMEM; on every error *out is closed
 * (afd.fd == -1) and nothing is left open.  Dropping the future before it
 * completes closes *out too.  A refused connect surfaces as .res, never as
 * SIGPIPE.
 */
typedef struct pn_tcp_connect_future {
    pn_future base;
    pn_tcp_stream *out;       /* private */
    pn_sockaddr addr;         /* private */
    uint64_t timeout_ns;      /* private */
    pn_sleep_future timer;    /* private */
    pn_waker parked;          /* private */
    uint8_t state;            /* private */
    int res;                  /* output */
} pn_tcp_connect_future;

PN_EXTERN PN_MUST_USE pn_tcp_connect_future pn_tcp_connect(pn_tcp_stream *out,
                                                           const pn_sockaddr *addr,
                                                           uint64_t timeout_ns);

/* Adopt a connected TCP socket (made elsewhere); sets O_NONBLOCK.  0, or
 * -EBADF (not an open fd: then it stays the caller's). */
PN_EXTERN int pn_tcp_stream_init(pn_tcp_stream *s, int fd);

/* Close (pn_async_fd_close): wakes a task waiting on it (-ECANCELED),
 * unsent data is still delivered by the kernel.  0 or close's -errno;
 * harmless on a closed stream. */
PN_EXTERN int pn_tcp_close(pn_tcp_stream *s);
/* Close as a future (pn_close_async on the stream's socket): .res = close's
 * result.  On io_uring the close goes out with the runtime's next batch
 * of submissions instead of a close(2) of its own. */
static inline PN_MUST_USE pn_close_future pn_tcp_close_async(pn_tcp_stream *s)
{ return pn_close_async(s ? &s->afd : NULL); }

/* ---- reading and writing: the io.h futures on the stream's socket ----- */

/* Read some bytes: .res = bytes (0 = end of stream) or -errno. */
static inline PN_MUST_USE pn_read_future pn_tcp_read(pn_tcp_stream *s, void *buf, size_t len)
{ return pn_read(&s->afd, buf, len); }
/* Write some bytes (may be short): .res = bytes or -errno. */
static inline PN_MUST_USE pn_write_future pn_tcp_write(pn_tcp_stream *s, const void *buf,
                                                       size_t len)
{ return pn_write(&s->afd, buf, len); }
/* Write all of buf: .res = len or -errno; .done = bytes sent before it. */
static inline PN_MUST_USE pn_write_all_future pn_tcp_write_all(pn_tcp_stream *s, const void *buf,
                                                               size_t len)
{ return pn_write_all(&s->afd, buf, len); }

/* Poll helpers (see io.h): *res = bytes, 0 at end of stream, or -errno. */
static inline pn_poll pn_tcp_poll_read(pn_tcp_stream *s, pn_cx *cx, void *buf, size_t len,
                                       ssize_t *res)
{ return pn_async_fd_poll_read(&s->afd, cx, buf, len, res); }
static inline pn_poll pn_tcp_poll_write(pn_tcp_stream *s, pn_cx *cx, const void *buf,
                                        size_t len, ssize_t *res)
{ return pn_async_fd_poll_write(&s->afd, cx, buf, len, res); }
/* One sendmsg(MSG_NOSIGNAL) of the iovecs (may be short). */
static inline pn_poll pn_tcp_poll_writev(pn_tcp_stream *s, pn_cx *cx,
                                         const struct iovec *iov, int iovcnt, ssize_t *res)
{ return pn_async_fd_poll_writev(&s->afd, cx, iov, iovcnt, res); }

/* recv(MSG_PEEK): the bytes stay queued for the next read.  *res = bytes,
 * 0 at end of stream, or -errno. */
PN_EXTERN pn_poll pn_tcp_poll_peek(pn_tcp_stream *s, pn_cx *cx, void *buf, size_t len,
                                   ssize_t *res);

/*
 * Read exactly `len` bytes, looping over short reads.  Output .res: len, or
 * -EPIPE when the stream ended first (.done bytes arrived; .done == 0 means
 * the peer closed cleanly before the first byte), or another -errno.
 * .done counts the bytes stored in buf so far and survives an error.
 * buf must stay valid until the future completes or is dropped.
 */
typedef struct pn_tcp_read_exact_future {
    pn_future base;
    pn_async_fd *afd; char *buf; size_t len;  /* private */
    pn_waker parked;                           /* private */
    size_t done;                               /* read-only */
    ssize_t res;                               /* output */
} pn_tcp_read_exact_future;

PN_EXTERN PN_MUST_USE pn_tcp_read_exact_future pn_tcp_read_exact(pn_tcp_stream *s, void *buf,
                                                                 size_t len);

/*
 * Write all the bytes of `iovcnt` iovecs (sendmsg with MSG_NOSIGNAL, any
 * number of them: sent IOV_MAX-bounded windows at a time), looping over
 * partial writes; the caller's iovec array is read, never modified, and
 * must stay valid (with the buffers) until the future completes or is
 * dropped.  Output .res: the total bytes, or -errno (-EPIPE/-ECONNRESET
 * when the peer is gone, -EINVAL on iovcnt < 0); .done = bytes sent so far.
 */
typedef struct pn_tcp_writev_future {
    pn_future base;
    pn_async_fd *afd; const struct iovec *iov; int iovcnt;  /* private */
    int idx; size_t off;                                     /* private: progress */
    pn_waker parked;                                         /* private */
    size_t done;                                             /* read-only */
    ssize_t res;                                             /* output */
} pn_tcp_writev_future;

PN_EXTERN PN_MUST_USE pn_tcp_writev_future pn_tcp_writev(pn_tcp_stream *s, const struct iovec *iov,
                                                         int iovcnt);

/* Peek as a future: .res = bytes (left queued), 0 at end of stream, or
 * -errno. */
typedef struct pn_tcp_peek_future {
    pn_future base;
    pn_async_fd *afd; void *buf; size_t len;  /* private */
    pn_waker parked;                           /* private */
    ssize_t res;                               /* output */
} pn_tcp_peek_future;

PN_EXTERN PN_MUST_USE pn_tcp_peek_future pn_tcp_peek(pn_tcp_stream *s, void *buf, size_t len);

/* ---- socket options and addresses (plain calls, any thread that owns
 * the stream; each returns 0 or -errno, -EBADF on a closed stream, -EINVAL
 * on NULL or a bad argument) ------------------------------------------- */

/* shutdown(2): SHUT_RD, SHUT_WR (the peer then reads end of stream) or
 * SHUT_RDWR.  -ENOTCONN if the connection is gone. */
PN_EXTERN int pn_tcp_shutdown(pn_tcp_stream *s, int how);
/* TCP_NODELAY on/off (off: Nagle coalesces small writes). */
PN_EXTERN int pn_tcp_set_nodelay(pn_tcp_stream *s, bool on);
/* 1 or 0, or -errno. */
PN_EXTERN int pn_tcp_nodelay(const pn_tcp_stream *s);
/* SO_KEEPALIVE on/off; when on, idle_s (TCP_KEEPIDLE), interval_s
 * (TCP_KEEPINTVL) and count (TCP_KEEPCNT) are set when non-zero (0 keeps
 * the system's).  -EINVAL for values the kernel refuses (e.g. > 32767 s). */
PN_EXTERN int pn_tcp_set_keepalive(pn_tcp_stream *s, bool on, unsigned idle_s,
                                   unsigned interval_s, unsigned count);
PN_EXTERN int pn_tcp_local_addr(const pn_tcp_stream *s, pn_sockaddr *out);
/* -ENOTCONN once the peer is unknown (e.g. after a reset). */
PN_EXTERN int pn_tcp_peer_addr(const pn_tcp_stream *s, pn_sockaddr *out);

/* ---- split: a read half and a write half for two tasks --------------
 *
 * pn_tcp_split gives two views of one stream: one task reads through the
 * read half while another writes through the write half (the stream's two
 * waker slots).  The halves borrow the stream: it stays where it is and
 * keeps owning the socket; close it once with pn_tcp_close after
 * both tasks are done with their halves (a close while the other half waits
 * wakes it with -ECANCELED).  Do not use one half from two tasks at once.
 * The writer can end its direction with pn_tcp_wr_shutdown: the peer reads
 * end of stream while the read half keeps reading.
 */
typedef struct pn_tcp_read_half { pn_tcp_stream *stream; } pn_tcp_read_half;
typedef struct pn_tcp_write_half { pn_tcp_stream *stream; } pn_tcp_write_half;

PN_EXTERN void pn_tcp_split(pn_tcp_stream *s, pn_tcp_read_half *rd, pn_tcp_write_half *wr);

static inline PN_MUST_USE pn_read_future pn_tcp_rd_read(pn_tcp_read_half h, void *buf, size_t len)
{ return pn_tcp_read(h.stream, buf, len); }
static inline PN_MUST_USE pn_tcp_read_exact_future pn_tcp_rd_read_exact(pn_tcp_read_half h,
                                                                        void *buf, size_t len)
{ return pn_tcp_read_exact(h.stream, buf, len); }
static inline PN_MUST_USE pn_tcp_peek_future pn_tcp_rd_peek(pn_tcp_read_half h, void *buf,
                                                            size_t len)
{ return pn_tcp_peek(h.stream, buf, len); }
static inline pn_poll pn_tcp_rd_poll_read(pn_tcp_read_half h, pn_cx *cx, void *buf,
                                          size_t len, ssize_t *res)
{ return pn_tcp_poll_read(h.stream, cx, buf, len, res); }
static inline PN_MUST_USE pn_write_future pn_tcp_wr_write(pn_tcp_write_half h, const void *buf,
                                                          size_t len)
{ return pn_tcp_write(h.stream, buf, len); }
static inline PN_MUST_USE pn_write_all_future pn_tcp_wr_write_all(pn_tcp_write_half h,
                                                                  const void *buf, size_t len)
{ return pn_tcp_write_all(h.stream, buf, len); }
static inline PN_MUST_USE pn_tcp_writev_future pn_tcp_wr_writev(pn_tcp_write_half h,
                                                                const struct iovec *iov, int iovcnt)
{ return pn_tcp_writev(h.stream, iov, iovcnt); }
static inline pn_poll pn_tcp_wr_poll_write(pn_tcp_write_half h, pn_cx *cx, const void *buf,
                                           size_t len, ssize_t *res)
{ return pn_tcp_poll_write(h.stream, cx, buf, len, res); }
static inline int pn_tcp_wr_shutdown(pn_tcp_write_half h)
{ return pn_tcp_shutdown(h.stream, SHUT_WR); }

/* ---- datagram futures ---------------------------------------------------
 *
 * The send and receive futures of UDP (pollen/udp.h) and of Unix datagram
 * sockets (pollen/unix.h) share one layout: pn_udp_send_future and
 * pn_unix_send_future are pn_dgram_send_future, pn_udp_recv_future and
 * pn_unix_recv_future are pn_dgram_recv_future.  Make them with those
 * headers' functions, which document the outputs.
 */
typedef struct pn_dgram_send_future {
    pn_future base;
    /* private */
    pn_async_fd *afd;        /* NULL: .res already holds an argument error */
    const void *buf;
    size_t len;
    pn_sockaddr to;          /* len 0: to the connected peer */
    pn_waker parked;
    /* output */
    ssize_t res;
} pn_dgram_send_future;

typedef struct pn_dgram_recv_future {
    pn_future base;
    /* private */
    pn_async_fd *afd;        /* NULL: .res already holds -EINVAL */
    void *buf;
    size_t len;
    pn_waker parked;
    /* outputs */
    pn_sockaddr from;
    size_t datagram_len;
    bool truncated;          /* res >= 0 && datagram_len > len */
    ssize_t res;
} pn_dgram_recv_future;

#ifdef __cplusplus
}
#endif
#endif
