/* weftctl inject: adds weft's sidecar to the workloads of a multi-document YAML file. The work
 * is k8s/inject.c's, the same an admission webhook does; this file reads, reports and writes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "k8s/inject.h"
#include "k8s/yamljson.h"
#include "lib/base/file.h"

#define MAX_LIST_DEPTH 4 /* v1 List inside v1 List, ... */

static const char usage[] =
    "usage: weftctl inject -f IN.yaml [-o OUT.yaml] [--native-sidecar=true|false] [--image IMG]\n"
    "\n"
    "Adds weft's sidecar to every Pod and to the pod template of every Deployment, StatefulSet,\n"
    "DaemonSet, ReplicaSet, Job and CronJob of a YAML file (several documents; a v1 List's\n"
    "items too), and writes all the documents, injected or not, to OUT.yaml or standard output.\n"
    "Every other object and field is written back with the same keys, order and values, but\n"
    "YAML comments, anchors and formatting are lost, and empty documents are dropped.\n"
    "  -f, --filename IN.yaml   the input; - is standard input\n"
    "  -o, --output OUT.yaml    the output (written whole, or not at all); default stdout\n"
    "  --native-sidecar=BOOL    weft-proxy as a native sidecar (an init container with\n"
    "                           restartPolicy Always; Kubernetes 1.29+), the default; false\n"
    "                           makes it the first container, started before the app by a\n"
    "                           postStart hook (`weftctl wait-ready`)\n"
    "  --image IMG              the image of weft-init and weft-proxy\n"
    "                           (default " K8S_INJECT_DEFAULT_IMAGE ")\n"
    "\n"
    "Injected: init container weft-init (iptables install, then check --self-test: the pod\n"
    "fails to start when the redirect does not work), weft-proxy (uid 1337), volumes\n"
    "weft-agent-socket (hostPath /run/weft, read-only) and weft-init-tmp, annotation\n"
    "weft.dev/status. The app containers' httpGet probes are rewritten to\n"
    "GET :15021/app-health/<container>/<livez|readyz|startupz>, which weft-proxy forwards.\n"
    "\n"
    "Left as they are: objects already injected (weft.dev/status), pods labelled or annotated\n"
    "weft.dev/inject: disabled, hostNetwork pods, namespaces kube-system and weft-system, and\n"
    "every other kind. Each is named on stderr with the reason.\n"
    "\n"
    "Pod (template) annotations:\n"
    "  weft.dev/inject: enabled|disabled\n"
    "  weft.dev/exclude-inbound-ports: \"8081,9000-9010\"   (15021 is always excluded)\n"
    "  weft.dev/exclude-outbound-ports: \"5432\"\n"
    "  weft.dev/exclude-outbound-cidrs: \"10.0.0.0/8,fd00::/8\"\n"
    "  weft.dev/proxy-cpu-request (10m), weft.dev/proxy-memory-request (24Mi),\n"
    "  weft.dev/proxy-memory-limit (64Mi): resource quantities\n"
    "  weft.dev/native-sidecar: \"true\"|\"false\"  (wins over --native-sidecar)\n"
    "  weft.dev/rewrite-probes: \"true\"|\"false\"  (default true)\n"
    "Quote annotation values: YAML reads an unquoted yes/no/on/off/true/false as a boolean.\n"
    "\n"
    "Jobs and CronJobs without native sidecars: weft-proxy keeps running after the job's\n"
    "container ends, so the pod never completes; the job must POST\n"
    "http://127.0.0.1:15000/quitquitquit as its last step. Without native sidecars the app's own\n"
    "init containers run after weft-init and before weft-proxy: their TCP is redirected to a\n"
    "proxy not yet listening, so they have no network.\n"
    "Exit: 0 written, 1 an object cannot be injected (each reason on stderr; nothing written),\n"
    "2 usage or unreadable input.\n";

struct run {
    const struct k8s_inject_opts *opts;
    size_t num_injected, num_errors;
};

