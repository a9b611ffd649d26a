/* k8s/webhook_server.c: weft-injector's HTTPS server (webhook.h).
 *
 * One accept thread polls the listening socket and an eventfd that says "stop"; each accepted
 * connection gets a thread of its own, with a non-blocking socket and BoringSSL on it, and every
 * wait is a poll(2) bounded by a deadline: the handshake and each request (first byte to last
 * response byte) by |request_ms|, the wait for the next request on a keep-alive connection by
 * |idle_ms|. A webhook sees a few requests a second at most, so threads are the simple choice.
 * lib/httpadmin serves plaintext with one request per connection and no request body, so it
 * cannot carry this. */
#include "k8s/webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <limits.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/netaddr.h"

#define MAX_CONNS_LIMIT 4096
#define READ_CHUNK 16384
#define DRAIN_MS 1000 /* after an error response, how long the client's rest is read */

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct req {
    http_parser parser;
    char url[K8S_WEBHOOK_MAX_URL + 1];
    size_t url_len;
    char field[32]; /* the header name being read; longer names are no header we want */
    size_t field_len;
    bool field_long, in_value, is_ctype;
    char ctype[128];
    size_t ctype_len;
    bool head_done, complete;
    int status; /* set when the request is refused before it is complete: 413, 414 */
    char *body; /* weft_xmalloc'd, at most K8S_WEBHOOK_MAX_BODY bytes */
    size_t body_len, body_cap;
    atomic_size_t *budget; /* the server's bytes of request bodies held, all connections */
    size_t budget_max;
};

struct conn {
    struct k8s_webhook_server *s;
    int fd;
    SSL *ssl;
    pthread_t thread;
    bool done; /* the thread has finished; the accept thread joins it */
    char peer[WEFT_ADDR_MAX + 16];
    uint8_t in[READ_CHUNK];
    size_t in_off, in_len; /* bytes read and not yet parsed (the next pipelined request) */
    struct conn *next;
};

struct k8s_webhook_server {
    char *listen, *tls_cert, *tls_key, *image;
    struct k8s_inject_opts inject;
    int request_ms, idle_ms, grace_ms, reload_check_ms;
    size_t max_conns, max_requests;
    size_t max_body_total;
    atomic_size_t body_total; /* bytes of request bodies buffered, every connection together */

    int lfd, stop_fd, port;
    pthread_t accept_thread;
    atomic_bool stopping;

    /* One review at a time: the JSON tree of a body is what a review costs in memory
     * (K8S_WEBHOOK_MAX_JSON_TOKENS), so that cost is paid once, not once per connection. A
     * review takes a fraction of a millisecond and reads no socket. */
    pthread_mutex_t review_mu;
    pthread_mutex_t mu; /* guards ctx, conns, num_conns */
    pthread_cond_t cv;  /* a connection finished */
    SSL_CTX *ctx;
    struct conn *conns;
    size_t num_conns;

    struct file_id cert_id, key_id; /* of the pair last tried, loaded or not */
    int64_t last_check_ms;

    struct weft_metrics *metrics;
    struct weft_counter *reviews[K8S_WEBHOOK_BAD_REQUEST + 1];
    struct weft_histogram *latency;
    struct weft_gauge *conns_gauge;
    struct weft_counter *reload_ok, *reload_err;
};

static int64_t now_ms(void);
static double now_s(void);
static void *accept_main(void *arg);
static void *conn_main(void *arg);
static SSL_CTX *ctx_load(const char *cert, const char *key, char *err, size_t err_len);
static bool file_id_get(const char *path, struct file_id *out);
static bool file_id_eq(const struct file_id *a, const struct file_id *b);
static void maybe_reload(struct k8s_webhook_server *s);
static void reap(struct k8s_webhook_server *s, bool all);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- certificate and key --------------------------------------------------------------- */

