/*
 * sys.h - every syscall pollen makes goes through this table.
 *
 * As SQLite's aSyscall[]: the runtime calls pn__sys.read(...) instead of
 * read(...), so tests can swap an entry for a function that fails with
 * EINTR, EAGAIN, ECONNRESET, EMFILE or ENOMEM on demand and prove that the
 * runtime survives.  Entries follow the libc convention (-1 and errno);
 * callers convert to -errno right after the call.  pn__sys_reset() restores
 * the real functions.  Only tests write to the table, and only while no
 * runtime thread is running.
 */
#ifndef PN_CORE_SYS_H
#define PN_CORE_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <signal.h>

struct io_uring;
struct io_uring_params;

struct pn__sys {
    ssize_t (*read)(int fd, void *buf, size_t len);
    ssize_t (*write)(int fd, const void *buf, size_t len);
    ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
    ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    int (*accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
    int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
    int (*shutdown)(int fd, int how);
    int (*close)(int fd);
    int (*epoll_create1)(int flags);
    int (*epoll_ctl)(int epfd, int op, int fd, struct epoll_event *ev);
    /* epoll_pwait2 semantics: timeout NULL = forever. */
    int (*epoll_wait)(int epfd, struct epoll_event *evs, int maxevents,
                      const struct timespec *timeout);
    int (*eventfd)(unsigned int initval, int flags);
    /* liburing's io_uring_queue_init_params, which returns -errno itself
     * (-ENOSYS when pollen is built without liburing). */
    int (*uring_init)(unsigned entries, struct io_uring *ring,
                      struct io_uring_params *p);
    void *(*malloc)(size_t size);
    void *(*calloc)(size_t n, size_t size);
    void (*free)(void *p);
    void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
};

extern struct pn__sys pn__sys;

void pn__sys_reset(void);

/* Allocation, through the table so tests can inject ENOMEM. */
static inline void *pn__malloc(size_t n) { return pn__sys.malloc(n); }
static inline void *pn__calloc(size_t n, size_t s) { return pn__sys.calloc(n, s); }
static inline void pn__free(void *p) { pn__sys.free(p); }

#endif
