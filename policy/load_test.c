/* policy/load_test.c: the contract of the policy loader (issue 3, "The language"): what loads,
 * into what, and for each way a document can be wrong, the exact "FILE:LINE:COLUMN: PATH:" its
 * error starts with. An object with an error is never added. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/mem.h"
#include "policy/policy.h"
#include "test/testlib/policy_fixtures.h"

static struct policy_set set;
static char dir[256];

static void setup(void)
{
    policy_set_init(&set);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(dir, sizeof(dir), "%s/weft-policy-load-XXXXXX", tmp != NULL ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    policy_set_cleanup(&set);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(policy_load, .init = setup, .fini = teardown);

/* write_file writes |text| to DIR/|rel|, making the directories on the way. */
static void write_file(const char *rel, const void *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static void write_text(const char *rel, const char *text) { write_file(rel, text, strlen(text)); }

static const char *errors(void)
{
    static char buf[16384];
    return fixture_errors(&set, buf, sizeof(buf));
}

static void assert_prefix(const char *text, const char *want)
{
    cr_assert_eq(strncmp(text, want, strlen(want)), 0, "error\n  %s\ndoes not start with\n  %s",
                 text, want);
}

/* expect_refused loads |yaml| as t.yaml, checks that it is refused, that nothing was added, and
 * that error |index| starts with |want|. */
static void expect_refused_at(const char *yaml, size_t index, const char *want)
{
    cr_assert_eq(fixture_load_yaml(&set, "t.yaml", yaml), WEFT_EINVAL, "accepted:\n%s", yaml);
    cr_assert_gt(set.num_errors, index, "errors: %s", errors());
    assert_prefix(set.errors[index].text, want);
    cr_assert_eq(set.num_authz, 0);
    cr_assert_eq(set.num_peerauthn, 0);
    cr_assert(!set.has_mesh);
}

static void expect_refused(const char *yaml, const char *want) { expect_refused_at(yaml, 0, want); }

/* expect_one_error: exactly one error, and it starts with |want|. */
static void expect_one_error(const char *yaml, const char *want)
{
    expect_refused(yaml, want);
    cr_assert_eq(set.num_errors, 1, "errors: %s", errors());
}

static void reset(void)
{
    policy_set_cleanup(&set);
    policy_set_init(&set);
}

#define API "apiVersion: security.weft.dev/v1alpha1\n"
/* Lines 1-4; the spec's fields start on line 5, column 3. */
#define AUTHZ_HEAD API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n"
#define PEERAUTHN_HEAD API "kind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec:\n"

/* --- what loads --------------------------------------------------------------------------- */

static const char AUTHZ_FILE[] =
    "# two policies and an empty document\n"
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata:\n"
    "  name: backend-allow-frontend\n"
    "  namespace: shop\n"
    "spec:\n"
    "  selector:\n"
    "    matchLabels: {tier: api, app: backend}\n"
    "    serviceAccounts: [backend, backend-canary]\n"
    "  action: ALLOW\n"
    "  mode: enforce\n"
    "  rules:\n"
    "  - from:\n"
    "    - principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\",\n"
    "                   \"spiffe://cluster.local/ns/ops/*\", \"*\"]\n"
    "      notPrincipals: [\"spiffe://cluster.local/ns/ops/sa/intruder\"]\n"
    "      namespaces: [shop, ops]\n"
    "      notNamespaces: [kube-system]\n"
    "    - namespaces: [\"batch\"]\n"
    "    to:\n"
    "    - ports: [\"8080\", \"9000-9100\"]\n"
    "      notPorts: [\"9050\"]\n"
    "  - to:\n"
    "    - notPorts: [\"22\"]\n"
    "---\n"
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: deny-legacy, namespace: shop}\n"
    "spec:\n"
    "  action: DENY\n"
    "  mode: dry-run\n"
    "  rules:\n"
    "  - {}\n"
    "---\n";

static const char PEERAUTHN_FILE[] = "apiVersion: security.weft.dev/v1alpha1\n"
                                     "kind: PeerAuthentication\n"
                                     "metadata: {name: backend-strict, namespace: shop}\n"
                                     "spec:\n"
                                     "  selector:\n"
                                     "    matchLabels: {app: backend}\n"
                                     "  mtls: {mode: STRICT}\n"
                                     "  portLevelMtls:\n"
                                     "    \"9090\": {mode: STRICT}\n"
                                     "    \"8080\": {mode: PERMISSIVE}\n"
                                     "---\n"
                                     "apiVersion: security.weft.dev/v1alpha1\n"
                                     "kind: AuthorizationPolicy\n"
                                     "metadata: {name: audit-all, namespace: mesh-root}\n"
                                     "spec: {action: AUDIT, rules: [{}]}\n";

static const char MESH_FILE[] = "apiVersion: security.weft.dev/v1alpha1\n"
                                "kind: MeshConfig\n"
                                "metadata: {name: mesh}\n"
                                "spec:\n"
                                "  rootNamespace: mesh-root\n"
                                "  defaultAction: DENY\n"
                                "  mtls: {mode: STRICT}\n";

