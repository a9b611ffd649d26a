/* test/bench/proxy_load.c: the load generator of proxy_bench, run inside a pod's network
 * namespace under the uid proxy_bench picks (the app's, captured by the mesh, or the proxy's,
 * which is not). One process, one thread, one epoll loop; every loop is bounded in count and in
 * time. Each client prints one line of key=value pairs on stdout (times in microseconds or
 * seconds, as the key says) and exits 0, or prints "error: ..." and exits 1.
 *
 *   proxy_load serve echo IP PORT      echo every byte back, on any number of connections
 *   proxy_load serve sink IP PORT      read and drop; one byte "k" back for each whole MiB read
 *                                      (the bulk client's acknowledgement)
 *   proxy_load serve http IP PORT      HTTP/1.1 keep-alive: answers each request (its header
 *                                      block; GET, no body) with 200 and HTTP_BODY_LEN bytes
 *                                      (mesh_bar's wrk target)
 *     Each prints "listening" once bound and runs until killed.
 *
 *   proxy_load rr IP PORT CONNS SIZE MAX_OPS MAX_S
 *     CONNS connections, each in a closed loop: send SIZE bytes, read SIZE back (the echo), once
 *     per connection untimed (the mesh's handshake), then timed until MAX_OPS round trips in
 *     all or MAX_S seconds. Prints "rr ops= seconds= p50_us= p99_us= errors=".
 *   proxy_load connect IP PORT CONNS SIZE MAX_OPS MAX_S
 *     CONNS slots, each in a closed loop: a new connection, SIZE bytes, SIZE back, close. Prints
 *     "connect ops= seconds= p50_us= p99_us= errors=" (an error: refused, reset, early EOF).
 *   proxy_load bulk IP PORT MAX_BYTES MAX_S
 *     one connection to a sink: 1 MiB and its ack untimed, then whole MiB writes until
 *     MAX_BYTES or MAX_S, timed until the sink acknowledged the last one. Prints "bulk bytes=
 *     seconds=".
 *   proxy_load idle IP PORT N MAX_S [check]
 *     opens N connections one after the other, each with a 1-byte echo round trip, within
 *     MAX_S; prints "idle open= seconds=", then holds them until SIGTERM (or MAX_S more),
 *     closes them and prints "idle closed". With "check", one more round trip on each before
 *     closing (within STALL_S in all): "idle closed alive=" how many made it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define MAX_CONNS 4096   /* rr/connect slots and idle connections */
#define MAX_SIZE 16384   /* rr/connect message bytes */
#define MAX_ERRORS 100   /* connect: give up after this many failed connections */
#define STALL_S 10.0     /* any loop that makes no progress this long fails */
#define SERVER_BUF 65536 /* echo: bytes read at once, and held when the peer cannot take them */
#define LISTEN_BACKLOG 4096
#define HTTP_BODY_LEN 1024 /* serve http: the body of every response */

enum serve_mode { SERVE_ECHO, SERVE_SINK, SERVE_HTTP };

struct server_conn {
    int fd;
    bool sink;
    uint8_t *pend; /* echo: bytes not yet written back (SERVER_BUF); NULL when none held */
    size_t pend_len, pend_off;
    uint64_t sunk;    /* sink: bytes read beyond the last acknowledged MiB */
    size_t acks_owed; /* sink: "k" bytes not yet written */
    bool http;
    uint8_t http_match; /* http: bytes of "\r\n\r\n" seen at the end of what was read */
    size_t resp_owed;   /* http: responses not yet written in full */
    size_t resp_off;    /* http: bytes of the first of them written */
    bool want_out;      /* http: waiting for EPOLLOUT rather than EPOLLIN */
};

static double now_s(void);
static int fail(const char *what);
static int parse_addr(struct sockaddr_in *out, const char *ip, const char *port);
static void set_nodelay(int fd);
static int serve(const struct sockaddr_in *a, enum serve_mode mode);
static int client_rr(const struct sockaddr_in *a, int conns, size_t size, long max_ops,
                     double max_s);
static int client_connect(const struct sockaddr_in *a, int conns, size_t size, long max_ops,
                          double max_s);
