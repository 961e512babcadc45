/*
 * test_notify.c - pn_notify (pollen/notify.h).
 *
 * Checked: notify_one stores one permit at most and wakes waiters in FIFO
 * order; notify_waiters wakes the futures made before it (polled or not)
 * and no later one, and stores nothing; a future chosen by notify_one and
 * dropped before it polls passes the notification on, to the next waiter
 * or back to the permit (also forced in the window between "chosen" and
 * "woken" at the point "notify.chosen"); one woken by notify_waiters
 * passes nothing; more waiters than a wake batch; and, across threads and
 * on both runtimes, the "make, check, await" pattern never misses a wake,
 * with random drops of pending futures.
 */
#include <pthread.h>
#include <sched.h>
#include "locks_helpers.h"

static void notify_fini(void) { pn__point_set_hook(NULL); }

TestSuite(notify, .timeout = PN_TEST_TIMEOUT, .fini = notify_fini);

Test(notify, notify_one_stores_one_permit_at_most)
{
    static pn_notify n = PN_NOTIFY_INIT;
    waker_probe pr = { 0 };
    pn_notify_one(&n);
    pn_notify_one(&n);
    pn_notify_one(&n);
    pn_notified_future a = pn_notify_notified(&n), b = pn_notify_notified(&n);
    cr_assert_eq(POLL(&a, &pr), PN_READY, "the stored permit");
    cr_assert_eq(a.res, 0);
    cr_assert_eq(POLL(&b, &pr), PN_PENDING, "only one was stored");
    pn_notify_one(&n);
    cr_assert_eq(atomic_load(&pr.wakes), 1);
    cr_assert_eq(POLL(&b, &pr), PN_READY);
    pn_notified_future c = pn_notify_notified(&n);
    cr_assert_eq(POLL(&c, &pr), PN_PENDING, "the wake used the notification up");
    pn_future_drop(&c.base);
    pn_future_drop(&a.base);                 /* READY: no-op */
    cr_assert_eq(waker_probe_held(&pr), 0);

    pn_notified_future bad = pn_notify_notified(NULL);
    cr_assert_eq(POLL(&bad, &pr), PN_READY);
    cr_assert_eq(bad.res, -EINVAL);
    pn_notify_one(NULL);
    pn_notify_waiters(NULL);
    cr_assert_eq(pn_notify_init(NULL), -EINVAL);
    pn_notify_destroy(NULL);
}

Test(notify, notify_one_wakes_waiters_in_fifo_order)
{
    pn_notify n;
    pn_notify_init(&n);
    enum { N = 5 };
    waker_probe pr[N];
    pn_notified_future f[N];
    memset(pr, 0, sizeof pr);
    for (int i = 0; i < N; i++) {
        f[i] = pn_notify_notified(&n);
        cr_assert_eq(POLL(&f[i], &pr[i]), PN_PENDING);
    }
    for (int i = 0; i < N; i++) {
        pn_notify_one(&n);
        for (int j = 0; j < N; j++)
            cr_assert_eq(atomic_load(&pr[j].wakes), j <= i, "after %d notify_one, waiter %d", i + 1, j);
        cr_assert_eq(POLL(&f[i], &pr[i]), PN_READY);
    }
    pn_notified_future last = pn_notify_notified(&n);
    cr_assert_eq(POLL(&last, &pr[0]), PN_PENDING, "no permit was stored meanwhile");
    pn_future_drop(&last.base);
    for (int i = 0; i < N; i++)
        cr_assert_eq(waker_probe_held(&pr[i]), 0);
    pn_notify_destroy(&n);
}

