/*
 * test_locks.c - pn_mutex and pn_rwlock (pollen/semaphore.h).
 *
 * Checked: lock/unlock/try/blocking and their errors; the lock handed
 * over in FIFO order; a pending lock granted but dropped before its poll
 * passes the lock on; readers share, a writer excludes, a waiting writer
 * blocks later readers (and readers queued behind it get in together
 * after it), also when a granted writer is dropped before its wake (the
 * point "semaphore.granted"); blocking variants from plain threads and
 * -EDEADLK from a task; and the stress of 100 tasks x 1,000 lock/unlock
 * on 2 workers over a plain counter with a holder checker and random
 * drops of pending locks (exact final count), plus readers and writers
 * of an rwlock.
 */
#include <pthread.h>
#include <sched.h>
#include "locks_helpers.h"

static void locks_fini(void) { pn__point_set_hook(NULL); }

TestSuite(locks, .timeout = PN_TEST_TIMEOUT, .fini = locks_fini);

Test(locks, mutex_lock_try_unlock_and_errors)
{
    static pn_mutex sm = PN_MUTEX_INIT;
    pn_mutex m;
    cr_assert_eq(pn_mutex_init(NULL), -EINVAL);
    cr_assert_eq(pn_mutex_init(&m), 0);
    waker_probe pr = { 0 };
    pn_mutex_guard g = pn_mutex_lock(&m), g2;
    cr_assert_eq(POLL(&g, &pr), PN_READY);
    cr_assert_eq(g.res, 0);
    cr_assert_eq(pn_mutex_try_lock(&m, &g2), -EAGAIN);
    cr_assert_eq(g2.res, -EAGAIN);
    pn_mutex_unlock(&g2);                      /* holds nothing: no-op */
    pn_mutex_unlock(&g);
    pn_mutex_unlock(&g);                       /* twice: no-op */
    cr_assert_eq(pn_mutex_try_lock(&m, &g2), 0);
    cr_assert_eq(pn_mutex_try_lock(&m, &g), -EAGAIN);
    pn_future_drop(&g2.base);                  /* the drop unlocks */
    cr_assert_eq(pn_mutex_try_lock(&m, &g), 0);
    pn_mutex_unlock(&g);
    cr_assert_eq(pn_mutex_try_lock(NULL, &g), -EINVAL);
    cr_assert_eq(pn_mutex_try_lock(&m, NULL), -EINVAL);
    cr_assert_eq(pn_mutex_blocking_lock(&m, NULL), -EINVAL);
    cr_assert_eq(pn_mutex_blocking_lock(NULL, &g), -EINVAL);
    pn_mutex_guard bad = pn_mutex_lock(NULL);
    cr_assert_eq(POLL(&bad, &pr), PN_READY);
    cr_assert_eq(bad.res, -EINVAL);
    cr_assert_str_eq(bad.base.vt->name, "mutex.lock");
    cr_assert_eq(pn_mutex_blocking_lock(&sm, &g), 0);   /* the static one */
    cr_assert_eq(pn_mutex_try_lock(&sm, &g2), -EAGAIN);
    pn_mutex_unlock(&g);
    cr_assert_eq(waker_probe_held(&pr), 0);
    pn_mutex_destroy(&m);
    pn_mutex_destroy(NULL);
}

Test(locks, mutex_hands_the_lock_over_in_fifo_order)
{
    pn_mutex m;
    pn_mutex_init(&m);
    enum { N = 6 };
    waker_probe pr[N];
    pn_mutex_guard g[N];
    memset(pr, 0, sizeof pr);
    for (int i = 0; i < N; i++) {
        g[i] = pn_mutex_lock(&m);
        cr_assert_eq(POLL(&g[i], &pr[i]), i == 0 ? PN_READY : PN_PENDING);
    }
    for (int i = 1; i < N; i++) {
        pn_mutex_guard t;
        cr_assert_eq(pn_mutex_try_lock(&m, &t), -EAGAIN, "try_lock overtook the queue");
        pn_mutex_unlock(&g[i - 1]);
        for (int j = 1; j < N; j++)
            cr_assert_eq(atomic_load(&pr[j].wakes), j <= i, "after unlock %d, waiter %d", i, j);
        cr_assert_eq(POLL(&g[i], &pr[i]), PN_READY);
    }
    pn_mutex_unlock(&g[N - 1]);
    pn_mutex_guard t;
    cr_assert_eq(pn_mutex_try_lock(&m, &t), 0);
    pn_mutex_unlock(&t);
    for (int i = 0; i < N; i++)
        cr_assert_eq(waker_probe_held(&pr[i]), 0);
    pn_mutex_destroy(&m);
}

