/*
 * test_signal.c - signals (pollen/signal.h).
 *
 * Checked: refused signal numbers; delivery by raise(), kill() and from
 * another thread, on both runtimes, to recv futures that were pending
 * before the signal was sent (the "trigger" future sends it only once
 * every child has said PENDING); many listeners all woken; coalescing
 * (several deliveries make one READY, a listener made after a delivery
 * does not see it, each listener counts on its own); pn_ctrl_c (not seen
 * before its first poll, SIGINT's action back afterwards); dropping a
 * pending recv gives its waker back and loses nothing; the previous
 * action is restored by the last close; no fd or thread is left once the
 * last listener is closed; a process whose threads all block the signal
 * still gets it (the dispatcher unblocks it); a long exchange with
 * another thread, one signal per receive, none lost; the fiber wrappers.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include "locks_helpers.h"

TestSuite(signal, .timeout = PN_TEST_TIMEOUT);

/* ---- helpers ------------------------------------------------------------ */

enum how { BY_RAISE, BY_KILL, BY_THREAD };

/* Threads of the tests that send signals block them all: a process-directed
 * signal then goes to a thread that waits in the runtime or the dispatcher.
 * (Under ThreadSanitizer a handler runs only when its thread enters an
 * intercepted call; a thread spinning on an atomic would hold it back.) */
static void block_all(void)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
}

static void *kill_thread(void *arg)
{
    block_all();
    kill(getpid(), (int)(intptr_t)arg);
    return NULL;
}

static void send_signal(int sig, enum how how)
{
    if (how == BY_RAISE) {
        cr_assert_eq(raise(sig), 0);
    } else if (how == BY_KILL) {
        cr_assert_eq(kill(getpid(), sig), 0);
    } else {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, kill_thread, (void *)(intptr_t)sig), 0);
        pthread_join(t, NULL);
    }
}

/* Polls its children; the first time all of them are pending, sends the
 * signal; READY when every child is. */
#define MAXKIDS 16
typedef struct trigger_future {
    pn_future base;
    pn_future *kids[MAXKIDS];
    bool ready[MAXKIDS];
    int n, sig;
    enum how how;
    bool sent;
} trigger_future;

static pn_poll trigger_poll(pn_future *f, pn_cx *cx)
{
    trigger_future *t = (trigger_future *)f;
    int pending = 0;
    for (int i = 0; i < t->n; i++) {
        if (!t->ready[i])
            t->ready[i] = pn_future_poll(t->kids[i], cx) == PN_READY;
        pending += !t->ready[i];
    }
    if (!t->sent) {
        cr_assert_eq(pending, t->n, "a recv was ready before the signal was sent");
        t->sent = true;
        send_signal(t->sig, t->how);
    }
    return pending ? PN_PENDING : PN_READY;
}

static const pn_future_vtable trigger_vt = { trigger_poll, NULL, "trigger" };

static trigger_future trigger(int sig, enum how how)
{
    return (trigger_future){ .base = { &trigger_vt }, .sig = sig, .how = how };
}

static int count_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

static void (*handler_of(int sig))(int)
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    return sa.sa_handler;
}

static atomic_int user_handler_calls;
static void user_handler(int sig)
{
    (void)sig;
    atomic_fetch_add(&user_handler_calls, 1);
}

/* ---- tests ---------------------------------------------------------------- */

Test(signal, refused_signals_give_einval)
{
    int bad[] = { 0, -1, NSIG, NSIG + 1, 1000, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS,
                  SIGFPE, SIGILL, 32, SIGRTMIN - 1 };
    pn_signal s;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(pn_signal_listen(&s, bad[i]), -EINVAL, "signo %d", bad[i]);
        cr_assert_eq(pn_signal_close(&s), -EINVAL, "not listening after a refusal");
    }
    cr_assert_eq(pn_signal_listen(NULL, SIGUSR1), -EINVAL);
    cr_assert_eq(pn_signal_close(NULL), -EINVAL);
    pn_signal zero = { 0 };
    cr_assert_eq(pn_signal_close(&zero), -EINVAL);
    waker_probe pr = { 0 };
    pn_signal_recv_future r = pn_signal_recv(&zero);
    cr_assert_eq(POLL(&r, &pr), PN_READY);
    cr_assert_eq(r.res, -EINVAL);
    pn_signal_recv_future rn = pn_signal_recv(NULL);
    cr_assert_eq(POLL(&rn, &pr), PN_READY);
    cr_assert_eq(rn.res, -EINVAL);
    /* The highest real-time signal is accepted. */
    cr_assert_eq(pn_signal_listen(&s, SIGRTMAX), 0);
    cr_assert_eq(pn_signal_close(&s), 0);
    cr_assert_eq(pn_signal_close(&s), -EINVAL, "closed twice");
}

