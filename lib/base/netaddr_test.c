/* lib/base/netaddr_test.c: the address forms flags accept, and what they refuse. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "lib/base/netaddr.h"

Test(netaddr, accepted_forms)
{
    union weft_sockaddr a;
    socklen_t len;
    char err[256];
    cr_assert_eq(weft_sockaddr_parse("127.0.0.1:8443", false, &a, &len, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(a.sa.sa_family, AF_INET);
    cr_assert_eq(ntohs(a.in4.sin_port), 8443);
    cr_assert_eq(len, sizeof(a.in4));
    cr_assert_eq(weft_sockaddr_parse("[::1]:0", false, &a, &len, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(a.sa.sa_family, AF_INET6);
    cr_assert_eq(weft_sockaddr_parse("unix:/run/x.sock", true, &a, &len, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_str_eq(a.un.sun_path, "/run/x.sock");
}

Test(netaddr, refused_forms)
{
    static const char *const bad[] = {
        "localhost:80", "1.2.3.4",      "1.2.3.4:65536", "1.2.3.4:", "::1:80",
        "[::1]80",      "[1.2.3.4]:80", "1.2.3.4:8x",    "",         ":80",
        "1.2.3.4:80:",
    };
    union weft_sockaddr a;
    socklen_t len;
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(weft_sockaddr_parse(bad[i], true, &a, &len, err, sizeof(err)), WEFT_EINVAL,
                     "%s", bad[i]);
        cr_assert_not_null(strstr(err, "want IPV4:PORT"), "%s", err);
    }
    cr_assert_eq(weft_sockaddr_parse("unix:/x", false, &a, &len, err, sizeof(err)), WEFT_EINVAL,
                 "unix sockets only where allowed");
    cr_assert_eq(weft_sockaddr_parse("unix:", true, &a, &len, err, sizeof(err)), WEFT_EINVAL);
}

Test(netaddr, directory_addresses_have_one_canonical_form)
{
    char out[WEFT_ADDR_MAX];
    struct weft_ip ip;
    cr_assert_eq(weft_addr_canonical(out, "198.18.0.7", &ip), WEFT_OK);
    cr_assert_str_eq(out, "198.18.0.7");
    cr_assert(!ip.v6);
    cr_assert_eq(ip.bytes[0], 198);
    cr_assert_eq(ip.bytes[3], 7);
    cr_assert_eq(weft_addr_canonical(out, "[2001:DB8:0::1]:443", &ip), WEFT_OK);
    cr_assert_str_eq(out, "[2001:db8::1]:443");
    cr_assert(ip.v6);
    cr_assert_eq(ip.bytes[15], 1);
    cr_assert_eq(weft_addr_canonical(out, "[::ffff:198.18.0.5]:8080", &ip), WEFT_OK);
    cr_assert_str_eq(out, "198.18.0.5:8080");
    cr_assert(!ip.v6);
    const char *bad[] = {"",     "host:80", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:080",
                         "[::1", "1.2.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_eq(weft_addr_canonical(out, bad[i], NULL), WEFT_EINVAL, "accepted \"%s\"",
                     bad[i]);
    }
}

Test(netaddr, cidrs_are_networks_with_their_host_bits_zero)
{
    struct weft_cidr c;
    struct weft_ip ip;
    char canon[WEFT_ADDR_MAX];
    cr_assert_eq(weft_cidr_parse("198.18.0.0/15", &c), WEFT_OK);
    cr_assert_eq(weft_addr_canonical(canon, "198.19.255.255", &ip), WEFT_OK);
    cr_assert(weft_cidr_contains(&c, &ip));
    cr_assert_eq(weft_addr_canonical(canon, "198.20.0.0", &ip), WEFT_OK);
    cr_assert(!weft_cidr_contains(&c, &ip));
    cr_assert_eq(weft_cidr_parse("fd00::/8", &c), WEFT_OK);
    cr_assert_eq(weft_addr_canonical(canon, "fdff::1", &ip), WEFT_OK);
    cr_assert(weft_cidr_contains(&c, &ip));
    cr_assert_eq(weft_addr_canonical(canon, "198.18.0.1", &ip), WEFT_OK);
    cr_assert(!weft_cidr_contains(&c, &ip), "another family");
    cr_assert_eq(weft_cidr_parse("0.0.0.0/0", &c), WEFT_OK);
    cr_assert(weft_cidr_contains(&c, &ip));
    const char *bad[] = {"198.18.0.1/15",    "198.18.0.0", "198.18.0.0/33", "198.18.0.0/",
                         "198.18.0.0:80/15", "[fd00::]/8", "fd00::/129",    "x/8",
                         "10.0.0.0/-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(weft_cidr_parse(bad[i], &c), WEFT_EINVAL, "%s", bad[i]);
    }
}
