/* proxy_bench: what a weft-proxy pair costs (issue 6, "Performance"), on two pods made here by
 * test/testlib/mesh.h: network namespaces joined by a veth (A 198.18.1.1, B 198.18.1.2), the
 * rules of `weftctl iptables install`, a real CA and agent, and weft-proxy in each pod under
 * its own uid. The load is test/bench/proxy_load, run inside the pods:
 *
 *   proxied  the client in pod A as the app's uid (its connections are redirected to proxy A,
 *            which opens TLS 1.3 to proxy B, which hands them to the server at B's own address)
 *            to servers on B's ports 8080 (echo) and 8081 (sink);
 *   direct   the same client in the same pod as proxy A's uid (1337: never redirected outbound)
 *            to the same servers' twins on B's ports 8090 and 8091, which B's rules leave alone
 *            (--exclude-inbound-ports): the same veth, namespaces, kernel and binaries, with no
 *            proxy on the way. Each run checks the proxies' /metrics to make sure which way it
 *            went.
 *
 * Figures (each proxied one beside its direct baseline, ratio = proxied / direct):
 *   1. small requests: RR_CONNS persistent connections, each a closed loop of MSG_LEN bytes out
 *      and MSG_LEN back: requests/s, p50 and p99 latency;
 *   2. new connections per second, one at a time and CONNECT_SLOTS at once (connect, MSG_LEN
 *      bytes each way, close): with the proxies as they are (resumed handshakes) and again
 *      after restarting them with --no-resumption (full handshakes); the handshakes each run
 *      caused, full and resumed, as each proxy's /metrics counts them
 *      (weft_proxy_handshakes_total), and their mean time as the proxies measure it
 *      (weft_proxy_handshake_seconds: the handshake alone, of the whole connection time);
 *   3. bulk: one connection, whole MiB writes to a sink that acknowledges each MiB, up to
 *      BULK_MAX_BYTES or a turn's time: MB/s (10^6 bytes) until the last acknowledgement;
 *   4. VmRSS of each proxy: fresh, after the load above, with IDLE_CONNS idle connections open
 *      through the pair (bytes per connection), and after those closed.
 *
 * A figure and its baseline are measured in turns, ROUNDS times, each turn bounded by
 * BENCH_MAX_SECONDS / ROUNDS and by a count, so that other load on this 2-core host moves both
 * alike; rates are all operations over all time, latencies the median of the turns' p50 and
 * p99. Everything this starts is stopped by its PID and the namespaces (with their veth and
 * rules) deleted, on failure too, and on SIGINT, SIGTERM or SIGHUP; a crash still kills the
 * processes and deletes the namespaces. Figures, never a verdict. Needs root.
 *
 *   bazel run -c opt //test/bench:proxy_bench */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test/bench/bench.h"
#include "test/testlib/mesh.h"

#define PROG "proxy_bench"
#define ROUNDS 3
#define TURN_S (BENCH_MAX_SECONDS / ROUNDS)
#define MSG_LEN 64
#define RR_CONNS 4
#define RR_MAX_OPS (BENCH_MAX_OPS / ROUNDS)
#define CONNECT_SLOTS 4
/* New connections per turn. Each leaves TIME_WAIT sockets and conntrack entries (two per
 * direct connection, four per proxied one) behind for a while; this keeps them well below
 * nf_conntrack_max (262144 here) and the pods' port ranges. */
#define CONNECT_MAX_PER_TURN 5000
#define BULK_MAX_BYTES (256ull << 20)
#define IDLE_CONNS 1000
#define IDLE_OPEN_S 60.0
#define PORT_ECHO 8080 /* behind proxy B */
#define PORT_SINK 8081
#define PORT_ECHO_DIRECT 8090 /* left alone by B's rules */
#define PORT_SINK_DIRECT 8091
#define UID_APP MESH_UID_APP
#define RUN_SLACK_MS 30000 /* what a client may take beyond its own time bound */

