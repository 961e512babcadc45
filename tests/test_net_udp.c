/*
 * test_net_udp.c - UDP over loopback (pollen/udp.h): send_to / recv_from
 * echo over IPv4 and IPv6 (sizes 0 to 65507), connect + send / recv and
 * disconnect, ICMP port unreachable as -ECONNREFUSED, truncation
 * (MSG_TRUNC) and the length probe, broadcast (-EACCES without
 * SO_BROADCAST, delivery with it), IPv4 multicast delivery on lo, IPv6
 * join / leave, option ranges, SO_REUSEPORT, bad addresses, closed
 * sockets and close while another future waits (-ECANCELED).
 *
 * Runtime cases run on the current-thread runtime and on the multi-thread
 * runtime with 2 workers and check that no fd is left behind.  Test-thread
 * operations are awaited one at a time with pn_block_on; the peer runs as
 * a spawned task.  Data is checked byte for byte; no timing is asserted.
 * Datagrams are exchanged one at a time (UDP drops on a full buffer).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include "helpers.h"

TestSuite(net_udp, .timeout = PN_TEST_TIMEOUT);

static unsigned char pattern(size_t i) { return (unsigned char)(i * 13 + (i >> 8) + 5); }

static pn_sockaddr ip(const char *s, uint16_t port)
{
    pn_sockaddr a;
    cr_assert_eq(pn_sockaddr_ip(&a, s, port), 0, "%s", s);
    return a;
}

static uint16_t port_of(pn_udp_socket *s)
{
    pn_sockaddr a;
    cr_assert_eq(pn_udp_local_addr(s, &a), 0);
    return (uint16_t)pn_sockaddr_port(&a);
}

/* Server task: `n` times, recv_from and send the datagram back. */
typedef struct udp_echo {
    pn_future base;
    int pc, n;
    pn_udp_socket *s;
    pn_udp_recv_future rv;
    pn_udp_send_future sd;
    pn_sockaddr last_from;
    unsigned char buf[65536];
} udp_echo;

static pn_poll udp_echo_poll(pn_future *f, pn_cx *cx)
{
    udp_echo *e = (udp_echo *)f;
    PN_ASYNC_BEGIN(e->pc);
    while (e->n-- > 0) {
        e->rv = pn_udp_recv_from(e->s, e->buf, sizeof(e->buf));
        PN_AWAIT(e->pc, &e->rv, cx);
        cr_assert_geq(e->rv.res, 0, "recv_from: %s", pn_strerror((int)e->rv.res));
        cr_assert(!e->rv.truncated);
        e->last_from = e->rv.from;
        e->sd = pn_udp_send_to(e->s, e->buf, (size_t)e->rv.res, &e->rv.from);
        PN_AWAIT(e->pc, &e->sd, cx);
        cr_assert_eq(e->sd.res, e->rv.res, "send_to: %s", pn_strerror((int)e->sd.res));
    }
    PN_ASYNC_END(e->pc);
}

static const pn_future_vtable udp_echo_vt = { udp_echo_poll, NULL, "udp_echo" };

static pn_join_handle *spawn_echo(pn_runtime *rt, pn_udp_socket *s, int n)
{
    udp_echo *e = calloc(1, sizeof(*e));
    e->base.vt = &udp_echo_vt;
    e->n = n;
    e->s = s;
    pn_join_handle *h;
    cr_assert_eq(pn_spawn(rt, PN_FUTURE(e), sizeof(*e), &h), 0);
    free(e);
    return h;
}

