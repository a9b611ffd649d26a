/* lib/spiffe/bundle_test.c: the contract of trust bundles: PEM, the SPIFFE bundle JSON (a JWK
 * Set), bundle sets and the federation bundle map (shared/reference/spiffe.md §E, B12). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>

#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"
#include "lib/base/file.h"

#define GO_SPIFFE "test/testdata/go-spiffe/"

/* --- helpers ------------------------------------------------------------------------------ */

static struct spiffe_id td_id(const char *name)
{
    struct spiffe_id id;
    cr_assert_eq(spiffe_td_parse(&id, name, strlen(name), NULL), WEFT_OK, "%s", name);
    return id;
}

static uint8_t *read_file(const char *path, size_t *out_len)
{
    uint8_t *data;
    cr_assert_eq(weft_file_read(&data, out_len, path, 1 << 20), WEFT_OK, "%s", path);
    return data;
}

static int from_pem_file(struct spiffe_bundle **out, const char *path, struct spiffe_why *why)
{
    struct spiffe_id td = td_id("domain.test");
    size_t len;
    uint8_t *data = read_file(path, &len);
    int rc = spiffe_bundle_from_pem(out, &td, data, len, why);
    free(data);
    return rc;
}

static int from_json_file(struct spiffe_bundle **out, const char *path, struct spiffe_why *why)
{
    struct spiffe_id td = td_id("domain.test");
    size_t len;
    uint8_t *data = read_file(path, &len);
    int rc = spiffe_bundle_from_json(out, &td, data, len, why);
    free(data);
    return rc;
}

static int from_json(struct spiffe_bundle **out, const char *json, struct spiffe_why *why)
{
    struct spiffe_id td = td_id(TESTLIB_TD);
    return spiffe_bundle_from_json(out, &td, (const uint8_t *)json, strlen(json), why);
}

/* expect_json_rejected parses |json| and checks it fails with |rc| and |rule|. */
static void expect_json_rejected(const char *json, int rc, enum spiffe_rule rule)
{
    struct spiffe_bundle *b = (struct spiffe_bundle *)1;
    struct spiffe_why why;
    int got = from_json(&b, json, &why);
    cr_assert_eq(got, rc, "%.200s: rc %d, want %d (%s)", json, got, rc, why.msg);
    cr_assert_eq(why.rule, rule, "%.200s: rule %d (%s), want %d", json, why.rule, why.msg, rule);
    cr_assert_null(b, "%.200s: a bundle was returned with an error", json);
}

/* parse_ok parses |json| and returns the bundle, asserting success. */
static struct spiffe_bundle *parse_ok(const char *json)
{
    struct spiffe_bundle *b = NULL;
    struct spiffe_why why;
    cr_assert_eq(from_json(&b, json, &why), WEFT_OK, "%.200s: %s", json, why.msg);
    cr_assert_not_null(b);
    return b;
}

/* dump returns |doc| as a NUL-terminated string (free with free()) and drops |doc|. */
static char *dump(json_t *doc)
{
    cr_assert_not_null(doc);
    char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_assert_not_null(s);
    json_decref(doc);
    return s;
}

/* b64_std returns the standard base64 of |len| bytes, NUL-terminated (free with free()). */
static char *b64_std(const uint8_t *in, size_t len)
{
    size_t n;
    cr_assert(EVP_EncodedLength(&n, len));
    char *s = malloc(n);
    EVP_EncodeBlock((uint8_t *)s, in, len);
    return s;
}

static char *cert_b64(X509 *cert)
{
    size_t der_len;
    uint8_t *der = testlib_der(cert, &der_len);
    cr_assert_not_null(der);
    char *s = b64_std(der, der_len);
    OPENSSL_free(der);
    return s;
}

/* x509_jwk returns a new x509-svid JWK {kty, use, x5c: [cert]} for |cert|. */
static json_t *x509_jwk(X509 *cert, const char *kty)
{
    char *b64 = cert_b64(cert);
    json_t *jwk = json_pack("{s:s, s:s, s:[s]}", "use", "x509-svid", "kty", kty, "x5c", b64);
    free(b64);
    cr_assert_not_null(jwk);
    return jwk;
}

static json_t *jwt_jwk(const char *kid)
{
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "use", "jwt-svid", "kty", "EC", "kid",
                            kid, "crv", "P-256", "x", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                            "y", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
    cr_assert_not_null(jwk);
    return jwk;
}

/* doc_with_keys returns {"keys": keys} as a string, taking |keys|. */
static char *doc_with_keys(json_t *keys) { return dump(json_pack("{s:o}", "keys", keys)); }

static void mint_root(struct testlib_cred *out, const char *td, enum spiffe_key_type type)
{
    cr_assert_eq(testlib_mint_root(out, td, type, TESTLIB_NOW - TESTLIB_HOUR, TESTLIB_DAY),
                 WEFT_OK);
}

/* b64url_decode decodes base64url without padding (RFC 7518 §2) into |out|. */
static size_t b64url_decode(uint8_t *out, size_t cap, const char *in)
{
    size_t len = strlen(in);
    char *std = malloc(len + 4);
    for (size_t i = 0; i < len; i++) {
        std[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    }
    while (len % 4 != 0) {
        std[len++] = '=';
    }
    size_t n;
    cr_assert(EVP_DecodeBase64(out, &n, cap, (const uint8_t *)std, len), "bad base64url %s", in);
    free(std);
    return n;
}

/* --- PEM ----------------------------------------------------------------------------------- */

Test(bundle_pem, certs_pem_round_trips_byte_for_byte)
{
    struct spiffe_bundle *b = NULL;
    struct spiffe_why why;
    char *pem = NULL;
    size_t pem_len, file_len;
    cr_assert_eq(from_pem_file(&b, GO_SPIFFE "x509bundle/certs.pem", &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(sk_X509_num(b->x509), 2);
    cr_assert_str_eq(b->td.str, "spiffe://domain.test");
    cr_assert_eq(spiffe_bundle_to_pem(&pem, &pem_len, b), WEFT_OK);
    uint8_t *file = read_file(GO_SPIFFE "x509bundle/certs.pem", &file_len);
    cr_assert_eq(pem_len, file_len, "%zu bytes written, the file has %zu", pem_len, file_len);
    cr_assert_eq(memcmp(pem, file, file_len), 0);
    cr_assert_eq(pem[pem_len], '\0');
    free(file);
    free(pem);
    spiffe_bundle_free(b);
}

Test(bundle_pem, go_spiffe_files_per_vectors)
{
    static const struct {
        const char *file;
        int rc;
        size_t num_authorities;
    } cases[] = {
        {"x509bundle/cert.pem", WEFT_OK, 1},
        {"x509bundle/certs.pem", WEFT_OK, 2},
        {"x509bundle/empty.pem", WEFT_OK, 0},
        {"x509bundle/not-pem.pem", WEFT_EINVAL, 0},
        {"x509bundle/corrupted.pem", WEFT_EINVAL, 0},
        /* A key is never an authority: the key block is skipped. */
        {"x509bundle/key.pem", WEFT_OK, 0},
    };
    for (size_t i = 0; i < nitems(cases); i++) {
        char path[256];
        struct spiffe_bundle *b = (struct spiffe_bundle *)1;
        struct spiffe_why why;
        snprintf(path, sizeof(path), GO_SPIFFE "%s", cases[i].file);
        int rc = from_pem_file(&b, path, &why);
        cr_assert_eq(rc, cases[i].rc, "%s: rc %d (%s)", cases[i].file, rc, why.msg);
        if (rc == WEFT_OK) {
            cr_assert_eq(sk_X509_num(b->x509), cases[i].num_authorities, "%s", cases[i].file);
            cr_assert_eq(json_array_size(b->other_keys), 0, "%s", cases[i].file);
        } else {
            cr_assert_null(b);
            cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_PEM, "%s: rule %d (%s)", cases[i].file,
                         why.rule, why.msg);
        }
        spiffe_bundle_free(rc == WEFT_OK ? b : NULL);
    }
}

Test(bundle_pem, identical_authorities_are_kept_once)
{
    size_t a_len, b_len;
    uint8_t *a = read_file(GO_SPIFFE "x509bundle/certs.pem", &a_len);
    uint8_t *c = read_file(GO_SPIFFE "x509bundle/cert.pem", &b_len);
    uint8_t *both = malloc(a_len + b_len);
    memcpy(both, a, a_len);
    memcpy(both + a_len, c, b_len);
    struct spiffe_id td = td_id("domain.test");
    struct spiffe_bundle *b = NULL;
    cr_assert_eq(spiffe_bundle_from_pem(&b, &td, both, a_len + b_len, NULL), WEFT_OK);
    cr_assert_eq(sk_X509_num(b->x509), 2, "cert.pem is already in certs.pem");
    spiffe_bundle_free(b);
    free(both);
    free(c);
    free(a);
}

/* mint_roots makes |n| distinct roots. */
static void mint_roots(struct testlib_cred *roots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mint_root(&roots[i], TESTLIB_TD, SPIFFE_KEY_EC_P256);
    }
}

static void free_roots(struct testlib_cred *roots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        testlib_cred_cleanup(&roots[i]);
    }
}

