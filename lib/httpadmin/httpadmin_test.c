/* lib/httpadmin/httpadmin_test.c: the admin port's contract, over real sockets on loopback.
 * Every client socket has receive and send timeouts, and Criterion kills a test past .timeout,
 * so no wait is unbounded. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/httpadmin/httpadmin.h"

#define CLIENT_TIMEOUT_MS 3000

TestSuite(httpadmin, .timeout = 20);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct httpadmin *start(const struct httpadmin_config *cfg)
{
    struct httpadmin *h;
    char err[HTTPADMIN_ERR_LEN];
    int rc = httpadmin_start(&h, cfg, err, sizeof(err));
    cr_assert_eq(rc, WEFT_OK, "httpadmin_start: %s", err);
    return h;
}

/* start_local listens on 127.0.0.1, on a port the kernel picks. */
static struct httpadmin *start_local(struct httpadmin_config cfg)
{
    cfg.listen = "127.0.0.1:0";
    struct httpadmin *h = start(&cfg);
    cr_assert_gt(httpadmin_port(h), 0);
    return h;
}

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_MS / 1000,
                         .tv_usec = (CLIENT_TIMEOUT_MS % 1000) * 1000};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    set_timeouts(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
}

struct reply {
    int status;
    char head[1024]; /* status line and headers, NUL-terminated */
    char *body;      /* NUL-terminated; freed by reply_free */
    size_t body_len;
};

/* read_reply reads until the server closes (the server always does) and splits the response. */
static struct reply read_reply(int fd)
{
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        cr_assert_geq(n, 0, "recv: %s (timed out waiting for the response?)", strerror(errno));
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        cr_assert_lt(len, cap, "response too long");
    }
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(end, "no end of head in %zu bytes: \"%s\"", len, buf);
    struct reply r = {0};
    size_t head_len = (size_t)(end - buf) + 2;
    cr_assert_lt(head_len, sizeof(r.head));
    memcpy(r.head, buf, head_len);
    r.head[head_len] = '\0';
    cr_assert_eq(sscanf(r.head, "HTTP/1.1 %d ", &r.status), 1, "status line: %s", r.head);
    r.body_len = len - head_len - 2;
    r.body = malloc(r.body_len + 1);
    cr_assert_not_null(r.body);
    memcpy(r.body, end + 4, r.body_len + 1);
    free(buf);
    /* Every response says how long it is and that the connection ends. */
    char want_len[64];
    snprintf(want_len, sizeof(want_len), "\r\nContent-Length: %zu\r\n", r.body_len);
    cr_assert_not_null(strstr(r.head, want_len), "head: %s", r.head);
    cr_assert_not_null(strstr(r.head, "\r\nConnection: close\r\n"), "head: %s", r.head);
    return r;
}

static void reply_free(struct reply *r) { free(r->body); }

/* request sends |raw| on a new connection and reads the response. */
static struct reply request(int port, const char *raw)
{
    int fd = dial(port);
    send_all(fd, raw, strlen(raw));
    struct reply r = read_reply(fd);
    close(fd);
    return r;
}

static struct reply get(int port, const char *path)
{
    char *raw;
    cr_assert_gt(asprintf(&raw, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path), 0);
    struct reply r = request(port, raw);
    free(raw);
    return r;
}

/* ---- routes ---- */

Test(httpadmin, metrics_returns_a_registered_counter)
{
    struct weft_metrics *m = weft_metrics_new();
    struct weft_counter *c =
        weft_metrics_counter(m, "weft_test_requests_total", "Requests.", NULL, 0);
    cr_assert_not_null(c);
    weft_counter_add(c, 42);
    struct httpadmin *h = start_local((struct httpadmin_config){.metrics = m});
    struct reply r = get(httpadmin_port(h), "/metrics");
    cr_assert_eq(r.status, 200, "%s%s", r.head, r.body);
    cr_assert_not_null(
        strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "%s",
        r.head);
    cr_assert_not_null(strstr(r.body, "\nweft_test_requests_total 42\n"), "%s", r.body);
    reply_free(&r);

    /* The value is read at each scrape, and a query string does not change the path. */
    weft_counter_add(c, 1);
    r = get(httpadmin_port(h), "/metrics?name[]=weft_test_requests_total");
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "\nweft_test_requests_total 43\n"), "%s", r.body);
    reply_free(&r);
    httpadmin_stop(h);
    weft_metrics_free(m);
}

