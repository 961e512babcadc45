/*
 * test_cell_cache.c - a worker's cache of task cells: classes, reuse,
 * frees from other threads, and the token count (each cell holds one; the
 * multi-thread runtime's references) coming back exact at close.
 */
#include <pthread.h>
#include <stdlib.h>
#include "helpers.h"
#include "executor/cell_cache.h"

TestSuite(cell_cache, .timeout = PN_TEST_TIMEOUT);

#define MIN 48

/* Classes are malloc's usable sizes (16k + 8: a glibc chunk of 16(k+1)
 * bytes), from the smallest that holds MIN (48 -> 56). */
Test(cell_cache, classes_are_mallocs_usable_sizes_from_the_smallest_cell)
{
    pn__cell_cache c;
    _Atomic size_t tokens = 1;
    pn__cells_init(&c, MIN, &tokens);
    cr_assert_eq(pn__cells_class(&c, 1), 0);
    cr_assert_eq(pn__cells_class(&c, MIN), 0);
    cr_assert_eq(pn__cells_class(&c, 56), 0);
    cr_assert_eq(pn__cells_class(&c, 57), 1);
    cr_assert_eq(pn__cells_class(&c, 72), 1);
    cr_assert_eq(pn__cells_class(&c, 73), 2);
    cr_assert_eq(pn__cells_class(&c, 136), 5, "a task sleeping in a pn_sleep_future: a 144-byte chunk");
    cr_assert_eq(pn__cells_class(&c, 56 + 16 * (PN__CELL_CLASSES - 1)), PN__CELL_CLASSES - 1);
    cr_assert_eq(pn__cells_class(&c, 56 + 16 * (PN__CELL_CLASSES - 1) + 1), PN__CELL_NONE);
    cr_assert_eq(pn__cells_close(&c), 0);
    pn__cells_init(&c, 56, &tokens);
    cr_assert_eq(pn__cells_class(&c, 56), 0, "already a usable size");
    pn__cells_init(&c, 80, &tokens);
    cr_assert_eq(pn__cells_class(&c, 88), 0);
    cr_assert_eq(pn__cells_class(&c, 89), 1);
}

Test(cell_cache, a_freed_cell_is_reused_and_tokens_come_back_at_close)
{
    pn__cell_cache c;
    _Atomic size_t tokens = 1;
    pn__cells_init(&c, MIN, &tokens);
    void *a = pn__cells_alloc(&c, 2), *b = pn__cells_alloc(&c, 2);
    cr_assert(a && b && a != b);
    cr_assert_eq(atomic_load(&tokens), 1 + PN__CELLS_BATCH, "one batch taken, not one per cell");
    memset(a, 0xab, 56 + 32);          /* the whole class size is usable */
    pn__cells_free_local(&c, a, 2);
    cr_assert_eq(pn__cells_alloc(&c, 2), a, "the free list gives it back");
    pn__cells_free_local(&c, a, 2);
    pn__cells_free_local(&c, b, 2);
    cr_assert_eq(atomic_load(&tokens), 1 + PN__CELLS_BATCH);
    atomic_fetch_sub(&tokens, pn__cells_close(&c));
    cr_assert_eq(atomic_load(&tokens), 1, "every token handed back");
}

Test(cell_cache, past_the_cap_cells_go_back_to_malloc_and_tokens_to_the_shared_count)
{
    enum { N = 4 * PN__CELLS_BATCH + PN__CELLS_KEEP + 8 };
    pn__cell_cache c;
    _Atomic size_t tokens = 1;
    pn__cells_init(&c, MIN, &tokens);
    void **cells = malloc(N * sizeof *cells);
    cr_assert_not_null(cells);
    for (int i = 0; i < N; i++)
        cr_assert_not_null(cells[i] = pn__cells_alloc(&c, 0));
    size_t held = atomic_load(&tokens) - 1;
    cr_assert_geq(held, N, "every live cell has a token");
    cr_assert_lt(held, N + PN__CELLS_BATCH, "taken in batches");
    for (int i = 0; i < N; i++)
        pn__cells_free_local(&c, cells[i], 0);
    cr_assert_lt(atomic_load(&tokens) - 1, held, "a full reserve hands tokens back");
    atomic_fetch_sub(&tokens, pn__cells_close(&c));
    cr_assert_eq(atomic_load(&tokens), 1);
    free(cells);
}

