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
 * bottom thanks to the PN_ASYNC_* macros: the resume point and every value
 * that lives across an await sit in the future's struct.  The 16 KiB read
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
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pollen.h>

/* ---- one client ---------------------------------------------------------- */

typedef struct echo_conn {
    pn_future base;
    int pc;                 /* resume point */
    pn_async_fd sock;
    ssize_t n;              /* result of the last read */
    pn_write_all write;     /* the write in flight */
    char *buf;              /* ECHO_BUF bytes, allocated by the first poll */
} echo_conn;

#define ECHO_BUF 16384

static pn_poll echo_conn_poll(pn_future *f, pn_cx *cx)
{
    echo_conn *c = (echo_conn *)f;
    PN_ASYNC_BEGIN(c->pc);
    c->buf = malloc(ECHO_BUF);
    while (c->buf) {
        PN_AWAIT_POLL(c->pc, pn_async_fd_poll_read(&c->sock, cx, c->buf, ECHO_BUF, &c->n));
        if (c->n <= 0)
            break;                          /* 0: the client closed; < 0: error */
        c->write = pn_write_all_of(&c->sock, c->buf, (size_t)c->n);
        PN_AWAIT(c->pc, &c->write, cx);
        if (c->write.res < 0)
            break;
    }
    pn_async_fd_close(&c->sock);
    free(c->buf);
    c->buf = NULL;
    PN_ASYNC_END(c->pc);
}

/* Dropped before completion (runtime shutdown): release the socket. */
static void echo_conn_drop(pn_future *f)
{
    echo_conn *c = (echo_conn *)f;
    pn_async_fd_close(&c->sock);
    free(c->buf);
}

static const pn_future_vtable echo_conn_vt = { echo_conn_poll, echo_conn_drop, "echo_conn" };

/* ---- the acceptor ---------------------------------------------------------- */

typedef struct echo_server {
    pn_future base;
    int pc;
    pn_async_fd listener;
    int fd;                 /* result of the last accept */
    pn_sleep backoff;
    unsigned long clients;
} echo_server;

static pn_poll echo_server_poll(pn_future *f, pn_cx *cx)
{
    echo_server *s = (echo_server *)f;
    PN_ASYNC_BEGIN(s->pc);
    for (;;) {
        PN_AWAIT_POLL(s->pc, pn_async_fd_poll_accept(&s->listener, cx, &s->fd));
        if (s->fd == -EMFILE || s->fd == -ENFILE) {
            s->backoff = pn_sleep_for(PN_MS(50));
            PN_AWAIT(s->pc, &s->backoff, cx);
            continue;
        }
        if (s->fd < 0)
            continue;                       /* ECONNABORTED and friends */
        echo_conn *c = malloc(sizeof(*c));  /* staging copy; pn_spawn copies it */
        if (!c || pn_async_fd_init(&c->sock, s->fd) < 0) {
            close(s->fd);
            free(c);
            continue;
        }
        c->base.vt = &echo_conn_vt;
        c->pc = 0;
        c->buf = NULL;
        if (pn_spawn_cx(cx, PN_FUTURE(c), sizeof(*c), NULL) < 0)
            pn_async_fd_close(&c->sock);
        else
            s->clients++;
        free(c);
    }
    PN_ASYNC_END(s->pc);
}

/* Dropped (abort or shutdown): stop listening. */
static void echo_server_drop(pn_future *f)
{
    echo_server *s = (echo_server *)f;
    pn_future_drop(PN_FUTURE(&s->backoff));   /* harmless if never armed */
    pn_async_fd_close(&s->listener);
}

static const pn_future_vtable echo_server_vt = { echo_server_poll, echo_server_drop, "echo_server" };

static echo_server echo_server_new(void)
{
    echo_server s = { .base = { &echo_server_vt } };
    s.backoff = pn_sleep_for(0);
    s.listener.fd = -1;
    return s;
}

#ifndef ECHO_SERVER_NO_MAIN
static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int workers = argc > 2 ? atoi(argv[2]) : 0;
    if (port <= 0 || port > 65535 || workers < 0) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    int fd = listen_on(port);
    if (fd < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(fd));
        return 1;
    }
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    if (workers > 0) {
        cfg.flavor = PN_RUNTIME_MULTI_THREAD;
        cfg.workers = (unsigned)workers;
    }
    pn_runtime *rt;
    int err = pn_runtime_new(&cfg, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        close(fd);
        return 1;
    }
    echo_server *srv = malloc(sizeof(*srv));
    *srv = echo_server_new();
    pn_async_fd_init(&srv->listener, fd);
    printf("echo server listening on 127.0.0.1:%d (%s)\n", port,
           workers > 0 ? "multi-thread" : "current-thread");
    fflush(stdout);
    err = pn_block_on(rt, PN_FUTURE(srv));   /* serves until killed */
    fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
    pn_async_fd_close(&srv->listener);
    pn_runtime_free(rt);
    free(srv);
    return 1;
}
#endif
