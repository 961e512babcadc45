/*
 * local_queue.c - a worker's bounded SPMC run queue with steal-half (the
 * protocol is drawn in local_queue.h).
 */
#include "local_queue.h"
#include "inject.h"

static inline uint64_t pack(uint32_t steal, uint32_t real)
{
    return (uint64_t)steal << 32 | real;
}

static inline uint32_t steal_of(uint64_t h) { return (uint32_t)(h >> 32); }
static inline uint32_t real_of(uint64_t h) { return (uint32_t)h; }

void pn__lq_init(pn__local_queue *q)
{
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
}

uint32_t pn__lq_len(const pn__local_queue *q)
{
    uint64_t h = atomic_load_explicit((_Atomic uint64_t *)&q->head, memory_order_acquire);
    uint32_t t = atomic_load_explicit((_Atomic uint32_t *)&q->tail, memory_order_acquire);
    return t - real_of(h);
}

/* Move half the queue plus `t` to the injection queue.  False when a thief
 * got in first (the caller retries). */
static bool push_overflow(pn__local_queue *q, pn__task *t, uint32_t real,
                          uint32_t tail, pn__inject *inj)
{
    const uint32_t n = PN__LQ_CAP / 2;
    (void)tail;
    uint64_t expect = pack(real, real);
    if (!atomic_compare_exchange_strong_explicit(&q->head, &expect,
                                                 pack(real + n, real + n),
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
        return false;
    /* The n claimed slots are ours: link them with t into one batch. */
    pn__task *first = q->buf[real & PN__LQ_MASK], *last = first;
    for (uint32_t i = 1; i < n; i++) {
        pn__task *next = q->buf[(real + i) & PN__LQ_MASK];
        last->next = next;
        last = next;
    }
    last->next = t;
    if (!pn__inject_push_batch(inj, first, t, n + 1)) {
        /* Closed (shutdown): drop the queue references. */
        for (pn__task *c = first, *nx; c; c = nx) {
            nx = c->next;
            pn__task_drop_queued(c);
        }
    }
    return true;
}

bool pn__lq_push(pn__local_queue *q, pn__task *t, pn__inject *inj)
{
    for (;;) {
        uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t steal = steal_of(h), real = real_of(h);
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (tail - steal < PN__LQ_CAP) {
            q->buf[tail & PN__LQ_MASK] = t;
            atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
            return false;
        }
        if (steal != real) {
            /* A thief is copying: it will free slots soon; don't wait. */
            if (!pn__inject_push(inj, t))
                pn__task_drop_queued(t);
            return false;
        }
        if (push_overflow(q, t, real, tail, inj))
            return true;
    }
}

pn__task *pn__lq_pop(pn__local_queue *q)
{
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        uint32_t steal = steal_of(h), real = real_of(h);
        uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (real == tail)
            return NULL;
        uint64_t next = steal == real ? pack(real + 1, real + 1) : pack(steal, real + 1);
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, next,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            return q->buf[real & PN__LQ_MASK];
    }
}

pn__task *pn__lq_steal_into(pn__local_queue *src, pn__local_queue *dst, uint32_t *moved)
{
    *moved = 0;
    /* Room in dst: we only steal into an empty-ish queue (the caller's own,
     * which it found empty), and at most half of CAP. */
    uint32_t dst_tail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
    uint64_t dh = atomic_load_explicit(&dst->head, memory_order_acquire);
    if (dst_tail - steal_of(dh) > PN__LQ_CAP / 2)
        return NULL;

    /* Claim: advance real by n, leave steal behind until the copy is done. */
    uint64_t h = atomic_load_explicit(&src->head, memory_order_acquire);
    uint32_t steal, n;
    for (;;) {
        steal = steal_of(h);
        uint32_t real = real_of(h);
        if (steal != real)
            return NULL;                    /* another thief is at work */
        uint32_t tail = atomic_load_explicit(&src->tail, memory_order_acquire);
        n = tail - real;
        n -= n / 2;
        if (n == 0)
            return NULL;
        if (n > PN__LQ_CAP / 2)
            n = PN__LQ_CAP / 2;
        if (atomic_compare_exchange_weak_explicit(&src->head, &h,
                                                  pack(steal, real + n),
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    for (uint32_t i = 0; i < n; i++)
        dst->buf[(dst_tail + i) & PN__LQ_MASK] = src->buf[(steal + i) & PN__LQ_MASK];

    /* Release the slots: steal catches up with real (which the owner may
     * have moved meanwhile). */
    h = atomic_load_explicit(&src->head, memory_order_acquire);
    for (;;) {
        uint32_t real = real_of(h);
        if (atomic_compare_exchange_weak_explicit(&src->head, &h, pack(real, real),
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    /* Keep the last one to run now; publish the rest. */
    pn__task *ret = dst->buf[(dst_tail + n - 1) & PN__LQ_MASK];
    *moved = n;
    if (n > 1)
        atomic_store_explicit(&dst->tail, dst_tail + n - 1, memory_order_release);
    return ret;
}
