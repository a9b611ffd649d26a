/* policy/eval_test.c: the contract of policy_eval() (issue 3, "Evaluation order"), rule by
 * rule. Every decision is asserted as its stable log line, from the compiled evaluator and from
 * the reference evaluator of test/testlib/policy_fixtures (policy_selects and
 * policy_rule_matches applied to the parsed set, policy by policy), so the index and the plain
 * meaning of the language are checked against each other on every case. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"
#include "policy/internal.h"
#include "policy/snapshot.h"
#include "test/testlib/policy_fixtures.h"

static struct policy_set set;

static void setup(void) { policy_set_init(&set); }
static void teardown(void) { policy_set_cleanup(&set); }
TestSuite(policy_eval, .init = setup, .fini = teardown);

#define TD "spiffe://cluster.local"
#define FRONTEND TD "/ns/shop/sa/frontend"
#define CART TD "/ns/shop/sa/cart"
#define PROMETHEUS TD "/ns/ops/sa/prometheus"
#define LEGACY "spiffe://legacy.example.org/billing"

#define API "apiVersion: security.weft.dev/v1alpha1\n"
#define AUTHZ(ns, name, spec)                                                                      \
    "---\n" API "kind: AuthorizationPolicy\nmetadata: {name: " name ", namespace: " ns "}\n"       \
    "spec: " spec "\n"
#define PEERAUTHN(ns, name, spec)                                                                  \
    "---\n" API "kind: PeerAuthentication\nmetadata: {name: " name ", namespace: " ns "}\n"        \
    "spec: " spec "\n"
#define MESH(spec) "---\n" API "kind: MeshConfig\nmetadata: {name: mesh}\nspec: " spec "\n"
#define FROM(field, value) "{from: [{" field ": ['" value "']}]}"

#define DEFAULT_ALLOW "decision=allow policy=- rule=- reason=default-allow"
#define DEFAULT_DENY "decision=deny policy=- rule=- reason=default-deny"

static void load(const char *yaml)
{
    char buf[8192];
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s",
                 fixture_errors(&set, buf, sizeof(buf)));
}

static void reload(const char *yaml)
{
    policy_set_cleanup(&set);
    policy_set_init(&set);
    load(yaml);
}

/* decide_with checks that a connection from |peer| (NULL: unauthenticated) to |workload|:|port|
 * is decided as |want| by policy_eval and by the reference, and returns the outcome. */
static struct fixture_outcome decide_with(const struct policy_config *cfg, const char *workload,
                                          const char *peer, uint16_t port, const char *want)
{
    struct fixture_outcome o;
    cr_assert_eq(fixture_decide(&o, &set, cfg, workload, peer, port), WEFT_OK);
    const char *who = peer != NULL ? peer : "unauthenticated";
    cr_assert_str_eq(o.line, want, "policy_eval, %s -> %s:%u:\n  got  %s\n  want %s", who, workload,
                     port, o.line, want);
    cr_assert_str_eq(o.reference, want, "reference, %s -> %s:%u:\n  got  %s\n  want %s", who,
                     workload, port, o.reference, want);
    cr_assert_eq(o.result.mtls, o.reference_mtls, "mTLS mode, %s:%u", workload, port);
    cr_assert_eq(o.result.enforced.decision == POLICY_ALLOW,
                 strncmp(want, "decision=allow", 14) == 0);
    return o;
}

static struct fixture_outcome decide(const char *workload, const char *peer, uint16_t port,
                                     const char *want)
{
    return decide_with(NULL, workload, peer, port, want);
}

/* --- step 1: an enforced DENY that matches denies ----------------------------------------- */

Test(policy_eval, deny_beats_allow)
{
    load(AUTHZ("shop", "allow-frontend",
               "{action: ALLOW, rules: [" FROM("principals", FRONTEND) "]}")
             AUTHZ("shop", "deny-frontend",
                   "{action: DENY, rules: [{to: [{ports: ['9090']}]}, " FROM("principals",
                                                                             FRONTEND) "]}"));
    struct fixture_outcome o = decide("shop/backend", FRONTEND, 8080,
                                      "decision=deny policy=shop/deny-frontend rule=1 "
                                      "reason=deny-matched");
    cr_assert_eq(o.result.enforced.decision, POLICY_DENY);
    cr_assert_eq(o.result.enforced.reason, POLICY_REASON_DENY_MATCHED);
    cr_assert_eq(o.result.enforced.policy, 1); /* snapshot order: allow-frontend, deny-frontend */
    cr_assert_eq(o.result.enforced.rule, 1);
    decide("shop/backend", CART, 9090,
           "decision=deny policy=shop/deny-frontend rule=0 "
           "reason=deny-matched");
    decide("shop/backend", NULL, 9090,
           "decision=deny policy=shop/deny-frontend rule=0 "
           "reason=deny-matched");
    decide("shop/backend", CART, 8080,
           "decision=deny policy=shop/allow-frontend rule=- "
           "reason=no-allow-matched");
}

Test(policy_eval, root_namespace_deny_beats_own_namespace_allow)
{
    load(AUTHZ("shop", "allow-all", "{action: ALLOW, rules: [{}]}") AUTHZ(
        "weft-system", "deny-legacy",
        "{action: DENY, rules: [" FROM("principals", "spiffe://legacy.example.org/*") "]}"));
    decide("shop/backend", LEGACY, 8080,
           "decision=deny policy=weft-system/deny-legacy rule=0 reason=deny-matched");
    decide("shop/backend", FRONTEND, 8080,
           "decision=allow policy=shop/allow-all rule=0 reason=allow-matched");
    decide("ops/grafana", LEGACY, 3000,
           "decision=deny policy=weft-system/deny-legacy rule=0 reason=deny-matched");
}

/* --- step 2: an enforced ALLOW that applies needs a match ---------------------------------- */

Test(policy_eval, applying_allow_policy_needs_a_match)
{
    load(AUTHZ("shop", "backend-allow-frontend",
               "{selector: {matchLabels: {app: backend}}, action: ALLOW, rules: [" FROM(
                   "principals", FRONTEND) "]}"));
    decide("shop/backend,app=backend", FRONTEND, 8080,
           "decision=allow policy=shop/backend-allow-frontend rule=0 reason=allow-matched");
    decide("shop/backend,app=backend", CART, 8080,
           "decision=deny policy=shop/backend-allow-frontend rule=- reason=no-allow-matched");
    decide("shop/backend,app=backend", NULL, 8080,
           "decision=deny policy=shop/backend-allow-frontend rule=- reason=no-allow-matched");
    /* a workload the policy does not select: step 3 */
    decide("shop/cart,app=cart", CART, 8080, DEFAULT_ALLOW);
}

/* --- step 3: the default ------------------------------------------------------------------ */

