/*
 * test_executor.c - wakers, task state transitions, spawn/join/abort/detach,
 * the current-thread runtime's loop, cross-thread spawns and wakes, the
 * cooperative budget and shutdown.
 */
#include <pthread.h>
#include <unistd.h>
#include <time.h>
#include "helpers.h"
#include "executor/task.h"
#include "core/sys.h"

#define COUNTDOWN_NO_MAIN
#include "../examples/countdown.c"

TestSuite(executor, .timeout = PN_TEST_TIMEOUT);

/* ---- wakers ------------------------------------------------------------- */

static int probe_wakes, probe_clones, probe_drops;
static pn_waker probe_clone(const void *d);
static void probe_wake(const void *d) { (void)d; probe_wakes++; probe_drops++; }
static void probe_wake_by_ref(const void *d) { (void)d; probe_wakes++; }
static void probe_drop(const void *d) { (void)d; probe_drops++; }
static const pn_waker_vtable probe_vt = { probe_clone, probe_wake, probe_wake_by_ref, probe_drop };
static pn_waker probe_clone(const void *d) { probe_clones++; return (pn_waker){ d, &probe_vt }; }

Test(executor, waker_value_semantics)
{
    int a, b;
    pn_waker wa = { &a, &probe_vt }, wb = { &b, &probe_vt }, none = PN_WAKER_NONE;
    probe_wakes = probe_clones = probe_drops = 0;

    cr_assert(pn_waker_will_wake(&wa, &wa));
    cr_assert_not(pn_waker_will_wake(&wa, &wb));
    /* Every operation on the empty waker is a no-op. */
    pn_waker_wake_by_ref(&none);
    pn_waker_wake(&none);
    pn_waker_drop(&none);
    cr_assert_eq(probe_wakes + probe_clones + probe_drops, 0);

    /* pn_waker_set clones once, keeps the slot when will_wake holds, and
     * drops the old waker when it changes. */
    pn_waker slot = PN_WAKER_NONE;
    pn_waker_set(&slot, &wa);
    pn_waker_set(&slot, &wa);
    cr_assert_eq(probe_clones, 1);
    pn_waker_set(&slot, &wb);
    cr_assert_eq(probe_clones, 2);
    cr_assert_eq(probe_drops, 1);
    cr_assert(slot.data == &b);
    pn_waker_wake(&slot);               /* consumes */
    cr_assert_eq(probe_wakes, 1);
    cr_assert(pn_waker_is_none(&slot));
}

/* ---- the countdown of the seed article ---------------------------------- */

Test(executor, countdown_is_polled_exactly_four_times)
{
    pn_runtime *rt = rt_new();
    countdown_future cd = countdown_new(3);
    cr_assert_eq(cd.polls, 0, "a future is lazy: creating it runs nothing");
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&cd)), 0);
    cr_assert_eq(cd.polls, 4);
    cr_assert_str_eq(cd.output, "Blastoff!");
    pn_runtime_free(rt);
}

Test(executor, countdown_as_a_spawned_task)
{
    pn_runtime *rt = rt_new();
    countdown_future cd = countdown_new(3);
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, cd, &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, 0);
    countdown_future *done = j.output;
    cr_assert_eq(done->polls, 4);
    cr_assert_str_eq(done->output, "Blastoff!");
    cr_assert(pn_join_handle_is_finished(h));
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* ---- waking rules ---------------------------------------------------------- */

/* Parks its waker in a global on the first poll; ready on the second. */
static pn_waker parked_waker;
static _Atomic int parked_polls;
static pn_poll park_once_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (atomic_fetch_add(&parked_polls, 1) == 0) {
        parked_waker = pn_waker_clone(cx->waker);
        return PN_PENDING;
    }
    return PN_READY;
}
static const pn_future_vtable park_once_vt = { park_once_poll, NULL, "park_once" };

/* Main future: spawn park_once, wait until it parked, wake it 3 times, join. */
typedef struct multi_wake_main {
    pn_future base;
    int pc;
    pn_join_handle *h;
    pn_join_future j;
    pn_yield_now_future y;
} multi_wake_main;

