/*
 * test_examples_http.c - the example servers, in process, against real
 * clients: examples/http_server.c (curl, and raw sockets for keep-alive,
 * pipelining, oversize and malformed heads, 404/405, Connection: close,
 * HTTP/1.0, request bodies, idle and slow clients), examples/tcp_proxy.c
 * (a megabyte through the proxy to an in-test upstream and back, checked
 * byte for byte, half-closes in both orders, an unreachable target) and
 * examples/chat_server.c (a line from one client reaches the other; a
 * client that stops reading falls behind while the others keep receiving,
 * and is dropped when it reads again), and examples/worker_pool.c (every
 * job processed once and right, workers stopped by a cancellation token,
 * on both runtimes).
 *
 * The servers run in a runtime driven by a background thread (both
 * flavours); the test thread is the client, with blocking sockets, so the
 * servers' code runs under the sanitizers of `make test-asan/test-tsan`.
 * Every socket read has a 10 s receive timeout and every test a Criterion
 * timeout; nothing asserts on timing.  The curl test is skipped when curl
 * is not installed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sched.h>
#include "helpers.h"

#define HTTP_SERVER_NO_MAIN
#include "../examples/http_server.c"
#define TCP_PROXY_NO_MAIN
#include "../examples/tcp_proxy.c"
#define CHAT_SERVER_NO_MAIN
#include "../examples/chat_server.c"
#define WORKER_POOL_NO_MAIN
#include "../examples/worker_pool.c"

extern char **environ;

TestSuite(examples, .timeout = 60);

/* ---- a runtime on a background thread ------------------------------------ */

/* Its block_on future: wait for the stop eventfd. */
typedef struct bg_wait {
    pn_future base;
    int pc;
    ssize_t res;
    uint64_t count;
    pn_async_fd stop;
} bg_wait;

static pn_poll bg_wait_poll(pn_future *f, pn_cx *cx)
{
    bg_wait *w = (bg_wait *)f;
    PN_ASYNC_BEGIN(w->pc);
    PN_AWAIT_POLL(w->pc, pn_async_fd_poll_read(&w->stop, cx, &w->count, sizeof(w->count), &w->res));
    PN_ASYNC_END(w->pc);
}

static const pn_future_vtable bg_wait_vt = { bg_wait_poll, NULL, "bg_wait" };

typedef struct bg {
    pthread_t th;
    pn_runtime *rt;
    int efd;
    bg_wait wait;
} bg;

static void *bg_main(void *arg)
{
    bg *b = arg;
    int err = pn_block_on(b->rt, PN_FUTURE(&b->wait));
    cr_assert_eq(err, 0, "block_on: %s", pn_strerror(err));
    pn_async_fd_close(&b->wait.stop);
    pn_runtime_free(b->rt);          /* drops the servers and their connections */
    return NULL;
}

static void bg_init(bg *b, pn_runtime_flavor fl)
{
    pn_runtime_config cfg;
    pn_runtime_config_init(&cfg);
    cfg.flavor = fl;
    if (fl == PN_RUNTIME_MULTI_THREAD)
        cfg.workers = 2;
    int err = pn_runtime_new(&cfg, &b->rt);
    cr_assert_eq(err, 0, "pn_runtime_new: %s", pn_strerror(err));
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    cr_assert_geq(b->efd, 0);
    b->wait = (bg_wait){ .base = { &bg_wait_vt } };
    cr_assert_eq(pn_async_fd_init(&b->wait.stop, dup(b->efd)), 0);
}

static void bg_start(bg *b)
{
    cr_assert_eq(pthread_create(&b->th, NULL, bg_main, b), 0);
}

static void bg_stop(bg *b)
{
    uint64_t one = 1;
    cr_assert_eq(write(b->efd, &one, sizeof(one)), (ssize_t)sizeof(one));
    cr_assert_eq(pthread_join(b->th, NULL), 0);
    close(b->efd);
}

/* A listener on 127.0.0.1 with a free port. */
static pn_tcp_listener listen_any(int *port)
{
    pn_tcp_listener l;
    pn_sockaddr a = pn_sockaddr_loopback4(0);
    cr_assert_eq(pn_tcp_listen(&l, &a, NULL), 0);
    cr_assert_eq(pn_tcp_listener_local_addr(&l, &a), 0);
    *port = pn_sockaddr_port(&a);
    return l;
}

