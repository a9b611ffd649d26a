/* lib/base/timefmt_test.c: the contract of the RFC 3339 and duration helpers. */
#include <criterion/criterion.h>
#include <string.h>

#include "lib/base/timefmt.h"

Test(timefmt, parses_utc_and_offsets)
{
    int64_t t;
    cr_assert_eq(weft_time_parse_rfc3339(&t, "1970-01-01T00:00:00Z"), WEFT_OK);
    cr_assert_eq(t, 0);
    cr_assert_eq(weft_time_parse_rfc3339(&t, "2020-03-24T14:30:00Z"), WEFT_OK);
    cr_assert_eq(t, 1585060200);
    cr_assert_eq(weft_time_parse_rfc3339(&t, "2020-03-24T15:30:00+01:00"), WEFT_OK);
    cr_assert_eq(t, 1585060200);
    cr_assert_eq(weft_time_parse_rfc3339(&t, "2020-03-24T13:30:00.123456-01:00"), WEFT_OK);
    cr_assert_eq(t, 1585060200);
    cr_assert_eq(weft_time_parse_rfc3339(&t, "2020-03-24t14:30:00z"), WEFT_OK);
    cr_assert_eq(t, 1585060200);
}

Test(timefmt, rejects_what_is_not_rfc3339)
{
    int64_t t = 42;
    const char *bad[] = {"",
                         "2020-03-24",
                         "2020-03-24 14:30:00Z",
                         "2020-03-24T14:30:00",
                         "2020-03-24T14:30:00+0100",
                         "2020-02-30T00:00:00Z",
                         "2020-13-01T00:00:00Z",
                         "2020-03-24T24:00:00Z",
                         "2020-03-24T14:30:00.Z",
                         "2020-03-24T14:30:00Zjunk",
                         "yesterday"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_eq(weft_time_parse_rfc3339(&t, bad[i]), WEFT_EINVAL, "accepted \"%s\"", bad[i]);
    }
    cr_assert_eq(t, 42, "a failed parse must not write its output");
}

Test(timefmt, formats_round_trip)
{
    char buf[WEFT_RFC3339_LEN];
    int64_t t;
    weft_time_format_rfc3339(buf, 1585060200);
    cr_assert_str_eq(buf, "2020-03-24T14:30:00Z");
    cr_assert_eq(weft_time_parse_rfc3339(&t, buf), WEFT_OK);
    cr_assert_eq(t, 1585060200);
}

Test(timefmt, durations)
{
    int64_t s;
    cr_assert_eq(weft_duration_parse(&s, "90s"), WEFT_OK);
    cr_assert_eq(s, 90);
    cr_assert_eq(weft_duration_parse(&s, "1h30m"), WEFT_OK);
    cr_assert_eq(s, 5400);
    cr_assert_eq(weft_duration_parse(&s, "7d"), WEFT_OK);
    cr_assert_eq(s, 7 * 86400);
    cr_assert_eq(weft_duration_parse(&s, "8760h"), WEFT_OK);
    cr_assert_eq(s, 8760 * 3600);
    cr_assert_eq(weft_duration_parse(&s, ""), WEFT_EINVAL);
    cr_assert_eq(weft_duration_parse(&s, "0s"), WEFT_EINVAL);
    cr_assert_eq(weft_duration_parse(&s, "10"), WEFT_EINVAL);
    cr_assert_eq(weft_duration_parse(&s, "h"), WEFT_EINVAL);
    cr_assert_eq(weft_duration_parse(&s, "5w"), WEFT_EINVAL);
    cr_assert_eq(weft_duration_parse(&s, "-5s"), WEFT_EINVAL);
    cr_assert_eq(weft_duration_parse(&s, "36600d"), WEFT_OK);
    cr_assert_eq(weft_duration_parse(&s, "36601d"), WEFT_ELIMIT);
    cr_assert_eq(weft_duration_parse(&s, "99999999999999999999s"), WEFT_ELIMIT);
}

Test(timefmt, duration_format)
{
    char buf[32];
    weft_duration_format(buf, sizeof(buf), 0);
    cr_assert_str_eq(buf, "0s");
    weft_duration_format(buf, sizeof(buf), 3552);
    cr_assert_str_eq(buf, "59m12s");
    weft_duration_format(buf, sizeof(buf), 86400 * 3 + 3600 * 4 + 5);
    cr_assert_str_eq(buf, "3d4h");
    weft_duration_format(buf, sizeof(buf), -3600);
    cr_assert_str_eq(buf, "-1h0m");
}
