/* proxy/tls.c: mutual TLS 1.3 for the sidecar on BoringSSL, the one file that includes
 * <openssl/ssl.h> (STYLE.md §6). See tls.h for the rules; the comments here say why. */
#include "proxy/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "lib/transport/svidtls.h"
#include "lib/base/mem.h"
#include "lib/spiffe/id.h"
#include "lib/spiffe/x509svid.h"

static const uint8_t alpn_wire[] = {6, 'w', 'e', 'f', 't', '/', '1'}; /* RFC 7301 §3.1 */

struct cached_session {
    char *id;          /* the server ID it was made with, and the only one it is offered to */
    SSL_SESSION *sess; /* a reference */
    int64_t until;     /* seconds since the epoch: offered only before this */
};

/* struct verified_chain remembers a peer chain these creds verified (tls.h). */
struct verified_chain {
    uint8_t digest[SHA256_DIGEST_LENGTH]; /* of the chain as presented (chain_digest) */
    int64_t from, until; /* each of its certificates, and each authority of its trust domain,
                          * is valid in [from, until) */
};

struct tls_creds {
    atomic_int refs;
    SSL_CTX *client_ctx;
    SSL_CTX *server_ctx;
    struct spiffe_bundle_set bundles; /* our own copy of the X.509 authorities */
    char **deny_ids;                  /* sorted, for bsearch */
    size_t num_deny_ids;
    char **deny_serials; /* sorted */
    size_t num_deny_serials;
    int64_t ticket_life_s; /* 0: no tickets */
    struct spiffe_id id;   /* our own */
    int64_t not_after;     /* the earliest of our chain */

    pthread_mutex_t mu; /* guards the client tickets and verified chains below: the rest never
                         * changes */
    struct cached_session *sessions;
    size_t num_sessions;
    struct verified_chain *verified; /* a ring of TLS_VERIFIED_CHAINS */
    size_t num_verified, next_verified;
    atomic_ulong verified_hits;
};

struct tls_conn {
    SSL *ssl;
    struct tls_creds *creds; /* a reference */
    bool is_server;
    bool done;         /* handshake complete and the peer judged */
    bool alpn_refused; /* server: the ClientHello did not offer weft/1 */
    bool shut;         /* our close_notify is out */
    char *expected;    /* client: the server ID required */
    char *peer_id;     /* NULL until judged */
    char peer_serial[SPIFFE_SERIAL_HEX_LEN];
    int64_t peer_not_after;
    int64_t resume_until;
    int fail_rc;
    char reason[TLS_REASON_LEN];
};

static enum ssl_verify_result_t verify_cb(SSL *ssl, uint8_t *out_alert);
static enum ssl_select_cert_result_t early_cb(const SSL_CLIENT_HELLO *hello);
static int alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                          unsigned in_len, void *arg);
static int new_session_cb(SSL *ssl, SSL_SESSION *sess);
static void fail(struct tls_conn *t, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int64_t now_s(void) { return (int64_t)time(NULL); }

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* fail records why |t| failed. The first failure wins: it is the cause, and what BoringSSL
 * reports after it (our own alert, say) is a consequence. */
static void fail(struct tls_conn *t, int rc, const char *fmt, ...)
{
    if (t->fail_rc != WEFT_OK) {
        return;
    }
    t->fail_rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
    va_end(ap);
}

/* --- the socket BIO --------------------------------------------------------------------- */

/* BoringSSL's socket BIO writes with write(2), which raises SIGPIPE when the peer has reset the
 * connection. The proxy serves thousands of sockets: one reset must never kill it, whatever the
 * process's signal disposition, so our BIO sends with MSG_NOSIGNAL [as plain_xprt does].
 *
 * It also reads ahead and writes behind, because system calls, not cryptography, are most of a
 * relay's cost (issue 7's profiles: about 80 % of the proxy's CPU in the kernel):
 *  - BoringSSL asks for a record's 5-byte header, then for its body: two recv(2) calls per
 *    record. Our BIO reads what the socket has, up to SOCK_READ_AHEAD (several records), and
 *    hands it out from there. Bytes it holds are always handed to BoringSSL before the BIO
 *    reports "would block", so nothing waits in it unseen by the relay.
 *  - BoringSSL writes each record as it seals it: one send(2) per 16 KiB. Our BIO keeps what
 *    it is given, up to SOCK_WRITE_BEHIND, and sends it in one call when tls_send (or BoringSSL's
 *    BIO_flush, after each handshake flight) flushes it. What a full socket leaves stays until
 *    the relay, told XPRT_WANT_WRITE, comes back when the socket is writable.
 * Both buffers exist only while they hold bytes, so an idle connection keeps neither. */
#define TLS_RECORD_MAX (16 * 1024 + 256)         /* plaintext, and AEAD overhead */
#define SOCK_READ_AHEAD (4 * TLS_RECORD_MAX + 5) /* four records, the next header */
#define SOCK_WRITE_BEHIND (4 * TLS_RECORD_MAX)

struct sock {
    int fd;
    uint8_t *in; /* read ahead: in[in_off..in_len) not handed out yet; NULL when none */
    size_t in_off, in_len;
    bool in_short; /* the last recv(2) got less than it asked for: the socket was empty */
    uint8_t *out;  /* written behind: out[out_off..out_len) not sent yet; NULL when none */
    size_t out_off, out_len;
    int err; /* the errno of a send(2) that failed for good; 0: none */
};

static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

static bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

static int sock_read(BIO *b, char *out, int len)
{
    struct sock *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) {
        return 0;
    }
    if (s->in == NULL && (size_t)len < SOCK_READ_AHEAD) {
        s->in = weft_xmalloc(SOCK_READ_AHEAD);
        ssize_t n = recv(s->fd, s->in, SOCK_READ_AHEAD, 0);
        s->in_short = n < (ssize_t)SOCK_READ_AHEAD;
        if (n <= 0) {
            free(s->in);
            s->in = NULL;
            if (n < 0 && would_block(errno)) {
                BIO_set_retry_read(b);
            }
            return (int)n;
        }
        s->in_off = 0;
        s->in_len = (size_t)n;
    }
    if (s->in == NULL) { /* asked for at least a buffer's worth: straight in */
        ssize_t n = recv(s->fd, out, (size_t)len, 0);
        s->in_short = n < len;
        if (n < 0 && would_block(errno)) {
            BIO_set_retry_read(b);
        }
        return (int)n;
    }
    size_t n = s->in_len - s->in_off < (size_t)len ? s->in_len - s->in_off : (size_t)len;
    memcpy(out, s->in + s->in_off, n);
    s->in_off += n;
    if (s->in_off == s->in_len) {
        free(s->in);
        s->in = NULL;
    }
    return (int)n;
}

