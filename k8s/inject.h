/* k8s/inject.h: weft's sidecar injection, on JSON trees, for `weftctl inject` and for an
 * admission webhook.
 *
 * Given a Pod, or a workload that holds a pod template (apps/v1 Deployment, StatefulSet,
 * DaemonSet, ReplicaSet; batch/v1 Job; batch/v1 CronJob at spec.jobTemplate.spec.template),
 * k8s_inject_patch returns the RFC 6902 JSON Patch that injects it; a webhook base64s that patch
 * into its AdmissionReview response as it is. What is injected (other parts of weft rely on
 * these names):
 *   - init container "weft-init", first: `weftctl iptables install` then `weftctl iptables check
 *     --self-test` with the same flags (--proxy-uid 1337, --exclude-inbound-ports 15021 and the
 *     pod's exclusions), as root with NET_ADMIN and NET_RAW, and SETUID and SETGID for the
 *     self-test's child that connects as another uid; read-only root, so its xtables lock
 *     lives in the memory volume "weft-init-tmp" at /tmp;
 *   - "weft-proxy": `weft-proxy --agent-socket /run/weft/agent.sock --probe-listen
 *     0.0.0.0:15021` as uid 1337; with native sidecars (the default) an init container right
 *     after weft-init with restartPolicy Always and a startupProbe on GET :15021/ready, without
 *     them the first container, with a postStart hook `weftctl wait-ready --addr
 *     127.0.0.1:15021 --timeout-s 120`;
 *   - volume "weft-agent-socket": hostPath /run/weft, mounted read-only in weft-proxy;
 *   - the app containers' httpGet probes rewritten to GET :15021/app-health/<container>/
 *     <livez|readyz|startupz>, the originals in weft-proxy's env WEFT_APP_PROBES;
 *   - annotation "weft.dev/status" (JSON: version and the names injected), which marks the
 *     pod injected: an object that carries it is left alone, so injecting twice is injecting once.
 * Pod (template) annotations that steer it are K8S_ANN_*; see weftctl inject --help. */
#ifndef WEFT_K8S_INJECT_H
#define WEFT_K8S_INJECT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "lib/base/err.h"

#define K8S_INJECT_VERSION "1" /* in weft.dev/status; bump when what is injected changes */
#define K8S_INJECT_DEFAULT_IMAGE "ghcr.io/weft-mesh/weft:0.1.0"

#define K8S_NAME_INIT "weft-init"
#define K8S_NAME_PROXY "weft-proxy"
#define K8S_NAME_VOLUME "weft-agent-socket"
#define K8S_PROXY_UID 1337
#define K8S_PROBE_PORT 15021

#define K8S_ANN_INJECT "weft.dev/inject"                    /* enabled | disabled (also a label) */
#define K8S_ANN_STATUS "weft.dev/status"                    /* written by injection */
#define K8S_ANN_EXCLUDE_IN "weft.dev/exclude-inbound-ports" /* "8081,9000-9010" */
#define K8S_ANN_EXCLUDE_OUT "weft.dev/exclude-outbound-ports"   /* "5432" */
#define K8S_ANN_EXCLUDE_CIDRS "weft.dev/exclude-outbound-cidrs" /* "10.0.0.0/8,fd00::/8" */
#define K8S_ANN_CPU_REQUEST "weft.dev/proxy-cpu-request"        /* default 10m */
#define K8S_ANN_MEMORY_REQUEST "weft.dev/proxy-memory-request"  /* default 24Mi */
#define K8S_ANN_MEMORY_LIMIT "weft.dev/proxy-memory-limit"      /* default 64Mi */
#define K8S_ANN_NATIVE_SIDECAR "weft.dev/native-sidecar"        /* "true" | "false" */
#define K8S_ANN_REWRITE_PROBES "weft.dev/rewrite-probes"        /* "true" | "false" */

#define K8S_INJECT_MAX_CONTAINERS 256  /* containers and init containers of one pod */
#define K8S_INJECT_MAX_LIST 64         /* ports/ranges or CIDRs in one annotation */
#define K8S_INJECT_MAX_ANNOTATION 1024 /* bytes of one weft.dev/ annotation value */

struct k8s_inject_opts {
    const char *image;     /* of weft-init and weft-proxy; K8S_INJECT_DEFAULT_IMAGE */
    bool native_sidecar;   /* default true; the pod's weft.dev/native-sidecar wins */
    const char *namespace; /* used when the object's metadata has none (a webhook passes the
                            * AdmissionReview's request.namespace); NULL: "default" */
};

/* k8s_inject_opts_init sets the defaults. */
void k8s_inject_opts_init(struct k8s_inject_opts *opts);

/* k8s_inject_patch decides about |obj| and, when it is to be injected, sets |*out_patch| to a
 * new JSON Patch array (json_decref it) that injects it, with paths from |obj|'s root. When the
 * object is left alone it sets |*out_patch| to NULL and |*out_skipped| to a static reason
 * ("not a workload", "already injected", "weft.dev/inject: disabled", "hostNetwork",
 * "namespace kube-system", ...). Returns WEFT_OK, or WEFT_EINVAL / WEFT_ELIMIT when the object
 * cannot be injected as it is (a bad annotation, a probe with a port name no container port
 * has, a name weft needs already taken, ...), with |err| naming the object and the field. */
WEFT_MUST_USE int k8s_inject_patch(json_t **out_patch, const char **out_skipped, const json_t *obj,
                                   const struct k8s_inject_opts *opts, char *err, size_t err_len);

/* k8s_inject_object is k8s_inject_patch followed by k8s_jsonpatch_apply on |*obj| (replaced by
 * the injected object on success). |*out_skipped| as above. */
WEFT_MUST_USE int k8s_inject_object(json_t **obj, const char **out_skipped,
                                    const struct k8s_inject_opts *opts, char *err, size_t err_len);

#endif
