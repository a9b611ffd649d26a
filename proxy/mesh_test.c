/* proxy/mesh_test.c: the mesh path through two real weft-proxy processes, each in a pod made
 * by test/testlib/mesh.h: a network namespace with a veth to the other (198.18.1.1 and 198.18.1.2),
 * the rules of `weftctl iptables install`, the proxy under a uid of its own (attested by the real
 * agent as client and server) and an application under another uid (mesh_app). A call from the
 * client pod's app to the server pod's address goes out through proxy A (original destination,
 * directory lookup, TLS 1.3 to exactly the server's ID), in through proxy B (sniffed as
 * weft/1, mTLS, policy) to the app at the pod's own address; a port the policy does not allow
 * is refused before the app sees anything. Needs root; every process, namespace and rule made
 * here goes in the teardown, failure or not. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/base/file.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/mesh.h"

#define CLIENT MESH_ID_A
#define SERVER MESH_ID_B
#define UID_APP MESH_UID_APP

static struct mesh mesh;
static char log_a[160], log_b[160];

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: server-allow-client, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" CLIENT "\"]}]\n"
                             "      to: [{ports: [\"8080\", \"8081\"]}]\n";

/* path returns |name| in the pods' run directory (one of a few rotating buffers). */
static const char *path(const char *name)
{
    static char bufs[4][160];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", mesh.run_dir, name);
    return b;
}

static void wait_file_has(const char *file, const char *needle)
{
    cr_assert_eq(mesh_wait_file_has(file, needle, 20000), WEFT_OK, "%s never said \"%s\"", file,
                 needle);
}

/* spawn starts |argv| in pod |pod| as the app, its output in the run directory's |out|. */
static pid_t spawn(enum mesh_pod_id pod, const char *out, const char *const *argv)
{
    pid_t pid;
    cr_assert_eq(mesh_spawn(&mesh, pod, UID_APP, path(out), argv, &pid), WEFT_OK);
    return pid;
}

/* fail_setup cleans up what a failed setup made (Criterion runs no .fini after a failed .init)
 * and fails with |why|. */
static void fail_setup(const char *why)
{
    mesh_dump_logs(&mesh);
    mesh_cleanup(&mesh);
    cr_assert_fail("setup: %s (the logs are above)", why);
}

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {.policy_yaml = policy, .runfiles = {"proxy/mesh_app", NULL}};
    static const char *const extra[] = {"--proxy-protocol-port", "8081", NULL};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, extra, extra, err, sizeof(err)) != WEFT_OK) {
        fail_setup(err);
    }
    snprintf(log_a, sizeof(log_a), "%s", mesh.pods[MESH_POD_A].log);
    snprintf(log_b, sizeof(log_b), "%s", mesh.pods[MESH_POD_B].log);
    static const char *const ports[] = {"8080", "8081", "9090"};
    for (size_t i = 0; i < nitems(ports); i++) {
        char out[32];
        snprintf(out, sizeof(out), "app-%s.out", ports[i]);
        const char *argv[] = {mesh_bin(&mesh, "mesh_app"),
                              strcmp(ports[i], "8081") == 0 ? "serve-pp" : "serve", MESH_IP_B,
                              ports[i], NULL};
        pid_t pid;
        if (mesh_spawn(&mesh, MESH_POD_B, UID_APP, path(out), argv, &pid) != WEFT_OK ||
            mesh_wait_file_has(path(out), "listening", 20000) != WEFT_OK) {
            fail_setup("an app did not listen");
        }
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(mesh, .init = setup, .fini = teardown, .timeout = 120);

/* call runs the client app in pod A: sends "hello-PORT" to pod B's |port|; returns its output
 * line ("got ...", "eof", "error: ..."). */
static const char *call(int port)
{
    static char out[512];
    char p[16], msg[32];
    snprintf(p, sizeof(p), "%d", port);
    snprintf(msg, sizeof(msg), "hello-%d", port);
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, p, msg, NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    return out;
}

Test(mesh, an_allowed_call_crosses_both_proxies_over_mtls_to_the_pods_own_address)
{
    const char *out = call(8080);
    cr_assert(strstr(out, "got hello-8080") != NULL, "%s (see %s, %s)", out, log_a, log_b);
    cr_assert(mesh_file_has(path("app-8080.out"), "accepted " MESH_IP_B),
              "the app sees the pod's own address");
    wait_file_has(log_a, "direction=outbound src=" MESH_IP_A);
    cr_assert(mesh_file_has(log_a, "dst=" MESH_IP_B ":8080 peer=" SERVER " decision=allow"),
              "see %s", log_a);
    cr_assert(mesh_file_has(log_a, "tls=TLSv1.3"), "see %s", log_a);
    wait_file_has(log_b, "direction=inbound");
    cr_assert(mesh_file_has(log_b, "peer=" CLIENT " decision=allow policy=demo/server-allow-client "
                                   "rule=0 reason=allow-matched"),
              "see %s", log_b);
}

Test(mesh, a_port_the_policy_does_not_allow_is_refused_before_the_app)
{
    const char *out = call(9090);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    wait_file_has(log_b, "decision=deny");
    cr_assert(mesh_file_has(log_b, "peer=" CLIENT " decision=deny policy=demo/server-allow-client "
                                   "rule=- reason=no-allow-matched"),
              "see %s", log_b);
    cr_assert(!mesh_file_has(path("app-9090.out"), "accepted"), "the app never saw the connection");
}

/* hold starts the app in pod A holding a connection to pod B's 8080 for at most 40 s, and
 * waits for its first echo. */
static void hold(void)
{
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "hold", MESH_IP_B, "8080", "40", NULL};
    spawn(MESH_POD_A, "hold.out", argv);
    wait_file_has(path("hold.out"), "got held");
}

