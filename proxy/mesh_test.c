/* proxy/mesh_test.c: the mesh path through two real weft-proxy processes, each in a pod made
 * by test/testlib/mesh.h: a network namespace with a veth to the other (198.18.1.1 and
 * 198.18.1.2), the rules of `weftctl iptables install`, the proxy under a uid of its own
 * (attested by the real agent as client and server) and applications under another uid
 * (mesh_app). A call from the client pod's app to the server pod's address goes out through
 * proxy A (original destination, directory lookup, TLS 1.3 to exactly the server's ID), in
 * through proxy B (sniffed as weft/1, mTLS, policy) to the app at the pod's own address; a port
 * the policy does not allow is refused before the app sees anything. A non-mesh client (pod A's
 * proxy uid, which the rules leave uncaptured, so its bytes leave as plaintext) reaches a
 * PERMISSIVE port and is refused on a STRICT one; a server-first protocol works both ways;
 * a second call resumes the TLS session; /quitquitquit drains a live connection. Needs root;
 * every process, namespace and rule made here goes in the teardown, failure or not. (SVID
 * rotation and expiry, with 20 s SVIDs, are in mesh_rotation_test.c.) */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/file.h"
#include "lib/base/mem.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/mesh_criterion.h"

#define CLIENT MESH_ID_A
#define SERVER MESH_ID_B
#define UID_APP MESH_UID_APP

static struct mesh mesh;
static char log_a[160], log_b[160];

/* rule 0: the client on 8080 and 8081; rule 1: anyone, plaintext too, on 8082, 8083 and 8025;
 * 8083 is STRICT (mTLS only) */
static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: server-allow-client, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" CLIENT "\"]}]\n"
                             "      to: [{ports: [\"8080\", \"8081\"]}]\n"
                             "    - to: [{ports: [\"8082\", \"8083\", \"8025\"]}]\n"
                             "---\n"
                             "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: PeerAuthentication\n"
                             "metadata: {name: server-strict-8083, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  portLevelMtls: {'8083': {mode: STRICT}}\n";

#define DRAIN_S "60" /* proxy B's --drain-s: far beyond what a drained connection needs */

/* spawn starts |argv| in pod |pod| as the app, its output in the run directory's |out|. */
static pid_t spawn(enum mesh_pod_id pod, const char *out, const char *const *argv)
{
    pid_t pid;
    cr_assert_eq(mesh_spawn(&mesh, pod, UID_APP, mesh_path(&mesh, out), argv, &pid), WEFT_OK);
    return pid;
}

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {.policy_yaml = policy, .runfiles = {"proxy/mesh_app", NULL}};
    static const char *const extra_a[] = {"--proxy-protocol-port", "8081", NULL};
    static const char *const extra_b[] = {"--proxy-protocol-port", "8081", "--drain-s", DRAIN_S,
                                          NULL};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, extra_a, extra_b, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    snprintf(log_a, sizeof(log_a), "%s", mesh.pods[MESH_POD_A].log);
    snprintf(log_b, sizeof(log_b), "%s", mesh.pods[MESH_POD_B].log);
    static const char *const apps[][2] = {{"8080", "serve"}, {"8081", "serve-pp"},
                                          {"9090", "serve"}, {"8082", "serve"},
                                          {"8083", "serve"}, {"8025", "serve-banner"}};
    for (size_t i = 0; i < nitems(apps); i++) {
        char out[32];
        snprintf(out, sizeof(out), "app-%s.out", apps[i][0]);
        if (mesh_serve(&mesh, MESH_POD_B, apps[i][1], MESH_IP_B, apps[i][0], out, err,
                       sizeof(err)) != WEFT_OK) {
            mesh_cr_fail_setup(&mesh, err);
        }
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(mesh, .init = setup, .fini = teardown, .timeout = 120);

/* run runs mesh_app |mode| in pod A as |uid| against pod B's |port| with the message
 * "hello-PORT"; returns its output ("got ...", "eof", "error: ...", a banner line first). */
static const char *run(unsigned uid, const char *mode, int port)
{
    static char out[512];
    char p[16], msg[32];
    snprintf(p, sizeof(p), "%d", port);
    snprintf(msg, sizeof(msg), "hello-%d", port);
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), mode, MESH_IP_B, p, msg, NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, uid, argv, 30000, out, sizeof(out), &status), WEFT_OK);
    return out;
}

