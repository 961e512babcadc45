/*
 * uv_http_server.c - libuv peer of examples/http_server.c for the HTTP
 * plaintext benchmark: one loop, one thread, 127.0.0.1:PORT, backlog 1024.
 *
 * The same behaviour as pollen's server: `GET /plaintext` answers
 * `Hello, World!` with Server, Content-Type, Content-Length and a Date
 * rebuilt once a second (the whole 200 is one memcpy of a cached block);
 * other paths 404, other methods 405; keep-alive (HTTP/1.1 unless
 * `Connection: close`), pipelined requests answered in order, every
 * response of one read batched into one write.  Requests are parsed by the
 * same strict parser (examples/http_parse.h, header-only), so the two
 * servers do the same work per request and the figure compares the event
 * loops.  Each connection holds an 8 KiB read buffer and a 16 KiB write
 * buffer in one allocation.  A write the socket does not take whole stops
 * reading until a uv_write of the rest completes (responses stay in order).
 * Not done (pollen does it; it only makes this peer cheaper): the 10 s idle
 * timeout per connection and the lingering drain after an error response
 * (here: shutdown, then close).
 *
 * Usage: uv_http_server PORT
 */
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../examples/http_parse.h"

#define RBUF 8192
#define WBUF 16384
#define MAX_RESP 512

static const char body[] = "Hello, World!";
static time_t clock_sec = -1;
static char date_hdr[40];
static size_t date_len;
static char ok_resp[256];
static size_t ok_len;

static void clock_refresh(void)
{
    time_t now = time(NULL);
    if (now == clock_sec)
        return;
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&now, &tm);
    clock_sec = now;
    date_len = (size_t)snprintf(date_hdr, sizeof date_hdr,
                                "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                                days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    ok_len = (size_t)snprintf(ok_resp, sizeof ok_resp,
                              "HTTP/1.1 200 OK\r\nServer: libuv\r\nContent-Type: text/plain\r\n"
                              "Content-Length: %zu\r\n%s\r\n%s",
                              sizeof body - 1, date_hdr, body);
}

typedef struct conn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int closing;            /* close once wbuf is written */
    int more;               /* wbuf filled before every request was answered */
    size_t rlen, rpos, wlen;
    uint64_t skip;          /* request body bytes still to discard */
    char rbuf[RBUF];
    char wbuf[WBUF];
} conn;

static void put(conn *c, const char *s, size_t n)
{
    memcpy(c->wbuf + c->wlen, s, n);
    c->wlen += n;
}

static void respond(conn *c, const char *status, const char *extra, const char *b,
                    int head_only, int ka10)
{
    char line[600];
    size_t bl = strlen(b);
    int n = snprintf(line, sizeof line,
                     "HTTP/1.1 %s\r\nServer: libuv\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s%s%s\r\n",
                     status, bl, date_hdr, extra ? extra : "",
                     c->closing ? "Connection: close\r\n" : ka10 ? "Connection: keep-alive\r\n" : "");
    put(c, line, (size_t)n);
    if (!head_only)
        put(c, b, bl);
}

static void fail(conn *c, long err)
{
    c->closing = 1;
    if (err == HTTP_TOO_LARGE)
        respond(c, "431 Request Header Fields Too Large", NULL, "Request Header Fields Too Large\n", 0, 0);
    else if (err == HTTP_BAD_VERSION)
        respond(c, "505 HTTP Version Not Supported", NULL, "HTTP Version Not Supported\n", 0, 0);
    else if (err == -501)
        respond(c, "501 Not Implemented", NULL, "Transfer-Encoding is not supported\n", 0, 0);
    else
        respond(c, "400 Bad Request", NULL, "Bad Request\n", 0, 0);
}

static void route(conn *c, const http_request *r)
{
    if (r->has_transfer_encoding) {
        fail(c, -501);
        return;
    }
    c->skip = r->content_length;
    int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
    int head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    int ka10 = r->minor == 0 && r->keep_alive;
    if (!r->keep_alive)
        c->closing = 1;
    if (r->path_len == 10 && memcmp(r->target, "/plaintext", 10) == 0) {
        if (get && !c->closing && r->minor >= 1)
            put(c, ok_resp, ok_len);                    /* the hot path */
        else if (get || head)
            respond(c, "200 OK", NULL, body, head, ka10);
        else
            respond(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", "Method Not Allowed\n", 0, ka10);
    } else {
        respond(c, "404 Not Found", NULL, "Not Found\n", head, ka10);
    }
}

/* Answer every complete request in rbuf (or as many as fit in wbuf). */
static void process(conn *c)
{
    c->more = 0;
    clock_refresh();
    while (!c->closing) {
        if (c->skip) {
            size_t avail = c->rlen - c->rpos;
            size_t take = c->skip < avail ? (size_t)c->skip : avail;
            c->rpos += take;
            c->skip -= take;
            if (c->skip)
                break;
        }
        if (c->rpos == c->rlen)
            break;
        if (WBUF - c->wlen < MAX_RESP) {
            c->more = 1;
            break;
        }
        http_request req;
        long r = http_parse_request(c->rbuf + c->rpos, c->rlen - c->rpos, RBUF, &req);
        if (r == HTTP_INCOMPLETE)
            break;
        if (r < 0) {
            fail(c, r);
            break;
        }
        c->rpos += (size_t)r;
        route(c, &req);
    }
    /* keep the unparsed tail at the front */
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0 && !c->more) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
}

static void on_close(uv_handle_t *h) { free(h); }
static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    uv_close((uv_handle_t *)req->handle, on_close);
}
static void finish(conn *c)
{
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void serve(conn *c);

static void on_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    if (status < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    c->wlen = 0;
    if (c->closing) {
        finish(c);
        return;
    }
    if (c->more) {
        serve(c);
        if (c->wlen)
            return;                 /* a write is queued again */
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Process, then write the batch: uv_try_write, the rest with uv_write
 * (reading stopped until it completes). */
static void serve(conn *c)
{
    for (;;) {
        process(c);
        if (c->wlen == 0)
            break;
        uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)c->wlen);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)c->wlen) {
            c->wlen = 0;
            if (c->more)
                continue;
            break;
        }
        if (n < 0 && n != UV_EAGAIN) {
            uv_close((uv_handle_t *)&c->tcp, on_close);
            return;
        }
        if (n > 0)
            b = uv_buf_init(c->wbuf + n, (unsigned)(c->wlen - (size_t)n));
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0)
            uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    if (c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        finish(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = (conn *)h;
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(RBUF - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = (conn *)s;
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (nread == 0)
        return;
    c->rlen += (size_t)nread;
    serve(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = malloc(sizeof *c);
    if (!c)
        return;
    c->closing = c->more = 0;
    c->rlen = c->rpos = c->wlen = 0;
    c->skip = 0;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
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
    printf("uv http server listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
