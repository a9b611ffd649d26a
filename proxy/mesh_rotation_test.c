/* proxy/mesh_rotation_test.c: the mesh of mesh_test.c (two pods, two real weft-proxy processes,
 * test/testlib/mesh.h) with SVIDs that live about 20 s: the CA's intermediates live 20 s and
 * cap the SVIDs they sign, so the agent renews each proxy's SVID every 6 s or so, each valid for
 * 13 to 19 s from its issue. Here: a stream that keeps flowing across rotations of both proxies'
 * SVIDs is never cut by them, and a new connection after them is accepted; a session is resumed
 * by a second call, and no longer once the certificates it was made with have expired; a
 * connection that outlives its peer's certificate is cut (which is what bounds the stream: it
 * lasts while the certificates of its handshake are valid). Needs root. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test/testlib/mesh_criterion.h"

#define CLIENT MESH_ID_A
#define SERVER MESH_ID_B
#define UID_APP MESH_UID_APP

static struct mesh mesh;
static char log_a[160], log_b[160];

static const char policy[] = MESH_POLICY_B_ALLOWS_A_8080;

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {
        .policy_yaml = policy, .svid_ttl = "20s", .runfiles = {"proxy/mesh_app", NULL}};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, NULL, NULL, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
    snprintf(log_a, sizeof(log_a), "%s", mesh.pods[MESH_POD_A].log);
    snprintf(log_b, sizeof(log_b), "%s", mesh.pods[MESH_POD_B].log);
    if (mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8080", "app.out", err, sizeof(err)) !=
        WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

/* the same timeout as mesh_test's suite: a third distinct value makes Criterion leak at exit */
TestSuite(mesh_rotation, .init = setup, .fini = teardown, .timeout = 120);

struct certs {
    char serial[48];
    long long not_after;
};

/* certs reads pod |pod|'s /certs: the serial and notAfter of the SVID in use. */
static struct certs certs(enum mesh_pod_id pod)
{
    char buf[8192];
    struct certs c = {"", 0};
    cr_assert_eq(mesh_admin(&mesh, pod, "GET", "/certs", buf, sizeof(buf)), 200, "%s", buf);
    const char *s = strstr(buf, "\"serial\":\"");
    const char *na = strstr(buf, "\"not_after\":");
    cr_assert(s != NULL && na != NULL, "/certs names the serial and notAfter: %s", buf);
    s += strlen("\"serial\":\"");
    snprintf(c.serial, sizeof(c.serial), "%.*s", (int)strcspn(s, "\""), s);
    c.not_after = atoll(na + strlen("\"not_after\":"));
    cr_assert(c.serial[0] != '\0' && c.not_after > 0, "%s", buf);
    return c;
}

/* fresh waits (at most 20 s) until both proxies have rotated since it was called, so that the
 * certificates a handshake now uses have most of their life ahead; returns them. */
static void fresh(struct certs out[2])
{
    struct certs before[2] = {certs(MESH_POD_A), certs(MESH_POD_B)};
    for (int i = 0; i < 200; i++) {
        out[0] = certs(MESH_POD_A);
        out[1] = certs(MESH_POD_B);
        if (strcmp(out[0].serial, before[0].serial) != 0 &&
            strcmp(out[1].serial, before[1].serial) != 0) {
            return;
        }
        usleep(100 * 1000);
    }
    cr_assert_fail("the SVIDs did not rotate within 20 s; see %s, %s", log_a, log_b);
}

static long long min_ll(long long a, long long b) { return a < b ? a : b; }

/* lasting waits (at most 30 s) until both SVIDs in use stay valid |seconds| more (each proxy
 * renews its own SVID at 40-60 % of its life, and an SVID is capped at its intermediate's
 * notAfter, so their ends move on in steps); returns them. */
static void lasting(long long seconds, struct certs out[2])
{
    long long best = 0;
    for (int i = 0; i < 300; i++) {
        out[0] = certs(MESH_POD_A);
        out[1] = certs(MESH_POD_B);
        long long left = min_ll(out[0].not_after, out[1].not_after) - (long long)time(NULL);
        if (left >= seconds) {
            return;
        }
        best = left > best ? left : best;
        usleep(100 * 1000);
    }
    cr_assert_fail("in 30 s the SVIDs never had %lld s left at once (at best %lld); see %s, %s",
                   seconds, best, log_a, log_b);
}

