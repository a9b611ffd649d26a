/* A fake Kubernetes API server for weft's policy resources; see fake_kube.h. */
#include "test/testlib/fake_kube.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define MAX_ITEMS 16
#define MAX_SCRIPT 64
#define MAX_CONNS 256

struct fake_kube {
    SSL_CTX *tls; /* NULL: plain HTTP */
    int lfd;
    uint16_t port;
    pthread_t acceptor;
    atomic_bool stop;
    pthread_mutex_t mu; /* guards everything below */
    pthread_t conns[MAX_CONNS];
    size_t num_conns;
    char *items[MAX_ITEMS];
    size_t num_items;
    char list_rv[32];
    char *script[MAX_SCRIPT];
    size_t num_script, next_script;
    bool expire_next_watch;
    struct fake_kube_seen seen;
};

struct conn {
    struct fake_kube *k;
    int fd;
    SSL *ssl; /* NULL: plain */
};

static ssize_t conn_send(struct conn *c, const char *p, size_t len)
{
    if (c->ssl != NULL) {
        int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : -1;
    }
    return send(c->fd, p, len, MSG_NOSIGNAL);
}

static ssize_t conn_recv(struct conn *c, char *p, size_t len)
{
    if (c->ssl != NULL) {
        int n = SSL_read(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : -1;
    }
    return recv(c->fd, p, len, 0);
}

static void send_all(struct conn *c, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = conn_send(c, p, len);
        if (n <= 0) {
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void send_chunk(struct conn *fd, const char *data, size_t len)
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
    while (q != NULL && *q != '\0') {
        if (strncmp(q, key, klen) == 0 && q[klen] == '=') {
            const char *v = q + klen + 1;
            size_t n = strcspn(v, "&");
            snprintf(out, out_len, "%.*s", (int)(n < out_len ? n : out_len - 1), v);
            return;
        }
        q = strchr(q, '&');
        q = q != NULL ? q + 1 : NULL;
    }
}

/* client_gone reports whether the client closed its end (waiting up to 50 ms): a client
 * sends nothing after its request but a close. */
static bool client_gone(struct conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 50) == 1) {
        char b[64];
        return c->ssl != NULL ? conn_recv(c, b, sizeof(b)) <= 0
                              : recv(c->fd, b, sizeof(b), MSG_DONTWAIT) <= 0;
    }
    return false;
}

static void serve_list(struct fake_kube *k, struct conn *fd, bool authz, const char *query)
{
    char limit_s[16], cont[64];
    query_get(query, "limit", limit_s, sizeof(limit_s));
    query_get(query, "continue", cont, sizeof(cont));
    size_t limit = (size_t)atoi(limit_s), off = 0;
    char *body = NULL;
    size_t body_len = 0;
    FILE *f = open_memstream(&body, &body_len);
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&k->mu);
    if (authz) {
        k->seen.list_requests++;
        if (strncmp(cont, "off-", 4) == 0) {
            k->seen.continued_lists++;
            off = (size_t)atoi(cont + 4);
        }
    }
    size_t n = authz ? k->num_items : 0;
    off = off < n ? off : n;
    size_t end = limit > 0 && off + limit < n ? off + limit : n;
    fprintf(f, "{\"apiVersion\":\"security.weft.dev/v1alpha1\",\"kind\":\"List\",\"metadata\":{");
    fprintf(f, "\"resourceVersion\":\"%s\"", k->list_rv);
    if (end < n) {
        fprintf(f, ",\"continue\":\"off-%zu\"", end);
    }
    fprintf(f, "},\"items\":[");
    for (size_t i = off; i < end; i++) {
        fprintf(f, "%s%s", i > off ? "," : "", k->items[i]);
    }
    fprintf(f, "]}");
    pthread_mutex_unlock(&k->mu);
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

