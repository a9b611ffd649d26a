/* agent/svids.c: see svids.h. */
#include "agent/svids.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "agent/schedule.h"
#include "ca/client.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"

struct held {
    char entry_id[64];
    char spiffe_id[2049];
    char **selectors;
    size_t num_selectors;
    int64_t ttl_s;
    /* the SVID, once minted */
    uint8_t *chain; /* DER, leaf first */
    size_t chain_len;
    uint8_t *key; /* PKCS#8 DER */
    size_t key_len;
    int64_t not_before, not_after;
    int64_t life_from; /* the later of notBefore and when it came */
    int64_t due;       /* when to mint (again) */
    uint32_t failures; /* consecutive */
    bool seen;         /* in the latest snapshot */
    uint64_t pass;     /* the agent_svids_mint_due call that last took it */
    bool lapsed;       /* its SVID expired before renewal; cleared by the next one */
};

struct agent_svids {
    pthread_mutex_t mu;
    char td[300]; /* "spiffe://example.org" */
    struct held *h;
    size_t num;
    uint8_t *bundle;
    size_t bundle_len;
    uint64_t minted, mint_failures, expired;
    uint64_t pass; /* agent_svids_mint_due calls: each takes an entry once at most */
    char **deny_ids, **deny_serials; /* the deny list in force */
    size_t num_deny_ids, num_deny_serials;
    bool node_denied;
    /* the storage the last x509/bundles answer points into (the Workload API thread's):
     * copies, since the CA thread may replace an SVID as soon as the lock is released */
    X509SVID *out_svids;
    X509SVID **out_ptrs;
    X509BundlesResponse__BundlesEntry out_entry, *out_entry_ptr;
    struct copy {
        void *p;
        size_t len;
    } * out_copies;
    size_t num_copies;
};

/* out_copy keeps a copy of |len| bytes for the current answer. */
static void *out_copy(struct agent_svids *s, const void *data, size_t len)
{
    void *c = weft_xmalloc(len + 1);
    memcpy(c, data, len);
    ((uint8_t *)c)[len] = 0;
    s->out_copies[s->num_copies++] = (struct copy){c, len};
    return c;
}

/* out_reset wipes and frees the previous answer's copies (keys are among them). */
static void out_reset(struct agent_svids *s)
{
    for (size_t i = 0; i < s->num_copies; i++) {
        OPENSSL_cleanse(s->out_copies[i].p, s->out_copies[i].len);
        free(s->out_copies[i].p);
    }
    s->num_copies = 0;
}

struct agent_svids *agent_svids_new(const char *trust_domain)
{
    struct agent_svids *s = weft_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    snprintf(s->td, sizeof(s->td), "%s%s", strncmp(trust_domain, "spiffe://", 9) ? "spiffe://" : "",
             trust_domain);
    s->h = weft_xcalloc(AGENT_MAX_ENTRIES, sizeof(*s->h));
    s->out_svids = weft_xcalloc(AGENT_MAX_ENTRIES, sizeof(*s->out_svids));
    s->out_ptrs = weft_xcalloc(AGENT_MAX_ENTRIES, sizeof(*s->out_ptrs));
    s->out_copies = weft_xcalloc(4 * AGENT_MAX_ENTRIES + 1, sizeof(*s->out_copies));
    return s;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i]);
    }
    free(l);
}

static bool listed(char *const *l, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(l[i], v) == 0) {
            return true;
        }
    }
    return false;
}

/* serial_hex writes the leaf serial of a DER chain in lowercase hex ("" if unreadable). */
static void serial_hex(const uint8_t *chain, size_t len, char out[SPIFFE_SERIAL_HEX_LEN])
{
    out[0] = '\0';
    const uint8_t *p = chain;
    X509 *leaf = d2i_X509(NULL, &p, (long)len);
    spiffe_serial_hex(out, leaf);
    X509_free(leaf);
}

static void drop_svid(struct held *h);

