/*
 * uio.h - completion-mode socket I/O on the io_uring backend, as io.c sees
 * it (the implementation is uio.c; without PN_WITH_URING every call here
 * is a stub that says "not handled").
 *
 * A stream socket registered with an io_uring reactor in completion mode
 * gets a pn__uio (afd->uio): receives are IORING_OP_RECV requests that let
 * the kernel pick a buffer from the reactor's provided buffer ring, and the
 * received chunks wait in the uio until a read copies them out; each write
 * is an IORING_OP_SEND of a copy of the caller's bytes.  SQEs are queued and
 * submitted in batches (pn__reactor_flush, the reactor's turn).
 *
 * Each pn__uio_* call returns true when it handled the operation (result
 * in *out / *res), false when io.c must use the readiness path (no
 * completion mode for this fd, or its reactor is gone and nothing is
 * buffered).
 */
#ifndef PN_REACTOR_UIO_H
#define PN_REACTOR_UIO_H

#include <sys/socket.h>
#include <sys/uio.h>
#include "pollen/io.h"

struct pn__reactor;
struct pn__uclose;

/* The accept requests a listener keeps in the kernel, and so the most
 * connections accepted that no accept has taken (see pn__uio_accept). */
#define PN__ACCEPT_AHEAD 8u

#ifdef PN_WITH_URING
bool pn__uio_read(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len, bool peek,
                  ssize_t *res, pn_poll *out);
bool pn__uio_write(pn_async_fd *afd, pn_cx *cx, const struct iovec *iov, int iovcnt,
                   ssize_t *res, pn_poll *out);
bool pn__uio_readable(pn_async_fd *afd, pn_cx *cx, int *res, pn_poll *out);
/* Whether stream sockets registered with r do their I/O in completion
 * mode. */
bool pn__uio_applies(struct pn__reactor *r);
/* An IORING_OP_CONNECT: sa != NULL starts it (the address is copied),
 * sa == NULL polls the one started (-ECANCELED if none is, or its reactor
 * went).  A pending connect is polled again or dropped with
 * pn__uio_forget(PN_WRITABLE), which cancels it. */
bool pn__uio_connect(pn_async_fd *afd, pn_cx *cx, const struct sockaddr *sa, socklen_t len,
                     int *res, pn_poll *out);
/* Accept on a listening stream socket: a connection one of the
 * listener's IORING_OP_ACCEPT requests brought, else accept4 at once, and
 * on EAGAIN a window of PN__ACCEPT_AHEAD requests (*res: the fd,
 * nonblocking and close-on-exec, or -errno; *sa / *salen its address as
 * accept4 gives them).  Each accept that takes a connection queues a
 * request in its place, so the kernel never holds more than
 * PN__ACCEPT_AHEAD connections nobody asked for.  A pending accept is
 * polled again or dropped with pn__uio_forget(PN_READABLE), which takes
 * its waker back and leaves the window for the next accept.  Only on a
 * listener (afd->is_listener). */
bool pn__uio_accept(pn_async_fd *afd, pn_cx *cx, struct sockaddr *sa, socklen_t *salen,
                    ssize_t *res, pn_poll *out);
/* A future waiting on afd is dropped: take its waker back; a write of
 * that future still in flight completes unseen (its copy is freed then). */
void pn__uio_forget(pn_async_fd *afd, unsigned interest, const pn_waker *mine);
/* The afd is closed: cancel the receive, drop buffered data, let go. */
void pn__uio_close(pn_async_fd *afd);
/* The same in two steps: close it, keeping a reference (NULL: no uio)...
 * then let go; with `wait`, a thread that does not drive the uio's ring
 * first waits (100 ms at most, and only while a thread drives it) until
 * every request the close cancelled has ended, so the kernel holds the
 * file no more (pn_async_fd_close's promise). */
struct pn__uio *pn__uio_close_hold(pn_async_fd *afd);
void pn__uio_let_go(struct pn__uio *io, bool wait);
/* The afd is handed back (pn_async_fd_release): -EBUSY if received bytes
 * or an accepted connection wait, -EINPROGRESS while a request is still in
 * the kernel (the receive and an accept request are stopped meanwhile),
 * else 0 (the uio is let go). */
