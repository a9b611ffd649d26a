/* lib/transport/tls_relay.c: the relay's loop thread, its connections and the peer check.
 *
 * Threads: everything reachable from a struct conn, and the watchers, belong to the loop thread.
 * Other threads hand work over under r->mu (a dial's connection on r->pending, the listening
 * socket, the server credentials, the stop request) and wake the loop with r->wake (libev's
 * ev_async, the one watcher call that is safe from any thread). */
#include "lib/transport/tls_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/ssl.h>

#include "lib/base/mem.h"
#include "lib/spiffe/x509svid.h"
#include "lib/transport/svidtls.h"

/* lib/base has no container_of yet; this is the usual one [h2o H2O_STRUCT_FROM_MEMBER]. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ACCEPT_BATCH 64 /* accepts per readiness callback, so that other connections get a turn */
#define ACCEPT_PAUSE_S 0.1 /* listening pause after EMFILE and the like */
#define THREAD_NAME "tls-relay"

/* struct tls_ctx is one set of credentials as BoringSSL and verify_peer use them. The relay holds
 * a reference to its current server credentials, and each connection one to those it started
 * with, so rotation never pulls them from under a running handshake. */
struct tls_ctx {
    atomic_int refs;
    SSL_CTX *ssl_ctx;
    bool has_cert;                    /* false: a dialer that presents no certificate */
    struct spiffe_bundle_set bundles; /* our own copy of the caller's X.509 authorities */
};

enum conn_state {
    CONN_HANDSHAKE,  /* TLS handshake and peer verification */
    CONN_FIRST_BYTE, /* client: verified, waiting for the server's first byte or its alert */
    CONN_RELAY,      /* the socketpair exists and bytes flow */
};

/* struct dial_waiter is a tls_relay_dial caller, blocked until its connection is up or gone. It
 * lives on that caller's stack, so the loop forgets it as soon as it sets |done|. */
struct dial_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
};

struct conn {
    struct tls_relay *r;
    struct conn *prev, *next; /* r->conns; before the loop owns a dial, r->pending (next only) */
    enum conn_state state;
    bool is_server;
    int net_fd; /* TCP, carrying TLS */
    int pt_fd;  /* our end of the socketpair; -1 before CONN_RELAY */
    SSL *ssl;
    struct tls_ctx *tctx; /* a reference */
    ev_io net_w, pt_w;
    ev_timer deadline;                    /* the handshake timeout, then the idle one */
    uint8_t net_to_pt[TLS_RELAY_BUF_LEN]; /* decrypted, not yet written to pt_fd */
    size_t net_to_pt_off, net_to_pt_len;
    uint8_t pt_to_net[TLS_RELAY_BUF_LEN]; /* read from pt_fd, not yet taken by SSL_write */
    size_t pt_to_net_len;
    bool net_eof, pt_eof;
    struct spiffe_id expect;        /* client: the server's ID */
    struct weft_peer peer;          /* set by verify_peer; all zero for an anonymous client */
    bool admitted;                  /* server: verify_peer or admit_anonymous let the client in */
    ev_tstamp last_active;          /* CONN_RELAY: when a byte last moved, for the idle timer */
    struct dial_waiter *waiter;     /* client, until CONN_RELAY or close */
    int fail_rc;                    /* WEFT_OK, or why the connection is being refused ... */
    char reason[TLS_RELAY_ERR_LEN]; /* ... in words */
};

struct tls_relay {
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake;
    size_t max_conns;
    double handshake_timeout_s;
    double idle_timeout_s; /* 0: none */
    int64_t (*now)(void *arg);
    void *now_arg;

    pthread_mutex_t mu; /* guards the fields down to |ops| */
    bool stopping;
    struct conn *pending;       /* dials handed to the loop */
    struct tls_ctx *server_ctx; /* current server credentials, NULL until listening */
    int listen_fd;              /* -1, or owned */
    struct tls_relay_server_ops ops;

    bool listening; /* loop thread only from here down */
    ev_io listen_w;
    ev_timer accept_pause;
    unsigned max_accepts_per_s;
    double *accept_times;   /* ring of the last max_accepts_per_s accepts' monotonic times */
    unsigned num_accepts;   /* how many of them are filled in, up to max_accepts_per_s */
    unsigned oldest_accept; /* once full, the index of the oldest */
    struct conn *conns;
    atomic_size_t num_conns;
};

static void fail(struct conn *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum ssl_verify_result_t verify_peer(SSL *ssl, uint8_t *out_alert);
static void on_net_ready(struct ev_loop *loop, ev_io *w, int revents);
static void on_pt_ready(struct ev_loop *loop, ev_io *w, int revents);
static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents);
static void pump(struct conn *c);
static void conn_close(struct conn *c);

static int64_t system_now(void *arg)
{
    (void)arg;
    return (int64_t)time(NULL);
}

static const char *peer_role(const struct conn *c) { return c->is_server ? "client" : "server"; }

/* fail records why |c| is refused. The first failure wins: it is the cause, and whatever
 * BoringSSL reports after it (our own alert, say) is a consequence. */
