/* proxy/proxy.c: see proxy.h. */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <grpc/grpc.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "lib/base/hash.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/metrics.h"
#include "lib/httpadmin/httpadmin.h"
#include "policy/snapshot.h"
#include "proxy/accesslog.h"
#include "proxy/conn.h"
#include "proxy/listener.h"
#include "proxy/proxyv2.h"
#include "proxy/sniff.h"
#include "proxy/tls.h"

enum { ADDR_OUT4, ADDR_OUT6, ADDR_IN4, ADDR_IN6, NUM_ADDRS };

#define SNIFF_MAX_PARKED 4096     /* per worker: connections waiting for their first bytes */
#define SNIFF_PARTIAL_WAIT_S 10.0 /* for the rest of a ClientHello that has begun */

struct metrics {
    struct weft_metrics *reg;
    struct weft_counter *out_mtls, *out_passthrough, *out_refused, *in_allowed, *in_denied,
        *in_refused, *handshake_failures, *resumed, *full, *permissive_timeouts;
    struct weft_gauge *ready, *svid_not_after, *config_sequence, *open;
};

struct daemon {
    const struct proxy_opts *o;
    struct proxy_agent *agent;
    pthread_mutex_t mu; /* over |creds| */
    struct tls_creds *creds;
    struct proxy_identity *creds_id; /* the identity |creds| was made from (a reference) */
    uint64_t creds_deny;             /* and the digest of its deny list */
    struct proxy_pool *pool;
    struct httpadmin *http;
    struct metrics m;
    atomic_bool quit;
};

static atomic_int stop_signal;
static void on_signal(int sig) { atomic_store(&stop_signal, sig); }

/* --- credentials, made again whenever the state's identity or deny list change ------------- */

static void on_update(void *arg, struct proxy_state *s)
{
    struct daemon *d = arg;
    weft_gauge_set(d->m.config_sequence, s->cfg != NULL ? (double)s->cfg->sequence : 0);
    if (s->id == NULL) {
        return;
    }
    weft_gauge_set(d->m.svid_not_after, (double)s->id->not_after);
    uint64_t deny = WEFT_FNV1A_INIT;
    for (size_t i = 0; s->cfg != NULL && i < s->cfg->num_deny_ids; i++) {
        deny = weft_fnv1a_str(deny, s->cfg->deny_ids[i]);
    }
    for (size_t i = 0; s->cfg != NULL && i < s->cfg->num_deny_serials; i++) {
        deny = weft_fnv1a_str(weft_fnv1a_str(deny, "serial"), s->cfg->deny_serials[i]);
    }
    if (s->id == d->creds_id && deny == d->creds_deny) {
        return; /* a policy or directory change: the credentials (and their tickets) stay */
    }
    struct tls_creds_params p = {
        .chain_der = s->id->chain,
        .chain_der_len = s->id->chain_len,
        .key_der = s->id->key,
        .key_der_len = s->id->key_len,
        .bundles = &s->id->bundles,
        .deny_ids = s->cfg != NULL ? (const char *const *)s->cfg->deny_ids : NULL,
        .num_deny_ids = s->cfg != NULL ? s->cfg->num_deny_ids : 0,
        .deny_serials = s->cfg != NULL ? (const char *const *)s->cfg->deny_serials : NULL,
        .num_deny_serials = s->cfg != NULL ? s->cfg->num_deny_serials : 0,
    };
    struct tls_creds *c;
    if (tls_creds_new(&c, &p) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "the SVID from the agent cannot be used; the previous stays", 1,
                 "spiffe_id", s->id->spiffe_id);
        return;
    }
    pthread_mutex_lock(&d->mu);
    struct tls_creds *old = d->creds;
    struct proxy_identity *old_id = d->creds_id;
    d->creds = c;
    d->creds_id = proxy_identity_ref(s->id);
    d->creds_deny = deny;
    pthread_mutex_unlock(&d->mu);
    tls_creds_unref(old);
    proxy_identity_unref(old_id);
    char na[24];
    snprintf(na, sizeof(na), "%lld", (long long)s->id->not_after);
    weft_log(WEFT_LOG_INFO, "credentials in force", 2, "spiffe_id", s->id->spiffe_id, "not_after",
             na);
}

