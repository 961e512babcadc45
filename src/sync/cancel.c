/*
 * cancel.c - cancellation tokens (pollen/cancel.h): a tree of flags that
 * cancel downward, and the futures that wait for them.
 *
 * Owns: the tokens (refcounted: user references plus one per holding
 * cancelled() future) and one `tree` per root and its descendants (its
 * lock, the list of waiters being woken; refcounted by its tokens).
 *
 * Everything structural is guarded by the tree's lock: parent / child /
 * sibling links, each token's waiter queue, the `towake` queue.  The
 * `cancelled` flag is written under it and read without it (atomic), so
 * is_cancelled takes no lock.  Invariant: every descendant of a cancelled
 * token is cancelled (cancel walks the whole subtree; a child is born with
 * its parent's flag; a freed token's children are adopted by its parent,
 * which is cancelled only if the freed one was), so cancel skips the
 * subtree of a token it finds cancelled.
 *
 * Cancel marks the subtree under the lock and moves the waiters of every
 * token it marks to `towake` (a waiter's `state` says which queue it is
 * on: its token's or towake, so a drop unlinks it from the right one),
 * then takes them out in batches of PN__WAKELIST_CAP, waking each batch
 * after releasing the lock.
 */
#include <stdlib.h>
#include "pollen/cancel.h"
#include "sync/wait.h"
#include "core/sys.h"
#include "core/chaos.h"

typedef struct cancel_tree {
    _Atomic size_t refs;           /* one per token */
    pn__lock lock;
    pn__waitq towake;              /* waiters of cancelled tokens, not yet woken */
} cancel_tree;

struct pn_cancel_token {
    _Atomic size_t refs;
    cancel_tree *tree;
    atomic_bool cancelled;
    pn_cancel_token *parent;       /* the rest: under tree->lock */
    pn_cancel_token *first_child;
    pn_cancel_token *prev_sib, *next_sib;
    pn__waitq waiters;
};

enum { ON_TOKEN = 0, ON_TOWAKE = 1 };

static void tree_unref(cancel_tree *tr)
{
    if (atomic_fetch_sub_explicit(&tr->refs, 1, memory_order_acq_rel) == 1) {
        pn__lock_destroy(&tr->lock);
        pn__free(tr);
    }
}

/* ---- links (under the tree's lock) --------------------------------------- */

static void link_child(pn_cancel_token *p, pn_cancel_token *c)
{
    c->parent = p;
    c->prev_sib = NULL;
    c->next_sib = p->first_child;
    if (p->first_child)
        p->first_child->prev_sib = c;
    p->first_child = c;
}

static void unlink_child(pn_cancel_token *c)
{
    pn_cancel_token *p = c->parent;
    if (!p)
        return;
    if (c->prev_sib)
        c->prev_sib->next_sib = c->next_sib;
    else
        p->first_child = c->next_sib;
    if (c->next_sib)
        c->next_sib->prev_sib = c->prev_sib;
    c->parent = c->prev_sib = c->next_sib = NULL;
}

/* ---- creation and references ---------------------------------------------- */

static pn_cancel_token *token_alloc(void)
{
    pn_cancel_token *t = pn__malloc(sizeof(*t));
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&t->refs, 1);
    atomic_init(&t->cancelled, false);
    t->tree = NULL;
    t->parent = t->first_child = t->prev_sib = t->next_sib = NULL;
    t->waiters = (pn__waitq){ NULL, NULL };
    return t;
}

pn_cancel_token *pn_cancel_token_new(void)
{
    pn_cancel_token *t = token_alloc();
    if (!t)
        return NULL;
    cancel_tree *tr = pn__malloc(sizeof(*tr));
    if (!tr) {
        pn__free(t);
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&tr->refs, 1);
    pn__lock_init(&tr->lock);
    tr->towake = (pn__waitq){ NULL, NULL };
    t->tree = tr;
    return t;
}

pn_cancel_token *pn_cancel_token_child(pn_cancel_token *parent)
{
    if (!parent) {
        errno = EINVAL;
        return NULL;
    }
    pn_cancel_token *c = token_alloc();
    if (!c)
        return NULL;
    cancel_tree *tr = parent->tree;
    atomic_fetch_add_explicit(&tr->refs, 1, memory_order_relaxed);
    c->tree = tr;
    pn__lock_acquire(&tr->lock);
    atomic_store_explicit(&c->cancelled,
                          atomic_load_explicit(&parent->cancelled, memory_order_relaxed),
                          memory_order_release);
    link_child(parent, c);
    pn__lock_release(&tr->lock);
    return c;
}

