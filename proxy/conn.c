/* proxy/conn.c: the relay core (see conn.h), and plain_xprt. */
#include "proxy/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"

/* Passes of both directions per wakeup before yielding to the other connections of the loop;
 * each moves at most buf_cap bytes a direction [libev: keep callbacks short]. */
#define PUMP_ROUNDS 8

enum conn_state { CONN_SETUP = 0, CONN_RELAY };

/* struct relay_buf holds bytes read from one side until the other side takes them:
 * data[rd..wr) is pending; it never grows past the loop's buf_cap. |data| exists only while
 * bytes are pending (or a recv is about to put some there): an idle connection holds no
 * buffer, so a thousand idle connections cost their sockets and structs, not 128 MiB. */
struct relay_buf {
    uint8_t *data;
    size_t rd, wr;
};

struct proxy_side {
    struct proxy_conn *conn;
    enum proxy_side_id id;
    int fd; /* -1 until |up| has one */
    ev_io rd, wr;
    struct relay_buf in; /* read from this side, to send to the other */
    const struct xprt_ops *xprt;
    void *ctx;
    void (*ctx_free)(void *ctx);
    bool eof; /* recv gave 0: this side sends nothing more */
    /* the last recv found the socket empty (WEFT_EAGAIN wanting to read) or emptied it
     * (XPRT_DRAINED): no recv until an event on this fd says otherwise (a recv(2) fewer per
     * burst, and none on the side that stayed quiet while the other spoke) */
    bool drained;
    bool shut; /* this side's receiving half has our shutdown (xprt->shutdown done) */
    /* XPRT_WANT_* that each pending operation on this side's fd waits for; 0: none pending */
    int want_recv, want_send, want_shut;
    uint64_t bytes_fwd; /* bytes read from this side and sent to the other */
    size_t max_held;    /* high-water mark of |in| */
    /* a handshake the caller asked the relay to drive (proxy_conn_handshake) */
    proxy_handshake_fn hs;
    const char *(*hs_reason)(void *hs_ctx);
    void *hs_ctx;
    proxy_handshake_done_fn hs_done;
    void *hs_arg;
    ev_tstamp hs_deadline;
};

struct proxy_conn {
    struct proxy_loop *pl;
    struct proxy_side down, up;
    ev_timer timer; /* the nearest of: connect deadline, handshake deadlines, idle */
    enum conn_state state;
    bool connecting;
    bool closing;
    ev_tstamp connect_deadline;
    ev_tstamp last_active;
    ev_tstamp start;
    struct proxy_conn_cbs cbs;
    void *arg;
    struct proxy_conn *prev, *next; /* pl->conns */
};

static void on_readable(struct ev_loop *loop, ev_io *w, int revents);
static void on_writable(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void on_ready(struct proxy_side *s, int revents);
static void pump(struct proxy_conn *c);
static int flow(struct proxy_conn *c, struct proxy_side *src, struct proxy_side *dst);
static void watch(struct proxy_conn *c, struct proxy_side *s, int want);
static void rearm_timer(struct proxy_conn *c);
static void finish_connect(struct proxy_conn *c);
static void drive_handshake(struct proxy_conn *c, struct proxy_side *s);
static const char *io_reason(const struct proxy_side *s, int op, int rc);

/* ---- plain_xprt ---- */

static ssize_t plain_recv(void *ctx, int fd, uint8_t *buf, size_t cap, int *want)
{
    (void)ctx;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0) {
            if (n > 0 && (size_t)n < cap) {
                *want = XPRT_DRAINED; /* less than asked: the socket is empty for now */
            }
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = XPRT_WANT_READ;
            return WEFT_EAGAIN;
        }
        return WEFT_EIO;
    }
}

static ssize_t plain_send(void *ctx, int fd, const uint8_t *buf, size_t len, int *want)
{
    (void)ctx;
    if (len == 0) {
        return 0; /* a flush: plain_xprt holds nothing */
    }
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want = XPRT_WANT_WRITE;
            return WEFT_EAGAIN;
        }
        return WEFT_EIO;
    }
}

static int plain_shutdown(void *ctx, int fd, int *want)
{
    (void)ctx;
    (void)want;
    /* ENOTCONN: the peer is already gone; there is no sending half left to close. */
    if (shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN) {
        return WEFT_EIO;
    }
    return WEFT_OK;
}

