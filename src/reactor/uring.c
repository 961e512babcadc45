/*
 * uring.c - the io_uring backend of the reactor (readiness mode).
 *
 * Owns: the reactor's ring, the lock that guards its submission queue, and
 * a small second ring that only sends wakes (struct ur); with lanes, one
 * such set per thread that drives the reactor.
 *
 * Every registered fd gets one multishot poll request (POLLIN | POLLOUT |
 * POLLRDHUP) whose user_data is the record's token, so a CQE is an epoll
 * event by another name and every I/O future works unchanged.  A multishot
 * poll posts a CQE on each wake-up of the file, which is the edge-triggered
 * behaviour the reactor core expects.
 *
 * Submission queue: any thread may register or deregister, so every SQ
 * access happens under `sq_lock`.  A poll's completions run as task work
 * on the thread that submitted it, and that work interrupts the thread
 * (a blocking recv with a timeout on a user's thread would fail with
 * EINTR).  So only threads that turn this reactor (the loop thread, the
 * workers) submit, and at once, as epoll_ctl would: a registration is live
 * before its task sleeps, and a removal lets go of the file before its fd
 * is closed.  Any other thread queues its SQE and wakes the reactor, whose
 * next turn submits it; a close from such a thread then waits until it has
 * (ur_settle), and with no thread driving the ring at all (a
 * current-thread runtime between two pn_block_on) submits its cancels
 * itself.  Several threads submit, so the ring is neither
 * SINGLE_ISSUER nor DEFER_TASKRUN (whose task work runs only when the one
 * issuer waits on the ring: a worker parked on a futex would hold its
 * polls' completions back); lanes below are.  It is COOP_TASKRUN | TASKRUN_FLAG: task work
 * for a running thread waits for its next kernel entry instead of an
 * inter-processor interrupt (each IPI costs a VM exit: 23 us of server CPU
 * per echoed message without it, 10-12 us with it, as epoll), a sleeping
 * thread is still woken to run it, and a non-blocking turn that sees
 * IORING_SQ_TASKRUN enters the kernel once to collect it.
 *
 * Parking: when the last thread that drives a shared ring lets go of it
 * (a current-thread pn_block_on returning), it cancels and reaps every
 * request in the ring, with no re-arm (park_ring), so nothing of the
 * runtime's is left to interrupt the caller's thread; the next
 * pn_block_on arms what is needed again.  The ring's own teardown still
 * signals that thread once; a free on that thread waits for it (ur_close).
 *
 * Turn: submit what is queued (re-arms), then wait with one
 * io_uring_enter(GETEVENTS | EXT_ARG) carrying the timeout, unless CQEs
 * are already there or the turn must not block; a non-blocking turn with
 * an empty CQ and no pending task work makes no syscall.  CQEs are reaped in one batch and the CQ
 * head advanced once.
 *
 * A multishot poll can end (a CQE without IORING_CQE_F_MORE): on CQ
 * overflow, when the submitting thread exits (its requests are cancelled),
 * or when it is removed.  The reactor re-arms it, under sq_lock, when the
 * record is still the same registration and not shutting down; the
 * deregistration sets PN__READY_SHUTDOWN before it takes sq_lock to queue
 * the removal, so a re-arm is either refused or queued before the removal.
 * Removals carry IOSQE_CQE_SKIP_SUCCESS; their failures, like every CQE
 * tagged TAG_IGNORE, are dropped.
 *
 * Wakes: a thread that drives the ring (a worker) submits
 * IORING_OP_MSG_RING on the waker ring (under `waker_lock`), which posts a
 * CQE with PN__WAKE_TOKEN straight into the reactor's CQ and wakes its
 * waiter, with no task-work round trip through another thread.  Any other
 * thread writes an eventfd, on which a driver keeps a multishot poll
 * (armed by the first turn, re-armed by a later one if it ends).
 *
 * Lanes (pn__reactor_new_lanes, the multi-thread runtime's ring per
 * worker): lanes[0] is the reactor's struct ur and holds the others; each
 * has its own ring, SQ lock, waker ring, eventfd and buffer ring, and one
 * thread drives it (pn__reactor_adopt_lane; the thread mark tl_driver is
 * its lane id, and ids of one reactor follow each other).  Lane rings are
 * SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG when the kernel has them:
 * set up disabled here, enabled by their thread, which becomes the only
 * one that enters the kernel for them.  Any other thread only writes SQEs
 * (under sq_lock), and wakes the owner if it waits in its ring (a busy
 * owner submits them at its next turn): a thread that drives another lane
 * with an IORING_OP_MSG_RING submitted on its own ring (a failure's CQE,
 * tagged TAG_MSG with the lane, turns into an eventfd write), any other
 * thread through the lane's eventfd.  On a full SQ of another thread's
 * lane it gets no SQE (the callers fall back to syscalls), and a cancel
 * or a readiness poll waits in the lane's `later` list for the owner's
 * next turn.  Requests go to the lane of the thread that
 * makes them (pn__ur_lane; a socket's to the lane it was bound to on its
 * first I/O, uio.c), a readiness poll to the lane that armed it, and only
 * that lane cancels it.  Each lane coalesces its own wakes (lane 0 with
 * r->wake_pending).  Its thread drains it when it lets go (drain_lane):
 * everything cancelled and reaped, and no SQE taken after; a close from a
 * thread outside waits for each lane's owner in turn (ur_settle), and skips
 * a SINGLE_ISSUER lane nobody drives, which has nothing in the kernel.
 *
 * Setup needs: IORING_FEAT_NODROP and IORING_FEAT_EXT_ARG, and the poll,
 * poll-remove and msg-ring opcodes (Linux 5.19 or later in practice).  Any
 * failure is returned, and AUTO falls back to epoll.
 */
#ifdef PN_WITH_URING

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>
#include "core/sys.h"
#include "pollen/time.h"
#include "timer/clock.h"
#include "reactor/slab.h"
#include "reactor/uring.h"

#define SQ_ENTRIES 1024u
#define WAKER_ENTRIES 8u

static atomic_uint_fast64_t next_id = 1;

static void lane_free(struct ur *u)
{
    if (u->wakefd >= 0)
        pn__sys.close(u->wakefd);
    pthread_mutex_destroy(&u->sq_lock);
    pthread_mutex_destroy(&u->waker_lock);
    pn__free(u);
}

/* Free every lane (their rings already exited or never set up). */
static void ur_free(struct ur *home)
{
    for (unsigned i = home->nlanes; i-- > 1;)
        if (home->lanes[i])
            lane_free(home->lanes[i]);
    pn__free(home->lanes);
    lane_free(home);
}

static struct ur *lane_new(void)
{
    struct ur *u = pn__calloc(1, sizeof *u);
    if (!u)
        return NULL;
    pthread_mutex_init(&u->sq_lock, NULL);
    pthread_mutex_init(&u->waker_lock, NULL);
    u->wakefd = pn__sys.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return u;
}

