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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/mem.h>

#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"
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
    return ca_proc_admin(&ca, method, req, desc, resp, st);
}

static char *token_for(const char *node, int64_t ttl)
{
    char *t = ca_proc_token(&ca, node, ttl);
    cr_assert_not_null(t);
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
static const char *mint_chain(struct node *n, const char *entry, char serial_out[41],
                              STACK_OF(X509) * *chain_out);

static const char *mint(struct node *n, const char *entry, char serial_out[41])
{
    return mint_chain(n, entry, serial_out, NULL);
}

/* mint_chain is mint, keeping the SVID's chain in |*chain_out| (when not NULL). */
static const char *mint_chain(struct node *n, const char *entry, char serial_out[41],
                              STACK_OF(X509) * *chain_out)
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
    if (resp->results[0]->svid != NULL && (serial_out != NULL || chain_out != NULL)) {
        STACK_OF(X509) * chain;
        struct spiffe_why why;
        const Weft__Ca__V1__Svid *s = resp->results[0]->svid;
        cr_assert_eq(spiffe_certs_decode(&chain, s->chain.data, s->chain.len, 4, 0, &why), WEFT_OK);
        const ASN1_INTEGER *serial = X509_get0_serialNumber(sk_X509_value(chain, 0));
        if (serial_out != NULL) {
            serial_out[0] = '\0';
        }
        for (int b = 0; serial_out != NULL && b < serial->length && b < 20; b++) {
            snprintf(serial_out + 2 * b, 3, "%02x", serial->data[b]);
        }
        if (chain_out != NULL) {
            *chain_out = chain;
        } else {
            sk_X509_pop_free(chain, X509_free);
        }
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
    /* the first start published its JWT-SVID key: the bundle is past its first sequence */
    cr_assert_eq(snap->bundle_sequence, 2);
    cr_assert_eq(snap->n_jwt_keys, 1);
    uint64_t seq = snap->sequence;
    protobuf_c_message_free_unpacked(&snap->base, NULL);

    /* acknowledge the bundle: the CA counts nobody behind */
    hello.bundle_sequence_seen = 2;
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
    cr_assert_eq(sr->n_nodes_behind_on_bundle, 0, "node-a acknowledged sequence 2");
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

/* --- rotation -------------------------------------------------------------------------------- */

/* ca_fresh replaces the suite's CA by one made with |extra| flags from its first start (the
 * longest intermediate lifetime a CA has used is remembered). */
static void ca_fresh(const char *const *extra)
{
    ca_proc_cleanup(&ca);
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    for (size_t i = 0; extra[i] != NULL && i < 7; i++) {
        ca.extra[i] = extra[i];
    }
    ca_start();
}

/* certs_in decodes the certificates of the CA's file |name|. */
static STACK_OF(X509) * certs_in(const char *name)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", ca.dir, name);
    uint8_t *pem;
    size_t len;
    STACK_OF(X509) *certs = NULL;
    cr_assert_eq(weft_file_read(&pem, &len, path, 1 << 20), WEFT_OK, "%s", path);
    cr_assert_eq(spiffe_certs_decode(&certs, pem, len, 4, 0, NULL), WEFT_OK, "%s", path);
    free(pem);
    return certs;
}

static Weft__Ca__V1__StatusResponse *ca_status(void)
{
    Weft__Ca__V1__StatusRequest req = WEFT__CA__V1__STATUS_REQUEST__INIT;
    Weft__Ca__V1__StatusResponse *sr;
    struct rpc_status st;
    cr_assert_eq(admin("Status", &req.base, &weft__ca__v1__status_response__descriptor,
                       (ProtobufCMessage **)&sr, &st),
                 WEFT_OK, "%s", st.details);
    return sr;
}

/* verifies_under reports whether |chain| verifies now with |root| as the only authority. */
static bool verifies_under(STACK_OF(X509) * chain, X509 *root)
{
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TD, strlen(TD), NULL), WEFT_OK);
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    cr_assert_eq(spiffe_bundle_add_x509(b, root), WEFT_OK);
    cr_assert_eq(spiffe_bundle_set_put(&set, b), WEFT_OK);
    struct spiffe_id id;
    struct spiffe_why why;
    bool ok = spiffe_x509svid_verify(&id, chain, &set, time(NULL), &why) == WEFT_OK;
    spiffe_bundle_set_cleanup(&set);
    return ok;
}

/* renew_node gives |n| a fresh node SVID and a connection that presents it. */
static void renew_node(struct node *n)
{
    Weft__Ca__V1__RenewNodeRequest req = WEFT__CA__V1__RENEW_NODE_REQUEST__INIT;
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    csr_of(key, &req.csr);
    Weft__Ca__V1__RenewNodeResponse *resp;
    struct rpc_status st;
    cr_assert_eq(call(n->ch, "RenewNode", &req.base, &weft__ca__v1__renew_node_response__descriptor,
                      (ProtobufCMessage **)&resp, &st),
                 WEFT_OK, "%s", st.details);
    OPENSSL_free(req.csr.data);
    sk_X509_pop_free(n->chain, X509_free);
    EVP_PKEY_free(n->key);
    struct spiffe_why why;
    cr_assert_eq(spiffe_certs_decode(&n->chain, resp->node_svid->chain.data,
                                     resp->node_svid->chain.len, 4, 0, &why),
                 WEFT_OK);
    n->key = key;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    grpc_channel_destroy(n->ch);
    n->ch = dial(n->client, n->chain, n->key);
}

