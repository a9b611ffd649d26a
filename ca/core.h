/* ca/core.h: the CA's admin operations on its store, independent of any transport: join
 * tokens, registration entries, revocation. weft-ca's admin API and tests call these; every
 * time-dependent call takes |now|. */
#ifndef WEFT_CA_CORE_H
#define WEFT_CA_CORE_H

#include "ca/store.h"
#include "lib/spiffe/id.h"

#define CA_TOKEN_TEXT_LEN 49 /* "weft1." and 32 random bytes in base64url: 6 + 43 */
#define CA_TOKEN_MAX_TTL_S (7 * 24 * 3600)
#define CA_MIN_SVID_TTL_S (5 * 60)
#define CA_MAX_SVID_TTL_S (24 * 3600)
#define CA_DEFAULT_SVID_TTL_S 3600

/* ca_node_name_valid reports whether |name| can name a node: a DNS subdomain of at most
 * CA_NODE_NAME_MAX bytes (lowercase letters, digits, '-' and '.'). */
bool ca_node_name_valid(const char *name);

/* ca_token_create makes a one-time join token for |node| valid for |ttl_s| seconds, stores only
 * its SHA-256, and writes the token text (the only copy) to |out|. */
WEFT_MUST_USE int ca_token_create(struct ca_store *s, const char *node, int64_t ttl_s, int64_t now,
                                  char out[CA_TOKEN_TEXT_LEN + 1], char *err, size_t err_len);

/* ca_token_hash checks |token|'s shape and computes the hash the store keys it by; a malformed
 * token is WEFT_EPOLICY. */
WEFT_MUST_USE int ca_token_hash(uint8_t out[CA_TOKEN_HASH_LEN], const char *token, char *err,
                                size_t err_len);

/* ca_token_redeem consumes |token| and gives the node it was made for. Every failure (unknown,
 * expired, used, malformed) is WEFT_EPOLICY for the caller, with the precise reason in |err|
 * for the CA's log: a peer learns nothing about which tokens exist. */
WEFT_MUST_USE int ca_token_redeem(struct ca_store *s, const char *token, int64_t now,
                                  char node_out[CA_NODE_NAME_MAX + 1], char *err, size_t err_len);

/* ca_entry_new_id fills |out| with a fresh random entry id (32 hex digits). */
void ca_entry_new_id(char out[CA_ENTRY_ID_LEN + 1]);

/* ca_entry_validate checks |e| before it is stored: a workload ID with a path in trust domain
 * |td|, exactly one of node / node_selector, at least one selector, each "TYPE:KEY:VALUE" with
 * TYPE unix or k8s and no control characters, a TTL of 5 min to 24 h. A node selector is only
 * checked to be TYPE:KEY:VALUE here: which ones a node can report is its attestor's to say
 * (ca_psat_node_selector_check). */
WEFT_MUST_USE int ca_entry_validate(const struct ca_entry *e, const struct spiffe_id *td, char *err,
                                    size_t err_len);

/* ca_revoke stops issuance for an ID, serial (hex, colons allowed) or node at once and adds a
 * deny-list item kept until the latest notAfter among the certificates it affects, and at least
 * one longest SVID lifetime from |now| (so a mint racing the revocation is covered). A value
 * that is not an ID with a path, hex, or a node name is WEFT_EINVAL. On WEFT_OK, |out| (may be
 * NULL) gets the item as stored: the canonical value (a serial in lowercase hex without colons)
 * and the drop time asked for (the store keeps an earlier item's later one). */
WEFT_MUST_USE int ca_revoke(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                            int64_t now, struct ca_revocation *out, char *err, size_t err_len);

/* ca_may_issue reports whether |spiffe_id| may still be issued to |node|: WEFT_OK, or
 * WEFT_EPOLICY with the reason (the ID or the node was revoked). */
WEFT_MUST_USE int ca_may_issue(struct ca_store *s, const char *spiffe_id, const char *node,
                               char *err, size_t err_len);

#endif
