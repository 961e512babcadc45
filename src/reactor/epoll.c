/*
 * epoll.c - the reactor: registrations, readiness dispatch, the wake
 * eventfd, and (in its own section) the epoll backend.
 *
 * Owns: the slab of registration records, the backend fds (epoll fd and
 * the wake eventfd) and the events array.
 *
 * Invariants:
 *  - every fd is registered once, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET; the
 *    event token is index | (uint64_t)gen << 32, index UINT32_MAX is the
 *    wake eventfd;
 *  - an event whose generation differs from its record's is dropped: the
 *    fd was deregistered (and maybe its number and record reused);
 *  - readiness is set (bits OR'ed, tick bumped, one CAS) BEFORE the record
 *    lock is taken to collect wakers; the poll helpers store their waker
 *    under that lock and re-check readiness after it (io.c), so no edge is
 *    lost between a check and a waker registration;
 *  - wakers are taken out of the record under its lock and woken after the
 *    lock is released (a wake may run arbitrary code);
 *  - a new record starts READ|WRITE with tick 0 (operations try the
 *    syscall first; an EAGAIN clears the guess);
 *  - wake_pending is true from the first pn__reactor_wake that wrote the
 *    eventfd until the reactor drained it: later wakes do not write.
 *
 * Backend split: everything epoll-specific (epoll_create1, epoll_ctl,
 * epoll_wait, the EPOLL* -> PN__READY_* mapping) is in the "epoll backend"
 * section behind `struct backend`; the rest is backend-independent and an
 * io_uring readiness backend can provide another `struct backend`.
 *
 * Slab alloc/release are serialised by a small spin lock (register and
 * deregister may come from several workers later); lookups from the
 * dispatcher take no lock (see slab.h).  A record that is freed and reused
 * while the dispatcher handles an event for its old generation can get one
 * spurious readiness bit: harmless, the next syscall says EAGAIN and the
 * bit is cleared.
 */
#include <string.h>
#include <sys/eventfd.h>
#include "core/sys.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"

#define WAKE_TOKEN ((uint64_t)UINT32_MAX)
#define MAX_EVENTS_LIMIT (1u << 20)

struct backend;

struct pn__reactor {
    const struct backend *be;
    int epfd;
    int wakefd;
    atomic_bool wake_pending;
    atomic_flag slab_lock;
    pn__slab slab;
    unsigned max_events;
    struct epoll_event *events;
};

/* ===================================================================== */
/* epoll backend                                                          */
/* ===================================================================== */

struct backend {
    const char *name;
    int (*open)(pn__reactor *r);                       /* 0 or -errno */
    int (*add)(pn__reactor *r, int fd, uint64_t token); /* 0 or -errno */
    void (*del)(pn__reactor *r, int fd);
    /* Wait; returns the number of events (then fetched with event()), or
     * -errno.  */
    int (*wait)(pn__reactor *r, int64_t timeout_ns);
    void (*event)(pn__reactor *r, int i, uint64_t *token, uint32_t *bits);
    void (*close)(pn__reactor *r);
};

static int ep_open(pn__reactor *r)
{
    r->epfd = pn__sys.epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0)
        return -errno;
    r->wakefd = pn__sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->wakefd < 0)
        return -errno;
    /* Level-triggered: if a drain ever fails the fd fires again. */
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WAKE_TOKEN };
    if (pn__sys.epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wakefd, &ev) < 0)
        return -errno;
    return 0;
}

static int ep_add(pn__reactor *r, int fd, uint64_t token)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = token,
    };
    if (pn__sys.epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

static void ep_del(pn__reactor *r, int fd)
{
    struct epoll_event ev = { 0 };  /* non-NULL for pre-2.6.9 kernels */
    (void)pn__sys.epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, &ev);
}

/* The kernel's default timer slack (50 us): below it the 0.1% rule is moot. */
#define SLACK_FLOOR_NS 50000

