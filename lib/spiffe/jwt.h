/* lib/spiffe/jwt.h: JWT-SVIDs (SPIFFE JWT-SVID.md; shared/reference/spiffe.md §D9, §E4-E6):
 * signing one (the CA's signer), the jwt-svid JWK that publishes a signing key in a bundle, and
 * validating one against the bundles of a set (the agent's ValidateJWTSVID, any verifier).
 *
 * A JWT-SVID here is a JWS in compact serialization: base64url(header) "." base64url(claims)
 * "." base64url(signature), unpadded. weft signs ES256 only (ECDSA P-256, SHA-256, the
 * signature as R || S, 64 bytes); the validator also accepts ES384, RS256/384/512 and
 * PS256/384/512 from other issuers' bundles, and refuses "none", HMAC and anything else.
 *
 * Validation, in order, each refusal naming what failed (|why|):
 *   - at most SPIFFE_JWT_MAX_TOKEN bytes, three non-empty base64url parts, JSON objects with no
 *     duplicate keys;
 *   - header: `alg` one of the above; `kid` present and non-empty; `typ`, when present, "JWT"
 *     or "JOSE"; `crit` present is refused (no extension is understood);
 *   - claims: `sub` a SPIFFE ID with a path; `aud` a string or a non-empty array of strings that
 *     contains |audience|; `exp` a number, and |now| < exp; `nbf`, when present, <= |now|;
 *   - the bundle of `sub`'s trust domain is in the set, holds a jwt-svid JWK with that `kid`
 *     whose key type suits `alg`, and the signature verifies with it. */
#ifndef WEFT_LIB_SPIFFE_JWT_H
#define WEFT_LIB_SPIFFE_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/base/err.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/id.h"
#include "lib/spiffe/why.h"

#define SPIFFE_JWT_MAX_TOKEN 8192   /* bytes of a token, signed or validated */
#define SPIFFE_JWT_MAX_AUDIENCES 16 /* in one token weft signs */
#define SPIFFE_JWT_MAX_AUDIENCE 256 /* bytes of one audience */
#define SPIFFE_JWT_KID_LEN 43       /* base64url(SHA-256), unpadded */

struct json_t; /* jansson */

/* spiffe_jwt_kid writes the key ID weft gives a public key: the unpadded base64url of the
 * SHA-256 of its DER SubjectPublicKeyInfo (RFC 7638's purpose, a simpler input), NUL-terminated.
 */
WEFT_MUST_USE int spiffe_jwt_kid(const EVP_PKEY *pub, char kid[SPIFFE_JWT_KID_LEN + 1]);

/* spiffe_jwt_jwk returns a new jwt-svid JWK for |pub| (EC P-256 or P-384: kty, crv, x, y; RSA:
 * kty, n, e) with "use": "jwt-svid" and "kid": |kid|. NULL for another key type. */
struct json_t *spiffe_jwt_jwk(const EVP_PKEY *pub, const char *kid);

/* struct spiffe_jwt_request is what a JWT-SVID says. */
struct spiffe_jwt_request {
    const struct spiffe_id *sub; /* with a path */
    const char *const *audience; /* 1..SPIFFE_JWT_MAX_AUDIENCES, each 1..MAX_AUDIENCE bytes */
    size_t num_audience;
    int64_t iat; /* seconds since the epoch */
    int64_t exp; /* > iat */
};

/* spiffe_jwt_sign makes a JWT-SVID signed ES256 by |key| (an EC P-256 private key) with header
 * {"alg":"ES256","kid":|kid|,"typ":"JWT"} and claims {"sub","aud","exp","iat"} ("aud" a string
 * for one audience, else an array). |*out| is NUL-terminated; free it with free(). */
WEFT_MUST_USE int spiffe_jwt_sign(char **out, const struct spiffe_jwt_request *req, EVP_PKEY *key,
                                  const char *kid, struct spiffe_why *why);

/* struct spiffe_jwt_svid is a token that validated. */
struct spiffe_jwt_svid {
    struct spiffe_id sub;
    int64_t exp;
    struct json_t *claims; /* the whole claims object, owned (for ValidateJWTSVID's claims) */
};

/* spiffe_jwt_validate validates |token| for |audience| at |now| against |bundles| (see above).
 * On WEFT_OK |out| holds the token's subject and claims: release it with
 * spiffe_jwt_svid_cleanup. */
WEFT_MUST_USE int spiffe_jwt_validate(struct spiffe_jwt_svid *out, const char *token, size_t len,
                                      const char *audience, const struct spiffe_bundle_set *bundles,
                                      int64_t now, struct spiffe_why *why);

void spiffe_jwt_svid_cleanup(struct spiffe_jwt_svid *s);

/* spiffe_jwt_bundle_json writes the JWKS document FetchJWTBundles carries for |b|: {"keys":
 * [its jwt-svid JWKs only]} (x509-svid and other keys left out). Free |*out| with free(). */
WEFT_MUST_USE int spiffe_jwt_bundle_json(char **out, size_t *out_len,
                                         const struct spiffe_bundle *b);

/* --- JWS building blocks, for other token formats (ca/psat.c validates Kubernetes service
 * account tokens with them) ---------------------------------------------------------------- */

/* struct spiffe_jws is a compact JWS split into its three parts and base64url-decoded. */
struct spiffe_jws {
    const char *signing_input; /* base64url(header) "." base64url(claims), borrowed */
    size_t signing_input_len;
    uint8_t *header, *claims, *sig; /* decoded, owned */
    size_t header_len, claims_len, sig_len;
};

/* spiffe_jws_split reads |token| (|len| bytes, not more than the caller's own limit) as a
 * compact JWS (RFC 7515 §7.1): three non-empty parts of strict unpadded base64url. |what| names
 * the token in |why| ("the JWT-SVID", "the service account token"). On WEFT_OK |out| borrows
 * |token| and owns the decoded parts: release with spiffe_jws_cleanup (also after a failure). */
WEFT_MUST_USE int spiffe_jws_split(struct spiffe_jws *out, const char *token, size_t len,
                                   const char *what, struct spiffe_why *why);
void spiffe_jws_cleanup(struct spiffe_jws *j);

/* spiffe_jwk_import returns the public key of an EC (P-256, P-384) or RSA (2048..16384 bits)
 * JWK, checked (the point on its curve, the RSA key sane), or NULL with |why| set. */
EVP_PKEY *spiffe_jwk_import(const struct json_t *jwk, struct spiffe_why *why);

/* spiffe_jws_alg_suits reports whether |alg| (a JWS alg name the validator accepts: ES256,
 * ES384, RS256/384/512, PS256/384/512) can be verified with |key| (its key type and curve). */
bool spiffe_jws_alg_suits(const char *alg, const EVP_PKEY *key);

/* spiffe_jws_verify checks |j|'s signature with |key| under |alg| (as spiffe_jws_alg_suits
 * accepts; false for any other, or a key that does not suit it). ECDSA signatures are R || S
 * (RFC 7518 §3.4). */
bool spiffe_jws_verify(const struct spiffe_jws *j, const char *alg, EVP_PKEY *key);

#endif
