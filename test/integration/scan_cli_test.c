/* test/integration/scan_cli_test.c: the real `weftctl scan` binary (issue 9) against TLS servers
 * this test runs on 127.0.0.1 (test/testlib/tls_server.h) with certificates minted at test time
 * around time(NULL): its exit codes, its JSON and Prometheus outputs, its alerts (a command, and
 * an Alertmanager stand-in on loopback with a state file), --watch and SIGTERM.
 *
 * Every run of weftctl is a child of this test: stdout and stderr go to files in the test's own
 * directory, each run is bounded in time and killed by its PID when over it, and teardown kills
 * one still running (an assertion that failed mid-run) before it removes the directory. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "lib/base/file.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"
#include "test/testlib/net.h"
#include "test/testlib/tls_server.h"

#define WEFTCTL "cli/weftctl" /* in the runfiles: data = ["//cli:weftctl"] */
#define MIN_S INT64_C(60)
#define HOUR_S INT64_C(3600)
#define DAY_S INT64_C(86400)
#define LEAF_ID "spiffe://example.org/ns/web/sa/api"
#define CLIENT_ID "spiffe://example.org/ns/scan/sa/weftctl"
#define RUN_MS 20000 /* one weftctl run, at most */
#define MAX_ARGS 32
#define OUT_MAX (1 << 20)

/* --- fixtures ------------------------------------------------------------------------------ */

static char dir[] = "/tmp/weft-scan-cli-XXXXXX";
static bool have_dir;
static int64_t now;
static struct testlib_cred root, inter, client;
static struct testlib_tls_server srv, srv2, rx;
static char bundle_pem[300], client_pem[300], client_key[300];
static pid_t child = -1; /* a weftctl still running, killed by teardown */
static int runs;         /* out.N / err.N of each run */
static char out[OUT_MAX + 1], err[OUT_MAX + 1];

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len, "%s", path);
    cr_assert_eq(fclose(f), 0, "%s", path);
}

/* read_text reads |path| into |buf| (OUT_MAX + 1 bytes, NUL-terminated); false when missing. */
static bool read_text(char *buf, const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (weft_file_read(&data, &len, path, OUT_MAX) != WEFT_OK) {
        return false;
    }
    memcpy(buf, data, len);
    buf[len] = '\0';
    free(data);
    return true;
}

static void setup(void)
{
    now = (int64_t)time(NULL);
    testlib_tls_server_init(&srv);
    testlib_tls_server_init(&srv2);
    testlib_tls_server_init(&rx);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    have_dir = true;
    /* root (1 year, 30 days old) -> intermediate (30 days) -> each server's leaf; a client SVID */
    cr_assert_eq(
        testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, now - 30 * DAY_S, 365 * DAY_S),
        WEFT_OK);
    cr_assert_eq(testlib_mint_intermediate(&inter, &root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                                           now - HOUR_S, 30 * DAY_S),
                 WEFT_OK);
    cr_assert_eq(
        testlib_mint_leaf(&client, &inter, CLIENT_ID, SPIFFE_KEY_EC_P256, now - 5 * MIN_S, HOUR_S),
        WEFT_OK);
    char *pem = NULL;
    size_t len = 0;
    STACK_OF(X509) *sk = testlib_chain(&root.cert, 1);
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, sk), WEFT_OK);
    sk_X509_pop_free(sk, X509_free);
    snprintf(bundle_pem, sizeof(bundle_pem), "%s/bundle.pem", dir);
    write_file(bundle_pem, pem, len);
    free(pem);
    X509 *cc[] = {client.cert, inter.cert};
    sk = testlib_chain(cc, 2);
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, sk), WEFT_OK);
    sk_X509_pop_free(sk, X509_free);
    snprintf(client_pem, sizeof(client_pem), "%s/client.pem", dir);
    write_file(client_pem, pem, len);
    free(pem);
    cr_assert_eq(spiffe_key_to_pem(&pem, &len, client.key), WEFT_OK);
    snprintf(client_key, sizeof(client_key), "%s/client.key", dir);
    write_file(client_key, pem, len);
    free(pem);
}

static void teardown(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
    testlib_tls_server_stop(&srv);
    testlib_tls_server_stop(&srv2);
    testlib_tls_server_stop(&rx);
    testlib_cred_cleanup(&root);
    testlib_cred_cleanup(&inter);
    testlib_cred_cleanup(&client);
    if (have_dir) {
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                char path[512];
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        rmdir(dir);
        have_dir = false;
    }
}

