/*
 * uio.c - completion-mode socket I/O on the io_uring backend (see uio.h).
 *
 * Owns: struct pn__uio (one per stream socket that does I/O in completion
 * mode) and struct pn__uop (one receive embedded in it, one send per write
 * or one connect in flight), and the provided buffer ring the receives take
 * buffers from.
 *
 * Receive: one multishot IORING_OP_RECV with IOSQE_BUFFER_SELECT per
 * socket, armed by the first read and kept armed (on the current-thread
 * runtime until pn_block_on returns: park_ring in uring.c takes it down,
 * the chunks it brought stay queued, and the next read arms it again):
 * each CQE names the buffer
 * the kernel filled, and the chunk waits in the uio's queue until reads
 * copy it out; a buffer goes back to the ring as soon as it is read to its
 * end.  When RX_HIGH chunks wait unread the receive is cancelled (CQEs
 * already on their way still queue: the queue grows); a read that leaves
 * fewer than RX_ARM_BELOW arms it again.  So a slow reader holds a bounded
 * number of buffers.  When the ring has no buffer left (-ENOBUFS, which
 * ends the multishot), reads fall back to the readiness path (a recv(2)
 * into the caller's buffer) until one comes back: nothing of ours is in
 * flight for the socket then, so order is kept.

 * Send: a write copies up to TX_MAX bytes of the caller's into a pn__uop
 * and queues an IORING_OP_SEND (MSG_NOSIGNAL | MSG_WAITALL, so the kernel
 * finishes a partial send itself); it returns PN_PENDING, and the poll
 * after the CQE returns the count (or -EPIPE, -ECONNRESET, ...).  A poll
 * made while the send is in flight waits for it: a pending write must be
 * polled again with the same bytes, or dropped (pn__uio_forget; the
 * futures' drop functions do it), which orphans the send: it completes
 * unseen and its copy is freed then, and the next write waits until it
 * has.  A send knows the waker of the poll that queued it (its owner), so
 * a future dropped after its send completed (its waker already taken)
 * still drops that result rather than leave it to the next write, and
 * the result goes to the owner only: another writer's poll (two tasks
 * writing one stream) waits apart, in tx_wait, until the owner has taken
 * its result or been dropped, then queues its own send.  (The identity
 * is the waker, the only one pn_async_fd_poll_write has: two writes
 * pending at once in one task, a join of two writes on one stream, share
 * it, and would share one result; io.h's one writer per task at a time
 * covers them.)  Nothing the kernel may still read or write is ever
 * memory a caller owns.
 *
 * Accept (a listener's uio): a window of ACCEPT_AHEAD (8) single-shot
 * IORING_OP_ACCEPT requests, each with its own address buffer.  accept4
 * first, so a waiting connection is taken at once; on EAGAIN the window
 * is filled, and from then on every accept that takes a connection a
 * request brought queues one more.  Each request accepts one connection
 * as it arrives (no syscall per connection; the kernel wakes one waiting
 * accept per connection), and the finished requests wait, in the order
 * they completed, until accepts take them.  So the kernel never holds more
 * than ACCEPT_AHEAD connections accepted behind the server's back, however
 * long the runtime does not turn: a server that stops accepting, backs off
 * on EMFILE or is flooded keeps its descriptors.  When a current-thread
 * pn_block_on returns, park_ring (uring.c) cancels the requests still
 * waiting (their connections stay in the backlog, for the next accept's
 * accept4) and the finished ones stay queued for the next accepts.  (A multishot accept
 * cannot be bounded that way: the kernel accepts the whole backlog before
 * the runtime sees the first CQE; and its one address buffer would cost a
 * getpeername per connection.)  A dropped accept future only takes its
 * waker back; close cancels what is in flight and closes what waits.
 *
 * Connect: IORING_OP_CONNECT from a copy of the address, in the send's
 * slot (a socket still connecting has nothing to write); its CQE is the
 * connect's result, where connect(2) needs a wait for writability and
 * getsockopt(SO_ERROR) after it.  Dropped or closed while in flight, it is
 * cancelled like a send.
 *
 * Ring: a uio's requests all go to one ring, the lane of the thread that
 * did its first I/O (pn__ur_lane: with a ring per worker, that worker's),
 * for its lifetime: its receive buffers come from that lane's buffer ring
 * and only that ring can cancel its requests.  Another thread queues them
 * there under the lane's sq_lock, and the lane's thread submits them.
 *
 * Lifetime: a uio has one reference from its afd and one per request in
 * flight; the last CQE or the afd's close frees it.  A request is queued
 * with the fd number: before the fd is closed, every SQE of its still in
 * the SQ (its SQ position not yet consumed by the kernel) becomes a NOP,
 * so a reused fd number can never receive another socket's request.
 *
 * Locks: the uio's lock guards its fields; sq_lock (a mutex) may be
 * taken inside it, never the reverse; wakers run after both are released
 * (a waker a poll displaces is handed back by store() and woken after the
 * unlock).  The uio's lock is a mutex, not a spin lock: under it a request
 * is queued, and queueing may make syscalls (an io_uring_enter when the SQ
 * is full, the eventfd write or MSG_RING that wakes the lane's thread) and
 * take sq_lock and br_lock, which sleep when contended.  With a spin lock,
 * a holder preempted or asleep there (2 vCPUs: routine) left the other
 * worker spinning for the rest of its time slice on a lock that could not
 * come free; a mutex puts it to sleep instead.  Uncontended, both cost one
 * atomic read-modify-write to take and one to release.
 */
#ifdef PN_WITH_URING

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include "core/chaos.h"
#include "core/sys.h"
#include "reactor/slab.h"
#include "reactor/uio.h"
#include "reactor/uring.h"

#define RX_HIGH 8u         /* chunks waiting that pause the receive */
#define RX_ARM_BELOW 4u    /* (re-)arm the receive while fewer wait */
#define TX_MAX (256u << 10) /* bytes one write sends at most */
#define ACCEPT_AHEAD PN__ACCEPT_AHEAD

/* What an accept request's data holds: the peer's address. */
struct accept_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

enum { UOP_RECV = 1, UOP_SEND = 2, UOP_CONNECT = 3, UOP_ACCEPT = 4, UOP_CLOSE = 5 };

struct pn__uop {
    uint8_t kind;
    bool done;             /* send, connect: the CQE came (res is valid) */
    bool neutered;         /* its SQE became a NOP (see stop_op) */
    bool cancelled;        /* an accept: its cancel is queued */
    bool parked;           /* a send cancelled by park_ring (uring.c)
                              before it sent anything: its owner's next
                              poll queues it again */
    int32_t res;
    struct pn__uio *io;
    size_t len;
    size_t cap;            /* send, connect: bytes of data allocated */
    char *data;            /* send: the copy; connect: the address;
                              accept: struct accept_addr */
    struct io_uring_sqe *sqe;  /* where it was last queued, and */
    uint64_t seq;              /* when (see pn__ur_unsubmitted, stop_op) */
    pn_waker owner;            /* send, connect: the waker of the poll that
                                  queued it (identity only: no reference
                                  held, never woken) */
};

