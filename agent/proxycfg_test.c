/* agent/proxycfg_test.c: directory claims are verified (kubelet pod IPs; the caller's own
 * network namespace, a real one made here), kept and reported; the proxy's config carries the
 * policy compiled for its workload, the directory and the deny list. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/netns.h"
#include "agent/proxycfg.h"
#include "policy/snapshot.h"
#include "test/testlib/net.h"

TestSuite(proxycfg, .timeout = 30);

static struct agent_peer self(void)
{
    struct agent_peer p = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    cr_assert_eq(agent_peer_start_time("/proc", p.pid, &p.start_time), WEFT_OK);
    return p;
}

static struct agent_claim_verdict verdicts[AGENT_CLAIMS_PER_STREAM];
static struct weft_cidr test_range; /* 198.18.0.0/15 */
static const struct agent_claim_rules rules = {.cidrs = &test_range, .num_cidrs = 1};

static void verify_with(const struct agent_claim_rules *r, const struct agent_peer *p,
                        const struct agent_selectors *sel, const char *const *addrs, size_t n)
{
    char err[256];
    cr_assert_eq(weft_cidr_parse("198.18.0.0/15", &test_range), WEFT_OK);
    cr_assert_eq(agent_claims_verify("/proc", r, p, sel, (char *const *)addrs, n, verdicts, err,
                                     sizeof(err)),
                 WEFT_OK, "%s", err);
}

static void verify(const struct agent_peer *p, const struct agent_selectors *sel,
                   const char *const *addrs, size_t n)
{
    verify_with(&rules, p, sel, addrs, n);
}

Test(proxycfg, addresses_that_name_no_one_are_refused_with_the_reason)
{
    struct agent_peer p = self();
    struct agent_selectors sel = {0};
    const char *addrs[] = {"localhost:80", "127.0.0.1",    "[::1]:80",  "0.0.0.0",
                           "0.1.2.3",      "169.254.1.1",  "224.0.0.1", "[fe80::1]:8080",
                           "ff02::1",      "::198.18.0.9", "fec0::1",   "bad\x01\xff"};
    verify(&p, &sel, addrs, nitems(addrs));
    const char *want[] = {"not an IP address", "loopback",   "loopback",   "names no one",
                          "names no one",      "link-local", "multicast",  "link-local",
                          "multicast",         "::/96",      "site-local", "not an IP address"};
    for (size_t i = 0; i < nitems(addrs); i++) {
        cr_assert(!verdicts[i].accepted, "%s accepted", addrs[i]);
        cr_assert(strstr(verdicts[i].reason, want[i]) != NULL, "%s: %s", addrs[i],
                  verdicts[i].reason);
    }
    cr_assert_str_eq(verdicts[11].address, "bad??", "echoed as printable ASCII");
}

Test(proxycfg, a_pod_may_claim_only_the_ips_the_kubelet_lists_for_it)
{
    struct agent_peer p = self();
    struct agent_selectors sel = {0};
    cr_assert_eq(agent_selectors_add(&sel, "k8s:pod-uid:2c48913c-b29f-11e7-9350-020968147796"),
                 WEFT_OK);
    cr_assert_eq(agent_selectors_add(&sel, "k8s:pod-ip:198.18.1.7"), WEFT_OK);
    cr_assert_eq(agent_selectors_add(&sel, "k8s:pod-ip:2001:db8::7"), WEFT_OK);
    const char *addrs[] = {"198.18.1.7:8080", "198.18.1.8", "[2001:DB8::7]:443",
                           "[::ffff:198.18.1.7]:80"};
    struct agent_claim_rules k8s = {.k8s = true};
    verify_with(&k8s, &p, &sel, addrs, nitems(addrs));
    cr_assert(verdicts[0].accepted);
    cr_assert_str_eq(verdicts[0].address, "198.18.1.7:8080");
    cr_assert(!verdicts[1].accepted);
    cr_assert(strstr(verdicts[1].reason, "kubelet") != NULL, "%s", verdicts[1].reason);
    cr_assert(verdicts[2].accepted);
    cr_assert_str_eq(verdicts[2].address, "[2001:db8::7]:443");
    cr_assert(verdicts[3].accepted, "an IPv4-mapped address is the IPv4 address");
    /* an agent that attests pods takes no claim from a caller it could not attest as one */
    struct agent_selectors unix_only = {0};
    verify_with(&k8s, &p, &unix_only, addrs, 1);
    cr_assert(!verdicts[0].accepted);
    cr_assert(strstr(verdicts[0].reason, "not attested as one") != NULL, "%s", verdicts[0].reason);
}

