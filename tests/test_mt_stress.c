/*
 * test_mt_stress.c - the multi-thread runtime under load, with 2 and 4
 * workers: a ring of tasks passing tokens across workers, spawns from
 * foreign threads while workers steal, abort racing with wake, shutdown
 * racing with wakes from foreign threads, fairness of an always-yielding
 * task against a timer and a socket (1 and 2 workers), and a task that
 * keeps respawning itself (Tokio's spawn_many_remote_busy2 shape).
 *
 * Every result is checked (each task ran exactly once, each hop counted
 * once, each drop ran once) and nothing is timed: a lost wakeup shows up as
 * the suite's .timeout watchdog failing the test.  Failures seen on worker
 * or foreign threads are counted in `errors` and asserted on the test's
 * thread (Criterion's asserts must not fire elsewhere).
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

TestSuite(mt_stress, .timeout = PN_TIMEOUT(30));

static _Atomic int errors, error_line;
#define CHECK(cond) do { if (!(cond)) { atomic_store(&error_line, __LINE__); \
                                       atomic_fetch_add(&errors, 1); } } while (0)

/* pn_runtime_config_init's driver: the workers drive the reactor. */
static pn_runtime *mt_new(unsigned workers) { return mt_driver_new(workers, PN_DRIVER_WORKERS); }

/* ---- a countdown latch: the last count_down wakes the waiter ------------------- */

typedef struct latch {
    _Atomic long left;
    pthread_mutex_t lock;
    pn_waker waiter;
} latch;

static void latch_init(latch *l, long n)
{
    atomic_init(&l->left, n);
    pthread_mutex_init(&l->lock, NULL);
    l->waiter = PN_WAKER_NONE;
}

static void latch_destroy(latch *l)
{
    pn_waker_drop(&l->waiter);
    pthread_mutex_destroy(&l->lock);
}

static void latch_count_down(latch *l)
{
    long prev = atomic_fetch_sub(&l->left, 1);
    CHECK(prev > 0);
    if (prev != 1)
        return;
    pthread_mutex_lock(&l->lock);
    pn_waker w = l->waiter;
    l->waiter = PN_WAKER_NONE;
    pthread_mutex_unlock(&l->lock);
    pn_waker_wake(&w);
}

static pn_poll latch_poll_wait(latch *l, pn_cx *cx)
{
    if (atomic_load(&l->left) == 0)
        return PN_READY;
    pthread_mutex_lock(&l->lock);
    pn_waker_set(&l->waiter, cx->waker);
    pthread_mutex_unlock(&l->lock);
    return atomic_load(&l->left) == 0 ? PN_READY : PN_PENDING;
}

typedef struct latch_wait { pn_future base; latch *l; } latch_wait;
static pn_poll latch_wait_poll(pn_future *f, pn_cx *cx)
{
    return latch_poll_wait(((latch_wait *)f)->l, cx);
}
static const pn_future_vtable latch_wait_vt = { latch_wait_poll, NULL, "latch_wait" };

/* Join every handle, recording each status. */
typedef struct join_all {
    pn_future base;
    int pc, i, n;
    pn_join_handle **hs;
    int *status;
    pn_join_future j;
} join_all;

static pn_poll join_all_poll(pn_future *f, pn_cx *cx)
{
    join_all *a = (join_all *)f;
    PN_ASYNC_BEGIN(a->pc);
    for (a->i = 0; a->i < a->n; a->i++) {
        a->j = pn_join(a->hs[a->i]);
        PN_AWAIT(a->pc, &a->j, cx);
        a->status[a->i] = a->j.res;
    }
    PN_ASYNC_END(a->pc);
}
static const pn_future_vtable join_all_vt = { join_all_poll, NULL, "join_all" };

/* ===================================================================================
 * 1. A ring of tasks passing tokens.  RING_TOKENS tokens start spread over
 *    the ring; each is received HOPS + 1 times, each receiver passing it to
 *    the next task.  Every task knows how many receipts it expects (from a
 *    simulation) and completes after the last one.
 * =================================================================================== */

#define RING_N 2048
#define RING_TOKENS 64
#define RING_HOPS 4000

typedef struct ring_box {
    pthread_mutex_t lock;
    int vals[RING_TOKENS];
    int n;
    pn_waker waiter;
} ring_box;

static ring_box *ring_boxes;
static _Atomic int ring_recv[RING_N];
static int ring_expected[RING_N];
static _Atomic long ring_hops;
static _Atomic int ring_tokens_done;

static void ring_post(int to, int val)
{
    ring_box *b = &ring_boxes[to];
    pthread_mutex_lock(&b->lock);
    CHECK(b->n < RING_TOKENS);
    b->vals[b->n++] = val;
    pn_waker w = b->waiter;
    b->waiter = PN_WAKER_NONE;
    pthread_mutex_unlock(&b->lock);
    pn_waker_wake(&w);
}

