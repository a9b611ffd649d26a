/* lib/httpadmin/httpadmin.c: the admin port's HTTP/1.1 server, one poll(2) thread.
 *
 * A connection goes READING (the request head, fed to libhttp-parser as it arrives) -> WRITING
 * (one response, built whole) -> DRAINING (our side shut down, the client's leftovers read and
 * dropped until it closes) -> closed. A deadline set at accept ends it in any state. */
#include "lib/httpadmin/httpadmin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/mem.h"
#include "lib/base/netaddr.h"

#define LISTEN_BACKLOG 64
#define ACCEPT_PAUSE_MS 100   /* after EMFILE and the like: the listener stays readable */
#define MAX_DRAIN (64 * 1024) /* bytes read and dropped after a response before giving up */
#define READ_CHUNK 4096       /* bytes per recv */
#define THREAD_NAME "weft-httpadmin"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE "text/plain; charset=utf-8"

enum conn_state {
    CONN_FREE = 0,
    CONN_READING,
    CONN_WRITING,
    CONN_DRAINING,
};

struct conn {
    int fd;
    enum conn_state state;
    int64_t deadline_ms; /* CLOCK_MONOTONIC; the whole connection, from accept */
    http_parser parser;
    size_t head_len; /* bytes fed to the parser */
    bool head_done;  /* on_headers_complete ran; the parser is paused there */
    bool has_body;
    bool url_too_long;
    char url[HTTPADMIN_MAX_URL];
    size_t url_len;
    const char *allow; /* a 405's Allow value when not "GET" */
    char *out;         /* the response, owned; NULL outside WRITING */
    size_t out_len, out_sent;
    size_t drained;
};

struct httpadmin {
    int listen_fd;
    int wake_fd;     /* eventfd: httpadmin_stop writes it, the thread polls it */
    int port;        /* 0 for a unix socket */
    char *unix_path; /* owned; the socket file to remove at stop, or NULL */
    struct weft_metrics *metrics;
    bool (*ready)(void *arg, char *why, size_t why_len);
    void *ready_arg;
    struct httpadmin_route routes[HTTPADMIN_MAX_ROUTES];
    size_t num_routes;
    int timeout_ms;
    size_t max_conns;
    struct conn *conns;    /* |max_conns| slots */
    struct pollfd *pfds;   /* wake, listener, then one per slot */
    int64_t accept_resume; /* CLOCK_MONOTONIC ms; the listener is not polled before */
    pthread_t thread;
};

static void *serve(void *arg);
static int64_t now_ms(void);
static void accept_clients(struct httpadmin *h, int64_t now);
static void on_readable(struct httpadmin *h, struct conn *c);
static void on_writable(struct conn *c);
static void on_drainable(struct conn *c);
static void route(struct httpadmin *h, struct conn *c);
static void respond(struct conn *c, int status, const char *type, const char *body,
                    size_t body_len);
static void conn_close(struct conn *c);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
};

/* ---- setup ---- */

