/* scan/probe_test.c: scan_probe and scan_evaluate against TLS servers this test runs on
 * 127.0.0.1 (test/testlib/tls_server.h), with certificates minted at test time around
 * time(NULL). Each case asserts the
 * exact findings (codes, severities) and the exit code. */
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>

#include "scan/evaluate.h"
#include "scan/probe.h"
#include "test/testlib/certs.h"
#include "test/testlib/net.h"
#include "test/testlib/tls_server.h"

#define MIN_S INT64_C(60)
#define HOUR_S INT64_C(3600)
#define DAY_S INT64_C(86400)
#define LEAF_ID "spiffe://example.org/ns/web/sa/api"
#define CLIENT_ID "spiffe://example.org/ns/scan/sa/weftctl"

/* --- fixtures ------------------------------------------------------------------------------ */

static int64_t now;
static struct testlib_cred root, inter, leaf, client;
static struct testlib_tls_server srv, plain;
static STACK_OF(X509) * bundle, *client_chain;
static struct scan_probe_opts opts;
static struct scan_policy pol;
static struct scan_result res;
static struct scan_finding found[SCAN_MAX_FINDINGS];
static char err[256];

static void setup(void)
{
    now = (int64_t)time(NULL);
    testlib_tls_server_init(&srv);
    testlib_tls_server_init(&plain);
    memset(&opts, 0, sizeof(opts));
    opts.timeout_ms = 2000;
    scan_policy_default(&pol);
}

static void teardown(void)
{
    testlib_tls_server_stop(&srv);
    testlib_tls_server_stop(&plain);
    sk_X509_pop_free(bundle, X509_free);
    sk_X509_pop_free(client_chain, X509_free);
    testlib_cred_cleanup(&root);
    testlib_cred_cleanup(&inter);
    testlib_cred_cleanup(&leaf);
    testlib_cred_cleanup(&client);
}

TestSuite(scan_probe, .init = setup, .fini = teardown, .timeout = 60);

/* tls_ctx is testlib_tls_ctx_new, asserted. */
static SSL_CTX *tls_ctx(X509 *const *certs, size_t num, EVP_PKEY *key, uint16_t min, uint16_t max,
                        enum testlib_client_cert cc)
{
    SSL_CTX *ctx = testlib_tls_ctx_new(certs, num, key, min, max, cc);
    cr_assert_not_null(ctx, "a server context");
    return ctx;
}

/* start starts |s| with |ctx| (NULL: plain HTTP), asserted. */
static void start(struct testlib_tls_server *s, SSL_CTX *ctx)
{
    cr_assert_eq(testlib_tls_server_start(s, ctx), 0, "a server on loopback");
}

/* mint makes root (1 year, 30 days old) -> intermediate -> leaf with the given validity
 * windows (start relative to now, length), a client SVID under the intermediate, and the
 * bundle holding the root. */
static void mint(int64_t inter_from, int64_t inter_ttl, int64_t leaf_from, int64_t leaf_ttl)
{
    cr_assert_eq(
        testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, now - 30 * DAY_S, 365 * DAY_S),
        WEFT_OK);
    cr_assert_eq(testlib_mint_intermediate(&inter, &root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                                           now + inter_from, inter_ttl),
                 WEFT_OK);
    cr_assert_eq(
        testlib_mint_leaf(&leaf, &inter, LEAF_ID, SPIFFE_KEY_EC_P256, now + leaf_from, leaf_ttl),
        WEFT_OK);
    cr_assert_eq(
        testlib_mint_leaf(&client, &inter, CLIENT_ID, SPIFFE_KEY_EC_P256, now - 5 * MIN_S, HOUR_S),
        WEFT_OK);
    bundle = testlib_chain(&root.cert, 1);
    X509 *cc[] = {client.cert, inter.cert};
    client_chain = testlib_chain(cc, 2);
}

