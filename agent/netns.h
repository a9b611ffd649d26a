/* agent/netns.h: the IP addresses configured in the network namespace of a local process, read
 * through /proc/PID/ns/net (issue 5: outside Kubernetes, an address a workload claims for the
 * mesh directory must be configured in its own network namespace), and who owns that
 * namespace.
 *
 * A short-lived thread enters the namespace (setns, which needs CAP_SYS_ADMIN: the agent runs as
 * root) and lists its interfaces with getifaddrs; only that thread ever changes namespace, and
 * it ends at once. "The node's" namespaces are the agent's own: it runs in the host's network
 * and user namespaces (outside Kubernetes, where these checks apply, it runs on the host). */
#ifndef WEFT_AGENT_NETNS_H
#define WEFT_AGENT_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/base/err.h"
#include "lib/base/netaddr.h"

#define AGENT_NETNS_MAX_ADDRS 64 /* addresses kept of one namespace; more are left out */

struct agent_netns_addrs {
    bool node;          /* the namespace is the node's (the agent's own) */
    bool foreign_owner; /* owned by a user namespace other than the node's: an unprivileged
                           process may have made it and put any address in it */
    size_t num;         /* addresses in |ip|: of interfaces that are up and not loopback */
    size_t more;        /* addresses beyond AGENT_NETNS_MAX_ADDRS, not kept */
    struct weft_ip ip[AGENT_NETNS_MAX_ADDRS];
};

/* agent_netns_addresses fills |out| for the network namespace of |pid| under |proc| ("/proc").
 * WEFT_ENOTFOUND when the process is gone, WEFT_EIO (|err| says why) when its namespace cannot
 * be entered or listed. */
WEFT_MUST_USE int agent_netns_addresses(const char *proc, pid_t pid, struct agent_netns_addrs *out,
                                        char *err, size_t err_len);

/* agent_netns_has reports whether |ip| is among |a|'s addresses. */
bool agent_netns_has(const struct agent_netns_addrs *a, const struct weft_ip *ip);

#endif
