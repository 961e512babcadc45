/*
 * pollen/io.h - file descriptors as futures, on the reactor.
 *
 * A pn_async_fd wraps a nonblocking fd (socket, pipe, eventfd, tty...).  It
 * is registered with the runtime's reactor once, edge-triggered, for read
 * and write; readiness is cached per registration, so an operation tries the
 * syscall first and waits only when it answers EAGAIN.
 *
 * Registration is lazy: the first poll of an operation registers the fd
 * with the reactor of the runtime polling it (or call pn_async_fd_register
 * to do it eagerly and see the error there).  One task may wait for reading
 * and one for writing at the same time (e.g. the two halves of a socket).
 * If two tasks wait in the same direction the later one takes the slot and
 * the earlier one is woken to poll again.  Two writes to one stream from
 * two tasks each go whole, one after the other (in io_uring completion mode
 * a send in flight is the task's that queued it: the other task's write
 * waits for it); a task keeps at most one write pending per fd.
 *
 * Ownership: the pn_async_fd owns its fd from pn_async_fd_init on, and
 * pn_async_fd_close closes it.  The struct lives in the caller's memory and
 * must not move once registered, and must be closed (or released) before
 * that memory is freed: a future that embeds one closes it in its drop.
 * Closing it while another task waits on it wakes that task, whose
 * operation then completes with -ECANCELED; closing it while another thread
 * is inside an operation on it is a race, as with close(2).
 *
 * Errors of the operations: whatever the syscall returns as -errno (never
 * -EAGAIN: that is waited out), -ECANCELED if the fd was closed, -ENOMEM or
 * an epoll_ctl error if the lazy registration failed, -EBADF on a fd < 0.
 * Writes use MSG_NOSIGNAL on sockets: a closed peer gives -EPIPE, never
 * SIGPIPE.
 */
#ifndef POLLEN_IO_H
#define POLLEN_IO_H

#include <sys/types.h>
#include <sys/uio.h>
#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pn__registration;

typedef struct pn_async_fd {
    int fd;                          /* read-only: the descriptor, -1 once closed */
    /* private */
    bool closed;                     /* pn_async_fd_close was called */
    bool is_socket;                  /* use send(MSG_NOSIGNAL) for writes */
    bool is_stream;                  /* stream socket or pipe: a short read or
                                        write means the buffer is drained/full */
    bool is_listener;                /* a listening stream socket (accepts) */
    struct pn__reactor *reactor;     /* the reactor it is registered with, or NULL */
    struct pn__registration *reg;    /* its slab record, or NULL */
    uint32_t gen;                    /* generation of reg when it was taken */
    uint8_t reg_busy;                /* claims the lazy registration (multi-thread) */
    uint16_t rd_tick, wr_tick;       /* readiness tick last seen ready, per
                                        direction (for pn_async_fd_clear_ready) */
    struct pn__uio *uio;             /* io_uring completion-mode state, or NULL */
} pn_async_fd;

/* Readiness interest for pn_async_fd_poll_ready. */
#define PN_READABLE 1u
#define PN_WRITABLE 2u

/*
 * Wrap `fd`; sets O_NONBLOCK on it.  Registers nothing.  Returns 0, or
 * -EBADF when fd is not an open descriptor, -EINVAL when afd is NULL.  On
 * error the fd is untouched and still the caller's.
 */
PN_EXTERN int pn_async_fd_init(pn_async_fd *afd, int fd);

/* Register now with `rt`'s reactor (an op would do it on first poll).
 * Returns 0, -EEXIST if already registered, -ENOMEM, -EPERM (fd type that
 * epoll refuses, e.g. a regular file), -EINVAL (NULL afd or rt), or
 * another epoll_ctl error. */
PN_EXTERN int pn_async_fd_register(pn_async_fd *afd, struct pn_runtime *rt);