static void fail(struct conn *c, int rc, const char *fmt, ...)
{
    if (c->fail_rc != WEFT_OK) {
        return;
    }
    c->fail_rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
}

/* --- credentials -------------------------------------------------------------------------- */

static void tctx_unref(struct tls_ctx *t)
{
    if (t != NULL && atomic_fetch_sub(&t->refs, 1) == 1) {
        SSL_CTX_free(t->ssl_ctx);
        spiffe_bundle_set_cleanup(&t->bundles);
        free(t);
    }
}

static struct tls_ctx *tctx_ref(struct tls_ctx *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

static int ssl_ctx_setup(SSL_CTX *ctx, const struct tls_relay_creds *creds)
{
    ENSURE(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) &&
               SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION),
           WEFT_ECRYPTO);
    /* No chain: a client that answers the server's CertificateRequest with an empty
     * Certificate (RFC 8446 §4.4.2). */
    if (creds->chain != NULL) {
        ENSURE(SSL_CTX_use_certificate(ctx, sk_X509_value(creds->chain, 0)) &&
                   SSL_CTX_use_PrivateKey(ctx, creds->key),
               WEFT_ECRYPTO);
        for (size_t i = 1; i < sk_X509_num(creds->chain); i++) {
            ENSURE(SSL_CTX_add1_chain_cert(ctx, sk_X509_value(creds->chain, i)), WEFT_ECRYPTO);
        }
    }
    /* A resumed session skips certificate verification: no caching and no tickets, so every
     * connection proves its SVID afresh, against the current bundles and clock. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* verify_peer replaces BoringSSL's X.509 verification: SPIFFE has its own rules (B1-B12)
     * and the authorities of the peer's trust domain only. A listener with client_cert_optional
     * drops FAIL_IF_NO_PEER_CERT for each of its connections (conn_new). */
    SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_peer);
    return WEFT_OK;
}

/* tctx_new builds a tls_ctx from |creds| with one reference, or returns WEFT_EINVAL for unusable
 * credentials and WEFT_ECRYPTO when BoringSSL refuses them. |cert_optional| accepts creds with
 * neither chain nor key (a dialer without an SVID); a chain without a key, or the reverse, is
 * always unusable. */
static int tctx_new(struct tls_ctx **out, const struct tls_relay_creds *creds, bool cert_optional)
{
    *out = NULL;
    ENSURE(creds != NULL && creds->bundles != NULL, WEFT_EINVAL);
    bool has_cert = creds->chain != NULL || creds->key != NULL;
    ENSURE(has_cert || cert_optional, WEFT_EINVAL);
    if (has_cert) {
        ENSURE(creds->chain != NULL && creds->key != NULL, WEFT_EINVAL);
        ENSURE(sk_X509_num(creds->chain) >= 1 && sk_X509_num(creds->chain) <= SPIFFE_MAX_CHAIN,
               WEFT_EINVAL);
        TRY(spiffe_x509svid_check_key(sk_X509_value(creds->chain, 0), creds->key, NULL));
    }

    struct tls_ctx *t = weft_xcalloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    t->has_cert = has_cert;
    spiffe_bundle_set_init(&t->bundles);
    int rc = spiffe_bundle_set_copy_x509(&t->bundles, creds->bundles);
    if (rc != WEFT_OK) {
        goto out;
    }
    rc = WEFT_ECRYPTO;
    if ((t->ssl_ctx = SSL_CTX_new(TLS_method())) == NULL) {
        goto out;
    }
    rc = ssl_ctx_setup(t->ssl_ctx, creds);
out:
    ERR_clear_error();
    if (rc != WEFT_OK) {
        tctx_unref(t);
        return rc;
    }
    *out = t;
    return WEFT_OK;
}

/* --- verifying the peer ------------------------------------------------------------------- */

/* verify_peer is BoringSSL's custom verify callback, run on the loop thread inside
 * SSL_do_handshake: the client's SVID on a server, the server's on a client. On refusal the
 * reason is in c->reason and BoringSSL sends |*out_alert| to the peer. */
static enum ssl_verify_result_t verify_peer(SSL *ssl, uint8_t *out_alert)
{
    struct conn *c = SSL_get_app_data(ssl);
    struct tls_relay *r = c->r;
    STACK_OF(X509) *chain = NULL;
    struct weft_peer peer;
    memset(&peer, 0, sizeof(peer));
    struct spiffe_why why;
    spiffe_why_clear(&why);
    enum ssl_verify_result_t result = ssl_verify_invalid;
    *out_alert = SSL_AD_BAD_CERTIFICATE;

