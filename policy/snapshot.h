/* policy/snapshot.h: the compiled policy of one destination workload, and decisions on it.
 *
 * policy_compile keeps, of a whole policy set, what can apply to one workload: its effective
 * mTLS modes, and every rule of every AuthorizationPolicy that selects it, split into clauses
 * (one per `from` entry) ordered DENY before ALLOW and indexed by what they ask of the peer:
 * exact principals and namespaces in hash tables, principal prefixes in a hash table probed once
 * per path segment of the peer's ID. policy_eval then looks at only the clauses that name the
 * peer, plus those that name no peer at all (any peer, or only "not" conditions). */
#ifndef WEFT_POLICY_SNAPSHOT_H
#define WEFT_POLICY_SNAPSHOT_H

#include "policy/policy.h"

enum policy_decision {
    POLICY_DENY = 0, /* zeroed memory denies */
    POLICY_ALLOW,
};

enum policy_reason {
    POLICY_REASON_NONE = 0,
    POLICY_REASON_ALLOW_MATCHED,    /* an enforced ALLOW rule matched */
    POLICY_REASON_DENY_MATCHED,     /* an enforced DENY rule matched */
    POLICY_REASON_NO_ALLOW_MATCHED, /* ALLOW policies select the workload; none matched */
    POLICY_REASON_DEFAULT_ALLOW,    /* no policy decided; the mesh default is ALLOW */
    POLICY_REASON_DEFAULT_DENY,     /* no policy decided; the mesh default is DENY */
    POLICY_REASON_MTLS_STRICT,      /* a plaintext peer on a STRICT port */
};

#define POLICY_NONE UINT32_MAX

/* struct policy_verdict: a decision, and the policy and rule behind it (POLICY_NONE when none;
 * for no-allow-matched the policy is the first ALLOW policy that selects the workload, for
 * mtls-strict it indexes snapshot->mtls_sources). */
struct policy_verdict {
    enum policy_decision decision;
    enum policy_reason reason;
    uint32_t policy;
    uint32_t rule;
};

/* struct policy_result is everything one evaluation says. */
struct policy_result {
    struct policy_verdict enforced;    /* what happens */
    struct policy_verdict dry_run;     /* what would happen if dry-run policies were enforced */
    bool dry_run_matched;              /* a dry-run policy's rule matched */
    uint32_t audit_policy, audit_rule; /* the first AUDIT rule that matched, or POLICY_NONE */
    enum policy_mtls mtls;             /* the effective mode of the port */
    uint32_t lookups;                  /* hash probes plus clauses checked: the cost */
};

struct policy_request {
    const char *peer_id; /* the verified SPIFFE ID, or NULL for a plaintext peer */
    uint16_t port;       /* the destination port */
};

struct policy_snapshot_policy {
    const char *namespace_;
    const char *name;
    enum policy_action action;
    enum policy_mode mode;
    /* seconds a live connection this policy now denies (it is the verdict's policy) is kept
     * before it is closed, 0..POLICY_MAX_CLOSE_GRACE_S; 0 closes at once. Never delays refusing
     * a new connection, nor a revocation or an expiry. */
    uint32_t close_grace_s;
    const struct policy_rule *rules; /* copies, owned by the snapshot */
    size_t num_rules;
};

struct policy_clause; /* internal */
struct policy_index;  /* internal */

struct policy_snapshot {
    struct weft_arena arena;
    struct policy_config config;
    struct policy_workload workload;
    struct policy_snapshot_policy *policies; /* in (namespace, name) order */
    size_t num_policies;
    uint32_t first_enforced_allow; /* index of the first enforced ALLOW policy, or POLICY_NONE */
    bool has_dry_run_allow;
    /* mTLS: the workload's mode, port-level modes, and which PeerAuthentication set each
     * ("ns/name", or "mesh default"). */
    enum policy_mtls mtls_mode;
    uint32_t mtls_mode_source;
    struct policy_port_mtls *mtls_ports;
    uint32_t *mtls_port_sources;
    size_t num_mtls_ports;
    const char **mtls_sources;
    size_t num_mtls_sources;
    /* the compiled clauses and their index */
    struct policy_clause *clauses;
    size_t num_clauses;
    struct policy_index *index;
};

/* policy_compile builds |*out| for the workload |w| from |set| under |config|. The snapshot
 * copies what it keeps: it outlives |set|. Free it with policy_snapshot_free. */
WEFT_MUST_USE int policy_compile(struct policy_snapshot **out, const struct policy_set *set,
                                 const struct policy_config *config,
                                 const struct policy_workload *w);

void policy_snapshot_free(struct policy_snapshot *snap);

/* policy_eval decides |req| against |snap|. It allocates nothing, takes no lock and does no
 * I/O; its cost is a few hash probes per path segment of the peer's ID plus the clauses that
 * name the peer (result->lookups counts them). */
void policy_eval(const struct policy_snapshot *snap, const struct policy_request *req,
                 struct policy_result *result);

/* policy_mtls_mode returns the effective mode of |port| and, in |*out_source|, the index of the
 * source that set it (into snap->mtls_sources). */
enum policy_mtls policy_mtls_mode(const struct policy_snapshot *snap, uint16_t port,
                                  uint32_t *out_source);

/* policy_verdict_name writes the name of the policy behind |v|: "NS/NAME", the mTLS source
 * ("NS/NAME" of a PeerAuthentication, "mesh default") for mtls-strict, or "-" when none. */
void policy_verdict_name(char *buf, size_t len, const struct policy_snapshot *snap,
                         const struct policy_verdict *v);

/* policy_verdict_format writes the stable log form of |v|:
 *   decision=allow|deny policy=NS/NAME|- rule=N|- reason=WORD
 * and returns what snprintf returns. */
int policy_verdict_format(char *buf, size_t len, const struct policy_snapshot *snap,
                          const struct policy_verdict *v);

/* policy_result_format writes the verdict, then " dry_run=..." fields when a dry-run policy
 * matched or would change the outcome, then " audit=NS/NAME audit_rule=N" when one matched. */
int policy_result_format(char *buf, size_t len, const struct policy_snapshot *snap,
                         const struct policy_result *r);

#define POLICY_SNAPSHOT_MAX_BYTES (16u << 20)

/* policy_snapshot_encode writes |snap| as a proto/policy.proto Snapshot into a new buffer the
 * caller frees with free(). */
WEFT_MUST_USE int policy_snapshot_encode(uint8_t **out, size_t *out_len,
                                         const struct policy_snapshot *snap);

/* policy_snapshot_decode reads a Snapshot from |data|, checks every field as the YAML loader
 * would, and rebuilds the index. On failure |why| says what was wrong; returns WEFT_EPROTO (or
 * WEFT_ELIMIT for input over POLICY_SNAPSHOT_MAX_BYTES). */
WEFT_MUST_USE int policy_snapshot_decode(struct policy_snapshot **out, const uint8_t *data,
                                         size_t len, char *why, size_t why_len);

const char *policy_reason_str(enum policy_reason reason);
const char *policy_action_str(enum policy_action action);
const char *policy_mode_str(enum policy_mode mode);
const char *policy_mtls_str(enum policy_mtls mode);

#endif
