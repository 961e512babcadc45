/*
 * pollen/fiber.h - stackful tasks: plain C functions that await futures as
 * if they were blocking calls.
 *
 * A fiber runs `void fn(void *arg)` on a stack of its own.  Inside it,
 * pn_await(&fut) polls any pollen future; while the future is pending the
 * fiber is suspended and its worker runs other tasks, and the future's
 * waker resumes it.  Sockets, timers, join handles, channels and blocking
 * calls all work unchanged, and the pn_fiber_* wrappers below make the
 * common ones one call each:
 *
 *     static void echo(void *arg)              // one fiber per connection
 *     {
 *         pn_tcp_stream *s = arg;              // the fiber's own copy
 *         char buf[4096];
 *         ssize_t n;
 *         while ((n = pn_fiber_read(s, buf, sizeof(buf))) > 0)
 *             if (pn_fiber_write_all(s, buf, (size_t)n) < 0)
 *                 break;
 *         pn_tcp_close(s);
 *     }
 *     ...
 *     pn_fiber_opts o = { .arg_size = sizeof(stream) };
 *     pn_fiber_spawn(pn_fiber_runtime(), echo, &stream, &o, NULL);
 *
 * A fiber is a future (pn_fiber_future): spawn it as a task (pn_fiber_spawn), run
 * it on the calling thread (pn_fiber_run), or embed it in another future.
 * Fibers and hand-written futures share one executor and one reactor; a
 * program may use both, fibers where clarity matters and futures where a
 * few hundred bytes per task do.
 *
 * Stacks.  Each fiber gets stack_size usable bytes (default 64 KiB) in an
 * mmap'd region with a 16 KiB guard region (one page where pages are
 * larger) below it; only the pages the fiber touches take memory.  A
 * finished fiber's stack goes back to its runtime's cache (up to 1024
 * stacks) for the next fiber; freeing the runtime unmaps them.  Running
 * off the end of a stack hits the guard and the process stops with
 * "pollen: fiber '<name>' overflowed its <N>-byte stack" on stderr (then
 * the default SIGSEGV action: a core dump), not with silent corruption.
 * A single frame larger than the guard (a local array over 16 KiB) can
 * jump it: keep big buffers off fiber stacks, or build with
 * -fstack-clash-protection.
 *
 * Threads.  A fiber stays on the thread that first ran it: the worker that
 * polled it first (the task is pinned there, as pn_spawn_local does), or
 * the thread of pn_block_on.  Compilers keep the address of a thread-local
 * (errno, a _Thread_local) in a register across calls, so moving a
 * suspended stack to another thread would make it write the old thread's
 * variables; pollen never moves one.  Work stealing still balances fibers
 * before their first poll.  On the current-thread runtime the thread is
 * the one calling pn_block_on: call it from one thread only while fibers
 * are alive, and shut the runtime down (or free it) on that thread too, or
 * after its fibers returned: a shutdown on another thread unwinds the
 * suspended ones there, and their frames may still hold the first
 * thread's thread-local addresses.  While one fiber runs, its worker runs nothing
 * else: a fiber that computes for long should pn_fiber_yield() now and
 * then, like any task.
 *
 * Cancellation.  Aborting a fiber's task (pn_join_handle_abort, a task
 * group's abort, runtime shutdown) makes the await it is suspended in drop
 * its future and return -ECANCELED; every later await returns -ECANCELED
 * at once, without polling.  The fiber unwinds by returning from fn: no
 * longjmp ever crosses user frames, so cleanup code after a failed call
 * runs as written.  A fiber that ignores -ECANCELED and loops forever
 * keeps its abort (or the runtime's shutdown) waiting; every pn_fiber_*
 * call reports it, so `if (err < 0) break;` is enough.  When the runtime
 * shuts down, each worker unwinds the fibers it owns before it exits, on
 * its own thread.
 *
 * Sanitizers.  Fiber switches are annotated for AddressSanitizer and
 * ThreadSanitizer when pollen is built with them.
 *
 * Errors from these calls are negative errno values as everywhere in
 * pollen; the blocking-style wrappers return what their future's output
 * would hold.
 */
