/*
 * test_mpsc.c - pn_mpsc (pollen/channel.h): many senders, one receiver.
 *
 * Suite mpsc, one behaviour each, mostly polled by hand with a probe
 * waker (so who is woken, and what is held, is checked exactly):
 * try_send / try_recv and the counts; a send waits for room and waiting
 * senders are served in order (a newcomer does not overtake); a dropped
 * send that was granted a slot passes it on, also when the drop comes
 * between the grant and the wake (point "mpsc.granted"); reserve holds a
 * slot, permit_send uses it, dropping a READY reserve gives it back;
 * a dropped pending recv loses nothing, also after a send handed it its
 * value (put back first in line, bounded and unbounded); a send while
 * senders wait is queued, not handed over; recv_many takes a batch and grants
 * more waiters than one wake list holds; the last sender's free drains
 * then -EPIPE; rx_close and rx_free against waiting senders, permits and
 * queued values; the senders' closed future (by hand, and a task woken
 * by a thread's close); unbounded growth; blocking_* on threads and
 * -EDEADLK in a task; tasks on both runtimes, senders on plain threads.
 *
 * Suite mpsc_stress: producers (tasks and threads; plain sends, reserves,
 * sends dropped while pending at random) into one consumer task, checking
 * that every value arrives exactly once and in per-producer order; close
 * races (rx_close from the consumer or another thread, rx_free) where the
 * values received must be exactly the sends that reported success.
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "pollen/channel.h"
#include "core/chaos.h"

static void mpsc_fini(void) { pn__point_set_hook(NULL); }

TestSuite(mpsc, .timeout = PN_TEST_TIMEOUT, .fini = mpsc_fini);
TestSuite(mpsc_stress, .timeout = PN_TIMEOUT(60), .fini = mpsc_fini);

static pn_poll poll_probe(pn_future *f, waker_probe *p)
{
    pn_waker w = { p, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .budget = 1000 };
    return pn_future_poll(f, &cx);
}

static void new_bounded(size_t cap, pn_mpsc_tx **tx, pn_mpsc_rx **rx)
{
    cr_assert_eq(pn_mpsc_new(cap, sizeof(long), tx, rx), 0);
}

/* ---- the basics ----------------------------------------------------------------- */

Test(mpsc, bad_arguments_give_einval)
{
    pn_mpsc_tx *tx = (pn_mpsc_tx *)1;
    pn_mpsc_rx *rx = (pn_mpsc_rx *)1;
    cr_assert_eq(pn_mpsc_new(0, 8, &tx, &rx), -EINVAL);
    cr_assert_null(tx);
    cr_assert_null(rx);
    cr_assert_eq(pn_mpsc_new(4, 0, &tx, &rx), -EINVAL);
    cr_assert_eq(pn_mpsc_new(SIZE_MAX / 2, 16, &tx, &rx), -EINVAL, "size overflows");
    cr_assert_eq(pn_mpsc_new(4, 8, NULL, &rx), -EINVAL);
    cr_assert_eq(pn_mpsc_unbounded_new(0, &tx, &rx), -EINVAL);
    new_bounded(2, &tx, &rx);
    long v = 0;
    waker_probe p = { 0 };
    cr_assert_eq(pn_mpsc_try_send(NULL, &v), -EINVAL);
    cr_assert_eq(pn_mpsc_try_send(tx, NULL), -EINVAL);
    cr_assert_eq(pn_mpsc_unbounded_send(tx, &v), -EINVAL, "a bounded channel");
    cr_assert_eq(pn_mpsc_try_recv(NULL, &v), -EINVAL);
    cr_assert_eq(pn_mpsc_try_recv(rx, NULL), -EINVAL);
    pn_mpsc_send_future s = pn_mpsc_send(tx, NULL);
    cr_assert_eq(poll_probe(&s.base, &p), PN_READY);
    cr_assert_eq(s.res, -EINVAL);
    pn_mpsc_recv_future r = pn_mpsc_recv_many(rx, &v, 0);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EINVAL);
    cr_assert_eq(pn_mpsc_permit_send(NULL, &v), -EINVAL);
    pn_mpsc_reserve_future unused = pn_mpsc_reserve(tx);
    cr_assert_eq(pn_mpsc_permit_send(&unused, &v), -EINVAL, "not READY: no permit");
    cr_assert_null(pn_mpsc_tx_clone(NULL));
    cr_assert(pn_mpsc_tx_is_closed(NULL));
    cr_assert_eq(pn_mpsc_len(NULL), 0);
    cr_assert_eq(pn_mpsc_capacity(NULL), 0);
    pn_mpsc_tx_free(NULL);
    pn_mpsc_rx_free(NULL);
    pn_mpsc_rx_close(NULL);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

Test(mpsc, try_send_and_try_recv_keep_fifo_order_and_the_counts)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(3, &tx, &rx);
    cr_assert_eq(pn_mpsc_max_capacity(tx), 3);
    long got;
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), -EAGAIN);
    for (int round = 0; round < 5; round++) {  /* the ring wraps */
        for (long i = 0; i < 3; i++) {
            long v = round * 10 + i;
            cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
        }
        long v = 99;
        cr_assert_eq(pn_mpsc_try_send(tx, &v), -EAGAIN, "full");
        cr_assert_eq(pn_mpsc_len(rx), 3);
        cr_assert_eq(pn_mpsc_capacity(tx), 0);
        for (long i = 0; i < 2; i++) {
            cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
            cr_assert_eq(got, round * 10 + i);
        }
        cr_assert_eq(pn_mpsc_capacity(tx), 2);
        cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
        cr_assert_eq(got, round * 10 + 2);
        cr_assert_eq(pn_mpsc_len(rx), 0);
    }
    pn_mpsc_tx_free(tx);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), -EPIPE, "no sender left");
    pn_mpsc_rx_free(rx);
}

/* ---- waiting senders ---------------------------------------------------------------- */

