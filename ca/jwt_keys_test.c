/* ca/jwt_keys_test.c: the published JWT-SVID keys with an injected clock: a prepared key is
 * published before it signs, a retired one stays exactly until its last token expires, a
 * restart keeps what may still be valid and drops what never signed, and the list stays
 * bounded. */
#include <criterion/criterion.h>
#include <string.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "ca/jwt_keys.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"

#define T0 TESTLIB_NOW
#define TTL INT64_C(300)

/* struct held_key is a key as the signer would report it. */
struct held_key {
    uint8_t spki[CA_JWT_MAX_SPKI];
    size_t len;
    char kid[SPIFFE_JWT_KID_LEN + 1];
};

static void make_key(struct held_key *k, enum spiffe_key_type type)
{
    EVP_PKEY *key = spiffe_key_generate(type);
    cr_assert_not_null(key);
    CBB cbb;
    cr_assert(CBB_init_fixed(&cbb, k->spki, sizeof(k->spki)));
    cr_assert(EVP_marshal_public_key(&cbb, key));
    cr_assert(CBB_finish(&cbb, NULL, &k->len));
    if (type == SPIFFE_KEY_EC_P256) {
        cr_assert_eq(spiffe_jwt_kid(key, k->kid), WEFT_OK);
    }
    EVP_PKEY_free(key);
}

static struct ca_jwt_held held(const struct held_key *k, int64_t not_after)
{
    return (struct ca_jwt_held){k->spki, k->len, not_after};
}

/* sync runs ca_jwt_keys_sync; returns whether the list changed. */
static bool sync_at(struct ca_jwt_keys *list, const struct ca_jwt_held *cur,
                    const struct ca_jwt_held *next, int64_t now)
{
    bool changed;
    size_t evicted;
    cr_assert_eq(ca_jwt_keys_sync(list, cur, next, now, TTL, &changed, &evicted), WEFT_OK);
    cr_assert_eq(evicted, 0);
    return changed;
}

static void expect_key(const struct ca_jwt_keys *list, size_t i, const struct held_key *k,
                       enum ca_jwt_role role, int64_t not_after)
{
    cr_assert_lt(i, list->num);
    const struct ca_jwt_key *got = &list->keys[i];
    cr_assert_str_eq(got->kid, k->kid, "key %zu", i);
    cr_assert_eq(got->role, role, "key %zu is %s", i, ca_jwt_keys_role_name(got->role));
    cr_assert_eq(got->not_after, not_after, "key %zu: not_after %lld", i,
                 (long long)got->not_after);
    cr_assert_eq(got->spki_len, k->len);
    cr_assert_eq(memcmp(got->spki, k->spki, k->len), 0);
}

Test(ca_jwt_keys, a_next_key_is_published_before_it_signs_and_a_retired_one_until_expiry)
{
    static struct ca_jwt_keys list;
    struct held_key a, b;
    make_key(&a, SPIFFE_KEY_EC_P256);
    make_key(&b, SPIFFE_KEY_EC_P256);

    /* start: a signs at once */
    struct ca_jwt_held ha = held(&a, T0 + 1000);
    cr_assert(sync_at(&list, &ha, NULL, T0));
    cr_assert_eq(list.num, 1);
    expect_key(&list, 0, &a, CA_JWT_CURRENT, T0 + 1000);
    cr_assert_eq(ca_jwt_keys_current(&list), &list.keys[0]);
    cr_assert_not(sync_at(&list, &ha, NULL, T0 + 1), "nothing changed: nothing to publish");

    /* b is prepared: published beside a, which still signs */
    struct ca_jwt_held hb = held(&b, T0 + 2000);
    cr_assert(sync_at(&list, &ha, &hb, T0 + 400));
    cr_assert_eq(list.num, 2);
    expect_key(&list, 0, &a, CA_JWT_CURRENT, T0 + 1000);
    expect_key(&list, 1, &b, CA_JWT_NEXT, T0 + 2000);

    /* b signs: a retires, published one token lifetime more, no longer */
    cr_assert(sync_at(&list, &hb, NULL, T0 + 500));
    cr_assert_eq(list.num, 2);
    expect_key(&list, 0, &b, CA_JWT_CURRENT, T0 + 2000);
    expect_key(&list, 1, &a, CA_JWT_RETIRED, T0 + 500 + TTL);

    /* pruned the second its last token expires (a token is valid while now < exp) */
    cr_assert_eq(ca_jwt_keys_prune(&list, T0 + 500 + TTL - 1), 0);
    cr_assert_eq(list.num, 2);
    cr_assert_eq(ca_jwt_keys_prune(&list, T0 + 500 + TTL), 1);
    cr_assert_eq(list.num, 1);
    expect_key(&list, 0, &b, CA_JWT_CURRENT, T0 + 2000);
}