static SSL_CTX *ctx_load(const char *cert, const char *key, char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = "cannot create a TLS context";
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        goto fail;
    }
    what = "cannot load the certificate chain";
    if (!SSL_CTX_use_certificate_chain_file(ctx, cert)) {
        goto fail;
    }
    what = "cannot load the private key";
    if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
        goto fail;
    }
    what = "the private key does not match the certificate";
    if (!SSL_CTX_check_private_key(ctx)) {
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:;
    char ossl[256];
    ERR_error_string_n(ERR_get_error(), ossl, sizeof(ossl));
    ERR_clear_error();
    snprintf(err, err_len, "weft-injector: %s (--tls-cert %s, --tls-key %s): %s", what, cert, key,
             ossl);
    SSL_CTX_free(ctx);
    return NULL;
}

static bool file_id_get(const char *path, struct file_id *out)
{
    struct stat st;
    memset(out, 0, sizeof(*out));
    if (stat(path, &st) != 0) {
        return false;
    }
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime = st.st_mtim;
    return true;
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* maybe_reload runs on the accept thread. cert-manager (through the kubelet's atomic writer)
 * swaps both files at once; a writer that replaces them one by one may be caught halfway, which
 * fails to load and is retried when the second file changes. */
static void maybe_reload(struct k8s_webhook_server *s)
{
    int64_t now = now_ms();
    if (now - s->last_check_ms < s->reload_check_ms) {
        return;
    }
    s->last_check_ms = now;
    struct file_id cert_id, key_id;
    bool ok = file_id_get(s->tls_cert, &cert_id) & file_id_get(s->tls_key, &key_id);
    if (file_id_eq(&cert_id, &s->cert_id) && file_id_eq(&key_id, &s->key_id)) {
        return;
    }
    s->cert_id = cert_id;
    s->key_id = key_id;
    char err[512];
    SSL_CTX *ctx = NULL;
    if (!ok) {
        snprintf(err, sizeof(err), "weft-injector: cannot stat --tls-cert %s or --tls-key %s",
                 s->tls_cert, s->tls_key);
    } else {
        ctx = ctx_load(s->tls_cert, s->tls_key, err, sizeof(err));
    }
    if (ctx == NULL) {
        weft_counter_add(s->reload_err, 1);
        weft_log(WEFT_LOG_ERROR, "tls: new certificate or key not loaded; serving the old pair", 1,
                 "err", err);
        return;
    }
    pthread_mutex_lock(&s->mu);
    SSL_CTX *old = s->ctx;
    s->ctx = ctx;
    pthread_mutex_unlock(&s->mu);
    SSL_CTX_free(old); /* connections hold their own reference */
    weft_counter_add(s->reload_ok, 1);
    weft_log(WEFT_LOG_INFO, "tls: certificate reloaded", 2, "cert", s->tls_cert, "key", s->tls_key);
}

/* --- start and stop -------------------------------------------------------------------- */

static char *xstrdup(const char *s) { return s != NULL ? weft_xstrndup(s, strlen(s)) : NULL; }

static void server_free(struct k8s_webhook_server *s)
{
    if (s->lfd >= 0) {
        close(s->lfd);
    }
    if (s->stop_fd >= 0) {
        close(s->stop_fd);
    }
    SSL_CTX_free(s->ctx);
    weft_metrics_free(s->metrics);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->review_mu);
    pthread_cond_destroy(&s->cv);
    free(s->listen);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->image);
    free(s);
}

