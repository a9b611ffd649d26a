/* scan/thresholds_test.c: the contract of scan/thresholds.h across 1-hour SVIDs to 1-year roots. */
#include <criterion/criterion.h>

#include <math.h>
#include <string.h>

#include "scan/thresholds.h"

#define HOUR INT64_C(3600)
#define DAY INT64_C(86400)
#define T0 INT64_C(1800000000) /* any instant: nothing here reads the clock */

static struct scan_thresholds th;

static void setup(void) { scan_thresholds_default(&th); }

TestSuite(scan_thresholds, .init = setup, .timeout = 10);

static const int64_t lifetimes[] = {HOUR, 24 * HOUR, 90 * DAY, 365 * DAY};

/* verdict_left: the verdict on a certificate of lifetime |life| with |left| seconds left. */
static enum scan_expiry verdict_left(int64_t life, int64_t left, bool leaf)
{
    return scan_expiry_of(&th, T0, T0 + life, T0 + life - left, leaf);
}

/* boundary returns the smallest number of seconds left that is not under |frac| of |life|. */
static int64_t boundary(double frac, int64_t life) { return (int64_t)ceil(frac * (double)life); }

Test(scan_thresholds, defaults_pass_their_own_check)
{
    char err[128] = "";
    cr_assert_eq(scan_thresholds_check(&th, err, sizeof(err)), WEFT_OK);
    cr_assert_float_eq(th.warn_frac, 0.40, 1e-12);
    cr_assert_float_eq(th.page_frac, 0.20, 1e-12);
    cr_assert_float_eq(th.crit_frac, 0.05, 1e-12);
    cr_assert_eq(th.crit_floor_s, 120);
    cr_assert_float_eq(th.renew_frac, 0.50, 1e-12);
    cr_assert_float_eq(th.renew_grace_frac, 0.15, 1e-12);
}

Test(scan_thresholds, each_tier_starts_where_its_fraction_says_for_every_lifetime)
{
    for (size_t i = 0; i < sizeof(lifetimes) / sizeof(lifetimes[0]); i++) {
        int64_t l = lifetimes[i];
        int64_t warn = boundary(0.40, l), page = boundary(0.20, l), crit = boundary(0.05, l);
        /* CAs (leaf false): no renewal verdict, so just above warn is OK */
        cr_assert_eq(verdict_left(l, warn + 1, false), SCAN_EXPIRY_OK, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, warn, false), SCAN_EXPIRY_OK, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, warn - 1, false), SCAN_EXPIRY_WARN, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, page + 1, false), SCAN_EXPIRY_WARN, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, page - 1, false), SCAN_EXPIRY_PAGE, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, crit + 1, false), SCAN_EXPIRY_PAGE, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, crit - 1, false), SCAN_EXPIRY_CRITICAL, "life %lld",
                     (long long)l);
        cr_assert_eq(verdict_left(l, 0, false), SCAN_EXPIRY_CRITICAL, "life %lld", (long long)l);
        cr_assert_eq(verdict_left(l, l, false), SCAN_EXPIRY_OK, "life %lld", (long long)l);
    }
}

Test(scan_thresholds, a_one_year_root_pages_at_73_days_and_is_critical_at_18)
{
    cr_assert_eq(verdict_left(365 * DAY, 74 * DAY, false), SCAN_EXPIRY_WARN);
    cr_assert_eq(verdict_left(365 * DAY, 72 * DAY, false), SCAN_EXPIRY_PAGE);
    cr_assert_eq(verdict_left(365 * DAY, 19 * DAY, false), SCAN_EXPIRY_PAGE);
    cr_assert_eq(verdict_left(365 * DAY, 18 * DAY, false), SCAN_EXPIRY_CRITICAL);
}

