/* List + watch of weft's custom resources over libcurl, one thread per kind. */
#include "ca/kube_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#include "ca/kube_watch.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"

const struct ca_kube_kind ca_kube_kinds[CA_KUBE_NUM_KINDS] = {
    {"AuthorizationPolicy", "authorizationpolicies"},
    {"PeerAuthentication", "peerauthentications"},
    {"MeshConfig", "meshconfigs"},
};

#define ERROR_BODY_MAX 2048 /* of a non-200 response, kept for the error message */

struct ca_kube_client;

struct worker {
    struct ca_kube_client *c;
    size_t kind;
    pthread_t thread;
    bool started;
    CURL *curl;
    char rv[CA_KUBE_MAX_RV + 1]; /* "" until a LIST gave one: then relist */
};

struct ca_kube_client {
    char *api_url, *token_file, *ca_file;
    unsigned watch_timeout_s, backoff_min_ms, backoff_max_ms, page_limit;
    struct ca_kube_sink sink;
    atomic_bool stop;
    atomic_uint_fast64_t failures;
    pthread_mutex_t mu; /* with |cv|: the backoff sleeps, cut short by stop */
    pthread_cond_t cv;
    struct worker workers[CA_KUBE_NUM_KINDS];
};

/* struct transfer is one request's response as it arrives. */
struct transfer {
    struct worker *w;
    bool watch;
    long status;
    char *body; /* a LIST's body, or the start of an error response */
    size_t body_len, body_max;
    bool over;
    struct ca_kube_lines lines;
    int stream_rc; /* why the write callback stopped the transfer */
    char err[CA_KUBE_MAX_ERR];
    size_t events;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static bool is_loopback_http(const char *url)
{
    static const char *const ok[] = {"http://127.", "http://[::1]",
                                     "http://localhost:", "http://localhost/"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strncmp(url, ok[i], strlen(ok[i])) == 0) {
            return true;
        }
    }
    return strcmp(url, "http://localhost") == 0;
}

int ca_kube_config_in_cluster(struct ca_kube_config *cfg, char *url, size_t url_len, char *err,
                              size_t err_len)
{
    if (cfg->api_url == NULL) {
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        if (host == NULL || host[0] == '\0') {
            snprintf(err, err_len,
                     "no --kube-api and KUBERNETES_SERVICE_HOST is not set (not in a pod?)");
            return WEFT_EINVAL;
        }
        bool v6 = strchr(host, ':') != NULL; /* an IPv6 literal goes in brackets (RFC 3986) */
        int n = snprintf(url, url_len, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                         port != NULL && port[0] != '\0' ? port : "443");
        if (n < 0 || (size_t)n >= url_len) {
            snprintf(err, err_len, "KUBERNETES_SERVICE_HOST is too long");
            return WEFT_EINVAL;
        }
        cfg->api_url = url;
        if (cfg->token_file == NULL) {
            cfg->token_file = CA_KUBE_SA_DIR "/token";
        }
        if (cfg->ca_file == NULL) {
            cfg->ca_file = CA_KUBE_SA_DIR "/ca.crt";
        }
    }
    return WEFT_OK;
}

static bool stopped(struct ca_kube_client *c) { return atomic_load(&c->stop); }

static void note_failure(struct worker *w, const char *what, const char *err)
{
    atomic_fetch_add(&w->c->failures, 1);
    weft_log(WEFT_LOG_WARN, "kubernetes api request failed; retrying", 3, "kind",
             ca_kube_kinds[w->kind].kind, "request", what, "error", err);
}

/* backoff sleeps min * 2^(failures-1), capped, with "equal jitter": half fixed, half random,
 * so that CAs restarted together do not reconnect in step. */
static void backoff(struct worker *w, unsigned failures)
{
    struct ca_kube_client *c = w->c;
    uint64_t delay = c->backoff_min_ms;
    for (unsigned i = 1; i < failures && delay < c->backoff_max_ms; i++) {
        delay *= 2;
    }
    if (delay > c->backoff_max_ms) {
        delay = c->backoff_max_ms;
    }
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r)) {
        r = (uint32_t)time(NULL);
    }
    delay = delay / 2 + (delay / 2 > 0 ? r % (delay / 2 + 1) : 0);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(delay / 1000);
    until.tv_nsec += (long)(delay % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->mu);
    while (!stopped(c) && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&c->mu);
}

/* read_token reads the token file again (it rotates: kubelet rewrites it well before expiry)
 * into "Authorization: Bearer ..." in |out|. */
