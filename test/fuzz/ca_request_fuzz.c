/* Fuzzes what weft-ca does with the bytes of a request from the network, below the transport:
 * the protobuf unpack of AttestNode, RenewNode, MintWorkloadSVIDs, ReportWorkloads and
 * MintJWTSVID, and the CA's own handling of what is in them (ca/issuer.h with a real store and a
 * real signer child, ca/directory.h), exactly as ca/daemon.c's handlers call them. The first
 * byte picks the method; the rest is the request.
 *
 * Invariants checked: whatever a request says, every SVID issued is for the caller's own node
 * or for an entry assigned to it, and chains to the CA; every JWT-SVID is for an entry assigned
 * to the node, for 1 to 16 audiences, and validates against the published key; a batch over
 * the limit is refused as a whole; the directory never holds more than its bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/directory.h"
#include "ca/issuer.h"
#include "ca/material.h"
#include "ca/signer.h"
#include "ca/store.h"
#include "lib/base/mem.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"
#include "proto/ca.pb-c.h"

#include <jansson.h>
#include <openssl/bytestring.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define NODE "node-a"
#define ENTRY_ID "0123456789abcdef0123456789abcdef" /* in the seed corpus */
#define MAX_DIR 64

static char dir[] = "/tmp/weft-ca-fuzz-XXXXXX";
static struct ca_store *store;
static struct ca_signer *signer;
static struct ca_issuer issuer;
static struct ca_directory *directory;
static X509 *intermediate;
static struct spiffe_bundle_set jwt_bundles; /* a verifier holding the signer's JWT key */

static void cleanup(void)
{
    spiffe_bundle_set_cleanup(&jwt_bundles);
    ca_signer_stop(signer);
    ca_store_close(store);
    ca_directory_free(directory);
    X509_free(intermediate);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
}

/* may_serve: as the daemon answers it, from the entries the node may mint */
static bool may_serve(void *arg, const char *node, const char *spiffe_id)
{
    (void)arg;
    return strcmp(node, NODE) == 0 &&
           strcmp(spiffe_id, "spiffe://example.org/ns/shop/sa/cart") == 0;
}