/* A listener's accept requests: in flight (any order) and finished (in
 * the order they completed), ACCEPT_AHEAD at most together. */
struct accq {
    unsigned fly_n, head, n, idle_n;
    struct pn__uop *fly[ACCEPT_AHEAD];
    struct pn__uop *done[ACCEPT_AHEAD];
    struct pn__uop *idle[ACCEPT_AHEAD];   /* taken, kept for the next request */
};

#define SPARE_MAX 16384u   /* a finished send this small is kept for the next */

struct pn__uio {
    atomic_int refs;
    pthread_mutex_t lock;  /* guards the plain fields below */
    pn__reactor *r;
    struct ur *u;          /* NULL once detached (the reactor is gone) */
    int fd;
    bool closed;
    bool rx_armed, rx_eof, rx_nobufs;
    int rx_err;
    struct pn__uop rx;     /* the receive request (kind UOP_RECV) */
    unsigned rx_head, rx_n;
    uint32_t rx_off;       /* bytes of the head chunk already read */
    unsigned rx_cap;       /* rxq's size: a power of two, grown as needed */
    struct chunk { uint32_t len; uint16_t bid; } *rxq;
    bool rx_stopping;      /* a cancel of the multishot receive is on its way */
    bool rx_hold;          /* a release is waiting: do not re-arm (a read
                              clears it) */
    char *spill;           /* unread bytes saved when the reactor went */
    size_t spill_len, spill_off;
    struct pn__uop *tx;    /* the send of the write being polled */
    unsigned tx_orphans;   /* sends or connects dropped and not ended: a
                              new write waits for them (its bytes must not
                              overtake theirs) */
    struct pn__uop *spare; /* a finished send kept for reuse (writes of
                              similar size then allocate nothing) */
    struct accq *acc;      /* a listener's accept requests, or NULL */
    pn_waker reader, writer;
    pn_waker tx_wait;      /* a write waiting while another future's send
                              is io->tx (see pn__uio_write) */
};

static void io_lock(struct pn__uio *io)
{
    pthread_mutex_lock(&io->lock);
}

static void io_unlock(struct pn__uio *io)
{
    pthread_mutex_unlock(&io->lock);
}

/* Close and free a finished accept nobody will take. */
static void drop_accepted(struct pn__uop *op)
{
    if (op->res >= 0)
        (void)pn__sys.close(op->res);
    pn__free(op);
}

static void io_unref(struct pn__uio *io)
{
    if (atomic_fetch_sub(&io->refs, 1) != 1)
        return;
    pn_waker_drop(&io->reader);
    pn_waker_drop(&io->writer);
    pn_waker_drop(&io->tx_wait);
    if (io->acc) {       /* close took what waited, and accepted() closes
                            what finishes after it: only idle ones left */
        while (io->acc->idle_n)
            pn__free(io->acc->idle[--io->acc->idle_n]);
        pn__free(io->acc);
    }
    pn__free(io->spill);
    pn__free(io->rxq);
    pn__free(io->spare);
    pthread_mutex_destroy(&io->lock);
    pn__free(io);
}

/* ---- the provided buffer ring ---------------------------------------- */

static char *buf_addr(struct ur *u, unsigned bid)
{
    return u->bufs + (size_t)bid * BUF_SIZE;
}

