/* JWT-SVIDs: compact JWS tokens that weft's CA signs ES256, and that any verifier validates
 * against the jwt-svid JWKs of a bundle set. Rule names refer to shared/reference/spiffe.md
 * (§D9, §E4-E8); JWT-SVID.md and RFC 7515/7518/7519 are cited where they settle a detail. JSON is
 * parsed and written by jansson, never by hand; base64url is BoringSSL's base64 with the alphabet
 * translated.
 *
 * Every refusal of spiffe_jwt_validate returns WEFT_EINVAL, except a token over
 * SPIFFE_JWT_MAX_TOKEN (WEFT_ELIMIT); |why| names the rule. */
#include "lib/spiffe/jwt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "lib/base/mem.h"

#define JWK_MAX_PARAM 4096 /* base64url characters of one JWK key parameter (n of 16384 bits) */
#define RSA_MIN_BITS 2048  /* NIST SP 800-131A; go-jose refuses less too */
#define RSA_MAX_BITS 16384 /* BoringSSL's own limit, checked here so the refusal names it */
#define RSA_MAX_E_BITS 33  /* BoringSSL's limit on a public exponent */
#define SHOWN 64           /* bytes of a token's string shown in a message */
#define ES256_SIG_LEN 64   /* RFC 7518 §3.4: R || S, 32 bytes each */

/* struct jws_alg is one JWS algorithm the validator accepts (RFC 7518 §3.1). */
struct jws_alg {
    const char *name;
    int pkey_type; /* EVP_PKEY_EC or EVP_PKEY_RSA */
    int curve;     /* for EC: the one curve the algorithm names */
    const EVP_MD *(*md)(void);
    bool pss;
};

static const struct jws_alg algs[] = {
    {"ES256", EVP_PKEY_EC, NID_X9_62_prime256v1, EVP_sha256, false},
    {"ES384", EVP_PKEY_EC, NID_secp384r1, EVP_sha384, false},
    {"RS256", EVP_PKEY_RSA, NID_undef, EVP_sha256, false},
    {"RS384", EVP_PKEY_RSA, NID_undef, EVP_sha384, false},
    {"RS512", EVP_PKEY_RSA, NID_undef, EVP_sha512, false},
    {"PS256", EVP_PKEY_RSA, NID_undef, EVP_sha256, true},
    {"PS384", EVP_PKEY_RSA, NID_undef, EVP_sha384, true},
    {"PS512", EVP_PKEY_RSA, NID_undef, EVP_sha512, true},
};

#define jws spiffe_jws /* the public struct (jwt.h) */

static char *b64url_encode(size_t *out_len, const uint8_t *in, size_t len);
static bool b64url_decode(uint8_t **out, size_t *out_len, const char *in, size_t len);
static const char *shown(char buf[SHOWN + 1], const char *s, size_t len);
static int check_header(const struct jws_alg **out_alg, const json_t **out_kid, json_t *header,
                        struct spiffe_why *why);
static int check_claims(struct spiffe_jwt_svid *out, json_t *claims, const char *audience,
                        int64_t now, struct spiffe_why *why);
static int find_key(EVP_PKEY **out, const struct spiffe_bundle_set *bundles,
                    const struct spiffe_id *sub, const json_t *kid, const struct jws_alg *alg,
                    struct spiffe_why *why);
static bool jws_verify(const struct jws_alg *alg, EVP_PKEY *key, const struct jws *j);

/* --- base64url (RFC 7515 §2) -------------------------------------------------------------- */

/* b64url_encode returns |in| as unpadded base64url in a new NUL-terminated string. */
static char *b64url_encode(size_t *out_len, const uint8_t *in, size_t len)
{
    size_t n;
    if (!EVP_EncodedLength(&n, len)) {
        abort(); /* every caller's |len| is bounded far below an overflow */
    }
    char *s = weft_xmalloc(n);
    n = EVP_EncodeBlock((uint8_t *)s, in, len);
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    }
    s[n] = '\0';
    *out_len = n;
    return s;
}

static bool is_b64url(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* b64url_decode decodes strict unpadded base64url: no '=', nothing outside the alphabet, and no
 * set bits after the last whole byte, so that a value has exactly one encoding (a signature
 * cannot be altered into another string that still verifies). |*out| is owned by the caller. */
static bool b64url_decode(uint8_t **out, size_t *out_len, const char *in, size_t len)
{
    *out = NULL;
    *out_len = 0;
    if (len % 4 == 1) {
        return false; /* 6 bits cannot end a byte */
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_b64url((uint8_t)in[i])) {
            return false;
        }
    }
    /* EVP_DecodeBase64 reads standard, padded base64: translate and pad. */
    size_t padded = len + (4 - len % 4) % 4, max;
    uint8_t *std = weft_xmalloc(padded + 1);
    for (size_t i = 0; i < padded; i++) {
        std[i] = i >= len ? '=' : in[i] == '-' ? '+' : in[i] == '_' ? '/' : (uint8_t)in[i];
    }
    uint8_t *buf = NULL;
    bool ok = EVP_DecodedLength(&max, padded) && (buf = weft_xmalloc(max + 1)) != NULL &&
              EVP_DecodeBase64(buf, out_len, max, std, padded);
    free(std);
    ERR_clear_error();
    if (ok) {
        /* EVP_DecodeBase64 ignores the unused low bits of the last character: re-encoding
         * tells whether they were zero. */
        size_t again_len;
        char *again = b64url_encode(&again_len, buf, *out_len);
        ok = again_len == len && memcmp(again, in, len) == 0;
        free(again);
    }
    if (!ok) {
        free(buf);
        *out_len = 0;
        return false;
    }
    *out = buf;
    return true;
}

