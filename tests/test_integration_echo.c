/*
 * test_integration_echo.c - the echo server of examples/echo_server.c and
 * many clients in one runtime over loopback; every byte is checked, and the
 * runtime leaves no fd behind.
 *
 * Each client is one task that joins two child futures over the same
 * socket: a writer sending a per-client byte pattern (then SHUT_WR) and a
 * reader checking the echo byte for byte until end of stream.  The reader
 * and the writer wait in the two waker slots of one registration.
 */
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include "helpers.h"

#define ECHO_SERVER_NO_MAIN
#include "../examples/echo_server.c"

TestSuite(integration, .timeout = 60);

#define CLIENTS 64
#define BYTES_PER_CLIENT (256 * 1024)

static unsigned char pattern(int id, size_t i)
{
    return (unsigned char)(id * 131 + i * 7 + (i >> 9));
}

typedef struct writer {
    pn_future base;
    int pc;
    pn_async_fd *sock;
    int id;
    size_t sent;
    pn_write_all_future w;
    unsigned char buf[4096];
} writer;

static pn_poll writer_poll(pn_future *f, pn_cx *cx)
{
    writer *w = (writer *)f;
    PN_ASYNC_BEGIN(w->pc);
    while (w->sent < BYTES_PER_CLIENT) {
        {
            size_t n = BYTES_PER_CLIENT - w->sent;
            if (n > sizeof(w->buf))
                n = sizeof(w->buf);
            for (size_t i = 0; i < n; i++)
                w->buf[i] = pattern(w->id, w->sent + i);
            w->w = pn_write_all(w->sock, w->buf, n);
        }
        PN_AWAIT(w->pc, &w->w, cx);
        cr_assert_geq(w->w.res, 0, "write: %s", pn_strerror((int)w->w.res));
        w->sent += (size_t)w->w.res;
    }
    shutdown(w->sock->fd, SHUT_WR);
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable writer_vt = { writer_poll, NULL, "writer" };

typedef struct reader {
    pn_future base;
    int pc;
    pn_async_fd *sock;
    int id;
    size_t got;
    ssize_t n;
    unsigned char buf[3000];     /* not a divisor of the writer's chunk */
} reader;

static pn_poll reader_poll(pn_future *f, pn_cx *cx)
{
    reader *r = (reader *)f;
    PN_ASYNC_BEGIN(r->pc);
    for (;;) {
        PN_AWAIT_POLL(r->pc, pn_async_fd_poll_read(r->sock, cx, r->buf, sizeof(r->buf), &r->n));
        cr_assert_geq(r->n, 0, "read: %s", pn_strerror((int)r->n));
        if (r->n == 0)
            break;
        for (ssize_t i = 0; i < r->n; i++)
            cr_assert_eq(r->buf[i], pattern(r->id, r->got + (size_t)i),
                         "client %d byte %zu", r->id, r->got + (size_t)i);
        r->got += (size_t)r->n;
    }
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable reader_vt = { reader_poll, NULL, "reader" };

typedef struct client {
    pn_future base;
    int pc;
    int port, id, res;
    pn_async_fd sock;
    writer w;
    reader r;
    pn_join2_future both;
} client;

static pn_poll client_poll(pn_future *f, pn_cx *cx)
{
    client *c = (client *)f;
    PN_ASYNC_BEGIN(c->pc);
    {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
        cr_assert(r == 0 || errno == EINPROGRESS);
        cr_assert_eq(pn_async_fd_init(&c->sock, fd), 0);
    }
    PN_AWAIT_POLL(c->pc, pn_async_fd_poll_ready(&c->sock, cx, PN_WRITABLE, &c->res));
    {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(c->sock.fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        cr_assert_eq(soerr, 0, "connect: %s", strerror(soerr));
    }
    c->w = (writer){ .base = { &writer_vt }, .sock = &c->sock, .id = c->id };
    c->r = (reader){ .base = { &reader_vt }, .sock = &c->sock, .id = c->id };
    c->both = pn_join2(PN_FUTURE(&c->w), PN_FUTURE(&c->r));
    PN_AWAIT(c->pc, &c->both, cx);
    cr_assert_eq(c->r.got, BYTES_PER_CLIENT);
    pn_async_fd_close(&c->sock);
    PN_ASYNC_END(c->pc);
}

static const pn_future_vtable client_vt = { client_poll, NULL, "client" };

/* Main: spawn the server and the clients, join the clients, stop the server. */
typedef struct test_main {
    pn_future base;
    int pc, i, port;
    pn_join_handle *server;
    pn_join_handle *clients[CLIENTS];
    pn_join_future j;
} test_main;

static pn_poll test_main_poll(pn_future *f, pn_cx *cx)
{
    test_main *m = (test_main *)f;
    PN_ASYNC_BEGIN(m->pc);
    for (m->i = 0; m->i < CLIENTS; m->i++) {
        client c = { .base = { &client_vt }, .port = m->port, .id = m->i };
        c.sock.fd = -1;
        cr_assert_eq(pn_spawn_cx(cx, PN_FUTURE(&c), sizeof(c), &m->clients[m->i]), 0);
    }
    for (m->i = 0; m->i < CLIENTS; m->i++) {
        m->j = pn_join(m->clients[m->i]);
        PN_AWAIT(m->pc, &m->j, cx);
        cr_assert_eq(m->j.res, 0);
        pn_join_handle_free(m->clients[m->i]);
    }
    pn_join_handle_abort(m->server);
    m->j = pn_join(m->server);
    PN_AWAIT(m->pc, &m->j, cx);
    cr_assert_eq(m->j.res, -ECANCELED);
    pn_join_handle_free(m->server);
    PN_ASYNC_END(m->pc);
}

static const pn_future_vtable test_main_vt = { test_main_poll, NULL, "test_main" };

static int listen_any(echo_server *srv)
{
    cr_assert_eq(echo_server_init(srv, 0), 0);
    pn_sockaddr a;
    cr_assert_eq(pn_tcp_listener_local_addr(&srv->listener, &a), 0);
    return pn_sockaddr_port(&a);
}

Test(integration, echo_server_and_clients_in_one_runtime)
{
    int fds_before = count_fds();
    pn_runtime *rt = rt_new();
    echo_server srv;
    int port = listen_any(&srv);
    test_main m = { .base = { &test_main_vt }, .port = port };
    cr_assert_eq(PN_SPAWN(rt, srv, &m.server), 0);
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&m)), 0);
    pn_runtime_free(rt);
    cr_assert_eq(count_fds(), fds_before, "every socket, epoll and eventfd closed");
}

