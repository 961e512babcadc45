/*
 * echo_server.c - a TCP echo server on pollen's current-thread runtime.
 *
 * Usage: echo_server PORT [WORKERS]   (listens on 127.0.0.1:PORT)
 *
 * With WORKERS > 0 it runs on the multi-thread runtime with that many worker
 * threads (work stealing spreads the connections); without, on the
 * current-thread runtime (one thread does everything).
 *
 * The main future accepts connections and spawns one task per client; each
 * task reads what the client sends and writes it back until the client
 * closes.  Both are hand-written futures whose poll functions read top to
 * bottom thanks to the PN_ASYNC_* macros: the async state (resume point
 * and live child) and every value that lives across an await sit in the
 * future's struct, so a drop is pn_async_drop plus the socket.  They use the
 * TCP layer (pollen/net.h): an accepted stream is adopted without a
 * syscall, and the close is a future (on io_uring it goes out with the
 * runtime's next batch of requests).  The 16 KiB read
 * buffer is allocated when the task first runs, not in the future itself:
 * pn_spawn copies the future, and copying a buffer would make every one of
 * its pages resident, so 10,000 idle clients would cost 160 MB instead of
 * the pages their data actually touches.
 * SIGINT or SIGTERM stops it gracefully: no new connection is accepted,
 * the live ones get up to 5 s to finish, and it exits 0 (at once when
 * there are none).
 * When accept() runs out of descriptors (EMFILE) the server sleeps 50 ms
 * instead of spinning, and keeps serving the clients it has.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pollen.h>

/* ---- one client ---------------------------------------------------------- */

typedef struct echo_conn {
    pn_future base;
    pn_async as;            /* resume point and the child being awaited */
    pn_tcp_stream sock;
    ssize_t n;              /* result of the last read */
    pn_write_all_future write;     /* the write in flight */
    pn_close_future close;  /* the close at the end */
    bool closing;           /* the close future owns the socket */
    char *buf;              /* ECHO_BUF bytes, allocated by the first poll */
    pn_wait_group *live;    /* the server's count of live connections, or NULL */
} echo_conn;

#define ECHO_BUF 16384

static pn_poll echo_conn_poll(pn_future *f, pn_cx *cx)
{
    echo_conn *c = (echo_conn *)f;
    PN_ASYNC_BEGIN(c->as);
    c->buf = malloc(ECHO_BUF);
    while (c->buf) {
        PN_AWAIT_POLL(c->as, pn_tcp_poll_read(&c->sock, cx, c->buf, ECHO_BUF, &c->n));
        if (c->n <= 0)
            break;                          /* 0: the client closed; < 0: error */
        c->write = pn_tcp_write_all(&c->sock, c->buf, (size_t)c->n);
        PN_AWAIT(c->as, &c->write, cx);
        if (c->write.res < 0)
            break;
    }
    free(c->buf);
    c->buf = NULL;
    /* On io_uring the close rides the next batch of requests; on epoll it
     * is close(2), ready at once. */
    c->close = pn_tcp_close_async(&c->sock);
    c->closing = true;
    PN_AWAIT(c->as, &c->close, cx);
    if (c->live)
        pn_wait_group_done(c->live);
    c->live = NULL;
    PN_ASYNC_END(c->as);
}

/* Dropped (runtime shutdown, or never run): drop the child in flight (a
 * close under way still closes), then release the socket unless the close
 * future owns it. */
static void echo_conn_drop(pn_future *f)
{
    echo_conn *c = (echo_conn *)f;
    pn_async_drop(&c->as);
    if (!c->closing)
        pn_tcp_close(&c->sock);
    free(c->buf);
    c->buf = NULL;
    if (c->live)
        pn_wait_group_done(c->live);
    c->live = NULL;
}

static const pn_future_vtable echo_conn_vt = { echo_conn_poll, echo_conn_drop, "echo_conn" };

/* ---- the acceptor ---------------------------------------------------------- */

typedef struct echo_server {
    pn_future base;
    pn_async as;
    pn_tcp_listener listener;
    pn_tcp_stream client;   /* the last accepted connection */
    int res;                /* result of the last accept */
    pn_sleep_future backoff;
    unsigned long clients;
    pn_wait_group *live;    /* counts live connections when set */
} echo_server;

static pn_poll echo_server_poll(pn_future *f, pn_cx *cx)
{
    echo_server *s = (echo_server *)f;
    PN_ASYNC_BEGIN(s->as);
    for (;;) {
        /* No peer address asked for (NULL): nothing to look up. */
        PN_AWAIT_POLL(s->as, pn_tcp_poll_accept(&s->listener, cx, &s->client, NULL, &s->res));
        if (s->res == -EMFILE || s->res == -ENFILE) {
            s->backoff = pn_sleep(PN_MS(50));
            PN_AWAIT(s->as, &s->backoff, cx);
            continue;
        }
        if (s->res < 0)
            continue;                       /* ECONNABORTED and friends */
        echo_conn *c = malloc(sizeof(*c));  /* staging copy; pn_spawn copies it */
        if (!c) {
            pn_tcp_close(&s->client);
            continue;
        }
        *c = (echo_conn){ .base = { &echo_conn_vt },
                          .sock = s->client,    /* not registered yet: movable */
                          .live = s->live };
        if (s->live)
            pn_wait_group_add(s->live, 1);
        if (pn_spawn_cx(cx, PN_FUTURE(c), sizeof(*c), NULL) < 0) {
            pn_tcp_close(&c->sock);
            if (s->live)
                pn_wait_group_done(s->live);
        } else {
            s->clients++;
        }
        free(c);
    }
    PN_ASYNC_END(s->as);
}

