/* test/testlib/mesh.h: two pods (or three) on a real mesh, for integration tests and
 * benchmarks (no Criterion here: every function returns a weft_err and says why in a caller's
 * buffer).
 *
 * mesh_start makes: a weft-ca (ca_proc.h) distributing the policy YAML of DIR/policy (the
 * caller's, rewritable with mesh_policy_write); a weft-agent (agent_proc.h) with
 * --claim-cidr 198.18.0.0/15; entries MESH_ID_A for uid MESH_UID_PROXY_A and MESH_ID_B for
 * MESH_UID_PROXY_B (and MESH_ID_C for MESH_UID_PROXY_C); copies of weft-proxy, weftctl and the
 * caller's runfiles where other uids may run them; and two pods, network namespaces joined by a
 * veth (A at MESH_IP_A, B at MESH_IP_B, named after our PID), or three (C at MESH_IP_C), each
 * with a veth to a bridge in a fourth namespace; each pod with `weftctl iptables install
 * --proxy-uid U --no-ipv6` and the caller's extra arguments. The proxies are started with
 * mesh_proxy_start. Processes started in a pod (mesh_spawn) run as a given uid, their output in a
 * file, and are stopped by their PID; mesh_cleanup kills every one still running, deletes the
 * namespaces (their veth and rules go with them) and the directory, whatever state a failed
 * mesh_start left. A run that is killed (a test timeout runs no teardown) takes its processes with
 * it but the CA (which drops to nobody), its directory and the namespaces: the next mesh_start
 * undoes those for every run whose PID is gone (from the namespaces' names and
 * /tmp/weft-mesh-PID.run). Needs root and the runfiles of data = ["//agent:weft-agent",
 * "//ca:weft-ca", "//cli:weftctl", "//proxy:weft-proxy"] plus the caller's. mesh_start calls
 * grpc_init and mesh_cleanup grpc_shutdown. */
#ifndef WEFT_TEST_TESTLIB_MESH_H
#define WEFT_TEST_TESTLIB_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <sys/types.h>

#include "lib/base/err.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"

#define MESH_TD CA_PROC_TD
#define MESH_ID_A "spiffe://" MESH_TD "/ns/demo/sa/client" /* pod A's proxy */
#define MESH_ID_B "spiffe://" MESH_TD "/ns/demo/sa/server" /* pod B's proxy */
#define MESH_IP_A "198.18.1.1"
#define MESH_IP_B "198.18.1.2"
#define MESH_UID_PROXY_A 1337 /* the uid `weftctl iptables` excludes by default */
#define MESH_UID_PROXY_B 1338
#define MESH_ID_C "spiffe://" MESH_TD "/ns/demo/sa/other" /* pod C's proxy (num_pods 3) */
#define MESH_IP_C "198.18.1.3"
#define MESH_UID_PROXY_C 1339
#define MESH_MAX_PODS 3
#define MESH_UID_APP 3000   /* a suggestion for the pods' applications */
#define MESH_MAX_RUNFILES 6 /* the caller's runfiles */
#define MESH_MAX_PROCS 64   /* processes started and not yet reaped */
#define MESH_MAX_ARGS 24    /* arguments of one process (mesh_spawn, mesh_run) */
#define MESH_POLICY_FILE "mesh.yaml"

/* the policy most suites start from: pod B's workload lets pod A's in on port 8080 only */
#define MESH_POLICY_B_ALLOWS_A_8080                                                                \
    "apiVersion: security.weft.dev/v1alpha1\n"                                                     \
    "kind: AuthorizationPolicy\n"                                                                  \
    "metadata: {name: server-allow-client, namespace: demo}\n"                                     \
    "spec:\n"                                                                                      \
    "  selector: {serviceAccounts: [server]}\n"                                                    \
    "  action: ALLOW\n"                                                                            \
    "  rules:\n"                                                                                   \
    "    - from: [{principals: [\"" MESH_ID_A "\"]}]\n"                                            \
    "      to: [{ports: [\"8080\"]}]\n"

enum mesh_pod_id { MESH_POD_A = 0, MESH_POD_B = 1, MESH_POD_C = 2 };

