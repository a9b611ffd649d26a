/* proxy/conn_test.c: the relay (proxy/conn.h) on socketpairs and loopback TCP. The proxy's loop
 * runs on a thread of its own; the test thread plays the client and the server with blocking
 * sockets, each read and write bounded by a poll timeout. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "proxy/conn.h"
#include "proxy/tls.h"
#include "test/testlib/certs.h"

/* ---- a proxy loop on its own thread ---- */

struct closed {
    atomic_int num;
    char reason[64];
    struct proxy_conn_stats st;
};

static struct ev_loop *loop;
static struct proxy_loop pl;
static pthread_t loop_th;
static ev_async stop_w;
static struct closed closed;

static void on_stop(struct ev_loop *l, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(l, EVBREAK_ALL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    ev_run(loop, 0);
    return NULL;
}

static void on_close(struct proxy_conn *c, const struct proxy_conn_stats *st, const char *reason,
                     void *arg)
{
    (void)c;
    struct closed *cl = arg;
    snprintf(cl->reason, sizeof(cl->reason), "%s", reason);
    cl->st = *st;
    atomic_fetch_add(&cl->num, 1);
}

static void loop_setup(const struct proxy_cfg *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
    proxy_loop_init(&pl, loop, cfg);
    ev_async_init(&stop_w, on_stop);
    ev_async_start(loop, &stop_w);
}

static void loop_run(void) { cr_assert_eq(pthread_create(&loop_th, NULL, loop_main, NULL), 0); }

static void loop_stop(void)
{
    ev_async_send(loop, &stop_w);
    pthread_join(loop_th, NULL);
    proxy_loop_close_all(&pl, PROXY_REASON_SHUTDOWN);
    ev_loop_destroy(loop);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* wait_closed_n waits up to |timeout_s| for |n| closes in |cl|; returns whether they came. */
static bool wait_closed_n(struct closed *cl, int n, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (atomic_load(&cl->num) < n) {
        if (now_s() > end) {
            return false;
        }
        usleep(2000);
    }
    return true;
}

static bool wait_closed(int n, double timeout_s) { return wait_closed_n(&closed, n, timeout_s); }

static void set_nonblock(int fd)
{
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* pair makes a stream socketpair: |*proxy_end| non-blocking for the relay, |*test_end|
 * blocking for the test. */
static void pair(int *proxy_end, int *test_end)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    set_nonblock(sv[0]);
    *proxy_end = sv[0];
    *test_end = sv[1];
}

/* read_full reads |len| bytes within |timeout_s|; returns the count read (short on EOF). */
static size_t read_full(int fd, uint8_t *buf, size_t len, double timeout_s)
{
    size_t got = 0;
    double end = now_s() + timeout_s;
    while (got < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left_ms = (int)((end - now_s()) * 1000);
        cr_assert_gt(left_ms, 0, "read timed out after %zu of %zu bytes", got, len);
        cr_assert_geq(poll(&p, 1, left_ms), 0);
        if (p.revents == 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        cr_assert_geq(n, 0, "recv: %s", strerror(errno));
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    return got;
}

static void write_full(int fd, const uint8_t *buf, size_t len, double timeout_s)
{
    size_t put = 0;
    double end = now_s() + timeout_s;
    while (put < len) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int left_ms = (int)((end - now_s()) * 1000);
        cr_assert_gt(left_ms, 0, "write timed out after %zu of %zu bytes", put, len);
        cr_assert_geq(poll(&p, 1, left_ms), 0);
        if (p.revents == 0) {
            continue;
        }
        ssize_t n = send(fd, buf + put, len - put, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        put += (size_t)n;
    }
}

/* expect_eof asserts that |fd| reads EOF (and no more bytes) within |timeout_s|. */
static void expect_eof(int fd, double timeout_s)
{
    uint8_t b;
    cr_assert_eq(read_full(fd, &b, 1, timeout_s), 0, "expected EOF, got a byte");
}

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}

static const struct proxy_conn_cbs close_cbs = {.on_close = on_close};

/* relay_pair sets up client <-> [down proxy up] <-> server over two socketpairs and starts the
 * relay; the loop is not running yet. */
static struct proxy_conn *relay_pair(int *client, int *server)
{
    int down, up;
    pair(&down, client);
    pair(&up, server);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    proxy_conn_set_up_fd(c, up);
    proxy_conn_start(c);
    return c;
}

/* ---- relaying ---- */

/* suite timeouts, not per-test ones: per-test timeouts make Criterion's runner leak 48
 * bytes at exit, which fails the ASan run */
TestSuite(relay, .timeout = 60);
TestSuite(connect, .timeout = 60);
TestSuite(xprt, .timeout = 60);

Test(relay, bytes_both_ways_intact)
{
    loop_setup(NULL);
    int client, server;
    relay_pair(&client, &server);
    loop_run();

    uint8_t out[3000], in[3000];
    for (uint32_t round = 0; round < 20; round++) {
        size_t len = 1 + (round * 149) % sizeof(out);
        fill_pattern(out, len, round);
        write_full(client, out, len, 5);
        cr_assert_eq(read_full(server, in, len, 5), len);
        cr_assert_eq(memcmp(in, out, len), 0, "round %u down->up corrupted", round);
        fill_pattern(out, len, round + 1000);
        write_full(server, out, len, 5);
        cr_assert_eq(read_full(client, in, len, 5), len);
        cr_assert_eq(memcmp(in, out, len), 0, "round %u up->down corrupted", round);
    }
    /* everything sent has been read: the idle connection holds no relay buffer */
    ev_async_send(loop, &stop_w);
    pthread_join(loop_th, NULL);
    cr_assert_eq(pl.num_conns, 1);
    cr_assert_eq(pl.num_bufs, 0, "an idle connection holds %zu buffers", pl.num_bufs);
    loop_run();
    close(client);
    close(server);
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_DONE);
    loop_stop();
}

/* A writer thread for the bulk test; it reports instead of asserting (Criterion asserts from
 * the test's own thread). */
struct writer {
    pthread_t th;
    int fd;
    const uint8_t *buf;
    size_t len;
    atomic_int ok; /* 1 done, -1 failed */
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    size_t put = 0;
    double end = now_s() + 40;
    while (put < w->len && now_s() < end) {
        struct pollfd p = {.fd = w->fd, .events = POLLOUT};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t n = send(w->fd, w->buf + put, w->len - put, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        put += (size_t)n;
    }
    atomic_store(&w->ok, put == w->len ? 1 : -1);
    return NULL;
}

/* The slow reader: the server reads nothing for a while. The client can then only get the
 * relay's buffer plus the kernel's socket buffers in before its writes block, and the relay
 * never holds more than buf_cap in a direction; then 10 MiB arrive intact, read in sips. */
Test(relay, bulk_with_slow_reader_is_bounded)
{
    const size_t cap = 16 * 1024;
    struct proxy_cfg cfg = {.buf_cap = cap};
    loop_setup(&cfg);
    int client, server;
    relay_pair(&client, &server);
    int small = 4096;
    int fds[2] = {client, server};
    for (int i = 0; i < 2; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    loop_run();

    const size_t total = 10 * 1024 * 1024;
    uint8_t *out = malloc(total);
    uint8_t *in = malloc(total);
    cr_assert(out != NULL && in != NULL);
    fill_pattern(out, total, 7);

    /* Phase 1: nobody reads; the client writes until it has been blocked for 300 ms. */
    size_t put = 0;
    double quiet_since = now_s();
    for (int i = 0; i < 100000 && now_s() - quiet_since < 0.3; i++) {
        ssize_t n = send(client, out + put, 4096, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            put += (size_t)n;
            quiet_since = now_s();
        } else {
            usleep(1000);
        }
    }
    /* Kernel socket buffers hold some too (and AF_UNIX counts overhead per skb): what matters
     * is that the writer stopped far short of 10 MiB, after the relay's buffer filled. */
    cr_assert_lt(put, 1024 * 1024, "the client got %zu bytes in with nobody reading", put);
    cr_assert_gt(put, cap, "the relay should have taken its buffer's worth (%zu)", put);
    fprintf(stderr, "slow reader: the client got %zu bytes in before blocking (cap %zu)\n", put,
            cap);
    ev_async_send(loop, &stop_w); /* a full direction holds its buffer */
    pthread_join(loop_th, NULL);
    cr_assert_eq(pl.num_bufs, 1, "buffers held with one direction full: %zu", pl.num_bufs);
    loop_run();

    /* Phase 2: the rest from a writer thread, the server reading 8 KiB sips with pauses. */
    struct writer w = {.fd = client, .buf = out + put, .len = total - put};
    cr_assert_eq(pthread_create(&w.th, NULL, writer_main, &w), 0);
    size_t got = 0;
    for (int i = 0; got < total && i < 100000; i++) {
        size_t sip = total - got < 8192 ? total - got : 8192;
        size_t n = read_full(server, in + got, sip, 20);
        cr_assert_eq(n, sip, "EOF after %zu bytes", got + n);
        got += n;
        if (i % 64 == 0) {
            usleep(2000);
        }
    }
    pthread_join(w.th, NULL);
    cr_assert_eq(atomic_load(&w.ok), 1);
    cr_assert_eq(got, total);
    cr_assert_eq(memcmp(in, out, total), 0, "bulk bytes corrupted");
    close(client);
    close(server);
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_DONE);
    cr_assert_eq(closed.st.bytes_down_to_up, total);
    cr_assert_eq(closed.st.buf_cap, cap);
    cr_assert_leq(closed.st.max_held_down_to_up, cap, "held %zu > cap %zu",
                  closed.st.max_held_down_to_up, cap);
    cr_assert_eq(closed.st.max_held_down_to_up, cap, "the slow reader should have filled it");
    free(out);
    free(in);
    loop_stop();
}

/* The client shuts its sending half; the server sees EOF, still sends, then closes; the client
 * gets the reply and then EOF; the relay ends with "done" only after both. */
Test(relay, half_close_propagates_in_order)
{
    loop_setup(NULL);
    int client, server;
    relay_pair(&client, &server);
    loop_run();

    write_full(client, (const uint8_t *)"ping", 4, 5);
    cr_assert_eq(shutdown(client, SHUT_WR), 0);
    uint8_t buf[16];
    cr_assert_eq(read_full(server, buf, 4, 5), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    expect_eof(server, 5);
    usleep(50000);
    cr_assert_eq(atomic_load(&closed.num), 0, "closed after one direction only");
    /* The other direction still flows after the first one ended. */
    for (int i = 0; i < 3; i++) {
        write_full(server, (const uint8_t *)"pong", 4, 5);
        cr_assert_eq(read_full(client, buf, 4, 5), 4);
        cr_assert_eq(memcmp(buf, "pong", 4), 0);
    }
    close(server);
    expect_eof(client, 5);
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_DONE);
    cr_assert_eq(closed.st.bytes_down_to_up, 4);
    cr_assert_eq(closed.st.bytes_up_to_down, 12);
    close(client);
    loop_stop();
}

Test(relay, idle_timeout_closes_with_its_reason)
{
    struct proxy_cfg cfg = {.idle_timeout_s = 0.3};
    loop_setup(&cfg);
    int client, server;
    relay_pair(&client, &server);
    double t0 = now_s();
    loop_run();

    /* Traffic every 100 ms keeps it open well past the timeout. */
    uint8_t b = 'x';
    for (int i = 0; i < 8; i++) {
        write_full(client, &b, 1, 2);
        cr_assert_eq(read_full(server, &b, 1, 2), 1);
        usleep(100000);
    }
    cr_assert_eq(atomic_load(&closed.num), 0, "closed while busy");
    double t1 = now_s();
    cr_assert(wait_closed(1, 5));
    double idle = now_s() - t1;
    cr_assert_str_eq(closed.reason, PROXY_REASON_IDLE);
    cr_assert_geq(idle, 0.15, "closed after %.3f s", idle);
    cr_assert_lt(now_s() - t0, 5);
    expect_eof(client, 2);
    expect_eof(server, 2);
    close(client);
    close(server);
    loop_stop();
}

/* ---- connecting ---- */

static void loopback_addr(struct sockaddr_in *sin, uint16_t port)
{
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin->sin_port = htons(port);
}

/* tcp_listener opens a blocking loopback listener on a free port. */
static int tcp_listener(int backlog, struct sockaddr_in *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    loopback_addr(out, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)out, sizeof(*out)), 0);
    cr_assert_eq(listen(fd, backlog), 0);
    socklen_t len = sizeof(*out);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)out, &len), 0);
    return fd;
}

