/* lib/spiffe/bundle.h: trust bundles (SPIFFE_Trust_Domain_and_Bundle.md §4, X509-SVID.md §6;
 * checklist §E and B12 of shared/reference/spiffe.md) and a set of them keyed by trust domain. */
#ifndef WEFT_LIB_SPIFFE_BUNDLE_H
#define WEFT_LIB_SPIFFE_BUNDLE_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/id.h"
#include "lib/spiffe/why.h"

#define SPIFFE_BUNDLE_MAX_AUTHORITIES 64    /* X.509 authorities in one bundle */
#define SPIFFE_BUNDLE_MAX_JWKS 256          /* keys of any kind in one bundle document */
#define SPIFFE_BUNDLE_MAX_JSON (1 << 20)    /* bytes of one bundle document */
#define SPIFFE_BUNDLE_SET_MAX 64            /* trust domains in one set */
#define SPIFFE_BUNDLE_DEFAULT_REFRESH_S 300 /* E3: a low default when the hint is absent */

struct json_t; /* jansson */

/* struct spiffe_bundle is the trust material of one trust domain. */
struct spiffe_bundle {
    struct spiffe_id td;   /* spiffe://<td>, no path */
    STACK_OF(X509) * x509; /* X.509 authorities, owned; never NULL */
    bool has_sequence;
    uint64_t sequence; /* E2; to_json refuses values over INT64_MAX */
    bool has_refresh_hint;
    int64_t refresh_hint_s;    /* E3, seconds */
    struct json_t *other_keys; /* jwt-svid and wit-svid JWKs, kept as given; a JSON array */
};

/* spiffe_bundle_new returns an empty bundle for |td| (a trust domain ID, no path). */
struct spiffe_bundle *spiffe_bundle_new(const struct spiffe_id *td);

/* spiffe_bundle_free releases |b|; NULL does nothing. */
void spiffe_bundle_free(struct spiffe_bundle *b);

/* spiffe_bundle_add_x509 adds a reference to |cert| unless an identical certificate is already
 * there. Returns WEFT_ELIMIT past SPIFFE_BUNDLE_MAX_AUTHORITIES. */
WEFT_MUST_USE int spiffe_bundle_add_x509(struct spiffe_bundle *b, X509 *cert);

/* spiffe_bundle_from_pem parses PEM CERTIFICATE blocks (or concatenated DER) as the X.509
 * authorities of |td|. Empty input is an empty bundle. Bundle certificates are trust anchors:
 * the SVID rules do not apply to them. */
WEFT_MUST_USE int spiffe_bundle_from_pem(struct spiffe_bundle **out, const struct spiffe_id *td,
                                         const uint8_t *data, size_t len, struct spiffe_why *why);

/* spiffe_bundle_to_pem writes the X.509 authorities as PEM, in order. Free |*out| with free(). */
WEFT_MUST_USE int spiffe_bundle_to_pem(char **out, size_t *out_len, const struct spiffe_bundle *b);

/* spiffe_bundle_from_json parses a SPIFFE bundle (a JWK Set) for |td|:
 *  - `keys` is required and may be empty (E1: every key revoked);
 *  - a JWK whose `use` is missing or unknown, or whose `kty` is missing, is ignored (E4);
 *  - an x509-svid JWK without x5c, or with an empty one, is ignored; only the first x5c value
 *    is used (B12); a value that is not a certificate rejects the bundle (E5);
 *  - a jwt-svid JWK without a `kid` rejects the bundle (E6);
 *  - `spiffe_sequence` and `spiffe_refresh_hint`, when present, are non-negative integers;
 *  - duplicate object keys are rejected.
 * jwt-svid and wit-svid JWKs are kept as given, so to_json writes them back. */
WEFT_MUST_USE int spiffe_bundle_from_json(struct spiffe_bundle **out, const struct spiffe_id *td,
                                          const uint8_t *data, size_t len, struct spiffe_why *why);

