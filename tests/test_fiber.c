/*
 * test_fiber.c - stackful tasks (pollen/fiber.h): running, awaiting every
 * kind of future, argument copies, pinning and thread-locals, cancellation
 * and shutdown unwinding, nesting, stack caching, overflow, misuse.
 */
#include "helpers.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/sys.h"
#include "fiber/stack.h"
#include "fiber/fiber_int.h"

#define main echo_threads_main
#include "../examples/echo_threads.c"
#undef main

#define FTEST(name) Test(fiber, name, .timeout = PN_TEST_TIMEOUT)

/* ---- running and awaiting ---------------------------------------------- */

typedef struct basic_arg {
    int in, out;
    int sleep_res, yield_res;
    bool in_fiber;
    const char *name;
} basic_arg;

static void basic_fn(void *p)
{
    basic_arg *a = p;
    a->in_fiber = pn_fiber_runtime() != NULL;
    a->name = pn_fiber_name();
    a->sleep_res = pn_fiber_sleep(PN_MS(1));
    a->yield_res = pn_fiber_yield();
    a->out = a->in * 2;
}

BOTH(fiber, run_returns_after_the_function)
{
    pn_runtime *rt = flavour_new(fl);
    basic_arg a = { .in = 21 };
    pn_fiber_opts o = { .name = "basic" };
    cr_assert_eq(pn_fiber_run(rt, basic_fn, &a, &o), 0);
    cr_assert_eq(a.out, 42);
    cr_assert(a.in_fiber);
    cr_assert_str_eq(a.name, "basic");
    cr_assert_eq(a.sleep_res, 0);
    cr_assert_eq(a.yield_res, 0);
    cr_assert_null(pn_fiber_runtime(), "not in a fiber after it returned");
    pn_runtime_free(rt);
}

FTEST(await_outside_a_fiber_is_eperm)
{
    pn_sleep_future s = pn_sleep(PN_MS(1));
    cr_assert_eq(pn_await(&s), -EPERM);
    cr_assert_eq(pn_fiber_sleep(1), -EPERM);
    cr_assert_eq(pn_fiber_yield(), -EPERM);
    cr_assert_null(pn_fiber_name());
    cr_assert(!pn_fiber_cancelled());
}

typedef struct many_ctx {
    _Atomic int done;
    _Atomic int sum;
} many_ctx;

typedef struct many_arg {
    many_ctx *ctx;
    int id;
} many_arg;

static void many_fn(void *p)
{
    many_arg *a = p;                          /* the fiber's own copy */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(pn_fiber_yield(), 0);
        cr_assert_eq(pn_fiber_sleep(PN_US(50)), 0);
    }
    atomic_fetch_add(&a->ctx->sum, a->id);
    atomic_fetch_add(&a->ctx->done, 1);
}

BOTH(fiber, many_spawned_fibers_join)
{
    enum { N = 300 };
    pn_runtime *rt = flavour_new(fl);
    size_t live0 = pn__stack_live();
    many_ctx ctx = { 0 };
    pn_join_handle *h[N];
    pn_fiber_opts o = { .arg_size = sizeof(many_arg), .stack_size = PN_FIBER_STACK_MIN };
    for (int i = 0; i < N; i++) {
        many_arg a = { &ctx, i + 1 };
        cr_assert_eq(pn_fiber_spawn(rt, many_fn, &a, &o, &h[i]), 0);
        a.id = -1000000;                      /* the fiber has its own copy */
    }
    for (int i = 0; i < N; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        cr_assert_eq(((pn_fiber_future *)j.output)->res, 0);
        pn_join_handle_free(h[i]);
    }
    cr_assert_eq(atomic_load(&ctx.done), N);
    cr_assert_eq(atomic_load(&ctx.sum), N * (N + 1) / 2);
    pn_runtime_free(rt);
    cr_assert_eq(pn__stack_live(), live0, "stacks left mapped after the runtime was freed");
}

