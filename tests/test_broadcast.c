/*
 * test_broadcast.c - the broadcast channel (pollen/broadcast.h).
 *
 * Checked: send/recv/try_recv/blocking_recv on both runtimes; the lag rule
 * exactly (capacity 4, ten sends: -EOVERFLOW lagged 6, then 7..10); send
 * with no receiver; subscribe and rx_clone positions; close drains then
 * -EPIPE, and wakes receivers that wait; dropping a pending recv (woken or
 * not) loses nothing and keeps no waker; a send forced between a
 * receive's lock-free check and its registration (the point
 * "broadcast.recv.check"); many receiver tasks each see every value; and a
 * sender on a plain thread against receiver tasks on the 2-worker runtime
 * that drop pending receives at random, every value accounted for by its
 * position (received in order exactly once, or counted in a lag); and two
 * sender threads at once, every receiver task seeing the same single order.
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "core/chaos.h"
#include "pollen/broadcast.h"

static void bcast_fini(void) { pn__point_set_hook(NULL); }

TestSuite(broadcast, .timeout = PN_TEST_TIMEOUT, .fini = bcast_fini);

static pn_waker probe_waker(waker_probe *p) { return (pn_waker){ p, &waker_probe_vt }; }

static pn_cx probe_cx(const pn_waker *w) { return (pn_cx){ .waker = w, .budget = 1000 }; }

/* Receive one value on runtime rt; returns the status, *lag the count. */
static int recv_on(pn_runtime *rt, pn_broadcast_rx *rx, int *out, uint64_t *lag)
{
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, out);
    AWAIT(rt, f);
    if (lag)
        *lag = f.lagged;
    return f.res;
}

/* ---- basics --------------------------------------------------------------- */

BOTH(broadcast, send_then_recv_in_order)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(8, sizeof(int), &tx, &rx), 0);
    for (int i = 1; i <= 3; i++)
        cr_assert_eq(pn_broadcast_send(tx, &i), 1, "one receiver sees it");
    cr_assert_eq(pn_broadcast_len(rx), 3);
    for (int i = 1; i <= 3; i++) {
        int v = 0;
        cr_assert_eq(recv_on(rt, rx, &v, NULL), 0);
        cr_assert_eq(v, i);
    }
    int v = -1;
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, NULL), -EAGAIN);
    cr_assert_eq(v, -1, "nothing written on -EAGAIN");
    cr_assert_eq(pn_broadcast_len(rx), 0);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(broadcast, bad_arguments_are_einval)
{
    pn_broadcast_tx *tx = (void *)1;
    pn_broadcast_rx *rx = (void *)1;
    cr_assert_eq(pn_broadcast_new(0, 4, &tx, &rx), -EINVAL);
    cr_assert_null(tx);
    cr_assert_null(rx);
    cr_assert_eq(pn_broadcast_new(4, 0, &tx, &rx), -EINVAL);
    cr_assert_eq(pn_broadcast_new(4, 4, NULL, &rx), -EINVAL);
    cr_assert_eq(pn_broadcast_new(SIZE_MAX / 2, 4, &tx, &rx), -EINVAL);
    cr_assert_eq(pn_broadcast_send(NULL, &tx), -EINVAL);
    cr_assert_eq(pn_broadcast_new(4, 4, &tx, NULL), 0, "no first receiver is allowed");
    cr_assert_eq(pn_broadcast_send(tx, NULL), -EINVAL);
    cr_assert_eq(pn_broadcast_subscribe(tx, NULL), -EINVAL);
    cr_assert_eq(pn_broadcast_subscribe(NULL, &rx), -EINVAL);
    cr_assert_eq(pn_broadcast_rx_clone(NULL, &rx), -EINVAL);
    cr_assert_eq(pn_broadcast_try_recv(NULL, &rx, NULL), -EINVAL);
    cr_assert_null(pn_broadcast_tx_clone(NULL));
    cr_assert_eq(pn_broadcast_receiver_count(NULL), 0);
    cr_assert_eq(pn_broadcast_len(NULL), 0);
    pn_broadcast_rx_free(NULL);
    pn_broadcast_tx_free(NULL);
    cr_assert_eq(pn_broadcast_subscribe(tx, &rx), 0);
    cr_assert_eq(pn_broadcast_try_recv(rx, NULL, NULL), -EINVAL);
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, NULL);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(f.res, -EINVAL);
    pn_future_drop(&f.base);
    cr_assert_eq(pn_broadcast_blocking_recv(NULL, &p, NULL), -EINVAL);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
}