    int rc = svidtls_peer_chain(&chain, ssl);
    if (rc != WEFT_OK) {
        fail(c, WEFT_EPOLICY, "the %s presented %s", peer_role(c),
             rc == WEFT_ENOTFOUND ? "no certificate"
             : rc == WEFT_ELIMIT  ? "a certificate chain over the length limit"
                                  : "a certificate that does not decode");
        *out_alert = rc == WEFT_ENOTFOUND ? SSL_AD_CERTIFICATE_REQUIRED : SSL_AD_BAD_CERTIFICATE;
        goto out;
    }
    if (spiffe_x509svid_verify(&peer.id, chain, &c->tctx->bundles, r->now(r->now_arg), &why) !=
        WEFT_OK) {
        fail(c, WEFT_EPOLICY, "the %s's SVID failed verification (%s): %s", peer_role(c),
             spiffe_rule_ref(why.rule), why.msg);
        *out_alert = svidtls_alert_for(why.rule);
        goto out;
    }
    spiffe_serial_hex(peer.serial_hex, sk_X509_value(chain, 0));
    if (spiffe_chain_not_after(&peer.not_after, chain) != WEFT_OK) {
        fail(c, WEFT_EPOLICY, "the %s's SVID has an unreadable validity period", peer_role(c));
        goto out;
    }
    if (!c->is_server && !spiffe_id_equal(&peer.id, &c->expect)) {
        fail(c, WEFT_EPOLICY, "the server presented %s, expected %s", peer.id.str, c->expect.str);
        goto out;
    }
    if (c->is_server && r->ops.authorize != NULL && !r->ops.authorize(r->ops.arg, &peer)) {
        fail(c, WEFT_EPOLICY, "the client %s is not authorized", peer.id.str);
        *out_alert = SSL_AD_ACCESS_DENIED;
        goto out;
    }
    c->peer = peer;
    c->admitted = true;
    result = ssl_verify_ok;
out:
    sk_X509_pop_free(chain, X509_free);
    return result;
}

/* admit_anonymous judges a client that presented no certificate. BoringSSL completes such a
 * handshake only without SSL_VERIFY_FAIL_IF_NO_PEER_CERT, i.e. with client_cert_optional, and
 * never calls verify_peer for an empty Certificate (tls13_server.cc skips the
 * CertificateVerify state), so this runs once SSL_do_handshake is done: c->peer stays all
 * zero, authorize sees it, and a refusal's alert goes out on its own. The client learns of it
 * while waiting for our first byte, as it does of any refusal in TLS 1.3. */
static int admit_anonymous(struct conn *c)
{
    struct tls_relay *r = c->r;
    memset(&c->peer, 0, sizeof(c->peer));
    if (!r->ops.client_cert_optional) { /* BoringSSL refused it already; never let it through */
        fail(c, WEFT_EPOLICY, "the client presented no certificate");
        (void)SSL_send_fatal_alert(c->ssl, SSL_AD_CERTIFICATE_REQUIRED);
        return WEFT_EPOLICY;
    }
    if (r->ops.authorize != NULL && !r->ops.authorize(r->ops.arg, &c->peer)) {
        fail(c, WEFT_EPOLICY, "the anonymous client is not authorized");
        (void)SSL_send_fatal_alert(c->ssl, SSL_AD_ACCESS_DENIED);
        return WEFT_EPOLICY;
    }
    c->admitted = true;
    return WEFT_OK;
}

/* --- the TLS side ------------------------------------------------------------------------- */

/* ssl_result interprets a BoringSSL call that returned |ret| <= 0. It returns WEFT_EAGAIN with
 * the events to wait for added to |*want|; WEFT_OK with |*eof| set when the peer closed (with
 * close_notify or a bare FIN); or a failure, recorded in c->reason. */
static int ssl_result(struct conn *c, int ret, int *want, bool *eof)
{
    int e = SSL_get_error(c->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want |= EV_READ;
        return WEFT_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want |= EV_WRITE;
        return WEFT_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        *eof = true;
        return WEFT_OK;
    case SSL_ERROR_SYSCALL:
        if (ret == 0 && ERR_peek_error() == 0) {
            *eof = true;
            return WEFT_OK;
        }
        fail(c, WEFT_EIO, "connection to the %s failed: %s", peer_role(c),
             errno != 0 ? strerror(errno) : "unexpected end of stream");
        break;
    default: {
        uint32_t err = ERR_peek_error();
        int reason = ERR_GET_REASON(err);
        int alert = reason - SSL_AD_REASON_OFFSET;
        if (ERR_GET_LIB(err) == ERR_LIB_SSL && alert >= 0 && alert <= 255 &&
            svidtls_is_certificate_alert(alert) && !c->tctx->has_cert) {
            fail(c, WEFT_EPOLICY,
                 "the %s refused us with TLS alert \"%s\": we presented no certificate",
                 peer_role(c), SSL_alert_desc_string_long(alert));
        } else if (ERR_GET_LIB(err) == ERR_LIB_SSL && alert >= 0 && alert <= 255 &&
                   svidtls_is_certificate_alert(alert)) {
            fail(c, WEFT_EPOLICY,
                 "the %s refused our SVID with TLS alert \"%s\": its verification or "
                 "authorization of our certificate failed",
                 peer_role(c), SSL_alert_desc_string_long(alert));
        } else if (ERR_GET_LIB(err) == ERR_LIB_SSL && alert >= 0 && alert <= 255) {
            fail(c, WEFT_EPROTO, "the %s sent TLS alert \"%s\"", peer_role(c),
                 SSL_alert_desc_string_long(alert));
        } else {
            const char *what = ERR_reason_error_string(err);
            fail(c, WEFT_EPROTO, "TLS with the %s failed: %s", peer_role(c),
                 what != NULL ? what : "unknown error");
        }
        break;
    }
    }
    return c->fail_rc;
}