Test(policy_load, directory_tree_of_all_three_kinds)
{
    write_text("10-authz.yaml", AUTHZ_FILE);
    write_text("sub/peer.yml", PEERAUTHN_FILE);
    write_text("sub/deeper/mesh.yaml", MESH_FILE);
    /* none of these is read: each would be an error */
    write_text(".hidden.yaml", "{{{ not yaml");
    write_text(".git/config.yaml", "kind: Nonsense\n");
    write_text("README.md", "kind: Nonsense\n");
    write_text("sub/peer.yml.bak", "kind: Nonsense\n");
    write_text("sub/yaml", "kind: Nonsense\n");

    cr_assert_eq(policy_set_load_path(&set, dir), WEFT_OK, "%s", errors());
    cr_assert_eq(policy_set_finish(&set), WEFT_OK, "%s", errors());
    cr_assert_eq(set.num_errors, 0);
    cr_assert_eq(set.num_authz, 3);
    cr_assert_eq(set.num_peerauthn, 1);
    cr_assert(set.has_mesh);

    /* sorted by (namespace, name) */
    const struct policy_authz *a = &set.authz[0];
    cr_assert_str_eq(a->namespace_, "mesh-root");
    cr_assert_str_eq(a->name, "audit-all");
    cr_assert_eq(a->action, POLICY_ACTION_AUDIT);
    cr_assert_eq(a->num_rules, 1);
    cr_assert_eq(a->rules[0].num_from, 0);
    cr_assert_eq(a->rules[0].num_to, 0);
    cr_assert(!a->selector.present);

    a = &set.authz[1];
    cr_assert_str_eq(a->namespace_, "shop");
    cr_assert_str_eq(a->name, "backend-allow-frontend");
    char want_file[400];
    snprintf(want_file, sizeof(want_file), "%s/10-authz.yaml", dir);
    cr_assert_str_eq(a->loc.file, want_file);
    cr_assert_eq(a->loc.line, 2);
    cr_assert_eq(a->loc.column, 1);
    cr_assert_eq(a->action, POLICY_ACTION_ALLOW);
    cr_assert_eq(a->mode, POLICY_MODE_ENFORCE);
    cr_assert(a->selector.present);
    cr_assert_eq(a->selector.num_labels, 2);
    cr_assert_str_eq(a->selector.label_keys[0], "app"); /* sorted by key */
    cr_assert_str_eq(a->selector.label_values[0], "backend");
    cr_assert_str_eq(a->selector.label_keys[1], "tier");
    cr_assert_str_eq(a->selector.label_values[1], "api");
    cr_assert_eq(a->selector.num_service_accounts, 2);
    cr_assert_str_eq(a->selector.service_accounts[0], "backend");
    cr_assert_str_eq(a->selector.service_accounts[1], "backend-canary");
    cr_assert_eq(a->num_rules, 2);
    const struct policy_rule *r = &a->rules[0];
    cr_assert_eq(r->loc.line, 14);
    cr_assert_eq(r->num_from, 2);
    const struct policy_source *s = &r->from[0];
    cr_assert_eq(s->num_principals, 3);
    cr_assert_eq(s->principals[0].kind, POLICY_PRINCIPAL_EXACT);
    cr_assert_str_eq(s->principals[0].value, "spiffe://cluster.local/ns/shop/sa/frontend");
    cr_assert_eq(s->principals[0].len, strlen("spiffe://cluster.local/ns/shop/sa/frontend"));
    cr_assert_eq(s->principals[1].kind, POLICY_PRINCIPAL_PREFIX);
    cr_assert_str_eq(s->principals[1].value, "spiffe://cluster.local/ns/ops/");
    cr_assert_eq(s->principals[1].len, strlen("spiffe://cluster.local/ns/ops/"));
    cr_assert_eq(s->principals[2].kind, POLICY_PRINCIPAL_ANY);
    cr_assert_eq(s->num_not_principals, 1);
    cr_assert_str_eq(s->not_principals[0].value, "spiffe://cluster.local/ns/ops/sa/intruder");
    cr_assert_eq(s->num_namespaces, 2);
    cr_assert_str_eq(s->namespaces[0], "shop");
    cr_assert_str_eq(s->namespaces[1], "ops");
    cr_assert_eq(s->num_not_namespaces, 1);
    cr_assert_str_eq(s->not_namespaces[0], "kube-system");
    cr_assert_eq(r->from[1].num_principals, 0);
    cr_assert_eq(r->from[1].num_namespaces, 1);
    cr_assert_str_eq(r->from[1].namespaces[0], "batch");
    cr_assert_eq(r->num_to, 1);
    cr_assert_eq(r->to[0].num_ports, 2);
    cr_assert_eq(r->to[0].ports[0].lo, 8080);
    cr_assert_eq(r->to[0].ports[0].hi, 8080);
    cr_assert_eq(r->to[0].ports[1].lo, 9000);
    cr_assert_eq(r->to[0].ports[1].hi, 9100);
    cr_assert_eq(r->to[0].num_not_ports, 1);
    cr_assert_eq(r->to[0].not_ports[0].lo, 9050);
    cr_assert_eq(r->to[0].not_ports[0].hi, 9050);
    r = &a->rules[1];
    cr_assert_eq(r->num_from, 0);
    cr_assert_eq(r->num_to, 1);
    cr_assert_eq(r->to[0].num_ports, 0);
    cr_assert_eq(r->to[0].num_not_ports, 1);

    a = &set.authz[2];
    cr_assert_str_eq(a->name, "deny-legacy");
    cr_assert_eq(a->loc.line, 27);
    cr_assert_eq(a->action, POLICY_ACTION_DENY);
    cr_assert_eq(a->mode, POLICY_MODE_DRY_RUN);
    cr_assert_eq(a->num_rules, 1);

    const struct policy_peerauthn *p = &set.peerauthn[0];
    cr_assert_str_eq(p->namespace_, "shop");
    cr_assert_str_eq(p->name, "backend-strict");
    snprintf(want_file, sizeof(want_file), "%s/sub/peer.yml", dir);
    cr_assert_str_eq(p->loc.file, want_file);
    cr_assert(p->selector.present);
    cr_assert_eq(p->mode, POLICY_MTLS_STRICT);
    cr_assert_eq(p->num_ports, 2);
    cr_assert_eq(p->ports[0].port, 8080); /* sorted by port */
    cr_assert_eq(p->ports[0].mode, POLICY_MTLS_PERMISSIVE);
    cr_assert_eq(p->ports[1].port, 9090);
    cr_assert_eq(p->ports[1].mode, POLICY_MTLS_STRICT);

    cr_assert_str_eq(set.mesh.name, "mesh");
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    cr_assert_str_eq(cfg.root_namespace, "mesh-root");
    cr_assert_eq(cfg.default_action, POLICY_ACTION_DENY);
    cr_assert_eq(cfg.default_mtls, POLICY_MTLS_STRICT);
}

Test(policy_load, single_file_path_and_config_defaults)
{
    write_text("p.yml", AUTHZ_FILE);
    char path[400];
    snprintf(path, sizeof(path), "%s/p.yml", dir);
    cr_assert_eq(policy_set_load_path(&set, path), WEFT_OK, "%s", errors());
    cr_assert_eq(policy_set_finish(&set), WEFT_OK, "%s", errors());
    cr_assert_eq(set.num_authz, 2);
    cr_assert(!set.has_mesh);
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    cr_assert_str_eq(cfg.root_namespace, POLICY_DEFAULT_ROOT_NAMESPACE);
    cr_assert_str_eq(cfg.root_namespace, "weft-system");
    cr_assert_eq(cfg.default_action, POLICY_ACTION_ALLOW);
    cr_assert_eq(cfg.default_mtls, POLICY_MTLS_PERMISSIVE);
}

Test(policy_load, meshconfig_fields_are_each_optional)
{
    cr_assert_eq(fixture_set_from_yaml(&set, API "kind: MeshConfig\nmetadata: {name: m}\n"
                                                 "spec: {defaultAction: DENY}\n"),
                 WEFT_OK, "%s", errors());
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    cr_assert_str_eq(cfg.root_namespace, "weft-system");
    cr_assert_eq(cfg.default_action, POLICY_ACTION_DENY);
    cr_assert_eq(cfg.default_mtls, POLICY_MTLS_PERMISSIVE);
}

Test(policy_load, empty_lists_are_fields_not_set)
{
    cr_assert_eq(fixture_set_from_yaml(&set, AUTHZ_HEAD "  action: ALLOW\n"
                                                        "  rules:\n"
                                                        "  - from:\n"
                                                        "    - principals: []\n"
                                                        "      notPrincipals: []\n"
                                                        "      namespaces: []\n"
                                                        "      notNamespaces: []\n"
                                                        "    to:\n"
                                                        "    - ports: []\n"
                                                        "      notPorts: []\n"),
                 WEFT_OK, "%s", errors());
    const struct policy_rule *r = &set.authz[0].rules[0];
    cr_assert_eq(r->num_from, 1);
    cr_assert_eq(r->from[0].num_principals + r->from[0].num_not_principals +
                     r->from[0].num_namespaces + r->from[0].num_not_namespaces,
                 0);
    cr_assert_eq(r->to[0].num_ports + r->to[0].num_not_ports, 0);
    /* and so the entry matches any peer, even an unauthenticated one, on any port */
    cr_assert(policy_rule_matches(r, NULL, 1));
    cr_assert(policy_rule_matches(r, FIXTURE_TD "/x", 65535));
}

Test(policy_load, kubectl_get_output_with_server_metadata_and_status)
{
    static const char yaml[] =
        "apiVersion: security.weft.dev/v1alpha1\n"
        "kind: AuthorizationPolicy\n"
        "metadata:\n"
        "  annotations:\n"
        "    kubectl.kubernetes.io/last-applied-configuration: |\n"
        "      {\"apiVersion\":\"security.weft.dev/v1alpha1\",\"kind\":\"AuthorizationPolicy\"}\n"
        "  creationTimestamp: \"2024-05-01T10:00:00Z\"\n"
        "  generation: 3\n"
        "  labels: {team: payments}\n"
        "  managedFields:\n"
        "  - apiVersion: security.weft.dev/v1alpha1\n"
        "    fieldsType: FieldsV1\n"
        "    fieldsV1: {\"f:spec\": {\"f:action\": {}}}\n"
        "    manager: kubectl-client-side-apply\n"
        "    operation: Update\n"
        "    time: \"2024-05-01T10:00:00Z\"\n"
        "  name: only-frontend\n"
        "  namespace: payments\n"
        "  resourceVersion: \"123456\"\n"
        "  uid: 6d9c1f0e-8a43-4d0e-9a57-3a1f3b0e2c11\n"
        "spec:\n"
        "  action: ALLOW\n"
        "  rules:\n"
        "  - from:\n"
        "    - principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\"]\n"
        "status:\n"
        "  conditions:\n"
        "  - {type: Accepted, status: \"True\"}\n"
        "  observedGeneration: 3\n";
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
    cr_assert_eq(set.num_authz, 1);
    cr_assert_str_eq(set.authz[0].namespace_, "payments");
    cr_assert_str_eq(set.authz[0].name, "only-frontend");
}