/* ---- the lag rule ----------------------------------------------------------- */

BOTH(broadcast, lag_rule_capacity_4_ten_sends)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx, *rx2;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &tx, &rx), 0);
    cr_assert_eq(pn_broadcast_rx_clone(rx, &rx2), 0);
    for (int i = 1; i <= 10; i++)
        cr_assert_eq(pn_broadcast_send(tx, &i), 2);
    cr_assert_eq(pn_broadcast_len(rx), 4);
    /* the future */
    int v = -1;
    uint64_t lag = 0;
    cr_assert_eq(recv_on(rt, rx, &v, &lag), -EOVERFLOW);
    cr_assert_eq(lag, 6);
    cr_assert_eq(v, -1, "*out untouched on a lag");
    for (int i = 7; i <= 10; i++) {
        cr_assert_eq(recv_on(rt, rx, &v, &lag), 0);
        cr_assert_eq(v, i);
        cr_assert_eq(lag, 0);
    }
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), -EAGAIN);
    /* try_recv, on the clone, which started at the same place */
    cr_assert_eq(pn_broadcast_try_recv(rx2, &v, &lag), -EOVERFLOW);
    cr_assert_eq(lag, 6);
    for (int i = 7; i <= 10; i++) {
        cr_assert_eq(pn_broadcast_try_recv(rx2, &v, &lag), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(pn_broadcast_try_recv(rx2, &v, &lag), -EAGAIN);
    /* a lag after partial reading, and a lag of exactly one */
    for (int i = 11; i <= 15; i++)
        pn_broadcast_send(tx, &i);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), -EOVERFLOW);
    cr_assert_eq(lag, 1);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), 0);
    cr_assert_eq(v, 12);
    pn_broadcast_rx_free(rx2);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* A lagged receiver of a closed channel reports the lag, then drains. */
Test(broadcast, lag_comes_before_close)
{
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(2, sizeof(int), &tx, &rx), 0);
    for (int i = 1; i <= 5; i++)
        pn_broadcast_send(tx, &i);
    pn_broadcast_tx_free(tx);
    int v;
    uint64_t lag;
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), -EOVERFLOW);
    cr_assert_eq(lag, 3);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), 0);
    cr_assert_eq(v, 4);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), -EPIPE);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, &lag), -EPIPE, "and stays closed");
    pn_broadcast_rx_free(rx);
}

/* ---- receivers come and go ------------------------------------------------ */