static int probe(struct io_uring *ring)
{
    if (!(ring->features & IORING_FEAT_NODROP) ||
        !(ring->features & IORING_FEAT_EXT_ARG))
        return -EOPNOTSUPP;
    struct io_uring_probe *p = io_uring_get_probe_ring(ring);
    if (!p)
        return -EOPNOTSUPP;
    bool ok = io_uring_opcode_supported(p, IORING_OP_POLL_ADD) &&
              io_uring_opcode_supported(p, IORING_OP_POLL_REMOVE) &&
              io_uring_opcode_supported(p, IORING_OP_MSG_RING);
    io_uring_free_probe(p);
    return ok ? 0 : -EOPNOTSUPP;
}

struct setup_arg {
    struct ur *home;
    unsigned max_events;
    int err;
};

/* Set up one lane's rings (on the setup thread).  0 or -errno, nothing
 * left behind on failure. */
static int setup_lane(struct ur *u, unsigned max_events)
{
    /* The CQ holds a turn's worth of events several times over; past
     * that, NODROP keeps the overflow in the kernel until the next turn. */
    unsigned cq = max_events * 4;
    if (cq < 2 * SQ_ENTRIES)
        cq = 2 * SQ_ENTRIES;
    struct io_uring_params p;
    unsigned base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP |
                    IORING_SETUP_TASKRUN_FLAG;
    int err = -EINVAL;
    if (u->home->nlanes > 1) {
        /* A ring per thread: that thread alone enters the kernel for it,
         * so it can be SINGLE_ISSUER | DEFER_TASKRUN (its completions run
         * when it waits, never interrupting it).  Set up disabled: the
         * thread that enables it (its owner, pn__reactor_adopt_lane)
         * becomes the issuer. */
        memset(&p, 0, sizeof p);
        p.flags = base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                  IORING_SETUP_R_DISABLED;
        p.cq_entries = cq;
        err = pn__sys.uring_init(SQ_ENTRIES, &u->ring, &p);
        u->issuer_only = err == 0;
    }
    if (err == -EINVAL) {
        /* One ring several threads use, or a kernel without them. */
        memset(&p, 0, sizeof p);
        p.flags = base | IORING_SETUP_COOP_TASKRUN;
        p.cq_entries = cq;
        err = pn__sys.uring_init(SQ_ENTRIES, &u->ring, &p);
    }
    if (err)
        return err;
    if (u->lane == 0)
        err = probe(&u->ring);
    if (!err) {
        memset(&p, 0, sizeof p);
        err = pn__sys.uring_init(WAKER_ENTRIES, &u->waker, &p);
    }
    if (err) {
        io_uring_queue_exit(&u->ring);
        return err;
    }
    /* Completion mode for stream sockets, unless asked not to
     * (POLLEN_URING_MODE=readiness) or the buffer ring cannot be set up. */
    const char *mode = getenv("POLLEN_URING_MODE");
    if (!mode || strcmp(mode, "readiness"))
        pn__uio_setup(u);
    return 0;
}

static void lane_exit(struct ur *u)
{
    io_uring_queue_exit(&u->waker);
    io_uring_queue_exit(&u->ring);
    pn__uio_teardown(u);
}

static void *setup_rings(void *arg)
{
    struct setup_arg *a = arg;
    struct ur *home = a->home;
    unsigned i;
    for (i = 0; i < home->nlanes; i++) {
        a->err = setup_lane(home->lanes[i], a->max_events);
        if (a->err)
            break;
        /* Completion mode is the reactor's choice: all lanes or none. */
        if (home->lanes[i]->completion != home->completion) {
            a->err = -ENOMEM;
            lane_exit(home->lanes[i]);
            break;
        }
    }
    if (a->err)
        while (i-- > 0)
            lane_exit(home->lanes[i]);
    return NULL;
}

static int ur_open(pn__reactor *r)
{
    unsigned n = r->lanes_wanted;     /* >= 1 (pn__reactor_new_lanes) */
    struct ur *u = lane_new();
    if (!u)
        return -ENOMEM;
    u->home = u;
    u->r = r;
    u->nlanes = n;
    u->lanes = pn__calloc(n, sizeof *u->lanes);
    if (!u->lanes || u->wakefd < 0) {
        int err = u->lanes ? -errno : -ENOMEM;
        u->nlanes = 1;
        ur_free(u);
        return err;
    }
    u->lanes[0] = u;
    /* Lane ids follow each other, so a thread's mark names its lane. */
    uint64_t first = atomic_fetch_add(&next_id, n);
    u->id = first;
    for (unsigned i = 1; i < n; i++) {
        struct ur *l = lane_new();
        u->lanes[i] = l;
        if (!l || l->wakefd < 0) {
            int err = l ? -errno : -ENOMEM;
            ur_free(u);
            return err;
        }
        l->home = u;
        l->r = r;
        l->lane = i;
        l->id = first + i;
    }
    /* The rings are set up on a thread of our own that exits at once: the
     * kernel records the thread that creates a ring and, when the ring is
     * destroyed, sends it task work that interrupts whatever it is doing
     * (a user's blocking recv with a timeout fails with EINTR).  A thread
     * that has exited is not sent anything. */
    struct setup_arg a = { .home = u, .max_events = r->max_events };
    pthread_t th;
    int err = -pthread_create(&th, NULL, setup_rings, &a);
    if (!err) {
        pthread_join(th, NULL);
        err = a.err;
    }
    if (err) {
        ur_free(u);
        return err;
    }
    r->be_data = u;
    r->single_issuer = u->issuer_only;
    return 0;
}


static void prep_poll(struct ur *u, struct io_uring_sqe *sqe, int fd, uint64_t token)
{
    u->issued++;
    io_uring_prep_poll_multishot(sqe, fd, POLLIN | POLLOUT | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, token);
}

/* The rings this thread has submitted to (their ids): the kernel records
 * a thread as a ring's user at its first submit, and signals it when the
 * ring is torn down (ur_close).  A full list records no more: its thread
 * is then not waited for. */
#define TL_SUBMITTED 8
static _Thread_local uint64_t tl_submitted[TL_SUBMITTED];

static void note_submitter(struct ur *u)
{
    unsigned slot = TL_SUBMITTED;
    for (unsigned i = 0; i < TL_SUBMITTED; i++) {
        if (tl_submitted[i] == u->id)
            return;
        if (!tl_submitted[i] && slot == TL_SUBMITTED)
            slot = i;
    }
    if (slot < TL_SUBMITTED)
        tl_submitted[slot] = u->id;
}

/* Whether this thread submitted to u (and forget it). */
static bool take_submitter(struct ur *u)
{
    for (unsigned i = 0; i < TL_SUBMITTED; i++)
        if (tl_submitted[i] == u->id) {
            tl_submitted[i] = 0;
            return true;
        }
    return false;
}

