/*
 * test_drop_rule.c - the one drop rule, for every public future kind:
 * pn_future_drop on a never-polled or a READY future is a no-op (a READY
 * guard releases what it holds, once), and touches nothing the future
 * borrowed: the tests free the borrowed handle first where they can, so
 * ASan reports a drop that reads it.  A READY future that was pending
 * first (an I/O future that parked a waker) is dropped after its fd's
 * memory is gone.
 */
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

/* Drop `f` twice (the second drop must be a no-op as well). */
static void drop2(pn_future *f)
{
    pn_future_drop(f);
    pn_future_drop(f);
}

/* Poll `child` until READY; the first time it is pending, call kick(arg)
 * (which makes it ready, e.g. by writing to the peer).  .was_pending says
 * the child did park a waker before completing. */
typedef struct after_pending {
    pn_future base;
    pn_future *child;
    void (*kick)(void *arg);
    void *arg;
    bool was_pending;
} after_pending;

static pn_poll after_pending_poll(pn_future *f, pn_cx *cx)
{
    after_pending *a = (after_pending *)f;
    if (pn_future_poll(a->child, cx) == PN_READY)
        return PN_READY;
    if (!a->was_pending) {
        a->was_pending = true;
        a->kick(a->arg);
    }
    return PN_PENDING;
}

static const pn_future_vtable after_pending_vt = { after_pending_poll, NULL, "after_pending" };

static bool ready_after_pending(pn_runtime *rt, pn_future *child, void (*kick)(void *), void *arg)
{
    after_pending a = { .base = { &after_pending_vt }, .child = child, .kick = kick, .arg = arg };
    AWAIT(rt, a);
    return a.was_pending;
}

static void ready_after_parking(pn_runtime *rt, pn_future *child, void (*kick)(void *), void *arg)
{
    cr_assert(ready_after_pending(rt, child, kick, arg),
              "%s completed without parking first", child->vt->name);
}

static void *twice(void *arg) { return arg; }

static void fiber_noop(void *arg) { (*(int *)arg)++; }

/* ---- timers, combinators, small futures ------------------------------- */

Test(drop_rule, timers_and_combinators, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();
    pn_yield_now_future y = pn_yield();
    drop2(PN_FUTURE(&y));
    AWAIT(rt, y);
    drop2(PN_FUTURE(&y));

    pn_sleep_future s = pn_sleep(PN_MS(1));
    drop2(PN_FUTURE(&s));
    s = pn_sleep(PN_MS(1));
    AWAIT(rt, s);
    drop2(PN_FUTURE(&s));

    pn_sleep_future inner = pn_sleep(PN_MS(1));
    pn_timeout_future t = pn_timeout(PN_FUTURE(&inner), PN_SEC(10));
    drop2(PN_FUTURE(&t));
    inner = pn_sleep(PN_MS(1));
    t = pn_timeout(PN_FUTURE(&inner), PN_SEC(10));
    AWAIT(rt, t);
    cr_assert_eq(t.res, 0);
    drop2(PN_FUTURE(&t));

    pn_interval_future iv = pn_interval(PN_MS(1));
    drop2(PN_FUTURE(&iv));
    iv = pn_interval(PN_MS(1));
    AWAIT(rt, iv);
    drop2(PN_FUTURE(&iv));

    pn_yield_now_future a = pn_yield(), b = pn_yield();
    pn_future *kids[2] = { PN_FUTURE(&a), PN_FUTURE(&b) };
    pn_join_all_future ja = pn_join_all(kids, 2);
    drop2(PN_FUTURE(&ja));
    a = pn_yield(), b = pn_yield();
    kids[0] = PN_FUTURE(&a), kids[1] = PN_FUTURE(&b);
    ja = pn_join_all(kids, 2);
    AWAIT(rt, ja);
    drop2(PN_FUTURE(&ja));

    a = pn_yield(), b = pn_yield();
    pn_join2_future j2 = pn_join2(PN_FUTURE(&a), PN_FUTURE(&b));
    drop2(PN_FUTURE(&j2));
    a = pn_yield(), b = pn_yield();
    j2 = pn_join2(PN_FUTURE(&a), PN_FUTURE(&b));
    AWAIT(rt, j2);
    drop2(PN_FUTURE(&j2));

    a = pn_yield(), b = pn_yield();
    kids[0] = PN_FUTURE(&a), kids[1] = PN_FUTURE(&b);
    pn_select_future sel = pn_select(kids, 2);
    drop2(PN_FUTURE(&sel));
    a = pn_yield(), b = pn_yield();
    kids[0] = PN_FUTURE(&a), kids[1] = PN_FUTURE(&b);
    sel = pn_select(kids, 2);
    AWAIT(rt, sel);
    drop2(PN_FUTURE(&sel));

    a = pn_yield(), b = pn_yield();
    pn_select2_future s2 = pn_select2(PN_FUTURE(&a), PN_FUTURE(&b));
    drop2(PN_FUTURE(&s2));
    a = pn_yield(), b = pn_yield();
    s2 = pn_select2(PN_FUTURE(&a), PN_FUTURE(&b));
    AWAIT(rt, s2);
    drop2(PN_FUTURE(&s2));

    int x = 7;
    pn_blocking_future bl = pn_spawn_blocking(twice, &x);
    drop2(PN_FUTURE(&bl));
    bl = pn_spawn_blocking(twice, &x);
    AWAIT(rt, bl);
    drop2(PN_FUTURE(&bl));

    pn_resolve_future rs = pn_resolve("127.0.0.1", 80);
    drop2(PN_FUTURE(&rs));
    rs = pn_resolve("127.0.0.1", 80);
    AWAIT(rt, rs);
    drop2(PN_FUTURE(&rs));
    cr_assert_gt(rs.count, 0, "a drop after READY keeps the output");
    pn_resolve_free(&rs);
    pn_runtime_free(rt);
}

