/*
 * task_group.c - pn_task_group (pollen/task.h): tasks joined in the order
 * they finish (Tokio's JoinSet and its IdleNotifiedSet).
 *
 * Owns: the group (a refcounted heap object: the owner holds one
 * reference, every node one more) and one node per task.
 *
 * A node is the task's join waker.  It sits on the group's `idle` list
 * while its task runs; when the task finishes, the task wakes its joiner,
 * which is the node: the node moves to the `ready` FIFO under the group's
 * lock and the group's waiter (the pending join_next or shutdown) is woken
 * after unlocking.  join_next pops `ready`, so it never polls every task.
 *
 * A node's references: one for its place in the group (idle or ready
 * list, then the READY join_next future that returned it), one per clone
 * of its waker (the task keeps one in its join slot).  A node holds a
 * reference on the group, so a task finishing after pn_task_group_free
 * (its waker still held by the task) finds the group's memory and its lock
 * and sees the node detached.
 *
 * Registering the node as join waker goes through the ordinary join
 * future (a poll with the node's waker in the context), which stores the
 * waker then looks at the task's state again: a task that finished before
 * the waker was stored is seen there, and the spawner moves the node
 * itself.  Moving is idempotent (only an `idle` node moves).  The node is
 * on the idle list before the waker is stored (so a wake always finds it
 * there), which means another thread's join_next may take and free it
 * while the spawner still registers: the spawner holds a reference on the
 * node and one on the task (executor/task.h) for that window.
 *
 * Lock order: the group's lock, then the scheduler's queue locks
 * (abort_all aborts under the group's lock; an abort only queues the
 * task, it never completes it synchronously, so no wake comes back here).
 */
#include <stdlib.h>
#include "task.h"
#include "sync/wait.h"
#include "core/sys.h"
#include "core/chaos.h"

typedef enum node_where { NODE_NONE, NODE_IDLE, NODE_READY } node_where;

typedef struct tg_node tg_node;

typedef struct tg_list {
    tg_node *head, *tail;
} tg_list;

struct tg_node {
    _Atomic size_t refs;
    pn_task_group *g;
    pn_join_handle *h;
    tg_node *prev, *next;        /* guarded by g->lock while on a list */
    node_where where;            /* guarded by g->lock */
};

struct pn_task_group {
    _Atomic size_t refs;         /* the owner + one per node */
    pn__mutex lock;                /* a mutex: abort_all may wake a worker under it */
    pn_runtime *rt;
    tg_list idle;                /* tasks running */
    tg_list ready;               /* finished, in finishing order */
    size_t len;                  /* idle + ready */
    pn_waker waiter;             /* the pending join_next or shutdown */
};

/* ---- lists (under the group's lock) ------------------------------------- */

static void list_push(tg_list *l, tg_node *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

static void list_remove(tg_list *l, tg_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

static tg_node *list_pop(tg_list *l)
{
    tg_node *n = l->head;
    if (n)
        list_remove(l, n);
    return n;
}

/* ---- references ---------------------------------------------------------- */

static void group_unref(pn_task_group *g)
{
    if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) {
        pn__mutex_destroy(&g->lock);
        pn__free(g);
    }
}

static void node_unref(tg_node *n)
{
    if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) == 1) {
        pn_task_group *g = n->g;
        pn__free(n);
        group_unref(g);
    }
}

/* ---- the node as a waker --------------------------------------------------- */

/* The node's task finished: move it to the ready list (once) and wake the
 * group's waiter. */
static void node_ready(tg_node *n)
{
    pn_task_group *g = n->g;
    pn_waker w = PN_WAKER_NONE;
    pn__mutex_acquire(&g->lock);
    if (n->where == NODE_IDLE) {
        list_remove(&g->idle, n);
        list_push(&g->ready, n);
        n->where = NODE_READY;
        w = g->waiter;
        g->waiter = PN_WAKER_NONE;
    }
    pn__mutex_release(&g->lock);
    pn_waker_wake(&w);
}

static const pn_waker_vtable node_vt;

static pn_waker node_clone(const void *d)
{
    tg_node *n = (tg_node *)d;
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
    return (pn_waker){ n, &node_vt };
}

static void node_wake_by_ref(const void *d) { node_ready((tg_node *)d); }

static void node_drop(const void *d) { node_unref((tg_node *)d); }

static void node_wake(const void *d)
{
    node_ready((tg_node *)d);
    node_unref((tg_node *)d);
}

static const pn_waker_vtable node_vt = { node_clone, node_wake, node_wake_by_ref, node_drop };

/* Poll the task's join future once with `w` as the waker: stores a clone
 * of w as the task's join waker unless the task is finished.  Returns
 * PN_READY (with the task's status and output) when it is finished. */