static int client_bulk(const struct sockaddr_in *a, uint64_t max_bytes, double max_s);
static int client_idle(const struct sockaddr_in *a, int n, double max_s, bool check);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what)
{
    printf("error: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    return 1;
}

static int parse_addr(struct sockaddr_in *out, const char *ip, const char *port)
{
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    long p = strtol(port, NULL, 10);
    out->sin_port = htons((uint16_t)p);
    return p > 0 && p < 65536 && inet_pton(AF_INET, ip, &out->sin_addr) == 1 ? 0 : -1;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* --- servers -------------------------------------------------------------------------------- */

static void server_conn_close(int ep, struct server_conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pend);
    free(c);
}

/* server_conn_flush writes what |c| owes its peer; false when the connection is gone. While
 * bytes are held, |c| waits for EPOLLOUT and does not read (echo backpressure). */
static bool server_conn_flush(int ep, struct server_conn *c)
{
    static uint8_t ks[64];
    if (ks[0] == 0) {
        memset(ks, 'k', sizeof(ks));
    }
    while (c->acks_owed > 0) {
        size_t n = c->acks_owed < sizeof(ks) ? c->acks_owed : sizeof(ks);
        ssize_t w = write(c->fd, ks, n);
        if (w < 0) {
            return errno == EAGAIN; /* owed still: written after the next read */
        }
        c->acks_owed -= (size_t)w;
    }
    while (c->pend_off < c->pend_len) {
        ssize_t w = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return true;
        }
        if (w < 0) {
            return false;
        }
        c->pend_off += (size_t)w;
    }
    c->pend_off = c->pend_len = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return true;
}

/* the one response of serve http, made once by http_response_init */
static uint8_t http_resp[256 + HTTP_BODY_LEN];
static size_t http_resp_len;

static void http_response_init(void)
{
    int n = snprintf((char *)http_resp, sizeof(http_resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %d\r\n\r\n",
                     HTTP_BODY_LEN);
    memset(http_resp + n, 'x', HTTP_BODY_LEN);
    http_resp_len = (size_t)n + HTTP_BODY_LEN;
}

/* http_watch asks for EPOLLOUT (|out|) or EPOLLIN, only when that changes: one syscall fewer per
 * request on the core the proxies share. */
static void http_watch(int ep, struct server_conn *c, bool out)
{
    if (c->want_out != out) {
        struct epoll_event ev = {.events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = out;
    }
}

/* http_flush writes the responses |c| owes; false when the connection is gone. While one is
 * held, |c| waits for EPOLLOUT and does not read. */
static bool http_flush(int ep, struct server_conn *c)
{
    while (c->resp_owed > 0) {
        ssize_t w = write(c->fd, http_resp + c->resp_off, http_resp_len - c->resp_off);
        if (w < 0 && errno == EAGAIN) {
            http_watch(ep, c, true);
            return true;
        }
        if (w < 0) {
            return false;
        }
        if ((c->resp_off += (size_t)w) == http_resp_len) {
            c->resp_off = 0;
            c->resp_owed--;
        }
    }
    http_watch(ep, c, false);
    return true;
}

/* http_readable counts the requests that ended in what is there (a request's header block
 * ends at an empty line, RFC 9112 §2.1; a GET has no body) and answers them. */
static bool http_readable(int ep, struct server_conn *c, uint8_t *scratch)
{
    static const char end[] = "\r\n\r\n";
    ssize_t n = read(c->fd, scratch, SERVER_BUF);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        return false;
    }
    for (ssize_t i = 0; i < n; i++) {
        c->http_match = scratch[i] == (uint8_t)end[c->http_match] ? (uint8_t)(c->http_match + 1)
                        : scratch[i] == '\r'                      ? 1
                                                                  : 0;
        if (c->http_match == 4) {
            c->resp_owed++;
            c->http_match = 0;
        }
    }
    return http_flush(ep, c);
}

/* server_conn_readable reads what is there; false when the connection is done. */
static bool server_conn_readable(int ep, struct server_conn *c)
{
    static uint8_t scratch[SERVER_BUF];
    if (c->http) {
        return c->resp_owed > 0 ? http_flush(ep, c) : http_readable(ep, c, scratch);
    }
    if (c->pend_len > 0) {
        return server_conn_flush(ep, c);
    }
    ssize_t n = read(c->fd, c->sink ? scratch : c->pend, SERVER_BUF);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        return false;
    }
    if (n < 0) {
        return true;
    }
    if (c->sink) {
        c->sunk += (uint64_t)n;
        c->acks_owed += (size_t)(c->sunk / MIB);
        c->sunk %= MIB;
    } else {
        c->pend_len = (size_t)n;
        c->pend_off = 0;
    }
    return server_conn_flush(ep, c);
}