/* Cells freed on other threads come back to the owner in one exchange,
 * each with its token: the owner reuses them without a malloc. */
typedef struct remote_job {
    pn__cell_cache *c;
    void **cells;
    int from, to;
} remote_job;

static void *free_remotely(void *arg)
{
    remote_job *j = arg;
    for (int i = j->from; i < j->to; i++)
        cr_assert(pn__cells_free_remote(j->c, j->cells[i], 1));
    return NULL;
}

Test(cell_cache, cells_freed_by_other_threads_are_reused_by_the_owner)
{
    enum { N = 1000 };
    pn__cell_cache c;
    _Atomic size_t tokens = 1;
    pn__cells_init(&c, MIN, &tokens);
    void *cells[N];
    for (int i = 0; i < N; i++)
        cr_assert_not_null(cells[i] = pn__cells_alloc(&c, 1));
    size_t before = atomic_load(&tokens);
    remote_job jobs[2] = { { &c, cells, 0, N / 2 }, { &c, cells, N / 2, N } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, free_remotely, &jobs[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        void *p = pn__cells_alloc(&c, 1);
        bool known = false;
        for (int k = 0; k < N && !known; k++)
            known = cells[k] == p;
        cr_assert(known, "cell %d came from the remote frees", i);
    }
    cr_assert_eq(atomic_load(&tokens), before, "reused cells bring their tokens");
    for (int i = 0; i < N; i++)
        pn__cells_free_local(&c, cells[i], 1);
    atomic_fetch_sub(&tokens, pn__cells_close(&c));
    cr_assert_eq(atomic_load(&tokens), 1);
}

Test(cell_cache, a_remote_free_after_close_is_refused)
{
    pn__cell_cache c;
    _Atomic size_t tokens = 1;
    pn__cells_init(&c, MIN, &tokens);
    void *a = pn__cells_alloc(&c, 0), *b = pn__cells_alloc(&c, 0);
    cr_assert(pn__cells_free_remote(&c, a, 0));
    atomic_fetch_sub(&tokens, pn__cells_close(&c));    /* frees a, takes its token */
    cr_assert_not(pn__cells_free_remote(&c, b, 0), "closed: the cell is still ours");
    free(b);
    atomic_fetch_sub(&tokens, 1);                      /* b's token, as the runtime does */
    cr_assert_eq(atomic_load(&tokens), 1);
}

/* The owner allocates while two threads free what it hands them, the way
 * a spawning worker and a stealing one share tasks; then the owner closes.
 * Nothing leaks (LSan), nothing is handed out twice, and every token comes
 * back. */
#define STRESS 20000
static pn__cell_cache stress_c;
static _Atomic(void *) stress_box[2];
static _Atomic int stress_done;

static void *stress_freer(void *arg)
{
    int me = (int)(intptr_t)arg, n = 0;
    while (n < STRESS) {
        void *p = atomic_exchange(&stress_box[me], NULL);
        if (!p) {
            sched_yield();
            continue;
        }
        cr_assert_eq(*(int *)p, me, "a cell handed out once");
        *(int *)p = -1;
        cr_assert(pn__cells_free_remote(&stress_c, p, 3));
        n++;
    }
    atomic_fetch_add(&stress_done, 1);
    return NULL;
}

Test(cell_cache, an_owner_and_two_freeing_threads_lose_nothing)
{
    _Atomic size_t tokens = 1;
    pn__cells_init(&stress_c, MIN, &tokens);
    atomic_store(&stress_done, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, stress_freer, (void *)(intptr_t)i);
    for (int i = 0; i < 2 * STRESS; i++) {
        int to = i & 1;
        void *p = pn__cells_alloc(&stress_c, 3);
        cr_assert_not_null(p);
        *(int *)p = to;
        while (atomic_load(&stress_box[to]))
            sched_yield();
        atomic_store(&stress_box[to], p);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&stress_done), 2);
    atomic_fetch_sub(&tokens, pn__cells_close(&stress_c));
    cr_assert_eq(atomic_load(&tokens), 1);
}
