/* proxy/probes.c: WEFT_APP_PROBES and the probe server (see probes.h).
 *
 * The server is one loop thread and a fixed pool of workers. The loop accepts, reads each
 * request head (within PROXY_PROBES_HEAD_TIMEOUT_MS, holding at most PROXY_PROBES_MAX_HEAD_CONNS
 * such connections and PROXY_PROBES_MAX_PER_PEER from one address, the oldest closed first for
 * a new one), answers what needs nothing more (404, 405, ...), writes every answer and waits for
 * the client to close: nothing a client does slowly holds a worker. Only a complete request for
 * /ready or an app probe goes to the workers: an app probe blocks for up to its timeoutSeconds
 * (lib/httpclient is blocking), so it runs on a worker, never on the proxy's event loops nor on the
 * admin server's one thread, and the pool's size bounds how many run at once. A worker hands the
 * connection back with its answer made. */
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
#define WRITE_TIMEOUT_MS 1000 /* to take our answer (a few hundred bytes) */
#define MIN_PROBE_MS 50       /* a probe with less time left than this is a timeout at once */
/* What the network is told when a probe fails: fixed lines; the details go to the log. */
#define BODY_TIMEOUT "probe timed out\n"
#define BODY_NO_ANSWER "probe failed: no answer from the app\n"
#define BODY_NOT_READY "not ready\n"
#define BODY_BUSY "probe port busy\n"

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

struct proxy_probe_head {
    http_parser hp;
    struct req_parse r;
    size_t fed;                     /* bytes given to |hp| */
    int verdict;                    /* WEFT_EAGAIN until the head is complete or refused */
    struct proxy_probe_request req; /* with WEFT_OK */
};

static void head_init(struct proxy_probe_head *h)
{
    memset(h, 0, sizeof(*h));
    http_parser_init(&h->hp, HTTP_REQUEST);
    h->hp.data = &h->r;
    h->verdict = WEFT_EAGAIN;
}

/* head_verdict says what the bytes fed so far make. */
static int head_verdict(struct proxy_probe_head *h)
{
    struct req_parse *r = &h->r;
    if (r->url_too_long) {
        return WEFT_ELIMIT;
    }
    if (!r->done) {
        if (HTTP_PARSER_ERRNO(&h->hp) != HPE_OK) {
            return WEFT_EPROTO;
        }
        return h->fed >= PROXY_PROBES_MAX_HEAD ? WEFT_ELIMIT : WEFT_EAGAIN;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url, r->url_len, 0, &u) != 0 ||
        (u.field_set & (1 << UF_PATH)) == 0) {
        return WEFT_EPROTO;
    }
    h->req.get = h->hp.method == HTTP_GET;
    h->req.has_body = r->has_body;
    h->req.path_len = u.field_data[UF_PATH].len;
    memcpy(h->req.path, r->url + u.field_data[UF_PATH].off, h->req.path_len);
    h->req.path[h->req.path_len] = '\0';
    return WEFT_OK;
}

static int head_feed(struct proxy_probe_head *h, struct proxy_probe_request *out, const char *buf,
                     size_t len)
{
    if (h->verdict == WEFT_EAGAIN) {
        size_t room = PROXY_PROBES_MAX_HEAD - h->fed, n = len < room ? len : room;
        if (n > 0) { /* http_parser takes 0 bytes as the end of the stream */
            http_parser_execute(&h->hp, &req_settings, buf, n);
            h->fed += n;
        }
        h->verdict = head_verdict(h);
    }
    if (h->verdict == WEFT_OK) {
        *out = h->req;
    }
    return h->verdict;
}

struct proxy_probe_head *proxy_probe_head_new(void)
{
    struct proxy_probe_head *h = weft_xmalloc(sizeof(*h));
    head_init(h);
    return h;
}

void proxy_probe_head_free(struct proxy_probe_head *h) { free(h); }

int proxy_probe_head_feed(struct proxy_probe_head *h, struct proxy_probe_request *out,
                          const char *buf, size_t len)
{
    return head_feed(h, out, buf, len);
}

int proxy_probe_request_parse(struct proxy_probe_request *out, const char *buf, size_t len)
{
    memset(out, 0, sizeof(*out));
    struct proxy_probe_head h;
    head_init(&h);
    return head_feed(&h, out, buf, len);
}

