/* ca/store_test.c: the contract of the CA store (SQLite backend), with an injected clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ca/store.h"

#define NOW INT64_C(1700000000)

static char dir[] = "/tmp/weft-store-test-XXXXXX";
static char path[256];
static struct ca_store *s;

static void setup(void)
{
    char err[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ca.db", dir);
    cr_assert_eq(ca_store_open_sqlite(&s, path, err, sizeof(err)), WEFT_OK, "%s", err);
}

static void teardown(void)
{
    ca_store_close(s);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ca_store, .init = setup, .fini = teardown);

static void reopen(void)
{
    char err[512];
    ca_store_close(s);
    cr_assert_eq(ca_store_open_sqlite(&s, path, err, sizeof(err)), WEFT_OK, "%s", err);
}

Test(ca_store, token_is_single_use_and_expires)
{
    uint8_t a[CA_TOKEN_HASH_LEN], b[CA_TOKEN_HASH_LEN], c[CA_TOKEN_HASH_LEN];
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    memset(c, 3, sizeof(c));
    char node[CA_NODE_NAME_MAX + 1];
    cr_assert_eq(ca_store_token_add(s, a, "node-a", NOW + 3600, NOW), WEFT_OK, "%s", s->err);
    cr_assert_eq(ca_store_token_add(s, b, "node-b", NOW + 60, NOW), WEFT_OK);
    cr_assert_eq(ca_store_token_add(s, a, "node-x", NOW + 60, NOW), WEFT_EINVAL, "same hash twice");
    cr_assert_eq(ca_store_token_use(s, a, NOW + 10, node), WEFT_OK, "%s", s->err);
    cr_assert_str_eq(node, "node-a");
    cr_assert_eq(ca_store_token_use(s, a, NOW + 11, node), WEFT_EPOLICY);
    cr_assert_not_null(strstr(s->err, "already used"), "%s", s->err);
    cr_assert_eq(ca_store_token_use(s, b, NOW + 60, node), WEFT_ESTALE, "expiry is exclusive");
    cr_assert_eq(ca_store_token_use(s, c, NOW, node), WEFT_ENOTFOUND);
    /* a used token stays used across a restart */
    reopen();
    cr_assert_eq(ca_store_token_use(s, a, NOW + 12, node), WEFT_EPOLICY);
}

static struct ca_entry make_entry(const char *id, const char *spiffe_id, const char *node)
{
    struct ca_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", id);
    snprintf(e.spiffe_id, sizeof(e.spiffe_id), "%s", spiffe_id);
    snprintf(e.node, sizeof(e.node), "%s", node);
    snprintf(e.selectors[0], sizeof(e.selectors[0]), "k8s:ns:shop");
    snprintf(e.selectors[1], sizeof(e.selectors[1]), "unix:uid:1001");
    e.num_selectors = 2;
    e.ttl_s = 3600;
    e.created_at = NOW;
    return e;
}

struct collected {
    size_t n;
    char ids[8][CA_ENTRY_ID_LEN + 1];
};

static int collect_entry(void *arg, const struct ca_entry *e)
{
    struct collected *c = arg;
    snprintf(c->ids[c->n++], sizeof(c->ids[0]), "%s", e->id);
    return c->n == 8 ? 1 : WEFT_OK;
}

