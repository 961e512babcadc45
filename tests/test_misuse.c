/*
 * test_misuse.c - what the public calls do when they are called wrongly:
 * NULL arguments, zero and huge sizes, empty combinators, handles used
 * after shutdown, futures dropped before or after they ran.  Each test is
 * one documented behaviour (an error code or a defined no-op); none may
 * crash, hang or leak.
 */
#include <limits.h>
#include <stdint.h>
#include "helpers.h"

TestSuite(misuse, .timeout = PN_TEST_TIMEOUT);

/* A future that is ready at once with a value in its output field. */
typedef struct answer {
    pn_future base;
    int out;
} answer;

static pn_poll answer_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    ((answer *)f)->out = 42;
    return PN_READY;
}

static const pn_future_vtable answer_vt = { answer_poll, NULL, "answer" };

static answer answer_new(void) { return (answer){ .base = { &answer_vt } }; }

/* Spawn an answer, join it and check its output: the runtime still works. */
static void runtime_still_works(pn_runtime *rt)
{
    answer a = answer_new();
    pn_join_handle *h = NULL;
    cr_assert_eq(PN_SPAWN(rt, a, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((answer *)j.output)->out, 42);
    pn_join_handle_free(h);
}

/* ---- pn_spawn: sizes ------------------------------------------------------ */

BOTH(misuse, spawn_with_a_huge_size_is_einval)
{
    pn_runtime *rt = flavour_new(fl);
    answer a = answer_new();
    /* The header plus these sizes wraps around SIZE_MAX, or passes
     * PTRDIFF_MAX: no object that large can exist. */
    const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 40, SIZE_MAX / 2 + 1, PTRDIFF_MAX };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pn_join_handle *h = (pn_join_handle *)1;
        cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), sizes[i], &h), -EINVAL,
                     "size %zu", sizes[i]);
        cr_assert_null(h, "no handle on failure");
    }
    runtime_still_works(rt);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- combinators with nothing to wait for -------------------------------- */

/* Await `f` with a one-second limit: a future that returns PN_PENDING and
 * never wakes fails the assertion instead of hanging the test. */
static void await_briefly(pn_runtime *rt, pn_future *f)
{
    pn_timeout_future t = pn_timeout(f, PN_MS(1000));
    AWAIT(rt, t);
    cr_assert_eq(t.res, 0, "the future never completed (%s)", pn_strerror(t.res));
}

