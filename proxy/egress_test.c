/* proxy/egress_test.c: weft-proxy's egress rules through a real proxy in a pod
 * (test/testlib/mesh.h). Pod A's proxy runs with --egress-default deny, an allow rule for one
 * destination outside the mesh and a deny rule for one port of a meshed workload; pod B also
 * answers at 198.18.1.3, an address no workload claimed (outside the mesh). Each decision is
 * made in pod A before anything is dialled: the access line names policy=egress, the rule and
 * the reason, the metrics count it, and a refused destination never sees a packet. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/base/file.h"
#include "test/testlib/mesh_criterion.h"

#define OUTSIDE_IP "198.18.1.3" /* on pod B, claimed by nobody */

static struct mesh mesh;
static char log_a[160];

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    /* the outside destination's ports are not captured in pod B: what is tested is pod A */
    struct mesh_opts o = {.runfiles = {"proxy/mesh_app", NULL},
                          .iptables_extra = {NULL, "--exclude-inbound-ports 7070,7071"}};
    static const char *const extra_a[] = {
        "--egress-default",   "deny", "--egress-allow", OUTSIDE_IP "/32:7070", "--egress-deny",
        MESH_IP_B "/32:9090", NULL};
    char err[512], cmd[256];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    snprintf(cmd, sizeof(cmd), "ip -n %s addr add " OUTSIDE_IP "/32 dev lo", mesh.pods[1].ns);
    if (system(cmd) != 0) {
        mesh_cr_fail_setup(&mesh, cmd);
    }
    if (mesh_proxies_start(&mesh, extra_a, NULL, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    snprintf(log_a, sizeof(log_a), "%s", mesh.pods[0].log);
    static const char *const apps[][3] = {{OUTSIDE_IP, "7070", "outside-7070.out"},
                                          {OUTSIDE_IP, "7071", "outside-7071.out"},
                                          {MESH_IP_B, "8080", "pod-8080.out"},
                                          {MESH_IP_B, "9090", "pod-9090.out"}};
    for (size_t i = 0; i < sizeof(apps) / sizeof(apps[0]); i++) {
        if (mesh_serve(&mesh, MESH_POD_B, "serve", apps[i][0], apps[i][1], apps[i][2], err,
                       sizeof(err)) != WEFT_OK) {
            mesh_cr_fail_setup(&mesh, err);
        }
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(egress, .init = setup, .fini = teardown, .timeout = 120);

/* call runs the app's client in pod A; returns its output. */
static const char *call(const char *ip, int port)
{
    static char out[512];
    char p[8], msg[32];
    snprintf(p, sizeof(p), "%d", port);
    snprintf(msg, sizeof(msg), "hello-%d", port);
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", ip, p, msg, NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, MESH_UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    return out;
}

Test(egress, an_allowed_destination_outside_the_mesh_passes_through_by_its_rule)
{
    const char *out = call(OUTSIDE_IP, 7070);
    cr_assert(strstr(out, "got hello-7070") != NULL, "%s (see %s)", out, log_a);
    cr_assert_eq(mesh_wait_file_has(log_a,
                                    "dst=" OUTSIDE_IP ":7070 peer=- decision=passthrough "
                                    "policy=egress rule=0 reason=egress-allow-matched",
                                    10000),
                 WEFT_OK, "see %s", log_a);
    cr_assert(mesh_file_has(mesh_path(&mesh, "outside-7070.out"), "accepted"));
}

Test(egress, a_destination_outside_the_mesh_no_rule_allows_is_refused_before_the_dial)
{
    const char *out = call(OUTSIDE_IP, 7071);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    cr_assert_eq(mesh_wait_file_has(log_a,
                                    "dst=" OUTSIDE_IP ":7071 peer=- decision=deny policy=egress "
                                    "rule=- reason=egress-default-deny",
                                    10000),
                 WEFT_OK, "see %s", log_a);
    cr_assert(mesh_file_has(log_a, "close=\"denied by egress policy\""), "see %s", log_a);
    cr_assert(!mesh_file_has(mesh_path(&mesh, "outside-7071.out"), "accepted"), "it was dialled");
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_A,
                             "weft_proxy_connections_total{direction=\"outbound\","
                             "outcome=\"denied\"}",
                             0),
                 1);
    cr_assert_eq(
        mesh_metric(&mesh, MESH_POD_A,
                    "weft_proxy_policy_decisions_total{decision=\"deny\",policy=\"egress\","
                    "rule=\"-\",reason=\"egress-default-deny\"}",
                    0),
        1);
}

Test(egress, a_deny_rule_refuses_a_meshed_port_and_leaves_the_others_alone)
{
    const char *out = call(MESH_IP_B, 9090);
    cr_assert(strstr(out, "got ") == NULL, "%s", out);
    cr_assert_eq(mesh_wait_file_has(log_a,
                                    "dst=" MESH_IP_B ":9090 peer=- decision=deny policy=egress "
                                    "rule=1 reason=egress-deny-matched",
                                    10000),
                 WEFT_OK, "see %s", log_a);
    cr_assert(!mesh_file_has(mesh_path(&mesh, "pod-9090.out"), "accepted"), "it was dialled");
    cr_assert(!mesh_file_has(mesh.pods[1].log, ":9090"), "pod B saw it: see %s", mesh.pods[1].log);
    /* the meshed port no rule names goes over mTLS as always */
    out = call(MESH_IP_B, 8080);
    cr_assert(strstr(out, "got hello-8080") != NULL, "%s (see %s)", out, log_a);
    cr_assert_eq(mesh_wait_file_has(
                     log_a, "dst=" MESH_IP_B ":8080 peer=" MESH_ID_B " decision=allow", 10000),
                 WEFT_OK, "see %s", log_a);
    /* both ends timed their handshake; none failed */
    cr_assert_geq(mesh_metric(&mesh, MESH_POD_A,
                              "weft_proxy_handshake_seconds_count{direction=\"outbound\","
                              "kind=\"full\"}",
                              0),
                  1);
    cr_assert_geq(mesh_metric(&mesh, MESH_POD_B,
                              "weft_proxy_handshake_seconds_count{direction=\"inbound\","
                              "kind=\"full\"}",
                              0),
                  1);
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_B, "weft_proxy_handshake_failures_total", -1), 0);
    /* the bytes each way, counted once: pod B saw this one connection, and its metrics say
     * what its access line says */
    const char *log_b = mesh.pods[MESH_POD_B].log;
    mesh_cr_wait_file_has(log_b, "direction=inbound src=" MESH_IP_A, 20000);
    uint8_t *text;
    size_t len;
    cr_assert_eq(weft_file_read(&text, &len, log_b, 1 << 20), WEFT_OK);
    const char *at = strstr((const char *)text, "bytes_in=");
    cr_assert_not_null(at, "see %s", log_b);
    unsigned long long in = 0, back = 0;
    cr_assert_eq(sscanf(at, "bytes_in=%llu bytes_out=%llu", &in, &back), 2);
    free(text);
    cr_assert_geq(in, 10, "\"hello-8080\" came in");
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_B,
                             "weft_proxy_bytes_total{direction=\"inbound\",way=\"in\"}", 0),
                 (double)in);
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_B,
                             "weft_proxy_bytes_total{direction=\"inbound\",way=\"out\"}", 0),
                 (double)back);
}