static const char *plain_reason(void *ctx)
{
    (void)ctx;
    return NULL;
}

const struct xprt_ops plain_xprt = {
    .recv = plain_recv,
    .send = plain_send,
    .shutdown = plain_shutdown,
    .reason = plain_reason,
};

/* ---- the loop ---- */

void proxy_loop_init(struct proxy_loop *pl, struct ev_loop *loop, const struct proxy_cfg *cfg)
{
    memset(pl, 0, sizeof(*pl));
    pl->loop = loop;
    if (cfg != NULL) {
        pl->cfg = *cfg;
    }
    if (pl->cfg.buf_cap == 0) {
        pl->cfg.buf_cap = PROXY_BUF_CAP_DEFAULT;
    }
    if (pl->cfg.buf_cap < PROXY_BUF_CAP_MIN) {
        pl->cfg.buf_cap = PROXY_BUF_CAP_MIN;
    }
    if (pl->cfg.buf_cap > PROXY_BUF_CAP_MAX) {
        pl->cfg.buf_cap = PROXY_BUF_CAP_MAX;
    }
    if (pl->cfg.idle_timeout_s == 0) {
        pl->cfg.idle_timeout_s = 300;
    }
    if (pl->cfg.connect_timeout_s <= 0) {
        pl->cfg.connect_timeout_s = 10;
    }
    if (pl->cfg.handshake_timeout_s <= 0) {
        pl->cfg.handshake_timeout_s = 10;
    }
}

void proxy_loop_close_all(struct proxy_loop *pl, const char *reason)
{
    while (pl->conns != NULL) {
        proxy_conn_close(pl->conns, reason);
    }
}

void proxy_loop_each(struct proxy_loop *pl, void (*fn)(struct proxy_conn *c, void *arg), void *arg)
{
    for (struct proxy_conn *c = pl->conns, *next; c != NULL; c = next) {
        next = c->next; /* |fn| may close |c| */
        fn(c, arg);
    }
}

/* ---- a connection ---- */

void proxy_set_nodelay(int fd)
{
    int one = 1; /* fails harmlessly on a unix socket */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void buf_release(struct proxy_loop *pl, struct relay_buf *b)
{
    if (b->data != NULL) {
        free(b->data);
        b->data = NULL;
        pl->num_bufs--;
    }
    b->rd = b->wr = 0;
}

static struct proxy_side *side_of(struct proxy_conn *c, enum proxy_side_id id)
{
    return id == PROXY_DOWN ? &c->down : &c->up;
}

static void side_init(struct proxy_conn *c, struct proxy_side *s, enum proxy_side_id id)
{
    s->conn = c;
    s->id = id;
    s->fd = -1;
    s->xprt = &plain_xprt;
    ev_init(&s->rd, on_readable);
    ev_init(&s->wr, on_writable);
}

static void side_set_fd(struct proxy_side *s, int fd)
{
    s->fd = fd;
    ev_io_set(&s->rd, fd, EV_READ);
    ev_io_set(&s->wr, fd, EV_WRITE);
}

struct proxy_conn *proxy_conn_new(struct proxy_loop *pl, int down_fd,
                                  const struct proxy_conn_cbs *cbs, void *arg)
{
    struct proxy_conn *c = weft_xcalloc(1, sizeof(*c));
    c->pl = pl;
    if (cbs != NULL) {
        c->cbs = *cbs;
    }
    c->arg = arg;
    /* ev_now is the time of the loop's last turn; a connection made outside a callback (or
     * after a long one) would otherwise start its deadlines in the past. */
    ev_now_update(pl->loop);
    c->start = ev_now(pl->loop);
    c->last_active = c->start;
    side_init(c, &c->down, PROXY_DOWN);
    side_init(c, &c->up, PROXY_UP);
    side_set_fd(&c->down, down_fd);
    ev_init(&c->timer, on_timer);
    c->next = pl->conns;
    if (pl->conns != NULL) {
        pl->conns->prev = c;
    }
    pl->conns = c;
    pl->num_conns++;
    return c;
}

int proxy_conn_connect(struct proxy_conn *c, const struct sockaddr *addr, socklen_t addr_len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        proxy_conn_close(c, PROXY_REASON_CONNECT_FAILED);
        return WEFT_EIO;
    }
    proxy_set_nodelay(fd);
    side_set_fd(&c->up, fd);
    int rc;
    do {
        rc = connect(fd, addr, addr_len);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0 && errno != EINPROGRESS) {
        proxy_conn_close(c, errno == ECONNREFUSED ? PROXY_REASON_CONNECT_REFUSED
                                                  : PROXY_REASON_CONNECT_FAILED);
        return WEFT_EIO;
    }
    /* Connected at once (a unix socket) or in progress: either way the result is reported from
     * the loop, when the socket turns writable, never from inside this call. */
    c->connecting = true;
    c->connect_deadline = ev_now(c->pl->loop) + c->pl->cfg.connect_timeout_s;
    ev_io_start(c->pl->loop, &c->up.wr);
    rearm_timer(c);
    return WEFT_OK;
}