Test(scan_thresholds, the_two_minute_floor_dominates_short_lifetimes)
{
    /* 30 minutes: 5 % is 90 s, under the 120 s floor */
    int64_t l = 30 * 60;
    cr_assert_eq(verdict_left(l, 121, false), SCAN_EXPIRY_PAGE);
    cr_assert_eq(verdict_left(l, 119, false), SCAN_EXPIRY_CRITICAL);
    cr_assert_eq(verdict_left(l, 91, false), SCAN_EXPIRY_CRITICAL);
    /* 1 hour with a 10-minute floor: 5 % is 180 s, the floor wins up to 600 s */
    th.crit_floor_s = 600;
    cr_assert_eq(verdict_left(HOUR, 601, false), SCAN_EXPIRY_PAGE);
    cr_assert_eq(verdict_left(HOUR, 599, false), SCAN_EXPIRY_CRITICAL);
    /* on a year the floor changes nothing: 5 % is 18.25 days */
    cr_assert_eq(verdict_left(365 * DAY, 19 * DAY, false), SCAN_EXPIRY_PAGE);
    /* a floor longer than the page tier makes the whole page tier critical */
    th.crit_floor_s = HOUR;
    cr_assert_eq(verdict_left(HOUR, 700, false), SCAN_EXPIRY_CRITICAL);
}

Test(scan_thresholds, expired_and_not_yet_valid_whatever_the_lifetime)
{
    for (size_t i = 0; i < sizeof(lifetimes) / sizeof(lifetimes[0]); i++) {
        int64_t l = lifetimes[i];
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 + l + 1, false), SCAN_EXPIRY_EXPIRED);
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 + l + 1, true), SCAN_EXPIRY_EXPIRED);
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 - 1, false), SCAN_EXPIRY_NOT_YET_VALID);
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 - 1, true), SCAN_EXPIRY_NOT_YET_VALID);
        /* notAfter itself is still valid (RFC 5280 §4.1.2.5), and critical */
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 + l, false), SCAN_EXPIRY_CRITICAL);
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0, false), SCAN_EXPIRY_OK);
    }
}

Test(scan_thresholds, a_zero_or_negative_lifetime_is_critical)
{
    cr_assert_eq(scan_expiry_of(&th, T0, T0, T0, false), SCAN_EXPIRY_CRITICAL);
    cr_assert_eq(scan_expiry_of(&th, T0, T0 - 1, T0 - 10, true), SCAN_EXPIRY_CRITICAL);
    cr_assert_eq(scan_expiry_of(&th, INT64_MIN, INT64_MAX, 0, false), SCAN_EXPIRY_CRITICAL);
    cr_assert_not(scan_renewal_overdue(&th, T0, T0, T0));
    cr_assert_not(scan_renewal_overdue(&th, INT64_MIN, INT64_MAX, 0));
}

Test(scan_thresholds, renewal_overdue_is_for_leaves_only)
{
    /* renewal at 50 % + 15 % grace: a 24 h leaf is overdue once 15.6 h are gone; with the warn
     * tier moved to 30 % left that is still far from any tier */
    th.warn_frac = 0.30;
    th.page_frac = 0.20;
    for (size_t i = 0; i < sizeof(lifetimes) / sizeof(lifetimes[0]); i++) {
        int64_t l = lifetimes[i];
        int64_t due = boundary(0.65, l); /* seconds gone at the renewal point plus grace */
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 + due - 1, true), SCAN_EXPIRY_OK,
                     "life %lld", (long long)l);
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 + due + 1, true),
                     SCAN_EXPIRY_RENEWAL_OVERDUE, "life %lld", (long long)l);
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, T0 + due + 1, false), SCAN_EXPIRY_OK,
                     "life %lld", (long long)l);
        cr_assert_not(scan_renewal_overdue(&th, T0, T0 + l, T0 + due - 1));
        cr_assert(scan_renewal_overdue(&th, T0, T0 + l, T0 + due + 1));
        /* under a tier, the tier wins the verdict; the overdue question still says yes */
        int64_t in_page = T0 + l - boundary(0.20, l) + 1;
        cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, in_page, true), SCAN_EXPIRY_PAGE);
        cr_assert(scan_renewal_overdue(&th, T0, T0 + l, in_page));
        /* expired is not "overdue": it is expired */
        cr_assert_not(scan_renewal_overdue(&th, T0, T0 + l, T0 + l + 1));
    }
}

Test(scan_thresholds, with_the_defaults_overdue_begins_inside_warn)
{
    /* 65 % gone is 35 % left: the scan_renewal_overdue note in thresholds.h */
    int64_t l = 24 * HOUR;
    int64_t at = T0 + boundary(0.65, l) + 1;
    cr_assert_eq(scan_expiry_of(&th, T0, T0 + l, at, true), SCAN_EXPIRY_WARN);
    cr_assert(scan_renewal_overdue(&th, T0, T0 + l, at));
    cr_assert_not(scan_renewal_overdue(&th, T0, T0 + l, at - 2));
}

