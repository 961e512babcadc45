/*
 * stack.h - fiber stacks: mmap'd regions with a guard below, cached per
 * runtime, and the handler that names a fiber whose stack overflowed
 * (private).
 *
 *     map                                                  map + map_size
 *     | guard (PROT_NONE) | usable stack ... grows down <- | pn__stack |
 *
 * The guard is PN__STACK_GUARD bytes, or one page where pages are larger
 * (64 KiB on some aarch64 and ppc64 kernels): whole pages, so that the
 * usable stack starts on a page and mprotect takes none of it.
 *
 * The pn__stack header sits at the top of its own mapping; the fiber puts
 * its control block and its argument copy just below it, and its stack
 * below those.
 */
#ifndef PN_FIBER_STACK_H
#define PN_FIBER_STACK_H

#include <stddef.h>
#include <stdbool.h>

#include "core/sanitize.h"

#define PN__STACK_GUARD ((size_t)16 << 10)   /* at least */

typedef struct pn__stack_pool pn__stack_pool;

typedef struct pn__stack {
    struct pn__stack *next;   /* cache link */
    pn__stack_pool *pool;     /* whose cache it goes back to (holds a ref) */
    char *map;                /* the mapping, guard included */
    size_t map_size;
    size_t guard;             /* bytes of PROT_NONE at map */
    size_t usable;            /* bytes from map + guard to this header */
    const char *name;         /* of the fiber running on it, for the overflow message */
} pn__stack;

/* A new pool (one per runtime, made on first use). NULL on -ENOMEM. */
pn__stack_pool *pn__stack_pool_new(void);
/* The runtime lets go: cached stacks are unmapped, and stacks still in use
 * are unmapped when they come back.  Freed with its last stack. */
void pn__stack_pool_close(pn__stack_pool *p);

/* A stack whose mapping is its guard plus `usable` bytes (a value of
 * pn__stack_usable_for), header included: a cached one of that size, or a
 * new mapping.  NULL on -ENOMEM. */
pn__stack *pn__stack_get(pn__stack_pool *p, size_t usable);
/* Give a stack back (from any thread). */
void pn__stack_put(pn__stack *s);

/* The usable size pollen gives for a requested one (page-rounded, larger
 * under AddressSanitizer, whose frames are bigger). */
size_t pn__stack_usable_for(size_t requested);

/* Called once on each thread before it first runs a fiber: gives the
 * thread an alternate signal stack for the overflow handler. */
void pn__stack_thread_init(void);

/* The stack of the fiber running on this thread, NULL on the thread's own
 * (fiber.c; read by the overflow handler). */
pn__stack *pn__fiber_running_stack(void);

/* Tests: lay stacks out as if pages were `bytes` long (0: the system's). */
void pn__stack_set_page_size(size_t bytes);

/* Counters for tests: stacks mapped and not yet unmapped, and cached. */
size_t pn__stack_live(void);
size_t pn__stack_pool_cached(pn__stack_pool *p);

#endif
