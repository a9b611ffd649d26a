/* k8s/webhook_test.c: weft-injector over HTTPS on loopback, with a certificate minted at test
 * time: real-shaped AdmissionReviews in, patches decoded and applied with k8s/jsonpatch and
 * compared with `weftctl inject`'s golden files; the limits, keep-alive, certificate reload,
 * metrics and stop. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "k8s/jsonpatch.h"
#include "k8s/webhook.h"
#include "k8s/yamljson.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "test/testlib/certs.h"

#define HOST "weft-injector.weft-system.svc"

static char dir[64];
static char cert_path[128], key_path[128];
static struct testlib_cred root;
static struct k8s_webhook_server *srv;
static int port; /* the server's, or the weft-injector process's */
static int client_timeout_s = 5;

/* --- fixtures ------------------------------------------------------------------------------ */

/* write_pair mints a serving certificate for HOST under |root| and writes it and its key. */
static void write_pair(X509 **out_cert)
{
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_not_null(key);
    struct testlib_cert_spec spec = {
        .subject_cn = HOST,
        .dns = HOST,
        .basic_constraints = TESTLIB_BC_LEAF,
        .has_key_usage = true,
        .key_usage = KU_DIGITAL_SIGNATURE,
        .has_eku = true,
        .eku_server_auth = true,
        .not_before = time(NULL) - 3600,
        .not_after = time(NULL) + 86400,
    };
    X509 *cert;
    cr_assert_eq(testlib_cert_build(&cert, &spec, key, root.cert, root.key), WEFT_OK);
    /* Written beside the target and renamed, as the kubelet's atomic writer does. */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.new", key_path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    cr_assert(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    cr_assert_eq(rename(tmp, key_path), 0);
    snprintf(tmp, sizeof(tmp), "%s.new", cert_path);
    f = fopen(tmp, "w");
    cr_assert_not_null(f);
    cr_assert(PEM_write_X509(f, cert));
    fclose(f);
    cr_assert_eq(rename(tmp, cert_path), 0);
    EVP_PKEY_free(key);
    if (out_cert != NULL) {
        *out_cert = cert;
    } else {
        X509_free(cert);
    }
}

static size_t max_body_total;

static void start_with(int request_ms, size_t max_conns, size_t max_requests)
{
    struct k8s_webhook_config cfg = {0};
    k8s_inject_opts_init(&cfg.inject);
    cfg.listen = "127.0.0.1:0";
    cfg.tls_cert = cert_path;
    cfg.tls_key = key_path;
    cfg.request_ms = request_ms;
    cfg.reload_check_ms = 100;
    cfg.grace_ms = 2000;
    cfg.max_conns = max_conns;
    cfg.max_requests = max_requests;
    cfg.max_body_total = max_body_total;
    char err[512];
    cr_assert_eq(k8s_webhook_server_start(&srv, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    port = k8s_webhook_port(srv);
}

static void start(int request_ms) { start_with(request_ms, 0, 0); }

static void files_setup(void)
{
    weft_log_set_output(stderr, WEFT_LOG_WARN);
    snprintf(dir, sizeof(dir), "/tmp/webhook_test.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cert_path, sizeof(cert_path), "%s/tls.crt", dir);
    snprintf(key_path, sizeof(key_path), "%s/tls.key", dir);
    cr_assert_eq(testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, time(NULL) - 3600, 86400),
                 WEFT_OK);
    write_pair(NULL);
}

static void files_teardown(void)
{
    testlib_cred_cleanup(&root);
    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
}

static void setup(void)
{
    files_setup();
    start(3000);
}

static void teardown(void)
{
    k8s_webhook_server_stop(srv);
    srv = NULL;
    files_teardown();
}

TestSuite(webhook, .init = setup, .fini = teardown, .timeout = 60);

/* --- an HTTPS client --------------------------------------------------------------------- */

struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

static bool client_open(struct client *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(c->fd, 0);
    struct timeval tv = {client_timeout_s, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
    c->ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(c->ctx), root.cert);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    cr_assert(X509_VERIFY_PARAM_set1_host(SSL_get0_param(c->ssl), HOST, strlen(HOST)));
    SSL_set_fd(c->ssl, c->fd);
    return SSL_connect(c->ssl) == 1;
}

static void client_close(struct client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

static void client_send(struct client *c, const void *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        int n = SSL_write(c->ssl, (const char *)data + off, (int)(len - off));
        cr_assert_gt(n, 0, "SSL_write failed");
        off += (size_t)n;
    }
}

/* client_recv reads one response; returns its status (-1 when the connection ended first) and
 * its body in |*body| (malloc'd, NUL-terminated), |*closes| when it says Connection: close. */
static int client_recv(struct client *c, char **body, bool *closes)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    char *end = NULL;
    size_t want = SIZE_MAX;
    for (;;) {
        if (end != NULL && len >= want) {
            break;
        }
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        int n = SSL_read(c->ssl, buf + len, (int)(cap - len - 1));
        if (n <= 0) {
            free(buf);
            *body = NULL;
            return -1;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length: ");
            cr_assert_not_null(cl);
            want = (size_t)(end - buf) + 4 + strtoul(cl + 18, NULL, 10);
        }
    }
    int status = atoi(buf + 9);
    *end = '\0';
    if (closes != NULL) {
        *closes = strcasestr(buf, "Connection: close") != NULL;
    }
    *body = strdup(end + 4);
    free(buf);
    return status;
}

/* post sends one request on a new connection and returns the status and body. */
static int post(const char *path, const char *ctype, const char *body, size_t body_len, char **resp)
{
    struct client c;
    cr_assert(client_open(&c), "TLS handshake failed");
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: " HOST "\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nAccept: application/json\r\n\r\n",
                     path, ctype, body_len);
    client_send(&c, head, (size_t)n);
    client_send(&c, body, body_len);
    int status = client_recv(&c, resp, NULL);
    client_close(&c);
    return status;
}