/* watch makes |w| wait for exactly |events| on |fd|; 0 stops it. */
static void watch(struct ev_loop *loop, ev_io *w, int fd, int events)
{
    if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events) {
        return;
    }
    ev_io_stop(loop, w);
    if (events != 0) {
        ev_io_set(w, fd, events);
        ev_io_start(loop, w);
    }
}

/* finish_waiter wakes the dialing thread: with |fd| on success, else with c's failure. */
static void finish_waiter(struct conn *c, int fd)
{
    struct dial_waiter *w = c->waiter;
    if (w == NULL) {
        return;
    }
    c->waiter = NULL;
    pthread_mutex_lock(&w->mu);
    w->rc = fd >= 0 ? WEFT_OK : c->fail_rc;
    w->fd = fd;
    w->peer = c->peer;
    snprintf(w->err, sizeof(w->err), "%s", fd >= 0 ? "" : c->reason);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu); /* from here on |w| may be gone */
}

/* start_relaying makes the socketpair. The other end goes to the dialer or to on_peer. */
static int start_relaying(struct conn *c)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        fail(c, WEFT_EIO, "socketpair: %s", strerror(errno));
        return WEFT_EIO;
    }
    c->pt_fd = sv[0];
    c->state = CONN_RELAY;
    ev_timer_stop(c->r->loop, &c->deadline);
    if (c->r->idle_timeout_s > 0) {
        c->last_active = ev_now(c->r->loop);
        ev_timer_set(&c->deadline, c->r->idle_timeout_s, 0.);
        ev_timer_start(c->r->loop, &c->deadline);
    }
    if (c->is_server) {
        c->r->ops.on_peer(c->r->ops.arg, sv[1], &c->peer);
    } else {
        finish_waiter(c, sv[1]);
    }
    return WEFT_OK;
}

/* handshake advances the handshake. WEFT_OK: the peer is verified and, on a server, handed
 * over. WEFT_EAGAIN: |*want| says on what to wait. Otherwise c->reason says why it failed. */
static int handshake(struct conn *c, int *want)
{
    int ret = SSL_do_handshake(c->ssl);
    if (ret != 1) {
        bool eof = false;
        int rc = ssl_result(c, ret, want, &eof);
        if (eof) {
            fail(c, WEFT_EIO, "the %s closed the connection during the TLS handshake",
                 peer_role(c));
            rc = WEFT_EIO;
        }
        return rc;
    }
    if (!c->is_server) {
        c->state = CONN_FIRST_BYTE;
        return WEFT_OK;
    }
    if (!c->admitted) {
        TRY(admit_anonymous(c));
    }
    return start_relaying(c);
}

/* read_first_byte waits for the server's first application data. In TLS 1.3 the server judges
 * our certificate after our side of the handshake is over (RFC 8446 §4.4.2), so this is where a
 * refusal shows up: as an alert instead of data. */
static int read_first_byte(struct conn *c, int *want)
{
    int n = SSL_read(c->ssl, c->net_to_pt, sizeof(c->net_to_pt));
    if (n <= 0) {
        bool eof = false;
        int rc = ssl_result(c, n, want, &eof);
        if (eof) {
            fail(c, WEFT_EIO, "the server closed the connection before sending anything");
            rc = WEFT_EIO;
        }
        return rc;
    }
    c->net_to_pt_off = 0;
    c->net_to_pt_len = (size_t)n;
    return start_relaying(c);
}

/* relay moves bytes both ways until nothing moves. Each pass starts with no wishes, so only the
 * last pass, the one that got stuck, decides what the watchers wait for. Returns whether |c|
 * stays open; when it does not, c->fail_rc says whether it failed (c->reason why) or ended. */