/* Submit what is queued.  EAGAIN/EBUSY (no memory for a request, CQ
 * overflow backlog) leave the SQEs queued for the reactor's next turn.
 * sq_lock held.  0 or -errno. */
static int submit(struct ur *u)
{
    int n;
    note_submitter(u);
    do
        n = io_uring_submit(&u->ring);
    while (n == -EINTR);
    /* -EBADR: CQEs were dropped (see wait_cqe); the SQEs went. */
    return n >= 0 || n == -EAGAIN || n == -EBUSY || n == -EBADR ? 0 : n;
}

/* A CLOCK_MONOTONIC deadline `ms` from now, and whether it has passed. */
static struct timespec deadline_in(long ms)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += ms / 1000;
    end.tv_nsec += (ms % 1000) * 1000 * 1000;
    if (end.tv_nsec >= 1000000000) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000;
    }
    return end;
}

static bool past(const struct timespec *end)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > end->tv_sec ||
           (now.tv_sec == end->tv_sec && now.tv_nsec >= end->tv_nsec);
}

/* The ring (lane id) this thread drives, set by its first turn or by
 * pn__reactor_adopt_lane: its polls' completions run as
 * task work on it, which its own turns run.  Other threads must not
 * submit: a poll they submitted would interrupt them (a blocking syscall
 * with a timeout on a user's thread would fail with EINTR) each time its
 * file became ready. */
static _Thread_local uint64_t tl_driver;

