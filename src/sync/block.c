/*
 * block.c - pn__sync_block: drive one pollen/sync.h future on a plain
 * thread, for the blocking_* variants (blocking_send, blocking_recv, ...).
 *
 * Owns: the parker, a refcounted heap object that is the future's waker.
 * It is on the heap, not the caller's stack, because a primitive may have
 * taken the waker out of its queue and wake it just after the future saw
 * PN_READY and the blocking call returned: the last reference frees it.
 */
#include <stdlib.h>
#include "sync/wait.h"
#include "executor/rt.h"

typedef struct parker {
    _Atomic unsigned refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool notified;            /* guarded by lock */
} parker;

static void parker_unref(parker *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
}

static const pn_waker_vtable parker_vt;

static pn_waker parker_clone(const void *d)
{
    parker *p = (parker *)d;
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return (pn_waker){ p, &parker_vt };
}

static void parker_wake_by_ref(const void *d)
{
    parker *p = (parker *)d;
    pthread_mutex_lock(&p->lock);
    p->notified = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void parker_drop(const void *d) { parker_unref((parker *)d); }

static void parker_wake(const void *d)
{
    parker_wake_by_ref(d);
    parker_drop(d);
}

static const pn_waker_vtable parker_vt = { parker_clone, parker_wake, parker_wake_by_ref,
                                           parker_drop };

int pn__sync_block(pn_future *f)
{
    if (pn__tls_polling)
        return -EDEADLK;
    parker *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->notified = false;
    pn_waker w = { p, &parker_vt };
    for (;;) {
        pn_cx cx = { .waker = &w, .budget = UINT32_MAX };
        if (pn_future_poll(f, &cx) == PN_READY)
            break;
        pthread_mutex_lock(&p->lock);
        while (!p->notified)
            pthread_cond_wait(&p->cond, &p->lock);
        p->notified = false;
        pthread_mutex_unlock(&p->lock);
    }
    parker_unref(p);
    return 0;
}
