/* proxy/accesslog.c: see accesslog.h. */
#include "proxy/accesslog.h"

#include <inttypes.h>
#include <stdio.h>

size_t proxy_access_fields(const struct proxy_access *a, struct weft_kv kv[PROXY_ACCESS_FIELDS],
                           char scratch[6][24])
{
    size_t n = 0;
    snprintf(scratch[0], 24, "%" PRId64, a->rule);
    snprintf(scratch[1], 24, "%" PRIu64, a->bytes_in);
    snprintf(scratch[2], 24, "%" PRIu64, a->bytes_out);
    snprintf(scratch[3], 24, "%" PRId64, a->duration_ms);
    kv[n++] = (struct weft_kv){"direction", a->direction};
    kv[n++] = (struct weft_kv){"src", a->src};
    kv[n++] = (struct weft_kv){"dst", a->dst};
    kv[n++] = (struct weft_kv){"peer", a->peer_id != NULL && a->peer_id[0] ? a->peer_id : "-"};
    kv[n++] = (struct weft_kv){"decision", a->decision};
    kv[n++] = (struct weft_kv){"policy", a->policy != NULL ? a->policy : "-"};
    kv[n++] = (struct weft_kv){"rule", a->rule >= 0 ? scratch[0] : "-"};
    kv[n++] = (struct weft_kv){"reason", a->reason};
    if (a->dry_run != NULL) {
        snprintf(scratch[4], 24, "%" PRId64, a->dry_run_rule);
        kv[n++] = (struct weft_kv){"dry_run", a->dry_run};
        kv[n++] =
            (struct weft_kv){"dry_run_policy", a->dry_run_policy != NULL ? a->dry_run_policy : "-"};
        kv[n++] = (struct weft_kv){"dry_run_rule", a->dry_run_rule >= 0 ? scratch[4] : "-"};
        kv[n++] = (struct weft_kv){"dry_run_reason", a->dry_run_reason};
    }
    if (a->audit != NULL) {
        snprintf(scratch[5], 24, "%" PRId64, a->audit_rule);
        kv[n++] = (struct weft_kv){"audit", a->audit};
        kv[n++] = (struct weft_kv){"audit_rule", scratch[5]};
    }
    kv[n++] = (struct weft_kv){"bytes_in", scratch[1]};
    kv[n++] = (struct weft_kv){"bytes_out", scratch[2]};
    kv[n++] = (struct weft_kv){"duration_ms", scratch[3]};
    kv[n++] = (struct weft_kv){"tls", a->tls != NULL ? a->tls : "none"};
    kv[n++] = (struct weft_kv){"resumed", a->tls == NULL ? "-" : a->resumed ? "yes" : "no"};
    kv[n++] = (struct weft_kv){"close", a->close};
    return n;
}

void proxy_access_log(const struct proxy_access *a)
{
    struct weft_kv kv[PROXY_ACCESS_FIELDS];
    char scratch[6][24];
    size_t n = proxy_access_fields(a, kv, scratch);
    weft_log_kv(WEFT_LOG_INFO, "connection", kv, n);
}