/* sock_send sends what the BIO holds: WEFT_OK when it holds nothing any more, WEFT_EAGAIN when
 * the socket is full, WEFT_EIO (with s->err) when the connection failed. */
static int sock_send(struct sock *s)
{
    while (s->out != NULL && s->err == 0) {
        ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return WEFT_EAGAIN;
            }
            s->err = errno;
            break;
        }
        s->out_off += (size_t)n;
        if (s->out_off == s->out_len) {
            free(s->out);
            s->out = NULL;
            s->out_off = s->out_len = 0;
        }
    }
    return s->err != 0 ? WEFT_EIO : WEFT_OK;
}

static int sock_write(BIO *b, const char *buf, int len)
{
    struct sock *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) {
        return 0;
    }
    if (s->out != NULL && s->out_len - s->out_off + (size_t)len > SOCK_WRITE_BEHIND) {
        int rc = sock_send(s); /* no room: make some */
        if (rc == WEFT_EIO) {
            return -1;
        }
        if (rc == WEFT_EAGAIN && s->out_len - s->out_off + (size_t)len > SOCK_WRITE_BEHIND) {
            BIO_set_retry_write(b);
            return -1;
        }
    }
    if (s->err != 0) {
        return -1;
    }
    if (s->out == NULL && (size_t)len > SOCK_WRITE_BEHIND) { /* never from BoringSSL: direct */
        ssize_t n = send(s->fd, buf, (size_t)len, MSG_NOSIGNAL);
        if (n < 0 && would_block(errno)) {
            BIO_set_retry_write(b);
        } else if (n < 0) {
            s->err = errno;
        }
        return (int)n;
    }
    if (s->out == NULL) {
        s->out = weft_xmalloc(SOCK_WRITE_BEHIND);
    } else if (s->out_len + (size_t)len > SOCK_WRITE_BEHIND) {
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    memcpy(s->out + s->out_len, buf, (size_t)len);
    s->out_len += (size_t)len;
    return len;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct sock *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return s != NULL && s->in != NULL ? (long)(s->in_len - s->in_off) : 0;
    case BIO_CTRL_WPENDING:
        return s != NULL && s->out != NULL ? (long)(s->out_len - s->out_off) : 0;
    case BIO_CTRL_FLUSH: /* after each handshake flight; a full socket: BoringSSL retries */
        if (s == NULL) {
            return 1;
        }
        BIO_clear_retry_flags(b);
        if (sock_send(s) == WEFT_EAGAIN) {
            BIO_set_retry_write(b);
            return -1;
        }
        return s->err == 0 ? 1 : -1;
    default:
        return 0;
    }
}

static int sock_destroy(BIO *b)
{
    struct sock *s = BIO_get_data(b);
    if (s != NULL) {
        free(s->in);
        free(s->out);
        free(s);
        BIO_set_data(b, NULL);
    }
    return 1;
}

static void sock_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft socket");
    if (m != NULL && BIO_meth_set_read(m, sock_read) && BIO_meth_set_write(m, sock_write) &&
        BIO_meth_set_ctrl(m, sock_ctrl) && BIO_meth_set_destroy(m, sock_destroy)) {
        sock_method = m;
    } else {
        BIO_meth_free(m);
    }
}

static BIO *sock_bio_new(int fd)
{
    pthread_once(&sock_method_once, sock_method_init);
    BIO *b = sock_method != NULL ? BIO_new(sock_method) : NULL;
    if (b != NULL) {
        struct sock *s = weft_xcalloc(1, sizeof(*s));
        s->fd = fd;
        BIO_set_data(b, s);
        BIO_set_init(b, 1);
    }
    return b;
}

static struct sock *sock_of(const struct tls_conn *t) { return BIO_get_data(SSL_get_wbio(t->ssl)); }

/* --- credentials -------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char **copy_sorted(const char *const *in, size_t n)
{
    if (n == 0) {
        return NULL;
    }
    char **out = weft_xcalloc(n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = weft_xstrndup(in[i], strlen(in[i]));
    }
    qsort(out, n, sizeof(*out), cmp_str);
    return out;
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; s != NULL && i < n; i++) {
        free(s[i]);
    }
    free(s);
}

static bool listed(char *const *list, size_t n, const char *v)
{
    return n > 0 && bsearch(&v, list, n, sizeof(*list), cmp_str) != NULL;
}

/* The contexts use BoringSSL's buffers-only method: a peer's chain is kept as its DER (which
 * judge_peer reads with SSL_get0_peer_certificates), never as parsed X509 objects, which cost a
 * server about 9 KiB per connection (each session is new there, even a resumed one). The DER
 * buffers come from one pool for the process, so every connection from one peer, and every
 * chain through one intermediate, shares them. The pool lives as long as the process: a
 * session may hold its buffers after its creds are gone. */
static CRYPTO_BUFFER_POOL *cert_pool;
static pthread_once_t cert_pool_once = PTHREAD_ONCE_INIT;

static void cert_pool_init(void) { cert_pool = CRYPTO_BUFFER_POOL_new(); }

