/* test/e2e/restart_test.c: issue 7's scenario 9, restarts, through three pods on a real mesh
 * (test/testlib/mesh.h with num_pods 3: A, B and C on a bridge; B serves, A and C call it):
 *   - the agent restarts (SIGTERM, then again from its stored node identity): a live
 *     connection from A to B is unaffected and still echoes, the proxies reconnect (every
 *     /ready is 200 again, the agent counts their streams again) and new calls pass;
 *   - pod A's proxy restarts (SIGTERM: it drains and exits 0; then it is started again): it
 *     comes back ready and serves A's new connections, while a live connection from pod C to
 *     pod B, through the other pods' proxies, is unaffected.
 * Needs root; everything made here goes in the teardown, failure or not. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test/testlib/mesh_criterion.h"

#define STREAMS "weft_agent_workload_streams"

static struct mesh mesh;

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: server-allow-callers, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" MESH_ID_A "\", \"" MESH_ID_C "\"]}]\n"
                             "      to: [{ports: [\"8080\"]}]\n";

/* pod A's proxy drains for 3 s on SIGTERM (its outbound listeners serve until then) */
static const char *const extra_a[] = {"--drain-s", "3", NULL};

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {
        .policy_yaml = policy, .num_pods = 3, .runfiles = {"proxy/mesh_app", NULL}};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, extra_a, NULL, err, sizeof(err)) != WEFT_OK ||
        mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8080", "app.out", err, sizeof(err)) !=
            WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(e2e_restart, .init = setup, .fini = teardown, .timeout = 120);

/* converse starts mesh_app converse from pod |pod| to pod B's 8080 (its output |out|, going on
 * when the file |go| exists) and waits for its first echo. */
static void converse(enum mesh_pod_id pod, const char *out, const char *go)
{
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "converse", MESH_IP_B, "8080",
                          mesh_path(&mesh, go),        NULL};
    pid_t pid;
    cr_assert_eq(mesh_spawn(&mesh, pod, MESH_UID_APP, mesh_path(&mesh, out), argv, &pid), WEFT_OK);
    mesh_cr_wait_file_has(mesh_path(&mesh, out), "got one", 20000);
}

/* go_on lets the conversation waiting for |go| send its second message, and asserts that it was
 * echoed over the same connection. */
