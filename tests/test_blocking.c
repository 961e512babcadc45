/*
 * test_blocking.c - the blocking pool: results, threads, the thread limit,
 * drop while queued or running, keep-alive, shutdown, both runtime
 * flavours, allocation and thread-creation failures.
 *
 * Several tests poll pn_blocking_future futures by hand with a context whose
 * waker is a probe (counts clones, wakes and drops; may open a gate), so
 * the order of events is fixed by the test, not by a scheduler.  Every
 * wait is a bounded loop on a condition, never a sleep-and-hope.
 *
 * pn_runtime_free calls pn__blocking_shutdown; most tests also call it
 * first, explicitly (a second call is a no-op).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "helpers.h"
#include "executor/blocking.h"
#include "core/sys.h"

TestSuite(blocking, .timeout = PN_TIMEOUT(30));

/* ---- fixtures ------------------------------------------------------------- */

static void rt_free(pn_runtime *rt)
{
    pn__blocking_shutdown(rt);
    pn_runtime_free(rt);
}

/* Up to ~10 s for `cond` to hold, checking every 0.5 ms. */
#define WAIT_FOR(cond)                                             \
    do {                                                           \
        for (int w_i_ = 0; !(cond) && w_i_ < 20000; w_i_++)        \
            usleep(500);                                           \
        cr_assert((cond), "timed out waiting for " #cond);         \
    } while (0)

static unsigned pool_stat_threads(pn_runtime *rt)
{
    pn__blocking_stats s;
    pn__blocking_pool_stats(rt, &s);
    return s.threads;
}

static unsigned pool_stat_queued(pn_runtime *rt)
{
    pn__blocking_stats s;
    pn__blocking_pool_stats(rt, &s);
    return s.queued;
}

/* Threads of this process, not counting the kernel's io_uring workers
 * (iou-wrk-*, iou-sqp-*): on the io_uring backend the kernel may start one
 * for a request it runs asynchronously, and lets it go on its own time. */
static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(comm, sizeof comm, f))
                comm[0] = 0;
            fclose(f);
        }
        if (strncmp(comm, "iou-", 4) != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* A gate that blocking calls wait on. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void gate_set(bool open)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = open;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static _Atomic int started, finished;

/* Counts itself, waits for the gate, returns arg + 1. */
static void *gated(void *arg)
{
    atomic_fetch_add(&started, 1);
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    atomic_fetch_add(&finished, 1);
    return (void *)((intptr_t)arg + 1);
}

/* A probe waker: counts, and may open the gate when woken. */
typedef struct probe {
    _Atomic int clones, wakes, drops;
    bool opens_gate;
} probe;

static pn_waker probe_clone(const void *d);
static void probe_wake_by_ref(const void *d)
{
    probe *p = (probe *)d;
    atomic_fetch_add(&p->wakes, 1);
    if (p->opens_gate)
        gate_set(true);
}
static void probe_wake(const void *d)
{
    probe_wake_by_ref(d);
    atomic_fetch_add(&((probe *)d)->drops, 1);
}
static void probe_drop(const void *d) { atomic_fetch_add(&((probe *)d)->drops, 1); }
static const pn_waker_vtable probe_vt = { probe_clone, probe_wake, probe_wake_by_ref, probe_drop };
static pn_waker probe_clone(const void *d)
{
    atomic_fetch_add(&((probe *)d)->clones, 1);
    return (pn_waker){ d, &probe_vt };
}

/* A context for polling by hand on rt with probe p's waker. */
typedef struct hand_cx {
    pn_waker w;
    pn_cx cx;
} hand_cx;

static void hand_cx_init(hand_cx *h, pn_runtime *rt, probe *p)
{
    h->w = (pn_waker){ p, &probe_vt };
    h->cx = (pn_cx){ .waker = &h->w, .rt = rt, .budget = 128 };
}

static pn_poll poll_by_hand(hand_cx *h, pn_blocking_future *b)
{
    h->cx.budget = 128;
    return pn_future_poll(PN_FUTURE(b), &h->cx);
}

/* Every clone the pool took was consumed by a wake or dropped. */
static void assert_probe_balanced(probe *p)
{
    cr_assert_eq(atomic_load(&p->clones), atomic_load(&p->drops),
                 "waker clones %d, drops %d", atomic_load(&p->clones), atomic_load(&p->drops));
}

/* ---- many jobs on a runtime ------------------------------------------------ */

#define JOBS 1000

static pthread_t runtime_thread;
static _Atomic int on_runtime_thread, with_runtime_tls;

static void *triple(void *arg)
{
    if (pthread_equal(pthread_self(), runtime_thread))
        atomic_fetch_add(&on_runtime_thread, 1);
    if (pn_runtime_current() != NULL)
        atomic_fetch_add(&with_runtime_tls, 1);
    return (void *)((intptr_t)arg * 3);
}

/* Polls every unfinished child; ready when all are. */
typedef struct all_jobs {
    pn_future base;
    pn_blocking_future *jobs;
    bool *done;
    size_t n, left;
} all_jobs;

static pn_poll all_jobs_poll(pn_future *f, pn_cx *cx)
{
    all_jobs *a = (all_jobs *)f;
    for (size_t i = 0; i < a->n; i++) {
        if (a->done[i])
            continue;
        if (pn_future_poll(PN_FUTURE(&a->jobs[i]), cx) == PN_READY) {
            a->done[i] = true;
            a->left--;
        }
    }
    return a->left == 0 ? PN_READY : PN_PENDING;
}

static void all_jobs_drop(pn_future *f)
{
    all_jobs *a = (all_jobs *)f;
    for (size_t i = 0; i < a->n; i++)
        if (!a->done[i])
            pn_future_drop(PN_FUTURE(&a->jobs[i]));
}

static const pn_future_vtable all_jobs_vt = { all_jobs_poll, all_jobs_drop, "all_jobs" };

static void sum_of_jobs_on(pn_runtime_flavor flavor)
{
    pn_runtime *rt = flavour_new(flavor);
    runtime_thread = pthread_self();
    pn_blocking_future *jobs = calloc(JOBS, sizeof(*jobs));
    bool *done = calloc(JOBS, sizeof(*done));
    for (intptr_t i = 0; i < JOBS; i++)
        jobs[i] = pn_spawn_blocking(triple, (void *)(i + 1));
    all_jobs a = { .base = { &all_jobs_vt }, .jobs = jobs, .done = done, .n = JOBS, .left = JOBS };

    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&a)), 0);
    intptr_t sum = 0;
    for (size_t i = 0; i < JOBS; i++) {
        cr_assert_eq(jobs[i].res, 0, "job %zu: %s", i, pn_strerror(jobs[i].res));
        sum += (intptr_t)jobs[i].value;
    }
    cr_assert_eq(sum, 3 * (intptr_t)JOBS * (JOBS + 1) / 2);
    cr_assert_eq(atomic_load(&on_runtime_thread), 0, "a call ran on the runtime thread");
    cr_assert_eq(atomic_load(&with_runtime_tls), 0, "a call ran on a runtime thread");
    pn__blocking_stats s;
    pn__blocking_pool_stats(rt, &s);
    cr_assert_leq(s.spawned_threads, 64, "at most the default limit of threads");
    cr_assert_geq(s.spawned_threads, 1);
    free(jobs);
    free(done);
    rt_free(rt);
}