Test(httpadmin, metrics_without_a_registry_is_not_found)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    struct reply r = get(httpadmin_port(h), "/metrics");
    cr_assert_eq(r.status, 404);
    reply_free(&r);
    httpadmin_stop(h);
}

struct readiness {
    bool ready;
    const char *why;
    int calls;      /* written on the server thread, read after httpadmin_stop joined it */
    size_t why_len; /* what the last call was given */
};

static bool ready_cb(void *arg, char *why, size_t why_len)
{
    struct readiness *s = arg;
    s->calls++;
    s->why_len = why_len; /* checked on the test's thread: Criterion asserts only there */
    if (!s->ready) {
        snprintf(why, why_len, "%s", s->why);
    }
    return s->ready;
}

Test(httpadmin, ready_answers_200_when_the_callback_says_ready)
{
    struct readiness s = {.ready = true};
    struct httpadmin *h =
        start_local((struct httpadmin_config){.ready = ready_cb, .ready_arg = &s});
    struct reply r = get(httpadmin_port(h), "/ready");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ready\n");
    reply_free(&r);
    httpadmin_stop(h);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.why_len, HTTPADMIN_REASON_LEN);
}

Test(httpadmin, ready_answers_503_with_the_callbacks_reason)
{
    struct readiness s = {.ready = false, .why = "no CA bundle yet"};
    struct httpadmin *h =
        start_local((struct httpadmin_config){.ready = ready_cb, .ready_arg = &s});
    struct reply r = get(httpadmin_port(h), "/ready");
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "no CA bundle yet\n");
    reply_free(&r);
    httpadmin_stop(h);
}

Test(httpadmin, ready_without_a_callback_is_ready)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    struct reply r = get(httpadmin_port(h), "/ready");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ready\n");
    reply_free(&r);
    httpadmin_stop(h);
}

Test(httpadmin, healthz_answers_ok)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    struct reply r = get(httpadmin_port(h), "/healthz");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    reply_free(&r);
    /* HTTP/1.0 clients are answered too. */
    r = request(httpadmin_port(h), "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    httpadmin_stop(h);
}

Test(httpadmin, unknown_paths_are_not_found)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    static const char *const paths[] = {"/", "/metricsx", "/ready/", "/healthz/x", "/READY"};
    for (size_t i = 0; i < nitems(paths); i++) {
        struct reply r = get(httpadmin_port(h), paths[i]);
        cr_assert_eq(r.status, 404, "%s", paths[i]);
        reply_free(&r);
    }
    httpadmin_stop(h);
}

Test(httpadmin, methods_other_than_get_are_not_allowed)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    struct reply r = request(httpadmin_port(h), "POST /ready HTTP/1.1\r\nHost: x\r\n"
                                                "Content-Length: 3\r\n\r\nabc");
    cr_assert_eq(r.status, 405);
    cr_assert_not_null(strstr(r.head, "\r\nAllow: GET\r\n"), "%s", r.head);
    reply_free(&r);
    r = request(httpadmin_port(h), "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(r.status, 405);
    reply_free(&r);
    httpadmin_stop(h);
}

/* ---- limits ---- */

/* head_of_len makes a GET /healthz whose head is exactly |len| bytes, padded by one header. */
static char *head_of_len(size_t len)
{
    static const char start_line[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    size_t fixed = strlen(start_line) + strlen("\r\n\r\n");
    cr_assert_gt(len, fixed);
    char *raw = malloc(len + 1);
    cr_assert_not_null(raw);
    memcpy(raw, start_line, strlen(start_line));
    memset(raw + strlen(start_line), 'a', len - fixed);
    memcpy(raw + len - 4, "\r\n\r\n", 5);
    cr_assert_eq(strlen(raw), len);
    return raw;
}

Test(httpadmin, request_head_at_the_limit_is_served)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    char *raw = head_of_len(HTTPADMIN_MAX_HEAD);
    struct reply r = request(httpadmin_port(h), raw);
    cr_assert_eq(r.status, 200, "%s%s", r.head, r.body);
    reply_free(&r);
    free(raw);
    httpadmin_stop(h);
}

