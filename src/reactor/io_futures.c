/*
 * io_futures.c - the I/O futures of pollen/io.h: pn_read_some,
 * pn_write_some, pn_write_all_of, pn_readable, pn_writable, pn_accept_on,
 * pn_close_of.
 *
 * Each is a thin wrapper over a poll helper of io.c: it owns nothing but
 * its output and (while pending) the task's waker in the fd's record,
 * which its drop releases.  It remembers which waker it left there
 * (`parked`, an identity, not a reference) so that its drop never takes
 * back the waker of another task that has taken the slot since.  pn_write_all loops over short writes; .done
 * counts the bytes written so far and survives an error.
 */
#include "reactor/reactor.h"
#include "reactor/slab.h"
#include "reactor/uio.h"

/* ---- read ---- */

static pn_poll read_poll(pn_future *f, pn_cx *cx)
{
    pn_read *r = (pn_read *)f;
    pn_poll p = pn_async_fd_poll_read(r->afd, cx, r->buf, r->len, &r->res);
    r->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void read_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_read *)f)->afd, PN_READABLE, &((pn_read *)f)->parked);
}

static const pn_future_vtable read_vt = { read_poll, read_drop, "pn_read_some" };

pn_read pn_read_some(pn_async_fd *afd, void *buf, size_t len)
{
    return (pn_read){ .base = { &read_vt }, .afd = afd, .buf = buf, .len = len, .res = 0 };
}

/* ---- write ---- */

static pn_poll write_poll(pn_future *f, pn_cx *cx)
{
    pn_write *w = (pn_write *)f;
    pn_poll p = pn_async_fd_poll_write(w->afd, cx, w->buf, w->len, &w->res);
    w->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void write_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_write *)f)->afd, PN_WRITABLE, &((pn_write *)f)->parked);
}

static const pn_future_vtable write_vt = { write_poll, write_drop, "pn_write_some" };

pn_write pn_write_some(pn_async_fd *afd, const void *buf, size_t len)
{
    return (pn_write){ .base = { &write_vt }, .afd = afd, .buf = buf, .len = len, .res = 0 };
}

/* ---- write all ---- */

static pn_poll write_all_step(pn_future *f, pn_cx *cx)
{
    pn_write_all *w = (pn_write_all *)f;
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
        ((pn_write_all *)f)->parked = PN_WAKER_NONE;
    return p;
}

static void write_all_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_write_all *)f)->afd, PN_WRITABLE, &((pn_write_all *)f)->parked);
}

static const pn_future_vtable write_all_vt = { write_all_poll, write_all_drop,
                                               "pn_write_all_of" };

pn_write_all pn_write_all_of(pn_async_fd *afd, const void *buf, size_t len)
{
    return (pn_write_all){ .base = { &write_all_vt }, .afd = afd, .buf = buf,
                           .len = len, .done = 0, .res = 0 };
}

/* ---- readiness ---- */

static pn_poll ready_poll(pn_future *f, pn_cx *cx)
{
    pn_ready *r = (pn_ready *)f;
    pn_poll p = pn_async_fd_poll_ready(r->afd, cx, r->interest, &r->res);
    r->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void ready_drop(pn_future *f)
{
    pn_ready *r = (pn_ready *)f;
    pn__async_fd_forget(r->afd, r->interest, &r->parked);
}

static const pn_future_vtable readable_vt = { ready_poll, ready_drop, "pn_readable" };
static const pn_future_vtable writable_vt = { ready_poll, ready_drop, "pn_writable" };

pn_ready pn_readable(pn_async_fd *afd)
{
    return (pn_ready){ .base = { &readable_vt }, .afd = afd, .interest = PN_READABLE, .res = 0 };
}

pn_ready pn_writable(pn_async_fd *afd)
{
    return (pn_ready){ .base = { &writable_vt }, .afd = afd, .interest = PN_WRITABLE, .res = 0 };
}

/* ---- accept ---- */

static pn_poll accept_poll(pn_future *f, pn_cx *cx)
{
    pn_accept *a = (pn_accept *)f;
    pn_poll p = pn_async_fd_poll_accept(a->afd, cx, &a->res);
    a->parked = p == PN_PENDING ? *cx->waker : PN_WAKER_NONE; /* READY: nothing to forget */
    return p;
}

static void accept_drop(pn_future *f)
{
    pn__async_fd_forget(((pn_accept *)f)->afd, PN_READABLE, &((pn_accept *)f)->parked);
}

static const pn_future_vtable accept_vt = { accept_poll, accept_drop, "pn_accept_on" };

pn_accept pn_accept_on(pn_async_fd *afd)
{
    return (pn_accept){ .base = { &accept_vt }, .afd = afd, .res = 0 };
}

/* ---- close ---- */

static pn_poll close_poll(pn_future *f, pn_cx *cx)
{
    pn_close *c = (pn_close *)f;
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
    pn__uio_close_forget(&((pn_close *)f)->req);
}

static const pn_future_vtable close_vt = { close_poll, close_drop, "pn_close_of" };

pn_close pn_close_of(pn_async_fd *afd)
{
    return (pn_close){ .base = { &close_vt }, .afd = afd, .req = NULL, .res = 0 };
}
