/* lib/httpclient/httpclient_test.c: requests against one-shot servers on loopback, plain and
 * TLS (a CA and a "localhost" certificate minted now), and the ways a server can misbehave. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/base/file.h"
#include "test/testlib/net.h"
#include "lib/httpclient/httpclient.h"
#include "test/testlib/certs.h"

/* --- a one-shot server ---------------------------------------------------------------------- */

struct server {
    int lfd;
    int port;
    pthread_t th;
    const char *response; /* written after the request; NULL: say nothing (a hung server) */
    size_t response_len;
    SSL_CTX *tls; /* NULL: plain */
    char request[8192];
    size_t request_len;
};

static void *serve(void *arg)
{
    struct server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL *ssl = NULL;
    if (s->tls != NULL) {
        ssl = SSL_new(s->tls);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            close(fd);
            return NULL;
        }
    }
    /* read the head, then as much body as Content-Length says */
    for (;;) {
        int n = ssl != NULL ? SSL_read(ssl, s->request + s->request_len,
                                       (int)(sizeof(s->request) - 1 - s->request_len))
                            : (int)recv(fd, s->request + s->request_len,
                                        sizeof(s->request) - 1 - s->request_len, 0);
        if (n <= 0) {
            break;
        }
        s->request_len += (size_t)n;
        s->request[s->request_len] = '\0';
        char *end = strstr(s->request, "\r\n\r\n");
        const char *cl = strstr(s->request, "Content-Length: ");
        size_t want = cl != NULL ? (size_t)atoi(cl + 16) : 0;
        if (end != NULL && s->request_len >= (size_t)(end + 4 - s->request) + want) {
            break;
        }
    }
    if (s->response != NULL) {
        if (ssl != NULL) {
            SSL_write(ssl, s->response, (int)s->response_len);
        } else {
            (void)!send(fd, s->response, s->response_len, MSG_NOSIGNAL);
        }
    } else {
        sleep(2); /* hang: the client's deadline must end it */
    }
    if (ssl != NULL) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return NULL;
}

static void server_start(struct server *s, const char *response)
{
    s->response = response;
    s->response_len = response != NULL ? strlen(response) : 0;
    s->lfd = testlib_listen_loopback(&s->port);
    cr_assert_geq(s->lfd, 0);
    cr_assert_eq(pthread_create(&s->th, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    SSL_CTX_free(s->tls);
}

static int get(const char *url, const char *const *headers, size_t nh, size_t max_body,
               int timeout_ms, struct httpclient_response *resp, char *err)
{
    struct httpclient_request req = {.method = "GET",
                                     .url = url,
                                     .headers = headers,
                                     .num_headers = nh,
                                     .max_body = max_body,
                                     .timeout_ms = timeout_ms};
    return httpclient_do(&req, resp, err, 256);
}

/* --- plain --------------------------------------------------------------------------------- */

Test(httpclient, a_get_with_a_bearer_token_reads_the_whole_body)
{
    struct server s = {0};
    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
                     "\r\n{\"kind\":\"PodList\"");
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/pods", s.port);
    const char *h[] = {"Authorization: Bearer t0ken"};
    struct httpclient_response r;
    cr_assert_eq(get(url, h, 1, 0, 5000, &r, err), WEFT_OK, "%s", err);
    server_stop(&s);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 17);
    cr_assert_str_eq((char *)r.body, "{\"kind\":\"PodList\"");
    cr_assert_not_null(strstr(s.request, "GET /pods HTTP/1.1\r\n"), "%s", s.request);
    cr_assert_not_null(strstr(s.request, "\r\nAuthorization: Bearer t0ken\r\n"));
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", s.port);
    cr_assert_not_null(strstr(s.request, host), "%s", s.request);
    cr_assert_not_null(strstr(s.request, "\r\nConnection: close\r\n"));
    httpclient_response_free(&r);
}