/* B is granted the lock by A's unlock, then dropped before it polls: the
 * lock goes on to C; and a pending lock dropped while waiting leaves the
 * queue without a trace. */
Test(locks, a_dropped_pending_lock_passes_the_lock_on)
{
    pn_mutex m;
    pn_mutex_init(&m);
    waker_probe pa = { 0 }, pb = { 0 }, pc = { 0 }, pd = { 0 };
    pn_mutex_guard a = pn_mutex_lock(&m), b = pn_mutex_lock(&m), c = pn_mutex_lock(&m),
                   d = pn_mutex_lock(&m);
    cr_assert_eq(POLL(&a, &pa), PN_READY);
    cr_assert_eq(POLL(&b, &pb), PN_PENDING);
    cr_assert_eq(POLL(&c, &pc), PN_PENDING);
    cr_assert_eq(POLL(&d, &pd), PN_PENDING);
    pn_future_drop(&c.base);                  /* waiting: just leaves */
    pn_mutex_unlock(&a);
    cr_assert_eq(atomic_load(&pb.wakes), 1);
    pn_future_drop(&b.base);                  /* granted, never saw it */
    cr_assert_eq(atomic_load(&pd.wakes), 1, "the lock went on to d");
    cr_assert_eq(atomic_load(&pc.wakes), 0);
    cr_assert_eq(POLL(&d, &pd), PN_READY);
    pn_mutex_unlock(&d);
    pn_mutex_guard t;
    cr_assert_eq(pn_mutex_try_lock(&m, &t), 0);
    pn_mutex_unlock(&t);
    cr_assert_eq(waker_probe_held(&pa) + waker_probe_held(&pb) + waker_probe_held(&pc) +
                 waker_probe_held(&pd), 0);
    pn_mutex_destroy(&m);
}

Test(locks, rwlock_readers_share_a_writer_excludes_and_waits_fairly)
{
    pn_rwlock rw;
    cr_assert_eq(pn_rwlock_init(NULL), -EINVAL);
    cr_assert_eq(pn_rwlock_init(&rw), 0);
    waker_probe pr = { 0 }, pw = { 0 }, plate = { 0 };
    pn_rwlock_guard r1 = pn_rwlock_read(&rw), r2, w, late1, late2, t;
    cr_assert_eq(POLL(&r1, &pr), PN_READY);
    cr_assert_eq(pn_rwlock_try_read(&rw, &r2), 0, "readers share");
    cr_assert_eq(pn_rwlock_try_write(&rw, &t), -EAGAIN);
    w = pn_rwlock_write(&rw);
    cr_assert_str_eq(w.base.vt->name, "rwlock.write");
    cr_assert_eq(POLL(&w, &pw), PN_PENDING);
    late1 = pn_rwlock_read(&rw);
    late2 = pn_rwlock_read(&rw);
    cr_assert_eq(POLL(&late1, &plate), PN_PENDING, "a waiting writer blocks later readers");
    cr_assert_eq(POLL(&late2, &plate), PN_PENDING);
    cr_assert_eq(pn_rwlock_try_read(&rw, &t), -EAGAIN);
    pn_rwlock_unlock(&r1);
    cr_assert_eq(atomic_load(&pw.wakes), 0, "one reader still in");
    pn_rwlock_unlock(&r2);
    cr_assert_eq(atomic_load(&pw.wakes), 1);
    cr_assert_eq(POLL(&w, &pw), PN_READY);
    cr_assert_eq(atomic_load(&plate.wakes), 0, "readers wait for the writer");
    pn_rwlock_unlock(&w);
    cr_assert_eq(atomic_load(&plate.wakes), 2, "both readers got in together");
    cr_assert_eq(POLL(&late1, &plate), PN_READY);
    cr_assert_eq(POLL(&late2, &plate), PN_READY);
    cr_assert_eq(pn_rwlock_try_read(&rw, &t), 0);
    pn_rwlock_unlock(&t);
    pn_rwlock_unlock(&late1);
    pn_rwlock_unlock(&late2);
    cr_assert_eq(pn_rwlock_try_write(&rw, &t), 0);
    cr_assert_eq(pn_rwlock_try_read(&rw, &r1), -EAGAIN);
    pn_rwlock_unlock(&t);
    cr_assert_eq(pn_rwlock_try_read(NULL, &t), -EINVAL);
    cr_assert_eq(pn_rwlock_try_write(&rw, NULL), -EINVAL);
    cr_assert_eq(waker_probe_held(&pr) + waker_probe_held(&pw) + waker_probe_held(&plate), 0);
    pn_rwlock_destroy(&rw);
}

