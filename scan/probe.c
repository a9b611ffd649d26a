/* scan/probe.c: what one endpoint presents (probe.h).
 *
 * The scanner's own TLS client: every SSL_CTX is made here, verification is off (the scanner
 * reports what it sees, it does not decide whom to trust), and the chain is read with
 * BoringSSL's X509 API, never with lib/spiffe, proxy/tls.c or lib/transport, so that a bug in
 * the renewal path cannot hide in the check of it (issue 9). Blocking sockets are not used:
 * every connection is non-blocking and each wait is a poll() against one deadline. */
#include "scan/probe.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <http_parser.h>
#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/base/mem.h"

#define WHY_LEN 200 /* a reason, before it goes into scan_result.error */

/* struct conn is one connection: its socket, its TLS (NULL in the clear), its deadline. */
struct conn {
    int fd;
    SSL *ssl;
    int64_t deadline_ms; /* CLOCK_MONOTONIC */
    bool cert_requested; /* the server sent a CertificateRequest */
};

/* struct probe is one scan_probe call. */
struct probe {
    const struct scan_probe_opts *o;
    const struct scan_endpoint *ep;
    const char *sni; /* NULL: none */
    int timeout_ms;
    char where[SCAN_NAME_MAX + 16]; /* "host:port" for messages */
};

enum io { IO_OK = 0, IO_EOF, IO_TIMEOUT, IO_ERR };

static int64_t now_ms(void);
static enum io wait_fd(int fd, short events, int64_t deadline_ms);
static void conn_close(struct conn *c);
static int conn_open(struct conn *c, const struct probe *pr, int port, char *why, size_t why_len);
static SSL_CTX *ctx_new(const struct probe *pr, uint16_t min, uint16_t max, bool with_cert,
                        bool http11_only);
static int tls_open(struct conn *c, const struct probe *pr, SSL_CTX *ctx, char *why,
                    size_t why_len);
static void ssl_why(char *why, size_t why_len, const char *what, SSL *ssl, int ret);
static void read_cert(struct scan_cert *out, X509 *x);
static void name_root(struct scan_result *out, const struct probe *pr, X509 *last);
static void http_get(const struct probe *pr, struct conn *c, int port, struct scan_http_head *h,
                     int *out_rc);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_fd waits until |fd| is ready for |events| or |deadline_ms| passes. */
static enum io wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0) {
            return IO_TIMEOUT;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0) {
            return IO_OK; /* errors and hang-ups show up in the read or write that follows */
        }
        if (n == 0) {
            return IO_TIMEOUT;
        }
        if (errno != EINTR) {
            return IO_ERR;
        }
    }
}

static void conn_close(struct conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
}

/* --- name resolution, bounded ---------------------------------------------------------------
 *
 * getaddrinfo takes as long as the resolver's own timeouts say (resolv.conf: 5 s per try and
 * server by default), whatever our deadline. So a name is looked up in a detached helper thread
 * and the caller waits for it on a condition variable until the connection's deadline; one that
 * gives up leaves the lookup to finish (and free itself) on its own. The helpers still running
 * are counted, and past SCAN_MAX_PENDING_LOOKUPS no more start: a resolver that never answers
 * costs a bounded number of threads, and each probe still ends on time.
 *
 * Not getaddrinfo_a: it is glibc's alone (musl has none), needs libanl, runs helper threads of
 * its own anyway, and its gai_cancel cannot stop a lookup already under way, so a thread we
 * start, count and can reason about buys the same bound with less. IP literals never reach a
 * thread: AI_NUMERICHOST makes getaddrinfo answer without any lookup. */

struct lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC, like every deadline here */
    int refs;          /* the waiting caller and the helper thread */
    bool done;
    int gai;
    struct addrinfo *ais; /* the helper's answer, until the caller takes it */
    struct addrinfo hints;
    char host[SCAN_NAME_MAX + 1];
    char service[8];
};

static atomic_int lookups_running;