/* serve starts the TLS server presenting leaf -> intermediate. */
static void serve(uint16_t min, uint16_t max, enum testlib_client_cert cc)
{
    X509 *chain[] = {leaf.cert, inter.cert};
    start(&srv, tls_ctx(chain, 2, leaf.key, min, max, cc));
}

static void endpoint(char *buf, size_t len, int port) { snprintf(buf, len, "127.0.0.1:%d", port); }

/* scan probes |ep| and judges it; returns how many findings (all written). */
static size_t scan(const char *ep)
{
    cr_assert_eq(scan_probe(ep, &opts, &res, err, sizeof(err)), WEFT_OK, "%s", err);
    size_t n = scan_evaluate(&res, &pol, (int64_t)time(NULL), found, SCAN_MAX_FINDINGS);
    cr_assert_leq(n, SCAN_MAX_FINDINGS);
    return n;
}

static void expect(size_t i, const char *code, enum scan_severity sev)
{
    cr_assert_str_eq(found[i].code, code, "finding %zu: %s, %s", i, found[i].code,
                     found[i].message);
    cr_assert_eq(found[i].severity, sev, "finding %zu (%s): %s", i, code,
                 scan_severity_name(found[i].severity));
}

static void all_probes(void)
{
    opts.probe_versions = opts.probe_no_client_cert = opts.probe_plaintext = true;
    opts.client_key = client.key;
    opts.client_chain = client_chain;
    opts.bundle_roots = bundle;
}

/* --- the cases ----------------------------------------------------------------------------- */

Test(scan_probe, a_healthy_mtls_endpoint_reports_its_chain_and_has_no_findings)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    all_probes();
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_str_eq(res.endpoint, ep);
    cr_assert_str_eq(res.version, "TLSv1.3");
    cr_assert_neq(res.cipher[0], '\0');
    cr_assert_eq(res.chain_len, 2);
    cr_assert_not(res.chain_truncated);
    /* the leaf, as minted */
    cr_assert_str_eq(res.chain[0].spiffe_id, LEAF_ID);
    cr_assert_str_eq(res.chain[0].subject, "");
    cr_assert_eq(res.chain[0].not_before, now - 10 * MIN_S);
    cr_assert_eq(res.chain[0].not_after, now - 10 * MIN_S + HOUR_S);
    cr_assert_not(res.chain[0].is_ca);
    cr_assert_not(res.chain[0].self_signed);
    cr_assert_str_eq(res.chain[0].key_type, "EC");
    cr_assert_eq(res.chain[0].key_bits, 256);
    char serial[SPIFFE_SERIAL_HEX_LEN];
    spiffe_serial_hex(serial, leaf.cert);
    cr_assert_str_eq(res.chain[0].serial_hex, serial);
    /* the intermediate, and the root named from the bundle */
    cr_assert(res.chain[1].is_ca);
    cr_assert_not(res.chain[1].self_signed);
    cr_assert_eq(res.chain[1].not_after, now - HOUR_S + 30 * DAY_S);
    cr_assert(res.root_found);
    cr_assert(res.root.is_ca);
    cr_assert(res.root.self_signed);
    cr_assert_eq(res.root.not_after, now - 30 * DAY_S + 365 * DAY_S);
    cr_assert_str_eq(res.root.spiffe_id, TESTLIB_TD_ID);
    /* the extra probes: all refused */
    cr_assert_eq(res.accepts_tls10, 0);
    cr_assert_eq(res.accepts_tls11, 0);
    cr_assert_eq(res.accepts_tls12, 0);
    cr_assert_eq(res.accepts_no_client_cert, 0);
    cr_assert_eq(res.accepts_plaintext, 0);
    cr_assert_eq(res.hsts_present, -1);
    cr_assert_eq(n, 0, "first finding: %s", found[0].message);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_OK);
}

