/*
 * test_races.c - races an outside review found, each forced on every run
 * through a named schedule point (src/core/chaos.h): the hook runs the
 * other thread's half of the race exactly inside the window.
 *
 *   spawn.queued       a foreign pn_spawn has put its task on the
 *                      injection queue: shutdown runs to its end there
 *   reactor.dispatch   the dispatcher holds an event for a record: the fd
 *                      is closed and a new fd takes the same record
 *
 * Each test fails on the code before its mend (the mend and the window are
 * named in the test's comment).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"
#include "core/chaos.h"
#include "reactor/reactor.h"
#include "reactor/slab.h"
#include "reactor/backend.h"
#include "executor/local_queue.h"
#include <sched.h>

static void races_fini(void) { pn__point_set_hook(NULL); }
/* The reactor test drives the readiness protocol by hand: on io_uring,
 * stream sockets stay in readiness mode. */
static void races_init(void) { setenv("POLLEN_URING_MODE", "readiness", 1); }

TestSuite(races, .timeout = PN_TEST_TIMEOUT, .init = races_init, .fini = races_fini);

/* ---- a foreign spawn racing shutdown ---------------------------------------- */

static pn_runtime *shut_rt;
static _Thread_local bool is_spawner;
static _Atomic int shut_err = 1, hook_hits;

static void *shutdown_thread(void *arg)
{
    (void)arg;
    atomic_store(&shut_err, pn_runtime_shutdown(shut_rt));
    return NULL;
}

static void shutdown_at_spawn(const char *name, void *arg)
{
    (void)arg;
    if (!is_spawner || strcmp(name, "spawn.queued"))
        return;
    is_spawner = false;
    atomic_fetch_add(&hook_hits, 1);
    pthread_t th;
    if (pthread_create(&th, NULL, shutdown_thread, NULL) == 0)
        pthread_join(th, NULL);
}

typedef struct counted {
    pn_future base;
    _Atomic int *drops;
} counted;

static pn_poll counted_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    (void)cx;
    return PN_PENDING;
}

static void counted_drop(pn_future *f) { atomic_fetch_add(((counted *)f)->drops, 1); }

static const pn_future_vtable counted_vt = { counted_poll, counted_drop, "counted" };

/* Once, mt_spawn put the task on the owned list, unlocked, then pushed it
 * on the injection queue: a shutdown in between dropped the task in its
 * walk of the owned list, the push failed, and pn_spawn returned
 * -ESHUTDOWN, so the caller dropped its future a second time (and the task
 * cell was freed twice).  Now a task is linked in the owned list only at
 * its first pending poll; a spawn is one push, and the injection queue's
 * close is the fence: either the push fails before shutdown can see the
 * task, or the task is handed over whole and shutdown's drain drops it
 * once (here, with the window right after the push). */
Test(races, foreign_spawn_racing_shutdown_drops_the_future_once)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        pn_runtime_config cfg;
        pn_runtime_config_init(&cfg);
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = workers;
        cr_assert_eq(pn_runtime_new(&cfg, &shut_rt), 0);
        _Atomic int drops = 0;
        atomic_store(&hook_hits, 0);
        atomic_store(&shut_err, 1);
        pn__point_set_hook(shutdown_at_spawn);
        is_spawner = true;
        counted f = { { &counted_vt }, &drops };
        int err = pn_spawn(shut_rt, &f.base, sizeof f, NULL);
        is_spawner = false;
        pn__point_set_hook(NULL);
        cr_assert_eq(atomic_load(&hook_hits), 1, "the window was reached");
        cr_assert_eq(atomic_load(&shut_err), 0, "shutdown ran inside the spawn");
        if (err == -ESHUTDOWN) {
            cr_assert_eq(atomic_load(&drops), 0, "-ESHUTDOWN: the future is still ours");
            counted_drop(&f.base);
        } else {
            cr_assert_eq(err, 0, "pn_spawn: %s", pn_strerror(err));
        }
        pn_runtime_free(shut_rt);
        cr_assert_eq(atomic_load(&drops), 1, "the future was dropped once (%d)",
                     atomic_load(&drops));
    }
}

