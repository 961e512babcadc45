/*
 * test_multi_thread.c - the multi-thread runtime: every task runs exactly
 * once, across workers; wakes from other workers and foreign threads; timers
 * and I/O from workers; block_on rules; shutdown wherever tasks sit.
 */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include "helpers.h"

TestSuite(multi_thread, .timeout = PN_TIMEOUT(60));

/* Every test runs twice: with a reactor thread and with workers driving
 * the reactor (MT_TEST defines both). */
static pn_driver_mode cur_driver;

#define MT_TEST(name)                                                              \
    static void name##_body(void);                                                 \
    Test(multi_thread, name) { cur_driver = PN_DRIVER_REACTOR_THREAD; name##_body(); } \
    Test(multi_thread, name##_workers_drive) { cur_driver = PN_DRIVER_WORKERS; name##_body(); } \
    static void name##_body(void)

static pn_runtime *mt_new(unsigned workers) { return mt_driver_new(workers, cur_driver); }

/* ---- every task runs exactly once ----------------------------------------- */

#define MANY 20000
static _Atomic int ran[MANY];

typedef struct mark { pn_future base; int id; } mark;
static pn_poll mark_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    atomic_fetch_add(&ran[((mark *)f)->id], 1);
    return PN_READY;
}
static const pn_future_vtable mark_vt = { mark_poll, NULL, "mark" };

typedef struct spawn_all {
    pn_future base;
    int pc, i;
    pn_join_handle **hs;
    pn_join_future j;
} spawn_all;

static pn_poll spawn_all_poll(pn_future *f, pn_cx *cx)
{
    spawn_all *s = (spawn_all *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->i = 0; s->i < MANY; s->i++) {
        mark m = { .base = { &mark_vt }, .id = s->i };
        cr_assert_eq(PN_SPAWN(cx->rt, m, &s->hs[s->i]), 0);
    }
    for (s->i = 0; s->i < MANY; s->i++) {
        s->j = pn_join(s->hs[s->i]);
        PN_AWAIT(s->pc, &s->j, cx);
        cr_assert_eq(s->j.res, 0);
        pn_join_handle_free(s->hs[s->i]);
    }
    PN_ASYNC_END(s->pc);
}
static const pn_future_vtable spawn_all_vt = { spawn_all_poll, NULL, "spawn_all" };

/* The spawner itself runs as a task on a worker, so spawns go to its local
 * queue, overflow to the injection queue and get stolen. */
MT_TEST(spawn_from_a_task_runs_each_once)
{
    pn_runtime *rt = mt_new(2);
    for (int i = 0; i < MANY; i++)
        atomic_store(&ran[i], 0);
    static pn_join_handle *hs[MANY];
    spawn_all s = { .base = { &spawn_all_vt }, .hs = hs };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, s, &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, 0);
    pn_join_handle_free(h);
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(atomic_load(&ran[i]), 1, "task %d ran %d times", i, atomic_load(&ran[i]));
    pn_runtime_free(rt);
}

/* ---- ping-pong across workers -------------------------------------------------- */

#define PAIRS 50
#define ROUNDS 2000

/* A one-slot mailbox: a counter and the waker of whoever waits on it. */
typedef struct mailbox {
    pthread_mutex_t lock;
    int count;
    pn_waker waiter;
} mailbox;

static void mailbox_post(mailbox *m)
{
    pthread_mutex_lock(&m->lock);
    m->count++;
    pn_waker w = m->waiter;
    m->waiter = PN_WAKER_NONE;
    pthread_mutex_unlock(&m->lock);
    pn_waker_wake(&w);
}

static pn_poll mailbox_poll_take(mailbox *m, pn_cx *cx)
{
    pthread_mutex_lock(&m->lock);
    if (m->count > 0) {
        m->count--;
        pthread_mutex_unlock(&m->lock);
        return PN_READY;
    }
    pn_waker_set(&m->waiter, cx->waker);
    pthread_mutex_unlock(&m->lock);
    return PN_PENDING;
}

typedef struct player {
    pn_future base;
    int pc, round;
    mailbox *in, *out;
    bool serve;
} player;

static pn_poll player_poll(pn_future *f, pn_cx *cx)
{
    player *p = (player *)f;
    PN_ASYNC_BEGIN(p->pc);
    if (p->serve)
        mailbox_post(p->out);
    for (p->round = 0; p->round < ROUNDS; p->round++) {
        PN_AWAIT_POLL(p->pc, mailbox_poll_take(p->in, cx));
        if (!(p->serve && p->round == ROUNDS - 1))
            mailbox_post(p->out);
    }
    PN_ASYNC_END(p->pc);
}
static const pn_future_vtable player_vt = { player_poll, NULL, "player" };