BOTH(misuse, select_of_no_children_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_select_future s = pn_select(NULL, 0);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, select_of_only_null_children_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_future *futs[3] = { NULL, NULL, NULL };
    pn_select_future s = pn_select(futs, 3);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, select_of_a_null_array_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_select_future s = pn_select(NULL, 4);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, select_either_of_two_nulls_is_ready_with_no_winner)
{
    pn_runtime *rt = flavour_new(fl);
    pn_select2_future s = pn_select2(NULL, NULL);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, PN_SELECT_NONE);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, select_with_one_null_child_waits_for_the_other)
{
    pn_runtime *rt = rt_new();
    steps_future b = steps_new(3, NULL);
    pn_select2_future s = pn_select2(NULL, PN_FUTURE(&b));
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, 1);
    cr_assert_eq(b.polls, 4);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, select_polled_again_after_ready_keeps_its_winner)
{
    pn_runtime *rt = rt_new();
    steps_future a = steps_new(0, NULL);
    int drops = 0;
    forever_future b = forever_new(&drops);
    pn_future *futs[2] = { PN_FUTURE(&b), PN_FUTURE(&a) };
    pn_select_future s = pn_select(futs, 2);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, 1);
    await_briefly(rt, PN_FUTURE(&s));
    cr_assert_eq(s.index, 1, "a second poll does not turn the winner into PN_SELECT_NONE");
    cr_assert_eq(drops, 1);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, join_of_no_children_is_ready_at_once)
{
    pn_runtime *rt = flavour_new(fl);
    pn_future *nulls[2] = { NULL, NULL };
    pn_join_all_future e = pn_join_all(NULL, 0), z = pn_join_all(NULL, 5),
                a = pn_join_all(nulls, 2);
    pn_join2_future j = pn_join2(NULL, NULL);
    await_briefly(rt, PN_FUTURE(&e));
    await_briefly(rt, PN_FUTURE(&z));
    await_briefly(rt, PN_FUTURE(&a));
    await_briefly(rt, PN_FUTURE(&j));
    cr_assert_eq(z.left, 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, join_counts_children_stored_after_it_was_made)
{
    pn_runtime *rt = rt_new();
    pn_future *futs[2] = { NULL, NULL };
    pn_join_all_future j = pn_join_all(futs, 2);
    cr_assert_eq(j.left, 0);
    steps_future a = steps_new(1, NULL), b = steps_new(4, NULL);
    futs[0] = PN_FUTURE(&a);
    futs[1] = PN_FUTURE(&b);
    await_briefly(rt, PN_FUTURE(&j));
    cr_assert_eq(a.left, 0);
    cr_assert_eq(b.left, 0, "the join waited for both late children");
    cr_assert_eq(j.left, 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- futures: drop before, after, and of nothing -------------------------- */

Test(misuse, dropping_a_zeroed_future_is_a_noop)
{
    pn_future zero = { 0 };
    pn_future_drop(&zero);
    pn_future_drop(NULL);
    forever_future z;
    memset(&z, 0, sizeof(z));
    pn_future_drop(PN_FUTURE(&z));
}

BOTH(misuse, dropping_never_polled_futures_releases_their_children)
{
    pn_runtime *rt = flavour_new(fl);
    int drops = 0;
    forever_future a = forever_new(&drops), b = forever_new(&drops), c = forever_new(&drops);
    pn_timeout_future t = pn_timeout(PN_FUTURE(&a), PN_MS(10));
    pn_select2_future s = pn_select2(PN_FUTURE(&b), NULL);
    pn_join2_future j = pn_join2(PN_FUTURE(&c), NULL);
    pn_sleep_future nap = pn_sleep(PN_MS(10));
    pn_blocking_future job = pn_spawn_blocking(NULL, NULL);
    pn_join_future jf = pn_join(NULL);
    pn_future_drop(PN_FUTURE(&t));
    pn_future_drop(PN_FUTURE(&s));
    pn_future_drop(PN_FUTURE(&j));
    pn_future_drop(PN_FUTURE(&nap));
    pn_future_drop(PN_FUTURE(&job));
    pn_future_drop(PN_FUTURE(&jf));
    cr_assert_eq(drops, 3, "each borrowed child dropped once");
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* Await `f`, then drop it: a completed future's drop must not undo or
 * release anything twice. */
static void await_then_drop(pn_runtime *rt, pn_future *f)
{
    cr_assert_eq(pn_block_on(rt, f), 0);
    pn_future_drop(f);
}

static void *add_one(void *arg) { return (void *)((intptr_t)arg + 1); }

BOTH(misuse, dropping_completed_futures_is_a_noop)
{
    pn_runtime *rt = flavour_new(fl);
    int drops = 0;
    steps_future a = steps_new(1, &drops), b = steps_new(2, &drops), c = steps_new(0, &drops);
    pn_timeout_future t = pn_timeout(PN_FUTURE(&a), PN_MS(1000));
    pn_future *futs[1] = { PN_FUTURE(&b) };
    pn_join_all_future j = pn_join_all(futs, 1);
    forever_future loser = forever_new(&drops);
    pn_select2_future s = pn_select2(PN_FUTURE(&loser), PN_FUTURE(&c));
    pn_sleep_future nap = pn_sleep(PN_MS(1));
    pn_yield_now_future y = pn_yield();
    pn_blocking_future job = pn_spawn_blocking(add_one, (void *)41);
    await_then_drop(rt, PN_FUTURE(&t));
    await_then_drop(rt, PN_FUTURE(&j));
    await_then_drop(rt, PN_FUTURE(&s));
    await_then_drop(rt, PN_FUTURE(&nap));
    await_then_drop(rt, PN_FUTURE(&y));
    await_then_drop(rt, PN_FUTURE(&job));
    cr_assert_eq(t.res, 0);
    cr_assert_eq(s.index, 1);
    cr_assert_eq(job.res, 0);
    cr_assert_eq((intptr_t)job.value, 42, "the drop kept the output");
    cr_assert_eq(drops, 1, "only the select's loser was dropped");

    answer ans = answer_new();
    pn_join_handle *h = NULL;
    cr_assert_eq(PN_SPAWN(rt, ans, &h), 0);
    pn_join_future jf = pn_join(h);
    await_then_drop(rt, PN_FUTURE(&jf));
    cr_assert_eq(((answer *)jf.output)->out, 42);
    pn_join_handle_free(h);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, dropping_a_completed_write_leaves_the_socket_working)
{
    pn_runtime *rt = flavour_new(fl);
    pn_unix_stream a, b;
    cr_assert_eq(pn_unix_stream_pair(&a, &b), 0);
    pn_write_future w = pn_write(&a.afd, "ping", 4);
    await_then_drop(rt, PN_FUTURE(&w));
    cr_assert_eq(w.res, 4);
    char buf[8] = { 0 };
    pn_read_future r = pn_read(&b.afd, buf, sizeof(buf));
    await_then_drop(rt, PN_FUTURE(&r));
    cr_assert_eq(r.res, 4);
    cr_assert_str_eq(buf, "ping");
    pn_write_future w2 = pn_write(&a.afd, "pong", 4);
    AWAIT(rt, w2);
    cr_assert_eq(w2.res, 4, "the socket still writes");
    pn_read_future r2 = pn_read(&b.afd, buf, sizeof(buf));
    AWAIT(rt, r2);
    cr_assert_eq(r2.res, 4);
    cr_assert_eq(memcmp(buf, "pong", 4), 0);
    cr_assert_eq(pn_unix_close(&a), 0);
    cr_assert_eq(pn_unix_close(&b), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, timeout_of_no_future_is_einval)
{
    pn_runtime *rt = flavour_new(fl);
    pn_timeout_future t = pn_timeout(NULL, PN_MS(1000));
    AWAIT(rt, t);
    cr_assert_eq(t.res, -EINVAL);
    pn_timeout_future u = pn_timeout_at(NULL, 0);
    AWAIT(rt, u);
    cr_assert_eq(u.res, -EINVAL);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- the runtime's lifecycle ------------------------------------------------ */

Test(misuse, freeing_a_null_runtime_is_a_noop)
{
    cr_assert_eq(pn_runtime_free(NULL), 0);
}

Test(misuse, runtime_calls_on_null_are_einval)
{
    answer a = answer_new();
    pn_runtime_metrics m;
    pn_worker_metrics wm;
    cr_assert_eq(pn_runtime_new(NULL, NULL), -EINVAL);
    cr_assert_eq(pn_runtime_shutdown(NULL), -EINVAL);
    cr_assert_eq(pn_runtime_shutdown_timeout(NULL, 0), -EINVAL);
    cr_assert_eq(pn_block_on(NULL, PN_FUTURE(&a)), -EINVAL);
    cr_assert_eq(pn_spawn(NULL, PN_FUTURE(&a), sizeof(a), NULL), -EINVAL);
    cr_assert_eq(pn_runtime_metrics_get(NULL, &m), -EINVAL);
    cr_assert_eq(pn_runtime_worker_metrics_get(NULL, 0, &wm), -EINVAL);
    cr_assert_eq(pn_blocking_pool_configure(NULL, 4, 0), -EINVAL);
    cr_assert_eq(pn_runtime_backend(NULL), PN_BACKEND_AUTO);
    cr_assert_null(pn_backend_name((pn_backend)99));
}

Test(misuse, runtime_config_out_of_range_is_einval)
{
    pn_runtime_config bad[6];
    for (int i = 0; i < 6; i++)
        pn_runtime_config_init(&bad[i]);
    bad[0].budget = 0;
    bad[1].event_interval = 0;
    bad[2].max_events = 0;
    bad[3].workers = 1u << 20;
    bad[4].flavor = (pn_runtime_flavor)7;
    bad[5].flavor = PN_RUNTIME_MULTI_THREAD;
    bad[5].driver = (pn_driver_mode)7;
    for (int i = 0; i < 6; i++) {
        pn_runtime *rt = (pn_runtime *)1;
        cr_assert_eq(pn_runtime_new(&bad[i], &rt), -EINVAL, "config %d", i);
        cr_assert_null(rt, "config %d: *out is NULL on error", i);
    }
}

BOTH(misuse, shutting_down_twice_is_a_noop)
{
    pn_runtime *rt = flavour_new(fl);
    int drops = 0;
    forever_future f = forever_new(&drops);
    cr_assert_eq(PN_SPAWN(rt, f, NULL), 0);
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    cr_assert_eq(pn_runtime_shutdown_timeout(rt, 0), 0);
    cr_assert_eq(drops, 1, "the task was dropped once");
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(drops, 1);
}

BOTH(misuse, spawning_after_shutdown_is_eshutdown)
{
    pn_runtime *rt = flavour_new(fl);
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    int drops = 0;
    forever_future f = forever_new(&drops);
    pn_join_handle *h = (pn_join_handle *)1;
    cr_assert_eq(PN_SPAWN(rt, f, &h), -ESHUTDOWN);
    cr_assert_null(h);
    cr_assert_eq(drops, 0, "the future is still the caller's");
    cr_assert_eq(f.polls, 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, blocking_on_after_shutdown_is_eshutdown)
{
    pn_runtime *rt = flavour_new(fl);
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    forever_future f = forever_new(NULL);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&f)), -ESHUTDOWN);
    cr_assert_eq(f.polls, 0, "not polled");
    pn_runtime_metrics m;
    cr_assert_eq(pn_runtime_metrics_get(rt, &m), 0, "metrics still read after shutdown");
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, blocking_calls_after_shutdown_are_eshutdown)
{
    pn_runtime *rt = flavour_new(fl);
    pn_blocking_future warm = pn_spawn_blocking(add_one, (void *)0);
    AWAIT(rt, warm);                      /* the pool exists */
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    cr_assert_eq(pn_blocking_pool_configure(rt, 2, 0), 0, "configuring is harmless");
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* A task that calls back into its own runtime's lifecycle. */
typedef struct reentrant {
    pn_future base;
    int (*call)(pn_runtime *rt);
    int res;
} reentrant;

static pn_poll reentrant_poll(pn_future *f, pn_cx *cx)
{
    reentrant *r = (reentrant *)f;
    r->res = r->call(cx->rt);
    return PN_READY;
}

static const pn_future_vtable reentrant_vt = { reentrant_poll, NULL, "reentrant" };

BOTH(misuse, shutting_down_or_freeing_from_inside_a_task_is_edeadlk)
{
    int (*calls[2])(pn_runtime *) = { pn_runtime_shutdown, pn_runtime_free };
    for (int i = 0; i < 2; i++) {
        pn_runtime *rt = flavour_new(fl);
        reentrant r = { .base = { &reentrant_vt }, .call = calls[i] };
        pn_join_handle *h = NULL;
        cr_assert_eq(PN_SPAWN(rt, r, &h), 0);
        pn_join_future j = pn_join(h);
        AWAIT(rt, j);
        cr_assert_eq(((reentrant *)j.output)->res, -EDEADLK, "call %d", i);
        runtime_still_works(rt);
        pn_join_handle_free(h);
        cr_assert_eq(pn_runtime_free(rt), 0);
    }
}

/* ---- spawn and join handles ---------------------------------------------- */

BOTH(misuse, spawning_a_bad_future_is_einval)
{
    pn_runtime *rt = flavour_new(fl);
    pn_future zero = { 0 };
    static const pn_future_vtable no_poll = { NULL, NULL, "no poll" };
    pn_future nopoll = { &no_poll };
    answer a = answer_new();
    pn_join_handle *h = (pn_join_handle *)1;
    cr_assert_eq(pn_spawn(rt, NULL, sizeof(a), &h), -EINVAL);
    cr_assert_null(h);
    cr_assert_eq(pn_spawn(rt, &zero, sizeof(zero), NULL), -EINVAL);
    cr_assert_eq(pn_spawn(rt, &nopoll, sizeof(nopoll), NULL), -EINVAL);
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), 0, NULL), -EINVAL);
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(&a), sizeof(pn_future) - 1, NULL), -EINVAL);
    cr_assert_eq(pn_spawn_local(NULL, PN_FUTURE(&a), sizeof(a), NULL), -EINVAL);
    cr_assert_eq(pn_block_on(rt, &zero), -EINVAL);
    cr_assert_eq(pn_block_on(rt, &nopoll), -EINVAL);
    runtime_still_works(rt);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* Calls pn_spawn_local with the context of its poll: a multi-thread
 * pn_block_on polls on a thread that is not a worker. */
typedef struct local_spawner {
    pn_future base;
    size_t size;
    int res;
} local_spawner;

static pn_poll local_spawner_poll(pn_future *f, pn_cx *cx)
{
    local_spawner *l = (local_spawner *)f;
    answer a = answer_new();
    l->res = pn_spawn_local(cx, PN_FUTURE(&a), l->size, NULL);
    return PN_READY;
}

static const pn_future_vtable local_spawner_vt = { local_spawner_poll, NULL, "local_spawner" };

Test(misuse, spawning_local_outside_a_worker_is_eperm)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    local_spawner l = { .base = { &local_spawner_vt }, .size = sizeof(answer) };
    AWAIT(rt, l);
    cr_assert_eq(l.res, -EPERM);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, spawning_local_with_a_huge_size_is_einval)
{
    pn_runtime *rt = flavour_new(fl);
    local_spawner l = { .base = { &local_spawner_vt }, .size = SIZE_MAX - 40 };
    pn_join_handle *h = NULL;
    cr_assert_eq(PN_SPAWN(rt, l, &h), 0);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(((local_spawner *)j.output)->res, -EINVAL);
    pn_join_handle_free(h);
    runtime_still_works(rt);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, join_handle_calls_on_null_are_defined)
{
    pn_join_handle_free(NULL);
    pn_join_handle_abort(NULL);
    cr_assert_not(pn_join_handle_is_finished(NULL));
    pn_runtime *rt = rt_new();
    pn_join_future j = pn_join(NULL);
    AWAIT(rt, j);
    cr_assert_eq(j.res, -EINVAL);
    cr_assert_null(j.output);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(misuse, a_join_handle_outlives_its_runtime)
{
    pn_runtime *rt = flavour_new(fl);
    int drops = 0;
    forever_future f = forever_new(&drops);
    answer a = answer_new();
    pn_join_handle *hf = NULL, *ha = NULL;
    cr_assert_eq(PN_SPAWN(rt, f, &hf), 0);
    cr_assert_eq(PN_SPAWN(rt, a, &ha), 0);
    pn_join_future ja = pn_join(ha);
    AWAIT(rt, ja);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(drops, 1);
    /* The handles are still valid: finished, cancelled or not. */
    cr_assert(pn_join_handle_is_finished(hf));
    cr_assert(pn_join_handle_is_finished(ha));
    pn_join_handle_abort(hf);               /* no effect on a finished task */
    pn_join_handle_abort(ha);
    pn_runtime *other = rt_new();
    pn_join_future jf = pn_join(hf);
    ja = pn_join(ha);
    AWAIT(other, jf);
    AWAIT(other, ja);
    cr_assert_eq(jf.res, -ECANCELED);
    cr_assert_null(jf.output);
    cr_assert_eq(ja.res, 0, "an abort after completion keeps the output");
    cr_assert_eq(((answer *)ja.output)->out, 42);
    pn_join_handle_free(hf);
    pn_join_handle_free(ha);
    cr_assert_eq(pn_runtime_free(other), 0);
}

/* ---- other calls with NULL or out-of-range arguments ---------------------- */

Test(misuse, blocking_calls_with_bad_arguments_are_einval)
{
    pn_runtime *rt = rt_new();
    cr_assert_eq(pn_blocking_pool_configure(rt, 0, 0), -EINVAL);
    pn_blocking_future b = pn_spawn_blocking(NULL, NULL);
    AWAIT(rt, b);
    cr_assert_eq(b.res, -EINVAL);
    cr_assert_null(b.value);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, metrics_of_a_worker_out_of_range_is_einval)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    pn_worker_metrics wm;
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 2, &wm), -EINVAL);
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, UINT32_MAX, &wm), -EINVAL);
    cr_assert_eq(pn_runtime_worker_metrics_get(rt, 0, NULL), -EINVAL);
    cr_assert_eq(pn_runtime_metrics_get(rt, NULL), -EINVAL);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(misuse, error_names_of_any_int_are_strings)
{
    const int codes[] = { 0, 1, -1, INT_MAX, INT_MIN, -EINVAL, 100000, -100000 };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        cr_assert_not_null(pn_strerror(codes[i]));
        cr_assert_not_null(pn_err_name(codes[i]));
    }
}

