/* weftctl token / entry / revoke / certs / ca status / ca rotate-root: weft-ca's admin API over
 * its unix socket (proto/ca.proto, service weft.ca.v1.Admin). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "cli/internal.h"
#include "lib/base/timefmt.h"
#include "lib/rpc/rpc.h"
#include "proto/ca.pb-c.h"

#define CALL_TIMEOUT_MS 10000
#define MAX_RESPONSE (64 << 20)

static const char socket_help[] =
    "The admin socket is --socket PATH, else $WEFT_CA_SOCKET (weft-ca's --admin-socket, by\n"
    "default DATA_DIR/admin.sock).\n"
    "Exit: 0 done, 1 the CA refused or could not be reached, 2 usage.\n";

static const char *socket_path(const char *flag)
{
    if (flag != NULL) {
        return flag;
    }
    const char *env = getenv("WEFT_CA_SOCKET");
    return env != NULL && env[0] != '\0' ? env : NULL;
}

/* admin_call makes one Admin call and prints the CA's refusal when there is one. */
static int admin_call(const char *sock, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp)
{
    if (sock == NULL) {
        fprintf(stderr, "weftctl: no admin socket: pass --socket PATH or set WEFT_CA_SOCKET\n");
        return EXIT_USAGE;
    }
    grpc_init();
    grpc_channel *ch = rpc_channel_unix(sock);
    char path[128];
    snprintf(path, sizeof(path), "/weft.ca.v1.Admin/%s", method);
    struct rpc_status st;
    int rc = rpc_call_unary(ch, path, req, desc, MAX_RESPONSE, CALL_TIMEOUT_MS, resp, &st);
    grpc_channel_destroy(ch);
    grpc_shutdown();
    if (rc != WEFT_OK) {
        if (st.code == GRPC_STATUS_UNAVAILABLE || st.code == GRPC_STATUS_DEADLINE_EXCEEDED) {
            fprintf(stderr, "weftctl: cannot reach weft-ca at %s: %s\n", sock, st.details);
        } else {
            fprintf(stderr, "weftctl: %s refused: %s\n", method, st.details);
        }
        return EXIT_INVALID;
    }
    return EXIT_VALID;
}

static void print_time(const char *label, int64_t t)
{
    char s[WEFT_RFC3339_LEN];
    weft_time_format_rfc3339(s, t);
    printf("%s%s", label, s);
}

/* --- token --------------------------------------------------------------------------------- */

static const char token_usage[] =
    "usage: weftctl token create --node NAME [--ttl DUR] [--socket PATH]\n"
    "\n"
    "Makes a one-time join token for the agent of node NAME (default TTL 1h, at most 168h) and\n"
    "prints it: the CA keeps only its hash, so this is the only copy.\n";

