/*
 * tcp_proxy.c - a TCP proxy on pollen: every client is connected to a target.
 *
 * Usage: tcp_proxy LISTEN_PORT TARGET_ADDR [WORKERS]
 *        (listens on 127.0.0.1:LISTEN_PORT; TARGET_ADDR is numeric,
 *        "127.0.0.1:7401" or "[::1]:7401")
 *
 * For each accepted client one task connects to the target (giving up after
 * 5 s, then closing the client), splits both streams into read and write
 * halves and runs two copy futures joined with pn_join2: client to
 * target and target to client, each reading into its own 16 KiB buffer and
 * writing it all out before reading again (so a slow receiver slows its
 * sender down: back-pressure, bounded memory).  A copy allocates its
 * buffer when it starts and frees it when it ends: pn_spawn copies the
 * task's future, and two buffers inside it would be copied (and made
 * resident) for every client, even one whose connect never succeeds.  A half-close travels
 * through: when one side ends its stream, the copy shuts down the write half
 * of the other side (shutdown(SHUT_WR)) and the opposite direction goes on
 * until it ends too; then both sockets are closed.  An error in either
 * direction (a reset, a write to a vanished peer) shuts both sockets down in
 * both directions, which ends the other copy at once.  With WORKERS > 0 it
 * runs on the multi-thread runtime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pollen.h>

#define PROXY_BUF 16384
#define PROXY_CONNECT_NS PN_SEC(5)

struct proxy_conn;

/* ---- one direction ----------------------------------------------------- */

typedef struct proxy_copy {
    pn_future base;
    int pc;
    bool writing;              /* w is pending */
    pn_tcp_read_half from;
    pn_tcp_write_half to;
    struct proxy_conn *conn;   /* to stop the other direction on error */
    ssize_t n;
    uint64_t bytes;            /* copied so far */
    int err;                   /* 0, or what ended this direction */
    pn_write_all_future w;
    char *buf;                 /* PROXY_BUF bytes, allocated by the first poll */
} proxy_copy;

typedef struct proxy_conn {
    pn_future base;
    int pc;
    pn_tcp_stream client, up;
    pn_sockaddr target;
    uint64_t connect_ns;
    int stage;                 /* 1: connect pending, 2: both pending */
    pn_tcp_connect_future connect;
    pn_join2_future both;
    proxy_copy c2u, u2c;
} proxy_conn;

/* Shut both sockets down both ways: each copy's wait ends (0 or -EPIPE). */
static void proxy_abort(struct proxy_conn *p)
{
    pn_tcp_shutdown(&p->client, SHUT_RDWR);
    pn_tcp_shutdown(&p->up, SHUT_RDWR);
}

static pn_poll proxy_copy_poll(pn_future *f, pn_cx *cx)
{
    proxy_copy *c = (proxy_copy *)f;
    PN_ASYNC_BEGIN(c->pc);
    c->buf = malloc(PROXY_BUF);
    if (!c->buf) {
        c->err = -ENOMEM;
        proxy_abort(c->conn);
    }
    while (c->buf) {
        PN_AWAIT_POLL(c->pc, pn_tcp_rd_poll_read(c->from, cx, c->buf, PROXY_BUF, &c->n));
        if (c->n == 0) {
            pn_tcp_wr_shutdown(c->to);          /* pass the half-close on */
            break;
        }
        if (c->n < 0) {
            c->err = (int)c->n;
            proxy_abort(c->conn);
            break;
        }
        c->w = pn_tcp_wr_write_all(c->to, c->buf, (size_t)c->n);
        c->writing = true;
        PN_AWAIT(c->pc, &c->w, cx);
        c->writing = false;
        if (c->w.res < 0) {
            c->err = (int)c->w.res;
            proxy_abort(c->conn);
            break;
        }
        c->bytes += (uint64_t)c->n;
    }
    free(c->buf);
    c->buf = NULL;
    PN_ASYNC_END(c->pc);
}

static void proxy_copy_drop(pn_future *f)
{
    proxy_copy *c = (proxy_copy *)f;
    if (c->writing)
        pn_future_drop(PN_FUTURE(&c->w));
    c->writing = false;
    free(c->buf);
    c->buf = NULL;
}

static const pn_future_vtable proxy_copy_vt = { proxy_copy_poll, proxy_copy_drop, "proxy_copy" };

/* ---- one client --------------------------------------------------------- */

static pn_poll proxy_conn_poll(pn_future *f, pn_cx *cx)
{
    proxy_conn *p = (proxy_conn *)f;
    PN_ASYNC_BEGIN(p->pc);
    p->connect = pn_tcp_connect(&p->up, &p->target, p->connect_ns);
    p->stage = 1;
    PN_AWAIT(p->pc, &p->connect, cx);
    p->stage = 0;
    if (p->connect.res < 0) {
        char who[PN_SOCKADDR_STRLEN];
        pn_sockaddr_format(&p->target, who, sizeof(who));
        fprintf(stderr, "tcp_proxy: connect %s: %s\n", who, pn_strerror(p->connect.res));
        pn_tcp_close(&p->client);
    } else {
        {
            pn_tcp_read_half crd, urd;
            pn_tcp_write_half cwr, uwr;
            pn_tcp_split(&p->client, &crd, &cwr);
            pn_tcp_split(&p->up, &urd, &uwr);
            p->c2u = (proxy_copy){ .base = { &proxy_copy_vt }, .from = crd, .to = uwr, .conn = p };
            p->u2c = (proxy_copy){ .base = { &proxy_copy_vt }, .from = urd, .to = cwr, .conn = p };
            p->both = pn_join2(PN_FUTURE(&p->c2u), PN_FUTURE(&p->u2c));
            p->stage = 2;
        }
        PN_AWAIT(p->pc, &p->both, cx);
        p->stage = 0;
        pn_tcp_close(&p->client);
        pn_tcp_close(&p->up);
    }
    PN_ASYNC_END(p->pc);
}

