/* ca/directory_test.c: the mesh directory's merge, conflict and expiry rules. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ca/directory.h"
#include "lib/base/log.h"

#define NOW INT64_C(1700000000)
#define WEB "spiffe://td/ns/shop/sa/web"
#define API "spiffe://td/ns/shop/sa/api"

static struct ca_directory *d;

/* may_serve: in these tests a node may serve any ID except those under ns/evil */
static bool may_serve(void *arg, const char *node, const char *spiffe_id)
{
    (void)arg;
    (void)node;
    return strstr(spiffe_id, "/ns/evil/") == NULL;
}

static void setup(void)
{
    weft_log_set_output(stdout, WEFT_LOG_ERROR);
    d = ca_directory_new(4, 3, 300, may_serve, NULL);
}

static void teardown(void) { ca_directory_free(d); }

TestSuite(ca_directory, .init = setup, .fini = teardown);

struct conflicts {
    size_t n;
    char last[300];
};

static void on_conflict(void *arg, const struct ca_dir_item *item, const char *reason)
{
    struct conflicts *c = arg;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%s: %s", item->address, reason);
}

Test(ca_directory, canonical_addresses)
{
    char out[CA_DIR_ADDR_MAX];
    cr_assert_eq(ca_dir_canonical(out, "10.0.0.1:8080"), WEFT_OK);
    cr_assert_str_eq(out, "10.0.0.1:8080");
    cr_assert_eq(ca_dir_canonical(out, "198.18.0.7"), WEFT_OK);
    cr_assert_str_eq(out, "198.18.0.7");
    cr_assert_eq(ca_dir_canonical(out, "[2001:DB8:0::1]:443"), WEFT_OK);
    cr_assert_str_eq(out, "[2001:db8::1]:443");
    cr_assert_eq(ca_dir_canonical(out, "2001:db8:0:0::1"), WEFT_OK);
    cr_assert_str_eq(out, "2001:db8::1");
    cr_assert_eq(ca_dir_canonical(out, "[::ffff:198.18.0.5]:8080"), WEFT_OK);
    cr_assert_str_eq(out, "198.18.0.5:8080", "an IPv4-mapped address is the IPv4 one");
    static const char *const bad[] = {"",           "host:80",     "1.2.3.4:0", "1.2.3.4:65536",
                                      "1.2.3.4:08", "1.2.3.4:",    "[::1]x",    "[::1",
                                      "1.2.3",      "1.2.3.4:80:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_eq(ca_dir_canonical(out, bad[i]), WEFT_EINVAL, "accepted \"%s\"", bad[i]);
    }
}

Test(ca_directory, the_first_holder_keeps_an_address)
{
    struct conflicts c = {0};
    struct ca_dir_item a[] = {{"198.18.0.1:8080", WEB}, {"198.18.0.2:8080", API}};
    cr_assert_eq(ca_directory_report(d, "node-a", a, 2, NOW, on_conflict, &c), WEFT_OK);
    cr_assert_eq(ca_directory_size(d), 2);
    cr_assert_eq(ca_directory_version(d), 1);
    struct ca_dir_item b[] = {{"198.18.0.1:8080", API}};
    cr_assert_eq(ca_directory_report(d, "node-b", b, 1, NOW, on_conflict, &c), WEFT_OK);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.last, "198.18.0.1:8080: held by " WEB);
    cr_assert_eq(ca_directory_conflicts(d), 1);
    cr_assert_str_eq(ca_directory_lookup(d, "198.18.0.1:8080")->spiffe_id, WEB);
    cr_assert_eq(ca_directory_version(d), 1, "a refused claim changes nothing");
    /* the same report again changes nothing either */
    cr_assert_eq(ca_directory_report(d, "node-a", a, 2, NOW + 1, NULL, NULL), WEFT_OK);
    cr_assert_eq(ca_directory_version(d), 1);
}