void proxy_conn_set_up_fd(struct proxy_conn *c, int fd) { side_set_fd(&c->up, fd); }

void proxy_conn_set_xprt(struct proxy_conn *c, enum proxy_side_id side, const struct xprt_ops *ops,
                         void *ctx, void (*ctx_free)(void *ctx))
{
    struct proxy_side *s = side_of(c, side);
    s->xprt = ops;
    s->ctx = ctx;
    s->ctx_free = ctx_free;
}

void proxy_conn_handshake(struct proxy_conn *c, enum proxy_side_id side, proxy_handshake_fn fn,
                          const char *(*reason_fn)(void *hs_ctx), void *hs_ctx,
                          proxy_handshake_done_fn done, void *arg)
{
    struct proxy_side *s = side_of(c, side);
    s->hs = fn;
    s->hs_reason = reason_fn;
    s->hs_ctx = hs_ctx;
    s->hs_done = done;
    s->hs_arg = arg;
    s->hs_deadline = ev_now(c->pl->loop) + c->pl->cfg.handshake_timeout_s;
    rearm_timer(c);
    /* The first step runs from the loop, so |done| is never called inside this function. */
    ev_feed_event(c->pl->loop, &s->wr, EV_WRITE);
}

void proxy_conn_start(struct proxy_conn *c)
{
    c->state = CONN_RELAY;
    c->last_active = ev_now(c->pl->loop);
    watch(c, &c->down, 0);
    watch(c, &c->up, 0);
    rearm_timer(c);
    /* The first pump runs from the loop: a failure closes |c| there, not under the caller. */
    ev_feed_event(c->pl->loop, &c->down.rd, EV_READ);
}

void proxy_conn_get_stats(const struct proxy_conn *c, struct proxy_conn_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->bytes_down_to_up = c->down.bytes_fwd;
    out->bytes_up_to_down = c->up.bytes_fwd;
    out->max_held_down_to_up = c->down.max_held;
    out->max_held_up_to_down = c->up.max_held;
    out->buf_cap = c->pl->cfg.buf_cap;
    out->start = c->start;
}

int proxy_conn_get_fd(const struct proxy_conn *c, enum proxy_side_id side)
{
    return side == PROXY_DOWN ? c->down.fd : c->up.fd;
}

void *proxy_conn_get_arg(const struct proxy_conn *c) { return c->arg; }

static void side_cleanup(struct proxy_side *s)
{
    if (s->ctx_free != NULL && s->ctx != NULL) {
        s->ctx_free(s->ctx);
    }
    s->ctx = NULL;
}