/* ---- a stale event for a freed and reused record ------------------------------ */

static struct {
    pn__registration *reg;      /* the record whose event is in flight */
    pn_async_fd *old, *fresh;
    int old_peer, fresh_fds[2];
    pn_cx *fresh_cx;
    _Atomic int hits;
} reuse;

static void reuse_at_dispatch(const char *name, void *arg)
{
    if (strcmp(name, "reactor.dispatch") || arg != reuse.reg || atomic_load(&reuse.hits))
        return;
    atomic_fetch_add(&reuse.hits, 1);
    /* Another worker closes the fd and accepts a new connection, whose
     * registration takes the record just freed (the free list is LIFO). */
    pn_async_fd_close(reuse.old);
    close(reuse.old_peer);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, reuse.fresh_fds) < 0)
        return;
    pn_async_fd_init(reuse.fresh, reuse.fresh_fds[0]);
    char c;
    ssize_t res;
    (void)pn_async_fd_poll_read(reuse.fresh, reuse.fresh_cx, &c, 1, &res);
}

/* Before the mend, dispatch checked the record's generation, then set the
 * readiness bits with no check: a close and a new registration of the
 * record in between turned the old connection's hang-up into sticky CLOSED
 * bits on the new one, whose reads then spun (EAGAIN, wake, poll) for
 * ever.  Now the generation is in the readiness word and the update is
 * refused by its CAS. */
Test(races, stale_hangup_never_reaches_the_next_registration_of_its_record)
{
    pn__reactor *r = NULL;
    cr_assert_eq(pn__reactor_new(64, pn_test_backend(), &r), 0);
    waker_probe old_wc = { 0 }, fresh_wc = { 0 };
    pn_waker old_w = { &old_wc, &waker_probe_vt }, fresh_w = { &fresh_wc, &waker_probe_vt };
    pn_cx old_cx = { .waker = &old_w, .reactor = r, .budget = 128 };
    pn_cx fresh_cx = { .waker = &fresh_w, .reactor = r, .budget = 128 };
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
    pn_async_fd old, fresh;
    cr_assert_eq(pn_async_fd_init(&old, p[0]), 0);
    char c;
    ssize_t res;
    cr_assert_eq(pn_async_fd_poll_read(&old, &old_cx, &c, 1, &res), PN_PENDING);
    cr_assert_not_null(old.reg);
    uint64_t token = pn__token(old.reg->index, old.gen);

    reuse.reg = old.reg;
    reuse.old = &old;
    reuse.fresh = &fresh;
    reuse.old_peer = p[1];
    reuse.fresh_cx = &fresh_cx;
    atomic_store(&reuse.hits, 0);
    pn__point_set_hook(reuse_at_dispatch);
    /* The hang-up of the old connection, as the backend reports it. */
    pn__reactor_dispatch(r, token, PN__READY_READ_CLOSED | PN__READY_WRITE_CLOSED |
                                   PN__READY_READ);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&reuse.hits), 1, "the window was reached");
    cr_assert_eq(fresh.reg, reuse.reg, "the new fd took the freed record");

    uint64_t word = atomic_load(&fresh.reg->readiness);
    cr_assert_eq(word & (PN__READY_READ_CLOSED | PN__READY_WRITE_CLOSED), 0,
                 "the old hang-up landed on the new connection (readiness %#llx)",
                 (unsigned long long)word);
    cr_assert_eq(atomic_load(&fresh_wc.wakes), 0, "the new reader was woken");
    /* The new connection's read still waits, without waking itself. */
    cr_assert_eq(pn_async_fd_poll_read(&fresh, &fresh_cx, &c, 1, &res), PN_PENDING);
    cr_assert_eq(atomic_load(&fresh_wc.wakes), 0, "the read woke itself (a spin)");
    /* And it completes when its peer really writes. */
    cr_assert_eq(write(reuse.fresh_fds[1], "x", 1), 1);
    for (int i = 0; i < 100 && atomic_load(&fresh_wc.wakes) == 0; i++)
        pn__reactor_poll(r, 100 * 1000 * 1000);
    cr_assert_eq(pn_async_fd_poll_read(&fresh, &fresh_cx, &c, 1, &res), PN_READY);
    cr_assert_eq(res, 1);
    pn_async_fd_close(&fresh);
    close(reuse.fresh_fds[1]);
    pn__reactor_free(r);
    cr_assert_eq(waker_probe_held(&old_wc), 0, "the old reader's waker was given back");
    cr_assert_eq(waker_probe_held(&fresh_wc), 0, "the new reader's waker was given back");
}