/* use_chain gives |ctx| our chain (as pooled DER) and key. */
static int use_chain(SSL_CTX *ctx, const STACK_OF(X509) * chain, EVP_PKEY *key)
{
    CRYPTO_BUFFER *bufs[SPIFFE_MAX_CHAIN] = {NULL};
    size_t n = sk_X509_num(chain);
    int rc = n <= SPIFFE_MAX_CHAIN ? WEFT_OK : WEFT_ELIMIT;
    for (size_t i = 0; i < n && rc == WEFT_OK; i++) {
        uint8_t *der = NULL;
        int len = i2d_X509(sk_X509_value(chain, i), &der);
        bufs[i] = len > 0 ? CRYPTO_BUFFER_new(der, (size_t)len, cert_pool) : NULL;
        OPENSSL_free(der);
        rc = bufs[i] != NULL ? WEFT_OK : WEFT_ECRYPTO;
    }
    if (rc == WEFT_OK && !SSL_CTX_set_chain_and_key(ctx, bufs, n, key, NULL)) {
        rc = WEFT_ECRYPTO;
    }
    for (size_t i = 0; i < n && i < SPIFFE_MAX_CHAIN; i++) {
        CRYPTO_BUFFER_free(bufs[i]);
    }
    return rc;
}

static int ctx_setup(SSL_CTX *ctx, const STACK_OF(X509) * chain, EVP_PKEY *key, int64_t ticket_life,
                     bool server)
{
    ENSURE(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) &&
               SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) &&
               SSL_CTX_set1_curves_list(ctx, "X25519:P-256"),
           WEFT_ECRYPTO);
    SSL_CTX_set0_buffer_pool(ctx, cert_pool);
    TRY(use_chain(ctx, chain, key));
    /* verify_cb replaces BoringSSL's X.509 verification: SPIFFE has its own rules and trusts
     * the authorities of the peer's trust domain only. Both sides require a certificate. */
    SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_early_data_enabled(ctx, 0); /* 0-RTT stays off (issue 6): replayable */
    if (ticket_life == 0) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else {
        SSL_CTX_set_session_psk_dhe_timeout(ctx, (uint32_t)ticket_life);
    }
    if (server) {
        static const uint8_t sid_ctx[] = "weft/1";
        ENSURE(SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1), WEFT_ECRYPTO);
        /* Tickets only: the server keeps no session state, and a ticket is sealed with this
         * SSL_CTX's own keys, which die with the creds. */
        if (ticket_life != 0) {
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
        }
        SSL_CTX_set_select_certificate_cb(ctx, early_cb);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    } else {
        /* SSL_CTX_set_alpn_protos returns 0 on success. */
        ENSURE(SSL_CTX_set_alpn_protos(ctx, alpn_wire, sizeof(alpn_wire)) == 0, WEFT_ECRYPTO);
        if (ticket_life != 0) {
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
            SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
        }
    }
    return WEFT_OK;
}

static void creds_free(struct tls_creds *c)
{
    SSL_CTX_free(c->client_ctx);
    SSL_CTX_free(c->server_ctx);
    spiffe_bundle_set_cleanup(&c->bundles);
    free_strs(c->deny_ids, c->num_deny_ids);
    free_strs(c->deny_serials, c->num_deny_serials);
    for (size_t i = 0; i < c->num_sessions; i++) {
        free(c->sessions[i].id);
        SSL_SESSION_free(c->sessions[i].sess);
    }
    free(c->sessions);
    free(c->verified);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int tls_creds_new(struct tls_creds **out, const struct tls_creds_params *p)
{
    *out = NULL;
    ENSURE(p != NULL && p->bundles != NULL && p->chain_der != NULL && p->key_der != NULL,
           WEFT_EINVAL);
    ENSURE(p->ticket_life_s <= TLS_MAX_TICKET_LIFE_S, WEFT_EINVAL);
    ENSURE(p->num_deny_ids <= TLS_MAX_DENY && p->num_deny_serials <= TLS_MAX_DENY, WEFT_ELIMIT);
    ENSURE((p->num_deny_ids == 0 || p->deny_ids != NULL) &&
               (p->num_deny_serials == 0 || p->deny_serials != NULL),
           WEFT_EINVAL);

    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    struct tls_creds *c = weft_xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    spiffe_bundle_set_init(&c->bundles);
    c->ticket_life_s = p->ticket_life_s == 0  ? TLS_DEFAULT_TICKET_LIFE_S
                       : p->ticket_life_s < 0 ? 0
                                              : p->ticket_life_s;
    c->deny_ids = copy_sorted(p->deny_ids, p->num_deny_ids);
    c->num_deny_ids = p->num_deny_ids;
    c->deny_serials = copy_sorted(p->deny_serials, p->num_deny_serials);
    c->num_deny_serials = p->num_deny_serials;

    int rc = WEFT_EINVAL;
    if (spiffe_certs_decode(&chain, p->chain_der, p->chain_der_len, SPIFFE_MAX_CHAIN, 0, NULL) !=
            WEFT_OK ||
        spiffe_key_decode(&key, p->key_der, p->key_der_len, NULL) != WEFT_OK ||
        spiffe_x509svid_check(&c->id, chain, NULL) != WEFT_OK ||
        spiffe_x509svid_check_key(sk_X509_value(chain, 0), key, NULL) != WEFT_OK ||
        spiffe_chain_not_after(&c->not_after, chain) != WEFT_OK) {
        goto out;
    }
    if ((rc = spiffe_bundle_set_copy_x509(&c->bundles, p->bundles)) != WEFT_OK) {
        goto out;
    }
    rc = WEFT_ECRYPTO;
    pthread_once(&cert_pool_once, cert_pool_init);
    if (cert_pool == NULL || (c->client_ctx = SSL_CTX_new(TLS_with_buffers_method())) == NULL ||
        (c->server_ctx = SSL_CTX_new(TLS_with_buffers_method())) == NULL) {
        goto out;
    }
    if ((rc = ctx_setup(c->client_ctx, chain, key, c->ticket_life_s, false)) != WEFT_OK ||
        (rc = ctx_setup(c->server_ctx, chain, key, c->ticket_life_s, true)) != WEFT_OK) {
        goto out;
    }
    rc = WEFT_OK;
out:
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (rc != WEFT_OK) {
        creds_free(c);
        return rc;
    }
    *out = c;
    return WEFT_OK;
}

struct tls_creds *tls_creds_ref(struct tls_creds *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void tls_creds_unref(struct tls_creds *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1) {
        creds_free(c);
    }
}

const char *tls_creds_id(const struct tls_creds *c) { return c->id.str; }

int64_t tls_creds_not_after(const struct tls_creds *c) { return c->not_after; }

/* --- client tickets ----------------------------------------------------------------------- */

/* take_session removes and returns a ticket kept for |id| that is still good (single use:
 * RFC 8446 §C.4 and BoringSSL's SSL_SESSION_should_be_single_use), dropping the stale ones it
 * meets. NULL: none. */
static SSL_SESSION *take_session(struct tls_creds *c, const char *id, int64_t now)
{
    SSL_SESSION *sess = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->num_sessions && sess == NULL;) {
        if (strcmp(c->sessions[i].id, id) != 0) {
            i++;
            continue;
        }
        if (now < c->sessions[i].until) {
            sess = c->sessions[i].sess;
        } else {
            SSL_SESSION_free(c->sessions[i].sess);
        }
        free(c->sessions[i].id);
        c->sessions[i] = c->sessions[--c->num_sessions];
    }
    pthread_mutex_unlock(&c->mu);
    return sess;
}

