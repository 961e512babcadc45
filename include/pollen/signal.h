/*
 * pollen/signal.h - Unix signals as futures: a stream per signal number
 * (Tokio's tokio::signal, libuv's uv_signal_t) and pn_ctrl_c.
 *
 *     pn_signal term;
 *     int err = pn_signal_listen(&term, SIGTERM);    // 0 or -errno
 *     ...
 *     // in a future's struct: pn_signal_recv_future r;
 *     t->r = pn_signal_recv(&term);
 *     PN_AWAIT(t->as, &t->r, cx);                    // a SIGTERM arrived
 *     ...
 *     pn_signal_close(&term);
 *
 * Listeners.  pn_signal_listen makes a listener for one signal number;
 * any number of listeners may exist for the same signal, in any runtime
 * or none.  A delivery of the signal wakes every listener of it.
 *
 * Coalescing.  A listener remembers which deliveries it has seen.  Its
 * recv future is READY when the signal was delivered at least once since
 * the listener was made or since its previous recv completed; several
 * deliveries in that time make one READY (the kernel merges pending
 * standard signals too).  A delivery before pn_signal_listen returned is
 * not seen by that listener.  Each listener counts on its own: one
 * listener's recv takes nothing from another's.
 *
 * The dispatcher (one per process).  While at least one listener exists,
 * pollen has a handler installed for each listened signal and one
 * dispatcher thread.  The handler only bumps the signal's counter and
 * writes one byte to a non-blocking self-pipe; the dispatcher thread reads
 * the pipe and wakes the listeners of every signal whose counter moved.
 * A real handler (as Tokio and libuv use) rather than signalfd, because
 * signalfd sees a signal only if it is blocked in every thread of the
 * process, including threads the program or its libraries create, and
 * pollen cannot arrange that for threads it does not own.  With a handler
 * the threads' masks do not matter: the kernel runs it on any thread that
 * does not block the signal.  The dispatcher thread itself unblocks every
 * signal pollen listens to (and blocks all others), so a process-directed
 * signal (kill(2), a terminal's ^C) reaches pollen even if every other
 * thread blocks it.  A thread-directed signal (raise(3), pthread_kill(3),
 * a fault) is handled only when its thread does not block it.  pollen's
 * own worker threads leave signals unblocked; its blocking pool threads
 * block them all.
 *
 * Disposition.  The first listener of a signal replaces the signal's
 * action with pollen's handler (SA_RESTART, so most interrupted system
 * calls restart) and saves the old action; when the last listener of that
 * signal is closed, the saved action is restored (as libuv does; Tokio
 * keeps its handler for the process lifetime).  So after the last
 * SIGINT listener goes, ^C again does whatever it did before: by default,
 * it ends the process.  A signal delivered while pollen's handler is
 * installed never runs the previous action.  When the last listener of
 * all signals is closed, the dispatcher thread is joined and the pipe
 * closed: pollen then holds no thread, fd or memory for signals.
 *
 * Refused signals: 0, negative or >= NSIG; SIGKILL and SIGSTOP (no
 * handler possible); SIGSEGV, SIGBUS, SIGFPE and SIGILL (faults: a
 * handler that returns would fault again, and pollen's fiber stacks and
 * the sanitizers own SIGSEGV/SIGBUS); and 32 .. SIGRTMIN-1, which the C
 * library keeps for itself.  Each gives -EINVAL.
 *
 * Threads.  pn_signal_listen and pn_signal_close may be called from any
 * thread, for different listeners at the same time.  One listener is used
 * by one task at a time: at most one recv of a listener may be pending.
 * pn_signal_close and pn_signal_listen take a process-wide lock and the
 * first listen / last close start or join the dispatcher thread (a short
 * blocking call).
 *
 * ThreadSanitizer runs a handler only when the thread it landed in enters
 * an intercepted call; one asleep in a raw syscall (a runtime thread in
 * epoll_pwait2 or io_uring_enter) holds it until it wakes for something
 * else.  Under TSan, block the signal in the threads that create the
 * runtime: the dispatcher (asleep in poll(2)) then receives it at once.
 *
 * fork(2).  A child inherits the handler but not the dispatcher thread:
 * do not use listeners made before a fork in the child.
 */
#ifndef POLLEN_SIGNAL_H
#define POLLEN_SIGNAL_H

#include "common.h"
#include "future.h"
#include "notify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A listener: the caller's memory (no allocation), not movable while a
 * recv of it is pending.  Zeroed or closed: not listening. */
typedef struct pn_signal {
    int signo;              /* read-only: the signal listened to */
    /* private */
    bool open;
    uint64_t seen;          /* the signal's counter when last received */
} pn_signal;

/*
 * Listen to signal `signo` into *s.  Returns 0, or
 *   -EINVAL  s is NULL, or signo is refused (see above)
 *   -EMFILE, -ENFILE  no fd for the dispatcher's pipe (the first listener)
 *   -EAGAIN  the dispatcher thread could not be created (the first one)
 * On error *s is left not listening.
 */
PN_EXTERN int pn_signal_listen(pn_signal *s, int signo);

/*
 * Stop listening; the last listener of a signal restores the action saved
 * by the first one, the last listener of all joins the dispatcher.  No
 * recv of `s` may be pending (drop it first).  Returns 0, or -EINVAL (NULL,
 * or not listening).
 */
PN_EXTERN int pn_signal_close(pn_signal *s);

/*
 * The next delivery: READY when the signal was delivered since the
 * listener was made or its previous recv completed (see Coalescing).
 * .res is 0, or -EINVAL (NULL or a listener not listening, READY at the
 * first poll).  Dropping a pending recv loses nothing: a delivery it did
 * not report is reported by the next recv.  The listener must outlive the
 * future; one recv per listener at a time.
 */
typedef struct pn_signal_recv_future {
    pn_future base;
    int res;                   /* output */
    /* private */
    pn_signal *s;
    unsigned char st;          /* idle, waiting, done */
    pn_notified_future wait;
} pn_signal_recv_future;

PN_EXTERN PN_MUST_USE pn_signal_recv_future pn_signal_recv(pn_signal *s);

/*
 * SIGINT once (Tokio's ctrl_c).  The future listens to SIGINT from its
 * first poll (a SIGINT before it is not seen) and is READY at the first
 * SIGINT after that; it stops listening when READY or dropped, so the
 * previous SIGINT action (the default: end the process) is back after it
 * unless another listener remains.  .res is 0, or what pn_signal_listen
 * returned (READY at the first poll).
 */
typedef struct pn_ctrl_c_future {
    pn_future base;
    int res;                   /* output */
    /* private */
    unsigned char st;          /* new, listening, done */
    pn_signal sig;
    pn_signal_recv_future recv;
} pn_ctrl_c_future;

PN_EXTERN PN_MUST_USE pn_ctrl_c_future pn_ctrl_c(void);

#ifdef __cplusplus
}
#endif
#endif
