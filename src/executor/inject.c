/*
 * inject.c - the injection queue (see inject.h).
 */
#include "inject.h"

void pn__inject_init(pn__inject *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = q->tail = NULL;
    q->closed = false;
    atomic_init(&q->len, 0);
}

void pn__inject_destroy(pn__inject *q)
{
    pthread_mutex_destroy(&q->lock);
}

bool pn__inject_push_batch(pn__inject *q, pn__task *first, pn__task *last, size_t n)
{
    last->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    atomic_fetch_add_explicit(&q->len, n, memory_order_release);
    pthread_mutex_unlock(&q->lock);
    return true;
}

bool pn__inject_push_notify(pn__inject *q, pn__task *t, void (*notify)(void *), void *arg)
{
    t->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
    atomic_fetch_add_explicit(&q->len, 1, memory_order_release);
    notify(arg);
    pthread_mutex_unlock(&q->lock);
    return true;
}

bool pn__inject_push(pn__inject *q, pn__task *t)
{
    return pn__inject_push_batch(q, t, t, 1);
}

pn__task *pn__inject_pop(pn__inject *q)
{
    if (atomic_load_explicit(&q->len, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&q->lock);
    pn__task *t = q->head;
    if (t) {
        q->head = t->next;
        if (!q->head)
            q->tail = NULL;
        t->next = NULL;
        atomic_fetch_sub_explicit(&q->len, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&q->lock);
    return t;
}

pn__task *pn__inject_pop_batch(pn__inject *q, size_t max, size_t *n)
{
    *n = 0;
    if (max == 0 || atomic_load_explicit(&q->len, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&q->lock);
    pn__task *first = q->head, *last = NULL;
    size_t k = 0;
    for (pn__task *t = first; t && k < max; t = t->next) {
        last = t;
        k++;
    }
    if (k) {
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        atomic_fetch_sub_explicit(&q->len, k, memory_order_relaxed);
    }
    pthread_mutex_unlock(&q->lock);
    *n = k;
    return k ? first : NULL;
}

pn__task *pn__inject_close(pn__inject *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pn__task *all = q->head;
    q->head = q->tail = NULL;
    atomic_store_explicit(&q->len, 0, memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
    return all;
}