Test(notify, notify_waiters_wakes_only_the_futures_made_before_it)
{
    pn_notify n;
    pn_notify_init(&n);
    waker_probe pa = { 0 }, pb = { 0 }, pc = { 0 };
    pn_notified_future a = pn_notify_notified(&n), b = pn_notify_notified(&n);
    cr_assert_eq(POLL(&a, &pa), PN_PENDING);
    /* b is made but not polled yet: it was "waiting" in the Tokio sense */
    pn_notify_waiters(&n);
    pn_notified_future c = pn_notify_notified(&n);
    cr_assert_eq(atomic_load(&pa.wakes), 1);
    cr_assert_eq(POLL(&a, &pa), PN_READY);
    cr_assert_eq(POLL(&b, &pb), PN_READY, "made before the call: woken");
    cr_assert_eq(POLL(&c, &pc), PN_PENDING, "made after the call: not woken, no permit");
    pn_notify_waiters(&n);
    cr_assert_eq(atomic_load(&pc.wakes), 1);
    cr_assert_eq(POLL(&c, &pc), PN_READY);

    /* A permit stored by notify_one survives a notify_waiters, which
     * itself stores none. */
    pn_notify_waiters(&n);
    pn_notified_future d = pn_notify_notified(&n);
    cr_assert_eq(POLL(&d, &pa), PN_PENDING);
    pn_future_drop(&d.base);
    pn_notify_one(&n);
    pn_notify_waiters(&n);
    pn_notified_future e = pn_notify_notified(&n), f = pn_notify_notified(&n);
    cr_assert_eq(POLL(&e, &pa), PN_READY, "the permit");
    cr_assert_eq(POLL(&f, &pa), PN_PENDING);
    pn_future_drop(&f.base);
    cr_assert_eq(waker_probe_held(&pa) + waker_probe_held(&pb) + waker_probe_held(&pc), 0);
    pn_notify_destroy(&n);
}

Test(notify, notify_waiters_wakes_more_than_a_wake_batch)
{
    enum { N = 100 };
    pn_notify n;
    pn_notify_init(&n);
    static pn_notified_future f[N];
    waker_probe pr = { 0 }, late = { 0 };
    for (int i = 0; i < N; i++) {
        f[i] = pn_notify_notified(&n);
        cr_assert_eq(POLL(&f[i], &pr), PN_PENDING);
    }
    pn_future_drop(&f[50].base);            /* one leaves */
    pn_notify_waiters(&n);
    cr_assert_eq(atomic_load(&pr.wakes), N - 1);
    pn_notified_future after = pn_notify_notified(&n);
    cr_assert_eq(POLL(&after, &late), PN_PENDING);
    for (int i = 0; i < N; i++)
        if (i != 50)
            cr_assert_eq(POLL(&f[i], &pr), PN_READY);
    pn_notify_one(&n);
    cr_assert_eq(POLL(&after, &late), PN_READY, "notify_one went to the later waiter");
    cr_assert_eq(waker_probe_held(&pr) + waker_probe_held(&late), 0);
    pn_notify_destroy(&n);
}

Test(notify, a_chosen_future_dropped_before_its_poll_passes_the_notification_on)
{
    pn_notify n;
    pn_notify_init(&n);
    waker_probe pa = { 0 }, pb = { 0 };
    pn_notified_future a = pn_notify_notified(&n), b = pn_notify_notified(&n);
    cr_assert_eq(POLL(&a, &pa), PN_PENDING);
    cr_assert_eq(POLL(&b, &pb), PN_PENDING);
    pn_notify_one(&n);                        /* chooses a */
    cr_assert_eq(atomic_load(&pa.wakes), 1);
    pn_future_drop(&a.base);
    cr_assert_eq(atomic_load(&pb.wakes), 1, "passed on to b");
    cr_assert_eq(POLL(&b, &pb), PN_READY);

    /* With nobody behind it, it goes back as the stored permit. */
    pn_notified_future c = pn_notify_notified(&n);
    cr_assert_eq(POLL(&c, &pa), PN_PENDING);
    pn_notify_one(&n);
    pn_future_drop(&c.base);
    pn_notified_future d = pn_notify_notified(&n);
    cr_assert_eq(POLL(&d, &pa), PN_READY, "the permit came back");

    /* A future woken by notify_waiters passes nothing on. */
    pn_notified_future e = pn_notify_notified(&n), g = pn_notify_notified(&n);
    cr_assert_eq(POLL(&e, &pa), PN_PENDING);
    pn_notify_waiters(&n);
    cr_assert_eq(POLL(&g, &pb), PN_READY);    /* made before: woken too */
    pn_future_drop(&e.base);
    pn_notified_future h = pn_notify_notified(&n);
    cr_assert_eq(POLL(&h, &pb), PN_PENDING, "no permit came out of an all-wake");
    pn_future_drop(&h.base);
    cr_assert_eq(waker_probe_held(&pa) + waker_probe_held(&pb), 0);
    pn_notify_destroy(&n);
}

