/*
 * semaphore.c - the fair batch semaphore (pollen/semaphore.h) that the
 * mutex and the rwlock are made of.
 *
 * The permit count lives in one atomic word, state = permits << 2 |
 * WAITERS | CLOSED.  Uncontended, acquire and release are one CAS each
 * on it.  WAITERS is set (under the lock) by the acquire that has to
 * queue, in the same CAS that takes whatever permits were free for it,
 * and cleared (under the lock) when the queue empties.  So while anyone
 * waits the word holds no free permit, fast acquires fail over to the
 * queue (nobody barges) and releases go through the lock, where the
 * permits are handed to the head waiter first (Tokio's batch_semaphore
 * does the same, but takes its lock on every release).
 *
 * A queued acquire keeps in w.need the permits it still wants; the
 * granter pops it, moves its waker out and then sets its `granted` word
 * (release), after which it may not touch it: the owner may see the grant
 * at once and go on without the lock.
 */
#include "sync/sem.h"
#include "sync/wait.h"
#include "core/chaos.h"

#define CLOSED ((size_t)1)
#define WAITERS ((size_t)2)
#define SHIFT 2

enum { ST_IDLE, ST_QUEUED, ST_HELD, ST_DONE };
enum { G_NONE, G_GRANTED, G_CLOSED };

static pn_semaphore_permit *permit_of(pn_sync_waiter *w)
{
    return pn_container_of(w, pn_semaphore_permit, w);
}

/* ---- the permit word ------------------------------------------------------- */

