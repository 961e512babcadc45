/*
 * test_local_queue.c - the worker run queue (src/executor/local_queue.c)
 * on its own: FIFO order, index wrap-around, overflow of half the queue to
 * the injection queue, steal-half, and one owner racing with thieves.
 *
 * The queue only stores pointers and links overflow batches through
 * pn__task.next, so most tests use zeroed pn__task cells they own, with the
 * test's id in pn__task.cell.  Only the closed-injection-queue test needs
 * real tasks (the queue drops its reference there).
 */
#include <pthread.h>
#include <stdlib.h>
#include "helpers.h"
#include "executor/local_queue.h"
#include "executor/inject.h"

TestSuite(local_queue, .timeout = PN_TEST_TIMEOUT);

static pn__task **cells_new(unsigned n)
{
    pn__task **c = calloc(n, sizeof(*c));
    cr_assert_not_null(c);
    for (unsigned i = 0; i < n; i++) {
        c[i] = calloc(1, sizeof(pn__task));
        cr_assert_not_null(c[i]);
        c[i]->cell = i;
    }
    return c;
}

static void cells_free(pn__task **c, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(c[i]);
    free(c);
}

/* Put the queue's indices at `at` (to cross the 32-bit wrap). */
static void lq_init_at(pn__local_queue *q, uint32_t at)
{
    pn__lq_init(q);
    atomic_store(&q->head, (uint64_t)at << 32 | at);
    atomic_store(&q->tail, at);
}

/* ---- single thread ---------------------------------------------------------- */

static void fifo_at(uint32_t start)
{
    pn__local_queue q;
    pn__inject inj;
    pn__inject_init(&inj);
    lq_init_at(&q, start);
    pn__task **c = cells_new(PN__LQ_CAP);
    cr_assert_null(pn__lq_pop(&q));
    cr_assert_eq(pn__lq_len(&q), 0);
    /* Several rounds of fill/drain so the ring wraps. */
    for (int round = 0; round < 5; round++) {
        unsigned n = round == 0 ? 100 : PN__LQ_CAP;
        for (unsigned i = 0; i < n; i++)
            pn__lq_push(&q, c[i], &inj);
        cr_assert_eq(pn__lq_len(&q), n);
        cr_assert_eq(pn__inject_len(&inj), 0, "a full queue is not an overflow");
        for (unsigned i = 0; i < n; i++) {
            pn__task *t = pn__lq_pop(&q);
            cr_assert_not_null(t);
            cr_assert_eq(t->cell, i, "round %d: popped %lu, expected %u", round,
                         (unsigned long)t->cell, i);
        }
        cr_assert_null(pn__lq_pop(&q));
        cr_assert_eq(pn__lq_len(&q), 0);
    }
    /* Interleaved push/pop keeps FIFO order. */
    unsigned next_in = 0, next_out = 0;
    for (int k = 0; k < 1000; k++) {
        pn__lq_push(&q, c[next_in++ % PN__LQ_CAP], &inj);
        pn__lq_push(&q, c[next_in++ % PN__LQ_CAP], &inj);
        pn__task *t = pn__lq_pop(&q);
        cr_assert_eq(t->cell, next_out++ % PN__LQ_CAP);
        if (pn__lq_len(&q) > 100)
            while ((t = pn__lq_pop(&q)))
                cr_assert_eq(t->cell, next_out++ % PN__LQ_CAP);
    }
    for (pn__task *t; (t = pn__lq_pop(&q));)
        cr_assert_eq(t->cell, next_out++ % PN__LQ_CAP);
    cr_assert_eq(next_in, next_out);
    cr_assert_eq(pn__inject_len(&inj), 0);
    pn__inject_destroy(&inj);
    cells_free(c, PN__LQ_CAP);
}

Test(local_queue, push_pop_is_fifo)
{
    fifo_at(0);
}

Test(local_queue, push_pop_is_fifo_across_index_wrap)
{
    fifo_at(UINT32_MAX - 37);
    fifo_at(UINT32_MAX - PN__LQ_CAP / 2);
}