/* shown copies at most SHOWN bytes of a token's string for a message, with anything outside
 * printable ASCII replaced by '?': a token must not write control characters into a log. */
static const char *shown(char buf[SHOWN + 1], const char *s, size_t len)
{
    size_t n = len < SHOWN ? len : SHOWN;
    for (size_t i = 0; i < n; i++) {
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    }
    buf[n] = '\0';
    return buf;
}

/* --- keys and JWKs ------------------------------------------------------------------------ */

int spiffe_jwt_kid(const EVP_PKEY *pub, char kid[SPIFFE_JWT_KID_LEN + 1])
{
    CBB cbb;
    CBB_zero(&cbb); /* CBB_cleanup below may run before CBB_init */
    uint8_t *der = NULL;
    size_t der_len;
    kid[0] = '\0';
    if (pub == NULL || !CBB_init(&cbb, 512) || !EVP_marshal_public_key(&cbb, pub) ||
        !CBB_finish(&cbb, &der, &der_len)) {
        CBB_cleanup(&cbb);
        ERR_clear_error();
        return WEFT_ECRYPTO;
    }
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(der, der_len, digest);
    OPENSSL_free(der);
    size_t n;
    char *s = b64url_encode(&n, digest, sizeof(digest));
    if (n != SPIFFE_JWT_KID_LEN) {
        abort(); /* 32 bytes are always 43 characters */
    }
    memcpy(kid, s, n + 1);
    free(s);
    return WEFT_OK;
}

/* set_b64url sets |name| in |jwk| to |len| bytes of base64url. */
static bool set_b64url(json_t *jwk, const char *name, const uint8_t *in, size_t len)
{
    size_t n;
    char *s = b64url_encode(&n, in, len);
    bool ok = json_object_set_new(jwk, name, json_stringn(s, n)) == 0;
    free(s);
    return ok;
}

/* set_bn sets |name| in |jwk| to |bn| as |width| big-endian bytes (its minimal size when 0). */
static bool set_bn(json_t *jwk, const char *name, const BIGNUM *bn, size_t width)
{
    size_t len = width != 0 ? width : BN_num_bytes(bn);
    uint8_t *buf = weft_xmalloc(len == 0 ? 1 : len);
    bool ok = BN_bn2bin_padded(buf, len, bn) && set_b64url(jwk, name, buf, len);
    free(buf);
    return ok;
}

/* jwk_ec adds crv, x and y (RFC 7518 §6.2.1: each coordinate the full size of the field). */
static bool jwk_ec(json_t *jwk, const EC_KEY *ec)
{
    const EC_GROUP *g = EC_KEY_get0_group(ec);
    const char *crv = EC_GROUP_get_curve_name(g) == NID_X9_62_prime256v1 ? "P-256"
                      : EC_GROUP_get_curve_name(g) == NID_secp384r1      ? "P-384"
                                                                         : NULL;
    if (crv == NULL || EC_KEY_get0_public_key(ec) == NULL) {
        return false;
    }
    size_t width = (EC_GROUP_get_degree(g) + 7) / 8;
    BIGNUM *x = BN_new(), *y = BN_new();
    bool ok = x != NULL && y != NULL &&
              EC_POINT_get_affine_coordinates_GFp(g, EC_KEY_get0_public_key(ec), x, y, NULL) &&
              json_object_set_new(jwk, "kty", json_string("EC")) == 0 &&
              json_object_set_new(jwk, "crv", json_string(crv)) == 0 &&
              set_bn(jwk, "x", x, width) && set_bn(jwk, "y", y, width);
    BN_free(x);
    BN_free(y);
    return ok;
}

json_t *spiffe_jwt_jwk(const EVP_PKEY *pub, const char *kid)
{
    if (pub == NULL || kid == NULL || kid[0] == '\0') {
        return NULL;
    }
    json_t *jwk = json_object();
    bool ok = jwk != NULL;
    if (ok && EVP_PKEY_id(pub) == EVP_PKEY_EC) {
        ok = jwk_ec(jwk, EVP_PKEY_get0_EC_KEY(pub));
    } else if (ok && EVP_PKEY_id(pub) == EVP_PKEY_RSA) {
        const RSA *rsa = EVP_PKEY_get0_RSA(pub);
        ok = json_object_set_new(jwk, "kty", json_string("RSA")) == 0 &&
             set_bn(jwk, "n", RSA_get0_n(rsa), 0) && set_bn(jwk, "e", RSA_get0_e(rsa), 0);
    } else {
        ok = false;
    }
    /* json_string refuses a kid that is not UTF-8 */
    ok = ok && json_object_set_new(jwk, "use", json_string("jwt-svid")) == 0 &&
         json_object_set_new(jwk, "kid", json_string(kid)) == 0;
    ERR_clear_error();
    if (!ok) {
        json_decref(jwk);
        return NULL;
    }
    return jwk;
}

