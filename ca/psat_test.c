/* ca/psat_test.c: the contract of ca_psat_validate and ca_psat_bind, with tokens signed at test
 * time by keys minted at test time (RSA-2048 and P-256), published in a JWKS as a cluster's
 * /openid/v1/jwks publishes them. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "ca/psat.h"
#include "lib/spiffe/jwt.h"
#include "test/testlib/psat.h"

#define NOW 1800000000
#define ISSUER TESTLIB_PSAT_ISSUER

static struct testlib_psat_keys keys;
static EVP_PKEY *rsa_key, *ec_key, *other_key; /* rsa_key and ec_key borrow from |keys| */
static struct ca_psat psat;
static char err[512];

static char *sign(json_t *h, json_t *c, const char *alg, EVP_PKEY *key, const uint8_t *hmac,
                  size_t hmac_len)
{
    char *t = testlib_psat_sign(h, c, alg, key, hmac, hmac_len);
    cr_assert(t != NULL, "cannot sign a test token");
    return t;
}

#define header testlib_psat_header
#define claims_for testlib_psat_claims

static json_t *valid_claims(void)
{
    return claims_for("weft-agent", "node-a", NOW - 60, NOW + 3540);
}

static json_t *jwk(EVP_PKEY *k, const char *kid)
{
    json_t *j = testlib_psat_jwk(k, kid);
    cr_assert(j != NULL);
    return j;
}

static int init_with(json_t *jwks, const char *const *allowed, size_t num_allowed)
{
    char *doc = json_dumps(jwks, JSON_COMPACT);
    json_decref(jwks);
    struct ca_psat_config cfg = {
        .issuer = ISSUER,
        .allowed_sa = allowed,
        .num_allowed_sa = num_allowed,
        .jwks = (const uint8_t *)doc,
        .jwks_len = strlen(doc),
    };
    int rc = ca_psat_init(&psat, &cfg, err, sizeof(err));
    free(doc);
    return rc;
}

static void setup(void)
{
    cr_assert_eq(testlib_psat_keys_mint(&keys), WEFT_OK);
    rsa_key = keys.rsa;
    ec_key = keys.ec;
    other_key = testlib_psat_ec_key();
    cr_assert(other_key != NULL);
    json_t *jwks = json_pack("{s:[o,o]}", "keys", jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1"));
    cr_assert_eq(init_with(jwks, NULL, 0), WEFT_OK, "%s", err);
}

static void teardown(void)
{
    ca_psat_cleanup(&psat);
    testlib_psat_keys_cleanup(&keys);
    EVP_PKEY_free(other_key);
}

TestSuite(psat, .init = setup, .fini = teardown, .timeout = 30);

static int validate(const char *token, struct ca_psat_claims *out)
{
    err[0] = '\0';
    return ca_psat_validate(&psat, out, token, strlen(token), NOW, err, sizeof(err));
}

static void expect_refused(char *token, const char *reason)
{
    struct ca_psat_claims c;
    cr_assert_neq(validate(token, &c), WEFT_OK, "accepted; expected \"%s\"", reason);
    cr_assert(strstr(err, reason) != NULL, "\"%s\" does not say \"%s\"", err, reason);
    cr_assert_str_empty(c.node_name);
    free(token);
}

Test(psat, accepts_rs256_and_names_the_node)
{
    char *t = sign(header("RS256", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0);
    struct ca_psat_claims c;
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    cr_assert_str_eq(c.node_name, "node-a");
    cr_assert_str_eq(c.namespace, "weft-system");
    cr_assert_str_eq(c.service_account, "weft-agent");
    cr_assert_str_eq(c.pod_name, "weft-agent-x7k2p");
    cr_assert_str_eq(c.pod_uid, "5f0e2c1a-0000-4000-8000-000000000002");
    cr_assert_str_eq(c.node_uid, "0a3c1e2f-0000-4000-8000-000000000001");
    cr_assert_eq(c.exp, NOW + 3540);
    free(t);
}

Test(psat, accepts_es256_with_and_without_kid)
{
    struct ca_psat_claims c;
    char *t = sign(header("ES256", "ec-1"), valid_claims(), "ES256", ec_key, NULL, 0);
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    free(t);
    t = sign(header("ES256", NULL), valid_claims(), "ES256", ec_key, NULL, 0);
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    cr_assert_str_eq(c.node_name, "node-a");
    free(t);
}

Test(psat, accepts_a_string_audience)
{
    json_t *cl = valid_claims();
    json_object_set_new(cl, "aud", json_string("weft-ca"));
    struct ca_psat_claims c;
    char *t = sign(header("RS256", NULL), cl, "RS256", rsa_key, NULL, 0);
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    free(t);
}

Test(psat, refuses_expired)
{
    expect_refused(sign(header("RS256", "rsa-1"),
                        claims_for("weft-agent", "node-a", NOW - 7200, NOW - 61), "RS256", rsa_key,
                        NULL, 0),
                   "expired");
}

Test(psat, accepts_within_clock_skew)
{
    struct ca_psat_claims c;
    char *t =
        sign(header("RS256", "rsa-1"), claims_for("weft-agent", "node-a", NOW - 3600, NOW - 30),
             "RS256", rsa_key, NULL, 0);
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    free(t);
}

Test(psat, refuses_not_yet_valid)
{
    expect_refused(sign(header("RS256", "rsa-1"),
                        claims_for("weft-agent", "node-a", NOW + 120, NOW + 3600), "RS256", rsa_key,
                        NULL, 0),
                   "not valid yet");
    json_t *cl = valid_claims();
    json_object_set_new(cl, "nbf", json_integer(NOW + 61));
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0), "not valid yet");
}