Test(policy_load, object_with_an_error_is_left_out_and_the_others_are_added)
{
    static const char yaml[] = AUTHZ_HEAD "  action: ALLOW\n"                      /* p: added */
                                          "---\n"                                  /* 6 */
        API                                                                        /* 7 */
                                          "kind: AuthorizationPolicy\n"            /* 8 */
                                          "metadata: {name: q, namespace: shop}\n" /* 9 */
                                          "spec:\n"                                /* 10 */
                                          "  action: ALOW\n"                       /* 11: refused */
                                          "---\n" API "kind: PeerAuthentication\n" /* 13, 14 */
                                          "metadata: {name: r, namespace: shop}\n" /* 15 */
                                          "spec: {mtls: {mode: STRICT}}\n"         /* 16: added */
                                          "---\n" API "kind: PeerAuthentication\n" /* 18, 19 */
                                          "metadata: {name: s, namespace: shop}\n" /* 20 */
                                          "spec: {selector: {matchLabels: {a: b}}, mtls: {mode: "
                                          "STRICT}, portLevelMtls: {\"0\": {mode: STRICT}}}\n"
                                          "---\n" API "kind: AuthorizationPolicy\n" /* 23, 24 */
                                          "metadata: {name: t, namespace: shop}\n"
                                          "spec: {action: DENY}\n";
    cr_assert_eq(fixture_load_yaml(&set, "t.yaml", yaml), WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 2, "%s", errors());
    assert_prefix(set.errors[0].text, "t.yaml:11:11: spec.action: \"ALOW\" is not one of ");
    assert_prefix(set.errors[1].text, "t.yaml:21:79: spec.portLevelMtls[\"0\"]: not a port: \"0\"");
    cr_assert_eq(policy_set_finish(&set), WEFT_EINVAL);
    cr_assert_eq(set.num_authz, 2);
    cr_assert_str_eq(set.authz[0].name, "p");
    cr_assert_str_eq(set.authz[1].name, "t");
    cr_assert_eq(set.num_peerauthn, 1);
    cr_assert_str_eq(set.peerauthn[0].name, "r");
}

/* --- unknown fields ----------------------------------------------------------------------- */

Test(policy_load, unknown_field_with_did_you_mean)
{
    expect_refused(AUTHZ_HEAD "  acton: ALLOW\n",
                   "t.yaml:5:3: spec.acton: unknown field \"acton\" (did you mean \"action\"?)");
    /* and the field it should have been is then missing */
    cr_assert_eq(set.num_errors, 2, "%s", errors());
    assert_prefix(set.errors[1].text, "t.yaml:5:3: spec.action: required field is missing");
}

Test(policy_load, unknown_field_deep_in_a_rule)
{
    /* a typo that would widen access if ignored: "principal" for "principals" */
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n"
                                "  rules:\n"
                                "  - from:\n"
                                "    - principal: [\"spiffe://cluster.local/ns/a/sa/b\"]\n",
                     "t.yaml:8:7: spec.rules[0].from[0].principal: unknown field \"principal\" "
                     "(did you mean \"principals\"?)");
    reset();
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n"
                                "  rules:\n"
                                "  - to:\n"
                                "    - port: [\"80\"]\n",
                     "t.yaml:8:7: spec.rules[0].to[0].port: unknown field \"port\" (did you mean "
                     "\"ports\"?)");
    reset();
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n"
                                "  selector:\n"
                                "    matchLabel: {app: a}\n",
                     "t.yaml:7:5: spec.selector.matchLabel: unknown field \"matchLabel\" (did you "
                     "mean \"matchLabels\"?)");
}

Test(policy_load, unknown_field_without_a_near_name_lists_the_known_ones)
{
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  frobnicate: 1\n",
                     "t.yaml:6:3: spec.frobnicate: unknown field \"frobnicate\" (known here: "
                     "selector, action, mode, rules, closeGraceSeconds)");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop, "
                         "team: x}\nspec: {action: ALLOW}\n",
                     "t.yaml:3:38: metadata.team: unknown field \"team\"");
    reset();
    expect_one_error(API "kind: MeshConfig\nmetadata: {name: m}\nspec: {defaultMode: DENY}\n",
                     "t.yaml:4:8: spec.defaultMode: unknown field \"defaultMode\"");
}

/* --- principals --------------------------------------------------------------------------- */

