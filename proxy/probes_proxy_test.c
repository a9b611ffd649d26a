/* proxy/probes_proxy_test.c: --probe-listen in a real weft-proxy, joined to real weft-agent and
 * weft-ca processes (its readiness comes from them), with WEFT_APP_PROBES naming a small app
 * that this test serves on loopback: what the kubelet gets for each of the app's answers,
 * nothing but /ready and the app probes on that port, the counts in /metrics; `weftctl
 * wait-ready` succeeding and timing out; a bad WEFT_APP_PROBES stopping the proxy at start. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "lib/base/file.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"
#include "test/testlib/http_app.h"
#include "test/testlib/net.h"

#define PROXY_BIN "proxy/weft-proxy"
#define WEFTCTL_BIN "cli/weftctl"
#define ME "spiffe://" CA_PROC_TD "/ns/demo/sa/me"

static struct ca_proc ca;
static struct agent_proc agent;
static pid_t proxy_pid;
static char admin[160], log_path[160], probe_addr[64];
static int app_port, down_port, probe_port;

static int free_port(void)
{
    int port, fd = testlib_listen_loopback(&port);
    cr_assert_geq(fd, 0);
    close(fd);
    return port;
}

/* ---- processes ---- */

static pid_t run_proxy(const char *probes_json)
{
    char agent_sock[160], admin_arg[170], outp[16], inp[16];
    snprintf(agent_sock, sizeof(agent_sock), "%s", agent.sock);
    snprintf(admin_arg, sizeof(admin_arg), "unix:%s", admin);
    snprintf(outp, sizeof(outp), "%d", free_port());
    snprintf(inp, sizeof(inp), "%d", free_port());
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        setenv("WEFT_APP_PROBES", probes_json, 1);
        char *argv[] = {"weft-proxy", "--agent-socket",
                        agent_sock,   "--admin",
                        admin_arg,    "--outbound-port",
                        outp,         "--inbound-port",
                        inp,          "--drain-s",
                        "1",          "--probe-listen",
                        probe_addr,   NULL};
        execv(PROXY_BIN, argv);
        _exit(127);
    }
    return pid;
}

/* weftctl runs `weftctl` with |args| (NULL-terminated), its output in |out|; returns its exit
 * status, or -1 if it did not exit within 30 s (it is then killed). */
static int weftctl(const char *const *args, char *out, size_t out_len)
{
    char path[200];
    snprintf(path, sizeof(path), "%s/weftctl.out", ca.dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        char *argv[16] = {"weftctl"};
        for (size_t i = 0; args[i] != NULL && i < 14; i++) {
            argv[i + 1] = (char *)args[i];
        }
        execv(WEFTCTL_BIN, argv);
        _exit(127);
    }
    int status = -1;
    for (int i = 0; i < 300 && waitpid(pid, &status, WNOHANG) != pid; i++) {
        usleep(100 * 1000);
        status = -1;
    }
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    uint8_t *text;
    size_t len;
    out[0] = '\0';
    if (weft_file_read(&text, &len, path, 1 << 16) == WEFT_OK) {
        snprintf(out, out_len, "%.*s", (int)len, (const char *)text);
        free(text);
    }
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "see %s/ca.log", ca.dir);
    cr_assert_eq(agent_proc_init(&agent, &ca), WEFT_OK);
    struct rpc_status st;
    cr_assert_eq(agent_proc_entry(&ca, ME, geteuid(), &st), WEFT_OK, "%s", st.details);
    cr_assert_eq(agent_proc_start(&agent, true), WEFT_OK);
    cr_assert_eq(agent_proc_wait_served(&agent, 1, 20000), WEFT_OK, "see %s", agent.log);
    snprintf(admin, sizeof(admin), "%s/proxy-admin.sock", ca.dir);
    snprintf(log_path, sizeof(log_path), "%s/proxy.log", ca.dir);
    app_port = http_app_start();
    cr_assert_gt(app_port, 0);
    down_port = free_port();
    probe_port = free_port();
    snprintf(probe_addr, sizeof(probe_addr), "127.0.0.1:%d", probe_port);
}

