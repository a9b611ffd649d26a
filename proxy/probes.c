/* proxy/probes.c: WEFT_APP_PROBES and the probe server (see probes.h).
 *
 * The server is a fixed pool of threads that each accept and serve one connection at a time:
 * an app probe blocks for up to its timeoutSeconds (lib/httpclient is blocking), so it runs on a
 * thread of the pool, never on the proxy's event loops nor on the admin server's one thread,
 * and the pool's size bounds how many run at once. */
#include "proxy/probes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/netaddr.h"
#include "lib/httpclient/httpclient.h"

#define PREFIX "/app-health/"
#define MAX_LABEL 63              /* DNS-1123 label: a container's name */
#define MAX_DRAIN (64 * 1024)     /* bytes read and dropped after a response */
#define DRAIN_MS 1000             /* how long the client may take to close after it */
#define ACCEPT_PAUSE_MS 100       /* after EMFILE and the like */
#define APP_MAX_BODY (256 * 1024) /* bytes of the app's body read (a longer one: error) */
#define TIMEOUT_MARGIN_MS 100     /* answer the kubelet before its own timeout fires */
#define TEXT_TYPE "text/plain; charset=utf-8"
#define THREAD_NAME "weft-probes"

static const char *const results[PROXY_PROBE_NUM_RESULTS] = {
    [PROXY_PROBE_SUCCESS] = "success",
    [PROXY_PROBE_FAILURE] = "failure",
    [PROXY_PROBE_TIMEOUT] = "timeout",
    [PROXY_PROBE_ERROR] = "error",
};

const char *proxy_probe_result_name(enum proxy_probe_result r)
{
    return r < PROXY_PROBE_NUM_RESULTS ? results[r] : "unknown";
}

/* ---- WEFT_APP_PROBES ---- */

void proxy_probes_init(struct proxy_probes *p) { memset(p, 0, sizeof(*p)); }

static void probe_cleanup(struct proxy_probe *p)
{
    free(p->key);
    free(p->path);
    for (size_t i = 0; i < p->num_headers; i++) {
        free(p->headers[i]);
    }
    memset(p, 0, sizeof(*p));
}

void proxy_probes_cleanup(struct proxy_probes *p)
{
    for (size_t i = 0; i < p->num_probes; i++) {
        probe_cleanup(&p->probes[i]);
    }
    free(p->probes);
    memset(p, 0, sizeof(*p));
}

/* key_ok says whether |key| is /app-health/<DNS-1123 label>/<livez|readyz|startupz>. */
static bool key_ok(const char *key)
{
    if (strncmp(key, PREFIX, strlen(PREFIX)) != 0) {
        return false;
    }
    const char *name = key + strlen(PREFIX), *slash = strchr(name, '/');
    if (slash == NULL) {
        return false;
    }
    size_t len = (size_t)(slash - name);
    if (len == 0 || len > MAX_LABEL || name[0] == '-' || name[len - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    const char *kind = slash + 1;
    return strcmp(kind, "livez") == 0 || strcmp(kind, "readyz") == 0 ||
           strcmp(kind, "startupz") == 0;
}

/* RFC 9110 §5.6.2: token = 1*tchar */
static bool is_token(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c) != NULL)) {
            return false;
        }
    }
    return true;
}

/* RFC 9110 §5.5: field-value is visible characters, spaces and tabs (and obs-text) */
static bool is_field_value(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* a request target's path: visible ASCII, no spaces (RFC 9112 §3.2) */
static bool is_path(const char *s)
{
    if (s[0] != '/') {
        return false;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* only_keys says whether |obj| has no member other than |allowed| (NULL-terminated); if it
 * has, |*out_bad| is the first such key. */
static bool only_keys(json_t *obj, const char *const *allowed, const char **out_bad)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++) {
            known = strcmp(k, allowed[i]) == 0;
        }
        if (!known) {
            *out_bad = k;
            return false;
        }
    }
    return true;
}