Test(scan_probe, a_leaf_near_expiry_pages_and_says_renewal_is_stuck)
{
    mint(-HOUR_S, 30 * DAY_S, -55 * MIN_S, HOUR_S); /* 5 minutes of 60 left: 8 % */
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE);
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(n, 2);
    expect(0, "leaf-expiring", SCAN_SEV_PAGE);
    cr_assert_str_eq(found[0].subject, LEAF_ID);
    expect(1, "leaf-renewal-overdue", SCAN_SEV_WARN);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_PAGE);
}

Test(scan_probe, an_intermediate_near_expiry_under_a_fresh_leaf_is_critical)
{
    /* AddTrust-style: the intermediate has 1 day (and 1 h) of its 30 left, the leaf is fresh */
    mint(-29 * DAY_S, 30 * DAY_S + HOUR_S, -MIN_S, HOUR_S); /* "1d" for the next 59 minutes */
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE);
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(n, 1, "%zu findings, first %s", n, found[0].message);
    expect(0, "intermediate-expiring", SCAN_SEV_CRITICAL);
    cr_assert_not_null(strstr(found[0].message, "expires in 1d"), "%s", found[0].message);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_PAGE);
}

Test(scan_probe, an_expired_root_in_the_presented_chain_is_critical)
{
    /* built field by field: weft's minting never lets a child outlive its issuer */
    EVP_PKEY *rk = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    EVP_PKEY *ik = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    EVP_PKEY *lk = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    cr_assert(rk != NULL && ik != NULL && lk != NULL);
    struct testlib_cert_spec spec;
    X509 *rc = NULL, *ic = NULL, *lc = NULL;
    testlib_spec_signing_ca(&spec, TESTLIB_TD_ID);
    spec.subject_cn = "scan test root";
    spec.not_before = now - 400 * DAY_S;
    spec.not_after = now - 2 * DAY_S;
    cr_assert_eq(testlib_cert_build(&rc, &spec, rk, NULL, NULL), WEFT_OK);
    testlib_spec_signing_ca(&spec, TESTLIB_TD_ID);
    spec.subject_cn = "scan test intermediate";
    spec.not_before = now - DAY_S;
    spec.not_after = now + 60 * DAY_S;
    cr_assert_eq(testlib_cert_build(&ic, &spec, ik, rc, rk), WEFT_OK);
    testlib_spec_leaf(&spec, LEAF_ID);
    spec.not_before = now - 10 * MIN_S;
    spec.not_after = now + 50 * MIN_S;
    cr_assert_eq(testlib_cert_build(&lc, &spec, lk, ic, ik), WEFT_OK);
    X509 *chain[] = {lc, ic, rc};
    start(&srv, tls_ctx(chain, 3, lk, TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE));
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(res.chain_len, 3);
    cr_assert(res.chain[2].self_signed);
    cr_assert_str_eq(res.chain[2].subject, "CN=scan test root");
    cr_assert_eq(n, 1, "%zu findings, first %s", n, found[0].message);
    expect(0, "expired", SCAN_SEV_CRITICAL);
    cr_assert_str_eq(found[0].subject, "CN=scan test root");
    cr_assert_str_eq(found[0].message, "root CN=scan test root expired 2d ago.");
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_PAGE);
    X509_free(rc);
    X509_free(ic);
    X509_free(lc);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(lk);
}

Test(scan_probe, tls_1_0_to_1_2_still_enabled_against_a_1_3_only_policy)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    all_probes();
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_str_eq(res.version, "TLSv1.3");
    cr_assert_eq(res.accepts_tls10, 1);
    cr_assert_eq(res.accepts_tls11, 1);
    cr_assert_eq(res.accepts_tls12, 1);
    cr_assert_eq(n, 3, "%zu findings, first %s", n, found[0].message);
    expect(0, "tls10-accepted", SCAN_SEV_PAGE);
    expect(1, "tls11-accepted", SCAN_SEV_PAGE);
    expect(2, "tls12-accepted", SCAN_SEV_PAGE);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_PAGE);
}

