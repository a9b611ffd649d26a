/* proxy/conn.h: one proxied connection, the relay between two sockets (STYLE.md §5).
 *
 * A struct proxy_conn joins two sides: |down| (the accepted socket, the workload or the mesh
 * peer) and |up| (the socket the proxy connects). Each side moves bytes through its own
 * struct xprt_ops (plain_xprt, or tls_xprt once a handshake is done), so the relay never asks
 * whether a side is TLS. Bytes read from one side wait in that side's buffer (the loop's
 * |buf_cap|, 64 KiB by default, held only while bytes wait) until the other side takes them;
 * while it is full, the proxy
 * stops reading that side (backpressure), so a connection never holds more than |buf_cap| per
 * direction.
 *
 * Life of a connection, all on one libev loop (one thread):
 *   proxy_conn_new(pl, down_fd, cbs, arg)      SETUP: nothing is read yet
 *   proxy_conn_connect(c, addr, len)           non-blocking connect of |up|, connect timeout;
 *     or proxy_conn_set_up_fd(c, fd)           an already connected |up| (a socketpair, a test)
 *   cbs->on_connected(c, arg)                  |up| is connected; NULL: relay at once
 *   proxy_conn_handshake(c, side, fn, ...)     optional, per side: the relay drives |fn| on the
 *                                              side's fd until it completes, then calls back;
 *                                              the caller installs its ops with
 *                                              proxy_conn_set_xprt
 *   proxy_conn_start(c)                        RELAY: forward both ways, half-close, idle timer
 *   proxy_conn_close(c, reason)                the one way out, from anywhere; |c| is gone after
 *
 * A direction is done when its source has sent EOF, its buffer has drained and the other side's
 * sending half is shut (xprt shutdown). The connection closes with reason "done" when both
 * directions are. */
#ifndef WEFT_PROXY_CONN_H
#define WEFT_PROXY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "lib/base/err.h"
#include "proxy/xprt.h"

#ifndef container_of
/* the usual one [h2o H2O_STRUCT_FROM_MEMBER]; lib/base has none yet */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define PROXY_BUF_CAP_DEFAULT (64 * 1024)
#define PROXY_BUF_CAP_MIN 1024
#define PROXY_BUF_CAP_MAX (16 * 1024 * 1024)

/* Reasons proxy_conn_close is given by the relay itself (static strings; compare by value). */
#define PROXY_REASON_DONE "done"
#define PROXY_REASON_IDLE "idle timeout"
#define PROXY_REASON_CONNECT_REFUSED "connect refused"
#define PROXY_REASON_CONNECT_TIMEOUT "connect timeout"
#define PROXY_REASON_CONNECT_FAILED "connect failed"
#define PROXY_REASON_HANDSHAKE_TIMEOUT "handshake timeout"
#define PROXY_REASON_DRAIN_DEADLINE "drain deadline"
#define PROXY_REASON_SHUTDOWN "proxy shutdown"

/* struct proxy_cfg is what every connection of a loop shares. Zero fields take the defaults. */
struct proxy_cfg {
    size_t buf_cap;             /* bytes buffered per direction; default 64 KiB */
    double idle_timeout_s;      /* no byte either way for this long closes; 0: 300 s; <0: none */
    double connect_timeout_s;   /* 0: 10 s */
    double handshake_timeout_s; /* 0: 10 s */
};

/* struct proxy_loop is one worker's relay state: its libev loop (borrowed), the shared config
 * and the list of live connections (for drain and counting). Embed it or allocate it; one
 * thread uses it. */
struct proxy_loop {
    struct ev_loop *loop;
    struct proxy_cfg cfg;
    struct proxy_conn *conns; /* live connections, doubly linked */
    size_t num_conns;
    size_t num_bufs; /* relay buffers allocated now (each buf_cap bytes), across conns */
    uint64_t num_closed;
};

/* proxy_loop_init sets |pl| up on |loop| with |cfg| (NULL: defaults); the limits are applied
 * (buf_cap within PROXY_BUF_CAP_MIN..MAX). */
void proxy_loop_init(struct proxy_loop *pl, struct ev_loop *loop, const struct proxy_cfg *cfg);
/* proxy_loop_close_all closes every live connection with |reason|. */
void proxy_loop_close_all(struct proxy_loop *pl, const char *reason);

/* proxy_loop_each calls |fn| for every live connection of |pl| (on its thread); |fn| may close
 * the connection it is given. */
void proxy_loop_each(struct proxy_loop *pl, void (*fn)(struct proxy_conn *c, void *arg), void *arg);

enum proxy_side_id { PROXY_DOWN = 0, PROXY_UP = 1 };

/* struct proxy_conn_stats is what the access log needs, handed to on_close and readable any
 * time with proxy_conn_get_stats. */
struct proxy_conn_stats {
    uint64_t bytes_down_to_up;  /* bytes sent to |up| */
    uint64_t bytes_up_to_down;  /* bytes sent to |down| */
    size_t max_held_down_to_up; /* high-water mark of the down->up buffer, <= buf_cap */
    size_t max_held_up_to_down; /* high-water mark of the up->down buffer, <= buf_cap */
    size_t buf_cap;
    ev_tstamp start; /* ev_now when proxy_conn_new ran */
    ev_tstamp end;   /* ev_now at close; 0 while open */
};

