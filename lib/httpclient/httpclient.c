/* lib/httpclient/httpclient.c: see httpclient.h. One socket, non-blocking, every wait a poll(2)
 * against the one deadline of the exchange. */
#include "lib/httpclient/httpclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/base/mem.h"

struct url {
    bool tls;
    char host[256]; /* without the brackets of an IPv6 literal */
    char port[8];
    const char *path; /* into the URL: "/..." */
};

struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int64_t deadline_ms;
    const char *host;
};

struct parse {
    struct httpclient_response *resp;
    size_t cap, max;
    bool done, too_big;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_url(struct url *u, const char *s, char *err, size_t err_len)
{
    const char *p;
    if (strncmp(s, "http://", 7) == 0) {
        u->tls = false;
        p = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        u->tls = true;
        p = s + 8;
    } else {
        snprintf(err, err_len, "%.200s: not an http:// or https:// URL", s);
        return WEFT_EINVAL;
    }
    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL) {
            snprintf(err, err_len, "%.200s: an IPv6 address without its ']'", s);
            return WEFT_EINVAL;
        }
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof(u->host)) {
        snprintf(err, err_len, "%.200s: no host, or a host over %zu bytes", s, sizeof(u->host) - 1);
        return WEFT_EINVAL;
    }
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';
    snprintf(u->port, sizeof(u->port), "%s", u->tls ? "443" : "80");
    if (*p == ':') {
        size_t pl = strcspn(p + 1, "/");
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (pl == 0 || pl > 5 || end != p + 1 + pl || port < 1 || port > 65535) {
            snprintf(err, err_len, "%.200s: the port is not 1 to 65535", s);
            return WEFT_EINVAL;
        }
        snprintf(u->port, sizeof(u->port), "%ld", port);
        p += 1 + pl;
    }
    u->path = *p == '/' ? p : "/";
    if (*p != '\0' && *p != '/') {
        snprintf(err, err_len, "%.200s: unexpected characters after the host", s);
        return WEFT_EINVAL;
    }
    for (const char *c = u->path; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            snprintf(err, err_len, "%.200s: a space or control character in the path", s);
            return WEFT_EINVAL;
        }
    }
    return WEFT_OK;
}

/* wait_fd waits for |events| on the connection until its deadline. */
static int wait_fd(struct conn *c, short events, const char *what, char *err, size_t err_len)
{
    for (;;) {
        int64_t left = c->deadline_ms - mono_ms();
        if (left <= 0) {
            snprintf(err, err_len, "%s: timed out %s", c->host, what);
            return WEFT_EIO;
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (n > 0) {
            return WEFT_OK;
        }
        if (n < 0 && errno != EINTR) {
            snprintf(err, err_len, "%s: poll: %s", c->host, strerror(errno));
            return WEFT_EIO;
        }
    }
}

static int dial(struct conn *c, const struct url *u, char *err, size_t err_len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, err_len, "%s: cannot resolve: %s", u->host, gai_strerror(gai));
        return WEFT_EIO;
    }
    int rc = WEFT_EIO;
    char why[128] = "no address";
    for (struct addrinfo *a = res; a != NULL && rc != WEFT_OK; a = a->ai_next) {
        c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->fd < 0) {
            snprintf(why, sizeof(why), "socket: %s", strerror(errno));
            continue;
        }
        if (connect(c->fd, a->ai_addr, a->ai_addrlen) == 0 ||
            (errno == EINPROGRESS &&
             wait_fd(c, POLLOUT, "connecting", why, sizeof(why)) == WEFT_OK)) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr == 0) {
                rc = WEFT_OK;
                break;
            }
            snprintf(why, sizeof(why), "connect: %s", strerror(soerr));
        } else if (errno != EINPROGRESS) {
            snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        }
        close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%s port %s: %s", u->host, u->port, why);
    }
    return rc;
}

/* ssl_wait turns an SSL_ERROR_WANT_* into a wait; anything else is an error. */
static int ssl_wait(struct conn *c, int ret, const char *what, char *err, size_t err_len)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ) {
        return wait_fd(c, POLLIN, what, err, err_len);
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        return wait_fd(c, POLLOUT, what, err, err_len);
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return WEFT_ENOTFOUND; /* a clean close */
    }
    char buf[160];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    long verify = SSL_get_verify_result(c->ssl);
    if (verify != X509_V_OK) {
        snprintf(err, err_len, "%s: TLS %s: the server's certificate: %s", c->host, what,
                 X509_verify_cert_error_string(verify));
    } else {
        snprintf(err, err_len, "%s: TLS %s: %s", c->host, what,
                 e == SSL_ERROR_SYSCALL ? "the connection closed" : buf);
    }
    ERR_clear_error();
    return WEFT_ECRYPTO;
}