static void buf_give_back(struct ur *u, unsigned bid)
{
    pthread_mutex_lock(&u->br_lock);
    u->bufs_back++;
    io_uring_buf_ring_add(u->br, buf_addr(u, bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
    pthread_mutex_unlock(&u->br_lock);
}

static size_t ring_bytes(void)
{
    return BUF_COUNT * sizeof(struct io_uring_buf);
}

void pn__uio_setup(struct ur *u)
{
    u->completion = false;
    /* liburing 2.3 has no io_uring_setup_buf_ring: map and register the
     * ring by hand (it must be page-aligned). */
    void *ring = mmap(NULL, ring_bytes(), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED)
        return;
    char *bufs = pn__malloc((size_t)BUF_COUNT * BUF_SIZE);
    if (!bufs) {
        munmap(ring, ring_bytes());
        return;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)ring;
    reg.ring_entries = BUF_COUNT;
    reg.bgid = BUF_GROUP;
    if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0) {
        pn__free(bufs);
        munmap(ring, ring_bytes());
        return;
    }
    u->br = ring;
    u->bufs = bufs;
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(u->br, buf_addr(u, i), BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(u->br, BUF_COUNT);
    pthread_mutex_init(&u->br_lock, NULL);
    u->completion = true;
}

void pn__uio_teardown(struct ur *u)
{
    if (!u->br)
        return;
    /* The ring is gone (or going): nothing is registered any more. */
    munmap(u->br, ring_bytes());
    pn__free(u->bufs);
    pthread_mutex_destroy(&u->br_lock);
    u->br = NULL;
    u->bufs = NULL;
    u->completion = false;
}

/* ---- queueing ---------------------------------------------------------- */

/* An SQE for a request of io's, the request counted (a reference on io,
 * one in flight on the ring); NULL, nothing counted, when the kernel takes
 * no more entries.  io locked, sq_lock held. */
static struct io_uring_sqe *claim_sqe_locked(struct pn__uio *io)
{
    struct io_uring_sqe *sqe = pn__ur_get_sqe(io->u);
    if (sqe) {
        atomic_fetch_add(&io->refs, 1);
        io->u->issued++;
    }
    return sqe;
}

/* The same, taking sq_lock: held on return with an SQE, released
 * without. */
static struct io_uring_sqe *claim_sqe(struct pn__uio *io)
{
    pthread_mutex_lock(&io->u->sq_lock);
    struct io_uring_sqe *sqe = claim_sqe_locked(io);
    if (!sqe)
        pthread_mutex_unlock(&io->u->sq_lock);
    return sqe;
}

/* Queue the receive.  io locked; the caller has set rx_armed.  False,
 * unarmed, without an SQE. */
static bool queue_recv(struct pn__uio *io)
{
    struct ur *u = io->u;
    struct io_uring_sqe *sqe = claim_sqe(io);
    if (!sqe) {
        io->rx_armed = false;
        return false;
    }
    io->rx.neutered = false;
    io_uring_prep_recv_multishot(sqe, io->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&io->rx | TAG_OP);
    io->rx.sqe = sqe;
    io->rx.seq = pn__ur_note_queued(u);
    pn__ur_queued(io->r, u);
    return true;
}

/* Arm the receive if it should be.  io locked. */
static void maybe_arm(struct pn__uio *io)
{
    if (io->rx_armed || io->rx_hold || io->closed || !io->u || io->rx_eof || io->rx_err ||
        io->rx_n >= RX_ARM_BELOW)
        return;
    io->rx_armed = true;
    io->rx_nobufs = false;
    /* No SQE (a full SQ of another thread's lane, or the lane is gone):
     * the next read uses recv(2), as when the buffers ran out; nothing of
     * ours is in flight, so order is kept. */
    if (!queue_recv(io))
        io->rx_nobufs = true;
}

/* Stop the request `op` (sq_lock held).  Still in the SQ: its SQE becomes
 * a NOP with the same user_data; the NOP completes with 0, which must not
 * read as a result (end of stream, fd 0, connected), so the op is marked
 * and its CQE taken as -ECANCELED.  In the kernel: an ASYNC_CANCEL is
 * queued, whose success posts no CQE (without an SQE it waits for the
 * lane's thread's next turn, pn__ur_queue_cancel).  Either way the
 * request's own last CQE still comes and frees what it holds.  Returns
 * true when it queued a cancel (the caller makes it go: pn__ur_queued). */
static bool stop_op(struct ur *u, struct pn__uop *op)
{
    if (pn__ur_unsubmitted(u, op->seq)) {
        uint64_t ud = op->sqe->user_data;
        io_uring_prep_nop(op->sqe);
        io_uring_sqe_set_data64(op->sqe, ud);
        op->neutered = true;
        return false;
    }
    pn__ur_queue_cancel(u, (uint64_t)(uintptr_t)op | TAG_OP);
    return true;
}

/* After stopping requests (sq_lock held; released here): make a queued
 * cancel go (pn__ur_queued); SQEs only turned into NOPs need nothing. */
static void stopped(struct pn__uio *io, struct ur *u, bool queued)
{
    if (queued)
        pn__ur_queued(io->r, u);
    else
        pthread_mutex_unlock(&u->sq_lock);
}

/* Too much waits unread: ask the kernel to stop the multishot receive (io
 * locked).  CQEs already on their way still land in the queue. */
static void pause_recv(struct pn__uio *io)
{
    struct ur *u = io->u;
    if (!io->rx_armed || io->rx_stopping || !u)
        return;
    io->rx_stopping = true;
    pthread_mutex_lock(&u->sq_lock);
    stopped(io, u, stop_op(u, &io->rx));
}

/* Append a chunk (io locked); false without memory for a bigger queue. */
static bool rx_push(struct pn__uio *io, unsigned bid, uint32_t len)
{
    if (io->rx_n == io->rx_cap) {
        unsigned cap = io->rx_cap ? io->rx_cap * 2 : 16;
        struct chunk *q = pn__malloc(cap * sizeof *q);
        if (!q)
            return false;
        for (unsigned i = 0; i < io->rx_n; i++)
            q[i] = io->rxq[(io->rx_head + i) & (io->rx_cap - 1)];
        pn__free(io->rxq);
        io->rxq = q;
        io->rx_cap = cap;
        io->rx_head = 0;
    }
    struct chunk *c = &io->rxq[(io->rx_head + io->rx_n) & (io->rx_cap - 1)];
    c->bid = (uint16_t)bid;
    c->len = len;
    io->rx_n++;
    return true;
}

/* Append n bytes to the spill (io locked).  Without memory the bytes are
 * lost, as they would be with no room in a kernel socket buffer. */
static void spill_append(struct pn__uio *io, const char *src, size_t n)
{
    char *s = pn__malloc(io->spill_len + n);
    if (!s)
        return;
    if (io->spill_len)
        memcpy(s, io->spill, io->spill_len);
    memcpy(s + io->spill_len, src, n);
    pn__free(io->spill);
    io->spill = s;
    io->spill_len += n;
}

/* ---- completions (the driver) ---------------------------------------- */

/* A listener's accept request finished (io locked): it waits with the
 * others for an accept to take it, unless nobody will (closed: its
 * connection is closed) or it was cancelled.  An error (EMFILE, ...) leaves
 * the connection that woke the request in the backlog; the accept that
 * takes the error queues a fresh request, and a request looks at the
 * backlog when it is issued, so the connection is found again.  One error
 * waiting is enough (the accept that takes it backs off): another right
 * behind it is dropped. */
static void accepted(struct pn__uio *io, struct pn__uop *op, int res)
{
    struct accq *q = io->acc;
    for (unsigned i = 0; i < q->fly_n; i++)
        if (q->fly[i] == op) {
            q->fly[i] = q->fly[--q->fly_n];
            break;
        }
    op->res = res;
    struct pn__uop *last = q->n ? q->done[(q->head + q->n - 1) % ACCEPT_AHEAD] : NULL;
    if (io->closed || res == -ECANCELED || (res < 0 && last && last->res < 0))
        drop_accepted(op);
    else
        q->done[(q->head + q->n++) % ACCEPT_AHEAD] = op;
}

static int close_complete(struct pn__uclose *c, int res);

int pn__uio_complete(struct ur *u, struct io_uring_cqe *cqe)
{
    struct pn__uop *op = (struct pn__uop *)(uintptr_t)(cqe->user_data & ~TAG_OP);
    if (op->kind == UOP_CLOSE)
        return close_complete((struct pn__uclose *)op, cqe->res);
    struct pn__uio *io = op->io;
    int res = op->neutered ? -ECANCELED : cqe->res;
    pn_waker w = PN_WAKER_NONE;
    if (op->kind == UOP_ACCEPT) {
        io_lock(io);
        accepted(io, op, res);
        w = io->reader;
        io->reader = PN_WAKER_NONE;
        io_unlock(io);
        bool woke = !pn_waker_is_none(&w);
        pn_waker_wake(&w);
        io_unref(io);
        return woke;
    }
    if (op->kind == UOP_RECV) {
        bool more = cqe->flags & IORING_CQE_F_MORE;
        io_lock(io);
        if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            if (io->closed) {
                buf_give_back(u, bid);   /* nobody will read it */
            } else if (!io->u || !rx_push(io, bid, (uint32_t)res)) {
                /* The reactor is going (its teardown cancels and reaps),
                 * or no memory for the queue: keep the bytes with the
                 * afd, after what is spilled. */
                spill_append(io, buf_addr(u, bid), (size_t)res);
                buf_give_back(u, bid);
            } else if (io->rx_n >= RX_HIGH) {
                pause_recv(io);
            }
        } else if (res == 0) {
            io->rx_eof = true;
        } else if (res == -ENOBUFS) {
            io->rx_nobufs = true;        /* reads use recv(2) meanwhile */
            atomic_fetch_add(&u->nobufs, 1);
        } else if (res < 0 && res != -ECANCELED) {
            io->rx_err = res;
        }
        if (!more) {
            io->rx_armed = false;
            io->rx_stopping = false;
            /* Not while the ring parks (its thread is leaving: the next
             * read arms it, from the thread that drives the ring then). */
            if ((res > 0 || res == -ECANCELED) && !u->parking)
                maybe_arm(io);
        }
        w = io->reader;
        io->reader = PN_WAKER_NONE;
        io_unlock(io);
        if (!more)
            io_unref(io);
        bool woke = !pn_waker_is_none(&w);
        pn_waker_wake(&w);
        return woke;
    } else {
        io_lock(io);
        bool orphan = io->tx != op;
        if (u->parking && res == -ECANCELED && !op->neutered && !orphan && !io->closed) {
            /* Cancelled because the ring's thread leaves (park_ring), not
             * by its owner: a send had sent nothing (a partial one reports
             * its count), so its owner's next poll sends it again; a
             * connect's handshake goes on, and the connect waits for it
             * as after connect(2)'s EINPROGRESS. */
            if (op->kind == UOP_SEND)
                op->parked = true;
            else
                res = -EINPROGRESS;
        }
        op->res = res;
        op->done = !op->parked;
        if (orphan)
            io->tx_orphans--;
        /* Its writer, or a write waiting for the orphans to end (not the
         * writer of another request in flight). */
        if (!orphan || !io->tx) {
            w = io->writer;
            io->writer = PN_WAKER_NONE;
        }
        io_unlock(io);
        if (orphan)
            pn__free(op);         /* a send's or connect's copy */
        else
            PN_POINT("uio.send.done", io);   /* its result waits for a poll */
    }
    bool woke = !pn_waker_is_none(&w);
    pn_waker_wake(&w);
    io_unref(io);
    return woke;
}

/* ---- the afd side ----------------------------------------------------- */

bool pn__uio_applies(pn__reactor *r)
{
    return r && pn__reactor_backend(r) == PN_BACKEND_URING && ((struct ur *)r->be_data)->completion;
}

/* The afd's uio, created on first use if completion mode applies. */
static struct pn__uio *get_io(pn_async_fd *afd)
{
    struct pn__uio *io = __atomic_load_n(&afd->uio, __ATOMIC_ACQUIRE);
    if (io || !afd->is_socket || !afd->is_stream || !afd->reactor)
        return io;
    pn__reactor *r = afd->reactor;
    if (!pn__uio_applies(r))
        return NULL;
    /* Its requests go to the ring of the thread that first does I/O on
     * it (the worker's own, with a ring per worker), for its lifetime. */
    struct ur *u = pn__ur_lane(r);
    io = pn__calloc(1, sizeof *io);
    if (!io)
        return NULL;                   /* readiness path, still correct */
    atomic_init(&io->refs, 1);
    pthread_mutex_init(&io->lock, NULL);
    io->r = r;
    io->u = u;
    io->fd = afd->fd;
    io->rx.kind = UOP_RECV;
    io->rx.io = io;
    io->reader = io->writer = io->tx_wait = PN_WAKER_NONE;
    struct pn__uio *none = NULL;
    if (!__atomic_compare_exchange_n(&afd->uio, &none, io, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        pthread_mutex_destroy(&io->lock);
        pn__free(io);
        return none;
    }
    return io;
}

/* The task's budget is spent (io locked): unlock, ask to be polled again,
 * PN_PENDING.  True if so. */
static bool spent(struct pn__uio *io, pn_cx *cx, pn_poll *out)
{
    if (cx->budget != 0)
        return false;
    io_unlock(io);
    pn_waker_wake_by_ref(cx->waker);
    *out = PN_PENDING;
    return true;
}

/* Keep w in slot (under the lock that guards it).  A different waker
 * already there belongs to another task waiting the same way: it must be
 * woken (its poll then finds its place taken and waits again, as on the
 * readiness path) rather than dropped, which would leave that task asleep
 * for ever.  It is handed back in *old, and the caller wakes it after
 * unlocking: a wake may make syscalls (an unpark, an eventfd write). */
static void store(pn_waker *slot, const pn_waker *w, pn_waker *old)
{
    if (pn_waker_will_wake(slot, w))
        return;
    *old = *slot;                      /* *old was PN_WAKER_NONE */
    *slot = pn_waker_clone(w);
}

/* Copy up to len buffered bytes (spill first, then chunks).  io locked.
 * Chunks read to their end go back to the ring unless peeking. */
static size_t take(struct pn__uio *io, char *dst, size_t len, bool peek)
{
    size_t n = 0;
    if (io->spill) {
        size_t k = io->spill_len - io->spill_off;
        if (k > len)
            k = len;
        memcpy(dst, io->spill + io->spill_off, k);
        n = k;
        if (!peek) {
            io->spill_off += k;
            if (io->spill_off == io->spill_len) {
                pn__free(io->spill);
                io->spill = NULL;
                io->spill_len = io->spill_off = 0;
            }
        }
        return n;     /* one source per call keeps peek simple */
    }
    unsigned head = io->rx_head, left = io->rx_n;
    uint32_t off = io->rx_off;
    while (n < len && left) {
        unsigned bid = io->rxq[head].bid;
        size_t k = io->rxq[head].len - off;
        if (k > len - n)
            k = len - n;
        memcpy(dst + n, buf_addr(io->u, bid) + off, k);
        n += k;
        off += (uint32_t)k;
        if (off < io->rxq[head].len)
            break;
        if (!peek) {
            buf_give_back(io->u, bid);
            io->rx_head = (io->rx_head + 1) & (io->rx_cap - 1);
            io->rx_n--;
            io->rx_off = 0;
        }
        head = (head + 1) & (io->rx_cap - 1);
        left--;
        off = 0;
    }
    if (!peek && left && off)
        io->rx_off = off;
    return n;
}

bool pn__uio_read(pn_async_fd *afd, pn_cx *cx, void *buf, size_t len, bool peek,
                  ssize_t *res, pn_poll *out)
{
    if (afd->is_listener)
        return false;
    struct pn__uio *io = get_io(afd);
    if (!io)
        return false;
    io_lock(io);
    io->rx_hold = false;               /* reading again: not released */
    if (!io->u && !io->spill) {        /* detached and drained */
        io_unlock(io);
        return false;
    }
    if (io->spill || io->rx_n) {
        if (spent(io, cx, out))
            return true;
        *res = (ssize_t)take(io, buf, len, peek);
        if (!peek)
            maybe_arm(io);
        io_unlock(io);
        (void)pn_cx_budget_spend(cx);
        *out = PN_READY;
        return true;
    }
    if (!io->u) {                       /* detached: readiness from here */
        io_unlock(io);
        return false;
    }
    if (io->rx_err || io->rx_eof) {
        *res = io->rx_err ? io->rx_err : 0;
        io_unlock(io);
        (void)pn_cx_budget_spend(cx);
        *out = PN_READY;
        return true;
    }
    if (io->rx_nobufs && !io->rx_armed) {
        /* The ring ran dry: read this one with recv(2) (nothing of ours
         * is in flight for this socket, so order is kept). */
        io->rx_nobufs = false;
        io_unlock(io);
        return false;
    }
    if (len == 0) {
        io_unlock(io);
        *res = 0;
        *out = PN_READY;
        return true;
    }
    maybe_arm(io);
    if (!io->rx_armed) {
        /* No SQE for the receive (maybe_arm set rx_nobufs): recv(2) now,
         * nothing of ours being in flight. */
        io->rx_nobufs = false;
        io_unlock(io);
        return false;
    }
    pn_waker old = PN_WAKER_NONE;
    store(&io->reader, cx->waker, &old);
    io_unlock(io);
    pn_waker_wake(&old);
    *out = PN_PENDING;
    return true;
}

bool pn__uio_readable(pn_async_fd *afd, pn_cx *cx, int *res, pn_poll *out)
{
    if (afd->is_listener)
        return false;                  /* readable = a connection waits */
    struct pn__uio *io = get_io(afd);
    if (!io)
        return false;
    io_lock(io);
    io->rx_hold = false;
    if (!io->u && !io->spill) {
        io_unlock(io);
        return false;
    }
    if (io->spill || io->rx_n || io->rx_eof || io->rx_err) {
        io_unlock(io);
        if (pn_cx_budget_spend(cx) == PN_PENDING) {
            *out = PN_PENDING;
            return true;
        }
        *res = PN_READABLE;
        *out = PN_READY;
        return true;
    }
    if (!io->u) {
        io_unlock(io);
        return false;
    }
    if (io->rx_nobufs && !io->rx_armed) {
        io_unlock(io);
        return false;
    }
    maybe_arm(io);
    if (!io->rx_armed) {               /* no SQE: the readiness path waits */
        io_unlock(io);
        return false;
    }
    pn_waker old = PN_WAKER_NONE;
    store(&io->reader, cx->waker, &old);
    io_unlock(io);
    pn_waker_wake(&old);
    *out = PN_PENDING;
    return true;
}

/* A send request for len bytes: the spare if it is big enough, else a new
 * allocation (io locked).  Sizes are rounded up so that similar writes
 * fit the spare. */
static struct pn__uop *send_op(struct pn__uio *io, size_t len)
{
    struct pn__uop *op = io->spare;
    if (op && op->cap >= len) {
        io->spare = NULL;
        return op;
    }
    size_t cap = (len + 255) & ~(size_t)255;
    op = pn__malloc(sizeof *op + cap);
    if (!op)
        return NULL;
    op->cap = cap;
    op->data = (char *)(op + 1);
    return op;
}

/* A fresh request of `kind` with room for len bytes of data (io locked);
 * NULL without memory. */
static struct pn__uop *new_op(struct pn__uio *io, uint8_t kind, size_t len)
{
    struct pn__uop *op = send_op(io, len);
    if (!op)
        return NULL;
    op->kind = kind;
    op->done = op->neutered = op->cancelled = op->parked = false;
    op->res = 0;
    op->io = io;
    op->len = len;
    return op;
}

/* A send whose result has been taken (io locked): keep it as the spare if
 * there is none and it is small, else free it. */
static void retire(struct pn__uio *io, struct pn__uop *op)
{
    if (!io->spare && op->cap <= SPARE_MAX && !io->closed) {
        io->spare = op;
        return;
    }
    pn__free(op);
}

/* Queue `op` (a send or connect, filled in) as the afd's request in
 * flight and keep the waker (io locked; unlocks).  Without an SQE, not
 * handled (false): op is freed and io.c's readiness path makes the
 * send(2) or connect(2). */
static bool queue_tx(struct pn__uio *io, struct pn__uop *op, pn_cx *cx, pn_poll *out)
{
    struct ur *u = io->u;
    struct io_uring_sqe *sqe = claim_sqe(io);
    if (!sqe) {
        /* No SQE: connect(2) or send(2) does it (nothing else of this
         * socket's is being sent, so order is kept). */
        io_unlock(io);
        pn__free(op);
        return false;
    }
    if (op->kind == UOP_CONNECT) {
        io_uring_prep_connect(sqe, io->fd, (struct sockaddr *)op->data, (socklen_t)op->len);
    } else {
        io_uring_prep_send(sqe, io->fd, op->data, op->len, MSG_NOSIGNAL | MSG_WAITALL);
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | TAG_OP);
    io->tx = op;
    op->owner = *cx->waker;            /* identity only (pn__uio_forget) */
    op->sqe = sqe;
    op->seq = pn__ur_note_queued(u);
    pn__ur_queued(io->r, u);
    pn_waker old = PN_WAKER_NONE;
    store(&io->writer, cx->waker, &old);
    io_unlock(io);
    pn_waker_wake(&old);
    *out = PN_PENDING;
    return true;
}

/* io->tx was taken off (its result consumed, or its future dropped): a
 * write that waited for it may go (io locked; the caller wakes the waker
 * handed back after unlocking). */
static pn_waker tx_freed(struct pn__uio *io)
{
    pn_waker w = io->tx_wait;
    io->tx_wait = PN_WAKER_NONE;
    return w;
}

bool pn__uio_write(pn_async_fd *afd, pn_cx *cx, const struct iovec *iov, int iovcnt,
                   ssize_t *res, pn_poll *out)
{
    struct pn__uio *io = get_io(afd);
    if (!io)
        return false;
    io_lock(io);
    if (!io->u) {
        io_unlock(io);
        return false;
    }
    struct pn__uop *op = io->tx;
    pn_waker old = PN_WAKER_NONE;
    if (op && !pn_waker_will_wake(&op->owner, cx->waker)) {
        /* Another future's send (two writers on one stream: they take
         * turns, as on the readiness path).  Its result is its owner's
         * alone; this write waits until the owner has taken it (or been
         * dropped), then queues its own.  It waits apart from the owner
         * (tx_wait), so the two do not displace each other's wakers: the
         * owner is woken by its CQE, this one by tx_freed. */
        store(&io->tx_wait, cx->waker, &old);
        io_unlock(io);
        pn_waker_wake(&old);
        *out = PN_PENDING;
        return true;
    }
    if (op && op->parked) {
        /* Its send was cancelled before it sent anything (park_ring):
         * the same bytes, queued again by their owner. */
        io->tx = NULL;
        op->parked = false;
        if (!queue_tx(io, op, cx, out))
            return false;                /* (op freed) send(2) sends them */
        return true;
    }
    if (op) {
        if (!op->done) {
            store(&io->writer, cx->waker, &old);
            io_unlock(io);
            pn_waker_wake(&old);
            *out = PN_PENDING;
            return true;
        }
        io->tx = NULL;
        *res = op->res;
        retire(io, op);
        pn_waker next = tx_freed(io);
        io_unlock(io);
        pn_waker_wake(&next);
        (void)pn_cx_budget_spend(cx);
        *out = PN_READY;
        return true;
    }
    if (io->tx_orphans) {
        /* A dropped write's send is still in the kernel (its cancel may
         * wait for the ring's thread): these bytes go after it ends. */
        store(&io->writer, cx->waker, &old);
        io_unlock(io);
        pn_waker_wake(&old);
        *out = PN_PENDING;
        return true;
    }
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - len) {
            io_unlock(io);              /* as writev(2): the sum overflows */
            *res = -EINVAL;
            *out = PN_READY;
            return true;
        }
        len += iov[i].iov_len;
    }
    if (len > TX_MAX)
        len = TX_MAX;
    if (len == 0) {
        io_unlock(io);
        *res = 0;
        *out = PN_READY;
        return true;
    }
    if (spent(io, cx, out))
        return true;
    op = new_op(io, UOP_SEND, len);
    if (!op) {
        io_unlock(io);
        *res = -ENOMEM;
        *out = PN_READY;
        return true;
    }
    for (int i = 0, n = 0; i < iovcnt && (size_t)n < len; i++) {
        size_t k = iov[i].iov_len;
        if (k > len - (size_t)n)
            k = len - (size_t)n;
        memcpy(op->data + n, iov[i].iov_base, k);
        n += (int)k;
    }
    return queue_tx(io, op, cx, out);
}

