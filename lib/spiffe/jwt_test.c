/* lib/spiffe/jwt_test.c: the contract of JWT-SVIDs (jwt.h): signing, the jwt-svid JWK, the JWKS
 * of a bundle, and validation with every refusal naming its rule. Keys are made at test time;
 * tokens other than weft's own (other algorithms, odd headers and claims) are built and signed
 * here with EVP, independently of jwt.c. */
#include <criterion/criterion.h>

#include <stdio.h>
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
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"
#include "lib/spiffe/x509svid.h"

#define NOW 1700000000LL
#define EXP (NOW + 300)
#define TD "example.org"
#define SUB "spiffe://example.org/ns/web/sa/api"

/* --- helpers ------------------------------------------------------------------------------ */

static struct spiffe_bundle_set set;
static EVP_PKEY *key_a; /* P-256, in the bundle of example.org */
static EVP_PKEY *key_b; /* P-256, in the bundle of other.org */
static char kid_a[SPIFFE_JWT_KID_LEN + 1], kid_b[SPIFFE_JWT_KID_LEN + 1];

static struct spiffe_id td_id(const char *name)
{
    struct spiffe_id id;
    cr_assert_eq(spiffe_td_parse(&id, name, strlen(name), NULL), WEFT_OK, "%s", name);
    return id;
}

static struct spiffe_id id_of(const char *s)
{
    struct spiffe_id id;
    cr_assert_eq(spiffe_id_parse(&id, s, strlen(s), NULL), WEFT_OK, "%s", s);
    return id;
}

static EVP_PKEY *gen_key(int type, int param)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(type, NULL);
    cr_assert_not_null(ctx);
    cr_assert(EVP_PKEY_keygen_init(ctx));
    if (type == EVP_PKEY_EC) {
        cr_assert(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, param));
    } else {
        cr_assert(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, param));
    }
    cr_assert(EVP_PKEY_keygen(ctx, &key));
    EVP_PKEY_CTX_free(ctx);
    return key;
}

static void kid_of(EVP_PKEY *key, char kid[SPIFFE_JWT_KID_LEN + 1])
{
    cr_assert_eq(spiffe_jwt_kid(key, kid), WEFT_OK);
}

/* add_jwk publishes |key| under |kid| in |b|. */
static void add_jwk(struct spiffe_bundle *b, EVP_PKEY *key, const char *kid)
{
    json_t *jwk = spiffe_jwt_jwk(key, kid);
    cr_assert_not_null(jwk);
    cr_assert_eq(json_array_append_new(b->other_keys, jwk), 0);
}

/* put_bundle makes the bundle of |td| with |key| (when not NULL) and puts it in the set. */
static struct spiffe_bundle *put_bundle(const char *td, EVP_PKEY *key)
{
    struct spiffe_id id = td_id(td);
    struct spiffe_bundle *b = spiffe_bundle_new(&id);
    if (key != NULL) {
        char kid[SPIFFE_JWT_KID_LEN + 1];
        kid_of(key, kid);
        add_jwk(b, key, kid);
    }
    cr_assert_eq(spiffe_bundle_set_put(&set, b), WEFT_OK);
    return b;
}

static void setup(void)
{
    spiffe_bundle_set_init(&set);
    key_a = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    key_b = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert(key_a != NULL && key_b != NULL);
    kid_of(key_a, kid_a);
    kid_of(key_b, kid_b);
    put_bundle(TD, key_a);
    put_bundle("other.org", key_b);
}

static void teardown(void)
{
    spiffe_bundle_set_cleanup(&set);
    EVP_PKEY_free(key_a);
    EVP_PKEY_free(key_b);
}

TestSuite(jwt, .init = setup, .fini = teardown, .timeout = 60);

/* b64url / unb64url: the test's own base64url, on BoringSSL's standard base64. */
static char *b64url(const void *data, size_t len)
{
    size_t n;
    cr_assert(EVP_EncodedLength(&n, len));
    char *s = malloc(n);
    n = EVP_EncodeBlock((uint8_t *)s, data, len);
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    s[n] = '\0';
    for (char *p = s; *p; p++) {
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    }
    return s;
}

static uint8_t *unb64url(const char *s, size_t len, size_t *out_len)
{
    size_t padded = (len + 3) / 4 * 4, max;
    char *std = malloc(padded + 1);
    for (size_t i = 0; i < padded; i++) {
        std[i] = i >= len ? '=' : s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    }
    cr_assert(EVP_DecodedLength(&max, padded));
    uint8_t *out = malloc(max + 1);
    cr_assert(EVP_DecodeBase64(out, out_len, max, (const uint8_t *)std, padded), "%.*s", (int)len,
              s);
    free(std);
    out[*out_len] = 0;
    return out;
}

/* part returns part |i| (0, 1, 2) of |token|, decoded and NUL-terminated. */
static uint8_t *part(const char *token, int i, size_t *out_len)
{
    const char *p = token;
    for (int k = 0; k < i; k++) {
        p = strchr(p, '.') + 1;
    }
    const char *end = strchr(p, '.');
    return unb64url(p, end != NULL ? (size_t)(end - p) : strlen(p), out_len);
}

/* sign_with signs "|h64|.|c64|" as |alg| with |key| (a fixed dummy signature for NULL). */
static char *sign_with(const char *h64, const char *c64, EVP_PKEY *key, const char *alg)
{
    size_t in_len = strlen(h64) + 1 + strlen(c64);
    char *input = malloc(in_len + 1);
    snprintf(input, in_len + 1, "%s.%s", h64, c64);
    uint8_t sig[1024];
    size_t sig_len = 16;
    memset(sig, 0x5a, sig_len);
    if (key != NULL) {
        const EVP_MD *md = strcmp(alg + 2, "256") == 0   ? EVP_sha256()
                           : strcmp(alg + 2, "384") == 0 ? EVP_sha384()
                                                         : EVP_sha512();
        EVP_MD_CTX ctx;
        EVP_MD_CTX_init(&ctx);
        EVP_PKEY_CTX *pctx;
        cr_assert(EVP_DigestSignInit(&ctx, &pctx, md, NULL, key));
        if (alg[0] == 'P') {
            cr_assert(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING));
            cr_assert(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1));
        }
        uint8_t der[1024];
        size_t der_len = sizeof(der);
        cr_assert(EVP_DigestSign(&ctx, der, &der_len, (const uint8_t *)input, in_len));
        EVP_MD_CTX_cleanup(&ctx);
        if (EVP_PKEY_id(key) == EVP_PKEY_EC) {
            /* RFC 7518 §3.4: R || S, each as long as the group order */
            ECDSA_SIG *es = ECDSA_SIG_from_bytes(der, der_len);
            cr_assert_not_null(es);
            const BIGNUM *r, *s;
            ECDSA_SIG_get0(es, &r, &s);
            size_t half =
                BN_num_bytes(EC_GROUP_get0_order(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key))));
            cr_assert(BN_bn2bin_padded(sig, half, r) && BN_bn2bin_padded(sig + half, half, s));
            sig_len = 2 * half;
            ECDSA_SIG_free(es);
        } else {
            memcpy(sig, der, der_len);
            sig_len = der_len;
        }
    }
    char *s64 = b64url(sig, sig_len);
    size_t len = in_len + 1 + strlen(s64) + 1;
    char *token = malloc(len);
    snprintf(token, len, "%s.%s", input, s64);
    free(input);
    free(s64);
    return token;
}

