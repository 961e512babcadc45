/*
 * notify.c - pn_notify (pollen/notify.h): notify_one with one stored
 * permit, notify_waiters by generation.
 *
 * The word: generation << 2 | EMPTY, WAITING or NOTIFIED.  EMPTY and
 * NOTIFIED swap without the lock (notify_one stores the permit, the first
 * poll takes it); WAITING is entered and left only under the lock, and
 * means the waiting queue is not empty.  The generation moves only under
 * the lock (notify_waiters).
 *
 * Queues.  `waiting` holds the waiters made in the current generation.
 * notify_waiters moves them all to `woken` in the same critical section
 * that moves the generation, then takes their wakers out in batches of
 * PN__WAKELIST_CAP, dropping the lock between batches.  A waiter knows
 * which queue it is on: the main one if its generation is the current
 * one, the other one if not.  A waiter popped by notify_one gets
 * w.state = ONE, which its drop passes on if it never saw it.
 */
#include "pollen/notify.h"
#include "sync/wait.h"
#include "core/chaos.h"

#define EMPTY ((size_t)0)
#define WAITING ((size_t)1)
#define NOTIFIED ((size_t)2)
#define MASK ((size_t)3)
#define GEN(s) ((s) >> 2)

enum { ST_IDLE, ST_QUEUED, ST_DONE };
enum { W_NONE, W_ONE };

int pn_notify_init(pn_notify *n)
{
    if (!n)
        return -EINVAL;
    atomic_init(&n->state, 0);
    pthread_mutex_init(&n->lock, NULL);
    n->waiting = n->woken = (pn_sync_queue){ NULL, NULL };
    return 0;
}

void pn_notify_destroy(pn_notify *n)
{
    if (n)
        pthread_mutex_destroy(&n->lock);
}

/* Store the permit: the word is EMPTY or NOTIFIED.  Lock-free.  A permit
 * already stored is written again (a CAS to the same value), so the one
 * who takes it also sees what this notifier published before calling. */
static bool store_permit(pn_notify *n)
{
    size_t cur = atomic_load_explicit(&n->state, memory_order_relaxed);
    for (;;) {
        if ((cur & MASK) == WAITING)
            return false;
        if (atomic_compare_exchange_weak_explicit(&n->state, &cur, (cur & ~MASK) | NOTIFIED,
                                                  memory_order_release, memory_order_relaxed))
            return true;
    }
}

/* Under the lock: choose the head waiter for a notify_one, or store the
 * permit when nobody waits. */
static void one_locked(pn_notify *n, pn__wakelist *wl)
{
    if (store_permit(n))
        return;
    /* WAITING: the queue is not empty, and the word cannot change under us. */
    pn_sync_waiter *w = n->waiting.head;
    pn__waitq_remove(&n->waiting, w);
    w->state = W_ONE;
    pn__wakelist_push(wl, &w->waker);
    if (!n->waiting.head) {
        size_t cur = atomic_load_explicit(&n->state, memory_order_relaxed);
        atomic_store_explicit(&n->state, cur & ~MASK, memory_order_release);
    }
}

void pn_notify_one(pn_notify *n)
{
    if (!n || store_permit(n))
        return;
    pn__wakelist wl = { 0 };
    pthread_mutex_lock(&n->lock);
    one_locked(n, &wl);
    pthread_mutex_unlock(&n->lock);
    PN_POINT("notify.chosen", n);
    pn__wakelist_wake(&wl);
}

void pn_notify_waiters(pn_notify *n)
{
    if (!n)
        return;
    pn__wakelist wl = { 0 };
    pthread_mutex_lock(&n->lock);
    size_t cur = atomic_load_explicit(&n->state, memory_order_relaxed);
    if ((cur & MASK) != WAITING) {
        /* Nobody queued: a new generation for the futures made before. */
        atomic_fetch_add_explicit(&n->state, (size_t)1 << 2, memory_order_release);
        pthread_mutex_unlock(&n->lock);
        return;
    }
    atomic_store_explicit(&n->state, ((GEN(cur) + 1) << 2) | EMPTY, memory_order_release);
    if (n->waiting.head) {                        /* splice them behind earlier ones */
        if (n->woken.tail) {
            n->woken.tail->next = n->waiting.head;
            n->waiting.head->prev = n->woken.tail;
        } else {
            n->woken.head = n->waiting.head;
        }
        n->woken.tail = n->waiting.tail;
        n->waiting.head = n->waiting.tail = NULL;
    }
    for (;;) {
        if (pn__wakelist_full(&wl)) {
            pthread_mutex_unlock(&n->lock);
            pn__wakelist_wake(&wl);
            pthread_mutex_lock(&n->lock);
        }
        pn_sync_waiter *w = n->woken.head;
        if (!w)
            break;
        pn__waitq_remove(&n->woken, w);
        pn__wakelist_push(&wl, &w->waker);
    }
    pthread_mutex_unlock(&n->lock);
    pn__wakelist_wake(&wl);
}