static int serve(const struct sockaddr_in *a, enum serve_mode mode)
{
    bool sink = mode == SERVE_SINK;
    http_response_init();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (const struct sockaddr *)a, sizeof(*a)) != 0 ||
        listen(lfd, LISTEN_BACKLOG) != 0) {
        return fail("listen");
    }
    int ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) {
        return fail("epoll");
    }
    printf("listening\n");
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct server_conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    set_nodelay(fd);
                    c = calloc(1, sizeof(*c));
                    c->fd = fd;
                    c->sink = sink;
                    c->http = mode == SERVE_HTTP;
                    c->pend = mode == SERVE_ECHO ? malloc(SERVER_BUF) : NULL;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            bool ok = !(evs[i].events & EPOLLOUT) ? server_conn_readable(ep, c)
                      : c->http                   ? http_flush(ep, c)
                                                  : server_conn_flush(ep, c);
            if (!ok) {
                server_conn_close(ep, c);
            }
        }
    }
}

/* --- clients -------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* percentile sorts |v| and returns its |p|-th percentile (nearest rank), or 0 when empty. */
static double percentile(double *v, long n, double p)
{
    if (n == 0) {
        return 0;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    long rank = (long)(p / 100.0 * (double)n + 0.999999);
    return v[rank < 1 ? 0 : rank > n ? n - 1 : rank - 1];
}

/* dial makes a blocking connection to |a| with TCP_NODELAY and STALL_S send/receive timeouts;
 * the fd, or -1. */
static int dial(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {.tv_sec = (long)STALL_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* round_trip writes |len| bytes of |buf| on the blocking |fd| and reads |len| back. */
static bool round_trip(int fd, uint8_t *buf, size_t len)
{
    if (write(fd, buf, len) != (ssize_t)len) {
        return false;
    }
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

struct slot {
    int fd;
    size_t got; /* bytes of the answer read */
    double t0;  /* when the round (rr) or the connection (connect) began */
};

static int client_rr(const struct sockaddr_in *a, int conns, size_t size, long max_ops,
                     double max_s)
{
    static struct slot slots[MAX_CONNS];
    static uint8_t msg[MAX_SIZE], sink[MAX_SIZE];
    memset(msg, 'r', size);
    double *lat = malloc((size_t)max_ops * sizeof(double));
    int ep = epoll_create1(0);
    if (lat == NULL || ep < 0) {
        return fail("setup");
    }
    for (int i = 0; i < conns; i++) {
        /* the first round trip, untimed: through the mesh it carries the handshakes */
        slots[i].fd = dial(a);
        if (slots[i].fd < 0 || !round_trip(slots[i].fd, sink, size)) {
            return fail("first round trip");
        }
        fcntl(slots[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, slots[i].fd, &ev);
    }
    long ops = 0, sent = 0;
    double start = now_s(), last = start, end = start;
    for (int i = 0; i < conns && sent < max_ops; i++, sent++) {
        slots[i].t0 = now_s();
        if (write(slots[i].fd, msg, size) != (ssize_t)size) {
            return fail("write");
        }
    }
    bool stopping = false;
    while (ops < sent) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 1000);
        double t = now_s();
        if (n <= 0 && t - last > STALL_S) {
            errno = ETIMEDOUT;
            return fail("no answer");
        }
        stopping = stopping || t - start >= max_s;
        for (int i = 0; i < n; i++) {
            struct slot *s = &slots[evs[i].data.u32];
            ssize_t r = read(s->fd, sink, size - s->got);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                errno = r == 0 ? ECONNRESET : errno;
                return fail("read");
            }
            if (r < 0 || (s->got += (size_t)r) < size) {
                continue;
            }
            lat[ops++] = (t - s->t0) * 1e6;
            s->got = 0;
            last = end = t;
            if (!stopping && sent < max_ops) {
                s->t0 = t;
                sent++;
                if (write(s->fd, msg, size) != (ssize_t)size) {
                    return fail("write");
                }
            }
        }
    }
    double p50 = percentile(lat, ops, 50), p99 = percentile(lat, ops, 99);
    printf("rr ops=%ld seconds=%.6f p50_us=%.1f p99_us=%.1f errors=0\n", ops, end - start, p50,
           p99);
    return 0;
}

/* connect_start begins a new connection in |s| (non-blocking); false when even the socket
 * cannot be made. */
static bool connect_start(int ep, struct slot *s, uint32_t id, const struct sockaddr_in *a)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0) {
        return false;
    }
    set_nodelay(s->fd);
    s->t0 = now_s();
    s->got = 0;
    if (connect(s->fd, (const struct sockaddr *)a, sizeof(*a)) != 0 && errno != EINPROGRESS) {
        /* refused at once: EPOLLOUT comes at once, and SO_ERROR or the write says so */
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = id};
    return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) == 0;
}

