/* proxy/listener.c: listeners, SO_ORIGINAL_DST and the worker pool (see listener.h). */
#include "proxy/listener.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"

/* Accepts per wakeup, so one busy listener cannot starve the loop's connections. */
#define ACCEPT_BATCH 64
/* How long to stop accepting when out of fds or memory (EMFILE and friends). */
#define ACCEPT_PAUSE_S 0.1

struct worker {
    struct proxy_pool *pool;
    size_t idx;
    pthread_t th;
    bool started;
    struct ev_loop *loop;
    struct proxy_loop pl;
    struct proxy_listener ls[PROXY_POOL_MAX_ADDRS];
    size_t num_ls;
    ev_async wake;     /* another thread asked for a drain */
    ev_timer deadline; /* the drain deadline */
    ev_prepare idle;   /* each turn: publish the open count, end a finished drain */
    ev_timer tick;     /* the pool's on_tick */
    bool draining;
    _Atomic uint64_t accepted;
    _Atomic size_t open_conns;
    _Atomic size_t bufs; /* relay buffers held */
    _Atomic bool exited; /* its loop has ended */
};

struct proxy_pool {
    union weft_sockaddr addrs[PROXY_POOL_MAX_ADDRS];
    socklen_t addr_lens[PROXY_POOL_MAX_ADDRS];
    size_t num_addrs;
    int backlog;
    struct proxy_cfg conn_cfg;
    proxy_accept_fn on_accept;
    void *arg;
    void (*on_tick)(struct proxy_loop *pl, void *arg);
    double tick_s;
    uint32_t keep_on_drain;
    size_t num_workers;
    struct worker *workers;
    _Atomic bool drain_asked;
    _Atomic bool drain_keep; /* keep_on_drain applies: run until the deadline */
    _Atomic long long drain_deadline_ms;
};

static void on_listen_ready(struct ev_loop *loop, ev_io *w, int revents);
static void on_listen_pause(struct ev_loop *loop, ev_timer *w, int revents);
static void on_wake(struct ev_loop *loop, ev_async *w, int revents);
static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents);
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents);
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents);
static void pool_on_accept(struct proxy_loop *pl, int fd, const union weft_sockaddr *peer,
                           socklen_t peer_len, size_t addr_idx, void *arg);
static void *worker_main(void *arg);

int proxy_listen(int *out_fd, const struct sockaddr *addr, socklen_t addr_len, int backlog)
{
    *out_fd = -1;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return WEFT_EIO;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        (addr->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, addr, addr_len) != 0 || listen(fd, backlog) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return WEFT_EIO;
    }
    *out_fd = fd;
    return WEFT_OK;
}

int proxy_original_dst(int fd, union weft_sockaddr *out, socklen_t *out_len)
{
    union weft_sockaddr local;
    socklen_t len = sizeof(local);
    memset(out, 0, sizeof(*out));
    if (getsockname(fd, &local.sa, &len) != 0) {
        return WEFT_EIO;
    }
    int rc;
    if (local.sa.sa_family == AF_INET6) {
        len = sizeof(out->in6);
        rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &out->in6, &len);
    } else if (local.sa.sa_family == AF_INET) {
        len = sizeof(out->in4);
        rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &out->in4, &len);
    } else {
        return WEFT_EINVAL;
    }
    if (rc != 0) {
        /* ENOENT: conntrack has no entry, the connection came in without a REDIRECT. */
        return errno == ENOENT ? WEFT_ENOTFOUND : WEFT_EIO;
    }
    *out_len = len;
    return WEFT_OK;
}

/* ---- a listener ---- */

void proxy_listener_init(struct proxy_listener *l, struct proxy_loop *pl, int fd, size_t addr_idx,
                         proxy_accept_fn on_accept, void *arg)
{
    memset(l, 0, sizeof(*l));
    l->fd = fd;
    l->addr_idx = addr_idx;
    l->pl = pl;
    l->on_accept = on_accept;
    l->arg = arg;
    ev_io_init(&l->io, on_listen_ready, fd, EV_READ);
    ev_timer_init(&l->pause, on_listen_pause, ACCEPT_PAUSE_S, 0);
}

void proxy_listener_start(struct proxy_listener *l)
{
    if (l->fd >= 0) {
        ev_io_start(l->pl->loop, &l->io);
    }
}

void proxy_listener_close(struct proxy_listener *l)
{
    if (l->fd < 0) {
        return;
    }
    ev_io_stop(l->pl->loop, &l->io);
    ev_timer_stop(l->pl->loop, &l->pause);
    close(l->fd);
    l->fd = -1;
}

static void on_listen_ready(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct proxy_listener *l = container_of(w, struct proxy_listener, io);
    for (int i = 0; i < ACCEPT_BATCH && l->fd >= 0; i++) {
        union weft_sockaddr peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(l->fd, &peer.sa, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            proxy_set_nodelay(fd);
        }
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                weft_log(WEFT_LOG_WARN, "accept paused", 1, "error", strerror(errno));
                ev_io_stop(loop, &l->io);
                ev_timer_start(loop, &l->pause);
                return;
            }
            weft_log(WEFT_LOG_WARN, "accept failed", 1, "error", strerror(errno));
            return;
        }
        l->num_accepted++;
        l->on_accept(l->pl, fd, &peer, peer_len, l->addr_idx, l->arg);
    }
}

