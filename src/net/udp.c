/*
 * udp.c - UDP sockets (pollen/udp.h): bind, connect, options, multicast,
 * and the datagram operations.
 *
 * Owns: address validation for UDP calls and the sockopt plumbing (the
 * IPv4 or IPv6 option picked by the socket's family, SO_DOMAIN).  The send
 * / receive operations and their futures are dgram.c's (one sendmsg or
 * recvmsg(MSG_TRUNC) through pn_async_fd_poll_io), shared with Unix
 * datagram sockets; this file gives them the IP address check and the
 * sender's address length.
 */
#include "pollen/udp.h"

#include <net/if.h>
#include <string.h>

#include "net/dgram.h"
#include "net/socket.h"

/* 0 if `a` is a usable IP address, else -EINVAL / -EAFNOSUPPORT. */
static int check_ip(const pn_sockaddr *a)
{
    if (!a || a->len == 0 || a->len > sizeof(struct sockaddr_storage))
        return -EINVAL;
    switch (a->sa.sa_family) {
    case AF_INET:
        return a->len >= sizeof(struct sockaddr_in) ? 0 : -EINVAL;
    case AF_INET6:
        return a->len >= sizeof(struct sockaddr_in6) ? 0 : -EINVAL;
    default:
        return -EAFNOSUPPORT;
    }
}

/* The socket's fd, or -EINVAL / -EBADF. */
static int sock_fd(const pn_udp_socket *s)
{
    return s ? pn__sock_fd(&s->afd) : -EINVAL;
}

int pn_udp_bind(pn_udp_socket *s, const pn_sockaddr *addr, const pn_udp_opts *opts)
{
    if (!s)
        return -EINVAL;
    pn__sock_init_closed(&s->afd);
    int err = check_ip(addr);
    if (err)
        return err;
    int fam = addr->sa.sa_family;
    int fd = pn__socket(fam, SOCK_DGRAM, IPPROTO_UDP);
    if (fd < 0)
        return fd;
    if (opts && opts->reuseaddr)
        err = pn__set_sockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!err && opts && opts->reuseport)
        err = pn__set_sockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (!err && opts && opts->v6only && fam == AF_INET6)
        err = pn__set_sockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (!err && opts && opts->broadcast)
        err = pn__set_sockopt_int(fd, SOL_SOCKET, SO_BROADCAST, 1);
    if (!err && bind(fd, &addr->sa, addr->len) < 0)
        err = -errno;
    if (!err)
        err = pn_async_fd_init(&s->afd, fd);
    if (err) {
        pn__close_fd(fd);
        pn__sock_init_closed(&s->afd);
    }
    return err;
}

int pn_udp_init(pn_udp_socket *s, int fd)
{
    if (!s)
        return -EINVAL;
    return pn_async_fd_init(&s->afd, fd);
}

int pn_udp_close(pn_udp_socket *s)
{
    return s ? pn_async_fd_close(&s->afd) : -EINVAL;
}

int pn_udp_connect(pn_udp_socket *s, const pn_sockaddr *peer)
{
    int fd = sock_fd(s);
    if (fd < 0)
        return fd;
    int err = check_ip(peer);
    return err ? err : pn__sock_connect(fd, &peer->sa, peer->len);
}

int pn_udp_disconnect(pn_udp_socket *s)
{
    int fd = sock_fd(s);
    if (fd < 0)
        return fd;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNSPEC;
    return pn__sock_connect(fd, (struct sockaddr *)&ss, sizeof(ss));
}

static int sock_name(const pn_udp_socket *s, pn_sockaddr *out, bool peer)
{
    int fd = sock_fd(s);
    if (fd < 0)
        return fd;
    if (!out)
        return -EINVAL;
    return pn__sock_addr(fd, out, peer);
}

int pn_udp_local_addr(const pn_udp_socket *s, pn_sockaddr *out)
{
    return sock_name(s, out, false);
}

