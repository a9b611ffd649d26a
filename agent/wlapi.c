/* agent/wlapi.c: see wlapi.h. */
#include "agent/wlapi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/peer.h"
#include "lib/base/hash.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/transport/grpcfd.h"

enum kind { KIND_X509_SVID, KIND_X509_BUNDLES, KIND_JWT_BUNDLES, KIND_PROXY_CONFIG };

struct watcher {
    struct watcher *next, *prev;
    struct rpc_stream *s;
    enum kind kind;
    int pid;
    uint64_t last; /* digest of the snapshot sent last: an unchanged one is not sent again */
    struct weft_peer peer;
    struct agent_selectors sel;
    void *proxy; /* KIND_PROXY_CONFIG: the agent's state for it, once its request came */
    time_t opened;
};

/* digest: FNV-1a over a message's encoding (to tell a changed snapshot from the same one). */
static uint64_t digest(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = weft_xmalloc(len + 1);
    protobuf_c_message_pack(m, buf);
    uint64_t h = weft_fnv1a(WEFT_FNV1A_INIT, buf, len);
    free(buf);
    return h;
}

struct agent_wlapi {
    struct agent_wlapi_ops ops;
    grpc_server *gs; /* owned by the rpc_server */
    struct grpcfd_server *fds;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int lfd;
    int stop_pipe[2];
    pthread_t acceptor;
    bool accepting;
    struct watcher *watchers;
    size_t num_watchers;
};

/* --- the acceptor ----------------------------------------------------------------------------- */

static void *accept_loop(void *arg)
{
    struct agent_wlapi *w = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = w->lfd, .events = POLLIN},
                              {.fd = w->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (p[1].revents != 0) {
            break;
        }
        /* non-blocking: gRPC's fd channels never wait on a socket, and a blocking one stalls
         * its poller */
        int fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                usleep(100 * 1000); /* out of descriptors: let calls finish */
            }
            continue;
        }
        struct agent_peer ap;
        char err[256];
        if (agent_peer_of_fd(fd, "/proc", &ap, err, sizeof(err)) != WEFT_OK) {
            weft_log(WEFT_LOG_WARN, "workload api: caller refused", 1, "reason", err);
            close(fd);
            continue;
        }
        struct weft_peer peer;
        memset(&peer, 0, sizeof(peer));
        peer.local.set = true;
        peer.local.pid = ap.pid;
        peer.local.uid = ap.uid;
        peer.local.gid = ap.gid;
        peer.local.start_time = ap.start_time;
        if (grpcfd_adopt(w->fds, fd, &peer) != WEFT_OK) {
            /* grpcfd closed it: the server is stopping, or the fd is out of range */
        }
    }
    return NULL;
}

/* --- the streams ------------------------------------------------------------------------------ */

/* snapshot sends |wt| what its caller is entitled to now, unless it is what it was sent last.
 * Returns GRPC_STATUS_OK while the stream may go on, else the status to end it with (|details|
 * filled): PERMISSION_DENIED when the caller is entitled to nothing (any more). */