Test(connect, refused_closes_with_reason)
{
    loop_setup(NULL);
    struct sockaddr_in sin;
    int l = tcp_listener(1, &sin);
    close(l); /* nothing listens there now */
    int down, client;
    pair(&down, &client);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    int rc = proxy_conn_connect(c, (struct sockaddr *)&sin, sizeof(sin));
    cr_assert(rc == WEFT_OK || rc == WEFT_EIO);
    loop_run();
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_CONNECT_REFUSED);
    expect_eof(client, 2);
    close(client);
    loop_stop();
}

/* The upstream socket has Nagle off: a relay sends what it has at once (a TLS handshake's
 * small flights would otherwise wait for delayed ACKs, 40 ms each). */
Test(connect, upstream_has_nodelay)
{
    loop_setup(NULL);
    struct sockaddr_in sin;
    int l = tcp_listener(1, &sin);
    int down, client;
    pair(&down, &client);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    cr_assert_eq(proxy_conn_connect(c, (struct sockaddr *)&sin, sizeof(sin)), WEFT_OK);
    int on = 0;
    socklen_t len = sizeof(on);
    cr_assert_eq(getsockopt(proxy_conn_get_fd(c, PROXY_UP), IPPROTO_TCP, TCP_NODELAY, &on, &len),
                 0);
    cr_assert_eq(on, 1);
    loop_run();
    close(client);
    loop_stop();
    close(l);
}