/* put_session keeps |sess| (a reference it takes) for |id|. Up to TLS_TICKETS_PER_PEER are
 * kept per server ID, so connections opened at once to one peer each find one; past that the
 * ID's ticket that expires first is replaced, and when the store is full the one of any ID
 * that expires first makes room. */
static void put_session(struct tls_creds *c, const char *id, SSL_SESSION *sess, int64_t until)
{
    pthread_mutex_lock(&c->mu);
    size_t same = 0, oldest_same = 0, oldest = 0;
    for (size_t i = 0; i < c->num_sessions; i++) {
        if (c->sessions[i].until < c->sessions[oldest].until) {
            oldest = i;
        }
        if (strcmp(c->sessions[i].id, id) == 0) {
            if (same == 0 || c->sessions[i].until < c->sessions[oldest_same].until) {
                oldest_same = i;
            }
            same++;
        }
    }
    size_t slot = same >= TLS_TICKETS_PER_PEER                 ? oldest_same
                  : c->num_sessions == TLS_MAX_CLIENT_SESSIONS ? oldest
                                                               : c->num_sessions;
    if (slot == c->num_sessions) {
        if (c->sessions == NULL) {
            c->sessions = weft_xcalloc(TLS_MAX_CLIENT_SESSIONS, sizeof(*c->sessions));
        }
        c->sessions[slot].id = weft_xstrndup(id, strlen(id));
        c->num_sessions++;
    } else {
        SSL_SESSION_free(c->sessions[slot].sess);
        if (strcmp(c->sessions[slot].id, id) != 0) {
            free(c->sessions[slot].id);
            c->sessions[slot].id = weft_xstrndup(id, strlen(id));
        }
    }
    c->sessions[slot].sess = sess;
    c->sessions[slot].until = until;
    pthread_mutex_unlock(&c->mu);
}

/* new_session_cb receives a ticket on a client, after the handshake (TLS 1.3 sends tickets
 * post-handshake, so it runs inside SSL_read). Only a verified server's tickets are kept. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_conn *t = SSL_get_app_data(ssl);
    if (t == NULL || !t->done || t->fail_rc != WEFT_OK || !SSL_SESSION_is_resumable(sess)) {
        return 0;
    }
    int64_t until = (int64_t)SSL_SESSION_get_time(sess) + (int64_t)SSL_SESSION_get_timeout(sess);
    until = min64(until, now_s() + t->creds->ticket_life_s);
    until = min64(until, min64(t->peer_not_after, t->creds->not_after));
    t->resume_until = until;
    if (until <= now_s()) {
        return 0;
    }
    put_session(t->creds, t->expected, sess, until);
    return 1; /* the reference is ours */
}

/* --- verified chains --------------------------------------------------------------------- */

/* chain_digest hashes the chain |ssl|'s peer presented: each certificate's length, then its
 * DER. false: no chain. */
static bool chain_digest(const SSL *ssl, uint8_t out[SHA256_DIGEST_LENGTH])
{
    const STACK_OF(CRYPTO_BUFFER) *bufs = SSL_get0_peer_certificates(ssl);
    if (bufs == NULL || sk_CRYPTO_BUFFER_num(bufs) == 0) {
        return false;
    }
    SHA256_CTX h;
    SHA256_Init(&h);
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(bufs); i++) {
        const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(bufs, i);
        size_t len = CRYPTO_BUFFER_len(b);
        uint8_t be[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                         (uint8_t)len};
        SHA256_Update(&h, be, sizeof(be));
        SHA256_Update(&h, CRYPTO_BUFFER_data(b), len);
    }
    SHA256_Final(out, &h);
    return true;
}

/* verified_seen says whether these creds verified the chain of |digest| and all its
 * certificates are still within their validity at |now|. */
static bool verified_seen(struct tls_creds *c, const uint8_t digest[SHA256_DIGEST_LENGTH],
                          int64_t now)
{
    bool seen = false;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->num_verified && !seen; i++) {
        const struct verified_chain *v = &c->verified[i];
        seen = now >= v->from && now < v->until &&
               memcmp(v->digest, digest, SHA256_DIGEST_LENGTH) == 0;
    }
    pthread_mutex_unlock(&c->mu);
    if (seen) {
        atomic_fetch_add(&c->verified_hits, 1);
    }
    return seen;
}

/* verified_put remembers a chain spiffe_x509svid_verify accepted for |id|, valid while each of
 * its certificates is, and each authority of |id|'s trust domain: the path BoringSSL built may
 * run through any of them (an intermediate in the bundle, then its root), and which it took is
 * not known here. An authority out of its validity in the bundle thus only makes this memory
 * forget sooner. */
