/* proxy/mesh_app.c: a tiny application for the mesh test, run inside a pod's network
 * namespace under the app's uid:
 *   mesh_app serve IP PORT     accept connections; print "accepted FROM" for each and echo
 *                              what it sends until it closes (runs until killed)
 *   mesh_app serve-pp IP PORT  the same, but each connection starts with a PROXY protocol v2
 *                              header (proxy/proxyv2.h): print "pp src=IP id=SPIFFE_ID" for it
 *   mesh_app call IP PORT MSG  connect, send MSG, print what comes back ("got MSG"), or "eof"
 *                              or "error: ..." (10 s at most)
 *   mesh_app hold IP PORT S    connect, send one message, read its echo ("got ..."), then hold
 *                              the connection open and print "closed after N s" when the other
 *                              end closes it, or "held S s" */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>

#include "proxy/proxyv2.h"

static int addr(struct sockaddr_in *a, const char *ip, const char *port)
{
    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(port));
    return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

/* echo_pp reads the PROXY protocol v2 header at the start of |c|, prints what it says, then
 * echoes the rest. */
static void echo_pp(int c)
{
    uint8_t buf[1024];
    size_t have = 0;
    struct proxyv2 pp;
    int rc = WEFT_EAGAIN;
    while (rc == WEFT_EAGAIN && have < sizeof(buf)) {
        ssize_t n = read(c, buf + have, sizeof(buf) - have);
        if (n <= 0) {
            return;
        }
        have += (size_t)n;
        CBS cbs;
        CBS_init(&cbs, buf, have);
        rc = proxyv2_decode(&cbs, &pp);
    }
    if (rc != WEFT_OK) {
        printf("pp invalid: %s\n", rc == WEFT_EPROTO ? pp.reason : "too long");
        fflush(stdout);
        return;
    }
    char ip[INET_ADDRSTRLEN] = "?";
    if (pp.src.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&pp.src)->sin_addr, ip, sizeof(ip));
    }
    printf("pp src=%s id=%.*s\n", ip, (int)pp.spiffe_id_len,
           pp.spiffe_id != NULL ? (const char *)pp.spiffe_id : "");
    fflush(stdout);
    size_t rest = have - pp.header_len;
    if (rest > 0 && write(c, buf + pp.header_len, rest) != (ssize_t)rest) {
        return;
    }
    ssize_t n;
    while ((n = read(c, buf, sizeof(buf))) > 0 && write(c, buf, (size_t)n) == n) {
    }
}

static int serve(const struct sockaddr_in *a, bool pp)
{
    signal(SIGCHLD, SIG_IGN); /* the echoing children reap themselves */
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)a, sizeof(*a)) != 0 || listen(fd, 16) != 0) {
        printf("error: %s\n", strerror(errno));
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        int c = accept(fd, (struct sockaddr *)&peer, &len);
        if (c < 0) {
            continue;
        }
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
        printf("accepted %s\n", ip);
        fflush(stdout);
        if (fork() == 0) { /* echo until the caller is done, while the parent accepts more */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (pp) {
                echo_pp(c);
                _exit(0);
            }
            char buf[512];
            ssize_t n;
            while ((n = read(c, buf, sizeof(buf))) > 0 && write(c, buf, (size_t)n) == n) {
            }
            _exit(0);
        }
        close(c);
    }
}

static int call(const struct sockaddr_in *a, const char *msg)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) != 0 ||
        write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg)) {
        printf("error: %s\n", strerror(errno));
        return 1;
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        printf("got %s\n", buf);
        return 0;
    }
    printf(n == 0 ? "eof\n" : "error: %s\n", strerror(errno));
    return 1;
}

static int hold(const struct sockaddr_in *a, int seconds)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64];
    ssize_t n;
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) != 0 || write(fd, "held", 4) != 4 ||
        (n = read(fd, buf, sizeof(buf) - 1)) <= 0) {
        printf("error: %s\n", strerror(errno));
        return 1;
    }
    buf[n] = '\0';
    printf("got %s\n", buf);
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = read(fd, buf, sizeof(buf)); /* nothing more comes, unless the mesh cuts the connection */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (n < 0) {
        printf("held %d s\n", seconds);
    } else {
        printf("closed after %ld s\n", (long)(t1.tv_sec - t0.tv_sec));
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a;
    if (argc >= 4 && addr(&a, argv[2], argv[3]) == 0) {
        if (strcmp(argv[1], "serve") == 0 || strcmp(argv[1], "serve-pp") == 0) {
            return serve(&a, strcmp(argv[1], "serve-pp") == 0);
        }
        if (strcmp(argv[1], "call") == 0 && argc == 5) {
            return call(&a, argv[4]);
        }
        if (strcmp(argv[1], "hold") == 0 && argc == 5) {
            return hold(&a, atoi(argv[4]));
        }
    }
    fprintf(stderr, "usage: mesh_app serve IP PORT | call IP PORT MSG\n");
    return 2;
}