/* ---- tasks ------------------------------------------------------------ */

Test(drop_rule, tasks, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();
    pn_yield_now_future y = pn_yield();
    pn_join_handle *h = NULL;
    cr_assert_eq(PN_SPAWN(rt, y, &h), 0);
    pn_join_future jf = pn_join(h);
    drop2(PN_FUTURE(&jf));
    jf = pn_join(h);
    AWAIT(rt, jf);
    pn_join_handle_free(h);                         /* borrowed: gone first */
    drop2(PN_FUTURE(&jf));

    pn_task_group *g = NULL;
    cr_assert_eq(pn_task_group_new(rt, &g), 0);
    cr_assert_eq(pn_task_group_spawn(g, PN_FUTURE(&y), sizeof y), 0);
    pn_task_group_join_future jn = pn_task_group_join_next(g);
    drop2(PN_FUTURE(&jn));
    jn = pn_task_group_join_next(g);
    AWAIT(rt, jn);
    drop2(PN_FUTURE(&jn));                          /* a guard: releases once */
    pn_task_group_shutdown_future sd = pn_task_group_shutdown(g);
    drop2(PN_FUTURE(&sd));
    sd = pn_task_group_shutdown(g);
    AWAIT(rt, sd);
    pn_task_group_free(g);
    drop2(PN_FUTURE(&sd));

    int runs = 0;                                   /* a fiber: nothing runs */
    pn_fiber_future fb = pn_fiber(fiber_noop, &runs, NULL);
    drop2(PN_FUTURE(&fb));
    pn_fiber_future zero;
    memset(&zero, 0, sizeof(zero));
    drop2(PN_FUTURE(&zero));
    cr_assert_eq(runs, 0);
    fb = pn_fiber(fiber_noop, &runs, NULL);
    AWAIT(rt, fb);
    cr_assert_eq(runs, 1);
    cr_assert_eq(fb.res, 0);
    drop2(PN_FUTURE(&fb));                          /* READY: keeps .res */
    cr_assert_eq(fb.res, 0);
    pn_runtime_free(rt);
}

/* ---- channels and sync ------------------------------------------------- */

