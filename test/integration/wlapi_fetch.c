/* test/integration/wlapi_fetch.c: a small Workload API client for tests, run as a workload
 * under any uid: FetchX509SVID on a unix socket, then one line on stdout:
 *
 *   status=0 svids=1 id=spiffe://example.org/ns/x/sa/y verified=1
 *   status=7 detail=no identity issued
 *
 * "verified=1" means the first SVID's chain verified against the bundle it came with, and its
 * key matches its leaf. Usage: wlapi_fetch SOCKET [--no-header] [--messages N] [--serial]
 * (wait for N snapshots, printing a line for each; --serial adds " serial=HEX", the leaf's).
 * Exit 0 when every snapshot arrived and verified.
 *
 * Other modes:
 *   --jwt AUDIENCE: FetchJWTSVID for AUDIENCE, FetchJWTBundles, the token validated here
 *     against that JWKS (lib/spiffe/jwt.h) and by the agent (ValidateJWTSVID):
 *       status=0 id=ID local=1 agent=ID
 *   --proxy-config ADDR[,ADDR...]: weft.agent.v1.ProxyConfig/Watch claiming the addresses;
 *     reads configs until the directory maps each accepted address to the config's identity
 *     (at most --messages, default 10), then:
 *       status=0 id=ID policy_bytes=N directory=N claims=ADDR:1;ADDR:0:REASON;... listed=1
 *   --netns IPV4 (root, before anything else): run in a network namespace of its own with IPV4
 *     on an interface (test/testlib/net.h).
 *   --id SPIFFE_ID: with --jwt or --proxy-config, ask for that identity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <openssl/bytestring.h>

#include "lib/rpc/rpc.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"
#include "lib/spiffe/x509svid.h"
#include "proto/agent.pb-c.h"
#include "proto/workload.pb-c.h"
#include "test/testlib/net.h"

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

static grpc_metadata header_md; /* workload.spiffe.io: true, set in main */

/* call makes one call of |path| (unary or server-streaming: one message each way) with the
 * header; returns the status code and the response in |*resp| (NULL if none). */
static grpc_status_code call(grpc_channel *ch, const char *path, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                             char *details, size_t details_len)
{
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, path, 30000, &header_md, 1);
    *resp = NULL;
    if (cs == NULL) {
        snprintf(details, details_len, "cannot open the call");
        return GRPC_STATUS_INTERNAL;
    }
    if (rpc_client_stream_send(cs, req, 5000) != WEFT_OK) {
        /* a refused call: its status is read below */
    }
    struct rpc_status st = {0};
    if (rpc_client_stream_recv(cs, desc, 1 << 20, 20000, resp) != WEFT_OK) {
        *resp = NULL;
        rpc_client_stream_status(cs, 5000, &st);
    }
    rpc_client_stream_close(cs); /* a stream's first message is all we want */
    snprintf(details, details_len, "%s", st.details);
    return *resp != NULL ? GRPC_STATUS_OK : st.code;
}

static const char *want_id = ""; /* --id */

static int jwt_mode(grpc_channel *ch, const char *audience)
{
    char details[RPC_DETAILS_LEN];
    char *aud[] = {(char *)audience};
    JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
    req.audience = aud;
    req.n_audience = 1;
    req.spiffe_id = (char *)want_id;
    JWTSVIDResponse *svid = NULL;
    grpc_status_code st =
        call(ch, "/SpiffeWorkloadAPI/FetchJWTSVID", &req.base, &jwtsvidresponse__descriptor,
             (ProtobufCMessage **)&svid, details, sizeof(details));
    if (st != GRPC_STATUS_OK || svid->n_svids == 0) {
        printf("status=%d detail=%s\n", (int)st, st == GRPC_STATUS_OK ? "no svid" : details);
        return 1;
    }
    JWTBundlesRequest breq = JWTBUNDLES_REQUEST__INIT;
    JWTBundlesResponse *b = NULL;
    st = call(ch, "/SpiffeWorkloadAPI/FetchJWTBundles", &breq.base,
              &jwtbundles_response__descriptor, (ProtobufCMessage **)&b, details, sizeof(details));
    bool local = false;
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    for (size_t i = 0; st == GRPC_STATUS_OK && i < b->n_bundles; i++) {
        struct spiffe_id td;
        struct spiffe_bundle *one = NULL;
        struct spiffe_why why;
        if (spiffe_id_parse(&td, b->bundles[i]->key, strlen(b->bundles[i]->key), &why) == WEFT_OK &&
            spiffe_bundle_from_json(&one, &td, b->bundles[i]->value.data, b->bundles[i]->value.len,
                                    &why) == WEFT_OK &&
            spiffe_bundle_set_put(&set, one) != WEFT_OK) {
            spiffe_bundle_free(one);
        }
    }
    struct spiffe_jwt_svid v;
    struct spiffe_why why;
    const char *token = svid->svids[0]->svid;
    if (spiffe_jwt_validate(&v, token, strlen(token), audience, &set, time(NULL), &why) ==
        WEFT_OK) {
        local = strcmp(v.sub.str, svid->svids[0]->spiffe_id) == 0;
        spiffe_jwt_svid_cleanup(&v);
    } else {
        fprintf(stderr, "local validation: %s\n", why.msg);
    }
    spiffe_bundle_set_cleanup(&set);
    ValidateJWTSVIDRequest vreq = VALIDATE_JWTSVIDREQUEST__INIT;
    vreq.audience = (char *)audience;
    vreq.svid = (char *)token;
    ValidateJWTSVIDResponse *vr = NULL;
    grpc_status_code vst = call(ch, "/SpiffeWorkloadAPI/ValidateJWTSVID", &vreq.base,
                                &validate_jwtsvidresponse__descriptor, (ProtobufCMessage **)&vr,
                                details, sizeof(details));
    printf("status=0 id=%s local=%d agent=%s\n", svid->svids[0]->spiffe_id, local,
           vst == GRPC_STATUS_OK ? vr->spiffe_id : details);
    bool ok =
        local && vst == GRPC_STATUS_OK && strcmp(vr->spiffe_id, svid->svids[0]->spiffe_id) == 0;
    if (vr != NULL) {
        protobuf_c_message_free_unpacked(&vr->base, NULL);
    }
    if (b != NULL) {
        protobuf_c_message_free_unpacked(&b->base, NULL);
    }
    protobuf_c_message_free_unpacked(&svid->base, NULL);
    return ok ? 0 : 1;
}