static struct tls_creds *current_creds(struct daemon *d)
{
    pthread_mutex_lock(&d->mu);
    struct tls_creds *c = d->creds != NULL ? tls_creds_ref(d->creds) : NULL;
    pthread_mutex_unlock(&d->mu);
    return c;
}

/* --- one connection ------------------------------------------------------------------------ */

struct pconn {
    struct daemon *d;
    struct proxy_loop *pl;
    struct proxy_conn *c;
    struct proxy_state *st;
    struct tls_creds *creds;
    struct tls_conn *tls; /* until handed to the relay */
    bool inbound;
    union weft_sockaddr src, dst;
    socklen_t dst_len;
    uint16_t port;
    char src_s[64], dst_s[64], peer[2049], policy[300], serial[41];
    int64_t peer_not_after; /* of the verified peer chain; 0: a plaintext peer */
    bool relaying;          /* decided and relaying: what the re-checks look at */
    const char *decision, *reason;
    int64_t rule;
    bool resumed;
    const char *tls_version; /* NULL: plaintext */
    /* PERMISSIVE ports: the sniffing stage, before the relay exists */
    int fd;
    ev_io sniff_io;
    ev_timer sniff_timer;
    size_t peeked; /* bytes seen so far */
    bool extended; /* the wait was extended for a partial ClientHello */
};

static void addr_text(char *out, size_t cap, const struct sockaddr *a)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)a)->sin_port);
        snprintf(out, cap, "%s:%u", ip, port);
    } else if (a->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
        snprintf(out, cap, "[%s]:%u", ip, port);
    } else {
        snprintf(out, cap, "?");
    }
}

static uint16_t port_of(const struct sockaddr *a)
{
    return a->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)a)->sin_port)
                                   : ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
}

static void pconn_free(struct pconn *p)
{
    if (p->tls != NULL) {
        tls_conn_free(p->tls);
    }
    tls_creds_unref(p->creds);
    proxy_state_unref(p->st);
    free(p);
}

static void on_close(struct proxy_conn *c, const struct proxy_conn_stats *st, const char *reason,
                     void *arg)
{
    (void)c;
    struct pconn *p = arg;
    struct proxy_access a = {
        .direction = p->inbound ? "inbound" : "outbound",
        .src = p->src_s,
        .dst = p->dst_s,
        .peer_id = p->peer,
        .decision = p->decision != NULL ? p->decision : "refused",
        .policy = p->policy[0] != '\0' ? p->policy : NULL,
        .rule = p->rule,
        .reason = p->reason != NULL ? p->reason : reason,
        .bytes_in = st->bytes_down_to_up,
        .bytes_out = st->bytes_up_to_down,
        .duration_ms = (int64_t)((st->end - st->start) * 1000),
        .tls = p->tls_version,
        .resumed = p->resumed,
        .close = reason,
    };
    proxy_access_log(&a);
    pconn_free(p);
}

static int hs_step(void *ctx, int fd, int *want)
{
    (void)fd;
    return tls_conn_handshake(ctx, want);
}

static const char *hs_reason(void *ctx) { return tls_conn_reason(ctx); }

static void tls_free(void *ctx) { tls_conn_free(ctx); }

/* relay_start gives the relay side |tls_side| the TLS transport (the other stays plain) and
 * starts relaying. */
static void relay_start(struct pconn *p, enum proxy_side_id tls_side)
{
    p->relaying = true;
    if (p->tls != NULL) {
        p->tls_version = tls_conn_version(p->tls); /* a static string */
        p->resumed = tls_conn_resumed(p->tls);
        weft_counter_add(p->resumed ? p->d->m.resumed : p->d->m.full, 1);
        proxy_conn_set_xprt(p->c, tls_side, &tls_xprt, p->tls, tls_free);
        p->tls = NULL;
    }
    proxy_conn_start(p->c);
}

/* --- outbound ---------------------------------------------------------------------------- */

