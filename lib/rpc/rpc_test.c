/* lib/rpc/rpc_test.c: a dispatcher serving a unary and a stream method over a unix socket, and
 * the client helpers calling them. The server is polled on a thread of the test. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc_security.h>

#include "lib/rpc/rpc.h"
#include "proto/ca.pb-c.h"

#define T_MS 5000

struct fx {
    struct rpc_server *rs;
    grpc_channel *ch;
    char dir[64], sock[128];
    pthread_t thread;
    atomic_bool stop;
    /* server state, touched only on the poll thread until the thread is joined */
    int opened, messages, closed;
    struct rpc_stream *live;
    uint64_t last_seen;
};

static struct fx fx;

/* Unary: CreateToken answers with the node name reversed into the token; "fail" fails. */
static void create_token(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                         struct rpc_reply *reply)
{
    (void)arg;
    cr_assert_not(ctx->has_peer);
    Weft__Ca__V1__CreateTokenRequest *r =
        weft__ca__v1__create_token_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "bad request");
        return;
    }
    if (strcmp(r->node, "fail") == 0) {
        rpc_fail(reply, GRPC_STATUS_PERMISSION_DENIED, "node %s may not", r->node);
    } else {
        static char token[64];
        static Weft__Ca__V1__CreateTokenResponse resp = WEFT__CA__V1__CREATE_TOKEN_RESPONSE__INIT;
        snprintf(token, sizeof(token), "token-for-%s", r->node);
        resp.token = token;
        resp.expires_at = r->ttl_seconds;
        reply->msg = &resp.base;
    }
    weft__ca__v1__create_token_request__free_unpacked(r, NULL);
}

static grpc_status_code watch_open(void *arg, const struct rpc_ctx *ctx, struct rpc_stream *s,
                                   char details[RPC_DETAILS_LEN])
{
    (void)ctx;
    struct fx *f = arg;
    f->opened++;
    if (f->live != NULL) {
        snprintf(details, RPC_DETAILS_LEN, "one watcher at a time");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    f->live = s;
    Weft__Ca__V1__NodeSnapshot snap = WEFT__CA__V1__NODE_SNAPSHOT__INIT;
    snap.sequence = 1;
    cr_assert_eq(rpc_stream_send(s, &snap.base), WEFT_OK);
    return GRPC_STATUS_OK;
}

/* Each message acknowledges a sequence; the server answers with the next snapshot, and ends
 * the stream at 3. */
static void watch_message(void *arg, struct rpc_stream *s, const uint8_t *msg, size_t len)
{
    struct fx *f = arg;
    f->messages++;
    Weft__Ca__V1__WatchNodeRequest *r = weft__ca__v1__watch_node_request__unpack(NULL, len, msg);
    cr_assert_not_null(r);
    f->last_seen = r->bundle_sequence_seen;
    Weft__Ca__V1__NodeSnapshot snap = WEFT__CA__V1__NODE_SNAPSHOT__INIT;
    snap.sequence = r->bundle_sequence_seen + 1;
    if (snap.sequence < 3) {
        cr_assert_eq(rpc_stream_send(s, &snap.base), WEFT_OK);
    } else {
        cr_assert_eq(rpc_stream_send(s, &snap.base), WEFT_OK);
        rpc_stream_finish(s, GRPC_STATUS_OK, "done");
    }
    weft__ca__v1__watch_node_request__free_unpacked(r, NULL);
}

static void watch_closed(void *arg, struct rpc_stream *s)
{
    struct fx *f = arg;
    if (f->live == s) {
        f->live = NULL;
    }
    f->closed++;
}

static const struct rpc_method methods[] = {
    {.path = "/weft.ca.v1.Admin/CreateToken",
     .kind = RPC_UNARY,
     .max_request = 256,
     .unary = create_token},
    {.path = "/weft.ca.v1.CA/WatchNode",
     .kind = RPC_STREAM,
     .max_request = 64,
     .open = watch_open,
     .message = watch_message,
     .closed = watch_closed},
};

static void *poll_main(void *arg)
{
    struct fx *f = arg;
    while (!atomic_load(&f->stop)) {
        rpc_server_poll(f->rs, 50);
    }
    return NULL;
}

static void setup(void)
{
    memset(&fx, 0, sizeof(fx));
    grpc_init();
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/weft-rpc-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.dir));
    snprintf(fx.sock, sizeof(fx.sock), "%s/s.sock", fx.dir);
    char target[160];
    snprintf(target, sizeof(target), "unix:%s", fx.sock);
    fx.rs = rpc_server_new();
    grpc_server *gs = grpc_server_create(NULL, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    cr_assert(grpc_server_add_http2_port(gs, target, creds) != 0);
    grpc_server_credentials_release(creds);
    struct rpc_service svc = {.methods = methods, .num_methods = 2, .arg = &fx};
    cr_assert_eq(rpc_server_add(fx.rs, gs, &svc), WEFT_OK);
    cr_assert_eq(rpc_server_start(fx.rs), WEFT_OK);
    cr_assert_eq(pthread_create(&fx.thread, NULL, poll_main, &fx), 0);
    fx.ch = rpc_channel_unix(fx.sock);
}