static pn_poll multi_wake_poll(pn_future *f, pn_cx *cx)
{
    multi_wake_main *m = (multi_wake_main *)f;
    PN_ASYNC_BEGIN(m->pc);
    {
        pn_future pf = { &park_once_vt };
        cr_assert_eq(pn_spawn_cx(cx, &pf, sizeof(pf), &m->h), 0);
    }
    while (atomic_load(&parked_polls) == 0) {
        m->y = pn_yield();
        PN_AWAIT(m->pc, &m->y, cx);
    }
    pn_waker_wake_by_ref(&parked_waker);
    pn_waker_wake_by_ref(&parked_waker);
    pn_waker_wake_by_ref(&parked_waker);
    m->j = pn_join(m->h);
    PN_AWAIT(m->pc, &m->j, cx);
    cr_assert_eq(m->j.res, 0);
    PN_ASYNC_END(m->pc);
}
static const pn_future_vtable multi_wake_vt = { multi_wake_poll, NULL, "multi_wake" };

Test(executor, many_wakes_before_run_poll_once)
{
    pn_runtime *rt = rt_new();
    atomic_store(&parked_polls, 0);
    multi_wake_main m = { .base = { &multi_wake_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&m)), 0);
    cr_assert_eq(atomic_load(&parked_polls), 2, "three wakes, one poll");
    /* Waking a finished task is harmless (the clone keeps the cell alive). */
    pn_waker_wake_by_ref(&parked_waker);
    pn_waker_wake(&parked_waker);
    pn_join_handle_free(m.h);
    pn_runtime_free(rt);
}

/* A wake from another thread that lands while the task is being polled must
 * cause one more poll (no lost wakeup). */
static _Atomic int woke_during_poll;
static void *wake_thread(void *arg)
{
    pn_waker *w = arg;
    pn_waker_wake(w);
    atomic_store(&woke_during_poll, 1);
    return NULL;
}

typedef struct wake_in_poll {
    pn_future base;
    int polls;
    pn_waker w;
    pthread_t th;
} wake_in_poll;

static pn_poll wake_in_poll_poll(pn_future *f, pn_cx *cx)
{
    wake_in_poll *s = (wake_in_poll *)f;
    if (++s->polls == 1) {
        s->w = pn_waker_clone(cx->waker);
        pthread_create(&s->th, NULL, wake_thread, &s->w);
        while (!atomic_load(&woke_during_poll))
            ;                                  /* still RUNNING when it wakes */
        pthread_join(s->th, NULL);
        return PN_PENDING;
    }
    return PN_READY;
}
static const pn_future_vtable wake_in_poll_vt = { wake_in_poll_poll, NULL, "wake_in_poll" };

Test(executor, wake_while_running_repolls)
{
    pn_runtime *rt = rt_new();
    atomic_store(&woke_during_poll, 0);
    wake_in_poll w = { .base = { &wake_in_poll_vt } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, w, &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(((wake_in_poll *)j.output)->polls, 2);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* ---- join, detach, abort ---------------------------------------------------- */

typedef struct answer_future { pn_future base; int out; } answer_future;
static pn_poll answer_poll(pn_future *f, pn_cx *cx) { (void)cx; ((answer_future *)f)->out = 42; return PN_READY; }
static const pn_future_vtable answer_vt = { answer_poll, NULL, "answer" };

Test(executor, join_reads_output)
{
    pn_runtime *rt = rt_new();
    answer_future a = { .base = { &answer_vt } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, a, &h), 0);
    cr_assert_not(pn_join_handle_is_finished(h), "spawn does not poll");
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((answer_future *)j.output)->out, 42);
    /* Aborting a finished task changes nothing. */
    pn_join_handle_abort(h);
    pn_join_future j2 = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j2)), 0);
    cr_assert_eq(j2.res, 0);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

static _Atomic int detached_runs;
static pn_poll detached_poll(pn_future *f, pn_cx *cx) { (void)f; (void)cx; atomic_fetch_add(&detached_runs, 1); return PN_READY; }
static const pn_future_vtable detached_vt = { detached_poll, NULL, "detached" };

static pn_poll until_detached_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (atomic_load(&detached_runs) == 1001)
        return PN_READY;
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}
static const pn_future_vtable until_detached_vt = { until_detached_poll, NULL, "until_detached" };

