/*
 * test_cancel.c - cancellation tokens (pollen/cancel.h) and the wait group
 * (pollen/waitgroup.h).
 *
 * Tokens: cancel is idempotent and seen by is_cancelled; cancelling a
 * parent cancels children and grandchildren and wakes their waiters (both
 * runtimes; and from a plain thread while tasks wait on the multi-thread
 * runtime); cancelling a child leaves parent and siblings alone; a child
 * of a cancelled token is born cancelled; freeing a middle token hands its
 * children to its parent, freeing a root leaves its children working; a
 * pending cancelled() future keeps its token alive; dropping it pending
 * gives back its waker and its reference (probe + ASan); a free that
 * races a cancel (forced at "cancel_token.wake" and "cancel_token.free")
 * and threads creating and freeing children while the root is cancelled;
 * blocking_wait from a plain thread, -EDEADLK from a task.
 *
 * Wait group: add / done / count and their errors; wait is READY at zero,
 * wakes every waiter when the count reaches zero, stays released if the
 * count goes up before it polls; a dropped pending wait gives its waker
 * back; many threads call done while tasks and plain threads wait.
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "core/chaos.h"
#include "pollen/cancel.h"
#include "pollen/waitgroup.h"

static void cancel_fini(void) { pn__point_set_hook(NULL); }

TestSuite(cancel, .timeout = PN_TEST_TIMEOUT, .fini = cancel_fini);
TestSuite(wait_group, .timeout = PN_TEST_TIMEOUT, .fini = cancel_fini);

static pn_waker probe_waker(waker_probe *p) { return (pn_waker){ p, &waker_probe_vt }; }

/* A context with no runtime, for polling sync futures by hand. */
static pn_cx probe_cx(const pn_waker *w)
{
    return (pn_cx){ .waker = w, .budget = 1000 };
}

/* ---- tokens: single-threaded semantics --------------------------------------- */

