/*
 * test_semaphore.c - pn_semaphore (pollen/semaphore.h).
 *
 * Checked: arguments and errors; acquire/release/forget/try/add/available
 * by hand and on both runtimes; grants in queue order, partial grants to
 * the head, no overtaking by later acquires or try_acquire (a large
 * acquire is not starved); the drop of a pending acquire gives back its
 * partial permits, which complete the next waiter; a drop in the window
 * between "granted" and "woken" (forced at the point "semaphore.granted");
 * close; and, across threads, permits conserved and the limit never
 * exceeded under random drops and aborts.
 */
#include <pthread.h>
#include <sched.h>
#include "locks_helpers.h"

static void semaphore_fini(void) { pn__point_set_hook(NULL); }

TestSuite(semaphore, .timeout = PN_TEST_TIMEOUT, .fini = semaphore_fini);

Test(semaphore, arguments_and_errors)
{
    pn_semaphore s;
    cr_assert_eq(pn_semaphore_init(NULL, 1), -EINVAL);
    cr_assert_eq(pn_semaphore_init(&s, PN_SEMAPHORE_MAX_PERMITS + 1), -EINVAL);
    cr_assert_eq(pn_semaphore_init(&s, PN_SEMAPHORE_MAX_PERMITS), 0);
    cr_assert_eq(pn_semaphore_available(&s), PN_SEMAPHORE_MAX_PERMITS);
    cr_assert_eq(pn_semaphore_add_permits(&s, 1), -EINVAL, "beyond the max");
    cr_assert_eq(pn_semaphore_available(&s), PN_SEMAPHORE_MAX_PERMITS, "nothing added");
    pn_semaphore_destroy(&s);

    cr_assert_eq(pn_semaphore_init(&s, 2), 0);
    cr_assert_eq(pn_semaphore_try_acquire(NULL, 1), -EINVAL);
    cr_assert_eq(pn_semaphore_try_acquire(&s, 0), -EINVAL);
    cr_assert_eq(pn_semaphore_try_acquire(&s, PN_SEMAPHORE_MAX_PERMITS + 1), -EINVAL);
    cr_assert_eq(pn_semaphore_try_acquire(&s, 3), -EAGAIN);
    cr_assert_eq(pn_semaphore_add_permits(NULL, 1), -EINVAL);
    cr_assert_eq(pn_semaphore_add_permits(&s, PN_SEMAPHORE_MAX_PERMITS + 1), -EINVAL);
    cr_assert_eq(pn_semaphore_add_permits(&s, 0), 0);
    cr_assert_eq(pn_semaphore_available(NULL), 0);
    cr_assert(!pn_semaphore_is_closed(NULL));

    waker_probe pr = { 0 };
    pn_semaphore_permit bad[3] = { pn_semaphore_acquire(NULL, 1), pn_semaphore_acquire(&s, 0),
                                   pn_semaphore_acquire(&s, PN_SEMAPHORE_MAX_PERMITS + 1) };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(POLL(&bad[i], &pr), PN_READY);
        cr_assert_eq(bad[i].res, -EINVAL);
        cr_assert_eq(bad[i].permits, 0);
        pn_semaphore_release(&bad[i]);           /* holds nothing: no-ops */
        pn_future_drop(&bad[i].base);
    }
    cr_assert_eq(pn_semaphore_available(&s), 2);
    pn_semaphore_release(NULL);
    pn_semaphore_forget(NULL);
    pn_semaphore_close(NULL);
    pn_semaphore_destroy(NULL);
    pn_semaphore_destroy(&s);
}