#define PRINCIPAL_DOC                                                                              \
    AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n    - principals: [\"%s\"]\n"
#define NOT_PRINCIPAL_DOC                                                                          \
    AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n    - notPrincipals: [\"%s\"]\n"

/* fill writes |tmpl| with its one "%s" replaced by |value| (the templates are not format
 * strings the compiler can check). */
static void fill(char *out, size_t len, const char *tmpl, const char *value)
{
    const char *mark = strstr(tmpl, "%s");
    cr_assert_not_null(mark);
    int n = snprintf(out, len, "%.*s%s%s", (int)(mark - tmpl), tmpl, value, mark + 2);
    cr_assert(n > 0 && (size_t)n < len);
}

/* expect_value_refused loads |tmpl| filled with |value| into an emptied set and expects one
 * error starting with |want|. */
static void expect_value_refused(const char *tmpl, const char *value, const char *want)
{
    char yaml[1024];
    fill(yaml, sizeof(yaml), tmpl, value);
    reset();
    expect_one_error(yaml, want);
}

Test(policy_load, bad_spiffe_id)
{
    static const struct {
        const char *id, *why;
    } cases[] = {
        {"spiffe://Cluster.local/ns/shop/sa/x", "trust domain must be lowercase"},
        {"spiffe://cluster.local/ns//sa/x", "empty segment"},
        {"http://cluster.local/ns/shop/sa/x", "A1"},
        {"spiffe://cluster.local/ns/shop/sa/x/", "must not end with '/'"},
        {"spiffe://cluster.local/ns/%41/sa/x", "percent-encoding"},
        {"spiffe://cluster.local/ns/../sa/x", "'.' and '..'"},
        {"spiffe://cluster.local:8443/ns/shop", "port"},
        {"frontend", "A1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[512];
        snprintf(want, sizeof(want),
                 "t.yaml:8:20: spec.rules[0].from[0].principals[0]: not a SPIFFE ID: \"%s\": ",
                 cases[i].id);
        expect_value_refused(PRINCIPAL_DOC, cases[i].id, want);
        cr_assert_not_null(strstr(set.errors[0].text, cases[i].why), "%s: %s", cases[i].id,
                           set.errors[0].text);
        snprintf(want, sizeof(want),
                 "t.yaml:8:23: spec.rules[0].from[0].notPrincipals[0]: not a SPIFFE ID: \"%s\": ",
                 cases[i].id);
        expect_value_refused(NOT_PRINCIPAL_DOC, cases[i].id, want);
    }
}

Test(policy_load, misplaced_wildcard)
{
    static const char *const cases[] = {
        "spiffe://cluster.local/ns/*/sa/frontend", /* in the middle */
        "spiffe://cluster.local/ns/shop*",         /* glued to a segment */
        "spiffe://cluster.local/ns/shop/*x",       /* followed by more */
        "spiffe://cluster.local/ns/shop/*/*",      /* two of them */
        "spiffe://*/ns/shop/sa/x",                 /* in the trust domain */
        "*/ns/shop",                               /* a leading one */
        "**",                                      /* not exactly "*" */
        "*.cluster.local",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[512];
        snprintf(want, sizeof(want),
                 "t.yaml:8:20: spec.rules[0].from[0].principals[0]: misplaced wildcard in \"%s\": "
                 "'*' may only be the whole entry",
                 cases[i]);
        expect_value_refused(PRINCIPAL_DOC, cases[i], want);
        snprintf(want, sizeof(want),
                 "t.yaml:8:23: spec.rules[0].from[0].notPrincipals[0]: misplaced wildcard in "
                 "\"%s\"",
                 cases[i]);
        expect_value_refused(NOT_PRINCIPAL_DOC, cases[i], want);
    }
}

Test(policy_load, wildcard_trust_domain_is_refused)
{
    /* a trust domain cannot be a wildcard: "*" alone is any authenticated peer */
    expect_value_refused(PRINCIPAL_DOC, "spiffe://*",
                         "t.yaml:8:20: spec.rules[0].from[0].principals[0]: misplaced wildcard in "
                         "\"spiffe://*\"");
    expect_value_refused(PRINCIPAL_DOC, "spiffe:///*",
                         "t.yaml:8:20: spec.rules[0].from[0].principals[0]: not a SPIFFE ID: "
                         "\"spiffe:///*\": trust domain is empty");
}

Test(policy_load, trust_domain_only_principal)
{
    expect_value_refused(PRINCIPAL_DOC, "spiffe://cluster.local",
                         "t.yaml:8:20: spec.rules[0].from[0].principals[0]: "
                         "\"spiffe://cluster.local\" names a trust domain, and no workload "
                         "has that ID; write \"spiffe://cluster.local/*\" for every ID of the "
                         "trust domain");
    /* while the prefix form is the way to say it */
    reset();
    char yaml[1024];
    fill(yaml, sizeof(yaml), PRINCIPAL_DOC, "spiffe://cluster.local/*");
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
    cr_assert_eq(set.authz[0].rules[0].from[0].principals[0].kind, POLICY_PRINCIPAL_PREFIX);
    cr_assert_str_eq(set.authz[0].rules[0].from[0].principals[0].value, "spiffe://cluster.local/");
}

Test(policy_load, principal_must_be_a_string)
{
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n"
                                "    - principals: [[a]]\n",
                     "t.yaml:8:20: spec.rules[0].from[0].principals[0]: expected a string, found "
                     "a list");
    reset();
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n"
                                "    - principals: \"spiffe://cluster.local/ns/a/sa/b\"\n",
                     "t.yaml:8:19: spec.rules[0].from[0].principals: expected a list, found a "
                     "scalar");
}

/* --- namespaces --------------------------------------------------------------------------- */

#define NAMESPACE_DOC                                                                              \
    AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n    - namespaces: [\"ok\", \"%s\"]\n"
#define NOT_NAMESPACE_DOC                                                                          \
    AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n    - notNamespaces: [\"%s\"]\n"

Test(policy_load, bad_namespace_name_in_namespaces)
{
    static const char *const cases[] = {
        "Shop",
        "shop_1",
        "-shop",
        "shop-",
        "",
        "shop.prod",
        "a234567890123456789012345678901234567890123456789012345678901234", /* 64 */
        "spiffe://cluster.local/ns/shop",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[512];
        /* ["ok", "X"]: the second entry starts at column 26 */
        snprintf(want, sizeof(want),
                 "t.yaml:8:26: spec.rules[0].from[0].namespaces[1]: not a namespace name: \"%s\"",
                 cases[i]);
        expect_value_refused(NAMESPACE_DOC, cases[i], want);
        snprintf(want, sizeof(want),
                 "t.yaml:8:23: spec.rules[0].from[0].notNamespaces[0]: not a namespace name: "
                 "\"%s\"",
                 cases[i]);
        expect_value_refused(NOT_NAMESPACE_DOC, cases[i], want);
    }
    /* 63 characters is a namespace */
    reset();
    char yaml[1024];
    fill(yaml, sizeof(yaml), NAMESPACE_DOC,
         "a23456789012345678901234567890123456789012345678901234567890123");
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
}

Test(policy_load, wildcard_in_namespaces)
{
    static const char *const cases[] = {"*", "shop-*", "sh*p", "*-prod"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[512];
        snprintf(want, sizeof(want),
                 "t.yaml:8:26: spec.rules[0].from[0].namespaces[1]: not a namespace name: \"%s\" "
                 "(lowercase letters, digits and '-', at most 63; no wildcards)",
                 cases[i]);
        expect_value_refused(NAMESPACE_DOC, cases[i], want);
        snprintf(want, sizeof(want),
                 "t.yaml:8:23: spec.rules[0].from[0].notNamespaces[0]: not a namespace name: "
                 "\"%s\" (lowercase letters, digits and '-', at most 63; no wildcards)",
                 cases[i]);
        expect_value_refused(NOT_NAMESPACE_DOC, cases[i], want);
    }
}

/* --- ports -------------------------------------------------------------------------------- */

/* ["8080", "X"]: the second entry starts at column 23 */
#define PORT_DOC AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - to:\n    - ports: [\"8080\", \"%s\"]\n"
#define NOT_PORT_DOC AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - to:\n    - notPorts: [\"%s\"]\n"

static void expect_port_refused(const char *port, const char *what)
{
    char want[512];
    snprintf(want, sizeof(want), "t.yaml:8:23: spec.rules[0].to[0].ports[1]: %s", what);
    expect_value_refused(PORT_DOC, port, want);
    snprintf(want, sizeof(want), "t.yaml:8:18: spec.rules[0].to[0].notPorts[0]: %s", what);
    expect_value_refused(NOT_PORT_DOC, port, want);
}

Test(policy_load, bad_port)
{
    static const char *const cases[] = {"http", "80a", "8 0", "+80", "080", "", "123456", "0x50"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char what[256];
        snprintf(what, sizeof(what),
                 "not a port: \"%s\" (a decimal port 1-65535, or a range \"N-M\")", cases[i]);
        expect_port_refused(cases[i], what);
    }
    static const char *const ranges[] = {"-80", "80-", "80-90-100", "a-b", "80--90", "-"};
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        char what[256];
        snprintf(what, sizeof(what), "not a port range: \"%s\"", ranges[i]);
        expect_port_refused(ranges[i], what);
    }
}

Test(policy_load, port_zero_and_65536)
{
    expect_port_refused("0", "not a port: \"0\"");
    expect_port_refused("65536", "not a port: \"65536\"");
    expect_port_refused("99999", "not a port: \"99999\"");
    expect_port_refused("0-80", "not a port range: \"0-80\"");
    expect_port_refused("80-65536", "not a port range: \"80-65536\"");
    /* and the ends themselves are ports */
    reset();
    char yaml[1024];
    fill(yaml, sizeof(yaml), PORT_DOC, "1-65535");
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
    cr_assert_eq(set.authz[0].rules[0].to[0].ports[1].lo, 1);
    cr_assert_eq(set.authz[0].rules[0].to[0].ports[1].hi, 65535);
    reset();
    fill(yaml, sizeof(yaml), PORT_DOC, "65535");
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
}

Test(policy_load, reversed_range)
{
    expect_port_refused("9100-9000", "port range \"9100-9000\" is reversed: 9100 is above 9000");
    /* a one-port range is not reversed */
    reset();
    char yaml[1024];
    fill(yaml, sizeof(yaml), PORT_DOC, "9000-9000");
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
    cr_assert_eq(set.authz[0].rules[0].to[0].ports[1].lo, 9000);
    cr_assert_eq(set.authz[0].rules[0].to[0].ports[1].hi, 9000);
}

Test(policy_load, bad_port_level_port)
{
    expect_one_error(PEERAUTHN_HEAD "  selector: {matchLabels: {app: a}}\n"
                                    "  portLevelMtls:\n"
                                    "    \"65536\": {mode: STRICT}\n",
                     "t.yaml:7:5: spec.portLevelMtls[\"65536\"]: not a port: \"65536\"");
}

/* --- enums -------------------------------------------------------------------------------- */

Test(policy_load, bad_action_case_matters)
{
    static const char *const cases[] = {"allow", "Allow", "deny", "audit", "ALLOWED", "PERMIT"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512], want[256];
        snprintf(yaml, sizeof(yaml), AUTHZ_HEAD "  action: %s\n", cases[i]);
        snprintf(want, sizeof(want),
                 "t.yaml:5:11: spec.action: \"%s\" is not one of ALLOW, DENY, AUDIT (case "
                 "matters)",
                 cases[i]);
        reset();
        expect_one_error(yaml, want);
    }
    /* MeshConfig's default is ALLOW or DENY: AUDIT decides nothing */
    reset();
    expect_one_error(API "kind: MeshConfig\nmetadata: {name: m}\nspec:\n  defaultAction: AUDIT\n",
                     "t.yaml:5:18: spec.defaultAction: \"AUDIT\" is not one of ALLOW, DENY");
    reset();
    expect_one_error(API "kind: MeshConfig\nmetadata: {name: m}\nspec:\n  defaultAction: deny\n",
                     "t.yaml:5:18: spec.defaultAction: \"deny\" is not one of ALLOW, DENY");
}

Test(policy_load, bad_mode)
{
    static const char *const cases[] = {"dryrun", "Enforce", "DRY-RUN", "dry_run", "shadow"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512], want[256];
        snprintf(yaml, sizeof(yaml), AUTHZ_HEAD "  action: ALLOW\n  mode: %s\n", cases[i]);
        snprintf(want, sizeof(want),
                 "t.yaml:6:9: spec.mode: \"%s\" is not one of enforce, dry-run (case matters)",
                 cases[i]);
        reset();
        expect_one_error(yaml, want);
    }
    /* the mTLS modes */
    reset();
    expect_one_error(PEERAUTHN_HEAD "  mtls: {mode: strict}\n",
                     "t.yaml:5:16: spec.mtls.mode: \"strict\" is not one of ");
    reset();
    expect_one_error(PEERAUTHN_HEAD "  mtls: {mode: DISABLE}\n",
                     "t.yaml:5:16: spec.mtls.mode: \"DISABLE\" is not one of ");
    reset();
    expect_one_error(PEERAUTHN_HEAD "  selector: {matchLabels: {app: a}}\n"
                                    "  portLevelMtls:\n"
                                    "    \"8080\": {mode: Permissive}\n",
                     "t.yaml:7:20: spec.portLevelMtls[\"8080\"].mode: \"Permissive\" is not one "
                     "of ");
    reset();
    expect_one_error(API "kind: MeshConfig\nmetadata: {name: m}\nspec:\n  mtls: {mode: strict}\n",
                     "t.yaml:5:16: spec.mtls.mode: \"strict\" is not one of ");
}

