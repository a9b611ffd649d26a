/* lib/transport/fixtures.c: see fixtures.h. */
#include "lib/transport/fixtures.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

/* --- certificates ------------------------------------------------------------------------- */

int fixture_svid_mint(struct fixture_svid *out, const struct testlib_cred *issuer, const char *id,
                      const struct spiffe_bundle_set *bundles)
{
    memset(out, 0, sizeof(*out));
    TRY(testlib_mint_leaf(&out->cred, issuer, id, SPIFFE_KEY_EC_P256, TESTLIB_NOW - TESTLIB_HOUR,
                          TESTLIB_DAY));
    out->chain = testlib_chain(&out->cred.cert, 1);
    ENSURE(out->chain != NULL, WEFT_ECRYPTO);
    out->creds =
        (struct tls_relay_creds){.chain = out->chain, .key = out->cred.key, .bundles = bundles};
    return WEFT_OK;
}

void fixture_svid_cleanup(struct fixture_svid *s)
{
    sk_X509_pop_free(s->chain, X509_free);
    testlib_cred_cleanup(&s->cred);
    memset(s, 0, sizeof(*s));
}

int fixture_pki_mint(struct fixture_pki *pki)
{
    memset(pki, 0, sizeof(*pki));
    spiffe_bundle_set_init(&pki->bundles);
    TRY(testlib_mint_root(&pki->root, TESTLIB_TD, SPIFFE_KEY_EC_P256, TESTLIB_NOW - TESTLIB_HOUR,
                          TESTLIB_DAY));
    TRY(testlib_mint_root(&pki->rogue_root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                          TESTLIB_NOW - TESTLIB_HOUR, TESTLIB_DAY));
    TRY(testlib_bundle_set_add(&pki->bundles, TESTLIB_TD, pki->root.cert));
    TRY(fixture_svid_mint(&pki->server, &pki->root, FIXTURE_SERVER_ID, &pki->bundles));
    TRY(fixture_svid_mint(&pki->node_a, &pki->root, FIXTURE_NODE_A_ID, &pki->bundles));
    TRY(fixture_svid_mint(&pki->node_b, &pki->root, FIXTURE_NODE_B_ID, &pki->bundles));
    TRY(fixture_svid_mint(&pki->rogue_a, &pki->rogue_root, FIXTURE_NODE_A_ID, &pki->bundles));
    pki->anonymous = (struct tls_relay_creds){.bundles = &pki->bundles};
    return WEFT_OK;
}

void fixture_pki_cleanup(struct fixture_pki *pki)
{
    fixture_svid_cleanup(&pki->server);
    fixture_svid_cleanup(&pki->node_a);
    fixture_svid_cleanup(&pki->node_b);
    fixture_svid_cleanup(&pki->rogue_a);
    testlib_cred_cleanup(&pki->root);
    testlib_cred_cleanup(&pki->rogue_root);
    spiffe_bundle_set_cleanup(&pki->bundles);
}

int64_t fixture_now(void *arg) { return TESTLIB_NOW + (arg != NULL ? *(const int64_t *)arg : 0); }

struct spiffe_id fixture_id(const char *s)
{
    struct spiffe_id id;
    if (spiffe_id_parse(&id, s, strlen(s), NULL) != WEFT_OK) {
        abort();
    }
    return id;
}

/* --- sockets ------------------------------------------------------------------------------ */

int fixture_listen(int *out_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *out_port = ntohs(sa.sin_port);
    return fd;
}

int fixture_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Loopback with a listening socket: the kernel completes the TCP handshake at once. */
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_readable polls |fd| until readable or the deadline (monotonic ms). */
static bool wait_readable(int fd, int64_t deadline)
{
    int64_t left = deadline - monotonic_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return left > 0 && poll(&p, 1, (int)left) == 1;
}

bool fixture_read_exact(int fd, void *buf, size_t len)
{
    int64_t deadline = monotonic_ms() + FIXTURE_TIMEOUT_S * 1000;
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
                   !wait_readable(fd, deadline)) {
            return false;
        }
    }
    return true;
}