int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"ttl", required_argument, NULL, 't'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        fprintf(help ? stdout : stderr, "%s%s", token_usage, socket_help);
        return help ? EXIT_VALID : EXIT_USAGE;
    }
    argc--, argv++;
    const char *node = NULL, *sock = NULL;
    int64_t ttl = 3600;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'n') {
            node = optarg;
        } else if (c == 't') {
            if (weft_duration_parse(&ttl, optarg) != WEFT_OK || ttl <= 0) {
                fprintf(stderr, "weftctl: --ttl %s: not a duration such as 1h\n", optarg);
                return EXIT_USAGE;
            }
        } else if (c == 's') {
            sock = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr, "%s%s", token_usage, socket_help);
            return c == 'h' ? EXIT_VALID : EXIT_USAGE;
        }
    }
    if (node == NULL || optind != argc) {
        fprintf(stderr, "weftctl: token create needs --node\n\n%s", token_usage);
        return EXIT_USAGE;
    }
    Weft__Ca__V1__CreateTokenRequest req = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    req.node = (char *)node;
    req.ttl_seconds = ttl;
    Weft__Ca__V1__CreateTokenResponse *resp = NULL;
    int rc =
        admin_call(socket_path(sock), "CreateToken", &req.base,
                   &weft__ca__v1__create_token_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc == EXIT_VALID) {
        printf("%s\n", resp->token);
        printf("# for node %s, valid until ", node);
        print_time("", resp->expires_at);
        printf(", once\n");
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

/* --- entry --------------------------------------------------------------------------------- */

static const char entry_usage[] =
    "usage: weftctl entry create --id SPIFFE_ID (--node NAME | --node-selector T:K:V)\n"
    "                            --selector T:K:V [--selector ...] [--ttl DUR] [--socket PATH]\n"
    "       weftctl entry list [--node NAME] [--socket PATH]\n"
    "       weftctl entry delete ENTRY_ID [--socket PATH]\n"
    "\n"
    "An entry binds a workload identity to the selectors an agent must observe (unix:uid:1001,\n"
    "k8s:ns:shop, k8s:sa:cart, ...; all must match) and to the nodes allowed to mint it: the one\n"
    "--node names, or every node whose attestation reported --node-selector, however many join\n"
    "later. Nodes attested by Kubernetes service account token (weft-ca --psat-issuer) report\n"
    "k8s_psat:cluster:NAME (weft-ca --psat-cluster, default kubernetes), k8s_psat:agent_ns:NS\n"
    "and k8s_psat:agent_sa:NAME (their agent's service account); a join token gives only the\n"
    "node's name, so weft-ca refuses a node selector no node could report. Every node an entry\n"
    "holds on mints and keeps its SVID; a node gets at most 4096 entries, and every\n"
    "node-selector entry counts against every node. `entry list --node NAME` shows the entries\n"
    "a node gets.\n"
    "The SVID lifetime is --ttl (default 1h, 5m to 24h).\n";

static void print_entry(const Weft__Ca__V1__Entry *e)
{
    printf("%s  %s  %s=%s", e->id, e->spiffe_id, e->node[0] ? "node" : "node-selector",
           e->node[0] ? e->node : e->node_selector);
    for (size_t i = 0; i < e->n_selectors; i++) {
        printf("%s%s", i == 0 ? "  selectors=" : ",", e->selectors[i]);
    }
    printf("  ttl=%llds\n", (long long)e->ttl_seconds);
}

static int entry_create(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"node", required_argument, NULL, 'n'},
        {"node-selector", required_argument, NULL, 'N'},
        {"selector", required_argument, NULL, 'S'},
        {"ttl", required_argument, NULL, 't'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char *selectors[64];
    const char *sock = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            e.spiffe_id = optarg;
            break;
        case 'n':
            e.node = optarg;
            break;
        case 'N':
            e.node_selector = optarg;
            break;
        case 'S':
            if (e.n_selectors == nitems(selectors)) {
                fprintf(stderr, "weftctl: too many --selector flags\n");
                return EXIT_USAGE;
            }
            selectors[e.n_selectors++] = optarg;
            break;
        case 't':
            if (weft_duration_parse(&e.ttl_seconds, optarg) != WEFT_OK) {
                fprintf(stderr, "weftctl: --ttl %s: not a duration such as 1h\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case 's':
            sock = optarg;
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr, "%s%s", entry_usage, socket_help);
            return c == 'h' ? EXIT_VALID : EXIT_USAGE;
        }
    }
    if (e.spiffe_id[0] == '\0' || optind != argc) {
        fprintf(stderr, "weftctl: entry create needs --id\n\n%s", entry_usage);
        return EXIT_USAGE;
    }
    e.selectors = selectors;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    Weft__Ca__V1__CreateEntryResponse *resp = NULL;
    int rc =
        admin_call(socket_path(sock), "CreateEntry", &req.base,
                   &weft__ca__v1__create_entry_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc == EXIT_VALID) {
        print_entry(resp->entry);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

static int entry_list_or_delete(int argc, char **argv, bool del)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sock = NULL, *node = "";
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'n' && !del) {
            node = optarg;
        } else if (c == 's') {
            sock = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr, "%s%s", entry_usage, socket_help);
            return c == 'h' ? EXIT_VALID : EXIT_USAGE;
        }
    }
    if (del ? optind != argc - 1 : optind != argc) {
        fprintf(stderr, "%s", entry_usage);
        return EXIT_USAGE;
    }
    if (del) {
        Weft__Ca__V1__DeleteEntryRequest req = WEFT__CA__V1__DELETE_ENTRY_REQUEST__INIT;
        req.id = argv[optind];
        ProtobufCMessage *resp = NULL;
        int rc = admin_call(socket_path(sock), "DeleteEntry", &req.base,
                            &weft__ca__v1__delete_entry_response__descriptor, &resp);
        if (rc == EXIT_VALID) {
            printf("deleted entry %s\n", req.id);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
        return rc;
    }
    Weft__Ca__V1__ListEntriesRequest req = WEFT__CA__V1__LIST_ENTRIES_REQUEST__INIT;
    req.node = (char *)node;
    Weft__Ca__V1__ListEntriesResponse *resp = NULL;
    int rc =
        admin_call(socket_path(sock), "ListEntries", &req.base,
                   &weft__ca__v1__list_entries_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc == EXIT_VALID) {
        for (size_t i = 0; i < resp->n_entries; i++) {
            print_entry(resp->entries[i]);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

int cmd_entry(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "create") == 0) {
        return entry_create(argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "delete") == 0)) {
        return entry_list_or_delete(argc - 1, argv + 1, strcmp(argv[1], "delete") == 0);
    }
    bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fprintf(help ? stdout : stderr, "%s%s", entry_usage, socket_help);
    return help ? EXIT_VALID : EXIT_USAGE;
}

