/* mesh_bar: issue 7's performance bar. Four ways from pod A to the same servers in pod B, in the
 * same two pods made by test/testlib/mesh.h (network namespaces joined by a veth, A 198.18.1.1,
 * B 198.18.1.2, the rules of `weftctl iptables install`, a real CA and agent):
 *
 *   direct      the client in A as proxy A's uid (never redirected) to B's servers on ports
 *               that B's rules leave alone (--exclude-inbound-ports), as proxy_bench does;
 *   plaintext   an HAProxy `mode tcp` pair without TLS (the no-TLS floor): the client to
 *               haproxy A on 127.0.0.1, which relays to haproxy B, which relays to the servers;
 *   HAProxy     an HAProxy 2.6 (Debian's) mTLS sidecar pair, `mode tcp`: A originates TLS 1.3
 *               with a P-256 client certificate, B terminates it and verifies it (both
 *               `ssl-min-ver TLSv1.3`, `verify required`), with the certificates minted here
 *               by `weftctl svid mint` (root, intermediate, one leaf per side, as the mesh's CA
 *               issues them: the peer sends leaf and intermediate); resumption as HAProxy does
 *               it, and on a second listener `no-ssl-reuse` for full handshakes;
 *   weft        the client as the app's uid, redirected to weft-proxy A, mTLS to weft-proxy B,
 *               which hands the connection to the server at B's own address (as proxy_bench).
 *
 * HAProxy runs as each pod's proxy uid (the rules leave its connections alone) on ports
 * excluded from capture. Every sidecar runs one thread (HAProxy `nbthread 1`, weft-proxy
 * `--workers 1`): one event loop each on the one core they get. The load generators (wrk,
 * test/bench/proxy_load) are pinned to CORE_LOAD, and every proxy and server to CORE_MESH
 * (taskset; the CA and agent are left alone). The same servers (proxy_load serve echo, sink and
 * http, one per port) answer every way.
 *
 * Measures, each ROUNDS times, the ways in turn (each round starting with the next way, so
 * that drift on this shared host falls on all alike); medians of the rounds:
 *   1. keep-alive requests/s: wrk, WRK_CONNS connections, 1 thread, WRK_S s, GET answered
 *      with a 1 KiB body (proxy_load serve http);
 *   2. proxy CPU per request, both sidecars together: utime+stime (/proc/PID/stat) over the
 *      wrk run, divided by the requests wrk counted;
 *   3. 64-byte ping-pong round trip on 1 connection (proxy_load rr): p50 and p99;
 *   4. new connections/s, CONNECT_SLOTS at once (proxy_load connect, 64 B each way, close):
 *      with resumption (HAProxy's reuse, weft's tickets) and with full handshakes (HAProxy
 *      `no-ssl-reuse`, weft-proxy restarted with --no-resumption); the handshakes each run made
 *      are counted (HAProxy B's ssl_sess / ssl_reused_sess, weft's /metrics) and checked;
 *   5. bulk: BULK_BYTES to a sink on one connection (proxy_load bulk), MB/s;
 *   6. VmRSS of each proxy fresh (and its private part: Private_Clean + Private_Dirty of
 *      /proc/PID/smaps_rollup); IDLE_CONNS idle connections opened and held through each pair,
 *      VmRSS growth per connection per side, and one more round trip on each before they close
 *      (all must answer).
 * Each turn checks its way: a weft turn moved weft's connection counters and the others did
 * not; a relay turn moved its haproxy B's sessions. Then one table: the medians, weft/HAProxy
 * and weft/plaintext, the target for each ratio and whether it is met.
 *
 * Every client run is bounded in count and time, the whole run by RUN_MAX_S. Everything started
 * is stopped by its PID and the namespaces (with their veth and rules) deleted, on failure too,
 * and on SIGINT, SIGTERM or SIGHUP; a crash still kills the processes and deletes the
 * namespaces. Needs root, and wrk and haproxy (tools/install-deps.sh --bench).
 *
 *   bazel run -c opt //test/bench:mesh_bar */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test/bench/bench.h"
#include "test/testlib/mesh.h"

#define PROG "mesh_bar"
#define COMMAND "bazel run -c opt //test/bench:mesh_bar"
#define ROUNDS 5
#define RUN_MAX_S 420.0 /* the whole run; it takes about half */
#define CORE_LOAD "0"   /* wrk and proxy_load clients */
#define CORE_MESH "1"   /* every proxy and server */
/* the clients' arguments, as they are written on their command lines (seconds, counts) */
#define WRK_CONNS "32"
#define WRK_S "3"
#define RR_LEN "64"
#define RR_S "2"
#define RR_MAX_OPS "200000"
#define CONNECT_SLOTS "4"
#define CONNECT_LEN "64"
#define CONNECT_S "2.5"
/* New connections per turn: each leaves TIME_WAIT sockets and conntrack entries behind for a
 * while (see pod_sysctl); this keeps them well below the table's size and the port ranges. */
#define CONNECT_MAX "5000"
#define BULK_BYTES (100ull << 20)
#define BULK_MAX_S 10.0
#define IDLE_CONNS 1000
#define IDLE_OPEN_S 40.0
#define RUN_SLACK_MS 30000 /* what a client may take beyond its own time bound */
#define UID_APP MESH_UID_APP

/* B's servers: PORT_CAPTURED + svc behind weft-proxy B, PORT_EXCLUDED + svc left alone by B's
 * rules (the direct way and the relays' backends); the relays listen on B at PORT_*_B + svc
 * (excluded too) and on A's 127.0.0.1 at PORT_*_A + svc; PORT_HA_FULL_A is HAProxy A's echo
 * listener with no-ssl-reuse. */
#define PORT_CAPTURED 8080
#define PORT_EXCLUDED 8090
#define PORT_HA_B 8190
#define PORT_PLAIN_B 8290
#define PORT_HA_A 9190
#define PORT_HA_FULL_A 9193
#define PORT_PLAIN_A 9290
#define EXCLUDED_B "--exclude-inbound-ports 8090-8092,8190-8192,8290-8292"
#define TLS_TD "mesh-bar.test" /* the HAProxy pair's own trust domain */

