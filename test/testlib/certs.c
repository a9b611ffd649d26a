#include "test/testlib/certs.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static int add_ext(X509 *x, int nid, bool critical, void *value);
static int add_key_usage(X509 *x, uint32_t bits, bool critical);
static int add_sans(X509 *x, const struct testlib_cert_spec *spec);
static int sign(X509 *x, EVP_PKEY *key, bool sha1);

void testlib_cred_cleanup(struct testlib_cred *c)
{
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    memset(c, 0, sizeof(*c));
}

static struct spiffe_mint_params params(int64_t not_before, int64_t ttl_s)
{
    struct spiffe_mint_params p;
    memset(&p, 0, sizeof(p));
    p.not_before = not_before;
    p.ttl_s = ttl_s;
    return p;
}

enum mint_kind { MINT_ROOT, MINT_INTERMEDIATE, MINT_LEAF };

/* mint makes a new key of |type| and a certificate of |kind| for |name| (a trust domain name
 * for CAs, a SPIFFE ID for leaves) with lib/spiffe's own minting. On failure |out| is zeroed. */
static int mint(struct testlib_cred *out, enum mint_kind kind, const struct testlib_cred *issuer,
                const char *name, enum spiffe_key_type type, int64_t not_before, int64_t ttl_s)
{
    struct spiffe_id id;
    struct spiffe_mint_params p = params(not_before, ttl_s);
    memset(out, 0, sizeof(*out));
    TRY(kind == MINT_LEAF ? spiffe_id_parse(&id, name, strlen(name), NULL)
                          : spiffe_td_parse(&id, name, strlen(name), NULL));
    if ((out->key = spiffe_key_generate(type)) == NULL) {
        return WEFT_ECRYPTO;
    }
    int rc =
        kind == MINT_ROOT ? spiffe_mint_root(&out->cert, out->key, &id, &p, NULL)
        : kind == MINT_INTERMEDIATE
            ? spiffe_mint_signing_ca(&out->cert, issuer->cert, issuer->key, out->key, &id, &p, NULL)
            : spiffe_mint_leaf(&out->cert, issuer->cert, issuer->key, out->key, &id, &p, NULL);
    if (rc != WEFT_OK) {
        testlib_cred_cleanup(out);
    }
    return rc;
}

int testlib_mint_root(struct testlib_cred *out, const char *td, enum spiffe_key_type type,
                      int64_t not_before, int64_t ttl_s)
{
    return mint(out, MINT_ROOT, NULL, td, type, not_before, ttl_s);
}

int testlib_mint_intermediate(struct testlib_cred *out, const struct testlib_cred *issuer,
                              const char *td, enum spiffe_key_type type, int64_t not_before,
                              int64_t ttl_s)
{
    return mint(out, MINT_INTERMEDIATE, issuer, td, type, not_before, ttl_s);
}

int testlib_mint_leaf(struct testlib_cred *out, const struct testlib_cred *issuer, const char *id,
                      enum spiffe_key_type type, int64_t not_before, int64_t ttl_s)
{
    return mint(out, MINT_LEAF, issuer, id, type, not_before, ttl_s);
}

int testlib_pki_mint(struct testlib_pki *pki, enum spiffe_key_type type, bool with_intermediate)
{
    const int64_t nb = TESTLIB_NOW - TESTLIB_HOUR, ttl = TESTLIB_DAY;
    memset(pki, 0, sizeof(*pki));
    int rc = testlib_mint_root(&pki->root, TESTLIB_TD, type, nb, ttl);
    if (rc == WEFT_OK && with_intermediate) {
        rc = testlib_mint_intermediate(&pki->inter, &pki->root, TESTLIB_TD, type, nb, ttl);
    }
    if (rc == WEFT_OK) {
        rc = testlib_mint_leaf(&pki->leaf, with_intermediate ? &pki->inter : &pki->root,
                               TESTLIB_LEAF_ID, type, nb, ttl);
    }
    if (rc != WEFT_OK) {
        testlib_pki_cleanup(pki);
    }
    return rc;
}

void testlib_pki_cleanup(struct testlib_pki *pki)
{
    testlib_cred_cleanup(&pki->root);
    testlib_cred_cleanup(&pki->inter);
    testlib_cred_cleanup(&pki->leaf);
}

STACK_OF(X509) * testlib_chain(X509 *const *certs, size_t num_certs)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    for (size_t i = 0; chain != NULL && i < num_certs; i++) {
        if (!sk_X509_push(chain, certs[i])) {
            sk_X509_pop_free(chain, X509_free);
            return NULL;
        }
        X509_up_ref(certs[i]);
    }
    return chain;
}

