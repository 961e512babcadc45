/*
 * test_watch.c - the watch channel (pollen/watch.h).
 *
 * Checked: borrow / borrow_and_update / has_changed / mark_(un)changed and
 * the seen version of new, subscribed and cloned receivers; send with no
 * receiver fails and stores nothing, send_replace stores and gives the old
 * value; changed() on both runtimes, from tasks and as blocking_changed on
 * a plain thread (-EDEADLK inside a task); the close wakes every waiting
 * changed() (-EPIPE) but an unseen version still comes first; dropping a
 * pending changed() (woken or not) loses the change for nobody and keeps
 * no waker; a send forced between changed()'s lock-free check and its
 * registration (the point "watch.changed.check"); no torn value while a
 * thread rewrites a 64-byte value in a loop and tasks and threads read it;
 * a sender thread against waiting tasks, each task seeing the versions go
 * up and the final value; send_if_modified bumps and wakes only on a
 * change; the sender's tx_closed() completes when the last receiver goes.
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "core/chaos.h"
#include "pollen/watch.h"

static void watch_fini(void) { pn__point_set_hook(NULL); }

TestSuite(watch, .timeout = PN_TEST_TIMEOUT, .fini = watch_fini);

static pn_waker probe_waker(waker_probe *p) { return (pn_waker){ p, &waker_probe_vt }; }

static pn_cx probe_cx(const pn_waker *w) { return (pn_cx){ .waker = w, .budget = 1000 }; }

static int changed_on(pn_runtime *rt, pn_watch_rx *rx)
{
    pn_watch_changed_future f = pn_watch_changed(rx);
    AWAIT(rt, f);
    return f.res;
}

/* ---- values and versions -------------------------------------------------- */

Test(watch, borrow_update_and_seen_versions)
{
    pn_watch_tx *tx;
    pn_watch_rx *rx, *clone, *sub;
    int init = 10, v = 0, old = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &init, &tx, &rx), 0);
    cr_assert_eq(pn_watch_borrow(rx, &v), 0, "the initial value counts as seen");
    cr_assert_eq(v, 10);
    cr_assert_eq(pn_watch_has_changed(rx), 0);
    int eleven = 11;
    cr_assert_eq(pn_watch_send(tx, &eleven), 0);
    cr_assert_eq(pn_watch_has_changed(rx), 1);
    cr_assert_eq(pn_watch_borrow(rx, &v), 1, "newer than seen");
    cr_assert_eq(v, 11);
    cr_assert_eq(pn_watch_has_changed(rx), 1, "borrow does not mark it seen");
    cr_assert_eq(pn_watch_rx_clone(rx, &clone), 0);
    cr_assert_eq(pn_watch_subscribe(tx, &sub), 0);
    cr_assert_eq(pn_watch_has_changed(clone), 1, "a clone has seen what rx had seen");
    cr_assert_eq(pn_watch_has_changed(sub), 0, "a subscriber has seen the current value");
    cr_assert_eq(pn_watch_borrow_and_update(rx, &v), 1);
    cr_assert_eq(pn_watch_has_changed(rx), 0);
    cr_assert_eq(pn_watch_borrow_and_update(rx, &v), 0);
    cr_assert_eq(pn_watch_has_changed(clone), 1, "receivers are independent");
    pn_watch_mark_changed(rx);
    cr_assert_eq(pn_watch_has_changed(rx), 1);
    pn_watch_mark_unchanged(rx);
    cr_assert_eq(pn_watch_has_changed(rx), 0);
    cr_assert_eq(pn_watch_receiver_count(tx), 3);
    int twelve = 12;
    cr_assert_eq(pn_watch_send_replace(tx, &twelve, &old), 0);
    cr_assert_eq(old, 11);
    cr_assert_eq(pn_watch_tx_borrow(tx, &v), 0);
    cr_assert_eq(v, 12);
    pn_watch_rx_free(clone);
    pn_watch_rx_free(sub);
    pn_watch_rx_free(rx);
    pn_watch_tx_free(tx);
}

