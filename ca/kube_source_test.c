/* ca/kube_source_test.c: policy from the Kubernetes API, against a fake API server on
 * loopback (test/testlib/fake_kube.h: plain HTTP, paginated LISTs, a chunked WATCH the test
 * scripts event by event, 410s and dropped connections). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/kube_client.h"
#include "ca/policy_source.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "policy/snapshot.h"
#include "test/testlib/certs.h"
#include "test/testlib/fake_kube.h"

/* --- the source under test ---------------------------------------------------------------- */

static struct fake_kube *fk;
static struct ca_policy_source *src;
static char tmp[] = "/tmp/weft-kube-source-XXXXXX";
static char token_path[300];

static void write_token(const char *t)
{
    cr_assert_eq(weft_file_write_atomic(token_path, t, strlen(t), 0600), WEFT_OK);
}

static void setup(void)
{
    weft_log_set_output(stdout, WEFT_LOG_ERROR + 1);
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(token_path, sizeof(token_path), "%s/token", tmp);
    write_token("tok-1\n");
    cr_assert_eq(fake_kube_start(&fk), WEFT_OK);
}

static void teardown(void)
{
    ca_policy_source_free(src); /* joins the watchers first: the fake may then stop */
    src = NULL;
    fake_kube_stop(fk);
    unlink(token_path);
    rmdir(tmp);
}

TestSuite(ca_kube_source, .init = setup, .fini = teardown, .timeout = 60);

static const char *ca_file; /* the CA file for https://localhost, or NULL for plain HTTP */

static void start_source_limited(size_t max_objects, size_t max_bytes)
{
    char url[64], err[256];
    if (ca_file != NULL) {
        snprintf(url, sizeof(url), "https://localhost:%u", fake_kube_port(fk));
    } else {
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/", fake_kube_port(fk));
    }
    struct ca_kube_config cfg = {
        .api_url = url,
        .ca_file = ca_file,
        .token_file = token_path,
        .watch_timeout_s = 30,
        .backoff_min_ms = 20,
        .backoff_max_ms = 100,
        .page_limit = 2,
        .max_objects = max_objects,
        .max_bytes = max_bytes,
    };
    src = ca_policy_source_new_kube(&cfg, err, sizeof(err));
    cr_assert_not_null(src, "%s", err);
}

static void start_source(void) { start_source_limited(0, 0); }

/* decide compiles the set in force for a workload of namespace shop, as an agent does with
 * the files the CA sends, and decides a connection to it. */
static enum policy_reason decide(void)
{
    uint64_t v;
    const struct policy_set *set = ca_policy_source_current(src, &v);
    struct policy_config config;
    policy_config_resolve(&config, set);
    struct policy_workload w = {.namespace_ = "shop", .service_account = "web"};
    struct policy_snapshot *snap = NULL;
    cr_assert_eq(policy_compile(&snap, set, &config, &w), WEFT_OK);
    struct policy_request req = {.peer_id = "spiffe://cluster.local/ns/x/sa/y", .port = 8080};
    struct policy_result r;
    policy_eval(snap, &req, &r);
    policy_snapshot_free(snap);
    return r.enforced.reason;
}