static int64_t not_after_of(X509 *x)
{
    int64_t nb, na;
    cr_assert_eq(spiffe_cert_validity(&nb, &na, x), WEFT_OK);
    return na;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(ca_daemon, the_intermediate_rotates_while_a_node_keeps_minting)
{
    static const char *const flags[] = {"--intermediate-ttl", "20s", NULL};
    ca_fresh(flags);
    STACK_OF(X509) *roots = NULL;
    roots = certs_in("bundle.pem");
    cr_assert_eq(sk_X509_num(roots), 1);
    X509 *root = sk_X509_value(roots, 0);

    struct node a;
    node_join(&a, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    /* mint every 300 ms until three intermediates (two rotations) signed, at most 45 s */
    X509 *seen[3] = {NULL, NULL, NULL};
    size_t num_seen = 0, minted = 0;
    double until = mono_now() + 45;
    while (num_seen < 3 && mono_now() < until) {
        if (not_after_of(sk_X509_value(a.chain, 0)) - time(NULL) < 6) {
            renew_node(&a);
        }
        STACK_OF(X509) *chain = NULL;
        const char *e = mint_chain(&a, ea, NULL, &chain);
        cr_assert_str_eq(e, "", "minting goes on across rotations: %s", e);
        minted++;
        cr_assert_eq(sk_X509_num(chain), 2);
        X509 *inter = sk_X509_value(chain, 1);
        cr_assert(verifies_under(chain, root), "every SVID chains to the unchanged root");
        cr_assert_leq(not_after_of(sk_X509_value(chain, 0)), not_after_of(inter),
                      "no SVID outlives its intermediate");
        if (num_seen == 0 || X509_cmp(seen[num_seen - 1], inter) != 0) {
            for (size_t i = 0; i < num_seen; i++) {
                cr_assert_neq(X509_cmp(seen[i], inter), 0, "a retired intermediate came back");
            }
            seen[num_seen++] = X509_up_ref(inter) ? inter : NULL;
        }
        sk_X509_pop_free(chain, X509_free);
        usleep(300 * 1000);
    }
    cr_assert_eq(num_seen, 3, "two rotations within 45 s (%zu SVIDs minted)", minted);
    /* each successor outlives its predecessor; the bundle never changed (its JWT-SVID key, on
     * a window of at least twice the 5 min token lifetime, did not rotate either) */
    cr_assert_gt(not_after_of(seen[1]), not_after_of(seen[0]));
    cr_assert_gt(not_after_of(seen[2]), not_after_of(seen[1]));
    Weft__Ca__V1__StatusResponse *sr = ca_status();
    cr_assert_eq(sr->bundle_sequence, 2);
    cr_assert_str_eq(sr->root_rotation_phase, "IDLE");
    cr_assert_not_null(strstr(sr->intermediate_rotation, "next step"), "%s",
                       sr->intermediate_rotation);
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    for (size_t i = 0; i < num_seen; i++) {
        X509_free(seen[i]);
    }
    sk_X509_pop_free(roots, X509_free);
    free(ea);
    node_free(&a);
}

/* struct agent is a node with its WatchNode stream: it acknowledges what it is told to. */
struct agent {
    struct node n;
    struct rpc_client_stream *w;
};

static void agent_start(struct agent *g, const char *name)
{
    node_join(&g->n, name);
    g->w = rpc_client_stream_open(g->n.ch, "/weft.ca.v1.CA/WatchNode", 120000);
    Weft__Ca__V1__WatchNodeRequest hello = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
    cr_assert_eq(rpc_client_stream_send(g->w, &hello.base, T_MS), WEFT_OK);
}

/* agent_wait reads snapshots until one has bundle sequence |seq|; returns its roots. */
static STACK_OF(X509) * agent_wait(struct agent *g, uint64_t seq)
{
    for (int i = 0; i < 50; i++) {
        Weft__Ca__V1__NodeSnapshot *snap;
        cr_assert_eq(rpc_client_stream_recv(g->w, &weft__ca__v1__node_snapshot__descriptor, BIG,
                                            T_MS, (ProtobufCMessage **)&snap),
                     WEFT_OK, "a snapshot with bundle sequence %llu", (unsigned long long)seq);
        if (snap->bundle_sequence == seq) {
            STACK_OF(X509) *roots = NULL;
            cr_assert_eq(
                spiffe_certs_decode(&roots, snap->bundle.data, snap->bundle.len, 4, 0, NULL),
                WEFT_OK);
            protobuf_c_message_free_unpacked(&snap->base, NULL);
            return roots;
        }
        protobuf_c_message_free_unpacked(&snap->base, NULL);
    }
    cr_assert_fail("no snapshot with bundle sequence %llu", (unsigned long long)seq);
    return NULL;
}

static void agent_ack(struct agent *g, uint64_t seq)
{
    Weft__Ca__V1__WatchNodeRequest ack = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
    ack.bundle_sequence_seen = seq;
    cr_assert_eq(rpc_client_stream_send(g->w, &ack.base, T_MS), WEFT_OK);
}

static void agent_stop(struct agent *g)
{
    rpc_client_stream_close(g->w);
    node_free(&g->n);
}

/* wait_phase polls status until the root rotation is in |phase|, at most |seconds|. */
static void wait_phase(const char *phase, double seconds)
{
    double until = mono_now() + seconds;
    for (;;) {
        Weft__Ca__V1__StatusResponse *sr = ca_status();
        bool there = strcmp(sr->root_rotation_phase, phase) == 0;
        char was[64];
        snprintf(was, sizeof(was), "%s", sr->root_rotation_phase);
        protobuf_c_message_free_unpacked(&sr->base, NULL);
        if (there) {
            return;
        }
        cr_assert_lt(mono_now(), until, "still %s, not %s, after %.0f s", was, phase, seconds);
        usleep(200 * 1000);
    }
}

static int rotate_root_call(struct rpc_status *st)
{
    Weft__Ca__V1__RotateRootRequest req = WEFT__CA__V1__ROTATE_ROOT_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int rc =
        admin("RotateRoot", &req.base, &weft__ca__v1__rotate_root_response__descriptor, &resp, st);
    if (resp != NULL) {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return rc;
}

static size_t file_size(const char *name)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", ca.dir, name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return (size_t)st.st_size;
}

Test(ca_daemon, root_rotation_completes_with_two_agents_acknowledging)
{
    static const char *const flags[] = {"--intermediate-ttl", "20s", "--reconnect-grace", "1s",
                                        NULL};
    ca_fresh(flags);
    struct agent a, b;
    agent_start(&a, "node-a");
    agent_start(&b, "node-b");
    /* sequence 1 was the bundle before the first JWT-SVID key; the agents never saw it */
    STACK_OF(X509) *old_roots = agent_wait(&a, 2);
    sk_X509_pop_free(agent_wait(&b, 2), X509_free);
    agent_ack(&a, 2);
    agent_ack(&b, 2);
    X509 *old_root = sk_X509_value(old_roots, 0);
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    usleep(1200 * 1000); /* the reconnect grace */

    /* 1. the new root joins the bundle: both agents are told, and are behind until they ack */
    struct rpc_status st;
    cr_assert_eq(rotate_root_call(&st), WEFT_OK, "%s", st.details);
    cr_assert_neq(rotate_root_call(&st), WEFT_OK, "one rotation at a time");
    cr_assert_eq(st.code, GRPC_STATUS_FAILED_PRECONDITION, "%s", st.details);
    cr_assert_not_null(strstr(st.details, "WAIT_ACKS"), "%s", st.details);
    STACK_OF(X509) *both = agent_wait(&a, 3);
    cr_assert_eq(sk_X509_num(both), 2, "old and new root side by side");
    X509 *new_root = X509_cmp(sk_X509_value(both, 0), old_root) == 0 ? sk_X509_value(both, 1)
                                                                     : sk_X509_value(both, 0);
    sk_X509_pop_free(agent_wait(&b, 3), X509_free);
    agent_ack(&a, 3);
    Weft__Ca__V1__StatusResponse *sr = ca_status();
    for (int i = 0; i < 20 && sr->n_nodes_behind_on_bundle != 1; i++) {
        protobuf_c_message_free_unpacked(&sr->base, NULL);
        usleep(100 * 1000);
        sr = ca_status();
    }
    cr_assert_str_eq(sr->root_rotation_phase, "WAIT_ACKS");
    cr_assert_eq(sr->n_nodes_behind_on_bundle, 1);
    cr_assert_str_eq(sr->nodes_behind_on_bundle[0], "node-b", "status names who holds it up");
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    STACK_OF(X509) *chain = NULL;
    cr_assert_str_eq(mint_chain(&a.n, ea, NULL, &chain), "");
    cr_assert(verifies_under(chain, old_root), "still signing under the old root");
    sk_X509_pop_free(chain, X509_free);

    /* 2. the last ack switches signing to the new root */
    agent_ack(&b, 3);
    wait_phase("WAIT_OLD_SVIDS", 10);
    cr_assert_str_eq(mint_chain(&a.n, ea, NULL, &chain), "");
    cr_assert(verifies_under(chain, new_root) && !verifies_under(chain, old_root));
    sk_X509_pop_free(chain, X509_free);
    cr_assert_gt(file_size("root-2.key"), 0, "the new root's key is kept, in the second slot");

    /* 3. a restart in the middle goes on from where it was (its new JWT-SVID key is one more
     * bundle change) */
    agent_stop(&a);
    agent_stop(&b);
    ca_stop(SIGTERM);
    ca_start();
    sr = ca_status();
    /* WAIT_OLD_SVIDS lasts 20 s from the switch: on a slow machine it may just have ended */
    bool waiting = strcmp(sr->root_rotation_phase, "WAIT_OLD_SVIDS") == 0;
    cr_assert(waiting || strcmp(sr->root_rotation_phase, "IDLE") == 0, "%s",
              sr->root_rotation_phase);
    cr_assert_eq(sr->bundle_sequence, waiting ? 4 : 5);
    protobuf_c_message_free_unpacked(&sr->base, NULL);

    /* 4. once no SVID under the old root can be valid (20 s here), the old root goes */
    wait_phase("IDLE", 40);
    sr = ca_status();
    cr_assert_eq(sr->bundle_sequence, 5);
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    cr_assert_eq(file_size("root.key"), 0, "the old root's key is erased");
    STACK_OF(X509) *on_disk = NULL;
    on_disk = certs_in("bundle.pem");
    cr_assert_eq(sk_X509_num(on_disk), 1);
    cr_assert_eq(X509_cmp(sk_X509_value(on_disk, 0), new_root), 0, "bundle.pem: the new root");
    /* a new agent bootstraps from the new bundle.pem and is served under the new root */
    struct agent c;
    agent_start(&c, "node-c");
    STACK_OF(X509) *now_roots = agent_wait(&c, 5);
    cr_assert_eq(sk_X509_num(now_roots), 1);
    cr_assert(verifies_under(c.n.chain, new_root), "node SVIDs under the new root");
    agent_stop(&c);
    sk_X509_pop_free(now_roots, X509_free);
    sk_X509_pop_free(on_disk, X509_free);
    sk_X509_pop_free(both, X509_free);
    sk_X509_pop_free(old_roots, X509_free);
    free(ea);
}

Test(ca_daemon, a_dead_signer_stops_the_ca_with_exit_1)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/ca.log", ca.dir);
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, path, 1 << 20), WEFT_OK);
    const char *at = memmem(text, len, "signer_pid=", 11);
    cr_assert_not_null(at, "the CA logs its signer's pid");
    int signer = atoi(at + 11);
    free(text);
    cr_assert_gt(signer, 1);
    cr_assert_eq(kill(signer, SIGKILL), 0);
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 100 && got == 0; i++) { /* at most 10 s */
        got = waitpid(ca.pid, &status, WNOHANG);
        usleep(100 * 1000);
    }
    cr_assert_eq(got, ca.pid, "the CA stops when its signer dies");
    ca.pid = 0; /* reaped */
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "exit 1 for the supervisor");
    cr_assert_eq(weft_file_read(&text, &len, path, 1 << 20), WEFT_OK);
    cr_assert_not_null(memmem(text, len, "the signer process died", 23));
    free(text);
}