Test(psat, refuses_a_lifetime_over_the_limit)
{
    expect_refused(
        sign(header("RS256", "rsa-1"),
             claims_for("weft-agent", "node-a", NOW - 10, NOW - 10 + CA_PSAT_MAX_LIFETIME_S + 1),
             "RS256", rsa_key, NULL, 0),
        "the token lives");
}

Test(psat, refuses_times_out_of_range)
{
    json_t *cl = valid_claims();
    json_object_set_new(cl, "exp", json_integer(INT64_MAX));
    json_object_set_new(cl, "iat", json_integer(INT64_MIN));
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0), "from 0 to 2^40");
    cl = valid_claims();
    json_object_set_new(cl, "exp", json_real(NOW + 100.5));
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0),
                   "exp is not an integer");
}

Test(psat, refuses_wrong_audience)
{
    json_t *cl = valid_claims();
    json_object_set_new(cl, "aud", json_pack("[s]", "https://kubernetes.default.svc"));
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0), "is not in aud");
}

Test(psat, refuses_wrong_issuer)
{
    json_t *cl = valid_claims();
    json_object_set_new(cl, "iss", json_string("https://other.example"));
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0),
                   "is not the issuer");
}

Test(psat, refuses_unknown_kid)
{
    expect_refused(sign(header("ES256", "ec-2"), valid_claims(), "ES256", other_key, NULL, 0),
                   "kid \"ec-2\" is not in the JWKS");
}

Test(psat, refuses_a_key_outside_the_jwks_without_kid)
{
    expect_refused(sign(header("ES256", NULL), valid_claims(), "ES256", other_key, NULL, 0),
                   "does not verify with any key");
}