struct mesh_opts {
    /* the YAML written to DIR/policy/MESH_POLICY_FILE before the CA starts; NULL: none */
    const char *policy_yaml;
    /* the CA's --intermediate-ttl ("20s"): workload SVIDs are capped at their intermediate's
     * notAfter (an entry's own TTL is 5 min at least), and the agent renews them at about half
     * their life; NULL: the CA's default (days) */
    const char *svid_ttl;
    /* runfiles to copy besides weft-proxy and weftctl ("proxy/mesh_app"), NULL-terminated;
     * mesh_bin finds each by its base name */
    const char *runfiles[MESH_MAX_RUNFILES + 1];
    /* more arguments for each pod's `weftctl iptables install` (split by the shell):
     * "--exclude-inbound-ports 8090"; NULL: none */
    const char *iptables_extra[MESH_MAX_PODS];
    /* 0 or 2: pods A and B, joined by a veth; 3: pod C too, all on a bridge */
    int num_pods;
    /* more flags for weft-agent ("--alert-command", "CMD"), NULL-terminated */
    const char *agent_extra[7];
};

struct mesh_pod {
    char ns[32];          /* the network namespace */
    char veth[16];        /* its interface, in |ns| (for a capture) */
    const char *ip;       /* MESH_IP_A, MESH_IP_B or MESH_IP_C */
    unsigned proxy_uid;   /* MESH_UID_PROXY_A, _B or _C */
    char admin_sock[128]; /* the proxy's --admin unix socket */
    char log[128];        /* the proxy's stderr (logfmt; access-log lines), appended */
    pid_t proxy_pid;      /* 0: not running */
};

struct mesh {
    struct ca_proc ca;
    struct agent_proc agent;
    struct mesh_pod pods[MESH_MAX_PODS];
    size_t num_pods;
    char switch_ns[32];  /* with three pods, the bridge's namespace */
    char policy_dir[96]; /* DIR/policy */
    char run_dir[96];    /* DIR/pods, mode 0777: where every uid writes its output */
    char bins[MESH_MAX_RUNFILES + 2][128]; /* the copies: weft-proxy, weftctl, the caller's */
    size_t num_bins;
    pid_t pids[MESH_MAX_PROCS]; /* started by mesh_spawn and not reaped yet */
    size_t num_pids;
    bool grpc, made_ns;
    const char *ca_flags[4];
};

/* mesh_init puts |m| in its zero state: mesh_cleanup may be called on it at once. */
void mesh_init(struct mesh *m);

/* mesh_start makes everything but the proxies (see above), in an |m| from mesh_init. On
 * failure |err| says which step failed (and where its log is); call mesh_cleanup either way.
 * WEFT_EINVAL when we are not root. */
WEFT_MUST_USE int mesh_start(struct mesh *m, const struct mesh_opts *o, char *err, size_t err_len);

/* mesh_cleanup kills (SIGKILL) and reaps every process still started, deletes the pods'
 * namespaces, stops the agent and the CA and removes their directory (first copying the logs
 * and outputs to $TEST_UNDECLARED_OUTPUTS_DIR/BASENAME-OF-DIR when Bazel set it), then shuts
 * gRPC down. Leaves |m| in its zero state. */
void mesh_cleanup(struct mesh *m);

/* mesh_bin returns the path of the copy of the runfile whose base name is |name|
 * ("weft-proxy", "weftctl", "mesh_app"), or NULL. */
const char *mesh_bin(const struct mesh *m, const char *name);

/* mesh_path returns |name| in the run directory, where every uid writes (one of 8 rotating
 * buffers: use it before the ninth call). */
const char *mesh_path(const struct mesh *m, const char *name);

/* mesh_serve starts `mesh_app MODE IP PORT` (a runfile the caller asked for) in pod |pod| as
 * MESH_UID_APP, its output in the run directory's |out_name|, and waits at most 20 s until it
 * says "listening". */
WEFT_MUST_USE int mesh_serve(struct mesh *m, enum mesh_pod_id pod, const char *mode, const char *ip,
                             const char *port, const char *out_name, char *err, size_t err_len);

/* mesh_policy_write replaces DIR/policy/MESH_POLICY_FILE with |yaml| (atomically: the CA
 * reloads the directory when it changes and pushes the new policy to the proxies). */
WEFT_MUST_USE int mesh_policy_write(struct mesh *m, const char *yaml);

/* mesh_spawn starts |argv| (NULL-terminated, at most MESH_MAX_ARGS) in pod |pod|'s namespace
 * as |uid| (and its gid), stdin from /dev/null, stdout and stderr appended to |out_path|. The
 * PID is the program's own (ip and setpriv exec it); it is killed if we die. |*out_pid| gets
 * it. WEFT_ELIMIT when MESH_MAX_PROCS are running. */
WEFT_MUST_USE int mesh_spawn(struct mesh *m, enum mesh_pod_id pod, unsigned uid,
                             const char *out_path, const char *const *argv, pid_t *out_pid);