Test(ca_daemon, an_offline_root_is_replaced_by_a_root_rotation)
{
    /* the root's key leaves the data directory: the CA signs with the intermediate's files */
    ca_stop(SIGTERM);
    char path[128];
    snprintf(path, sizeof(path), "%s/root.key", ca.dir);
    cr_assert_eq(truncate(path, 0), 0);
    ca.extra[0] = "--reconnect-grace";
    ca.extra[1] = "1s";
    ca_start();
    Weft__Ca__V1__StatusResponse *sr = ca_status();
    cr_assert_not_null(strstr(sr->intermediate_rotation, "offline"), "%s",
                       sr->intermediate_rotation);
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    struct node a;
    node_join(&a, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    STACK_OF(X509) *chain = NULL;
    cr_assert_str_eq(mint_chain(&a, ea, NULL, &chain), "");
    STACK_OF(X509) *files = certs_in("intermediate.pem");
    cr_assert_eq(X509_cmp(sk_X509_value(chain, 1), sk_X509_value(files, 0)), 0,
                 "signed by the intermediate from the files");
    sk_X509_pop_free(chain, X509_free);

    /* no agent is connected, so the rotation switches at once, to a root whose key it keeps */
    usleep(1200 * 1000); /* the reconnect grace */
    sr = ca_status();
    uint64_t before = sr->bundle_sequence;
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    struct rpc_status st;
    cr_assert_eq(rotate_root_call(&st), WEFT_OK, "%s", st.details);
    wait_phase("WAIT_OLD_SVIDS", 10);
    sr = ca_status();
    cr_assert_eq(sr->bundle_sequence, before + 1, "the new root");
    cr_assert_not_null(strstr(sr->intermediate_rotation, "next step"), "it rotates now: %s",
                       sr->intermediate_rotation);
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    cr_assert_str_eq(mint_chain(&a, ea, NULL, &chain), "");
    cr_assert_neq(X509_cmp(sk_X509_value(chain, 1), sk_X509_value(files, 0)), 0);
    cr_assert_gt(file_size("root-2.key"), 0);
    cr_assert_eq(file_size("root.key"), 0, "the offline root's slot stays empty");
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(files, X509_free);
    free(ea);
    node_free(&a);
}

Test(ca_daemon, a_node_selector_no_node_could_report_is_refused_with_the_reason)
{
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char *sel = "unix:uid:1001";
    e.spiffe_id = "spiffe://" TD "/ns/shop/sa/cart";
    e.node_selector = "k8s:node-label:pool:blue";
    e.selectors = &sel;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    ProtobufCMessage *resp = NULL;
    struct rpc_status st;
    cr_assert_neq(admin("CreateEntry", &req.base, &weft__ca__v1__create_entry_response__descriptor,
                        &resp, &st),
                  WEFT_OK, "stored, it would never match a node");
    /* this CA attests nodes by join token only, which report no node selector */
    cr_assert_eq(st.code, GRPC_STATUS_FAILED_PRECONDITION);
    cr_assert_not_null(strstr(st.details, "no --psat-issuer"), "%s", st.details);
}

/* --- JWT-SVIDs ----------------------------------------------------------------------------- */

/* mint_jwt asks for a JWT-SVID of |entry|; returns the gRPC status (|*resp| set on OK). */
static int mint_jwt(struct node *n, const char *entry, const char *const *aud, size_t num_aud,
                    Weft__Ca__V1__MintJWTSVIDResponse **resp, struct rpc_status *st)
{
    Weft__Ca__V1__MintJWTSVIDRequest req = WEFT__CA__V1__MINT_JWTSVIDREQUEST__INIT;
    req.entry_id = (char *)entry;
    req.audience = (char **)aud;
    req.n_audience = num_aud;
    *resp = NULL;
    if (call(n->ch, "MintJWTSVID", &req.base, &weft__ca__v1__mint_jwtsvidresponse__descriptor,
             (ProtobufCMessage **)resp, st) != WEFT_OK) {
        return st->code;
    }
    return GRPC_STATUS_OK;
}

/* jwt_token mints a token of |entry| for audience "db" and returns it (malloc'd). */
static char *jwt_token(struct node *n, const char *entry)
{
    static const char *const aud[] = {"db"};
    Weft__Ca__V1__MintJWTSVIDResponse *resp;
    struct rpc_status st;
    cr_assert_eq(mint_jwt(n, entry, aud, 1, &resp, &st), GRPC_STATUS_OK, "%s", st.details);
    char *token = strdup(resp->token);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return token;
}

/* jwt_set builds what a verifier holds from a snapshot's jwt_keys (all of them, or only the
 * one of |only_kid|): the trust domain's bundle with their jwt-svid JWKs. Each key's kid must
 * be the one its public key gives. */
static void jwt_set(struct spiffe_bundle_set *set, const Weft__Ca__V1__NodeSnapshot *snap,
                    const char *only_kid)
{
    spiffe_bundle_set_init(set);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TD, strlen(TD), NULL), WEFT_OK);
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    for (size_t i = 0; i < snap->n_jwt_keys; i++) {
        const Weft__Ca__V1__JwtKey *k = snap->jwt_keys[i];
        CBS cbs;
        CBS_init(&cbs, k->public_key.data, k->public_key.len);
        EVP_PKEY *pub = EVP_parse_public_key(&cbs);
        cr_assert_not_null(pub, "key %zu is a DER SubjectPublicKeyInfo", i);
        char kid[SPIFFE_JWT_KID_LEN + 1];
        cr_assert_eq(spiffe_jwt_kid(pub, kid), WEFT_OK);
        cr_assert_str_eq(k->kid, kid, "key %zu is named by its public key", i);
        if (only_kid == NULL || strcmp(kid, only_kid) == 0) {
            cr_assert_eq(json_array_append_new(b->other_keys, spiffe_jwt_jwk(pub, kid)), 0);
        }
        EVP_PKEY_free(pub);
    }
    cr_assert_eq(spiffe_bundle_set_put(set, b), WEFT_OK);
}

