/* agent/cgroup.h: which Kubernetes pod and container a process runs in, from the text of its
 * /proc/PID/cgroup (issue 5, the k8s attestor).
 *
 * Every line is "HIERARCHY:CONTROLLERS:PATH" (cgroup v1) or "0::PATH" (v2). In a path, a pod is
 * "pod" and its UID (36 characters, '-' separators, or '_' in systemd slice names) and its
 * container is the last component, once a runtime's decoration is removed:
 *
 *   cgroupfs   /kubepods/burstable/pod<UID>/<ID>                 (containerd, docker)
 *              /kubepods/besteffort/pod<UID>/crio-<ID>           (CRI-O)
 *   systemd    /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<U_I_D>.slice/
 *                  cri-containerd-<ID>.scope | crio-<ID>.scope | docker-<ID>.scope
 *              /kubepods-besteffort-pod<U_I_D>.slice:cri-containerd:<ID>  (containerd's form)
 *
 * with <ID> 64 lowercase hex digits, the last component, right under the pod's. The path must
 * be rooted at the kubelet's hierarchy ("kubepods" or "kubepods.slice", after the "/.." a
 * cgroup namespace may put in front): a process that may make cgroups of its own elsewhere (a
 * delegated systemd subtree) cannot pass for a pod by naming them after one. Lines of other
 * shapes are ignored; a process whose lines name two different pods or containers is refused,
 * never guessed. */
#ifndef WEFT_AGENT_CGROUP_H
#define WEFT_AGENT_CGROUP_H

#include <stddef.h>

#include "lib/base/err.h"

#define AGENT_POD_UID_LEN 36
#define AGENT_CONTAINER_ID_LEN 64
#define AGENT_CGROUP_MAX (64 * 1024) /* bytes of /proc/PID/cgroup read at most */

/* agent_cgroup_parse finds the pod UID (canonical, with '-') and the container ID in |text|.
 * WEFT_OK with both; WEFT_ENOTFOUND when the process is not in a pod's container (not a
 * Kubernetes workload: the k8s attestor then observes nothing); WEFT_EINVAL, with the reason in
 * |err|, when the lines disagree. */
WEFT_MUST_USE int agent_cgroup_parse(const char *text, size_t len,
                                     char pod_uid[AGENT_POD_UID_LEN + 1],
                                     char container_id[AGENT_CONTAINER_ID_LEN + 1], char *err,
                                     size_t err_len);

#endif
