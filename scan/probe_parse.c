/* scan/probe_parse.c: the parsers of scan/probe.h: endpoints (from the operator or the CA's
 * inventory), Strict-Transport-Security values and HTTP response heads (from peers). */
#include "scan/probe.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include <http_parser.h>
#include <openssl/bytestring.h>

#include "lib/base/mem.h"

/* --- endpoints ------------------------------------------------------------------------------- */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

/* parse_port reads 1 to 65535 from all of |s| (|len| bytes), digits only. */
static bool parse_port(int *out, const char *s, size_t len)
{
    if (len == 0 || len > 5) {
        return false;
    }
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return false;
    }
    *out = v;
    return true;
}

int scan_endpoint_parse(struct scan_endpoint *out, const char *s, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    size_t len = strnlen(s, SCAN_NAME_MAX + 1);
    if (len > SCAN_NAME_MAX) {
        snprintf(err, err_len, "scan: endpoint \"%.40s...\" is over %d bytes", s, SCAN_NAME_MAX);
        return WEFT_ELIMIT;
    }
    if (len == 0) {
        snprintf(err, err_len, "scan: empty endpoint (want HOST:PORT, [V6]:PORT or https://HOST)");
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(err, err_len,
                     "scan: endpoint \"%s\" has a space or a byte outside printable ASCII at "
                     "offset %zu",
                     s, i);
            return WEFT_EINVAL;
        }
    }
    const char *p = s;
    const char *end = s + len;
    if (strncasecmp(p, "https://", 8) == 0) {
        out->https = true;
        p += 8;
    } else if (strstr(p, "://") != NULL) {
        snprintf(err, err_len, "scan: endpoint \"%s\": only https:// URLs can be scanned", s);
        return WEFT_EINVAL;
    }
    /* the authority ends at the path */
    const char *auth_end = out->https ? memchr(p, '/', (size_t)(end - p)) : NULL;
    if (auth_end == NULL) {
        auth_end = end;
    }
    if (memchr(p, '@', (size_t)(auth_end - p)) != NULL) {
        snprintf(err, err_len, "scan: endpoint \"%s\": user info is not allowed", s);
        return WEFT_EINVAL;
    }
    const char *host, *host_end, *port = NULL;
    bool bracketed = *p == '[';
    if (bracketed) {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL) {
            snprintf(err, err_len, "scan: endpoint \"%s\": '[' without ']'", s);
            return WEFT_EINVAL;
        }
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':') {
                snprintf(err, err_len, "scan: endpoint \"%s\": want ':' after ']'", s);
                return WEFT_EINVAL;
            }
            port = host_end + 2;
        }
    } else {
        host = p;
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (host_end != NULL) {
            port = host_end + 1;
        } else {
            host_end = auth_end;
        }
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0) {
        snprintf(err, err_len, "scan: endpoint \"%s\" has no host", s);
        return WEFT_EINVAL;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (bracketed) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1) {
            snprintf(err, err_len, "scan: endpoint \"%s\": \"%s\" is not an IPv6 address", s,
                     out->host);
            return WEFT_EINVAL;
        }
    } else {
        for (size_t i = 0; i < host_len; i++) {
            if (!name_char(host[i])) {
                snprintf(err, err_len, "scan: endpoint \"%s\": '%c' cannot be in a host name", s,
                         host[i]);
                return WEFT_EINVAL;
            }
        }
        struct in_addr a4;
        out->host_is_name = inet_pton(AF_INET, out->host, &a4) != 1;
    }
    if (port != NULL) {
        if (!parse_port(&out->port, port, (size_t)(auth_end - port))) {
            snprintf(err, err_len, "scan: endpoint \"%s\": the port must be 1 to 65535", s);
            return WEFT_EINVAL;
        }
    } else if (out->https) {
        out->port = 443;
    } else {
        snprintf(err, err_len, "scan: endpoint \"%s\" has no port (want HOST:PORT)", s);
        return WEFT_EINVAL;
    }
    if (auth_end == end) {
        snprintf(out->path, sizeof(out->path), "/");
    } else {
        size_t path_len = (size_t)(end - auth_end);
        if (memchr(auth_end, '?', path_len) != NULL || memchr(auth_end, '#', path_len) != NULL) {
            snprintf(err, err_len, "scan: endpoint \"%s\": no query or fragment, a path only", s);
            return WEFT_EINVAL;
        }
        memcpy(out->path, auth_end, path_len);
        out->path[path_len] = '\0';
    }
    return WEFT_OK;
}

