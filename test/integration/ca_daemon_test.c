/* test/integration/ca_daemon_test.c: a real weft-ca process on loopback, driven as an agent
 * would drive it (ca/client.h: TLS by lib/transport, gRPC over the plaintext end) and as weftctl
 * would (the Admin service on its unix socket). Each test starts its own CA in a directory of
 * its own and stops it by PID, even when an assertion fails. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <openssl/mem.h>

#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/ca_proc.h"

#define TD CA_PROC_TD
#define T_MS 10000
#define BIG (16 << 20)

static struct ca_proc ca;

static void ca_start(void)
{
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "weft-ca did not start; see %s/ca.log", ca.dir);
}

static void ca_stop(int sig) { ca_proc_stop(&ca, sig); }

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    ca_start();
}

static void teardown(void)
{
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(ca_daemon, .init = setup, .fini = teardown, .timeout = 90);

/* --- admin --------------------------------------------------------------------------------- */

static int admin(const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                 struct rpc_status *st)
{
    char path[128];
    snprintf(path, sizeof(path), "/weft.ca.v1.Admin/%s", method);
    return rpc_call_unary(ca.admin, path, req, desc, BIG, T_MS, resp, st);
}

static char *token_for(const char *node, int64_t ttl)
{
    Weft__Ca__V1__CreateTokenRequest req = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    req.node = (char *)node;
    req.ttl_seconds = ttl;
    Weft__Ca__V1__CreateTokenResponse *resp;
    struct rpc_status st;
    cr_assert_eq(admin("CreateToken", &req.base, &weft__ca__v1__create_token_response__descriptor,
                       (ProtobufCMessage **)&resp, &st),
                 WEFT_OK, "%s", st.details);
    char *t = strdup(resp->token);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return t;
}