/* A listener whose accept queue is full drops new SYNs, so a connect to it stays in progress:
 * the relay's connect timeout ends it. */
Test(connect, timeout_closes_with_reason)
{
    struct proxy_cfg cfg = {.connect_timeout_s = 0.3};
    loop_setup(&cfg);
    struct sockaddr_in sin;
    int l = tcp_listener(0, &sin);
    int fillers[16];
    int num_fillers = 0;
    for (; num_fillers < 16; num_fillers++) {
        int f = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(f, 0);
        fillers[num_fillers] = f;
        (void)connect(f, (struct sockaddr *)&sin, sizeof(sin));
        struct pollfd p = {.fd = f, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0) {
            num_fillers++; /* this one hangs: the queue is full */
            break;
        }
    }
    cr_assert_lt(num_fillers, 16, "the accept queue never filled");
    int down, client;
    pair(&down, &client);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    cr_assert_eq(proxy_conn_connect(c, (struct sockaddr *)&sin, sizeof(sin)), WEFT_OK);
    double t0 = now_s();
    loop_run();
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_CONNECT_TIMEOUT);
    cr_assert_geq(now_s() - t0, 0.25);
    expect_eof(client, 2);
    close(client);
    for (int i = 0; i < num_fillers; i++) {
        close(fillers[i]);
    }
    close(l);
    loop_stop();
}