void proxy_conn_close(struct proxy_conn *c, const char *reason)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    struct ev_loop *loop = c->pl->loop;
    /* STYLE.md §5: watchers, then the access log, then TLS, then the fds, then memory. */
    ev_io_stop(loop, &c->down.rd);
    ev_io_stop(loop, &c->down.wr);
    ev_io_stop(loop, &c->up.rd);
    ev_io_stop(loop, &c->up.wr);
    ev_timer_stop(loop, &c->timer);
    /* ev_feed_event may have left a watcher pending although stopped above; ev_clear_pending
     * makes sure no callback reaches freed memory [ev(3) "ev_clear_pending"]. */
    ev_clear_pending(loop, &c->down.rd);
    ev_clear_pending(loop, &c->down.wr);
    ev_clear_pending(loop, &c->up.rd);
    ev_clear_pending(loop, &c->up.wr);
    ev_clear_pending(loop, &c->timer);
    /* A transport may still hold bytes it took (xprt.h): one last try to send them, as the
     * kernel still sends what close(2) leaves in a socket's buffer. */
    struct proxy_side *sides[2] = {&c->down, &c->up};
    for (size_t i = 0; i < 2; i++) {
        int want = 0;
        if (sides[i]->want_send != 0 && sides[i]->fd >= 0) {
            (void)sides[i]->xprt->send(sides[i]->ctx, sides[i]->fd, NULL, 0, &want);
        }
    }

    struct proxy_loop *pl = c->pl;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        pl->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    pl->num_conns--;
    pl->num_closed++;

    if (c->cbs.on_close != NULL) {
        struct proxy_conn_stats st;
        proxy_conn_get_stats(c, &st);
        st.end = ev_now(loop);
        c->cbs.on_close(c, &st, reason, c->arg);
    }
    side_cleanup(&c->down);
    side_cleanup(&c->up);
    if (c->down.fd >= 0) {
        close(c->down.fd);
    }
    if (c->up.fd >= 0) {
        close(c->up.fd);
    }
    buf_release(pl, &c->down.in);
    buf_release(pl, &c->up.in);
    free(c);
}

/* ---- events ---- */

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    on_ready(container_of(w, struct proxy_side, rd), revents);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    on_ready(container_of(w, struct proxy_side, wr), revents);
}

static void on_ready(struct proxy_side *s, int revents)
{
    struct proxy_conn *c = s->conn;
    s->drained = false; /* something happened on this fd */
    if (s == &c->up && c->connecting) {
        if (revents & EV_WRITE) {
            finish_connect(c);
        }
        return;
    }
    if (s->hs != NULL) {
        drive_handshake(c, s);
        return;
    }
    if (c->state == CONN_RELAY) {
        pump(c);
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct proxy_conn *c = container_of(w, struct proxy_conn, timer);
    ev_tstamp now = ev_now(loop);
    if (c->connecting && now >= c->connect_deadline) {
        proxy_conn_close(c, PROXY_REASON_CONNECT_TIMEOUT);
        return;
    }
    if ((c->down.hs != NULL && now >= c->down.hs_deadline) ||
        (c->up.hs != NULL && now >= c->up.hs_deadline)) {
        proxy_conn_close(c, PROXY_REASON_HANDSHAKE_TIMEOUT);
        return;
    }
    if (c->state == CONN_RELAY && c->pl->cfg.idle_timeout_s > 0 &&
        now >= c->last_active + c->pl->cfg.idle_timeout_s) {
        proxy_conn_close(c, PROXY_REASON_IDLE);
        return;
    }
    rearm_timer(c);
}

/* rearm_timer points the one timer at the nearest deadline. Activity only moves last_active;
 * the idle timer finds out when it fires [ev(3) "Be smart about timeouts", method 3]. */
static void rearm_timer(struct proxy_conn *c)
{
    struct ev_loop *loop = c->pl->loop;
    ev_tstamp when = 0;
    bool any = false;
    if (c->connecting) {
        when = c->connect_deadline;
        any = true;
    }
    const struct proxy_side *sides[2] = {&c->down, &c->up};
    for (size_t i = 0; i < 2; i++) {
        if (sides[i]->hs != NULL && (!any || sides[i]->hs_deadline < when)) {
            when = sides[i]->hs_deadline;
            any = true;
        }
    }
    if (c->state == CONN_RELAY && c->pl->cfg.idle_timeout_s > 0) {
        ev_tstamp idle = c->last_active + c->pl->cfg.idle_timeout_s;
        if (!any || idle < when) {
            when = idle;
            any = true;
        }
    }
    ev_timer_stop(loop, &c->timer);
    if (any) {
        ev_tstamp after = when - ev_now(loop);
        ev_timer_set(&c->timer, after > 0 ? after : 0, 0);
        ev_timer_start(loop, &c->timer);
    }
}

static void finish_connect(struct proxy_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->up.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        proxy_conn_close(c, err == ECONNREFUSED ? PROXY_REASON_CONNECT_REFUSED
                            : err == ETIMEDOUT  ? PROXY_REASON_CONNECT_TIMEOUT
                                                : PROXY_REASON_CONNECT_FAILED);
        return;
    }
    c->connecting = false;
    ev_io_stop(c->pl->loop, &c->up.wr);
    rearm_timer(c);
    if (c->cbs.on_connected != NULL) {
        c->cbs.on_connected(c, c->arg); /* may close or start |c|: touch nothing after */
        return;
    }
    proxy_conn_start(c);
}

