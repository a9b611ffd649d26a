/* test/e2e/cut_test.c: issue 7's scenarios 6 and 7, the parts the suites in proxy/ leave out,
 * through two pods on a real mesh (test/testlib/mesh.h):
 *   - `weftctl revoke --id` (the CLI an operator runs, against the CA's admin socket) of the
 *     caller cuts its live connection and refuses its new ones within a few seconds;
 *   - a new DENY policy cuts the established connection it forbids and leaves another
 *     established connection of the same caller (a port it does not name) alone, which still
 *     echoes afterwards.
 * Needs root; everything made here goes in the teardown, failure or not. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/file.h"
#include "test/testlib/mesh_criterion.h"

#define CLIENT MESH_ID_A
#define SERVER MESH_ID_B

static struct mesh mesh;
static char log_a[160], log_b[160];

#define ALLOW_POLICY                                                                               \
    "apiVersion: security.weft.dev/v1alpha1\n"                                                     \
    "kind: AuthorizationPolicy\n"                                                                  \
    "metadata: {name: server-allow-client, namespace: demo}\n"                                     \
    "spec:\n"                                                                                      \
    "  selector: {serviceAccounts: [server]}\n"                                                    \
    "  action: ALLOW\n"                                                                            \
    "  rules:\n"                                                                                   \
    "    - from: [{principals: [\"" CLIENT "\"]}]\n"                                               \
    "      to: [{ports: [\"8080\", \"8081\"]}]\n"

/* the same, and a DENY of the client on 8080 only */
#define DENY_8080_POLICY                                                                           \
    ALLOW_POLICY "---\n"                                                                           \
                 "apiVersion: security.weft.dev/v1alpha1\n"                                        \
                 "kind: AuthorizationPolicy\n"                                                     \
                 "metadata: {name: server-deny-client-8080, namespace: demo}\n"                    \
                 "spec:\n"                                                                         \
                 "  selector: {serviceAccounts: [server]}\n"                                       \
                 "  action: DENY\n"                                                                \
                 "  rules:\n"                                                                      \
                 "    - from: [{principals: [\"" CLIENT "\"]}]\n"                                  \
                 "      to: [{ports: [\"8080\"]}]\n"

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {.policy_yaml = ALLOW_POLICY, .runfiles = {"proxy/mesh_app", NULL}};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, NULL, NULL, err, sizeof(err)) != WEFT_OK ||
        mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8080", "app-8080.out", err,
                   sizeof(err)) != WEFT_OK ||
        mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8081", "app-8081.out", err,
                   sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    snprintf(log_a, sizeof(log_a), "%s", mesh.pods[MESH_POD_A].log);
    snprintf(log_b, sizeof(log_b), "%s", mesh.pods[MESH_POD_B].log);
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(e2e_cut, .init = setup, .fini = teardown, .timeout = 120);

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* spawn_app starts mesh_app |argv| in pod A as the app, its output in the run directory's |out|,
 * and waits for |ready| there. */
static void spawn_app(const char *out, const char *const *argv, const char *ready)
{
    pid_t pid;
    cr_assert_eq(mesh_spawn(&mesh, MESH_POD_A, MESH_UID_APP, mesh_path(&mesh, out), argv, &pid),
                 WEFT_OK);
    mesh_cr_wait_file_has(mesh_path(&mesh, out), ready, 20000);
}

/* hold holds a connection from pod A's app to pod B's |port| (at most 60 s). */
static void hold(const char *port, const char *out)
{
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "hold", MESH_IP_B, port, "60", NULL};
    spawn_app(out, argv, "got held");
}

/* call makes one call from pod A's app to pod B's |port|; returns mesh_app's output. */
static const char *call(const char *port)
{
    static char out[512];
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, port, "again", NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, MESH_UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    return out;
}

/* closed_after returns the N of "closed after N s" in |out|, or -1. */
static long closed_after(const char *out)
{
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, mesh_path(&mesh, out), 4096) != WEFT_OK) {
        return -1;
    }
    const char *at = strstr((const char *)text, "closed after ");
    long secs = at != NULL ? strtol(at + strlen("closed after "), NULL, 10) : -1;
    free(text);
    return secs;
}

