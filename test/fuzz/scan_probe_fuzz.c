/* Fuzzes scan/probe.h's three parsers of outside bytes. The first byte picks one (its value
 * mod 3): 0, an endpoint (scan_endpoint_parse: on success a host, a port in range and a path
 * that starts with '/', each NUL-terminated within its buffer; on failure an error message);
 * 1, a Strict-Transport-Security value (scan_hsts_parse: max-age never negative, and a failure
 * leaves nothing set); 2, an HTTP response head (scan_http_head_parse: a verdict that more
 * bytes never take back once the head is complete, a Location within its limit). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scan/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_endpoint(const char *in, size_t len)
{
    char *s = malloc(len + 1);
    memcpy(s, in, len);
    s[len] = '\0';
    struct scan_endpoint ep;
    char err[256] = "";
    int rc = scan_endpoint_parse(&ep, s, err, sizeof(err));
    if (rc == WEFT_OK) {
        if (ep.port < 1 || ep.port > 65535 || ep.host[0] == '\0' || ep.path[0] != '/' ||
            strnlen(ep.host, sizeof(ep.host)) == sizeof(ep.host) ||
            strnlen(ep.path, sizeof(ep.path)) == sizeof(ep.path) || strlen(s) > SCAN_NAME_MAX) {
            abort();
        }
    } else if ((rc != WEFT_EINVAL && rc != WEFT_ELIMIT) || err[0] == '\0') {
        abort();
    }
    free(s);
}

static void fuzz_hsts(const char *in, size_t len)
{
    struct scan_hsts h;
    int rc = scan_hsts_parse(&h, in, len);
    if (rc == WEFT_OK) {
        if (h.max_age < 0 || len > SCAN_HSTS_MAX) {
            abort();
        }
    } else if ((rc != WEFT_EINVAL && rc != WEFT_ELIMIT) || h.max_age != 0 || h.include_subdomains ||
               h.preload) {
        abort();
    }
}

static void fuzz_head(const char *in, size_t len)
{
    struct scan_http_head h;
    int rc = scan_http_head_parse(&h, in, len);
    if (strnlen(h.location, sizeof(h.location)) == sizeof(h.location)) {
        abort();
    }
    if (rc == WEFT_OK) {
        if (h.status < 100 || h.status > 999 || (h.hsts_valid && !h.hsts_seen)) {
            abort();
        }
        /* a complete head stays complete, and the same, whatever follows it */
        if (len < SCAN_HTTP_HEAD_MAX) {
            char *more = malloc(len + 1);
            memcpy(more, in, len);
            more[len] = 'x';
            struct scan_http_head h2;
            if (scan_http_head_parse(&h2, more, len + 1) != WEFT_OK || h2.status != h.status ||
                h2.hsts_valid != h.hsts_valid || strcmp(h2.location, h.location) != 0) {
                abort();
            }
            free(more);
        }
    } else if (rc == WEFT_EAGAIN) {
        if (len >= SCAN_HTTP_HEAD_MAX) {
            abort();
        }
    } else if (rc != WEFT_EPROTO && rc != WEFT_ELIMIT) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    /* a copy of exactly |size - 1| bytes, so that ASan sees any read past the end */
    char *in = malloc(size > 1 ? size - 1 : 1);
    memcpy(in, data + 1, size - 1);
    switch (data[0] % 3) {
    case 0:
        fuzz_endpoint(in, size - 1);
        break;
    case 1:
        fuzz_hsts(in, size - 1);
        break;
    default:
        fuzz_head(in, size - 1);
        break;
    }
    free(in);
    return 0;
}
