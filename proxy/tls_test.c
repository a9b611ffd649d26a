/* proxy/tls_test.c: the contract of proxy/tls.h. Both ends run in this one thread over a
 * non-blocking AF_UNIX socketpair, driven in turn by a small loop. Certificates are minted at
 * test time around the real clock (tls.c reads it, as BoringSSL's ticket clock does). Peers that
 * weft never is (TLS 1.2, no ALPN, no certificate) are raw BoringSSL clients. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/base/err.h"
#include "lib/spiffe/x509svid.h"
#include "proxy/tls.h"
#include "test/testlib/certs.h"

#define CLIENT_ID "spiffe://example.org/ns/a/sa/client"
#define SERVER_ID "spiffe://example.org/ns/b/sa/server"
#define OTHER_ID "spiffe://example.org/ns/c/sa/other"
#define ROUNDS 200

static struct testlib_cred root, other_root;
static struct spiffe_bundle_set bundles; /* example.org only */
static int64_t now;

static void setup(void)
{
    now = (int64_t)time(NULL);
    cr_assert_eq(testlib_mint_root(&root, "example.org", SPIFFE_KEY_EC_P256, now - TESTLIB_HOUR,
                                   TESTLIB_DAY),
                 WEFT_OK);
    cr_assert_eq(testlib_mint_root(&other_root, "other.org", SPIFFE_KEY_EC_P256, now - TESTLIB_HOUR,
                                   TESTLIB_DAY),
                 WEFT_OK);
    spiffe_bundle_set_init(&bundles);
    cr_assert_eq(testlib_bundle_set_add(&bundles, "example.org", root.cert), WEFT_OK);
}

static void teardown(void)
{
    spiffe_bundle_set_cleanup(&bundles);
    testlib_cred_cleanup(&root);
    testlib_cred_cleanup(&other_root);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 30);

/* --- fixtures ----------------------------------------------------------------------------- */

static struct testlib_cred leaf(const struct testlib_cred *issuer, const char *id,
                                int64_t not_before, int64_t ttl)
{
    struct testlib_cred c = {0};
    cr_assert_eq(testlib_mint_leaf(&c, issuer, id, SPIFFE_KEY_EC_P256, not_before, ttl), WEFT_OK);
    return c;
}

static struct testlib_cred good_leaf(const char *id)
{
    return leaf(&root, id, now - TESTLIB_HOUR, 2 * TESTLIB_HOUR);
}

struct deny {
    const char *const *ids;
    size_t num_ids;
    const char *const *serials;
    size_t num_serials;
};

/* creds_with makes creds of |c| trusting |b| (NULL: the suite's bundles), with the deny list
 * |d| (NULL: none) and |ticket_life_s| (tls_creds_params). */
static struct tls_creds *creds_with(const struct testlib_cred *c, const struct spiffe_bundle_set *b,
                                    const struct deny *d, int64_t ticket_life_s)
{
    size_t chain_len, key_len;
    uint8_t *chain = testlib_der(c->cert, &chain_len);
    cr_assert_not_null(chain);
    CBB cbb;
    uint8_t *key;
    cr_assert(CBB_init(&cbb, 256) && EVP_marshal_private_key(&cbb, c->key) &&
              CBB_finish(&cbb, &key, &key_len));
    struct tls_creds_params p = {
        .chain_der = chain,
        .chain_der_len = chain_len,
        .key_der = key,
        .key_der_len = key_len,
        .bundles = b != NULL ? b : &bundles,
        .ticket_life_s = ticket_life_s,
    };
    if (d != NULL) {
        p.deny_ids = d->ids;
        p.num_deny_ids = d->num_ids;
        p.deny_serials = d->serials;
        p.num_deny_serials = d->num_serials;
    }
    struct tls_creds *creds = NULL;
    cr_assert_eq(tls_creds_new(&creds, &p), WEFT_OK);
    OPENSSL_free(chain);
    OPENSSL_free(key);
    return creds;
}

static struct tls_creds *creds_deny(const struct testlib_cred *c, const struct deny *d)
{
    return creds_with(c, NULL, d, 0);
}

static struct tls_creds *creds_of(const struct testlib_cred *c) { return creds_deny(c, NULL); }

static void pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

/* struct duo is a client and a server over one socketpair. */
struct duo {
    int sv[2]; /* [0] client, [1] server */
    struct tls_conn *c, *s;
    int crc, src;
};

static void duo_start(struct duo *d, struct tls_creds *cc, struct tls_creds *sc, const char *expect)
{
    pair(d->sv);
    cr_assert_eq(tls_conn_new_client(&d->c, cc, d->sv[0], expect), WEFT_OK);
    cr_assert_eq(tls_conn_new_server(&d->s, sc, d->sv[1]), WEFT_OK);
    d->crc = d->src = WEFT_EAGAIN;
}

/* duo_handshake drives both handshakes until neither wants more, or ROUNDS turns (a side that
 * failed leaves the other waiting for bytes that never come). */
