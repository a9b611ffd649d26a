/* lib/transport/tls_relay_test.c: the contract of tls_relay, without gRPC: who gets through,
 * who is refused and why, what each limit does one past it, and that bytes arrive intact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "lib/transport/fixtures.h"
#include "lib/transport/tls_relay.h"

#define MAX_PEERS 8
#define GREETING '!'

/* struct server_side records what the listening relay reported. Its on_peer speaks first, as
 * gRPC's SETTINGS frame would, so that a dial completes. */
struct server_side {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fds[MAX_PEERS];
    struct weft_peer peers[MAX_PEERS];
    int num_peers;
    char refused[MAX_PEERS][TLS_RELAY_ERR_LEN];
    int num_refused;
    const char *deny_id;     /* authorize refuses this ID */
    bool deny_anonymous;     /* authorize refuses a peer with no ID */
    int num_asked;           /* authorize calls */
    int num_asked_anonymous; /* ... of which for a peer with no ID */
};

static struct fixture_pki pki;
static struct server_side side;
static struct tls_relay *server, *client;
static int port = -1;

static void on_peer(void *arg, int fd, const struct weft_peer *peer)
{
    struct server_side *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->num_peers == MAX_PEERS) {
        pthread_mutex_unlock(&s->mu);
        close(fd);
        return;
    }
    s->fds[s->num_peers] = fd;
    s->peers[s->num_peers++] = *peer;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* Recorded first: a dialer holding the greeting can count on the record. A fresh
     * socketpair has room for one byte. */
    char greeting = GREETING;
    (void)send(fd, &greeting, 1, MSG_NOSIGNAL);
}

static bool authorize(void *arg, const struct weft_peer *peer)
{
    struct server_side *s = arg;
    pthread_mutex_lock(&s->mu);
    s->num_asked++;
    s->num_asked_anonymous += peer->id.len == 0;
    pthread_mutex_unlock(&s->mu);
    if (peer->id.len == 0) {
        return !s->deny_anonymous;
    }
    return s->deny_id == NULL || strcmp(peer->id.str, s->deny_id) != 0;
}

static void on_refused(void *arg, const char *reason)
{
    struct server_side *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->num_refused < MAX_PEERS) {
        snprintf(s->refused[s->num_refused], sizeof(s->refused[0]), "%s", reason);
    }
    s->num_refused++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static const struct tls_relay_server_ops ops = {
    .on_peer = on_peer, .authorize = authorize, .on_refused = on_refused, .arg = &side};
static const struct tls_relay_server_ops optional_ops = {.on_peer = on_peer,
                                                         .authorize = authorize,
                                                         .on_refused = on_refused,
                                                         .arg = &side,
                                                         .client_cert_optional = true};

/* wait_refused waits until the server has refused |n| connections; returns whether it did. */
static bool wait_refused(int n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += FIXTURE_TIMEOUT_S;
    pthread_mutex_lock(&side.mu);
    int rc = 0;
    while (side.num_refused < n && rc == 0) {
        rc = pthread_cond_timedwait(&side.cv, &side.mu, &deadline);
    }
    bool ok = side.num_refused >= n;
    pthread_mutex_unlock(&side.mu);
    return ok;
}

static void start_server_with(const struct tls_relay_config *cfg,
                              const struct tls_relay_server_ops *server_ops)
{
    int listen_fd = fixture_listen(&port);
    cr_assert_geq(listen_fd, 0);
    cr_assert_eq(tls_relay_new(&server, cfg), WEFT_OK);
    cr_assert_eq(tls_relay_listen(server, listen_fd, &pki.server.creds, server_ops), WEFT_OK);
}

static void start_server(const struct tls_relay_config *cfg) { start_server_with(cfg, &ops); }

static void setup(void)
{
    cr_assert_eq(fixture_pki_mint(&pki), WEFT_OK);
    pthread_mutex_init(&side.mu, NULL);
    pthread_cond_init(&side.cv, NULL);
}

static void teardown(void)
{
    tls_relay_free(client);
    tls_relay_free(server);
    for (int i = 0; i < side.num_peers; i++) {
        close(side.fds[i]);
    }
    fixture_pki_cleanup(&pki);
}

TestSuite(tls_relay, .init = setup, .fini = teardown, .timeout = 30);

static const struct tls_relay_config test_clock = {.now = fixture_now};

/* dial_creds connects to the server and runs tls_relay_dial on |client|; dial does so as |svid|. */
static int dial_creds(int *out_fd, struct weft_peer *out_peer, const struct tls_relay_creds *creds,
                      const char *expect, char *err)
{
    int fd = fixture_connect(port);
    cr_assert_geq(fd, 0);
    struct spiffe_id id = fixture_id(expect);
    return tls_relay_dial(client, out_fd, out_peer, fd, creds, &id, err, TLS_RELAY_ERR_LEN);
}