static void echo_family(pn_runtime_flavor fl, const char *lo, size_t max)
{
    const size_t sizes[] = { 1, 0, 512, 1472, 9000, max };
    const int n = (int)(sizeof(sizes) / sizeof(sizes[0]));
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket srv, cli;
    pn_sockaddr any = ip(lo, 0);
    cr_assert_eq(pn_udp_bind(&srv, &any, NULL), 0);
    cr_assert_eq(pn_udp_bind(&cli, &any, NULL), 0);
    pn_sockaddr srv_addr, cli_addr;
    cr_assert_eq(pn_udp_local_addr(&srv, &srv_addr), 0);
    cr_assert_eq(pn_udp_local_addr(&cli, &cli_addr), 0);
    cr_assert_gt(pn_sockaddr_port(&srv_addr), 0, "port 0 became a real port");
    pn_join_handle *h = spawn_echo(rt, &srv, n);

    static unsigned char out[65536], in[65536];
    for (int k = 0; k < n; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            out[i] = pattern(i + (size_t)k * 3);
        pn_udp_send_future sd = pn_udp_send_to(&cli, out, sizes[k], &srv_addr);
        AWAIT(rt, sd);
        cr_assert_eq(sd.res, (ssize_t)sizes[k], "send_to %zu: %s", sizes[k], pn_strerror((int)sd.res));
        memset(in, 0xee, sizes[k] + 1);
        pn_udp_recv_future rv = pn_udp_recv_from(&cli, in, sizeof(in));
        AWAIT(rt, rv);
        cr_assert_eq(rv.res, (ssize_t)sizes[k], "recv_from: %s", pn_strerror((int)rv.res));
        cr_assert_eq(rv.datagram_len, sizes[k]);
        cr_assert(!rv.truncated);
        cr_assert_eq(memcmp(in, out, sizes[k]), 0, "datagram of %zu bytes", sizes[k]);
        cr_assert(pn_sockaddr_equal(&rv.from, &srv_addr), "from the server");
    }
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert(pn_sockaddr_equal(&((udp_echo *)j.output)->last_from, &cli_addr),
              "the server saw the client's address");
    pn_join_handle_free(h);
    cr_assert_eq(pn_runtime_free(rt), 0);
    cr_assert_eq(pn_udp_close(&srv), 0);
    cr_assert_eq(pn_udp_close(&cli), 0);
    cr_assert_eq(pn_udp_close(&cli), 0, "twice is harmless");
}

BOTH(net_udp, echo_send_to_recv_from_ipv4) { echo_family(fl, "127.0.0.1", 65507); }
BOTH(net_udp, echo_send_to_recv_from_ipv6) { echo_family(fl, "::1", 65527); }

BOTH(net_udp, connected_send_recv_and_disconnect)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket srv, cli, other;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&srv, &lo, NULL), 0);
    cr_assert_eq(pn_udp_bind(&cli, &lo, NULL), 0);
    cr_assert_eq(pn_udp_bind(&other, &lo, NULL), 0);
    pn_sockaddr srv_addr, peer;
    cr_assert_eq(pn_udp_local_addr(&srv, &srv_addr), 0);
    cr_assert_eq(pn_udp_peer_addr(&cli, &peer), -ENOTCONN);
    cr_assert_eq(pn_udp_connect(&cli, &srv_addr), 0);
    cr_assert_eq(pn_udp_peer_addr(&cli, &peer), 0);
    cr_assert(pn_sockaddr_equal(&peer, &srv_addr));
    pn_join_handle *h = spawn_echo(rt, &srv, 3);

    unsigned char out[1000], in[1000];
    for (int k = 0; k < 3; k++) {
        size_t len = 100 + (size_t)k * 300;
        for (size_t i = 0; i < len; i++)
            out[i] = pattern(i * (size_t)(k + 1));
        pn_udp_send_future sd = pn_udp_send(&cli, out, len);
        AWAIT(rt, sd);
        cr_assert_eq(sd.res, (ssize_t)len);
        /* A stranger's datagram is filtered out by the connected socket. */
        if (k == 1) {
            pn_sockaddr cli_addr;
            cr_assert_eq(pn_udp_local_addr(&cli, &cli_addr), 0);
            pn_udp_send_future st = pn_udp_send_to(&other, "stranger", 8, &cli_addr);
            AWAIT(rt, st);
            cr_assert_eq(st.res, 8);
        }
        pn_udp_recv_future rv = pn_udp_recv(&cli, in, sizeof(in));
        AWAIT(rt, rv);
        cr_assert_eq(rv.res, (ssize_t)len);
        cr_assert_eq(memcmp(in, out, len), 0);
    }
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    pn_join_handle_free(h);

    cr_assert_eq(pn_udp_disconnect(&cli), 0);
    cr_assert_eq(pn_udp_peer_addr(&cli, &peer), -ENOTCONN);
    pn_udp_send_future sd = pn_udp_send(&cli, "x", 1);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EDESTADDRREQ, "no peer any more");

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&srv);
    pn_udp_close(&cli);
    pn_udp_close(&other);
}