/* ---- a never-polled task dropped inside another task's poll ----------------- */

/* A future that waits for ever: its first poll leaves a clone of its waker
 * in `slot`; it counts its drops. */
typedef struct parked_fut {
    pn_future base;
    pn_waker *slot;
    _Atomic int *drops;
} parked_fut;

static pn_poll parked_poll(pn_future *f, pn_cx *cx)
{
    parked_fut *p = (parked_fut *)f;
    if (p->slot && !p->slot->vt)
        *p->slot = pn_waker_clone(cx->waker);
    return PN_PENDING;
}

static void parked_drop(pn_future *f) { atomic_fetch_add(((parked_fut *)f)->drops, 1); }

static const pn_future_vtable parked_vt = { parked_poll, parked_drop, "parked" };

#define DQ_PARKED 300

static struct {
    pn_runtime *rt;
    pn_task_group *g;
    pn_waker slots[DQ_PARKED], x_slot;
    _Atomic int parked_drops, x_drops, y_drops;
    _Atomic int shut_err;
    _Atomic bool shutter_started, done;
    pthread_t shutter;
    const char *_Atomic fail;           /* checks made on the worker */
} dq;

#define DQ_CHECK(cond)                                                        \
    do {                                                                      \
        if (!(cond)) {                                                        \
            atomic_store(&dq.fail, #cond);                                    \
            atomic_store(&dq.shutter_started, true);                          \
            return PN_READY;                                                  \
        }                                                                     \
    } while (0)

static void *dq_foreign_wake(void *arg)
{
    pn_waker_wake_by_ref((pn_waker *)arg);
    return NULL;
}

static void *dq_shutdown(void *arg)
{
    (void)arg;
    atomic_store(&dq.shut_err, pn_runtime_shutdown(dq.rt));
    return NULL;
}

static uint64_t dq_inject_depth(void)
{
    pn_runtime_metrics m;
    pn_runtime_metrics_get(dq.rt, &m);
    return m.injection_queue_depth;
}

static uint64_t dq_local_depth(void)
{
    pn_worker_metrics m;
    pn_runtime_worker_metrics_get(dq.rt, 0, &m);
    return m.local_queue_depth;
}

typedef struct dq_driver {
    pn_future base;
    int stage;
} dq_driver;

static pn_poll dq_driver_poll(pn_future *f, pn_cx *cx)
{
    dq_driver *d = (dq_driver *)f;
    if (d->stage++ == 0) {
        /* X in the group, and the parked tasks: all polled once (pending,
         * so linked in the worker's owned list) before our next poll. */
        parked_fut x = { { &parked_vt }, &dq.x_slot, &dq.x_drops };
        DQ_CHECK(pn_task_group_spawn(dq.g, &x.base, sizeof x) == 0);
        for (int i = 0; i < DQ_PARKED; i++) {
            parked_fut p = { { &parked_vt }, &dq.slots[i], &dq.parked_drops };
            DQ_CHECK(pn_spawn(dq.rt, &p.base, sizeof p, NULL) == 0);
        }
        pn_waker_wake_by_ref(cx->waker);        /* after all of them */
        return PN_PENDING;
    }
    /* Until X and every parked task have had their first poll. */
    bool all = dq.x_slot.vt != NULL;
    for (int i = 0; i < DQ_PARKED; i++)
        all = all && dq.slots[i].vt != NULL;
    if (!all) {
        pn_waker_wake_by_ref(cx->waker);
        return PN_PENDING;
    }
    /* Y joins the group and waits in the LIFO slot, never polled. */
    parked_fut y = { { &parked_vt }, NULL, &dq.y_drops };
    DQ_CHECK(pn_task_group_spawn(dq.g, &y.base, sizeof y) == 0);
    /* Something in the injection queue (a wake from another thread), so
     * that we see its close: the depth drops to 0 (we are the only
     * worker, and busy here). */
    pthread_t th;
    DQ_CHECK(pthread_create(&th, NULL, dq_foreign_wake, &dq.slots[0]) == 0);
    pthread_join(th, NULL);
    DQ_CHECK(dq_inject_depth() == 1);
    DQ_CHECK(pthread_create(&dq.shutter, NULL, dq_shutdown, NULL) == 0);
    atomic_store(&dq.shutter_started, true);
    while (dq_inject_depth() != 0)
        sched_yield();
    /* Shutdown has closed the injection queue and waits for this poll.
     * Fill the local queue: each wake takes the LIFO slot and pushes its
     * occupant, Y first. */
    for (int i = 1; i < DQ_PARKED && dq_local_depth() < PN__LQ_CAP; i++)
        pn_waker_wake_by_ref(&dq.slots[i]);
    DQ_CHECK(dq_local_depth() == PN__LQ_CAP);
    /* Under the group's lock, the abort of X queues it (LIFO slot); the
     * slot's occupant overflows the full queue, half of it (Y with it)
     * into the closed injection queue. */
    pn_task_group_abort_all(dq.g);
    atomic_store(&dq.done, true);
    return PN_READY;
}

static const pn_future_vtable dq_driver_vt = { dq_driver_poll, NULL, "dq_driver" };

/* A queue push on a worker that meets the closed injection queue (the
 * runtime shuts down) used to drop a never-polled task's future right
 * there, inside the running task's poll (pn__task_drop_queued): its
 * completion woke its join waker, here a task group's node, whose lock the
 * running task held in pn_task_group_abort_all (whose lock order says an
 * abort never completes a task synchronously): the worker spun on that
 * lock for ever and shutdown never returned.  Now such a task goes on the
 * worker's owned list, and shutdown drops it after the workers are gone. */
Test(races, queue_refused_at_shutdown_drops_no_future_inside_a_poll)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = PN_RUNTIME_MULTI_THREAD;
    cfg.workers = 1;
    cr_assert_eq(pn_runtime_new(&cfg, &dq.rt), 0);
    cr_assert_eq(pn_task_group_new(dq.rt, &dq.g), 0);
    dq_driver d = { { &dq_driver_vt }, 0 };
    cr_assert_eq(pn_spawn(dq.rt, &d.base, sizeof d, NULL), 0);
    while (!atomic_load(&dq.shutter_started))
        sched_yield();
    cr_assert_null(atomic_load(&dq.fail), "on the worker: %s", atomic_load(&dq.fail));
    pthread_join(dq.shutter, NULL);
    cr_assert_null(atomic_load(&dq.fail), "on the worker: %s", atomic_load(&dq.fail));
    cr_assert_eq(atomic_load(&dq.shut_err), 0);
    cr_assert(atomic_load(&dq.done));
    cr_assert_eq(atomic_load(&dq.y_drops), 1, "Y dropped once (%d)", atomic_load(&dq.y_drops));
    cr_assert_eq(atomic_load(&dq.x_drops), 1);
    cr_assert_eq(atomic_load(&dq.parked_drops), DQ_PARKED);
    for (int i = 0; i < DQ_PARKED; i++)
        pn_waker_drop(&dq.slots[i]);
    pn_waker_drop(&dq.x_slot);
    pn_task_group_free(dq.g);
    cr_assert_eq(pn_runtime_free(dq.rt), 0);
}