static void lookup_unref(struct lookup *l)
{
    pthread_mutex_lock(&l->mu);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (last) {
        if (l->ais != NULL) {
            freeaddrinfo(l->ais); /* the caller gave up before the answer came */
        }
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
}

static void *lookup_main(void *arg)
{
    struct lookup *l = arg;
    struct addrinfo *ais = NULL;
    int gai = getaddrinfo(l->host, l->service, &l->hints, &ais);
    pthread_mutex_lock(&l->mu);
    l->gai = gai;
    l->ais = gai == 0 ? ais : NULL;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    atomic_fetch_sub(&lookups_running, 1);
    return NULL;
}

/* resolve looks |host| up like getaddrinfo(host, service, hints, out), giving up at
 * |deadline_ms| (CLOCK_MONOTONIC). WEFT_OK with |*out| to freeaddrinfo, or WEFT_ENOTFOUND
 * (no such name, or no answer in time) or WEFT_ELIMIT (too many lookups still running) with
 * |why| saying which. */
static int resolve(struct addrinfo **out, const char *host, const char *service,
                   const struct addrinfo *hints, int64_t deadline_ms, int timeout_ms, char *why,
                   size_t why_len)
{
    *out = NULL;
    if ((hints->ai_flags & AI_NUMERICHOST) != 0) {
        int gai = getaddrinfo(host, service, hints, out);
        if (gai != 0) {
            snprintf(why, why_len, "cannot resolve %.100s: %s", host, gai_strerror(gai));
            return WEFT_ENOTFOUND;
        }
        return WEFT_OK;
    }
    if (atomic_fetch_add(&lookups_running, 1) >= SCAN_MAX_PENDING_LOOKUPS) {
        atomic_fetch_sub(&lookups_running, 1);
        snprintf(why, why_len,
                 "cannot resolve %.100s: %d earlier name lookups are still waiting for DNS", host,
                 SCAN_MAX_PENDING_LOOKUPS);
        return WEFT_ELIMIT;
    }
    struct lookup *l = weft_xcalloc(1, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    l->refs = 2;
    l->hints = *hints;
    snprintf(l->host, sizeof(l->host), "%s", host);
    snprintf(l->service, sizeof(l->service), "%s", service);

    /* the helper takes no signal meant for the process: it starts with all of them blocked */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int prc = pthread_create(&th, &attr, lookup_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (prc != 0) {
        atomic_fetch_sub(&lookups_running, 1);
        l->refs = 1;
        lookup_unref(l);
        snprintf(why, why_len, "cannot resolve %.100s: no thread for the lookup: %s", host,
                 strerror(prc));
        return WEFT_EIO;
    }

    struct timespec until = {.tv_sec = deadline_ms / 1000,
                             .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
    pthread_mutex_lock(&l->mu);
    while (!l->done) {
        if (pthread_cond_timedwait(&l->cv, &l->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    bool done = l->done;
    int gai = l->gai;
    *out = l->ais;
    l->ais = NULL; /* taken (or NULL) */
    pthread_mutex_unlock(&l->mu);
    lookup_unref(l);
    if (!done) {
        snprintf(why, why_len, "cannot resolve %.100s: no answer from DNS within %d ms", host,
                 timeout_ms);
        return WEFT_ENOTFOUND;
    }
    if (gai != 0) {
        snprintf(why, why_len, "cannot resolve %.100s: %s", host, gai_strerror(gai));
        return WEFT_ENOTFOUND;
    }
    return WEFT_OK;
}

/* conn_open resolves the endpoint's host and connects to |port| on the first address that
 * answers, both before the connection's deadline, which starts now. */
static int conn_open(struct conn *c, const struct probe *pr, int port, char *why, size_t why_len)
{
    c->fd = -1;
    c->ssl = NULL;
    c->deadline_ms = now_ms() + pr->timeout_ms;
    char service[8];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    if (!pr->ep->host_is_name) {
        hints.ai_flags |= AI_NUMERICHOST;
    }
    struct addrinfo *ais = NULL;
    TRY(resolve(&ais, pr->ep->host, service, &hints, c->deadline_ms, pr->timeout_ms, why, why_len));
    snprintf(why, why_len, "connect to %.100s:%d: no address", pr->ep->host, port);
    int rc = WEFT_EIO;
    for (struct addrinfo *ai = ais; ai != NULL; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, why_len, "socket for %.100s:%d: %s", pr->ep->host, port, strerror(errno));
            continue;
        }
        int err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                enum io w = wait_fd(fd, POLLOUT, c->deadline_ms);
                socklen_t len = sizeof(err);
                if (w == IO_TIMEOUT) {
                    err = ETIMEDOUT;
                } else if (w != IO_OK || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                    err = errno;
                }
            }
        }
        if (err == 0) {
            c->fd = fd;
            rc = WEFT_OK;
            break;
        }
        close(fd);
        if (err == ETIMEDOUT) {
            snprintf(why, why_len, "connect to %.100s:%d: timed out after %d ms", pr->ep->host,
                     port, pr->timeout_ms);
            rc = WEFT_EIO;
            break; /* the deadline is spent */
        }
        snprintf(why, why_len, "connect to %.100s:%d: %s", pr->ep->host, port, strerror(err));
    }
    freeaddrinfo(ais);
    return rc;
}

/* The signature algorithms the scanner accepts from servers: BoringSSL's client defaults, plus
 * Ed25519 (weft issues Ed25519 SVIDs: lib/spiffe --key-type ed25519) and the SHA-1 ones last,
 * so that an old server still shows what it presents. The scanner verifies nothing against a
 * trust store; accepting a weak algorithm here is reporting, not trusting. */
static const uint16_t verify_prefs[] = {
    SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA256,
    SSL_SIGN_RSA_PKCS1_SHA256,       SSL_SIGN_ECDSA_SECP384R1_SHA384,
    SSL_SIGN_RSA_PSS_RSAE_SHA384,    SSL_SIGN_RSA_PKCS1_SHA384,
    SSL_SIGN_RSA_PSS_RSAE_SHA512,    SSL_SIGN_RSA_PKCS1_SHA512,
    SSL_SIGN_ECDSA_SECP521R1_SHA512, SSL_SIGN_ED25519,
    SSL_SIGN_RSA_PKCS1_SHA1,         SSL_SIGN_ECDSA_SHA1,
};

/* ctx_new makes a client context limited to versions [min, max], presenting the client
 * certificate when |with_cert| and the options hold one, offering the options' ALPN (or only
 * http/1.1 when |http11_only|). Verification is off: the chain is reported, not trusted. */
static SSL_CTX *ctx_new(const struct probe *pr, uint16_t min, uint16_t max, bool with_cert,
                        bool http11_only)
{
    const struct scan_probe_opts *o = pr->o;
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    bool ok = SSL_CTX_set_min_proto_version(ctx, min) && SSL_CTX_set_max_proto_version(ctx, max) &&
              SSL_CTX_set_verify_algorithm_prefs(ctx, verify_prefs, nitems(verify_prefs));
    if (ok && with_cert && o->client_key != NULL) {
        ok = SSL_CTX_use_certificate(ctx, sk_X509_value(o->client_chain, 0)) &&
             SSL_CTX_use_PrivateKey(ctx, o->client_key);
        for (size_t i = 1; ok && i < sk_X509_num(o->client_chain); i++) {
            ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(o->client_chain, i));
        }
    }
    /* ALPN wire format (RFC 7301 §3.1): each name with a one-byte length */
    uint8_t wire[512];
    size_t wire_len = 0;
    if (http11_only) {
        memcpy(wire, "\x08http/1.1", 9);
        wire_len = 9;
    } else {
        for (size_t i = 0; i < o->num_alpn; i++) {
            size_t n = strlen(o->alpn[i]);
            if (wire_len + 1 + n > sizeof(wire)) {
                ok = false; /* scan_probe checked the sum; never here */
                break;
            }
            wire[wire_len++] = (uint8_t)n;
            memcpy(wire + wire_len, o->alpn[i], n);
            wire_len += n;
        }
    }
    /* SSL_CTX_set_alpn_protos returns zero on success */
    if (ok && wire_len > 0 && SSL_CTX_set_alpn_protos(ctx, wire, wire_len) != 0) {
        ok = false;
    }
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ssl_why describes why |ssl|'s last call returned |ret|: the TLS alert or error BoringSSL
 * recorded, or what happened to the socket. */
static void ssl_why(char *why, size_t why_len, const char *what, SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);
    uint32_t packed = ERR_peek_last_error();
    const char *reason = packed != 0 ? ERR_reason_error_string(packed) : NULL;
    if (e == SSL_ERROR_SSL && reason != NULL) {
        snprintf(why, why_len, "%.140s: %s", what, reason);
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(why, why_len, "%.140s: the peer closed the TLS connection", what);
    } else if (e == SSL_ERROR_SYSCALL && ret == 0) {
        snprintf(why, why_len, "%.140s: the peer closed the connection", what);
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(why, why_len, "%.140s: %s", what, strerror(errno));
    } else {
        snprintf(why, why_len, "%.140s: TLS error %d", what, e);
    }
    ERR_clear_error();
}

/* on_cert_request runs when the server asks for a client certificate (BoringSSL calls a
 * client's cert_cb then); it only takes note, so an error can say why a handshake failed. */
static int on_cert_request(SSL *ssl, void *arg)
{
    (void)ssl;
    struct conn *c = arg;
    c->cert_requested = true;
    return 1;
}

/* tls_open connects and completes a handshake with |ctx| before the connection's deadline.
 * WEFT_EIO when the TCP connection fails, WEFT_EPROTO when the handshake does (or times out),
 * each with |why|. */
static int tls_open(struct conn *c, const struct probe *pr, SSL_CTX *ctx, char *why, size_t why_len)
{
    int rc = conn_open(c, pr, pr->ep->port, why, why_len);
    if (rc != WEFT_OK) {
        return WEFT_EIO;
    }
    ERR_clear_error();
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) ||
        (pr->sni != NULL && !SSL_set_tlsext_host_name(c->ssl, pr->sni))) {
        snprintf(why, why_len, "TLS with %.110s: BoringSSL could not set up a connection",
                 pr->where);
        ERR_clear_error();
        return WEFT_EPROTO;
    }
    SSL_set_cert_cb(c->ssl, on_cert_request, c);
    char what[SCAN_NAME_MAX + 48];
    snprintf(what, sizeof(what), "TLS handshake with %.110s", pr->where);
    for (;;) {
        int ret = SSL_connect(c->ssl);
        if (ret == 1) {
            return WEFT_OK;
        }
        int e = SSL_get_error(c->ssl, ret);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (ev == 0) {
            ssl_why(why, why_len, what, c->ssl, ret);
            return WEFT_EPROTO;
        }
        if (wait_fd(c->fd, ev, c->deadline_ms) != IO_OK) {
            snprintf(why, why_len, "%.140s: timed out after %d ms", what, pr->timeout_ms);
            ERR_clear_error();
            return WEFT_EPROTO;
        }
    }
}

