/* Minting: roots, signing CAs and leaf SVIDs carrying exactly the extensions X509-SVID.md asks
 * for (checklist §B), and no more: no name constraints (B8), no EKU on CAs (B7). */
#include "lib/spiffe/x509svid.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

enum cert_kind { KIND_ROOT, KIND_SIGNING_CA, KIND_LEAF };

static int build(X509 **out, enum cert_kind kind, const X509 *issuer, EVP_PKEY *issuer_key,
                 EVP_PKEY *pub, const struct spiffe_id *id, const struct spiffe_mint_params *p,
                 struct spiffe_why *why);

int spiffe_key_type_parse(enum spiffe_key_type *out, const char *s)
{
    if (strcmp(s, "ec-p256") == 0) {
        *out = SPIFFE_KEY_EC_P256;
    } else if (strcmp(s, "ed25519") == 0) {
        *out = SPIFFE_KEY_ED25519;
    } else {
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

EVP_PKEY *spiffe_key_generate(enum spiffe_key_type type)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx =
        EVP_PKEY_CTX_new_id(type == SPIFFE_KEY_ED25519 ? EVP_PKEY_ED25519 : EVP_PKEY_EC, NULL);
    if (ctx == NULL || !EVP_PKEY_keygen_init(ctx) ||
        (type == SPIFFE_KEY_EC_P256 &&
         !EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1)) ||
        !EVP_PKEY_keygen(ctx, &key)) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return key;
}

static int add_ext(X509 *x, int nid, int critical, void *value)
{
    return X509_add1_ext_i2d(x, nid, value, critical, X509V3_ADD_DEFAULT);
}

static int add_uri_san(X509 *x, const struct spiffe_id *id, int critical)
{
    int ok = 0;
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *uri = ASN1_IA5STRING_new();
    if (names == NULL || gn == NULL || uri == NULL ||
        !ASN1_STRING_set(uri, id->str, (int)id->len)) {
        goto out;
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, uri);
    uri = NULL;
    if (!sk_GENERAL_NAME_push(names, gn)) {
        goto out;
    }
    gn = NULL;
    ok = add_ext(x, NID_subject_alt_name, critical, names);
out:
    ASN1_IA5STRING_free(uri);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(names);
    return ok;
}

/* RFC 5280 §4.2.1.3: the bit numbers of KeyUsage. */
enum { KU_BIT_DIGITAL_SIGNATURE = 0, KU_BIT_KEY_CERT_SIGN = 5, KU_BIT_CRL_SIGN = 6 };

/* add_key_usage adds a critical key usage with the bits numbered in |bits| (a mask of
 * 1 << KU_BIT_*). */
static int add_key_usage(X509 *x, int bits)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL;
    for (int bit = 0; ok && bit < 9; bit++) {
        if (bits & (1 << bit)) {
            ok = ASN1_BIT_STRING_set_bit(ku, bit, 1);
        }
    }
    ok = ok && add_ext(x, NID_key_usage, 1, ku);
    ASN1_BIT_STRING_free(ku);
    return ok;
}

static int add_basic_constraints(X509 *x, int ca)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int ok = bc != NULL;
    if (ok) {
        bc->ca = ca ? 0xff : 0;
        ok = add_ext(x, NID_basic_constraints, 1, bc);
    }
    BASIC_CONSTRAINTS_free(bc);
    return ok;
}

static int add_eku_tls(X509 *x)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int ok = eku != NULL && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) &&
             sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) &&
             add_ext(x, NID_ext_key_usage, 0, eku);
    sk_ASN1_OBJECT_free(eku); /* the objects are static */
    return ok;
}

/* key_id computes the RFC 5280 §4.2.1.2 method (1) key identifier: SHA-1 of the public key's
 * BIT STRING. */
static int key_id(ASN1_OCTET_STRING **out, const X509 *x)
{
    uint8_t md[SHA_DIGEST_LENGTH];
    unsigned md_len;
    const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(x);
    *out = NULL;
    if (bits == NULL || !EVP_Digest(ASN1_STRING_get0_data(bits), (size_t)ASN1_STRING_length(bits),
                                    md, &md_len, EVP_sha1(), NULL)) {
        return 0;
    }
    *out = ASN1_OCTET_STRING_new();
    return *out != NULL && ASN1_OCTET_STRING_set(*out, md, (int)md_len);
}