static void drive_handshake(struct proxy_conn *c, struct proxy_side *s)
{
    int want = 0;
    int rc = s->hs(s->hs_ctx, s->fd, &want);
    if (rc == WEFT_EAGAIN) {
        watch(c, s, want != 0 ? want : XPRT_WANT_READ);
        return;
    }
    if (rc != WEFT_OK) {
        const char *why = s->hs_reason != NULL ? s->hs_reason(s->hs_ctx) : NULL;
        proxy_conn_close(c, why != NULL ? why : weft_strerror(rc));
        return;
    }
    proxy_handshake_done_fn done = s->hs_done;
    void *arg = s->hs_arg;
    s->hs = NULL;
    s->hs_done = NULL;
    watch(c, s, 0);
    rearm_timer(c);
    done(c, s->id, arg); /* may close or start |c| */
}

/* watch makes |s|'s watchers wait for exactly |want| (XPRT_WANT_* bits). */
static void watch(struct proxy_conn *c, struct proxy_side *s, int want)
{
    struct ev_loop *loop = c->pl->loop;
    if (want & XPRT_WANT_READ) {
        if (!ev_is_active(&s->rd)) {
            ev_io_start(loop, &s->rd);
        }
    } else if (ev_is_active(&s->rd)) {
        ev_io_stop(loop, &s->rd);
    }
    if (want & XPRT_WANT_WRITE) {
        if (!ev_is_active(&s->wr)) {
            ev_io_start(loop, &s->wr);
        }
    } else if (ev_is_active(&s->wr)) {
        ev_io_stop(loop, &s->wr);
    }
}

/* pump moves what it can both ways, then waits for exactly what the pending operations want:
 * a side's fd is watched for reading if its recv, send or shutdown last asked for that, so a TLS
 * recv that needs to write makes progress on writability. */
static void pump(struct proxy_conn *c)
{
    bool more = false;
    for (int round = 0;; round++) {
        int a = flow(c, &c->down, &c->up);
        if (a < 0) {
            return;
        }
        int b = flow(c, &c->up, &c->down);
        if (b < 0) {
            return;
        }
        if (a == 0 && b == 0) {
            break;
        }
        c->last_active = ev_now(c->pl->loop);
        if (round + 1 == PUMP_ROUNDS) {
            more = true;
            break;
        }
    }
    if (c->down.eof && c->up.eof && c->down.shut && c->up.shut) {
        proxy_conn_close(c, PROXY_REASON_DONE);
        return;
    }
    watch(c, &c->down, c->down.want_recv | c->down.want_send | c->down.want_shut);
    watch(c, &c->up, c->up.want_recv | c->up.want_send | c->up.want_shut);
    if (more) {
        /* Still moving: come back after the loop's other connections had their turn. A
         * transport may hold decrypted bytes the fd no longer signals (TLS records). */
        ev_feed_event(c->pl->loop, &c->down.rd, EV_READ);
    }
}

enum { OP_RECV, OP_SEND, OP_SHUT };

/* flow moves bytes from |src| to |dst| once: recv into the free space, send what is held, and
 * after EOF with nothing held, shut |dst|'s sending half. Returns 1 when anything moved, 0 when
 * nothing could, -1 when the connection is closed (and freed). */