#define METRIC_OUT "weft_proxy_connections_total{direction=\"outbound\",outcome=\"mtls\"}"
#define METRIC_IN "weft_proxy_connections_total{direction=\"inbound\",outcome=\"allowed\"}"
#define METRIC_FULL "weft_proxy_handshakes_total{kind=\"full\"}"
#define METRIC_RESUMED "weft_proxy_handshakes_total{kind=\"resumed\"}"
#define METRIC_OPEN "weft_proxy_open_connections"

enum path { DIRECT, PLAIN, HAPROXY, WEFT, NUM_PATHS };
enum svc { ECHO, SINK, HTTP, NUM_SVCS };

static const char *const path_names[NUM_PATHS] = {"direct", "plaintext", "HAProxy", "weft"};
static const char *const svc_names[NUM_SVCS] = {"echo", "sink", "http"};

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: bar-allow-client, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" MESH_ID_A "\"]}]\n"
                             "      to: [{ports: [\"8080\", \"8081\", \"8082\"]}]\n";

static struct mesh m;
static volatile sig_atomic_t stop_signal; /* set by on_stop: finish early, clean up */
static double run_start;
static pid_t haproxy_pid[NUM_PATHS][2]; /* [PLAIN] and [HAPROXY], [MESH_POD_A] and [_B] */
static char pki_dir[160];

/* one figure of each way in each round */
struct figure {
    double v[NUM_PATHS][ROUNDS];
};

/* handshakes counted on the server side of a pair: [0] full, [1] resumed */
struct handshakes {
    double weft[2], haproxy[2];
};

static void die(const char *what, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

/* --- stopping everything, whatever happens ------------------------------------------------ */

/* cleanup stops everything and deletes the pods (mesh_cleanup kills every process we started,
 * the haproxies among them, and whatever else runs in the namespaces); says so when a namespace
 * is left. */
static void cleanup(void)
{
    char ns[2][32];
    snprintf(ns[0], sizeof(ns[0]), "%s", m.pods[0].ns);
    snprintf(ns[1], sizeof(ns[1]), "%s", m.pods[1].ns);
    bool made = m.made_ns;
    mesh_cleanup(&m);
    FILE *p = made ? popen("ip netns list 2>/dev/null", "r") : NULL;
    char line[256];
    while (p != NULL && fgets(line, sizeof(line), p) != NULL) {
        for (int i = 0; i < 2; i++) {
            if (strncmp(line, ns[i], strlen(ns[i])) == 0) {
                fprintf(stderr, "%s: the namespace %s is still there\n", PROG, ns[i]);
            }
        }
    }
    if (p != NULL) {
        pclose(p);
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
    }
    cleanup();
    bench_die(PROG, what, err);
}

/* check_stop ends the run when we were told to stop or it has run too long. */
static void check_stop(void)
{
    if (stop_signal != 0) {
        die("run", "stopped");
    }
    if (bench_now_s() - run_start > RUN_MAX_S) {
        die("run", "over %.0f s in all", RUN_MAX_S);
    }
}

/* --- small tools -------------------------------------------------------------------------- */

static void sh(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sh runs |fmt| with sh -c as root in the root namespace; dies unless it exits 0. */
static void sh(const char *what, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        die(what, "`%s` failed (status %d)", cmd, st);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        die("write", "%s: %s", path, strerror(errno));
    }
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fscanf(f, "%lf", &l) != 1) {
            l = -1;
        }
        fclose(f);
    }
    return l;
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

/* cpu_s returns the CPU time |pid| has used, all threads, user and system (utime + stime of
 * /proc/PID/stat), in seconds. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    buf[n] = '\0';
    /* after "pid (comm) ", whose comm may hold spaces: state is field 3, utime 14, stime 15 */
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        die("cpu", "cannot read %s", path);
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* sidecar returns the PID of side |pod| of way |path|'s pair (0 for the direct way). */
static pid_t sidecar(enum path path, int pod)
{
    return path == WEFT ? m.pods[pod].proxy_pid : path == DIRECT ? 0 : haproxy_pid[path][pod];
}

static double sidecars_cpu_s(enum path path)
{
    return path == DIRECT ? 0 : cpu_s(sidecar(path, MESH_POD_A)) + cpu_s(sidecar(path, MESH_POD_B));
}

/* --- HAProxy ----------------------------------------------------------------------------- */

static const char *haproxy_sock(enum path path, int pod)
{
    static char s[2][2][160];
    snprintf(s[path == HAPROXY][pod], sizeof(s[0][0]), "%s/haproxy-%s-%c.sock", m.run_dir,
             path == HAPROXY ? "tls" : "plain", pod == MESH_POD_A ? 'a' : 'b');
    return s[path == HAPROXY][pod];
}

/* haproxy_stat returns the sum of |field| over the FRONTEND rows of `show stat` on the stats
 * socket of side |pod| of way |path|'s pair, or -1 when it does not answer. */
static double haproxy_stat(enum path path, int pod, const char *field)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", haproxy_sock(path, pod));
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static char buf[1 << 16];
    size_t len = 0;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        write(fd, "show stat\n", 10) != 10) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    ssize_t r;
    while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    /* "# pxname,svname,...\n" then one CSV row per proxy and server */
    int col = -1, i = 0;
    char *save, *line = strtok_r(buf, "\n", &save);
    if (line == NULL || strncmp(line, "# ", 2) != 0) {
        return -1;
    }
    for (char *f = line + 2, *end; f != NULL; f = end != NULL ? end + 1 : NULL, i++) {
        end = strchr(f, ',');
        if ((end != NULL ? (size_t)(end - f) : strlen(f)) == strlen(field) &&
            strncmp(f, field, strlen(field)) == 0) {
            col = i;
        }
    }
    double sum = 0;
    while (col >= 0 && (line = strtok_r(NULL, "\n", &save)) != NULL) {
        const char *f = line;
        for (i = 0; i < col && f != NULL; i++) {
            f = strchr(f, ',');
            f = f != NULL ? f + 1 : NULL;
        }
        const char *sv = strchr(line, ',');
        if (f != NULL && sv != NULL && strncmp(sv + 1, "FRONTEND,", 9) == 0) {
            sum += strtod(f, NULL);
        }
    }
    return col >= 0 ? sum : -1;
}

