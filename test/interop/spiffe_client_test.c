/* test/interop/spiffe_client_test.c: an independent SPIFFE Workload API client against a real
 * weft-agent. The client is spiffe_client.js: node with @grpc/grpc-js (a gRPC and HTTP/2 stack
 * in JavaScript, nothing shared with the gRPC core weft uses), the standard's proto loaded by
 * @grpc/proto-loader, and node's own crypto for every check. It runs as a workload under a uid
 * of its own, against weft-ca and weft-agent started here, and must pass every check; run with
 * a wrong expected ID, or as a uid with no entry, it must fail.
 *
 * node comes from Debian (or any node on PATH) and node_modules from `npm ci` in test/interop,
 * both done by tools/install-deps.sh --test: the test never reaches the network. node_modules
 * is found beside the real path of the client script (the runfiles are symlinks into the
 * source tree), copied with the script and the proto into the CA's directory, which the
 * client's uid may read, and removed with it. Without node or node_modules the test fails. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"

#define CLIENT_JS "test/interop/spiffe_client.js"
#define WORKLOAD_PROTO "proto/workload.proto"
#define LOCKFILE "test/interop/package-lock.json"
#define CLIENT_UID (geteuid() == 0 ? 4242u : (unsigned)geteuid()) /* it has an entry */
#define STRANGER_UID 4343u
#define CLIENT_ID "spiffe://" CA_PROC_TD "/ns/interop/sa/node-client"
#define INSTALL_HINT "run tools/install-deps.sh --test (it installs node and runs npm ci)"

/* The client's JWT-SVID profile checks (FetchJWTSVID, FetchJWTBundles, the token's signature
 * against the JWKS, ValidateJWTSVID, an empty audience refused) run with --jwt AUDIENCE. */
#define CLIENT_JWT_ARGS "--jwt interop-audience"

static struct ca_proc ca;
static struct agent_proc agent;
static char node[PATH_MAX];
static char work[160]; /* the client's copy: script, proto and node_modules */

/* find_node looks for an executable node on PATH, then in the usual places. */
static bool find_node(void)
{
    const char *env = getenv("PATH");
    char paths[4096];
    snprintf(paths, sizeof(paths), "%s:/usr/bin:/usr/local/bin", env != NULL ? env : "");
    char *save = NULL;
    for (char *d = strtok_r(paths, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(node, sizeof(node), "%.4000s/node", d);
        if (d[0] == '/' && access(node, X_OK) == 0) {
            return true;
        }
    }
    node[0] = '\0';
    return false;
}

/* cp runs `cp FLAGS FROM TO/` (the paths have no quote: mkdtemp's and the source tree's). */
static int cp(const char *flags, const char *from, const char *to)
{
    char cmd[2 * PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "cp %s '%s' '%s/'", flags, from, to);
    return system(cmd);
}

static char js[PATH_MAX], proto[PATH_MAX], mods[PATH_MAX + 16];

/* find_client finds the script, the proto and the installed node_modules: the real one beside
 * the script in the source tree (the runfiles are symlinks to it). */
static void find_client(void)
{
    char dir[PATH_MAX], lock[PATH_MAX], probe[PATH_MAX + 64];
    cr_assert_not_null(realpath(CLIENT_JS, js), "%s: not in the runfiles", CLIENT_JS);
    cr_assert_not_null(realpath(WORKLOAD_PROTO, proto), "%s: not in the runfiles", WORKLOAD_PROTO);
    cr_assert_not_null(realpath(LOCKFILE, lock), "%s: not in the runfiles", LOCKFILE);
    memcpy(dir, js, sizeof(dir));
    snprintf(mods, sizeof(mods), "%s/node_modules", dirname(dir));
    const char *need[] = {"@grpc/grpc-js/package.json", "@grpc/proto-loader/package.json"};
    for (size_t i = 0; i < nitems(need); i++) {
        snprintf(probe, sizeof(probe), "%s/%s", mods, need[i]);
        cr_assert_eq(access(probe, R_OK), 0, "%s is missing: %s", probe, INSTALL_HINT);
    }
    /* npm writes node_modules/.package-lock.json: older than the lockfile is a stale install */
    struct stat mst, lst;
    snprintf(probe, sizeof(probe), "%s/.package-lock.json", mods);
    cr_assert_eq(stat(probe, &mst), 0, "%s is missing: %s", probe, INSTALL_HINT);
    cr_assert_eq(stat(lock, &lst), 0);
    cr_assert_geq(mst.st_mtime, lst.st_mtime, "%s is older than %s: %s", mods, lock, INSTALL_HINT);
}

/* copy_client copies them where the client's uid may read them, in the CA's directory. */
static bool copy_client(void)
{
    snprintf(work, sizeof(work), "%s/interop", ca.dir);
    char perms[256];
    snprintf(perms, sizeof(perms), "chmod -R a+rX '%s'", work);
    return mkdir(work, 0755) == 0 && cp("", js, work) == 0 && cp("", proto, work) == 0 &&
           cp("-R", mods, work) == 0 && system(perms) == 0;
}

static void teardown(void)
{
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca); /* the CA's directory, the client's copy included */
    grpc_shutdown();
}