struct io_uring_sqe *pn__ur_get_sqe(struct ur *u)
{
    if (atomic_load_explicit(&u->gone, memory_order_relaxed))
        return NULL;                   /* its thread has left it */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    /* Full, and only its thread may submit to a SINGLE_ISSUER ring: it
     * will at its next turn; the caller takes its fallback meanwhile
     * (pn__ur_queue_cancel keeps a cancel for that turn). */
    if (!sqe && u->issuer_only && tl_driver != u->id)
        return NULL;
    for (int tries = 0; !sqe && tries < 8; tries++) {
        /* Full: send what is queued and take a fresh entry. */
        if (submit(u) < 0)
            return NULL;
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

uint64_t pn__ur_note_queued(struct ur *u)
{
    return (unsigned)(u->ring.sq.sqe_tail - 1);
}

bool pn__ur_unsubmitted(struct ur *u, uint64_t pos)
{
    /* Entries from the kernel's head to our tail are not consumed yet
     * (entries are consumed in order, only inside io_uring_enter, which
     * runs under sq_lock like this check). */
    unsigned head = io_uring_smp_load_acquire(u->ring.sq.khead);
    return (unsigned)pos - head < u->ring.sq.sqe_tail - head;
}

/* This thread queued SQEs on that ring and has not submitted them yet. */
static _Thread_local uint64_t tl_dirty;

/* The lane of home's that this thread drives, or NULL. */
static struct ur *lane_mine(struct ur *home)
{
    uint64_t d = tl_driver;
    if (d >= home->id && d - home->id < home->nlanes)
        return home->lanes[d - home->id];
    return NULL;
}

struct ur *pn__ur_lane(pn__reactor *r)
{
    struct ur *home = r->be_data;
    struct ur *u = lane_mine(home);
    return u ? u : home;
}

/* The wake of lane u was taken (its CQE reaped): later wakes signal. */
static void woken(pn__reactor *r, struct ur *u)
{
    if (u->lane)
        atomic_store(&u->wake_pending, false);
    else
        pn__reactor_woken(r);
}

static int wake_eventfd(struct ur *u);
static int wake_self(struct ur *u);

/* Queue an IORING_OP_MSG_RING to lane t on me, this thread's own lane
 * (sq_lock of me held).  Success posts nothing here; a failure's CQE
 * names the lane, whose eventfd then carries the wake (reap).  False
 * without an SQE. */
static bool queue_msg(struct ur *me, struct ur *t)
{
    struct io_uring_sqe *sqe = atomic_load_explicit(&me->gone, memory_order_relaxed)
                               ? NULL : io_uring_get_sqe(&me->ring);
    if (!sqe)
        return false;
    io_uring_prep_msg_ring(sqe, t->ring.ring_fd, 0, PN__WAKE_TOKEN, 0);
    io_uring_sqe_set_data64(sqe, TAG_MSG | (uint64_t)t->lane << 8);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return true;
}

/* Signal the thread that drives lane t, now.  From a thread that drives
 * another lane of the reactor, an IORING_OP_MSG_RING submitted on its own
 * ring (with whatever it had queued); from t's own thread, through the
 * waker ring; from any other thread, the eventfd. */
static int signal_lane(struct ur *t)
{
    struct ur *me = lane_mine(t->home);
    if (!me)
        return wake_eventfd(t);
    if (me == t)
        return wake_self(t);
    pthread_mutex_lock(&me->sq_lock);
    bool queued = queue_msg(me, t);
    if (queued)
        (void)submit(me);
    pthread_mutex_unlock(&me->sq_lock);
    return queued ? 0 : wake_eventfd(t);
}

static atomic_bool *wake_flag(pn__reactor *r, struct ur *t)
{
    return t->lane ? &t->wake_pending : &r->wake_pending;
}

/* Wake lane t's thread now, coalesced (as pn__reactor_wake, whose flag is
 * lane 0's).  The flag is set only for a wake that is sent at once, so
 * no wake is ever held back behind one that has not left yet. */
static void wake_lane(pn__reactor *r, struct ur *t)
{
    atomic_bool *pending = wake_flag(r, t);
    if (atomic_exchange(pending, true))
        return;
    atomic_fetch_add_explicit(&r->wake_signals, 1, memory_order_relaxed);
    /* A failed signal sent nothing: let the next wake try again. */
    if (signal_lane(t) < 0)
        atomic_store(pending, false);
}

/* Lanes this thread queued SQEs on without driving them, since its last
 * close (ur_settle waits for those): a bit per lane below 64, `all` for
 * the others, of the reactor whose home has id `home`. */
static _Thread_local struct {
    uint64_t home, mask;
    bool all;
} tl_foreign;

static void note_foreign(struct ur *u)
{
    if (tl_foreign.home != u->home->id) {
        tl_foreign.home = u->home->id;
        tl_foreign.mask = 0;
        tl_foreign.all = false;
    }
    if (u->lane < 64)
        tl_foreign.mask |= 1ull << u->lane;
    else
        tl_foreign.all = true;
}

/* A thread that does not drive u queued SQEs on it (sq_lock held; released
 * here): make sure u's thread submits them.  A SINGLE_ISSUER lane's thread
 * submits what is queued at each turn (a busy worker every event_interval
 * polls), so it is woken only if it waits in its ring right now (`waiting`
 * is set under sq_lock before the submit that precedes the wait: either
 * that submit took these SQEs, or this sees it waiting).  A shared ring's
 * driver may be asleep anywhere: always woken. */
static void wake_owner(pn__reactor *r, struct ur *u)
{
    bool wake = !u->issuer_only || atomic_load_explicit(&u->waiting, memory_order_relaxed);
    pthread_mutex_unlock(&u->sq_lock);
    note_foreign(u);
    if (wake)
        wake_lane(r, u);
}

void pn__ur_queued(pn__reactor *r, struct ur *u)
{
    if (tl_driver == u->id) {
        tl_dirty = u->id;
        pthread_mutex_unlock(&u->sq_lock);
        return;
    }
    wake_owner(r, u);
}

/* Keep a request another thread could not queue on u (full SQ) for u's
 * thread's next turn (sq_lock held).  False if the lane is gone (nothing
 * left to do there) or without memory. */
static bool later_add(struct ur *u, uint64_t ud, bool arm)
{
    if (atomic_load_explicit(&u->gone, memory_order_relaxed))
        return false;
    if (u->nlater == u->later_cap) {
        unsigned cap = u->later_cap ? 2 * u->later_cap : 16;
        struct later *l = pn__malloc(cap * sizeof *l);
        if (!l)
            return false;
        if (u->nlater)
            memcpy(l, u->later, u->nlater * sizeof *l);
        pn__free(u->later);
        u->later = l;
        u->later_cap = cap;
    }
    u->later[u->nlater++] = (struct later){ ud, arm };
    return true;
}

void pn__ur_queue_cancel(struct ur *u, uint64_t user_data)
{
    struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
    if (!sqe) {
        /* Full, and another thread's: its next turn queues it (a cancel
         * must not be lost: the request would hold its file for ever).
         * Without memory the request runs to its end. */
        (void)later_add(u, user_data, false);
        return;
    }
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, TAG_IGNORE);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

static void prep_poll(struct ur *u, struct io_uring_sqe *sqe, int fd, uint64_t token);

/* Queue, in order, what other threads left in u's list (u's thread,
 * sq_lock held): cancels, and polls of records still registered. */
static void queue_later(struct ur *u)
{
    unsigned i = 0;
    for (; i < u->nlater; i++) {
        struct later *l = &u->later[i];
        pn__registration *reg = NULL;
        if (l->arm && !(reg = pn__reactor_lookup(u->r, l->ud)))
            continue;                  /* deregistered meanwhile */
        struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
        if (!sqe)
            break;                     /* the rest waits for the next turn */
        if (l->arm) {
            atomic_store_explicit(&reg->lane, u->lane, memory_order_relaxed);
            prep_poll(u, sqe, reg->fd, l->ud);
        } else {
            io_uring_prep_cancel64(sqe, l->ud, 0);
            io_uring_sqe_set_data64(sqe, TAG_IGNORE);
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        }
    }
    memmove(u->later, u->later + i, (u->nlater - i) * sizeof *u->later);
    u->nlater -= i;
}

/* The request with user_data `ud` has ended (its last CQE, u's thread):
 * a cancel of it still waiting in the list must not reach a new request
 * that reuses its address. */
static void later_forget(struct ur *u, uint64_t ud)
{
    pthread_mutex_lock(&u->sq_lock);
    unsigned k = 0;
    for (unsigned i = 0; i < u->nlater; i++)
        if (u->later[i].arm || u->later[i].ud != ud)
            u->later[k++] = u->later[i];
    u->nlater = k;
    pthread_mutex_unlock(&u->sq_lock);
}

static void ur_flush(pn__reactor *r)
{
    struct ur *u = lane_mine(r->be_data);
    if (!u || tl_dirty != u->id)
        return;
    tl_dirty = 0;
    pthread_mutex_lock(&u->sq_lock);
    (void)submit(u);
    pthread_mutex_unlock(&u->sq_lock);
}

/* This thread drives u from now on (counted once per thread). */
static void drive(struct ur *u)
{
    if (tl_driver == u->id)
        return;
    tl_driver = u->id;
    atomic_fetch_add(&u->drivers, 1);
}

/* Enable a ring set up with R_DISABLED: the calling thread becomes its
 * SINGLE_ISSUER.  (liburing 2.3 declares io_uring_enable_rings but does not
 * export it.) */
static void enable_ring(struct ur *u)
{
    (void)syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                  NULL, 0);
    u->enabled = true;
}

static void ur_adopt(pn__reactor *r)
{
    drive(r->be_data);
}

static unsigned ur_lanes(const pn__reactor *r)
{
    return ((const struct ur *)r->be_data)->nlanes;
}

static void ur_adopt_lane(pn__reactor *r, unsigned lane)
{
    struct ur *u = ((struct ur *)r->be_data)->lanes[lane];
    drive(u);
    if (u->issuer_only && !u->enabled) {
        /* This thread becomes the ring's one issuer. */
        enable_ring(u);
    }
}

static bool in_flight(struct ur *u);
static int wait_cqe(struct ur *u, int64_t timeout_ns);
static int reap(pn__reactor *r, struct ur *u, bool closing);

/* The owner of a SINGLE_ISSUER lane leaves (its worker exits): nobody can
 * submit to the ring after it.  Send what is queued, cancel everything,
 * and reap until each request's last CQE came (a second at most), so no
 * request of this ring holds a file or a buffer; from then on the lane
 * takes no SQE (pn__ur_get_sqe), and what it did take ended.  The
 * multi-thread runtime stops running tasks on every worker before one
 * drains. */
static void drain_lane(pn__reactor *r, struct ur *u)
{
    pthread_mutex_lock(&u->sq_lock);
    atomic_store(&u->gone, true);      /* no SQE for anyone from here */
    u->nlater = 0;                     /* the cancel of everything covers them */
    pthread_mutex_unlock(&u->sq_lock);
    bool cancelled = false;
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&u->sq_lock);
        if (!cancelled) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
            if (sqe) {
                io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
                io_uring_sqe_set_data64(sqe, TAG_IGNORE);
                cancelled = true;
            }
        }
        if (io_uring_sq_ready(&u->ring))
            (void)submit(u);
        bool queued = !cancelled || io_uring_sq_ready(&u->ring) > 0;
        pthread_mutex_unlock(&u->sq_lock);
        if (!queued && !in_flight(u))
            break;
        if (!io_uring_cq_ready(&u->ring))
            (void)wait_cqe(u, 10 * 1000 * 1000);
        reap(r, u, true);
    }
    pthread_mutex_lock(&u->sq_lock);
    atomic_fetch_sub(&u->drivers, 1);
    pthread_mutex_unlock(&u->sq_lock);
}