/* Deregister, wake any waiter (which completes with -ECANCELED) and close
 * the fd.  Safe on an unregistered or already closed pn_async_fd (returns
 * 0).  Must be called on a thread of the runtime it is registered with, or
 * after that runtime was freed.  Returns 0, close()'s -errno, or -EINVAL
 * for NULL. */
PN_EXTERN int pn_async_fd_close(pn_async_fd *afd);

/* Deregister and give the fd back (it stays open, still nonblocking).
 * Returns the fd, -EBADF if it was closed (or released) or afd is NULL, or, in io_uring completion mode
 * (nothing is given back then):
 *  - -EBUSY when received bytes wait unread in pollen's buffers (read
 *    them first), or, on a listener, connections pollen's accept request
 *    brought (accept them first);
 *  - -EINPROGRESS while a request pollen made for the fd is still in the
 *    kernel (the receive armed by an earlier read, a listener's accept
 *    request, a write's send): pollen stops the receive and the accept (a
 *    send runs to its end); call again after the
 *    runtime has run (a sleep, a yield), and read first if that returns
 *    -EBUSY (bytes came meanwhile).  A read in between cancels the
 *    release.  Between two pn_block_on of a current-thread runtime
 *    nothing of pollen's is in the kernel (see pn_block_on), so there
 *    the release does not return -EINPROGRESS.
 * So no byte is lost or sent twice across a release. */
PN_EXTERN int pn_async_fd_release(pn_async_fd *afd);

/* ---- Poll helpers: the building blocks of I/O futures ------------------
 *
 * Each returns PN_READY with *res set (bytes, 0 at end of stream, or
 * -errno), or PN_PENDING with the waker registered.  They are what hand-
 * written futures call, typically through PN_AWAIT_POLL. */

/* Wait until readable (interest PN_READABLE) or writable.  *res = the ready
 * mask seen (PN_READABLE/PN_WRITABLE, also set on hang-up and error, so the
 * next syscall reports it) or -errno. */
PN_EXTERN pn_poll pn_async_fd_poll_ready(pn_async_fd *afd, pn_cx *cx,
                                         unsigned interest, int *res);

/* Drop readiness the caller found stale (it got EAGAIN from a syscall of its
 * own): the next poll_ready waits for a new edge. */
PN_EXTERN void pn_async_fd_clear_ready(pn_async_fd *afd, unsigned interest);

/*
 * Read, write, writev.  On an io_uring runtime in completion mode (the
 * default there, see docs/GUIDE.md), a stream socket's reads copy out of
 * buffers the kernel filled, and a write copies the bytes (up to 256 KiB)
 * into a send request and returns PN_PENDING until the kernel has taken
 * them all.  A write that returned PN_PENDING must be polled again with
 * the same bytes, or given up through its future's drop (pn_write_future,
 * pn_write_all_future and the net futures do this): the send is then cancelled
 * ahead of any later write, and bytes it had sent stay sent.  Custom
 * reads through pn_async_fd_poll_io on such a socket would miss bytes
 * already received into those buffers: use these helpers.
 */
PN_EXTERN pn_poll pn_async_fd_poll_read(pn_async_fd *afd, pn_cx *cx,
                                        void *buf, size_t len, ssize_t *res);
PN_EXTERN pn_poll pn_async_fd_poll_write(pn_async_fd *afd, pn_cx *cx,
                                         const void *buf, size_t len, ssize_t *res);
PN_EXTERN pn_poll pn_async_fd_poll_writev(pn_async_fd *afd, pn_cx *cx,
                                          const struct iovec *iov, int iovcnt,
                                          ssize_t *res);
/* accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) on a listening socket; *res = the new
 * fd or -errno.  EMFILE/ENFILE are returned, not spun on. */
PN_EXTERN pn_poll pn_async_fd_poll_accept(pn_async_fd *afd, pn_cx *cx, int *res);

/*
 * Generic form: call `op(afd->fd, arg)` (which returns >= 0 or -errno)
 * when `interest` is ready; on -EAGAIN clear that readiness and wait.
 */