Test(mpsc, a_send_waits_for_room_and_waiting_senders_are_served_in_order)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(1, &tx, &rx);
    long v0 = 0, v1 = 1, v2 = 2, v3 = 3, got;
    cr_assert_eq(pn_mpsc_try_send(tx, &v0), 0);
    waker_probe pa = { 0 }, pb = { 0 };
    pn_mpsc_send_future a = pn_mpsc_send(tx, &v1), b = pn_mpsc_send(tx, &v2);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_PENDING);
    cr_assert_eq(poll_probe(&b.base, &pb), PN_PENDING);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_PENDING, "a spurious poll keeps its place");
    cr_assert_eq(atomic_load(&pa.clones), 1);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 0);
    cr_assert_eq(atomic_load(&pa.wakes), 1, "the first waiter is granted the slot");
    cr_assert_eq(atomic_load(&pb.wakes), 0);
    cr_assert_eq(pn_mpsc_try_send(tx, &v3), -EAGAIN, "the granted slot is not for newcomers");
    cr_assert_eq(poll_probe(&b.base, &pb), PN_PENDING);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_READY);
    cr_assert_eq(a.res, 0);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 1);
    cr_assert_eq(atomic_load(&pb.wakes), 1);
    cr_assert_eq(poll_probe(&b.base, &pb), PN_READY);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 2);
    cr_assert_eq(waker_probe_held(&pa), 0);
    cr_assert_eq(waker_probe_held(&pb), 0);
    pn_future_drop(&a.base);               /* READY: no-op */
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

Test(mpsc, a_dropped_send_that_was_granted_a_slot_passes_it_on)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(1, &tx, &rx);
    long v0 = 0, v1 = 1, v2 = 2, got;
    cr_assert_eq(pn_mpsc_try_send(tx, &v0), 0);
    waker_probe pa = { 0 }, pb = { 0 };
    pn_mpsc_send_future a = pn_mpsc_send(tx, &v1), b = pn_mpsc_send(tx, &v2);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_PENDING);
    cr_assert_eq(poll_probe(&b.base, &pb), PN_PENDING);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(atomic_load(&pa.wakes), 1);
    pn_future_drop(&a.base);               /* granted, never used */
    cr_assert_eq(atomic_load(&pb.wakes), 1, "the slot went to the next waiter");
    cr_assert_eq(poll_probe(&b.base, &pb), PN_READY);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 2, "a's value was not sent");
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), -EAGAIN);
    cr_assert_eq(waker_probe_held(&pa), 0);
    cr_assert_eq(waker_probe_held(&pb), 0);

    /* A dropped send that was not granted: just leaves the queue. */
    cr_assert_eq(pn_mpsc_try_send(tx, &v0), 0);
    pn_mpsc_send_future c = pn_mpsc_send(tx, &v1);
    cr_assert_eq(poll_probe(&c.base, &pa), PN_PENDING);
    pn_future_drop(&c.base);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(pn_mpsc_capacity(tx), 1, "no slot is left reserved");
    cr_assert_eq(waker_probe_held(&pa), 0);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

/* The window between "the receiver granted a slot to a waiting sender"
 * and "that sender's task was woken": the sender's owner drops it right
 * there.  The slot must reach the next waiter, or it is lost for good
 * (the channel would stay full with nobody to fill it). */
static pn_mpsc_send_future *drop_at_grant;
static _Atomic int grant_hits;

static void drop_when_granted(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "mpsc.granted") || !drop_at_grant)
        return;
    atomic_fetch_add(&grant_hits, 1);
    pn_mpsc_send_future *f = drop_at_grant;
    drop_at_grant = NULL;
    pn_future_drop(&f->base);
}

Test(mpsc, a_send_dropped_between_grant_and_wake_passes_the_slot_on)
{
    for (int reserve = 0; reserve < 2; reserve++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        new_bounded(1, &tx, &rx);
        long v0 = 0, v1 = 1, v2 = 2, got;
        cr_assert_eq(pn_mpsc_try_send(tx, &v0), 0);
        waker_probe pa = { 0 }, pb = { 0 };
        pn_mpsc_send_future a = reserve ? pn_mpsc_reserve(tx) : pn_mpsc_send(tx, &v1);
        pn_mpsc_send_future b = pn_mpsc_send(tx, &v2);
        cr_assert_eq(poll_probe(&a.base, &pa), PN_PENDING);
        cr_assert_eq(poll_probe(&b.base, &pb), PN_PENDING);
        drop_at_grant = &a;
        atomic_store(&grant_hits, 0);
        pn__point_set_hook(drop_when_granted);
        pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
        cr_assert_eq(poll_probe(&r.base, &pa), PN_READY);
        pn__point_set_hook(NULL);
        cr_assert_geq(atomic_load(&grant_hits), 1, "the window was reached");
        cr_assert_null(drop_at_grant);
        cr_assert_eq(atomic_load(&pb.wakes), 1, "b got the slot a dropped");
        cr_assert_eq(poll_probe(&b.base, &pb), PN_READY);
        cr_assert_eq(b.res, 0);
        cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
        cr_assert_eq(got, 2);
        cr_assert_eq(waker_probe_held(&pb), 0);
        cr_assert_eq(waker_probe_held(&pa), 0, "a's wake after its drop consumed the clone");
        cr_assert_eq(pn_mpsc_capacity(tx), 1);
        pn_mpsc_tx_free(tx);
        pn_mpsc_rx_free(rx);
    }
}

/* ---- reserve ---------------------------------------------------------------------------- */

Test(mpsc, a_ready_reserve_holds_a_slot_until_sent_or_dropped)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(2, &tx, &rx);
    waker_probe p = { 0 };
    long v1 = 1, v2 = 2, v3 = 3, got;
    pn_mpsc_reserve_future r = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, 0);
    cr_assert_eq(pn_mpsc_capacity(tx), 1);
    cr_assert_eq(pn_mpsc_try_send(tx, &v1), 0);
    cr_assert_eq(pn_mpsc_try_send(tx, &v2), -EAGAIN, "the permit holds the other slot");
    cr_assert_eq(pn_mpsc_permit_send(&r, &v3), 0);
    cr_assert_eq(pn_mpsc_permit_send(&r, &v3), -EINVAL, "used up");
    pn_future_drop(&r.base);               /* used: no-op */
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 1);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 3);
    cr_assert_eq(pn_mpsc_capacity(tx), 2);

    /* Dropped or released when READY: the slot comes back. */
    pn_mpsc_reserve_future r2 = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&r2.base, &p), PN_READY);
    cr_assert_eq(pn_mpsc_capacity(tx), 1);
    pn_future_drop(&r2.base);
    cr_assert_eq(pn_mpsc_capacity(tx), 2);
    pn_future_drop(&r2.base);              /* released: no-op */
    cr_assert_eq(pn_mpsc_capacity(tx), 2);
    pn_mpsc_reserve_future r3;
    cr_assert_eq(pn_mpsc_try_reserve(tx, &r3), 0);
    pn_mpsc_reserve_future r4;
    cr_assert_eq(pn_mpsc_try_reserve(tx, &r4), 0);
    pn_mpsc_reserve_future r5;
    cr_assert_eq(pn_mpsc_try_reserve(tx, &r5), -EAGAIN);
    pn_mpsc_permit_release(&r3);
    pn_mpsc_permit_release(&r3);
    cr_assert_eq(pn_mpsc_permit_send(&r4, &v2), 0);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 2);
    cr_assert_eq(waker_probe_held(&p), 0);
    cr_assert_eq(pn_mpsc_capacity(tx), 2);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