Test(cancel, cancel_is_idempotent_and_seen_by_is_cancelled)
{
    pn_cancel_token *t = pn_cancel_token_new();
    cr_assert_not_null(t);
    cr_assert(!pn_cancel_token_is_cancelled(t));
    pn_cancel_token *t2 = pn_cancel_token_clone(t);
    cr_assert_eq(t2, t);
    pn_cancel_token_cancel(t);
    cr_assert(pn_cancel_token_is_cancelled(t));
    pn_cancel_token_cancel(t2);
    cr_assert(pn_cancel_token_is_cancelled(t));
    pn_cancel_token_free(t2);
    cr_assert(pn_cancel_token_is_cancelled(t), "one reference left");
    pn_cancel_token_free(t);
    /* NULLs */
    errno = 0;
    cr_assert_null(pn_cancel_token_child(NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(pn_cancel_token_clone(NULL));
    cr_assert(!pn_cancel_token_is_cancelled(NULL));
    pn_cancel_token_cancel(NULL);
    pn_cancel_token_free(NULL);
    cr_assert_eq(pn_cancel_token_blocking_wait(NULL), -EINVAL);
    pn_cancel_wait_future c = pn_cancel_token_cancelled(NULL);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_READY);
    cr_assert_eq(c.res, -EINVAL);
    pn_future_drop(&c.base);
}

Test(cancel, a_child_cancel_does_not_go_up_and_a_parent_cancel_goes_down)
{
    pn_cancel_token *root = pn_cancel_token_new();
    pn_cancel_token *a = pn_cancel_token_child(root);
    pn_cancel_token *b = pn_cancel_token_child(root);
    pn_cancel_token *a1 = pn_cancel_token_child(a);
    pn_cancel_token *a2 = pn_cancel_token_child(a);
    pn_cancel_token *b1 = pn_cancel_token_child(b);
    pn_cancel_token *a1x = pn_cancel_token_child(a1);
    pn_cancel_token_cancel(a);
    cr_assert(pn_cancel_token_is_cancelled(a));
    cr_assert(pn_cancel_token_is_cancelled(a1));
    cr_assert(pn_cancel_token_is_cancelled(a2));
    cr_assert(pn_cancel_token_is_cancelled(a1x));
    cr_assert(!pn_cancel_token_is_cancelled(root), "a child's cancel does not go up");
    cr_assert(!pn_cancel_token_is_cancelled(b), "nor sideways");
    cr_assert(!pn_cancel_token_is_cancelled(b1));
    pn_cancel_token *a3 = pn_cancel_token_child(a);
    cr_assert(pn_cancel_token_is_cancelled(a3), "born cancelled");
    pn_cancel_token_cancel(root);
    cr_assert(pn_cancel_token_is_cancelled(b));
    cr_assert(pn_cancel_token_is_cancelled(b1));
    pn_cancel_token *all[] = { a1x, a3, b1, a2, a1, root, b, a };  /* any order */
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        pn_cancel_token_free(all[i]);
}

Test(cancel, a_freed_token_hands_its_children_to_its_parent)
{
    pn_cancel_token *root = pn_cancel_token_new();
    pn_cancel_token *mid = pn_cancel_token_child(root);
    pn_cancel_token *leaf = pn_cancel_token_child(mid);
    pn_cancel_token *leaf2 = pn_cancel_token_child(mid);
    pn_cancel_token_free(mid);                /* leaf and leaf2 go to root */
    cr_assert(!pn_cancel_token_is_cancelled(leaf));
    pn_cancel_token_cancel(root);
    cr_assert(pn_cancel_token_is_cancelled(leaf), "the grandparent still cancels it");
    cr_assert(pn_cancel_token_is_cancelled(leaf2));
    pn_cancel_token_free(leaf);
    pn_cancel_token_free(root);
    pn_cancel_token_free(leaf2);

    /* a freed root: its children become roots and keep working */
    root = pn_cancel_token_new();
    pn_cancel_token *c1 = pn_cancel_token_child(root);
    pn_cancel_token *c2 = pn_cancel_token_child(root);
    pn_cancel_token *g = pn_cancel_token_child(c1);
    pn_cancel_token_free(root);
    cr_assert(!pn_cancel_token_is_cancelled(c1));
    pn_cancel_token_cancel(c1);
    cr_assert(pn_cancel_token_is_cancelled(g));
    cr_assert(!pn_cancel_token_is_cancelled(c2));
    pn_cancel_token *c3 = pn_cancel_token_child(c2);
    pn_cancel_token_cancel(c2);
    cr_assert(pn_cancel_token_is_cancelled(c3));
    pn_cancel_token_free(c1);
    pn_cancel_token_free(c2);
    pn_cancel_token_free(g);
    pn_cancel_token_free(c3);
}

Test(cancel, cancelled_future_by_hand)
{
    pn_cancel_token *root = pn_cancel_token_new();
    pn_cancel_token *kid = pn_cancel_token_child(root);
    waker_probe p = { 0 }, q = { 0 };
    pn_waker wp = probe_waker(&p), wq = probe_waker(&q);
    pn_cx cxp = probe_cx(&wp), cxq = probe_cx(&wq);
    pn_cancel_wait_future a = pn_cancel_token_cancelled(kid);
    pn_cancel_wait_future b = pn_cancel_token_cancelled(kid);
    cr_assert_eq(pn_future_poll(&a.base, &cxp), PN_PENDING);
    cr_assert_eq(pn_future_poll(&a.base, &cxp), PN_PENDING);
    cr_assert_eq(atomic_load(&p.clones), 1, "one task's waker is kept once");
    cr_assert_eq(pn_future_poll(&b.base, &cxq), PN_PENDING);
    /* b is dropped pending: its waker and token reference go back */
    pn_future_drop(&b.base);
    cr_assert_eq(waker_probe_held(&q), 0);
    /* the waiting future holds the token: the user's reference can go */
    pn_cancel_token_free(kid);
    pn_cancel_token_cancel(root);
    cr_assert_eq(atomic_load(&p.wakes), 1, "the grandparent's cancel wakes the waiter");
    cr_assert_eq(waker_probe_held(&p), 0);
    cr_assert_eq(pn_future_poll(&a.base, &cxp), PN_READY);   /* frees kid */
    cr_assert_eq(a.res, 0);
    pn_future_drop(&a.base);                  /* READY: no-op */
    /* already cancelled: READY at once, nothing held */
    pn_cancel_wait_future c = pn_cancel_token_cancelled(root);
    cr_assert_eq(pn_future_poll(&c.base, &cxq), PN_READY);
    cr_assert_eq(waker_probe_held(&q), 0);
    pn_cancel_token_free(root);
}

/* Dropping a pending future through a real task (probed_drop) and freeing
 * the token only through the future's own reference. */
Test(cancel, dropping_a_pending_cancelled_future_leaks_nothing)
{
    pn_runtime *rt = rt_new();
    pn_cancel_token *t = pn_cancel_token_new();
    pn_cancel_wait_future c = pn_cancel_token_cancelled(t);
    waker_probe p = { 0 };
    probed_drop d = probed_drop_of(&c.base, &p);
    AWAIT(rt, d);
    cr_assert_eq(d.first, PN_PENDING);
    cr_assert_eq(waker_probe_held(&p), 0);
    /* last user reference freed while a future holds one, then the drop
     * frees the token */
    pn_cancel_wait_future e = pn_cancel_token_cancelled(t);
    waker_probe q = { 0 };
    pn_waker wq = probe_waker(&q);
    pn_cx cx = probe_cx(&wq);
    cr_assert_eq(pn_future_poll(&e.base, &cx), PN_PENDING);
    pn_cancel_token_free(t);
    pn_future_drop(&e.base);                  /* ASan: nothing leaks */
    cr_assert_eq(waker_probe_held(&q), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- tokens with tasks and threads ---------------------------------------------- */

typedef struct waiter_task {
    pn_future base;
    pn_cancel_wait_future c;
    atomic_int *woken;
} waiter_task;

static pn_poll waiter_task_poll(pn_future *f, pn_cx *cx)
{
    waiter_task *w = (waiter_task *)f;
    if (pn_future_poll(&w->c.base, cx) == PN_PENDING)
        return PN_PENDING;
    cr_assert_eq(w->c.res, 0);
    atomic_fetch_add(w->woken, 1);
    return PN_READY;
}

static void waiter_task_drop(pn_future *f) { pn_future_drop(&((waiter_task *)f)->c.base); }

static const pn_future_vtable waiter_task_vt = { waiter_task_poll, waiter_task_drop, "waiter_task" };

static waiter_task waiter_task_new(pn_cancel_token *t, atomic_int *woken)
{
    return (waiter_task){ .base = { &waiter_task_vt }, .c = pn_cancel_token_cancelled(t),
                          .woken = woken };
}

#define TREE_KIDS 3

typedef struct tree3 {
    pn_cancel_token *root, *kid[TREE_KIDS], *grand[TREE_KIDS][TREE_KIDS];
} tree3;

static void tree3_new(tree3 *t)
{
    t->root = pn_cancel_token_new();
    for (int i = 0; i < TREE_KIDS; i++) {
        t->kid[i] = pn_cancel_token_child(t->root);
        for (int j = 0; j < TREE_KIDS; j++)
            t->grand[i][j] = pn_cancel_token_child(t->kid[i]);
    }
}

static void tree3_free(tree3 *t)
{
    for (int i = 0; i < TREE_KIDS; i++) {
        for (int j = 0; j < TREE_KIDS; j++)
            pn_cancel_token_free(t->grand[i][j]);
        pn_cancel_token_free(t->kid[i]);
    }
    pn_cancel_token_free(t->root);
}

static void *cancel_thread(void *p)
{
    pn_cancel_token_cancel(p);
    return NULL;
}

/* Waiters on every grandchild (several each) and on the children; the
 * root is cancelled from the test thread (current-thread runtime: between
 * block_ons) or from a plain thread while the workers wait. */
static void tree_wake_on(pn_runtime_flavor fl, bool from_thread)
{
    pn_runtime *rt = flavour_new(fl);
    tree3 t;
    tree3_new(&t);
    atomic_int woken = 0;
    pn_join_handle *h[TREE_KIDS * TREE_KIDS * 2 + TREE_KIDS];
    int n = 0;
    for (int i = 0; i < TREE_KIDS; i++) {
        waiter_task w = waiter_task_new(t.kid[i], &woken);
        cr_assert_eq(PN_SPAWN(rt, w, &h[n++]), 0);
        for (int j = 0; j < TREE_KIDS; j++)
            for (int k = 0; k < 2; k++) {
                waiter_task g = waiter_task_new(t.grand[i][j], &woken);
                cr_assert_eq(PN_SPAWN(rt, g, &h[n++]), 0);
            }
    }
    /* let them all queue (a yield or two on either runtime) */
    for (int i = 0; i < 3; i++) {
        pn_yield_now_future y = pn_yield();
        AWAIT(rt, y);
    }
    pthread_t th;
    if (from_thread)
        cr_assert_eq(pthread_create(&th, NULL, cancel_thread, t.root), 0);
    else
        pn_cancel_token_cancel(t.root);
    for (int i = 0; i < n; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);                         /* a lost wake: the watchdog */
        cr_assert_eq(j.res, 0);
        pn_join_handle_free(h[i]);
    }
    if (from_thread)
        cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(atomic_load(&woken), n);
    tree3_free(&t);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(cancel, cancelling_the_root_wakes_the_waiters_of_grandchildren)
{
    tree_wake_on(fl, false);
}

BOTH(cancel, a_plain_thread_cancels_while_tasks_wait)
{
    tree_wake_on(fl, true);
}

/* Tasks still waiting when the runtime shuts down are dropped: each gives
 * its reference back (ASan).  The tasks own their references (the _owned
 * future): the test frees its own before some tasks were ever polled. */
BOTH(cancel, waiters_dropped_by_shutdown_release_the_token)
{
    pn_runtime *rt = flavour_new(fl);
    pn_cancel_token *t = pn_cancel_token_new();
    pn_cancel_token *k = pn_cancel_token_child(t);
    atomic_int woken = 0;
    for (int i = 0; i < 8; i++) {
        waiter_task w = waiter_task_new(NULL, &woken);
        w.c = pn_cancel_token_cancelled_owned(pn_cancel_token_clone(i % 2 ? t : k));
        cr_assert_eq(PN_SPAWN(rt, w, NULL), 0);
    }
    pn_yield_now_future y = pn_yield();
    AWAIT(rt, y);
    pn_cancel_token_free(k);
    pn_cancel_token_free(t);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(atomic_load(&woken), 0);
}

/* ---- races: a free against a cancel ------------------------------------------------ */

static pn_cancel_token *race_victim, *race_root;
static _Atomic int race_hits;

/* Between the cancel's unlock and its wakes, the victim's last reference
 * goes (it leaves the tree the cancel just walked). */
static void free_at_wake(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "cancel_token.wake") || atomic_fetch_add(&race_hits, 1))
        return;
    pn_cancel_token_free(race_victim);
}

/* A token whose last reference just went, not yet out of the tree: the
 * root is cancelled right there (the walk meets the dying token). */
static void cancel_at_free(const char *name, void *arg)
{
    if (strcmp(name, "cancel_token.free") || arg != race_victim ||
        atomic_fetch_add(&race_hits, 1))
        return;
    pn_cancel_token_cancel(race_root);
}

Test(cancel, an_owned_future_releases_its_reference_when_ready_or_dropped)
{
    pn_cancel_token *t = pn_cancel_token_new();
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    pn_cancel_wait_future never = pn_cancel_token_cancelled_owned(pn_cancel_token_clone(t));
    pn_future_drop(&never.base);              /* never polled: releases */
    pn_cancel_wait_future a = pn_cancel_token_cancelled_owned(pn_cancel_token_clone(t));
    pn_cancel_wait_future b = pn_cancel_token_cancelled_owned(pn_cancel_token_clone(t));
    cr_assert_eq(pn_future_poll(&a.base, &cx), PN_PENDING);
    pn_cancel_token_free(t);                  /* a and b keep it */
    cr_assert_eq(pn_future_poll(&b.base, &cx), PN_PENDING);
    pn_future_drop(&b.base);
    cr_assert_eq(pn_future_poll(&a.base, &cx), PN_PENDING);
    pn_future_drop(&a.base);                  /* the last reference: ASan */
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_cancel_wait_future n = pn_cancel_token_cancelled_owned(NULL);
    cr_assert_eq(pn_future_poll(&n.base, &cx), PN_READY);
    cr_assert_eq(n.res, -EINVAL);
    /* READY releases */
    t = pn_cancel_token_new();
    a = pn_cancel_token_cancelled_owned(pn_cancel_token_clone(t));
    pn_cancel_token_cancel(t);
    pn_cancel_token_free(t);
    cr_assert_eq(pn_future_poll(&a.base, &cx), PN_READY);
    cr_assert_eq(a.res, 0);
    pn_future_drop(&a.base);
}

Test(cancel, a_free_racing_a_cancel_is_safe_both_ways)
{
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);

    /* the free during the cancel's wakes */
    race_root = pn_cancel_token_new();
    race_victim = pn_cancel_token_child(race_root);
    pn_cancel_token *leaf = pn_cancel_token_child(race_victim);
    pn_cancel_wait_future c = pn_cancel_token_cancelled(leaf);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_PENDING);
    atomic_store(&race_hits, 0);
    pn__point_set_hook(free_at_wake);
    pn_cancel_token_cancel(race_root);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&race_hits), 1);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_READY);
    cr_assert(pn_cancel_token_is_cancelled(leaf));
    pn_cancel_token_free(leaf);
    pn_cancel_token_free(race_root);

    /* the cancel during the free */
    race_root = pn_cancel_token_new();
    race_victim = pn_cancel_token_child(race_root);
    leaf = pn_cancel_token_child(race_victim);
    c = pn_cancel_token_cancelled(leaf);
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_PENDING);
    atomic_store(&race_hits, 0);
    pn__point_set_hook(cancel_at_free);
    pn_cancel_token_free(race_victim);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&race_hits), 1);
    cr_assert_eq(atomic_load(&p.wakes), 2, "the leaf's waiter was woken through the dying token");
    cr_assert_eq(pn_future_poll(&c.base, &cx), PN_READY);
    pn_cancel_token *late = pn_cancel_token_child(leaf);
    cr_assert(pn_cancel_token_is_cancelled(late));
    pn_cancel_token_free(late);
    pn_cancel_token_free(leaf);
    pn_cancel_token_free(race_root);
    cr_assert_eq(waker_probe_held(&p), 0);
}

