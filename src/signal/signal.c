/*
 * signal.c - the process-wide signal dispatcher and the listener futures
 * of pollen/signal.h.
 *
 * State per signal number (slots[], static): the count of listeners and
 * the action saved by the first (under reg_lock), a delivery counter that
 * the handler bumps, and a pn_notify that the dispatcher fires.
 *
 * A delivery: the handler (any thread) increments slots[signo].raised,
 * then writes one byte to the self-pipe (non-blocking: a full pipe
 * already holds a wakeup).  The dispatcher thread reads the pipe, then
 * compares every counter with the value it last dispatched and calls
 * pn_notify_waiters on each that moved, so a byte lost to a full pipe
 * loses no delivery.  A recv makes its notified future before it reads
 * the counter, so a delivery is either seen by that read or wakes it.
 *
 * Closing the pipe safely: the handler reads the write end from pipe_w
 * inside a busy count; the last close stores -1 in pipe_w and waits for
 * busy to drain before close(), so a handler never writes to an fd number
 * that was closed (and maybe reused).  All of it seq_cst.
 *
 * The dispatcher never takes reg_lock, so listen and close may join it
 * while holding the lock.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "pollen/signal.h"

struct slot {
    unsigned listeners;            /* under reg_lock */
    struct sigaction old;          /* under reg_lock: the action to restore */
    _Atomic uint64_t raised;       /* deliveries, bumped by the handler */
    atomic_bool installed;         /* read by the dispatcher for its mask */
    pn_notify notify;              /* fired by the dispatcher */
};

static struct slot slots[NSIG];
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned total;             /* under reg_lock: listeners of all signals */
static pthread_t disp_thread;      /* under reg_lock, while total > 0 */
static int disp_rfd = -1, disp_wfd = -1;
static atomic_int pipe_w = -1;     /* the handler's view of disp_wfd */
static atomic_int busy;            /* handlers between reading pipe_w and done */
/* The counters as the dispatcher last saw them: set by dispatcher_start
 * before the thread exists (a delivery between that and the thread's
 * first read is then seen as a change), then the thread's alone. */
static uint64_t done[NSIG];

static void slots_init(void)
{
    for (int i = 0; i < NSIG; i++)
        pn_notify_init(&slots[i].notify);
}

static bool refused(int signo)
{
    if (signo <= 0 || signo >= NSIG)
        return true;
    switch (signo) {
    case SIGKILL: case SIGSTOP:
    case SIGSEGV: case SIGBUS: case SIGFPE: case SIGILL:
        return true;
    default:
        return signo > 31 && signo < SIGRTMIN;
    }
}

static void on_signal(int signo)
{
    int saved = errno;
    atomic_fetch_add(&slots[signo].raised, 1);
    atomic_fetch_add(&busy, 1);
    int fd = atomic_load(&pipe_w);
    if (fd >= 0) {
        unsigned char b = (unsigned char)signo;
        ssize_t r = write(fd, &b, 1);
        (void)r;                   /* EAGAIN: a wakeup is in the pipe already */
    }
    atomic_fetch_sub(&busy, 1);
    errno = saved;
}

/* Unblock exactly the signals pollen handles, in the dispatcher thread. */
static void dispatcher_mask(void)
{
    sigset_t m;
    sigfillset(&m);
    for (int i = 1; i < NSIG; i++)
        if (atomic_load(&slots[i].installed))
            sigdelset(&m, i);
    pthread_sigmask(SIG_SETMASK, &m, NULL);
}

static void *dispatcher_main(void *arg)
{
    int rfd = (int)(intptr_t)arg;
    for (;;) {
        dispatcher_mask();
        /* poll, then a non-blocking read: ThreadSanitizer runs a signal
         * handler that arrives in a blocked poll at once, but one that
         * arrives in a blocked read only after the read returns. */
        struct pollfd p = { .fd = rfd, .events = POLLIN };
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        unsigned char buf[128];
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n == 0)
            break;                 /* EOF: the last listener closed the pipe */
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            break;
        for (int i = 1; i < NSIG; i++) {
            uint64_t cur = atomic_load(&slots[i].raised);
            if (cur != done[i]) {
                done[i] = cur;
                pn_notify_waiters(&slots[i].notify);
            }
        }
    }
    return NULL;
}