static int tls_start(struct conn *c, const struct url *u, const struct httpclient_request *req,
                     char *err, size_t err_len)
{
    c->ctx = SSL_CTX_new(TLS_method());
    if (c->ctx == NULL || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION)) {
        snprintf(err, err_len, "%s: cannot make a TLS context", u->host);
        return WEFT_ECRYPTO;
    }
    if (!req->insecure_skip_verify) {
        if (req->ca_file == NULL || !SSL_CTX_load_verify_locations(c->ctx, req->ca_file, NULL)) {
            ERR_clear_error();
            snprintf(err, err_len, "%s: no CA file to verify it with (%.200s)", u->host,
                     req->ca_file != NULL ? req->ca_file : "none given");
            return WEFT_ECRYPTO;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
        snprintf(err, err_len, "%s: cannot start TLS", u->host);
        return WEFT_ECRYPTO;
    }
    struct in6_addr a6;
    struct in_addr a4;
    bool is_ip = inet_pton(AF_INET, u->host, &a4) == 1 || inet_pton(AF_INET6, u->host, &a6) == 1;
    if (!is_ip) {
        SSL_set_tlsext_host_name(c->ssl, u->host);
    }
    if (!req->insecure_skip_verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        if (!(is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, u->host)
                    : X509_VERIFY_PARAM_set1_host(param, u->host, strlen(u->host)))) {
            snprintf(err, err_len, "%s: cannot set the name to verify", u->host);
            return WEFT_ECRYPTO;
        }
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1) {
            return WEFT_OK;
        }
        int rc = ssl_wait(c, r, "handshake", err, err_len);
        if (rc != WEFT_OK) {
            return rc == WEFT_ENOTFOUND ? WEFT_ECRYPTO : rc;
        }
    }
}

static int write_all(struct conn *c, const char *buf, size_t len, char *err, size_t err_len)
{
    size_t off = 0;
    while (off < len) {
        size_t chunk = len - off > (1 << 30) ? (1 << 30) : len - off;
        if (c->ssl != NULL) {
            int n = SSL_write(c->ssl, buf + off, (int)chunk);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            TRY(ssl_wait(c, n, "writing", err, err_len));
            continue;
        }
        ssize_t n = send(c->fd, buf + off, chunk, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            TRY(wait_fd(c, POLLOUT, "writing the request", err, err_len));
        } else {
            snprintf(err, err_len, "%s: writing the request: %s", c->host, strerror(errno));
            return WEFT_EIO;
        }
    }
    return WEFT_OK;
}

/* read_some reads what is there: > 0 bytes, 0 at the end of the stream, or an error. */
static int read_some(struct conn *c, char *buf, size_t cap, size_t *got, char *err, size_t err_len)
{
    for (;;) {
        if (c->ssl != NULL) {
            int n = SSL_read(c->ssl, buf, (int)cap);
            if (n > 0) {
                *got = (size_t)n;
                return WEFT_OK;
            }
            int rc = ssl_wait(c, n, "reading", err, err_len);
            if (rc == WEFT_ENOTFOUND) {
                *got = 0;
                return WEFT_OK;
            }
            TRY(rc);
            continue;
        }
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n >= 0) {
            *got = (size_t)n;
            return WEFT_OK;
        }
        if (errno == EAGAIN || errno == EINTR) {
            TRY(wait_fd(c, POLLIN, "waiting for the response", err, err_len));
        } else {
            snprintf(err, err_len, "%s: reading the response: %s", c->host, strerror(errno));
            return WEFT_EIO;
        }
    }
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct parse *ps = p->data;
    struct httpclient_response *r = ps->resp;
    if (r->body_len + len > ps->max) {
        ps->too_big = true;
        return 1;
    }
    if (r->body_len + len + 1 > ps->cap) {
        size_t cap = ps->cap ? ps->cap : 4096;
        while (cap < r->body_len + len + 1) {
            cap *= 2;
        }
        r->body = weft_xrealloc(r->body, cap);
        ps->cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct parse *ps = p->data;
    ps->done = true;
    return 0;
}

