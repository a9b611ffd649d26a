/* policy/pb_test.c: a compiled snapshot survives the wire (proto/policy.proto), and the decoder
 * refuses what the YAML loader would refuse. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "policy/snapshot.h"
#include "test/testlib/policy_fixtures.h"

static const char POLICIES[] =
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: allow-frontend, namespace: shop}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: backend}}\n"
    "  action: ALLOW\n"
    "  closeGraceSeconds: 30\n"
    "  rules:\n"
    "  - from:\n"
    "    - principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\", "
    "\"spiffe://cluster.local/ns/ops/*\"]\n"
    "      notNamespaces: [legacy]\n"
    "    to:\n"
    "    - ports: [\"8080\", \"9000-9100\"]\n"
    "      notPorts: [\"9050\"]\n"
    "  - from:\n"
    "    - namespaces: [batch]\n"
    "---\n"
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: trial, namespace: shop}\n"
    "spec: {action: DENY, mode: dry-run, rules: [{from: [{principals: [\"*\"]}], to: [{ports: "
    "[\"22\"]}]}]}\n"
    "---\n"
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: audit, namespace: weft-system}\n"
    "spec: {action: AUDIT, rules: [{}]}\n"
    "---\n"
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: PeerAuthentication\n"
    "metadata: {name: strict, namespace: shop}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: backend}}\n"
    "  mtls: {mode: STRICT}\n"
    "  portLevelMtls: {\"8081\": {mode: PERMISSIVE}}\n";

static struct policy_set set;
static struct policy_snapshot *snap;

static void setup(void)
{
    struct fixture_workload fw;
    struct policy_config cfg;
    policy_set_init(&set);
    cr_assert_eq(fixture_set_from_yaml(&set, POLICIES), WEFT_OK);
    cr_assert_eq(fixture_workload_parse(&fw, "shop/backend,app=backend,tier=2"), WEFT_OK);
    policy_config_resolve(&cfg, &set);
    cfg.default_action = POLICY_ACTION_DENY;
    cr_assert_eq(policy_compile(&snap, &set, &cfg, &fw.w), WEFT_OK);
}

static void teardown(void)
{
    policy_snapshot_free(snap);
    policy_set_cleanup(&set);
}

TestSuite(policy_pb, .init = setup, .fini = teardown);

Test(policy_pb, round_trip_decides_every_request_the_same)
{
    uint8_t *wire;
    size_t len;
    char why[256];
    struct policy_snapshot *back = NULL;
    cr_assert_eq(policy_snapshot_encode(&wire, &len, snap), WEFT_OK);
    cr_assert_eq(policy_snapshot_decode(&back, wire, len, why, sizeof(why)), WEFT_OK, "%s", why);
    cr_assert_str_eq(back->workload.namespace_, "shop");
    cr_assert_eq(back->workload.num_labels, 2);
    cr_assert_eq(back->num_policies, snap->num_policies);
    cr_assert_eq(back->config.default_action, POLICY_ACTION_DENY);
    /* policy_compile copied closeGraceSeconds, and the wire kept it */
    cr_assert_str_eq(snap->policies[0].name, "allow-frontend");
    cr_assert_eq(snap->policies[0].close_grace_s, 30);
    cr_assert_eq(back->policies[0].close_grace_s, 30);
    cr_assert_eq(back->policies[1].close_grace_s, 0);
    static const char *const peers[] = {NULL,
                                        "spiffe://cluster.local/ns/shop/sa/frontend",
                                        "spiffe://cluster.local/ns/ops/sa/prom",
                                        "spiffe://cluster.local/ns/batch/sa/job",
                                        "spiffe://cluster.local/ns/legacy/sa/x",
                                        "spiffe://other.org/ns/shop/sa/frontend"};
    static const uint16_t ports[] = {22, 8080, 8081, 9000, 9050, 9100, 9101};
    size_t checked = 0;
    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
        for (size_t j = 0; j < sizeof(ports) / sizeof(ports[0]); j++) {
            struct policy_request req = {peers[i], ports[j]};
            struct policy_result a, b;
            char ta[1024], tb[1024];
            policy_eval(snap, &req, &a);
            policy_eval(back, &req, &b);
            policy_result_format(ta, sizeof(ta), snap, &a);
            policy_result_format(tb, sizeof(tb), back, &b);
            cr_assert_str_eq(ta, tb, "peer %s port %u", peers[i] ? peers[i] : "-", ports[j]);
            cr_assert_eq(a.mtls, b.mtls);
            checked++;
        }
    }
    cr_assert_eq(checked, 42);
    /* the encoding is stable: encode(decode(x)) == x */
    uint8_t *again;
    size_t again_len;
    cr_assert_eq(policy_snapshot_encode(&again, &again_len, back), WEFT_OK);
    cr_assert_eq(again_len, len);
    cr_assert_eq(memcmp(again, wire, len), 0);
    free(again);
    free(wire);
    policy_snapshot_free(back);
}

