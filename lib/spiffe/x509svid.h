/* lib/spiffe/x509svid.h: X509-SVID checks (X509-SVID.md; checklist §B of
 * shared/reference/spiffe.md), certificate and key decoding, and minting.
 *
 * A chain is a STACK_OF(X509) with the leaf first, then the intermediates the SVID carries.
 * Nothing here reads the clock: every time-dependent check takes the time to check at. */
#ifndef WEFT_LIB_SPIFFE_X509SVID_H
#define WEFT_LIB_SPIFFE_X509SVID_H

#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/id.h"
#include "lib/spiffe/why.h"

struct spiffe_bundle_set;

#define SPIFFE_MAX_CHAIN 16            /* certificates in one SVID chain */
#define SPIFFE_MAX_PEM_INPUT (1 << 20) /* bytes of PEM/DER we agree to decode at once */

/* --- decoding ---------------------------------------------------------------------------- */

/* spiffe_certs_decode reads certificates from |data|: PEM (every CERTIFICATE block, in order;
 * other block types such as PRIVATE KEY are skipped) or, when the input holds no PEM at all,
 * concatenated DER (the Workload API's encoding). At most |max_certs| are accepted. On success
 * |*out| is a new stack the caller frees with sk_X509_pop_free (it may be empty when
 * |allow_empty|). On failure |*out| is NULL and |why| says what could not be read. */
WEFT_MUST_USE int spiffe_certs_decode(STACK_OF(X509) * *out, const uint8_t *data, size_t len,
                                      size_t max_certs, int allow_empty, struct spiffe_why *why);

/* spiffe_key_decode reads one unencrypted PKCS#8 private key: the first PRIVATE KEY block of PEM
 * input (other blocks are skipped), or DER PrivateKeyInfo. The caller owns |*out|. */
WEFT_MUST_USE int spiffe_key_decode(EVP_PKEY **out, const uint8_t *data, size_t len,
                                    struct spiffe_why *why);

/* spiffe_certs_to_pem / spiffe_key_to_pem encode into a new NUL-terminated buffer the caller
 * frees with free(). The key is written as PKCS#8 "PRIVATE KEY". */
WEFT_MUST_USE int spiffe_certs_to_pem(char **out, size_t *out_len, const STACK_OF(X509) * certs);
WEFT_MUST_USE int spiffe_key_to_pem(char **out, size_t *out_len, const EVP_PKEY *key);

/* spiffe_certs_to_der writes the certificates' DER back to back (Workload API x509_svid and
 * bundle fields). The caller frees |*out| with free(). */
WEFT_MUST_USE int spiffe_certs_to_der(uint8_t **out, size_t *out_len, const STACK_OF(X509) * certs);

/* --- checks ------------------------------------------------------------------------------- */

/* spiffe_x509svid_check applies the per-certificate SPIFFE rules, in go-spiffe's order (B11):
 * the leaf (B1-B4, B6, B7, B10) and then each further certificate as a signing certificate
 * (B5, B6). It checks neither time nor signatures. On success the leaf's ID is in |out_id|. */
WEFT_MUST_USE int spiffe_x509svid_check(struct spiffe_id *out_id, const STACK_OF(X509) * chain,
                                        struct spiffe_why *why);

/* spiffe_x509svid_check_time checks that every certificate of |chain| is valid at |at|
 * (notBefore <= at <= notAfter). */
WEFT_MUST_USE int spiffe_x509svid_check_time(const STACK_OF(X509) * chain, int64_t at,
                                             struct spiffe_why *why);

/* spiffe_x509svid_check_key checks that |key| is the private key of |leaf|. */
WEFT_MUST_USE int spiffe_x509svid_check_key(const X509 *leaf, const EVP_PKEY *key,
                                            struct spiffe_why *why);

/* spiffe_x509svid_verify authenticates an SVID for use: spiffe_x509svid_check, then RFC 5280
 * path validation at time |at| from the leaf through the chain's intermediates to an authority
 * in the bundle of the leaf's own trust domain (B9). A bundle for another trust domain never
 * helps. On success |out_id| holds the peer ID. */
WEFT_MUST_USE int spiffe_x509svid_verify(struct spiffe_id *out_id, const STACK_OF(X509) * chain,
                                         const struct spiffe_bundle_set *bundles, int64_t at,
                                         struct spiffe_why *why);

/* spiffe_cert_uri_id reads the single SPIFFE ID URI SAN of |cert| into |out|. Returns
 * WEFT_ENOTFOUND if the certificate has no URI SAN, WEFT_EINVAL for several or a bad ID. */
