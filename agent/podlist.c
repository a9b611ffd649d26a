/* agent/podlist.c: see podlist.h. */
#include "agent/podlist.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "lib/base/netaddr.h"

static const char *str_at(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

/* status_of finds, in |pod|'s status lists, the container whose ID is |cid|. */
static json_t *status_of(json_t *pod, const char *cid)
{
    static const char *const lists[] = {"containerStatuses", "initContainerStatuses",
                                        "ephemeralContainerStatuses"};
    json_t *status = json_object_get(pod, "status");
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        json_t *arr = json_object_get(status, lists[l]);
        size_t i;
        json_t *cs;
        json_array_foreach(arr, i, cs)
        {
            const char *id = str_at(cs, "containerID"); /* "containerd://<64 hex>" */
            const char *sep = strstr(id, "://");
            if (sep != NULL && strcmp(sep + 3, cid) == 0) {
                return cs;
            }
        }
    }
    return NULL;
}

/* add counts a selector that could not be added (agent_selectors_add's return). */
static void add(size_t *skipped, int rc)
{
    if (rc != WEFT_OK) {
        (*skipped)++;
    }
}

/* add_pod_ips adds k8s:pod-ip:IP for each of the pod's own addresses (status.podIPs, and
 * status.podIP for older kubelets), in canonical form. A hostNetwork pod has the node's addresses,
 * which every other such pod shares: none is its own. */
static void add_pod_ips(struct agent_selectors *out, size_t *skipped, json_t *pod, json_t *spec)
{
    if (json_is_true(json_object_get(spec, "hostNetwork"))) {
        return;
    }
    json_t *status = json_object_get(pod, "status");
    const char *ips[AGENT_PODLIST_MAX_IPS + 1];
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(json_object_get(status, "podIPs"), i, v)
    {
        if (n < AGENT_PODLIST_MAX_IPS) {
            ips[n++] = str_at(v, "ip");
        }
    }
    ips[n++] = str_at(status, "podIP");
    for (i = 0; i < n; i++) {
        char canon[WEFT_ADDR_MAX] = "";
        struct weft_ip ip;
        if (ips[i][0] == '\0') {
            continue;
        }
        bool has_port = false;
        if (weft_addr_canonical(canon, ips[i], &ip) == WEFT_OK) {
            has_port = ip.v6 ? canon[0] == '[' : strchr(canon, ':') != NULL;
        }
        if (canon[0] == '\0' || has_port) { /* an address, not an address and port */
            (*skipped)++;
            continue;
        }
        add(skipped, agent_selectors_add(out, "k8s:pod-ip:%s", canon));
    }
}

int agent_podlist_selectors(const char *json, size_t len, const char *pod_uid,
                            const char *container_id, struct agent_selectors *out, size_t *skipped,
                            char *err, size_t err_len)
{
    *skipped = 0;
    if (len > AGENT_PODLIST_MAX) {
        snprintf(err, err_len, "the pod list is over %d bytes", AGENT_PODLIST_MAX);
        return WEFT_ELIMIT;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *items = json_object_get(root, "items");
    if (root == NULL || !json_is_array(items)) {
        snprintf(err, err_len, "not a PodList: %s",
                 root == NULL ? jerr.text : "no \"items\" array");
        json_decref(root);
        return WEFT_EINVAL;
    }
    int rc = WEFT_ENOTFOUND;
    size_t i;
    json_t *pod;
    json_array_foreach(items, i, pod)
    {
        json_t *meta = json_object_get(pod, "metadata");
        if (strcmp(str_at(meta, "uid"), pod_uid) != 0) {
            continue;
        }
        json_t *cs = status_of(pod, container_id);
        if (cs == NULL) {
            break; /* the right pod, but the kubelet does not know the container yet */
        }
        json_t *spec = json_object_get(pod, "spec");
        const char *sa = str_at(spec, "serviceAccountName");
        add(skipped, agent_selectors_add(out, "k8s:ns:%s", str_at(meta, "namespace")));
        add(skipped, agent_selectors_add(out, "k8s:sa:%s", sa[0] ? sa : "default"));
        add(skipped, agent_selectors_add(out, "k8s:pod-name:%s", str_at(meta, "name")));
        add(skipped, agent_selectors_add(out, "k8s:pod-uid:%s", pod_uid));
        add(skipped, agent_selectors_add(out, "k8s:container-name:%s", str_at(cs, "name")));
        if (str_at(spec, "nodeName")[0] != '\0') {
            add(skipped, agent_selectors_add(out, "k8s:node-name:%s", str_at(spec, "nodeName")));
        }
        if (str_at(cs, "image")[0] != '\0') {
            add(skipped, agent_selectors_add(out, "k8s:container-image:%s", str_at(cs, "image")));
        }
        add_pod_ips(out, skipped, pod, spec);
        const char *key;
        json_t *value;
        json_object_foreach(json_object_get(meta, "labels"), key, value)
        {
            const char *v = json_string_value(value);
            if (v == NULL) {
                (*skipped)++;
                continue;
            }
            add(skipped, agent_selectors_add(out, "k8s:pod-label:%s:%s", key, v));
        }
        rc = WEFT_OK;
        break;
    }
    json_decref(root);
    return rc;
}