Test(drop_rule, channels, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();
    int v = 1, out = 0;

    pn_oneshot_tx *otx;
    pn_oneshot_rx *orx;
    cr_assert_eq(pn_oneshot_new(sizeof v, &otx, &orx), 0);
    pn_oneshot_recv_future orf = pn_oneshot_recv(orx, &out);
    drop2(PN_FUTURE(&orf));
    pn_oneshot_closed_future ocf = pn_oneshot_closed(otx);
    drop2(PN_FUTURE(&ocf));
    pn_oneshot_tx_free(otx);
    pn_oneshot_rx_free(orx);
    cr_assert_eq(pn_oneshot_new(sizeof v, &otx, &orx), 0);
    cr_assert_eq(pn_oneshot_send(otx, &v), 0);     /* frees the sender */
    orf = pn_oneshot_recv(orx, &out);
    AWAIT(rt, orf);
    pn_oneshot_rx_free(orx);
    cr_assert_eq(pn_oneshot_new(sizeof v, &otx, &orx), 0);
    pn_oneshot_rx_free(orx);
    ocf = pn_oneshot_closed(otx);
    AWAIT(rt, ocf);
    pn_oneshot_tx_free(otx);
    drop2(PN_FUTURE(&orf));
    drop2(PN_FUTURE(&ocf));

    pn_mpsc_tx *mtx;
    pn_mpsc_rx *mrx;
    cr_assert_eq(pn_mpsc_new(4, sizeof v, &mtx, &mrx), 0);
    pn_mpsc_send_future msf = pn_mpsc_send(mtx, &v);
    drop2(PN_FUTURE(&msf));
    pn_mpsc_reserve_future mres = pn_mpsc_reserve(mtx);
    drop2(PN_FUTURE(&mres));
    pn_mpsc_recv_future mrf = pn_mpsc_recv(mrx, &out);
    drop2(PN_FUTURE(&mrf));
    pn_mpsc_closed_future mcf = pn_mpsc_closed(mtx);
    drop2(PN_FUTURE(&mcf));
    mres = pn_mpsc_reserve(mtx);
    AWAIT(rt, mres);
    drop2(PN_FUTURE(&mres));                        /* a guard: gives the slot back */
    msf = pn_mpsc_send(mtx, &v);
    AWAIT(rt, msf);
    mrf = pn_mpsc_recv(mrx, &out);
    AWAIT(rt, mrf);
    cr_assert_eq(out, 1);
    pn_mpsc_rx_free(mrx);
    mcf = pn_mpsc_closed(mtx);
    AWAIT(rt, mcf);
    pn_mpsc_tx_free(mtx);
    drop2(PN_FUTURE(&msf));
    drop2(PN_FUTURE(&mrf));
    drop2(PN_FUTURE(&mcf));

    pn_broadcast_tx *btx;
    pn_broadcast_rx *brx;
    cr_assert_eq(pn_broadcast_new(4, sizeof v, &btx, &brx), 0);
    pn_broadcast_recv_future brf = pn_broadcast_recv(brx, &out);
    drop2(PN_FUTURE(&brf));
    cr_assert_geq(pn_broadcast_send(btx, &v), 0);
    brf = pn_broadcast_recv(brx, &out);
    AWAIT(rt, brf);
    pn_broadcast_rx_free(brx);
    pn_broadcast_tx_free(btx);
    drop2(PN_FUTURE(&brf));

    pn_watch_tx *wtx;
    pn_watch_rx *wrx;
    cr_assert_eq(pn_watch_new(sizeof v, &v, &wtx, &wrx), 0);
    pn_watch_changed_future wch = pn_watch_changed(wrx);
    drop2(PN_FUTURE(&wch));
    pn_watch_closed_future wcl = pn_watch_tx_closed(wtx);
    drop2(PN_FUTURE(&wcl));
    cr_assert_eq(pn_watch_send(wtx, &v), 0);
    wch = pn_watch_changed(wrx);
    AWAIT(rt, wch);
    pn_watch_rx_free(wrx);
    wcl = pn_watch_tx_closed(wtx);
    AWAIT(rt, wcl);
    pn_watch_tx_free(wtx);
    drop2(PN_FUTURE(&wch));
    drop2(PN_FUTURE(&wcl));
    pn_runtime_free(rt);
}