Test(broadcast, send_with_no_receiver_is_epipe_and_subscribe_sees_later_values)
{
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &tx, &rx), 0);
    int one = 1, two = 2, three = 3, v;
    cr_assert_eq(pn_broadcast_send(tx, &one), 1);
    pn_broadcast_rx_free(rx);
    cr_assert_eq(pn_broadcast_receiver_count(tx), 0);
    cr_assert_eq(pn_broadcast_send(tx, &two), -EPIPE);
    cr_assert_eq(two, 2, "the value is still the caller's");
    cr_assert_eq(pn_broadcast_subscribe(tx, &rx), 0);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, NULL), -EAGAIN, "nothing from before");
    cr_assert_eq(pn_broadcast_send(tx, &three), 1);
    pn_broadcast_rx *late;
    cr_assert_eq(pn_broadcast_subscribe(tx, &late), 0);
    cr_assert_eq(pn_broadcast_receiver_count(tx), 2);
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, NULL), 0);
    cr_assert_eq(v, 3, "two was never stored");
    cr_assert_eq(pn_broadcast_try_recv(late, &v, NULL), -EAGAIN);
    pn_broadcast_tx *tx2 = pn_broadcast_tx_clone(tx);
    pn_broadcast_tx_free(tx);
    cr_assert_eq(pn_broadcast_send(tx2, &one), 2, "a clone keeps the channel open");
    pn_broadcast_tx_free(tx2);
    cr_assert_eq(pn_broadcast_try_recv(late, &v, NULL), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(pn_broadcast_try_recv(late, &v, NULL), -EPIPE);
    pn_broadcast_rx *clone;
    cr_assert_eq(pn_broadcast_rx_clone(rx, &clone), 0, "clone after close");
    cr_assert_eq(pn_broadcast_try_recv(clone, &v, NULL), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(pn_broadcast_try_recv(clone, &v, NULL), -EPIPE);
    pn_broadcast_rx_free(clone);
    pn_broadcast_rx_free(late);
    pn_broadcast_rx_free(rx);          /* the last handle frees (ASan checks) */
}

/* ---- receiver tasks ------------------------------------------------------- */

/* Receives until -EPIPE, checking that each value is its position (the
 * sender sends 0, 1, 2, ...): a value received in order exactly once, or
 * counted in a lag.  With drop_every set it drops its pending receive now
 * and then (a cancelled recv must lose nothing). */
typedef struct rx_task {
    pn_future base;
    pn_broadcast_rx *rx;
    pn_broadcast_recv_future recv;
    bool active, counted;
    int val;
    uint64_t expected, got, lagged, bad, drops;
    unsigned seed, drop_every;
    uint64_t sum;
    int final;
    atomic_int *started;
} rx_task;

static pn_poll rx_task_poll(pn_future *f, pn_cx *cx)
{
    rx_task *t = (rx_task *)f;
    if (t->started && !t->counted) {
        t->counted = true;
        atomic_fetch_add(t->started, 1);
    }
    for (;;) {
        if (!t->active) {
            t->recv = pn_broadcast_recv(t->rx, &t->val);
            t->active = true;
        }
        if (pn_future_poll(&t->recv.base, cx) == PN_PENDING) {
            if (t->drop_every && rand_r(&t->seed) % t->drop_every == 0) {
                pn_future_drop(&t->recv.base);
                t->active = false;
                t->drops++;
                pn_waker_wake_by_ref(cx->waker);
            }
            return PN_PENDING;
        }
        t->active = false;
        switch (t->recv.res) {
        case 0:
            if ((uint64_t)t->val != t->expected)
                t->bad++;
            t->expected = (uint64_t)t->val + 1;
            t->got++;
            t->sum += (uint64_t)t->val;
            break;
        case -EOVERFLOW:
            t->lagged += t->recv.lagged;
            t->expected += t->recv.lagged;
            break;
        default:
            t->final = t->recv.res;
            return PN_READY;
        }
    }
}

static void rx_task_drop(pn_future *f)
{
    rx_task *t = (rx_task *)f;
    if (t->active)
        pn_future_drop(&t->recv.base);
}

static const pn_future_vtable rx_task_vt = { rx_task_poll, rx_task_drop, "rx_task" };

typedef struct sender_arg {
    pn_broadcast_tx *tx;
    int n;
    atomic_int *started;
    int wait_for;
} sender_arg;

static void *sender_thread(void *arg)
{
    sender_arg *a = arg;
    while (a->started && atomic_load(a->started) < a->wait_for)
        sched_yield();
    for (int i = 0; i < a->n; i++) {
        long r = pn_broadcast_send(a->tx, &i);
        if (r <= 0)
            abort();
        if (i % 64 == 0)
            sched_yield();
    }
    pn_broadcast_tx_free(a->tx);
    return NULL;
}

static rx_task *join_rx(pn_runtime *rt, pn_join_handle *h)
{
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    return j.output;
}

#define EVERY_N 256
#define EVERY_RX 6

/* The ring holds every value, so no receiver lags: each sees all. */
BOTH(broadcast, many_receivers_each_see_every_value)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *first;
    cr_assert_eq(pn_broadcast_new(EVERY_N, sizeof(int), &tx, &first), 0);
    atomic_int started = 0;
    pn_join_handle *h[EVERY_RX];
    pn_broadcast_rx *rx[EVERY_RX];
    for (int i = 0; i < EVERY_RX; i++) {
        cr_assert_eq(pn_broadcast_rx_clone(first, &rx[i]), 0);
        rx_task t = { .base = { &rx_task_vt }, .rx = rx[i], .started = &started };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    pn_broadcast_rx_free(first);
    sender_arg a = { tx, EVERY_N, NULL, 0 };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sender_thread, &a), 0);
    uint64_t want = (uint64_t)EVERY_N * (EVERY_N - 1) / 2;
    for (int i = 0; i < EVERY_RX; i++) {
        rx_task *t = join_rx(rt, h[i]);
        cr_assert_eq(t->final, -EPIPE);
        cr_assert_eq(t->bad, 0, "receiver %d: out of order", i);
        cr_assert_eq(t->lagged, 0);
        cr_assert_eq(t->got, EVERY_N, "receiver %d got %lu", i, (unsigned long)t->got);
        cr_assert_eq(t->sum, want);
        pn_join_handle_free(h[i]);
        pn_broadcast_rx_free(rx[i]);
    }
    pthread_join(th, NULL);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