/* ---- the handshake hook, and a transport that wants to write to read ---- */

/* fake_hs completes on its third call, asking for writability twice before. */
struct fake_hs {
    int calls;
    int done_side;
};

static int fake_handshake(void *ctx, int fd, int *want)
{
    (void)fd;
    struct fake_hs *h = ctx;
    if (++h->calls < 3) {
        *want = XPRT_WANT_WRITE;
        return WEFT_EAGAIN;
    }
    return WEFT_OK;
}

/* fake_xprt: every other recv returns EAGAIN wanting WRITE (as a TLS read may while it needs to
 * send), and send moves at most 100 bytes and refuses every third call wanting WRITE. */
struct fake_xprt {
    atomic_int recv_want_write;
    atomic_int sends;
    atomic_int shutdowns;
    int flip;
};

static ssize_t fake_recv(void *ctx, int fd, uint8_t *buf, size_t cap, int *want)
{
    struct fake_xprt *x = ctx;
    if ((x->flip ^= 1) != 0) {
        atomic_fetch_add(&x->recv_want_write, 1);
        *want = XPRT_WANT_WRITE;
        return WEFT_EAGAIN;
    }
    return plain_xprt.recv(NULL, fd, buf, cap, want);
}

static ssize_t fake_send(void *ctx, int fd, const uint8_t *buf, size_t len, int *want)
{
    struct fake_xprt *x = ctx;
    if (atomic_fetch_add(&x->sends, 1) % 3 == 2) {
        *want = XPRT_WANT_WRITE;
        return WEFT_EAGAIN;
    }
    return plain_xprt.send(NULL, fd, buf, len < 100 ? len : 100, want);
}

static int fake_shutdown(void *ctx, int fd, int *want)
{
    struct fake_xprt *x = ctx;
    atomic_fetch_add(&x->shutdowns, 1);
    return plain_xprt.shutdown(NULL, fd, want);
}

static const char *fake_reason(void *ctx)
{
    (void)ctx;
    return NULL;
}

static const struct xprt_ops fake_xprt_ops = {
    .recv = fake_recv,
    .send = fake_send,
    .shutdown = fake_shutdown,
    .reason = fake_reason,
};

static struct fake_hs hs;
static struct fake_xprt fx;
static atomic_int ctx_freed;

static void free_fake(void *ctx)
{
    cr_assert_eq(ctx, &fx);
    atomic_fetch_add(&ctx_freed, 1);
}

static void on_handshaken(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    struct fake_hs *h = arg;
    h->done_side = (int)side + 1;
    proxy_conn_set_xprt(c, side, &fake_xprt_ops, &fx, free_fake);
    proxy_conn_start(c);
}

static void on_connected(struct proxy_conn *c, void *arg)
{
    (void)arg;
    proxy_conn_handshake(c, PROXY_UP, fake_handshake, NULL, &hs, on_handshaken, &hs);
}