Test(scan_probe, tls_1_2_alone_still_enabled)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_2_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE);
    opts.probe_versions = true;
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert_eq(res.accepts_tls10, 0);
    cr_assert_eq(res.accepts_tls11, 0);
    cr_assert_eq(res.accepts_tls12, 1);
    cr_assert_eq(n, 1);
    expect(0, "tls12-accepted", SCAN_SEV_PAGE);
}

/* Without a client certificate, a TLS 1.2 mTLS port refuses inside the handshake: the version
 * was accepted all the same (a review finding: this read as refused). */
Test(scan_probe, tls_1_2_on_an_mtls_port_scanned_without_a_client_certificate)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_2_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    opts.probe_versions = true;
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    scan(ep);
    cr_assert_eq(res.accepts_tls10, 0);
    cr_assert_eq(res.accepts_tls12, 1);
}

Test(scan_probe, a_1_2_only_server_negotiates_1_2)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_2_VERSION, TLS1_2_VERSION, TESTLIB_CLIENT_CERT_NONE);
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_str_eq(res.version, "TLSv1.2");
    cr_assert_eq(n, 1);
    expect(0, "old-tls-version", SCAN_SEV_PAGE);
}

Test(scan_probe, an_mtls_endpoint_that_takes_a_client_without_a_certificate)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_OPTIONAL);
    all_probes();
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(res.accepts_no_client_cert, 1);
    cr_assert_eq(n, 1, "%zu findings, first %s", n, found[0].message);
    expect(0, "no-client-cert-accepted", SCAN_SEV_CRITICAL);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_PAGE);
}

Test(scan_probe, a_tls_1_2_mtls_endpoint_refuses_inside_the_handshake)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_2_VERSION, TLS1_2_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    opts.probe_no_client_cert = true;
    opts.client_key = client.key;
    opts.client_chain = client_chain;
    pol.tls13_only = false;
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(res.accepts_no_client_cert, 0);
    cr_assert_eq(n, 0);
}

Test(scan_probe, a_strict_port_that_answers_plaintext)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    srv.sniff_plaintext = true;
    srv.response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    all_probes();
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert_eq(res.accepts_plaintext, 1);
    cr_assert_eq(n, 1, "%zu findings, first %s", n, found[0].message);
    expect(0, "plaintext-accepted", SCAN_SEV_CRITICAL);
}

/* A TLS port that answers plain HTTP with 400, as Go's and nginx's do, refuses it. */
Test(scan_probe, a_tls_port_that_answers_plain_http_with_400_refuses_it)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    srv.sniff_plaintext = true;
    srv.response = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS "
                   "server.\n";
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    all_probes();
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert_eq(res.accepts_plaintext, 0);
    cr_assert_eq(n, 0, "%zu findings, first %s", n, found[0].message);
}

/* https_case runs an HTTPS server answering |response| and a plain HTTP one answering
 * |plain_response| on another port, and probes https://127.0.0.1:PORT/. */
static size_t https_case(const char *response, const char *plain_response)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    srv.response = response;
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE);
    plain.response = plain_response;
    start(&plain, NULL);
    opts.probe_https = true;
    opts.http_port = plain.port;
    pol.require_hsts = true;
    char ep[64];
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d/", srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert(res.http_probed);
    return n;
}

Test(scan_probe, https_without_hsts_and_without_a_redirect)
{
    size_t n = https_case("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    cr_assert_eq(res.hsts_present, 0);
    cr_assert_eq(res.http_redirects_to_https, 0);
    cr_assert_eq(n, 2, "%zu findings, first %s", n, found[0].message);
    expect(0, "hsts-missing", SCAN_SEV_WARN);
    expect(1, "http-not-redirected", SCAN_SEV_WARN);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_WARN);
}