/* mesh_kill sends |sig| (0: none, just wait) to |pid| (one of ours) and waits at most
 * |timeout_ms| for it to exit; WEFT_OK with |*out_status| (may be NULL) its wait status, then
 * it is forgotten. WEFT_EAGAIN when it is still running (it stays ours: mesh_cleanup kills
 * it), WEFT_ENOTFOUND when it is not ours. */
WEFT_MUST_USE int mesh_kill(struct mesh *m, pid_t pid, int sig, int timeout_ms, int *out_status);

/* mesh_run runs |argv| in pod |pod| as |uid| and waits at most |timeout_ms| for it to exit:
 * |out| gets its stdout (cut at |out_len| - 1), |*out_status| its wait status. WEFT_EAGAIN
 * (and it is killed) when the time ran out. */
WEFT_MUST_USE int mesh_run(struct mesh *m, enum mesh_pod_id pod, unsigned uid,
                           const char *const *argv, int timeout_ms, char *out, size_t out_len,
                           int *out_status);

/* mesh_proxy_start starts weft-proxy in pod |pod| as its proxy uid, with --agent-socket,
 * --admin unix:ADMIN_SOCK and --claim IP, then |extra| (NULL-terminated; NULL: none). It does
 * not wait: see mesh_proxy_wait_ready. WEFT_EINVAL when that pod's proxy runs already. */
WEFT_MUST_USE int mesh_proxy_start(struct mesh *m, enum mesh_pod_id pod, const char *const *extra,
                                   char *err, size_t err_len);

/* mesh_proxy_wait_ready waits at most |timeout_ms| until pod |pod|'s proxy answers /ready with
 * 200 and its /config shows |directory_entries| entries of the mesh directory (2: both pods
 * claimed theirs). WEFT_EIO when it exited, WEFT_EAGAIN when the time ran out; |err| says
 * which, with the last /config seen. */
WEFT_MUST_USE int mesh_proxy_wait_ready(struct mesh *m, enum mesh_pod_id pod, int directory_entries,
                                        int timeout_ms, char *err, size_t err_len);

/* mesh_proxies_start starts every pod's proxy (|extra_a|, |extra_b| as for mesh_proxy_start;
 * pod C's with none) and waits, at most 30 s, until each is ready with as many directory
 * entries as there are pods. */
WEFT_MUST_USE int mesh_proxies_start(struct mesh *m, const char *const *extra_a,
                                     const char *const *extra_b, char *err, size_t err_len);

/* mesh_proxy_stop sends |sig| (SIGTERM: drain; 0: none, for one told to quit over its admin
 * socket) to pod |pod|'s proxy and waits at most |timeout_ms| for its exit, as mesh_kill. */
WEFT_MUST_USE int mesh_proxy_stop(struct mesh *m, enum mesh_pod_id pod, int sig, int timeout_ms,
                                  int *out_status);

/* mesh_admin makes one request (|method| "GET" or "POST", no body) on pod |pod|'s proxy admin
 * socket; |buf| gets the response, headers included (NUL-terminated, cut at |len| - 1).
 * Returns the HTTP status, or -1 with no answer. */
int mesh_admin(const struct mesh *m, enum mesh_pod_id pod, const char *method, const char *path,
               char *buf, size_t len);

/* mesh_metric returns the value of |series| as printed ("weft_proxy_handshakes_total{kind=
 * \"resumed\"}") in pod |pod|'s proxy /metrics, or |missing| when it is not there. */
double mesh_metric(const struct mesh *m, enum mesh_pod_id pod, const char *series, double missing);

/* mesh_file_has says whether |path| (its first MiB) holds |needle|. */
bool mesh_file_has(const char *path, const char *needle);

/* mesh_file_count counts the occurrences of |needle| in |path| (its first MiB). */
size_t mesh_file_count(const char *path, const char *needle);

/* mesh_wait_file_has waits at most |timeout_ms| until |path| holds |needle|: WEFT_OK, else
 * WEFT_EAGAIN. */
WEFT_MUST_USE int mesh_wait_file_has(const char *path, const char *needle, int timeout_ms);

/* mesh_file_has_line says whether a line of |path| (its first MiB) holds every one of
 * |needles| (NULL-terminated): for an access-log line's fields. */
bool mesh_file_has_line(const char *path, const char *const *needles);

/* mesh_wait_file_line waits at most |timeout_ms| until mesh_file_has_line: WEFT_OK, else
 * WEFT_EAGAIN. */
WEFT_MUST_USE int mesh_wait_file_line(const char *path, const char *const *needles, int timeout_ms);

