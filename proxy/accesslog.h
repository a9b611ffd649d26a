/* proxy/accesslog.h: one line per proxied connection (DESIGN.md §7; issue 6): who the peer was
 * (its verified SPIFFE ID, or none), where it went, the decision and its reason (the deciding
 * policy and rule), bytes each way, how long it lasted, the TLS version and whether the session
 * was resumed, and why it closed. The line is logfmt through lib/base/log.h, so a field a peer
 * controls cannot forge another. */
#ifndef WEFT_PROXY_ACCESSLOG_H
#define WEFT_PROXY_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/log.h"

struct proxy_access {
    const char *direction; /* "inbound" or "outbound" */
    const char *src, *dst; /* "IP:port" ("[IPv6]:port") */
    const char *peer_id;   /* the verified SPIFFE ID; NULL or "" for a plaintext peer */
    const char *decision;  /* "allow", "deny", "passthrough" (outside the mesh), "refused" */
    const char *policy;    /* "ns/name" that decided, NULL when none */
    int64_t rule;          /* its rule index, -1 when none */
    const char *reason;    /* policy_reason_str, or why it was refused */
    /* only when a dry-run policy matched or would have decided otherwise (policy/snapshot.h):
     * what enforcing it would do; NULL: the fields are left out */
    const char *dry_run; /* "allow" or "deny" */
    const char *dry_run_policy;
    int64_t dry_run_rule; /* -1 when none */
    const char *dry_run_reason;
    const char *audit; /* the AUDIT policy whose rule matched, "ns/name"; NULL: left out */
    int64_t audit_rule;
    uint64_t bytes_in;  /* from the connecting side */
    uint64_t bytes_out; /* to the connecting side */
    int64_t duration_ms;
    const char *tls;   /* "TLSv1.3", or NULL for plaintext */
    bool resumed;      /* a TLS session was resumed */
    const char *close; /* why the connection ended ("done", "idle timeout", "peer revoked") */
};

#define PROXY_ACCESS_FIELDS 20

/* proxy_access_fields fills |kv| with the line's fields in their fixed order (numbers written
 * into |scratch|, which must outlive |kv|); returns how many. The dry-run and audit fields come
 * right after reason, the names policy_result_format uses, when there are any. */
size_t proxy_access_fields(const struct proxy_access *a, struct weft_kv kv[PROXY_ACCESS_FIELDS],
                           char scratch[6][24]);

/* proxy_access_log writes the line (level info, msg=connection). */
void proxy_access_log(const struct proxy_access *a);

#endif