/* ---- every kind of future ------------------------------------------------- */

static void *blocking_double(void *p)
{
    return (void *)((intptr_t)p * 2);
}

typedef struct chan_arg {
    pn_mpsc_tx *tx;
    pn_mpsc_rx *rx;
    long sum;
    int blocking_ok;
} chan_arg;

static void producer(void *p)
{
    chan_arg *a = p;
    for (int i = 1; i <= 1000; i++)
        cr_assert_eq(pn_fiber_send(a->tx, &i), 0);
    pn_mpsc_tx_free(a->tx);
}

static void consumer(void *p)
{
    chan_arg *a = p;
    pn_join_handle *ph;
    cr_assert_eq(pn_fiber_spawn(pn_fiber_runtime(), producer, a, NULL, &ph), 0);
    int v, err;
    while ((err = pn_fiber_recv(a->rx, &v)) == 0)
        a->sum += v;
    cr_assert_eq(err, -EPIPE, "closed and empty: %d", err);
    void *out = NULL;
    cr_assert_eq(pn_fiber_join(ph, &out), 0);
    cr_assert_not_null(out);
    pn_join_handle_free(ph);
    pn_blocking_future b = pn_spawn_blocking(blocking_double, (void *)(intptr_t)21);
    cr_assert_eq(pn_await(&b), 0);
    a->blocking_ok = b.res == 0 && (intptr_t)b.value == 42;
}

BOTH(fiber, channels_join_and_blocking_calls)
{
    pn_runtime *rt = flavour_new(fl);
    chan_arg a = { 0 };
    cr_assert_eq(pn_mpsc_new(4, sizeof(int), &a.tx, &a.rx), 0);
    cr_assert_eq(pn_fiber_run(rt, consumer, &a, NULL), 0);
    cr_assert_eq(a.sum, 1000L * 1001 / 2);
    cr_assert(a.blocking_ok);
    pn_mpsc_rx_free(a.rx);
    pn_runtime_free(rt);
}

typedef struct tcp_arg {
    pn_tcp_listener l;
    pn_sockaddr addr;
    _Atomic size_t got;
    _Atomic int mismatches;
} tcp_arg;

static void tcp_echo_conn(void *p)
{
    pn_tcp_stream *s = p;
    char buf[1000];
    ssize_t n;
    while ((n = pn_fiber_read(s, buf, sizeof(buf))) > 0)
        if (pn_fiber_write_all(s, buf, (size_t)n) < 0)
            break;
    pn_tcp_close(s);
}

static void tcp_server(void *p)
{
    tcp_arg *a = p;
    pn_tcp_stream s;
    pn_fiber_opts o = { .arg_size = sizeof(s) };
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pn_fiber_accept(&a->l, &s, NULL), 0);
        cr_assert_eq(pn_fiber_spawn(pn_fiber_runtime(), tcp_echo_conn, &s, &o, NULL), 0);
    }
}

static void tcp_client(void *p)
{
    tcp_arg *a = p;
    pn_tcp_stream s;
    cr_assert_eq(pn_fiber_connect(&s, &a->addr, PN_MS(10000)), 0);
    enum { LEN = 256 << 10 };
    char *out = malloc(LEN), *in = malloc(LEN);
    for (size_t i = 0; i < LEN; i++)
        out[i] = (char)(i * 7 + i / 251);
    cr_assert_eq(pn_fiber_write_all(&s, out, LEN), (ssize_t)LEN);
    size_t got = 0;
    while (got < LEN) {
        ssize_t n = pn_fiber_read(&s, in + got, LEN - got);
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    atomic_fetch_add(&a->got, got);
    if (memcmp(in, out, LEN) != 0)
        atomic_fetch_add(&a->mismatches, 1);
    free(in);
    free(out);
    pn_tcp_close(&s);
}

static void tcp_main(void *p)
{
    tcp_arg *a = p;
    pn_join_handle *srv, *cl[4];
    pn_runtime *rt = pn_fiber_runtime();
    cr_assert_eq(pn_fiber_spawn(rt, tcp_server, a, NULL, &srv), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pn_fiber_spawn(rt, tcp_client, a, NULL, &cl[i]), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pn_fiber_join(cl[i], NULL), 0);
        pn_join_handle_free(cl[i]);
    }
    cr_assert_eq(pn_fiber_join(srv, NULL), 0);
    pn_join_handle_free(srv);
}