static int parse_headers(struct proxy_probe *p, json_t *arr, char *err, size_t err_len)
{
    static const char *const header_keys[] = {"name", "value", NULL};
    if (!json_is_array(arr)) {
        snprintf(err, err_len, "%s: %s: httpGet.httpHeaders is not an array", PROXY_PROBES_ENV,
                 p->key);
        return WEFT_EINVAL;
    }
    if (json_array_size(arr) > PROXY_PROBES_MAX_HEADERS) {
        snprintf(err, err_len, "%s: %s: %zu httpGet.httpHeaders; at most %d", PROXY_PROBES_ENV,
                 p->key, json_array_size(arr), PROXY_PROBES_MAX_HEADERS);
        return WEFT_ELIMIT;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *h = json_array_get(arr, i);
        const char *bad = NULL;
        if (!json_is_object(h) || !only_keys(h, header_keys, &bad)) {
            snprintf(err, err_len,
                     "%s: %s: httpGet.httpHeaders[%zu] is not an object of name and value%s%.64s",
                     PROXY_PROBES_ENV, p->key, i, bad != NULL ? "; unknown field " : "",
                     bad != NULL ? bad : "");
            return WEFT_EINVAL;
        }
        json_t *name = json_object_get(h, "name"), *value = json_object_get(h, "value");
        if (!json_is_string(name) || !json_is_string(value)) {
            snprintf(err, err_len,
                     "%s: %s: httpGet.httpHeaders[%zu]: name and value must be strings",
                     PROXY_PROBES_ENV, p->key, i);
            return WEFT_EINVAL;
        }
        size_t name_len = json_string_length(name), value_len = json_string_length(value);
        if (name_len > PROXY_PROBES_MAX_HEADER_NAME || value_len > PROXY_PROBES_MAX_HEADER_VALUE) {
            snprintf(err, err_len,
                     "%s: %s: httpGet.httpHeaders[%zu]: a name over %d or a value over %d bytes",
                     PROXY_PROBES_ENV, p->key, i, PROXY_PROBES_MAX_HEADER_NAME,
                     PROXY_PROBES_MAX_HEADER_VALUE);
            return WEFT_ELIMIT;
        }
        /* jansson strings may hold NULs: the lengths must match what C sees */
        const char *n = json_string_value(name), *v = json_string_value(value);
        if (strlen(n) != name_len || !is_token(n)) {
            snprintf(err, err_len, "%s: %s: httpGet.httpHeaders[%zu]: name is not an HTTP token",
                     PROXY_PROBES_ENV, p->key, i);
            return WEFT_EINVAL;
        }
        if (strlen(v) != value_len || !is_field_value(v)) {
            snprintf(err, err_len,
                     "%s: %s: httpGet.httpHeaders[%zu] (%s): value holds a control character",
                     PROXY_PROBES_ENV, p->key, i, n);
            return WEFT_EINVAL;
        }
        if (strcasecmp(n, "Host") == 0) {
            /* lib/httpclient writes Host itself, from the URL (127.0.0.1:PORT); a second one
             * would make most servers answer 400 */
            weft_log(WEFT_LOG_WARN, "app probe Host header not sent", 2, "path", p->key, "host", v);
            continue;
        }
        size_t line_len = name_len + 2 + value_len;
        char *line = weft_xmalloc(line_len + 1);
        snprintf(line, line_len + 1, "%s: %s", n, v);
        p->headers[p->num_headers++] = line;
    }
    return WEFT_OK;
}

