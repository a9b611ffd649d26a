/* agent/schedule.c: see schedule.h. */
#include "agent/schedule.h"

#include <stdlib.h>
#include <sys/random.h>

int64_t agent_renew_at(int64_t not_before, int64_t not_after, double u, int64_t now)
{
    int64_t life = not_after - not_before;
    if (life <= 0) {
        return now;
    }
    double frac = 0.4 + 0.2 * u; /* 0.5 +- 0.1 */
    int64_t at = not_before + (int64_t)((double)life * frac);
    /* leave room to retry before the cliff: a minute, or half of what is left */
    int64_t left = not_after - now;
    int64_t margin = left > 120 ? 60 : left / 2;
    if (at > not_after - margin) {
        at = not_after - margin;
    }
    return at < now ? now : at;
}

int64_t agent_spread_at(int64_t now, int64_t window_s, uint32_t i, uint32_t n, double u)
{
    if (n == 0 || window_s <= 0) {
        return now;
    }
    double slot = (double)window_s / (double)n;
    return now + (int64_t)(slot * ((double)(i % n) + u));
}

int64_t agent_backoff_ms(uint32_t failures, double u)
{
    int64_t d = AGENT_BACKOFF_MIN_MS;
    for (uint32_t k = 1; k < failures && d < AGENT_BACKOFF_MAX_MS; k++) {
        d *= 2;
    }
    if (d > AGENT_BACKOFF_MAX_MS) {
        d = AGENT_BACKOFF_MAX_MS;
    }
    return d / 2 + (int64_t)((double)(d / 2) * u);
}

double agent_random_unit(void)
{
    uint64_t r = 0;
    while (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
    }
    return (double)(r >> 11) / 9007199254740992.0; /* 53 bits: [0, 1) */
}