STACK_OF(X509) * testlib_pki_chain(const struct testlib_pki *pki)
{
    X509 *certs[2] = {pki->leaf.cert, pki->inter.cert};
    return testlib_chain(certs, pki->inter.cert != NULL ? 2 : 1);
}

int testlib_bundle_set_add(struct spiffe_bundle_set *set, const char *td, X509 *root)
{
    struct spiffe_id id;
    TRY(spiffe_td_parse(&id, td, strlen(td), NULL));
    struct spiffe_bundle *b = spiffe_bundle_new(&id);
    int rc = spiffe_bundle_add_x509(b, root);
    if (rc != WEFT_OK) {
        spiffe_bundle_free(b);
        return rc;
    }
    return spiffe_bundle_set_put(set, b); /* frees |b| on failure */
}

/* --- certificates built field by field ----------------------------------------------------- */

void testlib_spec_leaf(struct testlib_cert_spec *spec, const char *id)
{
    memset(spec, 0, sizeof(*spec));
    spec->uris[0] = id;
    spec->san_critical = true;
    spec->basic_constraints = TESTLIB_BC_LEAF;
    spec->has_key_usage = true;
    spec->key_usage = KU_DIGITAL_SIGNATURE;
    spec->key_usage_critical = true;
    spec->has_eku = true;
    spec->eku_server_auth = true;
    spec->eku_client_auth = true;
    spec->not_before = TESTLIB_NOW - TESTLIB_HOUR;
    spec->not_after = TESTLIB_NOW + TESTLIB_DAY;
}

void testlib_spec_signing_ca(struct testlib_cert_spec *spec, const char *td_id)
{
    memset(spec, 0, sizeof(*spec));
    spec->subject_cn = "testlib signing CA";
    spec->uris[0] = td_id;
    spec->basic_constraints = TESTLIB_BC_CA;
    spec->has_key_usage = true;
    spec->key_usage = KU_KEY_CERT_SIGN | KU_CRL_SIGN;
    spec->key_usage_critical = true;
    spec->not_before = TESTLIB_NOW - TESTLIB_HOUR;
    spec->not_after = TESTLIB_NOW + TESTLIB_DAY;
}

void testlib_spec_break(struct testlib_cert_spec *spec, enum testlib_defect defect)
{
    switch (defect) {
    case TESTLIB_DEFECT_NONE:
        break;
    case TESTLIB_DEFECT_NO_URI_SAN:
        spec->uris[0] = NULL;
        spec->dns = "workload.example.org";
        break;
    case TESTLIB_DEFECT_NO_SAN_EXTENSION:
        spec->uris[0] = NULL;
        spec->dns = NULL;
        spec->subject_cn = "workload"; /* so that only B1 is broken */
        break;
    case TESTLIB_DEFECT_TWO_URI_SANS:
        spec->uris[1] = "https://example.org/workload";
        break;
    case TESTLIB_DEFECT_TWO_SAN_EXTENSIONS:
        spec->uris[1] = TESTLIB_LEAF_ID "2";
        spec->san_split = true;
        break;
    case TESTLIB_DEFECT_URI_NOT_SPIFFE:
        spec->uris[0] = "https://example.org/workload";
        break;
    case TESTLIB_DEFECT_ROOT_PATH_ID:
        spec->uris[0] = TESTLIB_TD_ID;
        break;
    case TESTLIB_DEFECT_LEAF_CA:
        spec->basic_constraints = TESTLIB_BC_CA;
        break;
    case TESTLIB_DEFECT_KU_MISSING:
        spec->has_key_usage = false;
        break;
    case TESTLIB_DEFECT_KU_NOT_CRITICAL:
        spec->key_usage_critical = false;
        break;
    case TESTLIB_DEFECT_KU_NO_DIGSIG:
        spec->key_usage = KU_KEY_ENCIPHERMENT;
        break;
    case TESTLIB_DEFECT_KU_CERT_SIGN:
        spec->key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN;
        break;
    case TESTLIB_DEFECT_KU_CRL_SIGN:
        spec->key_usage = KU_DIGITAL_SIGNATURE | KU_CRL_SIGN;
        break;
    case TESTLIB_DEFECT_EKU_SERVER_ONLY:
        spec->has_eku = true;
        spec->eku_server_auth = true;
        spec->eku_client_auth = false;
        break;
    case TESTLIB_DEFECT_EKU_CLIENT_ONLY:
        spec->has_eku = true;
        spec->eku_server_auth = false;
        spec->eku_client_auth = true;
        break;
    case TESTLIB_DEFECT_SAN_NOT_CRITICAL:
        spec->subject_cn = NULL;
        spec->san_critical = false;
        break;
    case TESTLIB_DEFECT_SIGNER_NOT_CA:
        spec->basic_constraints = TESTLIB_BC_LEAF;
        break;
    case TESTLIB_DEFECT_SIGNER_NO_BC:
        spec->basic_constraints = TESTLIB_BC_ABSENT;
        break;
    case TESTLIB_DEFECT_SIGNER_NO_CERT_SIGN:
        spec->key_usage = KU_CRL_SIGN;
        break;
    case TESTLIB_DEFECT_SIGNER_KU_NOT_CRITICAL:
        spec->key_usage_critical = false;
        break;
    case TESTLIB_DEFECT_SIGNER_WITH_PATH:
        spec->uris[0] = TESTLIB_TD_ID "/ca";
        break;
    }
}