typedef struct ring_task { pn_future base; int id, got; } ring_task;

static pn_poll ring_poll(pn_future *f, pn_cx *cx)
{
    ring_task *t = (ring_task *)f;
    ring_box *b = &ring_boxes[t->id];
    while (t->got < ring_expected[t->id]) {
        pthread_mutex_lock(&b->lock);
        if (b->n == 0) {
            pn_waker_set(&b->waiter, cx->waker);
            pthread_mutex_unlock(&b->lock);
            return PN_PENDING;
        }
        int v = b->vals[--b->n];
        pthread_mutex_unlock(&b->lock);
        t->got++;
        atomic_fetch_add(&ring_recv[t->id], 1);
        atomic_fetch_add(&ring_hops, 1);
        if (v > 0)
            ring_post((t->id + 1) % RING_N, v - 1);
        else
            atomic_fetch_add(&ring_tokens_done, 1);
    }
    /* Done: let go of the waker we may have left in our box. */
    pthread_mutex_lock(&b->lock);
    pn_waker w = b->waiter;
    b->waiter = PN_WAKER_NONE;
    pthread_mutex_unlock(&b->lock);
    pn_waker_drop(&w);
    return PN_READY;
}
static const pn_future_vtable ring_vt = { ring_poll, NULL, "ring" };

static void ring_run(unsigned workers)
{
    atomic_store(&errors, 0);
    atomic_store(&ring_hops, 0);
    atomic_store(&ring_tokens_done, 0);
    ring_boxes = calloc(RING_N, sizeof(*ring_boxes));
    cr_assert_not_null(ring_boxes);
    memset(ring_expected, 0, sizeof(ring_expected));
    for (int i = 0; i < RING_N; i++) {
        pthread_mutex_init(&ring_boxes[i].lock, NULL);
        atomic_store(&ring_recv[i], 0);
    }
    for (int k = 0; k < RING_TOKENS; k++) {
        int start = k * (RING_N / RING_TOKENS);
        for (int h = 0; h <= RING_HOPS; h++)
            ring_expected[(start + h) % RING_N]++;
    }

    pn_runtime *rt = mt_new(workers);
    static pn_join_handle *hs[RING_N];
    static int status[RING_N];
    for (int i = 0; i < RING_N; i++) {
        ring_task t = { .base = { &ring_vt }, .id = i };
        cr_assert_eq(PN_SPAWN(rt, t, &hs[i]), 0);
        status[i] = 1;
    }
    /* The first receipts come from this (foreign) thread. */
    for (int k = 0; k < RING_TOKENS; k++)
        ring_post(k * (RING_N / RING_TOKENS), RING_HOPS);

    join_all a = { .base = { &join_all_vt }, .n = RING_N, .hs = hs, .status = status };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&a)), 0);

    cr_assert_eq(atomic_load(&errors), 0, "%d failed checks, the last at line %d", atomic_load(&errors), atomic_load(&error_line));
    cr_assert_eq(atomic_load(&ring_hops), (long)RING_TOKENS * (RING_HOPS + 1));
    cr_assert_eq(atomic_load(&ring_tokens_done), RING_TOKENS);
    for (int i = 0; i < RING_N; i++) {
        cr_assert_eq(status[i], 0, "task %d: join status %d", i, status[i]);
        cr_assert_eq(atomic_load(&ring_recv[i]), ring_expected[i], "task %d received %d, expected %d",
                     i, atomic_load(&ring_recv[i]), ring_expected[i]);
        cr_assert_eq(ring_boxes[i].n, 0, "box %d still holds %d tokens", i, ring_boxes[i].n);
        cr_assert(pn_waker_is_none(&ring_boxes[i].waiter));
        pn_join_handle_free(hs[i]);
    }
    pn_runtime_free(rt);
    for (int i = 0; i < RING_N; i++)
        pthread_mutex_destroy(&ring_boxes[i].lock);
    free(ring_boxes);
}

Test(mt_stress, ring_of_tasks_passes_tokens_2_workers) { ring_run(2); }
Test(mt_stress, ring_of_tasks_passes_tokens_4_workers) { ring_run(4); }

/* ===================================================================================
 * 2. Spawn from foreign threads while workers steal.  Each of FS_THREADS
 *    threads spawns FS_PER tasks; each of those yields once, then spawns
 *    FS_CHILDREN children from its worker (local queue, overflow, steals).
 *    Every task (parent and child) must run to completion exactly once.
 * =================================================================================== */

#define FS_THREADS 4
#define FS_PER 4000
#define FS_CHILDREN 3
#define FS_PARENTS (FS_THREADS * FS_PER)
#define FS_TOTAL (FS_PARENTS * (1 + FS_CHILDREN))

static _Atomic int fs_ran[FS_TOTAL];
static latch fs_latch;