static void out_handshake_done(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    (void)c;
    struct pconn *p = arg;
    snprintf(p->peer, sizeof(p->peer), "%s", tls_conn_peer_id(p->tls));
    snprintf(p->serial, sizeof(p->serial), "%s", tls_conn_peer_serial(p->tls));
    p->peer_not_after = tls_conn_peer_not_after(p->tls);
    if (proxy_state_denied(p->st, p->peer, p->serial)) {
        p->decision = "deny";
        p->reason = "peer revoked";
        weft_counter_add(p->d->m.out_refused, 1);
        proxy_conn_close(c, "peer revoked");
        return;
    }
    p->decision = "allow";
    p->reason = "mtls";
    weft_counter_add(p->d->m.out_mtls, 1);
    relay_start(p, side);
}

static void out_connected(struct proxy_conn *c, void *arg)
{
    struct pconn *p = arg;
    const char *expected = proxy_state_lookup(p->st, &p->dst.sa);
    if (expected == NULL) { /* outside the mesh: plain TCP, as the app asked */
        p->decision = "passthrough";
        p->reason = "not in the mesh directory";
        weft_counter_add(p->d->m.out_passthrough, 1);
        proxy_conn_start(c);
        return;
    }
    if (p->creds == NULL || tls_conn_new_client(&p->tls, p->creds, proxy_conn_get_fd(c, PROXY_UP),
                                                expected) != WEFT_OK) {
        p->reason = "no credentials for mTLS";
        weft_counter_add(p->d->m.out_refused, 1);
        proxy_conn_close(c, "no credentials");
        return;
    }
    proxy_conn_handshake(c, PROXY_UP, hs_step, hs_reason, p->tls, out_handshake_done, p);
}

/* --- inbound ----------------------------------------------------------------------------- */

/* send_proxy_header writes the PROXY protocol v2 header to the app, when its port wants one;
 * false (the connection closed) when it cannot. The socket has just connected: its send buffer
 * takes the hundred-odd bytes at once, or the app is refusing them. */
static bool send_proxy_header(struct pconn *p)
{
    bool wanted = false;
    for (size_t i = 0; i < p->d->o->num_pp_ports && !wanted; i++) {
        wanted = p->d->o->pp_ports[i] == p->port;
    }
    if (!wanted) {
        return true;
    }
    CBB cbb;
    uint8_t *hdr = NULL;
    size_t len = 0;
    bool ok = CBB_init(&cbb, 128) &&
              proxyv2_encode(&cbb, &p->src.sa, &p->dst.sa, p->peer[0] != '\0' ? p->peer : NULL) ==
                  WEFT_OK &&
              CBB_finish(&cbb, &hdr, &len);
    if (!ok) {
        CBB_cleanup(&cbb);
    }
    ok = ok && send(proxy_conn_get_fd(p->c, PROXY_UP), hdr, len, MSG_NOSIGNAL | MSG_DONTWAIT) ==
                   (ssize_t)len;
    OPENSSL_free(hdr);
    if (!ok) {
        proxy_conn_close(p->c, "cannot send the PROXY protocol header");
    }
    return ok;
}

static void in_connected(struct proxy_conn *c, void *arg)
{
    (void)c;
    struct pconn *p = arg;
    if (send_proxy_header(p)) {
        relay_start(p, PROXY_DOWN);
    }
}

/* decide evaluates the policy of |snap| for |p|'s peer and port, filling in the deciding
 * policy, rule and reason; returns whether it allows. */
static bool decide(struct pconn *p, const struct policy_snapshot *snap)
{
    struct policy_request req = {p->peer[0] != '\0' ? p->peer : NULL, p->port};
    struct policy_result r;
    policy_eval(snap, &req, &r);
    const struct policy_verdict *v = &r.enforced;
    p->rule = v->rule != POLICY_NONE ? (int64_t)v->rule : -1;
    p->policy[0] = '\0';
    if (v->policy != POLICY_NONE) {
        if (v->reason == POLICY_REASON_MTLS_STRICT) {
            snprintf(p->policy, sizeof(p->policy), "%s", snap->mtls_sources[v->policy]);
        } else {
            snprintf(p->policy, sizeof(p->policy), "%s/%s", snap->policies[v->policy].namespace_,
                     snap->policies[v->policy].name);
        }
    }
    p->reason = policy_reason_str(v->reason);
    return v->decision == POLICY_ALLOW;
}

/* judge decides the connection by policy; on allow dials the app (at the original
 * destination), else closes with the deciding policy and rule. */