bool pn__uio_connect(pn_async_fd *afd, pn_cx *cx, const struct sockaddr *sa, socklen_t len,
                     int *res, pn_poll *out)
{
    struct pn__uio *io = get_io(afd);
    if (!io)
        return false;
    io_lock(io);
    struct pn__uop *op = io->tx;
    if (!sa) {                          /* poll the connect started */
        pn_waker old = PN_WAKER_NONE;
        if (op && op->kind == UOP_CONNECT && op->done) {
            io->tx = NULL;
            *res = op->res;
            retire(io, op);
            old = tx_freed(io);
        } else if (op && op->kind == UOP_CONNECT && io->u) {
            store(&io->writer, cx->waker, &old);
            io_unlock(io);
            pn_waker_wake(&old);
            *out = PN_PENDING;
            return true;
        } else {
            *res = -ECANCELED;          /* none started, or its reactor went */
        }
        io_unlock(io);
        pn_waker_wake(&old);
        *out = PN_READY;
        return true;
    }
    if (!io->u || op || len > sizeof(struct sockaddr_storage)) {
        io_unlock(io);
        return false;
    }
    op = new_op(io, UOP_CONNECT, len);
    if (!op) {
        io_unlock(io);
        *res = -ENOMEM;
        *out = PN_READY;
        return true;
    }
    memcpy(op->data, sa, len);
    return queue_tx(io, op, cx, out);
}

