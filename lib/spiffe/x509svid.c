/* X509-SVID checks. Rule letters refer to shared/reference/spiffe.md §B; the order of the leaf
 * checks follows go-spiffe's ParseRaw (B11) so that our first complaint matches theirs. */
#include "lib/spiffe/x509svid.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "lib/base/timefmt.h"
#include "lib/spiffe/bundle.h"

static int check_leaf(struct spiffe_id *out_id, X509 *leaf, struct spiffe_why *why);
static int check_signer(X509 *cert, int index, struct spiffe_why *why);
static int ext_is_critical(const X509 *cert, int nid);

int spiffe_asn1_time_to_unix(int64_t *out, const ASN1_TIME *t)
{
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days, secs;
    int ok = epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, t);
    ASN1_TIME_free(epoch);
    ERR_clear_error();
    ENSURE(ok, WEFT_EINVAL);
    *out = (int64_t)days * 86400 + secs;
    return WEFT_OK;
}

int spiffe_cert_validity(int64_t *out_not_before, int64_t *out_not_after, const X509 *cert)
{
    TRY(spiffe_asn1_time_to_unix(out_not_before, X509_get0_notBefore(cert)));
    return spiffe_asn1_time_to_unix(out_not_after, X509_get0_notAfter(cert));
}

static int ext_is_critical(const X509 *cert, int nid)
{
    int idx = X509_get_ext_by_NID(cert, nid, -1);
    if (idx < 0) {
        return 0;
    }
    return X509_EXTENSION_get_critical(X509_get_ext(cert, idx));
}

int spiffe_cert_uri_id(struct spiffe_id *out, const X509 *cert, struct spiffe_why *why)
{
    int rc = WEFT_ENOTFOUND;
    int crit = -1;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    const ASN1_IA5STRING *uri = NULL;
    size_t num_uris = 0;
    spiffe_id_clear(out);
    if (names == NULL && crit == -2) {
        ERR_clear_error();
        spiffe_why_set(why, SPIFFE_RULE_SVID_URI_SAN_COUNT, -1,
                       "certificate has more than one subjectAltName extension");
        return WEFT_EINVAL;
    }
    if (names == NULL && crit >= 0) {
        ERR_clear_error();
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, -1,
                       "certificate's subjectAltName extension cannot be decoded");
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_URI) {
            num_uris++;
            uri = gn->d.uniformResourceIdentifier;
        }
    }
    if (num_uris == 0) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_URI_SAN_COUNT, -1,
                       "certificate contains no URI SAN (an X509-SVID needs exactly one)");
        rc = WEFT_ENOTFOUND;
    } else if (num_uris > 1) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_URI_SAN_COUNT, -1,
                       "certificate contains %zu URI SANs (an X509-SVID needs exactly one)",
                       num_uris);
        rc = WEFT_EINVAL;
    } else {
        struct spiffe_why id_why;
        rc = spiffe_id_parse(out, (const char *)ASN1_STRING_get0_data(uri),
                             (size_t)ASN1_STRING_length(uri), &id_why);
        if (rc != WEFT_OK) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_URI_SAN_ID, -1,
                           "URI SAN is not a valid SPIFFE ID: %s", id_why.msg);
            rc = WEFT_EINVAL;
        }
    }
    GENERAL_NAMES_free(names);
    return rc;
}

/* check_serial refuses a negative serial number (RFC 5280 §4.1.2.2; Go's parser refuses it too,
 * so go-spiffe never sees such an SVID). */
static int check_serial(const X509 *cert, int index, struct spiffe_why *why)
{
    if (ASN1_STRING_type(X509_get0_serialNumber(cert)) == V_ASN1_NEG_INTEGER) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, index,
                       "certificate %d has a negative serial number (RFC 5280 §4.1.2.2)", index);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* check_leaf applies B1-B4, B6, B7 and B10 to the leaf, in go-spiffe's order. */
