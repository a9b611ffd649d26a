/* lib/base/netaddr.h: the socket addresses weft's flags take ("--listen 0.0.0.0:8443",
 * "--http [::1]:9090", "unix:/run/weft/admin.sock"), parsed one way everywhere: numeric
 * addresses only (no name lookup), IPv6 in brackets (RFC 3986 §3.2.2). */
#ifndef WEFT_LIB_BASE_NETADDR_H
#define WEFT_LIB_BASE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include "lib/base/err.h"

union weft_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
};

/* weft_sockaddr_parse reads "IPV4:PORT", "[IPV6]:PORT" (port 0 to 65535) or, when |allow_unix|,
 * "unix:PATH" into |out| and its length into |*out_len|. WEFT_EINVAL for anything else, with
 * the forms accepted in |err|; the caller names the flag and the address. */
WEFT_MUST_USE int weft_sockaddr_parse(const char *s, bool allow_unix, union weft_sockaddr *out,
                                      socklen_t *out_len, char *err, size_t err_len);

#define WEFT_ADDR_MAX 64 /* "[ipv6]:port" fits, NUL included */

/* struct weft_ip is an IP address as 4 or 16 bytes. */
struct weft_ip {
    bool v6;
    unsigned char bytes[16];
};

/* weft_addr_canonical writes the canonical form of a mesh directory address, "IP" or "IP:port"
 * ("1.2.3.4:80", "[::1]:80", "::1"; an IPv4-mapped IPv6 address becomes its IPv4 form), and
 * the IP itself to |ip| when not NULL. WEFT_EINVAL for anything that is not an IP literal with
 * an optional port 1-65535. */
WEFT_MUST_USE int weft_addr_canonical(char out[WEFT_ADDR_MAX], const char *address,
                                      struct weft_ip *ip);

/* struct weft_cidr is a network: "198.18.0.0/15", "fd00::/8". */
struct weft_cidr {
    struct weft_ip ip; /* the network, host bits zero */
    unsigned bits;
};

/* weft_cidr_parse reads "IP/BITS" (a bare address, host bits zero: "10.0.0.0/8", not
 * "10.1.2.3/8"). WEFT_EINVAL for anything else. */
WEFT_MUST_USE int weft_cidr_parse(const char *s, struct weft_cidr *out);

/* weft_cidr_contains: |ip| is in |c| (an IPv4 address is never in an IPv6 network). */
bool weft_cidr_contains(const struct weft_cidr *c, const struct weft_ip *ip);

#endif