/* jwt_valid reports whether |token| validates for "db" now against |snap|'s keys (or the one
 * of |only_kid|). */
static bool jwt_valid(const char *token, const Weft__Ca__V1__NodeSnapshot *snap,
                      const char *only_kid, const char *want_sub)
{
    struct spiffe_bundle_set set;
    jwt_set(&set, snap, only_kid);
    struct spiffe_jwt_svid svid;
    struct spiffe_why why;
    bool ok =
        spiffe_jwt_validate(&svid, token, strlen(token), "db", &set, time(NULL), &why) == WEFT_OK;
    if (ok) {
        cr_assert_str_eq(svid.sub.str, want_sub);
        spiffe_jwt_svid_cleanup(&svid);
    }
    spiffe_bundle_set_cleanup(&set);
    return ok;
}

/* agent_snapshot reads the next snapshot and acknowledges its bundle. */
static Weft__Ca__V1__NodeSnapshot *agent_snapshot(struct agent *g, int timeout_ms)
{
    Weft__Ca__V1__NodeSnapshot *snap = NULL;
    cr_assert_eq(rpc_client_stream_recv(g->w, &weft__ca__v1__node_snapshot__descriptor, BIG,
                                        timeout_ms, (ProtobufCMessage **)&snap),
                 WEFT_OK, "a snapshot within %d ms", timeout_ms);
    agent_ack(g, snap->bundle_sequence);
    return snap;
}

