/* Fuzzes the k8s attestor's parsers of outside bytes: /proc/PID/cgroup text (a workload can
 * shape its own cgroup names) and the kubelet's pod list (JSON). The first byte picks which.
 * A cgroup parse that succeeds names a canonical UID and a 64-hex container ID; selectors from
 * a pod list are printable, spaceless and bounded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cgroup.h"
#include "agent/podlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_selectors(const struct agent_selectors *s)
{
    if (s->num > AGENT_MAX_SELECTORS) {
        abort();
    }
    for (size_t i = 0; i < s->num; i++) {
        size_t len = strlen(s->sel[i]);
        if (len == 0 || len > AGENT_SELECTOR_MAX || strncmp(s->sel[i], "k8s:", 4) != 0) {
            abort();
        }
        for (size_t k = 0; k < len; k++) {
            if ((unsigned char)s->sel[i][k] < 0x21 || (unsigned char)s->sel[i][k] > 0x7e) {
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char uid[AGENT_POD_UID_LEN + 1], cid[AGENT_CONTAINER_ID_LEN + 1], err[256];
    if (data[0] % 2 == 0) {
        if (agent_cgroup_parse(text, len, uid, cid, err, sizeof(err)) == WEFT_OK) {
            if (strlen(uid) != AGENT_POD_UID_LEN || strlen(cid) != AGENT_CONTAINER_ID_LEN ||
                uid[8] != '-' || uid[13] != '-' || uid[18] != '-' || uid[23] != '-' ||
                strspn(cid, "0123456789abcdef") != AGENT_CONTAINER_ID_LEN) {
                abort();
            }
        }
        return 0;
    }
    /* the pod and container the seeds name, so the walk reaches the selectors */
    struct agent_selectors *s = calloc(1, sizeof(*s));
    size_t skipped;
    if (agent_podlist_selectors(text, len, "2c48913c-b29f-11e7-9350-020968147796",
                                "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961",
                                s, &skipped, err, sizeof(err)) == WEFT_OK) {
        check_selectors(s);
    }
    free(s);
    return 0;
}