Test(httpadmin, request_head_one_past_the_limit_is_refused)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    char *raw = head_of_len(HTTPADMIN_MAX_HEAD + 1);
    struct reply r = request(httpadmin_port(h), raw);
    cr_assert_eq(r.status, 431, "%s%s", r.head, r.body);
    reply_free(&r);
    free(raw);
    /* Far past the limit, the client still reads the refusal rather than a reset. */
    raw = head_of_len(48 * 1024);
    r = request(httpadmin_port(h), raw);
    cr_assert_eq(r.status, 431);
    reply_free(&r);
    free(raw);
    httpadmin_stop(h);
}

Test(httpadmin, request_target_past_the_limit_is_refused)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    char path[HTTPADMIN_MAX_URL + 2];
    /* At the limit: served (as a 404, the path being unknown). */
    memset(path, 'a', HTTPADMIN_MAX_URL);
    path[0] = '/';
    path[HTTPADMIN_MAX_URL] = '\0';
    struct reply r = get(httpadmin_port(h), path);
    cr_assert_eq(r.status, 404);
    reply_free(&r);
    /* One past it. */
    path[HTTPADMIN_MAX_URL] = 'a';
    path[HTTPADMIN_MAX_URL + 1] = '\0';
    r = get(httpadmin_port(h), path);
    cr_assert_eq(r.status, 414);
    reply_free(&r);
    httpadmin_stop(h);
}

Test(httpadmin, a_request_body_is_refused)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    struct reply r = request(httpadmin_port(h), "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                                "Content-Length: 5\r\n\r\nhello");
    cr_assert_eq(r.status, 413);
    reply_free(&r);
    r = request(httpadmin_port(h), "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    cr_assert_eq(r.status, 413);
    reply_free(&r);
    /* An empty body is no body. */
    r = request(httpadmin_port(h), "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 0\r\n\r\n");
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    httpadmin_stop(h);
}

Test(httpadmin, malformed_requests_are_bad_requests)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    static const char *const raws[] = {
        "GARBAGE\r\n\r\n",
        "GET /healthz HTTP/9.9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    };
    for (size_t i = 0; i < nitems(raws); i++) {
        struct reply r = request(httpadmin_port(h), raws[i]);
        cr_assert_eq(r.status, 400, "request %zu: %s%s", i, r.head, r.body);
        reply_free(&r);
    }
    httpadmin_stop(h);
}

/* ---- slow clients and stopping ---- */

/* closed_within waits up to |ms| for the server to close |fd| and says whether it did. */
static bool closed_within(int fd, int ms)
{
    int64_t end = now_ms() + ms;
    for (int64_t left; (left = end - now_ms()) > 0;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) == 1) {
            char c;
            return recv(fd, &c, 1, 0) <= 0;
        }
    }
    return false;
}

Test(httpadmin, a_silent_client_does_not_delay_another)
{
    struct httpadmin *h = start_local((struct httpadmin_config){.timeout_ms = 5000});
    int silent = dial(httpadmin_port(h));
    usleep(50 * 1000); /* accepted by now */
    int64_t t0 = now_ms();
    struct reply r = get(httpadmin_port(h), "/ready");
    int64_t took = now_ms() - t0;
    cr_assert_eq(r.status, 200);
    cr_assert_lt(took, 1000, "served after %lld ms", (long long)took);
    reply_free(&r);
    close(silent);
    httpadmin_stop(h);
}

Test(httpadmin, at_the_connection_limit_a_silent_client_yields_after_the_timeout)
{
    struct httpadmin *h = start_local((struct httpadmin_config){.timeout_ms = 200, .max_conns = 1});
    int silent = dial(httpadmin_port(h));
    send_all(silent, "GET /rea", 8); /* holds the only slot */
    usleep(50 * 1000);
    int64_t t0 = now_ms();
    struct reply r = get(httpadmin_port(h), "/ready");
    int64_t took = now_ms() - t0;
    cr_assert_eq(r.status, 200);
    /* It waited for the slot (the limit holds), and not much longer than the timeout. */
    cr_assert_geq(took, 100, "served after %lld ms: the limit of 1 did not hold", (long long)took);
    cr_assert_lt(took, 1500, "served after %lld ms", (long long)took);
    reply_free(&r);
    cr_assert(closed_within(silent, 100), "the silent client was not closed");
    close(silent);
    httpadmin_stop(h);
}