Test(semaphore, acquire_release_forget_try_by_hand)
{
    static pn_semaphore s = PN_SEMAPHORE_INIT(5);  /* the static initializer */
    waker_probe pr = { 0 };
    pn_semaphore_permit a = pn_semaphore_acquire(&s, 3);
    cr_assert_eq(pn_semaphore_available(&s), 5, "lazy: nothing before the first poll");
    cr_assert_eq(POLL(&a, &pr), PN_READY);
    cr_assert_eq(a.res, 0);
    cr_assert_eq(a.permits, 3);
    cr_assert_eq(pn_semaphore_available(&s), 2);
    cr_assert_eq(pn_semaphore_try_acquire(&s, 2), 0);
    cr_assert_eq(pn_semaphore_available(&s), 0);
    cr_assert_eq(pn_semaphore_try_acquire(&s, 1), -EAGAIN);
    cr_assert_eq(pn_semaphore_add_permits(&s, 2), 0);  /* the try's back */
    pn_semaphore_release(&a);
    cr_assert_eq(a.permits, 0);
    cr_assert_eq(pn_semaphore_available(&s), 5);
    pn_semaphore_release(&a);                          /* released: no-op */
    pn_future_drop(&a.base);
    cr_assert_eq(pn_semaphore_available(&s), 5);

    pn_semaphore_permit b = pn_semaphore_acquire(&s, 2);
    cr_assert_eq(POLL(&b, &pr), PN_READY);
    pn_semaphore_forget(&b);
    cr_assert_eq(b.permits, 0);
    pn_future_drop(&b.base);
    cr_assert_eq(pn_semaphore_available(&s), 3, "forgotten permits stay gone");

    pn_semaphore_permit c = pn_semaphore_acquire(&s, 3);
    cr_assert_eq(POLL(&c, &pr), PN_READY);
    pn_future_drop(&c.base);                           /* drop = release */
    cr_assert_eq(pn_semaphore_available(&s), 3);
    pn_semaphore_permit never = pn_semaphore_acquire(&s, 1);
    pn_future_drop(&never.base);                       /* never polled: no-op */
    cr_assert_eq(pn_semaphore_available(&s), 3);
    cr_assert_eq(atomic_load(&pr.clones), 0, "the fast path keeps no waker");

    /* release and forget of a pending acquire cancel it (nothing kept) */
    cr_assert_eq(pn_semaphore_try_acquire(&s, 3), 0);
    pn_semaphore_permit q1 = pn_semaphore_acquire(&s, 2), q2 = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&q1, &pr), PN_PENDING);
    cr_assert_eq(POLL(&q2, &pr), PN_PENDING);
    cr_assert_eq(pn_semaphore_add_permits(&s, 1), 0);    /* q1 holds 1 of 2 */
    pn_semaphore_forget(&q1);                            /* cancel: its 1 goes on to q2 */
    cr_assert_eq(POLL(&q2, &pr), PN_READY);
    pn_semaphore_release(&q2);
    cr_assert_eq(pn_semaphore_available(&s), 1);
    pn_semaphore_permit q3 = pn_semaphore_acquire(&s, 2);
    cr_assert_eq(POLL(&q3, &pr), PN_PENDING);
    pn_semaphore_release(&q3);
    cr_assert_eq(pn_semaphore_add_permits(&s, 2), 0);
    cr_assert_eq(pn_semaphore_available(&s), 3);
    cr_assert_eq(waker_probe_held(&pr), 0);
}

/* Waiters queued in order are granted in that order, the head partly when
 * it wants more than is free; later ones and try_acquire do not overtake. */
