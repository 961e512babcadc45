/*
 * task.c - task cells: allocation, the state word's transitions, the task
 * waker, one poll of a task (the harness) and the join handle.
 *
 * The state machine is drawn in task.h.  Everything here is scheduler-
 * independent: a scheduler provides pn__sched_ops.schedule and calls
 * pn__task_run on tasks it pops.  The join handle is the task pointer.
 */
#include <stdlib.h>
#include <string.h>
#include "task.h"
#include "rt.h"
#include "core/sys.h"
#include "core/chaos.h"

/* ---- Allocation and references ------------------------------------------ */

/* PN_SPAWN_MAX_SIZE leaves this much room for the header. */
_Static_assert(sizeof(pn__task) + 32 <= 4096, "the task header outgrew PN_SPAWN_MAX_SIZE's room");
/* A detached task's memory is this header plus its future (task.h). */
_Static_assert(sizeof(void *) != 8 || sizeof(pn__task) == 48, "the task header grew");

/* The join waker sits before the header of a JOINABLE task, in a prefix
 * that keeps the header (and so the future) 16-byte aligned. */
#define JOIN_PREFIX ((sizeof(pn_waker) + 15) & ~(size_t)15)

static pn_waker *join_waker(pn__task *t)
{
    return (pn_waker *)(void *)((unsigned char *)t - JOIN_PREFIX);
}

/* The start of t's allocation; st: its state word (only JOINABLE is read). */
static void *task_block(pn__task *t, uint64_t st)
{
    return st & PN__JOINABLE ? (void *)join_waker(t) : (void *)t;
}

pn__task *pn__task_new(pn__sched *s, const pn_future *f, size_t size,
                       unsigned refs, bool join)
{
    if (size > PN_SPAWN_MAX_SIZE)
        return NULL;                /* sizeof(*t) + size would wrap */
    size_t pre = join ? JOIN_PREFIX : 0, bytes = pre + sizeof(pn__task) + size;
    unsigned char *block = NULL;
    uint32_t where = 0;
    if (s && s->root->ops->cell_alloc)
        block = s->root->ops->cell_alloc(s->root, bytes, &where);
    if (!where) {
        block = pn__malloc(bytes);
        if (block && s)
            atomic_fetch_add_explicit(&s->root->refs, 1, memory_order_relaxed);
    }
    if (!block)
        return NULL;
    pn__task *t = (pn__task *)(void *)(block + pre);
    t->cell = where;
    uint64_t st = PN__NOTIFIED | (uint64_t)refs * PN__REF_ONE;
    if (join) {
        st |= PN__JOIN_INTEREST | PN__JOINABLE;
        *join_waker(t) = PN_WAKER_NONE;
    }
    atomic_init(&t->state, st);
    t->next = NULL;
    t->sched = s;
    t->owned_prev = t->owned_next = NULL;
    t->owned = false;
    atomic_flag_clear(&t->join_lock);
    memcpy(t->future, f, size);
    return t;
}

void pn__sched_unref(pn__sched *s)
{
    if (s && atomic_fetch_sub_explicit(&s->root->refs, 1, memory_order_acq_rel) == 1)
        s->root->ops->release(s->root);
}

/* st: the state word's last value (its JOINABLE bit). */
static void task_dealloc(pn__task *t, uint64_t st)
{
    /* The join waker was taken at completion or by the handle's release. */
    pn__sched *s = t->sched;
    void *block = task_block(t, st);
    if (t->cell) {
        s->root->ops->cell_free(s->root, block, t->cell);
        return;
    }
    pn__free(block);
    pn__sched_unref(s);
}

void pn__task_free_unpublished(pn__task *t)
{
    task_dealloc(t, atomic_load_explicit(&t->state, memory_order_relaxed));
}

void pn__task_ref(pn__task *t)
{
    atomic_fetch_add_explicit(&t->state, PN__REF_ONE, memory_order_relaxed);
}

void pn__task_unref_n(pn__task *t, unsigned n)
{
    uint64_t sub = (uint64_t)n * PN__REF_ONE;
    uint64_t prev = atomic_fetch_sub_explicit(&t->state, sub, memory_order_acq_rel);
    if ((prev & ~PN__FLAGS_MASK) == sub)
        task_dealloc(t, prev);
}

void pn__task_unref(pn__task *t)
{
    pn__task_unref_n(t, 1);
}

/* ---- Join waker (guarded by a tiny spinlock: held for a few stores) ------ */

static void join_lock(pn__task *t)
{
    while (atomic_flag_test_and_set_explicit(&t->join_lock, memory_order_acquire))
        ;
}

static void join_unlock(pn__task *t)
{
    atomic_flag_clear_explicit(&t->join_lock, memory_order_release);
}

