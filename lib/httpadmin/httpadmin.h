/* lib/httpadmin/httpadmin.h: a daemon's admin port, plain HTTP/1.1 (DESIGN.md §7).
 *
 *   GET /metrics  200, the registry in the Prometheus text format 0.0.4
 *   GET /ready    200 "ready\n", or 503 and the ready callback's reason
 *   GET /healthz  200 "ok\n" while the server thread runs
 *   the daemon's own routes (httpadmin_route): GET, or POST without a body
 *   other paths   404; other methods 405 (with "Allow:"); a request body 413
 *
 * One thread of its own serves every connection with poll(2): up to |max_conns| at once, each
 * non-blocking. Requests are parsed by libhttp-parser. Everything a client controls is bounded:
 * the request head (HTTPADMIN_MAX_HEAD bytes, 431 beyond), the request target
 * (HTTPADMIN_MAX_URL bytes, 414 beyond), and the whole life of a connection (|timeout_ms| from
 * accept to close, reading, writing and draining together), so a client that sends slowly or not
 * at all holds one slot for |timeout_ms| at most. While every slot is taken the server stops
 * accepting; new clients wait in the kernel's backlog and are served when a slot frees, within
 * |timeout_ms|. Every response carries Content-Length and "Connection: close"; the server then
 * shuts its side down and drains what the client still sends before closing, so the client reads
 * the response rather than a reset.
 *
 * The ready callback and weft_metrics_write run on the server thread, one request at a time:
 * while either runs, no other connection is served. */
#ifndef WEFT_LIB_HTTPADMIN_HTTPADMIN_H
#define WEFT_LIB_HTTPADMIN_HTTPADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/base/err.h"
#include "lib/base/metrics.h"

#define HTTPADMIN_DEFAULT_LISTEN "127.0.0.1:15000"
#define HTTPADMIN_DEFAULT_TIMEOUT_MS 5000
#define HTTPADMIN_DEFAULT_MAX_CONNS 8
#define HTTPADMIN_MAX_CONNS_LIMIT 1024 /* the largest |max_conns| accepted */
#define HTTPADMIN_MAX_HEAD 8192        /* bytes of request line and headers, CRLFCRLF included */
#define HTTPADMIN_MAX_URL 1024         /* bytes of the request target */
#define HTTPADMIN_REASON_LEN 256       /* bytes the ready callback may write, NUL included */
#define HTTPADMIN_ERR_LEN 256          /* enough for every message httpadmin_start writes */

#define HTTPADMIN_MAX_ROUTES 8

/* struct httpadmin_route is one more path a daemon serves ("/certs"; "/quitquitquit" with
 * |post|). Its handler runs on the server thread, one request at a time, and must not block for
 * long: it sets |*body| (malloc'd; the server frees it), its length and content type, and
 * returns the HTTP status (200, 404, 409, 500 or 503). */
struct httpadmin_route {
    const char *path;
    bool post; /* POST with no body, instead of GET */
    int (*handler)(void *arg, char **body, size_t *body_len, const char **content_type);
    void *arg;
};

/* struct httpadmin_config: what to serve and where. A zeroed config is valid: it listens on
 * HTTPADMIN_DEFAULT_LISTEN with the default limits, /metrics answers 404 and /ready 200. */
struct httpadmin_config {
    /* listen is "IPV4:PORT", "[IPV6]:PORT" or "unix:PATH". Addresses are numeric (no name
     * lookup); port 0 picks a free port (see httpadmin_port). A unix socket whose file is left
     * over from a dead server (nobody accepts on it) is replaced; the server removes the file
     * when it stops. NULL: HTTPADMIN_DEFAULT_LISTEN. */
    const char *listen;
    /* metrics is borrowed: it must outlive the server. NULL: /metrics answers 404. */
    struct weft_metrics *metrics;
    /* ready returns true when the daemon can do its work. Otherwise it writes a one-line reason
     * (NUL-terminated, at most |why_len| bytes, which is HTTPADMIN_REASON_LEN) into |why|, which
     * the 503 response carries. Runs on the server thread for each GET /ready; it must not block
     * for long nor call httpadmin_* functions. NULL: always ready. */
    bool (*ready)(void *arg, char *why, size_t why_len);
    void *ready_arg;
    const struct httpadmin_route *routes; /* copied; at most HTTPADMIN_MAX_ROUTES */
    size_t num_routes;
    int timeout_ms;   /* the longest a connection lives, from accept; 0: the default */
    size_t max_conns; /* connections served at once; 0: the default */
};

struct httpadmin;

/* httpadmin_start binds and listens on |cfg->listen| (TCP sockets with SO_REUSEADDR) and starts
 * the server thread, which runs with every signal blocked so that the process's signals go to
 * its other threads. |cfg| is copied; |cfg->metrics| and |cfg->ready_arg| are borrowed. On
 * WEFT_OK the caller owns |*out| and frees it with httpadmin_stop. Otherwise |*out| is NULL and
 * |err| (|err_len| bytes, truncated if shorter than HTTPADMIN_ERR_LEN) says what failed and
 * where, e.g. "httpadmin: cannot bind 127.0.0.1:15000: Address already in use":
 *  - WEFT_EINVAL: |listen| is not one of the accepted forms, a negative |timeout_ms|,
 *    |max_conns| above HTTPADMIN_MAX_CONNS_LIMIT, or over HTTPADMIN_MAX_ROUTES routes;
 *  - WEFT_EIO: the socket, bind, listen, eventfd or thread failed (errno's text is named). */
WEFT_MUST_USE int httpadmin_start(struct httpadmin **out, const struct httpadmin_config *cfg,
                                  char *err, size_t err_len);

/* httpadmin_port returns the TCP port |h| listens on (the one picked when |listen| asked for
 * port 0), or 0 for a unix socket. */
int httpadmin_port(const struct httpadmin *h);

/* httpadmin_stop wakes the server thread and joins it; the thread closes every connection
 * without answering it. Then it closes the listening socket (and removes a unix socket's file)
 * and frees |h|. It returns promptly, whatever clients are doing: the thread never blocks
 * outside poll(2), the ready callback and weft_metrics_write. NULL does nothing. */
void httpadmin_stop(struct httpadmin *h);

#endif