Test(psat, refuses_alg_none)
{
    /* an unsecured JWS (RFC 7515 §A.5) has an empty signature part: not even split */
    expect_refused(sign(header("none", NULL), valid_claims(), "none", NULL, NULL, 0),
                   "signature is empty");
    /* and with a signature part present, alg itself is refused */
    char *t = sign(header("none", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0);
    expect_refused(t, "alg \"none\" is not accepted");
}

Test(psat, refuses_hs256_keyed_with_the_public_key)
{
    /* the classic confusion: the RSA public key (its DER and its JWK) used as an HMAC secret */
    uint8_t *der = NULL;
    int der_len = i2d_PUBKEY(rsa_key, &der);
    cr_assert(der_len > 0);
    expect_refused(
        sign(header("HS256", "rsa-1"), valid_claims(), "HS256", NULL, der, (size_t)der_len),
        "alg \"HS256\" is not accepted");
    OPENSSL_free(der);
}

Test(psat, refuses_alg_that_does_not_suit_the_key)
{
    /* an RS256 header over an ES256 signature by the EC key's kid */
    expect_refused(sign(header("RS256", "ec-1"), valid_claims(), "ES256", ec_key, NULL, 0),
                   "does not verify");
}

Test(psat, refuses_a_bad_signature)
{
    char *t = sign(header("RS256", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0);
    /* change one claim after signing: same signature, other payload */
    char *dot = strchr(t, '.');
    dot[5] = dot[5] == 'A' ? 'B' : 'A';
    expect_refused(t, "");
    t = sign(header("ES256", "ec-1"), valid_claims(), "ES256", other_key, NULL, 0);
    expect_refused(t, "signature does not verify");
}

Test(psat, refuses_a_service_account_not_allowed)
{
    expect_refused(sign(header("RS256", "rsa-1"),
                        claims_for("other", "node-a", NOW - 60, NOW + 3540), "RS256", rsa_key, NULL,
                        0),
                   "service account weft-system:other may not attest nodes");
}

Test(psat, allows_a_configured_service_account)
{
    ca_psat_cleanup(&psat);
    static const char *const allowed[] = {"weft-system:other"};
    json_t *jwks = json_pack("{s:[o]}", "keys", jwk(rsa_key, "rsa-1"));
    cr_assert_eq(init_with(jwks, allowed, 1), WEFT_OK, "%s", err);
    struct ca_psat_claims c;
    char *t = sign(header("RS256", "rsa-1"), claims_for("other", "node-b", NOW - 60, NOW + 60),
                   "RS256", rsa_key, NULL, 0);
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    cr_assert_str_eq(c.node_name, "node-b");
    free(t);
    expect_refused(sign(header("RS256", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0),
                   "may not attest nodes");
}

Test(psat, refuses_missing_kubernetes_claims)
{
    json_t *cl = valid_claims();
    json_object_del(json_object_get(cl, "kubernetes.io"), "node");
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0),
                   "kubernetes.io has no node object");
    cl = valid_claims();
    json_object_set_new(cl, "sub", json_string("system:serviceaccount:kube-system:weft-agent"));
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0),
                   "sub does not match");
    expect_refused(sign(header("RS256", "rsa-1"),
                        claims_for("weft-agent", "Node_A", NOW - 60, NOW + 60), "RS256", rsa_key,
                        NULL, 0),
                   "not a node name");
}

Test(psat, refuses_malformed_tokens)
{
    expect_refused(strdup(""), "3 dot-separated parts");
    expect_refused(strdup("abc.def"), "3 dot-separated parts");
    expect_refused(strdup("a.b.c.d.e"), "JWE");
    expect_refused(strdup("eyJhbGciOiJSUzI1NiJ9..c2ln"), "claims is empty");
    expect_refused(strdup("eyJhbGciOiJSUzI1NiJ9=.e30.c2ln"), "not unpadded base64url");
    /* "[1]" and "{" */
    expect_refused(strdup("WzFd.e30.c2ln"), "header is not a JSON object");
    expect_refused(strdup("ew.e30.c2ln"), "header is not JSON");
    /* {"alg":"RS256","alg":"RS256"} */
    expect_refused(strdup("eyJhbGciOiJSUzI1NiIsImFsZyI6IlJTMjU2In0.e30.c2ln"), "not JSON");
}

Test(psat, refuses_deep_json)
{
    json_t *cl = valid_claims(), *v = json_string("x");
    for (int i = 0; i < CA_PSAT_MAX_DEPTH; i++) {
        v = json_pack("[o]", v);
    }
    json_object_set_new(cl, "deep", v);
    expect_refused(sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0), "deeper than");
}