static int parse_http_get(struct proxy_probe *p, json_t *hg, char *err, size_t err_len)
{
    static const char *const http_get_keys[] = {"path", "port", "scheme", "httpHeaders", NULL};
    const char *bad = NULL;
    if (!json_is_object(hg)) {
        snprintf(err, err_len, "%s: %s: httpGet is missing or not an object", PROXY_PROBES_ENV,
                 p->key);
        return WEFT_EINVAL;
    }
    if (!only_keys(hg, http_get_keys, &bad)) {
        snprintf(err, err_len,
                 "%s: %s: httpGet.%.64s is not supported (path, port, scheme, httpHeaders)",
                 PROXY_PROBES_ENV, p->key, bad);
        return WEFT_EINVAL;
    }
    json_t *port = json_object_get(hg, "port");
    if (!json_is_integer(port) || json_integer_value(port) < 1 ||
        json_integer_value(port) > 65535) {
        snprintf(err, err_len, "%s: %s: httpGet.port must be a number from 1 to 65535",
                 PROXY_PROBES_ENV, p->key);
        return WEFT_EINVAL;
    }
    p->port = (uint16_t)json_integer_value(port);
    json_t *path = json_object_get(hg, "path");
    if (path == NULL) {
        p->path = weft_xstrndup("/", 1);
    } else if (!json_is_string(path) || json_string_length(path) > PROXY_PROBES_MAX_PATH) {
        snprintf(err, err_len, "%s: %s: httpGet.path must be a string of at most %d bytes",
                 PROXY_PROBES_ENV, p->key, PROXY_PROBES_MAX_PATH);
        return json_is_string(path) ? WEFT_ELIMIT : WEFT_EINVAL;
    } else if (strlen(json_string_value(path)) != json_string_length(path) ||
               !is_path(json_string_value(path))) {
        snprintf(err, err_len,
                 "%s: %s: httpGet.path must start with '/' and hold only visible ASCII",
                 PROXY_PROBES_ENV, p->key);
        return WEFT_EINVAL;
    } else {
        p->path = weft_xstrndup(json_string_value(path), json_string_length(path));
    }
    json_t *scheme = json_object_get(hg, "scheme");
    if (scheme != NULL) {
        const char *s = json_is_string(scheme) ? json_string_value(scheme) : "";
        if (strcmp(s, "HTTP") != 0 && strcmp(s, "HTTPS") != 0) {
            snprintf(err, err_len, "%s: %s: httpGet.scheme must be \"HTTP\" or \"HTTPS\"",
                     PROXY_PROBES_ENV, p->key);
            return WEFT_EINVAL;
        }
        p->https = strcmp(s, "HTTPS") == 0;
    }
    json_t *headers = json_object_get(hg, "httpHeaders");
    if (headers != NULL) {
        TRY(parse_headers(p, headers, err, err_len));
    }
    return WEFT_OK;
}

static int parse_probe(struct proxy_probe *p, const char *key, json_t *v, char *err, size_t err_len)
{
    static const char *const probe_keys[] = {"httpGet", "timeoutSeconds", NULL};
    const char *bad = NULL;
    if (strlen(key) > PROXY_PROBES_MAX_PATH || !key_ok(key)) {
        snprintf(err, err_len,
                 "%s: key \"%.80s\" is not /app-health/<container>/<livez|readyz|startupz>",
                 PROXY_PROBES_ENV, key);
        return WEFT_EINVAL;
    }
    p->key = weft_xstrndup(key, strlen(key));
    if (!json_is_object(v)) {
        snprintf(err, err_len, "%s: %s: the value is not an object", PROXY_PROBES_ENV, key);
        return WEFT_EINVAL;
    }
    if (!only_keys(v, probe_keys, &bad)) {
        snprintf(err, err_len, "%s: %s: %.64s is not supported (httpGet, timeoutSeconds)",
                 PROXY_PROBES_ENV, key, bad);
        return WEFT_EINVAL;
    }
    p->timeout_s = 1; /* the kubelet's default */
    json_t *t = json_object_get(v, "timeoutSeconds");
    if (t != NULL) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 ||
            json_integer_value(t) > PROXY_PROBES_MAX_TIMEOUT_S) {
            snprintf(err, err_len, "%s: %s: timeoutSeconds must be a number from 1 to %d",
                     PROXY_PROBES_ENV, key, PROXY_PROBES_MAX_TIMEOUT_S);
            return WEFT_EINVAL;
        }
        p->timeout_s = (int)json_integer_value(t);
    }
    return parse_http_get(p, json_object_get(v, "httpGet"), err, err_len);
}

