/* scan/alert_test.c: alerts to an Alertmanager-like receiver on loopback (written here: it
 * records each request), the state file across passes, and --alert-exec. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/base/file.h"
#include "scan/alert.h"
#include "test/testlib/net.h"

#define T0 INT64_C(1800000000) /* 2027-01-15T08:00:00Z */
#define MAX_REQS 16

/* --- the receiver --------------------------------------------------------------------------- */

struct request {
    char method[16];
    char path[256];
    char head[4096];
    char *body;
};

static struct {
    int lfd, port;
    pthread_t th;
    volatile int stop;
    volatile int status; /* what it answers */
    pthread_mutex_t mu;
    struct request reqs[MAX_REQS];
    size_t num_reqs;
} rx;

static void serve_one(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    size_t want = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length: ");
            want = cl != NULL ? (size_t)atol(cl + 18) : 0;
            if (len >= (size_t)(end + 4 - buf) + want) {
                break;
            }
        }
    }
    if (end != NULL) {
        pthread_mutex_lock(&rx.mu);
        if (rx.num_reqs < MAX_REQS) {
            struct request *r = &rx.reqs[rx.num_reqs++];
            sscanf(buf, "%15s %255s", r->method, r->path);
            snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - buf), buf);
            r->body = strndup(end + 4, want);
        }
        pthread_mutex_unlock(&rx.mu);
        int status = rx.status;
        const char *text = status == 200 ? "" : "boom: the receiver is down\n";
        char resp[512];
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         status, strlen(text), text);
        (void)!send(fd, resp, (size_t)n, MSG_NOSIGNAL);
    }
    free(buf);
    close(fd);
}

static void *serve(void *arg)
{
    (void)arg;
    while (!rx.stop) {
        struct pollfd p = {.fd = rx.lfd, .events = POLLIN};
        if (poll(&p, 1, 50) == 1) {
            int fd = accept(rx.lfd, NULL, NULL);
            if (fd >= 0) {
                serve_one(fd);
            }
        }
    }
    return NULL;
}

static size_t num_reqs(void)
{
    pthread_mutex_lock(&rx.mu);
    size_t n = rx.num_reqs;
    pthread_mutex_unlock(&rx.mu);
    return n;
}

/* --- fixtures ------------------------------------------------------------------------------- */

static char dir[] = "/tmp/weft-alert-XXXXXX";
static char url[64], state[256];
static struct scan_alert_opts opts;
static struct scan_result results[2];
static struct scan_finding fbuf[2][4];
static const struct scan_finding *findings[2];
static size_t num_findings[2];
static struct scan_pass pass;

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    pthread_mutex_init(&rx.mu, NULL);
    rx.status = 200;
    rx.lfd = testlib_listen_loopback(&rx.port);
    cr_assert_geq(rx.lfd, 0);
    cr_assert_eq(pthread_create(&rx.th, NULL, serve, NULL), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", rx.port);
    snprintf(state, sizeof(state), "%s/state.json", dir);
    opts = (struct scan_alert_opts){.url = url,
                                    .state_path = state,
                                    .generator_url = "http://scan.example/",
                                    .timeout_ms = 3000};
    memset(results, 0, sizeof(results));
    snprintf(results[0].endpoint, sizeof(results[0].endpoint), "api:8443");
    results[0].reached = true;
    snprintf(results[1].endpoint, sizeof(results[1].endpoint), "db:5432");
    results[1].reached = true;
    findings[0] = fbuf[0], findings[1] = fbuf[1];
    num_findings[0] = num_findings[1] = 0;
    pass = (struct scan_pass){
        .results = results, .findings = findings, .num_findings = num_findings, .num = 2};
}