/* Queue accept requests until ACCEPT_AHEAD are in flight or waiting
 * (io locked; the caller made io->acc), under one hold of sq_lock.
 * Returns how many were queued. */
static unsigned fill_window(struct pn__uio *io)
{
    struct accq *q = io->acc;
    struct ur *u = io->u;
    unsigned queued = 0;
    pthread_mutex_lock(&u->sq_lock);
    while (q->fly_n + q->n < ACCEPT_AHEAD) {
        struct pn__uop *op = q->idle_n ? q->idle[--q->idle_n]
                                       : new_op(io, UOP_ACCEPT, sizeof(struct accept_addr));
        struct io_uring_sqe *sqe = op ? claim_sqe_locked(io) : NULL;
        if (!sqe) {
            if (op)
                q->idle[q->idle_n++] = op;
            break;
        }
        op->neutered = op->cancelled = false;
        struct accept_addr *aa = (struct accept_addr *)op->data;
        aa->len = sizeof(aa->ss);
        io_uring_prep_accept(sqe, io->fd, (struct sockaddr *)&aa->ss, &aa->len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | TAG_OP);
        op->sqe = sqe;
        op->seq = pn__ur_note_queued(u);
        q->fly[q->fly_n++] = op;
        queued++;
    }
    if (queued)
        pn__ur_queued(io->r, u);   /* releases sq_lock */
    else
        pthread_mutex_unlock(&u->sq_lock);
    return queued;
}