static void duo_handshake(struct duo *d)
{
    for (int i = 0; i < ROUNDS && (d->crc == WEFT_EAGAIN || d->src == WEFT_EAGAIN); i++) {
        int want;
        if (d->crc == WEFT_EAGAIN) {
            d->crc = tls_conn_handshake(d->c, &want);
            cr_assert(d->crc != WEFT_EAGAIN || want == XPRT_WANT_READ || want == XPRT_WANT_WRITE);
        }
        if (d->src == WEFT_EAGAIN) {
            d->src = tls_conn_handshake(d->s, &want);
        }
    }
}

static void duo_end(struct duo *d)
{
    tls_conn_free(d->c);
    tls_conn_free(d->s);
    close(d->sv[0]);
    close(d->sv[1]);
}

/* xfer sends |len| bytes from |from| and reads them at |to|, both driven in turn, and checks
 * they arrive intact. Large transfers fill the socket and exercise WEFT_EAGAIN both ways. */
static void xfer(struct tls_conn *from, int from_fd, struct tls_conn *to, int to_fd, size_t len)
{
    uint8_t *out = malloc(len), *in = malloc(len);
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)(i * 7 + 3);
    }
    size_t sent = 0, got = 0;
    bool saw_eagain = false, held = false;
    /* Each turn sends until the socket is full, then reads until nothing is left. A send that
     * took the bytes but holds records (XPRT_WANT_WRITE) is called again, with nothing new once
     * everything is taken, until it holds none (xprt.h). */
    for (int i = 0; got < len && i < 100000; i++) {
        int want;
        while (sent < len || held) {
            ssize_t n = tls_xprt.send(from, from_fd, out + sent, len - sent, &want);
            if (n == WEFT_EAGAIN) {
                cr_assert_eq(want, XPRT_WANT_WRITE);
                saw_eagain = true;
                break;
            }
            cr_assert_geq(n, 0, "send: %zd %s", n, tls_conn_reason(from));
            cr_assert(n > 0 || sent == len, "send moved nothing of %zu", len - sent);
            sent += (size_t)n;
            held = (want & XPRT_WANT_WRITE) != 0;
            cr_assert(n > 0 || !held);
        }
        for (;;) {
            ssize_t n = tls_xprt.recv(to, to_fd, in + got, len - got, &want);
            if (n == WEFT_EAGAIN) {
                cr_assert_eq(want, XPRT_WANT_READ);
                break;
            }
            cr_assert_gt(n, 0, "recv: %zd %s", n, tls_conn_reason(to));
            got += (size_t)n;
        }
    }
    cr_assert_eq(got, len);
    cr_assert_eq(memcmp(in, out, len), 0);
    if (len > (1 << 20)) {
        cr_assert(saw_eagain, "a transfer larger than the socket buffers never waited");
    }
    free(out);
    free(in);
}

/* recv_until reads from |t| until something other than WEFT_EAGAIN comes, or ROUNDS tries. */
static ssize_t recv_until(struct tls_conn *t, int fd, uint8_t *buf, size_t cap)
{
    for (int i = 0; i < ROUNDS; i++) {
        int want;
        ssize_t n = tls_xprt.recv(t, fd, buf, cap, &want);
        if (n != WEFT_EAGAIN) {
            return n;
        }
    }
    return WEFT_EAGAIN;
}

/* ok_duo runs a handshake that must succeed, then moves a few bytes each way (which also lets
 * the client read the server's tickets). */
static void ok_duo(struct duo *d, struct tls_creds *cc, struct tls_creds *sc, const char *expect)
{
    duo_start(d, cc, sc, expect);
    duo_handshake(d);
    cr_assert_eq(d->crc, WEFT_OK, "client: %s", tls_conn_reason(d->c));
    cr_assert_eq(d->src, WEFT_OK, "server: %s", tls_conn_reason(d->s));
    xfer(d->c, d->sv[0], d->s, d->sv[1], 100);
    xfer(d->s, d->sv[1], d->c, d->sv[0], 100);
}

static void assert_reason(const struct tls_conn *t, const char *want)
{
    cr_assert(strstr(tls_conn_reason(t), want) != NULL, "reason \"%s\" lacks \"%s\"",
              tls_conn_reason(t), want);
}

/* --- identities ----------------------------------------------------------------------------- */

Test(tls, mtls_with_correct_ids_both_ways)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    cr_assert_str_eq(tls_creds_id(cc), CLIENT_ID);
    struct duo d;
    ok_duo(&d, cc, sc, SERVER_ID);
    cr_assert_str_eq(tls_conn_peer_id(d.c), SERVER_ID);
    cr_assert_str_eq(tls_conn_peer_id(d.s), CLIENT_ID);
    cr_assert_str_eq(tls_conn_version(d.c), "TLSv1.3");
    cr_assert_str_eq(tls_conn_version(d.s), "TLSv1.3");
    cr_assert_not(tls_conn_resumed(d.c));
    cr_assert_not(tls_conn_resumed(d.s));
    cr_assert_eq(tls_conn_peer_not_after(d.c), now + TESTLIB_HOUR);
    cr_assert_eq(tls_conn_peer_not_after(d.s), now + TESTLIB_HOUR);
    cr_assert_eq(strlen(tls_conn_peer_serial(d.s)), 32); /* 16 random bytes */
    cr_assert_str_eq(tls_conn_reason(d.c), "");
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, wrong_expected_id_refused_by_client)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    duo_start(&d, cc, sc, OTHER_ID);
    duo_handshake(&d);
    cr_assert_eq(d.crc, WEFT_EPOLICY);
    assert_reason(d.c, "peer ID " SERVER_ID " is not the expected " OTHER_ID);
    cr_assert_str_eq(tls_conn_peer_id(d.c), "");
    cr_assert_neq(d.src, WEFT_OK); /* the server hears the alert */
    assert_reason(d.s, "bad certificate");
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, expected_id_must_be_a_spiffe_id)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    struct tls_creds *cc = creds_of(&cl);
    struct tls_conn *t = NULL;
    cr_assert_neq(tls_conn_new_client(&t, cc, 0, "https://example.org/x"), WEFT_OK);
    cr_assert_neq(tls_conn_new_client(&t, cc, 0, "spiffe://example.org"), WEFT_OK);
    cr_assert_null(t);
    tls_creds_unref(cc);
    testlib_cred_cleanup(&cl);
}