/*
 * The last thread that drives a shared ring lets go of it: pn_block_on of
 * the current-thread runtime returns (or the last worker of a shared ring
 * leaves).  Every request this thread submitted runs its completion as
 * task work on this thread (COOP_TASKRUN: TWA_SIGNAL_NO_IPI), and the
 * kernel has no way to hand a request to another task.  Left armed, a
 * multishot receive, a readiness poll, the eventfd's poll, a send or
 * accept waiting for its socket would, on its next event, set
 * TIF_NOTIFY_SIGNAL on a thread that now runs the caller's code: a
 * blocking recv(2) with SO_RCVTIMEO there fails with EINTR.  A runtime
 * must not interrupt its caller's syscalls once it has returned (the
 * promise ur_add keeps for threads that never drive the ring).  So
 * everything in the ring is cancelled and reaped before the thread goes,
 * and nothing is re-armed from the completions (u->parking):
 *  - a readiness poll: its record is marked unwatched and its waiters are
 *    woken (unwatch); their next wait arms a fresh poll;
 *  - a socket's multishot receive: its reader is woken, and the next read
 *    arms it again (uio.c); received chunks stay queued, in order;
 *  - a send: it comes back to its owner, whose next poll queues the same
 *    bytes again (uio.c; a send cut short reports what it sent);
 *  - a connect: reported as still in progress, so pn_tcp_connect_future waits
 *    for writability as after connect(2) (the handshake goes on);
 *  - accepts: dropped (a connection one of them took is still delivered);
 *    the next accept refills the window;
 *  - the eventfd's poll: the next turn arms it (a wake written meanwhile
 *    makes it fire at once).
 * The next pn_block_on's turns submit all of this again, as its own.  The
 * cost is a cancel and a reap per pn_block_on that returns with requests
 * in flight, nothing for a server's one long pn_block_on.  A request the
 * kernel would not give up within a second (never seen) is left; the
 * worker thread case needs none of this (its requests die with it), but
 * drains the same way, at shutdown only.
 */
static void park_ring(pn__reactor *r, struct ur *u)
{
    u->parking = true;
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&u->sq_lock);
        bool any = u->issued != u->ended || u->evfd_armed;
        if (io_uring_sq_ready(&u->ring) || any) {
            /* What is queued goes (a cancel of a freed request must not
             * wait for another request to reuse its address), then a
             * cancel of everything, this batch included. */
            struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
            if (sqe) {
                io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
                io_uring_sqe_set_data64(sqe, TAG_IGNORE);
                sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            }
            (void)submit(u);
            any = u->issued != u->ended || u->evfd_armed;
        }
        pthread_mutex_unlock(&u->sq_lock);
        if (!any)
            break;
        if (!io_uring_cq_ready(&u->ring))
            (void)wait_cqe(u, 10 * 1000 * 1000);
        reap(r, u, false);
    }
    u->parking = false;
}

static void ur_disown(pn__reactor *r)
{
    struct ur *u = lane_mine(r->be_data);
    if (u) {
        if (u->issuer_only) {
            drain_lane(r, u);          /* still its issuer while it drains */
            tl_driver = 0;
        } else if (atomic_load(&u->drivers) == 1) {
            /* The last driver (a current-thread pn_block_on returning):
             * nothing of this thread's may stay armed. */
            park_ring(r, u);
            tl_driver = 0;
            pthread_mutex_lock(&u->sq_lock);
            atomic_fetch_sub(&u->drivers, 1);
            pthread_mutex_unlock(&u->sq_lock);
        } else {
            tl_driver = 0;
            /* Whatever another thread queued for this one to submit goes
             * now, and the count drops under the same lock, so a close
             * that looks at the count under it either is submitted here
             * or submits itself (ur_settle). */
            pthread_mutex_lock(&u->sq_lock);
            if (io_uring_sq_ready(&u->ring))
                (void)submit(u);
            atomic_fetch_sub(&u->drivers, 1);
            pthread_mutex_unlock(&u->sq_lock);
        }
        if (tl_dirty == u->id)
            tl_dirty = 0;       /* the caller flushed */
    }
}

/* A thread that does not drive the ring queued the removals and cancels
 * of a close; until they are submitted the kernel's requests keep the file
 * open, so close(2) would not close the socket (a listener would keep
 * accepting into its backlog).  When no thread drives the ring (a
 * current-thread runtime between two pn_block_on, a runtime whose workers
 * are gone) this thread submits them itself: the SQ then holds only what
 * such threads queued (removals, cancels, NOPs; their registrations are
 * not armed from here, see ur_add), since a driver submits what is queued
 * before it lets go (ur_disown), and they finish inside the submission,
 * so nothing stays with this thread.  Otherwise it waits, up to 100 ms (a
 * worker wakes within microseconds; a runtime busy or shutting down may
 * not), until the kernel's SQ head has passed them.  The requests they
 * cancel end by task work on the threads that submitted them, so the file
 * is let go when those threads next enter the kernel: at once for a
 * running worker, later for a thread blocked elsewhere. */
static void settle_lane(struct ur *u, struct ur *me)
{
    struct timespec end = deadline_in(100);
    pthread_mutex_lock(&u->sq_lock);
    uint64_t last = pn__ur_note_queued(u);   /* the last SQE queued */
    bool queued = io_uring_sq_ready(&u->ring) > 0 || u->nlater;
    for (;;) {
        if (queued && atomic_load(&u->drivers) == 0) {
            /* A SINGLE_ISSUER lane with no thread has nothing in the
             * kernel: its thread has not started, or drained it. */
            if (!u->issuer_only)
                (void)submit(u);
            queued = false;
        }
        pthread_mutex_unlock(&u->sq_lock);
        if (!queued || past(&end))
            return;
        if (me) {
            /* Meanwhile send what others queued on our own lane: its
             * thread may be waiting for us the same way. */
            pthread_mutex_lock(&me->sq_lock);
            if (me->nlater)
                queue_later(me);
            if (io_uring_sq_ready(&me->ring))
                (void)submit(me);
            pthread_mutex_unlock(&me->sq_lock);
        }
        sched_yield();
        pthread_mutex_lock(&u->sq_lock);
        /* Queued until the kernel has taken the SQE (and a cancel kept
         * in the list has been queued: its turn submits it at once). */
        queued = pn__ur_unsubmitted(u, last) || u->nlater;
    }
}

void pn__ur_wait_ended(struct ur *u, atomic_int *refs)
{
    if (tl_driver == u->id || atomic_load(&u->drivers) == 0)
        return;         /* its own turn ends them; or nobody would reap */
    struct timespec end = deadline_in(100);
    while (atomic_load(refs) > 1 && !past(&end))
        sched_yield();
}

/* Wait for the lanes this thread queued on without driving them (its own
 * turn or flush submits its own lane's). */
static void ur_settle(pn__reactor *r)
{
    struct ur *home = r->be_data;
    struct ur *me = lane_mine(home);
    if (tl_foreign.home != home->id)
        return;                        /* queued nothing there */
    uint64_t mask = tl_foreign.mask;
    bool all = tl_foreign.all;
    tl_foreign.mask = 0;
    tl_foreign.all = false;
    for (unsigned i = 0; i < home->nlanes; i++)
        if (home->lanes[i] != me && (all || (i < 64 && (mask >> i & 1))))
            settle_lane(home->lanes[i], me);
}