BOTH(net_udp, icmp_port_unreachable_is_econnrefused)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket gone, cli;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&gone, &lo, NULL), 0);
    pn_sockaddr dead;
    cr_assert_eq(pn_udp_local_addr(&gone, &dead), 0);
    pn_udp_close(&gone);                   /* nobody on that port now */
    cr_assert_eq(pn_udp_bind(&cli, &lo, NULL), 0);
    cr_assert_eq(pn_udp_connect(&cli, &dead), 0);
    pn_udp_send_future sd = pn_udp_send(&cli, "ping", 4);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, 4, "the send itself succeeds");
    char buf[8];
    pn_udp_recv_future rv = pn_udp_recv(&cli, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, -ECONNREFUSED, "%s", pn_strerror((int)rv.res));
    cr_assert(!rv.truncated);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&cli);
}

BOTH(net_udp, truncation_is_reported)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket a, b;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&a, &lo, NULL), 0);
    cr_assert_eq(pn_udp_bind(&b, &lo, NULL), 0);
    pn_sockaddr baddr;
    cr_assert_eq(pn_udp_local_addr(&b, &baddr), 0);
    unsigned char out[1000], in[1001];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = pattern(i);

    pn_udp_send_future sd = pn_udp_send_to(&a, out, 1000, &baddr);
    AWAIT(rt, sd);
    sd = pn_udp_send_to(&a, out + 5, 20, &baddr);
    AWAIT(rt, sd);
    sd = pn_udp_send_to(&a, out, 77, &baddr);
    AWAIT(rt, sd);

    memset(in, 0, sizeof(in));
    pn_udp_recv_future rv = pn_udp_recv_from(&b, in, 100);
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 100, "bytes stored");
    cr_assert_eq(rv.datagram_len, 1000, "the datagram's length");
    cr_assert(rv.truncated);
    cr_assert_eq(memcmp(in, out, 100), 0);
    cr_assert_eq(in[100], 0, "nothing past len");
    pn_sockaddr aaddr;
    cr_assert_eq(pn_udp_local_addr(&a, &aaddr), 0);
    cr_assert(pn_sockaddr_equal(&rv.from, &aaddr));

    rv = pn_udp_recv(&b, in, sizeof(in));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 20, "the rest of the long one was discarded");
    cr_assert(!rv.truncated);
    cr_assert_eq(memcmp(in, out + 5, 20), 0);

    rv = pn_udp_recv(&b, NULL, 0);        /* length probe (consumes it) */
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 0);
    cr_assert_eq(rv.datagram_len, 77);
    cr_assert(rv.truncated);

    /* The futures cover the poll helpers' normal use; here their argument
     * checks, which answer before any syscall or registration. */
    pn_waker none = PN_WAKER_NONE;
    pn_cx cx = { .waker = &none, .budget = 128 };
    ssize_t res;
    size_t dlen;
    res = 1;
    cr_assert_eq(pn_udp_poll_recv_from(NULL, &cx, in, 10, NULL, &dlen, &res), PN_READY);
    cr_assert_eq(res, -EINVAL, "NULL socket");
    res = 1;
    cr_assert_eq(pn_udp_poll_recv(&b, NULL, in, 10, &dlen, &res), PN_READY);
    cr_assert_eq(res, -EINVAL, "NULL context");
    res = 1;
    cr_assert_eq(pn_udp_poll_recv(&b, &cx, NULL, 10, &dlen, &res), PN_READY);
    cr_assert_eq(res, -EINVAL, "NULL buffer with a length");
    cr_assert_eq(pn_udp_poll_recv(&b, &cx, in, 10, &dlen, NULL), PN_READY, "NULL result");
    res = 1;
    cr_assert_eq(pn_udp_poll_send_to(&a, &cx, out, 1, NULL, &res), PN_READY);
    cr_assert_eq(res, -EINVAL, "send_to without an address");
    res = 1;
    cr_assert_eq(pn_udp_poll_send(NULL, &cx, out, 1, &res), PN_READY);
    cr_assert_eq(res, -EINVAL, "NULL socket");
    res = 1;
    cr_assert_eq(pn_udp_poll_send(&a, &cx, NULL, 1, &res), PN_READY);
    cr_assert_eq(res, -EINVAL, "NULL buffer with a length");
    cr_assert_eq(pn_udp_poll_send(&a, &cx, out, 1, NULL), PN_READY, "NULL result");
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&a);
    pn_udp_close(&b);
}

