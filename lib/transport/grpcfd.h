/* lib/transport/grpcfd.h: gRPC core over the relay's plaintext fds, and which verified peer a
 * server call came from (DESIGN.md §3: "the handler learns the peer identity from the TLS layer,
 * never from the request body").
 *
 * gRPC core (1.51) gives a server call on a channel made by grpc_server_add_channel_from_fd the
 * peer string "fd:<n>", n being the descriptor number it was given, and no auth context
 * (grpc_call_auth_context is NULL). The number stays that connection's while any call on it is
 * alive, because gRPC holds the descriptor open until its last call is gone. So grpcfd_adopt
 * records n -> verified peer (and the socket's inode) before gRPC reads a byte, and
 * grpcfd_call_peer turns a live call back into its peer. Anything else fails closed.
 *
 * The record is process-wide, like descriptor numbers themselves. */
#ifndef WEFT_LIB_TRANSPORT_GRPCFD_H
#define WEFT_LIB_TRANSPORT_GRPCFD_H

#include <grpc/grpc.h>

#include "lib/base/err.h"
#include "lib/transport/peer.h"

#define GRPCFD_MAX_FD (1 << 20) /* descriptor numbers grpcfd_adopt accepts: [0, GRPCFD_MAX_FD) */

struct grpcfd_server;

/* grpcfd_server_new wraps |server|, which the caller owns and has already started
 * (grpc_server_start: gRPC refuses fds before that). Never NULL. */
struct grpcfd_server *grpcfd_server_new(grpc_server *server);

/* grpcfd_adopt records |peer| for the connected stream socket |fd| and hands |fd| to the server
 * (grpc_server_add_channel_from_fd with insecure credentials: the bytes are the relay's
 * plaintext). |fd| belongs to gRPC, or is closed, from the call on, whatever it returns.
 * Returns WEFT_EINVAL once grpcfd_server_close has run (adding an fd to a destroyed server
 * crashes gRPC; the peer sees EOF instead) or for an fd that is not a socket, WEFT_ELIMIT for
 * an fd number of GRPCFD_MAX_FD or more. Safe from any thread. */
WEFT_MUST_USE int grpcfd_adopt(struct grpcfd_server *s, int fd, const struct weft_peer *peer);

/* grpcfd_on_peer is grpcfd_adopt as a tls_relay_server_ops.on_peer callback, |arg| being the
 * struct grpcfd_server. A refused fd is closed, and the relay then closes its TLS connection. */
void grpcfd_on_peer(void *arg, int fd, const struct weft_peer *peer);

/* grpcfd_call_peer writes into |out| the verified peer of |call|, a live server call. Returns
 * WEFT_ENOTFOUND, |out| zeroed, when the call's peer string is not exactly "fd:<n>", or n was
 * not adopted, or n is now another socket than the one adopted. */
WEFT_MUST_USE int grpcfd_call_peer(grpc_call *call, struct weft_peer *out);

/* grpcfd_peer_lookup is grpcfd_call_peer from a peer string (grpc_call_get_peer's). */
WEFT_MUST_USE int grpcfd_peer_lookup(struct weft_peer *out, const char *peer_str);

/* grpcfd_server_close refuses every later grpcfd_adopt. Call it before
 * grpc_server_shutdown_and_notify and grpc_server_destroy: once it returns, no adoption is
 * running or will run. Calls still in flight keep finding their peers. */
void grpcfd_server_close(struct grpcfd_server *s);

/* grpcfd_server_free closes |s| if needed, forgets the peers of its fds and frees it. Call it
 * once no call of the server is alive (after grpc_server_destroy), and once no relay may call
 * grpcfd_on_peer with it any more (after tls_relay_free). NULL does nothing. */
void grpcfd_server_free(struct grpcfd_server *s);

/* grpcfd_channel_new makes a client channel on |fd| (tls_relay_dial's plaintext end), with
 * insecure credentials and |authority| as the :authority of its calls. The channel owns |fd|;
 * the caller destroys it with grpc_channel_destroy. An fd channel never reconnects: once its
 * calls fail with UNAVAILABLE, dial again and make a new channel. NULL if gRPC refuses. */
grpc_channel *grpcfd_channel_new(int fd, const char *authority);

#endif