#define CHURN_THREADS 3
#define CHURN_ROUNDS 2000

typedef struct churn_arg {
    pn_cancel_token *root;
    int born_cancelled_late;
    bool born_live;          /* a child made after the cancel was not cancelled */
    waker_probe pr;          /* checked once the cancel returned and the thread ended */
} churn_arg;

/* Make children (and grandchildren), wait on some by hand, free them, while
 * the main thread cancels the root: every token made after the cancel is
 * born cancelled; every waiter made before is woken. */
static void *churn(void *p)
{
    churn_arg *a = p;
    pn_waker w = probe_waker(&a->pr);
    pn_cx cx = probe_cx(&w);
    for (int i = 0; i < CHURN_ROUNDS; i++) {
        bool was = pn_cancel_token_is_cancelled(a->root);
        pn_cancel_token *c = pn_cancel_token_child(a->root);
        pn_cancel_token *g = pn_cancel_token_child(c);
        if (was) {
            if (!pn_cancel_token_is_cancelled(g))
                a->born_live = true;
            a->born_cancelled_late++;
        }
        pn_cancel_wait_future f = pn_cancel_token_cancelled(g);
        pn_poll r = pn_future_poll(&f.base, &cx);
        if (i % 2)
            pn_cancel_token_free(c);          /* g moves up to the root */
        if (r == PN_PENDING)
            pn_future_drop(&f.base);
        if (!(i % 2))
            pn_cancel_token_free(c);
        pn_cancel_token_free(g);
    }
    return NULL;
}

