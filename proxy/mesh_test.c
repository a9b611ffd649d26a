/* proxy/mesh_test.c: the mesh path through two real weft-proxy processes, each in a pod made
 * here: a network namespace with a veth to the other (198.18.1.1 and 198.18.1.2), the rules of
 * `weftctl iptables install`, the proxy under a uid of its own (attested by the real agent as
 * client and server) and an application under another uid (mesh_app). A call from the client
 * pod's app to the server pod's address goes out through proxy A (original destination,
 * directory lookup, TLS 1.3 to exactly the server's ID), in through proxy B (sniffed as
 * weft/1, mTLS, policy) to the app at the pod's own address; a port the policy does not allow
 * is refused before the app sees anything. Needs root; every process, namespace and rule made
 * here goes in the teardown, failure or not. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "lib/base/file.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"
#include "test/testlib/net.h"

#define TD CA_PROC_TD
#define CLIENT "spiffe://" TD "/ns/demo/sa/client"
#define SERVER "spiffe://" TD "/ns/demo/sa/server"
#define UID_PROXY_A 1337
#define UID_PROXY_B 1338
#define UID_APP 3000

static struct ca_proc ca;
static struct agent_proc agent;
static const char *ca_flags[2];
static char ns_a[32], ns_b[32], run_dir[160], proxy_bin[200], weftctl_bin[200], app_bin[200];
static pid_t pids[8];
static size_t num_pids;
static bool made_ns;

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: server-allow-client, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" CLIENT "\"]}]\n"
                             "      to: [{ports: [\"8080\", \"8081\"]}]\n";

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

/* spawn runs `ip netns exec NS setpriv --reuid UID ... ARGV...` with stdout and stderr to
 * |out|; the process is the command itself (ip and setpriv exec), stopped by its PID. */
static pid_t spawn(const char *ns, unsigned uid, const char *out, const char *const *argv)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char ids[16];
        snprintf(ids, sizeof(ids), "%u", uid);
        const char *full[24] = {"ip",      "netns", "exec",    ns,  "setpriv",
                                "--reuid", ids,     "--regid", ids, "--clear-groups"};
        size_t n = 10;
        for (size_t i = 0; argv[i] != NULL && n < 23; i++) {
            full[n++] = argv[i];
        }
        execvp("ip", (char *const *)full);
        _exit(127);
    }
    pids[num_pids++] = pid;
    return pid;
}

static bool file_has(const char *path, const char *needle)
{
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, path, 1 << 20) != WEFT_OK) {
        return false;
    }
    bool found = memmem(text, len, needle, strlen(needle)) != NULL;
    free(text);
    return found;
}

static void wait_file_has(const char *path, const char *needle)
{
    for (int i = 0; i < 200 && !file_has(path, needle); i++) {
        usleep(100 * 1000);
    }
    cr_assert(file_has(path, needle), "%s never said \"%s\"", path, needle);
}

static void start_proxy(const char *ns, unsigned uid, const char *name, const char *claim)
{
    char admin[200], out[200];
    snprintf(admin, sizeof(admin), "unix:%s/%s.sock", run_dir, name);
    snprintf(out, sizeof(out), "%s/%s.log", run_dir, name);
    const char *argv[] = {
        proxy_bin, "--agent-socket",        agent.sock, "--admin", admin, "--claim",
        claim,     "--proxy-protocol-port", "8081",     NULL};
    spawn(ns, uid, out, argv);
}

