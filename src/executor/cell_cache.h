/*
 * cell_cache.h - a worker's cache of task cells: free lists by size class,
 * and a stack other threads free into (private).
 *
 * With two workers, a task is often spawned on one and completes on the
 * other: malloc then frees on one thread what it allocated on another,
 * which in glibc costs a trip through the allocating thread's arena (its
 * lock or its fastbins' compare-and-swap) on nearly every spawn.  A worker
 * instead keeps the cells it allocated:
 *
 *   alloc        owner    pop its free list of the class; if empty, take
 *                         the whole remote stack (one exchange); if still
 *                         empty, malloc
 *   free_local   owner    push on its free list (past PN__CELLS_KEEP of a
 *                         class: back to malloc)
 *   free_remote  any      push on the owner's remote stack (one CAS); the
 *                         owner takes the stack whole, so there is no ABA
 *   close        anyone   once the owner is gone: free everything; the
 *                         stack is left closed, so a later free_remote
 *                         fails and the caller frees the cell itself
 *
 * Tokens.  A cell carries one token, live or free (the multi-thread
 * runtime uses them for the reference each task holds on its runtime): a
 * free cell keeps its token in the free list or the remote stack, so that
 * taking a whole stack is one exchange, without a walk to count it.  A
 * cell that comes from malloc takes a token from the owner's reserve, which
 * takes PN__CELLS_BATCH at a time from `tokens` (a shared atomic count), and
 * a cell given back to malloc puts its token in the reserve: the owner
 * touches the shared word once per batch instead of once per task.  close
 * returns every token the cache holds (the reserve's and the free
 * cells'); the caller gives them back to `tokens`.
 *
 * Cells are malloc'd at the size of their class: 16-byte steps of malloc's
 * usable sizes (glibc's chunks are multiples of 16 bytes, 8 of them its
 * own: 56, 72, 88...), from the smallest that holds `min`; so a cached cell
 * takes the chunk a plain malloc of the task would have taken.
 */
#ifndef PN_EXECUTOR_CELL_CACHE_H
#define PN_EXECUTOR_CELL_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PN__CELL_STEP 16u
#define PN__CELL_CLASSES 32u             /* cells of up to MIN + 31 steps */
#define PN__CELL_NONE 0xffu              /* too large: plain malloc */
#define PN__CELLS_KEEP 256u              /* cells kept per class */
#define PN__CELLS_BATCH 256u             /* tokens taken at once */

typedef struct pn__cell_cache {
    void *local[PN__CELL_CLASSES];       /* owner only: free lists */
    uint16_t nlocal[PN__CELL_CLASSES];   /* about: a taken stack is not counted */
    size_t reserve;                      /* owner only: tokens in hand */
    size_t min;                          /* size of class 0 */
    _Atomic size_t *tokens;
    char pad[64];                        /* other threads' frees apart */
    _Atomic(uintptr_t) remote[PN__CELL_CLASSES];
} pn__cell_cache;

/* `min`: the smallest cell (class 0 holds it, rounded up to a usable size). */
void pn__cells_init(pn__cell_cache *c, size_t min, _Atomic size_t *tokens);
/* The class of a cell of `bytes` (PN__CELL_NONE: too large to cache). */
unsigned pn__cells_class(const pn__cell_cache *c, size_t bytes);
/* Owner: a cell of class `cls` with its token; NULL on -ENOMEM. */
void *pn__cells_alloc(pn__cell_cache *c, unsigned cls);
/* Owner: give back a cell (and its token). */
void pn__cells_free_local(pn__cell_cache *c, void *cell, unsigned cls);
/* Any thread: give a cell (and its token) back to its owner.  False once
 * the cache is closed: the cell and its token are still the caller's. */
bool pn__cells_free_remote(pn__cell_cache *c, void *cell, unsigned cls);
/* The owner is gone for good: free every cell, close the remote stacks,
 * and return the tokens held (to be given back to `tokens`). */
size_t pn__cells_close(pn__cell_cache *c);

#endif
