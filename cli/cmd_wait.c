/* weftctl wait-ready: poll a daemon's readiness page until it answers 200 (the injector's
 * postStart hook, so that an app container starts only once its proxy is ready). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/internal.h"
#include "lib/httpclient/httpclient.h"

#define WAIT_POLL_MS 200
#define WAIT_REQUEST_MS 1000    /* the longest one poll may take */
#define WAIT_MAX_TIMEOUT_S 3600 /* --timeout-s */
#define WAIT_DEFAULT_TIMEOUT_S 60
#define WAIT_MAX_ADDR 256
#define WAIT_MAX_BODY 4096

static const char usage[] =
    "usage: weftctl wait-ready --addr HOST:PORT [--timeout-s S] [--path /ready]\n"
    "\n"
    "Polls GET http://HOST:PORT/ready every 200 ms (each try given at most 1 s) until it\n"
    "answers 200, for at most --timeout-s seconds (default 60, at most 3600). HOST is a name,\n"
    "an IPv4 address or [IPv6]; weft-proxy serves /ready on its admin port (127.0.0.1:15000)\n"
    "and on its probe port (--probe-listen, 15021). The injector runs it as the proxy\n"
    "container's postStart hook on clusters without native sidecars:\n"
    "  weftctl wait-ready --addr 127.0.0.1:15021\n"
    "\n"
    "Exit: 0 ready; 1 not ready by the deadline (what it last got is said on stderr); 2 usage.\n";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* addr_ok says whether |s| looks like HOST:PORT: no scheme, path, spaces or control bytes. */
static bool addr_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > WAIT_MAX_ADDR || strchr(s, ':') == NULL) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@') {
            return false;
        }
    }
    return true;
}

static bool path_ok(const char *s)
{
    if (s[0] != '/' || strlen(s) > 1024) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* first_line copies the first line of |body| into |out|, printable bytes only. */
static void first_line(char *out, size_t out_len, const uint8_t *body, size_t body_len)
{
    size_t n = 0;
    for (size_t i = 0; i < body_len && body[i] != '\n' && n + 1 < out_len && n < 200; i++) {
        out[n++] = body[i] >= 0x20 && body[i] < 0x7f ? (char)body[i] : '?';
    }
    out[n] = '\0';
}

int cmd_wait_ready(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"timeout-s", required_argument, NULL, 't'},
        {"path", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *addr = NULL, *path = "/ready";
    long timeout_s = WAIT_DEFAULT_TIMEOUT_S;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            addr = optarg;
            break;
        case 't': {
            char *end;
            timeout_s = strtol(optarg, &end, 10);
            if (*end != '\0' || end == optarg || timeout_s < 1 || timeout_s > WAIT_MAX_TIMEOUT_S) {
                fprintf(stderr, "weftctl wait-ready: --timeout-s %s: a number from 1 to %d\n",
                        optarg, WAIT_MAX_TIMEOUT_S);
                return EXIT_USAGE;
            }
            break;
        }
        case 'p':
            path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_VALID;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "weftctl wait-ready: unexpected argument %s\n\n%s", argv[optind], usage);
        return EXIT_USAGE;
    }
    if (addr == NULL || !addr_ok(addr)) {
        fprintf(stderr, "weftctl wait-ready: --addr %s: want HOST:PORT, e.g. 127.0.0.1:15021\n",
                addr != NULL ? addr : "(missing)");
        return EXIT_USAGE;
    }
    if (!path_ok(path)) {
        fprintf(stderr,
                "weftctl wait-ready: --path %s: want a path starting with '/', visible ASCII\n",
                path);
        return EXIT_USAGE;
    }
    char url[HTTPCLIENT_MAX_URL];
    snprintf(url, sizeof(url), "http://%s%s", addr, path);
    char last[320] = "no answer yet";
    int64_t start = now_ms(), deadline = start + timeout_s * 1000;
    for (;;) {
        int64_t left = deadline - now_ms();
        struct httpclient_request req = {
            .method = "GET",
            .url = url,
            .timeout_ms = left < WAIT_REQUEST_MS ? (left > 1 ? (int)left : 1) : WAIT_REQUEST_MS,
            .max_body = WAIT_MAX_BODY,
        };
        struct httpclient_response resp = {0};
        char err[256];
        int rc = httpclient_do(&req, &resp, err, sizeof(err));
        if (rc == WEFT_OK && resp.status == 200) {
            httpclient_response_free(&resp);
            printf("%s: ready after %.1f s\n", url, (double)(now_ms() - start) / 1000.0);
            return EXIT_VALID;
        }
        if (rc == WEFT_OK) {
            char line[210];
            first_line(line, sizeof(line), resp.body, resp.body_len);
            snprintf(last, sizeof(last), "status %d: %s", resp.status, line);
        } else if (rc == WEFT_EINVAL) {
            fprintf(stderr, "weftctl wait-ready: %s: %s\n", url, err);
            return EXIT_USAGE;
        } else if (req.timeout_ms == WAIT_REQUEST_MS || strcmp(last, "no answer yet") == 0) {
            /* a try the deadline cut short says less than the one before it */
            snprintf(last, sizeof(last), "%s", err);
        }
        httpclient_response_free(&resp);
        left = deadline - now_ms();
        if (left <= 0) {
            break;
        }
        struct timespec ts = {0, (long)(left < WAIT_POLL_MS ? left : WAIT_POLL_MS) * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "weftctl wait-ready: %s not ready after %ld s; last: %s\n", url, timeout_s,
            last);
    return EXIT_INVALID;
}
