/*
 * bench_echo_server.c - examples/echo_server.c with a runtime choice, for
 * the TCP echo benchmark.
 *
 * The connection and acceptor futures are the example's own (included with
 * ECHO_SERVER_NO_MAIN, so the benchmark measures exactly the code users
 * read); this file only adds a main that picks the runtime:
 *   bench_echo_server [--workers W] [--driver workers|reactor] [--shards S] PORT
 * W = 0 (default): the current-thread runtime, as the example;
 * W >= 1: the multi-thread runtime with W workers, epoll driven by the
 * worker about to park (--driver workers, PN_DRIVER_WORKERS, the default
 * here) or by a dedicated reactor thread (--driver reactor,
 * PN_DRIVER_REACTOR_THREAD); the acceptor then runs as a spawned task so
 * that every poll happens on the workers, as in the Tokio peer.
 * S >= 2 (--shards): one runtime per core instead of work stealing: S
 * threads, each with its own current-thread runtime (so its own epoll set
 * or io_uring ring) and its own SO_REUSEPORT listener on PORT; the kernel
 * spreads the connections, and a connection stays on its thread.
 *
 * --fibers: the same server as stackful tasks (pollen/fiber.h), as
 * examples/echo_threads.c writes it: an acceptor fiber and one fiber per
 * connection, each with the futures version's ECHO_BUF-byte read buffer
 * (on its stack) and the same close future at the end, so that the two
 * differ only in how a task waits.  Stacks are the default size (64 KiB,
 * only the touched pages resident), from the runtime's cache.  With
 * --workers 0 the acceptor runs from pn_block_on (pn_fiber_run), else as a
 * spawned task, as the futures acceptor does.  Not with --shards.
 */
#define ECHO_SERVER_NO_MAIN
#include "../examples/echo_server.c"
#include <pthread.h>
#include <pollen/fiber.h>

/* ---- the fiber version (--fibers) ------------------------------------------ */

/* The read buffer on each connection fiber's stack (-DFIBER_BUF=4096 for a
 * build that tries a smaller one). */
#ifndef FIBER_BUF
#define FIBER_BUF ECHO_BUF
#endif

static void fiber_conn(void *arg)
{
    pn_tcp_stream *s = arg;                 /* this fiber's own copy */
    char buf[FIBER_BUF];
    ssize_t n;
    while ((n = pn_fiber_read(s, buf, sizeof buf)) > 0)
        if (pn_fiber_write_all(s, buf, (size_t)n) < 0)
            break;
    pn_close_future c = pn_tcp_close_async(s);           /* cancelled: dropping it closes */
    pn_await(&c);
}

static void fiber_acceptor(void *arg)
{
    pn_tcp_listener *l = arg;
    pn_tcp_stream s;
    pn_fiber_opts per_conn = { .arg_size = sizeof s, .name = "echo" };
    for (;;) {
        int err = pn_fiber_accept(l, &s, NULL);   /* backs off on EMFILE itself */
        if (err == -ECANCELED)
            return;
        if (err < 0)
            continue;
        if (pn_fiber_spawn(pn_fiber_runtime(), fiber_conn, &s, &per_conn, NULL) < 0)
            pn_tcp_close(&s);
    }
}

static int run_fibers(pn_runtime *rt, pn_tcp_listener *l, long workers)
{
    if (workers == 0)
        return pn_fiber_run(rt, fiber_acceptor, l, NULL);
    pn_join_handle *h;
    int err = pn_fiber_spawn(rt, fiber_acceptor, l, NULL, &h);
    if (err)
        return err;
    pn_join_future jf = pn_join(h);
    err = pn_block_on(rt, PN_FUTURE(&jf));
    return err ? err : jf.res;
}

/* One shard: a current-thread runtime serving its own listener. */
typedef struct shard {
    pthread_t thread;
    echo_server srv;          /* must not move while polled */
    int err;
} shard;

static void *shard_main(void *arg)
{
    shard *sh = arg;
    pn_runtime *rt;
    sh->err = pn_runtime_new(NULL, &rt);
    if (sh->err == 0)
        sh->err = pn_block_on(rt, PN_FUTURE(&sh->srv));
    /* A shard that stops leaves its SO_REUSEPORT listener taking a share
     * of the connections nobody serves: the whole server goes. */
    fprintf(stderr, "shard stopped: %s\n", pn_strerror(sh->err));
    exit(1);
}

static int run_shards(long n, int port)
{
    shard *sh = calloc((size_t)n, sizeof(*sh));
    if (!sh)
        return 1;
    for (long i = 0; i < n; i++) {
        int err = echo_server_listen(&sh[i].srv, port, true);
        if (err < 0) {
            fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
            return 1;
        }
    }
    printf("pollen echo server (shards=%ld) listening on 127.0.0.1:%d\n", n, port);
    fflush(stdout);
    for (long i = 0; i < n; i++)
        if (pthread_create(&sh[i].thread, NULL, shard_main, &sh[i]) != 0)
            return 1;
    pthread_join(sh[0].thread, NULL);   /* a shard that stops exits */
    return 1;
}

int main(int argc, char **argv)
{
    long workers = 0, shards = 0;
    int port = 0;
    bool fibers = false;
    pn_driver_mode driver = PN_DRIVER_WORKERS;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            workers = atol(argv[++i]);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            shards = atol(argv[++i]);
        else if (!strcmp(argv[i], "--fibers"))
            fibers = true;
        else if (!strcmp(argv[i], "--driver") && i + 1 < argc)
            driver = !strcmp(argv[++i], "reactor") ? PN_DRIVER_REACTOR_THREAD : PN_DRIVER_WORKERS;
        else
            port = atoi(argv[i]);
    }
    if (port <= 0 || port > 65535 || (fibers && shards >= 2)) {
        fprintf(stderr, "usage: %s [--workers W] [--driver workers|reactor] [--shards S] "
                        "[--fibers] PORT\n", argv[0]);
        return 2;
    }
    if (shards >= 2)
        return run_shards(shards, port);
    static echo_server srv;   /* must not move while polled */
    int err = echo_server_init(&srv, port);
    if (err < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
        return 1;
    }
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
        cfg.driver = driver;
    }
    pn_runtime *rt;
    err = pn_runtime_new(&cfg, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        return 1;
    }
    printf("pollen echo server (workers=%ld%s) listening on 127.0.0.1:%d\n", workers,
           fibers ? ", fibers" : "", port);
    fflush(stdout);
    if (fibers) {
        err = run_fibers(rt, &srv.listener, workers);
    } else if (workers == 0) {
        err = pn_block_on(rt, PN_FUTURE(&srv));
    } else {
        pn_join_handle *h;
        err = PN_SPAWN(rt, srv, &h);
        if (!err) {
            pn_join_future jf = pn_join(h);
            err = pn_block_on(rt, PN_FUTURE(&jf));
        }
    }
    fprintf(stderr, "echo server stopped: %s\n", pn_strerror(err));
    pn_runtime_free(rt);
    return 1;
}
