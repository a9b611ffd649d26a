/* scan/evaluate_test.c: the contract of scan/evaluate.h on hand-built probe results. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "scan/evaluate.h"

#define HOUR INT64_C(3600)
#define DAY INT64_C(86400)
#define NOW INT64_C(1800000000)

static struct scan_policy pol;
static struct scan_result res;
static struct scan_finding found[SCAN_MAX_FINDINGS];

/* cert fills |c| as a certificate valid [nb, na] with an EC P-256 key. */
static void cert(struct scan_cert *c, const char *subject, const char *id, int64_t nb, int64_t na,
                 bool ca, bool self_signed)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->subject, sizeof(c->subject), "%s", subject);
    snprintf(c->spiffe_id, sizeof(c->spiffe_id), "%s", id);
    snprintf(c->serial_hex, sizeof(c->serial_hex), "0a1b2c%02x", (unsigned)(nb & 0xff));
    c->not_before = nb;
    c->not_after = na;
    c->is_ca = ca;
    c->self_signed = self_signed;
    snprintf(c->key_type, sizeof(c->key_type), "EC");
    c->key_bits = 256;
}

/* healthy: a reached mTLS endpoint, TLS 1.3 only, leaf (1 h, 10 min old) -> intermediate
 * (3 days, 1 day old) -> presented root (1 year, 30 days old). */
static void setup(void)
{
    scan_policy_default(&pol);
    memset(&res, 0, sizeof(res));
    snprintf(res.endpoint, sizeof(res.endpoint), "10.0.0.7:8443");
    res.reached = true;
    snprintf(res.version, sizeof(res.version), "TLSv1.3");
    snprintf(res.cipher, sizeof(res.cipher), "TLS_AES_128_GCM_SHA256");
    cert(&res.chain[0], "", "spiffe://example.org/ns/web/sa/api", NOW - 600, NOW + 3000, false,
         false);
    cert(&res.chain[1], "CN=weft intermediate", "spiffe://example.org", NOW - DAY, NOW + 2 * DAY,
         true, false);
    cert(&res.chain[2], "CN=weft root", "spiffe://example.org", NOW - 30 * DAY, NOW + 335 * DAY,
         true, true);
    res.chain_len = 3;
    res.accepts_tls10 = res.accepts_tls11 = res.accepts_tls12 = 0;
    res.accepts_no_client_cert = 0;
    res.accepts_plaintext = 0;
    res.hsts_present = -1;
    res.http_redirects_to_https = -1;
    memset(found, 0, sizeof(found));
}

TestSuite(scan_evaluate, .init = setup, .timeout = 10);

static size_t judge(void)
{
    size_t n = scan_evaluate(&res, &pol, NOW, found, SCAN_MAX_FINDINGS);
    cr_assert_leq(n, SCAN_MAX_FINDINGS);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(found[i].endpoint, res.endpoint);
        cr_assert_neq(found[i].message[0], '\0');
    }
    return n;
}

/* expect asserts that finding |i| has |code|, |sev| and, when not NULL, |subject|. */
static void expect(size_t i, const char *code, enum scan_severity sev, const char *subject)
{
    cr_assert_str_eq(found[i].code, code, "finding %zu: %s (%s)", i, found[i].code,
                     found[i].message);
    cr_assert_eq(found[i].severity, sev, "finding %zu %s: %s", i, code,
                 scan_severity_name(found[i].severity));
    if (subject != NULL) {
        cr_assert_str_eq(found[i].subject, subject);
    }
}

Test(scan_evaluate, a_healthy_endpoint_has_no_findings)
{
    cr_assert_eq(judge(), 0);
    cr_assert_eq(scan_exit_code(&res, 1, found, 0), SCAN_EXIT_OK);
}

Test(scan_evaluate, an_unreachable_endpoint_is_one_page_finding_and_exit_3)
{
    res.reached = false;
    snprintf(res.error, sizeof(res.error), "connect to 10.0.0.7:8443: Connection refused");
    cr_assert_eq(judge(), 1);
    expect(0, "unreachable", SCAN_SEV_PAGE, "");
    cr_assert_str_eq(found[0].message,
                     "10.0.0.7:8443 could not be scanned: connect to 10.0.0.7:8443: Connection "
                     "refused.");
    cr_assert_eq(scan_exit_code(&res, 1, found, 1), SCAN_EXIT_UNREACHABLE);
}

