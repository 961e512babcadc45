/*
 * echo_load.c - a closed-loop TCP echo load generator on plain epoll.
 *
 * Deliberately not written with pollen (it must not measure pollen with
 * pollen) and single-threaded (on a 2-CPU machine the server gets the other
 * CPU).  N connections to 127.0.0.1:PORT; each sends a SIZE-byte message,
 * waits until all SIZE bytes came back, records the round trip and sends
 * again (closed loop: one message in flight per connection).
 *
 * Timeline: connect every connection, start the loop, run WARMUP seconds
 * without counting, then count for SECS seconds.  At both ends of the
 * counted window it reads the server's utime+stime from /proc/PID/stat (if
 * --server-pid is given), so server_us_per_msg is the server's CPU time
 * (user+system, all threads) per echoed message over exactly that window.
 *
 * Latency: a log-bucket histogram (HdrHistogram-like: 16 linear sub-buckets
 * per power of two, so a reported percentile is within 1/16 = 6% of the
 * true value; the bucket midpoint is reported).  Closed loop means the
 * latencies suffer from coordinated omission when the server stalls: a
 * stalled connection sends nothing, so it records one long sample, not
 * many.  Hence the fixed-rate mode below.
 *
 * Fixed rate (--rate R, open loop as wrk2 does it): R messages per second in
 * total, spread evenly over the connections: the j-th send of the whole run
 * (j = 0, 1, ...) is intended at start + j/R and belongs to connection
 * j mod N, so each connection has an intended send every N/R seconds.  Still
 * one message in flight per connection; a send whose intended time came
 * while that connection's previous message was still unanswered goes out
 * as soon as the reply arrives and counts as missed (behind schedule).
 * Latency is measured from the *intended* send time, so a stalled server
 * shows up in every message that should have been sent during the stall
 * (no coordinated omission).  The loop waits with a nanosecond
 * epoll_pwait2 timeout for the next intended send.  Output: the same line
 * plus rate=R (the target), missed=.. (within the counted window) and
 * missed_pct (missed / msgs, %).
 *
 * Connection churn (--churn; --conns N is then the number of slots): each
 * slot runs a closed loop of socket(), non-blocking connect() to
 * 127.0.0.1:PORT, one SIZE-byte message, wait for the whole echo, close(),
 * and at once the next socket().  The client closes first, as a client of a
 * short request does, so the server reads EOF and closes its side; the
 * server's work per connection is accept, read, write, read EOF, close.
 * (On loopback a packet is received in its sender's context: the whole
 * handshake runs in the client's connect(), the client's receive of the
 * echo and of the FIN in the server's write and close; the same for every
 * server.)  Same timeline and server CPU reading as above, per connection
 * completed in the window: conns_per_s, server_us_per_conn (utime+stime /
 * connections),
 * and the histogram holds the whole cycle, from socket() before the
 * connect to the return of close() after the echo.  One epoll_ctl per
 * connection (edge-triggered EPOLLIN|EPOLLOUT, added once; close() removes
 * it).
 *   Ports: the client's side of every connection stays in TIME_WAIT for
 * 60 s, so 28,232 ephemeral ports (32768-60999) last about a second at
 * this rate; connect() reuses a TIME_WAIT port after 1 s only with
 * net.ipv4.tcp_tw_reuse = 1, or 2 (loopback only, the kernel's default).
 * Checked with 2 (tcp_tw_reuse_delay 1000 ms): 10 s at full speed (about
 * 10,000 conns/s, 50 and 200 slots) gave no EADDRNOTAVAIL, so the client
 * closes normally (FIN).  --linger0 sets SO_LINGER {1, 0} instead: close()
 * sends a RST and leaves no TIME_WAIT, but the server then reads
 * ECONNRESET, not EOF, so the figures are not the same benchmark; it is
 * there for a kernel without tcp_tw_reuse, not used by bench/run.sh.
 *   Errors: any failed connect (immediate, or reported by the first
 * send), send or recv error, EOF before the whole echo or more bytes than
 * sent counts in errors= (over the whole run, warm-up included); the
 * slot closes and connects again after a millisecond.  A breakdown by
 * phase and errno goes to stderr.  The run fails (exit 1, the line still
 * printed) when more than 0.1% of the connections started failed, or none
 * completed: a stray reset among hundreds of thousands of connections
 * does not make the figures wrong, but a systematic failure (ports
 * exhausted, a server that resets or stops accepting) makes conns_per_s
 * the speed of failing, not of serving.  Also printed: started=
 * (connections begun in the whole run), stalled= (slots whose cycle was
 * more than 1 s old at the end: a SYN dropped from a full accept queue is
 * retried after 1 s, a lost connection never ends), server_rss_growth_kb=
 * (VmRSS change over the window) and server_fds_left= (descriptors the
 * server holds 2 s after the last close beyond those it held before the
 * first connect: a leak shows here; also said on stderr).
 *
 * Idle connections (--idle N --server-pid PID): reads the server's VmRSS,
 * opens N connections that never send, waits until the server holds N more
 * file descriptors (/proc/PID/fd) and its RSS has settled, reads VmRSS again
 * and prints
 *   NAME conns=N rss_before_kb=.. rss_after_kb=.. bytes_per_conn=..
 * Raises its own open-file soft limit; the server needs the same (run.sh
 * starts it under `ulimit -n`).
 *
 * Output, one line:
 *   NAME conns=.. size=.. secs=.. msgs=.. msgs_per_s=.. mb_per_s=..
 *        p50_us=.. p99_us=.. p999_us=.. max_us=.. server_us_per_msg=..
 *        server_cpu_pct=.. client_cpu_pct=..
 * mb_per_s counts echoed payload (SIZE bytes per message, one direction),
 * in 10^6 bytes.  With --churn:
 *   NAME conns=.. size=.. secs=.. completed=.. conns_per_s=.. p50_us=..
 *        p99_us=.. p999_us=.. max_us=.. server_us_per_conn=..
 *        server_cpu_pct=.. client_cpu_pct=.. started=.. errors=..
 *        stalled=.. server_rss_growth_kb=.. server_fds_left=..
 *
 * Usage: echo_load --port P [--conns 50] [--size 64] [--secs 5]
 *                  [--warmup 1] [--server-pid PID] [--name echo] [--rate R]
 *        echo_load --churn --port P [--conns 50] [--size 64] [--secs 5]
 *                  [--warmup 1] [--server-pid PID] [--name churn] [--linger0]
 *        echo_load --port P --idle N --server-pid PID [--name idle_conn]
 *        echo_load --probe --port P   (exit 0 if something accepts there)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "echo_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- histogram ------------------------------------------------------------ */

