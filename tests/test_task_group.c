/*
 * test_task_group.c - pn_task_group (pollen/task.h): tasks joined in the
 * order they finish.
 *
 * Checked, on both runtimes: tasks released in reverse spawn order come
 * out of join_next in that finishing order, then -ENOENT; abort_all makes
 * every task come out -ECANCELED (each dropped once); shutdown aborts and
 * waits until every task has finished; free with running and finished
 * tasks leaks nothing (ASan); a dropped pending join_next loses no result;
 * a dropped pending join_next or shutdown gives its waker back (the
 * shutdown's aborts stand); try_join_next says -EAGAIN / -ENOENT; results stay valid after the
 * group is freed; tasks cancelled by the runtime's shutdown come out
 * -ECANCELED.  On the multi-thread runtime: a plain thread spawns while
 * join_next waits; a task that finishes before its join waker is stored
 * (forced at the point "task_group.spawn") still comes out; a task that is
 * joined and released while its spawner still registers (forced at
 * "join.registered", inside the join future the spawner polls) is not
 * touched after its release; 1,000 tasks
 * spawned from several threads come out once each (checksum).
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "core/chaos.h"

static void task_group_fini(void) { pn__point_set_hook(NULL); }

TestSuite(task_group, .timeout = PN_TEST_TIMEOUT, .fini = task_group_fini);

/* ---- futures ---------------------------------------------------------------- */

/* A gate opened by the test (any thread). */
typedef struct gate {
    atomic_bool open;
    pn_waker_slot waiter;
} gate;

static void gate_open(gate *g)
{
    atomic_store(&g->open, true);
    pn_waker_slot_wake(&g->waiter);
}

/* Ready once its gate is open; .out = idx. */
typedef struct gated {
    pn_future base;
    gate *g;
    int idx, out;
    atomic_int *drops;
} gated;

static pn_poll gated_poll(pn_future *f, pn_cx *cx)
{
    gated *t = (gated *)f;
    if (!atomic_load(&t->g->open)) {
        pn_waker_slot_register(&t->g->waiter, cx->waker);
        if (!atomic_load(&t->g->open))
            return PN_PENDING;
    }
    t->out = t->idx;
    return PN_READY;
}

static void gated_drop(pn_future *f)
{
    gated *t = (gated *)f;
    pn_waker_slot_clear(&t->g->waiter);
    if (t->drops)
        atomic_fetch_add(t->drops, 1);
}

static const pn_future_vtable gated_vt = { gated_poll, gated_drop, "gated" };

static gated gated_new(gate *g, int idx, atomic_int *drops)
{
    return (gated){ .base = { &gated_vt }, .g = g, .idx = idx, .drops = drops };
}

/* Ready after `left` self-woken polls; .out = value. */
typedef struct valf {
    pn_future base;
    int left, value, out;
} valf;

static pn_poll valf_poll(pn_future *f, pn_cx *cx)
{
    valf *v = (valf *)f;
    if (v->left > 0) {
        v->left--;
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    v->out = v->value;
    return PN_READY;
}

static const pn_future_vtable valf_vt = { valf_poll, NULL, "valf" };

static valf valf_new(int left, int value)
{
    return (valf){ .base = { &valf_vt }, .left = left, .value = value };
}

/* Never ready; counts drops (atomically: any worker drops it). */
typedef struct pending_f {
    pn_future base;
    atomic_int *drops;
} pending_f;

static pn_poll pending_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    (void)cx;
    return PN_PENDING;
}

static void pending_drop(pn_future *f)
{
    atomic_fetch_add(((pending_f *)f)->drops, 1);
}

static const pn_future_vtable pending_vt = { pending_poll, pending_drop, "pending" };

static pending_f pending_new(atomic_int *drops)
{
    return (pending_f){ .base = { &pending_vt }, .drops = drops };
}

/* Joins until -ENOENT: counts results by status, sums valf/gated outputs
 * (read as an int after the base: both keep .out as the last int). */
typedef struct drain {
    pn_future base;
    int pc;
    pn_task_group *g;
    pn_task_group_join_future j;
    int ok, cancelled;
    long sum;
} drain;