/* server_refuses runs a client with |cl| against a good server and checks the server's
 * refusal. */
static void server_refuses(const struct testlib_cred *cl, const struct deny *deny,
                           const char *reason)
{
    struct testlib_cred sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(cl), *sc = creds_deny(&sl, deny);
    struct duo d;
    duo_start(&d, cc, sc, SERVER_ID);
    duo_handshake(&d);
    cr_assert_eq(d.src, WEFT_EPOLICY, "server: %d %s", d.src, tls_conn_reason(d.s));
    assert_reason(d.s, reason);
    cr_assert_str_eq(tls_conn_peer_id(d.s), "");
    /* TLS 1.3: the client finished first; its first read meets the server's alert. */
    if (d.crc == WEFT_OK) {
        uint8_t buf[16];
        cr_assert_eq(recv_until(d.c, d.sv[0], buf, sizeof(buf)), WEFT_EPOLICY);
    }
    assert_reason(d.c, "refused our certificate");
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&sl);
}

Test(tls, peer_of_another_trust_domain_refused)
{
    struct testlib_cred cl = leaf(&other_root, "spiffe://other.org/ns/a/sa/client",
                                  now - TESTLIB_HOUR, 2 * TESTLIB_HOUR);
    server_refuses(&cl, NULL,
                   "peer chain does not verify: no X.509 authorities for trust "
                   "domain \"other.org\"");
    testlib_cred_cleanup(&cl);
}

Test(tls, expired_client_certificate_refused)
{
    struct testlib_cred cl = leaf(&root, CLIENT_ID, now - 2 * TESTLIB_HOUR, TESTLIB_HOUR);
    server_refuses(&cl, NULL, "peer certificate expired");
    testlib_cred_cleanup(&cl);
}

Test(tls, not_yet_valid_client_certificate_refused)
{
    struct testlib_cred cl = leaf(&root, CLIENT_ID, now + TESTLIB_HOUR, TESTLIB_HOUR);
    server_refuses(&cl, NULL, "peer certificate not yet valid");
    testlib_cred_cleanup(&cl);
}

Test(tls, expired_server_certificate_refused_by_client)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    struct testlib_cred sl = leaf(&root, SERVER_ID, now - 2 * TESTLIB_HOUR, TESTLIB_HOUR);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    duo_start(&d, cc, sc, SERVER_ID);
    duo_handshake(&d);
    cr_assert_eq(d.crc, WEFT_EPOLICY);
    assert_reason(d.c, "peer certificate expired");
    cr_assert_eq(d.src, WEFT_EPOLICY);
    assert_reason(d.s, "peer sent TLS alert \"certificate expired\"");
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, deny_listed_id_refused)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    const char *ids[] = {"spiffe://example.org/zzz", CLIENT_ID, "spiffe://example.org/aaa"};
    struct deny deny = {.ids = ids, .num_ids = 3};
    server_refuses(&cl, &deny, "peer ID " CLIENT_ID " is deny-listed");
    testlib_cred_cleanup(&cl);
}

Test(tls, deny_listed_serial_refused)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    char hex[2 * 20 + 1] = "";
    const ASN1_INTEGER *sn = X509_get0_serialNumber(cl.cert);
    for (int i = 0; i < sn->length; i++) {
        snprintf(hex + 2 * i, 3, "%02x", sn->data[i]);
    }
    const char *serials[] = {"00ff", hex};
    struct deny deny = {.serials = serials, .num_serials = 2};
    char want[128];
    snprintf(want, sizeof(want), "peer certificate serial %s (of " CLIENT_ID ") is deny-listed",
             hex);
    server_refuses(&cl, &deny, want);
    testlib_cred_cleanup(&cl);
}

Test(tls, deny_listed_server_refused_by_client)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    const char *ids[] = {SERVER_ID};
    struct deny deny = {.ids = ids, .num_ids = 1};
    struct tls_creds *cc = creds_deny(&cl, &deny), *sc = creds_of(&sl);
    struct duo d;
    duo_start(&d, cc, sc, SERVER_ID);
    duo_handshake(&d);
    cr_assert_eq(d.crc, WEFT_EPOLICY);
    assert_reason(d.c, "peer ID " SERVER_ID " is deny-listed");
    assert_reason(d.s, "certificate revoked");
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* --- foreign clients ------------------------------------------------------------------------ */

