/*
 * test_oneshot.c - pn_oneshot (pollen/channel.h): one value from one
 * sender to one receiver.
 *
 * Checked: send then recv, and recv pending then send (from a task and
 * from a plain thread, both runtimes); a sender freed without sending
 * gives -EPIPE; a send to a freed receiver gives -EPIPE and frees the
 * sender; try_recv's -EAGAIN / 0 / -EPIPE; blocking_recv on a thread and
 * -EDEADLK inside a task; a dropped pending recv keeps no waker and a new
 * recv gets the value; the sender's closed future and tx_is_closed (by
 * hand, and a task woken when a thread frees the receiver);
 * -EINVAL; and a thread race of send / tx_free / rx_free against a
 * receiving task (ASan, TSan: no leak, no race).
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "pollen/channel.h"

TestSuite(oneshot, .timeout = PN_TEST_TIMEOUT);

static pn_poll poll_probe(pn_future *f, waker_probe *p)
{
    pn_waker w = { p, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .budget = 1000 };
    return pn_future_poll(f, &cx);
}

BOTH(oneshot, send_then_recv)
{
    pn_runtime *rt = flavour_new(fl);
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(long), &tx, &rx), 0);
    long v = 12345, got = 0;
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
    AWAIT(rt, r);
    cr_assert_eq(r.res, 0);
    cr_assert_eq(got, 12345);
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), -EPIPE, "received already");
    pn_oneshot_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* A task that sends after yielding a few times. */
typedef struct sender_task {
    pn_future base;
    pn_oneshot_tx *tx;
    int yields;
    long value;
    int status;
} sender_task;

static pn_poll sender_task_poll(pn_future *f, pn_cx *cx)
{
    sender_task *s = (sender_task *)f;
    if (s->yields-- > 0) {
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    s->status = s->value < 0 ? (pn_oneshot_tx_free(s->tx), 0) : pn_oneshot_send(s->tx, &s->value);
    return PN_READY;
}

static const pn_future_vtable sender_task_vt = { sender_task_poll, NULL, "sender_task" };

BOTH(oneshot, recv_waits_for_a_task_send)
{
    pn_runtime *rt = flavour_new(fl);
    for (int i = 0; i < 50; i++) {
        pn_oneshot_tx *tx;
        pn_oneshot_rx *rx;
        cr_assert_eq(pn_oneshot_new(sizeof(long), &tx, &rx), 0);
        sender_task s = { { &sender_task_vt }, tx, i % 5, i, -1 };
        pn_join_handle *h;
        cr_assert_eq(PN_SPAWN(rt, s, &h), 0);
        long got = -1;
        pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
        AWAIT(rt, r);
        cr_assert_eq(r.res, 0);
        cr_assert_eq(got, i);
        pn_join_future j = pn_join(h);
        AWAIT(rt, j);
        cr_assert_eq(((sender_task *)j.output)->status, 0);
        pn_join_handle_free(h);
        pn_oneshot_rx_free(rx);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(oneshot, a_sender_freed_without_sending_wakes_recv_with_epipe)
{
    pn_runtime *rt = flavour_new(fl);
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(4, &tx, &rx), 0);
    sender_task s = { { &sender_task_vt }, tx, 3, -1, -1 };
    cr_assert_eq(PN_SPAWN(rt, s, NULL), 0);
    int got = 7;
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
    AWAIT(rt, r);
    cr_assert_eq(r.res, -EPIPE);
    cr_assert_eq(got, 7, "nothing written");
    pn_oneshot_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

typedef struct thread_send {
    pn_oneshot_tx *tx;
    long value;
    int spins;
    int status;
} thread_send;

static void *send_thread(void *arg)
{
    thread_send *t = arg;
    for (int i = 0; i < t->spins; i++)
        sched_yield();
    if (t->value < 0) {
        pn_oneshot_tx_free(t->tx);
        t->status = 0;
    } else {
        t->status = pn_oneshot_send(t->tx, &t->value);
    }
    return NULL;
}

BOTH(oneshot, a_thread_send_always_wakes_the_receiving_task)
{
    pn_runtime *rt = flavour_new(fl);
    for (int i = 0; i < 300; i++) {
        pn_oneshot_tx *tx;
        pn_oneshot_rx *rx;
        cr_assert_eq(pn_oneshot_new(sizeof(long), &tx, &rx), 0);
        thread_send t = { tx, i % 7 == 0 ? -1 : i, i % 13, -1 };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, send_thread, &t), 0);
        long got = -1;
        pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
        AWAIT(rt, r);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(t.status, 0);
        if (i % 7 == 0) {
            cr_assert_eq(r.res, -EPIPE);
        } else {
            cr_assert_eq(r.res, 0);
            cr_assert_eq(got, i);
        }
        pn_oneshot_rx_free(rx);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(oneshot, a_send_to_a_freed_receiver_gives_epipe_and_frees_the_sender)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(8, &tx, &rx), 0);
    cr_assert_not(pn_oneshot_tx_is_closed(tx));
    pn_oneshot_rx_free(rx);
    cr_assert(pn_oneshot_tx_is_closed(tx));
    long v = 1;
    cr_assert_eq(pn_oneshot_send(tx, &v), -EPIPE);   /* tx is freed: ASan checks */
}

Test(oneshot, a_value_never_received_is_freed_with_the_receiver)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(8, &tx, &rx), 0);
    long v = 1;
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    pn_oneshot_rx_free(rx);
    cr_assert_eq(pn_oneshot_new(8, &tx, &rx), 0);
    pn_oneshot_tx_free(tx);
    pn_oneshot_rx_free(rx);
}

