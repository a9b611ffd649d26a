/* agent/node_test.c: the node identity against a real weft-ca on loopback: join with a token
 * and the bootstrap bundle, keep it (0600), come back without a token and renew, and the ways
 * it is refused. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "agent/node.h"
#include "lib/rpc/rpc.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/ca_proc.h"

static struct ca_proc ca;
static char state[128], bootstrap[128];

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "weft-ca did not start; see %s/ca.log", ca.dir);
    snprintf(state, sizeof(state), "%s/agent-state", ca.dir);
    snprintf(bootstrap, sizeof(bootstrap), "%s/bundle.pem", ca.dir);
}

static void teardown(void)
{
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(node, .init = setup, .fini = teardown, .timeout = 60);

static char *token_for(const char *node)
{
    char *t = ca_proc_token(&ca, node, 600);
    cr_assert_not_null(t);
    return t;
}

static struct agent_node *open_node(void)
{
    struct agent_node_config cfg = {state, ca.listen, CA_PROC_TD, bootstrap};
    struct agent_node *n = NULL;
    char err[512];
    cr_assert_eq(agent_node_open(&n, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    return n;
}

static unsigned mode_of(const char *file)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", state, file);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return st.st_mode & 0777;
}

/* leaf_of returns a reference to the node SVID held now (the caller frees it). */
static X509 *leaf_of(struct agent_node *n)
{
    X509 *leaf = sk_X509_value(agent_node_chain(n), 0);
    cr_assert(X509_up_ref(leaf));
    return leaf;
}

Test(node, joins_once_then_comes_back_without_a_token_and_renews)
{
    struct agent_node *n = open_node();
    int64_t now = (int64_t)time(NULL);
    char err[512];
    cr_assert(!agent_node_has_identity(n, now));
    grpc_channel *ch;
    cr_assert_eq(agent_node_channel(n, &ch, err, sizeof(err)), WEFT_ENOTFOUND);
    cr_assert_not_null(strstr(err, "join with a token"), "%s", err);

    char *token = token_for("node-a");
    cr_assert_eq(agent_node_join(n, token, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert(agent_node_has_identity(n, now));
    cr_assert_str_eq(agent_node_name(n), "node-a");
    cr_assert_eq(mode_of(AGENT_NODE_KEY), 0600);
    cr_assert_eq(mode_of(AGENT_NODE_CHAIN), 0644, "a copy of the chain for operators");
    cr_assert_eq(mode_of(AGENT_NODE_BUNDLE), 0644);
    X509 *first = leaf_of(n);
    agent_node_free(n);

    /* a restart: the identity is read back, and renewal needs no token */
    n = open_node();
    cr_assert(agent_node_has_identity(n, now), "kept across a restart");
    cr_assert_eq(X509_cmp(sk_X509_value(agent_node_chain(n), 0), first), 0);
    cr_assert_eq(agent_node_renew(n, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_neq(X509_cmp(sk_X509_value(agent_node_chain(n), 0), first), 0, "a new node SVID");
    X509_free(first);
    cr_assert_str_eq(agent_node_name(n), "node-a");
    /* and the renewed one works for the next call too */
    cr_assert_eq(agent_node_renew(n, err, sizeof(err)), WEFT_OK, "%s", err);
    agent_node_free(n);

    /* the token was used once: a second join with it is refused, and says so */
    char other[160];
    snprintf(other, sizeof(other), "%s/other-state", ca.dir);
    struct agent_node_config cfg = {other, ca.listen, CA_PROC_TD, bootstrap};
    cr_assert_eq(agent_node_open(&n, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_neq(agent_node_join(n, token, err, sizeof(err)), WEFT_OK);
    cr_assert_not_null(strstr(err, "refused"), "%s", err);
    cr_assert(!agent_node_has_identity(n, now));
    agent_node_free(n);
    free(token);
}

Test(node, a_key_others_can_read_and_a_missing_bundle_are_refused)
{
    struct agent_node *n = open_node();
    char err[512];
    char *token = token_for("node-b");
    cr_assert_eq(agent_node_join(n, token, err, sizeof(err)), WEFT_OK, "%s", err);
    free(token);
    agent_node_free(n);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", state, AGENT_NODE_KEY);
    cr_assert_eq(chmod(path, 0644), 0);
    struct agent_node_config cfg = {state, ca.listen, CA_PROC_TD, bootstrap};
    cr_assert_eq(agent_node_open(&n, &cfg, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);

    char empty[160];
    snprintf(empty, sizeof(empty), "%s/empty-state", ca.dir);
    struct agent_node_config none = {empty, ca.listen, CA_PROC_TD, NULL};
    cr_assert_eq(agent_node_open(&n, &none, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "bootstrap bundle"), "%s", err);
}
