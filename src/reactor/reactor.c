/*
 * reactor.c - the reactor core: registrations, readiness dispatch, wakes,
 * and the choice of backend (epoll.c, uring.c).
 *
 * Owns: the slab of registration records and the backend (r->be and its
 * state r->be_data).
 *
 * Invariants:
 *  - every fd is registered once with the backend, for edge-triggered read,
 *    write and read-closed; its token (backend.h) carries the record's
 *    index and generation; the wake channel has PN__WAKE_TOKEN;
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
 *  - deregistration sets PN__READY_SHUTDOWN before it asks the backend to
 *    stop watching (uring.c re-arms a finished poll only for a record
 *    without it) and bumps the generation after;
 *  - wake_pending is true from the first pn__reactor_wake that signalled
 *    the backend until the backend reports the wake (pn__reactor_woken):
 *    later wakes do not signal.
 *
 * Backend choice: pn__backend_resolve lets POLLEN_BACKEND in the
 * environment override the configured backend (pn_runtime_new calls it);
 * pn__reactor_new then takes AUTO as "io_uring (when built in), else epoll
 * on any failure", and an explicit choice as that one or an error.
 *
 * Slab alloc/release are serialised by a small spin lock (register and
 * deregister may come from several workers); lookups from the dispatcher
 * take no lock (see slab.h).  The generation lives in the readiness word,
 * so a dispatcher holding an event for a record that another thread frees
 * and registers again meanwhile is refused by the CAS that would set the
 * bits: a stale hang-up never becomes a new connection's CLOSED bits.
 */
#include <stdlib.h>
#include <string.h>
#include "core/chaos.h"
#include "core/sys.h"
#include "reactor/backend.h"
#include "reactor/uio.h"

#define MAX_EVENTS_LIMIT (1u << 20)

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

int pn__backend_resolve(pn_backend cfg, pn_backend *out)
{
    const char *env = getenv("POLLEN_BACKEND");
    *out = cfg;
    if (!env || !*env)
        return 0;
    if (!strcmp(env, "auto"))
        *out = PN_BACKEND_AUTO;
    else if (!strcmp(env, "epoll"))
        *out = PN_BACKEND_EPOLL;
    else if (!strcmp(env, "uring") || !strcmp(env, "io_uring"))
        *out = PN_BACKEND_URING;
    else
        return -EINVAL;
    return 0;
}

static int try_open(pn__reactor *r, const struct pn__backend *be)
{
    r->be = be;
    int err = be->open(r);
    if (err) {
        r->be = NULL;
        r->be_data = NULL;
    }
    return err;
}

int pn__reactor_new(unsigned max_events, pn_backend backend, pn__reactor **out)
{
    return pn__reactor_new_lanes(max_events, backend, 1, out);
}

int pn__reactor_new_lanes(unsigned max_events, pn_backend backend, unsigned lanes,
                          pn__reactor **out)
{
    if (!out || max_events == 0 || max_events > MAX_EVENTS_LIMIT ||
        (unsigned)backend > PN_BACKEND_URING || lanes == 0 || lanes > PN__MAX_LANES)
        return -EINVAL;
    *out = NULL;
    pn_backend want = backend;
    int err;
    pn__reactor *r = pn__calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    atomic_init(&r->wake_pending, false);
    atomic_flag_clear(&r->slab_lock);
    pn__slab_init(&r->slab);
    r->max_events = max_events;
    r->lanes_wanted = lanes;
    err = -ENOSYS;   /* io_uring asked for but not built in */
#ifdef PN_WITH_URING
    if (want == PN_BACKEND_AUTO || want == PN_BACKEND_URING)
        err = try_open(r, &pn__uring_backend);
#endif
    if (err && want != PN_BACKEND_URING)
        err = try_open(r, &pn__epoll_backend);
    if (err) {
        pn__slab_destroy(&r->slab);
        pn__free(r);
        return err;
    }
    *out = r;
    return 0;
}

pn_backend pn__reactor_backend(const pn__reactor *r)
{
    return r ? r->be->kind : PN_BACKEND_AUTO;
}

