/*
 * io_futures.c - the I/O futures of pollen/io.h: pn_read,
 * pn_write, pn_write_all, pn_readable, pn_writable, pn_accept,
 * pn_close_async.
 *
 * Each is a thin wrapper over a poll helper of io.c: it owns nothing but
 * its output and (while pending) the task's waker in the fd's record,
 * which its drop releases.  It remembers which waker it left there
 * (`parked`, an identity, not a reference) so that its drop never takes
 * back the waker of another task that has taken the slot since.  pn_write_all_future loops over short writes; .done
 * counts the bytes written so far and survives an error.
 */
#include "reactor/reactor.h"
#include "reactor/slab.h"
#include "reactor/uio.h"

/* ---- read ---- */

static pn_poll read_poll(pn_future *f, pn_cx *cx)
{
    pn_read_future *r = (pn_read_future *)f;
    pn_poll p = pn_async_fd_poll_read(r->afd, cx, r->buf, r->len, &r->res);
    r->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void read_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_read_future *)f)->afd, PN_READABLE, &((pn_read_future *)f)->parked);
}

static const pn_future_vtable read_vt = { read_poll, read_drop, "pn_read" };

pn_read_future pn_read(pn_async_fd *afd, void *buf, size_t len)
{
    return (pn_read_future){ .base = { &read_vt }, .afd = afd, .buf = buf, .len = len, .res = 0 };
}

/* ---- write ---- */

static pn_poll write_poll(pn_future *f, pn_cx *cx)
{
    pn_write_future *w = (pn_write_future *)f;
    pn_poll p = pn_async_fd_poll_write(w->afd, cx, w->buf, w->len, &w->res);
    w->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void write_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_write_future *)f)->afd, PN_WRITABLE, &((pn_write_future *)f)->parked);
}

static const pn_future_vtable write_vt = { write_poll, write_drop, "pn_write" };

pn_write_future pn_write(pn_async_fd *afd, const void *buf, size_t len)
{
    return (pn_write_future){ .base = { &write_vt }, .afd = afd, .buf = buf, .len = len, .res = 0 };
}

/* ---- write all ---- */

static pn_poll write_all_step(pn_future *f, pn_cx *cx)
{
    pn_write_all_future *w = (pn_write_all_future *)f;
    while (w->done < w->len) {
        ssize_t n;
        if (pn_async_fd_poll_write(w->afd, cx, w->buf + w->done, w->len - w->done, &n) ==
            PN_PENDING) {
            w->parked = *cx->waker;
            return PN_PENDING;
        }
        if (n < 0) {
            w->res = n;
            return PN_READY;
        }
        if (n == 0) {  /* write(2) of len > 0 never says 0; do not spin */
            w->res = -EIO;
            return PN_READY;
        }
        w->done += (size_t)n;
    }
    w->res = (ssize_t)w->len;
    return PN_READY;
}

/* A READY future forgets its parked waker: its drop then touches nothing. */
static pn_poll write_all_poll(pn_future *f, pn_cx *cx)
{
    pn_poll p = write_all_step(f, cx);
    if (p == PN_READY)
        ((pn_write_all_future *)f)->parked = PN_WAKER_NONE;
    return p;
}

static void write_all_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_write_all_future *)f)->afd, PN_WRITABLE, &((pn_write_all_future *)f)->parked);
}

static const pn_future_vtable write_all_vt = { write_all_poll, write_all_drop,
                                               "pn_write_all" };

pn_write_all_future pn_write_all(pn_async_fd *afd, const void *buf, size_t len)
{
    return (pn_write_all_future){ .base = { &write_all_vt }, .afd = afd, .buf = buf,
                           .len = len, .done = 0, .res = 0 };
}

/* ---- readiness ---- */

static pn_poll ready_poll(pn_future *f, pn_cx *cx)
{
    pn_ready_future *r = (pn_ready_future *)f;
    pn_poll p = pn_async_fd_poll_ready(r->afd, cx, r->interest, &r->res);
    r->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void ready_drop(pn_future *f)
{
    pn_ready_future *r = (pn_ready_future *)f;
    pn__async_fd_forget(r->afd, r->interest, &r->parked);
}

static const pn_future_vtable readable_vt = { ready_poll, ready_drop, "pn_readable" };
static const pn_future_vtable writable_vt = { ready_poll, ready_drop, "pn_writable" };

pn_ready_future pn_readable(pn_async_fd *afd)
{
    return (pn_ready_future){ .base = { &readable_vt }, .afd = afd, .interest = PN_READABLE, .res = 0 };
}

pn_ready_future pn_writable(pn_async_fd *afd)
{
    return (pn_ready_future){ .base = { &writable_vt }, .afd = afd, .interest = PN_WRITABLE, .res = 0 };
}

/* ---- accept ---- */

static pn_poll accept_poll(pn_future *f, pn_cx *cx)
{
    pn_accept_future *a = (pn_accept_future *)f;
    pn_poll p = pn_async_fd_poll_accept(a->afd, cx, &a->res);
    a->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void accept_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_accept_future *)f)->afd, PN_READABLE, &((pn_accept_future *)f)->parked);
}

static const pn_future_vtable accept_vt = { accept_poll, accept_drop, "pn_accept" };

pn_accept_future pn_accept(pn_async_fd *afd)
{
    return (pn_accept_future){ .base = { &accept_vt }, .afd = afd, .res = 0 };
}

/* ---- close ---- */

static pn_poll close_poll(pn_future *f, pn_cx *cx)
{
    pn_close_future *c = (pn_close_future *)f;
    if (c->req) {
        if (pn__uio_close_poll(&c->req, cx, &c->res) == PN_PENDING)
            return PN_PENDING;
        (void)pn_cx_budget_spend(cx);
        return PN_READY;
    }
    if (!c->afd) {
        c->res = -EINVAL;
        return PN_READY;
    }
    pn__reactor *r = c->afd->reactor ? c->afd->reactor : cx->reactor;
    int fd = pn__async_fd_shut(c->afd);
    if (fd >= 0 && pn__uio_close_start(r, fd, cx, &c->req))
        return PN_PENDING;
    c->res = fd < 0 ? 0 : pn__async_fd_close_fd(fd);
    (void)pn_cx_budget_spend(cx);
    return PN_READY;
}

static void close_drop(pn_future *f)
{
    pn__uio_close_forget(&((pn_close_future *)f)->req);
}

static const pn_future_vtable close_vt = { close_poll, close_drop, "pn_close_async" };

pn_close_future pn_close_async(pn_async_fd *afd)
{
    return (pn_close_future){ .base = { &close_vt }, .afd = afd, .req = NULL, .res = 0 };
}