#define METRIC_OUT "weft_proxy_connections_total{direction=\"outbound\",outcome=\"mtls\"}"
#define METRIC_IN "weft_proxy_connections_total{direction=\"inbound\",outcome=\"allowed\"}"
#define METRIC_FULL "weft_proxy_handshakes_total{kind=\"full\"}"
#define METRIC_RESUMED "weft_proxy_handshakes_total{kind=\"resumed\"}"
#define METRIC_OPEN "weft_proxy_open_connections"
#define METRIC_HS(dir, kind, what)                                                                 \
    "weft_proxy_handshake_seconds_" what "{direction=\"" dir "\",kind=\"" kind "\"}"

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: bench-allow-client, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" MESH_ID_A "\"]}]\n"
                             "      to: [{ports: [\"8080\", \"8081\"]}]\n";

static struct mesh m;
static volatile sig_atomic_t stop_signal; /* set by on_stop: finish early, clean up */

enum path { DIRECT, PROXIED };

/* one client run's figures, as proxy_load printed them */
struct result {
    long ops;
    double seconds;
    double p50_us, p99_us;
    long errors;
    unsigned long long bytes;
};

/* a figure and its baseline over ROUNDS turns */
struct pair {
    long ops[2];
    double seconds[2];
    unsigned long long bytes[2];
    long errors[2]; /* connections that failed (refused, reset, cut short) */
    double p50[2][ROUNDS], p99[2][ROUNDS];
    int turns;
};

/* handshakes a proxied run made, from both proxies' /metrics: [MESH_POD_A] outbound,
 * [MESH_POD_B] inbound */
struct counts {
    double full[2], resumed[2];
    double hs_seconds[2], hs_count[2]; /* weft_proxy_handshake_seconds, both kinds */
};

static void die(const char *what, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

/* --- stopping everything, whatever happens ---------------------------------------------------- */

/* leftover_namespaces says whether `ip netns list` still shows one of ours. */
static bool leftover_namespaces(const char *ns_a, const char *ns_b)
{
    FILE *p = popen("ip netns list 2>/dev/null", "r");
    if (p == NULL) {
        return false;
    }
    char line[256];
    bool found = false;
    while (fgets(line, sizeof(line), p) != NULL) {
        found |= strncmp(line, ns_a, strlen(ns_a)) == 0 || strncmp(line, ns_b, strlen(ns_b)) == 0;
    }
    pclose(p);
    return found;
}

/* cleanup stops everything and deletes the pods; says so when a namespace is left. */
static void cleanup(void)
{
    char ns_a[32], ns_b[32];
    snprintf(ns_a, sizeof(ns_a), "%s", m.pods[0].ns);
    snprintf(ns_b, sizeof(ns_b), "%s", m.pods[1].ns);
    bool made = m.made_ns;
    mesh_cleanup(&m);
    if (made && leftover_namespaces(ns_a, ns_b)) {
        fprintf(stderr, "%s: the namespace %s or %s is still there\n", PROG, ns_a, ns_b);
    }
}

static void die(const char *what, const char *fmt, ...)
{
    char err[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, sizeof(err), fmt, ap);
    va_end(ap);
    if (stop_signal != 0) {
        snprintf(err, sizeof(err), "stopped by signal %d", (int)stop_signal);
    } else {
        for (size_t i = 0; i < 2; i++) {
            if (m.pods[i].log[0] != '\0') {
                mesh_dump_tail(m.pods[i].log, 3000);
            }
        }
        if (m.agent.log[0] != '\0') {
            mesh_dump_tail(m.agent.log, 3000);
        }
    }
    cleanup();
    bench_die(PROG, what, err);
}

static void check_stop(void)
{
    if (stop_signal != 0) {
        die("run", "stopped");
    }
}

/* --- the pods --------------------------------------------------------------------------------- */

static void pod_sysctl(enum mesh_pod_id pod)
{
    /* The connection runs open tens of thousands of connections to one address and port:
     * a wide port range, TIME_WAIT ports reused for new connections (both per namespace), and
     * closed connections' conntrack entries dropped soon (the table is the host's). */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "ip netns exec %s sysctl -q -w net.ipv4.ip_local_port_range='1024 65000' "
             "net.ipv4.tcp_tw_reuse=1 && "
             "ip netns exec %s sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 "
             "2>/dev/null || true",
             m.pods[pod].ns, m.pods[pod].ns);
    if (system(cmd) != 0) {
        die("sysctl", "failed in %s", m.pods[pod].ns);
    }
}