/* A waiting writer that is dropped lets the readers queued behind it in. */
Test(locks, dropping_a_waiting_writer_lets_the_readers_behind_it_in)
{
    static pn_rwlock rw = PN_RWLOCK_INIT;
    waker_probe pw = { 0 }, pr = { 0 };
    pn_rwlock_guard r, w = pn_rwlock_write(&rw), late = pn_rwlock_read(&rw);
    cr_assert_eq(pn_rwlock_try_read(&rw, &r), 0);
    cr_assert_eq(POLL(&w, &pw), PN_PENDING);      /* holds all but one permit */
    cr_assert_eq(POLL(&late, &pr), PN_PENDING);
    pn_future_drop(&w.base);
    cr_assert_eq(atomic_load(&pr.wakes), 1);
    cr_assert_eq(POLL(&late, &pr), PN_READY);
    pn_rwlock_unlock(&late);
    pn_rwlock_unlock(&r);
    pn_rwlock_guard t;
    cr_assert_eq(pn_rwlock_try_write(&rw, &t), 0, "every permit came back");
    pn_rwlock_unlock(&t);
    cr_assert_eq(waker_probe_held(&pw) + waker_probe_held(&pr), 0);
}

/* The last reader's unlock grants the waiting writer; the writer is
 * dropped right there, before the wake (the point "semaphore.granted"):
 * the readers queued behind it get in. */
static pn_rwlock_guard *window_writer;
static _Atomic int window_hits;

static void drop_writer_at_granted(const char *name, void *arg)
{
    (void)arg;
    if (strcmp(name, "semaphore.granted") || atomic_fetch_add(&window_hits, 1))
        return;
    pn_future_drop(&window_writer->base);
}

Test(locks, a_writer_dropped_between_grant_and_wake_lets_the_readers_in)
{
    pn_rwlock rw;
    pn_rwlock_init(&rw);
    waker_probe pw = { 0 }, pr = { 0 };
    pn_rwlock_guard r, w = pn_rwlock_write(&rw), late1 = pn_rwlock_read(&rw),
                       late2 = pn_rwlock_read(&rw);
    cr_assert_eq(pn_rwlock_try_read(&rw, &r), 0);
    cr_assert_eq(POLL(&w, &pw), PN_PENDING);
    cr_assert_eq(POLL(&late1, &pr), PN_PENDING);
    cr_assert_eq(POLL(&late2, &pr), PN_PENDING);
    window_writer = &w;
    atomic_store(&window_hits, 0);
    pn__point_set_hook(drop_writer_at_granted);
    pn_rwlock_unlock(&r);
    pn__point_set_hook(NULL);
    cr_assert_geq(atomic_load(&window_hits), 1, "the window was reached");
    cr_assert_eq(atomic_load(&pw.wakes), 1, "the writer's wake still lands");
    cr_assert_eq(atomic_load(&pr.wakes), 2, "both readers got in");
    cr_assert_eq(POLL(&late1, &pr), PN_READY);
    cr_assert_eq(POLL(&late2, &pr), PN_READY);
    pn_rwlock_unlock(&late1);
    pn_rwlock_unlock(&late2);
    pn_rwlock_guard t;
    cr_assert_eq(pn_rwlock_try_write(&rw, &t), 0, "every permit came back");
    pn_rwlock_unlock(&t);
    cr_assert_eq(waker_probe_held(&pw) + waker_probe_held(&pr), 0);
    pn_rwlock_destroy(&rw);
}

/* ---- blocking variants ------------------------------------------------- */

static pn_mutex block_m;
static long block_counter;

static void *blocking_locker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        pn_mutex_guard g;
        cr_assert_eq(pn_mutex_blocking_lock(&block_m, &g), 0);
        block_counter++;
        pn_mutex_unlock(&g);
    }
    return NULL;
}

Test(locks, blocking_lock_from_plain_threads_excludes)
{
    pn_mutex_init(&block_m);
    block_counter = 0;
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, blocking_locker, NULL), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(block_counter, 6000);
    pn_rwlock rw;
    pn_rwlock_init(&rw);
    pn_rwlock_guard a, b;
    cr_assert_eq(pn_rwlock_blocking_read(&rw, &a), 0);
    cr_assert_eq(pn_rwlock_blocking_read(&rw, &b), 0);
    pn_rwlock_unlock(&a);
    pn_rwlock_unlock(&b);
    cr_assert_eq(pn_rwlock_blocking_write(&rw, &a), 0);
    pn_rwlock_unlock(&a);
    cr_assert_eq(pn_rwlock_blocking_write(NULL, &a), -EINVAL);
    pn_rwlock_destroy(&rw);
    pn_mutex_destroy(&block_m);
}

