/*
 * test_sync_drops.c - defects a review of the coordination toolkit
 * found, one test each, failing on the code before its mend.
 *
 *   READY drops after the handle went: future.h says dropping a READY
 *   future is a no-op for every pollen future, and channel.h asks only
 *   that a future be "finished or dropped" before its handle is freed.
 *   The oneshot recv / closed futures and the mpsc closed future took
 *   the channel's lock in their drop even when READY, so a task that
 *   awaits, frees its handle, then drops its children (the header's own
 *   example followed by the usual drop) touched freed memory.  Plain
 *   build: the freed lock word is not zero, the drop blocks and the
 *   watchdog fails the test; ASan: heap-use-after-free.
 *
 *   pn_mpsc_capacity after a put-back: a dropped receive that had been
 *   handed a value puts it back, which may leave len + reserved = cap + 1
 *   (documented); capacity() computed cap - len - reserved and wrapped
 *   to SIZE_MAX ("free slots now").
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "pollen/channel.h"
#include "pollen/waitgroup.h"
#include "core/chaos.h"

static void sync_drops_fini(void) { pn__point_set_hook(NULL); }

TestSuite(sync_drops, .timeout = PN_TEST_TIMEOUT, .fini = sync_drops_fini);

static pn_poll poll_probe(pn_future *f, waker_probe *p)
{
    pn_waker w = { p, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .budget = 1000 };
    return pn_future_poll(f, &cx);
}

/* The header's example: recv, await, rx_free; then the task's drop drops
 * its (READY) child. */
Test(sync_drops, oneshot_ready_recv_drop_after_rx_free_is_a_noop)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    int v = 42, got = 0;
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);          /* tx is gone */
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(r.res, 0);
    cr_assert_eq(got, 42);
    pn_oneshot_rx_free(rx);                            /* the block goes */
    pn_future_drop(&r.base);                           /* must be a no-op */
    cr_assert_eq(r.res, 0);
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* Same with a recv that waited first (its waker was registered). */
Test(sync_drops, oneshot_woken_recv_drop_after_rx_free_is_a_noop)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    int v = 5, got = 0;
    pn_oneshot_recv_future r = pn_oneshot_recv(rx, &got);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    cr_assert_eq(pn_oneshot_send(tx, &v), 0);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&r.base, &p), PN_READY);
    cr_assert_eq(got, 5);
    pn_oneshot_rx_free(rx);
    pn_future_drop(&r.base);
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* A producer awaits closed(), then frees its sender, then drops. */
Test(sync_drops, oneshot_ready_closed_drop_after_tx_free_is_a_noop)
{
    pn_oneshot_tx *tx;
    pn_oneshot_rx *rx;
    cr_assert_eq(pn_oneshot_new(sizeof(int), &tx, &rx), 0);
    pn_oneshot_closed_future c = pn_oneshot_closed(tx);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&c.base, &p), PN_PENDING);
    pn_oneshot_rx_free(rx);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&c.base, &p), PN_READY);
    cr_assert_eq(c.res, 0);
    pn_oneshot_tx_free(tx);                            /* the block goes */
    pn_future_drop(&c.base);
    cr_assert_eq(waker_probe_held(&p), 0);
}

Test(sync_drops, mpsc_ready_closed_drop_after_tx_free_is_a_noop)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    cr_assert_eq(pn_mpsc_new(1, sizeof(long), &tx, &rx), 0);
    pn_mpsc_closed_future c = pn_mpsc_closed(tx);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&c.base, &p), PN_PENDING);
    pn_mpsc_rx_free(rx);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(poll_probe(&c.base, &p), PN_READY);
    cr_assert_eq(c.res, 0);
    pn_mpsc_tx_free(tx);                               /* the block goes */
    pn_future_drop(&c.base);
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* A pending closed future dropped still gives its waker back (the mend
 * must keep that). */
Test(sync_drops, mpsc_pending_closed_drop_releases_its_waker)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    cr_assert_eq(pn_mpsc_new(1, sizeof(long), &tx, &rx), 0);
    pn_mpsc_closed_future c = pn_mpsc_closed(tx);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&c.base, &p), PN_PENDING);
    cr_assert_eq(poll_probe(&c.base, &p), PN_PENDING);
    pn_future_drop(&c.base);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_mpsc_rx_close(rx);
    cr_assert_eq(atomic_load(&p.wakes), 0, "a dropped future is not woken");
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
}

Test(sync_drops, mpsc_capacity_never_wraps_after_a_put_back)
{
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    cr_assert_eq(pn_mpsc_new(1, sizeof(long), &tx, &rx), 0);
    long got = -1, a = 1, b = 2;
    pn_mpsc_recv_future r = pn_mpsc_recv(rx, &got);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&r.base, &p), PN_PENDING);
    cr_assert_eq(pn_mpsc_try_send(tx, &a), 0);         /* handed to r */
    cr_assert_eq(pn_mpsc_try_send(tx, &b), 0);         /* into the ring */
    pn_future_drop(&r.base);                           /* a is put back */
    cr_assert_eq(pn_mpsc_len(rx), 2);
    cr_assert_eq(pn_mpsc_capacity(tx), 0, "capacity %zu", pn_mpsc_capacity(tx));
    cr_assert_eq(pn_mpsc_try_send(tx, &a), -EAGAIN);
    long x = 0;
    cr_assert_eq(pn_mpsc_try_recv(rx, &x), 0);
    cr_assert_eq(x, 1);
    cr_assert_eq(pn_mpsc_capacity(tx), 0);
    cr_assert_eq(pn_mpsc_try_recv(rx, &x), 0);
    cr_assert_eq(x, 2);
    cr_assert_eq(pn_mpsc_capacity(tx), 1);
    pn_mpsc_tx_free(tx);
    pn_mpsc_rx_free(rx);
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* pn_wait_group_wait's drop read w.state without the lock to see whether
 * it had anything to undo, while pn_wait_group_done writes w.state (1,
 * "released") under the lock on another thread: a data race (TSan).  The
 * thread below calls done, then says so through a relaxed store, which
 * orders nothing, so the drop's read races the write. */
static pn_wait_group rv_wg;
static atomic_int rv_done_flag;

static void *rv_done_thread(void *arg)
{
    (void)arg;
    pn_wait_group_done(&rv_wg);
    atomic_store_explicit(&rv_done_flag, 1, memory_order_relaxed);
    return NULL;
}

Test(sync_drops, wait_group_drop_reads_no_field_done_writes)
{
    pn_wait_group_init(&rv_wg);
    cr_assert_eq(pn_wait_group_add(&rv_wg, 1), 0);
    pn_wait_group_wait_future w = pn_wait_group_wait(&rv_wg);
    waker_probe p = { 0 };
    cr_assert_eq(poll_probe(&w.base, &p), PN_PENDING);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rv_done_thread, NULL), 0);
    while (!atomic_load_explicit(&rv_done_flag, memory_order_relaxed))
        sched_yield();
    pn_future_drop(&w.base);
    pthread_join(th, NULL);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_wait_group_destroy(&rv_wg);
}
