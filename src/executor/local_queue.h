/*
 * local_queue.h - a worker's bounded run queue: one producer, many stealers.
 *
 * A ring of PN__LQ_CAP task pointers with 32-bit wrapping indices.  The
 * owner pushes at `tail` and pops at the head; a thief takes half of what
 * is queued in one claim.  The head word packs two indices:
 *
 *     head = steal << 32 | real
 *
 * `real` is the next task to hand out; `steal` trails it while a thief is
 * copying the slots it claimed (steal != real means "a steal is in
 * progress": no second thief may start, and the owner must not reuse those
 * slots).  The owner writes slots, then publishes them with a release store
 * of `tail`; everyone claims slots with a CAS on `head`.
 *
 *   push        owner   slot store, tail store (release); full -> overflow
 *   pop         owner   CAS real+1 (and steal with it when no steal runs)
 *   steal_into  thief   CAS real+n (claim), copy, CAS steal=real (release)
 *
 * On overflow the owner moves half the queue and the new task to the
 * injection queue in one batch (never blocking on a thief: if one is
 * copying, the single task goes to the injection queue instead).
 */
#ifndef PN_EXECUTOR_LOCAL_QUEUE_H
#define PN_EXECUTOR_LOCAL_QUEUE_H

#include <stdatomic.h>
#include "task.h"

#define PN__LQ_CAP 256u
#define PN__LQ_MASK (PN__LQ_CAP - 1)

typedef struct pn__local_queue {
    _Atomic uint64_t head;
    _Atomic uint32_t tail;
    pn__task *buf[PN__LQ_CAP];
} pn__local_queue;

struct pn__inject;

void pn__lq_init(pn__local_queue *q);
/* Owner only.  Overflow goes to `inj` (which may refuse when closed: then
 * the queue's references are dropped: pn__task_drop_queued).  Returns true when half the queue
 * overflowed to `inj`. */
bool pn__lq_push(pn__local_queue *q, pn__task *t, struct pn__inject *inj);
pn__task *pn__lq_pop(pn__local_queue *q);
/* Thief: move about half of src into dst (owned by the caller) and return
 * one of the stolen tasks, or NULL; *moved: how many it took (the one
 * returned included). */
pn__task *pn__lq_steal_into(pn__local_queue *src, pn__local_queue *dst, uint32_t *moved);
/* Approximate length (any thread). */
uint32_t pn__lq_len(const pn__local_queue *q);

#endif
