/* test/testlib/net.h: sockets for the small servers tests run on loopback, and network
 * namespaces of a test's own. */
#ifndef WEFT_TEST_TESTLIB_NET_H
#define WEFT_TEST_TESTLIB_NET_H

#include <stddef.h>

/* testlib_listen_loopback listens on 127.0.0.1 at a port the kernel picks, written to |*port|.
 * Returns the listening socket, or -1. */
int testlib_listen_loopback(int *port);

/* testlib_netns_own moves the calling process (single-threaded: before grpc_init) into a new
 * network namespace with one interface, weft0 (a TUN device, up), carrying the IPv4 address
 * |ipv4| (use 198.18.0.0/15). Needs root and /dev/net/tun. The namespace and the interface go
 * with the process. Returns 0, or -1 with errno set. */
int testlib_netns_own(const char *ipv4);

/* testlib_http_unix makes one HTTP/1.1 request (|method| |path|, no body) on the unix socket
 * |sock| and reads the whole response into |buf| (NUL-terminated, headers included, cut at
 * |len| - 1), waiting at most 5 s for each read; returns the status, or -1 with no answer. */
int testlib_http_unix(const char *sock, const char *method, const char *path, char *buf,
                      size_t len);

#endif
