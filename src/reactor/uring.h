/*
 * uring.h - what the io_uring backend (uring.c) and its completion-mode
 * socket I/O (uio.c) share: the ring state, user_data tags, the provided
 * buffer ring, and SQE queueing.  Built only with PN_WITH_URING.
 *
 * user_data: a readiness token (bit 63 and 62 clear, see backend.h),
 * TAG_IGNORE | x for CQEs nobody waits for (EVFD_TOKEN is one of them,
 * handled apart), or TAG_OP | pointer to a struct pn__uop.
 *
 * Locks: sq_lock guards every touch of the submission queue; br_lock the
 * provided buffer ring (buffers come back from any worker).  Neither is held
 * while a waker runs.
 */
#ifndef PN_REACTOR_URING_H
#define PN_REACTOR_URING_H

#ifdef PN_WITH_URING

#include <pthread.h>
#include <stdatomic.h>
#include <liburing.h>
#include "reactor/backend.h"

#define TAG_IGNORE (1ull << 63)        /* CQEs nobody waits for */
#define TAG_OP     (1ull << 62)        /* | struct pn__uop *: completion I/O */
#define EVFD_TOKEN (TAG_IGNORE | 1)    /* the wake eventfd's poll */
#define TAG_MSG    (TAG_IGNORE | 2)    /* | lane << 8: a MSG_RING wake to that
                                          lane (its CQE is a failure) */

/* Provided receive buffers: one group, BUF_COUNT buffers of BUF_SIZE. */
#define BUF_GROUP 7
#define BUF_COUNT 1024u
#define BUF_SIZE  8192u

/* One ring, its locks and buffers: the reactor's (lane 0, r->be_data), or
 * one of the lanes a reactor made with pn__reactor_new_lanes, each driven
 * by one thread. */
struct ur {
    struct io_uring ring;
    struct ur *home;              /* lane 0, which holds the others */
    pn__reactor *r;               /* the reactor they serve */
    struct ur **lanes;            /* home: nlanes rings, lanes[0] == home */
    unsigned nlanes;              /* home: 1 without lanes */
    unsigned lane;                /* this one's index */
    /* SINGLE_ISSUER | DEFER_TASKRUN: only the thread that adopted it
     * enters the kernel for it (others write SQEs under sq_lock and wake
     * it), and its completions are posted only when that thread waits. */
    bool issuer_only;
    bool enabled;                 /* issuer_only: set up disabled, enabled
                                     by its thread (which becomes the issuer) */
    atomic_bool gone;             /* its thread drained it and left: no more
                                     SQEs (set under sq_lock) */
    atomic_bool wake_pending;     /* lanes > 0: r->wake_pending's role */
    atomic_bool waiting;          /* its thread is (about to be) blocked in
                                     a turn: set under sq_lock */
    /* Requests other threads could not queue (SQ full): cancels (of a
     * user_data) and readiness polls (of a token); its thread's next turn
     * queues them, in order (sq_lock). */
    struct later { uint64_t ud; bool arm; } *later;
    _Atomic unsigned nlater;      /* (read without the lock by reap) */
    unsigned later_cap;
    /* Requests queued (under sq_lock) and whose last CQE was reaped (by
     * the driver of the moment): teardown waits until they are equal. */
    uint64_t issued, ended;
    uint64_t id;                  /* unique per ring, for the thread marks */
    atomic_int drivers;           /* threads marked as driving it */
    int wakefd;                   /* eventfd: wakes from other threads */
    bool evfd_armed;              /* its poll is live (driver only) */
    bool parking;                 /* its last driver is taking down what it
                                     submitted (park_ring): completions do
                                     not re-arm (driver only) */
    pthread_mutex_t sq_lock;
    struct io_uring waker;
    pthread_mutex_t waker_lock;
    /* completion mode (uio.c); br == NULL: readiness only */
    bool completion;
    struct io_uring_buf_ring *br;
    char *bufs;                   /* BUF_COUNT * BUF_SIZE */
    pthread_mutex_t br_lock;
    /* Buffers the kernel filled (counted once per reap batch, before its
     * CQEs are handled) and given back (under br_lock): tests compare the
     * two. */
    atomic_uint bufs_taken;
    unsigned bufs_back;
    atomic_uint nobufs;           /* receives that found the ring empty */
};

/* An SQE, submitting what is queued when the SQ is full.  sq_lock held.
 * NULL if the kernel refuses to take entries, if the SQ is full and only
 * another thread may submit to it (a SINGLE_ISSUER lane: its next turn
 * will), or if the lane is gone (its thread drained it). */
struct io_uring_sqe *pn__ur_get_sqe(struct ur *u);

/* The ring requests made on the calling thread go to: the lane it drives,
 * else lane 0 (whose thread then submits them). */
struct ur *pn__ur_lane(pn__reactor *r);

/* Queue an ASYNC_CANCEL of the request with `user_data` (its success
 * posts no CQE; the request's own last CQE still comes).  sq_lock held.
 * Never lost: with no SQE it waits in u's list for u's thread's next turn
 * (dropped only if the lane is gone, which cancelled everything, or with
 * no memory). */
void pn__ur_queue_cancel(struct ur *u, uint64_t user_data);

/* After queueing SQEs (sq_lock held; releases it): a thread that drives
 * the ring leaves them for its next flush point (pn__reactor_flush, or its
 * turn); any other thread makes sure the ring's thread submits them (a
 * SINGLE_ISSUER lane's thread is woken only if it waits in its ring: a
 * busy one submits at its next turn). */
void pn__ur_queued(pn__reactor *r, struct ur *u);

/* The SQ position of the SQE just taken with pn__ur_get_sqe (sq_lock
 * held), to ask later whether the kernel has consumed it. */
uint64_t pn__ur_note_queued(struct ur *u);
/* True if the SQE at SQ position `pos` is still in the SQ, not yet consumed
 * by the kernel: it may still be rewritten (sq_lock held). */
bool pn__ur_unsubmitted(struct ur *u, uint64_t pos);

/* From a thread that does not drive u, while a thread does: wait (100 ms
 * at most) until *refs is 1, the requests that held references having
 * ended (uio.c, after a close cancelled them). */
void pn__ur_wait_ended(struct ur *u, atomic_int *refs);

/* Handle a TAG_OP CQE (uio.c).  Returns 1 if it woke someone. */
int pn__uio_complete(struct ur *u, struct io_uring_cqe *cqe);

/* Set up / tear down the provided buffer ring (uio.c).  Setup failure only
 * turns completion mode off. */
void pn__uio_setup(struct ur *u);
void pn__uio_teardown(struct ur *u);

#endif /* PN_WITH_URING */
#endif
