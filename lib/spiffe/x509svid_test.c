/* lib/spiffe/x509svid_test.c: the contract of the X509-SVID checks, decoders and minting
 * (shared/reference/spiffe.md §B). Certificates are minted at test time (test/testlib) and
 * every time-dependent check runs at TESTLIB_NOW; go-spiffe's expired files are used only for
 * structural checks. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"
#include "lib/base/file.h"

#define GO_SPIFFE "test/testdata/go-spiffe/"

/* --- helpers ------------------------------------------------------------------------------ */

static void mint_pki(struct testlib_pki *pki, enum spiffe_key_type type, bool with_intermediate)
{
    int rc = testlib_pki_mint(pki, type, with_intermediate);
    cr_assert_eq(rc, WEFT_OK, "testlib_pki_mint: %d", rc);
}

/* set_with_root returns in |set| one bundle, for |td|, holding |root|. */
static void set_with_root(struct spiffe_bundle_set *set, const char *td, X509 *root)
{
    spiffe_bundle_set_init(set);
    cr_assert_eq(testlib_bundle_set_add(set, td, root), WEFT_OK);
}

static void expect_why(const struct spiffe_why *why, enum spiffe_rule rule, int cert_index,
                       const char *what)
{
    cr_assert_eq(why->rule, rule, "%s: rule %d (%s), want %d", what, why->rule, why->msg, rule);
    cr_assert_eq(why->cert_index, cert_index, "%s: cert_index %d, want %d (%s)", what,
                 why->cert_index, cert_index, why->msg);
    cr_assert_neq(why->msg[0], '\0', "%s: no message", what);
}

static char *pem_of_stack(STACK_OF(X509) * certs, size_t *out_len)
{
    char *pem = NULL;
    cr_assert_eq(spiffe_certs_to_pem(&pem, out_len, certs), WEFT_OK);
    return pem;
}

static char *pem_of_key(EVP_PKEY *key, size_t *out_len)
{
    char *pem = NULL;
    cr_assert_eq(spiffe_key_to_pem(&pem, out_len, key), WEFT_OK);
    return pem;
}

/* build_leaf makes a leaf from |spec| for a new EC key, signed by |issuer|. */
static void build_leaf(struct testlib_cred *out, const struct testlib_cert_spec *spec,
                       const struct testlib_cred *issuer)
{
    memset(out, 0, sizeof(*out));
    out->key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_not_null(out->key);
    cr_assert_eq(testlib_cert_build(&out->cert, spec, out->key, issuer->cert, issuer->key),
                 WEFT_OK);
}

static int signed_by(X509 *cert, const struct testlib_cred *issuer)
{
    int ok = X509_verify(cert, issuer->key) == 1;
    ERR_clear_error();
    return ok;
}

/* --- minted chains ------------------------------------------------------------------------- */

static void expect_pki_verifies(enum spiffe_key_type type, bool with_intermediate)
{
    struct testlib_pki pki;
    struct spiffe_bundle_set set;
    struct spiffe_id id;
    struct spiffe_why why;
    mint_pki(&pki, type, with_intermediate);
    STACK_OF(X509) *chain = testlib_pki_chain(&pki);
    cr_assert_eq(sk_X509_num(chain), with_intermediate ? 2 : 1);

    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_OK, "check: %s", why.msg);
    cr_assert_str_eq(id.str, TESTLIB_LEAF_ID);
    cr_assert_eq(spiffe_x509svid_check_time(chain, TESTLIB_NOW, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(spiffe_x509svid_check_key(pki.leaf.cert, pki.leaf.key, &why), WEFT_OK);

    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    memset(&id, 0, sizeof(id));
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, &why), WEFT_OK, "verify: %s",
                 why.msg);
    cr_assert_str_eq(id.str, TESTLIB_LEAF_ID);
    cr_assert_eq(why.rule, SPIFFE_RULE_NONE);

    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_minted, ec_root_leaf_checks_and_verifies)
{
    expect_pki_verifies(SPIFFE_KEY_EC_P256, false);
}

Test(x509svid_minted, ec_root_intermediate_leaf_checks_and_verifies)
{
    expect_pki_verifies(SPIFFE_KEY_EC_P256, true);
}

Test(x509svid_minted, ed25519_root_leaf_checks_and_verifies)
{
    expect_pki_verifies(SPIFFE_KEY_ED25519, false);
}

Test(x509svid_minted, ed25519_root_intermediate_leaf_checks_and_verifies)
{
    expect_pki_verifies(SPIFFE_KEY_ED25519, true);
}

Test(x509svid_minted, leaf_carries_exactly_the_svid_extensions)
{
    struct testlib_pki pki;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    X509 *leaf = pki.leaf.cert;
    uint32_t flags = X509_get_extension_flags(leaf);
    cr_assert_eq(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0, "B3: empty subject");
    int idx = X509_get_ext_by_NID(leaf, NID_subject_alt_name, -1);
    cr_assert_geq(idx, 0);
    cr_assert(X509_EXTENSION_get_critical(X509_get_ext(leaf, idx)), "B3: SAN critical");
    cr_assert(!(flags & EXFLAG_CA), "B4");
    cr_assert(flags & EXFLAG_KUSAGE);
    cr_assert_eq(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE,
                 "B6: key usage is 0x%x, want digitalSignature alone", X509_get_key_usage(leaf));
    idx = X509_get_ext_by_NID(leaf, NID_key_usage, -1);
    cr_assert(X509_EXTENSION_get_critical(X509_get_ext(leaf, idx)), "B6: KU critical");
    cr_assert(flags & EXFLAG_XKUSAGE);
    cr_assert_eq(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT, "B7");
    testlib_pki_cleanup(&pki);
}

Test(x509svid_minted, cas_carry_exactly_the_signing_extensions)
{
    struct testlib_pki pki;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    X509 *cas[2] = {pki.root.cert, pki.inter.cert};
    for (size_t i = 0; i < 2; i++) {
        uint32_t flags = X509_get_extension_flags(cas[i]);
        cr_assert(flags & EXFLAG_CA, "B5: cA=true");
        cr_assert_eq(X509_get_key_usage(cas[i]), KU_KEY_CERT_SIGN | KU_CRL_SIGN,
                     "B5: key usage of CA %zu is 0x%x, want keyCertSign|cRLSign", i,
                     X509_get_key_usage(cas[i]));
        cr_assert(!(flags & EXFLAG_XKUSAGE), "B7: no EKU on a CA");
        struct spiffe_id id;
        cr_assert_eq(spiffe_cert_uri_id(&id, cas[i], NULL), WEFT_OK);
        cr_assert_str_eq(id.str, TESTLIB_TD_ID, "A15: a CA's ID has no path");
    }
    /* The root and the intermediate both pass as signing certificates a chain carries. */
    X509 *certs[3] = {pki.leaf.cert, pki.inter.cert, pki.root.cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 3);
    struct spiffe_id id;
    struct spiffe_why why;
    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_OK, "%s", why.msg);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_minted, validity_is_what_was_asked)
{
    struct testlib_cred root;
    int64_t nb, na;
    cr_assert_eq(testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, TESTLIB_NOW, 1234),
                 WEFT_OK);
    cr_assert_eq(spiffe_cert_validity(&nb, &na, root.cert), WEFT_OK);
    cr_assert_eq(nb, TESTLIB_NOW);
    cr_assert_eq(na, TESTLIB_NOW + 1234);
    testlib_cred_cleanup(&root);
}

Test(x509svid_minted, leaf_not_after_is_clamped_to_the_issuer)
{
    struct testlib_cred root, inter, leaf, short_leaf;
    int64_t nb, na, root_na;
    const int64_t start = TESTLIB_NOW - TESTLIB_HOUR;
    cr_assert_eq(testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, start, 2 * TESTLIB_HOUR),
                 WEFT_OK);
    cr_assert_eq(spiffe_cert_validity(&nb, &root_na, root.cert), WEFT_OK);
    cr_assert_eq(testlib_mint_intermediate(&inter, &root, TESTLIB_TD, SPIFFE_KEY_EC_P256, start,
                                           TESTLIB_DAY),
                 WEFT_OK);
    cr_assert_eq(spiffe_cert_validity(&nb, &na, inter.cert), WEFT_OK);
    cr_assert_eq(na, root_na, "intermediate notAfter %lld passes the root's %lld", (long long)na,
                 (long long)root_na);
    cr_assert_eq(testlib_mint_leaf(&leaf, &inter, TESTLIB_LEAF_ID, SPIFFE_KEY_EC_P256, start,
                                   30 * TESTLIB_DAY),
                 WEFT_OK);
    cr_assert_eq(spiffe_cert_validity(&nb, &na, leaf.cert), WEFT_OK);
    cr_assert_eq(nb, start);
    cr_assert_eq(na, root_na, "leaf notAfter %lld passes its issuer's %lld", (long long)na,
                 (long long)root_na);
    /* A TTL inside the issuer's window is kept as asked. */
    cr_assert_eq(
        testlib_mint_leaf(&short_leaf, &inter, TESTLIB_LEAF_ID, SPIFFE_KEY_EC_P256, start, 600),
        WEFT_OK);
    cr_assert_eq(spiffe_cert_validity(&nb, &na, short_leaf.cert), WEFT_OK);
    cr_assert_eq(na, start + 600);
    testlib_cred_cleanup(&short_leaf);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&inter);
    testlib_cred_cleanup(&root);
}