Test(ca_directory, a_report_is_the_nodes_whole_list)
{
    struct ca_dir_item a[] = {{"198.18.0.1:8080", WEB}, {"198.18.0.2:8080", API}};
    cr_assert_eq(ca_directory_report(d, "node-a", a, 2, NOW, NULL, NULL), WEFT_OK);
    struct ca_dir_item b[] = {{"198.18.0.3:8080", WEB}};
    cr_assert_eq(ca_directory_report(d, "node-b", b, 1, NOW, NULL, NULL), WEFT_OK);
    cr_assert_eq(ca_directory_report(d, "node-a", a, 1, NOW + 5, NULL, NULL), WEFT_OK);
    cr_assert_eq(ca_directory_size(d), 2, "node-a stopped reporting .2; node-b's entry stays");
    cr_assert_null(ca_directory_lookup(d, "198.18.0.2:8080"));
    cr_assert_not_null(ca_directory_lookup(d, "198.18.0.3:8080"));
    cr_assert_eq(ca_directory_version(d), 3);
    /* the same ID at the same address from another node: it moved there */
    struct ca_dir_item moved[] = {{"198.18.0.1:8080", WEB}};
    cr_assert_eq(ca_directory_report(d, "node-c", moved, 1, NOW + 6, NULL, NULL), WEFT_OK);
    cr_assert_str_eq(ca_directory_lookup(d, "198.18.0.1:8080")->node, "node-c");
    cr_assert_eq(ca_directory_report(d, "node-a", NULL, 0, NOW + 7, NULL, NULL), WEFT_OK);
    cr_assert_not_null(ca_directory_lookup(d, "198.18.0.1:8080"), "node-a no longer holds it");
}

Test(ca_directory, entries_expire_when_their_node_goes_quiet)
{
    struct ca_dir_item a[] = {{"198.18.0.1:8080", WEB}};
    struct ca_dir_item b[] = {{"198.18.0.2:8080", API}};
    cr_assert_eq(ca_directory_report(d, "node-a", a, 1, NOW, NULL, NULL), WEFT_OK);
    cr_assert_eq(ca_directory_report(d, "node-b", b, 1, NOW + 100, NULL, NULL), WEFT_OK);
    cr_assert_eq(ca_directory_expire(d, NOW + 299), 0);
    cr_assert_eq(ca_directory_expire(d, NOW + 300), 1);
    cr_assert_null(ca_directory_lookup(d, "198.18.0.1:8080"));
    cr_assert_not_null(ca_directory_lookup(d, "198.18.0.2:8080"));
    /* once expired, another ID may take the address */
    struct ca_dir_item c[] = {{"198.18.0.1:8080", API}};
    cr_assert_eq(ca_directory_report(d, "node-c", c, 1, NOW + 301, NULL, NULL), WEFT_OK);
    cr_assert_str_eq(ca_directory_lookup(d, "198.18.0.1:8080")->spiffe_id, API);
}

Test(ca_directory, a_node_claims_only_ids_it_may_serve)
{
    struct conflicts c = {0};
    struct ca_dir_item evil[] = {{"198.18.0.9:8080", "spiffe://td/ns/evil/sa/x"}};
    cr_assert_eq(ca_directory_report(d, "node-b", evil, 1, NOW, on_conflict, &c), WEFT_OK);
    cr_assert_eq(ca_directory_size(d), 0);
    cr_assert_str_eq(c.last, "198.18.0.9:8080: an ID this node may not serve");
}

Test(ca_directory, limits_and_bad_addresses)
{
    struct conflicts c = {0};
    struct ca_dir_item items[] = {{"198.18.0.1", WEB}, {"198.18.0.2", WEB}, {"198.18.0.3", WEB},
                                  {"198.18.0.4", WEB}, {"198.18.0.5", WEB}, {"not-an-ip", WEB}};
    cr_assert_eq(ca_directory_report(d, "node-a", items, 6, NOW, on_conflict, &c), WEFT_OK);
    cr_assert_eq(ca_directory_size(d), 3, "one past the node's share is refused");
    cr_assert_eq(c.n, 3);
    cr_assert_eq(ca_directory_report(d, "node-b", items + 3, 2, NOW, on_conflict, &c), WEFT_OK);
    cr_assert_eq(ca_directory_size(d), 4, "one past the directory's limit is refused");
    cr_assert_str_eq(c.last, "198.18.0.5: the directory is full");
    c.n = 0;
    cr_assert_eq(ca_directory_report(d, "node-a", items, 6, NOW, on_conflict, &c), WEFT_OK);
    cr_assert_str_eq(c.last, "not-an-ip: not an IP address with an optional port");
    static struct ca_dir_item many[CA_DIR_MAX_REPORT + 1];
    for (size_t i = 0; i <= CA_DIR_MAX_REPORT; i++) {
        many[i] = items[0];
    }
    cr_assert_eq(ca_directory_report(d, "node-a", many, CA_DIR_MAX_REPORT + 1, NOW, NULL, NULL),
                 WEFT_ELIMIT);
    cr_assert_eq(ca_directory_size(d), 4, "nothing of an oversized report is applied");
    (void)c;
}