Test(blocking, sum_of_1000_jobs_current_thread)
{
    sum_of_jobs_on(PN_RUNTIME_CURRENT_THREAD);
}

Test(blocking, sum_of_1000_jobs_block_on_multi_thread)
{
    sum_of_jobs_on(PN_RUNTIME_MULTI_THREAD);
}

/* Tasks on the workers of a multi-thread runtime, each awaiting one call. */
typedef struct one_job {
    pn_future base;
    int pc;
    intptr_t in, out;
    pn_blocking_fn fn;      /* NULL: triple */
    pn_blocking_future b;
} one_job;

static pn_poll one_job_poll(pn_future *f, pn_cx *cx)
{
    one_job *o = (one_job *)f;
    PN_ASYNC_BEGIN(o->pc);
    o->b = pn_spawn_blocking(o->fn ? o->fn : triple, (void *)o->in);
    PN_AWAIT(o->pc, &o->b, cx);
    cr_assert_eq(o->b.res, 0);
    o->out = (intptr_t)o->b.value;
    PN_ASYNC_END(o->pc);
}

static void one_job_drop(pn_future *f)
{
    one_job *o = (one_job *)f;
    if (o->pc != 0 && o->pc != PN_ASYNC_DONE)
        pn_future_drop(PN_FUTURE(&o->b));
}