/* sign_raw builds a token from the JSON texts |header| and |claims|, signed as sign_with. */
static char *sign_raw(const char *header, const char *claims, EVP_PKEY *key, const char *alg)
{
    char *h64 = b64url(header, strlen(header)), *c64 = b64url(claims, strlen(claims));
    char *token = sign_with(h64, c64, key, alg);
    free(h64);
    free(c64);
    return token;
}

static char *hdr(const char *alg, const char *kid)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, kid);
    return buf;
}

static char *claims_for(const char *sub, long long exp)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"iat\":%lld}", sub,
             exp, NOW);
    return buf;
}

/* weft_token signs a JWT-SVID for SUB and the audience "api" with spiffe_jwt_sign. */
static char *weft_token(EVP_PKEY *key, const char *kid)
{
    struct spiffe_id sub = id_of(SUB);
    const char *aud[] = {"api"};
    struct spiffe_jwt_request req = {
        .sub = &sub, .audience = aud, .num_audience = 1, .iat = NOW, .exp = EXP};
    struct spiffe_why why;
    char *token = NULL;
    cr_assert_eq(spiffe_jwt_sign(&token, &req, key, kid, &why), WEFT_OK, "%s", why.msg);
    return token;
}

static void expect_valid_len(const char *token, size_t len, const char *aud, int64_t now)
{
    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    int rc = spiffe_jwt_validate(&svid, token, len, aud, &set, now, &why);
    cr_assert_eq(rc, WEFT_OK, "%.200s: rc %d (%s)", token, rc, why.msg);
    cr_assert_eq(why.rule, SPIFFE_RULE_NONE);
    cr_assert(json_is_object(svid.claims));
    cr_assert(!spiffe_id_is_td(&svid.sub));
    spiffe_jwt_svid_cleanup(&svid);
    cr_assert_null(svid.claims);
}

static void expect_valid(const char *token, const char *aud, int64_t now)
{
    expect_valid_len(token, strlen(token), aud, now);
}

static void expect_refused_len(const char *token, size_t len, const char *aud, int64_t now,
                               int want_rc, enum spiffe_rule want_rule)
{
    struct spiffe_jwt_svid svid;
    memset(&svid, 0x5a, sizeof(svid)); /* whatever was there, a refusal leaves a zero state */
    struct spiffe_why why;
    int rc = spiffe_jwt_validate(&svid, token, len, aud, &set, now, &why);
    cr_assert_eq(rc, want_rc, "%.200s: rc %d, want %d (%s)", token, rc, want_rc, why.msg);
    cr_assert_eq(why.rule, want_rule, "%.200s: rule %d (%s), want %d", token, why.rule, why.msg,
                 want_rule);
    cr_assert_neq(why.msg[0], '\0', "a refusal says why");
    cr_assert_null(svid.claims);
    cr_assert_eq(svid.sub.len, 0);
    cr_assert_eq(svid.exp, 0);
    spiffe_jwt_svid_cleanup(&svid);
}

static void expect_refused(const char *token, enum spiffe_rule rule)
{
    expect_refused_len(token, strlen(token), "api", NOW, WEFT_EINVAL, rule);
}

/* refused_raw signs |header| and |claims| with key A as ES256 and expects |rule|. */
static void refused_raw(const char *header, const char *claims, enum spiffe_rule rule)
{
    char *token = sign_raw(header, claims, key_a, "ES256");
    expect_refused(token, rule);
    free(token);
}

static void valid_raw(const char *header, const char *claims)
{
    char *token = sign_raw(header, claims, key_a, "ES256");
    expect_valid(token, "api", NOW);
    free(token);
}

/* --- signing and the round trip ----------------------------------------------------------- */

Test(jwt, sign_validate_round_trip)
{
    char *token = weft_token(key_a, kid_a);
    cr_assert_leq(strlen(token), SPIFFE_JWT_MAX_TOKEN);

    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), "api", &set, NOW, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_str_eq(svid.sub.str, SUB);
    cr_assert_eq(svid.exp, EXP);
    cr_assert_str_eq(json_string_value(json_object_get(svid.claims, "aud")), "api");
    cr_assert_eq(json_integer_value(json_object_get(svid.claims, "iat")), NOW);
    spiffe_jwt_svid_cleanup(&svid);

    /* jwt.h: the header is exactly {"alg":"ES256","kid":...,"typ":"JWT"}, the claims exactly
     * sub, aud, exp, iat, and the signature 64 bytes */
    size_t len;
    uint8_t *h = part(token, 0, &len);
    char want[256];
    snprintf(want, sizeof(want), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid_a);
    cr_assert_str_eq((char *)h, want);
    free(h);
    uint8_t *c = part(token, 1, &len);
    snprintf(want, sizeof(want), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"iat\":%lld}", SUB,
             EXP, NOW);
    cr_assert_str_eq((char *)c, want);
    free(c);
    uint8_t *s = part(token, 2, &len);
    cr_assert_eq(len, 64);
    free(s);
    free(token);
}

Test(jwt, several_audiences)
{
    struct spiffe_id sub = id_of(SUB);
    const char *aud[] = {"api", "spiffe://example.org/db", "https://x.example"};
    struct spiffe_jwt_request req = {
        .sub = &sub, .audience = aud, .num_audience = 3, .iat = NOW, .exp = EXP};
    char *token = NULL;
    cr_assert_eq(spiffe_jwt_sign(&token, &req, key_a, kid_a, NULL), WEFT_OK);
    for (size_t i = 0; i < 3; i++) {
        expect_valid(token, aud[i], NOW);
    }
    expect_refused_len(token, strlen(token), "spiffe://example.org/other", NOW, WEFT_EINVAL,
                       SPIFFE_RULE_JWT_AUD_MISMATCH);

    struct spiffe_jwt_svid svid;
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), "api", &set, NOW, NULL), WEFT_OK);
    json_t *a = json_object_get(svid.claims, "aud");
    cr_assert(json_is_array(a) && json_array_size(a) == 3);
    cr_assert_str_eq(json_string_value(json_array_get(a, 1)), aud[1]);
    spiffe_jwt_svid_cleanup(&svid);
    free(token);
}