Test(cancel, threads_make_and_free_children_while_the_root_is_cancelled)
{
    pn_cancel_token *root = pn_cancel_token_new();
    churn_arg a[CHURN_THREADS];
    pthread_t th[CHURN_THREADS];
    for (int i = 0; i < CHURN_THREADS; i++) {
        a[i] = (churn_arg){ .root = root };
        cr_assert_eq(pthread_create(&th[i], NULL, churn, &a[i]), 0);
    }
    for (int i = 0; i < 50; i++)
        sched_yield();
    pn_cancel_token_cancel(root);
    for (int i = 0; i < CHURN_THREADS; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    /* Checked here, not in the threads: a waiter a thread dropped may have
     * had its waker taken out by the cancel, which wakes (and so releases)
     * it after its own lock is dropped, possibly after that thread ended. */
    for (int i = 0; i < CHURN_THREADS; i++) {
        cr_assert(!a[i].born_live, "thread %d: a child born after the cancel was live", i);
        cr_assert_eq(waker_probe_held(&a[i].pr), 0, "thread %d: a waker clone was kept", i);
    }
    pn_cancel_token_free(root);
}

/* ---- blocking_wait ------------------------------------------------------------------ */

static void *blocking_waiter(void *p)
{
    return (void *)(intptr_t)pn_cancel_token_blocking_wait(p);
}

typedef struct deadlk_task {
    pn_future base;
    pn_cancel_token *t;
    int err;
} deadlk_task;

static pn_poll deadlk_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    deadlk_task *d = (deadlk_task *)f;
    d->err = pn_cancel_token_blocking_wait(d->t);
    return PN_READY;
}

