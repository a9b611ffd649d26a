/* lib/base/timefmt.h: RFC 3339 timestamps and Go-style durations ("1h30m"), for flags, logs
 * and certificate validity. Times are int64 seconds since the Unix epoch, UTC. */
#ifndef WEFT_LIB_BASE_TIMEFMT_H
#define WEFT_LIB_BASE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define WEFT_RFC3339_LEN 21 /* "2006-01-02T15:04:05Z" and its NUL */

/* weft_time_parse_rfc3339 reads "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" (the 'T' and 'Z'
 * may be lowercase; fractions are dropped). Returns WEFT_EINVAL for anything else. */
WEFT_MUST_USE int weft_time_parse_rfc3339(int64_t *out, const char *s);

/* weft_time_format_rfc3339 writes |t| as "YYYY-MM-DDTHH:MM:SSZ" into |buf|. */
void weft_time_format_rfc3339(char buf[WEFT_RFC3339_LEN], int64_t t);

/* weft_duration_parse reads a positive duration made of <integer><unit> parts, units d, h, m,
 * s ("90s", "1h30m", "7d"). Returns WEFT_EINVAL for anything else, WEFT_ELIMIT past 100 years. */
WEFT_MUST_USE int weft_duration_parse(int64_t *out_s, const char *s);

/* weft_duration_format writes |s| seconds the way a person reads them: "3d4h", "59m12s", "0s".
 * Negative durations get a leading '-'. */
void weft_duration_format(char *buf, size_t len, int64_t s);

#endif