struct raw_opts {
    uint16_t max_version;
    const uint8_t *alpn; /* wire format; NULL: no ALPN */
    size_t alpn_len;
    const struct testlib_cred *cred; /* NULL: no certificate */
};

static enum ssl_verify_result_t accept_any(SSL *ssl, uint8_t *out_alert)
{
    (void)ssl;
    (void)out_alert;
    return ssl_verify_ok;
}

/* raw_vs_server runs a raw BoringSSL client against a tls_conn server and returns the server's
 * result; |*out_client_err| is the client's last BoringSSL error reason. */
static int raw_vs_server(const struct raw_opts *o, struct tls_conn **out_server, int sv[2],
                         int *out_client_err)
{
    struct testlib_cred sl = good_leaf(SERVER_ID);
    struct tls_creds *sc = creds_of(&sl);
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    cr_assert(SSL_CTX_set_max_proto_version(ctx, o->max_version));
    if (o->alpn != NULL) {
        cr_assert_eq(SSL_CTX_set_alpn_protos(ctx, o->alpn, (unsigned)o->alpn_len), 0);
    }
    if (o->cred != NULL) {
        cr_assert(SSL_CTX_use_certificate(ctx, o->cred->cert) &&
                  SSL_CTX_use_PrivateKey(ctx, o->cred->key));
    }
    SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, accept_any);
    pair(sv);
    SSL *ssl = SSL_new(ctx);
    cr_assert(SSL_set_fd(ssl, sv[0]));
    SSL_set_connect_state(ssl);
    cr_assert_eq(tls_conn_new_server(out_server, sc, sv[1]), WEFT_OK);
    int src = WEFT_EAGAIN, cret = -1;
    *out_client_err = 0;
    for (int i = 0; i < ROUNDS; i++) {
        if (cret != 1) {
            ERR_clear_error();
            cret = SSL_do_handshake(ssl);
            if (cret != 1 && SSL_get_error(ssl, cret) == SSL_ERROR_SSL) {
                *out_client_err = ERR_GET_REASON(ERR_peek_error());
                cret = 1; /* done, failed */
            }
        } else if (*out_client_err == 0) {
            uint8_t b;
            ERR_clear_error();
            int n = SSL_read(ssl, &b, 1);
            if (n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_SSL) {
                *out_client_err = ERR_GET_REASON(ERR_peek_error());
            }
        }
        if (src == WEFT_EAGAIN) {
            int want;
            src = tls_conn_handshake(*out_server, &want);
        }
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&sl);
    return src;
}

static const uint8_t weft_alpn[] = {6, 'w', 'e', 'f', 't', '/', '1'};

Test(tls, client_without_certificate_refused)
{
    struct raw_opts o = {TLS1_3_VERSION, weft_alpn, sizeof(weft_alpn), NULL};
    struct tls_conn *s;
    int sv[2], cerr;
    cr_assert_eq(raw_vs_server(&o, &s, sv, &cerr), WEFT_EPOLICY);
    assert_reason(s, "peer presented no certificate");
    cr_assert_eq(cerr, SSL_R_TLSV1_ALERT_CERTIFICATE_REQUIRED);
    tls_conn_free(s);
    close(sv[0]);
    close(sv[1]);
}

Test(tls, client_without_alpn_refused)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    struct raw_opts o = {TLS1_3_VERSION, NULL, 0, &cl};
    struct tls_conn *s;
    int sv[2], cerr;
    cr_assert_eq(raw_vs_server(&o, &s, sv, &cerr), WEFT_EPROTO);
    assert_reason(s, "peer did not offer ALPN weft/1");
    cr_assert_eq(cerr, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    tls_conn_free(s);
    close(sv[0]);
    close(sv[1]);
    testlib_cred_cleanup(&cl);
}