BOTH(fiber, tcp_echo_between_fibers)
{
    pn_runtime *rt = flavour_new(fl);
    tcp_arg a = { 0 };
    pn_sockaddr any = pn_sockaddr_loopback4(0);
    cr_assert_eq(pn_tcp_listen(&a.l, &any, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&a.l, &a.addr), 0);
    cr_assert_eq(pn_fiber_run(rt, tcp_main, &a, NULL), 0);
    cr_assert_eq(atomic_load(&a.got), (size_t)4 * (256 << 10));
    cr_assert_eq(atomic_load(&a.mismatches), 0);
    pn_tcp_listener_close(&a.l);
    pn_runtime_free(rt);
}

/* examples/echo_threads.c's server, its own accept loop and connection
 * fibers, against fiber clients in the same runtime; then aborted. */
typedef struct ex_client {
    pn_sockaddr addr;
    _Atomic int ok;
} ex_client;

static void ex_client_fn(void *p)
{
    ex_client *c = *(ex_client **)p;
    pn_tcp_stream s;
    cr_assert_eq(pn_fiber_connect(&s, &c->addr, 0), 0);
    for (int i = 0; i < 50; i++) {
        char out[64], in[64];
        int len = snprintf(out, sizeof(out), "message %d from %p", i, (void *)&s);
        cr_assert_eq(pn_fiber_write_all(&s, out, (size_t)len), len);
        int got = 0;
        while (got < len) {
            ssize_t n = pn_fiber_read(&s, in + got, sizeof(in) - (size_t)got);
            cr_assert_gt(n, 0);
            got += (int)n;
        }
        cr_assert_eq(got, len);
        cr_assert(memcmp(in, out, (size_t)len) == 0);
    }
    pn_tcp_close(&s);
    atomic_fetch_add(&c->ok, 1);
}

static void ex_clients(void *p)
{
    enum { N = 16 };
    pn_join_handle *h[N];
    pn_fiber_opts o = { .arg_size = sizeof(ex_client *) };
    for (int i = 0; i < N; i++)
        cr_assert_eq(pn_fiber_spawn(pn_fiber_runtime(), ex_client_fn, &p, &o, &h[i]), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(pn_fiber_join(h[i], NULL), 0);
        pn_join_handle_free(h[i]);
    }
}

BOTH(fiber, example_echo_threads_serves_clients)
{
    pn_runtime *rt = flavour_new(fl);
    pn_tcp_listener l;
    pn_sockaddr any = pn_sockaddr_loopback4(0);
    ex_client c = { 0 };
    cr_assert_eq(pn_tcp_listen(&l, &any, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&l, &c.addr), 0);
    pn_join_handle *srv;
    cr_assert_eq(pn_fiber_spawn(rt, serve, &l, NULL, &srv), 0);
    cr_assert_eq(pn_fiber_run(rt, ex_clients, &c, NULL), 0);
    cr_assert_eq(atomic_load(&c.ok), 16);
    pn_join_handle_abort(srv);                /* the accept loop returns */
    pn_join_future j = pn_join(srv);
    AWAIT(rt, j);
    cr_assert_eq(j.res, -ECANCELED);
    pn_join_handle_free(srv);
    pn_tcp_listener_close(&l);
    pn_runtime_free(rt);
}

/* ---- threads: a fiber never moves ---------------------------------------- */

static _Thread_local int tls_marker;

typedef struct stay_ctx {
    _Atomic int moved, done;
    _Atomic int threads_seen_mask;
} stay_ctx;