static void serve_watch(struct fake_kube *k, struct conn *fd, bool authz, const char *query)
{
    if (authz) {
        pthread_mutex_lock(&k->mu);
        k->seen.watch_requests++;
        query_get(query, "resourceVersion", k->seen.last_watch_rv, sizeof(k->seen.last_watch_rv));
        bool gone = k->expire_next_watch;
        k->expire_next_watch = false;
        pthread_mutex_unlock(&k->mu);
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
    while (!atomic_load(&k->stop) && !client_gone(fd)) {
        if (!authz) {
            continue; /* the other kinds: a watch with nothing to say */
        }
        pthread_mutex_lock(&k->mu);
        char *line = k->next_script < k->num_script ? k->script[k->next_script++] : NULL;
        pthread_mutex_unlock(&k->mu);
        if (line == NULL) {
            continue;
        }
        if (strcmp(line, FAKE_KUBE_DROP) == 0) {
            send_chunk(fd, "{\"type\":\"ADD", 12); /* half an event, then the connection goes */
            return;
        }
        if (strcmp(line, FAKE_KUBE_END) == 0) {
            send_all(fd, "0\r\n\r\n", 5);
            return;
        }
        size_t n = strlen(line);
        /* in two chunks, the newline in the second: an event may straddle them */
        send_chunk(fd, line, n / 2);
        char *rest = malloc(n - n / 2 + 1);
        if (rest == NULL) {
            return;
        }
        memcpy(rest, line + n / 2, n - n / 2);
        rest[n - n / 2] = '\n';
        send_chunk(fd, rest, n - n / 2 + 1);
        free(rest);
    }
}

static void *serve(void *arg)
{
    struct conn *fd = arg;
    struct fake_kube *k = fd->k;
    char req[8192];
    size_t len = 0;
    if (k->tls != NULL) {
        /* a client that refuses the certificate ends here */
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if ((fd->ssl = SSL_new(k->tls)) == NULL || !SSL_set_fd(fd->ssl, fd->fd) ||
            SSL_accept(fd->ssl) != 1) {
            len = sizeof(req); /* no request */
        }
    }
    while (len < sizeof(req) - 1 && !atomic_load(&k->stop)) {
        struct pollfd p = {.fd = fd->fd, .events = POLLIN};
        if ((fd->ssl == NULL || SSL_pending(fd->ssl) == 0) && poll(&p, 1, 50) != 1) {
            continue;
        }
        ssize_t n = conn_recv(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL) {
            break;
        }
    }
    req[len < sizeof(req) ? len : 0] = '\0';
    char path[2048] = "";
    if (sscanf(req, "GET %2047s HTTP/1.1", path) == 1) {
        const char *auth = strstr(req, "Authorization: ");
        pthread_mutex_lock(&k->mu);
        snprintf(k->seen.last_auth, sizeof(k->seen.last_auth), "%.*s",
                 auth != NULL ? (int)strcspn(auth, "\r") : 0, auth != NULL ? auth : "");
        pthread_mutex_unlock(&k->mu);
        static const char prefix[] = "/apis/security.weft.dev/v1alpha1/";
        char *q = strchr(path, '?');
        if (q != NULL) {
            *q++ = '\0';
        }
        bool authz = strcmp(path, "/apis/security.weft.dev/v1alpha1/authorizationpolicies") == 0;
        char watch[8];
        query_get(q, "watch", watch, sizeof(watch));
        if (strncmp(path, prefix, sizeof(prefix) - 1) != 0) {
            static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            send_all(fd, nf, sizeof(nf) - 1);
        } else if (strcmp(watch, "1") == 0) {
            serve_watch(k, fd, authz, q);
        } else {
            serve_list(k, fd, authz, q);
        }
    }
    if (fd->ssl != NULL) {
        SSL_free(fd->ssl);
    }
    close(fd->fd);
    free(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    struct fake_kube *k = arg;
    while (!atomic_load(&k->stop)) {
        struct pollfd p = {.fd = k->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1) {
            continue;
        }
        int fd = accept(k->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        struct conn *c = malloc(sizeof(*c));
        pthread_mutex_lock(&k->mu);
        if (c != NULL && k->num_conns < MAX_CONNS) {
            *c = (struct conn){k, fd, NULL};
            if (pthread_create(&k->conns[k->num_conns], NULL, serve, c) == 0) {
                k->num_conns++;
                c = NULL;
                fd = -1;
            }
        }
        pthread_mutex_unlock(&k->mu);
        free(c);
        if (fd >= 0) {
            close(fd);
        }
    }
    return NULL;
}

int fake_kube_start(struct fake_kube **out) { return fake_kube_start_tls(out, NULL, NULL); }

int fake_kube_start_tls(struct fake_kube **out, X509 *cert, EVP_PKEY *key)
{
    struct fake_kube *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return WEFT_EINTERNAL;
    }
    if (cert != NULL) {
        signal(SIGPIPE, SIG_IGN); /* SSL_write to a client that left must not end the test */
    }
    if (cert != NULL &&
        ((k->tls = SSL_CTX_new(TLS_server_method())) == NULL ||
         !SSL_CTX_use_certificate(k->tls, cert) || !SSL_CTX_use_PrivateKey(k->tls, key))) {
        SSL_CTX_free(k->tls);
        free(k);
        return WEFT_ECRYPTO;
    }
    pthread_mutex_init(&k->mu, NULL);
    snprintf(k->list_rv, sizeof(k->list_rv), "10");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    k->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (k->lfd < 0 || bind(k->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(k->lfd, 64) != 0 || getsockname(k->lfd, (struct sockaddr *)&sa, &sl) != 0 ||
        pthread_create(&k->acceptor, NULL, accept_loop, k) != 0) {
        if (k->lfd >= 0) {
            close(k->lfd);
        }
        pthread_mutex_destroy(&k->mu);
        SSL_CTX_free(k->tls);
        free(k);
        return WEFT_EIO;
    }
    k->port = ntohs(sa.sin_port);
    *out = k;
    return WEFT_OK;
}

uint16_t fake_kube_port(const struct fake_kube *k) { return k->port; }

void fake_kube_stop(struct fake_kube *k)
{
    if (k == NULL) {
        return;
    }
    atomic_store(&k->stop, true);
    pthread_join(k->acceptor, NULL);
    for (size_t i = 0; i < k->num_conns; i++) {
        pthread_join(k->conns[i], NULL);
    }
    close(k->lfd);
    for (size_t i = 0; i < k->num_items; i++) {
        free(k->items[i]);
    }
    for (size_t i = 0; i < k->num_script; i++) {
        free(k->script[i]);
    }
    pthread_mutex_destroy(&k->mu);
    SSL_CTX_free(k->tls);
    free(k);
}

void fake_kube_set_items(struct fake_kube *k, const char *rv, char *const *objects, size_t num)
{
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->num_items; i++) {
        free(k->items[i]);
    }
    k->num_items = 0;
    for (size_t i = 0; i < num && i < MAX_ITEMS; i++) {
        k->items[k->num_items++] = strdup(objects[i]);
    }
    snprintf(k->list_rv, sizeof(k->list_rv), "%s", rv);
    pthread_mutex_unlock(&k->mu);
}

void fake_kube_push(struct fake_kube *k, const char *line)
{
    pthread_mutex_lock(&k->mu);
    if (k->num_script < MAX_SCRIPT) {
        k->script[k->num_script++] = strdup(line);
    }
    pthread_mutex_unlock(&k->mu);
}

void fake_kube_expire_next_watch(struct fake_kube *k)
{
    pthread_mutex_lock(&k->mu);
    k->expire_next_watch = true;
    pthread_mutex_unlock(&k->mu);
}

void fake_kube_seen(struct fake_kube *k, struct fake_kube_seen *out)
{
    pthread_mutex_lock(&k->mu);
    *out = k->seen;
    pthread_mutex_unlock(&k->mu);
}

char *fake_kube_authz(const char *name, const char *action, const char *rv, int typed)
{
    char buf[640];
    snprintf(buf, sizeof(buf),
             "{%s\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\",\"resourceVersion\":\"%s\","
             "\"uid\":\"u-%s\",\"generation\":1},\"spec\":{\"action\":\"%s\",\"rules\":[{}]}}",
             typed ? "\"apiVersion\":\"security.weft.dev/v1alpha1\","
                     "\"kind\":\"AuthorizationPolicy\","
                   : "",
             name, rv, name, action);
    return strdup(buf);
}

char *fake_kube_event(const char *type, const char *name, const char *action, const char *rv)
{
    char *obj = fake_kube_authz(name, action, rv, 1);
    char buf[800];
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\",\"object\":%s}", type, obj);
    free(obj);
    return strdup(buf);
}
