/* lib/transport/tls_relay.h: mutual TLS 1.3 by BoringSSL in front of gRPC (DESIGN.md §3).
 *
 * A relay terminates TLS for any number of TCP connections on one libev loop thread of its own.
 * Once a peer is verified, the relay makes a socketpair(AF_UNIX, SOCK_STREAM): it pumps bytes
 * between TLS on the TCP socket and its end of the pair, and hands the other end, plaintext,
 * non-blocking and close-on-exec, to the caller, who gives it to gRPC core
 * (grpcfd_adopt on a server, grpcfd_channel_new on a client). gRPC never sees TLS, so its own
 * OpenSSL-linked TLS credentials are never used.
 *
 * Both sides present X509-SVIDs, and each verifies the other's presented chain with
 * spiffe_x509svid_verify against its bundle set, at the relay's clock. Only TLS 1.3 is spoken
 * and sessions are never resumed, so every connection is verified afresh. The one exception is a
 * listener with tls_relay_server_ops.client_cert_optional, which also lets in clients that
 * present no certificate at all (a node joining with a token): anonymous peers.
 *
 * When either side closes, the relay forwards what it already holds and then closes both the
 * TCP socket and its end of the pair: the holder of the plaintext end sees EOF. Nothing ever
 * reconnects: a client whose connection dies dials again.
 *
 * Functions other than the callbacks may be called from any thread except the relay's own. */
#ifndef WEFT_LIB_TRANSPORT_TLS_RELAY_H
#define WEFT_LIB_TRANSPORT_TLS_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/id.h"
#include "lib/transport/peer.h"

#define TLS_RELAY_DEFAULT_MAX_CONNS 1024
#define TLS_RELAY_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define TLS_RELAY_DEFAULT_MAX_ACCEPTS_PER_S 200
#define TLS_RELAY_MAX_ACCEPTS_PER_S 65536 /* the largest max_accepts_per_s tls_relay_new takes */
#define TLS_RELAY_BUF_LEN (16 * 1024)     /* bytes buffered per direction per connection */
#define TLS_RELAY_ERR_LEN 512             /* bytes of a reason; longer ones are truncated */

/* struct tls_relay_config: limits and clock. A zeroed config gives the defaults. */
struct tls_relay_config {
    size_t max_conns;             /* TCP connections, inbound and outbound, in any state */
    int64_t handshake_timeout_ms; /* from accept or dial to verified (dialing: to the server's
                                   * first byte) */
    unsigned max_accepts_per_s;   /* a listener accepts at most this many connections in any
                                   * one second (a sliding window, not calendar seconds); the
                                   * others are closed at once and reported to on_refused. 0:
                                   * TLS_RELAY_DEFAULT_MAX_ACCEPTS_PER_S */
    int64_t idle_timeout_ms;      /* a connection that is up (handed to on_peer or returned by
                                   * tls_relay_dial), dialed or accepted, is closed once no byte
                                   * has moved in either direction for this long; the holder of
                                   * the plaintext end sees EOF and on_refused is not called.
                                   * 0: never */
    int64_t (*now)(void *arg);    /* seconds since the epoch for certificate checks; NULL:
                                   * time(2). Called on the relay thread. */
    void *now_arg;
};

/* struct tls_relay_creds: one side's X509-SVID and what it trusts. Everything is borrowed for the
 * duration of the call it is passed to: the relay takes its own references to the chain and key
 * and copies the X.509 authorities of |bundles|, so the caller may free or change them after.
 * Only tls_relay_dial accepts |chain| and |key| both NULL: a client with no SVID yet. */
struct tls_relay_creds {
    STACK_OF(X509) * chain;                  /* leaf first, then the intermediates it carries */
    EVP_PKEY *key;                           /* the leaf's private key */
    const struct spiffe_bundle_set *bundles; /* authorities the peer's chain must lead to */
};

/* struct tls_relay_server_ops: what a listening relay calls, always on its own thread, and
 * whether it lets clients in without a certificate. None of the callbacks may block or call
 * tls_relay_* functions. */
struct tls_relay_server_ops {
    /* on_peer receives a verified client, or an anonymous one (see |client_cert_optional|). It
     * owns |plaintext_fd| from then on (grpcfd_on_peer adopts it into a gRPC server). |peer| is
     * valid for the call only. Required. */
    void (*on_peer)(void *arg, int plaintext_fd, const struct weft_peer *peer);
    /* authorize may refuse a client whose SVID verified, or an anonymous one; the client gets an
     * access_denied alert. NULL accepts every verified or anonymous client. */
    bool (*authorize)(void *arg, const struct weft_peer *peer);
    /* on_refused says why an inbound connection ended before reaching on_peer (failed
     * verification, timeout, connection limit or rate, ...). NULL: such refusals are silent. */
    void (*on_refused)(void *arg, const char *reason);
    void *arg;
    /* client_cert_optional: false (the default) refuses a client that presents no certificate,
     * with a certificate_required alert. True still requests one, and a client that presents a
     * chain is verified exactly as otherwise (a bad chain is refused), but a client that
     * presents none is let in as an anonymous peer: authorize and on_peer see a weft_peer that
     * is all zero, |peer->id.len| == 0 (no verified peer ever has an empty ID). A handler must
     * tell the two apart on every call, e.g. serve only a join (AttestNode) to an anonymous
     * peer. */
    bool client_cert_optional;
};