typedef struct fs_task { pn_future base; int pc, id; } fs_task;
static const pn_future_vtable fs_vt;

static pn_poll fs_poll(pn_future *f, pn_cx *cx)
{
    fs_task *t = (fs_task *)f;
    PN_ASYNC_BEGIN(t->pc);
    PN_YIELD(t->pc, cx);
    if (t->id < FS_PARENTS)
        for (int c = 0; c < FS_CHILDREN; c++) {
            fs_task child = { .base = { &fs_vt },
                              .id = FS_PARENTS + t->id * FS_CHILDREN + c };
            CHECK(PN_SPAWN(cx->rt, child, NULL) == 0);
        }
    atomic_fetch_add(&fs_ran[t->id], 1);
    latch_count_down(&fs_latch);
    PN_ASYNC_END(t->pc);
}
static const pn_future_vtable fs_vt = { fs_poll, NULL, "fs" };

typedef struct fs_arg { pn_runtime *rt; int thread; } fs_arg;

static void *fs_spawner(void *arg)
{
    fs_arg *a = arg;
    for (int i = 0; i < FS_PER; i++) {
        fs_task t = { .base = { &fs_vt }, .id = a->thread * FS_PER + i };
        CHECK(PN_SPAWN(a->rt, t, NULL) == 0);
        if (i % 64 == 0)
            sched_yield();              /* let the workers interleave */
    }
    return NULL;
}

static void foreign_spawn_run(unsigned workers)
{
    atomic_store(&errors, 0);
    for (int i = 0; i < FS_TOTAL; i++)
        atomic_store(&fs_ran[i], 0);
    latch_init(&fs_latch, FS_TOTAL);
    pn_runtime *rt = mt_new(workers);
    pthread_t th[FS_THREADS];
    fs_arg args[FS_THREADS];
    for (int i = 0; i < FS_THREADS; i++) {
        args[i] = (fs_arg){ rt, i };
        cr_assert_eq(pthread_create(&th[i], NULL, fs_spawner, &args[i]), 0);
    }
    latch_wait w = { .base = { &latch_wait_vt }, .l = &fs_latch };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&w)), 0);
    for (int i = 0; i < FS_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&errors), 0, "%d failed checks, the last at line %d", atomic_load(&errors), atomic_load(&error_line));
    for (int i = 0; i < FS_TOTAL; i++)
        cr_assert_eq(atomic_load(&fs_ran[i]), 1, "task %d ran %d times", i, atomic_load(&fs_ran[i]));
    pn_runtime_free(rt);
    latch_destroy(&fs_latch);
}

Test(mt_stress, spawn_from_foreign_threads_while_stealing_2_workers) { foreign_spawn_run(2); }
Test(mt_stress, spawn_from_foreign_threads_while_stealing_4_workers) { foreign_spawn_run(4); }

/* ===================================================================================
 * 3. Abort racing with wake.  Every task publishes its waker in a slot and
 *    stays pending; half of them complete after 1 to AW_WAKES more polls,
 *    the other half never do.  Two threads wake them from the slots over
 *    and over; once an eighth have completed, a third thread aborts every
 *    task (in a scrambled order) while the wakes go on.  Each task ends exactly once: completed (join 0, no
 *    drop) or dropped (join -ECANCELED, one drop); the never-ending ones
 *    are all cancelled.
 * =================================================================================== */

#define AW_N 2000
#define AW_WAKES 8
#define AW_WAKERS 2

typedef struct aw_slot { pthread_mutex_t lock; pn_waker w; } aw_slot;
static aw_slot aw_slots[AW_N];
static _Atomic int aw_completed[AW_N], aw_drops[AW_N], aw_polls_after_end[AW_N];
static _Atomic int aw_published;
static _Atomic bool aw_abort_done;
static _Atomic long aw_passes;
static _Atomic int aw_ncompleted;

static void aw_release(int id)
{
    pthread_mutex_lock(&aw_slots[id].lock);
    pn_waker w = aw_slots[id].w;
    aw_slots[id].w = PN_WAKER_NONE;
    pthread_mutex_unlock(&aw_slots[id].lock);
    pn_waker_drop(&w);
}

typedef struct aw_task { pn_future base; int id, polls, target; } aw_task;

static pn_poll aw_poll(pn_future *f, pn_cx *cx)
{
    aw_task *t = (aw_task *)f;
    if (atomic_load(&aw_completed[t->id]) || atomic_load(&aw_drops[t->id]))
        atomic_fetch_add(&aw_polls_after_end[t->id], 1);
    if (t->polls++ == 0) {
        pthread_mutex_lock(&aw_slots[t->id].lock);
        pn_waker_set(&aw_slots[t->id].w, cx->waker);
        pthread_mutex_unlock(&aw_slots[t->id].lock);
        atomic_fetch_add(&aw_published, 1);
        return PN_PENDING;
    }
    if (t->polls > t->target) {
        atomic_fetch_add(&aw_completed[t->id], 1);
        atomic_fetch_add(&aw_ncompleted, 1);
        aw_release(t->id);
        return PN_READY;
    }
    return PN_PENDING;                  /* the waker stays in the slot */
}

