/* proxy/listener_test.c: listeners, the worker pool and its drain, and SO_ORIGINAL_DST in a
 * network namespace of the test's own. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "proxy/listener.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void addr4(union weft_sockaddr *a, socklen_t *len, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->in4.sin_family = AF_INET;
    a->in4.sin_port = htons(port);
    cr_assert_eq(inet_pton(AF_INET, ip, &a->in4.sin_addr), 1);
    *len = sizeof(a->in4);
}

static void addr6(union weft_sockaddr *a, socklen_t *len, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->in6.sin6_family = AF_INET6;
    a->in6.sin6_port = htons(port);
    cr_assert_eq(inet_pton(AF_INET6, ip, &a->in6.sin6_addr), 1);
    *len = sizeof(a->in6);
}

/* dial makes a blocking connection; -1 with errno on failure. */
static int dial(const union weft_sockaddr *a, socklen_t len)
{
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    if (connect(fd, &a->sa, len) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static size_t read_some(int fd, uint8_t *buf, size_t len, double timeout_s)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, (int)(timeout_s * 1000)), 1, "read timed out");
    ssize_t n = recv(fd, buf, len, 0);
    cr_assert_geq(n, 0, "recv: %s", strerror(errno));
    return (size_t)n;
}

/* ---- SO_REUSEPORT: every worker gets connections ---- */

static void close_at_once(struct proxy_loop *pl, int fd, const union weft_sockaddr *peer,
                          socklen_t peer_len, size_t addr_idx, void *arg)
{
    (void)pl;
    (void)peer;
    (void)peer_len;
    atomic_int *per_addr = arg;
    atomic_fetch_add(&per_addr[addr_idx], 1);
    close(fd);
}

/* suite timeouts, not per-test ones: per-test timeouts make Criterion's runner leak 48
 * bytes at exit, which fails the ASan run */
TestSuite(pool, .timeout = 60);
TestSuite(original_dst, .timeout = 60);

Test(pool, reuseport_spreads_over_workers_v4_and_v6)
{
    signal(SIGPIPE, SIG_IGN);
    union weft_sockaddr addrs[2];
    socklen_t lens[2];
    addr4(&addrs[0], &lens[0], "127.0.0.1", 0);
    addr6(&addrs[1], &lens[1], "::1", 0);
    static atomic_int per_addr[2];
    struct proxy_pool_cfg cfg = {.num_workers = 2,
                                 .addrs = addrs,
                                 .addr_lens = lens,
                                 .num_addrs = 2,
                                 .on_accept = close_at_once,
                                 .arg = per_addr};
    struct proxy_pool *p;
    int rc = proxy_pool_start(&p, &cfg);
    if (rc != WEFT_OK && errno == EADDRNOTAVAIL) {
        /* no IPv6 loopback here: the IPv4 half alone */
        cfg.num_addrs = 1;
        rc = proxy_pool_start(&p, &cfg);
    }
    cr_assert_eq(rc, WEFT_OK, "pool: %s", strerror(errno));
    cr_assert_eq(proxy_pool_num_workers(p), 2);
    const int per = 64;
    for (size_t ai = 0; ai < cfg.num_addrs; ai++) {
        union weft_sockaddr a;
        socklen_t len;
        cr_assert_eq(proxy_pool_bound_addr(p, ai, &a, &len), WEFT_OK);
        cr_assert_neq(ai == 0 ? a.in4.sin_port : a.in6.sin6_port, 0);
        for (int i = 0; i < per; i++) {
            int fd = dial(&a, len);
            cr_assert_geq(fd, 0, "connect %d: %s", i, strerror(errno));
            close(fd);
        }
    }
    uint64_t want = (uint64_t)per * cfg.num_addrs;
    double end = now_s() + 5;
    while (proxy_pool_accepted(p, 0) + proxy_pool_accepted(p, 1) < want && now_s() < end) {
        usleep(5000);
    }
    uint64_t a0 = proxy_pool_accepted(p, 0), a1 = proxy_pool_accepted(p, 1);
    cr_assert_eq(a0 + a1, want);
    /* The kernel hashes each 4-tuple to a socket of the group: all of 64+ on one worker would
     * be a 2^-63 coincidence. */
    cr_assert_gt(a0, 0, "worker 0 accepted nothing (worker 1: %lu)", (unsigned long)a1);
    cr_assert_gt(a1, 0, "worker 1 accepted nothing (worker 0: %lu)", (unsigned long)a0);
    for (size_t ai = 0; ai < cfg.num_addrs; ai++) {
        cr_assert_eq(atomic_load(&per_addr[ai]), per);
    }
    proxy_pool_free(p);
}