/* Block `sig` in this thread (and so in the runtime threads it creates
 * next) so that a signal sent by another thread reaches the dispatcher
 * thread: under ThreadSanitizer a handler that lands in a thread asleep in
 * a raw syscall (epoll_pwait2, io_uring_enter) waits for that thread to
 * wake for something else. */
static sigset_t only_dispatcher(int sig)
{
    sigset_t m, old;
    sigemptyset(&m);
    if (sig)
        sigaddset(&m, sig);
    pthread_sigmask(SIG_BLOCK, &m, &old);
    return old;
}

static void delivered_on(pn_runtime_flavor fl, enum how how)
{
    sigset_t old = only_dispatcher(how == BY_THREAD ? SIGUSR1 : 0);
    pn_runtime *rt = flavour_new(fl);
    pn_signal s;
    cr_assert_eq(pn_signal_listen(&s, SIGUSR1), 0);
    for (int round = 0; round < 3; round++) {
        pn_signal_recv_future r = pn_signal_recv(&s);
        trigger_future t = trigger(SIGUSR1, how);
        t.kids[t.n++] = PN_FUTURE(&r);
        AWAIT(rt, t);
        cr_assert_eq(r.res, 0);
    }
    cr_assert_eq(pn_signal_close(&s), 0);
    pn_runtime_free(rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

BOTH(signal, raise_wakes_a_pending_recv) { delivered_on(fl, BY_RAISE); }
BOTH(signal, kill_wakes_a_pending_recv) { delivered_on(fl, BY_KILL); }
BOTH(signal, signal_from_another_thread) { delivered_on(fl, BY_THREAD); }

BOTH(signal, many_listeners_all_woken)
{
    enum { N = 12 };
    pn_runtime *rt = flavour_new(fl);
    pn_signal s[N];
    pn_signal_recv_future r[N];
    trigger_future t = trigger(SIGUSR2, BY_KILL);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(pn_signal_listen(&s[i], SIGUSR2), 0);
        r[i] = pn_signal_recv(&s[i]);
        t.kids[t.n++] = PN_FUTURE(&r[i]);
    }
    AWAIT(rt, t);
    waker_probe pr = { 0 };
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].res, 0);
        /* Each saw the one delivery; none has another one pending. */
        pn_signal_recv_future again = pn_signal_recv(&s[i]);
        cr_assert_eq(POLL(&again, &pr), PN_PENDING, "listener %d", i);
        pn_future_drop(PN_FUTURE(&again));
        cr_assert_eq(pn_signal_close(&s[i]), 0);
    }
    cr_assert_eq(waker_probe_held(&pr), 0);
    pn_runtime_free(rt);
}

/* Spin (yielding) until the probe was woken; the watchdog fails a lost wake. */
static void wait_woken(waker_probe *pr, int n)
{
    while (atomic_load(&pr->wakes) < n)
        sched_yield();
}

Test(signal, deliveries_coalesce_per_listener)
{
    pn_signal a, b, late;
    waker_probe pr = { 0 };
    cr_assert_eq(pn_signal_listen(&a, SIGUSR1), 0);
    cr_assert_eq(pn_signal_listen(&b, SIGUSR1), 0);

    /* Three deliveries before anyone receives: one READY each. */
    for (int i = 0; i < 3; i++)
        raise(SIGUSR1);
    cr_assert_eq(pn_signal_listen(&late, SIGUSR1), 0);
    pn_signal_recv_future ra = pn_signal_recv(&a), rb = pn_signal_recv(&b);
    pn_signal_recv_future rl = pn_signal_recv(&late);
    cr_assert_eq(POLL(&ra, &pr), PN_READY);
    cr_assert_eq(ra.res, 0);
    cr_assert_eq(POLL(&rl, &pr), PN_PENDING, "made after the deliveries: sees none");
    ra = pn_signal_recv(&a);
    cr_assert_eq(POLL(&ra, &pr), PN_PENDING, "the three were merged into one");
    cr_assert_eq(POLL(&rb, &pr), PN_READY, "a's receive took nothing from b");

    /* Two deliveries while a and late are pending: woken, one READY each. */
    raise(SIGUSR1);
    raise(SIGUSR1);
    wait_woken(&pr, 2);
    cr_assert_eq(POLL(&ra, &pr), PN_READY);
    cr_assert_eq(POLL(&rl, &pr), PN_READY);
    ra = pn_signal_recv(&a);
    cr_assert_eq(POLL(&ra, &pr), PN_PENDING);
    pn_future_drop(PN_FUTURE(&ra));
    cr_assert_eq(waker_probe_held(&pr), 0);
    cr_assert_eq(pn_signal_close(&a), 0);
    cr_assert_eq(pn_signal_close(&b), 0);
    cr_assert_eq(pn_signal_close(&late), 0);
}