typedef struct join_list { pn_future base; int pc, i, n; pn_join_handle **hs; pn_join_future j; } join_list;
static pn_poll join_list_poll(pn_future *f, pn_cx *cx)
{
    join_list *l = (join_list *)f;
    PN_ASYNC_BEGIN(l->pc);
    for (l->i = 0; l->i < l->n; l->i++) {
        l->j = pn_join(l->hs[l->i]);
        PN_AWAIT(l->pc, &l->j, cx);
        cr_assert_eq(l->j.res, 0);
        pn_join_handle_free(l->hs[l->i]);
    }
    PN_ASYNC_END(l->pc);
}
static const pn_future_vtable join_list_vt = { join_list_poll, NULL, "join_list" };

MT_TEST(ping_pong_pairs_deliver_every_message)
{
    pn_runtime *rt = mt_new(2);
    static mailbox boxes[PAIRS][2];
    static pn_join_handle *hs[PAIRS * 2];
    for (int i = 0; i < PAIRS; i++) {
        for (int k = 0; k < 2; k++) {
            pthread_mutex_init(&boxes[i][k].lock, NULL);
            boxes[i][k].count = 0;
            boxes[i][k].waiter = PN_WAKER_NONE;
        }
        player a = { .base = { &player_vt }, .in = &boxes[i][0], .out = &boxes[i][1], .serve = true };
        player b = { .base = { &player_vt }, .in = &boxes[i][1], .out = &boxes[i][0] };
        cr_assert_eq(PN_SPAWN(rt, a, &hs[2 * i]), 0);
        cr_assert_eq(PN_SPAWN(rt, b, &hs[2 * i + 1]), 0);
    }
    join_list l = { .base = { &join_list_vt }, .n = PAIRS * 2, .hs = hs };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&l)), 0);
    for (int i = 0; i < PAIRS; i++) {
        cr_assert_eq(boxes[i][0].count, 0, "every message was taken");
        cr_assert_eq(boxes[i][1].count, 0);
    }
    pn_runtime_free(rt);
}

/* ---- spawn and wake from foreign threads while workers steal --------------------- */

#define FOREIGN 4
#define PER_FOREIGN 5000
static _Atomic int foreign_ran;
static pn_poll count_poll(pn_future *f, pn_cx *cx) { (void)f; (void)cx; atomic_fetch_add(&foreign_ran, 1); return PN_READY; }
static const pn_future_vtable count_vt = { count_poll, NULL, "count" };

static void *foreign_spawner(void *arg)
{
    pn_runtime *rt = arg;
    for (int i = 0; i < PER_FOREIGN; i++) {
        pn_future c = { &count_vt };
        cr_assert_eq(pn_spawn(rt, &c, sizeof(c), NULL), 0);
    }
    return NULL;
}

static pn_poll until_foreign_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (atomic_load(&foreign_ran) == FOREIGN * PER_FOREIGN)
        return PN_READY;
    pn_waker_wake_by_ref(cx->waker);     /* re-polled at once: a spin on the block_on thread */
    return PN_PENDING;
}
static const pn_future_vtable until_foreign_vt = { until_foreign_poll, NULL, "until_foreign" };

MT_TEST(spawn_from_foreign_threads)
{
    pn_runtime *rt = mt_new(2);
    atomic_store(&foreign_ran, 0);
    pthread_t th[FOREIGN];
    for (int i = 0; i < FOREIGN; i++)
        pthread_create(&th[i], NULL, foreign_spawner, rt);
    pn_future u = { &until_foreign_vt };
    cr_assert_eq(pn_block_on(rt, &u), 0);
    for (int i = 0; i < FOREIGN; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&foreign_ran), FOREIGN * PER_FOREIGN);
    pn_runtime_free(rt);
}

/* ---- timers from workers ----------------------------------------------------------- */

typedef struct napper { pn_future base; int pc; pn_sleep_future s; uint64_t ns; bool early; } napper;
static pn_poll napper_poll(pn_future *f, pn_cx *cx)
{
    napper *n = (napper *)f;
    PN_ASYNC_BEGIN(n->pc);
    n->s = pn_sleep(n->ns);
    PN_AWAIT(n->pc, &n->s, cx);
    n->early = pn_now() < pn_sleep_deadline(&n->s);
    PN_ASYNC_END(n->pc);
}
static const pn_future_vtable napper_vt = { napper_poll, NULL, "napper" };