int k8s_webhook_server_start(struct k8s_webhook_server **out, const struct k8s_webhook_config *cfg,
                             char *err, size_t err_len)
{
    *out = NULL;
    if (cfg->listen == NULL || cfg->tls_cert == NULL || cfg->tls_key == NULL) {
        snprintf(err, err_len, "weft-injector: --listen, --tls-cert and --tls-key are required");
        return WEFT_EINVAL;
    }
    if (cfg->request_ms < 0 || cfg->idle_ms < 0 || cfg->grace_ms < 0 || cfg->reload_check_ms < 0 ||
        cfg->max_conns > MAX_CONNS_LIMIT) {
        snprintf(err, err_len, "weft-injector: negative timeout, or over %d connections at once",
                 MAX_CONNS_LIMIT);
        return WEFT_EINVAL;
    }
    union weft_sockaddr addr;
    socklen_t addr_len;
    char why[256];
    if (weft_sockaddr_parse(cfg->listen, false, &addr, &addr_len, why, sizeof(why)) != WEFT_OK) {
        snprintf(err, err_len, "weft-injector: --listen %s: %s", cfg->listen, why);
        return WEFT_EINVAL;
    }
    struct k8s_webhook_server *s = weft_xcalloc(1, sizeof(*s));
    s->lfd = -1;
    s->stop_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->review_mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->listen = xstrdup(cfg->listen);
    s->tls_cert = xstrdup(cfg->tls_cert);
    s->tls_key = xstrdup(cfg->tls_key);
    s->image = xstrdup(cfg->inject.image);
    s->inject = cfg->inject;
    s->inject.image = s->image;
    s->inject.namespace = NULL;
    s->request_ms = cfg->request_ms > 0 ? cfg->request_ms : K8S_WEBHOOK_DEFAULT_REQUEST_MS;
    s->idle_ms = cfg->idle_ms > 0 ? cfg->idle_ms : K8S_WEBHOOK_DEFAULT_IDLE_MS;
    s->grace_ms = cfg->grace_ms > 0 ? cfg->grace_ms : K8S_WEBHOOK_DEFAULT_GRACE_MS;
    s->reload_check_ms =
        cfg->reload_check_ms > 0 ? cfg->reload_check_ms : K8S_WEBHOOK_RELOAD_CHECK_MS;
    s->max_conns = cfg->max_conns > 0 ? cfg->max_conns : K8S_WEBHOOK_DEFAULT_MAX_CONNS;
    s->max_requests = cfg->max_requests > 0 ? cfg->max_requests : K8S_WEBHOOK_DEFAULT_MAX_REQUESTS;
    s->max_body_total =
        cfg->max_body_total > 0 ? cfg->max_body_total : K8S_WEBHOOK_DEFAULT_MAX_BODY_TOTAL;

    s->metrics = weft_metrics_new();
    for (int r = 0; r <= K8S_WEBHOOK_BAD_REQUEST; r++) {
        struct weft_label l = {"result", k8s_webhook_result_name(r)};
        s->reviews[r] = weft_metrics_counter(s->metrics, "weft_injector_reviews_total",
                                             "AdmissionReviews answered, by result.", &l, 1);
    }
    static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5};
    s->latency =
        weft_metrics_histogram(s->metrics, "weft_injector_review_duration_seconds",
                               "Time from a request's first byte to its answer being decided.",
                               NULL, 0, bounds, nitems(bounds));
    s->conns_gauge = weft_metrics_gauge(s->metrics, "weft_injector_connections",
                                        "HTTPS connections open.", NULL, 0);
    struct weft_label ok = {"result", "ok"}, bad = {"result", "error"};
    s->reload_ok = weft_metrics_counter(s->metrics, "weft_injector_tls_reloads_total",
                                        "Certificate and key reloads, by result.", &ok, 1);
    s->reload_err = weft_metrics_counter(s->metrics, "weft_injector_tls_reloads_total",
                                         "Certificate and key reloads, by result.", &bad, 1);

    int rc = WEFT_ECRYPTO;
    (void)file_id_get(s->tls_cert, &s->cert_id);
    (void)file_id_get(s->tls_key, &s->key_id);
    s->last_check_ms = now_ms();
    if ((s->ctx = ctx_load(s->tls_cert, s->tls_key, err, err_len)) == NULL) {
        goto fail;
    }
    rc = WEFT_EIO;
    int one = 1;
    if ((s->lfd = socket(addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
        setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(s->lfd, &addr.sa, addr_len) != 0 || listen(s->lfd, 128) != 0) {
        snprintf(err, err_len, "weft-injector: cannot listen on %s: %s", cfg->listen,
                 strerror(errno));
        goto fail;
    }
    union weft_sockaddr bound;
    socklen_t bound_len = sizeof(bound);
    if (getsockname(s->lfd, &bound.sa, &bound_len) != 0) {
        snprintf(err, err_len, "weft-injector: getsockname: %s", strerror(errno));
        goto fail;
    }
    s->port = ntohs(bound.sa.sa_family == AF_INET6 ? bound.in6.sin6_port : bound.in4.sin_port);
    if ((s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        snprintf(err, err_len, "weft-injector: eventfd: %s", strerror(errno));
        goto fail;
    }
    /* The server's threads take no signals: the process's handler (SIGTERM) runs elsewhere,
     * and a write to a closed socket fails with EPIPE instead of killing the process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&s->accept_thread, NULL, accept_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        snprintf(err, err_len, "weft-injector: cannot start the accept thread: %s", strerror(prc));
        goto fail;
    }
    *out = s;
    return WEFT_OK;
fail:
    server_free(s);
    return rc;
}

int k8s_webhook_port(const struct k8s_webhook_server *s) { return s->port; }

struct weft_metrics *k8s_webhook_metrics(struct k8s_webhook_server *s) { return s->metrics; }

/* reap joins finished connection threads (|all|: every thread, waiting for each). */
static void reap(struct k8s_webhook_server *s, bool all)
{
    pthread_mutex_lock(&s->mu);
    struct conn **pp = &s->conns;
    while (*pp != NULL) {
        struct conn *c = *pp;
        if (!c->done && !all) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        pthread_mutex_unlock(&s->mu);
        pthread_join(c->thread, NULL);
        free(c);
        pthread_mutex_lock(&s->mu);
        s->num_conns--;
        weft_gauge_set(s->conns_gauge, (double)s->num_conns);
    }
    pthread_mutex_unlock(&s->mu);
}

void k8s_webhook_server_stop(struct k8s_webhook_server *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stopping, true);
    uint64_t one = 1;
    if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one)) {
        /* an eventfd write fails only on overflow, which one write cannot reach */
    }
    pthread_join(s->accept_thread, NULL);
    /* Idle connections see stop_fd and close; busy ones finish their request. */
    int64_t deadline = now_ms() + s->grace_ms;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        bool busy = false;
        for (struct conn *c = s->conns; c != NULL; c = c->next) {
            busy |= !c->done;
        }
        int64_t left = deadline - now_ms();
        if (!busy || left <= 0) {
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = left < 100 ? left : 100;
        ts.tv_nsec += wait * 1000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    for (struct conn *c = s->conns; c != NULL; c = c->next) {
        if (!c->done) {
            weft_log(WEFT_LOG_WARN, "stop: grace period over, closing a connection", 1, "peer",
                     c->peer);
            shutdown(c->fd, SHUT_RDWR); /* its thread's next poll returns at once */
        }
    }
    pthread_mutex_unlock(&s->mu);
    reap(s, true);
    server_free(s);
}

static void *accept_main(void *arg)
{
    struct k8s_webhook_server *s = arg;
    for (;;) {
        reap(s, false);
        maybe_reload(s);
        pthread_mutex_lock(&s->mu);
        bool room = s->num_conns < s->max_conns;
        pthread_mutex_unlock(&s->mu);
        struct pollfd pfd[2] = {{.fd = s->stop_fd, .events = POLLIN},
                                {.fd = room ? s->lfd : -1, .events = POLLIN}};
        /* Without room, wake up now and then to reap finished connections. */
        int n = poll(pfd, 2, room ? s->reload_check_ms : 50);
        if (n < 0 && errno != EINTR) {
            weft_log(WEFT_LOG_ERROR, "accept: poll failed", 1, "err", strerror(errno));
            return NULL;
        }
        if (atomic_load(&s->stopping) || (pfd[0].revents & POLLIN)) {
            return NULL;
        }
        if (!(pfd[1].revents & POLLIN)) {
            continue;
        }
        union weft_sockaddr peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(s->lfd, &peer.sa, &peer_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                weft_log(WEFT_LOG_WARN, "accept failed", 1, "err", strerror(errno));
                /* EMFILE and friends: do not spin on a socket that stays readable */
                struct timespec ts = {0, 50 * 1000000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        struct conn *c = weft_xcalloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        char host[INET6_ADDRSTRLEN] = "?";
        if (peer.sa.sa_family == AF_INET) {
            inet_ntop(AF_INET, &peer.in4.sin_addr, host, sizeof(host));
            snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(peer.in4.sin_port));
        } else if (peer.sa.sa_family == AF_INET6) {
            inet_ntop(AF_INET6, &peer.in6.sin6_addr, host, sizeof(host));
            snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(peer.in6.sin6_port));
        }
        pthread_mutex_lock(&s->mu);
        c->ssl = SSL_new(s->ctx);
        pthread_mutex_unlock(&s->mu);
        if (c->ssl == NULL || !SSL_set_fd(c->ssl, fd)) {
            weft_log(WEFT_LOG_ERROR, "accept: cannot create a TLS connection", 1, "peer", c->peer);
            SSL_free(c->ssl);
            close(fd);
            free(c);
            continue;
        }
        SSL_set_accept_state(c->ssl);
        pthread_mutex_lock(&s->mu);
        int prc = pthread_create(&c->thread, NULL, conn_main, c);
        if (prc == 0) {
            c->next = s->conns;
            s->conns = c;
            s->num_conns++;
            weft_gauge_set(s->conns_gauge, (double)s->num_conns);
        }
        pthread_mutex_unlock(&s->mu);
        if (prc != 0) {
            weft_log(WEFT_LOG_ERROR, "accept: cannot start a connection thread", 2, "peer", c->peer,
                     "err", strerror(prc));
            SSL_free(c->ssl);
            close(fd);
            free(c);
        }
    }
}

/* --- one connection -------------------------------------------------------------------- */

enum wait_result { WAIT_READY, WAIT_TIMEOUT, WAIT_STOP, WAIT_ERROR };

/* wait_io waits until |c|'s socket is ready for |events| or |deadline| passes; |stop_aware|
 * also returns when the server stops (an idle connection closes then). */
static enum wait_result wait_io(struct conn *c, short events, int64_t deadline, bool stop_aware)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return WAIT_TIMEOUT;
        }
        struct pollfd pfd[2] = {{.fd = c->fd, .events = events},
                                {.fd = stop_aware ? c->s->stop_fd : -1, .events = POLLIN}};
        int n = poll(pfd, 2, (int)(left > 1000 ? 1000 : left));
        if (n < 0 && errno != EINTR) {
            return WAIT_ERROR;
        }
        if (pfd[1].revents & POLLIN) {
            return WAIT_STOP;
        }
        if (pfd[0].revents != 0) {
            return WAIT_READY;
        }
    }
}