static void aw_drop(pn_future *f)
{
    aw_task *t = (aw_task *)f;
    atomic_fetch_add(&aw_drops[t->id], 1);
    aw_release(t->id);
}
static const pn_future_vtable aw_vt = { aw_poll, aw_drop, "aw" };

static pn_join_handle *aw_handles[AW_N];

static void *aw_aborter(void *arg)
{
    (void)arg;
    /* Start once the wakers are going: some tasks have completed by then,
     * some are being woken while we abort them. */
    while (atomic_load(&aw_passes) < 2 || atomic_load(&aw_ncompleted) < AW_N / 8)
        sched_yield();
    /* 997 is prime to AW_N: every index once, scrambled. */
    for (int k = 0; k < AW_N; k++)
        pn_join_handle_abort(aw_handles[(k * 997) % AW_N]);
    atomic_store(&aw_abort_done, true);
    return NULL;
}

static void *aw_waker(void *arg)
{
    int start = (int)(intptr_t)arg;
    while (atomic_load(&aw_published) < AW_N)
        sched_yield();
    for (int pass = 0; !atomic_load(&aw_abort_done) || pass < 2; pass++)
        for (int k = 0; k < AW_N; k++) {
            int id = (start + k) % AW_N;
            pthread_mutex_lock(&aw_slots[id].lock);
            pn_waker w = pn_waker_clone(&aw_slots[id].w);
            pthread_mutex_unlock(&aw_slots[id].lock);
            pn_waker_wake(&w);
            if (k == AW_N / 2)
                atomic_fetch_add(&aw_passes, 1);
        }
    return NULL;
}

static void abort_wake_run(unsigned workers)
{
    atomic_store(&errors, 0);
    atomic_store(&aw_published, 0);
    atomic_store(&aw_abort_done, false);
    atomic_store(&aw_passes, 0);
    atomic_store(&aw_ncompleted, 0);
    for (int i = 0; i < AW_N; i++) {
        pthread_mutex_init(&aw_slots[i].lock, NULL);
        aw_slots[i].w = PN_WAKER_NONE;
        atomic_store(&aw_completed[i], 0);
        atomic_store(&aw_drops[i], 0);
        atomic_store(&aw_polls_after_end[i], 0);
    }
    pn_runtime *rt = mt_new(workers);
    for (int i = 0; i < AW_N; i++) {
        aw_task t = { .base = { &aw_vt }, .id = i, .target = i % 2 ? 1 + (i / 2) % AW_WAKES : 1 << 30 };
        cr_assert_eq(PN_SPAWN(rt, t, &aw_handles[i]), 0);
    }
    pthread_t ab, wk[AW_WAKERS];
    cr_assert_eq(pthread_create(&ab, NULL, aw_aborter, NULL), 0);
    for (int i = 0; i < AW_WAKERS; i++)
        cr_assert_eq(pthread_create(&wk[i], NULL, aw_waker, (void *)(intptr_t)(i * AW_N / AW_WAKERS)), 0);

    static int status[AW_N];
    join_all a = { .base = { &join_all_vt }, .n = AW_N, .hs = aw_handles, .status = status };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&a)), 0);
    pthread_join(ab, NULL);
    for (int i = 0; i < AW_WAKERS; i++)
        pthread_join(wk[i], NULL);

    int completed = 0, cancelled = 0;
    for (int i = 0; i < AW_N; i++) {
        int c = atomic_load(&aw_completed[i]), d = atomic_load(&aw_drops[i]);
        cr_assert_eq(c + d, 1, "task %d: completed %d times, dropped %d times", i, c, d);
        cr_assert_eq(atomic_load(&aw_polls_after_end[i]), 0, "task %d polled after it ended", i);
        if (status[i] == 0) {
            cr_assert_eq(c, 1, "task %d: join 0 but the future did not complete", i);
            completed++;
        } else {
            cr_assert_eq(status[i], -ECANCELED, "task %d: join status %d", i, status[i]);
            cr_assert_eq(d, 1, "task %d: join -ECANCELED but the future was not dropped", i);
            cancelled++;
        }
        if (i % 2 == 0)
            cr_assert_eq(status[i], -ECANCELED, "never-ending task %d: join status %d", i, status[i]);
        cr_assert(pn_join_handle_is_finished(aw_handles[i]));
        cr_assert(pn_waker_is_none(&aw_slots[i].w));
        pn_join_handle_free(aw_handles[i]);
    }
    cr_assert_eq(atomic_load(&errors), 0, "%d failed checks, the last at line %d", atomic_load(&errors), atomic_load(&error_line));
    cr_assert_geq(completed, AW_N / 8);   /* the aborter waited for these */
    cr_log_info("abort vs wake (%u workers): %d completed, %d cancelled", workers, completed, cancelled);
    pn_runtime_free(rt);
    for (int i = 0; i < AW_N; i++)
        pthread_mutex_destroy(&aw_slots[i].lock);
}