Test(mpsc, a_dropped_ready_reserve_gives_its_slot_to_the_next_waiting_sender)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(1, &tx, &rx);
    waker_probe pr = { 0 }, pa = { 0 }, pc = { 0 };
    long v = 7, got;
    pn_mpsc_reserve_future r = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&r.base, &pr), PN_READY);
    pn_mpsc_send_future a = pn_mpsc_send(tx, &v);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_PENDING);
    pn_mpsc_reserve_future c = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&c.base, &pc), PN_PENDING);
    pn_future_drop(&r.base);
    cr_assert_eq(atomic_load(&pa.wakes), 1);
    cr_assert_eq(atomic_load(&pc.wakes), 0);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_READY);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 7);
    cr_assert_eq(atomic_load(&pc.wakes), 1, "the pending reserve is granted next");
    cr_assert_eq(poll_probe(&c.base, &pc), PN_READY);
    cr_assert_eq(c.res, 0);
    pn_mpsc_permit_release(&c);
    cr_assert_eq(pn_mpsc_capacity(tx), 1);
    cr_assert_eq(waker_probe_held(&pr) + waker_probe_held(&pa) + waker_probe_held(&pc), 0);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

/* ---- receiving ---------------------------------------------------------------------------- */

Test(mpsc, a_dropped_pending_recv_loses_nothing_and_a_new_recv_gets_the_value)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(4, &tx, &rx);
    waker_probe p = { 0 }, q = { 0 };
    long got = -1, v = 5;
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    pn_future_drop(&r.base);
    cr_assert_eq(waker_probe_held(&p), 0);
    cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
    cr_assert_eq(atomic_load(&p.wakes), 0, "nobody waits: no wake");
    pn_mpsc_recv_future r2 = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r2.base, &q), PN_READY);
    cr_assert_eq(r2.res, 0);
    cr_assert_eq(got, 5);

    /* A pending recv is woken once by a send, and gets the value. */
    pn_mpsc_recv_future r3 = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r3.base, &q), PN_PENDING);
    v = 6;
    cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
    v = 8;
    cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
    cr_assert_eq(atomic_load(&q.wakes), 1);
    cr_assert_eq(poll_probe(&r3.base, &q), PN_READY);
    cr_assert_eq(got, 6);
    cr_assert_eq(pn_mpsc_len(rx), 1);
    cr_assert_eq(waker_probe_held(&q), 0);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);                    /* discards the 8 */
}

/* A send hands its value straight to a receive waiting on an empty ring
 * (into its out).  If that receive is dropped before it sees it, the value
 * goes back first in line, ahead of what was sent after it, even when the
 * ring is full meanwhile (bounded) or must grow (unbounded). */
Test(mpsc, a_dropped_recv_that_was_handed_a_value_puts_it_back_first)
{
    for (int unbounded = 0; unbounded < 2; unbounded++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        if (unbounded)
            cr_assert_eq(pn_mpsc_unbounded_new(sizeof(long), &tx, &rx), 0);
        else
            new_bounded(1, &tx, &rx);
        int more = unbounded ? 40 : 1;      /* past the unbounded ring's growth */
        waker_probe p = { 0 };
        long out = -1, got;
        pn_mpsc_recv_future r = pn_mpsc_recv(rx, &out);
        cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
        long v = 100;
        cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
        cr_assert_eq(atomic_load(&p.wakes), 1);
        for (long i = 0; i < more; i++) {
            v = 101 + i;
            cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
        }
        if (!unbounded)
            cr_assert_eq(pn_mpsc_try_send(tx, &v), -EAGAIN, "full");
        pn_future_drop(&r.base);            /* handed 100, never polled */
        cr_assert_eq(waker_probe_held(&p), 0);
        cr_assert_eq(pn_mpsc_len(rx), (size_t)more + 1);
        for (long i = 0; i <= more; i++) {
            cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
            cr_assert_eq(got, 100 + i, "in order, the put-back value first");
        }
        cr_assert_eq(pn_mpsc_try_recv(rx, &got), -EAGAIN);

        /* And when it is polled: READY with the value, count 1. */
        pn_mpsc_recv_future r2 = pn_mpsc_recv_many(rx, &out, 1);
        cr_assert_eq(poll_probe(&r2.base, &p), PN_PENDING);
        v = 7;
        cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
        cr_assert_eq(pn_mpsc_len(rx), 0, "handed over, not queued");
        cr_assert_eq(poll_probe(&r2.base, &p), PN_READY);
        cr_assert_eq(r2.res, 0);
        cr_assert_eq(r2.count, 1);
        cr_assert_eq(out, 7);
        pn_future_drop(&r2.base);           /* READY: no-op */
        cr_assert_eq(pn_mpsc_try_recv(rx, &got), -EAGAIN);
        cr_assert_eq(waker_probe_held(&p), 0);
        pn_mpsc_tx_free(tx);
        pn_mpsc_rx_free(rx);
    }
}

/* A value sent while other senders wait for a slot goes through the ring,
 * not to the waiting receive: a hand-over would free the sender's slot and
 * nobody would grant it to the waiters. */
