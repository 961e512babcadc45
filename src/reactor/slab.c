/*
 * slab.c - storage of the reactor's registration records.
 *
 * Owns the chunks of pn__registration records and the array of chunk
 * pointers (see slab.h for the invariants: records never move, chunks and
 * outgrown arrays are freed only by pn__slab_destroy, a live record has
 * fd >= 0, release bumps the generation).  All memory comes from pn__sys
 * so tests can inject ENOMEM; a failed alloc leaves the slab unchanged.
 */
#include <string.h>
#include "core/sys.h"
#include "reactor/slab.h"

void pn__slab_init(pn__slab *s)
{
    memset(s, 0, sizeof *s);
    atomic_init(&s->chunks, NULL);
    atomic_init(&s->nchunks, 0);
}

static void init_record(pn__registration *rec, uint32_t index)
{
    atomic_init(&rec->readiness, 0);
    atomic_init(&rec->unwatched, false);
    rec->fd = -1;
    rec->index = index;
    atomic_flag_clear(&rec->lock);
    rec->reader = PN_WAKER_NONE;
    rec->writer = PN_WAKER_NONE;
    rec->owner = NULL;
    rec->next_free = NULL;
}

/* Add one chunk and push its records on the free list. */
static int grow(pn__slab *s)
{
    uint32_t n = atomic_load(&s->nchunks);
    if (n >= PN__SLAB_MAX_CHUNKS)
        return -ENOMEM;
    if (n == s->cap) {
        if (s->nretired == PN__SLAB_MAX_RETIRED)
            return -ENOMEM;
        uint32_t ncap = s->cap ? s->cap * 2 : 4;
        if (ncap > PN__SLAB_MAX_CHUNKS)
            ncap = PN__SLAB_MAX_CHUNKS;
        pn__registration **arr = pn__malloc(sizeof *arr * ncap);
        if (!arr)
            return -ENOMEM;
        pn__registration **old = atomic_load(&s->chunks);
        if (n)
            memcpy(arr, old, sizeof *arr * n);
        /* A concurrent pn__slab_get may still read `old`: keep it. */
        if (old)
            s->retired[s->nretired++] = old;
        atomic_store(&s->chunks, arr);
        s->cap = ncap;
    }
    pn__registration *chunk = pn__malloc(sizeof *chunk * PN__SLAB_CHUNK);
    if (!chunk)
        return -ENOMEM;  /* the grown array stays; harmless */
    /* Push in reverse so the lowest index is handed out first. */
    for (uint32_t i = PN__SLAB_CHUNK; i-- > 0;) {
        init_record(&chunk[i], n * PN__SLAB_CHUNK + i);
        chunk[i].next_free = s->free_list;
        s->free_list = &chunk[i];
    }
    atomic_load(&s->chunks)[n] = chunk;
    atomic_store(&s->nchunks, n + 1);
    return 0;
}

int pn__slab_alloc(pn__slab *s, pn__registration **out)
{
    if (!s->free_list) {
        int err = grow(s);
        if (err)
            return err;
    }
    pn__registration *rec = s->free_list;
    s->free_list = rec->next_free;
    rec->next_free = NULL;
    /* Clear bits and tick, keep the generation: a dispatcher still holding
     * an event of an older one is refused by its CAS (slab.h). */
    atomic_fetch_and(&rec->readiness, ~(uint64_t)0xffffffffu);
    s->live++;
    *out = rec;
    return 0;
}

void pn__slab_release(pn__slab *s, pn__registration *reg)
{
    atomic_fetch_add(&reg->readiness, (uint64_t)1 << PN__GEN_SHIFT);
    reg->fd = -1;
    reg->owner = NULL;
    reg->next_free = s->free_list;
    s->free_list = reg;
    s->live--;
}

pn__registration *pn__slab_get(pn__slab *s, uint32_t index)
{
    uint32_t c = index / PN__SLAB_CHUNK;
    if (c >= atomic_load(&s->nchunks))
        return NULL;
    pn__registration **arr = atomic_load(&s->chunks);
    return &arr[c][index % PN__SLAB_CHUNK];
}

void pn__slab_each_live(pn__slab *s, void (*fn)(pn__registration *, void *), void *arg)
{
    uint32_t n = atomic_load(&s->nchunks);
    pn__registration **arr = atomic_load(&s->chunks);
    for (uint32_t c = 0; c < n; c++)
        for (uint32_t i = 0; i < PN__SLAB_CHUNK; i++)
            if (arr[c][i].fd >= 0)
                fn(&arr[c][i], arg);
}

void pn__slab_destroy(pn__slab *s)
{
    uint32_t n = atomic_load(&s->nchunks);
    pn__registration **arr = atomic_load(&s->chunks);
    for (uint32_t c = 0; c < n; c++)
        pn__free(arr[c]);
    pn__free(arr);
    for (unsigned i = 0; i < s->nretired; i++)
        pn__free(s->retired[i]);
    pn__slab_init(s);
}