static int dial(int *out_fd, struct weft_peer *out_peer, const struct fixture_svid *svid,
                const char *expect, char *err)
{
    return dial_creds(out_fd, out_peer, &svid->creds, expect, err);
}

/* dial_ok dials as |svid| expecting the server, and checks the greeting arrives. */
static int dial_ok(const struct fixture_svid *svid)
{
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, svid, FIXTURE_SERVER_ID, err), WEFT_OK, "%s", err);
    char greeting = 0;
    cr_assert(fixture_read_exact(fd, &greeting, 1));
    cr_assert_eq(greeting, GREETING);
    return fd;
}

/* echo_through sends |len| bytes into |a| while echoing whatever |b| receives back into |b|,
 * and checks that |a| gets them all back, in order. Non-blocking both, one thread, bounded. */
static void echo_through(int a, int b, size_t len)
{
    uint8_t *out = malloc(len), *back = malloc(len), hop[8192];
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)(i * 7 + i / 251);
    }
    size_t sent = 0, got = 0, hop_len = 0, hop_off = 0;
    time_t deadline = time(NULL) + FIXTURE_TIMEOUT_S;
    while (got < len) {
        cr_assert_lt(time(NULL), deadline, "echo stalled at %zu of %zu bytes", got, len);
        struct pollfd p[2] = {{.fd = a, .events = POLLIN | (sent < len ? POLLOUT : 0)},
                              {.fd = b, .events = hop_len > 0 ? POLLOUT : POLLIN}};
        cr_assert_geq(poll(p, 2, 1000), 0);
        if (sent < len) {
            ssize_t n = send(a, out + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            sent += n > 0 ? (size_t)n : 0;
        }
        if (hop_len == 0) {
            ssize_t n = recv(b, hop, sizeof(hop), MSG_DONTWAIT);
            hop_len = n > 0 ? (size_t)n : 0;
            hop_off = 0;
        }
        if (hop_len > 0) {
            ssize_t n = send(b, hop + hop_off, hop_len, MSG_DONTWAIT | MSG_NOSIGNAL);
            hop_off += n > 0 ? (size_t)n : 0;
            hop_len -= n > 0 ? (size_t)n : 0;
        }
        ssize_t n = recv(a, back + got, len - got, MSG_DONTWAIT);
        got += n > 0 ? (size_t)n : 0;
    }
    cr_assert(memcmp(out, back, len) == 0, "the bytes came back changed");
    free(out);
    free(back);
}

Test(tls_relay, dial_verifies_both_sides_and_relays_bytes_intact)
{
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, FIXTURE_SERVER_ID, err), WEFT_OK, "%s", err);
    cr_assert_str_eq(peer.id.str, FIXTURE_SERVER_ID);
    cr_assert_eq(peer.not_after, TESTLIB_NOW - TESTLIB_HOUR + TESTLIB_DAY);
    cr_assert_eq(side.num_peers, 1, "on_peer ran before the server spoke");
    cr_assert_str_eq(side.peers[0].id.str, FIXTURE_NODE_A_ID);
    /* the leaf's serial, for deny-list checks: lowercase hex of the certificate's own */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(pki.node_a.cred.cert);
    char want[41] = "";
    for (int i = 0; i < ASN1_STRING_length(serial) && i < 20; i++) {
        snprintf(want + 2 * i, 3, "%02x", ASN1_STRING_get0_data(serial)[i]);
    }
    cr_assert_gt(strlen(want), 0);
    cr_assert_str_eq(side.peers[0].serial_hex, want);
    char greeting = 0;
    cr_assert(fixture_read_exact(fd, &greeting, 1));
    cr_assert_eq(greeting, GREETING);
    /* Many times the relay's buffers, both ways at once: the pump's stalls and resumes. */
    echo_through(fd, side.fds[0], 4 * 1024 * 1024);
    cr_assert_eq(tls_relay_num_conns(client), 1);
    close(fd);
}

Test(tls_relay, refuses_client_whose_root_is_not_in_the_bundle)
{
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.rogue_a, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    cr_assert_eq(fd, -1);
    cr_assert(strstr(err, "verification") != NULL && strstr(err, "unknown CA") != NULL, "%s", err);
    cr_assert(wait_refused(1));
    cr_assert(strstr(side.refused[0], "client's SVID failed verification (B9)") != NULL, "%s",
              side.refused[0]);
    cr_assert_eq(side.num_peers, 0);
}