/* ---- the server ---- */

/* A connection goes through these phases, each owned by one thread. */
enum conn_phase {
    PHASE_HEAD = 0, /* the loop reads its request head */
    PHASE_WORK,     /* queued for a worker, or in one: only the worker touches it */
    PHASE_WRITE,    /* the loop writes the answer */
    PHASE_LINGER,   /* answered, our side shut: the loop reads until the client closes */
    PHASE_DEAD,     /* closed; swept from the table at the end of the loop's turn */
    NUM_PHASES,
};

struct conn {
    int fd;
    enum conn_phase phase; /* the loop's: a worker never reads nor writes it */
    short revents;         /* from this turn's poll */
    int64_t accepted_ms;
    int64_t phase_ms;    /* when the phase began: the oldest is dropped first */
    int64_t deadline_ms; /* of PHASE_HEAD, PHASE_WRITE and PHASE_LINGER */
    uint8_t peer[16];    /* the peer's address, for the per-peer cap */
    size_t peer_len;
    size_t len; /* PHASE_WRITE: bytes of |out| sent; PHASE_LINGER: bytes drained */
    struct proxy_probe_head head; /* PHASE_HEAD: each byte read once, whatever the pieces */
    struct proxy_probe_request req;
    const struct proxy_probe *probe; /* PHASE_WORK: the probe asked for, or NULL for /ready */
    char *out;                       /* the whole response */
    size_t out_len;
    struct conn *next; /* in the work queue or the done list, under the server's mutex */
};

#define MAX_CONNS                                                                                  \
    (PROXY_PROBES_MAX_HEAD_CONNS + PROXY_PROBES_MAX_QUEUED + PROXY_PROBES_MAX_CONCURRENT +         \
     PROXY_PROBES_MAX_ANSWERING)
#define FIXED_FDS 3         /* wake_fd, done_fd, listen_fd: first in the poll set */
#define MAX_ACCEPTS 64      /* accepted in one turn of the loop */
#define WARN_EVERY_MS 10000 /* at most one warning line about dropped connections per this */

struct proxy_probe_server {
    int listen_fd;
    int wake_fd; /* eventfd: written once at stop and never read, so it stays readable */
    int done_fd; /* eventfd: a worker has put an answered connection on |done| */
    int port;
    const struct proxy_probes *probes;
    bool (*ready)(void *arg, char *why, size_t why_len);
    void *ready_arg;
    const char *app_host;
    struct weft_counter **counters; /* [probe * PROXY_PROBE_NUM_RESULTS + result], or NULL */
    pthread_t loop_thread;
    bool loop_started;
    pthread_t threads[PROXY_PROBES_MAX_CONCURRENT];
    size_t num_threads;

    pthread_mutex_t mu; /* guards what follows, up to the loop's own */
    pthread_cond_t cond;
    bool stopping;
    struct conn *queue, *queue_tail; /* complete requests for the workers, oldest first */
    struct conn *done;               /* answered by the workers, for the loop to write */

    /* the loop's own: every connection the server holds, whatever its phase */
    struct conn *conns[MAX_CONNS];
    size_t num_conns;
    size_t num_in[NUM_PHASES];
    struct pollfd pfds[FIXED_FDS + MAX_CONNS];
    int64_t accept_paused_until;
    int64_t last_warn_ms;
    size_t drop_head_full, drop_peer, drop_head_timeout, drop_busy, drop_answering_full;
};

static void *loop_main(void *arg);
static void *worker(void *arg);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_free(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->out);
    free(c);
}

