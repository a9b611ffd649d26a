/* test/integration/agent_config_test.c: what a sidecar proxy and a JWT-using workload get from
 * a real weft-agent joined to a real weft-ca (issue 5, "Proxy config stream" and the JWT-SVID
 * profile), through the wlapi_fetch client:
 *   - a workload in a network namespace of its own claims its address and a foreign one: the
 *     first is accepted, reported to the CA and comes back in the directory of its own config
 *     stream; the second is refused with the reason; the config carries the policy compiled
 *     from the CA's policy directory;
 *   - a workload in the node's network namespace may claim nothing;
 *   - a JWT-SVID minted by the CA through the agent validates against the JWKS the agent
 *     serves and through ValidateJWTSVID; a caller with no entry gets none.
 * Every process is stopped by its PID, even when an assertion fails. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "lib/base/file.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"

#define FETCH_BIN "test/integration/wlapi_fetch"
#define TD CA_PROC_TD
#define ME "spiffe://" TD "/ns/shop/sa/cart"
#define NOBODY_UID 4343

static struct ca_proc ca;
static struct agent_proc agent;
static char fetch_bin[160];
static char policy_dir[128];
static const char *ca_flags[2];

static const char policy[] = "apiVersion: security.weft.dev/v1alpha1\n"
                             "kind: AuthorizationPolicy\n"
                             "metadata: {name: cart-allow-web, namespace: shop}\n"
                             "spec:\n"
                             "  action: ALLOW\n"
                             "  rules:\n"
                             "    - from: [{principals: [\"spiffe://" TD "/ns/shop/sa/web\"]}]\n"
                             "      to: [{ports: [\"8080\"]}]\n";

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    snprintf(policy_dir, sizeof(policy_dir), "%s/policy", ca.dir);
    cr_assert_eq(mkdir(policy_dir, 0755), 0);
    char file[192];
    snprintf(file, sizeof(file), "%s/shop.yaml", policy_dir);
    cr_assert_eq(weft_file_write_atomic(file, policy, strlen(policy), 0644), WEFT_OK);
    ca_flags[0] = "--policy-dir";
    ca_flags[1] = policy_dir;
    ca.extra[0] = ca_flags[0];
    ca.extra[1] = ca_flags[1];
    chmod(ca.dir, 0755); /* the CA reads the policy as nobody */
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "see %s/ca.log", ca.dir);
    cr_assert_eq(agent_proc_init(&agent, &ca), WEFT_OK);
    cr_assert_eq(
        agent_proc_copy_runfile(&ca, FETCH_BIN, "wlapi_fetch", fetch_bin, sizeof(fetch_bin)),
        WEFT_OK);
    struct rpc_status st;
    cr_assert_eq(agent_proc_entry(&ca, ME, geteuid(), &st), WEFT_OK, "%s", st.details);
    agent.extra[0] = "--claim-cidr"; /* where the tests' namespaces have their addresses */
    agent.extra[1] = "198.18.0.0/15";
    cr_assert_eq(agent_proc_start(&agent, true), WEFT_OK);
    cr_assert_eq(agent_proc_wait_served(&agent, 1, 20000), WEFT_OK, "see %s", agent.log);
}

static void teardown(void)
{
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(agent_config, .init = setup, .fini = teardown, .timeout = 90);

/* run runs wlapi_fetch under |uid| with |args|; returns all it printed, and its exit status. */
static const char *run(unsigned uid, const char *args, int *exit_status)
{
    static char out[2048];
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s %s", fetch_bin, agent.sock, args);
    int status = -1;
    int rc = agent_proc_run(uid, cmd, false, 40000, out, sizeof(out), &status);
    cr_assert_eq(rc, WEFT_OK, "%s: did not end within 40 s; it printed: %s (agent log: %s)", cmd,
                 out, agent.log);
    *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
}

static long directory_size(void)
{
    Weft__Ca__V1__StatusRequest req = WEFT__CA__V1__STATUS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&ca, "Status", &req.base, &weft__ca__v1__status_response__descriptor,
                               &resp, &st),
                 WEFT_OK, "%s", st.details);
    long n = (long)((Weft__Ca__V1__StatusResponse *)resp)->directory_size;
    protobuf_c_message_free_unpacked(resp, NULL);
    return n;
}

