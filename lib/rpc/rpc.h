/* lib/rpc/rpc.h: gRPC core services and clients in plain C, with protobuf-c messages.
 *
 * Server side: a dispatcher owns one completion queue that any number of gRPC servers share
 * (weft-ca serves its CA service on fds from tls_relay and its Admin service on a unix
 * socket), and runs every handler on the thread that calls rpc_server_poll. So a daemon's
 * state needs no lock: handlers, streams and the daemon's own timers all run on that thread.
 *
 * A unary handler gets the request bytes (already bounded by the method's max_request) and the
 * caller, fills a reply, and returns. A stream method is bidirectional: the handler hears of the
 * call opening, of each client message and of the call ending, and may send at any time from
 * the poll thread. Sends coalesce: a stream carries complete snapshots, so when a send is
 * still in flight only the newest message waits behind it.
 *
 * Calls to methods nobody registered are answered UNIMPLEMENTED at once (gRPC core would
 * otherwise queue them forever). Every call holds memory only until it ends. */
#ifndef WEFT_LIB_RPC_RPC_H
#define WEFT_LIB_RPC_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/base/err.h"
#include "lib/transport/peer.h"

#define RPC_MAX_METHODS 16  /* per service */
#define RPC_DETAILS_LEN 256 /* bytes of a status message */
#define RPC_DEFAULT_MAX_REQUEST (64 * 1024)

/* struct rpc_ctx is what a handler knows of its call. */
struct rpc_ctx {
    const char *method; /* "/weft.ca.v1.CA/AttestNode" */
    bool has_peer;      /* a service added with tls_peers: |peer| is the adopted fd's peer */
    struct weft_peer peer;
    const grpc_metadata_array *metadata; /* the request's; only while the handler or open runs */
};

/* rpc_ctx_header reports whether the request carried metadata |key| (lowercase) with exactly
 * the value |value|. */
bool rpc_ctx_header(const struct rpc_ctx *ctx, const char *key, const char *value);

/* struct rpc_reply is a unary handler's answer: status OK with |msg| packed as the response, or
 * another status with |details| for the caller. */
struct rpc_reply {
    grpc_status_code status;
    char details[RPC_DETAILS_LEN];
    const ProtobufCMessage *msg; /* borrowed until the handler returns; NULL: empty reply */
};

/* rpc_fail sets |r| to |status| with a printf-style message; returns |status| as an int for
 * chaining. */