Test(mpsc, a_value_sent_while_senders_wait_is_queued_so_they_are_granted)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(1, &tx, &rx);
    waker_probe pr = { 0 }, ps = { 0 }, pv = { 0 };
    long v1 = 1, v2 = 2, out = -1;
    pn_mpsc_reserve_future held = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&held.base, &pr), PN_READY);
    pn_mpsc_send_future s = pn_mpsc_send(tx, &v2);
    cr_assert_eq(poll_probe(&s.base, &ps), PN_PENDING);
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, &out);
    cr_assert_eq(poll_probe(&r.base, &pv), PN_PENDING);
    cr_assert_eq(pn_mpsc_permit_send(&held, &v1), 0);
    cr_assert_eq(atomic_load(&pv.wakes), 1);
    cr_assert_eq(pn_mpsc_len(rx), 1, "queued, not handed over");
    cr_assert_eq(poll_probe(&r.base, &pv), PN_READY);
    cr_assert_eq(out, 1);
    cr_assert_eq(atomic_load(&ps.wakes), 1, "the waiting sender got the slot");
    cr_assert_eq(poll_probe(&s.base, &ps), PN_READY);
    cr_assert_eq(pn_mpsc_try_recv(rx, &out), 0);
    cr_assert_eq(out, 2);
    cr_assert_eq(waker_probe_held(&pr) + waker_probe_held(&ps) + waker_probe_held(&pv), 0);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

Test(mpsc, recv_many_takes_a_batch_and_grants_every_freed_slot)
{
    enum { CAP = 40 };
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(CAP, &tx, &rx);
    long vals[CAP], more[CAP], out[CAP + 5];
    for (long i = 0; i < CAP; i++) {
        vals[i] = i;
        more[i] = 100 + i;
        cr_assert_eq(pn_mpsc_try_send(tx, &vals[i]), 0);
    }
    /* More waiting senders than one wake list holds (32). */
    waker_probe p = { 0 };
    pn_mpsc_send_future s[CAP];
    for (int i = 0; i < CAP; i++) {
        s[i] = pn_mpsc_send(tx, &more[i]);
        cr_assert_eq(poll_probe(&s[i].base, &p), PN_PENDING);
    }
    pn_mpsc_recv_future r = pn_mpsc_recv_many(rx, out, 7);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.count, 7);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(out[i], i);
    cr_assert_eq(atomic_load(&p.wakes), 7, "one grant per freed slot");
    r = pn_mpsc_recv_many(rx, out, CAP + 5);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.count, CAP - 7);
    for (int i = 0; i < CAP - 7; i++)
        cr_assert_eq(out[i], 7 + i);
    cr_assert_eq(atomic_load(&p.wakes), CAP, "every waiter granted, past the wake list's size");
    for (int i = 0; i < CAP; i++) {
        cr_assert_eq(poll_probe(&s[i].base, &p), PN_READY);
        cr_assert_eq(s[i].res, 0);
    }
    r = pn_mpsc_recv_many(rx, out, CAP + 5);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.count, CAP);
    for (int i = 0; i < CAP; i++)
        cr_assert_eq(out[i], 100 + i, "in the order the senders queued");
    pn_mpsc_tx_free(tx);
    r = pn_mpsc_recv_many(rx, out, 3);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EPIPE);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_mpsc_rx_free(rx);
}

Test(mpsc, the_last_sender_gone_the_receiver_drains_then_gets_epipe)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(4, &tx, &rx);
    pn_mpsc_tx *tx2 = pn_mpsc_tx_clone(tx);
    waker_probe p = { 0 };
    long got, v = 1;
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    pn_mpsc_tx_free(tx);
    cr_assert_eq(atomic_load(&p.wakes), 0, "a sender remains");
    cr_assert_eq(pn_mpsc_try_send(tx2, &v), 0);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    v = 2;
    cr_assert_eq(pn_mpsc_try_send(tx2, &v), 0);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(got, 1);
    pn_mpsc_tx_free(tx2);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
    cr_assert_eq(got, 2);
    r = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EPIPE);
    pn_mpsc_rx_free(rx);

    /* A pending recv is woken by the last sender's free. */
    new_bounded(4, &tx, &rx);
    r = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    pn_mpsc_tx_free(tx);
    cr_assert_eq(atomic_load(&p.wakes), 2);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EPIPE);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_mpsc_rx_free(rx);
}

/* ---- closing ---------------------------------------------------------------------------- */

Test(mpsc, rx_close_fails_waiting_senders_and_permits_and_keeps_queued_values)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(2, &tx, &rx);
    waker_probe pa = { 0 }, pb = { 0 }, pr = { 0 };
    long v1 = 1, v2 = 2, got;
    pn_mpsc_reserve_future held = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&held.base, &pr), PN_READY);
    cr_assert_eq(pn_mpsc_try_send(tx, &v1), 0);
    pn_mpsc_send_future a = pn_mpsc_send(tx, &v2);
    pn_mpsc_reserve_future b = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_PENDING);
    cr_assert_eq(poll_probe(&b.base, &pb), PN_PENDING);
    cr_assert_not(pn_mpsc_tx_is_closed(tx));
    pn_mpsc_rx_close(rx);
    pn_mpsc_rx_close(rx);                   /* idempotent */
    cr_assert(pn_mpsc_tx_is_closed(tx));
    cr_assert_eq(atomic_load(&pa.wakes), 1);
    cr_assert_eq(atomic_load(&pb.wakes), 1);
    cr_assert_eq(poll_probe(&a.base, &pa), PN_READY);
    cr_assert_eq(a.res, -EPIPE);
    cr_assert_eq(poll_probe(&b.base, &pb), PN_READY);
    cr_assert_eq(b.res, -EPIPE);
    pn_future_drop(&b.base);                /* failed reserve: holds nothing */
    cr_assert_eq(pn_mpsc_permit_send(&held, &v2), -EPIPE);
    cr_assert_eq(pn_mpsc_try_send(tx, &v2), -EPIPE);
    pn_mpsc_reserve_future t;
    cr_assert_eq(pn_mpsc_try_reserve(tx, &t), -EPIPE);
    pn_mpsc_send_future late = pn_mpsc_send(tx, &v2);
    cr_assert_eq(poll_probe(&late.base, &pa), PN_READY);
    cr_assert_eq(late.res, -EPIPE);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0, "queued values are still received");
    cr_assert_eq(got, 1);
    cr_assert_eq(pn_mpsc_try_recv(rx, &got), -EPIPE);
    cr_assert_eq(waker_probe_held(&pa) + waker_probe_held(&pb) + waker_probe_held(&pr), 0);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

