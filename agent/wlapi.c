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
#include <unistd.h>

#include "agent/peer.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/transport/grpcfd.h"

enum kind { KIND_X509_SVID, KIND_X509_BUNDLES, KIND_PROXY_CONFIG };

struct watcher {
    struct watcher *next, *prev;
    struct rpc_stream *s;
    enum kind kind;
    int pid;
    uint64_t last; /* digest of the snapshot sent last: an unchanged one is not sent again */
    struct weft_peer peer;
    struct agent_selectors sel;
    void *proxy; /* KIND_PROXY_CONFIG: the agent's state for it, once its request came */
};

/* digest: FNV-1a over a message's encoding (to tell a changed snapshot from the same one). */
static uint64_t digest(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = weft_xmalloc(len + 1);
    protobuf_c_message_pack(m, buf);
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h = (h ^ buf[i]) * UINT64_C(1099511628211);
    }
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
    X509SVIDResponse svids = X509_SVIDRESPONSE__INIT;
    X509BundlesResponse bundles = X509_BUNDLES_RESPONSE__INIT;
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
    case KIND_PROXY_CONFIG:
        if (wt->proxy == NULL) {
            return GRPC_STATUS_OK; /* its request has not come yet */
        }
        grpc_status_code st = w->ops.proxy_config(w->ops.arg, wt->proxy, &wt->sel, &proxy, details);
        if (st != GRPC_STATUS_OK) {
            return st;
        }
        n = 1;
        m = &proxy.base;
        break;
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

static grpc_status_code stream_open(void *arg, const struct rpc_ctx *ctx, struct rpc_stream *s,
                                    char details[RPC_DETAILS_LEN])
{
    struct agent_wlapi *w = arg;
    enum kind kind = strcmp(ctx->method, AGENT_PROXY_CONFIG_PATH) == 0 ? KIND_PROXY_CONFIG
                     : strstr(ctx->method, "Bundles") != NULL          ? KIND_X509_BUNDLES
                                                                       : KIND_X509_SVID;
    if (!rpc_ctx_header(ctx, AGENT_WLAPI_HEADER, "true")) {
        snprintf(details, RPC_DETAILS_LEN, "security header missing from request");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (kind == KIND_PROXY_CONFIG && w->ops.proxy_open == NULL) {
        snprintf(details, RPC_DETAILS_LEN, "this agent serves no proxy configuration");
        return GRPC_STATUS_UNIMPLEMENTED;
    }
    if (!w->ops.ready(w->ops.arg)) {
        snprintf(details, RPC_DETAILS_LEN, "the agent is not ready yet: retry");
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
        rc = w->ops.x509(w->ops.arg, &wt->sel, &svids) > 0 ? WEFT_OK : WEFT_ENOTFOUND;
        snprintf(why, sizeof(why), "no entry matches its selectors");
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

size_t agent_wlapi_streams(const struct agent_wlapi *w) { return w->num_watchers; }

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
        struct rpc_service svc = {methods, nitems(methods), w, true};
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
