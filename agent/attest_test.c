/* agent/attest_test.c: the workload attestation pieces: cgroup shapes of each runtime and
 * driver (agent/testdata/cgroup), selectors from a real-shaped kubelet pod list, the unix
 * attestor on real processes (under another uid when run as root), and pid reuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/peer.h"
#include "agent/podlist.h"
#include "agent/selectors.h"
#include "lib/base/file.h"

#define UID "2c48913c-b29f-11e7-9350-020968147796"
#define CID "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
#define INIT_CID "41e3ba3a7a07f67ed31bbbb4d2e96af7d34c3bfd5f0e2a8e5c8e41a4fb91d9f2"

static char *fixture(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof(path), "agent/testdata/%s", name);
    uint8_t *data;
    cr_assert_eq(weft_file_read(&data, len, path, 1 << 20), WEFT_OK, "%s", path);
    return (char *)data;
}

static int parse(const char *name, char uid[37], char cid[65], char *err)
{
    size_t len;
    char *text = fixture(name, &len);
    int rc = agent_cgroup_parse(text, len, uid, cid, err, 256);
    free(text);
    return rc;
}

Test(cgroup, finds_pod_and_container_in_every_runtime_shape)
{
    static const char *const shapes[] = {
        "cgroup/v1_cgroupfs_containerd",
        "cgroup/v1_systemd_docker",
        "cgroup/v1_systemd_containerd_colon",
        "cgroup/v2_systemd_containerd",
        "cgroup/v2_systemd_crio",
        "cgroup/v2_cgroupfs_crio",
        "cgroup/v2_guaranteed_no_qos_slice",
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        char uid[37], cid[65], err[256] = "";
        cr_assert_eq(parse(shapes[i], uid, cid, err), WEFT_OK, "%s: %s", shapes[i], err);
        cr_assert_str_eq(uid, UID, "%s: the UID, with '-' whatever the driver wrote", shapes[i]);
        cr_assert_str_eq(cid, CID, "%s", shapes[i]);
    }
}

Test(cgroup, what_is_not_a_pods_container_is_not_one)
{
    static const char *const shapes[] = {
        "cgroup/v2_cgroup_namespace",
        "cgroup/host_process",
        "cgroup/pod_level_only",
        "cgroup/not_hex_container",
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        char uid[37], cid[65], err[256] = "";
        cr_assert_eq(parse(shapes[i], uid, cid, err), WEFT_ENOTFOUND, "%s", shapes[i]);
    }
    char uid[37], cid[65], err[256] = "";
    cr_assert_eq(parse("cgroup/two_containers", uid, cid, err), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "two containers"), "%s", err);
    /* a UID that runs on into more hex is no UID */
    const char *longer = "0::/kubepods/pod" UID "0/" CID "\n";
    cr_assert_eq(agent_cgroup_parse(longer, strlen(longer), uid, cid, err, sizeof(err)),
                 WEFT_ENOTFOUND);
}