static void verified_put(struct tls_creds *c, const uint8_t digest[SHA256_DIGEST_LENGTH],
                         const STACK_OF(X509) * chain, const struct spiffe_id *id)
{
    struct verified_chain v = {.from = INT64_MIN, .until = INT64_MAX};
    memcpy(v.digest, digest, SHA256_DIGEST_LENGTH);
    const struct spiffe_bundle *b = spiffe_bundle_set_get0(&c->bundles, id);
    size_t num_chain = sk_X509_num(chain), num_anchors = b != NULL ? sk_X509_num(b->x509) : 0;
    for (size_t i = 0; i < num_chain + num_anchors; i++) {
        X509 *x = i < num_chain ? sk_X509_value(chain, i) : sk_X509_value(b->x509, i - num_chain);
        int64_t nb, na;
        if (spiffe_cert_validity(&nb, &na, x) != WEFT_OK) {
            return; /* unreadable: not remembered, verified in full each time */
        }
        v.from = nb > v.from ? nb : v.from;
        v.until = na < v.until ? na : v.until;
    }
    pthread_mutex_lock(&c->mu);
    if (c->verified == NULL) {
        c->verified = weft_xcalloc(TLS_VERIFIED_CHAINS, sizeof(*c->verified));
    }
    size_t slot = c->next_verified;
    c->next_verified = (c->next_verified + 1) % TLS_VERIFIED_CHAINS;
    if (c->num_verified < TLS_VERIFIED_CHAINS) {
        c->num_verified++;
    }
    c->verified[slot] = v;
    pthread_mutex_unlock(&c->mu);
}

uint64_t tls_creds_verified_hits(const struct tls_creds *c)
{
    return atomic_load(&c->verified_hits);
}

/* --- judging the peer --------------------------------------------------------------------- */

/* judge_peer checks the peer's chain. |full|: a new handshake, so the path is verified against
 * the bundle of the peer's trust domain, unless these creds verified this very chain before
 * (verified_seen). Otherwise the session is resumed: these creds verified the chain when the
 * ticket was made (tickets never cross creds). Either way what can have changed is the time,
 * which is checked again. The deny list and the expected ID are checked either way.
 * On success the peer fields are set; on refusal |t| fails with the reason and |*out_alert| is
 * the alert to send. */