Test(semaphore, grants_in_queue_order_with_partial_grants_to_the_head)
{
    pn_semaphore s;
    pn_semaphore_init(&s, 0);
    enum { N = 5 };
    size_t want[N] = { 1, 3, 1, 2, 1 };
    waker_probe pr[N];
    pn_semaphore_permit p[N];
    memset(pr, 0, sizeof pr);
    for (int i = 0; i < N; i++) {
        p[i] = pn_semaphore_acquire(&s, want[i]);
        cr_assert_eq(POLL(&p[i], &pr[i]), PN_PENDING);
    }
    int order[N], granted = 0;
    bool seen[N] = { 0 };
    for (int round = 0; round < 8 && granted < N; round++) {
        cr_assert_eq(pn_semaphore_available(&s), 0, "no free permit while anyone waits");
        cr_assert_eq(pn_semaphore_try_acquire(&s, 1), -EAGAIN, "try_acquire overtook a waiter");
        cr_assert_eq(pn_semaphore_add_permits(&s, 1), 0);
        for (int i = 0; i < N; i++) {
            if (!seen[i] && atomic_load(&pr[i].wakes)) {
                seen[i] = true;
                order[granted++] = i;
                cr_assert_eq(POLL(&p[i], &pr[i]), PN_READY);
                cr_assert_eq(p[i].res, 0);
                cr_assert_eq(p[i].permits, want[i]);
            }
        }
    }
    cr_assert_eq(granted, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(order[i], i, "grant %d went to waiter %d", i, order[i]);
    for (int i = 0; i < N; i++) {
        pn_semaphore_release(&p[i]);
        cr_assert_eq(waker_probe_held(&pr[i]), 0);
    }
    cr_assert_eq(pn_semaphore_available(&s), 8);
    pn_semaphore_destroy(&s);
}

Test(semaphore, a_large_acquire_is_not_starved_by_small_ones)
{
    pn_semaphore s;
    pn_semaphore_init(&s, 4);
    waker_probe pb = { 0 }, ps = { 0 };
    cr_assert_eq(pn_semaphore_try_acquire(&s, 3), 0);     /* a holder of 3 */
    pn_semaphore_permit big = pn_semaphore_acquire(&s, 4);
    cr_assert_eq(POLL(&big, &pb), PN_PENDING, "1 free, 4 wanted");
    cr_assert_eq(pn_semaphore_available(&s), 0, "the free one went to the big waiter");
    pn_semaphore_permit small = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&small, &ps), PN_PENDING, "a small acquire queues behind the big one");
    for (int i = 0; i < 2; i++) {                         /* release one at a time */
        cr_assert_eq(pn_semaphore_add_permits(&s, 1), 0);
        cr_assert_eq(atomic_load(&pb.wakes) + atomic_load(&ps.wakes), 0);
        cr_assert_eq(pn_semaphore_try_acquire(&s, 1), -EAGAIN);
    }
    cr_assert_eq(pn_semaphore_add_permits(&s, 1), 0);
    cr_assert_eq(atomic_load(&pb.wakes), 1, "the big one was served first");
    cr_assert_eq(atomic_load(&ps.wakes), 0);
    cr_assert_eq(POLL(&small, &ps), PN_PENDING);
    cr_assert_eq(POLL(&big, &pb), PN_READY);
    cr_assert_eq(big.permits, 4);
    pn_semaphore_release(&big);
    cr_assert_eq(atomic_load(&ps.wakes), 1);
    cr_assert_eq(POLL(&small, &ps), PN_READY);
    pn_semaphore_release(&small);
    cr_assert_eq(pn_semaphore_available(&s), 4);
    cr_assert_eq(waker_probe_held(&pb) + waker_probe_held(&ps), 0);
    pn_semaphore_destroy(&s);
}

/* The head holds 2 of the 3 it wants; dropping it gives them on: one
 * completes the waiter behind it, the other goes back. */