static int get(const char *path, char **resp)
{
    struct client c;
    cr_assert(client_open(&c), "TLS handshake failed");
    char head[8192];
    int n = snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: " HOST "\r\n\r\n", path);
    cr_assert_lt((size_t)n, sizeof(head));
    client_send(&c, head, (size_t)n);
    int status = client_recv(&c, resp, NULL);
    client_close(&c);
    return status;
}

/* --- reviews ------------------------------------------------------------------------------ */

static json_t *load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert_not_null(j, "%s: %s", path, e.text);
    return j;
}

static json_t *load_yaml_doc(const char *path, size_t index)
{
    uint8_t *data;
    size_t len;
    char err[256];
    json_t *docs;
    cr_assert_eq(weft_file_read(&data, &len, path, K8S_YAML_MAX_INPUT), WEFT_OK, "%s", path);
    cr_assert_eq(k8s_yaml_parse(&docs, data, len, err, sizeof(err)), WEFT_OK, "%s", err);
    free(data);
    json_t *d = json_incref(json_array_get(docs, index));
    json_decref(docs);
    cr_assert_not_null(d);
    return d;
}

/* review_of wraps a pod in an AdmissionReview v1 as the API server sends it. */
static json_t *review_of(json_t *pod, const char *ns, const char *op, const char *uid)
{
    json_t *req = json_pack("{s:s, s:{s:s,s:s,s:s}, s:{s:s,s:s,s:s}, s:s, s:s, s:{s:s}, s:O, "
                            "s:b}",
                            "uid", uid, "kind", "group", "", "version", "v1", "kind", "Pod",
                            "resource", "group", "", "version", "v1", "resource", "pods",
                            "namespace", ns, "operation", op, "userInfo", "username",
                            "system:serviceaccount:kube-system:replicaset-controller", "object",
                            pod, "dryRun", 0);
    cr_assert_not_null(req);
    return json_pack("{s:s, s:s, s:o}", "apiVersion", "admission.k8s.io/v1", "kind",
                     "AdmissionReview", "request", req);
}

struct answer {
    json_t *response; /* response of the AdmissionReview */
    json_t *patch;    /* decoded, or NULL */
};

/* send_review posts |review| and checks the envelope every answer must have. */
static struct answer send_review(const json_t *review)
{
    char *text = json_dumps(review, JSON_COMPACT);
    char *body;
    int status = post("/inject?timeout=10s", "application/json", text, strlen(text), &body);
    free(text);
    cr_assert_eq(status, 200, "status %d: %s", status, body != NULL ? body : "");
    json_t *out = json_loads(body, 0, NULL);
    cr_assert_not_null(out, "%s", body);
    free(body);
    cr_assert_str_eq(json_string_value(json_object_get(out, "apiVersion")),
                     json_string_value(json_object_get(review, "apiVersion")));
    cr_assert_str_eq(json_string_value(json_object_get(out, "kind")), "AdmissionReview");
    struct answer a = {json_incref(json_object_get(out, "response")), NULL};
    json_decref(out);
    cr_assert_str_eq(json_string_value(json_object_get(a.response, "uid")),
                     json_string_value(json_object_get(json_object_get(review, "request"), "uid")));
    cr_assert(json_is_true(json_object_get(a.response, "allowed")));
    const char *b64 = json_string_value(json_object_get(a.response, "patch"));
    if (b64 != NULL) {
        cr_assert_str_eq(json_string_value(json_object_get(a.response, "patchType")), "JSONPatch");
        size_t max, len;
        cr_assert(EVP_DecodedLength(&max, strlen(b64)));
        uint8_t *raw = malloc(max);
        cr_assert(EVP_DecodeBase64(raw, &len, max, (const uint8_t *)b64, strlen(b64)));
        a.patch = json_loadb((const char *)raw, len, 0, NULL);
        free(raw);
        cr_assert(json_is_array(a.patch));
    } else {
        cr_assert_null(json_object_get(a.response, "patchType"));
    }
    return a;
}