static const pn_future_vtable deadlk_vt = { deadlk_poll, NULL, "deadlk" };

Test(cancel, blocking_wait_from_a_plain_thread_and_edeadlk_from_a_task)
{
    pn_cancel_token *t = pn_cancel_token_new();
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, blocking_waiter, t), 0);
    pn_runtime *rt = rt_new();
    deadlk_task d = { .base = { &deadlk_vt }, .t = t };
    AWAIT(rt, d);
    cr_assert_eq(d.err, -EDEADLK);
    pn_cancel_token_cancel(t);
    for (int i = 0; i < 2; i++) {
        void *r;
        cr_assert_eq(pthread_join(th[i], &r), 0);
        cr_assert_eq((intptr_t)r, 0);
    }
    cr_assert_eq(pn_cancel_token_blocking_wait(t), 0, "cancelled: at once");
    pn_cancel_token_free(t);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- wait group ---------------------------------------------------------------------- */

Test(wait_group, add_done_count_and_their_errors)
{
    pn_wait_group wg = PN_WAIT_GROUP_INIT;
    cr_assert_eq(pn_wait_group_count(&wg), 0);
    cr_assert_eq(pn_wait_group_done(&wg), -EINVAL, "below zero");
    cr_assert_eq(pn_wait_group_add(&wg, 0), -EINVAL);
    cr_assert_eq(pn_wait_group_add(&wg, 3), 0);
    cr_assert_eq(pn_wait_group_add(&wg, SIZE_MAX), -EOVERFLOW);
    cr_assert_eq(pn_wait_group_count(&wg), 3);
    cr_assert_eq(pn_wait_group_done(&wg), 0);
    cr_assert_eq(pn_wait_group_count(&wg), 2);
    cr_assert_eq(pn_wait_group_add(NULL, 1), -EINVAL);
    cr_assert_eq(pn_wait_group_done(NULL), -EINVAL);
    cr_assert_eq(pn_wait_group_count(NULL), 0);
    cr_assert_eq(pn_wait_group_blocking_wait(NULL), -EINVAL);
    pn_wait_group_init(NULL);
    pn_wait_group_destroy(NULL);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    pn_wait_group_wait_future n = pn_wait_group_wait(NULL);
    cr_assert_eq(pn_future_poll(&n.base, &cx), PN_READY);
    cr_assert_eq(n.res, -EINVAL);
    pn_wait_group_destroy(&wg);
}