/* wait_output waits at most |timeout_ms| until |path|, the output of our process |pid|, holds
 * |needle|; dies if the process exits first, the time runs out, or we are told to stop. */
static void wait_output(const char *path, const char *needle, pid_t pid, int timeout_ms)
{
    for (double end = bench_now_s() + timeout_ms / 1e3; !mesh_file_has(path, needle);) {
        check_stop();
        int st;
        if (mesh_kill(&m, pid, 0, 0, &st) == WEFT_OK) {
            die("load", "exited (status %d) before it said \"%s\"; see %s", st, needle, path);
        }
        if (bench_now_s() > end) {
            die("load", "did not say \"%s\" within %d ms; see %s", needle, timeout_ms, path);
        }
        usleep(50 * 1000);
    }
}

/* server_start runs `proxy_load serve MODE IP_B PORT` in pod B as the app and waits until it
 * listens. */
static void server_start(const char *mode, int port)
{
    char out[160], p[16];
    snprintf(out, sizeof(out), "%s/serve-%s-%d.out", m.run_dir, mode, port);
    snprintf(p, sizeof(p), "%d", port);
    const char *argv[] = {mesh_bin(&m, "proxy_load"), "serve", mode, MESH_IP_B, p, NULL};
    pid_t pid;
    if (mesh_spawn(&m, MESH_POD_B, UID_APP, out, argv, &pid) != WEFT_OK) {
        die("server", "%s on %d did not start", mode, port);
    }
    wait_output(out, "listening", pid, 10000);
}

static void proxies_start(const char *const *extra)
{
    char err[512];
    if (mesh_proxies_start(&m, extra, extra, err, sizeof(err)) != WEFT_OK) {
        die("weft-proxy", "%s", err);
    }
}

static void proxies_stop(void)
{
    for (int pod = MESH_POD_A; pod <= MESH_POD_B; pod++) {
        /* nothing is open: a drain ends at once */
        if (mesh_proxy_stop(&m, pod, SIGTERM, 5000, NULL) == WEFT_EAGAIN &&
            mesh_proxy_stop(&m, pod, SIGKILL, 5000, NULL) != WEFT_OK) {
            die("weft-proxy", "the proxy of %s does not stop", m.pods[pod].ns);
        }
    }
}

/* has_no_resumption says whether `weft-proxy --help` offers --no-resumption. */
static bool has_no_resumption(void)
{
    char cmd[256], line[256];
    snprintf(cmd, sizeof(cmd), "%s --help 2>&1", mesh_bin(&m, "weft-proxy"));
    FILE *p = popen(cmd, "r");
    bool found = false;
    while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
        found |= strstr(line, "--no-resumption") != NULL;
    }
    if (p != NULL) {
        pclose(p);
    }
    return found;
}

static double metric(enum mesh_pod_id pod, const char *series)
{
    double v = mesh_metric(&m, pod, series, -1);
    if (v < 0) {
        die("metrics", "no %s from the proxy of %s", series, m.pods[pod].ns);
    }
    return v;
}

/* rss_kib is bench_mem_kib, or the end of the run. */
static long rss_kib(pid_t pid, bool private)
{
    long kib = bench_mem_kib(pid, private);
    if (kib < 0) {
        die("rss", "cannot read the memory of process %d", (int)pid);
    }
    return kib;
}

/* --- one client run -----------------------------------------------------------------------------
 */

/* client runs proxy_load |mode| |args| in pod A, as the app (proxied) or as proxy A's uid
 * (direct), to the echo or the sink on the port of |path|; parses its line. */
