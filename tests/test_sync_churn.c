/*
 * test_sync_churn.c - churn of the toolkit from several threads
 * (suite sync_churn); it found nothing, and is kept as a regression
 * net for ASan and TSan: a task group freed while its tasks finish on
 * workers, cancel trees grown, freed (adoption) and cancelled from three
 * threads, semaphore acquires of 1..3 permits made, dropped pending or
 * held and released at random on three threads (every permit must come
 * back), notify waiters dropped at random against notify_one.
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "pollen/cancel.h"
#include "core/chaos.h"

TestSuite(sync_churn, .timeout = PN_TIMEOUT(60));

Test(sync_churn, task_group_free_while_tasks_finish)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    unsigned seed = 1;
    for (int round = 0; round < 300; round++) {
        pn_task_group *g = NULL;
        cr_assert_eq(pn_task_group_new(rt, &g), 0);
        for (int i = 0; i < 8; i++) {
            seed = seed * 1103515245u + 12345u;
            steps_future s = steps_new((int)((seed >> 16) % 4), NULL);
            cr_assert_eq(PN_TASK_GROUP_SPAWN(g, s), 0);
        }
        seed = seed * 1103515245u + 12345u;
        int joins = (int)((seed >> 16) % 4);
        for (int k = 0; k < joins; k++) {
            pn_task_group_join_future j;
            if (pn_task_group_try_join_next(g, &j) == 0)
                pn_task_group_join_release(&j);
            sched_yield();
        }
        pn_task_group_free(g);
    }
    pn_runtime_free(rt);
}

/* cancel trees: threads make children, free tokens, cancel, wait */
static pn_cancel_token *ct_root;

static void *ct_churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    pn_cancel_token *mine[16] = { 0 };
    for (int it = 0; it < 20000; it++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 16) % 16;
        if (mine[k]) {
            if ((seed >> 8) & 1) {
                pn_cancel_token *c = pn_cancel_token_child(mine[k]);
                pn_cancel_token_free(mine[k]);
                mine[k] = c;
            } else {
                pn_cancel_token_free(mine[k]);
                mine[k] = NULL;
            }
        } else {
            unsigned p = (seed >> 20) % 16;
            mine[k] = pn_cancel_token_child(mine[p] ? mine[p] : ct_root);
        }
        if (((seed >> 4) % 997) == 0)
            pn_cancel_token_cancel(mine[k]);
    }
    for (int k = 0; k < 16; k++)
        pn_cancel_token_free(mine[k]);
    return NULL;
}

Test(sync_churn, cancel_tree_churn)
{
    for (int round = 0; round < 5; round++) {
        ct_root = pn_cancel_token_new();
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
            pthread_create(&th[i], NULL, ct_churn, (void *)(uintptr_t)(i + 1 + round * 7));
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        pn_cancel_token_cancel(ct_root);
        pn_cancel_token_free(ct_root);
    }
}

#include "pollen/semaphore.h"
#include "pollen/notify.h"
static pn_semaphore rs_sem;
static waker_probe rs_probe;

static pn_poll rs_poll(pn_future *f)
{
    pn_waker w = { &rs_probe, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .budget = 1000 };
    return pn_future_poll(f, &cx);
}

static void *rs_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    pn_semaphore_permit p[4];
    int st[4] = { 0 };      /* 0 none, 1 pending, 2 held */
    for (int it = 0; it < 30000; it++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 16) % 4;
        switch (st[k]) {
        case 0:
            p[k] = pn_semaphore_acquire(&rs_sem, 1 + (seed >> 8) % 3);
            st[k] = rs_poll(&p[k].base) == PN_READY ? 2 : 1;
            if (st[k] == 2 && p[k].res != 0)
                abort();
            break;
        case 1:
            if ((seed >> 4) & 1) {
                pn_future_drop(&p[k].base);
                st[k] = 0;
            } else if (rs_poll(&p[k].base) == PN_READY) {
                st[k] = 2;
            }
            break;
        case 2:
            if ((seed >> 4) & 1)
                pn_semaphore_release(&p[k]);
            else
                pn_future_drop(&p[k].base);
            st[k] = 0;
            break;
        }
    }
    for (int k = 0; k < 4; k++)
        if (st[k])
            pn_future_drop(&p[k].base);
    return NULL;
}

Test(sync_churn, semaphore_churn_conserves_permits)
{
    pn_semaphore_init(&rs_sem, 5);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, rs_thread, (void *)(uintptr_t)(i + 11));
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(pn_semaphore_available(&rs_sem), 5);
    cr_assert_eq(pn_semaphore_try_acquire(&rs_sem, 5), 0);
    cr_assert_eq(waker_probe_held(&rs_probe), 0);
    pn_semaphore_destroy(&rs_sem);
}

static pn_notify rn;
static _Atomic long rn_ones, rn_got;
static void *rn_notifier(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        pn_notify_one(&rn);
        atomic_fetch_add(&rn_ones, 1);
        if (i % 64 == 0)
            sched_yield();
    }
    return NULL;
}

/* Waiters made, polled and dropped at random on two threads while a third
 * calls notify_one: nothing crashes (ASan), no race (TSan), no waker is
 * held at the end, and a notify_one afterwards completes a fresh waiter. */
static void *rn_waiter(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    pn_notified_future f[3];
    int st[3] = { 0 };
    for (int it = 0; it < 30000; it++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 16) % 3;
        if (!st[k]) {
            f[k] = pn_notify_notified(&rn);
            if (rs_poll(&f[k].base) == PN_READY)
                atomic_fetch_add(&rn_got, 1);
            else
                st[k] = 1;
        } else if ((seed >> 4) & 1) {
            pn_future_drop(&f[k].base);
            st[k] = 0;
        } else if (rs_poll(&f[k].base) == PN_READY) {
            atomic_fetch_add(&rn_got, 1);
            st[k] = 0;
        }
    }
    for (int k = 0; k < 3; k++)
        if (st[k])
            pn_future_drop(&f[k].base);
    return NULL;
}

Test(sync_churn, notify_churn)
{
    pn_notify_init(&rn);
    pthread_t th[3];
    pthread_create(&th[0], NULL, rn_notifier, NULL);
    pthread_create(&th[1], NULL, rn_waiter, (void *)(uintptr_t)5);
    pthread_create(&th[2], NULL, rn_waiter, (void *)(uintptr_t)9);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* everything dropped: the queue is empty; one stored permit at most */
    pn_notify_one(&rn);
    pn_notified_future f = pn_notify_notified(&rn);
    cr_assert_eq(rs_poll(&f.base), PN_READY);
    cr_assert_eq(waker_probe_held(&rs_probe), 0);
    pn_notify_destroy(&rn);
}