bool fixture_wait_eof(int fd)
{
    int64_t deadline = monotonic_ms() + FIXTURE_TIMEOUT_S * 1000;
    for (;;) {
        uint8_t sink[4096];
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            return true;
        }
        if (n < 0 && !wait_readable(fd, deadline)) {
            return false;
        }
    }
}

/* --- the gRPC echo server ----------------------------------------------------------------- */

static int shutdown_tag;

static gpr_timespec deadline_in(int seconds)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(seconds, GPR_TIMESPAN));
}

/* run_batch starts |ops| on |call| and waits for them on the pluck queue |cq|. A batch that does
 * not end in time is cancelled and waited for again, so that nothing refers to it after. */
static bool run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops,
                      size_t num_ops)
{
    static int tag;
    if (grpc_call_start_batch(call, ops, num_ops, &tag, NULL) != GRPC_CALL_OK) {
        return false;
    }
    grpc_event ev = grpc_completion_queue_pluck(cq, &tag, deadline_in(FIXTURE_TIMEOUT_S), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        grpc_call_cancel(call, NULL);
        ev = grpc_completion_queue_pluck(cq, &tag, deadline_in(FIXTURE_TIMEOUT_S), NULL);
        return false;
    }
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void cq_free(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
}

/* echo_record notes a call before it is answered, so that a client holding the answer can
 * count on the record. */
static void echo_record(struct fixture_echo *e, const char *peer_str, bool denied)
{
    pthread_mutex_lock(&e->mu);
    if (e->num_calls < FIXTURE_MAX_CALLS) {
        snprintf(e->peer_strs[e->num_calls], sizeof(e->peer_strs[0]), "%s", peer_str);
    }
    e->num_calls++;
    e->num_denied += denied;
    pthread_mutex_unlock(&e->mu);
}

/* echo_answer serves one call: the caller's ID back, or PERMISSION_DENIED. */
static void echo_answer(struct fixture_echo *e, grpc_call *call, grpc_completion_queue *cq)
{
    char *peer_str = grpc_call_get_peer(call);
    struct weft_peer peer;
    bool known = grpcfd_call_peer(call, &peer) == WEFT_OK;
    echo_record(e, peer_str, !known);

    grpc_byte_buffer *request = NULL;
    grpc_op first[] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA},
        {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &request},
    };
    bool ok = run_batch(call, cq, first, nitems(first));

    grpc_slice id = grpc_slice_from_copied_string(known ? peer.id.str : "");
    grpc_byte_buffer *reply = grpc_raw_byte_buffer_create(&id, 1);
    grpc_slice details = grpc_slice_from_static_string(known ? "" : "no verified peer");
    int cancelled = 0;
    grpc_op second[] = {
        {.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
         .data.send_status_from_server = {.status = known ? GRPC_STATUS_OK
                                                          : GRPC_STATUS_PERMISSION_DENIED,
                                          .status_details = &details}},
        {.op = GRPC_OP_RECV_CLOSE_ON_SERVER, .data.recv_close_on_server.cancelled = &cancelled},
        {.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = reply},
    };
    ok = run_batch(call, cq, second, known ? 3 : 2) && ok;
    if (!ok) {
        pthread_mutex_lock(&e->mu);
        e->num_errors++;
        pthread_mutex_unlock(&e->mu);
    }
    grpc_byte_buffer_destroy(reply);
    grpc_slice_unref(id);
    if (request != NULL) {
        grpc_byte_buffer_destroy(request);
    }
    gpr_free(peer_str);
}