Test(jwt, wrong_audience)
{
    char *token = weft_token(key_a, kid_a);
    expect_refused_len(token, strlen(token), "ap", NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_AUD_MISMATCH);
    expect_refused_len(token, strlen(token), "apix", NOW, WEFT_EINVAL,
                       SPIFFE_RULE_JWT_AUD_MISMATCH);
    expect_refused_len(token, strlen(token), "API", NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_AUD_MISMATCH);
    /* D8: an empty audience is not a wildcard */
    expect_refused_len(token, strlen(token), "", NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_AUD);
    expect_refused_len(token, strlen(token), NULL, NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_AUD);
    free(token);
}

Test(jwt, expired_at_exp)
{
    char *token = weft_token(key_a, kid_a);
    expect_valid(token, "api", EXP - 1);
    expect_refused_len(token, strlen(token), "api", EXP, WEFT_EINVAL, SPIFFE_RULE_JWT_EXPIRED);
    expect_refused_len(token, strlen(token), "api", EXP + 1, WEFT_EINVAL, SPIFFE_RULE_JWT_EXPIRED);
    free(token);
}

Test(jwt, nbf_in_the_future)
{
    char claims[512];
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"nbf\":%lld}",
             SUB, EXP, NOW + 1);
    refused_raw(hdr("ES256", kid_a), claims, SPIFFE_RULE_JWT_NOT_YET_VALID);
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"nbf\":%lld}",
             SUB, EXP, NOW);
    valid_raw(hdr("ES256", kid_a), claims);
}

Test(jwt, numeric_dates_may_be_reals)
{
    char claims[512];
    /* exp 1700000300.5: valid at 1700000300, expired at 1700000301; |exp| rounds up */
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld.5}", SUB, EXP);
    char *token = sign_raw(hdr("ES256", kid_a), claims, key_a, "ES256");
    struct spiffe_jwt_svid svid;
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), "api", &set, EXP, NULL), WEFT_OK);
    cr_assert_eq(svid.exp, EXP + 1);
    spiffe_jwt_svid_cleanup(&svid);
    expect_refused_len(token, strlen(token), "api", EXP + 1, WEFT_EINVAL, SPIFFE_RULE_JWT_EXPIRED);
    free(token);
    /* nbf 1700000000.5 is after 1700000000 */
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"nbf\":%lld.5,\"iat\":1.7e9}", SUB, EXP,
             NOW);
    refused_raw(hdr("ES256", kid_a), claims, SPIFFE_RULE_JWT_NOT_YET_VALID);
    /* huge and negative reals compare without overflow */
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":1e300}", SUB);
    valid_raw(hdr("ES256", kid_a), claims);
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":-1e300}", SUB);
    refused_raw(hdr("ES256", kid_a), claims, SPIFFE_RULE_JWT_EXPIRED);
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"nbf\":-0.5}",
             SUB, EXP);
    valid_raw(hdr("ES256", kid_a), claims);
}

Test(jwt, time_claims_must_be_numbers)
{
    const char *bad[] = {
        "{\"sub\":\"" SUB "\",\"aud\":\"api\"}",
        "{\"sub\":\"" SUB "\",\"aud\":\"api\",\"exp\":\"1700000300\"}",
        "{\"sub\":\"" SUB "\",\"aud\":\"api\",\"exp\":null}",
        "{\"sub\":\"" SUB "\",\"aud\":\"api\",\"exp\":[1700000300]}",
        "{\"sub\":\"" SUB "\",\"aud\":\"api\",\"exp\":1700000300,\"nbf\":true}",
        "{\"sub\":\"" SUB "\",\"aud\":\"api\",\"exp\":1700000300,\"iat\":\"now\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        refused_raw(hdr("ES256", kid_a), bad[i], SPIFFE_RULE_JWT_TIME_CLAIM);
    }
}

/* --- keys and bundles --------------------------------------------------------------------- */

Test(jwt, unknown_kid)
{
    char *token = weft_token(key_a, "no-such-kid");
    expect_refused(token, SPIFFE_RULE_JWT_UNKNOWN_KID);
    free(token);
    /* a kid differing only in case is another kid */
    char upper[SPIFFE_JWT_KID_LEN + 1];
    memcpy(upper, kid_a, sizeof(upper));
    for (char *p = upper; *p; p++) {
        *p = *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
    }
    if (strcmp(upper, kid_a) != 0) {
        token = weft_token(key_a, upper);
        expect_refused(token, SPIFFE_RULE_JWT_UNKNOWN_KID);
        free(token);
    }
}

Test(jwt, kid_of_another_trust_domains_key)
{
    /* E8: key B is trusted, but only for other.org; a token for example.org signed by it fails */
    char *token = weft_token(key_b, kid_b);
    expect_refused(token, SPIFFE_RULE_JWT_UNKNOWN_KID);
    free(token);
    /* and the same kid in the right bundle is found: the lookup is by sub's trust domain */
    token = sign_raw(hdr("ES256", kid_b), claims_for("spiffe://other.org/w", EXP), key_b, "ES256");
    expect_valid(token, "api", NOW);
    free(token);
}

Test(jwt, sub_in_a_trust_domain_without_bundle)
{
    char *token =
        sign_raw(hdr("ES256", kid_a), claims_for("spiffe://nobody.org/w", EXP), key_a, "ES256");
    expect_refused(token, SPIFFE_RULE_JWT_NO_BUNDLE);
    free(token);
    /* an empty set, and no set at all */
    token = weft_token(key_a, kid_a);
    struct spiffe_bundle_set empty;
    spiffe_bundle_set_init(&empty);
    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), "api", &empty, NOW, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_JWT_NO_BUNDLE);
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), "api", NULL, NOW, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_JWT_NO_BUNDLE);
    free(token);
}

Test(jwt, jwk_of_another_use_is_not_a_jwt_key)
{
    /* a wit-svid JWK with the kid does not sign JWT-SVIDs */
    struct spiffe_id td = td_id("wit.org");
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    json_t *jwk = spiffe_jwt_jwk(key_a, kid_a);
    cr_assert_eq(json_object_set_new(jwk, "use", json_string("wit-svid")), 0);
    cr_assert_eq(json_array_append_new(b->other_keys, jwk), 0);
    cr_assert_eq(spiffe_bundle_set_put(&set, b), WEFT_OK);
    char *token =
        sign_raw(hdr("ES256", kid_a), claims_for("spiffe://wit.org/w", EXP), key_a, "ES256");
    expect_refused(token, SPIFFE_RULE_JWT_UNKNOWN_KID);
    free(token);
}

/* --- the header --------------------------------------------------------------------------- */

Test(jwt, alg_none_and_hmac_refused)
{
    const char *bad[] = {"none",  "HS256", "HS384", "HS512",  "es256",
                         "ES512", "EdDSA", "",      "ES256 ", "RS1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *token = sign_raw(hdr(bad[i], kid_a), claims_for(SUB, EXP), NULL, NULL);
        expect_refused(token, SPIFFE_RULE_JWT_ALG);
        free(token);
    }
    refused_raw("{\"kid\":\"x\",\"typ\":\"JWT\"}", claims_for(SUB, EXP), SPIFFE_RULE_JWT_ALG);
    refused_raw("{\"alg\":256,\"kid\":\"x\"}", claims_for(SUB, EXP), SPIFFE_RULE_JWT_ALG);
    refused_raw("{\"alg\":\"ES256\\u0000\",\"kid\":\"x\"}", claims_for(SUB, EXP),
                SPIFFE_RULE_JWT_JSON); /* jansson refuses \u0000 */
}