Test(wait_group, wait_by_hand)
{
    pn_wait_group wg;
    pn_wait_group_init(&wg);
    waker_probe p = { 0 }, q = { 0 }, r = { 0 };
    pn_waker wp = probe_waker(&p), wq = probe_waker(&q), wr = probe_waker(&r);
    pn_cx cxp = probe_cx(&wp), cxq = probe_cx(&wq), cxr = probe_cx(&wr);
    pn_wait_group_wait_future a = pn_wait_group_wait(&wg);
    cr_assert_eq(pn_future_poll(&a.base, &cxp), PN_READY, "zero: at once");
    cr_assert_eq(a.res, 0);
    cr_assert_eq(pn_wait_group_add(&wg, 2), 0);
    a = pn_wait_group_wait(&wg);
    pn_wait_group_wait_future b = pn_wait_group_wait(&wg);
    pn_wait_group_wait_future c = pn_wait_group_wait(&wg);
    cr_assert_eq(pn_future_poll(&a.base, &cxp), PN_PENDING);
    cr_assert_eq(pn_future_poll(&b.base, &cxq), PN_PENDING);
    cr_assert_eq(pn_future_poll(&c.base, &cxr), PN_PENDING);
    pn_future_drop(&c.base);                  /* dropped pending: gives its waker back */
    cr_assert_eq(waker_probe_held(&r), 0);
    cr_assert_eq(pn_wait_group_done(&wg), 0);
    cr_assert_eq(atomic_load(&p.wakes), 0);
    cr_assert_eq(pn_wait_group_done(&wg), 0);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(atomic_load(&q.wakes), 1);
    cr_assert_eq(atomic_load(&r.wakes), 0);
    /* the count goes up again before they poll: they were released */
    cr_assert_eq(pn_wait_group_add(&wg, 1), 0);
    cr_assert_eq(pn_future_poll(&a.base, &cxp), PN_READY);
    cr_assert_eq(pn_future_poll(&b.base, &cxq), PN_READY);
    pn_future_drop(&a.base);                  /* READY: no-op */
    /* a newcomer waits for the new round */
    c = pn_wait_group_wait(&wg);
    cr_assert_eq(pn_future_poll(&c.base, &cxr), PN_PENDING);
    cr_assert_eq(pn_wait_group_done(&wg), 0);
    cr_assert_eq(pn_future_poll(&c.base, &cxr), PN_READY);
    cr_assert_eq(waker_probe_held(&p), 0);
    cr_assert_eq(waker_probe_held(&q), 0);
    cr_assert_eq(waker_probe_held(&r), 0);
    pn_wait_group_destroy(&wg);
}

