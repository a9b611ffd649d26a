#include "lib/base/timefmt.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_DURATION_S (100LL * 366 * 86400)

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

int weft_time_parse_rfc3339(int64_t *out, const char *s)
{
    int Y, M, D, h, m, sec;
    /* RFC 3339 §5.6: date-time = full-date "T" full-time */
    if (strlen(s) < 20 || !digits(s, 4, &Y) || s[4] != '-' || !digits(s + 5, 2, &M) ||
        s[7] != '-' || !digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &m) || s[16] != ':' ||
        !digits(s + 17, 2, &sec)) {
        return WEFT_EINVAL;
    }
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) {
        return WEFT_EINVAL;
    }
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) {
            return WEFT_EINVAL;
        }
        while (isdigit((unsigned char)*p)) {
            p++;
        }
    }
    int offset = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 || om > 59) {
            return WEFT_EINVAL;
        }
        offset = (oh * 60 + om) * 60 * (*p == '+' ? 1 : -1);
    } else {
        return WEFT_EINVAL;
    }
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second reads as the second before it */
    time_t t = timegm(&tm);
    if (tm.tm_mday != D || tm.tm_mon != M - 1) {
        return WEFT_EINVAL; /* timegm normalised an impossible date such as 02-30 */
    }
    *out = (int64_t)t - offset;
    return WEFT_OK;
}

void weft_time_format_rfc3339(char buf[WEFT_RFC3339_LEN], int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(buf, WEFT_RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, WEFT_RFC3339_LEN, "@%" PRId64, t);
    }
}

int weft_duration_parse(int64_t *out_s, const char *s)
{
    int64_t total = 0;
    if (*s == '\0') {
        return WEFT_EINVAL;
    }
    while (*s != '\0') {
        if (!isdigit((unsigned char)*s)) {
            return WEFT_EINVAL;
        }
        int64_t n = 0;
        while (isdigit((unsigned char)*s)) {
            n = n * 10 + (*s++ - '0');
            if (n > MAX_DURATION_S) {
                return WEFT_ELIMIT;
            }
        }
        int64_t unit;
        switch (*s++) {
        case 'd':
            unit = 86400;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'm':
            unit = 60;
            break;
        case 's':
            unit = 1;
            break;
        default:
            return WEFT_EINVAL;
        }
        total += n * unit;
        if (total > MAX_DURATION_S) {
            return WEFT_ELIMIT;
        }
    }
    if (total == 0) {
        return WEFT_EINVAL;
    }
    *out_s = total;
    return WEFT_OK;
}

void weft_duration_format(char *buf, size_t len, int64_t s)
{
    const char *sign = s < 0 ? "-" : "";
    uint64_t v = s < 0 ? (uint64_t)(-(s + 1)) + 1 : (uint64_t)s;
    uint64_t d = v / 86400, h = v % 86400 / 3600, m = v % 3600 / 60, sec = v % 60;
    if (d > 0) {
        snprintf(buf, len, "%s%" PRIu64 "d%" PRIu64 "h", sign, d, h);
    } else if (h > 0) {
        snprintf(buf, len, "%s%" PRIu64 "h%" PRIu64 "m", sign, h, m);
    } else if (m > 0) {
        snprintf(buf, len, "%s%" PRIu64 "m%" PRIu64 "s", sign, m, sec);
    } else {
        snprintf(buf, len, "%s%" PRIu64 "s", sign, sec);
    }
}
