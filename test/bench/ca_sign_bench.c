/* ca_sign_bench: workload SVIDs issued per second through the CA's path as built so far
 * (CSR check -> signer process -> certificate -> inventory row with synchronous=FULL ->
 * chain), against raw ECDSA P-256 signatures per second by BoringSSL in the same run.
 * ca_rpc_bench adds TLS and gRPC around the same path, through a real weft-ca process. Loops
 * are bounded in count and time.
 *
 *   bazel run -c opt //test/bench:ca_sign_bench */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "ca/issuer.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/spiffe/x509svid.h"
#include "test/bench/bench.h"

#define MAX_SECONDS BENCH_MAX_SECONDS
#define MAX_OPS BENCH_MAX_OPS

static double now_s(void) { return bench_now_s(); }

__attribute__((noreturn)) static void die(const char *what, const char *err)
{
    bench_die("ca_sign_bench", what, err);
}

int main(void)
{
    char dir[] = "/tmp/weft-ca-bench-XXXXXX", path[300], err[512];
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp", "failed");
    }
    chmod(dir, 0755);
    weft_log_set_output(stderr, WEFT_LOG_WARN); /* one log line per issuance would dominate */
    int64_t t = (int64_t)time(NULL);
    struct spiffe_id td;
    struct spiffe_mint_params p = {.not_before = t - 60, .ttl_s = 86400};
    EVP_PKEY *root_key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    EVP_PKEY *ca_key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    X509 *root = NULL, *inter = NULL;
    if (spiffe_td_parse(&td, "bench.example", 13, NULL) != WEFT_OK ||
        spiffe_mint_root(&root, root_key, &td, &p, NULL) != WEFT_OK ||
        spiffe_mint_signing_ca(&inter, root, root_key, ca_key, &td, &p, NULL) != WEFT_OK) {
        die("mint", "failed");
    }
    char *pem;
    size_t len;
    char key_path[300], cert_path[300];
    snprintf(key_path, sizeof(key_path), "%s/ca.key", dir);
    snprintf(cert_path, sizeof(cert_path), "%s/ca.pem", dir);
    STACK_OF(X509) *one = sk_X509_new_null();
    sk_X509_push(one, inter);
    if (spiffe_key_to_pem(&pem, &len, ca_key) != WEFT_OK ||
        weft_file_write_atomic(key_path, pem, len, 0600) != WEFT_OK) {
        die("write key", key_path);
    }
    free(pem);
    if (spiffe_certs_to_pem(&pem, &len, one) != WEFT_OK ||
        weft_file_write_atomic(cert_path, pem, len, 0644) != WEFT_OK) {
        die("write cert", cert_path);
    }
    free(pem);
    sk_X509_free(one);

    double raw = bench_raw_ecdsa_rate(ca_key);

    struct ca_store *store;
    struct ca_signer *signer;
    snprintf(path, sizeof(path), "%s/ca.db", dir);
    if (ca_store_open_sqlite(&store, path, err, sizeof(err)) != WEFT_OK) {
        die("store", err);
    }
    struct ca_signer_config cfg = {.key_path = key_path, .cert_path = cert_path};
    if (ca_signer_start(&signer, &cfg, err, sizeof(err)) != WEFT_OK) {
        die("signer", err);
    }
    struct ca_issuer ca = {.store = store, .signer = signer, .td = td, .signing_cert = inter};
    struct ca_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "bench");
    snprintf(e.spiffe_id, sizeof(e.spiffe_id), "spiffe://bench.example/ns/a/sa/b");
    snprintf(e.node, sizeof(e.node), "node-a");
    snprintf(e.selectors[0], sizeof(e.selectors[0]), "unix:uid:1");
    e.num_selectors = 1;
    e.ttl_s = 3600;
    if (ca_store_entry_add(store, &e) != WEFT_OK) {
        die("entry", store->err);
    }
    EVP_PKEY *wk = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    X509_REQ *req = X509_REQ_new();
    uint8_t *csr = NULL;
    int csr_len;
    if (!X509_REQ_set_pubkey(req, wk) || !X509_REQ_sign(req, wk, EVP_sha256()) ||
        (csr_len = i2d_X509_REQ(req, &csr)) <= 0) {
        die("csr", "failed");
    }
    struct ca_mint_request mr = {"bench", csr, (size_t)csr_len};
    struct ca_caller caller = {.node = "node-a", .serial_hex = "01", .not_after = t + 86400};
    struct ca_mint_result *res = malloc(sizeof(*res));
    long n = 0;
    double start = now_s(), elapsed = 0;
    while (n < MAX_OPS && elapsed < MAX_SECONDS) {
        if (ca_mint_workloads(&ca, &caller, &mr, 1, res, t, err, sizeof(err)) != WEFT_OK) {
            die("mint", err);
        }
        if (res->rc != WEFT_OK) {
            die("mint", res->err);
        }
        n++;
        elapsed = now_s() - start;
    }
    double path_rate = (double)n / elapsed;

    /* the same path, 16 CSRs per call: one inventory transaction per call */
    enum { BATCH = 16 };
    struct ca_mint_request batch[BATCH];
    struct ca_mint_result *results = calloc(BATCH, sizeof(*results));
    for (int i = 0; i < BATCH; i++) {
        batch[i] = mr;
    }
    long nb = 0;
    start = now_s();
    elapsed = 0;
    while (nb < MAX_OPS && elapsed < MAX_SECONDS) {
        if (ca_mint_workloads(&ca, &caller, batch, BATCH, results, t, err, sizeof(err)) !=
            WEFT_OK) {
            die("mint batch", err);
        }
        for (int i = 0; i < BATCH; i++) {
            if (results[i].rc != WEFT_OK) {
                die("mint batch", results[i].err);
            }
        }
        nb += BATCH;
        elapsed = now_s() - start;
    }
    double batch_rate = (double)nb / elapsed;
    free(results);
    printf("%-44s %12s %10s\n", "", "per second", "vs raw");
    printf("%-44s %12.0f %9.2fx\n", "raw ECDSA P-256 signatures (BoringSSL)", raw, 1.0);
    printf("%-44s %12.0f %9.4fx\n", "workload SVIDs: CSR, signer, store, chain", path_rate,
           path_rate / raw);
    printf("%-44s %12.0f %9.4fx\n", "  the same, 16 per call (one transaction)", batch_rate,
           batch_rate / raw);
    ca_signer_stop(signer);
    ca_store_close(store);
    free(res);
    OPENSSL_free(csr);
    X509_REQ_free(req);
    EVP_PKEY_free(wk);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(ca_key);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
