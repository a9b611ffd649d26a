/* ca/policy_source_test.c: a watched policy directory keeps its last good set. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca/policy_source.h"
#include "lib/base/file.h"
#include "lib/base/log.h"

static char dir[] = "/tmp/weft-policy-source-XXXXXX";
static char pdir[300];
static struct ca_policy_source *src;

static void setup(void)
{
    weft_log_set_output(stdout, WEFT_LOG_ERROR + 1);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(pdir, sizeof(pdir), "%s/policies", dir);
    src = ca_policy_source_new(pdir);
}

static void teardown(void)
{
    ca_policy_source_free(src);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ca_policy_source, .init = setup, .fini = teardown);

static void put(const char *name, const char *name_in_yaml, const char *action)
{
    char path[400], text[512];
    snprintf(path, sizeof(path), "%s/%s", pdir, name);
    int n = snprintf(text, sizeof(text),
                     "apiVersion: security.weft.dev/v1alpha1\n"
                     "kind: AuthorizationPolicy\n"
                     "metadata: {name: %s, namespace: shop}\n"
                     "spec: {action: %s}\n",
                     name_in_yaml, action);
    cr_assert_eq(weft_file_write_atomic(path, text, (size_t)n, 0644), WEFT_OK);
}

Test(ca_policy_source, versions_go_up_only_on_accepted_changes)
{
    uint64_t version;
    /* no directory yet: an empty set, version 0 */
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK);
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 0);
    cr_assert_eq(mkdir(pdir, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK, "%s", ca_policy_source_error(src));
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 1);
    cr_assert_eq(version, 2, "the empty set was version 1");
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK);
    ca_policy_source_current(src, &version);
    cr_assert_eq(version, 2, "nothing changed, nothing reloaded");

    /* a broken change is refused, and the last good set stays in force */
    put("b.yaml", "b", "PERMIT");
    cr_assert_eq(ca_policy_source_poll(src), WEFT_EINVAL);
    const struct policy_set *set = ca_policy_source_current(src, &version);
    cr_assert_eq(version, 2);
    cr_assert_eq(set->num_authz, 1);
    cr_assert_str_eq(set->authz[0].name, "a");
    cr_assert_not_null(strstr(ca_policy_source_error(src), "b.yaml:4:"), "%s",
                       ca_policy_source_error(src));
    cr_assert_not_null(strstr(ca_policy_source_error(src), "keeping version 2"));
    cr_assert_eq(ca_policy_source_refusals(src), 1);
    cr_assert_eq(ca_policy_source_poll(src), WEFT_EINVAL, "still refused, not re-counted");
    cr_assert_eq(ca_policy_source_num_files(src), 1, "the refused change is not sent");
    cr_assert_eq(ca_policy_source_refusals(src), 1);

    /* fixed: accepted, a new version, the error cleared */
    put("b.yaml", "b", "DENY");
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK, "%s", ca_policy_source_error(src));
    set = ca_policy_source_current(src, &version);
    cr_assert_eq(version, 3);
    cr_assert_eq(set->num_authz, 2);
    cr_assert_str_eq(ca_policy_source_error(src), "");
    /* the files in force, as read, named relative to the directory (what agents receive) */
    cr_assert_eq(ca_policy_source_num_files(src), 2);
    const char *name;
    const uint8_t *data;
    size_t len;
    ca_policy_source_file(src, 1, &name, &data, &len);
    cr_assert_str_eq(name, "b.yaml");
    cr_assert_not_null(memmem(data, len, "action: DENY", 12));

    /* a same-size rewrite with other bytes is a change too; hidden files are not */
    put("b.yaml", "c", "DENY");
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK);
    ca_policy_source_current(src, &version);
    cr_assert_eq(version, 4);
    put(".b.yaml.swp", "x", "PERMIT");
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK);
    ca_policy_source_current(src, &version);
    cr_assert_eq(version, 4);

    /* the directory vanishes (an unmounted volume): refused, not an empty policy */
    char moved[400];
    snprintf(moved, sizeof(moved), "%s.old", pdir);
    cr_assert_eq(rename(pdir, moved), 0);
    cr_assert_eq(ca_policy_source_poll(src), WEFT_EINVAL);
    set = ca_policy_source_current(src, &version);
    cr_assert_eq(version, 4);
    cr_assert_eq(set->num_authz, 2);
    cr_assert_not_null(strstr(ca_policy_source_error(src), "the policy directory is gone"));
    cr_assert_eq(rename(moved, pdir), 0);
    cr_assert_eq(ca_policy_source_poll(src), WEFT_OK, "%s", ca_policy_source_error(src));
}
