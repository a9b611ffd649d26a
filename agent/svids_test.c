/* agent/svids_test.c: workload SVIDs against a real weft-ca: minted for the node's entries,
 * served only to matching selectors, chained to the bundle with the key that goes with them,
 * renewed when due, and never served past notAfter. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <openssl/bytestring.h>

#include "agent/node.h"
#include "agent/svids.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/ca_proc.h"

static struct ca_proc ca;
static struct agent_node *node;

static void *admin(const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *resp = NULL;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&ca, method, req, desc, &resp, &st), WEFT_OK, "%s", st.details);
    return resp;
}

static void setup(void)
{
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "see %s/ca.log", ca.dir);
    char state[128], bootstrap[128], err[512];
    snprintf(state, sizeof(state), "%s/agent-state", ca.dir);
    snprintf(bootstrap, sizeof(bootstrap), "%s/bundle.pem", ca.dir);
    struct agent_node_config cfg = {state, ca.listen, CA_PROC_TD, bootstrap};
    cr_assert_eq(agent_node_open(&node, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    char *token = ca_proc_token(&ca, "node-a", 600);
    cr_assert_not_null(token);
    cr_assert_eq(agent_node_join(node, token, err, sizeof(err)), WEFT_OK, "%s", err);
    free(token);
}

static void teardown(void)
{
    agent_node_free(node);
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(svids, .init = setup, .fini = teardown, .timeout = 60);

/* entry_for creates an entry for node-a and returns it as the CA lists it. */
static Weft__Ca__V1__CreateEntryResponse *entry_for(const char *id, const char *selector)
{
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char *sel = (char *)selector;
    e.spiffe_id = (char *)id;
    e.node = "node-a";
    e.selectors = &sel;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    return admin("CreateEntry", &req.base, &weft__ca__v1__create_entry_response__descriptor);
}

static uint8_t *bundle_der(size_t *len)
{
    STACK_OF(X509) *roots = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/agent-state/%s", ca.dir, AGENT_NODE_BUNDLE);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static uint8_t buf[65536];
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    cr_assert_eq(spiffe_certs_decode(&roots, buf, *len, 8, 0, NULL), WEFT_OK);
    sk_X509_pop_free(roots, X509_free);
    return buf;
}

/* check_svid: the chain verifies against the bundle, names |id|, and goes with the key. */
static void check_svid(const X509SVID *o, const char *id)
{
    cr_assert_str_eq(o->spiffe_id, id);
    STACK_OF(X509) *chain = NULL;
    cr_assert_eq(spiffe_certs_decode(&chain, o->x509_svid.data, o->x509_svid.len, 4, 0, NULL),
                 WEFT_OK);
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, CA_PROC_TD, strlen(CA_PROC_TD), NULL), WEFT_OK);
    struct spiffe_why why;
    cr_assert_eq(spiffe_bundle_decode(&set, o->bundle.data, o->bundle.len, &td, &why), WEFT_OK,
                 "%s", why.msg);
    struct spiffe_id got;
    cr_assert_eq(spiffe_x509svid_verify(&got, chain, &set, time(NULL), &why), WEFT_OK, "%s",
                 why.msg);
    cr_assert_str_eq(got.str, id);
    CBS cbs;
    CBS_init(&cbs, o->x509_svid_key.data, o->x509_svid_key.len);
    EVP_PKEY *key = EVP_parse_private_key(&cbs);
    cr_assert_not_null(key, "the key is PKCS#8 DER");
    cr_assert_eq(spiffe_x509svid_check_key(sk_X509_value(chain, 0), key, NULL), WEFT_OK);
    EVP_PKEY_free(key);
    spiffe_bundle_set_cleanup(&set);
    sk_X509_pop_free(chain, X509_free);
}

