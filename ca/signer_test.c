/* ca/signer_test.c: the signer child holds the key, signs only what a leaf of its trust domain
 * may be, and goes away with its channel. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "ca/signer.h"
#include "lib/base/file.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"

static char dir[] = "/tmp/weft-signer-test-XXXXXX";
static char key_path[256], cert_path[256];
static struct testlib_pki pki;

static void write_pem(const char *path, const char *pem, size_t len, mode_t mode)
{
    cr_assert_eq(weft_file_write_atomic(path, pem, len, mode), WEFT_OK, "%s", path);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    /* the signer drops to nobody when run as root: it must still reach nothing it needs */
    chmod(dir, 0755);
    cr_assert_eq(testlib_pki_mint(&pki, SPIFFE_KEY_EC_P256, true), WEFT_OK);
    snprintf(key_path, sizeof(key_path), "%s/ca.key", dir);
    snprintf(cert_path, sizeof(cert_path), "%s/ca.pem", dir);
    char *pem;
    size_t len;
    cr_assert_eq(spiffe_key_to_pem(&pem, &len, pki.inter.key), WEFT_OK);
    write_pem(key_path, pem, len, 0600);
    free(pem);
    STACK_OF(X509) *one = testlib_chain(&pki.inter.cert, 1);
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, one), WEFT_OK);
    write_pem(cert_path, pem, len, 0644);
    free(pem);
    sk_X509_pop_free(one, X509_free);
}

static void teardown(void)
{
    testlib_pki_cleanup(&pki);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ca_signer, .init = setup, .fini = teardown);

static struct ca_signer *start(void)
{
    struct ca_signer_config cfg = {.key_path = key_path, .cert_path = cert_path};
    struct ca_signer *s = NULL;
    char err[512];
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    return s;
}

/* pubkey_der returns |key|'s SubjectPublicKeyInfo. */
static uint8_t *pubkey_der(EVP_PKEY *key, size_t *len)
{
    CBB cbb;
    uint8_t *der;
    cr_assert(CBB_init(&cbb, 128));
    cr_assert(EVP_marshal_public_key(&cbb, key));
    cr_assert(CBB_finish(&cbb, &der, len));
    return der;
}

static int sign(struct ca_signer *s, const char *id, int64_t ttl, X509 **out, char *err)
{
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    size_t pub_len;
    uint8_t *pub = pubkey_der(key, &pub_len);
    struct ca_signer_request req = {pub, pub_len, id, TESTLIB_NOW - 60, ttl, NULL, 0};
    uint8_t der[CA_SIGNER_MAX_CERT];
    size_t der_len = 0;
    int rc = ca_signer_sign_leaf(s, &req, der, sizeof(der), &der_len, err, 512);
    if (rc == WEFT_OK) {
        const uint8_t *p = der;
        *out = d2i_X509(NULL, &p, (long)der_len);
        cr_assert_not_null(*out);
        cr_assert_eq(spiffe_x509svid_check_key(*out, key, NULL), WEFT_OK, "the leaf holds our key");
    }
    OPENSSL_free(pub);
    EVP_PKEY_free(key);
    return rc;
}

Test(ca_signer, signs_leaves_that_verify_to_the_root)
{
    struct ca_signer *s = start();
    X509 *leaf = NULL;
    char err[512];
    cr_assert_eq(sign(s, "spiffe://example.org/ns/shop/sa/web", 3600, &leaf, err), WEFT_OK, "%s",
                 err);
    X509 *chain_certs[] = {leaf, pki.inter.cert};
    STACK_OF(X509) *chain = testlib_chain(chain_certs, 2);
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    cr_assert_eq(testlib_bundle_set_add(&set, TESTLIB_TD, pki.root.cert), WEFT_OK);
    struct spiffe_id id;
    struct spiffe_why why;
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_str_eq(id.str, "spiffe://example.org/ns/shop/sa/web");
    int64_t nb, na;
    cr_assert_eq(spiffe_cert_validity(&nb, &na, leaf), WEFT_OK);
    cr_assert_eq(na - nb, 3600);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    ca_signer_stop(s);
}

