/* agent/k8s_test.c: the k8s attestor against a small kubelet of its own on loopback, serving
 * the real-shaped pod list of agent/testdata, and a /proc of its own holding a workload's stat
 * and cgroup files. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/k8s.h"
#include "lib/base/file.h"
#include "test/testlib/net.h"

#define PID 4242
#define UID "2c48913c-b29f-11e7-9350-020968147796"
#define CID "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"

/* --- a kubelet: answers each connection with the next body, and remembers the tokens -------- */

#define MAX_ANSWERS 8

struct kubelet {
    int lfd, port;
    pthread_t th;
    const char *bodies[MAX_ANSWERS]; /* NULL: answer 500 */
    int status[MAX_ANSWERS];
    size_t num, served;
    char tokens[MAX_ANSWERS][64];
};

static void *kubelet_serve(void *arg)
{
    struct kubelet *k = arg;
    while (k->served < k->num) {
        int fd = accept(k->lfd, NULL, NULL);
        if (fd < 0) {
            return NULL;
        }
        char req[4096] = "";
        size_t len = 0;
        while (strstr(req, "\r\n\r\n") == NULL && len < sizeof(req) - 1) {
            ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
            if (n <= 0) {
                break;
            }
            len += (size_t)n;
            req[len] = '\0';
        }
        const char *auth = strstr(req, "Authorization: Bearer ");
        if (auth != NULL) {
            sscanf(auth + 22, "%63[^\r]", k->tokens[k->served]);
        }
        const char *body = k->bodies[k->served];
        int status = k->status[k->served] ? k->status[k->served] : 200;
        char head[128];
        int hl = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n\r\n",
                          status, body != NULL ? strlen(body) : 0);
        (void)!send(fd, head, (size_t)hl, MSG_NOSIGNAL);
        if (body != NULL) {
            (void)!send(fd, body, strlen(body), MSG_NOSIGNAL);
        }
        k->served++;
        close(fd);
    }
    return NULL;
}

static void kubelet_start(struct kubelet *k)
{
    k->lfd = testlib_listen_loopback(&k->port);
    cr_assert_geq(k->lfd, 0);
    cr_assert_eq(pthread_create(&k->th, NULL, kubelet_serve, k), 0);
}

static void kubelet_stop(struct kubelet *k)
{
    shutdown(k->lfd, SHUT_RDWR);
    pthread_join(k->th, NULL);
    close(k->lfd);
}

/* --- a /proc of our own ---------------------------------------------------------------------- */

static char dir[] = "/tmp/weft-k8s-test-XXXXXX";
static char proc[64], token[96];
static char *podlist;

static void write_text(const char *path, const char *text)
{
    cr_assert_eq(weft_file_write_atomic(path, text, strlen(text), 0600), WEFT_OK, "%s", path);
}

/* set_proc gives pid PID the start time |start| and the cgroup file |cgroup|. */
static void set_proc(unsigned long long start, const char *cgroup)
{
    char path[128], stat[256];
    snprintf(stat, sizeof(stat),
             "%d (my app) S 1 %d %d 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 %llu 1000 100\n", PID,
             PID, PID, start);
    snprintf(path, sizeof(path), "%s/%d/stat", proc, PID);
    write_text(path, stat);
    snprintf(path, sizeof(path), "%s/%d/cgroup", proc, PID);
    write_text(path, cgroup);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(proc, sizeof(proc), "%s/proc", dir);
    char path[128];
    snprintf(path, sizeof(path), "%s/%d", proc, PID);
    cr_assert_eq(mkdir(proc, 0755), 0);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(token, sizeof(token), "%s/token", dir);
    write_text(token, "first-token\n");
    size_t len;
    cr_assert_eq(weft_file_read((uint8_t **)&podlist, &len, "agent/testdata/podlist.json", 1 << 20),
                 WEFT_OK);
}

static void teardown(void)
{
    free(podlist);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(k8s, .init = setup, .fini = teardown, .timeout = 30);

static struct agent_k8s *attestor(int port)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/pods", port);
    struct agent_k8s_config cfg = {
        .url = url, .token_file = token, .proc = proc, .retries = 3, .retry_interval_ms = 50};
    struct agent_k8s *k;
    cr_assert_eq(agent_k8s_new(&k, &cfg, err, sizeof(err)), WEFT_OK, "%s", err);
    return k;
}

static const char cgroup_v2[] = "0::/kubepods.slice/kubepods-burstable.slice/"
                                "kubepods-burstable-pod2c48913c_b29f_11e7_9350_020968147796.slice/"
                                "cri-containerd-" CID ".scope\n";

