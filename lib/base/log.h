/* lib/base/log.h: logfmt lines on stderr (DESIGN.md §7): ts=... level=... msg=... key=value.
 * Values with spaces, quotes, '=' or control characters are quoted and escaped, so a field a
 * peer controls cannot forge another field or another line. */
#ifndef WEFT_LIB_BASE_LOG_H
#define WEFT_LIB_BASE_LOG_H

#include <stddef.h>
#include <stdio.h>

enum weft_log_level {
    WEFT_LOG_DEBUG = 0,
    WEFT_LOG_INFO,
    WEFT_LOG_WARN,
    WEFT_LOG_ERROR,
};

/* weft_log_set_output sends lines to |f| instead of stderr (tests), at |min| and above. */
void weft_log_set_output(FILE *f, enum weft_log_level min);

/* weft_log writes one line: |msg|, then |num_kv| key/value string pairs from the arguments
 * (const char *key, const char *value, ...). A NULL value prints as "". */
void weft_log(enum weft_log_level level, const char *msg, int num_kv, ...);

/* struct weft_kv is one field of a line; weft_log_kv and weft_log_format_kv take them as an array
 * (a line whose fields are computed, such as the proxy's access log). */
struct weft_kv {
    const char *key;
    const char *value;
};

#define WEFT_LOG_MAX_KV 32 /* fields of one line; more are left out */

void weft_log_kv(enum weft_log_level level, const char *msg, const struct weft_kv *kv,
                 size_t num_kv);
void weft_log_format_kv(char *buf, size_t len, long long ts, enum weft_log_level level,
                        const char *msg, const struct weft_kv *kv, size_t num_kv);

/* weft_log_format writes the same line (without a trailing newline) into |buf|, at time |ts|
 * (seconds since the epoch). */
void weft_log_format(char *buf, size_t len, long long ts, enum weft_log_level level,
                     const char *msg, int num_kv, ...);

#endif