Test(semaphore, dropping_a_partly_granted_acquire_passes_its_permits_on)
{
    pn_semaphore s;
    pn_semaphore_init(&s, 0);
    waker_probe pb = { 0 }, ps = { 0 };
    pn_semaphore_permit big = pn_semaphore_acquire(&s, 3);
    pn_semaphore_permit small = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&big, &pb), PN_PENDING);
    cr_assert_eq(POLL(&small, &ps), PN_PENDING);
    cr_assert_eq(pn_semaphore_add_permits(&s, 2), 0);
    cr_assert_eq(pn_semaphore_available(&s), 0, "both went to the head");
    cr_assert_eq(atomic_load(&ps.wakes), 0);
    pn_future_drop(&big.base);
    cr_assert_eq(waker_probe_held(&pb), 0, "the drop gave its waker back");
    cr_assert_eq(atomic_load(&pb.wakes), 0);
    cr_assert_eq(atomic_load(&ps.wakes), 1, "the next waiter was completed");
    cr_assert_eq(pn_semaphore_available(&s), 1, "the rest went back");
    cr_assert_eq(POLL(&small, &ps), PN_READY);
    pn_semaphore_release(&small);
    cr_assert_eq(pn_semaphore_available(&s), 2);

    /* A queued acquire with nothing assigned: its drop leaves the rest. */
    cr_assert_eq(pn_semaphore_try_acquire(&s, 2), 0);
    pn_semaphore_permit a = pn_semaphore_acquire(&s, 1), b = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&a, &pb), PN_PENDING);
    cr_assert_eq(POLL(&b, &ps), PN_PENDING);
    pn_future_drop(&a.base);
    cr_assert_eq(pn_semaphore_add_permits(&s, 2), 0);
    cr_assert_eq(POLL(&b, &ps), PN_READY, "b moved up to the head");
    pn_semaphore_release(&b);
    cr_assert_eq(pn_semaphore_available(&s), 2);
    /* After the queue emptied, the fast paths work again. */
    cr_assert_eq(pn_semaphore_try_acquire(&s, 2), 0);
    cr_assert_eq(pn_semaphore_add_permits(&s, 2), 0);
    cr_assert_eq(waker_probe_held(&pb) + waker_probe_held(&ps), 0);
    pn_semaphore_destroy(&s);
}

/* ---- the window between "granted" and "woken" ------------------------- */

static pn_semaphore_permit *window_victim;
static _Atomic int window_hits;

static void drop_at_granted(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "semaphore.granted") || atomic_fetch_add(&window_hits, 1))
        return;
    /* The owner of the granted acquire drops it before the wake lands. */
    pn_future_drop(&window_victim->base);
}

Test(semaphore, a_drop_between_grant_and_wake_passes_the_permit_on)
{
    pn_semaphore s;
    pn_semaphore_init(&s, 1);
    waker_probe pa = { 0 }, pb = { 0 }, pc = { 0 };
    pn_semaphore_permit a = pn_semaphore_acquire(&s, 1);
    pn_semaphore_permit b = pn_semaphore_acquire(&s, 1);
    pn_semaphore_permit c = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&a, &pa), PN_READY);
    cr_assert_eq(POLL(&b, &pb), PN_PENDING);
    cr_assert_eq(POLL(&c, &pc), PN_PENDING);
    window_victim = &b;
    atomic_store(&window_hits, 0);
    pn__point_set_hook(drop_at_granted);
    pn_semaphore_release(&a);               /* grants b, then b is dropped */
    pn__point_set_hook(NULL);
    cr_assert_geq(atomic_load(&window_hits), 1, "the window was reached");
    cr_assert_eq(atomic_load(&pb.wakes), 1, "the wake still lands (on a dropped future)");
    cr_assert_eq(waker_probe_held(&pb), 0);
    cr_assert_eq(atomic_load(&pc.wakes), 1, "b's permit went on to c");
    cr_assert_eq(POLL(&c, &pc), PN_READY);
    cr_assert_eq(pn_semaphore_available(&s), 0);
    pn_semaphore_release(&c);
    cr_assert_eq(pn_semaphore_available(&s), 1);
    cr_assert_eq(waker_probe_held(&pc), 0);
    pn_semaphore_destroy(&s);
}

