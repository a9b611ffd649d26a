/* proxy/probes.h: the kubelet's HTTP probes, through the proxy (--probe-listen).
 *
 * Under STRICT mTLS the kubelet, which has no mesh certificate, cannot reach an app's probe port.
 * The injector rewrites each httpGet probe of an app container to
 * GET http://POD_IP:15021/app-health/<container>/<livez|readyz|startupz>, excludes port 15021
 * from the inbound redirect, and hands the proxy the original probes in WEFT_APP_PROBES:
 *
 *   {"/app-health/web/readyz": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP",
 *     "httpHeaders": [{"name": "X-A", "value": "b"}]}, "timeoutSeconds": 1}}
 *
 * The probe server faces the network, so it serves only:
 *   GET /ready              200 "ready\n", or 503 "not ready\n" (the admin port's /ready;
 *                           why goes to the proxy's log only)
 *   GET /app-health/...     a path WEFT_APP_PROBES names: the original probe is made to the app
 *                           at 127.0.0.1:<port> (plain HTTP, or HTTPS without verification as
 *                           the kubelet does) within timeoutSeconds; the app's status code is
 *                           passed through (redirects are not followed) with at most
 *                           PROXY_PROBES_MAX_BODY bytes of its body; an app that cannot be
 *                           reached, answers garbage or is too slow gives 503 and a fixed line
 *                           ("probe timed out" or "probe failed: no answer from the app"); the
 *                           reason goes to the proxy's log only
 *   anything else           404 (405 for another method on one of the paths above)
 * The port is open to anyone in the cluster, so a client that is slow to send its request holds
 * no worker: one thread reads request heads (PROXY_PROBES_HEAD_TIMEOUT_MS, PROXY_PROBES_MAX_HEAD
 * bytes, PROXY_PROBES_MAX_HEAD_CONNS connections with the oldest closed first, and
 * PROXY_PROBES_MAX_PER_PEER from one address, also oldest first) and hands only complete requests
 * to the workers. The proxy's uid makes the request, so the nat rules (`weftctl iptables`: the
 * proxy uid and loopback RETURN) let it reach the app untouched. */
#ifndef WEFT_PROXY_PROBES_H
#define WEFT_PROXY_PROBES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "lib/base/metrics.h"

#define PROXY_PROBES_ENV "WEFT_APP_PROBES"
#define PROXY_PROBES_DEFAULT_LISTEN "0.0.0.0:15021"
#define PROXY_PROBES_MAX_JSON (64 * 1024) /* bytes of WEFT_APP_PROBES */
#define PROXY_PROBES_MAX 64               /* probes in WEFT_APP_PROBES */
#define PROXY_PROBES_MAX_HEADERS 16       /* httpHeaders of one probe */
#define PROXY_PROBES_MAX_HEADER_NAME 128  /* bytes of a header's name */
#define PROXY_PROBES_MAX_HEADER_VALUE 1024
#define PROXY_PROBES_MAX_PATH 1024        /* bytes of httpGet.path, and of a request's target */
#define PROXY_PROBES_MAX_TIMEOUT_S 60     /* timeoutSeconds; the default is 1 */
#define PROXY_PROBES_MAX_HEAD 8192        /* bytes of a request head the server reads */
#define PROXY_PROBES_MAX_BODY 1024        /* bytes of the app's body passed on */
#define PROXY_PROBES_MAX_CONCURRENT 8     /* /ready and app probes served at once (the workers) */
#define PROXY_PROBES_MAX_QUEUED 64        /* complete requests waiting for a worker; more: 503 */
#define PROXY_PROBES_HEAD_TIMEOUT_MS 1000 /* to send the whole request head, from accept */
/* connections still sending their head; when full, the oldest of them is closed for a new one */
#define PROXY_PROBES_MAX_HEAD_CONNS 128
/* connections held from one address, in any phase; one more takes the place of that address's
 * oldest connection still sending its head, or is closed at once if there is none */
#define PROXY_PROBES_MAX_PER_PEER 16
/* connections being answered or waiting for the client to close; when full, the oldest is closed */
#define PROXY_PROBES_MAX_ANSWERING 128
#define PROXY_PROBES_ERR_LEN 256

/* struct proxy_probe is one entry of WEFT_APP_PROBES. */
struct proxy_probe {
    char *key;  /* "/app-health/web/readyz": the path the kubelet asks for */
    char *path; /* httpGet.path: the app's path (and query), "/" when absent */
    uint16_t port;
    bool https;
    int timeout_s;                           /* 1..PROXY_PROBES_MAX_TIMEOUT_S */
    char *headers[PROXY_PROBES_MAX_HEADERS]; /* "Name: value", without CRLF */
    size_t num_headers;
};

/* struct proxy_probes is the parsed WEFT_APP_PROBES. proxy_probes_init leaves it empty. */
struct proxy_probes {
    struct proxy_probe *probes;
    size_t num_probes;
};

void proxy_probes_init(struct proxy_probes *p);
void proxy_probes_cleanup(struct proxy_probes *p);

