/*
 * backend.h - what the reactor core (reactor.c) and its backends (epoll.c,
 * uring.c) share: the reactor object, the backend operations and the token
 * that names a registration in kernel events.
 *
 * A token is index | (gen & PN__TOKEN_GEN_MASK) << 32: the slab index of the
 * record and the low 31 bits of its generation.  Bit 63 is always 0 in a
 * token, so a backend can tag its own user_data values with it (uring.c
 * does).  Index UINT32_MAX names the wake channel.
 *
 * Backends are chosen once, in pn__reactor_new; every operation then goes
 * through r->be.  A backend keeps its own state behind r->be_data.
 */
#ifndef PN_REACTOR_BACKEND_H
#define PN_REACTOR_BACKEND_H

#include <sys/epoll.h>
#include "pollen/runtime.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"

#define PN__TOKEN_GEN_MASK 0x7fffffffu
#define PN__WAKE_TOKEN ((uint64_t)UINT32_MAX)

static inline uint64_t pn__token(uint32_t index, uint32_t gen)
{
    return (uint64_t)index | (uint64_t)(gen & PN__TOKEN_GEN_MASK) << 32;
}

struct pn__backend {
    const char *name;
    pn_backend kind;
    /* Set up r->be_data (and whatever the wake channel needs).  0 or -errno;
     * on failure nothing is left behind (close is not called). */
    int  (*open)(pn__reactor *r);
    void (*close)(pn__reactor *r);
    /* Start watching reg->fd (edge-triggered read, write, read-closed).
     * 0 or -errno. */
    int  (*add)(pn__reactor *r, pn__registration *reg, uint64_t token);
    /* Stop watching.  Called after PN__READY_SHUTDOWN is set on reg and
     * before its generation changes; errors are ignored (the fd may be
     * closed already). */
    void (*del)(pn__reactor *r, pn__registration *reg, uint64_t token);
    /* Wait up to timeout_ns (< 0: forever, 0: do not block) and report each
     * event with pn__reactor_dispatch (wakes with pn__reactor_woken).
     * Returns the number of records dispatched, or -errno (EINTR counts as
     * a turn with no events and returns 0). */
    int  (*turn)(pn__reactor *r, int64_t timeout_ns);
    /* Make a blocked turn return.  Called at most once until the reactor
     * calls pn__reactor_woken. */
    int  (*wake)(pn__reactor *r);
    /* Optional.  Start watching a record whose add() set reg->unwatched. */
    void (*watch)(pn__reactor *r, pn__registration *reg, uint64_t token);
    /* Optional.  Submit what this thread queued (completion I/O is queued
     * during task polls and sent in batches). */
    void (*flush)(pn__reactor *r);
    /* Optional.  The calling thread runs this reactor's tasks (a worker,
     * the current-thread loop): it may submit to the kernel itself. */
    void (*adopt)(pn__reactor *r);
    /* Optional.  Undo adopt (and what turns implied) for this thread. */
    void (*disown)(pn__reactor *r);
    /* Optional.  Return once what this thread queued has reached the
     * kernel (a close waits so, before close(2), for the cancels that let
     * go of the file). */
    void (*settle)(pn__reactor *r);
    /* Optional: a backend with a ring per thread (uring.c lanes).  How
     * many rings; make the thread that drives ring `lane` (> 0) return from
     * its blocked turn; the calling thread drives ring `lane` from now on
     * (instead of adopt). */
    unsigned (*lanes)(const pn__reactor *r);
    void (*wake_lane)(pn__reactor *r, unsigned lane);
    void (*adopt_lane)(pn__reactor *r, unsigned lane);
};

struct pn__reactor {
    const struct pn__backend *be;
    void *be_data;
    atomic_bool wake_pending;
    atomic_uint wake_signals;     /* be->wake calls (tests count them) */
    atomic_flag slab_lock;
    pn__slab slab;
    unsigned max_events;
    unsigned lanes_wanted;        /* rings asked for (pn__reactor_new_lanes) */
    bool single_issuer;           /* io_uring: the lanes are SINGLE_ISSUER */
};

extern const struct pn__backend pn__epoll_backend;
#ifdef PN_WITH_URING
extern const struct pn__backend pn__uring_backend;
#endif

/* Set readiness on the record named by `token` and wake its waiters.
 * Returns 1 if dispatched, 0 if dropped (stale generation, no bits). */
int pn__reactor_dispatch(pn__reactor *r, uint64_t token, uint32_t bits);

/* The wake channel fired and has been drained: later wakes must signal it
 * again. */
void pn__reactor_woken(pn__reactor *r);

/* The record named by `token` if it is still that registration's and not
 * shutting down, else NULL (uring.c re-arms only such records). */
pn__registration *pn__reactor_lookup(pn__reactor *r, uint64_t token);

/* poll(2)/epoll event bits (the same values) to PN__READY_* bits. */
static inline uint32_t pn__poll_to_ready(uint32_t ev)
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

#endif
