/* test/e2e/rotation_test.c: issue 7's scenario 5, rotation under load with a 30 s SVID TTL (the
 * CA's intermediates live 30 s and cap the SVIDs they sign: each proxy's SVID lives about 20 to
 * 25 s and is renewed every 10 s or so). A transfer (mesh_app stream: a known byte pattern,
 * every echoed byte checked) runs across two rotations, pod B's among them, and completes with
 * every byte echoed; then a new connection meets pod B's new SVID: a TLS client of our own
 * (Debian's openssl s_client, from pod A's proxy uid, which the rules leave uncaptured) is shown
 * pod B's /certs serial, not the one the transfer started with, and pod A's app's next call is a
 * full handshake (the client's metrics and access log), not a resumption of a session made with the
 * old certificates. The transfer is driven by mesh_stream_rotations (test/testlib/mesh.h), as
 * proxy/mesh_rotation_test.c's with 20 s SVIDs could be: a live connection is cut when the
 * certificates of its own handshake expire (by design), so "across two rotations" means two
 * rotations of either side within one handshake's lifetime. Needs root. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test/testlib/mesh_criterion.h"

#define CLIENT MESH_ID_A
#define SERVER MESH_ID_B
#define FULL "weft_proxy_handshakes_total{kind=\"full\"}"
#define RESUMED "weft_proxy_handshakes_total{kind=\"resumed\"}"

static struct mesh mesh;

static const char policy[] = MESH_POLICY_B_ALLOWS_A_8080;

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {
        .policy_yaml = policy, .svid_ttl = "30s", .runfiles = {"proxy/mesh_app", NULL}};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, NULL, NULL, err, sizeof(err)) != WEFT_OK ||
        mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8080", "app.out", err, sizeof(err)) !=
            WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(e2e_rotation, .init = setup, .fini = teardown, .timeout = 180);

/* normal copies the hex serial |in| into |out| in lower case, without leading zeros (openssl
 * writes upper case, /certs lower). */
static void normal(char *out, size_t cap, const char *in)
{
    while (*in == '0' && in[1] != '\0') {
        in++;
    }
    size_t i = 0;
    for (; in[i] != '\0' && in[i] != '\n' && i + 1 < cap; i++) {
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'F' ? in[i] - 'A' + 'a' : in[i]);
    }
    out[i] = '\0';
}

/* presented returns the serial of the certificate pod B's proxy presents to a new TLS connection
 * (ALPN weft/1, as a mesh client offers it) to its 8080, as |out|. */
static void presented(char *out, size_t cap)
{
    char text[4096];
    const char *argv[] = {"sh", "-c",
                          "openssl s_client -connect " MESH_IP_B
                          ":8080 -alpn weft/1 -tls1_3 </dev/null "
                          "2>/dev/null | openssl x509 -noout -serial",
                          NULL};
    int status;
    cr_assert_eq(
        mesh_run(&mesh, MESH_POD_A, MESH_UID_PROXY_A, argv, 20000, text, sizeof(text), &status),
        WEFT_OK);
    cr_assert(strncmp(text, "serial=", 7) == 0, "openssl s_client saw no certificate: \"%s\"",
              text);
    normal(out, cap, text + 7);
}

Test(e2e_rotation,
     a_transfer_completes_across_two_rotations_and_new_connections_meet_the_new_serial)
{
    struct mesh_stream s;
    char err[512];
    /* SVIDs of about 25 s, renewed 10 to 15 s into their life: starting when both have 18 s or
     * more left, two rotations (each side's, usually) come within the 16 s it may last */
    int rc = mesh_stream_rotations(&mesh, "8080", 18, 2, "stream.out", &s, err, sizeof(err));
    cr_assert_eq(rc, WEFT_OK, "%s", err);
    cr_assert(s.sent > 0 && s.echoed == s.sent, "sent %llu, echoed %llu", s.sent, s.echoed);
    cr_assert_lt(s.max_gap_ms, 5000, "the echo stalled for %lld ms", s.max_gap_ms);
    cr_assert(s.rotations[MESH_POD_B] >= 1 && s.rotations[0] + s.rotations[1] >= 2,
              "two rotations, the server's among them, during the %lld s the transfer could last "
              "(client %d, server %d)",
              s.seconds, s.rotations[MESH_POD_A], s.rotations[MESH_POD_B]);
    char bytes[80];
    snprintf(bytes, sizeof(bytes), "bytes_in=%llu bytes_out=%llu", s.sent, s.sent);
    const char *line[] = {"dst=" MESH_IP_B ":8080 peer=" CLIENT " decision=allow", bytes,
                          "close=done", NULL};
    cr_assert_eq(mesh_wait_file_line(mesh.pods[MESH_POD_B].log, line, 10000), WEFT_OK,
                 "the transfer's access line; see %s", mesh.pods[MESH_POD_B].log);
    fprintf(stderr, "transfer: %llu bytes each way over %lld s at most, rotations %d + %d\n",
            s.sent, s.seconds, s.rotations[0], s.rotations[1]);

    /* a new connection is shown pod B's serial of now (read before and after: a rotation may
     * come in between), which is not the one the transfer started with */
    char old[48], before[48], after[48], shown[48];
    struct mesh_certs c;
    normal(old, sizeof(old), s.start[MESH_POD_B].serial);
    cr_assert_eq(mesh_certs(&mesh, MESH_POD_B, &c), WEFT_OK);
    normal(before, sizeof(before), c.serial);
    presented(shown, sizeof(shown));
    cr_assert_eq(mesh_certs(&mesh, MESH_POD_B, &c), WEFT_OK);
    normal(after, sizeof(after), c.serial);
    cr_assert_str_neq(shown, old, "a new connection is shown the serial the transfer began with");
    cr_assert(strcmp(shown, before) == 0 || strcmp(shown, after) == 0,
              "shown serial %s, /certs says %s then %s", shown, before, after);

    /* the app's next call: a full handshake on both sides, the new credentials' (a rotation
     * replaces them, and their session tickets with them) */
    double full_a = mesh_metric(&mesh, MESH_POD_A, FULL, -1);
    double resumed_a = mesh_metric(&mesh, MESH_POD_A, RESUMED, -1);
    cr_assert(full_a >= 1 && resumed_a >= 0, "both series are in proxy A's /metrics");
    char out[512];
    const char *argv[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, "8080", "after", NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, MESH_UID_APP, argv, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    cr_assert(strstr(out, "got after") != NULL, "%s", out);
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_A, FULL, -1), full_a + 1, "a full handshake");
    cr_assert_eq(mesh_metric(&mesh, MESH_POD_A, RESUMED, -1), resumed_a, "no resumption");
    const char *call[] = {"direction=outbound",
                          "dst=" MESH_IP_B ":8080 peer=" SERVER,
                          "decision=allow",
                          "bytes_in=5 bytes_out=5",
                          "tls=TLSv1.3",
                          "resumed=no",
                          NULL};
    cr_assert_eq(mesh_wait_file_line(mesh.pods[MESH_POD_A].log, call, 10000), WEFT_OK,
                 "the call's access line in %s", mesh.pods[MESH_POD_A].log);
}