Test(pool, refuses_bad_config)
{
    union weft_sockaddr a;
    socklen_t len;
    addr4(&a, &len, "127.0.0.1", 0);
    struct proxy_pool *p;
    struct proxy_pool_cfg cfg = {.num_workers = PROXY_POOL_MAX_WORKERS + 1,
                                 .addrs = &a,
                                 .addr_lens = &len,
                                 .num_addrs = 1,
                                 .on_accept = close_at_once};
    cr_assert_eq(proxy_pool_start(&p, &cfg), WEFT_EINVAL);
    cfg.num_workers = 1;
    cfg.num_addrs = 0;
    cr_assert_eq(proxy_pool_start(&p, &cfg), WEFT_EINVAL);
    cfg.num_addrs = PROXY_POOL_MAX_ADDRS + 1;
    cr_assert_eq(proxy_pool_start(&p, &cfg), WEFT_EINVAL);
    proxy_pool_free(NULL);
}

/* ---- drain ---- */

struct drain_env {
    union weft_sockaddr upstream;
    socklen_t upstream_len;
    pthread_mutex_t mu;
    char reasons[8][32];
    double at[8];
    atomic_int num_closed;
};

static void drain_on_close(struct proxy_conn *c, const struct proxy_conn_stats *st,
                           const char *reason, void *arg)
{
    (void)c;
    (void)st;
    struct drain_env *env = arg;
    pthread_mutex_lock(&env->mu);
    int i = atomic_load(&env->num_closed);
    if (i < 8) {
        snprintf(env->reasons[i], sizeof(env->reasons[i]), "%s", reason);
        env->at[i] = now_s();
        atomic_store(&env->num_closed, i + 1);
    }
    pthread_mutex_unlock(&env->mu);
}

static void relay_to_upstream(struct proxy_loop *pl, int fd, const union weft_sockaddr *peer,
                              socklen_t peer_len, size_t addr_idx, void *arg)
{
    (void)peer;
    (void)peer_len;
    (void)addr_idx;
    struct drain_env *env = arg;
    static const struct proxy_conn_cbs cbs = {.on_close = drain_on_close};
    struct proxy_conn *c = proxy_conn_new(pl, fd, &cbs, env);
    if (proxy_conn_connect(c, &env->upstream.sa, env->upstream_len) != WEFT_OK) {
        return; /* already closed, with its reason */
    }
}

/* upstream_listener listens on a loopback port for the relayed connections, in |env|. */
static int upstream_listener(struct drain_env *env)
{
    signal(SIGPIPE, SIG_IGN);
    int up_l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr4(&env->upstream, &env->upstream_len, "127.0.0.1", 0);
    cr_assert_eq(bind(up_l, &env->upstream.sa, env->upstream_len), 0);
    cr_assert_eq(listen(up_l, 8), 0);
    cr_assert_eq(getsockname(up_l, &env->upstream.sa, &env->upstream_len), 0);
    return up_l;
}

