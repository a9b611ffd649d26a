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

/* line_ids: the pod and container one cgroup path names, if any. */
static bool line_ids(const char *path, size_t n, char uid[AGENT_POD_UID_LEN + 1],
                     char cid[AGENT_CONTAINER_ID_LEN + 1])
{
    bool have_uid = false;
    for (size_t i = 0; i + 3 < n && !have_uid; i++) {
        /* "pod" at the start of a component or after a '-' (kubepods-burstable-pod...) */
        if (memcmp(path + i, "pod", 3) == 0 &&
            (i == 0 || path[i - 1] == '/' || path[i - 1] == '-')) {
            have_uid = uid_at(path + i + 3, n - i - 3, uid);
        }
    }
    return have_uid && container_in(path, n, cid);
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