static struct result client(enum path path, const char *mode, bool sink, const char *a1,
                            const char *a2, const char *a3, const char *a4, double max_s)
{
    char port[16];
    snprintf(port, sizeof(port), "%d",
             path == PROXIED ? (sink ? PORT_SINK : PORT_ECHO)
                             : (sink ? PORT_SINK_DIRECT : PORT_ECHO_DIRECT));
    const char *argv[] = {mesh_bin(&m, "proxy_load"), mode, MESH_IP_B, port, a1, a2, a3, a4, NULL};
    char out[1024];
    int status = 0;
    int rc = mesh_run(&m, MESH_POD_A, path == PROXIED ? UID_APP : MESH_UID_PROXY_A, argv,
                      (int)(max_s * 1000) + RUN_SLACK_MS, out, sizeof(out), &status);
    check_stop();
    struct result r = {0};
    const char *line = out; /* "MODE key=value ..." and nothing else */
    bool ok = rc == WEFT_OK && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
              strncmp(line, mode, strlen(mode)) == 0 && line[strlen(mode)] == ' ';
    if (ok && strcmp(mode, "bulk") == 0) {
        ok = sscanf(line, "bulk bytes=%llu seconds=%lf", &r.bytes, &r.seconds) == 2;
    } else if (ok) {
        ok = sscanf(line + strlen(mode), " ops=%ld seconds=%lf p50_us=%lf p99_us=%lf errors=%ld",
                    &r.ops, &r.seconds, &r.p50_us, &r.p99_us, &r.errors) == 5;
    }
    if (!ok || r.seconds <= 0) {
        die(mode, "%s run: %s (%s)", path == PROXIED ? "proxied" : "direct",
            rc != WEFT_OK ? weft_strerror(rc) : "failed", out);
    }
    return r;
}

/* through_proxies checks that the run between |before| and now went the way |path| says: the
 * proxied one through both proxies, the direct one through neither. */
static void through_proxies(enum path path, const double before[2])
{
    double out = metric(MESH_POD_A, METRIC_OUT) - before[0];
    double in = metric(MESH_POD_B, METRIC_IN) - before[1];
    if (path == PROXIED ? (out <= 0 || in <= 0) : (out != 0 || in != 0)) {
        die("path", "a %s run made %.0f mTLS connections out of proxy A and %.0f into B",
            path == PROXIED ? "proxied" : "direct", out, in);
    }
}

/* turn runs one client run of |path| and adds it to |p|. */
static void turn(struct pair *p, enum path path, const char *mode, bool sink, const char *a1,
                 const char *a2, const char *a3, const char *a4, double max_s)
{
    double before[2] = {metric(MESH_POD_A, METRIC_OUT), metric(MESH_POD_B, METRIC_IN)};
    struct result r = client(path, mode, sink, a1, a2, a3, a4, max_s);
    through_proxies(path, before);
    p->ops[path] += r.ops;
    p->bytes[path] += r.bytes;
    p->seconds[path] += r.seconds;
    p->p50[path][p->turns] = r.p50_us;
    p->p99[path][p->turns] = r.p99_us;
    p->errors[path] += r.errors;
}

/* measure runs |mode| direct and proxied in turns, ROUNDS times. */
static struct pair measure(const char *mode, bool sink, const char *a1, const char *a2,
                           const char *a3, const char *a4, double max_s)
{
    struct pair p = {0};
    for (p.turns = 0; p.turns < ROUNDS; p.turns++) {
        turn(&p, DIRECT, mode, sink, a1, a2, a3, a4, max_s);
        turn(&p, PROXIED, mode, sink, a1, a2, a3, a4, max_s);
    }
    return p;
}

static struct counts counts_now(void)
{
    static const char *const hs[2][4] = {
        {METRIC_HS("outbound", "full", "sum"), METRIC_HS("outbound", "resumed", "sum"),
         METRIC_HS("outbound", "full", "count"), METRIC_HS("outbound", "resumed", "count")},
        {METRIC_HS("inbound", "full", "sum"), METRIC_HS("inbound", "resumed", "sum"),
         METRIC_HS("inbound", "full", "count"), METRIC_HS("inbound", "resumed", "count")},
    };
    struct counts c;
    for (int pod = MESH_POD_A; pod <= MESH_POD_B; pod++) {
        c.full[pod] = metric(pod, METRIC_FULL);
        c.resumed[pod] = metric(pod, METRIC_RESUMED);
        c.hs_seconds[pod] = metric(pod, hs[pod][0]) + metric(pod, hs[pod][1]);
        c.hs_count[pod] = metric(pod, hs[pod][2]) + metric(pod, hs[pod][3]);
    }
    return c;
}

