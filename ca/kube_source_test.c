/* ca/kube_source_test.c: policy from the Kubernetes API, against a fake API server on
 * loopback (plain HTTP) that serves paginated LISTs, a chunked WATCH the test scripts event by
 * event, 410s and dropped connections. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ca/kube_client.h"
#include "ca/policy_source.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "policy/snapshot.h"

/* --- the fake API server ------------------------------------------------------------------ */

#define MAX_ITEMS 16
#define MAX_SCRIPT 64
#define MAX_CONNS 256

struct fake {
    int lfd;
    uint16_t port;
    pthread_t acceptor;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t conns[MAX_CONNS];
    size_t num_conns;
    /* what LIST of authorizationpolicies returns (the other kinds are empty) */
    char *items[MAX_ITEMS];
    size_t num_items;
    char list_rv[32];
    /* what the authorizationpolicies watch sends, one line at a time; "!DROP" closes the
     * connection mid-stream, "!END" ends the response properly */
    char *script[MAX_SCRIPT];
    size_t num_script, next_script;
    bool watch_410_at_start;
    /* what was asked, for kind 0 (authorizationpolicies) */
    int list_requests, continued_lists, watch_requests;
    char last_watch_rv[64];
    char last_auth[256];
};

static struct fake fk;

static void send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void send_chunk(int fd, const char *data, size_t len)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "%zx\r\n", len);
    send_all(fd, head, (size_t)n);
    send_all(fd, data, len);
    send_all(fd, "\r\n", 2);
}

/* query_get copies the value of |key| in the query string |q| into |out| ("" when absent). */
static void query_get(const char *q, const char *key, char *out, size_t out_len)
{
    out[0] = '\0';
    size_t klen = strlen(key);
    for (const char *p = q; p != NULL && *p != '\0'; p = strchr(p, '&') ? strchr(p, '&') + 1 : 0) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *v = p + klen + 1;
            size_t n = strcspn(v, "& ");
            snprintf(out, out_len, "%.*s", (int)(n < out_len ? n : out_len - 1), v);
            return;
        }
    }
}

/* client_gone reports whether the client closed its end (waiting up to 50 ms). */
static bool client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 50) == 1) {
        char b[64];
        return recv(fd, b, sizeof(b), MSG_DONTWAIT) <= 0;
    }
    return false;
}

static void serve_list(int fd, bool authz, const char *query)
{
    char limit_s[16], cont[64];
    query_get(query, "limit", limit_s, sizeof(limit_s));
    query_get(query, "continue", cont, sizeof(cont));
    size_t limit = (size_t)atoi(limit_s), off = 0;
    char *body = NULL;
    size_t body_len = 0;
    FILE *f = open_memstream(&body, &body_len);
    pthread_mutex_lock(&fk.mu);
    if (authz) {
        fk.list_requests++;
        if (cont[0] != '\0') {
            fk.continued_lists++;
            off = (size_t)atoi(cont + strlen("off-"));
        }
    }
    size_t n = authz ? fk.num_items : 0;
    size_t end = limit > 0 && off + limit < n ? off + limit : n;
    fprintf(f, "{\"apiVersion\":\"security.weft.dev/v1alpha1\",\"kind\":\"List\",\"metadata\":{");
    fprintf(f, "\"resourceVersion\":\"%s\"", fk.list_rv);
    if (end < n) {
        fprintf(f, ",\"continue\":\"off-%zu\"", end);
    }
    fprintf(f, "},\"items\":[");
    for (size_t i = off; i < end; i++) {
        fprintf(f, "%s%s", i > off ? "," : "", fk.items[i]);
    }
    fprintf(f, "]}");
    pthread_mutex_unlock(&fk.mu);
    fclose(f);
    char head[200];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      body_len);
    send_all(fd, head, (size_t)hn);
    send_all(fd, body, body_len);
    free(body);
}