/* ---- a wake by value from another thread racing pn_runtime_free -------------- */

static struct {
    pn_runtime *rt;
    pn_waker slot;
    _Atomic bool polled;
    _Atomic int hits, drops;
} wv;
static _Thread_local bool wv_is_waker;

typedef struct wv_fut {
    pn_future base;
} wv_fut;

static pn_poll wv_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    if (!wv.slot.vt) {
        wv.slot = pn_waker_clone(cx->waker);
        atomic_store(&wv.polled, true);
    }
    return PN_PENDING;
}

static void wv_drop(pn_future *f)
{
    (void)f;
    atomic_fetch_add(&wv.drops, 1);
}

static const pn_future_vtable wv_vt = { wv_poll, wv_drop, "wv" };

static void *wv_free_runtime(void *arg)
{
    (void)arg;
    pn_runtime_free(wv.rt);
    return NULL;
}

static void free_at_push(const char *name, void *arg)
{
    (void)arg;
    if (!wv_is_waker || strcmp(name, "mt.pushed_remote"))
        return;
    wv_is_waker = false;
    atomic_fetch_add(&wv.hits, 1);
    pthread_t th;
    if (pthread_create(&th, NULL, wv_free_runtime, NULL) == 0)
        pthread_join(th, NULL);
}

/* A waker may outlive its runtime (task.h: every task cell holds a
 * reference on it), so a wake from another thread may race
 * pn_runtime_free.  pn_waker_wake hands the waker's task reference to the
 * run queue: once the task is in the injection queue, a shutdown may take
 * it, drop it, and the runtime's last reference goes with the caches'
 * tokens, all before the waker's thread, still in schedule(), tells a
 * sleeping worker (notify_parked reads the freed runtime).  Tokio's
 * wake_by_val keeps its reference until schedule() returned.  Fails under
 * AddressSanitizer (heap-use-after-free in notify_parked). */