/* ---- the window between "chosen" and "woken" --------------------------- */

static pn_notified_future *chosen_victim;
static _Atomic int chosen_hits;

static void drop_at_chosen(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "notify.chosen") || atomic_fetch_add(&chosen_hits, 1))
        return;
    pn_future_drop(&chosen_victim->base);
}

Test(notify, a_drop_between_chosen_and_woken_passes_it_on)
{
    pn_notify n;
    pn_notify_init(&n);
    waker_probe pa = { 0 }, pb = { 0 };
    pn_notified_future a = pn_notify_notified(&n), b = pn_notify_notified(&n);
    cr_assert_eq(POLL(&a, &pa), PN_PENDING);
    cr_assert_eq(POLL(&b, &pb), PN_PENDING);
    chosen_victim = &a;
    atomic_store(&chosen_hits, 0);
    pn__point_set_hook(drop_at_chosen);
    pn_notify_one(&n);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&chosen_hits), 1, "the window was reached");
    cr_assert_eq(atomic_load(&pa.wakes), 1);
    cr_assert_eq(atomic_load(&pb.wakes), 1, "b got what a dropped");
    cr_assert_eq(POLL(&b, &pb), PN_READY);
    pn_notified_future c = pn_notify_notified(&n);
    cr_assert_eq(POLL(&c, &pa), PN_PENDING, "nothing was duplicated");
    pn_future_drop(&c.base);
    cr_assert_eq(waker_probe_held(&pa) + waker_probe_held(&pb), 0);
    pn_notify_destroy(&n);
}

/* ---- across threads ------------------------------------------------------ */

/* Consumers take tokens that producers (plain threads) add and announce
 * with notify_one; a consumer with no token makes a notified future,
 * checks again, and awaits it, sometimes dropping it after one poll.  The
 * one that takes the last token wakes the rest with notify_waiters.  A
 * lost notification hangs (the watchdog fails it); tokens are counted. */
typedef struct tokens {
    pn_notify n;
    _Atomic long left, taken;
    long total;
} tokens;

typedef struct consumer {
    pn_future base;
    int pc;
    tokens *t;
    unsigned seed;
    long mine;
    pn_notified_future wait;
} consumer;

static bool take_token(tokens *t)
{
    long cur = atomic_load(&t->left);
    while (cur > 0)
        if (atomic_compare_exchange_weak(&t->left, &cur, cur - 1))
            return true;
    return false;
}

static pn_poll consumer_poll(pn_future *f, pn_cx *cx)
{
    consumer *c = (consumer *)f;
    PN_ASYNC_BEGIN(c->pc);
    for (;;) {
        c->wait = pn_notify_notified(&c->t->n);
        if (take_token(c->t)) {
            pn_future_drop(&c->wait.base);
            c->mine++;
            if (atomic_fetch_add(&c->t->taken, 1) + 1 == c->t->total)
                pn_notify_waiters(&c->t->n);
            continue;
        }
        if (atomic_load(&c->t->taken) == c->t->total)
            break;
        if (rand_r(&c->seed) % 8 == 0) {
            if (pn_future_poll(&c->wait.base, cx) == PN_PENDING)
                pn_future_drop(&c->wait.base);     /* passes on a chosen one */
            continue;
        }
        PN_AWAIT(c->pc, &c->wait, cx);
    }
    PN_ASYNC_END(c->pc);
}

static void consumer_drop(pn_future *f) { pn_future_drop(&((consumer *)f)->wait.base); }

static const pn_future_vtable consumer_vt = { consumer_poll, consumer_drop, "consumer" };

typedef struct producer_arg {
    tokens *t;
    long count;
} producer_arg;