Test(executor, detached_tasks_run_to_completion)
{
    pn_runtime *rt = rt_new();
    atomic_store(&detached_runs, 0);
    for (int i = 0; i < 1000; i++) {
        pn_future d = { &detached_vt };
        cr_assert_eq(pn_spawn(rt, &d, sizeof(d), NULL), 0);
    }
    /* Also a handle released before the task ran: it keeps running. */
    pn_future d = { &detached_vt };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, &d, sizeof(d), &h), 0);
    pn_join_handle_free(h);
    pn_future w = { &until_detached_vt };
    cr_assert_eq(pn_block_on(rt, &w), 0);
    cr_assert_eq(atomic_load(&detached_runs), 1001);
    pn_runtime_free(rt);
}

Test(executor, abort_idle_task_drops_future_once)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    forever_future ff = forever_new(&drops);
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, ff, &h), 0);
    steps_future s = steps_new(3, NULL);      /* let it be polled once */
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(drops, 0);
    pn_join_handle_abort(h);
    pn_join_handle_abort(h);                  /* twice is harmless */
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, -ECANCELED);
    cr_assert_null(j.output);
    cr_assert_eq(drops, 1);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
    cr_assert_eq(drops, 1, "shutdown does not drop a cancelled task again");
}

/* A task that aborts itself while it runs is dropped after that poll. */
typedef struct self_abort { pn_future base; pn_join_handle **h; int *drops; int polls; } self_abort;
static pn_poll self_abort_poll(pn_future *f, pn_cx *cx)
{
    self_abort *s = (self_abort *)f;
    s->polls++;
    pn_join_handle_abort(*s->h);
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}
static void self_abort_drop(pn_future *f) { (*((self_abort *)f)->drops)++; }
static const pn_future_vtable self_abort_vt = { self_abort_poll, self_abort_drop, "self_abort" };

Test(executor, abort_while_running)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    static pn_join_handle *h;
    self_abort sa = { .base = { &self_abort_vt }, .h = &h, .drops = &drops };
    cr_assert_eq(PN_SPAWN(rt, sa, &h), 0);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, -ECANCELED);
    cr_assert_eq(drops, 1);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

Test(executor, abort_before_first_poll)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    forever_future ff = forever_new(&drops);
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, ff, &h), 0);
    pn_join_handle_abort(h);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, -ECANCELED);
    cr_assert_eq(drops, 1);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* ---- shutdown ------------------------------------------------------------------ */

Test(executor, shutdown_drops_every_unfinished_task)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    pn_join_handle *kept[10];
    /* 100 tasks that ran once and wait forever, 10 of them with handles. */
    for (int i = 0; i < 100; i++) {
        forever_future ff = forever_new(&drops);
        cr_assert_eq(PN_SPAWN(rt, ff, i < 10 ? &kept[i] : NULL), 0);
    }
    steps_future s = steps_new(2, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    /* 50 more that never ran (still in the run queue). */
    for (int i = 0; i < 50; i++) {
        forever_future ff = forever_new(&drops);
        cr_assert_eq(PN_SPAWN(rt, ff, NULL), 0);
    }
    pn_runtime_shutdown(rt);
    cr_assert_eq(drops, 150);
    forever_future late = forever_new(&drops);
    cr_assert_eq(PN_SPAWN(rt, late, NULL), -ESHUTDOWN);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), -ESHUTDOWN);
    for (int i = 0; i < 10; i++) {
        cr_assert(pn_join_handle_is_finished(kept[i]));
        pn_join_handle_free(kept[i]);
    }
    pn_runtime_free(rt);
    cr_assert_eq(drops, 150);
}

/* Dropping a task during shutdown may wake or abort other tasks. */
typedef struct waker_holder { pn_future base; pn_waker *other; int *drops; bool first; } waker_holder;
static pn_poll holder_poll(pn_future *f, pn_cx *cx)
{
    waker_holder *w = (waker_holder *)f;
    if (w->first) {
        *w->other = pn_waker_clone(cx->waker);
    }
    return PN_PENDING;
}
static void holder_drop(pn_future *f)
{
    waker_holder *w = (waker_holder *)f;
    (*w->drops)++;
    pn_waker_wake(w->other);   /* wakes (or frees) whoever is in the slot */
}
static const pn_future_vtable holder_vt = { holder_poll, holder_drop, "holder" };