Test(jwt, alg_must_suit_the_key)
{
    /* ES384 header, P-256 key: refused before any signature check */
    char *token = sign_raw(hdr("ES384", kid_a), claims_for(SUB, EXP), key_a, "ES384");
    expect_refused(token, SPIFFE_RULE_JWT_ALG_KEY);
    free(token);
    token = sign_raw(hdr("RS256", kid_a), claims_for(SUB, EXP), NULL, NULL);
    expect_refused(token, SPIFFE_RULE_JWT_ALG_KEY);
    free(token);
    token = sign_raw(hdr("PS256", kid_a), claims_for(SUB, EXP), NULL, NULL);
    expect_refused(token, SPIFFE_RULE_JWT_ALG_KEY);
    free(token);
}

Test(jwt, kid_required)
{
    refused_raw("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", claims_for(SUB, EXP), SPIFFE_RULE_JWT_KID);
    refused_raw("{\"alg\":\"ES256\",\"kid\":\"\"}", claims_for(SUB, EXP), SPIFFE_RULE_JWT_KID);
    refused_raw("{\"alg\":\"ES256\",\"kid\":7}", claims_for(SUB, EXP), SPIFFE_RULE_JWT_KID);
}

Test(jwt, typ_jwt_or_jose)
{
    char h[256];
    const char *bad[] = {"\"JWS\"", "\"jwt\"", "\"\"", "1", "null", "[\"JWT\"]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":%s}", kid_a, bad[i]);
        refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_TYP);
    }
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JOSE\"}", kid_a);
    valid_raw(h, claims_for(SUB, EXP));
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid_a);
    valid_raw(h, claims_for(SUB, EXP));
}

Test(jwt, crit_refused)
{
    char h[256];
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"crit\":[\"exp\"]}", kid_a);
    refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_CRIT);
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"crit\":[]}", kid_a);
    refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_CRIT);
    /* RFC 7797 unencoded payloads need crit, so they are refused too */
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"b64\":false,\"crit\":[\"b64\"]}",
             kid_a);
    refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_CRIT);
}

Test(jwt, duplicate_json_keys)
{
    char h[256];
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"alg\":\"ES256\"}", kid_a);
    refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_JSON);
    char c[512];
    snprintf(c, sizeof(c),
             "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"sub\":\"spiffe://example.org/x\"}",
             SUB, EXP);
    refused_raw(hdr("ES256", kid_a), c, SPIFFE_RULE_JWT_JSON);
    /* nested objects too */
    snprintf(c, sizeof(c), "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"x\":{\"a\":1,\"a\":2}}",
             SUB, EXP);
    refused_raw(hdr("ES256", kid_a), c, SPIFFE_RULE_JWT_JSON);
}

Test(jwt, header_and_claims_are_json_objects)
{
    refused_raw("[\"ES256\"]", claims_for(SUB, EXP), SPIFFE_RULE_JWT_JSON);
    refused_raw("\"ES256\"", claims_for(SUB, EXP), SPIFFE_RULE_JWT_JSON);
    refused_raw("{\"alg\":\"ES256\"", claims_for(SUB, EXP), SPIFFE_RULE_JWT_JSON);
    char h[600];
    snprintf(h, sizeof(h), "%s x", hdr("ES256", kid_a)); /* trailing garbage */
    refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_JSON);
    snprintf(h, sizeof(h), "%s{}", hdr("ES256", kid_a));
    refused_raw(h, claims_for(SUB, EXP), SPIFFE_RULE_JWT_JSON);
    refused_raw(hdr("ES256", kid_a), "null", SPIFFE_RULE_JWT_JSON);
    refused_raw(hdr("ES256", kid_a), "{\"sub\":\"\xff\"}", SPIFFE_RULE_JWT_JSON); /* not UTF-8 */
    /* nesting deeper than jansson's limit (2048) */
    size_t depth = 2100;
    char *deep = malloc(2 * depth + 128);
    int n = snprintf(deep, 128, "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"x\":", SUB, EXP);
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    strcpy(deep + n + 2 * depth, "}");
    refused_raw(hdr("ES256", kid_a), deep, SPIFFE_RULE_JWT_JSON);
    free(deep);
}

/* --- the claims --------------------------------------------------------------------------- */

Test(jwt, sub_is_a_spiffe_id_with_a_path)
{
    refused_raw(hdr("ES256", kid_a), claims_for("spiffe://example.org", EXP),
                SPIFFE_RULE_JWT_SUB_PATH);
    refused_raw(hdr("ES256", kid_a), claims_for("spiffe://Example.org/w", EXP),
                SPIFFE_RULE_ID_TD_UPPERCASE);
    refused_raw(hdr("ES256", kid_a), claims_for("https://example.org/w", EXP),
                SPIFFE_RULE_ID_SCHEME);
    refused_raw(hdr("ES256", kid_a), claims_for("spiffe://example.org/w/", EXP),
                SPIFFE_RULE_ID_TRAILING_SLASH);
    refused_raw(hdr("ES256", kid_a), "{\"aud\":\"api\",\"exp\":1700000300}", SPIFFE_RULE_JWT_SUB);
    refused_raw(hdr("ES256", kid_a), "{\"sub\":5,\"aud\":\"api\",\"exp\":1700000300}",
                SPIFFE_RULE_JWT_SUB);
}

Test(jwt, aud_shape)
{
    const char *bad[] = {
        "{\"sub\":\"" SUB "\",\"exp\":1700000300}",
        "{\"sub\":\"" SUB "\",\"aud\":[],\"exp\":1700000300}",
        "{\"sub\":\"" SUB "\",\"aud\":5,\"exp\":1700000300}",
        "{\"sub\":\"" SUB "\",\"aud\":null,\"exp\":1700000300}",
        "{\"sub\":\"" SUB "\",\"aud\":[\"api\",1],\"exp\":1700000300}",
        "{\"sub\":\"" SUB "\",\"aud\":{\"api\":1},\"exp\":1700000300}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        refused_raw(hdr("ES256", kid_a), bad[i], SPIFFE_RULE_JWT_AUD);
    }
    valid_raw(hdr("ES256", kid_a),
              "{\"sub\":\"" SUB "\",\"aud\":[\"x\",\"api\"],\"exp\":1700000300}");
}

/* --- signatures --------------------------------------------------------------------------- */