Test(races, wake_by_value_from_another_thread_racing_runtime_free)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = PN_RUNTIME_MULTI_THREAD;
    cfg.workers = 1;
    cr_assert_eq(pn_runtime_new(&cfg, &wv.rt), 0);
    wv_fut f = { { &wv_vt } };
    cr_assert_eq(pn_spawn(wv.rt, &f.base, sizeof f, NULL), 0);
    pn_worker_metrics m = { 0 };
    while (!atomic_load(&wv.polled) || m.polls < 1) {   /* idle: the poll ended */
        sched_yield();
        pn_runtime_worker_metrics_get(wv.rt, 0, &m);
    }
    pn__point_set_hook(free_at_push);
    wv_is_waker = true;
    pn_waker_wake(&wv.slot);            /* by value: our reference is the queue's */
    wv_is_waker = false;
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&wv.hits), 1, "the window was reached");
    cr_assert_eq(atomic_load(&wv.drops), 1);
}

/* ---- shutdown's walk of the owned lists racing a refused foreign wake --------- */

static struct {
    pn_waker p_slot, q_slot;
    _Atomic int p_drops, q_drops;
    _Atomic bool b_running, f_at, s_at, f_in_drop, f_done, s_in_walk;
    _Atomic int shut_err;
    pn_runtime *rt;
} ow;
static _Thread_local bool ow_is_waker;

typedef struct ow_fut {
    pn_future base;
    int kind;                           /* 0: P, 1: Q, 2: the blocker */
} ow_fut;

static pn_poll ow_poll(pn_future *f, pn_cx *cx)
{
    ow_fut *o = (ow_fut *)f;
    if (o->kind == 2) {                 /* keep the only worker busy */
        atomic_store(&ow.b_running, true);
        while (!atomic_load(&ow.f_at))
            sched_yield();
        return PN_READY;
    }
    pn_waker *slot = o->kind == 0 ? &ow.p_slot : &ow.q_slot;
    if (!slot->vt)
        *slot = pn_waker_clone(cx->waker);
    return PN_PENDING;
}

static void ow_drop(pn_future *f)
{
    ow_fut *o = (ow_fut *)f;
    if (o->kind == 1)
        atomic_fetch_add(&ow.q_drops, 1);
    if (o->kind != 0)
        return;
    atomic_fetch_add(&ow.p_drops, 1);
    if (ow_is_waker) {
        /* The waker's thread drops P: let the walk go on meanwhile. */
        atomic_store(&ow.f_in_drop, true);
        while (atomic_load(&ow.p_drops) < 2 && !atomic_load(&ow.s_in_walk))
            sched_yield();
    }
}