Test(proxycfg, a_process_in_the_nodes_namespace_claims_nothing)
{
    struct agent_peer p = self(); /* in the namespace of the agent (this test) */
    struct agent_selectors sel = {0};
    const char *addrs[] = {"198.18.0.1"};
    verify(&p, &sel, addrs, 1);
    cr_assert(!verdicts[0].accepted);
    cr_assert(strstr(verdicts[0].reason, "node's network namespace") != NULL, "%s",
              verdicts[0].reason);
}

/* in_netns forks a child in a network namespace of its own with |ip| on an interface that is
 * up (testlib_netns_own), owned by a user namespace of its own when |own_userns| (as an
 * unprivileged process could make it); it waits until killed. */
static pid_t in_netns(const char *ip, bool own_userns)
{
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        if ((own_userns && unshare(CLONE_NEWUSER) != 0) || testlib_netns_own(ip) != 0 ||
            write(ready[1], "r", 1) != 1) {
            _exit(1);
        }
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the child could not make its network namespace");
    close(ready[0]);
    return pid;
}

static struct agent_peer peer_of(pid_t pid)
{
    struct agent_peer p = {.pid = pid};
    cr_assert_eq(agent_peer_start_time("/proc", pid, &p.start_time), WEFT_OK);
    return p;
}