Test(httpclient, chunked_and_close_delimited_bodies_and_a_post)
{
    struct server s = {0};
    server_start(&s, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    struct httpclient_response r;
    cr_assert_eq(get(url, NULL, 0, 0, 5000, &r, err), WEFT_OK, "%s", err);
    server_stop(&s);
    cr_assert_eq(r.status, 404, "any status is a response; the caller judges it");
    cr_assert_str_eq((char *)r.body, "hello world");
    httpclient_response_free(&r);

    struct server s2 = {0};
    server_start(&s2, "HTTP/1.0 200 OK\r\n\r\nuntil the end");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v2/alerts", s2.port);
    const char *body = "[{\"labels\":{\"alertname\":\"WeftSVIDRunwayLow\"}}]";
    const char *h[] = {"Content-Type: application/json"};
    struct httpclient_request req = {.method = "POST",
                                     .url = url,
                                     .headers = h,
                                     .num_headers = 1,
                                     .body = body,
                                     .body_len = strlen(body)};
    cr_assert_eq(httpclient_do(&req, &r, err, sizeof(err)), WEFT_OK, "%s", err);
    server_stop(&s2);
    cr_assert_str_eq((char *)r.body, "until the end");
    cr_assert_not_null(strstr(s2.request, "POST /api/v2/alerts HTTP/1.1\r\n"));
    char cl[48];
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(body));
    cr_assert_not_null(strstr(s2.request, cl), "%s", s2.request);
    cr_assert_not_null(strstr(s2.request, body), "the body arrived");
    httpclient_response_free(&r);
}