static void teardown(void)
{
    if (proxy_pid > 0) {
        kill(proxy_pid, SIGKILL);
        waitpid(proxy_pid, NULL, 0);
        proxy_pid = 0;
    }
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(probes_proxy, .init = setup, .fini = teardown, .timeout = 90);

static void start_proxy_with_probes(void)
{
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"/app-health/web/readyz\": {\"httpGet\": {\"path\": \"/ok\", \"port\": %d, "
             "\"scheme\": \"HTTP\", \"httpHeaders\": [{\"name\": \"X-A\", \"value\": \"b\"}]}, "
             "\"timeoutSeconds\": 2},"
             " \"/app-health/web/livez\": {\"httpGet\": {\"path\": \"/bad\", \"port\": %d}},"
             " \"/app-health/web/startupz\": {\"httpGet\": {\"path\": \"/slow\", \"port\": %d}},"
             " \"/app-health/gone/livez\": {\"httpGet\": {\"port\": %d}}}",
             app_port, app_port, app_port, down_port);
    proxy_pid = run_proxy(json);
}

/* get asks the probe port for |method| |path| and reads the whole answer into |buf|; returns
 * the status, or -1 with no answer. */
static int get(const char *method, const char *path, char *buf, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)probe_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[512];
    int n =
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 10.9.8.7:15021\r\n\r\n", method, path);
    buf[0] = '\0';
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t used = 0;
    ssize_t got;
    while (used < len - 1 && (got = read(fd, buf + used, len - 1 - used)) > 0) {
        used += (size_t)got;
    }
    buf[used] = '\0';
    close(fd);
    int status;
    return sscanf(buf, "HTTP/1.1 %d ", &status) == 1 ? status : -1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(probes_proxy, the_kubelet_gets_the_apps_answers_once_the_proxy_is_ready)
{
    start_proxy_with_probes();
    char out[4096], buf[8192];
    const char *const wait[] = {"wait-ready", "--addr", probe_addr, "--timeout-s", "30", NULL};
    cr_assert_eq(weftctl(wait, out, sizeof(out)), 0, "%s (proxy log: %s)", out, log_path);
    cr_assert(strstr(out, "/ready: ready after ") != NULL, "%s", out);
    cr_assert_eq(get("GET", "/ready", buf, sizeof(buf)), 200, "%s", buf);

    cr_assert_eq(get("GET", "/app-health/web/readyz", buf, sizeof(buf)), 200, "%s", buf);
    cr_assert(strstr(buf, "\r\n\r\nfine\n") != NULL, "%s", buf);
    char app_last_head[8192];
    http_app_last_head(app_last_head, sizeof(app_last_head));
    cr_assert(strncmp(app_last_head, "GET /ok HTTP/1.1\r\n", 18) == 0, "%s", app_last_head);
    cr_assert(strstr(app_last_head, "\r\nX-A: b\r\n") != NULL, "%s", app_last_head);
    cr_assert(strstr(app_last_head, "\r\nHost: 127.0.0.1:") != NULL, "%s", app_last_head);

    cr_assert_eq(get("GET", "/app-health/web/livez", buf, sizeof(buf)), 503, "%s", buf);
    cr_assert(strstr(buf, "\r\n\r\nsick\n") != NULL, "the app's own 503: %s", buf);
    cr_assert_eq(get("GET", "/app-health/gone/livez", buf, sizeof(buf)), 503, "%s", buf);
    cr_assert(strstr(buf, "\r\n\r\nprobe failed: no answer from the app\n") != NULL, "%s", buf);
    /* why is for the proxy's log, not for anyone on the network */
    cr_assert(strstr(buf, "refused") == NULL && strstr(buf, "127.0.0.1") == NULL, "%s", buf);
    uint8_t *logged;
    size_t logged_len;
    cr_assert_eq(weft_file_read(&logged, &logged_len, log_path, 1 << 20), WEFT_OK);
    cr_assert(memmem(logged, logged_len, "Connection refused", 18) != NULL, "%.*s", (int)logged_len,
              (char *)logged);
    free(logged);

    int64_t start = mono_ms();
    cr_assert_eq(get("GET", "/app-health/web/startupz", buf, sizeof(buf)), 503, "%s", buf);
    int64_t took = mono_ms() - start;
    cr_assert(took >= 800 && took < 1000, "the 1 s probe was answered after %lld ms",
              (long long)took);
    cr_assert(strstr(buf, "\r\n\r\nprobe timed out\n") != NULL, "%s", buf);

    /* this port faces the network: nothing of the admin port */
    static const char *const not_here[] = {"/quitquitquit", "/metrics", "/certs",
                                           "/config",       "/live",    "/app-health/web/other"};
    for (size_t i = 0; i < sizeof(not_here) / sizeof(not_here[0]); i++) {
        cr_assert_eq(get("GET", not_here[i], buf, sizeof(buf)), 404, "%s: %s", not_here[i], buf);
    }
    cr_assert_eq(get("POST", "/quitquitquit", buf, sizeof(buf)), 404, "%s", buf);
    cr_assert_eq(kill(proxy_pid, 0), 0, "the proxy still runs");

    static char metrics[1 << 18];
    cr_assert_eq(testlib_http_unix(admin, "GET", "/metrics", metrics, sizeof(metrics)), 200);
    static const char *const counted[] = {
        "weft_proxy_app_probes_total{path=\"/app-health/web/readyz\",result=\"success\"} 1\n",
        "weft_proxy_app_probes_total{path=\"/app-health/web/livez\",result=\"failure\"} 1\n",
        "weft_proxy_app_probes_total{path=\"/app-health/gone/livez\",result=\"error\"} 1\n",
        "weft_proxy_app_probes_total{path=\"/app-health/web/startupz\",result=\"timeout\"} 1\n",
    };
    for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++) {
        cr_assert(strstr(metrics, counted[i]) != NULL, "no %s in /metrics", counted[i]);
    }
}