int pn_udp_peer_addr(const pn_udp_socket *s, pn_sockaddr *out)
{
    return sock_name(s, out, true);
}

/* ---- options -------------------------------------------------------------- */

/* The socket's family (SO_DOMAIN) or -errno. */
static int sock_family(const pn_udp_socket *s)
{
    int fd = sock_fd(s);
    if (fd < 0)
        return fd;
    int fam = 0;
    int err = pn__get_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN, &fam);
    return err ? err : fam;
}

int pn_udp_set_broadcast(pn_udp_socket *s, bool on)
{
    int fd = sock_fd(s);
    return fd < 0 ? fd : pn__set_sockopt_int(fd, SOL_SOCKET, SO_BROADCAST, on);
}

int pn_udp_broadcast(const pn_udp_socket *s)
{
    int fd = sock_fd(s);
    if (fd < 0)
        return fd;
    int v = 0;
    int err = pn__get_sockopt_int(fd, SOL_SOCKET, SO_BROADCAST, &v);
    return err ? err : v != 0;
}

int pn_udp_set_ttl(pn_udp_socket *s, int ttl)
{
    int fam = sock_family(s);
    if (fam < 0)
        return fam;
    if (ttl != -1 && (ttl < 1 || ttl > 255))
        return -EINVAL;
    if (fam == AF_INET6)
        return pn__set_sockopt_int(s->afd.fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl);
    /* IP_TTL, like IPV6_UNICAST_HOPS, takes -1 for the default. */
    return pn__set_sockopt_int(s->afd.fd, IPPROTO_IP, IP_TTL, ttl);
}

static int membership(pn_udp_socket *s, const pn_sockaddr *group, unsigned ifindex, bool join)
{
    int fam = sock_family(s);
    if (fam < 0)
        return fam;
    int err = check_ip(group);
    if (err)
        return err;
    int r;
    if (group->sa.sa_family == AF_INET) {
        if (!IN_MULTICAST(ntohl(group->in.sin_addr.s_addr)))
            return -EINVAL;
        struct ip_mreqn m;
        memset(&m, 0, sizeof(m));
        m.imr_multiaddr = group->in.sin_addr;
        m.imr_ifindex = (int)ifindex;
        r = setsockopt(s->afd.fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP,
                       &m, sizeof(m));
    } else {
        if (fam != AF_INET6)
            return -EAFNOSUPPORT;
        if (!IN6_IS_ADDR_MULTICAST(&group->in6.sin6_addr))
            return -EINVAL;
        struct ipv6_mreq m;
        memset(&m, 0, sizeof(m));
        m.ipv6mr_multiaddr = group->in6.sin6_addr;
        m.ipv6mr_interface = ifindex;
        r = setsockopt(s->afd.fd, IPPROTO_IPV6, join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP,
                       &m, sizeof(m));
    }
    return r < 0 ? -errno : 0;
}

int pn_udp_join_multicast(pn_udp_socket *s, const pn_sockaddr *group, unsigned ifindex)
{
    return membership(s, group, ifindex, true);
}

int pn_udp_leave_multicast(pn_udp_socket *s, const pn_sockaddr *group, unsigned ifindex)
{
    return membership(s, group, ifindex, false);
}

int pn_udp_set_multicast_if(pn_udp_socket *s, unsigned ifindex)
{
    int fam = sock_family(s);
    if (fam < 0)
        return fam;
    if (fam == AF_INET6)
        return pn__set_sockopt_int(s->afd.fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, (int)ifindex);
    struct ip_mreqn m;
    memset(&m, 0, sizeof(m));
    m.imr_ifindex = (int)ifindex;
    return setsockopt(s->afd.fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof(m)) < 0 ? -errno : 0;
}

int pn_udp_set_multicast_loop(pn_udp_socket *s, bool on)
{
    int fam = sock_family(s);
    if (fam < 0)
        return fam;
    if (fam == AF_INET6)
        return pn__set_sockopt_int(s->afd.fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, on);
    return pn__set_sockopt_int(s->afd.fd, IPPROTO_IP, IP_MULTICAST_LOOP, on);
}