static void on_listen_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    proxy_listener_start(container_of(w, struct proxy_listener, pause));
}

/* ---- the pool ---- */

static void worker_cleanup(struct worker *w)
{
    for (size_t i = 0; i < w->num_ls; i++) {
        proxy_listener_close(&w->ls[i]);
    }
    if (w->loop != NULL) {
        proxy_loop_close_all(&w->pl, PROXY_REASON_SHUTDOWN);
        ev_async_stop(w->loop, &w->wake);
        ev_timer_stop(w->loop, &w->deadline);
        ev_prepare_stop(w->loop, &w->idle);
        if (ev_is_active(&w->tick)) {
            ev_ref(w->loop); /* undo the ev_unref of its start before stopping it */
            ev_timer_stop(w->loop, &w->tick);
        }
        ev_loop_destroy(w->loop);
        w->loop = NULL;
    }
}

static void pool_free_workers(struct proxy_pool *p)
{
    for (size_t i = 0; i < p->num_workers; i++) {
        if (p->workers[i].started) {
            pthread_join(p->workers[i].th, NULL);
        }
        worker_cleanup(&p->workers[i]);
    }
    free(p->workers);
    free(p);
}

int proxy_pool_start(struct proxy_pool **out, const struct proxy_pool_cfg *cfg)
{
    *out = NULL;
    size_t n = cfg->num_workers != 0 ? cfg->num_workers : PROXY_POOL_WORKERS_DEFAULT;
    ENSURE(n <= PROXY_POOL_MAX_WORKERS, WEFT_EINVAL);
    ENSURE(cfg->num_addrs >= 1 && cfg->num_addrs <= PROXY_POOL_MAX_ADDRS, WEFT_EINVAL);
    ENSURE(cfg->on_accept != NULL, WEFT_EINVAL);
    for (size_t i = 0; i < cfg->num_addrs; i++) {
        ENSURE(cfg->addr_lens[i] <= sizeof(union weft_sockaddr), WEFT_EINVAL);
    }

    struct proxy_pool *p = weft_xcalloc(1, sizeof(*p));
    p->num_addrs = cfg->num_addrs;
    for (size_t i = 0; i < cfg->num_addrs; i++) {
        memcpy(&p->addrs[i], &cfg->addrs[i], cfg->addr_lens[i]);
        p->addr_lens[i] = cfg->addr_lens[i];
    }
    p->backlog = cfg->backlog > 0 ? cfg->backlog : 1024;
    p->conn_cfg = cfg->conn_cfg;
    p->on_accept = cfg->on_accept;
    p->arg = cfg->arg;
    p->on_tick = cfg->on_tick;
    p->tick_s = cfg->tick_s > 0 ? cfg->tick_s : 1.0;
    p->keep_on_drain = cfg->keep_on_drain;
    p->num_workers = n;
    p->workers = weft_xcalloc(n, sizeof(*p->workers));
    atomic_store(&p->drain_deadline_ms, -1);

    for (size_t wi = 0; wi < n; wi++) {
        struct worker *w = &p->workers[wi];
        w->pool = p;
        w->idx = wi;
        w->loop = ev_loop_new(EVFLAG_AUTO);
        if (w->loop == NULL) {
            pool_free_workers(p);
            return WEFT_EINTERNAL;
        }
        proxy_loop_init(&w->pl, w->loop, &p->conn_cfg);
        ev_async_init(&w->wake, on_wake);
        ev_async_start(w->loop, &w->wake);
        ev_init(&w->deadline, on_deadline);
        ev_prepare_init(&w->idle, on_prepare);
        ev_prepare_start(w->loop, &w->idle);
        if (p->on_tick != NULL) {
            ev_timer_init(&w->tick, on_tick, p->tick_s, p->tick_s);
            ev_timer_start(w->loop, &w->tick);
            ev_unref(w->loop); /* the tick alone does not keep a drained loop running */
        }
        for (size_t ai = 0; ai < p->num_addrs; ai++) {
            int fd;
            if (proxy_listen(&fd, &p->addrs[ai].sa, p->addr_lens[ai], p->backlog) != WEFT_OK) {
                int saved = errno;
                pool_free_workers(p);
                errno = saved;
                return WEFT_EIO;
            }
            /* Port 0: the first worker's bind picks the port, the others join it. */
            socklen_t len = sizeof(p->addrs[ai]);
            if (wi == 0 && getsockname(fd, &p->addrs[ai].sa, &len) == 0) {
                p->addr_lens[ai] = len;
            }
            proxy_listener_init(&w->ls[ai], &w->pl, fd, ai, pool_on_accept, w);
            w->num_ls++;
            proxy_listener_start(&w->ls[ai]);
        }
    }
    for (size_t wi = 0; wi < n; wi++) {
        struct worker *w = &p->workers[wi];
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
            (void)proxy_pool_drain(p, 0, true); /* a drain in force stays as it is */
            pool_free_workers(p);
            return WEFT_EINTERNAL;
        }
        w->started = true;
    }
    *out = p;
    return WEFT_OK;
}

