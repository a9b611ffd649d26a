/* Trust bundles: PEM and the SPIFFE bundle JSON (a JWK Set). Rule letters refer to
 * shared/reference/spiffe.md §E and B12. JSON is parsed by jansson, never by hand. */
#include "lib/spiffe/bundle.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>

#include "lib/base/mem.h"
#include "lib/spiffe/x509svid.h"

static int parse_doc(struct spiffe_bundle *b, json_t *doc, struct spiffe_why *why);

struct spiffe_bundle *spiffe_bundle_new(const struct spiffe_id *td)
{
    struct spiffe_bundle *b = weft_xcalloc(1, sizeof(*b));
    spiffe_id_td_id(&b->td, td);
    b->x509 = sk_X509_new_null();
    b->other_keys = json_array();
    if (b->x509 == NULL || b->other_keys == NULL) {
        abort(); /* out of memory, as weft_xmalloc would */
    }
    return b;
}

void spiffe_bundle_free(struct spiffe_bundle *b)
{
    if (b == NULL) {
        return;
    }
    sk_X509_pop_free(b->x509, X509_free);
    json_decref(b->other_keys);
    free(b);
}

int spiffe_bundle_add_x509(struct spiffe_bundle *b, X509 *cert)
{
    for (size_t i = 0; i < sk_X509_num(b->x509); i++) {
        if (X509_cmp(sk_X509_value(b->x509, i), cert) == 0) {
            return WEFT_OK;
        }
    }
    ENSURE(sk_X509_num(b->x509) < SPIFFE_BUNDLE_MAX_AUTHORITIES, WEFT_ELIMIT);
    ENSURE(sk_X509_push(b->x509, cert), WEFT_ECRYPTO);
    X509_up_ref(cert);
    return WEFT_OK;
}

int spiffe_bundle_from_pem(struct spiffe_bundle **out, const struct spiffe_id *td,
                           const uint8_t *data, size_t len, struct spiffe_why *why)
{
    STACK_OF(X509) *certs = NULL;
    *out = NULL;
    int rc = spiffe_certs_decode(&certs, data, len, SPIFFE_BUNDLE_MAX_AUTHORITIES, 1, why);
    if (rc != WEFT_OK) {
        if (why != NULL) {
            why->rule = rc == WEFT_ELIMIT ? SPIFFE_RULE_BUNDLE_LIMIT : SPIFFE_RULE_BUNDLE_PEM;
        }
        return rc;
    }
    struct spiffe_bundle *b = spiffe_bundle_new(td);
    for (size_t i = 0; i < sk_X509_num(certs); i++) {
        if (spiffe_bundle_add_x509(b, sk_X509_value(certs, i)) != WEFT_OK) {
            sk_X509_pop_free(certs, X509_free);
            spiffe_bundle_free(b);
            return WEFT_ECRYPTO;
        }
    }
    sk_X509_pop_free(certs, X509_free);
    *out = b;
    return WEFT_OK;
}

int spiffe_bundle_to_pem(char **out, size_t *out_len, const struct spiffe_bundle *b)
{
    return spiffe_certs_to_pem(out, out_len, b->x509);
}

/* --- JSON in ------------------------------------------------------------------------------ */

static int get_uint(json_t *doc, const char *key, bool *has, uint64_t *out, enum spiffe_rule rule,
                    struct spiffe_why *why)
{
    json_t *v = json_object_get(doc, key);
    *has = false;
    if (v == NULL) {
        return WEFT_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        spiffe_why_set(why, rule, -1, "\"%s\" must be a non-negative integer", key);
        return WEFT_EINVAL;
    }
    *has = true;
    *out = (uint64_t)json_integer_value(v);
    return WEFT_OK;
}

/* key_matches_kty reports whether the certificate's key is of the JWK key type |kty|. */
static int key_matches_kty(X509 *cert, const char *kty)
{
    EVP_PKEY *pub = X509_get_pubkey(cert);
    int id = pub != NULL ? EVP_PKEY_id(pub) : EVP_PKEY_NONE;
    EVP_PKEY_free(pub);
    return (strcmp(kty, "EC") == 0 && id == EVP_PKEY_EC) ||
           (strcmp(kty, "RSA") == 0 && id == EVP_PKEY_RSA) ||
           (strcmp(kty, "OKP") == 0 && id == EVP_PKEY_ED25519);
}