/* call runs the client app in pod A (captured by proxy A: a mesh client). */
static const char *call(int port) { return run(UID_APP, "call", port); }

/* call_plain calls from pod A as its proxy's uid, which the rules leave uncaptured: the bytes
 * leave the pod as plaintext, a client outside the mesh as proxy B sees it. */
static const char *call_plain(int port) { return run(MESH_UID_PROXY_A, "call", port); }

static void wait_line(const char *file, const char *const *needles)
{
    if (mesh_wait_file_line(file, needles, 20000) != WEFT_OK) {
        char want[512] = "";
        for (size_t i = 0; needles[i] != NULL; i++) {
            strncat(want, needles[i], sizeof(want) - strlen(want) - 2);
            strncat(want, "|", sizeof(want) - strlen(want) - 1);
        }
        cr_assert_fail("%s has no line with all of %s", file, want);
    }
}

Test(mesh, an_allowed_call_crosses_both_proxies_over_mtls_to_the_pods_own_address)
{
    const char *out = call(8080);
    cr_assert(strstr(out, "got hello-8080") != NULL, "%s (see %s, %s)", out, log_a, log_b);
    cr_assert(mesh_file_has(mesh_path(&mesh, "app-8080.out"), "accepted " MESH_IP_B),
              "the app sees the pod's own address");
    mesh_cr_wait_file_has(log_a, "direction=outbound src=" MESH_IP_A, 20000);
    cr_assert(mesh_file_has(log_a, "dst=" MESH_IP_B ":8080 peer=" SERVER " decision=allow"),
              "see %s", log_a);
    cr_assert(mesh_file_has(log_a, "tls=TLSv1.3"), "see %s", log_a);
    mesh_cr_wait_file_has(log_b, "direction=inbound", 20000);
    cr_assert(mesh_file_has(log_b, "peer=" CLIENT " decision=allow policy=demo/server-allow-client "
                                   "rule=0 reason=allow-matched"),
              "see %s", log_b);
}

Test(mesh, a_port_the_policy_does_not_allow_is_refused_before_the_app)
{
    const char *out = call(9090);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    mesh_cr_wait_file_has(log_b, "decision=deny", 20000);
    cr_assert(mesh_file_has(log_b, "peer=" CLIENT " decision=deny policy=demo/server-allow-client "
                                   "rule=- reason=no-allow-matched"),
              "see %s", log_b);
    cr_assert(!mesh_file_has(mesh_path(&mesh, "app-9090.out"), "accepted"),
              "the app never saw the connection");
    /* and the caller's proxy was told why, with a TLS alert */
    mesh_cr_wait_file_has(log_a, "dst=" MESH_IP_B ":9090", 20000);
    cr_assert(mesh_file_has(log_a, "peer sent TLS alert \\\"access denied\\\": it does not allow "
                                   "this connection"),
              "see %s", log_a);
}

/* hold starts the app in pod A holding a connection to pod B's 8080 for at most 40 s, and
 * waits for its first echo. */
static void hold(void)
{
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "hold", MESH_IP_B, "8080", "40", NULL};
    spawn(MESH_POD_A, "hold.out", argv);
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "got held", 20000);
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
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "closed after", 20000);
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, mesh_path(&mesh, "hold.out"), 4096), WEFT_OK);
    const char *at = strstr((const char *)text, "closed after ");
    cr_assert_not_null(at);
    long secs = strtol(at + 13, NULL, 10);
    free(text);
    cr_assert_leq(secs, 10, "the live connection was cut %ld s after the revocation", secs);
    mesh_cr_wait_file_has(log_b, "close=\"peer revoked\"", 20000);
    mesh_cr_wait_file_has(log_a, "peer sent TLS alert \\\"certificate revoked\\\"", 20000);
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
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "closed after", 20000);
    mesh_cr_wait_file_has(log_b, "close=\"policy now denies\"", 20000);
    cr_assert(mesh_file_has(log_b, "decision=deny policy=demo/server-allow-client rule=- "
                                   "reason=no-allow-matched"),
              "see %s", log_b);
}

