/*
 * reactor.h - the reactor's private interface (backend-independent).
 *
 * The reactor turns kernel readiness into wakes, through one of two
 * backends: epoll (epoll.c) or io_uring multishot polls (uring.c).  Each
 * registered fd has a record (pn__registration) in a slab of fixed-size
 * chunks, so records never move; the event's token (epoll's data word,
 * io_uring's user_data) carries the record's index and generation, and
 * an event whose generation no longer matches (the fd was closed and the
 * record reused) is dropped.  A record holds the readiness bits with a tick
 * (bumped on every event, so a clear based on stale readiness cannot erase a
 * newer event) and one reader and one writer waker.
 *
 * Threads: pn__reactor_poll runs on one thread at a time (the driver).
 * Register/deregister run on the runtime's thread.  pn__reactor_wake is
 * safe from any thread.  Wakers in a record are guarded by a small per-
 * record lock so that a future on one thread and the dispatcher on another
 * can meet there (the multi-thread executor needs it).
 */
#ifndef PN_REACTOR_H
#define PN_REACTOR_H

#include <stdatomic.h>
#include "pollen/future.h"
#include "pollen/io.h"
#include "pollen/runtime.h"

/* Readiness bits (the low 16 bits of the readiness word; the tick is above
 * them, the record's generation in the high 32 bits). */
#define PN__READY_READ       0x01u
#define PN__READY_WRITE      0x02u
#define PN__READY_READ_CLOSED  0x04u  /* EPOLLRDHUP or EPOLLHUP */
#define PN__READY_WRITE_CLOSED 0x08u  /* EPOLLHUP */
#define PN__READY_ERROR      0x10u  /* EPOLLERR */
#define PN__READY_SHUTDOWN   0x20u  /* deregistered or reactor gone */

typedef struct pn__registration {
    _Atomic uint64_t readiness;   /* bits | tick << 16 | gen << 32; the
                                     generation is bumped when the record
                                     is freed, so an update for an old
                                     generation fails in its CAS */
    int fd;
    uint32_t index;               /* position in the slab */
    atomic_flag lock;             /* guards the two wakers */
    pn_waker reader, writer;
    pn_async_fd *owner;           /* back-pointer, detached at shutdown */
    struct pn__registration *next_free;
    atomic_bool unwatched;        /* the backend defers watching the fd until
                                     a readiness wait needs it (io_uring
                                     completion-mode sockets) */
    _Atomic uint32_t lane;        /* io_uring: the ring its poll is armed on */
} pn__registration;

typedef struct pn__reactor pn__reactor;

/* The backend to use for a configured `cfg`: POLLEN_BACKEND=auto|epoll|uring
 * in the environment overrides it.  0, or -EINVAL for another value. */
int  pn__backend_resolve(pn_backend cfg, pn_backend *out);
/* A reactor on `backend` (AUTO: io_uring if it can be set up, else epoll).
 * Returns 0, -EINVAL (bad argument), -ENOSYS (io_uring asked for but not
 * built in), or the -errno of the backend's setup. */
int  pn__reactor_new(unsigned max_events, pn_backend backend, pn__reactor **out);
/* The same with `lanes` rings, one per thread that will drive one
 * (pn__reactor_adopt_lane): the io_uring backend then gives each its own
 * ring (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them); epoll
 * ignores it.  -EINVAL for 0 or more than PN__MAX_LANES. */
#define PN__MAX_LANES 1024u
int  pn__reactor_new_lanes(unsigned max_events, pn_backend backend, unsigned lanes,
                           pn__reactor **out);
/* The backend in use (EPOLL or URING). */
pn_backend pn__reactor_backend(const pn__reactor *r);
/* Detach every remaining pn_async_fd (their fds stay open), drop wakers,
 * close the backend's fds, free the slab. */
void pn__reactor_free(pn__reactor *r);

/* Watch fd (edge-triggered read, write, read-closed) for `owner`. */
int  pn__reactor_register(pn__reactor *r, int fd, pn_async_fd *owner,
                          pn__registration **out);
/* Mark the record SHUTDOWN, stop watching its fd (errors ignored: the fd
 * may be closed already), wake both wakers, bump the generation, free the
 * slot. */
void pn__reactor_deregister(pn__reactor *r, pn__registration *reg);

/*
 * Wait for events (timeout_ns < 0: forever; 0: do not block) and dispatch
 * them: set readiness, wake wakers.  EINTR counts as a turn with no events.
 * Returns the number of events dispatched (the wake eventfd excluded), or
 * -errno of a failed epoll_wait other than EINTR.
 */
int  pn__reactor_poll(pn__reactor *r, int64_t timeout_ns);

/* Make a blocked (or the next) pn__reactor_poll return.  Coalesced: many
 * wakes before the reactor runs write the eventfd once.  Thread-safe. */
void pn__reactor_wake(pn__reactor *r);

/* Submit the I/O this thread queued (io_uring completion mode batches
 * it); a no-op on epoll.  The executors call it before a worker parks and
 * every event_interval polls. */
void pn__reactor_flush(pn__reactor *r);
/* The calling thread runs the runtime's tasks (a worker, or the thread in
 * the current-thread pn_block_on): with io_uring it may submit itself. */
void pn__reactor_adopt_thread(pn__reactor *r);
/* ... and no longer does (pn_block_on returns): its later requests go
 * through the threads that turn the reactor.  Call after a flush. */
void pn__reactor_disown_thread(pn__reactor *r);
/* Rings in use: 1, or the lanes asked for when the backend gave each
 * thread its own. */
unsigned pn__reactor_lanes(const pn__reactor *r);
/* Whether those rings are SINGLE_ISSUER | DEFER_TASKRUN (metrics). */
bool pn__reactor_single_issuer(const pn__reactor *r);
/* The calling thread drives ring `lane` (< pn__reactor_lanes; its turns
 * wait on it, its requests go to it); with one ring, adopt_thread. */
void pn__reactor_adopt_lane(pn__reactor *r, unsigned lane);
/* Make the thread that drives ring `lane` return from its blocked
 * pn__reactor_poll (coalesced like pn__reactor_wake, which is lane 0's).
 * Thread-safe. */
void pn__reactor_wake_lane(pn__reactor *r, unsigned lane);
/* Wait (briefly) until the requests this thread queued are in the kernel:
 * io_uring, when another thread drives the ring; a no-op elsewhere. */
void pn__reactor_settle(pn__reactor *r);

/* A readiness wait is about to sleep on reg: make sure the kernel watches
 * its fd (a no-op unless the backend deferred it). */
void pn__reactor_watch(pn__reactor *r, pn__registration *reg);

/* How many wakes reached the backend (the others were coalesced; tests). */
unsigned pn__reactor_wake_signals(pn__reactor *r);

/* Number of live registrations (for tests and leak checks). */
size_t pn__reactor_count(const pn__reactor *r);

#endif