static int ep_wait(pn__reactor *r, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    /* The kernel lets a poll-family timeout fire up to max(timeout / 1000,
     * the thread's timer slack) late: 2 ms for a 2 s wait.  Ask for a
     * timeout shortened by that 0.1% so the wake lands before the deadline;
     * the loop then waits the short remainder, whose slack is small.  An
     * early wake is harmless: the timer wheel never fires an entry early. */
    if (timeout_ns > SLACK_FLOOR_NS * 1000)
        timeout_ns -= timeout_ns / 1000 + 1;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    int n = pn__sys.epoll_wait(r->epfd, r->events, (int)r->max_events, tp);
    return n < 0 ? -errno : n;
}

static uint32_t ep_map(uint32_t ev)
{
    uint32_t bits = 0;
    if (ev & EPOLLIN)
        bits |= PN__READY_READ;
    if (ev & EPOLLOUT)
        bits |= PN__READY_WRITE;
    if (ev & EPOLLRDHUP)
        bits |= PN__READY_READ_CLOSED;
    if (ev & EPOLLHUP)
        bits |= PN__READY_READ_CLOSED | PN__READY_WRITE_CLOSED;
    /* Both sides retry their syscall and see the error. */
    if (ev & EPOLLERR)
        bits |= PN__READY_ERROR | PN__READY_READ | PN__READY_WRITE;
    return bits;
}

static void ep_event(pn__reactor *r, int i, uint64_t *token, uint32_t *bits)
{
    *token = r->events[i].data.u64;
    *bits = ep_map(r->events[i].events);
}

static void ep_close(pn__reactor *r)
{
    if (r->wakefd >= 0)
        pn__sys.close(r->wakefd);
    if (r->epfd >= 0)
        pn__sys.close(r->epfd);
    r->wakefd = r->epfd = -1;
}

static const struct backend epoll_backend = {
    .name = "epoll",
    .open = ep_open,
    .add = ep_add,
    .del = ep_del,
    .wait = ep_wait,
    .event = ep_event,
    .close = ep_close,
};

/* ===================================================================== */
/* backend-independent reactor                                            */
/* ===================================================================== */

static void slab_lock(pn__reactor *r)
{
    while (atomic_flag_test_and_set_explicit(&r->slab_lock, memory_order_acquire))
        ;
}

static void slab_unlock(pn__reactor *r)
{
    atomic_flag_clear_explicit(&r->slab_lock, memory_order_release);
}

int pn__reactor_new(unsigned max_events, pn__reactor **out)
{
    if (!out || max_events == 0 || max_events > MAX_EVENTS_LIMIT)
        return -EINVAL;
    *out = NULL;
    pn__reactor *r = pn__calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->be = &epoll_backend;
    r->epfd = r->wakefd = -1;
    atomic_init(&r->wake_pending, false);
    atomic_flag_clear(&r->slab_lock);
    pn__slab_init(&r->slab);
    r->max_events = max_events;
    r->events = pn__calloc(max_events, sizeof *r->events);
    if (!r->events) {
        pn__free(r);
        return -ENOMEM;
    }
    int err = r->be->open(r);
    if (err) {
        r->be->close(r);
        pn__free(r->events);
        pn__free(r);
        return err;
    }
    *out = r;
    return 0;
}

static void detach_live(pn__registration *reg, void *arg)
{
    (void)arg;
    /* The owner stays open; its next operation registers lazily with the
     * reactor of whoever polls it (see io.c). */
    if (reg->owner) {
        reg->owner->reg = NULL;
        reg->owner->reactor = NULL;
    }
    pn_waker_drop(&reg->reader);
    pn_waker_drop(&reg->writer);
    reg->owner = NULL;
}

void pn__reactor_free(pn__reactor *r)
{
    if (!r)
        return;
    pn__slab_each_live(&r->slab, detach_live, NULL);
    r->be->close(r);
    pn__slab_destroy(&r->slab);
    pn__free(r->events);
    pn__free(r);
}

