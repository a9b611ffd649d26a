/* proxy/agentclient.h: the proxy's view of its node agent (issue 6, "Identity and config from
 * the agent"): a thread of its own holds two streams on the agent's unix socket, the SPIFFE
 * Workload API's FetchX509SVID (the workload's SVID, key and bundles) and weft's
 * ProxyConfig/Watch (the policy compiled for the workload, the mesh directory, the deny list),
 * reconnects with backoff when either ends, and publishes what it learns as one immutable,
 * reference-counted state that the workers pick up for their next connection.
 *
 * Until the first SVID and the first configuration have come, the state is not ready and the
 * proxy refuses mesh traffic (fail closed). A state that was ready stays in force while the
 * agent is away, up to the SVID's notAfter (checked by whoever uses it). */
#ifndef WEFT_PROXY_AGENTCLIENT_H
#define WEFT_PROXY_AGENTCLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/base/err.h"
#include "lib/base/netaddr.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "policy/snapshot.h"

#define PROXY_AGENT_MAX_CLAIMS 16

struct proxy_dir_entry {
    char address[WEFT_ADDR_MAX]; /* canonical: "IP" or "IP:port" (lib/base/netaddr.h) */
    char *spiffe_id;
};

/* struct proxy_cert_info: one certificate of the SVID chain, for /certs. */
struct proxy_cert_info {
    char name[300]; /* the leaf's SPIFFE ID, else the subject ("/O=.../CN=...") */
    char serial[SPIFFE_SERIAL_HEX_LEN];
    int64_t not_before, not_after;
};

/* struct proxy_identity: the workload's SVID, from FetchX509SVID. */
struct proxy_identity {
    atomic_int refs;
    char spiffe_id[2049];
    uint8_t *chain; /* DER certificates, leaf first */
    size_t chain_len;
    uint8_t *key; /* PKCS#8 DER */
    size_t key_len;
    int64_t not_before, not_after;                       /* of the leaf */
    char serial[SPIFFE_SERIAL_HEX_LEN];                  /* of the leaf, lowercase hex */
    struct proxy_cert_info chain_info[SPIFFE_MAX_CHAIN]; /* leaf first */
    size_t num_chain;
    struct spiffe_bundle_set bundles; /* own trust domain, and federated ones */
};

/* struct proxy_config: from ProxyConfig/Watch. */
struct proxy_config {
    atomic_int refs;
    struct policy_snapshot *policy;
    uint64_t policy_version, directory_version, sequence;
    struct proxy_dir_entry *dir; /* sorted by address */
    size_t num_dir;
    char **deny_ids, **deny_serials; /* sorted; serials in lowercase hex */
    size_t num_deny_ids, num_deny_serials;
};

/* struct proxy_state is one consistent view, immutable once published; its parts are shared
 * with the states before and after it. */
struct proxy_state {
    atomic_int refs;
    uint64_t generation;       /* grows with every state published */
    struct proxy_identity *id; /* NULL until the first SVID */
    struct proxy_config *cfg;  /* NULL until the first configuration */
    bool foreign_cfg; /* the configuration was compiled for another workload than the SVID's */
};

/* proxy_state_ready: an SVID valid at |now| and a configuration compiled for the SVID's
 * workload (/ns/NS/sa/SA) are held. */
bool proxy_state_ready(const struct proxy_state *s, int64_t now);

/* proxy_state_lookup returns the SPIFFE ID the directory expects at |addr| (an AF_INET or
 * AF_INET6 sockaddr with its port): the "IP:port" entry, else the "IP" one; NULL when the
 * address is not in the mesh. */
const char *proxy_state_lookup(const struct proxy_state *s, const struct sockaddr *addr);

/* proxy_state_denied reports whether |spiffe_id| or |serial_hex| is on the deny list. */
bool proxy_state_denied(const struct proxy_state *s, const char *spiffe_id, const char *serial_hex);

struct proxy_identity *proxy_identity_ref(struct proxy_identity *id);
void proxy_identity_unref(struct proxy_identity *id);

struct proxy_state *proxy_state_ref(struct proxy_state *s);
void proxy_state_unref(struct proxy_state *s);

struct proxy_agent_config {
    const char *socket;    /* the agent's socket path */
    const char *spiffe_id; /* which of the workload's identities; NULL: its default */
    const char *claims[PROXY_AGENT_MAX_CLAIMS]; /* addresses for the directory ("IP[:port]") */
    size_t num_claims;
    /* called on the client's thread after each new state is published */
    void (*on_update)(void *arg, struct proxy_state *s);
    void *arg;
};

struct proxy_agent;

/* proxy_agent_start starts the client thread (call grpc_init first). */
WEFT_MUST_USE int proxy_agent_start(struct proxy_agent **out, const struct proxy_agent_config *cfg,
                                    char *err, size_t err_len);

/* proxy_agent_state returns the current state with a reference the caller drops with
 * proxy_state_unref; never NULL (an empty state before anything came). Any thread. */
struct proxy_state *proxy_agent_state(struct proxy_agent *pa);

/* proxy_agent_connected reports whether both streams are up. */
bool proxy_agent_connected(struct proxy_agent *pa);

/* proxy_agent_stop ends the streams and the thread, and frees |pa|. NULL does nothing. */
void proxy_agent_stop(struct proxy_agent *pa);

#endif