static void answer_free(struct answer *a)
{
    json_decref(a->response);
    json_decref(a->patch);
}

static json_t *apply(const json_t *obj, const json_t *patch)
{
    json_t *doc = json_deep_copy(obj);
    char err[512];
    cr_assert_eq(k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)), WEFT_OK, "%s", err);
    return doc;
}

static void assert_json_eq(const json_t *got, const json_t *want)
{
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_INDENT(1) | JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_INDENT(1) | JSON_SORT_KEYS);
        cr_assert_fail("got:\n%s\nwant:\n%s", g, w);
    }
}

/* to_generated makes |pod| look like a pod a ReplicaSet creates: generateName, no name, no
 * namespace in its metadata (the request carries it). */
static void to_generated(json_t *pod)
{
    json_t *meta = json_object_get(pod, "metadata");
    json_object_del(meta, "name");
    json_object_del(meta, "namespace");
    json_object_set_new(meta, "generateName", json_string("debug-"));
}

Test(webhook, generate_name_pod_matches_weftctl_golden)
{
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    json_t *want = load_yaml_doc("k8s/testdata/inject/pod.golden.yaml", 0);
    to_generated(pod);
    to_generated(want);
    json_t *review = review_of(pod, "default", "CREATE", "11111111-0000-0000-0000-000000000001");
    struct answer a = send_review(review);
    cr_assert_not_null(a.patch, "nothing injected");
    json_t *got = apply(pod, a.patch);
    assert_json_eq(got, want);
    json_decref(got);
    answer_free(&a);
    json_decref(review);
    json_decref(pod);
    json_decref(want);
}

/* The Deployment's template has an init container of its own and three probes. */
Test(webhook, pod_with_init_containers_and_probes_matches_golden)
{
    json_t *dep = load_yaml_doc("k8s/testdata/inject/deployment.yaml", 0);
    json_t *dep_golden = load_yaml_doc("k8s/testdata/inject/deployment.golden.yaml", 0);
    json_t *pod = json_pack(
        "{s:s, s:s, s:O, s:O}", "apiVersion", "v1", "kind", "Pod", "metadata",
        json_object_get(json_object_get(json_object_get(dep, "spec"), "template"), "metadata"),
        "spec", json_object_get(json_object_get(json_object_get(dep, "spec"), "template"), "spec"));
    json_t *tmpl = json_object_get(json_object_get(dep_golden, "spec"), "template");
    json_t *want =
        json_pack("{s:s, s:s, s:O, s:O}", "apiVersion", "v1", "kind", "Pod", "metadata",
                  json_object_get(tmpl, "metadata"), "spec", json_object_get(tmpl, "spec"));
    json_t *review = review_of(pod, "shop", "CREATE", "11111111-0000-0000-0000-000000000002");
    struct answer a = send_review(review);
    cr_assert_not_null(a.patch);
    json_t *got = apply(pod, a.patch);
    assert_json_eq(got, want);
    json_t *init = json_object_get(json_object_get(got, "spec"), "initContainers");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(init, 0), "name")),
                     "weft-init");

    /* Reinvocation: the same pod, injected, comes back; it is left as it is. */
    json_t *again = review_of(got, "shop", "CREATE", "11111111-0000-0000-0000-000000000003");
    struct answer b = send_review(again);
    cr_assert_null(b.patch);
    cr_assert_null(json_object_get(b.response, "warnings"));
    answer_free(&b);
    json_decref(again);
    json_decref(got);
    answer_free(&a);
    json_decref(review);
    json_decref(pod);
    json_decref(want);
    json_decref(dep);
    json_decref(dep_golden);
}