Test(tls, client_with_other_alpn_refused)
{
    static const uint8_t h2[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    struct raw_opts o = {TLS1_3_VERSION, h2, sizeof(h2), &cl};
    struct tls_conn *s;
    int sv[2], cerr;
    cr_assert_eq(raw_vs_server(&o, &s, sv, &cerr), WEFT_EPROTO);
    assert_reason(s, "peer did not offer ALPN weft/1");
    cr_assert_eq(cerr, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    tls_conn_free(s);
    close(sv[0]);
    close(sv[1]);
    testlib_cred_cleanup(&cl);
}

Test(tls, tls12_client_refused)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    struct raw_opts o = {TLS1_2_VERSION, weft_alpn, sizeof(weft_alpn), &cl};
    struct tls_conn *s;
    int sv[2], cerr;
    cr_assert_eq(raw_vs_server(&o, &s, sv, &cerr), WEFT_EPROTO);
    assert_reason(s, "peer does not speak TLS 1.3");
    cr_assert_eq(cerr, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    tls_conn_free(s);
    close(sv[0]);
    close(sv[1]);
    testlib_cred_cleanup(&cl);
}

/* --- data --------------------------------------------------------------------------------- */

Test(tls, data_both_ways_with_want_and_close_notify)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    ok_duo(&d, cc, sc, SERVER_ID);
    /* Several MB: the socketpair fills, so sends wait (WANT_WRITE) and reads wait (WANT_READ). */
    xfer(d.c, d.sv[0], d.s, d.sv[1], 4 << 20);
    xfer(d.s, d.sv[1], d.c, d.sv[0], 4 << 20);

    /* Nothing to read: EAGAIN with WANT_READ. */
    uint8_t buf[64];
    int want;
    cr_assert_eq(tls_xprt.recv(d.s, d.sv[1], buf, sizeof(buf), &want), WEFT_EAGAIN);
    cr_assert_eq(want, XPRT_WANT_READ);

    /* Half-close: the client's close_notify is the server's EOF; the server still sends. */
    cr_assert_eq(tls_xprt.shutdown(d.c, d.sv[0], &want), WEFT_OK);
    cr_assert_eq(recv_until(d.s, d.sv[1], buf, sizeof(buf)), 0);
    xfer(d.s, d.sv[1], d.c, d.sv[0], 1000);
    cr_assert_eq(tls_xprt.shutdown(d.s, d.sv[1], &want), WEFT_OK);
    cr_assert_eq(recv_until(d.c, d.sv[0], buf, sizeof(buf)), 0);
    cr_assert_null(tls_xprt.reason(d.c));
    cr_assert_null(tls_xprt.reason(d.s));
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* A burst of several records crosses in one call each way: the sender seals them all (one
 * send(2) for the lot), the receiver opens every record it read ahead, and says the socket is
 * drained, so the relay does not ask it again before it is readable. */
Test(tls, a_burst_of_records_crosses_in_one_call)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    ok_duo(&d, cc, sc, SERVER_ID);
    enum { BURST = 40 * 1024 }; /* three records */
    static uint8_t out[BURST], in[64 * 1024];
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = (uint8_t)(i * 13);
    }
    int want;
    cr_assert_eq(tls_xprt.send(d.c, d.sv[0], out, sizeof(out), &want), BURST);
    cr_assert_eq(want, 0, "a socketpair with room: nothing held");
    cr_assert_eq(tls_xprt.recv(d.s, d.sv[1], in, sizeof(in), &want), BURST);
    cr_assert_eq(want, XPRT_DRAINED);
    cr_assert_eq(memcmp(in, out, sizeof(out)), 0);
    /* A smaller buffer takes what fits; the rest comes with the next call, not drained before. */
    cr_assert_eq(tls_xprt.send(d.c, d.sv[0], out, sizeof(out), &want), BURST);
    cr_assert_eq(tls_xprt.recv(d.s, d.sv[1], in, 20000, &want), 20000);
    cr_assert_eq(want & XPRT_DRAINED, 0);
    cr_assert_eq(tls_xprt.recv(d.s, d.sv[1], in + 20000, sizeof(in) - 20000, &want), BURST - 20000);
    cr_assert_eq(want, XPRT_DRAINED);
    cr_assert_eq(memcmp(in, out, sizeof(out)), 0);
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* Data and a close_notify read in one go: the data comes first, not marked drained (the relay
 * must ask again), and the next call gives the EOF. */
Test(tls, data_then_close_notify_is_not_drained)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    ok_duo(&d, cc, sc, SERVER_ID);
    int want;
    uint8_t buf[256];
    cr_assert_eq(tls_xprt.send(d.c, d.sv[0], (const uint8_t *)"last words", 10, &want), 10);
    cr_assert_eq(tls_xprt.shutdown(d.c, d.sv[0], &want), WEFT_OK);
    cr_assert_eq(tls_xprt.recv(d.s, d.sv[1], buf, sizeof(buf), &want), 10);
    cr_assert_eq(want & XPRT_DRAINED, 0, "an EOF waits behind the data");
    cr_assert_eq(tls_xprt.recv(d.s, d.sv[1], buf, sizeof(buf), &want), 0);
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* A live connection cut by its proxy tells the peer why, with an alert the peer reports. */
Test(tls, a_cut_tells_the_peer_why)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    static const struct {
        enum tls_cut why;
        const char *says;
    } cuts[] = {
        {TLS_CUT_EXPIRED,
         "peer sent TLS alert \"certificate expired\": it refused our certificate"},
        {TLS_CUT_REVOKED,
         "peer sent TLS alert \"certificate revoked\": it refused our certificate"},
        {TLS_CUT_DENIED,
         "peer sent TLS alert \"access denied\": it does not allow this connection"},
    };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        struct duo d;
        ok_duo(&d, cc, sc, SERVER_ID);
        tls_conn_cut(d.s, cuts[i].why);
        uint8_t buf[64];
        cr_assert_eq(recv_until(d.c, d.sv[0], buf, sizeof(buf)), WEFT_EPOLICY);
        cr_assert_str_eq(tls_xprt.reason(d.c), cuts[i].says);
        duo_end(&d);
    }
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, close_without_close_notify_is_an_error)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    ok_duo(&d, cc, sc, SERVER_ID);
    cr_assert_eq(shutdown(d.sv[0], SHUT_WR), 0); /* a FIN with no close_notify: truncation */
    uint8_t buf[64];
    cr_assert_eq(recv_until(d.s, d.sv[1], buf, sizeof(buf)), WEFT_EIO);
    cr_assert_str_eq(tls_xprt.reason(d.s), "peer closed the connection without close_notify");
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* --- verified chains ------------------------------------------------------------------------ */

