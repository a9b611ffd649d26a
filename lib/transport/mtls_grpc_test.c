/* lib/transport/mtls_grpc_test.c: gRPC core over tls_relay, end to end on loopback: each call's
 * handler learns the verified SPIFFE ID of the connection it came on, and a peer that fails
 * verification never reaches gRPC. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/transport/fixtures.h"
#include "lib/transport/grpcfd.h"
#include "lib/transport/tls_relay.h"

static struct fixture_pki pki;
static struct fixture_echo echo;
static struct tls_relay *server, *client;
static int port;

/* What the server relay refused, for the refusal tests. */
static pthread_mutex_t refused_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t refused_cv = PTHREAD_COND_INITIALIZER;
static int num_refused;
static char refused[TLS_RELAY_ERR_LEN];

static void on_refused(void *arg, const char *reason)
{
    (void)arg;
    pthread_mutex_lock(&refused_mu);
    snprintf(refused, sizeof(refused), "%s", reason);
    num_refused++;
    pthread_cond_broadcast(&refused_cv);
    pthread_mutex_unlock(&refused_mu);
}

static bool wait_refused(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += FIXTURE_TIMEOUT_S;
    pthread_mutex_lock(&refused_mu);
    int rc = 0;
    while (num_refused == 0 && rc == 0) {
        rc = pthread_cond_timedwait(&refused_cv, &refused_mu, &deadline);
    }
    bool ok = num_refused > 0;
    pthread_mutex_unlock(&refused_mu);
    return ok;
}

static const struct tls_relay_config test_clock = {.now = fixture_now};

static void setup(void)
{
    cr_assert_eq(fixture_pki_mint(&pki), WEFT_OK);
    fixture_echo_start(&echo);
    int listen_fd = fixture_listen(&port);
    cr_assert_geq(listen_fd, 0);
    cr_assert_eq(tls_relay_new(&server, &test_clock), WEFT_OK);
    struct tls_relay_server_ops ops = {
        .on_peer = grpcfd_on_peer, .on_refused = on_refused, .arg = echo.fds};
    cr_assert_eq(tls_relay_listen(server, listen_fd, &pki.server.creds, &ops), WEFT_OK);
    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
}

/* The order a daemon stops in: no more adoptions, gRPC drains while the relays still carry its
 * last bytes, then the relays, then the record. */
static void teardown(void)
{
    fixture_echo_stop(&echo);
    tls_relay_free(client);
    tls_relay_free(server);
    fixture_echo_free(&echo);
    fixture_pki_cleanup(&pki);
}

TestSuite(mtls_grpc, .init = setup, .fini = teardown, .timeout = 30);

/* dial connects as |svid|, expecting |expect|, and returns a channel, or NULL with |*out_rc| and
 * |err| set. It asserts nothing, so that threads may call it (Criterion asserts on the main
 * thread only). */
static grpc_channel *dial(const struct fixture_svid *svid, const char *expect, int *out_rc,
                          char *err)
{
    int net_fd = fixture_connect(port);
    if (net_fd < 0) {
        *out_rc = WEFT_EIO;
        snprintf(err, TLS_RELAY_ERR_LEN, "connect failed");
        return NULL;
    }
    struct spiffe_id id = fixture_id(expect);
    int fd;
    struct weft_peer peer;
    *out_rc = tls_relay_dial(client, &fd, &peer, net_fd, &svid->creds, &id, err, TLS_RELAY_ERR_LEN);
    if (*out_rc != WEFT_OK) {
        return NULL;
    }
    if (strcmp(peer.id.str, expect) != 0) { /* tls_relay_dial promised otherwise */
        *out_rc = WEFT_EINTERNAL;
        snprintf(err, TLS_RELAY_ERR_LEN, "dial returned peer %.200s", peer.id.str);
        close(fd);
        return NULL;
    }
    return grpcfd_channel_new(fd, FIXTURE_AUTHORITY);
}

struct caller {
    const struct fixture_svid *svid;
    pthread_barrier_t *barrier;
    int dial_rc;
    char err[TLS_RELAY_ERR_LEN];
    grpc_status_code status;
    char reply[256];
};