/* Each case runs alone in its own process; the longest (--watch) takes about 12 s. */
TestSuite(scan_cli, .init = setup, .fini = teardown, .timeout = 45);

/* leaf_ctx mints a leaf under the intermediate, valid from now + |from| for |ttl| seconds, and
 * makes a TLS 1.3-only server context presenting leaf -> intermediate that requires a client
 * certificate: a mesh port as the default policy wants it. */
static SSL_CTX *leaf_ctx(int64_t from, int64_t ttl)
{
    struct testlib_cred leaf = {0};
    cr_assert_eq(testlib_mint_leaf(&leaf, &inter, LEAF_ID, SPIFFE_KEY_EC_P256, now + from, ttl),
                 WEFT_OK);
    X509 *chain[] = {leaf.cert, inter.cert};
    SSL_CTX *ctx = testlib_tls_ctx_new(chain, 2, leaf.key, TLS1_3_VERSION, TLS1_3_VERSION,
                                       TESTLIB_CLIENT_CERT_REQUIRED);
    testlib_cred_cleanup(&leaf);
    cr_assert_not_null(ctx, "a server context");
    return ctx;
}

/* healthy: 10 minutes into an hour. warn_only: 42 minutes into an hour (30 % left: under warn,
 * over page; past the renewal point of 50 % + 15 %). paging: 55 minutes into an hour (8 %). */
static SSL_CTX *healthy(void) { return leaf_ctx(-10 * MIN_S, HOUR_S); }
static SSL_CTX *warn_only(void) { return leaf_ctx(-42 * MIN_S, HOUR_S); }
static SSL_CTX *paging(void) { return leaf_ctx(-55 * MIN_S, HOUR_S); }

static void start(struct testlib_tls_server *s, SSL_CTX *ctx)
{
    cr_assert_eq(testlib_tls_server_start(s, ctx), 0, "a server on loopback");
}

/* endpoint writes "127.0.0.1:PORT" into |buf| (64 bytes). */
static const char *endpoint(char *buf, int port)
{
    snprintf(buf, 64, "127.0.0.1:%d", port);
    return buf;
}

/* down_port returns a loopback port nothing listens on. */
static int down_port(void)
{
    int port, fd = testlib_listen_loopback(&port);
    cr_assert_geq(fd, 0);
    close(fd);
    return port;
}

/* --- running weftctl ----------------------------------------------------------------------- */

/* spawn starts `weftctl scan ARGS...` (|args| NULL-terminated) with stdout and stderr in
 * DIR/out.N and DIR/err.N; returns its PID (also kept in |child| for teardown). */
static pid_t spawn(const char *const *args)
{
    const char *argv[MAX_ARGS + 3] = {"weftctl", "scan"};
    size_t n = 2;
    for (size_t i = 0; args[i] != NULL; i++) {
        cr_assert_lt(n, MAX_ARGS + 2, "too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    runs++;
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof(out_path), "%s/out.%d", dir, runs);
    snprintf(err_path, sizeof(err_path), "%s/err.%d", dir, runs);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies takes weftctl with it */
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (o < 0 || e < 0 || in < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) {
            _exit(126);
        }
        execv(WEFTCTL, (char *const *)argv);
        _exit(127);
    }
    child = pid;
    return pid;
}

/* finish waits for |pid| until |deadline_ms| from now, kills it by its PID past that (and
 * fails), reads its stdout and stderr into |out| and |err|, and returns its exit code. */