#ifndef POLLEN_FIBER_H
#define POLLEN_FIBER_H

#include "common.h"
#include "future.h"
#include "task.h"
#include "net.h"
#include "channel.h"
#include "signal.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pn_runtime;

/* The body of a fiber. */
typedef void pn_fiber_fn(void *arg);

#define PN_FIBER_STACK_DEFAULT ((size_t)64 << 10)   /* usable bytes */
#define PN_FIBER_STACK_MIN     ((size_t)16 << 10)
#define PN_FIBER_STACK_MAX     ((size_t)1 << 30)
#define PN_FIBER_ARG_MAX       ((size_t)4 << 10)    /* largest arg_size */

typedef struct pn_fiber_opts {
    size_t stack_size;   /* usable bytes: 0 = PN_FIBER_STACK_DEFAULT; rounded
                            up to whole pages; PN_FIBER_STACK_MIN..MAX */
    size_t arg_size;     /* 0: fn gets `arg` as given.  Otherwise fn gets a
                            pointer to the fiber's own copy of arg's first
                            arg_size bytes (at most PN_FIBER_ARG_MAX), made
                            when the stack is: at spawn for pn_fiber_spawn,
                            at the first poll for pn_fiber */
    const char *name;    /* for the overflow message and task dumps; NULL =
                            "fiber".  Kept by pointer: a string that lives
                            as long as the fiber (a literal) */
} pn_fiber_opts;

/*
 * A fiber as a future.  Lazy: nothing runs and no stack exists until the
 * first poll.  Output .res: 0 when fn returned, -ENOMEM (no stack could be
 * mapped), -EINVAL (bad options).  Dropping it before it finishes cancels
 * it as described above: fn is resumed, sees -ECANCELED and returns, and
 * the drop returns after that.  Pinned from its first poll (it must not
 * move) and polled by one thread only (see Threads): polling it from
 * another thread than the first is a bug that stops the process with a
 * message.  The stack is released when fn returns.
 */
typedef struct pn_fiber_future {
    pn_future base;
    struct pn__fiber *impl;      /* private: stack and context once started */
    pn_fiber_fn *fn;             /* private */
    void *arg;                   /* private */
    pn_fiber_opts opts;          /* private */
    int res;                     /* output */
} pn_fiber_future;

PN_EXTERN PN_MUST_USE pn_fiber_future pn_fiber(pn_fiber_fn *fn, void *arg,
                                               const pn_fiber_opts *opts);

/*
 * Spawn a fiber as a task on rt (from any thread, inside a fiber too: see
 * pn_fiber_runtime).  opts may be NULL.  On success the stack is mapped
 * already and the arg copy made, so the caller's `arg` may go at once when
 * opts->arg_size is set.  *out (optional) gets a join handle whose output
 * is the pn_fiber_future (its .res).  Returns 0, -EINVAL (NULL rt or fn, stack_size
 * or arg_size out of range), -ENOMEM, -ESHUTDOWN (rt is shutting down).
 * On error nothing was spawned and *out is NULL.
 */
PN_EXTERN int pn_fiber_spawn(struct pn_runtime *rt, pn_fiber_fn *fn, void *arg,
                             const pn_fiber_opts *opts, pn_join_handle **out);

/*
 * Run fn as a fiber on the calling thread until it returns, driving rt
 * meanwhile (pn_block_on of pn_fiber).  Returns 0, or pn_block_on's
 * errors, or the fiber's .res (-ENOMEM, -EINVAL).
 */
PN_EXTERN int pn_fiber_run(struct pn_runtime *rt, pn_fiber_fn *fn, void *arg,
                           const pn_fiber_opts *opts);

/* ---- Inside a fiber -------------------------------------------------------- */

