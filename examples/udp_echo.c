/*
 * udp_echo.c - a UDP echo server on pollen's current-thread runtime.
 *
 * Usage: udp_echo PORT   (binds 127.0.0.1:PORT and [::1]:PORT)
 *
 * Try it with `nc -u 127.0.0.1 PORT`: every datagram comes back to its
 * sender unchanged.  One future per socket (IPv4 and IPv6, joined with
 * pn_join2) loops over pn_udp_recv_from and pn_udp_send_to, written
 * top to bottom with the PN_ASYNC_* macros; the sender's address comes
 * with each datagram, so no per-client state is kept.  The 64 KiB buffer
 * holds the largest UDP datagram; a truncated one (it cannot happen with
 * this buffer, but the field is there for smaller ones) is reported and
 * dropped rather than echoed in part.  A send that fails (the peer's host
 * unreachable, say) is logged and the loop goes on: one bad client never
 * stops the server.  If ::1 is not available the server runs on IPv4 only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <pollen.h>

typedef struct udp_echo {
    pn_future base;
    int pc;
    int live;                    /* 1: rv pending, 2: sd pending */
    pn_udp_socket sock;
    pn_udp_recv_future rv;
    pn_udp_send_future sd;
    unsigned char buf[65536];
} udp_echo;

static pn_poll udp_echo_poll(pn_future *f, pn_cx *cx)
{
    udp_echo *e = (udp_echo *)f;
    PN_ASYNC_BEGIN(e->pc);
    for (;;) {
        e->rv = pn_udp_recv_from(&e->sock, e->buf, sizeof(e->buf));
        e->live = 1;
        PN_AWAIT(e->pc, &e->rv, cx);
        e->live = 0;
        if (e->rv.res < 0) {
            if (e->rv.res == -ECANCELED)
                break;                      /* the socket was closed */
            fprintf(stderr, "recv_from: %s\n", pn_strerror((int)e->rv.res));
            continue;
        }
        if (e->rv.truncated) {
            fprintf(stderr, "dropped a truncated datagram of %zu bytes\n", e->rv.datagram_len);
            continue;
        }
        e->sd = pn_udp_send_to(&e->sock, e->buf, (size_t)e->rv.res, &e->rv.from);
        e->live = 2;
        PN_AWAIT(e->pc, &e->sd, cx);
        e->live = 0;
        if (e->sd.res < 0) {
            char who[PN_SOCKADDR_STRLEN];
            pn_sockaddr_format(&e->rv.from, who, sizeof(who));
            fprintf(stderr, "send_to %s: %s\n", who, pn_strerror((int)e->sd.res));
        }
    }
    PN_ASYNC_END(e->pc);
}

static void udp_echo_drop(pn_future *f)
{
    udp_echo *e = (udp_echo *)f;
    if (e->live == 1)
        pn_future_drop(PN_FUTURE(&e->rv));
    else if (e->live == 2)
        pn_future_drop(PN_FUTURE(&e->sd));
    e->live = 0;
}

static const pn_future_vtable udp_echo_vt = { udp_echo_poll, udp_echo_drop, "udp_echo" };

static int bind_echo(udp_echo *e, const pn_sockaddr *addr)
{
    *e = (udp_echo){ .base = { &udp_echo_vt } };
    return pn_udp_bind(&e->sock, addr, NULL);
}

/* A future that never completes, for when there is only one socket. */
static pn_poll never_poll(pn_future *f, pn_cx *cx)
{
    (void)f;
    (void)cx;
    return PN_PENDING;
}

static const pn_future_vtable never_vt = { never_poll, NULL, "never" };

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    udp_echo *v4 = malloc(sizeof(*v4)), *v6 = malloc(sizeof(*v6));
    pn_sockaddr a4 = pn_sockaddr_loopback4((uint16_t)port);
    pn_sockaddr a6 = pn_sockaddr_loopback6((uint16_t)port);
    int err = bind_echo(v4, &a4);
    if (err < 0) {
        fprintf(stderr, "bind 127.0.0.1:%d: %s\n", port, pn_strerror(err));
        return 1;
    }
    bool have_v6 = bind_echo(v6, &a6) == 0;
    pn_future never = { &never_vt };

    pn_runtime *rt;
    err = pn_runtime_new(NULL, &rt);
    if (err < 0) {
        fprintf(stderr, "pn_runtime_new: %s\n", pn_strerror(err));
        return 1;
    }
    printf("udp echo on 127.0.0.1:%d%s\n", port, have_v6 ? " and [::1]" : "");
    fflush(stdout);
    pn_join2_future both = pn_join2(PN_FUTURE(v4), have_v6 ? PN_FUTURE(v6) : &never);
    err = pn_block_on(rt, PN_FUTURE(&both));    /* serves until killed */
    fprintf(stderr, "pn_block_on: %s\n", pn_strerror(err));
    pn_future_drop(PN_FUTURE(&both));
    pn_runtime_free(rt);
    pn_udp_close(&v4->sock);
    if (have_v6)
        pn_udp_close(&v6->sock);
    free(v4);
    free(v6);
    return 1;
}
