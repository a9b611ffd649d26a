/* agent/cgroup.c: see cgroup.h. */
#include "agent/cgroup.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* uid_at: |p| (with |n| bytes left) starts a pod UID: 8-4-4-4-12 hex digits with '-' or '_'
 * between the groups. Copies it canonically into |out|. */
static bool uid_at(const char *p, size_t n, char out[AGENT_POD_UID_LEN + 1])
{
    if (n < AGENT_POD_UID_LEN) {
        return false;
    }
    for (size_t i = 0; i < AGENT_POD_UID_LEN; i++) {
        bool sep = i == 8 || i == 13 || i == 18 || i == 23;
        if (sep ? (p[i] != '-' && p[i] != '_') : !is_hex(p[i])) {
            return false;
        }
        out[i] = sep ? '-' : p[i];
    }
    out[AGENT_POD_UID_LEN] = '\0';
    /* the UID must end there: ".slice", "/" or the end of the path */
    return n == AGENT_POD_UID_LEN || p[AGENT_POD_UID_LEN] == '.' || p[AGENT_POD_UID_LEN] == '/' ||
           p[AGENT_POD_UID_LEN] == ':';
}

/* container_in: the last component of |path| (|n| bytes), once decorated, is a container ID. */
static bool container_in(const char *path, size_t n, char out[AGENT_CONTAINER_ID_LEN + 1])
{
    const char *end = path + n;
    const char *start = path;
    for (const char *p = path; p < end; p++) {
        if (*p == '/' || *p == ':') {
            start = p + 1; /* containerd's systemd form separates with ':' */
        }
    }
    size_t len = (size_t)(end - start);
    if (len > 6 && memcmp(end - 6, ".scope", 6) == 0) {
        len -= 6;
    }
    static const char *const prefixes[] = {"cri-containerd-", "crio-", "docker-", "cri-o-"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i]);
        if (len > pl && memcmp(start, prefixes[i], pl) == 0) {
            start += pl;
            len -= pl;
            break;
        }
    }
    if (len != AGENT_CONTAINER_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_hex(start[i])) {
            return false;
        }
    }
    memcpy(out, start, len);
    out[len] = '\0';
    return true;
}

/* pod_component: |c| (|n| bytes) is a pod's cgroup, "pod<UID>" (cgroupfs) or
 * "kubepods[-<qos>]-pod<U_I_D>.slice" (systemd); copies the UID. */
static bool pod_component(const char *c, size_t n, char uid[AGENT_POD_UID_LEN + 1])
{
    if (n == 3 + AGENT_POD_UID_LEN && memcmp(c, "pod", 3) == 0) {
        return uid_at(c + 3, n - 3, uid);
    }
    static const char *const prefixes[] = {"kubepods-pod", "kubepods-burstable-pod",
                                           "kubepods-besteffort-pod"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i]);
        if (n == pl + AGENT_POD_UID_LEN + 6 && memcmp(c, prefixes[i], pl) == 0 &&
            memcmp(c + n - 6, ".slice", 6) == 0) {
            return uid_at(c + pl, AGENT_POD_UID_LEN, uid);
        }
    }
    return false;
}

/* line_ids: the pod and container one cgroup path names, if any. The path must be rooted at
 * the kubelet's hierarchy (after any "/.." a cgroup namespace puts in front): "kubepods",
 * "kubepods.slice", or containerd's "kubepods-...-pod<UID>.slice:cri-containerd:<ID>". The
 * container must be the last component and the pod the one right above it: a process that may
 * make cgroups of its own (a delegated subtree) cannot name itself after someone else's pod. */
static bool line_ids(const char *path, size_t n, char uid[AGENT_POD_UID_LEN + 1],
                     char cid[AGENT_CONTAINER_ID_LEN + 1])
{
    const char *end = path + n, *p = path;
    bool relative = false; /* the reader is in a cgroup namespace below the common ancestor */
    /* skip "/" and the "/.." components of a cgroup namespace */
    for (;;) {
        while (p < end && *p == '/') {
            p++;
        }
        if (end - p >= 2 && p[0] == '.' && p[1] == '.' && (end - p == 2 || p[2] == '/')) {
            p += 2;
            relative = true;
            continue;
        }
        break;
    }
    const char *first_end = memchr(p, '/', (size_t)(end - p));
    size_t first_len = (size_t)((first_end != NULL ? first_end : end) - p);
    /* the last component, and the one above it */
    const char *last = end;
    while (last > p && last[-1] != '/') {
        last--;
    }
    if (first_end == NULL) {
        /* one component: only containerd's "<pod slice>:cri-containerd:<ID>" form */
        const char *colon = memchr(p, ':', first_len);
        return colon != NULL && first_len >= 9 && memcmp(p, "kubepods-", 9) == 0 &&
               pod_component(p, (size_t)(colon - p), uid) && end - colon >= 16 &&
               memcmp(colon, ":cri-containerd:", 16) == 0 &&
               container_in(colon + 16, (size_t)(end - colon - 16), cid);
    }
    /* the root: the kubelet's; seen from a namespace below it, a level inside it */
    static const char *const roots[] = {"kubepods", "kubepods.slice"};
    static const char *const inner[] = {"kubepods-burstable.slice", "kubepods-besteffort.slice",
                                        "burstable", "besteffort"};
    bool anchored = false;
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]) && !anchored; i++) {
        anchored = first_len == strlen(roots[i]) && memcmp(p, roots[i], first_len) == 0;
    }
    for (size_t i = 0; relative && i < sizeof(inner) / sizeof(inner[0]) && !anchored; i++) {
        anchored = first_len == strlen(inner[i]) && memcmp(p, inner[i], first_len) == 0;
    }
    char scratch[AGENT_POD_UID_LEN + 1];
    anchored = anchored || (relative && pod_component(p, first_len, scratch));
    if (!anchored) {
        return false;
    }
    const char *above_end = last - 1, *above = above_end;
    while (above > p && above[-1] != '/') {
        above--;
    }
    return pod_component(above, (size_t)(above_end - above), uid) &&
           container_in(last, (size_t)(end - last), cid);
}

int agent_cgroup_parse(const char *text, size_t len, char pod_uid[AGENT_POD_UID_LEN + 1],
                       char container_id[AGENT_CONTAINER_ID_LEN + 1], char *err, size_t err_len)
{
    bool found = false;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;
        /* the path is what follows the second ':' */
        const char *c1 = memchr(p, ':', (size_t)(line_end - p));
        const char *c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(line_end - c1 - 1)) : NULL;
        char uid[AGENT_POD_UID_LEN + 1], cid[AGENT_CONTAINER_ID_LEN + 1];
        if (c2 != NULL && line_ids(c2 + 1, (size_t)(line_end - c2 - 1), uid, cid)) {
            if (found && (strcmp(uid, pod_uid) != 0 || strcmp(cid, container_id) != 0)) {
                snprintf(err, err_len,
                         "the cgroups name two containers (pod %s container %.12s, and pod %s "
                         "container %.12s)",
                         pod_uid, container_id, uid, cid);
                return WEFT_EINVAL;
            }
            memcpy(pod_uid, uid, sizeof(uid));
            memcpy(container_id, cid, sizeof(cid));
            found = true;
        }
        p = line_end + 1;
    }
    return found ? WEFT_OK : WEFT_ENOTFOUND;
}
