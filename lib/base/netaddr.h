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

#endif
