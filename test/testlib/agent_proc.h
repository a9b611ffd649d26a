/* test/testlib/agent_proc.h: a real weft-agent process for tests and benchmarks, joined to a
 * testlib ca_proc (ca_proc.h) as node AGENT_PROC_NODE, with its files in the CA's directory
 * (made 0755 so that workloads under other uids reach the socket): the Workload API socket
 * DIR/run/agent.sock, /metrics and /ready on DIR/http.sock, its state in DIR/agent-state and
 * its stderr in DIR/agent.log. Stopped by its PID. Also: entries for a uid, runfile binaries
 * copied where other uids may run them, and commands run as another uid. */
#ifndef WEFT_TEST_TESTLIB_AGENT_PROC_H
#define WEFT_TEST_TESTLIB_AGENT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/base/err.h"
#include "lib/rpc/rpc.h"
#include "test/testlib/ca_proc.h"

#define AGENT_PROC_BIN "agent/weft-agent" /* in the runfiles of data = ["//agent:weft-agent"] */
#define AGENT_PROC_NODE "node-a"

struct agent_proc {
    struct ca_proc *ca;
    char sock[128];      /* the Workload API socket */
    char http_sock[128]; /* /metrics and /ready (HTTP/1.1 on a unix socket) */
    char state[128];     /* --state-dir */
    char log[128];       /* the agent's stderr, appended across restarts */
    char token[128];     /* the join token (used once) */
    pid_t pid;
    const char *extra[8]; /* more flags for weft-agent, NULL-terminated ("--alert-command") */
};

/* agent_proc_init fills |a| for the running |ca| and takes a join token for AGENT_PROC_NODE
 * (valid 10 minutes). WEFT_EIO when the CA refuses one. */
WEFT_MUST_USE int agent_proc_init(struct agent_proc *a, struct ca_proc *ca);

/* agent_proc_start runs weft-agent (again, for a restart), with the join token or without
 * (it then needs the identity stored by an earlier run). It does not wait: see
 * agent_proc_wait_served. WEFT_EIO when it cannot fork. */
WEFT_MUST_USE int agent_proc_start(struct agent_proc *a, bool with_token);

/* agent_proc_stop sends SIGTERM and reaps the agent, if it runs. */
void agent_proc_stop(struct agent_proc *a);

/* agent_proc_wait_served polls, at most |timeout_ms|, until the agent answers /ready with 200
 * and holds at least |svids| workload SVIDs (weft_agent_svids_held): it joined, has the
 * bundle and minted. WEFT_EIO when it exited (see its log) or the time ran out. */
WEFT_MUST_USE int agent_proc_wait_served(struct agent_proc *a, int svids, int timeout_ms);

/* agent_proc_dump_logs copies the CA's and the agent's logs to stderr (the test log), for a
 * setup that failed: their directory goes with the teardown. */
void agent_proc_dump_logs(const struct agent_proc *a);

/* agent_proc_http GETs |path| ("/metrics") from the agent's HTTP socket into |buf|
 * (NUL-terminated, headers included, cut at |len| - 1); returns the HTTP status, or -1 when
 * there is no answer. */
int agent_proc_http(const struct agent_proc *a, const char *path, char *buf, size_t len);

/* agent_proc_metric returns the value of the series |series| (the name with its labels, as
 * printed: "weft_agent_ca_connected", "x{k=\"v\"}") in the metrics text |text|, or |missing|. */
double agent_proc_metric(const char *text, const char *series, double missing);

/* agent_proc_entry creates an entry for |spiffe_id| on AGENT_PROC_NODE with the one selector
 * unix:uid:|uid|. WEFT_OK, else |st| says why. */
WEFT_MUST_USE int agent_proc_entry(struct ca_proc *ca, const char *spiffe_id, unsigned uid,
                                   struct rpc_status *st);

/* agent_proc_copy_runfile copies the runfile |runfile| ("test/integration/wlapi_fetch") into
 * the CA's directory as |name|, mode 0755, so that other uids may run it (the runfiles are
 * under root's home); |out| gets its path. */
WEFT_MUST_USE int agent_proc_copy_runfile(const struct ca_proc *ca, const char *runfile,
                                          const char *name, char *out, size_t out_len);

/* agent_proc_run runs `sh -c CMD` as |uid| (when we are root and |uid| is not 0; else as we
 * are) in a process group of its own, with stdin from /dev/null.
 *   - |first_line|: returns once its first line of stdout is in |out| (the group is then
 *     killed: a streaming client may still wait); |*status| is not set.
 *   - else: |out| gets all of stdout (cut at |out_len| - 1) once the command exited, and
 *     |*status| its wait status.
 * At most |timeout_ms|, then the group is killed and WEFT_EAGAIN returned (|out| holds what
 * came). WEFT_EIO when it cannot start or (|first_line|) ended without a line. Every process it
 * started is reaped before it returns. */
WEFT_MUST_USE int agent_proc_run(unsigned uid, const char *cmd, bool first_line, int timeout_ms,
                                 char *out, size_t out_len, int *status);

#endif