Test(semaphore, close_fails_the_waiters_and_later_acquires)
{
    pn_semaphore s;
    pn_semaphore_init(&s, 3);
    waker_probe p1 = { 0 }, p2 = { 0 }, p3 = { 0 };
    pn_semaphore_permit held = pn_semaphore_acquire(&s, 2);
    cr_assert_eq(POLL(&held, &p1), PN_READY);
    pn_semaphore_permit w1 = pn_semaphore_acquire(&s, 2), w2 = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&w1, &p2), PN_PENDING);     /* holds 1 of 2 */
    cr_assert_eq(POLL(&w2, &p3), PN_PENDING);
    pn_semaphore_close(&s);
    cr_assert(pn_semaphore_is_closed(&s));
    cr_assert_eq(atomic_load(&p2.wakes), 1);
    cr_assert_eq(atomic_load(&p3.wakes), 1);
    cr_assert_eq(POLL(&w1, &p2), PN_READY);
    cr_assert_eq(w1.res, -ESHUTDOWN);
    cr_assert_eq(w1.permits, 0);
    cr_assert_eq(POLL(&w2, &p3), PN_READY);
    cr_assert_eq(w2.res, -ESHUTDOWN);
    cr_assert_eq(pn_semaphore_available(&s), 1, "w1's partial permit came back");
    cr_assert_eq(pn_semaphore_try_acquire(&s, 1), -ESHUTDOWN);
    pn_semaphore_permit late = pn_semaphore_acquire(&s, 1);
    cr_assert_eq(POLL(&late, &p1), PN_READY);
    cr_assert_eq(late.res, -ESHUTDOWN);
    pn_semaphore_release(&held);                  /* held permits still go back */
    cr_assert_eq(pn_semaphore_available(&s), 3);
    cr_assert_eq(pn_semaphore_add_permits(&s, 1), 0);
    cr_assert_eq(pn_semaphore_available(&s), 4);
    pn_semaphore_close(&s);                       /* idempotent */
    pn_future_drop(&w1.base);
    pn_future_drop(&w2.base);
    cr_assert_eq(waker_probe_held(&p1) + waker_probe_held(&p2) + waker_probe_held(&p3), 0);

    /* A drop of a pending acquire after close gives nothing twice. */
    pn_semaphore s2;
    pn_semaphore_init(&s2, 1);
    pn_semaphore_permit h = pn_semaphore_acquire(&s2, 1), q = pn_semaphore_acquire(&s2, 2);
    cr_assert_eq(POLL(&h, &p1), PN_READY);
    cr_assert_eq(POLL(&q, &p2), PN_PENDING);
    pn_semaphore_close(&s2);
    pn_future_drop(&q.base);                      /* closed before it polled again */
    pn_semaphore_release(&h);
    cr_assert_eq(pn_semaphore_available(&s2), 1);
    cr_assert_eq(waker_probe_held(&p2), 0);
    pn_semaphore_destroy(&s2);
    pn_semaphore_destroy(&s);
}

/* More waiters than a wake list holds, all served by one add_permits. */
Test(semaphore, one_add_serves_more_waiters_than_a_wake_batch)
{
    enum { N = 100 };
    pn_semaphore s;
    pn_semaphore_init(&s, 0);
    static pn_semaphore_permit p[N];
    waker_probe pr = { 0 };
    for (int i = 0; i < N; i++) {
        p[i] = pn_semaphore_acquire(&s, 1);
        cr_assert_eq(POLL(&p[i], &pr), PN_PENDING);
    }
    cr_assert_eq(pn_semaphore_add_permits(&s, N + 5), 0);
    cr_assert_eq(atomic_load(&pr.wakes), N);
    cr_assert_eq(pn_semaphore_available(&s), 5);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(POLL(&p[i], &pr), PN_READY);
        pn_semaphore_release(&p[i]);
    }
    cr_assert_eq(pn_semaphore_available(&s), N + 5);
    cr_assert_eq(waker_probe_held(&pr), 0);
    pn_semaphore_destroy(&s);
}

/* ---- tasks -------------------------------------------------------------- */

typedef struct sem_worker {
    pn_future base;
    int pc, i;
    pn_semaphore *s;
    int iters;
    size_t cap, k;
    unsigned seed;
    bool holding;
    pn_semaphore_permit p;
    pn_yield_now_future y;
    _Atomic long *in_use;
    _Atomic int *bad;
    _Atomic long *acquired;
} sem_worker;

