/* test/testlib/http_app.c: see http_app.h. */
#include "test/testlib/http_app.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "test/testlib/net.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char last_head[8192];

void http_app_note_head(const char *head)
{
    pthread_mutex_lock(&mu);
    snprintf(last_head, sizeof(last_head), "%s", head);
    pthread_mutex_unlock(&mu);
}

void http_app_last_head(char *out, size_t len)
{
    pthread_mutex_lock(&mu);
    snprintf(out, len, "%s", last_head);
    pthread_mutex_unlock(&mu);
}

static void *serve_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char head[8192];
    size_t len = 0;
    while (len < sizeof(head) - 1) {
        ssize_t n = read(fd, head + len, sizeof(head) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        head[len] = '\0';
        if (strstr(head, "\r\n\r\n") != NULL || (len >= 4 && strncmp(head, "GET ", 4) != 0)) {
            break; /* a whole head, or not HTTP (a TLS ClientHello): answer at once */
        }
    }
    head[len] = '\0';
    http_app_note_head(head);
    static char big[10000];
    memset(big, 'x', sizeof(big));
    const char *status = "200 OK", *body = "fine\n", *extra = "";
    size_t body_len = 5;
    if (strncmp(head, "GET /bad ", 9) == 0) {
        status = "503 Service Unavailable";
        body = "sick\n";
    } else if (strncmp(head, "GET /slow ", 10) == 0) {
        sleep(3);
    } else if (strncmp(head, "GET /redirect ", 14) == 0) {
        status = "302 Found";
        extra = "Location: http://127.0.0.1:1/elsewhere\r\n";
    } else if (strncmp(head, "GET /big ", 9) == 0) {
        body = big;
        body_len = sizeof(big);
    } else if (strncmp(head, "GET /hdr ", 9) == 0 && strstr(head, "\r\nX-A: b\r\n") == NULL) {
        status = "400 Bad Request";
    }
    char out[512];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
                     body_len, extra);
    if (send(fd, out, (size_t)n, MSG_NOSIGNAL) == n) {
        (void)send(fd, body, body_len, MSG_NOSIGNAL); /* a caller that gave up: nothing to do */
    }
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd) == 0) {
            pthread_detach(t);
        } else {
            close(fd);
        }
    }
    return NULL;
}

int http_app_start(void)
{
    int port, lfd = testlib_listen_loopback(&port);
    if (lfd < 0) {
        return -1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, accept_loop, (void *)(intptr_t)lfd) != 0) {
        close(lfd);
        return -1;
    }
    pthread_detach(t);
    return port;
}
