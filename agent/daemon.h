/* agent/daemon.h: weft-agent, the process (issue 5). agent/main.c reads the flags into struct
 * agent_daemon_opts and calls agent_daemon_run, which runs two threads:
 *
 *  - the CA thread keeps the node joined (agent/node.h: a join token on the first start, or
 *    the pod's service account token, re-read from its file at each join; then RenewNode at
 *    half-life +-10 %, with backoff), holds a WatchNode stream to the CA
 *    (bundle and entries; the bundle sequence acknowledged on the stream; reconnect with
 *    backoff, resuming from the full snapshot the CA sends) and mints the workload SVIDs due
 *    (agent/svids.h);
 *  - the main thread serves the SPIFFE Workload API (agent/wlapi.h) on the unix socket,
 *    attesting each caller with the unix attestor and, when configured, the k8s one, and
 *    pushes new snapshots to open streams whenever the CA thread changed what is served.
 *
 * A third thread evaluates the alerts (agent/alert.h) every second. Metrics and /ready are on
 * the HTTP admin port (lib/httpadmin). */
#ifndef WEFT_AGENT_DAEMON_H
#define WEFT_AGENT_DAEMON_H

#include <stdbool.h>

#include "agent/proxycfg.h"
#include <stdint.h>

#define AGENT_DEFAULT_STATE_DIR "/var/lib/weft-agent"
#define AGENT_DEFAULT_HTTP "127.0.0.1:9091"

struct agent_daemon_opts {
    const char *ca_addr;          /* required: "IPV4:PORT" or "[IPV6]:PORT" */
    const char *trust_domain;     /* required */
    const char *state_dir;        /* AGENT_DEFAULT_STATE_DIR */
    const char *bootstrap_bundle; /* needed until the first join stored the CA's bundle */
    const char *join_token;       /* the token itself, or */
    const char *join_token_file;  /* a file holding it, or */
    const char *psat_token_file;  /* a projected service account token, re-read at each join */
    const char *socket;           /* AGENT_WLAPI_DEFAULT_SOCKET */
    const char *http;             /* AGENT_DEFAULT_HTTP; "" disables */
    /* the k8s attestor, when |kubelet_url| is set */
    const char *kubelet_url;
    const char *kubelet_token_file;
    const char *kubelet_ca;
    bool kubelet_insecure;
    /* pages (agent/alert.h): a command and/or an Alertmanager v2 URL */
    const char *alert_command;
    const char *alert_url;
    double alert_runway_fraction; /* 0: a quarter of the SVID's lifetime */
    unsigned alert_failures;      /* 0: 3 in a row */
    /* outside Kubernetes: the ranges workloads' directory claims must lie in (proxycfg.h) */
    struct weft_cidr claim_cidrs[AGENT_CLAIM_MAX_CIDRS];
    size_t num_claim_cidrs;
};

/* agent_daemon_run runs the agent until SIGTERM or SIGINT; returns the exit status (0 after a
 * clean stop, 1 when it could not start, saying why on stderr). */
int agent_daemon_run(const struct agent_daemon_opts *o);

#endif