static pn_poll drain_poll(pn_future *f, pn_cx *cx)
{
    drain *d = (drain *)f;
    PN_ASYNC_BEGIN(d->pc);
    for (;;) {
        d->j = pn_task_group_join_next(d->g);
        PN_AWAIT(d->pc, &d->j, cx);
        if (d->j.res == -ENOENT)
            break;
        if (d->j.res == 0) {
            d->ok++;
            d->sum += ((valf *)d->j.output)->out;
        } else {
            cr_assert_eq(d->j.res, -ECANCELED);
            cr_assert_null(d->j.output);
            d->cancelled++;
        }
        pn_task_group_join_release(&d->j);
    }
    PN_ASYNC_END(d->pc);
}

static const pn_future_vtable drain_vt = { drain_poll, NULL, "drain" };

static drain drain_new(pn_task_group *g)
{
    return (drain){ .base = { &drain_vt }, .g = g };
}

static pn_task_group *group_new(pn_runtime *rt)
{
    pn_task_group *g = NULL;
    cr_assert_eq(pn_task_group_new(rt, &g), 0);
    cr_assert_not_null(g);
    return g;
}

/* ---- completion order ------------------------------------------------------- */

#define ORDER_N 8

typedef struct reverse_opener {
    pn_future base;
    int pc, i;
    pn_task_group *g;
    gate *gates;
    pn_task_group_join_future j;
    int order[ORDER_N];
} reverse_opener;

static pn_poll reverse_opener_poll(pn_future *f, pn_cx *cx)
{
    reverse_opener *r = (reverse_opener *)f;
    PN_ASYNC_BEGIN(r->pc);
    for (r->i = ORDER_N - 1; r->i >= 0; r->i--) {
        gate_open(&r->gates[r->i]);
        r->j = pn_task_group_join_next(r->g);
        PN_AWAIT(r->pc, &r->j, cx);
        cr_assert_eq(r->j.res, 0);
        r->order[ORDER_N - 1 - r->i] = ((gated *)r->j.output)->out;
        pn_task_group_join_release(&r->j);
        cr_assert_null(r->j.output);
        pn_task_group_join_release(&r->j);      /* a second release: no-op */
    }
    r->j = pn_task_group_join_next(r->g);
    PN_AWAIT(r->pc, &r->j, cx);
    cr_assert_eq(r->j.res, -ENOENT);
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable reverse_opener_vt = { reverse_opener_poll, NULL, "reverse_opener" };

BOTH(task_group, tasks_come_out_in_the_order_they_finish)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    gate gates[ORDER_N];
    memset(gates, 0, sizeof gates);
    for (int i = 0; i < ORDER_N; i++) {
        gated t = gated_new(&gates[i], i, NULL);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, t), 0);
    }
    cr_assert_eq(pn_task_group_len(g), ORDER_N);
    reverse_opener r = { .base = { &reverse_opener_vt }, .g = g, .gates = gates };
    AWAIT(rt, r);
    for (int i = 0; i < ORDER_N; i++)
        cr_assert_eq(r.order[i], ORDER_N - 1 - i, "result %d came out of order", i);
    cr_assert_eq(pn_task_group_len(g), 0);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- abort_all, shutdown, free ---------------------------------------------- */

BOTH(task_group, abort_all_makes_every_task_come_out_cancelled)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    atomic_int drops = 0;
    for (int i = 0; i < 10; i++) {
        pending_f p = pending_new(&drops);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
    }
    pn_task_group_abort_all(g);
    pn_task_group_abort_all(g);              /* twice: no harm */
    drain d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_eq(d.cancelled, 10);
    cr_assert_eq(d.ok, 0);
    cr_assert_eq(atomic_load(&drops), 10, "each task is dropped once");
    cr_assert_eq(pn_task_group_len(g), 0);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(task_group, shutdown_aborts_and_waits_until_every_task_finished)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    atomic_int drops = 0;
    for (int i = 0; i < 20; i++) {
        pending_f p = pending_new(&drops);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
        valf v = valf_new(i % 4, i);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
    }
    pn_task_group_shutdown_future s = pn_task_group_shutdown(g);
    AWAIT(rt, s);
    cr_assert_eq(s.res, 0);
    cr_assert_eq(atomic_load(&drops), 20, "every pending task was dropped before READY");
    cr_assert_eq(pn_task_group_len(g), 0);
    pn_future_drop(&s.base);                  /* READY: a no-op */
    pn_task_group_join_future j;
    cr_assert_eq(pn_task_group_try_join_next(g, &j), -ENOENT);
    /* an empty group shuts down at once; the group stays usable */
    s = pn_task_group_shutdown(g);
    AWAIT(rt, s);
    cr_assert_eq(s.res, 0);
    valf v = valf_new(1, 5);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
    drain d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_eq(d.ok, 1);
    cr_assert_eq(d.sum, 5);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* Waits for one result, then frees the group while other tasks run. */