/* destroy frees the server once no thread of it runs. */
static void destroy(struct proxy_probe_server *s)
{
    for (size_t i = 0; i < s->num_conns; i++) {
        conn_free(s->conns[i]);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->wake_fd >= 0) {
        close(s->wake_fd);
    }
    if (s->done_fd >= 0) {
        close(s->done_fd);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s->counters);
    free(s);
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    /* fails only when the counter would overflow: readable already */
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
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
    s->done_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->probes = cfg->probes;
    s->ready = cfg->ready;
    s->ready_arg = cfg->ready_arg;
    s->app_host = cfg->app_host != NULL ? cfg->app_host : "127.0.0.1";
    s->last_warn_ms = INT64_MIN / 2;
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
    if ((s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        (s->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(err, err_len, "probe server: cannot make an eventfd: %s", strerror(errno));
        destroy(s);
        return WEFT_EIO;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int perr = pthread_create(&s->loop_thread, NULL, loop_main, s);
    if (perr == 0) {
        s->loop_started = true;
        pthread_setname_np(s->loop_thread, THREAD_NAME);
    }
    for (size_t i = 0; perr == 0 && i < PROXY_PROBES_MAX_CONCURRENT; i++) {
        if ((perr = pthread_create(&s->threads[i], NULL, worker, s)) == 0) {
            pthread_setname_np(s->threads[i], THREAD_NAME);
            s->num_threads++;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr != 0) {
        snprintf(err, err_len, "probe server: cannot start a thread: %s", strerror(perr));
        proxy_probe_server_stop(s);
        return WEFT_EIO;
    }
    *out = s;
    return WEFT_OK;
}

int proxy_probe_server_port(const struct proxy_probe_server *s) { return s->port; }

void proxy_probe_server_stop(struct proxy_probe_server *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    signal_fd(s->wake_fd);
    if (s->loop_started) {
        pthread_join(s->loop_thread, NULL);
    }
    for (size_t i = 0; i < s->num_threads; i++) {
        pthread_join(s->threads[i], NULL);
    }
    destroy(s); /* every connection, whatever its phase, is in the loop's table */
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

/* set_response makes |c|'s whole answer: a short head, then |body|. */
static void set_response(struct conn *c, int status, const char *body, size_t body_len)
{
    char head[256];
    int head_len =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: " TEXT_TYPE
                 "\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                 status, status_text(status), body_len, status == 405 ? "Allow: GET\r\n" : "");
    free(c->out);
    c->out_len = (size_t)head_len + body_len;
    c->out = weft_xmalloc(c->out_len);
    memcpy(c->out, head, (size_t)head_len);
    if (body_len > 0) {
        memcpy(c->out + head_len, body, body_len);
    }
}

static void set_response_text(struct conn *c, int status, const char *text)
{
    set_response(c, status, text, strlen(text));
}

static void count(struct proxy_probe_server *s, const struct proxy_probe *p,
                  enum proxy_probe_result result)
{
    if (s->counters != NULL) {
        size_t i = (size_t)(p - s->probes->probes);
        weft_counter_add(s->counters[i * PROXY_PROBE_NUM_RESULTS + result], 1);
    }
}

/* run_probe makes |c->probe|'s request to the app and sets |c|'s answer. The kubelet's clock
 * started when it connected, so the time |c| waited for a worker comes off the probe's. What
 * went wrong goes to the log only: the answer, which anyone on the network can read, says no
 * more than a fixed line. */
static void run_probe(struct proxy_probe_server *s, struct conn *c)
{
    const struct proxy_probe *p = c->probe;
    char url[HTTPCLIENT_MAX_URL];
    snprintf(url, sizeof(url), "%s://%s:%u%s", p->https ? "https" : "http", s->app_host,
             (unsigned)p->port, p->path);
    int64_t timeout_ms = (int64_t)p->timeout_s * 1000;
    timeout_ms = timeout_ms > 2 * TIMEOUT_MARGIN_MS ? timeout_ms - TIMEOUT_MARGIN_MS : timeout_ms;
    int64_t start = now_ms(), waited = start - c->accepted_ms;
    char took_s[24], waited_s[24];
    snprintf(waited_s, sizeof(waited_s), "%lld", (long long)waited);
    if (timeout_ms - waited < MIN_PROBE_MS) {
        weft_log(WEFT_LOG_INFO, "app probe", 4, "path", p->key, "result",
                 results[PROXY_PROBE_TIMEOUT], "error",
                 "waited for a free probe thread past the probe's timeout", "waited_ms", waited_s);
        count(s, p, PROXY_PROBE_TIMEOUT);
        set_response_text(c, 503, BODY_TIMEOUT);
        return;
    }
    timeout_ms -= waited;
    struct httpclient_request req = {
        .method = "GET",
        .url = url,
        .headers = (const char *const *)p->headers,
        .num_headers = p->num_headers,
        .timeout_ms = (int)timeout_ms,
        .max_body = APP_MAX_BODY,
        /* as the kubelet does: HTTPS probes are encrypted but never verified */
        .insecure_skip_verify = p->https,
    };
    struct httpclient_response resp = {0};
    char why[256];
    int rc = httpclient_do(&req, &resp, why, sizeof(why));
    int64_t took = now_ms() - start;
    enum proxy_probe_result result;
    char status_s[16];
    snprintf(took_s, sizeof(took_s), "%lld", (long long)took);
    if (rc == WEFT_OK && resp.status >= 100 && resp.status <= 599) {
        result =
            resp.status >= 200 && resp.status < 400 ? PROXY_PROBE_SUCCESS : PROXY_PROBE_FAILURE;
        snprintf(status_s, sizeof(status_s), "%d", resp.status);
        weft_log(result == PROXY_PROBE_SUCCESS ? WEFT_LOG_DEBUG : WEFT_LOG_INFO, "app probe", 6,
                 "path", p->key, "url", url, "result", results[result], "status", status_s, "ms",
                 took_s, "waited_ms", waited_s);
        size_t len = resp.body_len < PROXY_PROBES_MAX_BODY ? resp.body_len : PROXY_PROBES_MAX_BODY;
        count(s, p, result); /* before the answer: whoever reads it sees the count */
        set_response(c, resp.status, (const char *)resp.body, len);
    } else {
        if (rc == WEFT_OK) {
            snprintf(why, sizeof(why), "the app answered status %d", resp.status);
        }
        result =
            rc == WEFT_EIO && took >= timeout_ms - 10 ? PROXY_PROBE_TIMEOUT : PROXY_PROBE_ERROR;
        weft_log(WEFT_LOG_INFO, "app probe", 6, "path", p->key, "url", url, "result",
                 results[result], "error", why, "ms", took_s, "waited_ms", waited_s);
        count(s, p, result);
        set_response_text(c, 503, result == PROXY_PROBE_TIMEOUT ? BODY_TIMEOUT : BODY_NO_ANSWER);
    }
    httpclient_response_free(&resp);
}

/* answer_ready sets the answer to /ready; why the proxy is not ready goes to the log only. */
static void answer_ready(struct proxy_probe_server *s, struct conn *c)
{
    char why[256] = "";
    if (s->ready == NULL || s->ready(s->ready_arg, why, sizeof(why))) {
        set_response_text(c, 200, "ready\n");
        return;
    }
    why[sizeof(why) - 1] = '\0';
    weft_log(WEFT_LOG_INFO, "probe port: /ready answered 503", 1, "why",
             why[0] != '\0' ? why : "not ready");
    set_response_text(c, 503, BODY_NOT_READY);
}

/* worker serves the queue's requests one at a time: each takes at most its probe's
 * timeoutSeconds (or the ready callback's time), and never touches the socket. */
static void *worker(void *arg)
{
    struct proxy_probe_server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && s->queue == NULL) {
            pthread_cond_wait(&s->cond, &s->mu);
        }
        if (s->stopping) {
            break;
        }
        struct conn *c = s->queue;
        s->queue = c->next;
        if (s->queue == NULL) {
            s->queue_tail = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (c->probe != NULL) {
            run_probe(s, c);
        } else {
            answer_ready(s, c);
        }
        pthread_mutex_lock(&s->mu);
        c->next = s->done;
        s->done = c;
        signal_fd(s->done_fd);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the loop: accepts, reads heads, writes answers, lingers ---- */

static void write_answer(struct proxy_probe_server *s, struct conn *c, int64_t now);

static void set_phase(struct proxy_probe_server *s, struct conn *c, enum conn_phase phase,
                      int64_t now, int64_t timeout_ms)
{
    s->num_in[c->phase]--;
    s->num_in[phase]++;
    c->phase = phase;
    c->phase_ms = now;
    c->deadline_ms = now + timeout_ms;
    c->len = 0;
}

/* drop closes |c| now; the end of the loop's turn frees it. */
static void drop(struct proxy_probe_server *s, struct conn *c)
{
    set_phase(s, c, PHASE_DEAD, 0, 0);
    close(c->fd);
    c->fd = -1;
}

/* drop_oldest closes the connection that has been longest in |phase| (or in |or_phase|). */
static void drop_oldest(struct proxy_probe_server *s, enum conn_phase phase,
                        enum conn_phase or_phase)
{
    struct conn *oldest = NULL;
    for (size_t i = 0; i < s->num_conns; i++) {
        struct conn *c = s->conns[i];
        if ((c->phase == phase || c->phase == or_phase) &&
            (oldest == NULL || c->phase_ms < oldest->phase_ms)) {
            oldest = c;
        }
    }
    if (oldest != NULL) {
        drop(s, oldest);
    }
}

static void warn_drops(struct proxy_probe_server *s, int64_t now)
{
    size_t total = s->drop_head_full + s->drop_peer + s->drop_head_timeout + s->drop_busy +
                   s->drop_answering_full;
    if (total == 0 || now - s->last_warn_ms < WARN_EVERY_MS) {
        return;
    }
    char a[24], b[24], c[24], d[24], e[24];
    snprintf(a, sizeof(a), "%zu", s->drop_head_timeout);
    snprintf(b, sizeof(b), "%zu", s->drop_head_full);
    snprintf(c, sizeof(c), "%zu", s->drop_peer);
    snprintf(d, sizeof(d), "%zu", s->drop_busy);
    snprintf(e, sizeof(e), "%zu", s->drop_answering_full);
    weft_log(WEFT_LOG_WARN, "probe port: connections dropped (a slow or flooding client?)", 5,
             "head_timeout", a, "head_conns_full", b, "per_peer_cap", c, "workers_busy_503", d,
             "answering_full", e);
    s->drop_head_full = s->drop_peer = s->drop_head_timeout = s->drop_busy = 0;
    s->drop_answering_full = 0;
    s->last_warn_ms = now;
}

/* start_answer moves |c| (whose |out| is set) to PHASE_WRITE, making room first. */
static void start_answer(struct proxy_probe_server *s, struct conn *c, int64_t now)
{
    if (s->num_in[PHASE_WRITE] + s->num_in[PHASE_LINGER] >= PROXY_PROBES_MAX_ANSWERING) {
        drop_oldest(s, PHASE_LINGER, PHASE_WRITE);
        s->drop_answering_full++;
    }
    set_phase(s, c, PHASE_WRITE, now, WRITE_TIMEOUT_MS);
    write_answer(s, c, now); /* the socket's buffer is empty: the answer likely fits at once */
}

/* on_head decides what a complete (or refused) head gets: an answer from the loop for what
 * needs nothing more, a place in the workers' queue for /ready and the app's probes. */
static void on_head(struct proxy_probe_server *s, struct conn *c, int rc, int64_t now)
{
    if (rc == WEFT_ELIMIT) {
        set_response_text(c, 431, "request head or target too large\n");
    } else if (rc != WEFT_OK) {
        set_response_text(c, 400, "bad request\n");
    } else {
        bool is_ready = strcmp(c->req.path, "/ready") == 0;
        c->probe = proxy_probes_find(s->probes, c->req.path, c->req.path_len);
        if (!is_ready && c->probe == NULL) {
            set_response_text(c, 404, "not found\n");
        } else if (!c->req.get) {
            set_response_text(c, 405, "method not allowed\n");
        } else if (c->req.has_body) {
            set_response_text(c, 413, "a request body is not accepted\n");
        } else {
            /* queued, in a worker, or answered and not yet taken back */
            if (s->num_in[PHASE_WORK] >= PROXY_PROBES_MAX_QUEUED + PROXY_PROBES_MAX_CONCURRENT) {
                s->drop_busy++;
                set_response_text(c, 503, BODY_BUSY);
                start_answer(s, c, now);
                return;
            }
            set_phase(s, c, PHASE_WORK, now, 0);
            pthread_mutex_lock(&s->mu);
            c->next = NULL;
            if (s->queue_tail != NULL) {
                s->queue_tail->next = c;
            } else {
                s->queue = c;
            }
            s->queue_tail = c;
            pthread_cond_signal(&s->cond);
            pthread_mutex_unlock(&s->mu);
            return;
        }
    }
    start_answer(s, c, now);
}

static void read_head(struct proxy_probe_server *s, struct conn *c, int64_t now)
{
    char buf[4096];
    for (;;) {
        /* bytes past the head (a body refused with 413) are read and dropped, as in PHASE_LINGER */
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            drop(s, c); /* gone, or reset: nobody to answer */
            return;
        }
        int rc = head_feed(&c->head, &c->req, buf, (size_t)n);
        if (rc != WEFT_EAGAIN) {
            on_head(s, c, rc, now);
            return;
        }
    }
}

static void write_answer(struct proxy_probe_server *s, struct conn *c, int64_t now)
{
    while (c->len < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->len, c->out_len - c->len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            drop(s, c);
            return;
        }
        c->len += (size_t)n;
    }
    /* all sent: shut our side, and read what the client still sends until it closes (closing
     * with unread bytes would reset the connection, RFC 9112 §9.6) */
    shutdown(c->fd, SHUT_WR);
    set_phase(s, c, PHASE_LINGER, now, DRAIN_MS);
}

static void linger(struct proxy_probe_server *s, struct conn *c)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0 || (c->len += (size_t)n) > MAX_DRAIN) {
            drop(s, c);
            return;
        }
    }
}

/* take_done moves the workers' answered connections to PHASE_WRITE. */
static void take_done(struct proxy_probe_server *s, int64_t now)
{
    uint64_t v;
    while (read(s->done_fd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&s->mu);
    struct conn *c = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (c != NULL) {
        struct conn *next = c->next;
        c->next = NULL;
        start_answer(s, c, now);
        c = next;
    }
}

/* sweep frees the dropped connections, keeping the others in the order they came. */
static void sweep(struct proxy_probe_server *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->num_conns; i++) {
        struct conn *c = s->conns[i];
        if (c->phase == PHASE_DEAD) {
            s->num_in[PHASE_DEAD]--;
            conn_free(c);
        } else {
            s->conns[kept++] = c;
        }
    }
    s->num_conns = kept;
}

/* peer_conns counts the connections held from |peer|'s address, and finds the one of them
 * longest in PHASE_HEAD (NULL if none is). */
static size_t peer_conns(const struct proxy_probe_server *s, const uint8_t *peer, size_t peer_len,
                         struct conn **out_oldest_head)
{
    size_t n = 0;
    *out_oldest_head = NULL;
    for (size_t i = 0; i < s->num_conns; i++) {
        struct conn *c = s->conns[i];
        if (c->phase == PHASE_DEAD || c->peer_len != peer_len ||
            memcmp(c->peer, peer, peer_len) != 0) {
            continue;
        }
        n++;
        if (c->phase == PHASE_HEAD &&
            (*out_oldest_head == NULL || c->phase_ms < (*out_oldest_head)->phase_ms)) {
            *out_oldest_head = c;
        }
    }
    return n;
}

static void accept_conns(struct proxy_probe_server *s, int64_t now)
{
    for (size_t i = 0; i < MAX_ACCEPTS; i++) {
        union weft_sockaddr a;
        socklen_t a_len = sizeof(a);
        int fd = accept4(s->listen_fd, &a.sa, &a_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                s->accept_paused_until = now + ACCEPT_PAUSE_MS;
            }
            return;
        }
        uint8_t peer[16] = {0};
        size_t peer_len = 0;
        if (a.sa.sa_family == AF_INET6) {
            memcpy(peer, &a.in6.sin6_addr, 16);
            peer_len = 16;
        } else if (a.sa.sa_family == AF_INET) {
            memcpy(peer, &a.in4.sin_addr, 4);
            peer_len = 4;
        }
        /* At its cap, a peer's new connection takes the place of its oldest one still sending
         * its head (a kubelet sharing its address with a slow client still gets through); a
         * peer whose every connection is past its head gets no more. */
        struct conn *oldest_head;
        if (peer_conns(s, peer, peer_len, &oldest_head) >= PROXY_PROBES_MAX_PER_PEER) {
            s->drop_peer++;
            if (oldest_head == NULL) {
                close(fd);
                continue;
            }
            drop(s, oldest_head);
        }
        if (s->num_in[PHASE_HEAD] >= PROXY_PROBES_MAX_HEAD_CONNS) {
            drop_oldest(s, PHASE_HEAD, PHASE_HEAD);
            s->drop_head_full++;
        }
        if (s->num_conns == MAX_CONNS) {
            sweep(s); /* the dropped ones: then there is room, by the caps above */
        }
        if (s->num_conns == MAX_CONNS) {
            close(fd);
            s->drop_head_full++;
            return;
        }
        struct conn *c = weft_xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->phase = PHASE_HEAD;
        c->accepted_ms = c->phase_ms = now;
        c->deadline_ms = now + PROXY_PROBES_HEAD_TIMEOUT_MS;
        memcpy(c->peer, peer, sizeof(peer));
        c->peer_len = peer_len;
        head_init(&c->head);
        c->revents = POLLIN; /* a kubelet sends its head with the handshake's last ACK */
        s->num_in[PHASE_HEAD]++;
        s->conns[s->num_conns++] = c;
    }
}