/* A plain thread's blocking_lock waits for a task to unlock. */
typedef struct hold_then_unlock {
    pn_future base;
    int pc, polls;
    pn_mutex *m;
    pn_mutex_guard g, inner;
    pn_yield_now_future y;
    int deadlk;
} hold_then_unlock;

static pn_poll hold_then_unlock_poll(pn_future *f, pn_cx *cx)
{
    hold_then_unlock *h = (hold_then_unlock *)f;
    PN_ASYNC_BEGIN(h->pc);
    h->g = pn_mutex_lock(h->m);
    PN_AWAIT(h->pc, &h->g, cx);
    h->deadlk = pn_mutex_blocking_lock(h->m, &h->inner);   /* refused in a task */
    for (h->polls = 0; h->polls < 20; h->polls++) {
        h->y = pn_yield();
        PN_AWAIT(h->pc, &h->y, cx);
    }
    pn_mutex_unlock(&h->g);
    PN_ASYNC_END(h->pc);
}

static const pn_future_vtable hold_then_unlock_vt = { hold_then_unlock_poll, NULL, "hold" };

static void *block_once(void *arg)
{
    pn_mutex_guard g;
    cr_assert_eq(pn_mutex_blocking_lock(arg, &g), 0);
    pn_mutex_unlock(&g);
    return NULL;
}

BOTH(locks, blocking_lock_waits_for_a_task_and_is_refused_inside_one)
{
    pn_runtime *rt = flavour_new(fl);
    pn_mutex m;
    pn_mutex_init(&m);
    hold_then_unlock h = { .base = { &hold_then_unlock_vt }, .m = &m };
    pn_join_handle *jh;
    cr_assert_eq(PN_SPAWN(rt, h, &jh), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, block_once, &m), 0);
    pn_join_future j = pn_join(jh);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((hold_then_unlock *)j.output)->deadlk, -EDEADLK);
    pn_join_handle_free(jh);
    pthread_join(th, NULL);
    pn_mutex_guard t;
    cr_assert_eq(pn_mutex_try_lock(&m, &t), 0);
    pn_mutex_unlock(&t);
    pn_mutex_destroy(&m);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- tasks: the counter under the lock -------------------------------- */

typedef struct lock_stats {
    long counter;                      /* plain: only the holder touches it */
    _Atomic int holders, readers, writers;
    _Atomic int bad;
    _Atomic long drops;
} lock_stats;

typedef struct locker {
    pn_future base;
    int pc, done;
    pn_mutex *m;
    int iters;
    unsigned seed;
    bool drop_some, holding;
    lock_stats *st;
    pn_mutex_guard g;
    pn_yield_now_future y;
} locker;

static pn_poll locker_poll(pn_future *f, pn_cx *cx)
{
    locker *l = (locker *)f;
    PN_ASYNC_BEGIN(l->pc);
    for (l->done = 0; l->done < l->iters;) {
        l->g = pn_mutex_lock(l->m);
        if (rand_r(&l->seed) % 16 == 0) {
            if (pn_mutex_try_lock(l->m, &l->g) != 0)
                continue;                         /* busy (or someone waits) */
        } else if (l->drop_some && rand_r(&l->seed) % 8 == 0) {
            if (pn_future_poll(&l->g.base, cx) == PN_PENDING) {
                pn_future_drop(&l->g.base);       /* a random drop of a pending lock */
                atomic_fetch_add(&l->st->drops, 1);
                continue;
            }
        } else {
            PN_AWAIT(l->pc, &l->g, cx);
        }
        l->holding = true;
        if (atomic_fetch_add(&l->st->holders, 1) != 0)
            atomic_fetch_add(&l->st->bad, 1);
        l->st->counter++;
        if (rand_r(&l->seed) % 16 == 0) {         /* hold across a yield */
            l->y = pn_yield();
            PN_AWAIT(l->pc, &l->y, cx);
        }
        atomic_fetch_sub(&l->st->holders, 1);
        l->holding = false;
        pn_mutex_unlock(&l->g);
        l->done++;
    }
    PN_ASYNC_END(l->pc);
}

static const pn_future_vtable locker_vt = { locker_poll, NULL, "locker" };