static pn_poll join_once(pn_join_handle *h, const pn_waker *w, pn_runtime *rt,
                         int *status, void **output)
{
    pn_join_future jf = pn_join(h);
    pn_cx cx = { .waker = w, .rt = rt, .budget = 1 };
    pn_poll r = pn_future_poll(&jf.base, &cx);
    if (r == PN_READY) {
        *status = jf.res;
        *output = jf.output;
    }
    return r;
}

/* Free a node that left the group's lists (under the lock): its task's
 * handle (which drops a join waker still stored there) and its place. */
static void node_release(tg_node *n)
{
    pn_join_handle_free(n->h);
    node_unref(n);
}

/* ---- the group ------------------------------------------------------------- */

int pn_task_group_new(pn_runtime *rt, pn_task_group **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!rt)
        return -EINVAL;
    pn_task_group *g = pn__malloc(sizeof(*g));
    if (!g)
        return -ENOMEM;
    atomic_init(&g->refs, 1);
    pn__mutex_init(&g->lock);
    g->rt = rt;
    g->idle = (tg_list){ NULL, NULL };
    g->ready = (tg_list){ NULL, NULL };
    g->len = 0;
    g->waiter = PN_WAKER_NONE;
    *out = g;
    return 0;
}

int pn_task_group_spawn(pn_task_group *g, const pn_future *f, size_t size)
{
    if (!g)
        return -EINVAL;
    tg_node *n = pn__malloc(sizeof(*n));
    if (!n)
        return -ENOMEM;
    pn_join_handle *h = NULL;
    int err = pn_spawn(g->rt, f, size, &h);
    if (err) {
        pn__free(n);
        return err;
    }
    /* Its place in the group, plus ours until the end of this call: once
     * the node is on the list, a join_next on another thread may take it
     * and free its handle while we still look at the task; our task
     * reference keeps the task's memory until then. */
    atomic_init(&n->refs, 2);
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    n->g = g;
    n->h = h;
    pn__task *t = (pn__task *)(void *)h;
    pn__task_ref(t);
    pn__mutex_acquire(&g->lock);
    list_push(&g->idle, n);
    n->where = NODE_IDLE;
    g->len++;
    pn__mutex_release(&g->lock);

    /* The task may finish right here, before its join waker is ours. */
    PN_POINT("task_group.spawn", h);

    pn_waker w = { n, &node_vt };
    int status;
    void *output;
    if (join_once(h, &w, g->rt, &status, &output) == PN_READY)
        node_ready(n);
    pn__task_unref(t);
    node_unref(n);
    return 0;
}

size_t pn_task_group_len(pn_task_group *g)
{
    if (!g)
        return 0;
    pn__mutex_acquire(&g->lock);
    size_t len = g->len;
    pn__mutex_release(&g->lock);
    return len;
}

void pn_task_group_abort_all(pn_task_group *g)
{
    if (!g)
        return;
    pn__mutex_acquire(&g->lock);
    for (tg_node *n = g->idle.head; n; n = n->next)
        pn_join_handle_abort(n->h);
    pn__mutex_release(&g->lock);
}

/* Take every node off the group's lists (under the lock) into *out. */
static void take_all(pn_task_group *g, tg_list *from, tg_list *out)
{
    tg_node *n;
    while ((n = list_pop(from))) {
        n->where = NODE_NONE;
        g->len--;
        list_push(out, n);
    }
}

void pn_task_group_free(pn_task_group *g)
{
    if (!g)
        return;
    tg_list all = { NULL, NULL };
    pn__mutex_acquire(&g->lock);
    take_all(g, &g->ready, &all);
    take_all(g, &g->idle, &all);
    pn_waker w = g->waiter;
    g->waiter = PN_WAKER_NONE;
    pn__mutex_release(&g->lock);
    pn_waker_drop(&w);
    /* Detached from the group: a finishing task's wake finds them NONE. */
    tg_node *n;
    while ((n = list_pop(&all))) {
        pn_join_handle_abort(n->h);
        node_release(n);
    }
    group_unref(g);
}

/* ---- join_next ---------------------------------------------------------------- */

static void fill_result(pn_task_group_join_future *j, tg_node *n)
{
    pn_waker none = PN_WAKER_NONE;
    int status = -ECANCELED;
    void *output = NULL;
    pn_poll r = join_once(n->h, &none, n->g->rt, &status, &output);
    (void)r;                                  /* ready: the task finished */
    j->entry = n;
    j->res = status;
    j->output = output;
}

/* Pop a finished task into j (under the lock).  Returns its status,
 * -ENOENT for an empty group, -EAGAIN when tasks run but none finished. */
static int pop_locked(pn_task_group *g, tg_node **popped)
{
    tg_node *n = list_pop(&g->ready);
    *popped = n;
    if (n) {
        n->where = NODE_NONE;
        g->len--;
        return 0;
    }
    return g->len == 0 ? -ENOENT : -EAGAIN;
}