BOTH(net_udp, broadcast_needs_so_broadcast)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket rx, tx;
    pn_sockaddr any = ip("0.0.0.0", 0), lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&rx, &any, NULL), 0, "broadcasts reach wildcard sockets");
    cr_assert_eq(pn_udp_bind(&tx, &lo, NULL), 0);
    pn_sockaddr bcast = ip("127.255.255.255", port_of(&rx));

    cr_assert_eq(pn_udp_broadcast(&tx), 0);
    pn_udp_send_future sd = pn_udp_send_to(&tx, "b1", 2, &bcast);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EACCES, "a broadcast without SO_BROADCAST");

    cr_assert_eq(pn_udp_set_broadcast(&tx, true), 0);
    cr_assert_eq(pn_udp_broadcast(&tx), 1);
    sd = pn_udp_send_to(&tx, "b2", 2, &bcast);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, 2);
    char buf[8];
    pn_udp_recv_future rv = pn_udp_recv_from(&rx, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 2);
    cr_assert_eq(memcmp(buf, "b2", 2), 0);
    cr_assert_eq(pn_udp_set_broadcast(&tx, false), 0);
    cr_assert_eq(pn_udp_broadcast(&tx), 0);

    /* The bind option sets it too. */
    pn_udp_socket tx2;
    cr_assert_eq(pn_udp_bind(&tx2, &lo, &(pn_udp_opts){ .broadcast = true }), 0);
    cr_assert_eq(pn_udp_broadcast(&tx2), 1);

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&rx);
    pn_udp_close(&tx);
    pn_udp_close(&tx2);
}