Test(bundle_pem, one_authority_past_the_limit)
{
    enum { N = SPIFFE_BUNDLE_MAX_AUTHORITIES + 1 };
    struct testlib_cred roots[N];
    X509 *certs[N];
    struct spiffe_id td = td_id(TESTLIB_TD);
    struct spiffe_bundle *b = NULL;
    struct spiffe_why why;
    size_t len;
    mint_roots(roots, N);
    for (size_t i = 0; i < N; i++) {
        certs[i] = roots[i].cert;
    }
    STACK_OF(X509) *at_limit = testlib_chain(certs, N - 1), *past = testlib_chain(certs, N);
    char *pem = NULL;
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, at_limit), WEFT_OK);
    cr_assert_eq(spiffe_bundle_from_pem(&b, &td, (const uint8_t *)pem, len, &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_eq(sk_X509_num(b->x509), SPIFFE_BUNDLE_MAX_AUTHORITIES);
    spiffe_bundle_free(b);
    free(pem);
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, past), WEFT_OK);
    cr_assert_eq(spiffe_bundle_from_pem(&b, &td, (const uint8_t *)pem, len, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_LIMIT, "%s", why.msg);
    cr_assert_null(b);
    free(pem);

    /* spiffe_bundle_add_x509 keeps the same limit, and adding a duplicate is not adding. */
    b = spiffe_bundle_new(&td);
    for (size_t i = 0; i < N - 1; i++) {
        cr_assert_eq(spiffe_bundle_add_x509(b, certs[i]), WEFT_OK);
    }
    cr_assert_eq(spiffe_bundle_add_x509(b, certs[0]), WEFT_OK, "a duplicate at the limit");
    cr_assert_eq(spiffe_bundle_add_x509(b, certs[N - 1]), WEFT_ELIMIT);
    cr_assert_eq(sk_X509_num(b->x509), SPIFFE_BUNDLE_MAX_AUTHORITIES);
    spiffe_bundle_free(b);

    sk_X509_pop_free(at_limit, X509_free);
    sk_X509_pop_free(past, X509_free);
    free_roots(roots, N);
}

Test(bundle_pem, der_concatenation_is_accepted)
{
    struct testlib_cred roots[2];
    struct spiffe_id td = td_id(TESTLIB_TD);
    struct spiffe_bundle *b = NULL;
    uint8_t *der;
    size_t len;
    mint_roots(roots, 2);
    X509 *certs[2] = {roots[0].cert, roots[1].cert};
    STACK_OF(X509) *s = testlib_chain(certs, 2);
    cr_assert_eq(spiffe_certs_to_der(&der, &len, s), WEFT_OK);
    cr_assert_eq(spiffe_bundle_from_pem(&b, &td, der, len, NULL), WEFT_OK);
    cr_assert_eq(sk_X509_num(b->x509), 2);
    cr_assert_eq(X509_cmp(sk_X509_value(b->x509, 1), roots[1].cert), 0);
    spiffe_bundle_free(b);
    free(der);
    sk_X509_pop_free(s, X509_free);
    free_roots(roots, 2);
}

/* --- JSON: go-spiffe's files --------------------------------------------------------------- */

Test(bundle_json, go_spiffe_valid_files)
{
    static const struct {
        const char *file;
        size_t num_other_keys;
        bool has_seq_and_hint;
    } cases[] = {
        {"spiffebundle/spiffebundle_valid_1.json", 1, false},
        {"spiffebundle/spiffebundle_valid_2.json", 6, true},
        {"spiffebundle/spiffebundle_valid_with_wit.json", 4, true},
    };
    for (size_t i = 0; i < nitems(cases); i++) {
        char path[256];
        struct spiffe_bundle *b = NULL;
        struct spiffe_why why;
        snprintf(path, sizeof(path), GO_SPIFFE "%s", cases[i].file);
        cr_assert_eq(from_json_file(&b, path, &why), WEFT_OK, "%s: %s", cases[i].file, why.msg);
        cr_assert_eq(sk_X509_num(b->x509), 1, "%s", cases[i].file);
        cr_assert_eq(json_array_size(b->other_keys), cases[i].num_other_keys, "%s: %zu kept",
                     cases[i].file, json_array_size(b->other_keys));
        cr_assert_eq(b->has_sequence, cases[i].has_seq_and_hint, "%s", cases[i].file);
        cr_assert_eq(b->has_refresh_hint, cases[i].has_seq_and_hint, "%s", cases[i].file);
        if (cases[i].has_seq_and_hint) {
            cr_assert_eq(b->sequence, 1);
            cr_assert_eq(b->refresh_hint_s, 60);
        }
        spiffe_bundle_free(b);
    }
}