static int add_key_ids(X509 *x, const X509 *issuer)
{
    ASN1_OCTET_STRING *skid = NULL, *akid_id = NULL;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    int ok = akid != NULL && key_id(&skid, x) && add_ext(x, NID_subject_key_identifier, 0, skid) &&
             key_id(&akid_id, issuer);
    if (ok) {
        akid->keyid = akid_id;
        akid_id = NULL;
        ok = add_ext(x, NID_authority_key_identifier, 0, akid);
    }
    ASN1_OCTET_STRING_free(skid);
    ASN1_OCTET_STRING_free(akid_id);
    AUTHORITY_KEYID_free(akid);
    return ok;
}

static int set_serial(X509 *x, const struct spiffe_mint_params *p)
{
    uint8_t serial[SPIFFE_SERIAL_MAX_LEN];
    size_t len = p->serial_len;
    if (len == 0) {
        len = 16;
        RAND_bytes(serial, len);
        serial[0] &= 0x7f; /* positive */
        serial[0] |= 0x40; /* and of full length */
    } else {
        memcpy(serial, p->serial, len);
    }
    BIGNUM *bn = BN_bin2bn(serial, len, NULL);
    int ok = bn != NULL && !BN_is_zero(bn) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    return ok;
}

static int set_time(X509 *x, int64_t not_before, int64_t not_after)
{
    ASN1_TIME *nb = ASN1_TIME_set(NULL, (time_t)not_before);
    ASN1_TIME *na = ASN1_TIME_set(NULL, (time_t)not_after);
    int ok = nb != NULL && na != NULL && X509_set1_notBefore(x, nb) && X509_set1_notAfter(x, na);
    ASN1_TIME_free(nb);
    ASN1_TIME_free(na);
    return ok;
}

static int sign(X509 *x, EVP_PKEY *key)
{
    const EVP_MD *md = NULL; /* Ed25519 signs the message itself */
    if (EVP_PKEY_id(key) == EVP_PKEY_EC) {
        md = EVP_PKEY_bits(key) > 256 ? EVP_sha384() : EVP_sha256();
    } else if (EVP_PKEY_id(key) == EVP_PKEY_RSA) {
        md = EVP_sha256();
    }
    EVP_MD_CTX ctx;
    EVP_MD_CTX_init(&ctx);
    int ok = EVP_DigestSignInit(&ctx, NULL, md, NULL, key) && X509_sign_ctx(x, &ctx);
    EVP_MD_CTX_cleanup(&ctx);
    return ok;
}