/* Take n permits if they are free and nobody waits.  One CAS. */
static bool fast_take(pn_semaphore *s, size_t n)
{
    size_t cur = atomic_load_explicit(&s->state, memory_order_relaxed);
    for (;;) {
        if ((cur & (CLOSED | WAITERS)) || (cur >> SHIFT) < n)
            return false;
        if (atomic_compare_exchange_weak_explicit(&s->state, &cur, cur - (n << SHIFT),
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
}

/* Put n permits back if nobody waits: 0, 1 (someone waits: go through the
 * lock), -EINVAL (more than the max). */
static int fast_give(pn_semaphore *s, size_t n)
{
    size_t cur = atomic_load_explicit(&s->state, memory_order_relaxed);
    for (;;) {
        if (cur & WAITERS)
            return 1;
        if ((cur >> SHIFT) + n > PN_SEMAPHORE_MAX_PERMITS)
            return -EINVAL;
        if (atomic_compare_exchange_weak_explicit(&s->state, &cur, cur + (n << SHIFT),
                                                  memory_order_release, memory_order_relaxed))
            return 0;
    }
}

/*
 * Under the lock: hand k permits to the waiters in order (the head first,
 * partly if it wants more), then put what is left into the word, clearing
 * WAITERS if the queue is empty.  The lock is dropped and taken again when
 * the wake list fills (never while a waiter is popped but not yet marked).
 * A closed semaphore grants nothing: the permits go to the word.
 */
static void settle_locked(pn_semaphore *s, size_t k, pn__wakelist *wl)
{
    for (;;) {
        if (atomic_load_explicit(&s->state, memory_order_relaxed) & CLOSED)
            break;
        pn_sync_waiter *w = s->waiters.head;
        if (!w)
            break;
        if (k < w->need) {
            w->need -= k;
            k = 0;
            break;
        }
        if (pn__wakelist_full(wl)) {
            pthread_mutex_unlock(&s->lock);
            pn__wakelist_wake(wl);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        k -= w->need;
        w->need = 0;
        pn__waitq_remove(&s->waiters, w);
        pn__wakelist_push(wl, &w->waker);
        atomic_store_explicit(&permit_of(w)->granted, G_GRANTED, memory_order_release);
    }
    size_t cur = atomic_load_explicit(&s->state, memory_order_relaxed), next;
    do {
        next = cur + (k << SHIFT);
        if (!s->waiters.head)
            next &= ~WAITERS;
    } while (next != cur &&
             !atomic_compare_exchange_weak_explicit(&s->state, &cur, next, memory_order_acq_rel,
                                                    memory_order_relaxed));
}

/* Give n permits back, serving the queue.  The window between a grant
 * (under the lock) and its wake (after) is the point "semaphore.granted". */
static void give(pn_semaphore *s, size_t n)
{
    if (fast_give(s, n) != 1)
        return;
    pn__wakelist wl = { 0 };
    pthread_mutex_lock(&s->lock);
    settle_locked(s, n, &wl);
    pthread_mutex_unlock(&s->lock);
    PN_POINT("semaphore.granted", s);
    pn__wakelist_wake(&wl);
}

/* ---- the semaphore ------------------------------------------------------- */

int pn_semaphore_init(pn_semaphore *s, size_t permits)
{
    if (!s || permits > PN_SEMAPHORE_MAX_PERMITS)
        return -EINVAL;
    atomic_init(&s->state, permits << SHIFT);
    pthread_mutex_init(&s->lock, NULL);
    s->waiters = (pn_sync_queue){ NULL, NULL };
    return 0;
}

void pn_semaphore_destroy(pn_semaphore *s)
{
    if (s)
        pthread_mutex_destroy(&s->lock);
}

int pn_semaphore_try_acquire(pn_semaphore *s, size_t n)
{
    if (!s || n == 0 || n > PN_SEMAPHORE_MAX_PERMITS)
        return -EINVAL;
    size_t cur = atomic_load_explicit(&s->state, memory_order_relaxed);
    for (;;) {
        if (cur & CLOSED)
            return -ESHUTDOWN;
        if ((cur & WAITERS) || (cur >> SHIFT) < n)
            return -EAGAIN;
        if (atomic_compare_exchange_weak_explicit(&s->state, &cur, cur - (n << SHIFT),
                                                  memory_order_acquire, memory_order_relaxed))
            return 0;
    }
}

int pn_semaphore_add_permits(pn_semaphore *s, size_t n)
{
    if (!s || n > PN_SEMAPHORE_MAX_PERMITS)
        return -EINVAL;
    if (n == 0)
        return 0;
    int r = fast_give(s, n);
    if (r != 1)
        return r;
    pn__wakelist wl = { 0 };
    pthread_mutex_lock(&s->lock);
    if (!s->waiters.head) {
        /* The queue emptied meanwhile: WAITERS is clear, the word may
         * hold permits again. */
        r = fast_give(s, n);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    settle_locked(s, n, &wl);   /* a queue: the word held 0, no overflow */
    pthread_mutex_unlock(&s->lock);
    PN_POINT("semaphore.granted", s);
    pn__wakelist_wake(&wl);
    return 0;
}

size_t pn_semaphore_available(const pn_semaphore *s)
{
    if (!s)
        return 0;
    return atomic_load_explicit(&((pn_semaphore *)s)->state, memory_order_relaxed) >> SHIFT;
}

bool pn_semaphore_is_closed(const pn_semaphore *s)
{
    return s && (atomic_load_explicit(&((pn_semaphore *)s)->state, memory_order_acquire) & CLOSED);
}

void pn_semaphore_close(pn_semaphore *s)
{
    if (!s)
        return;
    pn__wakelist wl = { 0 };
    size_t back = 0;
    pthread_mutex_lock(&s->lock);
    atomic_fetch_or_explicit(&s->state, CLOSED, memory_order_acq_rel);
    for (;;) {
        if (pn__wakelist_full(&wl)) {
            pthread_mutex_unlock(&s->lock);
            pn__wakelist_wake(&wl);
            pthread_mutex_lock(&s->lock);
        }
        pn_sync_waiter *w = s->waiters.head;
        if (!w)
            break;
        pn_semaphore_permit *p = permit_of(w);
        back += p->n - w->need;       /* what it was partly assigned */
        pn__waitq_remove(&s->waiters, w);
        pn__wakelist_push(&wl, &w->waker);
        atomic_store_explicit(&p->granted, G_CLOSED, memory_order_release);
    }
    settle_locked(s, back, &wl);      /* closed: into the word, WAITERS cleared */
    pthread_mutex_unlock(&s->lock);
    pn__wakelist_wake(&wl);
}

/* ---- the acquire future ---------------------------------------------------- */

static const pn_future_vtable acquire_vt = { pn__semaphore_permit_poll,
                                             pn__semaphore_permit_drop, "semaphore.acquire" };

pn_semaphore_permit pn__semaphore_permit(pn_semaphore *s, size_t n, const pn_future_vtable *vt)
{
    pn_semaphore_permit p = { .base = { vt }, .sem = s, .n = n, .st = ST_IDLE };
    if (!s || n == 0 || n > PN_SEMAPHORE_MAX_PERMITS) {
        p.res = -EINVAL;
        p.st = ST_DONE;
    }
    return p;
}

pn_semaphore_permit pn_semaphore_acquire(pn_semaphore *s, size_t n)
{
    return pn__semaphore_permit(s, n, &acquire_vt);
}

static pn_poll hold(pn_semaphore_permit *p)
{
    p->st = ST_HELD;
    p->permits = p->n;
    p->res = 0;
    return PN_READY;
}

static pn_poll fail(pn_semaphore_permit *p, int err)
{
    p->st = ST_DONE;
    p->permits = 0;
    p->res = err;
    return PN_READY;
}

pn_poll pn__semaphore_permit_poll(pn_future *f, pn_cx *cx)
{
    pn_semaphore_permit *p = (pn_semaphore_permit *)f;
    pn_semaphore *s = p->sem;
    if (p->st >= ST_HELD)
        return PN_READY;
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;

    if (p->st == ST_QUEUED) {
        unsigned g = atomic_load_explicit(&p->granted, memory_order_acquire);
        if (g == G_NONE) {
            pthread_mutex_lock(&s->lock);
            g = atomic_load_explicit(&p->granted, memory_order_acquire);
            if (g == G_NONE) {
                pn_waker_set(&p->w.waker, cx->waker);
                pthread_mutex_unlock(&s->lock);
                return PN_PENDING;
            }
            pthread_mutex_unlock(&s->lock);
        }
        return g == G_GRANTED ? hold(p) : fail(p, -ESHUTDOWN);
    }

    /* ST_IDLE: the first poll. */
    if (fast_take(s, p->n))
        return hold(p);
    pthread_mutex_lock(&s->lock);
    size_t cur = atomic_load_explicit(&s->state, memory_order_relaxed);
    for (;;) {
        if (cur & CLOSED) {
            pthread_mutex_unlock(&s->lock);
            return fail(p, -ESHUTDOWN);
        }
        size_t avail = cur >> SHIFT;
        if (!(cur & WAITERS) && avail >= p->n) {
            if (atomic_compare_exchange_weak_explicit(&s->state, &cur, cur - (p->n << SHIFT),
                                                      memory_order_acquire, memory_order_relaxed)) {
                pthread_mutex_unlock(&s->lock);
                return hold(p);
            }
            continue;
        }
        /* Take what is free (nothing, if someone waits) and queue for
         * the rest, setting WAITERS in the same step.  With WAITERS set
         * already the word cannot change while we hold the lock (it has
         * no free permit; WAITERS and CLOSED move only under the lock). */
        if (cur & WAITERS) {
            p->w.need = p->n;
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&s->state, &cur,
                                                  (cur - (avail << SHIFT)) | WAITERS,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            p->w.need = p->n - avail;
            break;
        }
    }
    atomic_store_explicit(&p->granted, G_NONE, memory_order_relaxed);
    pn_waker_set(&p->w.waker, cx->waker);
    pn__waitq_push(&s->waiters, &p->w);
    p->st = ST_QUEUED;
    pthread_mutex_unlock(&s->lock);
    return PN_PENDING;
}

/* Cancel a queued acquire: give back what it was assigned (all of it if it
 * was granted meanwhile), which may complete the next waiter. */
static void cancel(pn_semaphore_permit *p)
{
    pn_semaphore *s = p->sem;
    pn__wakelist wl = { 0 };
    pthread_mutex_lock(&s->lock);
    unsigned g = atomic_load_explicit(&p->granted, memory_order_relaxed);
    size_t back = 0;
    if (g == G_GRANTED) {
        back = p->n;
    } else if (g == G_NONE) {
        pn__waitq_remove(&s->waiters, &p->w);
        back = p->n - p->w.need;
    }
    pn_waker_drop(&p->w.waker);
    if (g == G_NONE || back)
        settle_locked(s, back, &wl);
    pthread_mutex_unlock(&s->lock);
    p->st = ST_DONE;
    p->permits = 0;
    PN_POINT("semaphore.granted", s);
    pn__wakelist_wake(&wl);
}

void pn__semaphore_permit_drop(pn_future *f)
{
    pn_semaphore_release((pn_semaphore_permit *)f);
}

void pn_semaphore_release(pn_semaphore_permit *p)
{
    if (!p)
        return;
    if (p->st == ST_QUEUED) {
        cancel(p);
    } else if (p->st == ST_HELD) {
        p->st = ST_DONE;
        p->permits = 0;
        give(p->sem, p->n);
    }
}

void pn_semaphore_forget(pn_semaphore_permit *p)
{
    if (!p)
        return;
    if (p->st == ST_QUEUED) {
        cancel(p);
    } else if (p->st == ST_HELD) {
        p->st = ST_DONE;
        p->permits = 0;
    }
}

int pn__semaphore_try_guard(pn_semaphore *s, size_t n, const pn_future_vtable *vt,
                            pn_semaphore_permit *g)
{
    if (!g)
        return -EINVAL;
    *g = pn__semaphore_permit(s, n, vt);
    if (g->st == ST_DONE)
        return g->res;
    int r = pn_semaphore_try_acquire(s, n);
    if (r < 0) {
        fail(g, r);
        return r;
    }
    hold(g);
    return 0;
}

int pn__semaphore_block(pn_semaphore_permit *g)
{
    if (g->st != ST_IDLE)
        return g->res;
    int r = pn__sync_block(&g->base);
    if (r < 0) {
        fail(g, r);
        return r;
    }
    return g->res;
}
