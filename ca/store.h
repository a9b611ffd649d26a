/* ca/store.h: the CA's durable state (issue 4): join tokens, nodes, registration entries, the
 * issuance inventory and revocations.
 *
 * Callers see this interface only; ca/store_sqlite.c implements it on SQLite (WAL,
 * synchronous=FULL, one transaction per state change), and another backend (PostgreSQL, for
 * several CA replicas) can implement the same operations table without touching callers.
 * Nothing here reads the clock: every call that depends on time takes |now| (seconds since the
 * epoch), so tests drive it with an injected clock. A store is used by one thread at a time (the
 * SQLite connection is opened without its own mutex, and |err| is shared). */
#ifndef WEFT_CA_STORE_H
#define WEFT_CA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define CA_NODE_NAME_MAX 253 /* a Kubernetes node name (DNS subdomain) */
#define CA_SPIFFE_ID_MAX 2048
#define CA_ENTRY_ID_LEN 32       /* hex */
#define CA_SELECTOR_MAX 256      /* one "type:key:value" selector */
#define CA_MAX_SELECTORS 16      /* per entry */
#define CA_MAX_NODE_SELECTORS 16 /* per node, from its attestation */
#define CA_SERIAL_MAX 20
#define CA_TOKEN_HASH_LEN 32 /* SHA-256 of the token */

enum ca_issuance_kind {
    CA_ISSUANCE_NODE = 0,
    CA_ISSUANCE_WORKLOAD,
};

/* enum ca_attest_method is how a node joined. A node keeps the method it first joined with: a
 * node of join tokens is never attested by a service account token, nor the other way round
 * (a Kubernetes Node named like a join-token node would otherwise take over its identity). */
enum ca_attest_method {
    CA_ATTEST_JOIN_TOKEN = 0,
    CA_ATTEST_PSAT, /* a Kubernetes projected service account token (ca/psat.h) */
};

/* ca_attest_method_name names |m| for people ("join token", ...). */
const char *ca_attest_method_name(enum ca_attest_method m);

enum ca_revocation_kind {
    CA_REVOKE_ID = 0,
    CA_REVOKE_SERIAL,
    CA_REVOKE_NODE,
};

/* struct ca_entry binds a workload identity to the selectors an agent must observe and to the
 * nodes allowed to mint it (one named node, or every node matching |node_selector|). */
struct ca_entry {
    char id[CA_ENTRY_ID_LEN + 1];
    char spiffe_id[CA_SPIFFE_ID_MAX + 1];
    char node[CA_NODE_NAME_MAX + 1];         /* "" when node_selector is used */
    char node_selector[CA_SELECTOR_MAX + 1]; /* "" when node is used */
    char selectors[CA_MAX_SELECTORS][CA_SELECTOR_MAX + 1];
    size_t num_selectors;
    int64_t ttl_s;
    int64_t created_at;
};

/* struct ca_issuance is one row of the inventory. */
struct ca_issuance {
    uint8_t serial[CA_SERIAL_MAX];
    size_t serial_len;
    enum ca_issuance_kind kind;
    char spiffe_id[CA_SPIFFE_ID_MAX + 1];
    char node[CA_NODE_NAME_MAX + 1];
    char entry_id[CA_ENTRY_ID_LEN + 1]; /* "" for node SVIDs */
    int64_t not_before, not_after;
    uint8_t sha256[32]; /* of the certificate's DER */
};

/* struct ca_revocation is one item of the deny list: an ID, a serial (hex) or a node, kept until
 * |drop_after| (the latest notAfter among the certificates it affects). */
struct ca_revocation {
    enum ca_revocation_kind kind;
    char value[CA_SPIFFE_ID_MAX + 1];
    int64_t created_at;
    int64_t drop_after;
};

/* struct ca_issuance_filter selects inventory rows; zero fields do not filter. */
struct ca_issuance_filter {
    const char *spiffe_id;
    const char *node;
    int64_t not_after_before; /* rows with notAfter < this (and > now): "expiring within" */
    int64_t now;
};

/* struct ca_state_item is one named value of the CA's own state (the root rotation's phase, the
 * bundle it publishes): bytes the caller encodes as it likes. */
struct ca_state_item {
    const char *name;
    const void *value;
    size_t len;
};

struct ca_store;

/* The operations a backend provides. Each returns WEFT_OK or a negative WEFT_E* code, with a
 * sentence in |store->err| for a person. */