Test(watch, send_with_no_receiver_fails_and_send_replace_stores)
{
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int init = 1, v;
    cr_assert_eq(pn_watch_new(sizeof(int), &init, &tx, NULL), 0);
    cr_assert_eq(pn_watch_receiver_count(tx), 0);
    int two = 2, three = 3;
    cr_assert_eq(pn_watch_send(tx, &two), -EPIPE);
    cr_assert_eq(pn_watch_tx_borrow(tx, &v), 0);
    cr_assert_eq(v, 1, "send with no receiver stores nothing");
    cr_assert_eq(pn_watch_send_replace(tx, &three, NULL), 0);
    cr_assert_eq(pn_watch_subscribe(tx, &rx), 0);
    cr_assert_eq(pn_watch_borrow(rx, &v), 0);
    cr_assert_eq(v, 3, "send_replace stored it");
    cr_assert_eq(pn_watch_send(tx, &two), 0);
    cr_assert_eq(pn_watch_has_changed(rx), 1);
    pn_watch_rx_free(rx);
    cr_assert_eq(pn_watch_send(tx, &two), -EPIPE);
    pn_watch_tx_free(tx);            /* the last handle frees (ASan checks) */
}

Test(watch, bad_arguments_are_einval)
{
    pn_watch_tx *tx = (void *)1;
    pn_watch_rx *rx = (void *)1;
    int i = 0;
    cr_assert_eq(pn_watch_new(0, &i, &tx, &rx), -EINVAL);
    cr_assert_null(tx);
    cr_assert_null(rx);
    cr_assert_eq(pn_watch_new(4, NULL, &tx, &rx), -EINVAL);
    cr_assert_eq(pn_watch_new(4, &i, NULL, &rx), -EINVAL);
    cr_assert_eq(pn_watch_new(SIZE_MAX, &i, &tx, &rx), -EINVAL);
    cr_assert_eq(pn_watch_send(NULL, &i), -EINVAL);
    cr_assert_eq(pn_watch_send_replace(NULL, &i, NULL), -EINVAL);
    cr_assert_eq(pn_watch_tx_borrow(NULL, &i), -EINVAL);
    cr_assert_eq(pn_watch_subscribe(NULL, &rx), -EINVAL);
    cr_assert_eq(pn_watch_rx_clone(NULL, &rx), -EINVAL);
    cr_assert_eq(pn_watch_borrow(NULL, &i), -EINVAL);
    cr_assert_eq(pn_watch_borrow_and_update(NULL, &i), -EINVAL);
    cr_assert_eq(pn_watch_has_changed(NULL), -EINVAL);
    cr_assert_eq(pn_watch_blocking_changed(NULL), -EINVAL);
    cr_assert_eq(pn_watch_receiver_count(NULL), 0);
    pn_watch_mark_changed(NULL);
    pn_watch_mark_unchanged(NULL);
    pn_watch_rx_free(NULL);
    pn_watch_tx_free(NULL);
    cr_assert_eq(pn_watch_new(sizeof i, &i, &tx, &rx), 0);
    cr_assert_eq(pn_watch_send(tx, NULL), -EINVAL);
    cr_assert_eq(pn_watch_borrow(rx, NULL), -EINVAL);
    cr_assert_eq(pn_watch_subscribe(tx, NULL), -EINVAL);
    pn_watch_changed_future f = pn_watch_changed(NULL);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(f.res, -EINVAL);
    pn_future_drop(&f.base);
    pn_watch_rx_free(rx);
    pn_watch_tx_free(tx);
}

/* ---- changed() ------------------------------------------------------------- */

/* Waits for changes until -EPIPE; counts them, checks the versions' values
 * go up (the sender sends 1, 2, 3, ...) and remembers the last. */
typedef struct ch_task {
    pn_future base;
    pn_watch_rx *rx;
    pn_watch_changed_future ch;
    bool active, counted;
    int last, changes, bad, final;
    unsigned seed, drop_every;
    atomic_int *started;
} ch_task;

