/*
 * test_net_resolve.c - pn_resolve (pollen/resolve.h): "localhost" through
 * getaddrinfo on the blocking pool, numeric hosts without the pool, family
 * filters, invalid names and arguments, the EAI_* -> errno table, many
 * lookups at once, drop while queued / finished-but-uncollected / never
 * polled (nothing leaks: the ASan run checks), allocation failures.
 *
 * No network: only "localhost" (from /etc/hosts) and numeric hosts; the
 * invalid names ("a..b", "bad name") are refused by the resolver before
 * any query is sent.  Runtime cases run on both runtime flavours (2
 * workers for the multi-thread one).  No timing is asserted.
 */
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "helpers.h"
#include "core/sys.h"
#include "executor/blocking.h"

static void resolve_fini(void) { pn__sys_reset(); }

TestSuite(net_resolve, .timeout = PN_TEST_TIMEOUT, .fini = resolve_fini);

static bool is_loopback(const pn_sockaddr *a)
{
    if (pn_sockaddr_family(a) == AF_INET)
        return (ntohl(a->in.sin_addr.s_addr) >> 24) == 127;
    return pn_sockaddr_family(a) == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->in6.sin6_addr);
}

static int resolve_now(pn_runtime *rt, const char *host, uint16_t port,
                       const pn_resolve_opts *opts, pn_resolve_future *out)
{
    *out = pn_resolve_ex(host, port, opts);
    AWAIT(rt, *out);
    cr_assert_eq(out->count, out->res > 0 ? (size_t)out->res : 0);
    cr_assert_eq(out->addrs == NULL, out->res <= 0);
    return out->res;
}

BOTH(net_resolve, localhost_resolves_to_loopback)
{
    pn_runtime *rt = flavour_new(fl);
    pn_resolve_future r = pn_resolve("localhost", 8080);
    AWAIT(rt, r);
    cr_assert_geq(r.res, 1, "localhost: %s", pn_strerror(r.res));
    cr_assert_eq(r.count, (size_t)r.res);
    for (size_t i = 0; i < r.count; i++) {
        cr_assert(is_loopback(&r.addrs[i]), "address %zu is a loopback", i);
        cr_assert_eq(pn_sockaddr_port(&r.addrs[i]), 8080);
        for (size_t k = 0; k < i; k++)
            cr_assert(!pn_sockaddr_equal(&r.addrs[i], &r.addrs[k]), "each address once");
    }
    pn_resolve_free(&r);
    cr_assert_null(r.addrs);
    cr_assert_eq(r.count, 0);
    pn_resolve_free(&r);                  /* idempotent */

    pn_resolve_future r4;
    cr_assert_eq(resolve_now(rt, "localhost", 53, &(pn_resolve_opts){ .family = AF_INET }, &r4), 1);
    char buf[PN_SOCKADDR_STRLEN];
    cr_assert_geq(pn_sockaddr_format(&r4.addrs[0], buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "127.0.0.1:53");
    pn_resolve_free(&r4);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(net_resolve, numeric_hosts)
{
    pn_runtime *rt = flavour_new(fl);
    struct { const char *host; int family; const char *want; } cases[] = {
        { "127.0.0.1", 0, "127.0.0.1:80" },
        { "10.1.2.3", AF_INET, "10.1.2.3:80" },
        { "::1", 0, "[::1]:80" },
        { "[::1]", AF_INET6, "[::1]:80" },
        { "[2001:db8::7]", 0, "[2001:db8::7]:80" },
        { "fe80::1%1", 0, "[fe80::1%1]:80" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pn_resolve_future r;
        cr_assert_eq(resolve_now(rt, cases[i].host, 80,
                                 &(pn_resolve_opts){ .family = cases[i].family }, &r), 1,
                     "%s", cases[i].host);
        char buf[PN_SOCKADDR_STRLEN];
        cr_assert_geq(pn_sockaddr_format(&r.addrs[0], buf, sizeof(buf)), 0);
        cr_assert_str_eq(buf, cases[i].want);
        pn_resolve_free(&r);
    }
    /* An IPv4 literal asked for as IPv6 goes to getaddrinfo, which finds
     * no IPv6 address for it. */
    pn_resolve_future r;
    cr_assert_lt(resolve_now(rt, "127.0.0.1", 80, &(pn_resolve_opts){ .family = AF_INET6 }, &r), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(net_resolve, numeric_hosts_never_reach_the_pool)
{
    /* Polled with no runtime at all: a numeric host completes on the first
     * poll; a name needs the pool (-EINVAL without a runtime). */
    pn_waker none = PN_WAKER_NONE;
    pn_cx cx = { .waker = &none, .rt = NULL, .budget = 128 };
    pn_resolve_future r = pn_resolve("192.0.2.1", 7);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&r), &cx), PN_READY);
    cr_assert_eq(r.res, 1);
    cr_assert_eq(pn_sockaddr_port(&r.addrs[0]), 7);
    pn_resolve_free(&r);
    r = pn_resolve("localhost", 7);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&r), &cx), PN_READY);
    cr_assert_eq(r.res, -EINVAL, "a name with no runtime to run it");
}