static int check_leaf(struct spiffe_id *out_id, X509 *leaf, struct spiffe_why *why)
{
    uint32_t flags = X509_get_extension_flags(leaf);
    if (flags & EXFLAG_INVALID) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, 0,
                       "leaf certificate has malformed or duplicate extensions");
        return WEFT_EINVAL;
    }
    TRY(check_serial(leaf, 0, why));
    int rc = spiffe_cert_uri_id(out_id, leaf, why);
    if (rc != WEFT_OK) {
        if (why != NULL) {
            why->cert_index = 0;
        }
        return WEFT_EINVAL;
    }
    if (spiffe_id_is_td(out_id)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_ROOT_PATH, 0,
                       "leaf ID %s has no path; a leaf SVID needs a non-root path", out_id->str);
        return WEFT_EINVAL;
    }
    if (flags & EXFLAG_CA) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_LEAF_CA, 0,
                       "leaf certificate must not have CA flag set to true");
        return WEFT_EINVAL;
    }
    uint32_t ku = X509_get_key_usage(leaf); /* UINT32_MAX when the extension is absent */
    if (!(flags & EXFLAG_KUSAGE)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KU_MISSING, 0,
                       "leaf certificate has no key usage extension (it must be present, "
                       "critical, with digitalSignature)");
        return WEFT_EINVAL;
    }
    if (!(ku & KU_DIGITAL_SIGNATURE)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KU_DIGSIG, 0,
                       "leaf certificate must have 'digitalSignature' set as key usage");
        return WEFT_EINVAL;
    }
    if (ku & KU_KEY_CERT_SIGN) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KU_CERTSIGN, 0,
                       "leaf certificate must not have 'keyCertSign' set as key usage");
        return WEFT_EINVAL;
    }
    if (ku & KU_CRL_SIGN) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KU_CRLSIGN, 0,
                       "leaf certificate must not have 'cRLSign' set as key usage");
        return WEFT_EINVAL;
    }
    if (!ext_is_critical(leaf, NID_key_usage)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KU_CRITICAL, 0,
                       "leaf certificate's key usage extension must be marked critical");
        return WEFT_EINVAL;
    }
    if (flags & EXFLAG_XKUSAGE) {
        uint32_t xku = X509_get_extended_key_usage(leaf);
        if ((xku & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) != (XKU_SSL_SERVER | XKU_SSL_CLIENT)) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_EKU, 0,
                           "leaf certificate's extended key usage must include both serverAuth "
                           "and clientAuth");
            return WEFT_EINVAL;
        }
    }
    if (X509_NAME_entry_count(X509_get_subject_name(leaf)) == 0 &&
        !ext_is_critical(leaf, NID_subject_alt_name)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_SAN_CRITICAL, 0,
                       "leaf certificate has an empty subject, so its subjectAltName extension "
                       "must be critical (RFC 5280 §4.1.2.6)");
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* check_signer applies B5 and B6 to an intermediate the SVID carries. */
static int check_signer(X509 *cert, int index, struct spiffe_why *why)
{
    uint32_t flags = X509_get_extension_flags(cert);
    if (flags & EXFLAG_INVALID) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, index,
                       "signing certificate %d has malformed or duplicate extensions", index);
        return WEFT_EINVAL;
    }
    if (!(flags & EXFLAG_CA)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_SIGNER_CA, index,
                       "signing certificate must have CA flag set to true (certificate %d)", index);
        return WEFT_EINVAL;
    }
    if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_SIGNER_CERTSIGN, index,
                       "signing certificate must have 'keyCertSign' set as key usage "
                       "(certificate %d)",
                       index);
        return WEFT_EINVAL;
    }
    if (!ext_is_critical(cert, NID_key_usage)) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KU_CRITICAL, index,
                       "signing certificate's key usage extension must be marked critical "
                       "(certificate %d)",
                       index);
        return WEFT_EINVAL;
    }
    TRY(check_serial(cert, index, why));
    /* B5: a SPIFFE ID on a signing certificate has no path. A CA may carry no ID, or other
     * URIs; every URI SAN that is a SPIFFE ID is checked, however many there are. */
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int rc = WEFT_OK;
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names) && rc == WEFT_OK; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        struct spiffe_id id;
        if (gn->type == GEN_URI &&
            spiffe_id_parse(
                &id, (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier), NULL) == WEFT_OK &&
            !spiffe_id_is_td(&id)) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_SIGNER_PATH, index,
                           "signing certificate %d has SPIFFE ID %s; a signing certificate's ID "
                           "must not have a path",
                           index, id.str);
            rc = WEFT_EINVAL;
        }
    }
    GENERAL_NAMES_free(names);
    ERR_clear_error();
    return rc;
}