/* jwk_param decodes the base64url key parameter |name| of |jwk|. */
static bool jwk_param(uint8_t **out, size_t *out_len, const json_t *jwk, const char *name)
{
    const json_t *v = json_object_get(jwk, name);
    *out = NULL;
    *out_len = 0;
    return json_is_string(v) && json_string_length(v) <= JWK_MAX_PARAM &&
           b64url_decode(out, out_len, json_string_value(v), json_string_length(v));
}

/* import_ec reads an EC JWK: crv P-256 or P-384, x and y the full field size, the point on the
 * curve (EC_KEY_set_public_key_affine_coordinates checks it, and that each is below p). */
static EVP_PKEY *import_ec(const json_t *jwk, struct spiffe_why *why)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    int nid = NID_undef;
    size_t width = 0;
    if (crv != NULL && strcmp(crv, "P-256") == 0) {
        nid = NID_X9_62_prime256v1;
        width = 32;
    } else if (crv != NULL && strcmp(crv, "P-384") == 0) {
        nid = NID_secp384r1;
        width = 48;
    } else {
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "the EC JWK's crv must be P-256 or P-384");
        return NULL;
    }
    uint8_t *x = NULL, *y = NULL;
    size_t x_len, y_len;
    if (!jwk_param(&x, &x_len, jwk, "x") || !jwk_param(&y, &y_len, jwk, "y") || x_len != width ||
        y_len != width) {
        free(x);
        free(y);
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1,
                       "the %s JWK's x and y must be base64url of %zu bytes each", crv, width);
        return NULL;
    }
    EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
    BIGNUM *bx = BN_bin2bn(x, width, NULL), *by = BN_bin2bn(y, width, NULL);
    EVP_PKEY *pkey = EVP_PKEY_new();
    free(x);
    free(y);
    bool ok = ec != NULL && bx != NULL && by != NULL && pkey != NULL &&
              EC_KEY_set_public_key_affine_coordinates(ec, bx, by) &&
              EVP_PKEY_assign_EC_KEY(pkey, ec);
    BN_free(bx);
    BN_free(by);
    ERR_clear_error();
    if (!ok) {
        EC_KEY_free(ec);
        EVP_PKEY_free(pkey);
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "the %s JWK's point is not on the curve", crv);
        return NULL;
    }
    return pkey;
}

/* import_rsa reads an RSA JWK: n of RSA_MIN_BITS..RSA_MAX_BITS, e odd, 3..RSA_MAX_E_BITS bits. */
static EVP_PKEY *import_rsa(const json_t *jwk, struct spiffe_why *why)
{
    uint8_t *n_bytes = NULL, *e_bytes = NULL;
    size_t n_len, e_len;
    BIGNUM *n = NULL, *e = NULL;
    RSA *rsa = NULL;
    EVP_PKEY *pkey = NULL;
    if (!jwk_param(&n_bytes, &n_len, jwk, "n") || !jwk_param(&e_bytes, &e_len, jwk, "e") ||
        (n = BN_bin2bn(n_bytes, n_len, NULL)) == NULL ||
        (e = BN_bin2bn(e_bytes, e_len, NULL)) == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "the RSA JWK's n and e must be base64url");
        goto out;
    }
    if (BN_num_bits(n) < RSA_MIN_BITS || BN_num_bits(n) > RSA_MAX_BITS) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "the RSA JWK's key is %u bits, not %d..%d",
                       BN_num_bits(n), RSA_MIN_BITS, RSA_MAX_BITS);
        goto out;
    }
    if (!BN_is_odd(e) || BN_num_bits(e) < 2 || BN_num_bits(e) > RSA_MAX_E_BITS) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "the RSA JWK's public exponent is unusable");
        goto out;
    }
    if ((rsa = RSA_new()) == NULL || !RSA_set0_key(rsa, n, e, NULL)) {
        goto out;
    }
    n = e = NULL; /* owned by |rsa| */
    if (!RSA_check_key(rsa) || (pkey = EVP_PKEY_new()) == NULL || !EVP_PKEY_assign_RSA(pkey, rsa)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "BoringSSL refuses the RSA JWK's key");
        goto out;
    }
    rsa = NULL; /* owned by |pkey| */
out:
    free(n_bytes);
    free(e_bytes);
    BN_free(n);
    BN_free(e);
    RSA_free(rsa);
    ERR_clear_error();
    return pkey;
}

/* import_jwk returns the public key of a jwt-svid JWK (E4: kty EC or RSA), or NULL. */
static EVP_PKEY *import_jwk(const json_t *jwk, struct spiffe_why *why)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    if (kty != NULL && strcmp(kty, "EC") == 0) {
        return import_ec(jwk, why);
    }
    if (kty != NULL && strcmp(kty, "RSA") == 0) {
        return import_rsa(jwk, why);
    }
    spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "the JWK's kty must be EC or RSA");
    return NULL;
}

/* --- signing ------------------------------------------------------------------------------ */