/* Shutdown with connections open: the tasks' drops close their sockets. */
typedef struct open_clients {
    pn_future base;
    int pc, port, i, res;
    pn_async_fd socks[8];
    pn_sleep_future nap;
} open_clients;

static pn_poll open_clients_poll(pn_future *f, pn_cx *cx)
{
    open_clients *o = (open_clients *)f;
    PN_ASYNC_BEGIN(o->pc);
    for (o->i = 0; o->i < 8; o->i++) {
        {   /* locals end before the await: they would not survive it */
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            struct sockaddr_in a = { .sin_family = AF_INET,
                                     .sin_port = htons((uint16_t)o->port) };
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            connect(fd, (struct sockaddr *)&a, sizeof(a));
            pn_async_fd_init(&o->socks[o->i], fd);
        }
        PN_AWAIT_POLL(o->pc, pn_async_fd_poll_ready(&o->socks[o->i], cx, PN_WRITABLE, &o->res));
        cr_assert_gt(o->res, 0);
    }
    /* Let the server accept all of them and park its readers. */
    o->nap = pn_sleep(PN_MS(50));
    PN_AWAIT(o->pc, &o->nap, cx);
    PN_ASYNC_END(o->pc);
}

static const pn_future_vtable open_clients_vt = { open_clients_poll, NULL, "open_clients" };

Test(integration, shutdown_with_open_connections_leaves_no_fd)
{
    int fds_before = count_fds();
    pn_runtime *rt = rt_new();
    echo_server srv;
    int port = listen_any(&srv);
    cr_assert_eq(PN_SPAWN(rt, srv, NULL), 0);
    open_clients o = { .base = { &open_clients_vt }, .port = port };
    cr_assert_eq(pn_block_on(rt, PN_FUTURE(&o)), 0);
    cr_assert_gt(count_fds(), fds_before + 16, "8 client + 8 server sockets open");
    pn_runtime_free(rt);            /* drops the server and its 8 connections */
    for (int i = 0; i < 8; i++)
        pn_async_fd_close(&o.socks[i]);
    cr_assert_eq(count_fds(), fds_before);
}