static grpc_status_code snapshot(struct agent_wlapi *w, struct watcher *wt,
                                 char details[RPC_DETAILS_LEN])
{
    size_t n = 0;
    bool wait = false; /* nothing to send yet, and no reason to end the stream */
    X509SVIDResponse svids = X509_SVIDRESPONSE__INIT;
    X509BundlesResponse bundles = X509_BUNDLES_RESPONSE__INIT;
    JWTBundlesResponse jwt_bundles = JWTBUNDLES_RESPONSE__INIT;
    Weft__Agent__V1__ProxyConfigResponse proxy = WEFT__AGENT__V1__PROXY_CONFIG_RESPONSE__INIT;
    ProtobufCMessage *m = NULL;
    switch (wt->kind) {
    case KIND_X509_SVID:
        n = w->ops.x509(w->ops.arg, &wt->sel, &svids);
        m = &svids.base;
        break;
    case KIND_X509_BUNDLES:
        n = w->ops.bundles(w->ops.arg, &wt->sel, &bundles);
        m = &bundles.base;
        break;
    case KIND_JWT_BUNDLES:
        n = w->ops.jwt_bundles(w->ops.arg, &wt->sel, &jwt_bundles, &wait);
        m = &jwt_bundles.base;
        break;
    case KIND_PROXY_CONFIG:
        if (wt->proxy == NULL) {
            return GRPC_STATUS_OK; /* its request has not come yet */
        }
        grpc_status_code st =
            w->ops.proxy_config(w->ops.arg, wt->proxy, &wt->sel, &proxy, &wait, details);
        if (st != GRPC_STATUS_OK) {
            return st;
        }
        n = 1;
        m = &proxy.base;
        break;
    }
    if (wait) {
        return GRPC_STATUS_OK;
    }
    if (n == 0) {
        snprintf(details, RPC_DETAILS_LEN, "no identity issued");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    uint64_t d = digest(m);
    if (d != wt->last && rpc_stream_send(wt->s, m) == WEFT_OK) {
        wt->last = d;
    }
    return GRPC_STATUS_OK;
}

static enum kind kind_of(const char *method)
{
    if (strcmp(method, AGENT_PROXY_CONFIG_PATH) == 0) {
        return KIND_PROXY_CONFIG;
    }
    if (strcmp(method, "/SpiffeWorkloadAPI/FetchJWTBundles") == 0) {
        return KIND_JWT_BUNDLES;
    }
    if (strcmp(method, "/SpiffeWorkloadAPI/FetchX509Bundles") == 0) {
        return KIND_X509_BUNDLES;
    }
    return KIND_X509_SVID;
}

static grpc_status_code stream_open(void *arg, const struct rpc_ctx *ctx, struct rpc_stream *s,
                                    char details[RPC_DETAILS_LEN])
{
    struct agent_wlapi *w = arg;
    enum kind kind = kind_of(ctx->method);
    if (!rpc_ctx_header(ctx, AGENT_WLAPI_HEADER, "true")) {
        snprintf(details, RPC_DETAILS_LEN, "security header missing from request");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if ((kind == KIND_PROXY_CONFIG && w->ops.proxy_open == NULL) ||
        (kind == KIND_JWT_BUNDLES && w->ops.jwt_bundles == NULL)) {
        snprintf(details, RPC_DETAILS_LEN, "not served by this agent");
        return GRPC_STATUS_UNIMPLEMENTED;
    }
    if (!w->ops.ready(w->ops.arg)) {
        snprintf(details, RPC_DETAILS_LEN, "the agent is not ready yet: retry");
        return GRPC_STATUS_UNAVAILABLE;
    }
    size_t same_uid = 0;
    for (const struct watcher *o = w->watchers; o != NULL; o = o->next) {
        same_uid += o->peer.local.uid == ctx->peer.local.uid;
    }
    if (same_uid >= AGENT_WLAPI_MAX_STREAMS_PER_UID) { /* one workload cannot take them all */
        snprintf(details, RPC_DETAILS_LEN, "uid %u has %d streams open already: retry",
                 (unsigned)ctx->peer.local.uid, AGENT_WLAPI_MAX_STREAMS_PER_UID);
        return GRPC_STATUS_UNAVAILABLE;
    }
    if (w->num_watchers >= AGENT_WLAPI_MAX_STREAMS) {
        snprintf(details, RPC_DETAILS_LEN, "the agent serves %d streams already: retry",
                 AGENT_WLAPI_MAX_STREAMS);
        return GRPC_STATUS_UNAVAILABLE;
    }
    struct watcher *wt = weft_xcalloc(1, sizeof(*wt));
    wt->s = s;
    wt->kind = kind;
    wt->pid = (int)ctx->peer.local.pid;
    wt->peer = ctx->peer;
    wt->opened = time(NULL);
    char why[256] = "";
    char pid[16], uid[16];
    snprintf(pid, sizeof(pid), "%d", wt->pid);
    snprintf(uid, sizeof(uid), "%u", (unsigned)ctx->peer.local.uid);
    int rc = ctx->peer.local.set ? w->ops.attest(w->ops.arg, &ctx->peer, &wt->sel, why, sizeof(why))
                                 : WEFT_ENOTFOUND;
    char sdetails[RPC_DETAILS_LEN];
    if (rc == WEFT_OK && kind == KIND_PROXY_CONFIG) {
        /* a proxy without an SVID has nothing to be configured for */
        X509SVIDResponse svids = X509_SVIDRESPONSE__INIT;
        if (w->ops.x509(w->ops.arg, &wt->sel, &svids) == 0) {
            rc = WEFT_ENOTFOUND;
            snprintf(why, sizeof(why), "no entry matches its selectors");
        }
    }
    if (rc != WEFT_OK || snapshot(w, wt, sdetails) != GRPC_STATUS_OK) {
        weft_log(WEFT_LOG_WARN, "workload api: no identity for the caller", 4, "method",
                 ctx->method, "pid", pid, "uid", uid, "reason",
                 rc != WEFT_OK ? why : "no entry matches its selectors");
        free(wt);
        snprintf(details, RPC_DETAILS_LEN, "no identity issued");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    wt->next = w->watchers;
    if (w->watchers != NULL) {
        w->watchers->prev = wt;
    }
    w->watchers = wt;
    w->num_watchers++;
    rpc_stream_set_user(s, wt);
    return GRPC_STATUS_OK;
}

static void stream_message(void *arg, struct rpc_stream *s, const uint8_t *msg, size_t len)
{
    struct agent_wlapi *w = arg;
    struct watcher *wt = rpc_stream_user(s);
    if (wt == NULL || wt->kind != KIND_PROXY_CONFIG) {
        return; /* the one empty request of the SPIFFE streams changes nothing */
    }
    char details[RPC_DETAILS_LEN] = "";
    grpc_status_code st = GRPC_STATUS_INVALID_ARGUMENT;
    Weft__Agent__V1__ProxyConfigRequest *req = NULL;
    if (wt->proxy != NULL) {
        snprintf(details, sizeof(details), "one ProxyConfigRequest per stream");
    } else if ((req = weft__agent__v1__proxy_config_request__unpack(NULL, len, msg)) == NULL) {
        snprintf(details, sizeof(details), "ProxyConfigRequest does not decode");
    } else {
        st = w->ops.proxy_open(w->ops.arg, &wt->peer, &wt->sel, req, &wt->proxy, details);
        weft__agent__v1__proxy_config_request__free_unpacked(req, NULL);
    }
    if (st == GRPC_STATUS_OK) {
        st = snapshot(w, wt, details);
    }
    if (st != GRPC_STATUS_OK) {
        rpc_stream_finish(s, st, details);
    }
}

static void unlink_watcher(struct agent_wlapi *w, struct watcher *wt)
{
    if (wt->prev != NULL) {
        wt->prev->next = wt->next;
    } else {
        w->watchers = wt->next;
    }
    if (wt->next != NULL) {
        wt->next->prev = wt->prev;
    }
    w->num_watchers--;
    if (wt->proxy != NULL) {
        w->ops.proxy_close(w->ops.arg, wt->proxy);
    }
    free(wt);
}

static void stream_closed(void *arg, struct rpc_stream *s)
{
    struct watcher *wt = rpc_stream_user(s);
    if (wt != NULL) {
        unlink_watcher(arg, wt);
    }
}

void agent_wlapi_changed(struct agent_wlapi *w)
{
    for (struct watcher *wt = w->watchers, *next; wt != NULL; wt = next) {
        next = wt->next;
        char details[RPC_DETAILS_LEN];
        grpc_status_code st = snapshot(w, wt, details);
        if (st != GRPC_STATUS_OK) {
            /* entitled to nothing any more (revoked, deleted): say so and end the stream */
            rpc_stream_set_user(wt->s, NULL);
            rpc_stream_finish(wt->s, st, details);
            unlink_watcher(w, wt);
        }
    }
}

void agent_wlapi_sweep(struct agent_wlapi *w, time_t now)
{
    for (struct watcher *wt = w->watchers, *next; wt != NULL; wt = next) {
        next = wt->next;
        if (wt->kind == KIND_PROXY_CONFIG && wt->proxy == NULL &&
            now - wt->opened >= AGENT_WLAPI_REQUEST_WAIT_S) {
            rpc_stream_set_user(wt->s, NULL);
            rpc_stream_finish(wt->s, GRPC_STATUS_DEADLINE_EXCEEDED,
                              "no ProxyConfigRequest came within the time allowed");
            unlink_watcher(w, wt);
        }
    }
}

size_t agent_wlapi_streams(const struct agent_wlapi *w) { return w->num_watchers; }

/* --- the JWT-SVID calls (unary) ----------------------------------------------------------------
 */

/* unary_caller runs the checks every call gets after the header and the request's mandatory
 * fields (the handler's own, first): ready, then attested. Returns whether the call may go on;
 * otherwise |reply| is set. */
static bool unary_caller(struct agent_wlapi *w, const struct rpc_ctx *ctx,
                         struct agent_selectors *sel, struct rpc_reply *reply)
{
    if (!w->ops.ready(w->ops.arg)) {
        rpc_fail(reply, GRPC_STATUS_UNAVAILABLE, "the agent is not ready yet: retry");
        return false;
    }
    char why[256] = "";
    int rc = ctx->peer.local.set ? w->ops.attest(w->ops.arg, &ctx->peer, sel, why, sizeof(why))
                                 : WEFT_ENOTFOUND;
    if (rc != WEFT_OK) {
        char pid[16];
        snprintf(pid, sizeof(pid), "%d", (int)ctx->peer.local.pid);
        weft_log(WEFT_LOG_WARN, "workload api: no identity for the caller", 3, "method",
                 ctx->method, "pid", pid, "reason", why);
        rpc_fail(reply, GRPC_STATUS_PERMISSION_DENIED, "no identity issued");
        return false;
    }
    return true;
}

static void fetch_jwt_svid(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                           struct rpc_reply *reply)
{
    struct agent_wlapi *w = arg;
    if (!rpc_ctx_header(ctx, AGENT_WLAPI_HEADER, "true")) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "security header missing from request");
        return;
    }
    JWTSVIDRequest *r = jwtsvidrequest__unpack(NULL, len, req);
    if (r == NULL || r->n_audience == 0) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT,
                 r == NULL ? "JWTSVIDRequest does not decode" : "audience must be specified");
        jwtsvidrequest__free_unpacked(r, NULL);
        return;
    }
    struct agent_selectors *sel = weft_xcalloc(1, sizeof(*sel));
    if (unary_caller(w, ctx, sel, reply)) {
        static JWTSVIDResponse resp;
        jwtsvidresponse__init(&resp);
        reply->status = w->ops.jwt_svid(w->ops.arg, sel, r, &resp, reply->details);
        reply->msg = reply->status == GRPC_STATUS_OK ? &resp.base : NULL;
    }
    free(sel);
    jwtsvidrequest__free_unpacked(r, NULL);
}