static int judge_peer(struct tls_conn *t, bool full, uint8_t *out_alert)
{
    STACK_OF(X509) *chain = NULL;
    struct spiffe_id id;
    struct spiffe_why why;
    spiffe_why_clear(&why);
    int64_t now = now_s();
    int rc = svidtls_peer_chain(&chain, t->ssl);
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    if (rc != WEFT_OK) {
        fail(t, WEFT_EPOLICY, "peer presented %s",
             rc == WEFT_ENOTFOUND ? "no certificate"
             : rc == WEFT_ELIMIT  ? "a certificate chain over the length limit"
                                  : "a certificate that does not decode");
        *out_alert = rc == WEFT_ENOTFOUND ? SSL_AD_CERTIFICATE_REQUIRED : SSL_AD_BAD_CERTIFICATE;
        rc = WEFT_EPOLICY;
        goto out;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    uint8_t digest[SHA256_DIGEST_LENGTH];
    bool digested = full && chain_digest(t->ssl, digest);
    if (full && !(digested && verified_seen(t->creds, digest, now))) {
        rc = spiffe_x509svid_verify(&id, chain, &t->creds->bundles, now, &why);
        if (rc == WEFT_OK && digested) {
            verified_put(t->creds, digest, chain, &id);
        }
    } else if ((rc = spiffe_cert_uri_id(&id, leaf, &why)) == WEFT_OK) {
        rc = spiffe_x509svid_check_time(chain, now, &why);
    }
    if (rc != WEFT_OK) {
        if (why.rule == SPIFFE_RULE_SVID_EXPIRED) {
            fail(t, WEFT_EPOLICY, "peer certificate expired: %s", why.msg);
        } else if (why.rule == SPIFFE_RULE_SVID_NOT_YET_VALID) {
            fail(t, WEFT_EPOLICY, "peer certificate not yet valid: %s", why.msg);
        } else {
            fail(t, WEFT_EPOLICY, "peer chain does not verify: %s", why.msg);
        }
        *out_alert = svidtls_alert_for(why.rule);
        rc = WEFT_EPOLICY;
        goto out;
    }
    char serial[SPIFFE_SERIAL_HEX_LEN];
    spiffe_serial_hex(serial, leaf);
    int64_t not_after;
    rc = WEFT_EPOLICY;
    if (spiffe_chain_not_after(&not_after, chain) != WEFT_OK) {
        fail(t, rc, "peer chain has an unreadable validity period");
        goto out;
    }
    if (listed(t->creds->deny_ids, t->creds->num_deny_ids, id.str)) {
        fail(t, rc, "peer ID %s is deny-listed", id.str);
        *out_alert = SSL_AD_CERTIFICATE_REVOKED;
        goto out;
    }
    if (listed(t->creds->deny_serials, t->creds->num_deny_serials, serial)) {
        fail(t, rc, "peer certificate serial %s (of %s) is deny-listed", serial, id.str);
        *out_alert = SSL_AD_CERTIFICATE_REVOKED;
        goto out;
    }
    if (!t->is_server && strcmp(id.str, t->expected) != 0) {
        fail(t, rc, "peer ID %s is not the expected %s", id.str, t->expected);
        goto out;
    }
    free(t->peer_id);
    t->peer_id = weft_xstrndup(id.str, id.len);
    memcpy(t->peer_serial, serial, sizeof(serial));
    t->peer_not_after = not_after;
    rc = WEFT_OK;
out:
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* verify_cb is BoringSSL's custom verify callback, inside SSL_do_handshake on a full handshake:
 * the client's SVID on a server, the server's on a client. */
static enum ssl_verify_result_t verify_cb(SSL *ssl, uint8_t *out_alert)
{
    struct tls_conn *t = SSL_get_app_data(ssl);
    if (judge_peer(t, true, out_alert) != WEFT_OK) {
        return ssl_verify_invalid;
    }
    if (t->is_server) {
        /* The session being made is what a ticket seals: cap its life, and its authentication
         * life (SSL_SESSION_set_timeout sets both), so no ticket issued now or renewed later
         * resumes past either certificate's notAfter. During the handshake SSL_get_session
         * returns the session in the making (BoringSSL ssl_session.cc). */
        SSL_SESSION *sess = SSL_get_session(ssl);
        int64_t life =
            min64(t->creds->ticket_life_s, min64(t->peer_not_after, t->creds->not_after) - now_s());
        if (sess != NULL) {
            SSL_SESSION_set_timeout(sess, (uint32_t)(life > 0 ? life : 0));
        }
    }
    return ssl_verify_ok;
}

/* offers_weft reads the ClientHello's ALPN extension (RFC 7301 §3.1: a u16-prefixed list of
 * u8-prefixed names) and says whether it offers weft/1. */
static bool offers_weft(const uint8_t *data, size_t len)
{
    CBS ext, list, name;
    CBS_init(&ext, data, len);
    if (!CBS_get_u16_length_prefixed(&ext, &list) || CBS_len(&ext) != 0) {
        return false;
    }
    while (CBS_len(&list) > 0) {
        if (!CBS_get_u8_length_prefixed(&list, &name)) {
            return false;
        }
        if (CBS_len(&name) == sizeof(alpn_wire) - 1 &&
            memcmp(CBS_data(&name), alpn_wire + 1, sizeof(alpn_wire) - 1) == 0) {
            return true;
        }
    }
    return false;
}

/* early_cb runs on the ClientHello, before anything costly. The ALPN select callback runs only
 * when the client sends ALPN at all, so a ClientHello without it is caught here. The handshake
 * is paused (retry) and tls_conn_handshake answers no_application_protocol (RFC 7301 §3.2):
 * the error result would send handshake_failure, which says less. */
static enum ssl_select_cert_result_t early_cb(const SSL_CLIENT_HELLO *hello)
{
    struct tls_conn *t = SSL_get_app_data(hello->ssl);
    const uint8_t *data;
    size_t len;
    if (!SSL_early_callback_ctx_extension_get(
            hello, TLSEXT_TYPE_application_layer_protocol_negotiation, &data, &len) ||
        !offers_weft(data, len)) {
        t->alpn_refused = true;
        return ssl_select_cert_retry;
    }
    return ssl_select_cert_success;
}

static int alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                          unsigned in_len, void *arg)
{
    (void)ssl;
    (void)arg;
    uint8_t *selected;
    uint8_t selected_len;
    if (SSL_select_next_proto(&selected, &selected_len, alpn_wire, sizeof(alpn_wire), in, in_len) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    }
    *out = selected;
    *out_len = selected_len;
    return SSL_TLSEXT_ERR_OK;
}

/* --- results ------------------------------------------------------------------------------ */

/* ssl_result interprets a BoringSSL call that returned |ret| <= 0: WEFT_EAGAIN with |*want|,
 * WEFT_OK with |*eof| on close_notify, or a failure recorded in t->reason. */
static int ssl_result(struct tls_conn *t, int ret, int *want, bool *eof)
{
    /* our BIO's send(2) failed: BoringSSL may only know it wanted to write */
    int send_errno = sock_of(t)->err;
    if (send_errno != 0) {
        fail(t, WEFT_EIO, "socket: %s", strerror(send_errno));
        return t->fail_rc;
    }
    int e = SSL_get_error(t->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = XPRT_WANT_READ;
        return WEFT_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = XPRT_WANT_WRITE;
        return WEFT_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        *eof = true;
        return WEFT_OK;
    case SSL_ERROR_SYSCALL:
        if (ret == 0 && ERR_peek_error() == 0) {
            fail(t, WEFT_EIO, "peer closed the connection without close_notify");
        } else {
            fail(t, WEFT_EIO, "socket: %s", errno != 0 ? strerror(errno) : "unexpected end");
        }
        break;
    default: {
        uint32_t err = ERR_peek_error();
        int lib = ERR_GET_LIB(err), reason = ERR_GET_REASON(err);
        int alert = reason - SSL_AD_REASON_OFFSET;
        if (lib == ERR_LIB_SSL && alert >= 0 && alert <= 255) {
            /* access_denied: its policy does not allow the connection (tls_conn_cut) */
            fail(t, svidtls_is_certificate_alert(alert) ? WEFT_EPOLICY : WEFT_EPROTO,
                 "peer sent TLS alert \"%s\"%s", SSL_alert_desc_string_long(alert),
                 alert == SSL_AD_ACCESS_DENIED         ? ": it does not allow this connection"
                 : svidtls_is_certificate_alert(alert) ? ": it refused our certificate"
                                                       : "");
        } else if (lib == ERR_LIB_SSL && reason == SSL_R_UNSUPPORTED_PROTOCOL) {
            fail(t, WEFT_EPROTO, "peer does not speak TLS 1.3");
        } else if (lib == ERR_LIB_SSL && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
            fail(t, WEFT_EPOLICY, "peer presented no certificate");
        } else if (lib == ERR_LIB_SSL && reason == SSL_R_NO_APPLICATION_PROTOCOL) {
            fail(t, WEFT_EPROTO, "peer did not offer ALPN " TLS_ALPN);
        } else {
            const char *what = ERR_reason_error_string(err);
            fail(t, WEFT_EPROTO, "TLS failed: %s", what != NULL ? what : "unknown error");
        }
        break;
    }
    }
    return t->fail_rc != WEFT_OK ? t->fail_rc : WEFT_EPROTO;
}

/* flush sends the records our BIO holds: WEFT_OK when it holds none, WEFT_EAGAIN when the
 * socket is full, else t's failure. */
static int flush(struct tls_conn *t)
{
    struct sock *s = sock_of(t);
    if (sock_send(s) == WEFT_EIO) {
        fail(t, WEFT_EIO, "socket: %s", strerror(s->err));
        return t->fail_rc;
    }
    return s->out != NULL ? WEFT_EAGAIN : WEFT_OK;
}

/* --- connections -------------------------------------------------------------------------- */

static int conn_new(struct tls_conn **out, struct tls_creds *creds, int fd, bool server)
{
    *out = NULL;
    SSL *ssl = SSL_new(server ? creds->server_ctx : creds->client_ctx);
    BIO *bio = ssl != NULL ? sock_bio_new(fd) : NULL;
    if (bio == NULL) {
        SSL_free(ssl);
        ERR_clear_error();
        return WEFT_ECRYPTO;
    }
    SSL_set_bio(ssl, bio, bio); /* takes the one reference */
    /* The relay may move its buffer between a send that wanted a retry and the retry, and a
     * send may move part of what it is given (xprt.h). */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* what the handshake needed (our chain, key, verify settings) is freed once it is done:
     * an idle connection keeps its session and its keys only (TLS 1.3 never renegotiates) */
    SSL_set_shed_handshake_config(ssl, 1);
    struct tls_conn *t = weft_xcalloc(1, sizeof(*t));
    t->ssl = ssl;
    t->creds = tls_creds_ref(creds);
    t->is_server = server;
    SSL_set_app_data(ssl, t);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
    }
    *out = t;
    return WEFT_OK;
}