Test(psat, refuses_a_token_over_the_limit)
{
    char *t = malloc(CA_PSAT_MAX_TOKEN + 2);
    memset(t, 'a', CA_PSAT_MAX_TOKEN + 1);
    t[CA_PSAT_MAX_TOKEN + 1] = '\0';
    struct ca_psat_claims c;
    cr_assert_eq(validate(t, &c), WEFT_ELIMIT);
    free(t);
}

Test(psat, refuses_bad_jwks)
{
    ca_psat_cleanup(&psat);
    cr_assert_eq(init_with(json_pack("{s:[]}", "keys"), NULL, 0), WEFT_EINVAL);
    cr_assert(strstr(err, "non-empty \"keys\"") != NULL, "%s", err);
    json_t *two = json_pack("{s:[o,o]}", "keys", jwk(rsa_key, "k"), jwk(ec_key, "k"));
    cr_assert_eq(init_with(two, NULL, 0), WEFT_EINVAL);
    cr_assert(strstr(err, "there twice") != NULL, "%s", err);
    json_t *enc = jwk(rsa_key, "k");
    json_object_set_new(enc, "use", json_string("enc"));
    cr_assert_eq(init_with(json_pack("{s:[o]}", "keys", enc), NULL, 0), WEFT_EINVAL);
    json_t *many = json_array();
    for (int i = 0; i <= CA_PSAT_MAX_KEYS; i++) {
        char kid[16];
        snprintf(kid, sizeof(kid), "k%d", i);
        json_array_append_new(many, jwk(ec_key, kid));
    }
    cr_assert_eq(init_with(json_pack("{s:o}", "keys", many), NULL, 0), WEFT_ELIMIT);
    static const char *const bad[] = {"no-colon"};
    cr_assert_eq(init_with(json_pack("{s:[o]}", "keys", jwk(rsa_key, "k")), bad, 1), WEFT_EINVAL);
    cr_assert(strstr(err, "--psat-allowed-sa") != NULL, "%s", err);
}

Test(psat, refuses_a_jwks_or_allowed_list_past_the_limits)
{
    ca_psat_cleanup(&psat);
    uint8_t *big = malloc(CA_PSAT_MAX_JWKS + 1);
    memset(big, ' ', CA_PSAT_MAX_JWKS + 1);
    struct ca_psat_config cfg = {.issuer = ISSUER, .jwks = big, .jwks_len = CA_PSAT_MAX_JWKS + 1};
    cr_assert_eq(ca_psat_init(&psat, &cfg, err, sizeof(err)), WEFT_ELIMIT);
    free(big);
    const char *many[CA_PSAT_MAX_ALLOWED + 1];
    for (size_t i = 0; i < nitems(many); i++) {
        many[i] = "weft-system:weft-agent";
    }
    cr_assert_eq(
        init_with(json_pack("{s:[o]}", "keys", jwk(rsa_key, "k")), many, CA_PSAT_MAX_ALLOWED + 1),
        WEFT_ELIMIT);
    cr_assert_eq(
        init_with(json_pack("{s:[o]}", "keys", jwk(rsa_key, "k")), many, CA_PSAT_MAX_ALLOWED),
        WEFT_OK, "%s", err);
}