Test(podlist, selectors_of_a_container_and_of_an_init_container)
{
    size_t len, skipped;
    char *json = fixture("podlist.json", &len);
    struct agent_selectors *s = calloc(1, sizeof(*s));
    char err[256];
    cr_assert_eq(agent_podlist_selectors(json, len, UID, CID, s, &skipped, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    static const char *const want[] = {
        "k8s:ns:shop",
        "k8s:sa:cart",
        "k8s:pod-name:cart-7d9f8c6b5-x2x9q",
        "k8s:pod-uid:" UID,
        "k8s:container-name:cart",
        "k8s:node-name:node-a",
        "k8s:container-image:registry.example/shop/cart:1.4",
        "k8s:pod-label:app:cart",
        "k8s:pod-label:tier:backend",
        "k8s:pod-label:pod-template-hash:7d9f8c6b5",
        "k8s:pod-ip:198.18.1.7",
        "k8s:pod-ip:2001:db8::7", /* canonical form */
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_assert(agent_selectors_has(s, want[i]), "%s", want[i]);
    }
    cr_assert_eq(s->num, sizeof(want) / sizeof(want[0]));
    cr_assert_eq(skipped, 0);
    cr_assert(!agent_selectors_has(s, "k8s:container-name:weft-proxy"));

    memset(s, 0, sizeof(*s));
    cr_assert_eq(agent_podlist_selectors(json, len, UID, INIT_CID, s, &skipped, err, sizeof(err)),
                 WEFT_OK);
    cr_assert(agent_selectors_has(s, "k8s:container-name:migrate"));

    /* the label with a space is left out and counted, never mangled */
    memset(s, 0, sizeof(*s));
    cr_assert_eq(
        agent_podlist_selectors(json, len, "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                                "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999",
                                s, &skipped, err, sizeof(err)),
        WEFT_OK);
    cr_assert_eq(skipped, 1);
    cr_assert(agent_selectors_has(s, "k8s:pod-label:k8s-app:kube-dns"));
    cr_assert(agent_selectors_has(s, "k8s:ns:kube-system"));
    for (size_t i = 0; i < s->num; i++) { /* hostNetwork: the node's address is not its own */
        cr_assert(strncmp(s->sel[i], "k8s:pod-ip:", 11) != 0, "%s", s->sel[i]);
    }

    /* an unknown pod, or a container the kubelet does not list yet: ask again later */
    cr_assert_eq(
        agent_podlist_selectors(json, len, UID, INIT_CID "0", s, &skipped, err, sizeof(err)),
        WEFT_ENOTFOUND);
    cr_assert_eq(agent_podlist_selectors(json, len, "00000000-0000-0000-0000-000000000000", CID, s,
                                         &skipped, err, sizeof(err)),
                 WEFT_ENOTFOUND);
    cr_assert_eq(
        agent_podlist_selectors("{\"items\": 3}", 12, UID, CID, s, &skipped, err, sizeof(err)),
        WEFT_EINVAL);
    cr_assert_eq(agent_podlist_selectors("not json", 8, UID, CID, s, &skipped, err, sizeof(err)),
                 WEFT_EINVAL);
    free(s);
    free(json);
}

Test(selectors, an_entry_matches_when_all_its_selectors_were_observed)
{
    struct agent_selectors *s = calloc(1, sizeof(*s));
    cr_assert_eq(agent_selectors_add(s, "unix:uid:%d", 1001), WEFT_OK);
    cr_assert_eq(agent_selectors_add(s, "k8s:ns:%s", "shop"), WEFT_OK);
    cr_assert_eq(agent_selectors_add(s, "k8s:ns:%s", "shop"), WEFT_OK);
    cr_assert_eq(s->num, 2, "no duplicates");
    cr_assert_eq(agent_selectors_add(s, "k8s:pod-label:%s", "a b"), WEFT_EINVAL);
    cr_assert_eq(s->num, 2);
    const char *both[] = {"unix:uid:1001", "k8s:ns:shop"};
    const char *more[] = {"unix:uid:1001", "k8s:ns:shop", "k8s:sa:cart"};
    cr_assert(agent_selectors_match(s, both, 2));
    cr_assert(!agent_selectors_match(s, more, 3), "every selector of the entry, not some");
    cr_assert(!agent_selectors_match(s, both, 0), "an empty entry matches nothing");
    free(s);
}

Test(peer, the_unix_attestor_sees_the_caller_and_notices_pid_reuse)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (geteuid() == 0 && (setgid(4321) != 0 || setuid(1234) != 0)) {
            _exit(1);
        }
        /* connect-time credentials are the socketpair's: exec keeps them, as a client would */
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    /* SO_PEERCRED of a socketpair names the process that made it (us); ask about the child */
    struct agent_peer me, child;
    char err[256];
    cr_assert_eq(agent_peer_of_fd(sv[0], "/proc", &me, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(me.pid, getpid());
    cr_assert_eq(me.uid, geteuid());
    /* wait, bounded, until the child has exec'd */
    for (int i = 0; i < 100; i++) {
        char link[64], target[256] = "";
        snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
        ssize_t tn = readlink(link, target, sizeof(target) - 1);
        if (tn > 0 && strstr(target, "sleep") != NULL) {
            break;
        }
        usleep(20 * 1000);
    }
    child = (struct agent_peer){.pid = pid,
                                .uid = geteuid() == 0 ? 1234 : geteuid(),
                                .gid = geteuid() == 0 ? 4321 : getegid()};
    cr_assert_eq(agent_peer_start_time("/proc", pid, &child.start_time), WEFT_OK);
    struct agent_selectors *s = calloc(1, sizeof(*s));
    cr_assert_eq(agent_attest_unix(&child, "/proc", s, err, sizeof(err)), WEFT_OK, "%s", err);
    char want[64];
    snprintf(want, sizeof(want), "unix:uid:%u", (unsigned)child.uid);
    cr_assert(agent_selectors_has(s, want), "%s", want);
    char exe[256], want_path[300];
    cr_assert_not_null(realpath("/bin/sleep", exe));
    snprintf(want_path, sizeof(want_path), "unix:path:%s", exe);
    cr_assert(agent_selectors_has(s, want_path), "the executable, resolved: %s", want_path);
    if (geteuid() == 0) {
        cr_assert(agent_selectors_has(s, "unix:gid:4321"));
        cr_assert(agent_selectors_has(s, "unix:user:root") == false);
    } else {
        cr_assert_eq(s->num >= 3, true);
    }
    /* the same pid, a start time that is not the process's: another process holds the pid */
    struct agent_peer reused = child;
    reused.start_time--;
    memset(s, 0, sizeof(*s));
    cr_assert_eq(agent_attest_unix(&reused, "/proc", s, err, sizeof(err)), WEFT_ESTALE);
    cr_assert_not_null(strstr(err, "changed"), "%s", err);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* and a process that is gone */
    cr_assert(!agent_peer_same(&child, "/proc"));
    cr_assert_eq(agent_attest_unix(&child, "/proc", s, err, sizeof(err)), WEFT_ESTALE);
    close(sv[0]);
    free(s);
}
