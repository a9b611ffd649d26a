/* policy/scale_test.c: a decision costs a bounded number of lookups however many policies the
 * mesh holds (issue 3: "a few hash lookups no matter how many policies exist"). The cost is
 * counted (policy_result.lookups: hash probes plus clauses checked), never timed. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/snapshot.h"
#include "test/testlib/policy_fixtures.h"

#define NUM_POLICIES 10000
#define NUM_PREFIX 100    /* of them, ALLOW spiffe://cluster.local/ns/team-N/... */
#define NUM_NAMESPACE 100 /* ALLOW namespaces: [tenant-N] */
#define NUM_DENY 50       /* DENY one legacy ID each */
#define MAX_LOOKUPS 16

#define API "apiVersion: security.weft.dev/v1alpha1\n"
#define TD "spiffe://cluster.local"

static struct policy_set set;

static void setup(void) { policy_set_init(&set); }
static void teardown(void) { policy_set_cleanup(&set); }
TestSuite(policy_scale, .init = setup, .fini = teardown);

static void load_text(struct fixture_text *t)
{
    static char buf[8192];
    cr_assert_eq(fixture_set_from_yaml(&set, t->s), WEFT_OK, "%s",
                 fixture_errors(&set, buf, sizeof(buf)));
    free(t->s);
    memset(t, 0, sizeof(*t));
}

/* add_allow_exact: shop/allow-NNNNN lets spiffe://cluster.local/ns/shop/sa/client-N call the
 * backend's port 8080. */
static void add_allow_exact(struct fixture_text *t, int i)
{
    fixture_text_append(t,
                        "---\n" API "kind: AuthorizationPolicy\n"
                        "metadata: {name: allow-%05d, namespace: shop}\n"
                        "spec:\n"
                        "  selector: {matchLabels: {app: backend}}\n"
                        "  action: ALLOW\n"
                        "  rules:\n"
                        "  - from: [{principals: ['" TD "/ns/shop/sa/client-%d']}]\n"
                        "    to: [{ports: ['8080']}]\n",
                        i, i);
}

/* build_mesh loads NUM_POLICIES policies that all select shop/backend: exact principals, some
 * prefixes, some namespaces, some DENY. */
static void build_mesh(void)
{
    struct fixture_text t = {0};
    int n = 0;
    for (int i = 0; i < NUM_PREFIX; i++, n++) {
        fixture_text_append(&t,
                            "---\n" API "kind: AuthorizationPolicy\n"
                            "metadata: {name: allow-team-%03d, namespace: shop}\n"
                            "spec: {selector: {matchLabels: {app: backend}}, action: ALLOW, rules: "
                            "[{from: [{principals: ['" TD "/ns/team-%d/*']}], to: [{ports: "
                            "['8080']}]}]}\n",
                            i, i);
    }
    for (int i = 0; i < NUM_NAMESPACE; i++, n++) {
        fixture_text_append(&t,
                            "---\n" API "kind: AuthorizationPolicy\n"
                            "metadata: {name: allow-tenant-%03d, namespace: shop}\n"
                            "spec: {action: ALLOW, rules: [{from: [{namespaces: [tenant-%d]}], "
                            "to: [{ports: ['8080']}]}]}\n",
                            i, i);
    }
    for (int i = 0; i < NUM_DENY; i++, n++) {
        fixture_text_append(&t,
                            "---\n" API "kind: AuthorizationPolicy\n"
                            "metadata: {name: deny-legacy-%03d, namespace: weft-system}\n"
                            "spec: {action: DENY, rules: [{from: [{principals: "
                            "['spiffe://legacy.example.org/billing-%d']}]}]}\n",
                            i, i);
    }
    for (int i = 0; n < NUM_POLICIES; i++, n++) {
        add_allow_exact(&t, i);
    }
    load_text(&t);
    cr_assert_eq(set.num_authz, NUM_POLICIES);
}

static void build_one(void)
{
    struct fixture_text t = {0};
    add_allow_exact(&t, 1234);
    load_text(&t);
    cr_assert_eq(set.num_authz, 1);
}

static struct policy_snapshot *compile_backend(void)
{
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    struct fixture_workload w;
    cr_assert_eq(fixture_workload_parse(&w, "shop/backend,app=backend"), WEFT_OK);
    struct policy_snapshot *snap = NULL;
    cr_assert_eq(policy_compile(&snap, &set, &cfg, &w.w), WEFT_OK);
    return snap;
}