static const pn_future_vtable one_job_vt = { one_job_poll, one_job_drop, "one_job" };

typedef struct join_sum {
    pn_future base;
    int pc;
    size_t i, n;
    pn_join_handle **hs;
    pn_join_future j;
    intptr_t sum;
} join_sum;

static pn_poll join_sum_poll(pn_future *f, pn_cx *cx)
{
    join_sum *s = (join_sum *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->i = 0; s->i < s->n; s->i++) {
        s->j = pn_join(s->hs[s->i]);
        PN_AWAIT(s->pc, &s->j, cx);
        cr_assert_eq(s->j.res, 0);
        s->sum += ((one_job *)s->j.output)->out;
        pn_join_handle_free(s->hs[s->i]);
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable join_sum_vt = { join_sum_poll, NULL, "join_sum" };

Test(blocking, sum_of_1000_jobs_from_worker_tasks)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    runtime_thread = pthread_self();
    pn_join_handle **hs = calloc(JOBS, sizeof(*hs));
    for (intptr_t i = 0; i < JOBS; i++) {
        one_job o = { .base = { &one_job_vt }, .in = i + 1 };
        cr_assert_eq(PN_SPAWN(rt, o, &hs[i]), 0);
    }
    join_sum s = { .base = { &join_sum_vt }, .hs = hs, .n = JOBS };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(s.sum, 3 * (intptr_t)JOBS * (JOBS + 1) / 2);
    cr_assert_eq(atomic_load(&with_runtime_tls), 0, "a call ran on a runtime thread");
    free(hs);
    rt_free(rt);
}

/* One call after another from one future: the thread that ran a call
 * counts itself idle before it wakes the future, so the next call finds it
 * and no second thread is started. */
typedef struct seq_jobs {
    pn_future base;
    int pc, i, n;
    intptr_t sum;
    pn_blocking_future b;
} seq_jobs;

static pn_poll seq_jobs_poll(pn_future *f, pn_cx *cx)
{
    seq_jobs *s = (seq_jobs *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (s->i = 1; s->i <= s->n; s->i++) {
        s->b = pn_spawn_blocking(triple, (void *)(intptr_t)s->i);
        PN_AWAIT(s->pc, &s->b, cx);
        cr_assert_eq(s->b.res, 0);
        s->sum += (intptr_t)s->b.value;
    }
    PN_ASYNC_END(s->pc);
}

static const pn_future_vtable seq_jobs_vt = { seq_jobs_poll, NULL, "seq_jobs" };

Test(blocking, sequential_calls_reuse_one_thread)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    seq_jobs s = { .base = { &seq_jobs_vt }, .n = 500 };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&s)), 0);
    cr_assert_eq(s.sum, 3 * 500 * 501 / 2);
    pn__blocking_stats st;
    pn__blocking_pool_stats(rt, &st);
    cr_assert_eq(st.spawned_threads, 1, "started %llu threads",
                 (unsigned long long)st.spawned_threads);
    rt_free(rt);
}

/* ---- the thread limit ------------------------------------------------------ */

static _Atomic int running_now, running_peak;

static void *tracked(void *arg)
{
    int now = atomic_fetch_add(&running_now, 1) + 1;
    int peak = atomic_load(&running_peak);
    while (now > peak && !atomic_compare_exchange_weak(&running_peak, &peak, now))
        ;
    usleep(200);
    atomic_fetch_sub(&running_now, 1);
    return arg;
}

