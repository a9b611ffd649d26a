/* test/testlib/tls_server.h: a small TLS (or plain HTTP) server on 127.0.0.1 for the tests of
 * what connects to endpoints and reads what they present (weftctl scan, issue 9). One thread,
 * one connection at a time: it completes a handshake with the context it is given, reads one
 * request (head, and a body of Content-Length bytes), records it, answers a fixed response and
 * closes. With no context it speaks plain HTTP only, which also makes it a small HTTP receiver
 * (an Alertmanager stand-in) whose requests a test reads back.
 *
 * The certificates come from the caller (test/testlib/certs.h mints them at test time). Nothing
 * here aborts: every function reports failure, and a test asserts on it. */
#ifndef WEFT_TEST_TESTLIB_TLS_SERVER_H
#define WEFT_TEST_TESTLIB_TLS_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>

#define TESTLIB_TLS_SERVER_MAX_REQS 32    /* requests recorded; later ones are answered only */
#define TESTLIB_TLS_SERVER_MAX_BODY 65536 /* a request body recorded (the rest is not read) */
#define TESTLIB_TLS_SERVER_MAX_HEAD 8192  /* a request head */
#define TESTLIB_TLS_SERVER_IO_TIMEOUT_S 2 /* each read and write of a connection */

/* enum testlib_client_cert says whether the server asks for a client certificate (any one it
 * gets is taken: the tests are about whether one is asked for, not which). */
enum testlib_client_cert {
    TESTLIB_CLIENT_CERT_NONE = 0,
    TESTLIB_CLIENT_CERT_OPTIONAL, /* asked for; a client without one is served */
    TESTLIB_CLIENT_CERT_REQUIRED, /* asked for; a client without one is refused */
};

/* struct testlib_http_req is one recorded request. */
struct testlib_http_req {
    char method[16];
    char path[256];
    char head[TESTLIB_TLS_SERVER_MAX_HEAD]; /* request line and headers, without the blank line */
    char *body;                             /* NUL-terminated, owned by the server */
    size_t body_len;
};

/* struct testlib_tls_server is one server. Set |sniff_plaintext| and |response| before
 * testlib_tls_server_start; the rest is the server's own. */
struct testlib_tls_server {
    bool sniff_plaintext; /* a TLS port that also answers plaintext HTTP */
    const char *response; /* sent after a request; NULL: none (borrowed, must outlive the run) */
    /* private */
    int fd, port;
    SSL_CTX *ctx; /* NULL: plaintext HTTP only */
    pthread_t thread;
    atomic_bool stop;
    bool running;
    pthread_mutex_t mu; /* ctx and the records */
    struct testlib_http_req reqs[TESTLIB_TLS_SERVER_MAX_REQS];
    size_t num_reqs;
};

/* testlib_tls_ctx_new makes a server context presenting |certs| (leaf first, |num_certs| >= 1)
 * with |key|, protocol versions [|min|, |max|] (TLS1_VERSION ... TLS1_3_VERSION), asking for a
 * client certificate as |cc| says. Returns it (the caller owns it), or NULL. */
SSL_CTX *testlib_tls_ctx_new(X509 *const *certs, size_t num_certs, EVP_PKEY *key, uint16_t min,
                             uint16_t max, enum testlib_client_cert cc);

/* testlib_tls_server_init puts |s| in its zero state (no socket, no thread), which
 * testlib_tls_server_stop accepts. */
void testlib_tls_server_init(struct testlib_tls_server *s);

/* testlib_tls_server_start listens on a loopback port of its own (|s->port|) and serves there
 * with |ctx| (taken: |s| owns it; NULL for plain HTTP) until testlib_tls_server_stop. Returns
 * 0, or -1 (|ctx| freed all the same). */
int testlib_tls_server_start(struct testlib_tls_server *s, SSL_CTX *ctx);

/* testlib_tls_server_set_ctx swaps the context later connections are served with (the same
 * port, new certificates: "the server was fixed"); |ctx| is taken, the old one freed once the
 * connection using it, if any, is done. */
void testlib_tls_server_set_ctx(struct testlib_tls_server *s, SSL_CTX *ctx);

/* testlib_tls_server_stop stops the thread, closes the socket, frees the context and the
 * records, and leaves |s| in its zero state. */
void testlib_tls_server_stop(struct testlib_tls_server *s);

/* testlib_tls_server_num_reqs returns how many requests were recorded so far. */
size_t testlib_tls_server_num_reqs(struct testlib_tls_server *s);

/* testlib_tls_server_req copies request |i| (0 first) into |out|, its body into a new string
 * the caller frees (|out->body|). Returns false when there is no such request. */
bool testlib_tls_server_req(struct testlib_tls_server *s, size_t i, struct testlib_http_req *out);

#endif