static void serve_watch(int fd, bool authz, const char *query)
{
    if (authz) {
        pthread_mutex_lock(&fk.mu);
        fk.watch_requests++;
        query_get(query, "resourceVersion", fk.last_watch_rv, sizeof(fk.last_watch_rv));
        bool gone = fk.watch_410_at_start;
        fk.watch_410_at_start = false;
        pthread_mutex_unlock(&fk.mu);
        if (gone) {
            static const char body[] = "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":410,"
                                       "\"reason\":\"Expired\"}";
            char head[200];
            int hn = snprintf(head, sizeof(head),
                              "HTTP/1.1 410 Gone\r\nContent-Length: %zu\r\n"
                              "Connection: close\r\n\r\n",
                              sizeof(body) - 1);
            send_all(fd, head, (size_t)hn);
            send_all(fd, body, sizeof(body) - 1);
            return;
        }
    }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    send_all(fd, head, sizeof(head) - 1);
    while (!atomic_load(&fk.stop) && !client_gone(fd)) {
        if (!authz) {
            continue; /* the other kinds: a watch with nothing to say */
        }
        pthread_mutex_lock(&fk.mu);
        char *line = fk.next_script < fk.num_script ? fk.script[fk.next_script++] : NULL;
        pthread_mutex_unlock(&fk.mu);
        if (line == NULL) {
            continue;
        }
        if (strcmp(line, "!DROP") == 0) {
            send_chunk(fd, "{\"type\":\"ADD", 12); /* half an event, then the connection goes */
            return;
        }
        if (strcmp(line, "!END") == 0) {
            send_all(fd, "0\r\n\r\n", 5);
            return;
        }
        char buf[2048];
        int n = snprintf(buf, sizeof(buf), "%s\n", line);
        /* split in two chunks: an event may straddle them */
        send_chunk(fd, buf, (size_t)n / 2);
        send_chunk(fd, buf + n / 2, (size_t)n - (size_t)n / 2);
    }
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192];
    size_t len = 0;
    while (len < sizeof(req) - 1 && !atomic_load(&fk.stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1) {
            continue;
        }
        ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL) {
            break;
        }
    }
    req[len] = '\0';
    char path[2048] = "";
    if (sscanf(req, "GET %2047s HTTP/1.1", path) == 1) {
        const char *auth = strstr(req, "Authorization: ");
        pthread_mutex_lock(&fk.mu);
        snprintf(fk.last_auth, sizeof(fk.last_auth), "%.*s",
                 auth != NULL ? (int)strcspn(auth, "\r") : 0, auth != NULL ? auth : "");
        pthread_mutex_unlock(&fk.mu);
        static const char prefix[] = "/apis/security.weft.dev/v1alpha1/";
        char *q = strchr(path, '?');
        if (q != NULL) {
            *q++ = '\0';
        }
        bool authz = strcmp(path, "/apis/security.weft.dev/v1alpha1/authorizationpolicies") == 0;
        char watch[8];
        query_get(q, "watch", watch, sizeof(watch));
        if (strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
            send_all(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 45);
        } else if (strcmp(watch, "1") == 0) {
            serve_watch(fd, authz, q);
        } else {
            serve_list(fd, authz, q);
        }
    }
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&fk.stop)) {
        struct pollfd p = {.fd = fk.lfd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1) {
            continue;
        }
        int fd = accept(fk.lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        pthread_mutex_lock(&fk.mu);
        if (fk.num_conns < MAX_CONNS &&
            pthread_create(&fk.conns[fk.num_conns], NULL, serve, (void *)(intptr_t)fd) == 0) {
            fk.num_conns++;
        } else {
            close(fd);
        }
        pthread_mutex_unlock(&fk.mu);
    }
    return NULL;
}

static void fake_start(void)
{
    memset(&fk, 0, sizeof(fk));
    pthread_mutex_init(&fk.mu, NULL);
    snprintf(fk.list_rv, sizeof(fk.list_rv), "10");
    fk.lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fk.lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fk.lfd, 64), 0);
    socklen_t sl = sizeof(sa);
    cr_assert_eq(getsockname(fk.lfd, (struct sockaddr *)&sa, &sl), 0);
    fk.port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&fk.acceptor, NULL, accept_loop, NULL), 0);
}