Test(blocking, more_jobs_than_threads_all_complete)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(rt, 4, PN_SEC(10)), 0);
    enum { N = 200 };
    pn_blocking_future jobs[N];
    bool done[N] = { 0 };
    for (intptr_t i = 0; i < N; i++)
        jobs[i] = pn_spawn_blocking(tracked, (void *)i);
    all_jobs a = { .base = { &all_jobs_vt }, .jobs = jobs, .done = done, .n = N, .left = N };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&a)), 0);
    for (intptr_t i = 0; i < N; i++) {
        cr_assert_eq(jobs[i].res, 0);
        cr_assert_eq((intptr_t)jobs[i].value, i);
    }
    cr_assert_leq(atomic_load(&running_peak), 4, "peak %d calls at once", atomic_load(&running_peak));
    pn__blocking_stats s;
    pn__blocking_pool_stats(rt, &s);
    cr_assert_leq(s.spawned_threads, 4);
    cr_assert_leq(s.threads, 4);
    rt_free(rt);
}

Test(blocking, configure_checks_arguments)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(NULL, 4, 0), -EINVAL);
    cr_assert_eq(pn_blocking_pool_configure(rt, 0, 0), -EINVAL);
    pn_blocking_future b = pn_spawn_blocking(NULL, NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&b)), 0);
    cr_assert_eq(b.res, -EINVAL);
    rt_free(rt);
}

/* ---- drop ------------------------------------------------------------------- */

static _Atomic int discards, discard_status = 1;
static void *_Atomic discard_result;

static void record_discard(void *arg, void *result, int status)
{
    (void)arg;
    atomic_store(&discard_status, status);
    atomic_store(&discard_result, result);
    atomic_fetch_add(&discards, 1);
}

static _Atomic int never_ran;
static void *must_not_run(void *arg)
{
    atomic_fetch_add(&never_ran, 1);
    return arg;
}

Test(blocking, dropped_while_queued_never_runs)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(rt, 1, PN_SEC(10)), 0);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    gate_set(false);

    pn_blocking_future busy = pn_spawn_blocking(gated, (void *)41);
    cr_assert_eq(poll_by_hand(&h, &busy), PN_PENDING);
    WAIT_FOR(atomic_load(&started) == 1);          /* the only thread is busy */

    pn_blocking_future queued = pn_spawn_blocking_ex(must_not_run, NULL, record_discard);
    cr_assert_eq(poll_by_hand(&h, &queued), PN_PENDING);
    cr_assert_eq(pool_stat_queued(rt), 1);
    pn_future_drop(PN_FUTURE(&queued));
    cr_assert_eq(pool_stat_queued(rt), 0);
    cr_assert_eq(atomic_load(&discards), 1);
    cr_assert_eq(atomic_load(&discard_status), -ECANCELED);

    gate_set(true);
    WAIT_FOR(atomic_load(&p.wakes) == 1);          /* busy completed */
    cr_assert_eq(poll_by_hand(&h, &busy), PN_READY);
    cr_assert_eq(busy.res, 0);
    cr_assert_eq((intptr_t)busy.value, 42);

    rt_free(rt);
    cr_assert_eq(atomic_load(&never_ran), 0);
    assert_probe_balanced(&p);
}

static void *gated_malloc(void *arg)
{
    gated(arg);
    char *buf = malloc(1000);
    buf[0] = 'x';
    return buf;
}

static void free_result(void *arg, void *result, int status)
{
    (void)arg;
    free(result);
    atomic_store(&discard_status, status);
    atomic_fetch_add(&discards, 1);
}

Test(blocking, dropped_while_running_discards_result)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    gate_set(false);

    /* One with a discard callback that frees the result, one without. */
    pn_blocking_future a = pn_spawn_blocking_ex(gated_malloc, NULL, free_result);
    pn_blocking_future b = pn_spawn_blocking(gated, (void *)1);
    cr_assert_eq(poll_by_hand(&h, &a), PN_PENDING);
    cr_assert_eq(poll_by_hand(&h, &b), PN_PENDING);
    WAIT_FOR(atomic_load(&started) == 2);
    pn_future_drop(PN_FUTURE(&a));
    pn_future_drop(PN_FUTURE(&b));
    cr_assert_eq(atomic_load(&discards), 0, "discard waits for the call to end");

    gate_set(true);
    WAIT_FOR(atomic_load(&discards) == 1);
    cr_assert_eq(atomic_load(&discard_status), 0);
    WAIT_FOR(atomic_load(&finished) == 2);
    cr_assert_eq(atomic_load(&p.wakes), 0, "a dropped future is not woken");
    rt_free(rt);                                   /* joins: b's record freed */
    assert_probe_balanced(&p);
}

