/* proxy/main.c: weft-proxy's command line (see proxy.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

static const char usage[] =
    "usage: weft-proxy [options]\n"
    "\n"
    "The weft sidecar: runs in a pod's network namespace as its own uid (1337 by default, the\n"
    "one `weftctl iptables install --proxy-uid` excludes), takes the pod's SVID and its\n"
    "configuration from the node agent, and wraps pod-to-pod TCP in mutual TLS 1.3 (ALPN\n"
    "weft/1). Outbound (the app's connections, redirected to --outbound-port): a destination\n"
    "the mesh directory names must present exactly that SPIFFE ID; others pass through as plain\n"
    "TCP unless the --egress-* rules refuse them. Inbound (redirected to --inbound-port):\n"
    "STRICT ports take mTLS only, PERMISSIVE ports also plaintext; the peer and port are\n"
    "judged by the policy compiled for this workload before the app is dialled at the\n"
    "original destination. Until the first SVID and configuration come, mesh traffic is\n"
    "refused.\n"
    "\n"
    "  --agent-socket PATH       the node agent (default " PROXY_DEFAULT_AGENT_SOCKET ")\n"
    "  --spiffe-id ID            which of the workload's identities (default: its first)\n"
    "  --claim ADDR              an address this pod serves (\"IP\" or \"IP:PORT\"), for the mesh\n"
    "                            directory; repeatable, at most 16; the agent verifies each\n"
    "  --workers N               event-loop threads (default 2)\n"
    "  --outbound-port PORT      (default 15001)\n"
    "  --inbound-port PORT       (default 15006)\n"
    "  --admin ADDR              /ready /live /metrics /certs /config, POST /quitquitquit\n"
    "                            (default " PROXY_DEFAULT_ADMIN
    "; IPV4:PORT, [IPV6]:PORT, unix:PATH)\n"
    "  --permissive-wait-ms MS   on PERMISSIVE ports, how long a silent client may wait before\n"
    "                            its connection is taken as plaintext (default 200); a TLS\n"
    "                            ClientHello that has begun is waited for 10 s more, then\n"
    "                            refused. On STRICT ports a first flight that is not a\n"
    "                            ClientHello with ALPN weft/1, or 10 s of silence, is refused\n"
    "                            as mtls-strict (a ClientHello unfinished after 10 s, as such)\n"
    "  --idle-timeout-s S        close a connection idle this long (default 300)\n"
    "  --drain-s S               on SIGTERM or /quitquitquit, how long connections may finish\n"
    "                            (default 20)\n"
    "  --proxy-protocol-port P   send the app on inbound port P a PROXY protocol v2 header\n"
    "                            first: the original source and, for an mTLS peer, its SPIFFE\n"
    "                            ID in TLV 0xE0 (repeatable, at most 16)\n"
    "  --egress-deny CIDR[:PORTS]  refuse outbound connections to this network (and ports:\n"
    "                            PORT or LO-HI), in the mesh or not (repeatable)\n"
    "  --egress-allow CIDR[:PORTS] with --egress-default deny, a destination outside the mesh\n"
    "                            that may still be reached, as plain TCP (repeatable; at most\n"
    "                            64 rules in all). Example: --egress-allow 10.0.0.0/8:5432\n"
    "  --egress-default allow|deny  destinations outside the mesh directory that no rule names\n"
    "                            (default allow: they pass through as plain TCP). A deny rule\n"
    "                            wins whatever the order; an IPv4 rule never matches an IPv6\n"
    "                            destination; the access log's rule=N is the rule's place\n"
    "                            among all --egress-* rules, from 0, with policy=egress\n"
    "  --no-resumption           no TLS session tickets: every handshake is a full one\n"
    "  --probe-listen ADDR       the kubelet's probe port (IPV4:PORT or [IPV6]:PORT; the\n"
    "                            injector uses 0.0.0.0:15021 and keeps it out of the\n"
    "                            redirect). It serves GET /ready (as the admin port's) and\n"
    "                            GET /app-health/<container>/<livez|readyz|startupz> for the\n"
    "                            probes in the environment's WEFT_APP_PROBES (JSON: path ->\n"
    "                            {httpGet, timeoutSeconds}): each is made to the app at\n"
    "                            127.0.0.1:<port> (HTTPS unverified, as the kubelet does)\n"
    "                            and the app's status passed through; no answer in\n"
    "                            timeoutSeconds, or none at all, is 503. Nothing else (404)\n"
    "\n"
    "Live connections are checked every second: one whose peer's certificate expired, whose\n"
    "peer is revoked, or that the policy now denies (after the policy's closeGraceSeconds) is\n"
    "closed with a TLS alert that says why, and the access log says it too.\n"
    "SIGTERM or SIGINT drains for --drain-s: inbound listeners close at once, outbound ones\n"
    "keep serving the app (which may still be running) until the deadline, and connections\n"
    "still open then are closed. POST /quitquitquit (a Job whose app is done), before or during\n"
    "that drain, closes both and exits as soon as the open connections are done, at --drain-s\n"
    "at the latest.\n"
    "Logs go to stderr as logfmt, one access-log line per connection. Exit: 0 after a drain,\n"
    "1 could not start, 2 usage.\n";

static int number(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < lo || n > hi) {
        fprintf(stderr, "weft-proxy: %s %s: a number from %ld to %ld\n", flag, v, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"agent-socket", required_argument, NULL, 'a'},
        {"spiffe-id", required_argument, NULL, 'i'},
        {"claim", required_argument, NULL, 'c'},
        {"workers", required_argument, NULL, 'w'},
        {"outbound-port", required_argument, NULL, 'o'},
        {"inbound-port", required_argument, NULL, 'n'},
        {"admin", required_argument, NULL, 'A'},
        {"permissive-wait-ms", required_argument, NULL, 'p'},
        {"idle-timeout-s", required_argument, NULL, 't'},
        {"drain-s", required_argument, NULL, 'd'},
        {"proxy-protocol-port", required_argument, NULL, 'P'},
        {"egress-allow", required_argument, NULL, 'E'},
        {"egress-deny", required_argument, NULL, 'D'},
        {"egress-default", required_argument, NULL, 'e'},
        {"no-resumption", no_argument, NULL, 'R'},
        {"probe-listen", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct proxy_opts o = {.permissive_wait_ms = PROXY_DEFAULT_PERMISSIVE_WAIT_MS};
    int c;
    long n;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            o.agent_socket = optarg;
            break;
        case 'i':
            o.spiffe_id = optarg;
            break;
        case 'c':
            if (o.num_claims == PROXY_AGENT_MAX_CLAIMS) {
                fprintf(stderr, "weft-proxy: at most %d --claim\n", PROXY_AGENT_MAX_CLAIMS);
                return 2;
            }
            o.claims[o.num_claims++] = optarg;
            break;
        case 'w':
            if (number("--workers", optarg, 1, 64, &n) != 0) {
                return 2;
            }
            o.workers = (size_t)n;
            break;
        case 'o':
        case 'n':
            if (number(c == 'o' ? "--outbound-port" : "--inbound-port", optarg, 1, 65535, &n) !=
                0) {
                return 2;
            }
            *(c == 'o' ? &o.outbound_port : &o.inbound_port) = (int)n;
            break;
        case 'A':
            o.admin = optarg;
            break;
        case 'p':
            if (number("--permissive-wait-ms", optarg, 1, 60000, &n) != 0) {
                return 2;
            }
            o.permissive_wait_ms = (int)n;
            break;
        case 't':
            if (number("--idle-timeout-s", optarg, 1, 86400, &n) != 0) {
                return 2;
            }
            o.idle_s = (double)n;
            break;
        case 'd':
            if (number("--drain-s", optarg, 1, 3600, &n) != 0) {
                return 2;
            }
            o.drain_s = (double)n;
            break;
        case 'P':
            if (number("--proxy-protocol-port", optarg, 1, 65535, &n) != 0) {
                return 2;
            }
            if (o.num_pp_ports == sizeof(o.pp_ports) / sizeof(o.pp_ports[0])) {
                fprintf(stderr, "weft-proxy: at most 16 --proxy-protocol-port\n");
                return 2;
            }
            o.pp_ports[o.num_pp_ports++] = (uint16_t)n;
            break;
        case 'E':
        case 'D': {
            char err[160];
            if (o.num_egress == PROXY_MAX_EGRESS_RULES) {
                fprintf(stderr, "weft-proxy: at most %d --egress-allow/--egress-deny rules\n",
                        PROXY_MAX_EGRESS_RULES);
                return 2;
            }
            if (proxy_egress_parse(optarg, c == 'E', &o.egress[o.num_egress], err, sizeof(err)) !=
                WEFT_OK) {
                fprintf(stderr, "weft-proxy: %s %s: %s\n",
                        c == 'E' ? "--egress-allow" : "--egress-deny", optarg, err);
                return 2;
            }
            o.num_egress++;
            break;
        }
        case 'e':
            if (strcmp(optarg, "allow") != 0 && strcmp(optarg, "deny") != 0) {
                fprintf(stderr, "weft-proxy: --egress-default %s: allow or deny\n", optarg);
                return 2;
            }
            o.egress_deny = strcmp(optarg, "deny") == 0;
            break;
        case 'R':
            o.no_resumption = true;
            break;
        case 'L':
            o.probe_listen = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    bool allows = false;
    for (size_t i = 0; i < o.num_egress; i++) {
        allows = allows || o.egress[i].allow;
    }
    if (allows && !o.egress_deny) {
        fprintf(stderr, "weft-proxy: warning: --egress-allow only matters with --egress-default "
                        "deny (everything outside the mesh is allowed now)\n");
    }
    if (optind != argc) {
        fprintf(stderr, "weft-proxy: unexpected argument %s\n\n%s", argv[optind], usage);
        return 2;
    }
    return proxy_daemon_run(&o);
}