Test(mpsc, closed_is_ready_once_the_receiver_closes_or_goes)
{
    for (int how = 0; how < 2; how++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        new_bounded(2, &tx, &rx);
        pn_mpsc_tx *tx2 = pn_mpsc_tx_clone(tx);
        waker_probe p = { 0 }, q = { 0 }, d = { 0 };
        pn_mpsc_closed_future a = pn_mpsc_closed(tx), b = pn_mpsc_closed(tx2),
                              dropped = pn_mpsc_closed(tx);
        cr_assert_eq(poll_probe(&a.base, &p), PN_PENDING);
        cr_assert_eq(poll_probe(&a.base, &p), PN_PENDING);
        cr_assert_eq(atomic_load(&p.clones), 1);
        cr_assert_eq(poll_probe(&b.base, &q), PN_PENDING);
        cr_assert_eq(poll_probe(&dropped.base, &d), PN_PENDING);
        pn_future_drop(&dropped.base);
        cr_assert_eq(waker_probe_held(&d), 0);
        long v = 1;
        cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
        cr_assert_eq(atomic_load(&p.wakes) + atomic_load(&q.wakes), 0, "a send is no close");
        if (how)
            pn_mpsc_rx_free(rx);
        else
            pn_mpsc_rx_close(rx);
        cr_assert_eq(atomic_load(&p.wakes), 1);
        cr_assert_eq(atomic_load(&q.wakes), 1);
        cr_assert_eq(atomic_load(&d.wakes), 0, "a dropped closed future is not woken");
        cr_assert_eq(poll_probe(&a.base, &p), PN_READY);
        cr_assert_eq(a.res, 0);
        cr_assert_eq(poll_probe(&b.base, &q), PN_READY);
        pn_mpsc_closed_future late = pn_mpsc_closed(tx);
        cr_assert_eq(poll_probe(&late.base, &p), PN_READY, "ready at once when closed");
        cr_assert_eq(waker_probe_held(&p) + waker_probe_held(&q), 0);
        if (!how)
            pn_mpsc_rx_free(rx);
        pn_mpsc_tx_free(tx);
        pn_mpsc_tx_free(tx2);
    }
    pn_mpsc_closed_future bad = pn_mpsc_closed(NULL);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&bad.base, &p), PN_READY);
    cr_assert_eq(bad.res, -EINVAL);
}

Test(mpsc, rx_close_wakes_a_pending_recv_with_epipe)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(2, &tx, &rx);
    waker_probe p = { 0 };
    long got;
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    pn_mpsc_rx_close(rx);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EPIPE);
    pn_mpsc_rx_free(rx);
    pn_mpsc_tx_free(tx);                    /* the last handle frees it */
}

Test(mpsc, rx_free_discards_queued_values_and_fails_every_sender)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(1, &tx, &rx);
    pn_mpsc_tx *tx2 = pn_mpsc_tx_clone(tx);
    waker_probe p = { 0 };
    long v = 1;
    cr_assert_eq(pn_mpsc_try_send(tx, &v), 0);
    pn_mpsc_send_future a = pn_mpsc_send(tx2, &v);
    cr_assert_eq(poll_probe(&a.base, &p), PN_PENDING);
    pn_mpsc_rx_free(rx);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&a.base, &p), PN_READY);
    cr_assert_eq(a.res, -EPIPE);
    cr_assert_eq(pn_mpsc_try_send(tx, &v), -EPIPE);
    pn_mpsc_tx_free(tx);
    pn_mpsc_tx_free(tx2);
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* ---- unbounded ------------------------------------------------------------------------ */

Test(mpsc, an_unbounded_channel_grows_and_keeps_the_order)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    cr_assert_eq(pn_mpsc_unbounded_new(sizeof(long), &tx, &rx), 0);
    cr_assert_eq(pn_mpsc_max_capacity(tx), SIZE_MAX);
    cr_assert_eq(pn_mpsc_capacity(tx), SIZE_MAX);
    long next_in = 0, next_out = 0, got;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 10 + round * 37; i++, next_in++)
            cr_assert_eq(round % 2 ? pn_mpsc_unbounded_send(tx, &next_in)
                                   : pn_mpsc_try_send(tx, &next_in), 0);
        for (int i = 0; i < 7 + round * 20; i++, next_out++) {   /* head moves: growth wraps */
            cr_assert_eq(pn_mpsc_try_recv(rx, &got), 0);
            cr_assert_eq(got, next_out);
        }
    }
    waker_probe p = { 0 };
    pn_mpsc_send_future s = pn_mpsc_send(tx, &next_in);
    cr_assert_eq(poll_probe(&s.base, &p), PN_READY);
    cr_assert_eq(s.res, 0);
    next_in++;
    pn_mpsc_reserve_future r = pn_mpsc_reserve(tx);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, -EINVAL, "no reserve on an unbounded channel");
    cr_assert_eq(pn_mpsc_len(rx), (size_t)(next_in - next_out));
    long buf[64];
    while (next_out < next_in) {
        pn_mpsc_recv_future m = pn_mpsc_recv_many(rx, buf, 64);
        cr_assert_eq(poll_probe(&m.base, &p), PN_READY);
        for (size_t i = 0; i < m.count; i++, next_out++)
            cr_assert_eq(buf[i], next_out);
    }
    pn_mpsc_rx_close(rx);
    cr_assert_eq(pn_mpsc_unbounded_send(tx, &next_in), -EPIPE);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

/* ---- plain threads and tasks -------------------------------------------------------------- */

typedef struct thread_producer {
    pn_mpsc_tx *tx;
    long from, n;
    int mode;              /* 0 blocking_send, 1 try_reserve, 2 try_send, 3 unbounded_send */
    long sent;             /* sends that reported 0 */
    int last;              /* the last error */
} thread_producer;

static void *thread_produce(void *arg)
{
    thread_producer *t = arg;
    for (long i = 0; i < t->n; i++) {
        long v = t->from + i;
        int err;
        if (t->mode == 0) {
            err = pn_mpsc_blocking_send(t->tx, &v);
        } else if (t->mode == 1) {
            pn_mpsc_reserve_future r;
            while ((err = pn_mpsc_try_reserve(t->tx, &r)) == -EAGAIN)
                sched_yield();
            if (!err && (i % 5 == 4)) {     /* now and then give it back, retry */
                pn_future_drop(&r.base);
                i--;
                continue;
            }
            if (!err)
                err = pn_mpsc_permit_send(&r, &v);
        } else if (t->mode == 2) {
            while ((err = pn_mpsc_try_send(t->tx, &v)) == -EAGAIN)
                sched_yield();
        } else {
            err = pn_mpsc_unbounded_send(t->tx, &v);
        }
        t->last = err;
        if (err)
            break;
        t->sent++;
    }
    pn_mpsc_tx_free(t->tx);
    return NULL;
}