Test(blocking, dropped_after_completion_discards_result)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    gate_set(true);
    pn_blocking_future a = pn_spawn_blocking_ex(gated_malloc, NULL, free_result);
    cr_assert_eq(poll_by_hand(&h, &a), PN_PENDING);
    WAIT_FOR(atomic_load(&p.wakes) == 1);
    pn_future_drop(PN_FUTURE(&a));                 /* ready but never collected */
    cr_assert_eq(atomic_load(&discards), 1);
    cr_assert_eq(atomic_load(&discard_status), 0);
    rt_free(rt);
    assert_probe_balanced(&p);
}

Test(blocking, never_polled_future_may_be_dropped)
{
    pn_blocking_future b = pn_spawn_blocking_ex(must_not_run, NULL, record_discard);
    pn_future_drop(PN_FUTURE(&b));
    cr_assert_eq(atomic_load(&never_ran), 0);
    cr_assert_eq(atomic_load(&discards), 0, "nothing was submitted, nothing to discard");
}

/* Dropped by the runtime: tasks awaiting calls, running and queued. */
Test(blocking, runtime_shutdown_drops_tasks_awaiting_calls)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(rt, 2, PN_SEC(10)), 0);
    gate_set(false);
    for (int i = 0; i < 6; i++) {
        one_job o = { .base = { &one_job_vt }, .in = i, .fn = gated };
        cr_assert_eq(PN_SPAWN(rt, o, NULL), 0);
    }
    WAIT_FOR(atomic_load(&started) == 2 && pool_stat_queued(rt) == 4);
    pn_runtime_shutdown(rt);                       /* drops the six tasks */
    cr_assert_eq(pool_stat_queued(rt), 0, "queued calls of dropped tasks were removed");
    gate_set(true);
    rt_free(rt);
    cr_assert_eq(atomic_load(&started), 2);
    cr_assert_eq(atomic_load(&finished), 2);
}

/* ---- keep-alive ------------------------------------------------------------- */

Test(blocking, idle_threads_retire_after_keep_alive)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    int tasks_before = task_count();
    cr_assert_eq(pn_blocking_pool_configure(rt, 8, PN_MS(50)), 0);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    gate_set(false);
    pn_blocking_future jobs[8];
    for (intptr_t i = 0; i < 8; i++) {
        jobs[i] = pn_spawn_blocking(gated, (void *)i);
        cr_assert_eq(poll_by_hand(&h, &jobs[i]), PN_PENDING);
    }
    WAIT_FOR(atomic_load(&started) == 8);
    cr_assert_eq(pool_stat_threads(rt), 8);
    gate_set(true);
    WAIT_FOR(atomic_load(&p.wakes) == 8);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(poll_by_hand(&h, &jobs[i]), PN_READY);
        cr_assert_eq((intptr_t)jobs[i].value, i + 1);
    }
    WAIT_FOR(pool_stat_threads(rt) == 0);
    WAIT_FOR(task_count() == tasks_before);         /* the kernel threads are gone too */

    /* The pool starts threads again after they all retired. */
    pn_blocking_future again = pn_spawn_blocking(gated, (void *)7);
    cr_assert_eq(poll_by_hand(&h, &again), PN_PENDING);
    WAIT_FOR(atomic_load(&p.wakes) == 9);
    cr_assert_eq(poll_by_hand(&h, &again), PN_READY);
    cr_assert_eq((intptr_t)again.value, 8);
    rt_free(rt);
    assert_probe_balanced(&p);
}

