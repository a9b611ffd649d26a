/* test/testlib/net.c: see net.h. */
#include "test/testlib/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

int testlib_listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int testlib_netns_own(const char *ipv4)
{
    struct ifreq ifr = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, ipv4, &sin->sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    if (unshare(CLONE_NEWNET) != 0) {
        return -1;
    }
    /* a TUN interface: made with ioctls alone (no netlink, no iproute2), and it lives as long
     * as its descriptor, left open on purpose for the life of the process */
    int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq t = {.ifr_flags = IFF_TUN | IFF_NO_PI};
    snprintf(t.ifr_name, sizeof(t.ifr_name), "weft0");
    if (tun < 0 || ioctl(tun, TUNSETIFF, &t) != 0) {
        return -1;
    }
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t.ifr_name);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = -1;
    if (s >= 0 && ioctl(s, SIOCSIFADDR, &ifr) == 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (s >= 0) {
        int saved = errno;
        close(s);
        errno = saved;
    }
    return rc;
}

int testlib_http_unix(const char *sock, const char *method, const char *path, char *buf, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", sock);
    buf[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char req[256];
        int n =
            snprintf(req, sizeof(req), "%.8s %.128s HTTP/1.1\r\nHost: test\r\n\r\n", method, path);
        if (write(fd, req, (size_t)n) == n) {
            ssize_t r;
            while (got < len - 1 && (r = read(fd, buf + got, len - 1 - got)) > 0) {
                got += (size_t)r;
            }
        }
    }
    close(fd);
    buf[got] = '\0';
    int status;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    return status;
}
