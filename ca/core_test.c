/* ca/core_test.c: join tokens, entry validation and revocation on a real store, with an
 * injected clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/core.h"

#define NOW INT64_C(1700000000)

static char dir[] = "/tmp/weft-core-test-XXXXXX";
static struct ca_store *s;
static struct spiffe_id td;
static char err[512];

static void setup(void)
{
    char path[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ca.db", dir);
    cr_assert_eq(ca_store_open_sqlite(&s, path, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(spiffe_td_parse(&td, "example.org", 11, NULL), WEFT_OK);
}

static void teardown(void)
{
    ca_store_close(s);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ca_core, .init = setup, .fini = teardown);

Test(ca_core, a_token_joins_once_and_only_before_it_expires)
{
    char token[CA_TOKEN_TEXT_LEN + 1], other[CA_TOKEN_TEXT_LEN + 1];
    char node[CA_NODE_NAME_MAX + 1];
    cr_assert_eq(ca_token_create(s, "node-a", 3600, NOW, token, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    cr_assert_eq(strncmp(token, "weft1.", 6), 0);
    cr_assert_eq(strlen(token), CA_TOKEN_TEXT_LEN);
    cr_assert_eq(ca_token_create(s, "node-b", 60, NOW, other, err, sizeof(err)), WEFT_OK);
    cr_assert_str_neq(token, other, "tokens are random");
    cr_assert_eq(ca_token_redeem(s, token, NOW + 1, node, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_str_eq(node, "node-a");
    cr_assert_eq(ca_token_redeem(s, token, NOW + 2, node, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "already used"), "%s", err);
    cr_assert_eq(ca_token_redeem(s, other, NOW + 61, node, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "expired"), "%s", err);
    /* the text is never stored: a token made of another's hash is unknown */
    char forged[CA_TOKEN_TEXT_LEN + 1];
    snprintf(forged, sizeof(forged), "%s", token);
    forged[10] = forged[10] == 'A' ? 'B' : 'A';
    cr_assert_eq(ca_token_redeem(s, forged, NOW + 3, node, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "unknown"), "%s", err);
    cr_assert_eq(ca_token_redeem(s, "weft1.short", NOW, node, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_eq(ca_token_create(s, "Node_A", 60, NOW, other, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_token_create(s, "node-c", 8 * 86400, NOW, other, err, sizeof(err)),
                 WEFT_EINVAL);
}

static struct ca_entry good_entry(void)
{
    struct ca_entry e;
    memset(&e, 0, sizeof(e));
    ca_entry_new_id(e.id);
    snprintf(e.spiffe_id, sizeof(e.spiffe_id), "spiffe://example.org/ns/shop/sa/web");
    snprintf(e.node, sizeof(e.node), "node-a");
    snprintf(e.selectors[0], sizeof(e.selectors[0]), "k8s:ns:shop");
    snprintf(e.selectors[1], sizeof(e.selectors[1]), "unix:uid:1001");
    e.num_selectors = 2;
    e.ttl_s = 3600;
    return e;
}

Test(ca_core, entries_are_validated_before_they_are_stored)
{
    struct ca_entry e = good_entry();
    cr_assert_eq(ca_entry_validate(&e, &td, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(strlen(e.id), CA_ENTRY_ID_LEN);
    struct ca_entry bad;
#define EXPECT_BAD(edit, want)                                                                     \
    do {                                                                                           \
        bad = good_entry();                                                                        \
        edit;                                                                                      \
        cr_assert_eq(ca_entry_validate(&bad, &td, err, sizeof(err)), WEFT_EINVAL, #edit);          \
        cr_assert_not_null(strstr(err, want), "%s: %s", #edit, err);                               \
    } while (0)
    EXPECT_BAD(snprintf(bad.spiffe_id, sizeof(bad.spiffe_id), "spiffe://other.org/x"),
               "workload ID of spiffe://example.org");
    EXPECT_BAD(snprintf(bad.spiffe_id, sizeof(bad.spiffe_id), "spiffe://example.org"), "path");
    EXPECT_BAD(snprintf(bad.spiffe_id, sizeof(bad.spiffe_id), "spiffe://example.org/weft/ca"),
               "/weft/");
    EXPECT_BAD(snprintf(bad.spiffe_id, sizeof(bad.spiffe_id), "spiffe://Example.org/x"),
               "lowercase");
    EXPECT_BAD(snprintf(bad.node_selector, sizeof(bad.node_selector), "k8s:zone:a"), "exactly one");
    EXPECT_BAD(bad.node[0] = '\0', "exactly one");
    EXPECT_BAD(snprintf(bad.node, sizeof(bad.node), "Node A"), "not a node name");
    EXPECT_BAD(bad.num_selectors = 0, "--selector");
    EXPECT_BAD(snprintf(bad.selectors[0], sizeof(bad.selectors[0]), "docker:label:x"),
               "TYPE unix or k8s");
    EXPECT_BAD(snprintf(bad.selectors[0], sizeof(bad.selectors[0]), "unix:uid"), "TYPE:KEY:VALUE");
    EXPECT_BAD(snprintf(bad.selectors[0], sizeof(bad.selectors[0]), "unix:uid:1\n2"),
               "TYPE:KEY:VALUE");
    EXPECT_BAD(bad.ttl_s = 299, "5 min to 24 h");
    EXPECT_BAD(bad.ttl_s = 24 * 3600 + 1, "5 min to 24 h");
#undef EXPECT_BAD
    bad = good_entry();
    bad.node[0] = '\0';
    snprintf(bad.node_selector, sizeof(bad.node_selector), "k8s:node-label:zone=a");
    cr_assert_eq(ca_entry_validate(&bad, &td, err, sizeof(err)), WEFT_OK, "%s", err);
}

static int latest_drop(void *arg, const struct ca_revocation *r)
{
    int64_t *drop = arg;
    *drop = r->drop_after > *drop ? r->drop_after : *drop;
    return WEFT_OK;
}

struct find {
    const char *value;
    int64_t drop;
};

static int find_drop(void *arg, const struct ca_revocation *r)
{
    struct find *f = arg;
    if (strcmp(r->value, f->value) == 0) {
        f->drop = r->drop_after;
    }
    return WEFT_OK;
}

Test(ca_core, revocation_stops_issuance_at_once_and_lasts_until_the_last_cert_expires)
{
    struct ca_issuance i;
    memset(&i, 0, sizeof(i));
    i.serial[0] = 7;
    i.serial_len = 1;
    snprintf(i.spiffe_id, sizeof(i.spiffe_id), "spiffe://example.org/ns/shop/sa/web");
    snprintf(i.node, sizeof(i.node), "node-a");
    i.not_before = NOW - 60;
    i.not_after = NOW + 2 * CA_MAX_SVID_TTL_S; /* a node SVID may outlive the longest workload */
    cr_assert_eq(ca_store_issuance_add(s, &i), WEFT_OK);
    cr_assert_eq(ca_may_issue(s, i.spiffe_id, "node-a", err, sizeof(err)), WEFT_OK);
    cr_assert_eq(ca_revoke(s, CA_REVOKE_ID, i.spiffe_id, NOW, NULL, err, sizeof(err)), WEFT_OK,
                 "%s", err);
    cr_assert_eq(ca_may_issue(s, i.spiffe_id, "node-a", err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "revoked"), "%s", err);
    /* the deny-list item lives until the certificate's notAfter, then goes; issuance stays
     * stopped */
    int64_t drop = 0;
    cr_assert_eq(ca_store_revocation_list(s, NOW, latest_drop, &drop), WEFT_OK);
    cr_assert_eq(drop, NOW + 2 * CA_MAX_SVID_TTL_S);
    drop = 0;
    cr_assert_eq(ca_store_revocation_list(s, NOW + 2 * CA_MAX_SVID_TTL_S, latest_drop, &drop),
                 WEFT_OK);
    cr_assert_eq(drop, 0, "dropped once every affected certificate has expired");
    cr_assert_eq(ca_may_issue(s, i.spiffe_id, "node-a", err, sizeof(err)), WEFT_EPOLICY);
    /* an ID never issued is still pushed, for a longest SVID lifetime: a mint racing the
     * revocation may record its certificate just after */
    cr_assert_eq(ca_revoke(s, CA_REVOKE_ID, "spiffe://example.org/ns/shop/sa/new", NOW, NULL, err,
                           sizeof(err)),
                 WEFT_OK);
    struct find f = {"spiffe://example.org/ns/shop/sa/new", 0};
    cr_assert_eq(ca_store_revocation_list(s, NOW, find_drop, &f), WEFT_OK);
    cr_assert_eq(f.drop, NOW + CA_MAX_SVID_TTL_S + 60);
    /* values are checked and kept in one form */
    cr_assert_eq(ca_revoke(s, CA_REVOKE_SERIAL, "0A:1b:FF", NOW, NULL, err, sizeof(err)), WEFT_OK);
    bool revoked = false;
    cr_assert_eq(ca_store_is_revoked(s, CA_REVOKE_SERIAL, "0a1bff", &revoked), WEFT_OK);
    cr_assert(revoked);
    cr_assert_eq(ca_revoke(s, CA_REVOKE_SERIAL, "xyz", NOW, NULL, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_revoke(s, CA_REVOKE_ID, "spiffe://Example.org/x", NOW, NULL, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_eq(ca_revoke(s, CA_REVOKE_NODE, "Node A", NOW, NULL, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_may_issue(s, "spiffe://example.org/ns/shop/sa/api", "node-a", err, sizeof(err)),
                 WEFT_OK, "another ID on the same node is fine");
    cr_assert_eq(ca_revoke(s, CA_REVOKE_NODE, "node-a", NOW, NULL, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(ca_may_issue(s, "spiffe://example.org/ns/shop/sa/api", "node-a", err, sizeof(err)),
                 WEFT_EPOLICY, "nothing more for a revoked node");
    cr_assert_eq(ca_revoke(s, CA_REVOKE_ID, "", NOW, NULL, err, sizeof(err)), WEFT_EINVAL);
}