/* mesh_catch_signals is for a program that is not a Criterion test (a benchmark): SIGINT,
 * SIGTERM and SIGHUP set |*stop| to the signal and kill the processes started in the pods (the
 * program then calls mesh_cleanup and exits); a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * SIGABRT) kills every process of |m| and deletes its namespaces before the signal takes its
 * course. */
void mesh_catch_signals(struct mesh *m, volatile sig_atomic_t *stop);

/* mesh_dump_tail copies the last |max| bytes (at most 8 KiB) of |path| to stderr: a long run's
 * logs, where the whole would bury what matters. */
void mesh_dump_tail(const char *path, size_t max);

/* mesh_dump_logs copies the CA's, the agent's and the proxies' logs to stderr. */
void mesh_dump_logs(const struct mesh *m);

/* --- certificates and rotation ----------------------------------------------------------- */

/* struct mesh_certs: what a proxy's /certs says of the SVID it uses. */
struct mesh_certs {
    char serial[48];           /* lower-case hex, as /certs writes it */
    long long not_after;       /* the SVID's notAfter, Unix seconds */
    long long chain_not_after; /* the earliest notAfter of its chain (SVID and intermediates) */
};

/* mesh_certs reads pod |pod|'s /certs into |out|. WEFT_EIO when it does not answer 200 or names
 * no SVID. */
WEFT_MUST_USE int mesh_certs(const struct mesh *m, enum mesh_pod_id pod, struct mesh_certs *out);

/* mesh_certs_lasting waits at most |timeout_ms| until the SVIDs pods A and B use both stay
 * valid |seconds| more, and puts them in |out| (A's, then B's). Each proxy's SVID is renewed at
 * 40-60 % of its life and capped at its intermediate's notAfter, so their ends move on in
 * steps. WEFT_EAGAIN when they never did at once (|err| says the most seen). */
WEFT_MUST_USE int mesh_certs_lasting(const struct mesh *m, long long seconds, int timeout_ms,
                                     struct mesh_certs out[2], char *err, size_t err_len);

/* struct mesh_stream: what a stream of mesh_stream_rotations saw. */
struct mesh_stream {
    unsigned long long sent, echoed; /* bytes, by mesh_app's count */
    long long max_gap_ms;            /* the longest wait for a due echo */
    long long seconds;               /* how long it could last: until 2 s before the first of
                                      * the starting SVIDs expired */
    int rotations[2];                /* of pod A's and pod B's SVIDs while it flowed */
    struct mesh_certs start[2];      /* the SVIDs in use when it started */
};

/* mesh_stream_rotations runs `mesh_app stream` (a runfile the caller asked for) from pod A as
 * MESH_UID_APP to pod B's |port| (an echo server) once both SVIDs have |min_left_s| or more
 * left (waiting at most 40 s), and lets it flow until |rotations| rotations of either side's
 * SVID, pod B's among them, have come and gone (then 2 s more on the new credentials), or at
 * most until 2 s before the first of the starting SVIDs expires: a live connection is cut when
 * the certificates of its own handshake expire, so "across rotations" means within one
 * handshake's lifetime. Its output is the run directory's |out_name|. WEFT_OK with |out| once
 * it ended "stream done" (whether |rotations| came is the caller's to judge from |out|);
 * WEFT_EIO when it broke or never ended, |err| saying how. */
WEFT_MUST_USE int mesh_stream_rotations(struct mesh *m, const char *port, int min_left_s,
                                        int rotations, const char *out_name,
                                        struct mesh_stream *out, char *err, size_t err_len);

/* --- the node's daemons -------------------------------------------------------------------- */

/* mesh_ca_stop sends |sig| (SIGKILL: a crash; SIGTERM) to the CA and reaps it; its directory,
 * keys and store stay for mesh_ca_restart. */
void mesh_ca_stop(struct mesh *m, int sig);

/* mesh_ca_restart starts the CA again on the same directory, flags and port, and waits (at most
 * 10 s) until its admin socket answers. WEFT_EIO when it does not (see DIR/ca.log). */
WEFT_MUST_USE int mesh_ca_restart(struct mesh *m, char *err, size_t err_len);

/* mesh_agent_restart stops the agent (SIGTERM, reaped) and starts it again from its stored
 * node identity (no join token), waiting at most |timeout_ms| until it serves every pod's
 * SVID. WEFT_EIO when it does not (see its log). */
WEFT_MUST_USE int mesh_agent_restart(struct mesh *m, int timeout_ms, char *err, size_t err_len);

#endif
