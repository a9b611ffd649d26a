/* scan/thresholds.h: when a certificate's remaining life is a finding (issue 9).
 *
 * One rule serves 1-hour SVIDs and 1-year roots because it is relative to the certificate's own
 * lifetime L = notAfter - notBefore, with absolute floors. With `left` = notAfter - now:
 *   critical  left < max(crit_frac * L, crit_floor_s), or already expired, or not yet valid
 *   page      left < page_frac * L
 *   warn      left < warn_frac * L
 * and, for a leaf only, renewal overdue (warn): now is past notBefore + renew_frac * L +
 * renew_grace_frac * L, i.e. the renewal that should have replaced it (at half its life) did
 * not happen ("renewal loop stuck?"), even while far from expiry. Defaults: warn 40 %, page
 * 20 %, critical 5 % or 2 minutes, renewal at 50 % with 15 % grace (weft's agent renews at
 * 50 % +-10 %, so a healthy leaf can be 60 % gone: 5 % of margin for delivery). Nothing here reads
 * the clock. */
#ifndef WEFT_SCAN_THRESHOLDS_H
#define WEFT_SCAN_THRESHOLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "scan/scan.h"

struct scan_thresholds {
    double warn_frac, page_frac, crit_frac; /* of the lifetime left */
    int64_t crit_floor_s;
    double renew_frac, renew_grace_frac; /* leaves: expected renewal point, and slack */
    /* how far issuers backdate notBefore for clocks that lag (weft's CA 1 minute, Let's Encrypt
     * 1 hour): a certificate that lives longer than this has its life counted from notBefore +
     * backdate_s, the moment it was issued, as its renewer counts it; default 0 */
    int64_t backdate_s;
};

/* scan_thresholds_default fills |t| with the defaults above. */
void scan_thresholds_default(struct scan_thresholds *t);

/* scan_thresholds_check: 0 < crit < page < warn < 1, 0 < renew_frac < 1, grace >= 0,
 * renew_frac + grace < 1, crit_floor_s >= 0. WEFT_EINVAL with |err| naming the flag of
 * `weftctl scan` (--warn-left, --page-left, --critical-left, --critical-floor, --renew-at,
 * --renew-grace). */
WEFT_MUST_USE int scan_thresholds_check(const struct scan_thresholds *t, char *err, size_t err_len);

/* enum scan_expiry is the verdict on one certificate's time. */
enum scan_expiry {
    SCAN_EXPIRY_OK = 0,
    SCAN_EXPIRY_RENEWAL_OVERDUE, /* leaf past its renewal point, not yet under warn */
    SCAN_EXPIRY_WARN,
    SCAN_EXPIRY_PAGE,
    SCAN_EXPIRY_CRITICAL,
    SCAN_EXPIRY_EXPIRED,
    SCAN_EXPIRY_NOT_YET_VALID,
};

/* scan_expiry_of judges a certificate valid [not_before, not_after] at |now|; |leaf| enables
 * the renewal-overdue verdict. A lifetime <= 0 is CRITICAL (a certificate that was never
 * valid). When the leaf is both overdue and under a tier, the tier wins. */
enum scan_expiry scan_expiry_of(const struct scan_thresholds *t, int64_t not_before,
                                int64_t not_after, int64_t now, bool leaf);

/* scan_renewal_overdue reports whether a leaf valid [not_before, not_after] is, at |now|, past
 * its renewal point plus grace while still valid, whatever tier it is under. With the defaults
 * the renewal point plus grace (65 % of the life gone; the agent's +-10 % jitter renews by 60 %,
 * agent/schedule.h) falls inside the warn tier (below 40 % left), so scan_expiry_of alone would
 * never say RENEWAL_OVERDUE: the evaluator asks this as well and reports a stuck renewal next
 * to the tier. */
bool scan_renewal_overdue(const struct scan_thresholds *t, int64_t not_before, int64_t not_after,
                          int64_t now);

/* scan_life_start is when a certificate's life is counted from: |not_before|, or |not_before|
 * plus t->backdate_s when the certificate lives longer than that. */
int64_t scan_life_start(const struct scan_thresholds *t, int64_t not_before, int64_t not_after);

/* scan_expiry_severity maps a verdict to a finding's severity (OK has none: INFO). */
enum scan_severity scan_expiry_severity(enum scan_expiry e);

#endif