Test(jwt, tampered_claims)
{
    char *token = weft_token(key_a, kid_a);
    /* replace the claims with others that parse, keeping header and signature */
    char *sig = strrchr(token, '.');
    char *h64 = strndup(token, (size_t)(strchr(token, '.') - token));
    char c[512];
    snprintf(c, sizeof(c), "{\"sub\":\"%s/admin\",\"aud\":\"api\",\"exp\":%lld,\"iat\":%lld}", SUB,
             EXP, NOW);
    char *c64 = b64url(c, strlen(c));
    char forged[2048];
    snprintf(forged, sizeof(forged), "%s.%s%s", h64, c64, sig);
    expect_refused(forged, SPIFFE_RULE_JWT_SIGNATURE);
    /* and one byte of the header: typ JWT -> JOSE is still accepted, but not signed */
    char h[256];
    snprintf(h, sizeof(h), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JOSE\"}", kid_a);
    char *h64b = b64url(h, strlen(h));
    snprintf(forged, sizeof(forged), "%s%s", h64b, strchr(token, '.'));
    expect_refused(forged, SPIFFE_RULE_JWT_SIGNATURE);
    free(h64);
    free(h64b);
    free(c64);
    free(token);
}

Test(jwt, tampered_signature)
{
    char *token = weft_token(key_a, kid_a);
    char *dot = strrchr(token, '.');
    size_t sig_len;
    uint8_t *sig = part(token, 2, &sig_len);
    cr_assert_eq(sig_len, 64);
    char forged[2048];
    size_t prefix = (size_t)(dot - token);
    for (size_t i = 0; i < 64; i += 21) {
        sig[i] ^= 0x01;
        char *s64 = b64url(sig, sig_len);
        snprintf(forged, sizeof(forged), "%.*s.%s", (int)prefix, token, s64);
        expect_refused(forged, SPIFFE_RULE_JWT_SIGNATURE);
        free(s64);
        sig[i] ^= 0x01;
    }
    /* wrong lengths: DER instead of R || S, one byte short, one too many */
    uint8_t long_sig[65];
    memcpy(long_sig, sig, 64);
    long_sig[64] = 0;
    size_t lens[] = {63, 65};
    for (size_t i = 0; i < 2; i++) {
        char *s64 = b64url(long_sig, lens[i]);
        snprintf(forged, sizeof(forged), "%.*s.%s", (int)prefix, token, s64);
        expect_refused(forged, SPIFFE_RULE_JWT_SIGNATURE);
        free(s64);
    }
    /* r = s = 0, and r = s = n (the group order) */
    uint8_t zero[64] = {0};
    char *s64 = b64url(zero, 64);
    snprintf(forged, sizeof(forged), "%.*s.%s", (int)prefix, token, s64);
    expect_refused(forged, SPIFFE_RULE_JWT_SIGNATURE);
    free(s64);
    uint8_t order[64];
    const BIGNUM *n = EC_GROUP_get0_order(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key_a)));
    cr_assert(BN_bn2bin_padded(order, 32, n) && BN_bn2bin_padded(order + 32, 32, n));
    s64 = b64url(order, 64);
    snprintf(forged, sizeof(forged), "%.*s.%s", (int)prefix, token, s64);
    expect_refused(forged, SPIFFE_RULE_JWT_SIGNATURE);
    free(s64);
    free(sig);
    free(token);
}

/* --- the compact serialization ------------------------------------------------------------ */

/* with_edit returns |token| with |insert| put at byte |at| after removing |remove| bytes there;
 * a negative |at| counts from the end: -1 is the end itself, -2 the last byte. */
static char *with_edit(const char *token, long at, size_t remove, const char *insert)
{
    size_t len = strlen(token);
    size_t pos = at < 0 ? (size_t)((long)len + at + 1) : (size_t)at;
    char *out = malloc(len + strlen(insert) + 1);
    memcpy(out, token, pos);
    strcpy(out + pos, insert);
    strcat(out, token + pos + remove);
    return out;
}

Test(jwt, base64url_is_strict)
{
    char *token = weft_token(key_a, kid_a);
    expect_valid(token, "api", NOW);
    long first_dot = strchr(token, '.') - token;
    long last_dot = strrchr(token, '.') - token;
    struct {
        long at;
        size_t remove;
        const char *insert;
    } edits[] = {
        {first_dot, 0, "="}, {first_dot, 0, "=="}, {-1, 0, "="},
        {-1, 0, "=="},       {-1, 0, "\n"},        {-1, 0, " "},
        {0, 0, " "},         {-1, 0, "\r\n"},      {first_dot, 0, "+"},
        {5, 1, "+"},         {5, 1, "/"},          {last_dot + 3, 1, "*"},
        {-1, 0, "\t"},       {-1, 0, "AAA"},       {last_dot + 3, 1, "%"},
        {-2, 1, "\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *bad = with_edit(token, edits[i].at, edits[i].remove, edits[i].insert);
        expect_refused(bad, SPIFFE_RULE_JWT_BASE64);
        free(bad);
    }
    /* a NUL byte inside, counted by |len| */
    char *nul = strdup(token);
    nul[3] = '\0';
    expect_refused_len(nul, strlen(token), "api", NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_BASE64);
    free(nul);
    /* a trailing garbage byte past |len|'s end is never read; one inside is */
    char *trailing = with_edit(token, -1, 0, "!");
    expect_valid_len(trailing, strlen(token), "api", NOW);
    expect_refused_len(trailing, strlen(trailing), "api", NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_BASE64);
    free(trailing);
    /* non-canonical: the signature (64 bytes: 86 characters, 2 spare bits) with a spare bit
     * set decodes to the same bytes but is another string */
    char last = token[strlen(token) - 1];
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t v = (size_t)(strchr(alphabet, last) - alphabet);
    cr_assert_eq(v & 3, 0);
    char twin[2] = {alphabet[v | 1], '\0'};
    char *bad = with_edit(token, -2, 1, twin);
    expect_refused(bad, SPIFFE_RULE_JWT_BASE64);
    free(bad);
    free(token);
}

Test(jwt, three_parts)
{
    char *token = weft_token(key_a, kid_a);
    const char *dot = strrchr(token, '.');
    char *two = strndup(token, (size_t)(dot - token));
    expect_refused(two, SPIFFE_RULE_JWT_FORMAT);
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s.AAAA", token);
    expect_refused(buf, SPIFFE_RULE_JWT_FORMAT); /* 4 parts */
    snprintf(buf, sizeof(buf), "%s.", token);
    expect_refused(buf, SPIFFE_RULE_JWT_FORMAT); /* 4 parts, the last empty */
    snprintf(buf, sizeof(buf), "%s.AAAA.AAAA", token);
    expect_refused(buf, SPIFFE_RULE_JWT_FORMAT); /* 5 parts: a JWE */
    snprintf(buf, sizeof(buf), "%s.", two);
    expect_refused(buf, SPIFFE_RULE_JWT_FORMAT); /* empty signature */
    snprintf(buf, sizeof(buf), ".%s", strchr(token, '.') + 1);
    expect_refused(buf, SPIFFE_RULE_JWT_FORMAT); /* empty header */
    const char *tiny[] = {"", ".", "..", "a", "a.b", "a..b", "..b"};
    for (size_t i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++) {
        expect_refused(tiny[i], SPIFFE_RULE_JWT_FORMAT);
    }
    expect_refused_len(NULL, 0, "api", NOW, WEFT_EINVAL, SPIFFE_RULE_JWT_FORMAT);
    free(two);
    free(token);
}

Test(jwt, token_size_limit)
{
    /* a valid token of exactly SPIFFE_JWT_MAX_TOKEN bytes passes; one byte more is refused
     * before anything is read */
    char *token = NULL;
    char *pad = malloc(SPIFFE_JWT_MAX_TOKEN);
    char *claims = malloc(SPIFFE_JWT_MAX_TOKEN + 256);
    for (size_t p = 5900, found = 0; !found && p < 6200; p++) {
        for (size_t h = 0; !found && h < 3; h++) {
            memset(pad, 'x', p);
            pad[p] = '\0';
            snprintf(claims, SPIFFE_JWT_MAX_TOKEN + 256,
                     "{\"sub\":\"%s\",\"aud\":\"api\",\"exp\":%lld,\"pad\":\"%s\"}", SUB, EXP, pad);
            char header[256];
            snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\"%s}", kid_a,
                     h == 0   ? ""
                     : h == 1 ? ",\"typ\":\"JWT\""
                              : ",\"typ\":\"JOSE\"");
            free(token);
            token = sign_raw(header, claims, key_a, "ES256");
            found = strlen(token) == SPIFFE_JWT_MAX_TOKEN;
        }
    }
    cr_assert_eq(strlen(token), SPIFFE_JWT_MAX_TOKEN);
    expect_valid(token, "api", NOW);
    char *longer = with_edit(token, -1, 0, "A");
    expect_refused_len(longer, strlen(longer), "api", NOW, WEFT_ELIMIT, SPIFFE_RULE_JWT_TOO_LONG);
    free(longer);
    free(token);
    free(claims);
    free(pad);
}