/* parse_x509_jwk reads one x509-svid JWK (E5, B12) into |b|. */
static int parse_x509_jwk(struct spiffe_bundle *b, json_t *jwk, const char *kty, size_t index,
                          struct spiffe_why *why)
{
    json_t *x5c = json_object_get(jwk, "x5c");
    if (x5c != NULL && !json_is_array(x5c)) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_X5C, -1, "keys[%zu]: \"x5c\" must be an array",
                       index);
        return WEFT_EINVAL;
    }
    if (json_array_size(x5c) == 0) {
        return WEFT_OK; /* B12: ignored */
    }
    json_t *first = json_array_get(x5c, 0); /* B12: only the first value is used */
    if (!json_is_string(first)) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_X5C, -1, "keys[%zu]: x5c[0] must be a string",
                       index);
        return WEFT_EINVAL;
    }
    size_t b64_len = json_string_length(first), der_len;
    uint8_t *der = NULL;
    if (!EVP_DecodedLength(&der_len, b64_len) ||
        (der = weft_xmalloc(der_len == 0 ? 1 : der_len)) == NULL ||
        !EVP_DecodeBase64(der, &der_len, der_len, (const uint8_t *)json_string_value(first),
                          b64_len)) {
        free(der);
        ERR_clear_error();
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_X5C, -1, "keys[%zu]: x5c[0] is not standard base64",
                       index);
        return WEFT_EINVAL;
    }
    const uint8_t *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)der_len);
    int whole = cert != NULL && p == der + der_len;
    free(der);
    ERR_clear_error();
    if (!whole) {
        X509_free(cert);
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_X5C, -1,
                       "keys[%zu]: x5c[0] is not a DER certificate (cannot parse certificate)",
                       index);
        return WEFT_EINVAL;
    }
    if (!key_matches_kty(cert, kty)) {
        X509_free(cert);
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_X5C, -1,
                       "keys[%zu]: kty \"%s\" does not match the certificate's key", index, kty);
        return WEFT_EINVAL;
    }
    int rc = spiffe_bundle_add_x509(b, cert);
    X509_free(cert);
    if (rc == WEFT_ELIMIT) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "more than %d X.509 authorities",
                       SPIFFE_BUNDLE_MAX_AUTHORITIES);
    }
    return rc;
}

static int parse_doc(struct spiffe_bundle *b, json_t *doc, struct spiffe_why *why)
{
    if (!json_is_object(doc)) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_JSON, -1, "a SPIFFE bundle must be a JSON object");
        return WEFT_EINVAL;
    }
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_KEYS, -1,
                       keys == NULL ? "\"keys\" is required" : "\"keys\" must be an array");
        return WEFT_EINVAL;
    }
    if (json_array_size(keys) > SPIFFE_BUNDLE_MAX_JWKS) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "%zu keys, over the limit of %d",
                       json_array_size(keys), SPIFFE_BUNDLE_MAX_JWKS);
        return WEFT_ELIMIT;
    }
    uint64_t refresh = 0;
    TRY(get_uint(doc, "spiffe_sequence", &b->has_sequence, &b->sequence,
                 SPIFFE_RULE_BUNDLE_SEQUENCE, why));
    TRY(get_uint(doc, "spiffe_refresh_hint", &b->has_refresh_hint, &refresh,
                 SPIFFE_RULE_BUNDLE_REFRESH, why));
    b->refresh_hint_s = (int64_t)refresh;

    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        if (!json_is_object(jwk)) {
            spiffe_why_set(why, SPIFFE_RULE_BUNDLE_JSON, -1, "keys[%zu] must be a JSON object", i);
            return WEFT_EINVAL;
        }
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        if (use == NULL || kty == NULL) {
            continue; /* E4: ignored, not fatal */
        }
        if (strcmp(use, "x509-svid") == 0) {
            if (strcmp(kty, "EC") != 0 && strcmp(kty, "RSA") != 0 && strcmp(kty, "OKP") != 0) {
                continue; /* E4: unknown kty */
            }
            TRY(parse_x509_jwk(b, jwk, kty, i, why));
        } else if (strcmp(use, "jwt-svid") == 0 || strcmp(use, "wit-svid") == 0) {
            const char *kid = json_string_value(json_object_get(jwk, "kid"));
            if (strcmp(use, "jwt-svid") == 0 && (kid == NULL || kid[0] == '\0')) {
                spiffe_why_set(why, SPIFFE_RULE_BUNDLE_KID, -1,
                               "keys[%zu]: a jwt-svid key must have a \"kid\" (keyID cannot be "
                               "empty)",
                               i);
                return WEFT_EINVAL;
            }
            if (json_array_append(b->other_keys, jwk) != 0) {
                return WEFT_EINTERNAL;
            }
        }
        /* any other use: E4, ignored */
    }
    return WEFT_OK;
}