struct probe {
    const char *peer; /* NULL: unauthenticated */
    uint16_t port;
    const char *want_big; /* the decision among NUM_POLICIES policies */
};

static const struct probe probes[] = {
    {TD "/ns/shop/sa/client-1234", 8080,
     "decision=allow policy=shop/allow-01234 rule=0 reason=allow-matched"},
    {TD "/ns/shop/sa/client-9749", 8080,
     "decision=allow policy=shop/allow-09749 rule=0 reason=allow-matched"},
    {TD "/ns/shop/sa/client-1234", 9090,
     "decision=deny policy=shop/allow-00000 rule=- reason=no-allow-matched"},
    {TD "/ns/shop/sa/client-99999", 8080,
     "decision=deny policy=shop/allow-00000 rule=- reason=no-allow-matched"},
    {TD "/ns/team-42/sa/api", 8080,
     "decision=allow policy=shop/allow-team-042 rule=0 reason=allow-matched"},
    {TD "/ns/team-42", 8080,
     "decision=deny policy=shop/allow-00000 rule=- reason=no-allow-matched"},
    {TD "/ns/tenant-7/sa/web", 8080,
     "decision=allow policy=shop/allow-tenant-007 rule=0 reason=allow-matched"},
    {"spiffe://legacy.example.org/billing-3", 8080,
     "decision=deny policy=weft-system/deny-legacy-003 rule=0 reason=deny-matched"},
    {"spiffe://other.org/a/b/c/d/e/f/g", 8080,
     "decision=deny policy=shop/allow-00000 rule=- reason=no-allow-matched"},
    {NULL, 8080, "decision=deny policy=shop/allow-00000 rule=- reason=no-allow-matched"},
};

#define NUM_PROBES (sizeof(probes) / sizeof(probes[0]))

static void lookups_of(uint32_t *out, bool check_decisions)
{
    struct policy_snapshot *snap = compile_backend();
    for (size_t i = 0; i < NUM_PROBES; i++) {
        struct policy_request req = {probes[i].peer, probes[i].port};
        struct policy_result r;
        policy_eval(snap, &req, &r);
        out[i] = r.lookups;
        if (check_decisions) {
            char line[512];
            policy_result_format(line, sizeof(line), snap, &r);
            cr_assert_str_eq(line, probes[i].want_big, "%s:%u: got %s",
                             probes[i].peer != NULL ? probes[i].peer : "unauthenticated",
                             probes[i].port, line);
        }
    }
    policy_snapshot_free(snap);
}

Test(policy_scale, decision_among_10000_policies_takes_a_bounded_number_of_lookups)
{
    build_mesh();
    uint32_t big[NUM_PROBES], small[NUM_PROBES];
    lookups_of(big, true);
    policy_set_cleanup(&set);
    policy_set_init(&set);
    build_one();
    lookups_of(small, false);
    for (size_t i = 0; i < NUM_PROBES; i++) {
        const char *who = probes[i].peer != NULL ? probes[i].peer : "unauthenticated";
        cr_log_info("%s:%u: %u lookups among %d policies, %u among 1", who, probes[i].port, big[i],
                    NUM_POLICIES, small[i]);
        cr_assert_leq(big[i], MAX_LOOKUPS, "%s: %u lookups among %d policies", who, big[i],
                      NUM_POLICIES);
        /* the same order of magnitude as with one policy */
        uint32_t base = small[i] > 0 ? small[i] : 1;
        cr_assert_lt(big[i], 10 * base, "%s: %u lookups among %d policies, %u among 1", who, big[i],
                     NUM_POLICIES, small[i]);
    }
}

Test(policy_scale, decisions_among_10000_policies_agree_with_the_reference)
{
    build_mesh();
    /* three of the probes, through the reference evaluator's policy-by-policy walk */
    static const size_t picks[] = {0, 4, 7, 9};
    for (size_t k = 0; k < sizeof(picks) / sizeof(picks[0]); k++) {
        const struct probe *p = &probes[picks[k]];
        struct fixture_outcome o;
        cr_assert_eq(fixture_decide(&o, &set, NULL, "shop/backend,app=backend", p->peer, p->port),
                     WEFT_OK);
        cr_assert_str_eq(o.line, p->want_big);
        cr_assert_str_eq(o.reference, p->want_big);
        cr_assert_eq(o.num_policies, NUM_POLICIES);
    }
}