Test(pool, drain_lets_connections_finish_until_the_deadline)
{
    static struct drain_env env = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int up_l = upstream_listener(&env);

    /* address 0 closes at the drain (inbound); address 1 keeps accepting (outbound) */
    union weft_sockaddr addrs[2];
    socklen_t lens[2];
    addr4(&addrs[0], &lens[0], "127.0.0.1", 0);
    addr4(&addrs[1], &lens[1], "127.0.0.1", 0);
    struct proxy_pool_cfg cfg = {.num_workers = 2,
                                 .addrs = addrs,
                                 .addr_lens = lens,
                                 .num_addrs = 2,
                                 .on_accept = relay_to_upstream,
                                 .arg = &env,
                                 .keep_on_drain = 1u << 1};
    struct proxy_pool *p;
    cr_assert_eq(proxy_pool_start(&p, &cfg), WEFT_OK);
    union weft_sockaddr a, kept;
    socklen_t len, kept_len;
    cr_assert_eq(proxy_pool_bound_addr(p, 0, &a, &len), WEFT_OK);
    cr_assert_eq(proxy_pool_bound_addr(p, 1, &kept, &kept_len), WEFT_OK);

    /* Two relayed connections, A and B, both known to work. */
    int ca = dial(&a, len), cb = dial(&a, len);
    cr_assert(ca >= 0 && cb >= 0);
    int sa = accept(up_l, NULL, NULL), sb = accept(up_l, NULL, NULL);
    cr_assert(sa >= 0 && sb >= 0);
    uint8_t buf[16];
    cr_assert_eq(send(ca, "a", 1, 0), 1);
    cr_assert_eq(send(cb, "b", 1, 0), 1);
    uint8_t ga, gb;
    cr_assert_eq(read_some(sa, &ga, 1, 5), 1);
    cr_assert_eq(read_some(sb, &gb, 1, 5), 1);
    if (ga != 'a') { /* the upstream accepted them in the other order */
        int t = sa;
        sa = sb;
        sb = t;
    }

    const double deadline = 1.0;
    double t0 = now_s();
    proxy_pool_drain(p, deadline, true);

    /* New connections are refused once the listeners are closed. */
    bool refused = false;
    for (int i = 0; i < 200 && !refused; i++) {
        int fd = dial(&a, len);
        if (fd < 0) {
            refused = errno == ECONNREFUSED;
        } else {
            close(fd);
            usleep(10000);
        }
    }
    cr_assert(refused, "still accepting after the drain began");

    /* The kept listener still relays: connect, one byte through, and close it again. */
    int ck = dial(&kept, kept_len);
    cr_assert_geq(ck, 0, "the kept listener refused during the drain");
    int sk = accept(up_l, NULL, NULL);
    cr_assert_geq(sk, 0);
    cr_assert_eq(send(ck, "k", 1, 0), 1);
    cr_assert_eq(read_some(sk, buf, 1, 5), 1);
    cr_assert_eq(buf[0], 'k');
    close(ck);
    close(sk);
    double end = now_s() + 5;
    while (atomic_load(&env.num_closed) < 1 && now_s() < end) {
        usleep(2000);
    }
    cr_assert_eq(atomic_load(&env.num_closed), 1);
    cr_assert_str_eq(env.reasons[0], PROXY_REASON_DONE);

    /* A keeps working and finishes on its own before the deadline. */
    cr_assert_eq(send(ca, "more", 4, 0), 4);
    cr_assert_eq(read_some(sa, buf, sizeof(buf), 5), 4);
    cr_assert_eq(send(sa, "back", 4, 0), 4);
    cr_assert_eq(read_some(ca, buf, sizeof(buf), 5), 4);
    cr_assert_eq(memcmp(buf, "back", 4), 0);
    close(ca);
    close(sa);
    end = now_s() + 5;
    while (atomic_load(&env.num_closed) < 2 && now_s() < end) {
        usleep(2000);
    }
    cr_assert_eq(atomic_load(&env.num_closed), 2);
    cr_assert_str_eq(env.reasons[1], PROXY_REASON_DONE);
    cr_assert_lt(env.at[1] - t0, deadline);
    cr_assert_eq(proxy_pool_open_conns(p), 1);

    /* B stays open until the deadline closes it. */
    end = now_s() + 5;
    while (atomic_load(&env.num_closed) < 3 && now_s() < end) {
        usleep(2000);
    }
    cr_assert_eq(atomic_load(&env.num_closed), 3);
    cr_assert_str_eq(env.reasons[2], PROXY_REASON_DRAIN_DEADLINE);
    cr_assert_geq(env.at[2] - t0, deadline - 0.05);
    cr_assert_eq(read_some(cb, buf, sizeof(buf), 2), 0, "B should see EOF");
    cr_assert_eq(read_some(sb, buf, sizeof(buf), 2), 0, "B's upstream should see EOF");
    proxy_pool_free(p); /* the workers have exited: this joins them */
    close(cb);
    close(sb);
    close(up_l);
}

/* accept_within accepts one connection on |l| within |timeout_ms|, or returns -1. */
static int accept_within(int l, int timeout_ms)
{
    struct pollfd pfd = {.fd = l, .events = POLLIN};
    return poll(&pfd, 1, timeout_ms) == 1 ? accept(l, NULL, NULL) : -1;
}