Test(scan_probe, https_with_hsts_and_a_redirect)
{
    size_t n = https_case("HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=31536000; "
                          "includeSubDomains; preload\r\nContent-Length: 2\r\n\r\nok",
                          "HTTP/1.1 301 Moved Permanently\r\nLocation: https://127.0.0.1/\r\n"
                          "Content-Length: 0\r\n\r\n");
    cr_assert_eq(res.hsts_present, 1);
    cr_assert_eq(res.hsts_max_age, 31536000);
    cr_assert(res.hsts_include_subdomains);
    cr_assert(res.hsts_preload);
    cr_assert_eq(res.http_redirects_to_https, 1);
    cr_assert_eq(n, 0, "%zu findings, first %s", n, found[0].message);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_OK);
}

Test(scan_probe, an_endpoint_that_is_down)
{
    int port;
    int fd = testlib_listen_loopback(&port);
    cr_assert_geq(fd, 0);
    close(fd); /* nothing listens there now */
    char ep[64];
    endpoint(ep, sizeof(ep), port);
    size_t n = scan(ep);
    cr_assert_not(res.reached);
    cr_assert_not_null(strstr(res.error, "Connection refused"), "%s", res.error);
    cr_assert_eq(res.chain_len, 0);
    cr_assert_eq(n, 1);
    expect(0, "unreachable", SCAN_SEV_PAGE);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_UNREACHABLE);
}

Test(scan_probe, a_port_that_does_not_speak_tls)
{
    srv.response = "HTTP/1.1 400 Bad Request\r\n\r\n";
    start(&srv, NULL); /* plaintext only */
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    opts.timeout_ms = 500;
    size_t n = scan(ep);
    cr_assert_not(res.reached);
    cr_assert_not_null(strstr(res.error, "TLS handshake with 127.0.0.1:"), "%s", res.error);
    cr_assert_eq(n, 1);
    expect(0, "unreachable", SCAN_SEV_PAGE);
}

Test(scan_probe, bad_endpoints_and_options_are_errors)
{
    cr_assert_eq(scan_probe("127.0.0.1", &opts, &res, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "no port"), "%s", err);
    cr_assert_eq(scan_probe("http://x:80", &opts, &res, err, sizeof(err)), WEFT_EINVAL);
    opts.timeout_ms = -1;
    cr_assert_eq(scan_probe("127.0.0.1:1", &opts, &res, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "timeout"), "%s", err);
    opts.timeout_ms = 0;
    const char *alpn[] = {""};
    opts.alpn = alpn;
    opts.num_alpn = 1;
    cr_assert_eq(scan_probe("127.0.0.1:1", &opts, &res, err, sizeof(err)), WEFT_EINVAL);
    opts.num_alpn = 0;
    opts.client_key = (EVP_PKEY *)1; /* never dereferenced: refused for the missing chain */
    cr_assert_eq(scan_probe("127.0.0.1:1", &opts, &res, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "key and a chain"), "%s", err);
}

Test(scan_probe, a_chain_longer_than_the_limit_is_cut_and_said)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    X509 *chain[SCAN_MAX_CHAIN + 1];
    chain[0] = leaf.cert;
    for (size_t i = 1; i < SCAN_MAX_CHAIN + 1; i++) {
        chain[i] = inter.cert; /* the same intermediate, again and again */
    }
    start(&srv, tls_ctx(chain, SCAN_MAX_CHAIN + 1, leaf.key, TLS1_3_VERSION, TLS1_3_VERSION,
                        TESTLIB_CLIENT_CERT_NONE));
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(res.chain_len, SCAN_MAX_CHAIN);
    cr_assert(res.chain_truncated);
    cr_assert_eq(n, 1, "%zu findings, first %s", n, found[0].message);
    expect(0, "chain-too-long", SCAN_SEV_WARN);
}