Test(xprt, handshake_then_recv_wanting_write_still_relays)
{
    loop_setup(NULL);
    struct sockaddr_in sin;
    int l = tcp_listener(4, &sin);
    int down, client;
    pair(&down, &client);
    static const struct proxy_conn_cbs cbs = {.on_connected = on_connected, .on_close = on_close};
    struct proxy_conn *c = proxy_conn_new(&pl, down, &cbs, &closed);
    cr_assert_eq(proxy_conn_connect(c, (struct sockaddr *)&sin, sizeof(sin)), WEFT_OK);
    loop_run();
    int server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(server, 0);

    static uint8_t out[200000], in[200000];
    fill_pattern(out, sizeof(out), 3);
    write_full(client, out, sizeof(out), 10);
    cr_assert_eq(read_full(server, in, sizeof(in), 10), sizeof(in));
    cr_assert_eq(memcmp(in, out, sizeof(in)), 0);
    fill_pattern(out, sizeof(out), 4);
    write_full(server, out, sizeof(out), 10);
    cr_assert_eq(read_full(client, in, sizeof(in), 10), sizeof(in));
    cr_assert_eq(memcmp(in, out, sizeof(in)), 0);
    cr_assert_eq(shutdown(client, SHUT_WR), 0);
    expect_eof(server, 5);
    close(server);
    expect_eof(client, 5);
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_DONE);
    cr_assert_eq(hs.calls, 3);
    cr_assert_eq(hs.done_side, PROXY_UP + 1);
    cr_assert_gt(atomic_load(&fx.recv_want_write), 10);
    cr_assert_geq(atomic_load(&fx.sends), 2000); /* 100 bytes a send at most */
    cr_assert_eq(atomic_load(&fx.shutdowns), 1);
    cr_assert_eq(atomic_load(&ctx_freed), 1);
    close(client);
    close(l);
    loop_stop();
}

/* behind_xprt holds what it is sent, up to 64 KiB, and sends it on every call, as tls_xprt
 * holds sealed records: the relay must call send again when the socket is writable, with
 * nothing new if need be, and shut only once nothing is held. */
struct behind {
    uint8_t q[1 << 16];
    size_t len;
    atomic_int flushes; /* sends with nothing new */
};

static int behind_flush(struct behind *b, int fd)
{
    while (b->len > 0) {
        int w = 0;
        ssize_t n = plain_xprt.send(NULL, fd, b->q, b->len, &w);
        if (n < 0) {
            return (int)n;
        }
        memmove(b->q, b->q + n, b->len - (size_t)n);
        b->len -= (size_t)n;
    }
    return WEFT_OK;
}

static ssize_t behind_send(void *ctx, int fd, const uint8_t *buf, size_t len, int *want)
{
    struct behind *b = ctx;
    if (len == 0) {
        atomic_fetch_add(&b->flushes, 1);
    }
    int rc = behind_flush(b, fd);
    size_t take = len < sizeof(b->q) - b->len ? len : sizeof(b->q) - b->len;
    if (take > 0) {
        memcpy(b->q + b->len, buf, take);
        b->len += take;
    }
    if (rc == WEFT_OK) {
        rc = behind_flush(b, fd);
    }
    if (rc != WEFT_OK && rc != WEFT_EAGAIN) {
        return rc;
    }
    if (rc == WEFT_EAGAIN) {
        *want = XPRT_WANT_WRITE;
        if (take == 0) {
            return WEFT_EAGAIN;
        }
    }
    return (ssize_t)take;
}

static int behind_shutdown(void *ctx, int fd, int *want)
{
    int rc = behind_flush(ctx, fd);
    if (rc == WEFT_EAGAIN) {
        *want = XPRT_WANT_WRITE;
    }
    return rc != WEFT_OK ? rc : plain_xprt.shutdown(NULL, fd, want);
}

static ssize_t behind_recv(void *ctx, int fd, uint8_t *buf, size_t cap, int *want)
{
    (void)ctx;
    return plain_xprt.recv(NULL, fd, buf, cap, want);
}

static const struct xprt_ops behind_ops = {
    .recv = behind_recv,
    .send = behind_send,
    .shutdown = behind_shutdown,
    .reason = fake_reason,
};