#define SUB_BITS 4
#define SUB (1u << SUB_BITS)
#define NBUCKETS (64 * SUB)

static uint64_t hist[NBUCKETS];
static uint64_t hist_n, hist_max;

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);        /* >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (msb - SUB_BITS)) & (SUB - 1);
    return (msb - SUB_BITS + 1) * SUB + sub;
}

/* Midpoint of a bucket's value range. */
static double bucket_mid(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned msb = b / SUB + SUB_BITS - 1, sub = b % SUB;
    double lo = ldexp(1.0, (int)msb) + (double)sub * ldexp(1.0, (int)(msb - SUB_BITS));
    return lo + ldexp(1.0, (int)(msb - SUB_BITS)) / 2;
}

static void hist_add(uint64_t v)
{
    hist[bucket_of(v)]++;
    hist_n++;
    if (v > hist_max)
        hist_max = v;
}

static double hist_pct(double q)
{
    if (hist_n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)hist_n), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank) {
            double m = bucket_mid(b);
            return m > (double)hist_max ? (double)hist_max : m;
        }
    }
    return (double)hist_max;
}

/* ---- server CPU time ------------------------------------------------------ */

/* utime+stime of a process in clock ticks, or -1. */
static long long proc_cpu_ticks(int pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');    /* comm may contain spaces */
    if (!p)
        return -1;
    /* After ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt
     * cminflt majflt cmajflt utime(14) stime(15). */
    unsigned long long ut, st;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- connections ------------------------------------------------------------ */

typedef struct conn {
    int fd;
    size_t sent, rcvd;       /* bytes of the current message */
    uint64_t t_send;         /* when its first byte went out (fixed rate: was intended) */
    int want_out;            /* EPOLLOUT registered */
    int busy;                /* fixed rate: a message in flight */
    uint64_t k;              /* fixed rate: sends started on this connection */
    size_t idx;              /* its index */
} conn;

static int epfd;
static size_t msg_size;
static char *sendbuf, *recvbuf;
static int counting;
static uint64_t msgs;
/* fixed rate */
static double rate_target;   /* messages/s in total, 0: closed loop */
static uint64_t rate_t0;
static size_t rate_n;        /* connections */
static uint64_t missed;

/* Intended time of connection i's k-th send (fixed rate). */
static uint64_t intended(size_t i, uint64_t k)
{
    return rate_t0 + (uint64_t)((double)(k * rate_n + i) * 1e9 / rate_target);
}

static int connect_to(int port, int blocking)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!blocking)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void set_out(conn *c, int on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = on;
}

