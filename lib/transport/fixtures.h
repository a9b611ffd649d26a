/* lib/transport/fixtures.h: what lib/transport's tests share: SVIDs minted at test time, loopback
 * sockets, and a gRPC echo server whose one generic method answers with the caller's verified
 * SPIFFE ID (grpcfd_call_peer). Every wait here is bounded by FIXTURE_TIMEOUT_S. */
#ifndef WEFT_LIB_TRANSPORT_FIXTURES_H
#define WEFT_LIB_TRANSPORT_FIXTURES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <grpc/grpc.h>

#include "lib/spiffe/bundle.h"
#include "lib/transport/grpcfd.h"
#include "lib/transport/tls_relay.h"
#include "test/testlib/certs.h"

#define FIXTURE_SERVER_ID "spiffe://example.org/weft/server"
#define FIXTURE_NODE_A_ID "spiffe://example.org/weft/node/a"
#define FIXTURE_NODE_B_ID "spiffe://example.org/weft/node/b"
#define FIXTURE_AUTHORITY "weft-test"
#define FIXTURE_TIMEOUT_S 10
#define FIXTURE_MAX_CALLS 8

/* struct fixture_svid: a leaf SVID, its one-certificate chain, and both as relay credentials. */
struct fixture_svid {
    struct testlib_cred cred;
    STACK_OF(X509) * chain;
    struct tls_relay_creds creds; /* borrows the fields above and the pki's bundles */
};

/* struct fixture_pki: the trust domain example.org (|root|, in |bundles|) with a server and two
 * node SVIDs, and |rogue_a|: node/a's ID under |rogue_root|, another root of the same name that
 * no bundle holds. Everything is valid from TESTLIB_NOW - 1 h for a day. |anonymous| are dial
 * credentials with no SVID (a node that has yet to join) trusting |bundles|. */
struct fixture_pki {
    struct testlib_cred root, rogue_root;
    struct fixture_svid server, node_a, node_b, rogue_a;
    struct spiffe_bundle_set bundles;
    struct tls_relay_creds anonymous;
};

WEFT_MUST_USE int fixture_pki_mint(struct fixture_pki *pki);
void fixture_pki_cleanup(struct fixture_pki *pki);

/* fixture_svid_mint makes a leaf for |id| under |issuer| into |out|, trusting |bundles|. */
WEFT_MUST_USE int fixture_svid_mint(struct fixture_svid *out, const struct testlib_cred *issuer,
                                    const char *id, const struct spiffe_bundle_set *bundles);
void fixture_svid_cleanup(struct fixture_svid *s);

/* fixture_now is a tls_relay_config.now returning TESTLIB_NOW plus *(int64_t *)arg when |arg| is
 * not NULL. */
int64_t fixture_now(void *arg);

/* fixture_id parses |s|, which must be a valid SPIFFE ID. */
struct spiffe_id fixture_id(const char *s);

/* fixture_listen returns a socket listening on 127.0.0.1 at a free port (in |*out_port|), or -1. */
int fixture_listen(int *out_port);

/* fixture_connect returns a socket connected to 127.0.0.1:|port|, or -1. */
int fixture_connect(int port);

/* fixture_read_exact reads |len| bytes from the non-blocking |fd| within the timeout. Returns
 * whether it got them all. */
bool fixture_read_exact(int fd, void *buf, size_t len);

/* fixture_wait_eof reports whether |fd| reaches end of file (or a reset) within the timeout,
 * discarding what it reads. */
bool fixture_wait_eof(int fd);

/* struct fixture_echo: a gRPC server with no port of its own, fed fds by grpcfd_adopt
 * (grpcfd_on_peer with |fds|), and a thread answering every method: the reply is the caller's
 * SPIFFE ID with status OK, or no message and PERMISSION_DENIED when grpcfd_call_peer fails. */
struct fixture_echo {
    grpc_server *server;
    grpc_completion_queue *cq;
    struct grpcfd_server *fds;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the fields below; a call is counted before it is answered */
    int num_calls;
    int num_denied;
    int num_errors;                        /* batches gRPC refused or that timed out */
    char peer_strs[FIXTURE_MAX_CALLS][32]; /* grpc_call_get_peer of each call, in order */
};

/* fixture_echo_start calls grpc_init and starts the server and its thread. */
void fixture_echo_start(struct fixture_echo *e);

/* fixture_echo_stop closes |e->fds|, shuts the server down (cancelling calls), joins the thread
 * and destroys the server. fixture_echo_free then frees |e->fds| (after every relay feeding it
 * is freed) and calls grpc_shutdown. */
void fixture_echo_stop(struct fixture_echo *e);
void fixture_echo_free(struct fixture_echo *e);

/* fixture_unary makes one call on |ch| and returns its status; the reply's bytes go to |out| as
 * a string (empty when there is none). */
grpc_status_code fixture_unary(grpc_channel *ch, char *out, size_t out_len);

#endif