#define STRESS_N 40000
#define STRESS_RX 4

/* A small ring, a fast sender on a plain thread, receivers on 2 workers
 * that drop pending receives at random: every position is received in
 * order exactly once or reported in a lag, and the end is -EPIPE after
 * the last value. */
Test(broadcast, thread_sender_against_receiver_tasks_accounts_for_every_value)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    for (unsigned cap = 4; cap <= 64; cap *= 16) {
        pn_broadcast_tx *tx;
        pn_broadcast_rx *first;
        cr_assert_eq(pn_broadcast_new(cap, sizeof(int), &tx, &first), 0);
        atomic_int started = 0;
        pn_join_handle *h[STRESS_RX];
        pn_broadcast_rx *rx[STRESS_RX];
        for (int i = 0; i < STRESS_RX; i++) {
            cr_assert_eq(pn_broadcast_rx_clone(first, &rx[i]), 0);
            rx_task t = { .base = { &rx_task_vt }, .rx = rx[i], .started = &started,
                          .seed = 7u * (unsigned)i + cap, .drop_every = i % 2 ? 3 : 0 };
            cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
        }
        pn_broadcast_rx_free(first);
        sender_arg a = { tx, STRESS_N, &started, STRESS_RX };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, sender_thread, &a), 0);
        for (int i = 0; i < STRESS_RX; i++) {
            rx_task *t = join_rx(rt, h[i]);
            cr_assert_eq(t->final, -EPIPE);
            cr_assert_eq(t->bad, 0, "cap %u receiver %d: a value out of place", cap, i);
            cr_assert_eq(t->expected, STRESS_N, "cap %u receiver %d: ends at %lu", cap, i,
                         (unsigned long)t->expected);
            cr_assert_eq(t->got + t->lagged, STRESS_N, "lost or duplicated");
            pn_join_handle_free(h[i]);
            pn_broadcast_rx_free(rx[i]);
        }
        pthread_join(th, NULL);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- close ------------------------------------------------------------------ */