static void teardown(void)
{
    rx.stop = 1;
    pthread_join(rx.th, NULL);
    close(rx.lfd);
    for (size_t i = 0; i < rx.num_reqs; i++) {
        free(rx.reqs[i].body);
    }
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

TestSuite(alert, .init = setup, .fini = teardown, .timeout = 60);

static void add(size_t ep, enum scan_severity s, const char *code, const char *subject,
                const char *msg)
{
    struct scan_finding *f = &fbuf[ep][num_findings[ep]++];
    memset(f, 0, sizeof(*f));
    f->severity = s;
    snprintf(f->endpoint, sizeof(f->endpoint), "%s", results[ep].endpoint);
    snprintf(f->code, sizeof(f->code), "%s", code);
    snprintf(f->subject, sizeof(f->subject), "%s", subject);
    snprintf(f->message, sizeof(f->message), "%s", msg);
}

static void clear(void) { num_findings[0] = num_findings[1] = 0; }

static int send_at(int64_t now, char *err, size_t len)
{
    pass.scanned_at = now;
    return scan_alert_send(&opts, &pass, now, err, len);
}

static json_t *body_of(size_t i)
{
    cr_assert_lt(i, num_reqs());
    json_error_t je;
    json_t *j = json_loads(rx.reqs[i].body, 0, &je);
    cr_assert_not_null(j, "%s: %s", je.text, rx.reqs[i].body);
    cr_assert(json_is_array(j));
    return j;
}

/* find_alert returns the alert of |arr| with label code=|code| and severity=|sev|. */
static json_t *find_alert(json_t *arr, const char *code, const char *sev)
{
    size_t i;
    json_t *a;
    json_array_foreach(arr, i, a)
    {
        json_t *l = json_object_get(a, "labels");
        if (strcmp(json_string_value(json_object_get(l, "code")), code) == 0 &&
            strcmp(json_string_value(json_object_get(l, "severity")), sev) == 0) {
            return a;
        }
    }
    return NULL;
}

static const char *field(json_t *a, const char *k)
{
    return json_string_value(json_object_get(a, k));
}

static char *read_all(const char *path)
{
    uint8_t *d;
    size_t n;
    if (weft_file_read(&d, &n, path, 1 << 20) != WEFT_OK) {
        return NULL;
    }
    return (char *)d;
}

/* --- Alertmanager ---------------------------------------------------------------------------- */

Test(alert, fires_keeps_starts_at_resolves_once_then_nothing)
{
    char err[1024];
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "spiffe://example.org/api", "3h left of 24h");
    add(0, SCAN_SEV_WARN, "tls12-accepted", "", "TLS 1.2 accepted");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(num_reqs(), 1);
    struct request *r = &rx.reqs[0];
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->path, "/api/v2/alerts");
    cr_assert(strcasestr(r->head, "\r\nContent-Type: application/json") != NULL, "%s", r->head);
    json_t *b = body_of(0);
    cr_assert_eq(json_array_size(b), 1, "a warning is not alerted: %s", r->body);
    json_t *a = json_array_get(b, 0);
    json_t *l = json_object_get(a, "labels");
    cr_assert_str_eq(field(l, "alertname"), "WeftScanLeafExpiring");
    cr_assert_str_eq(field(l, "endpoint"), "api:8443");
    cr_assert_str_eq(field(l, "code"), "leaf-expiring");
    cr_assert_str_eq(field(l, "severity"), "page");
    cr_assert_str_eq(field(l, "subject"), "spiffe://example.org/api");
    cr_assert_eq(json_object_size(l), 5);
    cr_assert_str_eq(field(json_object_get(a, "annotations"), "summary"), "3h left of 24h");
    cr_assert_str_eq(field(a, "startsAt"), "2027-01-15T08:00:00Z");
    cr_assert_null(json_object_get(a, "endsAt"));
    cr_assert_str_eq(field(a, "generatorURL"), "http://scan.example/");
    json_decref(b);

    /* the same finding a minute later: the same startsAt */
    cr_assert_eq(send_at(T0 + 60, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(num_reqs(), 2);
    b = body_of(1);
    cr_assert_eq(json_array_size(b), 1);
    cr_assert_str_eq(field(json_array_get(b, 0), "startsAt"), "2027-01-15T08:00:00Z");
    cr_assert_null(json_object_get(json_array_get(b, 0), "endsAt"));
    json_decref(b);

    /* gone: resolved once, with endsAt = now */
    clear();
    add(0, SCAN_SEV_WARN, "tls12-accepted", "", "TLS 1.2 accepted");
    cr_assert_eq(send_at(T0 + 120, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(num_reqs(), 3);
    b = body_of(2);
    cr_assert_eq(json_array_size(b), 1);
    a = find_alert(b, "leaf-expiring", "page");
    cr_assert_not_null(a);
    cr_assert_str_eq(field(a, "startsAt"), "2027-01-15T08:00:00Z");
    cr_assert_str_eq(field(a, "endsAt"), "2027-01-15T08:02:00Z");
    json_decref(b);

    /* then nothing */
    cr_assert_eq(send_at(T0 + 180, err, sizeof(err)), WEFT_OK, "%s", err);
    usleep(100 * 1000);
    cr_assert_eq(num_reqs(), 3);
    char *s = read_all(state);
    json_t *sj = json_loads(s, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(sj, "alerts")), 0, "%s", s);
    json_decref(sj);
    free(s);
}

Test(alert, receiver_error_is_reported_and_state_left_as_it_was)
{
    char err[1024];
    add(0, SCAN_SEV_CRITICAL, "expired", "CN=x", "expired");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    char *before = read_all(state);
    cr_assert_not_null(before);
    cr_assert(strstr(before, "\"expired\"") != NULL, "%s", before);

    rx.status = 500;
    clear();
    cr_assert_eq(send_at(T0 + 60, err, sizeof(err)), WEFT_EPROTO);
    cr_assert(strstr(err, "500") != NULL, "%s", err);
    cr_assert(strstr(err, "boom: the receiver is down") != NULL, "%s", err);
    cr_assert(strstr(err, url) != NULL || strstr(err, "127.0.0.1") != NULL, "%s", err);
    char *after = read_all(state);
    cr_assert_str_eq(after, before);

    /* the next pass resolves it after all */
    rx.status = 200;
    cr_assert_eq(send_at(T0 + 120, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *b = body_of(2);
    cr_assert_str_eq(field(find_alert(b, "expired", "critical"), "endsAt"), "2027-01-15T08:02:00Z");
    json_decref(b);
    free(before), free(after);
}

Test(alert, unreachable_receiver_is_an_error)
{
    char err[1024];
    rx.stop = 1;
    pthread_join(rx.th, NULL);
    close(rx.lfd);
    rx.lfd = -1;
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_EIO);
    cr_assert(strstr(err, "alert POST to http://127.0.0.1:") != NULL, "%s", err);
    cr_assert_eq(access(state, F_OK), -1, "no state written after a failed delivery");
    rx.th = pthread_self();                                     /* teardown joins nothing */
    cr_assert_eq(pthread_create(&rx.th, NULL, serve, NULL), 0); /* exits at once: stop is set */
}

Test(alert, severity_change_resolves_old_labels_and_keeps_starts_at)
{
    char err[1024];
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "20% left");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    clear();
    add(0, SCAN_SEV_CRITICAL, "leaf-expiring", "", "4% left");
    cr_assert_eq(send_at(T0 + 60, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *b = body_of(1);
    cr_assert_eq(json_array_size(b), 2, "%s", rx.reqs[1].body);
    json_t *old = find_alert(b, "leaf-expiring", "page");
    cr_assert_str_eq(field(old, "endsAt"), "2027-01-15T08:01:00Z");
    json_t *now = find_alert(b, "leaf-expiring", "critical");
    cr_assert_null(json_object_get(now, "endsAt"));
    cr_assert_str_eq(field(now, "startsAt"), "2027-01-15T08:00:00Z");
    cr_assert_null(json_object_get(json_object_get(now, "labels"), "subject"),
                   "an empty subject is no label");
    json_decref(b);
}

Test(alert, duplicates_in_a_pass_are_one_alert_at_the_highest_severity)
{
    char err[1024];
    add(0, SCAN_SEV_PAGE, "weak-key", "CN=a", "1024-bit RSA");
    add(0, SCAN_SEV_CRITICAL, "weak-key", "CN=a", "512-bit RSA");
    add(0, SCAN_SEV_PAGE, "weak-key", "CN=b", "1024-bit RSA");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *b = body_of(0);
    cr_assert_eq(json_array_size(b), 2, "%s", rx.reqs[0].body);
    cr_assert_str_eq(
        field(json_object_get(find_alert(b, "weak-key", "critical"), "annotations"), "summary"),
        "512-bit RSA");
    json_decref(b);
}

Test(alert, unreached_endpoint_keeps_its_alerts_firing)
{
    char err[1024];
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "3h left");
    add(1, SCAN_SEV_PAGE, "leaf-expiring", "", "db 3h left");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    clear();
    results[0].reached = false;
    add(0, SCAN_SEV_PAGE, "unreachable", "", "connect: refused");
    cr_assert_eq(send_at(T0 + 60, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *b = body_of(1);
    cr_assert_eq(json_array_size(b), 3, "%s", rx.reqs[1].body);
    size_t i;
    json_t *a;
    json_array_foreach(b, i, a)
    {
        const char *ep = field(json_object_get(a, "labels"), "endpoint");
        const char *code = field(json_object_get(a, "labels"), "code");
        if (strcmp(ep, "api:8443") == 0) {
            cr_assert_null(json_object_get(a, "endsAt"), "%s firing", code);
        } else {
            cr_assert_str_eq(code, "leaf-expiring");
            cr_assert_str_eq(field(a, "endsAt"), "2027-01-15T08:01:00Z", "db's resolved");
        }
    }
    json_decref(b);
    char *s = read_all(state);
    cr_assert(strstr(s, "\"3h left\"") != NULL, "remembered as it was: %s", s);
    free(s);
}

Test(alert, firing_for_sets_ends_at_while_firing)
{
    char err[1024];
    opts.firing_for_s = 900;
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *b = body_of(0);
    cr_assert_str_eq(field(json_array_get(b, 0), "endsAt"), "2027-01-15T08:15:00Z");
    json_decref(b);
}

Test(alert, without_state_fires_every_pass_and_never_resolves)
{
    char err[1024];
    opts.state_path = NULL;
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(send_at(T0 + 60, err, sizeof(err)), WEFT_OK, "%s", err);
    json_t *b = body_of(1);
    cr_assert_str_eq(field(json_array_get(b, 0), "startsAt"), "2027-01-15T08:01:00Z");
    json_decref(b);
    clear();
    cr_assert_eq(send_at(T0 + 120, err, sizeof(err)), WEFT_OK, "%s", err);
    usleep(100 * 1000);
    cr_assert_eq(num_reqs(), 2);
    cr_assert_eq(access(state, F_OK), -1);
}

Test(alert, corrupt_state_is_refused_named_and_not_overwritten)
{
    char err[1024];
    const char junk[] = "{\"version\":1,\"alerts\":[{\"endpoint\":";
    cr_assert_eq(weft_file_write_atomic(state, junk, strlen(junk), 0600), WEFT_OK);
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_EINVAL);
    cr_assert(strstr(err, state) != NULL, "%s", err);
    cr_assert(strstr(err, "corrupt") != NULL, "%s", err);
    /* what fires is still sent */
    cr_assert_eq(num_reqs(), 1);
    json_t *b = body_of(0);
    cr_assert_str_eq(field(json_array_get(b, 0), "startsAt"), "2027-01-15T08:00:00Z");
    json_decref(b);
    char *s = read_all(state);
    cr_assert_str_eq(s, junk);
    free(s);
}

Test(alert, oversized_state_is_refused)
{
    char err[1024];
    FILE *f = fopen(state, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, SCAN_ALERT_MAX_STATE_BYTES, SEEK_SET), 0);
    fputc(' ', f);
    fclose(f);
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_ELIMIT);
    cr_assert(strstr(err, state) != NULL && strstr(err, "larger than") != NULL, "%s", err);
}

/* --- the state file parser ------------------------------------------------------------------- */

static int parse(const char *text, char *err, size_t len)
{
    struct scan_alert_state s;
    int rc = scan_alert_state_parse(&s, (const uint8_t *)text, strlen(text), err, len);
    scan_alert_state_cleanup(&s);
    return rc;
}

#define ENTRY(ep, sev, starts)                                                                     \
    "{\"endpoint\":\"" ep "\",\"code\":\"leaf-expiring\",\"subject\":\"\",\"severity\":\"" sev     \
    "\",\"summary\":\"s\",\"starts_at\":\"" starts "\"}"

Test(alert, state_parser_rules)
{
    char err[256];
    cr_assert_eq(
        parse("{\"version\":1,\"alerts\":[" ENTRY("a:1", "page", "2027-01-15T08:00:00Z") "]}", err,
              sizeof(err)),
        WEFT_OK, "%s", err);
    const struct {
        const char *text, *why;
    } bad[] = {
        {"[]", "not a state file"},
        {"{\"version\":2,\"alerts\":[]}", "version 2"},
        {"{\"version\":1,\"alerts\":[],\"x\":1}", "not a state file"},
        {"{\"version\":1,\"alerts\":[" ENTRY("a:1", "warn", "2027-01-15T08:00:00Z") "]}",
         "\"severity\""},
        {"{\"version\":1,\"alerts\":[" ENTRY("a:1", "page", "yesterday") "]}", "\"starts_at\""},
        {"{\"version\":1,\"alerts\":[" ENTRY("a:1", "page", "1969-12-31T23:59:59Z") "]}",
         "\"starts_at\""},
        {"{\"version\":1,\"alerts\":[" ENTRY("", "page", "2027-01-15T08:00:00Z") "]}",
         "alert 0: \"endpoint\""},
        {"{\"version\":1,\"alerts\":[" ENTRY("a:1", "page", "2027-01-15T08:00:00Z") "," ENTRY(
             "a:1", "critical", "2027-01-15T08:00:00Z") "]}",
         "two alerts"},
        {"{\"version\":1,\"alerts\":[{\"endpoint\":\"a\",\"extra\":1}]}", "unknown key"},
        {"{\"version\":1,\"alerts\":[{\"endpoint\":\"a\",\"code\":\"Leaf!\",\"subject\":\"\","
         "\"severity\":\"page\",\"summary\":\"\",\"starts_at\":\"2027-01-15T08:00:00Z\"}]}",
         "\"code\""},
        {"{\"version\":1,\"version\":1,\"alerts\":[]}", "not JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(parse(bad[i].text, err, sizeof(err)), WEFT_EINVAL, "%s", bad[i].text);
        cr_assert(strstr(err, bad[i].why) != NULL, "%s: %s", bad[i].text, err);
    }
}

Test(alert, state_parser_limits)
{
    size_t cap = (SCAN_ALERT_MAX_STATE + 2) * 200;
    char *text = malloc(cap);
    size_t len = (size_t)snprintf(text, cap, "{\"version\":1,\"alerts\":[");
    for (int i = 0; i <= SCAN_ALERT_MAX_STATE; i++) {
        len += (size_t)snprintf(text + len, cap - len,
                                "%s{\"endpoint\":\"e%d:1\",\"code\":\"x\",\"subject\":\"\","
                                "\"severity\":\"page\",\"summary\":\"\",\"starts_at\":"
                                "\"2027-01-15T08:00:00Z\"}",
                                i > 0 ? "," : "", i);
    }
    snprintf(text + len, cap - len, "]}");
    char err[256];
    cr_assert_eq(parse(text, err, sizeof(err)), WEFT_ELIMIT);
    cr_assert(strstr(err, "4097 alerts") != NULL, "%s", err);
    /* one fewer is fine */
    char *last = strrchr(text, '{');
    strcpy(last - 1, "]}");
    cr_assert_eq(parse(text, err, sizeof(err)), WEFT_OK, "%s", err);
    free(text);
    uint8_t big[16] = "{}";
    struct scan_alert_state s;
    cr_assert_eq(scan_alert_state_parse(&s, big, SCAN_ALERT_MAX_STATE_BYTES + 1, err, sizeof(err)),
                 WEFT_ELIMIT);
    scan_alert_state_cleanup(&s);
}

Test(alert, state_round_trips)
{
    struct scan_alert_entry e[2] = {0};
    snprintf(e[0].endpoint, sizeof(e[0].endpoint), "a:1");
    snprintf(e[0].code, sizeof(e[0].code), "expired");
    snprintf(e[0].subject, sizeof(e[0].subject), "CN=\"q\" \\ \n");
    snprintf(e[0].summary, sizeof(e[0].summary), "gone");
    e[0].severity = SCAN_SEV_CRITICAL;
    e[0].starts_at = T0;
    e[1] = e[0];
    snprintf(e[1].endpoint, sizeof(e[1].endpoint), "b:1");
    e[1].severity = SCAN_SEV_PAGE;
    struct scan_alert_state in = {.entries = e, .num = 2}, out;
    char *text;
    size_t len;
    scan_alert_state_to_json(&text, &len, &in);
    char err[256];
    cr_assert_eq(scan_alert_state_parse(&out, (uint8_t *)text, len, err, sizeof(err)), WEFT_OK,
                 "%s: %s", err, text);
    cr_assert_eq(out.num, 2);
    cr_assert_eq(memcmp(out.entries, e, sizeof(e)), 0, "%s", text);
    scan_alert_state_cleanup(&out);
    free(text);
}

/* --- --alert-exec ----------------------------------------------------------------------------- */

Test(alert, exec_gets_the_json_on_stdin_and_no_shell_sees_peer_strings)
{
    char err[1024], cmd[1024], out[300], pwned[300];
    snprintf(out, sizeof(out), "%s/out.json", dir);
    snprintf(pwned, sizeof(pwned), "%s/pwned", dir);
    snprintf(cmd, sizeof(cmd), "cat > '%s'", out);
    opts.url = NULL;
    opts.exec = cmd;
    char subject[256];
    snprintf(subject, sizeof(subject), "CN=$(touch %.60s)`touch %.60s`'; touch %.60s #", pwned,
             pwned, pwned);
    add(0, SCAN_SEV_CRITICAL, "expired", subject, "expired");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_OK, "%s", err);
    char *got = read_all(out);
    cr_assert_not_null(got);
    json_t *b = json_loads(got, 0, NULL);
    cr_assert_not_null(b, "%s", got);
    cr_assert_str_eq(field(json_object_get(json_array_get(b, 0), "labels"), "subject"), subject);
    cr_assert_eq(access(pwned, F_OK), -1);
    json_decref(b);
    free(got);
    cr_assert_eq(num_reqs(), 0);
}

Test(alert, exec_failure_is_an_error_and_keeps_the_state)
{
    char err[1024];
    opts.url = NULL;
    opts.exec = "cat >/dev/null; exit 3";
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_EIO);
    cr_assert(strstr(err, "alert command `cat >/dev/null; exit 3` exited with status 3") != NULL,
              "%s", err);
    cr_assert_eq(access(state, F_OK), -1);
}

static char proc_state(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' ? rp[2] : '?';
}

Test(alert, exec_timeout_kills_the_process_group)
{
    char err[1024], cmd[1024], pidfile[300];
    snprintf(pidfile, sizeof(pidfile), "%s/pid", dir);
    /* a child of the shell that would outlive it, unless the whole group is killed */
    snprintf(cmd, sizeof(cmd), "sleep 30 & echo $! > '%s'; wait", pidfile);
    opts.url = NULL;
    opts.exec = cmd;
    opts.timeout_ms = 300;
    add(0, SCAN_SEV_PAGE, "leaf-expiring", "", "x");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_EIO);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    cr_assert_lt(took, 3.0);
    cr_assert(strstr(err, "did not finish within 300 ms") != NULL, "%s", err);
    char *p = read_all(pidfile);
    cr_assert_not_null(p);
    pid_t sleeper = (pid_t)atoi(p);
    free(p);
    cr_assert_gt(sleeper, 1);
    char st = 'R';
    for (int i = 0; i < 200 && (st = proc_state(sleeper)) != 0 && st != 'Z'; i++) {
        usleep(10 * 1000);
    }
    if (st != 0 && st != 'Z') {
        kill(sleeper, SIGKILL);
    }
    cr_assert(st == 0 || st == 'Z', "the shell's child %d survived (state %c)", (int)sleeper, st);
    cr_assert_eq(access(state, F_OK), -1);
}

