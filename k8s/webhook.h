/* k8s/webhook.h: weft-injector, the mutating admission webhook that injects weft's sidecar into
 * pods as the API server creates them (reference: kubernetes.md §2.1, §2.2; deploy/base/
 * injector.yaml).
 *
 * Two layers:
 *  - k8s_webhook_review: one AdmissionReview in (JSON bytes), one AdmissionReview out. Pure: no
 *    I/O, no clock, no log; the fuzz target and the server both call it.
 *  - k8s_webhook_server: HTTPS (BoringSSL, TLS 1.2 and 1.3) on one port, HTTP/1.1 parsed by
 *    libhttp-parser, keep-alive, one thread per connection:
 *      POST /inject   Content-Type application/json: an AdmissionReview (a query such as the
 *                     API server's "?timeout=10s" is ignored)
 *      GET /healthz   200 "ok\n" while the server runs
 *      GET /ready     200 "ready\n"; 503 once it is stopping
 *      GET /metrics   Prometheus text format 0.0.4
 *
 * What the answer is. The MutatingWebhookConfiguration has failurePolicy Fail, so an error
 * response (or none) blocks the pod's creation. The injector therefore allows every pod:
 *  - injected: allowed, patchType JSONPatch, patch = base64 of k8s_inject_patch's patch;
 *  - skipped (operation other than CREATE, a dry run, a subresource, a kind other than Pod, an
 *    object k8s_inject_patch leaves alone: already injected on reinvocation, opted out,
 *    hostNetwork, kube-system, ...): allowed, no patch;
 *  - refused (k8s_inject_patch says the pod cannot be injected as it is, e.g. a bad weft.dev/
 *    annotation): allowed, no patch, and a "warnings" entry that kubectl shows the user; the
 *    server logs it at warn and counts it, so a pod that runs outside the mesh is visible;
 *  - bad request (the body is not an AdmissionReview with a request.uid): HTTP 400, no review.
 * The response's apiVersion is the request's (admission.k8s.io/v1, or v1beta1 whose shape is
 * the same). The namespace given to injection is request.namespace: a pod created by a
 * ReplicaSet has generateName, no name, and often no metadata.namespace. */
#ifndef WEFT_K8S_WEBHOOK_H
#define WEFT_K8S_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "k8s/inject.h"
#include "lib/base/err.h"
#include "lib/base/metrics.h"

#define K8S_WEBHOOK_MAX_BODY (4u << 20) /* bytes of one request body; 413 beyond */
#define K8S_WEBHOOK_MAX_HEAD 16384      /* bytes of request line and headers; 431 beyond */
#define K8S_WEBHOOK_MAX_URL 2048        /* bytes of the request target; 414 beyond */
#define K8S_WEBHOOK_MAX_UID 256         /* bytes of request.uid; a longer one is a bad request */
/* JSON values and keys of one body (counted as the '{', '[', ',' and ':' outside strings): the
 * tree jansson builds costs up to about 250 bytes of memory per token (an empty object), which
 * a body's byte limit alone would let reach 1 GiB; a real pod spec has a few thousand */
#define K8S_WEBHOOK_MAX_JSON_TOKENS 100000
#define K8S_WEBHOOK_DEFAULT_MAX_CONNS 64     /* connections at once; more wait in the backlog */
#define K8S_WEBHOOK_DEFAULT_REQUEST_MS 10000 /* a request, handshake to last response byte */
/* A keep-alive connection between requests. Longer than the API server's own idle timeout (90 s:
 * k8s.io/apimachinery SetTransportDefaults copies http.DefaultTransport's), so that the client,
 * not the server, closes an idle connection: a POST the client sends just as the server closes
 * is not retried, and with failurePolicy Fail the pod's creation would fail. */
#define K8S_WEBHOOK_DEFAULT_IDLE_MS 120000
#define K8S_WEBHOOK_DEFAULT_MAX_REQUESTS 1000 /* requests on one connection, then close */
#define K8S_WEBHOOK_DEFAULT_GRACE_MS 10000    /* SIGTERM: time in-flight requests get */
/* bytes of request bodies buffered at once, all connections together; 503 beyond */
#define K8S_WEBHOOK_DEFAULT_MAX_BODY_TOTAL (16u << 20)
#define K8S_WEBHOOK_RELOAD_CHECK_MS 2000 /* how often the cert and key mtimes are read */

enum k8s_webhook_result {
    K8S_WEBHOOK_INJECTED = 0,
    K8S_WEBHOOK_SKIPPED,
    K8S_WEBHOOK_REFUSED,
    K8S_WEBHOOK_BAD_REQUEST,
};