static int finish(pid_t pid, int deadline_ms)
{
    int status = 0;
    pid_t got = 0;
    for (int waited = 0; (got = waitpid(pid, &status, WNOHANG)) == 0 && waited < deadline_ms;
         waited += 20) {
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    child = -1;
    char path[300];
    snprintf(path, sizeof(path), "%s/out.%d", dir, runs);
    read_text(out, path);
    snprintf(path, sizeof(path), "%s/err.%d", dir, runs);
    read_text(err, path);
    cr_assert_neq(got, 0, "weftctl scan still running after %d ms; stderr: %s", deadline_ms, err);
    cr_assert_eq(got, pid);
    cr_assert(WIFEXITED(status), "weftctl scan ended by signal %d; stderr: %s",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0, err);
    cr_assert_neq(WEXITSTATUS(status), 127, "cannot run %s", WEFTCTL);
    return WEXITSTATUS(status);
}

/* scan runs `weftctl scan ARGS...` to its end. */
static int scan(const char *const *args) { return finish(spawn(args), RUN_MS); }

/* The flags every scan of a mesh port here gives: the client SVID and the bundle. */
#define MTLS "--client-cert", client_pem, "--client-key", client_key, "--bundle", bundle_pem
#define FAST "--timeout", "2s"

/* --- exit codes ---------------------------------------------------------------------------- */

Test(scan_cli, a_healthy_mtls_endpoint_exits_0)
{
    start(&srv, healthy());
    char ep[64];
    int rc = scan((const char *[]){endpoint(ep, srv.port), MTLS, FAST, NULL});
    cr_assert_eq(rc, 0, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, ep), "%s", out);
    cr_assert_not_null(strstr(out, LEAF_ID), "the leaf's ID in the table: %s", out);
    cr_assert_not_null(strstr(out, "TLSv1.3"), "%s", out);
    cr_assert_not_null(strstr(out, "\n  root          " TESTLIB_TD_ID " "),
                       "the root named from --bundle: %s", out);
    cr_assert_not_null(strstr(out, "; exit code 0"), "%s", out);
}

Test(scan_cli, a_host_name_endpoint_is_resolved)
{
    start(&srv, healthy());
    char ep[64];
    snprintf(ep, sizeof(ep), "localhost:%d", srv.port);
    int rc = scan((const char *[]){ep, MTLS, FAST, NULL});
    cr_assert_eq(rc, 0, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, LEAF_ID), "%s", out);
}

Test(scan_cli, a_name_that_does_not_resolve_exits_3_and_says_why)
{
    int rc = scan((const char *[]){"no-such-host.invalid:443", MTLS, FAST, NULL});
    cr_assert_eq(rc, 3, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, "cannot resolve no-such-host.invalid: "), "%s", out);
}

Test(scan_cli, a_leaf_past_its_renewal_point_above_page_exits_1)
{
    start(&srv, warn_only());
    char ep[64];
    int rc = scan((const char *[]){endpoint(ep, srv.port), MTLS, FAST, NULL});
    cr_assert_eq(rc, 1, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, "leaf-renewal-overdue"), "%s", out);
    cr_assert_not_null(strstr(out, "warn      leaf-expiring"), "%s", out);
    cr_assert_null(strstr(out, "  page  "), "no page-level finding: %s", out);
    cr_assert_null(strstr(out, "  critical  "), "no critical finding: %s", out);
    cr_assert_not_null(strstr(out, "(0 critical, 0 page, 2 warn, 0 info); exit code 1"), "%s", out);
}

Test(scan_cli, a_leaf_near_expiry_exits_2)
{
    start(&srv, paging());
    char ep[64];
    int rc = scan((const char *[]){endpoint(ep, srv.port), MTLS, FAST, NULL});
    cr_assert_eq(rc, 2, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, "leaf-expiring"), "%s", out);
}

Test(scan_cli, an_endpoint_that_is_down_exits_3)
{
    char ep[64];
    int rc = scan((const char *[]){endpoint(ep, down_port()), MTLS, FAST, NULL});
    cr_assert_eq(rc, 3, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, ep), "the endpoint is reported: %s", out);
    cr_assert_not_null(strstr(out, "unreachable"), "%s", out);
}

Test(scan_cli, one_down_and_one_paging_exits_3_the_highest_that_applies)
{
    start(&srv, paging());
    char ep1[64], ep2[64];
    int rc = scan(
        (const char *[]){endpoint(ep1, srv.port), endpoint(ep2, down_port()), MTLS, FAST, NULL});
    cr_assert_eq(rc, 3, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, "leaf-expiring"), "%s", out);
    cr_assert_not_null(strstr(out, "unreachable"), "%s", out);
}