static pn_poll ch_task_poll(pn_future *f, pn_cx *cx)
{
    ch_task *t = (ch_task *)f;
    if (t->started && !t->counted) {
        t->counted = true;
        atomic_fetch_add(t->started, 1);
    }
    for (;;) {
        if (!t->active) {
            t->ch = pn_watch_changed(t->rx);
            t->active = true;
        }
        if (pn_future_poll(&t->ch.base, cx) == PN_PENDING) {
            if (t->drop_every && rand_r(&t->seed) % t->drop_every == 0) {
                pn_future_drop(&t->ch.base);
                t->active = false;
                pn_waker_wake_by_ref(cx->waker);
            }
            return PN_PENDING;
        }
        t->active = false;
        if (t->ch.res) {
            t->final = t->ch.res;
            return PN_READY;
        }
        int v;
        pn_watch_borrow_and_update(t->rx, &v);   /* what it read is what it saw */
        if (v <= t->last)
            t->bad++;
        t->last = v;
        t->changes++;
    }
}

static void ch_task_drop(pn_future *f)
{
    ch_task *t = (ch_task *)f;
    if (t->active)
        pn_future_drop(&t->ch.base);
}

static const pn_future_vtable ch_task_vt = { ch_task_poll, ch_task_drop, "ch_task" };

static ch_task *join_ch(pn_runtime *rt, pn_join_handle *h)
{
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    return j.output;
}

BOTH(watch, changed_completes_on_a_send_and_marks_it_seen)
{
    pn_runtime *rt = flavour_new(fl);
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int v = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    int five = 5;
    pn_watch_send(tx, &five);
    cr_assert_eq(changed_on(rt, rx), 0, "a version newer than seen: at once");
    cr_assert_eq(pn_watch_has_changed(rx), 0, "and marked seen");
    atomic_int started = 0;
    ch_task t = { .base = { &ch_task_vt }, .rx = rx, .started = &started };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, t, &h), 0);
    while (atomic_load(&started) < 1) {
        pn_yield_now_future y = pn_yield();
        AWAIT(rt, y);
    }
    int six = 6;
    pn_watch_send(tx, &six);
    pn_watch_tx_free(tx);
    ch_task *out = join_ch(rt, h);
    cr_assert_eq(out->final, -EPIPE);
    cr_assert_eq(out->last, 6);
    cr_assert_eq(out->changes, 1);
    pn_join_handle_free(h);
    cr_assert_eq(changed_on(rt, rx), -EPIPE);
    cr_assert_eq(pn_watch_borrow(rx, &v), 0, "the last value stays readable");
    cr_assert_eq(v, 6);
    pn_watch_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(watch, an_unseen_version_comes_before_the_close)
{
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int v = 0, one = 1;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    pn_watch_send(tx, &one);
    pn_watch_tx_free(tx);
    cr_assert_eq(pn_watch_has_changed(rx), 1);
    cr_assert_eq(pn_watch_blocking_changed(rx), 0);
    cr_assert_eq(pn_watch_has_changed(rx), -EPIPE);
    cr_assert_eq(pn_watch_blocking_changed(rx), -EPIPE);
    pn_watch_rx *clone;
    cr_assert_eq(pn_watch_rx_clone(rx, &clone), 0, "clone after the close");
    cr_assert_eq(pn_watch_has_changed(clone), -EPIPE);
    pn_watch_rx_free(rx);
    pn_watch_rx_free(clone);
}

BOTH(watch, close_while_receivers_wait_wakes_them_with_epipe)
{
    pn_runtime *rt = flavour_new(fl);
    pn_watch_tx *tx;
    pn_watch_rx *first;
    int v = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &first), 0);
    enum { K = 40 };                  /* more than a wake list holds */
    atomic_int started = 0;
    pn_join_handle *h[K];
    pn_watch_rx *rx[K];
    for (int i = 0; i < K; i++) {
        cr_assert_eq(pn_watch_rx_clone(first, &rx[i]), 0);
        ch_task t = { .base = { &ch_task_vt }, .rx = rx[i], .started = &started };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    while (atomic_load(&started) < K) {
        pn_yield_now_future y = pn_yield();
        AWAIT(rt, y);
    }
    pn_watch_tx_free(tx);
    for (int i = 0; i < K; i++) {
        ch_task *t = join_ch(rt, h[i]);
        cr_assert_eq(t->final, -EPIPE);
        cr_assert_eq(t->changes, 0);
        pn_join_handle_free(h[i]);
        pn_watch_rx_free(rx[i]);
    }
    pn_watch_rx_free(first);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- dropping and the lost-wakeup window ------------------------------------ */

Test(watch, a_dropped_changed_loses_nothing_and_keeps_no_waker)
{
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int v = 0, one = 1, two = 2;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);

    pn_watch_changed_future f = pn_watch_changed(rx);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING, "a spurious poll stays queued");
    cr_assert_eq(atomic_load(&p.clones), 1);
    pn_future_drop(&f.base);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_watch_send(tx, &one);
    cr_assert_eq(atomic_load(&p.wakes), 0, "a dropped waiter is not woken");
    cr_assert_eq(pn_watch_has_changed(rx), 1, "the dropped changed() marked nothing");
    pn_watch_mark_unchanged(rx);

    /* woken, then dropped before it ran: the change is still unseen */
    f = pn_watch_changed(rx);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    pn_watch_send(tx, &two);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    pn_future_drop(&f.base);
    cr_assert_eq(pn_watch_has_changed(rx), 1);
    f = pn_watch_changed(rx);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(f.res, 0);
    pn_future_drop(&f.base);          /* after READY: no-op */
    cr_assert_eq(waker_probe_held(&p), 0);

    /* woken by the close, then completed */
    f = pn_watch_changed(rx);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    pn_watch_tx_free(tx);
    cr_assert_eq(atomic_load(&p.wakes), 2);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(f.res, -EPIPE);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_watch_rx_free(rx);
}

