#include "scan/alert.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/timefmt.h"
#include "lib/httpclient/httpclient.h"
#include "scan/outtext.h"

#define STATE_VERSION 1
/* RFC 3339 years 1970..9999 in UTC: what weft_time_format_rfc3339 writes back as it read. */
#define STATE_MAX_TIME INT64_C(253402300799)

static int cmp_key(const void *a, const void *b);
static int cmp_key_sev(const void *a, const void *b);
static int cmp_str(const void *a, const void *b);
static int get_str(char *out, size_t cap, json_t *obj, const char *key, bool allow_empty,
                   size_t idx, char *err, size_t err_len);
static int parse_entry(struct scan_alert_entry *e, json_t *obj, size_t idx, char *err,
                       size_t err_len);
static int load_state(struct scan_alert_state *out, const char *path, char *err, size_t err_len);
static void alertname(char *out, size_t cap, const char *code);
static json_t *alert_json(const struct scan_alert_opts *o, const struct scan_alert_entry *e,
                          int64_t ends_at);
static int post(const struct scan_alert_opts *o, const char *body, size_t len, char *err,
                size_t err_len);
static int64_t mono_ms(void);
static int run_exec(const struct scan_alert_opts *o, const char *body, size_t len, char *err,
                    size_t err_len);

/* cmp_key orders alerts by their key: endpoint, code, subject. */
static int cmp_key(const void *a, const void *b)
{
    const struct scan_alert_entry *x = a, *y = b;
    int c = strcmp(x->endpoint, y->endpoint);
    if (c == 0) {
        c = strcmp(x->code, y->code);
    }
    return c != 0 ? c : strcmp(x->subject, y->subject);
}

/* cmp_key_sev: by key, then the highest severity first, then by message, so that the alert a
 * pass keeps for a key does not depend on the order of its findings. */