static bool relay(struct conn *c, int *net_want, int *pt_want)
{
    ev_tstamp now = ev_now(c->r->loop);
    for (bool progress = true; progress;) {
        progress = false;
        *net_want = *pt_want = 0;
        bool eof = false;

        /* TLS -> plaintext */
        if (c->net_to_pt_len == 0 && !c->net_eof) {
            int n = SSL_read(c->ssl, c->net_to_pt, sizeof(c->net_to_pt));
            if (n > 0) {
                c->net_to_pt_off = 0;
                c->net_to_pt_len = (size_t)n;
                c->last_active = now;
                progress = true;
            } else {
                int rc = ssl_result(c, n, net_want, &eof);
                if (rc != WEFT_OK && rc != WEFT_EAGAIN) {
                    return false;
                }
                c->net_eof = eof;
                progress = eof;
            }
        }
        if (c->net_to_pt_len > 0) {
            ssize_t n =
                send(c->pt_fd, c->net_to_pt + c->net_to_pt_off, c->net_to_pt_len, MSG_NOSIGNAL);
            if (n > 0) {
                c->net_to_pt_off += (size_t)n;
                c->net_to_pt_len -= (size_t)n;
                c->last_active = now;
                progress = true;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                *pt_want |= EV_WRITE;
            } else {
                fail(c, WEFT_EIO, "plaintext side: %s", strerror(errno));
                return false;
            }
        }

        /* plaintext -> TLS */
        if (c->pt_to_net_len == 0 && !c->pt_eof) {
            ssize_t n = recv(c->pt_fd, c->pt_to_net, sizeof(c->pt_to_net), 0);
            if (n > 0) {
                c->pt_to_net_len = (size_t)n;
                c->last_active = now;
                progress = true;
            } else if (n == 0) {
                c->pt_eof = true;
                progress = true;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                *pt_want |= EV_READ;
            } else {
                fail(c, WEFT_EIO, "plaintext side: %s", strerror(errno));
                return false;
            }
        }
        if (c->pt_to_net_len > 0) {
            /* SSL_write takes all or nothing (no SSL_MODE_ENABLE_PARTIAL_WRITE), and a retry
             * after WANT_* must pass the same buffer and length: pt_to_net stays put. */
            int n = SSL_write(c->ssl, c->pt_to_net, (int)c->pt_to_net_len);
            if (n > 0) {
                c->pt_to_net_len = 0;
                c->last_active = now;
                progress = true;
            } else {
                int rc = ssl_result(c, n, net_want, &eof);
                if (rc == WEFT_OK) {
                    fail(c, WEFT_EIO, "the %s closed the connection", peer_role(c));
                }
                if (rc != WEFT_EAGAIN) {
                    return false;
                }
            }
        }

        /* Either side's EOF ends the connection once what that side sent is delivered. */
        if ((c->net_eof && c->net_to_pt_len == 0) || (c->pt_eof && c->pt_to_net_len == 0)) {
            return false;
        }
    }
    return true;
}

static void pump(struct conn *c)
{
    struct ev_loop *loop = c->r->loop;
    int net_want = 0, pt_want = 0;
    int rc = WEFT_OK;
    ERR_clear_error(); /* SSL_get_error reads the thread's error queue: start it empty */
    if (c->state == CONN_HANDSHAKE) {
        rc = handshake(c, &net_want);
    }
    if (rc == WEFT_OK && c->state == CONN_FIRST_BYTE) {
        rc = read_first_byte(c, &net_want);
    }
    if (rc == WEFT_OK && c->state == CONN_RELAY && !relay(c, &net_want, &pt_want)) {
        conn_close(c);
        return;
    }
    if (rc != WEFT_OK && rc != WEFT_EAGAIN) {
        conn_close(c);
        return;
    }
    watch(loop, &c->net_w, c->net_fd, net_want);
    if (c->pt_fd >= 0) {
        watch(loop, &c->pt_w, c->pt_fd, pt_want);
    }
}

/* --- connections -------------------------------------------------------------------------- */

/* conn_new wraps the TCP socket |fd| with a new SSL for |t| (whose reference it takes). On NULL
 * nothing was taken. */
static struct conn *conn_new(struct tls_relay *r, int fd, struct tls_ctx *t, bool is_server)
{
    SSL *ssl = SSL_new(t->ssl_ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    struct conn *c = weft_xcalloc(1, sizeof(*c));
    c->r = r;
    c->is_server = is_server;
    c->state = CONN_HANDSHAKE;
    c->net_fd = fd;
    c->pt_fd = -1;
    c->ssl = ssl;
    c->tctx = t;
    SSL_set_app_data(ssl, c);
    if (is_server && r->ops.client_cert_optional) {
        /* Request a certificate and verify any that comes, but let a client present none. */
        SSL_set_custom_verify(ssl, SSL_VERIFY_PEER, verify_peer);
    }
    if (is_server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
    }
    return c;
}

/* conn_free releases what conn_new took: the SSL, both sockets, the credentials. */
static void conn_free(struct conn *c)
{
    SSL_free(c->ssl);
    close(c->net_fd);
    if (c->pt_fd >= 0) {
        close(c->pt_fd);
    }
    tctx_unref(c->tctx);
    free(c);
}

/* drain reads and drops what |fd| has buffered. A socket closed with unread input sends a reset
 * (RFC 1122 §4.2.2.13), which can overtake the alert we just sent: the refused peer would then
 * see "connection reset" instead of its reason. */
static void drain(int fd)
{
    uint8_t sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++) {
    }
}

/* conn_close is every connection's way out: stop the watchers, tell whoever waits for the
 * connection why it failed, say goodbye on TLS, release everything. |c| is gone afterwards. */
