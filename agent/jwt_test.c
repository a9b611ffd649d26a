/* agent/jwt_test.c: the agent's JWT-SVID side with keys made here, the test playing the CA:
 * published keys become a JWKS and validate tokens; a token is cached until half its life;
 * a key change drops the cache; the claims come back as a google.protobuf.Struct. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "agent/jwt.h"
#include "lib/spiffe/jwt.h"
#include "lib/spiffe/x509svid.h"

#define NOW 1800000000

static EVP_PKEY *key;
static char kid[SPIFFE_JWT_KID_LEN + 1];
static uint8_t *spki;
static size_t spki_len;

static void setup(void)
{
    key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_not_null(key);
    cr_assert_eq(spiffe_jwt_kid(key, kid), WEFT_OK);
    CBB cbb;
    cr_assert(CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, key) &&
              CBB_finish(&cbb, &spki, &spki_len));
}

static void teardown(void)
{
    EVP_PKEY_free(key);
    OPENSSL_free(spki);
}

TestSuite(agent_jwt, .init = setup, .fini = teardown, .timeout = 30);

static bool publish(struct agent_jwt *j, int64_t not_after)
{
    Weft__Ca__V1__JwtKey k = WEFT__CA__V1__JWT_KEY__INIT, *kp = &k;
    k.kid = kid;
    k.public_key = (ProtobufCBinaryData){spki_len, spki};
    k.not_after = not_after;
    return agent_jwt_set_keys(j, &kp, 1, NOW);
}

static char *sign(const char *sub, const char *aud, int64_t exp)
{
    struct spiffe_id id;
    cr_assert_eq(spiffe_id_parse(&id, sub, strlen(sub), NULL), WEFT_OK);
    const char *auds[] = {aud};
    struct spiffe_jwt_request req = {&id, auds, 1, NOW - 10, exp};
    char *token;
    struct spiffe_why why;
    cr_assert_eq(spiffe_jwt_sign(&token, &req, key, kid, &why), WEFT_OK, "%s", why.msg);
    return token;
}

Test(agent_jwt, published_keys_make_the_jwks_and_validate_tokens)
{
    struct agent_jwt *j = agent_jwt_new("example.org");
    cr_assert(!agent_jwt_ready(j));
    JWTBundlesResponse b = JWTBUNDLES_RESPONSE__INIT;
    cr_assert_eq(agent_jwt_bundles(j, &b), 0);
    cr_assert(publish(j, NOW + 600));
    cr_assert(!publish(j, NOW + 600), "the same keys again change nothing");
    cr_assert(agent_jwt_ready(j));
    cr_assert_eq(agent_jwt_bundles(j, &b), 1);
    cr_assert_str_eq(b.bundles[0]->key, "spiffe://example.org");
    json_t *jwks =
        json_loadb((const char *)b.bundles[0]->value.data, b.bundles[0]->value.len, 0, NULL);
    cr_assert_not_null(jwks);
    json_t *k0 = json_array_get(json_object_get(jwks, "keys"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(k0, "kid")), kid);
    cr_assert_str_eq(json_string_value(json_object_get(k0, "use")), "jwt-svid");
    json_decref(jwks);

    char *t = sign("spiffe://example.org/ns/shop/sa/web", "db", NOW + 300);
    ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
    char why[256];
    cr_assert_eq(agent_jwt_validate(j, t, "db", NOW, &resp, why, sizeof(why)), WEFT_OK, "%s", why);
    cr_assert_str_eq(resp.spiffe_id, "spiffe://example.org/ns/shop/sa/web");
    bool saw_sub = false, saw_exp = false;
    for (size_t i = 0; i < resp.claims->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *f = resp.claims->fields[i];
        if (strcmp(f->key, "sub") == 0) {
            saw_sub = f->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE &&
                      strcmp(f->value->string_value, resp.spiffe_id) == 0;
        }
        if (strcmp(f->key, "exp") == 0) {
            saw_exp = f->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE &&
                      f->value->number_value == NOW + 300;
        }
    }
    cr_assert(saw_sub && saw_exp, "the claims carry sub and exp as they are");
    /* another audience, an expired token, a key no longer published */
    cr_assert_eq(agent_jwt_validate(j, t, "web", NOW, &resp, why, sizeof(why)), WEFT_EINVAL);
    cr_assert(strstr(why, "aud") != NULL, "%s", why);
    cr_assert_eq(agent_jwt_validate(j, t, "db", NOW + 300, &resp, why, sizeof(why)), WEFT_EINVAL);
    cr_assert(publish(j, NOW - 1), "a key past its time is dropped");
    cr_assert_eq(agent_jwt_validate(j, t, "db", NOW, &resp, why, sizeof(why)), WEFT_EINVAL);
    free(t);
    agent_jwt_free(j);
}

