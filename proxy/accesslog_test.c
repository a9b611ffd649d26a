/* proxy/accesslog_test.c: the access-log line's fields, order and escaping. */
#include <criterion/criterion.h>

#include "proxy/accesslog.h"

static const char *line(const struct proxy_access *a)
{
    static char buf[1024];
    struct weft_kv kv[PROXY_ACCESS_FIELDS];
    char scratch[6][24];
    size_t n = proxy_access_fields(a, kv, scratch);
    weft_log_format_kv(buf, sizeof(buf), 0, WEFT_LOG_INFO, "connection", kv, n);
    return buf;
}

Test(accesslog, an_allowed_mtls_connection)
{
    struct proxy_access a = {.direction = "inbound",
                             .src = "198.18.0.2:40512",
                             .dst = "198.18.0.3:8080",
                             .peer_id = "spiffe://example.org/ns/shop/sa/frontend",
                             .decision = "allow",
                             .policy = "shop/backend-allow-frontend",
                             .rule = 0,
                             .reason = "allow-matched",
                             .bytes_in = 512,
                             .bytes_out = 18000,
                             .duration_ms = 42,
                             .tls = "TLSv1.3",
                             .resumed = true,
                             .close = "done"};
    cr_assert_str_eq(line(&a), "ts=1970-01-01T00:00:00Z level=info msg=connection "
                               "direction=inbound src=198.18.0.2:40512 dst=198.18.0.3:8080 "
                               "peer=spiffe://example.org/ns/shop/sa/frontend decision=allow "
                               "policy=shop/backend-allow-frontend rule=0 reason=allow-matched "
                               "bytes_in=512 bytes_out=18000 duration_ms=42 tls=TLSv1.3 "
                               "resumed=yes close=done");
}

Test(accesslog, a_plaintext_denial_and_a_hostile_reason)
{
    struct proxy_access a = {.direction = "inbound",
                             .src = "198.18.0.9:1",
                             .dst = "198.18.0.3:8080",
                             .decision = "deny",
                             .rule = -1,
                             .reason = "mtls-strict",
                             .close = "x decision=allow\n"};
    cr_assert_str_eq(line(&a), "ts=1970-01-01T00:00:00Z level=info msg=connection "
                               "direction=inbound src=198.18.0.9:1 dst=198.18.0.3:8080 peer=- "
                               "decision=deny policy=- rule=- reason=mtls-strict bytes_in=0 "
                               "bytes_out=0 duration_ms=0 tls=none resumed=- "
                               "close=\"x decision=allow\\n\"");
}

Test(accesslog, a_dry_run_and_an_audit_rule_ride_along)
{
    struct proxy_access a = {.direction = "inbound",
                             .src = "198.18.0.2:40512",
                             .dst = "198.18.0.3:8080",
                             .peer_id = "spiffe://example.org/ns/shop/sa/frontend",
                             .decision = "allow",
                             .rule = -1,
                             .reason = "no-policy",
                             .dry_run = "deny",
                             .dry_run_policy = "shop/lockdown",
                             .dry_run_rule = 2,
                             .dry_run_reason = "deny-matched",
                             .audit = "shop/watch",
                             .audit_rule = 0,
                             .tls = "TLSv1.3",
                             .close = "done"};
    cr_assert_str_eq(line(&a), "ts=1970-01-01T00:00:00Z level=info msg=connection "
                               "direction=inbound src=198.18.0.2:40512 dst=198.18.0.3:8080 "
                               "peer=spiffe://example.org/ns/shop/sa/frontend decision=allow "
                               "policy=- rule=- reason=no-policy dry_run=deny "
                               "dry_run_policy=shop/lockdown dry_run_rule=2 "
                               "dry_run_reason=deny-matched audit=shop/watch audit_rule=0 "
                               "bytes_in=0 bytes_out=0 duration_ms=0 tls=TLSv1.3 resumed=no "
                               "close=done");
}