Test(ca_signer, refuses_what_a_leaf_of_its_trust_domain_may_not_be)
{
    struct ca_signer *s = start();
    X509 *leaf = NULL;
    char err[512];
    cr_assert_eq(sign(s, "spiffe://other.org/ns/shop/sa/web", 3600, &leaf, err), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "other.org"), "%s", err);
    cr_assert_eq(sign(s, "spiffe://example.org", 3600, &leaf, err), WEFT_EPOLICY);
    cr_assert_eq(sign(s, "spiffe://Example.org/x", 3600, &leaf, err), WEFT_EINVAL);
    cr_assert_eq(sign(s, "spiffe://example.org/x", 299, &leaf, err), WEFT_EPOLICY, "under 5 min");
    cr_assert_eq(sign(s, "spiffe://example.org/x", 24 * 3600 + 1, &leaf, err), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "TTL"), "%s", err);
    cr_assert_eq(sign(s, "spiffe://example.org/x", 300, &leaf, err), WEFT_OK, "%s", err);
    X509_free(leaf);
    /* a key that is not DER */
    static const uint8_t junk[] = {0x30, 0x03, 0x01, 0x01, 0x00};
    struct ca_signer_request req = {
        junk, sizeof(junk), "spiffe://example.org/x", TESTLIB_NOW, 3600, NULL, 0};
    uint8_t der[CA_SIGNER_MAX_CERT];
    size_t len;
    cr_assert_eq(ca_signer_sign_leaf(s, &req, der, sizeof(der), &len, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "SubjectPublicKeyInfo"), "%s", err);
    /* it is still there and still signs after every refusal */
    cr_assert_eq(sign(s, "spiffe://example.org/y", 3600, &leaf, err), WEFT_OK, "%s", err);
    X509_free(leaf);
    ca_signer_stop(s);
}

Test(ca_signer, refuses_a_key_file_others_can_read)
{
    cr_assert_eq(chmod(key_path, 0640), 0);
    struct ca_signer_config cfg = {.key_path = key_path, .cert_path = cert_path};
    struct ca_signer *s = (struct ca_signer *)1;
    char err[512];
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "readable by group or others (mode 0640)"), "%s", err);
}

Test(ca_signer, refuses_a_key_that_is_not_the_certificates)
{
    char *pem;
    size_t len;
    cr_assert_eq(spiffe_key_to_pem(&pem, &len, pki.root.key), WEFT_OK);
    write_pem(key_path, pem, len, 0600);
    free(pem);
    struct ca_signer_config cfg = {.key_path = key_path, .cert_path = cert_path};
    struct ca_signer *s = NULL;
    char err[512];
    cr_assert_neq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_OK);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "does not match"), "%s", err);
}

Test(ca_signer, the_child_drops_privileges_and_ends_with_its_channel)
{
    struct ca_signer *s = start();
    pid_t pid = ca_signer_pid(s);
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    unsigned uid = 0;
    bool seen = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Uid:\t%u", &uid) == 1) {
            seen = true;
        }
    }
    fclose(f);
    cr_assert(seen);
    if (geteuid() == 0) {
        cr_assert_eq(uid, 65534, "the signer runs as nobody, not root");
    }
    ca_signer_stop(s);
    cr_assert_eq(kill(pid, 0), -1, "the signer is gone");
    cr_assert_eq(errno, ESRCH);
}

/* --- rotation: root key slots and intermediates kept in memory --------------------------- */

static X509 *der_cert(const uint8_t *der, size_t len)
{
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    cr_assert_not_null(x);
    return x;
}

static bool issued_by(X509 *child, X509 *parent)
{
    EVP_PKEY *pub = X509_get_pubkey(parent);
    bool ok = X509_verify(child, pub) == 1;
    EVP_PKEY_free(pub);
    return ok;
}

static long file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    cr_assert_eq(st.st_mode & 0777, 0600, "%s is 0600", path);
    return (long)st.st_size;
}