static void overflow_at(uint32_t start)
{
    enum { N = PN__LQ_CAP + 1 };
    pn__local_queue q;
    pn__inject inj;
    pn__inject_init(&inj);
    lq_init_at(&q, start);
    pn__task **c = cells_new(N);
    for (unsigned i = 0; i < PN__LQ_CAP; i++)
        pn__lq_push(&q, c[i], &inj);
    cr_assert_eq(pn__lq_len(&q), PN__LQ_CAP);
    cr_assert_eq(pn__inject_len(&inj), 0);

    /* One more: the oldest half and the new task move to the injection queue. */
    pn__lq_push(&q, c[PN__LQ_CAP], &inj);
    cr_assert_eq(pn__lq_len(&q), PN__LQ_CAP / 2);
    cr_assert_eq(pn__inject_len(&inj), PN__LQ_CAP / 2 + 1);

    int seen[N] = { 0 };
    /* Injection queue: the oldest half in order, then the new task. */
    for (unsigned i = 0; i < PN__LQ_CAP / 2 + 1; i++) {
        pn__task *t = pn__inject_pop(&inj);
        cr_assert_not_null(t);
        unsigned want = i < PN__LQ_CAP / 2 ? i : PN__LQ_CAP;
        cr_assert_eq(t->cell, want, "inject[%u] = %lu, expected %u", i, (unsigned long)t->cell, want);
        seen[t->cell]++;
    }
    cr_assert_null(pn__inject_pop(&inj));
    /* Local queue: the newer half, in order. */
    for (unsigned i = PN__LQ_CAP / 2; i < PN__LQ_CAP; i++) {
        pn__task *t = pn__lq_pop(&q);
        cr_assert_not_null(t);
        cr_assert_eq(t->cell, i);
        seen[t->cell]++;
    }
    cr_assert_null(pn__lq_pop(&q));
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "task %u seen %d times", i, seen[i]);
    pn__inject_destroy(&inj);
    cells_free(c, N);
}

Test(local_queue, overflow_moves_half_and_the_new_task_to_inject)
{
    overflow_at(0);
    overflow_at(UINT32_MAX - 5);
}

/* Many overflows in a row: counts add up, nothing lost or duplicated. */
Test(local_queue, repeated_overflow_keeps_every_task_once)
{
    enum { N = 5000 };
    pn__local_queue q;
    pn__inject inj;
    pn__inject_init(&inj);
    pn__lq_init(&q);
    pn__task **c = cells_new(N);
    for (unsigned i = 0; i < N; i++) {
        pn__lq_push(&q, c[i], &inj);
        cr_assert_eq(pn__lq_len(&q) + pn__inject_len(&inj), i + 1);
        cr_assert_leq(pn__lq_len(&q), PN__LQ_CAP);
    }
    static int seen[N];
    for (unsigned i = 0; i < N; i++)
        seen[i] = 0;
    unsigned total = 0;
    for (pn__task *t; (t = pn__lq_pop(&q)); total++)
        seen[t->cell]++;
    for (pn__task *t; (t = pn__inject_pop(&inj)); total++)
        seen[t->cell]++;
    cr_assert_eq(total, N);
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "task %u seen %d times", i, seen[i]);
    pn__inject_destroy(&inj);
    cells_free(c, N);
}

/* Overflow into a closed injection queue drops the queue references of
 * tasks the owned list holds (linked: polled before). */
static pn_poll nop_poll(pn_future *f, pn_cx *cx) { (void)f; (void)cx; return PN_READY; }
static const pn_future_vtable nop_vt = { nop_poll, NULL, "nop" };

Test(local_queue, overflow_into_closed_inject_drops_queue_refs)
{
    enum { N = PN__LQ_CAP + 1 };
    pn__local_queue q;
    pn__inject inj;
    pn__inject_init(&inj);
    pn__lq_init(&q);
    cr_assert_null(pn__inject_close(&inj));
    pn_future f = { &nop_vt };
    pn__task *ts[N];
    for (unsigned i = 0; i < N; i++) {
        ts[i] = pn__task_new(NULL, &f, sizeof(f), 2, false);   /* ours + the queue's */
        cr_assert_not_null(ts[i]);
        ts[i]->owned = true;            /* "ours" stands for the owned list */
    }
    for (unsigned i = 0; i < N; i++)
        pn__lq_push(&q, ts[i], &inj);
    cr_assert_eq(pn__lq_len(&q), PN__LQ_CAP / 2);
    cr_assert_eq(pn__inject_len(&inj), 0);
    for (unsigned i = 0; i < N; i++) {
        uint64_t refs = atomic_load(&ts[i]->state) >> PN__REF_SHIFT;
        bool moved = i < PN__LQ_CAP / 2 || i == PN__LQ_CAP;
        cr_assert_eq(refs, moved ? 1u : 2u, "task %u: %lu refs", i, (unsigned long)refs);
    }
    for (pn__task *t; (t = pn__lq_pop(&q));)
        pn__task_unref(t);
    for (unsigned i = 0; i < N; i++)
        pn__task_unref(ts[i]);          /* frees; LSan checks none is left */
    pn__inject_destroy(&inj);
}