/* io_write sends |len| bytes over |c| (TLS or not) before its deadline. */
static enum io io_write(struct conn *c, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        short ev = POLLOUT;
        if (c->ssl != NULL) {
            int n = SSL_write(c->ssl, buf + off, (int)(len - off));
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                return IO_ERR;
            }
            ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else {
            ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return IO_ERR;
            }
        }
        enum io w = wait_fd(c->fd, ev, c->deadline_ms);
        if (w != IO_OK) {
            return w;
        }
    }
    return IO_OK;
}

/* io_read reads at most |cap| bytes into |buf| before |deadline_ms|; |*out_n| > 0 on IO_OK.
 * IO_EOF: the peer closed (cleanly or not); IO_ERR: a TLS alert or error. */
static enum io io_read(struct conn *c, char *buf, size_t cap, size_t *out_n, int64_t deadline_ms)
{
    *out_n = 0;
    for (;;) {
        short ev = POLLIN;
        if (c->ssl != NULL) {
            int n = SSL_read(c->ssl, buf, (int)cap);
            if (n > 0) {
                *out_n = (size_t)n;
                return IO_OK;
            }
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && n == 0)) {
                ERR_clear_error();
                return IO_EOF;
            }
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                return IO_ERR;
            }
            ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else {
            ssize_t n = recv(c->fd, buf, cap, 0);
            if (n > 0) {
                *out_n = (size_t)n;
                return IO_OK;
            }
            if (n == 0) {
                return IO_EOF;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return errno == ECONNRESET ? IO_EOF : IO_ERR;
            }
        }
        enum io w = wait_fd(c->fd, ev, deadline_ms);
        if (w != IO_OK) {
            return w;
        }
    }
}

