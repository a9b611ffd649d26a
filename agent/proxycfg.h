/* agent/proxycfg.h: what the agent tells each sidecar proxy besides its SVIDs (issue 5, "Proxy
 * config stream"; the weft.agent.v1.ProxyConfig service of proto/agent.proto): the policy
 * compiled for the proxy's workload, the mesh directory (address -> the SPIFFE ID that must
 * answer there) and the deny list, all from the CA's WatchNode snapshots. It also verifies and
 * keeps the addresses workloads claim for the directory, which the agent reports to the CA.
 *
 * Claims. A workload may enter an address in the directory only when the agent has seen that it
 * is the workload's own, never on its word:
 *   - under Kubernetes (the agent attests pods), the address must be one of the caller's pod's
 *     IPs as the kubelet lists them (k8s:pod-ip, agent/podlist.h); a caller not attested as a
 *     pod claims nothing;
 *   - otherwise the address must lie in a range the operator names (--claim-cidr; none: no
 *     claim is accepted) and be configured on an interface that is up, not loopback, in the
 *     caller's own network namespace (agent/netns.h); that namespace must not be the node's (a
 *     process there shares its addresses with every other), must belong to the node's user
 *     namespace (an unprivileged process can make a namespace of its own, in a user namespace
 *     of its own, and put any address in it), and the address must not be one of the node's.
 * Loopback, unspecified, link-local, multicast and broadcast addresses name no one and are
 * refused. The verdict on each address goes back to the proxy in its config. What is not
 * verified: the port of an "IP:port" claim (any workload of a network namespace may claim any
 * port of its addresses), and a claim is verified when its stream opens, not again while the
 * stream lasts.
 *
 * Threads. The config (agent_proxycfg) is owned by the Workload API's thread: the CA thread
 * hands each snapshot over (agent_proxycfg_update runs on the API thread), so building answers
 * needs no lock. The claims (agent_claims) are shared with the CA thread, which reports them:
 * they have a lock of their own. */
#ifndef WEFT_AGENT_PROXYCFG_H
#define WEFT_AGENT_PROXYCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/peer.h"
#include "agent/selectors.h"
#include "lib/base/err.h"
#include "lib/base/netaddr.h"
#include "proto/agent.pb-c.h"
#include "proto/ca.pb-c.h"

#define AGENT_CLAIMS_PER_STREAM 16 /* addresses one proxy may claim */
#define AGENT_CLAIMS_MAX 4096      /* claims held for the whole node (the CA's report limit) */
#define AGENT_CLAIMS_REFRESH_S 30  /* a report at least this often: the CA's entries expire */
#define AGENT_CLAIMS_SETTLE_S 5    /* after a start, how long the proxies have to claim again */
#define AGENT_CLAIM_REASON_LEN 200

/* --- verifying claims --------------------------------------------------------------------- */

#define AGENT_CLAIM_MAX_CIDRS 16

/* struct agent_claim_rules: what the operator configured. */
struct agent_claim_rules {
    bool k8s;                      /* the agent attests pods: only pod IPs may be claimed */
    const struct weft_cidr *cidrs; /* outside Kubernetes: the ranges claims must lie in */
    size_t num_cidrs;
};

struct agent_claim_verdict {
    char address[WEFT_ADDR_MAX]; /* canonical form; the request's text when it is not one */
    bool accepted;
    char reason[AGENT_CLAIM_REASON_LEN]; /* why not */
};

/* agent_claims_verify judges each of |addresses| for caller |p| with selectors |sel| under
 * |rules|, reading |proc| ("/proc") for network namespaces, into |out| (|num| of them).
 * WEFT_ESTALE when the caller's pid changed hands while it was looked at (nothing may be
 * trusted); WEFT_OK otherwise, each verdict saying yes or why not. */
WEFT_MUST_USE int agent_claims_verify(const char *proc, const struct agent_claim_rules *rules,
                                      const struct agent_peer *p, const struct agent_selectors *sel,
                                      char *const *addresses, size_t num,
                                      struct agent_claim_verdict *out, char *err, size_t err_len);

/* --- the claims held, for the CA ------------------------------------------------------------ */

struct agent_claims;

struct agent_claims *agent_claims_new(void);
void agent_claims_free(struct agent_claims *c);

/* agent_claims_hold delays the next report until |until|. A restarted agent holds none of its
 * proxies' claims until they reconnect; reporting at once would clear the node's entries from
 * the mesh directory, and for a moment every proxy would see its peers as outside the mesh
 * (plain TCP). The CA keeps the last report meanwhile. */
