/* lib/transport/svidtls.h: what SPIFFE asks of a BoringSSL TLS connection, for both of weft's
 * TLS users (the gRPC relay, lib/transport/tls_relay.c, and the sidecar, proxy/tls.c): the
 * peer's chain as the custom verify callback sees it, the alert that tells a peer what was
 * wrong with its SVID, and which alerts mean a peer refused ours. */
#ifndef WEFT_LIB_TRANSPORT_SVIDTLS_H
#define WEFT_LIB_TRANSPORT_SVIDTLS_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/why.h"

/* svidtls_peer_chain decodes the certificates the peer presented (or, on a resumed session,
 * the ones it stores), leaf first, into a new stack. BoringSSL bounds the message's size;
 * SPIFFE_MAX_CHAIN bounds the count. WEFT_ENOTFOUND when the peer presented none. */
WEFT_MUST_USE int svidtls_peer_chain(STACK_OF(X509) * *out, const SSL *ssl);

/* svidtls_alert_for picks the alert (RFC 8446 §6.2) that tells a peer what was wrong with its
 * SVID, so that its own error says it. */
uint8_t svidtls_alert_for(enum spiffe_rule rule);

/* svidtls_is_certificate_alert reports whether |alert| is one with which a peer refuses our
 * certificate. */
bool svidtls_is_certificate_alert(int alert);

#endif