/* With no connection at all: a keeping drain still serves its kept listener until the
 * deadline (the app may call out while the pod stops); one that does not keep ends at once;
 * and a keeping drain that a non-keeping one follows (SIGTERM, then /quitquitquit) ends then. */
Test(pool, a_keeping_drain_serves_its_kept_listener_until_the_deadline)
{
    static struct drain_env env = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int up_l = upstream_listener(&env);
    enum { KEEP, NO_KEEP, KEEP_THEN_NOT } modes[] = {KEEP, NO_KEEP, KEEP_THEN_NOT};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        union weft_sockaddr a;
        socklen_t len;
        addr4(&a, &len, "127.0.0.1", 0);
        struct proxy_pool_cfg cfg = {.num_workers = 2,
                                     .addrs = &a,
                                     .addr_lens = &len,
                                     .num_addrs = 1,
                                     .on_accept = relay_to_upstream,
                                     .arg = &env,
                                     .keep_on_drain = 1u};
        struct proxy_pool *p;
        cr_assert_eq(proxy_pool_start(&p, &cfg), WEFT_OK);
        cr_assert_eq(proxy_pool_bound_addr(p, 0, &a, &len), WEFT_OK);
        double t0 = now_s();
        bool keeps = proxy_pool_drain(p, 3.0, modes[m] != NO_KEEP);
        cr_assert_eq(keeps, modes[m] != NO_KEEP);
        usleep(300 * 1000);
        int fd = dial(&a, len);
        if (modes[m] != NO_KEEP) {
            cr_assert_geq(fd, 0, "the kept listener closed %.2f s into the drain", now_s() - t0);
            int s_fd = accept_within(up_l, 5000);
            cr_assert_geq(s_fd, 0, "the kept listener's connection was not relayed");
            close(s_fd);
            close(fd);
        } else {
            cr_assert_lt(fd, 0, "a drain that keeps nothing still accepts");
        }
        if (modes[m] == KEEP_THEN_NOT) {
            cr_assert_not(proxy_pool_drain(p, 3.0, false));
            usleep(300 * 1000);
            fd = dial(&a, len);
            cr_assert_lt(fd, 0, "still accepting after the keeping was ended");
        }
        proxy_pool_free(p);
        double took = now_s() - t0;
        if (modes[m] == KEEP) {
            cr_assert_geq(took, 2.9, "the workers left %.2f s before the deadline", took);
        } else {
            cr_assert_lt(took, 2.5, "the workers waited %.2f s with nothing to drain", took);
        }
    }
    close(up_l);
}

/* ---- SO_ORIGINAL_DST, in a network namespace of the test's own ---- */

/* Exit codes of the namespace child. */
enum { NS_OK = 0, NS_SKIP = 77 };

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "netns child: '%s' failed (%d)\n", cmd, rc);
    }
    return rc;
}

/* check_redirect listens on |any| (port chosen by the kernel), redirects |dport| to it in the
 * nat table with |tables|, connects to |dst|:|dport| and checks the listener reads |dst|:|dport|
 * back as the original destination. Returns 0 or a failure line number. */