/* Cancel every accept request in flight (io locked): an unsubmitted one
 * becomes a NOP, a submitted one gets an ASYNC_CANCEL.  Their CQEs still
 * come and free them. */
/* Stop the accept requests in flight (io locked, sq_lock held).  True
 * if a cancel was queued. */
static bool stop_accepts(struct pn__uio *io, struct ur *u)
{
    struct accq *q = io->acc;
    bool queued = false;
    for (unsigned i = 0; q && i < q->fly_n; i++) {
        struct pn__uop *op = q->fly[i];
        if (op->cancelled)
            continue;
        op->cancelled = true;
        queued |= stop_op(u, op);
    }
    return queued;
}

static void cancel_accepts(struct pn__uio *io)
{
    struct ur *u = io->u;
    if (!io->acc || !u || !io->acc->fly_n)
        return;
    pthread_mutex_lock(&u->sq_lock);
    stopped(io, u, stop_accepts(io, u));
}

bool pn__uio_accept(pn_async_fd *afd, pn_cx *cx, struct sockaddr *sa, socklen_t *salen,
                    ssize_t *res, pn_poll *out)
{
    if (!afd->is_listener)
        return false;
    struct pn__uio *io = get_io(afd);
    if (!io)
        return false;
    io_lock(io);
    struct accq *q = io->acc;
    if (q && q->n) {                   /* what a request brought is ours */
        if (spent(io, cx, out))
            return true;
        struct pn__uop *op = q->done[q->head];
        q->head = (q->head + 1) % ACCEPT_AHEAD;
        q->n--;
        *res = op->res;
        if (op->res >= 0 && sa && salen) {
            struct accept_addr *aa = (struct accept_addr *)op->data;
            memcpy(sa, &aa->ss, aa->len < *salen ? aa->len : *salen);
            *salen = aa->len;
        }
        q->idle[q->idle_n++] = op;     /* the next request reuses it */
        if (io->u)
            (void)fill_window(io);     /* still accepting: keep it full */
        io_unlock(io);
        (void)pn_cx_budget_spend(cx);
        *out = PN_READY;
        return true;
    }
    if (!io->u) {                       /* detached: the readiness path */
        io_unlock(io);
        return false;
    }
    if (q && q->fly_n) {
        pn_waker old = PN_WAKER_NONE;
        store(&io->reader, cx->waker, &old);
        io_unlock(io);
        pn_waker_wake(&old);
        *out = PN_PENDING;
        return true;
    }
    if (spent(io, cx, out))
        return true;
    io_unlock(io);
    /* A connection already waiting is taken at once; only an empty
     * backlog fills the window. */
    int n;
    do
        n = pn__sys.accept4(afd->fd, sa, salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n >= 0 || errno != EAGAIN) {
        *res = n >= 0 ? n : -errno;
        (void)pn_cx_budget_spend(cx);
        *out = PN_READY;
        return true;
    }
    io_lock(io);
    if (!io->acc)
        io->acc = pn__calloc(1, sizeof *io->acc);
    q = io->acc;
    if (!q || !io->u || q->n || q->fly_n) {
        /* No memory (the readiness path waits), or the reactor went, or
         * another poll filled the window meanwhile: look again. */
        io_unlock(io);
        if (!q)
            return false;
        pn_waker_wake_by_ref(cx->waker);
        *out = PN_PENDING;
        return true;
    }
    if (!fill_window(io)) {
        io_unlock(io);
        return false;                   /* no SQE: readiness waits for it */
    }
    pn_waker old = PN_WAKER_NONE;
    store(&io->reader, cx->waker, &old);
    io_unlock(io);
    pn_waker_wake(&old);
    *out = PN_PENDING;
    return true;
}