/* graced returns the test's policy with closeGraceSeconds |grace| on its ALLOW policy and its
 * first rule's port 8080 turned into |port| (9090: the held connection is no longer allowed;
 * 8080: as before). The caller frees it. */
static char *graced(int grace, const char *port)
{
    char *out = weft_xcalloc(1, sizeof(policy) + 64);
    const char *rules = strstr(policy, "  rules:\n");
    cr_assert_not_null(rules);
    memcpy(out, policy, (size_t)(rules - policy));
    snprintf(out + strlen(out), 64, "  closeGraceSeconds: %d\n", grace);
    strcat(out, rules);
    char *p = strstr(out, "\"8080\"");
    cr_assert_not_null(p);
    memcpy(p + 1, port, 4);
    return out;
}

static void write_policy(char *yaml)
{
    cr_assert_eq(mesh_policy_write(&mesh, yaml), WEFT_OK);
    free(yaml);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Narrowing the ALLOW policy and granting 8 s in one edit: the held connection stays through
 * the grace (its start is logged with whose grace it is), then is cut. */
Test(mesh, a_policy_change_with_a_grace_cuts_only_when_the_grace_ends)
{
    hold();
    write_policy(graced(8, "9090"));
    mesh_cr_wait_file_has(log_b, "closing it after its grace", 20000);
    double t0 = mono();
    cr_assert(mesh_file_has(log_b, "policy=demo/server-allow-client reason=no-allow-matched "
                                   "grace_s=8 grace_from=demo/server-allow-client"),
              "see %s", log_b);
    usleep(2000 * 1000); /* well inside the grace: still open */
    cr_assert(!mesh_file_has(mesh_path(&mesh, "hold.out"), "closed after"),
              "cut before its grace ended");
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "closed after", 20000);
    double waited = mono() - t0;
    cr_assert_geq(waited, 6.0, "cut %.1f s into an 8 s grace", waited);
    mesh_cr_wait_file_has(log_b, "close=\"policy now denies\"", 20000);
}

/* A change that allows the connection again within its grace keeps it. */
Test(mesh, a_connection_allowed_again_within_its_grace_stays)
{
    hold();
    write_policy(graced(6, "9090"));
    mesh_cr_wait_file_has(log_b, "closing it after its grace", 20000);
    write_policy(graced(6, "8080"));
    mesh_cr_wait_file_has(log_b, "the policy allows a live connection again: it stays", 20000);
    usleep(7000 * 1000); /* past the grace it had */
    cr_assert(!mesh_file_has(mesh_path(&mesh, "hold.out"), "closed after"), "it was cut");
    cr_assert(!mesh_file_has(log_b, "close=\"policy now denies\""), "see %s", log_b);
}

/* A grace in course is shortened by a later verdict with less: a DENY without one cuts at
 * once. */
Test(mesh, a_deny_policy_without_a_grace_ends_a_grace_in_course)
{
    hold();
    write_policy(graced(60, "9090"));
    mesh_cr_wait_file_has(log_b, "closing it after its grace", 20000);
    char *both = weft_xcalloc(1, 2 * sizeof(policy) + 512);
    char *narrowed = graced(60, "9090");
    snprintf(both, 2 * sizeof(policy) + 512,
             "%s---\n"
             "apiVersion: security.weft.dev/v1alpha1\n"
             "kind: AuthorizationPolicy\n"
             "metadata: {name: server-deny-client, namespace: demo}\n"
             "spec:\n"
             "  selector: {serviceAccounts: [server]}\n"
             "  action: DENY\n"
             "  rules: [{from: [{principals: [\"" CLIENT "\"]}]}]\n",
             narrowed);
    free(narrowed);
    write_policy(both);
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "closed after", 20000);
    mesh_cr_wait_file_has(log_b, "close=\"policy now denies\"", 20000);
    cr_assert(mesh_file_has(log_b, "decision=deny policy=demo/server-deny-client rule=0 "
                                   "reason=deny-matched"),
              "see %s", log_b);
}