/* agent_poll keeps |g| an agent in good standing with a CA whose intermediates (and so node
 * SVIDs) live 20 s: it renews the node SVID when it has less than 8 s left, and watches again
 * with it. Returns the next snapshot (acknowledged), or NULL when none came within 1 s. */
static Weft__Ca__V1__NodeSnapshot *agent_poll(struct agent *g)
{
    if (not_after_of(sk_X509_value(g->n.chain, 0)) - time(NULL) < 8) {
        rpc_client_stream_close(g->w);
        renew_node(&g->n);
        g->w = rpc_client_stream_open(g->n.ch, "/weft.ca.v1.CA/WatchNode", 120000);
        Weft__Ca__V1__WatchNodeRequest hello = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
        cr_assert_eq(rpc_client_stream_send(g->w, &hello.base, T_MS), WEFT_OK);
    }
    Weft__Ca__V1__NodeSnapshot *snap = NULL;
    int rc = rpc_client_stream_recv(g->w, &weft__ca__v1__node_snapshot__descriptor, BIG, 1000,
                                    (ProtobufCMessage **)&snap);
    if (rc == WEFT_EAGAIN) {
        return NULL;
    }
    cr_assert_eq(rc, WEFT_OK, "the watch goes on");
    agent_ack(g, snap->bundle_sequence);
    return snap;
}

static bool log_has(const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/ca.log", ca.dir);
    uint8_t *log;
    size_t len;
    cr_assert_eq(weft_file_read(&log, &len, path, 16 << 20), WEFT_OK);
    bool found = memmem(log, len, text, strlen(text)) != NULL;
    free(log);
    return found;
}