Test(mt_stress, abort_racing_with_wake_2_workers) { abort_wake_run(2); }
Test(mt_stress, abort_racing_with_wake_4_workers) { abort_wake_run(4); }

/* The interleaving behind the race above, made deterministic: the abort
 * lands while the task is being polled (here: the task aborts itself) and
 * that same poll returns PN_READY.  The future completed and was not
 * dropped, so its join must report 0 with the output, as Tokio does; a
 * -ECANCELED with a NULL output loses an output whose resources nobody
 * will release. */
static _Atomic(pn_join_handle *) self_abort_handle;
static _Atomic int self_abort_drops;
typedef struct self_abort { pn_future base; int out; } self_abort;
static pn_poll self_abort_poll(pn_future *f, pn_cx *cx)
{
    pn_join_handle *h = atomic_load(&self_abort_handle);
    if (!h) {                           /* spawned but the handle is not out yet */
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    pn_join_handle_abort(h);            /* "another thread" aborts mid-poll */
    ((self_abort *)f)->out = 42;
    return PN_READY;
}
static void self_abort_drop(pn_future *f) { (void)f; atomic_fetch_add(&self_abort_drops, 1); }
static const pn_future_vtable self_abort_vt = { self_abort_poll, self_abort_drop, "self_abort" };

static void abort_during_completing_poll_run(pn_runtime *rt)
{
    atomic_store(&self_abort_handle, NULL);
    atomic_store(&self_abort_drops, 0);
    self_abort sa = { .base = { &self_abort_vt } };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, sa, &h), 0);
    atomic_store(&self_abort_handle, h);
    pn_join_future j = pn_join(h);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    int drops = atomic_load(&self_abort_drops);
    cr_expect_eq(drops, 0, "a future that returned PN_READY was dropped");
    cr_expect_eq(j.res, 0, "the future completed (not dropped: %d drops) but join says %d (%s)",
                 drops, j.res, pn_strerror(j.res));
    cr_expect(j.output && ((self_abort *)j.output)->out == 42, "the output is lost");
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

Test(mt_stress, abort_during_a_poll_that_completes_reports_completion)
{
    abort_during_completing_poll_run(mt_new(2));
}

Test(mt_stress, abort_during_a_poll_that_completes_reports_completion_current_thread)
{
    abort_during_completing_poll_run(rt_new());
}

/* ===================================================================================
 * 4. Shutdown racing with wakes.  Tasks park with their waker published
 *    (a quarter of them also wake themselves on every poll, so the workers
 *    are busy); foreign threads hold clones of every waker and call
 *    wake_by_ref on them in a loop while the runtime is freed, and go on
 *    after it is gone.  Each task's drop runs exactly once, in the free;
 *    the clones keep the task cells alive (no use after free), and dropping
 *    them at the end frees the cells (LeakSanitizer checks).
 * =================================================================================== */

#define SW_N 256
#define SW_THREADS 2
#if defined(__SANITIZE_THREAD__)
#define SW_ITERS 10                     /* each free under TSan is slow */
#else
#define SW_ITERS 25
#endif

static aw_slot sw_slots[SW_N];
static _Atomic int sw_drops[SW_N];
static _Atomic int sw_published;
static _Atomic long sw_passes;
static _Atomic int sw_ready;
static _Atomic bool sw_stop;

typedef struct sw_task { pn_future base; int id; bool busy, published; } sw_task;

static pn_poll sw_poll(pn_future *f, pn_cx *cx)
{
    sw_task *t = (sw_task *)f;
    if (!t->published) {
        t->published = true;
        pthread_mutex_lock(&sw_slots[t->id].lock);
        pn_waker_set(&sw_slots[t->id].w, cx->waker);
        pthread_mutex_unlock(&sw_slots[t->id].lock);
        atomic_fetch_add(&sw_published, 1);
    }
    if (t->busy)
        pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}

static void sw_drop(pn_future *f)
{
    sw_task *t = (sw_task *)f;
    atomic_fetch_add(&sw_drops[t->id], 1);
    pthread_mutex_lock(&sw_slots[t->id].lock);
    pn_waker w = sw_slots[t->id].w;
    sw_slots[t->id].w = PN_WAKER_NONE;
    pthread_mutex_unlock(&sw_slots[t->id].lock);
    pn_waker_drop(&w);
}
static const pn_future_vtable sw_vt = { sw_poll, sw_drop, "sw" };