static int cmp_key_sev(const void *a, const void *b)
{
    const struct scan_alert_entry *x = a, *y = b;
    int c = cmp_key(a, b);
    if (c == 0) {
        c = (int)y->severity - (int)x->severity;
    }
    return c != 0 ? c : strcmp(x->summary, y->summary);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* --- the state file ------------------------------------------------------------------------- */

static int get_str(char *out, size_t cap, json_t *obj, const char *key, bool allow_empty,
                   size_t idx, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        (!allow_empty && json_string_length(v) == 0)) {
        snprintf(err, err_len, "alert %zu: \"%s\" must be a %sstring of at most %zu bytes", idx,
                 key, allow_empty ? "" : "non-empty ", cap - 1);
        return WEFT_EINVAL;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return WEFT_OK;
}

static int parse_entry(struct scan_alert_entry *e, json_t *obj, size_t idx, char *err,
                       size_t err_len)
{
    static const char *const keys[] = {"endpoint", "code",    "subject",
                                       "severity", "summary", "starts_at"};
    if (!json_is_object(obj)) {
        snprintf(err, err_len, "alert %zu is not an object", idx);
        return WEFT_EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t k = 0;
        while (k < nitems(keys) && strcmp(key, keys[k]) != 0) {
            k++;
        }
        if (k == nitems(keys)) {
            char clean[64];
            scan_text_printable(clean, sizeof(clean), key);
            snprintf(err, err_len, "alert %zu: unknown key \"%s\"", idx, clean);
            return WEFT_EINVAL;
        }
    }
    char sev[16], starts[64];
    TRY(get_str(e->endpoint, sizeof(e->endpoint), obj, "endpoint", false, idx, err, err_len));
    TRY(get_str(e->code, sizeof(e->code), obj, "code", false, idx, err, err_len));
    TRY(get_str(e->subject, sizeof(e->subject), obj, "subject", true, idx, err, err_len));
    TRY(get_str(sev, sizeof(sev), obj, "severity", false, idx, err, err_len));
    TRY(get_str(e->summary, sizeof(e->summary), obj, "summary", true, idx, err, err_len));
    TRY(get_str(starts, sizeof(starts), obj, "starts_at", false, idx, err, err_len));
    /* codes go into alertnames: the characters scan/evaluate uses, and nothing else */
    for (const char *c = e->code; *c != '\0'; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
            snprintf(err, err_len, "alert %zu: \"code\" may hold only a-z, 0-9 and '-'", idx);
            return WEFT_EINVAL;
        }
    }
    if (strcmp(sev, "page") == 0) {
        e->severity = SCAN_SEV_PAGE;
    } else if (strcmp(sev, "critical") == 0) {
        e->severity = SCAN_SEV_CRITICAL;
    } else {
        snprintf(err, err_len, "alert %zu: \"severity\" must be \"page\" or \"critical\"", idx);
        return WEFT_EINVAL;
    }
    if (weft_time_parse_rfc3339(&e->starts_at, starts) != WEFT_OK || e->starts_at < 0 ||
        e->starts_at > STATE_MAX_TIME) {
        snprintf(err, err_len,
                 "alert %zu: \"starts_at\" must be an RFC 3339 time from 1970 to 9999", idx);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

int scan_alert_state_parse(struct scan_alert_state *out, const uint8_t *data, size_t len, char *err,
                           size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (len > SCAN_ALERT_MAX_STATE_BYTES) {
        snprintf(err, err_len, "%zu bytes, more than the %d allowed", len,
                 SCAN_ALERT_MAX_STATE_BYTES);
        return WEFT_ELIMIT;
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        char text[sizeof(je.text)];
        scan_text_printable(text, sizeof(text), je.text);
        snprintf(err, err_len, "not JSON: %s (line %d, column %d)", text, je.line, je.column);
        return WEFT_EINVAL;
    }
    int rc = WEFT_EINVAL;
    json_t *alerts = json_object_get(root, "alerts");
    json_t *version = json_object_get(root, "version");
    if (!json_is_object(root) || json_object_size(root) != 2 || !json_is_array(alerts) ||
        !json_is_integer(version)) {
        snprintf(err, err_len, "not a state file: want {\"version\":%d,\"alerts\":[...]}",
                 STATE_VERSION);
        goto out;
    }
    if (json_integer_value(version) != STATE_VERSION) {
        snprintf(err, err_len, "version %lld, this weftctl reads version %d",
                 (long long)json_integer_value(version), STATE_VERSION);
        goto out;
    }
    size_t n = json_array_size(alerts);
    if (n > SCAN_ALERT_MAX_STATE) {
        snprintf(err, err_len, "%zu alerts, more than the %d allowed", n, SCAN_ALERT_MAX_STATE);
        rc = WEFT_ELIMIT;
        goto out;
    }
    out->entries = weft_xcalloc(n > 0 ? n : 1, sizeof(*out->entries));
    for (size_t i = 0; i < n; i++) {
        if (parse_entry(&out->entries[i], json_array_get(alerts, i), i, err, err_len) != WEFT_OK) {
            goto out;
        }
        out->num++;
    }
    /* sorted by key: scan_alert_send looks alerts up by it */
    qsort(out->entries, out->num, sizeof(*out->entries), cmp_key);
    for (size_t i = 1; i < out->num; i++) {
        if (cmp_key(&out->entries[i - 1], &out->entries[i]) == 0) {
            char ep[SCAN_NAME_MAX + 1];
            scan_text_printable(ep, sizeof(ep), out->entries[i].endpoint);
            snprintf(err, err_len, "two alerts for endpoint %s, code %s and one subject", ep,
                     out->entries[i].code);
            goto out;
        }
    }
    rc = WEFT_OK;
out:
    json_decref(root);
    return rc;
}

void scan_alert_state_to_json(char **out, size_t *out_len, const struct scan_alert_state *s)
{
    json_t *root = json_object();
    json_t *alerts = json_array();
    json_object_set_new(root, "version", json_integer(STATE_VERSION));
    for (size_t i = 0; i < s->num; i++) {
        const struct scan_alert_entry *e = &s->entries[i];
        char starts[WEFT_RFC3339_LEN];
        weft_time_format_rfc3339(starts, e->starts_at);
        json_t *a = json_object();
        json_object_set_new(a, "endpoint", scan_text_json(e->endpoint));
        json_object_set_new(a, "code", scan_text_json(e->code));
        json_object_set_new(a, "subject", scan_text_json(e->subject));
        json_object_set_new(a, "severity", json_string(scan_severity_name(e->severity)));
        json_object_set_new(a, "summary", scan_text_json(e->summary));
        json_object_set_new(a, "starts_at", json_string(starts));
        json_array_append_new(alerts, a);
    }
    json_object_set_new(root, "alerts", alerts);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL) {
        abort(); /* only out of memory (STYLE.md decision 1) */
    }
    *out = text;
    *out_len = strlen(text);
}

void scan_alert_state_cleanup(struct scan_alert_state *s)
{
    free(s->entries);
    s->entries = NULL;
    s->num = 0;
}

/* load_state reads |path|; a file that is not there is an empty state. */
static int load_state(struct scan_alert_state *out, const char *path, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = weft_file_read(&data, &len, path, SCAN_ALERT_MAX_STATE_BYTES);
    if (rc == WEFT_EIO && errno == ENOENT) {
        return WEFT_OK;
    }
    if (rc == WEFT_ELIMIT) {
        snprintf(err, err_len,
                 "alert state file %s is larger than %d bytes; refusing it (left as it is, "
                 "nothing resolved)",
                 path, SCAN_ALERT_MAX_STATE_BYTES);
        return rc;
    }
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "cannot read the alert state file %s: %s", path, strerror(errno));
        return rc;
    }
    char why[256];
    rc = scan_alert_state_parse(out, data, len, why, sizeof(why));
    free(data);
    if (rc != WEFT_OK) {
        scan_alert_state_cleanup(out);
        snprintf(err, err_len,
                 "alert state file %s is corrupt: %s; refusing it (left as it is, nothing "
                 "resolved; move it away to start afresh)",
                 path, why);
    }
    return rc;
}

