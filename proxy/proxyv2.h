/* proxy/proxyv2.h: the PROXY protocol version 2 header (HAProxy's proxy-protocol.txt, §2.2).
 *
 * On a port configured for it, the inbound proxy opens its connection to the app with a PROXY v2
 * header carrying the mesh client's original address and its verified SPIFFE ID, so a TCP app
 * can learn who called it. The proxy encodes; the decoder is for tests and for apps' libraries.
 *
 * Layout: the 12-byte signature "\r\n\r\n\0\r\nQUIT\n"; one byte version (2, high nibble) and
 * command (LOCAL 0, PROXY 1); one byte address family (high nibble) and transport (low nibble);
 * a big-endian uint16 length of what follows: the address block (TCP4: src, dst, src port, dst
 * port = 12 bytes; TCP6: 36 bytes), then TLVs (uint8 type, uint16 length, value).
 *
 * TLVs weft writes:
 *   PROXYV2_TLV_WEFT_SPIFFE_ID (0xE0, in the spec's custom range 0xE0-0xEF): the peer's verified
 *     SPIFFE ID, UTF-8 without NUL or control characters, 1..PROXYV2_SPIFFE_ID_MAX bytes.
 *   PP2_TYPE_SSL (0x20): client = PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, verify = 0 (the client
 *     certificate was verified), and a PP2_SUBTYPE_SSL_VERSION sub-TLV "TLSv1.3". */
#ifndef WEFT_PROXY_PROXYV2_H
#define WEFT_PROXY_PROXYV2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/bytestring.h>

#include "lib/base/err.h"

#define PROXYV2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define PROXYV2_SIG_LEN 12
#define PROXYV2_HEADER_LEN 16        /* signature, ver_cmd, fam, len */
#define PROXYV2_MAX_LEN (16 + 65535) /* the uint16 length bounds every header */

#define PROXYV2_CMD_LOCAL 0x0
#define PROXYV2_CMD_PROXY 0x1

#define PROXYV2_FAM_UNSPEC 0x00
#define PROXYV2_FAM_TCP4 0x11
#define PROXYV2_FAM_TCP6 0x21

#define PROXYV2_TLV_SSL 0x20
#define PROXYV2_SUBTYPE_SSL_VERSION 0x21
#define PROXYV2_CLIENT_SSL 0x01
#define PROXYV2_CLIENT_CERT_CONN 0x02
#define PROXYV2_TLV_WEFT_SPIFFE_ID 0xE0 /* weft's: the peer's SPIFFE ID, UTF-8 */

#define PROXYV2_SPIFFE_ID_MAX 2048

/* struct proxyv2 is a decoded header. Pointers borrow from the decoder's input. */
struct proxyv2 {
    uint8_t command; /* PROXYV2_CMD_LOCAL or PROXYV2_CMD_PROXY */
    /* PROXYV2_FAM_TCP4 or _TCP6 with addresses in |src| and |dst| (sin/sin6 with ports); or
     * PROXYV2_FAM_UNSPEC, for LOCAL and for PROXY with an unspecified family, where the
     * receiver uses the connection's own endpoints (|src| and |dst| are zeroed, AF_UNSPEC). */
    uint8_t family;
    struct sockaddr_storage src, dst;
    const uint8_t *spiffe_id; /* the 0xE0 TLV, validated; NULL when absent */
    size_t spiffe_id_len;
    bool has_ssl; /* a PP2_TYPE_SSL TLV was present */
    uint8_t ssl_client;
    uint32_t ssl_verify;
    const uint8_t *ssl_version; /* its PP2_SUBTYPE_SSL_VERSION, NULL when absent */
    size_t ssl_version_len;
    size_t header_len;  /* OK: the bytes the header took (and |in| was advanced by) */
    size_t need;        /* WEFT_EAGAIN: at least this many more bytes (total <= PROXYV2_MAX_LEN) */
    const char *reason; /* WEFT_EPROTO: a static string naming the broken rule */
};

/* proxyv2_encode appends a PROXY-command header to |cbb| for a TCP connection from |src| to
 * |dst| (each AF_INET or AF_INET6; when they differ the IPv4 one is written IPv4-mapped in a
 * TCP6 header) with, when |spiffe_id| is not NULL, the SPIFFE ID TLV and the SSL TLV described
 * above. Returns WEFT_OK; WEFT_EINVAL for another family or a |spiffe_id| that is empty, longer
 * than PROXYV2_SPIFFE_ID_MAX or not printable UTF-8; WEFT_EINTERNAL if |cbb| fails. On failure
 * |cbb| may hold part of a header: the caller discards it. */
WEFT_MUST_USE int proxyv2_encode(CBB *cbb, const struct sockaddr *src, const struct sockaddr *dst,
                                 const char *spiffe_id);

/* proxyv2_decode reads one header from the start of |in| into |out| (zeroed first). Returns
 * WEFT_OK with |in| advanced past the header and |out->header_len| set; WEFT_EAGAIN when |in|
 * is a proper prefix of a header (|in| untouched, |out->need| set); WEFT_EPROTO when it cannot
 * be one (|in| untouched, |out->reason| set). Accepted: version 2; LOCAL with any family and
 * block (ignored, as the spec asks); PROXY with UNSPEC (addresses ignored), TCP4 or TCP6.
 * TLVs must lie within the header; PP2_TYPE_SSL's sub-TLVs within it; the SPIFFE ID TLV at
 * most once and as the encoder's rules say. Other TLVs are skipped. */
WEFT_MUST_USE int proxyv2_decode(CBS *in, struct proxyv2 *out);

/* proxyv2_spiffe_id_ok says whether |id| of |len| bytes is acceptable as the SPIFFE ID TLV:
 * 1..PROXYV2_SPIFFE_ID_MAX bytes of well-formed UTF-8 (RFC 3629: shortest form, no surrogates)
 * without C0 or C1 control characters or DEL. */
bool proxyv2_spiffe_id_ok(const uint8_t *id, size_t len);

#endif