/* A review as the API server sends it, every field included; the answer is what
 * k8s_inject_object makes of the object with request.namespace. */
Test(webhook, replicaset_pod_record)
{
    json_t *review = load_json("k8s/testdata/webhook/replicaset_pod.json");
    struct answer a = send_review(review);
    cr_assert_not_null(a.patch);
    json_t *obj = json_object_get(json_object_get(review, "request"), "object");
    json_t *got = apply(obj, a.patch);
    json_t *want = json_deep_copy(obj);
    struct k8s_inject_opts o;
    k8s_inject_opts_init(&o);
    o.namespace = "shop";
    const char *skipped;
    char err[256];
    cr_assert_eq(k8s_inject_object(&want, &skipped, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    assert_json_eq(got, want);
    json_t *probe = json_object_get(
        json_object_get(
            json_array_get(json_object_get(json_object_get(got, "spec"), "containers"), 0),
            "readinessProbe"),
        "httpGet");
    cr_assert_str_eq(json_string_value(json_object_get(probe, "path")), "/app-health/web/readyz");
    json_decref(want);
    json_decref(got);
    answer_free(&a);
    json_decref(review);
}

static void assert_skipped(json_t *review)
{
    struct answer a = send_review(review);
    cr_assert_null(a.patch);
    cr_assert_null(json_object_get(a.response, "warnings"));
    answer_free(&a);
    json_decref(review);
}

Test(webhook, kube_system_pod_is_skipped)
{
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    to_generated(pod);
    assert_skipped(review_of(pod, "kube-system", "CREATE", "u-kube-system"));
    json_decref(pod);
}

Test(webhook, opted_out_pod_is_skipped)
{
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    json_object_set_new(json_object_get(pod, "metadata"), "annotations",
                        json_pack("{s:s}", "weft.dev/inject", "disabled"));
    assert_skipped(review_of(pod, "default", "CREATE", "u-opted-out"));
    json_decref(pod);
}

Test(webhook, delete_and_dry_run_are_skipped)
{
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    assert_skipped(review_of(pod, "default", "DELETE", "u-delete"));
    json_t *dry = review_of(pod, "default", "CREATE", "u-dry-run");
    json_object_set_new(json_object_get(dry, "request"), "dryRun", json_true());
    assert_skipped(dry);
    json_decref(pod);
}

/* A pod injection refuses is allowed, unpatched, with a warning the user sees. */
Test(webhook, refused_pod_is_allowed_with_a_warning)
{
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    json_object_set_new(json_object_get(pod, "metadata"), "annotations",
                        json_pack("{s:s}", "weft.dev/exclude-inbound-ports", "80,banana"));
    json_t *review = review_of(pod, "default", "CREATE", "u-refused");
    struct answer a = send_review(review);
    cr_assert_null(a.patch);
    const char *w = json_string_value(json_array_get(json_object_get(a.response, "warnings"), 0));
    cr_assert_not_null(w);
    cr_assert(strstr(w, "exclude-inbound-ports") != NULL, "%s", w);
    answer_free(&a);
    json_decref(review);
    json_decref(pod);

    char *m;
    cr_assert_eq(get("/metrics", &m), 200);
    cr_assert(strstr(m, "weft_injector_reviews_total{result=\"refused\"} 1") != NULL, "%s", m);
    free(m);
}

Test(webhook, not_an_admission_review_is_400)
{
    char *body;
    cr_assert_eq(post("/inject", "application/json", "{\"kind\":", 8, &body), 400);
    free(body);
    const char *other = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}";
    cr_assert_eq(post("/inject", "application/json", other, strlen(other), &body), 400);
    free(body);
    const char *no_uid = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
                         "\"request\":{\"operation\":\"CREATE\"}}";
    cr_assert_eq(post("/inject", "application/json", no_uid, strlen(no_uid), &body), 400);
    free(body);
    cr_assert_eq(post("/inject", "text/plain", "{}", 2, &body), 415);
    free(body);
    cr_assert_eq(get("/inject", &body), 405);
    free(body);
    cr_assert_eq(get("/nope", &body), 404);
    free(body);
    cr_assert_eq(get("/metrics", &body), 200);
    cr_assert(strstr(body, "weft_injector_reviews_total{result=\"bad-request\"} 4") != NULL, "%s",
              body);
    free(body);
}

/* A body one byte over the limit is refused from its Content-Length, before it is sent. */
Test(webhook, body_over_limit_is_413)
{
    struct client c;
    cr_assert(client_open(&c));
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %u\r\n\r\n",
                     K8S_WEBHOOK_MAX_BODY + 1);
    client_send(&c, head, (size_t)n);
    char *body;
    bool closes;
    cr_assert_eq(client_recv(&c, &body, &closes), 413);
    cr_assert(closes);
    free(body);
    client_close(&c);
}

