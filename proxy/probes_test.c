/* proxy/probes_test.c: the contract of proxy/probes.h. WEFT_APP_PROBES: what is accepted, each
 * rule and each limit (one past it). The server: against a small app on loopback in this
 * process, every answer the kubelet can get. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "lib/base/log.h"
#include "proxy/probes.h"
#include "test/testlib/certs.h"
#include "test/testlib/http_app.h"
#include "test/testlib/net.h"

/* ---- WEFT_APP_PROBES ---- */

static struct proxy_probes probes;
static char err[PROXY_PROBES_ERR_LEN];

static void parse_setup(void) { proxy_probes_init(&probes); }
static void parse_teardown(void) { proxy_probes_cleanup(&probes); }
TestSuite(probes_parse, .init = parse_setup, .fini = parse_teardown, .timeout = 10);

static int parse(const char *json)
{
    return proxy_probes_parse(&probes, json, strlen(json), err, sizeof(err));
}

/* expect_invalid checks that |json| is refused with |rc| and that the error names |where|. */
static void expect_invalid(const char *json, int rc, const char *where)
{
    cr_assert_eq(parse(json), rc, "%s: %s", json, err);
    cr_assert(strstr(err, where) != NULL, "error \"%s\" should name \"%s\"", err, where);
    cr_assert(strncmp(err, PROXY_PROBES_ENV ": ", strlen(PROXY_PROBES_ENV) + 2) == 0, "%s", err);
    cr_assert_eq(probes.num_probes, 0);
    cr_assert_null(probes.probes);
}

Test(probes_parse, reads_the_injectors_example)
{
    cr_assert_eq(parse("{\"/app-health/web/readyz\": {\"httpGet\": {\"path\": \"/healthz?x=1\","
                       " \"port\": 8080, \"scheme\": \"HTTP\", \"httpHeaders\": [{\"name\": "
                       "\"X-A\", \"value\": \"b\"}]}, \"timeoutSeconds\": 3},"
                       " \"/app-health/web-2/livez\": {\"httpGet\": {\"port\": 8443, \"scheme\":"
                       " \"HTTPS\"}}}"),
                 WEFT_OK, "%s", err);
    cr_assert_eq(probes.num_probes, 2);
    const struct proxy_probe *p = proxy_probes_find(&probes, "/app-health/web/readyz", 22);
    cr_assert_not_null(p);
    cr_assert_str_eq(p->path, "/healthz?x=1");
    cr_assert_eq(p->port, 8080);
    cr_assert(!p->https);
    cr_assert_eq(p->timeout_s, 3);
    cr_assert_eq(p->num_headers, 1);
    cr_assert_str_eq(p->headers[0], "X-A: b");
    p = proxy_probes_find(&probes, "/app-health/web-2/livez", 23);
    cr_assert_not_null(p);
    cr_assert_str_eq(p->path, "/", "the kubelet's default path");
    cr_assert(p->https);
    cr_assert_eq(p->timeout_s, 1, "the kubelet's default timeout");
    cr_assert_null(proxy_probes_find(&probes, "/app-health/web/livez", 21));
    cr_assert_null(proxy_probes_find(&probes, "/app-health/web/readyz/", 23));
}

Test(probes_parse, an_empty_object_is_no_probes)
{
    cr_assert_eq(parse("{}"), WEFT_OK, "%s", err);
    cr_assert_eq(probes.num_probes, 0);
}

Test(probes_parse, refuses_what_is_not_an_object_of_probes)
{
    expect_invalid("", WEFT_EINVAL, "not JSON");
    expect_invalid("{\"/app-health/a/livez\": ", WEFT_EINVAL, "not JSON");
    expect_invalid("[]", WEFT_EINVAL, "not a JSON object");
    /* a NUL inside a string would cut what C sees short: refused */
    expect_invalid(
        "{\"/app-health/a/livez\": {\"httpGet\": {\"port\": 1, \"path\": \"/a\\u0000b\"}}}",
        WEFT_EINVAL, "not JSON");
    expect_invalid("{\"/app-health/a/livez\": 1}", WEFT_EINVAL, "/app-health/a/livez");
    expect_invalid("{\"/app-health/a/livez\": {\"httpGet\": {\"port\": 1}},"
                   " \"/app-health/a/livez\": {\"httpGet\": {\"port\": 2}}}",
                   WEFT_EINVAL, "duplicate");
}

Test(probes_parse, refuses_keys_the_injector_never_writes)
{
    const char *bad[] = {"/app-health/web/ready",   "/app-health/Web/readyz", "/app-health//readyz",
                         "/app-health/-a/readyz",   "/app-health/a-/readyz",  "/health/web/readyz",
                         "/app-health/web/readyz/", "/app-health/a/b/livez",  "app-health/a/livez"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json), "{\"%s\": {\"httpGet\": {\"port\": 80}}}", bad[i]);
        expect_invalid(json, WEFT_EINVAL, "is not /app-health/<container>/");
    }
    char json[256], name[70];
    memset(name, 'a', 64);
    name[64] = '\0'; /* one past a DNS label */
    snprintf(json, sizeof(json), "{\"/app-health/%s/livez\": {\"httpGet\": {\"port\": 80}}}", name);
    expect_invalid(json, WEFT_EINVAL, "is not /app-health/<container>/");
    name[63] = '\0';
    snprintf(json, sizeof(json), "{\"/app-health/%s/livez\": {\"httpGet\": {\"port\": 80}}}", name);
    cr_assert_eq(parse(json), WEFT_OK, "%s", err);
}

