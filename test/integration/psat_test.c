/* test/integration/psat_test.c: node attestation with Kubernetes projected service account
 * tokens (issue 8) through real processes: weft-ca started with --psat-issuer and a JWKS file,
 * weft-agent with --psat-token-file and no join token. The agent joins as the token's node and
 * mints a workload SVID with its node SVID; the same token with another key is refused (a
 * replay), as are tokens the CA must not accept; a fresh token attests another node; a new JWKS
 * file (the cluster rotated its key) is followed without a restart; an agent whose first try
 * failed after the CA bound the token joins on its retry with the same token; a node keeps the
 * method it joined with (join token or service account token); an entry made for a node
 * selector the token reported (k8s_psat:agent_sa:weft-agent) reaches the agent's node though no
 * entry names it, and node selectors no node could report are refused. Keys and tokens are minted
 * at test time; every process is stopped by its PID, even when an assertion fails. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <openssl/evp.h>
#include <openssl/mem.h>

#include "agent/node.h"
#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"
#include "test/testlib/psat.h"

#define TD CA_PROC_TD
#define T_MS 10000

static struct ca_proc ca;
static struct agent_proc agent;
static struct testlib_psat_keys keys;
static const char *intermediate_ttl_flag; /* "--intermediate-ttl=40s", or NULL */
static char jwks_path[128], token_path[128];

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    bool ok = f != NULL && fputs(text, f) >= 0;
    return f != NULL && fclose(f) == 0 && ok;
}

/* token_for signs a token of the agent's pod on |node|, valid from a minute ago for an hour. */
static char *token_for(const char *node, const char *jti)
{
    int64_t now = (int64_t)time(NULL);
    json_t *claims = testlib_psat_claims("weft-agent", node, now - 60, now + 3600);
    json_object_set_new(claims, "jti", json_string(jti));
    return testlib_psat_sign(testlib_psat_header("RS256", TESTLIB_PSAT_RSA_KID), claims, "RS256",
                             keys.rsa, NULL, 0);
}

static void teardown(void)
{
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca);
    testlib_psat_keys_cleanup(&keys);
    grpc_shutdown();
}

/* start runs the CA with attestation by token and the agent with the token only; false with
 * |why| set. */
static bool start(char *why, size_t why_len)
{
    struct rpc_status st = {0};
    const char *step = "cannot mint keys";
    bool ok = testlib_psat_keys_mint(&keys) == WEFT_OK;
    char *jwks = ok ? testlib_psat_jwks(&keys) : NULL;
    char *token = ok ? token_for(AGENT_PROC_NODE, "jti-agent") : NULL;
    snprintf(jwks_path, sizeof(jwks_path), "%s/jwks.json", ca.dir);
    snprintf(token_path, sizeof(token_path), "%s/psat.token", ca.dir);
    ok = ok && (step = "cannot write the JWKS and the token", jwks != NULL && token != NULL &&
                                                                  write_file(jwks_path, jwks) &&
                                                                  write_file(token_path, token));
    free(jwks);
    free(token);
    static const char *ca_flags[] = {"--psat-issuer",
                                     TESTLIB_PSAT_ISSUER,
                                     "--psat-jwks",
                                     jwks_path,
                                     "--psat-allowed-sa=weft-system:weft-agent",
                                     "--psat-allowed-sa=weft-system:scanner",
                                     NULL,
                                     NULL};
    ca_flags[6] = intermediate_ttl_flag;
    memcpy(ca.extra, ca_flags, sizeof(ca_flags));
    ok = ok && (step = "the CA did not start", ca_proc_start(&ca, "1h") == WEFT_OK);
    /* agent_proc_init also takes a join token; the agent is started without it */
    ok = ok && (step = "agent_proc_init", agent_proc_init(&agent, &ca) == WEFT_OK);
    ok = ok && (step = "CreateEntry",
                agent_proc_entry(&ca, "spiffe://" TD "/ns/test/sa/me", geteuid(), &st) == WEFT_OK);
    agent.extra[0] = "--psat-token-file";
    agent.extra[1] = token_path;
    agent.extra[2] = NULL;
    ok = ok && (step = "the agent did not start", agent_proc_start(&agent, false) == WEFT_OK);
    ok = ok && (step = "the agent never served an SVID",
                agent_proc_wait_served(&agent, 1, 20000) == WEFT_OK);
    if (!ok) {
        snprintf(why, why_len, "%s %s", step, st.details);
    }
    return ok;
}

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    char why[512];
    if (!start(why, sizeof(why))) {
        agent_proc_dump_logs(&agent);
        teardown(); /* Criterion runs no .fini after a failed .init */
        cr_assert_fail("setup: %s (the logs are above)", why);
    }
}