Test(scan_cli, usage_errors_exit_3_with_a_message)
{
    /* nothing was scanned: 3, never 2, which would read as a page */
    int rc = scan((const char *[]){"--no-such-flag", "127.0.0.1:1", NULL});
    cr_assert_eq(rc, 3, "exit %d; stderr: %s", rc, err);
    cr_assert_neq(err[0], '\0', "a message on stderr");
    rc = scan((const char *[]){"127.0.0.1", NULL});
    cr_assert_eq(rc, 3, "exit %d; stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "127.0.0.1"), "the endpoint is named: %s", err);
    cr_assert_not_null(strstr(err, "port"), "what is wrong is said: %s", err);
    rc = scan((const char *[]){"127.0.0.1:1", "--timeout", "forever", NULL});
    cr_assert_eq(rc, 3, "exit %d; stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "--timeout"), "%s", err);
    rc = scan((const char *[]){"127.0.0.1:1", "--client-cert", client_pem, NULL});
    cr_assert_eq(rc, 3, "exit %d; stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "--client-key"), "%s", err);
    rc = scan((const char *[]){NULL});
    cr_assert_eq(rc, 3, "exit %d; stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "no endpoint"), "%s", err);
    cr_assert_eq(out[0], '\0', "nothing on stdout: %s", out);
}

/* --- outputs ------------------------------------------------------------------------------- */

Test(scan_cli, json_holds_the_endpoints_and_their_findings)
{
    start(&srv, healthy());
    start(&srv2, paging());
    char ep1[64], ep2[64];
    int rc = scan((const char *[]){endpoint(ep1, srv.port), endpoint(ep2, srv2.port), MTLS, FAST,
                                   "--format", "json", NULL});
    cr_assert_eq(rc, 2, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    cr_assert_not_null(doc, "stdout is not JSON: %s (line %d): %s", jerr.text, jerr.line, out);
    cr_assert_eq(json_integer_value(json_object_get(doc, "exit_code")), 2);
    json_t *eps = json_object_get(doc, "endpoints");
    cr_assert(json_is_array(eps));
    cr_assert_eq(json_array_size(eps), 2);
    bool seen_healthy = false, seen_paging = false;
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(eps, i);
        const char *name = json_string_value(json_object_get(e, "endpoint"));
        json_t *findings = json_object_get(e, "findings");
        cr_assert_not_null(name);
        cr_assert(json_is_array(findings));
        cr_assert(json_is_true(json_object_get(e, "reached")), "%s", name);
        json_t *chain = json_object_get(e, "chain");
        cr_assert_eq(json_array_size(chain), 2, "%s", name);
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(chain, 0), "spiffe_id")),
                         LEAF_ID);
        if (strcmp(name, ep1) == 0) {
            seen_healthy = true;
            cr_assert_eq(json_array_size(findings), 0, "%s", out);
        } else if (strcmp(name, ep2) == 0) {
            seen_paging = true;
            cr_assert_eq(json_array_size(findings), 2, "%s", out);
            json_t *f = json_array_get(findings, 0);
            cr_assert_str_eq(json_string_value(json_object_get(f, "code")), "leaf-expiring");
            cr_assert_str_eq(json_string_value(json_object_get(f, "severity")), "page");
            cr_assert_str_eq(json_string_value(json_object_get(f, "endpoint")), ep2);
            f = json_array_get(findings, 1);
            cr_assert_str_eq(json_string_value(json_object_get(f, "code")), "leaf-renewal-overdue");
            cr_assert_str_eq(json_string_value(json_object_get(f, "severity")), "warn");
        }
    }
    cr_assert(seen_healthy && seen_paging, "%s", out);
    json_decref(doc);
}

Test(scan_cli, prometheus_gauges_name_the_endpoint)
{
    start(&srv, healthy());
    char ep[64], prom[300], want[160], text[OUT_MAX + 1];
    snprintf(prom, sizeof(prom), "%s/scan.prom", dir);
    int rc = scan((const char *[]){endpoint(ep, srv.port), MTLS, FAST, "--prometheus", prom, NULL});
    cr_assert_eq(rc, 0, "exit %d; stderr: %s", rc, err);
    cr_assert(read_text(text, prom), "%s was not written", prom);
    snprintf(want, sizeof(want), "weft_scan_endpoint_up{endpoint=\"%s\"} 1\n", ep);
    cr_assert_not_null(strstr(text, want), "%s in: %s", want, text);
    snprintf(want, sizeof(want), "weft_scan_cert_not_after_seconds{endpoint=\"%s\"", ep);
    cr_assert_not_null(strstr(text, want), "%s in: %s", want, text);
    snprintf(want, sizeof(want), "weft_scan_cert_seconds_left{endpoint=\"%s\"", ep);
    cr_assert_not_null(strstr(text, want), "%s in: %s", want, text);
    cr_assert_not_null(strstr(text, "# TYPE weft_scan_cert_not_after_seconds gauge"), "%s", text);
}

/* --- alerts -------------------------------------------------------------------------------- */

Test(scan_cli, alert_exec_gets_only_page_and_critical_findings)
{
    start(&srv, warn_only());
    char ep[64], got[300], cmd[400], text[OUT_MAX + 1];
    snprintf(got, sizeof(got), "%s/alerts.json", dir);
    snprintf(cmd, sizeof(cmd), "cat > '%s'", got);
    /* warnings only: nothing fires, the command is not run */
    int rc = scan((const char *[]){endpoint(ep, srv.port), MTLS, FAST, "--alert-exec", cmd, NULL});
    cr_assert_eq(rc, 1, "exit %d; stderr: %s", rc, err);
    cr_assert_not(read_text(text, got), "alerts for warnings: %s", text);
    /* a page: the command gets it, and not the warning beside it */
    testlib_tls_server_set_ctx(&srv, paging());
    rc = scan((const char *[]){ep, MTLS, FAST, "--alert-exec", cmd, NULL});
    cr_assert_eq(rc, 2, "exit %d; stderr: %s", rc, err);
    cr_assert(read_text(text, got), "the command did not run; stderr: %s", err);
    json_error_t jerr;
    json_t *alerts = json_loads(text, 0, &jerr);
    cr_assert_not_null(alerts, "not JSON: %s: %s", jerr.text, text);
    cr_assert(json_is_array(alerts));
    cr_assert_eq(json_array_size(alerts), 1, "%s", text);
    json_t *labels = json_object_get(json_array_get(alerts, 0), "labels");
    cr_assert_str_eq(json_string_value(json_object_get(labels, "code")), "leaf-expiring");
    cr_assert_str_eq(json_string_value(json_object_get(labels, "severity")), "page");
    cr_assert_str_eq(json_string_value(json_object_get(labels, "endpoint")), ep);
    json_decref(alerts);
}

/* ends_at returns the alert's endsAt as epoch seconds, or 0 when it has none. */
static int64_t ends_at(json_t *alert)
{
    const char *s = json_string_value(json_object_get(alert, "endsAt"));
    if (s == NULL) {
        return 0;
    }
    struct tm tm = {0};
    cr_assert_not_null(strptime(s, "%Y-%m-%dT%H:%M:%S", &tm), "endsAt %s", s);
    return (int64_t)timegm(&tm);
}

/* posted returns request |i| of the receiver: a POST to /api/v2/alerts, its body parsed. */
static json_t *posted(size_t i)
{
    struct testlib_http_req req;
    cr_assert(testlib_tls_server_req(&rx, i, &req), "no request %zu", i);
    cr_assert_str_eq(req.method, "POST");
    cr_assert_str_eq(req.path, "/api/v2/alerts");
    cr_assert_not_null(strcasestr(req.head, "\r\nContent-Type: application/json"), "%s", req.head);
    json_error_t jerr;
    json_t *body = json_loads(req.body, 0, &jerr);
    cr_assert_not_null(body, "not JSON: %s: %s", jerr.text, req.body);
    free(req.body);
    cr_assert(json_is_array(body));
    return body;
}

Test(scan_cli, alert_url_fires_then_resolves_once_the_server_is_fixed)
{
    rx.response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    start(&rx, NULL);
    start(&srv, paging());
    char ep[64], url[64], state[300];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", rx.port);
    snprintf(state, sizeof(state), "%s/state.json", dir);
    endpoint(ep, srv.port);

    /* the page fires */
    int rc = scan((const char *[]){ep, MTLS, FAST, "--alert-url", url, "--state", state, NULL});
    cr_assert_eq(rc, 2, "exit %d; stderr: %s", rc, err);
    cr_assert_eq(testlib_tls_server_num_reqs(&rx), 1, "stderr: %s", err);
    json_t *alerts = posted(0);
    cr_assert_eq(json_array_size(alerts), 1);
    json_t *a = json_array_get(alerts, 0);
    json_t *labels = json_object_get(a, "labels");
    cr_assert_str_eq(json_string_value(json_object_get(labels, "code")), "leaf-expiring");
    cr_assert_str_eq(json_string_value(json_object_get(labels, "endpoint")), ep);
    cr_assert_str_eq(json_string_value(json_object_get(labels, "alertname")),
                     "WeftScanLeafExpiring");
    cr_assert(ends_at(a) == 0 || ends_at(a) > (int64_t)time(NULL), "firing, not resolved");
    json_decref(alerts);
    char text[OUT_MAX + 1];
    cr_assert(read_text(text, state), "no state file");
    cr_assert_not_null(strstr(text, "leaf-expiring"), "%s", text);

    /* the server gets a fresh certificate on the same port: the alert is resolved */
    testlib_tls_server_set_ctx(&srv, healthy());
    rc = scan((const char *[]){ep, MTLS, FAST, "--alert-url", url, "--state", state, NULL});
    cr_assert_eq(rc, 0, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_eq(testlib_tls_server_num_reqs(&rx), 2, "stderr: %s", err);
    alerts = posted(1);
    cr_assert_eq(json_array_size(alerts), 1);
    a = json_array_get(alerts, 0);
    labels = json_object_get(a, "labels");
    cr_assert_str_eq(json_string_value(json_object_get(labels, "code")), "leaf-expiring");
    int64_t end = ends_at(a), t = (int64_t)time(NULL);
    cr_assert(end > 0 && end <= t && end >= t - 30, "resolved now: endsAt %lld, now %lld",
              (long long)end, (long long)t);
    json_decref(alerts);
    cr_assert(read_text(text, state), "no state file");
    cr_assert_null(strstr(text, "leaf-expiring"), "forgotten once resolved: %s", text);

    /* nothing fires or resolves any more: nothing is sent */
    rc = scan((const char *[]){ep, MTLS, FAST, "--alert-url", url, "--state", state, NULL});
    cr_assert_eq(rc, 0, "exit %d; stderr: %s", rc, err);
    cr_assert_eq(testlib_tls_server_num_reqs(&rx), 2);
}

/* --- --watch ------------------------------------------------------------------------------- */

/* count counts the occurrences of |needle| in |hay|. */
static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

Test(scan_cli, watch_runs_passes_until_sigterm_and_exits_with_the_last_code)
{
    start(&srv, warn_only());
    char ep[64], path[300];
    pid_t pid = spawn((const char *[]){endpoint(ep, srv.port), MTLS, FAST, "--format", "json",
                                       "--watch", "10s", NULL});
    snprintf(path, sizeof(path), "%s/out.%d", dir, runs);
    /* the first pass at once, the second 9 to 11 s later: wait for it, 25 s at most */
    size_t passes = 0;
    for (int waited = 0; waited < 25000 && passes < 2; waited += 100) {
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
        read_text(out, path);
        passes = count(out, "\"exit_code\"");
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "weftctl ended before SIGTERM: %s", out);
    }
    cr_assert_geq(passes, 2, "%zu passes in 25 s: %s", passes, out);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int rc = finish(pid, 2000); /* ends within 2 s of SIGTERM */
    cr_assert_eq(rc, 1, "the last pass's code; exit %d; stderr: %s", rc, err);
    cr_assert_geq(count(out, "\"exit_code\": 1"), 2, "%s", out);
}

Test(scan_cli, a_pass_cut_short_by_sigterm_is_neither_reported_nor_alerted)
{
    /* a listener that never accepts: the handshake waits out --timeout */
    int port, fd = testlib_listen_loopback(&port);
    cr_assert_geq(fd, 0);
    char ep[64], alerts[300];
    snprintf(alerts, sizeof(alerts), "%s/alerts.json", dir);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "cat > %s", alerts);
    pid_t pid = spawn((const char *[]){endpoint(ep, port), "--timeout", "5s", "--no-mtls",
                                       "--no-strict", "--alert-exec", cmd, NULL});
    nanosleep(&(struct timespec){1, 0}, NULL);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int rc = finish(pid, 8000);
    close(fd);
    cr_assert_eq(rc, 3, "no pass finished; exit %d; stderr: %s", rc, err);
    cr_assert_not_null(strstr(err, "stopped by a signal before the pass finished"), "%s", err);
    cr_assert_eq(out[0], '\0', "no report: %s", out);
    cr_assert_neq(access(alerts, F_OK), 0, "the alert command ran");
}

Test(scan_cli, endpoints_a_pass_has_no_time_left_for_are_reported_not_scanned)
{
    /* one endpoint that waits out the 2 s --timeout, then a healthy one: with one worker and
     * a 1 s pass, the second is never started */
    int port, fd = testlib_listen_loopback(&port);
    cr_assert_geq(fd, 0);
    start(&srv, healthy());
    char slow[64], ep[64];
    int rc = scan((const char *[]){endpoint(slow, port), endpoint(ep, srv.port), MTLS, FAST,
                                   "--concurrency", "1", "--pass-timeout", "1s", NULL});
    close(fd);
    cr_assert_eq(rc, 3, "exit %d; stdout: %s; stderr: %s", rc, out, err);
    cr_assert_not_null(strstr(out, "not scanned: the pass ran out of time (--pass-timeout)"), "%s",
                       out);
}
