/* ca/policy_source_test.c: a watched policy directory keeps its last good set. */
#include <criterion/criterion.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca/policy_source.h"
#include "lib/base/file.h"
#include "lib/base/log.h"

static char dir[] = "/tmp/weft-policy-source-XXXXXX";
static char pdir[300];
static struct ca_policy_source *src;

static void reader_end(void);

static void setup(void)
{
    weft_log_set_output(stdout, WEFT_LOG_ERROR + 1);
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chmod(dir, 0755), 0); /* a reader other than root reaches |pdir| */
    snprintf(pdir, sizeof(pdir), "%s/policies", dir);
    src = ca_policy_source_new(pdir);
}

static void teardown(void)
{
    reader_end();
    ca_policy_source_free(src);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwX %s && rm -rf %s", dir, dir);
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

/* reader_begin makes the test read as weft-ca does: as nobody when it runs as root (weft-ca
 * drops root before it reads the policy), else as itself. Mode 0 then shuts the reader out
 * either way, a mode without x lets it list a directory but not look inside. It returns how
 * the source must name the reader. reader_end goes back to root, to change modes. */
static const char *reader_begin(void)
{
    static char who[96];
    if (geteuid() == 0) {
        cr_assert_eq(setegid(65534), 0);
        cr_assert_eq(seteuid(65534), 0);
    }
    struct passwd *pw = getpwuid(geteuid());
    snprintf(who, sizeof(who), "reading as user %s (uid %u)", pw != NULL ? pw->pw_name : "?",
             (unsigned)geteuid());
    return who;
}

static void reader_end(void)
{
    if (getuid() == 0 && geteuid() != 0) {
        cr_assert_eq(seteuid(0), 0);
        cr_assert_eq(setegid(0), 0);
    }
}

/* poll_as_reader polls as reader_begin's reader and says what the source made of it. */
static int poll_as_reader(const char **out_who)
{
    const char *who = reader_begin();
    int rc = ca_policy_source_poll(src);
    reader_end();
    if (out_who != NULL) {
        *out_who = who;
    }
    return rc;
}

static void assert_error_has(const char *want)
{
    cr_assert_not_null(strstr(ca_policy_source_error(src), want), "no \"%s\" in \"%s\"", want,
                       ca_policy_source_error(src));
}

Test(ca_policy_source, an_unreadable_directory_is_refused_not_read_as_empty)
{
    cr_assert_eq(mkdir(pdir, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    cr_assert_eq(chmod(pdir, 0), 0);
    const char *who;
    cr_assert_eq(poll_as_reader(&who), WEFT_EIO);
    uint64_t version;
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 0);
    cr_assert_eq(version, 0, "nothing accepted, not even an empty set");
    char want[400];
    snprintf(want, sizeof(want), "cannot read %s: Permission denied (EACCES), %s", pdir, who);
    assert_error_has(want);
    cr_assert_eq(poll_as_reader(NULL), WEFT_EIO, "still refused, however often asked");
    cr_assert_eq(ca_policy_source_refusals(src), 1);

    /* readable again: loaded */
    cr_assert_eq(chmod(pdir, 0755), 0);
    cr_assert_eq(poll_as_reader(NULL), WEFT_OK, "%s", ca_policy_source_error(src));
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 1);
    cr_assert_eq(version, 1);
    cr_assert_str_eq(ca_policy_source_error(src), "");
}

Test(ca_policy_source, a_directory_listed_but_not_searchable_is_refused)
{
    /* readdir works, stat on each name does not: once skipped as if each were a dead link */
    cr_assert_eq(mkdir(pdir, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    cr_assert_eq(chmod(pdir, 0444), 0);
    const char *who;
    cr_assert_eq(poll_as_reader(&who), WEFT_EIO);
    char want[400];
    snprintf(want, sizeof(want), "cannot read %s/a.yaml: Permission denied (EACCES), %s", pdir,
             who);
    assert_error_has(want);
    uint64_t version;
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 0);
    cr_assert_eq(version, 0);
}

Test(ca_policy_source, a_parent_not_searchable_is_refused_not_taken_as_no_directory_yet)
{
    cr_assert_eq(mkdir(pdir, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    cr_assert_eq(chmod(dir, 0), 0);
    const char *who;
    cr_assert_eq(poll_as_reader(&who), WEFT_EIO);
    char want[400];
    snprintf(want, sizeof(want), "cannot read %s: Permission denied (EACCES), %s", pdir, who);
    assert_error_has(want);
    cr_assert_eq(chmod(dir, 0755), 0);
}

Test(ca_policy_source, an_unreadable_file_is_refused)
{
    cr_assert_eq(mkdir(pdir, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    put("b.yaml", "b", "DENY");
    char b[400];
    snprintf(b, sizeof(b), "%s/b.yaml", pdir);
    cr_assert_eq(chmod(b, 0), 0);
    const char *who;
    cr_assert_eq(poll_as_reader(&who), WEFT_EIO);
    char want[600];
    snprintf(want, sizeof(want), "cannot read %s: Permission denied (EACCES), %s", b, who);
    assert_error_has(want);
    uint64_t version;
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 0, "not a.yaml alone");
    cr_assert_eq(version, 0);
}

Test(ca_policy_source, unreadable_on_reload_warns_and_keeps_the_policy_in_force)
{
    cr_assert_eq(mkdir(pdir, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    cr_assert_eq(poll_as_reader(NULL), WEFT_OK, "%s", ca_policy_source_error(src));
    uint64_t version;
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 1);
    cr_assert_eq(version, 1);

    FILE *log = tmpfile();
    cr_assert_not_null(log);
    weft_log_set_output(log, WEFT_LOG_DEBUG);
    cr_assert_eq(chmod(pdir, 0), 0);
    const char *who;
    cr_assert_eq(poll_as_reader(&who), WEFT_EIO);
    cr_assert_eq(poll_as_reader(NULL), WEFT_EIO);
    weft_log_set_output(stdout, WEFT_LOG_ERROR + 1);
    const struct policy_set *set = ca_policy_source_current(src, &version);
    cr_assert_eq(version, 1, "the set in force stays");
    cr_assert_eq(set->num_authz, 1);
    cr_assert_str_eq(set->authz[0].name, "a");
    cr_assert_eq(ca_policy_source_num_files(src), 1, "and so do the files agents are sent");
    char want[400];
    snprintf(want, sizeof(want), "cannot read %s: Permission denied (EACCES), %s", pdir, who);
    assert_error_has(want);
    assert_error_has("; keeping version 1");
    cr_assert_eq(ca_policy_source_refusals(src), 1);

    /* one warning, not one per poll */
    char text[4096] = "";
    rewind(log);
    size_t n = fread(text, 1, sizeof(text) - 1, log);
    text[n] = '\0';
    fclose(log);
    const char *line = strstr(text, "level=warn msg=\"policy directory unreadable; keeping the "
                                    "policy in force\"");
    cr_assert_not_null(line, "%s", text);
    cr_assert_null(strstr(line + 1, "level=warn"), "logged twice: %s", text);
    cr_assert_not_null(strstr(text, "kept_version=1"), "%s", text);
    cr_assert_not_null(strstr(text, "(EACCES)"), "%s", text);

    /* readable again: loaded again */
    cr_assert_eq(chmod(pdir, 0755), 0);
    cr_assert_eq(poll_as_reader(NULL), WEFT_OK, "%s", ca_policy_source_error(src));
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 1);
    cr_assert_eq(version, 2);
    cr_assert_str_eq(ca_policy_source_error(src), "");
}

Test(ca_policy_source, a_limit_the_walk_passed_is_refused_not_a_partial_set)
{
    /* 17 directories deep: the walk stops, and what it read is not the whole policy */
    char path[400];
    int n = snprintf(path, sizeof(path), "%s", pdir);
    cr_assert_eq(mkdir(path, 0755), 0);
    put("a.yaml", "a", "ALLOW");
    for (int i = 0; i < 17; i++) {
        n += snprintf(path + n, sizeof(path) - (size_t)n, "/d");
        cr_assert_eq(mkdir(path, 0755), 0);
    }
    cr_assert_eq(ca_policy_source_poll(src), WEFT_EINVAL);
    uint64_t version;
    cr_assert_eq(ca_policy_source_current(src, &version)->num_authz, 0);
    cr_assert_eq(version, 0);
    assert_error_has("directories nested more than 16 deep");
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