static void fake_stop(void)
{
    atomic_store(&fk.stop, true);
    pthread_join(fk.acceptor, NULL);
    for (size_t i = 0; i < fk.num_conns; i++) {
        pthread_join(fk.conns[i], NULL);
    }
    close(fk.lfd);
    for (size_t i = 0; i < fk.num_items; i++) {
        free(fk.items[i]);
    }
    for (size_t i = 0; i < fk.num_script; i++) {
        free(fk.script[i]);
    }
    pthread_mutex_destroy(&fk.mu);
}

static char *authz_json(const char *name, const char *action, const char *rv)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\",\"resourceVersion\":\"%s\","
             "\"uid\":\"u-%s\",\"generation\":1},\"spec\":{\"action\":\"%s\",\"rules\":[{}]}}",
             name, rv, name, action);
    return strdup(buf);
}

static void fake_set_items(const char *rv, const char *const *names, const char *const *actions,
                           size_t num)
{
    pthread_mutex_lock(&fk.mu);
    for (size_t i = 0; i < fk.num_items; i++) {
        free(fk.items[i]);
    }
    for (size_t i = 0; i < num; i++) {
        fk.items[i] = authz_json(names[i], actions[i], rv);
    }
    fk.num_items = num;
    snprintf(fk.list_rv, sizeof(fk.list_rv), "%s", rv);
    pthread_mutex_unlock(&fk.mu);
}

static void fake_push(const char *line)
{
    pthread_mutex_lock(&fk.mu);
    cr_assert_lt(fk.num_script, MAX_SCRIPT);
    fk.script[fk.num_script++] = strdup(line);
    pthread_mutex_unlock(&fk.mu);
}

static void fake_push_event(const char *type, const char *name, const char *action, const char *rv)
{
    char *obj = authz_json(name, action, rv);
    char line[1024];
    snprintf(line, sizeof(line),
             "{\"type\":\"%s\",\"object\":{\"apiVersion\":\"security.weft.dev/v1alpha1\","
             "\"kind\":\"AuthorizationPolicy\",%s}",
             type, obj + 1);
    free(obj);
    fake_push(line);
}

static int fake_int(const int *field)
{
    pthread_mutex_lock(&fk.mu);
    int v = *field;
    pthread_mutex_unlock(&fk.mu);
    return v;
}

static void fake_str(char *out, size_t len, const char *field)
{
    pthread_mutex_lock(&fk.mu);
    snprintf(out, len, "%s", field);
    pthread_mutex_unlock(&fk.mu);
}

/* --- the source under test ---------------------------------------------------------------- */

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
    fake_start();
}

static void teardown(void)
{
    ca_policy_source_free(src); /* joins the watchers first: the fake may then stop */
    src = NULL;
    fake_stop();
    unlink(token_path);
    rmdir(tmp);
}

TestSuite(ca_kube_source, .init = setup, .fini = teardown, .timeout = 60);

