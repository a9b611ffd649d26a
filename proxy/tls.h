/* proxy/tls.h: the sidecar's TLS transport (issue 6; STYLE.md §6). BoringSSL stays in tls.c.
 *
 * Mutual TLS 1.3 only, ALPN "weft/1" required both ways, X25519 preferred, 0-RTT off. Both sides
 * present X509-SVIDs; each verifies the other's chain with spiffe_x509svid_verify against the
 * bundle of the peer's trust domain at the current time, then checks the deny list (ID or leaf
 * serial). A client accepts the server only if its verified ID is exactly the one expected (the
 * strict posture).
 *
 * A full handshake verifies the peer's chain once per creds: the creds remember the SHA-256 of
 * each chain they verified (the last TLS_VERIFIED_CHAINS), and a later handshake presenting the
 * same bytes skips the path verification (two ECDSA verifications of the three a full
 * handshake makes per side) while every certificate of the chain, and every authority of the
 * peer's trust domain, is within its validity; the time, the deny list and the expected ID are
 * checked on every handshake. New creds (a new SVID, bundle or deny list) start with none.
 *
 * Credentials (struct tls_creds) are refcounted, and immutable but for what they remember (client
 * tickets, verified chains): a connection holds a reference to the creds it was made with, so a
 * rotation (new creds for new handshakes) never touches an established connection.
 *
 * Session resumption (TLS 1.3 tickets, psk_dhe_ke):
 *  - tickets are sealed with keys private to the creds' server SSL_CTX (random, in memory, never
 *    shared; BoringSSL also rotates them every 48 h), so new creds (a new SVID, bundle or deny
 *    list) invalidate every ticket issued under the old ones;
 *  - each ticket lives at most min(ticket_life_s, the earliest notAfter of the client's chain,
 *    of the server's chain) - now, on both sides: the server caps the session it seals, and a
 *    ticket renewed on resumption never outlives that cap;
 *  - a client keeps its tickets in its creds (up to TLS_TICKETS_PER_PEER per expected server
 *    ID, each used once, so parallel connections to one peer each resume) and offers one only
 *    to a connection expecting the same ID, and only while neither certificate has reached its
 *    notAfter;
 *  - on every resumed handshake both sides check the session's peer certificate again (notAfter
 *    and notBefore at now, deny list, and on a client the expected ID) before any data moves.
 *
 * Nothing here is tied to a thread: a tls_conn belongs to one thread at a time; tls_creds may be
 * shared between threads (its ticket store and verified chains have their own lock). */
#ifndef WEFT_PROXY_TLS_H
#define WEFT_PROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "lib/spiffe/bundle.h"
#include "proxy/xprt.h"

#define TLS_ALPN "weft/1"
#define TLS_DEFAULT_TICKET_LIFE_S 3600 /* one workload SVID's lifetime (DESIGN.md §2) */
#define TLS_MAX_TICKET_LIFE_S 86400    /* the longest ticket_life_s tls_creds_new takes */
#define TLS_MAX_DENY 65536             /* entries of each deny list */
#define TLS_MAX_CLIENT_SESSIONS 1024   /* tickets a client creds keeps, all server IDs together */
#define TLS_TICKETS_PER_PEER 4         /* of them for one server ID */
#define TLS_VERIFIED_CHAINS 256        /* peer chains a creds remembers having verified */
#define TLS_REASON_LEN 320             /* bytes of a reason, NUL included */

/* struct tls_creds_params: what tls_creds_new reads. Everything is borrowed for the call. */
struct tls_creds_params {
    const uint8_t *chain_der; /* the SVID chain, concatenated DER, leaf first */
    size_t chain_der_len;
    const uint8_t *key_der; /* the leaf's private key, PKCS#8 DER */
    size_t key_der_len;
    const struct spiffe_bundle_set *bundles; /* X.509 authorities, copied */
    const char *const *deny_ids;             /* SPIFFE IDs refused as peers */
    size_t num_deny_ids;
    const char *const *deny_serials; /* leaf serials refused, lowercase hex without colons */
    size_t num_deny_serials;
    int64_t ticket_life_s; /* upper bound of a session ticket's life; 0: the default; < 0: no
                            * tickets at all (every handshake is full) */
};

struct tls_creds;
struct tls_conn;

/* tls_creds_new makes credentials with one reference. Returns WEFT_EINVAL for a chain or key
 * that does not decode, a key that is not the leaf's, a leaf that breaks the SVID rules, no
 * bundles, or a ticket_life_s over TLS_MAX_TICKET_LIFE_S; WEFT_ELIMIT for a deny list over
 * TLS_MAX_DENY; WEFT_ECRYPTO when BoringSSL refuses them. The caller drops |*out| with
 * tls_creds_unref. */
WEFT_MUST_USE int tls_creds_new(struct tls_creds **out, const struct tls_creds_params *p);

/* tls_creds_ref takes a reference and returns |c|. */
struct tls_creds *tls_creds_ref(struct tls_creds *c);

/* tls_creds_unref drops a reference; the last one frees. NULL does nothing. */
void tls_creds_unref(struct tls_creds *c);