static void *thread_consume(void *arg)
{
    pn_mpsc_rx *rx = arg;
    long n = 0, got, expect = 0;
    while (pn_mpsc_blocking_recv(rx, &got) == 0) {
        if (got != expect++)
            return (void *)-1;
        n++;
    }
    return (void *)n;
}

Test(mpsc, blocking_send_and_blocking_recv_between_threads)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(4, &tx, &rx);
    thread_producer t = { tx, 0, 20000, 0, 0, 0 };
    pthread_t p, c;
    cr_assert_eq(pthread_create(&c, NULL, thread_consume, rx), 0);
    cr_assert_eq(pthread_create(&p, NULL, thread_produce, &t), 0);
    void *res;
    pthread_join(p, NULL);
    pthread_join(c, &res);
    cr_assert_eq(t.last, 0);
    cr_assert_eq((long)res, 20000, "every value, in order");
    pn_mpsc_rx_free(rx);
}

typedef struct blocking_in_task {
    pn_future base;
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    int send_status, recv_status;
} blocking_in_task;

static pn_poll blocking_in_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    blocking_in_task *b = (blocking_in_task *)f;
    long v = 1;
    b->send_status = pn_mpsc_blocking_send(b->tx, &v);
    b->recv_status = pn_mpsc_blocking_recv(b->rx, &v);
    return PN_READY;
}

static const pn_future_vtable blocking_in_task_vt = { blocking_in_task_poll, NULL, "blocking_in_task" };

BOTH(mpsc, blocking_calls_inside_a_task_give_edeadlk)
{
    pn_runtime *rt = flavour_new(fl);
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(1, &tx, &rx);
    blocking_in_task b = { { &blocking_in_task_vt }, tx, rx, 1, 1 };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(((blocking_in_task *)j.output)->send_status, -EDEADLK);
    cr_assert_eq(((blocking_in_task *)j.output)->recv_status, -EDEADLK);
    pn_join_handle_free(h);
    cr_assert_eq(pn_mpsc_len(rx), 0, "nothing was sent");
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* A task that sends n values (from, from+1, ...) then frees its sender. */
typedef struct send_task {
    pn_future base;
    int pc;
    pn_mpsc_tx *tx;
    long from, n, i, v;
    bool reserve;
    pn_mpsc_send_future s;
    int status;
} send_task;

static pn_poll send_task_poll(pn_future *f, pn_cx *cx)
{
    send_task *t = (send_task *)f;
    PN_ASYNC_BEGIN(t->pc);
    for (t->i = 0; t->i < t->n; t->i++) {
        t->v = t->from + t->i;
        t->s = t->reserve ? pn_mpsc_reserve(t->tx) : pn_mpsc_send(t->tx, &t->v);
        PN_AWAIT(t->pc, &t->s, cx);
        t->status = t->s.res;
        if (!t->status && t->reserve)
            t->status = pn_mpsc_permit_send(&t->s, &t->v);
        if (t->status)
            break;
    }
    pn_mpsc_tx_free(t->tx);
    t->tx = NULL;
    PN_ASYNC_END(t->pc);
}

static void send_task_drop(pn_future *f)
{
    send_task *t = (send_task *)f;
    if (PN_ASYNC_AT(t->pc) > 0)
        pn_future_drop(&t->s.base);
    pn_mpsc_tx_free(t->tx);
}

static const pn_future_vtable send_task_vt = { send_task_poll, send_task_drop, "send_task" };

static send_task send_task_of(pn_mpsc_tx *tx, long from, long n, bool reserve)
{
    return (send_task){ .base = { &send_task_vt }, .tx = tx, .from = from, .n = n,
                        .reserve = reserve };
}

BOTH(mpsc, tasks_and_threads_send_to_a_receiving_future)
{
    pn_runtime *rt = flavour_new(fl);
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(3, &tx, &rx);
    enum { PER = 3000 };
    send_task a = send_task_of(pn_mpsc_tx_clone(tx), 0, PER, false);
    send_task b = send_task_of(pn_mpsc_tx_clone(tx), PER, PER, true);
    cr_assert_eq(PN_SPAWN(rt, a, NULL), 0);
    cr_assert_eq(PN_SPAWN(rt, b, NULL), 0);
    thread_producer t = { tx, 2 * PER, PER, 0, 0, 0 };   /* takes tx over */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_produce, &t), 0);
    long next[3] = { 0, PER, 2 * PER }, got, n = 0;
    for (;;) {
        pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
        AWAIT(rt, r);
        if (r.res) {
            cr_assert_eq(r.res, -EPIPE);
            break;
        }
        long k = got / PER;
        cr_assert_eq(got, next[k], "per-sender order");
        next[k]++;
        n++;
    }
    pthread_join(th, NULL);
    cr_assert_eq(n, 3 * PER);
    pn_mpsc_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(mpsc, a_thread_send_always_wakes_the_receiving_task)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 200; round++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        if (round % 2)
            cr_assert_eq(pn_mpsc_unbounded_new(sizeof(long), &tx, &rx), 0);
        else
            new_bounded(1, &tx, &rx);
        thread_producer t = { tx, 0, 1 + round % 3, round % 2 ? 3 : 0, 0, 0 };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_produce, &t), 0);
        long got, n = 0;
        for (;;) {
            pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
            AWAIT(rt, r);                    /* a lost wake: the watchdog */
            if (r.res)
                break;
            cr_assert_eq(got, n++);
        }
        pthread_join(th, NULL);
        cr_assert_eq(n, 1 + round % 3);
        pn_mpsc_rx_free(rx);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ==== stress ============================================================================= */

/* Values are (producer << 32) | sequence. */
#define VAL(id, seq) (((long)(id) << 32) | (long)(seq))

typedef struct stress_shared {
    _Atomic long received, bad;
} stress_shared;

/* A producer task: sends n values in order; mode 0 sends, 1 reserves
 * (and now and then drops the READY reserve and retries), 2 sends and
 * drops its pending send at random (then sends the same value again). */