static void init(void)
{
    char err[512], path[128], key[128], cert[128];
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    atexit(cleanup);
    struct spiffe_id td;
    if (spiffe_td_parse(&td, "example.org", 11, NULL) != WEFT_OK) {
        abort();
    }
    struct ca_material_params p = {&td, (int64_t)time(NULL) - 60, 30 * 86400, 7 * 86400,
                                   SPIFFE_KEY_EC_P256};
    snprintf(path, sizeof(path), "%s/ca.db", dir);
    snprintf(key, sizeof(key), "%s/%s", dir, CA_FILE_INT_KEY);
    snprintf(cert, sizeof(cert), "%s/%s", dir, CA_FILE_INT_CERT);
    struct ca_signer_config scfg = {.key_path = key, .cert_path = cert};
    if (ca_material_init(dir, &p, err, sizeof(err)) != WEFT_OK ||
        ca_signer_start(&signer, &scfg, err, sizeof(err)) != WEFT_OK ||
        ca_store_open_sqlite(&store, path, err, sizeof(err)) != WEFT_OK) {
        fprintf(stderr, "ca_request_fuzz: %s\n", err);
        abort();
    }
    struct ca_signer_info info;
    ca_signer_info(signer, &info);
    const uint8_t *der = info.intermediate;
    intermediate = d2i_X509(NULL, &der, (long)info.intermediate_len);
    issuer = (struct ca_issuer){
        .store = store, .signer = signer, .td = td, .signing_cert = intermediate};
    struct ca_entry e = {.id = ENTRY_ID,
                         .spiffe_id = "spiffe://example.org/ns/shop/sa/cart",
                         .node = NODE,
                         .selectors = {"unix:uid:1001"},
                         .num_selectors = 1,
                         .ttl_s = 3600};
    if (ca_store_entry_add(store, &e) != WEFT_OK) {
        abort();
    }
    directory = ca_directory_new(MAX_DIR, MAX_DIR / 2, 60, may_serve, NULL);
    /* a JWT key, published as a verifier would hold it */
    uint8_t spki[CA_SIGNER_MAX_PUBKEY];
    size_t spki_len;
    if (ca_signer_jwt_new_key(signer, (int64_t)time(NULL) + 7 * 86400, spki, sizeof(spki),
                              &spki_len, err, sizeof(err)) != WEFT_OK ||
        ca_signer_jwt_activate(signer, err, sizeof(err)) != WEFT_OK) {
        fprintf(stderr, "ca_request_fuzz: %s\n", err);
        abort();
    }
    CBS cbs;
    CBS_init(&cbs, spki, spki_len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    char kid[SPIFFE_JWT_KID_LEN + 1];
    struct spiffe_bundle *b = spiffe_bundle_new(&td);
    if (pub == NULL || spiffe_jwt_kid(pub, kid) != WEFT_OK ||
        json_array_append_new(b->other_keys, spiffe_jwt_jwk(pub, kid)) != 0 ||
        spiffe_bundle_set_put(&jwt_bundles, b) != WEFT_OK) {
        abort();
    }
    EVP_PKEY_free(pub);
}

/* check_svid: an issued SVID is one of the two this node may have, and chains to the CA. */
static void check_svid(const struct ca_svid *s)
{
    if (strcmp(s->spiffe_id, "spiffe://example.org/weft/node/" NODE) != 0 &&
        strcmp(s->spiffe_id, "spiffe://example.org/ns/shop/sa/cart") != 0) {
        abort();
    }
    const uint8_t *p = s->chain;
    X509 *leaf = d2i_X509(NULL, &p, (long)s->chain_len);
    EVP_PKEY *pub = X509_get_pubkey(intermediate);
    if (leaf == NULL || X509_verify(leaf, pub) != 1) {
        abort();
    }
    EVP_PKEY_free(pub);
    X509_free(leaf);
}

static void renew(const uint8_t *data, size_t size, const struct ca_caller *caller, int64_t now)
{
    Weft__Ca__V1__RenewNodeRequest *r = weft__ca__v1__renew_node_request__unpack(NULL, size, data);
    if (r == NULL) {
        return;
    }
    struct ca_svid *svid = weft_xcalloc(1, sizeof(*svid));
    char err[256];
    if (ca_renew_node(&issuer, caller, r->csr.data, r->csr.len, now, svid, err, sizeof(err)) ==
        WEFT_OK) {
        check_svid(svid);
    }
    free(svid);
    weft__ca__v1__renew_node_request__free_unpacked(r, NULL);
}

static void mint(const uint8_t *data, size_t size, const struct ca_caller *caller, int64_t now)
{
    Weft__Ca__V1__MintWorkloadSVIDsRequest *r =
        weft__ca__v1__mint_workload_svids_request__unpack(NULL, size, data);
    if (r == NULL) {
        return;
    }
    size_t n = r->n_requests;
    struct ca_mint_request *reqs = weft_xcalloc(n + 1, sizeof(*reqs));
    struct ca_mint_result *res = weft_xcalloc(n + 1, sizeof(*res));
    for (size_t i = 0; i < n; i++) {
        reqs[i] = (struct ca_mint_request){r->requests[i]->entry_id, r->requests[i]->csr.data,
                                           r->requests[i]->csr.len};
    }
    char err[256];
    int rc = ca_mint_workloads(&issuer, caller, reqs, n, res, now, err, sizeof(err));
    if (n > CA_MAX_MINT_BATCH && rc == WEFT_OK) {
        abort(); /* over the limit is refused as a whole */
    }
    for (size_t i = 0; rc == WEFT_OK && i < n; i++) {
        if (res[i].rc == WEFT_OK) {
            if (strcmp(res[i].svid.entry_id, ENTRY_ID) != 0) {
                abort();
            }
            check_svid(&res[i].svid);
        }
    }
    free(reqs);
    free(res);
    weft__ca__v1__mint_workload_svids_request__free_unpacked(r, NULL);
}

static void attest(const uint8_t *data, size_t size, int64_t now)
{
    Weft__Ca__V1__AttestNodeRequest *r =
        weft__ca__v1__attest_node_request__unpack(NULL, size, data);
    if (r == NULL) {
        return;
    }
    char node[CA_NODE_NAME_MAX + 1], err[256];
    struct ca_svid *svid = weft_xcalloc(1, sizeof(*svid));
    if (ca_attest_node(&issuer, r->join_token, r->csr.data, r->csr.len, now, node, svid, err,
                       sizeof(err)) == WEFT_OK) {
        abort(); /* no token was ever made: nothing can join */
    }
    free(svid);
    weft__ca__v1__attest_node_request__free_unpacked(r, NULL);
}

static void report(const uint8_t *data, size_t size, int64_t now)
{
    Weft__Ca__V1__ReportWorkloadsRequest *r =
        weft__ca__v1__report_workloads_request__unpack(NULL, size, data);
    if (r == NULL) {
        return;
    }
    size_t n = r->n_workloads;
    struct ca_dir_item *items = weft_xcalloc(n + 1, sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        items[i] = (struct ca_dir_item){r->workloads[i]->address, r->workloads[i]->spiffe_id};
    }
    int rc = ca_directory_report(directory, NODE, items, n, now, NULL, NULL);
    if ((rc != WEFT_OK && rc != WEFT_ELIMIT) || ca_directory_size(directory) > MAX_DIR / 2) {
        abort(); /* one node never holds more than its share */
    }
    free(items);
    weft__ca__v1__report_workloads_request__free_unpacked(r, NULL);
}

static void jwt(const uint8_t *data, size_t size, const struct ca_caller *caller, int64_t now)
{
    Weft__Ca__V1__MintJWTSVIDRequest *r =
        weft__ca__v1__mint_jwtsvidrequest__unpack(NULL, size, data);
    if (r == NULL) {
        return;
    }
    struct ca_jwt_svid *out = weft_xcalloc(1, sizeof(*out));
    char err[256];
    if (ca_mint_jwt(&issuer, caller, r->entry_id, (const char *const *)r->audience, r->n_audience,
                    300, now, out, err, sizeof(err)) == WEFT_OK) {
        if (strcmp(r->entry_id, ENTRY_ID) != 0 || r->n_audience == 0 ||
            r->n_audience > SPIFFE_JWT_MAX_AUDIENCES) {
            abort(); /* only the node's entry, only 1..16 audiences */
        }
        struct spiffe_jwt_svid svid;
        struct spiffe_why why;
        if (spiffe_jwt_validate(&svid, out->token, out->token_len, r->audience[0], &jwt_bundles,
                                now, &why) != WEFT_OK ||
            strcmp(svid.sub.str, "spiffe://example.org/ns/shop/sa/cart") != 0) {
            fprintf(stderr, "ca_request_fuzz: a token that does not validate: %s\n", why.msg);
            abort();
        }
        spiffe_jwt_svid_cleanup(&svid);
    }
    free(out);
    weft__ca__v1__mint_jwtsvidrequest__free_unpacked(r, NULL);
}

/* libFuzzer calls this before it starts its own threads: the signer is forked here. The
 * replay main (standalone_main.c) does not, hence the check below. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL) {
        init();
    }
    if (size < 1) {
        return 0;
    }
    int64_t now = (int64_t)time(NULL);
    struct ca_caller caller = {.node = NODE, .serial_hex = "01", .not_after = now + 3600};
    switch (data[0] % 5) {
    case 0:
        attest(data + 1, size - 1, now);
        break;
    case 1:
        renew(data + 1, size - 1, &caller, now);
        break;
    case 2:
        mint(data + 1, size - 1, &caller, now);
        break;
    case 3:
        report(data + 1, size - 1, now);
        break;
    default:
        jwt(data + 1, size - 1, &caller, now);
        break;
    }
    return 0;
}