static json_t *load_json(const uint8_t *data, size_t len, struct spiffe_why *why)
{
    if (len > SPIFFE_BUNDLE_MAX_JSON) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "bundle JSON is %zu bytes, over %d", len,
                       SPIFFE_BUNDLE_MAX_JSON);
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_JSON, -1,
                       "bundle is not valid JSON: %s (line %d, "
                       "column %d)",
                       err.text, err.line, err.column);
    }
    return doc;
}

int spiffe_bundle_from_json(struct spiffe_bundle **out, const struct spiffe_id *td,
                            const uint8_t *data, size_t len, struct spiffe_why *why)
{
    *out = NULL;
    spiffe_why_clear(why);
    json_t *doc = load_json(data, len, why);
    if (doc == NULL) {
        return len > SPIFFE_BUNDLE_MAX_JSON ? WEFT_ELIMIT : WEFT_EINVAL;
    }
    struct spiffe_bundle *b = spiffe_bundle_new(td);
    int rc = parse_doc(b, doc, why);
    json_decref(doc);
    if (rc != WEFT_OK) {
        spiffe_bundle_free(b);
        return rc;
    }
    *out = b;
    return WEFT_OK;
}

/* --- JSON out ----------------------------------------------------------------------------- */

/* b64url encodes |len| bytes as base64url without padding (RFC 7518 §2). */
static json_t *b64url(const uint8_t *in, size_t len)
{
    size_t n;
    if (!EVP_EncodedLength(&n, len)) {
        return NULL;
    }
    char *s = weft_xmalloc(n);
    n = EVP_EncodeBlock((uint8_t *)s, in, len);
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    }
    json_t *v = json_stringn(s, n);
    free(s);
    return v;
}

static json_t *b64url_bn(const BIGNUM *bn, size_t width)
{
    size_t len = width != 0 ? width : BN_num_bytes(bn);
    uint8_t *buf = weft_xmalloc(len == 0 ? 1 : len);
    json_t *v = BN_bn2bin_padded(buf, len, bn) ? b64url(buf, len) : NULL;
    free(buf);
    return v;
}

/* jwk_key_params adds kty and the public key parameters of |cert| to |jwk|. */
static int jwk_key_params(json_t *jwk, X509 *cert)
{
    EVP_PKEY *pub = X509_get_pubkey(cert);
    int ok = 0;
    if (pub == NULL) {
        return 0;
    }
    if (EVP_PKEY_id(pub) == EVP_PKEY_EC) {
        const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(pub);
        const EC_GROUP *g = EC_KEY_get0_group(ec);
        const char *crv = EC_GROUP_get_curve_name(g) == NID_X9_62_prime256v1 ? "P-256"
                          : EC_GROUP_get_curve_name(g) == NID_secp384r1      ? "P-384"
                          : EC_GROUP_get_curve_name(g) == NID_secp521r1      ? "P-521"
                                                                             : NULL;
        if (crv == NULL) {
            /* RFC 7518 §6.2.1.1 names no other curve: the JWK carries only its type, and x5c
             * carries the key (consumers of x509-svid JWKs read x5c, B12). */
            ok = json_object_set_new(jwk, "kty", json_string("EC")) == 0;
            EVP_PKEY_free(pub);
            return ok;
        }
        BIGNUM *x = BN_new(), *y = BN_new();
        size_t width = (EC_GROUP_get_degree(g) + 7) / 8;
        ok = x != NULL && y != NULL &&
             EC_POINT_get_affine_coordinates_GFp(g, EC_KEY_get0_public_key(ec), x, y, NULL) &&
             json_object_set_new(jwk, "kty", json_string("EC")) == 0 &&
             json_object_set_new(jwk, "crv", json_string(crv)) == 0 &&
             json_object_set_new(jwk, "x", b64url_bn(x, width)) == 0 &&
             json_object_set_new(jwk, "y", b64url_bn(y, width)) == 0;
        BN_free(x);
        BN_free(y);
    } else if (EVP_PKEY_id(pub) == EVP_PKEY_RSA) {
        const RSA *rsa = EVP_PKEY_get0_RSA(pub);
        ok = json_object_set_new(jwk, "kty", json_string("RSA")) == 0 &&
             json_object_set_new(jwk, "n", b64url_bn(RSA_get0_n(rsa), 0)) == 0 &&
             json_object_set_new(jwk, "e", b64url_bn(RSA_get0_e(rsa), 0)) == 0;
    } else if (EVP_PKEY_id(pub) == EVP_PKEY_ED25519) {
        uint8_t raw[32];
        size_t raw_len = sizeof(raw);
        ok = EVP_PKEY_get_raw_public_key(pub, raw, &raw_len) &&
             json_object_set_new(jwk, "kty", json_string("OKP")) == 0 &&
             json_object_set_new(jwk, "crv", json_string("Ed25519")) == 0 &&
             json_object_set_new(jwk, "x", b64url(raw, raw_len)) == 0;
    }
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return ok;
}

