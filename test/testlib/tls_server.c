/* test/testlib/tls_server.c: see tls_server.h. */
#include "test/testlib/tls_server.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "test/testlib/net.h"

static enum ssl_verify_result_t accept_any(SSL *ssl, uint8_t *out_alert)
{
    (void)ssl;
    (void)out_alert;
    return ssl_verify_ok;
}

SSL_CTX *testlib_tls_ctx_new(X509 *const *certs, size_t num_certs, EVP_PKEY *key, uint16_t min,
                             uint16_t max, enum testlib_client_cert cc)
{
    if (num_certs == 0) {
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL || !SSL_CTX_use_certificate(ctx, certs[0])) {
        goto fail;
    }
    for (size_t i = 1; i < num_certs; i++) {
        if (!SSL_CTX_add1_chain_cert(ctx, certs[i])) {
            goto fail;
        }
    }
    if (!SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_set_min_proto_version(ctx, min) ||
        !SSL_CTX_set_max_proto_version(ctx, max)) {
        goto fail;
    }
    if (cc != TESTLIB_CLIENT_CERT_NONE) {
        int mode = SSL_VERIFY_PEER;
        if (cc == TESTLIB_CLIENT_CERT_REQUIRED) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        }
        SSL_CTX_set_custom_verify(ctx, mode, accept_any);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

void testlib_tls_server_init(struct testlib_tls_server *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    atomic_init(&s->stop, false);
    pthread_mutex_init(&s->mu, NULL);
}

/* conn_read reads what is there into |buf| (TLS or not); > 0 bytes, or <= 0 at EOF, an error or
 * the socket's timeout. */
static int conn_read(SSL *ssl, int fd, char *buf, size_t cap)
{
    int max = cap > INT32_MAX ? INT32_MAX : (int)cap;
    return ssl != NULL ? SSL_read(ssl, buf, max) : (int)recv(fd, buf, (size_t)max, 0);
}

/* read_request reads one request into |buf| (|cap| + 1 bytes): the head up to the blank line,
 * then Content-Length more bytes (cut to TESTLIB_TLS_SERVER_MAX_BODY). Returns the head's
 * length (blank line included) with |*out_len| the bytes read, or 0 when no whole head came. */
static size_t read_request(SSL *ssl, int fd, char *buf, size_t cap, size_t *out_len)
{
    size_t len = 0, head_len = 0, want = 0;
    while (len < cap) {
        if (head_len == 0) {
            /* the head is looked for only within its own limit */
            size_t room = TESTLIB_TLS_SERVER_MAX_HEAD - len;
            if (room == 0) {
                break;
            }
            int n = conn_read(ssl, fd, buf + len, room);
            if (n <= 0) {
                break;
            }
            len += (size_t)n;
            buf[len] = '\0';
            const char *end = strstr(buf, "\r\n\r\n");
            if (end == NULL) {
                continue;
            }
            head_len = (size_t)(end + 4 - buf);
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl != NULL && cl < end) {
                unsigned long v = strtoul(cl + 17, NULL, 10);
                want = v < TESTLIB_TLS_SERVER_MAX_BODY ? (size_t)v : TESTLIB_TLS_SERVER_MAX_BODY;
            }
        }
        if (len >= head_len + want) {
            break;
        }
        int n = conn_read(ssl, fd, buf + len, head_len + want - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out_len = len;
    return head_len;
}

/* record keeps the request in |buf| (head of |head_len| bytes, then the body). */
static void record(struct testlib_tls_server *s, const char *buf, size_t head_len, size_t len)
{
    pthread_mutex_lock(&s->mu);
    if (s->num_reqs < TESTLIB_TLS_SERVER_MAX_REQS) {
        struct testlib_http_req *r = &s->reqs[s->num_reqs++];
        if (sscanf(buf, "%15s %255s", r->method, r->path) != 2) {
            r->method[0] = r->path[0] = '\0';
        }
        snprintf(r->head, sizeof(r->head), "%.*s", (int)(head_len - 4), buf);
        r->body_len = len - head_len;
        r->body = malloc(r->body_len + 1);
        if (r->body == NULL) {
            r->body_len = 0;
        } else {
            memcpy(r->body, buf + head_len, r->body_len);
            r->body[r->body_len] = '\0';
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* answer reads one request, records it and sends the response. */
static void answer(struct testlib_tls_server *s, SSL *ssl, int fd)
{
    size_t cap = TESTLIB_TLS_SERVER_MAX_HEAD + TESTLIB_TLS_SERVER_MAX_BODY, len = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        return;
    }
    size_t head_len = read_request(ssl, fd, buf, cap, &len);
    if (head_len > 0) {
        record(s, buf, head_len, len);
        if (s->response != NULL) {
            size_t n = strlen(s->response);
            if (ssl != NULL) {
                (void)SSL_write(ssl, s->response, (int)n);
            } else {
                (void)!send(fd, s->response, n, MSG_NOSIGNAL);
            }
        }
    }
    free(buf);
}

static void serve_one(struct testlib_tls_server *s, int fd)
{
    struct timeval tv = {.tv_sec = TESTLIB_TLS_SERVER_IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    pthread_mutex_lock(&s->mu);
    SSL_CTX *ctx = s->ctx;
    if (ctx != NULL) {
        SSL_CTX_up_ref(ctx); /* testlib_tls_server_set_ctx may swap it meanwhile */
    }
    pthread_mutex_unlock(&s->mu);
    uint8_t first = 0;
    bool tls = ctx != NULL;
    if (tls && s->sniff_plaintext && recv(fd, &first, 1, MSG_PEEK) == 1 && first != 0x16) {
        tls = false; /* not a TLS handshake record: answer in the clear */
    }
    if (!tls) {
        answer(s, NULL, fd);
    } else {
        SSL *ssl = SSL_new(ctx);
        if (ssl != NULL && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
            answer(s, ssl, fd);
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        ERR_clear_error();
    }
    SSL_CTX_free(ctx);
}

static void *server_main(void *arg)
{
    struct testlib_tls_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1) {
            continue;
        }
        int c = accept(s->fd, NULL, NULL);
        if (c >= 0) {
            serve_one(s, c);
            close(c);
        }
    }
    return NULL;
}

int testlib_tls_server_start(struct testlib_tls_server *s, SSL_CTX *ctx)
{
    if (s->running) {
        SSL_CTX_free(ctx);
        return -1;
    }
    s->ctx = ctx;
    s->fd = testlib_listen_loopback(&s->port);
    if (s->fd < 0) {
        return -1;
    }
    atomic_store(&s->stop, false);
    if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
        return -1;
    }
    s->running = true;
    return 0;
}

void testlib_tls_server_set_ctx(struct testlib_tls_server *s, SSL_CTX *ctx)
{
    pthread_mutex_lock(&s->mu);
    SSL_CTX *old = s->ctx;
    s->ctx = ctx;
    pthread_mutex_unlock(&s->mu);
    SSL_CTX_free(old);
}

void testlib_tls_server_stop(struct testlib_tls_server *s)
{
    if (s->running) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
        s->running = false;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = -1;
    s->port = 0;
    SSL_CTX_free(s->ctx);
    s->ctx = NULL;
    for (size_t i = 0; i < s->num_reqs; i++) {
        free(s->reqs[i].body);
    }
    s->num_reqs = 0;
}

size_t testlib_tls_server_num_reqs(struct testlib_tls_server *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->num_reqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool testlib_tls_server_req(struct testlib_tls_server *s, size_t i, struct testlib_http_req *out)
{
    bool ok = false;
    pthread_mutex_lock(&s->mu);
    if (i < s->num_reqs) {
        *out = s->reqs[i];
        out->body = strdup(s->reqs[i].body != NULL ? s->reqs[i].body : "");
        ok = out->body != NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}