Test(probes_parse, refuses_bad_fields_and_names_the_probe_and_the_field)
{
    static const struct {
        const char *value, *where;
    } cases[] = {
        {"{}", "httpGet is missing"},
        {"{\"httpGet\": 1}", "httpGet is missing or not an object"},
        {"{\"httpGet\": {\"port\": 80}, \"exec\": {}}", "exec is not supported"},
        {"{\"httpGet\": {\"port\": 80, \"host\": \"example.com\"}}", "httpGet.host is not"},
        {"{\"httpGet\": {}}", "httpGet.port"},
        {"{\"httpGet\": {\"port\": \"http\"}}", "httpGet.port"},
        {"{\"httpGet\": {\"port\": 0}}", "httpGet.port"},
        {"{\"httpGet\": {\"port\": 65536}}", "httpGet.port"},
        {"{\"httpGet\": {\"port\": 80.5}}", "httpGet.port"},
        {"{\"httpGet\": {\"port\": 80, \"scheme\": \"FTP\"}}", "httpGet.scheme"},
        {"{\"httpGet\": {\"port\": 80, \"scheme\": \"http\"}}", "httpGet.scheme"},
        {"{\"httpGet\": {\"port\": 80, \"path\": \"healthz\"}}", "httpGet.path"},
        {"{\"httpGet\": {\"port\": 80, \"path\": \"/a b\"}}", "httpGet.path"},
        {"{\"httpGet\": {\"port\": 80, \"path\": 1}}", "httpGet.path"},
        {"{\"httpGet\": {\"port\": 80}, \"timeoutSeconds\": 0}", "timeoutSeconds"},
        {"{\"httpGet\": {\"port\": 80}, \"timeoutSeconds\": 61}", "timeoutSeconds"},
        {"{\"httpGet\": {\"port\": 80}, \"timeoutSeconds\": \"1\"}", "timeoutSeconds"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": {}}}", "not an array"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": [1]}}", "httpHeaders[0]"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": [{\"name\": \"A\"}]}}", "httpHeaders[0]"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": [{\"name\": \"A\", \"value\": \"b\","
         " \"x\": 1}]}}",
         "unknown field x"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": [{\"name\": \"A B\", \"value\": \"b\"}]}}",
         "not an HTTP token"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": [{\"name\": \"\", \"value\": \"b\"}]}}",
         "not an HTTP token"},
        {"{\"httpGet\": {\"port\": 80, \"httpHeaders\": [{\"name\": \"A\", \"value\": "
         "\"b\\r\\nX-Injected: 1\"}]}}",
         "control character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json), "{\"/app-health/web/readyz\": %s}", cases[i].value);
        expect_invalid(json, WEFT_EINVAL, cases[i].where);
        cr_assert(strstr(err, "/app-health/web/readyz") != NULL, "%s", err);
    }
}

Test(probes_parse, drops_a_host_header)
{
    cr_assert_eq(parse("{\"/app-health/a/livez\": {\"httpGet\": {\"port\": 80, \"httpHeaders\": "
                       "[{\"name\": \"host\", \"value\": \"x\"}, {\"name\": \"A\", \"value\": "
                       "\"\"}]}}}"),
                 WEFT_OK, "%s", err);
    cr_assert_eq(probes.probes[0].num_headers, 1);
    cr_assert_str_eq(probes.probes[0].headers[0], "A: ");
}

/* many_probes writes an object of |n| probes into |out|. */
static void many_probes(char *out, size_t out_len, size_t n)
{
    size_t used = (size_t)snprintf(out, out_len, "{");
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(out + used, out_len - used,
                                 "%s\"/app-health/c%zu/livez\": {\"httpGet\": {\"port\": 80}}",
                                 i > 0 ? "," : "", i);
    }
    snprintf(out + used, out_len - used, "}");
}

Test(probes_parse, at_most_PROXY_PROBES_MAX_probes)
{
    static char json[16384];
    many_probes(json, sizeof(json), PROXY_PROBES_MAX);
    cr_assert_eq(parse(json), WEFT_OK, "%s", err);
    cr_assert_eq(probes.num_probes, PROXY_PROBES_MAX);
    proxy_probes_cleanup(&probes);
    many_probes(json, sizeof(json), PROXY_PROBES_MAX + 1);
    expect_invalid(json, WEFT_ELIMIT, "65 probes; at most 64");
}