/* call runs the client app in pod A against pod B's 8080; returns its output. */
static const char *call(void)
{
    static char out[512];
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, "8080", "hello", NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    return out;
}

Test(mesh_rotation, a_stream_flows_across_rotations_and_a_new_connection_is_accepted_after)
{
    /* the connection may last while the certificates of its handshake are valid (then the
     * expiry rule cuts it, see the last test): start when both have 10 s or more left, and
     * stream until two rotations have come and gone, or at most until 2 s before the first of
     * them expires */
    struct certs start[2];
    lasting(10, start);
    long long seconds = min_ll(start[0].not_after, start[1].not_after) - (long long)time(NULL) - 2;
    char s[24];
    snprintf(s, sizeof(s), "%lld", seconds);
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "stream", MESH_IP_B, "8080", s,
                          mesh_path(&mesh, "stop"),    NULL};
    pid_t pid;
    cr_assert_eq(mesh_spawn(&mesh, MESH_POD_A, UID_APP, mesh_path(&mesh, "stream.out"), argv, &pid),
                 WEFT_OK);
    mesh_cr_wait_file_has(mesh_path(&mesh, "stream.out"), "stream started", 10000);
    /* count the rotations while it flows; once there were two (the server's among them), let
     * it flow a second more on the new credentials, then stop it */
    struct certs last[2] = {start[0], start[1]};
    int rotations[2] = {0, 0};
    time_t give_up = time(NULL) + seconds + 20, stop_at = 0;
    while (!mesh_file_has(mesh_path(&mesh, "stream.out"), "stream done") &&
           !mesh_file_has(mesh_path(&mesh, "stream.out"), "stream broken") &&
           time(NULL) < give_up) {
        for (int pod = 0; pod < 2; pod++) {
            struct certs now = certs(pod);
            if (strcmp(now.serial, last[pod].serial) != 0) {
                rotations[pod]++;
                last[pod] = now;
            }
        }
        if (stop_at == 0 && rotations[MESH_POD_B] >= 1 && rotations[0] + rotations[1] >= 2) {
            stop_at = time(NULL) + 2;
        }
        if (stop_at != 0 && time(NULL) >= stop_at) {
            int fd = open(mesh_path(&mesh, "stop"), O_WRONLY | O_CREAT, 0644);
            cr_assert_geq(fd, 0);
            close(fd);
        }
        usleep(200 * 1000);
    }
    char out[512] = "";
    FILE *f = fopen(mesh_path(&mesh, "stream.out"), "r");
    cr_assert_not_null(f);
    while (fgets(out, sizeof(out), f) != NULL && strncmp(out, "stream started", 14) == 0) {
    }
    fclose(f);
    unsigned long long sent = 0, echoed = 0;
    long long gap = -1;
    cr_assert_eq(
        sscanf(out, "stream done sent=%llu echoed=%llu max_gap_ms=%lld", &sent, &echoed, &gap), 3,
        "the stream was not done within %lld s: \"%s\" (see %s, %s)", seconds + 20, out, log_a,
        log_b);
    cr_assert(sent > 0 && echoed == sent, "%s", out);
    cr_assert_lt(gap, 5000, "the echo stalled: %s", out);
    cr_assert(rotations[MESH_POD_B] >= 1 && rotations[0] + rotations[1] >= 2,
              "two rotations, the server's among them, during the %lld s the stream could last "
              "(client %d, server %d)",
              seconds, rotations[MESH_POD_A], rotations[MESH_POD_B]);
    /* the stream's own line: every byte each way, closed by its end, not by a rotation */
    char bytes[80];
    snprintf(bytes, sizeof(bytes), "bytes_in=%llu bytes_out=%llu", sent, sent);
    const char *line[] = {"dst=" MESH_IP_B ":8080 peer=" CLIENT " decision=allow", bytes,
                          "close=done", NULL};
    cr_assert_eq(mesh_wait_file_line(log_b, line, 10000), WEFT_OK, "see %s", log_b);
    /* a new connection, made with the rotated SVIDs, is accepted */
    const char *got = call();
    cr_assert(strstr(got, "got hello") != NULL, "%s (see %s, %s)", got, log_a, log_b);
}