/* dump_b64url writes |v| as compact JSON, base64url-encoded. NULL if jansson cannot. */
static char *dump_b64url(size_t *out_len, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL) {
        return NULL;
    }
    char *b = b64url_encode(out_len, (const uint8_t *)s, strlen(s));
    free(s);
    return b;
}

/* check_request refuses, before anything is built, a request that breaks a rule of jwt.h. */
static int check_request(const struct spiffe_jwt_request *req, EVP_PKEY *key, const char *kid,
                         struct spiffe_why *why)
{
    if (req->sub == NULL || spiffe_id_is_td(req->sub)) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "a JWT-SVID's sub needs a path");
        return WEFT_EINVAL;
    }
    if (req->num_audience == 0 || req->num_audience > SPIFFE_JWT_MAX_AUDIENCES ||
        req->audience == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "%zu audiences: a JWT-SVID has 1..%d",
                       req->num_audience, SPIFFE_JWT_MAX_AUDIENCES);
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < req->num_audience; i++) {
        size_t n =
            req->audience[i] == NULL ? 0 : strnlen(req->audience[i], SPIFFE_JWT_MAX_AUDIENCE + 1);
        if (n == 0 || n > SPIFFE_JWT_MAX_AUDIENCE) {
            spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "audience %zu must be 1..%d bytes", i,
                           SPIFFE_JWT_MAX_AUDIENCE);
            return WEFT_EINVAL;
        }
    }
    if (req->exp <= req->iat) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "exp must be after iat");
        return WEFT_EINVAL;
    }
    if (kid == NULL || kid[0] == '\0') {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "a JWT-SVID needs a kid (E6)");
        return WEFT_EINVAL;
    }
    const EC_KEY *ec =
        key != NULL && EVP_PKEY_id(key) == EVP_PKEY_EC ? EVP_PKEY_get0_EC_KEY(key) : NULL;
    if (ec == NULL || EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1 ||
        EC_KEY_get0_private_key(ec) == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1,
                       "weft signs JWT-SVIDs ES256: an EC P-256 "
                       "private key is needed");
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* es256_sign signs |msg| with |key| and writes the signature as R || S (RFC 7518 §3.4). */
static bool es256_sign(uint8_t out[ES256_SIG_LEN], EVP_PKEY *key, const char *msg, size_t len)
{
    EVP_MD_CTX ctx;
    EVP_MD_CTX_init(&ctx);
    uint8_t *der = NULL;
    size_t der_len = 0;
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *s;
    bool ok = EVP_DigestSignInit(&ctx, NULL, EVP_sha256(), NULL, key) &&
              EVP_DigestSign(&ctx, NULL, &der_len, (const uint8_t *)msg, len) &&
              (der = OPENSSL_malloc(der_len)) != NULL &&
              EVP_DigestSign(&ctx, der, &der_len, (const uint8_t *)msg, len) &&
              (sig = ECDSA_SIG_from_bytes(der, der_len)) != NULL;
    if (ok) {
        ECDSA_SIG_get0(sig, &r, &s);
        ok = BN_bn2bin_padded(out, ES256_SIG_LEN / 2, r) &&
             BN_bn2bin_padded(out + ES256_SIG_LEN / 2, ES256_SIG_LEN / 2, s);
    }
    ECDSA_SIG_free(sig);
    OPENSSL_free(der);
    EVP_MD_CTX_cleanup(&ctx);
    ERR_clear_error();
    return ok;
}

int spiffe_jwt_sign(char **out, const struct spiffe_jwt_request *req, EVP_PKEY *key,
                    const char *kid, struct spiffe_why *why)
{
    *out = NULL;
    spiffe_why_clear(why);
    TRY(check_request(req, key, kid, why));

    int rc = WEFT_EINVAL;
    json_t *header = NULL, *claims = NULL, *aud = NULL;
    char *h64 = NULL, *c64 = NULL, *s64 = NULL, *token = NULL;
    size_t h64_len, c64_len, s64_len;
    header = json_object();
    claims = json_object();
    if (req->num_audience == 1) {
        aud = json_string(req->audience[0]);
    } else {
        aud = json_array();
        for (size_t i = 0; aud != NULL && i < req->num_audience; i++) {
            if (json_array_append_new(aud, json_string(req->audience[i])) != 0) {
                json_decref(aud);
                aud = NULL;
            }
        }
    }
    if (aud == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "an audience is not UTF-8");
        goto out;
    }
    /* jwt.h: exactly these members, in this order */
    if (header == NULL || claims == NULL ||
        json_object_set_new(header, "alg", json_string("ES256")) != 0 ||
        json_object_set_new(header, "kid", json_string(kid)) != 0 ||
        json_object_set_new(header, "typ", json_string("JWT")) != 0 ||
        json_object_set_new(claims, "sub", json_stringn(req->sub->str, req->sub->len)) != 0 ||
        json_object_set(claims, "aud", aud) != 0 ||
        json_object_set_new(claims, "exp", json_integer(req->exp)) != 0 ||
        json_object_set_new(claims, "iat", json_integer(req->iat)) != 0) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "the kid is not UTF-8");
        goto out;
    }
    rc = WEFT_ECRYPTO;
    if ((h64 = dump_b64url(&h64_len, header)) == NULL ||
        (c64 = dump_b64url(&c64_len, claims)) == NULL) {
        goto out;
    }
    size_t s64_max = (ES256_SIG_LEN * 4 + 2) / 3;
    if (h64_len + 1 + c64_len + 1 + s64_max > SPIFFE_JWT_MAX_TOKEN) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_TOO_LONG, -1, "the JWT-SVID would be over %d bytes",
                       SPIFFE_JWT_MAX_TOKEN);
        rc = WEFT_ELIMIT;
        goto out;
    }
    size_t input_len = h64_len + 1 + c64_len;
    token = weft_xmalloc(input_len + 1 + s64_max + 1);
    memcpy(token, h64, h64_len);
    token[h64_len] = '.';
    memcpy(token + h64_len + 1, c64, c64_len);
    uint8_t sig[ES256_SIG_LEN];
    if (!es256_sign(sig, key, token, input_len)) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "BoringSSL could not sign the JWT-SVID");
        goto out;
    }
    s64 = b64url_encode(&s64_len, sig, sizeof(sig));
    token[input_len] = '.';
    memcpy(token + input_len + 1, s64, s64_len + 1);
    *out = token;
    token = NULL;
    rc = WEFT_OK;