static void connect_end(int ep, struct slot *s)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
}

static int client_connect(const struct sockaddr_in *a, int conns, size_t size, long max_ops,
                          double max_s)
{
    static struct slot slots[MAX_CONNS];
    static uint8_t msg[MAX_SIZE], sink[MAX_SIZE];
    memset(msg, 'c', size);
    double *lat = malloc((size_t)max_ops * sizeof(double));
    int ep = epoll_create1(0);
    if (lat == NULL || ep < 0) {
        return fail("setup");
    }
    long ops = 0, started = 0, errors = 0;
    int active = 0;
    double start = now_s(), last = start, end = start;
    for (int i = 0; i < conns && started < max_ops; i++, started++, active++) {
        if (!connect_start(ep, &slots[i], (uint32_t)i, a)) {
            return fail("socket");
        }
    }
    while (active > 0) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 1000);
        double t = now_s();
        if (n <= 0 && t - last > STALL_S) {
            errno = ETIMEDOUT;
            return fail("no answer");
        }
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            struct slot *s = &slots[id];
            bool done = false, failed = false;
            if (evs[i].events & EPOLLOUT) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 || write(s->fd, msg, size) != (ssize_t)size) {
                    failed = true;
                } else {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = id};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                }
            } else {
                ssize_t r = read(s->fd, sink, size - s->got);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    failed = true;
                } else if (r > 0 && (s->got += (size_t)r) == size) {
                    done = true;
                }
            }
            if (!done && !failed) {
                continue;
            }
            connect_end(ep, s);
            active--;
            last = end = t;
            if (failed && ++errors >= MAX_ERRORS) {
                errno = ECONNRESET;
                return fail("too many failed connections");
            }
            if (done) {
                lat[ops++] = (t - s->t0) * 1e6;
            }
            if (t - start < max_s && started < max_ops) {
                if (!connect_start(ep, s, id, a)) {
                    return fail("socket");
                }
                started++;
                active++;
            }
        }
    }
    double p50 = percentile(lat, ops, 50), p99 = percentile(lat, ops, 99);
    printf("connect ops=%ld seconds=%.6f p50_us=%.1f p99_us=%.1f errors=%ld\n", ops, end - start,
           p50, p99, errors);
    return 0;
}

/* write_all writes |len| bytes on the blocking |fd|. */
static bool write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w <= 0) {
            return false;
        }
        buf += w;
        len -= (size_t)w;
    }
    return true;
}

/* read_acks reads |n| acknowledgement bytes from the blocking |fd|. */
static bool read_acks(int fd, uint64_t n)
{
    uint8_t buf[256];
    while (n > 0) {
        ssize_t r = read(fd, buf, n < sizeof(buf) ? (size_t)n : sizeof(buf));
        if (r <= 0) {
            return false;
        }
        n -= (uint64_t)r;
    }
    return true;
}