Test(oneshot, try_recv_says_eagain_then_gives_the_value_then_epipe)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    int got = 0, v = 9;
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), -EAGAIN);
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), 0);
    cr_assert_eq(got, 9);
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), -EPIPE);
    pn_oneshot_rx_free(rx);

    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    pn_oneshot_tx_free(tx);
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), -EPIPE);
    pn_oneshot_rx_free(rx);
}

Test(oneshot, bad_arguments_give_einval)
{
    pn_oneshot_tx *tx = (pn_oneshot_tx *)1;
    pn_oneshot_rx *rx = (pn_oneshot_rx *)1;
    cr_assert_eq(pn_oneshot_new(0, &tx, &rx), -EINVAL);
    cr_assert_null(tx);
    cr_assert_null(rx);
    cr_assert_eq(pn_oneshot_new(4, NULL, &rx), -EINVAL);
    cr_assert_eq(pn_oneshot_new(4, &tx, &rx), 0);
    int v = 0;
    cr_assert_eq(pn_oneshot_send(NULL, &v), -EINVAL);
    cr_assert_eq(pn_oneshot_send(tx, NULL), -EINVAL, "tx is kept");
    cr_assert_eq(pn_oneshot_try_recv(NULL, &v), -EINVAL);
    cr_assert_eq(pn_oneshot_try_recv(rx, NULL), -EINVAL);
    waker_probe p = { 0 };
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, NULL);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EINVAL);
    pn_oneshot_closed_future c = pn_oneshot_closed(NULL);
    cr_assert_eq(poll_probe(&c.base, &p), PN_READY);
    cr_assert_eq(c.res, -EINVAL);
    cr_assert(pn_oneshot_tx_is_closed(NULL));
    pn_oneshot_tx_free(NULL);
    pn_oneshot_rx_free(NULL);
    pn_oneshot_tx_free(tx);
    pn_oneshot_rx_free(rx);
}

Test(oneshot, a_dropped_pending_recv_keeps_nothing_and_a_new_recv_gets_the_value)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    waker_probe p = { 0 };
    int got = 0, v = 77;
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    cr_assert_eq(waker_probe_held(&p), 1);
    pn_future_drop(&r.base);
    cr_assert_eq(waker_probe_held(&p), 0, "the drop gave the waker back");
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    cr_assert_eq(atomic_load(&p.wakes), 0, "nobody waits: no wake");
    pn_oneshot_recv_future r2 = pn_oneshot_recv(rx, &got);
    cr_assert_eq(poll_probe(&r2.base, &p), PN_READY);
    cr_assert_eq(r2.res, 0);
    cr_assert_eq(got, 77);
    pn_oneshot_rx_free(rx);
}

Test(oneshot, a_pending_recv_is_woken_once_by_the_send)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    waker_probe p = { 0 };
    int got = 0, v = 5;
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    cr_assert_eq(atomic_load(&p.clones), 1, "one task's waker is kept once");
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(got, 5);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_oneshot_rx_free(rx);
}