Test(mesh, a_connection_to_the_proxys_own_port_is_refused_not_looped)
{
    const char *out = call(15006);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    mesh_cr_wait_file_has(log_b, "addressed to the proxy itself, not redirected", 20000);
}

Test(mesh, a_proxy_protocol_port_tells_the_app_who_called)
{
    const char *out = call(8081);
    cr_assert(strstr(out, "got hello-8081") != NULL, "%s", out);
    mesh_cr_wait_file_has(mesh_path(&mesh, "app-8081.out"), "pp src=" MESH_IP_A " id=" CLIENT,
                          20000);
}

Test(mesh, a_plaintext_client_reaches_a_permissive_port_and_is_refused_on_a_strict_one)
{
    const char *out = call_plain(8082);
    cr_assert(strstr(out, "got hello-8082") != NULL, "%s (see %s)", out, log_b);
    cr_assert(mesh_file_has(mesh_path(&mesh, "app-8082.out"), "accepted " MESH_IP_B));
    const char *allowed[] = {"direction=inbound src=" MESH_IP_A,
                             "dst=" MESH_IP_B ":8082 peer=- decision=allow "
                             "policy=demo/server-allow-client rule=1 reason=allow-matched",
                             "tls=none", NULL};
    wait_line(log_b, allowed);

    out = call_plain(8083);
    cr_assert(strstr(out, "got ") == NULL, "a STRICT port answered a plaintext client: %s", out);
    const char *refused[] = {"direction=inbound src=" MESH_IP_A,
                             "dst=" MESH_IP_B ":8083 peer=- decision=deny "
                             "policy=demo/server-strict-8083 rule=- reason=mtls-strict",
                             NULL};
    wait_line(log_b, refused);
    cr_assert(!mesh_file_has(mesh_path(&mesh, "app-8083.out"), "accepted"), "the app never saw it");

    /* the same STRICT port takes the mesh client, over mTLS */
    out = call(8083);
    cr_assert(strstr(out, "got hello-8083") != NULL, "%s (see %s)", out, log_b);
    const char *mtls[] = {"dst=" MESH_IP_B ":8083 peer=" CLIENT " decision=allow", "rule=1",
                          "tls=TLSv1.3", NULL};
    wait_line(log_b, mtls);
}

Test(mesh, a_server_first_protocol_works_through_the_mesh_and_as_plaintext_on_permissive)
{
    static const char *const timeouts = "weft_proxy_permissive_timeouts_total{port=\"8025\"}";
    /* through the mesh: proxy A dials at once and opens TLS, so nothing waits for the client */
    const char *out = run(UID_APP, "banner-call", 8025);
    cr_assert(strstr(out, "banner 220 mesh_app banner\ngot hello-8025") != NULL, "%s (see %s, %s)",
              out, log_a, log_b);
    const char *mtls[] = {"direction=outbound", "dst=" MESH_IP_B ":8025 peer=" SERVER,
                          "tls=TLSv1.3", NULL};
    wait_line(log_a, mtls);
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_B, timeouts, 0), 0, "the mesh client was not waited");

    /* a plaintext client that waits for the greeting: proxy B takes its silence as plaintext
     * after --permissive-wait-ms and dials the app, which speaks first */
    out = run(MESH_UID_PROXY_A, "banner-call", 8025);
    cr_assert(strstr(out, "banner 220 mesh_app banner\ngot hello-8025") != NULL, "%s (see %s)", out,
              log_b);
    const char *plain[] = {"dst=" MESH_IP_B ":8025 peer=- decision=allow", "tls=none", NULL};
    wait_line(log_b, plain);
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_B, timeouts, 0), 1, "%s counts the wait", timeouts);
    cr_assert_eq(mesh_file_count(mesh_path(&mesh, "app-8025.out"), "accepted"), 2);
}

#define FULL "weft_proxy_handshakes_total{kind=\"full\"}"
#define RESUMED "weft_proxy_handshakes_total{kind=\"resumed\"}"