BOTH(watch, dropping_a_pending_changed_in_a_task_then_waiting_again)
{
    pn_runtime *rt = flavour_new(fl);
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int v = 0, one = 1;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    waker_probe p = { 0 };
    pn_watch_changed_future f = pn_watch_changed(rx);
    probed_drop pd = probed_drop_of(&f.base, &p);
    AWAIT(rt, pd);
    cr_assert_eq(pd.first, PN_PENDING);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_watch_send(tx, &one);
    cr_assert_eq(changed_on(rt, rx), 0);
    pn_watch_rx_free(rx);
    pn_watch_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

static pn_watch_tx *hook_tx;
static _Atomic int hook_hits;

static void send_at_check(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "watch.changed.check") || atomic_fetch_add(&hook_hits, 1))
        return;
    int v = 99;
    pn_watch_send(hook_tx, &v);       /* the other thread's send, right here */
}

/* changed() saw no new version without the lock; a send lands before it
 * registers (and wakes nobody).  The check under the lock must see it. */
Test(watch, a_send_between_check_and_registration_is_not_lost)
{
    pn_watch_rx *rx;
    int v = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &hook_tx, &rx), 0);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    atomic_store(&hook_hits, 0);
    pn__point_set_hook(send_at_check);
    pn_watch_changed_future f = pn_watch_changed(rx);
    pn_poll r = pn_future_poll(&f.base, &cx);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&hook_hits), 1, "the window was reached");
    cr_assert_eq(r, PN_READY, "the send in the window was lost");
    cr_assert_eq(f.res, 0);
    cr_assert_eq(pn_watch_borrow(rx, &v), 0, "marked seen");
    cr_assert_eq(v, 99);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_watch_rx_free(rx);
    pn_watch_tx_free(hook_tx);
}

static void close_at_check(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "watch.changed.check") || atomic_fetch_add(&hook_hits, 1))
        return;
    pn_watch_tx_free(hook_tx);
}

BOTH(watch, a_close_in_the_window_reaches_a_task)
{
    pn_runtime *rt = flavour_new(fl);
    pn_watch_rx *rx;
    int v = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &hook_tx, &rx), 0);
    atomic_store(&hook_hits, 0);
    pn__point_set_hook(close_at_check);
    cr_assert_eq(changed_on(rt, rx), -EPIPE);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&hook_hits), 1);
    pn_watch_rx_free(rx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- blocking -------------------------------------------------------------- */

typedef struct blocking_in_task {
    pn_future base;
    pn_watch_rx *rx;
    int status;
} blocking_in_task;

static pn_poll blocking_in_task_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    blocking_in_task *b = (blocking_in_task *)f;
    b->status = pn_watch_blocking_changed(b->rx);
    return PN_READY;
}

static const pn_future_vtable blocking_in_task_vt = { blocking_in_task_poll, NULL, "bit" };