/* --- other algorithms --------------------------------------------------------------------- */

Test(jwt, rsa_rs256_and_ps256)
{
    EVP_PKEY *rsa = gen_key(EVP_PKEY_RSA, 2048);
    char kid[SPIFFE_JWT_KID_LEN + 1];
    kid_of(rsa, kid);
    struct spiffe_bundle *b = put_bundle("rsa.org", rsa);
    (void)b;
    const char *claims = claims_for("spiffe://rsa.org/w", EXP);
    const char *algs[] = {"RS256", "PS256", "RS384", "RS512", "PS384", "PS512"};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char *token = sign_raw(hdr(algs[i], kid), claims, rsa, algs[i]);
        expect_valid(token, "api", NOW);
        free(token);
    }
    /* a PS256 signature is not an RS256 one, nor SHA-384 one a SHA-256 one */
    char *h64 = b64url(hdr("RS256", kid), strlen(hdr("RS256", kid)));
    char *c64 = b64url(claims, strlen(claims));
    const char *wrong[] = {"PS256", "RS384"};
    for (size_t i = 0; i < 2; i++) {
        char *token = sign_with(h64, c64, rsa, wrong[i]);
        expect_refused(token, SPIFFE_RULE_JWT_SIGNATURE);
        free(token);
    }
    /* ES256 naming an RSA key */
    char *token = sign_raw(hdr("ES256", kid), claims, key_a, "ES256");
    expect_refused(token, SPIFFE_RULE_JWT_ALG_KEY);
    free(token);
    free(h64);
    free(c64);
    EVP_PKEY_free(rsa);
}

Test(jwt, rsa_key_under_2048_bits_refused)
{
    EVP_PKEY *rsa = gen_key(EVP_PKEY_RSA, 1024);
    char kid[SPIFFE_JWT_KID_LEN + 1];
    kid_of(rsa, kid);
    put_bundle("rsa.org", rsa);
    char *token = sign_raw(hdr("RS256", kid), claims_for("spiffe://rsa.org/w", EXP), rsa, "RS256");
    expect_refused(token, SPIFFE_RULE_JWT_KEY);
    free(token);
    EVP_PKEY_free(rsa);
}

Test(jwt, es384_with_p384)
{
    EVP_PKEY *p384 = gen_key(EVP_PKEY_EC, NID_secp384r1);
    char kid[SPIFFE_JWT_KID_LEN + 1];
    kid_of(p384, kid);
    put_bundle("p384.org", p384);
    const char *claims = claims_for("spiffe://p384.org/w", EXP);
    char *token = sign_raw(hdr("ES384", kid), claims, p384, "ES384");
    expect_valid(token, "api", NOW);
    size_t len;
    free(part(token, 2, &len));
    cr_assert_eq(len, 96);
    free(token);
    token = sign_raw(hdr("ES256", kid), claims, p384, "ES256");
    expect_refused(token, SPIFFE_RULE_JWT_ALG_KEY);
    free(token);
    EVP_PKEY_free(p384);
}

/* --- JWK import --------------------------------------------------------------------------- */

/* refused_with_jwk publishes |jwk| (consumed) as kid "k" of bad.org and expects |rule| for an
 * ES256 token naming it. */
static void refused_with_jwk(json_t *jwk, const char *alg, enum spiffe_rule rule)
{
    struct spiffe_id td = td_id("bad.org");
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    cr_assert_eq(json_object_set_new(jwk, "kid", json_string("k")), 0);
    cr_assert_eq(json_array_append_new(b->other_keys, jwk), 0);
    cr_assert_eq(spiffe_bundle_set_put(&set, b), WEFT_OK);
    char *token = sign_raw(hdr(alg, "k"), claims_for("spiffe://bad.org/w", EXP), key_a, "ES256");
    expect_refused(token, rule);
    free(token);
}

/* b64json is a JSON string of |len| bytes in base64url. */
static json_t *b64json(const void *data, size_t len)
{
    char *s = b64url(data, len);
    json_t *v = json_string(s);
    free(s);
    return v;
}

static json_t *jwk_a_with(const char *name, json_t *value)
{
    json_t *jwk = spiffe_jwt_jwk(key_a, kid_a);
    if (value == NULL) {
        cr_assert_eq(json_object_del(jwk, name), 0);
    } else {
        cr_assert_eq(json_object_set_new(jwk, name, value), 0);
    }
    return jwk;
}