MT_TEST(sleeps_on_workers_never_complete_early)
{
    pn_runtime *rt = mt_new(2);
    enum { N = 500 };
    static pn_join_handle *hs[N];
    for (int i = 0; i < N; i++) {
        napper n = { .base = { &napper_vt }, .ns = PN_US(100 + (i * 37) % 20000) };
        cr_assert_eq(PN_SPAWN(rt, n, &hs[i]), 0);
    }
    join_list l = { .base = { &join_list_vt }, .n = 0, .hs = hs };
    /* Check each output before the handles go. */
    for (int i = 0; i < N; i++) {
        pn_join_future j = pn_join(hs[i]);
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
        cr_assert_eq(j.res, 0);
        cr_assert_not(((napper *)j.output)->early);
        pn_join_handle_free(hs[i]);
    }
    (void)l;
    /* And the block_on thread's own sleep. */
    pn_sleep_future s = pn_sleep(PN_MS(5));
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_geq(pn_now(), pn_sleep_deadline(&s));
    pn_runtime_free(rt);
}

/* A worker that fires a timer may then run the woken task for a long time:
 * one long poll, so no busy turn of the driver in between.  Another timer
 * must still fire meanwhile, on the other worker, which parked while the
 * first one held the driver: a parked worker sleeps no longer than the
 * earliest deadline, whoever owns the wheel.  (The hog's cap only keeps a
 * failure finite; nothing here is timed.) */
static _Atomic bool nap_done;

typedef struct hog { pn_future base; int pc; pn_sleep_future s; bool saw_nap; } hog;
static pn_poll hog_poll(pn_future *f, pn_cx *cx)
{
    hog *h = (hog *)f;
    PN_ASYNC_BEGIN(h->pc);
    h->s = pn_sleep(PN_MS(5));
    PN_AWAIT(h->pc, &h->s, cx);
    pn_instant cap = pn_now() + PN_SEC(20);
    while (!atomic_load(&nap_done) && pn_now() < cap)
        sched_yield();
    h->saw_nap = atomic_load(&nap_done);
    PN_ASYNC_END(h->pc);
}
static const pn_future_vtable hog_vt = { hog_poll, NULL, "hog" };

typedef struct nap { pn_future base; int pc; pn_sleep_future s; } nap;
static pn_poll nap_poll(pn_future *f, pn_cx *cx)
{
    nap *n = (nap *)f;
    PN_ASYNC_BEGIN(n->pc);
    n->s = pn_sleep(PN_MS(20));
    PN_AWAIT(n->pc, &n->s, cx);
    atomic_store(&nap_done, true);
    PN_ASYNC_END(n->pc);
}
static const pn_future_vtable nap_vt = { nap_poll, NULL, "nap" };

MT_TEST(a_timer_fires_while_the_driver_worker_runs_a_long_poll)
{
    pn_runtime *rt = mt_new(2);
    for (int round = 0; round < 3; round++) {
        atomic_store(&nap_done, false);
        hog hg = { .base = { &hog_vt } };
        nap np = { .base = { &nap_vt } };
        pn_join_handle *hh, *hn;
        cr_assert_eq(PN_SPAWN(rt, hg, &hh), 0);
        cr_assert_eq(PN_SPAWN(rt, np, &hn), 0);
        pn_join_future j = pn_join(hh);
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
        cr_assert_eq(j.res, 0);
        cr_assert(((hog *)j.output)->saw_nap, "round %d: the nap did not end while the hog ran",
                  round);
        pn_join_handle_free(hh);
        j = pn_join(hn);
        cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
        pn_join_handle_free(hn);
    }
    pn_runtime_free(rt);
}

/* ---- block_on rules ------------------------------------------------------------------- */

typedef struct nested_mt { pn_future base; int res; } nested_mt;
static pn_poll nested_mt_poll(pn_future *f, pn_cx *cx)
{
    nested_mt *n = (nested_mt *)f;
    steps_future s = steps_new(1, NULL);
    n->res = pn_block_on(cx->rt, PN_FUTURE(&s));
    return PN_READY;
}
static const pn_future_vtable nested_mt_vt = { nested_mt_poll, NULL, "nested_mt" };

