/* agent/wlapi_test.c: the Workload API on a unix socket of its own, with the real unix
 * attestor and a provider that entitles one uid: the order of the checks (header, readiness,
 * identity), the first snapshot at once, a new snapshot on every change, and a stream ended
 * PERMISSION_DENIED when its identity goes. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "agent/peer.h"
#include "agent/wlapi.h"
#include "lib/rpc/rpc.h"

#define T_MS 5000

/* --- a provider ----------------------------------------------------------------------------- */

static atomic_bool ready;
static char entitled[64];           /* the selector an identity needs: "unix:uid:N" */
static atomic_bool nobody_entitled; /* set by the test thread instead of rewriting |entitled| */
static atomic_int version;          /* which SVID it is now (1, 2, ...); 0: revoked */
static uint8_t chain[] = {1, 2, 3}; /* bytes are opaque to the API */
static uint8_t key[] = {4, 5};
static uint8_t bundle[] = {6};

static bool p_ready(void *arg)
{
    (void)arg;
    return atomic_load(&ready);
}

static int p_attest(void *arg, const struct weft_peer *caller, struct agent_selectors *out,
                    char *why, size_t why_len)
{
    (void)arg;
    struct agent_peer p = agent_peer_from(caller);
    return agent_attest_unix(&p, "/proc", out, why, why_len);
}

static size_t p_x509(void *arg, const struct agent_selectors *sel, X509SVIDResponse *resp)
{
    (void)arg;
    static X509SVID svid, *svids[1];
    static char id[64];
    int v = atomic_load(&version);
    if (v == 0 || atomic_load(&nobody_entitled) || !agent_selectors_has(sel, entitled)) {
        return 0;
    }
    x509_svid__init(&svid);
    snprintf(id, sizeof(id), "spiffe://example.org/app/v%d", v);
    svid.spiffe_id = id;
    svid.x509_svid = (ProtobufCBinaryData){sizeof(chain), chain};
    svid.x509_svid_key = (ProtobufCBinaryData){sizeof(key), key};
    svid.bundle = (ProtobufCBinaryData){sizeof(bundle), bundle};
    svids[0] = &svid;
    resp->svids = svids;
    resp->n_svids = 1;
    return 1;
}

static size_t p_bundles(void *arg, const struct agent_selectors *sel, X509BundlesResponse *resp)
{
    (void)arg;
    static X509BundlesResponse__BundlesEntry e, *entries[1];
    if (atomic_load(&nobody_entitled) || !agent_selectors_has(sel, entitled)) {
        return 0;
    }
    x509_bundles_response__bundles_entry__init(&e);
    e.key = "spiffe://example.org";
    e.value = (ProtobufCBinaryData){sizeof(bundle), bundle};
    entries[0] = &e;
    resp->bundles = entries;
    resp->n_bundles = 1;
    return 1;
}

static atomic_bool jwt_keys_missing; /* the CA's JWT keys have not come */

static size_t p_jwt_bundles(void *arg, const struct agent_selectors *sel, JWTBundlesResponse *resp,
                            bool *wait)
{
    (void)arg;
    *wait = atomic_load(&jwt_keys_missing);
    if (*wait) {
        return 0;
    }
    static JWTBundlesResponse__BundlesEntry e, *entries[1];
    static char jwks[] = "{\"keys\":[]}";
    if (atomic_load(&nobody_entitled) || !agent_selectors_has(sel, entitled)) {
        return 0;
    }
    jwtbundles_response__bundles_entry__init(&e);
    e.key = "spiffe://example.org";
    e.value = (ProtobufCBinaryData){strlen(jwks), (uint8_t *)jwks};
    entries[0] = &e;
    resp->bundles = entries;
    resp->n_bundles = 1;
    return 1;
}