static void wait_proxy(const char *name, int directory_entries)
{
    char sock[200], buf[4096], want[64];
    snprintf(sock, sizeof(sock), "%s/%s.sock", run_dir, name);
    snprintf(want, sizeof(want), "\"directory_entries\":%d", directory_entries);
    for (int i = 0; i < 300; i++) {
        if (testlib_http_unix(sock, "GET", "/ready", buf, sizeof(buf)) == 200 &&
            testlib_http_unix(sock, "GET", "/config", buf, sizeof(buf)) == 200 &&
            strstr(buf, want) != NULL) {
            return;
        }
        usleep(100 * 1000);
    }
    cr_assert_fail("proxy %s: never ready with %d directory entries (%s); see %s/%s.log", name,
                   directory_entries, buf, run_dir, name);
}

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    char dir[160], file[200];
    snprintf(dir, sizeof(dir), "%s/policy", ca.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(file, sizeof(file), "%s/demo.yaml", dir);
    cr_assert_eq(weft_file_write_atomic(file, policy, strlen(policy), 0644), WEFT_OK);
    ca_flags[0] = "--policy-dir";
    ca_flags[1] = dir;
    ca.extra[0] = ca_flags[0];
    ca.extra[1] = ca_flags[1];
    chmod(ca.dir, 0755); /* the CA reads the policy as nobody */
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "see %s/ca.log", ca.dir);
    cr_assert_eq(agent_proc_init(&agent, &ca), WEFT_OK);
    struct rpc_status st;
    cr_assert_eq(agent_proc_entry(&ca, CLIENT, UID_PROXY_A, &st), WEFT_OK, "%s", st.details);
    cr_assert_eq(agent_proc_entry(&ca, SERVER, UID_PROXY_B, &st), WEFT_OK, "%s", st.details);
    agent.extra[0] = "--claim-cidr";
    agent.extra[1] = "198.18.0.0/15";
    cr_assert_eq(agent_proc_start(&agent, true), WEFT_OK);
    cr_assert_eq(agent_proc_wait_served(&agent, 2, 20000), WEFT_OK, "see %s", agent.log);
    /* files the proxies (other uids) write: their admin sockets and logs */
    snprintf(run_dir, sizeof(run_dir), "%s/pods", ca.dir);
    cr_assert_eq(mkdir(run_dir, 0777), 0);
    chmod(run_dir, 0777);
    cr_assert_eq(agent_proc_copy_runfile(&ca, "proxy/weft-proxy", "weft-proxy", proxy_bin,
                                         sizeof(proxy_bin)),
                 WEFT_OK);
    cr_assert_eq(
        agent_proc_copy_runfile(&ca, "cli/weftctl", "weftctl", weftctl_bin, sizeof(weftctl_bin)),
        WEFT_OK);
    cr_assert_eq(
        agent_proc_copy_runfile(&ca, "proxy/mesh_app", "mesh_app", app_bin, sizeof(app_bin)),
        WEFT_OK);
    /* two pods joined by a veth */
    int id = (int)getpid() % 100000;
    snprintf(ns_a, sizeof(ns_a), "weft-a-%d", id);
    snprintf(ns_b, sizeof(ns_b), "weft-b-%d", id);
    made_ns = true;
    sh("ip netns add %s && ip netns add %s", ns_a, ns_b);
    sh("ip link add wa%d type veth peer name wb%d", id, id);
    sh("ip link set wa%d netns %s && ip link set wb%d netns %s", id, ns_a, id, ns_b);
    sh("ip -n %s addr add 198.18.1.1/24 dev wa%d && ip -n %s link set wa%d up && "
       "ip -n %s link set lo up",
       ns_a, id, ns_a, id, ns_a);
    sh("ip -n %s addr add 198.18.1.2/24 dev wb%d && ip -n %s link set wb%d up && "
       "ip -n %s link set lo up",
       ns_b, id, ns_b, id, ns_b);
    sh("ip netns exec %s %s iptables install --proxy-uid %d --no-ipv6 >/dev/null", ns_a,
       weftctl_bin, UID_PROXY_A);
    sh("ip netns exec %s %s iptables install --proxy-uid %d --no-ipv6 >/dev/null", ns_b,
       weftctl_bin, UID_PROXY_B);
    start_proxy(ns_a, UID_PROXY_A, "proxy-a", "198.18.1.1");
    start_proxy(ns_b, UID_PROXY_B, "proxy-b", "198.18.1.2");
    wait_proxy("proxy-a", 2);
    wait_proxy("proxy-b", 2);
    static const int ports[] = {8080, 8081, 9090};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        char out[200], p[16];
        snprintf(out, sizeof(out), "%s/app-%d.out", run_dir, ports[i]);
        snprintf(p, sizeof(p), "%d", ports[i]);
        const char *argv[] = {app_bin, ports[i] == 8081 ? "serve-pp" : "serve", "198.18.1.2", p,
                              NULL};
        spawn(ns_b, UID_APP, out, argv);
        wait_file_has(out, "listening");
    }
}

static void teardown(void)
{
    for (size_t i = 0; i < num_pids; i++) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    num_pids = 0;
    if (made_ns) { /* the veth and the rules go with the namespaces */
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", ns_a,
                 ns_b);
        (void)!system(cmd);
        made_ns = false;
    }
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(mesh, .init = setup, .fini = teardown, .timeout = 120);

/* call runs the client app in pod A; returns its output line. */
static const char *call(int port)
{
    static char out[512];
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "ip netns exec %s setpriv --reuid %d --regid %d --clear-groups %s call 198.18.1.2 "
             "%d hello-%d",
             ns_a, UID_APP, UID_APP, app_bin, port, port);
    int status;
    cr_assert_eq(agent_proc_run(0, cmd, false, 30000, out, sizeof(out), &status), WEFT_OK);
    return out;
}

