/* agent/peer.c: see peer.h. */
#include "agent/peer.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int agent_peer_start_time(const char *proc, pid_t pid, uint64_t *out)
{
    char path[128], buf[1024];
    snprintf(path, sizeof(path), "%.100s/%d/stat", proc, (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return WEFT_ENOTFOUND;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return WEFT_ENOTFOUND;
    }
    buf[n] = '\0';
    /* "PID (COMM) STATE PPID ...": COMM may hold anything, so count fields after the last ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL) {
        return WEFT_EPROTO;
    }
    p++;
    for (int field = 3; field <= 22; field++) { /* field 3 is STATE, 22 is starttime */
        while (*p == ' ') {
            p++;
        }
        if (field == 22) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p || errno != 0) {
                return WEFT_EPROTO;
            }
            *out = v;
            return WEFT_OK;
        }
        p = strchr(p, ' ');
        if (p == NULL) {
            return WEFT_EPROTO;
        }
    }
    return WEFT_EPROTO;
}

/* real_uid reads the real uid of |pid| from |proc|/PID/status. */
static int real_uid(const char *proc, pid_t pid, uid_t *out)
{
    char path[128];
    snprintf(path, sizeof(path), "%.100s/%d/status", proc, (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return WEFT_ENOTFOUND;
    }
    char line[256];
    int rc = WEFT_EPROTO;
    unsigned v;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Uid:\t%u", &v) == 1) {
            *out = (uid_t)v;
            rc = WEFT_OK;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* same_mount_ns: |pid| sees the same files as we do, so its executable's path means the same. */
static bool same_mount_ns(const char *proc, pid_t pid)
{
    char path[128];
    snprintf(path, sizeof(path), "%.100s/%d/ns/mnt", proc, (int)pid);
    struct stat theirs, ours;
    return stat(path, &theirs) == 0 && stat("/proc/self/ns/mnt", &ours) == 0 &&
           theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev;
}

int agent_peer_of_fd(int fd, const char *proc, struct agent_peer *out, char *err, size_t err_len)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        snprintf(err, err_len, "SO_PEERCRED: %s", strerror(errno));
        return WEFT_EIO;
    }
    if (cred.pid <= 0) {
        snprintf(err, err_len,
                 "the caller's pid is not visible here (another pid namespace: run the agent "
                 "in the host's, hostPID)");
        return WEFT_ENOTFOUND;
    }
    *out = (struct agent_peer){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
    if (agent_peer_start_time(proc, cred.pid, &out->start_time) != WEFT_OK) {
        snprintf(err, err_len, "pid %d: gone before it could be attested", (int)cred.pid);
        return WEFT_ENOTFOUND;
    }
    /* The start time is read at accept, not at connect: if the caller exited in between and
     * its pid went to another process, that one's uid is very likely another. A pid-reuse race
     * within one uid remains (SO_PEERPIDFD, Linux 6.5, would close it). */
    uid_t now_uid;
    if (real_uid(proc, cred.pid, &now_uid) != WEFT_OK || now_uid != cred.uid) {
        snprintf(err, err_len, "pid %d: no longer the process that connected", (int)cred.pid);
        return WEFT_ESTALE;
    }
    return WEFT_OK;
}

bool agent_peer_same(const struct agent_peer *p, const char *proc)
{
    uint64_t now;
    return agent_peer_start_time(proc, p->pid, &now) == WEFT_OK && now == p->start_time;
}

int agent_attest_unix(const struct agent_peer *p, const char *proc, struct agent_selectors *out,
                      char *err, size_t err_len)
{
    struct agent_selectors got = {0};
    int rc = agent_selectors_add(&got, "unix:uid:%u", (unsigned)p->uid);
    rc = rc == WEFT_OK ? agent_selectors_add(&got, "unix:gid:%u", (unsigned)p->gid) : rc;
    char buf[4096];
    struct passwd pw, *pwp = NULL;
    if (rc == WEFT_OK && getpwuid_r(p->uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp != NULL) {
        rc = agent_selectors_add(&got, "unix:user:%s", pw.pw_name);
    }
    struct group gr, *grp = NULL;
    if (rc == WEFT_OK && getgrgid_r(p->gid, &gr, buf, sizeof(buf), &grp) == 0 && grp != NULL) {
        rc = agent_selectors_add(&got, "unix:group:%s", gr.gr_name);
    }
    char link[128], exe[AGENT_SELECTOR_MAX];
    snprintf(link, sizeof(link), "%.100s/%d/exe", proc, (int)p->pid);
    ssize_t n = readlink(link, exe, sizeof(exe) - 1);
    /* a path inside another mount namespace (a container) names another file: left out */
    if (rc == WEFT_OK && n > 0 && exe[0] == '/' && same_mount_ns(proc, p->pid)) {
        exe[n] = '\0';
        if (strstr(exe, " (deleted)") == NULL &&
            agent_selectors_add(&got, "unix:path:%s", exe) != WEFT_OK) {
            /* a path with a space or over a selector's length: no unix:path to match */
        }
    }
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "pid %d: cannot express what was observed as selectors",
                 (int)p->pid);
        return rc;
    }
    if (!agent_peer_same(p, proc)) {
        snprintf(err, err_len, "pid %d: the process changed while it was attested", (int)p->pid);
        return WEFT_ESTALE;
    }
    for (size_t i = 0; i < got.num; i++) {
        if (agent_selectors_add(out, "%s", got.sel[i]) != WEFT_OK) {
            snprintf(err, err_len, "too many selectors");
            return WEFT_ELIMIT;
        }
    }
    return WEFT_OK;
}
