/* ca/issuer_test.c: node attestation, renewal and workload minting through a real signer and
 * store, with certificates minted at test time. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <sqlite3.h>

#include "ca/issuer.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"
#include "test/testlib/certs.h"
#include "test/testlib/psat.h"

static char dir[] = "/tmp/weft-issuer-test-XXXXXX";
static struct testlib_pki pki;
static struct ca_store *store;
static struct ca_signer *signer;
static struct ca_issuer ca;
static char err[512];

static void write_file(const char *name, const char *data, size_t len, mode_t mode)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cr_assert_eq(weft_file_write_atomic(path, data, len, mode), WEFT_OK);
}

static void setup(void)
{
    char path[300], key_path[300], cert_path[300], *pem;
    size_t len;
    weft_log_set_output(stdout, WEFT_LOG_WARN);
    cr_assert_not_null(mkdtemp(dir));
    chmod(dir, 0755);
    cr_assert_eq(testlib_pki_mint(&pki, SPIFFE_KEY_EC_P256, true), WEFT_OK);
    cr_assert_eq(spiffe_key_to_pem(&pem, &len, pki.inter.key), WEFT_OK);
    write_file("ca.key", pem, len, 0600);
    free(pem);
    STACK_OF(X509) *one = testlib_chain(&pki.inter.cert, 1);
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, one), WEFT_OK);
    write_file("ca.pem", pem, len, 0644);
    free(pem);
    sk_X509_pop_free(one, X509_free);
    snprintf(path, sizeof(path), "%s/ca.db", dir);
    snprintf(key_path, sizeof(key_path), "%s/ca.key", dir);
    snprintf(cert_path, sizeof(cert_path), "%s/ca.pem", dir);
    cr_assert_eq(ca_store_open_sqlite(&store, path, err, sizeof(err)), WEFT_OK, "%s", err);
    struct ca_signer_config cfg = {.key_path = key_path, .cert_path = cert_path};
    cr_assert_eq(ca_signer_start(&signer, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    memset(&ca, 0, sizeof(ca));
    ca.store = store;
    ca.signer = signer;
    ca.signing_cert = pki.inter.cert;
    cr_assert_eq(spiffe_td_parse(&ca.td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
}

static void teardown(void)
{
    ca_signer_stop(signer);
    ca_store_close(store);
    testlib_pki_cleanup(&pki);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ca_issuer, .init = setup, .fini = teardown);

/* make_csr returns a DER CSR for a new key (which it also returns). */
static uint8_t *make_csr(EVP_PKEY **out_key, size_t *out_len)
{
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    X509_REQ *req = X509_REQ_new();
    cr_assert(X509_REQ_set_pubkey(req, key));
    cr_assert(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    uint8_t *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    cr_assert_gt(len, 0);
    X509_REQ_free(req);
    *out_key = key;
    *out_len = (size_t)len;
    return der;
}

/* expect_verifies checks |svid| against the root at TESTLIB_NOW and that it holds |key|. */
static void expect_verifies(const struct ca_svid *svid, EVP_PKEY *key, const char *want_id)
{
    STACK_OF(X509) *chain = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_certs_decode(&chain, svid->chain, svid->chain_len, 4, 0, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_eq(sk_X509_num(chain), 2, "leaf and signing CA");
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    cr_assert_eq(testlib_bundle_set_add(&set, TESTLIB_TD, pki.root.cert), WEFT_OK);
    struct spiffe_id id;
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_str_eq(id.str, want_id);
    cr_assert_str_eq(svid->spiffe_id, want_id);
    cr_assert_eq(spiffe_x509svid_check_key(sk_X509_value(chain, 0), key, NULL), WEFT_OK);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
}

static int count(void *arg, const struct ca_issuance *i)
{
    (void)i;
    (*(size_t *)arg)++;
    return WEFT_OK;
}

static size_t inventory(const char *id)
{
    struct ca_issuance_filter f = {.spiffe_id = id};
    size_t n = 0;
    cr_assert_eq(ca_store_issuance_list(store, &f, count, &n), WEFT_OK);
    return n;
}

/* psat_for returns a CA_PSAT validator for |k| and a token of |node| signed by |k|'s RSA key,
 * valid at TESTLIB_NOW. */
static char *psat_for(struct ca_psat *p, struct testlib_psat_keys *k, const char *node)
{
    cr_assert_eq(testlib_psat_keys_mint(k), WEFT_OK);
    char *jwks = testlib_psat_jwks(k);
    struct ca_psat_config cfg = {
        .issuer = TESTLIB_PSAT_ISSUER, .jwks = (const uint8_t *)jwks, .jwks_len = strlen(jwks)};
    cr_assert_eq(ca_psat_init(p, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    free(jwks);
    char *t = testlib_psat_sign(
        testlib_psat_header("RS256", TESTLIB_PSAT_RSA_KID),
        testlib_psat_claims("weft-agent", node, TESTLIB_NOW - 60, TESTLIB_NOW + 3600), "RS256",
        k->rsa, NULL, 0);
    cr_assert_not_null(t);
    return t;
}

Test(ca_issuer, a_node_joins_with_a_service_account_token_bound_to_its_key)
{
    struct ca_psat p;
    struct testlib_psat_keys k;
    char *token = psat_for(&p, &k, "node-k"), node[CA_NODE_NAME_MAX + 1];
    EVP_PKEY *key, *thief;
    size_t csr_len, thief_len;
    uint8_t *csr = make_csr(&key, &csr_len), *thief_csr = make_csr(&thief, &thief_len);
    struct ca_svid *svid = malloc(sizeof(*svid));
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), csr, csr_len, TESTLIB_NOW, node,
                                     svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_str_eq(node, "node-k");
    expect_verifies(svid, key, "spiffe://example.org/weft/node/node-k");
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-k"), 1);
    /* a retry with the same key is fine; the same token with another key is a replay */
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), csr, csr_len, TESTLIB_NOW, node,
                                     svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), thief_csr, thief_len,
                                     TESTLIB_NOW, node, svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert(strstr(err, "a replay") != NULL, "%s", err);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-k"), 2);
    /* a revoked node gets nothing, token or not */
    cr_assert_eq(ca_revoke(store, CA_REVOKE_NODE, "node-k", TESTLIB_NOW, NULL, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), csr, csr_len, TESTLIB_NOW, node,
                                     svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert(strstr(err, "revoked") != NULL, "%s", err);
    /* an invalid token (here: past its expiry) is refused before anything is signed */
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), csr, csr_len,
                                     TESTLIB_NOW + 7200, node, svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert(strstr(err, "expired") != NULL, "%s", err);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-k"), 2);
    free(svid);
    free(token);
    OPENSSL_free(csr);
    OPENSSL_free(thief_csr);
    EVP_PKEY_free(key);
    EVP_PKEY_free(thief);
    ca_psat_cleanup(&p);
    testlib_psat_keys_cleanup(&k);
}

Test(ca_issuer, a_node_joins_with_its_token_once)
{
    char token[CA_TOKEN_TEXT_LEN + 1], node[CA_NODE_NAME_MAX + 1];
    cr_assert_eq(ca_token_create(store, "node-a", 3600, TESTLIB_NOW, token, err, sizeof(err)),
                 WEFT_OK);
    EVP_PKEY *key;
    size_t csr_len;
    uint8_t *csr = make_csr(&key, &csr_len);
    struct ca_svid *svid = malloc(sizeof(*svid));
    /* a broken CSR is refused without using the token up */
    cr_assert_eq(
        ca_attest_node(&ca, token, csr, csr_len - 1, TESTLIB_NOW, node, svid, err, sizeof(err)),
        WEFT_EINVAL);
    cr_assert_eq(
        ca_attest_node(&ca, token, csr, csr_len, TESTLIB_NOW, node, svid, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_str_eq(node, "node-a");
    expect_verifies(svid, key, "spiffe://example.org/weft/node/node-a");
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-a"), 1);
    cr_assert_eq(
        ca_attest_node(&ca, token, csr, csr_len, TESTLIB_NOW, node, svid, err, sizeof(err)),
        WEFT_EPOLICY, "a token is used once");
    /* renewal over the node's own identity, as the TLS layer saw it */
    struct ca_caller caller = {
        .node = "node-a", .serial_hex = "0102", .not_after = svid->not_after};
    cr_assert_eq(ca_renew_node(&ca, &caller, csr, csr_len, TESTLIB_NOW, svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-a"), 2);
    /* a connection outlives its handshake: every call checks expiry and revocation again */
    struct ca_caller expired = caller;
    expired.not_after = TESTLIB_NOW;
    cr_assert_eq(ca_renew_node(&ca, &expired, csr, csr_len, TESTLIB_NOW, svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "expired"), "%s", err);
    cr_assert_eq(ca_revoke(store, CA_REVOKE_SERIAL, "0102", TESTLIB_NOW, NULL, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(ca_renew_node(&ca, &caller, csr, csr_len, TESTLIB_NOW, svid, err, sizeof(err)),
                 WEFT_EPOLICY, "a revoked SVID renews nothing");
    cr_assert_not_null(strstr(err, "serial 0102"), "%s", err);
    struct ca_caller other = {
        .node = "node-a", .serial_hex = "0103", .not_after = caller.not_after};
    cr_assert_eq(ca_renew_node(&ca, &other, csr, csr_len, TESTLIB_NOW, svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_revoke(store, CA_REVOKE_NODE, "node-a", TESTLIB_NOW, NULL, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(ca_renew_node(&ca, &other, csr, csr_len, TESTLIB_NOW, svid, err, sizeof(err)),
                 WEFT_EPOLICY, "a revoked node renews nothing");
    struct ca_caller nobody = {.node = "", .serial_hex = "01", .not_after = caller.not_after};
    cr_assert_eq(ca_renew_node(&ca, &nobody, csr, csr_len, TESTLIB_NOW, svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    free(svid);
    OPENSSL_free(csr);
    EVP_PKEY_free(key);
}

/* add_entry_on stores an entry of |spiffe_id| for |node|, or when |node| is "" for the nodes
 * that report |node_selector|. */
static void add_entry_on(const char *id, const char *spiffe_id, const char *node,
                         const char *node_selector)
{
    struct ca_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", id);
    snprintf(e.spiffe_id, sizeof(e.spiffe_id), "%s", spiffe_id);
    snprintf(e.node, sizeof(e.node), "%s", node);
    snprintf(e.node_selector, sizeof(e.node_selector), "%s", node_selector);
    snprintf(e.selectors[0], sizeof(e.selectors[0]), "unix:uid:1001");
    e.num_selectors = 1;
    e.ttl_s = 600;
    cr_assert_eq(ca_entry_validate(&e, &ca.td, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_store_entry_add(store, &e), WEFT_OK);
}

static void add_entry(const char *id, const char *spiffe_id, const char *node)
{
    add_entry_on(id, spiffe_id, node, "");
}

Test(ca_issuer, a_node_mints_only_its_own_entries)
{
    add_entry("ea", "spiffe://example.org/ns/shop/sa/web", "node-a");
    add_entry("eb", "spiffe://example.org/ns/shop/sa/api", "node-b");
    EVP_PKEY *k1, *k2, *k3;
    size_t l1, l2, l3;
    uint8_t *c1 = make_csr(&k1, &l1), *c2 = make_csr(&k2, &l2), *c3 = make_csr(&k3, &l3);
    struct ca_mint_request reqs[] = {{"ea", c1, l1}, {"eb", c2, l2}, {"nope", c3, l3}};
    struct ca_mint_result *res = calloc(3, sizeof(*res));
    struct ca_caller node_a = {
        .node = "node-a", .serial_hex = "aa", .not_after = TESTLIB_NOW + 3600};
    cr_assert_eq(ca_mint_workloads(&ca, &node_a, reqs, 3, res, TESTLIB_NOW, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(res[0].rc, WEFT_OK, "%s", res[0].err);
    expect_verifies(&res[0].svid, k1, "spiffe://example.org/ns/shop/sa/web");
    cr_assert_eq(res[0].svid.not_after, TESTLIB_NOW - 60 + 600,
                 "the entry's TTL, from a minute back");
    cr_assert_eq(res[1].rc, WEFT_EPOLICY, "node-a may not mint node-b's entry");
    cr_assert_eq(res[2].rc, WEFT_EPOLICY);
    cr_assert_str_eq(res[1].err, "no entry eb", "the same answer as for an unknown entry");
    cr_assert_str_eq(res[2].err, "no entry nope");
    cr_assert_eq(inventory("spiffe://example.org/ns/shop/sa/api"), 0);
    /* a revoked ID is refused at once */
    cr_assert_eq(ca_revoke(store, CA_REVOKE_ID, "spiffe://example.org/ns/shop/sa/web", TESTLIB_NOW,
                           NULL, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(ca_mint_workloads(&ca, &node_a, reqs, 1, res, TESTLIB_NOW, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(res[0].rc, WEFT_EPOLICY);
    cr_assert_not_null(strstr(res[0].err, "revoked"), "%s", res[0].err);
    /* one past the batch limit */
    struct ca_mint_request many[CA_MAX_MINT_BATCH + 1];
    struct ca_mint_result *many_res = calloc(CA_MAX_MINT_BATCH + 1, sizeof(*many_res));
    for (size_t i = 0; i <= CA_MAX_MINT_BATCH; i++) {
        many[i] = reqs[0];
    }
    cr_assert_eq(ca_mint_workloads(&ca, &node_a, many, CA_MAX_MINT_BATCH + 1, many_res, TESTLIB_NOW,
                                   err, sizeof(err)),
                 WEFT_ELIMIT);
    cr_assert_not_null(strstr(err, "over the limit"), "%s", err);
    free(many_res);
    free(res);
    OPENSSL_free(c1);
    OPENSSL_free(c2);
    OPENSSL_free(c3);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
}

Test(ca_issuer, a_batch_is_recorded_together)
{
    add_entry("ea", "spiffe://example.org/ns/shop/sa/web", "node-a");
    add_entry("eb", "spiffe://example.org/ns/shop/sa/api", "node-a");
    EVP_PKEY *keys[6];
    uint8_t *csrs[6];
    struct ca_mint_request reqs[6];
    for (int i = 0; i < 6; i++) {
        size_t len;
        csrs[i] = make_csr(&keys[i], &len);
        reqs[i] = (struct ca_mint_request){i % 2 ? "eb" : "ea", csrs[i], len};
    }
    reqs[5].entry_id = "nope"; /* one refusal in the middle of the batch changes nothing else */
    struct ca_mint_result *res = calloc(6, sizeof(*res));
    struct ca_caller node_a = {
        .node = "node-a", .serial_hex = "aa", .not_after = TESTLIB_NOW + 3600};
    cr_assert_eq(ca_mint_workloads(&ca, &node_a, reqs, 6, res, TESTLIB_NOW, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(res[i].rc, WEFT_OK, "%d: %s", i, res[i].err);
        expect_verifies(&res[i].svid, keys[i],
                        i % 2 ? "spiffe://example.org/ns/shop/sa/api"
                              : "spiffe://example.org/ns/shop/sa/web");
    }
    cr_assert_eq(res[5].rc, WEFT_EPOLICY);
    cr_assert_eq(inventory("spiffe://example.org/ns/shop/sa/web"), 3);
    cr_assert_eq(inventory("spiffe://example.org/ns/shop/sa/api"), 2);
    free(res);
    for (int i = 0; i < 6; i++) {
        OPENSSL_free(csrs[i]);
        EVP_PKEY_free(keys[i]);
    }
}

/* --- JWT-SVIDs ------------------------------------------------------------------------------ */

/* signer_jwt_bundles gives the signer a JWT key and returns a set whose example.org bundle
 * publishes it, as a verifier would hold it. */
static void signer_jwt_bundles(struct spiffe_bundle_set *set, int64_t now)
{
    uint8_t spki[CA_SIGNER_MAX_PUBKEY];
    size_t len;
    cr_assert_eq(
        ca_signer_jwt_new_key(signer, now + 3600, spki, sizeof(spki), &len, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_eq(ca_signer_jwt_activate(signer, err, sizeof(err)), WEFT_OK, "%s", err);
    CBS cbs;
    CBS_init(&cbs, spki, len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    char kid[SPIFFE_JWT_KID_LEN + 1];
    cr_assert_eq(spiffe_jwt_kid(pub, kid), WEFT_OK);
    struct spiffe_bundle *b = spiffe_bundle_new(&ca.td);
    cr_assert_eq(json_array_append_new(b->other_keys, spiffe_jwt_jwk(pub, kid)), 0);
    EVP_PKEY_free(pub);
    spiffe_bundle_set_init(set);
    cr_assert_eq(spiffe_bundle_set_put(set, b), WEFT_OK);
}

Test(ca_issuer, a_node_gets_jwt_svids_of_its_own_entries_only)
{
    int64_t now = (int64_t)time(NULL); /* the signer checks iat against its clock */
    struct spiffe_bundle_set set;
    signer_jwt_bundles(&set, now);
    add_entry("ea", "spiffe://example.org/ns/shop/sa/web", "node-a");
    add_entry("eb", "spiffe://example.org/ns/shop/sa/api", "node-b");
    struct ca_caller node_a = {.node = "node-a", .serial_hex = "aa", .not_after = now + 3600};
    static struct ca_jwt_svid out;
    static const char *const aud[] = {"spiffe://example.org/ns/shop/sa/db", "db"};

    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", aud, 2, 300, now, &out, err, sizeof(err)), WEFT_OK,
                 "%s", err);
    cr_assert_str_eq(out.spiffe_id, "spiffe://example.org/ns/shop/sa/web");
    cr_assert_eq(out.expires_at, now + 300);
    cr_assert_eq(strlen(out.token), out.token_len);
    cr_assert_eq(strlen(out.kid), SPIFFE_JWT_KID_LEN);
    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    cr_assert_eq(spiffe_jwt_validate(&svid, out.token, out.token_len, "db", &set, now, &why),
                 WEFT_OK, "%s", why.msg);
    cr_assert_str_eq(svid.sub.str, "spiffe://example.org/ns/shop/sa/web");
    cr_assert_eq(svid.exp, now + 300);
    spiffe_jwt_svid_cleanup(&svid);
    cr_assert_eq(inventory("spiffe://example.org/ns/shop/sa/web"), 0, "tokens are not recorded");

    /* never longer than the entry's own TTL (600 s here) */
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", aud, 1, 3600, now, &out, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(out.expires_at, now + 600);

    /* another node's entry reads as no entry at all */
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "eb", aud, 1, 300, now, &out, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_str_eq(err, "no entry eb");
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "nope", aud, 1, 300, now, &out, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_str_eq(err, "no entry nope");

    /* audiences: 1 to 16, each 1 to 256 bytes */
    static char long_aud[SPIFFE_JWT_MAX_AUDIENCE + 2];
    memset(long_aud, 'a', SPIFFE_JWT_MAX_AUDIENCE + 1);
    const char *many[SPIFFE_JWT_MAX_AUDIENCES + 1], *empty[] = {""}, *too_long[] = {long_aud};
    for (size_t i = 0; i <= SPIFFE_JWT_MAX_AUDIENCES; i++) {
        many[i] = "db";
    }
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", many, 0, 300, now, &out, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "1 to 16 audiences"), "%s", err);
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", many, SPIFFE_JWT_MAX_AUDIENCES + 1, 300, now, &out,
                             err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", many, SPIFFE_JWT_MAX_AUDIENCES, 300, now, &out,
                             err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", empty, 1, 300, now, &out, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", too_long, 1, 300, now, &out, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "257 bytes"), "%s", err);

    /* the caller and the ID are checked as for X.509 SVIDs */
    struct ca_caller expired = node_a;
    expired.not_after = now;
    cr_assert_eq(ca_mint_jwt(&ca, &expired, "ea", aud, 1, 300, now, &out, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_eq(ca_revoke(store, CA_REVOKE_ID, "spiffe://example.org/ns/shop/sa/web", now, NULL,
                           err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(ca_mint_jwt(&ca, &node_a, "ea", aud, 1, 300, now, &out, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "revoked"), "%s", err);
    spiffe_bundle_set_cleanup(&set);
}

Test(ca_issuer, a_failed_psat_attestation_leaves_the_token_free_for_a_retry)
{
    struct ca_psat p;
    struct testlib_psat_keys k;
    char *token = psat_for(&p, &k, "node-r"), node[CA_NODE_NAME_MAX + 1], path[300];
    EVP_PKEY *first, *second;
    size_t first_len, second_len;
    uint8_t *first_csr = make_csr(&first, &first_len), *second_csr = make_csr(&second, &second_len);
    struct ca_svid *svid = malloc(sizeof(*svid));
    /* another writer holds the store: the attestation fails after the SVID is signed */
    snprintf(path, sizeof(path), "%s/ca.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), first_csr, first_len,
                                     TESTLIB_NOW, node, svid, err, sizeof(err)),
                 WEFT_EIO);
    cr_assert_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-r"), 0);
    /* the retry, even with another key, is no replay: nothing was bound */
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), second_csr, second_len,
                                     TESTLIB_NOW, node, svid, err, sizeof(err)),
                 WEFT_OK, "the retry was refused: %s", err);
    expect_verifies(svid, second, "spiffe://example.org/weft/node/node-r");
    /* and now the token is bound to the key that succeeded */
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), first_csr, first_len,
                                     TESTLIB_NOW, node, svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert(strstr(err, "a replay") != NULL, "%s", err);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-r"), 1);
    free(svid);
    free(token);
    OPENSSL_free(first_csr);
    OPENSSL_free(second_csr);
    EVP_PKEY_free(first);
    EVP_PKEY_free(second);
    ca_psat_cleanup(&p);
    testlib_psat_keys_cleanup(&k);
}

Test(ca_issuer, a_node_keeps_the_method_it_joined_with)
{
    struct ca_psat p;
    struct testlib_psat_keys k;
    char *psat = psat_for(&p, &k, "node-j"), node[CA_NODE_NAME_MAX + 1];
    char token[CA_TOKEN_TEXT_LEN + 1];
    EVP_PKEY *key;
    size_t csr_len;
    uint8_t *csr = make_csr(&key, &csr_len);
    struct ca_svid *svid = malloc(sizeof(*svid));
    /* node-j joined by join token: a Kubernetes Node named node-j does not get its identity */
    cr_assert_eq(ca_token_create(store, "node-j", 3600, TESTLIB_NOW, token, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(
        ca_attest_node(&ca, token, csr, csr_len, TESTLIB_NOW, node, svid, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_eq(ca_attest_node_psat(&ca, &p, psat, strlen(psat), csr, csr_len, TESTLIB_NOW, node,
                                     svid, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert(strstr(err, "node node-j joined by join token: it cannot attest by Kubernetes "
                          "service account token") != NULL,
              "%s", err);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-j"), 1);
    /* the refusal bound nothing: were the node's method ever fixed, the token would still do */
    cr_assert_eq(p.num_bindings, 0);
    free(psat);
    /* node-p joined by service account token: a join token made for node-p is refused, unused */
    psat = testlib_psat_sign(
        testlib_psat_header("RS256", TESTLIB_PSAT_RSA_KID),
        testlib_psat_claims("weft-agent", "node-p", TESTLIB_NOW - 60, TESTLIB_NOW + 3600), "RS256",
        k.rsa, NULL, 0);
    cr_assert_not_null(psat);
    cr_assert_eq(ca_attest_node_psat(&ca, &p, psat, strlen(psat), csr, csr_len, TESTLIB_NOW, node,
                                     svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_token_create(store, "node-p", 3600, TESTLIB_NOW, token, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(
        ca_attest_node(&ca, token, csr, csr_len, TESTLIB_NOW, node, svid, err, sizeof(err)),
        WEFT_EPOLICY);
    cr_assert(strstr(err, "node node-p joined by Kubernetes service account token: it cannot "
                          "attest by join token") != NULL,
              "%s", err);
    cr_assert_eq(inventory("spiffe://example.org/weft/node/node-p"), 1);
    free(svid);
    free(psat);
    OPENSSL_free(csr);
    EVP_PKEY_free(key);
    ca_psat_cleanup(&p);
    testlib_psat_keys_cleanup(&k);
}

Test(ca_issuer, a_node_selector_entry_is_minted_by_every_node_that_reports_it)
{
    /* node-k joins with its agent's token (service account weft-system:weft-agent); node-a
     * joined by join token and reports no selector */
    struct ca_psat p;
    struct testlib_psat_keys k;
    char *token = psat_for(&p, &k, "node-k"), node[CA_NODE_NAME_MAX + 1];
    EVP_PKEY *key;
    size_t csr_len;
    uint8_t *csr = make_csr(&key, &csr_len);
    struct ca_svid *svid = malloc(sizeof(*svid));
    cr_assert_eq(ca_attest_node_psat(&ca, &p, token, strlen(token), csr, csr_len, TESTLIB_NOW, node,
                                     svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    add_entry_on("eall", "spiffe://example.org/ns/shop/sa/web", "", "k8s_psat:cluster:kubernetes");
    add_entry_on("esa", "spiffe://example.org/ns/shop/sa/api", "", "k8s_psat:agent_sa:weft-agent");
    add_entry_on("ens", "spiffe://example.org/ns/shop/sa/db", "", "k8s_psat:agent_ns:other");
    struct ca_mint_request reqs[] = {
        {"eall", csr, csr_len}, {"esa", csr, csr_len}, {"ens", csr, csr_len}};
    struct ca_mint_result *res = calloc(3, sizeof(*res));
    struct ca_caller node_k = {
        .node = "node-k", .serial_hex = "bb", .not_after = TESTLIB_NOW + 3600};
    cr_assert_eq(ca_mint_workloads(&ca, &node_k, reqs, 3, res, TESTLIB_NOW, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(res[0].rc, WEFT_OK, "%s", res[0].err);
    expect_verifies(&res[0].svid, key, "spiffe://example.org/ns/shop/sa/web");
    cr_assert_eq(res[1].rc, WEFT_OK, "%s", res[1].err);
    cr_assert_eq(res[2].rc, WEFT_EPOLICY, "node-k's agent is not in namespace other");
    cr_assert_str_eq(res[2].err, "no entry ens");
    /* JWT-SVIDs likewise (the signer checks iat against its own clock) */
    int64_t now = (int64_t)time(NULL);
    struct spiffe_bundle_set set;
    signer_jwt_bundles(&set, now);
    static struct ca_jwt_svid jwt;
    const char *aud[] = {"spiffe://example.org/db"};
    struct ca_caller node_k_now = {.node = "node-k", .serial_hex = "bb", .not_after = now + 3600};
    struct ca_caller node_a_now = {.node = "node-a", .serial_hex = "aa", .not_after = now + 3600};
    cr_assert_eq(ca_mint_jwt(&ca, &node_k_now, "esa", aud, 1, 300, now, &jwt, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_mint_jwt(&ca, &node_k_now, "ens", aud, 1, 300, now, &jwt, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_eq(ca_mint_jwt(&ca, &node_a_now, "eall", aud, 1, 300, now, &jwt, err, sizeof(err)),
                 WEFT_EPOLICY, "a join-token node reports no cluster");
    spiffe_bundle_set_cleanup(&set);
    char join[CA_TOKEN_TEXT_LEN + 1];
    cr_assert_eq(ca_token_create(store, "node-a", 3600, TESTLIB_NOW, join, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(ca_attest_node(&ca, join, csr, csr_len, TESTLIB_NOW, node, svid, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    struct ca_caller node_a = {
        .node = "node-a", .serial_hex = "aa", .not_after = TESTLIB_NOW + 3600};
    cr_assert_eq(ca_mint_workloads(&ca, &node_a, reqs, 2, res, TESTLIB_NOW, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(res[0].rc, WEFT_EPOLICY, "a join-token node reports no cluster");
    cr_assert_eq(res[1].rc, WEFT_EPOLICY);
    cr_assert_eq(
        ca_mint_jwt(&ca, &node_a, "eall", aud, 1, 300, TESTLIB_NOW, &jwt, err, sizeof(err)),
        WEFT_EPOLICY);
    /* what the CA accepts as a node selector: what some node of its could report */
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:agent_sa:weft-agent", err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:cluster:prod", err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "cluster kubernetes"), "%s", err);
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:agent_ns:weft-system", err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:agent_sa:weft-agnet", err, sizeof(err)),
                 WEFT_EINVAL, "no allowed service account is named so");
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:agent_ns:weft-agent", err, sizeof(err)),
                 WEFT_EINVAL, "a name is not a namespace");
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:zone:a", err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "no such key"), "%s", err);
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s:ns:default", err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat", err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_psat_node_selector_check(&p, "k8s_psat:agent_ns:Bad_Name", err, sizeof(err)),
                 WEFT_EINVAL);
    free(res);
    free(svid);
    free(token);
    OPENSSL_free(csr);
    EVP_PKEY_free(key);
    ca_psat_cleanup(&p);
    testlib_psat_keys_cleanup(&k);
}