typedef struct free_midway {
    pn_future base;
    int pc;
    pn_task_group *g;
    pn_task_group_join_future j;
} free_midway;

static pn_poll free_midway_poll(pn_future *f, pn_cx *cx)
{
    free_midway *m = (free_midway *)f;
    PN_ASYNC_BEGIN(m->pc);
    m->j = pn_task_group_join_next(m->g);
    PN_AWAIT(m->pc, &m->j, cx);
    cr_assert_eq(m->j.res, 0);
    pn_task_group_free(m->g);                 /* pending tasks detach-abort */
    cr_assert_eq(((valf *)m->j.output)->out, 7, "a taken result outlives the group");
    pn_task_group_join_release(&m->j);
    PN_ASYNC_END(m->pc);
}

static const pn_future_vtable free_midway_vt = { free_midway_poll, NULL, "free_midway" };

BOTH(task_group, free_with_tasks_running_leaks_nothing)
{
    pn_runtime *rt = flavour_new(fl);
    atomic_int drops = 0;
    /* freed from the test thread, with running, finished and joined tasks */
    pn_task_group *g = group_new(rt);
    for (int i = 0; i < 5; i++) {
        pending_f p = pending_new(&drops);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
        valf v = valf_new(0, i);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
    }
    pn_task_group_join_future j = pn_task_group_join_next(g);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    pn_task_group_free(g);
    pn_task_group_join_release(&j);           /* after the group: still fine */
    /* freed from inside a task */
    g = group_new(rt);
    valf v = valf_new(2, 7);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
    for (int i = 0; i < 5; i++) {
        pending_f p = pending_new(&drops);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
    }
    free_midway m = { .base = { &free_midway_vt }, .g = g };
    AWAIT(rt, m);
    pn_task_group_free(NULL);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(atomic_load(&drops), 10, "every detached task was dropped");
}

/* ---- cancel safety of join_next ---------------------------------------------- */

/* Poll join_next once (pending), drop it, open the gate, join again. */
typedef struct drop_then_join {
    pn_future base;
    int pc;
    pn_task_group *g;
    gate *gate;
    pn_task_group_join_future j;
    pn_poll first;
} drop_then_join;

static pn_poll drop_then_join_poll(pn_future *f, pn_cx *cx)
{
    drop_then_join *d = (drop_then_join *)f;
    PN_ASYNC_BEGIN(d->pc);
    d->j = pn_task_group_join_next(d->g);
    d->first = pn_future_poll(&d->j.base, cx);
    cr_assert_eq(d->first, PN_PENDING);
    pn_future_drop(&d->j.base);
    gate_open(d->gate);
    d->j = pn_task_group_join_next(d->g);
    PN_AWAIT(d->pc, &d->j, cx);
    PN_ASYNC_END(d->pc);
}

static const pn_future_vtable drop_then_join_vt = { drop_then_join_poll, NULL, "drop_then_join" };

BOTH(task_group, a_dropped_pending_join_next_loses_no_result)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    gate gt;
    memset(&gt, 0, sizeof gt);
    gated t = gated_new(&gt, 42, NULL);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, t), 0);
    drop_then_join d = { .base = { &drop_then_join_vt }, .g = g, .gate = &gt };
    AWAIT(rt, d);
    cr_assert_eq(d.j.res, 0);
    cr_assert_eq(((gated *)d.j.output)->out, 42);
    pn_future_drop(&d.j.base);                /* a READY join: releases */
    cr_assert_null(d.j.output);
    cr_assert_eq(pn_task_group_len(g), 0);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* Pending join_next and shutdown polled by hand with a probe waker, then
 * dropped: each gives its waker back; the aborts of the dropped shutdown
 * stand (the tasks still come out cancelled). */