static void stay_fn(void *p)
{
    stay_ctx *c = *(stay_ctx **)p;
    pthread_t self = pthread_self();
    int *err_addr = &errno;
    int *tls_addr = &tls_marker;
    for (int i = 0; i < 200; i++) {
        errno = 1000 + i;
        tls_marker = i;
        int r = (i % 3) ? pn_fiber_yield() : pn_fiber_sleep(PN_US(20));
        cr_assert_eq(r, 0);
        if (!pthread_equal(self, pthread_self()) || err_addr != &errno || tls_addr != &tls_marker)
            atomic_fetch_add(&c->moved, 1);
    }
    atomic_fetch_add(&c->done, 1);
}

/* Plain futures that yield, spawned beside the fibers from outside the
 * runtime, keep both workers busy so that stealing happens. */
Test(fiber, fibers_stay_on_their_worker, .timeout = PN_TEST_TIMEOUT)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_MULTI_THREAD);
    stay_ctx c = { 0 };
    stay_ctx *cp = &c;
    enum { N = 64 };
    pn_join_handle *h[N];
    pn_fiber_opts o = { .arg_size = sizeof(cp) };
    for (int i = 0; i < N; i++) {
        cr_assert_eq(pn_fiber_spawn(rt, stay_fn, &cp, &o, &h[i]), 0);
        steps_future busy = steps_new(50, NULL);
        cr_assert_eq(PN_SPAWN(rt, busy, NULL), 0);
    }
    for (int i = 0; i < N; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        pn_join_handle_free(h[i]);
    }
    cr_assert_eq(atomic_load(&c.done), N);
    cr_assert_eq(atomic_load(&c.moved), 0, "a fiber changed threads across an await");
    pn_runtime_free(rt);
}

/* ---- cancellation and shutdown ------------------------------------------ */

typedef struct cancel_arg {
    int drops;
    int first, second, third;
    _Atomic int cleaned;
    _Atomic bool started;
    pthread_t cleanup_thread;
} cancel_arg;

static void cancel_fn(void *p)
{
    cancel_arg *a = p;
    forever_future f = forever_new(&a->drops);
    atomic_store(&a->started, true);
    a->first = pn_await(&f);                  /* never ready: until aborted */
    a->second = pn_fiber_yield();
    a->third = pn_fiber_sleep(PN_MS(3600000));
    cr_assert(pn_fiber_cancelled());
    a->cleanup_thread = pthread_self();
    atomic_fetch_add(&a->cleaned, 1);
}

BOTH(fiber, abort_makes_awaits_fail_and_the_function_return)
{
    pn_runtime *rt = flavour_new(fl);
    cancel_arg a = { 0 };
    pn_join_handle *h;
    cr_assert_eq(pn_fiber_spawn(rt, cancel_fn, &a, NULL, &h), 0);
    /* Let it start and suspend: sleep on the runtime until it has. */
    while (!atomic_load(&a.started)) {
        pn_sleep_future s = pn_sleep(PN_MS(1));
        AWAIT(rt, s);
    }
    pn_join_handle_abort(h);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, -ECANCELED);
    cr_assert_eq(a.first, -ECANCELED);
    cr_assert_eq(a.second, -ECANCELED);
    cr_assert_eq(a.third, -ECANCELED);
    cr_assert_eq(a.drops, 1, "the pending future was dropped once");
    cr_assert_eq(atomic_load(&a.cleaned), 1);
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* Freeing the runtime with fibers suspended: each returns; on the
 * multi-thread runtime, on its worker, before that worker exits. */