static void many_headers(char *out, size_t out_len, size_t n)
{
    size_t used = (size_t)snprintf(out, out_len,
                                   "{\"/app-health/a/livez\": {\"httpGet\": {\"port\": 80, "
                                   "\"httpHeaders\": [");
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(out + used, out_len - used,
                                 "%s{\"name\": \"X-%zu\", \"value\": \"v\"}", i > 0 ? "," : "", i);
    }
    snprintf(out + used, out_len - used, "]}}}");
}

Test(probes_parse, at_most_PROXY_PROBES_MAX_HEADERS_headers)
{
    char json[4096];
    many_headers(json, sizeof(json), PROXY_PROBES_MAX_HEADERS);
    cr_assert_eq(parse(json), WEFT_OK, "%s", err);
    cr_assert_eq(probes.probes[0].num_headers, PROXY_PROBES_MAX_HEADERS);
    proxy_probes_cleanup(&probes);
    many_headers(json, sizeof(json), PROXY_PROBES_MAX_HEADERS + 1);
    expect_invalid(json, WEFT_ELIMIT, "17 httpGet.httpHeaders; at most 16");
}

/* with_long writes a probe whose |what| ("path", "name" or "value") is |n| bytes long. */
static void with_long(char *out, size_t out_len, const char *what, size_t n)
{
    char *s = malloc(n + 2);
    s[0] = '/';
    memset(s + 1, 'a', n - 1);
    s[n] = '\0';
    if (strcmp(what, "path") == 0) {
        snprintf(out, out_len,
                 "{\"/app-health/a/livez\": {\"httpGet\": {\"port\": 80, "
                 "\"path\": \"%s\"}}}",
                 s);
    } else {
        s[0] = 'a';
        snprintf(out, out_len,
                 "{\"/app-health/a/livez\": {\"httpGet\": {\"port\": 80, "
                 "\"httpHeaders\": [{\"name\": \"%s\", \"value\": \"%s\"}]}}}",
                 strcmp(what, "name") == 0 ? s : "A", strcmp(what, "value") == 0 ? s : "v");
    }
    free(s);
}

Test(probes_parse, limits_on_path_and_header_lengths)
{
    char json[4096];
    static const struct {
        const char *what;
        size_t max;
    } limits[] = {{"path", PROXY_PROBES_MAX_PATH},
                  {"name", PROXY_PROBES_MAX_HEADER_NAME},
                  {"value", PROXY_PROBES_MAX_HEADER_VALUE}};
    for (size_t i = 0; i < 3; i++) {
        with_long(json, sizeof(json), limits[i].what, limits[i].max);
        cr_assert_eq(parse(json), WEFT_OK, "%s at its limit: %s", limits[i].what, err);
        proxy_probes_cleanup(&probes);
        with_long(json, sizeof(json), limits[i].what, limits[i].max + 1);
        expect_invalid(json, WEFT_ELIMIT, "/app-health/a/livez");
    }
}

Test(probes_parse, at_most_PROXY_PROBES_MAX_JSON_bytes)
{
    size_t len = PROXY_PROBES_MAX_JSON + 1;
    char *json = malloc(len);
    memset(json, ' ', len);
    json[0] = '{';
    json[len - 1] = '}';
    cr_assert_eq(proxy_probes_parse(&probes, json, len - 1, err, sizeof(err)), WEFT_EINVAL,
                 "at the limit it is parsed (and unterminated)");
    cr_assert_eq(proxy_probes_parse(&probes, json, len, err, sizeof(err)), WEFT_ELIMIT);
    cr_assert(strstr(err, "65537 bytes; at most 65536") != NULL, "%s", err);
    free(json);
}

/* ---- request heads ---- */

Test(probes_parse, request_heads)
{
    struct proxy_probe_request r;
    const char *get = "GET /app-health/a/livez?x=1 HTTP/1.1\r\nHost: 10.0.0.1:15021\r\n\r\n";
    cr_assert_eq(proxy_probe_request_parse(&r, get, strlen(get)), WEFT_OK);
    cr_assert(r.get);
    cr_assert(!r.has_body);
    cr_assert_str_eq(r.path, "/app-health/a/livez", "without the query");
    cr_assert_eq(proxy_probe_request_parse(&r, get, strlen(get) - 2), WEFT_EAGAIN);
    const char *post = "POST /ready HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    cr_assert_eq(proxy_probe_request_parse(&r, post, strlen(post)), WEFT_OK);
    cr_assert(!r.get);
    cr_assert(r.has_body);
    const char *junk = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    cr_assert_eq(proxy_probe_request_parse(&r, junk, strlen(junk)), WEFT_EPROTO);
    static char big[PROXY_PROBES_MAX_HEAD + 64];
    int n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n", PROXY_PROBES_MAX_PATH, 0);
    cr_assert_eq(proxy_probe_request_parse(&r, big, (size_t)n), WEFT_ELIMIT, "a long target");
    n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n", PROXY_PROBES_MAX_PATH - 1, 0);
    cr_assert_eq(proxy_probe_request_parse(&r, big, (size_t)n), WEFT_OK, "at the limit");
    n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: %0*d", PROXY_PROBES_MAX_HEAD, 0);
    cr_assert_eq(proxy_probe_request_parse(&r, big, (size_t)n), WEFT_ELIMIT, "a long head");
}