/* Many waiters (more than one wake batch) released at once. */
Test(wait_group, every_waiter_is_woken_past_a_wake_batch)
{
    pn_wait_group wg = PN_WAIT_GROUP_INIT;
    enum { N = 100 };
    static pn_wait_group_wait_future f[N];
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_cx cx = probe_cx(&w);
    cr_assert_eq(pn_wait_group_add(&wg, 1), 0);
    for (int i = 0; i < N; i++) {
        f[i] = pn_wait_group_wait(&wg);
        cr_assert_eq(pn_future_poll(&f[i].base, &cx), PN_PENDING);
    }
    cr_assert_eq(pn_wait_group_done(&wg), 0);
    cr_assert_eq(atomic_load(&p.wakes), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(pn_future_poll(&f[i].base, &cx), PN_READY);
    cr_assert_eq(waker_probe_held(&p), 0);
}

typedef struct wg_arg {
    pn_wait_group *wg;
    int n;
    atomic_int *sum;
} wg_arg;

static void *wg_doner(void *p)
{
    wg_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        atomic_fetch_add(a->sum, 1);
        cr_assert_eq(pn_wait_group_done(a->wg), 0);
        if (!(i % 64))
            sched_yield();
    }
    return NULL;
}

static void *wg_blocker(void *p)
{
    wg_arg *a = p;
    cr_assert_eq(pn_wait_group_blocking_wait(a->wg), 0);
    cr_assert_eq(atomic_load(a->sum), a->n, "woken before every done");
    return NULL;
}

typedef struct wg_task {
    pn_future base;
    pn_wait_group_wait_future w;
    atomic_int *sum;
    int expect;
} wg_task;

static pn_poll wg_task_poll(pn_future *f, pn_cx *cx)
{
    wg_task *t = (wg_task *)f;
    if (pn_future_poll(&t->w.base, cx) == PN_PENDING)
        return PN_PENDING;
    cr_assert_eq(atomic_load(t->sum), t->expect, "woken before every done");
    return PN_READY;
}

static const pn_future_vtable wg_task_vt = { wg_task_poll, NULL, "wg_task" };

#define WG_THREADS 4
#define WG_PER 2000

BOTH(wait_group, many_threads_call_done_while_tasks_and_threads_wait)
{
    pn_runtime *rt = flavour_new(fl);
    pn_wait_group wg;
    pn_wait_group_init(&wg);
    atomic_int sum = 0;
    int total = WG_THREADS * WG_PER;
    cr_assert_eq(pn_wait_group_add(&wg, (size_t)total), 0);
    pn_join_handle *h[4];
    for (int i = 0; i < 4; i++) {
        wg_task t = { .base = { &wg_task_vt }, .w = pn_wait_group_wait(&wg), .sum = &sum,
                      .expect = total };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    pthread_t bl[2], th[WG_THREADS];
    wg_arg ba = { &wg, total, &sum };
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&bl[i], NULL, wg_blocker, &ba), 0);
    wg_arg a = { &wg, WG_PER, &sum };
    for (int i = 0; i < WG_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, wg_doner, &a), 0);
    for (int i = 0; i < 4; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        pn_join_handle_free(h[i]);
    }
    for (int i = 0; i < WG_THREADS; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_join(bl[i], NULL), 0);
    cr_assert_eq(pn_wait_group_count(&wg), 0);
    pn_wait_group_destroy(&wg);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
