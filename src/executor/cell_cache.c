/*
 * cell_cache.c - a worker's cache of task cells (the protocol is drawn in
 * cell_cache.h).
 */
#include "cell_cache.h"
#include "core/sys.h"

#define CLOSED ((uintptr_t)1)

/* A free cell's first word links it to the next. */
static inline void *link_of(void *cell) { return *(void **)cell; }
static inline void set_link(void *cell, void *next) { *(void **)cell = next; }

void pn__cells_init(pn__cell_cache *c, size_t min, _Atomic size_t *tokens)
{
    for (unsigned i = 0; i < PN__CELL_CLASSES; i++) {
        c->local[i] = NULL;
        c->nlocal[i] = 0;
        atomic_init(&c->remote[i], 0);
    }
    c->reserve = 0;
    /* malloc's usable sizes (glibc: chunks of 16k bytes, 8 of them its
     * own): a class of 16k + 8 bytes wastes nothing of its chunk. */
    c->min = (min + 7) / PN__CELL_STEP * PN__CELL_STEP + 8;
    c->tokens = tokens;
}

unsigned pn__cells_class(const pn__cell_cache *c, size_t bytes)
{
    if (bytes <= c->min)
        return 0;
    size_t k = (bytes - c->min + PN__CELL_STEP - 1) / PN__CELL_STEP;
    return k < PN__CELL_CLASSES ? (unsigned)k : PN__CELL_NONE;
}

static size_t class_size(const pn__cell_cache *c, unsigned cls)
{
    return c->min + (size_t)cls * PN__CELL_STEP;
}

void *pn__cells_alloc(pn__cell_cache *c, unsigned cls)
{
    void *cell = c->local[cls];
    if (!cell && atomic_load_explicit(&c->remote[cls], memory_order_relaxed))
        /* Take what the other threads freed, tokens and all (uncounted:
         * the cap on the free list is approximate). */
        cell = (void *)atomic_exchange_explicit(&c->remote[cls], 0, memory_order_acquire);
    if (cell) {
        c->local[cls] = link_of(cell);
        if (c->nlocal[cls])
            c->nlocal[cls]--;
        return cell;
    }
    cell = pn__malloc(class_size(c, cls));
    if (!cell)
        return NULL;
    if (c->reserve == 0) {
        atomic_fetch_add_explicit(c->tokens, PN__CELLS_BATCH, memory_order_relaxed);
        c->reserve = PN__CELLS_BATCH;
    }
    c->reserve--;
    return cell;
}

void pn__cells_free_local(pn__cell_cache *c, void *cell, unsigned cls)
{
    if (c->nlocal[cls] < PN__CELLS_KEEP) {
        set_link(cell, c->local[cls]);  /* with its token */
        c->local[cls] = cell;
        c->nlocal[cls]++;
        return;
    }
    pn__free(cell);
    if (++c->reserve >= 4 * PN__CELLS_BATCH) {
        /* Hand back what we will not need soon (never the last
         * reference: the runtime holds its own until its cache closes). */
        atomic_fetch_sub_explicit(c->tokens, 2 * PN__CELLS_BATCH, memory_order_relaxed);
        c->reserve -= 2 * PN__CELLS_BATCH;
    }
}

bool pn__cells_free_remote(pn__cell_cache *c, void *cell, unsigned cls)
{
    uintptr_t head = atomic_load_explicit(&c->remote[cls], memory_order_relaxed);
    do {
        if (head == CLOSED)
            return false;
        set_link(cell, (void *)head);
    } while (!atomic_compare_exchange_weak_explicit(&c->remote[cls], &head, (uintptr_t)cell,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    return true;
}

size_t pn__cells_close(pn__cell_cache *c)
{
    size_t tokens = c->reserve;
    c->reserve = 0;
    for (unsigned i = 0; i < PN__CELL_CLASSES; i++) {
        for (void *p = c->local[i], *nx; p; p = nx) {
            nx = link_of(p);
            pn__free(p);
            tokens++;
        }
        c->local[i] = NULL;
        c->nlocal[i] = 0;
        uintptr_t head = atomic_exchange_explicit(&c->remote[i], CLOSED, memory_order_acquire);
        for (void *p = head == CLOSED ? NULL : (void *)head, *nx; p; p = nx) {
            nx = link_of(p);
            pn__free(p);
            tokens++;
        }
    }
    return tokens;
}