/* Dropped before completion (runtime shutdown). */
static void proxy_conn_drop(pn_future *f)
{
    proxy_conn *p = (proxy_conn *)f;
    if (p->stage == 1)
        pn_future_drop(PN_FUTURE(&p->connect));  /* connecting: closes p->up */
    else if (p->stage == 2)
        pn_future_drop(PN_FUTURE(&p->both));     /* copying: drops both copies */
    p->stage = 0;
    pn_tcp_close(&p->client);
    pn_tcp_close(&p->up);
}

static const pn_future_vtable proxy_conn_vt = { proxy_conn_poll, proxy_conn_drop, "proxy_conn" };

/* ---- the acceptor ------------------------------------------------------- */

typedef struct proxy_server {
    pn_future base;
    int pc;
    pn_sockaddr target;
    uint64_t connect_ns;
    unsigned long clients;
    pn_tcp_listener l;
    pn_tcp_accept_future acc;
} proxy_server;

static pn_poll proxy_server_poll(pn_future *f, pn_cx *cx)
{
    proxy_server *s = (proxy_server *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->acc = pn_tcp_accept(&s->l);
    for (;;) {
        PN_AWAIT(s->pc, &s->acc, cx);     /* backs off by itself on EMFILE */
        if (s->acc.res < 0)
            break;                        /* the listener was closed */
        {
            proxy_conn *p = calloc(1, sizeof(*p));   /* staging copy: spawn copies it */
            if (!p) {
                pn_tcp_close(&s->acc.stream);
                continue;
            }
            p->base.vt = &proxy_conn_vt;
            p->client = s->acc.stream;
            p->up.afd = (pn_async_fd){ .fd = -1, .closed = true };
            p->target = s->target;
            p->connect_ns = s->connect_ns;
            if (pn_spawn_cx(cx, PN_FUTURE(p), sizeof(*p), NULL) < 0)
                pn_tcp_close(&p->client);
            else
                s->clients++;
            free(p);
        }
    }
    PN_ASYNC_END(s->pc);
}

static void proxy_server_drop(pn_future *f)
{
    proxy_server *s = (proxy_server *)f;
    if (s->pc != 0)
        pn_future_drop(PN_FUTURE(&s->acc));
    pn_tcp_listener_close(&s->l);
}

static const pn_future_vtable proxy_server_vt = { proxy_server_poll, proxy_server_drop,
                                                  "proxy_server" };

/* A proxy on an open listener (it owns it from now on) to `target`;
 * connect_ns 0 means the 5 s default. */
static proxy_server proxy_server_new(pn_tcp_listener l, const pn_sockaddr *target,
                                     uint64_t connect_ns)
{
    return (proxy_server){ .base = { &proxy_server_vt }, .l = l, .target = *target,
                           .connect_ns = connect_ns ? connect_ns : PROXY_CONNECT_NS };
}

#ifndef TCP_PROXY_NO_MAIN
int main(int argc, char **argv)
{
    int port = argc > 2 ? atoi(argv[1]) : 0;
    int workers = argc > 3 ? atoi(argv[3]) : 0;
    pn_sockaddr target;
    if (port <= 0 || port > 65535 || workers < 0 || pn_sockaddr_parse(&target, argv[2]) < 0) {
        fprintf(stderr, "usage: %s LISTEN_PORT TARGET_ADDR [WORKERS]\n"
                        "  e.g. %s 7400 127.0.0.1:7401 (numeric addresses)\n",
                argv[0], argv[0]);
        return 2;
    }
    pn_sockaddr addr = pn_sockaddr_loopback4((uint16_t)port);
    pn_tcp_listener l;
    int err = pn_tcp_listen(&l, &addr, NULL);
    if (err < 0) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, pn_strerror(err));
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
        pn_tcp_listener_close(&l);
        return 1;
    }
    proxy_server *srv = malloc(sizeof(*srv));
    if (!srv) {
        pn_tcp_listener_close(&l);
        pn_runtime_free(rt);
        return 1;
    }
    *srv = proxy_server_new(l, &target, 0);
    printf("tcp proxy 127.0.0.1:%d -> %s (%s)\n", port, argv[2],
           workers > 0 ? "multi-thread" : "current-thread");
    fflush(stdout);
    err = pn_block_on(rt, PN_FUTURE(srv));   /* serves until killed */
    fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
    pn_tcp_listener_close(&srv->l);
    pn_runtime_free(rt);
    free(srv);
    return 1;
}
#endif