/* listed reports whether |r|'s directory maps every accepted claim to |r|'s identity. */
static bool listed(const Weft__Agent__V1__ProxyConfigResponse *r)
{
    for (size_t i = 0; i < r->n_addresses; i++) {
        if (!r->addresses[i]->accepted) {
            continue;
        }
        bool found = false;
        for (size_t d = 0; d < r->n_directory && !found; d++) {
            found = strcmp(r->directory[d]->address, r->addresses[i]->address) == 0 &&
                    strcmp(r->directory[d]->spiffe_id, r->spiffe_id) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

static int proxy_mode(grpc_channel *ch, char *addrs, int want)
{
    char *list[16];
    Weft__Agent__V1__ProxyConfigRequest req = WEFT__AGENT__V1__PROXY_CONFIG_REQUEST__INIT;
    for (char *save = NULL, *a = strtok_r(addrs, ",", &save); a != NULL && req.n_addresses < 16;
         a = strtok_r(NULL, ",", &save)) {
        list[req.n_addresses++] = a;
    }
    req.addresses = list;
    req.spiffe_id = (char *)want_id;
    struct rpc_client_stream *cs =
        rpc_client_stream_open_md(ch, "/weft.agent.v1.ProxyConfig/Watch", 120000, &header_md, 1);
    if (cs == NULL || rpc_client_stream_send(cs, &req.base, 5000) != WEFT_OK) {
        /* a refused call: its status is read below */
    }
    int rc = 1;
    for (int got = 0; cs != NULL && got < want; got++) {
        Weft__Agent__V1__ProxyConfigResponse *r = NULL;
        if (rpc_client_stream_recv(cs, &weft__agent__v1__proxy_config_response__descriptor,
                                   16 << 20, 30000, (ProtobufCMessage **)&r) != WEFT_OK) {
            struct rpc_status st;
            rpc_client_stream_status(cs, 5000, &st);
            printf("status=%d detail=%s\n", (int)st.code, st.details);
            break;
        }
        bool done = listed(r);
        if (done || got + 1 == want) {
            printf("status=0 id=%s policy_bytes=%zu directory=%zu claims=", r->spiffe_id,
                   r->policy.len, r->n_directory);
            for (size_t i = 0; i < r->n_addresses; i++) {
                printf("%s%s:%d%s%s", i ? ";" : "", r->addresses[i]->address,
                       (int)r->addresses[i]->accepted, r->addresses[i]->accepted ? "" : ":",
                       r->addresses[i]->reason);
            }
            printf(" listed=%d\n", done);
            rc = done ? 0 : 1;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (done) {
            break;
        }
    }
    rpc_client_stream_close(cs);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: wlapi_fetch SOCKET [--no-header] [--messages N]\n");
        return 2;
    }
    bool header = true, serial = false;
    int want = 0;
    const char *jwt = NULL, *netns = NULL;
    char *proxy = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--no-header") == 0) {
            header = false;
        } else if (strcmp(argv[i], "--serial") == 0) {
            serial = true;
        } else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) {
            want = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--jwt") == 0 && i + 1 < argc) {
            jwt = argv[++i];
        } else if (strcmp(argv[i], "--proxy-config") == 0 && i + 1 < argc) {
            proxy = argv[++i];
        } else if (strcmp(argv[i], "--netns") == 0 && i + 1 < argc) {
            netns = argv[++i];
        } else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            want_id = argv[++i];
        }
    }
    if (netns != NULL && testlib_netns_own(netns) != 0) {
        printf("status=-1 detail=cannot make a network namespace\n");
        return 1;
    }
    grpc_init();
    grpc_channel *ch = rpc_channel_unix(argv[1]);
    header_md.key = grpc_slice_from_static_string("workload.spiffe.io");
    header_md.value = grpc_slice_from_static_string("true");
    if (jwt != NULL || proxy != NULL) {
        int mrc = jwt != NULL ? jwt_mode(ch, jwt) : proxy_mode(ch, proxy, want > 0 ? want : 10);
        fflush(stdout);
        grpc_channel_destroy(ch);
        grpc_shutdown();
        return mrc;
    }
    want = want > 0 ? want : 1;
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