/* k8s_webhook_result_name returns "injected", "skipped", "refused" or "bad-request". */
const char *k8s_webhook_result_name(enum k8s_webhook_result r);

/* struct k8s_webhook_review is what k8s_webhook_review decided, for the caller's response and
 * log line. The strings are owned by it (k8s_webhook_review_cleanup). */
struct k8s_webhook_review {
    enum k8s_webhook_result result;
    char *response; /* the AdmissionReview to send (NULL for a bad request) */
    size_t response_len;
    char *uid;        /* request.uid, or NULL */
    char *namespace;  /* request.namespace, or NULL */
    char *kind;       /* request.kind.kind, or NULL */
    char *name;       /* request.name, else the object's metadata.name or generateName */
    char *operation;  /* request.operation, or NULL */
    char reason[512]; /* skipped: why; refused or bad request: the error */
};

/* k8s_webhook_review_init zeroes |r|; k8s_webhook_review_cleanup frees what it holds and
 * zeroes it again (safe on a zeroed one). */
void k8s_webhook_review_init(struct k8s_webhook_review *r);
void k8s_webhook_review_cleanup(struct k8s_webhook_review *r);

/* k8s_webhook_review reads the AdmissionReview |body| (|len| bytes, at most
 * K8S_WEBHOOK_MAX_BODY) and fills |out| as the header comment says, injecting with |opts|
 * (whose |namespace| it overrides with request.namespace). |out| must be zeroed. It always
 * returns with |out->result| set: every outcome, a bad request included, is in |out|. */
void k8s_webhook_review(struct k8s_webhook_review *out, const char *body, size_t len,
                        const struct k8s_inject_opts *opts);

/* --- the HTTPS server --------------------------------------------------------------------- */

struct k8s_webhook_config {
    const char *listen;   /* "IPV4:PORT" or "[IPV6]:PORT"; port 0 picks one (k8s_webhook_port) */
    const char *tls_cert; /* PEM: the serving certificate, then its chain */
    const char *tls_key;  /* PEM: its private key */
    struct k8s_inject_opts inject; /* copied; |image| borrowed */
    int request_ms;                /* 0: K8S_WEBHOOK_DEFAULT_REQUEST_MS */
    int idle_ms;                   /* 0: K8S_WEBHOOK_DEFAULT_IDLE_MS */
    int grace_ms;                  /* 0: K8S_WEBHOOK_DEFAULT_GRACE_MS */
    int reload_check_ms;           /* 0: K8S_WEBHOOK_RELOAD_CHECK_MS */
    size_t max_conns;              /* 0: K8S_WEBHOOK_DEFAULT_MAX_CONNS; at most 4096 */
    size_t max_requests;           /* per connection; 0: K8S_WEBHOOK_DEFAULT_MAX_REQUESTS */
    size_t max_body_total;         /* 0: K8S_WEBHOOK_DEFAULT_MAX_BODY_TOTAL */
};

struct k8s_webhook_server;

/* k8s_webhook_server_start loads the certificate and key (both must load and match), binds,
 * listens and starts the accept thread, which runs with every signal blocked. On WEFT_OK the
 * caller owns |*out| (k8s_webhook_server_stop). Otherwise |*out| is NULL and |err| says what
 * failed and where: WEFT_EINVAL (a bad listen address or limit), WEFT_ECRYPTO (the certificate
 * or key does not load or they do not match), WEFT_EIO (socket, bind, listen or thread). While
 * it runs, the files are checked every |reload_check_ms|; when their mtime, size or inode
 * changes, the new pair is loaded for new connections, and a pair that does not load is logged
 * at error and the old one kept. */
WEFT_MUST_USE int k8s_webhook_server_start(struct k8s_webhook_server **out,
                                           const struct k8s_webhook_config *cfg, char *err,
                                           size_t err_len);

/* k8s_webhook_port returns the TCP port the server listens on. */
int k8s_webhook_port(const struct k8s_webhook_server *s);

/* k8s_webhook_metrics returns the server's registry (borrowed). */
struct weft_metrics *k8s_webhook_metrics(struct k8s_webhook_server *s);

/* k8s_webhook_server_stop stops accepting (GET /ready answers 503 on connections still open),
 * closes idle connections, lets requests in flight finish for up to |grace_ms|, then shuts the
 * remaining sockets down, joins every thread and frees |s|. NULL does nothing. */
void k8s_webhook_server_stop(struct k8s_webhook_server *s);

#endif