/*
 * Poll the future at `f` until it is ready, suspending the fiber while it
 * is pending; its output is then in its fields as after any await.  The
 * future lives on the fiber's stack or elsewhere, and must not move while
 * awaited.  Returns 0, -ECANCELED (the fiber was cancelled: f was dropped,
 * its output is not valid), -EPERM (not called from a fiber: f is
 * untouched), or -EINVAL (f NULL or without a poll function).  pn_await(p) takes a pointer to any pollen future struct.
 */
PN_EXTERN int pn_fiber_await(pn_future *f);
#define pn_await(p) pn_fiber_await(&(p)->base)

/* The runtime running the calling fiber, NULL outside a fiber. */
PN_EXTERN struct pn_runtime *pn_fiber_runtime(void);

/* The calling fiber's name (opts.name or "fiber"); NULL outside a fiber. */
PN_EXTERN const char *pn_fiber_name(void);

/* True once the calling fiber was cancelled (false outside a fiber). */
PN_EXTERN bool pn_fiber_cancelled(void);

/* Let the other tasks run, then come back.  0, -ECANCELED, -EPERM. */
PN_EXTERN int pn_fiber_yield(void);

/* Sleep for ns nanoseconds (pn_sleep).  0, -ECANCELED, -EPERM. */
PN_EXTERN int pn_fiber_sleep(uint64_t ns);

/* Read up to len bytes: the count (0 at end of stream) or -errno, as
 * pn_tcp_read's .res; -ECANCELED, -EPERM. */
PN_EXTERN ssize_t pn_fiber_read(pn_tcp_stream *s, void *buf, size_t len);

/* Write all len bytes: len or -errno, as pn_tcp_write_all's .res (-EPIPE
 * when the peer went away, never SIGPIPE); -ECANCELED, -EPERM. */
PN_EXTERN ssize_t pn_fiber_write_all(pn_tcp_stream *s, const void *buf, size_t len);

/* Accept one connection into *out (the caller's to close) and *peer
 * (may be NULL): 0 or .res of pn_tcp_accept (its back-off on EMFILE
 * included); -ECANCELED, -EPERM. */
PN_EXTERN int pn_fiber_accept(pn_tcp_listener *l, pn_tcp_stream *out, pn_sockaddr *peer);

/* Connect *out to addr (timeout_ns 0: none): 0 or .res of
 * pn_tcp_connect (*out is closed on error); -ECANCELED, -EPERM. */
PN_EXTERN int pn_fiber_connect(pn_tcp_stream *out, const pn_sockaddr *addr,
                               uint64_t timeout_ns);

/* Receive one value into *out: 0 or .res of pn_mpsc_recv (-EPIPE: closed
 * and empty); -ECANCELED, -EPERM. */
PN_EXTERN int pn_fiber_recv(pn_mpsc_rx *rx, void *out);

/* Send one value, waiting for room: 0 or .res of pn_mpsc_send (-EPIPE:
 * the receiver is gone); -ECANCELED, -EPERM. */
PN_EXTERN int pn_fiber_send(pn_mpsc_tx *tx, const void *value);

/* Wait for a task: 0 with *output (may be NULL) set to its future's
 * bytes, or -ECANCELED (that task, or this fiber, was cancelled), -EINVAL,
 * -EPERM.  The handle stays the caller's to free. */
PN_EXTERN int pn_fiber_join(pn_join_handle *h, void **output);

/* Wait for the next delivery of the listener's signal (pollen/signal.h):
 * 0, or .res of pn_signal_recv (-EINVAL: not listening); -ECANCELED,
 * -EPERM. */
PN_EXTERN int pn_fiber_signal_recv(pn_signal *s);

/* Wait for one SIGINT (pn_ctrl_c): 0, or .res of pn_ctrl_c; -ECANCELED,
 * -EPERM. */
PN_EXTERN int pn_fiber_ctrl_c(void);

#ifdef __cplusplus
}
#endif

#endif