Test(mesh, an_allowed_call_crosses_both_proxies_over_mtls_to_the_pods_own_address)
{
    char log_a[200], log_b[200], app[200];
    snprintf(log_a, sizeof(log_a), "%s/proxy-a.log", run_dir);
    snprintf(log_b, sizeof(log_b), "%s/proxy-b.log", run_dir);
    snprintf(app, sizeof(app), "%s/app-8080.out", run_dir);
    const char *out = call(8080);
    cr_assert(strstr(out, "got hello-8080") != NULL, "%s (see %s, %s)", out, log_a, log_b);
    cr_assert(file_has(app, "accepted 198.18.1.2"), "the app sees the pod's own address");
    wait_file_has(log_a, "direction=outbound src=198.18.1.1");
    cr_assert(file_has(log_a, "dst=198.18.1.2:8080 peer=" SERVER " decision=allow"), "see %s",
              log_a);
    cr_assert(file_has(log_a, "tls=TLSv1.3"), "see %s", log_a);
    wait_file_has(log_b, "direction=inbound");
    cr_assert(file_has(log_b, "peer=" CLIENT " decision=allow policy=demo/server-allow-client "
                              "rule=0 reason=allow-matched"),
              "see %s", log_b);
}

Test(mesh, a_port_the_policy_does_not_allow_is_refused_before_the_app)
{
    char log_b[200], app[200];
    snprintf(log_b, sizeof(log_b), "%s/proxy-b.log", run_dir);
    snprintf(app, sizeof(app), "%s/app-9090.out", run_dir);
    const char *out = call(9090);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    wait_file_has(log_b, "decision=deny");
    cr_assert(file_has(log_b, "peer=" CLIENT " decision=deny policy=demo/server-allow-client "
                              "rule=- reason=no-allow-matched"),
              "see %s", log_b);
    cr_assert(!file_has(app, "accepted"), "the app never saw the connection");
}

Test(mesh, a_revoked_caller_is_cut_within_seconds)
{
    char out[200], log_b[200];
    snprintf(out, sizeof(out), "%s/hold.out", run_dir);
    snprintf(log_b, sizeof(log_b), "%s/proxy-b.log", run_dir);
    const char *argv[] = {app_bin, "hold", "198.18.1.2", "8080", "40", NULL};
    spawn(ns_a, UID_APP, out, argv);
    wait_file_has(out, "got held");
    Weft__Ca__V1__RevokeRequest req = WEFT__CA__V1__REVOKE_REQUEST__INIT;
    req.kind = WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID;
    req.value = CLIENT;
    ProtobufCMessage *resp = NULL;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&ca, "Revoke", &req.base, &weft__ca__v1__revoke_response__descriptor,
                               &resp, &st),
                 WEFT_OK, "%s", st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
    wait_file_has(out, "closed after");
    long secs = -1;
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, out, 4096), WEFT_OK);
    const char *at = strstr((const char *)text, "closed after ");
    cr_assert_not_null(at);
    secs = strtol(at + 13, NULL, 10);
    free(text);
    cr_assert_leq(secs, 10, "the live connection was cut %ld s after the revocation", secs);
    wait_file_has(log_b, "close=\"peer revoked\"");
}

Test(mesh, a_policy_change_cuts_a_connection_it_now_denies)
{
    char out[200], log_b[200], file[200];
    snprintf(out, sizeof(out), "%s/hold.out", run_dir);
    snprintf(log_b, sizeof(log_b), "%s/proxy-b.log", run_dir);
    snprintf(file, sizeof(file), "%s/policy/demo.yaml", ca.dir);
    const char *argv[] = {app_bin, "hold", "198.18.1.2", "8080", "40", NULL};
    spawn(ns_a, UID_APP, out, argv);
    wait_file_has(out, "got held");
    /* the same policy, now allowing 9090 only */
    char *changed = strdup(policy);
    char *port = strstr(changed, "\"8080\"");
    cr_assert_not_null(port);
    memcpy(port + 1, "9090", 4);
    cr_assert_eq(weft_file_write_atomic(file, changed, strlen(changed), 0644), WEFT_OK);
    free(changed);
    wait_file_has(out, "closed after");
    wait_file_has(log_b, "close=\"policy now denies\"");
    cr_assert(file_has(log_b, "decision=deny policy=demo/server-allow-client rule=- "
                              "reason=no-allow-matched"),
              "see %s", log_b);
}

Test(mesh, a_connection_to_the_proxys_own_port_is_refused_not_looped)
{
    char log_b[200];
    snprintf(log_b, sizeof(log_b), "%s/proxy-b.log", run_dir);
    const char *out = call(15006);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    wait_file_has(log_b, "addressed to the proxy itself, not redirected");
}

Test(mesh, a_proxy_protocol_port_tells_the_app_who_called)
{
    char app[200];
    snprintf(app, sizeof(app), "%s/app-8081.out", run_dir);
    const char *out = call(8081);
    cr_assert(strstr(out, "got hello-8081") != NULL, "%s", out);
    wait_file_has(app, "pp src=198.18.1.1 id=" CLIENT);
}