/* --- revoke -------------------------------------------------------------------------------- */

static const char revoke_usage[] =
    "usage: weftctl revoke (--id SPIFFE_ID | --serial HEX | --node NAME) [--socket PATH]\n"
    "\n"
    "Stops issuance for the ID or node at once and puts an item on the deny list every agent\n"
    "receives within seconds, kept until the last affected certificate has expired.\n";

int cmd_revoke(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},   {"serial", required_argument, NULL, 'S'},
        {"node", required_argument, NULL, 'n'}, {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    Weft__Ca__V1__RevokeRequest req = WEFT__CA__V1__REVOKE_REQUEST__INIT;
    const char *sock = NULL;
    int c, kinds = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
        case 'S':
        case 'n':
            req.kind = c == 'i'   ? WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID
                       : c == 'S' ? WEFT__CA__V1__DENY_ITEM__KIND__SERIAL
                                  : WEFT__CA__V1__DENY_ITEM__KIND__NODE;
            req.value = optarg;
            kinds++;
            break;
        case 's':
            sock = optarg;
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr, "%s%s", revoke_usage, socket_help);
            return c == 'h' ? EXIT_VALID : EXIT_USAGE;
        }
    }
    if (kinds != 1 || optind != argc) {
        fprintf(stderr, "weftctl: revoke takes exactly one of --id, --serial, --node\n\n%s",
                revoke_usage);
        return EXIT_USAGE;
    }
    Weft__Ca__V1__RevokeResponse *resp = NULL;
    int rc = admin_call(socket_path(sock), "Revoke", &req.base,
                        &weft__ca__v1__revoke_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc == EXIT_VALID) {
        static const char *names[] = {"id", "serial", "node"};
        const Weft__Ca__V1__DenyItem *it = resp->item;
        printf("revoked %s %s; on the deny list until ", names[it->kind % 3], it->value);
        print_time("", it->drop_after);
        printf("\n");
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

/* --- certs --------------------------------------------------------------------------------- */

static const char certs_usage[] =
    "usage: weftctl certs list [--id SPIFFE_ID] [--expiring-within DUR] [--socket PATH]\n"
    "\n"
    "Lists the CA's inventory of issued certificates (at most 10000 rows): serial, SPIFFE ID,\n"
    "node, entry, notBefore, notAfter and SHA-256 fingerprint.\n";

int cmd_certs(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"expiring-within", required_argument, NULL, 'e'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "list") != 0) {
        bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        fprintf(help ? stdout : stderr, "%s%s", certs_usage, socket_help);
        return help ? EXIT_VALID : EXIT_USAGE;
    }
    argc--, argv++;
    Weft__Ca__V1__ListCertsRequest req = WEFT__CA__V1__LIST_CERTS_REQUEST__INIT;
    const char *sock = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'i') {
            req.spiffe_id = optarg;
        } else if (c == 'e') {
            if (weft_duration_parse(&req.expiring_within_seconds, optarg) != WEFT_OK ||
                req.expiring_within_seconds <= 0) {
                fprintf(stderr, "weftctl: --expiring-within %s: not a duration such as 10m\n",
                        optarg);
                return EXIT_USAGE;
            }
        } else if (c == 's') {
            sock = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr, "%s%s", certs_usage, socket_help);
            return c == 'h' ? EXIT_VALID : EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s", certs_usage);
        return EXIT_USAGE;
    }
    Weft__Ca__V1__ListCertsResponse *resp = NULL;
    int rc = admin_call(socket_path(sock), "ListCerts", &req.base,
                        &weft__ca__v1__list_certs_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc != EXIT_VALID) {
        return rc;
    }
    printf("SERIAL                            NOT_AFTER             NODE  ID  ENTRY  SHA256\n");
    for (size_t i = 0; i < resp->n_certs; i++) {
        const Weft__Ca__V1__Certificate *cert = resp->certs[i];
        for (size_t k = 0; k < cert->serial.len; k++) {
            printf("%02x", cert->serial.data[k]);
        }
        print_time("  ", cert->not_after);
        printf("  %s  %s  %s  ", cert->node, cert->spiffe_id,
               cert->entry_id[0] ? cert->entry_id : "-");
        for (size_t k = 0; k < cert->sha256.len; k++) {
            printf("%02x", cert->sha256.data[k]);
        }
        printf("\n");
    }
    printf("# %zu certificate%s\n", resp->n_certs, resp->n_certs == 1 ? "" : "s");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_VALID;
}

