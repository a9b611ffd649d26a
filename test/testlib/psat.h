/* test/testlib/psat.h: Kubernetes projected service account tokens for tests, signed at test
 * time by keys minted at test time (RSA-2048 and P-256), and the JWKS that publishes them, as a
 * cluster's /openid/v1/jwks does. */
#ifndef WEFT_TEST_TESTLIB_PSAT_H
#define WEFT_TEST_TESTLIB_PSAT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "lib/base/err.h"

#define TESTLIB_PSAT_ISSUER "https://kubernetes.default.svc.cluster.local"
#define TESTLIB_PSAT_RSA_KID "rsa-1"
#define TESTLIB_PSAT_EC_KID "ec-1"

struct testlib_psat_keys {
    EVP_PKEY *rsa; /* RSA-2048, kid TESTLIB_PSAT_RSA_KID */
    EVP_PKEY *ec;  /* P-256, kid TESTLIB_PSAT_EC_KID */
};

/* testlib_psat_keys_mint makes both keys; release with testlib_psat_keys_cleanup. */
WEFT_MUST_USE int testlib_psat_keys_mint(struct testlib_psat_keys *k);
void testlib_psat_keys_cleanup(struct testlib_psat_keys *k);

/* testlib_psat_ec_key returns a fresh P-256 key (NULL on failure). */
EVP_PKEY *testlib_psat_ec_key(void);

/* testlib_psat_jwk returns the JWK of |pub| with "use": "sig" and "kid": |kid| (a new ref). */
json_t *testlib_psat_jwk(EVP_PKEY *pub, const char *kid);

/* testlib_psat_jwks returns {"keys": [rsa, ec]} as JSON text (free()). */
char *testlib_psat_jwks(const struct testlib_psat_keys *k);

/* testlib_psat_header returns {"alg": |alg|} with "kid": |kid| unless NULL. */
json_t *testlib_psat_header(const char *alg, const char *kid);

/* testlib_psat_claims returns the claims kube-apiserver puts in a projected token of pod
 * "weft-agent-x7k2p" of namespace weft-system, service account |sa|, on node |node|, issued
 * at |iat| and expiring at |exp|, audience ["weft-ca"], with a jti. */
json_t *testlib_psat_claims(const char *sa, const char *node, int64_t iat, int64_t exp);

/* testlib_psat_sign returns the compact JWS (free()) of |header| and |claims| (both taken),
 * signed under |alg|: RS256 or ES256 (R || S) with |key|, HS256 with the secret |hmac|, or
 * "none" (an empty signature part). NULL on failure. */
char *testlib_psat_sign(json_t *header, json_t *claims, const char *alg, EVP_PKEY *key,
                        const uint8_t *hmac, size_t hmac_len);

#endif