/* --- the alerts ----------------------------------------------------------------------------- */

/* alertname: "WeftScan" and the code in CamelCase ("leaf-expiring": WeftScanLeafExpiring);
 * anything but letters and digits is left out (Prometheus label names allow no more). */
static void alertname(char *out, size_t cap, const char *code)
{
    size_t o = (size_t)snprintf(out, cap, "WeftScan");
    bool upper = true;
    for (const char *c = code; *c != '\0' && o + 1 < cap; c++) {
        bool lower = *c >= 'a' && *c <= 'z';
        if (lower || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')) {
            out[o++] = upper && lower ? (char)(*c - 'a' + 'A') : *c;
            upper = false;
        } else {
            upper = true;
        }
    }
    out[o] = '\0';
}

/* alert_json: one postableAlert of Alertmanager's v2 API (api/v2/openapi.yaml). */
static json_t *alert_json(const struct scan_alert_opts *o, const struct scan_alert_entry *e,
                          int64_t ends_at)
{
    char name[96], t[WEFT_RFC3339_LEN];
    alertname(name, sizeof(name), e->code);
    json_t *labels = json_object();
    json_object_set_new(labels, "alertname", json_string(name));
    json_object_set_new(labels, "endpoint", scan_text_json(e->endpoint));
    json_object_set_new(labels, "code", scan_text_json(e->code));
    json_object_set_new(labels, "severity", json_string(scan_severity_name(e->severity)));
    /* an empty label is no label (Prometheus' data model): left out */
    if (e->subject[0] != '\0') {
        json_object_set_new(labels, "subject", scan_text_json(e->subject));
    }
    json_t *ann = json_object();
    json_object_set_new(ann, "summary", scan_text_json(e->summary));
    json_t *a = json_object();
    json_object_set_new(a, "labels", labels);
    json_object_set_new(a, "annotations", ann);
    weft_time_format_rfc3339(t, e->starts_at);
    json_object_set_new(a, "startsAt", json_string(t));
    if (ends_at != 0) {
        weft_time_format_rfc3339(t, ends_at);
        json_object_set_new(a, "endsAt", json_string(t));
    }
    if (o->generator_url != NULL) {
        json_object_set_new(a, "generatorURL", scan_text_json(o->generator_url));
    }
    return a;
}

static int post(const struct scan_alert_opts *o, const char *body, size_t len, char *err,
                size_t err_len)
{
    char url[HTTPCLIENT_MAX_URL + 1];
    size_t base = strlen(o->url);
    while (base > 0 && o->url[base - 1] == '/') {
        base--;
    }
    int n = snprintf(url, sizeof(url), "%.*s/api/v2/alerts", (int)base, o->url);
    if (n < 0 || (size_t)n > HTTPCLIENT_MAX_URL) {
        snprintf(err, err_len, "--alert-url is longer than %d bytes", HTTPCLIENT_MAX_URL - 15);
        return WEFT_EINVAL;
    }
    const char *headers[] = {"Content-Type: application/json"};
    struct httpclient_request req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .num_headers = nitems(headers),
        .body = body,
        .body_len = len,
        .timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : SCAN_ALERT_TIMEOUT_MS,
        .max_body = SCAN_ALERT_MAX_RESPONSE,
        .ca_file = o->ca_file,
    };
    struct httpclient_response resp = {0};
    char why[256];
    int rc = httpclient_do(&req, &resp, why, sizeof(why));
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "alert POST to %s failed: %s", url, why);
        return rc;
    }
    if (resp.status < 200 || resp.status > 299) {
        char start[128];
        scan_text_printable(start, sizeof(start), (const char *)resp.body);
        snprintf(err, err_len, "alert POST to %s: the server answered %d: %s", url, resp.status,
                 start[0] != '\0' ? start : "(empty body)");
        rc = WEFT_EPROTO;
    }
    httpclient_response_free(&resp);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* run_exec runs `sh -c CMD` in a process group of its own, with |body| on its standard input
 * (a socket: a command that stops reading cannot raise SIGPIPE here) and its standard output
 * sent to our standard error, so it cannot mix into a JSON report. The peer's strings are only
 * in |body|, never on the command line. On timeout the whole group is killed. */