/* --- Strict-Transport-Security (RFC 6797 §6.1) ----------------------------------------------- */

static bool is_ows(uint8_t c) { return c == ' ' || c == '\t'; }

/* RFC 7230 §3.2.6 tchar */
static bool is_tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void skip_ows(CBS *cbs)
{
    uint8_t c;
    while (CBS_len(cbs) > 0 && (c = CBS_data(cbs)[0], is_ows(c))) {
        CBS_skip(cbs, 1);
    }
}

/* get_token takes 1*tchar from |cbs| into |out| (borrowed). */
static bool get_token(CBS *cbs, CBS *out)
{
    size_t n = 0;
    while (n < CBS_len(cbs) && is_tchar(CBS_data(cbs)[n])) {
        n++;
    }
    return n > 0 && CBS_get_bytes(cbs, out, n);
}

/* get_value takes a token or a quoted-string (RFC 7230 §3.2.6) and writes its unquoted text,
 * cut to |cap| - 1 bytes, into |out|; |*out_long| says it was cut. */
static bool get_value(CBS *cbs, char *out, size_t cap, bool *out_long)
{
    size_t n = 0;
    *out_long = false;
    uint8_t c;
    if (!CBS_get_u8(cbs, &c)) {
        return false;
    }
    if (c != '"') {
        if (!is_tchar(c)) {
            return false;
        }
        const uint8_t *start = CBS_data(cbs) - 1; /* the byte just taken */
        size_t total = 1;
        while (CBS_len(cbs) > 0 && is_tchar(CBS_data(cbs)[0])) {
            CBS_skip(cbs, 1);
            total++;
        }
        n = total < cap - 1 ? total : cap - 1;
        *out_long = total > n;
        memcpy(out, start, n);
        out[n] = '\0';
        return true;
    }
    for (;;) {
        if (!CBS_get_u8(cbs, &c)) {
            return false; /* no closing quote */
        }
        if (c == '"') {
            break;
        }
        if (c == '\\' && !CBS_get_u8(cbs, &c)) {
            return false;
        }
        if (c < 0x20 && c != '\t') {
            return false;
        }
        if (n < cap - 1) {
            out[n++] = (char)c;
        } else {
            *out_long = true;
        }
    }
    out[n] = '\0';
    return true;
}

static bool cbs_is(const CBS *cbs, const char *name)
{
    size_t n = strlen(name);
    return CBS_len(cbs) == n && strncasecmp((const char *)CBS_data(cbs), name, n) == 0;
}

static int hsts_parse(struct scan_hsts *out, const char *value, size_t len);

int scan_hsts_parse(struct scan_hsts *out, const char *value, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (len > SCAN_HSTS_MAX) {
        return WEFT_ELIMIT;
    }
    int rc = hsts_parse(out, value, len);
    if (rc != WEFT_OK) {
        memset(out, 0, sizeof(*out)); /* nothing half-read */
    }
    return rc;
}

static int hsts_parse(struct scan_hsts *out, const char *value, size_t len)
{
    CBS cbs;
    CBS_init(&cbs, (const uint8_t *)value, len);
    bool seen_max_age = false, seen_sub = false, seen_preload = false;
    for (;;) {
        skip_ows(&cbs);
        CBS name;
        if (CBS_len(&cbs) > 0 && CBS_data(&cbs)[0] != ';') {
            if (!get_token(&cbs, &name)) {
                return WEFT_EINVAL;
            }
            skip_ows(&cbs);
            char val[32];
            bool has_value = false, val_long = false;
            if (CBS_len(&cbs) > 0 && CBS_data(&cbs)[0] == '=') {
                CBS_skip(&cbs, 1);
                skip_ows(&cbs);
                if (!get_value(&cbs, val, sizeof(val), &val_long)) {
                    return WEFT_EINVAL;
                }
                has_value = true;
                skip_ows(&cbs);
            }
            if (cbs_is(&name, "max-age")) {
                /* delta-seconds = 1*DIGIT (RFC 6797 §6.1.1); a huge one saturates */
                if (seen_max_age || !has_value || val[0] == '\0') {
                    return WEFT_EINVAL;
                }
                int64_t v = 0;
                for (const char *d = val; *d != '\0'; d++) {
                    if (*d < '0' || *d > '9') {
                        return WEFT_EINVAL;
                    }
                    v = v > (INT64_MAX - 9) / 10 ? INT64_MAX : v * 10 + (*d - '0');
                }
                if (val_long) {
                    v = INT64_MAX; /* more digits than fit in the buffer */
                }
                out->max_age = v;
                seen_max_age = true;
            } else if (cbs_is(&name, "includeSubDomains")) {
                if (seen_sub) {
                    return WEFT_EINVAL;
                }
                seen_sub = out->include_subdomains = true;
            } else if (cbs_is(&name, "preload")) {
                if (seen_preload) {
                    return WEFT_EINVAL;
                }
                seen_preload = out->preload = true;
            }
            /* unknown directives are ignored (§6.1 rule 3) */
        }
        if (CBS_len(&cbs) == 0) {
            break;
        }
        uint8_t semi;
        if (!CBS_get_u8(&cbs, &semi) || semi != ';') {
            return WEFT_EINVAL;
        }
    }
    return seen_max_age ? WEFT_OK : WEFT_EINVAL;
}

