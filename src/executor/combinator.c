/*
 * combinator.c - join and select over borrowed child futures.
 *
 * A completed child is forgotten (its pointer set to NULL) so it is never
 * polled or dropped again; a dropped combinator drops exactly the children
 * that have not completed.  Children share the parent's context, so they
 * wake the parent's task; each poll of the parent polls every unfinished
 * child (like futures-rs join for small N).
 */
#include "pollen/combinator.h"

/* A select's rotation start once it completed: a later poll (a bug, but a
 * harmless one) gives PN_READY again and keeps .index. */
#define SELECT_DONE SIZE_MAX

/* ---- join ------------------------------------------------------------------ */

/* .left is recounted on every poll rather than decremented: the array is
 * the caller's, and a child stored in it after the constructor counted
 * must not make the count wrap (a join that never completes). */
static pn_poll join_all_poll(pn_future *f, pn_cx *cx)
{
    pn_join_all_future *j = (pn_join_all_future *)f;
    size_t left = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (!j->futs[i])
            continue;
        if (pn_future_poll(j->futs[i], cx) == PN_READY)
            j->futs[i] = NULL;
        else
            left++;
    }
    j->left = left;
    return left == 0 ? PN_READY : PN_PENDING;
}

static void join_all_drop(pn_future *f)
{
    pn_join_all_future *j = (pn_join_all_future *)f;
    for (size_t i = 0; i < j->n; i++) {
        if (j->futs[i]) {
            pn_future_drop(j->futs[i]);
            j->futs[i] = NULL;
        }
    }
    j->left = 0;
}

static const pn_future_vtable join_all_vt = { join_all_poll, join_all_drop, "pn_join_all_future" };

pn_join_all_future pn_join_all(pn_future **futs, size_t n)
{
    if (!futs)
        n = 0;                      /* no array: no children */
    size_t left = 0;
    for (size_t i = 0; i < n; i++)
        left += futs[i] != NULL;
    return (pn_join_all_future){ .base = { &join_all_vt }, .futs = futs, .n = n, .left = left };
}

static pn_poll join2_poll(pn_future *f, pn_cx *cx)
{
    pn_join2_future *j = (pn_join2_future *)f;
    if (j->a && pn_future_poll(j->a, cx) == PN_READY)
        j->a = NULL;
    if (j->b && pn_future_poll(j->b, cx) == PN_READY)
        j->b = NULL;
    return (!j->a && !j->b) ? PN_READY : PN_PENDING;
}

static void join2_drop(pn_future *f)
{
    pn_join2_future *j = (pn_join2_future *)f;
    if (j->a)
        pn_future_drop(j->a);
    if (j->b)
        pn_future_drop(j->b);
    j->a = j->b = NULL;
}

static const pn_future_vtable join2_vt = { join2_poll, join2_drop, "pn_join2_future" };

pn_join2_future pn_join2(pn_future *a, pn_future *b)
{
    return (pn_join2_future){ .base = { &join2_vt }, .a = a, .b = b };
}

/* ---- select ----------------------------------------------------------------- */

static void select_drop_array(pn_future **futs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (futs[i]) {
            pn_future_drop(futs[i]);
            futs[i] = NULL;
        }
    }
}

/* Poll futs[] from a rotating start; on a winner drop every other live child
 * and forget all of them.  Returns the winner's index through *index, or
 * PN_SELECT_NONE when there is no child at all: nothing could ever wake a
 * PN_PENDING, so the select completes instead of hanging. */
static pn_poll select_poll_array(pn_future **futs, size_t n, size_t *start,
                                 size_t *index, pn_cx *cx)
{
    if (*start == SELECT_DONE)
        return PN_READY;
    size_t s = n ? *start % n : 0;
    bool live = false;
    for (size_t k = 0; k < n; k++) {
        size_t i = (s + k) % n;
        if (!futs[i])
            continue;
        live = true;
        if (pn_future_poll(futs[i], cx) == PN_PENDING)
            continue;
        futs[i] = NULL;
        select_drop_array(futs, n);
        *index = i;
        *start = SELECT_DONE;
        return PN_READY;
    }
    if (!live) {
        *index = PN_SELECT_NONE;
        *start = SELECT_DONE;
        return PN_READY;
    }
    *start = s + 1;
    return PN_PENDING;
}

static pn_poll select_poll(pn_future *f, pn_cx *cx)
{
    pn_select_future *s = (pn_select_future *)f;
    return select_poll_array(s->futs, s->n, &s->start, &s->index, cx);
}

static void select_drop(pn_future *f)
{
    pn_select_future *s = (pn_select_future *)f;
    select_drop_array(s->futs, s->n);
}

static const pn_future_vtable select_vt = { select_poll, select_drop, "pn_select_future" };

pn_select_future pn_select(pn_future **futs, size_t n)
{
    if (!futs)
        n = 0;                      /* no array: no children */
    return (pn_select_future){ .base = { &select_vt }, .futs = futs, .n = n, .start = 0, .index = 0 };
}

static pn_poll select2_poll(pn_future *f, pn_cx *cx)
{
    pn_select2_future *s = (pn_select2_future *)f;
    return select_poll_array(s->futs, 2, &s->start, &s->index, cx);
}

static void select2_drop(pn_future *f)
{
    pn_select2_future *s = (pn_select2_future *)f;
    select_drop_array(s->futs, 2);
}

static const pn_future_vtable select2_vt = { select2_poll, select2_drop, "pn_select2_future" };

pn_select2_future pn_select2(pn_future *a, pn_future *b)
{
    return (pn_select2_future){ .base = { &select2_vt }, .futs = { a, b }, .start = 0, .index = 0 };
}