Test(ca_store, entries_round_trip_by_node_in_creation_order)
{
    struct ca_entry e1 = make_entry("e1", "spiffe://td/ns/shop/sa/web", "node-a");
    struct ca_entry e2 = make_entry("e2", "spiffe://td/ns/shop/sa/api", "node-b");
    struct ca_entry e3 = make_entry("e3", "spiffe://td/ns/shop/sa/db", "node-a");
    cr_assert_eq(ca_store_entry_add(s, &e1), WEFT_OK, "%s", s->err);
    cr_assert_eq(ca_store_entry_add(s, &e2), WEFT_OK);
    cr_assert_eq(ca_store_entry_add(s, &e3), WEFT_OK);
    cr_assert_eq(ca_store_entry_add(s, &e1), WEFT_EINVAL, "an id is unique");
    struct ca_entry got;
    cr_assert_eq(ca_store_entry_get(s, "e2", &got), WEFT_OK);
    cr_assert_str_eq(got.spiffe_id, "spiffe://td/ns/shop/sa/api");
    cr_assert_str_eq(got.node, "node-b");
    cr_assert_eq(got.num_selectors, 2);
    cr_assert_str_eq(got.selectors[1], "unix:uid:1001");
    cr_assert_eq(got.ttl_s, 3600);
    struct collected c = {0};
    cr_assert_eq(ca_store_entry_list(s, "node-a", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.ids[0], "e1");
    cr_assert_str_eq(c.ids[1], "e3");
    memset(&c, 0, sizeof(c));
    cr_assert_eq(ca_store_entry_list(s, NULL, collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 3);
    cr_assert_eq(ca_store_entry_delete(s, "e1"), WEFT_OK);
    cr_assert_eq(ca_store_entry_delete(s, "e1"), WEFT_ENOTFOUND);
    cr_assert_eq(ca_store_entry_get(s, "e1", &got), WEFT_ENOTFOUND);
    reopen();
    cr_assert_eq(ca_store_entry_get(s, "e3", &got), WEFT_OK, "entries survive a restart");
}

static size_t last_revoked; /* by the last node_joins */

/* node_joins records |node| as attested by a token of service account |as|, reporting |num|
 * |selectors|, with a node SVID of serial |serial| valid an hour. */
static int node_joins(const char *node, uint8_t serial, const char *as,
                      const char *const *selectors, size_t num)
{
    char id[128];
    snprintf(id, sizeof(id), "spiffe://td/weft/node/%s", node);
    struct ca_issuance rec;
    memset(&rec, 0, sizeof(rec));
    rec.serial[0] = serial;
    rec.serial_len = 1;
    rec.kind = CA_ISSUANCE_NODE;
    snprintf(rec.spiffe_id, sizeof(rec.spiffe_id), "%s", id);
    snprintf(rec.node, sizeof(rec.node), "%s", node);
    rec.not_after = NOW + 3600;
    size_t revoked;
    int rc = ca_store_node_commit(s, CA_ATTEST_PSAT, as, selectors, num, NOW, &rec, &revoked);
    last_revoked = revoked;
    return rc;
}

Test(ca_store, a_node_selector_entry_holds_on_every_node_that_reports_it)
{
    static const char *const agents[] = {"k8s_psat:cluster:prod", "k8s_psat:agent_sa:weft-agent"};
    static const char *const other[] = {"k8s_psat:cluster:prod", "k8s_psat:agent_sa:other"};
    struct ca_entry named = make_entry("e1", "spiffe://td/ns/shop/sa/web", "node-a");
    struct ca_entry by_sa = make_entry("e2", "spiffe://td/ns/shop/sa/api", "");
    snprintf(by_sa.node_selector, sizeof(by_sa.node_selector), "k8s_psat:agent_sa:weft-agent");
    struct ca_entry by_cluster = make_entry("e3", "spiffe://td/ns/shop/sa/db", "");
    snprintf(by_cluster.node_selector, sizeof(by_cluster.node_selector), "k8s_psat:cluster:prod");
    cr_assert_eq(ca_store_entry_add(s, &named), WEFT_OK, "%s", s->err);
    cr_assert_eq(ca_store_entry_add(s, &by_sa), WEFT_OK, "%s", s->err);
    cr_assert_eq(ca_store_entry_add(s, &by_cluster), WEFT_OK, "%s", s->err);
    /* before any attestation a node has no selectors: only the entry naming it */
    struct collected c = {0};
    cr_assert_eq(ca_store_entry_list(s, "node-a", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(node_joins("node-a", 1, "weft-system:weft-agent", agents, 2), WEFT_OK, "%s",
                 s->err);
    cr_assert_eq(node_joins("node-b", 0xb2, "weft-system:other", other, 2), WEFT_OK, "%s", s->err);
    memset(&c, 0, sizeof(c));
    cr_assert_eq(ca_store_entry_list(s, "node-a", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 3, "the named entry and both selector entries");
    cr_assert_str_eq(c.ids[0], "e1");
    cr_assert_str_eq(c.ids[1], "e2");
    cr_assert_str_eq(c.ids[2], "e3");
    memset(&c, 0, sizeof(c));
    cr_assert_eq(ca_store_entry_list(s, "node-b", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 1, "another service account's node gets the cluster's entry only");
    cr_assert_str_eq(c.ids[0], "e3");
    /* the bound: any node might report every selector, joined or not */
    size_t bound;
    cr_assert_eq(ca_store_entries_bound(s, "", &bound), WEFT_OK);
    cr_assert_eq(bound, 3, "2 node-selector entries and node-a's 1");
    cr_assert_eq(ca_store_entries_bound(s, "node-b", &bound), WEFT_OK);
    cr_assert_eq(bound, 2, "none names node-b");
    cr_assert_eq(ca_store_entries_bound(s, "node-a", &bound), WEFT_OK);
    cr_assert_eq(bound, 3);
    cr_assert_eq(ca_store_entries_bound(s, "node-new", &bound), WEFT_OK);
    cr_assert_eq(bound, 2, "a node that has not joined might report both");
    bool has;
    cr_assert_eq(ca_store_node_has_selector(s, "node-b", "k8s_psat:agent_sa:weft-agent", &has),
                 WEFT_OK);
    cr_assert_not(has);
    cr_assert_eq(ca_store_node_has_selector(s, "node-b", "k8s_psat:cluster:prod", &has), WEFT_OK);
    cr_assert(has);
    /* an entry that names a node does not also hold where its (empty) selector would */
    cr_assert_eq(ca_store_node_has_selector(s, "node-c", "", &has), WEFT_OK);
    cr_assert_not(has);
    /* a later attestation replaces the node's selectors, durably */
    reopen();
    cr_assert_eq(node_joins("node-a", 3, "weft-system:weft-agent", other + 1, 1), WEFT_OK, "%s",
                 s->err);
    memset(&c, 0, sizeof(c));
    cr_assert_eq(ca_store_entry_list(s, "node-a", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 1, "node-a no longer reports the cluster or weft-agent");
    cr_assert_str_eq(c.ids[0], "e1");
    /* a refused attestation changes nothing: node-j joined by join token */
    cr_assert_eq(ca_store_node_attested(s, "node-j", CA_ATTEST_JOIN_TOKEN, NOW), WEFT_OK);
    cr_assert_eq(node_joins("node-j", 4, "weft-system:weft-agent", agents, 2), WEFT_EPOLICY);
    /* a token of another service account for a node: the node's identity follows it, and the
     * node SVIDs of the earlier one are revoked, or they would gain the new one's selectors */
    cr_assert_eq(node_joins("node-b", 6, "tools:scanner", agents, 2), WEFT_OK, "%s", s->err);
    cr_assert_eq(last_revoked, 1, "node-b's SVID of serial b2");
    bool revoked;
    cr_assert_eq(ca_store_is_revoked(s, CA_REVOKE_SERIAL, "b2", &revoked), WEFT_OK,
                 "as lowercase hex, as a presented certificate's serial is compared");
    cr_assert(revoked);
    cr_assert_eq(ca_store_is_revoked(s, CA_REVOKE_SERIAL, "06", &revoked), WEFT_OK);
    cr_assert_not(revoked, "the new SVID stands");
    memset(&c, 0, sizeof(c));
    cr_assert_eq(ca_store_entry_list(s, "node-b", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 2, "node-b now reports agent_sa:weft-agent too");
    cr_assert_eq(node_joins("node-b", 7, "tools:scanner", agents, 2), WEFT_OK, "%s", s->err);
    cr_assert_eq(last_revoked, 0, "the same account again revokes nothing");
    enum ca_attest_method method;
    char as[64];
    cr_assert_eq(ca_store_node_get(s, "node-b", &method, as, sizeof(as)), WEFT_OK);
    cr_assert_eq(method, CA_ATTEST_PSAT);
    cr_assert_str_eq(as, "tools:scanner");
    cr_assert_eq(ca_store_node_get(s, "node-j", &method, as, sizeof(as)), WEFT_OK);
    cr_assert_eq(method, CA_ATTEST_JOIN_TOKEN);
    cr_assert_str_eq(as, "");
    cr_assert_eq(ca_store_node_get(s, "node-zz", &method, as, sizeof(as)), WEFT_ENOTFOUND);
    memset(&c, 0, sizeof(c));
    cr_assert_eq(ca_store_entry_list(s, "node-j", collect_entry, &c), WEFT_OK);
    cr_assert_eq(c.n, 0, "%zu", c.n);
    const char *many[CA_MAX_NODE_SELECTORS + 1];
    for (size_t i = 0; i < CA_MAX_NODE_SELECTORS + 1; i++) {
        many[i] = "k8s_psat:cluster:prod";
    }
    cr_assert_eq(node_joins("node-d", 5, "weft-system:weft-agent", many, CA_MAX_NODE_SELECTORS + 1),
                 WEFT_ELIMIT);
}

static struct ca_issuance make_issuance(uint8_t serial, const char *id, const char *node,
                                        int64_t not_after)
{
    struct ca_issuance i;
    memset(&i, 0, sizeof(i));
    i.serial[0] = serial;
    i.serial[1] = 0xab;
    i.serial_len = 2;
    i.kind = CA_ISSUANCE_WORKLOAD;
    snprintf(i.spiffe_id, sizeof(i.spiffe_id), "%s", id);
    snprintf(i.node, sizeof(i.node), "%s", node);
    snprintf(i.entry_id, sizeof(i.entry_id), "e1");
    i.not_before = not_after - 3600;
    i.not_after = not_after;
    memset(i.sha256, serial, sizeof(i.sha256));
    return i;
}

static int count_issuance(void *arg, const struct ca_issuance *i)
{
    (void)i;
    (*(size_t *)arg)++;
    return WEFT_OK;
}

Test(ca_store, inventory_is_queried_by_id_node_and_expiry)
{
    struct ca_issuance a = make_issuance(1, "spiffe://td/ns/shop/sa/web", "node-a", NOW + 600);
    struct ca_issuance b = make_issuance(2, "spiffe://td/ns/shop/sa/web", "node-b", NOW + 3600);
    struct ca_issuance c = make_issuance(3, "spiffe://td/ns/shop/sa/api", "node-a", NOW - 10);
    cr_assert_eq(ca_store_issuance_add(s, &a), WEFT_OK, "%s", s->err);
    cr_assert_eq(ca_store_issuance_add(s, &b), WEFT_OK);
    cr_assert_eq(ca_store_issuance_add(s, &c), WEFT_OK);
    cr_assert_eq(ca_store_issuance_add(s, &a), WEFT_EINVAL, "a serial is recorded once");
    size_t n = 0;
    struct ca_issuance_filter all = {0};
    cr_assert_eq(ca_store_issuance_list(s, &all, count_issuance, &n), WEFT_OK);
    cr_assert_eq(n, 3);
    n = 0;
    struct ca_issuance_filter by_id = {.spiffe_id = "spiffe://td/ns/shop/sa/web"};
    cr_assert_eq(ca_store_issuance_list(s, &by_id, count_issuance, &n), WEFT_OK);
    cr_assert_eq(n, 2);
    n = 0;
    struct ca_issuance_filter expiring = {.not_after_before = NOW + 900, .now = NOW};
    cr_assert_eq(ca_store_issuance_list(s, &expiring, count_issuance, &n), WEFT_OK);
    cr_assert_eq(n, 1, "expiring within 15 minutes, and not already expired");
    int64_t latest;
    cr_assert_eq(ca_store_latest_not_after(s, CA_REVOKE_ID, "spiffe://td/ns/shop/sa/web", &latest),
                 WEFT_OK);
    cr_assert_eq(latest, NOW + 3600);
    cr_assert_eq(ca_store_latest_not_after(s, CA_REVOKE_NODE, "node-a", &latest), WEFT_OK);
    cr_assert_eq(latest, NOW + 600);
    cr_assert_eq(ca_store_latest_not_after(s, CA_REVOKE_SERIAL, "02AB", &latest), WEFT_OK);
    cr_assert_eq(latest, NOW + 3600);
    cr_assert_eq(ca_store_latest_not_after(s, CA_REVOKE_ID, "spiffe://td/none", &latest),
                 WEFT_ENOTFOUND);
}

static int count_revocation(void *arg, const struct ca_revocation *r)
{
    (void)r;
    (*(size_t *)arg)++;
    return WEFT_OK;
}

Test(ca_store, revocations_keep_the_later_drop_time_and_expire)
{
    struct ca_revocation r = {.kind = CA_REVOKE_ID, .created_at = NOW, .drop_after = NOW + 100};
    snprintf(r.value, sizeof(r.value), "spiffe://td/ns/shop/sa/web");
    cr_assert_eq(ca_store_revoke(s, &r), WEFT_OK, "%s", s->err);
    r.drop_after = NOW + 50;
    cr_assert_eq(ca_store_revoke(s, &r), WEFT_OK, "revoking again is fine");
    struct ca_revocation n = {.kind = CA_REVOKE_NODE, .created_at = NOW, .drop_after = NOW + 10};
    snprintf(n.value, sizeof(n.value), "node-b");
    cr_assert_eq(ca_store_revoke(s, &n), WEFT_OK);
    size_t count = 0;
    cr_assert_eq(ca_store_revocation_list(s, NOW, count_revocation, &count), WEFT_OK);
    cr_assert_eq(count, 2);
    count = 0;
    cr_assert_eq(ca_store_revocation_list(s, NOW + 99, count_revocation, &count), WEFT_OK);
    cr_assert_eq(count, 1, "the node item is past its drop time; the ID keeps the later one");
    count = 0;
    cr_assert_eq(ca_store_revocation_list(s, NOW + 100, count_revocation, &count), WEFT_OK);
    cr_assert_eq(count, 0);
}

Test(ca_store, refuses_a_schema_newer_than_it_knows)
{
    ca_store_close(s);
    s = NULL;
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[512];
    cr_assert_eq(ca_store_open_sqlite(&s, path, err, sizeof(err)), WEFT_EIO);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, "newer"), "%s", err);
}

Test(ca_store, durable_settings)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 5);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

Test(ca_store, state_items_are_written_together_and_survive_a_reopen)
{
    uint8_t *v = NULL;
    size_t len = 0;
    cr_assert_eq(ca_store_state_get(s, "phase", &v, &len), WEFT_ENOTFOUND);
    struct ca_state_item items[] = {{"phase", "2", 1}, {"bundle", "\0PEM", 4}};
    cr_assert_eq(ca_store_state_put(s, items, 2), WEFT_OK, "%s", s->err);
    struct ca_state_item again[] = {{"phase", "3", 1}};
    cr_assert_eq(ca_store_state_put(s, again, 1), WEFT_OK, "%s", s->err);
    reopen();
    cr_assert_eq(ca_store_state_get(s, "phase", &v, &len), WEFT_OK, "%s", s->err);
    cr_assert_eq(len, 1);
    cr_assert_str_eq((char *)v, "3");
    free(v);
    cr_assert_eq(ca_store_state_get(s, "bundle", &v, &len), WEFT_OK, "%s", s->err);
    cr_assert_eq(len, 4);
    cr_assert_eq(memcmp(v, "\0PEM", 4), 0);
    free(v);
}

Test(ca_store, a_directory_that_does_not_exist_is_a_clear_error)
{
    struct ca_store *other = NULL;
    char err[512];
    cr_assert_eq(ca_store_open_sqlite(&other, "/nonexistent/dir/ca.db", err, sizeof(err)),
                 WEFT_EIO);
    cr_assert_null(other);
    cr_assert_not_null(strstr(err, "/nonexistent/dir/ca.db"), "%s", err);
}

static size_t issuances_of(const char *node)
{
    struct ca_issuance_filter f = {.node = node};
    size_t n = 0;
    cr_assert_eq(ca_store_issuance_list(s, &f, count_issuance, &n), WEFT_OK);
    return n;
}

Test(ca_store, a_node_keeps_the_method_it_joined_with)
{
    /* a node of join tokens: a service account token for it is refused, naming both */
    cr_assert_eq(ca_store_node_attested(s, "node-j", CA_ATTEST_JOIN_TOKEN, NOW), WEFT_OK, "%s",
                 s->err);
    cr_assert_eq(ca_store_node_attested(s, "node-j", CA_ATTEST_JOIN_TOKEN, NOW + 1), WEFT_OK);
    struct ca_issuance rec =
        make_issuance(1, "spiffe://example.org/weft/node/node-j", "node-j", NOW + 3600);
    rec.kind = CA_ISSUANCE_NODE;
    cr_assert_eq(ca_store_node_commit(s, CA_ATTEST_PSAT, "weft-system:weft-agent", NULL, 0, NOW,
                                      &rec, &last_revoked),
                 WEFT_EPOLICY);
    cr_assert_not_null(strstr(s->err, "node node-j joined by join token: it cannot attest by "
                                      "Kubernetes service account token"),
                       "%s", s->err);
    cr_assert_eq(issuances_of("node-j"), 0, "the refused attestation recorded its SVID");
    /* a node of service account tokens: a join token for it is refused and stays unused */
    rec = make_issuance(2, "spiffe://example.org/weft/node/node-k", "node-k", NOW + 3600);
    rec.kind = CA_ISSUANCE_NODE;
    cr_assert_eq(ca_store_node_commit(s, CA_ATTEST_PSAT, "weft-system:weft-agent", NULL, 0, NOW,
                                      &rec, &last_revoked),
                 WEFT_OK, "%s", s->err);
    cr_assert_eq(issuances_of("node-k"), 1);
    reopen(); /* the method is durable */
    uint8_t hash[CA_TOKEN_HASH_LEN] = {9};
    cr_assert_eq(ca_store_token_add(s, hash, "node-k", NOW + 600, NOW), WEFT_OK);
    rec = make_issuance(3, "spiffe://example.org/weft/node/node-k", "node-k", NOW + 3600);
    rec.kind = CA_ISSUANCE_NODE;
    cr_assert_eq(ca_store_attest_commit(s, hash, NOW, &rec), WEFT_EPOLICY);
    cr_assert_not_null(strstr(s->err, "node node-k joined by Kubernetes service account token: "
                                      "it cannot attest by join token"),
                       "%s", s->err);
    char node[CA_NODE_NAME_MAX + 1];
    cr_assert_eq(ca_store_token_peek(s, hash, NOW, node), WEFT_OK, "the token was used: %s",
                 s->err);
    cr_assert_eq(issuances_of("node-k"), 1);
    cr_assert_eq(ca_store_node_attested(s, "node-k", CA_ATTEST_JOIN_TOKEN, NOW), WEFT_EPOLICY);
}

Test(ca_store, an_old_store_is_migrated_and_its_nodes_are_join_token_nodes)
{
    /* a store as weft-ca wrote it before nodes had a method (schema version 2) */
    ca_store_close(s);
    s = NULL;
    cr_assert_eq(unlink(path), 0);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db,
                     "CREATE TABLE join_tokens (hash BLOB PRIMARY KEY, node TEXT NOT NULL,"
                     "  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER);"
                     "CREATE TABLE nodes (name TEXT PRIMARY KEY,"
                     "  first_attested_at INTEGER NOT NULL, last_attested_at INTEGER NOT NULL);"
                     "CREATE TABLE entries (id TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL,"
                     "  node TEXT NOT NULL, node_selector TEXT NOT NULL, selectors TEXT NOT NULL,"
                     "  ttl_s INTEGER NOT NULL, created_at INTEGER NOT NULL);"
                     "CREATE TABLE issuances (serial BLOB PRIMARY KEY, kind INTEGER NOT NULL,"
                     "  spiffe_id TEXT NOT NULL, node TEXT NOT NULL, entry_id TEXT NOT NULL,"
                     "  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
                     "  sha256 BLOB NOT NULL);"
                     "CREATE TABLE revocations (kind INTEGER NOT NULL, value TEXT NOT NULL,"
                     "  created_at INTEGER NOT NULL, drop_after INTEGER NOT NULL,"
                     "  PRIMARY KEY (kind, value));"
                     "CREATE TABLE ca_state (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
                     "INSERT INTO nodes VALUES ('old-node', 1600000000, 1600000000);"
                     "PRAGMA user_version = 2;",
                     NULL, NULL, NULL),
        SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    char err[512];
    cr_assert_eq(ca_store_open_sqlite(&s, path, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_store_node_attested(s, "old-node", CA_ATTEST_PSAT, NOW), WEFT_EPOLICY);
    cr_assert_not_null(strstr(s->err, "node old-node joined by join token"), "%s", s->err);
    cr_assert_eq(ca_store_node_attested(s, "old-node", CA_ATTEST_JOIN_TOKEN, NOW), WEFT_OK, "%s",
                 s->err);
    cr_assert_eq(ca_store_node_attested(s, "new-node", CA_ATTEST_PSAT, NOW), WEFT_OK, "%s", s->err);
    ca_store_close(s);
    s = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 5);
    sqlite3_finalize(st);
    sqlite3_close(db);
    reopen();
}