BOTH(net_udp, multicast_ipv4_on_loopback)
{
    unsigned lo_if = if_nametoindex("lo");
    cr_assert_gt(lo_if, 0);
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket rx1, rx2, tx;
    pn_sockaddr any = ip("0.0.0.0", 0);
    pn_udp_opts reuse = { .reuseaddr = true };
    cr_assert_eq(pn_udp_bind(&rx1, &any, &reuse), 0);
    pn_sockaddr any_same = ip("0.0.0.0", port_of(&rx1));
    cr_assert_eq(pn_udp_bind(&rx2, &any_same, &reuse), 0, "two receivers on one port");
    pn_sockaddr group = ip("239.255.77.1", port_of(&rx1));
    cr_assert_eq(pn_udp_join_multicast(&rx1, &group, lo_if), 0);
    cr_assert_eq(pn_udp_join_multicast(&rx2, &group, lo_if), 0);
    cr_assert_eq(pn_udp_join_multicast(&rx1, &group, lo_if), -EADDRINUSE, "joined already");

    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&tx, &lo, NULL), 0);
    cr_assert_eq(pn_udp_set_multicast_if(&tx, lo_if), 0);
    cr_assert_eq(pn_udp_set_multicast_loop(&tx, true), 0);
    cr_assert_eq(pn_udp_set_multicast_ttl(&tx, 1), 0);

    unsigned char out[300], in[400];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = pattern(i + 11);
    pn_udp_send_future sd = pn_udp_send_to(&tx, out, sizeof(out), &group);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, (ssize_t)sizeof(out));
    pn_udp_socket *rxs[2] = { &rx1, &rx2 };
    for (int k = 0; k < 2; k++) {
        pn_udp_recv_future rv = pn_udp_recv_from(rxs[k], in, sizeof(in));
        AWAIT(rt, rv);
        cr_assert_eq(rv.res, (ssize_t)sizeof(out), "member %d", k);
        cr_assert_eq(memcmp(in, out, sizeof(out)), 0);
    }

    /* rx1 leaves: only rx2 gets the next one.  (Linux's IP_MULTICAST_ALL,
     * on by default, would still hand rx1 the groups rx2 joined.) */
    cr_assert_eq(setsockopt(rx1.afd.fd, IPPROTO_IP, IP_MULTICAST_ALL, &(int){ 0 }, sizeof(int)), 0);
    cr_assert_eq(pn_udp_leave_multicast(&rx1, &group, lo_if), 0);
    cr_assert_eq(pn_udp_leave_multicast(&rx1, &group, lo_if), -EADDRNOTAVAIL, "not a member");
    sd = pn_udp_send_to(&tx, "two", 3, &group);
    AWAIT(rt, sd);
    pn_udp_recv_future rv = pn_udp_recv_from(&rx2, in, sizeof(in));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 3);
    cr_assert_eq(memcmp(in, "two", 3), 0);
    cr_assert_eq(recv(rx1.afd.fd, in, sizeof(in), MSG_DONTWAIT), -1, "rx1 got nothing");
    cr_assert_eq(errno, EAGAIN);

    /* Errors. */
    pn_sockaddr unicast = ip("127.0.0.1", 1);
    cr_assert_eq(pn_udp_join_multicast(&rx1, &unicast, lo_if), -EINVAL);
    pn_sockaddr g6 = ip("ff02::1:3", 0);
    cr_assert_eq(pn_udp_join_multicast(&rx1, &g6, lo_if), -EAFNOSUPPORT, "v6 group, v4 socket");
    cr_assert_eq(pn_udp_join_multicast(&rx1, &group, 999999), -ENODEV);
    cr_assert_eq(pn_udp_join_multicast(&rx1, NULL, 0), -EINVAL);
    cr_assert_eq(pn_udp_set_multicast_ttl(&tx, 256), -EINVAL);
    cr_assert_eq(pn_udp_set_multicast_ttl(&tx, -1), -EINVAL);

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&rx1);
    pn_udp_close(&rx2);
    pn_udp_close(&tx);
}

Test(net_udp, multicast_ipv6_join_leave_and_options)
{
    /* IPv6 multicast does not route over lo here, so delivery is not
     * tested; membership and options are. */
    unsigned lo_if = if_nametoindex("lo");
    pn_udp_socket s;
    pn_sockaddr any6 = ip("::", 0);
    cr_assert_eq(pn_udp_bind(&s, &any6, &(pn_udp_opts){ .v6only = true }), 0);
    int v6only = 0;
    socklen_t l = sizeof(v6only);
    cr_assert_eq(getsockopt(s.afd.fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &l), 0);
    cr_assert_eq(v6only, 1);
    pn_sockaddr g = ip("ff02::1:3", 0);
    cr_assert_eq(pn_udp_join_multicast(&s, &g, lo_if), 0);
    cr_assert_eq(pn_udp_join_multicast(&s, &g, lo_if), -EADDRINUSE);
    cr_assert_eq(pn_udp_leave_multicast(&s, &g, lo_if), 0);
    cr_assert_lt(pn_udp_leave_multicast(&s, &g, lo_if), 0, "not a member any more");
    pn_sockaddr notmc = ip("::1", 0);
    cr_assert_eq(pn_udp_join_multicast(&s, &notmc, lo_if), -EINVAL);
    cr_assert_eq(pn_udp_set_multicast_if(&s, lo_if), 0);
    cr_assert_eq(pn_udp_set_multicast_loop(&s, false), 0);
    cr_assert_eq(pn_udp_set_multicast_ttl(&s, 5), 0);
    int hops = 0;
    l = sizeof(hops);
    cr_assert_eq(getsockopt(s.afd.fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, &l), 0);
    cr_assert_eq(hops, 5);
    cr_assert_eq(pn_udp_set_ttl(&s, 9), 0);
    l = sizeof(hops);
    cr_assert_eq(getsockopt(s.afd.fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, &l), 0);
    cr_assert_eq(hops, 9);
    cr_assert_eq(pn_udp_set_ttl(&s, 0), -EINVAL);
    cr_assert_eq(pn_udp_set_ttl(&s, 256), -EINVAL);
    cr_assert_eq(pn_udp_set_ttl(&s, -1), 0, "the default");
    pn_udp_close(&s);

    pn_udp_socket s4;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&s4, &lo, NULL), 0);
    cr_assert_eq(pn_udp_set_ttl(&s4, 17), 0);
    int ttl = 0;
    l = sizeof(ttl);
    cr_assert_eq(getsockopt(s4.afd.fd, IPPROTO_IP, IP_TTL, &ttl, &l), 0);
    cr_assert_eq(ttl, 17);
    pn_udp_close(&s4);
}