/* Send what is queued: now if this thread drives the ring, else by waking
 * the thread that does (its turn submits first thing).  Called with
 * sq_lock held; releases it.  0 or -errno. */
static int flush(pn__reactor *r, struct ur *u)
{
    if (tl_driver == u->id) {
        int err = submit(u);
        pthread_mutex_unlock(&u->sq_lock);
        return err;
    }
    wake_owner(r, u);                  /* releases sq_lock */
    return 0;
}

static int arm(pn__reactor *r, struct ur *u, pn__registration *reg, uint64_t token)
{
    pthread_mutex_lock(&u->sq_lock);
    if (!pn__reactor_lookup(r, token)) {
        /* Deregistered meanwhile (by another thread): nothing to watch. */
        pthread_mutex_unlock(&u->sq_lock);
        return 0;
    }
    struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
    if (!sqe && tl_driver != u->id && later_add(u, token, true)) {
        /* Another thread's full lane: its next turn arms it. */
        atomic_store_explicit(&reg->lane, u->lane, memory_order_relaxed);
        return flush(r, u);
    }
    if (!sqe) {
        pthread_mutex_unlock(&u->sq_lock);
        return -EBUSY;
    }
    atomic_store_explicit(&reg->lane, u->lane, memory_order_relaxed);
    prep_poll(u, sqe, reg->fd, token);
    return flush(r, u);
}

static int ur_add(pn__reactor *r, pn__registration *reg, uint64_t token)
{
    struct ur *u = r->be_data;
    struct ur *mine = lane_mine(u);
    /* epoll refuses files that cannot be polled (regular files and
     * directories) with EPERM; poll on them would complete at once, for
     * ever.  Refuse them the same way. */
    if (!reg->owner || (!reg->owner->is_socket && !reg->owner->is_stream)) {
        struct stat st;
        if (fstat(reg->fd, &st) < 0)
            return -errno;
        if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
            return -EPERM;
    }
    /* A stream socket does its reads and writes as io_uring requests
     * (uio.c): a standing poll would only post a CQE per packet that
     * nobody needs.  Arm it when a readiness wait asks (ur_watch).
     *
     * Once armed it stays, even when nothing waits on it any more: after
     * an -ENOBUFS a read falls back to recv(2) and, on EAGAIN, to a
     * readiness wait that arms it; the next read arms the receive again,
     * and the poll is not taken down.  That costs one extra CQE per
     * packet (readiness bits set; a wake only if a readiness waiter is
     * stored) and loses nothing: a poll only reports, never takes bytes,
     * so the receive's data and order are untouched.  It ends with the
     * registration (ur_del cancels it, as `unwatched` is false) or when
     * a current-thread pn_block_on returns (park_ring, then unwatch()
     * marks it unwatched again).  Taking it down when the receive is
     * re-armed is not simple: the same poll carries write interest (a
     * task in pn_writable, a connect reported in progress by park_ring),
     * and cancelling it under a writer's wait would lose its wake. */
    if (u->completion && reg->owner && reg->owner->is_socket && reg->owner->is_stream) {
        atomic_store(&reg->unwatched, true);
        return 0;
    }
    /* A thread that does not drive the ring (pn_async_fd_register from a
     * thread of the caller's) does not arm it either: the poll would be
     * submitted by a driver, or by this thread's next close (ur_settle),
     * and then belong to it.  The first readiness wait arms it. */
    if (!mine) {
        atomic_store(&reg->unwatched, true);
        return 0;
    }
    return arm(r, mine, reg, token);
}

static void ur_watch(pn__reactor *r, pn__registration *reg, uint64_t token)
{
    /* A failure is seen as readiness that never comes; make it an error
     * the waiter's syscall reports instead. */
    if (arm(r, pn__ur_lane(r), reg, token) < 0)
        pn__reactor_dispatch(r, token, PN__READY_ERROR | PN__READY_READ | PN__READY_WRITE);
}

static void ur_del(pn__reactor *r, pn__registration *reg, uint64_t token)
{
    if (atomic_load(&reg->unwatched))
        return;                        /* never armed: nothing to cancel */
    struct ur *home = r->be_data;
    /* Its poll is on the ring that armed it: only that ring cancels it. */
    struct ur *u = home->lanes[atomic_load_explicit(&reg->lane, memory_order_relaxed)];
    /* ASYNC_CANCEL, not POLL_REMOVE: a multishot poll whose event is
     * being delivered at that moment refuses POLL_REMOVE (-EALREADY) and
     * would stay armed, holding the file, for ever; a cancel marks it and
     * it ends after that delivery. */
    pthread_mutex_lock(&u->sq_lock);
    pn__ur_queue_cancel(u, token);
    (void)flush(r, u);
}

/* Re-arm the poll of `token` if its record is still that registration's.
 * Returns true when an SQE was queued. */
static bool rearm(pn__reactor *r, struct ur *u, uint64_t token)
{
    bool queued = false;
    pthread_mutex_lock(&u->sq_lock);
    pn__registration *reg = pn__reactor_lookup(r, token);
    if (reg) {
        struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
        if (sqe) {
            atomic_store_explicit(&reg->lane, u->lane, memory_order_relaxed);
            prep_poll(u, sqe, reg->fd, token);
            queued = true;
        }
    }
    pthread_mutex_unlock(&u->sq_lock);
    return queued;
}

/* The poll of `token` ended while its ring parks (park_ring): it is not
 * re-armed from here.  Its record is marked unwatched, so the next
 * readiness wait on it arms a fresh poll (pn__reactor_watch, from a thread
 * that drives the ring then), and the tasks waiting on it are woken, with
 * no readiness claimed, so that they make that wait.  A fresh multishot
 * poll reports the file's state when it is armed: nothing that happened
 * meanwhile is missed. */
static void unwatch(pn__reactor *r, struct ur *u, uint64_t token)
{
    pthread_mutex_lock(&u->sq_lock);
    pn__registration *reg = pn__reactor_lookup(r, token);
    pn_waker rd = PN_WAKER_NONE, wr = PN_WAKER_NONE;
    if (reg) {
        atomic_store(&reg->unwatched, true);
        pn__reg_lock(reg);
        rd = reg->reader;
        wr = reg->writer;
        reg->reader = reg->writer = PN_WAKER_NONE;
        pn__reg_unlock(reg);
    }
    pthread_mutex_unlock(&u->sq_lock);
    pn_waker_wake(&rd);
    pn_waker_wake(&wr);
}