void agent_claims_hold(struct agent_claims *c, int64_t until);

/* agent_claims_set replaces what |owner| (a stream) claims: the accepted verdicts of |v|, for
 * |spiffe_id|. WEFT_ELIMIT (nothing kept) when the node would hold over AGENT_CLAIMS_MAX. */
WEFT_MUST_USE int agent_claims_set(struct agent_claims *c, const void *owner, const char *spiffe_id,
                                   const struct agent_claim_verdict *v, size_t num);

/* agent_claims_drop forgets |owner|'s claims (its stream ended). */
void agent_claims_drop(struct agent_claims *c, const void *owner);

/* agent_claims_report returns the node's complete report when one is due at |now| (the claims
 * changed since the last report that went through, or AGENT_CLAIMS_REFRESH_S passed; after a
 * failed one, not before a backoff of 2, 4, 8 ... 30 s), with duplicates removed; NULL when
 * none is due. Free it with agent_claims_report_free, after
 * agent_claims_reported says whether the CA took it. */
Weft__Ca__V1__ReportWorkloadsRequest *agent_claims_report(struct agent_claims *c, int64_t now);
void agent_claims_reported(struct agent_claims *c, const Weft__Ca__V1__ReportWorkloadsRequest *r,
                           bool ok, int64_t now);
void agent_claims_report_free(Weft__Ca__V1__ReportWorkloadsRequest *r);

/* --- the config ------------------------------------------------------------------------------ */

struct agent_proxycfg;

struct agent_proxycfg *agent_proxycfg_new(void);
void agent_proxycfg_free(struct agent_proxycfg *pc);

/* agent_proxycfg_update takes ownership of |snap| (a WatchNode snapshot) and makes its policy,
 * directory and deny list the ones served, telling new from old by content (the CA's version
 * numbers start again with each CA run). A policy set that does not load (it should: the CA
 * sends only sets that did) keeps the previous one, loudly; with none before it, proxies get no
 * configuration at all rather than the mesh defaults. Returns whether anything a proxy is sent
 * changed. */
bool agent_proxycfg_update(struct agent_proxycfg *pc, Weft__Ca__V1__NodeSnapshot *snap);

/* struct agent_proxy_stream is one proxy's stream: its identity, claims and compiled policy. */
struct agent_proxy_stream {
    char spiffe_id[2049];
    struct agent_claim_verdict claims[AGENT_CLAIMS_PER_STREAM];
    size_t num_claims;
    /* the policy compiled for it, and for which policy version */
    uint8_t *policy;
    size_t policy_len;
    uint64_t policy_digest;
    bool compiled;
    /* the workload as policy sees it: from the ID's /ns/NS/sa/SA and its k8s:pod-label
     * selectors */
    char ns[64], sa[254];
    char *label_keys[64], *label_values[64];
    size_t num_labels;
    /* what the last answer points into */
    Weft__Agent__V1__AddressClaim out_claims[AGENT_CLAIMS_PER_STREAM];
    Weft__Agent__V1__AddressClaim *out_claim_ptrs[AGENT_CLAIMS_PER_STREAM];
};

/* agent_proxy_stream_init reads the workload policy sees from |spiffe_id| (which must have the
 * path /ns/NAMESPACE/sa/SERVICE_ACCOUNT: policies select workloads by those) and |sel| (its
 * k8s:pod-label selectors, as attested when the stream opened). WEFT_EINVAL, with the reason in
 * |why|, for another shape; WEFT_ELIMIT for over 64 labels. */
WEFT_MUST_USE int agent_proxy_stream_init(struct agent_proxy_stream *ps, const char *spiffe_id,
                                          const struct agent_selectors *sel, char *why,
                                          size_t why_len);
void agent_proxy_stream_cleanup(struct agent_proxy_stream *ps);

/* agent_proxycfg_build fills |resp| for |ps| (compiling its policy when the policy changed).
 * |resp| points into |pc| and |ps|: pack it before either changes. WEFT_EAGAIN before the
 * first snapshot (send nothing yet); WEFT_EINVAL, with |why|, when no policy from the CA ever
 * loaded or it does not compile for the workload (fail closed: no mesh defaults). */
WEFT_MUST_USE int agent_proxycfg_build(struct agent_proxycfg *pc, struct agent_proxy_stream *ps,
                                       Weft__Agent__V1__ProxyConfigResponse *resp, char *why,
                                       size_t why_len);

/* agent_proxycfg_policy_version returns the version of the policy served (0: none yet). */
uint64_t agent_proxycfg_policy_version(const struct agent_proxycfg *pc);

#endif