#define FULL "weft_proxy_handshakes_total{kind=\"full\"}"
#define RESUMED "weft_proxy_handshakes_total{kind=\"resumed\"}"

struct counts {
    double full[2], resumed[2];
};

static struct counts counts(void)
{
    struct counts c;
    for (int pod = 0; pod < 2; pod++) {
        c.full[pod] = mesh_metric(&mesh, pod, FULL, -1);
        c.resumed[pod] = mesh_metric(&mesh, pod, RESUMED, -1);
        cr_assert(c.full[pod] >= 0 && c.resumed[pod] >= 0, "both series are in /metrics");
    }
    return c;
}

Test(mesh_rotation, a_session_resumes_until_the_certificates_it_was_made_with_expire)
{
    /* two calls between the same two SVIDs (a rotation replaces the credentials, and their
     * tickets with them: try again if one came between the calls) */
    struct certs made[2];
    struct counts c0, c1, c2;
    bool same = false;
    for (int attempt = 0; attempt < 3 && !same; attempt++) {
        fresh(made);
        c0 = counts();
        cr_assert(strstr(call(), "got hello") != NULL);
        c1 = counts();
        cr_assert(strstr(call(), "got hello") != NULL);
        c2 = counts();
        same = strcmp(certs(MESH_POD_A).serial, made[0].serial) == 0 &&
               strcmp(certs(MESH_POD_B).serial, made[1].serial) == 0;
    }
    cr_assert(same, "three tries, each cut by a rotation between two calls");
    for (int pod = 0; pod < 2; pod++) {
        cr_assert_eq(c1.full[pod], c0.full[pod] + 1, "pod %d: the first call is a full one", pod);
        cr_assert_eq(c1.resumed[pod], c0.resumed[pod]);
        cr_assert_eq(c2.resumed[pod], c1.resumed[pod] + 1, "pod %d: the second call resumed", pod);
        cr_assert_eq(c2.full[pod], c1.full[pod]);
    }
    /* once both certificates the session was made with have expired, only a full handshake */
    long long expired =
        made[0].not_after > made[1].not_after ? made[0].not_after : made[1].not_after;
    while ((long long)time(NULL) <= expired) {
        usleep(200 * 1000);
    }
    struct counts c3 = counts();
    cr_assert(strstr(call(), "got hello") != NULL);
    struct counts c4 = counts();
    for (int pod = 0; pod < 2; pod++) {
        cr_assert_eq(c4.full[pod], c3.full[pod] + 1, "pod %d: a full handshake after expiry", pod);
        cr_assert_eq(c4.resumed[pod], c3.resumed[pod], "pod %d: nothing resumed", pod);
    }
}

Test(mesh_rotation, a_connection_that_outlives_its_peers_certificate_is_cut)
{
    struct certs now[2] = {certs(MESH_POD_A), certs(MESH_POD_B)};
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "hold", MESH_IP_B, "8080", "60", NULL};
    pid_t pid;
    cr_assert_eq(mesh_spawn(&mesh, MESH_POD_A, UID_APP, mesh_path(&mesh, "hold.out"), argv, &pid),
                 WEFT_OK);
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "got held", 10000);
    /* the handshake used these certificates or newer ones: cut within seconds of the later
     * notAfter of the two (the live connections are checked every second) */
    long long by = (now[0].not_after > now[1].not_after ? now[0].not_after : now[1].not_after) +
                   20 - (long long)time(NULL);
    mesh_cr_wait_file_has(mesh_path(&mesh, "hold.out"), "closed after", (int)by * 1000);
    const char *cut[] = {"dst=" MESH_IP_B ":8080", "close=\"peer certificate expired\"", NULL};
    cr_assert(mesh_wait_file_line(log_a, cut, 5000) == WEFT_OK ||
                  mesh_wait_file_line(log_b, cut, 5000) == WEFT_OK,
              "the access log says why; see %s, %s", log_a, log_b);
}
