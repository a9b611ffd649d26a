/* agent/schedule.h: when the agent renews what it holds, and how it backs off (issue 5). Pure
 * functions over the times and a random value the caller draws, so tests give both.
 *
 *   renewal at half-life +-10 %: from notBefore, (0.5 + j) of the lifetime, j uniform in
 *     [-0.1, +0.1), so a fleet that was issued together does not renew together;
 *   never later than a minute before notAfter (or half the remaining time when less is left);
 *   after a restart, SVIDs are re-minted spread over a window, not all at once;
 *   backoff after a failure: doubles from 1 s up to 30 s, each wait drawn in [d/2, d). */
#ifndef WEFT_AGENT_SCHEDULE_H
#define WEFT_AGENT_SCHEDULE_H

#include <stdint.h>

#define AGENT_BACKOFF_MIN_MS 1000
#define AGENT_BACKOFF_MAX_MS 30000

/* agent_renew_at returns when to renew a certificate valid [not_before, not_after], with
 * |u| uniform in [0, 1) (the jitter draw). Never before |now|. */
int64_t agent_renew_at(int64_t not_before, int64_t not_after, double u, int64_t now);

/* agent_spread_at returns when to re-mint the |i|-th of |n| identities after a restart at
 * |now|, spread evenly over |window_s| seconds with |u| jitter within each slot. */
int64_t agent_spread_at(int64_t now, int64_t window_s, uint32_t i, uint32_t n, double u);

/* agent_backoff_ms returns the wait after |failures| consecutive failures (1, 2, ...), with
 * |u| uniform in [0, 1): in [d/2, d) where d = min(1 s * 2^(failures-1), 30 s). */
int64_t agent_backoff_ms(uint32_t failures, double u);

/* agent_random_unit returns a uniform value in [0, 1) from the kernel's generator. */
double agent_random_unit(void);

#endif