/* corrupt re-encodes the snapshot after |edit| changed it, and expects the decoder to refuse. */
static void expect_refused_after(void (*edit)(struct policy_snapshot *), const char *want)
{
    edit(snap);
    uint8_t *wire;
    size_t len;
    char why[256];
    struct policy_snapshot *back = (struct policy_snapshot *)1;
    cr_assert_eq(policy_snapshot_encode(&wire, &len, snap), WEFT_OK);
    cr_assert_eq(policy_snapshot_decode(&back, wire, len, why, sizeof(why)), WEFT_EPROTO);
    cr_assert_null(back);
    cr_assert_not_null(strstr(why, want), "why: %s (want %s)", why, want);
    free(wire);
}

static void bad_principal(struct policy_snapshot *s)
{
    struct policy_principal *p =
        (struct policy_principal *)s->policies[0].rules[0].from[0].principals;
    p[0].value = "spiffe://Cluster.local/ns/shop/sa/frontend";
    p[0].len = strlen(p[0].value);
}

static void bad_prefix(struct policy_snapshot *s)
{
    struct policy_principal *p =
        (struct policy_principal *)s->policies[0].rules[0].from[0].principals;
    p[1].value = "spiffe://cluster.local/ns/ops";
    p[1].len = strlen(p[1].value);
}

static void bad_port(struct policy_snapshot *s)
{
    struct policy_port_range *r = (struct policy_port_range *)s->policies[0].rules[0].to[0].ports;
    r[1].lo = 9200;
}

static void bad_namespace(struct policy_snapshot *s)
{
    const char **ns = (const char **)s->policies[0].rules[1].from[0].namespaces;
    ns[0] = "Batch";
}

static void unsorted(struct policy_snapshot *s)
{
    struct policy_snapshot_policy t = s->policies[0];
    s->policies[0] = s->policies[1];
    s->policies[1] = t;
}

static void bad_mtls_source(struct policy_snapshot *s) { s->mtls_mode_source = 7; }

static void long_close_grace(struct policy_snapshot *s)
{
    s->policies[1].close_grace_s = POLICY_MAX_CLOSE_GRACE_S + 1;
}

Test(policy_pb, refuses_a_bad_principal) { expect_refused_after(bad_principal, "principal"); }
Test(policy_pb, refuses_a_prefix_without_its_slash) { expect_refused_after(bad_prefix, "prefix"); }
Test(policy_pb, refuses_a_reversed_port_range) { expect_refused_after(bad_port, "port range"); }
Test(policy_pb, refuses_a_bad_namespace) { expect_refused_after(bad_namespace, "namespace"); }
Test(policy_pb, refuses_policies_out_of_order) { expect_refused_after(unsorted, "order"); }
Test(policy_pb, refuses_a_dangling_mtls_source) { expect_refused_after(bad_mtls_source, "mTLS"); }
Test(policy_pb, refuses_a_close_grace_over_an_hour)
{
    expect_refused_after(long_close_grace, "policy 1 has a close grace of 3601 s, over the limit "
                                           "of 3600");
}

Test(policy_pb, close_grace_survives_the_wire)
{
    /* 0 (the default), a common value and the limit itself */
    static const uint32_t graces[] = {0, 30, POLICY_MAX_CLOSE_GRACE_S};
    cr_assert_geq(snap->num_policies, 3);
    for (size_t i = 0; i < 3; i++) {
        snap->policies[i].close_grace_s = graces[i];
    }
    uint8_t *wire;
    size_t len;
    char why[256];
    struct policy_snapshot *back = NULL;
    cr_assert_eq(policy_snapshot_encode(&wire, &len, snap), WEFT_OK);
    cr_assert_eq(policy_snapshot_decode(&back, wire, len, why, sizeof(why)), WEFT_OK, "%s", why);
    cr_assert_eq(back->num_policies, snap->num_policies);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(back->policies[i].close_grace_s, graces[i], "policy %zu", i);
    }
    free(wire);
    policy_snapshot_free(back);
}

Test(policy_pb, refuses_what_is_not_a_snapshot)
{
    char why[256];
    struct policy_snapshot *back;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01};
    cr_assert_eq(policy_snapshot_decode(&back, garbage, sizeof(garbage), why, sizeof(why)),
                 WEFT_EPROTO);
    cr_assert_null(back);
    /* an empty message is a Snapshot of format 0 */
    cr_assert_eq(policy_snapshot_decode(&back, garbage, 0, why, sizeof(why)), WEFT_EPROTO);
    cr_assert_not_null(strstr(why, "format 0"), "%s", why);
    cr_assert_eq(
        policy_snapshot_decode(&back, garbage, POLICY_SNAPSHOT_MAX_BYTES + 1, why, sizeof(why)),
        WEFT_ELIMIT);
}