/* Without tickets every handshake is full; a chain the creds verified before is not verified
 * again, but another chain (a new SVID of the same ID) is. */
Test(tls, a_chain_verified_once_per_creds)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct testlib_cred cl2 = good_leaf(CLIENT_ID);
    struct tls_creds *cc = creds_with(&cl, NULL, NULL, -1), *sc = creds_with(&sl, NULL, NULL, -1);
    struct tls_creds *cc2 = creds_with(&cl2, NULL, NULL, -1);
    struct duo d1, d2, d3;
    ok_duo(&d1, cc, sc, SERVER_ID);
    cr_assert_eq(tls_creds_verified_hits(cc), 0);
    cr_assert_eq(tls_creds_verified_hits(sc), 0);
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert_not(tls_conn_resumed(d2.c));
    cr_assert_eq(tls_creds_verified_hits(cc), 1);
    cr_assert_eq(tls_creds_verified_hits(sc), 1);
    cr_assert_str_eq(tls_conn_peer_id(d2.s), CLIENT_ID);
    cr_assert_str_eq(tls_conn_peer_serial(d2.s), tls_conn_peer_serial(d1.s));
    ok_duo(&d3, cc2, sc, SERVER_ID);
    cr_assert_eq(tls_creds_verified_hits(sc), 1, "a new client chain is verified in full");
    cr_assert_str_neq(tls_conn_peer_serial(d3.s), tls_conn_peer_serial(d1.s));
    duo_end(&d1);
    duo_end(&d2);
    duo_end(&d3);
    tls_creds_unref(cc);
    tls_creds_unref(cc2);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&cl2);
    testlib_cred_cleanup(&sl);
}

/* A chain verified before is still checked against the deny list, and refused once it
 * expires. */
Test(tls, a_verified_chain_still_expires_and_is_still_denied)
{
    struct testlib_cred cl = leaf(&root, CLIENT_ID, now - 60, 62), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_with(&cl, NULL, NULL, -1), *sc = creds_with(&sl, NULL, NULL, -1);
    struct duo d1, d2, d3;
    ok_duo(&d1, cc, sc, SERVER_ID);
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert_eq(tls_creds_verified_hits(sc), 1);

    char serial[SPIFFE_SERIAL_HEX_LEN];
    spiffe_serial_hex(serial, cl.cert);
    const char *serials[] = {serial};
    struct deny deny = {.serials = serials, .num_serials = 1};
    struct tls_creds *denying = creds_with(&sl, NULL, &deny, -1);
    for (int i = 0; i < 2; i++) { /* the second time, the chain is one |denying| verified */
        duo_start(&d3, cc, denying, SERVER_ID);
        duo_handshake(&d3);
        cr_assert_eq(d3.src, WEFT_EPOLICY);
        assert_reason(d3.s, "is deny-listed");
        duo_end(&d3);
        cr_assert_eq(tls_creds_verified_hits(denying), (uint64_t)i);
    }

    while ((int64_t)time(NULL) <= now + 2) {
        usleep(100 * 1000);
    }
    duo_start(&d3, cc, sc, SERVER_ID);
    duo_handshake(&d3);
    cr_assert_eq(d3.src, WEFT_EPOLICY);
    assert_reason(d3.s, "peer certificate expired");
    cr_assert_eq(tls_creds_verified_hits(sc), 1);
    duo_end(&d1);
    duo_end(&d2);
    duo_end(&d3);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    tls_creds_unref(denying);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* A remembered chain is forgotten when an authority of the peer's trust domain expires, even
 * one the chain does not name: the client's leaf names the bundle's intermediate, whose root,
 * also in the bundle, expires first, and full verification builds its path through that root. */
Test(tls, a_verified_chain_is_forgotten_when_an_authority_expires)
{
    /* Built field by field: minting would end the intermediate and the leaf with the root. */
    struct testlib_cred r2 = {0}, x = {0}, cl = {0};
    cr_assert_eq(testlib_mint_root(&r2, "example.org", SPIFFE_KEY_EC_P256, now - 60, 62), WEFT_OK);
    struct testlib_cert_spec spec;
    testlib_spec_signing_ca(&spec, "spiffe://example.org");
    spec.subject_cn = "intermediate";
    spec.not_before = now - 60;
    spec.not_after = now + TESTLIB_DAY;
    x.key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_eq(testlib_cert_build(&x.cert, &spec, x.key, r2.cert, r2.key), WEFT_OK);
    testlib_spec_leaf(&spec, CLIENT_ID);
    spec.not_before = now - 60;
    spec.not_after = now + TESTLIB_DAY;
    cl.key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert_eq(testlib_cert_build(&cl.cert, &spec, cl.key, x.cert, x.key), WEFT_OK);
    struct spiffe_bundle_set both;
    spiffe_bundle_set_init(&both);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, "example.org", strlen("example.org"), NULL), WEFT_OK);
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    cr_assert_eq(spiffe_bundle_add_x509(b, x.cert), WEFT_OK);
    cr_assert_eq(spiffe_bundle_add_x509(b, r2.cert), WEFT_OK);
    cr_assert_eq(spiffe_bundle_set_put(&both, b), WEFT_OK);
    struct testlib_cred sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_with(&cl, NULL, NULL, -1), *sc = creds_with(&sl, &both, NULL, -1);
    struct duo d1, d2, d3;
    ok_duo(&d1, cc, sc, SERVER_ID);
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert_eq(tls_creds_verified_hits(sc), 1);
    while ((int64_t)time(NULL) <= now + 2) {
        usleep(100 * 1000);
    }
    duo_start(&d3, cc, sc, SERVER_ID);
    duo_handshake(&d3);
    cr_assert_eq(d3.src, WEFT_EPOLICY, "a chain through an expired root was accepted");
    assert_reason(d3.s, "expired");
    cr_assert_eq(tls_creds_verified_hits(sc), 1);
    duo_end(&d1);
    duo_end(&d2);
    duo_end(&d3);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    spiffe_bundle_set_cleanup(&both);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
    testlib_cred_cleanup(&x);
    testlib_cred_cleanup(&r2);
}

