/* agent/schedule_test.c: renewal times, restart spreading and backoff, with given draws. */
#include <criterion/criterion.h>

#include "agent/schedule.h"

#define NB INT64_C(1700000000)

Test(schedule, renewal_is_at_half_life_within_ten_percent)
{
    int64_t life = 3600;
    cr_assert_eq(agent_renew_at(NB, NB + life, 0.5, NB), NB + 1800, "the middle draw: half-life");
    cr_assert_eq(agent_renew_at(NB, NB + life, 0.0, NB), NB + 1440, "40 %%");
    cr_assert_lt(agent_renew_at(NB, NB + life, 0.999999, NB), NB + 2160, "under 60 %%");
    cr_assert_geq(agent_renew_at(NB, NB + life, 0.999999, NB), NB + 2159);
    /* past the point already (a restart late in the life): now, never in the past */
    cr_assert_eq(agent_renew_at(NB, NB + life, 0.5, NB + 3000), NB + 3000);
    /* a 20 s SVID: the bound of the test, half-life + 10 % */
    for (double u = 0; u < 1; u += 0.01) {
        int64_t at = agent_renew_at(NB, NB + 20, u, NB);
        cr_assert(at >= NB + 8 && at <= NB + 12, "%f -> %lld", u, (long long)(at - NB));
    }
    /* an empty or inverted window: renew now */
    cr_assert_eq(agent_renew_at(NB, NB, 0.5, NB + 5), NB + 5);
}

Test(schedule, a_restart_spreads_reminting_over_the_window)
{
    int64_t first = agent_spread_at(NB, 60, 0, 10, 0.0);
    int64_t last = agent_spread_at(NB, 60, 9, 10, 0.999);
    cr_assert_eq(first, NB);
    cr_assert(last >= NB + 54 && last < NB + 60);
    for (uint32_t i = 1; i < 10; i++) {
        cr_assert_geq(agent_spread_at(NB, 60, i, 10, 0.0), agent_spread_at(NB, 60, i - 1, 10, 0.0));
    }
    cr_assert_eq(agent_spread_at(NB, 60, 0, 0, 0.5), NB, "nothing to spread");
}

Test(schedule, backoff_doubles_to_thirty_seconds_with_jitter)
{
    cr_assert_eq(agent_backoff_ms(1, 0.0), 500);
    cr_assert_eq(agent_backoff_ms(2, 0.0), 1000);
    cr_assert_eq(agent_backoff_ms(3, 0.0), 2000);
    cr_assert_eq(agent_backoff_ms(10, 0.0), 15000);
    cr_assert_lt(agent_backoff_ms(100, 0.999), 30000);
    cr_assert_geq(agent_backoff_ms(100, 0.999), 29000);
    for (int i = 0; i < 1000; i++) {
        double u = agent_random_unit();
        cr_assert(u >= 0 && u < 1);
    }
}