int tls_conn_new_client(struct tls_conn **out, struct tls_creds *creds, int fd,
                        const char *expected_spiffe_id)
{
    *out = NULL;
    struct spiffe_id id;
    ENSURE(expected_spiffe_id != NULL, WEFT_EINVAL);
    TRY(spiffe_id_parse(&id, expected_spiffe_id, strlen(expected_spiffe_id), NULL));
    ENSURE(!spiffe_id_is_td(&id), WEFT_EINVAL);
    struct tls_conn *t;
    TRY(conn_new(&t, creds, fd, false));
    t->expected = weft_xstrndup(id.str, id.len);
    if (creds->ticket_life_s != 0) {
        SSL_SESSION *sess = take_session(creds, t->expected, now_s());
        if (sess != NULL) {
            (void)SSL_set_session(t->ssl, sess); /* takes its own reference */
            SSL_SESSION_free(sess);
        }
    }
    *out = t;
    return WEFT_OK;
}

int tls_conn_new_server(struct tls_conn **out, struct tls_creds *creds, int fd)
{
    return conn_new(out, creds, fd, true);
}

void tls_conn_cut(struct tls_conn *t, enum tls_cut why)
{
    static const uint8_t alerts[] = {[TLS_CUT_EXPIRED] = SSL_AD_CERTIFICATE_EXPIRED,
                                     [TLS_CUT_REVOKED] = SSL_AD_CERTIFICATE_REVOKED,
                                     [TLS_CUT_DENIED] = SSL_AD_ACCESS_DENIED};
    (void)SSL_send_fatal_alert(t->ssl, alerts[why]);
    ERR_clear_error();
    (void)flush(t); /* best effort, like the alert itself: the connection is closing */
}

/* refuse sends |alert| (best effort: a full socket drops it) and returns t's failure. */
static int refuse(struct tls_conn *t, uint8_t alert)
{
    (void)SSL_send_fatal_alert(t->ssl, alert);
    ERR_clear_error();
    (void)flush(t);
    return t->fail_rc;
}

/* finish judges a completed handshake: ALPN on both sides, and on resumption the peer stored
 * in the session (the verify callback runs on full handshakes only). */
static int finish(struct tls_conn *t)
{
    const uint8_t *proto;
    unsigned proto_len;
    SSL_get0_alpn_selected(t->ssl, &proto, &proto_len);
    if (proto_len != sizeof(alpn_wire) - 1 || memcmp(proto, alpn_wire + 1, proto_len) != 0) {
        fail(t, WEFT_EPROTO, "peer did not agree on ALPN " TLS_ALPN);
        return refuse(t, SSL_AD_NO_APPLICATION_PROTOCOL);
    }
    if (SSL_session_reused(t->ssl)) {
        uint8_t alert;
        if (judge_peer(t, false, &alert) != WEFT_OK) {
            return refuse(t, alert);
        }
    }
    if (t->peer_id == NULL) { /* never: BoringSSL requires and verifies a certificate */
        fail(t, WEFT_EINTERNAL, "handshake completed without a verified peer");
        return refuse(t, SSL_AD_INTERNAL_ERROR);
    }
    if (t->is_server) {
        const SSL_SESSION *sess = SSL_get_session(t->ssl);
        t->resume_until =
            sess != NULL && t->creds->ticket_life_s != 0
                ? (int64_t)SSL_SESSION_get_time(sess) + (int64_t)SSL_SESSION_get_timeout(sess)
                : 0;
    }
    t->done = true;
    if (t->is_server) {
        /* BoringSSL queues its NewSessionTicket messages and sends them with the next write: a
         * zero-length write sends them now, so a client hears them even if the server side
         * never speaks (an idle connection, a client-first protocol), and the handshake state
         * that holds them is freed. A full socket keeps them for the next write. */
        ERR_clear_error();
        (void)SSL_write(t->ssl, "", 0);
        ERR_clear_error();
        (void)flush(t); /* or with the next send */
    }
    return WEFT_OK;
}

int tls_conn_handshake(struct tls_conn *t, int *out_want)
{
    *out_want = 0;
    if (t->fail_rc != WEFT_OK) {
        return t->fail_rc;
    }
    if (t->done) {
        return WEFT_OK;
    }
    ERR_clear_error(); /* SSL_get_error reads the thread's error queue: start it empty */
    int ret = SSL_do_handshake(t->ssl);
    if (ret == 1) {
        /* our last flight must be on the wire before the relay starts: a server-first protocol's
         * server waits for it (BoringSSL flushes each flight; this is the check) */
        int rc = flush(t);
        if (rc == WEFT_EAGAIN) {
            *out_want = XPRT_WANT_WRITE;
        }
        return rc == WEFT_OK ? finish(t) : rc;
    }
    if (t->alpn_refused && SSL_get_error(t->ssl, ret) == SSL_ERROR_PENDING_CERTIFICATE) {
        fail(t, WEFT_EPROTO, "peer did not offer ALPN " TLS_ALPN);
        return refuse(t, SSL_AD_NO_APPLICATION_PROTOCOL);
    }
    bool eof = false;
    int rc = ssl_result(t, ret, out_want, &eof);
    if (eof) {
        fail(t, WEFT_EIO, "peer closed the connection during the handshake");
        rc = WEFT_EIO;
    }
    ERR_clear_error();
    return rc;
}