Test(scan_probe, key_types_and_a_weak_rsa_key)
{
    /* an RSA-1024 leaf under a minted intermediate */
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    RSA *rsa = RSA_new();
    BIGNUM *e = BN_new();
    cr_assert(rsa != NULL && e != NULL && BN_set_word(e, RSA_F4) &&
              RSA_generate_key_ex(rsa, 1024, e, NULL));
    EVP_PKEY *weak = EVP_PKEY_new();
    cr_assert(EVP_PKEY_assign_RSA(weak, rsa));
    BN_free(e);
    struct testlib_cert_spec spec;
    testlib_spec_leaf(&spec, LEAF_ID);
    spec.not_before = now - 10 * MIN_S;
    spec.not_after = now + 50 * MIN_S;
    X509 *lc = NULL;
    cr_assert_eq(testlib_cert_build(&lc, &spec, weak, inter.cert, inter.key), WEFT_OK);
    X509 *chain[] = {lc, inter.cert};
    start(&srv, tls_ctx(chain, 2, weak, TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE));
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_str_eq(res.chain[0].key_type, "RSA");
    cr_assert_eq(res.chain[0].key_bits, 1024);
    cr_assert_eq(n, 1, "%zu findings, first %s", n, found[0].message);
    expect(0, "weak-key", SCAN_SEV_WARN);
    cr_assert_str_eq(found[0].subject, LEAF_ID);
    X509_free(lc);
    EVP_PKEY_free(weak);
}

Test(scan_probe, an_ed25519_chain)
{
    cr_assert_eq(testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_ED25519, now - DAY_S, 365 * DAY_S),
                 WEFT_OK);
    cr_assert_eq(testlib_mint_leaf(&leaf, &root, LEAF_ID, SPIFFE_KEY_ED25519, now - MIN_S, HOUR_S),
                 WEFT_OK);
    X509 *chain[] = {leaf.cert};
    start(&srv,
          tls_ctx(chain, 1, leaf.key, TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE));
    bundle = testlib_chain(&root.cert, 1);
    opts.bundle_roots = bundle;
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(res.chain_len, 1);
    cr_assert_str_eq(res.chain[0].key_type, "Ed25519");
    cr_assert(res.root_found);
    cr_assert_str_eq(res.root.key_type, "Ed25519");
    cr_assert_eq(n, 0, "%zu findings, first %s", n, found[0].message);
}

Test(scan_probe, a_tls_1_2_mtls_endpoint_without_a_client_certificate_says_why)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_2_VERSION, TLS1_2_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert_not(res.reached);
    cr_assert_not_null(strstr(res.error, "asked for a client certificate"), "%s", res.error);
    cr_assert_eq(n, 1);
    expect(0, "unreachable", SCAN_SEV_PAGE);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_UNREACHABLE);
}

Test(scan_probe, a_tls_1_3_mtls_endpoint_shows_its_chain_to_a_client_without_a_certificate)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_REQUIRED);
    opts.probe_no_client_cert = true;
    char ep[64];
    endpoint(ep, sizeof(ep), srv.port);
    size_t n = scan(ep);
    cr_assert(res.reached, "%s", res.error);
    cr_assert_eq(res.chain_len, 2);
    cr_assert_str_eq(res.chain[0].spiffe_id, LEAF_ID);
    cr_assert_eq(res.accepts_no_client_cert, 0);
    cr_assert_eq(n, 0, "%zu findings, first %s", n, found[0].message);
}

/* --- names --------------------------------------------------------------------------------- */

/* getaddrinfo, interposed for this binary: a name ending in ".hang.test" (RFC 6761 §6.2: .test
 * is for tests) gets no answer until hang_release(), like a resolver that never answers;
 * every other name goes to the C library's own. */
static pthread_mutex_t hang_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cv = PTHREAD_COND_INITIALIZER;
static bool hang_released;