static json_t *x509_jwk(X509 *cert)
{
    uint8_t *der = NULL;
    int der_len = i2d_X509(cert, &der);
    size_t b64_len;
    json_t *jwk = json_object();
    if (der_len <= 0 || jwk == NULL || !EVP_EncodedLength(&b64_len, (size_t)der_len)) {
        OPENSSL_free(der);
        json_decref(jwk);
        return NULL;
    }
    char *b64 = weft_xmalloc(b64_len);
    EVP_EncodeBlock((uint8_t *)b64, der, (size_t)der_len); /* x5c: standard base64 (E5) */
    OPENSSL_free(der);
    json_t *x5c = json_array();
    int ok = x5c != NULL && json_array_append_new(x5c, json_string(b64)) == 0 &&
             jwk_key_params(jwk, cert) &&
             json_object_set_new(jwk, "use", json_string("x509-svid")) == 0 &&
             json_object_set_new(jwk, "x5c", x5c) == 0;
    free(b64);
    if (!ok) {
        json_decref(jwk);
        return NULL;
    }
    return jwk;
}

int spiffe_bundle_to_json(char **out, size_t *out_len, const struct spiffe_bundle *b)
{
    int rc = WEFT_ECRYPTO;
    json_t *doc = json_object(), *keys = json_array();
    if (doc == NULL || keys == NULL || json_object_set(doc, "keys", keys) != 0) {
        goto out;
    }
    for (size_t i = 0; i < sk_X509_num(b->x509); i++) {
        json_t *jwk = x509_jwk(sk_X509_value(b->x509, i));
        if (jwk == NULL || json_array_append_new(keys, jwk) != 0) {
            goto out;
        }
    }
    if (b->has_sequence && b->sequence > INT64_MAX) {
        rc = WEFT_ELIMIT; /* JSON integers here are signed 64-bit */
        goto out;
    }
    if (json_array_extend(keys, b->other_keys) != 0 ||
        (b->has_sequence &&
         json_object_set_new(doc, "spiffe_sequence", json_integer((json_int_t)b->sequence)) != 0) ||
        (b->has_refresh_hint &&
         json_object_set_new(doc, "spiffe_refresh_hint", json_integer(b->refresh_hint_s)) != 0)) {
        goto out;
    }
    char *s = json_dumps(doc, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    if (s == NULL) {
        goto out;
    }
    *out_len = strlen(s);
    *out = weft_xstrndup(s, *out_len);
    free(s);
    rc = WEFT_OK;
out:
    json_decref(keys);
    json_decref(doc);
    return rc;
}

/* --- sets --------------------------------------------------------------------------------- */

void spiffe_bundle_set_init(struct spiffe_bundle_set *set) { memset(set, 0, sizeof(*set)); }

void spiffe_bundle_set_cleanup(struct spiffe_bundle_set *set)
{
    for (size_t i = 0; i < set->num_bundles; i++) {
        spiffe_bundle_free(set->bundles[i]);
    }
    memset(set, 0, sizeof(*set));
}

int spiffe_bundle_set_put(struct spiffe_bundle_set *set, struct spiffe_bundle *b)
{
    for (size_t i = 0; i < set->num_bundles; i++) {
        if (spiffe_id_equal(&set->bundles[i]->td, &b->td)) {
            spiffe_bundle_free(set->bundles[i]);
            set->bundles[i] = b;
            return WEFT_OK;
        }
    }
    if (set->num_bundles >= SPIFFE_BUNDLE_SET_MAX) {
        spiffe_bundle_free(b);
        return WEFT_ELIMIT;
    }
    set->bundles[set->num_bundles++] = b;
    return WEFT_OK;
}

const struct spiffe_bundle *spiffe_bundle_set_get0(const struct spiffe_bundle_set *set,
                                                   const struct spiffe_id *id)
{
    if (set == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < set->num_bundles; i++) {
        if (spiffe_id_same_td(&set->bundles[i]->td, id)) {
            return set->bundles[i];
        }
    }
    return NULL;
}

/* map_from_doc reads a parsed bundle map (E7) into |set|. Duplicate JSON names were refused by
 * load_json. */
static int map_from_doc(struct spiffe_bundle_set *set, json_t *doc, struct spiffe_why *why)
{
    /* Parse everything into a new set first: on any error |set| is left exactly as it was. */
    struct spiffe_bundle_set parsed;
    spiffe_bundle_set_init(&parsed);
    int rc = WEFT_EINVAL;
    json_t *tds = json_object_get(doc, "trust_domains");
    if (!json_is_object(tds)) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_JSON, -1,
                       "a bundle map needs a \"trust_domains\" object");
        goto out;
    }
    const char *name;
    json_t *inner;
    json_object_foreach(tds, name, inner)
    {
        struct spiffe_id td;
        struct spiffe_why td_why;
        if (spiffe_td_parse(&td, name, strlen(name), &td_why) != WEFT_OK) {
            spiffe_why_set(why, td_why.rule, -1, "trust_domains[\"%.64s\"]: %s", name, td_why.msg);
            rc = WEFT_EINVAL;
            goto out;
        }
        if (spiffe_bundle_set_get0(&parsed, &td) != NULL) {
            /* "a.org" and "spiffe://a.org" name the same trust domain */
            spiffe_why_set(why, SPIFFE_RULE_BUNDLE_DUPLICATE_TD, -1,
                           "trust domain \"%.64s\" appears twice", name);
            rc = WEFT_EINVAL;
            goto out;
        }
        struct spiffe_bundle *b = spiffe_bundle_new(&td);
        if ((rc = parse_doc(b, inner, why)) != WEFT_OK) {
            spiffe_bundle_free(b);
            if (why != NULL) {
                char inner_msg[sizeof(why->msg)];
                memcpy(inner_msg, why->msg, sizeof(inner_msg));
                spiffe_why_set(why, why->rule, -1, "trust_domains[\"%.64s\"]: %s", name, inner_msg);
            }
            goto out;
        }
        if ((rc = spiffe_bundle_set_put(&parsed, b)) != WEFT_OK) {
            spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "more than %d trust domains",
                           SPIFFE_BUNDLE_SET_MAX);
            goto out;
        }
    }
    /* Merging can still overflow |set|: count first, then move the bundles over. */
    size_t num_new = 0;
    for (size_t i = 0; i < parsed.num_bundles; i++) {
        num_new += spiffe_bundle_set_get0(set, &parsed.bundles[i]->td) == NULL;
    }
    if (set->num_bundles + num_new > SPIFFE_BUNDLE_SET_MAX) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "more than %d trust domains",
                       SPIFFE_BUNDLE_SET_MAX);
        rc = WEFT_ELIMIT;
        goto out;
    }
    for (size_t i = 0; i < parsed.num_bundles; i++) {
        if (spiffe_bundle_set_put(set, parsed.bundles[i]) != WEFT_OK) {
            abort(); /* counted above: cannot happen */
        }
        parsed.bundles[i] = NULL;
    }
    parsed.num_bundles = 0;
    rc = WEFT_OK;