static struct counts counts_since(const struct counts *before)
{
    struct counts c = counts_now();
    for (int pod = MESH_POD_A; pod <= MESH_POD_B; pod++) {
        c.full[pod] -= before->full[pod];
        c.resumed[pod] -= before->resumed[pod];
        c.hs_seconds[pod] -= before->hs_seconds[pod];
        c.hs_count[pod] -= before->hs_count[pod];
    }
    return c;
}

/* connect_run measures new connections, |slots| at once, direct and proxied in turns; |*out|
 * gets the handshakes the proxied turns made. */
static struct pair connect_run(int slots, struct counts *out)
{
    char s[16], len[16], max[16], t[16];
    snprintf(s, sizeof(s), "%d", slots);
    snprintf(len, sizeof(len), "%d", MSG_LEN);
    snprintf(max, sizeof(max), "%d", CONNECT_MAX_PER_TURN);
    snprintf(t, sizeof(t), "%.3f", TURN_S);
    struct counts before = counts_now();
    struct pair p = measure("connect", false, s, len, max, t, TURN_S);
    *out = counts_since(&before);
    return p;
}

/* --- the figures --------------------------------------------------------------------------------
 */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[ROUNDS];
    memcpy(s, v, (size_t)n * sizeof(*v));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void row(const char *what, double direct, double proxied)
{
    printf("  %-50s %12.0f %12.0f %9.2fx\n", what, direct, proxied, proxied / direct);
}

/* rate_rows prints |p|'s rate (|unit| per second) and its median p50 and p99. */
static void rate_rows(const struct pair *p, const char *unit, bool latencies)
{
    char what[96];
    snprintf(what, sizeof(what), "%s/s", unit);
    row(what, (double)p->ops[DIRECT] / p->seconds[DIRECT],
        (double)p->ops[PROXIED] / p->seconds[PROXIED]);
    if (latencies) {
        row("  p50 latency, us", median(p->p50[DIRECT], p->turns),
            median(p->p50[PROXIED], p->turns));
        row("  p99 latency, us", median(p->p99[DIRECT], p->turns),
            median(p->p99[PROXIED], p->turns));
    }
    if (p->errors[DIRECT] + p->errors[PROXIED] > 0) {
        printf("    (failed connections, not counted: %ld direct, %ld proxied)\n",
               p->errors[DIRECT], p->errors[PROXIED]);
    }
}

static void full_rows(bool measured, const struct pair *p)
{
    if (measured) {
        rate_rows(p, "full handshakes (--no-resumption): connections", true);
    } else {
        printf("  full handshakes: not measured (this weft-proxy has no --no-resumption)\n");
    }
}

static void counts_row(const char *what, const struct pair *p, const struct counts *c)
{
    double ms[2];
    for (int pod = MESH_POD_A; pod <= MESH_POD_B; pod++) {
        ms[pod] = c->hs_count[pod] > 0 ? c->hs_seconds[pod] / c->hs_count[pod] * 1e3 : 0;
    }
    printf("  %-30s %11ld %9.0f / %-9.0f %9.0f / %-9.0f %8.2f / %-8.2f\n", what, p->ops[PROXIED],
           c->full[MESH_POD_A], c->resumed[MESH_POD_A], c->full[MESH_POD_B], c->resumed[MESH_POD_B],
           ms[MESH_POD_A], ms[MESH_POD_B]);
}