static int run_exec(const struct scan_alert_opts *o, const char *body, size_t len, char *err,
                    size_t err_len)
{
    int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : SCAN_ALERT_TIMEOUT_MS;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, err_len, "alert command `%.100s`: socketpair: %s", o->exec, strerror(errno));
        return WEFT_EIO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, err_len, "alert command `%.100s`: fork: %s", o->exec, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return WEFT_EIO;
    }
    if (pid == 0) {
        /* the child: only async-signal-safe calls until exec */
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(sv[1], STDIN_FILENO) < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
            _exit(127);
        }
        execl("/bin/sh", "sh", "-c", o->exec, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no race with a kill before the child ran */
    close(sv[1]);
    int64_t deadline = mono_ms() + timeout_ms;
    bool timed_out = false;
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    while (off < len) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = sv[0], .events = POLLOUT};
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
            break;
        }
        ssize_t w = send(sv[0], body + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (w <= 0) {
            break; /* the command closed its input: what it does next decides */
        }
        off += (size_t)w;
    }
    shutdown(sv[0], SHUT_WR);
    close(sv[0]);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            snprintf(err, err_len, "alert command `%.100s`: waitpid: %s", o->exec, strerror(errno));
            kill(-pid, SIGKILL);
            return WEFT_EIO;
        }
        if (timed_out || mono_ms() >= deadline) {
            timed_out = true;
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (timed_out) {
        snprintf(err, err_len,
                 "alert command `%.100s` did not finish within %d ms; its process group was "
                 "killed",
                 o->exec, timeout_ms);
        return WEFT_EIO;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return WEFT_OK;
    }
    if (WIFEXITED(status)) {
        snprintf(err, err_len, "alert command `%.100s` exited with status %d", o->exec,
                 WEXITSTATUS(status));
    } else {
        snprintf(err, err_len, "alert command `%.100s` was killed by signal %d", o->exec,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    return WEFT_EIO;
}

int scan_alert_send(const struct scan_alert_opts *o, const struct scan_pass *p, int64_t now,
                    char *err, size_t err_len)
{
    static bool warned_no_state;
    if (o->url == NULL && o->exec == NULL) {
        return WEFT_OK;
    }
    struct scan_alert_state old = {0};
    char state_err[1024] = "";
    int state_rc = WEFT_OK;
    if (o->state_path != NULL) {
        state_rc = load_state(&old, o->state_path, state_err, sizeof(state_err));
    } else if (!warned_no_state) {
        warned_no_state = true;
        weft_log(WEFT_LOG_WARN,
                 "alerts are sent while they fire but never resolved: no --state file", 0);
    }

    /* this pass's page and critical findings, one per key */
    size_t ncur = 0;
    for (size_t i = 0; i < p->num; i++) {
        for (size_t k = 0; k < p->num_findings[i]; k++) {
            ncur += p->findings[i][k].severity >= SCAN_SEV_PAGE;
        }
    }
    struct scan_alert_entry *cur = weft_xcalloc(ncur + old.num + 1, sizeof(*cur));
    ncur = 0;
    for (size_t i = 0; i < p->num; i++) {
        for (size_t k = 0; k < p->num_findings[i]; k++) {
            const struct scan_finding *f = &p->findings[i][k];
            if (f->severity < SCAN_SEV_PAGE) {
                continue;
            }
            struct scan_alert_entry *e = &cur[ncur++];
            snprintf(e->endpoint, sizeof(e->endpoint), "%s", f->endpoint);
            snprintf(e->code, sizeof(e->code), "%s", f->code);
            snprintf(e->subject, sizeof(e->subject), "%s", f->subject);
            snprintf(e->summary, sizeof(e->summary), "%s", f->message);
            e->severity = f->severity > SCAN_SEV_CRITICAL ? SCAN_SEV_CRITICAL : f->severity;
        }
    }
    qsort(cur, ncur, sizeof(*cur), cmp_key_sev);
    size_t nuniq = 0;
    for (size_t i = 0; i < ncur; i++) {
        if (nuniq == 0 || cmp_key(&cur[nuniq - 1], &cur[i]) != 0) {
            cur[nuniq++] = cur[i];
        }
    }
    ncur = nuniq;

    /* endpoints not reached in this pass: their remembered alerts are neither resolved nor
     * forgotten */
    const char **unreached = weft_xcalloc(p->num + 1, sizeof(*unreached));
    size_t nunreached = 0;
    for (size_t i = 0; i < p->num; i++) {
        if (!p->results[i].reached) {
            unreached[nunreached++] = p->results[i].endpoint;
        }
    }
    qsort(unreached, nunreached, sizeof(*unreached), cmp_str);

    int64_t firing_end = o->firing_for_s > 0 ? now + o->firing_for_s : 0;
    json_t *alerts = json_array();
    bool *matched = weft_xcalloc(old.num + 1, sizeof(*matched));
    for (size_t i = 0; i < ncur; i++) {
        struct scan_alert_entry *c = &cur[i];
        struct scan_alert_entry *s =
            old.num > 0 ? bsearch(c, old.entries, old.num, sizeof(*c), cmp_key) : NULL;
        c->starts_at = now;
        if (s != NULL) {
            matched[s - old.entries] = true;
            c->starts_at = s->starts_at;
            if (s->severity != c->severity) {
                json_array_append_new(alerts, alert_json(o, s, now)); /* old labels: resolved */
            }
        }
        json_array_append_new(alerts, alert_json(o, c, firing_end));
    }
    size_t nstate = ncur;
    for (size_t i = 0; i < old.num; i++) {
        const struct scan_alert_entry *s = &old.entries[i];
        if (matched[i]) {
            continue;
        }
        const char *ep = s->endpoint;
        if (bsearch(&ep, unreached, nunreached, sizeof(*unreached), cmp_str) != NULL) {
            json_array_append_new(alerts, alert_json(o, s, firing_end));
            cur[nstate++] = *s;
        } else {
            json_array_append_new(alerts, alert_json(o, s, now)); /* resolved, then forgotten */
        }
    }

    int rc = WEFT_OK;
    if (json_array_size(alerts) > 0) {
        char *body = json_dumps(alerts, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (body == NULL) {
            abort(); /* only out of memory */
        }
        size_t len = strlen(body);
        char one[1024];
        if (o->url != NULL) {
            rc = post(o, body, len, err, err_len);
        }
        if (o->exec != NULL) {
            int rc2 = run_exec(o, body, len, rc == WEFT_OK ? err : one,
                               rc == WEFT_OK ? err_len : sizeof(one));
            rc = rc == WEFT_OK ? rc2 : rc;
        }
        free(body);
    }

    if (rc == WEFT_OK && o->state_path != NULL && state_rc == WEFT_OK) {
        qsort(cur, nstate, sizeof(*cur), cmp_key);
        struct scan_alert_state next = {
            .entries = cur, .num = nstate > SCAN_ALERT_MAX_STATE ? SCAN_ALERT_MAX_STATE : nstate};
        char *text;
        size_t len;
        scan_alert_state_to_json(&text, &len, &next);
        if (weft_file_write_atomic(o->state_path, text, len, 0600) != WEFT_OK) {
            snprintf(err, err_len, "cannot write the alert state file %s: %s", o->state_path,
                     strerror(errno));
            rc = WEFT_EIO;
        } else if (nstate > SCAN_ALERT_MAX_STATE) {
            snprintf(err, err_len,
                     "%zu alerts fire, the state file %s remembers the first %d: the others "
                     "will not be resolved",
                     nstate, o->state_path, SCAN_ALERT_MAX_STATE);
            rc = WEFT_ELIMIT;
        }
        free(text);
    }
    if (rc == WEFT_OK && state_rc != WEFT_OK) {
        snprintf(err, err_len, "%s", state_err);
        rc = state_rc;
    }
    json_decref(alerts);
    free(matched);
    free(unreached);
    free(cur);
    scan_alert_state_cleanup(&old);
    return rc;
}
