/*
 * test_net_addr.c - pn_sockaddr (pollen/net.h): parsing accepts exactly
 * "a.b.c.d:port" and "[ipv6(%zone)]:port" and refuses every malformed
 * neighbour with -EINVAL; formatting round-trips and reports -ENOSPC;
 * ports, families, equality, kernel addresses and Unix forms.
 */
#include <arpa/inet.h>
#include <string.h>
#include "helpers.h"

TestSuite(net_addr, .timeout = PN_TEST_TIMEOUT);

static void roundtrip(const char *in, const char *want, int family, int port)
{
    pn_sockaddr a;
    cr_assert_eq(pn_sockaddr_parse(&a, in), 0, "parse \"%s\"", in);
    cr_assert_eq(pn_sockaddr_family(&a), family, "family of %s", in);
    cr_assert_eq(pn_sockaddr_port(&a), port, "port of %s", in);
    char buf[PN_SOCKADDR_STRLEN];
    int n = pn_sockaddr_format(&a, buf, sizeof(buf));
    cr_assert_eq(n, (int)strlen(want), "format of %s gave %d", in, n);
    cr_assert_str_eq(buf, want);
    pn_sockaddr b;
    cr_assert_eq(pn_sockaddr_parse(&b, buf), 0);
    cr_assert(pn_sockaddr_equal(&a, &b));
}

Test(net_addr, parses_and_formats_valid_addresses)
{
    roundtrip("127.0.0.1:8080", "127.0.0.1:8080", AF_INET, 8080);
    roundtrip("0.0.0.0:0", "0.0.0.0:0", AF_INET, 0);
    roundtrip("255.255.255.255:65535", "255.255.255.255:65535", AF_INET, 65535);
    roundtrip("10.1.2.3:00080", "10.1.2.3:80", AF_INET, 80);  /* zeros before the port are fine */
    roundtrip("[::1]:8080", "[::1]:8080", AF_INET6, 8080);
    roundtrip("[::]:0", "[::]:0", AF_INET6, 0);
    roundtrip("[2001:DB8:0:0:0:0:0:1]:443", "[2001:db8::1]:443", AF_INET6, 443);
    roundtrip("[::ffff:192.0.2.1]:1", "[::ffff:192.0.2.1]:1", AF_INET6, 1);
    roundtrip("[fe80::1%7]:22", "[fe80::1%7]:22", AF_INET6, 22);
    roundtrip("[fe80::1%lo]:22", "[fe80::1%1]:22", AF_INET6, 22);   /* lo is index 1 */

    pn_sockaddr a;
    cr_assert_eq(pn_sockaddr_parse(&a, "192.168.1.20:1234"), 0);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    cr_assert_eq(ntohl(a.in.sin_addr.s_addr), 0xC0A80114u);
    cr_assert_eq(pn_sockaddr_parse(&a, "[::1]:1"), 0);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
    cr_assert(IN6_IS_ADDR_LOOPBACK(&a.in6.sin6_addr));
}

