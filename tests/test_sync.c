/*
 * test_sync.c - pn_waker_slot (pollen/sync.h): one waiter's waker, woken
 * from any thread.
 *
 * Checked: a wake wakes the registered waker once and empties the slot; a
 * wake with nothing registered keeps nothing; one task's waker is cloned
 * once however often it registers, another task's replaces it; take hands
 * the waker over and clear drops it; a wake that comes while the waiter
 * registers (forced at the point "waker_slot.register") wakes the
 * registering waker; and, across threads, the done-flag future of the
 * header's example never misses a wake (both runtimes), and a register
 * loop against a wake loop ends with every clone given back.
 */
#include <pthread.h>
#include <sched.h>
#include "helpers.h"
#include "core/chaos.h"

static void sync_fini(void) { pn__point_set_hook(NULL); }

TestSuite(sync, .timeout = PN_TEST_TIMEOUT, .fini = sync_fini);

static pn_waker probe_waker(waker_probe *p) { return (pn_waker){ p, &waker_probe_vt }; }

Test(sync, wake_wakes_the_registered_waker_once_and_empties_the_slot)
{
    pn_waker_slot s = PN_WAKER_SLOT_INIT;
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_waker_slot_register(&s, &w);
    cr_assert_eq(waker_probe_held(&p), 1);
    pn_waker_slot_wake(&s);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_waker_slot_wake(&s);
    cr_assert_eq(atomic_load(&p.wakes), 1, "the slot is empty after a wake");
}

Test(sync, a_wake_with_nothing_registered_keeps_no_permit)
{
    pn_waker_slot s;
    memset(&s, 0, sizeof s);              /* zeroed memory is an empty slot */
    pn_waker_slot_wake(&s);
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_waker_slot_register(&s, &w);
    cr_assert_eq(atomic_load(&p.wakes), 0, "an earlier wake must not wake a later waiter");
    pn_waker_slot_clear(&s);
    cr_assert_eq(waker_probe_held(&p), 0);
}

Test(sync, one_task_is_cloned_once_and_another_task_replaces_it)
{
    pn_waker_slot s = PN_WAKER_SLOT_INIT;
    waker_probe a = { 0 }, b = { 0 };
    pn_waker wa = probe_waker(&a), wb = probe_waker(&b);
    for (int i = 0; i < 5; i++)
        pn_waker_slot_register(&s, &wa);
    cr_assert_eq(atomic_load(&a.clones), 1, "the same task's waker is kept, not cloned again");
    pn_waker_slot_register(&s, &wb);
    cr_assert_eq(waker_probe_held(&a), 0, "the replaced waker is dropped");
    cr_assert_eq(atomic_load(&a.wakes), 0, "and not woken");
    pn_waker_slot_wake(&s);
    cr_assert_eq(atomic_load(&b.wakes), 1);
    cr_assert_eq(waker_probe_held(&b), 0);
}