Test(k8s, a_container_gets_its_pod_selectors_and_the_list_is_reused)
{
    set_proc(777, cgroup_v2);
    struct kubelet kl = {.bodies = {podlist}, .num = 1};
    kubelet_start(&kl);
    struct agent_k8s *k = attestor(kl.port);
    struct agent_peer p = {.pid = PID, .uid = 1001, .gid = 1001, .start_time = 777};
    struct agent_selectors *s = calloc(1, sizeof(*s));
    char err[256];
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert(agent_selectors_has(s, "k8s:ns:shop"));
    cr_assert(agent_selectors_has(s, "k8s:sa:cart"));
    cr_assert(agent_selectors_has(s, "k8s:container-name:cart"));
    cr_assert(agent_selectors_has(s, "k8s:pod-uid:" UID));
    /* again: answered from the list already fetched */
    memset(s, 0, sizeof(*s));
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_OK, "%s", err);
    kubelet_stop(&kl);
    cr_assert_eq(kl.served, 1, "one fetch for two attestations");
    cr_assert_str_eq(kl.tokens[0], "first-token", "the bearer token, without its newline");
    free(s);
    agent_k8s_free(k);
}

Test(k8s, a_miss_fetches_again_with_the_token_as_it_is_now)
{
    set_proc(777, cgroup_v2);
    /* the kubelet does not know the container at first (an empty list), then it does; later
     * the container restarts under a new ID */
    static const char new_cid[] =
        "abababababababababababababababababababababababababababababababab";
    char *restarted = strdup(podlist);
    memcpy(strstr(restarted, CID), new_cid, 64);
    struct kubelet kl = {.bodies = {"{\"kind\":\"PodList\",\"items\":[]}", podlist, restarted},
                         .num = 3};
    kubelet_start(&kl);
    struct agent_k8s *k = attestor(kl.port);
    struct agent_peer p = {.pid = PID, .start_time = 777};
    struct agent_selectors *s = calloc(1, sizeof(*s));
    char err[256];
    struct agent_k8s_stats st;
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_OK, "%s", err);
    agent_k8s_stats(k, &st);
    cr_assert_eq(st.fetches, 2);
    cr_assert_eq(st.misses, 1);
    cr_assert(agent_selectors_has(s, "k8s:pod-name:cart-7d9f8c6b5-x2x9q"));
    /* the kubelet rotated the token file: the next fetch sends the new one */
    write_text(token, "rotated-token");
    char cgroup[512];
    snprintf(cgroup, sizeof(cgroup), "0::/kubepods/burstable/pod" UID "/%s\n", new_cid);
    set_proc(778, cgroup);
    p.start_time = 778;
    memset(s, 0, sizeof(*s));
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_OK, "%s", err);
    kubelet_stop(&kl);
    cr_assert_str_eq(kl.tokens[1], "first-token");
    cr_assert_str_eq(kl.tokens[2], "rotated-token");
    free(restarted);
    free(s);
    agent_k8s_free(k);
}

Test(k8s, not_a_pod_a_reused_pid_and_a_kubelet_that_refuses)
{
    struct agent_peer p = {.pid = PID, .start_time = 777};
    struct agent_selectors *s = calloc(1, sizeof(*s));
    char err[256];
    /* a host process: no request at all */
    set_proc(777, "0::/user.slice/user-1000.slice/session-3.scope\n");
    struct agent_k8s *k = attestor(1); /* nothing listens there, and nothing is asked */
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_ENOTFOUND);
    cr_assert_not_null(strstr(err, "not in a Kubernetes pod"), "%s", err);
    cr_assert_eq(s->num, 0);
    /* another process holds the pid now */
    set_proc(778, cgroup_v2);
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_ESTALE);
    cr_assert_eq(s->num, 0);
    agent_k8s_free(k);
    /* the kubelet says 403: the reason names RBAC */
    set_proc(777, cgroup_v2);
    struct kubelet kl = {.status = {403}, .num = 1};
    kubelet_start(&kl);
    k = attestor(kl.port);
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_EIO);
    cr_assert_not_null(strstr(err, "403"), "%s", err);
    cr_assert_not_null(strstr(err, "nodes/proxy"), "%s", err);
    cr_assert_eq(s->num, 0);
    kubelet_stop(&kl);
    agent_k8s_free(k);
    /* a container the kubelet never lists: bounded retries, then a miss */
    struct kubelet empty = {
        .bodies = {"{\"items\":[]}", "{\"items\":[]}", "{\"items\":[]}", "{\"items\":[]}"},
        .num = 4};
    kubelet_start(&empty);
    k = attestor(empty.port);
    cr_assert_eq(agent_attest_k8s(k, &p, s, err, sizeof(err)), WEFT_ENOTFOUND);
    cr_assert_not_null(strstr(err, "does not list it"), "%s", err);
    kubelet_stop(&empty);
    cr_assert_eq(empty.served, 4, "the first fetch and 3 retries");
    agent_k8s_free(k);
    /* https without a CA is refused at configuration time */
    struct agent_k8s_config cfg = {.url = "https://127.0.0.1:10250/pods"};
    cr_assert_eq(agent_k8s_new(&k, &cfg, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "CA"), "%s", err);
    free(s);
}