static void judge(struct pconn *p)
{
    if (p->peer[0] != '\0' && proxy_state_denied(p->st, p->peer, p->serial)) {
        p->decision = "deny"; /* revoked after the credentials that verified it were made */
        p->reason = "peer revoked";
        weft_counter_add(p->d->m.in_denied, 1);
        proxy_conn_close(p->c, "peer revoked");
        return;
    }
    if (!decide(p, p->st->cfg->policy)) {
        p->decision = "deny";
        weft_counter_add(p->d->m.in_denied, 1);
        proxy_conn_close(p->c, "denied by policy");
        return;
    }
    p->decision = "allow";
    weft_counter_add(p->d->m.in_allowed, 1);
    /* a connect that fails at once has closed the connection (and freed |p|) already */
    if (proxy_conn_connect(p->c, &p->dst.sa, p->dst_len) != WEFT_OK) {
        return; /* closed already: |p| is gone */
    }
}

static void in_handshake_done(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    (void)c, (void)side;
    struct pconn *p = arg;
    snprintf(p->peer, sizeof(p->peer), "%s", tls_conn_peer_id(p->tls));
    snprintf(p->serial, sizeof(p->serial), "%s", tls_conn_peer_serial(p->tls));
    p->peer_not_after = tls_conn_peer_not_after(p->tls);
    judge(p);
}

static const struct proxy_conn_cbs out_cbs = {.on_connected = out_connected, .on_close = on_close};
static const struct proxy_conn_cbs in_cbs = {.on_connected = in_connected, .on_close = on_close};

/* in_mtls starts the inbound TLS server on |p|'s accepted fd. */
static void in_mtls(struct pconn *p)
{
    p->c = proxy_conn_new(p->pl, p->fd, &in_cbs, p);
    p->fd = -1;
    if (p->creds == NULL ||
        tls_conn_new_server(&p->tls, p->creds, proxy_conn_get_fd(p->c, PROXY_DOWN)) != WEFT_OK) {
        p->reason = "no credentials for mTLS";
        weft_counter_add(p->d->m.in_refused, 1);
        proxy_conn_close(p->c, "no credentials");
        return;
    }
    proxy_conn_handshake(p->c, PROXY_DOWN, hs_step, hs_reason, p->tls, in_handshake_done, p);
}

/* in_plain takes the inbound connection as plaintext from an unauthenticated peer. */
static void in_plain(struct pconn *p)
{
    p->c = proxy_conn_new(p->pl, p->fd, &in_cbs, p);
    p->fd = -1;
    judge(p);
}

static void refuse(struct daemon *d, int fd, bool inbound, const char *src, const char *dst,
                   const char *why);

static __thread size_t parked; /* connections of this worker in the sniff stage */

static void sniff_stop(struct pconn *p)
{
    ev_io_stop(p->pl->loop, &p->sniff_io);
    ev_timer_stop(p->pl->loop, &p->sniff_timer);
    int one = 1; /* the relay reads from the first byte again */
    setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    parked--;
}

/* sniff_fail closes a connection that was not taken, with |why| in the access log. */
static void sniff_fail(struct pconn *p, const char *why)
{
    sniff_stop(p);
    refuse(p->d, p->fd, true, p->src_s, p->dst_s, why);
    pconn_free(p);
}

static void on_sniff_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct pconn *p = container_of(w, struct pconn, sniff_io);
    static __thread uint8_t buf[SNIFF_MAX_BYTES];
    ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n < 0 || (n == 0 && p->peeked == 0)) {
        sniff_fail(p, n < 0 ? "the peer reset before its first bytes" : "closed before a byte");
        return;
    }
    /* readable with no more bytes than last time: the peer closed after a partial hello */
    bool eof = n == 0 || (size_t)n == p->peeked;
    p->peeked = (size_t)n;
    CBS cbs;
    CBS_init(&cbs, buf, (size_t)n);
    struct sniff_result r;
    enum sniff_verdict v = sniff_classify(&r, &cbs, eof);
    if (v == SNIFF_NEED_MORE) {
        /* wake when the rest has come (or at EOF), not on every turn of the loop */
        int lowat = (int)((size_t)n + r.need);
        setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
        return;
    }
    sniff_stop(p);
    if (v == SNIFF_TLS_WEFT) {
        in_mtls(p);
    } else {
        in_plain(p);
    }
}

