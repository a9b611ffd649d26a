/* lib/base/log_test.c: logfmt lines that a peer's bytes cannot break. */
#include <criterion/criterion.h>

#include "lib/base/log.h"

Test(log, plain_and_quoted_values)
{
    char buf[512];
    weft_log_format(buf, sizeof(buf), 0, WEFT_LOG_INFO, "issued", 3, "id",
                    "spiffe://example.org/ns/a/sa/b", "node", "node a", "empty", "");
    cr_assert_str_eq(buf, "ts=1970-01-01T00:00:00Z level=info msg=issued "
                          "id=spiffe://example.org/ns/a/sa/b node=\"node a\" empty=\"\"");
}

Test(log, a_value_cannot_forge_fields_or_lines)
{
    char buf[512];
    weft_log_format(buf, sizeof(buf), 0, WEFT_LOG_ERROR, "token refused", 1, "node",
                    "x level=info\nts=forged \"q\"\\");
    cr_assert_str_eq(buf, "ts=1970-01-01T00:00:00Z level=error msg=\"token refused\" "
                          "node=\"x level=info\\nts=forged \\\"q\\\"\\\\\"");
    weft_log_format(buf, sizeof(buf), 0, WEFT_LOG_WARN, "m", 1, "k", "\x01\x7f");
    cr_assert_str_eq(buf, "ts=1970-01-01T00:00:00Z level=warn msg=m k=\"\\x01\\x7f\"");
}

Test(log, truncates_without_overrunning)
{
    char buf[16];
    weft_log_format(buf, sizeof(buf), 0, WEFT_LOG_INFO, "a long message", 0);
    cr_assert_eq(strlen(buf), sizeof(buf) - 1);
}

Test(log, fields_given_as_an_array_read_the_same)
{
    char a[512], b[512];
    struct weft_kv kv[] = {{"peer", "spiffe://example.org/ns/a/sa/b"}, {"reason", "a b"}};
    weft_log_format_kv(a, sizeof(a), 0, WEFT_LOG_INFO, "connection", kv, 2);
    weft_log_format(b, sizeof(b), 0, WEFT_LOG_INFO, "connection", 2, "peer",
                    "spiffe://example.org/ns/a/sa/b", "reason", "a b");
    cr_assert_str_eq(a, b);
    cr_assert_str_eq(a, "ts=1970-01-01T00:00:00Z level=info msg=connection "
                        "peer=spiffe://example.org/ns/a/sa/b reason=\"a b\"");
}