Test(x509svid_minted, refuses_requests_that_break_a_rule)
{
    struct testlib_pki pki;
    struct spiffe_id leaf_id, td_id, other_id;
    struct spiffe_mint_params p = {.not_before = TESTLIB_NOW, .ttl_s = 600};
    struct spiffe_why why;
    X509 *out = (X509 *)1;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    cr_assert_eq(spiffe_id_parse(&leaf_id, TESTLIB_LEAF_ID, strlen(TESTLIB_LEAF_ID), NULL),
                 WEFT_OK);
    cr_assert_eq(spiffe_td_parse(&td_id, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&other_id, "spiffe://other.org/w", 20, NULL), WEFT_OK);
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_not_null(key);

    /* A15/B2: a leaf needs a path, a CA must not have one. */
    cr_assert_eq(spiffe_mint_leaf(&out, pki.root.cert, pki.root.key, key, &td_id, &p, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_MINT);
    cr_assert_null(out);
    cr_assert_eq(spiffe_mint_root(&out, key, &leaf_id, &p, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_MINT);
    cr_assert_eq(spiffe_mint_signing_ca(&out, pki.root.cert, pki.root.key, key, &leaf_id, &p, &why),
                 WEFT_EINVAL);
    /* B5: the issuer's trust domain. */
    cr_assert_eq(spiffe_mint_leaf(&out, pki.root.cert, pki.root.key, key, &other_id, &p, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_MINT);
    /* A zero TTL, an oversized serial, and a start after the issuer's end. */
    struct spiffe_mint_params bad = p;
    bad.ttl_s = 0;
    cr_assert_eq(spiffe_mint_leaf(&out, pki.root.cert, pki.root.key, key, &leaf_id, &bad, &why),
                 WEFT_EINVAL);
    bad = p;
    bad.serial_len = SPIFFE_SERIAL_MAX_LEN + 1;
    cr_assert_eq(spiffe_mint_leaf(&out, pki.root.cert, pki.root.key, key, &leaf_id, &bad, &why),
                 WEFT_EINVAL);
    bad = p;
    bad.not_before = TESTLIB_NOW + 2 * TESTLIB_DAY;
    cr_assert_eq(spiffe_mint_leaf(&out, pki.root.cert, pki.root.key, key, &leaf_id, &bad, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_MINT);
    cr_assert_null(out);
    /* And the same request, fixed, is accepted. */
    cr_assert_eq(spiffe_mint_leaf(&out, pki.root.cert, pki.root.key, key, &leaf_id, &p, &why),
                 WEFT_OK, "%s", why.msg);
    X509_free(out);
    EVP_PKEY_free(key);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_minted, uses_the_serial_it_is_given)
{
    struct testlib_cred root;
    struct spiffe_id td;
    struct spiffe_mint_params p = {
        .not_before = TESTLIB_NOW, .ttl_s = 60, .serial = {0x01, 0x02, 0x03}, .serial_len = 3};
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    memset(&root, 0, sizeof(root));
    root.key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_eq(spiffe_mint_root(&root.cert, root.key, &td, &p, NULL), WEFT_OK);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(root.cert);
    cr_assert_eq(ASN1_INTEGER_get(serial), 0x010203);
    testlib_cred_cleanup(&root);
}

/* --- verification ---------------------------------------------------------------------------- */

/* verify_at runs spiffe_x509svid_verify of |pki|'s chain against |set| at |at|. */
static int verify_at(const struct testlib_pki *pki, const struct spiffe_bundle_set *set, int64_t at,
                     struct spiffe_why *why)
{
    struct spiffe_id id;
    STACK_OF(X509) *chain = testlib_pki_chain(pki);
    int rc = spiffe_x509svid_verify(&id, chain, set, at, why);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

Test(x509svid_verify, b9_window_edges)
{
    struct testlib_pki pki;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    int64_t nb, na;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    cr_assert_eq(spiffe_cert_validity(&nb, &na, pki.leaf.cert), WEFT_OK);

    STACK_OF(X509) *chain = testlib_pki_chain(&pki);
    /* check_time: RFC 5280 §4.1.2.5, notBefore through notAfter inclusive. */
    cr_assert_eq(spiffe_x509svid_check_time(chain, nb, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(spiffe_x509svid_check_time(chain, na, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(spiffe_x509svid_check_time(chain, na + 1, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_EXPIRED, 0, "check_time after notAfter");
    cr_assert_eq(spiffe_x509svid_check_time(chain, nb - 1, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NOT_YET_VALID, 0, "check_time before notBefore");
    sk_X509_pop_free(chain, X509_free);

    cr_assert_eq(verify_at(&pki, &set, nb, &why), WEFT_OK, "at notBefore: %s", why.msg);
    /* At notAfter itself too: verify applies check_time's inclusive rule to the whole path,
     * not BoringSSL's own (which already calls notAfter == at "expired"). */
    cr_assert_eq(verify_at(&pki, &set, na, &why), WEFT_OK, "at notAfter: %s", why.msg);
    cr_assert_eq(verify_at(&pki, &set, na + 1, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_EXPIRED, 0, "one second after notAfter");
    cr_assert_eq(verify_at(&pki, &set, na + 365 * TESTLIB_DAY, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_EXPIRED, 0, "a year later");

    cr_assert_eq(verify_at(&pki, &set, nb - 1, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NOT_YET_VALID, 0, "one second before notBefore");

    spiffe_bundle_set_cleanup(&set);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, b9_intermediate_outside_its_window)
{
    struct testlib_cred root, inter, leaf;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id id;
    /* The intermediate starts an hour after the leaf; between the two, only it is invalid. */
    cr_assert_eq(testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, TESTLIB_NOW - TESTLIB_DAY,
                                   2 * TESTLIB_DAY),
                 WEFT_OK);
    cr_assert_eq(testlib_mint_intermediate(&inter, &root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                                           TESTLIB_NOW, TESTLIB_DAY),
                 WEFT_OK);
    cr_assert_eq(testlib_mint_leaf(&leaf, &inter, TESTLIB_LEAF_ID, SPIFFE_KEY_EC_P256,
                                   TESTLIB_NOW - TESTLIB_HOUR, TESTLIB_DAY),
                 WEFT_OK);
    X509 *certs[2] = {leaf.cert, inter.cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 2);
    set_with_root(&set, TESTLIB_TD, root.cert);
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW - 60, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NOT_YET_VALID, 1, "intermediate not yet valid");
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW + 60, &why), WEFT_OK, "%s",
                 why.msg);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&inter);
    testlib_cred_cleanup(&root);
}

Test(x509svid_verify, b9_expired_authority_in_bundle)
{
    /* The bundle holds an old edition of the root: same key and name, a window that has
     * closed. Path validation reaches it and must refuse it. */
    struct testlib_pki pki;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id td;
    struct spiffe_mint_params old = {.not_before = TESTLIB_NOW - 10 * TESTLIB_DAY,
                                     .ttl_s = TESTLIB_DAY};
    X509 *old_root = NULL;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    cr_assert_eq(spiffe_mint_root(&old_root, pki.root.key, &td, &old, NULL), WEFT_OK);
    set_with_root(&set, TESTLIB_TD, old_root);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_EXPIRED, 1, "expired bundle authority");
    spiffe_bundle_set_cleanup(&set);
    /* The current edition of the same root verifies. */
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_OK, "%s", why.msg);
    spiffe_bundle_set_cleanup(&set);
    X509_free(old_root);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, b9_no_bundle_for_the_trust_domain)
{
    struct testlib_pki pki;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id td;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);

    spiffe_bundle_set_init(&set);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_BUNDLE, 0, "empty set");
    cr_assert_eq(verify_at(&pki, NULL, TESTLIB_NOW, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_BUNDLE, 0, "no set");

    /* A bundle for the trust domain with no X.509 authority (E1: every key revoked). */
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    cr_assert_eq(spiffe_bundle_set_put(&set, spiffe_bundle_new(&td)), WEFT_OK);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_BUNDLE, 0, "bundle without authorities");
    spiffe_bundle_set_cleanup(&set);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, b9_another_trust_domains_bundle_never_helps)
{
    struct testlib_pki pki, wrong;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    mint_pki(&wrong, SPIFFE_KEY_EC_P256, false);

    /* The right root, filed under another trust domain. */
    set_with_root(&set, "other.org", pki.root.cert);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_BUNDLE, 0, "right root under other.org");
    /* ... a trust domain whose name starts like ours ... */
    cr_assert_eq(testlib_bundle_set_add(&set, "example.org.evil", pki.root.cert), WEFT_OK);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_BUNDLE, 0, "right root under example.org.evil");
    /* ... and, with our own trust domain's bundle holding the wrong root, no fallback. */
    cr_assert_eq(testlib_bundle_set_add(&set, TESTLIB_TD, wrong.root.cert), WEFT_OK);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_CHAIN, "%s", why.msg);

    spiffe_bundle_set_cleanup(&set);
    testlib_pki_cleanup(&wrong);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, b9_wrong_root)
{
    /* Same trust domain, same subject name, another key. */
    struct testlib_pki pki, other;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    mint_pki(&other, SPIFFE_KEY_EC_P256, false);
    cr_assert_eq(
        X509_NAME_cmp(X509_get_subject_name(pki.root.cert), X509_get_subject_name(other.root.cert)),
        0);
    set_with_root(&set, TESTLIB_TD, other.root.cert);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_CHAIN, "%s", why.msg);
    /* Adding the right root to the same bundle fixes it. */
    struct spiffe_bundle *b = (struct spiffe_bundle *)set.bundles[0];
    cr_assert_eq(spiffe_bundle_add_x509(b, pki.root.cert), WEFT_OK);
    cr_assert_eq(verify_at(&pki, &set, TESTLIB_NOW, &why), WEFT_OK, "%s", why.msg);
    spiffe_bundle_set_cleanup(&set);
    testlib_pki_cleanup(&other);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, b9_missing_intermediate)
{
    struct testlib_pki pki;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id id;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    STACK_OF(X509) *leaf_only = testlib_chain(&pki.leaf.cert, 1);
    cr_assert_eq(spiffe_x509svid_verify(&id, leaf_only, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_CHAIN, "%s", why.msg);
    sk_X509_pop_free(leaf_only, X509_free);
    spiffe_bundle_set_cleanup(&set);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, bundle_authorities_are_anchors_even_if_not_self_signed)
{
    /* The bundle holds the intermediate alone: it is a trust anchor (PARTIAL_CHAIN). */
    struct testlib_pki pki;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id id;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    set_with_root(&set, TESTLIB_TD, pki.inter.cert);
    STACK_OF(X509) *leaf_only = testlib_chain(&pki.leaf.cert, 1);
    cr_assert_eq(spiffe_x509svid_verify(&id, leaf_only, &set, TESTLIB_NOW, &why), WEFT_OK, "%s",
                 why.msg);
    sk_X509_pop_free(leaf_only, X509_free);
    spiffe_bundle_set_cleanup(&set);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_verify, forged_signature)
{
    /* A leaf naming the root as its issuer but signed by another key. */
    struct testlib_pki pki;
    struct testlib_cred forger, leaf;
    struct testlib_cert_spec spec;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id id;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    forger.cert = pki.root.cert; /* its name */
    forger.key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID);
    build_leaf(&leaf, &spec, &forger);
    STACK_OF(X509) *chain = testlib_chain(&leaf.cert, 1);
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_CHAIN, "%s", why.msg);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);
    EVP_PKEY_free(forger.key);
    testlib_pki_cleanup(&pki);
}