static void wake_joiner(pn__task *t)
{
    join_lock(t);
    pn_waker w = *join_waker(t);
    *join_waker(t) = PN_WAKER_NONE;
    join_unlock(t);
    pn_waker_wake(&w);
}

/* ---- Waking -------------------------------------------------------------- */

/*
 * Mark t NOTIFIED.  Returns true when the caller must schedule it, having
 * added one reference for the queue (when `consume` is set the caller's own
 * reference is handed to the queue instead).
 */
static bool transition_to_notified(pn__task *t, bool consume)
{
    uint64_t cur = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        uint64_t next;
        bool submit = false;
        if (cur & (PN__COMPLETE | PN__NOTIFIED))
            return false;
        if (cur & PN__RUNNING) {
            next = cur | PN__NOTIFIED;      /* the poller re-queues it */
        } else {
            next = cur | PN__NOTIFIED;
            if (!consume)
                next += PN__REF_ONE;
            submit = true;
        }
        if (atomic_compare_exchange_weak_explicit(&t->state, &cur, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            return submit;
    }
}

/* The task this thread polls, and whether it woke itself meanwhile (a
 * yield, a spent budget): noted here rather than with a compare-and-swap
 * on its state, and set by the one the poll's end does anyway. */
static _Thread_local pn__task *tls_running;
static _Thread_local bool tls_self_woken;

static pn_waker waker_clone(const void *data)
{
    pn__task *t = (pn__task *)data;
    pn__task_ref(t);
    return (pn_waker){ t, &pn__task_waker_vt };
}

static void waker_wake_by_ref(const void *data)
{
    pn__task *t = (pn__task *)data;
    if (t == tls_running) {
        tls_self_woken = true;
        return;
    }
    if (transition_to_notified(t, false))
        t->sched->ops->schedule(t->sched, t);
}

static void waker_wake(const void *data)
{
    pn__task *t = (pn__task *)data;
    if (t == tls_running) {
        tls_self_woken = true;
        pn__task_unref(t);                      /* the runner holds another */
        return;
    }
    if (transition_to_notified(t, true))
        t->sched->ops->schedule(t->sched, t);   /* our ref went to the queue */
    else
        pn__task_unref(t);
}

static void waker_drop(const void *data)
{
    pn__task_unref((pn__task *)data);
}

const pn_waker_vtable pn__task_waker_vt = {
    .clone = waker_clone,
    .wake = waker_wake,
    .wake_by_ref = waker_wake_by_ref,
    .drop = waker_drop,
};

/* ---- One poll ------------------------------------------------------------ */

/* RUNNING -> COMPLETE (|CANCELLED); wake the joiner. */
static void complete(pn__task *t, bool cancelled)
{
    /* A future that completed wins over an abort that came during its last
     * poll: its output is kept (and it is not dropped). */
    uint64_t set = PN__COMPLETE | (cancelled ? PN__CANCELLED : 0);
    uint64_t cur = atomic_load_explicit(&t->state, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&t->state, &cur,
                                                  (cur & ~(PN__RUNNING | PN__CANCELLED)) | set,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
        ;
    if (cur & PN__JOIN_INTEREST)
        wake_joiner(t);
}

pn__run_result pn__task_run(pn__task *t, pn_cx *cx)
{
    /* NOTIFIED -> RUNNING.  Only the holder of the queue ref gets here. */
    uint64_t cur = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (cur & PN__COMPLETE) {           /* shut down while queued */
            pn__task_unref(t);
            return PN__RUN_IDLE;
        }
        uint64_t next = (cur & ~PN__NOTIFIED) | PN__RUNNING;
        if (atomic_compare_exchange_weak_explicit(&t->state, &cur, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    pn_future *f = pn__task_future(t);
    if (cur & PN__CANCELLED) {
        pn_future_drop(f);
        complete(t, true);
        pn__task_unref(t);
        return PN__RUN_DONE;
    }

    pn_waker w = { t, &pn__task_waker_vt };
    cx->waker = &w;
    pn__task *outer = tls_running;
    bool outer_woken = tls_self_woken;
    tls_running = t;
    tls_self_woken = false;
    pn_poll r = pn_future_poll(f, cx);
    bool self_woken = tls_self_woken;
    tls_running = outer;
    tls_self_woken = outer_woken;
    cx->waker = NULL;

    if (r == PN_READY) {
        complete(t, false);
        pn__task_unref(t);
        return PN__RUN_DONE;
    }

    if (!t->owned && t->sched && t->sched->root->ops->pending)
        t->sched->root->ops->pending(t->sched->root, t);

    /* RUNNING -> idle, or re-queue if woken (or aborted) during the poll. */
    cur = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (cur & PN__CANCELLED) {
            pn_future_drop(f);
            complete(t, true);
            pn__task_unref(t);
            return PN__RUN_DONE;
        }
        uint64_t next = cur & ~PN__RUNNING;
        if (self_woken)
            next |= PN__NOTIFIED;
        if (atomic_compare_exchange_weak_explicit(&t->state, &cur, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    if ((cur & PN__NOTIFIED) || self_woken)
        return PN__RUN_REQUEUE;
    pn__task_unref(t);
    return PN__RUN_IDLE;
}

void pn__task_pin_running(pn_cx *cx)
{
    pn__task *t = tls_running;
    if (!t || !cx || !cx->rt)
        return;
    pn__sched *s = cx->rt->ops->local_sched(cx->rt);
    if (s && t->sched != s)
        t->sched = s;
}

bool pn__task_shutdown(pn__task *t)
{
    uint64_t cur = atomic_load_explicit(&t->state, memory_order_acquire);
    if (cur & PN__COMPLETE)
        return false;
    /* Not running (shutdown happens outside polls), so nobody else may set
     * COMPLETE concurrently: mark it running for the drop. */
    while (!atomic_compare_exchange_weak_explicit(&t->state, &cur,
                                                  cur | PN__RUNNING | PN__CANCELLED,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
        ;
    pn_future_drop(pn__task_future(t));
    complete(t, true);
    return true;
}

void pn__task_drop_queued(pn__task *t)
{
    if (!t->owned) {
        /* Never polled.  On a worker, maybe inside another task's poll:
         * no drop here (a drop runs user code, and completing wakes the
         * joiner, whose lock that poll may hold); shutdown's walk of the
         * owned lists drops it after the workers are gone. */
        pn__sched *root = t->sched ? t->sched->root : NULL;
        bool linked = root && root->ops->pending && root->ops->pending(root, t);
        if (!linked && pn__task_shutdown(t))
            pn__task_unref(t);          /* the runtime's: nobody else has it */
    }
    pn__task_unref(t);                  /* the queue's */
}

/* ---- Join handle ---------------------------------------------------------- */

static pn__task *handle_task(pn_join_handle *h) { return (pn__task *)(void *)h; }

void pn_join_handle_abort(pn_join_handle *h)
{
    if (!h)
        return;
    pn__task *t = handle_task(h);
    uint64_t cur = atomic_load_explicit(&t->state, memory_order_acquire);
    for (;;) {
        if (cur & (PN__COMPLETE | PN__CANCELLED))
            return;
        uint64_t next = cur | PN__CANCELLED;
        bool submit = false;
        if (!(cur & (PN__RUNNING | PN__NOTIFIED))) {
            next |= PN__NOTIFIED;           /* the scheduler drops it */
            next += PN__REF_ONE;
            submit = true;
        }
        if (atomic_compare_exchange_weak_explicit(&t->state, &cur, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if (submit)
                t->sched->ops->schedule(t->sched, t);
            return;
        }
    }
}

bool pn_join_handle_is_finished(pn_join_handle *h)
{
    return h && (atomic_load_explicit(&handle_task(h)->state, memory_order_acquire) & PN__COMPLETE);
}

void pn_join_handle_free(pn_join_handle *h)
{
    if (!h)
        return;
    pn__task *t = handle_task(h);
    atomic_fetch_and_explicit(&t->state, ~PN__JOIN_INTEREST, memory_order_acq_rel);
    join_lock(t);
    pn_waker w = *join_waker(t);
    *join_waker(t) = PN_WAKER_NONE;
    join_unlock(t);
    pn_waker_drop(&w);
    pn__task_unref(t);
}

static pn_poll join_poll(pn_future *f, pn_cx *cx)
{
    pn_join_future *j = (pn_join_future *)f;
    if (!j->handle) {
        j->res = -EINVAL;
        return PN_READY;
    }
    pn__task *t = handle_task(j->handle);
    if (pn_cx_budget_spend(cx) == PN_PENDING)
        return PN_PENDING;
    uint64_t st = atomic_load_explicit(&t->state, memory_order_acquire);
    if (!(st & PN__COMPLETE)) {
        join_lock(t);
        pn_waker_set(join_waker(t), cx->waker);
        join_unlock(t);
        /* A completion here takes the waker just stored and wakes it. */
        PN_POINT("join.registered", t);
        /* Completion takes the waker after setting COMPLETE: look again so a
         * completion between the first load and the store is not missed. */
        st = atomic_load_explicit(&t->state, memory_order_acquire);
        if (!(st & PN__COMPLETE))
            return PN_PENDING;
    }
    if (st & PN__CANCELLED) {
        j->res = -ECANCELED;
        j->output = NULL;
    } else {
        j->res = 0;
        j->output = t->future;
    }
    return PN_READY;
}

static const pn_future_vtable join_vt = { join_poll, NULL, "pn_join" };

pn_join_future pn_join(pn_join_handle *h)
{
    return (pn_join_future){ .base = { &join_vt }, .handle = h, .output = NULL, .res = 0 };
}