/* copy_clean copies at most |cap| - 1 bytes of |s| (|len| of them) into |out|, replacing
 * bytes outside printable ASCII with '?': what a peer wrote never reaches a terminal raw. */
static void copy_clean(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    out[n] = '\0';
}

/* asn1_time_posix converts |t| to seconds since the epoch with ASN1_TIME_diff from the epoch
 * (this BoringSSL has no ASN1_TIME_to_posix). */
static bool asn1_time_posix(int64_t *out, const ASN1_TIME *t)
{
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    bool ok = epoch != NULL && t != NULL && ASN1_TIME_diff(&days, &secs, epoch, t);
    ASN1_TIME_free(epoch);
    if (ok) {
        *out = (int64_t)days * 86400 + secs;
    }
    return ok;
}

/* read_cert fills |out| from |x|. What cannot be read stays empty or zero. */
static void read_cert(struct scan_cert *out, X509 *x)
{
    memset(out, 0, sizeof(*out));
    /* the subject, RFC 2253 one line ("CN=weft intermediate,O=weft") */
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio != NULL && X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        const uint8_t *data;
        size_t len;
        if (BIO_mem_contents(bio, &data, &len)) {
            copy_clean(out->subject, sizeof(out->subject), (const char *)data, len);
        }
    }
    BIO_free(bio);
    /* the first spiffe:// URI SAN */
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (size_t i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        const char *uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        size_t len = (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len >= 9 && strncasecmp(uri, "spiffe://", 9) == 0) {
            copy_clean(out->spiffe_id, sizeof(out->spiffe_id), uri, len);
            break;
        }
    }
    GENERAL_NAMES_free(sans);
    /* the serial, lowercase hex of its bytes, cut at 20 bytes (RFC 5280 §4.1.2.2) */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    if (serial != NULL) {
        const uint8_t *b = ASN1_STRING_get0_data(serial);
        size_t len = (size_t)ASN1_STRING_length(serial);
        size_t off = 0;
        if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) {
            out->serial_hex[off++] = '-';
        }
        for (size_t i = 0; i < len && off + 2 < sizeof(out->serial_hex); i++) {
            snprintf(out->serial_hex + off, 3, "%02x", b[i]);
            off += 2;
        }
    }
    if (!asn1_time_posix(&out->not_before, X509_get0_notBefore(x))) {
        out->not_before = 0;
    }
    if (!asn1_time_posix(&out->not_after, X509_get0_notAfter(x))) {
        out->not_after = 0; /* a lifetime <= 0: judged critical, never silently fine */
    }
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    out->is_ca = bc != NULL && bc->ca;
    BASIC_CONSTRAINTS_free(bc);
    EVP_PKEY *pub = X509_get_pubkey(x);
    const char *type = "other";
    if (pub != NULL) {
        switch (EVP_PKEY_id(pub)) {
        case EVP_PKEY_EC:
            type = "EC";
            break;
        case EVP_PKEY_RSA:
            type = "RSA";
            break;
        case EVP_PKEY_ED25519:
            type = "Ed25519";
            break;
        default:
            break;
        }
        out->key_bits = EVP_PKEY_bits(pub);
    }
    snprintf(out->key_type, sizeof(out->key_type), "%s", type);
    out->self_signed = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0 &&
                       pub != NULL && X509_verify(x, pub) == 1;
    EVP_PKEY_free(pub);
    ERR_clear_error();
}

