/*
 * socket.c - private socket helpers of src/net/ (see socket.h).
 *
 * Owns: nonblocking + close-on-exec socket creation, int sockopts, and the
 * small steps every socket file takes (the open-fd check, the closed
 * state, connect retried on EINTR).  The TCP, UDP and Unix files create
 * every socket through pn__socket so that no pollen socket ever leaks into
 * an exec'd child or blocks a worker.
 */
#include "net/socket.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/sys.h"

int pn__socket(int domain, int type, int proto)
{
    int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    return fd < 0 ? -errno : fd;
}

int pn__set_sockopt_int(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof(v)) < 0 ? -errno : 0;
}

int pn__get_sockopt_int(int fd, int level, int opt, int *v)
{
    socklen_t len = sizeof(*v);
    return getsockopt(fd, level, opt, v, &len) < 0 ? -errno : 0;
}

int pn__sock_error(int fd)
{
    int err = 0;
    int r = pn__get_sockopt_int(fd, SOL_SOCKET, SO_ERROR, &err);
    return r < 0 ? r : -err;
}

void pn__close_fd(int fd)
{
    int saved = errno;
    if (fd >= 0)
        pn__sys.close(fd);
    errno = saved;
}

int pn__sock_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    int r;
    do
        r = pn__sys.connect(fd, sa, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int pn__sock_fd(const pn_async_fd *afd)
{
    return afd->closed || afd->fd < 0 ? -EBADF : afd->fd;
}

void pn__sock_init_closed(pn_async_fd *afd)
{
    *afd = (pn_async_fd){ .fd = -1, .closed = true };
}

void pn__sock_adopt(pn_async_fd *afd, int fd, bool stream)
{
    /* Every other field as pn_async_fd_init leaves it. */
    *afd = (pn_async_fd){ .fd = fd, .closed = false, .is_socket = true, .is_stream = stream };
}

void pn__sock_adopt_listener(pn_async_fd *afd, int fd)
{
    pn__sock_adopt(afd, fd, true);
    afd->is_listener = true;
}

int pn__sock_addr(int fd, pn_sockaddr *out, bool peer)
{
    if (fd < 0)
        return -EBADF;
    pn_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.len = sizeof(a.storage);
    int r = peer ? getpeername(fd, &a.sa, &a.len) : getsockname(fd, &a.sa, &a.len);
    if (r < 0)
        return -errno;
    *out = a;
    return 0;
}