Test(agent_jwt, a_token_is_reused_until_half_its_life_and_dropped_with_its_key)
{
    struct agent_jwt *j = agent_jwt_new("example.org");
    cr_assert(publish(j, NOW + 600));
    char *aud[] = {"db", "cache"}, *other[] = {"db"};
    const char *web = "spiffe://example.org/ns/shop/sa/web";
    cr_assert_null(agent_jwt_cached(j, "e1", web, aud, 2, NOW));
    agent_jwt_keep(j, "e1", web, aud, 2, "tok-1", NOW, NOW + 300);
    cr_assert_str_eq(agent_jwt_cached(j, "e1", web, aud, 2, NOW + 149), "tok-1");
    cr_assert_null(agent_jwt_cached(j, "e1", web, aud, 2, NOW + 150), "half its life is gone");
    cr_assert_null(agent_jwt_cached(j, "e1", web, other, 1, NOW), "another audience set");
    cr_assert_null(agent_jwt_cached(j, "e2", web, aud, 2, NOW), "another entry");
    cr_assert_null(agent_jwt_cached(j, "e1", "spiffe://example.org/ns/shop/sa/new", aud, 2, NOW),
                   "the entry now names another ID: its old token names the old one");
    /* a full cache replaces its oldest token */
    for (int i = 0; i < AGENT_JWT_CACHE; i++) {
        char e[16];
        snprintf(e, sizeof(e), "f%d", i);
        agent_jwt_keep(j, e, web, other, 1, "tok", NOW + 1 + i, NOW + 1000);
    }
    cr_assert_null(agent_jwt_cached(j, "e1", web, aud, 2, NOW + 10));
    cr_assert_str_eq(agent_jwt_cached(j, "f255", web, other, 1, NOW + 300), "tok");
    cr_assert(!publish(j, NOW + 900), "the same key, published longer, is the same set");
    cr_assert(publish(j, NOW - 1), "the key retired: a new set");
    cr_assert_null(agent_jwt_cached(j, "f255", web, other, 1, NOW + 300), "the cache went with it");
    agent_jwt_free(j);
}

Test(agent_jwt, an_entry_gets_ten_mints_a_second)
{
    struct agent_jwt *j = agent_jwt_new("example.org");
    for (int i = 0; i < AGENT_JWT_MINTS_PER_S; i++) {
        cr_assert(agent_jwt_admit(j, "e1", NOW));
    }
    cr_assert(!agent_jwt_admit(j, "e1", NOW), "the eleventh in the same second waits");
    cr_assert(agent_jwt_admit(j, "e1", NOW + 1), "a new second");
    agent_jwt_free(j);
}

Test(agent_jwt, requests_name_one_to_sixteen_audiences_of_sane_size)
{
    char why[128];
    char *none[] = {NULL};
    cr_assert_eq(agent_jwt_check_request(none, 0, why, sizeof(why)), WEFT_EINVAL);
    char *empty[] = {"db", ""};
    cr_assert_eq(agent_jwt_check_request(empty, 2, why, sizeof(why)), WEFT_EINVAL);
    cr_assert(strstr(why, "audience 2 is empty") != NULL, "%s", why);
    char big[SPIFFE_JWT_MAX_AUDIENCE + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *bigs[] = {big};
    cr_assert_eq(agent_jwt_check_request(bigs, 1, why, sizeof(why)), WEFT_EINVAL);
    char *many[SPIFFE_JWT_MAX_AUDIENCES + 1];
    for (size_t i = 0; i < nitems(many); i++) {
        many[i] = "x";
    }
    cr_assert_eq(agent_jwt_check_request(many, nitems(many), why, sizeof(why)), WEFT_EINVAL);
    cr_assert_eq(agent_jwt_check_request(many, nitems(many) - 1, why, sizeof(why)), WEFT_OK);
}