Test(httpclient, every_way_a_server_misbehaves_is_a_bounded_error)
{
    char url[64], err[256];
    struct httpclient_response r;
    /* a body over the limit */
    struct server s = {0};
    server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                     "0123456789012345678901234567890123456789012345678901234567890123456789"
                     "012345678901234567890123456789");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    cr_assert_eq(get(url, NULL, 0, 50, 5000, &r, err), WEFT_ELIMIT);
    cr_assert_not_null(strstr(err, "over 50 bytes"), "%s", err);
    cr_assert_null(r.body);
    server_stop(&s);
    /* a server that never answers: the deadline ends it */
    struct server hung = {0};
    server_start(&hung, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", hung.port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(get(url, NULL, 0, 0, 300, &r, err), WEFT_EIO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_not_null(strstr(err, "timed out"), "%s", err);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 2, "bounded by the timeout, not by the server");
    server_stop(&hung);
    /* not HTTP */
    struct server junk = {0};
    server_start(&junk, "SSH-2.0-OpenSSH_9.2\r\n");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", junk.port);
    cr_assert_eq(get(url, NULL, 0, 0, 5000, &r, err), WEFT_EPROTO, "%s", err);
    server_stop(&junk);
    /* a response cut short */
    struct server cut = {0};
    server_start(&cut, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", cut.port);
    cr_assert_eq(get(url, NULL, 0, 0, 5000, &r, err), WEFT_EIO, "%s", err);
    cr_assert_not_null(strstr(err, "closed before"), "%s", err);
    server_stop(&cut);
    /* nobody listening (a port just freed) */
    cr_assert_eq(get(url, NULL, 0, 0, 2000, &r, err), WEFT_EIO);
    cr_assert_not_null(strstr(err, "127.0.0.1"), "the error names the host: %s", err);
    /* requests that cannot be made */
    cr_assert_eq(get("ftp://127.0.0.1/", NULL, 0, 0, 1000, &r, err), WEFT_EINVAL);
    cr_assert_eq(get("http://127.0.0.1:0/", NULL, 0, 0, 1000, &r, err), WEFT_EINVAL);
    cr_assert_eq(get("http://[::1/", NULL, 0, 0, 1000, &r, err), WEFT_EINVAL);
    cr_assert_eq(get("http://127.0.0.1/a b", NULL, 0, 0, 1000, &r, err), WEFT_EINVAL);
    const char *bad[] = {"X-Injected: a\r\nHost: evil"};
    cr_assert_eq(get("http://127.0.0.1:9/", bad, 1, 0, 1000, &r, err), WEFT_EINVAL,
                 "a header cannot smuggle a line");
}

/* --- TLS ----------------------------------------------------------------------------------- */

static int64_t now_s(void) { return (int64_t)time(NULL); }

/* mint_ca makes a CA certificate valid now, and writes it as PEM to |path|. */
static void mint_ca(struct testlib_cred *ca, const char *path)
{
    ca->key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    struct testlib_cert_spec spec;
    testlib_spec_signing_ca(&spec, "spiffe://example.org");
    spec.subject_cn = "test CA";
    spec.not_before = now_s() - 60;
    spec.not_after = now_s() + 3600;
    cr_assert_eq(testlib_cert_build(&ca->cert, &spec, ca->key, NULL, ca->key), WEFT_OK);
    char *pem;
    size_t len;
    STACK_OF(X509) *one = testlib_chain(&ca->cert, 1);
    cr_assert_eq(spiffe_certs_to_pem(&pem, &len, one), WEFT_OK);
    cr_assert_eq(weft_file_write_atomic(path, pem, len, 0644), WEFT_OK);
    free(pem);
    sk_X509_pop_free(one, X509_free);
}

/* tls_server: a TLS context serving a "localhost" certificate issued by |ca|. */
static SSL_CTX *tls_server(const struct testlib_cred *ca)
{
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    struct testlib_cert_spec spec = {0};
    spec.subject_cn = "localhost";
    spec.dns = "localhost";
    spec.basic_constraints = TESTLIB_BC_LEAF;
    spec.has_eku = true;
    spec.eku_server_auth = true;
    spec.not_before = now_s() - 60;
    spec.not_after = now_s() + 3600;
    X509 *cert = NULL;
    cr_assert_eq(testlib_cert_build(&cert, &spec, key, ca->cert, ca->key), WEFT_OK);
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    cr_assert(SSL_CTX_use_certificate(ctx, cert) && SSL_CTX_use_PrivateKey(ctx, key));
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

Test(httpclient, https_verifies_the_server_against_the_ca_and_its_name)
{
    char dir[] = "/tmp/weft-httpclient-XXXXXX", ca_path[64], other_path[64], url[64], err[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    snprintf(other_path, sizeof(other_path), "%s/other.pem", dir);
    struct testlib_cred ca = {0}, other = {0};
    mint_ca(&ca, ca_path);
    mint_ca(&other, other_path);
    const char *reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct httpclient_response r;

    struct server s = {.tls = tls_server(&ca)};
    server_start(&s, reply);
    snprintf(url, sizeof(url), "https://localhost:%d/pods", s.port);
    struct httpclient_request req = {.method = "GET", .url = url, .ca_file = ca_path};
    cr_assert_eq(httpclient_do(&req, &r, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_str_eq((char *)r.body, "ok");
    httpclient_response_free(&r);
    server_stop(&s);

    /* another CA: refused, and the error says why */
    struct server s2 = {.tls = tls_server(&ca)};
    server_start(&s2, reply);
    snprintf(url, sizeof(url), "https://localhost:%d/pods", s2.port);
    req.ca_file = other_path;
    cr_assert_eq(httpclient_do(&req, &r, err, sizeof(err)), WEFT_ECRYPTO);
    cr_assert_not_null(strstr(err, "certificate"), "%s", err);
    server_stop(&s2);

    /* the right CA, the wrong name: the certificate is for localhost, not 127.0.0.1 */
    struct server s3 = {.tls = tls_server(&ca)};
    server_start(&s3, reply);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/pods", s3.port);
    req.ca_file = ca_path;
    cr_assert_eq(httpclient_do(&req, &r, err, sizeof(err)), WEFT_ECRYPTO);
    server_stop(&s3);

    /* no verification asked for: it connects (encrypted, peer unknown) */
    struct server s4 = {.tls = tls_server(&ca)};
    server_start(&s4, reply);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/pods", s4.port);
    req.ca_file = NULL;
    req.insecure_skip_verify = true;
    cr_assert_eq(httpclient_do(&req, &r, err, sizeof(err)), WEFT_OK, "%s", err);
    httpclient_response_free(&r);
    server_stop(&s4);

    /* and no CA file without asking to skip: refused before connecting anything */
    req.insecure_skip_verify = false;
    struct server s5 = {.tls = tls_server(&ca)};
    server_start(&s5, reply);
    snprintf(url, sizeof(url), "https://localhost:%d/pods", s5.port);
    cr_assert_eq(httpclient_do(&req, &r, err, sizeof(err)), WEFT_ECRYPTO);
    cr_assert_not_null(strstr(err, "no CA file"), "%s", err);
    server_stop(&s5);

    testlib_cred_cleanup(&ca);
    testlib_cred_cleanup(&other);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
