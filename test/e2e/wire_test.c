/* test/e2e/wire_test.c: issue 7's scenario 1, the part no other suite covers: what crosses the
 * wire between two pods (test/testlib/mesh.h) is TLS 1.3. tcpdump (Debian's), started in pod
 * B's namespace on its veth and bounded by a packet count, captures an allowed call from pod
 * A's app to pod B's app; the connection on the wire is a ClientHello, a ServerHello selecting
 * TLS 1.3, then application-data records only (content type 23) each way, and the marker the
 * app sent and got back is nowhere in the capture; the app sees the connection from the pod's
 * own address. Needs root; everything made here goes in the teardown, failure or not. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test/e2e/wire.h"
#include "test/testlib/mesh_criterion.h"

#define MARKER "weft-e2e-marker-7f3a91c2" /* the app's payload */

static struct mesh mesh;

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: server-allow-client, namespace: demo}\n"
                             "spec:\n"
                             "  selector: {serviceAccounts: [server]}\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"" MESH_ID_A "\"]}]\n"
                             "      to: [{ports: [\"8080\"]}]\n";

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {.policy_yaml = policy, .runfiles = {"proxy/mesh_app", NULL}};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, NULL, NULL, err, sizeof(err)) != WEFT_OK ||
        mesh_serve(&mesh, MESH_POD_B, "serve", MESH_IP_B, "8080", "app.out", err, sizeof(err)) !=
            WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(e2e_wire, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e_wire, an_allowed_call_crosses_the_wire_as_tls_13_and_its_payload_is_not_visible)
{
    const char *pcap = mesh_path(&mesh, "b.pcap");
    const char *log = mesh_path(&mesh, "tcpdump.log");
    /* --immediate-mode and -U: each packet read and written as it comes (else a SIGINT finds
     * them still in the kernel's buffer: "0 packets captured"); -c: a bound, whatever happens;
     * -Z root: it writes as root into the run directory */
    const char *argv[] = {"tcpdump", "-i", mesh.pods[MESH_POD_B].veth,
                          "-n",      "-U", "--immediate-mode",
                          "-s",      "0",  "-c",
                          "2000",    "-Z", "root",
                          "-w",      pcap, "tcp port 8080",
                          NULL};
    pid_t dump;
    cr_assert_eq(mesh_spawn(&mesh, MESH_POD_B, 0, log, argv, &dump), WEFT_OK);
    cr_assert_eq(mesh_wait_file_has(log, "listening on", 10000), WEFT_OK,
                 "tcpdump did not start (is Debian's tcpdump installed?); see %s", log);

    char out[512];
    const char *call[] = {mesh_bin(&mesh, "mesh_app"), "call", MESH_IP_B, "8080", MARKER, NULL};
    int status;
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, MESH_UID_APP, call, 30000, out, sizeof(out), &status),
                 WEFT_OK);
    cr_assert(strstr(out, "got " MARKER) != NULL, "%s (see %s, %s)", out, mesh.pods[0].log,
              mesh.pods[1].log);
    /* the app saw the connection from its own pod's address (proxy B dialled it there) */
    cr_assert(mesh_file_has(mesh_path(&mesh, "app.out"), "accepted " MESH_IP_B),
              "the app sees the pod's own address; see %s", mesh_path(&mesh, "app.out"));
    /* the connection's last packets (FIN, ACK) have left when proxy B logs its close */
    cr_assert_eq(mesh_wait_file_has(mesh.pods[MESH_POD_B].log, "direction=inbound", 10000),
                 WEFT_OK);
    usleep(500 * 1000);
    cr_assert_eq(mesh_kill(&mesh, dump, SIGINT, 10000, NULL), WEFT_OK, "tcpdump did not stop");

    struct wire_conn c;
    int rc = wire_conn_read(&c, pcap, 8080);
    cr_assert_eq(rc, WEFT_OK, "no connection to 8080 in %s: %s", pcap, weft_strerror(rc));
    cr_assert_gt(c.to_server_len, 0);
    cr_assert_gt(c.to_client_len, 0);
    cr_assert(!memmem(c.to_server, c.to_server_len, MARKER, strlen(MARKER)) &&
                  !memmem(c.to_client, c.to_client_len, MARKER, strlen(MARKER)),
              "the app's payload is readable on the wire");
    struct wire_tls up, down;
    wire_tls_scan(&up, c.to_server, c.to_server_len);
    wire_tls_scan(&down, c.to_client, c.to_client_len);
    size_t up_len = c.to_server_len, down_len = c.to_client_len;
    wire_conn_cleanup(&c);
    cr_assert(up.whole && down.whole, "%zu and %zu bytes that are not whole TLS records", up_len,
              down_len);
    cr_assert(up.version_ok && down.version_ok, "a record header with another version");
    /* RFC 8446: the hellos are the only plaintext handshake records; all else, the server's
     * certificate included, is encrypted as application data */
    cr_assert_eq(up.first_hs_type, 1, "the client's first record is not a ClientHello");
    cr_assert_eq(down.first_hs_type, 2, "the server's first record is not a ServerHello");
    cr_assert_eq(down.selected, 0x0304, "the ServerHello selects %#x, not TLS 1.3", down.selected);
    cr_assert_eq(up.num_handshake, 1, "%zu plaintext handshake records from the client",
                 up.num_handshake);
    cr_assert_eq(down.num_handshake, 1, "%zu plaintext handshake records from the server",
                 down.num_handshake);
    cr_assert_eq(up.num_other + down.num_other, 0, "records of another content type");
    /* the client's Finished and the app's payload; the server's flight and the echo */
    cr_assert_geq(up.num_app_data, 2, "%zu application-data records from the client",
                  up.num_app_data);
    cr_assert_geq(down.num_app_data, 2, "%zu application-data records from the server",
                  down.num_app_data);
    /* and not anywhere else in the capture either (another connection, a header) */
    cr_assert(!mesh_file_has(pcap, MARKER), "the marker is in %s", pcap);
}
