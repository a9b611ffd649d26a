/* ca/client.h: how a node (the agent, weft's tests) reaches weft-ca: TCP to the CA's address,
 * TLS 1.3 by lib/transport with the CA pinned (its SVID must verify against the trust bundle
 * and name spiffe://TD/weft/ca exactly), then a gRPC channel over the plaintext end. */
#ifndef WEFT_CA_CLIENT_H
#define WEFT_CA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/bundle.h"
#include "lib/transport/tls_relay.h"

#define CA_CLIENT_SERVER_PATH "/weft/ca"

struct ca_client;

/* ca_client_new prepares to dial |addr| ("IPV4:PORT" or "[IPV6]:PORT") as a client of the CA of
 * |td|
 * ("example.org" or "spiffe://example.org"), trusting the roots in |bundle| (any encoding
 * spiffe_bundle_decode reads: the bootstrap bundle file, or the DER a snapshot carries).
 * Starts a relay thread. |err| says what was wrong. */
WEFT_MUST_USE int ca_client_new(struct ca_client **out, const char *addr, const char *td,
                                const uint8_t *bundle, size_t bundle_len, char *err,
                                size_t err_len);

/* ca_client_set_bundle replaces the roots later dials trust (a new bundle from WatchNode). */
WEFT_MUST_USE int ca_client_set_bundle(struct ca_client *c, const uint8_t *bundle,
                                       size_t bundle_len, char *err, size_t err_len);

/* ca_client_dial connects and returns a channel for the CA's calls. With |chain| and |key|
 * NULL the client presents no certificate (AttestNode); otherwise its node SVID. The channel
 * never reconnects: dial again once its calls fail UNAVAILABLE. Destroy it with
 * grpc_channel_destroy. Returns as tls_relay_dial. */
WEFT_MUST_USE int ca_client_dial(struct ca_client *c, STACK_OF(X509) * chain, EVP_PKEY *key,
                                 grpc_channel **out, char *err, size_t err_len);

void ca_client_free(struct ca_client *c);

/* ca_csr_new makes a DER PKCS#10 request for |key| (its signature proves the key is held);
 * the caller frees |*out| with OPENSSL_free. */
WEFT_MUST_USE int ca_csr_new(EVP_PKEY *key, uint8_t **out, size_t *out_len);

#endif