/* Push the rest of the current message. */
static void pump_send(conn *c)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, sendbuf + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                set_out(c, 1);
                return;
            }
            die("send");
        }
        c->sent += (size_t)n;
    }
    set_out(c, 0);
}

static void start_msg(conn *c)
{
    c->sent = c->rcvd = 0;
    c->t_send = now_ns();
    pump_send(c);
}

static void on_readable(conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, recvbuf, msg_size - c->rcvd, 0);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            die("recv");
        }
        if (n == 0) {
            fprintf(stderr, "echo_load: the server closed a connection\n");
            exit(1);
        }
        c->rcvd += (size_t)n;
        if (c->rcvd == msg_size) {
            uint64_t t = now_ns();
            if (counting) {
                hist_add(t - c->t_send);
                msgs++;
            }
            if (rate_target > 0) {
                c->busy = 0;
                uint64_t due = intended(c->idx, c->k);
                if (due > t)
                    return;  /* sent when the schedule reaches it */
                /* its intended time passed while the previous was in flight */
                if (counting)
                    missed++;
                c->sent = c->rcvd = 0;
                c->t_send = due;
                c->busy = 1;
                c->k++;
                pump_send(c);
                return;
            }
            start_msg(c);
            return;  /* the reply to the new message cannot be here yet */
        }
    }
}

/* ---- idle connections --------------------------------------------------------- */