/* The server's loop feeds a head as it comes: each piece is parsed once, and the verdict is the
 * whole head's. */
Test(probes_parse, a_head_fed_a_byte_at_a_time)
{
    const char *get = "GET /app-health/a/livez?x=1 HTTP/1.1\r\nHost: 10.0.0.1:15021\r\n\r\n";
    struct proxy_probe_head *h = proxy_probe_head_new();
    struct proxy_probe_request r;
    for (size_t i = 0; i + 1 < strlen(get); i++) {
        cr_assert_eq(proxy_probe_head_feed(h, &r, get + i, 1), WEFT_EAGAIN, "byte %zu", i);
    }
    cr_assert_eq(proxy_probe_head_feed(h, &r, get + strlen(get) - 1, 1), WEFT_OK);
    cr_assert_str_eq(r.path, "/app-health/a/livez");
    cr_assert(r.get);
    memset(&r, 0, sizeof(r));
    cr_assert_eq(proxy_probe_head_feed(h, &r, "POST", 4), WEFT_OK, "a verdict stays");
    cr_assert_str_eq(r.path, "/app-health/a/livez");
    proxy_probe_head_free(h);

    /* over the limit in pieces: no more than PROXY_PROBES_MAX_HEAD bytes are read */
    h = proxy_probe_head_new();
    cr_assert_eq(proxy_probe_head_feed(h, &r, "GET / HTTP/1.1\r\n", 16), WEFT_EAGAIN);
    static char filler[PROXY_PROBES_MAX_HEAD];
    memset(filler, 'x', sizeof(filler));
    memcpy(filler, "X-A: ", 5);
    cr_assert_eq(proxy_probe_head_feed(h, &r, filler, PROXY_PROBES_MAX_HEAD - 17), WEFT_EAGAIN);
    cr_assert_eq(proxy_probe_head_feed(h, &r, "x", 1), WEFT_ELIMIT, "at PROXY_PROBES_MAX_HEAD");
    proxy_probe_head_free(h);
}

/* ---- the server, against an app on loopback ---- */

static int app_port;
static atomic_bool ready_now;
static struct proxy_probe_server *server;

/* tls_app_main serves HTTPS with a certificate the kubelet would not trust (a SPIFFE leaf
 * minted here, for a name nobody asks for): 200 "tls fine" to each request. */