static void *sw_waker(void *arg)
{
    int start = (int)(intptr_t)arg;
    pn_waker mine[SW_N];
    for (int i = 0; i < SW_N; i++) {
        pthread_mutex_lock(&sw_slots[i].lock);
        mine[i] = pn_waker_clone(&sw_slots[i].w);
        pthread_mutex_unlock(&sw_slots[i].lock);
        CHECK(!pn_waker_is_none(&mine[i]));
    }
    atomic_fetch_add(&sw_ready, 1);
    while (!atomic_load(&sw_stop)) {
        for (int k = 0; k < SW_N; k++)
            pn_waker_wake_by_ref(&mine[(start + k) % SW_N]);
        atomic_fetch_add(&sw_passes, 1);
    }
    /* Half the clones are consumed by wake (after the runtime is gone),
     * half dropped. */
    for (int i = 0; i < SW_N; i++) {
        if (i % 2)
            pn_waker_wake(&mine[i]);
        else
            pn_waker_drop(&mine[i]);
    }
    return NULL;
}

static void wait_passes(long n)
{
    long target = atomic_load(&sw_passes) + n;
    while (atomic_load(&sw_passes) < target)
        sched_yield();
}

static void shutdown_wake_run(unsigned workers)
{
    for (int i = 0; i < SW_N; i++)
        pthread_mutex_init(&sw_slots[i].lock, NULL);
    for (int iter = 0; iter < SW_ITERS; iter++) {
        atomic_store(&errors, 0);
        atomic_store(&sw_published, 0);
        atomic_store(&sw_passes, 0);
        atomic_store(&sw_ready, 0);
        atomic_store(&sw_stop, false);
        for (int i = 0; i < SW_N; i++) {
            sw_slots[i].w = PN_WAKER_NONE;
            atomic_store(&sw_drops[i], 0);
        }
        pn_runtime *rt = mt_new(workers);
        for (int i = 0; i < SW_N; i++) {
            sw_task t = { .base = { &sw_vt }, .id = i, .busy = i % 4 == 0 };
            cr_assert_eq(PN_SPAWN(rt, t, NULL), 0);
        }
        while (atomic_load(&sw_published) < SW_N)
            sched_yield();
        pthread_t th[SW_THREADS];
        for (int i = 0; i < SW_THREADS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, sw_waker, (void *)(intptr_t)(i * SW_N / SW_THREADS)), 0);
        while (atomic_load(&sw_ready) < SW_THREADS)   /* every clone taken */
            sched_yield();
        wait_passes(1 + iter % 4);       /* wakes are flowing */

        pn_runtime_free(rt);
        for (int i = 0; i < SW_N; i++)
            cr_assert_eq(atomic_load(&sw_drops[i]), 1, "iter %d: task %d dropped %d times by the free",
                         iter, i, atomic_load(&sw_drops[i]));

        wait_passes(SW_THREADS * 2);     /* wakes on the clones after the free */
        atomic_store(&sw_stop, true);
        for (int i = 0; i < SW_THREADS; i++)
            pthread_join(th[i], NULL);
        cr_assert_eq(atomic_load(&errors), 0, "%d failed checks, the last at line %d", atomic_load(&errors), atomic_load(&error_line));
        for (int i = 0; i < SW_N; i++) {
            cr_assert_eq(atomic_load(&sw_drops[i]), 1, "iter %d: task %d dropped %d times",
                         iter, i, atomic_load(&sw_drops[i]));
            cr_assert(pn_waker_is_none(&sw_slots[i].w));
        }
    }
    for (int i = 0; i < SW_N; i++)
        pthread_mutex_destroy(&sw_slots[i].lock);
}

Test(mt_stress, shutdown_racing_with_foreign_wakes_2_workers) { shutdown_wake_run(2); }
Test(mt_stress, shutdown_racing_with_foreign_wakes_4_workers) { shutdown_wake_run(4); }

/* ===================================================================================
 * 5. Fairness.  Tasks that always yield (wake_by_ref + PENDING, forever,
 *    one more than there are workers) cannot starve a task sleeping 10 ms
 *    nor one reading a socket that a foreign thread writes to once the
 *    reader is parked on it.
 * =================================================================================== */

static _Atomic long fair_yields;
static _Atomic int fair_yielder_drops;
static _Atomic bool fair_reader_parked;

static pn_poll yielder_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    atomic_fetch_add_explicit(&fair_yields, 1, memory_order_relaxed);
    pn_waker_wake_by_ref(cx->waker);
    return PN_PENDING;
}
static void yielder_drop(pn_future *f) { (void)f; atomic_fetch_add(&fair_yielder_drops, 1); }
static const pn_future_vtable yielder_vt = { yielder_poll, yielder_drop, "yielder" };