/* VmRSS of a process in kB, or -1. */
static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Open file descriptors of a process, or -1. */
static long proc_nfds(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Wait (up to 20 s) until the server holds at least WANT fds. */
static int wait_fds(int pid, long want)
{
    for (int i = 0; i < 4000; i++) {
        long n = proc_nfds(pid);
        if (n < 0)
            return -1;
        if (n >= want)
            return 0;
        sleep_ms(5);
    }
    return -1;
}

static int idle_run(int port, size_t n, int pid, const char *name)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n + 64) {
        rl.rlim_cur = rl.rlim_max < n + 64 ? rl.rlim_max : n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int *fds = malloc(n * sizeof *fds);
    if (!fds)
        die("malloc");
    sleep_ms(200);  /* let the server settle after its start and the probe */
    long fd0 = proc_nfds(pid), rss0 = proc_rss_kb(pid);
    if (fd0 < 0 || rss0 < 0) {
        fprintf(stderr, "echo_load: cannot read /proc/%d\n", pid);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        /* keep the accept queue (backlog 1024) well below full: a dropped
         * SYN is retried only after a second */
        if (i >= 512 && i % 256 == 0 && wait_fds(pid, fd0 + (long)i - 512) < 0) {
            fprintf(stderr, "echo_load: the server accepted only %ld of %zu connections\n",
                    proc_nfds(pid) - fd0, i);
            return 1;
        }
        fds[i] = connect_to(port, 1);
        if (fds[i] < 0)
            die("connect");
    }
    if (wait_fds(pid, fd0 + (long)n) < 0) {
        fprintf(stderr, "echo_load: the server holds %ld more fds, not %zu\n",
                proc_nfds(pid) - fd0, n);
        return 1;
    }
    /* settled: two readings 100 ms apart within 0.5% (at most 3 s) */
    long rss1 = proc_rss_kb(pid);
    for (int i = 0; i < 30; i++) {
        sleep_ms(100);
        long r = proc_rss_kb(pid);
        long d = r > rss1 ? r - rss1 : rss1 - r;
        rss1 = r;
        if (d * 200 <= rss1)
            break;
    }
    printf("%s conns=%zu rss_before_kb=%ld rss_after_kb=%ld bytes_per_conn=%.0f\n", name, n,
           rss0, rss1, (double)(rss1 - rss0) * 1024.0 / (double)n);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

/* ---- connection churn ------------------------------------------------------------ */

/* One slot: a connection that is connected, used for one echo and closed,
 * over and over. */
typedef struct slot {
    int fd;                  /* -1: waiting to be opened again after an error */
    int connected;           /* the first send went through */
    size_t sent, rcvd;
    uint64_t t0;             /* when socket() was called for this cycle */
} slot;

/* Errors by phase and errno, reported on stderr at the end. */
enum { PH_CONNECT, PH_SEND, PH_RECV, PH_EOF, PH_EXTRA, NPHASES };
static const char *const phase_name[NPHASES] = {
    "connect", "send", "recv", "server closed before the whole echo",
    "server sent more than the message",
};
#define NERRNO 256
static uint64_t churn_errs[NPHASES][NERRNO];
static uint64_t churn_errors, churn_started, churn_done;
static size_t churn_retry;   /* slots with fd -1 */
static int churn_port;
static int churn_linger;     /* --linger0: SO_LINGER {1, 0} on the client */

static void churn_fail(slot *s, int phase, int err)
{
    churn_errs[phase][err > 0 && err < NERRNO ? err : 0]++;
    churn_errors++;
    if (s->fd >= 0)
        close(s->fd);          /* also takes it out of the epoll set */
    s->fd = -1;
    churn_retry++;
}

static void churn_step(slot *s, uint32_t ev);

/* Start a new cycle: socket, non-blocking connect, register. */
static void churn_open(slot *s)
{
    s->t0 = now_ns();
    s->sent = s->rcvd = 0;
    s->connected = 0;
    churn_started++;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket");         /* descriptors are ours to budget: a bug, not a figure */
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (churn_linger) {
        struct linger l = { 1, 0 };
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)churn_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(s->fd, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno != EINPROGRESS) {
        churn_fail(s, PH_CONNECT, errno);
        return;
    }
    /* Edge-triggered, both directions, registered once: EPOLLOUT reports
     * the end of the handshake (and room to send the rest of a large
     * message), EPOLLIN the echo; close() takes the fd out of the set, so
     * a cycle costs one epoll_ctl. */
    struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = s };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &e) < 0)
        die("epoll_ctl");
    if (r == 0)
        churn_step(s, EPOLLOUT);
}

/* An event on a slot's connection (edge-triggered: send and read until
 * EAGAIN). */
static void churn_step(slot *s, uint32_t ev)
{
    while (s->sent < msg_size) {
        ssize_t n = send(s->fd, sendbuf + s->sent, msg_size - s->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN)
                break;         /* still connecting, or the buffer is full: EPOLLOUT comes */
            /* a failed connect reports its error here (as SO_ERROR would) */
            churn_fail(s, s->connected ? PH_SEND : PH_CONNECT, errno);
            return;
        }
        s->connected = 1;
        s->sent += (size_t)n;
    }
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (;;) {
        ssize_t n = recv(s->fd, recvbuf, msg_size, 0);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            churn_fail(s, s->connected ? PH_RECV : PH_CONNECT, errno);
            return;
        }
        if (n == 0) {
            churn_fail(s, PH_EOF, 0);
            return;
        }
        s->rcvd += (size_t)n;
        if (s->rcvd > msg_size) {
            churn_fail(s, PH_EXTRA, 0);
            return;
        }
        if (s->rcvd == msg_size)
            break;             /* (so everything was sent) */
    }
    /* the whole echo is back: close (the client closes first, so its side
     * goes to TIME_WAIT) and start the next cycle at once */
    close(s->fd);
    s->fd = -1;
    uint64_t t = now_ns();
    if (counting) {
        hist_add(t - s->t0);
        churn_done++;
    }
    churn_open(s);
}