static void validate_jwt_svid(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                              struct rpc_reply *reply)
{
    struct agent_wlapi *w = arg;
    if (!rpc_ctx_header(ctx, AGENT_WLAPI_HEADER, "true")) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "security header missing from request");
        return;
    }
    ValidateJWTSVIDRequest *r = validate_jwtsvidrequest__unpack(NULL, len, req);
    const char *missing = r == NULL                ? "ValidateJWTSVIDRequest does not decode"
                          : r->audience[0] == '\0' ? "audience must be specified"
                          : r->svid[0] == '\0'     ? "svid must be specified"
                                                   : NULL;
    if (missing != NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "%s", missing);
        validate_jwtsvidrequest__free_unpacked(r, NULL);
        return;
    }
    struct agent_selectors *sel = weft_xcalloc(1, sizeof(*sel));
    if (unary_caller(w, ctx, sel, reply)) {
        static ValidateJWTSVIDResponse resp;
        validate_jwtsvidresponse__init(&resp);
        reply->status = w->ops.jwt_validate(w->ops.arg, sel, r, &resp, reply->details);
        reply->msg = reply->status == GRPC_STATUS_OK ? &resp.base : NULL;
    }
    free(sel);
    validate_jwtsvidrequest__free_unpacked(r, NULL);
}

