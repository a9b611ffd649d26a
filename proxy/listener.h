/* proxy/listener.h: listening sockets, the original destination of a redirected connection, and
 * the worker pool: N threads, each with its own libev loop, its own SO_REUSEPORT listeners
 * (the kernel spreads new connections over them) and its own connections (proxy/conn.h), so no
 * connection ever crosses threads. Drain (SIGTERM, DESIGN.md §6): stop accepting, let
 * connections finish until a deadline, close the rest with "drain deadline". */
#ifndef WEFT_PROXY_LISTENER_H
#define WEFT_PROXY_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "lib/base/err.h"
#include "lib/base/netaddr.h"
#include "proxy/conn.h"

#define PROXY_POOL_MAX_WORKERS 64
#define PROXY_POOL_MAX_ADDRS 8
#define PROXY_POOL_WORKERS_DEFAULT 2

/* proxy_listen opens a TCP socket listening on |addr| with SO_REUSEADDR and SO_REUSEPORT
 * (IPV6_V6ONLY for IPv6, so "[::]" and "0.0.0.0" are two listeners), non-blocking and
 * close-on-exec, and stores it in |*out_fd|. WEFT_EIO with errno set on failure. */
WEFT_MUST_USE int proxy_listen(int *out_fd, const struct sockaddr *addr, socklen_t addr_len,
                               int backlog);

/* proxy_original_dst reads, for the accepted |fd|, where the client meant to connect before
 * iptables REDIRECT changed it (SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for IPv6) into |out|
 * and |*out_len|. WEFT_ENOTFOUND when the connection was not redirected (no conntrack entry),
 * WEFT_EIO for other failures. */
WEFT_MUST_USE int proxy_original_dst(int fd, union weft_sockaddr *out, socklen_t *out_len);

/* proxy_accept_fn receives an accepted socket (non-blocking, close-on-exec; the callee owns it),
 * on the accepting worker's thread, with that worker's loop: connections made for it belong to
 * |pl|. |addr_idx| says which configured address accepted it. */
typedef void (*proxy_accept_fn)(struct proxy_loop *pl, int fd, const union weft_sockaddr *peer,
                                socklen_t peer_len, size_t addr_idx, void *arg);

/* struct proxy_listener watches one listening socket on one loop. */
struct proxy_listener {
    ev_io io;
    ev_timer pause; /* out of fds: stop accepting for a moment instead of spinning */
    int fd;
    size_t addr_idx;
    struct proxy_loop *pl;
    proxy_accept_fn on_accept;
    void *arg;
    uint64_t num_accepted;
};

/* proxy_listener_init watches |fd| (owned from now on) on |pl|'s loop; nothing runs until
 * proxy_listener_start. */
void proxy_listener_init(struct proxy_listener *l, struct proxy_loop *pl, int fd, size_t addr_idx,
                         proxy_accept_fn on_accept, void *arg);
void proxy_listener_start(struct proxy_listener *l);
/* proxy_listener_close stops accepting and closes the socket; safe to call twice. */
void proxy_listener_close(struct proxy_listener *l);

struct proxy_pool_cfg {
    size_t num_workers; /* 0: PROXY_POOL_WORKERS_DEFAULT; at most PROXY_POOL_MAX_WORKERS */
    const union weft_sockaddr *addrs;
    const socklen_t *addr_lens;
    size_t num_addrs; /* 1 .. PROXY_POOL_MAX_ADDRS */
    int backlog;      /* 0: 1024 */
    struct proxy_cfg conn_cfg;
    proxy_accept_fn on_accept;
    void *arg;
    /* on_tick, when set, runs on each worker's thread every |tick_s| seconds (0: 1 s), for work
     * on its live connections (proxy_loop_each) */
    void (*on_tick)(struct proxy_loop *pl, void *arg);
    double tick_s;
    /* bit i set: address i keeps accepting during a drain (the sidecar's outbound listeners:
     * the app may still be running and calling out); the others close when it begins */
    uint32_t keep_on_drain;
};

struct proxy_pool;

/* proxy_pool_start binds every address in every worker (port 0 is resolved by the first worker
 * and reused by the others, so they share it) and starts the threads. WEFT_EINVAL for a bad
 * config, WEFT_EIO (errno set) when a bind fails; nothing is left running on failure. */
WEFT_MUST_USE int proxy_pool_start(struct proxy_pool **out, const struct proxy_pool_cfg *cfg);

/* proxy_pool_bound_addr gives the address |addr_idx| is bound to (its port resolved). */
WEFT_MUST_USE int proxy_pool_bound_addr(const struct proxy_pool *p, size_t addr_idx,
                                        union weft_sockaddr *out, socklen_t *out_len);

size_t proxy_pool_num_workers(const struct proxy_pool *p);
/* proxy_pool_accepted counts the connections worker |i| accepted (any thread may read). */
uint64_t proxy_pool_accepted(const struct proxy_pool *p, size_t i);
/* proxy_pool_open_conns counts the connections still open across workers (any thread). */
size_t proxy_pool_open_conns(const struct proxy_pool *p);
/* proxy_pool_exited: every worker's loop has ended (after a drain). Any thread. */
bool proxy_pool_exited(const struct proxy_pool *p);
/* proxy_pool_buffered_bytes counts the relay buffer memory held across workers (any thread). */
size_t proxy_pool_buffered_bytes(const struct proxy_pool *p);

/* proxy_pool_drain (any thread) makes every worker close its listeners and let its
 * connections finish for at most |deadline_s| seconds, then close the rest with "drain
 * deadline" and exit its thread. |keep|: the listeners of keep_on_drain stay open and the
 * workers serve them until the deadline (a pod stopping while its app still runs); else a
 * worker exits as soon as its connections are done (a Job's app has finished). A second call
 * changes nothing, except that one without |keep| ends the keeping of an earlier one (its
 * deadline stays). Returns whether the drain in force keeps listeners. It does not wait;
 * proxy_pool_free does. */
bool proxy_pool_drain(struct proxy_pool *p, double deadline_s, bool keep);

/* proxy_pool_free drains with a zero deadline unless a drain was asked for, waits for every
 * thread and frees |p|. NULL does nothing. */
void proxy_pool_free(struct proxy_pool *p);

#endif