Test(executor, shutdown_survives_wakes_from_drop)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    pn_waker slot_a = PN_WAKER_NONE, slot_b = PN_WAKER_NONE;
    waker_holder a = { .base = { &holder_vt }, .other = &slot_a, .drops = &drops, .first = true };
    waker_holder b = { .base = { &holder_vt }, .other = &slot_b, .drops = &drops, .first = true };
    cr_assert_eq(PN_SPAWN(rt, a, NULL), 0);
    cr_assert_eq(PN_SPAWN(rt, b, NULL), 0);
    steps_future s = steps_new(2, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    /* Swap: each task's drop now wakes the other task. */
    pn_waker t = slot_a; slot_a = slot_b; slot_b = t;
    pn_runtime_free(rt);
    cr_assert_eq(drops, 2);
}

/* ---- the runtime's contracts -------------------------------------------------- */

typedef struct nested { pn_future base; pn_runtime *rt; int res; } nested;
static pn_poll nested_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    nested *n = (nested *)f;
    steps_future s = steps_new(1, NULL);
    n->res = pn_block_on(n->rt, PN_FUTURE(&s));
    return PN_READY;
}
static const pn_future_vtable nested_vt = { nested_poll, NULL, "nested" };

Test(executor, nested_block_on_is_refused)
{
    pn_runtime *rt = rt_new(), *other = rt_new();
    nested n = { .base = { &nested_vt }, .rt = rt };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&n)), 0);
    cr_assert_eq(n.res, -EDEADLK);
    n = (nested){ .base = { &nested_vt }, .rt = other };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&n)), 0);
    cr_assert_eq(n.res, -EDEADLK, "no block_on inside a task, whatever the runtime");
    pn_runtime_free(other);
    pn_runtime_free(rt);
}

Test(executor, bad_arguments)
{
    pn_runtime *rt = rt_new();
    answer_future a = { .base = { &answer_vt } };
    pn_join_handle *h = (pn_join_handle *)1;
    cr_assert_eq(pn_spawn(NULL, PN_FUTURE(&a), sizeof(a), &h), -EINVAL);
    cr_assert_null(h);
    cr_assert_eq(pn_spawn(rt, NULL, sizeof(a), NULL), -EINVAL);
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), 1, NULL), -EINVAL);
    cr_assert_eq(pn_block_on(NULL, PN_FUTURE(&a)), -EINVAL);
    cr_assert_eq(pn_block_on(rt, NULL), -EINVAL);
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.budget = 0;
    pn_runtime *bad = (pn_runtime *)1;
    cr_assert_eq(pn_runtime_new(&cfg, &bad), -EINVAL);
    cr_assert_null(bad);
    pn_runtime_free(NULL);
    pn_join_handle_free(NULL);
    pn_join_handle_abort(NULL);
    pn_runtime_free(rt);
}

static int fail_malloc_after = -1;
static void *failing_malloc(size_t n)
{
    if (fail_malloc_after == 0)
        return NULL;
    if (fail_malloc_after > 0)
        fail_malloc_after--;
    return malloc(n);
}
static void restore_sys(void) { pn__sys_reset(); }

Test(executor, spawn_enomem_leaves_future_to_caller, .fini = restore_sys)
{
    pn_runtime *rt = rt_new();
    int drops = 0;
    forever_future ff = forever_new(&drops);
    pn__sys.malloc = failing_malloc;
    fail_malloc_after = 0;
    pn_join_handle *h = (pn_join_handle *)1;
    cr_assert_eq(PN_SPAWN(rt, ff, &h), -ENOMEM);
    cr_assert_null(h);
    cr_assert_eq(drops, 0, "the caller still owns the future");
    fail_malloc_after = -1;
    cr_assert_eq(PN_SPAWN(rt, ff, NULL), 0, "a later spawn works");
    pn_runtime_free(rt);
    cr_assert_eq(drops, 1);
    /* Runtime creation under ENOMEM fails cleanly at each allocation. */
    for (int k = 0; k < 4; k++) {
        fail_malloc_after = k;
        pn_runtime *r2 = NULL;
        int err = pn_runtime_new(NULL, &r2);
        fail_malloc_after = -1;
        if (err == 0)
            pn_runtime_free(r2);
        else
            cr_assert_eq(err, -ENOMEM);
    }
}

/* ---- cross-thread use ---------------------------------------------------------- */

#define REMOTE_TASKS 2000
static _Atomic int remote_done;
static pn_waker remote_main_waker;
static pthread_mutex_t remote_lock = PTHREAD_MUTEX_INITIALIZER;