int pn__reactor_register(pn__reactor *r, int fd, pn_async_fd *owner,
                         pn__registration **out)
{
    if (!r || !out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    pn__registration *reg;
    slab_lock(r);
    int err = pn__slab_alloc(&r->slab, &reg);
    if (!err) {
        reg->fd = fd;      /* live from here: reactor_free would detach it */
        reg->owner = owner;
        /* Optimistic: the first operation tries its syscall at once instead
         * of waiting a reactor turn for the initial edge; an EAGAIN clears
         * this (tick 0) unless that edge has come in since. */
        atomic_store(&reg->readiness, PN__READY_READ | PN__READY_WRITE);
    }
    slab_unlock(r);
    if (err)
        return err;
    uint64_t token = (uint64_t)reg->index | (uint64_t)atomic_load(&reg->gen) << 32;
    err = r->be->add(r, fd, token);
    if (err) {
        slab_lock(r);
        pn__slab_release(&r->slab, reg);
        slab_unlock(r);
        return err;
    }
    *out = reg;
    return 0;
}

void pn__reactor_deregister(pn__reactor *r, pn__registration *reg)
{
    if (!r || !reg || reg->fd < 0)
        return;
    r->be->del(r, reg->fd);
    pn__reg_set_ready(reg, PN__READY_SHUTDOWN);
    pn__reg_lock(reg);
    pn_waker rd = reg->reader, wr = reg->writer;
    reg->reader = reg->writer = PN_WAKER_NONE;
    pn__reg_unlock(reg);
    /* Release bumps the generation before the waiters run, so they see a
     * mismatch (or the SHUTDOWN bit) and complete with -ECANCELED. */
    slab_lock(r);
    pn__slab_release(&r->slab, reg);
    slab_unlock(r);
    pn_waker_wake(&rd);
    pn_waker_wake(&wr);
}

/* Set readiness on the record named by `token` and wake its waiters.
 * Returns 1 if dispatched, 0 if dropped (stale generation). */
static int dispatch(pn__reactor *r, uint64_t token, uint32_t bits)
{
    uint32_t index = (uint32_t)token, gen = (uint32_t)(token >> 32);
    pn__registration *reg = pn__slab_get(&r->slab, index);
    if (!reg || atomic_load(&reg->gen) != gen || bits == 0)
        return 0;
    uint32_t now = pn__reg_set_ready(reg, bits);
    pn_waker rd = PN_WAKER_NONE, wr = PN_WAKER_NONE;
    pn__reg_lock(reg);
    if (atomic_load(&reg->gen) == gen) {
        if (now & PN__READ_SIDE) {
            rd = reg->reader;
            reg->reader = PN_WAKER_NONE;
        }
        if (now & PN__WRITE_SIDE) {
            wr = reg->writer;
            reg->writer = PN_WAKER_NONE;
        }
    }
    pn__reg_unlock(reg);
    pn_waker_wake(&rd);
    pn_waker_wake(&wr);
    return 1;
}

static void drain_wake(pn__reactor *r)
{
    uint64_t v;
    ssize_t n;
    do
        n = pn__sys.read(r->wakefd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
    /* Drained first, flag cleared second: a wake that lands in between
     * sees the flag still set and skips the write, but this turn is
     * returning anyway, so its caller looks at its queues afterwards. */
    atomic_store(&r->wake_pending, false);
}

int pn__reactor_poll(pn__reactor *r, int64_t timeout_ns)
{
    if (!r)
        return -EINVAL;
    int n = r->be->wait(r, timeout_ns);
    if (n == -EINTR)
        return 0;
    if (n < 0)
        return n;
    int dispatched = 0;
    for (int i = 0; i < n; i++) {
        uint64_t token;
        uint32_t bits;
        r->be->event(r, i, &token, &bits);
        if (token == WAKE_TOKEN) {
            drain_wake(r);
            continue;
        }
        dispatched += dispatch(r, token, bits);
    }
    return dispatched;
}

void pn__reactor_wake(pn__reactor *r)
{
    if (!r || atomic_exchange(&r->wake_pending, true))
        return;
    uint64_t one = 1;
    ssize_t n;
    do
        n = pn__sys.write(r->wakefd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is full, so the fd is readable already.  Any
     * other failure wrote nothing: let the next wake try again. */
    if (n < 0 && errno != EAGAIN)
        atomic_store(&r->wake_pending, false);
}

size_t pn__reactor_count(const pn__reactor *r)
{
    return r ? r->slab.live : 0;
}