static void *call_as(void *arg)
{
    struct caller *c = arg;
    grpc_channel *ch = dial(c->svid, FIXTURE_SERVER_ID, &c->dial_rc, c->err);
    pthread_barrier_wait(c->barrier); /* both connections are up before either calls */
    if (ch != NULL) {
        c->status = fixture_unary(ch, c->reply, sizeof(c->reply));
    }
    pthread_barrier_wait(c->barrier); /* and stay up until both calls are answered */
    if (ch != NULL) {
        grpc_channel_destroy(ch);
    }
    return NULL;
}

Test(mtls_grpc, concurrent_clients_each_see_their_own_id)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    struct caller a = {.svid = &pki.node_a, .barrier = &barrier, .status = GRPC_STATUS_UNKNOWN};
    struct caller b = {.svid = &pki.node_b, .barrier = &barrier, .status = GRPC_STATUS_UNKNOWN};
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, call_as, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, call_as, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&barrier);

    cr_assert_eq(a.dial_rc, WEFT_OK, "%s", a.err);
    cr_assert_eq(b.dial_rc, WEFT_OK, "%s", b.err);
    cr_assert_eq(a.status, GRPC_STATUS_OK);
    cr_assert_eq(b.status, GRPC_STATUS_OK);
    cr_assert_str_eq(a.reply, FIXTURE_NODE_A_ID);
    cr_assert_str_eq(b.reply, FIXTURE_NODE_B_ID);
    cr_assert_eq(echo.num_calls, 2);
    cr_assert_str_neq(echo.peer_strs[0], echo.peer_strs[1], "two live connections, one fd");
    cr_assert_eq(strncmp(echo.peer_strs[0], "fd:", 3), 0, "%s", echo.peer_strs[0]);
}

Test(mtls_grpc, client_from_another_root_never_reaches_grpc)
{
    int rc;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_null(dial(&pki.rogue_a, FIXTURE_SERVER_ID, &rc, err));
    cr_assert_eq(rc, WEFT_EPOLICY);
    cr_assert(strstr(err, "the server refused our SVID") != NULL, "%s", err);
    cr_assert(strstr(err, "verification") != NULL, "%s", err);
    cr_assert(wait_refused());
    cr_assert(strstr(refused, "the client's SVID failed verification") != NULL, "%s", refused);
    cr_assert_eq(echo.num_calls, 0);
}

Test(mtls_grpc, client_refuses_a_server_with_another_id)
{
    int rc;
    char err[TLS_RELAY_ERR_LEN];
    cr_assert_null(dial(&pki.node_a, "spiffe://example.org/weft/not-the-server", &rc, err));
    cr_assert_eq(rc, WEFT_EPOLICY);
    cr_assert_str_eq(err, "the server presented " FIXTURE_SERVER_ID
                          ", expected spiffe://example.org/weft/not-the-server");
    cr_assert(wait_refused());
    cr_assert_eq(echo.num_calls, 0);
}

Test(mtls_grpc, dead_connection_fails_fast_and_a_new_dial_recovers)
{
    int rc;
    char err[TLS_RELAY_ERR_LEN];
    grpc_channel *ch = dial(&pki.node_a, FIXTURE_SERVER_ID, &rc, err);
    cr_assert_not_null(ch, "%s", err);
    char reply[256];
    cr_assert_eq(fixture_unary(ch, reply, sizeof(reply)), GRPC_STATUS_OK);

    /* The connection dies under the channel (here: the client's relay goes away). */
    tls_relay_free(client);
    client = NULL;
    cr_assert_eq(fixture_unary(ch, reply, sizeof(reply)), GRPC_STATUS_UNAVAILABLE);
    cr_assert_eq(fixture_unary(ch, reply, sizeof(reply)), GRPC_STATUS_UNAVAILABLE,
                 "an fd channel reconnected by itself");
    grpc_channel_destroy(ch);

    cr_assert_eq(tls_relay_new(&client, &test_clock), WEFT_OK);
    ch = dial(&pki.node_a, FIXTURE_SERVER_ID, &rc, err);
    cr_assert_not_null(ch, "%s", err);
    cr_assert_eq(fixture_unary(ch, reply, sizeof(reply)), GRPC_STATUS_OK);
    cr_assert_str_eq(reply, FIXTURE_NODE_A_ID);
    grpc_channel_destroy(ch);
}