/* tls_creds_id returns the creds' own SPIFFE ID; tls_creds_not_after the earliest notAfter of
 * its chain (seconds since the epoch). */
const char *tls_creds_id(const struct tls_creds *c);
int64_t tls_creds_not_after(const struct tls_creds *c);

/* tls_creds_verified_hits counts the full handshakes whose peer chain |c| had verified before. */
uint64_t tls_creds_verified_hits(const struct tls_creds *c);

/* tls_conn_new_client starts a client on |fd|, a connected non-blocking stream socket the caller
 * keeps owning (tls_conn_free does not close it). The server must present exactly
 * |expected_spiffe_id|. A ticket from an earlier connection of |creds| to the same ID is offered
 * when one is still good. Returns WEFT_EINVAL for an expected ID that is not a SPIFFE ID,
 * WEFT_ECRYPTO when BoringSSL cannot make a connection. The conn takes a reference to |creds|. */
WEFT_MUST_USE int tls_conn_new_client(struct tls_conn **out, struct tls_creds *creds, int fd,
                                      const char *expected_spiffe_id);

/* tls_conn_new_server starts a server on |fd| (as above). Any client whose SVID verifies and is
 * not deny-listed passes: authorization is the caller's business, after the handshake. */
WEFT_MUST_USE int tls_conn_new_server(struct tls_conn **out, struct tls_creds *creds, int fd);

/* tls_conn_handshake advances the handshake as far as the socket allows. It returns WEFT_OK when
 * done (the peer verified: tls_conn_peer_* are set), WEFT_EAGAIN with |*out_want| set to
 * XPRT_WANT_READ or XPRT_WANT_WRITE (libev's EV_READ and EV_WRITE have the same values), or:
 *  - WEFT_EPOLICY: the peer's certificate was refused (tls_conn_reason: "peer certificate
 *    expired", "peer ID spiffe://… is deny-listed", "peer chain does not verify: …", ...), or the
 *    peer refused ours or our ALPN with an alert;
 *  - WEFT_EPROTO: any other TLS failure (a TLS 1.2 peer, no ALPN "weft/1", a bad record, ...);
 *  - WEFT_EIO: the socket failed or the peer closed it.
 * On WEFT_OK the caller sets side->xprt = &tls_xprt with ctx = |t|. In TLS 1.3 a client
 * finishes before the server has judged its certificate: a refusal then shows up on the first
 * tls_xprt.recv, as WEFT_EPOLICY with the server's alert in the reason. */
WEFT_MUST_USE int tls_conn_handshake(struct tls_conn *t, int *out_want);

/* Accessors, valid after tls_conn_handshake returned WEFT_OK ("" / 0 / false before): */
const char *tls_conn_peer_id(const struct tls_conn *t);     /* the verified SPIFFE ID */
const char *tls_conn_peer_serial(const struct tls_conn *t); /* leaf serial, lowercase hex */
int64_t tls_conn_peer_not_after(const struct tls_conn *t);  /* earliest notAfter of the chain */
bool tls_conn_resumed(const struct tls_conn *t);            /* an abbreviated handshake */
const char *tls_conn_version(const struct tls_conn *t);     /* "TLSv1.3" */
/* tls_conn_resume_until: on a server, until when the session of this connection may be
 * resumed; on a client, until when the last ticket it received may be offered. 0: none. */
int64_t tls_conn_resume_until(const struct tls_conn *t);

/* tls_conn_reason says why the last call failed ("" when nothing failed). The first failure
 * wins. The string lives as long as |t|. */
const char *tls_conn_reason(const struct tls_conn *t);

/* enum tls_cut: why a live connection is being closed by its proxy. */
enum tls_cut {
    TLS_CUT_EXPIRED, /* the peer's certificate reached notAfter: alert certificate_expired */
    TLS_CUT_REVOKED, /* the peer's ID or serial is on the deny list: certificate_revoked */
    TLS_CUT_DENIED,  /* the policy now denies the connection: access_denied */
};

/* tls_conn_cut tells the peer why its established connection is about to be closed, with a
 * fatal alert (best effort: a full socket drops it); its recv then fails with "peer sent TLS
 * alert ..." and what it means. The caller closes the connection right after. */
void tls_conn_cut(struct tls_conn *t, enum tls_cut why);

/* tls_conn_free releases the SSL and the creds reference; the fd stays open. NULL does
 * nothing. */
void tls_conn_free(struct tls_conn *t);

/* tls_xprt moves bytes through TLS (SSL_read, SSL_write, SSL_shutdown); ctx is a struct tls_conn
 * whose handshake is done and |fd| its socket. recv returns 0 on the peer's close_notify; a peer
 * that closes without one is an error (WEFT_EIO, a truncation). send may move fewer bytes than
 * asked; after WEFT_EAGAIN the next send must start with the same bytes, at least as many (the
 * buffer may move). shutdown sends close_notify then shuts the socket's write half; reading
 * stays possible. reason is tls_conn_reason. */
extern const struct xprt_ops tls_xprt;

#endif
