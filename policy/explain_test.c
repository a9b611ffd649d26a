/* policy/explain_test.c: what `weftctl policy explain` prints about each policy (policy_explain).
 * The verdict line and the scenarios are checked end to end by test/integration/policy_test.sh;
 * here, the parts of a policy's listing that the scenarios do not show. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/explain.h"
#include "test/testlib/policy_fixtures.h"

static const char POLICIES[] =
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: allow-frontend, namespace: shop}\n"
    "spec:\n"
    "  action: ALLOW\n"
    "  rules:\n"
    "  - from:\n"
    "    - principals: [\"spiffe://cluster.local/ns/shop/sa/frontend\"]\n"
    "---\n"
    "apiVersion: security.weft.dev/v1alpha1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: cut-legacy, namespace: shop}\n"
    "spec:\n"
    "  action: DENY\n"
    "  closeGraceSeconds: 300\n"
    "  rules:\n"
    "  - from:\n"
    "    - namespaces: [legacy]\n";

static struct policy_set set;
static char *text;

static void teardown(void)
{
    free(text);
    policy_set_cleanup(&set);
}

TestSuite(policy_explain, .fini = teardown);

/* explain runs policy_explain for |peer| to shop/backend port 8080 into |text|. */
static void explain(const char *peer)
{
    struct fixture_workload fw;
    struct policy_config cfg;
    struct policy_snapshot *snap;
    struct policy_request req = {peer, 8080};
    struct policy_result r;
    size_t len;
    policy_set_init(&set);
    cr_assert_eq(fixture_set_from_yaml(&set, POLICIES), WEFT_OK);
    cr_assert_eq(fixture_workload_parse(&fw, "shop/backend,app=backend"), WEFT_OK);
    policy_config_resolve(&cfg, &set);
    cr_assert_eq(policy_compile(&snap, &set, &cfg, &fw.w), WEFT_OK);
    policy_eval(snap, &req, &r);
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    policy_explain(out, &set, &cfg, &fw.w, &req, snap, &r);
    cr_assert_eq(fclose(out), 0);
    policy_snapshot_free(snap);
}

Test(policy_explain, shows_a_close_grace_only_when_set)
{
    static const char verdict[] = "decision=deny policy=shop/cut-legacy rule=0 "
                                  "reason=deny-matched\n";
    explain("spiffe://cluster.local/ns/legacy/sa/old");
    cr_assert_eq(strncmp(text, verdict, sizeof(verdict) - 1), 0, "%s", text);
    cr_assert_not_null(strstr(text, "\n  shop/cut-legacy  DENY enforce  closeGraceSeconds 300  "
                                    "(t.yaml:10)\n"),
                       "%s", text);
    /* 0, the default, is not shown: cut-legacy's is the one mention */
    cr_assert_not_null(strstr(text, "\n  shop/allow-frontend  ALLOW enforce  (t.yaml:1)\n"), "%s",
                       text);
    const char *first = strstr(text, "closeGraceSeconds");
    cr_assert_null(strstr(first + 1, "closeGraceSeconds"), "%s", text);
}