static const http_parser_settings settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int exchange(struct conn *c, const struct url *u, const struct httpclient_request *req,
                    struct httpclient_response *resp, char *err, size_t err_len)
{
    char host[300];
    bool v6 = strchr(u->host, ':') != NULL,
         default_port = strcmp(u->port, u->tls ? "443" : "80") == 0;
    snprintf(host, sizeof(host), "%s%s%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "",
             default_port ? "" : ":", default_port ? "" : u->port);
    char *head = weft_xmalloc(HTTPCLIENT_MAX_HEAD);
    int n = snprintf(head, HTTPCLIENT_MAX_HEAD,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: weft\r\n",
                     req->method, u->path, host);
    for (size_t i = 0; i < req->num_headers && n > 0 && n < HTTPCLIENT_MAX_HEAD; i++) {
        n += snprintf(head + n, HTTPCLIENT_MAX_HEAD - (size_t)n, "%s\r\n", req->headers[i]);
    }
    if (n > 0 && n < HTTPCLIENT_MAX_HEAD && req->body != NULL) {
        n += snprintf(head + n, HTTPCLIENT_MAX_HEAD - (size_t)n, "Content-Length: %zu\r\n",
                      req->body_len);
    }
    if (n > 0 && n < HTTPCLIENT_MAX_HEAD) {
        n += snprintf(head + n, HTTPCLIENT_MAX_HEAD - (size_t)n, "\r\n");
    }
    if (n <= 0 || n >= HTTPCLIENT_MAX_HEAD) {
        free(head);
        snprintf(err, err_len, "%s: the request head is over %d bytes", u->host,
                 HTTPCLIENT_MAX_HEAD);
        return WEFT_ELIMIT;
    }
    int rc = write_all(c, head, (size_t)n, err, err_len);
    free(head);
    if (rc == WEFT_OK && req->body != NULL) {
        rc = write_all(c, req->body, req->body_len, err, err_len);
    }
    TRY(rc);

    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    struct parse ps = {.resp = resp,
                       .max = req->max_body ? req->max_body : HTTPCLIENT_DEFAULT_MAX_BODY};
    parser.data = &ps;
    char buf[16384];
    while (!ps.done) {
        size_t got = 0;
        TRY(read_some(c, buf, sizeof(buf), &got, err, err_len));
        size_t used = http_parser_execute(&parser, &settings, buf, got);
        if (ps.too_big) {
            snprintf(err, err_len, "%s: the response body is over %zu bytes", u->host, ps.max);
            return WEFT_ELIMIT;
        }
        if (got == 0 && !ps.done) { /* the end of the stream ends only a close-delimited body */
            snprintf(err, err_len, "%s: the connection closed before the response ended", u->host);
            return WEFT_EIO;
        }
        if (used != got || HTTP_PARSER_ERRNO(&parser) != HPE_OK) {
            snprintf(err, err_len, "%s: not an HTTP/1.x response: %s", u->host,
                     http_errno_description(HTTP_PARSER_ERRNO(&parser)));
            return WEFT_EPROTO;
        }
    }
    resp->status = (int)parser.status_code;
    if (resp->body == NULL) {
        resp->body = weft_xcalloc(1, 1);
    }
    return WEFT_OK;
}

int httpclient_do(const struct httpclient_request *req, struct httpclient_response *resp, char *err,
                  size_t err_len)
{
    memset(resp, 0, sizeof(*resp));
    struct url u;
    if (req->url == NULL || strlen(req->url) > HTTPCLIENT_MAX_URL) {
        snprintf(err, err_len, "a URL of 1 to %d bytes is needed", HTTPCLIENT_MAX_URL);
        return WEFT_EINVAL;
    }
    TRY(parse_url(&u, req->url, err, err_len));
    if (req->method == NULL || req->method[0] == '\0' || strpbrk(req->method, " \r\n") != NULL) {
        snprintf(err, err_len, "%s: a method without spaces is needed", u.host);
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < req->num_headers; i++) {
        if (strpbrk(req->headers[i], "\r\n") != NULL) {
            snprintf(err, err_len, "%s: request header %zu holds a line break", u.host, i + 1);
            return WEFT_EINVAL;
        }
    }
    struct conn c = {.fd = -1,
                     .deadline_ms =
                         mono_ms() +
                         (req->timeout_ms > 0 ? req->timeout_ms : HTTPCLIENT_DEFAULT_TIMEOUT_MS),
                     .host = u.host};
    int rc = dial(&c, &u, err, err_len);
    if (rc == WEFT_OK && u.tls) {
        rc = tls_start(&c, &u, req, err, err_len);
    }
    if (rc == WEFT_OK) {
        rc = exchange(&c, &u, req, resp, err, err_len);
    }
    if (c.ssl != NULL) {
        SSL_free(c.ssl);
    }
    SSL_CTX_free(c.ctx);
    if (c.fd >= 0) {
        close(c.fd);
    }
    if (rc != WEFT_OK) {
        httpclient_response_free(resp);
    }
    return rc;
}

void httpclient_response_free(struct httpclient_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}