/* dump copies |path| to stderr (the test log): the directory goes with the teardown. */
static void dump(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    fprintf(stderr, "--- %s\n", path);
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        fputs(line, stderr);
    }
    fclose(f);
}

static void setup(void)
{
    grpc_init();
    /* what may be missing is looked for first, before there is anything to clean up */
    cr_assert(find_node(), "no node on PATH (%s) nor in /usr/bin, /usr/local/bin: %s",
              getenv("PATH"), INSTALL_HINT);
    find_client();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    struct rpc_status st = {0};
    const char *step = "the CA did not start";
    bool ok = ca_proc_start(&ca, "1h") == WEFT_OK;
    ok = ok && (step = "no join token", agent_proc_init(&agent, &ca) == WEFT_OK);
    ok = ok && (step = "CreateEntry", agent_proc_entry(&ca, CLIENT_ID, CLIENT_UID, &st) == WEFT_OK);
    ok = ok && (step = "the agent did not start", agent_proc_start(&agent, true) == WEFT_OK);
    ok = ok && (step = "the agent never held the SVID",
                agent_proc_wait_served(&agent, 1, 20000) == WEFT_OK);
    ok = ok && (step = "cannot copy the client", copy_client());
    if (!ok) {
        char log[128];
        snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
        dump(log);
        dump(agent.log);
        teardown(); /* Criterion runs no .fini after a failed .init */
        cr_assert_fail("setup: %s %s (the logs are above)", step, st.details);
    }
}

/* Every run of the client is bounded (its own --timeout-ms, and 45 s here), well inside this. */
TestSuite(interop, .init = setup, .fini = teardown, .timeout = 120);

/* run_client runs the client as |uid| expecting |id|; returns its exit code (-1: killed) and
 * its output (stdout and stderr) in |out|, which goes to the test log too. */
static int run_client(unsigned uid, const char *id, char *out, size_t out_len)
{
    char cmd[PATH_MAX + 1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && exec %s %s/spiffe_client.js --socket %s --id %s --proto %s "
             "--timeout-ms 30000 %s 2>&1",
             work, node, work, agent.sock, id, work, CLIENT_JWT_ARGS);
    int status = 0;
    int rc = agent_proc_run(uid, cmd, false, 45000, out, out_len, &status);
    fprintf(stderr, "--- %s (uid %u)\n%s--- end\n", cmd, uid, out);
    cr_assert_eq(rc, WEFT_OK, "the client did not finish within 45 s");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

Test(interop, an_independent_client_fetches_and_validates_the_svid_and_bundles)
{
    static char out[65536];
    int code = run_client(CLIENT_UID, CLIENT_ID, out, sizeof(out));
    cr_assert_eq(code, 0, "the client failed (exit %d); its output is in the log", code);
    cr_assert_eq(count(out, "FAIL "), 0);
    static const char *const want[] = {
        "ok   FetchX509SVID answers with the header\n",
        "ok   x509: spiffe_id is " CLIENT_ID "\n",
        "ok   x509: the leaf has exactly one URI SAN, the spiffe_id\n",
        "ok   x509: the leaf is not a CA\n",
        "ok   x509: the leaf verifies up to a certificate of the bundle\n",
        "ok   x509: a leaf with a changed signature does not verify (the check can fail)\n",
        "ok   x509: x509_svid_key is a PKCS#8 key that matches the leaf\n",
        "ok   x509 bundles: spiffe://" CA_PROC_TD " is there and its certificates parse\n",
        "ok   FetchX509SVID without the header: INVALID_ARGUMENT\n",
        "ok   FetchX509Bundles without the header: INVALID_ARGUMENT\n",
    };
    for (size_t i = 0; i < nitems(want); i++) {
        cr_assert_not_null(strstr(out, want[i]), "no line: %s", want[i]);
    }
    cr_assert_geq(count(out, "\nok   ") + (strncmp(out, "ok   ", 5) == 0), 15, "every check ran");
    cr_assert_not_null(strstr(out, "checks, 0 failed\n"));
}

Test(interop, the_client_fails_when_the_svid_is_not_the_one_expected)
{
    static char out[65536];
    int code = run_client(CLIENT_UID, "spiffe://" CA_PROC_TD "/ns/interop/sa/someone-else", out,
                          sizeof(out));
    cr_assert_eq(code, 1, "exit %d", code);
    cr_assert_not_null(strstr(out, "FAIL x509: spiffe_id is spiffe://" CA_PROC_TD
                                   "/ns/interop/sa/someone-else: got \"" CLIENT_ID "\"\n"));
    cr_assert_null(strstr(out, "FAIL x509: the leaf has exactly one URI SAN"),
                   "the URI SAN still matches the spiffe_id it came with");
}

Test(interop, the_client_fails_for_a_workload_with_no_entry)
{
    if (geteuid() != 0) {
        cr_skip_test("needs root to run the client as another uid");
    }
    static char out[65536];
    int code = run_client(STRANGER_UID, CLIENT_ID, out, sizeof(out));
    cr_assert_eq(code, 1, "exit %d", code);
    cr_assert_not_null(strstr(out, "FAIL FetchX509SVID answers with the header: status 7 "),
                       "PERMISSION_DENIED");
}