static void on_sniff_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct pconn *p = container_of(w, struct pconn, sniff_timer);
    if (p->peeked > 0) {
        /* the start of a ClientHello, then nothing: a slow mesh client is waited for up to the
         * handshake timeout, then refused; its bytes are never handed to the app as plaintext */
        if (!p->extended) {
            p->extended = true;
            ev_timer_set(&p->sniff_timer, SNIFF_PARTIAL_WAIT_S, 0);
            ev_timer_start(p->pl->loop, &p->sniff_timer);
            return;
        }
        sniff_fail(p, "an unfinished TLS ClientHello");
        return;
    }
    sniff_stop(p);
    weft_counter_add(p->d->m.permissive_timeouts, 1);
    in_plain(p); /* a client that says nothing: the server may speak first */
}

/* --- live connections, checked again ------------------------------------------------------- */

struct recheck {
    struct proxy_state *now_state;
    int64_t now;
};

/* recheck closes a relaying connection that its peer's certificate, the deny list or the policy
 * no longer allows (DESIGN.md §2: an SVID past notAfter is never accepted; issue 6: revocation
 * and policy changes reach live connections), with the reason in the access log. */
static void recheck(struct proxy_conn *c, void *arg)
{
    struct recheck *r = arg;
    struct pconn *p = proxy_conn_get_arg(c);
    if (!p->relaying) {
        return;
    }
    if (p->peer_not_after != 0 && r->now >= p->peer_not_after) {
        p->decision = "deny";
        p->reason = "peer certificate expired";
        proxy_conn_close(c, "peer certificate expired");
        return;
    }
    if (r->now_state == NULL || r->now_state->generation == p->st->generation) {
        return;
    }
    if (p->peer[0] != '\0' && proxy_state_denied(r->now_state, p->peer, p->serial)) {
        p->decision = "deny";
        p->reason = "peer revoked";
        proxy_conn_close(c, "peer revoked");
        return;
    }
    if (p->inbound && r->now_state->cfg != NULL && r->now_state->cfg != p->st->cfg &&
        !decide(p, r->now_state->cfg->policy)) {
        p->decision = "deny";
        proxy_conn_close(c, "policy now denies");
        return;
    }
    proxy_state_unref(p->st); /* judged against this state from now on */
    p->st = proxy_state_ref(r->now_state);
}

static void on_tick(struct proxy_loop *pl, void *arg)
{
    struct daemon *d = arg;
    struct recheck r = {proxy_agent_state(d->agent), (int64_t)time(NULL)};
    proxy_loop_each(pl, recheck, &r);
    proxy_state_unref(r.now_state);
}

/* --- accepting ----------------------------------------------------------------------------- */

static void refuse(struct daemon *d, int fd, bool inbound, const char *src, const char *dst,
                   const char *why)
{
    struct proxy_access a = {.direction = inbound ? "inbound" : "outbound",
                             .src = src,
                             .dst = dst,
                             .decision = "refused",
                             .rule = -1,
                             .reason = why,
                             .close = why};
    proxy_access_log(&a);
    weft_counter_add(inbound ? d->m.in_refused : d->m.out_refused, 1);
    close(fd);
}

