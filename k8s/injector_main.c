/* k8s/injector_main.c: weft-injector's command line (see `weft-injector --help`). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/webhook.h"
#include "lib/base/log.h"

static const char usage[] =
    "usage: weft-injector --listen ADDR --tls-cert FILE --tls-key FILE [options]\n"
    "\n"
    "weft's mutating admission webhook: answers the API server's AdmissionReviews for pod\n"
    "creation with the JSON Patch that adds weft-init and weft-proxy (the same injection as\n"
    "`weftctl inject`; see its --help for the annotations that steer it).\n"
    "\n"
    "  --listen ADDR            IPV4:PORT or [IPV6]:PORT (HTTPS; deploy/base uses 0.0.0.0:8443)\n"
    "  --tls-cert FILE          serving certificate, PEM, chain after it\n"
    "  --tls-key FILE           its private key, PEM\n"
    "                           Both are re-read when their mtime, size or inode changes\n"
    "                           (checked every 2 s); a new pair that does not load is logged\n"
    "                           and the old one kept.\n"
    "  --image IMG              image of weft-init and weft-proxy\n"
    "                           (default " K8S_INJECT_DEFAULT_IMAGE ")\n"
    "  --native-sidecar BOOL    true (default): weft-proxy as a native sidecar (Kubernetes\n"
    "                           1.29+); false: the first container with a postStart hook.\n"
    "                           A pod's weft.dev/native-sidecar annotation wins.\n"
    "  --log-level LEVEL        debug, info (default), warn or error\n"
    "\n"
    "Routes (HTTPS, HTTP/1.1, keep-alive):\n"
    "  POST /inject    an AdmissionReview (admission.k8s.io/v1), Content-Type application/json\n"
    "  GET /healthz    200 while the server runs\n"
    "  GET /ready      200; 503 once stopping\n"
    "  GET /metrics    Prometheus: weft_injector_reviews_total{result=injected|skipped|\n"
    "                  refused|bad-request}, weft_injector_review_duration_seconds,\n"
    "                  weft_injector_connections, weft_injector_tls_reloads_total\n"
    "\n"
    "Every pod is allowed: the webhook runs with failurePolicy Fail, so an error would block\n"
    "pod creation. A pod that cannot be injected as it is (a bad weft.dev/ annotation, ...) is\n"
    "allowed without a patch, with a warning kubectl shows, a warn log line and\n"
    "result=refused. Left alone (allowed, no patch): operations other than CREATE, dry runs,\n"
    "subresources, kinds other than Pod, pods already injected (reinvocation), opted out,\n"
    "hostNetwork, namespaces kube-system and weft-system. A body that is not an AdmissionReview\n"
    "gets 400. Limits: request head 16 KiB (431), body 4 MiB (413), 10 s per request, 120 s\n"
    "idle keep-alive, 1000 requests per connection, 64 connections at once, 16 MiB of request\n"
    "bodies held at once (503 beyond).\n"
    "\n"
    "Logs: logfmt on stderr, one line per review (uid, namespace, kind, name or generateName,\n"
    "operation, result, reason, ms). On SIGTERM or SIGINT it stops accepting, lets requests in\n"
    "flight finish (10 s at most) and exits. Exit: 0 stopped, 1 could not start, 2 usage.\n";

static int parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0) {
        *out = true;
        return WEFT_OK;
    }
    if (strcmp(s, "false") == 0) {
        *out = false;
        return WEFT_OK;
    }
    return WEFT_EINVAL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"tls-cert", required_argument, NULL, 'c'},
        {"tls-key", required_argument, NULL, 'k'},
        {"image", required_argument, NULL, 'i'},
        {"native-sidecar", required_argument, NULL, 'n'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct k8s_webhook_config cfg = {0};
    k8s_inject_opts_init(&cfg.inject);
    enum weft_log_level level = WEFT_LOG_INFO;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            cfg.listen = optarg;
            break;
        case 'c':
            cfg.tls_cert = optarg;
            break;
        case 'k':
            cfg.tls_key = optarg;
            break;
        case 'i':
            if (optarg[0] == '\0') {
                fprintf(stderr, "weft-injector: --image: empty\n");
                return 2;
            }
            cfg.inject.image = optarg;
            break;
        case 'n':
            if (parse_bool(optarg, &cfg.inject.native_sidecar) != WEFT_OK) {
                fprintf(stderr, "weft-injector: --native-sidecar %s: true or false\n", optarg);
                return 2;
            }
            break;
        case 'L':
            if (strcmp(optarg, "debug") == 0) {
                level = WEFT_LOG_DEBUG;
            } else if (strcmp(optarg, "info") == 0) {
                level = WEFT_LOG_INFO;
            } else if (strcmp(optarg, "warn") == 0) {
                level = WEFT_LOG_WARN;
            } else if (strcmp(optarg, "error") == 0) {
                level = WEFT_LOG_ERROR;
            } else {
                fprintf(stderr, "weft-injector: --log-level %s: debug, info, warn or error\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc || cfg.listen == NULL || cfg.tls_cert == NULL || cfg.tls_key == NULL) {
        fprintf(stderr, "weft-injector: --listen, --tls-cert and --tls-key are required, and "
                        "nothing else\n");
        fputs(usage, stderr);
        return 2;
    }
    weft_log_set_output(stderr, level);

    /* SIGTERM and SIGINT are taken by sigwait below; the server's threads block every signal. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct k8s_webhook_server *s;
    char err[512];
    if (k8s_webhook_server_start(&s, &cfg, err, sizeof(err)) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "cannot start", 1, "err", err);
        return 1;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", k8s_webhook_port(s));
    weft_log(WEFT_LOG_INFO, "listening", 4, "listen", cfg.listen, "port", port, "image",
             cfg.inject.image, "native_sidecar", cfg.inject.native_sidecar ? "true" : "false");
    int sig;
    while (sigwait(&sigs, &sig) != 0) {
    }
    weft_log(WEFT_LOG_INFO, "stopping", 1, "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    k8s_webhook_server_stop(s);
    weft_log(WEFT_LOG_INFO, "stopped", 0);
    return 0;
}
