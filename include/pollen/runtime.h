/*
 * pollen/runtime.h - the runtime: create, block on a future, spawn, shut down.
 *
 * A runtime owns a scheduler (its run queues), a reactor (epoll) and a timer
 * wheel.  The current-thread flavour polls every task on the thread that
 * calls pn_block_on; spawns and wakes may come from any thread.  The
 * multi-thread flavour runs tasks on `workers` threads with per-worker run
 * queues and work stealing; pn_block_on then polls only its own future on
 * the calling thread (any thread that is not one of the workers).
 *
 * Lifecycle:
 *     pn_runtime *rt;
 *     int err = pn_runtime_new(NULL, &rt);      // defaults
 *     my_future f = my_future_new(...);
 *     err = pn_block_on(rt, PN_FUTURE(&f));     // polls f and every task
 *     pn_runtime_free(rt);                      // drops unfinished tasks
 *
 * Misuse.  Every call below checks its pointers for NULL (-EINVAL, or a
 * no-op for pn_runtime_free) and refuses what comes after
 * pn_runtime_shutdown with -ESHUTDOWN.  A runtime pointer used after
 * pn_runtime_free returned 0 (a second free included) is undefined: the
 * memory is gone and C cannot tell.  Forget the pointer when you free it.
 */
#ifndef POLLEN_RUNTIME_H
#define POLLEN_RUNTIME_H

#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_runtime pn_runtime;

typedef enum pn_runtime_flavor {
    PN_RUNTIME_CURRENT_THREAD = 0,  /* one thread: the caller of pn_block_on */
    PN_RUNTIME_MULTI_THREAD = 1,    /* worker threads with work stealing */
} pn_runtime_flavor;

/* Who waits in epoll and fires timers in the multi-thread runtime. */
typedef enum pn_driver_mode {
    PN_DRIVER_REACTOR_THREAD = 0,   /* a dedicated reactor thread */
    PN_DRIVER_WORKERS = 1,          /* the worker that would park drives it (default:
                                       the reactor thread costs 1.4x the CPU per
                                       echoed message, see docs/BENCHMARKS.md) */
} pn_driver_mode;

/*
 * The reactor's kernel interface.  AUTO (the default) uses io_uring when
 * pollen was built with liburing and the running kernel lets the runtime
 * set up a ring with the features it needs (multishot poll, IORING_OP_MSG_RING,
 * extended wait arguments: Linux 5.19 or later), and epoll otherwise
 * (ENOSYS, EPERM under seccomp or kernel.io_uring_disabled, ENOMEM from a
 * small RLIMIT_MEMLOCK on old kernels, ...).  EPOLL and URING ask for one:
 * pn_runtime_new then fails rather than fall back.  The environment
 * variable POLLEN_BACKEND=auto|epoll|uring overrides the configured value
 * (an unknown value makes pn_runtime_new fail with -EINVAL).  Both backends
 * give every I/O future the same readiness semantics; see docs/GUIDE.md.
 */
typedef enum pn_backend {
    PN_BACKEND_AUTO = 0,
    PN_BACKEND_EPOLL = 1,
    PN_BACKEND_URING = 2,
} pn_backend;

/*
 * io_uring rings of the multi-thread runtime.  PER_WORKER gives each worker
 * its own ring (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them):
 * a worker submits its tasks' requests to its ring with no lock held by
 * another thread, parks by waiting in it, and its completions are posted
 * when it waits, never interrupting it.  A socket's requests stay on the
 * ring of the worker that first did I/O on it; a task that moved to
 * another worker queues them there, which that worker submits at its
 * next turn, and wakes it (an IORING_OP_MSG_RING from its own ring) only
 * if it is asleep.  SHARED is one
 * ring all workers submit to under a lock, which the worker that holds
 * the driver waits in.  AUTO: PER_WORKER with PN_DRIVER_WORKERS, SHARED
 * with the reactor thread.  Ignored on epoll and by the current-thread
 * runtime (one ring).  The environment variable
 * POLLEN_URING_RINGS=shared|per-worker overrides it.  See docs/GUIDE.md.
 */
typedef enum pn_uring_rings {
    PN_URING_RINGS_AUTO = 0,
    PN_URING_RINGS_SHARED = 1,
    PN_URING_RINGS_PER_WORKER = 2,
} pn_uring_rings;

typedef struct pn_runtime_config {
    pn_runtime_flavor flavor;
    unsigned workers;         /* multi-thread: worker threads (0 = one per CPU) */
    pn_driver_mode driver;    /* multi-thread: see pn_driver_mode (PN_DRIVER_WORKERS) */
    unsigned budget;          /* leaf operations per task poll before a forced yield (128) */
    unsigned event_interval;  /* task polls between non-blocking reactor turns when busy (61) */
    unsigned max_events;      /* epoll events taken per reactor turn (1024) */
    unsigned timer_slack_ns;  /* timer slack of the threads that wait for timers
                                 (prctl PR_SET_TIMERSLACK; restored when
                                 pn_block_on returns); 0 keeps the thread's own
                                 (the kernel's default is 50 us).  Default: 1000 */
    pn_backend backend;       /* reactor backend (PN_BACKEND_AUTO) */
    pn_uring_rings uring_rings; /* multi-thread on io_uring (PN_URING_RINGS_AUTO) */
    bool start_paused;        /* start with the clock paused, for tests
                                 (false).  See "Paused clock" in
                                 pollen/time.h.  Multi-thread: the only way
                                 to get a virtual clock there; the runtime
                                 then runs on epoll (AUTO picks it; URING,
                                 asked or from POLLEN_BACKEND, gives
                                 -ENOTSUP: a completion could come after
                                 an auto-advance had already jumped) */
} pn_runtime_config;