typedef ssize_t (*pn_io_op)(int fd, void *arg);
PN_EXTERN pn_poll pn_async_fd_poll_io(pn_async_fd *afd, pn_cx *cx, unsigned interest,
                                      pn_io_op op, void *arg, ssize_t *res);

/* ---- Futures ----------------------------------------------------------- */

/* Output .res: bytes read (0 = end of stream) or -errno. */
typedef struct pn_read_future {
    pn_future base;
    pn_async_fd *afd; void *buf; size_t len;  /* private */
    pn_waker parked;                           /* private: identity of the waker it left */
    ssize_t res;                               /* output */
} pn_read_future;

/* Output .res: bytes written (may be short) or -errno. */
typedef struct pn_write_future {
    pn_future base;
    pn_async_fd *afd; const void *buf; size_t len;  /* private */
    pn_waker parked;                                 /* private */
    ssize_t res;                                     /* output */
} pn_write_future;

/* Output .res: len, or -errno (bytes written before the error are lost to
 * the caller's view: .done tells how many went out). */
typedef struct pn_write_all_future {
    pn_future base;
    pn_async_fd *afd; const char *buf; size_t len;  /* private */
    pn_waker parked;                                 /* private */
    size_t done;                                     /* read-only: bytes written so far */
    ssize_t res;                                     /* output */
} pn_write_all_future;

/* Output .res: the ready mask or -errno (see pn_async_fd_poll_ready). */
typedef struct pn_ready_future {
    pn_future base;
    pn_async_fd *afd; unsigned interest;  /* private */
    pn_waker parked;                      /* private */
    int res;                              /* output */
} pn_ready_future;

/* Output .res: the accepted fd (nonblocking, close-on-exec) or -errno. */
typedef struct pn_accept_future {
    pn_future base;
    pn_async_fd *afd;  /* private */
    pn_waker parked;   /* private */
    int res;           /* output */
} pn_accept_future;

/*
 * Close as a future.  Output .res: close's result, 0 or -errno (-EINVAL
 * for a NULL afd; 0 at once if afd is closed already).  The first poll
 * shuts the afd for pollen exactly as pn_async_fd_close does (its waiters
 * are woken and see it closed, its requests are cancelled, afd->fd is -1,
 * and the afd may be initialised again at once); the descriptor itself is
 * closed by an IORING_OP_CLOSE that goes out with the runtime's next batch
 * of submissions when the runtime runs on io_uring (either mode), and the
 * future is ready when the kernel has run it; elsewhere (epoll, no free
 * submission slot, no memory) by close(2), ready at once.  Until it is
 * ready the descriptor's number stays taken, so it is never reused under
 * a request.  Dropped after its first poll, the descriptor is still
 * closed; dropped unpolled, it does nothing.  Poll it from the threads
 * pn_async_fd_close may be called from.
 */
typedef struct pn_close_future {
    pn_future base;
    pn_async_fd *afd;            /* private */
    struct pn__uclose *req;      /* private: the close in flight */
    int res;                     /* output */
} pn_close_future;

PN_EXTERN PN_MUST_USE pn_close_future pn_close_async(pn_async_fd *afd);

PN_EXTERN PN_MUST_USE pn_read_future pn_read(pn_async_fd *afd, void *buf, size_t len);
PN_EXTERN PN_MUST_USE pn_write_future pn_write(pn_async_fd *afd, const void *buf, size_t len);
PN_EXTERN PN_MUST_USE pn_write_all_future pn_write_all(pn_async_fd *afd, const void *buf,
                                                       size_t len);
PN_EXTERN PN_MUST_USE pn_ready_future pn_readable(pn_async_fd *afd);
PN_EXTERN PN_MUST_USE pn_ready_future pn_writable(pn_async_fd *afd);
PN_EXTERN PN_MUST_USE pn_accept_future pn_accept(pn_async_fd *afd);

#ifdef __cplusplus
}
#endif
#endif
