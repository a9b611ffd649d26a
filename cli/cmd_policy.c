/* weftctl policy check | explain: validate policy YAML, and say what it decides and why. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/spiffe/id.h"
#include "policy/explain.h"
#include "policy/policy.h"
#include "policy/snapshot.h"

#define MAX_PATHS 64
#define MAX_LABELS 64

static const char check_usage[] =
    "usage: weftctl policy check -f FILE|DIR [-f FILE|DIR ...]\n"
    "\n"
    "Validates AuthorizationPolicy, PeerAuthentication and MeshConfig objects (API version\n"
    "security.weft.dev/v1alpha1) in YAML files; a directory is read with all its *.yaml and\n"
    "*.yml files, subdirectories included. Prints each error as FILE:LINE:COLUMN: FIELD: what\n"
    "is wrong. Unknown fields, bad SPIFFE IDs, ports, actions or wildcards, and duplicate names\n"
    "in a namespace are errors.\n"
    "Exit: 0 valid, 1 any error, 2 usage.\n";

static const char explain_usage[] =
    "usage: weftctl policy explain -f FILE|DIR [-f ...] --from SPIFFE_ID|unauthenticated\n"
    "           --to-workload NAMESPACE/SERVICEACCOUNT[,LABEL=VALUE...] --port N\n"
    "           [--root-namespace NS] [--default-action ALLOW|DENY]\n"
    "           [--default-mtls PERMISSIVE|STRICT]\n"
    "\n"
    "Decides a connection as a weft proxy would, and shows every policy considered: whether it\n"
    "applies to the workload and, if it does, whether each rule matches and why not. The first\n"
    "line is the decision in its log form (decision=... policy=... rule=... reason=...).\n"
    "The mesh settings come from a MeshConfig among the files, else the defaults (root\n"
    "namespace weft-system, default action ALLOW, mTLS PERMISSIVE); the flags override both.\n"
    "Exit: 0 allow, 1 deny, 2 invalid input (bad flags, or the errors `policy check` reports).\n";

/* load loads every -f path and prints the set's errors; returns EXIT_VALID or EXIT_INVALID. */
static int load(struct policy_set *set, const char *const *paths, size_t num_paths)
{
    for (size_t i = 0; i < num_paths; i++) {
        if (policy_set_load_path(set, paths[i]) != WEFT_OK) {
            /* the errors are in the set */
        }
    }
    int rc = policy_set_finish(set);
    for (size_t i = 0; i < set->num_errors; i++) {
        fprintf(stderr, "%s\n", set->errors[i].text);
    }
    if (set->num_errors_dropped > 0) {
        fprintf(stderr, "... and %zu more errors\n", set->num_errors_dropped);
    }
    return rc == WEFT_OK ? EXIT_VALID : EXIT_INVALID;
}

