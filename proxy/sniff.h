/* proxy/sniff.h: the inbound first-bytes sniffer (issue 6, "Inbound").
 *
 * An inbound connection's first bytes are peeked (MSG_PEEK: nothing is consumed) and classified:
 * a TLS ClientHello offering ALPN "weft/1" is mesh traffic, a ClientHello without it is an app's
 * own TLS, and anything that cannot be a ClientHello record is plaintext. The sniffer is a pure
 * function of the bytes: no I/O, no allocation, no state between calls. Call it again, from the
 * first byte, each time more bytes have been peeked.
 *
 * Scope: the ClientHello must sit in the first TLS record (RFC 8446 §5.1 allows a handshake
 * message to span records; no mainstream client splits its ClientHello, and the cap keeps the
 * peek buffer to one record). A ClientHello that spans records is SNIFF_TLS_OTHER. So the
 * sniffer never needs more than SNIFF_MAX_BYTES. */
#ifndef WEFT_PROXY_SNIFF_H
#define WEFT_PROXY_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>

/* SNIFF_MAX_BYTES is one TLS record: a 5-byte header and at most 2^14 bytes of body. */
#define SNIFF_MAX_BYTES (5 + 16384)

/* SNIFF_ALPN is the protocol name the mesh's own TLS offers. */
#define SNIFF_ALPN "weft/1"

enum sniff_verdict {
    SNIFF_NEED_MORE = 0, /* a prefix of a ClientHello record: peek again with more bytes */
    SNIFF_TLS_WEFT,      /* a well-formed ClientHello offering ALPN "weft/1" */
    SNIFF_TLS_OTHER,     /* a well-formed ClientHello without "weft/1", or one spanning records */
    SNIFF_PLAINTEXT,     /* cannot be (or is a malformed) TLS ClientHello record */
};

struct sniff_result {
    enum sniff_verdict verdict;
    /* NEED_MORE only: the sniffer needs at least this many more bytes for a verdict on a
     * well-formed ClientHello (a malformed one may be refused sooner). Always >= 1, and the
     * bytes given plus |need| never exceed SNIFF_MAX_BYTES. Zero for every other verdict. */
    size_t need;
    /* A static string for the logs, never NULL: why PLAINTEXT or OTHER ("record version not
     * TLS 1.0-1.2", "no ALPN extension"), or what WEFT and NEED_MORE mean. */
    const char *reason;
    /* The first host_name of the server_name extension (RFC 6066 §3), borrowed from the input;
     * NULL with |sni_len| 0 when there is none. Set for TLS_WEFT and TLS_OTHER only, and not
     * checked beyond being 1..255 bytes without NUL. */
    const uint8_t *sni;
    size_t sni_len;
};

/* sniff_classify classifies the bytes peeked so far on an inbound connection, |in| (not
 * advanced), writes the details to |out| and returns the verdict (also in |out->verdict|).
 * When |at_eof| is true no more bytes will come (the peer closed, or the permissive port's wait
 * for a client-first protocol ran out), so what would be NEED_MORE is SNIFF_PLAINTEXT. Empty
 * input is NEED_MORE (5 bytes) unless |at_eof|. Bytes after the ClientHello are not looked at. */
enum sniff_verdict sniff_classify(struct sniff_result *out, const CBS *in, bool at_eof);

#endif