Test(net_udp, bind_errors_and_reuseport)
{
    int before = count_fds();
    pn_udp_socket s, t;
    pn_sockaddr empty;
    memset(&empty, 0, sizeof(empty));
    cr_assert_eq(pn_udp_bind(&s, NULL, NULL), -EINVAL);
    cr_assert_eq(s.afd.fd, -1);
    cr_assert_eq(pn_udp_close(&s), 0, "harmless after a failed bind");
    cr_assert_eq(pn_udp_bind(&s, &empty, NULL), -EINVAL, "len 0");
    pn_sockaddr shortv4 = ip("127.0.0.1", 0);
    shortv4.len = 4;
    cr_assert_eq(pn_udp_bind(&s, &shortv4, NULL), -EINVAL, "too short for its family");
    pn_sockaddr huge = ip("127.0.0.1", 0);
    huge.len = sizeof(struct sockaddr_storage) + 1;
    cr_assert_eq(pn_udp_bind(&s, &huge, NULL), -EINVAL);
    pn_sockaddr un;
    cr_assert_eq(pn_sockaddr_unix(&un, "@udp-not-unix"), 0);
    cr_assert_eq(pn_udp_bind(&s, &un, NULL), -EAFNOSUPPORT);
    pn_sockaddr notlocal = ip("192.0.2.77", 0);
    cr_assert_eq(pn_udp_bind(&s, &notlocal, NULL), -EADDRNOTAVAIL);
    cr_assert_eq(pn_udp_bind(NULL, &shortv4, NULL), -EINVAL);

    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&s, &lo, NULL), 0);
    pn_sockaddr taken = ip("127.0.0.1", port_of(&s));
    cr_assert_eq(pn_udp_bind(&t, &taken, NULL), -EADDRINUSE);
    pn_udp_close(&s);

    pn_udp_opts rp = { .reuseport = true };
    cr_assert_eq(pn_udp_bind(&s, &lo, &rp), 0);
    taken = ip("127.0.0.1", port_of(&s));
    cr_assert_eq(pn_udp_bind(&t, &taken, &rp), 0, "SO_REUSEPORT shares the port");
    pn_udp_close(&s);
    pn_udp_close(&t);

    /* pn_udp_init adopts a socket; -EBADF on a bad fd. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert_eq(pn_udp_init(&s, fd), 0);
    cr_assert_eq(pn_udp_close(&s), 0);
    cr_assert_eq(pn_udp_init(&s, -1), -EBADF);
    cr_assert_eq(count_fds(), before);
}

BOTH(net_udp, send_and_recv_errors)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket s, s6;
    pn_sockaddr lo = ip("127.0.0.1", 0), lo6 = ip("::1", 0);
    cr_assert_eq(pn_udp_bind(&s, &lo, NULL), 0);
    cr_assert_eq(pn_udp_bind(&s6, &lo6, NULL), 0);
    pn_sockaddr to = ip("127.0.0.1", port_of(&s));

    pn_udp_send_future sd = pn_udp_send_to(&s, "x", 1, NULL);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EINVAL, "no address");
    pn_sockaddr empty;
    memset(&empty, 0, sizeof(empty));
    sd = pn_udp_send_to(&s, "x", 1, &empty);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EINVAL, "empty address");
    pn_sockaddr un;
    pn_sockaddr_unix(&un, "/tmp/x");
    sd = pn_udp_send_to(&s, "x", 1, &un);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EAFNOSUPPORT);
    sd = pn_udp_send_to(&s, NULL, 5, &to);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EINVAL, "NULL buffer with a length");
    static unsigned char big[65508];
    sd = pn_udp_send_to(&s, big, sizeof(big), &to);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EMSGSIZE, "65508 bytes over IPv4");
    sd = pn_udp_send(&s, "x", 1);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -EDESTADDRREQ, "send without a peer");
    pn_sockaddr to6 = ip("::1", port_of(&s6));
    sd = pn_udp_send_to(&s, "x", 1, &to6);
    AWAIT(rt, sd);
    cr_assert_lt(sd.res, 0, "an IPv6 address from an IPv4 socket");
    cr_assert_eq(pn_udp_connect(&s, &empty), -EINVAL);
    cr_assert_eq(pn_udp_connect(&s, &un), -EAFNOSUPPORT);
    cr_assert_eq(pn_udp_connect(NULL, &to), -EINVAL);

    /* A zero-length datagram is a datagram. */
    sd = pn_udp_send_to(&s, NULL, 0, &to);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, 0);
    char buf[4];
    pn_udp_recv_future rv = pn_udp_recv_from(&s, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 0);
    cr_assert_eq(rv.datagram_len, 0);
    cr_assert(!rv.truncated);
    cr_assert(pn_sockaddr_equal(&rv.from, &to), "from itself");

    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&s);
    pn_udp_close(&s6);

    /* Closed socket: futures give -ECANCELED, plain calls -EBADF. */
    rt = flavour_new(fl);
    sd = pn_udp_send_to(&s, "x", 1, &to);
    AWAIT(rt, sd);
    cr_assert_eq(sd.res, -ECANCELED);
    rv = pn_udp_recv(&s, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, -ECANCELED);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_sockaddr out;
    cr_assert_eq(pn_udp_connect(&s, &to), -EBADF);
    cr_assert_eq(pn_udp_disconnect(&s), -EBADF);
    cr_assert_eq(pn_udp_local_addr(&s, &out), -EBADF);
    cr_assert_eq(pn_udp_set_broadcast(&s, true), -EBADF);
    cr_assert_eq(pn_udp_broadcast(&s), -EBADF);
    cr_assert_eq(pn_udp_set_ttl(&s, 3), -EBADF);
    cr_assert_eq(pn_udp_join_multicast(&s, &to, 0), -EBADF);
    cr_assert_eq(pn_udp_set_multicast_loop(&s, true), -EBADF);
    cr_assert_eq(pn_udp_close(NULL), -EINVAL);
}