BOTH(fiber, shutdown_unwinds_suspended_fibers)
{
    enum { N = 20 };
    pn_runtime *rt = flavour_new(fl);
    size_t live0 = pn__stack_live();
    cancel_arg a[N];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < N; i++)
        cr_assert_eq(pn_fiber_spawn(rt, cancel_fn, &a[i], NULL, NULL), 0);
    for (int i = 0; i < N; i++)
        while (!atomic_load(&a[i].started)) {
            pn_sleep_future s = pn_sleep(PN_MS(1));
            AWAIT(rt, s);
        }
    pn_runtime_free(rt);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&a[i].cleaned), 1, "fiber %d did not return", i);
        cr_assert_eq(a[i].first, -ECANCELED);
        cr_assert_eq(a[i].drops, 1);
        if (fl == PN_RUNTIME_MULTI_THREAD)
            cr_assert(!pthread_equal(a[i].cleanup_thread, pthread_self()),
                      "unwound on the freeing thread, not on its worker");
    }
    cr_assert_eq(pn__stack_live(), live0);
    cr_assert_eq(pn__fiber_thread_count(), 0);
}

/* A never-polled fiber and a fiber future dropped before its first poll
 * cost nothing and run nothing. */
FTEST(dropping_an_unstarted_fiber_runs_nothing)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    basic_arg a = { .in = 1 };
    pn_fiber_future f = pn_fiber(basic_fn, &a, NULL);
    pn_future_drop(&f.base);
    pn_join_handle *h;
    cr_assert_eq(pn_fiber_spawn(rt, basic_fn, &a, NULL, &h), 0);
    pn_join_handle_abort(h);
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, -ECANCELED);
    cr_assert_eq(a.out, 0, "the function never ran");
    pn_join_handle_free(h);
    pn_runtime_free(rt);
}

/* ---- nesting --------------------------------------------------------------- */

static void inner_fn(void *p)
{
    int *v = p;
    cr_assert_eq(pn_fiber_sleep(PN_US(100)), 0);
    cr_assert_str_eq(pn_fiber_name(), "inner");
    *v += 1;
}

static void outer_fn(void *p)
{
    int *v = p;
    pn_fiber_opts o = { .name = "inner" };
    for (int i = 0; i < 10; i++) {
        pn_fiber_future in = pn_fiber(inner_fn, v, &o);
        cr_assert_eq(pn_await(&in), 0);
        cr_assert_eq(in.res, 0);
        cr_assert_str_eq(pn_fiber_name(), "outer");
    }
    *v += 100;
}

BOTH(fiber, a_fiber_awaits_a_fiber)
{
    pn_runtime *rt = flavour_new(fl);
    int v = 0;
    pn_fiber_opts o = { .name = "outer" };
    cr_assert_eq(pn_fiber_run(rt, outer_fn, &v, &o), 0);
    cr_assert_eq(v, 110);
    pn_runtime_free(rt);
}

/* ---- stacks ---------------------------------------------------------------- */

static void touch_fn(void *p)
{
    (void)p;
    volatile char buf[8192];
    for (size_t i = 0; i < sizeof(buf); i += 512)
        buf[i] = (char)i;
    cr_assert_eq(pn_fiber_yield(), 0);
    cr_assert_eq(buf[512], (char)512);
}

FTEST(finished_stacks_are_reused)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    size_t live0 = pn__stack_live();
    for (int i = 0; i < 100; i++)
        cr_assert_eq(pn_fiber_run(rt, touch_fn, NULL, NULL), 0);
    cr_assert_leq(pn__stack_live(), live0 + 1, "one stack serves fibers that run one after another");
    pn_runtime_free(rt);
    cr_assert_eq(pn__stack_live(), live0);
}

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *failing_mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
    (void)a; (void)l; (void)p; (void)f; (void)fd; (void)o;
    errno = ENOMEM;
    return MAP_FAILED;
}

FTEST(no_memory_for_a_stack_is_enomem)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    real_mmap = pn__sys.mmap;
    pn__sys.mmap = failing_mmap;
    basic_arg a = { .in = 1 };
    pn_join_handle *h = (pn_join_handle *)&a;
    int e1 = pn_fiber_spawn(rt, basic_fn, &a, NULL, &h);
    int e2 = pn_fiber_run(rt, basic_fn, &a, NULL);
    pn__sys.mmap = real_mmap;
    cr_assert_eq(e1, -ENOMEM);
    cr_assert_null(h);
    cr_assert_eq(e2, -ENOMEM);
    cr_assert_eq(a.out, 0);
    cr_assert_eq(pn_fiber_run(rt, basic_fn, &a, NULL), 0, "works again once memory is back");
    cr_assert_eq(a.out, 2);
    pn_runtime_free(rt);
}