typedef struct stress_producer {
    pn_future base;
    pn_mpsc_tx *tx;
    int id, mode;
    long n, next, v;
    uint32_t rng;
    bool live;
    pn_mpsc_send_future op;
    _Atomic long *sent;
} stress_producer;

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static pn_poll stress_producer_poll(pn_future *f, pn_cx *cx)
{
    stress_producer *p = (stress_producer *)f;
    while (p->next < p->n) {
        if (p->live && p->mode == 2 && xorshift(&p->rng) % 3 == 0) {
            pn_future_drop(&p->op.base);    /* maybe granted already */
            p->live = false;
        }
        if (!p->live) {
            p->v = VAL(p->id, p->next);
            p->op = p->mode == 1 ? pn_mpsc_reserve(p->tx) : pn_mpsc_send(p->tx, &p->v);
            p->live = true;
        }
        if (pn_future_poll(&p->op.base, cx) == PN_PENDING)
            return PN_PENDING;
        p->live = false;
        if (p->op.res)
            break;
        if (p->mode == 1) {
            if (xorshift(&p->rng) % 4 == 0) {
                pn_future_drop(&p->op.base);    /* give the slot back, retry */
                continue;
            }
            if (pn_mpsc_permit_send(&p->op, &p->v))
                break;
        }
        atomic_fetch_add(p->sent, 1);
        p->next++;
    }
    pn_mpsc_tx_free(p->tx);
    p->tx = NULL;
    return PN_READY;
}

static void stress_producer_drop(pn_future *f)
{
    stress_producer *p = (stress_producer *)f;
    if (p->live)
        pn_future_drop(&p->op.base);
    pn_mpsc_tx_free(p->tx);
}

static const pn_future_vtable stress_producer_vt = { stress_producer_poll, stress_producer_drop,
                                                     "stress_producer" };

/* The consumer task: receives until -EPIPE, with recv or recv_many,
 * checking per-producer order; closes the channel after close_after
 * values if close_after >= 0. */
#define MAX_PRODUCERS 16

typedef struct stress_consumer {
    pn_future base;
    pn_mpsc_rx *rx;
    long close_after;
    long next[MAX_PRODUCERS];
    long buf[16];
    uint32_t rng;
    bool live;
    pn_mpsc_recv_future r;
    stress_shared *sh;
} stress_consumer;

static pn_poll stress_consumer_poll(pn_future *f, pn_cx *cx)
{
    stress_consumer *c = (stress_consumer *)f;
    for (;;) {
        if (c->live && xorshift(&c->rng) % 8 == 0) {
            pn_future_drop(&c->r.base);     /* a dropped recv loses nothing */
            c->live = false;
        }
        if (!c->live) {
            size_t max = 1 + xorshift(&c->rng) % 16;
            c->r = max == 1 ? pn_mpsc_recv(c->rx, c->buf) : pn_mpsc_recv_many(c->rx, c->buf, max);
            c->live = true;
        }
        if (pn_future_poll(&c->r.base, cx) == PN_PENDING)
            return PN_PENDING;
        c->live = false;
        if (c->r.res)
            return PN_READY;
        size_t n = c->r.count;
        for (size_t i = 0; i < n; i++) {
            long v = c->buf[i];
            long id = v >> 32, seq = v & 0xffffffff;
            if (id < 0 || id >= MAX_PRODUCERS || c->next[id] != seq)
                atomic_fetch_add(&c->sh->bad, 1);
            else
                c->next[id]++;
        }
        long total = atomic_fetch_add(&c->sh->received, (long)n) + (long)n;
        if (c->close_after >= 0 && total >= c->close_after) {
            pn_mpsc_rx_close(c->rx);
            c->close_after = -1;
        }
    }
}

static void stress_consumer_drop(pn_future *f)
{
    stress_consumer *c = (stress_consumer *)f;
    if (c->live)
        pn_future_drop(&c->r.base);
}

static const pn_future_vtable stress_consumer_vt = { stress_consumer_poll, stress_consumer_drop,
                                                     "stress_consumer" };

typedef struct stress_thread {
    pn_mpsc_tx *tx;
    int id, mode;
    long n;
    _Atomic long *sent;
    int last;
} stress_thread;

static void *stress_thread_main(void *arg)
{
    stress_thread *t = arg;
    for (long i = 0; i < t->n; i++) {
        long v = VAL(t->id, i);
        int err;
        if (t->mode == 0) {
            err = pn_mpsc_blocking_send(t->tx, &v);
        } else if (t->mode == 1) {
            pn_mpsc_reserve_future r;
            while ((err = pn_mpsc_try_reserve(t->tx, &r)) == -EAGAIN)
                sched_yield();
            if (!err)
                err = pn_mpsc_permit_send(&r, &v);
        } else {
            while ((err = pn_mpsc_try_send(t->tx, &v)) == -EAGAIN)
                sched_yield();
        }
        t->last = err;
        if (err)
            break;
        atomic_fetch_add(t->sent, 1);
    }
    pn_mpsc_tx_free(t->tx);
    return NULL;
}

enum { TASKS = 6, THREADS = 3 };

static void join_all(pn_runtime *rt, pn_join_handle **h, int n)
{
    for (int i = 0; i < n; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        pn_join_handle_free(h[i]);
    }
}

/* Producers: TASKS tasks (modes 0, 1, 2 in turn) and THREADS threads
 * (modes 0, 1, 2), `per` values each, into a channel of capacity `cap`.
 * close_after >= 0: the consumer closes after that many values. */