static grpc_status_code p_jwt_svid(void *arg, const struct agent_selectors *sel,
                                   const JWTSVIDRequest *req, JWTSVIDResponse *resp,
                                   char details[RPC_DETAILS_LEN])
{
    (void)arg;
    static JWTSVID svid, *svids[1];
    static char token[128];
    if (atomic_load(&nobody_entitled) || !agent_selectors_has(sel, entitled)) {
        snprintf(details, RPC_DETAILS_LEN, "no identity issued");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    jwtsvid__init(&svid);
    svid.spiffe_id = "spiffe://example.org/app/v1";
    snprintf(token, sizeof(token), "token-for-%s", req->audience[0]);
    svid.svid = token;
    svids[0] = &svid;
    resp->svids = svids;
    resp->n_svids = 1;
    return GRPC_STATUS_OK;
}

static grpc_status_code p_jwt_validate(void *arg, const struct agent_selectors *sel,
                                       const ValidateJWTSVIDRequest *req,
                                       ValidateJWTSVIDResponse *resp, char details[RPC_DETAILS_LEN])
{
    (void)arg, (void)sel;
    if (strcmp(req->svid, "token-for-db") != 0 || strcmp(req->audience, "db") != 0) {
        snprintf(details, RPC_DETAILS_LEN, "does not validate");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    resp->spiffe_id = "spiffe://example.org/app/v1";
    return GRPC_STATUS_OK;
}

/* --- the server on a thread of its own ------------------------------------------------------ */

static char dir[] = "/tmp/weft-wlapi-test-XXXXXX";
static char sock[128];
static struct rpc_server *rpc;
static struct agent_wlapi *api;
static pthread_t poller;
static atomic_bool stop, push;

static void *poll_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        if (atomic_exchange(&push, false)) {
            agent_wlapi_changed(api);
        }
        rpc_server_poll(rpc, 50);
    }
    return NULL;
}