static pn_poll sem_worker_poll(pn_future *f, pn_cx *cx)
{
    sem_worker *w = (sem_worker *)f;
    PN_ASYNC_BEGIN(w->pc);
    for (w->i = 0; w->i < w->iters; w->i++) {
        w->k = 1 + rand_r(&w->seed) % w->cap;
        w->p = pn_semaphore_acquire(w->s, w->k);
        if (rand_r(&w->seed) % 8 == 0) {
            /* try_acquire: permits given back with add_permits */
            if (pn_semaphore_try_acquire(w->s, w->k) == 0) {
                if ((size_t)atomic_fetch_add(w->in_use, (long)w->k) + w->k > w->cap * 2)
                    atomic_fetch_add(w->bad, 1);
                atomic_fetch_sub(w->in_use, (long)w->k);
                pn_semaphore_add_permits(w->s, w->k);
            }
            continue;
        }
        if (rand_r(&w->seed) % 4 == 0) {
            /* One poll, and a drop if it has to wait (maybe with a part
             * of its permits assigned already, or granted meanwhile). */
            if (pn_future_poll(&w->p.base, cx) == PN_PENDING) {
                if (rand_r(&w->seed) % 2)
                    sched_yield();
                pn_future_drop(&w->p.base);
                continue;
            }
        } else {
            PN_AWAIT(w->pc, &w->p, cx);
        }
        if (w->p.res != 0 || w->p.permits != w->k)
            atomic_fetch_add(w->bad, 1);
        w->holding = true;
        if ((size_t)atomic_fetch_add(w->in_use, (long)w->k) + w->k > w->cap * 2)
            atomic_fetch_add(w->bad, 1);
        atomic_fetch_add(w->acquired, 1);
        if (rand_r(&w->seed) % 3 == 0) {
            w->y = pn_yield();
            PN_AWAIT(w->pc, &w->y, cx);
        }
        atomic_fetch_sub(w->in_use, (long)w->k);
        w->holding = false;
        if (rand_r(&w->seed) % 16 == 0) {
            pn_semaphore_forget(&w->p);           /* gone for good ... */
            pn_semaphore_add_permits(w->s, w->k); /* ... until added back */
        } else {
            pn_semaphore_release(&w->p);
        }
    }
    PN_ASYNC_END(w->pc);
}

/* An abort drops the task wherever it is: waiting (cancel) or holding. */
static void sem_worker_drop(pn_future *f)
{
    sem_worker *w = (sem_worker *)f;
    if (w->holding)
        atomic_fetch_sub(w->in_use, (long)w->k);
    pn_future_drop(&w->p.base);
}

static const pn_future_vtable sem_worker_vt = { sem_worker_poll, sem_worker_drop, "sem_worker" };

/* Tasks contend for a semaphore of 2*cap permits, taking 1..cap each,
 * some dropping pending acquires, some aborted: at the end every permit
 * is back, and no more than 2*cap were ever held at once. */
static void contend(pn_runtime *rt, int tasks, int iters, bool abort_some)
{
    enum { CAP = 3 };
    pn_semaphore s;
    pn_semaphore_init(&s, 2 * CAP);
    _Atomic long in_use = 0, acquired = 0;
    _Atomic int bad = 0;
    pn_join_handle **hs = calloc(tasks, sizeof *hs);
    for (int t = 0; t < tasks; t++) {
        sem_worker w = { .base = { &sem_worker_vt }, .s = &s, .iters = iters, .cap = CAP,
                         .seed = 7 + t, .in_use = &in_use, .bad = &bad, .acquired = &acquired };
        cr_assert_eq(PN_SPAWN(rt, w, &hs[t]), 0);
    }
    if (abort_some) {
        /* Abort in the thick of it (the multi-thread runtime runs them
         * meanwhile), so aborted tasks are waiting or holding. */
        while (atomic_load(&acquired) < tasks * iters / 8)
            sched_yield();
        for (int t = 0; t < tasks; t += 5)
            pn_join_handle_abort(hs[t]);
    }
    join_all(rt, hs, tasks);
    free(hs);
    cr_assert_eq(atomic_load(&bad), 0, "a grant was wrong or the limit was exceeded");
    cr_assert_eq(atomic_load(&in_use), 0);
    cr_assert_gt(atomic_load(&acquired), 0);
    cr_assert_eq(pn_semaphore_available(&s), 2 * CAP, "permits were lost or made up");
    pn_semaphore_destroy(&s);
}