Test(jwt, jwk_import_is_strict)
{
    /* the unchanged JWK under kid "k" works: the refusals below are the edits' */
    struct spiffe_id td = td_id("good.org");
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    add_jwk(b, key_a, "k");
    cr_assert_eq(spiffe_bundle_set_put(&set, b), WEFT_OK);
    char *token =
        sign_raw(hdr("ES256", "k"), claims_for("spiffe://good.org/w", EXP), key_a, "ES256");
    expect_valid(token, "api", NOW);
    free(token);

    uint8_t x[33];
    size_t x_len;
    json_t *jwk = spiffe_jwt_jwk(key_a, kid_a);
    uint8_t *raw = unb64url(json_string_value(json_object_get(jwk, "x")),
                            json_string_length(json_object_get(jwk, "x")), &x_len);
    cr_assert_eq(x_len, 32);
    memcpy(x + 1, raw, 32);
    x[0] = 0;
    free(raw);
    json_decref(jwk);

    refused_with_jwk(jwk_a_with("x", b64json(x + 1, 31)), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("x", b64json(x, 33)), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("x", NULL), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("y", json_integer(1)), "ES256", SPIFFE_RULE_JWT_KEY);
    x[32] ^= 1; /* another x, the same y: off the curve */
    json_t *off = jwk_a_with("x", b64json(x + 1, 32));
    refused_with_jwk(off, "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("crv", json_string("P-521")), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("crv", NULL), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("kty", json_string("oct")), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("kty", json_string("OKP")), "ES256", SPIFFE_RULE_JWT_KEY);
    refused_with_jwk(jwk_a_with("x", json_string("AAAA=")), "ES256", SPIFFE_RULE_JWT_KEY);
    /* kty RSA without n and e */
    refused_with_jwk(jwk_a_with("kty", json_string("RSA")), "RS256", SPIFFE_RULE_JWT_KEY);
}

Test(jwt, jwk_coordinates_out_of_range)
{
    /* x = p (the field prime) is out of range even though it has the right length */
    static const char p256_p[] =
        "_____wAAAAEAAAAAAAAAAAAAAAD_______________8"; /* 2^256 - 2^224 + 2^192 + 2^96 - 1 */
    refused_with_jwk(jwk_a_with("x", json_string(p256_p)), "ES256", SPIFFE_RULE_JWT_KEY);
}

/* --- kid, JWK and JWKS -------------------------------------------------------------------- */

Test(jwt, kid_is_43_chars_and_stable)
{
    char k1[SPIFFE_JWT_KID_LEN + 1], k2[SPIFFE_JWT_KID_LEN + 1];
    kid_of(key_a, k1);
    kid_of(key_a, k2);
    cr_assert_eq(strlen(k1), SPIFFE_JWT_KID_LEN);
    cr_assert_str_eq(k1, k2);
    cr_assert_str_neq(k1, kid_b);
    for (const char *p = k1; *p; p++) {
        cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
    }
    /* it is base64url(SHA-256(SubjectPublicKeyInfo)), the same for the public key alone */
    CBB cbb;
    uint8_t *der;
    size_t der_len;
    cr_assert(CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, key_a) &&
              CBB_finish(&cbb, &der, &der_len));
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(der, der_len, digest);
    char *want = b64url(digest, sizeof(digest));
    cr_assert_str_eq(k1, want);
    CBS cbs;
    CBS_init(&cbs, der, der_len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    cr_assert_not_null(pub);
    kid_of(pub, k2);
    cr_assert_str_eq(k1, k2);
    EVP_PKEY_free(pub);
    OPENSSL_free(der);
    free(want);
    cr_assert_eq(spiffe_jwt_kid(NULL, k2), WEFT_ECRYPTO);
}

Test(jwt, jwk_shape)
{
    json_t *jwk = spiffe_jwt_jwk(key_a, kid_a);
    cr_assert_not_null(jwk);
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "kty")), "EC");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "crv")), "P-256");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "use")), "jwt-svid");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "kid")), kid_a);
    cr_assert_eq(json_string_length(json_object_get(jwk, "x")), 43);
    cr_assert_eq(json_string_length(json_object_get(jwk, "y")), 43);
    cr_assert_eq(json_object_size(jwk), 6);
    json_decref(jwk);

    EVP_PKEY *p384 = gen_key(EVP_PKEY_EC, NID_secp384r1);
    jwk = spiffe_jwt_jwk(p384, "k");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "crv")), "P-384");
    cr_assert_eq(json_string_length(json_object_get(jwk, "x")), 64);
    json_decref(jwk);
    EVP_PKEY_free(p384);

    EVP_PKEY *rsa = gen_key(EVP_PKEY_RSA, 2048);
    jwk = spiffe_jwt_jwk(rsa, "k");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "kty")), "RSA");
    cr_assert_eq(json_string_length(json_object_get(jwk, "n")), 342); /* 256 bytes */
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "e")), "AQAB");
    cr_assert_eq(json_object_size(jwk), 5);
    json_decref(jwk);
    EVP_PKEY_free(rsa);

    EVP_PKEY *ed = spiffe_key_generate(SPIFFE_KEY_ED25519);
    cr_assert_null(spiffe_jwt_jwk(ed, "k"));
    EVP_PKEY_free(ed);
    EVP_PKEY *p521 = gen_key(EVP_PKEY_EC, NID_secp521r1);
    cr_assert_null(spiffe_jwt_jwk(p521, "k"));
    EVP_PKEY_free(p521);
    cr_assert_null(spiffe_jwt_jwk(key_a, ""));
    cr_assert_null(spiffe_jwt_jwk(key_a, NULL));
    cr_assert_null(spiffe_jwt_jwk(NULL, "k"));
}

Test(jwt, jwks_of_a_bundle)
{
    /* a bundle with an X.509 authority, two jwt-svid keys, a wit-svid key and a sequence */
    struct spiffe_id td = td_id("jwks.org");
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    X509 *root = NULL;
    struct spiffe_mint_params p = {.not_before = NOW - 60, .ttl_s = 3600};
    cr_assert_eq(spiffe_mint_root(&root, key_b, &td, &p, NULL), WEFT_OK);
    cr_assert_eq(spiffe_bundle_add_x509(b, root), WEFT_OK);
    X509_free(root);
    add_jwk(b, key_a, kid_a);
    json_t *wit = spiffe_jwt_jwk(key_b, "wit-kid");
    cr_assert_eq(json_object_set_new(wit, "use", json_string("wit-svid")), 0);
    cr_assert_eq(json_array_append_new(b->other_keys, wit), 0);
    add_jwk(b, key_b, kid_b);
    b->has_sequence = true;
    b->sequence = 7;

    char *json;
    size_t len;
    cr_assert_eq(spiffe_jwt_bundle_json(&json, &len, b), WEFT_OK);
    cr_assert_eq(strlen(json), len);
    json_error_t err;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(doc, "%s", err.text);
    cr_assert_eq(json_object_size(doc), 1, "%s", json); /* keys only */
    json_t *keys = json_object_get(doc, "keys");
    cr_assert_eq(json_array_size(keys), 2, "%s", json);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(keys, 0), "kid")), kid_a);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(keys, 1), "kid")), kid_b);
    json_decref(doc);

    /* it parses back as a bundle, and that bundle validates a token */
    struct spiffe_bundle *back = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_from_json(&back, &td, (const uint8_t *)json, len, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_eq(sk_X509_num(back->x509), 0);
    cr_assert_eq(json_array_size(back->other_keys), 2);
    cr_assert_eq(spiffe_bundle_set_put(&set, back), WEFT_OK);
    char *token =
        sign_raw(hdr("ES256", kid_b), claims_for("spiffe://jwks.org/w", EXP), key_b, "ES256");
    expect_valid(token, "api", NOW);
    free(token);
    free(json);
    spiffe_bundle_free(b);

    /* a bundle with no jwt-svid key: {"keys":[]} */
    struct spiffe_bundle *empty = spiffe_bundle_new(&td);
    cr_assert_eq(spiffe_jwt_bundle_json(&json, &len, empty), WEFT_OK);
    cr_assert_str_eq(json, "{\"keys\":[]}");
    free(json);
    spiffe_bundle_free(empty);
}