static const struct rpc_method jwt_methods[] = {
    {.path = "/SpiffeWorkloadAPI/FetchJWTSVID",
     .kind = RPC_UNARY,
     .unary = fetch_jwt_svid,
     .max_request = 8192},
    {.path = "/SpiffeWorkloadAPI/FetchJWTBundles",
     .kind = RPC_STREAM,
     .open = stream_open,
     .message = stream_message,
     .closed = stream_closed,
     .max_request = 1024},
    {.path = "/SpiffeWorkloadAPI/ValidateJWTSVID",
     .kind = RPC_UNARY,
     .unary = validate_jwt_svid,
     .max_request = 16384},
};

static const struct rpc_method methods[] = {
    {.path = "/SpiffeWorkloadAPI/FetchX509SVID",
     .kind = RPC_STREAM,
     .open = stream_open,
     .message = stream_message,
     .closed = stream_closed,
     .max_request = 1024},
    {.path = "/SpiffeWorkloadAPI/FetchX509Bundles",
     .kind = RPC_STREAM,
     .open = stream_open,
     .message = stream_message,
     .closed = stream_closed,
     .max_request = 1024},
    {.path = AGENT_PROXY_CONFIG_PATH,
     .kind = RPC_STREAM,
     .open = stream_open,
     .message = stream_message,
     .closed = stream_closed,
     .max_request = 4096},
};