Test(ca_daemon, a_node_gets_jwt_svids_of_its_entries_that_validate_against_the_snapshot_keys)
{
    struct agent g;
    agent_start(&g, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    char *eb = entry_for("spiffe://" TD "/ns/shop/sa/pay", "node-b");
    Weft__Ca__V1__NodeSnapshot *snap = agent_snapshot(&g, T_MS);
    cr_assert_eq(snap->n_jwt_keys, 1, "the key signing now");
    cr_assert_eq(strlen(snap->jwt_keys[0]->kid), SPIFFE_JWT_KID_LEN);
    cr_assert_gt(snap->jwt_keys[0]->not_after, time(NULL) + 300);

    static const char *const aud[] = {"spiffe://" TD "/ns/shop/sa/db", "db"};
    Weft__Ca__V1__MintJWTSVIDResponse *resp;
    struct rpc_status st;
    int64_t before = time(NULL);
    cr_assert_eq(mint_jwt(&g.n, ea, aud, 2, &resp, &st), GRPC_STATUS_OK, "%s", st.details);
    cr_assert_str_eq(resp->spiffe_id, "spiffe://" TD "/ns/shop/sa/cart");
    cr_assert(resp->expires_at >= before + 300 && resp->expires_at <= time(NULL) + 300,
              "the default lifetime, 5 min: %lld", (long long)resp->expires_at);
    cr_assert(
        jwt_valid(resp->token, snap, snap->jwt_keys[0]->kid, "spiffe://" TD "/ns/shop/sa/cart"),
        "signed by the first of jwt_keys");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    cr_assert(log_has("msg=\"issued jwt-svid\""), "one audit line per token");

    /* another node's entry is refused, and reads as no entry */
    cr_assert_eq(mint_jwt(&g.n, eb, aud, 1, &resp, &st), GRPC_STATUS_PERMISSION_DENIED, "%s",
                 st.details);
    cr_assert_not_null(strstr(st.details, "no entry"), "%s", st.details);

    /* audiences: none, too many, too long */
    cr_assert_eq(mint_jwt(&g.n, ea, aud, 0, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT, "%s",
                 st.details);
    cr_assert_not_null(strstr(st.details, "1 to 16 audiences"), "%s", st.details);
    const char *many[17];
    for (size_t i = 0; i < 17; i++) {
        many[i] = "db";
    }
    cr_assert_eq(mint_jwt(&g.n, ea, many, 17, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    static char long_aud[258];
    memset(long_aud, 'a', 257);
    const char *too_long[] = {long_aud};
    cr_assert_eq(mint_jwt(&g.n, ea, too_long, 1, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(st.details, "257 bytes"), "%s", st.details);

    /* no certificate, no token; a revoked ID, no token */
    struct node anon = {.client = g.n.client};
    anon.ch = dial(g.n.client, NULL, NULL);
    cr_assert_eq(mint_jwt(&anon, ea, aud, 1, &resp, &st), GRPC_STATUS_UNAUTHENTICATED);
    grpc_channel_destroy(anon.ch);
    revoke_id("spiffe://" TD "/ns/shop/sa/cart");
    cr_assert_eq(mint_jwt(&g.n, ea, aud, 1, &resp, &st), GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_not_null(strstr(st.details, "revoked"), "%s", st.details);

    /* bundle.json, the operators' copy, publishes the same key */
    char path[160];
    snprintf(path, sizeof(path), "%s/bundle.json", ca.dir);
    uint8_t *doc;
    size_t len;
    cr_assert_eq(weft_file_read(&doc, &len, path, 1 << 20), WEFT_OK);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TD, strlen(TD), NULL), WEFT_OK);
    struct spiffe_bundle *b = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_from_json(&b, &td, doc, len, &why), WEFT_OK, "%s", why.msg);
    cr_assert_eq(json_array_size(b->other_keys), 1);
    json_t *jwk = json_array_get(b->other_keys, 0);
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "use")), "jwt-svid");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "kid")), snap->jwt_keys[0]->kid);
    cr_assert(b->has_sequence && b->sequence == snap->bundle_sequence, "its sequence %llu",
              (unsigned long long)b->sequence);
    spiffe_bundle_free(b);
    free(doc);
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    agent_stop(&g);
    free(ea);
    free(eb);
}

/* has_kid: |snap| publishes |kid|; its index, or -1. */
static int has_kid(const Weft__Ca__V1__NodeSnapshot *snap, const char *kid)
{
    for (size_t i = 0; i < snap->n_jwt_keys; i++) {
        if (strcmp(snap->jwt_keys[i]->kid, kid) == 0) {
            return (int)i;
        }
    }
    return -1;
}

