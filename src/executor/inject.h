/*
 * inject.h - the injection queue: tasks scheduled from outside a worker.
 *
 * An intrusive FIFO (through pn__task.next) under a mutex, with an atomic
 * length so that "is there anything?" costs one load and no lock.  Closing
 * it (shutdown) makes every later push fail; the pusher then drops the
 * queue reference it meant to hand over.
 */
#ifndef PN_EXECUTOR_INJECT_H
#define PN_EXECUTOR_INJECT_H

#include <pthread.h>
#include <stdatomic.h>
#include "task.h"

typedef struct pn__inject {
    pthread_mutex_t lock;
    pn__task *head, *tail;   /* guarded by lock */
    bool closed;             /* guarded by lock */
    _Atomic size_t len;
} pn__inject;

void pn__inject_init(pn__inject *q);
void pn__inject_destroy(pn__inject *q);
/* Push one task, or a linked batch first..last of n tasks.  False if closed. */
bool pn__inject_push(pn__inject *q, pn__task *t);
/* Push, then call notify(arg) before the lock is released: a notify that
 * touches what shutdown tears down after closing the queue (the reactor's
 * eventfd) can then never run late. */
bool pn__inject_push_notify(pn__inject *q, pn__task *t, void (*notify)(void *), void *arg);
bool pn__inject_push_batch(pn__inject *q, pn__task *first, pn__task *last, size_t n);
/* Pop up to `max` tasks in one lock: a list through ->next, *n its length.
 * NULL (cheap) when empty. */
pn__task *pn__inject_pop_batch(pn__inject *q, size_t max, size_t *n);
/* Pop one task, or NULL (cheap when empty). */
pn__task *pn__inject_pop(pn__inject *q);
static inline size_t pn__inject_len(pn__inject *q)
{
    return atomic_load_explicit(&q->len, memory_order_acquire);
}
/* Close and take everything queued (a list through ->next). */
pn__task *pn__inject_close(pn__inject *q);

#endif