MT_TEST(block_on_inside_a_task_is_refused)
{
    pn_runtime *rt = mt_new(2);
    nested_mt n = { .base = { &nested_mt_vt } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, n, &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(((nested_mt *)j.output)->res, -EDEADLK);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* ---- shutdown wherever tasks sit -------------------------------------------------------- */

static _Atomic int mt_drops;
typedef struct pending_forever { pn_future base; pn_sleep_future s; bool armed; } pending_forever;
static pn_poll pending_forever_poll(pn_future *f, pn_cx *cx)
{
    pending_forever *p = (pending_forever *)f;
    if (!p->armed) {
        p->s = pn_sleep(PN_SEC(3600));         /* parked on a timer */
        p->armed = true;
    }
    return pn_future_poll(PN_FUTURE(&p->s), cx) == PN_READY ? PN_READY : PN_PENDING;
}
static void pending_forever_drop(pn_future *f)
{
    pending_forever *p = (pending_forever *)f;
    if (p->armed)
        pn_future_drop(PN_FUTURE(&p->s));
    atomic_fetch_add(&mt_drops, 1);
}
static const pn_future_vtable pending_forever_vt = { pending_forever_poll, pending_forever_drop, "pending_forever" };

MT_TEST(shutdown_drops_tasks_on_timers_and_in_queues)
{
    pn_runtime *rt = mt_new(2);
    atomic_store(&mt_drops, 0);
    for (int i = 0; i < 1000; i++) {
        pending_forever p = { .base = { &pending_forever_vt } };
        cr_assert_eq(PN_SPAWN(rt, p, NULL), 0);
    }
    steps_future s = steps_new(50, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    pn_runtime_free(rt);
    cr_assert_eq(atomic_load(&mt_drops), 1000);
}

/* Tasks never polled are in no owned list (a task is linked at its first
 * pending poll): shutdown finds them in the queues only.  One worker is
 * held in a poll that spawned 1,000 of them (the last in the LIFO slot,
 * the others in its local queue and, past 256, the injection queue) until
 * a shutdown has timed out; then it returns, the worker stops without
 * running another task, and the drain must drop every future, once. */
static _Atomic int unpolled_polls, unpolled_drops, holder_spawned, holder_release;
static pn_poll unpolled_poll(pn_future *f, pn_cx *cx)
{
    (void)f; (void)cx;
    atomic_fetch_add(&unpolled_polls, 1);
    return PN_PENDING;
}
static void unpolled_drop(pn_future *f) { (void)f; atomic_fetch_add(&unpolled_drops, 1); }
static const pn_future_vtable unpolled_vt = { unpolled_poll, unpolled_drop, "unpolled" };
static pn_poll holder_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    for (int i = 0; i < 1000; i++) {
        pn_future u = { &unpolled_vt };
        cr_assert_eq(pn_spawn_cx(cx, &u, sizeof u, NULL), 0);
    }
    atomic_store(&holder_spawned, 1);
    while (!atomic_load(&holder_release))
        sched_yield();
    return PN_READY;
}
static const pn_future_vtable holder_vt = { holder_poll, NULL, "holder" };

MT_TEST(shutdown_drops_tasks_never_polled_once)
{
    pn_runtime *rt = mt_new(1);
    atomic_store(&unpolled_polls, 0);
    atomic_store(&unpolled_drops, 0);
    atomic_store(&holder_spawned, 0);
    atomic_store(&holder_release, 0);
    pn_future h = { &holder_vt };
    cr_assert_eq(pn_spawn(rt, &h, sizeof h, NULL), 0);
    while (!atomic_load(&holder_spawned))
        sched_yield();
    cr_assert_eq(pn_runtime_shutdown_timeout(rt, PN_MS(1)), -ETIMEDOUT);
    atomic_store(&holder_release, 1);
    int err;
    while ((err = pn_runtime_free(rt)) == -ETIMEDOUT)
        sched_yield();                      /* the holder is leaving its poll */
    cr_assert_eq(err, 0);
    cr_assert_eq(atomic_load(&unpolled_polls), 0, "the worker stopped after the holder");
    cr_assert_eq(atomic_load(&unpolled_drops), 1000);
}

MT_TEST(create_and_free_idle_runtime)
{
    for (int i = 0; i < 20; i++) {
        pn_runtime *rt = mt_new(1 + i % 3);
        pn_runtime_free(rt);
    }
}

/* ---- metrics ------------------------------------------------------------------------ */

MT_TEST(metrics_count_spawns_polls_and_completions)
{
    pn_runtime *rt = mt_new(2);
    for (int i = 0; i < MANY; i++)
        atomic_store(&ran[i], 0);
    static pn_join_handle *hs[MANY];
    spawn_all s = { .base = { &spawn_all_vt }, .hs = hs };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, s, &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    pn_join_handle_free(h);

    pn_runtime_metrics m;
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
    cr_assert_eq(m.workers, 2);
    cr_assert_eq(m.tasks_spawned, MANY + 1);
    /* Completion is counted right after the joiner is woken: allow the
     * count to catch up, bounded by the test's watchdog. */
    while (pn_runtime_metrics_get(rt, &m) == 0 && m.tasks_completed < MANY + 1)
        sched_yield();
    cr_assert_eq(m.tasks_completed, MANY + 1);
    cr_assert_geq(m.polls, MANY + 1);
    cr_assert_eq(m.injection_queue_depth, 0);
    cr_assert_geq(m.stolen_tasks, m.steals, "a steal moves one task or more");
    cr_assert_leq(m.unparks_reactor, m.unparks);
    /* The runtime's polls are the workers' sum.  A worker counts a poll
     * after it returns, and the task may have been woken, polled and
     * completed elsewhere meanwhile, so a count can still land after all
     * completions are seen: read the workers before and after the runtime
     * (the counters only grow) instead of asking for equality. */
    pn_worker_metrics w0, w1, v0, v1, bad;
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 0, &w0), 0);
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 1, &w1), 0);
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 0, &v0), 0);
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 1, &v1), 0);
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 2, &bad), -EINVAL);
    cr_assert(w0.polls + w1.polls <= m.polls && m.polls <= v0.polls + v1.polls,
              "workers %llu + %llu, then runtime %llu, then workers %llu + %llu",
              (unsigned long long)w0.polls, (unsigned long long)w1.polls,
              (unsigned long long)m.polls, (unsigned long long)v0.polls,
              (unsigned long long)v1.polls);
    cr_assert_eq(pn_runtime_metrics_get(NULL, &m), -EINVAL);
    pn_runtime_free(rt);
}