static void *echo_main(void *arg)
{
    struct fixture_echo *e = arg;
    for (bool requesting = true;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        grpc_completion_queue *call_cq = grpc_completion_queue_create_for_pluck(NULL);
        if (requesting && grpc_server_request_call(e->server, &call, &details, &md, call_cq, e->cq,
                                                   &call) != GRPC_CALL_OK) {
            requesting = false;
        }
        grpc_event ev;
        do { /* bounded waits; only fixture_echo_stop's shutdown ends the loop */
            ev = grpc_completion_queue_next(e->cq, deadline_in(1), NULL);
        } while (ev.type == GRPC_QUEUE_TIMEOUT);
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == &call && ev.success) {
            echo_answer(e, call, call_cq);
            grpc_call_unref(call);
        } else if (ev.type == GRPC_OP_COMPLETE && ev.tag == &call) {
            requesting = false; /* the server is shutting down: no more calls */
        }
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
        cq_free(call_cq);
        if (ev.type != GRPC_OP_COMPLETE || ev.tag == &shutdown_tag) {
            return NULL;
        }
    }
}

void fixture_echo_start(struct fixture_echo *e)
{
    memset(e, 0, sizeof(*e));
    grpc_init();
    pthread_mutex_init(&e->mu, NULL);
    e->server = grpc_server_create(NULL, NULL);
    e->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(e->server, e->cq, NULL);
    grpc_server_start(e->server); /* gRPC accepts fds only once started */
    e->fds = grpcfd_server_new(e->server);
    if (pthread_create(&e->thread, NULL, echo_main, e) != 0) {
        abort();
    }
}

void fixture_echo_stop(struct fixture_echo *e)
{
    if (e->server == NULL) {
        return;
    }
    grpcfd_server_close(e->fds); /* no fd may be added from here on */
    grpc_server_shutdown_and_notify(e->server, e->cq, &shutdown_tag);
    grpc_server_cancel_all_calls(e->server);
    pthread_join(e->thread, NULL);
    grpc_server_destroy(e->server);
    e->server = NULL;
    grpc_completion_queue_shutdown(e->cq);
    while (grpc_completion_queue_next(e->cq, deadline_in(FIXTURE_TIMEOUT_S), NULL).type ==
           GRPC_OP_COMPLETE) {
    }
    grpc_completion_queue_destroy(e->cq);
}

void fixture_echo_free(struct fixture_echo *e)
{
    fixture_echo_stop(e);
    if (e->fds != NULL) {
        grpcfd_server_free(e->fds);
        e->fds = NULL;
        pthread_mutex_destroy(&e->mu);
        grpc_shutdown();
    }
}

/* --- the client --------------------------------------------------------------------------- */

grpc_status_code fixture_unary(grpc_channel *ch, char *out, size_t out_len)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_static_string("/weft.test.Echo/Whoami");
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                               deadline_in(FIXTURE_TIMEOUT_S), NULL);
    grpc_slice hello = grpc_slice_from_static_string("hello");
    grpc_byte_buffer *request = grpc_raw_byte_buffer_create(&hello, 1);
    grpc_byte_buffer *reply = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA},
        {.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = request},
        {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT},
        {.op = GRPC_OP_RECV_INITIAL_METADATA,
         .data.recv_initial_metadata.recv_initial_metadata = &initial},
        {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &reply},
        {.op = GRPC_OP_RECV_STATUS_ON_CLIENT,
         .data.recv_status_on_client = {.trailing_metadata = &trailing,
                                        .status = &status,
                                        .status_details = &details}},
    };
    if (!run_batch(call, cq, ops, nitems(ops)) && status == GRPC_STATUS_OK) {
        status = GRPC_STATUS_UNKNOWN; /* never report success for a batch that failed */
    }
    out[0] = '\0';
    if (reply != NULL) {
        grpc_byte_buffer_reader reader;
        if (grpc_byte_buffer_reader_init(&reader, reply)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
            snprintf(out, out_len, "%.*s", (int)GRPC_SLICE_LENGTH(all),
                     (const char *)GRPC_SLICE_START_PTR(all));
            grpc_slice_unref(all);
            grpc_byte_buffer_reader_destroy(&reader);
        }
        grpc_byte_buffer_destroy(reply);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_byte_buffer_destroy(request);
    grpc_call_unref(call);
    cq_free(cq);
    return status;
}