/* spiffe_bundle_to_json writes |b| as a SPIFFE bundle: one x509-svid JWK per authority (kty and
 * key parameters, use, x5c; no kid), then the kept JWKs, then spiffe_sequence and
 * spiffe_refresh_hint when set. |*out| is NUL-terminated; free it with free(). */
WEFT_MUST_USE int spiffe_bundle_to_json(char **out, size_t *out_len, const struct spiffe_bundle *b);

/* struct spiffe_bundle_set holds at most one bundle per trust domain. */
struct spiffe_bundle_set {
    struct spiffe_bundle *bundles[SPIFFE_BUNDLE_SET_MAX];
    size_t num_bundles;
};

/* spiffe_bundle_set_init / _cleanup: an embedded set; a zeroed set is also a valid empty one. */
void spiffe_bundle_set_init(struct spiffe_bundle_set *set);
void spiffe_bundle_set_cleanup(struct spiffe_bundle_set *set);

/* spiffe_bundle_set_copy_x509 puts into |dst| a bundle per bundle of |src| holding references
 * to the same X.509 authorities (JWT keys left out: TLS never needs them), so the caller may
 * change or free |src| afterwards. */
WEFT_MUST_USE int spiffe_bundle_set_copy_x509(struct spiffe_bundle_set *dst,
                                              const struct spiffe_bundle_set *src);

/* spiffe_bundle_set_put takes ownership of |b|, replacing the bundle of the same trust domain.
 * Returns WEFT_ELIMIT (and frees |b|) when the set is full. */
WEFT_MUST_USE int spiffe_bundle_set_put(struct spiffe_bundle_set *set, struct spiffe_bundle *b);

/* spiffe_bundle_set_get0 returns the bundle of |id|'s trust domain, or NULL. */
const struct spiffe_bundle *spiffe_bundle_set_get0(const struct spiffe_bundle_set *set,
                                                   const struct spiffe_id *id);

/* spiffe_bundle_set_from_json_map parses a federation bundle map (E7):
 * {"trust_domains": {"<td name>": <bundle>, ...}} into |set|, replacing the bundles of the
 * trust domains it names. A trust domain named twice in the document is rejected. On any error
 * |set| is left unchanged. */
WEFT_MUST_USE int spiffe_bundle_set_from_json_map(struct spiffe_bundle_set *set,
                                                  const uint8_t *data, size_t len,
                                                  struct spiffe_why *why);

/* spiffe_bundle_td_of_authorities finds the trust domain the X.509 authorities |certs| name in
 * their SPIFFE ID URI SANs (A15: a CA's ID is its trust domain's). Authorities without an ID
 * name none. Returns WEFT_ENOTFOUND when none names one, WEFT_EINVAL when two differ. */
WEFT_MUST_USE int spiffe_bundle_td_of_authorities(struct spiffe_id *out,
                                                  const STACK_OF(X509) * certs,
                                                  struct spiffe_why *why);

/* spiffe_bundle_decode reads a trust bundle in any encoding weft accepts into |set|:
 *  - a bundle map {"trust_domains": {...}} (E7), each bundle under the trust domain it is filed
 *    under (|td| is not used);
 *  - one SPIFFE bundle (a JSON object), or PEM or DER certificates: the bundle of |td| when it
 *    is given, else of the trust domain its authorities name (spiffe_bundle_td_of_authorities).
 * A byte order mark and white space may come first. Returns WEFT_ENOTFOUND, changing nothing,
 * when |td| is NULL and no authority names a trust domain; WEFT_EINVAL when the authorities
 * name another trust domain than |td|, or two. The bundle replaces |set|'s bundle of its trust
 * domain. */
WEFT_MUST_USE int spiffe_bundle_decode(struct spiffe_bundle_set *set, const uint8_t *data,
                                       size_t len, const struct spiffe_id *td,
                                       struct spiffe_why *why);

#endif