Test(svids, minted_for_the_entries_served_to_matching_selectors_renewed_and_expired)
{
    Weft__Ca__V1__CreateEntryResponse *cart =
        entry_for("spiffe://" CA_PROC_TD "/ns/shop/sa/cart", "unix:uid:1001");
    Weft__Ca__V1__CreateEntryResponse *pay =
        entry_for("spiffe://" CA_PROC_TD "/ns/shop/sa/pay", "unix:uid:1002");
    struct agent_svids *s = agent_svids_new(CA_PROC_TD);
    int64_t now = (int64_t)time(NULL);
    cr_assert(!agent_svids_ready(s));
    size_t blen;
    uint8_t *b = bundle_der(&blen);
    cr_assert(agent_svids_set_bundle(s, b, blen));
    cr_assert(!agent_svids_set_bundle(s, b, blen), "the same bundle changes nothing");
    Weft__Ca__V1__Entry *entries[] = {cart->entry, pay->entry};
    (void)agent_svids_set_entries(s, entries, 2, now);
    /* two new entries: due at once (only many are spread over the start window) */
    cr_assert_leq(agent_svids_next_due(s), now + AGENT_START_SPREAD_S);
    char err[256];
    cr_assert(agent_svids_mint_due(s, node, now + AGENT_START_SPREAD_S, err, sizeof(err)), "%s",
              err);
    struct agent_svids_stats st;
    agent_svids_stats(s, now, &st);
    cr_assert_eq(st.held, 2);
    cr_assert_eq(st.minted, 2);

    struct agent_selectors *sel = calloc(1, sizeof(*sel));
    cr_assert_eq(agent_selectors_add(sel, "unix:uid:1001"), WEFT_OK);
    cr_assert_eq(agent_selectors_add(sel, "unix:gid:1001"), WEFT_OK);
    X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
    cr_assert_eq(agent_svids_x509(s, sel, now, &resp), 1, "only the entry it matches");
    check_svid(resp.svids[0], "spiffe://" CA_PROC_TD "/ns/shop/sa/cart");
    X509BundlesResponse br = X509_BUNDLES_RESPONSE__INIT;
    cr_assert_eq(agent_svids_bundles(s, sel, now, &br), 1);
    cr_assert_str_eq(br.bundles[0]->key, "spiffe://" CA_PROC_TD);
    struct agent_selectors *none = calloc(1, sizeof(*none));
    cr_assert_eq(agent_svids_x509(s, none, now, &resp), 0);
    cr_assert_eq(agent_svids_bundles(s, none, now, &br), 0, "no identity, no bundles");

    /* renewal: due at half-life +-10 %, and then a new SVID */
    int64_t due = agent_svids_next_due(s);
    cr_assert(due > now + 3600 * 4 / 10 - 60 && due < now + 3600 * 6 / 10 + 60, "%lld",
              (long long)(due - now));
    cr_assert_eq(agent_svids_x509(s, sel, now, &resp), 1);
    uint8_t first[4096];
    size_t first_len = resp.svids[0]->x509_svid.len;
    memcpy(first, resp.svids[0]->x509_svid.data, first_len);
    /* each SVID has its own draw: by 60 %% of the life both are due */
    cr_assert(agent_svids_mint_due(s, node, now + 3600 * 6 / 10, err, sizeof(err)), "renewal: %s",
              err);
    cr_assert_eq(agent_svids_x509(s, sel, now, &resp), 1);
    cr_assert(resp.svids[0]->x509_svid.len != first_len ||
                  memcmp(resp.svids[0]->x509_svid.data, first, first_len) != 0,
              "renewed");

    /* revoked by ID: dropped at once, and not minted again while listed */
    Weft__Ca__V1__DenyItem item = WEFT__CA__V1__DENY_ITEM__INIT, *items[] = {&item};
    item.kind = WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID;
    item.value = "spiffe://" CA_PROC_TD "/ns/shop/sa/cart";
    cr_assert(agent_svids_set_deny(s, items, 1, "node-a"));
    cr_assert_eq(agent_svids_x509(s, sel, now, &resp), 0);
    /* (the renewal above, at a "now" 36 min ahead, put the next one at 45..50 min) */
    cr_assert(!agent_svids_mint_due(s, node, now + 3400, err, sizeof(err)) ||
                  agent_svids_x509(s, sel, now, &resp) == 0,
              "a revoked ID is not minted again");
    cr_assert(!agent_svids_set_deny(s, NULL, 0, "node-a"), "lifting it changes nothing served");
    cr_assert(agent_svids_mint_due(s, node, now + 3400, err, sizeof(err)), "%s", err);
    cr_assert_eq(agent_svids_x509(s, sel, now, &resp), 1, "minted again once not listed");

    /* past notAfter: never served, even before anyone drops it */
    cr_assert_eq(agent_svids_x509(s, sel, now + 2 * 3600, &resp), 0);
    /* the entry goes: so does its SVID */
    Weft__Ca__V1__Entry *only_pay[] = {pay->entry};
    cr_assert(agent_svids_set_entries(s, only_pay, 1, now));
    cr_assert_eq(agent_svids_x509(s, sel, now, &resp), 0);
    free(sel);
    free(none);
    agent_svids_free(s);
    protobuf_c_message_free_unpacked(&cart->base, NULL);
    protobuf_c_message_free_unpacked(&pay->base, NULL);
}