static void detach_live(pn__registration *reg, void *arg)
{
    (void)arg;
    /* The owner stays open; its next operation registers lazily with the
     * reactor of whoever polls it (see io.c). */
    if (reg->owner) {
        pn__uio_detach(reg->owner);
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
        atomic_fetch_or(&reg->readiness, PN__READY_READ | PN__READY_WRITE);
    }
    slab_unlock(r);
    if (err)
        return err;
    atomic_store(&reg->unwatched, false);
    err = r->be->add(r, reg, pn__token(reg->index, pn__reg_gen(reg)));
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
    pn__reg_set_ready(reg, PN__READY_SHUTDOWN);
    PN_POINT("reactor.deregister", reg);    /* events may still be dispatched */
    r->be->del(r, reg, pn__token(reg->index, pn__reg_gen(reg)));
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

/* The record `token` names, if its generation still matches. */
static pn__registration *token_record(pn__reactor *r, uint64_t token)
{
    uint32_t index = (uint32_t)token, gen = (uint32_t)(token >> 32);
    pn__registration *reg = pn__slab_get(&r->slab, index);
    if (!reg || (pn__reg_gen(reg) & PN__TOKEN_GEN_MASK) != gen)
        return NULL;
    return reg;
}

pn__registration *pn__reactor_lookup(pn__reactor *r, uint64_t token)
{
    pn__registration *reg = token_record(r, token);
    if (reg && (atomic_load(&reg->readiness) & PN__READY_SHUTDOWN))
        return NULL;
    return reg;
}

int pn__reactor_dispatch(pn__reactor *r, uint64_t token, uint32_t bits)
{
    uint32_t gen = (uint32_t)(token >> 32);
    pn__registration *reg = token_record(r, token);
    if (!reg || bits == 0)
        return 0;
    PN_POINT("reactor.dispatch", reg);
    uint64_t now = pn__reg_set_ready_gen(reg, gen, PN__TOKEN_GEN_MASK, bits);
    if (!now)
        return 0;                       /* freed (and maybe taken) meanwhile */
    pn_waker rd = PN_WAKER_NONE, wr = PN_WAKER_NONE;
    pn__reg_lock(reg);
    if (PN__GEN(now) == pn__reg_gen(reg)) {
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

void pn__reactor_woken(pn__reactor *r)
{
    atomic_store(&r->wake_pending, false);
}

int pn__reactor_poll(pn__reactor *r, int64_t timeout_ns)
{
    if (!r)
        return -EINVAL;
    return r->be->turn(r, timeout_ns);
}

void pn__reactor_wake(pn__reactor *r)
{
    if (!r || atomic_exchange(&r->wake_pending, true))
        return;
    atomic_fetch_add_explicit(&r->wake_signals, 1, memory_order_relaxed);
    /* A failed signal sent nothing: let the next wake try again. */
    if (r->be->wake(r) < 0)
        atomic_store(&r->wake_pending, false);
}

void pn__reactor_wake_lane(pn__reactor *r, unsigned lane)
{
    if (r && lane && r->be->wake_lane && lane < pn__reactor_lanes(r))
        r->be->wake_lane(r, lane);
    else
        pn__reactor_wake(r);
}

unsigned pn__reactor_lanes(const pn__reactor *r)
{
    return r && r->be->lanes ? r->be->lanes(r) : 1;
}

bool pn__reactor_single_issuer(const pn__reactor *r)
{
    return r && r->single_issuer;
}

void pn__reactor_adopt_lane(pn__reactor *r, unsigned lane)
{
    if (r && r->be->adopt_lane && lane < pn__reactor_lanes(r))
        r->be->adopt_lane(r, lane);
    else
        pn__reactor_adopt_thread(r);
}

void pn__reactor_watch(pn__reactor *r, pn__registration *reg)
{
    if (r && r->be->watch && atomic_exchange(&reg->unwatched, false))
        r->be->watch(r, reg, pn__token(reg->index, pn__reg_gen(reg)));
}

void pn__reactor_flush(pn__reactor *r)
{
    if (r && r->be->flush)
        r->be->flush(r);
}

void pn__reactor_adopt_thread(pn__reactor *r)
{
    if (r && r->be->adopt)
        r->be->adopt(r);
}

void pn__reactor_disown_thread(pn__reactor *r)
{
    if (r && r->be->disown)
        r->be->disown(r);
}

void pn__reactor_settle(pn__reactor *r)
{
    if (r && r->be->settle)
        r->be->settle(r);
}

unsigned pn__reactor_wake_signals(pn__reactor *r)
{
    return atomic_load_explicit(&r->wake_signals, memory_order_relaxed);
}

size_t pn__reactor_count(const pn__reactor *r)
{
    return r ? r->slab.live : 0;
}