out:
    spiffe_bundle_set_cleanup(&parsed);
    return rc;
}

int spiffe_bundle_set_from_json_map(struct spiffe_bundle_set *set, const uint8_t *data, size_t len,
                                    struct spiffe_why *why)
{
    spiffe_why_clear(why);
    json_t *doc = load_json(data, len, why);
    if (doc == NULL) {
        return len > SPIFFE_BUNDLE_MAX_JSON ? WEFT_ELIMIT : WEFT_EINVAL;
    }
    int rc = map_from_doc(set, doc, why);
    json_decref(doc);
    return rc;
}

int spiffe_bundle_td_of_authorities(struct spiffe_id *out, const STACK_OF(X509) * certs,
                                    struct spiffe_why *why)
{
    int found = 0;
    for (size_t i = 0; i < sk_X509_num(certs); i++) {
        struct spiffe_id id, td;
        if (spiffe_cert_uri_id(&id, sk_X509_value(certs, i), NULL) != WEFT_OK) {
            continue; /* a CA without a SPIFFE ID names no trust domain (B5 allows it) */
        }
        spiffe_id_td_id(&td, &id);
        if (found && !spiffe_id_equal(&td, out)) {
            spiffe_why_set(why, SPIFFE_RULE_BUNDLE_MIXED_TD, (int)i,
                           "the bundle's authorities name two trust domains: %s and %s", out->str,
                           td.str);
            return WEFT_EINVAL;
        }
        *out = td;
        found = 1;
    }
    return found ? WEFT_OK : WEFT_ENOTFOUND;
}

