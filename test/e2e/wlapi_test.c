/* test/e2e/wlapi_test.c: issue 7's scenario 10: the Workload API is usable inside a pod by a
 * client that is not weft's: wlapi_client.py (Debian's python3 with python3-grpcio and
 * python3-protobuf, its stubs generated at test time by python3-grpc-tools from the public
 * proto/workload.proto) runs in pod A's network namespace as pod A's proxy uid, fetches an
 * X.509 SVID from the real agent and checks its SPIFFE ID, in the response and in the
 * certificate; the serial it read is the one pod A's proxy uses. A uid with no entry gets no
 * identity. Needs root. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test/testlib/mesh_criterion.h"

#define PYTHON "/usr/bin/python3" /* Debian's, where its python3-grpcio is (not a pyenv shim) */

static struct mesh mesh;

static void setup(void)
{
    if (geteuid() != 0) {
        cr_skip_test("pods as network namespaces need root");
    }
    if (access(PYTHON, X_OK) != 0) {
        cr_skip_test(PYTHON " is not installed: run tools/install-deps.sh --test");
    }
    mesh_init(&mesh);
    struct mesh_opts o = {.runfiles = {"test/e2e/wlapi_client.py", "proto/workload.proto", NULL}};
    char err[512];
    if (mesh_start(&mesh, &o, err, sizeof(err)) != WEFT_OK ||
        mesh_proxies_start(&mesh, NULL, NULL, err, sizeof(err)) != WEFT_OK) {
        mesh_cr_fail_setup(&mesh, err);
    }
}

static void teardown(void) { mesh_cleanup(&mesh); }

TestSuite(e2e_wlapi, .init = setup, .fini = teardown, .timeout = 120);

/* client runs the Python client in pod A as |uid|, expecting |id|; returns its output. */
static const char *client(unsigned uid, const char *id, int *status)
{
    static char out[1024];
    const char *argv[] = {PYTHON,
                          mesh_bin(&mesh, "wlapi_client.py"),
                          mesh.agent.sock,
                          mesh_bin(&mesh, "workload.proto"),
                          id,
                          NULL};
    cr_assert_eq(mesh_run(&mesh, MESH_POD_A, uid, argv, 60000, out, sizeof(out), status), WEFT_OK,
                 "the client did not end within 60 s: %s", out);
    return out;
}

/* lower_hex copies |in| into |out| in lower case, without leading zeros. */
static void lower_hex(char *out, size_t cap, const char *in)
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

Test(e2e_wlapi, a_python_grpc_client_in_a_pod_fetches_its_x509_svid_by_the_public_proto)
{
    int status;
    const char *out = client(MESH_UID_PROXY_A, MESH_ID_A, &status);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s (see %s)", status, out,
              mesh.agent.log);
    cr_assert(strncmp(out, "ok " MESH_ID_A " ", strlen("ok " MESH_ID_A " ")) == 0, "%s", out);
    /* the same SVID pod A's proxy holds (unless it was renewed in between: then the next) */
    char got[48], want[48];
    lower_hex(got, sizeof(got), out + strlen("ok " MESH_ID_A " "));
    struct mesh_certs c;
    cr_assert_eq(mesh_certs(&mesh, MESH_POD_A, &c), WEFT_OK);
    lower_hex(want, sizeof(want), c.serial);
    cr_assert_str_eq(got, want, "the client got serial %s, proxy A uses %s", got, want);
}

Test(e2e_wlapi, a_uid_with_no_entry_gets_no_identity)
{
    int status;
    const char *out = client(MESH_UID_APP, MESH_ID_A, &status);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x: %s", status, out);
    cr_assert(strstr(out, "fail: FetchX509SVID: StatusCode.PERMISSION_DENIED") != NULL, "%s", out);
}
