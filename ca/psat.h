/* ca/psat.h: node attestation with Kubernetes projected service account tokens (issue 8).
 *
 * The agent's pod mounts a token the kubelet mints for it (a projected volume with audience
 * "weft-ca"); the agent sends it in AttestNodeRequest.psat, and the CA validates it offline
 * against the cluster's OIDC JWKS (a file, never fetched) and the configured issuer. On success
 * the token's node name (claim kubernetes.io.node.name) is the node's name, as a join token's
 * --node is.
 *
 * Validation, in order; every refusal is WEFT_EPOLICY (WEFT_ELIMIT for a token over a limit)
 * with the reason in |err| for the CA's log:
 *   - at most CA_PSAT_MAX_TOKEN bytes; a compact JWS of three strict base64url parts; header
 *     and claims JSON objects, no duplicate keys, nested at most CA_PSAT_MAX_DEPTH deep;
 *   - header: `alg` RS256 or ES256, nothing else ("none", HS256 and the rest are refused before
 *     any key is looked at); `typ`, when present, "JWT"; no `crit`; `kid`, when present, names a
 *     key of the JWKS (else every key of the JWKS that suits `alg` is tried);
 *   - the signature verifies (BoringSSL);
 *   - `iss` equals the issuer; `aud` (a string or an array of strings) holds the audience;
 *   - `exp`, `iat` integers, `nbf` an integer when present: now < exp + skew, iat <= now + skew,
 *     nbf <= now + skew (CA_PSAT_CLOCK_SKEW_S), iat < exp and exp - iat <= CA_PSAT_MAX_LIFETIME_S;
 *   - `kubernetes.io` an object holding `namespace`, `serviceaccount` {name, uid}, `pod`
 *     {name, uid} and `node` {name, uid} (Kubernetes 1.30+ puts the node there), `sub`
 *     "system:serviceaccount:NS:NAME" agreeing with them, and NS:NAME one of the allowed service
 *     accounts; the node name a DNS subdomain.
 *
 * Replay. A token is a bearer credential: anyone who reads it (off the node's disk, from a log)
 * can present it until it expires, and would get an SVID for that node. The CA binds what it
 * can: the first attestation with a token that succeeds (its node SVID signed and recorded) ties
 * the token (by its `jti`, or when it has none by the SHA-256 of its signing input
 * header.payload: never of the signature, which ECDSA lets anyone rewrite) to the public key of
 * that attestation's CSR, until the token expires; the same token with another key is refused
 * (ca_psat_check before signing, ca_psat_bind after recording). A failed attestation binds
 * nothing, so a retry is fine; so is a retry with the same key after a success (the agent keeps
 * its key while it retries with the same token: a lost response costs nothing), and the node
 * re-attesting with a fresh token (the kubelet rotates it). A node has at most
 * CA_PSAT_MAX_BINDINGS_PER_NODE tokens bound at once, its newest replacing its oldest, so one
 * node (its kubelet minting tokens) cannot fill the table and lock the others out. The bindings
 * live in the CA's memory: a restarted CA, or another replica, does not know them. Keep tokens
 * short-lived (the kubelet's default, 1 h) and the token file readable by the agent only. */
#ifndef WEFT_CA_PSAT_H
#define WEFT_CA_PSAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "ca/store.h"
#include "lib/base/err.h"