static int check_redirect(const char *tables, int family, const char *any, const char *dst,
                          uint16_t dport)
{
    union weft_sockaddr la;
    socklen_t llen;
    memset(&la, 0, sizeof(la));
    if (family == AF_INET) {
        la.in4.sin_family = AF_INET;
        inet_pton(AF_INET, any, &la.in4.sin_addr);
        llen = sizeof(la.in4);
    } else {
        la.in6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, any, &la.in6.sin6_addr);
        llen = sizeof(la.in6);
    }
    int lfd;
    if (proxy_listen(&lfd, &la.sa, llen, 8) != WEFT_OK || getsockname(lfd, &la.sa, &llen) != 0) {
        return __LINE__;
    }
    uint16_t port = ntohs(family == AF_INET ? la.in4.sin_port : la.in6.sin6_port);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s -t nat -A OUTPUT -p tcp --dport %u -j REDIRECT --to-ports %u",
             tables, (unsigned)dport, (unsigned)port);
    if (run(cmd) != 0) {
        return __LINE__;
    }
    union weft_sockaddr da;
    memset(&da, 0, sizeof(da));
    socklen_t dlen;
    if (family == AF_INET) {
        da.in4.sin_family = AF_INET;
        da.in4.sin_port = htons(dport);
        inet_pton(AF_INET, dst, &da.in4.sin_addr);
        dlen = sizeof(da.in4);
    } else {
        da.in6.sin6_family = AF_INET6;
        da.in6.sin6_port = htons(dport);
        inet_pton(AF_INET6, dst, &da.in6.sin6_addr);
        dlen = sizeof(da.in6);
    }
    int cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cfd < 0 || connect(cfd, &da.sa, dlen) != 0) {
        fprintf(stderr, "netns child: connect to %s: %s\n", dst, strerror(errno));
        return __LINE__;
    }
    struct pollfd pf = {.fd = lfd, .events = POLLIN};
    if (poll(&pf, 1, 5000) != 1) {
        return __LINE__;
    }
    int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (afd < 0) {
        return __LINE__;
    }
    union weft_sockaddr orig;
    socklen_t olen = 0;
    int rc = proxy_original_dst(afd, &orig, &olen);
    if (rc != WEFT_OK) {
        fprintf(stderr, "netns child: proxy_original_dst: %s\n", weft_strerror(rc));
        return __LINE__;
    }
    if (orig.sa.sa_family != family || olen != dlen ||
        (family == AF_INET && (orig.in4.sin_port != da.in4.sin_port ||
                               orig.in4.sin_addr.s_addr != da.in4.sin_addr.s_addr)) ||
        (family == AF_INET6 && (orig.in6.sin6_port != da.in6.sin6_port ||
                                memcmp(&orig.in6.sin6_addr, &da.in6.sin6_addr, 16) != 0))) {
        char got[INET6_ADDRSTRLEN] = "?";
        inet_ntop(orig.sa.sa_family,
                  orig.sa.sa_family == AF_INET ? (void *)&orig.in4.sin_addr
                                               : (void *)&orig.in6.sin6_addr,
                  got, sizeof(got));
        fprintf(stderr, "netns child: original destination %s, want %s\n", got, dst);
        return __LINE__;
    }
    close(afd);
    close(cfd);
    close(lfd);
    return 0;
}

static int netns_child(void)
{
    if (unshare(CLONE_NEWNET) != 0) {
        fprintf(stderr, "netns child: unshare(CLONE_NEWNET): %s\n", strerror(errno));
        return NS_SKIP;
    }
    /* Everything below lives and dies with this namespace: the host's tables are untouched. */
    if (run("ip link set lo up") != 0 || run("ip addr add 198.18.0.5/32 dev lo") != 0 ||
        run("ip -6 addr add 2001:db8::5/128 dev lo nodad") != 0) {
        return 1;
    }
    int line = check_redirect("iptables", AF_INET, "0.0.0.0", "198.18.0.5", 9);
    if (line != 0) {
        fprintf(stderr, "netns child: IPv4 check failed at line %d\n", line);
        return 2;
    }
    line = check_redirect("ip6tables", AF_INET6, "::", "2001:db8::5", 9);
    if (line != 0) {
        fprintf(stderr, "netns child: IPv6 check failed at line %d\n", line);
        return 3;
    }
    return NS_OK;
}

Test(original_dst, redirected_connection_reports_where_it_was_going)
{
    if (geteuid() != 0) {
        cr_skip_test("SO_ORIGINAL_DST test needs root (a network namespace and iptables)");
    }
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* The child dies with the test; its namespace goes with it. */
        _exit(netns_child());
    }
    int status = 0;
    pid_t got = 0;
    double end = now_s() + 20;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && now_s() < end) {
        usleep(10000);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert_fail("the namespace child hung");
    }
    cr_assert(WIFEXITED(status), "the namespace child died (status %d)", status);
    if (WEXITSTATUS(status) == NS_SKIP) {
        cr_skip_test("no network namespaces here (unshare refused)");
    }
    cr_assert_eq(WEXITSTATUS(status), NS_OK, "the namespace child failed: see its stderr");
}

Test(original_dst, plain_socketpair_is_refused)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    union weft_sockaddr out;
    socklen_t len;
    cr_assert_eq(proxy_original_dst(sv[0], &out, &len), WEFT_EINVAL);
    close(sv[0]);
    close(sv[1]);
}
