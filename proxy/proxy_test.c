/* proxy/proxy_test.c: a real weft-proxy joined to real weft-agent and weft-ca processes: ready
 * (and its admin pages say who it is) once the agent gave it an SVID and a configuration; a
 * connection that was not redirected to it has no original destination and is refused, in the
 * access log and the metrics; POST /quitquitquit drains and exits 0; bad flags exit 2. The mesh
 * path itself (iptables, two pods) is exercised in network namespaces by the end-to-end tests. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <grpc/grpc.h>

#include "lib/base/file.h"
#include "proxy/proxy.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"
#include "test/testlib/net.h"

#define PROXY_BIN "proxy/weft-proxy"
#define ME "spiffe://" CA_PROC_TD "/ns/demo/sa/me"

static struct ca_proc ca;
static struct agent_proc agent;
static pid_t proxy_pid;
static char admin[160], admin_arg[170], log_path[160];
static int out_port, in_port;

static int free_port(void)
{
    int port, fd = testlib_listen_loopback(&port);
    cr_assert_geq(fd, 0);
    close(fd);
    return port;
}

static pid_t run_proxy(const char *const *extra)
{
    char agent_sock[160], outp[16], inp[16];
    snprintf(agent_sock, sizeof(agent_sock), "%s", agent.sock);
    snprintf(outp, sizeof(outp), "%d", out_port);
    snprintf(inp, sizeof(inp), "%d", in_port);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        char *argv[32] = {"weft-proxy", "--agent-socket",  agent_sock, "--admin",
                          admin_arg,    "--outbound-port", outp,       "--inbound-port",
                          inp,          "--drain-s",       "2"};
        size_t n = 11;
        for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 30; i++) {
            argv[n++] = (char *)extra[i];
        }
        execv(PROXY_BIN, argv);
        _exit(127);
    }
    return pid;
}

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "see %s/ca.log", ca.dir);
    cr_assert_eq(agent_proc_init(&agent, &ca), WEFT_OK);
    struct rpc_status st;
    cr_assert_eq(agent_proc_entry(&ca, ME, geteuid(), &st), WEFT_OK, "%s", st.details);
    cr_assert_eq(agent_proc_start(&agent, true), WEFT_OK);
    cr_assert_eq(agent_proc_wait_served(&agent, 1, 20000), WEFT_OK, "see %s", agent.log);
    snprintf(admin, sizeof(admin), "%s/proxy-admin.sock", ca.dir);
    snprintf(admin_arg, sizeof(admin_arg), "unix:%s", admin);
    snprintf(log_path, sizeof(log_path), "%s/proxy.log", ca.dir);
    out_port = free_port();
    in_port = free_port();
    proxy_pid = run_proxy(NULL);
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

TestSuite(proxy, .init = setup, .fini = teardown, .timeout = 60);

static int get(const char *method, const char *path, char *buf, size_t len)
{
    return testlib_http_unix(admin, method, path, buf, len);
}

static void wait_ready(void)
{
    char buf[4096];
    for (int i = 0; i < 200; i++) {
        if (get("GET", "/ready", buf, sizeof(buf)) == 200) {
            return;
        }
        usleep(100 * 1000);
    }
    cr_assert_fail("the proxy never became ready: %s (its log: %s)", buf, log_path);
}

static bool log_has(const char *needle)
{
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, log_path, 1 << 20) != WEFT_OK) {
        return false;
    }
    bool found = memmem(text, len, needle, strlen(needle)) != NULL;
    free(text);
    return found;
}

Test(proxy, ready_once_the_agent_gave_it_an_identity_and_its_pages_say_which)
{
    wait_ready();
    char buf[65536];
    cr_assert_eq(get("GET", "/certs", buf, sizeof(buf)), 200);
    cr_assert(strstr(buf, "\"spiffe_id\":\"" ME "\",\"serial\":\"") != NULL, "%s", buf);
    /* the chain, leaf first, each with its own serial and validity */
    cr_assert(strstr(buf, "\"chain\":[{\"name\":\"" ME "\",\"serial\":\"") != NULL, "%s", buf);
    cr_assert(strstr(buf, "},{\"name\":\"/") != NULL, "an intermediate by its subject: %s", buf);
    cr_assert_eq(get("GET", "/config", buf, sizeof(buf)), 200);
    cr_assert(strstr(buf, "\"sequence\":") != NULL, "%s", buf);
    cr_assert_eq(get("GET", "/live", buf, sizeof(buf)), 200);
    cr_assert_eq(get("GET", "/metrics", buf, sizeof(buf)), 200);
    for (int i = 0; i < 50 && strstr(buf, "\nweft_proxy_ready 1\n") == NULL; i++) {
        usleep(100 * 1000); /* the gauge follows within 100 ms */
        cr_assert_eq(get("GET", "/metrics", buf, sizeof(buf)), 200);
    }
    cr_assert(strstr(buf, "\nweft_proxy_ready 1\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "weft_proxy_svid_not_after_seconds ") != NULL, "%s", buf);
}

Test(proxy, a_connection_not_redirected_to_it_is_refused_and_logged)
{
    wait_ready();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)out_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    cr_assert_eq(read(fd, &c, 1), 0, "closed, nothing relayed");
    close(fd);
    char buf[65536];
    bool counted = false;
    for (int i = 0; i < 50 && !counted; i++) {
        get("GET", "/metrics", buf, sizeof(buf));
        counted = strstr(buf, "weft_proxy_connections_total{direction=\"outbound\","
                              "outcome=\"refused\"} 1\n") != NULL;
        if (!counted) {
            usleep(100 * 1000);
        }
    }
    cr_assert(counted, "%s", buf);
    cr_assert(log_has("msg=connection direction=outbound"), "see %s", log_path);
    cr_assert(log_has("decision=refused"), "see %s", log_path);
    cr_assert(log_has("no original destination (not redirected)"), "see %s", log_path);
}