static const pn_future_vtable ow_vt = { ow_poll, ow_drop, "ow" };

static void ow_hook(const char *name, void *arg)
{
    if (!strcmp(name, "mt.push_refused") && ow_is_waker && arg == ow.p_slot.data) {
        atomic_store(&ow.f_at, true);   /* the blocker returns: shutdown goes on */
        while (!atomic_load(&ow.s_at))
            sched_yield();
    } else if (!strcmp(name, "mt.shutdown.walk") && arg == ow.p_slot.data) {
        atomic_store(&ow.s_at, true);
        while (!atomic_load(&ow.f_in_drop) && !atomic_load(&ow.f_done))
            sched_yield();
        atomic_store(&ow.s_in_walk, true);
    }
}

static void *ow_shutdown(void *arg)
{
    (void)arg;
    atomic_store(&ow.shut_err, pn_runtime_shutdown(ow.rt));
    return NULL;
}

static uint64_t ow_inject_depth(void)
{
    pn_runtime_metrics m;
    pn_runtime_metrics_get(ow.rt, &m);
    return m.injection_queue_depth;
}

/* Shutdown's walk of an owned list unlinked a task (t->owned = 0) before
 * dropping it; a wake on another thread that had found the injection
 * queue closed then took the task for one never polled
 * (pn__task_drop_queued reads t->owned) and dropped it too: its future
 * twice (chaos seed 5, mt_stress shutdown_racing_with_foreign_wakes), or
 * the runtime's reference twice.  Here P's wake is refused, then waits
 * until the walk has unlinked P; the walk waits until that wake is in
 * P's drop (or done). */
Test(races, foreign_wake_refused_during_the_owned_walk_drops_the_task_once)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = PN_RUNTIME_MULTI_THREAD;
    cfg.workers = 1;
    cr_assert_eq(pn_runtime_new(&cfg, &ow.rt), 0);
    ow_fut p = { { &ow_vt }, 0 }, q = { { &ow_vt }, 1 }, b = { { &ow_vt }, 2 };
    cr_assert_eq(pn_spawn(ow.rt, &p.base, sizeof p, NULL), 0);
    cr_assert_eq(pn_spawn(ow.rt, &q.base, sizeof q, NULL), 0);
    pn_worker_metrics m = { 0 };
    while (m.polls < 2) {               /* P and Q polled once, idle */
        sched_yield();
        pn_runtime_worker_metrics_get(ow.rt, 0, &m);
    }
    cr_assert_eq(pn_spawn(ow.rt, &b.base, sizeof b, NULL), 0);
    while (!atomic_load(&ow.b_running))
        sched_yield();
    /* The worker is busy: Q's wake stays in the injection queue, whose
     * close (shutdown's first step) we then see. */
    pn_waker_wake_by_ref(&ow.q_slot);
    cr_assert_eq(ow_inject_depth(), 1);
    pn__point_set_hook(ow_hook);
    pthread_t s;
    cr_assert_eq(pthread_create(&s, NULL, ow_shutdown, NULL), 0);
    while (ow_inject_depth() != 0)
        sched_yield();
    ow_is_waker = true;
    pn_waker_wake_by_ref(&ow.p_slot);   /* refused: the queue is closed */
    ow_is_waker = false;
    atomic_store(&ow.f_done, true);
    pthread_join(s, NULL);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&ow.shut_err), 0);
    cr_assert(atomic_load(&ow.s_at), "the window was reached");
    cr_assert_eq(atomic_load(&ow.p_drops), 1, "P dropped %d times", atomic_load(&ow.p_drops));
    cr_assert_eq(atomic_load(&ow.q_drops), 1);
    pn_waker_drop(&ow.p_slot);
    pn_waker_drop(&ow.q_slot);
    cr_assert_eq(pn_runtime_free(ow.rt), 0);
}