typedef struct fair_sleeper { pn_future base; int pc; pn_sleep_future s; bool on_time; } fair_sleeper;
static pn_poll fair_sleeper_poll(pn_future *f, pn_cx *cx)
{
    fair_sleeper *t = (fair_sleeper *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->s = pn_sleep(PN_MS(10));
    PN_AWAIT(t->pc, &t->s, cx);
    t->on_time = pn_now() >= pn_sleep_deadline(&t->s);
    PN_ASYNC_END(t->pc);
}
static void fair_sleeper_drop(pn_future *f)
{
    fair_sleeper *t = (fair_sleeper *)f;
    if (t->pc != 0)
        pn_future_drop(PN_FUTURE(&t->s));
}
static const pn_future_vtable fair_sleeper_vt = { fair_sleeper_poll, fair_sleeper_drop, "fair_sleeper" };

typedef struct fair_reader {
    pn_future base;
    int pc;
    pn_async_fd afd;
    pn_read_future r;
    char buf[16];
    ssize_t res;
} fair_reader;

/* Poll the read; once it waits on the reactor, tell the writer to go. */
static pn_poll fair_read_once(fair_reader *t, pn_cx *cx)
{
    if (pn_future_poll(PN_FUTURE(&t->r), cx) == PN_READY)
        return PN_READY;
    atomic_store(&fair_reader_parked, true);
    return PN_PENDING;
}

static pn_poll fair_reader_poll(pn_future *f, pn_cx *cx)
{
    fair_reader *t = (fair_reader *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->r = pn_read(&t->afd, t->buf, sizeof(t->buf));
    PN_AWAIT_POLL(t->pc, fair_read_once(t, cx));
    t->res = t->r.res;
    pn_async_fd_close(&t->afd);
    PN_ASYNC_END(t->pc);
}
static void fair_reader_drop(pn_future *f) { pn_async_fd_close(&((fair_reader *)f)->afd); }
static const pn_future_vtable fair_reader_vt = { fair_reader_poll, fair_reader_drop, "fair_reader" };

static void *fair_writer(void *arg)
{
    int fd = (int)(intptr_t)arg;
    while (!atomic_load(&fair_reader_parked))
        sched_yield();
    CHECK(write(fd, "ping", 4) == 4);
    return NULL;
}

static void fairness_run(unsigned workers)
{
    atomic_store(&errors, 0);
    atomic_store(&fair_yields, 0);
    atomic_store(&fair_yielder_drops, 0);
    atomic_store(&fair_reader_parked, false);
    pn_runtime *rt = mt_new(workers);
    unsigned nyield = workers + 1;
    for (unsigned i = 0; i < nyield; i++) {
        pn_future y = { &yielder_vt };
        cr_assert_eq(pn_spawn(rt, &y, sizeof(y), NULL), 0);
    }
    /* Let the yielders take the workers before the others arrive. */
    while (atomic_load(&fair_yields) < 1000)
        sched_yield();

    int sp[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    fair_reader rd = { .base = { &fair_reader_vt }, .res = -1 };
    cr_assert_eq(pn_async_fd_init(&rd.afd, sp[0]), 0);
    fair_sleeper sl = { .base = { &fair_sleeper_vt } };
    pn_join_handle *hr, *hsl;
    cr_assert_eq(PN_SPAWN(rt, sl, &hsl), 0);
    cr_assert_eq(PN_SPAWN(rt, rd, &hr), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fair_writer, (void *)(intptr_t)sp[1]), 0);

    pn_join_future j = pn_join(hsl);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, 0);
    cr_assert(((fair_sleeper *)j.output)->on_time);
    j = pn_join(hr);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&j)), 0);
    cr_assert_eq(j.res, 0);
    fair_reader *out = j.output;
    cr_assert_eq(out->res, 4);
    cr_assert_eq(memcmp(out->buf, "ping", 4), 0);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&errors), 0, "%d failed checks, the last at line %d", atomic_load(&errors), atomic_load(&error_line));

    long before = atomic_load(&fair_yields);
    while (atomic_load(&fair_yields) < before + 1000)   /* still spinning */
        sched_yield();
    pn_join_handle_free(hr);
    pn_join_handle_free(hsl);
    pn_runtime_free(rt);
    cr_assert_eq(atomic_load(&fair_yielder_drops), (int)nyield);
    close(sp[1]);
}

Test(mt_stress, always_yielding_tasks_do_not_starve_timer_or_socket_1_worker) { fairness_run(1); }
Test(mt_stress, always_yielding_tasks_do_not_starve_timer_or_socket_2_workers) { fairness_run(2); }

/* ===================================================================================
 * 6. Tasks that keep respawning themselves (2 per worker, each poll spawns
 *    a copy from its worker and completes) must not starve the block_on
 *    future, tasks spawned from outside (RS_REMOTE, through the injection
 *    queue), tasks spawned by another task on a worker (RS_LOCAL) nor a
 *    sleeping task.
 * =================================================================================== */

#define RS_REMOTE 1000
#define RS_LOCAL 1000

