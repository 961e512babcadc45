/*
 * task_list.h - the two intrusive task lists every scheduler uses (private).
 *
 *   pn__task_fifo   a singly linked FIFO through pn__task.next (run queues
 *                   that one thread owns, batches)
 *   owned list      a doubly linked list through owned_prev/owned_next of
 *                   every live task, for shutdown; the caller guards it
 */
#ifndef PN_EXECUTOR_TASK_LIST_H
#define PN_EXECUTOR_TASK_LIST_H

#include "task.h"

typedef struct pn__task_fifo {
    pn__task *head, *tail;
} pn__task_fifo;

static inline void pn__fifo_push(pn__task_fifo *q, pn__task *t)
{
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

static inline pn__task *pn__fifo_pop(pn__task_fifo *q)
{
    pn__task *t = q->head;
    if (t) {
        q->head = t->next;
        if (!q->head)
            q->tail = NULL;
        t->next = NULL;
    }
    return t;
}

static inline void pn__owned_link(pn__task **head, pn__task *t)
{
    t->owned = true;
    t->owned_prev = NULL;
    t->owned_next = *head;
    if (*head)
        (*head)->owned_prev = t;
    *head = t;
}

static inline void pn__owned_unlink(pn__task **head, pn__task *t)
{
    if (!t->owned)
        return;
    if (t->owned_prev)
        t->owned_prev->owned_next = t->owned_next;
    else
        *head = t->owned_next;
    if (t->owned_next)
        t->owned_next->owned_prev = t->owned_prev;
    t->owned = false;
    t->owned_prev = t->owned_next = NULL;
}

#endif