Test(tls_relay, refuses_server_presenting_another_id)
{
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, "spiffe://example.org/weft/other", err),
                 WEFT_EPOLICY);
    cr_assert_str_eq(err, "the server presented " FIXTURE_SERVER_ID
                          ", expected spiffe://example.org/weft/other");
    cr_assert(wait_refused(1));
    cr_assert(strstr(side.refused[0], "bad certificate") != NULL, "%s", side.refused[0]);
    cr_assert_eq(side.num_peers, 0);
}

Test(tls_relay, authorize_refuses_a_verified_client)
{
    side.deny_id = FIXTURE_NODE_B_ID;
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_b, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    cr_assert(strstr(err, "access denied") != NULL, "%s", err);
    cr_assert(wait_refused(1));
    cr_assert_str_eq(side.refused[0], "the client " FIXTURE_NODE_B_ID " is not authorized");
    close(dial_ok(&pki.node_a)); /* and the others still get in */
}

Test(tls_relay, refuses_expired_server_svid)
{
    start_server(&test_clock);
    int64_t two_days_later = 2 * TESTLIB_DAY;
    struct tls_relay_config later = {.now = fixture_now, .now_arg = &two_days_later};
    cr_assert_eq(tls_relay_new(&client, &later), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    cr_assert(strstr(err, "the server's SVID failed verification (B9)") != NULL, "%s", err);
}

Test(tls_relay, rotated_server_creds_apply_to_new_handshakes)
{
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int before = dial_ok(&pki.node_a);

    struct fixture_svid next;
    cr_assert_eq(
        fixture_svid_mint(&next, &pki.root, "spiffe://example.org/weft/server2", &pki.bundles),
        WEFT_OK);
    cr_assert_eq(tls_relay_set_server_creds(server, &next.creds), WEFT_OK);
    fixture_svid_cleanup(&next); /* the relay keeps its own references */

    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, "spiffe://example.org/weft/server2", err), WEFT_OK,
                 "%s", err);
    close(fd);
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    /* The connection made before the rotation still carries bytes. */
    echo_through(before, side.fds[0], 64 * 1024);
    close(before);
}

Test(tls_relay, server_times_out_a_silent_client)
{
    struct tls_relay_config cfg = {.now = fixture_now, .handshake_timeout_ms = 200};
    start_server(&cfg);
    int fd = fixture_connect(port);
    cr_assert_geq(fd, 0);
    cr_assert(fixture_wait_eof(fd), "the relay never closed the silent connection");
    cr_assert(wait_refused(1));
    cr_assert_str_eq(side.refused[0], "the TLS handshake timed out after 200 ms");
    close(fd);
}

Test(tls_relay, dial_times_out_on_a_silent_server)
{
    int silent = fixture_listen(&port); /* the kernel accepts; nobody ever speaks */
    cr_assert_geq(silent, 0);
    struct tls_relay_config cfg = {.now = fixture_now, .handshake_timeout_ms = 200};
    cr_assert_eq(tls_relay_new(&client, &cfg), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    time_t start = time(NULL);
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, FIXTURE_SERVER_ID, err), WEFT_EIO);
    cr_assert_leq(time(NULL) - start, 2);
    cr_assert_str_eq(err, "the TLS handshake timed out after 200 ms");
    close(silent);
}

Test(tls_relay, server_refuses_connection_past_its_limit)
{
    struct tls_relay_config cfg = {.now = fixture_now, .max_conns = 1};
    start_server(&cfg);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int first = dial_ok(&pki.node_a);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_b, FIXTURE_SERVER_ID, err), WEFT_EIO);
    cr_assert(wait_refused(1));
    cr_assert_str_eq(side.refused[0], "connection limit reached");
    cr_assert_eq(side.num_peers, 1);
    close(first);
}

Test(tls_relay, dial_refuses_connection_past_the_client_limit)
{
    start_server(&test_clock);
    struct tls_relay_config cfg = {.now = fixture_now, .max_conns = 1};
    cr_assert_eq(tls_relay_new(&client, &cfg), WEFT_OK);
    int first = dial_ok(&pki.node_a);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, FIXTURE_SERVER_ID, err), WEFT_ELIMIT);
    cr_assert_str_eq(err, "the relay already holds its maximum of 1 connections");
    close(first);
}