static void *tls_app_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    struct testlib_cred root = {0}, leaf = {0};
    int64_t now = (int64_t)time(NULL);
    if (testlib_mint_root(&root, "example.org", SPIFFE_KEY_EC_P256, now - 60, 3600) != WEFT_OK ||
        testlib_mint_leaf(&leaf, &root, "spiffe://example.org/app", SPIFFE_KEY_EC_P256, now - 60,
                          3600) != WEFT_OK) {
        abort();
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL || !SSL_CTX_use_certificate(ctx, leaf.cert) ||
        !SSL_CTX_use_PrivateKey(ctx, leaf.key)) {
        abort();
    }
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        SSL *ssl = SSL_new(ctx);
        char head[4096];
        size_t len = 0;
        int n;
        if (ssl != NULL && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
            while (len < sizeof(head) - 1 &&
                   (n = SSL_read(ssl, head + len, (int)(sizeof(head) - 1 - len))) > 0) {
                len += (size_t)n;
                head[len] = '\0';
                if (strstr(head, "\r\n\r\n") != NULL) {
                    break;
                }
            }
            head[len] = '\0';
            http_app_note_head(head);
            static const char resp[] =
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntls fine\n";
            SSL_write(ssl, resp, sizeof(resp) - 1);
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static bool ready_cb(void *arg, char *why, size_t why_len)
{
    (void)arg;
    if (!atomic_load(&ready_now)) {
        snprintf(why, why_len, "not ready: no SVID from the agent yet");
    }
    return atomic_load(&ready_now);
}

static struct weft_metrics *metrics;

static void server_setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* the app writes to a proxy that may have given up on it */
    weft_log_set_output(stderr, WEFT_LOG_DEBUG);
    proxy_probes_init(&probes);
    app_port = http_app_start();
    cr_assert_gt(app_port, 0);
    pthread_t t;
    int tls_port, tfd = testlib_listen_loopback(&tls_port);
    cr_assert_geq(tfd, 0);
    cr_assert_eq(pthread_create(&t, NULL, tls_app_main, (void *)(intptr_t)tfd), 0);
    pthread_detach(t);
    int down = 0, dfd = testlib_listen_loopback(&down);
    close(dfd); /* a port nobody listens on now */
    char json[2048];
    snprintf(
        json, sizeof(json),
        "{\"/app-health/web/readyz\": {\"httpGet\": {\"path\": \"/ok\", \"port\": %d}},"
        " \"/app-health/web/livez\": {\"httpGet\": {\"path\": \"/bad\", \"port\": %d}},"
        " \"/app-health/slow/readyz\": {\"httpGet\": {\"path\": \"/slow\", \"port\": %d},"
        "   \"timeoutSeconds\": 1},"
        " \"/app-health/redir/livez\": {\"httpGet\": {\"path\": \"/redirect\", \"port\": %d}},"
        " \"/app-health/big/livez\": {\"httpGet\": {\"path\": \"/big\", \"port\": %d}},"
        " \"/app-health/hdr/livez\": {\"httpGet\": {\"path\": \"/hdr\", \"port\": %d,"
        "   \"httpHeaders\": [{\"name\": \"X-A\", \"value\": \"b\"}]}},"
        " \"/app-health/down/livez\": {\"httpGet\": {\"path\": \"/ok\", \"port\": %d}},"
        " \"/app-health/tls/livez\": {\"httpGet\": {\"path\": \"/ok\", \"port\": %d,"
        "   \"scheme\": \"HTTPS\"}},"
        " \"/app-health/tls/readyz\": {\"httpGet\": {\"path\": \"/secure\", \"port\": %d,"
        "   \"scheme\": \"HTTPS\", \"httpHeaders\": [{\"name\": \"X-T\", \"value\": \"1\"}]}}}",
        app_port, app_port, app_port, app_port, app_port, app_port, down, app_port, tls_port);
    cr_assert_eq(parse(json), WEFT_OK, "%s", err);
    metrics = weft_metrics_new();
    struct proxy_probe_server_config cfg = {
        .listen = "127.0.0.1:0",
        .probes = &probes,
        .ready = ready_cb,
        .metrics = metrics,
    };
    cr_assert_eq(proxy_probe_server_start(&server, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
}

static void server_teardown(void)
{
    proxy_probe_server_stop(server);
    weft_metrics_free(metrics);
    proxy_probes_cleanup(&probes);
}

TestSuite(probes_server, .init = server_setup, .fini = server_teardown, .timeout = 30);

/* connect_from connects to the probe server from the loopback address |src| (127.0.0.0/8: each
 * is a peer of its own to the server); returns the socket, or -1. */
static int connect_from(const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in from = {.sin_family = AF_INET};
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)proxy_probe_server_port(server))};
    inet_pton(AF_INET, src, &from.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* ask_raw_from sends |req| raw to the probe server from |src| and reads the whole response into
 * |buf|; returns the status, or -1. */
static int ask_raw_from(const char *src, const char *req, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = connect_from(src);
    if (fd < 0) {
        return -1;
    }
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    size_t used = 0;
    ssize_t n;
    while (used < len - 1 && (n = read(fd, buf + used, len - 1 - used)) > 0) {
        used += (size_t)n;
    }
    buf[used] = '\0';
    close(fd);
    int status;
    return sscanf(buf, "HTTP/1.1 %d ", &status) == 1 ? status : -1;
}

static int ask_raw(const char *req, char *buf, size_t len)
{
    return ask_raw_from("127.0.0.1", req, buf, len);
}

static int ask(const char *method, const char *path, char *buf, size_t len)
{
    char req[1200];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 10.1.2.3:15021\r\n\r\n", method, path);
    return ask_raw(req, buf, len);
}

/* log_to_file sends the log to a temporary file, and log_text gives back what was logged (and
 * sends the log to stderr again). */
static FILE *log_file;
static void log_to_file(void)
{
    log_file = tmpfile();
    cr_assert_not_null(log_file);
    weft_log_set_output(log_file, WEFT_LOG_DEBUG);
}

static const char *log_text(void)
{
    weft_log_set_output(stderr, WEFT_LOG_DEBUG);
    static char text[65536];
    rewind(log_file);
    size_t n = fread(text, 1, sizeof(text) - 1, log_file);
    text[n] = '\0';
    fclose(log_file);
    log_file = NULL;
    fputs(text, stderr);
    return text;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b != NULL ? b + 4 : "";
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool metric_is(const char *path, const char *result, int value)
{
    char *text, want[256];
    size_t len;
    cr_assert_eq(weft_metrics_write(metrics, &text, &len), WEFT_OK);
    snprintf(want, sizeof(want), "weft_proxy_app_probes_total{path=\"%s\",result=\"%s\"} %d\n",
             path, result, value);
    bool found = strstr(text, want) != NULL;
    if (!found) {
        fprintf(stderr, "no %s in\n%s", want, text);
    }
    free(text);
    return found;
}

Test(probes_server, ready_follows_the_callback)
{
    char buf[4096];
    log_to_file();
    cr_assert_eq(ask("GET", "/ready", buf, sizeof(buf)), 503);
    cr_assert_str_eq(body_of(buf), "not ready\n", "why is for the log, not the network");
    cr_assert(strstr(log_text(), "no SVID from the agent yet") != NULL, "why is in the log");
    atomic_store(&ready_now, true);
    cr_assert_eq(ask("GET", "/ready", buf, sizeof(buf)), 200);
    cr_assert_str_eq(body_of(buf), "ready\n");
}

Test(probes_server, the_apps_status_passes_through)
{
    char buf[16384];
    cr_assert_eq(ask("GET", "/app-health/web/readyz", buf, sizeof(buf)), 200, "%s", buf);
    cr_assert_str_eq(body_of(buf), "fine\n");
    char app_last_head[8192];
    http_app_last_head(app_last_head, sizeof(app_last_head));
    cr_assert(strncmp(app_last_head, "GET /ok HTTP/1.1\r\n", 18) == 0, "%s", app_last_head);
    cr_assert(strstr(app_last_head, "\r\nHost: 127.0.0.1:") != NULL, "%s", app_last_head);
    cr_assert_eq(ask("GET", "/app-health/web/livez", buf, sizeof(buf)), 503, "%s", buf);
    cr_assert_str_eq(body_of(buf), "sick\n");
    cr_assert_eq(ask("GET", "/app-health/redir/livez", buf, sizeof(buf)), 302, "not followed");
    cr_assert_eq(ask("GET", "/app-health/big/livez", buf, sizeof(buf)), 200);
    cr_assert_eq(strlen(body_of(buf)), PROXY_PROBES_MAX_BODY, "the body is cut");
    cr_assert(strstr(buf, "Content-Length: 1024\r\n") != NULL, "%s", buf);
    cr_assert(metric_is("/app-health/web/readyz", "success", 1));
    cr_assert(metric_is("/app-health/web/livez", "failure", 1));
    cr_assert(metric_is("/app-health/redir/livez", "success", 1));
}

Test(probes_server, the_probes_headers_are_sent)
{
    char buf[4096];
    cr_assert_eq(ask("GET", "/app-health/hdr/livez", buf, sizeof(buf)), 200, "%s", buf);
    char app_last_head[8192];
    http_app_last_head(app_last_head, sizeof(app_last_head));
    cr_assert(strstr(app_last_head, "\r\nX-A: b\r\n") != NULL, "%s", app_last_head);
}

Test(probes_server, https_probes_are_not_verified_as_the_kubelets_are_not)
{
    char buf[4096];
    cr_assert_eq(ask("GET", "/app-health/tls/readyz", buf, sizeof(buf)), 200, "%s", buf);
    cr_assert_str_eq(body_of(buf), "tls fine\n");
    char app_last_head[8192];
    http_app_last_head(app_last_head, sizeof(app_last_head));
    cr_assert(strncmp(app_last_head, "GET /secure HTTP/1.1\r\n", 22) == 0, "%s", app_last_head);
    cr_assert(strstr(app_last_head, "\r\nX-T: 1\r\n") != NULL, "%s", app_last_head);
    cr_assert(metric_is("/app-health/tls/readyz", "success", 1));
}

Test(probes_server, an_app_that_is_down_is_503)
{
    char buf[4096];
    log_to_file();
    cr_assert_eq(ask("GET", "/app-health/down/livez", buf, sizeof(buf)), 503, "%s", buf);
    /* the app's port and the error are for the log, not for anyone on the network */
    cr_assert_str_eq(body_of(buf), "probe failed: no answer from the app\n");
    const char *logged = log_text();
    cr_assert(strstr(logged, "/app-health/down/livez") != NULL, "%s", logged);
    cr_assert(strstr(logged, "refused") != NULL, "%s", logged);
    cr_assert(metric_is("/app-health/down/livez", "error", 1));
    /* a TLS probe to a plain HTTP app: no handshake, no answer */
    cr_assert_eq(ask("GET", "/app-health/tls/livez", buf, sizeof(buf)), 503, "%s", buf);
    cr_assert(metric_is("/app-health/tls/livez", "error", 1));
}

Test(probes_server, a_slow_app_is_503_within_the_probes_timeout)
{
    char buf[4096];
    int64_t start = mono_ms();
    cr_assert_eq(ask("GET", "/app-health/slow/readyz", buf, sizeof(buf)), 503, "%s", buf);
    int64_t took = mono_ms() - start;
    cr_assert(took >= 800 && took < 1000, "answered after %lld ms", (long long)took);
    cr_assert_str_eq(body_of(buf), "probe timed out\n");
    cr_assert(metric_is("/app-health/slow/readyz", "timeout", 1));
}

Test(probes_server, a_slow_probe_does_not_hold_up_the_others)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)proxy_probe_server_port(server))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    const char *slow = "GET /app-health/slow/readyz HTTP/1.1\r\n\r\n";
    cr_assert_eq(write(fd, slow, strlen(slow)), (ssize_t)strlen(slow));
    usleep(100 * 1000);
    char buf[4096];
    int64_t start = mono_ms();
    cr_assert_eq(ask("GET", "/app-health/web/readyz", buf, sizeof(buf)), 200);
    cr_assert_lt(mono_ms() - start, 500);
    close(fd);
}