/* ... and drops whole the tasks never polled (not linked): only the queues
 * knew them, so their future is dropped and both references go. */
static _Atomic int nop_drops;
static void nop_drop(pn_future *f) { (void)f; atomic_fetch_add(&nop_drops, 1); }
static const pn_future_vtable nop_drop_vt = { nop_poll, nop_drop, "nop_drop" };

Test(local_queue, overflow_into_closed_inject_drops_unpolled_tasks_whole)
{
    enum { N = PN__LQ_CAP + 1 };
    pn__local_queue q;
    pn__inject inj;
    pn__inject_init(&inj);
    pn__lq_init(&q);
    cr_assert_null(pn__inject_close(&inj));
    atomic_store(&nop_drops, 0);
    pn_future f = { &nop_drop_vt };
    pn__task *ts[N];
    for (unsigned i = 0; i < N; i++) {
        ts[i] = pn__task_new(NULL, &f, sizeof(f), 2, false);   /* runtime's + queue's */
        cr_assert_not_null(ts[i]);
    }
    for (unsigned i = 0; i < N; i++)
        pn__lq_push(&q, ts[i], &inj);
    cr_assert_eq(pn__lq_len(&q), PN__LQ_CAP / 2);
    cr_assert_eq(atomic_load(&nop_drops), PN__LQ_CAP / 2 + 1, "the moved ones were dropped");
    for (pn__task *t; (t = pn__lq_pop(&q));) {
        cr_assert_eq(atomic_load(&t->state) >> PN__REF_SHIFT, 2u);
        pn__task_drop_queued(t);        /* as shutdown's drain does */
    }
    cr_assert_eq(atomic_load(&nop_drops), N, "every future dropped once");
    pn__inject_destroy(&inj);           /* LSan: every cell was freed */
}

Test(local_queue, steal_takes_half_and_returns_one)
{
    pn__local_queue src, dst;
    pn__inject inj;
    pn__inject_init(&inj);
    pn__task **c = cells_new(PN__LQ_CAP);
    uint32_t moved;

    /* Empty source: nothing. */
    pn__lq_init(&src);
    pn__lq_init(&dst);
    cr_assert_null(pn__lq_steal_into(&src, &dst, &moved));
    cr_assert_eq(moved, 0);

    /* One task: it is returned, dst stays empty. */
    pn__lq_push(&src, c[0], &inj);
    pn__task *t = pn__lq_steal_into(&src, &dst, &moved);
    cr_assert_eq(t, c[0]);
    cr_assert_eq(moved, 1);
    cr_assert_eq(pn__lq_len(&src), 0);
    cr_assert_eq(pn__lq_len(&dst), 0);

    /* Ten: the five oldest are taken (ceil(10/2)); the last of them is
     * returned, the other four land in dst in order. */
    lq_init_at(&src, UINT32_MAX - 3);
    lq_init_at(&dst, UINT32_MAX - 1);
    for (unsigned i = 0; i < 10; i++)
        pn__lq_push(&src, c[i], &inj);
    t = pn__lq_steal_into(&src, &dst, &moved);
    cr_assert_not_null(t);
    cr_assert_eq(t->cell, 4);
    cr_assert_eq(moved, 5);
    cr_assert_eq(pn__lq_len(&src), 5);
    cr_assert_eq(pn__lq_len(&dst), 4);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(pn__lq_pop(&dst)->cell, i);
    cr_assert_null(pn__lq_pop(&dst));
    for (unsigned i = 5; i < 10; i++)
        cr_assert_eq(pn__lq_pop(&src)->cell, i);
    cr_assert_null(pn__lq_pop(&src));

    /* Eleven: six taken. */
    for (unsigned i = 0; i < 11; i++)
        pn__lq_push(&src, c[i], &inj);
    t = pn__lq_steal_into(&src, &dst, &moved);
    cr_assert_eq(t->cell, 5);
    cr_assert_eq(moved, 6);
    cr_assert_eq(pn__lq_len(&src), 5);
    cr_assert_eq(pn__lq_len(&dst), 5);
    while (pn__lq_pop(&src) || pn__lq_pop(&dst))
        ;

    /* A full source gives at most half the capacity. */
    for (unsigned i = 0; i < PN__LQ_CAP; i++)
        pn__lq_push(&src, c[i], &inj);
    t = pn__lq_steal_into(&src, &dst, &moved);
    cr_assert_eq(t->cell, PN__LQ_CAP / 2 - 1);
    cr_assert_eq(pn__lq_len(&src), PN__LQ_CAP / 2);
    cr_assert_eq(pn__lq_len(&dst), PN__LQ_CAP / 2 - 1);
    cr_assert_eq(pn__inject_len(&inj), 0);

    /* dst more than half full: the thief takes nothing. */
    pn__lq_push(&dst, t, &inj);
    pn__lq_push(&dst, pn__lq_pop(&src), &inj);      /* dst now CAP/2 + 1 */
    cr_assert_eq(pn__lq_len(&dst), PN__LQ_CAP / 2 + 1);
    uint32_t before = pn__lq_len(&src);
    cr_assert_null(pn__lq_steal_into(&src, &dst, &moved));
    cr_assert_eq(pn__lq_len(&src), before);

    /* Every task exactly once across both queues. */
    int seen[PN__LQ_CAP] = { 0 };
    while ((t = pn__lq_pop(&src)))
        seen[t->cell]++;
    while ((t = pn__lq_pop(&dst)))
        seen[t->cell]++;
    for (unsigned i = 0; i < PN__LQ_CAP; i++)
        cr_assert_eq(seen[i], 1, "task %u seen %d times", i, seen[i]);
    pn__inject_destroy(&inj);
    cells_free(c, PN__LQ_CAP);
}