BOTH(net_resolve, invalid_names_and_arguments)
{
    pn_runtime *rt = flavour_new(fl);
    pn_resolve_future r;
    cr_assert_eq(resolve_now(rt, "a..b", 80, NULL, &r), -ENOENT);
    cr_assert_eq(resolve_now(rt, "bad name", 80, NULL, &r), -ENOENT);
    cr_assert_eq(resolve_now(rt, "[::1", 80, NULL, &r), -ENOENT);
    cr_assert_eq(resolve_now(rt, "", 80, NULL, &r), -EINVAL);
    cr_assert_eq(resolve_now(rt, NULL, 80, NULL, &r), -EINVAL);
    cr_assert_eq(resolve_now(rt, "localhost", 80, &(pn_resolve_opts){ .family = AF_UNIX }, &r),
                 -EINVAL);
    char *longname = malloc(2000);
    memset(longname, 'a', 1999);
    longname[1999] = '\0';
    cr_assert_eq(resolve_now(rt, longname, 80, NULL, &r), -ENAMETOOLONG);
    longname[1024] = '\0';               /* 1024 bytes: allowed, but no such name */
    cr_assert_eq(resolve_now(rt, longname, 80, NULL, &r), -ENOENT);
    free(longname);
    pn_resolve_free(&r);                 /* harmless after a failure */
    pn_resolve_free(NULL);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

Test(net_resolve, eai_to_errno_table)
{
    cr_assert_eq(pn_resolve_errno(0, 0), 0);
    cr_assert_eq(pn_resolve_errno(EAI_NONAME, 0), -ENOENT);
    cr_assert_eq(pn_resolve_errno(EAI_NODATA, 0), -ENOENT);
    cr_assert_eq(pn_resolve_errno(EAI_ADDRFAMILY, 0), -ENOENT);
    cr_assert_eq(pn_resolve_errno(EAI_AGAIN, 0), -EAGAIN);
    cr_assert_eq(pn_resolve_errno(EAI_FAIL, 0), -EIO);
    cr_assert_eq(pn_resolve_errno(EAI_MEMORY, 0), -ENOMEM);
    cr_assert_eq(pn_resolve_errno(EAI_FAMILY, 0), -EAFNOSUPPORT);
    cr_assert_eq(pn_resolve_errno(EAI_SOCKTYPE, 0), -ESOCKTNOSUPPORT);
    cr_assert_eq(pn_resolve_errno(EAI_SERVICE, 0), -EINVAL);
    cr_assert_eq(pn_resolve_errno(EAI_BADFLAGS, 0), -EINVAL);
    cr_assert_eq(pn_resolve_errno(EAI_OVERFLOW, 0), -EOVERFLOW);
    cr_assert_eq(pn_resolve_errno(EAI_CANCELED, 0), -ECANCELED);
    cr_assert_eq(pn_resolve_errno(EAI_INTR, 0), -EINTR);
    cr_assert_eq(pn_resolve_errno(EAI_IDN_ENCODE, 0), -EILSEQ);
    cr_assert_eq(pn_resolve_errno(EAI_SYSTEM, EMFILE), -EMFILE);
    cr_assert_eq(pn_resolve_errno(EAI_SYSTEM, 0), -EIO);
    cr_assert_eq(pn_resolve_errno(-12345, 0), -EIO);
}

/* Many lookups at once, from tasks. */
typedef struct lookup_task {
    pn_future base;
    int pc;
    uint16_t port;
    pn_resolve_future r;
    int res;
} lookup_task;

static pn_poll lookup_task_poll(pn_future *f, pn_cx *cx)
{
    lookup_task *t = (lookup_task *)f;
    PN_ASYNC_BEGIN(t->pc);
    t->r = pn_resolve("localhost", t->port);
    PN_AWAIT(t->pc, &t->r, cx);
    t->res = t->r.res;
    if (t->res > 0 && pn_sockaddr_port(&t->r.addrs[0]) != t->port)
        t->res = -EPROTO;
    pn_resolve_free(&t->r);
    PN_ASYNC_END(t->pc);
}

static void lookup_task_drop(pn_future *f)
{
    lookup_task *t = (lookup_task *)f;
    if (t->pc != 0 && t->pc != PN_ASYNC_DONE)
        pn_future_drop(PN_FUTURE(&t->r));
}

static const pn_future_vtable lookup_task_vt = { lookup_task_poll, lookup_task_drop, "lookup" };

BOTH(net_resolve, many_lookups_at_once)
{
    enum { N = 40 };
    pn_runtime *rt = flavour_new(fl);
    pn_join_handle *h[N];
    for (int i = 0; i < N; i++) {
        lookup_task t = { .base = { &lookup_task_vt }, .port = (uint16_t)(1000 + i) };
        cr_assert_eq(PN_SPAWN(rt, t, &h[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pn_join_future j = pn_join(h[i]);
        AWAIT(rt, j);
        cr_assert_eq(j.res, 0);
        cr_assert_geq(((lookup_task *)j.output)->res, 1, "lookup %d: %d", i,
                      ((lookup_task *)j.output)->res);
        pn_join_handle_free(h[i]);
    }
    /* Tasks still resolving when the runtime is freed are dropped. */
    for (int i = 0; i < N; i++) {
        lookup_task t = { .base = { &lookup_task_vt }, .port = 1 };
        cr_assert_eq(PN_SPAWN(rt, t, NULL), 0);
    }
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* ---- drop: queued, finished but not collected, never polled -------------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static _Atomic int gated_started;

static void *gated(void *arg)
{
    atomic_fetch_add(&gated_started, 1);
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    return arg;
}

static void gate_set(bool open)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = open;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

Test(net_resolve, drop_while_queued_or_uncollected_frees_everything)
{
    pn_runtime *rt = flavour_new(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(pn_blocking_pool_configure(rt, 1, PN_SEC(10)), 0);
    static waker_probe probe;
    pn_waker w = { &probe, &waker_probe_vt };
    pn_cx cx = { .waker = &w, .rt = rt, .budget = 128 };

    /* Hold the only pool thread, then queue a lookup behind it and drop it. */
    gate_set(false);
    pn_blocking_future hold = pn_spawn_blocking(gated, NULL);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&hold), &cx), PN_PENDING);
    for (int i = 0; i < 20000 && atomic_load(&gated_started) == 0; i++)
        usleep(500);
    cr_assert_eq(atomic_load(&gated_started), 1, "the pool thread is held");
    pn_resolve_future q = pn_resolve("localhost", 1);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&q), &cx), PN_PENDING);
    pn__blocking_stats st;
    pn__blocking_pool_stats(rt, &st);
    cr_assert_eq(st.queued, 1, "the lookup waits behind the held thread");
    pn_future_drop(PN_FUTURE(&q));       /* taken off the queue, never runs */
    pn__blocking_pool_stats(rt, &st);
    cr_assert_eq(st.queued, 0);
    gate_set(true);
    for (int i = 0; i < 20000 && pn_future_poll(PN_FUTURE(&hold), &cx) == PN_PENDING; i++)
        usleep(500);
    cr_assert_eq(hold.res, 0);

    /* Submitted and finished, never collected: the drop frees the result. */
    atomic_store(&probe.wakes, 0);
    pn_resolve_future done = pn_resolve("localhost", 2);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&done), &cx), PN_PENDING);
    for (int i = 0; i < 20000 && atomic_load(&probe.wakes) == 0; i++)
        usleep(500);
    cr_assert_gt(atomic_load(&probe.wakes), 0, "the pool thread finished the lookup");
    pn_future_drop(PN_FUTURE(&done));

    /* Never polled: nothing to free. */
    pn_resolve_future never = pn_resolve("localhost", 3);
    pn_future_drop(PN_FUTURE(&never));

    /* Queued when the runtime is freed: -ESHUTDOWN. */
    gate_set(false);
    hold = pn_spawn_blocking(gated, NULL);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&hold), &cx), PN_PENDING);
    pn_resolve_future late = pn_resolve("localhost", 4);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&late), &cx), PN_PENDING);
    gate_set(true);
    pn__blocking_shutdown(rt);           /* waits for hold, fails the queue */
    cr_assert_eq(pn_future_poll(PN_FUTURE(&late), &cx), PN_READY);
    cr_assert(late.res == -ESHUTDOWN || late.res >= 1, "shut down, or ran first: %d", late.res);
    pn_resolve_free(&late);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&hold), &cx), PN_READY);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

static void *fail_malloc(size_t n)
{
    (void)n;
    errno = ENOMEM;
    return NULL;
}

Test(net_resolve, allocation_failures_give_enomem)
{
    pn_waker none = PN_WAKER_NONE;
    pn_cx cx = { .waker = &none, .rt = NULL, .budget = 128 };
    pn__sys.malloc = fail_malloc;        /* the suite's fini resets it */
    pn_resolve_future r = pn_resolve("127.0.0.1", 1);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&r), &cx), PN_READY);
    cr_assert_eq(r.res, -ENOMEM, "the result array");
    cr_assert_null(r.addrs);
    r = pn_resolve("localhost", 1);
    cr_assert_eq(pn_future_poll(PN_FUTURE(&r), &cx), PN_READY);
    cr_assert_eq(r.res, -ENOMEM, "the job record");
    pn__sys_reset();
}