/* proxy_probes_parse reads |json_len| bytes of WEFT_APP_PROBES into |out| (initialised, empty),
 * strictly: an object of at most PROXY_PROBES_MAX entries; each key
 * /app-health/<container>/<livez|readyz|startupz> (a container name is a DNS-1123 label); each
 * value {"httpGet": {...}, "timeoutSeconds": N} with nothing else; httpGet has "port" (an
 * integer 1..65535) and optionally "path" (starting with '/', at most PROXY_PROBES_MAX_PATH
 * bytes of visible ASCII), "scheme" ("HTTP" or "HTTPS") and "httpHeaders" (at most
 * PROXY_PROBES_MAX_HEADERS of {"name": token, "value": no control characters but tab}); a Host
 * header is dropped with a warning in the log, since the request to the app names 127.0.0.1.
 * Returns WEFT_OK; WEFT_ELIMIT over a limit; WEFT_EINVAL for anything else, with |err| saying
 * what and where (the key, the field). On failure |out| is left empty. */
WEFT_MUST_USE int proxy_probes_parse(struct proxy_probes *out, const char *json, size_t json_len,
                                     char *err, size_t err_len);

/* proxy_probes_find returns the probe whose key is |path| (|path_len| bytes), or NULL. */
const struct proxy_probe *proxy_probes_find(const struct proxy_probes *p, const char *path,
                                            size_t path_len);

/* struct proxy_probe_request is what the server needs of a request head. */
struct proxy_probe_request {
    bool get;                             /* the method is GET */
    bool has_body;                        /* Content-Length > 0 or a Transfer-Encoding */
    char path[PROXY_PROBES_MAX_PATH + 1]; /* the target's path, without its query; NUL-ended */
    size_t path_len;
};

/* proxy_probe_request_parse reads the request head at the start of |buf|. WEFT_OK: complete,
 * |out| filled. WEFT_EAGAIN: more bytes are needed (and |len| < PROXY_PROBES_MAX_HEAD).
 * WEFT_ELIMIT: the head or target is over its limit. WEFT_EPROTO: not an HTTP/1.x request, or
 * a target without a path. */
WEFT_MUST_USE int proxy_probe_request_parse(struct proxy_probe_request *out, const char *buf,
                                            size_t len);

/* struct proxy_probe_head reads one request head as its bytes come, each byte parsed once (the
 * probe server's loop: a client that sends a byte at a time costs no more than one that sends
 * the head at once). */
struct proxy_probe_head;

struct proxy_probe_head *proxy_probe_head_new(void);
void proxy_probe_head_free(struct proxy_probe_head *h);

/* proxy_probe_head_feed reads the next |len| bytes of the head. It returns what
 * proxy_probe_request_parse returns for all the bytes fed so far, and once that is not
 * WEFT_EAGAIN, returns it again for any further bytes without reading them (and fills |out|
 * again with WEFT_OK). */
WEFT_MUST_USE int proxy_probe_head_feed(struct proxy_probe_head *h, struct proxy_probe_request *out,
                                        const char *buf, size_t len);

/* proxy_probe_result names how one app probe ended, for the log and the metrics. */
enum proxy_probe_result {
    PROXY_PROBE_SUCCESS = 0, /* the app answered 2xx or 3xx */
    PROXY_PROBE_FAILURE,     /* the app answered another status */
    PROXY_PROBE_TIMEOUT,     /* no whole answer within timeoutSeconds */
    PROXY_PROBE_ERROR,       /* no answer: refused, reset, TLS failure, not HTTP */
    PROXY_PROBE_NUM_RESULTS,
};

const char *proxy_probe_result_name(enum proxy_probe_result r);

struct proxy_probe_server_config {
    const char *listen;                /* IPV4:PORT or [IPV6]:PORT */
    const struct proxy_probes *probes; /* borrowed until proxy_probe_server_stop */
    bool (*ready)(void *arg, char *why, size_t why_len); /* NULL: always ready */
    void *ready_arg;
    struct weft_metrics *metrics; /* NULL: none; else weft_proxy_app_probes_total{path,result} */
    const char *app_host;         /* where the app is dialled; NULL: "127.0.0.1" (tests only) */
};

struct proxy_probe_server;

/* proxy_probe_server_start listens on |cfg->listen| and starts one loop thread (accepting,
 * reading heads, writing answers) and PROXY_PROBES_MAX_CONCURRENT workers, each serving one
 * complete request at a time (blocking in an app probe at most its timeoutSeconds, less the time
 * the request waited for a worker), every thread with every signal blocked. On WEFT_OK the caller
 * owns |*out| and frees it with proxy_probe_server_stop. Otherwise |*out| is NULL and |err| says
 * what failed: WEFT_EINVAL for a bad address, WEFT_EIO for socket, bind, listen, eventfd or thread
 * failures. */
WEFT_MUST_USE int proxy_probe_server_start(struct proxy_probe_server **out,
                                           const struct proxy_probe_server_config *cfg, char *err,
                                           size_t err_len);

/* proxy_probe_server_port returns the TCP port the server listens on. */
int proxy_probe_server_port(const struct proxy_probe_server *s);

/* proxy_probe_server_stop stops the loop, wakes the workers, joins them and closes every
 * connection: a worker in an app probe finishes it first, so this takes at most
 * PROXY_PROBES_MAX_TIMEOUT_S (usually the probes' 1 s). NULL does nothing. */
void proxy_probe_server_stop(struct proxy_probe_server *s);

#endif