Test(misuse, async_fd_calls_on_null_or_closed_are_errors)
{
    pn_runtime *rt = rt_new();
    cr_assert_eq(pn_async_fd_init(NULL, 0), -EINVAL);
    pn_async_fd afd;
    cr_assert_eq(pn_async_fd_init(&afd, -1), -EBADF);
    cr_assert_eq(pn_async_fd_register(NULL, rt), -EINVAL);
    cr_assert_eq(pn_async_fd_close(NULL), -EINVAL);
    cr_assert_eq(pn_async_fd_release(NULL), -EBADF);
    char buf[4];
    pn_read_future r = pn_read(NULL, buf, sizeof(buf));
    AWAIT(rt, r);
    cr_assert_eq(r.res, -EINVAL);
    pn_write_future w = pn_write(NULL, buf, sizeof(buf));
    AWAIT(rt, w);
    cr_assert_eq(w.res, -EINVAL);
    pn_close_future c = pn_close_async(NULL);
    AWAIT(rt, c);
    cr_assert_eq(c.res, -EINVAL);
    /* A closed pn_async_fd: close again is harmless, operations say EBADF. */
    pn_unix_stream a, b;
    cr_assert_eq(pn_unix_stream_pair(&a, &b), 0);
    cr_assert_eq(pn_unix_close(&a), 0);
    cr_assert_eq(pn_unix_close(&a), 0);
    pn_read_future rc = pn_read(&a.afd, buf, sizeof(buf));
    AWAIT(rt, rc);
    cr_assert_lt(rc.res, 0);
    cr_assert_eq(pn_unix_close(&b), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* One poll of a writev whose lengths add up past SSIZE_MAX. */
typedef struct bogus_writev {
    pn_future base;
    pn_async_fd *afd;
    ssize_t res;
} bogus_writev;

static pn_poll bogus_writev_poll(pn_future *f, pn_cx *cx)
{
    bogus_writev *b = (bogus_writev *)f;
    char c = 'x';
    struct iovec iov[2] = { { &c, 1 }, { &c, SIZE_MAX } };
    pn_poll p = pn_async_fd_poll_writev(b->afd, cx, iov, 2, &b->res);
    if (p == PN_PENDING)
        b->res = 1;                     /* a bogus send was queued */
    return PN_READY;
}

static const pn_future_vtable bogus_writev_vt = { bogus_writev_poll, NULL, "bogus_writev" };

/* Before: in io_uring completion mode the sum wrapped, and a send of
 * 256 KiB read past the one-byte buffer; writev(2) says EINVAL. */
BOTH(misuse, writev_whose_lengths_overflow_is_einval)
{
    pn_runtime *rt = flavour_new(fl);
    pn_unix_stream a, b;
    cr_assert_eq(pn_unix_stream_pair(&a, &b), 0);
    bogus_writev w = { { &bogus_writev_vt }, &a.afd, 0 };
    AWAIT(rt, w);
    cr_assert_eq(w.res, -EINVAL, "res %zd", w.res);
    pn_write_future w2 = pn_write(&a.afd, "ok", 2);
    AWAIT(rt, w2);
    cr_assert_eq(w2.res, 2, "the socket still writes");
    cr_assert_eq(pn_unix_close(&a), 0);
    cr_assert_eq(pn_unix_close(&b), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}