Test(ca_signer, rotates_intermediates_and_roots_through_its_key_slots)
{
    /* a root of today, its key in slot 0; slot 1 does not exist yet */
    int64_t now = (int64_t)time(NULL);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    EVP_PKEY *root_key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    X509 *root = NULL;
    struct spiffe_mint_params rp = {.not_before = now - 60, .ttl_s = 30 * TESTLIB_DAY};
    cr_assert_eq(spiffe_mint_root(&root, root_key, &td, &rp, NULL), WEFT_OK);
    char slot0[256], slot1[256], *pem;
    size_t len;
    snprintf(slot0, sizeof(slot0), "%s/root.key", dir);
    snprintf(slot1, sizeof(slot1), "%s/root-2.key", dir);
    cr_assert_eq(spiffe_key_to_pem(&pem, &len, root_key), WEFT_OK);
    write_pem(slot0, pem, len, 0600);
    free(pem);
    STACK_OF(X509) *roots = testlib_chain(&root, 1);
    struct ca_signer_config cfg = {
        .key_path = key_path,
        .cert_path = cert_path,
        .root_key_paths = {slot0, slot1},
        .roots = roots,
        .signing_slot = 0,
        .intermediate_ttl_s = TESTLIB_DAY,
    };
    struct ca_signer *s = NULL;
    char err[512];
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    struct ca_signer_info info;
    ca_signer_info(s, &info);
    cr_assert_eq(info.intermediate_slot, 0, "a fresh intermediate under the root in slot 0");
    cr_assert(info.slot_has_root[0] && !info.slot_has_key[1]);
    X509 *first = der_cert(info.intermediate, info.intermediate_len);
    cr_assert(issued_by(first, root));
    cr_assert_eq(file_size(slot1), 0, "slot 1 was made, empty");

    /* intermediate rotation: prepared, then active; leaves follow */
    uint8_t der[CA_SIGNER_MAX_CERT];
    size_t der_len;
    cr_assert_eq(ca_signer_activate(s, err, sizeof(err)), WEFT_ENOTFOUND);
    cr_assert_eq(ca_signer_mint_intermediate(s, 0, now, TESTLIB_DAY, der, sizeof(der), &der_len,
                                             err, sizeof(err)),
                 WEFT_OK, "%s", err);
    X509 *second = der_cert(der, der_len), *active;
    ca_signer_info(s, &info);
    active = der_cert(info.intermediate, info.intermediate_len);
    cr_assert_eq(X509_cmp(active, first), 0, "prepared is not active");
    X509_free(active);
    cr_assert_eq(ca_signer_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    ca_signer_info(s, &info);
    active = der_cert(info.intermediate, info.intermediate_len);
    cr_assert_eq(X509_cmp(active, second), 0);
    X509_free(active);
    EVP_PKEY *leaf_key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    size_t pub_len;
    uint8_t *pub = pubkey_der(leaf_key, &pub_len);
    struct ca_signer_request req = {pub,  pub_len, "spiffe://example.org/w", now - 60, 3600,
                                    NULL, 0};
    cr_assert_eq(ca_signer_sign_leaf(s, &req, der, sizeof(der), &der_len, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    X509 *leaf = der_cert(der, der_len);
    cr_assert(issued_by(leaf, second) && !issued_by(leaf, first));
    X509_free(leaf);

    /* root rotation: the slot in use is refused; a new root goes into slot 1, on disk */
    cr_assert_eq(ca_signer_new_root(s, 0, SPIFFE_KEY_EC_P256, now, 30 * TESTLIB_DAY, der,
                                    sizeof(der), &der_len, err, sizeof(err)),
                 WEFT_EPOLICY);
    cr_assert_eq(ca_signer_drop_root(s, 0, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_eq(ca_signer_new_root(s, 1, SPIFFE_KEY_EC_P256, now, 30 * TESTLIB_DAY, der,
                                    sizeof(der), &der_len, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    X509 *root2 = der_cert(der, der_len);
    cr_assert(file_size(slot1) > 0);
    cr_assert_eq(ca_signer_mint_intermediate(s, 1, now, TESTLIB_DAY, der, sizeof(der), &der_len,
                                             err, sizeof(err)),
                 WEFT_OK, "%s", err);
    X509 *third = der_cert(der, der_len);
    cr_assert(issued_by(third, root2));
    cr_assert_eq(ca_signer_drop_root(s, 1, err, sizeof(err)), WEFT_EPOLICY, "prepared under it");
    cr_assert_eq(ca_signer_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_signer_drop_root(s, 0, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(file_size(slot0), 0, "the old root's key is gone from disk");
    ca_signer_info(s, &info);
    cr_assert(!info.slot_has_key[0] && info.slot_has_root[1] && info.intermediate_slot == 1);
    ca_signer_stop(s);

    /* a restart finds the new root's key in slot 1 and signs under it */
    sk_X509_push(roots, X509_up_ref(root2) ? root2 : NULL);
    cfg.signing_slot = 1;
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    ca_signer_info(s, &info);
    X509 *fourth = der_cert(info.intermediate, info.intermediate_len);
    cr_assert(issued_by(fourth, root2));
    ca_signer_stop(s);

    /* a spare slot that does not decode (a rotation stopped while writing it) is ignored */
    write_pem(slot0, "-----BEGIN PRIV", 15, 0600);
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    ca_signer_info(s, &info);
    cr_assert(!info.slot_has_key[0] && info.slot_has_root[1]);
    ca_signer_stop(s);

    /* a slot file others may read is refused */
    cr_assert_eq(chmod(slot1, 0644), 0);
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "root-2.key is readable by group or others"), "%s", err);

    X509_free(first);
    X509_free(second);
    X509_free(third);
    X509_free(fourth);
    X509_free(root2);
    X509_free(root);
    sk_X509_pop_free(roots, X509_free);
    OPENSSL_free(pub);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(root_key);
}

/* --- JWT-SVIDs ------------------------------------------------------------------------------ */

static struct ca_signer *start_jwt(int64_t max_ttl)
{
    struct ca_signer_config cfg = {
        .key_path = key_path, .cert_path = cert_path, .jwt_max_ttl_s = max_ttl};
    struct ca_signer *s = NULL;
    char err[512];
    cr_assert_eq(ca_signer_start(&s, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    return s;
}

/* jwt_key_of parses a public key the signer returned. */
static EVP_PKEY *jwt_key_of(const uint8_t *spki, size_t len)
{
    CBS cbs;
    CBS_init(&cbs, spki, len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    cr_assert_not_null(pub);
    cr_assert_eq(CBS_len(&cbs), 0);
    return pub;
}

/* jwt_bundles is a set holding example.org's bundle with jwt-svid JWKs for |spkis| only. */
static void jwt_bundles(struct spiffe_bundle_set *set, const uint8_t *const *spkis,
                        const size_t *lens, size_t num)
{
    spiffe_bundle_set_init(set);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    for (size_t i = 0; i < num; i++) {
        EVP_PKEY *pub = jwt_key_of(spkis[i], lens[i]);
        char kid[SPIFFE_JWT_KID_LEN + 1];
        cr_assert_eq(spiffe_jwt_kid(pub, kid), WEFT_OK);
        json_t *jwk = spiffe_jwt_jwk(pub, kid);
        cr_assert_not_null(jwk);
        cr_assert_eq(json_array_append_new(b->other_keys, jwk), 0);
        EVP_PKEY_free(pub);
    }
    cr_assert_eq(spiffe_bundle_set_put(set, b), WEFT_OK);
}

static int sign_jwt(struct ca_signer *s, const char *id, const char *const *aud, size_t num_aud,
                    int64_t iat, int64_t exp, char *token, char *err)
{
    struct ca_signer_jwt_request req = {id, aud, num_aud, iat, exp};
    size_t len = 0;
    int rc = ca_signer_sign_jwt(s, &req, token, SPIFFE_JWT_MAX_TOKEN + 1, &len, err, 512);
    if (rc == WEFT_OK) {
        cr_assert_eq(strlen(token), len);
    }
    return rc;
}

Test(ca_signer, signs_jwt_svids_that_validate_against_its_published_key)
{
    struct ca_signer *s = start_jwt(300);
    static const char *const aud[] = {"spiffe://example.org/ns/shop/sa/db", "db"};
    static char token[SPIFFE_JWT_MAX_TOKEN + 1];
    char err[512];
    int64_t now = (int64_t)time(NULL);
    const char *id = "spiffe://example.org/ns/shop/sa/web";
    cr_assert_eq(sign_jwt(s, id, aud, 2, now, now + 300, token, err), WEFT_ENOTFOUND, "no key yet");

    /* a prepared key is reported, and signs nothing yet */
    uint8_t spki[CA_SIGNER_MAX_PUBKEY];
    size_t spki_len = 0;
    cr_assert_eq(
        ca_signer_jwt_new_key(s, now + 3600, spki, sizeof(spki), &spki_len, err, sizeof(err)),
        WEFT_OK, "%s", err);
    struct ca_signer_info info;
    ca_signer_info(s, &info);
    cr_assert_eq(info.jwt_key_len, 0);
    cr_assert_eq(info.jwt_next_len, spki_len);
    cr_assert_eq(memcmp(info.jwt_next, spki, spki_len), 0);
    cr_assert_eq(info.jwt_next_not_after, now + 3600);
    cr_assert_eq(sign_jwt(s, id, aud, 2, now, now + 300, token, err), WEFT_ENOTFOUND);

    cr_assert_eq(ca_signer_jwt_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    ca_signer_info(s, &info);
    cr_assert_eq(info.jwt_next_len, 0);
    cr_assert_eq(info.jwt_key_len, spki_len);
    cr_assert_eq(memcmp(info.jwt_key, spki, spki_len), 0);
    cr_assert_eq(info.jwt_key_not_after, now + 3600);
    cr_assert_eq(sign_jwt(s, id, aud, 2, now, now + 300, token, err), WEFT_OK, "%s", err);

    /* a verifier holding the published key accepts it, for each audience and no other */
    struct spiffe_bundle_set set;
    const uint8_t *keys[] = {spki};
    size_t lens[] = {spki_len};
    jwt_bundles(&set, keys, lens, 1);
    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), "db", &set, now + 1, &why),
                 WEFT_OK, "%s", why.msg);
    cr_assert_str_eq(svid.sub.str, id);
    cr_assert_eq(svid.exp, now + 300);
    spiffe_jwt_svid_cleanup(&svid);
    cr_assert_eq(spiffe_jwt_validate(&svid, token, strlen(token), aud[0], &set, now + 299, &why),
                 WEFT_OK, "%s", why.msg);
    spiffe_jwt_svid_cleanup(&svid);
    cr_assert_neq(spiffe_jwt_validate(&svid, token, strlen(token), "cache", &set, now, &why),
                  WEFT_OK);
    cr_assert_neq(spiffe_jwt_validate(&svid, token, strlen(token), "db", &set, now + 300, &why),
                  WEFT_OK, "expired at exp");
    spiffe_bundle_set_cleanup(&set);

    /* rotation: the successor signs once activated; the retired key is gone from the signer
     * and a verifier that knows only the successor refuses the old token */
    uint8_t spki2[CA_SIGNER_MAX_PUBKEY];
    size_t spki2_len = 0;
    cr_assert_eq(
        ca_signer_jwt_new_key(s, now + 7200, spki2, sizeof(spki2), &spki2_len, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert(spki2_len != spki_len || memcmp(spki2, spki, spki_len) != 0, "a new key");
    static char token2[SPIFFE_JWT_MAX_TOKEN + 1];
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 60, token2, err), WEFT_OK, "%s", err);
    keys[0] = spki;
    jwt_bundles(&set, keys, lens, 1);
    cr_assert_eq(spiffe_jwt_validate(&svid, token2, strlen(token2), aud[0], &set, now, &why),
                 WEFT_OK, "the prepared key does not sign: %s", why.msg);
    spiffe_jwt_svid_cleanup(&svid);
    spiffe_bundle_set_cleanup(&set);
    cr_assert_eq(ca_signer_jwt_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_signer_jwt_activate(s, err, sizeof(err)), WEFT_ENOTFOUND, "none prepared");
    ca_signer_info(s, &info);
    cr_assert_eq(memcmp(info.jwt_key, spki2, spki2_len), 0);
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 60, token2, err), WEFT_OK, "%s", err);
    keys[0] = spki2;
    lens[0] = spki2_len;
    jwt_bundles(&set, keys, lens, 1);
    cr_assert_eq(spiffe_jwt_validate(&svid, token2, strlen(token2), aud[0], &set, now, &why),
                 WEFT_OK, "%s", why.msg);
    spiffe_jwt_svid_cleanup(&svid);
    cr_assert_neq(spiffe_jwt_validate(&svid, token, strlen(token), "db", &set, now, &why), WEFT_OK,
                  "the retired key is not in this bundle");
    spiffe_bundle_set_cleanup(&set);
    ca_signer_stop(s);
}

Test(ca_signer, refuses_jwt_svids_its_trust_domain_may_not_sign)
{
    struct ca_signer *s = start_jwt(300);
    static char token[SPIFFE_JWT_MAX_TOKEN + 1];
    char err[512];
    int64_t now = (int64_t)time(NULL);
    uint8_t spki[CA_SIGNER_MAX_PUBKEY];
    size_t spki_len = 0;
    cr_assert_eq(ca_signer_jwt_new_key(s, now - 1, spki, sizeof(spki), &spki_len, err, sizeof(err)),
                 WEFT_EPOLICY, "a key published until the past");
    cr_assert_eq(
        ca_signer_jwt_new_key(s, now + 1000, spki, sizeof(spki), &spki_len, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_eq(ca_signer_jwt_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    static const char *const aud[] = {"db"};
    const char *id = "spiffe://example.org/ns/shop/sa/web";

    /* IDs: another trust domain, the trust domain itself, not an ID */
    cr_assert_eq(
        sign_jwt(s, "spiffe://other.org/ns/shop/sa/web", aud, 1, now, now + 60, token, err),
        WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "other.org"), "%s", err);
    cr_assert_eq(sign_jwt(s, "spiffe://example.org", aud, 1, now, now + 60, token, err),
                 WEFT_EPOLICY);
    cr_assert_eq(sign_jwt(s, "spiffe://Example.org/x", aud, 1, now, now + 60, token, err),
                 WEFT_EINVAL);

    /* times: a lifetime outside 30 s .. the configured 300 s, an iat that is not now, an exp
     * past the key's publication */
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 29, token, err), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "lifetime"), "%s", err);
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 301, token, err), WEFT_EPOLICY);
    cr_assert_eq(sign_jwt(s, id, aud, 1, now + 10, now + 100, token, err), WEFT_EPOLICY,
                 "postdated");
    cr_assert_not_null(strstr(err, "iat"), "%s", err);
    cr_assert_eq(sign_jwt(s, id, aud, 1, now - 120, now + 60, token, err), WEFT_EPOLICY,
                 "backdated");
    cr_assert_eq(
        ca_signer_jwt_new_key(s, now + 100, spki, sizeof(spki), &spki_len, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_eq(ca_signer_jwt_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 200, token, err), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "published only until"), "%s", err);
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 100, token, err), WEFT_OK, "%s", err);

    /* audiences: none, one too many, an empty one, one a byte too long */
    static char long_aud[SPIFFE_JWT_MAX_AUDIENCE + 2];
    memset(long_aud, 'a', SPIFFE_JWT_MAX_AUDIENCE + 1);
    const char *many[SPIFFE_JWT_MAX_AUDIENCES + 1];
    for (size_t i = 0; i <= SPIFFE_JWT_MAX_AUDIENCES; i++) {
        many[i] = "db";
    }
    cr_assert_eq(sign_jwt(s, id, many, 0, now, now + 60, token, err), WEFT_ELIMIT);
    cr_assert_eq(sign_jwt(s, id, many, SPIFFE_JWT_MAX_AUDIENCES + 1, now, now + 60, token, err),
                 WEFT_ELIMIT);
    cr_assert_eq(sign_jwt(s, id, many, SPIFFE_JWT_MAX_AUDIENCES, now, now + 60, token, err),
                 WEFT_OK, "%s", err);
    const char *empty[] = {""}, *too_long[] = {long_aud};
    cr_assert_eq(sign_jwt(s, id, empty, 1, now, now + 60, token, err), WEFT_ELIMIT);
    cr_assert_eq(sign_jwt(s, id, too_long, 1, now, now + 60, token, err), WEFT_ELIMIT);
    long_aud[SPIFFE_JWT_MAX_AUDIENCE] = '\0';
    cr_assert_eq(sign_jwt(s, id, too_long, 1, now, now + 60, token, err), WEFT_OK, "%s", err);

    /* it is still there and still signs after every refusal */
    cr_assert(ca_signer_alive(s));
    cr_assert_eq(sign_jwt(s, id, aud, 1, now, now + 60, token, err), WEFT_OK, "%s", err);
    ca_signer_stop(s);
}

Test(ca_signer, jwt_lifetimes_are_capped_at_an_hour_whatever_the_configuration)
{
    struct ca_signer *s = start_jwt(24 * 3600);
    char err[512];
    static char token[SPIFFE_JWT_MAX_TOKEN + 1];
    int64_t now = (int64_t)time(NULL);
    uint8_t spki[CA_SIGNER_MAX_PUBKEY];
    size_t spki_len = 0;
    cr_assert_eq(
        ca_signer_jwt_new_key(s, now + 2 * 86400, spki, sizeof(spki), &spki_len, err, sizeof(err)),
        WEFT_OK, "%s", err);
    cr_assert_eq(ca_signer_jwt_activate(s, err, sizeof(err)), WEFT_OK, "%s", err);
    static const char *const aud[] = {"db"};
    cr_assert_eq(sign_jwt(s, "spiffe://example.org/w", aud, 1, now, now + 3601, token, err),
                 WEFT_EPOLICY);
    cr_assert_eq(sign_jwt(s, "spiffe://example.org/w", aud, 1, now, now + 3600, token, err),
                 WEFT_OK, "%s", err);
    ca_signer_stop(s);
}