/* parse_listen turns |listen| into a socket address, or says in |err| why it cannot. */
static int parse_listen(const char *listen, union weft_sockaddr *out, socklen_t *out_len, char *err,
                        size_t err_len)
{
    char why[128];
    if (weft_sockaddr_parse(listen, true, out, out_len, why, sizeof(why)) != WEFT_OK) {
        snprintf(err, err_len, "httpadmin: bad listen address \"%s\": %s", listen, why);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* unix_socket_is_stale says whether nobody accepts on the unix socket at |a|: a server that died
 * without removing its file leaves one behind, which bind refuses with EADDRINUSE. */
static bool unix_socket_is_stale(const union weft_sockaddr *a, socklen_t len)
{
    struct stat st;
    if (lstat(a->un.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    bool stale = connect(fd, &a->sa, len) != 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

/* open_listener binds and listens on |addr_str|, filling |h|'s listen_fd, port and unix_path;
 * on failure, destroy() releases whatever it got. */
static int open_listener(struct httpadmin *h, const char *addr_str, char *err, size_t err_len)
{
    union weft_sockaddr a;
    socklen_t len;
    TRY(parse_listen(addr_str, &a, &len, err, err_len));
    if ((h->listen_fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) <
        0) {
        snprintf(err, err_len, "httpadmin: cannot open a socket for %s: %s", addr_str,
                 strerror(errno));
        return WEFT_EIO;
    }
    int one = 1;
    if (a.sa.sa_family != AF_UNIX &&
        setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        snprintf(err, err_len, "httpadmin: cannot set SO_REUSEADDR on %s: %s", addr_str,
                 strerror(errno));
        return WEFT_EIO;
    }
    int rc = bind(h->listen_fd, &a.sa, len);
    if (rc != 0 && errno == EADDRINUSE && a.sa.sa_family == AF_UNIX &&
        unix_socket_is_stale(&a, len)) {
        unlink(a.un.sun_path);
        rc = bind(h->listen_fd, &a.sa, len);
    }
    if (rc != 0) {
        snprintf(err, err_len, "httpadmin: cannot bind %s: %s", addr_str, strerror(errno));
        return WEFT_EIO;
    }
    if (a.sa.sa_family == AF_UNIX) {
        h->unix_path = weft_xstrndup(a.un.sun_path, strlen(a.un.sun_path));
    }
    if (listen(h->listen_fd, LISTEN_BACKLOG) != 0) {
        snprintf(err, err_len, "httpadmin: cannot listen on %s: %s", addr_str, strerror(errno));
        return WEFT_EIO;
    }
    if (a.sa.sa_family != AF_UNIX) {
        union weft_sockaddr bound;
        socklen_t bound_len = sizeof(bound);
        if (getsockname(h->listen_fd, &bound.sa, &bound_len) != 0) {
            snprintf(err, err_len, "httpadmin: cannot read the port bound for %s: %s", addr_str,
                     strerror(errno));
            return WEFT_EIO;
        }
        h->port = ntohs(bound.sa.sa_family == AF_INET6 ? bound.in6.sin6_port : bound.in4.sin_port);
    }
    return WEFT_OK;
}

/* destroy releases everything |h| holds but the thread, which is joined or was never started. */
static void destroy(struct httpadmin *h)
{
    if (h->conns != NULL) {
        for (size_t i = 0; i < h->max_conns; i++) {
            conn_close(&h->conns[i]);
        }
    }
    if (h->listen_fd >= 0) {
        close(h->listen_fd);
    }
    if (h->unix_path != NULL) {
        unlink(h->unix_path);
        free(h->unix_path);
    }
    if (h->wake_fd >= 0) {
        close(h->wake_fd);
    }
    free(h->conns);
    free(h->pfds);
    free(h);
}

int httpadmin_start(struct httpadmin **out, const struct httpadmin_config *cfg, char *err,
                    size_t err_len)
{
    *out = NULL;
    if (err_len > 0) {
        err[0] = '\0';
    }
    if (cfg->timeout_ms < 0) {
        snprintf(err, err_len, "httpadmin: timeout_ms %d is negative", cfg->timeout_ms);
        return WEFT_EINVAL;
    }
    if (cfg->max_conns > HTTPADMIN_MAX_CONNS_LIMIT) {
        snprintf(err, err_len, "httpadmin: max_conns %zu is over %d", cfg->max_conns,
                 HTTPADMIN_MAX_CONNS_LIMIT);
        return WEFT_EINVAL;
    }
    if (cfg->num_routes > HTTPADMIN_MAX_ROUTES) {
        snprintf(err, err_len, "httpadmin: %zu routes; at most %d", cfg->num_routes,
                 HTTPADMIN_MAX_ROUTES);
        return WEFT_EINVAL;
    }
    struct httpadmin *h = weft_xcalloc(1, sizeof(*h));
    h->listen_fd = -1;
    h->wake_fd = -1;
    h->metrics = cfg->metrics;
    h->ready = cfg->ready;
    h->ready_arg = cfg->ready_arg;
    if (cfg->num_routes > 0) { /* memcpy from a NULL |routes| is undefined, even of 0 bytes */
        memcpy(h->routes, cfg->routes, cfg->num_routes * sizeof(*h->routes));
    }
    h->num_routes = cfg->num_routes;
    h->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : HTTPADMIN_DEFAULT_TIMEOUT_MS;
    h->max_conns = cfg->max_conns != 0 ? cfg->max_conns : HTTPADMIN_DEFAULT_MAX_CONNS;
    h->conns = weft_xcalloc(h->max_conns, sizeof(*h->conns));
    for (size_t i = 0; i < h->max_conns; i++) {
        h->conns[i].fd = -1;
    }
    h->pfds = weft_xcalloc(h->max_conns + 2, sizeof(*h->pfds));

    const char *addr_str = cfg->listen != NULL ? cfg->listen : HTTPADMIN_DEFAULT_LISTEN;
    int rc = open_listener(h, addr_str, err, err_len);
    if (rc != WEFT_OK) {
        destroy(h);
        return rc;
    }
    if ((h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(err, err_len, "httpadmin: cannot make an eventfd for %s: %s", addr_str,
                 strerror(errno));
        destroy(h);
        return WEFT_EIO;
    }
    /* The thread inherits the mask: with every signal blocked there, the process's handlers,
     * sigwait or signalfd run on the threads that expect them. Sends use MSG_NOSIGNAL anyway. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int perr = pthread_create(&h->thread, NULL, serve, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr != 0) {
        snprintf(err, err_len, "httpadmin: cannot start the thread for %s: %s", addr_str,
                 strerror(perr));
        destroy(h);
        return WEFT_EIO;
    }
    pthread_setname_np(h->thread, THREAD_NAME);
    *out = h;
    return WEFT_OK;
}

int httpadmin_port(const struct httpadmin *h) { return h->port; }

void httpadmin_stop(struct httpadmin *h)
{
    if (h == NULL) {
        return;
    }
    uint64_t one = 1;
    /* An eventfd write fails only when its counter would overflow: it is awake already. */
    while (write(h->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    pthread_join(h->thread, NULL);
    destroy(h);
}

/* ---- the server thread ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll_timeout is poll(2)'s timeout to wake at |wake_at|: -1 (none) for INT64_MAX. */
static int poll_timeout(int64_t wake_at, int64_t now)
{
    if (wake_at == INT64_MAX) {
        return -1;
    }
    if (wake_at <= now) {
        return 0;
    }
    return wake_at - now > INT32_MAX ? INT32_MAX : (int)(wake_at - now);
}

static void *serve(void *arg)
{
    struct httpadmin *h = arg;
    for (;;) {
        int64_t now = now_ms();
        int64_t wake_at = INT64_MAX;
        size_t num_open = 0;
        for (size_t i = 0; i < h->max_conns; i++) {
            struct conn *c = &h->conns[i];
            struct pollfd *pfd = &h->pfds[i + 2];
            if (c->state != CONN_FREE && now >= c->deadline_ms) {
                conn_close(c); /* slow, silent or not reading: its time is up */
            }
            pfd->fd = c->fd;
            pfd->events = c->state == CONN_WRITING ? POLLOUT : POLLIN;
            pfd->revents = 0;
            if (c->state != CONN_FREE) {
                num_open++;
                wake_at = c->deadline_ms < wake_at ? c->deadline_ms : wake_at;
            }
        }
        h->pfds[0] = (struct pollfd){.fd = h->wake_fd, .events = POLLIN};
        /* At the limit, new clients wait in the backlog until a slot frees. */
        bool accepting = num_open < h->max_conns && now >= h->accept_resume;
        h->pfds[1] = (struct pollfd){.fd = accepting ? h->listen_fd : -1, .events = POLLIN};
        if (num_open < h->max_conns && !accepting && h->accept_resume < wake_at) {
            wake_at = h->accept_resume;
        }
        if (poll(h->pfds, h->max_conns + 2, poll_timeout(wake_at, now)) < 0) {
            continue; /* EINTR, or ENOMEM: try again; deadlines still hold */
        }
        if (h->pfds[0].revents != 0) {
            break;
        }
        for (size_t i = 0; i < h->max_conns; i++) {
            struct conn *c = &h->conns[i];
            if (h->pfds[i + 2].revents == 0 || c->fd != h->pfds[i + 2].fd) {
                continue;
            }
            switch (c->state) {
            case CONN_READING:
                on_readable(h, c);
                break;
            case CONN_WRITING:
                on_writable(c);
                break;
            case CONN_DRAINING:
                on_drainable(c);
                break;
            case CONN_FREE:
                break;
            }
        }
        if (h->pfds[1].revents != 0) {
            accept_clients(h, now_ms());
        }
    }
    for (size_t i = 0; i < h->max_conns; i++) {
        conn_close(&h->conns[i]);
    }
    return NULL;
}

static void accept_clients(struct httpadmin *h, int64_t now)
{
    for (size_t i = 0; i < h->max_conns; i++) {
        struct conn *c = &h->conns[i];
        if (c->state != CONN_FREE) {
            continue;
        }
        int fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The client stays in the backlog and the listener readable: back off rather
                 * than spin. */
                h->accept_resume = now + ACCEPT_PAUSE_MS;
            }
            return; /* EAGAIN: none left; ECONNABORTED and the like: that client is gone */
        }
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->state = CONN_READING;
        c->deadline_ms = now + h->timeout_ms;
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
    }
}

static void conn_close(struct conn *c)
{
    if (c->state == CONN_FREE) {
        return;
    }
    close(c->fd);
    free(c->out);
    c->out = NULL;
    c->fd = -1;
    c->state = CONN_FREE;
}

/* ---- reading the request ---- */

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (len > sizeof(c->url) - c->url_len) {
        c->url_too_long = true;
        return -1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->head_done = true;
    /* A body is announced by a non-zero Content-Length or a Transfer-Encoding (RFC 9112 §6). */
    c->has_body = (p->flags & F_CHUNKED) != 0 || p->uses_transfer_encoding ||
                  ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > 0);
    /* Stop at the end of the head: the response depends on nothing after it. */
    http_parser_pause(p, 1);
    return 0;
}

static void on_readable(struct httpadmin *h, struct conn *c)
{
    char buf[READ_CHUNK];
    /* Never feed the parser more than HTTPADMIN_MAX_HEAD bytes: a head that is not complete by
     * then is too long. */
    size_t want = HTTPADMIN_MAX_HEAD - c->head_len;
    ssize_t n = recv(c->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        conn_close(c); /* gone before its request was whole: nobody to answer */
        return;
    }
    c->head_len += (size_t)n;
    http_parser_execute(&c->parser, &parser_settings, buf, (size_t)n);
    if (c->head_done) {
        route(h, c);
    } else if (c->url_too_long) {
        static const char body[] = "request target too long\n";
        respond(c, 414, TEXT_TYPE, body, sizeof(body) - 1);
    } else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        char body[128];
        int len = snprintf(body, sizeof(body), "bad request: %s\n",
                           http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        respond(c, 400, TEXT_TYPE, body, len < (int)sizeof(body) ? (size_t)len : sizeof(body) - 1);
    } else if (c->head_len >= HTTPADMIN_MAX_HEAD) {
        static const char body[] = "request head too large\n";
        respond(c, 431, TEXT_TYPE, body, sizeof(body) - 1);
    }
}

/* path_is compares the path of the request target (origin or absolute form, RFC 9112 §3.2),
 * without its query, to |want|. */
static bool path_is(const struct conn *c, const struct http_parser_url *u, const char *want)
{
    size_t len = strlen(want);
    return u->field_data[UF_PATH].len == len &&
           memcmp(c->url + u->field_data[UF_PATH].off, want, len) == 0;
}

/* own_route serves one of the daemon's routes; false when |c|'s path is none of them. */
static bool own_route(struct httpadmin *h, struct conn *c, const struct http_parser_url *u)
{
    for (size_t i = 0; i < h->num_routes; i++) {
        const struct httpadmin_route *r = &h->routes[i];
        if (!path_is(c, u, r->path)) {
            continue;
        }
        if (c->parser.method != (r->post ? HTTP_POST : HTTP_GET)) {
            static const char body[] = "method not allowed\n";
            c->allow = r->post ? "POST" : "GET";
            respond(c, 405, TEXT_TYPE, body, sizeof(body) - 1);
        } else if (c->has_body) {
            static const char body[] = "a request body is not accepted\n";
            respond(c, 413, TEXT_TYPE, body, sizeof(body) - 1);
        } else {
            char *out = NULL;
            size_t out_len = 0;
            const char *type = TEXT_TYPE;
            int status = r->handler(r->arg, &out, &out_len, &type);
            respond(c, status, type, out != NULL ? out : "", out != NULL ? out_len : 0);
            free(out);
        }
        return true;
    }
    return false;
}

static void route(struct httpadmin *h, struct conn *c)
{
    static const char not_found[] = "not found\n";
    struct http_parser_url u;
    http_parser_url_init(&u);
    bool parsed = http_parser_parse_url(c->url, c->url_len, 0, &u) == 0 &&
                  (u.field_set & (1 << UF_PATH)) != 0;
    if (parsed && own_route(h, c, &u)) {
        return;
    }
    if (c->parser.method != HTTP_GET) {
        static const char body[] = "method not allowed\n";
        respond(c, 405, TEXT_TYPE, body, sizeof(body) - 1);
        return;
    }
    if (c->has_body) {
        static const char body[] = "a request body is not accepted\n";
        respond(c, 413, TEXT_TYPE, body, sizeof(body) - 1);
        return;
    }
    if (!parsed) {
        static const char body[] = "bad request target\n";
        respond(c, 400, TEXT_TYPE, body, sizeof(body) - 1);
        return;
    }
    if (path_is(c, &u, "/healthz")) {
        static const char body[] = "ok\n";
        respond(c, 200, TEXT_TYPE, body, sizeof(body) - 1);
    } else if (path_is(c, &u, "/ready")) {
        char why[HTTPADMIN_REASON_LEN] = "";
        if (h->ready == NULL || h->ready(h->ready_arg, why, sizeof(why))) {
            static const char body[] = "ready\n";
            respond(c, 200, TEXT_TYPE, body, sizeof(body) - 1);
            return;
        }
        why[sizeof(why) - 1] = '\0';
        char body[HTTPADMIN_REASON_LEN + 16];
        int len = snprintf(body, sizeof(body), "%s\n", why[0] != '\0' ? why : "not ready");
        respond(c, 503, TEXT_TYPE, body, (size_t)len);
    } else if (path_is(c, &u, "/metrics") && h->metrics != NULL) {
        char *text;
        size_t text_len;
        if (weft_metrics_write(h->metrics, &text, &text_len) != WEFT_OK) {
            static const char body[] = "cannot render the metrics\n";
            respond(c, 500, TEXT_TYPE, body, sizeof(body) - 1);
            return;
        }
        respond(c, 200, METRICS_TYPE, text, text_len);
        free(text);
    } else {
        respond(c, 404, TEXT_TYPE, not_found, sizeof(not_found) - 1);
    }
}

/* ---- writing the response ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large"; /* RFC 9110 §15.5.14 */
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large"; /* RFC 6585 §5 */
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

/* respond builds the whole response and starts writing it; |body| is copied. */
static void respond(struct conn *c, int status, const char *type, const char *body, size_t body_len)
{
    char head[256];
    int head_len = snprintf(
        head, sizeof(head),
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: %s\r\n"
        "Content-Length: %zu\r\n"
        "%s%s%s"
        "Connection: close\r\n"
        "\r\n",
        status, status_text(status), type, body_len, status == 405 ? "Allow: " : "",
        status == 405 ? (c->allow != NULL ? c->allow : "GET") : "", status == 405 ? "\r\n" : "");
    c->out_len = (size_t)head_len + body_len;
    c->out = weft_xmalloc(c->out_len);
    memcpy(c->out, head, (size_t)head_len);
    memcpy(c->out + head_len, body, body_len);
    c->out_sent = 0;
    c->state = CONN_WRITING;
    on_writable(c);
}

static void on_writable(struct conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_sent += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    /* Closing with unread bytes in our receive queue would send a reset, which can destroy the
     * response before the client reads it (RFC 9112 §9.6): send FIN, then read until the client
     * closes. */
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_DRAINING;
    on_drainable(c);
}

static void on_drainable(struct conn *c)
{
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || (c->drained += (size_t)n) > MAX_DRAIN) {
            conn_close(c);
            return;
        }
    }
}