Test(ca_daemon, the_jwt_key_is_published_before_it_signs_and_until_its_last_token_expires)
{
    /* 30 s tokens: a key's window is 60 s (twice that, more than the 20 s intermediate); the
     * next key is made and published at 24 s, signs from 24 + 21 s (not at 30 s: a key is
     * published at least 21 s before it signs), and the first one goes at 45 + 30 s */
    static const char *const flags[] = {"--intermediate-ttl", "20s", "--jwt-ttl", "30s", NULL};
    ca_fresh(flags);
    double t0 = mono_now();
    struct agent g;
    agent_start(&g, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    const char *sub = "spiffe://" TD "/ns/shop/sa/cart";
    Weft__Ca__V1__NodeSnapshot *snap = agent_snapshot(&g, T_MS);
    cr_assert_eq(snap->n_jwt_keys, 1);
    char first[SPIFFE_JWT_KID_LEN + 1], next[SPIFFE_JWT_KID_LEN + 1] = "";
    snprintf(first, sizeof(first), "%s", snap->jwt_keys[0]->kid);
    char *first_token = jwt_token(&g.n, ea);
    cr_assert(jwt_valid(first_token, snap, first, sub));
    uint64_t seq = snap->bundle_sequence;
    int64_t retired_until = 0;
    double published_at = 0;
    enum { PREPARED, ACTIVE, PRUNED } stage = PREPARED;
    for (;;) {
        protobuf_c_message_free_unpacked(&snap->base, NULL);
        do {
            cr_assert_lt(mono_now() - t0, 85, "the key went through its life in 85 s");
            snap = agent_poll(&g);
        } while (snap == NULL);
        if (snap->bundle_sequence == seq) {
            continue; /* another change, or the snapshot of a new watch */
        }
        cr_assert_gt(snap->bundle_sequence, seq, "a key change is a new bundle");
        seq = snap->bundle_sequence;
        char *token = jwt_token(&g.n, ea);
        if (stage == PREPARED) {
            /* the next key is published, the first still signs */
            cr_assert_eq(snap->n_jwt_keys, 2);
            cr_assert_str_eq(snap->jwt_keys[0]->kid, first, "the signing key first");
            snprintf(next, sizeof(next), "%s", snap->jwt_keys[1]->kid);
            cr_assert(jwt_valid(token, snap, first, sub), "still signed by the first key");
            cr_assert(!jwt_valid(token, snap, next, sub));
            published_at = mono_now();
            cr_log_info("next JWT key published %.1f s after start", published_at - t0);
            free(first_token);
            first_token = token; /* among the last the first key signs: valid 30 s from now */
            token = NULL;
            stage = ACTIVE;
        } else if (stage == ACTIVE) {
            /* the next key signs; the first stays published as long as its tokens live */
            cr_assert_eq(snap->n_jwt_keys, 2);
            cr_assert_str_eq(snap->jwt_keys[0]->kid, next, "the successor signs now");
            cr_assert_eq(has_kid(snap, first), 1);
            retired_until = snap->jwt_keys[1]->not_after;
            cr_assert(retired_until > time(NULL) && retired_until <= time(NULL) + 30,
                      "retired until its last token expires: %lld",
                      (long long)(retired_until - time(NULL)));
            cr_assert(jwt_valid(token, snap, next, sub), "signed by the successor");
            cr_assert(jwt_valid(first_token, snap, NULL, sub), "the first key's token is valid");
            cr_assert_geq(mono_now() - published_at, 20.0,
                          "published %.1f s before it signs; at least 21 s wanted",
                          mono_now() - published_at);
            cr_log_info("next JWT key signs %.1f s after start", mono_now() - t0);
            stage = PRUNED;
        } else if (has_kid(snap, first) >= 0) {
            /* meanwhile the successor's own successor may come (at 48 s and 54 s): the first
             * key stays, unchanged, until its time */
            const Weft__Ca__V1__JwtKey *k = snap->jwt_keys[has_kid(snap, first)];
            cr_assert_eq(k->not_after, retired_until);
            cr_assert_lt(time(NULL), retired_until + 1);
            cr_assert(jwt_valid(token, snap, snap->jwt_keys[0]->kid, sub),
                      "always signed by the first of jwt_keys");
        } else {
            /* the first key goes once every token it signed has expired, not a second early */
            cr_assert_geq(time(NULL), retired_until);
            cr_assert(jwt_valid(token, snap, snap->jwt_keys[0]->kid, sub));
            cr_assert(!jwt_valid(first_token, snap, NULL, sub), "expired anyway");
            cr_log_info("first JWT key pruned %.1f s after start", mono_now() - t0);
            free(token);
            break;
        }
        free(token);
    }
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    free(first_token);
    agent_stop(&g);
    free(ea);
}

Test(ca_daemon, a_restart_keeps_publishing_the_keys_whose_tokens_may_be_valid)
{
    struct agent g;
    agent_start(&g, "node-a");
    char *ea = entry_for("spiffe://" TD "/ns/shop/sa/cart", "node-a");
    const char *sub = "spiffe://" TD "/ns/shop/sa/cart";
    Weft__Ca__V1__NodeSnapshot *snap = agent_snapshot(&g, T_MS);
    char old_kid[SPIFFE_JWT_KID_LEN + 1];
    snprintf(old_kid, sizeof(old_kid), "%s", snap->jwt_keys[0]->kid);
    uint64_t seq = snap->bundle_sequence;
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    char *old_token = jwt_token(&g.n, ea);
    rpc_client_stream_close(g.w);

    ca_stop(SIGTERM);
    ca_start();
    int64_t restarted = time(NULL);
    /* the node reconnects with the SVID it has, and is told at once */
    grpc_channel_destroy(g.n.ch);
    g.n.ch = dial(g.n.client, g.n.chain, g.n.key);
    double t = mono_now();
    g.w = rpc_client_stream_open(g.n.ch, "/weft.ca.v1.CA/WatchNode", 120000);
    Weft__Ca__V1__WatchNodeRequest hello = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
    cr_assert_eq(rpc_client_stream_send(g.w, &hello.base, T_MS), WEFT_OK);
    snap = agent_snapshot(&g, T_MS);
    cr_log_info("a reconnecting node holds the new JWT key %.3f s after it dialled",
                mono_now() - t);
    cr_assert_gt(snap->bundle_sequence, seq, "a new key: a new bundle");
    cr_assert_eq(snap->n_jwt_keys, 2, "the new key and the previous process's");
    cr_assert_str_neq(snap->jwt_keys[0]->kid, old_kid, "a fresh key signs");
    cr_assert_str_eq(snap->jwt_keys[1]->kid, old_kid);
    cr_assert(snap->jwt_keys[1]->not_after > time(NULL) &&
                  snap->jwt_keys[1]->not_after <= restarted + 300,
              "kept one token lifetime from the restart, no longer");
    cr_assert(jwt_valid(old_token, snap, NULL, sub), "a token of the previous process validates");
    char *new_token = jwt_token(&g.n, ea);
    cr_assert(jwt_valid(new_token, snap, snap->jwt_keys[0]->kid, sub));
    protobuf_c_message_free_unpacked(&snap->base, NULL);
    free(old_token);
    free(new_token);
    agent_stop(&g);
    free(ea);
}

/* --- the policy directory, read as the user the CA runs as ---------------------------------- */

/* reader_is is how weft-ca names the user it reads the policy as: nobody when started as root,
 * else whoever runs the test (it keeps its user then). Mode 0 shuts either out. */
static const char *reader_is(void)
{
    return geteuid() == 0 ? "reading as user nobody (uid 65534)" : "reading as user ";
}

static void write_policy(const char *path)
{
    static const char text[] = "apiVersion: security.weft.dev/v1alpha1\n"
                               "kind: AuthorizationPolicy\n"
                               "metadata: {name: shop, namespace: shop}\n"
                               "spec: {action: ALLOW}\n";
    cr_assert_eq(weft_file_write_atomic(path, text, sizeof(text) - 1, 0644), WEFT_OK);
}

/* ca_run_to_exit runs weft-ca on the suite's directory with --policy-dir |policy_dir|, its
 * stderr in |log|, and returns its wait status: it must exit within 20 s. */
static int ca_run_to_exit(const char *policy_dir, const char *log)
{
    pid_t parent = getpid(), pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(125);
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        char *argv[] = {
            "weft-ca", "--data-dir", ca.dir, "--self-signed", "--trust-domain",   TD,  "--listen",
            ca.listen, "--http",     "",     "--policy-dir",  (char *)policy_dir, NULL};
        execv(CA_PROC_BIN, argv);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return status;
        }
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_fail("weft-ca still runs with the unreadable --policy-dir %s", policy_dir);
    return -1;
}