/* mint_pki makes the HAProxy pair's certificates with weftctl: a root and an intermediate,
 * P-256 (weftctl's default), an hour each (nothing outlives the run), and one leaf per side
 * with the mesh's IDs, the intermediate appended; each side's PEM (chain and key) readable by
 * its proxy uid only. */
static void mint_pki(void)
{
    const char *w = mesh_bin(&m, "weftctl");
    snprintf(pki_dir, sizeof(pki_dir), "%s/pki", m.run_dir);
    sh("pki",
       "mkdir -m 0755 %s && cd %s && exec 2>mint.log && "
       "%s svid mint root --td " TLS_TD " --cert root.pem --key root.key --ttl 1h && "
       "%s svid mint intermediate --td " TLS_TD " --ca-cert root.pem --ca-key root.key "
       "--cert int.pem --key int.key --ttl 1h && "
       "%s svid mint leaf --id spiffe://" TLS_TD "/ns/demo/sa/client --ca-cert int.pem "
       "--ca-key int.key --cert a.crt --key a.key --chain --ttl 1h && "
       "%s svid mint leaf --id spiffe://" TLS_TD "/ns/demo/sa/server --ca-cert int.pem "
       "--ca-key int.key --cert b.crt --key b.key --chain --ttl 1h && "
       "cat a.crt a.key > a.pem && cat b.crt b.key > b.pem && chmod 0600 a.pem b.pem && "
       "chown %u:%u a.pem && chown %u:%u b.pem",
       pki_dir, pki_dir, w, w, w, w, MESH_UID_PROXY_A, MESH_UID_PROXY_A, MESH_UID_PROXY_B,
       MESH_UID_PROXY_B);
}

/* haproxy_config writes the configuration of side |pod| of way |path| (PLAIN or HAPROXY) and
 * returns its path. */
static const char *haproxy_config(enum path path, int pod)
{
    static char file[2][2][160];
    char *cfg = file[path == HAPROXY][pod];
    snprintf(cfg, sizeof(file[0][0]), "%s/haproxy-%s-%c.cfg", m.run_dir,
             path == HAPROXY ? "tls" : "plain", pod == MESH_POD_A ? 'a' : 'b');
    char text[8192], tls[512] = "";
    int len = snprintf(text, sizeof(text),
                       "global\n"
                       "    nbthread 1\n"
                       "    maxconn 8192\n"
                       "    stats socket %s mode 600 level admin\n"
                       "defaults\n"
                       "    mode tcp\n"
                       "    timeout connect 5s\n"
                       "    timeout client 120s\n"
                       "    timeout server 120s\n",
                       haproxy_sock(path, pod));
    int base_a = path == HAPROXY ? PORT_HA_A : PORT_PLAIN_A;
    int base_b = path == HAPROXY ? PORT_HA_B : PORT_PLAIN_B;
    if (path == HAPROXY) {
        snprintf(tls, sizeof(tls),
                 " ssl crt %s/%c.pem ca-file %s/root.pem verify required ssl-min-ver TLSv1.3",
                 pki_dir, pod == MESH_POD_A ? 'a' : 'b', pki_dir);
    }
    for (int s = 0; s < NUM_SVCS; s++) {
        if (pod == MESH_POD_A) {
            len += snprintf(text + len, sizeof(text) - (size_t)len,
                            "listen %s\n    bind 127.0.0.1:%d\n    server b %s:%d%s\n",
                            svc_names[s], base_a + s, MESH_IP_B, base_b + s, tls);
        } else {
            len += snprintf(text + len, sizeof(text) - (size_t)len,
                            "listen %s\n    bind %s:%d%s\n    server s %s:%d\n", svc_names[s],
                            MESH_IP_B, base_b + s, tls, MESH_IP_B, PORT_EXCLUDED + s);
        }
    }
    if (path == HAPROXY && pod == MESH_POD_A) {
        snprintf(text + len, sizeof(text) - (size_t)len,
                 "listen echo_full\n    bind 127.0.0.1:%d\n    server b %s:%d%s no-ssl-reuse\n",
                 PORT_HA_FULL_A, MESH_IP_B, PORT_HA_B + ECHO, tls);
    }
    write_file(cfg, text);
    return cfg;
}

/* haproxy_start starts side |pod| of way |path|'s pair as that pod's proxy uid, pinned to
 * CORE_MESH, and waits (at most 10 s) until its stats socket answers. */
static void haproxy_start(enum path path, int pod)
{
    char out[160];
    snprintf(out, sizeof(out), "%s/haproxy-%s-%c.log", m.run_dir, path == HAPROXY ? "tls" : "plain",
             pod == MESH_POD_A ? 'a' : 'b');
    const char *argv[] = {
        "taskset", "-c", CORE_MESH, "haproxy", "-db", "-f", haproxy_config(path, pod), NULL};
    if (mesh_spawn(&m, (enum mesh_pod_id)pod, m.pods[pod].proxy_uid, out, argv,
                   &haproxy_pid[path][pod]) != WEFT_OK) {
        die("haproxy", "cannot start it");
    }
    for (int i = 0; haproxy_stat(path, pod, "stot") < 0; i++) {
        int st;
        if (mesh_kill(&m, haproxy_pid[path][pod], 0, 0, &st) == WEFT_OK) {
            mesh_dump_tail(out, 3000);
            die("haproxy", "exited (status %d); see %s", st, out);
        }
        if (i == 100) {
            die("haproxy", "its stats socket did not answer within 10 s; see %s", out);
        }
        usleep(100 * 1000);
    }
}