Test(scan_evaluate, an_intermediate_near_expiry_under_a_fresh_leaf_is_critical)
{
    /* 3 days of life, 3h12m left: 4 % */
    cert(&res.chain[1], "CN=weft intermediate", "", NOW + 3 * HOUR + 12 * 60 - 3 * DAY,
         NOW + 3 * HOUR + 12 * 60, true, false);
    cr_assert_eq(judge(), 1);
    expect(0, "intermediate-expiring", SCAN_SEV_CRITICAL, "CN=weft intermediate");
    cr_assert_str_eq(found[0].message, "intermediate CN=weft intermediate expires in 3h12m (4 % "
                                       "of its 3d lifetime left).");
    cr_assert_eq(scan_exit_code(&res, 1, found, 1), SCAN_EXIT_PAGE);
}

Test(scan_evaluate, messages_count_a_backdated_life_as_the_tiers_do)
{
    /* weft's 1 h SVID, notBefore backdated a minute, 18 min left: 30 % of its hour (29 % of
     * 61 min), and 42 min gone since issuance is past 65 % (39 min) by 3 min */
    pol.thresholds.backdate_s = 60;
    cert(&res.chain[0], "", "spiffe://example.org/web", NOW - 60 - 42 * 60, NOW + 18 * 60, false,
         false);
    cr_assert_eq(judge(), 2);
    expect(0, "leaf-expiring", SCAN_SEV_WARN, "spiffe://example.org/web");
    cr_assert_str_eq(found[0].message, "leaf spiffe://example.org/web expires in 18m (30 % of its "
                                       "1h lifetime left).");
    cr_assert_str_eq(found[1].message, "leaf spiffe://example.org/web should have been renewed "
                                       "3m ago and was not (renewal loop stuck?).");
}

Test(scan_evaluate, a_leaf_in_each_tier_also_says_its_renewal_is_overdue)
{
    /* 1 h leaf with 20 min left: 33 %, warn, and 40 min gone is past 60 % */
    cert(&res.chain[0], "", "spiffe://example.org/web", NOW - 40 * 60, NOW + 20 * 60, false, false);
    cr_assert_eq(judge(), 2);
    expect(0, "leaf-expiring", SCAN_SEV_WARN, "spiffe://example.org/web");
    cr_assert_str_eq(found[0].message, "leaf spiffe://example.org/web expires in 20m (33 % of its "
                                       "1h lifetime left).");
    expect(1, "leaf-renewal-overdue", SCAN_SEV_WARN, "spiffe://example.org/web");
    cr_assert_not_null(strstr(found[1].message, "renewal loop stuck?"));
    cr_assert_eq(scan_exit_code(&res, 1, found, 2), SCAN_EXIT_WARN);
    /* 10 min left: page */
    res.chain[0].not_before = NOW - 50 * 60, res.chain[0].not_after = NOW + 10 * 60;
    cr_assert_eq(judge(), 2);
    expect(0, "leaf-expiring", SCAN_SEV_PAGE, NULL);
    expect(1, "leaf-renewal-overdue", SCAN_SEV_WARN, NULL);
    cr_assert_eq(scan_exit_code(&res, 1, found, 2), SCAN_EXIT_PAGE);
    /* 100 s left: the 2-minute floor */
    res.chain[0].not_before = NOW - 3500, res.chain[0].not_after = NOW + 100;
    cr_assert_eq(judge(), 2);
    expect(0, "leaf-expiring", SCAN_SEV_CRITICAL, NULL);
}

Test(scan_evaluate, a_leaf_past_its_renewal_point_is_a_finding_far_from_expiry)
{
    pol.thresholds.warn_frac = 0.25;
    pol.thresholds.page_frac = 0.15;
    /* 24 h leaf, 16 h gone: past 65 %, 33 % left, no tier */
    cert(&res.chain[0], "", "spiffe://example.org/db", NOW - 16 * HOUR, NOW + 8 * HOUR, false,
         false);
    cr_assert_eq(judge(), 1);
    expect(0, "leaf-renewal-overdue", SCAN_SEV_WARN, "spiffe://example.org/db");
    cr_assert_str_eq(found[0].message, "leaf spiffe://example.org/db should have been renewed "
                                       "24m ago and was not (renewal loop stuck?).");
    /* intermediates are never "overdue" */
    cert(&res.chain[0], "", "spiffe://example.org/db", NOW - 600, NOW + 3000, false, false);
    res.chain[1].not_before = NOW - 16 * HOUR, res.chain[1].not_after = NOW + 8 * HOUR;
    cr_assert_eq(judge(), 0);
}

