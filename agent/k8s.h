/* agent/k8s.h: the k8s workload attestor (issue 5). For a caller (agent/peer.h) it reads
 * /proc/PID/cgroup (agent/cgroup.h), finds the pod and container in the kubelet's pod list
 * (agent/podlist.h) and adds their selectors.
 *
 * The pod list is fetched with lib/httpclient: GET the configured URL (by default the
 * kubelet's secure port, https://127.0.0.1:10250/pods) with "Authorization: Bearer" and the
 * token file's content, read again for every request (the kubelet rotates projected tokens).
 * The last list is kept and used for AGENT_KUBELET_MAX_AGE_MS (labels change); a miss (a
 * container the kubelet learned of after the list was fetched) fetches again, up to |retries| times
 * |retry_interval_ms| apart, so one attestation waits at most about retries * (interval + timeout).
 * Every use of /proc is bracketed by the caller's start time (pid reuse). */
#ifndef WEFT_AGENT_K8S_H
#define WEFT_AGENT_K8S_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/peer.h"
#include "agent/selectors.h"
#include "lib/base/err.h"

#define AGENT_KUBELET_DEFAULT_URL "https://127.0.0.1:10250/pods"
#define AGENT_KUBELET_DEFAULT_TOKEN "/var/run/secrets/kubernetes.io/serviceaccount/token"
#define AGENT_KUBELET_DEFAULT_CA "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
#define AGENT_KUBELET_DEFAULT_RETRIES 10
#define AGENT_KUBELET_DEFAULT_INTERVAL_MS 500
#define AGENT_KUBELET_TOKEN_MAX 16384
#define AGENT_KUBELET_MAX_AGE_MS 10000 /* a cached pod list is fetched again after this */

struct agent_k8s_config {
    const char *url;        /* NULL: AGENT_KUBELET_DEFAULT_URL */
    const char *token_file; /* NULL: no Authorization header (a test kubelet) */
    const char *ca_file;    /* https: the kubelet's CA; NULL with insecure_skip_verify only */
    bool insecure_skip_verify;
    int timeout_ms;        /* per request; 0: 5000 */
    int retries;           /* fetches on a miss; 0: AGENT_KUBELET_DEFAULT_RETRIES */
    int retry_interval_ms; /* 0: AGENT_KUBELET_DEFAULT_INTERVAL_MS */
    const char *proc;      /* NULL: "/proc" */
};

/* struct agent_k8s_stats: what the metrics show. */
struct agent_k8s_stats {
    uint64_t fetches, fetch_failures, misses;
};

struct agent_k8s;

/* agent_k8s_new makes an attestor; |cfg|'s strings are copied. */
WEFT_MUST_USE int agent_k8s_new(struct agent_k8s **out, const struct agent_k8s_config *cfg,
                                char *err, size_t err_len);
void agent_k8s_free(struct agent_k8s *k);

/* agent_attest_k8s adds the caller's k8s selectors to |out|. WEFT_ENOTFOUND when the caller is
 * not in a pod's container, or the kubelet never lists it (|err| says which); WEFT_ESTALE when
 * the pid changed hands; WEFT_EIO (and the like) when the kubelet cannot be read, with the
 * reason in |err|. Nothing is added unless it returns WEFT_OK. */
WEFT_MUST_USE int agent_attest_k8s(struct agent_k8s *k, const struct agent_peer *p,
                                   struct agent_selectors *out, char *err, size_t err_len);

void agent_k8s_stats(const struct agent_k8s *k, struct agent_k8s_stats *out);

#endif