static void start_source(void)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", fk.port);
    struct ca_kube_config cfg = {
        .api_url = url,
        .token_file = token_path,
        .watch_timeout_s = 30,
        .backoff_min_ms = 20,
        .backoff_max_ms = 100,
        .page_limit = 2,
    };
    src = ca_policy_source_new_kube(&cfg, err, sizeof(err));
    cr_assert_not_null(src, "%s", err);
}

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
    fake_set_items("10", names, actions, 3);
    start_source();

    /* the first list: two pages; the invalid object is left out, the rest is the set */
    poll_until(version() >= 1, "the first set");
    cr_assert_eq(version(), 1);
    cr_assert_eq(num_authz(), 2);
    cr_assert_not_null(find_authz("allow-web"));
    cr_assert_not_null(find_authz("deny-db"));
    cr_assert_null(find_authz("bad-one"));
    cr_assert_eq(fake_int(&fk.list_requests), 2, "3 items, 2 a page");
    cr_assert_eq(fake_int(&fk.continued_lists), 1);
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
    char got[256];
    fake_str(got, sizeof(got), fk.last_auth);
    cr_assert_str_eq(got, "Authorization: Bearer tok-1");
    poll_until(fake_int(&fk.watch_requests) >= 1, "the watch");
    fake_str(got, sizeof(got), fk.last_watch_rv);
    cr_assert_str_eq(got, "10", "the watch starts at the list's resourceVersion");

    /* ADDED, MODIFIED, DELETED and BOOKMARK over the chunked watch */
    fake_push_event("ADDED", "audit-all", "AUDIT", "11");
    fake_push_event("MODIFIED", "allow-web", "DENY", "12");
    fake_push_event("DELETED", "deny-db", "DENY", "13");
    fake_push("{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"AuthorizationPolicy\","
              "\"metadata\":{\"resourceVersion\":\"20\"}}}");
    poll_until(find_authz("deny-db") == NULL && find_authz("audit-all") != NULL &&
                   find_authz("allow-web")->action == POLICY_ACTION_DENY,
               "the watched changes");
    cr_assert_eq(num_authz(), 2);
    cr_assert_eq(decide(), POLICY_REASON_DENY_MATCHED, "allow-web now denies");
    uint64_t before_bad = version();

    /* an invalid new version: refused, and the previous valid one stays */
    fake_push_event("MODIFIED", "allow-web", "PERHAPS", "21");
    poll_until(ca_policy_source_refusals(src) == 2, "the refusal");
    cr_assert_eq(find_authz("allow-web")->action, POLICY_ACTION_DENY);
    cr_assert_eq(version(), before_bad, "nothing agents get changed");
    cr_assert_not_null(strstr(ca_policy_source_error(src), "shop/allow-web"));

    /* the token rotates; the connection drops mid-event: the watch resumes, no relist */
    write_token("tok-2");
    fake_push("!DROP");
    poll_until(fake_int(&fk.watch_requests) >= 2, "the reconnect");
    fake_str(got, sizeof(got), fk.last_auth);
    cr_assert_str_eq(got, "Authorization: Bearer tok-2", "the token file is read again");
    fake_str(got, sizeof(got), fk.last_watch_rv);
    cr_assert_str_eq(got, "21", "resumed from the last resourceVersion seen");
    cr_assert_eq(fake_int(&fk.list_requests), 2, "a dropped watch is not a relist");

    /* a 410 ERROR event: relist; what the list lacks is gone, what it changed is taken */
    static const char *const names2[] = {"allow-web"};
    static const char *const actions2[] = {"ALLOW"};
    fake_set_items("30", names2, actions2, 1);
    fake_push("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
              "\"status\":\"Failure\",\"message\":\"too old resource version: 21 (25)\","
              "\"reason\":\"Expired\",\"code\":410}}");
    poll_until(num_authz() == 1 && find_authz("allow-web")->action == POLICY_ACTION_ALLOW,
               "the relist");
    cr_assert_eq(fake_int(&fk.list_requests), 3);
    cr_assert_eq(decide(), POLICY_REASON_ALLOW_MATCHED);
    cr_assert_str_eq(ca_policy_source_error(src), "", "the refused object is gone");
    poll_until(fake_int(&fk.watch_requests) >= 3, "the watch after the relist");
    fake_str(got, sizeof(got), fk.last_watch_rv);
    cr_assert_str_eq(got, "30");

    /* a 410 at the start of a watch: relist too */
    pthread_mutex_lock(&fk.mu);
    fk.watch_410_at_start = true;
    pthread_mutex_unlock(&fk.mu);
    fake_push("!END");
    poll_until(fake_int(&fk.list_requests) >= 4, "the relist after an HTTP 410");
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
    cr_assert_eq(fake_int(&fk.list_requests), 0);
    write_token("tok-late");
    poll_until(version() == 1, "the list once the token is there");
    char got[256];
    fake_str(got, sizeof(got), fk.last_auth);
    cr_assert_str_eq(got, "Authorization: Bearer tok-late");
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