static void run_stress(pn_runtime_flavor fl, size_t cap, long per, long close_after, uint32_t seed)
{
    pn_runtime *rt = flavour_new(fl);
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    new_bounded(cap, &tx, &rx);
    stress_shared sh = { 0 };
    _Atomic long sent = 0;
    pn_join_handle *hp[TASKS];
    for (int i = 0; i < TASKS; i++) {
        stress_producer p = { .base = { &stress_producer_vt }, .tx = pn_mpsc_tx_clone(tx),
                              .id = i, .mode = i % 3, .n = per, .rng = seed * 7 + i + 1,
                              .sent = &sent };
        cr_assert_eq(PN_SPAWN(rt, p, &hp[i]), 0);
    }
    stress_thread th[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        th[i] = (stress_thread){ pn_mpsc_tx_clone(tx), TASKS + i, i % 3, per, &sent, 0 };
        cr_assert_eq(pthread_create(&tid[i], NULL, stress_thread_main, &th[i]), 0);
    }
    pn_mpsc_tx_free(tx);
    stress_consumer c = { .base = { &stress_consumer_vt }, .rx = rx, .close_after = close_after,
                          .rng = seed | 1, .sh = &sh };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, c, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    pn_join_handle_free(h);
    for (int i = 0; i < THREADS; i++)
        pthread_join(tid[i], NULL);
    join_all(rt, hp, TASKS);                /* every success is counted */
    cr_assert_eq(atomic_load(&sh.bad), 0, "a value out of order, duplicated or unknown");
    cr_assert_eq(atomic_load(&sh.received), atomic_load(&sent),
                 "received %ld, sent %ld", atomic_load(&sh.received), atomic_load(&sent));
    if (close_after < 0)
        cr_assert_eq(atomic_load(&sent), (TASKS + THREADS) * per);
    pn_mpsc_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0, "every producer task finished");
}

BOTH(mpsc_stress, every_value_arrives_once_in_producer_order)
{
    for (uint32_t seed = 1; seed <= 4; seed++)
        run_stress(fl, seed % 2 ? 1 : 8, 1500, -1, seed);
}

BOTH(mpsc_stress, a_close_while_sending_loses_and_invents_nothing)
{
    for (uint32_t seed = 1; seed <= 6; seed++)
        run_stress(fl, seed % 2 ? 2 : 16, 100000, 500 * seed, seed);
}

/* rx_close from another thread while the consumer task receives. */
typedef struct closer {
    pn_mpsc_rx *rx;
    stress_shared *sh;
    long after;
} closer;

static void *closer_main(void *arg)
{
    closer *c = arg;
    while (atomic_load(&c->sh->received) < c->after)
        sched_yield();
    pn_mpsc_rx_close(c->rx);
    return NULL;
}

BOTH(mpsc_stress, rx_close_from_a_thread_races_the_senders)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 4; round++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        new_bounded(4, &tx, &rx);
        stress_shared sh = { 0 };
        _Atomic long sent = 0;
        pn_join_handle *hp[4];
        for (int i = 0; i < 4; i++) {
            stress_producer p = { .base = { &stress_producer_vt }, .tx = pn_mpsc_tx_clone(tx),
                                  .id = i, .mode = i % 3, .n = 1000000, .rng = round * 11 + i + 1,
                                  .sent = &sent };
            cr_assert_eq(PN_SPAWN(rt, p, &hp[i]), 0);
        }
        stress_thread th[2];
        pthread_t tid[2];
        for (int i = 0; i < 2; i++) {
            th[i] = (stress_thread){ pn_mpsc_tx_clone(tx), 4 + i, i, 1000000, &sent, 0 };
            cr_assert_eq(pthread_create(&tid[i], NULL, stress_thread_main, &th[i]), 0);
        }
        pn_mpsc_tx_free(tx);
        closer cl = { rx, &sh, 300 + round * 400 };
        pthread_t ct;
        cr_assert_eq(pthread_create(&ct, NULL, closer_main, &cl), 0);
        stress_consumer c = { .base = { &stress_consumer_vt }, .rx = rx, .close_after = -1,
                              .rng = round + 1, .sh = &sh };
        pn_join_handle *h;
        cr_assert_eq(PN_SPAWN(rt, c, &h), 0);
        pn_join_future j = pn_join(h);
        AWAIT(rt, j);
        pn_join_handle_free(h);
        pthread_join(ct, NULL);
        for (int i = 0; i < 2; i++) {
            pthread_join(tid[i], NULL);
            cr_assert_eq(th[i].last, -EPIPE);
        }
        join_all(rt, hp, 4);
        cr_assert_eq(atomic_load(&sh.bad), 0);
        cr_assert_eq(atomic_load(&sh.received), atomic_load(&sent),
                     "received %ld, sent %ld", atomic_load(&sh.received), atomic_load(&sent));
        pn_mpsc_rx_free(rx);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* rx_free while threads and tasks send: everyone ends with -EPIPE, the
 * last handle frees the channel (ASan: no leak, no use after free). */
BOTH(mpsc_stress, rx_free_races_the_senders)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 20; round++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        new_bounded(2, &tx, &rx);
        _Atomic long sent = 0;
        pn_join_handle *hs[3];
        for (int i = 0; i < 3; i++) {
            stress_producer p = { .base = { &stress_producer_vt }, .tx = pn_mpsc_tx_clone(tx),
                                  .id = i, .mode = i % 3, .n = 1000000, .rng = round * 5 + i + 1,
                                  .sent = &sent };
            cr_assert_eq(PN_SPAWN(rt, p, &hs[i]), 0);
        }
        stress_thread th[3];
        pthread_t tid[3];
        for (int i = 0; i < 3; i++) {
            th[i] = (stress_thread){ pn_mpsc_tx_clone(tx), 3 + i, i, 1000000, &sent, 0 };
            cr_assert_eq(pthread_create(&tid[i], NULL, stress_thread_main, &th[i]), 0);
        }
        pn_mpsc_tx_free(tx);
        long got;
        for (int i = 0; i < round * 10; i++)
            if (pn_mpsc_blocking_recv(rx, &got))
                break;
        pn_mpsc_rx_free(rx);
        for (int i = 0; i < 3; i++) {
            pthread_join(tid[i], NULL);
            cr_assert_eq(th[i].last, -EPIPE);
        }
        join_all(rt, hs, 3);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- closed on a runtime -------------------------------------------------------------- */

static void *close_rx_thread(void *arg)
{
    for (int i = 0; i < (int)(((uintptr_t)arg >> 4) % 50); i++)
        sched_yield();
    pn_mpsc_rx_close(arg);
    return NULL;
}

BOTH(mpsc, a_task_awaiting_closed_is_woken_by_a_thread_close)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 100; round++) {
        pn_mpsc_tx *tx;
        pn_mpsc_rx *rx;
        new_bounded(1, &tx, &rx);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, close_rx_thread, rx), 0);
        pn_mpsc_closed_future c = pn_mpsc_closed(tx);
        AWAIT(rt, c);                       /* a lost wake: the watchdog */
        cr_assert_eq(c.res, 0);
        pthread_join(th, NULL);
        pn_mpsc_tx_free(tx);
        pn_mpsc_rx_free(rx);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}
