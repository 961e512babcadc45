/*
 * uv_echo_server.c - libuv peer of examples/echo_server.c for the TCP echo
 * benchmark: one loop, one thread, listens on 127.0.0.1:PORT (backlog
 * 1024, like pollen's).
 *
 * Each connection owns a 16 KiB buffer (as pollen's echo task does).  On a
 * read it tries uv_try_write first (the fast path, no request allocated);
 * if the socket takes only part of it, it stops reading, queues a uv_write
 * of the rest and resumes reading in the write callback, so a connection
 * holds one buffer and never reorders bytes.
 *
 * Usage: uv_echo_server PORT
 */
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct conn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    char buf[16384];
} conn;

static void on_close(uv_handle_t *h)
{
    free(h);  /* the uv_tcp_t is the first member of conn */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = (conn *)h;
    *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    if (status < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)s;
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (nread == 0)
        return;
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int n = uv_try_write(s, &b, 1);
    if (n == nread)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n > 0)
        b = uv_buf_init(buf->base + n, (unsigned)(nread - n));
    uv_read_stop(s);
    c->wreq.data = c;
    if (uv_write(&c->wreq, s, &b, 1, on_write) < 0)
        uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = malloc(sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    int err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (!err)
        err = uv_listen((uv_stream_t *)&server, 1024, on_connection);
    if (err) {
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, uv_strerror(err));
        return 1;
    }
    printf("uv echo server listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
