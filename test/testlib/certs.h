/* test/testlib/certs.h: X.509 fixtures minted at test time (STYLE.md §10).
 *
 * Two kinds of helper:
 *  - testlib_mint_*: a root, an intermediate and a leaf made with lib/spiffe's own minting API,
 *    so a test sees exactly what weft issues;
 *  - testlib_cert_build: a certificate built field by field with BoringSSL's X509 API, from a
 *    struct testlib_cert_spec that a test (or testlib_spec_break) bends to break one SPIFFE rule
 *    at a time. It is signed by the issuer it is given, so apart from the broken rule a chain
 *    of such certificates verifies.
 *
 * Nothing here reads the clock: certificates are valid around TESTLIB_NOW, and tests check
 * time-dependent things at that instant. Every function returns WEFT_OK or a WEFT_E* code and
 * never aborts, so a test asserts on it. */
#ifndef WEFT_TEST_TESTLIB_CERTS_H
#define WEFT_TEST_TESTLIB_CERTS_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"

/* TESTLIB_NOW is "now" for every test: 2023-11-14T22:13:20Z. */
#define TESTLIB_NOW INT64_C(1700000000)
#define TESTLIB_HOUR INT64_C(3600)
#define TESTLIB_DAY INT64_C(86400)

#define TESTLIB_TD "example.org"
#define TESTLIB_TD_ID "spiffe://example.org"
#define TESTLIB_LEAF_ID "spiffe://example.org/workload"

/* struct testlib_cred is a certificate and its private key, both owned. */
struct testlib_cred {
    X509 *cert;
    EVP_PKEY *key;
};

/* testlib_cred_cleanup frees both halves and zeroes |c|; a zeroed |c| is fine. */
void testlib_cred_cleanup(struct testlib_cred *c);

/* testlib_mint_root makes a new key of |type| and a self-signed root for the trust domain |td|
 * (a bare name such as "example.org") with spiffe_mint_root, valid from |not_before| for
 * |ttl_s| seconds. On failure |out| stays zeroed. */
WEFT_MUST_USE int testlib_mint_root(struct testlib_cred *out, const char *td,
                                    enum spiffe_key_type type, int64_t not_before, int64_t ttl_s);

/* testlib_mint_intermediate makes a signing CA for |td| under |issuer| with
 * spiffe_mint_signing_ca. */
WEFT_MUST_USE int testlib_mint_intermediate(struct testlib_cred *out,
                                            const struct testlib_cred *issuer, const char *td,
                                            enum spiffe_key_type type, int64_t not_before,
                                            int64_t ttl_s);

/* testlib_mint_leaf makes a leaf SVID for the SPIFFE ID |id| under |issuer| with
 * spiffe_mint_leaf. */
WEFT_MUST_USE int testlib_mint_leaf(struct testlib_cred *out, const struct testlib_cred *issuer,
                                    const char *id, enum spiffe_key_type type, int64_t not_before,
                                    int64_t ttl_s);

/* struct testlib_pki is a minted root -> (intermediate ->) leaf for TESTLIB_TD, every
 * certificate valid from TESTLIB_NOW - 1 hour for a day, the leaf's ID TESTLIB_LEAF_ID. */
struct testlib_pki {
    struct testlib_cred root;
    struct testlib_cred inter; /* zeroed when minted without an intermediate */
    struct testlib_cred leaf;
};

/* testlib_pki_mint fills |pki|, every key of |type|; |with_intermediate| puts a signing CA
 * between the root and the leaf. On failure everything is freed and |pki| is zeroed. */
WEFT_MUST_USE int testlib_pki_mint(struct testlib_pki *pki, enum spiffe_key_type type,
                                   bool with_intermediate);

/* testlib_pki_cleanup frees everything in |pki|. */
void testlib_pki_cleanup(struct testlib_pki *pki);

/* testlib_pki_chain returns a new stack holding references to the leaf and, if there is one,
 * the intermediate: the chain an SVID carries. Free it with sk_X509_pop_free(.., X509_free). */
STACK_OF(X509) * testlib_pki_chain(const struct testlib_pki *pki);

/* testlib_chain returns a new stack holding a reference to each of the |num_certs| certificates
 * of |certs|, in order (leaf first). Free it with sk_X509_pop_free(.., X509_free). */
STACK_OF(X509) * testlib_chain(X509 *const *certs, size_t num_certs);

/* testlib_bundle_set_add puts into |set| a bundle for the trust domain |td| (a bare name)
 * holding |root| (a new reference). */
WEFT_MUST_USE int testlib_bundle_set_add(struct spiffe_bundle_set *set, const char *td, X509 *root);

/* --- certificates built field by field ----------------------------------------------------- */

#define TESTLIB_MAX_URIS 4

enum testlib_bc {
    TESTLIB_BC_ABSENT = 0, /* no basicConstraints extension */
    TESTLIB_BC_LEAF,       /* critical, cA=false */
    TESTLIB_BC_CA,         /* critical, cA=true */
};

/* struct testlib_cert_spec describes one certificate. The strings are borrowed: they must live
 * until testlib_cert_build returns. */