const char *tls_conn_peer_id(const struct tls_conn *t)
{
    return t->done && t->peer_id != NULL ? t->peer_id : "";
}

const char *tls_conn_peer_serial(const struct tls_conn *t) { return t->done ? t->peer_serial : ""; }

int64_t tls_conn_peer_not_after(const struct tls_conn *t)
{
    return t->done ? t->peer_not_after : 0;
}

bool tls_conn_resumed(const struct tls_conn *t) { return t->done && SSL_session_reused(t->ssl); }

const char *tls_conn_version(const struct tls_conn *t)
{
    return t->done ? SSL_get_version(t->ssl) : "";
}

int64_t tls_conn_resume_until(const struct tls_conn *t) { return t->resume_until; }

const char *tls_conn_reason(const struct tls_conn *t) { return t->reason; }

void tls_conn_free(struct tls_conn *t)
{
    if (t == NULL) {
        return;
    }
    SSL_free(t->ssl);
    tls_creds_unref(t->creds);
    free(t->expected);
    free(t->peer_id);
    free(t);
}

/* --- tls_xprt ----------------------------------------------------------------------------- */

static int cap_int(size_t n) { return n > INT32_MAX ? INT32_MAX : (int)n; }

static ssize_t tls_recv(void *ctx, int fd, uint8_t *buf, size_t cap, int *want)
{
    (void)fd;
    struct tls_conn *t = ctx;
    *want = 0;
    if (t->fail_rc != WEFT_OK) {
        return t->fail_rc;
    }
    const struct sock *s = sock_of(t);
    size_t got = 0;
    bool stopped = false;
    ERR_clear_error();
    /* SSL_read gives one record at a time: take every record already read ahead, so a burst
     * crosses in one recv(2) and one send(2) on the other side. */
    for (;;) {
        int n = SSL_read(t->ssl, buf + got, cap_int(cap - got));
        if (n <= 0 && got > 0) {
            /* BoringSSL keeps what stopped it for the next call; unless that was the need for
             * more bytes (a close_notify or an alert came behind the data), the socket being
             * empty does not make this side quiet */
            stopped = SSL_get_error(t->ssl, n) != SSL_ERROR_WANT_READ;
            ERR_clear_error();
            break;
        }
        if (n <= 0) {
            bool eof = false;
            int rc = ssl_result(t, n, want, &eof);
            ERR_clear_error();
            return eof ? 0 : rc;
        }
        got += (size_t)n;
        if (got == cap || (SSL_pending(t->ssl) == 0 && s->in == NULL)) {
            break; /* full, or the next record would need the socket */
        }
    }
    if (!stopped && SSL_pending(t->ssl) == 0 && s->in == NULL && s->in_short) {
        *want = XPRT_DRAINED;
    }
    return (ssize_t)got;
}

/* tls_send seals all of |buf| it can into records, which our BIO sends in one send(2); with
 * |len| 0 it only sends what the BIO holds (xprt.h). */
static ssize_t tls_send(void *ctx, int fd, const uint8_t *buf, size_t len, int *want)
{
    (void)fd;
    struct tls_conn *t = ctx;
    *want = 0;
    if (t->fail_rc != WEFT_OK) {
        return t->fail_rc;
    }
    size_t sent = 0;
    ERR_clear_error();
    while (sent < len) {
        int n = SSL_write(t->ssl, buf + sent, cap_int(len - sent));
        if (n <= 0 && sent > 0) {
            ERR_clear_error(); /* the BIO is full: send what it holds, the rest comes back */
            break;
        }
        if (n <= 0) {
            bool eof = false;
            int rc = ssl_result(t, n, want, &eof);
            if (eof) { /* the peer's close_notify says nothing about our direction: a write
                        * fails only when the connection does */
                fail(t, WEFT_EIO, "peer closed the connection");
                rc = WEFT_EIO;
            }
            ERR_clear_error();
            return rc;
        }
        sent += (size_t)n;
    }
    int rc = flush(t);
    if (rc != WEFT_OK && rc != WEFT_EAGAIN) {
        return rc;
    }
    if (rc == WEFT_EAGAIN) {
        *want = XPRT_WANT_WRITE; /* records held: come back when the socket has room */
        if (len == 0) {
            return WEFT_EAGAIN;
        }
    }
    return (ssize_t)sent;
}

/* tls_shutdown sends close_notify once, and what the BIO holds before it. SSL_shutdown called
 * again would read, waiting for the peer's close_notify, which the relay gets from recv instead. */
static int tls_shutdown(void *ctx, int fd, int *want)
{
    struct tls_conn *t = ctx;
    *want = 0;
    if (t->fail_rc != WEFT_OK) {
        return t->fail_rc;
    }
    if (!t->shut) {
        ERR_clear_error();
        int ret = SSL_shutdown(t->ssl);
        if (ret < 0) {
            bool eof = false;
            int rc = ssl_result(t, ret, want, &eof);
            ERR_clear_error();
            return rc;
        }
        t->shut = true;
    }
    int rc = flush(t);
    if (rc == WEFT_EAGAIN) {
        *want = XPRT_WANT_WRITE;
    }
    if (rc != WEFT_OK) {
        return rc;
    }
    if (shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN) {
        fail(t, WEFT_EIO, "shutdown: %s", strerror(errno));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

static const char *tls_reason(void *ctx)
{
    const struct tls_conn *t = ctx;
    return t->reason[0] != '\0' ? t->reason : NULL;
}

const struct xprt_ops tls_xprt = {
    .recv = tls_recv,
    .send = tls_send,
    .shutdown = tls_shutdown,
    .reason = tls_reason,
};