/* tls_io runs the SSL call |op| until it completes, waiting as BoringSSL asks. Returns the
 * call's result (> 0 done, 0 or < 0 the connection failed or closed). */
enum tls_op { OP_HANDSHAKE, OP_READ, OP_WRITE };

static int tls_io(struct conn *c, enum tls_op op, void *buf, size_t len, int64_t deadline)
{
    for (;;) {
        int n;
        switch (op) {
        case OP_HANDSHAKE:
            n = SSL_do_handshake(c->ssl);
            break;
        case OP_READ:
            n = SSL_read(c->ssl, buf, (int)len);
            break;
        default:
            n = SSL_write(c->ssl, buf, (int)len);
            break;
        }
        if (n > 0) {
            return n;
        }
        int e = SSL_get_error(c->ssl, n);
        short ev;
        if (e == SSL_ERROR_WANT_READ) {
            ev = POLLIN;
        } else if (e == SSL_ERROR_WANT_WRITE) {
            ev = POLLOUT;
        } else {
            ERR_clear_error();
            return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
        if (wait_io(c, ev, deadline, false) != WAIT_READY) {
            return -1;
        }
    }
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct req *r = p->data;
    if (len > K8S_WEBHOOK_MAX_URL - r->url_len) {
        r->status = 414;
        return 1;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct req *r = p->data;
    if (r->in_value) {
        r->in_value = false;
        r->field_len = 0;
        r->field_long = false;
    }
    if (len > sizeof(r->field) - 1 - r->field_len) {
        r->field_long = true;
        return 0;
    }
    memcpy(r->field + r->field_len, at, len);
    r->field_len += len;
    r->field[r->field_len] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct req *r = p->data;
    if (!r->in_value) {
        r->in_value = true;
        r->is_ctype = !r->field_long && strcasecmp(r->field, "content-type") == 0;
        if (r->is_ctype) {
            r->ctype_len = 0; /* the last Content-Type wins */
        }
    }
    if (r->is_ctype) {
        size_t n =
            len < sizeof(r->ctype) - 1 - r->ctype_len ? len : sizeof(r->ctype) - 1 - r->ctype_len;
        memcpy(r->ctype + r->ctype_len, at, n);
        r->ctype_len += n;
        r->ctype[r->ctype_len] = '\0';
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct req *r = p->data;
    r->head_done = true;
    /* A Content-Length over the limit is refused before a byte of the body is read. */
    if ((p->flags & F_CHUNKED) == 0 && p->content_length != ULLONG_MAX &&
        p->content_length > K8S_WEBHOOK_MAX_BODY) {
        r->status = 413;
        return 1;
    }
    http_parser_pause(p, 1); /* so that execute returns exactly the head's length */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct req *r = p->data;
    if (len > K8S_WEBHOOK_MAX_BODY - r->body_len) {
        r->status = 413;
        return 1;
    }
    if (r->body_len + len > r->body_cap) {
        size_t cap = r->body_cap > 0 ? r->body_cap : 16384;
        while (cap < r->body_len + len) {
            cap *= 2;
        }
        cap = cap < K8S_WEBHOOK_MAX_BODY ? cap : K8S_WEBHOOK_MAX_BODY;
        /* Many large bodies at once could exhaust the pod's memory limit: they share a budget,
         * and a request that would go over it is answered 503. The pod's creation then fails
         * and its controller tries again, which beats the injector killed for memory. */
        size_t grow = cap - r->body_cap;
        if (atomic_fetch_add(r->budget, grow) + grow > r->budget_max) {
            atomic_fetch_sub(r->budget, grow);
            r->status = 503;
            return 1;
        }
        r->body = weft_xrealloc(r->body, cap);
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct req *r = p->data;
    r->complete = true;
    http_parser_pause(p, 1); /* bytes after it belong to the next request */
    return 0;
}

/* req_cleanup frees the body and gives its bytes back to the budget. */
static void req_cleanup(struct req *r)
{
    if (r->body_cap > 0) {
        atomic_fetch_sub(r->budget, r->body_cap);
    }
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* read_request reads one request into |r|. Returns 0 when it is complete, an HTTP status to
 * answer with before closing (400, 408, 413, 414, 431, 503), or -1 when the connection is
 * gone. */
static int read_request(struct conn *c, struct req *r, int64_t deadline)
{
    size_t head_bytes = 0;
    for (;;) {
        if (c->in_off == c->in_len) {
            c->in_off = c->in_len = 0;
            int n = tls_io(c, OP_READ, c->in, sizeof(c->in), deadline);
            if (n <= 0) {
                bool started = head_bytes > 0 || r->url_len > 0;
                return started && now_ms() >= deadline ? 408 : -1;
            }
            c->in_len = (size_t)n;
        }
        const char *data = (const char *)c->in + c->in_off;
        size_t len = c->in_len - c->in_off;
        bool in_head = !r->head_done;
        size_t n = http_parser_execute(&r->parser, &settings, data, len);
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (in_head) {
            /* on_headers_complete pauses the parser, which then returns the head's length less
             * its final LF (consumed when it resumes). */
            head_bytes += n + (r->head_done ? 1 : 0);
        }
        if (head_bytes > K8S_WEBHOOK_MAX_HEAD) {
            return 431;
        }
        c->in_off += n;
        if (r->status != 0) {
            return r->status;
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(&r->parser, 0);
            if (r->complete) {
                return 0;
            }
            continue;
        }
        if (e != HPE_OK) {
            /* http_parser's own head limit (HTTP_MAX_HEADER_SIZE) is above ours */
            return 400;
        }
        if (n < len) {
            return 400;
        }
    }
}

struct resp {
    int status;
    const char *ctype;
    const char *body;
    size_t body_len;
    bool close;
};

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static bool send_response(struct conn *c, const struct resp *rs, int64_t deadline)
{
    char head[512];
    int hl = snprintf(
        head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
        rs->status, status_text(rs->status), rs->ctype, rs->body_len,
        rs->status == 405 ? "Allow: GET, POST\r\n" : "", rs->close ? "Connection: close\r\n" : "");
    size_t total = (size_t)hl + rs->body_len;
    char *buf = weft_xmalloc(total);
    memcpy(buf, head, (size_t)hl);
    memcpy(buf + hl, rs->body, rs->body_len);
    size_t off = 0;
    bool ok = true;
    while (off < total && ok) {
        size_t chunk = total - off < INT32_MAX ? total - off : INT32_MAX;
        int n = tls_io(c, OP_WRITE, buf + off, chunk, deadline);
        ok = n > 0;
        off += n > 0 ? (size_t)n : 0;
    }
    free(buf);
    return ok;
}

static void text_resp(struct resp *rs, int status, const char *body)
{
    rs->status = status;
    rs->ctype = "text/plain; charset=utf-8";
    rs->body = body;
    rs->body_len = strlen(body);
}

/* is_json: "application/json", optionally with parameters ("; charset=utf-8"). */
static bool is_json(const char *ctype)
{
    size_t n = strlen("application/json");
    if (strncasecmp(ctype, "application/json", n) != 0) {
        return false;
    }
    return ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ';
}

static void log_review(struct conn *c, const struct k8s_webhook_review *rv, double ms)
{
    char ms_s[32];
    snprintf(ms_s, sizeof(ms_s), "%.2f", ms);
    const struct weft_kv kv[] = {
        {"uid", rv->uid},
        {"namespace", rv->namespace},
        {"kind", rv->kind},
        {"name", rv->name},
        {"operation", rv->operation},
        {"result", k8s_webhook_result_name(rv->result)},
        {"reason", rv->reason},
        {"ms", ms_s},
        {"peer", c->peer},
    };
    enum weft_log_level lvl =
        rv->result == K8S_WEBHOOK_INJECTED || rv->result == K8S_WEBHOOK_SKIPPED ? WEFT_LOG_INFO
                                                                                : WEFT_LOG_WARN;
    weft_log_kv(lvl, "review", kv, nitems(kv));
}

/* serve answers one complete request. |rv| holds the review's answer when there is one;
 * |metrics_text| holds /metrics' text. Both are freed by the caller. */
static void serve(struct conn *c, struct req *r, struct resp *rs, struct k8s_webhook_review *rv,
                  char **metrics_text, double started)
{
    struct k8s_webhook_server *s = c->s;
    size_t path_len = strcspn(r->url, "?#");
    bool get = r->parser.method == HTTP_GET;
    bool post = r->parser.method == HTTP_POST;
#define PATH_IS(p) (path_len == strlen(p) && strncmp(r->url, (p), path_len) == 0)
    if (PATH_IS("/healthz")) {
        get ? text_resp(rs, 200, "ok\n") : text_resp(rs, 405, "method not allowed\n");
    } else if (PATH_IS("/ready")) {
        if (!get) {
            text_resp(rs, 405, "method not allowed\n");
        } else if (atomic_load(&s->stopping)) {
            text_resp(rs, 503, "stopping\n");
        } else {
            text_resp(rs, 200, "ready\n");
        }
    } else if (PATH_IS("/metrics")) {
        size_t len;
        if (!get) {
            text_resp(rs, 405, "method not allowed\n");
        } else if (weft_metrics_write(s->metrics, metrics_text, &len) != WEFT_OK) {
            text_resp(rs, 500, "cannot render metrics\n");
        } else {
            rs->status = 200;
            rs->ctype = "text/plain; version=0.0.4; charset=utf-8";
            rs->body = *metrics_text;
            rs->body_len = len;
        }
    } else if (PATH_IS("/inject")) {
        if (!post) {
            text_resp(rs, 405, "method not allowed: POST an AdmissionReview\n");
        } else if (!is_json(r->ctype)) {
            weft_counter_add(s->reviews[K8S_WEBHOOK_BAD_REQUEST], 1);
            weft_log(WEFT_LOG_WARN, "review: Content-Type is not application/json", 2, "peer",
                     c->peer, "content_type", r->ctype);
            text_resp(rs, 415, "Content-Type must be application/json\n");
        } else {
            pthread_mutex_lock(&s->review_mu);
            k8s_webhook_review(rv, r->body != NULL ? r->body : "", r->body_len, &s->inject);
            pthread_mutex_unlock(&s->review_mu);
            double secs = now_s() - started;
            weft_counter_add(s->reviews[rv->result], 1);
            weft_histogram_observe(s->latency, secs);
            log_review(c, rv, secs * 1000.0);
            if (rv->result == K8S_WEBHOOK_BAD_REQUEST) {
                text_resp(rs, 400, rv->reason);
            } else {
                rs->status = 200;
                rs->ctype = "application/json";
                rs->body = rv->response;
                rs->body_len = rv->response_len;
            }
        }
    } else {
        text_resp(rs, 404, "not found\n");
    }
#undef PATH_IS
}

/* drain reads and drops what the client still sends for a short while after an error
 * response, so that it reads the response instead of a reset. */
static void drain(struct conn *c)
{
    int64_t deadline = now_ms() + DRAIN_MS;
    size_t total = 0;
    while (total < 2 * (size_t)K8S_WEBHOOK_MAX_BODY) {
        int n = tls_io(c, OP_READ, c->in, sizeof(c->in), deadline);
        if (n <= 0) {
            return;
        }
        total += (size_t)n;
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct k8s_webhook_server *s = c->s;
    const char *why = "client closed";
    if (tls_io(c, OP_HANDSHAKE, NULL, 0, now_ms() + s->request_ms) <= 0) {
        why = "TLS handshake failed or timed out";
        weft_log(WEFT_LOG_DEBUG, "connection closed", 2, "peer", c->peer, "reason", why);
        goto out;
    }
    for (size_t num = 0; num < s->max_requests; num++) {
        if (c->in_off == c->in_len && SSL_pending(c->ssl) == 0) {
            enum wait_result w = wait_io(c, POLLIN, now_ms() + s->idle_ms, true);
            if (w != WAIT_READY) {
                why = w == WAIT_STOP ? "server stopping" : "idle";
                break;
            }
        }
        int64_t started = now_ms();
        double started_s = now_s();
        struct req r;
        memset(&r, 0, sizeof(r));
        http_parser_init(&r.parser, HTTP_REQUEST);
        r.parser.data = &r;
        r.budget = &s->body_total;
        r.budget_max = s->max_body_total;
        int st = read_request(c, &r, started + s->request_ms);
        struct resp rs = {0};
        struct k8s_webhook_review rv;
        k8s_webhook_review_init(&rv);
        char *metrics_text = NULL;
        bool sent;
        if (st < 0) {
            req_cleanup(&r);
            break;
        }
        if (st > 0) {
            if (st == 413 && r.url_len >= strlen("/inject") &&
                strncmp(r.url, "/inject", strlen("/inject")) == 0) {
                weft_counter_add(s->reviews[K8S_WEBHOOK_BAD_REQUEST], 1);
            }
            char msg[128];
            snprintf(msg, sizeof(msg), "%s\n", status_text(st));
            text_resp(&rs, st, msg);
            rs.close = true;
            weft_log(WEFT_LOG_WARN, "request refused", 2, "peer", c->peer, "status",
                     status_text(st));
            sent = send_response(c, &rs, started + s->request_ms);
            req_cleanup(&r);
            if (sent && st != 408) {
                drain(c);
            }
            why = "request refused";
            break;
        }
        serve(c, &r, &rs, &rv, &metrics_text, started_s);
        rs.close = !http_should_keep_alive(&r.parser) || num + 1 >= s->max_requests ||
                   atomic_load(&s->stopping) || rs.status == 400;
        sent = send_response(c, &rs, started + s->request_ms);
        free(metrics_text);
        k8s_webhook_review_cleanup(&rv);
        req_cleanup(&r);
        if (!sent) {
            why = "write failed or timed out";
            break;
        }
        if (rs.close) {
            why = "done";
            break;
        }
    }
    /* A close_notify, best effort and bounded: the client may be gone already. */
    (void)SSL_shutdown(c->ssl);
    weft_log(WEFT_LOG_DEBUG, "connection closed", 2, "peer", c->peer, "reason", why);
out:
    SSL_free(c->ssl);
    c->ssl = NULL;
    pthread_mutex_lock(&s->mu);
    close(c->fd);
    c->fd = -1;
    c->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}