BOTH(watch, blocking_changed_inside_a_task_is_edeadlk)
{
    pn_runtime *rt = flavour_new(fl);
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int v = 0, one = 1;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    pn_watch_send(tx, &one);
    blocking_in_task b = { { &blocking_in_task_vt }, rx, 1 };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, b, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(((blocking_in_task *)j.output)->status, -EDEADLK);
    pn_join_handle_free(h);
    cr_assert_eq(pn_watch_has_changed(rx), 1, "nothing was marked");
    pn_watch_rx_free(rx);
    pn_watch_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- threads ---------------------------------------------------------------- */

typedef struct seq_arg {
    pn_watch_tx *tx;
    int n;
    atomic_int *started;
    int wait_for;
} seq_arg;

static void *seq_sender(void *arg)
{
    seq_arg *a = arg;
    while (atomic_load(a->started) < a->wait_for)
        sched_yield();
    for (int i = 1; i <= a->n; i++) {
        pn_watch_send_replace(a->tx, &i, NULL);
        if (i % 16 == 0)
            sched_yield();
    }
    pn_watch_tx_free(a->tx);
    return NULL;
}

#define SEQ_N 20000
#define SEQ_RX 4

/* Tasks on the 2-worker runtime wait for changes (two of them dropping
 * pending changed() at random) while a plain thread sends 1..N: each sees
 * increasing values, ends with -EPIPE, and has seen the last value. */
Test(watch, thread_sender_against_waiting_tasks)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    pn_watch_tx *tx;
    pn_watch_rx *first;
    int zero = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &zero, &tx, &first), 0);
    atomic_int started = 0;
    pn_join_handle *h[SEQ_RX];
    pn_watch_rx *rx[SEQ_RX];
    for (int i = 0; i < SEQ_RX; i++) {
        cr_assert_eq(pn_watch_rx_clone(first, &rx[i]), 0);
        ch_task t = { .base = { &ch_task_vt }, .rx = rx[i], .started = &started,
                      .seed = 3u + (unsigned)i, .drop_every = i % 2 ? 3 : 0 };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    pn_watch_rx_free(first);
    seq_arg a = { tx, SEQ_N, &started, SEQ_RX };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, seq_sender, &a), 0);
    for (int i = 0; i < SEQ_RX; i++) {
        ch_task *t = join_ch(rt, h[i]);
        cr_assert_eq(t->final, -EPIPE);
        cr_assert_eq(t->bad, 0, "task %d saw a value go back", i);
        cr_assert_eq(t->last, SEQ_N, "task %d missed the last value (saw %d)", i, t->last);
        cr_assert_geq(t->changes, 1);
        pn_join_handle_free(h[i]);
        pn_watch_rx_free(rx[i]);
    }
    pthread_join(th, NULL);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- no torn value ---------------------------------------------------------- */

#define TORN_SIZE 64
#define TORN_WRITES 50000

typedef struct torn_arg {
    pn_watch_tx *tx;
    atomic_bool *stop;
    atomic_long *reads;             /* the reader thread's count */
} torn_arg;

/* Writes at least TORN_WRITES values, and goes on until the reader thread
 * has read 1000 times while it writes (so the two overlap). */
static void *torn_writer(void *arg)
{
    torn_arg *a = arg;
    unsigned char buf[TORN_SIZE];
    while (atomic_load(a->reads) == 0)
        sched_yield();
    long start = atomic_load(a->reads);
    for (int i = 0; i < TORN_WRITES || atomic_load(a->reads) - start < 1000; i++) {
        memset(buf, i & 0xff, sizeof buf);
        pn_watch_send_replace(a->tx, buf, NULL);
    }
    atomic_store(a->stop, true);
    return NULL;
}

static int torn_check(const unsigned char *b)
{
    for (int i = 1; i < TORN_SIZE; i++)
        if (b[i] != b[0])
            return 1;
    return 0;
}

typedef struct torn_reader_arg {
    pn_watch_rx *rx;
    atomic_bool *stop;
    atomic_long reads;
    long torn;
} torn_reader_arg;

static void *torn_reader(void *arg)
{
    torn_reader_arg *a = arg;
    unsigned char buf[TORN_SIZE];
    while (!atomic_load(a->stop)) {
        pn_watch_borrow_and_update(a->rx, buf);
        a->torn += torn_check(buf);
        atomic_fetch_add(&a->reads, 1);
    }
    return NULL;
}