BOTH(broadcast, close_while_receivers_wait_wakes_them_with_epipe)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *first;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &tx, &first), 0);
    atomic_int started = 0;
    enum { K = 40 };                  /* more than a wake list holds */
    pn_join_handle *h[K];
    pn_broadcast_rx *rx[K];
    for (int i = 0; i < K; i++) {
        cr_assert_eq(pn_broadcast_rx_clone(first, &rx[i]), 0);
        rx_task t = { .base = { &rx_task_vt }, .rx = rx[i], .started = &started };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    while (atomic_load(&started) < K) {   /* let them all start waiting */
        pn_yield_now_future y = pn_yield();
        AWAIT(rt, y);
    }
    int v = 5;
    cr_assert_eq(pn_broadcast_send(tx, &v), K + 1);
    pn_broadcast_tx_free(tx);
    for (int i = 0; i < K; i++) {
        rx_task *t = join_rx(rt, h[i]);
        cr_assert_eq(t->final, -EPIPE);
        cr_assert_eq(t->got, 1);
        pn_join_handle_free(h[i]);
        pn_broadcast_rx_free(rx[i]);
    }
    cr_assert_eq(pn_broadcast_try_recv(first, &v, NULL), 0);
    cr_assert_eq(pn_broadcast_try_recv(first, &v, NULL), -EPIPE);
    pn_broadcast_rx_free(first);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- waiting, dropping, and the lost-wakeup window ------------------------- */

Test(broadcast, a_send_wakes_a_waiting_recv_and_a_drop_keeps_no_waker)
{
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &tx, &rx), 0);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    int v = 0, one = 1, two = 2;

    /* pending, woken by a send, completed by the next poll */
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, &v);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING, "a spurious poll stays queued");
    cr_assert_eq(atomic_load(&p.clones), 1, "one clone for one task");
    pn_broadcast_send(tx, &one);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(f.res, 0);
    cr_assert_eq(v, 1);
    pn_future_drop(&f.base);          /* after READY: a no-op */
    cr_assert_eq(waker_probe_held(&p), 0);

    /* pending then dropped: nothing held, nothing consumed */
    f = pn_broadcast_recv(rx, &v);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    pn_future_drop(&f.base);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_broadcast_send(tx, &two);
    cr_assert_eq(atomic_load(&p.wakes), 1, "a dropped waiter is not woken");

    /* pending, woken, then dropped before it ran: the value is still there */
    f = pn_broadcast_recv(rx, &v);
    pn_broadcast_recv_future g;
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY, "two is there already");
    cr_assert_eq(v, 2);
    g = pn_broadcast_recv(rx, &v);
    cr_assert_eq(pn_future_poll(&g.base, &cx), PN_PENDING);
    int three = 3;
    pn_broadcast_send(tx, &three);
    cr_assert_eq(atomic_load(&p.wakes), 2);
    pn_future_drop(&g.base);
    v = 0;
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, NULL), 0, "the dropped recv consumed nothing");
    cr_assert_eq(v, 3);
    cr_assert_eq(waker_probe_held(&p), 0);

    /* never polled: drop is a no-op */
    g = pn_broadcast_recv(rx, &v);
    pn_future_drop(&g.base);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
}

BOTH(broadcast, dropping_a_pending_recv_in_a_task_then_receiving_again)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &tx, &rx), 0);
    int v = 0;
    waker_probe p = { 0 };
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, &v);
    probed_drop pd = probed_drop_of(&f.base, &p);
    AWAIT(rt, pd);
    cr_assert_eq(pd.first, PN_PENDING);
    cr_assert_eq(waker_probe_held(&p), 0, "the dropped recv kept a waker");
    int seven = 7;
    pn_broadcast_send(tx, &seven);
    cr_assert_eq(atomic_load(&p.wakes), 0);
    cr_assert_eq(recv_on(rt, rx, &v, NULL), 0);
    cr_assert_eq(v, 7);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

static pn_broadcast_tx *hook_tx;
static _Atomic int hook_hits;

static void send_at_check(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "broadcast.recv.check") || atomic_fetch_add(&hook_hits, 1))
        return;
    int v = 99;
    pn_broadcast_send(hook_tx, &v);   /* the other thread's send, right here */
}