BOTH(task_group, dropped_pending_join_next_and_shutdown_give_their_waker_back)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    atomic_int drops = 0;
    for (int i = 0; i < 3; i++) {
        pending_f p = pending_new(&drops);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
    }
    waker_probe pr = { 0 };
    pn_waker w = { &pr, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .budget = 100 };
    pn_task_group_join_future j = pn_task_group_join_next(g);
    cr_assert_eq(pn_future_poll(&j.base, &cx), PN_PENDING);
    cr_assert_eq(waker_probe_held(&pr), 1);
    pn_future_drop(&j.base);
    cr_assert_eq(waker_probe_held(&pr), 0);
    pn_task_group_shutdown_future s = pn_task_group_shutdown(g);
    if (pn_future_poll(&s.base, &cx) == PN_PENDING)
        pn_future_drop(&s.base);
    cr_assert_eq(waker_probe_held(&pr), 0);
    drain d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_leq(d.cancelled, 3, "those the shutdown's poll took are gone, no more");
    cr_assert_eq(d.ok, 0);
    cr_assert_eq(atomic_load(&drops), 3, "the aborts of the dropped shutdown stand");
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(task_group, try_join_next_says_eagain_and_enoent)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    pn_task_group_join_future j;
    cr_assert_eq(pn_task_group_try_join_next(g, &j), -ENOENT);
    gate gt;
    memset(&gt, 0, sizeof gt);
    gated t = gated_new(&gt, 3, NULL);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, t), 0);
    cr_assert_eq(pn_task_group_try_join_next(g, &j), -EAGAIN);
    pn_task_group_join_release(&j);           /* empty: no-op */
    gate_open(&gt);
    j = pn_task_group_join_next(g);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    pn_task_group_join_release(&j);
    /* a finished task taken without waiting */
    valf v = valf_new(0, 9);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
    while (pn_task_group_try_join_next(g, &j) == -EAGAIN) {
        pn_yield_now_future y = pn_yield();
        AWAIT(rt, y);
    }
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((valf *)j.output)->out, 9);
    pn_task_group_join_release(&j);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(task_group, bad_arguments)
{
    pn_task_group *g = (pn_task_group *)1;
    cr_assert_eq(pn_task_group_new(NULL, &g), -EINVAL);
    cr_assert_null(g);
    pn_runtime *rt = rt_new();
    cr_assert_eq(pn_task_group_new(rt, NULL), -EINVAL);
    valf v = valf_new(0, 1);
    cr_assert_eq(PN_TASK_GROUP_SPAWN((pn_task_group *)NULL, v), -EINVAL);
    g = group_new(rt);
    cr_assert_eq(pn_task_group_spawn(g, NULL, 16), -EINVAL);
    cr_assert_eq(pn_task_group_spawn(g, &v.base, 1), -EINVAL);
    cr_assert_eq(pn_task_group_len(g), 0);
    cr_assert_eq(pn_task_group_len(NULL), 0);
    pn_task_group_abort_all(NULL);
    pn_task_group_join_future j = pn_task_group_join_next(NULL);
    AWAIT(rt, j);
    cr_assert_eq(j.res, -EINVAL);
    cr_assert_eq(pn_task_group_try_join_next(NULL, &j), -EINVAL);
    cr_assert_eq(pn_task_group_try_join_next(g, NULL), -EINVAL);
    pn_task_group_shutdown_future s = pn_task_group_shutdown(NULL);
    AWAIT(rt, s);
    cr_assert_eq(s.res, -EINVAL);
    pn_task_group_join_release(NULL);
    pn_task_group_join_future never = pn_task_group_join_next(g);
    pn_future_drop(&never.base);              /* never polled: no-op */
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), -ESHUTDOWN);
    cr_assert_eq(pn_task_group_len(g), 0);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(task_group, tasks_dropped_by_runtime_shutdown_come_out_cancelled)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    atomic_int drops = 0;
    for (int i = 0; i < 4; i++) {
        pending_f p = pending_new(&drops);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(atomic_load(&drops), 4);
    pn_task_group_join_future j;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pn_task_group_try_join_next(g, &j), -ECANCELED);
        pn_task_group_join_release(&j);
    }
    cr_assert_eq(pn_task_group_try_join_next(g, &j), -ENOENT);
    pn_task_group_free(g);
}

/* ---- threads ------------------------------------------------------------------ */

typedef struct spawner_arg {
    pn_task_group *g;
    int from, n;
} spawner_arg;

static void *spawner(void *p)
{
    spawner_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        valf v = valf_new((a->from + i) % 3, a->from + i);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(a->g, v), 0);
    }
    return NULL;
}

/* join_next waits (the group has one task that never ends until its gate
 * opens) while a plain thread spawns; the spawned one comes out first. */