Test(probes_server, nothing_else_is_served)
{
    char buf[4096];
    const char *paths[] = {"/quitquitquit",
                           "/metrics",
                           "/certs",
                           "/config",
                           "/live",
                           "/healthz",
                           "/app-health/web/startupz",
                           "/app-health/",
                           "/"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        cr_assert_eq(ask("GET", paths[i], buf, sizeof(buf)), 404, "%s", paths[i]);
    }
    cr_assert_eq(ask("POST", "/quitquitquit", buf, sizeof(buf)), 404);
    cr_assert_eq(ask("POST", "/app-health/web/readyz", buf, sizeof(buf)), 405);
    cr_assert_eq(ask_raw("GET /ready HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", buf, sizeof(buf)),
                 413);
    cr_assert_eq(ask_raw("\x16\x03\x01\x00\x05hello\r\n\r\n", buf, sizeof(buf)), 400);
    char big[PROXY_PROBES_MAX_PATH + 64];
    snprintf(big, sizeof(big), "/%0*d", PROXY_PROBES_MAX_PATH, 0);
    cr_assert_eq(ask("GET", big, buf, sizeof(buf)), 431);
}

/* ---- slow and flooding clients: the port is open to anyone in the cluster ---- */

/* closed_by_server says whether the server has closed |fd| within |wait_ms|. */
static bool closed_by_server(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) != 1) {
        return false;
    }
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* timed_ask asks for |path| from |src| and checks the answer is |status| within a kubelet's
 * default 1 s probe timeout. */