Test(signal, drop_while_pending_loses_nothing_and_close_restores)
{
    struct sigaction ua;
    memset(&ua, 0, sizeof ua);
    ua.sa_handler = user_handler;
    sigemptyset(&ua.sa_mask);
    sigaction(SIGUSR1, &ua, NULL);
    int fds = count_fds(), threads = count_threads();

    pn_signal s;
    waker_probe pr = { 0 };
    cr_assert_eq(pn_signal_listen(&s, SIGUSR1), 0);
    cr_assert_neq(handler_of(SIGUSR1), user_handler, "pollen's handler is installed");
    cr_assert_eq(count_fds(), fds + 2, "the self-pipe");
    cr_assert_eq(count_threads(), threads + 1, "the dispatcher");

    pn_signal_recv_future r = pn_signal_recv(&s);
    probed_drop pd = probed_drop_of(PN_FUTURE(&r), &pr);
    pn_runtime *rt = rt_new();
    AWAIT(rt, pd);
    cr_assert_eq(pd.first, PN_PENDING);
    cr_assert_eq(waker_probe_held(&pr), 0, "the dropped recv gave its waker back");

    raise(SIGUSR1);                       /* nobody waits: the next recv sees it */
    cr_assert_eq(atomic_load(&user_handler_calls), 0, "pollen's handler ran, not the user's");
    r = pn_signal_recv(&s);
    AWAIT(rt, r);
    cr_assert_eq(r.res, 0);
    cr_assert_eq(atomic_load(&pr.wakes), 0, "the dropped recv was not woken");
    pn_runtime_free(rt);

    cr_assert_eq(pn_signal_close(&s), 0);
    cr_assert_eq(handler_of(SIGUSR1), user_handler, "the previous action is back");
    cr_assert_eq(count_fds(), fds, "the pipe is closed");
    cr_assert_eq(count_threads(), threads, "the dispatcher is joined");
    raise(SIGUSR1);
    cr_assert_eq(atomic_load(&user_handler_calls), 1);
}

Test(signal, last_close_of_each_signal_restores_its_action)
{
    signal(SIGUSR2, SIG_IGN);
    pn_signal a, b, c;
    cr_assert_eq(pn_signal_listen(&a, SIGUSR1), 0);
    cr_assert_eq(pn_signal_listen(&b, SIGUSR2), 0);
    cr_assert_eq(pn_signal_listen(&c, SIGUSR2), 0);
    cr_assert_eq(pn_signal_close(&b), 0);
    cr_assert_neq(handler_of(SIGUSR2), SIG_IGN, "c still listens");
    cr_assert_eq(pn_signal_close(&c), 0);
    cr_assert_eq(handler_of(SIGUSR2), SIG_IGN);
    cr_assert_neq(handler_of(SIGUSR1), SIG_DFL, "a still listens");
    cr_assert_eq(pn_signal_close(&a), 0);
    cr_assert_eq(handler_of(SIGUSR1), SIG_DFL);
    /* And again from scratch: a new dispatcher. */
    cr_assert_eq(pn_signal_listen(&a, SIGUSR1), 0);
    waker_probe pr = { 0 };
    pn_signal_recv_future r = pn_signal_recv(&a);
    cr_assert_eq(POLL(&r, &pr), PN_PENDING);
    kill(getpid(), SIGUSR1);
    wait_woken(&pr, 1);
    cr_assert_eq(POLL(&r, &pr), PN_READY);
    cr_assert_eq(pn_signal_close(&a), 0);
}

BOTH(signal, ctrl_c_once)
{
    pn_runtime *rt = flavour_new(fl);
    pn_ctrl_c_future c = pn_ctrl_c();
    trigger_future t = trigger(SIGINT, BY_KILL);
    t.kids[t.n++] = PN_FUTURE(&c);
    AWAIT(rt, t);
    cr_assert_eq(c.res, 0);
    cr_assert_eq(handler_of(SIGINT), SIG_DFL, "SIGINT's default action is back");
    pn_runtime_free(rt);
}