Test(psat, binds_a_token_to_its_first_key)
{
    char *t = sign(header("RS256", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0);
    struct ca_psat_claims c;
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    uint8_t k1[32] = {1}, k2[32] = {2};
    cr_assert_eq(ca_psat_bind(&psat, &c, k1, NOW, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(ca_psat_bind(&psat, &c, k1, NOW + 1, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(ca_psat_bind(&psat, &c, k2, NOW + 2, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert(strstr(err, "a replay") != NULL, "%s", err);
    /* once the token has expired it is forgotten (it cannot validate any more either) */
    cr_assert_eq(ca_psat_bind(&psat, &c, k2, c.exp + CA_PSAT_CLOCK_SKEW_S, err, sizeof(err)),
                 WEFT_OK);
    /* a fresh token (another jti) binds another key */
    json_t *cl = valid_claims();
    json_object_set_new(cl, "jti", json_string("fresh"));
    char *t2 = sign(header("RS256", "rsa-1"), cl, "RS256", rsa_key, NULL, 0);
    struct ca_psat_claims c2;
    cr_assert_eq(validate(t2, &c2), WEFT_OK, "%s", err);
    cr_assert_eq(ca_psat_bind(&psat, &c2, k1, NOW, err, sizeof(err)), WEFT_OK);
    free(t);
    free(t2);
}

Test(psat, a_reload_takes_new_keys_and_keeps_the_bindings)
{
    char *t = sign(header("RS256", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0);
    struct ca_psat_claims c;
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    uint8_t k1[32] = {1}, k2[32] = {2};
    cr_assert_eq(ca_psat_bind(&psat, &c, k1, NOW, err, sizeof(err)), WEFT_OK);
    /* the cluster rotated its key: only the new one is published */
    char *doc = NULL;
    json_t *jwks = json_pack("{s:[o]}", "keys", jwk(other_key, "ec-2"));
    doc = json_dumps(jwks, JSON_COMPACT);
    json_decref(jwks);
    struct ca_psat_config cfg = {
        .issuer = ISSUER, .jwks = (const uint8_t *)doc, .jwks_len = strlen(doc)};
    cr_assert_eq(ca_psat_reload(&psat, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(psat.num_keys, 1);
    cr_assert_neq(validate(t, &c), WEFT_OK, "the old key is gone");
    char *t2 = sign(header("ES256", "ec-2"), valid_claims(), "ES256", other_key, NULL, 0);
    cr_assert_eq(validate(t2, &c), WEFT_OK, "%s", err);
    /* same jti as the token bound before the reload: still bound to k1 */
    cr_assert_eq(ca_psat_bind(&psat, &c, k2, NOW, err, sizeof(err)), WEFT_EPOLICY);
    /* a bad document leaves everything as it was */
    cfg.jwks = (const uint8_t *)"{\"keys\": 3}";
    cfg.jwks_len = strlen((const char *)cfg.jwks);
    cr_assert_eq(ca_psat_reload(&psat, &cfg, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(validate(t2, &c), WEFT_OK, "%s", err);
    free(doc);
    free(t);
    free(t2);
}

static struct ca_psat_claims claims_of(const char *node, uint32_t jti);

Test(psat, refuses_bindings_past_the_limit)
{
    /* as many nodes as bindings, one token each: the table is full. The first binding goes
     * through the API (it allocates the table); the rest are written in place, since binding
     * them one by one scans the table each time. */
    uint8_t k[32] = {0};
    struct ca_psat_claims c = claims_of("n0", 0);
    cr_assert_eq(ca_psat_bind(&psat, &c, k, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    for (uint32_t i = 1; i < CA_PSAT_MAX_BINDINGS - 1; i++) {
        struct ca_psat_binding *b = &psat.bindings[i];
        *b = psat.bindings[0];
        memcpy(b->token_id + 28, &i, sizeof(i));
        memcpy(b->node_hash + 28, &i, sizeof(i));
        b->seq = i + 1;
    }
    psat.num_bindings = CA_PSAT_MAX_BINDINGS - 1;
    psat.next_seq = CA_PSAT_MAX_BINDINGS - 1;
    c = claims_of("last", 1);
    cr_assert_eq(ca_psat_bind(&psat, &c, k, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(psat.num_bindings, CA_PSAT_MAX_BINDINGS);
    c = claims_of("one-more", 2);
    cr_assert_eq(ca_psat_check(&psat, &c, k, NOW, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_eq(ca_psat_bind(&psat, &c, k, NOW, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert(strstr(err, "remembered already") != NULL, "%s", err);
    /* once they expire, there is room again */
    c = claims_of("one-more", 2);
    cr_assert_eq(ca_psat_bind(&psat, &c, k, c.exp + CA_PSAT_CLOCK_SKEW_S, err, sizeof(err)),
                 WEFT_OK, "%s", err);
}

/* b64url_decode/b64url_encode: unpadded base64url, for rewriting a token's signature. */
static size_t b64url_decode(uint8_t *out, size_t cap, const char *in, size_t len)
{
    char *std = malloc(len + 4);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        std[n++] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    }
    while (n % 4 != 0) {
        std[n++] = '=';
    }
    size_t out_len = 0;
    cr_assert(EVP_DecodeBase64(out, &out_len, cap, (const uint8_t *)std, n));
    free(std);
    return out_len;
}

static void b64url_encode(char *out, const uint8_t *in, size_t len)
{
    size_t n = EVP_EncodeBlock((uint8_t *)out, in, len);
    while (n > 0 && out[n - 1] == '=') {
        out[--n] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
}

/* mangle returns |token| (ES256) with its signature (r, s) replaced by (r, n - s), which
 * verifies just as well: ECDSA signatures are malleable. */
static char *mangle(const char *token)
{
    const char *dot = strrchr(token, '.');
    uint8_t sig[96];
    cr_assert_eq(b64url_decode(sig, sizeof(sig), dot + 1, strlen(dot + 1)), 64);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL), *ns = BN_new();
    const BIGNUM *order = EC_GROUP_get0_order(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(ec_key)));
    cr_assert(s != NULL && ns != NULL && BN_sub(ns, order, s) &&
              BN_bn2bin_padded(sig + 32, 32, ns));
    BN_free(s);
    BN_free(ns);
    size_t head = (size_t)(dot + 1 - token);
    char *out = malloc(head + 100);
    memcpy(out, token, head);
    b64url_encode(out + head, sig, 64);
    cr_assert_str_neq(out, token);
    return out;
}

Test(psat, a_token_without_jti_has_one_identity_whatever_its_signature)
{
    json_t *cl = valid_claims();
    json_object_del(cl, "jti");
    char *t = sign(header("ES256", "ec-1"), cl, "ES256", ec_key, NULL, 0);
    char *twin = mangle(t);
    struct ca_psat_claims c, c2;
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    cr_assert_eq(validate(twin, &c2), WEFT_OK, "(r, n - s) verifies: %s", err);
    cr_assert_eq(memcmp(c.token_id, c2.token_id, sizeof(c.token_id)), 0,
                 "one token, two identities");
    uint8_t k1[32] = {1}, k2[32] = {2};
    cr_assert_eq(ca_psat_bind(&psat, &c, k1, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_psat_bind(&psat, &c2, k2, NOW, err, sizeof(err)), WEFT_EPOLICY,
                 "the mangled twin bound a second key");
    cr_assert(strstr(err, "a replay") != NULL, "%s", err);
    free(t);
    free(twin);
}

Test(psat, check_records_nothing)
{
    char *t = sign(header("RS256", "rsa-1"), valid_claims(), "RS256", rsa_key, NULL, 0);
    struct ca_psat_claims c;
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    uint8_t k1[32] = {1}, k2[32] = {2};
    cr_assert_eq(ca_psat_check(&psat, &c, k1, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_psat_check(&psat, &c, k2, NOW, err, sizeof(err)), WEFT_OK,
                 "a check bound the token");
    cr_assert_eq(ca_psat_bind(&psat, &c, k2, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_psat_check(&psat, &c, k1, NOW, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_eq(ca_psat_check(&psat, &c, k2, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    free(t);
}

/* claims_of makes the claims of a validated token of |node| with |jti|, without signing. */
static struct ca_psat_claims claims_of(const char *node, uint32_t jti)
{
    struct ca_psat_claims c = {.exp = NOW + 3600};
    snprintf(c.node_name, sizeof(c.node_name), "%s", node);
    snprintf(c.pod_name, sizeof(c.pod_name), "weft-agent-x7k2p");
    memcpy(c.token_id, &jti, sizeof(jti));
    memcpy(c.token_id + 4, node, strlen(node) < 28 ? strlen(node) : 28);
    return c;
}

Test(psat, one_node_cannot_fill_the_bindings)
{
    uint8_t k[32] = {7}, other[32] = {8};
    /* a compromised kubelet mints token after token for its node: far more than the table */
    for (uint32_t i = 0; i < CA_PSAT_MAX_BINDINGS + 10; i++) {
        struct ca_psat_claims c = claims_of("node-evil", i);
        cr_assert_eq(ca_psat_bind(&psat, &c, k, NOW, err, sizeof(err)), WEFT_OK, "%u: %s", i, err);
    }
    cr_assert_eq(psat.num_bindings, CA_PSAT_MAX_BINDINGS_PER_NODE);
    /* every other node still joins */
    for (uint32_t i = 0; i < 100; i++) {
        char node[32];
        snprintf(node, sizeof(node), "node-%u", i);
        struct ca_psat_claims c = claims_of(node, i);
        cr_assert_eq(ca_psat_bind(&psat, &c, k, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    }
    /* the node's newest tokens stay bound; its oldest was replaced */
    struct ca_psat_claims newest = claims_of("node-evil", CA_PSAT_MAX_BINDINGS + 9);
    cr_assert_eq(ca_psat_check(&psat, &newest, other, NOW, err, sizeof(err)), WEFT_EPOLICY);
    struct ca_psat_claims oldest = claims_of("node-evil", 0);
    cr_assert_eq(ca_psat_check(&psat, &oldest, other, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    /* the same token again with its key does not take another place */
    cr_assert_eq(ca_psat_bind(&psat, &newest, k, NOW, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(psat.num_bindings, CA_PSAT_MAX_BINDINGS_PER_NODE + 100);
}

/* p384_jwk returns the JWK of a fresh P-384 key with "alg": "ES384", as kube-apiserver
 * publishes a key of a P-384 --service-account-signing-key-file. */
static json_t *p384_jwk(void)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_secp384r1);
    cr_assert(ec != NULL && EC_KEY_generate_key(ec));
    BIGNUM *x = BN_new(), *y = BN_new();
    cr_assert(EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                                                  x, y, NULL));
    uint8_t xb[48], yb[48];
    char xs[80], ys[80];
    cr_assert(BN_bn2bin_padded(xb, sizeof(xb), x) && BN_bn2bin_padded(yb, sizeof(yb), y));
    b64url_encode(xs, xb, sizeof(xb));
    b64url_encode(ys, yb, sizeof(yb));
    BN_free(x);
    BN_free(y);
    EC_KEY_free(ec);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-384", "x", xs,
                     "y", ys, "kid", "p384", "alg", "ES384", "use", "sig");
}

Test(psat, skips_jwks_keys_it_cannot_use)
{
    ca_psat_cleanup(&psat);
    json_t *es384 = p384_jwk();
    json_t *enc = jwk(other_key, "enc");
    json_object_set_new(enc, "use", json_string("enc"));
    json_t *okp = json_pack("{s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "kid", "ed",
                            "x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    json_t *jwks = json_pack("{s:[o,o,o,o]}", "keys", es384, enc, okp, jwk(ec_key, "ec-1"));
    cr_assert_eq(init_with(jwks, NULL, 0), WEFT_OK, "%s", err);
    cr_assert_eq(psat.num_keys, 1, "only the P-256 key is usable");
    char *t = sign(header("ES256", "ec-1"), valid_claims(), "ES256", ec_key, NULL, 0);
    struct ca_psat_claims c;
    cr_assert_eq(validate(t, &c), WEFT_OK, "%s", err);
    free(t);
    /* a token naming a skipped key finds no key */
    t = sign(header("ES256", "p384"), valid_claims(), "ES256", ec_key, NULL, 0);
    cr_assert_neq(validate(t, &c), WEFT_OK);
    free(t);
    /* nothing usable left: refused, with the reason */
    ca_psat_cleanup(&psat);
    cr_assert_eq(init_with(json_pack("{s:[o]}", "keys", p384_jwk()), NULL, 0), WEFT_EINVAL);
    cr_assert(strstr(err, "no key usable") != NULL, "%s", err);
}