Test(scan_thresholds, severities_of_the_verdicts)
{
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_OK), SCAN_SEV_INFO);
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_RENEWAL_OVERDUE), SCAN_SEV_WARN);
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_WARN), SCAN_SEV_WARN);
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_PAGE), SCAN_SEV_PAGE);
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_CRITICAL), SCAN_SEV_CRITICAL);
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_EXPIRED), SCAN_SEV_CRITICAL);
    cr_assert_eq(scan_expiry_severity(SCAN_EXPIRY_NOT_YET_VALID), SCAN_SEV_CRITICAL);
}

/* refused: |t| fails the check, and the message names |flag|. */
static void refused(const struct scan_thresholds *t, const char *flag)
{
    char err[160] = "";
    cr_assert_eq(scan_thresholds_check(t, err, sizeof(err)), WEFT_EINVAL, "%s", flag);
    cr_assert_not_null(strstr(err, flag), "'%s' does not name %s", err, flag);
}

Test(scan_thresholds, check_refuses_each_broken_rule_naming_the_flag)
{
    struct scan_thresholds t = th;
    t.crit_frac = 0;
    refused(&t, "--critical-left");
    t = th, t.crit_frac = 0.3; /* above page */
    refused(&t, "--critical-left");
    t = th, t.page_frac = 0.5; /* above warn */
    refused(&t, "--page-left");
    t = th, t.warn_frac = 1.0;
    refused(&t, "--warn-left");
    t = th, t.warn_frac = NAN;
    refused(&t, "--warn-left");
    t = th, t.crit_floor_s = -1;
    refused(&t, "--critical-floor");
    t = th, t.renew_frac = 0;
    refused(&t, "--renew-at");
    t = th, t.renew_grace_frac = -0.01;
    refused(&t, "--renew-grace");
    t = th, t.renew_frac = 0.9, t.renew_grace_frac = 0.1;
    refused(&t, "--renew-grace");
    /* just inside every rule */
    t = th, t.renew_frac = 0.89, t.renew_grace_frac = 0.1, t.crit_floor_s = 0;
    char err[160];
    cr_assert_eq(scan_thresholds_check(&t, err, sizeof(err)), WEFT_OK);
}

Test(scan_thresholds, a_backdated_not_before_is_not_counted_as_life)
{
    /* weft's CA backdates notBefore a minute: a 1 h SVID reads as 61 min. 38 min 50 s after
     * issuance is 64.7 % of its hour, not yet past the renewal point plus grace (65 %);
     * counted from notBefore it is 39 min 50 s of 61 min, 65.3 %: a false "renewal loop
     * stuck?" */
    int64_t nb = T0, na = T0 + 61 * 60, now = T0 + 60 + 38 * 60 + 50;
    struct scan_thresholds t = th;
    cr_assert(scan_renewal_overdue(&t, nb, na, now));
    t.backdate_s = 60;
    cr_assert_not(scan_renewal_overdue(&t, nb, na, now));
    cr_assert_eq(scan_expiry_of(&t, nb, na, now, true), SCAN_EXPIRY_WARN, "35.3 %% left");
    /* the tiers too: page is below 20 % of 60 min (720 s) left, not of 61 min (732 s) */
    cr_assert_eq(scan_expiry_of(&t, nb, na, na - 719, true), SCAN_EXPIRY_PAGE);
    cr_assert_eq(scan_expiry_of(&t, nb, na, na - 721, true), SCAN_EXPIRY_WARN);
    cr_assert_eq(scan_expiry_of(&th, nb, na, na - 721, true), SCAN_EXPIRY_PAGE);
    /* a certificate that lives no longer than the backdating is counted from notBefore */
    t.backdate_s = 3600;
    cr_assert(scan_renewal_overdue(&t, nb, nb + 100, nb + 66));
    cr_assert_eq(scan_expiry_of(&t, nb, nb + 100, nb - 1, true), SCAN_EXPIRY_NOT_YET_VALID);
    t.backdate_s = -1;
    refused(&t, "--backdate");
}