Test(policy_scale, snapshot_keeps_only_the_policies_that_select_the_workload)
{
    /* 10,000 policies, 10 of which select shop/backend (app=backend, service account backend) */
    static const char *const selecting[] = {
        "shop/a-no-selector",    "shop/b-by-label", "shop/c-by-sa",
        "shop/d-by-both",        "shop/e-empty",    "shop/f-deny",
        "shop/g-audit",          "shop/h-dry-run",  "weft-system/root-by-label",
        "weft-system/root-wide",
    };
    static const char *const specs[] = {
        "{action: ALLOW, rules: [{}]}",
        "{selector: {matchLabels: {app: backend}}, action: ALLOW, rules: [{}]}",
        "{selector: {serviceAccounts: [backend]}, action: ALLOW, rules: [{}]}",
        "{selector: {matchLabels: {app: backend}, serviceAccounts: [x, backend]}, action: ALLOW}",
        "{selector: {}, action: ALLOW}",
        "{action: DENY, rules: [{to: [{ports: ['22']}]}]}",
        "{action: AUDIT, rules: [{}]}",
        "{action: DENY, mode: dry-run, rules: [{}]}",
        "{selector: {matchLabels: {app: backend}}, action: DENY, rules: [{to: [{ports: ['23']}]}]}",
        "{action: AUDIT}",
    };
    struct fixture_text t = {0};
    for (size_t i = 0; i < 10; i++) {
        char ns[64];
        const char *slash = strchr(selecting[i], '/');
        snprintf(ns, sizeof(ns), "%.*s", (int)(slash - selecting[i]), selecting[i]);
        fixture_text_append(&t,
                            "---\n" API "kind: AuthorizationPolicy\n"
                            "metadata: {name: %s, namespace: %s}\nspec: %s\n",
                            slash + 1, ns, specs[i]);
    }
    for (int i = 0; i < NUM_POLICIES - 10; i++) {
        const char *ns, *spec;
        switch (i % 5) {
        case 0: /* another namespace, no selector */
            ns = "ops";
            spec = "{action: ALLOW, rules: [{}]}";
            break;
        case 1: /* the workload's namespace, another label */
            ns = "shop";
            spec = "{selector: {matchLabels: {app: frontend}}, action: ALLOW, rules: [{}]}";
            break;
        case 2: /* the right label, and one the workload lacks */
            ns = "shop";
            spec = "{selector: {matchLabels: {app: backend, tier: db}}, action: DENY, rules: [{}]}";
            break;
        case 3: /* another service account */
            ns = "shop";
            spec = "{selector: {serviceAccounts: [frontend]}, action: ALLOW, rules: [{}]}";
            break;
        default: /* the root namespace, another label */
            ns = "weft-system";
            spec = "{selector: {matchLabels: {app: db}}, action: DENY, rules: [{}]}";
            break;
        }
        fixture_text_append(&t,
                            "---\n" API "kind: AuthorizationPolicy\n"
                            "metadata: {name: other-%05d, namespace: %s}\nspec: %s\n",
                            i, ns, spec);
    }
    load_text(&t);
    cr_assert_eq(set.num_authz, NUM_POLICIES);

    struct policy_snapshot *snap = compile_backend();
    cr_assert_eq(snap->num_policies, 10);
    for (size_t i = 0; i < 10; i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s/%s", snap->policies[i].namespace_, snap->policies[i].name);
        cr_assert_str_eq(name, selecting[i]);
    }
    /* one clause per rule (none has several `from` entries); d, e and root-wide have none */
    cr_assert_eq(snap->num_clauses, 7);
    struct policy_request req = {TD "/ns/shop/sa/frontend", 23};
    struct policy_result r;
    policy_eval(snap, &req, &r);
    char line[512];
    policy_result_format(line, sizeof(line), snap, &r);
    cr_assert_str_eq(line, "decision=deny policy=weft-system/root-by-label rule=0 "
                           "reason=deny-matched dry_run=deny dry_run_policy=shop/h-dry-run "
                           "dry_run_rule=0 dry_run_reason=deny-matched audit=shop/g-audit "
                           "audit_rule=0");
    cr_assert_leq(r.lookups, MAX_LOOKUPS);
    policy_snapshot_free(snap);
}
