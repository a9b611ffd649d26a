/* agent/netns.c: see netns.h. */
#include "agent/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct lister {
    int fd; /* the namespace */
    struct agent_netns_addrs *out;
    int err; /* errno of what failed, 0 if nothing */
    const char *what;
};

static void keep(struct agent_netns_addrs *out, const struct sockaddr *sa)
{
    struct weft_ip ip = {0};
    if (sa->sa_family == AF_INET) {
        memcpy(ip.bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        ip.v6 = true;
        memcpy(ip.bytes, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return;
    }
    if (agent_netns_has(out, &ip)) {
        return;
    }
    if (out->num < AGENT_NETNS_MAX_ADDRS) {
        out->ip[out->num++] = ip;
    } else {
        out->more++;
    }
}

/* list runs on a thread of its own: it enters the namespace, which no other thread does. */
static void *list(void *arg)
{
    struct lister *l = arg;
    struct ifaddrs *ifa = NULL;
    if (setns(l->fd, CLONE_NEWNET) != 0) {
        l->err = errno;
        l->what = "setns";
        return NULL;
    }
    if (getifaddrs(&ifa) != 0) {
        l->err = errno;
        l->what = "getifaddrs";
        return NULL;
    }
    for (struct ifaddrs *i = ifa; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr != NULL) {
            keep(l->out, i->ifa_addr);
        }
    }
    freeifaddrs(ifa);
    return NULL;
}

int agent_netns_addresses(const char *proc, pid_t pid, struct agent_netns_addrs *out, char *err,
                          size_t err_len)
{
    memset(out, 0, sizeof(*out));
    char path[128];
    snprintf(path, sizeof(path), "%.100s/%d/ns/net", proc, (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return errno == ENOENT || errno == ESRCH ? WEFT_ENOTFOUND : WEFT_EIO;
    }
    struct stat theirs, ours;
    char self[128];
    snprintf(self, sizeof(self), "%.100s/self/ns/net", proc);
    if (fstat(fd, &theirs) != 0 || stat(self, &ours) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return WEFT_EIO;
    }
    if (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino) {
        out->own = true;
        close(fd);
        return WEFT_OK;
    }
    struct lister l = {.fd = fd, .out = out};
    pthread_t t;
    int rc = pthread_create(&t, NULL, list, &l);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start a thread: %s", strerror(rc));
        close(fd);
        return WEFT_EIO;
    }
    pthread_join(t, NULL);
    close(fd);
    if (l.err != 0) {
        snprintf(err, err_len, "%s: %s: %s%s", path, l.what, strerror(l.err),
                 l.err == EPERM ? " (the agent needs CAP_SYS_ADMIN to read another namespace)"
                                : "");
        return WEFT_EIO;
    }
    return WEFT_OK;
}

bool agent_netns_has(const struct agent_netns_addrs *a, const struct weft_ip *ip)
{
    for (size_t i = 0; i < a->num; i++) {
        if (a->ip[i].v6 == ip->v6 && memcmp(a->ip[i].bytes, ip->bytes, ip->v6 ? 16 : 4) == 0) {
            return true;
        }
    }
    return false;
}