/* The receive saw nothing without the lock; before it took the lock and
 * registered, a send came and woke nobody (no waiter yet).  The check
 * under the lock must find the value, or the receive sleeps on it. */
Test(broadcast, a_send_between_check_and_registration_is_not_lost)
{
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &hook_tx, &rx), 0);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    int v = 0;
    atomic_store(&hook_hits, 0);
    pn__point_set_hook(send_at_check);
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, &v);
    pn_poll r = pn_future_poll(&f.base, &cx);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&hook_hits), 1, "the window was reached");
    cr_assert_eq(r, PN_READY, "the send in the window was lost");
    cr_assert_eq(f.res, 0);
    cr_assert_eq(v, 99);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(hook_tx);
}

/* The same window on a real task, on both runtimes. */
BOTH(broadcast, a_send_in_the_window_reaches_a_task)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &hook_tx, &rx), 0);
    atomic_store(&hook_hits, 0);
    pn__point_set_hook(send_at_check);
    int v = 0;
    cr_assert_eq(recv_on(rt, rx, &v, NULL), 0);
    pn__point_set_hook(NULL);
    cr_assert_eq(v, 99);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(hook_tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- blocking_recv ------------------------------------------------------- */

static void *late_sender(void *arg)
{
    pn_broadcast_tx *tx = arg;
    for (int i = 0; i < 50; i++)
        sched_yield();
    int v = 11;
    pn_broadcast_send(tx, &v);
    pn_broadcast_tx_free(tx);
    return NULL;
}

Test(broadcast, blocking_recv_on_a_plain_thread)
{
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(2, sizeof(int), &tx, &rx), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_sender, tx), 0);
    int v = 0;
    uint64_t lag = 5;
    cr_assert_eq(pn_broadcast_blocking_recv(rx, &v, &lag), 0);
    cr_assert_eq(v, 11);
    cr_assert_eq(lag, 0);
    cr_assert_eq(pn_broadcast_blocking_recv(rx, &v, &lag), -EPIPE);
    pthread_join(th, NULL);
    pn_broadcast_rx_free(rx);
}

typedef struct blocking_in_task {
    pn_future base;
    pn_broadcast_rx *rx;
    int status;
} blocking_in_task;

static pn_poll blocking_in_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    blocking_in_task *b = (blocking_in_task *)f;
    int v;
    b->status = pn_broadcast_blocking_recv(b->rx, &v, NULL);
    return PN_READY;
}

static const pn_future_vtable blocking_in_task_vt = { blocking_in_task_poll, NULL, "bit" };

BOTH(broadcast, blocking_recv_inside_a_task_is_edeadlk)
{
    pn_runtime *rt = flavour_new(fl);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(2, sizeof(int), &tx, &rx), 0);
    int one = 1;
    pn_broadcast_send(tx, &one);
    blocking_in_task b = { { &blocking_in_task_vt }, rx, 1 };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(((blocking_in_task *)j.output)->status, -EDEADLK);
    pn_join_handle_free(h);
    int v;
    cr_assert_eq(pn_broadcast_try_recv(rx, &v, NULL), 0, "nothing was taken");
    cr_assert_eq(v, 1);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* The budget: a receiver that always has a value still yields. */
Test(broadcast, recv_spends_the_budget)
{
    pn_broadcast_tx *tx;
    pn_broadcast_rx *rx;
    cr_assert_eq(pn_broadcast_new(4, sizeof(int), &tx, &rx), 0);
    int one = 1, v = 0;
    pn_broadcast_send(tx, &one);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    cx.budget = 0;
    pn_broadcast_recv_future f = pn_broadcast_recv(rx, &v);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    cr_assert_eq(atomic_load(&p.wakes), 1, "woken to run again");
    cr_assert_eq(pn_broadcast_len(rx), 1, "nothing taken");
    cx.budget = 1;
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(cx.budget, 0);
    cr_assert_eq(v, 1);
    pn_broadcast_rx_free(rx);
    pn_broadcast_tx_free(tx);
}

