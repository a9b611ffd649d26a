/* agent/main.c: weft-agent's command line (see `weft-agent --help`). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/daemon.h"
#include "agent/k8s.h"
#include "agent/wlapi.h"

static const char usage[] =
    "usage: weft-agent --ca ADDR --trust-domain TD [options]\n"
    "\n"
    "The weft node agent: joins the CA with a one-time token (or, in Kubernetes, its pod's\n"
    "service account token), keeps its node identity, mints and renews the workload SVIDs of\n"
    "the entries assigned to this node (keys in memory only), and serves them to local\n"
    "workloads over the SPIFFE Workload API: X.509-SVIDs and bundles, JWT-SVIDs (minted by the\n"
    "CA for the caller's entries) with their JWKS and validation. The\n"
    "same socket serves weft.agent.v1.ProxyConfig/Watch to sidecar proxies: the policy compiled\n"
    "for their workload, the mesh directory and the deny list.\n"
    "\n"
    "  --ca ADDR                 weft-ca's CA service: IPV4:PORT or [IPV6]:PORT\n"
    "  --trust-domain TD         the trust domain (example.org)\n"
    "  --bootstrap-bundle FILE   the CA's bundle.pem, to trust the CA on the first join\n"
    "  --join-token TOKEN        from `weftctl token create --node NAME`; needed only until\n"
    "  --join-token-file FILE    the node identity is stored (or the same, from a file: its\n"
    "                            first line that is not empty or a # comment, so weftctl's\n"
    "                            output saved as it is will do)\n"
    "  --psat-token-file FILE    in Kubernetes, instead of a join token: the pod's projected\n"
    "                            service account token (audience weft-ca), read afresh at\n"
    "                            each join; the CA (weft-ca --psat-issuer) names the node\n"
    "                            after the token's node. The node SVID is then replaced by\n"
    "                            attesting again with the current token (the CA takes the\n"
    "                            node's selectors afresh), or by renewal if that is refused\n"
    "  --state-dir DIR           node key, SVID and bundle (default " AGENT_DEFAULT_STATE_DIR ")\n"
    "  --socket PATH             the Workload API (default " AGENT_WLAPI_DEFAULT_SOCKET
    "); workloads\n"
    "                            use SPIFFE_ENDPOINT_SOCKET=unix://PATH\n"
    "  --http ADDR               /metrics and /ready: IPV4:PORT, [IPV6]:PORT or unix:PATH\n"
    "                            (default " AGENT_DEFAULT_HTTP "; '' disables)\n"
    "  --kubelet-url URL         enable the k8s attestor: the kubelet's pod list\n"
    "                            (" AGENT_KUBELET_DEFAULT_URL ")\n"
    "  --kubelet-token-file F    bearer token for it (" AGENT_KUBELET_DEFAULT_TOKEN ")\n"
    "  --kubelet-ca FILE         the kubelet's CA (" AGENT_KUBELET_DEFAULT_CA ")\n"
    "  --kubelet-insecure        do not verify the kubelet's certificate (kind, minikube)\n"
    "  --alert-command CMD       run CMD (sh -c) with each alert as JSON on stdin\n"
    "  --alert-url URL           POST alerts to an Alertmanager (.../api/v2/alerts)\n"
    "  --alert-runway FRACTION   page when the first SVID to expire has less than this part\n"
    "                            of its lifetime left (default 0.25)\n"
    "  --alert-failures N        page after N renewals failed in a row (default 3)\n"
    "  --claim-cidr CIDR         outside Kubernetes, a range proxies may enter addresses of\n"
    "                            in the mesh directory (repeatable; none: no claim accepted)\n"
    "\n"
    "Workloads are attested by the kernel's view of the caller (unix:uid, unix:gid, unix:user,\n"
    "unix:group, unix:path) and, with --kubelet-url, by their pod (k8s:ns, k8s:sa,\n"
    "k8s:pod-name, k8s:pod-uid, k8s:pod-label:K:V, k8s:container-name, ...).\n"
    "Alerts: WeftSVIDRunwayLow and WeftSVIDRenewalFailing, fired once, resolved once.\n"
    "A proxy may enter an address in the mesh directory only if it is its own: one of its pod's\n"
    "IPs (the kubelet's pod list); or, outside Kubernetes, an address within --claim-cidr on an\n"
    "interface of its own network namespace (not the node's, not one in a user namespace of\n"
    "its own making, not a node address).\n"
    "Logs go to stderr as logfmt. Stops on SIGTERM or SIGINT. Exit: 0 stopped, 1 could not\n"
    "start, 2 usage.\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {"trust-domain", required_argument, NULL, 't'},
        {"bootstrap-bundle", required_argument, NULL, 'b'},
        {"join-token", required_argument, NULL, 'j'},
        {"join-token-file", required_argument, NULL, 'J'},
        {"psat-token-file", required_argument, NULL, 'P'},
        {"state-dir", required_argument, NULL, 's'},
        {"socket", required_argument, NULL, 'S'},
        {"http", required_argument, NULL, 'H'},
        {"kubelet-url", required_argument, NULL, 'k'},
        {"kubelet-token-file", required_argument, NULL, 'K'},
        {"kubelet-ca", required_argument, NULL, 'C'},
        {"kubelet-insecure", no_argument, NULL, 'I'},
        {"alert-command", required_argument, NULL, 'a'},
        {"alert-url", required_argument, NULL, 'u'},
        {"alert-runway", required_argument, NULL, 'r'},
        {"alert-failures", required_argument, NULL, 'f'},
        {"claim-cidr", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct agent_daemon_opts o = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.ca_addr = optarg;
            break;
        case 't':
            o.trust_domain = optarg;
            break;
        case 'b':
            o.bootstrap_bundle = optarg;
            break;
        case 'j':
            o.join_token = optarg;
            break;
        case 'J':
            o.join_token_file = optarg;
            break;
        case 'P':
            o.psat_token_file = optarg;
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'S':
            o.socket = optarg;
            break;
        case 'H':
            o.http = optarg;
            break;
        case 'k':
            o.kubelet_url = optarg;
            break;
        case 'K':
            o.kubelet_token_file = optarg;
            break;
        case 'C':
            o.kubelet_ca = optarg;
            break;
        case 'I':
            o.kubelet_insecure = true;
            break;
        case 'a':
            o.alert_command = optarg;
            break;
        case 'u':
            o.alert_url = optarg;
            break;
        case 'r': {
            char *end;
            o.alert_runway_fraction = strtod(optarg, &end);
            if (*end != '\0' || o.alert_runway_fraction <= 0 || o.alert_runway_fraction >= 1) {
                fprintf(stderr, "weft-agent: --alert-runway %s: a fraction between 0 and 1\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'f': {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end != '\0' || n == 0 || n > 1000) {
                fprintf(stderr, "weft-agent: --alert-failures %s: 1 to 1000\n", optarg);
                return 2;
            }
            o.alert_failures = (unsigned)n;
            break;
        }
        case 'R':
            if (o.num_claim_cidrs == AGENT_CLAIM_MAX_CIDRS ||
                weft_cidr_parse(optarg, &o.claim_cidrs[o.num_claim_cidrs]) != WEFT_OK) {
                fprintf(stderr,
                        "weft-agent: --claim-cidr %s: a network such as 198.18.0.0/15 or "
                        "fd00::/8 (host bits zero), at most %d of them\n",
                        optarg, AGENT_CLAIM_MAX_CIDRS);
                return 2;
            }
            o.num_claim_cidrs++;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc || o.ca_addr == NULL || o.trust_domain == NULL) {
        fprintf(stderr, "weft-agent: --ca and --trust-domain are required\n\n%s", usage);
        return 2;
    }
    if (o.join_token != NULL && o.join_token_file != NULL) {
        fprintf(stderr, "weft-agent: --join-token or --join-token-file, not both\n");
        return 2;
    }
    if (o.psat_token_file != NULL && (o.join_token != NULL || o.join_token_file != NULL)) {
        fprintf(stderr, "weft-agent: --psat-token-file or a join token, not both\n");
        return 2;
    }
    if (o.kubelet_url != NULL && o.kubelet_token_file == NULL) {
        o.kubelet_token_file = AGENT_KUBELET_DEFAULT_TOKEN;
    }
    if (o.kubelet_url != NULL && o.kubelet_ca == NULL && !o.kubelet_insecure) {
        o.kubelet_ca = AGENT_KUBELET_DEFAULT_CA;
    }
    return agent_daemon_run(&o);
}