static int build(X509 **out, enum cert_kind kind, const X509 *issuer, EVP_PKEY *issuer_key,
                 EVP_PKEY *pub, const struct spiffe_id *id, const struct spiffe_mint_params *p,
                 struct spiffe_why *why)
{
    *out = NULL;
    spiffe_why_clear(why);
    if (kind == KIND_LEAF ? spiffe_id_is_td(id) : !spiffe_id_is_td(id)) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1,
                       kind == KIND_LEAF ? "a leaf SVID needs an ID with a path, not %s"
                                         : "a CA's ID must be the trust domain's own ID, not %s",
                       id->str);
        return WEFT_EINVAL;
    }
    if (p->ttl_s <= 0 || p->serial_len > SPIFFE_SERIAL_MAX_LEN ||
        (p->serial_len == SPIFFE_SERIAL_MAX_LEN && (p->serial[0] & 0x80))) {
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1,
                       "TTL must be positive and the serial at most %d octets as a positive "
                       "DER INTEGER",
                       SPIFFE_SERIAL_MAX_LEN);
        return WEFT_EINVAL;
    }
    int64_t not_after = p->not_before + p->ttl_s;
    if (issuer != NULL) {
        struct spiffe_id issuer_id;
        struct spiffe_why unused;
        if (spiffe_cert_uri_id(&issuer_id, issuer, &unused) != WEFT_OK ||
            !spiffe_id_same_td(&issuer_id, id)) {
            spiffe_why_set(why, SPIFFE_RULE_MINT, -1,
                           "the issuer does not carry an ID in the trust domain of %s", id->str);
            return WEFT_EINVAL;
        }
        int64_t inb, ina;
        if (spiffe_cert_validity(&inb, &ina, issuer) != WEFT_OK) {
            spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "the issuer's validity is unreadable");
            return WEFT_EINVAL;
        }
        if (p->not_before >= ina) {
            spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "the issuer expires before notBefore");
            return WEFT_EINVAL;
        }
        if (not_after > ina) {
            not_after = ina; /* never outlive the issuer */
        }
    }

    X509 *x = X509_new();
    X509_NAME *name = NULL;
    int ok = x != NULL && X509_set_version(x, X509_VERSION_3) && set_serial(x, p) &&
             set_time(x, p->not_before, not_after) && X509_set_pubkey(x, pub);
    if (ok && kind != KIND_LEAF) {
        /* A CA keeps a subject so that chains are readable; a leaf's subject stays empty and its
         * SAN is critical (B3). */
        size_t td_len;
        const char *td = spiffe_id_td(id, &td_len);
        char cn[SPIFFE_TD_MAX_LEN + 32];
        snprintf(cn, sizeof(cn), "weft %s %.*s", kind == KIND_ROOT ? "root" : "intermediate",
                 (int)td_len, td);
        name = X509_NAME_new();
        ok =
            name != NULL &&
            X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const uint8_t *)"weft", -1, -1,
                                       0) &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)cn, -1, -1, 0) &&
            X509_set_subject_name(x, name);
    }
    if (ok) {
        ok = X509_set_issuer_name(x, kind == KIND_ROOT ? X509_get_subject_name(x)
                                                       : X509_get_subject_name(issuer));
    }
    if (ok && kind == KIND_LEAF) {
        ok = add_basic_constraints(x, 0) && add_key_usage(x, 1 << KU_BIT_DIGITAL_SIGNATURE) &&
             add_eku_tls(x) && add_uri_san(x, id, 1);
    } else if (ok) {
        ok = add_basic_constraints(x, 1) &&
             add_key_usage(x, (1 << KU_BIT_KEY_CERT_SIGN) | (1 << KU_BIT_CRL_SIGN)) &&
             add_uri_san(x, id, 0);
    }
    ok = ok && add_key_ids(x, kind == KIND_ROOT ? x : issuer) &&
         sign(x, kind == KIND_ROOT ? pub : issuer_key);
    X509_NAME_free(name);
    ERR_clear_error();
    if (!ok) {
        X509_free(x);
        spiffe_why_set(why, SPIFFE_RULE_MINT, -1, "BoringSSL could not build the certificate");
        return WEFT_ECRYPTO;
    }
    *out = x;
    return WEFT_OK;
}

int spiffe_mint_root(X509 **out, EVP_PKEY *key, const struct spiffe_id *td,
                     const struct spiffe_mint_params *p, struct spiffe_why *why)
{
    return build(out, KIND_ROOT, NULL, NULL, key, td, p, why);
}

int spiffe_mint_signing_ca(X509 **out, const X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub,
                           const struct spiffe_id *td, const struct spiffe_mint_params *p,
                           struct spiffe_why *why)
{
    return build(out, KIND_SIGNING_CA, issuer, issuer_key, pub, td, p, why);
}

int spiffe_mint_leaf(X509 **out, const X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub,
                     const struct spiffe_id *id, const struct spiffe_mint_params *p,
                     struct spiffe_why *why)
{
    return build(out, KIND_LEAF, issuer, issuer_key, pub, id, p, why);
}

int spiffe_csr_decode(EVP_PKEY **out_pub, const uint8_t *data, size_t len, struct spiffe_why *why)
{
    X509_REQ *req = NULL;
    *out_pub = NULL;
    spiffe_why_clear(why);
    if (len > SPIFFE_MAX_PEM_INPUT) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, -1, "CSR is over %d bytes",
                       SPIFFE_MAX_PEM_INPUT);
        return WEFT_ELIMIT;
    }
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio != NULL) {
        req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    if (req == NULL) {
        const uint8_t *p = data;
        req = d2i_X509_REQ(NULL, &p, (long)len);
    }
    int decoded = req != NULL;
    EVP_PKEY *pub = decoded ? X509_REQ_get_pubkey(req) : NULL;
    int ok = pub != NULL && X509_REQ_verify(req, pub) == 1;
    X509_REQ_free(req);
    ERR_clear_error();
    if (!ok) {
        EVP_PKEY_free(pub);
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, -1,
                       !decoded ? "input is not a PKCS#10 certificate request"
                                : "certificate request's self-signature does not verify");
        return WEFT_EINVAL;
    }
    *out_pub = pub;
    return WEFT_OK;
}
