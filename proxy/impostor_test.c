/* proxy/impostor_test.c: the client side's strict posture through real proxies
 * (test/testlib/mesh.h). Pod B's address is claimed for MESH_ID_B by a proxy that listens on
 * ports nothing is redirected to; the proxy that really answers at pod B (on the ports the
 * iptables rules send traffic to) holds another valid SVID of the same trust domain,
 * IMPOSTOR, and claims nothing. A call from pod A must not reach pod B's app: proxy A's TLS
 * client accepts only the ID the directory names, and says whom it met instead. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test/testlib/mesh_criterion.h"
#include "test/testlib/net.h"

#define IMPOSTOR "spiffe://" MESH_TD "/ns/demo/sa/impostor"

static struct mesh mesh;
static char impostor_sock[160];

/* wait_ready waits (at most 30 s) for the proxy behind |sock| to answer /ready with 200. */
static bool wait_ready(const char *sock)
{
    char buf[2048];
    for (int i = 0; i < 300; i++) {
        if (testlib_http_unix(sock, "GET", "/ready", buf, sizeof(buf)) == 200) {
            return true;
        }
        usleep(100 * 1000);
    }
    return false;
}

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {.runfiles = {"proxy/mesh_app", NULL}};
    char err[512];
    struct rpc_status st;
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    if (agent_proc_entry(&mesh.ca, IMPOSTOR, MESH_UID_PROXY_B, &st) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, st.details);
    }
    /* the claim for MESH_ID_B, from ports no rule redirects to */
    static const char *const claimer[] = {
        "--spiffe-id", MESH_ID_B, "--inbound-port", "15016", "--outbound-port", "15011", NULL};
    if (mesh_proxy_start(&mesh, MESH_POD_A, NULL, err, sizeof(err)) != WEFT_OK ||
        mesh_proxy_start(&mesh, MESH_POD_B, claimer, err, sizeof(err)) != WEFT_OK ||
        mesh_proxy_wait_ready(&mesh, MESH_POD_A, 2, 30000, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    /* the impostor, on the default ports */
    char admin[180];
    snprintf(impostor_sock, sizeof(impostor_sock), "%s", mesh_path(&mesh, "impostor.sock"));
    snprintf(admin, sizeof(admin), "unix:%s", impostor_sock);
    const char *argv[] = {mesh_bin(&mesh, "weft-proxy"),
                          "--agent-socket",
                          mesh.agent.sock,
                          "--admin",
                          admin,
                          "--spiffe-id",
                          IMPOSTOR,
                          NULL};
    pid_t pid;
    if (mesh_spawn(&mesh, MESH_POD_B, MESH_UID_PROXY_B, mesh_path(&mesh, "impostor.log"), argv,
                   &pid) != WEFT_OK ||
        !wait_ready(impostor_sock)) {
        mesh_cr_fail_setup(&mesh, "the impostor proxy never became ready");
    }
    if (mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8080", "app.out", err, sizeof(err)) !=
        WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(impostor, .init = setup, .fini = teardown, .timeout = 120);

Test(impostor, a_server_with_another_valid_id_is_refused_by_the_client_proxy)
{
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, "8080", "hello", NULL};
    char out[512];
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, MESH_UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    cr_assert(strstr(out, "got ") == NULL, "the call went through: %s", out);
    const char *log_a = mesh.pods[MESH_POD_A].log;
    mesh_cr_wait_file_has(log_a, "dst=" MESH_IP_B ":8080", 20000);
    cr_assert(mesh_file_has(log_a, "peer ID " IMPOSTOR " is not the expected " MESH_ID_B), "see %s",
              log_a);
    cr_assert(mesh_file_has(log_a, "decision=refused"), "see %s", log_a);
    cr_assert(!mesh_file_has(mesh_path(&mesh, "app.out"), "accepted"), "the app saw it");
    cr_assert_geq(mesh_metric(&mesh, MESH_POD_A, "weft_proxy_handshake_failures_total", 0), 1);
}