Test(xprt, bytes_a_transport_holds_are_flushed_before_the_shutdown)
{
    loop_setup(NULL);
    int down, client, up, server;
    pair(&down, &client);
    pair(&up, &server);
    int small = 4096; /* the up socket fills at once: the transport holds bytes most of the time */
    cr_assert_eq(setsockopt(up, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    static struct behind b;
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    proxy_conn_set_up_fd(c, up);
    proxy_conn_set_xprt(c, PROXY_UP, &behind_ops, &b, NULL);
    proxy_conn_start(c);
    loop_run();

    enum { LEN = 2 << 20 };
    static uint8_t out[LEN], in[LEN];
    fill_pattern(out, sizeof(out), 5);
    set_nonblock(client);
    set_nonblock(server);
    size_t put = 0, got = 0;
    double end = now_s() + 20;
    /* one thread writes and reads slowly in turn: the reader lags, so the relay keeps waiting */
    while (got < LEN) {
        cr_assert_lt(now_s(), end, "after %zu of %d bytes", got, LEN);
        if (put < LEN) {
            ssize_t n = send(client, out + put, LEN - put, MSG_DONTWAIT | MSG_NOSIGNAL);
            put += n > 0 ? (size_t)n : 0;
            if (put == LEN) {
                cr_assert_eq(shutdown(client, SHUT_WR), 0);
            }
        }
        ssize_t n = recv(server, in + got, 4096, MSG_DONTWAIT);
        cr_assert(n != 0, "EOF after %zu of %d bytes: the shutdown passed held bytes", got, LEN);
        got += n > 0 ? (size_t)n : 0;
        usleep(100);
    }
    cr_assert_eq(memcmp(in, out, LEN), 0);
    cr_assert_gt(atomic_load(&b.flushes), 0, "the relay never came back for held bytes");
    expect_eof(server, 5);
    close(server);
    expect_eof(client, 5);
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_DONE);
    close(client);
    loop_stop();
}

static int failing_handshake(void *ctx, int fd, int *want)
{
    (void)ctx;
    (void)fd;
    (void)want;
    return WEFT_ECRYPTO;
}

static const char *failing_reason(void *ctx)
{
    (void)ctx;
    return "peer certificate expired";
}

static void never_done(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    (void)c;
    (void)side;
    (void)arg;
    cr_assert_fail("handshake reported done");
}

Test(xprt, handshake_failure_closes_with_transport_reason)
{
    loop_setup(NULL);
    int client, server;
    int down, up;
    pair(&down, &client);
    pair(&up, &server);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    proxy_conn_set_up_fd(c, up);
    proxy_conn_handshake(c, PROXY_DOWN, failing_handshake, failing_reason, NULL, never_done, NULL);
    loop_run();
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, "peer certificate expired");
    close(client);
    close(server);
    loop_stop();
}

static int stuck_handshake(void *ctx, int fd, int *want)
{
    (void)ctx;
    (void)fd;
    *want = XPRT_WANT_READ;
    return WEFT_EAGAIN;
}

Test(xprt, handshake_timeout_closes_with_reason)
{
    struct proxy_cfg cfg = {.handshake_timeout_s = 0.2};
    loop_setup(&cfg);
    int client, server;
    int down, up;
    pair(&down, &client);
    pair(&up, &server);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    proxy_conn_set_up_fd(c, up);
    proxy_conn_handshake(c, PROXY_DOWN, stuck_handshake, NULL, NULL, never_done, NULL);
    loop_run();
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, PROXY_REASON_HANDSHAKE_TIMEOUT);
    close(client);
    close(server);
    loop_stop();
}

