/* scan/evaluate.h: a probe's facts, judged against the policy -> findings (issue 9). */
#ifndef WEFT_SCAN_EVALUATE_H
#define WEFT_SCAN_EVALUATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scan/scan.h"
#include "scan/thresholds.h"

struct scan_policy {
    struct scan_thresholds thresholds;
    bool tls13_only;          /* TLS 1.0/1.1/1.2 accepted is a finding (page) */
    bool require_client_cert; /* a handshake without one accepted is a finding (critical) */
    bool strict;              /* plaintext accepted is a finding (critical) */
    int min_rsa_bits;         /* smaller RSA keys are a finding (warn); default 2048 */
    int min_ec_bits;          /* default 256 */
    const char *want_alpn;    /* a different negotiated ALPN is a finding (warn); NULL: any */
    bool require_hsts;        /* HTTPS: HSTS missing is a finding (warn) */
    int64_t min_hsts_max_age; /* default 15552000 (180 days) */
};

/* scan_policy_default: the thresholds' defaults, TLS 1.3 only, mTLS and STRICT required,
 * RSA 2048 / EC 256, any ALPN, HSTS not required. */
void scan_policy_default(struct scan_policy *p);

/* scan_evaluate writes the findings about |r| at |now| into |out| (at most |cap|; more are
 * counted in the return but not written) and returns how many there are, in this order:
 *   - "unreachable" (page): the endpoint was not reached; then it is the only finding;
 *   - per certificate, leaf first, then the bundle's root when it was not presented (subject
 *     set): "leaf-expiring", "intermediate-expiring", "root-expiring" (warn, page or critical by
 *     scan_expiry_of; critical too for a lifetime <= 0), "expired" and "not-yet-valid"
 *     (critical), "leaf-renewal-overdue" (warn, leaves only, next to any tier:
 *     scan_renewal_overdue), "weak-key" (warn: RSA or EC under the policy's bits). A presented
 *     certificate is the root when it is a self-signed CA, else an intermediate;
 *   - "no-certificate" (critical), "chain-too-long" (warn: over SCAN_MAX_CHAIN);
 *   - tls13_only: "old-tls-version" (page: the main handshake negotiated below 1.3),
 *     "tls10-accepted", "tls11-accepted", "tls12-accepted" (page);
 *   - require_client_cert: "no-client-cert-accepted" (critical); strict: "plaintext-accepted"
 *     (critical); want_alpn: "alpn-mismatch" (warn);
 *   - when HTTP was probed: "https-no-answer", "hsts-missing", "hsts-max-age-short",
 *     "http-not-redirected": warn when require_hsts, else info.
 * Probes that did not run (-1) give no finding. Messages are one sentence naming the
 * certificate (its subject, else its SPIFFE ID) or the endpoint, and the time left. */
size_t scan_evaluate(const struct scan_result *r, const struct scan_policy *p, int64_t now,
                     struct scan_finding *out, size_t cap);

/* scan_exit_code returns the exit code for |num| findings of |num_results| results: 3 when an
 * endpoint was not reached, else 2 for any page or critical finding, 1 for any warning, 0. */
int scan_exit_code(const struct scan_result *results, size_t num_results,
                   const struct scan_finding *findings, size_t num);

#endif