/* Chunked, so no Content-Length: the limit holds while the body streams in. */
Test(webhook, chunked_body_over_limit_is_413)
{
    struct client c;
    cr_assert(client_open(&c));
    const char *head = "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    client_send(&c, head, strlen(head));
    size_t chunk = 1 << 20;
    char *data = malloc(chunk);
    memset(data, ' ', chunk);
    int status = -1;
    char *body = NULL;
    for (int i = 0; i < 5; i++) { /* 5 MiB > 4 MiB; the server may answer and close early */
        char sz[32];
        int n = snprintf(sz, sizeof(sz), "%zx\r\n", chunk);
        if (SSL_write(c.ssl, sz, n) <= 0 || SSL_write(c.ssl, data, (int)chunk) <= 0 ||
            SSL_write(c.ssl, "\r\n", 2) <= 0) {
            break;
        }
    }
    status = client_recv(&c, &body, NULL);
    cr_assert_eq(status, 413);
    free(body);
    free(data);
    client_close(&c);
}

/* Bodies buffered at once share a budget: with 64 KiB, a second 48 KiB body while the first
 * is still held is refused with 503, and served once the first is done. */
Test(webhook, body_budget_across_connections_is_503)
{
    k8s_webhook_server_stop(srv);
    max_body_total = 64 << 10;
    start_with(3000, 0, 0);
    size_t len = 48 << 10;
    char *data = malloc(len);
    memset(data, ' ', len);
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     len + 1);
    struct client first;
    cr_assert(client_open(&first));
    client_send(&first, head, (size_t)n);
    client_send(&first, data, len); /* one byte short: the server holds it */
    usleep(200 * 1000);
    char *body;
    cr_assert_eq(post("/inject", "application/json", data, len, &body), 503);
    free(body);
    client_send(&first, " ", 1);
    cr_assert_eq(client_recv(&first, &body, NULL), 400); /* blanks are not JSON */
    free(body);
    client_close(&first);
    cr_assert_eq(post("/inject", "application/json", data, len, &body), 400);
    free(body);
    free(data);
}

Test(webhook, head_over_limit_is_431)
{
    struct client c;
    cr_assert(client_open(&c));
    size_t len = K8S_WEBHOOK_MAX_HEAD + 1;
    char *head = malloc(len + 1);
    const char *start = "GET /healthz HTTP/1.1\r\nX-Pad: ";
    memset(head, 'a', len);
    memcpy(head, start, strlen(start));
    memcpy(head + len - 4, "\r\n\r\n", 4);
    client_send(&c, head, len);
    char *body;
    cr_assert_eq(client_recv(&c, &body, NULL), 431);
    free(body);
    free(head);
    client_close(&c);

    /* exactly at the limit is served */
    cr_assert(client_open(&c));
    len = K8S_WEBHOOK_MAX_HEAD;
    head = malloc(len);
    memset(head, 'a', len);
    memcpy(head, start, strlen(start));
    memcpy(head + len - 4, "\r\n\r\n", 4);
    client_send(&c, head, len);
    cr_assert_eq(client_recv(&c, &body, NULL), 200);
    free(body);
    free(head);
    client_close(&c);
}

Test(webhook, url_over_limit_is_414)
{
    char *url = malloc(K8S_WEBHOOK_MAX_URL + 2);
    memset(url, 'a', K8S_WEBHOOK_MAX_URL + 1);
    url[0] = '/';
    url[K8S_WEBHOOK_MAX_URL + 1] = '\0';
    char *body;
    cr_assert_eq(get(url, &body), 414);
    free(body);
    url[K8S_WEBHOOK_MAX_URL] = '\0'; /* at the limit: served, and not found */
    cr_assert_eq(get(url, &body), 404);
    free(body);
    free(url);
}

Test(webhook, uid_over_limit_is_a_bad_request)
{
    struct k8s_inject_opts o;
    k8s_inject_opts_init(&o);
    char uid[K8S_WEBHOOK_MAX_UID + 2];
    memset(uid, 'u', sizeof(uid) - 1);
    uid[sizeof(uid) - 1] = '\0';
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    for (int over = 1; over >= 0; over--) {
        uid[K8S_WEBHOOK_MAX_UID + over] = '\0';
        json_t *review = review_of(pod, "default", "CREATE", uid);
        char *text = json_dumps(review, JSON_COMPACT);
        struct k8s_webhook_review r;
        k8s_webhook_review_init(&r);
        k8s_webhook_review(&r, text, strlen(text), &o);
        cr_assert_eq(r.result, over ? K8S_WEBHOOK_BAD_REQUEST : K8S_WEBHOOK_INJECTED, "%s",
                     r.reason);
        k8s_webhook_review_cleanup(&r);
        free(text);
        json_decref(review);
    }
    json_decref(pod);
}