Test(httpadmin, a_trickling_client_is_cut_at_the_total_timeout)
{
    struct httpadmin *h = start_local((struct httpadmin_config){.timeout_ms = 300});
    int fd = dial(httpadmin_port(h));
    send_all(fd, "GET /healthz HTTP/1.1\r\nX-Slow: ", 31);
    int64_t t0 = now_ms();
    bool closed = false;
    /* One byte every 50 ms: each read arrives well within 300 ms of the last one. */
    while (!closed && now_ms() - t0 < 3000) {
        closed = send(fd, "a", 1, MSG_NOSIGNAL) != 1 || closed_within(fd, 50);
    }
    int64_t took = now_ms() - t0;
    cr_assert(closed, "still open after %lld ms", (long long)took);
    cr_assert_lt(took, 1500, "closed after %lld ms", (long long)took);
    close(fd);
    httpadmin_stop(h);
}

Test(httpadmin, stop_with_a_client_connected_returns_promptly)
{
    struct httpadmin *h = start_local((struct httpadmin_config){.timeout_ms = 10000});
    int fd = dial(httpadmin_port(h));
    send_all(fd, "GET /healthz HTTP/1.1\r\n", 23);
    usleep(50 * 1000);
    int64_t t0 = now_ms();
    httpadmin_stop(h);
    int64_t took = now_ms() - t0;
    cr_assert_lt(took, 500, "stop took %lld ms", (long long)took);
    cr_assert(closed_within(fd, 1000), "the client's connection is still open");
    close(fd);
}

Test(httpadmin, stop_of_null_does_nothing) { httpadmin_stop(NULL); }

/* ---- addresses ---- */

Test(httpadmin, a_taken_port_is_named_in_the_error)
{
    struct httpadmin *h = start_local((struct httpadmin_config){0});
    char listen[64], err[HTTPADMIN_ERR_LEN], want[128];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", httpadmin_port(h));
    struct httpadmin *h2 = (struct httpadmin *)&h2;
    int rc = httpadmin_start(&h2, &(struct httpadmin_config){.listen = listen}, err, sizeof(err));
    cr_assert_eq(rc, WEFT_EIO);
    cr_assert_null(h2);
    snprintf(want, sizeof(want), "httpadmin: cannot bind %s: Address already in use", listen);
    cr_assert_str_eq(err, want);
    httpadmin_stop(h);
}

Test(httpadmin, bad_listen_addresses_and_limits_are_refused)
{
    static const char *const bad[] = {
        "127.0.0.1", "127.0.0.1:",     "127.0.0.1:65536", "127.0.0.1:-1", "localhost:80", "::1:80",
        "[::1]80",   "[127.0.0.1]:80", "[::1:80",         "unix:",        "1.2.3.4:80:",  ":80",
        "",
    };
    for (size_t i = 0; i < nitems(bad); i++) {
        struct httpadmin *h;
        char err[HTTPADMIN_ERR_LEN];
        int rc =
            httpadmin_start(&h, &(struct httpadmin_config){.listen = bad[i]}, err, sizeof(err));
        cr_assert_eq(rc, WEFT_EINVAL, "\"%s\"", bad[i]);
        cr_assert_null(h);
        cr_assert(strncmp(err, "httpadmin: bad listen address \"", 31) == 0, "%s", err);
        cr_assert_not_null(strstr(err, bad[i]), "%s", err);
    }
    struct httpadmin *h;
    char err[HTTPADMIN_ERR_LEN];
    cr_assert_eq(
        httpadmin_start(&h, &(struct httpadmin_config){.listen = "127.0.0.1:0", .timeout_ms = -1},
                        err, sizeof(err)),
        WEFT_EINVAL);
    cr_assert_eq(
        httpadmin_start(&h,
                        &(struct httpadmin_config){.listen = "127.0.0.1:0",
                                                   .max_conns = HTTPADMIN_MAX_CONNS_LIMIT + 1},
                        err, sizeof(err)),
        WEFT_EINVAL);
    h = start(&(struct httpadmin_config){.listen = "127.0.0.1:0",
                                         .max_conns = HTTPADMIN_MAX_CONNS_LIMIT});
    httpadmin_stop(h);
}