static char *entry_for(const char *id, const char *node)
{
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char *sel = "unix:uid:1001";
    e.spiffe_id = (char *)id;
    e.node = (char *)node;
    e.selectors = &sel;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    Weft__Ca__V1__CreateEntryResponse *resp;
    struct rpc_status st;
    cr_assert_eq(admin("CreateEntry", &req.base, &weft__ca__v1__create_entry_response__descriptor,
                       (ProtobufCMessage **)&resp, &st),
                 WEFT_OK, "%s", st.details);
    char *out = strdup(resp->entry->id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return out;
}

static void revoke_id(const char *id)
{
    Weft__Ca__V1__RevokeRequest req = WEFT__CA__V1__REVOKE_REQUEST__INIT;
    req.kind = WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID;
    req.value = (char *)id;
    ProtobufCMessage *resp;
    struct rpc_status st;
    cr_assert_eq(admin("Revoke", &req.base, &weft__ca__v1__revoke_response__descriptor, &resp, &st),
                 WEFT_OK, "%s", st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* serials_listed counts how many of |serials| (hex) the inventory holds. */
static size_t serials_listed(char (*serials)[41], size_t n)
{
    Weft__Ca__V1__ListCertsRequest req = WEFT__CA__V1__LIST_CERTS_REQUEST__INIT;
    Weft__Ca__V1__ListCertsResponse *resp;
    struct rpc_status st;
    cr_assert_eq(admin("ListCerts", &req.base, &weft__ca__v1__list_certs_response__descriptor,
                       (ProtobufCMessage **)&resp, &st),
                 WEFT_OK, "%s", st.details);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < resp->n_certs; k++) {
            char hex[41] = "";
            for (size_t b = 0; b < resp->certs[k]->serial.len && b < 20; b++) {
                snprintf(hex + 2 * b, 3, "%02x", resp->certs[k]->serial.data[b]);
            }
            if (strcmp(hex, serials[i]) == 0) {
                found++;
                break;
            }
        }
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return found;
}

/* --- a node ------------------------------------------------------------------------------------
 */

struct node {
    struct ca_client *client;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;
    grpc_channel *ch;
};

static struct ca_client *client_new(void)
{
    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/bundle.pem", ca.dir);
    uint8_t *bundle;
    size_t len;
    cr_assert_eq(weft_file_read(&bundle, &len, path, 1 << 20), WEFT_OK);
    struct ca_client *c;
    cr_assert_eq(ca_client_new(&c, ca.listen, TD, bundle, len, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    free(bundle);
    return c;
}

static grpc_channel *dial(struct ca_client *c, STACK_OF(X509) * chain, EVP_PKEY *key)
{
    grpc_channel *ch;
    char err[512];
    cr_assert_eq(ca_client_dial(c, chain, key, &ch, err, sizeof(err)), WEFT_OK, "%s", err);
    return ch;
}

static int call(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                struct rpc_status *st)
{
    char path[128];
    snprintf(path, sizeof(path), "/weft.ca.v1.CA/%s", method);
    return rpc_call_unary(ch, path, req, desc, BIG, T_MS, resp, st);
}

static void csr_of(EVP_PKEY *key, ProtobufCBinaryData *out)
{
    uint8_t *der;
    size_t len;
    cr_assert_eq(ca_csr_new(key, &der, &len), WEFT_OK);
    out->data = der;
    out->len = len;
}

/* attest joins with |token|; returns the gRPC status. On OK |n| holds the node SVID. */
static int attest(struct node *n, const char *token, struct rpc_status *st)
{
    grpc_channel *anon = dial(n->client, NULL, NULL);
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__AttestNodeRequest req = WEFT__CA__V1__ATTEST_NODE_REQUEST__INIT;
    req.join_token = (char *)token;
    csr_of(key, &req.csr);
    Weft__Ca__V1__AttestNodeResponse *resp = NULL;
    int rc = call(anon, "AttestNode", &req.base, &weft__ca__v1__attest_node_response__descriptor,
                  (ProtobufCMessage **)&resp, st);
    OPENSSL_free(req.csr.data);
    grpc_channel_destroy(anon);
    if (rc != WEFT_OK) {
        EVP_PKEY_free(key);
        return st->code;
    }
    struct spiffe_why why;
    cr_assert_eq(spiffe_certs_decode(&n->chain, resp->node_svid->chain.data,
                                     resp->node_svid->chain.len, 4, 0, &why),
                 WEFT_OK, "%s", why.msg);
    cr_assert_gt(resp->bundle.len, 0);
    n->key = key;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    n->ch = dial(n->client, n->chain, n->key);
    return GRPC_STATUS_OK;
}

static void node_join(struct node *n, const char *name)
{
    memset(n, 0, sizeof(*n));
    n->client = client_new();
    char *token = token_for(name, 600);
    struct rpc_status st;
    cr_assert_eq(attest(n, token, &st), GRPC_STATUS_OK, "%s", st.details);
    free(token);
}

static void node_free(struct node *n)
{
    if (n->ch != NULL) {
        grpc_channel_destroy(n->ch);
    }
    sk_X509_pop_free(n->chain, X509_free);
    EVP_PKEY_free(n->key);
    ca_client_free(n->client);
}

/* mint asks for one SVID of |entry|; returns "" and the serial in |serial_out| (may be NULL),
 * or the CA's per-request error. A call that fails as a whole returns "call failed: ...". */
static const char *mint(struct node *n, const char *entry, char serial_out[41])
{
    static char result[300];
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__MintRequest one = WEFT__CA__V1__MINT_REQUEST__INIT, *ptr = &one;
    one.entry_id = (char *)entry;
    csr_of(key, &one.csr);
    Weft__Ca__V1__MintWorkloadSVIDsRequest req = WEFT__CA__V1__MINT_WORKLOAD_SVIDS_REQUEST__INIT;
    req.requests = &ptr;
    req.n_requests = 1;
    Weft__Ca__V1__MintWorkloadSVIDsResponse *resp = NULL;
    struct rpc_status st;
    int rc = call(n->ch, "MintWorkloadSVIDs", &req.base,
                  &weft__ca__v1__mint_workload_svids_response__descriptor,
                  (ProtobufCMessage **)&resp, &st);
    OPENSSL_free(one.csr.data);
    EVP_PKEY_free(key);
    if (rc != WEFT_OK) {
        snprintf(result, sizeof(result), "call failed: %s", st.details);
        return result;
    }
    cr_assert_eq(resp->n_results, 1);
    snprintf(result, sizeof(result), "%s", resp->results[0]->error);
    if (resp->results[0]->svid != NULL && serial_out != NULL) {
        STACK_OF(X509) * chain;
        struct spiffe_why why;
        const Weft__Ca__V1__Svid *s = resp->results[0]->svid;
        cr_assert_eq(spiffe_certs_decode(&chain, s->chain.data, s->chain.len, 4, 0, &why), WEFT_OK);
        const ASN1_INTEGER *serial = X509_get0_serialNumber(sk_X509_value(chain, 0));
        serial_out[0] = '\0';
        for (int b = 0; b < serial->length && b < 20; b++) {
            snprintf(serial_out + 2 * b, 3, "%02x", serial->data[b]);
        }
        sk_X509_pop_free(chain, X509_free);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return result;
}

/* --- tests ----------------------------------------------------------------------------------- */

Test(ca_daemon, join_renew_mint_and_the_limits_of_a_node)
{
    struct node a, b;
    node_join(&a, "node-a");
    struct spiffe_id id;
    struct spiffe_why why;
    cr_assert_eq(spiffe_cert_uri_id(&id, sk_X509_value(a.chain, 0), &why), WEFT_OK);
    cr_assert_str_eq(id.str, "spiffe://" TD "/weft/node/node-a");

    /* renewal over mTLS with the node SVID */
    Weft__Ca__V1__RenewNodeRequest rn = WEFT__CA__V1__RENEW_NODE_REQUEST__INIT;
    EVP_PKEY *k2 = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    csr_of(k2, &rn.csr);
    Weft__Ca__V1__RenewNodeResponse *rr;
    struct rpc_status st;
    cr_assert_eq(call(a.ch, "RenewNode", &rn.base, &weft__ca__v1__renew_node_response__descriptor,
                      (ProtobufCMessage **)&rr, &st),
                 WEFT_OK, "%s", st.details);
    cr_assert_str_eq(rr->node_svid->spiffe_id, "spiffe://" TD "/weft/node/node-a");
    protobuf_c_message_free_unpacked(&rr->base, NULL);
    OPENSSL_free(rn.csr.data);
    EVP_PKEY_free(k2);

    /* an anonymous client may only attest */
    grpc_channel *anon = dial(a.client, NULL, NULL);
    Weft__Ca__V1__RenewNodeRequest rn2 = WEFT__CA__V1__RENEW_NODE_REQUEST__INIT;
    ProtobufCMessage *none;
    cr_assert_eq(call(anon, "RenewNode", &rn2.base, &weft__ca__v1__renew_node_response__descriptor,
                      &none, &st),
                 WEFT_EIO);
    cr_assert_eq(st.code, GRPC_STATUS_UNAUTHENTICATED, "%d %s", st.code, st.details);
    grpc_channel_destroy(anon);

    /* node-a mints its own entry, not node-b's */
    node_join(&b, "node-b");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    char *eb = entry_for("spiffe://" TD "/ns/shop/sa/pay", "node-b");
    char serial[41];
    cr_assert_str_eq(mint(&a, ea, serial), "");
    cr_assert_eq(strlen(serial), 32);
    cr_assert_str_eq(mint(&b, eb, NULL), "");
    cr_assert_not_null(strstr(mint(&a, eb, NULL), "no entry"), "%s", mint(&a, eb, NULL));
    free(ea);
    free(eb);
    node_free(&a);
    node_free(&b);
}

Test(ca_daemon, a_token_is_used_once_and_expires)
{
    struct node n = {.client = client_new()};
    struct rpc_status st;
    char *token = token_for("node-a", 600);
    cr_assert_eq(attest(&n, token, &st), GRPC_STATUS_OK, "%s", st.details);
    struct node again = {.client = client_new()};
    cr_assert_eq(attest(&again, token, &st), GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_str_eq(st.details, "join token refused", "a peer learns nothing more");
    cr_assert_eq(attest(&again, "weft1.not-a-token", &st), GRPC_STATUS_PERMISSION_DENIED);
    free(token);

    token = token_for("node-c", 1);
    sleep(2);
    cr_assert_eq(attest(&again, token, &st), GRPC_STATUS_PERMISSION_DENIED);
    free(token);
    node_free(&n);
    node_free(&again);
}

Test(ca_daemon, watch_node_pushes_entries_and_revocations)
{
    struct node a;
    node_join(&a, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    free(entry_for("spiffe://" TD "/ns/shop/sa/pay", "node-b")); /* not node-a's */

    struct rpc_client_stream *w = rpc_client_stream_open(a.ch, "/weft.ca.v1.CA/WatchNode", 30000);
    Weft__Ca__V1__WatchNodeRequest hello = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
    cr_assert_eq(rpc_client_stream_send(w, &hello.base, T_MS), WEFT_OK);
    Weft__Ca__V1__NodeSnapshot *snap;
    cr_assert_eq(rpc_client_stream_recv(w, &weft__ca__v1__node_snapshot__descriptor, BIG, T_MS,
                                        (ProtobufCMessage **)&snap),
                 WEFT_OK);
    cr_assert_eq(snap->n_entries, 1, "only node-a's entry");
    cr_assert_str_eq(snap->entries[0]->id, ea);
    cr_assert_eq(snap->n_deny_list, 0);
    cr_assert_gt(snap->bundle.len, 0);
    cr_assert_eq(snap->bundle_sequence, 1);
    uint64_t seq = snap->sequence;
    protobuf_c_message_free_unpacked(&snap->base, NULL);

    /* acknowledge the bundle: the CA counts nobody behind */
    hello.bundle_sequence_seen = 1;
    cr_assert_eq(rpc_client_stream_send(w, &hello.base, T_MS), WEFT_OK);

    revoke_id("spiffe://" TD "/ns/shop/sa/cart");
    cr_assert_eq(rpc_client_stream_recv(w, &weft__ca__v1__node_snapshot__descriptor, BIG, T_MS,
                                        (ProtobufCMessage **)&snap),
                 WEFT_OK, "the revocation is pushed");
    cr_assert_gt(snap->sequence, seq);
    cr_assert_eq(snap->n_deny_list, 1);
    cr_assert_eq(snap->deny_list[0]->kind, WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID);
    cr_assert_str_eq(snap->deny_list[0]->value, "spiffe://" TD "/ns/shop/sa/cart");
    cr_assert_gt(snap->deny_list[0]->drop_after, time(NULL));
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    cr_assert_not_null(strstr(mint(&a, ea, NULL), "revoked"), "%s", mint(&a, ea, NULL));

    Weft__Ca__V1__StatusRequest sreq = WEFT__CA__V1__STATUS_REQUEST__INIT;
    Weft__Ca__V1__StatusResponse *sr;
    struct rpc_status st;
    cr_assert_eq(admin("Status", &sreq.base, &weft__ca__v1__status_response__descriptor,
                       (ProtobufCMessage **)&sr, &st),
                 WEFT_OK);
    cr_assert_eq(sr->n_nodes_connected, 1);
    cr_assert_str_eq(sr->nodes_connected[0], "node-a");
    cr_assert_eq(sr->n_nodes_behind_on_bundle, 0, "node-a acknowledged sequence 1");
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    rpc_client_stream_close(w);
    free(ea);
    node_free(&a);
}

Test(ca_daemon, a_restart_keeps_everything)
{
    struct node a;
    node_join(&a, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    char serials[1][41];
    cr_assert_str_eq(mint(&a, ea, serials[0]), "");
    node_free(&a);

    ca_stop(SIGTERM);
    ca_start();
    cr_assert_eq(serials_listed(serials, 1), 1, "the inventory survived");
    /* the same node SVID still works against the restarted CA, and so does the entry */
    struct node b;
    node_join(&b, "node-b");
    node_free(&b);
    Weft__Ca__V1__ListEntriesRequest req = WEFT__CA__V1__LIST_ENTRIES_REQUEST__INIT;
    Weft__Ca__V1__ListEntriesResponse *resp;
    struct rpc_status st;
    cr_assert_eq(admin("ListEntries", &req.base, &weft__ca__v1__list_entries_response__descriptor,
                       (ProtobufCMessage **)&resp, &st),
                 WEFT_OK);
    cr_assert_eq(resp->n_entries, 1);
    cr_assert_str_eq(resp->entries[0]->id, ea);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(ea);
}

Test(ca_daemon, kill_9_during_a_burst_loses_nothing_acknowledged)
{
    struct node a;
    node_join(&a, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    enum { N = 400 };
    static char serials[N][41];
    size_t acked = 0;
    pid_t killer = fork();
    if (killer == 0) {
        usleep(300 * 1000);
        kill(ca.pid, SIGKILL);
        _exit(0);
    }
    for (size_t i = 0; i < N; i++) {
        const char *r = mint(&a, ea, serials[acked]);
        if (r[0] != '\0') {
            break; /* the CA died under us */
        }
        acked++;
    }
    waitpid(killer, NULL, 0);
    int status = ca_proc_reap(&ca);
    cr_assert(WIFSIGNALED(status), "weft-ca was killed, not finished (acked %zu)", acked);
    cr_assert_gt(acked, 0);
    cr_assert_lt(acked, N, "the kill came during the burst");
    cr_log_info("%zu SVIDs acknowledged before kill -9", acked);
    node_free(&a);
    ca_start();
    cr_assert_eq(serials_listed(serials, acked), acked, "every acknowledged SVID is recorded");
    free(ea);
}

Test(ca_daemon, oversize_and_malformed_requests_are_refused_and_nothing_else_changes)
{
    struct node a;
    node_join(&a, "node-a");
    enum { OVER = 65 };
    Weft__Ca__V1__MintRequest reqs[OVER], *ptrs[OVER];
    for (size_t i = 0; i < OVER; i++) {
        weft__ca__v1__mint_request__init(&reqs[i]);
        reqs[i].entry_id = "x";
        ptrs[i] = &reqs[i];
    }
    Weft__Ca__V1__MintWorkloadSVIDsRequest req = WEFT__CA__V1__MINT_WORKLOAD_SVIDS_REQUEST__INIT;
    req.requests = ptrs;
    req.n_requests = OVER;
    ProtobufCMessage *resp;
    struct rpc_status st;
    cr_assert_eq(call(a.ch, "MintWorkloadSVIDs", &req.base,
                      &weft__ca__v1__mint_workload_svids_response__descriptor, &resp, &st),
                 WEFT_EIO);
    cr_assert_eq(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED, "%d %s", st.code, st.details);
    cr_assert_not_null(strstr(st.details, "at most 64"), "%s", st.details);

    /* the node goes on working */
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    cr_assert_str_eq(mint(&a, ea, NULL), "");
    free(ea);
    node_free(&a);
}

Test(ca_daemon, a_key_file_others_can_read_stops_the_start)
{
    ca_stop(SIGTERM);
    char key[128];
    snprintf(key, sizeof(key), "%s/intermediate.key", ca.dir);
    cr_assert_eq(chmod(key, 0644), 0);
    pid_t pid = fork();
    if (pid == 0) {
        char log[128];
        snprintf(log, sizeof(log), "%s/refused.log", ca.dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(CA_PROC_BIN, "weft-ca", "--data-dir", ca.dir, "--listen", ca.listen, "--http", "",
              (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    char log[128];
    snprintf(log, sizeof(log), "%s/refused.log", ca.dir);
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, log, 1 << 20), WEFT_OK);
    cr_assert_not_null(memmem(text, len, "readable by group or others", 27), "%.*s", (int)len,
                       text);
    free(text);
}

Test(ca_daemon, a_revoked_serial_is_reported_in_its_canonical_form)
{
    Weft__Ca__V1__RevokeRequest req = WEFT__CA__V1__REVOKE_REQUEST__INIT;
    req.kind = WEFT__CA__V1__DENY_ITEM__KIND__SERIAL;
    req.value = "0A:1B:ff";
    Weft__Ca__V1__RevokeResponse *resp;
    struct rpc_status st;
    cr_assert_eq(admin("Revoke", &req.base, &weft__ca__v1__revoke_response__descriptor,
                       (ProtobufCMessage **)&resp, &st),
                 WEFT_OK, "%s", st.details);
    cr_assert_str_eq(resp->item->value, "0a1bff");
    cr_assert_gt(resp->item->drop_after, time(NULL) + 24 * 3600 - 60, "a longest SVID lifetime");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}