Test(policy_eval, default_allow)
{
    load(MESH("{}"));
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW);
    decide("shop/backend", NULL, 8080, DEFAULT_ALLOW);
    /* an ALLOW policy of another namespace does not apply; a DENY that does not match decides
     * nothing */
    reload(AUTHZ("ops", "allow-prometheus",
                 "{action: ALLOW, rules: [" FROM("principals", PROMETHEUS) "]}")
               AUTHZ("shop", "deny-legacy",
                     "{action: DENY, rules: [" FROM("principals", LEGACY) "]}"));
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW);
    decide("ops/grafana", FRONTEND, 3000,
           "decision=deny policy=ops/allow-prometheus rule=- reason=no-allow-matched");
}

Test(policy_eval, meshconfig_default_deny)
{
    load(MESH("{defaultAction: DENY}")
             AUTHZ("shop", "backend-allow-frontend",
                   "{selector: {matchLabels: {app: backend}}, action: ALLOW, rules: [" FROM(
                       "principals", FRONTEND) "]}")
                 AUTHZ("shop", "deny-legacy",
                       "{action: DENY, rules: [" FROM("principals", LEGACY) "]}"));
    decide("shop/cart", FRONTEND, 8080, DEFAULT_DENY);
    decide("shop/cart", NULL, 8080, DEFAULT_DENY);
    decide("shop/backend,app=backend", FRONTEND, 8080,
           "decision=allow policy=shop/backend-allow-frontend rule=0 reason=allow-matched");
    decide("shop/backend,app=backend", CART, 8080,
           "decision=deny policy=shop/backend-allow-frontend rule=- reason=no-allow-matched");
    decide("shop/cart", LEGACY, 8080,
           "decision=deny policy=shop/deny-legacy rule=0 reason=deny-matched");
    /* an explicit ALLOW is the default */
    reload(MESH("{defaultAction: ALLOW}"));
    decide("shop/cart", FRONTEND, 8080, DEFAULT_ALLOW);
}

Test(policy_eval, config_default_deny_given_by_the_caller)
{
    load(AUTHZ("shop", "deny-legacy", "{action: DENY, rules: [" FROM("principals", LEGACY) "]}"));
    struct policy_config cfg = {"weft-system", POLICY_ACTION_DENY, POLICY_MTLS_PERMISSIVE};
    decide_with(&cfg, "shop/cart", FRONTEND, 8080, DEFAULT_DENY);
    cfg.default_action = POLICY_ACTION_ALLOW;
    decide_with(&cfg, "shop/cart", FRONTEND, 8080, DEFAULT_ALLOW);
}

/* --- which policies apply ----------------------------------------------------------------- */

Test(policy_eval, root_namespace_policies_apply_to_every_namespace_and_selectors_filter)
{
    load(AUTHZ("weft-system", "db-allow-backend",
               "{selector: {matchLabels: {app: db}}, action: ALLOW, rules: [" FROM(
                   "namespaces", "backend") "]}"));
    static const char no_match[] =
        "decision=deny policy=weft-system/db-allow-backend rule=- reason=no-allow-matched";
    decide("shop/db,app=db", FRONTEND, 5432, no_match);
    decide("ops/db,app=db", FRONTEND, 5432, no_match);
    decide("weft-system/db,app=db", FRONTEND, 5432, no_match);
    decide("ops/db,app=db", TD "/ns/backend/sa/api", 5432,
           "decision=allow policy=weft-system/db-allow-backend rule=0 reason=allow-matched");
    decide("shop/web,app=web", FRONTEND, 5432, DEFAULT_ALLOW);
    const struct policy_authz *p = fixture_find_authz(&set, "weft-system", "db-allow-backend");
    struct fixture_workload w;
    cr_assert_eq(fixture_workload_parse(&w, "ops/db,app=db"), WEFT_OK);
    cr_assert(policy_selects(&p->selector, p->namespace_, "weft-system", &w.w));
    cr_assert(!policy_selects(&p->selector, p->namespace_, "mesh-root", &w.w));

    /* with another root namespace, weft-system is an ordinary namespace */
    reload(MESH("{rootNamespace: mesh-root}")
               AUTHZ("weft-system", "db-allow-backend",
                     "{selector: {matchLabels: {app: db}}, action: ALLOW, rules: [" FROM(
                         "namespaces", "backend") "]}")
                   AUTHZ("mesh-root", "deny-legacy",
                         "{action: DENY, rules: [" FROM("principals", LEGACY) "]}"));
    decide("shop/db,app=db", FRONTEND, 5432, DEFAULT_ALLOW);
    decide("weft-system/db,app=db", FRONTEND, 5432, no_match);
    decide("shop/db,app=db", LEGACY, 5432,
           "decision=deny policy=mesh-root/deny-legacy rule=0 reason=deny-matched");
}

Test(policy_eval, selector_match_labels_and_service_accounts)
{
    /* an ALLOW policy without rules: where it applies, nothing is allowed */
    load(AUTHZ("shop", "sel",
               "{selector: {matchLabels: {app: backend, tier: api}, serviceAccounts: [backend, "
               "backend-v2]}, action: ALLOW}"));
    static const char applies[] = "decision=deny policy=shop/sel rule=- reason=no-allow-matched";
    static const struct {
        const char *workload;
        bool applies;
    } cases[] = {
        {"shop/backend,app=backend,tier=api", true},
        {"shop/backend-v2,tier=api,app=backend,extra=yes", true}, /* more labels are fine */
        {"shop/backend,app=backend", false},                      /* lacks tier */
        {"shop/other,app=backend,tier=api", false},               /* service account */
        {"shop/backend,app=frontend,tier=api", false},            /* label value */
        {"shop/backend,App=backend,tier=api", false},             /* label keys are exact */
        {"ops/backend,app=backend,tier=api", false},              /* namespace */
        {"shop/backend", false},
    };
    const struct policy_authz *p = fixture_find_authz(&set, "shop", "sel");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        decide(cases[i].workload, FRONTEND, 8080, cases[i].applies ? applies : DEFAULT_ALLOW);
        struct fixture_workload w;
        cr_assert_eq(fixture_workload_parse(&w, cases[i].workload), WEFT_OK);
        cr_assert_eq(policy_selects(&p->selector, p->namespace_, "weft-system", &w.w),
                     cases[i].applies, "%s", cases[i].workload);
    }
    /* service accounts alone; an empty selector; no selector */
    reload(AUTHZ("shop", "by-sa", "{selector: {serviceAccounts: [cart]}, action: ALLOW}")
               AUTHZ("ops", "empty-selector", "{selector: {}, action: ALLOW}")
                   AUTHZ("web", "no-selector", "{action: ALLOW}"));
    decide("shop/cart,app=x", FRONTEND, 80,
           "decision=deny policy=shop/by-sa rule=- reason=no-allow-matched");
    decide("shop/backend", FRONTEND, 80, DEFAULT_ALLOW);
    decide("ops/anything,a=b", FRONTEND, 80,
           "decision=deny policy=ops/empty-selector rule=- reason=no-allow-matched");
    decide("web/anything", FRONTEND, 80,
           "decision=deny policy=web/no-selector rule=- reason=no-allow-matched");
}