/* --- ca status / rotate-root (called from cmd_ca.c) ---------------------------------------- */

int cli_ca_status(int argc, char **argv, bool rotate)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sock = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 's') {
            sock = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr, "usage: weftctl ca %s [--socket PATH]\n\n%s",
                    rotate ? "rotate-root" : "status", socket_help);
            return c == 'h' ? EXIT_VALID : EXIT_USAGE;
        }
    }
    if (optind != argc) {
        return EXIT_USAGE;
    }
    if (rotate) {
        Weft__Ca__V1__RotateRootRequest req = WEFT__CA__V1__ROTATE_ROOT_REQUEST__INIT;
        Weft__Ca__V1__RotateRootResponse *resp = NULL;
        int rc =
            admin_call(socket_path(sock), "RotateRoot", &req.base,
                       &weft__ca__v1__rotate_root_response__descriptor, (ProtobufCMessage **)&resp);
        if (rc == EXIT_VALID) {
            printf("root rotation: %s\n", resp->phase);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        return rc;
    }
    Weft__Ca__V1__StatusRequest req = WEFT__CA__V1__STATUS_REQUEST__INIT;
    Weft__Ca__V1__StatusResponse *st = NULL;
    int rc = admin_call(socket_path(sock), "Status", &req.base,
                        &weft__ca__v1__status_response__descriptor, (ProtobufCMessage **)&st);
    if (rc != EXIT_VALID) {
        return rc;
    }
    printf("trust domain:      %s\n", st->trust_domain);
    print_time("root not after:    ", st->root_not_after);
    print_time("\nintermediate:      not after ", st->intermediate_not_after);
    printf("; %s", st->intermediate_rotation);
    print_time("\nserving SVID:      not after ", st->serving_not_after);
    printf("\nbundle sequence:   %llu\n", (unsigned long long)st->bundle_sequence);
    printf("root rotation:     %s\n", st->root_rotation);
    printf("nodes connected:   %zu", st->n_nodes_connected);
    for (size_t i = 0; i < st->n_nodes_connected; i++) {
        printf("%s%s", i == 0 ? " (" : ", ", st->nodes_connected[i]);
    }
    printf("%s\n", st->n_nodes_connected ? ")" : "");
    printf("behind on bundle:  %zu", st->n_nodes_behind_on_bundle);
    for (size_t i = 0; i < st->n_nodes_behind_on_bundle; i++) {
        printf("%s%s", i == 0 ? " (" : ", ", st->nodes_behind_on_bundle[i]);
    }
    printf("%s\n", st->n_nodes_behind_on_bundle ? ")" : "");
    printf("policy version:    %llu%s%s\n", (unsigned long long)st->policy_version,
           st->policy_error[0] ? "; latest change refused: " : "", st->policy_error);
    printf("directory:         %llu addresses, version %llu\n",
           (unsigned long long)st->directory_size, (unsigned long long)st->directory_version);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    return EXIT_VALID;
}