Test(blocking, lowering_the_limit_retires_extra_threads)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    gate_set(false);
    pn_blocking_future jobs[6];
    for (intptr_t i = 0; i < 6; i++) {
        jobs[i] = pn_spawn_blocking(gated, (void *)i);
        cr_assert_eq(poll_by_hand(&h, &jobs[i]), PN_PENDING);
    }
    WAIT_FOR(atomic_load(&started) == 6);
    cr_assert_eq(pn_blocking_pool_configure(rt, 2, PN_SEC(10)), 0);
    gate_set(true);
    WAIT_FOR(atomic_load(&p.wakes) == 6);
    WAIT_FOR(pool_stat_threads(rt) == 2);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(poll_by_hand(&h, &jobs[i]), PN_READY);
    rt_free(rt);
    assert_probe_balanced(&p);
}

/* ---- shutdown --------------------------------------------------------------- */

Test(blocking, shutdown_with_jobs_queued_and_running)
{
    int tasks_before = task_count();
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(rt, 2, PN_SEC(10)), 0);
    /* Running calls wait for the gate; the first queued call to be
     * completed with -ESHUTDOWN wakes q, which opens it: so shutdown must
     * fail the queued calls before it waits for the running ones. */
    probe r = { 0 }, q = { .opens_gate = true };
    hand_cx hr, hq;
    hand_cx_init(&hr, rt, &r);
    hand_cx_init(&hq, rt, &q);
    gate_set(false);

    pn_blocking_future run1 = pn_spawn_blocking(gated, (void *)10);
    pn_blocking_future run2 = pn_spawn_blocking_ex(gated_malloc, NULL, free_result);
    cr_assert_eq(poll_by_hand(&hr, &run1), PN_PENDING);
    cr_assert_eq(poll_by_hand(&hr, &run2), PN_PENDING);
    WAIT_FOR(atomic_load(&started) == 2);
    pn_future_drop(PN_FUTURE(&run2));              /* running, detached */

    pn_blocking_future queued[5];
    for (int i = 0; i < 5; i++) {
        queued[i] = pn_spawn_blocking(must_not_run, NULL);
        cr_assert_eq(poll_by_hand(&hq, &queued[i]), PN_PENDING);
    }
    cr_assert_eq(pool_stat_queued(rt), 5);

    pn__blocking_shutdown(rt);
    cr_assert_eq(pool_stat_threads(rt), 0, "the pool is gone");
    cr_assert_eq(atomic_load(&never_ran), 0);
    cr_assert_eq(atomic_load(&finished), 2, "running calls finished before shutdown returned");
    cr_assert_eq(atomic_load(&discards), 1);
    cr_assert_eq(atomic_load(&q.wakes), 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(poll_by_hand(&hq, &queued[i]), PN_READY);
        cr_assert_eq(queued[i].res, -ESHUTDOWN);
        cr_assert_null(queued[i].value);
    }
    cr_assert_eq(atomic_load(&r.wakes), 1);
    cr_assert_eq(poll_by_hand(&hr, &run1), PN_READY);
    cr_assert_eq(run1.res, 0);
    cr_assert_eq((intptr_t)run1.value, 11);

    pn_runtime_free(rt);
    /* Joined threads leave /proc/self/task a moment after pthread_join
     * returns (the kernel clears the tid before it reaps the task): wait
     * for that; a thread left running fails here. */
    WAIT_FOR(task_count() == tasks_before);
    assert_probe_balanced(&r);
    assert_probe_balanced(&q);
}

Test(blocking, runtime_free_stops_the_pool)
{
    int tasks_before = task_count();
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    /* As above: failing the queued call opens the gate of the running one. */
    probe r = { 0 }, q = { .opens_gate = true };
    hand_cx hr, hq;
    hand_cx_init(&hr, rt, &r);
    hand_cx_init(&hq, rt, &q);
    cr_assert_eq(pn_blocking_pool_configure(rt, 1, PN_SEC(10)), 0);
    gate_set(false);
    pn_blocking_future running = pn_spawn_blocking(gated, NULL);
    pn_blocking_future queued = pn_spawn_blocking(must_not_run, NULL);
    cr_assert_eq(poll_by_hand(&hr, &running), PN_PENDING);
    WAIT_FOR(atomic_load(&started) == 1);
    cr_assert_eq(poll_by_hand(&hq, &queued), PN_PENDING);
    /* The pool's own count: /proc/self/task may still list a thread the
     * runtime's setup joined a moment ago. */
    cr_assert_eq(pool_stat_threads(rt), 1);
    pn_future_drop(PN_FUTURE(&running));
    pn_runtime_free(rt);                           /* no explicit pool shutdown */
    WAIT_FOR(task_count() == tasks_before);         /* joined, then reaped */
    cr_assert_eq(atomic_load(&finished), 1);
    cr_assert_eq(atomic_load(&q.wakes), 1, "the queued call was completed");
    /* The runtime is gone; the future's record is not: collect it. */
    cr_assert_eq(poll_by_hand(&hq, &queued), PN_READY);
    cr_assert_eq(queued.res, -ESHUTDOWN);
    cr_assert_eq(atomic_load(&never_ran), 0);
    assert_probe_balanced(&r);
    assert_probe_balanced(&q);
}

