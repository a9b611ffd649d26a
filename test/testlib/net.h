/* test/testlib/net.h: sockets for the small servers tests run on loopback. */
#ifndef WEFT_TEST_TESTLIB_NET_H
#define WEFT_TEST_TESTLIB_NET_H

/* testlib_listen_loopback listens on 127.0.0.1 at a port the kernel picks, written to |*port|.
 * Returns the listening socket, or -1. */
int testlib_listen_loopback(int *port);

#endif