/* ---- local (pinned) spawn --------------------------------------------------------------- */

#define PINNED 200
static _Atomic int pinned_moved, pinned_done;

typedef struct pinned_task {
    pn_future base;
    pthread_t home;
    int polls;
} pinned_task;

static pn_poll pinned_poll(pn_future *f, pn_cx *cx)
{
    pinned_task *p = (pinned_task *)f;
    if (!pthread_equal(p->home, pthread_self()))
        atomic_fetch_add(&pinned_moved, 1);
    if (++p->polls == 20) {
        atomic_fetch_add(&pinned_done, 1);
        return PN_READY;
    }
    pn_waker_wake_by_ref(cx->waker);       /* yield: back to its own worker */
    return PN_PENDING;
}
static const pn_future_vtable pinned_vt = { pinned_poll, NULL, "pinned" };

/* Spawns PINNED local tasks, plus busy tasks that other workers steal. */
static pn_poll pin_spawner_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    for (int i = 0; i < PINNED; i++) {
        pinned_task p = { .base = { &pinned_vt }, .home = pthread_self() };
        cr_assert_eq(pn_spawn_local(cx, PN_FUTURE(&p), sizeof(p), NULL), 0);
        steps_future s = steps_new(20, NULL);
        cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&s), sizeof(s), NULL), 0);
    }
    return PN_READY;
}
static const pn_future_vtable pin_spawner_vt = { pin_spawner_poll, NULL, "pin_spawner" };

static pn_poll until_pinned_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (atomic_load(&pinned_done) == PINNED)
        return PN_READY;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}
static const pn_future_vtable until_pinned_vt = { until_pinned_poll, NULL, "until_pinned" };

MT_TEST(local_spawn_stays_on_its_worker)
{
    pn_runtime *rt = mt_new(2);
    atomic_store(&pinned_moved, 0);
    atomic_store(&pinned_done, 0);
    pn_future sp = { &pin_spawner_vt };
    cr_assert_eq(pn_spawn(rt, &sp, sizeof(sp), NULL), 0);
    pn_future u = { &until_pinned_vt };
    cr_assert_eq(pn_block_on(rt, &u), 0);
    cr_assert_eq(atomic_load(&pinned_moved), 0, "a pinned task ran on another thread");
    /* Not from the block_on thread, which is not a worker. */
    pn_cx *none = NULL;
    pinned_task p = { .base = { &pinned_vt } };
    cr_assert_eq(pn_spawn_local(none, PN_FUTURE(&p), sizeof(p), NULL), -EINVAL);
    pn_runtime_free(rt);
}