int spiffe_bundle_decode(struct spiffe_bundle_set *set, const uint8_t *data, size_t len,
                         const struct spiffe_id *td, struct spiffe_why *why)
{
    spiffe_why_clear(why);
    /* A UTF-8 byte order mark and white space may precede either encoding. */
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
        data += 3;
        len -= 3;
    }
    size_t skip = 0;
    while (skip < len &&
           (data[skip] == ' ' || data[skip] == '\t' || data[skip] == '\r' || data[skip] == '\n')) {
        skip++;
    }
    struct spiffe_id unnamed; /* parse under this name until the authorities say theirs */
    if (td == NULL && spiffe_td_parse(&unnamed, "unnamed.invalid", 15, NULL) != WEFT_OK) {
        return WEFT_EINTERNAL;
    }
    const struct spiffe_id *parse_td = td != NULL ? td : &unnamed;
    struct spiffe_bundle *b = NULL;
    int rc;
    if (skip < len && data[skip] == '{') {
        json_t *doc = load_json(data, len, why);
        if (doc == NULL) {
            return len > SPIFFE_BUNDLE_MAX_JSON ? WEFT_ELIMIT : WEFT_EINVAL;
        }
        if (json_object_get(doc, "trust_domains") != NULL) {
            rc = map_from_doc(set, doc, why); /* the map names its trust domains itself */
            json_decref(doc);
            return rc;
        }
        b = spiffe_bundle_new(parse_td);
        rc = parse_doc(b, doc, why);
        json_decref(doc);
    } else {
        rc = spiffe_bundle_from_pem(&b, parse_td, data, len, why);
    }
    if (rc != WEFT_OK) {
        spiffe_bundle_free(b);
        return rc;
    }
    struct spiffe_id named;
    rc = spiffe_bundle_td_of_authorities(&named, b->x509, why);
    if (rc == WEFT_OK && td != NULL && !spiffe_id_equal(&named, td)) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_MIXED_TD, -1,
                       "the bundle was given for %s but its authorities name %s", td->str,
                       named.str);
        rc = WEFT_EINVAL;
    } else if (rc == WEFT_ENOTFOUND && td != NULL) {
        rc = WEFT_OK; /* the caller said which trust domain it is for */
    } else if (rc == WEFT_ENOTFOUND) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_MIXED_TD, -1,
                       "the bundle's authorities carry no SPIFFE ID, so it does not say which "
                       "trust domain it is for");
    } else if (rc == WEFT_OK) {
        b->td = named;
    }
    if (rc != WEFT_OK) {
        spiffe_bundle_free(b);
        return rc;
    }
    if (spiffe_bundle_set_put(set, b) != WEFT_OK) {
        spiffe_why_set(why, SPIFFE_RULE_BUNDLE_LIMIT, -1, "more than %d trust domains",
                       SPIFFE_BUNDLE_SET_MAX);
        return WEFT_ELIMIT;
    }
    return WEFT_OK;
}

int spiffe_bundle_set_copy_x509(struct spiffe_bundle_set *dst, const struct spiffe_bundle_set *src)
{
    for (size_t i = 0; i < src->num_bundles; i++) {
        const struct spiffe_bundle *b = src->bundles[i];
        struct spiffe_bundle *copy = spiffe_bundle_new(&b->td);
        for (size_t j = 0; j < sk_X509_num(b->x509); j++) {
            int rc = spiffe_bundle_add_x509(copy, sk_X509_value(b->x509, j));
            if (rc != WEFT_OK) {
                spiffe_bundle_free(copy);
                return rc;
            }
        }
        TRY(spiffe_bundle_set_put(dst, copy)); /* frees |copy| on failure */
    }
    return WEFT_OK;
}