static void on_accept(struct proxy_loop *pl, int fd, const union weft_sockaddr *peer,
                      socklen_t peer_len, size_t addr_idx, void *arg)
{
    (void)peer_len;
    struct daemon *d = arg;
    bool inbound = addr_idx == ADDR_IN4 || addr_idx == ADDR_IN6;
    struct pconn *p = weft_xcalloc(1, sizeof(*p));
    p->d = d;
    p->pl = pl;
    p->fd = fd;
    p->inbound = inbound;
    p->rule = -1;
    memcpy(&p->src, peer, peer_len < sizeof(p->src) ? peer_len : sizeof(p->src));
    addr_text(p->src_s, sizeof(p->src_s), &peer->sa);
    p->dst_len = sizeof(p->dst);
    if (proxy_original_dst(fd, &p->dst, &p->dst_len) != WEFT_OK) {
        refuse(d, fd, inbound, p->src_s, "?", "no original destination (not redirected)");
        free(p);
        return;
    }
    addr_text(p->dst_s, sizeof(p->dst_s), &p->dst.sa);
    union weft_sockaddr local;
    socklen_t local_len = sizeof(local);
    if (getsockname(fd, &local.sa, &local_len) == 0 && local_len == p->dst_len &&
        memcmp(&local, &p->dst, local_len) == 0) {
        /* addressed to the proxy's own port, not redirected to it: dialling it would loop */
        refuse(d, fd, inbound, p->src_s, p->dst_s, "addressed to the proxy itself, not redirected");
        free(p);
        return;
    }
    p->port = port_of(&p->dst.sa);
    p->st = proxy_agent_state(d->agent);
    if (!proxy_state_ready(p->st, (int64_t)time(NULL))) {
        refuse(d, fd, inbound, p->src_s, p->dst_s, "not ready: no SVID or configuration yet");
        proxy_state_unref(p->st);
        free(p);
        return;
    }
    p->creds = current_creds(d);
    if (!inbound) {
        p->c = proxy_conn_new(pl, fd, &out_cbs, p);
        p->fd = -1;
        if (proxy_conn_connect(p->c, &p->dst.sa, p->dst_len) != WEFT_OK) {
            return; /* closed already, with its reason in the access log */
        }
        return;
    }
    uint32_t source;
    if (policy_mtls_mode(p->st->cfg->policy, p->port, &source) == POLICY_MTLS_STRICT) {
        in_mtls(p);
        return;
    }
    if (parked >= SNIFF_MAX_PARKED) {
        refuse(d, fd, true, p->src_s, p->dst_s, "too many connections waiting for first bytes");
        pconn_free(p);
        return;
    }
    parked++;
    ev_io_init(&p->sniff_io, on_sniff_readable, fd, EV_READ);
    int wait_ms =
        d->o->permissive_wait_ms > 0 ? d->o->permissive_wait_ms : PROXY_DEFAULT_PERMISSIVE_WAIT_MS;
    ev_timer_init(&p->sniff_timer, on_sniff_timeout, wait_ms / 1000.0, 0);
    ev_io_start(pl->loop, &p->sniff_io);
    ev_timer_start(pl->loop, &p->sniff_timer);
}

/* --- admin ----------------------------------------------------------------------------------- */

static bool http_ready(void *arg, char *why, size_t why_len)
{
    struct daemon *d = arg;
    struct proxy_state *s = proxy_agent_state(d->agent);
    bool ok = proxy_state_ready(s, (int64_t)time(NULL));
    if (!ok) {
        snprintf(why, why_len, "%s",
                 s->id == NULL    ? "no SVID from the agent yet"
                 : s->cfg == NULL ? "no configuration from the agent yet"
                                  : "the SVID is not valid now");
    }
    proxy_state_unref(s);
    return ok && !atomic_load(&d->quit);
}

static int route_live(void *arg, char **body, size_t *len, const char **type)
{
    (void)arg, (void)type;
    *body = weft_xstrndup("alive\n", 6);
    *len = 6;
    return 200;
}

static int route_certs(void *arg, char **body, size_t *len, const char **type)
{
    struct daemon *d = arg;
    struct proxy_state *s = proxy_agent_state(d->agent);
    char buf[4096];
    if (s->id == NULL) {
        snprintf(buf, sizeof(buf), "{\"spiffe_id\":null}\n");
    } else {
        snprintf(buf, sizeof(buf),
                 "{\"spiffe_id\":\"%.2048s\",\"not_before\":%lld,\"not_after\":%lld,"
                 "\"chain_bytes\":%zu}\n",
                 s->id->spiffe_id, (long long)s->id->not_before, (long long)s->id->not_after,
                 s->id->chain_len);
    }
    proxy_state_unref(s);
    *body = weft_xstrndup(buf, strlen(buf));
    *len = strlen(buf);
    *type = "application/json";
    return 200;
}

static int route_config(void *arg, char **body, size_t *len, const char **type)
{
    struct daemon *d = arg;
    struct proxy_state *s = proxy_agent_state(d->agent);
    char buf[512];
    if (s->cfg == NULL) {
        snprintf(buf, sizeof(buf), "{\"config\":null}\n");
    } else {
        snprintf(buf, sizeof(buf),
                 "{\"sequence\":%" PRIu64 ",\"policy_version\":%" PRIu64
                 ",\"directory_version\":%" PRIu64
                 ",\"directory_entries\":%zu,\"deny_ids\":%zu,\"deny_serials\":%zu,"
                 "\"policies\":%zu}\n",
                 s->cfg->sequence, s->cfg->policy_version, s->cfg->directory_version,
                 s->cfg->num_dir, s->cfg->num_deny_ids, s->cfg->num_deny_serials,
                 s->cfg->policy->num_policies);
    }
    proxy_state_unref(s);
    *body = weft_xstrndup(buf, strlen(buf));
    *len = strlen(buf);
    *type = "application/json";
    return 200;
}

