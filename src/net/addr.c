/*
 * addr.c - pn_sockaddr: parse, format, port, compare (pollen/net.h).
 *
 * Owns: the text forms of socket addresses.  Parsing is strict and
 * numeric: "a.b.c.d:port" or "[ipv6(%zone)]:port", the port 0-65535 in
 * plain decimal, nothing before or after.  inet_pton does the address
 * itself (it refuses leading zeros in IPv4 octets, short forms such as
 * "1.2.3" and out-of-range octets); this file checks everything around
 * it.  No allocation, no global state: every call is thread-safe.
 */
#include "pollen/net.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

/* Port: 1 to 5 decimal digits, value <= 65535.  -1 if malformed. */
static int parse_port(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v > 65535 ? -1 : (int)v;
}

/* Zone of an IPv6 literal: a number or an interface name.  0 if unknown. */
static uint32_t parse_zone(const char *z)
{
    if (*z == '\0')
        return 0;
    bool digits = true;
    unsigned long long v = 0;
    for (const char *p = z; *p; p++) {
        if (*p < '0' || *p > '9') {
            digits = false;
            break;
        }
        v = v * 10 + (unsigned)(*p - '0');
        if (v > UINT32_MAX)
            return 0;
    }
    if (digits)
        return (uint32_t)v;
    if (strlen(z) >= IF_NAMESIZE)
        return 0;
    return if_nametoindex(z);
}

/* An IP literal (no port) into *out with `port`. */
static int parse_ip(pn_sockaddr *out, const char *ip, size_t iplen, bool v6, uint16_t port)
{
    char tmp[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (iplen == 0 || iplen >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, ip, iplen);
    tmp[iplen] = '\0';
    if (memchr(ip, '\0', iplen))
        return -EINVAL;
    pn_sockaddr a;
    memset(&a, 0, sizeof(a));
    if (!v6) {
        a.in.sin_family = AF_INET;
        a.in.sin_port = htons(port);
        if (inet_pton(AF_INET, tmp, &a.in.sin_addr) != 1)
            return -EINVAL;
        a.len = sizeof(struct sockaddr_in);
    } else {
        uint32_t zone = 0;
        char *pct = strchr(tmp, '%');
        if (pct) {
            *pct = '\0';
            zone = parse_zone(pct + 1);
            if (zone == 0)
                return -EINVAL;
        }
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(port);
        a.in6.sin6_scope_id = zone;
        if (inet_pton(AF_INET6, tmp, &a.in6.sin6_addr) != 1)
            return -EINVAL;
        a.len = sizeof(struct sockaddr_in6);
    }
    *out = a;
    return 0;
}

int pn_sockaddr_parse(pn_sockaddr *out, const char *s)
{
    if (!out || !s)
        return -EINVAL;
    const char *host, *port;
    size_t hostlen;
    bool v6;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        host = s + 1;
        hostlen = (size_t)(close - host);
        if (memchr(host, '[', hostlen))
            return -EINVAL;
        port = close + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)) || strchr(s, ']'))
            return -EINVAL;   /* no port, or an unbracketed IPv6 literal */
        host = s;
        hostlen = (size_t)(colon - s);
        port = colon + 1;
        v6 = false;
    }
    int p = parse_port(port);
    if (p < 0)
        return -EINVAL;
    return parse_ip(out, host, hostlen, v6, (uint16_t)p);
}

int pn_sockaddr_ip(pn_sockaddr *out, const char *ip, uint16_t port)
{
    if (!out || !ip)
        return -EINVAL;
    return parse_ip(out, ip, strlen(ip), strchr(ip, ':') != NULL, port);
}

pn_sockaddr pn_sockaddr_loopback4(uint16_t port)
{
    pn_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.in.sin_family = AF_INET;
    a.in.sin_port = htons(port);
    a.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof(struct sockaddr_in);
    return a;
}

pn_sockaddr pn_sockaddr_loopback6(uint16_t port)
{
    pn_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_port = htons(port);
    a.in6.sin6_addr = in6addr_loopback;
    a.len = sizeof(struct sockaddr_in6);
    return a;
}

int pn_sockaddr_from(pn_sockaddr *out, const struct sockaddr *sa, socklen_t len)
{
    if (!out || !sa || len == 0 || len > sizeof(struct sockaddr_storage))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    memcpy(&out->storage, sa, len);
    out->len = len;
    return 0;
}

int pn_sockaddr_format(const pn_sockaddr *a, char *buf, size_t size)
{
    if (!a || !buf)
        return -EINVAL;
    char ip[INET6_ADDRSTRLEN];
    int n;
    switch (a->len ? a->sa.sa_family : AF_UNSPEC) {
    case AF_INET:
        if (!inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip)))
            return -EINVAL;
        n = snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(a->in.sin_port));
        break;
    case AF_INET6:
        if (!inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip)))
            return -EINVAL;
        if (a->in6.sin6_scope_id)
            n = snprintf(buf, size, "[%s%%%u]:%u", ip, (unsigned)a->in6.sin6_scope_id,
                         (unsigned)ntohs(a->in6.sin6_port));
        else
            n = snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(a->in6.sin6_port));
        break;
    case AF_UNIX: {
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = a->len > off ? a->len - off : 0;
        if (plen > sizeof(a->un.sun_path))
            plen = sizeof(a->un.sun_path);
        const char *p = a->un.sun_path;
        if (plen > 0 && p[0] == '\0') {        /* abstract: "@name" */
            n = snprintf(buf, size, "@%.*s", (int)(plen - 1), p + 1);
        } else {
            size_t l = strnlen(p, plen);
            n = snprintf(buf, size, "%.*s", (int)l, p);
        }
        break;
    }
    default:
        return -EAFNOSUPPORT;
    }
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= size)
        return -ENOSPC;
    return n;
}

int pn_sockaddr_port(const pn_sockaddr *a)
{
    if (!a)
        return -EINVAL;
    switch (a->len ? a->sa.sa_family : AF_UNSPEC) {
    case AF_INET: return ntohs(a->in.sin_port);
    case AF_INET6: return ntohs(a->in6.sin6_port);
    default: return -EAFNOSUPPORT;
    }
}

int pn_sockaddr_set_port(pn_sockaddr *a, uint16_t port)
{
    if (!a)
        return -EINVAL;
    switch (a->len ? a->sa.sa_family : AF_UNSPEC) {
    case AF_INET: a->in.sin_port = htons(port); return 0;
    case AF_INET6: a->in6.sin6_port = htons(port); return 0;
    default: return -EAFNOSUPPORT;
    }
}

int pn_sockaddr_family(const pn_sockaddr *a)
{
    return a && a->len ? a->sa.sa_family : AF_UNSPEC;
}

bool pn_sockaddr_equal(const pn_sockaddr *a, const pn_sockaddr *b)
{
    if (!a || !b)
        return false;
    int fa = pn_sockaddr_family(a);
    if (fa != pn_sockaddr_family(b))
        return false;
    switch (fa) {
    case AF_INET:
        return a->in.sin_port == b->in.sin_port &&
               a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    case AF_INET6:
        return a->in6.sin6_port == b->in6.sin6_port &&
               a->in6.sin6_scope_id == b->in6.sin6_scope_id &&
               memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(struct in6_addr)) == 0;
    case AF_UNIX: {
        size_t off = offsetof(struct sockaddr_un, sun_path);
        return a->len == b->len &&
               (a->len <= off || memcmp(a->un.sun_path, b->un.sun_path, a->len - off) == 0);
    }
    default:
        return a->len == b->len;
    }
}