struct testlib_cert_spec {
    const char *subject_cn;             /* NULL: an empty subject */
    const char *uris[TESTLIB_MAX_URIS]; /* URI SANs, in order, up to the first NULL */
    const char *dns;                    /* also a DNS SAN, or NULL */
    bool san_critical;
    bool san_split; /* each URI SAN in a subjectAltName of its own */
    enum testlib_bc basic_constraints;
    bool has_key_usage;
    uint32_t key_usage; /* KU_* bits of <openssl/x509v3.h> */
    bool key_usage_critical;
    bool has_eku;
    bool eku_server_auth;
    bool eku_client_auth;
    int64_t not_before; /* seconds since the epoch */
    int64_t not_after;
    bool sha1_signature;  /* signed with SHA-1 instead of SHA-256 (EC and RSA issuers) */
    bool negative_serial; /* a serial number below zero (RFC 5280 §4.1.2.2 forbids it) */
};

/* testlib_spec_leaf describes the leaf weft mints for |id| (spiffe_mint_leaf): empty subject,
 * critical URI SAN, critical cA=false, critical KU digitalSignature, EKU serverAuth+clientAuth,
 * valid from TESTLIB_NOW - 1 hour to TESTLIB_NOW + 1 day. |id| is borrowed. */
void testlib_spec_leaf(struct testlib_cert_spec *spec, const char *id);

/* testlib_spec_signing_ca describes a signing CA for the trust domain ID |td_id|: a subject,
 * a non-critical URI SAN |td_id|, critical cA=true, critical KU keyCertSign+cRLSign, no EKU,
 * the same validity as testlib_spec_leaf. */
void testlib_spec_signing_ca(struct testlib_cert_spec *spec, const char *td_id);

/* enum testlib_defect names one broken rule. The leaf defects apply to a testlib_spec_leaf
 * spec, the signer defects to a testlib_spec_signing_ca spec. Defects that rewrite the URI SAN
 * use the TESTLIB_TD trust domain. */
enum testlib_defect {
    TESTLIB_DEFECT_NONE = 0,
    /* leaf */
    TESTLIB_DEFECT_NO_URI_SAN,         /* B1: only a DNS SAN */
    TESTLIB_DEFECT_NO_SAN_EXTENSION,   /* B1: no subjectAltName at all (and a subject) */
    TESTLIB_DEFECT_TWO_URI_SANS,       /* B1: the SPIFFE ID and an https URI */
    TESTLIB_DEFECT_TWO_SAN_EXTENSIONS, /* B1: two subjectAltName extensions, one URI each */
    TESTLIB_DEFECT_URI_NOT_SPIFFE,     /* B1: the one URI is https:// */
    TESTLIB_DEFECT_ROOT_PATH_ID,       /* B2: spiffe://example.org */
    TESTLIB_DEFECT_LEAF_CA,            /* B4: cA=true */
    TESTLIB_DEFECT_KU_MISSING,         /* B6 */
    TESTLIB_DEFECT_KU_NOT_CRITICAL,    /* B6 */
    TESTLIB_DEFECT_KU_NO_DIGSIG,       /* B6: keyEncipherment alone */
    TESTLIB_DEFECT_KU_CERT_SIGN,       /* B6: digitalSignature + keyCertSign */
    TESTLIB_DEFECT_KU_CRL_SIGN,        /* B6: digitalSignature + cRLSign */
    TESTLIB_DEFECT_EKU_SERVER_ONLY,    /* B7 */
    TESTLIB_DEFECT_EKU_CLIENT_ONLY,    /* B7 */
    TESTLIB_DEFECT_SAN_NOT_CRITICAL,   /* B3: empty subject, non-critical SAN */
    /* signing certificate (intermediate) */
    TESTLIB_DEFECT_SIGNER_NOT_CA,          /* B5: cA=false */
    TESTLIB_DEFECT_SIGNER_NO_BC,           /* B5: no basicConstraints */
    TESTLIB_DEFECT_SIGNER_NO_CERT_SIGN,    /* B5: KU cRLSign alone */
    TESTLIB_DEFECT_SIGNER_KU_NOT_CRITICAL, /* B6 */
    TESTLIB_DEFECT_SIGNER_WITH_PATH,       /* B5: spiffe://example.org/ca */
};

/* testlib_spec_break changes |spec| so that it breaks exactly |defect|. */
void testlib_spec_break(struct testlib_cert_spec *spec, enum testlib_defect defect);

/* testlib_defect_name returns a name for messages ("ku-missing", ...). */
const char *testlib_defect_name(enum testlib_defect defect);

/* testlib_cert_build makes a version 3 certificate for the public half of |subject_key| as
 * |spec| says, with a random serial. It is signed by |issuer_key| and names |issuer|'s subject
 * as its issuer; with |issuer| NULL it is self-signed by |subject_key|. The caller owns |*out|. */
WEFT_MUST_USE int testlib_cert_build(X509 **out, const struct testlib_cert_spec *spec,
                                     EVP_PKEY *subject_key, const X509 *issuer,
                                     EVP_PKEY *issuer_key);

/* testlib_der returns |cert|'s DER in a buffer the caller frees with OPENSSL_free, or NULL. */
uint8_t *testlib_der(const X509 *cert, size_t *out_len);

#endif