/* A task that reads the value after each change until stop. */
typedef struct torn_task {
    pn_future base;
    pn_watch_rx *rx;
    atomic_bool *stop;
    pn_watch_changed_future ch;
    bool active;
    long reads, torn;
} torn_task;

static pn_poll torn_task_poll(pn_future *f, pn_cx *cx)
{
    torn_task *t = (torn_task *)f;
    unsigned char buf[TORN_SIZE];
    for (;;) {
        if (atomic_load(t->stop))
            goto out;
        if (!t->active) {
            t->ch = pn_watch_changed(t->rx);
            t->active = true;
        }
        if (pn_future_poll(&t->ch.base, cx) == PN_PENDING)
            return PN_PENDING;
        t->active = false;
        if (t->ch.res)
            goto out;
        pn_watch_borrow(t->rx, buf);
        t->torn += torn_check(buf);
        t->reads++;
    }
out:
    if (t->active)
        pn_future_drop(&t->ch.base);
    t->active = false;
    return PN_READY;
}

static void torn_task_drop(pn_future *f)
{
    torn_task *t = (torn_task *)f;
    if (t->active)
        pn_future_drop(&t->ch.base);
}

static const pn_future_vtable torn_task_vt = { torn_task_poll, torn_task_drop, "torn_task" };

BOTH(watch, a_reader_never_sees_a_torn_value)
{
    pn_runtime *rt = flavour_new(fl);
    unsigned char init[TORN_SIZE];
    memset(init, 0, sizeof init);
    pn_watch_tx *tx;
    pn_watch_rx *rx, *rx_task;
    cr_assert_eq(pn_watch_new(TORN_SIZE, init, &tx, &rx), 0);
    cr_assert_eq(pn_watch_rx_clone(rx, &rx_task), 0);
    atomic_bool stop = false;
    torn_task tt = { .base = { &torn_task_vt }, .rx = rx_task, .stop = &stop };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, tt, &h), 0);
    torn_reader_arg ra = { rx, &stop, 0, 0 };
    torn_arg wa = { tx, &stop, &ra.reads };
    pthread_t reader, writer;
    cr_assert_eq(pthread_create(&reader, NULL, torn_reader, &ra), 0);
    cr_assert_eq(pthread_create(&writer, NULL, torn_writer, &wa), 0);
    pthread_join(writer, NULL);
    pn_watch_tx_free(tx);             /* wakes the task if it waits */
    pthread_join(reader, NULL);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    torn_task *out = j.output;
    cr_assert_eq(ra.torn, 0, "a thread saw a torn value (%ld of %ld)", ra.torn,
                 atomic_load(&ra.reads));
    cr_assert_eq(out->torn, 0, "a task saw a torn value (%ld of %ld)", out->torn, out->reads);
    cr_assert_gt(atomic_load(&ra.reads), 1000);
    pn_join_handle_free(h);
    pn_watch_rx_free(rx);
    pn_watch_rx_free(rx_task);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* A plain thread waits with blocking_changed while another sends. */
static void *blocking_waiter(void *arg)
{
    pn_watch_rx *rx = arg;
    int v = 0, last = 0;
    long bad = 0;
    for (;;) {
        int r = pn_watch_blocking_changed(rx);
        if (r == -EPIPE)
            break;
        pn_watch_borrow_and_update(rx, &v);
        bad += v <= last;
        last = v;
    }
    return (void *)(intptr_t)(bad ? -1 : last);
}

Test(watch, blocking_changed_on_plain_threads)
{
    pn_watch_tx *tx;
    pn_watch_rx *rx, *rx2;
    int zero = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &zero, &tx, &rx), 0);
    cr_assert_eq(pn_watch_rx_clone(rx, &rx2), 0);
    pthread_t a, b;
    cr_assert_eq(pthread_create(&a, NULL, blocking_waiter, rx), 0);
    cr_assert_eq(pthread_create(&b, NULL, blocking_waiter, rx2), 0);
    for (int i = 1; i <= 5000; i++) {
        cr_assert_eq(pn_watch_send(tx, &i), 0);
        if (i % 8 == 0)
            sched_yield();
    }
    pn_watch_tx_free(tx);
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    cr_assert_eq((intptr_t)ra, 5000, "thread a ended at %ld", (long)(intptr_t)ra);
    cr_assert_eq((intptr_t)rb, 5000);
    pn_watch_rx_free(rx);
    pn_watch_rx_free(rx2);
}