static void timed_ask(const char *src, const char *path, int status)
{
    char req[256], buf[4096];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 10.1.2.3:15021\r\n\r\n", path);
    int64_t start = mono_ms();
    int got = ask_raw_from(src, req, buf, sizeof(buf));
    int64_t took = mono_ms() - start;
    cr_assert_eq(got, status, "%s from %s: %s", path, src, buf);
    cr_assert_lt(took, 1000, "%s from %s answered after %lld ms", path, src, (long long)took);
}

#define SLOW_CLIENTS 64

/* The review's attack: many connections that send nothing, or their head one byte at a time,
 * reopened as soon as the server closes them. The kubelet's probes still answer in time. */
Test(probes_server, slow_clients_do_not_hold_up_the_probes)
{
    atomic_store(&ready_now, true);
    static const char trickle[] = "GET /ready HTTP/1.1\r\nHost: 10.1.2.3:15021\r\n\r\n";
    int fds[SLOW_CLIENTS];
    size_t sent[SLOW_CLIENTS] = {0};
    char src[SLOW_CLIENTS][32];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        snprintf(src[i], sizeof(src[i]), "127.0.0.%d", 2 + i);
        fds[i] = connect_from(src[i]);
        cr_assert_geq(fds[i], 0, "connect from %s", src[i]);
    }
    int reopened = 0, asked = 0;
    int64_t end = mono_ms() + 3 * PROXY_PROBES_HEAD_TIMEOUT_MS;
    for (int round = 0; mono_ms() < end; round++) {
        for (int i = 0; i < SLOW_CLIENTS; i++) {
            if (closed_by_server(fds[i], 0)) {
                close(fds[i]);
                fds[i] = connect_from(src[i]);
                cr_assert_geq(fds[i], 0, "reconnect from %s", src[i]);
                sent[i] = 0;
                reopened++;
            } else if (i % 2 == 1 && sent[i] < sizeof(trickle) - 1) {
                cr_assert_eq(send(fds[i], trickle + sent[i], 1, MSG_NOSIGNAL), 1);
                sent[i]++;
            }
        }
        timed_ask("127.0.0.1", round % 2 == 0 ? "/ready" : "/app-health/web/readyz", 200);
        asked++;
        usleep(50 * 1000);
    }
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        close(fds[i]);
    }
    cr_assert_geq(asked, 10, "only %d probes in 3 s", asked);
    /* the one-byte-every-round ones need ~2.3 s for their head: they time out too */
    cr_assert_geq(reopened, 2 * SLOW_CLIENTS, "the server closed only %d slow heads", reopened);
}

#define FLOOD_CLIENTS (PROXY_PROBES_MAX_HEAD_CONNS + 72)
#define FLOOD_BATCH 25 /* well under the listen backlog: the kernel keeps each in order */

/* More idle connections than PROXY_PROBES_MAX_HEAD_CONNS, each from an address of its own: the
 * oldest are closed for the new ones, and the probes still get through. */