TestSuite(psat, .init = setup, .fini = teardown, .timeout = 90);

/* A CA whose intermediates live 40 s: node SVIDs are capped at their intermediate's notAfter,
 * so the agent replaces its node SVID every 20 s or so. */
static void setup_short(void)
{
    intermediate_ttl_flag = "--intermediate-ttl=40s";
    setup();
}

TestSuite(psat_renewal, .init = setup_short, .fini = teardown, .timeout = 120);

/* file_has reports whether the file |path| contains |needle|. */
static bool file_has(const char *path, const char *needle)
{
    uint8_t *data;
    size_t len;
    if (weft_file_read(&data, &len, path, 16 << 20) != WEFT_OK) {
        return false;
    }
    bool found = strstr((const char *)data, needle) != NULL;
    free(data);
    return found;
}

/* wait_for polls the file |path| until it holds |needle|, at most |ms|. */
static bool wait_for(const char *path, const char *needle, int ms)
{
    for (int waited = 0; waited < ms; waited += 200) {
        if (file_has(path, needle)) {
            return true;
        }
        usleep(200 * 1000);
    }
    return false;
}

/* attest calls AttestNode with a fresh key and the given credentials; returns the gRPC status
 * and, on OK, the node SVID's ID in |id_out|. */
static int attest(const char *join_token, const char *psat, char id_out[256], struct rpc_status *st)
{
    char path[160], err[512];
    snprintf(path, sizeof(path), "%s/bundle.pem", ca.dir);
    uint8_t *bundle;
    size_t len;
    cr_assert_eq(weft_file_read(&bundle, &len, path, 1 << 20), WEFT_OK);
    struct ca_client *c;
    cr_assert_eq(ca_client_new(&c, ca.listen, TD, bundle, len, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    free(bundle);
    grpc_channel *anon;
    cr_assert_eq(ca_client_dial(c, NULL, NULL, &anon, err, sizeof(err)), WEFT_OK, "%s", err);
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__AttestNodeRequest req = WEFT__CA__V1__ATTEST_NODE_REQUEST__INIT;
    req.join_token = (char *)join_token;
    req.psat = (char *)psat;
    uint8_t *der;
    cr_assert_eq(ca_csr_new(key, &der, &len), WEFT_OK);
    req.csr.data = der;
    req.csr.len = len;
    Weft__Ca__V1__AttestNodeResponse *resp = NULL;
    int rc = rpc_call_unary(anon, "/weft.ca.v1.CA/AttestNode", &req.base,
                            &weft__ca__v1__attest_node_response__descriptor, 1 << 20, T_MS,
                            (ProtobufCMessage **)&resp, st);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
    grpc_channel_destroy(anon);
    ca_client_free(c);
    if (rc != WEFT_OK) {
        return st->code;
    }
    snprintf(id_out, 256, "%s", resp->node_svid->spiffe_id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return GRPC_STATUS_OK;
}

Test(psat, the_agent_joins_as_the_tokens_node_and_mints)
{
    /* setup waited for the agent to serve the workload SVID of the entry on node-a: its node
     * SVID, from the token, was accepted by MintWorkloadSVIDs */
    char log[160], state[200];
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    cr_assert(file_has(log, "service account token used"), "the CA's log does not say so");
    cr_assert(file_has(log, "pod=weft-agent-x7k2p"));
    cr_assert(file_has(agent.log, "joined the CA"));
    snprintf(state, sizeof(state), "%s/node.pem", agent.state);
    cr_assert_eq(access(state, R_OK), 0, "no node SVID stored at %s", state);
}

Test(psat, the_same_token_with_another_key_is_refused)
{
    uint8_t *token;
    size_t len;
    cr_assert_eq(weft_file_read(&token, &len, token_path, 1 << 16), WEFT_OK);
    char id[256];
    struct rpc_status st;
    cr_assert_eq(attest("", (const char *)token, id, &st), GRPC_STATUS_PERMISSION_DENIED);
    cr_assert_str_eq(st.details, "service account token refused", "a peer learns nothing more");
    free(token);
    char log[160];
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    cr_assert(file_has(log, "a replay"), "the CA's log does not name the replay");
}

Test(psat, a_fresh_token_attests_its_node)
{
    char *token = token_for("node-b", "jti-b");
    char id[256];
    struct rpc_status st;
    cr_assert_eq(attest("", token, id, &st), GRPC_STATUS_OK, "%s", st.details);
    cr_assert_str_eq(id, "spiffe://" TD "/weft/node/node-b");
    free(token);
}

Test(psat, tokens_the_ca_must_not_accept_are_refused)
{
    int64_t now = (int64_t)time(NULL);
    char id[256];
    struct rpc_status st;
    /* signed by a key the JWKS does not hold */
    EVP_PKEY *stranger = testlib_psat_ec_key();
    char *t = testlib_psat_sign(testlib_psat_header("ES256", NULL),
                                testlib_psat_claims("weft-agent", "node-c", now - 60, now + 600),
                                "ES256", stranger, NULL, 0);
    cr_assert_eq(attest("", t, id, &st), GRPC_STATUS_PERMISSION_DENIED);
    free(t);
    EVP_PKEY_free(stranger);
    /* another service account */
    t = testlib_psat_sign(testlib_psat_header("ES256", TESTLIB_PSAT_EC_KID),
                          testlib_psat_claims("default", "node-c", now - 60, now + 600), "ES256",
                          keys.ec, NULL, 0);
    cr_assert_eq(attest("", t, id, &st), GRPC_STATUS_PERMISSION_DENIED);
    /* both credentials at once */
    cr_assert_eq(attest("weft1.whatever", t, id, &st), GRPC_STATUS_INVALID_ARGUMENT);
    free(t);
    char log[160];
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    cr_assert(file_has(log, "service account weft-system:default may not attest nodes"));
}

Test(psat, the_ca_follows_a_new_jwks_file)
{
    /* the cluster rotated its signing key: the operator publishes the new JWKS (only the EC
     * key) where --psat-jwks points; the CA reads it at the next attestation */
    json_t *doc = json_pack("{s:[o]}", "keys", testlib_psat_jwk(keys.ec, "rotated"));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.new", jwks_path);
    cr_assert(write_file(tmp, text) && rename(tmp, jwks_path) == 0);
    free(text);
    int64_t now = (int64_t)time(NULL);
    char id[256];
    struct rpc_status st;
    char *old = token_for("node-d", "jti-d");
    cr_assert_eq(attest("", old, id, &st), GRPC_STATUS_PERMISSION_DENIED,
                 "a token of the retired key still attests");
    free(old);
    char *t = testlib_psat_sign(testlib_psat_header("ES256", "rotated"),
                                testlib_psat_claims("weft-agent", "node-e", now - 60, now + 600),
                                "ES256", keys.ec, NULL, 0);
    cr_assert_eq(attest("", t, id, &st), GRPC_STATUS_OK, "%s", st.details);
    cr_assert_str_eq(id, "spiffe://" TD "/weft/node/node-e");
    free(t);
    char log[160];
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    cr_assert(file_has(log, "service account token keys reloaded"));
}

Test(psat, an_agent_retrying_with_the_same_token_joins)
{
    /* The CA binds the token on success; the agent then fails to store its identity (node.key
     * is a directory here, so the atomic rename over it fails). Its retry with the same token
     * must present the same key, or the CA takes it for a replay until the token rotates. */
    char dir[200], keyfile[260], bundle[160], err[512];
    snprintf(dir, sizeof(dir), "%s/retry-state", ca.dir);
    snprintf(keyfile, sizeof(keyfile), "%s/%s", dir, AGENT_NODE_KEY);
    snprintf(bundle, sizeof(bundle), "%s/bundle.pem", ca.dir);
    struct agent_node_config cfg = {dir, ca.listen, TD, bundle};
    struct agent_node *n = NULL;
    cr_assert_eq(agent_node_open(&n, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(mkdir(keyfile, 0700), 0);
    char *token = token_for("node-r", "jti-r");
    cr_assert_eq(agent_node_join_psat(n, token, err, sizeof(err)), WEFT_EIO,
                 "the identity could not be stored: %s", err);
    cr_assert_eq(rmdir(keyfile), 0);
    int rc = agent_node_join_psat(n, token, err, sizeof(err));
    cr_assert_eq(rc, WEFT_OK, "the retry was refused: %s", err);
    cr_assert_str_eq(agent_node_name(n), "node-r");
    cr_assert_eq(access(keyfile, R_OK), 0);
    /* a fresh token after a success is attested with a fresh key, and that is fine too */
    char *fresh = token_for("node-r", "jti-r2");
    EVP_PKEY *before = agent_node_key(n);
    EVP_PKEY_up_ref(before);
    cr_assert_eq(agent_node_join_psat(n, fresh, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_neq(EVP_PKEY_cmp(before, agent_node_key(n)), 1, "a new token, a new key");
    EVP_PKEY_free(before);
    free(fresh);
    free(token);
    agent_node_free(n);
}

Test(psat, a_node_keeps_the_method_it_joined_with)
{
    char id[256], log[160];
    struct rpc_status st;
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    /* a node of join tokens is not taken over by a Kubernetes Node of the same name */
    char *join = ca_proc_token(&ca, "node-j", 600);
    cr_assert_not_null(join);
    cr_assert_eq(attest(join, "", id, &st), GRPC_STATUS_OK, "%s", st.details);
    free(join);
    char *t = token_for("node-j", "jti-j");
    cr_assert_eq(attest("", t, id, &st), GRPC_STATUS_PERMISSION_DENIED);
    free(t);
    cr_assert(file_has(log, "node node-j joined by join token: it cannot attest by Kubernetes "
                            "service account token"),
              "the CA's log does not name the node and both methods");
    /* nor the other way round: the agent's node joined by service account token */
    join = ca_proc_token(&ca, AGENT_PROC_NODE, 600);
    cr_assert_not_null(join);
    cr_assert_eq(attest(join, "", id, &st), GRPC_STATUS_PERMISSION_DENIED);
    free(join);
    cr_assert(file_has(log, "node " AGENT_PROC_NODE " joined by Kubernetes service account "
                            "token: it cannot attest by join token"));
}

/* create_selector_entry asks the CA for an entry of |spiffe_id| on every node reporting
 * |node_selector|, for the workload of our uid; returns the gRPC status. */
static int create_selector_entry(const char *spiffe_id, const char *node_selector,
                                 struct rpc_status *st)
{
    char uid_sel[32];
    snprintf(uid_sel, sizeof(uid_sel), "unix:uid:%u", (unsigned)geteuid());
    char *sel = uid_sel;
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    e.spiffe_id = (char *)spiffe_id;
    e.node_selector = (char *)node_selector;
    e.selectors = &sel;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    ProtobufCMessage *resp = NULL;
    if (ca_proc_admin(&ca, "CreateEntry", &req.base,
                      &weft__ca__v1__create_entry_response__descriptor, &resp, st) != WEFT_OK) {
        return st->code;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return GRPC_STATUS_OK;
}

Test(psat, an_entry_by_node_selector_reaches_the_node_with_no_step_for_it)
{
    /* no entry names the agent's node: it gets this one because its token said it runs as
     * service account weft-agent */
    struct rpc_status st;
    cr_assert_eq(create_selector_entry("spiffe://" TD "/ns/test/sa/everywhere",
                                       "k8s_psat:agent_sa:weft-agent", &st),
                 GRPC_STATUS_OK, "%s", st.details);
    cr_assert_eq(agent_proc_wait_served(&agent, 2, 20000), WEFT_OK,
                 "the agent never served the node-selector entry's SVID");
    char log[160];
    snprintf(log, sizeof(log), "%s/ca.log", ca.dir);
    cr_assert(file_has(log, "node_selectors=k8s_psat:cluster:kubernetes,k8s_psat:agent_ns:weft-"
                            "system,k8s_psat:agent_sa:weft-agent"),
              "the CA's log does not list the node's selectors");
    /* node selectors no node of this CA could report are refused, saying why */
    cr_assert_eq(
        create_selector_entry("spiffe://" TD "/ns/test/sa/x", "k8s_psat:cluster:prod", &st),
        GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(st.details, "cluster kubernetes"), "%s", st.details);
    cr_assert_eq(
        create_selector_entry("spiffe://" TD "/ns/test/sa/x", "k8s:node-label:pool:blue", &st),
        GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(st.details, "k8s_psat:agent_sa:NAME"), "%s", st.details);
    cr_assert_eq(
        create_selector_entry("spiffe://" TD "/ns/test/sa/x", "k8s_psat:agent_sa:weft-agnet", &st),
        GRPC_STATUS_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(st.details, "--psat-allowed-sa"), "%s", st.details);
    /* a token of another allowed service account for the agent's node: the node's identity
     * follows it, and the agent's node SVID is revoked (it would otherwise gain the scanner's
     * selectors) */
    int64_t now = (int64_t)time(NULL);
    char id[256];
    json_t *claims = testlib_psat_claims("scanner", AGENT_PROC_NODE, now - 60, now + 600);
    json_object_set_new(claims, "jti", json_string("jti-scanner-1"));
    char *t = testlib_psat_sign(testlib_psat_header("RS256", TESTLIB_PSAT_RSA_KID), claims, "RS256",
                                keys.rsa, NULL, 0);
    cr_assert_eq(attest("", t, id, &st), GRPC_STATUS_OK, "%s", st.details);
    free(t);
    cr_assert(file_has(log,
                       "node attested as another service account: its earlier node SVIDs "
                       "revoked\" node=" AGENT_PROC_NODE " service_account=weft-system:scanner "
                       "revoked=1"),
              "the CA's log does not say what it revoked");
    /* the agent's stream ends at once (its SVID is revoked); it attests again with its own
     * token, which takes the node back and revokes the scanner's SVID in turn: two accounts
     * allowed on one node take it from each other, hence one account per node */
    bool back =
        wait_for(log,
                 "revoked\" node=" AGENT_PROC_NODE " service_account=weft-system:weft-agent "
                 "revoked=",
                 15000);
    if (!back) {
        agent_proc_dump_logs(&agent);
    }
    cr_assert(back, "the agent did not take its node back (the logs are above)");
    cr_assert_eq(agent_proc_wait_served(&agent, 2, 15000), WEFT_OK, "the agent stopped serving");
    claims = testlib_psat_claims("scanner", "node-s", now - 60, now + 600);
    json_object_set_new(claims, "jti", json_string("jti-scanner-2"));
    t = testlib_psat_sign(testlib_psat_header("RS256", TESTLIB_PSAT_RSA_KID), claims, "RS256",
                          keys.rsa, NULL, 0);
    cr_assert_eq(attest("", t, id, &st), GRPC_STATUS_OK, "on a node of its own it may: %s",
                 st.details);
    free(t);
    /* the cluster renamed under the entry: a restarted CA says no node attesting from now on
     * reports its selector */
    cr_assert_eq(create_selector_entry("spiffe://" TD "/ns/test/sa/cluster-wide",
                                       "k8s_psat:cluster:kubernetes", &st),
                 GRPC_STATUS_OK, "%s", st.details);
    ca_proc_stop(&ca, SIGTERM);
    static const char *renamed[] = {"--psat-issuer",
                                    TESTLIB_PSAT_ISSUER,
                                    "--psat-jwks",
                                    jwks_path,
                                    "--psat-allowed-sa=weft-system:weft-agent",
                                    "--psat-allowed-sa=weft-system:scanner",
                                    "--psat-cluster=prod",
                                    NULL};
    memcpy(ca.extra, renamed, sizeof(renamed));
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK);
    cr_assert(file_has(log, "msg=\"entry holds on no node attesting from now on"),
              "no warning at start");
    cr_assert(file_has(log, "cluster-wide reason=\"--node-selector k8s_psat:cluster:kubernetes: "
                            "this CA's nodes report cluster prod"),
              "the warning does not name the entry and why");
}

Test(psat_renewal, the_agent_attests_again_with_its_token_and_renews_when_refused)
{
    /* The token file still holds the token of the first join, which the CA bound to the first
     * key: the agent attests again with that key, and the CA takes the node's selectors
     * afresh. */
    char ca_log[160];
    snprintf(ca_log, sizeof(ca_log), "%s/ca.log", ca.dir);
    cr_assert(wait_for(agent.log, "by=token", 60000), "the agent never attested again");
    cr_assert_not(file_has(ca_log, "a replay"), "the agent offered the CA a replay");
    /* a token the CA refuses (the file holds garbage): the agent renews instead */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.new", token_path);
    cr_assert(write_file(tmp, "not-a-token") && rename(tmp, token_path) == 0);
    cr_assert(wait_for(agent.log, "by=renewal", 60000), "the agent never renewed");
    cr_assert(file_has(agent.log, "cannot attest again with the token; renewing instead"));
    cr_assert_eq(agent_proc_wait_served(&agent, 1, 10000), WEFT_OK, "the agent stopped serving");
}

Test(psat, a_node_renews_only_while_its_service_account_may_attest)
{
    char dir[200], bundle[160], err[512];
    snprintf(dir, sizeof(dir), "%s/renew-state", ca.dir);
    snprintf(bundle, sizeof(bundle), "%s/bundle.pem", ca.dir);
    struct agent_node_config cfg = {dir, ca.listen, TD, bundle};
    struct agent_node *n = NULL;
    cr_assert_eq(agent_node_open(&n, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    char *token = token_for("node-q", "jti-q");
    cr_assert_eq(agent_node_join_psat(n, token, err, sizeof(err)), WEFT_OK, "%s", err);
    free(token);
    cr_assert_eq(agent_node_renew(n, err, sizeof(err)), WEFT_OK, "%s", err);
    /* the operator takes weft-system:weft-agent off the allowed list */
    ca_proc_stop(&ca, SIGTERM);
    static const char *scanner_only[] = {"--psat-issuer",
                                         TESTLIB_PSAT_ISSUER,
                                         "--psat-jwks",
                                         jwks_path,
                                         "--psat-allowed-sa=weft-system:scanner",
                                         NULL};
    memcpy(ca.extra, scanner_only, sizeof(scanner_only));
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK);
    int rc = WEFT_OK;
    for (int i = 0; i < 3 && (rc == WEFT_OK || strstr(err, "no longer allows") == NULL); i++) {
        rc = agent_node_renew(n, err, sizeof(err)); /* the first may find the old channel gone */
    }
    cr_assert_neq(rc, WEFT_OK, "the node renewed");
    cr_assert_not_null(strstr(err, "node node-q attested as weft-system:weft-agent, which "
                                   "--psat-allowed-sa no longer allows"),
                       "%s", err);
    agent_node_free(n);
}
