/* ca/main.c: weft-ca's command line (see `weft-ca --help`). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/core.h"
#include "ca/daemon.h"
#include "ca/issuer.h"
#include "ca/jwt_keys.h"
#include "ca/psat.h"
#include "lib/base/timefmt.h"

static const char usage[] =
    "usage: weft-ca --data-dir DIR [options]\n"
    "\n"
    "The weft CA: attests nodes (join tokens, or Kubernetes service account tokens), signs\n"
    "node and workload SVIDs (X.509, and JWT for the agents' FetchJWTSVID) through a separate\n"
    "signer process, records every certificate, distributes entries, the deny list, policy,\n"
    "the mesh directory and the trust bundle to agents, and answers weftctl on an admin\n"
    "socket.\n"
    "\n"
    "  --data-dir DIR            CA files (weftctl ca init --out DIR) and the store ca.db\n"
    "  --self-signed             on a first start, make a root and intermediate in DIR\n"
    "  --trust-domain TD         required with --self-signed; else read from the bundle\n"
    "  --key-type T              ec-p256 (default) or ed25519: the roots it makes\n"
    "  --root-ttl DUR            the roots it makes (default 8760h)\n"
    "  --intermediate-ttl DUR    the intermediates it makes (default 168h); each is replaced\n"
    "                            at half its life when the root key is in DIR/root.key\n"
    "                            (or root-2.key after a root rotation)\n"
    "  --jwt-ttl DUR             JWT-SVID lifetime, 30s to 1h (default 5m; never longer than the\n"
    "                            entry's TTL). The signing key lives only in the signer, is\n"
    "                            published in the bundle (a jwt-svid JWK) before it signs, and\n"
    "                            rotates like the intermediate (--intermediate-ttl, but at\n"
    "                            least twice DUR); a retired key stays published DUR more. At\n"
    "                            start a fresh key signs at once: an agent that has not\n"
    "                            reconnected yet rejects its tokens until it has (seconds)\n"
    "  --reconnect-grace DUR     a root rotation trusts its list of connected agents only\n"
    "                            this long after start (default 60s)\n"
    "  --listen ADDR             the CA service, TLS 1.3: IPV4:PORT or [IPV6]:PORT, numeric\n"
    "                            (default " CA_DEFAULT_LISTEN ")\n"
    "  --admin-socket PATH       the admin API for weftctl (default DIR/" CA_ADMIN_SOCKET_NAME
    ", mode 0600)\n"
    "  --admin-group GROUP       let GROUP use the admin socket too (mode 0660)\n"
    "  --http ADDR               /metrics and /ready: IPV4:PORT, [IPV6]:PORT or unix:PATH\n"
    "                            (default " CA_DEFAULT_HTTP "; '' disables)\n"
    "  --policy-dir DIR          policy YAML to distribute, reloaded when it changes. Read as\n"
    "                            the user weft-ca runs as (--user when started as root): if\n"
    "                            it cannot read DIR or a file or directory in it, weft-ca\n"
    "                            does not start, and a later change it cannot read is\n"
    "                            refused with a warning (the policy in force stays)\n"
    "  --policy-source SRC       dir (default: --policy-dir) or kubernetes: list and watch the\n"
    "                            AuthorizationPolicy, PeerAuthentication and MeshConfig\n"
    "                            objects (security.weft.dev/v1alpha1) of the whole cluster\n"
    "                            (RBAC: list and watch on the three resources). Each object\n"
    "                            is checked alone: an invalid one is logged, counted\n"
    "                            (weft_ca_policy_refused_changes) and left out, and its\n"
    "                            previous valid version, if any, stays. No set is served\n"
    "                            until every kind has been listed once. Failed requests are\n"
    "                            retried with backoff (weft_ca_policy_kube_api_failures)\n"
    "  --kube-api URL            the API server: https://, or http:// to a loopback address\n"
    "                            only (kubectl proxy). Without it (in a pod):\n"
    "                            https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with\n"
    "                            the service account's token and ca.crt as defaults for the\n"
    "                            two flags below; with it, no token unless --kube-token-file\n"
    "  --kube-token-file F       bearer token, read again before every request (it rotates),\n"
    "                            as the user weft-ca runs as\n"
    "  --kube-ca-file F          CA certificates for the API server (default: the system's,\n"
    "                            or the service account's ca.crt in a pod)\n"
    "  --node-ttl DUR            node SVID lifetime (default 24h)\n"
    "  --directory-ttl DUR       forget addresses a node stopped reporting (default 2m)\n"
    "  --user NAME               when started as root, run as NAME after binding (default\n"
    "                            nobody); the signer alone can then read the key\n"
    "  --max-conns N             TLS connections at once (default 1024)\n"
    "  --max-streams-per-node N  WatchNode streams per node (default 4)\n"
    "  --psat-issuer URL         also attest nodes with Kubernetes projected service account\n"
    "                            tokens of this issuer (the cluster's --service-account-issuer,\n"
    "                            exactly as in their iss claim); the node is named by the\n"
    "                            token's kubernetes.io.node.name. Validated offline: no fetch\n"
    "  --psat-jwks FILE          with --psat-issuer: the cluster's JWKS (kubectl get --raw\n"
    "                            /openid/v1/jwks), RS256 and ES256 keys; read at start, and\n"
    "                            again when it changes (a file it cannot use then leaves the\n"
    "                            keys in force, with a warning)\n"
    "  --psat-audience AUD       the audience tokens must carry (default " CA_PSAT_DEFAULT_AUDIENCE
    ")\n"
    "  --psat-allowed-sa NS:NAME a service account whose tokens may attest nodes (repeatable,\n"
    "                            at most 16; default " CA_PSAT_DEFAULT_SA "); a node whose\n"
    "                            account is no longer allowed is not renewed. A node attested\n"
    "                            as another account than before has its earlier node SVIDs\n"
    "                            revoked\n"
    "  --psat-cluster NAME       the cluster's name in node selectors (default\n"
    "                            " CA_PSAT_DEFAULT_CLUSTER "). A node attested by token reports\n"
    "                            " CA_PSAT_SELECTOR_TYPE ":cluster:NAME, " CA_PSAT_SELECTOR_TYPE
    ":agent_ns:NS and\n"
    "                            " CA_PSAT_SELECTOR_TYPE ":agent_sa:NAME (its agent's service "
    "account);\n"
    "                            an entry made with `weftctl entry create --node-selector`\n"
    "                            holds on every node that reports its selector\n"
    "\n"
    "Root rotation is `weftctl ca rotate-root`: no restart anywhere; `weftctl ca status`\n"
    "shows its phase and the agents it waits for.\n"
    "Logs go to stderr as logfmt, one audit line per issuance, token use, revocation and\n"
    "rotation step. If the signer process dies, weft-ca exits 1 for its supervisor.\n"
    "Stops cleanly on SIGTERM or SIGINT. Exit: 0 stopped, 1 could not start or signer lost,\n"
    "2 usage.\n";

static int duration(int64_t *out, const char *flag, const char *arg)
{
    if (weft_duration_parse(out, arg) != WEFT_OK || *out <= 0) {
        fprintf(stderr, "weft-ca: %s %s: not a duration such as 24h\n", flag, arg);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, 'd'},
        {"self-signed", no_argument, NULL, 's'},
        {"trust-domain", required_argument, NULL, 't'},
        {"key-type", required_argument, NULL, 'k'},
        {"root-ttl", required_argument, NULL, 'R'},
        {"intermediate-ttl", required_argument, NULL, 'I'},
        {"reconnect-grace", required_argument, NULL, 'G'},
        {"jwt-ttl", required_argument, NULL, 'J'},
        {"listen", required_argument, NULL, 'l'},
        {"admin-socket", required_argument, NULL, 'a'},
        {"admin-group", required_argument, NULL, 'g'},
        {"http", required_argument, NULL, 'H'},
        {"policy-dir", required_argument, NULL, 'p'},
        {"policy-source", required_argument, NULL, 'P'},
        {"kube-api", required_argument, NULL, 'K'},
        {"kube-token-file", required_argument, NULL, 'T'},
        {"kube-ca-file", required_argument, NULL, 'C'},
        {"node-ttl", required_argument, NULL, 'n'},
        {"directory-ttl", required_argument, NULL, 'D'},
        {"user", required_argument, NULL, 'u'},
        {"max-conns", required_argument, NULL, 'c'},
        {"max-streams-per-node", required_argument, NULL, 'S'},
        {"psat-issuer", required_argument, NULL, 1000},
        {"psat-jwks", required_argument, NULL, 1001},
        {"psat-audience", required_argument, NULL, 1002},
        {"psat-allowed-sa", required_argument, NULL, 1003},
        {"psat-cluster", required_argument, NULL, 1004},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ca_daemon_opts o = {
        .listen = CA_DEFAULT_LISTEN,
        .http = CA_DEFAULT_HTTP,
        .root_ttl_s = 8760 * 3600,
        .intermediate_ttl_s = 168 * 3600,
        .node_ttl_s = CA_DEFAULT_NODE_TTL_S,
        .jwt_ttl_s = CA_JWT_DEFAULT_TTL_S,
    };
    static const char *allowed_sa[CA_PSAT_MAX_ALLOWED];
    o.psat_allowed_sa = allowed_sa;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'd':
            o.data_dir = optarg;
            break;
        case 's':
            o.self_signed = true;
            break;
        case 't':
            o.trust_domain = optarg;
            break;
        case 'k':
            if (spiffe_key_type_parse(&o.key_type, optarg) != WEFT_OK) {
                fprintf(stderr, "weft-ca: --key-type %s: ec-p256 or ed25519\n", optarg);
                return 2;
            }
            break;
        case 'R':
            if (duration(&o.root_ttl_s, "--root-ttl", optarg) != 0) {
                return 2;
            }
            break;
        case 'I':
            if (duration(&o.intermediate_ttl_s, "--intermediate-ttl", optarg) != 0) {
                return 2;
            }
            break;
        case 'G':
            if (duration(&o.reconnect_grace_s, "--reconnect-grace", optarg) != 0) {
                return 2;
            }
            break;
        case 'J':
            if (duration(&o.jwt_ttl_s, "--jwt-ttl", optarg) != 0) {
                return 2;
            }
            if (o.jwt_ttl_s < CA_JWT_MIN_TTL_S || o.jwt_ttl_s > CA_JWT_MAX_TTL_S) {
                fprintf(stderr, "weft-ca: --jwt-ttl must be 30s to 1h\n");
                return 2;
            }
            break;
        case 'l':
            o.listen = optarg;
            break;
        case 'a':
            o.admin_socket = optarg;
            break;
        case 'g':
            o.admin_group = optarg;
            break;
        case 'H':
            o.http = optarg;
            break;
        case 'p':
            o.policy_dir = optarg;
            break;
        case 'P':
            if (strcmp(optarg, "dir") != 0 && strcmp(optarg, "kubernetes") != 0) {
                fprintf(stderr, "weft-ca: --policy-source %s: dir or kubernetes\n", optarg);
                return 2;
            }
            o.policy_kube = strcmp(optarg, "kubernetes") == 0;
            break;
        case 'K':
            o.kube_api = optarg;
            break;
        case 'T':
            o.kube_token_file = optarg;
            break;
        case 'C':
            o.kube_ca_file = optarg;
            break;
        case 'n':
            if (duration(&o.node_ttl_s, "--node-ttl", optarg) != 0) {
                return 2;
            }
            if (o.node_ttl_s < CA_MIN_SVID_TTL_S || o.node_ttl_s > CA_MAX_SVID_TTL_S) {
                fprintf(stderr, "weft-ca: --node-ttl must be 5m to 24h\n");
                return 2;
            }
            break;
        case 'D':
            if (duration(&o.directory_ttl_s, "--directory-ttl", optarg) != 0) {
                return 2;
            }
            break;
        case 'u':
            o.run_as = optarg;
            break;
        case 'c':
        case 'S': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v == 0 || v > 1000000) {
                fprintf(stderr, "weft-ca: --%s %s: a number from 1 to 1000000\n",
                        c == 'c' ? "max-conns" : "max-streams-per-node", optarg);
                return 2;
            }
            if (c == 'c') {
                o.max_conns = (unsigned)v;
            } else {
                o.max_streams_per_node = (unsigned)v;
            }
            break;
        }
        case 1000:
            o.psat_issuer = optarg;
            break;
        case 1001:
            o.psat_jwks = optarg;
            break;
        case 1002:
            o.psat_audience = optarg;
            break;
        case 1003:
            if (o.num_psat_allowed_sa == CA_PSAT_MAX_ALLOWED) {
                fprintf(stderr, "weft-ca: --psat-allowed-sa: at most %d\n", CA_PSAT_MAX_ALLOWED);
                return 2;
            }
            allowed_sa[o.num_psat_allowed_sa++] = optarg;
            break;
        case 1004:
            o.psat_cluster = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (o.data_dir == NULL || optind != argc) {
        fprintf(stderr, "weft-ca: --data-dir is required\n\n%s", usage);
        return 2;
    }
    if ((o.psat_jwks != NULL || o.psat_audience != NULL || o.num_psat_allowed_sa > 0 ||
         o.psat_cluster != NULL) &&
        o.psat_issuer == NULL) {
        fprintf(stderr, "weft-ca: --psat-jwks, --psat-audience, --psat-allowed-sa and "
                        "--psat-cluster need --psat-issuer\n");
        return 2;
    }
    if (o.psat_issuer != NULL && o.psat_jwks == NULL) {
        fprintf(stderr, "weft-ca: --psat-issuer needs --psat-jwks FILE\n");
        return 2;
    }
    if (o.policy_kube && o.policy_dir != NULL) {
        fprintf(stderr, "weft-ca: --policy-dir is for --policy-source dir, not kubernetes\n");
        return 2;
    }
    if (!o.policy_kube && (o.kube_api || o.kube_token_file || o.kube_ca_file)) {
        fprintf(stderr, "weft-ca: --kube-* flags need --policy-source kubernetes\n");
        return 2;
    }
    static char sock[4200];
    if (o.admin_socket == NULL) {
        snprintf(sock, sizeof(sock), "%s/%s", o.data_dir, CA_ADMIN_SOCKET_NAME);
        o.admin_socket = sock;
    }
    return ca_daemon_run(&o);
}