Test(httpadmin, serves_on_ipv6_loopback)
{
    struct httpadmin *h = start(&(struct httpadmin_config){.listen = "[::1]:0"});
    int port = httpadmin_port(h);
    cr_assert_gt(port, 0);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    set_timeouts(fd);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    a.sin6_addr = in6addr_loopback;
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
    static const char raw[] = "GET /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n";
    send_all(fd, raw, sizeof(raw) - 1);
    struct reply r = read_reply(fd);
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    close(fd);
    httpadmin_stop(h);
}

static int dial_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    set_timeouts(fd);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
    return fd;
}

Test(httpadmin, serves_on_a_unix_socket_and_replaces_a_stale_one)
{
    char dir[] = "/tmp/httpadmin_test.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64], listen[96];
    snprintf(path, sizeof(path), "%s/admin.sock", dir);
    snprintf(listen, sizeof(listen), "unix:%s", path);

    /* A socket file nobody accepts on, as a killed server leaves behind. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    cr_assert_eq(bind(stale, (struct sockaddr *)&a, sizeof(a)), 0);
    close(stale);

    struct httpadmin *h = start(&(struct httpadmin_config){.listen = listen});
    cr_assert_eq(httpadmin_port(h), 0);
    int fd = dial_unix(path);
    static const char raw[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, raw, sizeof(raw) - 1);
    struct reply r = read_reply(fd);
    cr_assert_eq(r.status, 200);
    reply_free(&r);
    close(fd);

    /* A live server's socket is not taken over. */
    struct httpadmin *h2;
    char err[HTTPADMIN_ERR_LEN];
    cr_assert_eq(
        httpadmin_start(&h2, &(struct httpadmin_config){.listen = listen}, err, sizeof(err)),
        WEFT_EIO);
    cr_assert_not_null(strstr(err, "Address already in use"), "%s", err);

    httpadmin_stop(h);
    struct stat st;
    cr_assert_neq(lstat(path, &st), 0, "the socket file outlived the server");
    cr_assert_eq(rmdir(dir), 0);
}

/* ---- the daemon's own routes ---- */

static int certs_route(void *arg, char **body, size_t *len, const char **type)
{
    (void)arg;
    *body = strdup("{\"id\":\"spiffe://example.org/ns/a/sa/b\"}\n");
    *len = strlen(*body);
    *type = "application/json";
    return 200;
}

static int quit_route(void *arg, char **body, size_t *len, const char **type)
{
    (void)type;
    (*(int *)arg)++;
    *body = strdup("draining\n");
    *len = strlen(*body);
    return 200;
}

Test(httpadmin, a_daemons_own_routes_get_their_method_and_only_it)
{
    int quits = 0;
    struct httpadmin_route routes[] = {{"/certs", false, certs_route, NULL},
                                       {"/quitquitquit", true, quit_route, &quits}};
    struct httpadmin *h = start_local((struct httpadmin_config){.routes = routes, .num_routes = 2});
    struct reply r = get(httpadmin_port(h), "/certs");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"id\":\"spiffe://example.org/ns/a/sa/b\"}\n");
    cr_assert_not_null(strstr(r.head, "Content-Type: application/json"), "%s", r.head);
    reply_free(&r);
    r = get(httpadmin_port(h), "/quitquitquit");
    cr_assert_eq(r.status, 405, "a POST route is not for GET");
    cr_assert_not_null(strstr(r.head, "\r\nAllow: POST\r\n"), "%s", r.head);
    reply_free(&r);
    cr_assert_eq(quits, 0);
    r = request(httpadmin_port(h), "POST /quitquitquit HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "draining\n");
    reply_free(&r);
    r = request(httpadmin_port(h), "POST /quitquitquit HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 2\r\n\r\nno");
    cr_assert_eq(r.status, 413, "no body, even on a POST route");
    reply_free(&r);
    r = request(httpadmin_port(h), "POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(r.status, 405, "the built-in paths stay GET only");
    reply_free(&r);
    httpadmin_stop(h);
    cr_assert_eq(quits, 1);
    struct httpadmin_route many[HTTPADMIN_MAX_ROUTES + 1];
    char err[HTTPADMIN_ERR_LEN];
    struct httpadmin_config too = {
        .listen = "127.0.0.1:0", .routes = many, .num_routes = HTTPADMIN_MAX_ROUTES + 1};
    cr_assert_eq(httpadmin_start(&h, &too, err, sizeof(err)), WEFT_EINVAL);
}
