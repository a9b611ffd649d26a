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
    /* JWT-SVIDs (JWT-SVID.md; D9 is the profile, E6/E8 how a validator finds the key) */
    SPIFFE_RULE_JWT_TOO_LONG,      /* D9: over SPIFFE_JWT_MAX_TOKEN bytes */
    SPIFFE_RULE_JWT_FORMAT,        /* D9: not three non-empty parts (a JWE has five) */
    SPIFFE_RULE_JWT_BASE64,        /* D9: a part is not unpadded, canonical base64url */
    SPIFFE_RULE_JWT_JSON,          /* D9: header or claims not one JSON object, or a key twice */
    SPIFFE_RULE_JWT_ALG,           /* D9, JWT-SVID.md §2.1: alg missing or not accepted */
    SPIFFE_RULE_JWT_KID,           /* E6, JWT-SVID.md §2.2: kid missing or empty */
    SPIFFE_RULE_JWT_TYP,           /* JWT-SVID.md §2.3: typ other than "JWT" or "JOSE" */
    SPIFFE_RULE_JWT_CRIT,          /* RFC 7515 §4.1.11: no extension is understood */
    SPIFFE_RULE_JWT_SUB,           /* JWT-SVID.md §3.1: sub missing or not a string */
    SPIFFE_RULE_JWT_SUB_PATH,      /* JWT-SVID.md §3.1: sub is a trust domain ID (no path) */
    SPIFFE_RULE_JWT_AUD,           /* JWT-SVID.md §3.2: aud missing or malformed */
    SPIFFE_RULE_JWT_AUD_MISMATCH,  /* JWT-SVID.md §3.2: the audience is not in aud */
    SPIFFE_RULE_JWT_TIME_CLAIM,    /* JWT-SVID.md §3.3: exp missing; exp/nbf/iat not a number */
    SPIFFE_RULE_JWT_EXPIRED,       /* JWT-SVID.md §3.3: now >= exp */
    SPIFFE_RULE_JWT_NOT_YET_VALID, /* RFC 7519 §4.1.5: now < nbf */
    SPIFFE_RULE_JWT_NO_BUNDLE,     /* E8: no bundle for sub's trust domain */
    SPIFFE_RULE_JWT_UNKNOWN_KID,   /* E6: that bundle has no jwt-svid JWK with the kid */
    SPIFFE_RULE_JWT_KEY,           /* E4: the JWK's key is unusable (params, curve, size) */
    SPIFFE_RULE_JWT_ALG_KEY,       /* D9: alg does not suit the JWK's key type or curve */
    SPIFFE_RULE_JWT_SIGNATURE,     /* D9, JWT-SVID.md §4: the signature does not verify */
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