/* name_root finds, among the bundle's roots, the one whose subject is |last|'s issuer and whose
 * key verifies |last|'s signature. */
static void name_root(struct scan_result *out, const struct probe *pr, X509 *last)
{
    STACK_OF(X509) *roots = pr->o->bundle_roots;
    for (size_t i = 0; roots != NULL && i < sk_X509_num(roots); i++) {
        X509 *root = sk_X509_value(roots, i);
        if (X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(last)) != 0) {
            continue;
        }
        EVP_PKEY *pub = X509_get_pubkey(root);
        bool verifies = pub != NULL && X509_verify(last, pub) == 1;
        EVP_PKEY_free(pub);
        if (verifies) {
            read_cert(&out->root, root);
            out->root_found = true;
            break;
        }
    }
    ERR_clear_error();
}

/* http_get sends "GET <path>" over |c| (open, TLS or not) and reads the response head into
 * |h|; |*out_rc| is scan_http_head_parse's verdict, or WEFT_EIO when the write failed or
 * nothing came back in time. The head is read into a buffer of SCAN_HTTP_HEAD_MAX bytes and
 * parsed again after each read: at most that many bytes, within the connection's deadline. */
static void http_get(const struct probe *pr, struct conn *c, int port, struct scan_http_head *h,
                     int *out_rc)
{
    char req[2 * SCAN_NAME_MAX + 160];
    bool v6 = strchr(pr->ep->host, ':') != NULL;
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: weftctl-scan\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     pr->ep->path, v6 ? "[" : "", pr->ep->host, v6 ? "]" : "", port);
    memset(h, 0, sizeof(*h));
    *out_rc = WEFT_EIO;
    if (n < 0 || (size_t)n >= sizeof(req) || io_write(c, req, (size_t)n) != IO_OK) {
        return;
    }
    char *buf = OPENSSL_malloc(SCAN_HTTP_HEAD_MAX);
    if (buf == NULL) {
        return;
    }
    size_t len = 0;
    for (;;) {
        size_t got;
        if (io_read(c, buf + len, SCAN_HTTP_HEAD_MAX - len, &got, c->deadline_ms) != IO_OK) {
            if (len > 0) {
                int rc = scan_http_head_parse(h, buf, len);
                *out_rc = rc == WEFT_EAGAIN ? WEFT_EPROTO : rc; /* cut short */
            }
            break;
        }
        len += got;
        int rc = scan_http_head_parse(h, buf, len);
        if (rc != WEFT_EAGAIN) {
            *out_rc = rc;
            break;
        }
    }
    OPENSSL_free(buf);
}