/* --- closeGraceSeconds ------------------------------------------------------------------- */

/* The value starts on line 6, column 22. */
#define GRACE_DOC AUTHZ_HEAD "  action: DENY\n  closeGraceSeconds: %s\n"

Test(policy_load, close_grace_seconds_from_0_to_3600)
{
    static const struct {
        const char *text;
        uint32_t want;
    } cases[] = {{"0", 0}, {"30", 30}, {"3600", 3600}, {"null", 0}, {"~", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512];
        fill(yaml, sizeof(yaml), GRACE_DOC, cases[i].text);
        reset();
        cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s: %s", cases[i].text, errors());
        cr_assert_eq(set.authz[0].close_grace_s, cases[i].want, "%s", cases[i].text);
    }
    /* absent is 0: close at once */
    reset();
    cr_assert_eq(fixture_set_from_yaml(&set, AUTHZ_HEAD "  action: DENY\n"), WEFT_OK, "%s",
                 errors());
    cr_assert_eq(set.authz[0].close_grace_s, 0);
    /* in flow style, and on an ALLOW policy */
    reset();
    cr_assert_eq(fixture_set_from_yaml(&set, API "kind: AuthorizationPolicy\nmetadata: {name: p, "
                                                 "namespace: shop}\nspec: {action: ALLOW, "
                                                 "closeGraceSeconds: 45, rules: [{}]}\n"),
                 WEFT_OK, "%s", errors());
    cr_assert_eq(set.authz[0].close_grace_s, 45);
}

Test(policy_load, close_grace_seconds_must_be_a_plain_integer)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        /* a string is not a number, even one of digits (Kubernetes would refuse it too) */
        {"\"5\"", "expected a whole number of seconds (0-3600), found the string \"5\" (write the "
                  "number without quotes)"},
        {"'30'", "expected a whole number of seconds (0-3600), found the string \"30\""},
        {"[30]", "expected a whole number of seconds (0-3600), found a list"},
        {"{seconds: 30}", "expected a whole number of seconds (0-3600), found a mapping"},
        {"-1", "not a whole number of seconds: \"-1\" (decimal digits 0-3600, no sign, no "
               "leading zero)"},
        {"+5", "not a whole number of seconds: \"+5\""},
        {"1.5", "not a whole number of seconds: \"1.5\""},
        {"30.0", "not a whole number of seconds: \"30.0\""},
        {"1e3", "not a whole number of seconds: \"1e3\""},
        {"0x10", "not a whole number of seconds: \"0x10\""},
        {"010", "not a whole number of seconds: \"010\""}, /* YAML 1.1 reads it as 8 */
        {"30s", "not a whole number of seconds: \"30s\""},
        {"!!float 30", "not a whole number of seconds: \"30\""},
        {"3601", "3601 seconds is over the limit of 3600"},
        {"99999999999999999999999", "99999999999999999999999 seconds is over the limit of 3600"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[512];
        snprintf(want, sizeof(want), "t.yaml:6:22: spec.closeGraceSeconds: %s", cases[i].want);
        expect_value_refused(GRACE_DOC, cases[i].text, want);
    }
    /* the error points at the value wherever it is */
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n"
                         "spec: {action: ALLOW, closeGraceSeconds: -1}\n",
                     "t.yaml:4:42: spec.closeGraceSeconds: not a whole number of seconds: \"-1\"");
    /* and a near miss of the name is an unknown field, never a silent 0 */
    reset();
    expect_one_error(AUTHZ_HEAD "  action: DENY\n  closeGraceSecond: 30\n",
                     "t.yaml:6:3: spec.closeGraceSecond: unknown field \"closeGraceSecond\" (did "
                     "you mean \"closeGraceSeconds\"?)");
}

Test(policy_load, missing_action)
{
    expect_one_error(AUTHZ_HEAD "  rules: []\n",
                     "t.yaml:5:3: spec.action: required field is missing (one of ALLOW, DENY, "
                     "AUDIT)");
    reset();
    expect_one_error(AUTHZ_HEAD "  action:\n",
                     "t.yaml:5:3: spec.action: required field is missing");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n",
                     "t.yaml:1:1: spec: required field is missing");
}

/* --- metadata ----------------------------------------------------------------------------- */