out:
    json_decref(header);
    json_decref(claims);
    json_decref(aud);
    free(h64);
    free(c64);
    free(s64);
    free(token);
    return rc;
}

/* --- validation --------------------------------------------------------------------------- */

void spiffe_jws_cleanup(struct jws *j)
{
    free(j->header);
    free(j->claims);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}

/* spiffe_jws_split reads the compact serialization (RFC 7515 §7.1): three non-empty base64url
 * parts. */
int spiffe_jws_split(struct jws *out, const char *token, size_t len, const char *what,
                     struct spiffe_why *why)
{
    memset(out, 0, sizeof(*out));
    const char *dot1 = len > 0 ? memchr(token, '.', len) : NULL;
    const char *dot2 =
        dot1 != NULL ? memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1)) : NULL;
    size_t dots = 0;
    for (size_t i = 0; i < len; i++) {
        dots += token[i] == '.';
    }
    if (dots != 2) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_FORMAT, -1,
                       dots == 4 ? "%s is a JWE (%zu parts): it must be a JWS"
                                 : "%s has 3 dot-separated parts, not %zu",
                       what, dots + 1);
        return WEFT_EINVAL;
    }
    const char *parts[3] = {token, dot1 + 1, dot2 + 1};
    size_t lens[3] = {(size_t)(dot1 - token), (size_t)(dot2 - dot1 - 1),
                      (size_t)(token + len - dot2 - 1)};
    uint8_t **bufs[3] = {&out->header, &out->claims, &out->sig};
    size_t *buf_lens[3] = {&out->header_len, &out->claims_len, &out->sig_len};
    static const char *const names[3] = {"header", "claims", "signature"};
    for (size_t i = 0; i < 3; i++) {
        if (lens[i] == 0) {
            spiffe_why_set(why, SPIFFE_RULE_JWT_FORMAT, -1, "%s's %s is empty", what, names[i]);
            return WEFT_EINVAL;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        if (!b64url_decode(bufs[i], buf_lens[i], parts[i], lens[i])) {
            spiffe_why_set(why, SPIFFE_RULE_JWT_BASE64, -1, "%s's %s is not unpadded base64url",
                           what, names[i]);
            return WEFT_EINVAL;
        }
    }
    out->signing_input = token;
    out->signing_input_len = (size_t)(dot2 - token);
    return WEFT_OK;
}

/* parse_object parses |len| bytes as one JSON object with no key twice (RFC 7515 §4: a
 * duplicate header parameter MUST be refused or only the last used; we refuse). */
static json_t *parse_object(const uint8_t *data, size_t len, const char *what,
                            struct spiffe_why *why)
{
    json_error_t err;
    json_t *v = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
    if (v == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_JSON, -1, "the JWT-SVID's %s is not JSON: %s", what,
                       err.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        spiffe_why_set(why, SPIFFE_RULE_JWT_JSON, -1, "the JWT-SVID's %s is not a JSON object",
                       what);
        return NULL;
    }
    return v;
}