struct tls_relay;

/* tls_relay_new starts a relay and its loop thread. |cfg| may be NULL for the defaults. The
 * thread blocks SIGPIPE for itself, so a peer that resets never kills the process; no signal
 * disposition of the process changes. Returns WEFT_EINVAL for a negative timeout or a
 * max_accepts_per_s above TLS_RELAY_MAX_ACCEPTS_PER_S, WEFT_EIO if the loop or the thread
 * cannot be created. The caller frees |*out| with tls_relay_free. */
WEFT_MUST_USE int tls_relay_new(struct tls_relay **out, const struct tls_relay_config *cfg);

/* tls_relay_listen makes |r| accept TLS clients on |listen_fd| (a listening TCP socket), which
 * the relay owns from the call on, even when it fails. Each client must present an SVID that
 * verifies against |creds->bundles|, or nothing when |ops->client_cert_optional|, and pass
 * |ops->authorize|; it is then given to |ops->on_peer|. |*ops| is copied. A relay listens on one
 * socket at most. Returns WEFT_EINVAL for unusable credentials (no chain, a key that is not the
 * leaf's, ...) or a second listen, WEFT_ECRYPTO if BoringSSL refuses them. */
WEFT_MUST_USE int tls_relay_listen(struct tls_relay *r, int listen_fd,
                                   const struct tls_relay_creds *creds,
                                   const struct tls_relay_server_ops *ops);

/* tls_relay_set_server_creds replaces the listening credentials (SVID rotation, new bundles).
 * Handshakes that start afterwards use |creds|; those already running, and connections already
 * up, keep what they started with. Returns WEFT_EINVAL before tls_relay_listen, otherwise as
 * tls_relay_listen does for |creds|; on failure nothing changes. */
WEFT_MUST_USE int tls_relay_set_server_creds(struct tls_relay *r,
                                             const struct tls_relay_creds *creds);

/* tls_relay_dial runs a TLS client handshake on |net_fd|, a connected TCP socket the relay owns
 * from the call on, even when it fails. The server must present an SVID that verifies against
 * |creds->bundles| and names exactly |expect|. With |creds->chain| and |creds->key| both NULL
 * the client presents no certificate: only a listener with client_cert_optional lets it in
 * (others answer certificate_required, WEFT_EPOLICY), and the server is verified all the same.
 *
 * TLS 1.3 lets the client finish its handshake before the server has judged the client's
 * certificate, so tls_relay_dial waits for the server's first decrypted byte (gRPC's SETTINGS
 * frame): the protocol above must have the server speak first, as HTTP/2 does. It returns
 * within the handshake timeout.
 *
 * On WEFT_OK, |*out_fd| is the plaintext end for grpc_channel_create_from_fd, owned by the
 * caller, and |*out_peer| the server. Otherwise |*out_fd| is -1 and |err| (|err_len| bytes;
 * no reason is longer than TLS_RELAY_ERR_LEN - 1) says why:
 *  - WEFT_EPOLICY: the server's SVID failed verification or names another ID, or the server
 *    refused ours (its TLS alert is named);
 *  - WEFT_EIO: the connection failed, closed or timed out before the server's first byte;
 *  - WEFT_EPROTO: any other TLS failure;
 *  - WEFT_ELIMIT: the relay already holds its maximum number of connections;
 *  - WEFT_EINVAL: unusable |creds| (a chain without a key or the reverse, a key that is not
 *    the leaf's, ...), or a call from the relay's own thread;
 *  - WEFT_ECRYPTO: BoringSSL refused the credentials or a new connection. */
WEFT_MUST_USE int tls_relay_dial(struct tls_relay *r, int *out_fd, struct weft_peer *out_peer,
                                 int net_fd, const struct tls_relay_creds *creds,
                                 const struct spiffe_id *expect, char *err, size_t err_len);

/* tls_relay_num_conns returns how many TCP connections |r| holds right now, in any state. */
size_t tls_relay_num_conns(struct tls_relay *r);

/* tls_relay_free stops the loop thread and joins it, then closes every connection (both of each
 * one's sockets the relay holds), the listening socket, and frees |r|. A tls_relay_dial still
 * waiting returns WEFT_EIO. NULL does nothing. */
void tls_relay_free(struct tls_relay *r);

#endif