Test(policy_load, missing_metadata_namespace)
{
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: ALLOW}\n",
                     "t.yaml:3:11: metadata.namespace: required field is missing");
    reset();
    expect_one_error(API "kind: PeerAuthentication\nmetadata:\n  name: p\n"
                         "spec: {mtls: {mode: STRICT}}\n",
                     "t.yaml:4:3: metadata.namespace: required field is missing");
    /* and a cluster-scoped MeshConfig may not have one */
    reset();
    expect_one_error(API "kind: MeshConfig\nmetadata: {name: m, namespace: shop}\nspec: {}\n",
                     "t.yaml:3:32: metadata.namespace: a MeshConfig is cluster-scoped");
}

Test(policy_load, bad_metadata_names)
{
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {namespace: shop}\n"
                         "spec: {action: ALLOW}\n",
                     "t.yaml:3:11: metadata.name: required field is missing");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: My_Policy, namespace: shop}\n"
                         "spec: {action: ALLOW}\n",
                     "t.yaml:3:18: metadata.name: not a name: \"My_Policy\"");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: Shop}\n"
                         "spec: {action: ALLOW}\n",
                     "t.yaml:3:32: metadata.namespace: not a namespace name: \"Shop\"");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: \"*\"}\n"
                         "spec: {action: ALLOW}\n",
                     "t.yaml:3:32: metadata.namespace: not a namespace name: \"*\"");
    reset();
    expect_one_error(API "kind: MeshConfig\nmetadata: {name: m}\nspec: {rootNamespace: Root}\n",
                     "t.yaml:4:23: spec.rootNamespace: not a namespace name: \"Root\"");
}

/* --- duplicates --------------------------------------------------------------------------- */

Test(policy_load, duplicate_key_in_a_mapping)
{
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  action: DENY\n",
                     "t.yaml:6:3: spec.action: field appears twice (first at line 5)");
    reset();
    expect_one_error(API
                     "kind: AuthorizationPolicy\nmetadata: {name: p, name: q, namespace: shop}\n"
                     "spec: {action: ALLOW}\n",
                     "t.yaml:3:21: metadata.name: field appears twice (first at line 3)");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nkind: PeerAuthentication\n"
                         "metadata: {name: p, namespace: shop}\nspec: {action: ALLOW}\n",
                     "t.yaml:3:1: kind: field appears twice (first at line 2)");
    reset();
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - from:\n"
                                "    - principals: [\"spiffe://cluster.local/ns/a/sa/b\"]\n"
                                "      principals: [\"*\"]\n",
                     "t.yaml:9:7: spec.rules[0].from[0].principals: field appears twice "
                     "(first at line 8)");
    reset();
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  selector:\n"
                                "    matchLabels: {app: a, app: b}\n",
                     "t.yaml:7:27: spec.selector.matchLabels[\"app\"]: label \"app\" appears "
                     "twice");
    reset();
    expect_one_error(PEERAUTHN_HEAD "  selector: {matchLabels: {app: a}}\n"
                                    "  portLevelMtls:\n"
                                    "    \"8080\": {mode: STRICT}\n"
                                    "    \"8080\": {mode: PERMISSIVE}\n",
                     "t.yaml:8:5: spec.portLevelMtls[\"8080\"]: port 8080 appears twice");
}

static const char NAMED_P[] = API "kind: AuthorizationPolicy\n"
                                  "metadata: {name: p, namespace: shop}\n"
                                  "spec: {action: ALLOW}\n";
static const char NAMED_P_DENY[] = API "kind: AuthorizationPolicy\n"
                                       "metadata: {name: q, namespace: shop}\n"
                                       "spec: {action: DENY}\n"
                                       "---\n" API "kind: AuthorizationPolicy\n"
                                       "metadata: {name: p, namespace: shop}\n"
                                       "spec: {action: DENY}\n";

Test(policy_load, duplicate_name_in_a_namespace_across_files)
{
    write_text("a.yaml", NAMED_P);
    write_text("b.yaml", NAMED_P_DENY);
    /* the same name in another namespace, and as a PeerAuthentication, is no duplicate */
    write_text("c.yaml", API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: ops}\n"
                             "spec: {action: ALLOW}\n---\n" API "kind: PeerAuthentication\n"
                             "metadata: {name: p, namespace: shop}\nspec: {}\n");
    cr_assert_eq(policy_set_load_path(&set, dir), WEFT_OK, "%s", errors());
    cr_assert_eq(policy_set_finish(&set), WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 1, "%s", errors());
    char want[1024];
    snprintf(want, sizeof(want),
             "%s/b.yaml:6:1: metadata.name: AuthorizationPolicy shop/p is defined twice (also at "
             "%s/a.yaml:1)",
             dir, dir);
    cr_assert_str_eq(set.errors[0].text, want);
    /* the first one read stays */
    cr_assert_eq(set.num_authz, 3);
    const struct policy_authz *p = fixture_find_authz(&set, "shop", "p");
    cr_assert_not_null(p);
    cr_assert_eq(p->action, POLICY_ACTION_ALLOW);
    cr_assert_not_null(strstr(p->loc.file, "/a.yaml"));
    cr_assert_eq(set.num_peerauthn, 1);
}

Test(policy_load, duplicate_name_later_file_is_the_error_whatever_its_content)
{
    /* read in the other order, the DENY one is first and stays */
    cr_assert_eq(fixture_load_yaml(&set, "b.yaml", NAMED_P_DENY), WEFT_OK);
    cr_assert_eq(fixture_load_yaml(&set, "a.yaml", NAMED_P), WEFT_OK);
    cr_assert_eq(policy_set_finish(&set), WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 1, "%s", errors());
    cr_assert_str_eq(set.errors[0].text, "a.yaml:1:1: metadata.name: AuthorizationPolicy shop/p "
                                         "is defined twice (also at b.yaml:6)");
    const struct policy_authz *p = fixture_find_authz(&set, "shop", "p");
    cr_assert_eq(p->action, POLICY_ACTION_DENY);
}

Test(policy_load, duplicate_peerauthentication_name)
{
    static const char pa[] = PEERAUTHN_HEAD "  mtls: {mode: STRICT}\n";
    cr_assert_eq(fixture_load_yaml(&set, "a.yaml", pa), WEFT_OK);
    cr_assert_eq(fixture_load_yaml(&set, "b.yaml", pa), WEFT_OK);
    cr_assert_eq(policy_set_finish(&set), WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 1);
    cr_assert_str_eq(set.errors[0].text, "b.yaml:1:1: metadata.name: PeerAuthentication shop/p "
                                         "is defined twice (also at a.yaml:1)");
    cr_assert_eq(set.num_peerauthn, 1);
}

Test(policy_load, two_meshconfigs)
{
    static const char two[] = API "kind: MeshConfig\n" /* 1, 2 */
                                  "metadata: {name: mesh}\n"
                                  "spec: {defaultAction: DENY}\n"
                                  "---\n" API "kind: MeshConfig\n" /* 6, 7 */
                                  "metadata: {name: mesh2}\n"
                                  "spec: {defaultAction: ALLOW}\n";
    cr_assert_eq(fixture_load_yaml(&set, "t.yaml", two), WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 1, "%s", errors());
    cr_assert_str_eq(set.errors[0].text, "t.yaml:6:1: a second MeshConfig (\"mesh2\", the first "
                                         "is \"mesh\" at t.yaml:1); there is one per mesh");
    cr_assert(set.has_mesh);
    cr_assert_str_eq(set.mesh.name, "mesh");
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    cr_assert_eq(cfg.default_action, POLICY_ACTION_DENY);
    /* across files too */
    reset();
    write_text("a.yaml", API "kind: MeshConfig\nmetadata: {name: a}\nspec: {}\n");
    write_text("b/c.yml", API "kind: MeshConfig\nmetadata: {name: b}\nspec: {}\n");
    cr_assert_eq(policy_set_load_path(&set, dir), WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 1, "%s", errors());
    char want[1024];
    snprintf(want, sizeof(want),
             "%s/b/c.yml:1:1: a second MeshConfig (\"b\", the first is \"a\" at %s/a.yaml:1)", dir,
             dir);
    assert_prefix(set.errors[0].text, want);
}