static const struct policy_authz *find_authz(const char *name)
{
    uint64_t v;
    const struct policy_set *set = ca_policy_source_current(src, &v);
    for (size_t i = 0; i < set->num_authz; i++) {
        if (strcmp(set->authz[i].name, name) == 0) {
            return &set->authz[i];
        }
    }
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll_until polls the source (as weft-ca's tick does) until |done| holds, for up to 10 s. */
#define poll_until(done, what)                                                                     \
    do {                                                                                           \
        int64_t until_ = now_ms() + 10000;                                                         \
        for (;;) {                                                                                 \
            if (ca_policy_source_poll(src) != WEFT_OK) { /* refusals: asserted where expected */   \
            }                                                                                      \
            if (done) {                                                                            \
                break;                                                                             \
            }                                                                                      \
            cr_assert_lt(now_ms(), until_, "timed out waiting for %s", what);                      \
            usleep(10000);                                                                         \
        }                                                                                          \
    } while (0)

static struct fake_kube_seen seen(void)
{
    struct fake_kube_seen s;
    fake_kube_seen(fk, &s);
    return s;
}

static void set_items(const char *rv, const char *const *names, const char *const *actions,
                      size_t num)
{
    char *objs[8] = {NULL};
    cr_assert_leq(num, 8);
    for (size_t i = 0; i < num; i++) {
        objs[i] = fake_kube_authz(names[i], actions[i], rv, 0);
    }
    fake_kube_set_items(fk, rv, objs, num);
    for (size_t i = 0; i < num; i++) {
        free(objs[i]);
    }
}

static void push_event(const char *type, const char *name, const char *action, const char *rv)
{
    char *line = fake_kube_event(type, name, action, rv);
    fake_kube_push(fk, line);
    free(line);
}

static uint64_t version(void)
{
    uint64_t v;
    (void)ca_policy_source_current(src, &v);
    return v;
}

static size_t num_authz(void)
{
    uint64_t v;
    return ca_policy_source_current(src, &v)->num_authz;
}

Test(ca_kube_source, list_watch_relist_and_reconnect_reach_the_compiled_policy)
{
    static const char *const names[] = {"allow-web", "deny-db", "bad-one"};
    static const char *const actions[] = {"ALLOW", "DENY", "MAYBE"};
    set_items("10", names, actions, 3);
    start_source();

    /* the first list: two pages; the invalid object is left out, the rest is the set */
    poll_until(version() >= 1, "the first set");
    cr_assert_eq(version(), 1);
    cr_assert_eq(num_authz(), 2);
    cr_assert_not_null(find_authz("allow-web"));
    cr_assert_not_null(find_authz("deny-db"));
    cr_assert_null(find_authz("bad-one"));
    cr_assert_eq(seen().list_requests, 2, "3 items, 2 a page");
    cr_assert_eq(seen().continued_lists, 1);
    cr_assert_eq(ca_policy_source_refusals(src), 1);
    const char *err = ca_policy_source_error(src);
    cr_assert_not_null(strstr(err, "AuthorizationPolicy shop/bad-one (resourceVersion 10)"), "%s",
                       err);
    cr_assert_not_null(strstr(err, "k8s/authorizationpolicies/shop/bad-one.json:"), "%s", err);
    cr_assert_not_null(strstr(err, "MAYBE"), "the loader's own words: %s", err);
    cr_assert_eq(ca_policy_source_num_files(src), 2);
    const char *name;
    const uint8_t *data;
    size_t len;
    ca_policy_source_file(src, 0, &name, &data, &len);
    cr_assert_str_eq(name, "k8s/authorizationpolicies/shop/allow-web.json");
    cr_assert_null(strstr((const char *)data, "uid"), "only what the loader reads is sent");
    cr_assert_eq(decide(), POLICY_REASON_DENY_MATCHED);
    cr_assert_str_eq(seen().last_auth, "Authorization: Bearer tok-1");
    poll_until(seen().watch_requests >= 1, "the watch");
    cr_assert_str_eq(seen().last_watch_rv, "10", "the watch starts at the list's resourceVersion");

    /* ADDED, MODIFIED, DELETED and BOOKMARK over the chunked watch */
    push_event("ADDED", "audit-all", "AUDIT", "11");
    push_event("MODIFIED", "allow-web", "DENY", "12");
    push_event("DELETED", "deny-db", "DENY", "13");
    fake_kube_push(fk, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"AuthorizationPolicy\","
                       "\"metadata\":{\"resourceVersion\":\"20\"}}}");
    poll_until(find_authz("deny-db") == NULL && find_authz("audit-all") != NULL &&
                   find_authz("allow-web")->action == POLICY_ACTION_DENY,
               "the watched changes");
    cr_assert_eq(num_authz(), 2);
    cr_assert_eq(decide(), POLICY_REASON_DENY_MATCHED, "allow-web now denies");
    uint64_t before_bad = version();

    /* an invalid new version: refused, and the previous valid one stays */
    push_event("MODIFIED", "allow-web", "PERHAPS", "21");
    poll_until(ca_policy_source_refusals(src) == 2, "the refusal");
    cr_assert_eq(find_authz("allow-web")->action, POLICY_ACTION_DENY);
    cr_assert_eq(version(), before_bad, "nothing agents get changed");
    cr_assert_not_null(strstr(ca_policy_source_error(src), "shop/allow-web"));

    /* the token rotates; the connection drops mid-event: the watch resumes, no relist */
    write_token("tok-2");
    fake_kube_push(fk, FAKE_KUBE_DROP);
    poll_until(seen().watch_requests >= 2, "the reconnect");
    cr_assert_str_eq(seen().last_auth, "Authorization: Bearer tok-2",
                     "the token file is read again");
    cr_assert_str_eq(seen().last_watch_rv, "21", "resumed from the last resourceVersion seen");
    cr_assert_eq(seen().list_requests, 2, "a dropped watch is not a relist");

    /* a 410 ERROR event: relist; what the list lacks is gone, what it changed is taken */
    static const char *const names2[] = {"allow-web"};
    static const char *const actions2[] = {"ALLOW"};
    set_items("30", names2, actions2, 1);
    fake_kube_push(fk, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                       "\"status\":\"Failure\",\"message\":\"too old resource version: 21 (25)\","
                       "\"reason\":\"Expired\",\"code\":410}}");
    poll_until(num_authz() == 1 && find_authz("allow-web")->action == POLICY_ACTION_ALLOW,
               "the relist");
    cr_assert_eq(seen().list_requests, 3);
    cr_assert_eq(decide(), POLICY_REASON_ALLOW_MATCHED);
    cr_assert_str_eq(ca_policy_source_error(src), "", "the refused object is gone");
    poll_until(seen().watch_requests >= 3, "the watch after the relist");
    cr_assert_str_eq(seen().last_watch_rv, "30");

    /* a 410 at the start of a watch: relist too */
    fake_kube_expire_next_watch(fk);
    fake_kube_push(fk, FAKE_KUBE_END);
    poll_until(seen().list_requests >= 4, "the relist after an HTTP 410");
}

Test(ca_kube_source, nothing_is_served_until_every_kind_is_listed)
{
    /* the API answers 404 to nothing here, but holds no objects: an empty set, version 1 */
    start_source();
    cr_assert_eq(version(), 0);
    poll_until(version() == 1, "the first (empty) set");
    cr_assert_eq(num_authz(), 0);
    cr_assert_eq(ca_policy_source_num_files(src), 0);
}

Test(ca_kube_source, an_unreadable_token_is_a_failure_that_is_retried)
{
    unlink(token_path);
    start_source();
    usleep(300000);
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK, "nothing yet, nothing refused");
    cr_assert_eq(version(), 0, "no request without the token");
    cr_assert_eq(seen().list_requests, 0);
    write_token("tok-late");
    poll_until(version() == 1, "the list once the token is there");
    cr_assert_str_eq(seen().last_auth, "Authorization: Bearer tok-late");
}

Test(ca_kube_source, plain_http_is_refused_off_loopback)
{
    char err[256];
    struct ca_kube_config cfg = {.api_url = "http://10.0.0.1:8080"};
    cr_assert_null(ca_policy_source_new_kube(&cfg, err, sizeof(err)));
    cr_assert_not_null(strstr(err, "https://"), "%s", err);
}

Test(ca_kube_source, in_cluster_config_brackets_ipv6)
{
    char url[128], err[256];
    struct ca_kube_config cfg = {.api_url = NULL};
    cr_assert_eq(setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1), 0);
    cr_assert_eq(setenv("KUBERNETES_SERVICE_PORT", "6443", 1), 0);
    cr_assert_eq(ca_kube_config_in_cluster(&cfg, url, sizeof(url), err, sizeof(err)), WEFT_OK);
    cr_assert_str_eq(cfg.api_url, "https://[fd00::1]:6443");
    cr_assert_str_eq(cfg.token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
    cr_assert_str_eq(cfg.ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
    struct ca_kube_config v4 = {.api_url = NULL};
    cr_assert_eq(setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1), 0);
    cr_assert_eq(ca_kube_config_in_cluster(&v4, url, sizeof(url), err, sizeof(err)), WEFT_OK);
    cr_assert_str_eq(v4.api_url, "https://10.96.0.1:6443");
    struct ca_kube_config none = {.api_url = NULL};
    cr_assert_eq(unsetenv("KUBERNETES_SERVICE_HOST"), 0);
    cr_assert_eq(ca_kube_config_in_cluster(&none, url, sizeof(url), err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
}

Test(ca_kube_source, an_object_past_the_count_limit_is_refused)
{
    static const char *const names[] = {"a", "b", "c"};
    static const char *const actions[] = {"ALLOW", "ALLOW", "ALLOW"};
    set_items("10", names, actions, 3);
    start_source_limited(2, 0);
    poll_until(version() == 1, "the first set");
    cr_assert_eq(num_authz(), 2, "two fit");
    cr_assert_eq(ca_policy_source_refusals(src), 1, "the third does not");
    cr_assert_not_null(strstr(ca_policy_source_error(src), "more than 2 policy objects"), "%s",
                       ca_policy_source_error(src));
}

Test(ca_kube_source, an_object_past_the_byte_limit_is_refused)
{
    static const char *const names[] = {"a", "b"};
    static const char *const actions[] = {"ALLOW", "ALLOW"};
    set_items("10", names, actions, 2);
    start_source_limited(0, 0);
    poll_until(version() == 1, "the first set");
    const char *name;
    const uint8_t *data;
    size_t len_a, len_b;
    ca_policy_source_file(src, 0, &name, &data, &len_a);
    ca_policy_source_file(src, 1, &name, &data, &len_b);
    ca_policy_source_free(src);

    /* room for exactly both, then one byte less */
    start_source_limited(0, len_a + len_b);
    poll_until(version() == 1, "the set at the limit");
    cr_assert_eq(num_authz(), 2);
    ca_policy_source_free(src);
    start_source_limited(0, len_a + len_b - 1);
    poll_until(version() == 1, "the set past the limit");
    cr_assert_eq(num_authz(), 1);
    cr_assert_not_null(strstr(ca_policy_source_error(src), "more than"), "%s",
                       ca_policy_source_error(src));
}

Test(ca_kube_source, a_token_file_past_its_limit_is_not_sent)
{
    char *big = malloc(CA_KUBE_MAX_TOKEN + 1);
    memset(big, 'x', CA_KUBE_MAX_TOKEN + 1);
    cr_assert_eq(weft_file_write_atomic(token_path, big, CA_KUBE_MAX_TOKEN + 1, 0600), WEFT_OK);
    free(big);
    start_source();
    int64_t until = now_ms() + 5000;
    while (ca_policy_source_api_failures(src) < 3) {
        cr_assert_lt(now_ms(), until, "no failure counted");
        usleep(10000);
    }
    cr_assert_eq(seen().list_requests, 0, "nothing was sent");
    cr_assert_eq(version(), 0);
}

/* --- HTTPS, with a CA minted now ------------------------------------------------------------ */

static EVP_PKEY *new_key(void)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    cr_assert(ec != NULL && EC_KEY_generate_key(ec));
    EVP_PKEY *key = EVP_PKEY_new();
    cr_assert(key != NULL && EVP_PKEY_assign_EC_KEY(key, ec));
    return key;
}

/* mint_ca makes a root valid around the real time (GnuTLS checks it against the clock) and
 * writes it as PEM to |path|. */
static void mint_ca(X509 **out, EVP_PKEY *key, const char *path)
{
    struct testlib_cert_spec spec;
    testlib_spec_signing_ca(&spec, "spiffe://kube.test");
    spec.subject_cn = "fake kube-apiserver CA";
    spec.not_before = time(NULL) - 3600;
    spec.not_after = time(NULL) + 3600;
    cr_assert_eq(testlib_cert_build(out, &spec, key, NULL, NULL), WEFT_OK);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert(PEM_write_X509(f, *out));
    cr_assert_eq(fclose(f), 0);
}

/* https_fake restarts the fake over HTTPS with a certificate for localhost under a new CA,
 * written to DIR/ca.pem; a second, unrelated CA goes to DIR/other.pem. */
static char ca_pem[300], other_pem[300];

static void https_fake(void)
{
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", tmp);
    snprintf(other_pem, sizeof(other_pem), "%s/other.pem", tmp);
    EVP_PKEY *ca_key = new_key(), *other_key = new_key(), *leaf_key = new_key();
    X509 *ca = NULL, *other = NULL, *leaf = NULL;
    mint_ca(&ca, ca_key, ca_pem);
    mint_ca(&other, other_key, other_pem);
    struct testlib_cert_spec spec = {
        .subject_cn = "localhost",
        .dns = "localhost",
        .basic_constraints = TESTLIB_BC_LEAF,
        .has_key_usage = true,
        .key_usage = KU_DIGITAL_SIGNATURE,
        .key_usage_critical = true,
        .has_eku = true,
        .eku_server_auth = true,
        .not_before = time(NULL) - 3600,
        .not_after = time(NULL) + 3600,
    };
    cr_assert_eq(testlib_cert_build(&leaf, &spec, leaf_key, ca, ca_key), WEFT_OK);
    fake_kube_stop(fk);
    cr_assert_eq(fake_kube_start_tls(&fk, leaf, leaf_key), WEFT_OK);
    X509_free(ca);
    X509_free(other);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_key);
    EVP_PKEY_free(leaf_key);
}

Test(ca_kube_source, https_with_the_api_servers_ca)
{
    https_fake();
    static const char *const names[] = {"allow-web"};
    static const char *const actions[] = {"ALLOW"};
    set_items("10", names, actions, 1);
    ca_file = ca_pem;
    start_source();
    poll_until(version() == 1, "the list over HTTPS");
    cr_assert_eq(num_authz(), 1);
    cr_assert_str_eq(seen().last_auth, "Authorization: Bearer tok-1");
    unlink(ca_pem);
    unlink(other_pem);
}

Test(ca_kube_source, https_refuses_a_server_its_ca_did_not_sign)
{
    https_fake();
    ca_file = other_pem;
    start_source();
    int64_t until = now_ms() + 5000;
    while (ca_policy_source_api_failures(src) < 3) {
        cr_assert_lt(now_ms(), until, "no failure counted");
        usleep(10000);
    }
    cr_assert_eq(seen().list_requests, 0, "no request, so no token, went to it");
    cr_assert_eq(version(), 0);
    unlink(ca_pem);
    unlink(other_pem);
}

Test(ca_kube_source, a_relist_of_the_same_objects_is_no_new_version_and_deleted_means_gone)
{
    static const char *const names[] = {"allow-web"};
    static const char *const actions[] = {"ALLOW"};
    set_items("10", names, actions, 1);
    start_source();
    poll_until(version() == 1 && seen().watch_requests >= 1, "the first set and its watch");

    /* the same objects again after a 410: nothing for agents to take */
    fake_kube_push(fk, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}");
    poll_until(seen().watch_requests >= 2, "the watch after the relist");
    cr_assert_eq(seen().list_requests, 2);
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK);
    cr_assert_eq(version(), 1);

    /* refused, then deleted: the kept version and the refusal go with it */
    push_event("MODIFIED", "allow-web", "NEVER", "12");
    poll_until(ca_policy_source_refusals(src) == 1, "the refusal");
    cr_assert_eq(num_authz(), 1);
    push_event("DELETED", "allow-web", "NEVER", "13");
    poll_until(version() == 2, "the deletion");
    cr_assert_eq(num_authz(), 0);
    cr_assert_str_eq(ca_policy_source_error(src), "");

    /* an object of another kind on this watch is refused */
    char *line = fake_kube_event("ADDED", "odd", "ALLOW", "14");
    char *kind = strstr(line, "AuthorizationPolicy");
    cr_assert_not_null(kind);
    memcpy(kind, "PeerAuthentication\" ", 20); /* one shorter, and a space JSON allows */
    fake_kube_push(fk, line);
    free(line);
    poll_until(ca_policy_source_refusals(src) == 2, "the refusal of the odd kind");
    cr_assert_not_null(strstr(ca_policy_source_error(src), "of kind \"PeerAuthentication\""), "%s",
                       ca_policy_source_error(src));
    cr_assert_eq(version(), 2);
}