static void conn_close(struct conn *c)
{
    struct tls_relay *r = c->r;
    ev_io_stop(r->loop, &c->net_w);
    ev_io_stop(r->loop, &c->pt_w);
    ev_timer_stop(r->loop, &c->deadline);
    if (c->state != CONN_RELAY) {
        fail(c, WEFT_EIO, "the connection closed before the %s was verified", peer_role(c));
        finish_waiter(c, -1);
        if (c->is_server && r->ops.on_refused != NULL) {
            r->ops.on_refused(r->ops.arg, c->reason);
        }
        drain(c->net_fd);
    } else if (c->fail_rc == WEFT_OK && c->pt_eof) {
        SSL_shutdown(c->ssl); /* best effort close_notify: our side ended cleanly */
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        r->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    atomic_fetch_sub(&r->num_conns, 1);
    ERR_clear_error();
    conn_free(c);
}

/* conn_start gives |c| to the loop: it joins r->conns, its watchers and handshake timer are set
 * up, and the handshake begins. */
static void conn_start(struct tls_relay *r, struct conn *c)
{
    /* Nagle's algorithm and delayed ACKs cost ~20 ms per unary call on the TCP socket (measured
     * in the spike); gRPC sets TCP_NODELAY on sockets it owns, and this one is ours. (It fails,
     * harmlessly, when the dialer hands us a unix socket.) */
    int one = 1;
    (void)setsockopt(c->net_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* best effort */
    c->prev = NULL;
    c->next = r->conns;
    if (r->conns != NULL) {
        r->conns->prev = c;
    }
    r->conns = c;
    size_t n = atomic_fetch_add(&r->num_conns, 1) + 1;
    ev_io_init(&c->net_w, on_net_ready, c->net_fd, 0);
    ev_io_init(&c->pt_w, on_pt_ready, -1, 0);
    ev_timer_init(&c->deadline, on_deadline, r->handshake_timeout_s, 0.);
    if (n > r->max_conns) {
        fail(c, WEFT_ELIMIT, "the relay already holds its maximum of %zu connections",
             r->max_conns);
        conn_close(c);
        return;
    }
    ev_timer_start(r->loop, &c->deadline);
    pump(c);
}

static void on_net_ready(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    pump(container_of(w, struct conn, net_w));
}

static void on_pt_ready(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    pump(container_of(w, struct conn, pt_w));
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = container_of(w, struct conn, deadline);
    if (c->state == CONN_RELAY) {
        /* One timer per connection, moved forward only when it fires, rather than restarted on
         * every byte [libev manual, ev_timer, "be smart about timeouts"]. */
        ev_tstamp left = c->last_active + c->r->idle_timeout_s - ev_now(loop);
        if (left > 0) {
            ev_timer_set(w, left, 0.);
            ev_timer_start(loop, w);
            return;
        }
        fail(c, WEFT_EIO, "idle for %.0f ms", c->r->idle_timeout_s * 1000);
        conn_close(c);
        return;
    }
    fail(c, WEFT_EIO, "%s after %.0f ms",
         c->state == CONN_FIRST_BYTE ? "the server sent nothing" : "the TLS handshake timed out",
         c->r->handshake_timeout_s * 1000);
    conn_close(c);
}

/* --- the loop ----------------------------------------------------------------------------- */

static void refuse(struct tls_relay *r, const char *reason)
{
    if (r->ops.on_refused != NULL) {
        r->ops.on_refused(r->ops.arg, reason);
    }
}

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* accept_allowed says whether one more accept fits the rate: fewer than max_accepts_per_s in
 * the last second. If so it records it. A sliding window rather than calendar seconds, so that
 * a burst straddling a second's boundary gets N, not 2N; refused accepts are not recorded, so a
 * flood does not lock out the clients that come at the rate. */
static bool accept_allowed(struct tls_relay *r, double now)
{
    if (r->num_accepts < r->max_accepts_per_s) {
        r->accept_times[r->num_accepts++] = now;
        return true;
    }
    if (now - r->accept_times[r->oldest_accept] < 1.) {
        return false;
    }
    r->accept_times[r->oldest_accept] = now;
    r->oldest_accept = (r->oldest_accept + 1) % r->max_accepts_per_s;
    return true;
}

static void on_listen_ready(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct tls_relay *r = container_of(w, struct tls_relay, listen_w);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE, ENOBUFS, ...: the connection stays queued and readiness is
                 * level-triggered, so retrying now would spin. Pause instead [nginx]. */
                refuse(r, strerror(errno));
                ev_io_stop(loop, &r->listen_w);
                ev_timer_start(loop, &r->accept_pause);
            }
            return;
        }
        if (!accept_allowed(r, monotonic_s())) {
            char reason[64];
            snprintf(reason, sizeof(reason), "connection rate limit: %u per second",
                     r->max_accepts_per_s);
            refuse(r, reason);
            close(fd);
            continue;
        }
        if (atomic_load(&r->num_conns) >= r->max_conns) {
            refuse(r, "connection limit reached");
            close(fd);
            continue;
        }
        pthread_mutex_lock(&r->mu);
        struct tls_ctx *t = tctx_ref(r->server_ctx);
        pthread_mutex_unlock(&r->mu);
        struct conn *c = conn_new(r, fd, t, true);
        if (c == NULL) {
            refuse(r, "BoringSSL could not start a connection");
            tctx_unref(t);
            close(fd);
            continue;
        }
        conn_start(r, c);
    }
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tls_relay *r = container_of(w, struct tls_relay, accept_pause);
    ev_io_start(loop, &r->listen_w);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct tls_relay *r = container_of(w, struct tls_relay, wake);
    pthread_mutex_lock(&r->mu);
    struct conn *pending = r->pending;
    r->pending = NULL;
    bool start_listening = r->listen_fd >= 0 && !r->listening;
    bool stop = r->stopping;
    pthread_mutex_unlock(&r->mu);

    if (start_listening) {
        r->listening = true;
        ev_io_init(&r->listen_w, on_listen_ready, r->listen_fd, EV_READ);
        ev_io_start(loop, &r->listen_w);
    }
    while (pending != NULL) {
        struct conn *c = pending;
        pending = c->next;
        conn_start(r, c);
    }
    if (stop) {
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *relay_main(void *arg)
{
    struct tls_relay *r = arg;
    ev_run(r->loop, 0);
    /* Stopped: nothing is handed over any more (r->stopping), so whatever is left is ours. */
    pthread_mutex_lock(&r->mu);
    struct conn *pending = r->pending;
    r->pending = NULL;
    pthread_mutex_unlock(&r->mu);
    while (pending != NULL) {
        struct conn *c = pending;
        pending = c->next;
        fail(c, WEFT_EIO, "the relay stopped");
        finish_waiter(c, -1);
        conn_free(c);
    }
    while (r->conns != NULL) {
        fail(r->conns, WEFT_EIO, "the relay stopped");
        conn_close(r->conns);
    }
    ev_io_stop(r->loop, &r->listen_w);
    ev_timer_stop(r->loop, &r->accept_pause);
    ev_async_stop(r->loop, &r->wake);
    return NULL;
}

/* --- the API ------------------------------------------------------------------------------ */

int tls_relay_new(struct tls_relay **out, const struct tls_relay_config *cfg)
{
    static const struct tls_relay_config defaults;
    *out = NULL;
    cfg = cfg != NULL ? cfg : &defaults;
    ENSURE(cfg->handshake_timeout_ms >= 0 && cfg->idle_timeout_ms >= 0, WEFT_EINVAL);
    ENSURE(cfg->max_accepts_per_s <= TLS_RELAY_MAX_ACCEPTS_PER_S, WEFT_EINVAL);

    struct tls_relay *r = weft_xcalloc(1, sizeof(*r));
    r->max_conns = cfg->max_conns != 0 ? cfg->max_conns : TLS_RELAY_DEFAULT_MAX_CONNS;
    r->handshake_timeout_s =
        (double)(cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms
                                                : TLS_RELAY_DEFAULT_HANDSHAKE_TIMEOUT_MS) /
        1000.;
    r->idle_timeout_s = (double)cfg->idle_timeout_ms / 1000.;
    r->max_accepts_per_s =
        cfg->max_accepts_per_s != 0 ? cfg->max_accepts_per_s : TLS_RELAY_DEFAULT_MAX_ACCEPTS_PER_S;
    r->accept_times = weft_xcalloc(r->max_accepts_per_s, sizeof(*r->accept_times));
    r->now = cfg->now != NULL ? cfg->now : system_now;
    r->now_arg = cfg->now_arg;
    r->listen_fd = -1;
    atomic_init(&r->num_conns, 0);
    if ((r->loop = ev_loop_new(EVFLAG_AUTO)) == NULL) {
        free(r->accept_times);
        free(r);
        return WEFT_EIO;
    }
    pthread_mutex_init(&r->mu, NULL);
    ev_async_init(&r->wake, on_wake);
    ev_async_start(r->loop, &r->wake);
    ev_init(&r->listen_w, on_listen_ready);
    ev_timer_init(&r->accept_pause, on_accept_pause, ACCEPT_PAUSE_S, 0.);

    /* BoringSSL's socket BIO writes with write(2), which raises SIGPIPE on a connection the peer
     * reset. The thread inherits our signal mask, so block SIGPIPE for it alone: its writes then
     * fail with EPIPE, and the process's disposition stays the caller's business. */
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    int err = pthread_create(&r->thread, NULL, relay_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        ev_loop_destroy(r->loop);
        pthread_mutex_destroy(&r->mu);
        free(r->accept_times);
        free(r);
        return WEFT_EIO;
    }
    pthread_setname_np(r->thread, THREAD_NAME);
    *out = r;
    return WEFT_OK;
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    ENSURE(flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, WEFT_EIO);
    return WEFT_OK;
}

int tls_relay_listen(struct tls_relay *r, int listen_fd, const struct tls_relay_creds *creds,
                     const struct tls_relay_server_ops *ops)
{
    struct tls_ctx *t = NULL;
    int rc = WEFT_EINVAL;
    if (listen_fd < 0 || ops == NULL || ops->on_peer == NULL) {
        goto out;
    }
    if ((rc = tctx_new(&t, creds, false)) != WEFT_OK ||
        (rc = set_nonblocking(listen_fd)) != WEFT_OK) {
        goto out;
    }
    pthread_mutex_lock(&r->mu);
    rc = r->listen_fd < 0 && !r->stopping ? WEFT_OK : WEFT_EINVAL;
    if (rc == WEFT_OK) {
        r->listen_fd = listen_fd;
        r->ops = *ops;
        r->server_ctx = t;
        listen_fd = -1;
        t = NULL;
        /* the loop starts watching the socket; woken under the lock, as in tls_relay_dial */
        ev_async_send(r->loop, &r->wake);
    }
    pthread_mutex_unlock(&r->mu);
out:
    if (listen_fd >= 0) {
        close(listen_fd);
    }
    tctx_unref(t);
    return rc;
}

int tls_relay_set_server_creds(struct tls_relay *r, const struct tls_relay_creds *creds)
{
    struct tls_ctx *t;
    TRY(tctx_new(&t, creds, false));
    pthread_mutex_lock(&r->mu);
    struct tls_ctx *old = r->server_ctx;
    int rc = old != NULL ? WEFT_OK : WEFT_EINVAL; /* nothing to replace before listening */
    if (rc == WEFT_OK) {
        r->server_ctx = t;
        t = old;
    }
    pthread_mutex_unlock(&r->mu);
    /* The replaced credentials go once the connections that started with them are gone: each
     * holds its own reference. */
    tctx_unref(t);
    return rc;
}

int tls_relay_dial(struct tls_relay *r, int *out_fd, struct weft_peer *out_peer, int net_fd,
                   const struct tls_relay_creds *creds, const struct spiffe_id *expect, char *err,
                   size_t err_len)
{
    struct dial_waiter w = {.rc = WEFT_EINTERNAL, .fd = -1};
    struct tls_ctx *t = NULL;
    struct conn *c = NULL;
    *out_fd = -1;
    memset(out_peer, 0, sizeof(*out_peer));

    int rc = WEFT_EINVAL;
    if (pthread_equal(pthread_self(), r->thread)) {
        snprintf(w.err, sizeof(w.err), "tls_relay_dial called on the relay's own thread");
        goto out;
    }
    if (expect == NULL || expect->len == 0) {
        snprintf(w.err, sizeof(w.err), "no server ID to expect");
        goto out;
    }
    if ((rc = tctx_new(&t, creds, true)) != WEFT_OK) {
        snprintf(w.err, sizeof(w.err), "unusable client credentials: %s", weft_strerror(rc));
        goto out;
    }
    if ((rc = set_nonblocking(net_fd)) != WEFT_OK) {
        snprintf(w.err, sizeof(w.err), "socket: %s", strerror(errno));
        goto out;
    }
    if ((c = conn_new(r, net_fd, t, false)) == NULL) {
        rc = WEFT_ECRYPTO;
        snprintf(w.err, sizeof(w.err), "BoringSSL could not start a connection");
        goto out;
    }
    net_fd = -1;
    t = NULL;
    c->expect = *expect;
    c->waiter = &w;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);

    pthread_mutex_lock(&r->mu);
    bool stopping = r->stopping;
    if (!stopping) {
        c->next = r->pending;
        r->pending = c;
        /* Woken under the lock: tls_relay_free takes it to set |stopping| before it frees
         * anything, so |r| is alive for this call. */
        ev_async_send(r->loop, &r->wake);
    }
    pthread_mutex_unlock(&r->mu);
    if (stopping) {
        rc = WEFT_EIO;
        snprintf(w.err, sizeof(w.err), "the relay is stopping");
        conn_free(c);
    } else {
        /* Bounded: the loop's handshake timer, or tls_relay_free, ends every connection it is
         * handed, and each end goes through finish_waiter. */
        pthread_mutex_lock(&w.mu);
        while (!w.done) {
            pthread_cond_wait(&w.cv, &w.mu);
        }
        pthread_mutex_unlock(&w.mu);
        rc = w.rc;
        *out_fd = w.fd;
        *out_peer = w.peer;
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
out:
    if (net_fd >= 0) {
        close(net_fd);
    }
    tctx_unref(t);
    if (err_len > 0) {
        snprintf(err, err_len, "%s", rc == WEFT_OK ? "" : w.err);
    }
    return rc;
}

size_t tls_relay_num_conns(struct tls_relay *r) { return atomic_load(&r->num_conns); }

void tls_relay_free(struct tls_relay *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_mutex_unlock(&r->mu);
    ev_async_send(r->loop, &r->wake);
    pthread_join(r->thread, NULL);
    if (r->listen_fd >= 0) {
        close(r->listen_fd);
    }
    tctx_unref(r->server_ctx);
    ev_loop_destroy(r->loop);
    pthread_mutex_destroy(&r->mu);
    free(r->accept_times);
    free(r);
}