struct ca_store_ops {
    void (*close)(struct ca_store *s);
    int (*token_add)(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], const char *node,
                     int64_t expires_at, int64_t now);
    int (*token_use)(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                     char node_out[CA_NODE_NAME_MAX + 1]);
    int (*node_attested)(struct ca_store *s, const char *node, enum ca_attest_method method,
                         int64_t now);
    int (*entry_add)(struct ca_store *s, const struct ca_entry *e);
    int (*entry_delete)(struct ca_store *s, const char *id);
    int (*entry_get)(struct ca_store *s, const char *id, struct ca_entry *out);
    int (*entry_list)(struct ca_store *s, const char *node,
                      int (*fn)(void *arg, const struct ca_entry *e), void *arg);
    int (*issuance_add)(struct ca_store *s, const struct ca_issuance *i);
    int (*issuance_add_many)(struct ca_store *s, const struct ca_issuance *const *recs, size_t num);
    int (*issuance_list)(struct ca_store *s, const struct ca_issuance_filter *f,
                         int (*fn)(void *arg, const struct ca_issuance *i), void *arg);
    int (*revoke)(struct ca_store *s, const struct ca_revocation *r);
    int (*revocation_list)(struct ca_store *s, int64_t now,
                           int (*fn)(void *arg, const struct ca_revocation *r), void *arg);
    int (*latest_not_after)(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                            int64_t *out);
    int (*is_revoked)(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                      bool *out);
    int (*token_peek)(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                      char node_out[CA_NODE_NAME_MAX + 1]);
    int (*attest_commit)(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                         const struct ca_issuance *node_svid);
    int (*node_commit)(struct ca_store *s, enum ca_attest_method method, const char *as,
                       const char *const *selectors, size_t num_selectors, int64_t now,
                       const struct ca_issuance *node_svid, size_t *revoked);
    int (*node_has_selector)(struct ca_store *s, const char *node, const char *selector, bool *out);
    int (*entries_bound)(struct ca_store *s, const char *node, size_t *out);
    int (*node_get)(struct ca_store *s, const char *node, enum ca_attest_method *method, char *as,
                    size_t as_len);
    int (*state_put)(struct ca_store *s, const struct ca_state_item *items, size_t num);
    int (*state_get)(struct ca_store *s, const char *name, uint8_t **out, size_t *out_len);
};

struct ca_store {
    const struct ca_store_ops *ops;
    char err[512];
};

/* ca_store_open_sqlite opens (creating and migrating as needed) the SQLite store at |path|.
 * On failure |*out| is NULL and |err| says why. */
WEFT_MUST_USE int ca_store_open_sqlite(struct ca_store **out, const char *path, char *err,
                                       size_t err_len);

/* ca_store_close closes |s|; NULL does nothing. */
void ca_store_close(struct ca_store *s);

/* ca_store_token_add records a join token by its hash, for |node|, valid until |expires_at|. */
WEFT_MUST_USE int ca_store_token_add(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN],
                                     const char *node, int64_t expires_at, int64_t now);

/* ca_store_token_use consumes a token: exactly one caller ever succeeds. Returns WEFT_OK with
 * the node it was made for, WEFT_ENOTFOUND for an unknown token, WEFT_ESTALE when it expired,
 * WEFT_EPOLICY when it was already used. */
WEFT_MUST_USE int ca_store_token_use(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN],
                                     int64_t now, char node_out[CA_NODE_NAME_MAX + 1]);

/* ca_store_token_peek checks a token as ca_store_token_use does, without using it. */
WEFT_MUST_USE int ca_store_token_peek(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN],
                                      int64_t now, char node_out[CA_NODE_NAME_MAX + 1]);

/* ca_store_attest_commit is a node's attestation as one transaction: the token (still valid,
 * unused, made for |node_svid->node|) is used, the node recorded (as attested by join token:
 * WEFT_EPOLICY when it joined by another method) and its SVID added to the inventory; or, on
 * any failure, none of it happens and the token can be used again. */
WEFT_MUST_USE int ca_store_attest_commit(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN],
                                         int64_t now, const struct ca_issuance *node_svid);

/* ca_store_node_commit is an attestation by |method| without a stored token (a service account
 * token) as one transaction: the node |node_svid->node| recorded as ca_store_node_attested
 * does, and as attested by |as| (who the credential names: a service account NS:NAME), its
 * node selectors replaced by |selectors| (at most CA_MAX_NODE_SELECTORS, what this attestation
 * reported: see ca_store_entry_list), and its SVID added to the inventory; or, on any failure,
 * none of it. When |as| is not who the node last attested as, every unexpired node SVID issued
 * to it before is revoked by serial in the same transaction (|*revoked| says how many): the
 * node's identity, and the selectors that go with it, follow its latest attestation, and an
 * earlier holder cannot use the new one's. */
WEFT_MUST_USE int ca_store_node_commit(struct ca_store *s, enum ca_attest_method method,
                                       const char *as, const char *const *selectors,
                                       size_t num_selectors, int64_t now,
                                       const struct ca_issuance *node_svid, size_t *revoked);