/* An HTTP server (idle limit idle_ns, 0: default) on a background runtime. */
static int http_start(bg *b, pn_runtime_flavor fl, uint64_t idle_ns)
{
    int port;
    bg_init(b, fl);
    http_server srv = http_server_new(listen_any(&port), idle_ns);
    cr_assert_eq(PN_SPAWN(b->rt, srv, NULL), 0);
    bg_start(b);
    return port;
}

/* ---- a blocking client ------------------------------------------------------ */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
                 strerror(errno));
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s) { send_all(fd, s, strlen(s)); }

/* Read until end of stream (a reset counts as the end); the byte count. */
static size_t read_to_end(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        cr_assert_lt(got, cap, "more than %zu bytes", cap);
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            break;
        cr_assert_gt(n, 0, "recv: %s", strerror(errno));
        got += (size_t)n;
    }
    return got;
}

/* One HTTP response, read from fd through a small buffer. */
typedef struct resp {
    int status;
    char head[1024];
    char body[256];
    size_t body_len;
} resp;

typedef struct reader {
    int fd;
    char buf[1 << 16];
    size_t len;
} reader;

/* Read one response; false at a clean end of stream before its first byte. */
static bool read_resp(reader *r, resp *out)
{
    char *end;
    while (!(end = memmem(r->buf, r->len, "\r\n\r\n", 4))) {
        cr_assert_lt(r->len, sizeof(r->buf));
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
        if (n == 0 && r->len == 0)
            return false;
        cr_assert_gt(n, 0, "recv (%zu bytes so far): %s", r->len, n < 0 ? strerror(errno) : "eof");
        r->len += (size_t)n;
    }
    size_t head_len = (size_t)(end - r->buf) + 4;
    cr_assert_lt(head_len, sizeof(out->head));
    memcpy(out->head, r->buf, head_len);
    out->head[head_len] = 0;
    cr_assert_eq(sscanf(out->head, "HTTP/1.1 %d ", &out->status), 1, "status line: %s", out->head);
    char *cl = strcasestr(out->head, "\r\nContent-Length: ");
    cr_assert(cl, "no Content-Length in %s", out->head);
    out->body_len = strtoul(cl + 18, NULL, 10);
    cr_assert_lt(out->body_len, sizeof(out->body));
    while (r->len < head_len + out->body_len) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
        cr_assert_gt(n, 0, "recv body");
        r->len += (size_t)n;
    }
    memcpy(out->body, r->buf + head_len, out->body_len);
    out->body[out->body_len] = 0;
    memmove(r->buf, r->buf + head_len + out->body_len, r->len - head_len - out->body_len);
    r->len -= head_len + out->body_len;
    return true;
}

/* Headers every response carries, and the plaintext response exactly. */
static void check_common(const resp *p)
{
    cr_assert(strstr(p->head, "\r\nServer: pollen\r\n"), "%s", p->head);
    const char *d = strstr(p->head, "\r\nDate: ");
    cr_assert(d, "no Date: %s", p->head);
    int day, year, h, m, s;
    char wd[4], mon[4];
    cr_assert_eq(sscanf(d + 8, "%3s, %d %3s %d %d:%d:%d GMT", wd, &day, mon, &year, &h, &m, &s), 7,
                 "Date: %.40s", d + 8);
    cr_assert_eq(d[8 + 3], ',');
    cr_assert_eq(strchr(d + 2, '\r') - (d + 2), 35, "Date line of fixed width");
}

static void check_plaintext(const resp *p)
{
    cr_assert_eq(p->status, 200, "%s", p->head);
    check_common(p);
    cr_assert(strstr(p->head, "\r\nContent-Type: text/plain\r\n"), "%s", p->head);
    cr_assert(strstr(p->head, "\r\nContent-Length: 13\r\n"), "%s", p->head);
    cr_assert_eq(p->body_len, 13);
    cr_assert_str_eq(p->body, "Hello, World!");
}

#define REQ(path) "GET " path " HTTP/1.1\r\nHost: localhost\r\n\r\n"

static reader *reader_new(int fd)
{
    reader *r = calloc(1, sizeof(*r));
    r->fd = fd;
    return r;
}

/* ---- HTTP: real client ------------------------------------------------------- */