static void stop(pid_t child)
{
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

Test(proxycfg, outside_kubernetes_the_callers_own_namespace_and_the_ranges_decide)
{
    if (geteuid() != 0) {
        cr_skip_test("making a network namespace needs root");
    }
    pid_t child = in_netns("198.18.0.9", false);
    struct agent_peer p = peer_of(child);
    struct agent_selectors sel = {0};
    const char *addrs[] = {"198.18.0.9:8080", "198.18.0.10", "198.18.0.9"};
    char err[256];
    int rc = agent_claims_verify("/proc", &rules, &p, &sel, (char *const *)addrs, 3, verdicts, err,
                                 sizeof(err));
    struct agent_claim_verdict none, other;
    struct agent_claim_rules no_ranges = {0};
    int rc2 = agent_claims_verify("/proc", &no_ranges, &p, &sel, (char *const *)addrs, 1, &none,
                                  err, sizeof(err));
    struct weft_cidr ten;
    cr_assert_eq(weft_cidr_parse("10.0.0.0/8", &ten), WEFT_OK);
    struct agent_claim_rules elsewhere = {.cidrs = &ten, .num_cidrs = 1};
    int rc3 = agent_claims_verify("/proc", &elsewhere, &p, &sel, (char *const *)addrs, 1, &other,
                                  err, sizeof(err));
    /* the same pid with another start time: another process has it now */
    struct agent_peer reused = p;
    reused.start_time++;
    struct agent_claim_verdict v;
    int stale = agent_claims_verify("/proc", &rules, &reused, &sel, (char *const *)addrs, 1, &v,
                                    err, sizeof(err));
    stop(child);
    cr_assert_eq(rc, WEFT_OK, "%s", err);
    cr_assert(verdicts[0].accepted, "%s", verdicts[0].reason);
    cr_assert(!verdicts[1].accepted);
    cr_assert(strstr(verdicts[1].reason, "not configured on an interface that is up") != NULL, "%s",
              verdicts[1].reason);
    cr_assert(verdicts[2].accepted);
    cr_assert_eq(rc2, WEFT_OK);
    cr_assert(!none.accepted);
    cr_assert(strstr(none.reason, "none is set") != NULL, "%s", none.reason);
    cr_assert_eq(rc3, WEFT_OK);
    cr_assert(!other.accepted);
    cr_assert(strstr(other.reason, "outside every --claim-cidr range") != NULL, "%s", other.reason);
    cr_assert_eq(stale, WEFT_ESTALE);
}

Test(proxycfg, a_namespace_an_unprivileged_process_could_make_claims_nothing)
{
    if (geteuid() != 0) {
        cr_skip_test("making a network namespace needs root");
    }
    pid_t child = in_netns("198.18.0.9", true);
    struct agent_peer p = peer_of(child);
    struct agent_selectors sel = {0};
    const char *addrs[] = {"198.18.0.9"};
    char err[256];
    int rc = agent_claims_verify("/proc", &rules, &p, &sel, (char *const *)addrs, 1, verdicts, err,
                                 sizeof(err));
    stop(child);
    cr_assert_eq(rc, WEFT_OK, "%s", err);
    cr_assert(!verdicts[0].accepted);
    cr_assert(strstr(verdicts[0].reason, "user namespace other than the node's") != NULL, "%s",
              verdicts[0].reason);
}

/* node_address finds an IPv4 address of the node's (our) namespace on an interface that is up and
 * not loopback, as text; false when there is none. */
static bool node_address(char *out, size_t cap)
{
    struct agent_netns_addrs node;
    char err[256];
    cr_assert_eq(agent_netns_addresses("/proc", getpid(), &node, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    cr_assert(node.node);
    for (size_t i = 0; i < node.num; i++) {
        if (!node.ip[i].v6) {
            inet_ntop(AF_INET, node.ip[i].bytes, out, (socklen_t)cap);
            return true;
        }
    }
    return false;
}

Test(proxycfg, a_workload_cannot_claim_one_of_the_nodes_addresses)
{
    char addr[INET_ADDRSTRLEN], range[40];
    if (geteuid() != 0 || !node_address(addr, sizeof(addr))) {
        cr_skip_test("needs root and an IPv4 address on the node");
    }
    pid_t child = in_netns(addr, false);
    struct agent_peer p = peer_of(child);
    struct agent_selectors sel = {0};
    snprintf(range, sizeof(range), "%s/32", addr);
    struct weft_cidr c;
    cr_assert_eq(weft_cidr_parse(range, &c), WEFT_OK);
    struct agent_claim_rules r = {.cidrs = &c, .num_cidrs = 1};
    const char *addrs[] = {addr};
    char err[256];
    int rc = agent_claims_verify("/proc", &r, &p, &sel, (char *const *)addrs, 1, verdicts, err,
                                 sizeof(err));
    stop(child);
    cr_assert_eq(rc, WEFT_OK, "%s", err);
    cr_assert(!verdicts[0].accepted);
    cr_assert(strstr(verdicts[0].reason, "one of the node's own addresses") != NULL, "%s",
              verdicts[0].reason);
}

static bool has_entry(const Weft__Ca__V1__ReportWorkloadsRequest *r, const char *addr,
                      const char *id)
{
    for (size_t i = 0; i < r->n_workloads; i++) {
        if (strcmp(r->workloads[i]->address, addr) == 0 &&
            strcmp(r->workloads[i]->spiffe_id, id) == 0) {
            return true;
        }
    }
    return false;
}

Test(proxycfg, claims_are_reported_whole_when_they_change_and_again_before_they_expire)
{
    struct agent_claims *c = agent_claims_new();
    int a, b;
    struct agent_claim_verdict v[2] = {{"198.18.1.7", true, ""}, {"198.18.1.8", false, "no"}};
    const char *id = "spiffe://example.org/ns/shop/sa/cart";
    cr_assert_eq(agent_claims_set(c, &a, id, v, 2), WEFT_OK);
    cr_assert_eq(agent_claims_set(c, &b, id, v, 1), WEFT_OK); /* a second stream, same claim */
    Weft__Ca__V1__ReportWorkloadsRequest *r = agent_claims_report(c, 1000);
    cr_assert_not_null(r);
    cr_assert_eq(r->n_workloads, 1, "refused claims and duplicates are not reported");
    cr_assert(has_entry(r, "198.18.1.7", id));
    agent_claims_reported(c, r, false, 1000);
    agent_claims_report_free(r);
    cr_assert_null(agent_claims_report(c, 1001), "after a failure, not at once");
    r = agent_claims_report(c, 1002);
    cr_assert_not_null(r, "a report the CA did not take is due again after the backoff");
    agent_claims_reported(c, r, true, 1001);
    agent_claims_report_free(r);
    cr_assert_null(agent_claims_report(c, 1002), "nothing changed");
    r = agent_claims_report(c, 1001 + AGENT_CLAIMS_REFRESH_S);
    cr_assert_not_null(r, "refreshed before the CA's directory forgets it");
    agent_claims_reported(c, r, true, 1001 + AGENT_CLAIMS_REFRESH_S);
    agent_claims_report_free(r);
    agent_claims_drop(c, &a);
    agent_claims_drop(c, &b);
    r = agent_claims_report(c, 1040);
    cr_assert_not_null(r);
    cr_assert_eq(r->n_workloads, 0, "an empty report clears the node's entries");
    agent_claims_reported(c, r, true, 1040);
    agent_claims_report_free(r);
    agent_claims_free(c);
}

/* A starting agent holds its first report while its proxies reconnect and claim again. */
Test(proxycfg, a_starting_agent_holds_its_first_report_while_proxies_claim_again)
{
    struct agent_claims *c = agent_claims_new();
    agent_claims_hold(c, 1000 + AGENT_CLAIMS_SETTLE_S);
    cr_assert_null(agent_claims_report(c, 1000), "an empty report at start clears the node");
    int a;
    struct agent_claim_verdict v = {"198.18.1.7", true, ""};
    cr_assert_eq(agent_claims_set(c, &a, "spiffe://example.org/ns/shop/sa/cart", &v, 1), WEFT_OK);
    cr_assert_null(agent_claims_report(c, 1001), "still settling");
    Weft__Ca__V1__ReportWorkloadsRequest *r = agent_claims_report(c, 1000 + AGENT_CLAIMS_SETTLE_S);
    cr_assert_not_null(r);
    cr_assert_eq(r->n_workloads, 1);
    agent_claims_reported(c, r, true, 1000 + AGENT_CLAIMS_SETTLE_S);
    agent_claims_report_free(r);
    agent_claims_drop(c, &a);
    agent_claims_free(c);
}

Test(proxycfg, the_workload_policy_sees_comes_from_the_id_and_the_pod_labels)
{
    struct agent_proxy_stream ps;
    struct agent_selectors sel = {0};
    cr_assert_eq(agent_selectors_add(&sel, "k8s:pod-label:app:cart"), WEFT_OK);
    cr_assert_eq(agent_selectors_add(&sel, "k8s:pod-label:app.kubernetes.io/part-of:shop"),
                 WEFT_OK);
    char why[256];
    cr_assert_eq(
        agent_proxy_stream_init(&ps, "spiffe://example.org/ns/shop/sa/cart", &sel, why, 256),
        WEFT_OK, "%s", why);
    cr_assert_str_eq(ps.ns, "shop");
    cr_assert_str_eq(ps.sa, "cart");
    cr_assert_eq(ps.num_labels, 2);
    cr_assert_str_eq(ps.label_keys[1], "app.kubernetes.io/part-of");
    cr_assert_str_eq(ps.label_values[1], "shop");
    agent_proxy_stream_cleanup(&ps);
    const char *bad[] = {"spiffe://example.org/web", "spiffe://example.org/ns/shop/sa/cart/x",
                         "spiffe://example.org/ns//sa/cart", "spiffe://example.org/ns/Shop/sa/c"};
    for (size_t i = 0; i < nitems(bad); i++) {
        cr_assert_eq(agent_proxy_stream_init(&ps, bad[i], &sel, why, 256), WEFT_EINVAL, "%s",
                     bad[i]);
    }
}

static const char policy_yaml[] =
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: cart-allow-web, namespace: shop}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: cart}}\n"
    "  action: ALLOW\n"
    "  rules:\n"
    "    - from: [{principals: [\"spiffe://example.org/ns/shop/sa/web\"]}]\n"
    "      to: [{ports: [\"8080\"]}]\n";