Test(scan_evaluate, expired_and_not_yet_valid_certificates_are_critical)
{
    res.chain[2].not_before = NOW - 400 * DAY, res.chain[2].not_after = NOW - 35 * DAY;
    res.chain[0].not_before = NOW + 90, res.chain[0].not_after = NOW + HOUR;
    cr_assert_eq(judge(), 2);
    expect(0, "not-yet-valid", SCAN_SEV_CRITICAL, "spiffe://example.org/ns/web/sa/api");
    expect(1, "expired", SCAN_SEV_CRITICAL, "CN=weft root");
    cr_assert_str_eq(found[1].message, "root CN=weft root expired 35d ago.");
    cr_assert_eq(scan_exit_code(&res, 1, found, 2), SCAN_EXIT_PAGE);
}

Test(scan_evaluate, the_bundle_root_is_judged_once)
{
    /* named from the bundle and also presented: one finding */
    res.root = res.chain[2];
    res.root_found = true;
    res.root.not_after = res.chain[2].not_after = NOW + 10 * DAY;
    res.root.not_before = res.chain[2].not_before = NOW - 355 * DAY;
    cr_assert_eq(judge(), 1);
    expect(0, "root-expiring", SCAN_SEV_CRITICAL, "CN=weft root");
    /* named from the bundle, not presented: judged as the root */
    res.chain_len = 2;
    cr_assert_eq(judge(), 1);
    expect(0, "root-expiring", SCAN_SEV_CRITICAL, "CN=weft root");
}

Test(scan_evaluate, a_zero_lifetime_is_critical)
{
    res.chain[1].not_after = res.chain[1].not_before;
    cr_assert_eq(judge(), 1);
    expect(0, "intermediate-expiring", SCAN_SEV_CRITICAL, "CN=weft intermediate");
}

Test(scan_evaluate, weak_keys_by_type)
{
    snprintf(res.chain[0].key_type, sizeof(res.chain[0].key_type), "RSA");
    res.chain[0].key_bits = 1024;
    res.chain[1].key_bits = 224;
    snprintf(res.chain[2].key_type, sizeof(res.chain[2].key_type), "Ed25519");
    res.chain[2].key_bits = 253;
    cr_assert_eq(judge(), 2);
    expect(0, "weak-key", SCAN_SEV_WARN, "spiffe://example.org/ns/web/sa/api");
    cr_assert_str_eq(found[0].message, "leaf spiffe://example.org/ns/web/sa/api has a 1024-bit "
                                       "RSA key, under 2048 bits.");
    expect(1, "weak-key", SCAN_SEV_WARN, "CN=weft intermediate");
    res.chain[0].key_bits = 2048;
    res.chain[1].key_bits = 256;
    cr_assert_eq(judge(), 0);
}

Test(scan_evaluate, tls_policy_drift)
{
    snprintf(res.version, sizeof(res.version), "TLSv1.2");
    res.accepts_tls10 = 1;
    res.accepts_tls12 = 1;
    res.accepts_no_client_cert = 1;
    res.accepts_plaintext = 1;
    cr_assert_eq(judge(), 5);
    expect(0, "old-tls-version", SCAN_SEV_PAGE, "");
    expect(1, "tls10-accepted", SCAN_SEV_PAGE, "");
    expect(2, "tls12-accepted", SCAN_SEV_PAGE, "");
    cr_assert_str_eq(found[2].message,
                     "10.0.0.7:8443 still accepts TLS 1.2, but the policy is TLS 1.3 only.");
    expect(3, "no-client-cert-accepted", SCAN_SEV_CRITICAL, "");
    expect(4, "plaintext-accepted", SCAN_SEV_CRITICAL, "");
    cr_assert_eq(scan_exit_code(&res, 1, found, 5), SCAN_EXIT_PAGE);
    /* a policy that allows all of it */
    pol.tls13_only = pol.require_client_cert = pol.strict = false;
    cr_assert_eq(judge(), 0);
    /* not probed (-1) is no finding */
    pol.tls13_only = pol.require_client_cert = pol.strict = true;
    snprintf(res.version, sizeof(res.version), "TLSv1.3");
    res.accepts_tls10 = res.accepts_tls12 = res.accepts_no_client_cert = -1;
    res.accepts_plaintext = -1;
    cr_assert_eq(judge(), 0);
}

Test(scan_evaluate, alpn_only_when_the_policy_names_one)
{
    snprintf(res.alpn, sizeof(res.alpn), "http/1.1");
    cr_assert_eq(judge(), 0);
    pol.want_alpn = "h2";
    cr_assert_eq(judge(), 1);
    expect(0, "alpn-mismatch", SCAN_SEV_WARN, "");
    pol.want_alpn = "http/1.1";
    cr_assert_eq(judge(), 0);
}