static void assert_log_has(const char *log, const char *want)
{
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, log, 1 << 20), WEFT_OK, "%s", log);
    bool found = memmem(text, len, want, strlen(want)) != NULL;
    cr_assert(found, "no \"%s\" in %s:\n%.*s", want, log, (int)len, (const char *)text);
    free(text);
}

/* policy_status reads the policy version in force and the latest refusal ("" when none). */
static uint64_t policy_status(char *out_err, size_t out_err_len)
{
    Weft__Ca__V1__StatusResponse *sr = ca_status();
    uint64_t v = sr->policy_version;
    snprintf(out_err, out_err_len, "%s", sr->policy_error != NULL ? sr->policy_error : "");
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    return v;
}

Test(ca_daemon, a_policy_dir_it_cannot_read_stops_the_start)
{
    ca_stop(SIGTERM);
    char outer[128], pdir[160], file[200], log[160], want[600];
    cr_assert_eq(chmod(ca.dir, 0755), 0);
    snprintf(outer, sizeof(outer), "%s/outer", ca.dir);
    snprintf(pdir, sizeof(pdir), "%s/policy", outer);
    snprintf(file, sizeof(file), "%s/shop.yaml", pdir);
    snprintf(log, sizeof(log), "%s/start.log", ca.dir);
    cr_assert_eq(mkdir(outer, 0755), 0);
    cr_assert_eq(mkdir(pdir, 0755), 0);
    write_policy(file);

    /* inside a directory it may not search: once taken as "not there yet", an empty set */
    cr_assert_eq(chmod(outer, 0), 0);
    int status = ca_run_to_exit(pdir, log);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "wait status %d", status);
    snprintf(want, sizeof(want),
             "weft-ca: --policy-dir: cannot read %s: Permission denied (EACCES), %s", pdir,
             reader_is());
    assert_log_has(log, want);

    /* a file in it that it may not read */
    cr_assert_eq(chmod(outer, 0755), 0);
    cr_assert_eq(chmod(file, 0), 0);
    status = ca_run_to_exit(pdir, log);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "wait status %d", status);
    snprintf(want, sizeof(want),
             "weft-ca: --policy-dir: cannot read %s: Permission denied (EACCES), %s", file,
             reader_is());
    assert_log_has(log, want);

    /* readable: it starts and serves the policy */
    cr_assert_eq(chmod(file, 0644), 0);
    ca.extra[0] = "--policy-dir";
    ca.extra[1] = pdir;
    ca_start();
    char err[1024];
    uint64_t v = 0;
    for (double until = mono_now() + 10;
         (v = policy_status(err, sizeof(err))) != 1 && mono_now() < until;) {
        usleep(100 * 1000);
    }
    cr_assert_eq(v, 1, "%s", err);
    cr_assert_str_eq(err, "");
}

Test(ca_daemon, a_policy_dir_it_can_no_longer_read_keeps_the_policy_in_force)
{
    ca_proc_cleanup(&ca);
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    char pdir[160], file[200], log[160], err[1024];
    cr_assert_eq(chmod(ca.dir, 0755), 0); /* the CA reads the policy as nobody */
    snprintf(pdir, sizeof(pdir), "%s/policy", ca.dir);
    snprintf(file, sizeof(file), "%s/shop.yaml", pdir);
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    cr_assert_eq(mkdir(pdir, 0755), 0);
    write_policy(file);
    ca.extra[0] = "--policy-dir";
    ca.extra[1] = pdir;
    ca_start();
    uint64_t v = 0;
    for (double until = mono_now() + 10;
         (v = policy_status(err, sizeof(err))) != 1 && mono_now() < until;) {
        usleep(100 * 1000);
    }
    cr_assert_eq(v, 1, "%s", err);

    /* unreadable now: refused with a warning, version 1 stays in force */
    cr_assert_eq(chmod(pdir, 0), 0);
    for (double until = mono_now() + 10; strstr(err, "EACCES") == NULL && mono_now() < until;) {
        usleep(100 * 1000);
        v = policy_status(err, sizeof(err));
    }
    cr_assert_eq(v, 1, "the policy in force stays");
    char want[600];
    snprintf(want, sizeof(want), "cannot read %s: Permission denied (EACCES), %s", pdir,
             reader_is());
    cr_assert_not_null(strstr(err, want), "%s", err);
    cr_assert_not_null(strstr(err, "; keeping version 1"), "%s", err);
    assert_log_has(log,
                   "level=warn msg=\"policy directory unreadable; keeping the policy in force\"");
    assert_log_has(log, "kept_version=1");

    /* readable again: loaded again */
    cr_assert_eq(chmod(pdir, 0755), 0);
    for (double until = mono_now() + 10;
         (v = policy_status(err, sizeof(err))) != 2 && mono_now() < until;) {
        usleep(100 * 1000);
    }
    cr_assert_eq(v, 2, "%s", err);
    cr_assert_str_eq(err, "");
}