Test(signal, ctrl_c_listens_from_its_first_poll)
{
    signal(SIGINT, SIG_IGN);
    waker_probe pr = { 0 };
    pn_ctrl_c_future c = pn_ctrl_c();
    raise(SIGINT);                        /* ignored: c has not been polled */
    cr_assert_eq(POLL(&c, &pr), PN_PENDING);
    cr_assert_neq(handler_of(SIGINT), SIG_IGN);
    pn_future_drop(PN_FUTURE(&c));
    cr_assert_eq(waker_probe_held(&pr), 0);
    cr_assert_eq(handler_of(SIGINT), SIG_IGN, "the drop stopped listening");
    pn_future_drop(PN_FUTURE(&c));        /* dropped: a no-op */
}

/* Every thread of the process blocks SIGUSR1 (the runtime's workers
 * inherit the mask); a process-directed SIGUSR1 still arrives, through the
 * dispatcher thread. */
BOTH(signal, delivered_when_every_thread_blocks_it)
{
    sigset_t m, old;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &m, &old);
    pn_runtime *rt = flavour_new(fl);
    pn_signal s;
    cr_assert_eq(pn_signal_listen(&s, SIGUSR1), 0);
    pn_signal_recv_future r = pn_signal_recv(&s);
    trigger_future t = trigger(SIGUSR1, BY_KILL);
    t.kids[t.n++] = PN_FUTURE(&r);
    AWAIT(rt, t);
    cr_assert_eq(r.res, 0);
    cr_assert_eq(pn_signal_close(&s), 0);
    pn_runtime_free(rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A thread sends SIGUSR2 ROUNDS times, each after the previous one was
 * received: every one is received (none merged, none lost). */
enum { ROUNDS = 300 };
static atomic_int acked;

static void *pinger(void *arg)
{
    (void)arg;
    block_all();
    for (int i = 0; i < ROUNDS; i++) {
        while (atomic_load(&acked) < i)
            sched_yield();
        kill(getpid(), SIGUSR2);
    }
    return NULL;
}

typedef struct ponger {
    pn_future base;
    pn_async as;
    pn_signal *s;
    pn_signal_recv_future r;
    int i;
} ponger;

static pn_poll ponger_poll(pn_future *f, pn_cx *cx)
{
    ponger *p = (ponger *)f;
    PN_ASYNC_BEGIN(p->as);
    for (p->i = 0; p->i < ROUNDS; p->i++) {
        p->r = pn_signal_recv(p->s);
        PN_AWAIT(p->as, &p->r, cx);
        cr_assert_eq(p->r.res, 0);
        atomic_fetch_add(&acked, 1);
    }
    PN_ASYNC_END(p->as);
}
PN_ASYNC_VTABLE(ponger_vt, ponger, as, ponger_poll);

BOTH(signal, ping_pong_with_a_thread_loses_nothing)
{
    /* Every thread but the dispatcher blocks SIGUSR2 (the workers inherit
     * the mask): under ThreadSanitizer a handler that lands in a thread
     * asleep in a raw epoll_pwait2 syscall would wait for that thread to
     * wake for something else. */
    sigset_t m, old;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &m, &old);
    atomic_store(&acked, 0);
    pn_runtime *rt = flavour_new(fl);
    pn_signal s;
    cr_assert_eq(pn_signal_listen(&s, SIGUSR2), 0);
    ponger p = { .base = { &ponger_vt }, .s = &s };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, p, &h), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, pinger, NULL), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&acked), ROUNDS);
    pn_join_handle_free(h);
    cr_assert_eq(pn_signal_close(&s), 0);
    pn_runtime_free(rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- fibers ------------------------------------------------------------------ */

static void fiber_body(void *arg)
{
    int *out = arg;
    pn_signal s;
    out[0] = pn_signal_listen(&s, SIGUSR1);
    pthread_t t;
    pthread_create(&t, NULL, kill_thread, (void *)(intptr_t)SIGUSR1);
    out[1] = pn_fiber_signal_recv(&s);
    pthread_join(t, NULL);
    out[2] = pn_signal_close(&s);
    out[3] = pn_fiber_signal_recv(&s);      /* closed: -EINVAL */
}

BOTH(signal, fiber_signal_recv)
{
    sigset_t old = only_dispatcher(SIGUSR1);
    pn_runtime *rt = flavour_new(fl);
    int out[4] = { 1, 1, 1, 1 };
    cr_assert_eq(pn_fiber_run(rt, fiber_body, out, NULL), 0);
    cr_assert_eq(out[0], 0);
    cr_assert_eq(out[1], 0);
    cr_assert_eq(out[2], 0);
    cr_assert_eq(out[3], -EINVAL);
    pn_runtime_free(rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
