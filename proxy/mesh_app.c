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
 *                              end closes it, or "held S s"
 *   mesh_app serve-banner IP PORT
 *                              a server-first protocol (SMTP-like): each connection is greeted
 *                              with the line "220 mesh_app banner" before it says anything, then
 *                              echoed; "accepted FROM" for each
 *   mesh_app banner-call IP PORT MSG
 *                              connect and send nothing until the greeting has come: print
 *                              "banner LINE", then send MSG and print "got ..." (10 s at most
 *                              for each)
 *   mesh_app stream IP PORT S [STOP]
 *                              connect, print "stream started", then for S seconds (or until
 *                              the file STOP exists) keep sending a known byte pattern (about
 *                              200 KB/s, never more than 64 KiB ahead of the echo) and check
 *                              every echoed byte; then half-close,
 *                              read the rest and print "stream done sent=N echoed=N
 *                              max_gap_ms=G" (G: the longest wait for an echo while one was
 *                              due), or "stream broken after T s: WHY sent=N echoed=N"
 *   mesh_app converse IP PORT FILE
 *                              connect, send "one" and print "got one"; wait (at most 60 s)
 *                              until FILE exists, send "two" and print "got two" (or "eof",
 *                              "error: ..."), then close and print "closed" */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
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

static const char banner_line[] = "220 mesh_app banner\r\n";

enum serve_kind { SERVE_ECHO, SERVE_PP, SERVE_BANNER };

static int serve(const struct sockaddr_in *a, enum serve_kind kind)
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
            if (kind == SERVE_PP) {
                echo_pp(c);
                _exit(0);
            }
            /* a server-first protocol speaks before the client has said anything */
            if (kind == SERVE_BANNER &&
                write(c, banner_line, strlen(banner_line)) != (ssize_t)strlen(banner_line)) {
                _exit(1);
            }
            char buf[16384];
            ssize_t n;
            while ((n = read(c, buf, sizeof(buf))) > 0 && write(c, buf, (size_t)n) == n) {
            }
            _exit(0);
        }
        close(c);
    }
}

/* dial connects a blocking socket with 10 s timeouts on its reads and writes; -1 (said on
 * stdout) when it cannot. */