/* ---- two sender threads: one order for everybody ---------------------------- */

#define ORDER_PER 2000
#define ORDER_RX 3

typedef struct order_task {
    pn_future base;
    pn_broadcast_rx *rx;
    pn_broadcast_recv_future recv;
    bool active;
    int val, n, final;
    int *seen;                        /* ORDER_PER * 2 values, in order */
} order_task;

static pn_poll order_task_poll(pn_future *f, pn_cx *cx)
{
    order_task *t = (order_task *)f;
    for (;;) {
        if (!t->active) {
            t->recv = pn_broadcast_recv(t->rx, &t->val);
            t->active = true;
        }
        if (pn_future_poll(&t->recv.base, cx) == PN_PENDING)
            return PN_PENDING;
        t->active = false;
        if (t->recv.res) {
            t->final = t->recv.res;
            return PN_READY;
        }
        if (t->n < 2 * ORDER_PER)
            t->seen[t->n] = t->val;
        t->n++;
    }
}

static void order_task_drop(pn_future *f)
{
    order_task *t = (order_task *)f;
    if (t->active)
        pn_future_drop(&t->recv.base);
}

static const pn_future_vtable order_task_vt = { order_task_poll, order_task_drop, "order" };

typedef struct tagged_arg {
    pn_broadcast_tx *tx;
    int tag;
} tagged_arg;

static void *tagged_sender(void *arg)
{
    tagged_arg *a = arg;
    for (int i = 0; i < ORDER_PER; i++) {
        int v = a->tag << 24 | i;
        if (pn_broadcast_send(a->tx, &v) <= 0)
            abort();
    }
    pn_broadcast_tx_free(a->tx);
    return NULL;
}

/* Two threads send at once into a ring that holds everything: every
 * receiver task sees all 2N values, each thread's in its own order, and
 * all receivers see the same interleaving (the ring is one order). */
Test(broadcast, two_sender_threads_every_receiver_sees_one_order)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    pn_broadcast_tx *tx;
    pn_broadcast_rx *first;
    cr_assert_eq(pn_broadcast_new(2 * ORDER_PER, sizeof(int), &tx, &first), 0);
    pn_join_handle *h[ORDER_RX];
    pn_broadcast_rx *rx[ORDER_RX];
    int *seen[ORDER_RX];
    for (int i = 0; i < ORDER_RX; i++) {
        cr_assert_eq(pn_broadcast_rx_clone(first, &rx[i]), 0);
        seen[i] = calloc(2 * ORDER_PER, sizeof(int));
        order_task t = { .base = { &order_task_vt }, .rx = rx[i], .seen = seen[i] };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    pn_broadcast_rx_free(first);
    tagged_arg a = { pn_broadcast_tx_clone(tx), 1 }, b = { tx, 2 };
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, tagged_sender, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, tagged_sender, &b), 0);
    for (int i = 0; i < ORDER_RX; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        order_task *t = j.output;
        cr_assert_eq(t->final, -EPIPE);
        cr_assert_eq(t->n, 2 * ORDER_PER);
        int next[3] = { 0, 0, 0 };
        for (int k = 0; k < 2 * ORDER_PER; k++) {
            int tag = seen[i][k] >> 24, seq = seen[i][k] & 0xffffff;
            cr_assert(tag == 1 || tag == 2);
            cr_assert_eq(seq, next[tag], "receiver %d: thread %d's values out of order", i, tag);
            next[tag]++;
        }
        if (i > 0)
            cr_assert_arr_eq(seen[i], seen[0], 2 * ORDER_PER * sizeof(int),
                             "receivers saw different interleavings");
        pn_join_handle_free(h[i]);
        pn_broadcast_rx_free(rx[i]);
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    for (int i = 0; i < ORDER_RX; i++)
        free(seen[i]);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
