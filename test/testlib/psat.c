/* Service account tokens for tests (test/testlib/psat.h). The signer is written apart from the
 * validator (ca/psat.c, lib/spiffe/jwt.c): base64url and the R || S form of ES256 by hand from
 * RFC 7515 §2 and RFC 7518 §3.4, so that a shared mistake does not hide. */
#include "test/testlib/psat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>

#include "lib/spiffe/jwt.h"

EVP_PKEY *testlib_psat_ec_key(void)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    EVP_PKEY *k = EVP_PKEY_new();
    if (ec == NULL || k == NULL || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(k, ec)) {
        EC_KEY_free(ec);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int testlib_psat_keys_mint(struct testlib_psat_keys *k)
{
    memset(k, 0, sizeof(*k));
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    bool ok = ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
              EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) == 1 &&
              EVP_PKEY_keygen(ctx, &k->rsa) == 1 && (k->ec = testlib_psat_ec_key()) != NULL;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        testlib_psat_keys_cleanup(k);
        return WEFT_ECRYPTO;
    }
    return WEFT_OK;
}

void testlib_psat_keys_cleanup(struct testlib_psat_keys *k)
{
    EVP_PKEY_free(k->rsa);
    EVP_PKEY_free(k->ec);
    memset(k, 0, sizeof(*k));
}

json_t *testlib_psat_jwk(EVP_PKEY *pub, const char *kid)
{
    json_t *j = spiffe_jwt_jwk(pub, kid);
    if (j != NULL) {
        json_object_set_new(j, "use", json_string("sig"));
    }
    return j;
}

char *testlib_psat_jwks(const struct testlib_psat_keys *k)
{
    json_t *doc = json_pack("{s:[o,o]}", "keys", testlib_psat_jwk(k->rsa, TESTLIB_PSAT_RSA_KID),
                            testlib_psat_jwk(k->ec, TESTLIB_PSAT_EC_KID));
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

json_t *testlib_psat_header(const char *alg, const char *kid)
{
    json_t *h = json_pack("{s:s}", "alg", alg);
    if (kid != NULL) {
        json_object_set_new(h, "kid", json_string(kid));
    }
    return h;
}

json_t *testlib_psat_claims(const char *sa, const char *node, int64_t iat, int64_t exp)
{
    char sub[600];
    snprintf(sub, sizeof(sub), "system:serviceaccount:weft-system:%s", sa);
    return json_pack("{s:[s], s:I, s:I, s:s, s:s, s:I, s:s, s:{s:s, s:{s:s, s:s}, s:{s:s, s:s}, "
                     "s:{s:s, s:s}}}",
                     "aud", "weft-ca", "exp", (json_int_t)exp, "iat", (json_int_t)iat, "iss",
                     TESTLIB_PSAT_ISSUER, "jti", "8d7a52e6-6b9d-4d57-9d1e-3f0b8a0d6c11", "nbf",
                     (json_int_t)iat, "sub", sub, "kubernetes.io", "namespace", "weft-system",
                     "node", "name", node, "uid", "0a3c1e2f-0000-4000-8000-000000000001", "pod",
                     "name", "weft-agent-x7k2p", "uid", "5f0e2c1a-0000-4000-8000-000000000002",
                     "serviceaccount", "name", sa, "uid", "77f1d3b0-0000-4000-8000-000000000003");
}

/* b64url: RFC 7515 §2, base64 with - and _ and no padding */
static char *b64url(const uint8_t *in, size_t len)
{
    size_t n;
    if (!EVP_EncodedLength(&n, len)) {
        return NULL;
    }
    char *s = malloc(n);
    n = EVP_EncodeBlock((uint8_t *)s, in, len);
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    }
    s[n] = '\0';
    return s;
}

static char *b64url_json(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    char *out = s != NULL ? b64url((const uint8_t *)s, strlen(s)) : NULL;
    free(s);
    json_decref(v);
    return out;
}

static bool sign_input(uint8_t *sig, size_t *sig_len, const char *alg, EVP_PKEY *key,
                       const uint8_t *hmac, size_t hmac_len, const char *in, size_t in_len)
{
    if (strcmp(alg, "none") == 0) {
        *sig_len = 0;
        return true;
    }
    if (strcmp(alg, "HS256") == 0) {
        unsigned n;
        bool ok = HMAC(EVP_sha256(), hmac, hmac_len, (const uint8_t *)in, in_len, sig, &n);
        *sig_len = n;
        return ok;
    }
    uint8_t der[512];
    size_t der_len = sizeof(der);
    EVP_MD_CTX ctx;
    EVP_MD_CTX_init(&ctx);
    bool ok = key != NULL && EVP_DigestSignInit(&ctx, NULL, EVP_sha256(), NULL, key) &&
              EVP_DigestSign(&ctx, der, &der_len, (const uint8_t *)in, in_len);
    EVP_MD_CTX_cleanup(&ctx);
    if (!ok) {
        return false;
    }
    if (EVP_PKEY_id(key) != EVP_PKEY_EC) {
        memcpy(sig, der, der_len);
        *sig_len = der_len;
        return true;
    }
    ECDSA_SIG *es = ECDSA_SIG_from_bytes(der, der_len);
    ok = es != NULL && BN_bn2bin_padded(sig, 32, ECDSA_SIG_get0_r(es)) &&
         BN_bn2bin_padded(sig + 32, 32, ECDSA_SIG_get0_s(es));
    ECDSA_SIG_free(es);
    *sig_len = 64;
    return ok;
}

char *testlib_psat_sign(json_t *header, json_t *claims, const char *alg, EVP_PKEY *key,
                        const uint8_t *hmac, size_t hmac_len)
{
    char *h = b64url_json(header), *c = b64url_json(claims), *in = NULL, *s = NULL, *out = NULL;
    uint8_t sig[512];
    size_t sig_len = 0;
    if (h == NULL || c == NULL) {
        goto done;
    }
    size_t in_len = strlen(h) + 1 + strlen(c);
    in = malloc(in_len + 1);
    snprintf(in, in_len + 1, "%s.%s", h, c);
    if (!sign_input(sig, &sig_len, alg, key, hmac, hmac_len, in, in_len)) {
        goto done;
    }
    s = sig_len > 0 ? b64url(sig, sig_len) : strdup("");
    size_t out_len = in_len + 1 + strlen(s);
    out = malloc(out_len + 1);
    snprintf(out, out_len + 1, "%s.%s", in, s);
done:
    free(h);
    free(c);
    free(in);
    free(s);
    return out;
}