/* snapshot makes a WatchNode snapshot as protobuf-c would unpack it (agent_proxycfg_update
 * frees it): one policy file, one directory entry, one deny item. */
static Weft__Ca__V1__NodeSnapshot *snapshot(uint64_t policy_version, const char *yaml,
                                            uint64_t dir_version, const char *deny)
{
    Weft__Ca__V1__NodeSnapshot s = WEFT__CA__V1__NODE_SNAPSHOT__INIT;
    Weft__Ca__V1__PolicyFile f = WEFT__CA__V1__POLICY_FILE__INIT, *fp = &f;
    f.name = "shop.yaml";
    f.content = (ProtobufCBinaryData){strlen(yaml), (uint8_t *)yaml};
    s.policy = &fp;
    s.n_policy = 1;
    s.policy_version = policy_version;
    Weft__Ca__V1__DirectoryEntry d = WEFT__CA__V1__DIRECTORY_ENTRY__INIT, *dp = &d;
    d.address = "198.18.1.7";
    d.spiffe_id = "spiffe://example.org/ns/shop/sa/cart";
    s.directory = &dp;
    s.n_directory = 1;
    s.directory_version = dir_version;
    Weft__Ca__V1__DenyItem di = WEFT__CA__V1__DENY_ITEM__INIT, *dip = &di;
    di.value = (char *)deny;
    s.deny_list = &dip;
    s.n_deny_list = 1;
    uint8_t buf[4096];
    size_t len = weft__ca__v1__node_snapshot__pack(&s, buf);
    return weft__ca__v1__node_snapshot__unpack(NULL, len, buf);
}