/* --- resumption and rotation ---------------------------------------------------------------- */

Test(tls, second_connection_resumes)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d1, d2;
    ok_duo(&d1, cc, sc, SERVER_ID);
    cr_assert_gt(tls_conn_resume_until(d1.c), now);
    cr_assert_leq(tls_conn_resume_until(d1.c), now + TLS_DEFAULT_TICKET_LIFE_S + 5);
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert(tls_conn_resumed(d2.c));
    cr_assert(tls_conn_resumed(d2.s));
    cr_assert_str_eq(tls_conn_peer_id(d2.c), SERVER_ID);
    cr_assert_str_eq(tls_conn_peer_id(d2.s), CLIENT_ID);
    cr_assert_str_eq(tls_conn_peer_serial(d2.s), tls_conn_peer_serial(d1.s));
    cr_assert_eq(tls_conn_peer_not_after(d2.c), now + TESTLIB_HOUR);
    duo_end(&d1);
    duo_end(&d2);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* The server's tickets leave with its handshake, not with its first data: a client whose
 * server says nothing (a client-first protocol still waiting, an idle connection) has one for
 * its next connection all the same. */
Test(tls, tickets_arrive_before_the_server_sends_data)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d1, d2;
    duo_start(&d1, cc, sc, SERVER_ID);
    duo_handshake(&d1);
    cr_assert_eq(d1.crc, WEFT_OK, "%s", tls_conn_reason(d1.c));
    uint8_t buf[16];
    int want = 0;
    for (int i = 0; i < 3; i++) { /* the client reads what came: tickets only, no data */
        cr_assert_eq(tls_xprt.recv(d1.c, d1.sv[0], buf, sizeof(buf), &want), WEFT_EAGAIN);
    }
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert(tls_conn_resumed(d2.c), "no ticket reached the client before any data");
    duo_end(&d1);
    duo_end(&d2);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

/* Connections opened at once to one peer each find a ticket: the server sends two per
 * handshake, and the client keeps both (up to TLS_TICKETS_PER_PEER). */
Test(tls, parallel_connections_to_one_peer_each_resume)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d1, d2, d3;
    ok_duo(&d1, cc, sc, SERVER_ID); /* its tickets arrive with the data */
    duo_start(&d2, cc, sc, SERVER_ID);
    duo_handshake(&d2); /* no data read: d2 brings no new ticket before d3 starts */
    duo_start(&d3, cc, sc, SERVER_ID);
    duo_handshake(&d3);
    cr_assert_eq(d2.crc, WEFT_OK, "%s", tls_conn_reason(d2.c));
    cr_assert_eq(d3.crc, WEFT_OK, "%s", tls_conn_reason(d3.c));
    cr_assert(tls_conn_resumed(d2.c));
    cr_assert(tls_conn_resumed(d3.c), "the second parallel connection found no ticket");
    duo_end(&d1);
    duo_end(&d2);
    duo_end(&d3);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, no_resumption_after_server_creds_change)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d1, d2;
    ok_duo(&d1, cc, sc, SERVER_ID);
    struct tls_creds *sc2 = creds_of(&sl); /* a rotation, even to the same SVID */
    ok_duo(&d2, cc, sc2, SERVER_ID);
    cr_assert_not(tls_conn_resumed(d2.c)); /* offered, refused: a full handshake */
    cr_assert_not(tls_conn_resumed(d2.s));
    duo_end(&d1);
    duo_end(&d2);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    tls_creds_unref(sc2);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, ticket_offered_only_to_the_same_expected_id)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID),
                        ol = good_leaf(OTHER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl), *oc = creds_of(&ol);
    struct duo d1, d2, d3;
    ok_duo(&d1, cc, sc, SERVER_ID);
    ok_duo(&d2, cc, oc, OTHER_ID); /* another server: full handshake */
    cr_assert_not(tls_conn_resumed(d2.c));
    ok_duo(&d3, cc, sc, SERVER_ID); /* SERVER_ID's ticket is still there */
    cr_assert(tls_conn_resumed(d3.c));
    duo_end(&d1);
    duo_end(&d2);
    duo_end(&d3);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    tls_creds_unref(oc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
    testlib_cred_cleanup(&ol);
}

