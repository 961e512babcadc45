/*
 * sys.c - the real syscalls behind the pn__sys table (see sys.h).
 *
 * Owns: the definition of pn__sys, pn__sys_reset(), and epoll_wait with
 * epoll_pwait2 semantics (nanosecond timespec timeout, NULL = forever).
 *
 * epoll_pwait2 (Linux 5.11) is called through syscall(2) because glibc 2.36
 * is the first to wrap it.  When the kernel answers ENOSYS (older kernel, or
 * a seccomp filter that denies it) we remember that in a static flag and fall
 * back to epoll_wait(2), whose timeout is in milliseconds: the timespec is
 * rounded UP to the next whole millisecond so the reactor never wakes before
 * a timer's deadline (an early wakeup would make the timer driver spin).
 *
 *   timeout            epoll_pwait2       epoll_wait fallback
 *   NULL               NULL (forever)     -1
 *   {0, 0}             {0, 0}             0
 *   {0, 1}             {0, 1}             1 ms
 *   {1, 500000}        {1, 500000}        1001 ms
 *   > INT_MAX ms       as is              INT_MAX ms
 */
#include <sys/mman.h>
#include "core/sys.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#ifndef SYS_epoll_pwait2
#if defined(__NR_epoll_pwait2)
#define SYS_epoll_pwait2 __NR_epoll_pwait2
#elif defined(__x86_64__) || defined(__aarch64__)
#define SYS_epoll_pwait2 441 /* same number on both (asm-generic table) */
#endif
#endif

/*
 * Set once the kernel has said ENOSYS; read and written from any worker
 * thread, so atomic.  Relaxed is enough: a stale read only costs one more
 * ENOSYS.
 */
static atomic_bool no_pwait2;

/* Whole milliseconds, rounded up, clamped to INT_MAX; -1 for NULL. */
static int timespec_to_ms_ceil(const struct timespec *ts)
{
    if (ts == NULL)
        return -1;
    if (ts->tv_sec < 0 || (ts->tv_sec == 0 && ts->tv_nsec <= 0))
        return 0;
    if (ts->tv_sec >= INT_MAX / 1000)
        return INT_MAX;
    long long ms = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int epoll_wait_ts(int epfd, struct epoll_event *evs, int maxevents,
                         const struct timespec *timeout)
{
#ifdef SYS_epoll_pwait2
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        /* The last argument is the sigmask size; NULL mask = keep ours. */
        long r = syscall(SYS_epoll_pwait2, epfd, evs, maxevents, timeout,
                         NULL, (size_t)(_NSIG / 8));
        if (r >= 0 || errno != ENOSYS)
            return (int)r;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
#endif
    return epoll_wait(epfd, evs, maxevents, timespec_to_ms_ceil(timeout));
}

/*
 * Adapters where glibc's prototype differs from the table's: with
 * _GNU_SOURCE, accept4 and connect take a transparent union of sockaddr
 * pointers, which does not convert to a plain function pointer.
 */
static int sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return accept4(fd, addr, len, flags);
}

static int sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return connect(fd, addr, len);
}

#define SYS_REAL {                   \
    .read = read,                    \
    .write = write,                  \
    .readv = readv,                  \
    .writev = writev,                \
    .recv = recv,                    \
    .send = send,                    \
    .sendmsg = sendmsg,              \
    .recvmsg = recvmsg,              \
    .accept4 = sys_accept4,          \
    .connect = sys_connect,          \
    .shutdown = shutdown,            \
    .close = close,                  \
    .epoll_create1 = epoll_create1,  \
    .epoll_ctl = epoll_ctl,          \
    .epoll_wait = epoll_wait_ts,     \
    .eventfd = eventfd,              \
    .uring_init = uring_init,        \
    .malloc = malloc,                \
    .calloc = calloc,                \
    .free = free,                    \
    .mmap = mmap,                    \
}

#ifdef PN_WITH_URING
#include <liburing.h>
static int uring_init(unsigned entries, struct io_uring *ring,
                      struct io_uring_params *p)
{
    return io_uring_queue_init_params(entries, ring, p);
}
#else
static int uring_init(unsigned entries, struct io_uring *ring,
                      struct io_uring_params *p)
{
    (void)entries, (void)ring, (void)p;
    return -ENOSYS;
}
#endif

struct pn__sys pn__sys = SYS_REAL;

void pn__sys_reset(void)
{
    static const struct pn__sys real = SYS_REAL;

    pn__sys = real;
}