Test(proxycfg, the_config_carries_the_compiled_policy_the_directory_and_the_deny_list)
{
    struct agent_proxycfg *pc = agent_proxycfg_new();
    struct agent_selectors sel = {0};
    cr_assert_eq(agent_selectors_add(&sel, "k8s:pod-label:app:cart"), WEFT_OK);
    struct agent_proxy_stream ps;
    char why[256];
    cr_assert_eq(
        agent_proxy_stream_init(&ps, "spiffe://example.org/ns/shop/sa/cart", &sel, why, 256),
        WEFT_OK);
    Weft__Agent__V1__ProxyConfigResponse resp;
    cr_assert_eq(agent_proxycfg_build(pc, &ps, &resp, why, sizeof(why)), WEFT_EAGAIN,
                 "nothing before the CA's first snapshot, not the mesh defaults");
    cr_assert(agent_proxycfg_update(pc, snapshot(3, policy_yaml, 1, "spiffe://example.org/x")));
    cr_assert_eq(agent_proxycfg_build(pc, &ps, &resp, why, sizeof(why)), WEFT_OK, "%s", why);
    cr_assert_eq(resp.policy_version, 3);
    cr_assert_eq(resp.n_directory, 1);
    cr_assert_str_eq(resp.directory[0]->address, "198.18.1.7");
    cr_assert_eq(resp.n_deny_list, 1);
    struct policy_snapshot *snap;
    cr_assert_eq(policy_snapshot_decode(&snap, resp.policy.data, resp.policy.len, why, 256),
                 WEFT_OK, "%s", why);
    struct policy_result r;
    struct policy_request web = {"spiffe://example.org/ns/shop/sa/web", 8080};
    policy_eval(snap, &web, &r);
    cr_assert_eq(r.enforced.decision, POLICY_ALLOW);
    struct policy_request other = {"spiffe://example.org/ns/shop/sa/other", 8080};
    policy_eval(snap, &other, &r);
    cr_assert_eq(r.enforced.decision, POLICY_DENY, "the ALLOW policy selects the workload");
    policy_snapshot_free(snap);
    uint64_t seq = resp.sequence;

    /* the same snapshot again changes nothing; a new deny list does */
    cr_assert(!agent_proxycfg_update(pc, snapshot(3, policy_yaml, 1, "spiffe://example.org/x")));
    cr_assert(agent_proxycfg_update(pc, snapshot(3, policy_yaml, 1, "spiffe://example.org/y")));
    cr_assert_eq(agent_proxycfg_build(pc, &ps, &resp, why, sizeof(why)), WEFT_OK);
    cr_assert_gt(resp.sequence, seq);
    cr_assert_str_eq(resp.deny_list[0]->value, "spiffe://example.org/y");

    /* a policy set that does not load here keeps the one in force */
    cr_assert(!agent_proxycfg_update(pc, snapshot(4, "kind: [", 1, "spiffe://example.org/y")));
    cr_assert_eq(agent_proxycfg_policy_version(pc), 3);
    cr_assert_eq(agent_proxycfg_build(pc, &ps, &resp, why, sizeof(why)), WEFT_OK);

    /* a restarted CA numbers its policy 3 again, with other content: the content decides */
    static const char deny_all[] = "apiVersion: security.weft.dev/v1alpha1\n"
                                   "kind: AuthorizationPolicy\n"
                                   "metadata: {name: cart-deny-web, namespace: shop}\n"
                                   "spec:\n"
                                   "  action: DENY\n"
                                   "  rules:\n"
                                   "    - from: [{namespaces: [\"shop\"]}]\n";
    cr_assert(agent_proxycfg_update(pc, snapshot(3, deny_all, 1, "spiffe://example.org/y")));
    cr_assert_eq(agent_proxycfg_build(pc, &ps, &resp, why, sizeof(why)), WEFT_OK);
    cr_assert_eq(policy_snapshot_decode(&snap, resp.policy.data, resp.policy.len, why, 256),
                 WEFT_OK, "%s", why);
    policy_eval(snap, &web, &r);
    cr_assert_eq(r.enforced.decision, POLICY_DENY, "compiled again from the new content");
    policy_snapshot_free(snap);
    agent_proxy_stream_cleanup(&ps);
    agent_proxycfg_free(pc);
}

Test(proxycfg, with_no_policy_that_loads_a_proxy_gets_no_config_rather_than_the_defaults)
{
    struct agent_proxycfg *pc = agent_proxycfg_new();
    struct agent_selectors sel = {0};
    struct agent_proxy_stream ps;
    char why[256];
    cr_assert_eq(
        agent_proxy_stream_init(&ps, "spiffe://example.org/ns/shop/sa/cart", &sel, why, 256),
        WEFT_OK);
    (void)agent_proxycfg_update(pc, snapshot(1, "kind: [", 1, "spiffe://example.org/x"));
    Weft__Agent__V1__ProxyConfigResponse resp;
    cr_assert_eq(agent_proxycfg_build(pc, &ps, &resp, why, sizeof(why)), WEFT_EINVAL);
    cr_assert(strstr(why, "does not load") != NULL, "%s", why);
    agent_proxy_stream_cleanup(&ps);
    agent_proxycfg_free(pc);
}