/* --- one broken rule at a time ------------------------------------------------------------- */

struct defect_case {
    enum testlib_defect defect;
    enum spiffe_rule rule;
};

static const struct defect_case leaf_defects[] = {
    {TESTLIB_DEFECT_NO_URI_SAN, SPIFFE_RULE_SVID_URI_SAN_COUNT},
    {TESTLIB_DEFECT_NO_SAN_EXTENSION, SPIFFE_RULE_SVID_URI_SAN_COUNT},
    {TESTLIB_DEFECT_TWO_URI_SANS, SPIFFE_RULE_SVID_URI_SAN_COUNT},
    /* BoringSSL marks a certificate with a repeated extension invalid before B1 is asked. */
    {TESTLIB_DEFECT_TWO_SAN_EXTENSIONS, SPIFFE_RULE_SVID_DECODE},
    {TESTLIB_DEFECT_URI_NOT_SPIFFE, SPIFFE_RULE_SVID_URI_SAN_ID},
    {TESTLIB_DEFECT_ROOT_PATH_ID, SPIFFE_RULE_SVID_ROOT_PATH},
    {TESTLIB_DEFECT_LEAF_CA, SPIFFE_RULE_SVID_LEAF_CA},
    {TESTLIB_DEFECT_KU_MISSING, SPIFFE_RULE_SVID_KU_MISSING},
    {TESTLIB_DEFECT_KU_NOT_CRITICAL, SPIFFE_RULE_SVID_KU_CRITICAL},
    {TESTLIB_DEFECT_KU_NO_DIGSIG, SPIFFE_RULE_SVID_KU_DIGSIG},
    {TESTLIB_DEFECT_KU_CERT_SIGN, SPIFFE_RULE_SVID_KU_CERTSIGN},
    {TESTLIB_DEFECT_KU_CRL_SIGN, SPIFFE_RULE_SVID_KU_CRLSIGN},
    {TESTLIB_DEFECT_EKU_SERVER_ONLY, SPIFFE_RULE_SVID_EKU},
    {TESTLIB_DEFECT_EKU_CLIENT_ONLY, SPIFFE_RULE_SVID_EKU},
    {TESTLIB_DEFECT_SAN_NOT_CRITICAL, SPIFFE_RULE_SVID_SAN_CRITICAL},
};

static const struct defect_case signer_defects[] = {
    {TESTLIB_DEFECT_SIGNER_NOT_CA, SPIFFE_RULE_SVID_SIGNER_CA},
    {TESTLIB_DEFECT_SIGNER_NO_BC, SPIFFE_RULE_SVID_SIGNER_CA},
    {TESTLIB_DEFECT_SIGNER_NO_CERT_SIGN, SPIFFE_RULE_SVID_SIGNER_CERTSIGN},
    {TESTLIB_DEFECT_SIGNER_KU_NOT_CRITICAL, SPIFFE_RULE_SVID_KU_CRITICAL},
    {TESTLIB_DEFECT_SIGNER_WITH_PATH, SPIFFE_RULE_SVID_SIGNER_PATH},
};

/* check_leaf_spec builds a leaf from |spec| under a minted root and returns what
 * spiffe_x509svid_check and spiffe_x509svid_verify (at TESTLIB_NOW, with that root) say. */
static void check_leaf_spec(const struct testlib_cert_spec *spec, int *out_check_rc,
                            struct spiffe_why *out_check_why, int *out_verify_rc,
                            struct spiffe_why *out_verify_why)
{
    struct testlib_pki pki;
    struct testlib_cred leaf;
    struct spiffe_bundle_set set;
    struct spiffe_id id;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    build_leaf(&leaf, spec, &pki.root);
    cr_assert(signed_by(leaf.cert, &pki.root), "the leaf is properly signed by the root");
    STACK_OF(X509) *chain = testlib_chain(&leaf.cert, 1);
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    *out_check_rc = spiffe_x509svid_check(&id, chain, out_check_why);
    *out_verify_rc = spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, out_verify_why);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_defects, built_leaf_without_defect_checks_and_verifies)
{
    struct testlib_cert_spec spec;
    struct spiffe_why cwhy, vwhy;
    int crc, vrc;
    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID);
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "check: %s", cwhy.msg);
    cr_assert_eq(vrc, WEFT_OK, "verify: %s", vwhy.msg);
}

Test(x509svid_defects, each_leaf_defect_is_rejected_with_its_rule)
{
    for (size_t i = 0; i < nitems(leaf_defects); i++) {
        const struct defect_case *c = &leaf_defects[i];
        const char *name = testlib_defect_name(c->defect);
        struct testlib_cert_spec spec;
        struct spiffe_why cwhy, vwhy;
        int crc, vrc;
        testlib_spec_leaf(&spec, TESTLIB_LEAF_ID);
        testlib_spec_break(&spec, c->defect);
        check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
        cr_assert_eq(crc, WEFT_EINVAL, "%s: check rc %d (%s)", name, crc, cwhy.msg);
        expect_why(&cwhy, c->rule, 0, name);
        cr_assert_eq(vrc, WEFT_EINVAL, "%s: verify rc %d", name, vrc);
        expect_why(&vwhy, c->rule, 0, name);
    }
}

/* check_signer_spec builds root -> intermediate (from |spec|) -> good leaf and checks and
 * verifies the chain [leaf, intermediate]. */
static void check_signer_spec(const struct testlib_cert_spec *inter_spec, int *out_check_rc,
                              struct spiffe_why *out_check_why, int *out_verify_rc,
                              struct spiffe_why *out_verify_why)
{
    struct testlib_pki pki;
    struct testlib_cred inter, leaf;
    struct testlib_cert_spec leaf_spec;
    struct spiffe_bundle_set set;
    struct spiffe_id id;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    build_leaf(&inter, inter_spec, &pki.root);
    testlib_spec_leaf(&leaf_spec, TESTLIB_LEAF_ID);
    build_leaf(&leaf, &leaf_spec, &inter);
    cr_assert(signed_by(inter.cert, &pki.root));
    cr_assert(signed_by(leaf.cert, &inter));
    X509 *certs[2] = {leaf.cert, inter.cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 2);
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    *out_check_rc = spiffe_x509svid_check(&id, chain, out_check_why);
    *out_verify_rc = spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, out_verify_why);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&inter);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_defects, built_intermediate_without_defect_checks_and_verifies)
{
    struct testlib_cert_spec spec;
    struct spiffe_why cwhy, vwhy;
    int crc, vrc;
    testlib_spec_signing_ca(&spec, TESTLIB_TD_ID);
    check_signer_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "check: %s", cwhy.msg);
    cr_assert_eq(vrc, WEFT_OK, "verify: %s", vwhy.msg);
}

Test(x509svid_defects, each_signer_defect_is_rejected_with_its_rule)
{
    for (size_t i = 0; i < nitems(signer_defects); i++) {
        const struct defect_case *c = &signer_defects[i];
        const char *name = testlib_defect_name(c->defect);
        struct testlib_cert_spec spec;
        struct spiffe_why cwhy, vwhy;
        int crc, vrc;
        testlib_spec_signing_ca(&spec, TESTLIB_TD_ID);
        testlib_spec_break(&spec, c->defect);
        check_signer_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
        cr_assert_eq(crc, WEFT_EINVAL, "%s: check rc %d (%s)", name, crc, cwhy.msg);
        expect_why(&cwhy, c->rule, 1, name);
        cr_assert_eq(vrc, WEFT_EINVAL, "%s: verify rc %d", name, vrc);
        expect_why(&vwhy, c->rule, 1, name);
    }
}

