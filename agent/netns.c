/* agent/netns.c: see netns.h. */
#include "agent/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
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
        /* a loopback address is every namespace's own, and a down interface carries nothing */
        if (i->ifa_addr != NULL && (i->ifa_flags & IFF_UP) != 0 &&
            (i->ifa_flags & IFF_LOOPBACK) == 0) {
            keep(l->out, i->ifa_addr);
        }
    }
    freeifaddrs(ifa);
    return NULL;
}

/* same_ns reports whether |fd| and the file |path| are the same namespace; -1 if |path| cannot
 * be read. */
static int same_ns(int fd, const char *path)
{
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0) {
        return -1;
    }
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int agent_netns_addresses(const char *proc, pid_t pid, struct agent_netns_addrs *out, char *err,
                          size_t err_len)
{
    memset(out, 0, sizeof(*out));
    char path[128], node_net[128], node_user[128];
    snprintf(path, sizeof(path), "%.100s/%d/ns/net", proc, (int)pid);
    snprintf(node_net, sizeof(node_net), "%.100s/self/ns/net", proc);
    snprintf(node_user, sizeof(node_user), "%.100s/self/ns/user", proc);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_len, "%s: %s", path, strerror(e));
        return e == ENOENT || e == ESRCH ? WEFT_ENOTFOUND : WEFT_EIO;
    }
    int node = same_ns(fd, node_net);
    int owner = ioctl(fd, NS_GET_USERNS);
    int owned_by_node = owner >= 0 ? same_ns(owner, node_user) : -1;
    if (owner >= 0) {
        close(owner);
    }
    if (node < 0 || owned_by_node < 0) {
        int e = errno;
        snprintf(err, err_len, "%s: cannot compare with the agent's own namespaces: %s", path,
                 strerror(e));
        close(fd);
        return WEFT_EIO;
    }
    out->node = node == 1;
    out->foreign_owner = owned_by_node == 0;
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