static int flow(struct proxy_conn *c, struct proxy_side *src, struct proxy_side *dst)
{
    struct relay_buf *b = &src->in;
    size_t cap = c->pl->cfg.buf_cap;
    int progress = 0;
    int want;

    /* Backpressure: no space, no recv; the fd stays unwatched until the other side drains. */
    if (!src->eof && b->wr < cap && src->drained) {
        src->want_recv = XPRT_WANT_READ; /* empty for now: wait for readability */
    } else if (!src->eof && b->wr < cap) {
        if (b->data == NULL) {
            b->data = weft_xmalloc(cap);
            c->pl->num_bufs++;
        }
        want = 0;
        ssize_t n = src->xprt->recv(src->ctx, src->fd, b->data + b->wr, cap - b->wr, &want);
        src->drained = n > 0 ? (want & XPRT_DRAINED) != 0
                             : n == WEFT_EAGAIN && (want == 0 || want == XPRT_WANT_READ);
        if (n > 0) {
            b->wr += (size_t)n;
            if (b->wr - b->rd > src->max_held) {
                src->max_held = b->wr - b->rd;
            }
            src->want_recv = XPRT_WANT_READ;
            progress = 1;
        } else if (n == 0) {
            src->eof = true;
            src->want_recv = 0;
            progress = 1;
        } else if (n == WEFT_EAGAIN) {
            src->want_recv = want != 0 ? want : XPRT_WANT_READ;
        } else {
            proxy_conn_close(c, io_reason(src, OP_RECV, (int)n));
            return -1;
        }
    } else {
        src->want_recv = 0;
    }

    if (b->rd < b->wr && !dst->shut) {
        want = 0;
        ssize_t n = dst->xprt->send(dst->ctx, dst->fd, b->data + b->rd, b->wr - b->rd, &want);
        if (n > 0) {
            b->rd += (size_t)n;
            src->bytes_fwd += (uint64_t)n;
            dst->want_send = b->rd < b->wr || (want & XPRT_WANT_WRITE) ? XPRT_WANT_WRITE : 0;
            progress = 1;
        } else if (n == WEFT_EAGAIN || n == 0) {
            dst->want_send = want != 0 ? want : XPRT_WANT_WRITE;
        } else {
            proxy_conn_close(c, io_reason(dst, OP_SEND, (int)n));
            return -1;
        }
        if (b->wr == cap && b->rd > 0 && b->rd < b->wr) {
            /* Full at the tail: move the rest to the front so recv has room again. */
            memmove(b->data, b->data + b->rd, b->wr - b->rd);
            b->wr -= b->rd;
            b->rd = 0;
        }
    } else if (dst->want_send != 0 && !dst->shut) {
        /* Nothing new to send, but the transport still holds bytes it took (xprt.h): flush. */
        want = 0;
        ssize_t n = dst->xprt->send(dst->ctx, dst->fd, NULL, 0, &want);
        if (n == 0) {
            dst->want_send = 0;
            progress = 1; /* it sent the rest: activity, as any send is */
        } else if (n == WEFT_EAGAIN || n > 0) {
            dst->want_send = want != 0 ? want : XPRT_WANT_WRITE;
        } else {
            proxy_conn_close(c, io_reason(dst, OP_SEND, (int)n));
            return -1;
        }
    } else {
        dst->want_send = 0;
    }
    if (b->rd == b->wr) {
        buf_release(c->pl, b); /* nothing pending: the memory goes back until bytes come */
    }

    /* Half-close: EOF from |src| reaches |dst| once everything before it has been sent. */
    if (src->eof && b->rd == b->wr && !dst->shut) {
        want = 0;
        int rc = dst->xprt->shutdown(dst->ctx, dst->fd, &want);
        if (rc == WEFT_OK) {
            dst->shut = true;
            dst->want_shut = 0;
            progress = 1;
        } else if (rc == WEFT_EAGAIN) {
            dst->want_shut = want != 0 ? want : XPRT_WANT_WRITE;
        } else {
            proxy_conn_close(c, io_reason(dst, OP_SHUT, rc));
            return -1;
        }
    } else {
        dst->want_shut = 0;
    }
    return progress;
}

/* io_reason names a failed transport call for the access log: the transport's own words when it
 * has some, else which side and what failed. */
static const char *io_reason(const struct proxy_side *s, int op, int rc)
{
    const char *why = s->xprt->reason != NULL ? s->xprt->reason(s->ctx) : NULL;
    if (why != NULL) {
        return why;
    }
    bool reset = rc == WEFT_EIO && (errno == ECONNRESET || errno == EPIPE);
    static const char *const names[2][3][2] = {
        [PROXY_DOWN] = {{"down recv failed", "down reset"},
                        {"down send failed", "down reset"},
                        {"down shutdown failed", "down reset"}},
        [PROXY_UP] = {{"up recv failed", "up reset"},
                      {"up send failed", "up reset"},
                      {"up shutdown failed", "up reset"}},
    };
    if (rc != WEFT_EIO) {
        return weft_strerror(rc);
    }
    return names[s->id][op][reset ? 1 : 0];
}