/* --- the pods, servers and weft ------------------------------------------------------------ */

static void pod_sysctl(enum mesh_pod_id pod)
{
    /* The connection runs open thousands of connections to one address and port: a wide port
     * range, TIME_WAIT ports reused for new connections (both per namespace), and closed
     * connections' conntrack entries dropped soon (the table is the host's). */
    sh("sysctl",
       "ip netns exec %s sysctl -q -w net.ipv4.ip_local_port_range='1024 65000' "
       "net.ipv4.tcp_tw_reuse=1 && "
       "{ ip netns exec %s sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 "
       "2>/dev/null || true; }",
       m.pods[pod].ns, m.pods[pod].ns);
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

/* server_start runs `proxy_load serve MODE IP_B PORT` in pod B as the app, pinned to
 * CORE_MESH, and waits until it listens. */
static void server_start(enum svc s, int port)
{
    char out[160], p[16];
    snprintf(out, sizeof(out), "%s/serve-%s-%d.out", m.run_dir, svc_names[s], port);
    snprintf(p, sizeof(p), "%d", port);
    const char *argv[] = {"taskset", "-c",         CORE_MESH, mesh_bin(&m, "proxy_load"),
                          "serve",   svc_names[s], MESH_IP_B, p,
                          NULL};
    pid_t pid;
    if (mesh_spawn(&m, MESH_POD_B, UID_APP, out, argv, &pid) != WEFT_OK) {
        die("server", "%s on %d did not start", svc_names[s], port);
    }
    wait_output(out, "listening", pid, 10000);
}

/* weft_start starts both weft-proxies (one worker each, |no_resumption| or not) and pins every
 * thread of theirs to CORE_MESH. */
static void weft_start(bool no_resumption)
{
    const char *extra[] = {"--workers", "1", no_resumption ? "--no-resumption" : NULL, NULL};
    char err[512];
    if (mesh_proxies_start(&m, extra, extra, err, sizeof(err)) != WEFT_OK) {
        die("weft-proxy", "%s", err);
    }
    for (int pod = MESH_POD_A; pod <= MESH_POD_B; pod++) {
        sh("taskset", "taskset -a -p -c " CORE_MESH " %d >/dev/null", (int)m.pods[pod].proxy_pid);
    }
}

static void weft_stop(void)
{
    for (int pod = MESH_POD_A; pod <= MESH_POD_B; pod++) {
        /* nothing is open: a drain ends at once */
        if (mesh_proxy_stop(&m, pod, SIGTERM, 5000, NULL) == WEFT_EAGAIN &&
            mesh_proxy_stop(&m, pod, SIGKILL, 5000, NULL) != WEFT_OK) {
            die("weft-proxy", "the proxy of %s does not stop", m.pods[pod].ns);
        }
    }
}

static double metric(enum mesh_pod_id pod, const char *series)
{
    double v = mesh_metric(&m, pod, series, -1);
    if (v < 0) {
        die("metrics", "no %s from the proxy of %s", series, m.pods[pod].ns);
    }
    return v;
}

/* --- one turn ------------------------------------------------------------------------------ */

/* target writes where way |path|'s client connects for |s|: the host into |host| (16 bytes)
 * and the port into |port| (8 bytes); returns the uid it runs as. */
static unsigned target(enum path path, enum svc s, bool full, char *host, char *port)
{
    static const int ports[NUM_PATHS] = {PORT_EXCLUDED, PORT_PLAIN_A, PORT_HA_A, PORT_CAPTURED};
    snprintf(host, 16, "%s", path == DIRECT || path == WEFT ? MESH_IP_B : "127.0.0.1");
    snprintf(port, 8, "%d", path == HAPROXY && full ? PORT_HA_FULL_A : ports[path] + (int)s);
    return path == WEFT ? UID_APP : MESH_UID_PROXY_A;
}

/* way_count returns how many connections way |path|'s server side has taken so far (weft's
 * inbound counter, haproxy B's sessions); weft's outbound one in |*out_weft|. */
static double way_count(enum path path, double out_weft[2])
{
    out_weft[0] = metric(MESH_POD_A, METRIC_OUT);
    out_weft[1] = metric(MESH_POD_B, METRIC_IN);
    if (path == PLAIN || path == HAPROXY) {
        double v = haproxy_stat(path, MESH_POD_B, "stot");
        if (v < 0) {
            die("haproxy", "the %s pair's B does not answer on its stats socket", path_names[path]);
        }
        return v;
    }
    return path == WEFT ? out_weft[1] : 0;
}

/* way_check dies unless the turn since |before| went the way |path| says: through weft only
 * if it is weft's, through its relay if it has one. */
static void way_check(enum path path, double before, const double weft_before[2])
{
    double weft_now[2], now = way_count(path, weft_now);
    double out = weft_now[0] - weft_before[0], in = weft_now[1] - weft_before[1];
    if (path == WEFT ? (out <= 0 || in <= 0) : (out != 0 || in != 0)) {
        die("path", "a %s turn made %.0f mTLS connections out of weft-proxy A and %.0f into B",
            path_names[path], out, in);
    }
    if (path != DIRECT && now <= before) {
        die("path", "a %s turn made no connection through the pair", path_names[path]);
    }
}

/* load_run runs |argv| (NULL-terminated, after `taskset -c CORE_LOAD`) in pod A as |uid| for at
 * most |max_s| (+ RUN_SLACK_MS); |out| gets its stdout. Dies unless it exits 0. */
static void load_run(unsigned uid, const char *const *args, double max_s, char *out, size_t out_len)
{
    const char *argv[MESH_MAX_ARGS + 1] = {"taskset", "-c", CORE_LOAD};
    size_t n = 3;
    for (size_t i = 0; args[i] != NULL && n < MESH_MAX_ARGS; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int status = 0;
    int rc = mesh_run(&m, MESH_POD_A, uid, argv, (int)(max_s * 1000) + RUN_SLACK_MS, out, out_len,
                      &status);
    check_stop();
    if (rc != WEFT_OK || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        die(args[0], "%s %s: %s (%s)", args[0], args[1],
            rc != WEFT_OK ? weft_strerror(rc) : "failed", out);
    }
}

/* wrk_turn runs wrk against way |path|'s HTTP server: requests/s into |rps|, the sidecars' CPU
 * per request (us) into |cpu_us|; socket errors and non-2xx answers are added to |*errors|. */
static void wrk_turn(enum path path, double *rps, double *cpu_us, long *errors)
{
    char host[16], port[8], url[64], out[4096];
    unsigned uid = target(path, HTTP, false, host, port);
    snprintf(url, sizeof(url), "http://%s:%s/", host, port);
    const char *args[] = {"wrk", "-t1", "-c" WRK_CONNS, "-d" WRK_S "s", "--timeout", "5s",
                          url,   NULL};
    double weft[2], before = way_count(path, weft);
    double cpu0 = sidecars_cpu_s(path);
    load_run(uid, args, atof(WRK_S), out, sizeof(out));
    double cpu = sidecars_cpu_s(path) - cpu0;
    way_check(path, before, weft);
    long n = 0;
    double secs = 0;
    *rps = 0;
    for (char *save, *line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        long a, b, c, d;
        char unit[4];
        if (sscanf(line, " %ld requests in %lf%3s", &n, &secs, unit) == 3) {
            continue;
        }
        if (sscanf(line, " Requests/sec: %lf", rps) == 1) {
            continue;
        }
        if (sscanf(line, " Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &a, &b,
                   &c, &d) == 4) {
            *errors += a + b + c + d;
        } else if (sscanf(line, " Non-2xx or 3xx responses: %ld", &a) == 1) {
            *errors += a;
        }
    }
    if (n <= 0 || *rps <= 0) {
        die("wrk", "no figures from wrk on the %s way", path_names[path]);
    }
    *cpu_us = cpu * 1e6 / (double)n;
}

/* load_turn runs `proxy_load MODE HOST PORT args...` on way |path| and parses its line: ops or
 * bytes, seconds, p50 and p99. */
static void load_turn(enum path path, const char *mode, enum svc s, bool full,
                      const char *const *args, double max_s, double out_v[4])
{
    char host[16], port[8], out[1024];
    unsigned uid = target(path, s, full, host, port);
    const char *argv[MESH_MAX_ARGS] = {mesh_bin(&m, "proxy_load"), mode, host, port};
    size_t n = 4;
    for (size_t i = 0; args[i] != NULL && n + 1 < nitems(argv); i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    double weft[2], before = way_count(path, weft);
    load_run(uid, argv, max_s, out, sizeof(out));
    way_check(path, before, weft);
    unsigned long long bytes;
    long ops, errors = 0;
    bool ok = strncmp(out, mode, strlen(mode)) == 0;
    if (ok && strcmp(mode, "bulk") == 0) {
        ok = sscanf(out, "bulk bytes=%llu seconds=%lf", &bytes, &out_v[1]) == 2;
        out_v[0] = (double)bytes;
    } else if (ok) {
        ok = sscanf(out + strlen(mode), " ops=%ld seconds=%lf p50_us=%lf p99_us=%lf errors=%ld",
                    &ops, &out_v[1], &out_v[2], &out_v[3], &errors) == 5;
        out_v[0] = (double)ops;
    }
    if (!ok || out_v[1] <= 0 || errors > 0) {
        die(mode, "%s way: %s", path_names[path], out);
    }
}

/* round_path returns the |k|-th way of round |r|: each round starts with the next one. */
static enum path round_path(int r, int k) { return (enum path)((r + k) % NUM_PATHS); }

/* --- the measures -------------------------------------------------------------------------- */

static void wrk_measure(struct figure *rps, struct figure *cpu, long errors[NUM_PATHS])
{
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NUM_PATHS; k++) {
            enum path p = round_path(r, k);
            wrk_turn(p, &rps->v[p][r], &cpu->v[p][r], &errors[p]);
        }
    }
}

static void rr_measure(struct figure *p50, struct figure *p99)
{
    static const char *const args[] = {"1", RR_LEN, RR_MAX_OPS, RR_S, NULL};
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NUM_PATHS; k++) {
            enum path p = round_path(r, k);
            double v[4];
            load_turn(p, "rr", ECHO, false, args, atof(RR_S), v);
            p50->v[p][r] = v[2];
            p99->v[p][r] = v[3];
        }
    }
}