/* A body whose JSON tree would cost too much is refused before the tree is built; commas,
 * colons and escaped quotes inside strings are not tree nodes and do not count. */
Test(webhook, json_tokens_over_limit_is_a_bad_request)
{
    struct k8s_inject_opts o;
    k8s_inject_opts_init(&o);
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    size_t big = 3 * (size_t)K8S_WEBHOOK_MAX_JSON_TOKENS;
    char *quoted = malloc(big + 1);
    for (size_t i = 0; i < big; i++) {
        quoted[i] = "\",:"[i % 3];
    }
    quoted[big] = '\0';
    for (int over = 0; over <= 1; over++) {
        json_t *review = review_of(pod, "default", "CREATE", "uid-1");
        json_t *pad = json_array();
        for (size_t i = 0; over && i < K8S_WEBHOOK_MAX_JSON_TOKENS; i++) {
            json_array_append_new(pad, json_integer(0));
        }
        json_object_set_new(review, "padding", pad);
        json_object_set_new(review, "quoted", json_string(quoted));
        char *text = json_dumps(review, JSON_COMPACT);
        struct k8s_webhook_review r;
        k8s_webhook_review_init(&r);
        k8s_webhook_review(&r, text, strlen(text), &o);
        cr_assert_eq(r.result, over ? K8S_WEBHOOK_BAD_REQUEST : K8S_WEBHOOK_INJECTED, "%s",
                     r.reason);
        if (over) {
            cr_assert_not_null(strstr(r.reason, "JSON values and keys"), "%s", r.reason);
        }
        k8s_webhook_review_cleanup(&r);
        free(text);
        json_decref(review);
    }
    free(quoted);
    json_decref(pod);
}

/* The last request a connection may carry is answered with Connection: close. */
Test(webhook, requests_per_connection_limit)
{
    k8s_webhook_server_stop(srv);
    start_with(3000, 0, 2);
    struct client c;
    cr_assert(client_open(&c));
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 2; i++) {
        client_send(&c, req, strlen(req));
        char *body;
        bool closes;
        cr_assert_eq(client_recv(&c, &body, &closes), 200);
        cr_assert_eq(closes, i == 1);
        free(body);
    }
    char ch;
    cr_assert_leq(SSL_read(c.ssl, &ch, 1), 0);
    client_close(&c);
}

/* With every connection slot taken, a new client waits in the backlog, and is served once a
 * slot frees. */
Test(webhook, connection_limit)
{
    k8s_webhook_server_stop(srv);
    start_with(3000, 1, 0);
    struct client first, second;
    cr_assert(client_open(&first));
    client_timeout_s = 1;
    cr_assert_not(client_open(&second), "a second connection was served past the limit");
    client_close(&second);
    client_close(&first);
    client_timeout_s = 5;
    char *body;
    cr_assert_eq(get("/healthz", &body), 200);
    free(body);
}

Test(webhook, keep_alive_serves_several_requests)
{
    struct client c;
    cr_assert(client_open(&c));
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    /* two pipelined in one write, then a third */
    char two[128];
    snprintf(two, sizeof(two), "%s%s", req, req);
    client_send(&c, two, strlen(two));
    for (int i = 0; i < 3; i++) {
        if (i == 2) {
            client_send(&c, req, strlen(req));
        }
        char *body;
        bool closes;
        cr_assert_eq(client_recv(&c, &body, &closes), 200);
        cr_assert_str_eq(body, "ok\n");
        cr_assert_not(closes);
        free(body);
    }
    client_close(&c);
}

/* A client that sends half a request and stalls is cut off after the request time. */
Test(webhook, slow_request_times_out)
{
    k8s_webhook_server_stop(srv);
    start(500);
    struct client c;
    cr_assert(client_open(&c));
    const char *part = "POST /inject HTTP/1.1\r\nHost: x\r\n";
    client_send(&c, part, strlen(part));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *body;
    int status = client_recv(&c, &body, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert(status == 408 || status == -1, "status %d", status);
    free(body);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 3);
    client_close(&c);
}

