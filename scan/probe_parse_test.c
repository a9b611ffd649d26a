/* scan/probe_parse_test.c: the parsers of scan/probe.h: endpoints, Strict-Transport-Security
 * values, HTTP response heads. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "scan/probe.h"

TestSuite(scan_parse, .timeout = 10);

static struct scan_endpoint ep;
static char err[256];

static void ok(const char *s, const char *host, int port, bool https, bool name, const char *path)
{
    cr_assert_eq(scan_endpoint_parse(&ep, s, err, sizeof(err)), WEFT_OK, "%s: %s", s, err);
    cr_assert_str_eq(ep.host, host, "%s", s);
    cr_assert_eq(ep.port, port, "%s", s);
    cr_assert_eq(ep.https, https, "%s", s);
    cr_assert_eq(ep.host_is_name, name, "%s", s);
    cr_assert_str_eq(ep.path, path, "%s", s);
}

static void bad(const char *s, const char *why)
{
    cr_assert_eq(scan_endpoint_parse(&ep, s, err, sizeof(err)), WEFT_EINVAL, "%s", s);
    cr_assert_not_null(strstr(err, why), "%s: '%s' does not say '%s'", s, err, why);
}

Test(scan_parse, endpoints)
{
    ok("127.0.0.1:8443", "127.0.0.1", 8443, false, false, "/");
    ok("web.default.svc:15443", "web.default.svc", 15443, false, true, "/");
    ok("[::1]:443", "::1", 443, false, false, "/");
    ok("https://example.org", "example.org", 443, true, true, "/");
    ok("HTTPS://example.org:8443/healthz/x", "example.org", 8443, true, true, "/healthz/x");
    ok("https://[2001:db8::1]/", "2001:db8::1", 443, true, false, "/");
    ok("https://[2001:db8::1]:9443", "2001:db8::1", 9443, true, false, "/");
    bad("", "empty");
    bad("127.0.0.1", "no port");
    bad("127.0.0.1:0", "1 to 65535");
    bad("127.0.0.1:65536", "1 to 65535");
    bad("127.0.0.1:44x", "1 to 65535");
    bad("127.0.0.1:", "1 to 65535");
    bad(":443", "no host");
    bad("[::1:443", "without ']'");
    bad("[::1]443", "want ':'");
    bad("[nothex]:443", "not an IPv6");
    bad("http://example.org", "only https://");
    bad("https://user@example.org", "user info");
    bad("https://example.org/?q=1", "no query");
    bad("exa mple.org:443", "space");
    bad("exa\x01mple.org:443", "printable");
    bad("exa%mple.org:443", "'%'");
    bad("example.org:443/path", "1 to 65535");
}

Test(scan_parse, endpoint_length_limit)
{
    char s[SCAN_NAME_MAX + 2];
    memset(s, 'a', sizeof(s));
    memcpy(s + SCAN_NAME_MAX - 4, ":443", 5); /* exactly SCAN_NAME_MAX */
    cr_assert_eq(scan_endpoint_parse(&ep, s, err, sizeof(err)), WEFT_OK, "%s", err);
    memset(s, 'a', sizeof(s));
    memcpy(s + SCAN_NAME_MAX - 3, ":443", 5); /* one past */
    cr_assert_eq(scan_endpoint_parse(&ep, s, err, sizeof(err)), WEFT_ELIMIT);
    cr_assert_not_null(strstr(err, "over 255 bytes"), "%s", err);
}

static struct scan_hsts hsts;

static int hsts_of(const char *v) { return scan_hsts_parse(&hsts, v, strlen(v)); }

