/* agent/podlist.h: a workload's Kubernetes selectors from the kubelet's pod list (GET /pods, a
 * v1 PodList in JSON), given the pod UID and container ID its cgroups name (agent/cgroup.h):
 *
 *   k8s:ns:NAMESPACE  k8s:sa:SERVICE_ACCOUNT  k8s:pod-name:NAME  k8s:pod-uid:UID
 *   k8s:pod-label:KEY:VALUE (each label)  k8s:container-name:NAME  k8s:node-name:NODE
 *   k8s:container-image:IMAGE  k8s:pod-ip:IP (each of the pod's own addresses; none for a
 *   hostNetwork pod, which shares the node's)
 *
 * k8s:pod-ip is how the agent verifies the addresses a workload claims for the mesh directory
 * (agent/proxycfg.h); an entry had better not select on it, as pod IPs are reused.
 *
 * The container must be among the pod's containerStatuses, initContainerStatuses or
 * ephemeralContainerStatuses, by its containerID ("containerd://ID", "cri-o://ID",
 * "docker://ID"). A label or image that cannot be a selector (a space, say) is left out and
 * counted in |*skipped|. */
#ifndef WEFT_AGENT_PODLIST_H
#define WEFT_AGENT_PODLIST_H

#include <stddef.h>

#include "agent/selectors.h"
#include "lib/base/err.h"

#define AGENT_PODLIST_MAX (32 << 20) /* bytes of a pod list we parse at most */
#define AGENT_PODLIST_MAX_IPS 4      /* status.podIPs taken (one per family in practice) */

/* agent_podlist_selectors adds the selectors of container |container_id| of pod |pod_uid| from
 * the pod list |json| to |out|. WEFT_ENOTFOUND when the list has no such pod or the pod no such
 * container (yet: the kubelet learns of a new container a moment after it starts; ask again);
 * WEFT_EINVAL, with the reason in |err|, for a list that is not a PodList. */
WEFT_MUST_USE int agent_podlist_selectors(const char *json, size_t len, const char *pod_uid,
                                          const char *container_id, struct agent_selectors *out,
                                          size_t *skipped, char *err, size_t err_len);

#endif