static void go_on(const char *out, const char *go)
{
    int fd = open(mesh_path(&mesh, go), O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    mesh_cr_wait_file_has(mesh_path(&mesh, out), "closed", 20000);
    cr_assert(mesh_file_has(mesh_path(&mesh, out), "got two"),
              "the live connection no longer echoes; see %s", mesh_path(&mesh, out));
}

/* call makes one new call from pod |pod|'s app to pod B's 8080; returns its output. */
static const char *call(enum mesh_pod_id pod)
{
    static char out[512];
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, "8080", "new", NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, pod, MESH_UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    return out;
}

static double streams(void)
{
    static char buf[1 << 16];
    if (agent_proc_http(&mesh.agent, "/metrics", buf, sizeof(buf)) != 200) {
        return -1;
    }
    return agent_proc_metric(buf, STREAMS, -1);
}

/* all_ready says whether every proxy answers /ready with 200; |*out_complete| whether each
 * one's /config also holds the whole mesh directory (an entry for each pod). */
static bool all_ready(bool *out_complete)
{
    char buf[4096], want[64];
    snprintf(want, sizeof(want), "\"directory_entries\":%zu,", mesh.num_pods);
    bool ready = true;
    *out_complete = true;
    for (size_t i = 0; i < mesh.num_pods; i++) {
        ready = ready &&
                mesh_admin(&mesh, (enum mesh_pod_id)i, "GET", "/ready", buf, sizeof(buf)) == 200;
        *out_complete =
            *out_complete &&
            mesh_admin(&mesh, (enum mesh_pod_id)i, "GET", "/config", buf, sizeof(buf)) == 200 &&
            strstr(buf, want) != NULL;
    }
    return ready;
}

Test(e2e_restart, an_agent_restart_leaves_a_live_connection_be_and_the_proxies_reconnect)
{
    converse(MESH_POD_A, "converse-a.out", "go-a");
    double before = streams();
    cr_assert_geq(before, (double)mesh.num_pods, "each proxy watches the agent: %g", before);
    char err[512];
    cr_assert_eq(mesh_agent_restart(&mesh, 20000, err, sizeof(err)), WEFT_OK, "%s", err);
    /* the proxies reconnect: ready again, with the whole directory, and as many streams as
     * before; and at no moment ready with a directory missing pods (an app's call then would
     * have gone out as plain TCP: the agent holds its first claims report after a start, so
     * the CA keeps the node's entries while the proxies claim them again) */
    time_t t0 = time(NULL);
    bool complete = false, ready;
    int ready_incomplete = 0; /* looks at which every proxy was ready, one without the directory */
    while (!((ready = all_ready(&complete)) && complete && streams() == before)) {
        ready_incomplete += ready && !complete;
        cr_assert_lt(time(NULL) - t0, 30,
                     "30 s after the agent's restart: ready %d, directory complete %d, %g streams "
                     "of %g; see %s",
                     ready, complete, streams(), before, mesh.agent.log);
        usleep(50 * 1000);
    }
    cr_assert_eq(ready_incomplete, 0,
                 "%d looks found every proxy ready with a directory missing pods (calls then go "
                 "out as plain TCP)",
                 ready_incomplete);
    /* the live connection did not notice */
    go_on("converse-a.out", "go-a");
    const char *line[] = {"direction=inbound src=" MESH_IP_A, "peer=" MESH_ID_A " decision=allow",
                          "bytes_in=6 bytes_out=6", "close=done", NULL};
    cr_assert_eq(mesh_wait_file_line(mesh.pods[MESH_POD_B].log, line, 10000), WEFT_OK, "see %s",
                 mesh.pods[MESH_POD_B].log);
    /* and new calls pass, from both callers */
    cr_assert(strstr(call(MESH_POD_A), "got new") != NULL, "see %s", mesh.pods[0].log);
    cr_assert(strstr(call(MESH_POD_C), "got new") != NULL, "see %s", mesh.pods[2].log);
}

Test(e2e_restart, a_restarted_proxy_drains_comes_back_ready_and_leaves_other_pods_be)
{
    converse(MESH_POD_C, "converse-c.out", "go-c");
    cr_assert(strstr(call(MESH_POD_A), "got new") != NULL, "before the restart");
    /* SIGTERM: pod A's proxy drains (--drain-s 3) and exits 0 */
    int status = -1;
    cr_assert_eq(mesh_proxy_stop(&mesh, MESH_POD_A, SIGTERM, 15000, &status), WEFT_OK,
                 "proxy A still runs 15 s after SIGTERM; see %s", mesh.pods[0].log);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "proxy A's exit status %#x", status);
    cr_assert(mesh_file_has(mesh.pods[0].log, "weft-proxy draining"), "see %s", mesh.pods[0].log);
    cr_assert(mesh_file_has(mesh.pods[0].log, "weft-proxy stopped"), "see %s", mesh.pods[0].log);
    /* started again: ready, with the whole directory, and serving A's new connections */
    char err[512];
    cr_assert_eq(mesh_proxy_start(&mesh, MESH_POD_A, extra_a, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    cr_assert_eq(
        mesh_proxy_wait_ready(&mesh, MESH_POD_A, (int)mesh.num_pods, 30000, err, sizeof(err)),
        WEFT_OK, "%s", err);
    const char *out = call(MESH_POD_A);
    cr_assert(strstr(out, "got new") != NULL, "after the restart: %s (see %s)", out,
              mesh.pods[0].log);
    /* the connection from pod C through proxies C and B went on all along */
    go_on("converse-c.out", "go-c");
    const char *line[] = {"direction=inbound src=" MESH_IP_C, "peer=" MESH_ID_C " decision=allow",
                          "bytes_in=6 bytes_out=6", "close=done", NULL};
    cr_assert_eq(mesh_wait_file_line(mesh.pods[MESH_POD_B].log, line, 10000), WEFT_OK, "see %s",
                 mesh.pods[MESH_POD_B].log);
    cr_assert_eq(mesh_file_count(mesh_path(&mesh, "app.out"), "accepted"), 3,
                 "C's conversation and A's two calls");
}