static int client_bulk(const struct sockaddr_in *a, uint64_t max_bytes, double max_s)
{
    uint8_t *chunk = malloc(MIB);
    if (chunk == NULL) {
        return fail("malloc");
    }
    for (size_t i = 0; i < MIB; i++) {
        chunk[i] = (uint8_t)(i * 2654435761u >> 24);
    }
    /* the first MiB and its ack, untimed: through the mesh it carries the handshakes */
    int fd = dial(a);
    if (fd < 0 || !write_all(fd, chunk, MIB) || !read_acks(fd, 1)) {
        return fail("first MiB");
    }
    uint64_t mibs = 0;
    double start = now_s();
    while (mibs * MIB < max_bytes && now_s() - start < max_s) {
        if (!write_all(fd, chunk, MIB)) {
            return fail("write");
        }
        mibs++;
    }
    if (!read_acks(fd, mibs)) {
        return fail("acks");
    }
    double secs = now_s() - start;
    close(fd);
    printf("bulk bytes=%llu seconds=%.6f\n", (unsigned long long)(mibs * MIB), secs);
    return 0;
}

static volatile sig_atomic_t idle_stop;

static void on_term(int sig)
{
    (void)sig;
    idle_stop = 1;
}

static int client_idle(const struct sockaddr_in *a, int n, double max_s, bool check)
{
    static int fds[MAX_CONNS];
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    int open = 0;
    double start = now_s();
    while (open < n && now_s() - start < max_s && !idle_stop) {
        uint8_t b = 'i';
        int fd = dial(a);
        if (fd < 0 || !round_trip(fd, &b, 1)) {
            return fail("idle connection");
        }
        fds[open++] = fd;
    }
    printf("idle open=%d seconds=%.6f\n", open, now_s() - start);
    double held = now_s();
    while (!idle_stop && now_s() - held < max_s) {
        poll(NULL, 0, 50);
    }
    int alive = 0;
    double checked = now_s();
    for (int i = 0; i < open; i++) {
        uint8_t b = 'j';
        alive += check && now_s() - checked < STALL_S && round_trip(fds[i], &b, 1);
        close(fds[i]);
    }
    if (check) {
        printf("idle closed alive=%d\n", alive);
    } else {
        printf("idle closed\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* The parent is proxy_bench (ip netns exec and setpriv exec): go with it, however this
     * was started. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sockaddr_in a;
    static const char *const modes[] = {
        [SERVE_ECHO] = "echo", [SERVE_SINK] = "sink", [SERVE_HTTP] = "http"};
    for (int i = 0; argc == 5 && i < (int)(sizeof(modes) / sizeof(modes[0])); i++) {
        if (strcmp(argv[1], "serve") == 0 && strcmp(argv[2], modes[i]) == 0 &&
            parse_addr(&a, argv[3], argv[4]) == 0) {
            return serve(&a, (enum serve_mode)i);
        }
    }
    if (argc >= 4 && parse_addr(&a, argv[2], argv[3]) == 0) {
        bool rr = strcmp(argv[1], "rr") == 0;
        if ((rr || strcmp(argv[1], "connect") == 0) && argc == 8) {
            int conns = atoi(argv[4]);
            long size = atol(argv[5]), max_ops = atol(argv[6]);
            double max_s = atof(argv[7]);
            if (conns >= 1 && conns <= MAX_CONNS && size >= 1 && size <= MAX_SIZE && max_ops >= 1 &&
                max_s > 0) {
                return rr ? client_rr(&a, conns, (size_t)size, max_ops, max_s)
                          : client_connect(&a, conns, (size_t)size, max_ops, max_s);
            }
        }
        if (strcmp(argv[1], "bulk") == 0 && argc == 6 && atof(argv[5]) > 0) {
            return client_bulk(&a, strtoull(argv[4], NULL, 10), atof(argv[5]));
        }
        bool check = argc == 7 && strcmp(argv[6], "check") == 0;
        if (strcmp(argv[1], "idle") == 0 && (argc == 6 || check) && atoi(argv[4]) >= 1 &&
            atoi(argv[4]) <= MAX_CONNS && atof(argv[5]) > 0) {
            return client_idle(&a, atoi(argv[4]), atof(argv[5]), check);
        }
    }
    fprintf(stderr, "usage: proxy_load serve echo|sink|http IP PORT\n"
                    "       proxy_load rr|connect IP PORT CONNS SIZE MAX_OPS MAX_S\n"
                    "       proxy_load bulk IP PORT MAX_BYTES MAX_S\n"
                    "       proxy_load idle IP PORT N MAX_S [check]\n");
    return 2;
}