/* ca_store_node_get reads how |node| joined and who it last attested as (into |as|, "" for a
 * join token's). WEFT_ENOTFOUND for a node never attested. */
WEFT_MUST_USE int ca_store_node_get(struct ca_store *s, const char *node,
                                    enum ca_attest_method *method, char *as, size_t as_len);

/* ca_store_node_has_selector sets |*out| to whether |node|'s last attestation reported
 * |selector|. */
WEFT_MUST_USE int ca_store_node_has_selector(struct ca_store *s, const char *node,
                                             const char *selector, bool *out);

/* ca_store_node_attested records that |node| joined (or re-joined) by |method| at |now|; the
 * store keeps the method of its first join. WEFT_EPOLICY, naming the node and both methods,
 * when the node first joined by another method. */
WEFT_MUST_USE int ca_store_node_attested(struct ca_store *s, const char *node,
                                         enum ca_attest_method method, int64_t now);

/* ca_store_entry_add stores |e| (its id must be unique). */
WEFT_MUST_USE int ca_store_entry_add(struct ca_store *s, const struct ca_entry *e);
WEFT_MUST_USE int ca_store_entry_delete(struct ca_store *s, const char *id);
WEFT_MUST_USE int ca_store_entry_get(struct ca_store *s, const char *id, struct ca_entry *out);

/* ca_store_entry_list calls |fn| for each entry, or when |node| is not NULL for each entry
 * assigned to that node: those naming it, and those whose node selector is among the selectors
 * its last attestation reported (ca_store_node_commit). In creation order. A non-zero return
 * from |fn| stops the walk and is returned. */
WEFT_MUST_USE int ca_store_entry_list(struct ca_store *s, const char *node,
                                      int (*fn)(void *arg, const struct ca_entry *e), void *arg);

/* ca_store_entries_bound sets |*out| to the most entries a node that a new entry would hold on
 * could already get: with |node| (not ""), the entries naming it plus every node-selector entry;
 * with |node| "" (a node-selector entry), the most entries naming any one node plus every
 * node-selector entry. An upper bound, as any node might report every selector, including
 * nodes that have not joined yet. */
WEFT_MUST_USE int ca_store_entries_bound(struct ca_store *s, const char *node, size_t *out);

/* ca_store_issuance_add records one issued certificate; a serial is recorded once. */
WEFT_MUST_USE int ca_store_issuance_add(struct ca_store *s, const struct ca_issuance *i);

/* ca_store_issuance_add_many records |num| certificates in one transaction (one fsync): all of
 * them, or on any failure none. */
WEFT_MUST_USE int ca_store_issuance_add_many(struct ca_store *s,
                                             const struct ca_issuance *const *recs, size_t num);

WEFT_MUST_USE int ca_store_issuance_list(struct ca_store *s, const struct ca_issuance_filter *f,
                                         int (*fn)(void *arg, const struct ca_issuance *i),
                                         void *arg);

/* ca_store_revoke adds a deny-list item (an existing item of the same kind and value keeps the
 * later drop_after). */
WEFT_MUST_USE int ca_store_revoke(struct ca_store *s, const struct ca_revocation *r);

/* ca_store_revocation_list calls |fn| for each item still in force at |now|. */
WEFT_MUST_USE int ca_store_revocation_list(struct ca_store *s, int64_t now,
                                           int (*fn)(void *arg, const struct ca_revocation *r),
                                           void *arg);

/* ca_store_latest_not_after finds the latest notAfter among issued certificates with that ID,
 * serial (hex) or node; WEFT_ENOTFOUND when there is none. */
WEFT_MUST_USE int ca_store_latest_not_after(struct ca_store *s, enum ca_revocation_kind kind,
                                            const char *value, int64_t *out);

/* ca_store_is_revoked reports whether |value| was ever revoked as |kind|, whatever its deny-list
 * item's drop time: a revoked ID or node is never issued for again. */
WEFT_MUST_USE int ca_store_is_revoked(struct ca_store *s, enum ca_revocation_kind kind,
                                      const char *value, bool *out);

/* ca_store_state_put writes |num| items in one transaction: all of them, or none. */
WEFT_MUST_USE int ca_store_state_put(struct ca_store *s, const struct ca_state_item *items,
                                     size_t num);

/* ca_store_state_get reads one item into |*out| (malloc'd, NUL-terminated after |*out_len|
 * bytes; the caller frees it); WEFT_ENOTFOUND when it was never written. */
WEFT_MUST_USE int ca_store_state_get(struct ca_store *s, const char *name, uint8_t **out,
                                     size_t *out_len);

#endif
