/*
 * io.c - pn_async_fd and the poll helpers of pollen/io.h.
 *
 * Owns: the life of a pn_async_fd (init, lazy registration, close,
 * release) and the readiness protocol on the task side:
 *
 *   check readiness -> try the syscall -> on EAGAIN clear that readiness
 *   (only if the tick is still the one observed) -> store the waker under
 *   the record lock -> re-check readiness -> PENDING.
 *
 * Invariants:
 *  - afd->reg != NULL only while afd is registered with afd->reactor, and
 *    afd->gen is the record's generation at registration; a record whose
 *    generation differs, or that has PN__READY_SHUTDOWN, belongs to no one
 *    we know: operations complete with -ECANCELED;
 *  - a closed afd (afd->closed) completes every operation with -ECANCELED;
 *  - EAGAIN is never returned: it is waited out; EINTR is retried;
 *  - budget is spent for every operation that completes; when the budget is
 *    0 and the fd is ready the task is woken and PN_PENDING returned before
 *    the syscall runs (so no data is taken and then dropped).
 *
 * When the reactor that holds the registration is freed, it detaches the
 * afd (reg = reactor = NULL) and leaves the fd open: the next operation
 * lazily registers with the reactor of whoever polls it.
 *
 * Lazy registration is not synchronised: the first operations on one afd
 * must not be polled on two threads at once (the current-thread runtime
 * never does; call pn_async_fd_register first otherwise).
 *
 * fstat and fcntl (used once, in pn_async_fd_init) are not in the pn__sys
 * table; every syscall of the I/O path is.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include "core/sys.h"
#include "executor/rt.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"
#include "reactor/uio.h"

int pn_async_fd_init(pn_async_fd *afd, int fd)
{
    if (!afd)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    afd->fd = fd;
    afd->closed = false;
    afd->is_socket = S_ISSOCK(st.st_mode);
    afd->is_stream = S_ISFIFO(st.st_mode);
    afd->is_listener = false;
    if (afd->is_socket) {
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0)
            afd->is_stream = type == SOCK_STREAM;
        int on = 0;
        tl = sizeof(on);
        afd->is_listener = afd->is_stream &&
                           getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &tl) == 0 && on;
    }
    afd->reactor = NULL;
    afd->reg = NULL;
    afd->gen = 0;
    afd->reg_busy = 0;
    afd->rd_tick = afd->wr_tick = 0;
    afd->uio = NULL;
    return 0;
}

static int do_register(pn_async_fd *afd, pn__reactor *r)
{
    pn__registration *reg;
    int err = pn__reactor_register(r, afd->fd, afd, &reg);
    if (err)
        return err;
    afd->reactor = r;
    afd->gen = pn__reg_gen(reg);
    __atomic_store_n(&afd->reg, reg, __ATOMIC_RELEASE);   /* publish last */
    return 0;
}

/* Register once even when a reader and a writer on two workers make their
 * first poll at the same time: the loser of the claim waits for the winner's
 * record instead of adding the fd to epoll a second time. */
static int register_once(pn_async_fd *afd, pn__reactor *r)
{
    while (__atomic_test_and_set(&afd->reg_busy, __ATOMIC_ACQUIRE))
        ;
    int err = 0;
    if (!__atomic_load_n(&afd->reg, __ATOMIC_ACQUIRE))
        err = do_register(afd, r);
    __atomic_clear(&afd->reg_busy, __ATOMIC_RELEASE);
    return err;
}

int pn_async_fd_register(pn_async_fd *afd, struct pn_runtime *rt)
{
    if (!afd || !rt)
        return -EINVAL;
    if (afd->closed || afd->fd < 0)
        return -EBADF;
    if (afd->reg)
        return -EEXIST;
    pn__reactor *r = pn__runtime_reactor(rt);
    if (!r)
        return -EINVAL;
    return do_register(afd, r);
}

/* Deregister if we still own the record (wakes its waiters). */
static void detach(pn_async_fd *afd)
{
    if (afd->reg && afd->reactor && pn__reg_gen(afd->reg) == afd->gen)
        pn__reactor_deregister(afd->reactor, afd->reg);
    afd->reg = NULL;
    afd->reactor = NULL;
}

/* wait: the caller closes the fd at once (pn_async_fd_close) and
 * promises the file is gone, so wait until the requests the close
 * cancelled have ended (a ring per worker ends them when their thread
 * next waits, not when the cancel is submitted). */