int proxy_probes_parse(struct proxy_probes *out, const char *json, size_t json_len, char *err,
                       size_t err_len)
{
    int rc = WEFT_EINVAL;
    json_t *root = NULL;
    if (err_len > 0) {
        err[0] = '\0';
    }
    if (json_len > PROXY_PROBES_MAX_JSON) {
        snprintf(err, err_len, "%s: %zu bytes; at most %d", PROXY_PROBES_ENV, json_len,
                 PROXY_PROBES_MAX_JSON);
        return WEFT_ELIMIT;
    }
    json_error_t jerr;
    root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, err_len, "%s: not JSON: %s at line %d column %d", PROXY_PROBES_ENV, jerr.text,
                 jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(err, err_len, "%s: not a JSON object", PROXY_PROBES_ENV);
        goto out;
    }
    if (json_object_size(root) > PROXY_PROBES_MAX) {
        snprintf(err, err_len, "%s: %zu probes; at most %d", PROXY_PROBES_ENV,
                 json_object_size(root), PROXY_PROBES_MAX);
        rc = WEFT_ELIMIT;
        goto out;
    }
    out->probes = weft_xcalloc(json_object_size(root) + 1, sizeof(*out->probes));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        struct proxy_probe *p = &out->probes[out->num_probes++];
        if ((rc = parse_probe(p, key, v, err, err_len)) != WEFT_OK) {
            goto out;
        }
    }
    rc = WEFT_OK;
out:
    if (rc != WEFT_OK) {
        proxy_probes_cleanup(out);
    }
    json_decref(root);
    return rc;
}

const struct proxy_probe *proxy_probes_find(const struct proxy_probes *p, const char *path,
                                            size_t path_len)
{
    for (size_t i = 0; p != NULL && i < p->num_probes; i++) {
        if (strlen(p->probes[i].key) == path_len && memcmp(p->probes[i].key, path, path_len) == 0) {
            return &p->probes[i];
        }
    }
    return NULL;
}

/* ---- request heads ---- */

struct req_parse {
    char url[PROXY_PROBES_MAX_PATH + 1];
    size_t url_len;
    bool url_too_long, done, has_body;
};

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct req_parse *r = hp->data;
    if (len > PROXY_PROBES_MAX_PATH - r->url_len) {
        r->url_too_long = true;
        return -1;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct req_parse *r = hp->data;
    r->done = true;
    /* RFC 9112 §6: a body is announced by a Transfer-Encoding or a non-zero Content-Length */
    r->has_body = (hp->flags & F_CHUNKED) != 0 || hp->uses_transfer_encoding ||
                  ((hp->flags & F_CONTENTLENGTH) != 0 && hp->content_length > 0);
    http_parser_pause(hp, 1); /* the answer depends on nothing after the head */
    return 0;
}

static const http_parser_settings req_settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
};

int proxy_probe_request_parse(struct proxy_probe_request *out, const char *buf, size_t len)
{
    memset(out, 0, sizeof(*out));
    struct req_parse r;
    memset(&r, 0, sizeof(r));
    http_parser hp;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &r;
    size_t feed = len < PROXY_PROBES_MAX_HEAD ? len : PROXY_PROBES_MAX_HEAD;
    http_parser_execute(&hp, &req_settings, buf, feed);
    if (r.url_too_long) {
        return WEFT_ELIMIT;
    }
    if (!r.done) {
        if (HTTP_PARSER_ERRNO(&hp) != HPE_OK) {
            return WEFT_EPROTO;
        }
        return feed >= PROXY_PROBES_MAX_HEAD ? WEFT_ELIMIT : WEFT_EAGAIN;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r.url, r.url_len, 0, &u) != 0 ||
        (u.field_set & (1 << UF_PATH)) == 0) {
        return WEFT_EPROTO;
    }
    out->get = hp.method == HTTP_GET;
    out->has_body = r.has_body;
    out->path_len = u.field_data[UF_PATH].len;
    memcpy(out->path, r.url + u.field_data[UF_PATH].off, out->path_len);
    out->path[out->path_len] = '\0';
    return WEFT_OK;
}

/* ---- the server ---- */

struct proxy_probe_server {
    int listen_fd;
    int wake_fd; /* eventfd: written once at stop and never read, so it stays readable */
    int port;
    const struct proxy_probes *probes;
    bool (*ready)(void *arg, char *why, size_t why_len);
    void *ready_arg;
    const char *app_host;
    struct weft_counter **counters; /* [probe * PROXY_PROBE_NUM_RESULTS + result], or NULL */
    pthread_t threads[PROXY_PROBES_MAX_CONCURRENT];
    size_t num_threads;
};

