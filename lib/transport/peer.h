/* lib/transport/peer.h: who is at the other end of a verified connection. Shared by tls_relay.h
 * (which learns it from the TLS handshake), the agent's unix socket (which learns it from the
 * kernel) and grpcfd.h (which gives it to a gRPC handler). */
#ifndef WEFT_LIB_TRANSPORT_PEER_H
#define WEFT_LIB_TRANSPORT_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/spiffe/id.h"

/* struct weft_peer is a peer whose X509-SVID passed spiffe_x509svid_verify, or an anonymous
 * client, which only a listener with tls_relay_server_ops.client_cert_optional lets in: then every
 * field is zero and |id.len| is 0, which a verified peer's ID never is. */
struct weft_peer {
    struct spiffe_id id;         /* the leaf's SPIFFE ID */
    int64_t not_after;           /* seconds since the epoch: the earliest notAfter of the presented
                                  * chain, after which the identity is no longer vouched for; a
                                  * handler compares it with its clock on every call, since a
                                  * connection outlives the check made at its handshake */
    char serial_hex[2 * 20 + 1]; /* the leaf's serial, lowercase hex, for deny-list checks */
    /* A local process on a unix socket instead (|id| then empty): the credentials the kernel
     * recorded when it connected (SO_PEERCRED) and its start time, against pid reuse. */
    struct {
        bool set;
        pid_t pid;
        uid_t uid;
        gid_t gid;
        uint64_t start_time;
    } local;
};

#endif