static int route_quit(void *arg, char **body, size_t *len, const char **type)
{
    (void)type;
    struct daemon *d = arg;
    atomic_store(&d->quit, true);
    *body = weft_xstrndup("draining\n", 9);
    *len = 9;
    return 200;
}

/* --- the run ------------------------------------------------------------------------------- */

static void metrics_init(struct metrics *m)
{
    m->reg = weft_metrics_new();
    static const char *const name = "weft_proxy_connections_total";
    static const char *const help = "Connections by direction and outcome";
    struct weft_label l[2] = {{"direction", "outbound"}, {"outcome", "mtls"}};
    m->out_mtls = weft_metrics_counter(m->reg, name, help, l, 2);
    l[1].value = "passthrough";
    m->out_passthrough = weft_metrics_counter(m->reg, name, help, l, 2);
    l[1].value = "refused";
    m->out_refused = weft_metrics_counter(m->reg, name, help, l, 2);
    l[0].value = "inbound";
    m->in_refused = weft_metrics_counter(m->reg, name, help, l, 2);
    l[1].value = "allowed";
    m->in_allowed = weft_metrics_counter(m->reg, name, help, l, 2);
    l[1].value = "denied";
    m->in_denied = weft_metrics_counter(m->reg, name, help, l, 2);
    struct weft_label k = {"kind", "full"};
    m->full = weft_metrics_counter(m->reg, "weft_proxy_handshakes_total",
                                   "TLS handshakes completed, full or resumed", &k, 1);
    k.value = "resumed";
    m->resumed = weft_metrics_counter(m->reg, "weft_proxy_handshakes_total",
                                      "TLS handshakes completed, full or resumed", &k, 1);
    m->permissive_timeouts =
        weft_metrics_counter(m->reg, "weft_proxy_permissive_timeouts_total",
                             "PERMISSIVE inbound connections taken as plaintext because the "
                             "client said nothing in time",
                             NULL, 0);
    m->ready =
        weft_metrics_gauge(m->reg, "weft_proxy_ready", "1 when SVID and config are held", NULL, 0);
    m->svid_not_after = weft_metrics_gauge(m->reg, "weft_proxy_svid_not_after_seconds",
                                           "notAfter of the SVID in use", NULL, 0);
    m->config_sequence = weft_metrics_gauge(m->reg, "weft_proxy_config_sequence",
                                            "Sequence of the configuration in force", NULL, 0);
    m->open =
        weft_metrics_gauge(m->reg, "weft_proxy_open_connections", "Connections open", NULL, 0);
}

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "weft-proxy: %s: %s\n", what, err);
    return 1;
}

static void sockaddr_any(union weft_sockaddr *a, socklen_t *len, bool v6, int port)
{
    memset(a, 0, sizeof(*a));
    if (v6) {
        a->in6.sin6_family = AF_INET6;
        a->in6.sin6_addr = in6addr_any;
        a->in6.sin6_port = htons((uint16_t)port);
        *len = sizeof(a->in6);
    } else {
        a->in4.sin_family = AF_INET;
        a->in4.sin_addr.s_addr = htonl(INADDR_ANY);
        a->in4.sin_port = htons((uint16_t)port);
        *len = sizeof(a->in4);
    }
}