static void setup(void)
{
    grpc_init();
    cr_assert_not_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/run/agent.sock", dir);
    snprintf(entitled, sizeof(entitled), "unix:uid:%u", (unsigned)geteuid());
    atomic_store(&ready, true);
    atomic_store(&version, 1);
    rpc = rpc_server_new();
    struct agent_wlapi_ops ops = {.ready = p_ready,
                                  .attest = p_attest,
                                  .x509 = p_x509,
                                  .bundles = p_bundles,
                                  .jwt_bundles = p_jwt_bundles,
                                  .jwt_svid = p_jwt_svid,
                                  .jwt_validate = p_jwt_validate};
    char err[256];
    cr_assert_eq(agent_wlapi_start(&api, rpc, sock, &ops, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(rpc_server_start(rpc), WEFT_OK);
    cr_assert_eq(agent_wlapi_serve(api, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(pthread_create(&poller, NULL, poll_loop, NULL), 0);
}

static void teardown(void)
{
    atomic_store(&stop, true);
    pthread_join(poller, NULL);
    agent_wlapi_stop(api);
    rpc_server_free(rpc);
    agent_wlapi_free(api);
    grpc_shutdown();
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(wlapi, .init = setup, .fini = teardown, .timeout = 30);

static struct rpc_client_stream *fetch(grpc_channel *ch, const char *method, bool header)
{
    grpc_metadata md = {.key = grpc_slice_from_static_string(AGENT_WLAPI_HEADER),
                        .value = grpc_slice_from_static_string("true")};
    char path[96];
    snprintf(path, sizeof(path), "/SpiffeWorkloadAPI/%s", method);
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, path, 20000, &md, header ? 1 : 0);
    cr_assert_not_null(cs);
    X509SVIDRequest req = X509_SVIDREQUEST__INIT;
    if (rpc_client_stream_send(cs, &req.base, T_MS) != WEFT_OK) {
        /* a refused call may already be over: its status says how */
    }
    return cs;
}

static grpc_status_code ended_with(struct rpc_client_stream *cs)
{
    ProtobufCMessage *m = NULL;
    int rc = rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, 1 << 20, T_MS, &m);
    struct rpc_status st;
    rpc_client_stream_status(cs, T_MS, &st);
    cr_assert_eq(rc, WEFT_EIO, "no message, the call ends (status %d: %s)", st.code, st.details);
    rpc_client_stream_close(cs);
    return st.code;
}

Test(wlapi, the_checks_come_in_the_standards_order)
{
    grpc_channel *ch = rpc_channel_unix(sock);
    /* 1. no security header: INVALID_ARGUMENT, even though everything else would pass */
    cr_assert_eq(ended_with(fetch(ch, "FetchX509SVID", false)), GRPC_STATUS_INVALID_ARGUMENT);
    /* 2. not ready: UNAVAILABLE */
    atomic_store(&ready, false);
    cr_assert_eq(ended_with(fetch(ch, "FetchX509SVID", true)), GRPC_STATUS_UNAVAILABLE);
    cr_assert_eq(ended_with(fetch(ch, "FetchX509SVID", false)), GRPC_STATUS_INVALID_ARGUMENT,
                 "the header is checked first");
    atomic_store(&nobody_entitled, true);
    cr_assert_eq(ended_with(fetch(ch, "FetchX509SVID", true)), GRPC_STATUS_UNAVAILABLE,
                 "readiness is checked before identity");
    atomic_store(&nobody_entitled, false);
    atomic_store(&ready, true);
    /* 3. a caller with no entry: PERMISSION_DENIED, for SVIDs and for bundles */
    atomic_store(&nobody_entitled, true);
    cr_assert_eq(ended_with(fetch(ch, "FetchX509SVID", true)), GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_eq(ended_with(fetch(ch, "FetchX509Bundles", true)), GRPC_STATUS_PERMISSION_DENIED);
    /* the WIT profile is not served, nor the proxy config by an agent without it */
    cr_assert_eq(ended_with(fetch(ch, "FetchWITSVID", true)), GRPC_STATUS_UNIMPLEMENTED);
    grpc_metadata md = {.key = grpc_slice_from_static_string(AGENT_WLAPI_HEADER),
                        .value = grpc_slice_from_static_string("true")};
    struct rpc_client_stream *pcs =
        rpc_client_stream_open_md(ch, AGENT_PROXY_CONFIG_PATH, 20000, &md, 1);
    cr_assert_eq(ended_with(pcs), GRPC_STATUS_UNIMPLEMENTED);
    grpc_channel_destroy(ch);
}

Test(wlapi, a_snapshot_at_once_a_new_one_on_change_and_an_end_on_revocation)
{
    grpc_channel *ch = rpc_channel_unix(sock);
    struct rpc_client_stream *cs = fetch(ch, "FetchX509SVID", true);
    X509SVIDResponse *r = NULL;
    cr_assert_eq(rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, 1 << 20, T_MS,
                                        (ProtobufCMessage **)&r),
                 WEFT_OK);
    cr_assert_eq(r->n_svids, 1);
    cr_assert_str_eq(r->svids[0]->spiffe_id, "spiffe://example.org/app/v1");
    cr_assert_eq(r->svids[0]->x509_svid_key.len, sizeof(key));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* the server registers the stream right after its first send: wait for it, bounded */
    for (int i = 0; i < 100 && agent_wlapi_streams(api) != 1; i++) {
        usleep(10 * 1000);
    }
    cr_assert_eq(agent_wlapi_streams(api), 1);

    struct rpc_client_stream *bs = fetch(ch, "FetchX509Bundles", true);
    X509BundlesResponse *b = NULL;
    cr_assert_eq(rpc_client_stream_recv(bs, &x509_bundles_response__descriptor, 1 << 20, T_MS,
                                        (ProtobufCMessage **)&b),
                 WEFT_OK);
    cr_assert_eq(b->n_bundles, 1);
    cr_assert_str_eq(b->bundles[0]->key, "spiffe://example.org");
    protobuf_c_message_free_unpacked(&b->base, NULL);

    /* a rotation: every open stream gets the new snapshot */
    atomic_store(&version, 2);
    atomic_store(&push, true);
    cr_assert_eq(rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, 1 << 20, T_MS,
                                        (ProtobufCMessage **)&r),
                 WEFT_OK);
    cr_assert_str_eq(r->svids[0]->spiffe_id, "spiffe://example.org/app/v2");
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* the bundle did not change with the rotation: its stream was not sent the same again */
    cr_assert_eq(rpc_client_stream_recv(bs, &x509_bundles_response__descriptor, 1 << 20, 300,
                                        (ProtobufCMessage **)&b),
                 WEFT_EAGAIN, "an unchanged snapshot is not sent again");

    /* revoked: the SVID stream ends PERMISSION_DENIED; the bundle stream goes on, open */
    atomic_store(&version, 0);
    atomic_store(&push, true);
    cr_assert_eq(ended_with(cs), GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_eq(rpc_client_stream_recv(bs, &x509_bundles_response__descriptor, 1 << 20, 300,
                                        (ProtobufCMessage **)&b),
                 WEFT_EAGAIN, "still open, nothing new for it");
    rpc_client_stream_close(bs);
    grpc_channel_destroy(ch);
}

/* jwt_call makes one unary call with or without the header; returns its status. */
static grpc_status_code jwt_call(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *desc, bool header,
                                 ProtobufCMessage **resp)
{
    grpc_metadata md = {.key = grpc_slice_from_static_string(AGENT_WLAPI_HEADER),
                        .value = grpc_slice_from_static_string("true")};
    char path[96];
    snprintf(path, sizeof(path), "/SpiffeWorkloadAPI/%s", method);
    /* lib/rpc's unary client sends no metadata: a stream of one message each way is the same
     * call on the wire */
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, path, 20000, &md, header ? 1 : 0);
    cr_assert_not_null(cs);
    if (rpc_client_stream_send(cs, req, T_MS) != WEFT_OK) {
        /* a refused call may already be over: its status says how */
    }
    *resp = NULL;
    if (rpc_client_stream_recv(cs, desc, 1 << 20, T_MS, resp) != WEFT_OK) {
        *resp = NULL;
    }
    struct rpc_status st;
    rpc_client_stream_status(cs, T_MS, &st);
    rpc_client_stream_close(cs);
    return st.code;
}

Test(wlapi, the_jwt_calls_check_header_fields_readiness_and_identity_in_that_order)
{
    grpc_channel *ch = rpc_channel_unix(sock);
    ProtobufCMessage *m;
    JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
    char *aud[] = {"db"};
    /* no audience: INVALID_ARGUMENT (a mandatory field), but the header comes first */
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, true, &m),
                 GRPC_STATUS_INVALID_ARGUMENT);
    req.audience = aud;
    req.n_audience = 1;
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, false, &m),
                 GRPC_STATUS_INVALID_ARGUMENT);
    atomic_store(&ready, false);
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, true, &m),
                 GRPC_STATUS_UNAVAILABLE);
    atomic_store(&nobody_entitled, true);
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, false, &m),
                 GRPC_STATUS_INVALID_ARGUMENT, "the header first, before readiness and identity");
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, true, &m),
                 GRPC_STATUS_UNAVAILABLE, "readiness before identity");
    atomic_store(&nobody_entitled, false);
    ValidateJWTSVIDRequest nv = VALIDATE_JWTSVIDREQUEST__INIT;
    nv.audience = "db";
    nv.svid = "token-for-db";
    cr_assert_eq(
        jwt_call(ch, "ValidateJWTSVID", &nv.base, &validate_jwtsvidresponse__descriptor, false, &m),
        GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_eq(
        jwt_call(ch, "ValidateJWTSVID", &nv.base, &validate_jwtsvidresponse__descriptor, true, &m),
        GRPC_STATUS_UNAVAILABLE);
    atomic_store(&ready, true);
    atomic_store(&nobody_entitled, true);
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, true, &m),
                 GRPC_STATUS_PERMISSION_DENIED);
    atomic_store(&nobody_entitled, false);
    cr_assert_eq(jwt_call(ch, "FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor, true, &m),
                 GRPC_STATUS_OK);
    JWTSVIDResponse *r = (JWTSVIDResponse *)m;
    cr_assert_eq(r->n_svids, 1);
    cr_assert_str_eq(r->svids[0]->svid, "token-for-db");
    protobuf_c_message_free_unpacked(m, NULL);

    ValidateJWTSVIDRequest v = VALIDATE_JWTSVIDREQUEST__INIT;
    v.audience = "db";
    cr_assert_eq(
        jwt_call(ch, "ValidateJWTSVID", &v.base, &validate_jwtsvidresponse__descriptor, true, &m),
        GRPC_STATUS_INVALID_ARGUMENT, "svid is mandatory");
    v.svid = "token-for-db";
    cr_assert_eq(
        jwt_call(ch, "ValidateJWTSVID", &v.base, &validate_jwtsvidresponse__descriptor, true, &m),
        GRPC_STATUS_OK);
    cr_assert_str_eq(((ValidateJWTSVIDResponse *)m)->spiffe_id, "spiffe://example.org/app/v1");
    protobuf_c_message_free_unpacked(m, NULL);
    v.audience = "other";
    cr_assert_eq(
        jwt_call(ch, "ValidateJWTSVID", &v.base, &validate_jwtsvidresponse__descriptor, true, &m),
        GRPC_STATUS_INVALID_ARGUMENT);

    /* FetchJWTBundles is a stream like FetchX509Bundles: the header first; before the CA's keys
     * come it stays open and silent (not PERMISSION_DENIED), then sends them */
    cr_assert_eq(ended_with(fetch(ch, "FetchJWTBundles", false)), GRPC_STATUS_INVALID_ARGUMENT);
    atomic_store(&jwt_keys_missing, true);
    struct rpc_client_stream *cs = fetch(ch, "FetchJWTBundles", true);
    JWTBundlesResponse *b = NULL;
    cr_assert_eq(rpc_client_stream_recv(cs, &jwtbundles_response__descriptor, 1 << 20, 300,
                                        (ProtobufCMessage **)&b),
                 WEFT_EAGAIN, "nothing yet");
    atomic_store(&jwt_keys_missing, false);
    atomic_store(&push, true);
    cr_assert_eq(rpc_client_stream_recv(cs, &jwtbundles_response__descriptor, 1 << 20, T_MS,
                                        (ProtobufCMessage **)&b),
                 WEFT_OK);
    cr_assert_eq(b->n_bundles, 1);
    cr_assert_str_eq(b->bundles[0]->key, "spiffe://example.org");
    protobuf_c_message_free_unpacked(&b->base, NULL);
    rpc_client_stream_close(cs);
    grpc_channel_destroy(ch);
}
