#include "lib/base/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "lib/base/timefmt.h"

static FILE *out_file;
static enum weft_log_level min_level = WEFT_LOG_INFO;

void weft_log_set_output(FILE *f, enum weft_log_level min)
{
    out_file = f;
    min_level = min;
}

static const char *level_name(enum weft_log_level level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    return (unsigned)level < 4 ? names[level] : "info";
}

/* append adds |s| at |*used| in |buf|, never past |len| - 1. */
static void append(char *buf, size_t len, size_t *used, const char *s, size_t n)
{
    if (*used + 1 >= len) {
        return;
    }
    size_t room = len - 1 - *used;
    n = n < room ? n : room;
    memcpy(buf + *used, s, n);
    *used += n;
    buf[*used] = '\0';
}

static void append_value(char *buf, size_t len, size_t *used, const char *v)
{
    if (v == NULL) {
        v = "";
    }
    bool quote = *v == '\0';
    for (const char *p = v; *p != '\0' && !quote; p++) {
        unsigned char c = (unsigned char)*p;
        quote = c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f;
    }
    if (!quote) {
        append(buf, len, used, v, strlen(v));
        return;
    }
    append(buf, len, used, "\"", 1);
    for (const char *p = v; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            append(buf, len, used, esc, 2);
        } else if (c == '\n') {
            append(buf, len, used, "\\n", 2);
        } else if (c < ' ' || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            append(buf, len, used, esc, 4);
        } else {
            append(buf, len, used, (const char *)p, 1);
        }
    }
    append(buf, len, used, "\"", 1);
}

static void format_kv(char *buf, size_t len, long long ts, enum weft_log_level level,
                      const char *msg, const struct weft_kv *kv, size_t num_kv)
{
    char when[WEFT_RFC3339_LEN];
    size_t used = 0;
    buf[0] = '\0';
    weft_time_format_rfc3339(when, ts);
    append(buf, len, &used, "ts=", 3);
    append(buf, len, &used, when, strlen(when));
    append(buf, len, &used, " level=", 7);
    append(buf, len, &used, level_name(level), strlen(level_name(level)));
    append(buf, len, &used, " msg=", 5);
    append_value(buf, len, &used, msg);
    for (size_t i = 0; i < num_kv; i++) {
        append(buf, len, &used, " ", 1);
        append(buf, len, &used, kv[i].key, strlen(kv[i].key));
        append(buf, len, &used, "=", 1);
        append_value(buf, len, &used, kv[i].value);
    }
}

/* collect reads |num_kv| pairs of variadic arguments (at most WEFT_LOG_MAX_KV). */
static size_t collect(struct weft_kv *kv, int num_kv, va_list ap)
{
    size_t n = 0;
    for (int i = 0; i < num_kv; i++) {
        const char *k = va_arg(ap, const char *), *v = va_arg(ap, const char *);
        if (n < WEFT_LOG_MAX_KV) {
            kv[n++] = (struct weft_kv){k, v};
        }
    }
    return n;
}

void weft_log_format(char *buf, size_t len, long long ts, enum weft_log_level level,
                     const char *msg, int num_kv, ...)
{
    struct weft_kv kv[WEFT_LOG_MAX_KV];
    va_list ap;
    va_start(ap, num_kv);
    size_t n = collect(kv, num_kv, ap);
    va_end(ap);
    format_kv(buf, len, ts, level, msg, kv, n);
}

void weft_log_format_kv(char *buf, size_t len, long long ts, enum weft_log_level level,
                        const char *msg, const struct weft_kv *kv, size_t num_kv)
{
    format_kv(buf, len, ts, level, msg, kv, num_kv);
}

void weft_log_kv(enum weft_log_level level, const char *msg, const struct weft_kv *kv,
                 size_t num_kv)
{
    if (level < min_level) {
        return;
    }
    char line[4096];
    format_kv(line, sizeof(line), (long long)time(NULL), level, msg, kv, num_kv);
    FILE *f = out_file != NULL ? out_file : stderr;
    fprintf(f, "%s\n", line);
    fflush(f);
}

void weft_log(enum weft_log_level level, const char *msg, int num_kv, ...)
{
    if (level < min_level) {
        return;
    }
    struct weft_kv kv[WEFT_LOG_MAX_KV];
    va_list ap;
    va_start(ap, num_kv);
    size_t n = collect(kv, num_kv, ap);
    va_end(ap);
    weft_log_kv(level, msg, kv, n);
}
