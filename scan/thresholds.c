/* scan/thresholds.c: expiry verdicts relative to a certificate's own lifetime (thresholds.h). */
#include "scan/thresholds.h"

#include <stdio.h>

void scan_thresholds_default(struct scan_thresholds *t)
{
    t->warn_frac = 0.40;
    t->page_frac = 0.20;
    t->crit_frac = 0.05;
    t->crit_floor_s = 120;
    t->renew_frac = 0.50;
    t->renew_grace_frac = 0.15;
    t->backdate_s = 0;
}

int64_t scan_life_start(const struct scan_thresholds *t, int64_t not_before, int64_t not_after)
{
    int64_t start;
    if (t->backdate_s > 0 && !__builtin_add_overflow(not_before, t->backdate_s, &start) &&
        start < not_after) {
        return start;
    }
    return not_before;
}

/* frac_ok: a fraction strictly inside (0, 1); NaN fails every comparison, so it fails here. */
static bool frac_ok(double f) { return f > 0.0 && f < 1.0; }

int scan_thresholds_check(const struct scan_thresholds *t, char *err, size_t err_len)
{
    const char *flag = NULL;
    const char *why = NULL;
    if (!frac_ok(t->crit_frac)) {
        flag = "--critical-left", why = "must be more than 0 and less than the whole lifetime";
    } else if (!frac_ok(t->page_frac)) {
        flag = "--page-left", why = "must be more than 0 and less than the whole lifetime";
    } else if (!frac_ok(t->warn_frac)) {
        flag = "--warn-left", why = "must be more than 0 and less than the whole lifetime";
    } else if (!(t->crit_frac < t->page_frac)) {
        flag = "--critical-left", why = "must be below --page-left";
    } else if (!(t->page_frac < t->warn_frac)) {
        flag = "--page-left", why = "must be below --warn-left";
    } else if (t->crit_floor_s < 0) {
        flag = "--critical-floor", why = "must not be negative";
    } else if (!frac_ok(t->renew_frac)) {
        flag = "--renew-at", why = "must be more than 0 and less than the whole lifetime";
    } else if (!(t->renew_grace_frac >= 0.0 && t->renew_grace_frac < 1.0)) {
        flag = "--renew-grace", why = "must be 0 or more and less than the whole lifetime";
    } else if (!(t->renew_frac + t->renew_grace_frac < 1.0)) {
        flag = "--renew-grace", why = "plus --renew-at must stay below the whole lifetime";
    } else if (t->backdate_s < 0) {
        flag = "--backdate", why = "must not be negative";
    }
    if (flag != NULL) {
        snprintf(err, err_len, "scan thresholds: %s %s", flag, why);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

enum scan_expiry scan_expiry_of(const struct scan_thresholds *t, int64_t not_before,
                                int64_t not_after, int64_t now, bool leaf)
{
    int64_t life, left, age;
    /* A lifetime that is empty, negative or does not fit (hand-made values) was never valid. */
    if (__builtin_sub_overflow(not_after, not_before, &life) || life <= 0) {
        return SCAN_EXPIRY_CRITICAL;
    }
    if (now < not_before) {
        return SCAN_EXPIRY_NOT_YET_VALID;
    }
    /* RFC 5280 §4.1.2.5: notAfter is the last second the certificate is valid. */
    if (now > not_after) {
        return SCAN_EXPIRY_EXPIRED;
    }
    /* the life the tiers are measured on starts after the issuer's backdating */
    int64_t start = scan_life_start(t, not_before, not_after);
    life = not_after - start;
    /* start <= not_after and not_before <= now <= not_after: no difference overflows */
    left = not_after - now;
    age = now - start;
    double l = (double)life;
    double crit = t->crit_frac * l;
    if (crit < (double)t->crit_floor_s) {
        crit = (double)t->crit_floor_s;
    }
    if ((double)left < crit) {
        return SCAN_EXPIRY_CRITICAL;
    }
    if ((double)left < t->page_frac * l) {
        return SCAN_EXPIRY_PAGE;
    }
    if ((double)left < t->warn_frac * l) {
        return SCAN_EXPIRY_WARN;
    }
    if (leaf && (double)age > (t->renew_frac + t->renew_grace_frac) * l) {
        return SCAN_EXPIRY_RENEWAL_OVERDUE;
    }
    return SCAN_EXPIRY_OK;
}

enum scan_severity scan_expiry_severity(enum scan_expiry e)
{
    switch (e) {
    case SCAN_EXPIRY_RENEWAL_OVERDUE:
    case SCAN_EXPIRY_WARN:
        return SCAN_SEV_WARN;
    case SCAN_EXPIRY_PAGE:
        return SCAN_SEV_PAGE;
    case SCAN_EXPIRY_CRITICAL:
    case SCAN_EXPIRY_EXPIRED:
    case SCAN_EXPIRY_NOT_YET_VALID:
        return SCAN_SEV_CRITICAL;
    case SCAN_EXPIRY_OK:
        break;
    }
    return SCAN_SEV_INFO;
}

bool scan_renewal_overdue(const struct scan_thresholds *t, int64_t not_before, int64_t not_after,
                          int64_t now)
{
    int64_t life;
    if (__builtin_sub_overflow(not_after, not_before, &life) || life <= 0 || now < not_before ||
        now > not_after) {
        return false;
    }
    int64_t start = scan_life_start(t, not_before, not_after);
    life = not_after - start;
    return (double)(now - start) > (t->renew_frac + t->renew_grace_frac) * (double)life;
}
