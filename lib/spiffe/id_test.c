/* lib/spiffe/id_test.c: the contract of spiffe_id_parse and its helpers, rule by rule
 * (shared/reference/spiffe.md §A). Each rejected input names the rule and the byte at which the
 * parser must stop: the first byte that breaks a rule. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "lib/spiffe/id.h"

struct reject_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    enum spiffe_rule rule;
    size_t offset;
};

static size_t case_len(const char *in, size_t len) { return len != 0 ? len : strlen(in); }

/* expect_parse_rejects checks one rejected input: the code, the rule, the offset, a cleared
 * output, and a message that names the rule's checklist reference. */
static void expect_parse_rejects(const struct reject_case *c, int want_rc)
{
    struct spiffe_id id;
    struct spiffe_why why;
    memset(&id, 'x', sizeof(id)); /* so that "left empty" is something the parser did */
    int rc = spiffe_id_parse(&id, c->in, case_len(c->in, c->len), &why);
    cr_assert_eq(rc, want_rc, "%s: rc %d, want %d", c->in, rc, want_rc);
    cr_assert_eq(why.rule, c->rule, "%s: rule %d (%s), want %d", c->in, why.rule, why.msg, c->rule);
    cr_assert_eq(why.offset, c->offset, "%s: offset %zu, want %zu (%s)", c->in, why.offset,
                 c->offset, why.msg);
    cr_assert_eq(why.cert_index, -1);
    cr_assert_eq(id.len, 0, "%s: output not left empty", c->in);
    cr_assert_eq(id.td_len, 0);
    cr_assert_eq(id.str[0], '\0');
    const char *ref = spiffe_rule_ref(c->rule);
    cr_assert_neq(ref[0], '\0', "rule %d has no checklist reference", c->rule);
    cr_assert_not_null(strstr(why.msg, ref), "%s: message \"%s\" does not name rule %s", c->in,
                       why.msg, ref);
}

static void expect_all_rejected(const struct reject_case *cases, size_t num_cases)
{
    for (size_t i = 0; i < num_cases; i++) {
        expect_parse_rejects(&cases[i], WEFT_EINVAL);
    }
}

/* expect_parses checks that |in| is a valid ID with a |td_len|-byte trust domain. */
static void expect_parses(const char *in, size_t td_len)
{
    struct spiffe_id id;
    struct spiffe_why why;
    int rc = spiffe_id_parse(&id, in, strlen(in), &why);
    cr_assert_eq(rc, WEFT_OK, "%s: rejected: %s", in, why.msg);
    cr_assert_eq(why.rule, SPIFFE_RULE_NONE);
    cr_assert_eq(id.len, strlen(in));
    cr_assert_eq(id.td_len, td_len, "%s: td_len %zu, want %zu", in, id.td_len, td_len);
    cr_assert_str_eq(id.str, in);
}