static pn_poll remote_task_poll(pn_future *f, pn_cx *cx)
{
    (void)f; (void)cx;
    if (atomic_fetch_add(&remote_done, 1) + 1 == REMOTE_TASKS) {
        pthread_mutex_lock(&remote_lock);
        pn_waker_wake_by_ref(&remote_main_waker);
        pthread_mutex_unlock(&remote_lock);
    }
    return PN_READY;
}
static const pn_future_vtable remote_task_vt = { remote_task_poll, NULL, "remote" };

static pn_poll wait_all_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    pthread_mutex_lock(&remote_lock);
    pn_waker_set(&remote_main_waker, cx->waker);
    pthread_mutex_unlock(&remote_lock);
    return atomic_load(&remote_done) == REMOTE_TASKS ? PN_READY : PN_PENDING;
}
static const pn_future_vtable wait_all_vt = { wait_all_poll, NULL, "wait_all" };

static void *spawner(void *arg)
{
    pn_runtime *rt = arg;
    for (int i = 0; i < REMOTE_TASKS / 2; i++) {
        pn_future t = { &remote_task_vt };
        cr_assert_eq(pn_spawn(rt, &t, sizeof(t), NULL), 0);
        if (i % 100 == 0)
            usleep(100);            /* let the loop park now and then */
    }
    return NULL;
}

Test(executor, spawn_from_foreign_threads)
{
    pn_runtime *rt = rt_new();
    atomic_store(&remote_done, 0);
    remote_main_waker = PN_WAKER_NONE;
    pthread_t a, b;
    pthread_create(&a, NULL, spawner, rt);
    pthread_create(&b, NULL, spawner, rt);
    pn_future w = { &wait_all_vt };
    cr_assert_eq(pn_block_on(rt, &w), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_eq(atomic_load(&remote_done), REMOTE_TASKS);
    pn_waker_drop(&remote_main_waker);
    pn_runtime_free(rt);
}

static void *late_waker(void *arg)
{
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    pn_waker_wake((pn_waker *)arg);
    return NULL;
}

Test(executor, wake_from_foreign_thread_unparks_the_loop)
{
    pn_runtime *rt = rt_new();
    atomic_store(&parked_polls, 0);
    pn_future pf = { &park_once_vt };
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, &pf, sizeof(pf), &h), 0);
    steps_future s = steps_new(1, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(atomic_load(&parked_polls), 1);
    /* The loop will sleep in epoll with no timer; only the eventfd can
     * bring it back (the test's watchdog fails a lost wakeup). */
    pthread_t th;
    pthread_create(&th, NULL, late_waker, &parked_waker);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    pthread_join(th, NULL);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(atomic_load(&parked_polls), 2);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

static void *other_block_on(void *arg)
{
    pn_runtime *rt = arg;
    steps_future s = steps_new(1, NULL);
    return (void *)(intptr_t)pn_block_on(rt, PN_FUTURE(&s));
}

static pn_poll probe_other_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    pthread_t th;
    void *res;
    pthread_create(&th, NULL, other_block_on, cx->rt);
    pthread_join(th, &res);
    cr_assert_eq((int)(intptr_t)res, -EDEADLK);
    return PN_READY;
}
static const pn_future_vtable probe_other_vt = { probe_other_poll, NULL, "probe_other" };

Test(executor, second_block_on_thread_is_refused)
{
    pn_runtime *rt = rt_new();
    pn_future p = { &probe_other_vt };
    cr_assert_eq(pn_block_on(rt, &p), 0);
    pn_runtime_free(rt);
}

/* ---- cooperative budget ---------------------------------------------------------- */

/* A leaf that is always ready but spends budget, like a socket that always
 * has data; the task loops on it forever without ever returning on its own. */
static pn_poll greedy_poll(pn_future *f, pn_cx *cx)
{
    unsigned long *spins = (unsigned long *)((char *)f + sizeof(pn_future));
    for (;;) {
        if (pn_cx_budget_spend(cx) == PN_PENDING)
            return PN_PENDING;
        (*spins)++;
    }
}
static const pn_future_vtable greedy_vt = { greedy_poll, NULL, "greedy" };
typedef struct greedy { pn_future base; unsigned long spins; } greedy;

Test(executor, budget_stops_an_always_ready_task)
{
    pn_runtime *rt = rt_new();
    greedy g = { .base = { &greedy_vt } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, g, &h), 0);
    countdown_future cd = countdown_new(2);  /* needs 3 turns of the loop */
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&cd)), 0);
    pn_join_handle_abort(h);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* ---- the async macros ------------------------------------------------------------- */