static int check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *paths[MAX_PATHS];
    size_t num_paths = 0;
    int c;
    while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
        if (c == 'f' && num_paths < MAX_PATHS) {
            paths[num_paths++] = optarg;
        } else if (c == 'h') {
            fputs(check_usage, stdout);
            return EXIT_VALID;
        } else {
            fputs(check_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (num_paths == 0 || optind != argc) {
        fputs(check_usage, stderr);
        return EXIT_USAGE;
    }
    struct policy_set set;
    policy_set_init(&set);
    int rc = load(&set, paths, num_paths);
    if (rc == EXIT_VALID) {
        printf("ok: %zu AuthorizationPolicies, %zu PeerAuthentications, %s MeshConfig\n",
               set.num_authz, set.num_peerauthn, set.has_mesh ? "1" : "no");
    }
    policy_set_cleanup(&set);
    return rc;
}

/* parse_workload reads NAMESPACE/SERVICEACCOUNT[,LABEL=VALUE...] in place. */
static bool parse_workload(char *s, struct policy_workload *w, const char **keys,
                           const char **values)
{
    char *slash = strchr(s, '/');
    if (slash == NULL) {
        return false;
    }
    *slash = '\0';
    w->namespace_ = s;
    char *rest = slash + 1, *comma = strchr(rest, ',');
    if (comma != NULL) {
        *comma = '\0';
    }
    w->service_account = rest;
    w->num_labels = 0;
    w->label_keys = keys;
    w->label_values = values;
    while (comma != NULL) {
        char *label = comma + 1;
        comma = strchr(label, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        char *eq = strchr(label, '=');
        if (eq == NULL || eq == label || w->num_labels == MAX_LABELS) {
            return false;
        }
        *eq = '\0';
        keys[w->num_labels] = label;
        values[w->num_labels] = eq + 1;
        w->num_labels++;
    }
    return policy_is_valid_workload(w);
}

static int explain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"from", required_argument, NULL, 'F'},
        {"to-workload", required_argument, NULL, 'w'},
        {"port", required_argument, NULL, 'p'},
        {"root-namespace", required_argument, NULL, 'r'},
        {"default-action", required_argument, NULL, 'a'},
        {"default-mtls", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *paths[MAX_PATHS], *from = NULL, *root_ns = NULL, *action = NULL, *mtls = NULL;
    char *workload = NULL;
    size_t num_paths = 0;
    long port = -1;
    int c;
    while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'f':
            if (num_paths < MAX_PATHS) {
                paths[num_paths++] = optarg;
            }
            break;
        case 'F':
            from = optarg;
            break;
        case 'w':
            workload = optarg;
            break;
        case 'p':
            port = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || port < 1 || port > 65535) {
                fprintf(stderr, "weftctl: --port %s: not a port 1-65535\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'r':
            root_ns = optarg;
            break;
        case 'a':
            action = optarg;
            break;
        case 'm':
            mtls = optarg;
            break;
        case 'h':
            fputs(explain_usage, stdout);
            return EXIT_VALID;
        default:
            fputs(explain_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (num_paths == 0 || from == NULL || workload == NULL || port < 0 || optind != argc) {
        fprintf(stderr, "weftctl: policy explain needs -f, --from, --to-workload and --port\n\n%s",
                explain_usage);
        return EXIT_USAGE;
    }
    struct spiffe_id peer;
    struct spiffe_why why;
    bool unauthenticated = strcmp(from, "unauthenticated") == 0;
    if (!unauthenticated && spiffe_id_parse(&peer, from, strlen(from), &why) != WEFT_OK) {
        fprintf(stderr, "weftctl: --from %s: not a SPIFFE ID or \"unauthenticated\": %s\n", from,
                why.msg);
        return EXIT_USAGE;
    }
    const char *keys[MAX_LABELS], *values[MAX_LABELS];
    struct policy_workload w;
    char *workload_arg = workload;
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", workload_arg);
    if (!parse_workload(copy, &w, keys, values)) {
        fprintf(stderr,
                "weftctl: --to-workload %s: not NAMESPACE/SERVICEACCOUNT[,LABEL=VALUE...] with "
                "Kubernetes names\n",
                workload_arg);
        return EXIT_USAGE;
    }
    if ((action != NULL && strcmp(action, "ALLOW") != 0 && strcmp(action, "DENY") != 0) ||
        (mtls != NULL && strcmp(mtls, "PERMISSIVE") != 0 && strcmp(mtls, "STRICT") != 0) ||
        (root_ns != NULL && !policy_is_valid_namespace(root_ns))) {
        fprintf(stderr, "weftctl: --default-action is ALLOW or DENY, --default-mtls PERMISSIVE or "
                        "STRICT, --root-namespace a namespace name\n");
        return EXIT_USAGE;
    }

    struct policy_set set;
    policy_set_init(&set);
    int rc = load(&set, paths, num_paths);
    if (rc != EXIT_VALID) {
        policy_set_cleanup(&set);
        return EXIT_USAGE; /* invalid input: nothing is decided on a set with errors */
    }
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    if (root_ns != NULL) {
        cfg.root_namespace = root_ns;
    }
    if (action != NULL) {
        cfg.default_action = strcmp(action, "DENY") == 0 ? POLICY_ACTION_DENY : POLICY_ACTION_ALLOW;
    }
    if (mtls != NULL) {
        cfg.default_mtls =
            strcmp(mtls, "STRICT") == 0 ? POLICY_MTLS_STRICT : POLICY_MTLS_PERMISSIVE;
    }
    struct policy_snapshot *snap = NULL;
    if (policy_compile(&snap, &set, &cfg, &w) != WEFT_OK) {
        fprintf(stderr, "weftctl: cannot compile the policies\n");
        policy_set_cleanup(&set);
        return EXIT_USAGE;
    }
    struct policy_request req = {unauthenticated ? NULL : peer.str, (uint16_t)port};
    struct policy_result r;
    policy_eval(snap, &req, &r);
    policy_explain(stdout, &set, &cfg, &w, &req, snap, &r);
    rc = r.enforced.decision == POLICY_ALLOW ? EXIT_VALID : EXIT_INVALID;
    policy_snapshot_free(snap);
    policy_set_cleanup(&set);
    return rc;
}

int cmd_policy(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "check") == 0) {
        return check(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "explain") == 0) {
        return explain(argc - 1, argv + 1);
    }
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fputs(check_usage, help ? stdout : stderr);
    fputs("\n", help ? stdout : stderr);
    fputs(explain_usage, help ? stdout : stderr);
    return help ? EXIT_VALID : EXIT_USAGE;
}