/* --- the extra probes ------------------------------------------------------------------------ */

/* probe_version tries a handshake limited to |version|. */
static int probe_version(const struct probe *pr, uint16_t version)
{
    SSL_CTX *ctx = ctx_new(pr, version, version, true, false);
    if (ctx == NULL) {
        return -1;
    }
    struct conn c = {.fd = -1};
    char why[WHY_LEN];
    int rc = tls_open(&c, pr, ctx, why, sizeof(why));
    /* A CertificateRequest comes after a ServerHello that chose |version|: a server that then
     * refuses us for want of a client certificate did accept the version. */
    bool asked = c.cert_requested;
    conn_close(&c);
    SSL_CTX_free(ctx);
    return rc == WEFT_OK || asked ? 1 : rc == WEFT_EPROTO ? 0 : -1;
}

/* probe_no_client_cert: probe.h says what counts as accepted. */
static int probe_no_client_cert(const struct probe *pr)
{
    SSL_CTX *ctx = ctx_new(pr, TLS1_VERSION, TLS1_3_VERSION, false, false);
    if (ctx == NULL) {
        return -1;
    }
    struct conn c = {.fd = -1};
    char why[WHY_LEN];
    int rc = tls_open(&c, pr, ctx, why, sizeof(why));
    int verdict = rc == WEFT_EPROTO ? 0 : -1;
    if (rc == WEFT_OK) {
        int wait = pr->timeout_ms < SCAN_NO_CERT_WAIT_MS ? pr->timeout_ms : SCAN_NO_CERT_WAIT_MS;
        char buf[256];
        size_t got;
        enum io r = io_read(&c, buf, sizeof(buf), &got, now_ms() + wait);
        verdict = r == IO_OK || r == IO_TIMEOUT ? 1 : 0;
    }
    conn_close(&c);
    SSL_CTX_free(ctx);
    return verdict;
}

/* probe_plaintext sends an HTTP request in the clear to the TLS port. */
static int probe_plaintext(const struct probe *pr)
{
    struct conn c = {.fd = -1};
    char why[WHY_LEN];
    if (conn_open(&c, pr, pr->ep->port, why, sizeof(why)) != WEFT_OK) {
        return -1;
    }
    char req[SCAN_NAME_MAX + 96];
    int n = snprintf(req, sizeof(req),
                     "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: weftctl-scan\r\n"
                     "Connection: close\r\n\r\n",
                     pr->where);
    int verdict = 0;
    if (n > 0 && (size_t)n < sizeof(req) && io_write(&c, req, (size_t)n) == IO_OK) {
        /* "HTTP/1.1 NNN": the status line's start */
        char buf[16];
        size_t len = 0, got;
        while (len < 12 && io_read(&c, buf + len, 12 - len, &got, c.deadline_ms) == IO_OK) {
            len += got;
        }
        /* A TLS server that answers plain HTTP with 400 (Go: "Client sent an HTTP request to
         * an HTTPS server", nginx: "The plain HTTP request was sent to HTTPS port") or 426
         * (Upgrade Required) refuses it; any other HTTP answer serves it. */
        bool http = len >= 12 && memcmp(buf, "HTTP/", 5) == 0 && buf[8] == ' ';
        bool refusal = http && (memcmp(buf + 9, "400", 3) == 0 || memcmp(buf + 9, "426", 3) == 0);
        verdict = http && !refusal;
    }
    conn_close(&c);
    return verdict;
}