/* Fill `cfg` with the defaults shown above. */
PN_EXTERN void pn_runtime_config_init(pn_runtime_config *cfg);

/*
 * Create a runtime (cfg NULL = defaults).  Returns 0 and *out, or -ENOMEM,
 * -EINVAL (a config value out of range, or a bad POLLEN_BACKEND),
 * -ENOTSUP (start_paused on the multi-thread flavour with io_uring), -EMFILE/
 * -ENFILE (no fd for epoll, io_uring or the wake eventfd), -EAGAIN (a
 * thread could not be started), or, when a backend was asked for
 * explicitly, its setup error (-ENOSYS: io_uring not built in or not in the
 * kernel; -EPERM: io_uring disabled; -EOPNOTSUPP: a needed io_uring feature
 * is missing).  Nothing is left allocated and no thread is left running on
 * failure.
 */
PN_EXTERN int pn_runtime_new(const pn_runtime_config *cfg, pn_runtime **out);

/*
 * Poll `f` (in place: it must not move until this returns) until it is
 * ready.  Current-thread runtime: the calling thread also runs every task,
 * timer and fd of the runtime meanwhile, and only one thread at a time may
 * be in pn_block_on.  Multi-thread runtime: the workers run the tasks, the
 * calling thread (any thread but a worker) only polls `f`, and several
 * threads may block at once.  Returns 0 when `f` completed; its output is
 * in its fields.  Errors (then `f` was not polled): -EDEADLK from inside a
 * task, or while another thread is in pn_block_on on the same current-thread
 * runtime (never a deadlock); -ESHUTDOWN after pn_runtime_shutdown; -ENOMEM
 * (no room for its waker); -EINVAL on NULL arguments.  A failed epoll_wait
 * in the current-thread loop returns its -errno (then `f` may be pending:
 * drop it).
 *
 * Between two calls (current-thread runtime on io_uring): when pn_block_on
 * returns, nothing its thread submitted is left in the kernel.  io_uring
 * runs a request's completion as task work on the thread that submitted
 * it, and that work interrupts the thread's syscalls (a blocking recv with
 * SO_RCVTIMEO would fail with EINTR); a runtime must not interrupt its
 * caller once it has returned.  So the requests in flight (socket
 * receives, readiness polls, sends, connects, the accept window) are
 * cancelled and reaped before it returns, and the next pn_block_on arms
 * them again.  Nothing is lost: bytes already received stay readable, a
 * send that had not gone is sent by its future's next poll, connections
 * already accepted wait for the next accept and the others in the
 * listener's backlog, and the runtime keeps all its other state.  The
 * cost (a cancel and a re-arm per call) falls only on programs that call
 * pn_block_on repeatedly.  Freeing the runtime makes the kernel signal
 * each thread that drove its ring once more, as it tears the ring down;
 * pn_runtime_free on that thread waits for the signal (at most 100 ms) so
 * that it never reaches your code.  A thread that ran pn_block_on and does
 * not free the runtime gets that signal soon after the free: a blocking
 * call it makes then may fail with EINTR (docs/ARCHITECTURE.md, "The
 * kernel interrupts a ring's users").
 */
PN_EXTERN int pn_block_on(pn_runtime *rt, pn_future *f);

/*
 * Stop the worker and reactor threads (multi-thread: each finishes the poll
 * it is in and is joined), then drop every unfinished task (their futures'
 * drop functions run on the calling thread) and refuse new spawns and
 * block_ons with -ESHUTDOWN.  Join handles stay valid; awaiting one gives
 * -ECANCELED.  Idempotent.  Returns 0, -EBUSY while another thread is inside
 * pn_block_on on this runtime (nothing was done), -EDEADLK from inside a
 * task (likewise), -EINVAL on NULL.
 */
PN_EXTERN int pn_runtime_shutdown(pn_runtime *rt);

/*
 * pn_runtime_shutdown, giving workers at most `timeout_ns` to leave the poll
 * they are in.  A task that never returns from poll cannot be stopped: then
 * this returns -ETIMEDOUT, new spawns are already refused, nothing has been
 * dropped, and the call (or pn_runtime_free, which then looks once without
 * waiting) can be repeated later; the runtime cannot be freed while a worker
 * is stuck.  UINT64_MAX waits forever.  Other errors as pn_runtime_shutdown.
 */
PN_EXTERN int pn_runtime_shutdown_timeout(pn_runtime *rt, uint64_t timeout_ns);

/* Shut down (if not done) and free everything: tasks, registrations, timers,
 * threads, the epoll and wake fds.  fds still registered through a
 * pn_async_fd are deregistered and left open for their owner.  Join
 * handles stay valid (see pollen/task.h).  Returns 0 (NULL is a no-op), or
 * -EBUSY / -EDEADLK as pn_runtime_shutdown (-EDEADLK: called from one of
 * the runtime's tasks), or -ETIMEDOUT after a pn_runtime_shutdown_timeout
 * that timed out while a worker is still stuck; in each of those cases
 * nothing was freed and the runtime works as before.  After 0 the pointer
 * is dead: freeing it again is undefined. */
PN_EXTERN int pn_runtime_free(pn_runtime *rt);

/* The backend the runtime's reactor uses: PN_BACKEND_EPOLL or
 * PN_BACKEND_URING (PN_BACKEND_AUTO for NULL).  Thread-safe. */
PN_EXTERN pn_backend pn_runtime_backend(pn_runtime *rt);

/* "epoll", "uring" or "auto" (NULL for a value outside the enum). */
PN_EXTERN const char *pn_backend_name(pn_backend b);

/* The runtime whose task or pn_block_on is running on this thread, or NULL. */
PN_EXTERN pn_runtime *pn_runtime_current(void);

#ifdef __cplusplus
}
#endif
#endif