int pn_udp_set_multicast_ttl(pn_udp_socket *s, int ttl)
{
    int fam = sock_family(s);
    if (fam < 0)
        return fam;
    if (ttl < 0 || ttl > 255)
        return -EINVAL;
    if (fam == AF_INET6)
        return pn__set_sockopt_int(s->afd.fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl);
    return pn__set_sockopt_int(s->afd.fd, IPPROTO_IP, IP_MULTICAST_TTL, ttl);
}

/* ---- datagrams ------------------------------------------------------------ */

/* The sender of a datagram: the kernel wrote an IP address (dgram.h). */
static void ip_from(pn_sockaddr *from, socklen_t namelen)
{
    from->len = namelen;
}

static pn_async_fd *afd_of(pn_udp_socket *s)
{
    return s ? &s->afd : NULL;
}

pn_poll pn_udp_poll_send_to(pn_udp_socket *s, pn_cx *cx, const void *buf, size_t len,
                            const pn_sockaddr *to, ssize_t *res)
{
    return pn__dgram_poll_send(afd_of(s), cx, buf, len, to, check_ip, res);
}

pn_poll pn_udp_poll_send(pn_udp_socket *s, pn_cx *cx, const void *buf, size_t len,
                         ssize_t *res)
{
    return pn__dgram_poll_send(afd_of(s), cx, buf, len, NULL, NULL, res);
}

pn_poll pn_udp_poll_recv_from(pn_udp_socket *s, pn_cx *cx, void *buf, size_t len,
                              pn_sockaddr *from, size_t *datagram_len, ssize_t *res)
{
    return pn__dgram_poll_recv(afd_of(s), cx, buf, len, from, ip_from, datagram_len, res);
}

pn_poll pn_udp_poll_recv(pn_udp_socket *s, pn_cx *cx, void *buf, size_t len,
                         size_t *datagram_len, ssize_t *res)
{
    return pn__dgram_poll_recv(afd_of(s), cx, buf, len, NULL, NULL, datagram_len, res);
}

/* ---- futures (dgram.c) ------------------------------------------------------ */

static pn_poll recv_from_poll(pn_future *f, pn_cx *cx)
{
    return pn__dgram_recv_poll(f, cx, ip_from);
}

static pn_poll recv_of_poll(pn_future *f, pn_cx *cx)
{
    return pn__dgram_recv_poll(f, cx, NULL);
}

static const pn_future_vtable send_to_vt = { pn__dgram_send_poll, pn__dgram_send_drop,
                                             "pn_udp_send_to" };
static const pn_future_vtable send_of_vt = { pn__dgram_send_poll, pn__dgram_send_drop,
                                             "pn_udp_send" };
static const pn_future_vtable recv_from_vt = { recv_from_poll, pn__dgram_recv_drop,
                                               "pn_udp_recv_from" };
static const pn_future_vtable recv_of_vt = { recv_of_poll, pn__dgram_recv_drop,
                                             "pn_udp_recv" };

pn_udp_send_future pn_udp_send_to(pn_udp_socket *s, const void *buf, size_t len,
                                  const pn_sockaddr *to)
{
    return pn__dgram_send_new(&send_to_vt, afd_of(s), buf, len, to, check_ip);
}

pn_udp_send_future pn_udp_send(pn_udp_socket *s, const void *buf, size_t len)
{
    return pn__dgram_send_new(&send_of_vt, afd_of(s), buf, len, NULL, NULL);
}

pn_udp_recv_future pn_udp_recv_from(pn_udp_socket *s, void *buf, size_t len)
{
    return pn__dgram_recv_new(&recv_from_vt, afd_of(s), buf, len);
}

pn_udp_recv_future pn_udp_recv(pn_udp_socket *s, void *buf, size_t len)
{
    return pn__dgram_recv_new(&recv_of_vt, afd_of(s), buf, len);
}