int spiffe_x509svid_check(struct spiffe_id *out_id, const STACK_OF(X509) * chain,
                          struct spiffe_why *why)
{
    spiffe_why_clear(why);
    spiffe_id_clear(out_id);
    if (chain == NULL || sk_X509_num(chain) == 0) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_NO_CERT, -1, "no certificates found");
        return WEFT_EINVAL;
    }
    if (sk_X509_num(chain) > SPIFFE_MAX_CHAIN) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_CHAIN_TOO_LONG, -1,
                       "chain has %zu certificates, over the limit of %d", sk_X509_num(chain),
                       SPIFFE_MAX_CHAIN);
        return WEFT_ELIMIT;
    }
    struct spiffe_id id;
    TRY(check_leaf(&id, sk_X509_value(chain, 0), why));
    for (size_t i = 1; i < sk_X509_num(chain); i++) {
        TRY(check_signer(sk_X509_value(chain, i), (int)i, why));
    }
    *out_id = id;
    return WEFT_OK;
}

/* check_window checks one certificate's validity period at |at|; both ends are inclusive
 * (RFC 5280 §4.1.2.5). |what| names the certificate in the message. */
static int check_window(const X509 *cert, int index, const char *what, int64_t at,
                        struct spiffe_why *why)
{
    int64_t nb, na;
    char when[WEFT_RFC3339_LEN], edge[WEFT_RFC3339_LEN];
    if (spiffe_cert_validity(&nb, &na, cert) != WEFT_OK) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_DECODE, index, "%s has an unreadable validity period",
                       what);
        return WEFT_EINVAL;
    }
    weft_time_format_rfc3339(when, at);
    if (at < nb) {
        weft_time_format_rfc3339(edge, nb);
        spiffe_why_set(why, SPIFFE_RULE_SVID_NOT_YET_VALID, index,
                       "%s is not valid yet: notBefore %s is after %s", what, edge, when);
        return WEFT_EINVAL;
    }
    if (at > na) {
        weft_time_format_rfc3339(edge, na);
        spiffe_why_set(why, SPIFFE_RULE_SVID_EXPIRED, index,
                       "%s has expired: notAfter %s is before %s", what, edge, when);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

int spiffe_x509svid_check_time(const STACK_OF(X509) * chain, int64_t at, struct spiffe_why *why)
{
    spiffe_why_clear(why);
    for (size_t i = 0; i < sk_X509_num(chain); i++) {
        char what[48];
        if (i == 0) {
            snprintf(what, sizeof(what), "leaf certificate");
        } else {
            snprintf(what, sizeof(what), "signing certificate %zu", i);
        }
        TRY(check_window(sk_X509_value(chain, i), (int)i, what, at, why));
    }
    return WEFT_OK;
}

/* skip_time_errors lets X509_verify_cert build and check the whole path while ignoring its own
 * validity-period verdicts: BoringSSL treats notAfter as exclusive, RFC 5280 as inclusive, and
 * we check every certificate of the built path ourselves, with one rule, afterwards. */
static int skip_time_errors(int ok, X509_STORE_CTX *ctx)
{
    int err = X509_STORE_CTX_get_error(ctx);
    if (!ok && (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID)) {
        X509_STORE_CTX_set_error(ctx, X509_V_OK);
        return 1;
    }
    return ok;
}

int spiffe_x509svid_check_key(const X509 *leaf, const EVP_PKEY *key, struct spiffe_why *why)
{
    spiffe_why_clear(why);
    EVP_PKEY *pub = X509_get_pubkey((X509 *)leaf);
    int match = pub != NULL && EVP_PKEY_cmp(pub, key) == 1;
    EVP_PKEY_free(pub);
    ERR_clear_error();
    if (!match) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_KEY_MISMATCH, 0,
                       "leaf certificate does not match private key");
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* weak_signature reports whether |cert| is signed with SHA-1 or MD5 (refused since Go 1.18 and
 * by every browser; a SPIFFE verifier should be no weaker). */
static int weak_signature(const X509 *cert)
{
    int md = NID_undef, pk = NID_undef;
    if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md, &pk)) {
        return 0; /* unknown to BoringSSL: path validation already refuses it */
    }
    return md == NID_sha1 || md == NID_md5 || md == NID_md4 || md == NID_md5_sha1;
}