static int read_token(struct ca_kube_client *c, char **out, char *err, size_t err_len)
{
    *out = NULL;
    if (c->token_file == NULL) {
        return WEFT_OK;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = weft_file_read(&data, &len, c->token_file, CA_KUBE_MAX_TOKEN);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "cannot read the token file %s: %s", c->token_file,
                 rc == WEFT_ELIMIT ? "over 64 KiB" : strerror(errno));
        return rc;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ')) {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] < 0x21 || data[i] > 0x7e) {
            explicit_bzero(data, len);
            free(data);
            snprintf(err, err_len, "the token file %s holds a byte a bearer token may not (%zu)",
                     c->token_file, i);
            return WEFT_EINVAL;
        }
    }
    if (len == 0) {
        free(data);
        snprintf(err, err_len, "the token file %s is empty", c->token_file);
        return WEFT_EINVAL;
    }
    size_t n = len + 32;
    *out = weft_xmalloc(n);
    snprintf(*out, n, "Authorization: Bearer %.*s", (int)len, (const char *)data);
    explicit_bzero(data, len);
    free(data);
    return WEFT_OK;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct transfer *t = arg;
    return stopped(t->w->c) ? 1 : 0; /* non-zero aborts: curl calls this about once a second */
}

static void keep_body(struct transfer *t, const char *data, size_t len)
{
    if (t->over || len > t->body_max - t->body_len) {
        t->over = true;
        len = t->body_max - t->body_len;
    }
    if (len == 0) {
        return;
    }
    t->body = weft_xrealloc(t->body, t->body_len + len + 1);
    memcpy(t->body + t->body_len, data, len);
    t->body_len += len;
    t->body[t->body_len] = '\0';
}

/* on_event applies one watch line. */
static int on_event(void *arg, const char *line, size_t len)
{
    struct transfer *t = arg;
    struct worker *w = t->w;
    struct ca_kube_client *c = w->c;
    struct ca_kube_event ev;
    TRY(ca_kube_event_parse(&ev, line, len, t->err, sizeof(t->err)));
    t->events++;
    int rc = WEFT_OK;
    switch (ev.type) {
    case CA_KUBE_ADDED:
    case CA_KUBE_MODIFIED:
        c->sink.object(c->sink.arg, w->kind, ev.object);
        break;
    case CA_KUBE_DELETED:
        c->sink.gone(c->sink.arg, w->kind, ev.object);
        break;
    case CA_KUBE_BOOKMARK:
        break;
    case CA_KUBE_ERROR:
        snprintf(t->err, sizeof(t->err), "watch error %d: %.400s", ev.code, ev.message);
        rc = ev.code == 410 ? WEFT_ESTALE : WEFT_EPROTO;
        break;
    }
    if (rc == WEFT_OK) {
        memcpy(w->rv, ev.rv, sizeof(w->rv));
    }
    ca_kube_event_cleanup(&ev);
    return rc;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t len = size * nmemb;
    if (t->status == 0) {
        curl_easy_getinfo(t->w->curl, CURLINFO_RESPONSE_CODE, &t->status);
    }
    if (!t->watch || t->status != 200) {
        keep_body(t, data, len);
        if (t->over && !t->watch) {
            snprintf(t->err, sizeof(t->err), "list page over %u bytes", CA_KUBE_MAX_BODY);
            t->stream_rc = WEFT_ELIMIT;
            return 0; /* aborts the transfer */
        }
        return len; /* (an error body past its limit is cut short) */
    }
    int rc = ca_kube_lines_feed(&t->lines, data, len, on_event, t);
    if (rc != WEFT_OK) {
        if (rc == WEFT_ELIMIT) {
            snprintf(t->err, sizeof(t->err), "watch event over %u bytes", CA_KUBE_MAX_LINE);
        }
        t->stream_rc = rc;
        return 0; /* aborts the transfer */
    }
    return len;
}

/* request runs one GET of |url|, filling |t|. Returns WEFT_OK when the transfer completed
 * (t->status says how), or an error with t->err set. */
