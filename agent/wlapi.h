/* agent/wlapi.h: the SPIFFE Workload API on the agent's unix socket (issue 5;
 * ../shared/reference/spiffe.md §C, §D, §F): FetchX509SVID and FetchX509Bundles, server
 * streams that send a complete snapshot at once and a new one on every change; FetchJWTSVID and
 * ValidateJWTSVID (unary) and FetchJWTBundles (a stream, like the X.509 bundles).
 *
 * The socket is plain gRPC (h2c). An acceptor thread of its own accepts each connection, reads
 * the caller's credentials from the kernel (SO_PEERCRED, with the process's start time against
 * pid reuse: agent/peer.h) and hands the connection to gRPC (lib/transport/grpcfd.h), so every
 * call knows which local process made it. Every call is checked in the order the standard
 * gives, before anything is sent:
 *   1. the metadata "workload.spiffe.io: true", exactly: else INVALID_ARGUMENT;
 *   2. the agent is ready (it holds a bundle): else UNAVAILABLE;
 *   3. the caller is attested and entitled to something: else PERMISSION_DENIED, with the
 *      reason (and a log line) on the agent's side.
 *
 * The SVIDs and bundles themselves come from the agent through agent_wlapi_ops; when any of
 * them changes, agent_wlapi_changed() sends every open stream whose snapshot changed its new
 * one (or ends it, PERMISSION_DENIED when its caller is entitled to nothing any more, with the
 * status the agent gives for a proxy configuration it cannot build). Handlers and
 * pushes run on the thread that polls the rpc_server the API was added to.
 *
 * The same socket serves weft's own weft.agent.v1.ProxyConfig/Watch (the standard forbids
 * extending the SPIFFE service, not serving another): a caller with an SVID sends one
 * ProxyConfigRequest, and is streamed its proxy's configuration, with the same checks first. */
#ifndef WEFT_AGENT_WLAPI_H
#define WEFT_AGENT_WLAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "agent/peer.h"
#include "agent/selectors.h"
#include "lib/base/err.h"
#include "lib/rpc/rpc.h"
#include "lib/transport/peer.h"
#include "proto/agent.pb-c.h"
#include "proto/workload.pb-c.h"

#define AGENT_WLAPI_DEFAULT_SOCKET "/run/weft/agent.sock"
#define AGENT_WLAPI_HEADER "workload.spiffe.io"
#define AGENT_WLAPI_MAX_STREAMS 4096
#define AGENT_WLAPI_MAX_STREAMS_PER_UID 256 /* so that one workload cannot take them all */
#define AGENT_WLAPI_REQUEST_WAIT_S 10       /* for a ProxyConfig stream's request */
#define AGENT_PROXY_CONFIG_PATH "/weft.agent.v1.ProxyConfig/Watch"

/* agent_peer_from is the caller lib/transport recorded for a call on the socket. */
static inline struct agent_peer agent_peer_from(const struct weft_peer *w)
{
    struct agent_peer p = {(pid_t)w->local.pid, w->local.uid, w->local.gid, w->local.start_time};
    return p;
}