Test(oneshot, closed_is_ready_when_the_receiver_goes)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    waker_probe p = { 0 };
    pn_oneshot_closed_future c = pn_oneshot_closed(tx);
    cr_assert_eq(poll_probe(&c.base, &p), PN_PENDING);
    pn_oneshot_rx_free(rx);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&c.base, &p), PN_READY);
    cr_assert_eq(c.res, 0);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_oneshot_tx_free(tx);

    /* Dropped while pending: the waker goes back; the send still works. */
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    waker_probe q = { 0 };
    pn_oneshot_closed_future c2 = pn_oneshot_closed(tx);
    cr_assert_eq(poll_probe(&c2.base, &q), PN_PENDING);
    pn_future_drop(&c2.base);
    cr_assert_eq(waker_probe_held(&q), 0);
    int v = 3, got = 0;
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), 0);
    cr_assert_eq(got, 3);
    pn_oneshot_rx_free(rx);
}

/* ---- blocking_recv ----------------------------------------------------------- */

static void *blocking_recv_thread(void *arg)
{
    pn_oneshot_rx *rx = arg;
    long got = -1;
    int err = pn_oneshot_blocking_recv(rx, &got);
    return (void *)(intptr_t)(err ? err : got);
}

Test(oneshot, blocking_recv_on_a_thread_gets_the_value)
{
    for (int i = 0; i < 100; i++) {
        pn_oneshot_tx *tx;
        pn_oneshot_rx *rx;
        cr_assert_eq(pn_oneshot_new(sizeof(long), &tx, &rx), 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, blocking_recv_thread, rx), 0);
        for (int k = 0; k < i % 5; k++)
            sched_yield();
        long v = 1000 + i;
        cr_assert_eq(pn_oneshot_send(tx, &v), 0);
        void *res;
        pthread_join(th, &res);
        cr_assert_eq((intptr_t)res, 1000 + i);
        pn_oneshot_rx_free(rx);
    }
}

typedef struct blocking_in_task {
    pn_future base;
    pn_oneshot_rx *rx;
    int status;
} blocking_in_task;

static pn_poll blocking_in_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    blocking_in_task *b = (blocking_in_task *)f;
    long got;
    b->status = pn_oneshot_blocking_recv(b->rx, &got);
    return PN_READY;
}

static const pn_future_vtable blocking_in_task_vt = { blocking_in_task_poll, NULL, "blocking_in_task" };

BOTH(oneshot, blocking_recv_inside_a_task_gives_edeadlk)
{
    pn_runtime *rt = flavour_new(fl);
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(long), &tx, &rx), 0);
    blocking_in_task b = { { &blocking_in_task_vt }, rx, 1 };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(((blocking_in_task *)j.output)->status, -EDEADLK);
    pn_join_handle_free(h);
    long v = 4, got;
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    cr_assert_eq(pn_oneshot_try_recv(rx, &got), 0, "the blocked recv took nothing");
    pn_oneshot_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- handles going on two threads at once ------------------------------------- */

static void *rx_free_thread(void *arg)
{
    pn_oneshot_rx_free(arg);
    return NULL;
}

Test(oneshot, send_racing_rx_free_frees_everything_once)
{
    for (int i = 0; i < 2000; i++) {
        pn_oneshot_tx *tx;
        pn_oneshot_rx *rx;
        cr_assert_eq(pn_oneshot_new(sizeof(long), &tx, &rx), 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, rx_free_thread, rx), 0);
        long v = i;
        int err;
        if (i % 2)
            err = pn_oneshot_send(tx, &v);
        else
            pn_oneshot_tx_free(tx), err = 0;
        cr_assert(err == 0 || err == -EPIPE);
        pthread_join(th, NULL);
    }
}

static void *rx_free_later(void *arg)
{
    for (int i = 0; i < (int)(((uintptr_t)arg >> 4) % 50); i++)
        sched_yield();
    pn_oneshot_rx_free(arg);
    return NULL;
}

BOTH(oneshot, a_task_awaiting_closed_is_woken_when_a_thread_frees_the_receiver)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 100; round++) {
        pn_oneshot_tx *tx;
        pn_oneshot_rx *rx;
        cr_assert_eq(pn_oneshot_new(8, &tx, &rx), 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, rx_free_later, rx), 0);
        pn_oneshot_closed_future c = pn_oneshot_closed(tx);
        AWAIT(rt, c);
        cr_assert_eq(c.res, 0);
        pthread_join(th, NULL);
        cr_assert(pn_oneshot_tx_is_closed(tx));
        pn_oneshot_tx_free(tx);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}