/* check_anchor applies RFC 5280 §4.2.1.9 and §4.2.1.3 to the bundle authority that issued the
 * next certificate of the path, as Go's CheckSignatureFrom does: a v3 certificate needs
 * basicConstraints with cA, and one with key usage needs keyCertSign. BoringSSL does not
 * require basicConstraints on a trust anchor. */
static int check_anchor(X509 *anchor, int index, struct spiffe_why *why)
{
    uint32_t flags = X509_get_extension_flags(anchor);
    if ((X509_get_version(anchor) == X509_VERSION_3 && !(flags & EXFLAG_BCONS)) ||
        ((flags & EXFLAG_BCONS) && !(flags & EXFLAG_CA)) ||
        ((flags & EXFLAG_KUSAGE) && !(X509_get_key_usage(anchor) & KU_KEY_CERT_SIGN))) {
        spiffe_why_set(why, SPIFFE_RULE_SVID_CHAIN, index,
                       "the bundle authority that issued certificate %d is not allowed to sign "
                       "certificates (it needs basicConstraints cA=true, and keyCertSign if it "
                       "has key usage)",
                       index - 1);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* chain_failure explains why X509_verify_cert failed. */
static void chain_failure(X509_STORE_CTX *ctx, const struct spiffe_id *id, struct spiffe_why *why)
{
    int err = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    int td_len = (int)(SPIFFE_SCHEME_PREFIX_LEN + id->td_len);
    if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
        err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
        X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
        char issuer[160] = "?";
        if (cert != NULL) {
            X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof(issuer));
        }
        spiffe_why_set(why, SPIFFE_RULE_SVID_CHAIN, depth,
                       "chain does not verify to the bundle of %.*s: nothing in the bundle or "
                       "the chain is a CA that issued certificate %d (its issuer is \"%s\")",
                       td_len, id->str, depth, issuer);
        return;
    }
    spiffe_why_set(why, SPIFFE_RULE_SVID_CHAIN, depth,
                   "chain does not verify to the bundle of %.*s: %s (at certificate %d)", td_len,
                   id->str, X509_verify_cert_error_string(err), depth);
}

/* verify_path validates the path from |chain|'s leaf through its intermediates to one of
 * |anchors| at |at| (RFC 5280 §6), then checks on the path that was built what BoringSSL leaves
 * to us: the validity window of every certificate, anchor included, with both ends inclusive
 * (§4.1.2.5); no SHA-1 or MD5 signature; an anchor allowed to sign. Intermediates the chain
 * carries but the path does not use are not judged, as in Go's x509.Verify. */
static int verify_path(const STACK_OF(X509) * chain, STACK_OF(X509) * anchors, int64_t at,
                       const struct spiffe_id *id, struct spiffe_why *why)
{
    int rc = WEFT_ECRYPTO;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    if (store == NULL || ctx == NULL || untrusted == NULL) {
        goto out;
    }
    for (size_t i = 0; i < sk_X509_num(anchors); i++) {
        if (!X509_STORE_add_cert(store, sk_X509_value(anchors, i))) {
            goto out;
        }
    }
    for (size_t i = 1; i < sk_X509_num(chain); i++) {
        if (!sk_X509_push(untrusted, sk_X509_value(chain, i))) {
            goto out;
        }
    }
    if (!X509_STORE_CTX_init(ctx, store, sk_X509_value(chain, 0), untrusted)) {
        goto out;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)at);
    /* Bundle certificates are trust anchors whether or not they are self-signed (B12). */
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    X509_VERIFY_PARAM_set_depth(param, SPIFFE_MAX_CHAIN);
    X509_STORE_CTX_set_verify_cb(ctx, skip_time_errors);
    if (X509_verify_cert(ctx) != 1) {
        chain_failure(ctx, id, why);
        rc = WEFT_EINVAL;
        goto out;
    }
    STACK_OF(X509) *path = X509_STORE_CTX_get0_chain(ctx);
    size_t last = sk_X509_num(path) - 1;
    for (size_t i = 0; i <= last; i++) {
        X509 *cert = sk_X509_value(path, i);
        char what[64];
        if (i == last && i > 0) {
            snprintf(what, sizeof(what), "bundle authority");
        } else if (i == 0) {
            snprintf(what, sizeof(what), "leaf certificate");
        } else {
            snprintf(what, sizeof(what), "intermediate %zu of the verified path", i);
        }
        if ((rc = check_window(cert, (int)i, what, at, why)) != WEFT_OK) {
            goto out;
        }
        if (i < last && weak_signature(cert)) {
            spiffe_why_set(why, SPIFFE_RULE_SVID_WEAK_SIGNATURE, (int)i,
                           "%s is signed with SHA-1 or MD5, which no longer protect a signature",
                           what);
            rc = WEFT_EINVAL;
            goto out;
        }
    }
    if (last > 0 && (rc = check_anchor(sk_X509_value(path, last), (int)last, why)) != WEFT_OK) {
        goto out;
    }
    rc = WEFT_OK;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(untrusted);
    return rc;
}