static int check_header(const struct jws_alg **out_alg, const json_t **out_kid, json_t *header,
                        struct spiffe_why *why)
{
    char buf[SHOWN + 1];
    const json_t *alg = json_object_get(header, "alg");
    *out_alg = NULL;
    for (size_t i = 0; json_is_string(alg) && i < nitems(algs); i++) {
        if (strcmp(json_string_value(alg), algs[i].name) == 0 &&
            json_string_length(alg) == strlen(algs[i].name)) {
            *out_alg = &algs[i];
        }
    }
    if (*out_alg == NULL) {
        /* "none" and HMAC are refused here with everything else (JWT-SVID.md §2.1) */
        spiffe_why_set(why, SPIFFE_RULE_JWT_ALG, -1, "alg %s%s%s is not accepted",
                       json_is_string(alg) ? "\"" : "",
                       json_is_string(alg)
                           ? shown(buf, json_string_value(alg), json_string_length(alg))
                       : alg == NULL ? "(missing)"
                                     : "(not a string)",
                       json_is_string(alg) ? "\"" : "");
        return WEFT_EINVAL;
    }
    const json_t *kid = json_object_get(header, "kid");
    if (!json_is_string(kid) || json_string_length(kid) == 0) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_KID, -1, "the header needs a non-empty kid string");
        return WEFT_EINVAL;
    }
    *out_kid = kid;
    const json_t *typ = json_object_get(header, "typ");
    if (typ != NULL && (!json_is_string(typ) || (strcmp(json_string_value(typ), "JWT") != 0 &&
                                                 strcmp(json_string_value(typ), "JOSE") != 0))) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_TYP, -1, "typ %s is not \"JWT\" or \"JOSE\"",
                       json_is_string(typ)
                           ? shown(buf, json_string_value(typ), json_string_length(typ))
                           : "(not a string)");
        return WEFT_EINVAL;
    }
    if (json_object_get(header, "crit") != NULL) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_CRIT, -1,
                       "the header has crit: no JWS extension is understood (RFC 7515 §4.1.11)");
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* numeric_cmp compares the NumericDate |v| (a JSON integer or real, RFC 7519 §2) with |t|,
 * exactly: <0, 0 or >0. */
static int numeric_cmp(const json_t *v, int64_t t)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return (i > t) - (i < t);
    }
    double d = json_real_value(v); /* never NaN or infinite: jansson refuses to parse those */
    if (d >= 9223372036854775808.0) {
        return 1;
    }
    if (d < -9223372036854775808.0) {
        return -1;
    }
    int64_t i = (int64_t)d; /* toward zero; the sign of i - t is that of d - t unless equal */
    if (i != t) {
        return (i > t) - (i < t);
    }
    return (d > (double)i) - (d < (double)i);
}

/* numeric_ceil is the smallest integer not below the NumericDate |v|, clamped to int64: for any
 * integer now, now < numeric_ceil(v) exactly when now < v. */
static int64_t numeric_ceil(const json_t *v)
{
    if (json_is_integer(v)) {
        return json_integer_value(v);
    }
    double d = json_real_value(v);
    if (d >= 9223372036854775808.0) {
        return INT64_MAX;
    }
    if (d < -9223372036854775808.0) {
        return INT64_MIN;
    }
    int64_t i = (int64_t)d;
    return d > (double)i ? i + 1 : i;
}

/* check_audience: aud is a string or a non-empty array of strings (JWT-SVID.md §3.2, RFC 7519
 * §4.1.3) that holds |audience|, byte for byte. */
static int check_audience(const json_t *aud, const char *audience, struct spiffe_why *why)
{
    size_t audience_len = strlen(audience);
    bool found = false;
    if (json_is_string(aud)) {
        found = json_string_length(aud) == audience_len &&
                memcmp(json_string_value(aud), audience, audience_len) == 0;
    } else if (json_is_array(aud) && json_array_size(aud) > 0) {
        size_t i;
        const json_t *a;
        json_array_foreach(aud, i, a)
        {
            if (!json_is_string(a)) {
                spiffe_why_set(why, SPIFFE_RULE_JWT_AUD, -1, "aud[%zu] is not a string", i);
                return WEFT_EINVAL;
            }
            found = found || (json_string_length(a) == audience_len &&
                              memcmp(json_string_value(a), audience, audience_len) == 0);
        }
    } else {
        spiffe_why_set(why, SPIFFE_RULE_JWT_AUD, -1,
                       aud == NULL ? "the claims need aud"
                                   : "aud must be a string or a non-empty array of strings");
        return WEFT_EINVAL;
    }
    if (!found) {
        char buf[SHOWN + 1];
        spiffe_why_set(why, SPIFFE_RULE_JWT_AUD_MISMATCH, -1, "the audience \"%s\" is not in aud",
                       shown(buf, audience, audience_len));
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

static int check_claims(struct spiffe_jwt_svid *out, json_t *claims, const char *audience,
                        int64_t now, struct spiffe_why *why)
{
    const json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub)) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_SUB, -1,
                       sub == NULL ? "the claims need sub" : "sub is not a string");
        return WEFT_EINVAL;
    }
    struct spiffe_why id_why;
    spiffe_why_clear(&id_why);
    if (spiffe_id_parse(&out->sub, json_string_value(sub), json_string_length(sub), &id_why) !=
        WEFT_OK) {
        spiffe_why_set(why, id_why.rule, -1, "sub: %s", id_why.msg);
        if (why != NULL) {
            why->offset = id_why.offset;
        }
        return WEFT_EINVAL;
    }
    if (spiffe_id_is_td(&out->sub)) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_SUB_PATH, -1,
                       "sub %s is a trust domain: a workload's ID has a path", out->sub.str);
        spiffe_id_clear(&out->sub);
        return WEFT_EINVAL;
    }
    TRY(check_audience(json_object_get(claims, "aud"), audience, why));

    static const char *const times[] = {"exp", "nbf", "iat"};
    for (size_t i = 0; i < nitems(times); i++) {
        const json_t *v = json_object_get(claims, times[i]);
        if ((v == NULL && i == 0) || (v != NULL && !json_is_number(v))) {
            spiffe_why_set(why, SPIFFE_RULE_JWT_TIME_CLAIM, -1,
                           v == NULL ? "the claims need %s" : "%s is not a NumericDate", times[i]);
            return WEFT_EINVAL;
        }
    }
    const json_t *exp = json_object_get(claims, "exp");
    if (numeric_cmp(exp, now) <= 0) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_EXPIRED, -1,
                       "the JWT-SVID expired (exp %lld, now %lld)", (long long)numeric_ceil(exp),
                       (long long)now);
        return WEFT_EINVAL;
    }
    const json_t *nbf = json_object_get(claims, "nbf");
    if (nbf != NULL && numeric_cmp(nbf, now) > 0) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_NOT_YET_VALID, -1,
                       "the JWT-SVID is not valid yet (nbf %lld, now %lld)",
                       (long long)numeric_ceil(nbf), (long long)now);
        return WEFT_EINVAL;
    }
    out->exp = numeric_ceil(exp);
    return WEFT_OK;
}