Test(proxy, quitquitquit_drains_and_exits_0)
{
    wait_ready();
    char buf[1024];
    cr_assert_eq(get("GET", "/quitquitquit", buf, sizeof(buf)), 405, "POST only");
    cr_assert_eq(get("POST", "/quitquitquit", buf, sizeof(buf)), 200);
    int status = -1;
    for (int i = 0; i < 100; i++) {
        if (waitpid(proxy_pid, &status, WNOHANG) == proxy_pid) {
            proxy_pid = 0;
            break;
        }
        usleep(100 * 1000);
    }
    cr_assert_eq(proxy_pid, 0, "still running 10 s after /quitquitquit");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    cr_assert(log_has("weft-proxy draining"));
}

/* connect_to says whether a TCP connect to 127.0.0.1:|port| is accepted. */
static bool connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* SIGTERM: the pod stops while its app may still run. Inbound closes at once; the outbound
 * listener keeps serving until --drain-s (4 s here), even with no connection open; then exit 0. */
Test(proxy, sigterm_keeps_outbound_serving_until_the_drain_deadline)
{
    kill(proxy_pid, SIGKILL); /* the suite's proxy drains for 2 s: this one for 4 */
    waitpid(proxy_pid, NULL, 0);
    unlink(admin);
    static const char *const longer[] = {"--drain-s", "4", NULL};
    proxy_pid = run_proxy(longer);
    wait_ready();
    cr_assert(connect_to(in_port), "the inbound port was not listening before the drain");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(kill(proxy_pid, SIGTERM), 0);
    bool closed = false;
    for (int i = 0; i < 50 && !closed; i++) {
        closed = !connect_to(in_port);
        if (!closed) {
            usleep(20 * 1000);
        }
    }
    cr_assert(closed, "inbound still accepting 1 s into the drain");
    usleep(500 * 1000);
    cr_assert(connect_to(out_port), "outbound stopped accepting %s into the drain", "1 s or so");
    int status = -1;
    for (int i = 0; i < 150; i++) {
        if (waitpid(proxy_pid, &status, WNOHANG) == proxy_pid) {
            proxy_pid = 0;
            break;
        }
        usleep(100 * 1000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert_eq(proxy_pid, 0, "still running 15 s after SIGTERM");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    cr_assert_geq(took, 3.9, "left %.2f s into a 4 s drain", took);
    cr_assert_leq(took, 9.5, "took %.2f s for a 4 s drain", took);
    cr_assert(log_has("outbound=\"served until the deadline"), "see %s", log_path);
}

Test(proxy, bad_flags_exit_2)
{
    static const char *const bad[][3] = {{"--workers", "0", NULL},
                                         {"--inbound-port", "70000", NULL},
                                         {"--egress-allow", "10.1.2.3/8", NULL},
                                         {"--egress-deny", "10.0.0.0/8:0", NULL},
                                         {"--egress-default", "maybe", NULL},
                                         {"--no-such-flag", NULL, NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pid_t pid = run_proxy(bad[i]);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s: status %d", bad[i][0],
                  status);
    }
}

/* ---- the egress rules' syntax (no processes) ---- */

Test(egress, rules_are_a_network_then_optional_ports)
{
    struct proxy_egress_rule r;
    char err[160];
    cr_assert_eq(proxy_egress_parse("10.0.0.0/8", true, &r, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert(r.allow && r.net.bits == 8 && !r.net.ip.v6);
    cr_assert(r.port_lo == 1 && r.port_hi == 65535);
    cr_assert_eq(proxy_egress_parse("198.18.0.0/15:5432", false, &r, err, sizeof(err)), WEFT_OK);
    cr_assert(!r.allow && r.port_lo == 5432 && r.port_hi == 5432);
    cr_assert_eq(proxy_egress_parse("fd00::/8:8000-8999", true, &r, err, sizeof(err)), WEFT_OK);
    cr_assert(r.net.ip.v6 && r.net.bits == 8 && r.port_lo == 8000 && r.port_hi == 8999);
    cr_assert_eq(proxy_egress_parse("0.0.0.0/0:1-65535", true, &r, err, sizeof(err)), WEFT_OK);
    static const char *const bad[] = {"10.0.0.0",
                                      "10.1.2.3/8",
                                      "10.0.0.0/8:",
                                      "10.0.0.0/8:0",
                                      "10.0.0.0/8:65536",
                                      "10.0.0.0/8:9-1",
                                      "10.0.0.0/8:80-",
                                      "10.0.0.0/8:80x",
                                      "10.0.0.0/8:-80",
                                      "[fd00::]/8:80",
                                      "x/8",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(proxy_egress_parse(bad[i], true, &r, err, sizeof(err)), WEFT_EINVAL, "%s",
                     bad[i]);
        cr_assert_neq(err[0], '\0', "%s: no reason given", bad[i]);
    }
}