Test(task_group, a_plain_thread_spawns_while_join_next_waits)
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_WORKERS);
    pn_task_group *g = group_new(rt);
    gate gt;
    memset(&gt, 0, sizeof gt);
    gated t = gated_new(&gt, -1, NULL);
    cr_assert_eq(PN_TASK_GROUP_SPAWN(g, t), 0);
    spawner_arg a = { g, 100, 1 };
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, spawner, &a), 0);
    pn_task_group_join_future j = pn_task_group_join_next(g);
    AWAIT(rt, j);                             /* a lost wake: the watchdog */
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((valf *)j.output)->out, 100);
    pn_task_group_join_release(&j);
    cr_assert_eq(pthread_join(th, NULL), 0);
    gate_open(&gt);
    drain d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_eq(d.ok, 1);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* The task finishes before its join waker is the group's node: the spawner
 * must see it and move the node itself. */
static void wait_finished_at_spawn(const char *name, void *arg)
{
    if (strcmp(name, "task_group.spawn"))
        return;
    while (!pn_join_handle_is_finished(arg))
        sched_yield();
}

Test(task_group, a_task_finishing_before_its_waker_is_stored_still_comes_out)
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_WORKERS);
    pn_task_group *g = group_new(rt);
    pn__point_set_hook(wait_finished_at_spawn);
    for (int i = 0; i < 5; i++) {
        valf v = valf_new(i, i + 1);
        cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
    }
    pn__point_set_hook(NULL);
    drain d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_eq(d.ok, 5);
    cr_assert_eq(d.sum, 15);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* The spawner (a plain thread) stops right after storing its waker; the
 * task is let finish, joined and released by the test thread; then the
 * spawner goes on (ASan / TSan: it must not touch the freed task). */
static gate reg_gate;
static atomic_bool reg_armed, reg_released;

static void release_while_registering(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "join.registered") || !atomic_exchange(&reg_armed, false))
        return;
    gate_open(&reg_gate);
    while (!atomic_load(&reg_released))
        sched_yield();
}

static void *spawn_gated(void *p)
{
    gated t = gated_new(&reg_gate, 11, NULL);
    cr_assert_eq(PN_TASK_GROUP_SPAWN((pn_task_group *)p, t), 0);
    return NULL;
}

Test(task_group, a_task_joined_while_its_spawner_registers_is_not_touched_after)
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_WORKERS);
    pn_task_group *g = group_new(rt);
    memset(&reg_gate, 0, sizeof reg_gate);
    atomic_store(&reg_released, false);
    atomic_store(&reg_armed, true);
    pn__point_set_hook(release_while_registering);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, spawn_gated, g), 0);
    pn_task_group_join_future j = pn_task_group_join_next(g);
    while (pn_task_group_len(g) == 0)
        sched_yield();                        /* the spawn is under way */
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((gated *)j.output)->out, 11);
    pn_task_group_join_release(&j);
    atomic_store(&reg_released, true);
    cr_assert_eq(pthread_join(th, NULL), 0);
    pn__point_set_hook(NULL);
    cr_assert_eq(pn_task_group_len(g), 0);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

#define STRESS_THREADS 4
#define STRESS_PER 250

BOTH(task_group, a_thousand_tasks_from_several_threads_come_out_once_each)
{
    pn_runtime *rt = flavour_new(fl);
    pn_task_group *g = group_new(rt);
    pthread_t th[STRESS_THREADS];
    spawner_arg a[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        a[i] = (spawner_arg){ g, i * STRESS_PER, STRESS_PER };
        cr_assert_eq(pthread_create(&th[i], NULL, spawner, &a[i]), 0);
    }
    for (int i = 0; i < STRESS_THREADS; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    int n = STRESS_THREADS * STRESS_PER;
    drain d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_eq(d.ok, n);
    cr_assert_eq(d.sum, (long)n * (n - 1) / 2);
    /* and once more with aborts racing completions */
    atomic_int drops = 0;
    for (int i = 0; i < n; i++) {
        if (i % 2) {
            pending_f p = pending_new(&drops);
            cr_assert_eq(PN_TASK_GROUP_SPAWN(g, p), 0);
        } else {
            valf v = valf_new(i % 5, 1);
            cr_assert_eq(PN_TASK_GROUP_SPAWN(g, v), 0);
        }
    }
    pn_task_group_abort_all(g);
    d = drain_new(g);
    AWAIT(rt, d);
    cr_assert_eq(d.ok + d.cancelled, n);
    cr_assert_eq(d.cancelled, n / 2 + (n / 2 - d.ok));
    cr_assert_eq(atomic_load(&drops), n / 2);
    pn_task_group_free(g);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