Test(drop_rule, sync_primitives, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = rt_new();

    pn_notify *n = malloc(sizeof *n);
    pn_notify_init(n);
    pn_notified_future nf = pn_notify_notified(n);
    drop2(PN_FUTURE(&nf));
    pn_notify_one(n);
    nf = pn_notify_notified(n);
    AWAIT(rt, nf);
    pn_notify_destroy(n);
    free(n);
    drop2(PN_FUTURE(&nf));

    pn_semaphore *sem = malloc(sizeof *sem);
    pn_semaphore_init(sem, 2);
    pn_semaphore_permit p = pn_semaphore_acquire(sem, 1);
    drop2(PN_FUTURE(&p));
    p = pn_semaphore_acquire(sem, 1);
    AWAIT(rt, p);
    drop2(PN_FUTURE(&p));                           /* a guard: releases once */
    cr_assert_eq(pn_semaphore_available(sem), 2);
    p = pn_semaphore_acquire(sem, 1);
    AWAIT(rt, p);
    pn_semaphore_release(&p);
    pn_semaphore_destroy(sem);
    free(sem);
    drop2(PN_FUTURE(&p));

    pn_mutex *m = malloc(sizeof *m);
    pn_mutex_init(m);
    pn_mutex_guard g = pn_mutex_lock(m);
    drop2(PN_FUTURE(&g));
    g = pn_mutex_lock(m);
    AWAIT(rt, g);
    pn_mutex_unlock(&g);
    pn_mutex_destroy(m);
    free(m);
    drop2(PN_FUTURE(&g));

    pn_rwlock *rw = malloc(sizeof *rw);
    pn_rwlock_init(rw);
    pn_rwlock_guard rg = pn_rwlock_read(rw), wg = pn_rwlock_write(rw);
    drop2(PN_FUTURE(&rg));
    drop2(PN_FUTURE(&wg));
    rg = pn_rwlock_read(rw);
    AWAIT(rt, rg);
    pn_rwlock_unlock(&rg);
    wg = pn_rwlock_write(rw);
    AWAIT(rt, wg);
    pn_rwlock_unlock(&wg);
    pn_rwlock_destroy(rw);
    free(rw);
    drop2(PN_FUTURE(&rg));
    drop2(PN_FUTURE(&wg));

    pn_wait_group *wgp = malloc(sizeof *wgp);
    pn_wait_group_init(wgp);
    pn_wait_group_wait_future wf = pn_wait_group_wait(wgp);
    drop2(PN_FUTURE(&wf));
    wf = pn_wait_group_wait(wgp);
    AWAIT(rt, wf);
    pn_wait_group_destroy(wgp);
    free(wgp);
    drop2(PN_FUTURE(&wf));

    pn_cancel_token *tok = pn_cancel_token_new();
    pn_cancel_wait_future cw = pn_cancel_token_cancelled(tok);
    drop2(PN_FUTURE(&cw));
    pn_cancel_token_cancel(tok);
    cw = pn_cancel_token_cancelled(tok);
    AWAIT(rt, cw);
    pn_cancel_token_free(tok);
    drop2(PN_FUTURE(&cw));
    pn_runtime_free(rt);
}

/* ---- I/O: READY after pending, then the fd's memory is gone ------------- */

static void write_byte(void *arg)
{
    cr_assert_eq(write(*(int *)arg, "x", 1), 1);
}

/* A socketpair: *mine (heap) is registered, *peer a plain fd. */
static pn_async_fd *pair_new(int *peer)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    pn_async_fd *afd = malloc(sizeof *afd);
    cr_assert_eq(pn_async_fd_init(afd, sv[0]), 0);
    *peer = sv[1];
    return afd;
}

static void pair_free(pn_async_fd *afd, int peer)
{
    pn_async_fd_close(afd);
    free(afd);
    close(peer);
}

BOTH(drop_rule, io_futures)
{
    pn_runtime *rt = flavour_new(fl);
    char buf[4];
    int peer;

    pn_async_fd *afd = pair_new(&peer);
    pn_read_future rd = pn_read(afd, buf, sizeof buf);
    drop2(PN_FUTURE(&rd));
    pn_write_future wr = pn_write(afd, "a", 1);
    drop2(PN_FUTURE(&wr));
    pn_write_all_future wa = pn_write_all(afd, "ab", 2);
    drop2(PN_FUTURE(&wa));
    pn_ready_future rdy = pn_readable(afd);
    drop2(PN_FUTURE(&rdy));
    pn_close_future cl = pn_close_async(afd);
    drop2(PN_FUTURE(&cl));
    rd = pn_read(afd, buf, sizeof buf);
    ready_after_parking(rt, PN_FUTURE(&rd), write_byte, &peer);
    cr_assert_eq(rd.res, 1);
    wr = pn_write(afd, "a", 1);
    AWAIT(rt, wr);
    wa = pn_write_all(afd, "ab", 2);
    AWAIT(rt, wa);
    pair_free(afd, peer);
    drop2(PN_FUTURE(&rd));
    drop2(PN_FUTURE(&wr));
    drop2(PN_FUTURE(&wa));

    afd = pair_new(&peer);
    rdy = pn_readable(afd);
    /* Readiness may be reported at once on a new registration (epoll):
     * parking is not required here. */
    (void)ready_after_pending(rt, PN_FUTURE(&rdy), write_byte, &peer);
    cl = pn_close_async(afd);
    AWAIT(rt, cl);
    free(afd);
    close(peer);
    drop2(PN_FUTURE(&rdy));
    drop2(PN_FUTURE(&cl));

    pn_tcp_stream *s = malloc(sizeof *s);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(pn_tcp_stream_init(s, sv[0]), 0);
    peer = sv[1];
    pn_tcp_read_exact_future re = pn_tcp_read_exact(s, buf, 1);
    drop2(PN_FUTURE(&re));
    pn_tcp_peek_future pk = pn_tcp_peek(s, buf, 1);
    drop2(PN_FUTURE(&pk));
    struct iovec iov = { .iov_base = "a", .iov_len = 1 };
    pn_tcp_writev_future wv = pn_tcp_writev(s, &iov, 1);
    drop2(PN_FUTURE(&wv));
    pk = pn_tcp_peek(s, buf, 1);
    ready_after_parking(rt, PN_FUTURE(&pk), write_byte, &peer);
    re = pn_tcp_read_exact(s, buf, 2);
    ready_after_parking(rt, PN_FUTURE(&re), write_byte, &peer);
    cr_assert_eq(re.res, 2);
    wv = pn_tcp_writev(s, &iov, 1);
    AWAIT(rt, wv);
    pn_tcp_close(s);
    free(s);
    close(peer);
    drop2(PN_FUTURE(&re));
    drop2(PN_FUTURE(&pk));
    drop2(PN_FUTURE(&wv));
    pn_runtime_free(rt);
}