Test(probes_server, a_flood_of_idle_connections_drops_the_oldest)
{
    atomic_store(&ready_now, true);
    int fds[FLOOD_CLIENTS];
    int64_t start = mono_ms();
    for (int i = 0; i < FLOOD_CLIENTS; i++) {
        char src[32];
        snprintf(src, sizeof(src), "127.0.%d.%d", 1 + i / 250, 1 + i % 250);
        fds[i] = connect_from(src);
        cr_assert_geq(fds[i], 0, "connect from %s", src);
        if (i % FLOOD_BATCH == FLOOD_BATCH - 1 || i == FLOOD_CLIENTS - 1) {
            /* answered: the server has taken every connection made before it */
            timed_ask("127.0.0.1", i % 2 == 0 ? "/ready" : "/app-health/web/readyz", 200);
        }
    }
    /* the oldest went first: what is closed is a prefix, as long as the flood over the cap
     * (and a few more for the probes' own connections, which took a place too) */
    int k = 0;
    while (k < FLOOD_CLIENTS && closed_by_server(fds[k], 0)) {
        k++;
    }
    for (int i = k; i < FLOOD_CLIENTS; i++) {
        cr_assert(!closed_by_server(fds[i], 0), "connection %d closed, but not %d before it", i, k);
    }
    int over = FLOOD_CLIENTS - PROXY_PROBES_MAX_HEAD_CONNS;
    cr_assert(k >= over && k <= over + FLOOD_CLIENTS / FLOOD_BATCH + 1,
              "%d of the oldest closed; expected %d and a few", k, over);
    cr_assert_lt(mono_ms() - start, PROXY_PROBES_HEAD_TIMEOUT_MS, "checked before the timeout");
    /* and the rest within the head timeout */
    for (int i = k; i < FLOOD_CLIENTS; i++) {
        cr_assert(closed_by_server(fds[i], 2 * PROXY_PROBES_HEAD_TIMEOUT_MS),
                  "connection %d outlived the head timeout", i);
    }
    for (int i = 0; i < FLOOD_CLIENTS; i++) {
        close(fds[i]);
    }
}

/* One address holds at most PROXY_PROBES_MAX_PER_PEER connections. Past the cap its new
 * connection takes the place of its oldest idle one (so a kubelet that shares an address with
 * a slow client still gets through); when none of its connections is idle, the new one is
 * closed at once. Other addresses are served all along. */
Test(probes_server, one_address_holds_at_most_PROXY_PROBES_MAX_PER_PEER)
{
    atomic_store(&ready_now, true);
    const char *greedy = "127.0.0.3";
    int fds[PROXY_PROBES_MAX_PER_PEER];
    for (int i = 0; i < PROXY_PROBES_MAX_PER_PEER; i++) {
        fds[i] = connect_from(greedy);
        cr_assert_geq(fds[i], 0);
    }
    timed_ask("127.0.0.1", "/ready", 200); /* answered: the server has taken the idle ones */
    timed_ask(greedy, "/ready", 200);
    cr_assert(closed_by_server(fds[0], 200), "the address's oldest idle connection is closed");
    for (int i = 1; i < PROXY_PROBES_MAX_PER_PEER; i++) {
        cr_assert(!closed_by_server(fds[i], 0), "connection %d closed too", i);
    }
    for (int i = 0; i < PROXY_PROBES_MAX_PER_PEER; i++) {
        close(fds[i]);
    }

    /* answered, but never closed by the client: held until DRAIN_MS, none of them idle */
    for (int i = 0; i < PROXY_PROBES_MAX_PER_PEER; i++) {
        fds[i] = connect_from(greedy);
        cr_assert_geq(fds[i], 0);
        static const char req[] = "GET /ready HTTP/1.1\r\n\r\n";
        cr_assert_eq(write(fds[i], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
        char buf[512];
        cr_assert_gt(read(fds[i], buf, sizeof(buf)), 0, "answer %d", i);
    }
    int64_t start = mono_ms();
    char buf[4096];
    cr_assert_eq(ask_raw_from(greedy, "GET /ready HTTP/1.1\r\n\r\n", buf, sizeof(buf)), -1,
                 "over the cap: %s", buf);
    cr_assert_lt(mono_ms() - start, 500, "closed at once");
    timed_ask("127.0.0.1", "/ready", 200);
    for (int i = 0; i < PROXY_PROBES_MAX_PER_PEER; i++) {
        close(fds[i]);
    }
    usleep(100 * 1000); /* the server sees them close */
    timed_ask(greedy, "/ready", 200);
}

/* Idle clients on the kubelet's own address (a hostNetwork pod on its node) take their turn
 * with it: the kubelet's new connection takes the place of the oldest idle one. (A client there
 * that reconnects faster than the kubelet's head arrives can still push it out: no rule by
 * address can tell the two apart.) */
Test(probes_server, idle_clients_on_the_kubelets_address_do_not_shut_it_out)
{
    atomic_store(&ready_now, true);
    int fds[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = connect_from("127.0.0.1");
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(send(fds[i], "GET /rea", 8, MSG_NOSIGNAL), 8);
    }
    for (int round = 0; round < 10; round++) {
        timed_ask("127.0.0.1", round % 2 == 0 ? "/ready" : "/app-health/web/readyz", 200);
        for (int i = 0; i < SLOW_CLIENTS; i++) {
            if (closed_by_server(fds[i], 0)) { /* the slow client comes back */
                close(fds[i]);
                fds[i] = connect_from("127.0.0.1");
                cr_assert_geq(fds[i], 0);
                cr_assert_eq(send(fds[i], "GET /rea", 8, MSG_NOSIGNAL), 8);
            }
        }
    }
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        close(fds[i]);
    }
}