Test(scan_parse, hsts_values)
{
    cr_assert_eq(hsts_of("max-age=31536000; includeSubDomains; preload"), WEFT_OK);
    cr_assert_eq(hsts.max_age, 31536000);
    cr_assert(hsts.include_subdomains);
    cr_assert(hsts.preload);
    cr_assert_eq(hsts_of("max-age=0"), WEFT_OK);
    cr_assert_eq(hsts.max_age, 0);
    cr_assert_not(hsts.include_subdomains);
    cr_assert_eq(hsts_of("  MAX-AGE = \"600\" ;INCLUDESUBDOMAINS;;"), WEFT_OK);
    cr_assert_eq(hsts.max_age, 600);
    cr_assert(hsts.include_subdomains);
    cr_assert_eq(hsts_of("includeSubDomains; max-age=5; unknown=\"x;y\"; other"), WEFT_OK);
    cr_assert_eq(hsts.max_age, 5);
    cr_assert_eq(hsts_of("max-age=99999999999999999999999999999999999999999"), WEFT_OK);
    cr_assert_eq(hsts.max_age, INT64_MAX);
    /* invalid, which a browser ignores */
    cr_assert_eq(hsts_of(""), WEFT_EINVAL);
    cr_assert_eq(hsts_of("includeSubDomains"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age="), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age=-1"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age=1e6"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age=\"60"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age=1; max-age=2"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age=1; preload; preload"), WEFT_EINVAL);
    cr_assert_eq(hsts_of("max-age=1 preload"), WEFT_EINVAL);
    cr_assert_eq(hsts.max_age, 0);
}

Test(scan_parse, hsts_length_limit)
{
    char *v = malloc(SCAN_HSTS_MAX + 1);
    memset(v, ' ', SCAN_HSTS_MAX + 1);
    memcpy(v, "max-age=1", 9);
    cr_assert_eq(scan_hsts_parse(&hsts, v, SCAN_HSTS_MAX), WEFT_OK);
    cr_assert_eq(scan_hsts_parse(&hsts, v, SCAN_HSTS_MAX + 1), WEFT_ELIMIT);
    free(v);
}

static struct scan_http_head head;

static int head_of(const char *s) { return scan_http_head_parse(&head, s, strlen(s)); }

Test(scan_parse, http_heads)
{
    cr_assert_eq(head_of("HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=60\r\n"
                         "strict-transport-security: max-age=99; preload\r\n\r\nbody"),
                 WEFT_OK);
    cr_assert_eq(head.status, 200);
    cr_assert(head.hsts_seen);
    cr_assert(head.hsts_valid);
    cr_assert_eq(head.hsts.max_age, 60); /* the first one counts (RFC 6797 §8.1) */
    cr_assert_not(head.hsts.preload);
    cr_assert_eq(head_of("HTTP/1.1 308 Permanent Redirect\r\nLocation: https://x/\r\n\r\n"),
                 WEFT_OK);
    cr_assert_eq(head.status, 308);
    cr_assert_str_eq(head.location, "https://x/");
    cr_assert_not(head.hsts_seen);
    cr_assert_eq(head_of("HTTP/1.0 200 OK\r\nStrict-Transport-Security: preload\r\n\r\n"), WEFT_OK);
    cr_assert(head.hsts_seen);
    cr_assert_not(head.hsts_valid);
    cr_assert_eq(head_of("HTTP/1.1 200 OK\r\nServer: x\r\n"), WEFT_EAGAIN);
    cr_assert_eq(head_of(""), WEFT_EAGAIN);
    cr_assert_eq(head_of("SSH-2.0-OpenSSH\r\n\r\n"), WEFT_EPROTO);
    cr_assert_eq(head_of("\x15\x03\x03\x00\x02\x02\x46"), WEFT_EPROTO);
}

Test(scan_parse, http_head_limit)
{
    size_t len = SCAN_HTTP_HEAD_MAX;
    char *s = malloc(len);
    const char *start = "HTTP/1.1 200 OK\r\nX-Pad: ";
    memcpy(s, start, strlen(start));
    memset(s + strlen(start), 'a', len - strlen(start));
    cr_assert_eq(scan_http_head_parse(&head, s, len), WEFT_ELIMIT);
    cr_assert_eq(scan_http_head_parse(&head, s, len - 1), WEFT_EAGAIN);
    /* a long Location is cut, not refused */
    char *loc = malloc(4096);
    int n = snprintf(loc, 4096, "HTTP/1.1 301 Moved\r\nLocation: https://");
    memset(loc + n, 'b', 2000);
    memcpy(loc + n + 2000, "\r\n\r\n", 5);
    cr_assert_eq(head_of(loc), WEFT_OK);
    cr_assert_eq(strlen(head.location), SCAN_LOCATION_MAX);
    cr_assert_eq(strncmp(head.location, "https://bbb", 11), 0);
    free(loc);
    free(s);
}