Test(ca_jwt_keys, a_retiring_key_keeps_the_earlier_of_its_bounds)
{
    static struct ca_jwt_keys list;
    struct held_key a, b;
    make_key(&a, SPIFFE_KEY_EC_P256);
    make_key(&b, SPIFFE_KEY_EC_P256);
    struct ca_jwt_held ha = held(&a, T0 + 100), hb = held(&b, T0 + 5000);
    cr_assert(sync_at(&list, &ha, NULL, T0));
    /* a could sign nothing expiring after T0 + 100: retiring at T0 + 50 keeps that bound */
    cr_assert(sync_at(&list, &hb, NULL, T0 + 50));
    expect_key(&list, 1, &a, CA_JWT_RETIRED, T0 + 100);
}

Test(ca_jwt_keys, a_prepared_key_replaced_before_it_signed_goes_at_once)
{
    static struct ca_jwt_keys list;
    struct held_key a, b, c;
    make_key(&a, SPIFFE_KEY_EC_P256);
    make_key(&b, SPIFFE_KEY_EC_P256);
    make_key(&c, SPIFFE_KEY_EC_P256);
    struct ca_jwt_held ha = held(&a, T0 + 1000), hb = held(&b, T0 + 2000), hc = held(&c, T0 + 2100);
    cr_assert(sync_at(&list, &ha, &hb, T0));
    cr_assert(sync_at(&list, &ha, &hc, T0 + 100));
    cr_assert_eq(list.num, 2, "b never signed: no token of it can exist");
    expect_key(&list, 0, &a, CA_JWT_CURRENT, T0 + 1000);
    expect_key(&list, 1, &c, CA_JWT_NEXT, T0 + 2100);
}

