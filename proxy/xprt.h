/* proxy/xprt.h: how bytes move on one side of a proxied connection, TLS or not (STYLE.md §6).
 *
 * The relay (proxy/conn.c) only ever calls through a struct xprt_ops; proxy/tls.c provides the
 * TLS one, this header's plain_xprt the other. When a TLS handshake completes, the relay swaps
 * the side's ops pointer from plain to TLS: no code above the transport asks "is this TLS?".
 *
 * Every call is non-blocking. Return values:
 *   > 0            bytes moved. Then |*want| may say more:
 *                    recv, XPRT_DRAINED: the socket had no more and the transport holds none,
 *                    so a recv before the fd is readable again would only find it empty;
 *                    send, XPRT_WANT_WRITE: the transport took the bytes but holds some of
 *                    what it made of them (TLS records) until the socket has room: call send
 *                    again when the fd is writable, with len 0 if nothing new is to go;
 *   0              recv: the peer closed its sending half (EOF, or TLS close_notify);
 *                  send with len 0: nothing is held any more (a flush with nothing to do);
 *   WEFT_EAGAIN    nothing could move now; |*want| says what to wait for (XPRT_WANT_READ or
 *                  XPRT_WANT_WRITE: TLS may need to write to read, or read to write);
 *   other < 0      a WEFT_E* error: the side is finished (the relay closes the connection with
 *                  xprt_reason(ctx) or weft_strerror). */
#ifndef WEFT_PROXY_XPRT_H
#define WEFT_PROXY_XPRT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/base/err.h"

enum { XPRT_WANT_READ = 1, XPRT_WANT_WRITE = 2, XPRT_DRAINED = 4 };

struct xprt_ops {
    ssize_t (*recv)(void *ctx, int fd, uint8_t *buf, size_t cap, int *want);
    ssize_t (*send)(void *ctx, int fd, const uint8_t *buf, size_t len, int *want);
    /* shutdown closes the sending half once everything sent is flushed (TLS: close_notify and
     * whatever the transport still holds, then shutdown(fd, SHUT_WR)); WEFT_OK when done,
     * WEFT_EAGAIN with |*want| to be called again. */
    int (*shutdown)(void *ctx, int fd, int *want);
    /* reason says why the last call failed, for the access log ("peer certificate expired"); may
     * be NULL for a transport with nothing to add to the errno-like code. */
    const char *(*reason)(void *ctx);
};

/* plain_xprt moves bytes on the socket as they are (recv/send with MSG_NOSIGNAL); its ctx is
 * unused (NULL). */
extern const struct xprt_ops plain_xprt;

#endif