/* probe_https reads HSTS from a GET over |main| (or over a new http/1.1 connection when
 * |main| negotiated another ALPN), then asks plain HTTP for its redirect. */
static void probe_https(const struct probe *pr, struct conn *main, struct scan_result *out)
{
    out->http_probed = true;
    struct scan_http_head h;
    int rc;
    struct conn extra = {.fd = -1};
    SSL_CTX *ctx = NULL;
    struct conn *c = main;
    if (out->alpn[0] != '\0' && strcmp(out->alpn, "http/1.1") != 0) {
        char why[WHY_LEN];
        ctx = ctx_new(pr, TLS1_VERSION, TLS1_3_VERSION, true, true);
        c = ctx != NULL && tls_open(&extra, pr, ctx, why, sizeof(why)) == WEFT_OK ? &extra : NULL;
    }
    if (c != NULL) {
        c->deadline_ms = now_ms() + pr->timeout_ms; /* the main one's was spent on its handshake */
        http_get(pr, c, pr->ep->port, &h, &rc);
        if (rc == WEFT_OK) {
            out->hsts_present = h.hsts_valid ? 1 : 0;
            out->hsts_max_age = h.hsts_valid ? h.hsts.max_age : 0;
            out->hsts_include_subdomains = h.hsts_valid && h.hsts.include_subdomains;
            out->hsts_preload = h.hsts_valid && h.hsts.preload;
        }
    }
    conn_close(&extra);
    SSL_CTX_free(ctx);
    int port = pr->o->http_port != 0 ? pr->o->http_port : 80;
    struct conn plain = {.fd = -1};
    char why[WHY_LEN];
    if (conn_open(&plain, pr, port, why, sizeof(why)) == WEFT_OK) {
        http_get(pr, &plain, port, &h, &rc);
        if (rc == WEFT_OK) {
            bool redirect =
                h.status == 301 || h.status == 302 || h.status == 307 || h.status == 308;
            out->http_redirects_to_https = redirect && strncasecmp(h.location, "https://", 8) == 0;
        }
    }
    conn_close(&plain);
}

/* --- scan_probe ------------------------------------------------------------------------------ */