BOTH(semaphore, tasks_share_the_permits_and_give_them_all_back)
{
    pn_runtime *rt = flavour_new(fl);
    contend(rt, 20, 200, false);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* A task waits; a plain thread adds the permit it needs. */
typedef struct one_acquire {
    pn_future base;
    int pc;
    pn_semaphore_permit p;
} one_acquire;

static pn_poll one_acquire_poll(pn_future *f, pn_cx *cx)
{
    one_acquire *a = (one_acquire *)f;
    PN_ASYNC_BEGIN(a->pc);
    PN_AWAIT(a->pc, &a->p, cx);
    PN_ASYNC_END(a->pc);
}

static const pn_future_vtable one_acquire_vt = { one_acquire_poll, NULL, "one_acquire" };

static void *add_later(void *arg)
{
    for (int i = 0; i < 50; i++)
        sched_yield();
    pn_semaphore_add_permits(arg, 2);
    return NULL;
}

static void *close_later(void *arg)
{
    for (int i = 0; i < 50; i++)
        sched_yield();
    pn_semaphore_close(arg);
    return NULL;
}

BOTH(semaphore, a_plain_thread_adds_permits_or_closes_for_a_waiting_task)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < 50; round++) {
        pn_semaphore s;
        pn_semaphore_init(&s, 0);
        one_acquire a = { .base = { &one_acquire_vt }, .p = pn_semaphore_acquire(&s, 2) };
        pthread_t th;
        bool closing = round % 2;
        cr_assert_eq(pthread_create(&th, NULL, closing ? close_later : add_later, &s), 0);
        AWAIT(rt, a);
        pthread_join(th, NULL);
        if (closing) {
            cr_assert_eq(a.p.res, -ESHUTDOWN);
        } else {
            cr_assert_eq(a.p.res, 0);
            cr_assert_eq(a.p.permits, 2);
            pn_semaphore_release(&a.p);
            cr_assert_eq(pn_semaphore_available(&s), 2);
        }
        pn_semaphore_destroy(&s);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- stress ----------------------------------------------------------- */

static atomic_bool churn_stop;

/* A plain thread taking and giving permits with try_acquire. */
static void *try_churn(void *arg)
{
    pn_semaphore *s = arg;
    unsigned seed = 99;
    while (!atomic_load(&churn_stop)) {
        size_t k = 1 + rand_r(&seed) % 2;
        if (pn_semaphore_try_acquire(s, k) == 0)
            pn_semaphore_add_permits(s, k);
        else
            sched_yield();
    }
    return NULL;
}

Test(semaphore, stress_permits_are_conserved_across_threads, .timeout = PN_TIMEOUT(60))
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_REACTOR_THREAD);
    for (int round = 0; round < 3; round++)
        contend(rt, 50, 1000, true);

    /* and with a plain thread churning try_acquire/add_permits meanwhile */
    pn_semaphore s;
    pn_semaphore_init(&s, 4);
    atomic_store(&churn_stop, false);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, try_churn, &s), 0);
    _Atomic long in_use = 0, acquired = 0;
    _Atomic int bad = 0;
    enum { T = 30 };
    pn_join_handle *hs[T];
    for (int t = 0; t < T; t++) {
        sem_worker w = { .base = { &sem_worker_vt }, .s = &s, .iters = 300, .cap = 2,
                         .seed = 100 + t, .in_use = &in_use, .bad = &bad, .acquired = &acquired };
        cr_assert_eq(PN_SPAWN(rt, w, &hs[t]), 0);
    }
    join_all(rt, hs, T);
    atomic_store(&churn_stop, true);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&bad), 0);
    cr_assert_eq(pn_semaphore_available(&s), 4);
    pn_semaphore_destroy(&s);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