static int wait_cqe(struct ur *u, int64_t timeout_ns)
{
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof arg);
    arg.sigmask_sz = _NSIG / 8;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        arg.ts = (uint64_t)(uintptr_t)&ts;
    }
    int n = io_uring_enter2(u->ring.ring_fd, 0, 1,
                            IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                            (sigset_t *)&arg, sizeof arg);
    /* liburing returns -errno (errno is not set).  -EBADR: the CQ
     * overflowed and the kernel could not keep the overflow (no memory),
     * so it dropped CQEs; it says so once per drop.  Not a reason to stop
     * pn_block_on: what is in the CQ is still reaped.  What the lost CQEs
     * carried is gone for good, and nothing says whose they were: a
     * readiness poll's event (its waiter sleeps until the next edge), a
     * receive's data (the buffer, and the bytes in it, are not seen: the
     * stream has a hole), a request's last CQE (its uio reference and its
     * copy stay until the runtime is freed, whose teardown waits its full
     * second for it; its future waits until its fd is closed).  The kernel
     * drops CQEs only when an atomic allocation fails, when the process is
     * out of memory anyway; the CQ is sized four turns deep so it does not
     * overflow in the first place. */
    if (n < 0 && n != -ETIME && n != -EINTR && n != -EAGAIN && n != -EBUSY && n != -EBADR)
        return n;
    return 0;
}

/* Handle up to max_events CQEs.  closing: the reactor is being freed,
 * nothing is re-armed.  Returns the number of records woken. */
static int reap(pn__reactor *r, struct ur *u, bool closing)
{
    int dispatched = 0;
    /* A request's memory (a send's copy, a receive's uio) was written by
     * the thread that queued it, under sq_lock, before the kernel saw it;
     * taking the lock after its CQE came makes that order visible to the
     * language's memory model (and to ThreadSanitizer), not only to the
     * kernel's barriers. */
    unsigned avail = io_uring_cq_ready(&u->ring);
    if (!avail)
        return 0;
    pthread_mutex_lock(&u->sq_lock);
    pthread_mutex_unlock(&u->sq_lock);
    if (avail > r->max_events)
        avail = r->max_events;   /* later ones: the next turn (after its lock) */
    unsigned head, seen = 0, bufs = 0;
    struct io_uring_cqe *cqe;
    /* Receive buffers this batch hands out, counted before any reader can
     * give one back (tests read bufs_taken - bufs_back). */
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        bufs += (cqe->flags & IORING_CQE_F_BUFFER) != 0;
        if (++seen == avail)
            break;
    }
    if (bufs)
        atomic_fetch_add_explicit(&u->bufs_taken, bufs, memory_order_relaxed);
    seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        bool more = cqe->flags & IORING_CQE_F_MORE;
        seen++;
        if (ud == PN__WAKE_TOKEN) {
            woken(r, u);
        } else if (ud == EVFD_TOKEN) {
            uint64_t v;
            while (pn__sys.read(u->wakefd, &v, sizeof v) < 0 && errno == EINTR)
                ;
            woken(r, u);            /* after the drain, as in epoll.c */
            if (!more)
                u->evfd_armed = false;   /* re-armed by the next turn */
        } else if ((ud & (TAG_IGNORE | TAG_OP | 0xff)) == TAG_MSG) {
            /* A wake to another lane failed (its ring not enabled yet,
             * ...): its eventfd carries it. */
            unsigned lane = (unsigned)(ud >> 8) & 0xffffffu;
            if (res < 0 && lane < u->home->nlanes)
                (void)wake_eventfd(u->home->lanes[lane]);
        } else if (ud & TAG_OP) {
            dispatched += pn__uio_complete(u, cqe);
            /* A cancel of it queued later by another thread was queued
             * under the uio's lock, which the completion took after it:
             * this sees it (only ud is used; the op may be freed). */
            if (!more && u->nlater)
                later_forget(u, ud);
            u->ended += !more;
        } else if (!(ud & TAG_IGNORE)) {
            if (res >= 0)
                dispatched += pn__reactor_dispatch(r, ud, pn__poll_to_ready((uint32_t)res));
            else if (res != -ECANCELED)
                /* The poll failed (the fd went bad): both sides retry
                 * their syscall and get the error from it. */
                dispatched += pn__reactor_dispatch(r, ud, PN__READY_ERROR |
                                                   PN__READY_READ | PN__READY_WRITE);
            if (!more) {
                u->ended++;
                if (!closing && (res >= 0 || res == -ECANCELED)) {
                    if (u->parking)
                        unwatch(r, u, ud);
                    else
                        rearm(r, u, ud);
                }
            }
        }
        if (seen == avail)
            break;
    }
    io_uring_cq_advance(&u->ring, seen);
    return dispatched;
}

/* Requests whose last CQE has not come (teardown only). */
static bool in_flight(struct ur *u)
{
    pthread_mutex_lock(&u->sq_lock);
    bool any = u->issued != u->ended;
    pthread_mutex_unlock(&u->sq_lock);
    return any;
}

/* Cancel every request and wait (up to a second) until each has posted
 * its last CQE: only then has the kernel let go of the files and buffers,
 * so an fd the owner closes after the runtime is gone really closes, and
 * no receive can land in freed memory.  (Closing the ring alone tears
 * requests down in the background.)  With nothing in flight and nothing
 * queued (a parked ring, see park_ring) it submits nothing: a submission
 * would make the kernel record this thread as one of the ring's tasks,
 * and the ring's teardown signals each of those (see ur_close). */
static void cancel_all(pn__reactor *r, struct ur *u)
{
    pthread_mutex_lock(&u->sq_lock);
    bool idle = u->issued == u->ended && !u->evfd_armed && !io_uring_sq_ready(&u->ring);
    struct io_uring_sqe *sqe = idle ? NULL : pn__ur_get_sqe(u);
    if (sqe) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        (void)submit(u);
    }
    pthread_mutex_unlock(&u->sq_lock);
    for (int i = 0; i < 100 && in_flight(u); i++) {
        if (!io_uring_cq_ready(&u->ring))
            (void)wait_cqe(u, 10 * 1000 * 1000);
        reap(r, u, true);
    }
}

/*
 * Closing a ring: its last fput queues the kernel's io_ring_exit_work,
 * which, once the ring's requests are gone, sends TWA_SIGNAL task work to
 * every task the kernel recorded as a user of the ring (any thread that
 * ever submitted to it, io_uring_enter with SQEs; in flight or not), one
 * at a time, later and asynchronously.  A thread asleep in a syscall that
 * does not restart then fails it with EINTR (a recv with SO_RCVTIMEO).
 * Rings are created on a thread that exits at once (ur_open), the workers
 * of the multi-thread runtime have exited by now, and cancel_all submits
 * nothing to a ring with nothing in flight (a parked one), so the thread
 * that frees the runtime is not recorded by that.  What is left: the
 * thread that ran a current-thread runtime's pn_block_on submitted while
 * it drove the ring.  When that thread is the one that frees the runtime,
 * it waits here for those signals (await_teardown), so none reaches the
 * caller's code after pn_runtime_free returned.  Another thread that
 * drove the ring is signalled once, soon after the free (a known
 * limitation, docs/ARCHITECTURE.md).
 */