static void *producer(void *arg)
{
    producer_arg *a = arg;
    for (long i = 0; i < a->count; i++) {
        atomic_fetch_add(&a->t->left, 1);
        pn_notify_one(&a->t->n);
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

/* `victims` more consumers are aborted once a quarter of the tokens are
 * taken: wherever they are (waiting, chosen but not yet polled) their
 * drop must pass on what they were given. */
static void run_tokens(pn_runtime *rt, int consumers, int victims, int producers, long each)
{
    tokens t;
    pn_notify_init(&t.n);
    atomic_store(&t.left, 0);
    atomic_store(&t.taken, 0);
    t.total = producers * each;
    int all = consumers + victims;
    pn_join_handle **hs = calloc(all, sizeof *hs);
    for (int i = 0; i < all; i++) {
        consumer c = { .base = { &consumer_vt }, .t = &t, .seed = 11 + i };
        cr_assert_eq(PN_SPAWN(rt, c, &hs[i]), 0);
    }
    pthread_t th[8];
    producer_arg pa = { &t, each };
    for (int i = 0; i < producers; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, producer, &pa), 0);
    if (victims) {
        while (atomic_load(&t.taken) < t.total / 4)
            sched_yield();
        for (int i = consumers; i < all; i++)
            pn_join_handle_abort(hs[i]);
    }
    long sum = 0;
    for (int i = 0; i < all; i++) {
        pn_join_future j = pn_join(hs[i]);
        AWAIT(rt, j);
        if (i < consumers)
            cr_assert_eq(j.res, 0);
        if (j.res == 0)
            sum += ((consumer *)j.output)->mine;
        pn_join_handle_free(hs[i]);
    }
    for (int i = 0; i < producers; i++)
        pthread_join(th[i], NULL);
    free(hs);
    cr_assert_eq(atomic_load(&t.taken), t.total);
    cr_assert_eq(atomic_load(&t.left), 0);
    if (!victims)
        cr_assert_eq(sum, t.total, "tokens lost or taken twice");
    pn_notify_destroy(&t.n);
}

BOTH(notify, consumers_never_miss_a_notification_from_threads)
{
    pn_runtime *rt = flavour_new(fl);
    run_tokens(rt, 4, 0, 2, 2000);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(notify, stress_many_consumers_and_producers, .timeout = PN_TIMEOUT(60))
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_REACTOR_THREAD);
    for (int round = 0; round < 3; round++)
        run_tokens(rt, 40, round ? 10 : 0, 3, 5000);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* notify_waiters from a thread, against tasks that wait for a counter. */
typedef struct gen_waiter {
    pn_future base;
    int pc;
    pn_notify *n;
    _Atomic long *counter;
    long target;
    pn_notified_future wait;
} gen_waiter;

static pn_poll gen_waiter_poll(pn_future *f, pn_cx *cx)
{
    gen_waiter *g = (gen_waiter *)f;
    PN_ASYNC_BEGIN(g->pc);
    for (;;) {
        g->wait = pn_notify_notified(g->n);
        if (atomic_load(g->counter) >= g->target)
            break;
        PN_AWAIT(g->pc, &g->wait, cx);
    }
    pn_future_drop(&g->wait.base);
    PN_ASYNC_END(g->pc);
}

static const pn_future_vtable gen_waiter_vt = { gen_waiter_poll, NULL, "gen_waiter" };

typedef struct bump_arg {
    pn_notify *n;
    _Atomic long *counter;
    long to;
} bump_arg;

static void *bumper(void *arg)
{
    bump_arg *b = arg;
    for (long i = 0; i < b->to; i++) {
        atomic_fetch_add(b->counter, 1);
        pn_notify_waiters(b->n);
        if (i % 16 == 0)
            sched_yield();
    }
    return NULL;
}

BOTH(notify, notify_waiters_from_a_thread_reaches_every_waiting_task)
{
    pn_runtime *rt = flavour_new(fl);
    pn_notify n;
    pn_notify_init(&n);
    _Atomic long counter = 0;
    enum { T = 20, TO = 3000 };
    pn_join_handle *hs[T];
    for (int i = 0; i < T; i++) {
        gen_waiter g = { .base = { &gen_waiter_vt }, .n = &n, .counter = &counter,
                         .target = TO / T * (i + 1) };
        cr_assert_eq(PN_SPAWN(rt, g, &hs[i]), 0);
    }
    bump_arg b = { &n, &counter, TO };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, bumper, &b), 0);
    cr_assert_eq(join_all(rt, hs, T), 0);
    pthread_join(th, NULL);
    pn_notify_destroy(&n);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