struct proxy_conn;

struct proxy_conn_cbs {
    /* on_connected: |up| is connected (after proxy_conn_connect). The caller may start
     * handshakes or call proxy_conn_start. NULL: proxy_conn_start at once. */
    void (*on_connected)(struct proxy_conn *c, void *arg);
    /* on_close: the connection is closing with |reason| (static or living as long as the
     * caller's reason string); the fds are still open, |c| is freed right after. May be NULL. */
    void (*on_close)(struct proxy_conn *c, const struct proxy_conn_stats *st, const char *reason,
                     void *arg);
};

/* proxy_handshake_fn advances a handshake on |fd| as far as it can: WEFT_OK when done,
 * WEFT_EAGAIN with |*want| set (XPRT_WANT_READ / XPRT_WANT_WRITE), or a WEFT_E* error. */
typedef int (*proxy_handshake_fn)(void *hs_ctx, int fd, int *want);
/* proxy_handshake_done_fn is called once the handshake on |side| returned WEFT_OK. */
typedef void (*proxy_handshake_done_fn)(struct proxy_conn *c, enum proxy_side_id side, void *arg);

/* proxy_set_nodelay turns Nagle's algorithm off on a TCP socket. A relay forwards what it has
 * at once: holding a small write for the peer's ACK meets the peer's delayed ACK, and a TLS
 * handshake's flights then wait 40 ms each. */
void proxy_set_nodelay(int fd);

/* proxy_conn_new takes |down_fd| (non-blocking; the conn closes it from now on, also on
 * failure) and returns a connection in SETUP on |pl|. Aborts on OOM. A direction's buffer
 * (|pl->cfg.buf_cap| bytes) is allocated when bytes are about to be read into it and freed
 * when it is empty again, so an idle connection holds none. Both sides start with plain_xprt. */
struct proxy_conn *proxy_conn_new(struct proxy_loop *pl, int down_fd,
                                  const struct proxy_conn_cbs *cbs, void *arg);

/* proxy_conn_connect starts a non-blocking connect of |up| to |addr|. WEFT_OK: the result comes
 * later (on_connected, or proxy_conn_close with "connect refused" / "connect timeout" /
 * "connect failed"), possibly before this returns only if it fails synchronously, in which case
 * the connection is already closed and WEFT_EIO is returned: do not touch |c| then. */
WEFT_MUST_USE int proxy_conn_connect(struct proxy_conn *c, const struct sockaddr *addr,
                                     socklen_t addr_len);

/* proxy_conn_set_up_fd gives |c| an already connected, non-blocking |up| socket it owns from now
 * on. on_connected is not called. */
void proxy_conn_set_up_fd(struct proxy_conn *c, int fd);

/* proxy_conn_set_xprt installs |ops| with |ctx| on |side|; |ctx_free| (may be NULL) is called on
 * |ctx| at close, after on_close and before the fds are closed (STYLE.md §5 order), however the
 * connection ends: until on_close returns, a borrowed pointer to |ctx| stays good.
 * The relay calls |ops| only after proxy_conn_start, so a caller may install its transport
 * before the handshake (to hand over ownership of a tls_conn at once) or in the handshake's
 * done callback. Replacing an installed ctx does not free the old one. */
void proxy_conn_set_xprt(struct proxy_conn *c, enum proxy_side_id side, const struct xprt_ops *ops,
                         void *ctx, void (*ctx_free)(void *ctx));

/* proxy_conn_handshake drives |fn|(|hs_ctx|, fd, &want) on |side| until it returns WEFT_OK, then
 * calls |done|(c, side, arg). An error closes the connection with |reason_fn|(hs_ctx) when that
 * gives one, else weft_strerror; the handshake timeout closes with "handshake timeout". The
 * side must have its fd (|up| connected). Both sides may handshake at once. */
void proxy_conn_handshake(struct proxy_conn *c, enum proxy_side_id side, proxy_handshake_fn fn,
                          const char *(*reason_fn)(void *hs_ctx), void *hs_ctx,
                          proxy_handshake_done_fn done, void *arg);

/* proxy_conn_start begins relaying. Both sides must have their fds, no handshake running. */
void proxy_conn_start(struct proxy_conn *c);

/* proxy_conn_close stops every watcher, calls on_close with the stats and |reason|, frees the
 * xprt contexts, closes both fds and frees |c|. */
void proxy_conn_close(struct proxy_conn *c, const char *reason);

/* proxy_conn_get_stats copies the counters so far. */
void proxy_conn_get_stats(const struct proxy_conn *c, struct proxy_conn_stats *out);

/* proxy_conn_get_fd returns |side|'s fd (-1 when |up| has none yet), for SO_ORIGINAL_DST or
 * getpeername. */
int proxy_conn_get_fd(const struct proxy_conn *c, enum proxy_side_id side);

/* proxy_conn_get_arg returns the |arg| given to proxy_conn_new. */
void *proxy_conn_get_arg(const struct proxy_conn *c);

#endif
