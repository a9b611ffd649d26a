/* ca_rpc_bench: workload SVIDs per second through the whole path of a real weft-ca process:
 * MintWorkloadSVIDs over TLS 1.3 (lib/transport) and gRPC -> CSR check -> signer process ->
 * inventory row with synchronous=FULL -> response; batches of 1 and of 16, one client, on
 * loopback. The baseline is raw ECDSA P-256 signatures per second by BoringSSL in the same run.
 * Loops are bounded in count and time; the CA is stopped by its PID.
 *
 *   bazel run -c opt //test/bench:ca_rpc_bench */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <openssl/mem.h>

#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"
#include "test/bench/bench.h"
#include "test/testlib/ca_proc.h"

#define PROG "ca_rpc_bench"
#define T_MS 10000
#define BATCH 16

static struct ca_proc ca;

static void stop_ca(void) { ca_proc_cleanup(&ca); }

static ProtobufCMessage *must(grpc_channel *ch, const char *path, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *resp;
    struct rpc_status st;
    if (rpc_call_unary(ch, path, req, desc, 64 << 20, T_MS, &resp, &st) != WEFT_OK) {
        stop_ca();
        bench_die(PROG, path, st.details);
    }
    return resp;
}

static void csr_of(EVP_PKEY *key, ProtobufCBinaryData *out)
{
    uint8_t *der;
    size_t len;
    if (ca_csr_new(key, &der, &len) != WEFT_OK) {
        bench_die(PROG, "csr", "cannot make a CSR");
    }
    out->data = der;
    out->len = len;
}

/* mint_rate mints batches of |batch| until the time or count bound; SVIDs per second. */
static double mint_rate(grpc_channel *ch, const char *entry, size_t batch)
{
    Weft__Ca__V1__MintRequest reqs[BATCH], *ptrs[BATCH];
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    for (size_t i = 0; i < batch; i++) {
        weft__ca__v1__mint_request__init(&reqs[i]);
        reqs[i].entry_id = (char *)entry;
        csr_of(key, &reqs[i].csr); /* one key for all: the CSR check is what is measured */
        ptrs[i] = &reqs[i];
    }
    Weft__Ca__V1__MintWorkloadSVIDsRequest req = WEFT__CA__V1__MINT_WORKLOAD_SVIDS_REQUEST__INIT;
    req.requests = ptrs;
    req.n_requests = batch;
    long n = 0;
    double start = bench_now_s(), elapsed = 0;
    while (n < BENCH_MAX_OPS && elapsed < BENCH_MAX_SECONDS) {
        Weft__Ca__V1__MintWorkloadSVIDsResponse *resp =
            (Weft__Ca__V1__MintWorkloadSVIDsResponse *)must(
                ch, "/weft.ca.v1.CA/MintWorkloadSVIDs", &req.base,
                &weft__ca__v1__mint_workload_svids_response__descriptor);
        for (size_t i = 0; i < resp->n_results; i++) {
            if (resp->results[i]->svid == NULL) {
                stop_ca();
                bench_die(PROG, "mint", resp->results[i]->error);
            }
        }
        n += (long)resp->n_results;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        elapsed = bench_now_s() - start;
    }
    for (size_t i = 0; i < batch; i++) {
        OPENSSL_free(reqs[i].csr.data);
    }
    EVP_PKEY_free(key);
    return (double)n / elapsed;
}

int main(void)
{
    grpc_init();
    if (ca_proc_init(&ca) != WEFT_OK || ca_proc_start(&ca, NULL) != WEFT_OK) {
        stop_ca();
        bench_die(PROG, "weft-ca", "did not start (see its log)");
    }
    grpc_channel *admin = ca.admin;
    Weft__Ca__V1__CreateTokenRequest treq = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    treq.node = "bench-node";
    Weft__Ca__V1__CreateTokenResponse *tok = (Weft__Ca__V1__CreateTokenResponse *)must(
        admin, "/weft.ca.v1.Admin/CreateToken", &treq.base,
        &weft__ca__v1__create_token_response__descriptor);
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char *sel = "unix:uid:1001";
    e.spiffe_id = "spiffe://example.org/ns/bench/sa/app";
    e.node = "bench-node";
    e.selectors = &sel;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest ereq = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    ereq.entry = &e;
    Weft__Ca__V1__CreateEntryResponse *ent = (Weft__Ca__V1__CreateEntryResponse *)must(
        admin, "/weft.ca.v1.Admin/CreateEntry", &ereq.base,
        &weft__ca__v1__create_entry_response__descriptor);

    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/bundle.pem", ca.dir);
    uint8_t *bundle;
    size_t bundle_len;
    struct ca_client *client;
    if (weft_file_read(&bundle, &bundle_len, path, 1 << 20) != WEFT_OK ||
        ca_client_new(&client, ca.listen, CA_PROC_TD, bundle, bundle_len, err, sizeof(err)) !=
            WEFT_OK) {
        stop_ca();
        bench_die(PROG, "client", err);
    }
    free(bundle);
    grpc_channel *anon;
    if (ca_client_dial(client, NULL, NULL, &anon, err, sizeof(err)) != WEFT_OK) {
        stop_ca();
        bench_die(PROG, "dial", err);
    }
    EVP_PKEY *node_key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__AttestNodeRequest areq = WEFT__CA__V1__ATTEST_NODE_REQUEST__INIT;
    areq.join_token = tok->token;
    csr_of(node_key, &areq.csr);
    Weft__Ca__V1__AttestNodeResponse *att =
        (Weft__Ca__V1__AttestNodeResponse *)must(anon, "/weft.ca.v1.CA/AttestNode", &areq.base,
                                                 &weft__ca__v1__attest_node_response__descriptor);
    STACK_OF(X509) * chain;
    struct spiffe_why why;
    grpc_channel *node;
    if (spiffe_certs_decode(&chain, att->node_svid->chain.data, att->node_svid->chain.len, 4, 0,
                            &why) != WEFT_OK ||
        ca_client_dial(client, chain, node_key, &node, err, sizeof(err)) != WEFT_OK) {
        stop_ca();
        bench_die(PROG, "node", err);
    }

    double raw = bench_raw_ecdsa_rate(node_key);
    double one = mint_rate(node, ent->entry->id, 1);
    double many = mint_rate(node, ent->entry->id, BATCH);
    printf("%-58s %12s %10s\n", "", "per second", "vs raw");
    printf("%-58s %12.0f %9.2fx\n", "raw ECDSA P-256 signatures (BoringSSL)", raw, 1.0);
    printf("%-58s %12.0f %9.3fx\n", "weft-ca over TLS+gRPC, 1 CSR per call (whole path)", one,
           one / raw);
    printf("%-58s %12.0f %9.3fx\n", "weft-ca over TLS+gRPC, 16 CSRs per call (whole path)", many,
           many / raw);

    grpc_channel_destroy(node);
    grpc_channel_destroy(anon);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(node_key);
    OPENSSL_free(areq.csr.data);
    protobuf_c_message_free_unpacked(&att->base, NULL);
    protobuf_c_message_free_unpacked(&tok->base, NULL);
    protobuf_c_message_free_unpacked(&ent->base, NULL);
    ca_client_free(client);
    stop_ca();
    grpc_shutdown();
    return 0;
}