FTEST(bad_arguments_are_einval_or_eshutdown)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    size_t live0 = pn__stack_live();
    int x = 0;
    pn_fiber_opts small = { .stack_size = PN_FIBER_STACK_MIN - 1 };
    pn_fiber_opts big_arg = { .arg_size = PN_FIBER_ARG_MAX + 1 };
    pn_fiber_opts null_arg = { .arg_size = 8 };
    cr_assert_eq(pn_fiber_spawn(NULL, basic_fn, &x, NULL, NULL), -EINVAL);
    cr_assert_eq(pn_fiber_spawn(rt, NULL, &x, NULL, NULL), -EINVAL);
    cr_assert_eq(pn_fiber_spawn(rt, basic_fn, &x, &small, NULL), -EINVAL);
    cr_assert_eq(pn_fiber_spawn(rt, basic_fn, &x, &big_arg, NULL), -EINVAL);
    cr_assert_eq(pn_fiber_spawn(rt, basic_fn, NULL, &null_arg, NULL), -EINVAL);
    cr_assert_eq(pn_fiber_run(rt, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(pn_fiber_run(rt, basic_fn, &x, &small), -EINVAL);
    cr_assert_eq(pn_runtime_shutdown(rt), 0);
    cr_assert_eq(pn_fiber_spawn(rt, basic_fn, &x, NULL, NULL), -ESHUTDOWN);
    cr_assert_eq(pn__stack_live(), live0 + (pn__stack_live() > live0),
                 "at most the cached stack of the refused spawn");
    pn_runtime_free(rt);
    cr_assert_eq(pn__stack_live(), live0);
}

/* ---- overflow -------------------------------------------------------------- */

static int recurse(volatile char *prev, int depth)
{
    volatile char frame[512];
    frame[0] = prev ? prev[0] : 1;
    if (depth < 0)                            /* never: hides the recursion */
        return 0;
    return depth + recurse(frame, depth + 1) + frame[0];
}

static void overflow_fn(void *p)
{
    (void)p;
    recurse(NULL, 0);
}

/* The child: a fresh process (an exec of this binary, so no sanitizer
 * objects to a fork of a threaded process) that runs a fiber recursing
 * without end, before Criterion starts. */
__attribute__((constructor)) static void overflow_child(void)
{
    if (!getenv("PN_TEST_FIBER_OVERFLOW"))
        return;
    pn_runtime *rt;
    if (pn_runtime_new(NULL, &rt))
        _exit(3);
    pn_fiber_opts o = { .name = "deep", .stack_size = 32 << 10 };
    pn_fiber_run(rt, overflow_fn, NULL, &o);
    _exit(4);                                 /* not reached */
}

/* The child must die of SIGSEGV with a line naming the fiber
 * (AddressSanitizer, which owns SIGSEGV in its builds, reports the
 * overflow in its own words). */
FTEST(overflow_names_the_fiber)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        setenv("PN_TEST_FIBER_OVERFLOW", "1", 1);
        char *argv[] = { (char *)"pollen_tests", NULL };
        execv("/proc/self/exe", argv);
        _exit(5);
    }
    close(pfd[1]);
    char out[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(out) - 1 && (r = read(pfd[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(pfd[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
#if defined(__SANITIZE_ADDRESS__)
    cr_assert(strstr(out, "stack-overflow") != NULL, "child said: %s", out);
#else
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %#x, said: %s", st, out);
    cr_assert(strstr(out, "pollen: fiber 'deep' overflowed its") != NULL, "child said: %s", out);
#endif
}