/* --- PeerAuthentication ------------------------------------------------------------------- */

Test(policy_load, port_level_mtls_without_selector)
{
    expect_one_error(PEERAUTHN_HEAD "  mtls: {mode: STRICT}\n"
                                    "  portLevelMtls:\n"
                                    "    \"8080\": {mode: PERMISSIVE}\n",
                     "t.yaml:7:5: spec.portLevelMtls: port-level modes need a selector");
    /* an empty selector names no workload */
    reset();
    expect_one_error(PEERAUTHN_HEAD "  selector: {}\n"
                                    "  portLevelMtls:\n"
                                    "    \"8080\": {mode: PERMISSIVE}\n",
                     "t.yaml:7:5: spec.portLevelMtls: port-level modes need a selector");
    /* with one, it loads */
    reset();
    cr_assert_eq(fixture_set_from_yaml(&set, PEERAUTHN_HEAD "  selector: {matchLabels: {a: b}}\n"
                                                            "  mtls: {mode: STRICT}\n"
                                                            "  portLevelMtls:\n"
                                                            "    \"8080\": {mode: PERMISSIVE}\n"),
                 WEFT_OK, "%s", errors());
}

/* --- documents ---------------------------------------------------------------------------- */

Test(policy_load, wrong_api_version)
{
    static const char *const cases[] = {"security.weft.dev/v1", "security.istio.io/v1beta1", "v1",
                                        "security.weft.dev/V1alpha1"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512], want[256];
        snprintf(yaml, sizeof(yaml),
                 "apiVersion: %s\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: "
                 "shop}\nspec: {action: ALLOW}\n",
                 cases[i]);
        snprintf(want, sizeof(want),
                 "t.yaml:1:13: apiVersion: \"%s\" is not security.weft.dev/v1alpha1", cases[i]);
        reset();
        expect_one_error(yaml, want);
    }
    reset();
    expect_one_error("kind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n"
                     "spec: {action: ALLOW}\n",
                     "t.yaml:1:1: required field is missing: apiVersion");
}

Test(policy_load, unknown_kind)
{
    expect_one_error(API "kind: AuthorisationPolicy\nmetadata: {name: p, namespace: shop}\n"
                         "spec: {action: ALLOW}\n",
                     "t.yaml:2:7: kind: \"AuthorisationPolicy\" is not a weft kind "
                     "(AuthorizationPolicy, PeerAuthentication, MeshConfig)");
    reset();
    expect_one_error(API "kind: RequestAuthentication\nmetadata: {name: p, namespace: shop}\n"
                         "spec: {}\n",
                     "t.yaml:2:7: kind: \"RequestAuthentication\" is not a weft kind");
    reset();
    expect_one_error(API "metadata: {name: p, namespace: shop}\nspec: {action: ALLOW}\n",
                     "t.yaml:1:1: required field is missing: kind");
}

Test(policy_load, broken_yaml)
{
    expect_one_error(AUTHZ_HEAD "  action: [ALLOW\n", "t.yaml:6:1: broken YAML: ");
    reset();
    expect_one_error("apiVersion: security.weft.dev/v1alpha1\n  kind: x\n",
                     "t.yaml:2:7: broken YAML: ");
    reset();
    expect_one_error("a: \"unterminated\n", "t.yaml:2:1: broken YAML: ");
    reset();
    expect_one_error("a: *undefined\n", "t.yaml:1:4: broken YAML: ");
    /* the documents before the break are read */
    reset();
    cr_assert_eq(fixture_load_yaml(&set, "t.yaml", AUTHZ_HEAD "  action: ALLOW\n---\n{{\n"),
                 WEFT_EINVAL);
    cr_assert_eq(set.num_errors, 1, "%s", errors());
    assert_prefix(set.errors[0].text, "t.yaml:");
    cr_assert_not_null(strstr(set.errors[0].text, ": broken YAML: "), "%s", errors());
    cr_assert_eq(set.num_authz, 1);
}

Test(policy_load, non_mapping_document)
{
    expect_one_error("- apiVersion: security.weft.dev/v1alpha1\n- kind: AuthorizationPolicy\n",
                     "t.yaml:1:1: expected a mapping, found a list");
    reset();
    expect_one_error("just a string\n", "t.yaml:1:1: expected a mapping, found a scalar");
    reset();
    expect_one_error(API "kind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n"
                         "spec: [ALLOW]\n",
                     "t.yaml:4:7: spec: expected a mapping, found a list");
    reset();
    expect_one_error(AUTHZ_HEAD "  action: ALLOW\n  rules: [\"any\"]\n",
                     "t.yaml:6:11: spec.rules[0]: expected a mapping, found a scalar");
    /* empty documents (a trailing or doubled "---") are nothing at all */
    reset();
    cr_assert_eq(
        fixture_load_yaml(&set, "t.yaml", "---\n---\n" AUTHZ_HEAD "  action: ALLOW\n---\n"),
        WEFT_OK, "%s", errors());
    cr_assert_eq(set.num_authz, 1);
    reset();
    cr_assert_eq(fixture_load_yaml(&set, "t.yaml", ""), WEFT_OK);
    cr_assert_eq(set.num_errors, 0);
}

/* --- limits ------------------------------------------------------------------------------- */

Test(policy_load, alias_bomb_is_refused_by_the_node_budget)
{
    /* 101 rules x 101 `from` entries x 200 principals, every one an alias of a node written
     * once: a small file that would make two million visits. */
    struct fixture_text t = {0};
    fixture_text_append(&t,
                        AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - &r\n    from:\n    - &s\n"
                                   "      principals: [&id \"spiffe://cluster.local/ns/a/sa/b\"");
    for (int i = 0; i < 199; i++) {
        fixture_text_append(&t, ", *id");
    }
    fixture_text_append(&t, "]\n");
    for (int i = 0; i < 100; i++) {
        fixture_text_append(&t, "    - *s\n");
    }
    for (int i = 0; i < 100; i++) {
        fixture_text_append(&t, "  - *r\n");
    }
    cr_assert_lt(t.len, 20000);
    cr_assert_eq(fixture_load_yaml(&set, "bomb.yaml", t.s), WEFT_EINVAL);
    free(t.s);
    cr_assert_eq(set.num_errors, 1, "%s", errors());
    assert_prefix(set.errors[0].text, "bomb.yaml:1:1: spec.rules[");
    cr_assert_not_null(strstr(set.errors[0].text, ": document is too large or too deeply aliased "
                                                  "(over 1000000 nodes)"),
                       "%s", errors());
    cr_assert_eq(set.num_authz, 0);
}

Test(policy_load, alias_below_the_budget_is_fine)
{
    static const char yaml[] =
        AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - &r\n    from:\n"
                   "    - principals: [&id \"spiffe://cluster.local/ns/a/sa/b\", *id]\n  - *r\n";
    cr_assert_eq(fixture_set_from_yaml(&set, yaml), WEFT_OK, "%s", errors());
    cr_assert_eq(set.authz[0].num_rules, 2);
    cr_assert_eq(set.authz[0].rules[1].from[0].num_principals, 2);
}