static int dial(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) != 0) {
        printf("error: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* exchange sends |msg| on |fd| and prints the answer ("got ..."), "eof" or "error: ...". */
static int exchange(int fd, const char *msg)
{
    if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg)) {
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

static int call(const struct sockaddr_in *a, const char *msg)
{
    int fd = dial(a);
    return fd < 0 ? 1 : exchange(fd, msg);
}

static int banner_call(const struct sockaddr_in *a, const char *msg)
{
    int fd = dial(a);
    if (fd < 0) {
        return 1;
    }
    char line[256];
    size_t have = 0;
    while (have < sizeof(line) - 1 && (have == 0 || line[have - 1] != '\n')) {
        ssize_t n = read(fd, line + have, 1); /* the greeting only: the echo comes after */
        if (n <= 0) {
            printf(n == 0 ? "eof before the banner\n" : "error: %s\n", strerror(errno));
            return 1;
        }
        have++;
    }
    while (have > 0 && (line[have - 1] == '\n' || line[have - 1] == '\r')) {
        have--;
    }
    printf("banner %.*s\n", (int)have, line);
    fflush(stdout);
    return exchange(fd, msg);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint8_t pattern_at(uint64_t off) { return (uint8_t)(off % 251); }

#define STREAM_CHUNK 4096
#define STREAM_AHEAD (64 * 1024)
#define STREAM_PACE_MS 20

/* stream_read takes what the echo has for us and checks it against the pattern: 1 read some,
 * 0 nothing now, -1 EOF or error (|why| says). */
static int stream_read(int fd, uint64_t *echoed, const char **why)
{
    uint8_t buf[16384];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return 0;
    }
    if (n <= 0) {
        *why = n == 0 ? "closed by the other end" : strerror(errno);
        return -1;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != pattern_at(*echoed + (uint64_t)i)) {
            *why = "the echo differs from what was sent";
            return -1;
        }
    }
    *echoed += (uint64_t)n;
    return 1;
}

static int stream(const struct sockaddr_in *a, int seconds, const char *stop)
{
    int fd = dial(a);
    if (fd < 0) {
        return 1;
    }
    printf("stream started\n");
    fflush(stdout);
    uint64_t sent = 0, echoed = 0;
    int64_t start = now_ms(), end = start + (int64_t)seconds * 1000, next_send = start;
    int64_t waiting_since = -1, max_gap = 0; /* while an echo is due */
    const char *why = NULL;
    bool done_sending = false;
    int64_t give_up = end + 10000; /* for the rest of the echo after the half-close */
    for (;;) {
        int64_t now = now_ms();
        if (!done_sending && (now >= end || (stop != NULL && access(stop, F_OK) == 0))) {
            shutdown(fd, SHUT_WR); /* the echo server closes after the last byte */
            done_sending = true;
        }
        if (now >= give_up) {
            why = "the rest of the echo never came";
            break;
        }
        if (!done_sending && now >= next_send && sent - echoed < STREAM_AHEAD) {
            uint8_t chunk[STREAM_CHUNK];
            for (size_t i = 0; i < sizeof(chunk); i++) {
                chunk[i] = pattern_at(sent + i);
            }
            ssize_t n = send(fd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN) {
                why = strerror(errno);
                break;
            }
            sent += n > 0 ? (uint64_t)n : 0;
            next_send = now + STREAM_PACE_MS;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        (void)poll(&pfd, 1, 5);
        int r = stream_read(fd, &echoed, &why);
        now = now_ms();
        if (r < 0) {
            if (done_sending && why != NULL && strcmp(why, "closed by the other end") == 0) {
                why = echoed == sent ? NULL : "closed before the whole echo came back";
            }
            break;
        }
        if (r > 0 || echoed == sent) {
            if (waiting_since >= 0 && now - waiting_since > max_gap) {
                max_gap = now - waiting_since;
            }
            waiting_since = echoed < sent ? now : -1;
        } else if (waiting_since < 0) {
            waiting_since = now;
        }
    }
    close(fd);
    if (why != NULL) {
        printf("stream broken after %.1f s: %s sent=%llu echoed=%llu\n",
               (double)(now_ms() - start) / 1000, why, (unsigned long long)sent,
               (unsigned long long)echoed);
        return 1;
    }
    printf("stream done sent=%llu echoed=%llu max_gap_ms=%lld\n", (unsigned long long)sent,
           (unsigned long long)echoed, (long long)max_gap);
    return 0;
}

static int converse(const struct sockaddr_in *a, const char *file)
{
    int fd = dial(a);
    if (fd < 0 || exchange(fd, "one") != 0) {
        return 1;
    }
    fflush(stdout);
    for (int i = 0; i < 600 && access(file, F_OK) != 0; i++) {
        usleep(100 * 1000);
    }
    int rc = exchange(fd, "two");
    close(fd);
    printf("closed\n");
    return rc;
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
        if (strcmp(argv[1], "serve") == 0) {
            return serve(&a, SERVE_ECHO);
        }
        if (strcmp(argv[1], "serve-pp") == 0) {
            return serve(&a, SERVE_PP);
        }
        if (strcmp(argv[1], "serve-banner") == 0) {
            return serve(&a, SERVE_BANNER);
        }
        if (strcmp(argv[1], "banner-call") == 0 && argc == 5) {
            return banner_call(&a, argv[4]);
        }
        if (strcmp(argv[1], "stream") == 0 && (argc == 5 || argc == 6)) {
            return stream(&a, atoi(argv[4]), argc == 6 ? argv[5] : NULL);
        }
        if (strcmp(argv[1], "converse") == 0 && argc == 5) {
            return converse(&a, argv[4]);
        }
        if (strcmp(argv[1], "call") == 0 && argc == 5) {
            return call(&a, argv[4]);
        }
        if (strcmp(argv[1], "hold") == 0 && argc == 5) {
            return hold(&a, atoi(argv[4]));
        }
    }
    fprintf(stderr, "usage: mesh_app serve|serve-pp|serve-banner IP PORT | "
                    "call|banner-call IP PORT MSG | hold IP PORT SECONDS | "
                    "stream IP PORT SECONDS [STOP] | "
                    "converse IP PORT FILE\n");
    return 2;
}
