/*
 * pollen/combinator.h - join and select: running several futures at once.
 *
 * The children are borrowed by pointer: they live beside the combinator in
 * the caller's struct (or stack frame under pn_block_on) and must not move
 * while it runs.  Each child is polled when the combinator is polled and has
 * not finished yet; its output stays in its own fields.
 */
#ifndef POLLEN_COMBINATOR_H
#define POLLEN_COMBINATOR_H

#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * pn_join_all_future: ready when every child is ready.  `futs` is an array of `n`
 * pointers owned by the caller; the combinator sets futs[i] to NULL when
 * child i completes, so after PN_READY every entry is NULL.  Dropping it
 * drops the children that have not completed.  A NULL entry is a child
 * that has already completed; with no child left (n == 0, futs NULL, or
 * every entry NULL) the join is ready at its first poll, as an empty
 * join_all is in Rust.  .left is recounted at each poll.
 */
typedef struct pn_join_all_future {
    pn_future base;
    pn_future **futs;  /* private */
    size_t n;          /* private */
    size_t left;       /* read-only: children still running */
} pn_join_all_future;

PN_EXTERN PN_MUST_USE pn_join_all_future pn_join_all(pn_future **futs, size_t n);

/* pn_join2_future: ready when both a and b are ready.  A NULL child counts as
 * completed: pn_join2(NULL, NULL) is ready at its first poll. */
typedef struct pn_join2_future {
    pn_future base;
    pn_future *a, *b;  /* private: NULL once that child completed */
} pn_join2_future;

PN_EXTERN PN_MUST_USE pn_join2_future pn_join2(pn_future *a, pn_future *b);

/*
 * pn_select_future: ready when the first child is ready.  .index is the index of
 * the winner; every other child is dropped before PN_READY is returned.
 * Dropping the select drops all its children.  Each poll starts with the
 * child after the one it started with last time, so an always-ready child
 * cannot starve the others; within a poll the first ready child wins.
 *
 * No children: a NULL entry is no child (it is skipped).  A select with no
 * child at its poll (n == 0, futs NULL, or every entry NULL) cannot have a
 * winner, and would otherwise wait for ever with nothing to wake it: it is
 * ready at once with .index == PN_SELECT_NONE, the `else` branch of
 * tokio::select! when every branch is disabled.  A select built from a
 * computed list must check for it before using .index.
 *
 * Polling a select again after PN_READY gives PN_READY and leaves .index
 * as it was.
 */
#define PN_SELECT_NONE SIZE_MAX

typedef struct pn_select_future {
    pn_future base;
    pn_future **futs;  /* private */
    size_t n;          /* private */
    size_t start;      /* private: fairness rotation */
    size_t index;      /* output */
} pn_select_future;

PN_EXTERN PN_MUST_USE pn_select_future pn_select(pn_future **futs, size_t n);

/* pn_select2_future: .index is 0 if a won, 1 if b won; the loser is dropped.  A
 * NULL child is no child, as in pn_select_future: pn_select2(NULL, NULL) is
 * ready at once with .index == PN_SELECT_NONE. */
typedef struct pn_select2_future {
    pn_future base;
    pn_future *futs[2];  /* private */
    size_t start;        /* private */
    size_t index;        /* output */
} pn_select2_future;

PN_EXTERN PN_MUST_USE pn_select2_future pn_select2(pn_future *a, pn_future *b);

#ifdef __cplusplus
}
#endif
#endif