/* big_document returns a valid document of exactly |size| bytes: a policy, then comment lines. */
static char *big_document(size_t size)
{
    static const char head[] = AUTHZ_HEAD "  action: ALLOW\n";
    char *s = weft_xmalloc(size + 1);
    memcpy(s, head, sizeof(head) - 1);
    for (size_t i = sizeof(head) - 1; i < size; i++) {
        s[i] = (i - (sizeof(head) - 1)) % 80 == 0 ? '#' : 'x';
        if ((i - (sizeof(head) - 1)) % 80 == 79 || i == size - 1) {
            s[i] = '\n';
        }
    }
    s[size] = '\0';
    return s;
}

Test(policy_load, file_over_the_size_limit)
{
    char *s = big_document(POLICY_MAX_FILE_BYTES + 1);
    cr_assert_eq(
        policy_set_load_buffer(&set, "big.yaml", (const uint8_t *)s, POLICY_MAX_FILE_BYTES + 1),
        WEFT_ELIMIT);
    cr_assert_eq(set.num_errors, 1);
    cr_assert_str_eq(set.errors[0].text,
                     "big.yaml:1:1: file is 4194305 bytes, over the limit of 4194304");
    cr_assert_eq(set.num_authz, 0);

    reset();
    write_file("big.yaml", s, POLICY_MAX_FILE_BYTES + 1);
    char path[400], want[600];
    snprintf(path, sizeof(path), "%s/big.yaml", dir);
    cr_assert_eq(policy_set_load_path(&set, path), WEFT_ELIMIT);
    cr_assert_eq(set.num_errors, 1);
    snprintf(want, sizeof(want), "%s:1:1: file is over the limit of 4194304 bytes", path);
    cr_assert_str_eq(set.errors[0].text, want);
    cr_assert_eq(set.num_authz, 0);
    free(s);
}

Test(policy_load, file_at_the_size_limit_loads)
{
    char *s = big_document(POLICY_MAX_FILE_BYTES);
    write_file("big.yaml", s, POLICY_MAX_FILE_BYTES);
    free(s);
    cr_assert_eq(policy_set_load_path(&set, dir), WEFT_OK, "%s", errors());
    cr_assert_eq(set.num_authz, 1);
}

/* list_document: a policy whose one `from` entry lists |n| principals, or whose one `to`
 * entry lists |n| ports. */
static char *list_document(size_t n, bool ports)
{
    struct fixture_text t = {0};
    fixture_text_append(&t, AUTHZ_HEAD "  action: ALLOW\n  rules:\n  - %s:\n    - %s:\n",
                        ports ? "to" : "from", ports ? "ports" : "principals");
    for (size_t i = 0; i < n; i++) {
        if (ports) {
            fixture_text_append(&t, "      - \"%zu\"\n", i + 1);
        } else {
            fixture_text_append(&t, "      - spiffe://cluster.local/ns/shop/sa/p%zu\n", i);
        }
    }
    return t.s;
}

Test(policy_load, list_over_the_limit)
{
    char *s = list_document(POLICY_MAX_LIST + 1, false);
    expect_one_error(s, "t.yaml:9:7: spec.rules[0].from[0].principals: a list of 4097 entries, "
                        "over the limit of 4096");
    free(s);
    reset();
    s = list_document(POLICY_MAX_LIST + 1, true);
    expect_one_error(s, "t.yaml:9:7: spec.rules[0].to[0].ports: a list of 4097 entries, over the "
                        "limit of 4096");
    free(s);
}

Test(policy_load, list_at_the_limit_loads)
{
    char *s = list_document(POLICY_MAX_LIST, false);
    cr_assert_eq(fixture_set_from_yaml(&set, s), WEFT_OK, "%s", errors());
    free(s);
    cr_assert_eq(set.authz[0].rules[0].from[0].num_principals, POLICY_MAX_LIST);
    cr_assert_str_eq(set.authz[0].rules[0].from[0].principals[4095].value,
                     "spiffe://cluster.local/ns/shop/sa/p4095");
    reset();
    s = list_document(POLICY_MAX_LIST, true);
    cr_assert_eq(fixture_set_from_yaml(&set, s), WEFT_OK, "%s", errors());
    free(s);
    cr_assert_eq(set.authz[0].rules[0].to[0].num_ports, POLICY_MAX_LIST);
}

Test(policy_load, errors_past_the_limit_are_counted_not_kept)
{
    struct fixture_text t = {0};
    for (int i = 0; i < POLICY_MAX_ERRORS + 5; i++) {
        fixture_text_append(&t, "---\n" AUTHZ_HEAD "  action: allow\n");
    }
    cr_assert_eq(fixture_load_yaml(&set, "t.yaml", t.s), WEFT_EINVAL);
    free(t.s);
    cr_assert_eq(set.num_errors, POLICY_MAX_ERRORS);
    cr_assert_eq(set.num_errors_dropped, 5);
    assert_prefix(set.errors[POLICY_MAX_ERRORS - 1].text, "t.yaml:");
    cr_assert_eq(policy_set_finish(&set), WEFT_EINVAL);
}

Test(policy_load, missing_path_is_an_error)
{
    char path[400], want[600];
    snprintf(path, sizeof(path), "%s/absent.yaml", dir);
    cr_assert_eq(policy_set_load_path(&set, path), WEFT_EIO);
    cr_assert_eq(set.num_errors, 1);
    snprintf(want, sizeof(want), "%s:1:1: cannot read: ", path);
    assert_prefix(set.errors[0].text, want);
}

/* libyaml's scanner is quadratic in nesting depth: deep input is refused before it runs. */
/* nested writes AUTHZ_HEAD then "a: " and |depth| brackets opened and closed. */
static size_t nested(char *yaml, size_t cap, int depth)
{
    size_t n = (size_t)snprintf(yaml, cap, "%sa: ", AUTHZ_HEAD);
    for (int i = 0; i < depth; i++) {
        yaml[n++] = '[';
    }
    for (int i = 0; i < depth; i++) {
        yaml[n++] = ']';
    }
    yaml[n] = '\0';
    return n;
}

Test(policy_load, nesting_past_the_limit_is_refused_before_parsing)
{
    char yaml[1024];
    size_t n = nested(yaml, sizeof(yaml), 65);
    cr_assert_eq(policy_set_load_buffer(&set, "deep.yaml", (const uint8_t *)yaml, n), WEFT_ELIMIT);
    assert_prefix(set.errors[0].text,
                  "deep.yaml:5:68: refused before parsing: nested more than 64 levels deep");
    /* At the limit it goes to the parser, which then finds the unknown field. */
    reset();
    n = nested(yaml, sizeof(yaml), 64);
    cr_assert_eq(policy_set_load_buffer(&set, "deep.yaml", (const uint8_t *)yaml, n), WEFT_EINVAL);
    assert_prefix(set.errors[0].text, "deep.yaml:5:1: a: unknown field");
    /* Brackets inside comments and quoted scalars are not nesting; a quote inside a plain
     * scalar (don't) starts nothing. */
    reset();
    static const char quoted[] = AUTHZ_HEAD "  action: ALLOW # don't [[[[ \n"
                                            "  mode: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                            "[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n";
    cr_assert_eq(
        policy_set_load_buffer(&set, "q.yaml", (const uint8_t *)quoted, sizeof(quoted) - 1),
        WEFT_EINVAL);
    assert_prefix(set.errors[0].text, "q.yaml:6:9: spec.mode: \"[[[[");
}

Test(policy_load, indentation_past_the_limit_is_refused_before_parsing)
{
    char yaml[1024];
    size_t n = (size_t)snprintf(yaml, sizeof(yaml), "%s", AUTHZ_HEAD);
    memset(yaml + n, ' ', 257);
    n += 257;
    n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "action: ALLOW\n");
    cr_assert_eq(policy_set_load_buffer(&set, "wide.yaml", (const uint8_t *)yaml, n), WEFT_ELIMIT);
    assert_prefix(set.errors[0].text, "wide.yaml:5:257: refused before parsing: indented more");
}