/* ---- close while another future waits ----------------------------------- */

typedef struct closer {
    pn_future base;
    pn_udp_socket *s;
} closer;

static pn_poll closer_poll(pn_future *f, pn_cx *cx)
{
    (void)cx;
    cr_assert_eq(pn_udp_close(((closer *)f)->s), 0);
    return PN_READY;
}

static const pn_future_vtable closer_vt = { closer_poll, NULL, "closer" };

/* One task joins [recv, closer]: the recv is pending when the close runs. */
typedef struct close_race {
    pn_future base;
    int pc;
    pn_udp_socket *s;
    char buf[16];
    pn_udp_recv_future rv;
    closer c;
    pn_join2_future j;
} close_race;

static pn_poll close_race_poll(pn_future *f, pn_cx *cx)
{
    close_race *r = (close_race *)f;
    PN_ASYNC_BEGIN(r->pc);
    r->rv = pn_udp_recv_from(r->s, r->buf, sizeof(r->buf));
    r->c = (closer){ .base = { &closer_vt }, .s = r->s };
    r->j = pn_join2(PN_FUTURE(&r->rv), PN_FUTURE(&r->c));
    PN_AWAIT(r->pc, &r->j, cx);
    PN_ASYNC_END(r->pc);
}

static const pn_future_vtable close_race_vt = { close_race_poll, NULL, "close_race" };