static int local_res;
static pn_poll try_local_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    pinned_task p = { .base = { &pinned_vt }, .home = pthread_self() };
    local_res = pn_spawn_local(cx, PN_FUTURE(&p), sizeof(p), NULL);
    return PN_READY;
}
static const pn_future_vtable try_local_vt = { try_local_poll, NULL, "try_local" };

MT_TEST(local_spawn_from_block_on_is_refused)
{
    pn_runtime *rt = mt_new(2);
    pn_future t = { &try_local_vt };
    cr_assert_eq(pn_block_on(rt, &t), 0);
    cr_assert_eq(local_res, -EPERM);
    pn_runtime_free(rt);
}

/* Pinned tasks parked on a waker when the runtime shuts down are dropped. */
static _Atomic int pinned_drops;
static pn_poll pinned_forever_poll(pn_future *f, pn_cx *cx) { (void)f; (void)cx; return PN_PENDING; }
static void pinned_forever_drop(pn_future *f) { (void)f; atomic_fetch_add(&pinned_drops, 1); }
static const pn_future_vtable pinned_forever_vt = { pinned_forever_poll, pinned_forever_drop, "pinned_forever" };
static pn_poll pin_forever_spawner_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    for (int i = 0; i < 50; i++) {
        pn_future p = { &pinned_forever_vt };
        cr_assert_eq(pn_spawn_local(cx, &p, sizeof(p), NULL), 0);
    }
    return PN_READY;
}
static const pn_future_vtable pin_forever_spawner_vt = { pin_forever_spawner_poll, NULL, "pin_forever_spawner" };

MT_TEST(shutdown_drops_pinned_tasks)
{
    pn_runtime *rt = mt_new(2);
    atomic_store(&pinned_drops, 0);
    pn_future sp = { &pin_forever_spawner_vt };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, &sp, sizeof(sp), &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
    cr_assert_eq(atomic_load(&pinned_drops), 50);
}

/* ---- shutdown with a timeout ------------------------------------------------------------- */

static _Atomic int stuck_release, stuck_entered, stuck_drops;
static pn_poll stuck_poll(pn_future *f, pn_cx *cx)
{
    (void)f; (void)cx;
    atomic_store(&stuck_entered, 1);
    while (!atomic_load(&stuck_release))
        sched_yield();                      /* ignores every request to stop */
    return PN_PENDING;
}
static void stuck_drop(pn_future *f) { (void)f; atomic_fetch_add(&stuck_drops, 1); }
static const pn_future_vtable stuck_vt = { stuck_poll, stuck_drop, "stuck" };

static void *release_later(void *arg)
{
    (void)arg;
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    atomic_store(&stuck_release, 1);
    return NULL;
}

MT_TEST(shutdown_timeout_with_a_task_that_never_yields)
{
    pn_runtime *rt = mt_new(2);
    atomic_store(&stuck_release, 0);
    atomic_store(&stuck_entered, 0);
    atomic_store(&stuck_drops, 0);
    pn_future st = { &stuck_vt };
    cr_assert_eq(pn_spawn(rt, &st, sizeof(st), NULL), 0);
    while (!atomic_load(&stuck_entered))
        sched_yield();
    cr_assert_eq(pn_runtime_shutdown_timeout(rt, PN_MS(20)), -ETIMEDOUT);
    cr_assert_eq(atomic_load(&stuck_drops), 0, "nothing is dropped while a worker is stuck");
    cr_assert_eq(pn_spawn(rt, &st, sizeof(st), NULL), -ESHUTDOWN);
    pthread_t th;
    pthread_create(&th, NULL, release_later, NULL);
    int err;
    while ((err = pn_runtime_free(rt)) == -ETIMEDOUT)
        sched_yield();                      /* the watchdog bounds this */
    pthread_join(th, NULL);
    cr_assert_eq(err, 0);
    cr_assert_eq(atomic_load(&stuck_drops), 1);
}

/* ---- fairness: yielders, injected tasks and LIFO pairs ------------------------------ */

/* Shared by the fairness tests (one at a time: Criterion runs a suite's
 * tests in separate processes). */
static _Atomic int fair_stop, fair_injected_ran, fair_spawned_all;
static _Atomic long fair_yields, fair_links, fair_messages;
static _Atomic long fair_yields_at_last, fair_links_at_last; /* when the last injected ran */
static _Atomic int fair_injected_target;

