/* scan/probe.h: what one endpoint presents (issue 9). Its own TLS client: BoringSSL configured
 * here, no verification of the chain against anything (the scanner reports what it sees; the
 * bundle only names the root), every wait bounded. */
#ifndef WEFT_SCAN_PROBE_H
#define WEFT_SCAN_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>

#include "lib/base/err.h"
#include "scan/scan.h"

#define SCAN_DEFAULT_TIMEOUT_MS 5000 /* each connection, connect to last byte */

struct scan_probe_opts {
    int timeout_ms;              /* 0: SCAN_DEFAULT_TIMEOUT_MS */
    const char *server_name;     /* SNI; NULL: the endpoint's host when it is a name */
    const char *const *alpn;     /* offered, in order; NULL/0: none */
    size_t num_alpn;
    EVP_PKEY *client_key;        /* with client_chain: presented when asked; NULL: none */
    STACK_OF(X509) *client_chain;
    STACK_OF(X509) *bundle_roots; /* to name the chain's root; NULL: not named */
    bool probe_versions;          /* extra handshakes limited to TLS 1.0, 1.1, 1.2 each */
    bool probe_no_client_cert;    /* an extra handshake presenting no certificate */
    bool probe_plaintext;         /* an extra plaintext HTTP request */
    bool probe_https;             /* GET / over the main connection: HSTS; and plain HTTP on
                                   * |http_port| for the redirect */
    int http_port;                /* 0: 80 */
};

/* scan_probe connects to |endpoint| ("HOST:PORT", "[V6]:PORT" or "https://HOST[:PORT]/") and
 * fills |out| (zeroed first) with what it found. An endpoint that cannot be reached, or whose
 * handshake fails, is not an error: |out->reached| is false and |out->error| says why. Errors
 * are for a bad |endpoint| or options (WEFT_EINVAL, |err| set). */
WEFT_MUST_USE int scan_probe(const char *endpoint, const struct scan_probe_opts *opts,
                             struct scan_result *out, char *err, size_t err_len);

#endif