/* ---- send_if_modified and the sender's closed() ------------------------------ */

static bool bump_if_even(void *value, void *arg)
{
    int *v = value;
    (*(int *)arg)++;
    if (*v % 2)
        return false;
    (*v)++;
    return true;
}

Test(watch, send_if_modified_bumps_the_version_only_when_it_changed)
{
    pn_watch_tx *tx;
    pn_watch_rx *rx;
    int v = 2, calls = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    pn_watch_changed_future f = pn_watch_changed(rx);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    cr_assert_eq(pn_watch_send_if_modified(tx, bump_if_even, &calls), 1);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_READY);
    cr_assert_eq(pn_watch_borrow(rx, &v), 0);
    cr_assert_eq(v, 3);
    f = pn_watch_changed(rx);
    cr_assert_eq(pn_future_poll(&f.base, &cx), PN_PENDING);
    cr_assert_eq(pn_watch_send_if_modified(tx, bump_if_even, &calls), 0, "3 is odd: unchanged");
    cr_assert_eq(atomic_load(&p.wakes), 1, "no change, no wake");
    cr_assert_eq(pn_watch_has_changed(rx), 0);
    cr_assert_eq(calls, 2);
    pn_future_drop(&f.base);
    cr_assert_eq(waker_probe_held(&p), 0);
    cr_assert_eq(pn_watch_send_if_modified(NULL, bump_if_even, &calls), -EINVAL);
    cr_assert_eq(pn_watch_send_if_modified(tx, NULL, &calls), -EINVAL);
    pn_watch_rx_free(rx);
    v = 4;
    cr_assert_eq(pn_watch_send_if_modified(tx, bump_if_even, &calls), 0, "3 is still odd");
    pn_watch_tx_free(tx);
}

typedef struct free_rx_later {
    pn_future base;
    pn_watch_rx *rx;
    int left;
} free_rx_later;

static pn_poll free_rx_later_poll(pn_future *f, pn_cx *cx)
{
    free_rx_later *t = (free_rx_later *)f;
    if (t->left-- > 0) {
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    pn_watch_rx_free(t->rx);
    return PN_READY;
}

static const pn_future_vtable free_rx_later_vt = { free_rx_later_poll, NULL, "free_rx_later" };

BOTH(watch, tx_closed_completes_when_the_last_receiver_goes)
{
    pn_runtime *rt = flavour_new(fl);
    pn_watch_tx *tx;
    pn_watch_rx *rx, *rx2;
    int v = 0;
    cr_assert_eq(pn_watch_new(sizeof(int), &v, &tx, &rx), 0);
    cr_assert_eq(pn_watch_rx_clone(rx, &rx2), 0);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    pn_watch_closed_future c = pn_watch_tx_closed(tx);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_PENDING);
    pn_watch_closed_future d = pn_watch_tx_closed(tx);
    cr_assert_eq(pn_future_poll(&d.base, &cx), PN_PENDING);
    pn_future_drop(&d.base);          /* a dropped one is not woken */
    pn_watch_rx_free(rx2);
    cr_assert_eq(atomic_load(&p.wakes), 0, "one receiver is left");
    pn_watch_rx_free(rx);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_READY);
    cr_assert_eq(c.res, 0);
    cr_assert_eq(waker_probe_held(&p), 0);
    c = pn_watch_tx_closed(tx);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_READY, "no receiver: at once");
    /* on a runtime: a task frees the receiver later */
    cr_assert_eq(pn_watch_subscribe(tx, &rx), 0);
    free_rx_later t = { { &free_rx_later_vt }, rx, 3 };
    cr_assert_eq(PN_SPAWN(rt, t, NULL), 0);
    c = pn_watch_tx_closed(tx);
    AWAIT(rt, c);
    cr_assert_eq(c.res, 0);
    cr_assert_eq(pn_watch_receiver_count(tx), 0);
    c = pn_watch_tx_closed(NULL);
    AWAIT(rt, c);
    cr_assert_eq(c.res, -EINVAL);
    pn_watch_tx_free(tx);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