/* What the rules allow must pass too. */
Test(x509svid_defects, leaf_variants_the_rules_allow)
{
    struct testlib_cert_spec spec;
    struct spiffe_why cwhy, vwhy;
    int crc, vrc;

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID); /* B7: EKU is a SHOULD */
    spec.has_eku = false;
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "no EKU: %s", cwhy.msg);
    cr_assert_eq(vrc, WEFT_OK, "no EKU: %s", vwhy.msg);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID); /* B1: other SAN types */
    spec.dns = "workload.example.org";
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "URI + DNS SAN: %s", cwhy.msg);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID); /* B3: a subject, a non-critical SAN */
    spec.subject_cn = "workload";
    spec.san_critical = false;
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "subject + non-critical SAN: %s", cwhy.msg);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID); /* B4: absent basicConstraints means cA=false */
    spec.basic_constraints = TESTLIB_BC_ABSENT;
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "no basicConstraints: %s", cwhy.msg);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID); /* B6: keyEncipherment, keyAgreement MAY */
    spec.key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT;
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "KU digitalSignature+keyEncipherment+keyAgreement: %s", cwhy.msg);
    cr_assert_eq(vrc, WEFT_OK, "%s", vwhy.msg);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID); /* B7: more EKUs than the two are fine */
    spec.has_eku = true;
    check_leaf_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "%s", cwhy.msg);
}

Test(x509svid_defects, signer_variants_the_rules_allow)
{
    struct testlib_cert_spec spec;
    struct spiffe_why cwhy, vwhy;
    int crc, vrc;

    testlib_spec_signing_ca(&spec, TESTLIB_TD_ID); /* B5: a CA without any SAN */
    spec.uris[0] = NULL;
    check_signer_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "CA without SAN: %s", cwhy.msg);
    cr_assert_eq(vrc, WEFT_OK, "CA without SAN: %s", vwhy.msg);

    testlib_spec_signing_ca(&spec, TESTLIB_TD_ID); /* a non-SPIFFE URI is not an ID */
    spec.uris[0] = "https://ca.example.org/x";
    check_signer_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "CA with https URI: %s", cwhy.msg);

    testlib_spec_signing_ca(&spec, TESTLIB_TD_ID); /* B5: keyCertSign alone */
    spec.key_usage = KU_KEY_CERT_SIGN;
    check_signer_spec(&spec, &crc, &cwhy, &vrc, &vwhy);
    cr_assert_eq(crc, WEFT_OK, "%s", cwhy.msg);
    cr_assert_eq(vrc, WEFT_OK, "%s", vwhy.msg);
}