/* --- start and stop --------------------------------------------------------------------------- */

static int listen_unix(struct agent_wlapi *w, const char *path, char *err, size_t err_len)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path) || path[0] != '/') {
        snprintf(err, err_len, "%.200s: an absolute path of at most %zu bytes is needed", path,
                 sizeof(a.sun_path) - 1);
        return WEFT_EINVAL;
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    snprintf(w->path, sizeof(w->path), "%s", path);
    char dir[sizeof(a.sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, err_len, "cannot make %.200s: %s", dir, strerror(errno));
            return WEFT_EIO;
        }
    }
    /* a socket file nobody accepts on is left over from a dead agent */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
        close(probe);
        snprintf(err, err_len, "%.200s: another agent is serving there", path);
        return WEFT_EINVAL;
    }
    if (probe >= 0) {
        close(probe);
    }
    unlink(path);
    w->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (w->lfd < 0 || bind(w->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        chmod(path, 0777) != 0 || listen(w->lfd, 512) != 0) {
        snprintf(err, err_len, "cannot listen on %.200s: %s", path, strerror(errno));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

int agent_wlapi_start(struct agent_wlapi **out, struct rpc_server *rpc, const char *socket_path,
                      const struct agent_wlapi_ops *ops, char *err, size_t err_len)
{
    *out = NULL;
    struct agent_wlapi *w = weft_xcalloc(1, sizeof(*w));
    w->ops = *ops;
    w->lfd = -1;
    w->stop_pipe[0] = w->stop_pipe[1] = -1;
    int rc = listen_unix(w, socket_path, err, err_len);
    if (rc == WEFT_OK && pipe2(w->stop_pipe, O_CLOEXEC) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        rc = WEFT_EIO;
    }
    if (rc == WEFT_OK) {
        w->gs = grpc_server_create(NULL, NULL);
        /* the JWT calls when the agent answers them, else UNIMPLEMENTED (an unknown method) */
        static struct rpc_method all[nitems(methods) + nitems(jwt_methods)];
        size_t n = nitems(methods);
        memcpy(all, methods, sizeof(methods));
        if (ops->jwt_svid != NULL) {
            memcpy(all + n, jwt_methods, sizeof(jwt_methods));
            n += nitems(jwt_methods);
        }
        struct rpc_service svc = {all, n, w, true};
        if (rpc_server_add(rpc, w->gs, &svc) != WEFT_OK) {
            snprintf(err, err_len, "cannot register the Workload API");
            rc = WEFT_EINTERNAL;
        }
    }
    if (rc != WEFT_OK) {
        agent_wlapi_stop(w);
        agent_wlapi_free(w);
        return rc;
    }
    *out = w;
    return WEFT_OK;
}

int agent_wlapi_serve(struct agent_wlapi *w, char *err, size_t err_len)
{
    w->fds = grpcfd_server_new(w->gs);
    if (pthread_create(&w->acceptor, NULL, accept_loop, w) != 0) {
        snprintf(err, err_len, "cannot start the acceptor thread");
        return WEFT_EINTERNAL;
    }
    w->accepting = true;
    return WEFT_OK;
}

void agent_wlapi_stop(struct agent_wlapi *w)
{
    if (w == NULL) {
        return;
    }
    if (w->accepting) {
        (void)!write(w->stop_pipe[1], "x", 1);
        pthread_join(w->acceptor, NULL);
        w->accepting = false;
    }
    if (w->fds != NULL) {
        grpcfd_server_close(w->fds);
    }
    if (w->lfd >= 0) {
        close(w->lfd);
        w->lfd = -1;
        unlink(w->path);
    }
    /* the rpc_server cancels the streams as it stops: they no longer point at us */
    while (w->watchers != NULL) {
        rpc_stream_set_user(w->watchers->s, NULL);
        unlink_watcher(w, w->watchers);
    }
}

void agent_wlapi_free(struct agent_wlapi *w)
{
    if (w == NULL) {
        return;
    }
    grpcfd_server_free(w->fds);
    for (int i = 0; i < 2; i++) {
        if (w->stop_pipe[i] >= 0) {
            close(w->stop_pipe[i]);
        }
    }
    free(w);
}