const char *testlib_defect_name(enum testlib_defect defect)
{
    static const char *const names[] = {
        [TESTLIB_DEFECT_NONE] = "none",
        [TESTLIB_DEFECT_NO_URI_SAN] = "no-uri-san",
        [TESTLIB_DEFECT_NO_SAN_EXTENSION] = "no-san-extension",
        [TESTLIB_DEFECT_TWO_URI_SANS] = "two-uri-sans",
        [TESTLIB_DEFECT_TWO_SAN_EXTENSIONS] = "two-san-extensions",
        [TESTLIB_DEFECT_URI_NOT_SPIFFE] = "uri-not-spiffe",
        [TESTLIB_DEFECT_ROOT_PATH_ID] = "root-path-id",
        [TESTLIB_DEFECT_LEAF_CA] = "leaf-ca",
        [TESTLIB_DEFECT_KU_MISSING] = "ku-missing",
        [TESTLIB_DEFECT_KU_NOT_CRITICAL] = "ku-not-critical",
        [TESTLIB_DEFECT_KU_NO_DIGSIG] = "ku-no-digital-signature",
        [TESTLIB_DEFECT_KU_CERT_SIGN] = "ku-cert-sign",
        [TESTLIB_DEFECT_KU_CRL_SIGN] = "ku-crl-sign",
        [TESTLIB_DEFECT_EKU_SERVER_ONLY] = "eku-server-only",
        [TESTLIB_DEFECT_EKU_CLIENT_ONLY] = "eku-client-only",
        [TESTLIB_DEFECT_SAN_NOT_CRITICAL] = "san-not-critical",
        [TESTLIB_DEFECT_SIGNER_NOT_CA] = "signer-not-ca",
        [TESTLIB_DEFECT_SIGNER_NO_BC] = "signer-no-basic-constraints",
        [TESTLIB_DEFECT_SIGNER_NO_CERT_SIGN] = "signer-no-cert-sign",
        [TESTLIB_DEFECT_SIGNER_KU_NOT_CRITICAL] = "signer-ku-not-critical",
        [TESTLIB_DEFECT_SIGNER_WITH_PATH] = "signer-with-path",
    };
    if ((size_t)defect >= nitems(names) || names[defect] == NULL) {
        return "?";
    }
    return names[defect];
}

static int add_ext(X509 *x, int nid, bool critical, void *value)
{
    /* APPEND, not DEFAULT: a test may want the same extension twice. */
    return X509_add1_ext_i2d(x, nid, value, critical ? 1 : 0, X509V3_ADD_APPEND);
}

/* add_key_usage writes the KU_* bits of |bits| as the BIT STRING of RFC 5280 §4.2.1.3, where
 * bit 0 is digitalSignature. X509_get_key_usage reads that bit n back as 0x80 >> n (bits 0-7)
 * and decipherOnly (bit 8) as 0x8000. */
static int add_key_usage(X509 *x, uint32_t bits, bool critical)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL;
    for (int n = 0; ok && n < 9; n++) {
        uint32_t flag = n < 8 ? 0x80u >> n : 0x8000u;
        if (bits & flag) {
            ok = ASN1_BIT_STRING_set_bit(ku, n, 1);
        }
    }
    ok = ok && add_ext(x, NID_key_usage, critical, ku);
    ASN1_BIT_STRING_free(ku);
    return ok;
}

static int push_name(GENERAL_NAMES *names, int type, const char *value)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (gn == NULL || s == NULL || !ASN1_STRING_set(s, value, (int)strlen(value))) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return 0;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return 0;
    }
    return 1;
}

