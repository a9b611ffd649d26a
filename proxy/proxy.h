/* proxy/proxy.h: weft-proxy, the sidecar (issue 6; DESIGN.md §4): the pieces put together.
 *
 *   - identity and configuration from the agent (proxy/agentclient.h); TLS credentials
 *     (proxy/tls.h) made again whenever the SVID, the bundles or the deny list change; new
 *     handshakes use the newest, established connections keep theirs;
 *   - outbound (:15001): the original destination (SO_ORIGINAL_DST), looked up in the mesh
 *     directory: a meshed workload gets TLS 1.3 with ALPN weft/1 and must present exactly the
 *     SPIFFE ID the directory names; anything else passes through as plain TCP;
 *   - inbound (:15006): STRICT ports take mTLS only; PERMISSIVE ports peek at the first bytes
 *     (proxy/sniff.h) without blocking a server-first protocol (after --permissive-wait-ms of
 *     silence the connection is plaintext); the peer's verified ID and the port are judged by
 *     the compiled policy before the app is dialled, at the original destination (the pod's
 *     own address, so an app bound to 127.0.0.1 is not exposed);
 *   - optionally per inbound port (--proxy-protocol-port), a PROXY protocol v2 header to the
 *     app first, carrying the original source and the peer's SPIFFE ID;
 *   - one access-log line per connection (proxy/accesslog.h), Prometheus metrics, and the admin
 *     port: /ready, /live, /metrics, /certs, /config, POST /quitquitquit;
 *   - until the first SVID and configuration have come, mesh traffic is refused (fail closed);
 *   - every second each worker checks its live connections again: a peer whose certificate
 *     reached notAfter, a peer on the deny list, or a connection the policy now denies is
 *     closed, with the reason in the access log.
 *
 * SIGTERM, SIGINT and /quitquitquit drain: stop accepting, let connections finish until the
 * drain deadline, then exit. */
#ifndef WEFT_PROXY_PROXY_H
#define WEFT_PROXY_PROXY_H

#include <stddef.h>

#include "lib/base/netaddr.h"
#include "proxy/agentclient.h"

#define PROXY_DEFAULT_AGENT_SOCKET "/run/weft/agent.sock"
#define PROXY_DEFAULT_ADMIN "127.0.0.1:15000"
#define PROXY_DEFAULT_OUTBOUND_PORT 15001
#define PROXY_DEFAULT_INBOUND_PORT 15006
#define PROXY_DEFAULT_PERMISSIVE_WAIT_MS 200
#define PROXY_DEFAULT_DRAIN_S 20
#define PROXY_MAX_EGRESS_RULES 64

/* struct proxy_egress_rule: one --egress-allow or --egress-deny, "CIDR[:PORT[-PORT]]". */
struct proxy_egress_rule {
    bool allow;
    struct weft_cidr net;
    uint16_t port_lo, port_hi; /* 1..65535 when no port was given */
};

/* proxy_egress_parse reads "CIDR", "CIDR:PORT" or "CIDR:LO-HI" ("10.0.0.0/8:443",
 * "fd00::/8:8000-8999": the ports follow the prefix length). WEFT_EINVAL, with what was wrong
 * in |err|, for anything else. */
WEFT_MUST_USE int proxy_egress_parse(const char *s, bool allow, struct proxy_egress_rule *out,
                                     char *err, size_t err_len);

struct proxy_opts {
    const char *agent_socket;
    const char *spiffe_id; /* NULL: the workload's default identity */
    const char *claims[PROXY_AGENT_MAX_CLAIMS];
    size_t num_claims;
    size_t workers;    /* 0: 2 */
    int outbound_port; /* 0: 15001 */
    int inbound_port;  /* 0: 15006 */
    const char *admin; /* NULL: 127.0.0.1:15000 */
    int permissive_wait_ms;
    double drain_s;
    double idle_s; /* 0: the relay's default */
    /* inbound ports whose app is sent a PROXY protocol v2 header first (proxy/proxyv2.h): the
     * original source and, for an mTLS peer, its SPIFFE ID (TLV 0xE0) */
    uint16_t pp_ports[16];
    size_t num_pp_ports;
    /* outbound destinations, judged before they are dialled: any matching deny rule refuses;
     * a mesh destination is otherwise allowed; another needs a matching allow rule when
     * |egress_deny| (the default for destinations outside the mesh) is set */
    struct proxy_egress_rule egress[PROXY_MAX_EGRESS_RULES];
    size_t num_egress;
    bool egress_deny;
    bool no_resumption; /* no TLS session tickets: every handshake is full */
    /* the kubelet's probe port (proxy/probes.h): /ready and the app probes WEFT_APP_PROBES
     * names; NULL: none */
    const char *probe_listen;
};

/* proxy_daemon_run runs weft-proxy until a signal or /quitquitquit and the drain; returns the
 * exit status (0 after a clean stop, 1 when it could not start, saying why on stderr). */
int proxy_daemon_run(const struct proxy_opts *o);

#endif