/* --- the run ------------------------------------------------------------------------------------
 */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    mesh_init(&m);
    mesh_catch_signals(&m, &stop_signal);
    struct mesh_opts o = {
        .policy_yaml = policy,
        .runfiles = {"test/bench/proxy_load", NULL},
        .iptables_extra = {NULL, "--exclude-inbound-ports 8090,8091"},
    };
    char err[512];
    if (mesh_start(&m, &o, err, sizeof(err)) != WEFT_OK) {
        die("mesh", "%s", err);
    }
    check_stop();
    pod_sysctl(MESH_POD_A);
    pod_sysctl(MESH_POD_B);
    server_start("echo", PORT_ECHO);
    server_start("sink", PORT_SINK);
    server_start("echo", PORT_ECHO_DIRECT);
    server_start("sink", PORT_SINK_DIRECT);
    proxies_start(NULL);
    check_stop();
    long rss_fresh[2] = {rss_kib(m.pods[0].proxy_pid, false), rss_kib(m.pods[1].proxy_pid, false)};
    long private_fresh[2] = {rss_kib(m.pods[0].proxy_pid, true),
                             rss_kib(m.pods[1].proxy_pid, true)};

    char conns[16], len[16], max[16], t[16], bytes[32];
    snprintf(conns, sizeof(conns), "%d", RR_CONNS);
    snprintf(len, sizeof(len), "%d", MSG_LEN);
    snprintf(max, sizeof(max), "%d", RR_MAX_OPS);
    snprintf(t, sizeof(t), "%.3f", TURN_S);
    snprintf(bytes, sizeof(bytes), "%llu", BULK_MAX_BYTES);
    struct pair rr = measure("rr", false, conns, len, max, t, TURN_S);
    struct pair bulk = measure("bulk", true, bytes, t, NULL, NULL, TURN_S);
    struct counts c1_resumed, cn_resumed, c1_full = {0}, cn_full = {0};
    struct pair conn1_resumed = connect_run(1, &c1_resumed);
    struct pair connn_resumed = connect_run(CONNECT_SLOTS, &cn_resumed);

    /* idle connections: IDLE_CONNS through the pair, held while the RSS is read */
    long rss_after[2] = {rss_kib(m.pods[0].proxy_pid, false), rss_kib(m.pods[1].proxy_pid, false)};
    char idle_out[160], n[16], hold[16];
    snprintf(idle_out, sizeof(idle_out), "%s/idle.out", m.run_dir);
    snprintf(n, sizeof(n), "%d", IDLE_CONNS);
    snprintf(hold, sizeof(hold), "%.0f", IDLE_OPEN_S);
    const char *argv[] = {mesh_bin(&m, "proxy_load"), "idle", MESH_IP_B, "8080", n, hold, NULL};
    pid_t idle_pid;
    if (mesh_spawn(&m, MESH_POD_A, UID_APP, idle_out, argv, &idle_pid) != WEFT_OK) {
        die("idle", "the client did not start");
    }
    wait_output(idle_out, "idle open=", idle_pid, (int)(IDLE_OPEN_S * 1000) + 5000);
    char want[32];
    snprintf(want, sizeof(want), "idle open=%d ", IDLE_CONNS);
    if (!mesh_file_has(idle_out, want)) {
        die("idle", "fewer than %d connections opened within %.0f s; see %s", IDLE_CONNS,
            IDLE_OPEN_S, idle_out);
    }
    double open_conns[2] = {metric(MESH_POD_A, METRIC_OPEN), metric(MESH_POD_B, METRIC_OPEN)};
    long rss_idle[2] = {rss_kib(m.pods[0].proxy_pid, false), rss_kib(m.pods[1].proxy_pid, false)};
    if (mesh_kill(&m, idle_pid, SIGTERM, 10000, NULL) != WEFT_OK) {
        die("idle", "the client did not stop");
    }
    for (int i = 0;
         i < 100 && (metric(MESH_POD_A, METRIC_OPEN) > 0 || metric(MESH_POD_B, METRIC_OPEN) > 0);
         i++) {
        usleep(100 * 1000);
    }
    long rss_closed[2] = {rss_kib(m.pods[0].proxy_pid, false), rss_kib(m.pods[1].proxy_pid, false)};

    /* full handshakes: the same proxies again, told not to resume */
    bool can_full = has_no_resumption();
    struct pair conn1_full = {0}, connn_full = {0};
    if (can_full) {
        proxies_stop();
        static const char *const no_resumption[] = {"--no-resumption", NULL};
        proxies_start(no_resumption);
        check_stop();
        conn1_full = connect_run(1, &c1_full);
        connn_full = connect_run(CONNECT_SLOTS, &cn_full);
        if (c1_full.resumed[0] + c1_full.resumed[1] + cn_full.resumed[0] + cn_full.resumed[1] > 0) {
            die("--no-resumption", "the proxies resumed sessions anyway");
        }
    }

    printf("\nweft-proxy pair vs direct: pod A %s -> veth -> pod B %s, same pods, binaries and "
           "servers;\n%d turns each, direct and proxied alternating, each turn at most %.0f ms\n\n",
           MESH_IP_A, MESH_IP_B, ROUNDS, TURN_S * 1e3);
    printf("  %-50s %12s %12s %10s\n", "", "direct", "proxied", "proxied/direct");
    printf("small requests: %d persistent connections, %d B each way\n", RR_CONNS, MSG_LEN);
    rate_rows(&rr, "requests", true);
    printf("new connections, 1 at a time (connect, %d B each way, close)\n", MSG_LEN);
    rate_rows(&conn1_resumed, "resumed handshakes: connections", true);
    full_rows(can_full, &conn1_full);
    printf("new connections, %d at once\n", CONNECT_SLOTS);
    rate_rows(&connn_resumed, "resumed handshakes: connections", true);
    full_rows(can_full, &connn_full);
    printf("bulk: 1 connection, whole MiB writes, each turn up to %llu MiB or %.0f ms\n",
           BULK_MAX_BYTES >> 20, TURN_S * 1e3);
    row("MB/s (10^6 bytes, to the sink's last ack)",
        (double)bulk.bytes[DIRECT] / bulk.seconds[DIRECT] / 1e6,
        (double)bulk.bytes[PROXIED] / bulk.seconds[PROXIED] / 1e6);

    printf("\nhandshakes during the proxied connection runs (weft_proxy_handshakes_total)\n");
    printf("  %-30s %11s %21s %21s %19s\n", "", "connections", "proxy A full/resumed",
           "proxy B full/resumed", "mean handshake ms");
    printf("  %-30s %11s %21s %21s %19s\n", "", "", "(outbound)", "(inbound)", "A / B");
    counts_row("1 at a time, resumption on", &conn1_resumed, &c1_resumed);
    if (can_full) {
        counts_row("1 at a time, --no-resumption", &conn1_full, &c1_full);
    }
    counts_row("4 at once, resumption on", &connn_resumed, &cn_resumed);
    if (can_full) {
        counts_row("4 at once, --no-resumption", &connn_full, &cn_full);
    }
    if (c1_resumed.resumed[MESH_POD_A] == 0 || cn_resumed.resumed[MESH_POD_A] == 0) {
        printf("  (resumption on, yet no handshake resumed: those rows are full handshakes)\n");
    }

    printf("\nVmRSS of each proxy (2 workers)                    %12s %12s\n", "proxy A",
           "proxy B");
    printf("  %-50s %8ld KiB %8ld KiB\n", "fresh, ready, nothing open", rss_fresh[0], rss_fresh[1]);
    printf("  %-50s %8ld KiB %8ld KiB\n", "  of which private (not shared library pages)",
           private_fresh[0], private_fresh[1]);
    printf("  %-50s %8ld KiB %8ld KiB\n", "after the runs above, nothing open", rss_after[0],
           rss_after[1]);
    char what[96];
    snprintf(what, sizeof(what), "%d idle connections open (gauge: %.0f, %.0f)", IDLE_CONNS,
             open_conns[0], open_conns[1]);
    printf("  %-50s %8ld KiB %8ld KiB\n", what, rss_idle[0], rss_idle[1]);
    printf("  %-50s %8.0f B   %8.0f B\n", "  per idle connection (vs after the runs)",
           (double)(rss_idle[0] - rss_after[0]) * 1024 / IDLE_CONNS,
           (double)(rss_idle[1] - rss_after[1]) * 1024 / IDLE_CONNS);
    printf("  %-50s %8ld KiB %8ld KiB\n", "after they closed", rss_closed[0], rss_closed[1]);
    printf("\n  bazel run -c opt //test/bench:proxy_bench\n");
    cleanup();
    return 0;
}