Test(net_addr, refuses_malformed_input)
{
    static const char *bad[] = {
        "", ":", ":80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:99999",
        "127.0.0.1:123456", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1: 80",
        "127.0.0.1:80 ", " 127.0.0.1:80", "127.0.0.1:80x", "127.0.0.1:0x50", "127.0.0.1:8a",
        "256.0.0.1:80", "1.2.3.256:80", "1.2.3:80", "1.2.3.4.5:80", "01.2.3.4:80",
        "1..2.3:80", "a.b.c.d:80", "localhost:80", "1.2.3.4::80", "1.2.3.4:80:80",
        "::1:80", "::1", "[::1]", "[::1]:", "[::1:80", "::1]:80", "[[::1]]:80",
        "[::1]]:80", "[::1]x:80", "[::1]:80]", "[]:80", "[127.0.0.1]:80",
        "[::1%]:80", "[fe80::1%nosuchif0]:80", "[fe80::1%99999999999]:80",
        "[:::1]:80", "[1:2:3:4:5:6:7:8:9]:80", "[::1] :80", "[::1]:65536",
        "[::1]:8080/", "1.2.3.4:80\n", "[::g]:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pn_sockaddr a = pn_sockaddr_loopback4(7);
        cr_assert_eq(pn_sockaddr_parse(&a, bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
        cr_assert_eq(pn_sockaddr_port(&a), 7, "\"%s\": *out changed on error", bad[i]);
    }
    pn_sockaddr a;
    cr_assert_eq(pn_sockaddr_parse(NULL, "1.2.3.4:5"), -EINVAL);
    cr_assert_eq(pn_sockaddr_parse(&a, NULL), -EINVAL);
}

/* Every prefix and every one-byte mutation of valid strings: no crash, and
 * whatever parses formats back to something that parses to the same. */
Test(net_addr, mutations_never_crash_and_round_trip)
{
    static const char *seeds[] = { "127.0.0.1:8080", "[2001:db8::1]:443", "[fe80::1%1]:22" };
    static const char alphabet[] = "0123456789abcdef:.[]%x -+\x01\xff";
    char s[64], buf[PN_SOCKADDR_STRLEN];
    int accepted = 0;
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(seeds[k]);
        for (size_t cut = 0; cut <= n; cut++) {
            memcpy(s, seeds[k], cut);
            s[cut] = '\0';
            pn_sockaddr a;
            if (pn_sockaddr_parse(&a, s) == 0)
                accepted++;
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < sizeof(alphabet) - 1; j++) {
                strcpy(s, seeds[k]);
                s[i] = alphabet[j];
                pn_sockaddr a, b;
                if (pn_sockaddr_parse(&a, s) != 0)
                    continue;
                accepted++;
                cr_assert_gt(pn_sockaddr_format(&a, buf, sizeof(buf)), 0);
                cr_assert_eq(pn_sockaddr_parse(&b, buf), 0, "%s -> %s", s, buf);
                cr_assert(pn_sockaddr_equal(&a, &b), "%s -> %s", s, buf);
            }
        }
    }
    cr_assert_gt(accepted, 3);
}

Test(net_addr, format_reports_enospc_and_bad_families)
{
    pn_sockaddr a;
    cr_assert_eq(pn_sockaddr_parse(&a, "127.0.0.1:8080"), 0);
    char buf[PN_SOCKADDR_STRLEN];
    cr_assert_eq(pn_sockaddr_format(&a, buf, 15), 14);          /* exact fit with the NUL */
    cr_assert_str_eq(buf, "127.0.0.1:8080");
    cr_assert_eq(pn_sockaddr_format(&a, buf, 14), -ENOSPC);
    cr_assert_eq(pn_sockaddr_format(&a, buf, 0), -ENOSPC);
    cr_assert_eq(pn_sockaddr_format(NULL, buf, sizeof(buf)), -EINVAL);
    cr_assert_eq(pn_sockaddr_format(&a, NULL, 10), -EINVAL);

    pn_sockaddr empty;
    memset(&empty, 0, sizeof(empty));
    cr_assert_eq(pn_sockaddr_format(&empty, buf, sizeof(buf)), -EAFNOSUPPORT);
    cr_assert_eq(pn_sockaddr_port(&empty), -EAFNOSUPPORT);
    cr_assert_eq(pn_sockaddr_set_port(&empty, 1), -EAFNOSUPPORT);
    cr_assert_eq(pn_sockaddr_family(&empty), AF_UNSPEC);
    cr_assert_eq(pn_sockaddr_family(NULL), AF_UNSPEC);
    cr_assert_eq(pn_sockaddr_port(NULL), -EINVAL);

    /* The longest IPv6 form fits in PN_SOCKADDR_STRLEN. */
    pn_sockaddr big;
    cr_assert_eq(pn_sockaddr_parse(&big, "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535"), 0);
    cr_assert_gt(pn_sockaddr_format(&big, buf, sizeof(buf)), 0);
}