int  pn__uio_release(pn_async_fd *afd);
/* The reactor is being freed: copy unread bytes out of its buffers (reads
 * return them first; a listener's accepted connections stay for its next
 * accepts), cancel nothing (the reactor cancels everything). */
void pn__uio_detach(pn_async_fd *afd);
/* Close fd (already shut for pollen, see pn__async_fd_shut) with an
 * IORING_OP_CLOSE queued on r's ring, when r is an io_uring reactor (either
 * mode): true with *out the request (it holds a clone of cx's waker);
 * false (nothing done) otherwise or without memory or an SQE. */
bool pn__uio_close_start(struct pn__reactor *r, int fd, pn_cx *cx, struct pn__uclose **out);
/* PN_READY with *res close's result once it ran (*cp freed and NULL),
 * else PN_PENDING with cx's waker kept. */
pn_poll pn__uio_close_poll(struct pn__uclose **cp, pn_cx *cx, int *res);
/* The future is dropped: the close still runs; *cp is let go (NULL). */
void pn__uio_close_forget(struct pn__uclose **cp);
/* Tests: receive buffers filled and not yet given back (-1: the reactor
 * has no completion mode); whether afd does its I/O in completion mode. */
int  pn__uio_buffers_out(struct pn__reactor *r);
int  pn__uio_nobufs(struct pn__reactor *r);    /* receives that found none */
bool pn__uio_active(const pn_async_fd *afd);
#else
static inline bool pn__uio_read(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                                bool peek, ssize_t *res, pn_poll *out)
{ (void)afd, (void)cx, (void)buf, (void)len, (void)peek, (void)res, (void)out; return false; }
static inline bool pn__uio_write(pn_async_fd *afd, pn_cx *cx, const struct iovec *iov,
                                 int iovcnt, ssize_t *res, pn_poll *out)
{ (void)afd, (void)cx, (void)iov, (void)iovcnt, (void)res, (void)out; return false; }
static inline bool pn__uio_readable(pn_async_fd *afd, pn_cx *cx, int *res, pn_poll *out)
{ (void)afd, (void)cx, (void)res, (void)out; return false; }
static inline bool pn__uio_applies(struct pn__reactor *r) { (void)r; return false; }
static inline bool pn__uio_connect(pn_async_fd *afd, pn_cx *cx, const struct sockaddr *sa,
                                   socklen_t len, int *res, pn_poll *out)
{ (void)afd, (void)cx, (void)sa, (void)len, (void)res, (void)out; return false; }
static inline bool pn__uio_accept(pn_async_fd *afd, pn_cx *cx, struct sockaddr *sa,
                                  socklen_t *salen, ssize_t *res, pn_poll *out)
{ (void)afd, (void)cx, (void)sa, (void)salen, (void)res, (void)out; return false; }
static inline void pn__uio_forget(pn_async_fd *afd, unsigned interest, const pn_waker *mine)
{ (void)afd, (void)interest, (void)mine; }
static inline void pn__uio_close(pn_async_fd *afd) { (void)afd; }
static inline struct pn__uio *pn__uio_close_hold(pn_async_fd *afd) { (void)afd; return NULL; }
static inline void pn__uio_let_go(struct pn__uio *io, bool wait) { (void)io, (void)wait; }
static inline int  pn__uio_release(pn_async_fd *afd) { (void)afd; return 0; }
static inline void pn__uio_detach(pn_async_fd *afd) { (void)afd; }
static inline bool pn__uio_close_start(struct pn__reactor *r, int fd, pn_cx *cx,
                                       struct pn__uclose **out)
{ (void)r, (void)fd, (void)cx, (void)out; return false; }
static inline pn_poll pn__uio_close_poll(struct pn__uclose **cp, pn_cx *cx, int *res)
{ (void)cp, (void)cx, (void)res; return PN_READY; }
static inline void pn__uio_close_forget(struct pn__uclose **cp) { (void)cp; }
static inline int  pn__uio_buffers_out(struct pn__reactor *r) { (void)r; return -1; }
static inline int  pn__uio_nobufs(struct pn__reactor *r) { (void)r; return -1; }
static inline bool pn__uio_active(const pn_async_fd *afd) { (void)afd; return false; }
#endif

#endif