static int request(struct worker *w, struct transfer *t, const char *url, long timeout_s)
{
    struct ca_kube_client *c = w->c;
    char *auth = NULL;
    TRY(read_token(c, &auth, t->err, sizeof(t->err)));
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
    if (auth != NULL) {
        headers = curl_slist_append(headers, auth);
    }
    CURL *h = w->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "weft-ca");
    char detail[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
    if (c->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &t->status);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    if (auth != NULL) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    if (t->stream_rc != WEFT_OK) {
        return t->stream_rc;
    }
    if (cc != CURLE_OK) {
        /* curl's own detail says which check failed ("server certificate verification
         * failed. CAfile: ...") */
        snprintf(t->err, sizeof(t->err), "%s%s%.300s%s", curl_easy_strerror(cc),
                 detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
        return WEFT_EIO;
    }
    return WEFT_OK;
}

static void status_error(struct transfer *t)
{
    snprintf(t->err, sizeof(t->err), "HTTP %ld: %.300s", t->status, t->body != NULL ? t->body : "");
}

static void transfer_cleanup(struct transfer *t)
{
    free(t->body);
    ca_kube_lines_cleanup(&t->lines);
}

/* list reads every page of the kind and hands the objects to the sink; on success |w->rv| is
 * the list's resourceVersion, to watch from. A failure part way leaves the sink's objects of
 * the previous list where list_end would have swept them: nothing is removed on a half list. */
static int list(struct worker *w, char *err, size_t err_len)
{
    struct ca_kube_client *c = w->c;
    const char *plural = ca_kube_kinds[w->kind].plural;
    char cont[1024] = "";
    char rv[CA_KUBE_MAX_RV + 1] = "";
    bool begun = false;
    int rc = WEFT_OK;
    do {
        char *esc = curl_easy_escape(w->curl, cont, 0);
        size_t n = strlen(c->api_url) + strlen(plural) + strlen(esc) + 128;
        char *url = weft_xmalloc(n);
        snprintf(url, n, "%s/apis/%s/%s?limit=%u%s%s", c->api_url, CA_KUBE_GROUP_VERSION, plural,
                 c->page_limit, cont[0] ? "&continue=" : "", esc);
        curl_free(esc);
        struct transfer t = {.w = w, .body_max = CA_KUBE_MAX_BODY};
        rc = request(w, &t, url, 120);
        free(url);
        struct ca_kube_list page = {.items = NULL};
        if (rc == WEFT_OK && t.status != 200) {
            status_error(&t);
            /* 410 on a continue token: it expired; the next list starts over */
            rc = WEFT_EPROTO;
        } else if (rc == WEFT_OK) {
            rc = ca_kube_list_parse(&page, t.body != NULL ? t.body : "", t.body_len, t.err,
                                    sizeof(t.err));
        }
        if (rc != WEFT_OK) {
            snprintf(err, err_len, "%s", t.err);
            transfer_cleanup(&t);
            break;
        }
        transfer_cleanup(&t);
        if (!begun) {
            c->sink.list_begin(c->sink.arg, w->kind);
            begun = true;
        }
        size_t i;
        json_t *item;
        json_array_foreach(page.items, i, item)
        {
            if (!json_is_object(item)) {
                continue;
            }
            /* items of a list may come without apiVersion and kind (the list has them): the
             * loader wants them */
            json_t *copy = json_copy(item);
            if (json_object_get(copy, "apiVersion") == NULL) {
                json_object_set_new(copy, "apiVersion", json_string(CA_KUBE_GROUP_VERSION));
            }
            if (json_object_get(copy, "kind") == NULL) {
                json_object_set_new(copy, "kind", json_string(ca_kube_kinds[w->kind].kind));
            }
            c->sink.object(c->sink.arg, w->kind, copy);
            json_decref(copy);
        }
        memcpy(rv, page.rv, sizeof(rv));
        memcpy(cont, page.cont, sizeof(cont));
        ca_kube_list_cleanup(&page);
    } while (cont[0] != '\0' && !stopped(c));
    if (rc == WEFT_OK && !stopped(c)) {
        c->sink.list_end(c->sink.arg, w->kind);
        memcpy(w->rv, rv, sizeof(rv));
    }
    return rc;
}

/* watch streams events from |w->rv| until the server ends the watch (WEFT_OK), the version
 * is too old (WEFT_ESTALE: relist) or something fails. */
static int watch(struct worker *w, size_t *out_events, char *err, size_t err_len)
{
    struct ca_kube_client *c = w->c;
    const char *plural = ca_kube_kinds[w->kind].plural;
    char *esc = curl_easy_escape(w->curl, w->rv, 0);
    size_t n = strlen(c->api_url) + strlen(plural) + strlen(esc) + 160;
    char *url = weft_xmalloc(n);
    snprintf(url, n,
             "%s/apis/%s/%s?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
             c->api_url, CA_KUBE_GROUP_VERSION, plural, esc, c->watch_timeout_s);
    curl_free(esc);
    struct transfer t = {.w = w, .watch = true, .body_max = ERROR_BODY_MAX};
    ca_kube_lines_init(&t.lines, CA_KUBE_MAX_LINE);
    /* the server ends the watch after timeoutSeconds; a silent one past that is cut */
    int rc = request(w, &t, url, (long)c->watch_timeout_s + 30);
    free(url);
    if (rc == WEFT_OK && t.status == 410) {
        status_error(&t);
        rc = WEFT_ESTALE;
    } else if (rc == WEFT_OK && t.status != 200) {
        status_error(&t);
        rc = WEFT_EPROTO;
    } else if (rc == WEFT_OK && t.lines.len > 0) {
        snprintf(t.err, sizeof(t.err), "the watch ended inside an event");
        rc = WEFT_EPROTO;
    }
    snprintf(err, err_len, "%s", t.err);
    *out_events = t.events;
    transfer_cleanup(&t);
    return rc;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    struct ca_kube_client *c = w->c;
    const char *kind = ca_kube_kinds[w->kind].kind;
    unsigned failures = 0;
    char err[CA_KUBE_MAX_ERR];
    while (!stopped(c)) {
        if (w->rv[0] == '\0') {
            if (list(w, err, sizeof(err)) != WEFT_OK) {
                if (!stopped(c)) {
                    note_failure(w, "list", err);
                    backoff(w, ++failures);
                }
                continue;
            }
            weft_log(WEFT_LOG_INFO, "kubernetes list done", 2, "kind", kind, "resource_version",
                     w->rv);
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        size_t events = 0;
        int rc = watch(w, &events, err, sizeof(err));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (stopped(c)) {
            break;
        }
        if (rc == WEFT_ESTALE) {
            /* §5.1: the resourceVersion was compacted away; what happened since is unknown */
            weft_log(WEFT_LOG_INFO, "kubernetes watch expired; relisting", 2, "kind", kind, "error",
                     err);
            w->rv[0] = '\0';
            failures = 0;
            continue;
        }
        if (rc == WEFT_OK && (events > 0 || t1.tv_sec - t0.tv_sec >= 1)) {
            failures = 0; /* timeoutSeconds reached: resume from the last version seen */
            continue;
        }
        /* a failure, or a watch the server ended at once with nothing in it: not a loop */
        note_failure(w, "watch", rc == WEFT_OK ? "the watch ended at once" : err);
        backoff(w, ++failures);
    }
    return NULL;
}

struct ca_kube_client *ca_kube_client_start(const struct ca_kube_config *cfg,
                                            const struct ca_kube_sink *sink, char *err,
                                            size_t err_len)
{
    const char *url = cfg->api_url;
    if (url == NULL || (strncmp(url, "https://", 8) != 0 && !is_loopback_http(url))) {
        snprintf(err, err_len,
                 "the Kubernetes API URL must be https:// (http:// only to a loopback address, "
                 "where a bearer token does not cross a network): %.200s",
                 url != NULL ? url : "(none)");
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    struct ca_kube_client *c = weft_xcalloc(1, sizeof(*c));
    size_t ulen = strlen(url);
    while (ulen > 0 && url[ulen - 1] == '/') {
        ulen--;
    }
    c->api_url = weft_xstrndup(url, ulen);
    c->token_file = cfg->token_file ? weft_xstrndup(cfg->token_file, strlen(cfg->token_file)) : 0;
    c->ca_file = cfg->ca_file ? weft_xstrndup(cfg->ca_file, strlen(cfg->ca_file)) : NULL;
    c->watch_timeout_s = cfg->watch_timeout_s ? cfg->watch_timeout_s : 300;
    c->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 500;
    c->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 30000;
    if (c->backoff_max_ms < c->backoff_min_ms) {
        c->backoff_max_ms = c->backoff_min_ms;
    }
    c->page_limit = cfg->page_limit ? cfg->page_limit : 250;
    c->sink = *sink;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < CA_KUBE_NUM_KINDS; i++) {
        struct worker *w = &c->workers[i];
        w->c = c;
        w->kind = i;
        w->curl = curl_easy_init();
        if (w->curl == NULL) {
            snprintf(err, err_len, "libcurl cannot make a handle");
            ca_kube_client_stop(c);
            return NULL;
        }
        if (pthread_create(&w->thread, NULL, run, w) != 0) {
            snprintf(err, err_len, "cannot start a watcher thread: %s", strerror(errno));
            ca_kube_client_stop(c);
            return NULL;
        }
        w->started = true;
    }
    return c;
}

void ca_kube_client_stop(struct ca_kube_client *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stop, true);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < CA_KUBE_NUM_KINDS; i++) {
        struct worker *w = &c->workers[i];
        if (w->started) {
            pthread_join(w->thread, NULL);
        }
        if (w->curl != NULL) {
            curl_easy_cleanup(w->curl);
        }
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->api_url);
    free(c->token_file);
    free(c->ca_file);
    free(c);
}

uint64_t ca_kube_client_failures(const struct ca_kube_client *c)
{
    return atomic_load(&c->failures);
}