/* Forget the current send (io locked): freed now if done, else orphaned
 * (its CQE frees it; a later write waits for that, tx_orphans, so it
 * cannot overtake it) and stopped (stop_op).  Bytes the kernel had
 * already sent stay sent. */
static void drop_tx(struct pn__uio *io, bool cancel)
{
    struct pn__uop *op = io->tx;
    io->tx = NULL;
    if (!op)
        return;
    if (op->done || op->parked) {
        pn__free(op);                  /* nothing of it in the kernel */
        return;
    }
    io->tx_orphans++;                  /* its CQE frees it */
    struct ur *u = io->u;
    if (!cancel || !u)
        return;
    pthread_mutex_lock(&u->sq_lock);
    stopped(io, u, stop_op(u, op));
}

void pn__uio_forget(pn_async_fd *afd, unsigned interest, const pn_waker *mine)
{
    struct pn__uio *io = __atomic_load_n(&afd->uio, __ATOMIC_ACQUIRE);
    if (!io)
        return;
    pn_waker rd = PN_WAKER_NONE, wr = PN_WAKER_NONE, next = PN_WAKER_NONE;
    io_lock(io);
    if ((interest & PN_READABLE) && pn_waker_will_wake(&io->reader, mine)) {
        rd = io->reader;
        io->reader = PN_WAKER_NONE;
        /* A listener's accept window stays: the next accept waits on
         * it (and takes what it brought meanwhile). */
    }
    /* The write in flight is the dropped future's if that future queued
     * it, whether or not its waker is still stored (its CQE may have taken
     * it already): a result nobody takes must not become the next write's. */
    if ((interest & PN_WRITABLE) && io->tx && pn_waker_will_wake(&io->tx->owner, mine)) {
        if (pn_waker_will_wake(&io->writer, mine)) {
            wr = io->writer;
            io->writer = PN_WAKER_NONE;
        }
        drop_tx(io, true);
        next = tx_freed(io);           /* a write waiting for this one */
    } else if ((interest & PN_WRITABLE) && pn_waker_will_wake(&io->tx_wait, mine)) {
        wr = io->tx_wait;              /* it waited for another's send */
        io->tx_wait = PN_WAKER_NONE;
    }
    io_unlock(io);
    pn_waker_drop(&rd);
    pn_waker_drop(&wr);
    pn_waker_wake(&next);
}

/* Close every connection a finished accept request holds (io locked). */
static void drop_accepts(struct pn__uio *io)
{
    while (io->acc && io->acc->n) {
        drop_accepted(io->acc->done[io->acc->head]);
        io->acc->head = (io->acc->head + 1) % ACCEPT_AHEAD;
        io->acc->n--;
    }
}

/* Give back every buffered chunk (io locked). */
static void drop_chunks(struct pn__uio *io)
{
    while (io->rx_n) {
        if (io->u)
            buf_give_back(io->u, io->rxq[io->rx_head].bid);
        io->rx_head = (io->rx_head + 1) & (io->rx_cap - 1);
        io->rx_n--;
    }
    io->rx_off = 0;
}

struct pn__uio *pn__uio_close_hold(pn_async_fd *afd)
{
    struct pn__uio *io = afd->uio;
    if (!io)
        return NULL;
    afd->uio = NULL;
    pn_waker rd, wr;
    io_lock(io);
    io->closed = true;
    struct ur *u = io->u;
    if (u) {
        /* The fd is closed next, and its number may be reused at once: a
         * request still waiting in the SQ would name another socket.  Turn
         * those into NOPs (their CQEs still free what they hold); cancel
         * the receive and the send if the kernel has them: a send waiting
         * for a peer that does not read would otherwise hold the socket
         * open, and the peer would never see it closed.  No syscall here
         * (unless the SQ is full, which pn__ur_get_sqe submits): this may
         * be a thread that must not submit. */
        pthread_mutex_lock(&u->sq_lock);
        bool queued = stop_accepts(io, u);
        if (io->rx_armed)
            queued |= stop_op(u, &io->rx);
        if (io->tx && !io->tx->done && !io->tx->parked)
            queued |= stop_op(u, io->tx);
        stopped(io, u, queued);
    }
    drop_chunks(io);
    drop_accepts(io);
    drop_tx(io, false);   /* the close above already neutered or cancelled it */
    rd = io->reader;
    wr = io->writer;
    pn_waker tw = tx_freed(io);
    io->reader = io->writer = PN_WAKER_NONE;
    io_unlock(io);
    /* The waiters see the afd closed when they run. */
    pn_waker_wake(&rd);
    pn_waker_wake(&wr);
    pn_waker_wake(&tw);
    return io;                         /* with the afd's reference */
}