/* find_key returns the public key of the jwt-svid JWK named |kid| in the bundle of |sub|'s trust
 * domain (E8: never another's), checked to suit |alg|. */
static int find_key(EVP_PKEY **out, const struct spiffe_bundle_set *bundles,
                    const struct spiffe_id *sub, const json_t *kid, const struct jws_alg *alg,
                    struct spiffe_why *why)
{
    char buf[SHOWN + 1];
    *out = NULL;
    const struct spiffe_bundle *b = spiffe_bundle_set_get0(bundles, sub);
    if (b == NULL) {
        size_t td_len;
        const char *td = spiffe_id_td(sub, &td_len);
        spiffe_why_set(why, SPIFFE_RULE_JWT_NO_BUNDLE, -1, "no bundle for trust domain %.*s",
                       (int)td_len, td);
        return WEFT_EINVAL;
    }
    const json_t *jwk = NULL, *k;
    size_t i;
    json_array_foreach(b->other_keys, i, k)
    {
        const char *use = json_string_value(json_object_get(k, "use"));
        const json_t *jkid = json_object_get(k, "kid");
        if (use != NULL && strcmp(use, "jwt-svid") == 0 && json_is_string(jkid) &&
            json_string_length(jkid) == json_string_length(kid) &&
            memcmp(json_string_value(jkid), json_string_value(kid), json_string_length(kid)) == 0) {
            jwk = k;
            break;
        }
    }
    if (jwk == NULL) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_UNKNOWN_KID, -1,
                       "the bundle of %s has no jwt-svid key with kid \"%s\"", b->td.str,
                       shown(buf, json_string_value(kid), json_string_length(kid)));
        return WEFT_EINVAL;
    }
    EVP_PKEY *key = import_jwk(jwk, why);
    if (key == NULL) {
        if (why != NULL) {
            char msg[sizeof(why->msg)];
            memcpy(msg, why->msg, sizeof(msg));
            spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "kid \"%s\": %s",
                           shown(buf, json_string_value(kid), json_string_length(kid)), msg);
        }
        return WEFT_EINVAL;
    }
    if (EVP_PKEY_id(key) != alg->pkey_type ||
        (alg->pkey_type == EVP_PKEY_EC &&
         EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key))) != alg->curve)) {
        EVP_PKEY_free(key);
        spiffe_why_set(why, SPIFFE_RULE_JWT_ALG_KEY, -1,
                       "alg %s does not suit the %s key of kid \"%s\"", alg->name,
                       json_string_value(json_object_get(jwk, "kty")),
                       shown(buf, json_string_value(kid), json_string_length(kid)));
        return WEFT_EINVAL;
    }
    *out = key;
    return WEFT_OK;
}

/* jws_verify checks the signature of |j| with |key| under |alg|. An ECDSA signature arrives as
 * R || S (RFC 7518 §3.4) and is re-encoded as the DER BoringSSL verifies. RSASSA-PSS uses MGF1
 * with the same hash and a salt as long as the hash (RFC 7518 §3.5). */