/* A1: the exact prefix spiffe://, nothing else. */
Test(spiffe_id, a1_requires_exact_scheme_prefix)
{
    static const struct reject_case cases[] = {
        {"spiffe:/x", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"spiffe:x", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"//x/y", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"http://example.org/x", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"https://example.org/x", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"xspiffe://example.org/x", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {" spiffe://example.org/x", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"spiffe", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"spiffe:", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"example.org/x", 0, SPIFFE_RULE_ID_SCHEME, 0},
    };
    expect_all_rejected(cases, nitems(cases));
    expect_parses("spiffe://example.org/x", 11);
}

Test(spiffe_id, a1_rejects_empty_input)
{
    static const struct reject_case empty = {"", 0, SPIFFE_RULE_ID_EMPTY, 0};
    struct spiffe_id id;
    struct spiffe_why why;
    /* len 0 with a non-empty buffer: the length is what counts. */
    cr_assert_eq(spiffe_id_parse(&id, "spiffe://example.org", 0, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_EMPTY);
    cr_assert_eq(spiffe_id_parse(&id, "", 0, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, empty.rule);
    cr_assert_eq(why.offset, empty.offset);
}

/* A2: the trust domain must not be empty. */
Test(spiffe_id, a2_rejects_empty_trust_domain)
{
    static const struct reject_case cases[] = {
        {"spiffe://", 0, SPIFFE_RULE_ID_TD_EMPTY, 9},
        {"spiffe:///", 0, SPIFFE_RULE_ID_TD_EMPTY, 9},
        {"spiffe:///path", 0, SPIFFE_RULE_ID_TD_EMPTY, 9},
    };
    expect_all_rejected(cases, nitems(cases));
}

/* A3: userinfo, ports, IPv6 literals, percent-encoding and every other character. */
Test(spiffe_id, a3_rejects_userinfo)
{
    static const struct reject_case cases[] = {
        {"spiffe://user@example.org/p", 0, SPIFFE_RULE_ID_TD_USERINFO, 13},
        {"spiffe://@example.org/p", 0, SPIFFE_RULE_ID_TD_USERINFO, 9}, /* empty userinfo */
        {"spiffe://@/p", 0, SPIFFE_RULE_ID_TD_USERINFO, 9},
        /* "u:p@": the first byte that breaks a rule is the ':' */
        {"spiffe://u:p@example.org/p", 0, SPIFFE_RULE_ID_TD_PORT, 10},
    };
    expect_all_rejected(cases, nitems(cases));
}

Test(spiffe_id, a3_rejects_port)
{
    static const struct reject_case cases[] = {
        {"spiffe://example.org:8080/p", 0, SPIFFE_RULE_ID_TD_PORT, 20},
        {"spiffe://example.org:/p", 0, SPIFFE_RULE_ID_TD_PORT, 20}, /* empty port */
        {"spiffe://example.org:", 0, SPIFFE_RULE_ID_TD_PORT, 20},
        {"spiffe://td:/p", 0, SPIFFE_RULE_ID_TD_PORT, 11},
    };
    expect_all_rejected(cases, nitems(cases));
}

Test(spiffe_id, a3_rejects_ip_literal_percent_and_other_characters)
{
    static const struct reject_case cases[] = {
        {"spiffe://[::1]/p", 0, SPIFFE_RULE_ID_TD_CHAR, 9},
        {"spiffe://[::1]", 0, SPIFFE_RULE_ID_TD_CHAR, 9},
        {"spiffe://example%2eorg/p", 0, SPIFFE_RULE_ID_PERCENT, 16},
        {"spiffe://%65xample.org/p", 0, SPIFFE_RULE_ID_PERCENT, 9},
        {"spiffe://exa mple.org/p", 0, SPIFFE_RULE_ID_TD_CHAR, 12},
        {"spiffe://ex\xc3\xa4mple.org/p", 0, SPIFFE_RULE_ID_TD_CHAR, 11}, /* non-ASCII */
        {"spiffe://exam+ple.org/p", 0, SPIFFE_RULE_ID_TD_CHAR, 13},
        {"spiffe://example!.org/p", 0, SPIFFE_RULE_ID_TD_CHAR, 16},
        {"spiffe://example.org\\p", 0, SPIFFE_RULE_ID_TD_CHAR, 20},
        {"spiffe://exa~mple.org", 0, SPIFFE_RULE_ID_TD_CHAR, 12},
        {"spiffe://example.org\t", 0, SPIFFE_RULE_ID_TD_CHAR, 20},
    };
    expect_all_rejected(cases, nitems(cases));
    expect_parses("spiffe://a-b_c.0123456789.xyz/p", 20);
}

Test(spiffe_id, a3_rejects_nul_byte_inside)
{
    static const char in_td[] = "spiffe://exa\0mple.org/p";
    static const char in_path[] = "spiffe://example.org/a\0b";
    static const char in_first[] = "spiffe://\0";
    const struct reject_case cases[] = {
        {in_td, sizeof(in_td) - 1, SPIFFE_RULE_ID_TD_CHAR, 12},
        {in_path, sizeof(in_path) - 1, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {in_first, sizeof(in_first) - 1, SPIFFE_RULE_ID_TD_CHAR, 9},
    };
    expect_all_rejected(cases, nitems(cases));
}

/* A4: the trust domain is lowercase; the path keeps its case. */
Test(spiffe_id, a4_rejects_uppercase_trust_domain)
{
    static const struct reject_case cases[] = {
        {"spiffe://Example.org/p", 0, SPIFFE_RULE_ID_TD_UPPERCASE, 9},
        {"spiffe://example.ORG", 0, SPIFFE_RULE_ID_TD_UPPERCASE, 17},
        {"spiffe://EXAMPLE.ORG/p", 0, SPIFFE_RULE_ID_TD_UPPERCASE, 9},
        /* an uppercase scheme is not the prefix spiffe:// at all */
        {"SPIFFE://example.org/p", 0, SPIFFE_RULE_ID_SCHEME, 0},
        {"Spiffe://example.org/p", 0, SPIFFE_RULE_ID_SCHEME, 0},
    };
    expect_all_rejected(cases, nitems(cases));
}

Test(spiffe_id, a4_a7_accepts_uppercase_path)
{
    expect_parses("spiffe://example.org/Workload/ABC", 11);
    struct spiffe_id lower, upper;
    cr_assert_eq(spiffe_id_parse(&lower, "spiffe://example.org/a", 22, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&upper, "spiffe://example.org/A", 22, NULL), WEFT_OK);
    cr_assert(!spiffe_id_equal(&lower, &upper), "A7: the path is case-sensitive");
}

/* A5: no DNS or IP validation of the trust domain. */
Test(spiffe_id, a5_accepts_ipv4_and_odd_dns_shapes)
{
    expect_parses("spiffe://1.2.3.4/p", 7);
    expect_parses("spiffe://1.2.3.4", 7);
    expect_parses("spiffe://example..org/p", 12);
    expect_parses("spiffe://.example.org/p", 12);
    expect_parses("spiffe://example.org./p", 12);
    expect_parses("spiffe://-x.org/p", 6);
    expect_parses("spiffe://_/p", 1);
    expect_parses("spiffe://999.999.999.999/p", 15);
    expect_parses("spiffe://localhost", 9);
}

/* A6: no path is the trust domain's own ID. */
Test(spiffe_id, a6_accepts_trust_domain_only_id)
{
    struct spiffe_id id;
    cr_assert_eq(spiffe_id_parse(&id, "spiffe://example.org", 20, NULL), WEFT_OK);
    cr_assert(spiffe_id_is_td(&id));
    cr_assert_str_eq(spiffe_id_path(&id), "");
    cr_assert_eq(spiffe_id_parse(&id, "spiffe://example.org/a", 22, NULL), WEFT_OK);
    cr_assert(!spiffe_id_is_td(&id));
    cr_assert_str_eq(spiffe_id_path(&id), "/a");
}

/* A7: path segments hold only a-z A-Z 0-9 . - _ */
Test(spiffe_id, a7_rejects_path_characters)
{
    static const struct reject_case cases[] = {
        {"spiffe://example.org/a b", 0, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {"spiffe://example.org/a+b", 0, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {"spiffe://example.org/a:b", 0, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {"spiffe://example.org/a@b", 0, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {"spiffe://example.org/a~b", 0, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {"spiffe://example.org/a\\b", 0, SPIFFE_RULE_ID_PATH_CHAR, 22},
        {"spiffe://example.org/\xc3\xa4", 0, SPIFFE_RULE_ID_PATH_CHAR, 21},
        {"spiffe://example.org/ok/b!d", 0, SPIFFE_RULE_ID_PATH_CHAR, 25},
    };
    expect_all_rejected(cases, nitems(cases));
    expect_parses("spiffe://example.org/aZ09.-_/ns/default/sa/web-1", 11);
}

/* A8: "." and ".." segments are forbidden, other dot runs are plain names. */
Test(spiffe_id, a8_rejects_dot_segments)
{
    static const struct reject_case cases[] = {
        {"spiffe://example.org/.", 0, SPIFFE_RULE_ID_DOT_SEGMENT, 21},
        {"spiffe://example.org/..", 0, SPIFFE_RULE_ID_DOT_SEGMENT, 21},
        {"spiffe://example.org/a/./b", 0, SPIFFE_RULE_ID_DOT_SEGMENT, 23},
        {"spiffe://example.org/a/../b", 0, SPIFFE_RULE_ID_DOT_SEGMENT, 23},
        {"spiffe://example.org/a/..", 0, SPIFFE_RULE_ID_DOT_SEGMENT, 23},
        {"spiffe://example.org/./a", 0, SPIFFE_RULE_ID_DOT_SEGMENT, 21},
    };
    expect_all_rejected(cases, nitems(cases));
}

Test(spiffe_id, a8_accepts_other_dot_runs)
{
    expect_parses("spiffe://example.org/.a", 11);
    expect_parses("spiffe://example.org/..a", 11);
    expect_parses("spiffe://example.org/...", 11);
    expect_parses("spiffe://example.org/a.", 11);
    expect_parses("spiffe://example.org/a..", 11);
    expect_parses("spiffe://example.org/x/..../y", 11);
}

/* A9: no trailing slash, no empty segment. */
Test(spiffe_id, a9_rejects_trailing_slash_and_empty_segments)
{
    static const struct reject_case cases[] = {
        {"spiffe://example.org/", 0, SPIFFE_RULE_ID_TRAILING_SLASH, 20},
        {"spiffe://example.org/a/", 0, SPIFFE_RULE_ID_TRAILING_SLASH, 22},
        {"spiffe://example.org/a/b/", 0, SPIFFE_RULE_ID_TRAILING_SLASH, 24},
        {"spiffe://example.org//a", 0, SPIFFE_RULE_ID_EMPTY_SEGMENT, 20},
        {"spiffe://example.org/a//b", 0, SPIFFE_RULE_ID_EMPTY_SEGMENT, 22},
        {"spiffe://example.org//", 0, SPIFFE_RULE_ID_EMPTY_SEGMENT, 20},
    };
    expect_all_rejected(cases, nitems(cases));
}

/* A10: percent-encoding is rejected, never decoded. */
Test(spiffe_id, a10_rejects_percent_encoding_in_path)
{
    static const struct reject_case cases[] = {
        {"spiffe://example.org/%61", 0, SPIFFE_RULE_ID_PERCENT, 21},
        {"spiffe://example.org/a%2Fb", 0, SPIFFE_RULE_ID_PERCENT, 22},
        {"spiffe://example.org/%2e", 0, SPIFFE_RULE_ID_PERCENT, 21},
        {"spiffe://example.org/a%", 0, SPIFFE_RULE_ID_PERCENT, 22},
    };
    expect_all_rejected(cases, nitems(cases));
}

/* A11: no query, no fragment, not even empty ones. */
Test(spiffe_id, a11_rejects_query_and_fragment)
{
    static const struct reject_case cases[] = {
        {"spiffe://example.org/p?", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 22},
        {"spiffe://example.org/p?x=1", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 22},
        {"spiffe://example.org/p#", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 22},
        {"spiffe://example.org/p#frag", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 22},
        {"spiffe://example.org?", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 20},
        {"spiffe://example.org#x", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 20},
        {"spiffe://example.org/?", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 21},
    };
    expect_all_rejected(cases, nitems(cases));
}

/* make_id returns a malloc'ed "spiffe://<td_len x 'a'><path of 'b's>" of |total| bytes (or just
 * the trust domain when |total| leaves no room for a path). */
static char *make_id(size_t td_len, size_t total)
{
    char *s = malloc(total + 1);
    cr_assert_not_null(s);
    memcpy(s, "spiffe://", 9);
    memset(s + 9, 'a', td_len);
    size_t n = 9 + td_len;
    if (n < total) {
        s[n++] = '/';
        memset(s + n, 'b', total - n);
    }
    s[total] = '\0';
    return s;
}

/* A12: 2048 bytes in all, 255 for the trust domain. */
Test(spiffe_id, a12_accepts_2048_bytes_and_rejects_2049)
{
    char *ok = make_id(11, SPIFFE_ID_MAX_LEN);
    struct spiffe_id id;
    struct spiffe_why why;
    cr_assert_eq(spiffe_id_parse(&id, ok, SPIFFE_ID_MAX_LEN, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(id.len, 2048);
    cr_assert_eq(id.str[2048], '\0');
    free(ok);

    char *too_long = make_id(11, SPIFFE_ID_MAX_LEN + 1);
    struct reject_case c = {too_long, SPIFFE_ID_MAX_LEN + 1, SPIFFE_RULE_ID_TOO_LONG, 2048};
    expect_parse_rejects(&c, WEFT_ELIMIT);
    free(too_long);
}

Test(spiffe_id, a12_accepts_255_byte_trust_domain_and_rejects_256)
{
    char *ok = make_id(255, 9 + 255 + 2);
    expect_parses(ok, 255);
    free(ok);
    char *ok_td_only = make_id(255, 9 + 255);
    expect_parses(ok_td_only, 255);
    free(ok_td_only);

    char *too_long = make_id(256, 9 + 256 + 2);
    struct reject_case c = {too_long, 0, SPIFFE_RULE_ID_TD_TOO_LONG, 9 + 255};
    expect_parse_rejects(&c, WEFT_ELIMIT);
    free(too_long);
}

Test(spiffe_id, why_may_be_null)
{
    struct spiffe_id id;
    cr_assert_eq(spiffe_id_parse(&id, "spiffe://example.org/a", 22, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&id, "spiffe://Example.org/a", 22, NULL), WEFT_EINVAL);
    cr_assert_eq(id.len, 0);
}

Test(spiffe_id, parse_copies_exactly_len_bytes)
{
    /* The ID is the first 22 bytes; what follows is not part of it. */
    const char *s = "spiffe://example.org/a/b";
    struct spiffe_id id;
    cr_assert_eq(spiffe_id_parse(&id, s, 22, NULL), WEFT_OK);
    cr_assert_str_eq(id.str, "spiffe://example.org/a");
    cr_assert_eq(id.len, 22);
}

/* A13: equality is byte-for-byte on the whole parsed ID. */
Test(spiffe_id, a13_equality)
{
    struct spiffe_id a, b, c, d, e;
    cr_assert_eq(spiffe_id_parse(&a, "spiffe://example.org/a/b", 24, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&b, "spiffe://example.org/a/b", 24, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&c, "spiffe://example.org/a/bc", 25, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&d, "spiffe://example.com/a/b", 24, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&e, "spiffe://example.org/a/B", 24, NULL), WEFT_OK);
    cr_assert(spiffe_id_equal(&a, &b));
    cr_assert(spiffe_id_equal(&a, &a));
    cr_assert(!spiffe_id_equal(&a, &c), "a path that is a prefix of another is not equal");
    cr_assert(!spiffe_id_equal(&c, &a));
    cr_assert(!spiffe_id_equal(&a, &d));
    cr_assert(!spiffe_id_equal(&a, &e));
}

Test(spiffe_id, same_td_and_td_helpers)
{
    struct spiffe_id a, b, td, td2, longer, tdid;
    cr_assert_eq(spiffe_id_parse(&a, "spiffe://example.org/a", 22, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&b, "spiffe://example.org/b/c", 24, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&td, "spiffe://example.org", 20, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&td2, "spiffe://example.or", 19, NULL), WEFT_OK);
    cr_assert_eq(spiffe_id_parse(&longer, "spiffe://example.orgx/a", 23, NULL), WEFT_OK);
    cr_assert(spiffe_id_same_td(&a, &b));
    cr_assert(spiffe_id_same_td(&a, &td));
    cr_assert(spiffe_id_same_td(&td, &b));
    cr_assert(!spiffe_id_same_td(&td, &td2), "a trust domain that is a prefix is another one");
    cr_assert(!spiffe_id_same_td(&td2, &td));
    cr_assert(!spiffe_id_same_td(&a, &longer));

    size_t td_len;
    const char *name = spiffe_id_td(&b, &td_len);
    cr_assert_eq(td_len, 11);
    cr_assert_eq(memcmp(name, "example.org", 11), 0);
    cr_assert_str_eq(spiffe_id_path(&b), "/b/c");

    spiffe_id_td_id(&tdid, &b);
    cr_assert_str_eq(tdid.str, "spiffe://example.org");
    cr_assert_eq(tdid.len, 20);
    cr_assert_eq(tdid.td_len, 11);
    cr_assert(spiffe_id_is_td(&tdid));
    cr_assert(spiffe_id_equal(&tdid, &td));

    spiffe_id_td_id(&b, &b); /* in place */
    cr_assert(spiffe_id_equal(&b, &td));
}

/* A14: a trust domain on its own, bare or in ID form. */
Test(spiffe_td, a14_accepts_bare_and_id_forms)
{
    struct spiffe_id bare, full, want;
    struct spiffe_why why;
    cr_assert_eq(spiffe_id_parse(&want, "spiffe://example.org", 20, NULL), WEFT_OK);
    cr_assert_eq(spiffe_td_parse(&bare, "example.org", 11, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(spiffe_td_parse(&full, "spiffe://example.org", 20, &why), WEFT_OK, "%s", why.msg);
    cr_assert_str_eq(bare.str, "spiffe://example.org");
    cr_assert(spiffe_id_equal(&bare, &want));
    cr_assert(spiffe_id_equal(&full, &want));
    cr_assert(spiffe_id_is_td(&bare));
    cr_assert_eq(bare.td_len, 11);
}

Test(spiffe_td, a14_rejects_a_path)
{
    struct spiffe_id td;
    struct spiffe_why why;
    cr_assert_eq(spiffe_td_parse(&td, "spiffe://example.org/path", 25, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_HAS_PATH);
    cr_assert_eq(why.offset, 20);
    cr_assert_eq(td.len, 0);
    /* A bare name cannot hold a '/' at all. */
    cr_assert_eq(spiffe_td_parse(&td, "example.org/path", 16, &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TD_CHAR);
    cr_assert_eq(why.offset, 11);
    cr_assert_eq(td.len, 0);
}

/* A14 says A2-A5 apply to a bare name; offsets point into what the caller gave. */
Test(spiffe_td, a14_applies_trust_domain_rules_to_bare_names)
{
    static const struct reject_case cases[] = {
        {"", 0, SPIFFE_RULE_ID_TD_EMPTY, 0},
        {"Example.org", 0, SPIFFE_RULE_ID_TD_UPPERCASE, 0},
        {"example.ORG", 0, SPIFFE_RULE_ID_TD_UPPERCASE, 8},
        {"user@example.org", 0, SPIFFE_RULE_ID_TD_USERINFO, 4},
        {"example.org:443", 0, SPIFFE_RULE_ID_TD_PORT, 11},
        {"[::1]", 0, SPIFFE_RULE_ID_TD_CHAR, 0},
        {"ex%61mple.org", 0, SPIFFE_RULE_ID_PERCENT, 2},
        {"example.org?", 0, SPIFFE_RULE_ID_QUERY_FRAGMENT, 11},
        {"spiffe://", 0, SPIFFE_RULE_ID_TD_EMPTY, 9},
        {"spiffe://Example.org", 0, SPIFFE_RULE_ID_TD_UPPERCASE, 9},
    };
    for (size_t i = 0; i < nitems(cases); i++) {
        struct spiffe_id td;
        struct spiffe_why why;
        const struct reject_case *c = &cases[i];
        int rc = spiffe_td_parse(&td, c->in, case_len(c->in, c->len), &why);
        cr_assert_eq(rc, WEFT_EINVAL, "\"%s\": rc %d", c->in, rc);
        cr_assert_eq(why.rule, c->rule, "\"%s\": rule %d (%s)", c->in, why.rule, why.msg);
        cr_assert_eq(why.offset, c->offset, "\"%s\": offset %zu", c->in, why.offset);
    }
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, "1.2.3.4", 7, NULL), WEFT_OK);
    cr_assert_eq(spiffe_td_parse(&td, ".example.org.", 13, NULL), WEFT_OK);
}

Test(spiffe_td, a12_bare_name_of_255_accepted_and_256_rejected)
{
    char name[3000];
    struct spiffe_id td;
    struct spiffe_why why;
    memset(name, 'a', sizeof(name));
    cr_assert_eq(spiffe_td_parse(&td, name, 255, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(td.td_len, 255);
    cr_assert_eq(spiffe_td_parse(&td, name, 256, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TD_TOO_LONG);
    cr_assert_eq(why.offset, 255);
    /* Far past the limit: the bare name does not fit an ID at all. */
    cr_assert_eq(spiffe_td_parse(&td, name, sizeof(name), &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TD_TOO_LONG);
}

Test(spiffe_id_from_td_path, builds_and_parses)
{
    struct spiffe_id id;
    struct spiffe_why why;
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", "/ns/web", &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_str_eq(id.str, "spiffe://example.org/ns/web");
    cr_assert_eq(id.td_len, 11);
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", "", &why), WEFT_OK);
    cr_assert_str_eq(id.str, "spiffe://example.org");
    cr_assert(spiffe_id_is_td(&id));
}

Test(spiffe_id_from_td_path, applies_every_rule)
{
    struct spiffe_id id;
    struct spiffe_why why;
    cr_assert_eq(spiffe_id_from_td_path(&id, "Example.org", "/a", &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TD_UPPERCASE);
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", "/a/", &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TRAILING_SLASH);
    cr_assert_eq(spiffe_id_from_td_path(&id, "", "/a", &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TD_EMPTY);
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", "/%61", &why), WEFT_EINVAL);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_PERCENT);
}

Test(spiffe_id_from_td_path, length_limit)
{
    /* 9 + 11 + 1 + path = total */
    char path[4000];
    struct spiffe_id id;
    struct spiffe_why why;
    path[0] = '/';
    memset(path + 1, 'p', sizeof(path) - 1);

    path[SPIFFE_ID_MAX_LEN - 20] = '\0'; /* total 2048 */
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", path, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(id.len, SPIFFE_ID_MAX_LEN);

    path[SPIFFE_ID_MAX_LEN - 20] = 'p';
    path[SPIFFE_ID_MAX_LEN - 19] = '\0'; /* total 2049 */
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", path, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TOO_LONG);
    cr_assert_eq(id.len, 0);

    path[SPIFFE_ID_MAX_LEN - 19] = 'p';
    path[sizeof(path) - 1] = '\0'; /* far past: does not even fit the buffer */
    memset(&id, 'x', sizeof(id));
    cr_assert_eq(spiffe_id_from_td_path(&id, "example.org", path, &why), WEFT_ELIMIT);
    cr_assert_eq(why.rule, SPIFFE_RULE_ID_TOO_LONG);
    cr_assert_eq(id.len, 0);
    cr_assert_eq(id.str[0], '\0');
}

Test(spiffe_why, rule_refs_name_the_checklist)
{
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_ID_SCHEME), "A1");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_ID_TD_USERINFO), "A3");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_ID_TD_UPPERCASE), "A4");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_ID_DOT_SEGMENT), "A8");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_ID_TD_TOO_LONG), "A12");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_SVID_LEAF_CA), "B4");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_BUNDLE_DUPLICATE_TD), "E7");
    cr_assert_str_eq(spiffe_rule_ref(SPIFFE_RULE_NONE), "");
    cr_assert_str_eq(spiffe_rule_ref((enum spiffe_rule)10000), "");
}