static void *worker(void *arg);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void destroy(struct proxy_probe_server *s)
{
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->wake_fd >= 0) {
        close(s->wake_fd);
    }
    free(s->counters);
    free(s);
}

static void wake(struct proxy_probe_server *s)
{
    uint64_t one = 1;
    /* fails only when the counter would overflow: awake already */
    while (write(s->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

static int open_listener(struct proxy_probe_server *s, const char *listen_addr, char *err,
                         size_t err_len)
{
    union weft_sockaddr a;
    socklen_t len;
    char why[128];
    if (weft_sockaddr_parse(listen_addr, false, &a, &len, why, sizeof(why)) != WEFT_OK) {
        snprintf(err, err_len, "probe server: bad listen address \"%s\": %s", listen_addr, why);
        return WEFT_EINVAL;
    }
    int one = 1;
    if ((s->listen_fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) <
            0 ||
        setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(s->listen_fd, &a.sa, len) != 0 || listen(s->listen_fd, 64) != 0) {
        snprintf(err, err_len, "probe server: cannot listen on %s: %s", listen_addr,
                 strerror(errno));
        return WEFT_EIO;
    }
    union weft_sockaddr bound;
    socklen_t bound_len = sizeof(bound);
    if (getsockname(s->listen_fd, &bound.sa, &bound_len) != 0) {
        snprintf(err, err_len, "probe server: cannot read the port bound for %s: %s", listen_addr,
                 strerror(errno));
        return WEFT_EIO;
    }
    s->port = ntohs(bound.sa.sa_family == AF_INET6 ? bound.in6.sin6_port : bound.in4.sin_port);
    return WEFT_OK;
}

int proxy_probe_server_start(struct proxy_probe_server **out,
                             const struct proxy_probe_server_config *cfg, char *err, size_t err_len)
{
    *out = NULL;
    if (err_len > 0) {
        err[0] = '\0';
    }
    struct proxy_probe_server *s = weft_xcalloc(1, sizeof(*s));
    s->listen_fd = -1;
    s->wake_fd = -1;
    s->probes = cfg->probes;
    s->ready = cfg->ready;
    s->ready_arg = cfg->ready_arg;
    s->app_host = cfg->app_host != NULL ? cfg->app_host : "127.0.0.1";
    size_t num_probes = cfg->probes != NULL ? cfg->probes->num_probes : 0;
    if (cfg->metrics != NULL && num_probes > 0) {
        /* made now: the labels are bounded by WEFT_APP_PROBES, and the threads only add */
        s->counters = weft_xcalloc(num_probes * PROXY_PROBE_NUM_RESULTS, sizeof(*s->counters));
        for (size_t i = 0; i < num_probes; i++) {
            for (size_t r = 0; r < PROXY_PROBE_NUM_RESULTS; r++) {
                struct weft_label l[] = {{"path", cfg->probes->probes[i].key},
                                         {"result", results[r]}};
                s->counters[i * PROXY_PROBE_NUM_RESULTS + r] = weft_metrics_counter(
                    cfg->metrics, "weft_proxy_app_probes_total",
                    "Kubelet probes made to the app through the probe port, by result", l, 2);
            }
        }
    }
    int rc = open_listener(s, cfg->listen != NULL ? cfg->listen : PROXY_PROBES_DEFAULT_LISTEN, err,
                           err_len);
    if (rc != WEFT_OK) {
        destroy(s);
        return rc;
    }
    if ((s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(err, err_len, "probe server: cannot make an eventfd: %s", strerror(errno));
        destroy(s);
        return WEFT_EIO;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (size_t i = 0; i < PROXY_PROBES_MAX_CONCURRENT; i++) {
        int perr = pthread_create(&s->threads[i], NULL, worker, s);
        if (perr != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            snprintf(err, err_len, "probe server: cannot start a thread: %s", strerror(perr));
            proxy_probe_server_stop(s);
            return WEFT_EIO;
        }
        pthread_setname_np(s->threads[i], THREAD_NAME);
        s->num_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = s;
    return WEFT_OK;
}

int proxy_probe_server_port(const struct proxy_probe_server *s) { return s->port; }

void proxy_probe_server_stop(struct proxy_probe_server *s)
{
    if (s == NULL) {
        return;
    }
    wake(s);
    for (size_t i = 0; i < s->num_threads; i++) {
        pthread_join(s->threads[i], NULL);
    }
    destroy(s);
}

/* wait_for waits until |fd| is ready for |events|, the server stops, or |deadline|; true when
 * |fd| is ready. */
static bool wait_for(struct proxy_probe_server *s, int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return false;
        }
        struct pollfd p[2] = {{.fd = s->wake_fd, .events = POLLIN}, {.fd = fd, .events = events}};
        int n = poll(p, 2, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 || p[0].revents != 0) {
            return false;
        }
        if (p[1].revents != 0) {
            return true;
        }
    }
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status"; /* RFC 9112 §4: clients ignore the reason phrase */
    }
}

/* respond writes the whole response, then shuts our side down and reads what the client still
 * sends until it closes (closing with unread bytes would reset the connection, RFC 9112 §9.6). */
static void respond(struct proxy_probe_server *s, int fd, int status, const char *body,
                    size_t body_len)
{
    char head[256];
    int head_len =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: " TEXT_TYPE
                 "\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                 status, status_text(status), body_len, status == 405 ? "Allow: GET\r\n" : "");
    struct iovec parts[2] = {{head, (size_t)head_len}, {(void *)body, body_len}};
    size_t total = (size_t)head_len + body_len, sent = 0;
    int64_t deadline = now_ms() + PROXY_PROBES_REQUEST_TIMEOUT_MS;
    while (sent < total) {
        struct msghdr m = {0};
        struct iovec iov[2];
        size_t n_iov = 0, skip = sent;
        for (size_t i = 0; i < 2; i++) {
            if (skip >= parts[i].iov_len) {
                skip -= parts[i].iov_len;
                continue;
            }
            iov[n_iov].iov_base = (char *)parts[i].iov_base + skip;
            iov[n_iov++].iov_len = parts[i].iov_len - skip;
            skip = 0;
        }
        m.msg_iov = iov;
        m.msg_iovlen = n_iov;
        ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_for(s, fd, POLLOUT, deadline)) {
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        sent += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    deadline = now_ms() + DRAIN_MS;
    size_t drained = 0;
    char buf[4096];
    while (drained <= MAX_DRAIN && wait_for(s, fd, POLLIN, deadline)) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        drained += (size_t)n;
    }
}

static void respond_text(struct proxy_probe_server *s, int fd, int status, const char *text)
{
    respond(s, fd, status, text, strlen(text));
}

static void count(struct proxy_probe_server *s, const struct proxy_probe *p,
                  enum proxy_probe_result result)
{
    if (s->counters != NULL) {
        size_t i = (size_t)(p - s->probes->probes);
        weft_counter_add(s->counters[i * PROXY_PROBE_NUM_RESULTS + result], 1);
    }
}

/* run_probe makes |p|'s request to the app and answers the kubelet on |fd|. */
static void run_probe(struct proxy_probe_server *s, int fd, const struct proxy_probe *p)
{
    char url[HTTPCLIENT_MAX_URL];
    snprintf(url, sizeof(url), "%s://%s:%u%s", p->https ? "https" : "http", s->app_host,
             (unsigned)p->port, p->path);
    int timeout_ms = p->timeout_s * 1000;
    timeout_ms = timeout_ms > 2 * TIMEOUT_MARGIN_MS ? timeout_ms - TIMEOUT_MARGIN_MS : timeout_ms;
    struct httpclient_request req = {
        .method = "GET",
        .url = url,
        .headers = (const char *const *)p->headers,
        .num_headers = p->num_headers,
        .timeout_ms = timeout_ms,
        .max_body = APP_MAX_BODY,
        /* as the kubelet does: HTTPS probes are encrypted but never verified */
        .insecure_skip_verify = p->https,
    };
    struct httpclient_response resp = {0};
    char why[256];
    int64_t start = now_ms();
    int rc = httpclient_do(&req, &resp, why, sizeof(why));
    int64_t took = now_ms() - start;
    enum proxy_probe_result result;
    char status_s[16], took_s[24];
    snprintf(took_s, sizeof(took_s), "%lld", (long long)took);
    if (rc == WEFT_OK && resp.status >= 100 && resp.status <= 599) {
        result =
            resp.status >= 200 && resp.status < 400 ? PROXY_PROBE_SUCCESS : PROXY_PROBE_FAILURE;
        snprintf(status_s, sizeof(status_s), "%d", resp.status);
        weft_log(WEFT_LOG_DEBUG, "app probe", 5, "path", p->key, "url", url, "result",
                 results[result], "status", status_s, "ms", took_s);
        size_t len = resp.body_len < PROXY_PROBES_MAX_BODY ? resp.body_len : PROXY_PROBES_MAX_BODY;
        count(s, p, result); /* before the answer: whoever reads it sees the count */
        respond(s, fd, resp.status, (const char *)resp.body, len);
    } else {
        if (rc == WEFT_OK) {
            snprintf(why, sizeof(why), "the app answered status %d", resp.status);
        }
        result =
            rc == WEFT_EIO && took >= timeout_ms - 10 ? PROXY_PROBE_TIMEOUT : PROXY_PROBE_ERROR;
        weft_log(WEFT_LOG_DEBUG, "app probe", 5, "path", p->key, "url", url, "result",
                 results[result], "error", why, "ms", took_s);
        char body[PROXY_PROBES_ERR_LEN + 64];
        snprintf(body, sizeof(body), "probe %s: %s: %s\n", p->key,
                 result == PROXY_PROBE_TIMEOUT ? "timed out" : "no answer from the app", why);
        count(s, p, result);
        respond_text(s, fd, 503, body);
    }
    httpclient_response_free(&resp);
}

static void serve_conn(struct proxy_probe_server *s, int fd)
{
    char head[PROXY_PROBES_MAX_HEAD];
    size_t len = 0;
    struct proxy_probe_request req;
    int64_t deadline = now_ms() + PROXY_PROBES_REQUEST_TIMEOUT_MS;
    int rc = WEFT_EAGAIN;
    while (rc == WEFT_EAGAIN) {
        if (!wait_for(s, fd, POLLIN, deadline)) {
            return; /* too slow, or stopping: close without an answer */
        }
        ssize_t n = recv(fd, head + len, sizeof(head) - len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        len += (size_t)n;
        rc = proxy_probe_request_parse(&req, head, len);
    }
    if (rc == WEFT_ELIMIT) {
        respond_text(s, fd, 431, "request head or target too large\n");
        return;
    }
    if (rc != WEFT_OK) {
        respond_text(s, fd, 400, "bad request\n");
        return;
    }
    bool is_ready = strcmp(req.path, "/ready") == 0;
    const struct proxy_probe *p = proxy_probes_find(s->probes, req.path, req.path_len);
    if (!is_ready && p == NULL) {
        respond_text(s, fd, 404, "not found\n");
        return;
    }
    if (!req.get) {
        respond_text(s, fd, 405, "method not allowed\n");
        return;
    }
    if (req.has_body) {
        respond_text(s, fd, 413, "a request body is not accepted\n");
        return;
    }
    if (p != NULL) {
        run_probe(s, fd, p);
        return;
    }
    char why[256] = "";
    if (s->ready == NULL || s->ready(s->ready_arg, why, sizeof(why))) {
        respond_text(s, fd, 200, "ready\n");
        return;
    }
    why[sizeof(why) - 1] = '\0';
    char body[sizeof(why) + 2];
    snprintf(body, sizeof(body), "%s\n", why[0] != '\0' ? why : "not ready");
    respond_text(s, fd, 503, body);
}

static void *worker(void *arg)
{
    struct proxy_probe_server *s = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->wake_fd, .events = POLLIN},
                              {.fd = s->listen_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            continue; /* EINTR or ENOMEM: try again */
        }
        if (p[0].revents != 0) {
            return NULL;
        }
        /* every idle thread wakes; the ones that lose the race get EAGAIN */
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                struct timespec ts = {0, ACCEPT_PAUSE_MS * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        serve_conn(s, fd);
        close(fd);
    }
}
