/*
 * echo_threads.c - the TCP echo server as fibers: one per connection, each
 * reading and writing as if the calls blocked.  Compare echo_server.c, the
 * same server as hand-written futures.
 *
 * Usage: echo_threads PORT [WORKERS]   (listens on 127.0.0.1:PORT;
 *        WORKERS > 0: the multi-thread runtime, else the current thread)
 */
#include <stdlib.h>
#include <pollen.h>

static void echo(void *arg)
{
    pn_tcp_stream *s = arg;                 /* this fiber's own copy */
    char buf[4096];
    ssize_t n;
    while ((n = pn_fiber_read(s, buf, sizeof(buf))) > 0)
        if (pn_fiber_write_all(s, buf, (size_t)n) < 0)
            break;
    pn_tcp_close(s);
}

static void serve(void *arg)
{
    pn_tcp_stream s;
    pn_fiber_opts per_conn = { .arg_size = sizeof(s), .name = "echo" };
    while (pn_fiber_accept(arg, &s, NULL) == 0)
        if (pn_fiber_spawn(pn_fiber_runtime(), echo, &s, &per_conn, NULL) < 0)
            pn_tcp_close(&s);
}

int main(int argc, char **argv)
{
    int workers = argc > 2 ? atoi(argv[2]) : 0;
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = workers > 0 ? PN_RUNTIME_MULTI_THREAD : PN_RUNTIME_CURRENT_THREAD;
    cfg.workers = (unsigned)workers;
    pn_sockaddr addr = pn_sockaddr_loopback4((uint16_t)atoi(argc > 1 ? argv[1] : "7000"));
    pn_tcp_listener l;
    pn_runtime *rt;
    if (pn_runtime_new(&cfg, &rt) < 0 || pn_tcp_listen(&l, &addr, NULL) < 0)
        return 1;
    int err = pn_fiber_run(rt, serve, &l, NULL);
    pn_tcp_listener_close(&l);
    pn_runtime_free(rt);
    return err < 0;
}
