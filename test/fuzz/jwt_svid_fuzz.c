/* Fuzzes JWT-SVID validation (lib/spiffe/jwt.h): the input is a token, validated for the
 * audience "api" at a fixed time against a fixed bundle set. The keys are fixed too, so that
 * seeds can be tokens that really validate and the fuzzer reaches every check, the signature and
 * the success path: example.org publishes a P-256 and a P-384 key derived from the scalars below
 * and an RSA-2048 public key; other.org publishes only the P-384 key. The seeds in
 * corpus/jwt_svid were signed with these keys by an independent implementation (Python's
 * cryptography), the RSA ones with a throwaway private key whose public half is RSA_N. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>

#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000

/* SHA-256("weft jwt_svid_fuzz P-256") and SHA-384("weft jwt_svid_fuzz P-384") */
static const char P256_SCALAR[] =
    "0E3EC0B5DA207DBF19E7F94649BFB38156A0E9BBF3379FD7CAC41301E2ECD811";
static const char P384_SCALAR[] = "49FBDE607DABEFF3527EC5D79E3488E34A4CE5B168417BB5"
                                  "8A49187F1195CE255767FDF94344E2062D3BF2AAD605AC36";
/* their kids, as the seeds name them (base64url(SHA-256(SPKI)), computed apart from jwt.c) */
static const char P256_KID[] = "BY-JefvRMTriL0WdOp815FuCODZ0L67wwjazWDgmFJ4";
static const char P384_KID[] = "QuvZ52s3QXP-FuiMKykWPpCx2N1Pr8BkUli6hAVWBUE";
static const char RSA_JWK[] =
    "{\"kty\":\"RSA\",\"use\":\"jwt-svid\",\"kid\":\"rsa-2048\",\"e\":\"AQAB\",\"n\":\""
    "n0dGo1q8pzi1Mqz-ZSInudAz3wBU3a7Ay0q0pOnNijwRhwGUBye1-Yg4Q1wmod6hsz5vG3OoI1wSZw6N37cufu8G"
    "dkgfmTaalwz3jWGgld6aTepIMpFRdvjRRcEcpDaQUN8V4EXr1S4dxOJegdBU-ptcOwerb5b6BbUAV2Hm4Po94p5L"
    "XqZCCoqR_Ct9skMCAU556fcpgyI7viUqopyCektU04vWC_beZMoHRe1trK3FB8GGAF2GXJTQHh5xNWKmcvB2Hu5P"
    "M9cgJirsJssO_DV49M9vpPmcmbjwdXkLFn1FQxnQlaY02glNysxxWvCYrGHC5xi63RyaV8l36Hg51Q\"}";

/* fixed_ec_key returns the key of curve |nid| with the private scalar |hex|. */
static EVP_PKEY *fixed_ec_key(int nid, const char *hex)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
    BIGNUM *d = NULL;
    EC_POINT *pub = NULL;
    EVP_PKEY *key = EVP_PKEY_new();
    if (ec == NULL || key == NULL || !BN_hex2bn(&d, hex) ||
        (pub = EC_POINT_new(EC_KEY_get0_group(ec))) == NULL ||
        !EC_POINT_mul(EC_KEY_get0_group(ec), pub, d, NULL, NULL, NULL) ||
        !EC_KEY_set_private_key(ec, d) || !EC_KEY_set_public_key(ec, pub) ||
        !EVP_PKEY_assign_EC_KEY(key, ec)) {
        abort();
    }
    BN_free(d);
    EC_POINT_free(pub);
    return key;
}

/* publish adds |key|'s jwt-svid JWK to |b| and checks its kid is |want_kid|. */
static void publish(struct spiffe_bundle *b, const EVP_PKEY *key, const char *want_kid)
{
    char kid[SPIFFE_JWT_KID_LEN + 1];
    if (spiffe_jwt_kid(key, kid) != WEFT_OK || strcmp(kid, want_kid) != 0) {
        abort(); /* the seeds would no longer reach the signature check */
    }
    json_t *jwk = spiffe_jwt_jwk(key, kid);
    if (jwk == NULL || json_array_append_new(b->other_keys, jwk) != 0) {
        abort();
    }
}

static const struct spiffe_bundle_set *fixed_bundles(void)
{
    static struct spiffe_bundle_set set;
    static int made;
    if (made) {
        return &set;
    }
    EVP_PKEY *p256 = fixed_ec_key(NID_X9_62_prime256v1, P256_SCALAR);
    EVP_PKEY *p384 = fixed_ec_key(NID_secp384r1, P384_SCALAR);
    struct spiffe_id td, other;
    json_error_t err;
    json_t *rsa = json_loads(RSA_JWK, 0, &err);
    if (spiffe_td_parse(&td, "example.org", 11, NULL) != WEFT_OK ||
        spiffe_td_parse(&other, "other.org", 9, NULL) != WEFT_OK || rsa == NULL) {
        abort();
    }
    struct spiffe_bundle *b = spiffe_bundle_new(&td), *o = spiffe_bundle_new(&other);
    publish(b, p256, P256_KID);
    publish(b, p384, P384_KID);
    publish(o, p384, P384_KID);
    if (json_array_append_new(b->other_keys, rsa) != 0) {
        abort();
    }
    spiffe_bundle_set_init(&set);
    if (spiffe_bundle_set_put(&set, b) != WEFT_OK || spiffe_bundle_set_put(&set, o) != WEFT_OK) {
        abort();
    }
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    made = 1;
    return &set;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct spiffe_bundle_set *set = fixed_bundles();
    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    int rc = spiffe_jwt_validate(&svid, (const char *)data, size, "api", set, NOW, &why);
    if (rc != WEFT_OK) {
        /* a refusal names its rule, says why, and leaves nothing to release */
        if (why.rule == SPIFFE_RULE_NONE || why.msg[0] == '\0' || svid.claims != NULL ||
            svid.sub.len != 0) {
            abort();
        }
        return 0;
    }
    if (!json_is_object(svid.claims) || spiffe_id_is_td(&svid.sub) || svid.exp <= NOW) {
        abort();
    }
    /* the same token at its expiry fails on exp and nothing else: no other check reads the
     * time (an exp of 2^63 or more is clamped to INT64_MAX, which no int64 time reaches) */
    struct spiffe_jwt_svid later;
    if (svid.exp != INT64_MAX && (spiffe_jwt_validate(&later, (const char *)data, size, "api", set,
                                                      svid.exp, &why) == WEFT_OK ||
                                  why.rule != SPIFFE_RULE_JWT_EXPIRED)) {
        abort();
    }
    spiffe_jwt_svid_cleanup(&svid);
    return 0;
}