Test(x509svid_check, chain_of_eight_accepted_nine_rejected)
{
    struct testlib_pki pki;
    struct spiffe_id id;
    struct spiffe_why why;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    X509 *certs[SPIFFE_MAX_CHAIN + 1];
    certs[0] = pki.leaf.cert;
    for (size_t i = 1; i < nitems(certs); i++) {
        certs[i] = pki.inter.cert;
    }
    STACK_OF(X509) *ok = testlib_chain(certs, SPIFFE_MAX_CHAIN);
    STACK_OF(X509) *too_long = testlib_chain(certs, SPIFFE_MAX_CHAIN + 1);
    cr_assert_eq(spiffe_x509svid_check(&id, ok, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(spiffe_x509svid_check(&id, too_long, &why), WEFT_ELIMIT);
    expect_why(&why, SPIFFE_RULE_SVID_CHAIN_TOO_LONG, -1, "nine certificates");
    cr_assert_eq(id.len, 0);
    sk_X509_pop_free(ok, X509_free);
    sk_X509_pop_free(too_long, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_check, empty_chain)
{
    struct spiffe_id id;
    struct spiffe_why why;
    STACK_OF(X509) *empty = sk_X509_new_null();
    cr_assert_eq(spiffe_x509svid_check(&id, empty, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_CERT, -1, "empty chain");
    cr_assert_eq(spiffe_x509svid_check(&id, NULL, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_CERT, -1, "NULL chain");
    sk_X509_free(empty);
}

Test(x509svid_check, cert_uri_id_counts_uri_sans)
{
    struct testlib_pki pki;
    struct testlib_cred leaf;
    struct testlib_cert_spec spec;
    struct spiffe_id id;
    struct spiffe_why why;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);

    cr_assert_eq(spiffe_cert_uri_id(&id, pki.leaf.cert, &why), WEFT_OK);
    cr_assert_str_eq(id.str, TESTLIB_LEAF_ID);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID);
    testlib_spec_break(&spec, TESTLIB_DEFECT_NO_URI_SAN);
    build_leaf(&leaf, &spec, &pki.root);
    cr_assert_eq(spiffe_cert_uri_id(&id, leaf.cert, &why), WEFT_ENOTFOUND);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_URI_SAN_COUNT);
    testlib_cred_cleanup(&leaf);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID);
    testlib_spec_break(&spec, TESTLIB_DEFECT_TWO_URI_SANS);
    build_leaf(&leaf, &spec, &pki.root);
    cr_assert_eq(spiffe_cert_uri_id(&id, leaf.cert, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_URI_SAN_COUNT);
    cr_assert_eq(id.len, 0);
    testlib_cred_cleanup(&leaf);

    testlib_spec_leaf(&spec, TESTLIB_LEAF_ID);
    testlib_spec_break(&spec, TESTLIB_DEFECT_TWO_SAN_EXTENSIONS);
    build_leaf(&leaf, &spec, &pki.root);
    cr_assert_eq(spiffe_cert_uri_id(&id, leaf.cert, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_URI_SAN_COUNT, "%s", why.msg);
    testlib_cred_cleanup(&leaf);

    testlib_spec_leaf(&spec, "spiffe://Example.org/w");
    build_leaf(&leaf, &spec, &pki.root);
    cr_assert_eq(spiffe_cert_uri_id(&id, leaf.cert, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_URI_SAN_ID, "A4 applies to the URI SAN");
    testlib_cred_cleanup(&leaf);
    testlib_pki_cleanup(&pki);
}

/* --- keys ---------------------------------------------------------------------------------- */

Test(x509svid_check_key, match_and_mismatch)
{
    struct testlib_pki ec, ed;
    struct spiffe_why why;
    mint_pki(&ec, SPIFFE_KEY_EC_P256, true);
    mint_pki(&ed, SPIFFE_KEY_ED25519, false);
    cr_assert_eq(spiffe_x509svid_check_key(ec.leaf.cert, ec.leaf.key, &why), WEFT_OK);
    cr_assert_eq(spiffe_x509svid_check_key(ed.leaf.cert, ed.leaf.key, &why), WEFT_OK);

    cr_assert_eq(spiffe_x509svid_check_key(ec.leaf.cert, ec.inter.key, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_KEY_MISMATCH, 0, "EC leaf, another EC key");
    cr_assert_eq(spiffe_x509svid_check_key(ec.leaf.cert, ed.leaf.key, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_KEY_MISMATCH, 0, "EC leaf, Ed25519 key");
    cr_assert_eq(spiffe_x509svid_check_key(ed.leaf.cert, ed.root.key, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_KEY_MISMATCH, 0, "Ed25519 leaf, another Ed25519 key");
    testlib_pki_cleanup(&ed);
    testlib_pki_cleanup(&ec);
}

static uint8_t *der_of_key(EVP_PKEY *key, size_t *out_len)
{
    CBB cbb;
    uint8_t *der = NULL;
    cr_assert(CBB_init(&cbb, 256));
    cr_assert(EVP_marshal_private_key(&cbb, key));
    cr_assert(CBB_finish(&cbb, &der, out_len));
    return der;
}

Test(x509svid_key_decode, pem_and_der_pkcs8)
{
    enum spiffe_key_type types[] = {SPIFFE_KEY_EC_P256, SPIFFE_KEY_ED25519};
    for (size_t i = 0; i < nitems(types); i++) {
        EVP_PKEY *key = spiffe_key_generate(types[i]), *got = NULL;
        struct spiffe_why why;
        size_t len;
        cr_assert_not_null(key);
        char *pem = pem_of_key(key, &len);
        cr_assert_not_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
        cr_assert_eq(spiffe_key_decode(&got, (const uint8_t *)pem, len, &why), WEFT_OK, "%s",
                     why.msg);
        cr_assert_eq(EVP_PKEY_cmp(got, key), 1);
        EVP_PKEY_free(got);
        free(pem);

        uint8_t *der = der_of_key(key, &len);
        cr_assert_eq(spiffe_key_decode(&got, der, len, &why), WEFT_OK, "%s", why.msg);
        cr_assert_eq(EVP_PKEY_cmp(got, key), 1);
        EVP_PKEY_free(got);
        /* DER with a byte too many is not one key. */
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, der, len);
        longer[len] = 0;
        cr_assert_eq(spiffe_key_decode(&got, longer, len + 1, &why), WEFT_EINVAL);
        cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
        cr_assert_null(got);
        /* Nor is a truncated one. */
        cr_assert_eq(spiffe_key_decode(&got, der, len - 1, &why), WEFT_EINVAL);
        cr_assert_null(got);
        free(longer);
        OPENSSL_free(der);
        EVP_PKEY_free(key);
    }
}

Test(x509svid_key_decode, finds_the_key_among_other_blocks)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    EVP_PKEY *got = NULL;
    size_t cert_len, key_len;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    STACK_OF(X509) *chain = testlib_pki_chain(&pki);
    char *cert_pem = pem_of_stack(chain, &cert_len);
    char *key_pem = pem_of_key(pki.leaf.key, &key_len);
    char *both = malloc(cert_len + key_len + 1);
    memcpy(both, cert_pem, cert_len);
    memcpy(both + cert_len, key_pem, key_len + 1);
    cr_assert_eq(spiffe_key_decode(&got, (const uint8_t *)both, cert_len + key_len, &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_eq(EVP_PKEY_cmp(got, pki.leaf.key), 1);
    EVP_PKEY_free(got);
    /* A certificate alone holds no key. */
    cr_assert_eq(spiffe_key_decode(&got, (const uint8_t *)cert_pem, cert_len, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
    cr_assert_not_null(strstr(why.msg, "no private key found"), "%s", why.msg);
    cr_assert_null(got);
    free(both);
    free(key_pem);
    free(cert_pem);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_key_decode, rejects_what_is_not_unencrypted_pkcs8)
{
    struct spiffe_why why;
    EVP_PKEY *got = NULL;
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    BIO *bio = BIO_new(BIO_s_mem());
    const uint8_t *data;
    size_t len;
    /* SEC 1 "EC PRIVATE KEY": readable, but not the format the Workload API uses (D4). */
    cr_assert(
        PEM_write_bio_ECPrivateKey(bio, EVP_PKEY_get0_EC_KEY(key), NULL, NULL, 0, NULL, NULL));
    cr_assert(BIO_mem_contents(bio, &data, &len));
    cr_assert_eq(spiffe_key_decode(&got, data, len, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
    cr_assert_not_null(strstr(why.msg, "EC PRIVATE KEY"), "%s", why.msg);
    cr_assert_null(got);
    /* The same file with a PKCS#8 block after the SEC 1 one: the PKCS#8 key is found. */
    cr_assert(PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL));
    cr_assert(BIO_mem_contents(bio, &data, &len));
    cr_assert_eq(spiffe_key_decode(&got, data, len, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(EVP_PKEY_cmp(got, key), 1);
    EVP_PKEY_free(got);
    got = NULL;
    BIO_free(bio);

    static const char not_key[] = "not a key at all";
    cr_assert_eq(spiffe_key_decode(&got, (const uint8_t *)not_key, sizeof(not_key) - 1, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
    cr_assert_eq(spiffe_key_decode(&got, (const uint8_t *)"", 0, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
    static const char damaged[] = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
    cr_assert_eq(spiffe_key_decode(&got, (const uint8_t *)damaged, sizeof(damaged) - 1, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
    cr_assert_null(got);
    EVP_PKEY_free(key);
}

Test(x509svid_key_decode, go_spiffe_files)
{
    static const char *const good[] = {
        GO_SPIFFE "x509svid/key-pkcs8-rsa.pem", GO_SPIFFE "x509svid/key-pkcs8-ecdsa.pem",
        GO_SPIFFE "x509svid/good-cert-and-key.pem", GO_SPIFFE "x509svid/good-key-and-cert.pem"};
    static const int good_types[] = {EVP_PKEY_RSA, EVP_PKEY_EC, EVP_PKEY_EC, EVP_PKEY_EC};
    for (size_t i = 0; i < nitems(good); i++) {
        uint8_t *data;
        size_t len;
        EVP_PKEY *got = NULL;
        struct spiffe_why why;
        cr_assert_eq(weft_file_read(&data, &len, good[i], 1 << 20), WEFT_OK, "%s", good[i]);
        cr_assert_eq(spiffe_key_decode(&got, data, len, &why), WEFT_OK, "%s: %s", good[i], why.msg);
        cr_assert_eq(EVP_PKEY_id(got), good_types[i], "%s", good[i]);
        EVP_PKEY_free(got);
        free(data);
    }
    uint8_t *data;
    size_t len;
    EVP_PKEY *got = NULL;
    struct spiffe_why why;
    cr_assert_eq(weft_file_read(&data, &len, GO_SPIFFE "x509svid/corrupt-key.pem", 1 << 20),
                 WEFT_OK);
    cr_assert_eq(spiffe_key_decode(&got, data, len, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_KEY);
    cr_assert_null(got);
    free(data);
}

Test(x509svid_key_decode, input_past_the_limit)
{
    size_t len = SPIFFE_MAX_PEM_INPUT + 1;
    uint8_t *big = calloc(1, len);
    EVP_PKEY *got = NULL;
    struct spiffe_why why;
    big[0] = 0x30;
    cr_assert_eq(spiffe_key_decode(&got, big, len, &why), WEFT_ELIMIT);
    cr_assert_null(got);
    free(big);
}

/* --- certificate decoding ------------------------------------------------------------------ */

static void expect_same_certs(STACK_OF(X509) * got, STACK_OF(X509) * want)
{
    cr_assert_eq(sk_X509_num(got), sk_X509_num(want));
    for (size_t i = 0; i < sk_X509_num(want); i++) {
        cr_assert_eq(X509_cmp(sk_X509_value(got, i), sk_X509_value(want, i)), 0,
                     "certificate %zu differs", i);
    }
}

Test(x509svid_certs_decode, pem_round_trip_keeps_order)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    STACK_OF(X509) *got = NULL;
    size_t len;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    STACK_OF(X509) *chain = testlib_pki_chain(&pki);
    char *pem = pem_of_stack(chain, &len);
    cr_assert_eq(spiffe_certs_decode(&got, (const uint8_t *)pem, len, SPIFFE_MAX_CHAIN, 0, &why),
                 WEFT_OK, "%s", why.msg);
    expect_same_certs(got, chain);
    sk_X509_pop_free(got, X509_free);
    free(pem);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_certs_decode, der_concatenation)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    STACK_OF(X509) *got = NULL;
    uint8_t *der = NULL;
    size_t len;
    mint_pki(&pki, SPIFFE_KEY_ED25519, true);
    X509 *certs[3] = {pki.leaf.cert, pki.inter.cert, pki.root.cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 3);
    cr_assert_eq(spiffe_certs_to_der(&der, &len, chain), WEFT_OK);
    cr_assert_eq(spiffe_certs_decode(&got, der, len, SPIFFE_MAX_CHAIN, 0, &why), WEFT_OK, "%s",
                 why.msg);
    expect_same_certs(got, chain);
    sk_X509_pop_free(got, X509_free);

    /* A truncated concatenation names the certificate that broke. */
    cr_assert_eq(spiffe_certs_decode(&got, der, len - 1, SPIFFE_MAX_CHAIN, 0, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 2, "truncated third certificate");
    cr_assert_null(got);
    /* Trailing garbage after the last certificate. */
    uint8_t *longer = malloc(len + 2);
    memcpy(longer, der, len);
    longer[len] = 0x30;
    longer[len + 1] = 0x05;
    cr_assert_eq(spiffe_certs_decode(&got, longer, len + 2, SPIFFE_MAX_CHAIN, 0, &why),
                 WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 3, "trailing bytes");
    free(longer);
    free(der);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_certs_decode, mixed_pem_blocks_in_either_order)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    size_t cert_len, key_len;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    STACK_OF(X509) *chain = testlib_pki_chain(&pki);
    char *cert_pem = pem_of_stack(chain, &cert_len);
    char *key_pem = pem_of_key(pki.leaf.key, &key_len);
    char *orders[2];
    orders[0] = malloc(cert_len + key_len + 1);
    orders[1] = malloc(cert_len + key_len + 1);
    memcpy(orders[0], cert_pem, cert_len);
    memcpy(orders[0] + cert_len, key_pem, key_len + 1);
    memcpy(orders[1], key_pem, key_len);
    memcpy(orders[1] + key_len, cert_pem, cert_len + 1);
    for (size_t i = 0; i < 2; i++) {
        STACK_OF(X509) *got = NULL;
        EVP_PKEY *key = NULL;
        const uint8_t *in = (const uint8_t *)orders[i];
        cr_assert_eq(spiffe_certs_decode(&got, in, cert_len + key_len, SPIFFE_MAX_CHAIN, 0, &why),
                     WEFT_OK, "order %zu: %s", i, why.msg);
        expect_same_certs(got, chain);
        cr_assert_eq(spiffe_key_decode(&key, in, cert_len + key_len, &why), WEFT_OK, "%s", why.msg);
        cr_assert_eq(spiffe_x509svid_check_key(sk_X509_value(got, 0), key, &why), WEFT_OK);
        EVP_PKEY_free(key);
        sk_X509_pop_free(got, X509_free);
        free(orders[i]);
    }
    /* A key alone holds no certificate. */
    STACK_OF(X509) *got = NULL;
    cr_assert_eq(
        spiffe_certs_decode(&got, (const uint8_t *)key_pem, key_len, SPIFFE_MAX_CHAIN, 0, &why),
        WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_NO_CERT, -1, "key alone");
    cr_assert_eq(
        spiffe_certs_decode(&got, (const uint8_t *)key_pem, key_len, SPIFFE_MAX_CHAIN, 1, &why),
        WEFT_OK, "allow_empty");
    cr_assert_eq(sk_X509_num(got), 0);
    sk_X509_pop_free(got, X509_free);
    free(key_pem);
    free(cert_pem);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_certs_decode, rejects_not_pem_corrupt_and_empty)
{
    struct spiffe_why why;
    STACK_OF(X509) *got = (STACK_OF(X509) *)1;
    static const char text[] = "Not PEM encoded file";
    cr_assert_eq(spiffe_certs_decode(&got, (const uint8_t *)text, sizeof(text) - 1, 8, 0, &why),
                 WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, -1, "text");
    cr_assert_null(got);
    /* A DER SEQUENCE tag followed by nonsense. */
    static const uint8_t seq[] = {0x30, 0x03, 0x02, 0x01};
    cr_assert_eq(spiffe_certs_decode(&got, seq, sizeof(seq), 8, 0, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 0, "bad DER");
    /* A well-formed SEQUENCE that is not a certificate. */
    static const uint8_t not_cert[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    cr_assert_eq(spiffe_certs_decode(&got, not_cert, sizeof(not_cert), 8, 0, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 0, "SEQUENCE, not a certificate");
    /* A PEM block whose base64 is damaged. */
    static const char damaged[] = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    cr_assert_eq(
        spiffe_certs_decode(&got, (const uint8_t *)damaged, sizeof(damaged) - 1, 8, 0, &why),
        WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_DECODE);
    /* Empty input: a failure unless allowed. */
    cr_assert_eq(spiffe_certs_decode(&got, (const uint8_t *)"", 0, 8, 0, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_NO_CERT, "%s", why.msg);
    cr_assert_null(got);
    cr_assert_eq(spiffe_certs_decode(&got, (const uint8_t *)"", 0, 8, 1, &why), WEFT_OK);
    cr_assert_eq(sk_X509_num(got), 0);
    sk_X509_pop_free(got, X509_free);
}

Test(x509svid_certs_decode, pem_certificate_with_trailing_bytes)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    STACK_OF(X509) *got = NULL;
    size_t der_len;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    uint8_t *der = testlib_der(pki.leaf.cert, &der_len);
    uint8_t *padded = malloc(der_len + 2);
    memcpy(padded, der, der_len);
    padded[der_len] = padded[der_len + 1] = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    cr_assert(PEM_write_bio(bio, "CERTIFICATE", "", padded, (long)der_len + 2));
    const uint8_t *pem;
    size_t pem_len;
    cr_assert(BIO_mem_contents(bio, &pem, &pem_len));
    cr_assert_eq(spiffe_certs_decode(&got, pem, pem_len, 8, 0, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 0, "trailing bytes in a PEM block");
    cr_assert_null(got);
    BIO_free(bio);
    free(padded);
    OPENSSL_free(der);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_certs_decode, one_certificate_past_the_limit)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    STACK_OF(X509) *got = NULL;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    X509 *certs[SPIFFE_MAX_CHAIN + 1];
    for (size_t i = 0; i < nitems(certs); i++) {
        certs[i] = pki.leaf.cert;
    }
    STACK_OF(X509) *at_limit = testlib_chain(certs, SPIFFE_MAX_CHAIN);
    STACK_OF(X509) *past = testlib_chain(certs, SPIFFE_MAX_CHAIN + 1);

    size_t len;
    char *pem = pem_of_stack(at_limit, &len);
    cr_assert_eq(spiffe_certs_decode(&got, (const uint8_t *)pem, len, SPIFFE_MAX_CHAIN, 0, &why),
                 WEFT_OK, "PEM, 8: %s", why.msg);
    cr_assert_eq(sk_X509_num(got), SPIFFE_MAX_CHAIN);
    sk_X509_pop_free(got, X509_free);
    free(pem);
    pem = pem_of_stack(past, &len);
    cr_assert_eq(spiffe_certs_decode(&got, (const uint8_t *)pem, len, SPIFFE_MAX_CHAIN, 0, &why),
                 WEFT_ELIMIT);
    expect_why(&why, SPIFFE_RULE_SVID_CHAIN_TOO_LONG, -1, "PEM, 9");
    cr_assert_null(got);
    free(pem);

    uint8_t *der;
    cr_assert_eq(spiffe_certs_to_der(&der, &len, at_limit), WEFT_OK);
    cr_assert_eq(spiffe_certs_decode(&got, der, len, SPIFFE_MAX_CHAIN, 0, &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_eq(sk_X509_num(got), SPIFFE_MAX_CHAIN);
    sk_X509_pop_free(got, X509_free);
    free(der);
    cr_assert_eq(spiffe_certs_to_der(&der, &len, past), WEFT_OK);
    cr_assert_eq(spiffe_certs_decode(&got, der, len, SPIFFE_MAX_CHAIN, 0, &why), WEFT_ELIMIT);
    expect_why(&why, SPIFFE_RULE_SVID_CHAIN_TOO_LONG, -1, "DER, 9");
    cr_assert_null(got);
    free(der);

    sk_X509_pop_free(at_limit, X509_free);
    sk_X509_pop_free(past, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_certs_decode, one_byte_past_the_input_limit)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    STACK_OF(X509) *got = NULL;
    size_t pem_len;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    STACK_OF(X509) *chain = testlib_pki_chain(&pki);
    char *pem = pem_of_stack(chain, &pem_len);
    /* The certificate, then newlines up to exactly the limit. */
    uint8_t *buf = malloc(SPIFFE_MAX_PEM_INPUT + 1);
    memcpy(buf, pem, pem_len);
    memset(buf + pem_len, '\n', SPIFFE_MAX_PEM_INPUT + 1 - pem_len);
    cr_assert_eq(spiffe_certs_decode(&got, buf, SPIFFE_MAX_PEM_INPUT, 8, 0, &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_eq(sk_X509_num(got), 1);
    sk_X509_pop_free(got, X509_free);
    cr_assert_eq(spiffe_certs_decode(&got, buf, SPIFFE_MAX_PEM_INPUT + 1, 8, 0, &why), WEFT_ELIMIT);
    cr_assert_null(got);
    free(buf);
    free(pem);
    sk_X509_pop_free(chain, X509_free);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_certs_decode, go_spiffe_files)
{
    static const struct {
        const char *path;
        int rc;
        size_t num_certs;
    } cases[] = {
        {GO_SPIFFE "x509svid/good-leaf-only.pem", WEFT_OK, 1},
        {GO_SPIFFE "x509svid/good-leaf-and-intermediate.pem", WEFT_OK, 2},
        {GO_SPIFFE "x509svid/good-cert-and-key.pem", WEFT_OK, 1},
        {GO_SPIFFE "x509svid/good-key-and-cert.pem", WEFT_OK, 1},
        {GO_SPIFFE "x509svid/corrupt-cert.pem", WEFT_EINVAL, 0},
        {GO_SPIFFE "x509svid/not-pem", WEFT_EINVAL, 0},
        {GO_SPIFFE "x509svid/key-pkcs8-rsa.pem", WEFT_EINVAL, 0},
    };
    for (size_t i = 0; i < nitems(cases); i++) {
        uint8_t *data;
        size_t len;
        STACK_OF(X509) *got = NULL;
        struct spiffe_why why;
        cr_assert_eq(weft_file_read(&data, &len, cases[i].path, 1 << 20), WEFT_OK, "%s",
                     cases[i].path);
        int rc = spiffe_certs_decode(&got, data, len, SPIFFE_MAX_CHAIN, 0, &why);
        cr_assert_eq(rc, cases[i].rc, "%s: rc %d (%s)", cases[i].path, rc, why.msg);
        cr_assert_eq(got == NULL ? 0 : sk_X509_num(got), cases[i].num_certs, "%s", cases[i].path);
        sk_X509_pop_free(got, X509_free);
        free(data);
    }
}

/* --- CSRs ---------------------------------------------------------------------------------- */

static X509_REQ *make_csr(EVP_PKEY *key)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    cr_assert(req != NULL && name != NULL);
    cr_assert(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)"workload", -1,
                                         -1, 0));
    cr_assert(X509_REQ_set_version(req, 0));
    cr_assert(X509_REQ_set_subject_name(req, name));
    cr_assert(X509_REQ_set_pubkey(req, key));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
    cr_assert(EVP_DigestSignInit(ctx, NULL, md, NULL, key));
    cr_assert(X509_REQ_sign_ctx(req, ctx));
    EVP_MD_CTX_free(ctx);
    X509_NAME_free(name);
    return req;
}

Test(x509svid_csr_decode, pem_and_der)
{
    enum spiffe_key_type types[] = {SPIFFE_KEY_EC_P256, SPIFFE_KEY_ED25519};
    for (size_t t = 0; t < nitems(types); t++) {
        EVP_PKEY *key = spiffe_key_generate(types[t]), *pub = NULL;
        struct spiffe_why why;
        X509_REQ *req = make_csr(key);

        BIO *bio = BIO_new(BIO_s_mem());
        const uint8_t *pem;
        size_t pem_len;
        cr_assert(PEM_write_bio_X509_REQ(bio, req));
        cr_assert(BIO_mem_contents(bio, &pem, &pem_len));
        cr_assert_eq(spiffe_csr_decode(&pub, pem, pem_len, &why), WEFT_OK, "PEM: %s", why.msg);
        cr_assert_eq(EVP_PKEY_cmp(pub, key), 1);
        EVP_PKEY_free(pub);
        BIO_free(bio);

        uint8_t *der = NULL;
        int der_len = i2d_X509_REQ(req, &der);
        cr_assert_gt(der_len, 0);
        cr_assert_eq(spiffe_csr_decode(&pub, der, (size_t)der_len, &why), WEFT_OK, "DER: %s",
                     why.msg);
        cr_assert_eq(EVP_PKEY_cmp(pub, key), 1);
        EVP_PKEY_free(pub);

        /* The last byte is inside the signature: the self-signature no longer verifies. */
        der[der_len - 1] ^= 0x01;
        cr_assert_eq(spiffe_csr_decode(&pub, der, (size_t)der_len, &why), WEFT_EINVAL);
        cr_assert_eq(why.rule, SPIFFE_RULE_SVID_DECODE);
        cr_assert_not_null(strstr(why.msg, "does not verify"), "%s", why.msg);
        cr_assert_null(pub);

        OPENSSL_free(der);
        X509_REQ_free(req);
        EVP_PKEY_free(key);
    }
}

Test(x509svid_csr_decode, rejects_what_is_not_a_csr)
{
    struct testlib_pki pki;
    struct spiffe_why why;
    EVP_PKEY *pub = NULL;
    static const char text[] = "not a certificate request";
    cr_assert_eq(spiffe_csr_decode(&pub, (const uint8_t *)text, sizeof(text) - 1, &why),
                 WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_DECODE);
    cr_assert_not_null(strstr(why.msg, "not a PKCS#10"), "%s", why.msg);
    cr_assert_eq(spiffe_csr_decode(&pub, (const uint8_t *)"", 0, &why), WEFT_EINVAL);
    cr_assert_null(pub);
    /* A certificate is not a request. */
    mint_pki(&pki, SPIFFE_KEY_EC_P256, false);
    size_t der_len;
    uint8_t *der = testlib_der(pki.leaf.cert, &der_len);
    cr_assert_eq(spiffe_csr_decode(&pub, der, der_len, &why), WEFT_EINVAL);
    cr_assert_null(pub);
    OPENSSL_free(der);
    testlib_pki_cleanup(&pki);

    size_t len = SPIFFE_MAX_PEM_INPUT + 1;
    uint8_t *big = calloc(1, len);
    cr_assert_eq(spiffe_csr_decode(&pub, big, len, &why), WEFT_ELIMIT);
    cr_assert_null(pub);
    free(big);
}

/* --- go-spiffe's verdicts ------------------------------------------------------------------ */

/* resolve turns a vectors.tsv path into a workspace path: with a '/', relative to go-spiffe/;
 * a bare name is in the directory of |file|. */
static void resolve(char *out, size_t cap, const char *file, const char *rel, size_t rel_len)
{
    if (memchr(rel, '/', rel_len) != NULL) {
        snprintf(out, cap, GO_SPIFFE "%.*s", (int)rel_len, rel);
        return;
    }
    const char *slash = strrchr(file, '/');
    int dir_len = slash != NULL ? (int)(slash - file + 1) : 0;
    snprintf(out, cap, GO_SPIFFE "%.*s%.*s", dir_len, file, (int)rel_len, rel);
}

/* value_after finds "|key|=" in |s| and returns the value, up to ')' or the end. */
static const char *value_after(const char *s, const char *key, size_t *out_len)
{
    const char *p = strstr(s, key);
    if (p == NULL) {
        return NULL;
    }
    p += strlen(key);
    *out_len = strcspn(p, ")");
    return p;
}

struct vector {
    char certs[512]; /* "" when the row tests a key alone */
    char key[512];
    const char *expect;
    const char *stage;
    const char *reason;
};

/* parse_vector reads the roles of the files of one row. */
static void parse_vector(struct vector *v, char *fields[5])
{
    const char *file = fields[0], *with = fields[1];
    char self[512];
    size_t len;
    const char *val;
    snprintf(self, sizeof(self), GO_SPIFFE "%s", file);
    v->certs[0] = v->key[0] = '\0';
    v->expect = fields[2];
    v->stage = fields[3];
    v->reason = fields[4];
    if (strcmp(with, "-") == 0) {
        snprintf(v->key, sizeof(v->key), "%s", self);
    } else if (strncmp(with, "role=key", 8) == 0 &&
               (val = value_after(with, "certs=", &len)) != NULL) {
        snprintf(v->key, sizeof(v->key), "%s", self);
        resolve(v->certs, sizeof(v->certs), file, val, len);
    } else if (strncmp(with, "role=certs", 10) == 0 &&
               (val = value_after(with, "key=", &len)) != NULL) {
        snprintf(v->certs, sizeof(v->certs), "%s", self);
        resolve(v->key, sizeof(v->key), file, val, len);
    } else if (strcmp(with, "key=(same file)") == 0) {
        snprintf(v->certs, sizeof(v->certs), "%s", self);
        snprintf(v->key, sizeof(v->key), "%s", self);
    } else if (strncmp(with, "key=", 4) == 0) {
        snprintf(v->certs, sizeof(v->certs), "%s", self);
        resolve(v->key, sizeof(v->key), file, with + 4, strlen(with + 4));
    } else if (strncmp(with, "certs=", 6) == 0) {
        snprintf(v->key, sizeof(v->key), "%s", self);
        resolve(v->certs, sizeof(v->certs), file, with + 6, strlen(with + 6));
    } else {
        cr_assert_fail("%s: cannot read used_with \"%s\"", file, with);
    }
}

/* run_vector returns the stage at which weft rejects the row, or NULL if it accepts, and the
 * ID it found in |out_id|. */
static const char *run_vector(const struct vector *v, struct spiffe_id *out_id,
                              struct spiffe_why *why)
{
    uint8_t *data;
    size_t len;
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    const char *failed = NULL;
    out_id->len = 0;
    out_id->str[0] = '\0';
    if (v->certs[0] != '\0') {
        cr_assert_eq(weft_file_read(&data, &len, v->certs, 1 << 20), WEFT_OK, "%s", v->certs);
        int rc = spiffe_certs_decode(&certs, data, len, SPIFFE_MAX_CHAIN, 0, why);
        free(data);
        if (rc != WEFT_OK) {
            return "parse";
        }
        rc = spiffe_x509svid_check(out_id, certs, why);
        if (rc != WEFT_OK) {
            sk_X509_pop_free(certs, X509_free);
            return why->cert_index == 0 ? "leaf-rules" : "signing-rules";
        }
    }
    cr_assert_eq(weft_file_read(&data, &len, v->key, 1 << 20), WEFT_OK, "%s", v->key);
    int rc = spiffe_key_decode(&key, data, len, why);
    free(data);
    if (rc != WEFT_OK) {
        failed = v->certs[0] != '\0' ? "parse" : "key-parse";
    } else if (certs != NULL &&
               spiffe_x509svid_check_key(sk_X509_value(certs, 0), key, why) != WEFT_OK) {
        failed = "key-match";
    }
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return failed;
}

/* quoted returns the go-spiffe message after "-> \"" in |reason|, or NULL. */
static const char *quoted(const char *reason, char *buf, size_t cap)
{
    const char *p = strstr(reason, "-> \"");
    if (p == NULL) {
        return NULL;
    }
    p += 4;
    size_t n = strcspn(p, "\"");
    snprintf(buf, cap, "%.*s", (int)n, p);
    return buf;
}

Test(x509svid_vectors, agrees_with_go_spiffe)
{
    uint8_t *tsv;
    size_t tsv_len;
    size_t num_rows = 0, num_accept = 0, num_reject = 0;
    cr_assert_eq(weft_file_read(&tsv, &tsv_len, GO_SPIFFE "vectors.tsv", 1 << 20), WEFT_OK);
    char *save = NULL;
    for (char *line = strtok_r((char *)tsv, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            continue;
        }
        char *fields[5] = {0};
        char *fsave = NULL, *f = strtok_r(line, "\t", &fsave);
        for (size_t i = 0; i < 5 && f != NULL; i++, f = strtok_r(NULL, "\t", &fsave)) {
            fields[i] = f;
        }
        cr_assert_not_null(fields[4], "a row with fewer than 5 fields");
        const char *stage = fields[3];
        if (strcmp(stage, "parse") != 0 && strcmp(stage, "key-match") != 0 &&
            strcmp(stage, "leaf-rules") != 0 && strcmp(stage, "signing-rules") != 0 &&
            strcmp(stage, "key-parse") != 0) {
            continue;
        }
        struct vector v;
        struct spiffe_id id;
        struct spiffe_why why;
        parse_vector(&v, fields);
        const char *failed = run_vector(&v, &id, &why);
        num_rows++;
        if (strcmp(v.expect, "accept") == 0) {
            num_accept++;
            cr_assert_null(failed, "%s (%s): go-spiffe accepts, weft rejects at %s: %s", fields[0],
                           fields[1], failed, why.msg);
            /* The ID go-spiffe finds is the first spiffe:// in the reason. */
            const char *want = strstr(v.reason, "spiffe://");
            if (want != NULL && v.certs[0] != '\0') {
                size_t want_len = strcspn(want, " ,;)");
                cr_assert_eq(id.len, want_len, "%s: ID %s", fields[0], id.str);
                cr_assert_eq(memcmp(id.str, want, want_len), 0, "%s: ID %s", fields[0], id.str);
            }
        } else {
            cr_assert_str_eq(v.expect, "reject", "%s: expect \"%s\"", fields[0], v.expect);
            num_reject++;
            cr_assert_not_null(failed, "%s (%s): go-spiffe rejects at %s, weft accepts", fields[0],
                               fields[1], stage);
            cr_assert_str_eq(failed, stage, "%s (%s): go-spiffe rejects at %s, weft at %s: %s",
                             fields[0], fields[1], stage, failed, why.msg);
            /* B11: for the SPIFFE rules our first complaint is go-spiffe's. */
            char msg[256];
            if (strcmp(stage, "parse") != 0 && quoted(v.reason, msg, sizeof(msg)) != NULL) {
                cr_assert_not_null(strstr(why.msg, msg), "%s: weft says \"%s\", go-spiffe \"%s\"",
                                   fields[0], why.msg, msg);
            }
        }
    }
    free(tsv);
    /* vectors.tsv has 20 such rows; fewer means this test stopped reading it. */
    cr_assert_eq(num_rows, 20, "read %zu rows", num_rows);
    cr_assert_eq(num_accept, 6);
    cr_assert_eq(num_reject, 14);
}

/* --- the path as built: what BoringSSL leaves to us ------------------------------------- */

/* root_spec describes a self-signed CA named CN=|cn| for TESTLIB_TD. */
static void root_spec(struct testlib_cert_spec *spec, const char *cn)
{
    testlib_spec_signing_ca(spec, TESTLIB_TD_ID);
    spec->subject_cn = cn;
}

static void build_root(struct testlib_cred *out, const struct testlib_cert_spec *spec)
{
    memset(out, 0, sizeof(*out));
    out->key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_not_null(out->key);
    cr_assert_eq(testlib_cert_build(&out->cert, spec, out->key, NULL, NULL), WEFT_OK);
}

static int verify_leaf(X509 *leaf, X509 *const *anchors, size_t num_anchors, struct spiffe_why *why)
{
    struct spiffe_bundle_set set;
    struct spiffe_id id;
    spiffe_bundle_set_init(&set);
    cr_assert_eq(testlib_bundle_set_add(&set, TESTLIB_TD, anchors[0]), WEFT_OK);
    struct spiffe_bundle *b = set.bundles[0];
    for (size_t i = 1; i < num_anchors; i++) {
        cr_assert_eq(spiffe_bundle_add_x509(b, anchors[i]), WEFT_OK);
    }
    cr_assert_eq(sk_X509_num(b->x509), num_anchors);
    STACK_OF(X509) *chain = testlib_chain(&leaf, 1);
    int rc = spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, why);
    sk_X509_pop_free(chain, X509_free);
    spiffe_bundle_set_cleanup(&set);
    return rc;
}

Test(x509svid_path, unused_expired_certificate_in_the_chain_is_not_judged)
{
    /* Like Go's x509.Verify: a certificate the SVID carries but the path does not use is only
     * a candidate intermediate. It still has to be a well-formed signing certificate. */
    struct testlib_pki pki;
    struct testlib_cert_spec spec;
    struct testlib_cred stale;
    struct spiffe_bundle_set set;
    struct spiffe_why why;
    struct spiffe_id id;
    mint_pki(&pki, SPIFFE_KEY_EC_P256, true);
    root_spec(&spec, "stale");
    spec.not_before = TESTLIB_NOW - 10 * TESTLIB_DAY;
    spec.not_after = TESTLIB_NOW - 9 * TESTLIB_DAY;
    build_root(&stale, &spec);
    X509 *certs[] = {pki.leaf.cert, pki.inter.cert, stale.cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 3);
    set_with_root(&set, TESTLIB_TD, pki.root.cert);
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW, &why), WEFT_OK, "%s",
                 why.msg);
    /* The intermediate the path does use is judged. */
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, &set, TESTLIB_NOW + 2 * TESTLIB_DAY, &why),
                 WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_EXPIRED, 0, "two days later the leaf has expired");
    sk_X509_pop_free(chain, X509_free);
    spiffe_bundle_set_cleanup(&set);
    testlib_cred_cleanup(&stale);
    testlib_pki_cleanup(&pki);
}

Test(x509svid_path, v3_anchor_without_basic_constraints_may_not_sign)
{
    /* RFC 5280 §4.2.1.9; Go's CheckSignatureFrom refuses it, BoringSSL alone would not. */
    struct testlib_cert_spec spec, leaf_spec;
    struct testlib_cred root, leaf;
    struct spiffe_why why;
    root_spec(&spec, "no-bc");
    spec.basic_constraints = TESTLIB_BC_ABSENT;
    spec.has_key_usage = false;
    build_root(&root, &spec);
    testlib_spec_leaf(&leaf_spec, TESTLIB_LEAF_ID);
    build_leaf(&leaf, &leaf_spec, &root);
    cr_assert_eq(verify_leaf(leaf.cert, &root.cert, 1, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_CHAIN, 1, "anchor without basicConstraints");
    cr_assert(strstr(why.msg, "not allowed to sign") != NULL, "%s", why.msg);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&root);
}

Test(x509svid_path, any_of_two_roots_with_one_name_may_vouch)
{
    /* Root rotation: two roots, one subject name, and a leaf with no authority key identifier
     * signed by the second. Bundle order must not matter. */
    struct testlib_cert_spec spec, leaf_spec;
    struct testlib_cred old_root, new_root, leaf;
    struct spiffe_why why;
    root_spec(&spec, "root");
    build_root(&old_root, &spec);
    build_root(&new_root, &spec);
    testlib_spec_leaf(&leaf_spec, TESTLIB_LEAF_ID);
    build_leaf(&leaf, &leaf_spec, &new_root);
    X509 *old_first[] = {old_root.cert, new_root.cert},
         *new_first[] = {new_root.cert, old_root.cert};
    cr_assert_eq(verify_leaf(leaf.cert, old_first, 2, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(verify_leaf(leaf.cert, new_first, 2, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(verify_leaf(leaf.cert, &old_root.cert, 1, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_SVID_CHAIN, "%s", why.msg);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&new_root);
    testlib_cred_cleanup(&old_root);
}

Test(x509svid_path, sha1_signature_is_refused_when_the_chain_is_verified)
{
    struct testlib_cert_spec spec, leaf_spec;
    struct testlib_cred root, leaf;
    struct spiffe_why why;
    struct spiffe_id id;
    root_spec(&spec, "root");
    build_root(&root, &spec);
    testlib_spec_leaf(&leaf_spec, TESTLIB_LEAF_ID);
    leaf_spec.sha1_signature = true;
    build_leaf(&leaf, &leaf_spec, &root);
    cr_assert_eq(X509_get_signature_nid(leaf.cert), NID_ecdsa_with_SHA1);
    /* The SVID rules say nothing about the signature; go-spiffe's Parse accepts it too. */
    STACK_OF(X509) *chain = testlib_chain(&leaf.cert, 1);
    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_OK, "%s", why.msg);
    sk_X509_pop_free(chain, X509_free);
    cr_assert_eq(verify_leaf(leaf.cert, &root.cert, 1, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_WEAK_SIGNATURE, 0, "SHA-1 signed leaf");
    testlib_cred_cleanup(&leaf);
    /* The same leaf signed with SHA-256 verifies. */
    leaf_spec.sha1_signature = false;
    build_leaf(&leaf, &leaf_spec, &root);
    cr_assert_eq(verify_leaf(leaf.cert, &root.cert, 1, &why), WEFT_OK, "%s", why.msg);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&root);
}

Test(x509svid_path, negative_serial_is_refused)
{
    struct testlib_cert_spec spec, leaf_spec, inter_spec;
    struct testlib_cred root, leaf, inter;
    struct spiffe_why why;
    struct spiffe_id id;
    root_spec(&spec, "root");
    build_root(&root, &spec);
    testlib_spec_leaf(&leaf_spec, TESTLIB_LEAF_ID);
    leaf_spec.negative_serial = true;
    build_leaf(&leaf, &leaf_spec, &root);
    STACK_OF(X509) *chain = testlib_chain(&leaf.cert, 1);
    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 0, "negative serial on the leaf");
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);

    testlib_spec_signing_ca(&inter_spec, TESTLIB_TD_ID);
    inter_spec.negative_serial = true;
    build_leaf(&inter, &inter_spec, &root);
    leaf_spec.negative_serial = false;
    build_leaf(&leaf, &leaf_spec, &inter);
    X509 *certs[] = {leaf.cert, inter.cert};
    chain = testlib_chain(certs, 2);
    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_DECODE, 1, "negative serial on the intermediate");
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&inter);
    testlib_cred_cleanup(&root);
}

Test(x509svid_path, signer_with_a_second_uri_holding_a_path_is_refused)
{
    /* B5 holds for every SPIFFE ID a signing certificate carries, not only a lone one. */
    struct testlib_cert_spec spec, inter_spec, leaf_spec;
    struct testlib_cred root, inter, leaf;
    struct spiffe_why why;
    struct spiffe_id id;
    root_spec(&spec, "root");
    build_root(&root, &spec);
    testlib_spec_signing_ca(&inter_spec, TESTLIB_TD_ID);
    inter_spec.uris[1] = "spiffe://example.org/ca";
    build_leaf(&inter, &inter_spec, &root);
    testlib_spec_leaf(&leaf_spec, TESTLIB_LEAF_ID);
    build_leaf(&leaf, &leaf_spec, &inter);
    X509 *certs[] = {leaf.cert, inter.cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 2);
    cr_assert_eq(spiffe_x509svid_check(&id, chain, &why), WEFT_EINVAL);
    expect_why(&why, SPIFFE_RULE_SVID_SIGNER_PATH, 1, "second URI with a path");
    sk_X509_pop_free(chain, X509_free);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&inter);
    testlib_cred_cleanup(&root);
}
