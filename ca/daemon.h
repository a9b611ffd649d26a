/* ca/daemon.h: weft-ca, the process (issue 4). ca/main.c reads the flags into struct
 * ca_daemon_opts and calls ca_daemon_run, which:
 *
 *  1. makes the CA material on a first start when |self_signed| (ca/material.h);
 *  2. opens the store: it holds the root rotation's phase and the bundle sequence, which root
 *     key slot signs, the published JWT-SVID keys, and the bundle of record once a root
 *     rotation has changed it (else bundle.pem);
 *  3. starts the signer child before any thread exists (it alone reads the keys, and mints a
 *     fresh intermediate when the signing root's key is in its slot);
 *  4. binds the CA listener, the admin socket and the metrics port;
 *  5. when started as root, drops to |run_as| (the parent then cannot read the key files);
 *  6. has the signer make a JWT-SVID signing key that signs at once (ca/jwt_keys.h: the one
 *     time a key signs before agents can have seen it), beside the keys the previous process
 *     published whose tokens may still be valid;
 *  7. asks the signer for its own serving SVID spiffe://TD/weft/ca (key in memory only,
 *     renewed at half-life) and serves:
 *       - weft.ca.v1.CA over TLS 1.3 by BoringSSL (lib/transport): AttestNode from clients
 *         with no certificate (the join token, or a Kubernetes service account token when
 *         |psat_issuer| is set, is the credential), everything else from nodes
 *         presenting their node SVID;
 *       - weft.ca.v1.Admin on a unix socket, mode 0600 (0660 with |admin_group|);
 *       - Prometheus text on /metrics and /ready on the HTTP admin port;
 *  8. runs every handler, timer, rotation step and WatchNode push on one thread, until SIGTERM
 *     or SIGINT, or until the signer dies (exit 1). */
#ifndef WEFT_CA_DAEMON_H
#define WEFT_CA_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/spiffe/x509svid.h"

#define CA_DEFAULT_LISTEN "0.0.0.0:8443"
#define CA_DEFAULT_HTTP "127.0.0.1:9090"
#define CA_ADMIN_SOCKET_NAME "admin.sock" /* in the data directory unless --admin-socket */
#define CA_STORE_NAME "ca.db"

struct ca_daemon_opts {
    const char *data_dir;
    const char *trust_domain; /* needed with self_signed; else read from the bundle */
    bool self_signed;
    enum spiffe_key_type key_type;
    const char *listen;          /* "HOST:PORT" for the CA service */
    const char *admin_socket;    /* path */
    const char *admin_group;     /* NULL: 0600, owner only */
    const char *http;            /* "HOST:PORT" for /metrics and /ready; "" disables */
    const char *policy_dir;      /* NULL: no policy is distributed (unless policy_kube) */
    bool policy_kube;            /* policy from the Kubernetes API instead of policy_dir */
    const char *kube_api;        /* NULL: in-cluster (KUBERNETES_SERVICE_HOST/PORT) */
    const char *kube_token_file; /* NULL: the service account's (in-cluster), else none */
    const char *kube_ca_file;    /* NULL: the service account's (in-cluster), else system */
    const char *run_as;          /* user to drop to when started as root; NULL: "nobody" */
    int64_t node_ttl_s;
    int64_t root_ttl_s;         /* for self_signed, and a root rotation's new root */
    int64_t intermediate_ttl_s; /* for self_signed, and every intermediate the CA mints */
    int64_t jwt_ttl_s; /* JWT-SVID lifetime, CA_JWT_MIN_TTL_S..CA_JWT_MAX_TTL_S (main.c checks) */
    int64_t directory_ttl_s;
    int64_t reconnect_grace_s; /* root rotation: wait this long after start for agents */
    int64_t policy_poll_ms;
    unsigned max_streams_per_node;
    unsigned max_conns;
    /* node attestation with Kubernetes service account tokens (ca/psat.h); off when
     * |psat_issuer| is NULL, else |psat_jwks| is a JWKS file */
    const char *psat_issuer;
    const char *psat_jwks;
    const char *psat_audience;          /* NULL: CA_PSAT_DEFAULT_AUDIENCE */
    const char *psat_cluster;           /* NULL: CA_PSAT_DEFAULT_CLUSTER */
    const char *const *psat_allowed_sa; /* "NS:NAME"; none: CA_PSAT_DEFAULT_SA */
    size_t num_psat_allowed_sa;
};

/* ca_daemon_run runs weft-ca until a signal stops it; returns the process exit status (0 after
 * a clean stop, 1 when it could not start, saying why on stderr). */
int ca_daemon_run(const struct ca_daemon_opts *o);

#endif