static void run_lockers(pn_runtime *rt, int tasks, int iters, bool drop_some)
{
    pn_mutex m;
    pn_mutex_init(&m);
    lock_stats st = { 0 };
    pn_join_handle **hs = calloc(tasks, sizeof *hs);
    for (int t = 0; t < tasks; t++) {
        locker l = { .base = { &locker_vt }, .m = &m, .iters = iters, .seed = 1 + t,
                     .drop_some = drop_some, .st = &st };
        cr_assert_eq(PN_SPAWN(rt, l, &hs[t]), 0);
    }
    cr_assert_eq(join_all(rt, hs, tasks), 0);
    free(hs);
    cr_assert_eq(atomic_load(&st.bad), 0, "two holders at once");
    cr_assert_eq(st.counter, (long)tasks * iters, "the counter lost increments");
    pn_mutex_guard t;
    cr_assert_eq(pn_mutex_try_lock(&m, &t), 0, "the lock was left held");
    pn_mutex_unlock(&t);
    pn_mutex_destroy(&m);
}

BOTH(locks, tasks_increment_a_counter_under_the_mutex)
{
    pn_runtime *rt = flavour_new(fl);
    run_lockers(rt, 20, 500, true);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(locks, stress_100_tasks_x_1000_locks_on_2_workers, .timeout = PN_TIMEOUT(60))
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_REACTOR_THREAD);
    run_lockers(rt, 100, 1000, true);
    run_lockers(rt, 100, 1000, false);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- tasks: readers and writers ---------------------------------------- */

typedef struct rw_worker {
    pn_future base;
    int pc, done;
    pn_rwlock *rw;
    int iters;
    unsigned seed;
    bool writer;
    lock_stats *st;
    pn_rwlock_guard g;
    pn_yield_now_future y;
} rw_worker;

static pn_poll rw_worker_poll(pn_future *f, pn_cx *cx)
{
    rw_worker *w = (rw_worker *)f;
    PN_ASYNC_BEGIN(w->pc);
    for (w->done = 0; w->done < w->iters;) {
        w->writer = rand_r(&w->seed) % 4 == 0;
        w->g = w->writer ? pn_rwlock_write(w->rw) : pn_rwlock_read(w->rw);
        if (rand_r(&w->seed) % 8 == 0) {
            if (pn_future_poll(&w->g.base, cx) == PN_PENDING) {
                pn_future_drop(&w->g.base);
                atomic_fetch_add(&w->st->drops, 1);
                continue;
            }
        } else {
            PN_AWAIT(w->pc, &w->g, cx);
        }
        if (w->writer) {
            if (atomic_fetch_add(&w->st->writers, 1) != 0 || atomic_load(&w->st->readers) != 0)
                atomic_fetch_add(&w->st->bad, 1);
            w->st->counter++;
        } else {
            atomic_fetch_add(&w->st->readers, 1);
            if (atomic_load(&w->st->writers) != 0)
                atomic_fetch_add(&w->st->bad, 1);
        }
        if (rand_r(&w->seed) % 4 == 0) {
            w->y = pn_yield();
            PN_AWAIT(w->pc, &w->y, cx);
        }
        if (w->writer) {
            if (atomic_load(&w->st->readers) != 0)
                atomic_fetch_add(&w->st->bad, 1);
            atomic_fetch_sub(&w->st->writers, 1);
        } else {
            atomic_fetch_sub(&w->st->readers, 1);
        }
        pn_rwlock_unlock(&w->g);
        w->done++;
    }
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable rw_worker_vt = { rw_worker_poll, NULL, "rw_worker" };

static void run_rw(pn_runtime *rt, int tasks, int iters)
{
    pn_rwlock rw;
    pn_rwlock_init(&rw);
    lock_stats st = { 0 };
    pn_join_handle **hs = calloc(tasks, sizeof *hs);
    for (int t = 0; t < tasks; t++) {
        rw_worker w = { .base = { &rw_worker_vt }, .rw = &rw, .iters = iters, .seed = 3 + t,
                        .st = &st };
        cr_assert_eq(PN_SPAWN(rt, w, &hs[t]), 0);
    }
    cr_assert_eq(join_all(rt, hs, tasks), 0);
    free(hs);
    cr_assert_eq(atomic_load(&st.bad), 0, "a writer overlapped another holder");
    pn_rwlock_guard t;
    cr_assert_eq(pn_rwlock_try_write(&rw, &t), 0, "the lock was left held");
    pn_rwlock_unlock(&t);
    pn_rwlock_destroy(&rw);
}

BOTH(locks, readers_and_writers_never_overlap)
{
    pn_runtime *rt = flavour_new(fl);
    run_rw(rt, 20, 300);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(locks, stress_readers_and_writers_on_2_workers, .timeout = PN_TIMEOUT(60))
{
    pn_runtime *rt = mt_driver_new(2, PN_DRIVER_REACTOR_THREAD);
    run_rw(rt, 60, 1000);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