/* ---- the notified future ---------------------------------------------- */

static pn_poll notified_poll(pn_future *f, pn_cx *cx);
static void notified_drop(pn_future *f);

static const pn_future_vtable notified_vt = { notified_poll, notified_drop, "notify.notified" };

pn_notified_future pn_notify_notified(pn_notify *n)
{
    pn_notified_future f = { .base = { &notified_vt }, .n = n, .st = ST_IDLE };
    if (!n) {
        f.res = -EINVAL;
        f.st = ST_DONE;
    } else {
        f.gen = GEN(atomic_load_explicit(&n->state, memory_order_acquire));
    }
    return f;
}

static pn_poll done(pn_notified_future *f)
{
    f->st = ST_DONE;
    return PN_READY;
}

static pn_poll notified_poll(pn_future *fut, pn_cx *cx)
{
    pn_notified_future *f = (pn_notified_future *)fut;
    pn_notify *n = f->n;
    if (f->st == ST_DONE)
        return PN_READY;
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;

    if (f->st == ST_QUEUED) {
        pthread_mutex_lock(&n->lock);
        size_t cur = atomic_load_explicit(&n->state, memory_order_acquire);
        if (f->w.state == W_ONE || GEN(cur) != f->gen) {
            /* Chosen by notify_one (off the queue), or woken by
             * notify_waiters (maybe still on the second queue). */
            if (f->w.queued)
                pn__waitq_remove(&n->woken, &f->w);
            pn_waker_drop(&f->w.waker);
            pthread_mutex_unlock(&n->lock);
            return done(f);
        }
        pn_waker_set(&f->w.waker, cx->waker);
        pthread_mutex_unlock(&n->lock);
        return PN_PENDING;
    }

    /* The first poll: a notify_waiters since we were made, or the permit. */
    size_t cur = atomic_load_explicit(&n->state, memory_order_acquire);
    for (;;) {
        if (GEN(cur) != f->gen)
            return done(f);
        if ((cur & MASK) != NOTIFIED)
            break;
        if (atomic_compare_exchange_weak_explicit(&n->state, &cur, cur & ~MASK,
                                                  memory_order_acquire, memory_order_acquire))
            return done(f);
    }
    pthread_mutex_lock(&n->lock);
    cur = atomic_load_explicit(&n->state, memory_order_acquire);
    for (;;) {
        if (GEN(cur) != f->gen) {
            pthread_mutex_unlock(&n->lock);
            return done(f);
        }
        size_t next;
        if ((cur & MASK) == NOTIFIED)
            next = cur & ~MASK;           /* take the permit */
        else if ((cur & MASK) == EMPTY)
            next = cur | WAITING;
        else
            break;                        /* WAITING already */
        if (atomic_compare_exchange_weak_explicit(&n->state, &cur, next, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if ((next & MASK) == EMPTY) {
                pthread_mutex_unlock(&n->lock);
                return done(f);
            }
            break;
        }
    }
    f->w.state = W_NONE;
    pn_waker_set(&f->w.waker, cx->waker);
    pn__waitq_push(&n->waiting, &f->w);
    f->st = ST_QUEUED;
    pthread_mutex_unlock(&n->lock);
    return PN_PENDING;
}

static void notified_drop(pn_future *fut)
{
    pn_notified_future *f = (pn_notified_future *)fut;
    if (f->st != ST_QUEUED)
        return;
    pn_notify *n = f->n;
    pn__wakelist wl = { 0 };
    pthread_mutex_lock(&n->lock);
    size_t cur = atomic_load_explicit(&n->state, memory_order_relaxed);
    if (f->w.state == W_ONE) {
        one_locked(n, &wl);               /* pass the notify_one on */
    } else if (f->w.queued) {
        if (GEN(cur) == f->gen) {
            pn__waitq_remove(&n->waiting, &f->w);
            if (!n->waiting.head)
                atomic_store_explicit(&n->state, cur & ~MASK, memory_order_release);
        } else {
            pn__waitq_remove(&n->woken, &f->w);
        }
    }
    pn_waker_drop(&f->w.waker);
    pthread_mutex_unlock(&n->lock);
    f->st = ST_DONE;
    pn__wakelist_wake(&wl);
}