/* Stealing from a thief's own queue after it stole: the returned task plus
 * what it published are exactly what left the source. */
Test(local_queue, steal_chain_conserves_tasks)
{
    pn__local_queue q[3];
    pn__inject inj;
    pn__inject_init(&inj);
    for (int i = 0; i < 3; i++)
        pn__lq_init(&q[i]);
    pn__task **c = cells_new(200);
    for (unsigned i = 0; i < 200; i++)
        pn__lq_push(&q[0], c[i], &inj);
    int seen[200] = { 0 };
    unsigned got = 0;
    for (int k = 0; k < 50; k++) {
        uint32_t moved;
        pn__task *t = pn__lq_steal_into(&q[k % 3], &q[(k + 1) % 3], &moved);
        if (t) {
            seen[t->cell]++;
            got++;
        }
        cr_assert_eq(pn__lq_len(&q[0]) + pn__lq_len(&q[1]) + pn__lq_len(&q[2]) + got, 200);
    }
    for (int i = 0; i < 3; i++)
        for (pn__task *t; (t = pn__lq_pop(&q[i]));)
            seen[t->cell]++;
    for (unsigned i = 0; i < 200; i++)
        cr_assert_eq(seen[i], 1, "task %u seen %d times", i, seen[i]);
    pn__inject_destroy(&inj);
    cells_free(c, 200);
}

/* ---- one owner, several thieves ---------------------------------------------------
 *
 * The owner pushes ids in bursts (some bursts overflow into the injection
 * queue) and pops some; three thieves steal into queues of their own, pop
 * those, and take from the injection queue.  Cells are reused round by
 * round: ROUND_CELLS tasks per round, the owner starts the next round once
 * every task of this one was consumed.  Every id must be consumed exactly
 * once.  Half the rounds under ThreadSanitizer (still over 1,000,000 ops). */

#if defined(__SANITIZE_THREAD__)
#define LQ_SLOW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LQ_SLOW 1
#endif
#endif

#define ROUND_CELLS (1u << 14)
#ifdef LQ_SLOW
#define ROUNDS 32u                     /* 524,288 tasks, > 1,000,000 ops */
#else
#define ROUNDS 62u                     /* 1,015,808 tasks, > 2,000,000 ops */
#endif
#define TOTAL (ROUND_CELLS * ROUNDS)
#define THIEVES 3

typedef struct race {
    pn__local_queue owner_q;
    pn__inject inj;
    pn__task **cells;
    _Atomic uint8_t *seen;
    _Atomic uint64_t consumed;
    _Atomic bool done;
    _Atomic int started;
    _Atomic uint64_t steals, stolen, by_owner, by_inject, bad_ids;
} race;