Test(tls, ticket_life_capped_by_either_certificate)
{
    /* The client's certificate ends in 100 s: the server seals the session for no longer. */
    struct testlib_cred cl = leaf(&root, CLIENT_ID, now - 60, 160);
    struct testlib_cred sl = leaf(&root, SERVER_ID, now - 60, 260);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d;
    ok_duo(&d, cc, sc, SERVER_ID);
    cr_assert_gt(tls_conn_resume_until(d.s), now);
    cr_assert_leq(tls_conn_resume_until(d.s), now + 100 + 1);
    cr_assert_leq(tls_conn_resume_until(d.c), now + 100 + 1);
    duo_end(&d);
    /* Swapped: the server's certificate ends first; the client keeps the ticket no longer. */
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    cc = creds_of(&sl);
    sc = creds_of(&cl);
    ok_duo(&d, cc, sc, CLIENT_ID);
    cr_assert_leq(tls_conn_resume_until(d.c), now + 100 + 1);
    cr_assert_leq(tls_conn_resume_until(d.s), now + 100 + 1);
    duo_end(&d);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, no_resumption_once_the_peer_certificate_expired)
{
    /* The server's certificate ends in 2 s. After it, the ticket is not offered and the full
     * handshake refuses the expired certificate: never a resumption past notAfter. */
    struct testlib_cred cl = good_leaf(CLIENT_ID);
    struct testlib_cred sl = leaf(&root, SERVER_ID, now - 60, 62);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d1, d2;
    ok_duo(&d1, cc, sc, SERVER_ID);
    cr_assert_leq(tls_conn_resume_until(d1.c), now + 2);
    while ((int64_t)time(NULL) <= now + 2) {
        usleep(100 * 1000);
    }
    duo_start(&d2, cc, sc, SERVER_ID);
    duo_handshake(&d2);
    cr_assert_eq(d2.crc, WEFT_EPOLICY);
    assert_reason(d2.c, "peer certificate expired");
    cr_assert_not(tls_conn_resumed(d2.c));
    duo_end(&d1);
    duo_end(&d2);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, tickets_off)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    size_t chain_len, key_len;
    uint8_t *chain = testlib_der(cl.cert, &chain_len), *key;
    CBB cbb;
    cr_assert(CBB_init(&cbb, 256) && EVP_marshal_private_key(&cbb, cl.key) &&
              CBB_finish(&cbb, &key, &key_len));
    struct tls_creds_params p = {chain, chain_len, key, key_len, &bundles, NULL, 0, NULL, 0, -1};
    struct tls_creds *cc, *sc = creds_of(&sl);
    cr_assert_eq(tls_creds_new(&cc, &p), WEFT_OK);
    struct duo d1, d2;
    ok_duo(&d1, cc, sc, SERVER_ID);
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert_not(tls_conn_resumed(d2.c));
    p.ticket_life_s = TLS_MAX_TICKET_LIFE_S + 1;
    struct tls_creds *bad = NULL;
    cr_assert_eq(tls_creds_new(&bad, &p), WEFT_EINVAL);
    duo_end(&d1);
    duo_end(&d2);
    OPENSSL_free(chain);
    OPENSSL_free(key);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, creds_refuse_a_key_of_another_certificate)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    size_t chain_len, key_len;
    uint8_t *chain = testlib_der(cl.cert, &chain_len), *key;
    CBB cbb;
    cr_assert(CBB_init(&cbb, 256) && EVP_marshal_private_key(&cbb, sl.key) &&
              CBB_finish(&cbb, &key, &key_len));
    struct tls_creds_params p = {.chain_der = chain,
                                 .chain_der_len = chain_len,
                                 .key_der = key,
                                 .key_der_len = key_len,
                                 .bundles = &bundles};
    struct tls_creds *c = NULL;
    cr_assert_eq(tls_creds_new(&c, &p), WEFT_EINVAL);
    cr_assert_null(c);
    OPENSSL_free(chain);
    OPENSSL_free(key);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
}

Test(tls, rotation_keeps_established_connections)
{
    struct testlib_cred cl = good_leaf(CLIENT_ID), sl = good_leaf(SERVER_ID);
    struct tls_creds *cc = creds_of(&cl), *sc = creds_of(&sl);
    struct duo d1;
    ok_duo(&d1, cc, sc, SERVER_ID);
    /* Rotate both sides: new SVIDs, the old creds dropped by their owner at once. */
    struct testlib_cred cl2 = good_leaf(CLIENT_ID), sl2 = good_leaf(SERVER_ID);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    cc = creds_of(&cl2);
    sc = creds_of(&sl2);
    xfer(d1.c, d1.sv[0], d1.s, d1.sv[1], 1 << 16); /* the old connection keeps flowing */
    xfer(d1.s, d1.sv[1], d1.c, d1.sv[0], 1 << 16);
    struct duo d2;
    ok_duo(&d2, cc, sc, SERVER_ID);
    cr_assert_not(tls_conn_resumed(d2.c)); /* the old creds' tickets died with them */
    cr_assert_str_neq(tls_conn_peer_serial(d2.s), tls_conn_peer_serial(d1.s));
    duo_end(&d1);
    duo_end(&d2);
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    testlib_cred_cleanup(&cl);
    testlib_cred_cleanup(&sl);
    testlib_cred_cleanup(&cl2);
    testlib_cred_cleanup(&sl2);
}
