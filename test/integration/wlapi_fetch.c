/* test/integration/wlapi_fetch.c: a small Workload API client for tests, run as a workload
 * under any uid: FetchX509SVID on a unix socket, then one line on stdout:
 *
 *   status=0 svids=1 id=spiffe://example.org/ns/x/sa/y verified=1
 *   status=7 detail=no identity issued
 *
 * "verified=1" means the first SVID's chain verified against the bundle it came with, and its
 * key matches its leaf. Usage: wlapi_fetch SOCKET [--no-header] [--messages N] [--serial]
 * (wait for N snapshots, printing a line for each; --serial adds " serial=HEX", the leaf's).
 * Exit 0 when every snapshot arrived and verified. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <openssl/bytestring.h>

#include "lib/rpc/rpc.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "proto/workload.pb-c.h"

static bool verify(const X509SVID *o)
{
    STACK_OF(X509) *chain = NULL;
    struct spiffe_id id, td, got;
    struct spiffe_why why;
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    bool ok =
        spiffe_id_parse(&id, o->spiffe_id, strlen(o->spiffe_id), &why) == WEFT_OK &&
        spiffe_certs_decode(&chain, o->x509_svid.data, o->x509_svid.len, 8, 0, &why) == WEFT_OK;
    if (ok) {
        spiffe_id_td_id(&td, &id);
        ok = spiffe_bundle_decode(&set, o->bundle.data, o->bundle.len, &td, &why) == WEFT_OK &&
             spiffe_x509svid_verify(&got, chain, &set, time(NULL), &why) == WEFT_OK &&
             strcmp(got.str, o->spiffe_id) == 0;
    }
    CBS cbs;
    CBS_init(&cbs, o->x509_svid_key.data, o->x509_svid_key.len);
    EVP_PKEY *key = EVP_parse_private_key(&cbs);
    ok = ok && key != NULL &&
         spiffe_x509svid_check_key(sk_X509_value(chain, 0), key, &why) == WEFT_OK;
    EVP_PKEY_free(key);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: wlapi_fetch SOCKET [--no-header] [--messages N]\n");
        return 2;
    }
    bool header = true, serial = false;
    int want = 1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--no-header") == 0) {
            header = false;
        } else if (strcmp(argv[i], "--serial") == 0) {
            serial = true;
        } else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) {
            want = atoi(argv[++i]);
        }
    }
    grpc_init();
    grpc_channel *ch = rpc_channel_unix(argv[1]);
    grpc_metadata md = {.key = grpc_slice_from_static_string("workload.spiffe.io"),
                        .value = grpc_slice_from_static_string("true")};
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, "/SpiffeWorkloadAPI/FetchX509SVID",
                                                             120000, &md, header ? 1 : 0);
    X509SVIDRequest req = X509_SVIDREQUEST__INIT;
    int rc = 1;
    if (cs != NULL && rpc_client_stream_send(cs, &req.base, 5000) != WEFT_OK) {
        /* a refused call: its status is read below */
    }
    int got = 0;
    while (cs != NULL && got < want) {
        X509SVIDResponse *r = NULL;
        int rrc = rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, 16 << 20, 60000,
                                         (ProtobufCMessage **)&r);
        if (rrc != WEFT_OK) {
            struct rpc_status st;
            rpc_client_stream_status(cs, 5000, &st);
            printf("status=%d detail=%s\n", (int)st.code, st.details);
            fflush(stdout);
            break;
        }
        bool ok = r->n_svids > 0 && verify(r->svids[0]);
        char hex[48] = "";
        if (serial && r->n_svids > 0) {
            const uint8_t *p = r->svids[0]->x509_svid.data;
            X509 *leaf = d2i_X509(NULL, &p, (long)r->svids[0]->x509_svid.len);
            const ASN1_INTEGER *sn = leaf != NULL ? X509_get0_serialNumber(leaf) : NULL;
            snprintf(hex, sizeof(hex), " serial=");
            for (int b = 0; sn != NULL && b < sn->length && b < 20; b++) {
                snprintf(hex + 8 + 2 * b, 3, "%02x", sn->data[b]);
            }
            X509_free(leaf);
        }
        printf("status=0 svids=%zu id=%s verified=%d%s\n", r->n_svids,
               r->n_svids > 0 ? r->svids[0]->spiffe_id : "", ok, hex);
        fflush(stdout);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (!ok) {
            break;
        }
        if (++got == want) {
            rc = 0;
        }
    }
    rpc_client_stream_close(cs);
    grpc_channel_destroy(ch);
    grpc_shutdown();
    return rc;
}