Test(tls_relay, dial_refuses_a_key_that_is_not_the_leafs)
{
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct tls_relay_creds mixed = pki.node_a.creds;
    mixed.key = pki.node_b.cred.key;
    struct spiffe_id expect = fixture_id(FIXTURE_SERVER_ID);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(tls_relay_dial(client, &fd, &peer, sv[0], &mixed, &expect, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_str_eq(err, "unusable client credentials: invalid input");
    cr_assert(fixture_wait_eof(sv[1]), "the relay kept the socket it was given");
    close(sv[1]);
}

Test(tls_relay, speaks_tls_1_3_only)
{
    start_server(&test_clock);
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    cr_assert(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION));
    SSL *ssl = SSL_new(ctx);
    int fd = fixture_connect(port);
    cr_assert(SSL_set_fd(ssl, fd));
    cr_assert_neq(SSL_connect(ssl), 1, "a TLS 1.2 handshake succeeded");
    cr_assert(wait_refused(1));
    cr_assert(strstr(side.refused[0], "UNSUPPORTED_PROTOCOL") != NULL, "%s", side.refused[0]);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

Test(tls_relay, free_closes_every_connection)
{
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd = dial_ok(&pki.node_a);
    tls_relay_free(client);
    client = NULL;
    cr_assert(fixture_wait_eof(fd), "the dialer's end stayed open");
    cr_assert(fixture_wait_eof(side.fds[0]), "the server's end stayed open");
    close(fd);
}

/* --- client_cert_optional ------------------------------------------------------------------ */

Test(tls_relay, optional_lets_an_anonymous_client_in_with_an_empty_id)
{
    start_server_with(&test_clock, &optional_ops);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial_creds(&fd, &peer, &pki.anonymous, FIXTURE_SERVER_ID, err), WEFT_OK, "%s",
                 err);
    cr_assert_str_eq(peer.id.str, FIXTURE_SERVER_ID); /* the server is verified all the same */
    char greeting = 0;
    cr_assert(fixture_read_exact(fd, &greeting, 1));
    cr_assert_eq(greeting, GREETING);
    cr_assert_eq(side.num_peers, 1);
    cr_assert_eq(side.peers[0].id.len, 0);
    cr_assert_str_eq(side.peers[0].id.str, "");
    cr_assert_eq(side.peers[0].not_after, 0);
    cr_assert_str_eq(side.peers[0].serial_hex, "");
    cr_assert_eq(side.num_asked, 1, "authorize was not asked about the anonymous client");
    cr_assert_eq(side.num_asked_anonymous, 1);
    echo_through(fd, side.fds[0], 64 * 1024);
    close(fd);
}

Test(tls_relay, refuses_an_anonymous_client_unless_optional)
{
    start_server(&test_clock);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial_creds(&fd, &peer, &pki.anonymous, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    cr_assert_eq(fd, -1);
    cr_assert_str_eq(err, "the server refused us with TLS alert \"certificate required\": we "
                          "presented no certificate");
    cr_assert(wait_refused(1));
    cr_assert(strstr(side.refused[0], "PEER_DID_NOT_RETURN_A_CERTIFICATE") != NULL, "%s",
              side.refused[0]);
    cr_assert_eq(side.num_peers, 0);
    cr_assert_eq(side.num_asked, 0);
}

Test(tls_relay, optional_still_refuses_a_client_whose_root_is_not_in_the_bundle)
{
    start_server_with(&test_clock, &optional_ops);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.rogue_a, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    cr_assert_eq(fd, -1);
    cr_assert(strstr(err, "verification") != NULL && strstr(err, "unknown CA") != NULL, "%s", err);
    cr_assert(wait_refused(1));
    cr_assert(strstr(side.refused[0], "client's SVID failed verification (B9)") != NULL, "%s",
              side.refused[0]);
    cr_assert_eq(side.num_peers, 0);
    cr_assert_eq(side.num_asked, 0);
}

Test(tls_relay, optional_gives_a_client_that_presents_an_svid_its_id)
{
    start_server_with(&test_clock, &optional_ops);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    close(dial_ok(&pki.node_a));
    cr_assert_eq(side.num_peers, 1);
    cr_assert_str_eq(side.peers[0].id.str, FIXTURE_NODE_A_ID);
    cr_assert_eq(side.peers[0].not_after, TESTLIB_NOW - TESTLIB_HOUR + TESTLIB_DAY);
    cr_assert_gt(strlen(side.peers[0].serial_hex), 0);
    cr_assert_eq(side.num_asked, 1);
    cr_assert_eq(side.num_asked_anonymous, 0);
}

Test(tls_relay, authorize_refuses_an_anonymous_client)
{
    side.deny_anonymous = true;
    start_server_with(&test_clock, &optional_ops);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial_creds(&fd, &peer, &pki.anonymous, FIXTURE_SERVER_ID, err), WEFT_EPOLICY);
    cr_assert_str_eq(
        err, "the server refused us with TLS alert \"access denied\": we presented no certificate");
    cr_assert(wait_refused(1));
    cr_assert_str_eq(side.refused[0], "the anonymous client is not authorized");
    cr_assert_eq(side.num_peers, 0);
    close(dial_ok(&pki.node_a)); /* and those with an SVID still get in */
}

Test(tls_relay, credentials_need_both_chain_and_key_or_neither)
{
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    struct spiffe_id expect = fixture_id(FIXTURE_SERVER_ID);
    struct tls_relay_creds chain_only = pki.node_a.creds, key_only = pki.node_a.creds;
    chain_only.key = NULL;
    key_only.chain = NULL;
    const struct tls_relay_creds *halves[] = {&chain_only, &key_only};
    for (size_t i = 0; i < 2; i++) {
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int fd;
        struct weft_peer peer;
        char err[TLS_RELAY_ERR_LEN];
        cr_assert_eq(
            tls_relay_dial(client, &fd, &peer, sv[0], halves[i], &expect, err, sizeof(err)),
            WEFT_EINVAL);
        cr_assert_str_eq(err, "unusable client credentials: invalid input");
        close(sv[1]);
    }
    /* A listener always presents an SVID, optional client certificates or not. */
    int listen_fd = fixture_listen(&port);
    cr_assert_geq(listen_fd, 0);
    cr_assert_eq(tls_relay_new(&server, &test_clock), WEFT_OK);
    cr_assert_eq(tls_relay_listen(server, listen_fd, &pki.anonymous, &optional_ops), WEFT_EINVAL);
}

/* --- connection rate and idle timeout -------------------------------------------------------- */

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(tls_relay, server_refuses_accepts_past_its_rate)
{
    struct tls_relay_config cfg = {.now = fixture_now, .max_accepts_per_s = 3};
    start_server(&cfg);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    double start = monotonic_s();
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = dial_ok(&pki.node_a);
    }
    int fd;
    struct weft_peer peer;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_eq(dial(&fd, &peer, &pki.node_a, FIXTURE_SERVER_ID, err), WEFT_EIO);
    cr_assert_lt(monotonic_s() - start, 1., "too slow to test a rate per second");
    cr_assert(wait_refused(1));
    cr_assert_str_eq(side.refused[0], "connection rate limit: 3 per second");
    cr_assert_eq(side.num_peers, 3);
    /* The window slides: a second after the first accept, there is room for one more. */
    double left = start + 1.05 - monotonic_s();
    if (left > 0) {
        usleep((useconds_t)(left * 1e6));
    }
    close(dial_ok(&pki.node_a));
    cr_assert_eq(side.num_refused, 1);
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
}