#define CA_PSAT_MAX_TOKEN 8192             /* bytes of a token */
#define CA_PSAT_MAX_JWKS (256 * 1024)      /* bytes of the JWKS file */
#define CA_PSAT_MAX_KEYS 32                /* keys in the JWKS */
#define CA_PSAT_MAX_DEPTH 8                /* JSON nesting of a token part or the JWKS */
#define CA_PSAT_MAX_ALLOWED 16             /* --psat-allowed-sa values */
#define CA_PSAT_CLOCK_SKEW_S 60            /* allowed disagreement between clocks */
#define CA_PSAT_MAX_LIFETIME_S (48 * 3600) /* exp - iat */
#define CA_PSAT_MAX_BINDINGS 32768         /* tokens remembered at once (ca_psat_bind) */
#define CA_PSAT_MAX_BINDINGS_PER_NODE 4    /* of them, for one node name */
#define CA_PSAT_ISSUER_MAX 512
#define CA_PSAT_AUDIENCE_MAX 256
#define CA_PSAT_KID_MAX 256
#define CA_PSAT_NAME_MAX 253 /* a Kubernetes name (DNS subdomain) */
#define CA_PSAT_UID_MAX 64
#define CA_PSAT_SA_MAX (2 * CA_PSAT_NAME_MAX + 1) /* "NS:NAME" */
#define CA_PSAT_DEFAULT_AUDIENCE "weft-ca"
#define CA_PSAT_DEFAULT_SA "weft-system:weft-agent"
#define CA_PSAT_CLUSTER_MAX 63
#define CA_PSAT_DEFAULT_CLUSTER "kubernetes"
#define CA_PSAT_SELECTOR_TYPE "k8s_psat"
#define CA_PSAT_NUM_NODE_SELECTORS 3

struct ca_psat_config {
    const char *issuer;            /* the cluster's service account issuer, exactly as in `iss` */
    const char *audience;          /* NULL: CA_PSAT_DEFAULT_AUDIENCE */
    const char *const *allowed_sa; /* "NS:NAME" each; none: CA_PSAT_DEFAULT_SA */
    const char *cluster;           /* the name node selectors give it; NULL: the default */
    size_t num_allowed_sa;
    const uint8_t *jwks; /* the JWKS document ({"keys": [...]}), |jwks_len| bytes */
    size_t jwks_len;
};

struct ca_psat_key {
    char kid[CA_PSAT_KID_MAX + 1]; /* "" when the JWK has none */
    char alg[8];                   /* the JWK's alg when it names one, else "" */
    EVP_PKEY *pub;
};

struct ca_psat_binding {
    uint8_t token_id[32];  /* SHA-256 of "jti:" jti, or of "jws:" header.payload */
    uint8_t key_hash[32];  /* SHA-256 of the first attestation's SubjectPublicKeyInfo */
    uint8_t node_hash[32]; /* SHA-256 of the token's node name */
    int64_t expires_at;    /* the token's exp (+ skew): forgotten after */
    uint64_t seq;          /* order of binding: a node's lowest is its oldest */
};

/* struct ca_psat is a validator and its bindings. ca_psat_init fills it; a zeroed one is safe to
 * clean up. */
struct ca_psat {
    char issuer[CA_PSAT_ISSUER_MAX + 1];
    char audience[CA_PSAT_AUDIENCE_MAX + 1];
    char cluster[CA_PSAT_CLUSTER_MAX + 1];
    char allowed[CA_PSAT_MAX_ALLOWED][CA_PSAT_SA_MAX + 1];
    size_t num_allowed;
    struct ca_psat_key keys[CA_PSAT_MAX_KEYS];
    size_t num_keys;
    struct ca_psat_binding *bindings; /* owned, CA_PSAT_MAX_BINDINGS when allocated */
    size_t num_bindings;
    uint64_t next_seq;
};

/* struct ca_psat_claims is what a token that validated says. */
struct ca_psat_claims {
    char namespace[CA_PSAT_NAME_MAX + 1];
    char service_account[CA_PSAT_NAME_MAX + 1];
    char pod_name[CA_PSAT_NAME_MAX + 1];
    char pod_uid[CA_PSAT_UID_MAX + 1];
    char node_name[CA_NODE_NAME_MAX + 1];
    char node_uid[CA_PSAT_UID_MAX + 1];
    int64_t exp;
    uint8_t token_id[32]; /* see struct ca_psat_binding */
};

/* ca_psat_init reads |cfg|: the issuer (1..CA_PSAT_ISSUER_MAX bytes), the audience, each
 * allowed service account ("NS:NAME"), and the JWKS (at most CA_PSAT_MAX_JWKS bytes and
 * CA_PSAT_MAX_KEYS keys, each an RSA or EC JWK BoringSSL accepts, `use` "sig" when present, no
 * kid twice); a key it cannot use is skipped with a warning, but one usable key is needed).
 * WEFT_EINVAL or WEFT_ELIMIT with |err| naming what is wrong; |p| then holds nothing.
 * Release with ca_psat_cleanup. */