BOTH(net_udp, close_wakes_a_pending_recv_with_ecanceled)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket s;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&s, &lo, NULL), 0);
    close_race r = { .base = { &close_race_vt }, .s = &s };
    pn_join_handle *h;
    cr_assert_eq(PN_SPAWN(rt, r, &h), 0);       /* a worker, multi-thread */
    pn_join_future j = pn_join(h);
    AWAIT(rt, j);
    cr_assert_eq(j.res, 0);
    cr_assert_eq(((close_race *)j.output)->rv.res, -ECANCELED);
    pn_join_handle_free(h);
    cr_assert_eq(s.afd.fd, -1);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

/* pn_udp_close_async closes the socket as pn_udp_close does: the
 * descriptor is gone once it is ready, a second one finds it closed. */
BOTH(net_udp, close_async_closes_the_socket)
{
    pn_runtime *rt = flavour_new(fl);
    int before = count_fds();
    pn_udp_socket s;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&s, &lo, NULL), 0);
    cr_assert_eq(count_fds(), before + 1);
    pn_close_future c = pn_udp_close_async(&s);
    AWAIT(rt, c);
    cr_assert_eq(c.res, 0);
    cr_assert_eq(s.afd.fd, -1);
    cr_assert_eq(count_fds(), before, "the descriptor is still open");
    c = pn_udp_close_async(&s);
    AWAIT(rt, c);
    cr_assert_eq(c.res, 0, "harmless on a closed socket");
    c = pn_udp_close_async(NULL);
    AWAIT(rt, c);
    cr_assert_eq(c.res, -EINVAL);
    cr_assert_eq(pn_udp_close(&s), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
}

BOTH(net_udp, dropped_pending_recv_releases_its_waker_and_consumes_nothing)
{
    pn_runtime *rt = flavour_new(fl);
    pn_udp_socket a, b;
    pn_sockaddr lo = ip("127.0.0.1", 0);
    cr_assert_eq(pn_udp_bind(&a, &lo, NULL), 0);
    cr_assert_eq(pn_udp_bind(&b, &lo, NULL), 0);
    char buf[8];
    waker_probe probe = { 0 };
    pn_udp_recv_future rv = pn_udp_recv_from(&b, buf, sizeof(buf));
    probed_drop pd = probed_drop_of(PN_FUTURE(&rv), &probe);
    AWAIT(rt, pd);
    cr_assert_eq(pd.first, PN_PENDING, "nothing to receive yet");
    cr_assert_gt(atomic_load(&probe.clones), 0, "the pending recv left a waker with the socket");
    cr_assert_eq(waker_probe_held(&probe), 0, "the drop took its waker back");

    pn_sockaddr baddr;
    cr_assert_eq(pn_udp_local_addr(&b, &baddr), 0);
    pn_udp_send_future sd = pn_udp_send_to(&a, "later", 5, &baddr);
    AWAIT(rt, sd);
    rv = pn_udp_recv(&b, buf, sizeof(buf));
    AWAIT(rt, rv);
    cr_assert_eq(rv.res, 5);
    cr_assert_eq(memcmp(buf, "later", 5), 0);
    cr_assert_eq(pn_runtime_free(rt), 0);
    pn_udp_close(&a);
    pn_udp_close(&b);
    cr_assert_eq(atomic_load(&probe.wakes), 0, "nothing woke the dropped recv's task");
}