Test(bundle_json, go_spiffe_missing_kid_is_rejected)
{
    struct spiffe_bundle *b = (struct spiffe_bundle *)1;
    struct spiffe_why why;
    cr_assert_eq(from_json_file(&b, GO_SPIFFE "spiffebundle/spiffebundle_missing_kid.json", &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_KID, "%s", why.msg);
    cr_assert_not_null(strstr(why.msg, "keyID cannot be empty"), "%s", why.msg);
    cr_assert_null(b);
}

/* B12: go-spiffe rejects an x5c with two values; the spec says use the first. */
Test(bundle_json, go_spiffe_multiple_x509_uses_the_first_x5c)
{
    struct spiffe_bundle *b = NULL, *one = NULL;
    struct spiffe_why why;
    cr_assert_eq(from_json_file(&b, GO_SPIFFE "spiffebundle/spiffebundle_multiple_x509.json", &why),
                 WEFT_OK, "%s", why.msg);
    cr_assert_eq(sk_X509_num(b->x509), 1);
    cr_assert_eq(from_json_file(&one, GO_SPIFFE "spiffebundle/spiffebundle_valid_1.json", &why),
                 WEFT_OK);
    cr_assert_eq(X509_cmp(sk_X509_value(b->x509, 0), sk_X509_value(one->x509, 0)), 0);
    spiffe_bundle_free(one);
    spiffe_bundle_free(b);
}

Test(bundle_json, only_the_first_x5c_value_counts)
{
    struct testlib_cred roots[2];
    mint_roots(roots, 2);
    char *first = cert_b64(roots[0].cert), *second = cert_b64(roots[1].cert);
    json_t *jwk =
        json_pack("{s:s, s:s, s:[s, s]}", "use", "x509-svid", "kty", "EC", "x5c", first, second);
    char *json = doc_with_keys(json_pack("[o]", jwk));
    struct spiffe_bundle *b = parse_ok(json);
    cr_assert_eq(sk_X509_num(b->x509), 1);
    cr_assert_eq(X509_cmp(sk_X509_value(b->x509, 0), roots[0].cert), 0);
    spiffe_bundle_free(b);
    free(json);
    free(first);
    free(second);
    free_roots(roots, 2);
}

/* E1: `keys` is required. go-spiffe's "no_keys" file has no `keys` member at all (vectors.tsv
 * describes it as an empty array), so the spec and go-spiffe agree on rejecting it. */
Test(bundle_json, go_spiffe_no_keys_file_lacks_keys_and_is_rejected)
{
    struct spiffe_bundle *b = (struct spiffe_bundle *)1;
    struct spiffe_why why;
    cr_assert_eq(from_json_file(&b, GO_SPIFFE "spiffebundle/spiffebundle_no_keys.json", &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_KEYS, "%s", why.msg);
    cr_assert_null(b);
}

/* E1: an empty `keys` array is a bundle with every key revoked, not an error. */
Test(bundle_json, empty_keys_array_is_a_bundle_without_authorities)
{
    struct spiffe_bundle *b =
        parse_ok("{\"keys\": [], \"spiffe_refresh_hint\": 60, \"spiffe_sequence\": 1}");
    cr_assert_eq(sk_X509_num(b->x509), 0);
    cr_assert_eq(json_array_size(b->other_keys), 0);
    cr_assert(b->has_sequence);
    cr_assert_eq(b->sequence, 1);
    spiffe_bundle_free(b);
}

/* The jwks-bundle rows of vectors.tsv, with weft's two documented departures from go-spiffe. */
Test(bundle_json, agrees_with_vectors)
{
    size_t tsv_len, num_rows = 0;
    uint8_t *tsv = read_file(GO_SPIFFE "vectors.tsv", &tsv_len);
    char *save = NULL;
    for (char *line = strtok_r((char *)tsv, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *fields[4] = {0}, *fsave = NULL;
        if (line[0] == '#') {
            continue;
        }
        char *f = strtok_r(line, "\t", &fsave);
        for (size_t i = 0; i < 4 && f != NULL; i++, f = strtok_r(NULL, "\t", &fsave)) {
            fields[i] = f;
        }
        if (fields[3] == NULL || strcmp(fields[3], "jwks-bundle") != 0) {
            continue;
        }
        num_rows++;
        char path[256];
        struct spiffe_bundle *b = NULL;
        struct spiffe_why why;
        snprintf(path, sizeof(path), GO_SPIFFE "%s", fields[0]);
        int rc = from_json_file(&b, path, &why);
        const char *expect = fields[2];
        if (strstr(fields[0], "multiple_x509") != NULL) {
            /* B12: a consumer uses the first x5c value. */
            cr_assert_str_eq(expect, "reject(go-spiffe)");
            cr_assert_eq(rc, WEFT_OK, "%s: %s", fields[0], why.msg);
        } else if (strstr(fields[0], "no_keys") != NULL) {
            /* E1: `keys` is required, and this file has none. */
            cr_assert_str_eq(expect, "reject(go-spiffe)");
            cr_assert_eq(rc, WEFT_EINVAL, "%s", fields[0]);
        } else if (strcmp(expect, "accept") == 0) {
            cr_assert_eq(rc, WEFT_OK, "%s: %s", fields[0], why.msg);
        } else {
            cr_assert_str_eq(expect, "reject", "%s", fields[0]);
            cr_assert_eq(rc, WEFT_EINVAL, "%s", fields[0]);
        }
        spiffe_bundle_free(b);
    }
    free(tsv);
    cr_assert_eq(num_rows, 6, "read %zu jwks-bundle rows", num_rows);
}

/* --- JSON: members ------------------------------------------------------------------------- */

Test(bundle_json, e2_e3_sequence_and_refresh_hint)
{
    /* 2^53 + 1: only exact with a 64-bit integer type (E2), not with a double. */
    struct spiffe_bundle *b = parse_ok(
        "{\"keys\": [], \"spiffe_sequence\": 9007199254740993, \"spiffe_refresh_hint\": 300}");
    cr_assert(b->has_sequence);
    cr_assert_eq(b->sequence, UINT64_C(9007199254740993));
    cr_assert(b->has_refresh_hint);
    cr_assert_eq(b->refresh_hint_s, 300);
    spiffe_bundle_free(b);

    b = parse_ok("{\"keys\": [], \"spiffe_sequence\": 9223372036854775807}");
    cr_assert_eq(b->sequence, UINT64_C(9223372036854775807));
    cr_assert(!b->has_refresh_hint);
    spiffe_bundle_free(b);

    b = parse_ok("{\"keys\": [], \"spiffe_sequence\": 0, \"spiffe_refresh_hint\": 0}");
    cr_assert(b->has_sequence);
    cr_assert_eq(b->sequence, 0);
    cr_assert(b->has_refresh_hint);
    spiffe_bundle_free(b);

    b = parse_ok("{\"keys\": []}");
    cr_assert(!b->has_sequence);
    cr_assert(!b->has_refresh_hint);
    spiffe_bundle_free(b);
}

Test(bundle_json, e2_e3_rejects_bad_sequence_and_hint)
{
    expect_json_rejected("{\"keys\": [], \"spiffe_sequence\": -1}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_SEQUENCE);
    expect_json_rejected("{\"keys\": [], \"spiffe_sequence\": \"1\"}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_SEQUENCE);
    expect_json_rejected("{\"keys\": [], \"spiffe_sequence\": 1.5}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_SEQUENCE);
    expect_json_rejected("{\"keys\": [], \"spiffe_sequence\": null}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_SEQUENCE);
    expect_json_rejected("{\"keys\": [], \"spiffe_refresh_hint\": -60}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_REFRESH);
    expect_json_rejected("{\"keys\": [], \"spiffe_refresh_hint\": 60.5}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_REFRESH);
    expect_json_rejected("{\"keys\": [], \"spiffe_refresh_hint\": true}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_REFRESH);
}

Test(bundle_json, rejects_duplicate_members)
{
    expect_json_rejected("{\"keys\": [], \"keys\": []}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("{\"keys\": [], \"spiffe_sequence\": 1, \"spiffe_sequence\": 2}",
                         WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected(
        "{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"EC\", \"kid\": \"a\", \"kid\": \"b\"}]}",
        WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
}

Test(bundle_json, e1_requires_keys_array)
{
    expect_json_rejected("{}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KEYS);
    expect_json_rejected("{\"spiffe_sequence\": 1}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KEYS);
    expect_json_rejected("{\"keys\": {}}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KEYS);
    expect_json_rejected("{\"keys\": null}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KEYS);
    expect_json_rejected("{\"keys\": \"[]\"}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KEYS);
    expect_json_rejected("{\"Keys\": []}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KEYS);
}

Test(bundle_json, e1_rejects_what_is_not_a_json_object)
{
    expect_json_rejected("[]", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("[{\"keys\": []}]", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("\"keys\"", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("42", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("{\"keys\": [", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("not json", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("{\"keys\": []} trailing", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("{\"keys\": [42]}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_json_rejected("{\"keys\": [[]]}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
}

Test(bundle_json, e1_ignores_unknown_members)
{
    struct spiffe_bundle *b = parse_ok("{\"keys\": [], \"x-vendor\": {\"a\": [1, 2]}}");
    cr_assert_eq(sk_X509_num(b->x509), 0);
    spiffe_bundle_free(b);
}

Test(bundle_json, e4_ignores_jwks_without_use_kty_or_with_unknown_ones)
{
    struct testlib_cred root;
    mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256);
    json_t *keys = json_array();
    json_t *no_use = x509_jwk(root.cert, "EC");
    json_object_del(no_use, "use");
    json_t *no_kty = x509_jwk(root.cert, "EC");
    json_object_del(no_kty, "kty");
    json_t *upper_use = x509_jwk(root.cert, "EC");
    json_object_set_new(upper_use, "use", json_string("X509-SVID")); /* E4: case-sensitive */
    json_t *other_use = x509_jwk(root.cert, "EC");
    json_object_set_new(other_use, "use", json_string("enc"));
    json_t *oct = x509_jwk(root.cert, "oct"); /* an unknown kty */
    json_t *use_not_string = x509_jwk(root.cert, "EC");
    json_object_set_new(use_not_string, "use", json_integer(1));
    json_array_append_new(keys, no_use);
    json_array_append_new(keys, no_kty);
    json_array_append_new(keys, upper_use);
    json_array_append_new(keys, other_use);
    json_array_append_new(keys, oct);
    json_array_append_new(keys, use_not_string);
    char *json = doc_with_keys(keys);
    struct spiffe_bundle *b = parse_ok(json);
    cr_assert_eq(sk_X509_num(b->x509), 0, "an ignored JWK became an authority");
    cr_assert_eq(json_array_size(b->other_keys), 0);
    spiffe_bundle_free(b);
    free(json);

    /* The same certificate in a well-formed JWK is an authority. */
    json = doc_with_keys(json_pack("[o]", x509_jwk(root.cert, "EC")));
    b = parse_ok(json);
    cr_assert_eq(sk_X509_num(b->x509), 1);
    cr_assert_eq(X509_cmp(sk_X509_value(b->x509, 0), root.cert), 0);
    spiffe_bundle_free(b);
    free(json);
    testlib_cred_cleanup(&root);
}

Test(bundle_json, b12_ignores_x509_jwk_without_or_with_empty_x5c)
{
    struct spiffe_bundle *b = parse_ok("{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\"}, "
                                       "{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": []}]}");
    cr_assert_eq(sk_X509_num(b->x509), 0);
    spiffe_bundle_free(b);
}

Test(bundle_json, e5_rejects_bad_x5c)
{
    struct testlib_cred ec, ed;
    mint_root(&ec, TESTLIB_TD, SPIFFE_KEY_EC_P256);
    mint_root(&ed, TESTLIB_TD, SPIFFE_KEY_ED25519);

    /* kty must match the certificate's key. */
    char *json = doc_with_keys(json_pack("[o]", x509_jwk(ec.cert, "RSA")));
    expect_json_rejected(json, WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
    free(json);
    json = doc_with_keys(json_pack("[o]", x509_jwk(ec.cert, "OKP")));
    expect_json_rejected(json, WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
    free(json);
    json = doc_with_keys(json_pack("[o]", x509_jwk(ed.cert, "EC")));
    expect_json_rejected(json, WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
    free(json);
    json = doc_with_keys(json_pack("[o]", x509_jwk(ed.cert, "OKP")));
    struct spiffe_bundle *b = parse_ok(json);
    cr_assert_eq(sk_X509_num(b->x509), 1);
    spiffe_bundle_free(b);
    free(json);

    /* Standard base64 only: the same certificate in base64url is refused. */
    char *std = cert_b64(ec.cert);
    cr_assert(strpbrk(std, "+/") != NULL, "this certificate's base64 has no + or /");
    char *url = strdup(std);
    for (char *p = url; *p != '\0'; p++) {
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    }
    json = doc_with_keys(
        json_pack("[{s:s, s:s, s:[s]}]", "use", "x509-svid", "kty", "EC", "x5c", url));
    expect_json_rejected(json, WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
    free(json);

    static const char *const bad_values[] = {
        "!!!!",     /* not base64 */
        "MIIB",     /* base64, not a certificate */
        "MIIBzDCC", /* the start of one */
        "AAA",      /* a length base64 cannot have */
        "",         /* empty */
    };
    for (size_t i = 0; i < nitems(bad_values); i++) {
        json = doc_with_keys(json_pack("[{s:s, s:s, s:[s]}]", "use", "x509-svid", "kty", "EC",
                                       "x5c", bad_values[i]));
        expect_json_rejected(json, WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
        free(json);
    }
    /* A certificate followed by another byte. */
    size_t der_len;
    uint8_t *der = testlib_der(ec.cert, &der_len);
    uint8_t *longer = malloc(der_len + 1);
    memcpy(longer, der, der_len);
    longer[der_len] = 0;
    char *padded = b64_std(longer, der_len + 1);
    json = doc_with_keys(
        json_pack("[{s:s, s:s, s:[s]}]", "use", "x509-svid", "kty", "EC", "x5c", padded));
    expect_json_rejected(json, WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
    free(json);
    free(padded);
    free(longer);
    OPENSSL_free(der);

    expect_json_rejected(
        "{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": \"MIIB\"}]}", WEFT_EINVAL,
        SPIFFE_RULE_BUNDLE_X5C);
    expect_json_rejected("{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [1]}]}",
                         WEFT_EINVAL, SPIFFE_RULE_BUNDLE_X5C);
    free(url);
    free(std);
    testlib_cred_cleanup(&ed);
    testlib_cred_cleanup(&ec);
}

Test(bundle_json, e6_jwt_svid_needs_a_kid_and_others_are_kept)
{
    expect_json_rejected("{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"EC\"}]}", WEFT_EINVAL,
                         SPIFFE_RULE_BUNDLE_KID);
    expect_json_rejected("{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"EC\", \"kid\": \"\"}]}",
                         WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KID);
    expect_json_rejected("{\"keys\": [{\"use\": \"jwt-svid\", \"kty\": \"EC\", \"kid\": 7}]}",
                         WEFT_EINVAL, SPIFFE_RULE_BUNDLE_KID);
    /* A wit-svid key needs no kid here; both kinds are kept as given. */
    json_t *keys = json_pack("[o, {s:s, s:s}]", jwt_jwk("k1"), "use", "wit-svid", "kty", "EC");
    json_t *want = json_deep_copy(keys);
    char *json = doc_with_keys(keys);
    struct spiffe_bundle *b = parse_ok(json);
    cr_assert_eq(sk_X509_num(b->x509), 0);
    cr_assert(json_equal(b->other_keys, want), "the kept JWKs differ from the input");
    spiffe_bundle_free(b);
    json_decref(want);
    free(json);
}

/* --- JSON: limits -------------------------------------------------------------------------- */

Test(bundle_json, one_byte_past_the_size_limit)
{
    static const char doc[] = "{\"keys\": []}";
    size_t n = SPIFFE_BUNDLE_MAX_JSON + 1;
    char *buf = malloc(n + 1);
    memset(buf, ' ', n);
    memcpy(buf, doc, sizeof(doc) - 1);
    buf[n] = '\0';
    struct spiffe_id td = td_id(TESTLIB_TD);
    struct spiffe_bundle *b = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_from_json(&b, &td, (const uint8_t *)buf, n - 1, &why), WEFT_OK,
                 "exactly the limit: %s", why.msg);
    spiffe_bundle_free(b);
    b = NULL;
    cr_assert_eq(spiffe_bundle_from_json(&b, &td, (const uint8_t *)buf, n, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_LIMIT, "%s", why.msg);
    cr_assert_null(b);
    free(buf);
}

static char *doc_with_jwt_keys(size_t n)
{
    json_t *keys = json_array();
    for (size_t i = 0; i < n; i++) {
        char kid[32];
        snprintf(kid, sizeof(kid), "kid-%zu", i);
        json_array_append_new(keys, jwt_jwk(kid));
    }
    return doc_with_keys(keys);
}

Test(bundle_json, one_key_past_the_limit)
{
    char *json = doc_with_jwt_keys(SPIFFE_BUNDLE_MAX_JWKS);
    struct spiffe_bundle *b = parse_ok(json);
    cr_assert_eq(json_array_size(b->other_keys), SPIFFE_BUNDLE_MAX_JWKS);
    spiffe_bundle_free(b);
    free(json);
    json = doc_with_jwt_keys(SPIFFE_BUNDLE_MAX_JWKS + 1);
    expect_json_rejected(json, WEFT_ELIMIT, SPIFFE_RULE_BUNDLE_LIMIT);
    free(json);
    /* Ignored keys count too: the limit bounds the work, not the result. */
    json_t *keys = json_array();
    for (size_t i = 0; i < SPIFFE_BUNDLE_MAX_JWKS + 1; i++) {
        json_array_append_new(keys, json_pack("{s:s}", "use", "enc"));
    }
    json = doc_with_keys(keys);
    expect_json_rejected(json, WEFT_ELIMIT, SPIFFE_RULE_BUNDLE_LIMIT);
    free(json);
}

Test(bundle_json, one_authority_past_the_limit)
{
    enum { N = SPIFFE_BUNDLE_MAX_AUTHORITIES + 1 };
    struct testlib_cred roots[N];
    mint_roots(roots, N);
    json_t *keys = json_array();
    for (size_t i = 0; i < N - 1; i++) {
        json_array_append_new(keys, x509_jwk(roots[i].cert, "EC"));
    }
    json_t *more = json_deep_copy(keys);
    json_array_append_new(more, x509_jwk(roots[N - 1].cert, "EC"));

    char *json = doc_with_keys(keys);
    struct spiffe_bundle *b = parse_ok(json);
    cr_assert_eq(sk_X509_num(b->x509), SPIFFE_BUNDLE_MAX_AUTHORITIES);
    spiffe_bundle_free(b);
    free(json);
    json = doc_with_keys(more);
    expect_json_rejected(json, WEFT_ELIMIT, SPIFFE_RULE_BUNDLE_LIMIT);
    free(json);
    free_roots(roots, N);
}

/* --- JSON: round trips --------------------------------------------------------------------- */

/* expect_jwk_matches_key checks the key parameters to_json wrote for |cert|. */
static void expect_jwk_matches_key(json_t *jwk, X509 *cert)
{
    uint8_t got[80], want[80];
    EVP_PKEY *pub = X509_get_pubkey(cert);
    cr_assert_null(json_object_get(jwk, "kid"), "E5: an x509-svid JWK has no kid");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "use")), "x509-svid");
    cr_assert_eq(json_array_size(json_object_get(jwk, "x5c")), 1);
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *x = json_string_value(json_object_get(jwk, "x"));
    cr_assert_not_null(kty);
    cr_assert_not_null(x);
    if (EVP_PKEY_id(pub) == EVP_PKEY_ED25519) {
        size_t want_len = sizeof(want);
        cr_assert_str_eq(kty, "OKP");
        cr_assert_str_eq(crv, "Ed25519");
        cr_assert(EVP_PKEY_get_raw_public_key(pub, want, &want_len));
        size_t n = b64url_decode(got, sizeof(got), x);
        cr_assert_eq(n, want_len);
        cr_assert_eq(memcmp(got, want, n), 0, "OKP x is not the public key");
    } else {
        cr_assert_str_eq(kty, "EC");
        cr_assert_str_eq(crv, "P-256");
        const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(pub);
        BIGNUM *bx = BN_new(), *by = BN_new();
        cr_assert(EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec),
                                                      EC_KEY_get0_public_key(ec), bx, by, NULL));
        cr_assert(BN_bn2bin_padded(want, 32, bx));
        cr_assert_eq(b64url_decode(got, sizeof(got), x), 32);
        cr_assert_eq(memcmp(got, want, 32), 0, "EC x is not the public key's");
        const char *y = json_string_value(json_object_get(jwk, "y"));
        cr_assert_not_null(y);
        cr_assert(BN_bn2bin_padded(want, 32, by));
        cr_assert_eq(b64url_decode(got, sizeof(got), y), 32);
        cr_assert_eq(memcmp(got, want, 32), 0, "EC y is not the public key's");
        BN_free(bx);
        BN_free(by);
    }
    EVP_PKEY_free(pub);
}

Test(bundle_json, minted_roots_round_trip)
{
    struct testlib_cred ec, ed;
    struct spiffe_id td = td_id(TESTLIB_TD);
    mint_root(&ec, TESTLIB_TD, SPIFFE_KEY_EC_P256);
    mint_root(&ed, TESTLIB_TD, SPIFFE_KEY_ED25519);
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    cr_assert_eq(spiffe_bundle_add_x509(b, ec.cert), WEFT_OK);
    cr_assert_eq(spiffe_bundle_add_x509(b, ed.cert), WEFT_OK);
    b->has_sequence = true;
    b->sequence = 42;
    b->has_refresh_hint = true;
    b->refresh_hint_s = 120;
    json_array_append_new(b->other_keys, jwt_jwk("key-1"));
    json_array_append_new(b->other_keys, jwt_jwk("key-2"));

    char *out = NULL;
    size_t out_len;
    cr_assert_eq(spiffe_bundle_to_json(&out, &out_len, b), WEFT_OK);
    cr_assert_eq(strlen(out), out_len);

    /* What was written, as a JWK Set. */
    json_error_t err;
    json_t *doc = json_loads(out, 0, &err);
    cr_assert_not_null(doc, "%s", err.text);
    json_t *keys = json_object_get(doc, "keys");
    cr_assert_eq(json_array_size(keys), 4);
    expect_jwk_matches_key(json_array_get(keys, 0), ec.cert);
    expect_jwk_matches_key(json_array_get(keys, 1), ed.cert);
    cr_assert_eq(json_integer_value(json_object_get(doc, "spiffe_sequence")), 42);
    cr_assert_eq(json_integer_value(json_object_get(doc, "spiffe_refresh_hint")), 120);
    json_decref(doc);

    /* And read back. */
    struct spiffe_bundle *back = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_from_json(&back, &td, (const uint8_t *)out, out_len, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_eq(sk_X509_num(back->x509), 2);
    cr_assert_eq(X509_cmp(sk_X509_value(back->x509, 0), ec.cert), 0);
    cr_assert_eq(X509_cmp(sk_X509_value(back->x509, 1), ed.cert), 0);
    cr_assert(back->has_sequence);
    cr_assert_eq(back->sequence, 42);
    cr_assert(back->has_refresh_hint);
    cr_assert_eq(back->refresh_hint_s, 120);
    cr_assert(json_equal(back->other_keys, b->other_keys), "the jwt-svid keys changed");
    cr_assert(spiffe_id_equal(&back->td, &b->td));

    spiffe_bundle_free(back);
    free(out);
    spiffe_bundle_free(b);
    testlib_cred_cleanup(&ed);
    testlib_cred_cleanup(&ec);
}

Test(bundle_json, round_trip_without_sequence_or_hint)
{
    struct spiffe_id td = td_id(TESTLIB_TD);
    struct spiffe_bundle *b = spiffe_bundle_new(&td), *back = NULL;
    char *out = NULL;
    size_t out_len;
    cr_assert_eq(spiffe_bundle_to_json(&out, &out_len, b), WEFT_OK);
    cr_assert_null(strstr(out, "spiffe_sequence"));
    cr_assert_null(strstr(out, "spiffe_refresh_hint"));
    cr_assert_eq(spiffe_bundle_from_json(&back, &td, (const uint8_t *)out, out_len, NULL), WEFT_OK);
    cr_assert_eq(sk_X509_num(back->x509), 0);
    cr_assert(!back->has_sequence);
    cr_assert(!back->has_refresh_hint);
    spiffe_bundle_free(back);
    free(out);
    spiffe_bundle_free(b);
}

Test(bundle_json, go_spiffe_bundle_round_trips)
{
    struct spiffe_bundle *b = NULL, *back = NULL;
    struct spiffe_why why;
    char *out = NULL;
    size_t out_len;
    cr_assert_eq(
        from_json_file(&b, GO_SPIFFE "spiffebundle/spiffebundle_valid_with_wit.json", &why),
        WEFT_OK);
    cr_assert_eq(spiffe_bundle_to_json(&out, &out_len, b), WEFT_OK);
    cr_assert_eq(spiffe_bundle_from_json(&back, &b->td, (const uint8_t *)out, out_len, &why),
                 WEFT_OK, "%s", why.msg);
    cr_assert_eq(sk_X509_num(back->x509), 1);
    cr_assert_eq(X509_cmp(sk_X509_value(back->x509, 0), sk_X509_value(b->x509, 0)), 0);
    cr_assert(json_equal(back->other_keys, b->other_keys));
    cr_assert_eq(back->sequence, 1);
    cr_assert_eq(back->refresh_hint_s, 60);
    spiffe_bundle_free(back);
    free(out);
    spiffe_bundle_free(b);
}

/* --- bundle sets --------------------------------------------------------------------------- */

Test(bundle_set, put_get_and_replace_by_trust_domain)
{
    struct spiffe_bundle_set set;
    struct spiffe_id a = td_id("example.org"), other = td_id("other.org"), leaf, evil, lookalike;
    spiffe_bundle_set_init(&set);
    cr_assert_eq(spiffe_id_parse(&leaf, "spiffe://example.org/ns/web", 27, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&evil, "spiffe://example.org.evil/x", 27, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&lookalike, "spiffe://example.or/x", 21, NULL), WEFT_OK);

    cr_assert_null(spiffe_bundle_set_get0(&set, &leaf));
    struct spiffe_bundle *ba = spiffe_bundle_new(&leaf); /* a leaf ID names its trust domain */
    cr_assert_str_eq(ba->td.str, "spiffe://example.org");
    struct spiffe_bundle *bo = spiffe_bundle_new(&other);
    cr_assert_eq(spiffe_bundle_set_put(&set, ba), WEFT_OK);
    cr_assert_eq(spiffe_bundle_set_put(&set, bo), WEFT_OK);
    cr_assert_eq(set.num_bundles, 2);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &leaf), ba);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &a), ba);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &other), bo);
    cr_assert_null(spiffe_bundle_set_get0(&set, &evil));
    cr_assert_null(spiffe_bundle_set_get0(&set, &lookalike));
    cr_assert_null(spiffe_bundle_set_get0(NULL, &leaf));

    /* A second bundle for example.org replaces the first (which the set frees). */
    struct spiffe_bundle *ba2 = spiffe_bundle_new(&a);
    ba2->sequence = 2;
    cr_assert_eq(spiffe_bundle_set_put(&set, ba2), WEFT_OK);
    cr_assert_eq(set.num_bundles, 2);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &leaf), ba2);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &other), bo);

    spiffe_bundle_set_cleanup(&set);
    cr_assert_eq(set.num_bundles, 0);
    spiffe_bundle_set_cleanup(&set); /* cleaning up twice is fine */
}

Test(bundle_set, zeroed_set_is_empty)
{
    struct spiffe_bundle_set set;
    struct spiffe_id a = td_id("example.org");
    memset(&set, 0, sizeof(set));
    cr_assert_null(spiffe_bundle_set_get0(&set, &a));
    spiffe_bundle_set_cleanup(&set);
}

Test(bundle_set, one_trust_domain_past_the_limit)
{
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    for (size_t i = 0; i < SPIFFE_BUNDLE_SET_MAX; i++) {
        char name[32];
        snprintf(name, sizeof(name), "td%zu.example", i);
        struct spiffe_id td = td_id(name);
        cr_assert_eq(spiffe_bundle_set_put(&set, spiffe_bundle_new(&td)), WEFT_OK, "%s", name);
    }
    struct spiffe_id extra = td_id("one-too-many.example");
    /* The set takes |b| either way: on ELIMIT it frees it (ASan would see a leak otherwise). */
    cr_assert_eq(spiffe_bundle_set_put(&set, spiffe_bundle_new(&extra)), WEFT_ELIMIT);
    cr_assert_eq(set.num_bundles, SPIFFE_BUNDLE_SET_MAX);
    cr_assert_null(spiffe_bundle_set_get0(&set, &extra));
    /* Replacing a trust domain already there still works when full. */
    struct spiffe_id td0 = td_id("td0.example");
    struct spiffe_bundle *again = spiffe_bundle_new(&td0);
    cr_assert_eq(spiffe_bundle_set_put(&set, again), WEFT_OK);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &td0), again);
    spiffe_bundle_set_cleanup(&set);
}

/* --- E7: the bundle map -------------------------------------------------------------------- */

static int map_parse(struct spiffe_bundle_set *set, const char *json, struct spiffe_why *why)
{
    spiffe_bundle_set_init(set);
    return spiffe_bundle_set_from_json_map(set, (const uint8_t *)json, strlen(json), why);
}

static void expect_map_rejected(const char *json, int rc, enum spiffe_rule rule)
{
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    int got = map_parse(&set, json, &why);
    cr_assert_eq(got, rc, "%.200s: rc %d, want %d (%s)", json, got, rc, why.msg);
    cr_assert_eq(why.rule, rule, "%.200s: rule %d (%s), want %d", json, why.rule, why.msg, rule);
    spiffe_bundle_set_cleanup(&set);
}

Test(bundle_map, e7_parses_each_trust_domain)
{
    struct testlib_cred root;
    mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256);
    json_t *doc =
        json_pack("{s:{s:{s:[o], s:i}, s:{s:[]}}}", "trust_domains", "example.org", "keys",
                  x509_jwk(root.cert, "EC"), "spiffe_sequence", 7, "spiffe://other.org", "keys");
    char *json = dump(doc);
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id ex = td_id("example.org"), other = td_id("other.org");
    cr_assert_eq(map_parse(&set, json, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(set.num_bundles, 2);
    const struct spiffe_bundle *b = spiffe_bundle_set_get0(&set, &ex);
    cr_assert_not_null(b);
    cr_assert_eq(sk_X509_num(b->x509), 1);
    cr_assert_eq(X509_cmp(sk_X509_value(b->x509, 0), root.cert), 0);
    cr_assert_eq(b->sequence, 7);
    b = spiffe_bundle_set_get0(&set, &other);
    cr_assert_not_null(b, "the spiffe://td key form (A14)");
    cr_assert_eq(sk_X509_num(b->x509), 0);
    spiffe_bundle_set_cleanup(&set);
    free(json);
    testlib_cred_cleanup(&root);
}

Test(bundle_map, e7_rejects_duplicate_trust_domains)
{
    /* The same JSON name twice: jansson sees it. */
    expect_map_rejected(
        "{\"trust_domains\": {\"a.org\": {\"keys\": []}, \"a.org\": {\"keys\": []}}}", WEFT_EINVAL,
        SPIFFE_RULE_BUNDLE_JSON);
    /* The same trust domain spelled two ways (A14): only weft sees it. */
    expect_map_rejected(
        "{\"trust_domains\": {\"a.org\": {\"keys\": []}, \"spiffe://a.org\": {\"keys\": []}}}",
        WEFT_EINVAL, SPIFFE_RULE_BUNDLE_DUPLICATE_TD);
    expect_map_rejected(
        "{\"trust_domains\": {\"spiffe://a.org\": {\"keys\": []}, \"a.org\": {\"keys\": []}}}",
        WEFT_EINVAL, SPIFFE_RULE_BUNDLE_DUPLICATE_TD);
    /* Two different trust domains are fine. */
    struct spiffe_bundle_set set;
    cr_assert_eq(map_parse(&set,
                           "{\"trust_domains\": {\"a.org\": {\"keys\": []}, \"b.org\": "
                           "{\"keys\": []}}}",
                           NULL),
                 WEFT_OK);
    cr_assert_eq(set.num_bundles, 2);
    spiffe_bundle_set_cleanup(&set);
}

Test(bundle_map, refreshes_an_existing_set_and_leaves_it_alone_on_error)
{
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id a = td_id("a.org"), b = td_id("b.org"), c = td_id("c.org");
    cr_assert_eq(map_parse(&set,
                           "{\"trust_domains\": {\"a.org\": {\"keys\": [], "
                           "\"spiffe_sequence\": 1}, \"b.org\": {\"keys\": []}}}",
                           &why),
                 WEFT_OK, "%s", why.msg);
    const struct spiffe_bundle *b_before = spiffe_bundle_set_get0(&set, &b);

    /* A later map refreshes a.org, adds c.org and keeps b.org. */
    const char *refresh = "{\"trust_domains\": {\"a.org\": {\"keys\": [], \"spiffe_sequence\": 2}, "
                          "\"c.org\": {\"keys\": []}}}";
    cr_assert_eq(
        spiffe_bundle_set_from_json_map(&set, (const uint8_t *)refresh, strlen(refresh), &why),
        WEFT_OK, "%s", why.msg);
    cr_assert_eq(set.num_bundles, 3);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &a)->sequence, 2);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &b), b_before);
    cr_assert_not_null(spiffe_bundle_set_get0(&set, &c));

    /* A map that fails half way (its second trust domain is bad) changes nothing. */
    const char *bad = "{\"trust_domains\": {\"a.org\": {\"keys\": [], \"spiffe_sequence\": 3}, "
                      "\"d.org\": {\"keys\": 5}}}";
    cr_assert_eq(spiffe_bundle_set_from_json_map(&set, (const uint8_t *)bad, strlen(bad), &why),
                 WEFT_EINVAL);
    cr_assert_eq(set.num_bundles, 3);
    cr_assert_eq(spiffe_bundle_set_get0(&set, &a)->sequence, 2,
                 "a.org was replaced by a failed map");
    spiffe_bundle_set_cleanup(&set);
}

Test(bundle_map, e7_rejects_bad_names_and_bad_bundles)
{
    expect_map_rejected("{\"trust_domains\": {\"A.org\": {\"keys\": []}}}", WEFT_EINVAL,
                        SPIFFE_RULE_ID_TD_UPPERCASE);
    expect_map_rejected("{\"trust_domains\": {\"spiffe://a.org/p\": {\"keys\": []}}}", WEFT_EINVAL,
                        SPIFFE_RULE_ID_HAS_PATH);
    expect_map_rejected("{\"trust_domains\": {\"\": {\"keys\": []}}}", WEFT_EINVAL,
                        SPIFFE_RULE_ID_TD_EMPTY);
    expect_map_rejected("{\"trust_domains\": {\"a.org\": {}}}", WEFT_EINVAL,
                        SPIFFE_RULE_BUNDLE_KEYS);
    expect_map_rejected("{\"trust_domains\": {\"a.org\": []}}", WEFT_EINVAL,
                        SPIFFE_RULE_BUNDLE_JSON);
    expect_map_rejected("{\"trust_domains\": {\"a.org\": {\"keys\": [], \"spiffe_sequence\": -1}}}",
                        WEFT_EINVAL, SPIFFE_RULE_BUNDLE_SEQUENCE);
    expect_map_rejected("{}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_map_rejected("{\"trust_domains\": []}", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_map_rejected("[]", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);
    expect_map_rejected("{\"trust_domains\":", WEFT_EINVAL, SPIFFE_RULE_BUNDLE_JSON);

    struct spiffe_bundle_set set;
    struct spiffe_why why;
    cr_assert_eq(map_parse(&set, "{\"trust_domains\": {\"a.org\": {}}}", &why), WEFT_EINVAL);
    cr_assert_not_null(strstr(why.msg, "trust_domains[\"a.org\"]"), "%s", why.msg);
    spiffe_bundle_set_cleanup(&set);
}

Test(bundle_map, e7_empty_map_is_an_empty_set)
{
    struct spiffe_bundle_set set;
    cr_assert_eq(map_parse(&set, "{\"trust_domains\": {}}", NULL), WEFT_OK);
    cr_assert_eq(set.num_bundles, 0);
    spiffe_bundle_set_cleanup(&set);
}

static char *map_of(size_t num_tds)
{
    json_t *tds = json_object();
    for (size_t i = 0; i < num_tds; i++) {
        char name[32];
        snprintf(name, sizeof(name), "td%zu.example", i);
        json_object_set_new(tds, name, json_pack("{s:[]}", "keys"));
    }
    return dump(json_pack("{s:o}", "trust_domains", tds));
}

Test(bundle_map, one_trust_domain_past_the_limit)
{
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    char *json = map_of(SPIFFE_BUNDLE_SET_MAX);
    cr_assert_eq(map_parse(&set, json, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(set.num_bundles, SPIFFE_BUNDLE_SET_MAX);
    spiffe_bundle_set_cleanup(&set);
    free(json);
    json = map_of(SPIFFE_BUNDLE_SET_MAX + 1);
    cr_assert_eq(map_parse(&set, json, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_LIMIT, "%s", why.msg);
    spiffe_bundle_set_cleanup(&set);
    free(json);
}

Test(bundle_map, one_byte_past_the_size_limit)
{
    static const char doc[] = "{\"trust_domains\": {}}";
    size_t n = SPIFFE_BUNDLE_MAX_JSON + 1;
    char *buf = malloc(n);
    memset(buf, ' ', n);
    memcpy(buf, doc, sizeof(doc) - 1);
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    spiffe_bundle_set_init(&set);
    cr_assert_eq(spiffe_bundle_set_from_json_map(&set, (const uint8_t *)buf, n - 1, &why), WEFT_OK,
                 "exactly the limit: %s", why.msg);
    cr_assert_eq(spiffe_bundle_set_from_json_map(&set, (const uint8_t *)buf, n, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_LIMIT, "%s", why.msg);
    spiffe_bundle_set_cleanup(&set);
    free(buf);
}

/* --- spiffe_bundle_decode: any encoding, and whose bundle it is ----------------------------- */

Test(bundle_decode, takes_the_trust_domain_its_authorities_name)
{
    struct testlib_cred root;
    mint_root(&root, "named.org", SPIFFE_KEY_EC_P256);
    STACK_OF(X509) *certs = testlib_chain(&root.cert, 1);
    char *pem;
    size_t pem_len;
    cr_assert_eq(spiffe_certs_to_pem(&pem, &pem_len, certs), WEFT_OK);
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id named = td_id("named.org"), other = td_id("other.org");
    spiffe_bundle_set_init(&set);
    cr_assert_eq(spiffe_bundle_decode(&set, (const uint8_t *)pem, pem_len, NULL, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_eq(set.num_bundles, 1);
    cr_assert_not_null(spiffe_bundle_set_get0(&set, &named));
    /* Said to be another trust domain's: refused, and the set keeps what it had. */
    cr_assert_eq(spiffe_bundle_decode(&set, (const uint8_t *)pem, pem_len, &other, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_MIXED_TD, "%s", why.msg);
    cr_assert_eq(set.num_bundles, 1);
    /* The same bundle as a SPIFFE bundle, behind a byte order mark and blank lines. */
    struct spiffe_bundle *b = spiffe_bundle_new(&named);
    cr_assert_eq(spiffe_bundle_add_x509(b, root.cert), WEFT_OK);
    char *json, *bom;
    size_t json_len;
    cr_assert_eq(spiffe_bundle_to_json(&json, &json_len, b), WEFT_OK);
    cr_assert_gt(asprintf(&bom, "\xef\xbb\xbf\n\n%s", json), 0);
    spiffe_bundle_set_cleanup(&set);
    cr_assert_eq(spiffe_bundle_decode(&set, (const uint8_t *)bom, strlen(bom), NULL, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_not_null(spiffe_bundle_set_get0(&set, &named));
    spiffe_bundle_set_cleanup(&set);
    spiffe_bundle_free(b);
    free(bom);
    free(json);
    free(pem);
    sk_X509_pop_free(certs, X509_free);
    testlib_cred_cleanup(&root);
}

Test(bundle_decode, unnamed_authorities_need_a_trust_domain)
{
    size_t len;
    uint8_t *data = read_file(GO_SPIFFE "x509bundle/certs.pem", &len);
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id td = td_id("domain.test");
    spiffe_bundle_set_init(&set);
    cr_assert_eq(spiffe_bundle_decode(&set, data, len, NULL, &why), WEFT_ENOTFOUND);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_MIXED_TD, "%s", why.msg);
    cr_assert_eq(set.num_bundles, 0);
    cr_assert_eq(spiffe_bundle_decode(&set, data, len, &td, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(sk_X509_num(spiffe_bundle_set_get0(&set, &td)->x509), 2);
    spiffe_bundle_set_cleanup(&set);
    free(data);
}

Test(bundle_decode, authorities_of_two_trust_domains_are_refused)
{
    struct testlib_cred a, b;
    mint_root(&a, "a.org", SPIFFE_KEY_EC_P256);
    mint_root(&b, "b.org", SPIFFE_KEY_EC_P256);
    X509 *both[] = {a.cert, b.cert};
    STACK_OF(X509) *certs = testlib_chain(both, 2);
    struct spiffe_id td;
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_td_of_authorities(&td, certs, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_BUNDLE_MIXED_TD, "%s", why.msg);
    sk_X509_pop_free(certs, X509_free);
    certs = testlib_chain(both, 1);
    cr_assert_eq(spiffe_bundle_td_of_authorities(&td, certs, &why), WEFT_OK);
    cr_assert_str_eq(td.str, "spiffe://a.org");
    sk_X509_pop_free(certs, X509_free);
    testlib_cred_cleanup(&b);
    testlib_cred_cleanup(&a);
}

Test(bundle_decode, a_map_names_its_own_trust_domains)
{
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id a = td_id("a.org");
    const char *map = "  {\"trust_domains\": {\"a.org\": {\"keys\": []}}}";
    spiffe_bundle_set_init(&set);
    cr_assert_eq(spiffe_bundle_decode(&set, (const uint8_t *)map, strlen(map), NULL, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_not_null(spiffe_bundle_set_get0(&set, &a));
    spiffe_bundle_set_cleanup(&set);
}
