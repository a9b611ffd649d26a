/* agent/peer.h: who is calling on the agent's unix socket, and what the unix attestor observes
 * about it (issue 5).
 *
 * SO_PEERCRED gives the pid, uid and gid the kernel recorded when the caller connected. A pid
 * can be reused once its process exits, so every observation made through /proc/PID is
 * bracketed by the process's start time (field 22 of /proc/PID/stat, in clock ticks since
 * boot): read before, compared after; a different or missing start time means another process
 * (or none) now has that pid, and the observation is thrown away. */
#ifndef WEFT_AGENT_PEER_H
#define WEFT_AGENT_PEER_H

#include <stdint.h>
#include <sys/types.h>

#include "agent/selectors.h"
#include "lib/base/err.h"

struct agent_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid;
    uint64_t start_time; /* clock ticks after boot, from /proc/PID/stat */
};

/* agent_peer_of_fd reads the credentials of the process at the other end of unix socket |fd|,
 * with its start time from |proc| ("/proc"; another root for tests). WEFT_ENOTFOUND when the
 * kernel gives no pid (the caller is in a pid namespace the agent cannot see into: run the
 * agent with hostPID) or the process is gone, WEFT_ESTALE when its pid now belongs to a
 * process of another uid. */
WEFT_MUST_USE int agent_peer_of_fd(int fd, const char *proc, struct agent_peer *out, char *err,
                                   size_t err_len);

/* agent_peer_start_time reads |pid|'s start time from |proc|/PID/stat. */
WEFT_MUST_USE int agent_peer_start_time(const char *proc, pid_t pid, uint64_t *out);

/* agent_peer_same reports whether |p|'s pid still belongs to the process that connected. */
bool agent_peer_same(const struct agent_peer *p, const char *proc);

/* agent_attest_unix adds unix:uid:N, unix:gid:N, unix:user:NAME and unix:group:NAME (when the
 * ids have names here) and unix:path:/EXE (the executable as the kernel names it; left out if
 * it was deleted, is not a plain path, or the process is in another mount namespace, where
 * the same path names another file) to |out|. WEFT_ESTALE when the pid no longer belongs
 * to the caller: nothing may then be trusted. */
WEFT_MUST_USE int agent_attest_unix(const struct agent_peer *p, const char *proc,
                                    struct agent_selectors *out, char *err, size_t err_len);

#endif