Test(blocking, shutdown_of_an_unused_runtime_is_a_no_op)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    pn__blocking_shutdown(rt);
    pn__blocking_shutdown(rt);
    pn_runtime_free(rt);
}

/* ---- failures --------------------------------------------------------------- */

static void *fail_calloc(size_t n, size_t s)
{
    (void)n;
    (void)s;
    errno = ENOMEM;
    return NULL;
}

Test(blocking, no_memory_for_the_job_record)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(rt, 4, PN_SEC(10)), 0);  /* the pool exists */
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    pn_blocking_future b = pn_spawn_blocking(must_not_run, NULL);
    pn__sys.calloc = fail_calloc;
    pn_poll r = poll_by_hand(&h, &b);
    pn__sys_reset();
    cr_assert_eq(r, PN_READY);
    cr_assert_eq(b.res, -ENOMEM);
    cr_assert_eq(atomic_load(&never_ran), 0);
    rt_free(rt);
    assert_probe_balanced(&p);
}

static int fail_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    (void)t;
    (void)a;
    (void)fn;
    (void)arg;
    return EAGAIN;
}

Test(blocking, no_thread_gives_eagain_unless_one_runs)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);

    pn__blocking_set_thread_create(fail_create);
    pn_blocking_future b = pn_spawn_blocking(must_not_run, NULL);
    cr_assert_eq(poll_by_hand(&h, &b), PN_READY);
    cr_assert_eq(b.res, -EAGAIN);
    pn__blocking_set_thread_create(NULL);

    /* With one thread running, a failed start leaves the call queued for it. */
    gate_set(false);
    pn_blocking_future first = pn_spawn_blocking(gated, (void *)0);
    cr_assert_eq(poll_by_hand(&h, &first), PN_PENDING);
    WAIT_FOR(atomic_load(&started) == 1);
    pn__blocking_set_thread_create(fail_create);
    pn_blocking_future second = pn_spawn_blocking(gated, (void *)1);
    cr_assert_eq(poll_by_hand(&h, &second), PN_PENDING);
    pn__blocking_set_thread_create(NULL);
    gate_set(true);
    WAIT_FOR(atomic_load(&p.wakes) == 2);
    cr_assert_eq(poll_by_hand(&h, &first), PN_READY);
    cr_assert_eq(poll_by_hand(&h, &second), PN_READY);
    cr_assert_eq((intptr_t)second.value, 2);
    cr_assert_eq(pool_stat_threads(rt), 1);
    rt_free(rt);
    cr_assert_eq(atomic_load(&never_ran), 0);
    assert_probe_balanced(&p);
}

/* ---- the future may move after its first poll ------------------------------- */

Test(blocking, future_may_move_after_first_poll)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    probe p = { 0 };
    hand_cx h;
    hand_cx_init(&h, rt, &p);
    gate_set(true);
    pn_blocking_future *a = malloc(sizeof(*a));
    *a = pn_spawn_blocking(gated, (void *)5);
    cr_assert_eq(poll_by_hand(&h, a), PN_PENDING);
    pn_blocking_future moved = *a;
    free(a);
    WAIT_FOR(atomic_load(&p.wakes) == 1);
    cr_assert_eq(poll_by_hand(&h, &moved), PN_READY);
    cr_assert_eq((intptr_t)moved.value, 6);
    rt_free(rt);
    assert_probe_balanced(&p);
}