static _Atomic bool rs_flag;
static _Atomic long rs_respawns;
static _Atomic int rs_ran[RS_REMOTE + RS_LOCAL];
static latch rs_latch;

static const pn_future_vtable respawner_vt;
static pn_poll respawner_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (atomic_load(&rs_flag)) {
        pn_future again = { &respawner_vt };
        int err = pn_spawn_cx(cx, &again, sizeof(again), NULL);
        /* -ESHUTDOWN once the runtime is being freed (the flag was seen
         * before it went down). */
        CHECK(err == 0 || err == -ESHUTDOWN);
        atomic_fetch_add_explicit(&rs_respawns, 1, memory_order_relaxed);
    }
    return PN_READY;
}
static const pn_future_vtable respawner_vt = { respawner_poll, NULL, "respawner" };

typedef struct rs_leaf { pn_future base; int id; } rs_leaf;
static pn_poll rs_leaf_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    atomic_fetch_add(&rs_ran[((rs_leaf *)f)->id], 1);
    latch_count_down(&rs_latch);
    return PN_READY;
}
static const pn_future_vtable rs_leaf_vt = { rs_leaf_poll, NULL, "rs_leaf" };

static pn_poll rs_local_spawner_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    for (int i = 0; i < RS_LOCAL; i++) {
        rs_leaf l = { .base = { &rs_leaf_vt }, .id = RS_REMOTE + i };
        CHECK(PN_SPAWN(cx->rt, l, NULL) == 0);
    }
    return PN_READY;
}
static const pn_future_vtable rs_local_spawner_vt = { rs_local_spawner_poll, NULL, "rs_local_spawner" };

/* block_on's future: spawn the remote leaves from this thread, then wait for
 * every leaf and for the sleeper. */
typedef struct rs_main {
    pn_future base;
    int pc;
    pn_runtime *rt;
    pn_join_handle *sleeper;
    pn_join_future j;
    int sleeper_status;
} rs_main;

static pn_poll rs_main_poll(pn_future *f, pn_cx *cx)
{
    rs_main *m = (rs_main *)f;
    PN_ASYNC_BEGIN(m->pc);
    for (int i = 0; i < RS_REMOTE; i++) {
        rs_leaf l = { .base = { &rs_leaf_vt }, .id = i };
        CHECK(PN_SPAWN(m->rt, l, NULL) == 0);
    }
    PN_AWAIT_POLL(m->pc, latch_poll_wait(&rs_latch, cx));
    m->j = pn_join(m->sleeper);
    PN_AWAIT(m->pc, &m->j, cx);
    m->sleeper_status = m->j.res;
    PN_ASYNC_END(m->pc);
}
static const pn_future_vtable rs_main_vt = { rs_main_poll, NULL, "rs_main" };

static void respawn_run(unsigned workers)
{
    atomic_store(&errors, 0);
    atomic_store(&rs_flag, true);
    atomic_store(&rs_respawns, 0);
    for (int i = 0; i < RS_REMOTE + RS_LOCAL; i++)
        atomic_store(&rs_ran[i], 0);
    latch_init(&rs_latch, RS_REMOTE + RS_LOCAL);
    pn_runtime *rt = mt_new(workers);
    for (unsigned i = 0; i < 2 * workers; i++) {
        pn_future r = { &respawner_vt };
        cr_assert_eq(pn_spawn(rt, &r, sizeof(r), NULL), 0);
    }
    while (atomic_load(&rs_respawns) < 10000)    /* the respawners own the workers */
        sched_yield();
    fair_sleeper sl = { .base = { &fair_sleeper_vt } };
    rs_main m = { .base = { &rs_main_vt }, .rt = rt, .sleeper_status = 1 };
    cr_assert_eq(PN_SPAWN(rt, sl, &m.sleeper), 0);
    pn_future ls = { &rs_local_spawner_vt };
    cr_assert_eq(pn_spawn(rt, &ls, sizeof(ls), NULL), 0);

    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&m)), 0);
    long respawns = atomic_load(&rs_respawns);
    atomic_store(&rs_flag, false);

    cr_assert_eq(m.sleeper_status, 0);
    for (int i = 0; i < RS_REMOTE + RS_LOCAL; i++)
        cr_assert_eq(atomic_load(&rs_ran[i]), 1, "leaf %d ran %d times", i, atomic_load(&rs_ran[i]));
    cr_assert_gt(respawns, 10000);
    pn_join_handle_free(m.sleeper);
    pn_runtime_free(rt);
    cr_assert_eq(atomic_load(&errors), 0, "%d failed checks, the last at line %d", atomic_load(&errors), atomic_load(&error_line));
    latch_destroy(&rs_latch);
}

Test(mt_stress, self_respawning_tasks_do_not_starve_others_2_workers) { respawn_run(2); }
Test(mt_stress, self_respawning_tasks_do_not_starve_others_4_workers) { respawn_run(4); }