int proxy_daemon_run(const struct proxy_opts *o)
{
    static struct daemon dd;
    struct daemon *d = &dd;
    memset(d, 0, sizeof(*d));
    d->o = o;
    pthread_mutex_init(&d->mu, NULL);
    metrics_init(&d->m);
    char err[512];
    int rc = 1;
    signal(SIGPIPE, SIG_IGN);
    grpc_init();
    struct proxy_agent_config acfg = {
        .socket = o->agent_socket != NULL ? o->agent_socket : PROXY_DEFAULT_AGENT_SOCKET,
        .spiffe_id = o->spiffe_id,
        .num_claims = o->num_claims,
        .on_update = on_update,
        .arg = d,
    };
    memcpy(acfg.claims, o->claims, sizeof(acfg.claims));
    if (proxy_agent_start(&d->agent, &acfg, err, sizeof(err)) != WEFT_OK) {
        rc = fail("agent client", err);
        goto out;
    }
    union weft_sockaddr addrs[NUM_ADDRS];
    socklen_t lens[NUM_ADDRS];
    int out_port = o->outbound_port > 0 ? o->outbound_port : PROXY_DEFAULT_OUTBOUND_PORT;
    int in_port = o->inbound_port > 0 ? o->inbound_port : PROXY_DEFAULT_INBOUND_PORT;
    sockaddr_any(&addrs[ADDR_OUT4], &lens[ADDR_OUT4], false, out_port);
    sockaddr_any(&addrs[ADDR_OUT6], &lens[ADDR_OUT6], true, out_port);
    sockaddr_any(&addrs[ADDR_IN4], &lens[ADDR_IN4], false, in_port);
    sockaddr_any(&addrs[ADDR_IN6], &lens[ADDR_IN6], true, in_port);
    struct proxy_pool_cfg pcfg = {
        .num_workers = o->workers,
        .addrs = addrs,
        .addr_lens = lens,
        .num_addrs = NUM_ADDRS,
        .conn_cfg = {.idle_timeout_s = o->idle_s},
        .on_accept = on_accept,
        .arg = d,
        .on_tick = on_tick,
        .tick_s = 1.0,
    };
    if (proxy_pool_start(&d->pool, &pcfg) != WEFT_OK) {
        snprintf(err, sizeof(err), "cannot listen on :%d and :%d (IPv4 and IPv6): %s", out_port,
                 in_port, strerror(errno));
        rc = fail("listeners", err);
        goto out;
    }
    struct httpadmin_route routes[] = {
        {"/live", false, route_live, d},
        {"/certs", false, route_certs, d},
        {"/config", false, route_config, d},
        {"/quitquitquit", true, route_quit, d},
    };
    struct httpadmin_config hc = {.listen = o->admin != NULL ? o->admin : PROXY_DEFAULT_ADMIN,
                                  .metrics = d->m.reg,
                                  .ready = http_ready,
                                  .ready_arg = d,
                                  .routes = routes,
                                  .num_routes = nitems(routes)};
    if (httpadmin_start(&d->http, &hc, err, sizeof(err)) != WEFT_OK) {
        rc = fail("--admin", err);
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    char ports[64];
    snprintf(ports, sizeof(ports), "%d/%d", out_port, in_port);
    weft_log(WEFT_LOG_INFO, "weft-proxy serving", 3, "agent", acfg.socket, "outbound/inbound",
             ports, "admin", hc.listen);
    while (atomic_load(&stop_signal) == 0 && !atomic_load(&d->quit)) {
        struct proxy_state *s = proxy_agent_state(d->agent);
        weft_gauge_set(d->m.ready, proxy_state_ready(s, (int64_t)time(NULL)) ? 1 : 0);
        proxy_state_unref(s);
        weft_gauge_set(d->m.open, (double)proxy_pool_open_conns(d->pool));
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double drain = o->drain_s > 0 ? o->drain_s : PROXY_DEFAULT_DRAIN_S;
    char ds[24];
    snprintf(ds, sizeof(ds), "%.1f", drain);
    weft_log(WEFT_LOG_INFO, "weft-proxy draining", 1, "deadline_s", ds);
    atomic_store(&d->quit, true);
    proxy_pool_drain(d->pool, drain);
    for (double waited = 0; waited < drain + 1 && proxy_pool_open_conns(d->pool) > 0;
         waited += 0.1) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    weft_log(WEFT_LOG_INFO, "weft-proxy stopped", 0);
    rc = 0;
out:
    httpadmin_stop(d->http);
    proxy_pool_free(d->pool);
    proxy_agent_stop(d->agent);
    tls_creds_unref(d->creds);
    proxy_identity_unref(d->creds_id);
    weft_metrics_free(d->m.reg);
    grpc_shutdown();
    return rc;
}