Test(e2e_cut, weftctl_revoke_of_the_caller_cuts_its_live_connection_and_refuses_new_ones)
{
    hold("8080", "hold.out");
    cr_assert(strstr(call("8080"), "got again") != NULL, "a second connection before");
    /* the operator's command, against the CA's admin socket */
    char cmd[512], out[1024];
    snprintf(cmd, sizeof(cmd), "%s revoke --id %s --socket %s 2>&1", mesh_bin(&mesh, "weftctl"),
             CLIENT, mesh.ca.sock);
    int status;
    double t0 = mono();
    cr_assert_eq(agent_proc_run(0, cmd, false, 20000, out, sizeof(out), &status), WEFT_OK, "%s",
                 out);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "weftctl revoke: status %#x: %s",
              status, out);
    /* the live connection is cut... */
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "closed after", 20000);
    double cut = mono() - t0;
    cr_assert_leq(cut, 10.0, "the live connection was cut %.1f s after the revocation", cut);
    cr_assert_geq(closed_after("hold.out"), 0);
    mesh_cr_wait_file_has(log_b, "close=\"peer revoked\"", 10000);
    /* ...and within a few seconds a new one is refused before the app (already when the cut
     * came: both proxies act on the same deny list) */
    const char *got = "";
    int tries = 0;
    while (mono() - t0 < 10.0 && strstr(got = call("8080"), "got again") != NULL) {
        tries++;
        usleep(250 * 1000);
    }
    double refused = mono() - t0;
    cr_assert(strstr(got, "got again") == NULL,
              "a new connection of the revoked caller still passes %.1f s after the revocation",
              refused);
    cr_assert_leq(refused, 10.0);
    cr_assert_eq(mesh_file_count(mesh_path(&mesh, "app-8080.out"), "accepted"), 2 + (size_t)tries,
                 "the refused call reached the app");
    fprintf(stderr, "revoked: live connection cut after %.1f s, new ones refused after %.1f s\n",
            cut, refused);
}

Test(e2e_cut, a_new_deny_policy_cuts_the_connection_it_forbids_and_leaves_another_alone)
{
    hold("8080", "hold-8080.out");
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "converse", MESH_IP_B, "8081",
                          mesh_path(&mesh, "go-on"),   NULL};
    spawn_app("converse-8081.out", argv, "got one");
    cr_assert_eq(mesh_policy_write(&mesh, DENY_8080_POLICY), WEFT_OK);
    double t0 = mono();
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold-8080.out"), "closed after", 20000);
    double cut = mono() - t0;
    const char *denied[] = {"dst=" MESH_IP_B ":8080 peer=" CLIENT " decision=deny",
                            "policy=demo/server-deny-client-8080 rule=0 reason=deny-matched",
                            "close=\"policy now denies\"", NULL};
    cr_assert_eq(mesh_wait_file_line(log_b, denied, 10000), WEFT_OK, "see %s", log_b);
    /* the other connection of the same caller, on a port the DENY does not name, is intact */
    usleep(2000 * 1000); /* two more re-checks of the live connections */
    cr_assert(!mesh_file_has(mesh_path(&mesh, "converse-8081.out"), "closed"),
              "the 8081 connection was closed");
    int fd = open(mesh_path(&mesh, "go-on"), O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    mesh_cr_wait_file_has(mesh_path(&mesh, "converse-8081.out"), "closed", 20000);
    cr_assert(mesh_file_has(mesh_path(&mesh, "converse-8081.out"), "got two"),
              "the 8081 connection no longer echoes");
    const char *kept[] = {"dst=" MESH_IP_B ":8081 peer=" CLIENT " decision=allow",
                          "policy=demo/server-allow-client", "close=done", NULL};
    cr_assert_eq(mesh_wait_file_line(log_b, kept, 10000), WEFT_OK, "see %s", log_b);
    /* and new connections follow the new policy */
    cr_assert(strstr(call("8080"), "got again") == NULL, "8080 is denied now");
    cr_assert(strstr(call("8081"), "got again") != NULL, "8081 is still allowed");
    fprintf(stderr, "the DENY cut the 8080 connection %.1f s after the policy was written\n", cut);
}