Test(ca_jwt_keys, a_restart_keeps_the_keys_whose_tokens_may_be_valid)
{
    static struct ca_jwt_keys list, back;
    struct held_key a, b, c;
    make_key(&a, SPIFFE_KEY_EC_P256);
    make_key(&b, SPIFFE_KEY_EC_P256);
    make_key(&c, SPIFFE_KEY_EC_P256);
    struct ca_jwt_held ha = held(&a, T0 + 1000), hb = held(&b, T0 + 2000), hc = held(&c, T0 + 3000);
    cr_assert(sync_at(&list, &ha, NULL, T0));
    cr_assert(sync_at(&list, &hb, &hc, T0 + 100)); /* a retired until T0 + 400, c prepared */
    char *text;
    size_t len;
    cr_assert_eq(ca_jwt_keys_encode(&text, &len, &list, TTL), WEFT_OK);
    cr_assert_eq(strlen(text), len);

    /* a restart at T0 + 200: b may have signed until then, c never signed */
    char err[256];
    cr_assert_eq(ca_jwt_keys_restore(&back, (const uint8_t *)text, len, T0 + 200, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(back.num, 2);
    expect_key(&back, 0, &b, CA_JWT_RETIRED, T0 + 200 + TTL);
    expect_key(&back, 1, &a, CA_JWT_RETIRED, T0 + 100 + TTL);
    cr_assert_null(ca_jwt_keys_current(&back), "the new signer's key is not known yet");

    /* a later restart: a's tokens have all expired */
    cr_assert_eq(
        ca_jwt_keys_restore(&back, (const uint8_t *)text, len, T0 + 100 + TTL, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_eq(back.num, 1);
    expect_key(&back, 0, &b, CA_JWT_RETIRED, T0 + 100 + 2 * TTL);
    free(text);

    /* what does not parse is refused as a whole, leaving nothing */
    static const char *const bad[] = {
        "",
        "weft-jwt-keys 2 ttl=300\n",
        "weft-jwt-keys 1 ttl=-1\n",
        "weft-jwt-keys 1 ttl=300\ncurrent 1700001000\n",
        "weft-jwt-keys 1 ttl=300\nboss 1700001000 AAAA\n",
        "weft-jwt-keys 1 ttl=300\nretired 1700001000 !!!!\n",
        "weft-jwt-keys 1 ttl=300\nretired 1700001000 MFkwEwYHKoZIzj0CAQ==\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        back.num = 5;
        cr_assert_eq(ca_jwt_keys_restore(&back, (const uint8_t *)bad[i], strlen(bad[i]), T0, err,
                                         sizeof(err)),
                     WEFT_EINVAL, "case %zu", i);
        cr_assert_eq(back.num, 0);
        cr_assert_not_null(strstr(err, "stored JWT keys"), "%s", err);
    }
    /* a good key with a good time, then with one no certificate could say, a negative one,
     * one that is not a number */
    static const char *const times[] = {"1700001000", "253402300800", "-1", "17000010x"};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        char line[1024];
        uint8_t b64[1024];
        size_t n = EVP_EncodeBlock(b64, a.spki, a.len);
        snprintf(line, sizeof(line), "weft-jwt-keys 1 ttl=300\nretired %s %.*s\n", times[i], (int)n,
                 (const char *)b64);
        cr_assert_eq(
            ca_jwt_keys_restore(&back, (const uint8_t *)line, strlen(line), T0, err, sizeof(err)),
            i == 0 ? WEFT_OK : WEFT_EINVAL, "%s", times[i]);
        cr_assert_eq(back.num, i == 0 ? 1 : 0);
    }
}

Test(ca_jwt_keys, each_key_is_a_jwt_svid_jwk_in_the_bundle)
{
    static struct ca_jwt_keys list;
    struct held_key a, b;
    make_key(&a, SPIFFE_KEY_EC_P256);
    make_key(&b, SPIFFE_KEY_EC_P256);
    struct ca_jwt_held ha = held(&a, T0 + 1000), hb = held(&b, T0 + 2000);
    cr_assert(sync_at(&list, &ha, &hb, T0));
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    struct spiffe_bundle *bundle = spiffe_bundle_new(&td);
    cr_assert_eq(ca_jwt_keys_add_to_bundle(&list, bundle), WEFT_OK);
    cr_assert_eq(json_array_size(bundle->other_keys), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *jwk = json_array_get(bundle->other_keys, i);
        cr_assert_str_eq(json_string_value(json_object_get(jwk, "use")), "jwt-svid");
        cr_assert_str_eq(json_string_value(json_object_get(jwk, "kid")), list.keys[i].kid);
        cr_assert_str_eq(json_string_value(json_object_get(jwk, "crv")), "P-256");
    }
    /* and it survives the bundle document: what bundle.json carries */
    char *doc;
    size_t len;
    cr_assert_eq(spiffe_bundle_to_json(&doc, &len, bundle), WEFT_OK);
    struct spiffe_bundle *again = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_from_json(&again, &td, (const uint8_t *)doc, len, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_eq(json_array_size(again->other_keys), 2);
    free(doc);
    spiffe_bundle_free(again);
    spiffe_bundle_free(bundle);
}

Test(ca_jwt_keys, the_list_is_bounded_and_refuses_keys_that_are_not_p256)
{
    static struct ca_jwt_keys list;
    static struct held_key keys[CA_JWT_MAX_KEYS + 3];
    bool changed;
    size_t evicted = 0, total = 0;
    for (size_t i = 0; i < CA_JWT_MAX_KEYS + 3; i++) {
        make_key(&keys[i], SPIFFE_KEY_EC_P256);
        struct ca_jwt_held h = held(&keys[i], T0 + 100000);
        cr_assert_eq(ca_jwt_keys_sync(&list, &h, NULL, T0 + (int64_t)i, TTL, &changed, &evicted),
                     WEFT_OK);
        total += evicted;
    }
    cr_assert_eq(list.num, CA_JWT_MAX_KEYS);
    cr_assert_eq(total, 3, "one retired key went for each key past the bound");
    expect_key(&list, 0, &keys[CA_JWT_MAX_KEYS + 2], CA_JWT_CURRENT, T0 + 100000);
    /* the ones that went are the oldest retired */
    expect_key(&list, CA_JWT_MAX_KEYS - 1, &keys[3], CA_JWT_RETIRED, T0 + 4 + TTL);

    struct held_key ed;
    make_key(&ed, SPIFFE_KEY_ED25519);
    struct ca_jwt_held h = held(&ed, T0 + 100000);
    cr_assert_eq(ca_jwt_keys_sync(&list, &h, NULL, T0 + 1000, TTL, &changed, &evicted),
                 WEFT_EINVAL);
    cr_assert_eq(list.num, CA_JWT_MAX_KEYS, "unchanged");
    expect_key(&list, 0, &keys[CA_JWT_MAX_KEYS + 2], CA_JWT_CURRENT, T0 + 100000);
}