/* --- signing refusals --------------------------------------------------------------------- */

static void sign_refused(const struct spiffe_jwt_request *req, EVP_PKEY *key, const char *kid,
                         int want_rc, enum spiffe_rule rule)
{
    char *token = (char *)1;
    struct spiffe_why why;
    int rc = spiffe_jwt_sign(&token, req, key, kid, &why);
    cr_assert_eq(rc, want_rc, "rc %d, want %d (%s)", rc, want_rc, why.msg);
    cr_assert_eq(why.rule, rule, "rule %d (%s), want %d", why.rule, why.msg, rule);
    cr_assert_null(token);
}

Test(jwt, sign_refusals)
{
    struct spiffe_id sub = id_of(SUB), td = td_id(TD);
    const char *aud[SPIFFE_JWT_MAX_AUDIENCES + 1];
    for (size_t i = 0; i <= SPIFFE_JWT_MAX_AUDIENCES; i++) {
        aud[i] = "api";
    }
    struct spiffe_jwt_request ok = {
        .sub = &sub, .audience = aud, .num_audience = 1, .iat = NOW, .exp = EXP};
    struct spiffe_jwt_request r;

    r = ok;
    r.num_audience = 0;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    r.num_audience = SPIFFE_JWT_MAX_AUDIENCES + 1;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    r.num_audience = SPIFFE_JWT_MAX_AUDIENCES;
    char *token = NULL;
    cr_assert_eq(spiffe_jwt_sign(&token, &r, key_a, kid_a, NULL), WEFT_OK);
    free(token);

    char long_aud[SPIFFE_JWT_MAX_AUDIENCE + 2];
    memset(long_aud, 'a', sizeof(long_aud) - 1);
    long_aud[SPIFFE_JWT_MAX_AUDIENCE + 1] = '\0';
    const char *one[1] = {long_aud};
    r = ok;
    r.audience = one;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    long_aud[SPIFFE_JWT_MAX_AUDIENCE] = '\0'; /* exactly the limit */
    cr_assert_eq(spiffe_jwt_sign(&token, &r, key_a, kid_a, NULL), WEFT_OK);
    free(token);
    one[0] = "";
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    one[0] = NULL;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    one[0] = "\xff\xfe";
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);

    r = ok;
    r.sub = &td;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    r.sub = NULL;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    r = ok;
    r.exp = r.iat;
    sign_refused(&r, key_a, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);

    sign_refused(&ok, key_a, "", WEFT_EINVAL, SPIFFE_RULE_MINT);
    sign_refused(&ok, key_a, NULL, WEFT_EINVAL, SPIFFE_RULE_MINT);
    sign_refused(&ok, NULL, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    EVP_PKEY *others[] = {gen_key(EVP_PKEY_EC, NID_secp384r1), gen_key(EVP_PKEY_RSA, 2048),
                          spiffe_key_generate(SPIFFE_KEY_ED25519)};
    for (size_t i = 0; i < 3; i++) {
        sign_refused(&ok, others[i], kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
        EVP_PKEY_free(others[i]);
    }
    /* a public key alone cannot sign */
    CBB cbb;
    uint8_t *der;
    size_t der_len;
    cr_assert(CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, key_a) &&
              CBB_finish(&cbb, &der, &der_len));
    CBS cbs;
    CBS_init(&cbs, der, der_len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    sign_refused(&ok, pub, kid_a, WEFT_EINVAL, SPIFFE_RULE_MINT);
    EVP_PKEY_free(pub);
    OPENSSL_free(der);
}

Test(jwt, sign_refuses_a_token_over_the_limit)
{
    /* 16 audiences of 256 bytes fit; with a 2048-byte sub the token passes 8192 bytes */
    char path[SPIFFE_ID_MAX_LEN + 1];
    size_t prefix = strlen("spiffe://" TD);
    memset(path, 'p', SPIFFE_ID_MAX_LEN - prefix);
    path[0] = '/';
    path[SPIFFE_ID_MAX_LEN - prefix] = '\0';
    struct spiffe_id sub;
    cr_assert_eq(spiffe_id_from_td_path(&sub, TD, path, NULL), WEFT_OK);
    cr_assert_eq(sub.len, SPIFFE_ID_MAX_LEN);
    char auds[SPIFFE_JWT_MAX_AUDIENCES][SPIFFE_JWT_MAX_AUDIENCE + 1];
    const char *aud[SPIFFE_JWT_MAX_AUDIENCES];
    for (size_t i = 0; i < SPIFFE_JWT_MAX_AUDIENCES; i++) {
        memset(auds[i], 'a' + (int)i, SPIFFE_JWT_MAX_AUDIENCE);
        auds[i][SPIFFE_JWT_MAX_AUDIENCE] = '\0';
        aud[i] = auds[i];
    }
    struct spiffe_id short_sub = id_of(SUB);
    struct spiffe_jwt_request req = {.sub = &short_sub,
                                     .audience = aud,
                                     .num_audience = SPIFFE_JWT_MAX_AUDIENCES,
                                     .iat = NOW,
                                     .exp = EXP};
    char *token = NULL;
    cr_assert_eq(spiffe_jwt_sign(&token, &req, key_a, kid_a, NULL), WEFT_OK);
    cr_assert_leq(strlen(token), SPIFFE_JWT_MAX_TOKEN);
    expect_valid(token, auds[15], NOW);
    free(token);
    req.sub = &sub;
    sign_refused(&req, key_a, kid_a, WEFT_ELIMIT, SPIFFE_RULE_JWT_TOO_LONG);
}

Test(jwt, rule_references)
{
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_JWT_SIGNATURE), "D9");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_JWT_UNKNOWN_KID), "E6");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_JWT_NO_BUNDLE), "E8");
    for (int r = SPIFFE_RULE_JWT_TOO_LONG; r <= SPIFFE_RULE_JWT_SIGNATURE; r++) {
        cr_assert_neq(spiffe_rule_ref((enum spiffe_rule)r)[0], '\0', "rule %d", r);
    }
}