static int shut(pn_async_fd *afd, bool wait)
{
    if (afd->closed)
        return -1;
    pn__reactor *r = afd->reactor;
    /* closed first: a waiter woken by the deregistration sees it. */
    afd->closed = true;
    struct pn__uio *io = pn__uio_close_hold(afd);
    detach(afd);
    pn__reactor_settle(r);  /* the kernel lets go of the file first */
    pn__uio_let_go(io, wait);
    int fd = afd->fd;
    afd->fd = -1;
    return fd;
}

int pn__async_fd_shut(pn_async_fd *afd)
{
    return shut(afd, false);
}

int pn__async_fd_close_fd(int fd)
{
    /* Linux closes the fd even when close() says EINTR: never retry. */
    if (pn__sys.close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}

static int close_afd(pn_async_fd *afd, bool listener)
{
    if (!afd)
        return -EINVAL;
    pn__reactor *r = afd->reactor;
    int fd = shut(afd, true);
    /* A listener stops listening now, its waiters already woken with
     * -ECANCELED: a request of pollen's still in the kernel (a readiness
     * poll, an accept) holds the file, so close(2) alone could leave it
     * taking connections into its backlog until that request ends, which
     * on io_uring may wait for a busy worker's turn. */
    if (listener && fd >= 0)
        (void)pn__sys.shutdown(fd, SHUT_RD);
    /* The cancels this thread queued on its own ring go now, not with its
     * next batch: until they do, the kernel's requests keep the file open
     * (a listener accepting, a peer waiting for the end of the stream)
     * however long the task that closes goes on running.  (The close
     * future needs no such submit: its close request follows them in the
     * same batch.) */
    pn__reactor_flush(r);
    return fd < 0 ? 0 : pn__async_fd_close_fd(fd);
}

int pn_async_fd_close(pn_async_fd *afd) { return close_afd(afd, false); }

int pn__async_fd_close_listener(pn_async_fd *afd) { return close_afd(afd, true); }

int pn_async_fd_release(pn_async_fd *afd)
{
    if (!afd || afd->closed || afd->fd < 0)
        return -EBADF;
    int err = pn__uio_release(afd);
    if (err)
        return err;
    afd->closed = true;
    detach(afd);
    int fd = afd->fd;
    afd->fd = -1;
    return fd;
}

/* ---- readiness protocol -------------------------------------------------- */

static uint32_t side_mask(unsigned interest)
{
    uint32_t m = 0;
    if (interest & PN_READABLE)
        m |= PN__READ_SIDE;
    if (interest & PN_WRITABLE)
        m |= PN__WRITE_SIDE;
    return m;
}

/* The bits an EAGAIN proves stale.  CLOSED bits are final: never cleared. */
static uint32_t clear_mask(unsigned interest)
{
    uint32_t m = PN__READY_ERROR;
    if (interest & PN_READABLE)
        m |= PN__READY_READ;
    if (interest & PN_WRITABLE)
        m |= PN__READY_WRITE;
    return m;
}

/* Registered (lazily, with cx->reactor) and usable?  0 or -errno. */
static int prepare(pn_async_fd *afd, pn_cx *cx)
{
    if (afd->closed)
        return -ECANCELED;
    if (afd->fd < 0)
        return -EBADF;
    if (!__atomic_load_n(&afd->reg, __ATOMIC_ACQUIRE)) {
        if (!cx->reactor)
            return -EINVAL;
        return register_once(afd, cx->reactor);
    }
    return 0;
}

/* Load the readiness word; -ECANCELED if the record is no longer ours (the
 * generation is in the same word, so a match proves the bits are ours). */
static int load_ready(pn_async_fd *afd, uint64_t *word)
{
    pn__registration *reg = afd->reg;
    uint64_t w = atomic_load(&reg->readiness);
    if (PN__GEN(w) != afd->gen || (w & PN__READY_SHUTDOWN))
        return -ECANCELED;
    *word = w;
    return 0;
}

static void swap_in(pn_waker *slot, const pn_waker *w, pn_waker *old)
{
    if (slot->vt && pn_waker_will_wake(slot, w))
        return;
    *old = *slot;
    *slot = pn_waker_clone(w);
}

/* Store the task's waker in the slot(s) of `interest`.  A different waker
 * found there (another task waiting in the same direction) is woken, after
 * the lock, so that it polls again (pollen/io.h).  Two tasks that keep
 * waiting in the same direction therefore displace each other on every
 * poll (a busy loop, not a hang): one task per direction is the supported
 * use; a waiter list would lift this. */
static void store_waker(pn__registration *reg, unsigned interest, const pn_waker *w)
{
    pn_waker old_rd = PN_WAKER_NONE, old_wr = PN_WAKER_NONE;
    pn__reg_lock(reg);
    if (interest & PN_READABLE)
        swap_in(&reg->reader, w, &old_rd);
    if (interest & PN_WRITABLE)
        swap_in(&reg->writer, w, &old_wr);
    pn__reg_unlock(reg);
    pn_waker_wake(&old_rd);
    pn_waker_wake(&old_wr);
}

/*
 * Is `interest` ready?  1 (with *word), 0 (waker stored: return PN_PENDING)
 * or -ECANCELED.
 *
 * The lost-wakeup window: the dispatcher (epoll.c) first sets readiness,
 * then takes the record lock and takes the wakers.  We first store our
 * waker under the same lock, then re-load readiness.  The two critical
 * sections are ordered by the lock:
 *  - the dispatcher's is later: it finds our waker and wakes it;
 *  - ours is later: the dispatcher's readiness update happened before its
 *    unlock, hence before our lock, hence before our re-load, which sees
 *    it, and we return ready instead of PENDING.
 * Without the re-load, an event landing between our first check and the
 * waker store would be seen by nobody, and (edge-triggered) never again.
 */
static int wait_ready(pn_async_fd *afd, pn_cx *cx, unsigned interest, uint64_t *word)
{
    uint32_t mask = side_mask(interest);
    int err = load_ready(afd, word);
    if (err)
        return err;
    if (*word & mask)
        return 1;
    if (atomic_load_explicit(&afd->reg->unwatched, memory_order_relaxed))
        pn__reactor_watch(afd->reactor, afd->reg);
    store_waker(afd->reg, interest, cx->waker);
    err = load_ready(afd, word);
    if (err)
        return err;
    return (*word & mask) ? 1 : 0;
}

static void remember_tick(pn_async_fd *afd, unsigned interest, uint64_t word)
{
    if (interest & PN_READABLE)
        afd->rd_tick = (uint16_t)PN__TICK(word);
    if (interest & PN_WRITABLE)
        afd->wr_tick = (uint16_t)PN__TICK(word);
}

pn_poll pn_async_fd_poll_ready(pn_async_fd *afd, pn_cx *cx, unsigned interest, int *res)
{
    if (!res)
        return PN_READY;
    interest &= PN_READABLE | PN_WRITABLE;
    if (!afd || !cx || !interest) {
        *res = -EINVAL;
        return PN_READY;
    }
    int err = prepare(afd, cx);
    if (err) {
        *res = err;
        return PN_READY;
    }
    pn_poll p;
    if (interest == PN_READABLE && afd->is_socket && afd->is_stream &&
        pn__uio_readable(afd, cx, res, &p))
        return p;
    uint64_t word;
    int r = wait_ready(afd, cx, interest, &word);
    if (r < 0) {
        *res = r;
        return PN_READY;
    }
    if (r == 0)
        return PN_PENDING;
    if (pn_cx_budget_spend(cx) == PN_PENDING)
        return PN_PENDING;
    remember_tick(afd, interest, word);
    int mask = 0;
    if ((interest & PN_READABLE) && (word & PN__READ_SIDE))
        mask |= PN_READABLE;
    if ((interest & PN_WRITABLE) && (word & PN__WRITE_SIDE))
        mask |= PN_WRITABLE;
    *res = mask;
    return PN_READY;
}

void pn_async_fd_clear_ready(pn_async_fd *afd, unsigned interest)
{
    if (!afd || afd->closed || !afd->reg)
        return;
    uint64_t gen = (uint64_t)afd->gen << PN__GEN_SHIFT;
    if (interest & PN_READABLE)
        pn__reg_clear_ready(afd->reg, clear_mask(PN_READABLE),
                            gen | (uint64_t)afd->rd_tick << PN__TICK_SHIFT);
    if (interest & PN_WRITABLE)
        pn__reg_clear_ready(afd->reg, clear_mask(PN_WRITABLE),
                            gen | (uint64_t)afd->wr_tick << PN__TICK_SHIFT);
}

pn_poll pn_async_fd_poll_io(pn_async_fd *afd, pn_cx *cx, unsigned interest,
                            pn_io_op op, void *arg, ssize_t *res)
{
    if (!res)
        return PN_READY;
    interest &= PN_READABLE | PN_WRITABLE;
    if (!afd || !cx || !op || !interest) {
        *res = -EINVAL;
        return PN_READY;
    }
    int err = prepare(afd, cx);
    if (err) {
        *res = err;
        return PN_READY;
    }
    for (;;) {
        uint64_t word;
        int r = wait_ready(afd, cx, interest, &word);
        if (r < 0) {
            *res = r;
            return PN_READY;
        }
        if (r == 0)
            return PN_PENDING;
        if (cx->budget == 0) {
            pn_waker_wake_by_ref(cx->waker);
            return PN_PENDING;
        }
        ssize_t n;
        do
            n = op(afd->fd, arg);
        while (n == -EINTR);
        if (n != -EAGAIN && n != -EWOULDBLOCK) {
            (void)pn_cx_budget_spend(cx);
            remember_tick(afd, interest, word);   /* for a clear after a short op */
            *res = n;
            return PN_READY;
        }
        /* The readiness we acted on was stale.  Clear it unless an event
         * came in since we loaded it (then try again). */
        pn__registration *reg = afd->reg;
        pn__reg_clear_ready(reg, clear_mask(interest), word);
        uint64_t now;
        if (load_ready(afd, &now) == 0 && PN__TICK(now) == PN__TICK(word) &&
            (now & side_mask(interest))) {
            /* Only CLOSED bits are left and the syscall still says EAGAIN
             * (seen only with injected faults): yield rather than spin. */
            pn_waker_wake_by_ref(cx->waker);
            return PN_PENDING;
        }
    }
}

/* ---- the operations ---------------------------------------------------- */

struct buf_arg { void *buf; size_t len; bool sock; };
struct iov_arg { const struct iovec *iov; int iovcnt; bool sock; };

static ssize_t op_read(int fd, void *p)
{
    struct buf_arg *a = p;
    /* recv(2) on a socket: read(2) goes through the VFS layers first. */
    ssize_t n = a->sock ? pn__sys.recv(fd, a->buf, a->len, 0)
                        : pn__sys.read(fd, a->buf, a->len);
    return n < 0 ? -errno : n;
}

static ssize_t op_write(int fd, void *p)
{
    struct buf_arg *a = p;
    ssize_t n = a->sock ? pn__sys.send(fd, a->buf, a->len, MSG_NOSIGNAL)
                        : pn__sys.write(fd, a->buf, a->len);
    return n < 0 ? -errno : n;
}

static ssize_t op_writev(int fd, void *p)
{
    struct iov_arg *a = p;
    ssize_t n;
    if (a->sock) {
        struct msghdr msg = { .msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt };
        n = pn__sys.sendmsg(fd, &msg, MSG_NOSIGNAL);
    } else {
        n = pn__sys.writev(fd, a->iov, a->iovcnt);
    }
    return n < 0 ? -errno : n;
}

struct accept_arg { struct sockaddr *sa; socklen_t *salen; socklen_t cap; };

static ssize_t op_accept(int fd, void *p)
{
    struct accept_arg *a = p;
    if (a->salen)
        *a->salen = a->cap;            /* accept4 shrank it on a failed try */
    int n = pn__sys.accept4(fd, a->sa, a->salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return n < 0 ? -errno : n;
}

/* Stream sockets on an io_uring reactor in completion mode go through
 * uio.c; true if it took the operation (*out, *res set). */
static bool completion(pn_async_fd *afd, pn_cx *cx, ssize_t *res, pn_poll *out)
{
    if (!res || !afd || !cx || !afd->is_socket || !afd->is_stream)
        return false;
    int err = prepare(afd, cx);
    if (err) {
        *res = err;
        *out = PN_READY;
        return true;
    }
    return false;
}

pn_poll pn_async_fd_poll_read(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len, ssize_t *res)
{
    pn_poll p;
    if (completion(afd, cx, res, &p) ||
        (afd && afd->is_socket && afd->is_stream && cx && res &&
         pn__uio_read(afd, cx, buf, len, false, res, &p)))
        return p;
    struct buf_arg a = { buf, len, afd && afd->is_socket };
    p = pn_async_fd_poll_io(afd, cx, PN_READABLE, op_read, &a, res);
    /* A short read from a stream drained its buffer: the next read would
     * only say EAGAIN, so wait for the next edge instead of making it (the
     * tick keeps an event that came in meanwhile). */
    if (p == PN_READY && *res > 0 && (size_t)*res < len && afd->is_stream)
        pn_async_fd_clear_ready(afd, PN_READABLE);
    return p;
}

pn_poll pn_async_fd_poll_write(pn_async_fd *afd, pn_cx *cx, const void *buf, size_t len,
                               ssize_t *res)
{
    pn_poll p;
    struct iovec one = { (void *)buf, len };
    if (completion(afd, cx, res, &p) ||
        (afd && afd->is_socket && afd->is_stream && cx && res &&
         pn__uio_write(afd, cx, &one, 1, res, &p)))
        return p;
    struct buf_arg a = { (void *)buf, len, afd && afd->is_socket };
    p = pn_async_fd_poll_io(afd, cx, PN_WRITABLE, op_write, &a, res);
    /* Likewise a short write filled the send buffer. */
    if (p == PN_READY && *res > 0 && (size_t)*res < len && afd->is_stream)
        pn_async_fd_clear_ready(afd, PN_WRITABLE);
    return p;
}

pn_poll pn_async_fd_poll_writev(pn_async_fd *afd, pn_cx *cx, const struct iovec *iov,
                                int iovcnt, ssize_t *res)
{
    pn_poll p;
    if (completion(afd, cx, res, &p) ||
        (afd && afd->is_socket && afd->is_stream && cx && res && iov && iovcnt > 0 &&
         pn__uio_write(afd, cx, iov, iovcnt, res, &p)))
        return p;
    struct iov_arg a = { iov, iovcnt, afd && afd->is_socket };
    return pn_async_fd_poll_io(afd, cx, PN_WRITABLE, op_writev, &a, res);
}

bool pn__async_fd_poll_connect(pn_async_fd *afd, pn_cx *cx, const struct sockaddr *sa,
                               socklen_t len, int *res, pn_poll *out)
{
    if (!afd || !cx || !res || !out || !afd->is_socket || !afd->is_stream)
        return false;
    if (sa && !pn__uio_applies(afd->reactor ? afd->reactor : cx->reactor))
        return false;
    int err = afd->closed ? -ECANCELED : sa ? prepare(afd, cx) : 0;
    if (err) {
        *res = err;
        *out = PN_READY;
        return true;
    }
    return pn__uio_connect(afd, cx, sa, len, res, out);
}

pn_poll pn__async_fd_poll_accept_addr(pn_async_fd *afd, pn_cx *cx, struct sockaddr *sa,
                                      socklen_t *salen, ssize_t *res)
{
    pn_poll p;
    if (completion(afd, cx, res, &p) ||
        (afd && afd->is_socket && afd->is_stream && cx && res &&
         pn__uio_accept(afd, cx, sa, salen, res, &p)))
        return p;
    struct accept_arg a = { sa, salen, salen ? *salen : 0 };
    return pn_async_fd_poll_io(afd, cx, PN_READABLE, op_accept, &a, res);
}

pn_poll pn_async_fd_poll_accept(pn_async_fd *afd, pn_cx *cx, int *res)
{
    ssize_t n = 0;
    pn_poll p = pn__async_fd_poll_accept_addr(afd, cx, NULL, NULL, &n);
    if (p == PN_READY && res)
        *res = (int)n;
    return p;
}

static ssize_t op_peek(int fd, void *p)
{
    struct buf_arg *a = p;
    ssize_t n = pn__sys.recv(fd, a->buf, a->len, MSG_PEEK);
    return n < 0 ? -errno : n;
}

pn_poll pn__async_fd_poll_peek(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len,
                               ssize_t *res)
{
    pn_poll p;
    if (completion(afd, cx, res, &p) ||
        (afd && afd->is_socket && afd->is_stream && cx && res &&
         pn__uio_read(afd, cx, buf, len, true, res, &p)))
        return p;
    struct buf_arg a = { buf, len, true };
    return pn_async_fd_poll_io(afd, cx, PN_READABLE, op_peek, &a, res);
}

void pn__async_fd_forget(pn_async_fd *afd, unsigned interest, const pn_waker *mine)
{
    /* No parked waker (never polled, or READY): nothing to take back, and
     * afd may be gone already. */
    if (!afd || pn_waker_is_none(mine))
        return;
    pn__uio_forget(afd, interest, mine);
    if (afd->closed || !afd->reg)
        return;
    pn__registration *reg = afd->reg;
    if (pn__reg_gen(reg) != afd->gen)
        return;
    /* Only take back our own waker: another task may have taken the slot
     * since (and must still be woken). */
    pn_waker rd = PN_WAKER_NONE, wr = PN_WAKER_NONE;
    pn__reg_lock(reg);
    if ((interest & PN_READABLE) && pn_waker_will_wake(&reg->reader, mine)) {
        rd = reg->reader;
        reg->reader = PN_WAKER_NONE;
    }
    if ((interest & PN_WRITABLE) && pn_waker_will_wake(&reg->writer, mine)) {
        wr = reg->writer;
        reg->writer = PN_WAKER_NONE;
    }
    pn__reg_unlock(reg);
    pn_waker_drop(&rd);
    pn_waker_drop(&wr);
}