static int churn_run(size_t nslots, double secs, double warm, int server_pid, const char *name)
{
    slot *ss = calloc(nslots, sizeof *ss);
    if (!ss)
        die("malloc");
    long fds0 = server_pid ? proc_nfds(server_pid) : -1;
    for (size_t i = 0; i < nslots; i++)
        churn_open(&ss[i]);

    enum { MAXEV = 1024 };
    struct epoll_event evs[MAXEV];
    uint64_t t_start = now_ns();
    uint64_t t_count = t_start + (uint64_t)(warm * 1e9), t_end = 0;
    long long srv0 = -1, srv1 = -1;
    long rss0 = -1, rss1 = -1;
    double cli0 = 0;
    for (;;) {
        /* slots whose last cycle failed wait a millisecond, so a refused
         * or impossible connect does not spin */
        int n = epoll_wait(epfd, evs, MAXEV, churn_retry ? 1 : 5);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        /* one fd per slot in the set, so a slot has at most one event in
         * the batch: handling it (even closing and reopening) cannot leave
         * a stale event behind for the new connection */
        for (int i = 0; i < n; i++)
            churn_step(evs[i].data.ptr, evs[i].events);
        if (churn_retry) {
            churn_retry = 0;
            for (size_t i = 0; i < nslots; i++)
                if (ss[i].fd < 0)
                    churn_open(&ss[i]);
        }
        uint64_t t = now_ns();
        if (!counting && t_end == 0 && t >= t_count) {
            counting = 1;
            t_count = t;
            t_end = t + (uint64_t)(secs * 1e9);
            if (server_pid) {
                srv0 = proc_cpu_ticks(server_pid);
                rss0 = proc_rss_kb(server_pid);
            }
            cli0 = self_cpu_s();
        } else if (counting && t >= t_end) {
            if (server_pid) {
                srv1 = proc_cpu_ticks(server_pid);
                rss1 = proc_rss_kb(server_pid);
            }
            t_end = t;
            break;
        }
    }
    double window = (double)(t_end - t_count) / 1e9;
    double cli = self_cpu_s() - cli0;
    /* cycles still in flight after more than a second: a dropped SYN is
     * retried after 1 s, a lost connection never ends */
    size_t stalled = 0;
    for (size_t i = 0; i < nslots; i++)
        if (ss[i].fd >= 0 && t_end - ss[i].t0 > 1000000000ull)
            stalled++;
    double rate = (double)churn_done / window;
    printf("%s conns=%zu size=%zu secs=%.2f completed=%llu conns_per_s=%.0f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
           name, nslots, msg_size, window, (unsigned long long)churn_done, rate,
           hist_pct(0.50) / 1e3, hist_pct(0.99) / 1e3, hist_pct(0.999) / 1e3,
           (double)hist_max / 1e3);
    if (srv0 >= 0 && srv1 >= 0 && churn_done > 0) {
        double srv_s = (double)(srv1 - srv0) / (double)sysconf(_SC_CLK_TCK);
        printf(" server_us_per_conn=%.3f server_cpu_pct=%.0f", srv_s * 1e6 / (double)churn_done,
               100 * srv_s / window);
    }
    printf(" client_cpu_pct=%.0f started=%llu errors=%llu stalled=%zu", 100 * cli / window,
           (unsigned long long)churn_started, (unsigned long long)churn_errors, stalled);
    if (rss0 >= 0 && rss1 >= 0)
        printf(" server_rss_growth_kb=%ld", rss1 - rss0);
    /* close everything; the server should be back to the descriptors it
     * held before the first connect (within 2 s) */
    for (size_t i = 0; i < nslots; i++)
        if (ss[i].fd >= 0)
            close(ss[i].fd);
    if (fds0 >= 0) {
        long left = proc_nfds(server_pid) - fds0;
        for (int i = 0; i < 200 && left > 0; i++) {
            sleep_ms(10);
            left = proc_nfds(server_pid) - fds0;
        }
        printf(" server_fds_left=%ld", left < 0 ? 0 : left);
        if (left > 0)
            fprintf(stderr, "echo_load: %s: the server still holds %ld more descriptors than "
                            "before the run, 2 s after the last close (a leak?)\n", name, left);
    }
    printf("\n");
    fflush(stdout);
    free(ss);

    int bad = 0;
    if (churn_errors) {
        fprintf(stderr, "echo_load: %s: %llu errors in %llu connections:", name,
                (unsigned long long)churn_errors, (unsigned long long)churn_started);
        for (int ph = 0; ph < NPHASES; ph++)
            for (int e = 0; e < NERRNO; e++)
                if (churn_errs[ph][e])
                    fprintf(stderr, " %s%s%s x%llu;", phase_name[ph], e ? ": " : "",
                            e ? strerror(e) : "", (unsigned long long)churn_errs[ph][e]);
        fprintf(stderr, "\n");
        /* more than 1 in 1000 connections failed: the figures are not a
         * server's speed any more but a failure's (ports exhausted, a
         * server that resets or stops accepting) */
        if (churn_errors * 1000 > churn_started) {
            fprintf(stderr, "echo_load: %s: more than 0.1%% of the connections failed: run "
                            "failed\n", name);
            bad = 1;
        }
    }
    if (churn_done == 0) {
        fprintf(stderr, "echo_load: %s: no connection completed in the window\n", name);
        bad = 1;
    }
    return bad;
}

