/* lib/spiffe/why.h: the reason a SPIFFE check failed, for a person and for a test. */
#ifndef WEFT_LIB_SPIFFE_WHY_H
#define WEFT_LIB_SPIFFE_WHY_H

#include <stddef.h>

/* enum spiffe_rule names each rule of ../shared/reference/spiffe.md that a check enforces. The
 * letters and numbers (A3, B6, ...) are that checklist's, so a log line points at the standard. */
enum spiffe_rule {
    SPIFFE_RULE_NONE = 0,
    /* SPIFFE IDs (SPIFFE-ID.md §2) */
    SPIFFE_RULE_ID_EMPTY,          /* A1 */
    SPIFFE_RULE_ID_SCHEME,         /* A1 */
    SPIFFE_RULE_ID_TD_EMPTY,       /* A2 */
    SPIFFE_RULE_ID_TD_CHAR,        /* A3 */
    SPIFFE_RULE_ID_TD_USERINFO,    /* A3 */
    SPIFFE_RULE_ID_TD_PORT,        /* A3 */
    SPIFFE_RULE_ID_TD_UPPERCASE,   /* A4 */
    SPIFFE_RULE_ID_PATH_CHAR,      /* A7 */
    SPIFFE_RULE_ID_DOT_SEGMENT,    /* A8 */
    SPIFFE_RULE_ID_EMPTY_SEGMENT,  /* A9 */
    SPIFFE_RULE_ID_TRAILING_SLASH, /* A9 */
    SPIFFE_RULE_ID_PERCENT,        /* A10 */
    SPIFFE_RULE_ID_QUERY_FRAGMENT, /* A11 */
    SPIFFE_RULE_ID_TOO_LONG,       /* A12 */
    SPIFFE_RULE_ID_TD_TOO_LONG,    /* A12 */
    SPIFFE_RULE_ID_HAS_PATH,       /* A14: a trust domain name was expected */
    /* X509-SVID (X509-SVID.md) */
    SPIFFE_RULE_SVID_DECODE,          /* the bytes are not a certificate / key at all */
    SPIFFE_RULE_SVID_NO_CERT,         /* no certificate in the input */
    SPIFFE_RULE_SVID_CHAIN_TOO_LONG,  /* over SPIFFE_MAX_CHAIN certificates */
    SPIFFE_RULE_SVID_URI_SAN_COUNT,   /* B1 */
    SPIFFE_RULE_SVID_URI_SAN_ID,      /* B1: the URI SAN is not a valid SPIFFE ID */
    SPIFFE_RULE_SVID_ROOT_PATH,       /* B2 */
    SPIFFE_RULE_SVID_SAN_CRITICAL,    /* B3 */
    SPIFFE_RULE_SVID_LEAF_CA,         /* B4 */
    SPIFFE_RULE_SVID_KU_MISSING,      /* B6 */
    SPIFFE_RULE_SVID_KU_CRITICAL,     /* B6 */
    SPIFFE_RULE_SVID_KU_DIGSIG,       /* B6 */
    SPIFFE_RULE_SVID_KU_CERTSIGN,     /* B6 */
    SPIFFE_RULE_SVID_KU_CRLSIGN,      /* B6 */
    SPIFFE_RULE_SVID_EKU,             /* B7 */
    SPIFFE_RULE_SVID_SIGNER_CA,       /* B5 */
    SPIFFE_RULE_SVID_SIGNER_CERTSIGN, /* B5 */
    SPIFFE_RULE_SVID_SIGNER_PATH,     /* B5 */
    SPIFFE_RULE_SVID_WEAK_SIGNATURE,  /* weft: a certificate of the path is signed with SHA-1/MD5 */
    SPIFFE_RULE_SVID_NOT_YET_VALID,   /* B9 */
    SPIFFE_RULE_SVID_EXPIRED,         /* B9 */
    SPIFFE_RULE_SVID_NO_BUNDLE,       /* B9: no bundle for the leaf's trust domain */
    SPIFFE_RULE_SVID_CHAIN,           /* B9: path validation failed */
    SPIFFE_RULE_SVID_KEY,             /* the private key is unreadable */
    SPIFFE_RULE_SVID_KEY_MISMATCH,    /* the private key does not belong to the leaf */
    /* SPIFFE bundles (SPIFFE_Trust_Domain_and_Bundle.md §4) */
    SPIFFE_RULE_BUNDLE_JSON,         /* E1: not a JSON object / malformed member */
    SPIFFE_RULE_BUNDLE_KEYS,         /* E1: `keys` missing or not an array */
    SPIFFE_RULE_BUNDLE_SEQUENCE,     /* E2 */
    SPIFFE_RULE_BUNDLE_REFRESH,      /* E3 */
    SPIFFE_RULE_BUNDLE_X5C,          /* E5 / B12 */
    SPIFFE_RULE_BUNDLE_KID,          /* E6 */
    SPIFFE_RULE_BUNDLE_PEM,          /* a PEM bundle that does not decode */
    SPIFFE_RULE_BUNDLE_LIMIT,        /* over a size or count limit */
    SPIFFE_RULE_BUNDLE_DUPLICATE_TD, /* E7 */
    SPIFFE_RULE_BUNDLE_MIXED_TD,     /* E8: authorities of another or of no stated trust domain */
    SPIFFE_RULE_MINT,                /* a minting request that would break a rule */
};

/* struct spiffe_why says why a check failed: which rule, on which certificate (0 is the leaf;
 * -1 when no certificate is concerned), at which byte of an ID, and a sentence for a person. */
struct spiffe_why {
    enum spiffe_rule rule;
    int cert_index;
    size_t offset;
    char msg[320];
};

/* spiffe_why_clear sets |why| (which may be NULL) to "no failure". */
void spiffe_why_clear(struct spiffe_why *why);

/* spiffe_why_set records |rule| with a printf-style message in |why| (which may be NULL). */
void spiffe_why_set(struct spiffe_why *why, enum spiffe_rule rule, int cert_index, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* spiffe_rule_ref returns the checklist reference of |rule| ("A3", "B6", ...), or "". */
const char *spiffe_rule_ref(enum spiffe_rule rule);

#endif