/* reg_lock held, total == 0. */
static int dispatcher_start(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    for (int i = 1; i < NSIG; i++)
        done[i] = atomic_load(&slots[i].raised);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* the thread starts with all blocked */
    int e = pthread_create(&disp_thread, NULL, dispatcher_main, (void *)(intptr_t)fds[0]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    disp_rfd = fds[0];
    disp_wfd = fds[1];
    atomic_store(&pipe_w, fds[1]);
    return 0;
}

/* reg_lock held, total just became 0. */
static void dispatcher_stop(void)
{
    atomic_store(&pipe_w, -1);
    while (atomic_load(&busy) != 0)
        sched_yield();
    close(disp_wfd);                /* the dispatcher reads EOF */
    pthread_join(disp_thread, NULL);
    close(disp_rfd);
    disp_rfd = disp_wfd = -1;
}

/* Wake the dispatcher so that it recomputes its mask. */
static void dispatcher_kick(void)
{
    unsigned char b = 0;
    ssize_t r = write(disp_wfd, &b, 1);
    (void)r;
}

int pn_signal_listen(pn_signal *s, int signo)
{
    if (!s)
        return -EINVAL;
    s->open = false;
    s->signo = signo;
    if (refused(signo))
        return -EINVAL;
    pthread_once(&slots_once, slots_init);
    pthread_mutex_lock(&reg_lock);
    int err = 0;
    if (total == 0 && (err = dispatcher_start()) < 0) {
        pthread_mutex_unlock(&reg_lock);
        return err;
    }
    struct slot *sl = &slots[signo];
    if (sl->listeners == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART | SA_ONSTACK;
        if (sigaction(signo, &sa, &sl->old) < 0) {
            err = -errno;
            if (total == 0)
                dispatcher_stop();
            pthread_mutex_unlock(&reg_lock);
            return err;
        }
        atomic_store(&sl->installed, true);
        dispatcher_kick();
    }
    sl->listeners++;
    total++;
    s->seen = atomic_load(&sl->raised);
    s->open = true;
    pthread_mutex_unlock(&reg_lock);
    return 0;
}

int pn_signal_close(pn_signal *s)
{
    if (!s || !s->open)
        return -EINVAL;
    pthread_mutex_lock(&reg_lock);
    struct slot *sl = &slots[s->signo];
    if (--sl->listeners == 0) {
        sigaction(s->signo, &sl->old, NULL);
        atomic_store(&sl->installed, false);
    }
    if (--total == 0)
        dispatcher_stop();
    s->open = false;
    pthread_mutex_unlock(&reg_lock);
    return 0;
}

/* ---- recv ---------------------------------------------------------------- */

enum { RS_IDLE, RS_WAITING, RS_DONE };

static pn_poll recv_poll(pn_future *f, pn_cx *cx);
static void recv_drop(pn_future *f);

static const pn_future_vtable recv_vt = { recv_poll, recv_drop, "signal.recv" };

pn_signal_recv_future pn_signal_recv(pn_signal *s)
{
    pn_signal_recv_future f = { .base = { &recv_vt }, .s = s, .st = RS_IDLE };
    return f;
}

static pn_poll recv_poll(pn_future *fut, pn_cx *cx)
{
    pn_signal_recv_future *f = (pn_signal_recv_future *)fut;
    if (f->st == RS_DONE)
        return PN_READY;
    pn_signal *s = f->s;
    if (!s || !s->open) {
        if (f->st == RS_WAITING)
            pn_future_drop(PN_FUTURE(&f->wait));
        f->res = -EINVAL;
        f->st = RS_DONE;
        return PN_READY;
    }
    struct slot *sl = &slots[s->signo];
    for (;;) {
        if (f->st == RS_IDLE) {
            f->wait = pn_notify_notified(&sl->notify);   /* before the check */
            f->st = RS_WAITING;
        }
        uint64_t cur = atomic_load(&sl->raised);
        if (cur != s->seen) {
            if (pn_cx_budget_spend(cx) == PN_PENDING)
                return PN_PENDING;
            s->seen = cur;
            pn_future_drop(PN_FUTURE(&f->wait));
            f->res = 0;
            f->st = RS_DONE;
            return PN_READY;
        }
        if (pn_future_poll(PN_FUTURE(&f->wait), cx) == PN_PENDING)
            return PN_PENDING;
        f->st = RS_IDLE;             /* fired: look at the counter again */
    }
}

static void recv_drop(pn_future *fut)
{
    pn_signal_recv_future *f = (pn_signal_recv_future *)fut;
    if (f->st == RS_WAITING)
        pn_future_drop(PN_FUTURE(&f->wait));
    f->st = RS_DONE;
}

/* ---- ctrl_c ---------------------------------------------------------------- */

enum { CC_NEW, CC_LISTENING, CC_DONE };

static pn_poll ctrl_c_poll(pn_future *f, pn_cx *cx);
static void ctrl_c_drop(pn_future *f);

static const pn_future_vtable ctrl_c_vt = { ctrl_c_poll, ctrl_c_drop, "signal.ctrl_c" };

pn_ctrl_c_future pn_ctrl_c(void)
{
    pn_ctrl_c_future f = { .base = { &ctrl_c_vt }, .st = CC_NEW };
    return f;
}

static pn_poll ctrl_c_poll(pn_future *fut, pn_cx *cx)
{
    pn_ctrl_c_future *f = (pn_ctrl_c_future *)fut;
    if (f->st == CC_DONE)
        return PN_READY;
    if (f->st == CC_NEW) {
        int err = pn_signal_listen(&f->sig, SIGINT);
        if (err < 0) {
            f->res = err;
            f->st = CC_DONE;
            return PN_READY;
        }
        f->recv = pn_signal_recv(&f->sig);
        f->st = CC_LISTENING;
    }
    if (pn_future_poll(PN_FUTURE(&f->recv), cx) == PN_PENDING)
        return PN_PENDING;
    pn_signal_close(&f->sig);
    f->res = f->recv.res;
    f->st = CC_DONE;
    return PN_READY;
}

static void ctrl_c_drop(pn_future *fut)
{
    pn_ctrl_c_future *f = (pn_ctrl_c_future *)fut;
    if (f->st != CC_LISTENING)
        return;
    pn_future_drop(PN_FUTURE(&f->recv));
    pn_signal_close(&f->sig);
    f->st = CC_DONE;
}