int spiffe_x509svid_verify(struct spiffe_id *out_id, const STACK_OF(X509) * chain,
                           const struct spiffe_bundle_set *bundles, int64_t at,
                           struct spiffe_why *why)
{
    struct spiffe_id id;
    spiffe_id_clear(out_id);
    TRY(spiffe_x509svid_check(&id, chain, why));
    const struct spiffe_bundle *b = spiffe_bundle_set_get0(bundles, &id);
    if (b == NULL || sk_X509_num(b->x509) == 0) {
        size_t td_len;
        const char *td = spiffe_id_td(&id, &td_len);
        spiffe_why_set(why, SPIFFE_RULE_SVID_NO_BUNDLE, 0,
                       "no X.509 authorities for trust domain \"%.*s\" (of %s): the peer is "
                       "untrusted",
                       (int)td_len, td, id.str);
        return WEFT_EINVAL;
    }
    struct spiffe_why local;
    why = why != NULL ? why : &local;
    int rc = verify_path(chain, b->x509, at, &id, why);
    if (rc == WEFT_EINVAL && why->rule == SPIFFE_RULE_SVID_CHAIN && sk_X509_num(b->x509) > 1) {
        /* BoringSSL follows one candidate issuer per name; a bundle in the middle of a root
         * rotation can hold two roots of one name. Try each anchor alone before refusing, as
         * Go's verifier tries every candidate. The first refusal is the one reported. */
        struct spiffe_why first = *why;
        for (size_t i = 0; i < sk_X509_num(b->x509) && rc != WEFT_OK; i++) {
            STACK_OF(X509) *one = sk_X509_new_null();
            if (one == NULL || !sk_X509_push(one, sk_X509_value(b->x509, i))) {
                sk_X509_free(one);
                return WEFT_ECRYPTO;
            }
            rc = verify_path(chain, one, at, &id, why);
            sk_X509_free(one);
        }
        if (rc != WEFT_OK) {
            *why = first;
            rc = WEFT_EINVAL;
        }
    }
    if (rc == WEFT_OK) {
        spiffe_why_clear(why);
        *out_id = id;
    }
    return rc;
}

void spiffe_serial_hex(char out[SPIFFE_SERIAL_HEX_LEN], const X509 *cert)
{
    out[0] = '\0';
    const ASN1_INTEGER *sn = cert != NULL ? X509_get0_serialNumber(cert) : NULL;
    int len = sn != NULL ? ASN1_STRING_length(sn) : 0;
    const uint8_t *data = sn != NULL ? ASN1_STRING_get0_data(sn) : NULL;
    for (int i = 0; i < len && i < SPIFFE_SERIAL_MAX_LEN; i++) {
        snprintf(out + 2 * i, 3, "%02x", data[i]);
    }
}

int spiffe_chain_not_after(int64_t *out, const STACK_OF(X509) * chain)
{
    *out = INT64_MAX;
    for (size_t i = 0; i < sk_X509_num(chain); i++) {
        int64_t not_before, not_after;
        TRY(spiffe_cert_validity(&not_before, &not_after, sk_X509_value(chain, i)));
        *out = not_after < *out ? not_after : *out;
    }
    return WEFT_OK;
}