pn_cancel_token *pn_cancel_token_clone(pn_cancel_token *t)
{
    if (t)
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

/* The last reference went: leave the tree, give the children to the
 * parent.  No waiter is queued here: each pending one holds a reference. */
static void token_destroy(pn_cancel_token *t)
{
    cancel_tree *tr = t->tree;
    PN_POINT("cancel_token.free", t);
    pn__lock_acquire(&tr->lock);
    pn_cancel_token *p = t->parent;
    unlink_child(t);
    pn_cancel_token *c;
    while ((c = t->first_child)) {
        unlink_child(c);
        if (p)
            link_child(p, c);
    }
    pn__lock_release(&tr->lock);
    pn__free(t);
    tree_unref(tr);
}

void pn_cancel_token_free(pn_cancel_token *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        token_destroy(t);
}

bool pn_cancel_token_is_cancelled(const pn_cancel_token *t)
{
    return t && atomic_load_explicit(&((pn_cancel_token *)t)->cancelled, memory_order_acquire);
}

/* ---- cancel ------------------------------------------------------------------ */

/* Mark one token (under the lock) and move its waiters to towake. */
static void mark(cancel_tree *tr, pn_cancel_token *t)
{
    atomic_store_explicit(&t->cancelled, true, memory_order_release);
    pn_sync_waiter *w;
    while ((w = pn__waitq_pop(&t->waiters))) {
        w->state = ON_TOWAKE;
        pn__waitq_push(&tr->towake, w);
    }
}

void pn_cancel_token_cancel(pn_cancel_token *t)
{
    if (!t || pn_cancel_token_is_cancelled(t))
        return;
    cancel_tree *tr = t->tree;
    pn__lock_acquire(&tr->lock);
    if (!atomic_load_explicit(&t->cancelled, memory_order_relaxed)) {
        /* Depth first over t's subtree; a cancelled token's subtree is
         * cancelled already, so it is skipped. */
        pn_cancel_token *n = t;
        mark(tr, n);
        for (;;) {
            pn_cancel_token *next = NULL;
            for (pn_cancel_token *c = n->first_child; c; c = c->next_sib)
                if (!atomic_load_explicit(&c->cancelled, memory_order_relaxed)) {
                    next = c;
                    break;
                }
            if (next) {
                mark(tr, next);
                n = next;
                continue;
            }
            /* n's subtree is done: go to the next uncancelled sibling of
             * n or of an ancestor, stopping at t. */
            while (n != t) {
                pn_cancel_token *s = n->next_sib;
                while (s && atomic_load_explicit(&s->cancelled, memory_order_relaxed))
                    s = s->next_sib;
                if (s) {
                    mark(tr, s);
                    n = s;
                    break;
                }
                n = n->parent;
            }
            if (n == t)
                break;
        }
    }
    /* Wake in batches, never under the lock. */
    pn__wakelist wl;
    wl.n = 0;
    for (;;) {
        pn_sync_waiter *w;
        while (!pn__wakelist_full(&wl) && (w = pn__waitq_pop(&tr->towake)))
            pn__wakelist_push(&wl, &w->waker);
        bool more = !pn__waitq_empty(&tr->towake);
        pn__lock_release(&tr->lock);
        PN_POINT("cancel_token.wake", t);
        pn__wakelist_wake(&wl);
        if (!more)
            break;
        pn__lock_acquire(&tr->lock);
    }
}

/* ---- waiting -------------------------------------------------------------------- */

/* Unqueue w from whichever queue holds it and take its waker (under the
 * lock). */
static pn_waker unqueue(pn_cancel_token *t, pn_sync_waiter *w)
{
    if (w->queued)
        pn__waitq_remove(w->state == ON_TOWAKE ? &t->tree->towake : &t->waiters, w);
    pn_waker k = w->waker;
    w->waker = PN_WAKER_NONE;
    return k;
}

static pn_poll cancel_wait_poll(pn_future *f, pn_cx *cx)
{
    pn_cancel_wait_future *c = (pn_cancel_wait_future *)f;
    pn_cancel_token *t = c->token;
    if (!t) {
        c->res = -EINVAL;
        return PN_READY;
    }
    if (pn__sync_budget(cx) == PN_PENDING)
        return PN_PENDING;
    if (!c->holds) {
        if (pn_cancel_token_is_cancelled(t)) {
            c->res = 0;
            return PN_READY;
        }
        pn_cancel_token_clone(t);
        c->holds = true;
    }
    cancel_tree *tr = t->tree;
    pn__lock_acquire(&tr->lock);
    if (atomic_load_explicit(&t->cancelled, memory_order_relaxed)) {
        pn_waker k = unqueue(t, &c->w);
        pn__lock_release(&tr->lock);
        pn_waker_drop(&k);
        c->holds = false;
        pn_cancel_token_free(t);
        c->res = 0;
        return PN_READY;
    }
    pn_waker_set(&c->w.waker, cx->waker);
    if (!c->w.queued) {
        c->w.state = ON_TOKEN;
        pn__waitq_push(&t->waiters, &c->w);
    }
    pn__lock_release(&tr->lock);
    return PN_PENDING;
}

static void cancel_wait_drop(pn_future *f)
{
    pn_cancel_wait_future *c = (pn_cancel_wait_future *)f;
    if (!c->holds)
        return;
    pn_cancel_token *t = c->token;
    pn__lock_acquire(&t->tree->lock);
    pn_waker k = unqueue(t, &c->w);
    pn__lock_release(&t->tree->lock);
    pn_waker_drop(&k);
    c->holds = false;
    pn_cancel_token_free(t);
}

static const pn_future_vtable cancel_wait_vt = { cancel_wait_poll, cancel_wait_drop,
                                                 "pn_cancel_token_cancelled" };

pn_cancel_wait_future pn_cancel_token_cancelled(pn_cancel_token *t)
{
    return (pn_cancel_wait_future){ .base = { &cancel_wait_vt }, .token = t };
}

pn_cancel_wait_future pn_cancel_token_cancelled_owned(pn_cancel_token *t)
{
    return (pn_cancel_wait_future){ .base = { &cancel_wait_vt }, .token = t, .holds = t != NULL };
}

int pn_cancel_token_blocking_wait(pn_cancel_token *t)
{
    if (!t)
        return -EINVAL;
    pn_cancel_wait_future c = pn_cancel_token_cancelled(t);
    int err = pn__sync_block(&c.base);
    if (err)
        pn_future_drop(&c.base);
    return err;
}