void pn__uio_let_go(struct pn__uio *io, bool wait)
{
    if (!io)
        return;
    if (wait && io->u)
        pn__ur_wait_ended(io->u, &io->refs);
    io_unref(io);
}

void pn__uio_close(pn_async_fd *afd)
{
    pn__uio_let_go(pn__uio_close_hold(afd), false);
}

int pn__uio_release(pn_async_fd *afd)
{
    struct pn__uio *io = afd->uio;
    if (!io)
        return 0;
    io_lock(io);
    int err = 0;
    struct accq *q = io->acc;
    while (q && q->n && q->done[q->head]->res < 0) {   /* errors: forget them */
        pn__free(q->done[q->head]);
        q->head = (q->head + 1) % ACCEPT_AHEAD;
        q->n--;
    }
    if (io->rx_n || io->spill || (q && q->n)) {
        err = -EBUSY;                  /* bytes or connections are ours */
    } else if (io->u && atomic_load(&io->refs) > 1) {
        /* A request is still in the kernel: a receive could take bytes,
         * an accept a connection, after the fd is handed back; a send
         * could still be sending.  Stop the receive and the accepts (a
         * send runs to its end) and let the caller try again once the
         * runtime has turned. */
        io->rx_hold = true;
        if (io->rx_armed)
            pause_recv(io);
        cancel_accepts(io);
        err = -EINPROGRESS;
    }
    io_unlock(io);
    if (!err)
        pn__uio_close(afd);
    return err;
}

void pn__uio_detach(pn_async_fd *afd)
{
    struct pn__uio *io = afd->uio;
    if (!io)
        return;
    io_lock(io);
    size_t total = 0;   /* (a listener's finished accepts stay for accepts) */
    for (unsigned i = 0, h = io->rx_head; i < io->rx_n; i++, h = (h + 1) & (io->rx_cap - 1))
        total += io->rxq[h].len;
    total -= io->rx_off;
    if (total && !io->spill) {
        char *s = pn__malloc(total);
        if (s) {
            size_t n = take(io, s, total, false);
            io->spill = s;
            io->spill_len = n;
            io->spill_off = 0;
        }
    }
    drop_chunks(io);
    io->u = NULL;          /* the reactor cancels what is in flight */
    io_unlock(io);
}

/* ---- close through the ring ------------------------------------------- */

/* A close in flight: the CQE's reference and the future's; the last one
 * frees it. */
struct pn__uclose {
    struct pn__uop op;     /* kind UOP_CLOSE (first: the CQE's user_data) */
    int fd;
    atomic_int refs;
    atomic_flag lock;
    pn_waker waker;
};

static void close_lock(struct pn__uclose *c)
{
    while (atomic_flag_test_and_set_explicit(&c->lock, memory_order_acquire))
        ;
}

static void close_unlock(struct pn__uclose *c)
{
    atomic_flag_clear_explicit(&c->lock, memory_order_release);
}

static void close_put(struct pn__uclose *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    pn_waker_drop(&c->waker);
    pn__free(c);
}

static int close_complete(struct pn__uclose *c, int res)
{
    /* Cancelled before it ran (the teardown's cancel of everything can
     * reach a close the kernel handed to a worker: files with a flush
     * method): the descriptor is still ours to close. */
    if (res == -ECANCELED)
        res = pn__async_fd_close_fd(c->fd);
    close_lock(c);
    c->op.res = res;
    c->op.done = true;
    pn_waker w = c->waker;
    c->waker = PN_WAKER_NONE;
    close_unlock(c);
    bool woke = !pn_waker_is_none(&w);
    pn_waker_wake(&w);
    close_put(c);
    return woke;
}

bool pn__uio_close_start(struct pn__reactor *r, int fd, pn_cx *cx, struct pn__uclose **out)
{
    if (!r || pn__reactor_backend(r) != PN_BACKEND_URING)
        return false;
    struct ur *u = pn__ur_lane(r);
    struct pn__uclose *c = pn__calloc(1, sizeof *c);
    if (!c)
        return false;
    c->op.kind = UOP_CLOSE;
    c->fd = fd;
    atomic_init(&c->refs, 2);
    atomic_flag_clear(&c->lock);
    c->waker = pn_waker_clone(cx->waker);
    pthread_mutex_lock(&u->sq_lock);
    struct io_uring_sqe *sqe = pn__ur_get_sqe(u);
    if (!sqe) {
        pthread_mutex_unlock(&u->sq_lock);
        pn_waker_drop(&c->waker);
        pn__free(c);
        return false;
    }
    u->issued++;
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&c->op | TAG_OP);
    pn__ur_queued(r, u);       /* releases sq_lock */
    *out = c;
    return true;
}

pn_poll pn__uio_close_poll(struct pn__uclose **cp, pn_cx *cx, int *res)
{
    struct pn__uclose *c = *cp;
    close_lock(c);
    if (!c->op.done) {
        pn_waker old = PN_WAKER_NONE;
        store(&c->waker, cx->waker, &old);
        close_unlock(c);
        pn_waker_wake(&old);
        return PN_PENDING;
    }
    *res = c->op.res;
    close_unlock(c);
    close_put(c);
    *cp = NULL;
    return PN_READY;
}

void pn__uio_close_forget(struct pn__uclose **cp)
{
    struct pn__uclose *c = *cp;
    if (!c)
        return;
    close_lock(c);
    pn_waker w = c->waker;
    c->waker = PN_WAKER_NONE;
    close_unlock(c);
    pn_waker_drop(&w);
    close_put(c);
    *cp = NULL;
}

int pn__uio_buffers_out(struct pn__reactor *r)
{
    if (!r || pn__reactor_backend(r) != PN_BACKEND_URING)
        return -1;
    struct ur *home = r->be_data;
    if (!home->completion)
        return -1;
    int out = 0;
    for (unsigned i = 0; i < home->nlanes; i++) {
        struct ur *u = home->lanes[i];
        pthread_mutex_lock(&u->br_lock);
        unsigned back = u->bufs_back;
        pthread_mutex_unlock(&u->br_lock);
        out += (int)(atomic_load(&u->bufs_taken) - back);
    }
    return out;
}

int pn__uio_nobufs(struct pn__reactor *r)
{
    if (!r || pn__reactor_backend(r) != PN_BACKEND_URING)
        return -1;
    struct ur *home = r->be_data;
    if (!home->completion)
        return -1;
    unsigned n = 0;
    for (unsigned i = 0; i < home->nlanes; i++)
        n += atomic_load(&home->lanes[i]->nobufs);
    return (int)n;
}

bool pn__uio_active(const pn_async_fd *afd)
{
    return afd && afd->uio && afd->uio->u;
}

#endif /* PN_WITH_URING */