Test(alert, state_keeps_at_most_max_alerts_and_says_so)
{
    char err[1024];
    size_t n = SCAN_ALERT_MAX_STATE + 1;
    struct scan_finding *many = calloc(n, sizeof(*many));
    for (size_t i = 0; i < n; i++) {
        many[i].severity = SCAN_SEV_PAGE;
        snprintf(many[i].endpoint, sizeof(many[i].endpoint), "api:8443");
        snprintf(many[i].code, sizeof(many[i].code), "weak-key");
        snprintf(many[i].subject, sizeof(many[i].subject), "CN=%05zu", i);
    }
    findings[0] = many, num_findings[0] = n;
    opts.url = NULL;
    opts.exec = "cat >/dev/null";
    cr_assert_eq(send_at(T0, err, sizeof(err)), WEFT_ELIMIT);
    cr_assert(strstr(err, "4097 alerts fire") != NULL && strstr(err, state) != NULL, "%s", err);
    char *s = read_all(state);
    struct scan_alert_state st;
    cr_assert_eq(scan_alert_state_parse(&st, (uint8_t *)s, strlen(s), err, sizeof(err)), WEFT_OK,
                 "%s", err);
    cr_assert_eq(st.num, SCAN_ALERT_MAX_STATE);
    cr_assert_str_eq(st.entries[SCAN_ALERT_MAX_STATE - 1].subject, "CN=04095");
    scan_alert_state_cleanup(&st);
    free(s);
    free(many);
}