WEFT_MUST_USE int ca_psat_init(struct ca_psat *p, const struct ca_psat_config *cfg, char *err,
                               size_t err_len);
void ca_psat_cleanup(struct ca_psat *p);

/* ca_psat_reload replaces the configuration of |p| (initialized, or zeroed) with |cfg|'s, as
 * ca_psat_init reads it, and keeps |p|'s bindings: a token bound before stays bound (the cluster
 * rotated its keys, say). On failure |p| is unchanged and |err| says why. */
WEFT_MUST_USE int ca_psat_reload(struct ca_psat *p, const struct ca_psat_config *cfg, char *err,
                                 size_t err_len);

/* ca_psat_validate validates |token| (|len| bytes) at |now| (see above). On WEFT_OK |out| holds
 * its claims. Nothing is recorded: see ca_psat_bind. */
WEFT_MUST_USE int ca_psat_validate(const struct ca_psat *p, struct ca_psat_claims *out,
                                   const char *token, size_t len, int64_t now, char *err,
                                   size_t err_len);

/* ca_psat_check says whether ca_psat_bind would take |c|'s token for |key_hash| (the SHA-256 of
 * the attesting key's DER SubjectPublicKeyInfo) at |now|, and records nothing: WEFT_OK when the
 * token is unbound or bound to that key; WEFT_EPOLICY when it is bound to another key (a replay)
 * or CA_PSAT_MAX_BINDINGS unexpired tokens are remembered (and |c|'s node has fewer than
 * CA_PSAT_MAX_BINDINGS_PER_NODE of them); |err| says which. */
WEFT_MUST_USE int ca_psat_check(struct ca_psat *p, const struct ca_psat_claims *c,
                                const uint8_t key_hash[32], int64_t now, char *err, size_t err_len);

/* ca_psat_bind is ca_psat_check, and then ties the token of |c| to |key_hash| until the token
 * expires, replacing the oldest binding of |c|'s node when that node has
 * CA_PSAT_MAX_BINDINGS_PER_NODE already. Call it once the attestation succeeded (its SVID is
 * recorded): a failed attestation must leave the token free for its retry. */
WEFT_MUST_USE int ca_psat_bind(struct ca_psat *p, const struct ca_psat_claims *c,
                               const uint8_t key_hash[32], int64_t now, char *err, size_t err_len);

/* ca_psat_allows says whether the service account |ns_sa| ("NS:NAME") may attest nodes. */
bool ca_psat_allows(const struct ca_psat *p, const char *ns_sa);

/* Node selectors. A node that attested with a token reports these, which entries created with
 * --node-selector match (ca/store.h, ca_store_entry_list): an entry then holds on every such
 * node, however many join later, with no step per node.
 *   k8s_psat:cluster:NAME   the cluster's name as the CA is told it (ca_psat_config.cluster)
 *   k8s_psat:agent_ns:NS    the namespace of the agent's service account
 *   k8s_psat:agent_sa:NAME  the name of the agent's service account
 * (SPIRE's k8s_psat node attestor names the same three so.) The names are the token's,
 * validated as above; only allowed service accounts get this far. */

/* ca_psat_node_selectors writes the node selectors of a node that attested with |c| into |out|
 * and returns how many (one whose value would not fit CA_SELECTOR_MAX is left out: no entry
 * could name it). */
size_t ca_psat_node_selectors(const struct ca_psat *p, const struct ca_psat_claims *c,
                              char out[CA_PSAT_NUM_NODE_SELECTORS][CA_SELECTOR_MAX + 1]);

/* ca_psat_node_selector_check says whether an entry's node selector |sel| is one some node
 * attested by |p| could report: a known key; for `cluster` the CA's own cluster name; for
 * `agent_ns` and `agent_sa` the namespace or name of a service account allowed to attest.
 * WEFT_EINVAL with |err| saying what would never match. */
WEFT_MUST_USE int ca_psat_node_selector_check(const struct ca_psat *p, const char *sel, char *err,
                                              size_t err_len);

#endif
