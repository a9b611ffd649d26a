/* agent/node.h: the agent's own identity, the node SVID spiffe://TD/weft/node/NAME (issue 5,
 * "Joining and staying joined").
 *
 * First start: a join token (or, in Kubernetes, the pod's projected service account token) and
 * the bootstrap bundle (a file the operator copies from the CA's
 * bundle.pem) -> AttestNode over TLS where only the CA is authenticated -> the node SVID and
 * the current bundle. The key and the SVID chain are kept together in one file of the state
 * directory (node.key, mode 0600, written atomically: a crash leaves the old pair or the new
 * one), with a copy of the chain for operators (node.pem) and the bundle (bundle.der), so a
 * restarted agent renews with RenewNode over mTLS and needs no new token. A node SVID that has
 * expired while the agent was down cannot renew itself: the agent then says it needs a new join
 * token.
 *
 * Every call here blocks (bounded by the RPC timeout); the agent makes them from its CA thread,
 * but for agent_node_call, which any thread may make.
 * Keys are ECDSA P-256, generated here, and never leave the process but for node.key. */
#ifndef WEFT_AGENT_NODE_H
#define WEFT_AGENT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/rpc/rpc.h"

#define AGENT_NODE_KEY "node.key"   /* the key and its chain */
#define AGENT_NODE_CHAIN "node.pem" /* the chain alone, for operators */
#define AGENT_NODE_BUNDLE "bundle.der"
#define AGENT_NODE_RPC_TIMEOUT_MS 10000

struct agent_node_config {
    const char *state_dir;        /* made 0700 if missing */
    const char *ca_addr;          /* "IPV4:PORT" or "[IPV6]:PORT" */
    const char *trust_domain;     /* "example.org" */
    const char *bootstrap_bundle; /* file: PEM, SPIFFE JSON or DER; used until the CA sends one */
};

struct agent_node;

/* agent_node_open reads the state directory (an identity kept from an earlier run, and the last
 * bundle) and prepares the CA client. It does not dial. */
WEFT_MUST_USE int agent_node_open(struct agent_node **out, const struct agent_node_config *cfg,
                                  char *err, size_t err_len);
void agent_node_free(struct agent_node *n);

/* agent_node_has_identity reports whether a node SVID valid at |now| is held. */
bool agent_node_has_identity(const struct agent_node *n, int64_t now);

/* agent_node_join redeems |token| (AttestNode) and stores the identity and bundle. */
WEFT_MUST_USE int agent_node_join(struct agent_node *n, const char *token, char *err,
                                  size_t err_len);

/* agent_node_join_psat is agent_node_join with a Kubernetes projected service account token of
 * the agent's pod (AttestNodeRequest.psat) instead of a join token: the CA names the node after
 * the token's node. */
WEFT_MUST_USE int agent_node_join_psat(struct agent_node *n, const char *psat, char *err,
                                       size_t err_len);

/* agent_node_renew replaces the node SVID (RenewNode with the current one) and stores it. */
WEFT_MUST_USE int agent_node_renew(struct agent_node *n, char *err, size_t err_len);

/* agent_node_set_bundle takes a new bundle (DER roots, as WatchNode sends it): later dials
 * trust it, and it is stored. */
WEFT_MUST_USE int agent_node_set_bundle(struct agent_node *n, const uint8_t *der, size_t len,
                                        char *err, size_t err_len);

/* agent_node_channel returns a channel to the CA presenting the node SVID, dialing when there
 * is none; agent_node_drop_channel forgets it after its calls fail UNAVAILABLE. The channel is
 * the node's: do not destroy it. */
WEFT_MUST_USE int agent_node_channel(struct agent_node *n, grpc_channel **out, char *err,
                                     size_t err_len);
void agent_node_drop_channel(struct agent_node *n);

/* agent_node_call makes one unary call (lib/rpc's rpc_call_unary) to the CA on the node's
 * channel from any thread; the channel is neither dialed nor dropped while it runs, so the CA
 * thread waits for it at most |timeout_ms|. It never dials: WEFT_EAGAIN (status UNAVAILABLE)
 * when the CA thread has no channel up. */
WEFT_MUST_USE int agent_node_call(struct agent_node *n, const char *method,
                                  const ProtobufCMessage *req,
                                  const ProtobufCMessageDescriptor *desc, size_t max_response,
                                  int timeout_ms, ProtobufCMessage **resp, struct rpc_status *st);

/* The identity held: its name, validity, chain (leaf first) and key; valid until the next
 * join or renew. */
const char *agent_node_name(const struct agent_node *n);
void agent_node_validity(const struct agent_node *n, int64_t *not_before, int64_t *not_after);
STACK_OF(X509) * agent_node_chain(const struct agent_node *n);
EVP_PKEY *agent_node_key(const struct agent_node *n);

#endif