/* denied: the deny list names |h|'s ID or the serial of the SVID held. */
static bool denied(const struct agent_svids *s, const struct held *h)
{
    if (s->node_denied || listed(s->deny_ids, s->num_deny_ids, h->spiffe_id)) {
        return true;
    }
    char hex[SPIFFE_SERIAL_HEX_LEN];
    if (h->chain != NULL) {
        serial_hex(h->chain, h->chain_len, hex);
        return listed(s->deny_serials, s->num_deny_serials, hex);
    }
    return false;
}

bool agent_svids_set_deny(struct agent_svids *s, Weft__Ca__V1__DenyItem *const *items, size_t num,
                          const char *node)
{
    pthread_mutex_lock(&s->mu);
    free_list(s->deny_ids, s->num_deny_ids);
    free_list(s->deny_serials, s->num_deny_serials);
    s->deny_ids = weft_xcalloc(num + 1, sizeof(char *));
    s->deny_serials = weft_xcalloc(num + 1, sizeof(char *));
    s->num_deny_ids = s->num_deny_serials = 0;
    s->node_denied = false;
    for (size_t i = 0; i < num; i++) {
        const char *v = items[i]->value;
        if (items[i]->kind == WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID) {
            s->deny_ids[s->num_deny_ids++] = weft_xstrndup(v, strlen(v));
        } else if (items[i]->kind == WEFT__CA__V1__DENY_ITEM__KIND__SERIAL) {
            s->deny_serials[s->num_deny_serials++] = weft_xstrndup(v, strlen(v));
        } else if (node != NULL && strcmp(v, node) == 0) {
            s->node_denied = true;
        }
    }
    bool changed = false;
    for (size_t i = 0; i < s->num; i++) {
        struct held *h = &s->h[i];
        if (h->chain != NULL && denied(s, h)) {
            weft_log(WEFT_LOG_WARN, "svid revoked: no longer served", 2, "id", h->spiffe_id,
                     "entry", h->entry_id);
            drop_svid(h);
            changed = true;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return changed;
}

static void drop_svid(struct held *h)
{
    free(h->chain);
    if (h->key != NULL) {
        OPENSSL_cleanse(h->key, h->key_len);
    }
    free(h->key);
    h->chain = h->key = NULL;
    h->chain_len = h->key_len = 0;
    h->not_before = h->not_after = 0;
}

static void free_held(struct held *h)
{
    drop_svid(h);
    for (size_t i = 0; i < h->num_selectors; i++) {
        free(h->selectors[i]);
    }
    free(h->selectors);
    memset(h, 0, sizeof(*h));
}

void agent_svids_free(struct agent_svids *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->num; i++) {
        free_held(&s->h[i]);
    }
    free(s->h);
    free(s->bundle);
    free_list(s->deny_ids, s->num_deny_ids);
    free_list(s->deny_serials, s->num_deny_serials);
    out_reset(s);
    free(s->out_copies);
    free(s->out_svids);
    free(s->out_ptrs);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static bool same_entry(const struct held *h, const Weft__Ca__V1__Entry *e)
{
    if (strcmp(h->spiffe_id, e->spiffe_id) != 0 || h->ttl_s != e->ttl_seconds ||
        h->num_selectors != e->n_selectors) {
        return false;
    }
    for (size_t i = 0; i < e->n_selectors; i++) {
        if (strcmp(h->selectors[i], e->selectors[i]) != 0) {
            return false;
        }
    }
    return true;
}

static void fill_held(struct held *h, const Weft__Ca__V1__Entry *e)
{
    snprintf(h->entry_id, sizeof(h->entry_id), "%s", e->id);
    snprintf(h->spiffe_id, sizeof(h->spiffe_id), "%s", e->spiffe_id);
    h->ttl_s = e->ttl_seconds;
    h->selectors = weft_xcalloc(e->n_selectors + 1, sizeof(char *));
    for (size_t i = 0; i < e->n_selectors; i++) {
        h->selectors[i] = weft_xstrndup(e->selectors[i], strlen(e->selectors[i]));
    }
    h->num_selectors = e->n_selectors;
}

bool agent_svids_set_entries(struct agent_svids *s, Weft__Ca__V1__Entry *const *entries, size_t num,
                             int64_t now)
{
    pthread_mutex_lock(&s->mu);
    bool changed = false;
    for (size_t i = 0; i < s->num; i++) {
        s->h[i].seen = false;
    }
    uint32_t fresh = 0, total_fresh = 0;
    for (size_t k = 0; k < num; k++) {
        bool known = false;
        for (size_t i = 0; i < s->num && !known; i++) {
            known = strcmp(s->h[i].entry_id, entries[k]->id) == 0;
        }
        total_fresh += !known;
    }
    for (size_t k = 0; k < num; k++) {
        const Weft__Ca__V1__Entry *e = entries[k];
        struct held *h = NULL;
        for (size_t i = 0; i < s->num && h == NULL; i++) {
            if (strcmp(s->h[i].entry_id, e->id) == 0) {
                h = &s->h[i];
            }
        }
        if (h != NULL && !same_entry(h, e)) {
            free_held(h); /* changed: mint it again at once */
            fill_held(h, e);
            h->due = now;
            changed = true;
        } else if (h == NULL) {
            if (s->num >= AGENT_MAX_ENTRIES) {
                weft_log(WEFT_LOG_ERROR, "too many entries for one node: some are not served", 1,
                         "entry", e->id);
                continue;
            }
            h = &s->h[s->num++];
            fill_held(h, e);
            /* about 20 mints a second when many arrive together, at most the start window */
            int64_t window =
                total_fresh / 20 < AGENT_START_SPREAD_S ? total_fresh / 20 : AGENT_START_SPREAD_S;
            h->due = agent_spread_at(now, window, fresh++, total_fresh, agent_random_unit());
        }
        h->seen = true;
    }
    /* entries the CA no longer assigns go, with their SVIDs */
    for (size_t i = 0; i < s->num;) {
        if (!s->h[i].seen) {
            changed |= s->h[i].chain != NULL;
            free_held(&s->h[i]);
            s->h[i] = s->h[--s->num];
            memset(&s->h[s->num], 0, sizeof(s->h[s->num]));
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return changed;
}

bool agent_svids_set_bundle(struct agent_svids *s, const uint8_t *der, size_t len)
{
    pthread_mutex_lock(&s->mu);
    bool changed = s->bundle_len != len || s->bundle == NULL || memcmp(s->bundle, der, len) != 0;
    if (changed) {
        free(s->bundle);
        s->bundle = weft_xmalloc(len + 1);
        memcpy(s->bundle, der, len);
        s->bundle_len = len;
    }
    pthread_mutex_unlock(&s->mu);
    return changed;
}

bool agent_svids_ready(struct agent_svids *s)
{
    pthread_mutex_lock(&s->mu);
    bool ready = s->bundle != NULL;
    pthread_mutex_unlock(&s->mu);
    return ready;
}

/* expire drops SVIDs at or past notAfter: never served, and said loudly. */
static bool expire(struct agent_svids *s, int64_t now)
{
    bool changed = false;
    for (size_t i = 0; i < s->num; i++) {
        struct held *h = &s->h[i];
        if (h->chain != NULL && now >= h->not_after) {
            weft_log(WEFT_LOG_ERROR, "svid expired before it could be renewed: no longer served", 2,
                     "id", h->spiffe_id, "entry", h->entry_id);
            drop_svid(h);
            h->lapsed = true;
            s->expired++;
            changed = true;
        }
    }
    return changed;
}

struct batch {
    size_t idx[AGENT_MINT_BATCH];
    EVP_PKEY *keys[AGENT_MINT_BATCH];
    char ids[AGENT_MINT_BATCH][64];
    size_t num;
};

/* take_due picks up to a batch of entries due at |now| and makes their keys (under the lock). */
static void take_due(struct agent_svids *s, int64_t now, struct batch *b)
{
    b->num = 0;
    for (size_t i = 0; i < s->num && b->num < AGENT_MINT_BATCH; i++) {
        if (s->h[i].due <= now && s->h[i].pass != s->pass && !denied(s, &s->h[i])) {
            s->h[i].pass = s->pass;
            b->idx[b->num] = i;
            snprintf(b->ids[b->num], sizeof(b->ids[0]), "%s", s->h[i].entry_id);
            b->keys[b->num] = spiffe_key_generate(SPIFFE_KEY_EC_P256);
            b->num++;
        }
    }
}

/* store_result records one result of a batch (under the lock); returns whether served things
 * changed. */
static bool store_result(struct agent_svids *s, struct batch *b, size_t k,
                         const Weft__Ca__V1__MintResult *r, int64_t now, char *err, size_t err_len)
{
    /* the entry may have gone or moved while the lock was released */
    struct held *h = NULL;
    for (size_t i = 0; i < s->num && h == NULL; i++) {
        if (strcmp(s->h[i].entry_id, b->ids[k]) == 0) {
            h = &s->h[i];
        }
    }
    if (h == NULL) {
        return false;
    }
    STACK_OF(X509) *chain = NULL;
    int64_t nb = 0, na = 0;
    uint8_t *key_der = NULL;
    size_t key_len = 0;
    CBB cbb;
    struct spiffe_id leaf_id;
    /* the SVID must be for the entry as this agent knows it (the CA may have changed the entry
     * before its snapshot reached us), hold our key, and decode */
    bool ok = r != NULL && r->svid != NULL && b->keys[k] != NULL &&
              spiffe_certs_decode(&chain, r->svid->chain.data, r->svid->chain.len, SPIFFE_MAX_CHAIN,
                                  0, NULL) == WEFT_OK &&
              spiffe_cert_uri_id(&leaf_id, sk_X509_value(chain, 0), NULL) == WEFT_OK &&
              strcmp(leaf_id.str, h->spiffe_id) == 0 &&
              spiffe_x509svid_check_key(sk_X509_value(chain, 0), b->keys[k], NULL) == WEFT_OK &&
              spiffe_cert_validity(&nb, &na, sk_X509_value(chain, 0)) == WEFT_OK &&
              CBB_init(&cbb, 256) && EVP_marshal_private_key(&cbb, b->keys[k]) &&
              CBB_finish(&cbb, &key_der, &key_len);
    sk_X509_pop_free(chain, X509_free);
    if (!ok) {
        h->failures++;
        h->due = now + agent_backoff_ms(h->failures, agent_random_unit()) / 1000 + 1;
        s->mint_failures++;
        snprintf(err, err_len, "entry %s: %s", h->entry_id,
                 r != NULL && r->error[0] ? r->error : "the CA sent no usable SVID");
        weft_log(h->failures == 1 ? WEFT_LOG_ERROR : WEFT_LOG_WARN, "svid mint failed", 3, "id",
                 h->spiffe_id, "entry", h->entry_id, "error", err);
        OPENSSL_free(key_der);
        return false;
    }
    drop_svid(h);
    h->chain = weft_xmalloc(r->svid->chain.len);
    memcpy(h->chain, r->svid->chain.data, r->svid->chain.len);
    h->chain_len = r->svid->chain.len;
    h->key = weft_xmalloc(key_len);
    memcpy(h->key, key_der, key_len);
    h->key_len = key_len;
    OPENSSL_cleanse(key_der, key_len);
    OPENSSL_free(key_der);
    h->not_before = nb;
    h->not_after = na;
    h->life_from = nb > now ? nb : now;
    h->failures = 0;
    /* half of the life it has from now: the CA backdates notBefore a minute for lagging
     * clocks, and caps notAfter at its intermediate's */
    h->due = agent_renew_at(h->life_from, na, agent_random_unit(), now);
    s->minted++;
    return true;
}

bool agent_svids_mint_due(struct agent_svids *s, struct agent_node *n, int64_t now, char *err,
                          size_t err_len)
{
    bool changed = false;
    err[0] = '\0';
    pthread_mutex_lock(&s->mu);
    s->pass++;
    pthread_mutex_unlock(&s->mu);
    for (int round = 0; round < AGENT_MAX_ENTRIES / AGENT_MINT_BATCH; round++) {
        struct batch b;
        pthread_mutex_lock(&s->mu);
        changed |= expire(s, now);
        take_due(s, now, &b);
        pthread_mutex_unlock(&s->mu);
        if (b.num == 0) {
            break;
        }
        Weft__Ca__V1__MintRequest reqs[AGENT_MINT_BATCH], *ptrs[AGENT_MINT_BATCH];
        for (size_t k = 0; k < b.num; k++) {
            weft__ca__v1__mint_request__init(&reqs[k]);
            reqs[k].entry_id = b.ids[k];
            if (b.keys[k] != NULL &&
                ca_csr_new(b.keys[k], &reqs[k].csr.data, &reqs[k].csr.len) != WEFT_OK) {
                reqs[k].csr.data = NULL;
            }
            ptrs[k] = &reqs[k];
        }
        Weft__Ca__V1__MintWorkloadSVIDsRequest req =
            WEFT__CA__V1__MINT_WORKLOAD_SVIDS_REQUEST__INIT;
        req.requests = ptrs;
        req.n_requests = b.num;
        Weft__Ca__V1__MintWorkloadSVIDsResponse *resp = NULL;
        struct rpc_status st = {0};
        grpc_channel *ch = NULL;
        int rc = agent_node_channel(n, &ch, err, err_len);
        if (rc == WEFT_OK) {
            rc = rpc_call_unary(ch, "/weft.ca.v1.CA/MintWorkloadSVIDs", &req.base,
                                &weft__ca__v1__mint_workload_svids_response__descriptor, 64 << 20,
                                AGENT_NODE_RPC_TIMEOUT_MS, (ProtobufCMessage **)&resp, &st);
            if (rc != WEFT_OK) {
                snprintf(err, err_len, "MintWorkloadSVIDs: %s", st.details);
                if (st.code == GRPC_STATUS_UNAVAILABLE) {
                    agent_node_drop_channel(n);
                }
            } else if (resp->n_results != b.num) {
                snprintf(err, err_len, "the CA answered %zu results for %zu requests",
                         resp->n_results, b.num);
                rc = WEFT_EPROTO;
            }
        }
        char scratch[256]; /* a failed call keeps its own message in |err| */
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < b.num; k++) {
            changed |= store_result(s, &b, k, rc == WEFT_OK ? resp->results[k] : NULL, now,
                                    rc == WEFT_OK ? err : scratch,
                                    rc == WEFT_OK ? err_len : sizeof(scratch));
            OPENSSL_free(reqs[k].csr.data);
            EVP_PKEY_free(b.keys[k]);
        }
        pthread_mutex_unlock(&s->mu);
        if (resp != NULL) {
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        if (rc != WEFT_OK) {
            break; /* the CA is not reachable now: the backoff set above says when again */
        }
    }
    return changed;
}

int64_t agent_svids_next_due(struct agent_svids *s)
{
    pthread_mutex_lock(&s->mu);
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < s->num; i++) {
        int64_t t = s->h[i].due;
        if (s->h[i].chain != NULL && s->h[i].not_after < t) {
            t = s->h[i].not_after; /* expiry is work too */
        }
        next = t < next ? t : next;
    }
    pthread_mutex_unlock(&s->mu);
    return next;
}

static bool entitled(const struct held *h, const struct agent_selectors *sel, int64_t now)
{
    return h->chain != NULL && now >= h->not_before && now < h->not_after &&
           agent_selectors_match(sel, (const char *const *)h->selectors, h->num_selectors);
}

size_t agent_svids_x509(struct agent_svids *s, const struct agent_selectors *sel, int64_t now,
                        X509SVIDResponse *resp)
{
    pthread_mutex_lock(&s->mu);
    out_reset(s);
    size_t n = 0;
    for (size_t i = 0; i < s->num && s->bundle != NULL; i++) {
        const struct held *h = &s->h[i];
        if (!entitled(h, sel, now)) {
            continue;
        }
        X509SVID *o = &s->out_svids[n];
        x509_svid__init(o);
        o->spiffe_id = out_copy(s, h->spiffe_id, strlen(h->spiffe_id));
        o->x509_svid = (ProtobufCBinaryData){h->chain_len, out_copy(s, h->chain, h->chain_len)};
        o->x509_svid_key = (ProtobufCBinaryData){h->key_len, out_copy(s, h->key, h->key_len)};
        o->bundle = (ProtobufCBinaryData){s->bundle_len, out_copy(s, s->bundle, s->bundle_len)};
        s->out_ptrs[n++] = o;
    }
    resp->svids = s->out_ptrs;
    resp->n_svids = n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t agent_svids_identities(struct agent_svids *s, const struct agent_selectors *sel, int64_t now,
                              struct agent_identity *out, size_t cap)
{
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    for (size_t i = 0; i < s->num && s->bundle != NULL && n < cap; i++) {
        const struct held *h = &s->h[i];
        if (entitled(h, sel, now)) {
            snprintf(out[n].entry_id, sizeof(out[n].entry_id), "%s", h->entry_id);
            snprintf(out[n].spiffe_id, sizeof(out[n].spiffe_id), "%s", h->spiffe_id);
            n++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool agent_svids_holds(struct agent_svids *s, const struct agent_selectors *sel,
                       const char *spiffe_id, int64_t now, struct agent_identity *out)
{
    pthread_mutex_lock(&s->mu);
    bool found = false;
    for (size_t i = 0; i < s->num && s->bundle != NULL && !found; i++) {
        const struct held *h = &s->h[i];
        found = strcmp(h->spiffe_id, spiffe_id) == 0 && entitled(h, sel, now);
        if (found && out != NULL) {
            snprintf(out->entry_id, sizeof(out->entry_id), "%s", h->entry_id);
            snprintf(out->spiffe_id, sizeof(out->spiffe_id), "%s", h->spiffe_id);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

size_t agent_svids_bundles(struct agent_svids *s, const struct agent_selectors *sel, int64_t now,
                           X509BundlesResponse *resp)
{
    pthread_mutex_lock(&s->mu);
    bool any = false;
    for (size_t i = 0; i < s->num && !any; i++) {
        any = entitled(&s->h[i], sel, now);
    }
    size_t n = 0;
    out_reset(s);
    if (any && s->bundle != NULL) {
        x509_bundles_response__bundles_entry__init(&s->out_entry);
        s->out_entry.key = s->td;
        s->out_entry.value =
            (ProtobufCBinaryData){s->bundle_len, out_copy(s, s->bundle, s->bundle_len)};
        s->out_entry_ptr = &s->out_entry;
        resp->bundles = &s->out_entry_ptr;
        resp->n_bundles = n = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void agent_svids_stats(struct agent_svids *s, int64_t now, struct agent_svids_stats *out)
{
    pthread_mutex_lock(&s->mu);
    memset(out, 0, sizeof(*out));
    out->entries = s->num;
    out->minted = s->minted;
    out->mint_failures = s->mint_failures;
    out->expired_unrenewed = s->expired;
    for (size_t i = 0; i < s->num; i++) {
        const struct held *h = &s->h[i];
        if (h->failures > out->max_failures) {
            out->max_failures = h->failures;
        }
        out->lapsed += h->lapsed || (h->chain != NULL && now >= h->not_after);
        if (h->chain != NULL && now < h->not_after) {
            out->held++;
            if (out->earliest_not_after == 0 || h->not_after < out->earliest_not_after) {
                out->earliest_not_after = h->not_after;
                out->earliest_life_from = h->life_from;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void agent_svids_each(struct agent_svids *s, int64_t now,
                      void (*fn)(void *arg, const char *spiffe_id, int64_t not_after), void *arg)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->num; i++) {
        const struct held *h = &s->h[i];
        fn(arg, h->spiffe_id, h->chain != NULL && now < h->not_after ? h->not_after : 0);
    }
    pthread_mutex_unlock(&s->mu);
}