/* --- principals --------------------------------------------------------------------------- */

/* check_peers decides |peers| against "shop/backend" port 8080 where a single ALLOW policy
 * "shop/p" applies, and checks policy_rule_matches on its rule 0 agrees. */
struct peer_case {
    const char *peer;
    bool match;
};

static void check_peers(const struct peer_case *cases, size_t n)
{
    const struct policy_authz *p = fixture_find_authz(&set, "shop", "p");
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        decide("shop/backend", cases[i].peer, 8080,
               cases[i].match ? "decision=allow policy=shop/p rule=0 reason=allow-matched"
                              : "decision=deny policy=shop/p rule=- reason=no-allow-matched");
        cr_assert_eq(policy_rule_matches(&p->rules[0], cases[i].peer, 8080), cases[i].match, "%s",
                     cases[i].peer != NULL ? cases[i].peer : "unauthenticated");
    }
}

Test(policy_eval, exact_principal)
{
    load(AUTHZ("shop", "p", "{action: ALLOW, rules: [" FROM("principals", FRONTEND) "]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {FRONTEND "2", false},
        {FRONTEND "/x", false},
        {TD "/ns/shop/sa", false},
        {"spiffe://other.org/ns/shop/sa/frontend", false},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(policy_eval, prefix_principal_is_strictly_below_its_path)
{
    load(AUTHZ("shop", "p", "{action: ALLOW, rules: [" FROM("principals", TD "/ns/shop/*") "]}"));
    static const struct peer_case cases[] = {
        {TD "/ns/shop/sa/frontend", true},
        {TD "/ns/shop/x", true},
        {TD "/ns/shop/a/b/c/d", true},
        {TD "/ns/shop", false},       /* the prefix's own path */
        {TD "/ns/shop2/sa/x", false}, /* a sibling with a common string prefix */
        {TD "/ns/shopping", false},
        {TD "/ns", false},
        {TD, false},
        {"spiffe://other.org/ns/shop/sa/x", false},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(policy_eval, trust_domain_prefix_principal)
{
    load(AUTHZ("shop", "p", "{action: ALLOW, rules: [" FROM("principals", TD "/*") "]}"));
    static const struct peer_case cases[] = {
        {TD "/ns/shop/sa/frontend", true},
        {TD "/x", true},
        {TD, false}, /* the trust domain itself */
        {"spiffe://cluster.localx/x", false},
        {"spiffe://cluster.local.evil.org/x", false},
        {"spiffe://other.org/x", false},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(policy_eval, star_principal_is_any_authenticated_peer)
{
    load(AUTHZ("shop", "p", "{action: ALLOW, rules: [{from: [{principals: ['*']}]}]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {"spiffe://other.org/anything", true},
        {"spiffe://other.org", true},
        {NULL, false}, /* not even "*" matches a plaintext peer */
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(policy_eval, several_principals_are_any_of)
{
    load(AUTHZ("shop", "p",
               "{action: ALLOW, rules: [{from: [{principals: ['" FRONTEND "', '" TD
               "/ns/ops/*']}]}]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {PROMETHEUS, true},
        {CART, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

/* --- namespaces --------------------------------------------------------------------------- */

Test(policy_eval, namespaces_match_the_ns_segment_of_ns_sa_ids_only)
{
    load(AUTHZ("shop", "p", "{action: ALLOW, rules: [{from: [{namespaces: [shop, ops]}]}]}"));
    static const struct peer_case cases[] = {
        {TD "/ns/shop/sa/frontend", true},
        {"spiffe://other.org/ns/ops/sa/prometheus", true}, /* any trust domain */
        {TD "/ns/shop", false},                            /* no /sa/SA */
        {TD "/ns/shop/sa", false},
        {TD "/ns/shop/sa/x/y", false}, /* more segments */
        {TD "/ns/shop/xa/frontend", false},
        {TD "/foo/ns/shop/sa/x", false},
        {TD "/ns/shopping/sa/x", false},
        {TD "/ns/sho/sa/x", false},
        {TD "/workload", false},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

/* --- the "not" forms ---------------------------------------------------------------------- */

Test(policy_eval, not_principals)
{
    load(AUTHZ("shop", "deny-others",
               "{action: DENY, rules: [{from: [{notPrincipals: ['" FRONTEND "', '" TD
               "/ns/ops/*']}]}]}"));
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW);
    decide("shop/backend", PROMETHEUS, 8080, DEFAULT_ALLOW);
    decide("shop/backend", CART, 8080,
           "decision=deny policy=shop/deny-others rule=0 reason=deny-matched");
    decide("shop/backend", TD "/ns/ops", 8080, /* the prefix's own path is not below it */
           "decision=deny policy=shop/deny-others rule=0 reason=deny-matched");
    /* a plaintext peer: notPrincipals is false for it, so this DENY does not catch it */
    decide("shop/backend", NULL, 8080, DEFAULT_ALLOW);

    reload(AUTHZ("shop", "p", "{action: ALLOW, rules: [" FROM("notPrincipals", CART) "]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {CART, false},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(policy_eval, not_namespaces)
{
    load(AUTHZ("shop", "deny-outside",
               "{action: DENY, rules: [{from: [{notNamespaces: [shop]}]}]}"));
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW);
    decide("shop/backend", PROMETHEUS, 8080,
           "decision=deny policy=shop/deny-outside rule=0 reason=deny-matched");
    /* an ID of another shape has no namespace, so it is not in shop */
    decide("shop/backend", TD "/workload", 8080,
           "decision=deny policy=shop/deny-outside rule=0 reason=deny-matched");
    decide("shop/backend", NULL, 8080, DEFAULT_ALLOW);

    reload(AUTHZ("shop", "p", "{action: ALLOW, rules: [" FROM("notNamespaces", "ops") "]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {PROMETHEUS, false},
        {TD "/ns/ops", true},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

/* --- from entries and fields -------------------------------------------------------------- */

Test(policy_eval, from_entries_are_any_of)
{
    load(AUTHZ("shop", "p",
               "{action: ALLOW, rules: [{from: [{principals: ['" FRONTEND
               "']}, {namespaces: [ops]}]}]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {PROMETHEUS, true},
        {CART, false},
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(policy_eval, fields_of_one_from_entry_are_all_of)
{
    load(AUTHZ("shop", "p",
               "{action: ALLOW, rules: [{from: [{principals: ['" TD
               "/*'], namespaces: [shop, ops], "
               "notPrincipals: ['" CART "'], notNamespaces: [ops]}]}]}"));
    static const struct peer_case cases[] = {
        {FRONTEND, true},
        {CART, false},                              /* notPrincipals */
        {PROMETHEUS, false},                        /* notNamespaces */
        {"spiffe://other.org/ns/shop/sa/x", false}, /* principals */
        {TD "/ns/web/sa/x", false},                 /* namespaces */
        {NULL, false},
    };
    check_peers(cases, sizeof(cases) / sizeof(cases[0]));
}

/* --- to ----------------------------------------------------------------------------------- */

struct port_case {
    uint16_t port;
    bool match;
};

static void check_ports(const char *peer, const struct port_case *cases, size_t n)
{
    const struct policy_authz *p = fixture_find_authz(&set, "shop", "p");
    for (size_t i = 0; i < n; i++) {
        decide("shop/backend", peer, cases[i].port,
               cases[i].match ? "decision=allow policy=shop/p rule=0 reason=allow-matched"
                              : "decision=deny policy=shop/p rule=- reason=no-allow-matched");
        cr_assert_eq(policy_rule_matches(&p->rules[0], peer, cases[i].port), cases[i].match,
                     "port %u", cases[i].port);
    }
}

Test(policy_eval, ports_ranges_and_not_ports)
{
    load(AUTHZ(
        "shop", "p",
        "{action: ALLOW, rules: [{to: [{ports: ['8080', '9000-9100'], notPorts: ['9050']}]}]}"));
    static const struct port_case cases[] = {
        {8080, true},  {8081, false}, {8079, false}, {9000, true},  {9100, true},
        {9050, false}, {9049, true},  {8999, false}, {9101, false}, {1, false},
    };
    check_ports(FRONTEND, cases, sizeof(cases) / sizeof(cases[0]));
    check_ports(NULL, cases, sizeof(cases) / sizeof(cases[0]));

    reload(
        AUTHZ("shop", "p", "{action: ALLOW, rules: [{to: [{ports: ['80']}, {ports: ['443']}]}]}"));
    static const struct port_case any_of[] = {{80, true}, {443, true}, {8080, false}};
    check_ports(FRONTEND, any_of, sizeof(any_of) / sizeof(any_of[0]));

    reload(AUTHZ("shop", "p", "{action: ALLOW, rules: [{to: [{notPorts: ['22', '6000-6100']}]}]}"));
    static const struct port_case not_only[] = {{22, false},   {23, true},   {6000, false},
                                                {6100, false}, {6101, true}, {65535, true}};
    check_ports(FRONTEND, not_only, sizeof(not_only) / sizeof(not_only[0]));

    reload(AUTHZ("shop", "p", "{action: ALLOW, rules: [{to: [{ports: ['1-65535']}]}]}"));
    static const struct port_case all[] = {{1, true}, {65535, true}};
    check_ports(FRONTEND, all, sizeof(all) / sizeof(all[0]));
}

Test(policy_eval, rule_needs_its_from_and_its_to)
{
    load(AUTHZ("shop", "p",
               "{action: ALLOW, rules: [{from: [{principals: ['" FRONTEND
               "']}], to: [{ports: ['8080']}]}]}"));
    const struct policy_rule *r = &fixture_find_authz(&set, "shop", "p")->rules[0];
    decide("shop/backend", FRONTEND, 8080,
           "decision=allow policy=shop/p rule=0 reason=allow-matched");
    decide("shop/backend", FRONTEND, 9090,
           "decision=deny policy=shop/p rule=- reason=no-allow-matched");
    decide("shop/backend", CART, 8080,
           "decision=deny policy=shop/p rule=- reason=no-allow-matched");
    cr_assert(policy_rule_matches(r, FRONTEND, 8080));
    cr_assert(!policy_rule_matches(r, FRONTEND, 9090));
    cr_assert(!policy_rule_matches(r, CART, 8080));
    cr_assert(policy_target_matches(&r->to[0], 8080));
    cr_assert(!policy_source_matches(&r->from[0], NULL));
}

/* --- the unauthenticated peer ------------------------------------------------------------- */

Test(policy_eval, unauthenticated_peer_matches_only_entries_that_name_no_peer)
{
    load(AUTHZ("shop", "p",
               "{action: ALLOW, rules: [" FROM("principals", "*") ", " FROM(
                   "namespaces",
                   "shop") ", " FROM("notPrincipals",
                                     CART) ", " FROM("notNamespaces",
                                                     "ops") ", "
                                                            "{to: [{ports: ['8080']}]}, {from: "
                                                            "[{}], to: [{ports: ['9090']}]}]}"));
    decide("shop/backend", NULL, 7070,
           "decision=deny policy=shop/p rule=- reason=no-allow-matched");
    decide("shop/backend", NULL, 8080, "decision=allow policy=shop/p rule=4 reason=allow-matched");
    decide("shop/backend", NULL, 9090, "decision=allow policy=shop/p rule=5 reason=allow-matched");
    const struct policy_authz *p = fixture_find_authz(&set, "shop", "p");
    for (size_t r = 0; r < 4; r++) {
        cr_assert(!policy_rule_matches(&p->rules[r], NULL, 8080), "rule %zu", r);
        cr_assert(policy_rule_matches(&p->rules[r], FRONTEND, 8080), "rule %zu", r);
    }
    /* a DENY without `from` catches plaintext peers too */
    reload(AUTHZ("shop", "deny-8080", "{action: DENY, rules: [{to: [{ports: ['8080']}]}]}"));
    decide("shop/backend", NULL, 8080,
           "decision=deny policy=shop/deny-8080 rule=0 reason=deny-matched");
    decide("shop/backend", NULL, 8081, DEFAULT_ALLOW);
}

/* --- mTLS --------------------------------------------------------------------------------- */

Test(policy_eval, strict_mtls_refuses_plaintext_before_authorization)
{
    load(MESH("{mtls: {mode: STRICT}}") AUTHZ("shop", "allow-all", "{action: ALLOW, rules: [{}]}")
             AUTHZ("shop", "audit-all", "{action: AUDIT, rules: [{}]}"));
    struct fixture_outcome o =
        decide("shop/backend", NULL, 8080,
               "decision=deny policy=\"mesh default\" rule=- reason=mtls-strict");
    cr_assert_eq(o.result.mtls, POLICY_MTLS_STRICT);
    cr_assert_eq(o.result.enforced.reason, POLICY_REASON_MTLS_STRICT);
    cr_assert_eq(o.result.dry_run.decision, POLICY_DENY);
    cr_assert_eq(o.result.dry_run.reason, POLICY_REASON_MTLS_STRICT);
    cr_assert(!o.result.dry_run_matched);
    cr_assert_eq(o.result.audit_policy, POLICY_NONE);
    decide("shop/backend", FRONTEND, 8080,
           "decision=allow policy=shop/allow-all rule=0 reason=allow-matched "
           "audit=shop/audit-all audit_rule=0");

    reload(PEERAUTHN("shop", "strict", "{mtls: {mode: STRICT}}"));
    decide("shop/backend", NULL, 8080,
           "decision=deny policy=shop/strict rule=- reason=mtls-strict");
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW);
    decide("ops/grafana", NULL, 3000, DEFAULT_ALLOW); /* not ops' policy */
}

Test(policy_eval, permissive_port_exception)
{
    load(PEERAUTHN("shop", "backend-strict",
                   "{selector: {matchLabels: {app: backend}}, mtls: {mode: STRICT}, "
                   "portLevelMtls: {'8080': {mode: PERMISSIVE}}}")
             PEERAUTHN("shop", "web-permissive",
                       "{selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}, "
                       "portLevelMtls: {'9090': {mode: STRICT}}}"));
    struct fixture_outcome o = decide("shop/backend,app=backend", NULL, 8080, DEFAULT_ALLOW);
    cr_assert_eq(o.result.mtls, POLICY_MTLS_PERMISSIVE);
    o = decide("shop/backend,app=backend", NULL, 9090,
               "decision=deny policy=shop/backend-strict rule=- reason=mtls-strict");
    cr_assert_eq(o.result.mtls, POLICY_MTLS_STRICT);
    decide("shop/web,app=web", NULL, 8080, DEFAULT_ALLOW);
    decide("shop/web,app=web", NULL, 9090,
           "decision=deny policy=shop/web-permissive rule=- reason=mtls-strict");
    decide("shop/cart", NULL, 9090, DEFAULT_ALLOW);
}

/* expect_mtls checks the effective mode of |workload|:|port| and, when STRICT, which object is
 * named for it. */
static void expect_mtls(const char *workload, uint16_t port, enum policy_mtls mode,
                        const char *source)
{
    if (mode == POLICY_MTLS_STRICT) {
        char want[300];
        const char *q = strchr(source, ' ') != NULL ? "\"" : "";
        snprintf(want, sizeof(want), "decision=deny policy=%s%s%s rule=- reason=mtls-strict", q,
                 source, q);
        decide(workload, NULL, port, want);
    } else {
        struct fixture_outcome o = decide(workload, NULL, port, DEFAULT_ALLOW);
        cr_assert_eq(o.result.mtls, mode);
    }
    /* and policy_mtls_mode names the same source */
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    struct fixture_workload w;
    cr_assert_eq(fixture_workload_parse(&w, workload), WEFT_OK);
    struct policy_snapshot *snap;
    cr_assert_eq(policy_compile(&snap, &set, &cfg, &w.w), WEFT_OK);
    uint32_t src;
    cr_assert_eq(policy_mtls_mode(snap, port, &src), mode, "%s:%u", workload, port);
    cr_assert_str_eq(snap->mtls_sources[src], source, "%s:%u", workload, port);
    policy_snapshot_free(snap);
}

#define SEL_BACKEND "selector: {matchLabels: {app: backend}}"
#define BACKEND "shop/backend,app=backend"

Test(policy_eval, mtls_precedence_own_selector_over_own_namespace_wide)
{
    load(PEERAUTHN("shop", "wide", "{mtls: {mode: STRICT}}")
             PEERAUTHN("shop", "sel", "{" SEL_BACKEND ", mtls: {mode: PERMISSIVE}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_PERMISSIVE, "shop/sel");
    expect_mtls("shop/cart", 8080, POLICY_MTLS_STRICT, "shop/wide");
}

Test(policy_eval, mtls_precedence_own_port_level_over_own_selector_mode)
{
    load(PEERAUTHN("shop", "sel",
                   "{" SEL_BACKEND ", mtls: {mode: STRICT}, "
                   "portLevelMtls: {'8080': {mode: PERMISSIVE}, '9090': {}}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_PERMISSIVE, "shop/sel");
    expect_mtls(BACKEND, 8081, POLICY_MTLS_STRICT, "shop/sel");
    expect_mtls(BACKEND, 9090, POLICY_MTLS_STRICT, "shop/sel"); /* a port without a mode inherits */
}

Test(policy_eval, mtls_precedence_own_namespace_wide_over_root_selector)
{
    load(PEERAUTHN("shop", "wide", "{mtls: {mode: PERMISSIVE}}")
             PEERAUTHN("weft-system", "sel", "{" SEL_BACKEND ", mtls: {mode: STRICT}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_PERMISSIVE, "shop/wide");
    expect_mtls("ops/backend,app=backend", 8080, POLICY_MTLS_STRICT, "weft-system/sel");
}

Test(policy_eval, mtls_precedence_own_namespace_wide_over_root_port_level)
{
    /* the root namespace's port-level mode is less specific than the workload's own
     * namespace-wide policy */
    load(PEERAUTHN("shop", "wide", "{mtls: {mode: STRICT}}") PEERAUTHN(
        "weft-system", "sel",
        "{" SEL_BACKEND ", mtls: {mode: STRICT}, portLevelMtls: {'8080': {mode: PERMISSIVE}}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_STRICT, "shop/wide");
    expect_mtls("ops/backend,app=backend", 8080, POLICY_MTLS_PERMISSIVE, "weft-system/sel");
    /* and less specific than a selecting policy of its own namespace, even one without ports */
    reload(PEERAUTHN("shop", "sel", "{" SEL_BACKEND ", mtls: {mode: STRICT}}") PEERAUTHN(
        "weft-system", "sel",
        "{" SEL_BACKEND ", mtls: {mode: STRICT}, portLevelMtls: {'8080': {mode: PERMISSIVE}}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_STRICT, "shop/sel");
}

Test(policy_eval, mtls_precedence_root_selector_over_root_wide_over_mesh)
{
    load(PEERAUTHN("weft-system", "wide", "{mtls: {mode: STRICT}}")
             PEERAUTHN("weft-system", "sel", "{" SEL_BACKEND ", mtls: {mode: PERMISSIVE}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_PERMISSIVE, "weft-system/sel");
    expect_mtls("shop/cart", 8080, POLICY_MTLS_STRICT, "weft-system/wide");
    reload(MESH("{mtls: {mode: STRICT}}")
               PEERAUTHN("weft-system", "wide", "{mtls: {mode: PERMISSIVE}}"));
    expect_mtls("shop/cart", 8080, POLICY_MTLS_PERMISSIVE, "weft-system/wide");
    reload(MESH("{mtls: {mode: STRICT}}"));
    expect_mtls("shop/cart", 8080, POLICY_MTLS_STRICT, "mesh default");
    reload(MESH("{mtls: {mode: PERMISSIVE}}") PEERAUTHN("ops", "strict", "{mtls: {mode: STRICT}}"));
    expect_mtls("shop/cart", 8080, POLICY_MTLS_PERMISSIVE, "mesh default");
}

Test(policy_eval, mtls_level_without_a_mode_falls_through)
{
    load(PEERAUTHN("shop", "wide", "{mtls: {mode: STRICT}}")
             PEERAUTHN("shop", "sel", "{" SEL_BACKEND "}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_STRICT, "shop/wide");
    /* a selecting policy that does not select is no level at all */
    reload(PEERAUTHN("shop", "wide", "{mtls: {mode: PERMISSIVE}}") PEERAUTHN(
        "shop", "sel", "{selector: {matchLabels: {app: other}}, mtls: {mode: STRICT}}"));
    expect_mtls(BACKEND, 8080, POLICY_MTLS_PERMISSIVE, "shop/wide");
}

/* --- dry-run ------------------------------------------------------------------------------ */

Test(policy_eval, dry_run_deny_is_reported_not_enforced)
{
    load(AUTHZ("shop", "trial-deny",
               "{action: DENY, mode: dry-run, rules: [" FROM("principals", FRONTEND) "]}"));
    struct fixture_outcome o =
        decide("shop/backend", FRONTEND, 8080,
               DEFAULT_ALLOW " dry_run=deny dry_run_policy=shop/trial-deny dry_run_rule=0 "
                             "dry_run_reason=deny-matched");
    cr_assert(o.result.dry_run_matched);
    cr_assert_eq(o.result.enforced.decision, POLICY_ALLOW);
    cr_assert_eq(o.result.dry_run.decision, POLICY_DENY);
    cr_assert_eq(o.result.dry_run.reason, POLICY_REASON_DENY_MATCHED);
    cr_assert_eq(o.result.dry_run.policy, 0);
    cr_assert_eq(o.result.dry_run.rule, 0);
    o = decide("shop/backend", CART, 8080, DEFAULT_ALLOW);
    cr_assert(!o.result.dry_run_matched);
    cr_assert_eq(o.result.dry_run.reason, POLICY_REASON_DEFAULT_ALLOW);
}

Test(policy_eval, dry_run_allow_does_not_count_as_an_applying_allow)
{
    load(AUTHZ("shop", "trial-allow",
               "{action: ALLOW, mode: dry-run, rules: [" FROM("principals", FRONTEND) "]}"));
    struct fixture_outcome o =
        decide("shop/backend", FRONTEND, 8080,
               DEFAULT_ALLOW " dry_run=allow dry_run_policy=shop/trial-allow dry_run_rule=0 "
                             "dry_run_reason=allow-matched");
    cr_assert(o.result.dry_run_matched);
    /* no dry-run rule matched, but enforcing the trial would change the outcome */
    o = decide("shop/backend", CART, 8080,
               DEFAULT_ALLOW " dry_run=deny dry_run_policy=shop/trial-allow dry_run_rule=- "
                             "dry_run_reason=no-allow-matched");
    cr_assert(!o.result.dry_run_matched);
    decide("shop/backend", NULL, 8080,
           DEFAULT_ALLOW " dry_run=deny dry_run_policy=shop/trial-allow dry_run_rule=- "
                         "dry_run_reason=no-allow-matched");
}

Test(policy_eval, dry_run_beside_enforced_policies)
{
    load(AUTHZ("shop", "a-allow", "{action: ALLOW, rules: [" FROM("principals", FRONTEND) "]}")
             AUTHZ("shop", "b-trial",
                   "{action: ALLOW, mode: dry-run, rules: [" FROM("principals", CART) "]}"));
    decide("shop/backend", CART, 8080,
           "decision=deny policy=shop/a-allow rule=- reason=no-allow-matched dry_run=allow "
           "dry_run_policy=shop/b-trial dry_run_rule=0 dry_run_reason=allow-matched");
    decide("shop/backend", FRONTEND, 8080,
           "decision=allow policy=shop/a-allow rule=0 reason=allow-matched");
    /* the same decision both ways, and no dry-run match: nothing more to say */
    struct fixture_outcome o = decide("shop/backend", PROMETHEUS, 8080,
                                      "decision=deny policy=shop/a-allow rule=- "
                                      "reason=no-allow-matched");
    cr_assert_eq(o.result.dry_run.decision, POLICY_DENY);
    cr_assert_eq(o.result.dry_run.reason, POLICY_REASON_NO_ALLOW_MATCHED);
    cr_assert_eq(o.result.dry_run.policy, 0);
}

Test(policy_eval, dry_run_verdict_reports_the_first_policy_by_name)
{
    /* were the trial enforced, two DENY policies would match: the first by name is named */
    load(AUTHZ("shop", "z-deny", "{action: DENY, rules: [" FROM("principals", FRONTEND) "]}")
             AUTHZ("shop", "a-trial",
                   "{action: DENY, mode: dry-run, rules: [" FROM("principals", FRONTEND) "]}"));
    decide("shop/backend", FRONTEND, 8080,
           "decision=deny policy=shop/z-deny rule=0 reason=deny-matched dry_run=deny "
           "dry_run_policy=shop/a-trial dry_run_rule=0 dry_run_reason=deny-matched");
    reload(AUTHZ("shop", "z-allow", "{action: ALLOW, rules: [" FROM("principals", FRONTEND) "]}")
               AUTHZ("shop", "a-trial",
                     "{action: ALLOW, mode: dry-run, rules: [{to: [{ports: ['1']}]}, " FROM(
                         "principals", FRONTEND) "]}"));
    decide("shop/backend", FRONTEND, 8080,
           "decision=allow policy=shop/z-allow rule=0 reason=allow-matched dry_run=allow "
           "dry_run_policy=shop/a-trial dry_run_rule=1 dry_run_reason=allow-matched");
}

/* --- AUDIT -------------------------------------------------------------------------------- */

Test(policy_eval, audit_marks_and_changes_nothing)
{
    load(AUTHZ("shop", "allow-frontend",
               "{action: ALLOW, rules: [" FROM("principals", FRONTEND) "]}")
             AUTHZ("shop", "log-ops",
                   "{action: AUDIT, rules: [" FROM("namespaces", "web") ", " FROM("namespaces",
                                                                                  "ops") "]}"));
    struct fixture_outcome o = decide("shop/backend", PROMETHEUS, 8080,
                                      "decision=deny policy=shop/allow-frontend rule=- "
                                      "reason=no-allow-matched audit=shop/log-ops audit_rule=1");
    cr_assert_eq(o.result.audit_policy, 1);
    cr_assert_eq(o.result.audit_rule, 1);
    cr_assert(!o.result.dry_run_matched);
    o = decide("shop/backend", FRONTEND, 8080,
               "decision=allow policy=shop/allow-frontend rule=0 reason=allow-matched");
    cr_assert_eq(o.result.audit_policy, POLICY_NONE);
    cr_assert_eq(o.result.audit_rule, POLICY_NONE);

    /* an AUDIT policy is no ALLOW policy: alone, it leaves the default */
    reload(AUTHZ("shop", "log-all", "{action: AUDIT, rules: [{}]}"));
    decide("shop/backend", CART, 8080, DEFAULT_ALLOW " audit=shop/log-all audit_rule=0");
    decide("shop/backend", NULL, 8080, DEFAULT_ALLOW " audit=shop/log-all audit_rule=0");
    reload(MESH("{defaultAction: DENY}") AUTHZ("shop", "log-all", "{action: AUDIT, rules: [{}]}"));
    decide("shop/backend", CART, 8080, DEFAULT_DENY " audit=shop/log-all audit_rule=0");
    /* the first matching AUDIT policy by name */
    reload(AUTHZ("shop", "b-log", "{action: AUDIT, rules: [{}]}")
               AUTHZ("weft-system", "a-log", "{action: AUDIT, rules: [{}]}") AUTHZ(
                   "shop", "a-log", "{action: AUDIT, rules: [" FROM("principals", FRONTEND) "]}"));
    decide("shop/backend", CART, 8080, DEFAULT_ALLOW " audit=shop/b-log audit_rule=0");
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW " audit=shop/a-log audit_rule=0");
}

/* --- rules: none, and {} ------------------------------------------------------------------ */

Test(policy_eval, allow_with_no_rules_allows_nothing)
{
    static const char want[] = "decision=deny policy=shop/nothing rule=- reason=no-allow-matched";
    load(AUTHZ("shop", "nothing", "{action: ALLOW}"));
    decide("shop/backend", FRONTEND, 8080, want);
    decide("shop/backend", NULL, 8080, want);
    reload(AUTHZ("shop", "nothing", "{action: ALLOW, rules: []}"));
    decide("shop/backend", FRONTEND, 8080, want);
}

Test(policy_eval, deny_with_no_rules_denies_nothing)
{
    load(AUTHZ("shop", "nothing", "{action: DENY}")
             AUTHZ("shop", "nothing-either", "{action: DENY, rules: []}"));
    decide("shop/backend", FRONTEND, 8080, DEFAULT_ALLOW);
    decide("shop/backend", NULL, 8080, DEFAULT_ALLOW);
}

Test(policy_eval, empty_rule_matches_everything)
{
    load(AUTHZ("shop", "all", "{action: ALLOW, rules: [{}]}"));
    decide("shop/backend", FRONTEND, 8080,
           "decision=allow policy=shop/all rule=0 reason=allow-matched");
    decide("shop/backend", NULL, 1, "decision=allow policy=shop/all rule=0 reason=allow-matched");
    decide("shop/backend", "spiffe://other.org/x", 65535,
           "decision=allow policy=shop/all rule=0 reason=allow-matched");
    reload(AUTHZ("shop", "all", "{action: ALLOW, rules: [{}]}")
               AUTHZ("shop", "none", "{action: DENY, rules: [{}]}"));
    decide("shop/backend", FRONTEND, 8080,
           "decision=deny policy=shop/none rule=0 reason=deny-matched");
    decide("shop/backend", NULL, 8080, "decision=deny policy=shop/none rule=0 reason=deny-matched");
}

/* --- which policy and rule are named ------------------------------------------------------ */

Test(policy_eval, ties_name_the_first_policy_by_namespace_and_name_and_its_first_rule)
{
    /* read in the other order: the set's order is by (namespace, name) */
    load(AUTHZ("shop", "b-allow", "{action: ALLOW, rules: [{}]}") AUTHZ(
        "shop", "a-allow",
        "{action: ALLOW, rules: [" FROM("principals", CART) ", {from: [{principals: ['" CART
                                                            "']}, {principals: ['" FRONTEND
                                                            "']}]}, {}]}"));
    struct fixture_outcome o =
        decide("shop/backend", FRONTEND, 8080,
               "decision=allow policy=shop/a-allow rule=1 reason=allow-matched");
    cr_assert_eq(o.result.enforced.policy, 0);
    cr_assert_eq(o.result.enforced.rule, 1);
    decide("shop/backend", PROMETHEUS, 8080,
           "decision=allow policy=shop/a-allow rule=2 reason=allow-matched");

    /* across namespaces: "shop" sorts before "weft-system", "aaa-root" before "shop" */
    reload(AUTHZ("weft-system", "deny", "{action: DENY, rules: [{}]}")
               AUTHZ("shop", "deny", "{action: DENY, rules: [{}]}"));
    decide("shop/backend", FRONTEND, 8080,
           "decision=deny policy=shop/deny rule=0 reason=deny-matched");
    reload(MESH("{rootNamespace: aaa-root}")
               AUTHZ("aaa-root", "deny", "{action: DENY, rules: [{}]}")
                   AUTHZ("shop", "deny", "{action: DENY, rules: [{}]}"));
    decide("shop/backend", FRONTEND, 8080,
           "decision=deny policy=aaa-root/deny rule=0 reason=deny-matched");
}

Test(policy_eval, no_allow_matched_names_the_first_enforced_allow_that_applies)
{
    load(AUTHZ("shop", "a-trial",
               "{action: ALLOW, mode: dry-run, rules: [" FROM("principals", CART) "]}")
             AUTHZ("shop", "b-audit", "{action: AUDIT, rules: [" FROM("principals", CART) "]}")
                 AUTHZ("shop", "c-other", "{selector: {matchLabels: {app: other}}, action: ALLOW}")
                     AUTHZ("shop", "d-deny",
                           "{action: DENY, rules: [" FROM("principals", LEGACY) "]}")
                         AUTHZ("shop", "e-allow",
                               "{action: ALLOW, rules: [" FROM("principals", PROMETHEUS) "]}")
                             AUTHZ("shop", "f-allow",
                                   "{action: ALLOW, rules: [" FROM("principals", PROMETHEUS) "]}"));
    struct fixture_outcome o =
        decide("shop/backend", FRONTEND, 8080,
               "decision=deny policy=shop/e-allow rule=- reason=no-allow-matched");
    cr_assert_eq(o.result.enforced.policy, 3); /* a-trial, b-audit, d-deny, e-allow, f-allow */
    cr_assert_eq(o.result.enforced.rule, POLICY_NONE);
    /* were the trial enforced, it would be the first ALLOW policy that applies */
    cr_assert_eq(o.result.dry_run.decision, POLICY_DENY);
    cr_assert_eq(o.result.dry_run.reason, POLICY_REASON_NO_ALLOW_MATCHED);
    cr_assert_eq(o.result.dry_run.policy, 0);
    cr_assert_eq(o.num_policies, 5); /* c-other does not select shop/backend */
    /* the dry-run view counts the dry-run ALLOW policy too, and it matches */
    decide("shop/backend", CART, 8080,
           "decision=deny policy=shop/e-allow rule=- reason=no-allow-matched dry_run=allow "
           "dry_run_policy=shop/a-trial dry_run_rule=0 dry_run_reason=allow-matched "
           "audit=shop/b-audit audit_rule=0");
}

/* --- text forms --------------------------------------------------------------------------- */

Test(policy_eval, verdict_and_result_format)
{
    load(AUTHZ("payments", "only-frontend",
               "{action: ALLOW, rules: [" FROM("principals", FRONTEND) "]}")
             PEERAUTHN("payments", "strict", "{mtls: {mode: STRICT}}"));
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    struct fixture_workload w;
    cr_assert_eq(fixture_workload_parse(&w, "payments/api"), WEFT_OK);
    struct policy_snapshot *snap;
    cr_assert_eq(policy_compile(&snap, &set, &cfg, &w.w), WEFT_OK);
    char buf[512];

    struct policy_verdict v = {POLICY_DENY, POLICY_REASON_NO_ALLOW_MATCHED, 0, POLICY_NONE};
    int n = policy_verdict_format(buf, sizeof(buf), snap, &v);
    cr_assert_str_eq(buf,
                     "decision=deny policy=payments/only-frontend rule=- reason=no-allow-matched");
    cr_assert_eq(n, (int)strlen(buf));
    v = (struct policy_verdict){POLICY_ALLOW, POLICY_REASON_ALLOW_MATCHED, 0, 0};
    policy_verdict_format(buf, sizeof(buf), snap, &v);
    cr_assert_str_eq(buf,
                     "decision=allow policy=payments/only-frontend rule=0 reason=allow-matched");
    v = (struct policy_verdict){POLICY_DENY, POLICY_REASON_DENY_MATCHED, 0, 12};
    policy_verdict_format(buf, sizeof(buf), snap, &v);
    cr_assert_str_eq(buf,
                     "decision=deny policy=payments/only-frontend rule=12 reason=deny-matched");
    v = (struct policy_verdict){POLICY_ALLOW, POLICY_REASON_DEFAULT_ALLOW, POLICY_NONE,
                                POLICY_NONE};
    policy_verdict_format(buf, sizeof(buf), snap, &v);
    cr_assert_str_eq(buf, "decision=allow policy=- rule=- reason=default-allow");
    v = (struct policy_verdict){POLICY_DENY, POLICY_REASON_DEFAULT_DENY, POLICY_NONE, POLICY_NONE};
    policy_verdict_format(buf, sizeof(buf), snap, &v);
    cr_assert_str_eq(buf, "decision=deny policy=- rule=- reason=default-deny");
    v = (struct policy_verdict){POLICY_DENY, POLICY_REASON_MTLS_STRICT, 0, POLICY_NONE};
    policy_verdict_format(buf, sizeof(buf), snap, &v);
    cr_assert_str_eq(buf, "decision=deny policy=\"mesh default\" rule=- reason=mtls-strict");

    /* the evaluator's own results */
    struct policy_result r;
    struct policy_request req = {NULL, 8080};
    policy_eval(snap, &req, &r);
    n = policy_result_format(buf, sizeof(buf), snap, &r);
    cr_assert_str_eq(buf, "decision=deny policy=payments/strict rule=- reason=mtls-strict");
    cr_assert_eq(n, (int)strlen(buf));
    policy_verdict_format(buf, sizeof(buf), snap, &r.enforced);
    cr_assert_str_eq(buf, "decision=deny policy=payments/strict rule=- reason=mtls-strict");
    req.peer_id = CART;
    policy_eval(snap, &req, &r);
    policy_result_format(buf, sizeof(buf), snap, &r);
    cr_assert_str_eq(buf,
                     "decision=deny policy=payments/only-frontend rule=- reason=no-allow-matched");
    req.peer_id = FRONTEND;
    policy_eval(snap, &req, &r);
    policy_result_format(buf, sizeof(buf), snap, &r);
    cr_assert_str_eq(buf,
                     "decision=allow policy=payments/only-frontend rule=0 reason=allow-matched");

    /* a short buffer: snprintf's contract, NUL-terminated, the full length returned */
    char small[16];
    n = policy_result_format(small, sizeof(small), snap, &r);
    cr_assert_eq(n, (int)strlen(buf));
    cr_assert_str_eq(small, "decision=allow ");
    policy_snapshot_free(snap);

    cr_assert_str_eq(policy_reason_str(POLICY_REASON_NONE), "none");
    cr_assert_str_eq(policy_action_str(POLICY_ACTION_AUDIT), "AUDIT");
    cr_assert_str_eq(policy_mode_str(POLICY_MODE_DRY_RUN), "dry-run");
    cr_assert_str_eq(policy_mtls_str(POLICY_MTLS_STRICT), "STRICT");
}

/* --- the snapshot ------------------------------------------------------------------------- */

Test(policy_eval, snapshot_outlives_its_set_and_keeps_only_what_selects_the_workload)
{
    load(AUTHZ("shop", "a",
               "{selector: {matchLabels: {app: backend}}, action: ALLOW, rules: [" FROM(
                   "principals", FRONTEND) "]}")
             AUTHZ("shop", "b", "{selector: {matchLabels: {app: web}}, action: DENY, rules: [{}]}")
                 AUTHZ("ops", "c", "{action: DENY, rules: [{}]}")
                     AUTHZ("weft-system", "d", "{action: AUDIT, rules: [{}]}"));
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    struct fixture_workload w;
    cr_assert_eq(fixture_workload_parse(&w, BACKEND), WEFT_OK);
    struct policy_snapshot *snap;
    cr_assert_eq(policy_compile(&snap, &set, &cfg, &w.w), WEFT_OK);
    policy_set_cleanup(&set);
    policy_set_init(&set);
    cr_assert_eq(snap->num_policies, 2);
    cr_assert_str_eq(snap->policies[0].name, "a");
    cr_assert_str_eq(snap->policies[1].namespace_, "weft-system");
    cr_assert_eq(snap->first_enforced_allow, 0);
    struct policy_result r;
    struct policy_request req = {FRONTEND, 8080};
    policy_eval(snap, &req, &r);
    char buf[256];
    policy_result_format(buf, sizeof(buf), snap, &r);
    cr_assert_str_eq(buf, "decision=allow policy=shop/a rule=0 reason=allow-matched "
                          "audit=weft-system/d audit_rule=0");
    policy_snapshot_free(snap);
}

Test(policy_eval, peer_id_that_is_no_spiffe_id_matches_no_principal)
{
    /* policy_eval is given verified IDs; given something shorter than "spiffe://" it must still
     * not read past the string's end (the copy on the heap lets ASan check). */
    load(AUTHZ("shop", "p",
               "{action: ALLOW, rules: [{from: [{principals: ['*']}]}, " FROM(
                   "principals", TD "/*") ", " FROM("namespaces", "shop") "]}"));
    static const char *const peers[] = {"x", "", "spiffe:", "http://cluster.local/ns/shop/sa/x"};
    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
        char *peer = weft_xstrndup(peers[i], strlen(peers[i]));
        /* authenticated, so "*" matches it; nothing else does */
        decide("shop/backend", peer, 8080,
               "decision=allow policy=shop/p rule=0 reason=allow-matched");
        const struct policy_authz *p = fixture_find_authz(&set, "shop", "p");
        cr_assert(!policy_rule_matches(&p->rules[1], peer, 8080), "\"%s\"", peer);
        cr_assert(!policy_rule_matches(&p->rules[2], peer, 8080), "\"%s\"", peer);
        free(peer);
    }
}