/* check_opts refuses options that cannot be right, naming which. */
static int check_opts(const struct scan_probe_opts *o, char *err, size_t err_len)
{
    if (o->timeout_ms < 0 || o->timeout_ms > SCAN_MAX_TIMEOUT_MS) {
        snprintf(err, err_len, "scan: timeout %d ms is out of range (0 to %d)", o->timeout_ms,
                 SCAN_MAX_TIMEOUT_MS);
        return WEFT_EINVAL;
    }
    if (o->http_port < 0 || o->http_port > 65535) {
        snprintf(err, err_len, "scan: HTTP port %d is out of range (1 to 65535)", o->http_port);
        return WEFT_EINVAL;
    }
    if ((o->client_key == NULL) != (o->client_chain == NULL) ||
        (o->client_chain != NULL && sk_X509_num(o->client_chain) == 0)) {
        snprintf(err, err_len, "scan: a client certificate needs both a key and a chain");
        return WEFT_EINVAL;
    }
    if (o->num_alpn > 0 && o->alpn == NULL) {
        snprintf(err, err_len, "scan: %zu ALPN protocols but no list", o->num_alpn);
        return WEFT_EINVAL;
    }
    size_t wire = 0;
    for (size_t i = 0; i < o->num_alpn; i++) {
        size_t n = o->alpn[i] != NULL ? strlen(o->alpn[i]) : 0;
        if (n == 0 || n > 255) {
            snprintf(err, err_len, "scan: ALPN protocol %zu must be 1 to 255 bytes", i + 1);
            return WEFT_EINVAL;
        }
        wire += 1 + n;
    }
    if (wire > 511) {
        snprintf(err, err_len, "scan: the ALPN list is over 511 bytes");
        return WEFT_ELIMIT;
    }
    if (o->server_name != NULL &&
        (o->server_name[0] == '\0' || strlen(o->server_name) > SCAN_NAME_MAX)) {
        snprintf(err, err_len, "scan: the server name must be 1 to %d bytes", SCAN_NAME_MAX);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* main_handshake is the probe proper: the chain, the version, the cipher, the ALPN; then HSTS
 * over the same connection. */
static void main_handshake(const struct probe *pr, struct scan_result *out)
{
    char why[WHY_LEN];
    SSL_CTX *ctx = ctx_new(pr, TLS1_VERSION, TLS1_3_VERSION, true, false);
    if (ctx == NULL) {
        snprintf(out->error, sizeof(out->error), "BoringSSL could not make a client context");
        ERR_clear_error();
        return;
    }
    struct conn c = {.fd = -1};
    if (tls_open(&c, pr, ctx, why, sizeof(why)) != WEFT_OK) {
        bool hint = c.cert_requested && pr->o->client_key == NULL;
        snprintf(out->error, sizeof(out->error), "%.180s%s", why,
                 hint ? " (the server asked for a client certificate and the scanner has none)"
                      : "");
        conn_close(&c);
        SSL_CTX_free(ctx);
        return;
    }
    out->reached = true;
    snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(c.ssl));
    const SSL_CIPHER *cipher = SSL_get_current_cipher(c.ssl);
    snprintf(out->cipher, sizeof(out->cipher), "%s",
             cipher != NULL ? SSL_CIPHER_get_name(cipher) : "");
    const uint8_t *alpn;
    unsigned alpn_len;
    SSL_get0_alpn_selected(c.ssl, &alpn, &alpn_len);
    copy_clean(out->alpn, sizeof(out->alpn), (const char *)alpn, alpn_len);
    /* the whole chain as presented, leaf first (on a client this includes the leaf) */
    STACK_OF(X509) *chain = SSL_get_peer_full_cert_chain(c.ssl);
    size_t num = chain != NULL ? sk_X509_num(chain) : 0;
    out->chain_len = num < SCAN_MAX_CHAIN ? num : SCAN_MAX_CHAIN;
    out->chain_truncated = num > SCAN_MAX_CHAIN;
    for (size_t i = 0; i < out->chain_len; i++) {
        read_cert(&out->chain[i], sk_X509_value(chain, i));
    }
    if (num > 0) {
        name_root(out, pr, sk_X509_value(chain, num - 1));
    }
    if (pr->o->probe_https) {
        probe_https(pr, &c, out);
    }
    conn_close(&c);
    SSL_CTX_free(ctx);
}

int scan_probe(const char *endpoint, const struct scan_probe_opts *opts, struct scan_result *out,
               char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    out->accepts_tls10 = out->accepts_tls11 = out->accepts_tls12 = -1;
    out->accepts_no_client_cert = out->accepts_plaintext = -1;
    out->hsts_present = out->http_redirects_to_https = -1;
    struct scan_endpoint ep;
    TRY(scan_endpoint_parse(&ep, endpoint, err, err_len));
    TRY(check_opts(opts, err, err_len));
    snprintf(out->endpoint, sizeof(out->endpoint), "%s", endpoint);
    struct probe pr = {
        .o = opts,
        .ep = &ep,
        .timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : SCAN_DEFAULT_TIMEOUT_MS,
    };
    pr.sni = opts->server_name != NULL ? opts->server_name : ep.host_is_name ? ep.host : NULL;
    bool v6 = strchr(ep.host, ':') != NULL;
    snprintf(pr.where, sizeof(pr.where), "%s%s%s:%d", v6 ? "[" : "", ep.host, v6 ? "]" : "",
             ep.port);

    /* A peer that closes while we write must not end the process with SIGPIPE (SSL_write goes
     * through write(2)): block it here, and take back one we caused before unblocking. */
    sigset_t pipe_set, old_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);

    main_handshake(&pr, out);
    if (out->reached) {
        if (opts->probe_versions) {
            out->accepts_tls10 = probe_version(&pr, TLS1_VERSION);
            out->accepts_tls11 = probe_version(&pr, TLS1_1_VERSION);
            out->accepts_tls12 = probe_version(&pr, TLS1_2_VERSION);
        }
        if (opts->probe_no_client_cert) {
            out->accepts_no_client_cert = probe_no_client_cert(&pr);
        }
        if (opts->probe_plaintext) {
            out->accepts_plaintext = probe_plaintext(&pr);
        }
    }

    sigemptyset(&pending);
    sigpending(&pending);
    if (!was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    ERR_clear_error();
    return WEFT_OK;
}