/* Wait, at most 100 ms, until n rings' teardown signals have reached this
 * thread: each interrupts an epoll_wait that nothing else wakes (EINTR),
 * and its task work runs on the way back, here rather than in a blocking
 * call of the caller's after pn_runtime_free. */
static void await_teardown(unsigned n)
{
    int ep = pn__sys.epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return;
    pn_instant end = pn__mono_now() + PN_MS(100);
    for (pn_instant now; n && (now = pn__mono_now()) < end;) {
        struct timespec ts = { (time_t)((end - now) / PN_SEC(1)),
                               (long)((end - now) % PN_SEC(1)) };
        struct epoll_event ev;
        if (pn__sys.epoll_wait(ep, &ev, 1, &ts) < 0 && errno == EINTR)
            n--;
    }
    pn__sys.close(ep);
}

static void ur_close(pn__reactor *r)
{
    struct ur *home = r->be_data;
    if (!home)
        return;
    unsigned signals = 0;
    for (unsigned i = 0; i < home->nlanes; i++) {
        struct ur *u = home->lanes[i];
        uint64_t mark = tl_driver;
        if (u->issuer_only && !u->enabled) {
            /* Its thread never came (a runtime that failed to start):
             * this one becomes the issuer, to send what others queued
             * and cancel it. */
            enable_ring(u);
            tl_driver = u->id;
        }
        /* A drained lane (its thread left) has nothing in flight. */
        if (!atomic_load(&u->gone))
            cancel_all(r, u);
        tl_driver = mark;
        pn__free(u->later);
        bool quiet = !in_flight(u);
        io_uring_queue_exit(&u->waker);
        io_uring_queue_exit(&u->ring);
        signals += take_submitter(u);
        /* A request the kernel would not give up within cancel_all's
         * second may still be torn down in the background and write into
         * a receive buffer: then the buffers are left allocated rather
         * than freed under it (never seen; a bounded leak is the safe
         * side). */
        if (quiet)
            pn__uio_teardown(u);
    }
    ur_free(home);
    r->be_data = NULL;
    await_teardown(signals);
}

static int ur_turn(pn__reactor *r, int64_t timeout_ns)
{
    struct ur *home = r->be_data;
    struct ur *u = lane_mine(home);
    if (!u) {
        if (home->issuer_only)
            return -EBUSY;   /* only the thread that adopted it may */
        u = home;
        drive(u);
    }
    if (!u->evfd_armed) {
        pthread_mutex_lock(&u->sq_lock);
        struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
        if (sqe) {
            io_uring_prep_poll_multishot(sqe, u->wakefd, POLLIN);
            io_uring_sqe_set_data64(sqe, EVFD_TOKEN);
            u->evfd_armed = true;
        }
        pthread_mutex_unlock(&u->sq_lock);
    }
    /* The SQ is only looked at under its lock (other threads queue).  A
     * turn that may wait says so under it first: a thread that queues on
     * this lane after the submit below sees it and wakes us. */
    pthread_mutex_lock(&u->sq_lock);
    if (timeout_ns != 0)
        atomic_store_explicit(&u->waiting, true, memory_order_relaxed);
    if (u->nlater)
        queue_later(u);
    int err = io_uring_sq_ready(&u->ring) ? submit(u) : 0;
    pthread_mutex_unlock(&u->sq_lock);
    if (err) {
        atomic_store_explicit(&u->waiting, false, memory_order_relaxed);
        return err;
    }
    if (!io_uring_cq_ready(&u->ring)) {
        if (timeout_ns != 0) {
            err = wait_cqe(u, timeout_ns);
            if (err) {
                atomic_store_explicit(&u->waiting, false, memory_order_relaxed);
                return err;
            }
        } else if (IO_URING_READ_ONCE(*u->ring.sq.kflags) &
                   (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) {
            /* Completions wait in task work (COOP_TASKRUN) or in the
             * kernel's overflow list: one enter brings them in. */
            (void)io_uring_get_events(&u->ring);
        }
    }
    atomic_store_explicit(&u->waiting, false, memory_order_relaxed);
    int dispatched = reap(r, u, false);
    /* What the completions queued (re-arms, receives) goes now. */
    pthread_mutex_lock(&u->sq_lock);
    err = io_uring_sq_ready(&u->ring) ? submit(u) : 0;
    pthread_mutex_unlock(&u->sq_lock);
    if (tl_dirty == u->id)
        tl_dirty = 0;
    return err ? err : dispatched;
}

/* From a thread that is not one of the ring's drivers: the eventfd (a
 * MSG_RING submitted here could, if the kernel punts it, come back as task
 * work that interrupts this thread). */
static int wake_eventfd(struct ur *u)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = pn__sys.write(u->wakefd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    return n < 0 && errno != EAGAIN ? -errno : 0;
}

/* From the thread that drives u: a MSG_RING from the small waker ring
 * (under waker_lock), which posts the wake straight into u's CQ. */
static int wake_self(struct ur *u)
{
    int err = 0;
    pthread_mutex_lock(&u->waker_lock);
    /* Failed MSG_RINGs from earlier wakes (successes post no CQE). */
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->waker, &cqe) == 0)
        io_uring_cqe_seen(&u->waker, cqe);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->waker);
    if (!sqe) {
        err = -EBUSY;
    } else {
        io_uring_prep_msg_ring(sqe, u->ring.ring_fd, 0, PN__WAKE_TOKEN, 0);
        io_uring_sqe_set_data64(sqe, TAG_IGNORE);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        int n;
        do
            n = io_uring_submit(&u->waker);
        while (n == -EINTR);
        if (n < 0)
            err = n;
        else if (io_uring_peek_cqe(&u->waker, &cqe) == 0) {
            /* MSG_RING runs inline: a CQE now is its failure. */
            if (cqe->res < 0)
                err = cqe->res;
            io_uring_cqe_seen(&u->waker, cqe);
        }
    }
    pthread_mutex_unlock(&u->waker_lock);
    /* A MSG_RING that failed woke nobody: the eventfd does. */
    return err ? wake_eventfd(u) : 0;
}

static int ur_wake(pn__reactor *r)
{
    return signal_lane(r->be_data);
}

static void ur_wake_lane(pn__reactor *r, unsigned lane)
{
    struct ur *home = r->be_data;
    if (lane < home->nlanes)
        wake_lane(r, home->lanes[lane]);
}

const struct pn__backend pn__uring_backend = {
    .name = "uring",
    .kind = PN_BACKEND_URING,
    .open = ur_open,
    .close = ur_close,
    .add = ur_add,
    .del = ur_del,
    .turn = ur_turn,
    .wake = ur_wake,
    .flush = ur_flush,
    .watch = ur_watch,
    .adopt = ur_adopt,
    .disown = ur_disown,
    .settle = ur_settle,
    .lanes = ur_lanes,
    .wake_lane = ur_wake_lane,
    .adopt_lane = ur_adopt_lane,
};

#endif /* PN_WITH_URING */