struct agent_wlapi_ops {
    /* ready: the agent can serve (it holds the trust bundle). */
    bool (*ready)(void *arg);
    /* attest: the caller's selectors. Not WEFT_OK: nothing may be served (|why| says why). */
    int (*attest)(void *arg, const struct weft_peer *caller, struct agent_selectors *out, char *why,
                  size_t why_len);
    /* x509: fills |resp| for a workload with |sel| (its SVIDs, first the default one, each
     * with the bundle of its trust domain); returns how many SVIDs. |resp| points into the
     * agent's storage, valid until the agent changes what it holds (the API packs it at once). */
    size_t (*x509)(void *arg, const struct agent_selectors *sel, X509SVIDResponse *resp);
    /* bundles: fills |resp| with the trust bundles a workload with |sel| may see; returns how
     * many (0: PERMISSION_DENIED). */
    size_t (*bundles)(void *arg, const struct agent_selectors *sel, X509BundlesResponse *resp);
    /* weft.agent.v1.ProxyConfig (agent/proxycfg.h). proxy_open: the stream's request came from
     * |caller|: make the stream's state in |*state|, or return the status to end it with
     * (|details| filled). proxy_config: fill |resp| for the stream (pointing into the agent's
     * storage until it changes), or set |*wait| when there is nothing to send yet (the first
     * snapshot from the CA has not come), or return the status to end it with. proxy_close:
     * the stream is over. */
    grpc_status_code (*proxy_open)(void *arg, const struct weft_peer *caller,
                                   const struct agent_selectors *sel,
                                   const Weft__Agent__V1__ProxyConfigRequest *req, void **state,
                                   char details[RPC_DETAILS_LEN]);
    grpc_status_code (*proxy_config)(void *arg, void *state, const struct agent_selectors *sel,
                                     Weft__Agent__V1__ProxyConfigResponse *resp, bool *wait,
                                     char details[RPC_DETAILS_LEN]);
    void (*proxy_close)(void *arg, void *state);
    /* The JWT-SVID profile (NULL: its calls are answered UNIMPLEMENTED). jwt_bundles: as
     * bundles, for FetchJWTBundles, or |*wait| while the CA's keys have not come. jwt_svid and
     * jwt_validate: answer a request that passed every check (header, mandatory fields, ready,
     * attested) into |resp| (the agent's storage, valid until its next answer), or return the
     * status to fail with (|details| filled). */
    size_t (*jwt_bundles)(void *arg, const struct agent_selectors *sel, JWTBundlesResponse *resp,
                          bool *wait);
    grpc_status_code (*jwt_svid)(void *arg, const struct agent_selectors *sel,
                                 const JWTSVIDRequest *req, JWTSVIDResponse *resp,
                                 char details[RPC_DETAILS_LEN]);
    grpc_status_code (*jwt_validate)(void *arg, const struct agent_selectors *sel,
                                     const ValidateJWTSVIDRequest *req,
                                     ValidateJWTSVIDResponse *resp, char details[RPC_DETAILS_LEN]);
    void *arg;
};

struct agent_wlapi;

/* agent_wlapi_start listens on |socket_path| (its directory made 0755 if missing, the socket
 * 0777: the standard wants no client authentication, attestation is the gate; a stale socket
 * file is replaced), registers the service on |rpc| (which the caller then starts and polls)
 * and starts the acceptor once |rpc| runs: call agent_wlapi_serve after rpc_server_start. */
WEFT_MUST_USE int agent_wlapi_start(struct agent_wlapi **out, struct rpc_server *rpc,
                                    const char *socket_path, const struct agent_wlapi_ops *ops,
                                    char *err, size_t err_len);

/* agent_wlapi_serve starts accepting connections (after rpc_server_start). */
WEFT_MUST_USE int agent_wlapi_serve(struct agent_wlapi *w, char *err, size_t err_len);

/* agent_wlapi_changed sends every open stream its snapshot again (call it on the rpc thread
 * after the SVIDs, bundles or revocations changed). */
void agent_wlapi_changed(struct agent_wlapi *w);

/* agent_wlapi_sweep ends ProxyConfig streams whose request has not come within
 * AGENT_WLAPI_REQUEST_WAIT_S (call it every second or so, on the rpc thread). */
void agent_wlapi_sweep(struct agent_wlapi *w, time_t now);

/* agent_wlapi_streams returns how many streams are open. */
size_t agent_wlapi_streams(const struct agent_wlapi *w);

/* agent_wlapi_stop stops accepting and removes the socket file. Call it before
 * rpc_server_free; then agent_wlapi_free after it. */
void agent_wlapi_stop(struct agent_wlapi *w);
void agent_wlapi_free(struct agent_wlapi *w);

#endif