static void bulk_measure(struct figure *mbps)
{
    char bytes[32], max_s[16];
    snprintf(bytes, sizeof(bytes), "%llu", BULK_BYTES);
    snprintf(max_s, sizeof(max_s), "%.0f", BULK_MAX_S);
    const char *const args[] = {bytes, max_s, NULL};
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NUM_PATHS; k++) {
            enum path p = round_path(r, k);
            double v[4];
            load_turn(p, "bulk", SINK, false, args, BULK_MAX_S, v);
            if (v[0] < (double)BULK_BYTES) {
                die("bulk", "the %s way moved %.0f bytes of %llu within %.0f s", path_names[p],
                    v[0], BULK_BYTES, BULK_MAX_S);
            }
            mbps->v[p][r] = v[0] / v[1] / 1e6;
        }
    }
}

static struct handshakes handshakes_now(void)
{
    struct handshakes h = {
        .weft = {metric(MESH_POD_B, METRIC_FULL), metric(MESH_POD_B, METRIC_RESUMED)},
        .haproxy = {haproxy_stat(HAPROXY, MESH_POD_B, "ssl_sess"),
                    haproxy_stat(HAPROXY, MESH_POD_B, "ssl_reused_sess")},
    };
    if (h.haproxy[0] < 0 || h.haproxy[1] < 0) {
        die("haproxy", "no ssl_sess / ssl_reused_sess from the TLS pair's B");
    }
    return h;
}