static void consume(race *r, pn__task *t)
{
    uint64_t id = t->cell;
    if (id >= TOTAL)
        atomic_fetch_add(&r->bad_ids, 1);
    else
        atomic_fetch_add_explicit(&r->seen[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->consumed, 1, memory_order_release);
}

static void *thief_main(void *arg)
{
    race *r = arg;
    pn__local_queue *mine = calloc(1, sizeof(*mine));
    pn__lq_init(mine);
    atomic_fetch_add(&r->started, 1);
    while (!atomic_load(&r->done)) {
        uint32_t moved;
        pn__task *t = pn__lq_steal_into(&r->owner_q, mine, &moved);
        if (t) {
            atomic_fetch_add_explicit(&r->steals, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&r->stolen, 1 + pn__lq_len(mine), memory_order_relaxed);
            consume(r, t);
            while ((t = pn__lq_pop(mine)))
                consume(r, t);
        } else if ((t = pn__inject_pop(&r->inj))) {
            atomic_fetch_add_explicit(&r->by_inject, 1, memory_order_relaxed);
            consume(r, t);
        }
    }
    free(mine);
    return NULL;
}

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

Test(local_queue, owner_and_three_thieves_every_task_once, .timeout = 60)
{
    race *r = calloc(1, sizeof(*r));
    cr_assert_not_null(r);
    pn__lq_init(&r->owner_q);
    pn__inject_init(&r->inj);
    r->cells = cells_new(ROUND_CELLS);
    r->seen = calloc(TOTAL, sizeof(*r->seen));
    cr_assert_not_null(r->seen);
    pthread_t th[THIEVES];
    for (int i = 0; i < THIEVES; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, thief_main, r), 0);

    while (atomic_load(&r->started) < THIEVES)
        sched_yield();
    uint32_t rng = 0x12345678u;
    uint64_t owner_pops = 0, owner_inject = 0;
    for (uint32_t round = 0; round < ROUNDS; round++) {
        uint64_t base = (uint64_t)round * ROUND_CELLS;
        uint32_t i = 0;
        while (i < ROUND_CELLS) {
            /* A burst of pushes (sometimes past capacity), then some pops. */
            uint32_t burst = 1 + xorshift(&rng) % (xorshift(&rng) % 64 == 0 ? 400 : 24);
            for (uint32_t k = 0; k < burst && i < ROUND_CELLS; k++, i++) {
                pn__task *t = r->cells[i];
                t->cell = base + i;
                pn__lq_push(&r->owner_q, t, &r->inj);
            }
            uint32_t pops = xorshift(&rng) % (burst / 2 + 1);
            if (pn__lq_len(&r->owner_q) > 96)
                pops += pn__lq_len(&r->owner_q) - 64;
            /* Give the thieves a window while the queue holds work. */
            for (uint32_t k = xorshift(&rng) % 1024; k; k--)
                atomic_signal_fence(memory_order_seq_cst);
            for (uint32_t k = 0; k < pops; k++) {
                pn__task *t = pn__lq_pop(&r->owner_q);
                if (!t)
                    break;
                owner_pops++;
                consume(r, t);
            }
        }
        /* Drain what is left of the round, racing with the thieves. */
        for (;;) {
            pn__task *t = pn__lq_pop(&r->owner_q);
            if (t) {
                owner_pops++;
                consume(r, t);
            } else if ((t = pn__inject_pop(&r->inj))) {
                owner_inject++;
                consume(r, t);
            } else if (atomic_load_explicit(&r->consumed, memory_order_acquire) == base + ROUND_CELLS) {
                break;                   /* cells may be reused */
            } else {
                sched_yield();           /* a thief still holds some */
            }
        }
    }
    atomic_store(&r->done, true);
    for (int i = 0; i < THIEVES; i++)
        pthread_join(th[i], NULL);

    cr_assert_eq(atomic_load(&r->bad_ids), 0);
    cr_assert_eq(atomic_load(&r->consumed), (uint64_t)TOTAL);
    cr_assert_null(pn__lq_pop(&r->owner_q));
    cr_assert_null(pn__inject_pop(&r->inj));
    for (uint64_t id = 0; id < TOTAL; id++)
        cr_assert_eq(atomic_load(&r->seen[id]), 1, "task %lu consumed %u times",
                     (unsigned long)id, (unsigned)atomic_load(&r->seen[id]));
    /* The race really happened: thieves stole, and some overflow went
     * through the injection queue. */
    cr_assert_gt(atomic_load(&r->steals), 0);
    cr_assert_gt(atomic_load(&r->by_inject) + owner_inject, 0);
    cr_log_info("lq race: %u tasks, owner pops %lu, steals %lu (%lu tasks), inject %lu+%lu",
                TOTAL, (unsigned long)owner_pops, (unsigned long)atomic_load(&r->steals),
                (unsigned long)atomic_load(&r->stolen),
                (unsigned long)atomic_load(&r->by_inject), (unsigned long)owner_inject);
    pn__inject_destroy(&r->inj);
    cells_free(r->cells, ROUND_CELLS);
    free((void *)r->seen);
    free(r);
}