int proxy_pool_bound_addr(const struct proxy_pool *p, size_t addr_idx, union weft_sockaddr *out,
                          socklen_t *out_len)
{
    ENSURE(addr_idx < p->num_addrs, WEFT_EINVAL);
    *out = p->addrs[addr_idx];
    *out_len = p->addr_lens[addr_idx];
    return WEFT_OK;
}

size_t proxy_pool_num_workers(const struct proxy_pool *p) { return p->num_workers; }

uint64_t proxy_pool_accepted(const struct proxy_pool *p, size_t i)
{
    return i < p->num_workers ? atomic_load(&p->workers[i].accepted) : 0;
}

size_t proxy_pool_open_conns(const struct proxy_pool *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->num_workers; i++) {
        n += atomic_load(&p->workers[i].open_conns);
    }
    return n;
}

bool proxy_pool_exited(const struct proxy_pool *p)
{
    for (size_t i = 0; i < p->num_workers; i++) {
        if (!atomic_load(&p->workers[i].exited)) {
            return false;
        }
    }
    return true;
}

size_t proxy_pool_buffered_bytes(const struct proxy_pool *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->num_workers; i++) {
        n += atomic_load(&p->workers[i].bufs);
    }
    return n * p->workers[0].pl.cfg.buf_cap;
}

bool proxy_pool_drain(struct proxy_pool *p, double deadline_s, bool keep)
{
    /* The deadline is stored before the flag a worker reads it after (seq_cst atomics). */
    long long ms = deadline_s > 0 ? (long long)(deadline_s * 1000) : 0;
    long long unset = -1;
    if (!atomic_compare_exchange_strong(&p->drain_deadline_ms, &unset, ms)) {
        /* a drain was asked for already: one that keeps nothing may still end the keeping */
        if (keep || !atomic_exchange(&p->drain_keep, false)) {
            return atomic_load(&p->drain_keep);
        }
    } else {
        atomic_store(&p->drain_keep, keep && p->keep_on_drain != 0);
        atomic_store(&p->drain_asked, true);
    }
    for (size_t i = 0; i < p->num_workers; i++) {
        if (p->workers[i].loop != NULL) {
            ev_async_send(p->workers[i].loop, &p->workers[i].wake);
        }
    }
    return atomic_load(&p->drain_keep);
}

void proxy_pool_free(struct proxy_pool *p)
{
    if (p == NULL) {
        return;
    }
    (void)proxy_pool_drain(p, 0, true); /* a drain in force stays as it is */
    pool_free_workers(p);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    /* Whatever a drain left open (none after a drain) goes before the thread ends; the loop
     * itself is destroyed by the joining thread. */
    for (size_t i = 0; i < w->num_ls; i++) {
        proxy_listener_close(&w->ls[i]);
    }
    proxy_loop_close_all(&w->pl, PROXY_REASON_SHUTDOWN);
    atomic_store(&w->open_conns, 0);
    atomic_store(&w->bufs, 0);
    atomic_store(&w->exited, true);
    return NULL;
}

static void pool_on_accept(struct proxy_loop *pl, int fd, const union weft_sockaddr *peer,
                           socklen_t peer_len, size_t addr_idx, void *arg)
{
    struct worker *w = arg;
    atomic_fetch_add(&w->accepted, 1);
    w->pool->on_accept(pl, fd, peer, peer_len, addr_idx, w->pool->arg);
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct worker *w = container_of(a, struct worker, wake);
    if (!atomic_load(&w->pool->drain_asked)) {
        return;
    }
    for (size_t i = 0; i < w->num_ls; i++) { /* again when a later drain ends the keeping */
        if (!atomic_load(&w->pool->drain_keep) || (w->pool->keep_on_drain & (1u << i)) == 0) {
            proxy_listener_close(&w->ls[i]);
        }
    }
    if (w->draining) {
        return;
    }
    w->draining = true;
    double after = (double)atomic_load(&w->pool->drain_deadline_ms) / 1000.0;
    ev_timer_set(&w->deadline, after > 0 ? after : 0, 0);
    ev_timer_start(loop, &w->deadline);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = container_of(t, struct worker, deadline);
    proxy_loop_close_all(&w->pl, PROXY_REASON_DRAIN_DEADLINE);
    atomic_store(&w->open_conns, 0);
    atomic_store(&w->bufs, 0);
    ev_break(loop, EVBREAK_ALL);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *pw, int revents)
{
    (void)revents;
    struct worker *w = container_of(pw, struct worker, idle);
    atomic_store(&w->open_conns, w->pl.num_conns);
    atomic_store(&w->bufs, w->pl.num_bufs);
    /* a drain that keeps listeners open serves them until its deadline */
    if (w->draining && w->pl.num_conns == 0 && !atomic_load(&w->pool->drain_keep)) {
        ev_break(loop, EVBREAK_ALL);
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct worker *w = container_of(t, struct worker, tick);
    w->pool->on_tick(&w->pl, w->pool->arg);
}