int main(int argc, char **argv)
{
    int port = 0, probe = 0, server_pid = 0;
    size_t nconns = 50;
    double secs = 5, warm = 1;
    const char *name = NULL;
    size_t idle = 0;
    int churn = 0;
    msg_size = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--probe")) { probe = 1; continue; }
        if (!strcmp(a, "--churn")) { churn = 1; continue; }
        if (!strcmp(a, "--linger0")) { churn_linger = 1; continue; }
        if (!v) { fprintf(stderr, "echo_load: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--conns")) nconns = (size_t)atol(v);
        else if (!strcmp(a, "--size")) msg_size = (size_t)atol(v);
        else if (!strcmp(a, "--secs")) secs = atof(v);
        else if (!strcmp(a, "--warmup")) warm = atof(v);
        else if (!strcmp(a, "--server-pid")) server_pid = atoi(v);
        else if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--rate")) rate_target = atof(v);
        else if (!strcmp(a, "--idle")) idle = (size_t)atol(v);
        else { fprintf(stderr, "echo_load: unknown option %s\n", a); return 2; }
        i++;
    }
    if (port <= 0 || port > 65535 || nconns == 0 || msg_size == 0 || secs <= 0 ||
        rate_target < 0 || (idle && !server_pid) || (churn && (idle || rate_target > 0))) {
        fprintf(stderr, "usage: echo_load --port P [--conns N] [--size B] [--secs S] "
                        "[--warmup S] [--server-pid PID] [--name NAME] [--rate R]\n"
                        "       echo_load --churn --port P [--conns N] [--size B] [--secs S] "
                        "[--warmup S] [--server-pid PID] [--name NAME] [--linger0]\n"
                        "       echo_load --port P --idle N --server-pid PID [--name NAME]\n"
                        "       echo_load --probe --port P\n");
        return 2;
    }
    if (!name)
        name = idle ? "idle_conn" : churn ? "churn" : "echo";
    if (probe) {
        int fd = connect_to(port, 1);
        if (fd < 0)
            return 1;
        close(fd);
        return 0;
    }

    if (idle)
        return idle_run(port, idle, server_pid, name);

    /* Room for 1,000+ connections. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < nconns + 64) {
        rl.rlim_cur = rl.rlim_max < nconns + 64 ? rl.rlim_max : nconns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sendbuf = malloc(msg_size);
    recvbuf = malloc(msg_size);
    conn *cs = calloc(nconns, sizeof *cs);
    if (!sendbuf || !recvbuf || !cs)
        die("malloc");
    for (size_t i = 0; i < msg_size; i++)
        sendbuf[i] = (char)('a' + i % 26);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    if (churn) {
        churn_port = port;
        return churn_run(nconns, secs, warm, server_pid, name);
    }
    for (size_t i = 0; i < nconns; i++) {
        cs[i].fd = connect_to(port, 0);
        if (cs[i].fd < 0)
            die("connect");
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
            die("epoll_ctl");
    }
    for (size_t i = 0; i < nconns; i++)
        cs[i].idx = i;
    uint64_t next_j = 0;     /* fixed rate: the next send of the schedule */
    if (rate_target > 0) {
        rate_t0 = now_ns();
        rate_n = nconns;
    } else {
        for (size_t i = 0; i < nconns; i++)
            start_msg(&cs[i]);
    }

    enum { MAXEV = 1024 };
    struct epoll_event evs[MAXEV];
    uint64_t t_start = now_ns();
    uint64_t t_count = t_start + (uint64_t)(warm * 1e9), t_end = 0;
    long long srv0 = -1, srv1 = -1;
    double cli0 = 0;
    for (;;) {
        int n;
        if (rate_target > 0) {
            uint64_t t = now_ns();
            /* the sends whose intended time has come */
            for (;;) {
                size_t i = (size_t)(next_j % nconns);
                uint64_t k = next_j / nconns;
                if (intended(i, k) > t)
                    break;
                conn *c = &cs[i];
                if (!c->busy && c->k == k) {
                    c->sent = c->rcvd = 0;
                    c->t_send = intended(i, k);
                    c->busy = 1;
                    c->k++;
                    pump_send(c);
                }  /* else in flight: it goes out (missed) when the reply arrives */
                next_j++;
            }
            uint64_t due = rate_t0 + (uint64_t)((double)next_j * 1e9 / rate_target);
            uint64_t wait = due > t ? due - t : 0;
            if (wait > 5000000)
                wait = 5000000;
            struct timespec ts = { (time_t)(wait / 1000000000u), (long)(wait % 1000000000u) };
            n = epoll_pwait2(epfd, evs, MAXEV, &ts, NULL);
        } else {
            n = epoll_wait(epfd, evs, MAXEV, 5);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
            if ((evs[i].events & EPOLLOUT) && c->sent < msg_size)
                pump_send(c);
        }
        uint64_t t = now_ns();
        if (!counting && t_end == 0 && t >= t_count) {
            counting = 1;
            t_count = t;
            t_end = t + (uint64_t)(secs * 1e9);
            if (server_pid)
                srv0 = proc_cpu_ticks(server_pid);
            cli0 = self_cpu_s();
        } else if (counting && t >= t_end) {
            if (server_pid)
                srv1 = proc_cpu_ticks(server_pid);
            t_end = t;
            break;
        }
    }
    double window = (double)(t_end - t_count) / 1e9;
    double cli = self_cpu_s() - cli0;
    double rate = (double)msgs / window;
    printf("%s conns=%zu size=%zu secs=%.2f msgs=%llu msgs_per_s=%.0f mb_per_s=%.2f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
           name, nconns, msg_size, window, (unsigned long long)msgs, rate,
           rate * (double)msg_size / 1e6, hist_pct(0.50) / 1e3, hist_pct(0.99) / 1e3,
           hist_pct(0.999) / 1e3, (double)hist_max / 1e3);
    if (srv0 >= 0 && srv1 >= 0 && msgs > 0) {
        double srv_s = (double)(srv1 - srv0) / (double)sysconf(_SC_CLK_TCK);
        printf(" server_us_per_msg=%.3f server_cpu_pct=%.0f", srv_s * 1e6 / (double)msgs,
               100 * srv_s / window);
    }
    printf(" client_cpu_pct=%.0f", 100 * cli / window);
    if (rate_target > 0)
        printf(" rate=%.0f missed=%llu missed_pct=%.2f", rate_target, (unsigned long long)missed,
               msgs ? 100.0 * (double)missed / (double)msgs : 0.0);
    printf("\n");
    for (size_t i = 0; i < nconns; i++)
        close(cs[i].fd);
    return 0;
}