Test(net_addr, ports_loopbacks_ip_and_equality)
{
    pn_sockaddr a = pn_sockaddr_loopback4(80), b = pn_sockaddr_loopback6(80), c;
    char buf[PN_SOCKADDR_STRLEN];
    pn_sockaddr_format(&a, buf, sizeof(buf));
    cr_assert_str_eq(buf, "127.0.0.1:80");
    pn_sockaddr_format(&b, buf, sizeof(buf));
    cr_assert_str_eq(buf, "[::1]:80");
    cr_assert_not(pn_sockaddr_equal(&a, &b));
    cr_assert_eq(pn_sockaddr_set_port(&a, 65535), 0);
    cr_assert_eq(pn_sockaddr_port(&a), 65535);
    cr_assert_eq(pn_sockaddr_set_port(&b, 1), 0);
    cr_assert_eq(pn_sockaddr_port(&b), 1);

    cr_assert_eq(pn_sockaddr_ip(&c, "127.0.0.1", 65535), 0);
    cr_assert(pn_sockaddr_equal(&a, &c));
    cr_assert_eq(pn_sockaddr_ip(&c, "::1", 1), 0);
    cr_assert(pn_sockaddr_equal(&b, &c));
    cr_assert_eq(pn_sockaddr_ip(&c, "::1:80", 1), 0);           /* an IPv6 literal, no port */
    cr_assert_eq(pn_sockaddr_ip(&c, "127.0.0.1:80", 1), -EINVAL);
    cr_assert_eq(pn_sockaddr_ip(&c, "", 1), -EINVAL);
    cr_assert_eq(pn_sockaddr_ip(NULL, "::1", 1), -EINVAL);

    /* From a kernel address. */
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(9) };
    sin.sin_addr.s_addr = htonl(0x0a000001);
    cr_assert_eq(pn_sockaddr_from(&c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    pn_sockaddr_format(&c, buf, sizeof(buf));
    cr_assert_str_eq(buf, "10.0.0.1:9");
    cr_assert_eq(pn_sockaddr_from(&c, (struct sockaddr *)&sin, 0), -EINVAL);
    cr_assert_eq(pn_sockaddr_from(&c, NULL, sizeof(sin)), -EINVAL);
    cr_assert_eq(pn_sockaddr_from(&c, (struct sockaddr *)&sin, sizeof(struct sockaddr_storage) + 1),
                 -EINVAL);
}

Test(net_addr, unix_forms)
{
    pn_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.un.sun_family = AF_UNIX;
    strcpy(a.un.sun_path, "/tmp/pollen.sock");
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a.un.sun_path) + 1);
    char buf[PN_SOCKADDR_STRLEN];
    cr_assert_eq(pn_sockaddr_format(&a, buf, sizeof(buf)), 16);
    cr_assert_str_eq(buf, "/tmp/pollen.sock");
    cr_assert_eq(pn_sockaddr_port(&a), -EAFNOSUPPORT);

    pn_sockaddr ab;
    memset(&ab, 0, sizeof(ab));
    ab.un.sun_family = AF_UNIX;
    memcpy(ab.un.sun_path, "\0pollen", 7);
    ab.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 7);
    cr_assert_eq(pn_sockaddr_format(&ab, buf, sizeof(buf)), 7);
    cr_assert_str_eq(buf, "@pollen");
    cr_assert_not(pn_sockaddr_equal(&a, &ab));
    cr_assert(pn_sockaddr_equal(&ab, &ab));

    pn_sockaddr unnamed;
    memset(&unnamed, 0, sizeof(unnamed));
    unnamed.un.sun_family = AF_UNIX;
    unnamed.len = sizeof(sa_family_t);
    cr_assert_eq(pn_sockaddr_format(&unnamed, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "");
}
