/*
 * epoll.c - the epoll backend of the reactor.
 *
 * Owns: the epoll fd, the wake eventfd and the events array (struct ep).
 *
 * Every fd is registered once, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, with its
 * token in the data word; the wake eventfd is level-triggered (if a drain
 * ever fails it fires again) with PN__WAKE_TOKEN.  Timeouts go to
 * epoll_pwait2 with nanoseconds, shortened by the kernel's 0.1% poll slack
 * (see ep_turn).
 */
#include <string.h>
#include <sys/eventfd.h>
#include "core/sys.h"
#include "reactor/backend.h"

struct ep {
    int epfd;
    int wakefd;
    struct epoll_event events[];    /* max_events */
};

static void ep_close(pn__reactor *r)
{
    struct ep *ep = r->be_data;
    if (!ep)
        return;
    if (ep->wakefd >= 0)
        pn__sys.close(ep->wakefd);
    if (ep->epfd >= 0)
        pn__sys.close(ep->epfd);
    pn__free(ep);
    r->be_data = NULL;
}

static int ep_open(pn__reactor *r)
{
    struct ep *ep = pn__calloc(1, sizeof *ep + r->max_events * sizeof ep->events[0]);
    if (!ep)
        return -ENOMEM;
    r->be_data = ep;
    ep->wakefd = -1;
    ep->epfd = pn__sys.epoll_create1(EPOLL_CLOEXEC);
    int err = 0;
    if (ep->epfd < 0)
        err = -errno;
    if (!err) {
        ep->wakefd = pn__sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ep->wakefd < 0)
            err = -errno;
    }
    if (!err) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = PN__WAKE_TOKEN };
        if (pn__sys.epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->wakefd, &ev) < 0)
            err = -errno;
    }
    if (err)
        ep_close(r);
    return err;
}

static int ep_add(pn__reactor *r, pn__registration *reg, uint64_t token)
{
    struct ep *ep = r->be_data;
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = token,
    };
    if (pn__sys.epoll_ctl(ep->epfd, EPOLL_CTL_ADD, reg->fd, &ev) < 0)
        return -errno;
    return 0;
}

static void ep_del(pn__reactor *r, pn__registration *reg, uint64_t token)
{
    (void)token;
    struct ep *ep = r->be_data;
    struct epoll_event ev = { 0 };  /* non-NULL for pre-2.6.9 kernels */
    (void)pn__sys.epoll_ctl(ep->epfd, EPOLL_CTL_DEL, reg->fd, &ev);
}

static void drain_wake(struct ep *ep)
{
    uint64_t v;
    ssize_t n;
    do
        n = pn__sys.read(ep->wakefd, &v, sizeof v);
    while (n < 0 && errno == EINTR);
}

/* The kernel's default timer slack (50 us): below it the 0.1% rule is moot. */
#define SLACK_FLOOR_NS 50000

static int ep_turn(pn__reactor *r, int64_t timeout_ns)
{
    struct ep *ep = r->be_data;
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
    int n = pn__sys.epoll_wait(ep->epfd, ep->events, (int)r->max_events, tp);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int dispatched = 0;
    for (int i = 0; i < n; i++) {
        uint64_t token = ep->events[i].data.u64;
        if (token == PN__WAKE_TOKEN) {
            drain_wake(ep);
            /* Drained first, flag cleared second: a wake that lands in
             * between sees the flag still set and skips the write, but this
             * turn is returning anyway, so its caller looks at its queues
             * afterwards. */
            pn__reactor_woken(r);
            continue;
        }
        dispatched += pn__reactor_dispatch(r, token, pn__poll_to_ready(ep->events[i].events));
    }
    return dispatched;
}

static int ep_wake(pn__reactor *r)
{
    struct ep *ep = r->be_data;
    uint64_t one = 1;
    ssize_t n;
    do
        n = pn__sys.write(ep->wakefd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is full, so the fd is readable already. */
    if (n < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

const struct pn__backend pn__epoll_backend = {
    .name = "epoll",
    .kind = PN_BACKEND_EPOLL,
    .open = ep_open,
    .close = ep_close,
    .add = ep_add,
    .del = ep_del,
    .turn = ep_turn,
    .wake = ep_wake,
};