static void inject_doc(struct run *r, json_t **doc, size_t doc_index, int depth)
{
    char err[1024];
    const char *skipped;
    const char *kind = json_string_value(json_object_get(*doc, "kind"));
    if (kind != NULL && strcmp(kind, "List") == 0 && depth < MAX_LIST_DEPTH &&
        json_is_array(json_object_get(*doc, "items"))) {
        json_t *items = json_object_get(*doc, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *item = json_incref(json_array_get(items, i));
            inject_doc(r, &item, doc_index, depth + 1);
            json_array_set_new(items, i, item);
        }
        return;
    }
    if (k8s_inject_object(doc, &skipped, r->opts, err, sizeof(err)) != WEFT_OK) {
        fprintf(stderr, "weftctl: inject: document %zu: %s\n", doc_index + 1, err);
        r->num_errors++;
        return;
    }
    if (skipped == NULL) {
        r->num_injected++;
    } else if (strcmp(skipped, "not a workload") != 0) {
        const json_t *meta = json_object_get(*doc, "metadata");
        const char *name = json_string_value(json_object_get(meta, "name"));
        fprintf(stderr, "weftctl: inject: document %zu: %s %s: left alone: %s\n", doc_index + 1,
                kind != NULL ? kind : "?", name != NULL ? name : "(unnamed)", skipped);
    }
}

int cmd_inject(int argc, char **argv)
{
    static const struct option opts[] = {
        {"filename", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"native-sidecar", required_argument, NULL, 'n'},
        {"image", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct k8s_inject_opts io;
    const char *in = NULL, *out_path = NULL;
    int c;
    k8s_inject_opts_init(&io);
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            in = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'n':
            if (strcmp(optarg, "true") != 0 && strcmp(optarg, "false") != 0) {
                fprintf(stderr, "weftctl: --native-sidecar %s: use true or false\n", optarg);
                return EXIT_USAGE;
            }
            io.native_sidecar = optarg[0] == 't';
            break;
        case 'i':
            if (optarg[0] == '\0') {
                fprintf(stderr, "weftctl: --image: empty\n");
                return EXIT_USAGE;
            }
            io.image = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_VALID;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (in == NULL || optind != argc) {
        fprintf(stderr, "weftctl: inject: %s\n\n%s",
                in == NULL ? "-f IN.yaml is required" : "unexpected argument", usage);
        return EXIT_USAGE;
    }
    uint8_t *data;
    size_t len;
    int rc = cli_read(&data, &len, "-f", in);
    if (rc != EXIT_VALID) {
        return rc;
    }
    json_t *docs = NULL;
    char err[512];
    if (k8s_yaml_parse(&docs, data, len, err, sizeof(err)) != WEFT_OK) {
        fprintf(stderr, "weftctl: inject: %s: %s\n", in, err);
        free(data);
        return EXIT_INVALID;
    }
    free(data);
    struct run r = {&io, 0, 0};
    json_t *kept = json_array();
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *doc = json_incref(json_array_get(docs, i));
        if (json_is_null(doc)) {
            json_decref(doc);
            continue;
        }
        inject_doc(&r, &doc, i, 0);
        json_array_append_new(kept, doc);
    }
    json_decref(docs);
    if (r.num_errors > 0) {
        fprintf(stderr, "weftctl: inject: %zu object(s) cannot be injected; nothing written\n",
                r.num_errors);
        json_decref(kept);
        return EXIT_INVALID;
    }
    char *yaml;
    size_t yaml_len;
    rc = k8s_yaml_emit(&yaml, &yaml_len, kept);
    json_decref(kept);
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl: inject: cannot write the result as YAML: %s\n",
                weft_strerror(rc));
        return EXIT_INVALID;
    }
    rc = EXIT_VALID;
    if (out_path == NULL || strcmp(out_path, "-") == 0) {
        if (fwrite(yaml, 1, yaml_len, stdout) != yaml_len || fflush(stdout) != 0) {
            perror("weftctl: inject: stdout");
            rc = EXIT_INVALID;
        }
    } else if (weft_file_write_atomic(out_path, yaml, yaml_len, 0644) != WEFT_OK) {
        fprintf(stderr, "weftctl: inject: -o %s: cannot write it\n", out_path);
        rc = EXIT_INVALID;
    }
    free(yaml);
    if (rc == EXIT_VALID) {
        fprintf(stderr, "weftctl: inject: %zu object(s) injected\n", r.num_injected);
    }
    return rc;
}