Test(mesh, a_revoked_caller_is_cut_within_seconds)
{
    hold();
    Weft__Ca__V1__RevokeRequest req = WEFT__CA__V1__REVOKE_REQUEST__INIT;
    req.kind = WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID;
    req.value = CLIENT;
    ProtobufCMessage *resp = NULL;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&mesh.ca, "Revoke", &req.base,
                               &weft__ca__v1__revoke_response__descriptor, &resp, &st),
                 WEFT_OK, "%s", st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
    wait_file_has(path("hold.out"), "closed after");
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, path("hold.out"), 4096), WEFT_OK);
    const char *at = strstr((const char *)text, "closed after ");
    cr_assert_not_null(at);
    long secs = strtol(at + 13, NULL, 10);
    free(text);
    cr_assert_leq(secs, 10, "the live connection was cut %ld s after the revocation", secs);
    wait_file_has(log_b, "close=\"peer revoked\"");
}

Test(mesh, a_policy_change_cuts_a_connection_it_now_denies)
{
    hold();
    /* the same policy, now allowing 9090 only */
    char *changed = strdup(policy);
    char *port = strstr(changed, "\"8080\"");
    cr_assert_not_null(port);
    memcpy(port + 1, "9090", 4);
    cr_assert_eq(mesh_policy_write(&mesh, changed), WEFT_OK);
    free(changed);
    wait_file_has(path("hold.out"), "closed after");
    wait_file_has(log_b, "close=\"policy now denies\"");
    cr_assert(mesh_file_has(log_b, "decision=deny policy=demo/server-allow-client rule=- "
                                   "reason=no-allow-matched"),
              "see %s", log_b);
}

Test(mesh, a_connection_to_the_proxys_own_port_is_refused_not_looped)
{
    const char *out = call(15006);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    wait_file_has(log_b, "addressed to the proxy itself, not redirected");
}

Test(mesh, a_proxy_protocol_port_tells_the_app_who_called)
{
    const char *out = call(8081);
    cr_assert(strstr(out, "got hello-8081") != NULL, "%s", out);
    wait_file_has(path("app-8081.out"), "pp src=" MESH_IP_A " id=" CLIENT);
}
