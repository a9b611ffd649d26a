/* scan/probe.h: what one endpoint presents (issue 9). Its own TLS client: BoringSSL configured
 * here, no verification of the chain against anything (the scanner reports what it sees; the
 * bundle only names the root), every wait bounded. */
#ifndef WEFT_SCAN_PROBE_H
#define WEFT_SCAN_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>
#include <openssl/x509.h> /* STACK_OF(X509) */

#include "lib/base/err.h"
#include "scan/scan.h"

#define SCAN_DEFAULT_TIMEOUT_MS 5000 /* each connection, connect to last byte */
#define SCAN_MAX_TIMEOUT_MS 600000   /* 10 minutes */
#define SCAN_NO_CERT_WAIT_MS 1000    /* after a handshake without a client certificate */
#define SCAN_HTTP_HEAD_MAX 16384     /* an HTTP response head read, status line to blank line */
#define SCAN_HSTS_MAX 1024           /* a Strict-Transport-Security value */
#define SCAN_LOCATION_MAX 512        /* a Location value, cut */
#define SCAN_MAX_PENDING_LOOKUPS 64  /* name lookups still running after their probe gave up */

struct scan_probe_opts {
    int timeout_ms;          /* 0: SCAN_DEFAULT_TIMEOUT_MS */
    const char *server_name; /* SNI; NULL: the endpoint's host when it is a name */
    const char *const *alpn; /* offered, in order; NULL/0: none */
    size_t num_alpn;
    EVP_PKEY *client_key; /* with client_chain: presented when asked; NULL: none */
    STACK_OF(X509) * client_chain;
    STACK_OF(X509) * bundle_roots; /* to name the chain's root; NULL: not named */
    bool probe_versions;           /* extra handshakes limited to TLS 1.0, 1.1, 1.2 each */
    bool probe_no_client_cert;     /* an extra handshake presenting no certificate */
    bool probe_plaintext;          /* an extra plaintext HTTP request */
    bool probe_https;              /* GET / over the main connection: HSTS; and plain HTTP on
                                    * |http_port| for the redirect */
    int http_port;                 /* 0: 80 */
};

/* How the extra probes decide (each its own connection, each bounded by the timeout):
 *   - accepts_tls10/11/12: a handshake with the client limited to exactly that version (and the
 *     client certificate, when there is one, so that an mTLS port is not "refused" for lack of
 *     it) completes, or gets as far as the server asking for a client certificate (after its
 *     ServerHello chose that version): 1; it fails or times out: 0; the TCP connection itself
 * fails: -1.
 *   - accepts_no_client_cert: a handshake offering no certificate. It fails: 0 (TLS 1.2
 *     servers refuse inside the handshake). It completes (TLS 1.3 clients finish before the
 *     server has judged their certificate): the client sends nothing and reads for
 *     SCAN_NO_CERT_WAIT_MS (or the timeout, when shorter). An alert, an error or the peer
 *     closing: 0 (refused). Application data, or the connection still open when the wait ends:
 *     1 (accepted).
 *   - accepts_plaintext: "GET / HTTP/1.1" in the clear; an HTTP answer: 1, except 400 and 426,
 *     which TLS servers send to refuse plain HTTP (Go, nginx): 0; anything else, a close or
 *     silence until the timeout: 0.
 *   - probe_https: "GET <path>" over the main connection (over a new one offering only
 *     http/1.1 when the main one negotiated another ALPN); the head (at most
 *     SCAN_HTTP_HEAD_MAX bytes) gives hsts_present (1 when the first Strict-Transport-Security
 *     header is valid per RFC 6797 §6.1, 0 when missing or invalid, -1 when no head came back).
 *     Then "GET <path>" in the clear on |http_port|: http_redirects_to_https is 1 for a
 *     301/302/307/308 whose Location starts with https://, 0 for any other answer, -1 when the
 *     port does not answer HTTP (nothing served in the clear, so nothing to redirect).
 * Host names are resolved with getaddrinfo in a helper thread, within each connection's
 * timeout: a name DNS does not answer for in time leaves the endpoint unreached ("cannot
 * resolve HOST: no answer from DNS within N ms") and its lookup to end on its own; while
 * SCAN_MAX_PENDING_LOOKUPS such lookups are still running, no name is looked up (unreached,
 * and said so). IP literals are never looked up. While it runs, scan_probe blocks SIGPIPE in
 * the calling thread (a peer that closes early must not kill the scanner) and restores the
 * mask before it returns. */

/* struct scan_endpoint is an endpoint as scan_endpoint_parse read it. */
struct scan_endpoint {
    char host[SCAN_NAME_MAX + 1]; /* a name or an IP literal, without brackets */
    int port;
    bool https;                   /* given as https://... */
    bool host_is_name;            /* not an IP literal: the default SNI */
    char path[SCAN_NAME_MAX + 1]; /* "/" unless the URL gave one */
};

/* scan_endpoint_parse reads "HOST:PORT", "[V6]:PORT" or "https://HOST[:PORT][/path]" (port
 * 443 by default) of at most SCAN_NAME_MAX bytes. Host names are letters, digits, '-', '_' and
 * '.'; paths are printable ASCII without spaces; no user info, query or fragment. WEFT_EINVAL
 * (or WEFT_ELIMIT for the length) with |err| quoting what is wrong. */
WEFT_MUST_USE int scan_endpoint_parse(struct scan_endpoint *out, const char *s, char *err,
                                      size_t err_len);

/* struct scan_hsts is a Strict-Transport-Security header's directives. */
struct scan_hsts {
    int64_t max_age; /* seconds; saturates at INT64_MAX */
    bool include_subdomains, preload;
};

/* scan_hsts_parse reads a Strict-Transport-Security value (RFC 6797 §6.1: directives split by
 * ';', names case-insensitive, values tokens or quoted strings, max-age required, no directive
 * twice, unknown directives ignored). WEFT_OK, or WEFT_EINVAL for an invalid value (which a
 * browser ignores, so the scanner counts it as missing); WEFT_ELIMIT over SCAN_HSTS_MAX. */
WEFT_MUST_USE int scan_hsts_parse(struct scan_hsts *out, const char *value, size_t len);

/* struct scan_http_head is what the scanner keeps of an HTTP response head. */
struct scan_http_head {
    int status;
    bool hsts_seen;  /* a Strict-Transport-Security header came (the first one is read) */
    bool hsts_valid; /* and scan_hsts_parse took it */
    struct scan_hsts hsts;
    char location[SCAN_LOCATION_MAX + 1]; /* cut; "" when none */
};

/* scan_http_head_parse reads an HTTP/1.x response head from |buf| (what came back so far) with
 * libhttp-parser. WEFT_OK when the head is complete (bytes after it are ignored), WEFT_EAGAIN
 * when more bytes are needed, WEFT_EPROTO for a malformed response, WEFT_ELIMIT when
 * SCAN_HTTP_HEAD_MAX bytes hold no complete head. */
WEFT_MUST_USE int scan_http_head_parse(struct scan_http_head *out, const char *buf, size_t len);

/* scan_probe connects to |endpoint| ("HOST:PORT", "[V6]:PORT" or "https://HOST[:PORT]/") and
 * fills |out| (zeroed first) with what it found. An endpoint that cannot be reached, or whose
 * handshake fails, is not an error: |out->reached| is false and |out->error| says why. Errors
 * are for a bad |endpoint| or options (WEFT_EINVAL, |err| set). */
WEFT_MUST_USE int scan_probe(const char *endpoint, const struct scan_probe_opts *opts,
                             struct scan_result *out, char *err, size_t err_len);

#endif