Test(tls_relay, new_refuses_unusable_limits)
{
    struct tls_relay_config cfg = {.max_accepts_per_s = TLS_RELAY_MAX_ACCEPTS_PER_S + 1};
    cr_assert_eq(tls_relay_new(&server, &cfg), WEFT_EINVAL);
    cr_assert_null(server);
    cfg = (struct tls_relay_config){.idle_timeout_ms = -1};
    cr_assert_eq(tls_relay_new(&server, &cfg), WEFT_EINVAL);
    cfg = (struct tls_relay_config){.max_accepts_per_s = TLS_RELAY_MAX_ACCEPTS_PER_S};
    cr_assert_eq(tls_relay_new(&server, &cfg), WEFT_OK);
}

Test(tls_relay, idle_timeout_closes_a_connection_only_once_no_byte_moves)
{
    struct tls_relay_config cfg = {.now = fixture_now, .idle_timeout_ms = 400};
    start_server(&cfg);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    int fd = dial_ok(&pki.node_a);
    /* A byte every 100 ms, for twice the idle timeout, keeps the connection up. */
    for (int i = 0; i < 8; i++) {
        usleep(100 * 1000);
        char b = (char)('a' + i), got = 0;
        cr_assert_eq(send(fd, &b, 1, MSG_NOSIGNAL), 1);
        cr_assert(fixture_read_exact(side.fds[0], &got, 1), "closed while bytes were moving");
        cr_assert_eq(got, b);
    }
    double quiet = monotonic_s();
    cr_assert(fixture_wait_eof(fd), "the idle connection stayed open");
    cr_assert_geq(monotonic_s() - quiet, 0.3, "closed before the idle timeout");
    cr_assert(fixture_wait_eof(side.fds[0]), "the server's end stayed open");
    cr_assert_eq(side.num_refused, 0); /* it was up: not a refusal */
    cr_assert_eq(tls_relay_num_conns(server), 0);
    close(fd);
}