static int add_sans(X509 *x, const struct testlib_cert_spec *spec)
{
    int ok = 1;
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    if (names == NULL) {
        return 0;
    }
    for (size_t i = 0; ok && i < TESTLIB_MAX_URIS && spec->uris[i] != NULL; i++) {
        ok = push_name(names, GEN_URI, spec->uris[i]);
        if (ok && spec->san_split) {
            /* One extension per URI: flush what we have. */
            ok = add_ext(x, NID_subject_alt_name, spec->san_critical, names);
            sk_GENERAL_NAME_pop_free(names, GENERAL_NAME_free);
            if ((names = GENERAL_NAMES_new()) == NULL) {
                return 0;
            }
        }
    }
    if (ok && spec->dns != NULL) {
        ok = push_name(names, GEN_DNS, spec->dns);
    }
    if (ok && sk_GENERAL_NAME_num(names) > 0) {
        ok = add_ext(x, NID_subject_alt_name, spec->san_critical, names);
    }
    GENERAL_NAMES_free(names);
    return ok;
}

static int add_eku(X509 *x, const struct testlib_cert_spec *spec)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int ok = eku != NULL &&
             (!spec->eku_server_auth || sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth))) &&
             (!spec->eku_client_auth || sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth))) &&
             add_ext(x, NID_ext_key_usage, false, eku);
    sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj's objects are static */
    return ok;
}

static int add_basic_constraints(X509 *x, enum testlib_bc bc_kind)
{
    if (bc_kind == TESTLIB_BC_ABSENT) {
        return 1;
    }
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int ok = bc != NULL;
    if (ok) {
        bc->ca = bc_kind == TESTLIB_BC_CA ? 0xff : 0;
        ok = add_ext(x, NID_basic_constraints, true, bc);
    }
    BASIC_CONSTRAINTS_free(bc);
    return ok;
}

static int set_random_serial(X509 *x, bool negative)
{
    uint8_t serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] = (serial[0] & 0x7f) | 0x40; /* full length */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn != NULL) {
        BN_set_negative(bn, negative);
    }
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static int set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
    ASN1_TIME *nb = ASN1_TIME_set(NULL, (time_t)not_before);
    ASN1_TIME *na = ASN1_TIME_set(NULL, (time_t)not_after);
    int ok = nb != NULL && na != NULL && X509_set1_notBefore(x, nb) && X509_set1_notAfter(x, na);
    ASN1_TIME_free(nb);
    ASN1_TIME_free(na);
    return ok;
}

static int sign(X509 *x, EVP_PKEY *key, bool sha1)
{
    const EVP_MD *md = NULL; /* Ed25519 takes no digest */
    if (EVP_PKEY_id(key) == EVP_PKEY_EC || EVP_PKEY_id(key) == EVP_PKEY_RSA) {
        md = sha1 ? EVP_sha1() : EVP_sha256();
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, md, NULL, key) && X509_sign_ctx(x, ctx);
    EVP_MD_CTX_free(ctx);
    return ok;
}

int testlib_cert_build(X509 **out, const struct testlib_cert_spec *spec, EVP_PKEY *subject_key,
                       const X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509_NAME *subject = X509_NAME_new();
    *out = NULL;
    int ok = x != NULL && subject != NULL && X509_set_version(x, X509_VERSION_3) &&
             set_random_serial(x, spec->negative_serial) &&
             set_validity(x, spec->not_before, spec->not_after) && X509_set_pubkey(x, subject_key);
    if (ok && spec->subject_cn != NULL) {
        ok = X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                        (const uint8_t *)spec->subject_cn, -1, -1, 0);
    }
    ok = ok && X509_set_subject_name(x, subject) &&
         X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : subject) &&
         add_basic_constraints(x, spec->basic_constraints) &&
         (!spec->has_key_usage || add_key_usage(x, spec->key_usage, spec->key_usage_critical)) &&
         (!spec->has_eku || add_eku(x, spec)) && add_sans(x, spec) &&
         sign(x, issuer != NULL ? issuer_key : subject_key, spec->sha1_signature);
    X509_NAME_free(subject);
    ERR_clear_error();
    if (!ok) {
        X509_free(x);
        return WEFT_ECRYPTO;
    }
    *out = x;
    return WEFT_OK;
}

uint8_t *testlib_der(const X509 *cert, size_t *out_len)
{
    uint8_t *der = NULL;
    int n = i2d_X509((X509 *)cert, &der); /* i2d_X509 does not modify |cert| */
    if (n <= 0) {
        *out_len = 0;
        return NULL;
    }
    *out_len = (size_t)n;
    return der;
}