static void teardown(void)
{
    grpc_channel_destroy(fx.ch);
    atomic_store(&fx.stop, true);
    pthread_join(fx.thread, NULL);
    rpc_server_free(fx.rs);
    unlink(fx.sock);
    rmdir(fx.dir);
    grpc_shutdown();
}

TestSuite(rpc, .init = setup, .fini = teardown, .timeout = 30);

static int create(const char *node, Weft__Ca__V1__CreateTokenResponse **out, struct rpc_status *st)
{
    Weft__Ca__V1__CreateTokenRequest req = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    req.node = (char *)node;
    req.ttl_seconds = 42;
    return rpc_call_unary(fx.ch, "/weft.ca.v1.Admin/CreateToken", &req.base,
                          &weft__ca__v1__create_token_response__descriptor, 1024, T_MS,
                          (ProtobufCMessage **)out, st);
}

Test(rpc, unary_ok_and_error)
{
    Weft__Ca__V1__CreateTokenResponse *resp;
    struct rpc_status st;
    cr_assert_eq(create("node-a", &resp, &st), WEFT_OK, "%d %s", st.code, st.details);
    cr_assert_str_eq(resp->token, "token-for-node-a");
    cr_assert_eq(resp->expires_at, 42);
    protobuf_c_message_free_unpacked(&resp->base, NULL);

    cr_assert_eq(create("fail", &resp, &st), WEFT_EIO);
    cr_assert_null(resp);
    cr_assert_eq(st.code, GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_str_eq(st.details, "node fail may not");
}

Test(rpc, oversize_request_is_refused_and_the_server_goes_on)
{
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    Weft__Ca__V1__CreateTokenResponse *resp;
    struct rpc_status st;
    cr_assert_eq(create(big, &resp, &st), WEFT_EIO);
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", st.code, st.details);
    cr_assert(strstr(st.details, "over the limit of 256") != NULL, "%s", st.details);
    cr_assert_eq(create("node-b", &resp, &st), WEFT_OK);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

Test(rpc, unknown_method_is_unimplemented)
{
    Weft__Ca__V1__CreateTokenRequest req = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    ProtobufCMessage *resp;
    struct rpc_status st;
    cr_assert_eq(rpc_call_unary(fx.ch, "/weft.ca.v1.Admin/Nope", &req.base,
                                &weft__ca__v1__create_token_response__descriptor, 1024, T_MS, &resp,
                                &st),
                 WEFT_EIO);
    cr_assert_eq(st.code, GRPC_STATUS_UNIMPLEMENTED);
    cr_assert(strstr(st.details, "/weft.ca.v1.Admin/Nope") != NULL, "%s", st.details);
}

static Weft__Ca__V1__NodeSnapshot *recv_snap(struct rpc_client_stream *cs, int rc_want)
{
    ProtobufCMessage *m = NULL;
    int rc = rpc_client_stream_recv(cs, &weft__ca__v1__node_snapshot__descriptor, 1024, T_MS, &m);
    cr_assert_eq(rc, rc_want, "recv: %d", rc);
    return (Weft__Ca__V1__NodeSnapshot *)m;
}

static void ack(struct rpc_client_stream *cs, uint64_t seq)
{
    Weft__Ca__V1__WatchNodeRequest req = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
    req.bundle_sequence_seen = seq;
    cr_assert_eq(rpc_client_stream_send(cs, &req.base, T_MS), WEFT_OK);
}

Test(rpc, stream_pushes_hears_acks_and_finishes)
{
    struct rpc_client_stream *cs = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
    cr_assert_not_null(cs);
    for (uint64_t want = 1; want <= 3; want++) {
        Weft__Ca__V1__NodeSnapshot *snap = recv_snap(cs, WEFT_OK);
        cr_assert_eq(snap->sequence, want);
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        if (want < 3) {
            ack(cs, want);
        }
    }
    recv_snap(cs, WEFT_EIO);
    struct rpc_status st;
    rpc_client_stream_status(cs, T_MS, &st);
    cr_assert_eq(st.code, GRPC_STATUS_OK);
    cr_assert_str_eq(st.details, "done");
    rpc_client_stream_close(cs);
}

Test(rpc, second_watcher_refused_and_cancel_closes)
{
    struct rpc_client_stream *a = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
    Weft__Ca__V1__NodeSnapshot *snap = recv_snap(a, WEFT_OK);
    protobuf_c_message_free_unpacked(&snap->base, NULL);

    struct rpc_client_stream *b = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
    recv_snap(b, WEFT_EIO);
    struct rpc_status st;
    rpc_client_stream_status(b, T_MS, &st);
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(st.details, "one watcher at a time");
    rpc_client_stream_close(b);

    rpc_client_stream_close(a); /* cancels: the server hears |closed| */
    /* after the cancel, a new watcher is accepted: the server forgot the first */
    struct rpc_client_stream *c = NULL;
    for (int i = 0; i < 100; i++) {
        c = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
        ProtobufCMessage *m = NULL;
        if (rpc_client_stream_recv(c, &weft__ca__v1__node_snapshot__descriptor, 1024, T_MS, &m) ==
            WEFT_OK) {
            protobuf_c_message_free_unpacked(m, NULL);
            break;
        }
        rpc_client_stream_close(c);
        c = NULL;
        usleep(20 * 1000);
    }
    cr_assert_not_null(c, "the cancelled watcher was never closed on the server");
    rpc_client_stream_close(c);
}

Test(rpc, a_refused_call_reports_its_status_even_after_a_failed_send)
{
    struct rpc_client_stream *a = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
    Weft__Ca__V1__NodeSnapshot *snap = recv_snap(a, WEFT_OK);
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    /* the server refuses the second watcher before its first message: the send then fails, and
     * the status must still come (gRPC gives it only after the initial metadata is read) */
    struct rpc_client_stream *b = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
    Weft__Ca__V1__WatchNodeRequest hello = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
    bool failed = false;
    for (int i = 0; i < 100 && !failed; i++) { /* until the refusal has landed: at most 5 s */
        failed = rpc_client_stream_send(b, &hello.base, T_MS) != WEFT_OK;
        usleep(50 * 1000);
    }
    cr_assert(failed, "a send on a refused call fails");
    recv_snap(b, WEFT_EIO);
    struct rpc_status st;
    rpc_client_stream_status(b, T_MS, &st);
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", st.code, st.details);
    rpc_client_stream_close(b);
    rpc_client_stream_close(a);
}

Test(rpc, oversize_stream_message_ends_the_stream)
{
    struct rpc_client_stream *cs = rpc_client_stream_open(fx.ch, "/weft.ca.v1.CA/WatchNode", 10000);
    Weft__Ca__V1__NodeSnapshot *snap = recv_snap(cs, WEFT_OK);
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    Weft__Ca__V1__CreateTokenRequest big = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    char node[200];
    memset(node, 'n', sizeof(node) - 1);
    node[sizeof(node) - 1] = '\0';
    big.node = node;
    cr_assert_eq(rpc_client_stream_send(cs, &big.base, T_MS), WEFT_OK);
    recv_snap(cs, WEFT_EIO);
    struct rpc_status st;
    rpc_client_stream_status(cs, T_MS, &st);
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", st.code, st.details);
    rpc_client_stream_close(cs);
}