static bool jws_verify(const struct jws_alg *alg, EVP_PKEY *key, const struct jws *j)
{
    const uint8_t *sig = j->sig;
    size_t sig_len = j->sig_len;
    uint8_t *der = NULL;
    if (alg->pkey_type == EVP_PKEY_EC) {
        const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key));
        size_t half = BN_num_bytes(EC_GROUP_get0_order(g));
        if (sig_len != 2 * half) {
            return false;
        }
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, half, NULL), *s = BN_bin2bn(sig + half, half, NULL);
        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            ERR_clear_error();
            return false;
        }
        bool ok = ECDSA_SIG_to_bytes(&der, &sig_len, es);
        ECDSA_SIG_free(es);
        if (!ok) {
            ERR_clear_error();
            return false;
        }
        sig = der;
    }
    EVP_MD_CTX ctx;
    EVP_MD_CTX_init(&ctx);
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = EVP_DigestVerifyInit(&ctx, &pctx, alg->md(), NULL, key) &&
              (!alg->pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
                             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1))) &&
              EVP_DigestVerify(&ctx, sig, sig_len, (const uint8_t *)j->signing_input,
                               j->signing_input_len);
    EVP_MD_CTX_cleanup(&ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

int spiffe_jwt_validate(struct spiffe_jwt_svid *out, const char *token, size_t len,
                        const char *audience, const struct spiffe_bundle_set *bundles, int64_t now,
                        struct spiffe_why *why)
{
    spiffe_why_clear(why);
    spiffe_id_clear(&out->sub);
    out->exp = 0;
    out->claims = NULL;
    if (audience == NULL || audience[0] == '\0') {
        spiffe_why_set(why, SPIFFE_RULE_JWT_AUD, -1, "an audience to validate for is required");
        return WEFT_EINVAL; /* D8 */
    }
    if (len > SPIFFE_JWT_MAX_TOKEN) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_TOO_LONG, -1, "the JWT-SVID is %zu bytes, over %d", len,
                       SPIFFE_JWT_MAX_TOKEN);
        return WEFT_ELIMIT;
    }
    struct jws j;
    memset(&j, 0, sizeof(j));
    json_t *header = NULL, *claims = NULL;
    EVP_PKEY *key = NULL;
    const struct jws_alg *alg = NULL;
    const json_t *kid = NULL;
    int rc = spiffe_jws_split(&j, token, len, "the JWT-SVID", why);
    if (rc != WEFT_OK) {
        goto out;
    }
    rc = WEFT_EINVAL;
    if ((header = parse_object(j.header, j.header_len, "header", why)) == NULL ||
        (claims = parse_object(j.claims, j.claims_len, "claims", why)) == NULL) {
        goto out;
    }
    if ((rc = check_header(&alg, &kid, header, why)) != WEFT_OK ||
        (rc = check_claims(out, claims, audience, now, why)) != WEFT_OK ||
        (rc = find_key(&key, bundles, &out->sub, kid, alg, why)) != WEFT_OK) {
        goto out;
    }
    if (!jws_verify(alg, key, &j)) {
        char buf[SHOWN + 1];
        spiffe_why_set(why, SPIFFE_RULE_JWT_SIGNATURE, -1,
                       "the %s signature does not verify with the key of kid \"%s\"", alg->name,
                       shown(buf, json_string_value(kid), json_string_length(kid)));
        rc = WEFT_EINVAL;
        goto out;
    }
    out->claims = claims;
    claims = NULL;
    rc = WEFT_OK;
out:
    if (rc != WEFT_OK) {
        spiffe_id_clear(&out->sub);
        out->exp = 0;
    }
    EVP_PKEY_free(key);
    json_decref(header);
    json_decref(claims);
    spiffe_jws_cleanup(&j);
    return rc;
}

void spiffe_jwt_svid_cleanup(struct spiffe_jwt_svid *s)
{
    if (s == NULL) {
        return;
    }
    json_decref(s->claims);
    s->claims = NULL;
    s->exp = 0;
    spiffe_id_clear(&s->sub);
}

/* --- JWKS --------------------------------------------------------------------------------- */

int spiffe_jwt_bundle_json(char **out, size_t *out_len, const struct spiffe_bundle *b)
{
    *out = NULL;
    *out_len = 0;
    json_t *doc = json_object(), *keys = json_array();
    int rc = WEFT_EINTERNAL;
    if (doc == NULL || keys == NULL || json_object_set(doc, "keys", keys) != 0) {
        goto out;
    }
    size_t i;
    json_t *jwk;
    json_array_foreach(b->other_keys, i, jwk)
    {
        const char *use = json_string_value(json_object_get(jwk, "use"));
        if (use != NULL && strcmp(use, "jwt-svid") == 0 && json_array_append(keys, jwk) != 0) {
            goto out;
        }
    }
    char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
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

/* --- JWS building blocks (jwt.h) ---------------------------------------------------------- */

EVP_PKEY *spiffe_jwk_import(const json_t *jwk, struct spiffe_why *why)
{
    if (!json_is_object(jwk)) {
        spiffe_why_set(why, SPIFFE_RULE_JWT_KEY, -1, "a JWK must be a JSON object");
        return NULL;
    }
    return import_jwk(jwk, why);
}

static const struct jws_alg *alg_named(const char *name)
{
    for (size_t i = 0; name != NULL && i < nitems(algs); i++) {
        if (strcmp(name, algs[i].name) == 0) {
            return &algs[i];
        }
    }
    return NULL;
}

static bool suits(const struct jws_alg *alg, const EVP_PKEY *key)
{
    if (alg == NULL || key == NULL || EVP_PKEY_id(key) != alg->pkey_type) {
        return false;
    }
    return alg->pkey_type != EVP_PKEY_EC ||
           EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key))) == alg->curve;
}

bool spiffe_jws_alg_suits(const char *alg, const EVP_PKEY *key)
{
    return suits(alg_named(alg), key);
}

bool spiffe_jws_verify(const struct spiffe_jws *j, const char *alg, EVP_PKEY *key)
{
    const struct jws_alg *a = alg_named(alg);
    return suits(a, key) && jws_verify(a, key, j);
}