Test(mesh, a_second_call_resumes_the_tls_session)
{
    double full[2], resumed[2];
    for (int pod = 0; pod < 2; pod++) {
        full[pod] = mesh_metric(&mesh, pod, FULL, -1);
        resumed[pod] = mesh_metric(&mesh, pod, RESUMED, -1);
        cr_assert(full[pod] >= 0 && resumed[pod] >= 0, "both series are in /metrics");
    }
    cr_assert(strstr(call(8080), "got hello-8080") != NULL);
    for (int pod = 0; pod < 2; pod++) {
        cr_assert_eq(mesh_metric(&mesh, pod, FULL, -1), full[pod] + 1, "pod %d: a full one first",
                     pod);
        cr_assert_eq(mesh_metric(&mesh, pod, RESUMED, -1), resumed[pod]);
    }
    cr_assert(strstr(call(8080), "got hello-8080") != NULL);
    for (int pod = 0; pod < 2; pod++) {
        cr_assert_eq(mesh_metric(&mesh, pod, RESUMED, -1), resumed[pod] + 1,
                     "pod %d: the second call resumed", pod);
        cr_assert_eq(mesh_metric(&mesh, pod, FULL, -1), full[pod] + 1);
    }
    const char *line[] = {"dst=" MESH_IP_B ":8080 peer=" CLIENT " decision=allow", "resumed=yes",
                          NULL};
    wait_line(log_b, line);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* POST /quitquitquit, as a Job's last step would (SIGTERM takes the same path in the proxy). */
Test(mesh, quitquitquit_drains_a_live_connection_and_exits_once_it_is_done)
{
    char buf[4096];
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "converse", MESH_IP_B, "8080",
                          mesh_path(&mesh, "go-on"),   NULL};
    spawn(MESH_POD_A, "converse.out", argv);
    mesh_cr_wait_file_has(mesh_path(&mesh, "converse.out"), "got one", 20000);
    cr_assert_eq(mesh_admin(&mesh, MESH_POD_B, "POST", "/quitquitquit", buf, sizeof(buf)), 200,
                 "%s", buf);
    int ready = 200;
    for (int i = 0; i < 50 && (ready = mesh_admin(&mesh, MESH_POD_B, "GET", "/ready", buf,
                                                  sizeof(buf))) == 200;
         i++) {
        usleep(100 * 1000);
    }
    cr_assert_neq(ready, 200, "a draining proxy is not ready");
    cr_assert_neq(ready, -1, "and still answers on its admin socket");
    /* new connections are refused once the workers have closed the inbound listeners: /ready
     * turns first, the proxy sees the request within 100 ms and wakes its workers */
    mesh_cr_wait_file_has(log_b, "weft-proxy draining", 20000);
    usleep(500 * 1000);
    const char *out = call(8080);
    cr_assert(strstr(out, "got ") == NULL, "a new connection reached a draining proxy: %s", out);
    cr_assert_eq(mesh_file_count(mesh_path(&mesh, "app-8080.out"), "accepted"), 1,
                 "only the held one");
    const char *refused[] = {"direction=outbound", "dst=" MESH_IP_B ":8080", "decision=refused",
                             "close=\"connect refused\"", NULL};
    wait_line(log_a, refused);
    /* the held connection still works, then the client closes it */
    int fd = open(mesh_path(&mesh, "go-on"), O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    mesh_cr_wait_file_has(mesh_path(&mesh, "converse.out"), "closed", 20000);
    int64_t closed = now_ms();
    cr_assert(mesh_file_has(mesh_path(&mesh, "converse.out"), "got two"),
              "the held connection echoed");
    int status = -1;
    cr_assert_eq(mesh_proxy_stop(&mesh, MESH_POD_B, 0, 15000, &status), WEFT_OK,
                 "proxy B still runs 15 s after its last connection closed (--drain-s " DRAIN_S
                 "); see %s",
                 log_b);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %#x", status);
    cr_assert_lt(now_ms() - closed, 15000);
    const char *held[] = {"dst=" MESH_IP_B ":8080 peer=" CLIENT " decision=allow",
                          "bytes_in=6 bytes_out=6", NULL};
    cr_assert(mesh_file_has_line(log_b, held), "the held connection's line; see %s", log_b);
    cr_assert(mesh_file_has(log_b, "weft-proxy stopped"), "see %s", log_b);
}