/* Dropped (abort or shutdown): drop the backoff sleep if it is the child in
 * flight, and stop listening. */
static void echo_server_drop(pn_future *f)
{
    echo_server *s = (echo_server *)f;
    pn_async_drop(&s->as);
    pn_tcp_listener_close(&s->listener);
}

static const pn_future_vtable echo_server_vt = { echo_server_poll, echo_server_drop, "echo_server" };

/* The server future, listening on 127.0.0.1:port (0 or -errno).  With
 * reuseport, several servers (one per thread, each on its own runtime)
 * share the port and the kernel spreads the connections. */
static int echo_server_listen(echo_server *s, int port, bool reuseport)
{
    *s = (echo_server){ .base = { &echo_server_vt } };
    pn_sockaddr a = pn_sockaddr_loopback4((uint16_t)port);
    pn_tcp_listen_opts o = { .reuseport = reuseport };
    return pn_tcp_listen(&s->listener, &a, &o);
}

static int echo_server_init(echo_server *s, int port)
{
    return echo_server_listen(s, port, false);
}

/* ---- graceful shutdown ------------------------------------------------------ */

#define DRAIN_MS 5000       /* how long live connections get after a signal */

/* Waits for SIGINT or SIGTERM, stops the acceptor (its drop closes the
 * listener, so new clients are refused), then waits until every live
 * connection has ended or DRAIN_MS have passed. */
typedef struct until_signal {
    pn_future base;
    pn_async as;
    pn_signal *intr, *term;
    pn_join_handle *acceptor;
    pn_wait_group *live;
    pn_signal_recv_future on_int, on_term;
    pn_select2_future either;
    pn_join_future stopped;
    pn_wait_group_wait_future drained;
    pn_timeout_future deadline;
} until_signal;

static pn_poll until_signal_poll(pn_future *f, pn_cx *cx)
{
    until_signal *u = (until_signal *)f;
    PN_ASYNC_BEGIN(u->as);
    u->on_int = pn_signal_recv(u->intr);
    u->on_term = pn_signal_recv(u->term);
    u->either = pn_select2(PN_FUTURE(&u->on_int), PN_FUTURE(&u->on_term));
    PN_AWAIT(u->as, &u->either, cx);
    pn_join_handle_abort(u->acceptor);
    u->stopped = pn_join(u->acceptor);
    PN_AWAIT(u->as, &u->stopped, cx);
    u->drained = pn_wait_group_wait(u->live);
    u->deadline = pn_timeout(PN_FUTURE(&u->drained), PN_MS(DRAIN_MS));
    PN_AWAIT(u->as, &u->deadline, cx);
    PN_ASYNC_END(u->as);
}
PN_ASYNC_VTABLE(until_signal_vt, until_signal, as, until_signal_poll);

#ifndef ECHO_SERVER_NO_MAIN
int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int workers = argc > 2 ? atoi(argv[2]) : 0;
    if (port <= 0 || port > 65535 || workers < 0) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    /* Listen to the signals first: one that comes during start-up counts. */
    pn_signal intr, term;
    if (pn_signal_listen(&intr, SIGINT) < 0 || pn_signal_listen(&term, SIGTERM) < 0) {
        fprintf(stderr, "cannot listen to SIGINT/SIGTERM\n");
        return 1;
    }
    echo_server srv;
    int err = echo_server_init(&srv, port);
    if (err < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
        return 1;
    }
    pn_wait_group live;
    pn_wait_group_init(&live);
    srv.live = &live;
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
    }
    pn_runtime *rt;
    pn_join_handle *acceptor = NULL;
    err = pn_runtime_new(&cfg, &rt);
    if (err == 0) {
        err = pn_spawn(rt, PN_FUTURE(&srv), sizeof(srv), &acceptor);  /* srv is copied */
        if (err < 0)
            pn_runtime_free(rt);
    }
    if (err < 0) {
        fprintf(stderr, "start: %s\n", pn_strerror(err));
        pn_tcp_listener_close(&srv.listener);
        return 1;
    }
    printf("echo server listening on 127.0.0.1:%d (%s)\n", port,
           workers > 0 ? "multi-thread" : "current-thread");
    fflush(stdout);
    until_signal u = { .base = { &until_signal_vt }, .intr = &intr, .term = &term,
                       .acceptor = acceptor, .live = &live };
    err = pn_block_on(rt, PN_FUTURE(&u));
    size_t cut = pn_wait_group_count(&live);
    pn_join_handle_free(acceptor);
    pn_runtime_free(rt);                   /* drops what outlived the deadline */
    pn_wait_group_destroy(&live);
    pn_signal_close(&intr);
    pn_signal_close(&term);
    if (err < 0) {
        fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
        return 1;
    }
    fprintf(stderr, "echo server stopped%s\n",
            cut ? " (connections cut at the deadline)" : "");
    return 0;
}
#endif
