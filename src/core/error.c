/*
 * error.c - names and messages for pollen errors (common.h).
 *
 * Errors are negative errno values end to end.  PN_ERRNO_MAP below is the one
 * list of the codes a runtime meets, as libuv's UV_ERRNO_MAP: each entry
 * gives the errno name and a fixed English sentence, so the text does not
 * depend on the locale and both functions are thread-safe (static strings,
 * no strerror() buffer).  Both accept -E and +E; a code not in the list gives
 * "unknown error" / "UNKNOWN", never NULL.  Codes are compared with a switch,
 * so a duplicate value (EWOULDBLOCK == EAGAIN, ENOTSUP == EOPNOTSUPP) must
 * appear once only.
 */
#include "pollen/common.h"

#include <errno.h>
#include <limits.h>

#define PN_ERRNO_MAP(X)                                                  \
    X(EPERM, "operation not permitted")                                  \
    X(ENOENT, "no such file or directory")                               \
    X(ESRCH, "no such process")                                          \
    X(EINTR, "interrupted system call")                                  \
    X(EIO, "i/o error")                                                  \
    X(ENXIO, "no such device or address")                                \
    X(E2BIG, "argument list too long")                                   \
    X(EBADF, "bad file descriptor")                                      \
    X(ECHILD, "no child processes")                                      \
    X(EAGAIN, "resource temporarily unavailable")                        \
    X(ENOMEM, "not enough memory")                                       \
    X(EACCES, "permission denied")                                       \
    X(EFAULT, "bad address in system call argument")                     \
    X(EBUSY, "resource busy or locked")                                  \
    X(EEXIST, "file already exists")                                     \
    X(EXDEV, "cross-device link not permitted")                          \
    X(ENODEV, "no such device")                                          \
    X(ENOTDIR, "not a directory")                                        \
    X(EISDIR, "illegal operation on a directory")                        \
    X(EINVAL, "invalid argument")                                        \
    X(ENFILE, "file table overflow")                                     \
    X(EMFILE, "too many open files")                                     \
    X(ENOTTY, "inappropriate ioctl for device")                          \
    X(EFBIG, "file too large")                                           \
    X(ENOSPC, "no space left on device")                                 \
    X(ESPIPE, "invalid seek")                                            \
    X(EROFS, "read-only file system")                                    \
    X(EMLINK, "too many links")                                          \
    X(EPIPE, "broken pipe")                                              \
    X(EDOM, "argument out of domain")                                    \
    X(ERANGE, "result too large")                                        \
    X(EDEADLK, "resource deadlock avoided")                              \
    X(ENAMETOOLONG, "name too long")                                     \
    X(ENOLCK, "no locks available")                                      \
    X(ENOSYS, "function not implemented")                                \
    X(ENOTEMPTY, "directory not empty")                                  \
    X(ELOOP, "too many symbolic links encountered")                      \
    X(ENOMSG, "no message of desired type")                              \
    X(ENODATA, "no data available")                                      \
    X(ETIME, "timer expired")                                            \
    X(EPROTO, "protocol error")                                          \
    X(EOVERFLOW, "value too large for defined data type")                \
    X(EBADFD, "file descriptor in bad state")                            \
    X(EILSEQ, "illegal byte sequence")                                   \
    X(ENOTSOCK, "socket operation on non-socket")                        \
    X(EDESTADDRREQ, "destination address required")                      \
    X(EMSGSIZE, "message too long")                                      \
    X(EPROTOTYPE, "protocol wrong type for socket")                      \
    X(ENOPROTOOPT, "protocol not available")                             \
    X(EPROTONOSUPPORT, "protocol not supported")                         \
    X(ESOCKTNOSUPPORT, "socket type not supported")                      \
    X(EOPNOTSUPP, "operation not supported on socket")                   \
    X(EPFNOSUPPORT, "protocol family not supported")                     \
    X(EAFNOSUPPORT, "address family not supported")                      \
    X(EADDRINUSE, "address already in use")                              \
    X(EADDRNOTAVAIL, "address not available")                            \
    X(ENETDOWN, "network is down")                                       \
    X(ENETUNREACH, "network is unreachable")                             \
    X(ENETRESET, "connection reset by network")                          \
    X(ECONNABORTED, "software caused connection abort")                  \
    X(ECONNRESET, "connection reset by peer")                            \
    X(ENOBUFS, "no buffer space available")                              \
    X(EISCONN, "socket is already connected")                            \
    X(ENOTCONN, "socket is not connected")                               \
    X(ESHUTDOWN, "cannot send after transport endpoint shutdown")        \
    X(ETOOMANYREFS, "too many references")                               \
    X(ETIMEDOUT, "connection timed out")                                 \
    X(ECONNREFUSED, "connection refused")                                \
    X(EHOSTDOWN, "host is down")                                         \
    X(EHOSTUNREACH, "host is unreachable")                               \
    X(EALREADY, "operation already in progress")                         \
    X(EINPROGRESS, "operation in progress")                              \
    X(ESTALE, "stale file handle")                                       \
    X(EDQUOT, "disk quota exceeded")                                     \
    X(ECANCELED, "operation canceled")                                   \
    X(EOWNERDEAD, "owner died")                                          \
    X(ENOTRECOVERABLE, "state not recoverable")                          \
    X(EREMOTEIO, "remote i/o error")

/* INT_MIN has no positive counterpart; it is simply unknown. */
static int to_positive(int err)
{
    return err < 0 && err != INT_MIN ? -err : err;
}

const char *pn_strerror(int err)
{
    switch (to_positive(err)) {
#define X(name, msg) case name: return msg;
    PN_ERRNO_MAP(X)
#undef X
    default:
        return "unknown error";
    }
}

const char *pn_err_name(int err)
{
    switch (to_positive(err)) {
#define X(name, msg) case name: return #name;
    PN_ERRNO_MAP(X)
#undef X
    default:
        return "UNKNOWN";
    }
}