Test(probes_proxy, wait_ready_times_out_saying_what_it_last_got)
{
    start_proxy_with_probes();
    char out[4096];
    /* nobody listens */
    char down[64];
    snprintf(down, sizeof(down), "127.0.0.1:%d", down_port);
    const char *const refused[] = {"wait-ready", "--addr", down, "--timeout-s", "1", NULL};
    int64_t start = mono_ms();
    cr_assert_eq(weftctl(refused, out, sizeof(out)), 1, "%s", out);
    int64_t took = mono_ms() - start;
    cr_assert(took >= 1000 && took < 3000, "took %lld ms", (long long)took);
    cr_assert(strstr(out, "not ready after 1 s; last: ") != NULL, "%s", out);
    cr_assert(strstr(out, "Connection refused") != NULL, "%s", out);
    /* an answer that is not 200 */
    const char *const sick[] = {
        "wait-ready",  "--addr", probe_addr, "--path", "/app-health/web/livez",
        "--timeout-s", "1",      NULL};
    cr_assert_eq(weftctl(sick, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "last: status 503: ") != NULL, "%s", out);
    const char *const usage[][6] = {{"wait-ready", NULL},
                                    {"wait-ready", "--addr", "nohostport", NULL},
                                    {"wait-ready", "--addr", down, "--timeout-s", "0", NULL},
                                    {"wait-ready", "--addr", down, "--path", "ready", NULL}};
    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
        cr_assert_eq(weftctl(usage[i], out, sizeof(out)), 2, "%zu: %s", i, out);
    }
}

Test(probes_proxy, a_bad_WEFT_APP_PROBES_stops_the_proxy_saying_where)
{
    proxy_pid = run_proxy("{\"/app-health/web/readyz\": {\"httpGet\": {\"port\": 0}}}");
    int status = -1;
    for (int i = 0; i < 100 && waitpid(proxy_pid, &status, WNOHANG) != proxy_pid; i++) {
        usleep(100 * 1000);
        status = -1;
    }
    cr_assert_neq(status, -1, "still running 10 s later");
    proxy_pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, log_path, 1 << 20), WEFT_OK);
    const char *want = "weft-proxy: --probe-listen: WEFT_APP_PROBES: /app-health/web/readyz: "
                       "httpGet.port must be a number from 1 to 65535";
    cr_assert(memmem(text, len, want, strlen(want)) != NULL, "%.*s", (int)len, (char *)text);
    free(text);
}