Test(webhook, health_ready_metrics)
{
    char *body;
    cr_assert_eq(get("/healthz", &body), 200);
    cr_assert_str_eq(body, "ok\n");
    free(body);
    cr_assert_eq(get("/ready", &body), 200);
    free(body);
    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    json_t *review = review_of(pod, "default", "CREATE", "u-metrics");
    struct answer a = send_review(review);
    answer_free(&a);
    json_decref(review);
    json_decref(pod);
    cr_assert_eq(get("/metrics", &body), 200);
    cr_assert(strstr(body, "weft_injector_reviews_total{result=\"injected\"} 1") != NULL, "%s",
              body);
    cr_assert(strstr(body, "weft_injector_review_duration_seconds_count 1") != NULL, "%s", body);
    free(body);
}

static bool same_cert(X509 *a, X509 *b) { return X509_cmp(a, b) == 0; }

static X509 *served_cert(void)
{
    struct client c;
    cr_assert(client_open(&c), "TLS handshake failed");
    X509 *x = SSL_get_peer_certificate(c.ssl);
    cr_assert_not_null(x);
    client_close(&c);
    return x;
}

/* wait_for_cert waits (bounded) until new connections get |want|. */
static bool wait_for_cert(X509 *want)
{
    for (int i = 0; i < 50; i++) {
        X509 *x = served_cert();
        bool same = same_cert(x, want);
        X509_free(x);
        if (same) {
            return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

Test(webhook, reloads_certificate_and_keeps_old_on_bad_pair)
{
    X509 *first = served_cert();
    X509 *second;
    write_pair(&second);
    cr_assert_not(same_cert(first, second));
    cr_assert(wait_for_cert(second), "the new certificate was not served");

    /* A broken certificate file: the server keeps serving |second|. */
    FILE *f = fopen(cert_path, "w");
    cr_assert_not_null(f);
    fputs("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    usleep(400 * 1000); /* several reload checks */
    X509 *now = served_cert();
    cr_assert(same_cert(now, second));
    X509_free(now);
    char *m;
    cr_assert_eq(get("/metrics", &m), 200);
    cr_assert(strstr(m, "weft_injector_tls_reloads_total{result=\"error\"} 1") != NULL, "%s", m);
    cr_assert(strstr(m, "weft_injector_tls_reloads_total{result=\"ok\"} 1") != NULL, "%s", m);
    free(m);
    X509_free(first);
    X509_free(second);
}

/* Stop while a connection idles and another is mid-request: the idle one is closed, the busy
 * one is answered, and stop returns within the grace period. */
static void *stop_main(void *arg)
{
    k8s_webhook_server_stop(arg);
    return NULL;
}

Test(webhook, stop_finishes_in_flight_request)
{
    struct client idle, busy;
    cr_assert(client_open(&idle));
    cr_assert(client_open(&busy));
    const char *part = "GET /ready HTTP/1.1\r\nHost: x\r\n";
    client_send(&busy, part, strlen(part));
    usleep(100 * 1000);
    struct k8s_webhook_server *s = srv;
    srv = NULL;
    /* stop blocks until the busy request ends, so it runs on a thread of its own while this
     * one sends the rest of the request. */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stop_main, s), 0);
    usleep(200 * 1000);
    client_send(&busy, "\r\n", 2);
    char *body;
    bool closes;
    cr_assert_eq(client_recv(&busy, &body, &closes), 503); /* /ready while stopping */
    cr_assert(closes);
    free(body);
    char c;
    cr_assert_leq(SSL_read(idle.ssl, &c, 1), 0); /* closed */
    pthread_join(t, NULL);
    client_close(&idle);
    client_close(&busy);
}

/* --- the weft-injector binary ------------------------------------------------------------ */

static pid_t child = -1;
static FILE *child_err; /* its stderr */

static void bin_setup(void) { files_setup(); }

static void bin_teardown(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
    if (child_err != NULL) {
        fclose(child_err);
        child_err = NULL;
    }
    files_teardown();
}

TestSuite(injector, .init = bin_setup, .fini = bin_teardown, .timeout = 60);

/* spawn runs k8s/weft-injector with |args| (NULL-terminated, after argv[0]) and its stderr in
 * child_err; stdout goes to /dev/null. */
static void spawn(const char *const *args)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(p[1], 2);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        close(p[0]);
        close(p[1]);
        const char *argv[16] = {"k8s/weft-injector"};
        for (size_t i = 0; args[i] != NULL && i + 2 < nitems(argv); i++) {
            argv[i + 1] = args[i];
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    child_err = fdopen(p[0], "r");
    cr_assert_not_null(child_err);
}

/* wait_line reads the child's stderr until a line holds |want|; returns it (static) or NULL
 * when the child closed stderr first. A stuck child ends with the suite's timeout. */
static const char *wait_line(const char *want)
{
    static char line[4096];
    while (fgets(line, sizeof(line), child_err) != NULL) {
        fprintf(stderr, "weft-injector: %s", line);
        if (strstr(line, want) != NULL) {
            return line;
        }
    }
    return NULL;
}

static int wait_exit(void)
{
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    child = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(injector, serves_reviews_and_stops_on_sigterm)
{
    const char *args[] = {"--listen",         "127.0.0.1:0", "--tls-cert", cert_path,
                          "--tls-key",        key_path,      "--image",    "example.com/weft:test",
                          "--native-sidecar", "false",       NULL};
    spawn(args);
    const char *l = wait_line("msg=listening");
    cr_assert_not_null(l, "weft-injector did not start");
    const char *pp = strstr(l, "port=");
    cr_assert_not_null(pp);
    port = atoi(pp + 5);
    cr_assert_gt(port, 0);

    json_t *pod = load_yaml_doc("k8s/testdata/inject/pod.yaml", 0);
    to_generated(pod);
    json_t *review = review_of(pod, "default", "CREATE", "22222222-0000-0000-0000-000000000001");
    struct answer a = send_review(review);
    cr_assert_not_null(a.patch);
    json_t *got = apply(pod, a.patch);
    /* --native-sidecar false and --image: what weftctl inject makes with the same flags */
    json_t *want = json_deep_copy(pod);
    struct k8s_inject_opts o;
    k8s_inject_opts_init(&o);
    o.image = "example.com/weft:test";
    o.native_sidecar = false;
    o.namespace = "default";
    const char *skipped;
    char err[256];
    cr_assert_eq(k8s_inject_object(&want, &skipped, &o, err, sizeof(err)), WEFT_OK, "%s", err);
    assert_json_eq(got, want);
    const json_t *c0 =
        json_array_get(json_object_get(json_object_get(got, "spec"), "containers"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c0, "name")), "weft-proxy");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "image")), "example.com/weft:test");
    json_decref(want);
    json_decref(got);
    answer_free(&a);
    json_decref(review);
    json_decref(pod);

    /* one log line per review */
    l = wait_line("msg=review");
    cr_assert_not_null(l);
    cr_assert(strstr(l, "uid=22222222-0000-0000-0000-000000000001") != NULL, "%s", l);
    cr_assert(strstr(l, "namespace=default") != NULL, "%s", l);
    cr_assert(strstr(l, "kind=Pod") != NULL, "%s", l);
    cr_assert(strstr(l, "name=debug-") != NULL, "%s", l);
    cr_assert(strstr(l, "operation=CREATE") != NULL, "%s", l);
    cr_assert(strstr(l, "result=injected") != NULL, "%s", l);
    cr_assert(strstr(l, " ms=") != NULL, "%s", l);

    cr_assert_eq(kill(child, SIGTERM), 0);
    cr_assert_not_null(wait_line("msg=stopped"));
    cr_assert_eq(wait_exit(), 0);
}

Test(injector, command_line)
{
    const char *help[] = {"--help", NULL};
    spawn(help);
    cr_assert_eq(wait_exit(), 0);
    fclose(child_err);
    child_err = NULL;

    const char *bad_bool[] = {"--listen", "127.0.0.1:0",      "--tls-cert", cert_path, "--tls-key",
                              key_path,   "--native-sidecar", "yes",        NULL};
    spawn(bad_bool);
    cr_assert_not_null(wait_line("--native-sidecar yes: true or false"));
    cr_assert_eq(wait_exit(), 2);
    fclose(child_err);
    child_err = NULL;

    const char *missing[] = {"--listen", "127.0.0.1:0", NULL};
    spawn(missing);
    cr_assert_eq(wait_exit(), 2);
    fclose(child_err);
    child_err = NULL;

    /* a key that is not the certificate's: exit 1, and the message names the files */
    const char *no_key[] = {"--listen",  "127.0.0.1:0", "--tls-cert", cert_path,
                            "--tls-key", cert_path,     NULL};
    spawn(no_key);
    const char *l = wait_line("cannot start");
    cr_assert_not_null(l);
    cr_assert(strstr(l, "--tls-key") != NULL, "%s", l);
    cr_assert_eq(wait_exit(), 1);
}