/* connect_measure measures new connections/s on the ways |paths| says, with HAProxy's full
 * listener when |full|; |*out_hs| gets the handshakes weft-proxy B and haproxy B counted. */
static void connect_measure(struct figure *rate, const bool paths[NUM_PATHS], bool full,
                            struct handshakes *out_hs)
{
    static const char *const args[] = {CONNECT_SLOTS, CONNECT_LEN, CONNECT_MAX, CONNECT_S, NULL};
    struct handshakes before = handshakes_now();
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NUM_PATHS; k++) {
            enum path p = round_path(r, k);
            if (paths[p]) {
                double v[4];
                load_turn(p, "connect", ECHO, full, args, atof(CONNECT_S), v);
                rate->v[p][r] = v[0] / v[1];
            }
        }
    }
    struct handshakes after = handshakes_now();
    for (int i = 0; i < 2; i++) {
        out_hs->weft[i] = after.weft[i] - before.weft[i];
        out_hs->haproxy[i] = after.haproxy[i] - before.haproxy[i];
    }
}

/* idle_measure opens IDLE_CONNS connections through way |path| and holds them: VmRSS growth
 * of each side per connection into |per_conn|, the connections each side says it holds (weft's
 * gauge, haproxy's current sessions) into |open|, and whether every one answered again before
 * it closed into |*held|. */
static void idle_measure(enum path path, double per_conn[2], double open[2], bool *held)
{
    char host[16], port[8], out[160], n[16], hold[16], want[48];
    unsigned uid = target(path, ECHO, false, host, port);
    snprintf(out, sizeof(out), "%s/idle-%s.out", m.run_dir, path_names[path]);
    snprintf(n, sizeof(n), "%d", IDLE_CONNS);
    snprintf(hold, sizeof(hold), "%.0f", IDLE_OPEN_S);
    long before[2] = {rss_kib(sidecar(path, 0), false), rss_kib(sidecar(path, 1), false)};
    const char *argv[] = {"taskset", "-c",    CORE_LOAD, mesh_bin(&m, "proxy_load"),
                          "idle",    host,    port,      n,
                          hold,      "check", NULL};
    pid_t pid;
    if (mesh_spawn(&m, MESH_POD_A, uid, out, argv, &pid) != WEFT_OK) {
        die("idle", "the client did not start");
    }
    wait_output(out, "idle open=", pid, (int)(IDLE_OPEN_S * 1000) + 5000);
    snprintf(want, sizeof(want), "idle open=%d ", IDLE_CONNS);
    if (!mesh_file_has(out, want)) {
        die("idle", "the %s way: fewer than %d connections opened within %.0f s; see %s",
            path_names[path], IDLE_CONNS, IDLE_OPEN_S, out);
    }
    usleep(1000 * 1000); /* let the last handshakes' state settle */
    for (int pod = 0; pod < 2; pod++) {
        open[pod] = path == WEFT ? metric(pod, METRIC_OPEN) : haproxy_stat(path, pod, "scur");
        per_conn[pod] =
            (double)(rss_kib(sidecar(path, pod), false) - before[pod]) * 1024 / IDLE_CONNS;
    }
    int st;
    if (mesh_kill(&m, pid, SIGTERM, 30000, &st) != WEFT_OK) {
        die("idle", "the client did not stop");
    }
    snprintf(want, sizeof(want), "idle closed alive=%d\n", IDLE_CONNS);
    *held = WIFEXITED(st) && WEXITSTATUS(st) == 0 && mesh_file_has(out, want);
    /* the next way starts with nothing open */
    for (int i = 0; i < 100 && path == WEFT &&
                    (metric(MESH_POD_A, METRIC_OPEN) > 0 || metric(MESH_POD_B, METRIC_OPEN) > 0);
         i++) {
        usleep(100 * 1000);
    }
}

/* --- the table ----------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double v[ROUNDS])
{
    double s[ROUNDS];
    memcpy(s, v, sizeof(s));
    qsort(s, ROUNDS, sizeof(*s), cmp_double);
    return ROUNDS % 2 ? s[ROUNDS / 2] : (s[ROUNDS / 2 - 1] + s[ROUNDS / 2]) / 2;
}

/* a row's goal: weft/HAProxy and weft/plaintext against a bound (0: none), or weft's own
 * figure against an absolute bound */
struct goal {
    double vs_ha, vs_plain, absolute;
    bool lower; /* lower is better: the bounds are ceilings */
    const char *text;
    bool no_ratios; /* a yes/no row */
};

static const char *met(bool ok) { return ok ? "yes" : "NO"; }

/* row prints one measure: the four ways' figures (NaN: "-"), the ratios and the goal. */
static void row(const char *what, const double v[NUM_PATHS], int decimals, struct goal g)
{
    char cells[NUM_PATHS][24], verdict[64] = "";
    for (int p = 0; p < NUM_PATHS; p++) {
        if (v[p] != v[p]) {
            snprintf(cells[p], sizeof(cells[p]), "-");
        } else if (g.no_ratios) {
            snprintf(cells[p], sizeof(cells[p]), "%s", v[p] != 0 ? "yes" : "no");
        } else {
            snprintf(cells[p], sizeof(cells[p]), "%.*f", decimals, v[p]);
        }
    }
    double r_ha = v[WEFT] / v[HAPROXY], r_plain = v[WEFT] / v[PLAIN];
    char s_ha[16] = "-", s_plain[16] = "-";
    if (!g.no_ratios && r_ha == r_ha && v[HAPROXY] != 0) {
        snprintf(s_ha, sizeof(s_ha), "%.2fx", r_ha);
    }
    if (!g.no_ratios && r_plain == r_plain && v[PLAIN] != 0) {
        snprintf(s_plain, sizeof(s_plain), "%.2fx", r_plain);
    }
    size_t len = 0;
    if (g.vs_ha > 0) {
        len += (size_t)snprintf(verdict + len, sizeof(verdict) - len, "%s",
                                met(g.lower ? r_ha <= g.vs_ha : r_ha >= g.vs_ha));
    }
    if (g.vs_plain > 0) {
        len += (size_t)snprintf(verdict + len, sizeof(verdict) - len, "%s%s", len > 0 ? ", " : "",
                                met(g.lower ? r_plain <= g.vs_plain : r_plain >= g.vs_plain));
    }
    if (g.absolute > 0) {
        snprintf(verdict + len, sizeof(verdict) - len, "%s",
                 met(g.lower ? v[WEFT] <= g.absolute : v[WEFT] >= g.absolute));
    }
    printf("%-44s %10s %10s %10s %10s %8s %8s  %-26s %s\n", what, cells[DIRECT], cells[PLAIN],
           cells[HAPROXY], cells[WEFT], s_ha, s_plain, g.text != NULL ? g.text : "",
           g.text != NULL ? verdict : "");
}