static void hang_release(void)
{
    pthread_mutex_lock(&hang_mu);
    hang_released = true;
    pthread_cond_broadcast(&hang_cv);
    pthread_mutex_unlock(&hang_mu);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **out)
{
    size_t n = node != NULL ? strlen(node) : 0;
    if (n > 10 && strcmp(node + n - 10, ".hang.test") == 0) {
        pthread_mutex_lock(&hang_mu);
        while (!hang_released) {
            pthread_cond_wait(&hang_cv, &hang_mu);
        }
        pthread_mutex_unlock(&hang_mu);
        return EAI_AGAIN;
    }
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(
            RTLD_NEXT, "getaddrinfo");
    /* no cr_assert here: scan/probe's helper thread calls this */
    return real != NULL ? real(node, service, hints, out) : EAI_SYSTEM;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(scan_probe, a_host_name_is_resolved)
{
    mint(-HOUR_S, 30 * DAY_S, -10 * MIN_S, HOUR_S);
    serve(TLS1_3_VERSION, TLS1_3_VERSION, TESTLIB_CLIENT_CERT_NONE);
    char ep[64];
    snprintf(ep, sizeof(ep), "localhost:%d", srv.port);
    size_t n = scan(ep);
    /* localhost may also be ::1 first, where nothing listens: the next address is tried */
    cr_assert(res.reached, "%s", res.error);
    cr_assert_str_eq(res.endpoint, ep);
    cr_assert_eq(res.chain_len, 2);
    cr_assert_eq(n, 0, "%zu findings, first %s", n, found[0].message);
}

Test(scan_probe, a_name_that_does_not_resolve_is_unreached_within_the_timeout)
{
    /* RFC 6761 §6.4: .invalid never resolves. Offline, the lookup fails at once or waits for a
     * resolver that never answers; either way the probe ends within its timeout. */
    opts.timeout_ms = 1500;
    int64_t t0 = mono_ms();
    size_t n = scan("no-such-host.invalid:443");
    int64_t took = mono_ms() - t0;
    cr_assert_lt(took, 1500 + 500, "took %lld ms", (long long)took);
    cr_assert_not(res.reached);
    cr_assert_not_null(strstr(res.error, "cannot resolve no-such-host.invalid: "), "%s", res.error);
    cr_assert_eq(n, 1);
    expect(0, "unreachable", SCAN_SEV_PAGE);
    cr_assert_not_null(strstr(found[0].message, "no-such-host.invalid"), "%s", found[0].message);
    cr_assert_eq(scan_exit_code(&res, 1, found, n), SCAN_EXIT_UNREACHABLE);
}

Test(scan_probe, a_name_dns_does_not_answer_for_is_unreached_within_the_timeout)
{
    opts.timeout_ms = 700;
    int64_t t0 = mono_ms();
    size_t n = scan("api.hang.test:443");
    int64_t took = mono_ms() - t0;
    cr_assert_geq(took, 650, "took %lld ms", (long long)took);
    cr_assert_lt(took, 700 + 500, "took %lld ms", (long long)took);
    cr_assert_not(res.reached);
    cr_assert_str_eq(res.error, "cannot resolve api.hang.test: no answer from DNS within 700 ms");
    cr_assert_eq(n, 1);
    expect(0, "unreachable", SCAN_SEV_PAGE);
    hang_release();
}

Test(scan_probe, lookups_still_waiting_for_dns_are_bounded)
{
    /* SCAN_MAX_PENDING_LOOKUPS lookups left hanging; the next one is not started */
    opts.timeout_ms = 10;
    for (int i = 0; i < SCAN_MAX_PENDING_LOOKUPS; i++) {
        scan("api.hang.test:443");
        cr_assert_str_eq(res.error,
                         "cannot resolve api.hang.test: no answer from DNS within 10 ms");
    }
    int64_t t0 = mono_ms();
    scan("localhost:1");
    cr_assert_lt(mono_ms() - t0, 10 + 500);
    cr_assert_not(res.reached);
    cr_assert_str_eq(res.error, "cannot resolve localhost: 64 earlier name lookups are still "
                                "waiting for DNS");
    /* once DNS answers them, names are looked up again */
    hang_release();
    opts.timeout_ms = 2000;
    for (int i = 0; i < 100; i++) {
        scan("localhost:1");
        if (strstr(res.error, "earlier name lookups") == NULL) {
            break;
        }
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    cr_assert_null(strstr(res.error, "cannot resolve"), "%s", res.error);
}