/* A peer that resets mid-stream ends the connection with the side named. */
Test(relay, reset_names_the_side)
{
    loop_setup(NULL);
    struct sockaddr_in sin;
    int l = tcp_listener(4, &sin);
    int down, client;
    pair(&down, &client);
    struct proxy_conn *c = proxy_conn_new(&pl, down, &close_cbs, &closed);
    cr_assert_eq(proxy_conn_connect(c, (struct sockaddr *)&sin, sizeof(sin)), WEFT_OK);
    loop_run();
    int server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(server, 0);
    write_full(client, (const uint8_t *)"hello", 5, 5);
    uint8_t buf[8];
    cr_assert_eq(read_full(server, buf, 5, 5), 5);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(server, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(server); /* RST */
    cr_assert(wait_closed(1, 5));
    cr_assert_str_eq(closed.reason, "up reset");
    expect_eof(client, 2);
    close(client);
    close(l);
    loop_stop();
}

Test(relay, loop_limits_buffer_cap)
{
    struct proxy_cfg cfg = {.buf_cap = 1};
    loop_setup(&cfg);
    cr_assert_eq(pl.cfg.buf_cap, PROXY_BUF_CAP_MIN);
    cfg.buf_cap = PROXY_BUF_CAP_MAX + 1;
    proxy_loop_init(&pl, loop, &cfg);
    cr_assert_eq(pl.cfg.buf_cap, PROXY_BUF_CAP_MAX);
    ev_loop_destroy(loop);
}

/* ---- the mesh path with the real TLS transport ---- */

/* client -> [A: down plain, up TLS client] -> [B: down TLS server, up plain] -> server, all on
 * one loop: the relay drives tls_conn_handshake through its handshake hook, then relays through
 * tls_xprt, and half-close crosses TLS as close_notify. */
#define MESH_CLIENT_ID "spiffe://example.org/ns/a/sa/client"
#define MESH_SERVER_ID "spiffe://example.org/ns/b/sa/server"

static struct tls_creds *mesh_creds(const struct testlib_cred *root, const char *id,
                                    const struct spiffe_bundle_set *bundles)
{
    int64_t now = (int64_t)time(NULL);
    struct testlib_cred leaf = {0};
    cr_assert_eq(testlib_mint_leaf(&leaf, root, id, SPIFFE_KEY_EC_P256, now - TESTLIB_HOUR,
                                   2 * TESTLIB_HOUR),
                 WEFT_OK);
    size_t chain_len, key_len;
    uint8_t *chain = testlib_der(leaf.cert, &chain_len);
    cr_assert_not_null(chain);
    CBB cbb;
    uint8_t *key;
    cr_assert(CBB_init(&cbb, 256) && EVP_marshal_private_key(&cbb, leaf.key) &&
              CBB_finish(&cbb, &key, &key_len));
    struct tls_creds_params p = {.chain_der = chain,
                                 .chain_der_len = chain_len,
                                 .key_der = key,
                                 .key_der_len = key_len,
                                 .bundles = bundles};
    struct tls_creds *creds = NULL;
    cr_assert_eq(tls_creds_new(&creds, &p), WEFT_OK);
    OPENSSL_free(chain);
    OPENSSL_free(key);
    testlib_cred_cleanup(&leaf);
    return creds;
}

static int tls_handshake_step(void *ctx, int fd, int *want)
{
    (void)fd;
    return tls_conn_handshake(ctx, want);
}

static const char *tls_reason_of(void *ctx)
{
    const char *r = tls_conn_reason(ctx);
    return r[0] != '\0' ? r : NULL;
}

static void tls_free_ctx(void *ctx) { tls_conn_free(ctx); }

static char mesh_peer_seen[2][128];

static void on_tls_done(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    snprintf(mesh_peer_seen[side], sizeof(mesh_peer_seen[side]), "%s",
             tls_conn_peer_id((struct tls_conn *)arg));
    proxy_conn_start(c);
}

Test(xprt, mesh_path_through_real_tls)
{
    loop_setup(NULL);
    int64_t now = (int64_t)time(NULL);
    struct testlib_cred root = {0};
    cr_assert_eq(testlib_mint_root(&root, "example.org", SPIFFE_KEY_EC_P256, now - TESTLIB_HOUR,
                                   TESTLIB_DAY),
                 WEFT_OK);
    struct spiffe_bundle_set bundles;
    spiffe_bundle_set_init(&bundles);
    cr_assert_eq(testlib_bundle_set_add(&bundles, "example.org", root.cert), WEFT_OK);
    struct tls_creds *cc = mesh_creds(&root, MESH_CLIENT_ID, &bundles);
    struct tls_creds *sc = mesh_creds(&root, MESH_SERVER_ID, &bundles);

    int client, a_down, a_up, b_down, b_up, server;
    pair(&a_down, &client);
    int mid[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, mid), 0);
    a_up = mid[0];
    b_down = mid[1];
    pair(&b_up, &server);

    static struct closed closed_a, closed_b;
    static const struct proxy_conn_cbs cbs = {.on_close = on_close};
    struct proxy_conn *a = proxy_conn_new(&pl, a_down, &cbs, &closed_a);
    proxy_conn_set_up_fd(a, a_up);
    struct tls_conn *tc;
    cr_assert_eq(tls_conn_new_client(&tc, cc, a_up, MESH_SERVER_ID), WEFT_OK);
    proxy_conn_set_xprt(a, PROXY_UP, &tls_xprt, tc, tls_free_ctx);
    proxy_conn_handshake(a, PROXY_UP, tls_handshake_step, tls_reason_of, tc, on_tls_done, tc);

    struct proxy_conn *b = proxy_conn_new(&pl, b_down, &cbs, &closed_b);
    proxy_conn_set_up_fd(b, b_up);
    struct tls_conn *ts;
    cr_assert_eq(tls_conn_new_server(&ts, sc, b_down), WEFT_OK);
    proxy_conn_set_xprt(b, PROXY_DOWN, &tls_xprt, ts, tls_free_ctx);
    proxy_conn_handshake(b, PROXY_DOWN, tls_handshake_step, tls_reason_of, ts, on_tls_done, ts);
    loop_run();

    static uint8_t out[1 << 20], in[1 << 20];
    fill_pattern(out, sizeof(out), 11);
    struct writer w = {.fd = client, .buf = out, .len = sizeof(out)};
    cr_assert_eq(pthread_create(&w.th, NULL, writer_main, &w), 0);
    cr_assert_eq(read_full(server, in, sizeof(in), 30), sizeof(in));
    pthread_join(w.th, NULL);
    cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "bytes corrupted on the way up");
    cr_assert_eq(shutdown(client, SHUT_WR), 0);
    expect_eof(server, 5); /* client EOF -> close_notify -> EOF at the server */

    fill_pattern(out, sizeof(out), 12);
    w = (struct writer){.fd = server, .buf = out, .len = sizeof(out)};
    cr_assert_eq(pthread_create(&w.th, NULL, writer_main, &w), 0);
    cr_assert_eq(read_full(client, in, sizeof(in), 30), sizeof(in));
    pthread_join(w.th, NULL);
    cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "bytes corrupted on the way down");
    close(server);
    expect_eof(client, 5);
    cr_assert(wait_closed_n(&closed_a, 1, 5) && wait_closed_n(&closed_b, 1, 5));
    cr_assert_str_eq(closed_a.reason, PROXY_REASON_DONE);
    cr_assert_str_eq(closed_b.reason, PROXY_REASON_DONE);
    cr_assert_str_eq(mesh_peer_seen[PROXY_UP], MESH_SERVER_ID);
    cr_assert_str_eq(mesh_peer_seen[PROXY_DOWN], MESH_CLIENT_ID);
    cr_assert_eq(closed_a.st.bytes_down_to_up, sizeof(out));
    cr_assert_eq(closed_b.st.bytes_up_to_down, sizeof(out));
    close(client);
    loop_stop();
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    spiffe_bundle_set_cleanup(&bundles);
    testlib_cred_cleanup(&root);
}