/* turn handles each connection's events and deadlines, then frees the dead. */
static void turn(struct proxy_probe_server *s, int64_t now)
{
    for (size_t i = 0; i < s->num_conns; i++) {
        struct conn *c = s->conns[i];
        short ev = c->revents;
        c->revents = 0;
        if (ev != 0) {
            switch (c->phase) {
            case PHASE_HEAD:
                read_head(s, c, now); /* a whole head is answered at once, or queued */
                break;
            case PHASE_WRITE:
                write_answer(s, c, now);
                break;
            case PHASE_LINGER:
                linger(s, c);
                break;
            default:
                break;
            }
        }
        bool timed = c->phase == PHASE_HEAD || c->phase == PHASE_WRITE || c->phase == PHASE_LINGER;
        if (timed && now >= c->deadline_ms) {
            s->drop_head_timeout += c->phase == PHASE_HEAD;
            drop(s, c); /* a head too slow gets no answer: it costs nothing more */
        }
    }
    sweep(s);
}

/* loop_main owns every connection outside the workers: one thread, one poll, so a client that
 * sends its head slowly (or never) costs a slot of PROXY_PROBES_MAX_HEAD_CONNS for at most
 * PROXY_PROBES_HEAD_TIMEOUT_MS and no worker's time. */
static void *loop_main(void *arg)
{
    struct proxy_probe_server *s = arg;
    for (;;) {
        int64_t now = now_ms(), next = now + 60 * 1000;
        s->pfds[0] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
        s->pfds[1] = (struct pollfd){.fd = s->done_fd, .events = POLLIN};
        s->pfds[2] = (struct pollfd){.fd = now >= s->accept_paused_until ? s->listen_fd : -1,
                                     .events = POLLIN};
        if (now < s->accept_paused_until) {
            next = s->accept_paused_until;
        }
        for (size_t i = 0; i < s->num_conns; i++) {
            struct conn *c = s->conns[i];
            struct pollfd *p = &s->pfds[FIXED_FDS + i];
            *p = (struct pollfd){.fd = -1};
            if (c->phase == PHASE_HEAD || c->phase == PHASE_LINGER) {
                *p = (struct pollfd){.fd = c->fd, .events = POLLIN};
            } else if (c->phase == PHASE_WRITE) {
                *p = (struct pollfd){.fd = c->fd, .events = POLLOUT};
            }
            if (p->fd >= 0 && c->deadline_ms < next) {
                next = c->deadline_ms;
            }
        }
        int64_t wait = next - now;
        int n = poll(s->pfds, FIXED_FDS + s->num_conns, wait < 0 ? 0 : (int)wait);
        if (n < 0) {
            if (errno != EINTR) {
                struct timespec ts = {0, ACCEPT_PAUSE_MS * 1000 * 1000}; /* ENOMEM: breathe */
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (s->pfds[0].revents != 0) {
            return NULL; /* the table's connections are closed by proxy_probe_server_stop */
        }
        now = now_ms();
        for (size_t i = 0; i < s->num_conns; i++) {
            s->conns[i]->revents = s->pfds[FIXED_FDS + i].revents;
        }
        if (s->pfds[1].revents != 0) {
            take_done(s, now);
        }
        turn(s, now);
        if (s->pfds[2].revents != 0) {
            accept_conns(s, now);
            turn(s, now); /* the new ones' heads are likely in already */
        }
        warn_drops(s, now);
    }
}
