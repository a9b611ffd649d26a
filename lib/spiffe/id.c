/* SPIFFE ID parsing: one pass over the bytes, failing at the first byte that breaks a rule of
 * SPIFFE-ID.md §2. The rules and their letters are in shared/reference/spiffe.md §A. */
#include "lib/spiffe/id.h"

#include <stdio.h>
#include <string.h>

static int fail(struct spiffe_why *why, enum spiffe_rule rule, size_t offset, int rc,
                const char *msg);
static int check_td(const char *s, size_t start, size_t end, struct spiffe_why *why);
static int check_path(const char *s, size_t start, size_t end, struct spiffe_why *why);

static int fail(struct spiffe_why *why, enum spiffe_rule rule, size_t offset, int rc,
                const char *msg)
{
    spiffe_why_set(why, rule, -1, "%s (SPIFFE-ID rule %s, at byte %zu)", msg, spiffe_rule_ref(rule),
                   offset);
    if (why != NULL) {
        why->offset = offset;
    }
    return rc;
}

static int is_td_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static int is_path_char(unsigned char c) { return is_td_char(c) || (c >= 'A' && c <= 'Z'); }

/* check_td checks the trust domain s[start..end) (A2, A3, A4, A12). */
static int check_td(const char *s, size_t start, size_t end, struct spiffe_why *why)
{
    if (start == end) {
        return fail(why, SPIFFE_RULE_ID_TD_EMPTY, start, WEFT_EINVAL, "trust domain is empty");
    }
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_td_char(c)) {
            continue;
        }
        switch (c) {
        case '@':
            return fail(why, SPIFFE_RULE_ID_TD_USERINFO, i, WEFT_EINVAL,
                        "trust domain must not carry userinfo ('@')");
        case ':':
            return fail(why, SPIFFE_RULE_ID_TD_PORT, i, WEFT_EINVAL,
                        "trust domain must not carry a port (':')");
        case '%':
            return fail(why, SPIFFE_RULE_ID_PERCENT, i, WEFT_EINVAL,
                        "percent-encoding is not allowed");
        case '?':
        case '#':
            return fail(why, SPIFFE_RULE_ID_QUERY_FRAGMENT, i, WEFT_EINVAL,
                        "a query or fragment ('?' or '#') is not allowed");
        case '\0':
            return fail(why, SPIFFE_RULE_ID_TD_CHAR, i, WEFT_EINVAL,
                        "trust domain may contain only a-z 0-9 . - _ (found a NUL byte)");
        default:
            break;
        }
        if (c >= 'A' && c <= 'Z') {
            return fail(why, SPIFFE_RULE_ID_TD_UPPERCASE, i, WEFT_EINVAL,
                        "trust domain must be lowercase");
        }
        return fail(why, SPIFFE_RULE_ID_TD_CHAR, i, WEFT_EINVAL,
                    "trust domain may contain only a-z 0-9 . - _");
    }
    if (end - start > SPIFFE_TD_MAX_LEN) {
        return fail(why, SPIFFE_RULE_ID_TD_TOO_LONG, start + SPIFFE_TD_MAX_LEN, WEFT_ELIMIT,
                    "trust domain is longer than 255 bytes");
    }
    return WEFT_OK;
}

/* check_path checks the path s[start..end), which is empty or starts with '/' (A7-A11). */
static int check_path(const char *s, size_t start, size_t end, struct spiffe_why *why)
{
    size_t i = start;
    while (i < end) {
        /* s[i] == '/': a segment starts at i + 1. */
        size_t seg = i + 1, j = seg;
        for (; j < end && s[j] != '/'; j++) {
            unsigned char c = (unsigned char)s[j];
            if (is_path_char(c)) {
                continue;
            }
            if (c == '%') {
                return fail(why, SPIFFE_RULE_ID_PERCENT, j, WEFT_EINVAL,
                            "percent-encoding is not allowed");
            }
            if (c == '?' || c == '#') {
                return fail(why, SPIFFE_RULE_ID_QUERY_FRAGMENT, j, WEFT_EINVAL,
                            "a query or fragment ('?' or '#') is not allowed");
            }
            if (c == '\0') {
                return fail(why, SPIFFE_RULE_ID_PATH_CHAR, j, WEFT_EINVAL,
                            "path segments may contain only a-z A-Z 0-9 . - _ (found a NUL byte)");
            }
            return fail(why, SPIFFE_RULE_ID_PATH_CHAR, j, WEFT_EINVAL,
                        "path segments may contain only a-z A-Z 0-9 . - _");
        }
        size_t seg_len = j - seg;
        if (seg_len == 0) {
            if (j == end) {
                return fail(why, SPIFFE_RULE_ID_TRAILING_SLASH, i, WEFT_EINVAL,
                            "path must not end with '/'");
            }
            return fail(why, SPIFFE_RULE_ID_EMPTY_SEGMENT, i, WEFT_EINVAL,
                        "path must not contain an empty segment ('//')");
        }
        if ((seg_len == 1 && s[seg] == '.') ||
            (seg_len == 2 && s[seg] == '.' && s[seg + 1] == '.')) {
            return fail(why, SPIFFE_RULE_ID_DOT_SEGMENT, seg, WEFT_EINVAL,
                        "path segments '.' and '..' are not allowed");
        }
        i = j;
    }
    return WEFT_OK;
}

void spiffe_id_clear(struct spiffe_id *id)
{
    id->len = id->td_len = 0;
    id->str[0] = '\0';
}