/* --- HTTP response heads --------------------------------------------------------------------- */

struct head_state {
    struct scan_http_head *h;
    char field[64]; /* the current header's name; longer names are of no interest */
    size_t field_len;
    bool field_long, in_value;
    enum { VAL_NONE, VAL_HSTS, VAL_LOCATION } which;
    char hsts[SCAN_HSTS_MAX + 1];
    size_t hsts_len;
    bool hsts_long, hsts_done, location_done;
    size_t location_len;
    bool complete;
};

static void end_value(struct head_state *st)
{
    if (st->which == VAL_HSTS) {
        st->hsts_done = true;
        st->h->hsts_seen = true;
        st->h->hsts_valid =
            !st->hsts_long && scan_hsts_parse(&st->h->hsts, st->hsts, st->hsts_len) == WEFT_OK;
    } else if (st->which == VAL_LOCATION) {
        st->location_done = true;
    }
    st->which = VAL_NONE;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct head_state *st = p->data;
    if (st->in_value) {
        end_value(st);
        st->in_value = false;
        st->field_len = 0;
        st->field_long = false;
    }
    if (len > sizeof(st->field) - 1 - st->field_len) {
        st->field_long = true;
        return 0;
    }
    memcpy(st->field + st->field_len, at, len);
    st->field_len += len;
    st->field[st->field_len] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct head_state *st = p->data;
    if (!st->in_value) {
        st->in_value = true;
        st->which = VAL_NONE;
        /* RFC 6797 §8.1: only the first Strict-Transport-Security header counts */
        if (!st->field_long && !st->hsts_done &&
            strcasecmp(st->field, "strict-transport-security") == 0) {
            st->which = VAL_HSTS;
        } else if (!st->field_long && !st->location_done &&
                   strcasecmp(st->field, "location") == 0) {
            st->which = VAL_LOCATION;
        }
    }
    if (st->which == VAL_HSTS) {
        if (len > SCAN_HSTS_MAX - st->hsts_len) {
            st->hsts_long = true;
        } else {
            memcpy(st->hsts + st->hsts_len, at, len);
            st->hsts_len += len;
        }
    } else if (st->which == VAL_LOCATION) {
        size_t room = SCAN_LOCATION_MAX - st->location_len;
        size_t n = len < room ? len : room;
        memcpy(st->h->location + st->location_len, at, n);
        st->location_len += n;
        st->h->location[st->location_len] = '\0';
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct head_state *st = p->data;
    if (st->in_value) {
        end_value(st);
    }
    st->complete = true;
    st->h->status = (int)p->status_code;
    http_parser_pause(p, 1); /* the body is not read */
    return 0;
}

int scan_http_head_parse(struct scan_http_head *out, const char *buf, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (len > SCAN_HTTP_HEAD_MAX) {
        len = SCAN_HTTP_HEAD_MAX; /* what lies past the limit is never looked at */
    }
    /* on the heap: SCAN_HSTS_MAX of value buffer is too much for a probe thread's stack */
    struct head_state *st = weft_xcalloc(1, sizeof(*st));
    st->h = out;
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = st;
    http_parser_settings settings;
    http_parser_settings_init(&settings);
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    size_t used = http_parser_execute(&parser, &settings, buf, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&parser);
    int rc;
    if (st->complete) {
        /* RFC 9112 §4: status-code = 3DIGIT; http_parser takes fewer */
        rc = out->status >= 100 && out->status <= 999 ? WEFT_OK : WEFT_EPROTO;
    } else if (e != HPE_OK || used != len) {
        rc = WEFT_EPROTO;
    } else if (len >= SCAN_HTTP_HEAD_MAX) {
        rc = WEFT_ELIMIT;
    } else {
        rc = WEFT_EAGAIN;
    }
    free(st);
    if (rc != WEFT_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}