typedef struct fair_yielder { pn_future base; int pc; long limit; } fair_yielder;
static pn_poll fair_yielder_poll(pn_future *f, pn_cx *cx)
{
    fair_yielder *y = (fair_yielder *)f;
    PN_ASYNC_BEGIN(y->pc);
    while (!atomic_load(&fair_stop)) {
        if (atomic_fetch_add(&fair_yields, 1) + 1 >= y->limit)
            atomic_store(&fair_stop, 1);
        PN_YIELD(y->pc, cx);
    }
    PN_ASYNC_END(y->pc);
}
static const pn_future_vtable fair_yielder_vt = { fair_yielder_poll, NULL, "fair_yielder" };

static pn_poll fair_count_poll(pn_future *f, pn_cx *cx)
{
    (void)f; (void)cx;
    if (atomic_fetch_add(&fair_injected_ran, 1) + 1 == atomic_load(&fair_injected_target)) {
        /* Counted here, on the worker: the test's thread may be late. */
        atomic_store(&fair_yields_at_last, atomic_load(&fair_yields));
        atomic_store(&fair_links_at_last, atomic_load(&fair_links));
        atomic_store(&fair_stop, 1);
    }
    return PN_READY;
}
static const pn_future_vtable fair_count_vt = { fair_count_poll, NULL, "fair_count" };

static void fair_reset(void)
{
    atomic_store(&fair_stop, 0);
    atomic_store(&fair_injected_ran, 0);
    atomic_store(&fair_spawned_all, 0);
    atomic_store(&fair_yields, 0);
    atomic_store(&fair_yields_at_last, 0);
    atomic_store(&fair_links_at_last, 0);
    atomic_store(&fair_injected_target, 0);
    atomic_store(&fair_links, 0);
    atomic_store(&fair_messages, 0);
}

/* A task that yields lets the injection queue in: a yielded task waits on
 * the worker's deferred list until the queues are empty, and an empty
 * local queue takes a share of the injection queue.  When a yielded task
 * went straight to the back of the local queue, the only task there, the
 * injection queue got one task per 31 polls: 100 tasks took ~3,100
 * yields. */
/* The test's thread waits in pn_block_on until a fairness test is over
 * (fair_stop: the last injected task ran, or the yielder's last yield). */
typedef struct fair_stopper { pn_future base; } fair_stopper;
static pn_poll fair_until_stop_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (atomic_load(&fair_stop))
        return PN_READY;
    pn_waker_wake_by_ref(cx->waker);   /* the test's own thread: just poll again */
    return PN_PENDING;
}
static const pn_future_vtable fair_until_stop_vt = { fair_until_stop_poll, NULL, "until_stop" };