int spiffe_id_parse(struct spiffe_id *out, const char *s, size_t len, struct spiffe_why *why)
{
    spiffe_id_clear(out);
    spiffe_why_clear(why);
    if (len == 0) {
        return fail(why, SPIFFE_RULE_ID_EMPTY, 0, WEFT_EINVAL, "SPIFFE ID is empty");
    }
    if (len > SPIFFE_ID_MAX_LEN) {
        return fail(why, SPIFFE_RULE_ID_TOO_LONG, SPIFFE_ID_MAX_LEN, WEFT_ELIMIT,
                    "SPIFFE ID is longer than 2048 bytes");
    }
    if (len < SPIFFE_SCHEME_PREFIX_LEN ||
        memcmp(s, SPIFFE_SCHEME_PREFIX, SPIFFE_SCHEME_PREFIX_LEN) != 0) {
        /* A1 and A4: the exact, lowercase prefix; nothing else is a SPIFFE ID. */
        return fail(why, SPIFFE_RULE_ID_SCHEME, 0, WEFT_EINVAL,
                    "SPIFFE ID must start with \"spiffe://\" (lowercase)");
    }
    size_t td_start = SPIFFE_SCHEME_PREFIX_LEN, td_end = td_start;
    while (td_end < len && s[td_end] != '/') {
        td_end++;
    }
    TRY(check_td(s, td_start, td_end, why));
    TRY(check_path(s, td_end, len, why));
    memcpy(out->str, s, len);
    out->str[len] = '\0';
    out->len = len;
    out->td_len = td_end - td_start;
    return WEFT_OK;
}

int spiffe_id_from_td_path(struct spiffe_id *out, const char *td, const char *path,
                           struct spiffe_why *why)
{
    char buf[SPIFFE_ID_MAX_LEN + 2];
    int n = snprintf(buf, sizeof(buf), "%s%s%s", SPIFFE_SCHEME_PREFIX, td, path);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        spiffe_id_clear(out);
        return fail(why, SPIFFE_RULE_ID_TOO_LONG, SPIFFE_ID_MAX_LEN, WEFT_ELIMIT,
                    "SPIFFE ID is longer than 2048 bytes");
    }
    return spiffe_id_parse(out, buf, (size_t)n, why);
}

int spiffe_td_parse(struct spiffe_id *out, const char *s, size_t len, struct spiffe_why *why)
{
    int rc;
    if (len >= SPIFFE_SCHEME_PREFIX_LEN && memcmp(s, SPIFFE_SCHEME_PREFIX, 9) == 0) {
        rc = spiffe_id_parse(out, s, len, why);
    } else {
        /* A bare name is parsed as spiffe://<name>. A '/' in it is a character no trust domain
         * holds (not the start of a path), and offsets in |why| point into the bare name. */
        const char *slash = memchr(s, '/', len);
        spiffe_id_clear(out);
        spiffe_why_clear(why);
        if (slash != NULL) {
            return fail(why, SPIFFE_RULE_ID_TD_CHAR, (size_t)(slash - s), WEFT_EINVAL,
                        "trust domain may contain only a-z 0-9 . - _");
        }
        if (len > SPIFFE_ID_MAX_LEN - SPIFFE_SCHEME_PREFIX_LEN) {
            return fail(why, SPIFFE_RULE_ID_TD_TOO_LONG, SPIFFE_TD_MAX_LEN, WEFT_ELIMIT,
                        "trust domain is longer than 255 bytes");
        }
        char buf[SPIFFE_ID_MAX_LEN];
        memcpy(buf, SPIFFE_SCHEME_PREFIX, SPIFFE_SCHEME_PREFIX_LEN);
        memcpy(buf + SPIFFE_SCHEME_PREFIX_LEN, s, len);
        rc = spiffe_id_parse(out, buf, SPIFFE_SCHEME_PREFIX_LEN + len, why);
        if (rc != WEFT_OK && why != NULL && why->offset >= SPIFFE_SCHEME_PREFIX_LEN) {
            why->offset -= SPIFFE_SCHEME_PREFIX_LEN;
        }
    }
    TRY(rc);
    if (!spiffe_id_is_td(out)) {
        size_t at = SPIFFE_SCHEME_PREFIX_LEN + out->td_len;
        spiffe_id_clear(out);
        return fail(why, SPIFFE_RULE_ID_HAS_PATH, at, WEFT_EINVAL,
                    "a trust domain was expected, but the ID has a path");
    }
    return WEFT_OK;
}

const char *spiffe_id_td(const struct spiffe_id *id, size_t *out_len)
{
    *out_len = id->td_len;
    return id->str + SPIFFE_SCHEME_PREFIX_LEN;
}

const char *spiffe_id_path(const struct spiffe_id *id)
{
    return id->len == 0 ? id->str : id->str + SPIFFE_SCHEME_PREFIX_LEN + id->td_len;
}

bool spiffe_id_is_td(const struct spiffe_id *id)
{
    return id->len == SPIFFE_SCHEME_PREFIX_LEN + id->td_len;
}

bool spiffe_id_equal(const struct spiffe_id *a, const struct spiffe_id *b)
{
    return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

bool spiffe_id_same_td(const struct spiffe_id *a, const struct spiffe_id *b)
{
    return a->td_len == b->td_len &&
           memcmp(a->str, b->str, SPIFFE_SCHEME_PREFIX_LEN + a->td_len) == 0;
}

void spiffe_id_td_id(struct spiffe_id *out, const struct spiffe_id *id)
{
    size_t n = SPIFFE_SCHEME_PREFIX_LEN + id->td_len;
    memmove(out->str, id->str, n);
    out->str[n] = '\0';
    out->len = n;
    out->td_len = id->td_len;
}