Test(agent_config, a_proxy_claims_its_own_address_and_finds_it_in_the_directory)
{
    if (geteuid() != 0) {
        cr_skip_test("a network namespace of the workload's own needs root");
    }
    int ex;
    const char *out = run(0, "--netns 198.18.0.9 --proxy-config 198.18.0.9:8080,198.18.0.10", &ex);
    cr_assert_eq(ex, 0, "%s (agent log: %s)", out, agent.log);
    cr_assert(strstr(out, "status=0 id=" ME " ") != NULL, "%s", out);
    cr_assert(strstr(out, "198.18.0.9:8080:1") != NULL, "its own address is accepted: %s", out);
    cr_assert(strstr(out, "198.18.0.10:0:198.18.0.10 is not configured on an interface that is up "
                          "in the caller's network namespace") != NULL,
              "another is refused, with the reason: %s", out);
    cr_assert(strstr(out, "listed=1") != NULL, "%s", out);
    cr_assert(strstr(out, "policy_bytes=0 ") == NULL, "the policy is compiled: %s", out);
    /* the stream ended with the client: its claims leave the directory */
    long n = directory_size();
    for (int i = 0; i < 100 && n != 0; i++) {
        usleep(100 * 1000);
        n = directory_size();
    }
    cr_assert_eq(n, 0, "the claim is withdrawn once its proxy is gone");
}

Test(agent_config, a_workload_in_the_nodes_network_namespace_claims_nothing)
{
    int ex;
    const char *out = run(0, "--proxy-config 198.18.0.9 --messages 1", &ex);
    cr_assert_eq(ex, 0, "a config (with no accepted claim to look for): %s", out);
    cr_assert(strstr(out, "status=0 id=" ME " ") != NULL, "%s", out);
    cr_assert(strstr(out, "198.18.0.9:0:the caller runs in the node's network namespace") != NULL,
              "%s", out);
    char metrics[65536];
    cr_assert_eq(agent_proc_http(&agent, "/metrics", metrics, sizeof(metrics)), 200);
    cr_assert_eq(agent_proc_metric(metrics, "weft_agent_directory_claims_refused_total", -1), 1);
    cr_assert_eq(agent_proc_metric(metrics, "weft_agent_directory_claims_accepted_total", -1), 0,
                 "nothing went to the CA's directory");
}

Test(agent_config, nobody_gets_an_identity_it_does_not_hold)
{
    int ex;
    const char *out = run(0, "--jwt db --id spiffe://" TD "/ns/shop/sa/other", &ex);
    cr_assert(strstr(out, "status=7 ") != NULL, "a JWT-SVID for another's ID: %s", out);
    out = run(0, "--proxy-config 198.18.0.9 --id spiffe://" TD "/ns/shop/sa/other", &ex);
    cr_assert(strstr(out, "status=7 ") != NULL, "a proxy config for another's ID: %s", out);
}

Test(agent_config, a_jwt_svid_validates_here_and_through_the_agent)
{
    int ex;
    const char *out = run(0, "--jwt db", &ex);
    cr_assert_eq(ex, 0, "%s (agent log: %s; CA log: %s/ca.log)", out, agent.log, ca.dir);
    cr_assert(strstr(out, "status=0 id=" ME " local=1 agent=" ME) != NULL, "%s", out);
    out = run(NOBODY_UID, "--jwt db", &ex);
    cr_assert_neq(ex, 0);
    cr_assert(strstr(out, "status=7 ") != NULL, "no entry, no token: %s", out);
}