static pn_poll join_next_poll(pn_future *f, pn_cx *cx)
{
    pn_task_group_join_future *j = (pn_task_group_join_future *)f;
    pn_task_group *g = j->group;
    if (!g) {
        j->res = -EINVAL;
        return PN_READY;
    }
    if (j->entry)
        return PN_READY;                      /* polled again after READY */
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    tg_node *n;
    pn__mutex_acquire(&g->lock);
    int r = pop_locked(g, &n);
    if (r == -EAGAIN) {
        pn_waker_set(&g->waiter, cx->waker);
        j->waiting = true;
        pn__mutex_release(&g->lock);
        return PN_PENDING;
    }
    /* READY: give back a waker an earlier poll left in the slot. */
    pn_waker stale = PN_WAKER_NONE;
    if (j->waiting) {
        stale = g->waiter;
        g->waiter = PN_WAKER_NONE;
        j->waiting = false;
    }
    pn__mutex_release(&g->lock);
    pn_waker_drop(&stale);
    if (n) {
        fill_result(j, n);
    } else {
        j->res = -ENOENT;
        j->output = NULL;
    }
    return PN_READY;
}

/* Drop: a READY future releases its task; a pending one gives up the
 * waiter slot (a task that finished meanwhile stays on the ready list). */
static void join_next_drop(pn_future *f)
{
    pn_task_group_join_future *j = (pn_task_group_join_future *)f;
    if (j->entry) {
        pn_task_group_join_release(j);
        return;
    }
    if (j->waiting && j->group) {
        pn__mutex_acquire(&j->group->lock);
        pn_waker w = j->group->waiter;
        j->group->waiter = PN_WAKER_NONE;
        pn__mutex_release(&j->group->lock);
        pn_waker_drop(&w);
        j->waiting = false;
    }
}

static const pn_future_vtable join_next_vt = { join_next_poll, join_next_drop,
                                               "pn_task_group_join_next" };

pn_task_group_join_future pn_task_group_join_next(pn_task_group *g)
{
    return (pn_task_group_join_future){ .base = { &join_next_vt }, .group = g };
}

int pn_task_group_try_join_next(pn_task_group *g, pn_task_group_join_future *out)
{
    if (!out)
        return -EINVAL;
    *out = pn_task_group_join_next(g);
    if (!g)
        return out->res = -EINVAL;
    tg_node *n;
    pn__mutex_acquire(&g->lock);
    int r = pop_locked(g, &n);
    pn__mutex_release(&g->lock);
    if (n) {
        fill_result(out, n);
        return out->res;
    }
    if (r == -ENOENT)
        out->res = -ENOENT;
    return r;
}

void pn_task_group_join_release(pn_task_group_join_future *j)
{
    if (!j || !j->entry)
        return;
    tg_node *n = j->entry;
    j->entry = NULL;
    j->output = NULL;
    node_release(n);
}

/* ---- shutdown ------------------------------------------------------------------ */

static pn_poll shutdown_poll(pn_future *f, pn_cx *cx)
{
    pn_task_group_shutdown_future *s = (pn_task_group_shutdown_future *)f;
    pn_task_group *g = s->group;
    if (!g) {
        s->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    if (s->state == 2)
        return PN_READY;                      /* polled again after READY */
    if (s->state == 0) {
        pn_task_group_abort_all(g);
        s->state = 1;
    }
    tg_list done = { NULL, NULL };
    pn__mutex_acquire(&g->lock);
    take_all(g, &g->ready, &done);
    bool empty = g->len == 0;
    if (!empty)
        pn_waker_set(&g->waiter, cx->waker);
    pn__mutex_release(&g->lock);
    tg_node *n;
    while ((n = list_pop(&done)))
        node_release(n);
    if (!empty)
        return PN_PENDING;
    s->state = 2;
    s->res = 0;
    return PN_READY;
}

static void shutdown_drop(pn_future *f)
{
    pn_task_group_shutdown_future *s = (pn_task_group_shutdown_future *)f;
    if (s->state != 1 || !s->group)
        return;
    s->state = 2;
    pn__mutex_acquire(&s->group->lock);
    pn_waker w = s->group->waiter;
    s->group->waiter = PN_WAKER_NONE;
    pn__mutex_release(&s->group->lock);
    pn_waker_drop(&w);
}

static const pn_future_vtable shutdown_vt = { shutdown_poll, shutdown_drop,
                                              "pn_task_group_shutdown" };

pn_task_group_shutdown_future pn_task_group_shutdown(pn_task_group *g)
{
    return (pn_task_group_shutdown_future){ .base = { &shutdown_vt }, .group = g };
}