/* Run argv, return its exit status; its stdout in out (NUL-terminated). */
static int run_capture(char *const argv[], char *out, size_t cap)
{
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    cr_assert_eq(err, 0, "spawn %s: %s", argv[0], strerror(err));
    size_t got = 0;
    ssize_t n;
    while ((n = read(pfd[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = 0;
    close(pfd[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool have_curl(void)
{
    return access("/usr/bin/curl", X_OK) == 0 || access("/usr/local/bin/curl", X_OK) == 0;
}

static void curl_on(pn_runtime_flavor fl)
{
    bg b;
    int port = http_start(&b, fl, 0);
    char u1[64], u2[64], u3[64], out[4096];
    snprintf(u1, sizeof(u1), "http://127.0.0.1:%d/plaintext", port);
    snprintf(u2, sizeof(u2), "http://127.0.0.1:%d/plaintext?x=1", port);
    snprintf(u3, sizeof(u3), "http://127.0.0.1:%d/nope", port);
    /* Three URLs on one connection: num_connects is 1, then 0, 0 (reused). */
    char *keep[] = { "curl", "-s", "--max-time", "10", "-w", " [%{http_code} %{num_connects}]\n",
                     u1, u2, u3, NULL };
    cr_assert_eq(run_capture(keep, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "Hello, World! [200 1]\n"
                          "Hello, World! [200 0]\n"
                          "Not Found\n [404 0]\n");
    /* HTTP/1.0 without keep-alive: the server closes, curl reconnects. */
    char *ten[] = { "curl", "-s", "--http1.0", "--max-time", "10", "-w",
                    " [%{http_code} %{num_connects}]\n", u1, u1, NULL };
    cr_assert_eq(run_capture(ten, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "Hello, World! [200 1]\nHello, World! [200 1]\n");
    /* The headers, as curl sees them. */
    char *head[] = { "curl", "-s", "-i", "--max-time", "10", u1, NULL };
    cr_assert_eq(run_capture(head, out, sizeof(out)), 0);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n") == out, "%s", out);
    cr_assert(strstr(out, "\r\nContent-Type: text/plain\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\nContent-Length: 13\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\nServer: pollen\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\nDate: "), "%s", out);
    cr_assert(strstr(out, "\r\n\r\nHello, World!"), "%s", out);
    bg_stop(&b);
}

Test(examples, http_curl_keep_alive_and_http10)
{
    if (!have_curl())
        cr_skip_test("curl is not installed");
    curl_on(PN_RUNTIME_CURRENT_THREAD);
    curl_on(PN_RUNTIME_MULTI_THREAD);
}

/* ---- HTTP: raw sockets ----------------------------------------------------------- */

BOTH(examples, http_keep_alive)
{
    bg b;
    int port = http_start(&b, fl, 0);
    int fd = dial(port);
    reader *r = reader_new(fd);
    resp p;
    for (int i = 0; i < 5; i++) {
        send_str(fd, REQ("/plaintext"));
        cr_assert(read_resp(r, &p));
        check_plaintext(&p);
        cr_assert_null(strstr(p.head, "Connection:"), "%s", p.head);
    }
    /* HEAD: the same headers, no body */
    send_str(fd, "HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" REQ("/plaintext"));
    {
        /* the HEAD response has Content-Length 13 and no body: read its head */
        char *end;
        while (!(end = memmem(r->buf, r->len, "\r\n\r\n", 4))) {
            ssize_t n = recv(fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
            cr_assert_gt(n, 0);
            r->len += (size_t)n;
        }
        cr_assert(memcmp(r->buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
        cr_assert(memmem(r->buf, (size_t)(end - r->buf), "\r\nContent-Length: 13\r\n", 22));
        size_t hl = (size_t)(end - r->buf) + 4;
        memmove(r->buf, r->buf + hl, r->len - hl);
        r->len -= hl;
    }
    cr_assert(read_resp(r, &p));
    check_plaintext(&p);
    close(fd);
    free(r);
    bg_stop(&b);
}

BOTH(examples, http_pipelining_in_order)
{
    bg b;
    int port = http_start(&b, fl, 0);
    int fd = dial(port);
    reader *r = reader_new(fd);
    resp p;
    /* three requests in one write: three responses, in order */
    send_str(fd, REQ("/plaintext") REQ("/missing") "POST /plaintext HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 5\r\n\r\nhello" REQ("/plaintext"));
    cr_assert(read_resp(r, &p));
    check_plaintext(&p);
    cr_assert(read_resp(r, &p));
    cr_assert_eq(p.status, 404);
    check_common(&p);
    cr_assert_str_eq(p.body, "Not Found\n");
    cr_assert(read_resp(r, &p));
    cr_assert_eq(p.status, 405, "the body of the POST was skipped");
    cr_assert(strstr(p.head, "\r\nAllow: GET, HEAD\r\n"));
    cr_assert(read_resp(r, &p));
    check_plaintext(&p);
    /* 600 requests in one write: more responses than one write buffer */
    {
        size_t n = 600, len = 0;
        char *many = malloc(64 * n);
        for (size_t i = 0; i < n; i++) {
            const char *req = i % 7 == 3 ? REQ("/other/") : REQ("/plaintext");
            memcpy(many + len, req, strlen(req));
            len += strlen(req);
        }
        send_all(fd, many, len);
        free(many);
        for (size_t i = 0; i < n; i++) {
            cr_assert(read_resp(r, &p));
            if (i % 7 == 3)
                cr_assert_eq(p.status, 404, "response %zu", i);
            else
                check_plaintext(&p);
        }
    }
    /* a head split over many writes */
    {
        const char *req = REQ("/plaintext");
        for (size_t i = 0; req[i]; i++)
            send_all(fd, req + i, 1);
        cr_assert(read_resp(r, &p));
        check_plaintext(&p);
    }
    close(fd);
    free(r);
    bg_stop(&b);
}

/* Send `req`, expect one response with `status`, then the server's close. */
static void expect_close(int port, const char *req, size_t len, int status)
{
    int fd = dial(port);
    send_all(fd, req, len);
    reader *r = reader_new(fd);
    resp p;
    cr_assert(read_resp(r, &p), "a response to %.60s", req);
    cr_assert_eq(p.status, status, "%.60s -> %s", req, p.head);
    check_common(&p);
    cr_assert(strstr(p.head, "\r\nConnection: close\r\n"), "%s", p.head);
    cr_assert_eq(r->len, 0, "nothing after it");
    char rest[64];
    ssize_t n = recv(fd, rest, sizeof(rest), 0);
    cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "closed after %.60s (%zd)", req, n);
    close(fd);
    free(r);
}

BOTH(examples, http_errors_and_close)
{
    bg b;
    int port = http_start(&b, fl, 0);
    /* oversize head: 431 (also when more keeps coming) */
    {
        size_t n = 20000;
        char *big = malloc(n);
        const char *start = "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: ";
        memcpy(big, start, strlen(start));
        memset(big + strlen(start), 'a', n - strlen(start));
        expect_close(port, big, 9000, 431);
        expect_close(port, big, n, 431);
        memcpy(big, "GET /", 5);
        memset(big + 5, 'b', n - 5);
        expect_close(port, big, n, 431);
        free(big);
    }
    /* malformed: 400 */
    static const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\n\r\n",                             /* no Host */
        "GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        "GET  /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /plain text HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /plaintext HTTP/1.x\r\nHost: x\r\n\r\n",
        "GET /plaintext\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "\x01\x02\x03\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_close(port, bad[i], strlen(bad[i]), 400);
    expect_close(port, "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 27, 505);
    {
        const char te[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        expect_close(port, te, sizeof(te) - 1, 501);
        const char nul[] = "GET /plaintext HTTP/1.1\r\nHost: x\0\r\n\r\n";
        expect_close(port, nul, sizeof(nul) - 1, 400);
    }
    /* Connection: close, answered, then closed; later pipelined requests ignored */
    {
        const char req[] = "GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, close\r\n\r\n"
                           REQ("/plaintext");
        expect_close(port, req, sizeof(req) - 1, 200);
    }
    /* HTTP/1.0 closes; with keep-alive it stays open */
    expect_close(port, "GET /plaintext HTTP/1.0\r\n\r\n", 27, 200);
    {
        int fd = dial(port);
        reader *r = reader_new(fd);
        resp p;
        for (int i = 0; i < 3; i++) {
            send_str(fd, "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            cr_assert(read_resp(r, &p));
            cr_assert_eq(p.status, 200);
            cr_assert(strstr(p.head, "\r\nConnection: keep-alive\r\n"), "%s", p.head);
            cr_assert_str_eq(p.body, "Hello, World!");
        }
        close(fd);
        free(r);
    }
    /* good requests, then a bad one in the same write: the good ones answered first */
    {
        int fd = dial(port);
        send_str(fd, REQ("/plaintext") REQ("/plaintext") "BAD\r\n\r\n");
        reader *r = reader_new(fd);
        resp p;
        cr_assert(read_resp(r, &p));
        check_plaintext(&p);
        cr_assert(read_resp(r, &p));
        check_plaintext(&p);
        cr_assert(read_resp(r, &p));
        cr_assert_eq(p.status, 400);
        cr_assert(!read_resp(r, &p), "closed");
        close(fd);
        free(r);
    }
    /* the server still serves */
    {
        int fd = dial(port);
        reader *r = reader_new(fd);
        resp p;
        send_str(fd, REQ("/plaintext"));
        cr_assert(read_resp(r, &p));
        check_plaintext(&p);
        close(fd);
        free(r);
    }
    bg_stop(&b);
}

BOTH(examples, http_idle_and_slow_clients_are_closed)
{
    bg b;
    int port = http_start(&b, fl, PN_MS(200));
    char buf[512];
    /* says nothing */
    int quiet = dial(port);
    /* a slowloris: one byte of a head now and then, never the end */
    int slow = dial(port);
    /* served once, then idle */
    int idle = dial(port);
    send_str(idle, REQ("/plaintext"));
    const char *trickle = "GET /plaintext HTTP/1.1\r\n";
    for (int i = 0; i < 10; i++) {
        ssize_t n = send(slow, trickle + i, 1, MSG_NOSIGNAL);
        if (n < 0)
            break;              /* already closed: fine */
        usleep(50 * 1000);
    }
    cr_assert_eq(read_to_end(quiet, buf, sizeof(buf)), 0);
    cr_assert_eq(read_to_end(slow, buf, sizeof(buf)), 0);
    size_t got = read_to_end(idle, buf, sizeof(buf));
    cr_assert_gt(got, 0);
    cr_assert(memmem(buf, got, "Hello, World!", 13));
    close(quiet);
    close(slow);
    close(idle);
    bg_stop(&b);
}

/* ---- tcp_proxy ----------------------------------------------------------------- */

#define PROXY_BYTES (1u << 20)

static unsigned char proxy_pattern(size_t i) { return (unsigned char)(i * 31 + (i >> 11)); }

/* The upstream: accepts one connection.  mode 0: echo until end of stream,
 * then send "bye" and shut down its write half, then wait for the close.
 * mode 1: send "hello", shut down its write half first, then count what
 * arrives until end of stream. */
typedef struct upstream {
    pn_future base;
    int pc, mode;
    pn_tcp_listener l;
    pn_tcp_accept_future acc;
    pn_tcp_stream s;
    ssize_t n;
    size_t received;
    pn_write_all_future w;
    char got[64];
    char buf[8192];
} upstream;

static pn_poll upstream_poll(pn_future *f, pn_cx *cx)
{
    upstream *u = (upstream *)f;
    PN_ASYNC_BEGIN(u->pc);
    u->acc = pn_tcp_accept(&u->l);
    PN_AWAIT(u->pc, &u->acc, cx);
    cr_assert_eq(u->acc.res, 0);
    u->s = u->acc.stream;
    if (u->mode == 1) {
        u->w = pn_tcp_write_all(&u->s, "hello", 5);
        PN_AWAIT(u->pc, &u->w, cx);
        cr_assert_eq(u->w.res, 5);
        cr_assert_eq(pn_tcp_shutdown(&u->s, SHUT_WR), 0);
    }
    for (;;) {
        PN_AWAIT_POLL(u->pc, pn_tcp_poll_read(&u->s, cx, u->buf, sizeof(u->buf), &u->n));
        cr_assert_geq(u->n, 0, "upstream read: %s", pn_strerror((int)u->n));
        if (u->n == 0)
            break;
        if (u->mode == 1) {
            cr_assert_leq(u->received + (size_t)u->n, sizeof(u->got));
            memcpy(u->got + u->received, u->buf, (size_t)u->n);
        }
        u->received += (size_t)u->n;
        if (u->mode == 0) {
            u->w = pn_tcp_write_all(&u->s, u->buf, (size_t)u->n);
            PN_AWAIT(u->pc, &u->w, cx);
            cr_assert_eq(u->w.res, u->n);
        }
    }
    if (u->mode == 1) {
        cr_assert_eq(u->received, 13);
        cr_assert_arr_eq(u->got, "still talking", 13);
    }
    if (u->mode == 0) {
        cr_assert_eq(u->received, PROXY_BYTES);
        u->w = pn_tcp_write_all(&u->s, "bye", 3);
        PN_AWAIT(u->pc, &u->w, cx);
        cr_assert_eq(u->w.res, 3);
        cr_assert_eq(pn_tcp_shutdown(&u->s, SHUT_WR), 0);
        PN_AWAIT_POLL(u->pc, pn_tcp_poll_read(&u->s, cx, u->buf, sizeof(u->buf), &u->n));
        cr_assert_eq(u->n, 0, "the proxy closes after both directions ended");
    }
    pn_tcp_close(&u->s);
    pn_tcp_listener_close(&u->l);
    PN_ASYNC_END(u->pc);
}

static const pn_future_vtable upstream_vt = { upstream_poll, NULL, "upstream" };

typedef struct sender_arg {
    int fd;
} sender_arg;

static void *proxy_sender(void *arg)
{
    sender_arg *s = arg;
    unsigned char *data = malloc(PROXY_BYTES);
    for (size_t i = 0; i < PROXY_BYTES; i++)
        data[i] = proxy_pattern(i);
    send_all(s->fd, data, PROXY_BYTES);
    shutdown(s->fd, SHUT_WR);
    free(data);
    return NULL;
}

BOTH(examples, proxy_copies_both_ways_with_half_close)
{
    for (int mode = 0; mode < 2; mode++) {
        bg b;
        bg_init(&b, fl);
        int uport, pport;
        upstream *u = calloc(1, sizeof(*u));
        *u = (upstream){ .base = { &upstream_vt }, .mode = mode, .l = listen_any(&uport) };
        pn_join_handle *uh;
        cr_assert_eq(pn_spawn(b.rt, PN_FUTURE(u), sizeof(*u), &uh), 0);
        pn_sockaddr target = pn_sockaddr_loopback4((uint16_t)uport);
        proxy_server ps = proxy_server_new(listen_any(&pport), &target, 0);
        cr_assert_eq(PN_SPAWN(b.rt, ps, NULL), 0);
        bg_start(&b);

        int fd = dial(pport);
        if (mode == 0) {
            /* a megabyte up and back, then our half-close travels up, the
             * upstream's "bye" and half-close travel down */
            pthread_t th;
            sender_arg sa = { fd };
            cr_assert_eq(pthread_create(&th, NULL, proxy_sender, &sa), 0);
            char *got = malloc(PROXY_BYTES + 64);
            size_t n = read_to_end(fd, got, PROXY_BYTES + 64);
            pthread_join(th, NULL);
            cr_assert_eq(n, PROXY_BYTES + 3, "got %zu bytes", n);
            for (size_t i = 0; i < PROXY_BYTES; i++)
                cr_assert_eq((unsigned char)got[i], proxy_pattern(i), "byte %zu", i);
            cr_assert_arr_eq(got + PROXY_BYTES, "bye", 3);
            free(got);
        } else {
            /* the upstream ends first: we read its bytes and end of stream,
             * and can still send, which reaches it */
            char got[16];
            size_t n = read_to_end(fd, got, sizeof(got));
            cr_assert_eq(n, 5);
            cr_assert_arr_eq(got, "hello", 5);
            send_str(fd, "still talking");
            shutdown(fd, SHUT_WR);
            cr_assert_eq(read_to_end(fd, got, sizeof(got)), 0);
        }
        close(fd);
        /* the upstream task checks its side (and fails the test itself) */
        while (!pn_join_handle_is_finished(uh))
            usleep(1000);
        bg_stop(&b);
        pn_join_handle_free(uh);
        free(u);
    }
}

BOTH(examples, proxy_unreachable_target_closes_client)
{
    bg b;
    bg_init(&b, fl);
    int dead_port, pport;
    pn_tcp_listener dead = listen_any(&dead_port);
    pn_tcp_listener_close(&dead);                   /* nobody listens there now */
    pn_sockaddr target = pn_sockaddr_loopback4((uint16_t)dead_port);
    proxy_server ps = proxy_server_new(listen_any(&pport), &target, PN_SEC(2));
    cr_assert_eq(PN_SPAWN(b.rt, ps, NULL), 0);
    bg_start(&b);
    int fd = dial(pport);
    char buf[16];
    cr_assert_eq(read_to_end(fd, buf, sizeof(buf)), 0);
    close(fd);
    bg_stop(&b);
}

/* ---- chat_server --------------------------------------------------------------- */

/* Read one line (with its '\n') into buf. */
static void read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        cr_assert_lt(n + 1, cap);
        ssize_t r = recv(fd, buf + n, 1, 0);
        cr_assert_eq(r, 1, "recv line: %s", r < 0 ? strerror(errno) : "eof");
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = 0;
}

static void local_name(int fd, char *out)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
    sprintf(out, "%s:%d", ip, ntohs(a.sin_port));
}

typedef struct drain_arg {
    int fd;
    size_t want;            /* bytes of a's lines to receive */
    size_t per;             /* the length of each of a's lines */
    const char *skip;       /* c's leave line, which may come among them */
    bool skipped;           /* it did (read after the thread is joined) */
    _Atomic size_t got;     /* the sender paces itself on it */
    _Atomic bool done;      /* the reader stopped (end of stream or error) */
    char *buf;              /* want + per bytes */
} drain_arg;

/* Receive a's LINES lines into buf.  c is dropped as soon as it falls a
 * whole ring behind, which on a loaded machine can happen during the
 * flood: its leave line then comes among a's (at a line boundary, since
 * every message is written whole) and is taken out here. */
static void *chat_drain(void *arg)
{
    drain_arg *d = arg;
    size_t got = 0, next = 0, skiplen = strlen(d->skip);
    while (got < d->want) {
        size_t room = d->want + (d->skipped ? 0 : skiplen) - got;
        ssize_t n = recv(d->fd, d->buf + got, room, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        while (next < got) {
            if (d->buf[next] != '*') {
                next += d->per;
                continue;
            }
            if (d->skipped || got - next < skiplen)
                break;              /* a second one, or not all of it yet */
            if (memcmp(d->buf + next, d->skip, skiplen) != 0)
                break;              /* not the leave line: the checks fail */
            memmove(d->buf + next, d->buf + next + skiplen, got - next - skiplen);
            got -= skiplen;
            d->skipped = true;
        }
        atomic_store(&d->got, got);
    }
    atomic_store(&d->done, true);
    return NULL;
}

static void chat_on(pn_runtime_flavor fl)
{
    bg b;
    bg_init(&b, fl);
    int port;
    chat_server cs = chat_server_new(listen_any(&port));
    cr_assert_eq(PN_SPAWN(b.rt, cs, NULL), 0);
    bg_start(&b);

    char an[32], bn[32], cn[32], line[2048], want[2048];
    int a = dial(port);
    local_name(a, an);
    int bfd = dial(port);
    local_name(bfd, bn);
    read_line(a, line, sizeof(line));                 /* b is in the room now */
    snprintf(want, sizeof(want), "* %s joined\n", bn);
    cr_assert_str_eq(line, want);
    send_str(a, "hello\nwor");
    send_str(a, "ld\r\n");
    read_line(bfd, line, sizeof(line));
    snprintf(want, sizeof(want), "[%s] hello\n", an);
    cr_assert_str_eq(line, want);
    read_line(bfd, line, sizeof(line));
    snprintf(want, sizeof(want), "[%s] world\n", an);
    cr_assert_str_eq(line, want);
    send_str(bfd, "hi a\n");
    read_line(a, line, sizeof(line));
    snprintf(want, sizeof(want), "[%s] hi a\n", bn);
    cr_assert_str_eq(line, want);

    /* c does not read while a sends far more than c's socket buffers and
     * the room's history hold; b reads everything. */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    local_name(c, cn);
    read_line(a, line, sizeof(line));
    snprintf(want, sizeof(want), "* %s joined\n", cn);
    cr_assert_str_eq(line, want);
    read_line(bfd, line, sizeof(line));
    cr_assert_str_eq(line, want);

    enum { LINES = 16000, TEXT = 1000 };
    size_t prefix = strlen(an) + 3;
    size_t per = prefix + TEXT + 1;
    char left[128];
    snprintf(left, sizeof(left), "* %s left (too slow)\n", cn);
    drain_arg d = { .fd = bfd, .want = (size_t)LINES * per, .per = per, .skip = left };
    d.buf = malloc(d.want + per);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, chat_drain, &d), 0);
    char *text = malloc(TEXT + 1);
    memset(text, 'z', TEXT);
    text[TEXT] = '\n';
    for (int i = 0; i < LINES; i++) {
        char num[16];
        snprintf(num, sizeof(num), "%06d", i);
        memcpy(text, num, 6);
        send_all(a, text, TEXT + 1);
        /* b is a reader that keeps up: never let it fall more than 32 KiB
         * (an eighth of the room's history) behind, even when this machine
         * is slow (under ThreadSanitizer three busy threads share two
         * CPUs).  c, which does not read, falls far behind. */
        while ((size_t)(i + 1) * per > atomic_load(&d.got) + 32768 &&
               !atomic_load(&d.done))
            sched_yield();
    }
    pthread_join(th, NULL);
    size_t bgot = atomic_load(&d.got);
    cr_assert_eq(bgot, d.want, "b received every line (%zu of %zu bytes)", bgot, d.want);
    /* every line of a's, in order */
    for (int i = 0; i < LINES; i++) {
        char *l = d.buf + (size_t)i * per, num[8];
        snprintf(num, sizeof(num), "%06d", i);
        cr_assert_eq(l[0], '[', "line %d", i);
        cr_assert_eq(memcmp(l + prefix, num, 6), 0, "line %d in order", i);
        cr_assert_eq(l[per - 1], '\n');
    }
    /* c reads at last: the first lines, as many as its socket held, then
     * the end (it was dropped for missing the others), and b hears of it */
    size_t cgot = read_to_end(c, d.buf, d.want);
    cr_assert_gt(cgot, 0);
    cr_assert_lt(cgot, d.want, "c missed lines");
    cr_assert_eq(cgot % per, 0, "c got whole lines (%zu bytes)", cgot);
    for (size_t i = 0; i < cgot / per; i++) {
        char *l = d.buf + i * per, num[24];
        snprintf(num, sizeof(num), "%06zu", i);
        cr_assert_eq(memcmp(l + prefix, num, 6), 0, "c's line %zu in order", i);
    }
    close(c);
    if (!d.skipped) {                   /* c was dropped after the flood */
        read_line(bfd, line, sizeof(line));
        cr_assert_str_eq(line, left);
    }
    free(d.buf);
    free(text);
    /* a's last words, without a newline, then a leaves */
    send_str(a, "last words");
    shutdown(a, SHUT_WR);
    read_line(bfd, line, sizeof(line));
    snprintf(want, sizeof(want), "[%s] last words\n", an);
    cr_assert_str_eq(line, want);
    /* a heard of c's drop too, then the server closes a */
    size_t got = read_to_end(a, line, sizeof(line));
    cr_assert_eq(got, strlen(left));
    cr_assert_arr_eq(line, left, got);
    close(a);
    read_line(bfd, line, sizeof(line));
    snprintf(want, sizeof(want), "* %s left\n", an);
    cr_assert_str_eq(line, want);
    close(bfd);
    bg_stop(&b);
}

Test(examples, chat_lines_reach_the_others_and_slow_clients_are_dropped, .timeout = 120)
{
    int before = count_fds();
    chat_on(PN_RUNTIME_CURRENT_THREAD);
    cr_assert_eq(count_fds(), before, "fds left (current-thread)");
    chat_on(PN_RUNTIME_MULTI_THREAD);
    cr_assert_eq(count_fds(), before, "fds left (multi-thread)");
}

/* A request that ends the connection (HTTP/1.0 without keep-alive) with a
 * body the server does not read: the server drains it before closing, so
 * the client reads the whole response and then a clean end of stream, not
 * a reset. */
BOTH(examples, http10_close_with_unread_body_ends_cleanly)
{
    bg b;
    int port = http_start(&b, fl, 0);
    int fd = dial(port);
    enum { BODY = 100000 };
    char *req = malloc(BODY + 128);
    int hl = snprintf(req, 128, "POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n", BODY);
    memset(req + hl, 'b', BODY);
    size_t off = 0, total = (size_t)hl + BODY;
    while (off < total) {
        ssize_t n = send(fd, req + off, total - off, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        off += (size_t)n;
    }
    char resp_buf[4096];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, resp_buf + got, sizeof(resp_buf) - 1 - got, 0);
        cr_assert_geq(n, 0, "recv: %s (the server reset the connection)", strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
        cr_assert_lt(got, sizeof(resp_buf) - 1);
    }
    resp_buf[got] = 0;
    cr_assert(strstr(resp_buf, " 404 "), "%s", resp_buf);
    free(req);
    close(fd);
    bg_stop(&b);
}

/* ---- worker_pool ------------------------------------------------------------ */

/* The example checks its own results (every job once, each right) and
 * returns 0 only then; its workers stop through the cancellation token and
 * the group is joined, so a lost wake-up in any of them hangs into the
 * watchdog.  Current-thread, then 1 and 2 workers. */
Test(examples, worker_pool_processes_every_job_once_and_stops_by_token)
{
    for (long workers = 0; workers <= 2; workers++)
        cr_assert_eq(worker_pool_run(workers), 0, "worker_pool with %ld workers", workers);
}