int rpc_fail(struct rpc_reply *r, grpc_status_code status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct rpc_stream;

enum rpc_method_kind {
    RPC_UNARY = 0,
    RPC_STREAM, /* bidirectional: client messages in, server messages out */
};

/* struct rpc_method is one method of a service. Every callback runs on the poll thread. */
struct rpc_method {
    const char *path; /* "/package.Service/Method" */
    enum rpc_method_kind kind;
    size_t max_request; /* bytes of one client message; 0: RPC_DEFAULT_MAX_REQUEST */
    /* RPC_UNARY: answer |req| into |reply| (status OK and a NULL msg by default). */
    void (*unary)(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                  struct rpc_reply *reply);
    /* RPC_STREAM: a call opened. Return GRPC_STATUS_OK to keep it (rpc_stream_set_user may tie
     * state to it), or another status, with |details| filled, to end it at once; then nothing
     * else is called for it. */
    grpc_status_code (*open)(void *arg, const struct rpc_ctx *ctx, struct rpc_stream *s,
                             char details[RPC_DETAILS_LEN]);
    /* RPC_STREAM: one client message (at most max_request bytes: a longer one ends the call
     * RESOURCE_EXHAUSTED, and |closed| follows). */
    void (*message)(void *arg, struct rpc_stream *s, const uint8_t *msg, size_t len);
    /* RPC_STREAM: the call is over (the client left, was cancelled, or rpc_stream_finish was
     * called). Called once per opened call; |s| is gone after it returns. */
    void (*closed)(void *arg, struct rpc_stream *s);
};

/* struct rpc_service: methods served by one gRPC server, with their callbacks' argument. */
struct rpc_service {
    const struct rpc_method *methods;
    size_t num_methods;
    void *arg;
    /* tls_peers: the server's fds come through grpcfd_adopt (from tls_relay, or a unix socket
     * whose peers are local processes); a call whose peer grpcfd_call_peer cannot name is
     * refused UNAUTHENTICATED before any handler runs. */
    bool tls_peers;
};

struct rpc_server;

/* rpc_server_new makes a dispatcher with its completion queue (grpc_init first). */
struct rpc_server *rpc_server_new(void);

/* rpc_server_add registers |svc| on |gs|, a server created but not started, which the
 * dispatcher owns from then on. WEFT_ELIMIT past 4 servers or RPC_MAX_METHODS methods. */
WEFT_MUST_USE int rpc_server_add(struct rpc_server *s, grpc_server *gs,
                                 const struct rpc_service *svc);

/* rpc_server_start starts every server added and asks for their first calls. */
WEFT_MUST_USE int rpc_server_start(struct rpc_server *s);

/* rpc_server_poll runs the handlers of whatever happens within |timeout_ms|, then returns. */
void rpc_server_poll(struct rpc_server *s, int timeout_ms);

/* rpc_server_free shuts every server down (open streams are cancelled and see |closed|),
 * waits for their calls to end, and frees everything. Call rpc_server_shutdown's grpcfd
 * counterpart (grpcfd_server_close) first for servers fed by tls_relay. NULL does nothing. */
void rpc_server_free(struct rpc_server *s);

/* rpc_stream_send queues |m| on stream |s| (poll thread only). A message waiting behind a send
 * in flight is replaced by |m|. Returns WEFT_EIO once the stream is ending. */
WEFT_MUST_USE int rpc_stream_send(struct rpc_stream *s, const ProtobufCMessage *m);

/* rpc_stream_finish ends |s| with |status| after its queued message; |closed| follows. */
void rpc_stream_finish(struct rpc_stream *s, grpc_status_code status, const char *details);

void rpc_stream_set_user(struct rpc_stream *s, void *user);
void *rpc_stream_user(const struct rpc_stream *s);
const struct rpc_ctx *rpc_stream_ctx(const struct rpc_stream *s);

/* --- clients -------------------------------------------------------------------------------- */

/* struct rpc_status is how a client call ended. */
struct rpc_status {
    grpc_status_code code;
    char details[RPC_DETAILS_LEN];
};

/* rpc_call_unary makes one call of |method| on |ch| with |req|, waiting at most |timeout_ms|.
 * On status OK the response is unpacked with |resp_desc| into |*resp| (free it with
 * protobuf_c_message_free_unpacked). WEFT_OK only for status OK and a response that unpacks
 * (no more than |max_response| bytes); otherwise |*resp| is NULL and |st| says why (a response
 * that does not unpack is INTERNAL). */
WEFT_MUST_USE int rpc_call_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, size_t max_response,
                                 int timeout_ms, ProtobufCMessage **resp, struct rpc_status *st);

struct rpc_client_stream;

/* rpc_client_stream_open starts a bidirectional call of |method| on |ch| that lasts at most
 * |deadline_ms|. NULL if gRPC refuses. */
struct rpc_client_stream *rpc_client_stream_open(grpc_channel *ch, const char *method,
                                                 int64_t deadline_ms);

/* rpc_client_stream_open_md is rpc_client_stream_open sending |num_md| metadata entries. */
struct rpc_client_stream *rpc_client_stream_open_md(grpc_channel *ch, const char *method,
                                                    int64_t deadline_ms, const grpc_metadata *md,
                                                    size_t num_md);

/* rpc_client_stream_send sends |m|, waiting at most |timeout_ms|. WEFT_EIO if the call is over. */
WEFT_MUST_USE int rpc_client_stream_send(struct rpc_client_stream *cs, const ProtobufCMessage *m,
                                         int timeout_ms);

/* rpc_client_stream_recv waits at most |timeout_ms| for the next server message and unpacks
 * it. WEFT_EAGAIN when none came in time (the receive stays pending for the next call),
 * WEFT_EIO when the call is over (rpc_client_stream_status says how), WEFT_EPROTO when the
 * message does not unpack or exceeds |max_len|. */
WEFT_MUST_USE int rpc_client_stream_recv(struct rpc_client_stream *cs,
                                         const ProtobufCMessageDescriptor *desc, size_t max_len,
                                         int timeout_ms, ProtobufCMessage **out);

/* rpc_client_stream_status waits at most |timeout_ms| for the call's status (after the server
 * ended it, or after rpc_client_stream_close cancelled it). */
void rpc_client_stream_status(struct rpc_client_stream *cs, int timeout_ms, struct rpc_status *st);

/* rpc_client_stream_close cancels the call if it is still going, waits for it, and frees |cs|. */
void rpc_client_stream_close(struct rpc_client_stream *cs);

/* rpc_channel_unix makes a channel to a gRPC server on the unix socket |path| (insecure
 * credentials: the socket's mode is the access control). */
grpc_channel *rpc_channel_unix(const char *path);

#endif
