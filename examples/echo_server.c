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
 * When accept() runs out of descriptors (EMFILE) the server sleeps 50 ms
 * instead of spinning, and keeps serving the clients it has.
 */
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
                          .sock = s->client };  /* not registered yet: movable */
        if (pn_spawn_cx(cx, PN_FUTURE(c), sizeof(*c), NULL) < 0)
            pn_tcp_close(&c->sock);
        else
            s->clients++;
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

#ifndef ECHO_SERVER_NO_MAIN
int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int workers = argc > 2 ? atoi(argv[2]) : 0;
    if (port <= 0 || port > 65535 || workers < 0) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    echo_server *srv = malloc(sizeof(*srv));   /* must not move while polled */
    if (!srv)
        return 1;
    int err = echo_server_init(srv, port);
    if (err < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
        free(srv);
        return 1;
    }
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
    }
    pn_runtime *rt;
    err = pn_runtime_new(&cfg, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        pn_tcp_listener_close(&srv->listener);
        free(srv);
        return 1;
    }
    printf("echo server listening on 127.0.0.1:%d (%s)\n", port,
           workers > 0 ? "multi-thread" : "current-thread");
    fflush(stdout);
    err = pn_block_on(rt, PN_FUTURE(srv));   /* serves until killed */
    fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
    pn_tcp_listener_close(&srv->listener);
    pn_runtime_free(rt);
    free(srv);
    return 1;
}
#endif