typedef struct connect_arg {
    pn_sockaddr addr;
    int fd;
} connect_arg;

static void connect_plain(void *arg)
{
    connect_arg *c = arg;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c->fd, &c->addr.sa, c->addr.len), 0);
}

static void send_datagram(void *arg)
{
    connect_arg *c = arg;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(sendto(fd, "d", 1, 0, &c->addr.sa, c->addr.len), 1);
    close(fd);
}

BOTH(drop_rule, net_futures)
{
    pn_runtime *rt = flavour_new(fl);
    pn_sockaddr any = pn_sockaddr_loopback4(0);
    connect_arg ca = { .fd = -1 };

    pn_tcp_listener *l = malloc(sizeof *l);
    cr_assert_eq(pn_tcp_listen(l, &any, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(l, &ca.addr), 0);
    pn_tcp_accept_future ac = pn_tcp_accept(l);
    drop2(PN_FUTURE(&ac));
    pn_tcp_stream cs;
    pn_tcp_connect_future cn = pn_tcp_connect(&cs, &ca.addr, 0);
    drop2(PN_FUTURE(&cn));
    cn = pn_tcp_connect(&cs, &ca.addr, 0);
    AWAIT(rt, cn);
    cr_assert_eq(cn.res, 0);
    drop2(PN_FUTURE(&cn));
    ac = pn_tcp_accept(l);
    AWAIT(rt, ac);                                  /* the connect above */
    cr_assert_eq(ac.res, 0);
    pn_tcp_close(&ac.stream);
    pn_tcp_close(&cs);
    ac = pn_tcp_accept(l);
    ready_after_parking(rt, PN_FUTURE(&ac), connect_plain, &ca);
    cr_assert_eq(ac.res, 0);
    pn_tcp_close(&ac.stream);
    close(ca.fd);
    pn_tcp_listener_close(l);
    free(l);
    drop2(PN_FUTURE(&ac));

    pn_udp_socket *u = malloc(sizeof *u);
    cr_assert_eq(pn_udp_bind(u, &any, NULL), 0);
    cr_assert_eq(pn_udp_local_addr(u, &ca.addr), 0);
    char buf[4];
    pn_udp_recv_future ur = pn_udp_recv_from(u, buf, sizeof buf);
    drop2(PN_FUTURE(&ur));
    pn_udp_send_future us = pn_udp_send_to(u, "s", 1, &ca.addr);
    drop2(PN_FUTURE(&us));
    ur = pn_udp_recv_from(u, buf, sizeof buf);
    ready_after_parking(rt, PN_FUTURE(&ur), send_datagram, &ca);
    cr_assert_eq(ur.res, 1);
    us = pn_udp_send_to(u, "s", 1, &ca.addr);
    AWAIT(rt, us);
    pn_udp_close(u);
    free(u);
    drop2(PN_FUTURE(&ur));
    drop2(PN_FUTURE(&us));
    pn_runtime_free(rt);
}