Test(scan_evaluate, hsts_and_redirect)
{
    res.http_probed = true;
    res.hsts_present = 0;
    res.http_redirects_to_https = 0;
    /* not required: reported as info, exit 0 */
    cr_assert_eq(judge(), 2);
    expect(0, "hsts-missing", SCAN_SEV_INFO, "");
    expect(1, "http-not-redirected", SCAN_SEV_INFO, "");
    cr_assert_eq(scan_exit_code(&res, 1, found, 2), SCAN_EXIT_OK);
    pol.require_hsts = true;
    cr_assert_eq(judge(), 2);
    expect(0, "hsts-missing", SCAN_SEV_WARN, "");
    cr_assert_eq(scan_exit_code(&res, 1, found, 2), SCAN_EXIT_WARN);
    res.hsts_present = 1;
    res.hsts_max_age = 3600;
    res.http_redirects_to_https = 1;
    cr_assert_eq(judge(), 1);
    expect(0, "hsts-max-age-short", SCAN_SEV_WARN, "");
    res.hsts_max_age = 31536000;
    cr_assert_eq(judge(), 0);
    /* no HTTP answer over TLS: HSTS unknown */
    res.hsts_present = -1;
    cr_assert_eq(judge(), 1);
    expect(0, "https-no-answer", SCAN_SEV_WARN, "");
    /* not probed: nothing */
    res.http_probed = false;
    res.http_redirects_to_https = 0;
    cr_assert_eq(judge(), 0);
}

Test(scan_evaluate, findings_past_cap_are_counted_not_written)
{
    res.accepts_tls10 = res.accepts_tls11 = res.accepts_tls12 = 1;
    struct scan_finding two[3];
    memset(two, 0xab, sizeof(two));
    cr_assert_eq(scan_evaluate(&res, &pol, NOW, two, 2), 3);
    cr_assert_str_eq(two[1].code, "tls11-accepted");
    cr_assert_eq(((unsigned char *)&two[2])[0], 0xab);
    cr_assert_eq(scan_evaluate(&res, &pol, NOW, NULL, 0), 3);
}

Test(scan_evaluate, a_chain_over_the_limit_and_an_empty_chain)
{
    res.chain_truncated = true;
    cr_assert_eq(judge(), 1);
    expect(0, "chain-too-long", SCAN_SEV_WARN, "");
    res.chain_truncated = false;
    res.chain_len = 0;
    cr_assert_eq(judge(), 1);
    expect(0, "no-certificate", SCAN_SEV_CRITICAL, "");
}

Test(scan_evaluate, exit_code_is_the_highest_that_applies)
{
    struct scan_result two[2];
    two[0] = res;
    two[1] = res;
    struct scan_finding f[2];
    memset(f, 0, sizeof(f));
    f[0].severity = SCAN_SEV_INFO;
    cr_assert_eq(scan_exit_code(two, 2, f, 1), SCAN_EXIT_OK);
    f[1].severity = SCAN_SEV_WARN;
    cr_assert_eq(scan_exit_code(two, 2, f, 2), SCAN_EXIT_WARN);
    f[0].severity = SCAN_SEV_CRITICAL;
    cr_assert_eq(scan_exit_code(two, 2, f, 2), SCAN_EXIT_PAGE);
    two[1].reached = false;
    cr_assert_eq(scan_exit_code(two, 2, f, 2), SCAN_EXIT_UNREACHABLE);
    cr_assert_eq(scan_exit_code(NULL, 0, NULL, 0), SCAN_EXIT_OK);
}

Test(scan_evaluate, severity_names)
{
    cr_assert_str_eq(scan_severity_name(SCAN_SEV_INFO), "info");
    cr_assert_str_eq(scan_severity_name(SCAN_SEV_WARN), "warn");
    cr_assert_str_eq(scan_severity_name(SCAN_SEV_PAGE), "page");
    cr_assert_str_eq(scan_severity_name(SCAN_SEV_CRITICAL), "critical");
}

Test(scan_evaluate, long_names_are_cut_and_the_sentence_still_ends)
{
    memset(res.chain[1].subject, 'A', SCAN_SUBJECT_MAX);
    res.chain[1].subject[SCAN_SUBJECT_MAX] = '\0';
    res.chain[1].not_before = NOW - 10 * DAY, res.chain[1].not_after = NOW + 1;
    cr_assert_eq(judge(), 1);
    size_t len = strlen(found[0].message);
    cr_assert_lt(len, SCAN_MESSAGE_MAX);
    cr_assert_eq(found[0].message[len - 1], '.');
    cr_assert_str_eq(found[0].subject, res.chain[1].subject);
}
