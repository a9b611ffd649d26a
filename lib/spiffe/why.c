#include "lib/spiffe/why.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void spiffe_why_clear(struct spiffe_why *why)
{
    if (why != NULL) {
        memset(why, 0, sizeof(*why));
        why->cert_index = -1;
    }
}

void spiffe_why_set(struct spiffe_why *why, enum spiffe_rule rule, int cert_index, const char *fmt,
                    ...)
{
    if (why == NULL) {
        return;
    }
    why->rule = rule;
    why->cert_index = cert_index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
    va_end(ap);
}

const char *spiffe_rule_ref(enum spiffe_rule rule)
{
    static const char *const refs[] = {
        [SPIFFE_RULE_ID_EMPTY] = "A1",
        [SPIFFE_RULE_ID_SCHEME] = "A1",
        [SPIFFE_RULE_ID_TD_EMPTY] = "A2",
        [SPIFFE_RULE_ID_TD_CHAR] = "A3",
        [SPIFFE_RULE_ID_TD_USERINFO] = "A3",
        [SPIFFE_RULE_ID_TD_PORT] = "A3",
        [SPIFFE_RULE_ID_TD_UPPERCASE] = "A4",
        [SPIFFE_RULE_ID_PATH_CHAR] = "A7",
        [SPIFFE_RULE_ID_DOT_SEGMENT] = "A8",
        [SPIFFE_RULE_ID_EMPTY_SEGMENT] = "A9",
        [SPIFFE_RULE_ID_TRAILING_SLASH] = "A9",
        [SPIFFE_RULE_ID_PERCENT] = "A10",
        [SPIFFE_RULE_ID_QUERY_FRAGMENT] = "A11",
        [SPIFFE_RULE_ID_TOO_LONG] = "A12",
        [SPIFFE_RULE_ID_TD_TOO_LONG] = "A12",
        [SPIFFE_RULE_ID_HAS_PATH] = "A14",
        [SPIFFE_RULE_SVID_URI_SAN_COUNT] = "B1",
        [SPIFFE_RULE_SVID_URI_SAN_ID] = "B1",
        [SPIFFE_RULE_SVID_ROOT_PATH] = "B2",
        [SPIFFE_RULE_SVID_SAN_CRITICAL] = "B3",
        [SPIFFE_RULE_SVID_LEAF_CA] = "B4",
        [SPIFFE_RULE_SVID_KU_MISSING] = "B6",
        [SPIFFE_RULE_SVID_KU_CRITICAL] = "B6",
        [SPIFFE_RULE_SVID_KU_DIGSIG] = "B6",
        [SPIFFE_RULE_SVID_KU_CERTSIGN] = "B6",
        [SPIFFE_RULE_SVID_KU_CRLSIGN] = "B6",
        [SPIFFE_RULE_SVID_EKU] = "B7",
        [SPIFFE_RULE_SVID_SIGNER_CA] = "B5",
        [SPIFFE_RULE_SVID_SIGNER_CERTSIGN] = "B5",
        [SPIFFE_RULE_SVID_SIGNER_PATH] = "B5",
        [SPIFFE_RULE_SVID_NOT_YET_VALID] = "B9",
        [SPIFFE_RULE_SVID_EXPIRED] = "B9",
        [SPIFFE_RULE_SVID_NO_BUNDLE] = "B9",
        [SPIFFE_RULE_SVID_CHAIN] = "B9",
        [SPIFFE_RULE_BUNDLE_JSON] = "E1",
        [SPIFFE_RULE_BUNDLE_KEYS] = "E1",
        [SPIFFE_RULE_BUNDLE_SEQUENCE] = "E2",
        [SPIFFE_RULE_BUNDLE_REFRESH] = "E3",
        [SPIFFE_RULE_BUNDLE_X5C] = "E5",
        [SPIFFE_RULE_BUNDLE_KID] = "E6",
        [SPIFFE_RULE_BUNDLE_DUPLICATE_TD] = "E7",
        [SPIFFE_RULE_BUNDLE_MIXED_TD] = "E8",
        [SPIFFE_RULE_JWT_TOO_LONG] = "D9",
        [SPIFFE_RULE_JWT_FORMAT] = "D9",
        [SPIFFE_RULE_JWT_BASE64] = "D9",
        [SPIFFE_RULE_JWT_JSON] = "D9",
        [SPIFFE_RULE_JWT_ALG] = "D9",
        [SPIFFE_RULE_JWT_KID] = "E6",
        [SPIFFE_RULE_JWT_TYP] = "D9",
        [SPIFFE_RULE_JWT_CRIT] = "D9",
        [SPIFFE_RULE_JWT_SUB] = "D9",
        [SPIFFE_RULE_JWT_SUB_PATH] = "D9",
        [SPIFFE_RULE_JWT_AUD] = "D9",
        [SPIFFE_RULE_JWT_AUD_MISMATCH] = "D9",
        [SPIFFE_RULE_JWT_TIME_CLAIM] = "D9",
        [SPIFFE_RULE_JWT_EXPIRED] = "D9",
        [SPIFFE_RULE_JWT_NOT_YET_VALID] = "D9",
        [SPIFFE_RULE_JWT_NO_BUNDLE] = "E8",
        [SPIFFE_RULE_JWT_UNKNOWN_KID] = "E6",
        [SPIFFE_RULE_JWT_KEY] = "E4",
        [SPIFFE_RULE_JWT_ALG_KEY] = "D9",
        [SPIFFE_RULE_JWT_SIGNATURE] = "D9",
    };
    if ((size_t)rule >= sizeof(refs) / sizeof(refs[0]) || refs[rule] == NULL) {
        return "";
    }
    return refs[rule];
}