typedef struct three_yields {
    pn_future base;
    int pc, i, polls;
    pn_yield_now_future y;
    int out;
} three_yields;

static pn_poll three_yields_poll(pn_future *f, pn_cx *cx)
{
    three_yields *t = (three_yields *)f;
    t->polls++;
    PN_ASYNC_BEGIN(t->pc);
    for (t->i = 0; t->i < 3; t->i++) {
        t->y = pn_yield();
        PN_AWAIT(t->pc, &t->y, cx);
    }
    PN_YIELD(t->pc, cx);
    t->out = 7;
    PN_ASYNC_END(t->pc);
}
static const pn_future_vtable three_yields_vt = { three_yields_poll, NULL, "three_yields" };

Test(executor, async_macros_resume_where_they_left)
{
    pn_runtime *rt = rt_new();
    three_yields t = { .base = { &three_yields_vt } };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&t)), 0);
    cr_assert_eq(t.out, 7);
    cr_assert_eq(t.polls, 5, "3 awaited yields + 1 PN_YIELD + the final poll");
    cr_assert_eq(t.pc, PN_ASYNC_DONE);
    pn_runtime_free(rt);
}

/* ---- metrics ------------------------------------------------------------------------- */

Test(executor, metrics_of_the_current_thread_runtime)
{
    pn_runtime *rt = rt_new();
    atomic_store(&detached_runs, 0);
    for (int i = 0; i < 1001; i++) {
        pn_future d = { &detached_vt };
        cr_assert_eq(pn_spawn(rt, &d, sizeof(d), NULL), 0);
    }
    pn_future w = { &until_detached_vt };
    cr_assert_eq(pn_block_on(rt, &w), 0);
    greedy g = { .base = { &greedy_vt } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, g, &h), 0);
    steps_future s = steps_new(3, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    pn_runtime_metrics m;
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0);
    cr_assert_eq(m.workers, 1);
    cr_assert_eq(m.tasks_spawned, 1002);
    cr_assert_eq(m.tasks_completed, 1001);
    cr_assert_geq(m.polls, 1002);
    cr_assert_geq(m.budget_exhausted, 1, "the greedy task ran out of budget");
    pn_join_handle_abort(h);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* A task that wakes itself while it is polled, through its cx waker, a
 * clone woken by value, or a clone woken by reference: the wake is noted
 * on the polling thread and set by the poll's end (no lost wake, no
 * leaked reference: LSan), so the task is polled again, once per wake. */
static _Atomic int self_polls;
typedef struct self_waker { pn_future base; int how; } self_waker;
static pn_poll self_waker_poll(pn_future *f, pn_cx *cx)
{
    self_waker *s = (self_waker *)f;
    int n = atomic_fetch_add(&self_polls, 1);
    if (n == 3)
        return PN_READY;
    pn_waker c;
    switch ((s->how + n) % 3) {
    case 0:
        pn_waker_wake_by_ref(cx->waker);
        break;
    case 1:
        c = pn_waker_clone(cx->waker);
        pn_waker_wake(&c);                  /* consumes the clone */
        break;
    default:
        c = pn_waker_clone(cx->waker);
        pn_waker_wake_by_ref(&c);
        pn_waker_wake_by_ref(&c);           /* twice: still one more poll */
        pn_waker_drop(&c);
        break;
    }
    return PN_PENDING;
}
static const pn_future_vtable self_waker_vt = { self_waker_poll, NULL, "self_waker" };

Test(executor, a_task_woken_by_itself_during_its_poll_runs_again_once_per_poll)
{
    for (int fl = 0; fl < 2; fl++)
        for (int how = 0; how < 3; how++) {
            pn_runtime *rt = flavour_new(fl ? PN_RUNTIME_MULTI_THREAD : PN_RUNTIME_CURRENT_THREAD);
            atomic_store(&self_polls, 0);
            self_waker s = { { &self_waker_vt }, how };
            pn_join_handle *h;
            cr_assert_eq(PN_SPAWN(rt, s, &h), 0);
            pn_join_future j = pn_join(h);
            cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
            cr_assert_eq(j.res, 0);
            cr_assert_eq(atomic_load(&self_polls), 4, "polled %d times", atomic_load(&self_polls));
            pn_join_handle_free(h);
            pn_runtime_free(rt);
        }
}