/* A client expecting another server ID: the handshake fails and the connection closes with
 * the transport's reason, never relaying a byte. */
Test(xprt, mesh_wrong_server_id_closes_with_tls_reason)
{
    loop_setup(NULL);
    int64_t now = (int64_t)time(NULL);
    struct testlib_cred root = {0};
    cr_assert_eq(testlib_mint_root(&root, "example.org", SPIFFE_KEY_EC_P256, now - TESTLIB_HOUR,
                                   TESTLIB_DAY),
                 WEFT_OK);
    struct spiffe_bundle_set bundles;
    spiffe_bundle_set_init(&bundles);
    cr_assert_eq(testlib_bundle_set_add(&bundles, "example.org", root.cert), WEFT_OK);
    struct tls_creds *cc = mesh_creds(&root, MESH_CLIENT_ID, &bundles);
    struct tls_creds *sc = mesh_creds(&root, MESH_SERVER_ID, &bundles);

    int client, a_down, b_up, server;
    pair(&a_down, &client);
    int mid[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, mid), 0);
    pair(&b_up, &server);
    static struct closed closed_a, closed_b;
    static const struct proxy_conn_cbs cbs = {.on_close = on_close};
    struct proxy_conn *a = proxy_conn_new(&pl, a_down, &cbs, &closed_a);
    proxy_conn_set_up_fd(a, mid[0]);
    struct tls_conn *tc;
    cr_assert_eq(tls_conn_new_client(&tc, cc, mid[0], "spiffe://example.org/ns/x/sa/other"),
                 WEFT_OK);
    proxy_conn_set_xprt(a, PROXY_UP, &tls_xprt, tc, tls_free_ctx);
    proxy_conn_handshake(a, PROXY_UP, tls_handshake_step, tls_reason_of, tc, on_tls_done, tc);
    struct proxy_conn *b = proxy_conn_new(&pl, mid[1], &cbs, &closed_b);
    proxy_conn_set_up_fd(b, b_up);
    struct tls_conn *ts;
    cr_assert_eq(tls_conn_new_server(&ts, sc, mid[1]), WEFT_OK);
    proxy_conn_set_xprt(b, PROXY_DOWN, &tls_xprt, ts, tls_free_ctx);
    proxy_conn_handshake(b, PROXY_DOWN, tls_handshake_step, tls_reason_of, ts, on_tls_done, ts);
    loop_run();
    cr_assert(wait_closed_n(&closed_a, 1, 5) && wait_closed_n(&closed_b, 1, 5));
    cr_assert_str_neq(closed_a.reason, PROXY_REASON_DONE);
    cr_assert(strstr(closed_a.reason, "other") != NULL || strstr(closed_a.reason, "ID") != NULL,
              "reason: %s", closed_a.reason);
    cr_assert_eq(closed_a.st.bytes_down_to_up + closed_b.st.bytes_down_to_up, 0);
    expect_eof(client, 2);
    expect_eof(server, 2);
    close(client);
    close(server);
    loop_stop();
    tls_creds_unref(cc);
    tls_creds_unref(sc);
    spiffe_bundle_set_cleanup(&bundles);
    testlib_cred_cleanup(&root);
}
