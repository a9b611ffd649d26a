/* proxy/agentclient_test.c: the proxy's agent client against real weft-ca and weft-agent
 * processes (the test process is the workload): not ready until both the SVID and the
 * configuration came, then a state whose SVID holds its key and verifies against its bundles;
 * an agent restart is ridden out with the state kept; the directory lookup's spellings. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "lib/base/mem.h"
#include "lib/spiffe/x509svid.h"
#include "proxy/agentclient.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"

#define ME "spiffe://" CA_PROC_TD "/ns/demo/sa/me"

static struct ca_proc ca;
static struct agent_proc agent;

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "see %s/ca.log", ca.dir);
    cr_assert_eq(agent_proc_init(&agent, &ca), WEFT_OK);
    struct rpc_status st;
    cr_assert_eq(agent_proc_entry(&ca, ME, geteuid(), &st), WEFT_OK, "%s", st.details);
    cr_assert_eq(agent_proc_start(&agent, true), WEFT_OK);
    cr_assert_eq(agent_proc_wait_served(&agent, 1, 20000), WEFT_OK, "see %s", agent.log);
}

static void teardown(void)
{
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(agentclient, .init = setup, .fini = teardown, .timeout = 60);

/* wait_ready polls |pa| (bounded) until its state is ready and newer than |after|. */
static struct proxy_state *wait_ready(struct proxy_agent *pa, uint64_t after)
{
    for (int i = 0; i < 200; i++) {
        struct proxy_state *s = proxy_agent_state(pa);
        if (proxy_state_ready(s, time(NULL)) && s->generation > after &&
            proxy_agent_connected(pa)) {
            return s;
        }
        proxy_state_unref(s);
        usleep(50 * 1000);
    }
    cr_assert_fail("the proxy's state never became ready; see %s", agent.log);
    return NULL;
}

Test(agentclient, the_state_is_ready_with_a_verified_svid_and_a_config)
{
    struct proxy_agent *pa;
    char err[256];
    struct proxy_agent_config cfg = {
        .socket = agent.sock, .claims = {"198.18.0.9"}, .num_claims = 1};
    cr_assert_eq(proxy_agent_start(&pa, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    struct proxy_state *s = wait_ready(pa, 0);
    cr_assert_str_eq(s->id->spiffe_id, ME);
    STACK_OF(X509) *chain = NULL;
    struct spiffe_why why;
    cr_assert_eq(spiffe_certs_decode(&chain, s->id->chain, s->id->chain_len, 8, 0, &why), WEFT_OK);
    struct spiffe_id got;
    cr_assert_eq(spiffe_x509svid_verify(&got, chain, &s->id->bundles, time(NULL), &why), WEFT_OK,
                 "%s", why.msg);
    cr_assert_str_eq(got.str, ME);
    sk_X509_pop_free(chain, X509_free);
    cr_assert_not_null(s->cfg->policy, "the policy compiled for the workload");
    cr_assert_gt(s->id->not_after, time(NULL));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, "198.18.0.9", &a.sin_addr);
    cr_assert_null(proxy_state_lookup(s, (struct sockaddr *)&a),
                   "a claim from the node's own namespace is refused: nothing in the directory");
    uint64_t gen = s->generation;
    proxy_state_unref(s);

    /* the agent goes away and comes back: the state stays in force meanwhile, then renews */
    agent_proc_stop(&agent);
    for (int i = 0; i < 100 && proxy_agent_connected(pa); i++) {
        usleep(50 * 1000);
    }
    cr_assert(!proxy_agent_connected(pa), "the streams ended with the agent");
    s = proxy_agent_state(pa);
    cr_assert(proxy_state_ready(s, time(NULL)), "what was held stays in force");
    proxy_state_unref(s);
    cr_assert_eq(agent_proc_start(&agent, false), WEFT_OK);
    s = wait_ready(pa, gen);
    cr_assert_str_eq(s->id->spiffe_id, ME);
    proxy_state_unref(s);
    proxy_agent_stop(pa);
}

Test(agentclient, the_directory_answers_for_ip_and_port_then_ip)
{
    struct proxy_config *c = weft_xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    struct proxy_dir_entry dir[] = {
        {"198.18.0.9", "spiffe://x/ns/a/sa/any-port"},
        {"198.18.0.9:8080", "spiffe://x/ns/a/sa/web"},
        {"[fd00::9]:443", "spiffe://x/ns/a/sa/v6"},
    };
    c->dir = dir;
    c->num_dir = 3; /* sorted by address, as config_of leaves them */
    struct proxy_state s = {.cfg = c};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, "198.18.0.9", &a.sin_addr);
    cr_assert_str_eq(proxy_state_lookup(&s, (struct sockaddr *)&a), "spiffe://x/ns/a/sa/web");
    a.sin_port = htons(9000);
    cr_assert_str_eq(proxy_state_lookup(&s, (struct sockaddr *)&a), "spiffe://x/ns/a/sa/any-port");
    struct sockaddr_in6 b = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    inet_pton(AF_INET6, "fd00::9", &b.sin6_addr);
    cr_assert_str_eq(proxy_state_lookup(&s, (struct sockaddr *)&b), "spiffe://x/ns/a/sa/v6");
    inet_pton(AF_INET6, "::ffff:198.18.0.9", &b.sin6_addr);
    cr_assert_str_eq(proxy_state_lookup(&s, (struct sockaddr *)&b), "spiffe://x/ns/a/sa/any-port",
                     "an IPv4-mapped address is its IPv4 form");
    inet_pton(AF_INET, "198.18.0.10", &a.sin_addr);
    cr_assert_null(proxy_state_lookup(&s, (struct sockaddr *)&a), "not in the mesh");
    char *ids[] = {"spiffe://x/ns/a/sa/bad", "spiffe://x/ns/b/sa/worse"}, *serials[] = {"0a1b"};
    c->deny_ids = ids; /* sorted, as config_of leaves them */
    c->num_deny_ids = 2;
    c->deny_serials = serials;
    c->num_deny_serials = 1;
    cr_assert(proxy_state_denied(&s, "spiffe://x/ns/b/sa/worse", "ffff"));
    cr_assert(proxy_state_denied(&s, "spiffe://x/ns/a/sa/fine", "0a1b"), "by serial");
    cr_assert(!proxy_state_denied(&s, "spiffe://x/ns/a/sa/fine", "ffff"));
    free(c);
}