static void medians(const struct figure *f, double out[NUM_PATHS])
{
    for (int p = 0; p < NUM_PATHS; p++) {
        out[p] = median(f->v[p]);
    }
}

/* rounds_line prints a figure's rounds, for the reader to judge the spread. */
static void rounds_line(const char *what, const struct figure *f, const bool paths[NUM_PATHS])
{
    printf("    %-22s", what);
    for (int p = 0; p < NUM_PATHS; p++) {
        if (paths == NULL || paths[p]) {
            printf("  %s", path_names[p]);
            for (int r = 0; r < ROUNDS; r++) {
                printf("%c%.*f", r == 0 ? ' ' : '/', f->v[p][r] < 100 ? 1 : 0, f->v[p][r]);
            }
        }
    }
    printf("\n");
}

/* --- the run ------------------------------------------------------------------------------- */

static void need_tools(void)
{
    static const char *const tools[] = {"wrk", "haproxy", "taskset", "setpriv", "iptables"};
    for (size_t i = 0; i < nitems(tools); i++) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tools[i]);
        if (system(cmd) != 0) {
            bench_die(PROG, tools[i], "not installed: run tools/install-deps.sh --bench");
        }
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        bench_die(PROG, "cpus", "needs 2 cores: one for the load, one for the proxies");
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    run_start = bench_now_s();
    double load_start = loadavg();
    need_tools();
    mesh_init(&m);
    mesh_catch_signals(&m, &stop_signal);
    struct mesh_opts o = {
        .policy_yaml = policy,
        .runfiles = {"test/bench/proxy_load", NULL},
        .iptables_extra = {NULL, EXCLUDED_B},
    };
    char err[512];
    if (mesh_start(&m, &o, err, sizeof(err)) != WEFT_OK) {
        die("mesh", "%s", err);
    }
    check_stop();
    /* the runfiles are copied: from here on every process starts where any uid may be (haproxy
     * goes back to its start directory after reading its configuration, and fails if it cannot) */
    if (chdir("/") != 0) {
        die("chdir", "/: %s", strerror(errno));
    }
    pod_sysctl(MESH_POD_A);
    pod_sysctl(MESH_POD_B);
    for (int s = 0; s < NUM_SVCS; s++) {
        server_start((enum svc)s, PORT_CAPTURED + s);
        server_start((enum svc)s, PORT_EXCLUDED + s);
    }
    mint_pki();
    for (int pod = MESH_POD_B; pod >= MESH_POD_A; pod--) {
        haproxy_start(PLAIN, pod);
        haproxy_start(HAPROXY, pod);
    }
    weft_start(false);
    check_stop();
    usleep(500 * 1000);

    /* fresh: ready, nothing open yet */
    long rss_fresh[NUM_PATHS][2] = {{0}}, private_fresh[NUM_PATHS][2] = {{0}};
    for (int p = PLAIN; p < NUM_PATHS; p++) {
        for (int pod = 0; pod < 2; pod++) {
            rss_fresh[p][pod] = rss_kib(sidecar(p, pod), false);
            private_fresh[p][pod] = rss_kib(sidecar(p, pod), true);
        }
    }
    printf("%s: pods %s and %s; load average %.2f; measuring (about 4 minutes)\n", PROG,
           m.pods[0].ns, m.pods[1].ns, load_start);

    struct figure rps = {0}, cpu = {0}, p50 = {0}, p99 = {0}, bulk = {0};
    struct figure conn_resumed = {0}, conn_full = {0};
    long wrk_errors[NUM_PATHS] = {0};
    wrk_measure(&rps, &cpu, wrk_errors);
    printf("%s: keep-alive requests done (%.0f s)\n", PROG, bench_now_s() - run_start);
    rr_measure(&p50, &p99);
    bulk_measure(&bulk);
    printf("%s: round trips and bulk done (%.0f s)\n", PROG, bench_now_s() - run_start);
    static const bool all[NUM_PATHS] = {true, true, true, true};
    static const bool tls_only[NUM_PATHS] = {false, false, true, true};
    struct handshakes hs_resumed, hs_full;
    connect_measure(&conn_resumed, all, false, &hs_resumed);

    /* idle connections through each pair, the proxies as the runs above left them */
    double per_conn[NUM_PATHS][2] = {{0}}, open[NUM_PATHS][2] = {{0}};
    bool held[NUM_PATHS] = {false};
    for (int p = PLAIN; p < NUM_PATHS; p++) {
        idle_measure((enum path)p, per_conn[p], open[p], &held[p]);
        check_stop();
    }
    printf("%s: resumed connections and idle connections done (%.0f s)\n", PROG,
           bench_now_s() - run_start);

    /* full handshakes: HAProxy's no-ssl-reuse listener, and weft told not to resume */
    weft_stop();
    weft_start(true);
    check_stop();
    connect_measure(&conn_full, tls_only, true, &hs_full);
    for (int p = DIRECT; p <= PLAIN; p++) { /* no TLS on these ways: the same runs */
        memcpy(conn_full.v[p], conn_resumed.v[p], sizeof(conn_full.v[p]));
    }
    double load_end = loadavg(), took = bench_now_s() - run_start;

    /* --- the table --- */
    const double nan = 0.0 / 0.0;
    double v[NUM_PATHS];
    printf("\nissue 7's performance bar: pod A %s -> veth -> pod B %s; load generators on cpu "
           "%s,\nevery proxy and server on cpu %s; medians of %d rounds; load average %.2f at the "
           "start, %.2f at the end; %.0f s\n\n",
           MESH_IP_A, MESH_IP_B, CORE_LOAD, CORE_MESH, ROUNDS, load_start, load_end, took);
    printf("%-44s %10s %10s %10s %10s %8s %8s  %-26s %s\n", "measure", "direct", "plaintext",
           "HAProxy", "weft", "weft/HA", "weft/pl", "target", "met");
    medians(&rps, v);
    row("keep-alive requests/s (wrk, 1 KiB, 32 conns)", v, 0,
        (struct goal){.vs_ha = 1.3, .vs_plain = 0.95, .text = ">=1.3x HA, >=0.95x plain"});
    medians(&cpu, v);
    v[DIRECT] = nan;
    row("proxy CPU per request, us (both sidecars)", v, 1,
        (struct goal){.vs_ha = 0.7, .lower = true, .text = "<=0.7x HA"});
    medians(&p50, v);
    row("64 B round trip p50, us", v, 1,
        (struct goal){.vs_ha = 0.8, .lower = true, .text = "<=0.8x HA"});
    medians(&p99, v);
    row("64 B round trip p99, us", v, 1,
        (struct goal){.vs_ha = 0.85, .lower = true, .text = "<=0.85x HA"});
    medians(&conn_full, v);
    row("new connections/s, full handshakes", v, 0,
        (struct goal){.vs_ha = 2.3, .text = ">=2.3x HA (no-ssl-reuse)"});
    medians(&conn_resumed, v);
    row("new connections/s, resumed", v, 0, (struct goal){.vs_ha = 4, .text = ">=4x HA resumed"});
    medians(&bulk, v);
    row("bulk MB/s (100 MiB, 1 connection)", v, 0,
        (struct goal){.vs_ha = 1.6, .text = ">=1.6x HA"});
    for (int p = 0; p < NUM_PATHS; p++) {
        v[p] = p == DIRECT ? nan
                           : (double)(rss_fresh[p][0] > rss_fresh[p][1] ? rss_fresh[p][0]
                                                                        : rss_fresh[p][1]);
    }
    row("idle RSS per proxy, KiB (larger side)", v, 0,
        (struct goal){.absolute = 5e6 / 1024, .lower = true, .text = "<=5 MB"});
    for (int p = 0; p < NUM_PATHS; p++) {
        v[p] = p == DIRECT
                   ? nan
                   : (double)(private_fresh[p][0] > private_fresh[p][1] ? private_fresh[p][0]
                                                                        : private_fresh[p][1]);
    }
    row("  of which private, KiB", v, 0, (struct goal){0});
    for (int p = 0; p < NUM_PATHS; p++) {
        v[p] = p == DIRECT                       ? nan
               : per_conn[p][0] > per_conn[p][1] ? per_conn[p][0]
                                                 : per_conn[p][1];
    }
    row("memory per idle connection, B (larger side)", v, 0,
        (struct goal){.absolute = 10e3, .lower = true, .text = "<=10 KB"});
    for (int p = 0; p < NUM_PATHS; p++) {
        v[p] = p == DIRECT ? nan : held[p];
    }
    row("1,000 idle connections held", v, 0,
        (struct goal){.absolute = 1, .text = "all held", .no_ratios = true});

    printf("\ndetails\n");
    printf("  each side (A / B): fresh VmRSS KiB, private KiB; with %d idle connections: bytes "
           "per connection, connections it says it holds\n",
           IDLE_CONNS);
    for (int p = PLAIN; p < NUM_PATHS; p++) {
        printf("    %-10s %6ld / %-6ld %6ld / %-6ld %7.0f / %-7.0f %5.0f / %-5.0f\n", path_names[p],
               rss_fresh[p][0], rss_fresh[p][1], private_fresh[p][0], private_fresh[p][1],
               per_conn[p][0], per_conn[p][1], open[p][0], open[p][1]);
    }
    printf("  handshakes counted on the server side (full / resumed)\n");
    printf("    resumed runs: HAProxy B %.0f / %.0f, weft-proxy B %.0f / %.0f\n",
           hs_resumed.haproxy[0], hs_resumed.haproxy[1], hs_resumed.weft[0], hs_resumed.weft[1]);
    printf("    full runs:    HAProxy B %.0f / %.0f, weft-proxy B %.0f / %.0f\n",
           hs_full.haproxy[0], hs_full.haproxy[1], hs_full.weft[0], hs_full.weft[1]);
    if (hs_full.haproxy[1] > 0 || hs_full.weft[1] > 0) {
        printf("    (the full runs resumed some handshakes: their row is not all full)\n");
    }
    printf("  direct and plaintext have no TLS: both connection rows show the same runs\n");
    for (int p = 0; p < NUM_PATHS; p++) {
        if (wrk_errors[p] > 0) {
            printf("  wrk on the %s way: %ld socket errors or non-2xx answers\n", path_names[p],
                   wrk_errors[p]);
        }
    }
    printf("  each round, in order:\n");
    rounds_line("requests/s", &rps, NULL);
    static const bool proxied[NUM_PATHS] = {false, true, true, true};
    rounds_line("CPU us/request", &cpu, proxied);
    rounds_line("p50 us", &p50, NULL);
    rounds_line("p99 us", &p99, NULL);
    rounds_line("connections/s resumed", &conn_resumed, NULL);
    rounds_line("connections/s full", &conn_full, tls_only);
    rounds_line("bulk MB/s", &bulk, NULL);
    printf("\n  %s\n", COMMAND);
    cleanup();
    return 0;
}