Test(sync, take_hands_the_waker_over_and_clear_drops_it)
{
    pn_waker_slot s = PN_WAKER_SLOT_INIT;
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    pn_waker_slot_register(&s, &w);
    pn_waker got = pn_waker_slot_take(&s);
    cr_assert(pn_waker_will_wake(&got, &w));
    cr_assert_eq(atomic_load(&p.wakes), 0);
    cr_assert(pn_waker_is_none(&s.waker));
    pn_waker_wake(&got);
    cr_assert_eq(atomic_load(&p.wakes), 1);
    pn_waker_slot_register(&s, &w);
    pn_waker_slot_clear(&s);
    cr_assert_eq(atomic_load(&p.wakes), 1, "clear does not wake");
    cr_assert_eq(waker_probe_held(&p), 0);
    pn_waker none = pn_waker_slot_take(&s);
    cr_assert(pn_waker_is_none(&none));
    pn_waker_slot_register(NULL, &w);     /* NULLs: no effect */
    pn_waker_slot_register(&s, NULL);
    pn_waker_slot_wake(NULL);
    pn_waker_slot_clear(NULL);
    none = pn_waker_slot_take(NULL);
    cr_assert(pn_waker_is_none(&none));
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* ---- a wake while the waiter registers ---------------------------------- */

static pn_waker_slot *racing_slot;
static _Atomic int racing_hits;

static void wake_at_register(const char *name, void *arg)
{
    if (strcmp(name, "waker_slot.register") || arg != racing_slot ||
        atomic_fetch_add(&racing_hits, 1))
        return;
    pn_waker_slot_wake(racing_slot);      /* the other thread's wake, here */
}

/* The waker was stored but the waiter has not finished: the wake cannot
 * take it, so it leaves the waking to the registering side, which must
 * wake its own waker rather than leave it stored (a lost wakeup: the
 * waiter would check its condition before the wake's data was there,
 * then sleep with a waker nobody wakes). */
Test(sync, a_wake_during_a_register_wakes_the_registering_waker)
{
    pn_waker_slot s = PN_WAKER_SLOT_INIT;
    waker_probe p = { 0 };
    pn_waker w = probe_waker(&p);
    racing_slot = &s;
    atomic_store(&racing_hits, 0);
    pn__point_set_hook(wake_at_register);
    pn_waker_slot_register(&s, &w);
    pn__point_set_hook(NULL);
    cr_assert_eq(atomic_load(&racing_hits), 1, "the window was reached");
    cr_assert_eq(atomic_load(&p.wakes), 1, "the registering waker was woken");
    cr_assert_eq(waker_probe_held(&p), 0, "and not kept");
    /* The slot works as before afterwards. */
    pn_waker_slot_register(&s, &w);
    pn_waker_slot_wake(&s);
    cr_assert_eq(atomic_load(&p.wakes), 2);
    cr_assert_eq(waker_probe_held(&p), 0);
}

/* ---- across threads: the header's done flag ----------------------------- */

typedef struct done_flag {
    atomic_bool done;
    pn_waker_slot waiter;
} done_flag;

typedef struct await_flag {
    pn_future base;
    done_flag *flag;
    int polls;
} await_flag;

static pn_poll await_flag_poll(pn_future *f, pn_cx *cx)
{
    await_flag *a = (await_flag *)f;
    a->polls++;
    if (atomic_load(&a->flag->done))
        return PN_READY;
    pn_waker_slot_register(&a->flag->waiter, cx->waker);
    if (atomic_load(&a->flag->done))
        return PN_READY;
    return PN_PENDING;
}

static void await_flag_drop(pn_future *f) { pn_waker_slot_clear(&((await_flag *)f)->flag->waiter); }

static const pn_future_vtable await_flag_vt = { await_flag_poll, await_flag_drop, "await_flag" };

static void *set_flag(void *arg)
{
    done_flag *flag = arg;
    for (int i = 0; i < (int)(((uintptr_t)flag >> 4) % 64); i++)
        sched_yield();                    /* a different lead each round */
    atomic_store(&flag->done, true);
    pn_waker_slot_wake(&flag->waiter);
    return NULL;
}

#define FLAG_ROUNDS 300

BOTH(sync, a_flag_set_by_a_thread_always_wakes_its_task)
{
    pn_runtime *rt = flavour_new(fl);
    for (int round = 0; round < FLAG_ROUNDS; round++) {
        done_flag *flag = calloc(1, sizeof *flag);
        await_flag a = { { &await_flag_vt }, flag, 0 };
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, set_flag, flag), 0);
        AWAIT(rt, a);                     /* a lost wake: the watchdog fails it */
        cr_assert_eq(pthread_join(th, NULL), 0);
        pn_future_drop(&a.base);
        cr_assert(pn_waker_is_none(&flag->waiter.waker), "round %d: a waker was left", round);
        free(flag);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- a register loop against a wake loop -------------------------------- */

static pn_waker_slot loop_slot;
static atomic_bool loop_stop;
static _Atomic long loop_wakes_done;

static _Atomic int loop_started;

static void *wake_loop(void *arg)
{
    (void)arg;
    atomic_fetch_add(&loop_started, 1);
    while (!atomic_load(&loop_stop)) {
        pn_waker_slot_wake(&loop_slot);
        atomic_fetch_add(&loop_wakes_done, 1);
    }
    return NULL;
}

Test(sync, registers_racing_wakes_give_every_clone_back)
{
    memset(&loop_slot, 0, sizeof loop_slot);
    atomic_store(&loop_stop, false);
    atomic_store(&loop_wakes_done, 0);
    atomic_store(&loop_started, 0);
    waker_probe a = { 0 }, b = { 0 };
    pn_waker wa = probe_waker(&a), wb = probe_waker(&b);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, wake_loop, NULL), 0);
    while (atomic_load(&loop_started) < 2)   /* both wakers run before we register */
        sched_yield();
    for (int i = 0; i < 20000; i++)
        pn_waker_slot_register(&loop_slot, i % 3 ? &wa : &wb);
    /* Wakes that start after the last register: the first of them finds
     * that register's waker (however the two loops overlapped, which a
     * loaded 2-core machine may not let them do at all). */
    long after = atomic_load(&loop_wakes_done);
    while (atomic_load(&loop_wakes_done) < after + 1000)
        sched_yield();
    atomic_store(&loop_stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pn_waker_slot_clear(&loop_slot);
    cr_assert_eq(atomic_load(&loop_slot.state), 0, "the slot is idle");
    cr_assert_eq(waker_probe_held(&a), 0, "a clone of a was kept or lost");
    cr_assert_eq(waker_probe_held(&b), 0, "a clone of b was kept or lost");
    cr_assert_gt(atomic_load(&a.wakes) + atomic_load(&b.wakes), 0, "no wake reached a waker");
}