MT_TEST(a_yielding_task_lets_injected_tasks_in)
{
    pn_runtime *rt = mt_new(1);
    fair_reset();
    atomic_store(&fair_injected_target, 100);
    fair_yielder y = { .base = { &fair_yielder_vt }, .limit = 1000000000 };
    cr_assert_eq(PN_SPAWN(rt, y, NULL), 0);
    while (atomic_load(&fair_yields) < 10)
        sched_yield();                      /* it yields on the worker */
    for (int i = 0; i < 100; i++) {
        pn_future c = { &fair_count_vt };
        cr_assert_eq(pn_spawn(rt, &c, sizeof c, NULL), 0);
    }
    long at = atomic_load(&fair_yields);
    fair_stopper s = { { &fair_until_stop_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    long spent = atomic_load(&fair_yields_at_last) - at;
    cr_assert_lt(spent, 31, "the yielder yielded %ld times before 100 injected tasks ran", spent);
    pn_runtime_free(rt);
}

/* Tasks spawned from outside are served in batches even while the local
 * queue never empties: here two chains, each task spawning its successor
 * (the LIFO slot, then the queue).  One injected task per 31 polls made
 * 64 of them wait ~2,000 links; a batch of 8 per turn, ~250 (counted from
 * the last spawn: while the spawns come one by one, a turn finds fewer). */
typedef struct fair_link { pn_future base; } fair_link;
static const pn_future_vtable fair_link_vt;
static pn_poll fair_link_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    atomic_fetch_add(&fair_links, 1);
    if (!atomic_load(&fair_stop)) {
        fair_link next = { { &fair_link_vt } };
        int err = pn_spawn_cx(cx, PN_FUTURE(&next), sizeof next, NULL);
        cr_assert(err == 0 || err == -ESHUTDOWN, "%s", pn_strerror(err)); /* stop raced */
    }
    return PN_READY;
}
static const pn_future_vtable fair_link_vt = { fair_link_poll, NULL, "fair_link" };


MT_TEST(injected_tasks_are_served_while_chains_respawn_themselves)
{
    pn_runtime *rt = mt_new(1);
    fair_reset();
    atomic_store(&fair_injected_target, 64);
    for (int i = 0; i < 2; i++) {
        fair_link l = { { &fair_link_vt } };
        cr_assert_eq(PN_SPAWN(rt, l, NULL), 0);
    }
    while (atomic_load(&fair_links) < 100)
        sched_yield();
    for (int i = 0; i < 64; i++) {
        pn_future c = { &fair_count_vt };
        cr_assert_eq(pn_spawn(rt, &c, sizeof c, NULL), 0);
    }
    long at = atomic_load(&fair_links);     /* counted from the last spawn */
    fair_stopper s = { { &fair_until_stop_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    long spent = atomic_load(&fair_links_at_last) - at;
    cr_assert_lt(spent, 1000, "%ld links ran before 64 injected tasks did", spent);
    pn_runtime_free(rt);
}

/* A task that yields among a ping-pong pair (each wakes the other from
 * its poll: the LIFO slot, so the local queue is never empty for long)
 * still runs at a bounded rate: a yielded task waits for an empty queue
 * or the next maintenance turn (event_interval, 61 polls), not forever. */
typedef struct fair_player {
    pn_future base;
    int pc;
    pn_notify *mine, *theirs;
    pn_notified_future n;
} fair_player;
static pn_poll fair_player_poll(pn_future *f, pn_cx *cx)
{
    fair_player *p = (fair_player *)f;
    PN_ASYNC_BEGIN(p->pc);
    while (!atomic_load(&fair_stop)) {
        pn_notify_one(p->theirs);
        p->n = pn_notify_notified(p->mine);
        PN_AWAIT(p->pc, &p->n, cx);
        atomic_fetch_add(&fair_messages, 1);
    }
    pn_notify_one(p->theirs);               /* let the other one see the stop */
    PN_ASYNC_END(p->pc);
}
static const pn_future_vtable fair_player_vt = { fair_player_poll, NULL, "fair_player" };

typedef struct fair_pair_start {
    pn_future base;
    pn_notify *a, *b;
} fair_pair_start;
static pn_poll fair_pair_start_poll(pn_future *f, pn_cx *cx)
{
    fair_pair_start *s = (fair_pair_start *)f;
    fair_player a = { .base = { &fair_player_vt }, .mine = s->a, .theirs = s->b };
    fair_player b = { .base = { &fair_player_vt }, .mine = s->b, .theirs = s->a };
    fair_yielder y = { .base = { &fair_yielder_vt }, .limit = 2000 };
    cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&a), sizeof a, NULL), 0);
    cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&b), sizeof b, NULL), 0);
    cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&y), sizeof y, NULL), 0);
    return PN_READY;
}
static const pn_future_vtable fair_pair_start_vt = { fair_pair_start_poll, NULL, "pair_start" };


MT_TEST(a_yielding_task_among_a_ping_pong_pair_makes_progress)
{
    pn_runtime *rt = mt_new(1);
    fair_reset();
    static pn_notify a, b;
    cr_assert_eq(pn_notify_init(&a), 0);
    cr_assert_eq(pn_notify_init(&b), 0);
    fair_pair_start s = { { &fair_pair_start_vt }, &a, &b };
    cr_assert_eq(PN_SPAWN(rt, s, NULL), 0);
    fair_stopper u = { { &fair_until_stop_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&u)), 0);   /* the yielder's 2,000th yield */
    pn_runtime_metrics m;
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
    long msgs = atomic_load(&fair_messages), ys = atomic_load(&fair_yields);
    cr_assert_geq(ys, 2000);
    cr_assert_gt(msgs, 2000, "the pair played meanwhile");
    /* The yielder gets a poll at least every maintenance turn (61 polls),
     * plus the few polls ahead of it in the queue. */
    cr_assert_leq(m.polls, 70 * (uint64_t)ys, "%llu polls for %ld yields",
                  (unsigned long long)m.polls, ys);
    pn_runtime_free(rt);
    pn_notify_destroy(&a);
    pn_notify_destroy(&b);
}