WEFT_MUST_USE int spiffe_cert_uri_id(struct spiffe_id *out, const X509 *cert,
                                     struct spiffe_why *why);

/* spiffe_asn1_time_to_unix converts an ASN1_TIME to seconds since the epoch. */
WEFT_MUST_USE int spiffe_asn1_time_to_unix(int64_t *out, const ASN1_TIME *t);

/* spiffe_cert_validity reads |cert|'s notBefore and notAfter as seconds since the epoch. */
WEFT_MUST_USE int spiffe_cert_validity(int64_t *out_not_before, int64_t *out_not_after,
                                       const X509 *cert);

/* --- minting ------------------------------------------------------------------------------ */

enum spiffe_key_type {
    SPIFFE_KEY_EC_P256 = 0, /* the default everywhere (DESIGN.md §2) */
    SPIFFE_KEY_ED25519,
};

/* spiffe_key_type_parse reads a --key-type value, "ec-p256" or "ed25519"; WEFT_EINVAL for
 * anything else. */
WEFT_MUST_USE int spiffe_key_type_parse(enum spiffe_key_type *out, const char *s);

/* spiffe_key_generate returns a new private key of |type|, or NULL if BoringSSL fails. */
EVP_PKEY *spiffe_key_generate(enum spiffe_key_type type);

#define SPIFFE_SERIAL_MAX_LEN 20 /* RFC 5280 §4.1.2.2 */
#define SPIFFE_SERIAL_HEX_LEN (2 * SPIFFE_SERIAL_MAX_LEN + 1)

/* spiffe_serial_hex writes |cert|'s serial in lowercase hex, the form deny lists use ("" for
 * NULL; a serial over SPIFFE_SERIAL_MAX_LEN bytes is cut there). */
void spiffe_serial_hex(char out[SPIFFE_SERIAL_HEX_LEN], const X509 *cert);

/* spiffe_chain_not_after reads the earliest notAfter of |chain|'s certificates: when the chain
 * stops vouching for its leaf. */
WEFT_MUST_USE int spiffe_chain_not_after(int64_t *out, const STACK_OF(X509) * chain);

/* struct spiffe_mint_params: when the certificate starts, how long it lives, its serial.
 * A zero |serial_len| asks for 16 random bytes. */
struct spiffe_mint_params {
    int64_t not_before;
    int64_t ttl_s;
    uint8_t serial[SPIFFE_SERIAL_MAX_LEN];
    size_t serial_len;
};

/* spiffe_mint_root makes a self-signed root CA for the trust domain |td| (an ID without a path):
 * cA=true, key usage keyCertSign+cRLSign (critical), URI SAN spiffe://<td> (A15, B5). */
WEFT_MUST_USE int spiffe_mint_root(X509 **out, EVP_PKEY *key, const struct spiffe_id *td,
                                   const struct spiffe_mint_params *p, struct spiffe_why *why);

/* spiffe_mint_signing_ca makes an intermediate CA for |td| holding |pub|, signed by |issuer|.
 * Its notAfter never passes the issuer's. */
WEFT_MUST_USE int spiffe_mint_signing_ca(X509 **out, const X509 *issuer, EVP_PKEY *issuer_key,
                                         EVP_PKEY *pub, const struct spiffe_id *td,
                                         const struct spiffe_mint_params *p,
                                         struct spiffe_why *why);

/* spiffe_mint_leaf makes a leaf X509-SVID for |id| (non-root path, the issuer's trust domain)
 * holding |pub|: empty subject with a critical URI SAN (B3), cA=false, key usage
 * digitalSignature (critical), EKU serverAuth+clientAuth. Its notAfter never passes the
 * issuer's. */
WEFT_MUST_USE int spiffe_mint_leaf(X509 **out, const X509 *issuer, EVP_PKEY *issuer_key,
                                   EVP_PKEY *pub, const struct spiffe_id *id,
                                   const struct spiffe_mint_params *p, struct spiffe_why *why);

/* spiffe_csr_decode reads a PKCS#10 request (PEM "CERTIFICATE REQUEST" or DER), checks its
 * self-signature and returns its public key in |*out_pub|. Everything else in the request is
 * ignored: the issuer decides the identity. */
WEFT_MUST_USE int spiffe_csr_decode(EVP_PKEY **out_pub, const uint8_t *data, size_t len,
                                    struct spiffe_why *why);

#endif
