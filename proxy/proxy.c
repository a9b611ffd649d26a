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
#include <jansson.h>
#include <grpc/grpc.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "lib/base/hash.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/metrics.h"
#include "lib/httpadmin/httpadmin.h"
#include "proxy/probes.h"
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

/* Label sets made at run time (by policy and rule, by port): past SERIES_MAX the policy, rule
 * and port become "other", so a churning policy or a port scan cannot grow /metrics without
 * bound. They are found by hash in SERIES_SLOTS slots. */
#define SERIES_MAX 512
#define SERIES_SLOTS 1024

struct metrics {
    struct weft_metrics *reg;
    struct weft_counter *out_mtls, *out_passthrough, *out_refused, *out_denied, *in_allowed,
        *in_denied, *in_refused, *handshake_failures, *resumed, *full;
    struct weft_histogram *hs_seconds[2][2]; /* [inbound][resumed] */
    struct weft_counter *bytes[2][2];        /* [inbound][out: to the side that connected] */
    struct weft_gauge *ready, *svid_not_after, *config_sequence, *open, *buffered;
    /* counters labelled at run time, found by the hash of their family and label values */
    pthread_mutex_t series_mu;
    struct {
        uint64_t hash;
        char *key;
        struct weft_counter *c;
    } series[SERIES_SLOTS];
    size_t num_series;
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
    struct proxy_probes app_probes;
    struct proxy_probe_server *probes;
    struct metrics m;
    atomic_bool quit;
};

static atomic_int stop_signal;
static void on_signal(int sig) { atomic_store(&stop_signal, sig); }

/* --- metrics labelled at run time -------------------------------------------------------- */

/* labelled returns the counter |name|{labels}, made on first use. Past SERIES_MAX label sets,
 * the values of the labels in |collapse| (bit i: label i; the unbounded ones, a policy name or
 * a port) become "other", so a decision or a reason is never lost. */
static struct weft_counter *labelled(struct metrics *m, const char *name, const char *help,
                                     struct weft_label *l, size_t n, uint32_t collapse)
{
    char key[1200];
    size_t used = (size_t)snprintf(key, sizeof(key), "%s", name);
    for (size_t i = 0; i < n && used < sizeof(key); i++) {
        used += (size_t)snprintf(key + used, sizeof(key) - used, "\x1f%.300s", l[i].value);
    }
    uint64_t h = weft_fnv1a_str(WEFT_FNV1A_INIT, key);
    struct weft_counter *c = NULL;
    pthread_mutex_lock(&m->series_mu);
    size_t slot = (size_t)(h % SERIES_SLOTS);
    while (m->series[slot].key != NULL &&
           (m->series[slot].hash != h || strcmp(m->series[slot].key, key) != 0)) {
        slot = (slot + 1) % SERIES_SLOTS; /* open addressing: never full, SERIES_MAX < SLOTS */
    }
    if (m->series[slot].key != NULL) {
        c = m->series[slot].c;
    } else if (m->num_series < SERIES_MAX) {
        c = weft_metrics_counter(m->reg, name, help, l, n);
        m->series[slot].hash = h;
        m->series[slot].key = weft_xstrndup(key, strlen(key));
        m->series[slot].c = c;
        m->num_series++;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (collapse & (1u << i)) {
                l[i].value = "other";
            }
        }
        c = weft_metrics_counter(m->reg, name, help, l, n); /* the registry finds it again */
    }
    pthread_mutex_unlock(&m->series_mu);
    return c;
}

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
        .ticket_life_s = d->o->no_resumption ? -1 : 0,
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
    struct tls_conn *tls;      /* until handed to the relay */
    struct tls_conn *tls_live; /* then the relay's, borrowed: it lives as long as the relay */
    bool inbound;
    union weft_sockaddr src, dst;
    socklen_t dst_len;
    uint16_t port;
    char src_s[64], dst_s[64], policy[300], serial[41];
    char *peer;                       /* the verified SPIFFE ID; NULL: a plaintext peer */
    int64_t peer_not_after;           /* of the verified peer chain; 0: a plaintext peer */
    bool relaying;                    /* decided and relaying: what the re-checks look at */
    uint64_t counted_in, counted_out; /* bytes already in the metrics */
    double close_at; /* a policy that now denies it granted a grace until then (mono_s); 0: none */
    uint32_t allow_grace_s; /* the closeGraceSeconds of the policy that allowed it */
    const char *decision, *reason;
    int64_t rule;
    bool resumed;
    const char *tls_version;  /* NULL: plaintext */
    double hs_start;          /* monotonic seconds, when the TLS handshake began */
    bool hs_done;             /* and it completed: the peer is verified */
    struct policy_note *note; /* what dry-run and audit policies said; NULL: nothing */
    /* the sniffing stage of an inbound connection, before its handshake or its app dial */
    bool sniffing, strict;
    ev_io sniff_io;
    ev_timer sniff_timer;
    size_t peeked; /* bytes seen so far */
    bool extended; /* the wait was extended for a partial ClientHello */
    bool lowat;    /* SO_RCVLOWAT was raised to wait for the rest of one */
};

/* struct policy_note: the dry-run and audit fields of the access log (rare, so apart). */
struct policy_note {
    const char *dry_run, *dry_run_reason;
    char dry_run_policy[300];
    int64_t dry_run_rule;
    char audit[300];
    int64_t audit_rule;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
    free(p->note);
    free(p->peer);
    free(p);
}

static void sniff_stop(struct pconn *p);

/* count_decision counts |decision| (allow, deny, passthrough) of |p| by its deciding policy,
 * rule and reason (weft_proxy_policy_decisions_total). */
static void count_decision(struct pconn *p, const char *decision)
{
    char rule[24];
    snprintf(rule, sizeof(rule), "%lld", (long long)p->rule);
    struct weft_label l[4] = {{"decision", decision},
                              {"policy", p->policy[0] != '\0' ? p->policy : "-"},
                              {"rule", p->rule >= 0 ? rule : "-"},
                              {"reason", p->reason}};
    weft_counter_add(labelled(&p->d->m, "weft_proxy_policy_decisions_total",
                              "Connection decisions (at setup, and when a live connection is "
                              "cut), by decision, deciding policy, rule and reason",
                              l, 4, 1u << 1 | 1u << 2),
                     1);
}

/* tell_peer sends a TLS peer the alert that says why its connection is closed (proxy/tls.h
 * tls_cut), whether the handshake just finished or the relay owns the TLS connection. */
static void tell_peer(struct pconn *p, enum tls_cut why)
{
    struct tls_conn *t = p->tls != NULL ? p->tls : p->tls_live;
    if (t != NULL) {
        tls_conn_cut(t, why);
    }
}

/* cut closes a connection for |why|, which no policy rule decided (a certificate that
 * expired, a peer revoked), counted and logged as a deny. */
static void cut(struct pconn *p, const char *why, enum tls_cut alert)
{
    tell_peer(p, alert);
    p->decision = "deny";
    p->reason = why;
    p->policy[0] = '\0';
    p->rule = -1;
    free(p->note);
    p->note = NULL;
    count_decision(p, p->decision);
    proxy_conn_close(p->c, why);
}

/* count_bytes adds what |p| relayed since the last count to the metrics (each second and at
 * the close, so a long connection shows as it goes). */
static void count_bytes(struct pconn *p, const struct proxy_conn_stats *st)
{
    weft_counter_add(p->d->m.bytes[p->inbound][0], st->bytes_down_to_up - p->counted_in);
    weft_counter_add(p->d->m.bytes[p->inbound][1], st->bytes_up_to_down - p->counted_out);
    p->counted_in = st->bytes_down_to_up;
    p->counted_out = st->bytes_up_to_down;
}

static void on_close(struct proxy_conn *c, const struct proxy_conn_stats *st, const char *reason,
                     void *arg)
{
    (void)c;
    struct pconn *p = arg;
    if (p->sniffing) {
        sniff_stop(p); /* a drain deadline or shutdown while it waited for first bytes */
    }
    if (p->tls != NULL && !p->hs_done && strcmp(reason, PROXY_REASON_DRAIN_DEADLINE) != 0 &&
        strcmp(reason, PROXY_REASON_SHUTDOWN) != 0) {
        weft_counter_add(p->d->m.handshake_failures, 1);
    }
    count_bytes(p, st);
    struct policy_note *n = p->note;
    struct proxy_access a = {
        .direction = p->inbound ? "inbound" : "outbound",
        .src = p->src_s,
        .dst = p->dst_s,
        .peer_id = p->peer,
        .decision = p->decision != NULL ? p->decision : "refused",
        .policy = p->policy[0] != '\0' ? p->policy : NULL,
        .rule = p->rule,
        .reason = p->reason != NULL ? p->reason : reason,
        .dry_run = n != NULL ? n->dry_run : NULL,
        .dry_run_policy = n != NULL ? n->dry_run_policy : NULL,
        .dry_run_rule = n != NULL ? n->dry_run_rule : -1,
        .dry_run_reason = n != NULL ? n->dry_run_reason : NULL,
        .audit = n != NULL && n->audit[0] != '\0' ? n->audit : NULL,
        .audit_rule = n != NULL ? n->audit_rule : -1,
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

/* handshake starts the TLS handshake of |p->tls| on |side|, timing it. */
static void handshake(struct pconn *p, enum proxy_side_id side, proxy_handshake_done_fn done)
{
    p->hs_start = mono_s();
    proxy_conn_handshake(p->c, side, hs_step, hs_reason, p->tls, done, p);
}

/* relay_start gives the relay side |tls_side| the TLS transport (the other stays plain) and
 * starts relaying. */
static void relay_start(struct pconn *p, enum proxy_side_id tls_side)
{
    p->relaying = true;
    if (p->tls != NULL) {
        p->tls_version = tls_conn_version(p->tls); /* a static string */
        p->resumed = tls_conn_resumed(p->tls);
        proxy_conn_set_xprt(p->c, tls_side, &tls_xprt, p->tls, tls_free);
        p->tls_live = p->tls;
        p->tls = NULL;
    }
    proxy_conn_start(p->c);
}

/* handshake_done records the peer |p->tls| verified and the handshake's kind and time. */
static void handshake_done(struct pconn *p)
{
    const char *peer = tls_conn_peer_id(p->tls);
    p->peer = weft_xstrndup(peer, strlen(peer));
    snprintf(p->serial, sizeof(p->serial), "%s", tls_conn_peer_serial(p->tls));
    p->peer_not_after = tls_conn_peer_not_after(p->tls);
    p->hs_done = true;
    bool resumed = tls_conn_resumed(p->tls);
    weft_counter_add(resumed ? p->d->m.resumed : p->d->m.full, 1);
    weft_histogram_observe(p->d->m.hs_seconds[p->inbound][resumed], mono_s() - p->hs_start);
}

/* --- outbound ---------------------------------------------------------------------------- */

/* egress_decide judges an outbound destination by the --egress-* rules: any matching deny rule
 * refuses; a destination in the mesh is otherwise allowed (its server judges the caller); any
 * other needs a matching allow rule when the default is deny. Fills in the deciding rule and
 * reason; returns whether the connection may go. */
static bool egress_decide(struct pconn *p, bool in_mesh)
{
    const struct proxy_opts *o = p->d->o;
    struct weft_ip ip = {.v6 = p->dst.sa.sa_family == AF_INET6};
    if (ip.v6) {
        memcpy(ip.bytes, &p->dst.in6.sin6_addr, 16);
    } else {
        memcpy(ip.bytes, &p->dst.in4.sin_addr, 4);
    }
    int64_t allow_rule = -1;
    for (size_t i = 0; i < o->num_egress; i++) {
        const struct proxy_egress_rule *r = &o->egress[i];
        if (!weft_cidr_contains(&r->net, &ip) || p->port < r->port_lo || p->port > r->port_hi) {
            continue;
        }
        if (!r->allow) {
            p->rule = (int64_t)i;
            p->reason = "egress-deny-matched";
            snprintf(p->policy, sizeof(p->policy), "egress");
            return false;
        }
        if (allow_rule < 0) {
            allow_rule = (int64_t)i;
        }
    }
    if (in_mesh) {
        return true;
    }
    if (allow_rule >= 0) {
        p->rule = allow_rule;
        p->reason = "egress-allow-matched";
        snprintf(p->policy, sizeof(p->policy), "egress");
        return true;
    }
    if (o->egress_deny) {
        p->reason = "egress-default-deny";
        snprintf(p->policy, sizeof(p->policy), "egress");
        return false;
    }
    return true;
}

static void out_handshake_done(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    (void)c;
    struct pconn *p = arg;
    handshake_done(p);
    if (proxy_state_denied(p->st, p->peer, p->serial)) {
        weft_counter_add(p->d->m.out_denied, 1);
        cut(p, "peer revoked", TLS_CUT_REVOKED);
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
        p->reason = p->policy[0] != '\0' ? "egress-allow-matched" : "not in the mesh directory";
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
    handshake(p, PROXY_UP, out_handshake_done);
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
              proxyv2_encode(&cbb, &p->src.sa, &p->dst.sa, p->peer) == WEFT_OK &&
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

/* struct verdict: one evaluation of the policy for a connection, before it is taken. */
struct verdict {
    bool allow;
    char policy[300]; /* "" when none */
    int64_t rule;
    const char *reason;
    enum policy_reason why;
    struct policy_note *note; /* owned until taken */
    uint32_t grace_s;         /* the deciding AuthorizationPolicy's closeGraceSeconds */
};

/* decide evaluates the policy of |snap| for |p|'s peer and port into |v|: the decision, the
 * deciding policy, rule and reason, what dry-run and audit policies said, and the deciding
 * policy's closeGraceSeconds. */
static void decide(const struct pconn *p, const struct policy_snapshot *snap, struct verdict *v)
{
    struct policy_request req = {p->peer, p->port};
    struct policy_result r;
    policy_eval(snap, &req, &r);
    const struct policy_verdict *e = &r.enforced;
    v->allow = e->decision == POLICY_ALLOW;
    v->rule = e->rule != POLICY_NONE ? (int64_t)e->rule : -1;
    policy_verdict_name(v->policy, sizeof(v->policy), snap, e);
    if (strcmp(v->policy, "-") == 0) {
        v->policy[0] = '\0';
    }
    v->reason = policy_reason_str(e->reason);
    v->why = e->reason;
    v->grace_s = e->policy != POLICY_NONE && e->reason != POLICY_REASON_MTLS_STRICT
                     ? snap->policies[e->policy].close_grace_s
                     : 0;
    v->note = NULL;
    bool dry = r.dry_run_matched || r.dry_run.decision != e->decision;
    if (dry || r.audit_policy != POLICY_NONE) {
        struct policy_note *n = weft_xcalloc(1, sizeof(*n));
        if (dry) {
            n->dry_run = r.dry_run.decision == POLICY_ALLOW ? "allow" : "deny";
            n->dry_run_reason = policy_reason_str(r.dry_run.reason);
            n->dry_run_rule = r.dry_run.rule != POLICY_NONE ? (int64_t)r.dry_run.rule : -1;
            policy_verdict_name(n->dry_run_policy, sizeof(n->dry_run_policy), snap, &r.dry_run);
        }
        if (r.audit_policy != POLICY_NONE) {
            snprintf(n->audit, sizeof(n->audit), "%.140s/%.140s",
                     snap->policies[r.audit_policy].namespace_,
                     snap->policies[r.audit_policy].name);
            n->audit_rule = (int64_t)r.audit_rule;
        }
        v->note = n;
    }
}

/* take_verdict makes |v| the one the access log and the metrics report for |p|. */
static void take_verdict(struct pconn *p, struct verdict *v)
{
    snprintf(p->policy, sizeof(p->policy), "%s", v->policy);
    p->rule = v->rule;
    p->reason = v->reason;
    if (v->allow) {
        p->allow_grace_s = v->grace_s;
    }
    free(p->note);
    p->note = v->note;
    v->note = NULL;
}

/* not_ready_why says why |s| is not ready (proxy_state_ready is false). */
static const char *not_ready_why(const struct proxy_state *s)
{
    return s->id == NULL    ? "not ready: no SVID from the agent yet"
           : s->cfg == NULL ? "not ready: no configuration from the agent yet"
           : s->foreign_cfg ? "not ready: the configuration is for another workload"
                            : "not ready: the SVID is not valid now";
}

/* judge decides the connection by policy; on allow dials the app (at the original
 * destination), else closes with the deciding policy and rule. */
static void judge(struct pconn *p)
{
    /* by the newest state: sniffing and a handshake may have taken seconds since the accept,
     * and a new connection is never judged by a policy that has been replaced */
    struct proxy_state *now = proxy_agent_state(p->d->agent);
    if (now->generation != p->st->generation) {
        proxy_state_unref(p->st);
        p->st = now;
        if (!proxy_state_ready(p->st, (int64_t)time(NULL))) {
            p->reason = not_ready_why(p->st);
            weft_counter_add(p->d->m.in_refused, 1);
            proxy_conn_close(p->c, p->reason);
            return;
        }
    } else {
        proxy_state_unref(now);
    }
    if (p->peer != NULL && proxy_state_denied(p->st, p->peer, p->serial)) {
        weft_counter_add(p->d->m.in_denied, 1); /* revoked after its verifying creds were made */
        cut(p, "peer revoked", TLS_CUT_REVOKED);
        return;
    }
    struct verdict v;
    decide(p, p->st->cfg->policy, &v);
    take_verdict(p, &v);
    if (!v.allow) {
        p->decision = "deny";
        weft_counter_add(p->d->m.in_denied, 1);
        count_decision(p, p->decision);
        tell_peer(p, TLS_CUT_DENIED);
        proxy_conn_close(p->c, "denied by policy");
        return;
    }
    p->decision = "allow";
    weft_counter_add(p->d->m.in_allowed, 1);
    count_decision(p, p->decision);
    /* a connect that fails at once has closed the connection (and freed |p|) already */
    if (proxy_conn_connect(p->c, &p->dst.sa, p->dst_len) != WEFT_OK) {
        return; /* closed already: |p| is gone */
    }
}

static void in_handshake_done(struct proxy_conn *c, enum proxy_side_id side, void *arg)
{
    (void)c, (void)side;
    struct pconn *p = arg;
    handshake_done(p);
    judge(p);
}

static const struct proxy_conn_cbs out_cbs = {.on_connected = out_connected, .on_close = on_close};
static const struct proxy_conn_cbs in_cbs = {.on_connected = in_connected, .on_close = on_close};

/* in_mtls starts the inbound TLS server on |p|'s accepted socket. */
static void in_mtls(struct pconn *p)
{
    if (p->creds == NULL ||
        tls_conn_new_server(&p->tls, p->creds, proxy_conn_get_fd(p->c, PROXY_DOWN)) != WEFT_OK) {
        p->reason = "no credentials for mTLS";
        weft_counter_add(p->d->m.in_refused, 1);
        proxy_conn_close(p->c, "no credentials");
        return;
    }
    handshake(p, PROXY_DOWN, in_handshake_done);
}

static __thread size_t parked; /* PERMISSIVE connections of this worker in the sniff stage */

static void sniff_stop(struct pconn *p)
{
    ev_io_stop(p->pl->loop, &p->sniff_io);
    ev_timer_stop(p->pl->loop, &p->sniff_timer);
    if (p->lowat) {
        int one = 1; /* the relay reads from the first byte again */
        setsockopt(proxy_conn_get_fd(p->c, PROXY_DOWN), SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    }
    p->sniffing = false;
    if (!p->strict) {
        parked--;
    }
}

/* sniff_fail closes a connection that was not taken, with |why| in the access log. */
static void sniff_fail(struct pconn *p, const char *why)
{
    sniff_stop(p);
    p->reason = why;
    weft_counter_add(p->d->m.in_refused, 1);
    proxy_conn_close(p->c, why);
}

static void on_sniff_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct pconn *p = container_of(w, struct pconn, sniff_io);
    static __thread uint8_t buf[SNIFF_MAX_BYTES];
    ssize_t n =
        recv(proxy_conn_get_fd(p->c, PROXY_DOWN), buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
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
        setsockopt(proxy_conn_get_fd(p->c, PROXY_DOWN), SOL_SOCKET, SO_RCVLOWAT, &lowat,
                   sizeof(lowat));
        p->lowat = true;
        return;
    }
    sniff_stop(p);
    if (v == SNIFF_TLS_WEFT) {
        in_mtls(p);
    } else {
        judge(p); /* plaintext (or another TLS) from an unauthenticated peer */
    }
}

static void on_sniff_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct pconn *p = container_of(w, struct pconn, sniff_timer);
    if (p->peeked > 0) {
        /* the start of a ClientHello, then nothing: a slow mesh client is waited for up to the
         * handshake timeout, then refused; its bytes are never handed to the app as plaintext */
        if (!p->extended && !p->strict) { /* on STRICT the first wait was the handshake's */
            p->extended = true;
            ev_timer_set(&p->sniff_timer, SNIFF_PARTIAL_WAIT_S, 0);
            ev_timer_start(p->pl->loop, &p->sniff_timer);
            return;
        }
        sniff_fail(p, "an unfinished TLS ClientHello");
        return;
    }
    sniff_stop(p);
    if (!p->strict) {
        char port[8];
        snprintf(port, sizeof(port), "%u", p->port);
        struct weft_label l = {"port", port};
        weft_counter_add(labelled(&p->d->m, "weft_proxy_permissive_timeouts_total",
                                  "PERMISSIVE inbound connections taken as plaintext because the "
                                  "client said nothing in time, by port",
                                  &l, 1, 1u),
                         1);
    }
    judge(p); /* a client that says nothing: on PERMISSIVE the server may speak first; on
               * STRICT the policy refuses a peer that is not a mesh client (mtls-strict) */
}

/* sniff parks an inbound connection until its first bytes say what it is: a ClientHello with
 * ALPN weft/1 goes the mTLS way, anything else is an unauthenticated plaintext peer that the
 * policy judges (on a STRICT port it refuses it as mtls-strict, and the app never sees it). A
 * silent client is taken as plaintext after --permissive-wait-ms on a PERMISSIVE port (a
 * server-first protocol), after the handshake time on a STRICT one. */
static void sniff(struct pconn *p)
{
    /* PERMISSIVE connections are parked up to a budget; a STRICT one waits as its handshake
     * would have, bounded by the handshake time like any other */
    if (!p->strict && parked >= SNIFF_MAX_PARKED) {
        p->reason = "too many connections waiting for first bytes";
        weft_counter_add(p->d->m.in_refused, 1);
        proxy_conn_close(p->c, p->reason);
        return;
    }
    if (!p->strict) {
        parked++;
    }
    p->sniffing = true;
    int wait_ms = p->d->o->permissive_wait_ms > 0 ? p->d->o->permissive_wait_ms
                                                  : PROXY_DEFAULT_PERMISSIVE_WAIT_MS;
    ev_io_init(&p->sniff_io, on_sniff_readable, proxy_conn_get_fd(p->c, PROXY_DOWN), EV_READ);
    ev_timer_init(&p->sniff_timer, on_sniff_timeout,
                  p->strict ? SNIFF_PARTIAL_WAIT_S : wait_ms / 1000.0, 0);
    ev_io_start(p->pl->loop, &p->sniff_io);
    ev_timer_start(p->pl->loop, &p->sniff_timer);
}

/* --- live connections, checked again ------------------------------------------------------- */

struct recheck {
    struct proxy_state *now_state;
    int64_t now; /* wall clock, for certificates */
    double mono; /* monotonic, for graces */
};

/* allow_grace is the closeGraceSeconds of the policy that let |p| in, now that it no longer
 * does: as |snap| (the new policy) has it, or as it was when |p| was allowed if it is gone. */
static uint32_t allow_grace(const struct pconn *p, const struct policy_snapshot *snap)
{
    for (size_t i = 0; p->policy[0] != '\0' && i < snap->num_policies; i++) {
        const struct policy_snapshot_policy *sp = &snap->policies[i];
        size_t ns = strlen(sp->namespace_);
        if (strncmp(p->policy, sp->namespace_, ns) == 0 && p->policy[ns] == '/' &&
            strcmp(p->policy + ns + 1, sp->name) == 0) {
            return sp->close_grace_s;
        }
    }
    return p->allow_grace_s;
}

/* recheck closes a relaying connection that its peer's certificate, the deny list or the policy
 * no longer allows (DESIGN.md §2: an SVID past notAfter is never accepted; issue 6: revocation
 * and policy changes reach live connections), with the reason in the access log. */
static void recheck(struct proxy_conn *c, void *arg)
{
    struct recheck *r = arg;
    struct pconn *p = proxy_conn_get_arg(c);
    struct proxy_conn_stats st;
    proxy_conn_get_stats(c, &st);
    count_bytes(p, &st);
    if (!p->relaying) {
        return;
    }
    if (p->peer_not_after != 0 && r->now >= p->peer_not_after) {
        cut(p, "peer certificate expired", TLS_CUT_EXPIRED);
        return;
    }
    if (r->now_state == NULL || r->now_state->generation == p->st->generation) {
        return;
    }
    if (p->peer != NULL && proxy_state_denied(r->now_state, p->peer, p->serial)) {
        cut(p, "peer revoked", TLS_CUT_REVOKED);
        return;
    }
    if (r->now_state->foreign_cfg) {
        return; /* another workload's rules: never judge by them; the old state stays */
    }
    if (p->inbound && r->now_state->cfg != NULL && r->now_state->cfg != p->st->cfg) {
        struct verdict v;
        decide(p, r->now_state->cfg->policy, &v);
        /* the grace: the DENY policy's that now matches; for a peer the ALLOW policies no
         * longer let in, that of the one that had; none for mtls-strict (no rule changed) */
        const char *from = v.why == POLICY_REASON_DENY_MATCHED ? v.policy : p->policy;
        uint32_t grace = v.why == POLICY_REASON_DENY_MATCHED ? v.grace_s
                         : v.why == POLICY_REASON_MTLS_STRICT
                             ? 0
                             : allow_grace(p, r->now_state->cfg->policy);
        /* every denying verdict may shorten a grace in course (a DENY with none ends it) */
        double until = r->mono + grace;
        if (!v.allow && grace > 0 && p->close_at == 0) {
            char in[16];
            snprintf(in, sizeof(in), "%u", grace);
            weft_log(WEFT_LOG_INFO,
                     "the policy now denies a live connection: closing it after its grace", 7,
                     "src", p->src_s, "dst", p->dst_s, "peer", p->peer != NULL ? p->peer : "-",
                     "policy", v.policy, "reason", v.reason, "grace_s", in, "grace_from", from);
        }
        if (!v.allow && grace > 0 && (p->close_at == 0 || until < p->close_at)) {
            p->close_at = until; /* judged again each second until then; the new state is not
                                  * taken meanwhile, so a change that allows it again keeps it */
        }
        if (!v.allow && p->close_at != 0 && grace > 0 && r->mono < p->close_at) {
            free(v.note); /* until then it keeps the verdict it was allowed by */
            return;
        }
        take_verdict(p, &v);
        if (!v.allow) {
            p->decision = "deny";
            count_decision(p, p->decision);
            tell_peer(p, TLS_CUT_DENIED);
            proxy_conn_close(c, "policy now denies");
            return;
        }
        if (p->close_at != 0) {
            p->close_at = 0;
            weft_log(WEFT_LOG_INFO, "the policy allows a live connection again: it stays", 3, "src",
                     p->src_s, "dst", p->dst_s, "peer", p->peer != NULL ? p->peer : "-");
        }
    }
    proxy_state_unref(p->st); /* judged against this state from now on */
    p->st = proxy_state_ref(r->now_state);
}

static void on_tick(struct proxy_loop *pl, void *arg)
{
    struct daemon *d = arg;
    struct recheck r = {proxy_agent_state(d->agent), (int64_t)time(NULL), mono_s()};
    proxy_loop_each(pl, recheck, &r);
    proxy_state_unref(r.now_state);
}

/* --- accepting ----------------------------------------------------------------------------- */

/* refuse closes a connection refused before it became one (no destination, not ready), with
 * |why| in the access log. */
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
    struct daemon *d = arg;
    bool inbound = addr_idx == ADDR_IN4 || addr_idx == ADDR_IN6;
    struct pconn *p = weft_xcalloc(1, sizeof(*p));
    p->d = d;
    p->pl = pl;
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
        refuse(d, fd, inbound, p->src_s, p->dst_s, not_ready_why(p->st));
        proxy_state_unref(p->st);
        free(p);
        return;
    }
    p->creds = current_creds(d);
    p->c = proxy_conn_new(pl, fd, inbound ? &in_cbs : &out_cbs, p);
    if (inbound) {
        uint32_t source;
        p->strict = policy_mtls_mode(p->st->cfg->policy, p->port, &source) == POLICY_MTLS_STRICT;
        sniff(p);
        return;
    }
    /* outbound: judged by the egress rules before anything is dialled */
    if (!egress_decide(p, proxy_state_lookup(p->st, &p->dst.sa) != NULL)) {
        p->decision = "deny";
        weft_counter_add(d->m.out_denied, 1);
        count_decision(p, p->decision);
        proxy_conn_close(p->c, "denied by egress policy");
        return;
    }
    if (p->policy[0] != '\0') {
        count_decision(p, "passthrough"); /* an allow rule decided, whatever the dial does */
    }
    p->reason = NULL; /* set again once connected: a dial that fails says why */
    if (proxy_conn_connect(p->c, &p->dst.sa, p->dst_len) != WEFT_OK) {
        return; /* closed already, with its reason in the access log */
    }
}

/* --- admin ----------------------------------------------------------------------------------- */

static bool http_ready(void *arg, char *why, size_t why_len)
{
    struct daemon *d = arg;
    struct proxy_state *s = proxy_agent_state(d->agent);
    bool ok = proxy_state_ready(s, (int64_t)time(NULL));
    if (!ok) {
        snprintf(why, why_len, "%s", not_ready_why(s));
    } else if (atomic_load(&d->quit)) {
        snprintf(why, why_len, "draining");
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
    json_t *o = json_object();
    if (s->id == NULL) {
        json_object_set_new(o, "spiffe_id", json_null());
    } else {
        json_object_set_new(o, "spiffe_id", json_string(s->id->spiffe_id));
        json_object_set_new(o, "serial", json_string(s->id->serial));
        json_object_set_new(o, "not_before", json_integer(s->id->not_before));
        json_object_set_new(o, "not_after", json_integer(s->id->not_after));
        json_t *chain = json_array();
        for (size_t i = 0; i < s->id->num_chain; i++) {
            const struct proxy_cert_info *ci = &s->id->chain_info[i];
            json_array_append_new(chain,
                                  json_pack("{s:s, s:s, s:I, s:I}", "name", ci->name, "serial",
                                            ci->serial, "not_before", (json_int_t)ci->not_before,
                                            "not_after", (json_int_t)ci->not_after));
        }
        json_object_set_new(o, "chain", chain);
    }
    proxy_state_unref(s);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (text == NULL) {
        return 500;
    }
    *len = strlen(text);
    *body = weft_xstrndup(text, *len + 1); /* with a newline */
    (*body)[*len] = '\n';
    *len += 1;
    free(text);
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

static double drain_s(const struct proxy_opts *o)
{
    return o->drain_s > 0 ? o->drain_s : PROXY_DEFAULT_DRAIN_S;
}

static int route_quit(void *arg, char **body, size_t *len, const char **type)
{
    (void)type;
    struct daemon *d = arg;
    atomic_store(&d->quit, true);
    /* the listeners close now, not at the main thread's next look (the app is done: a Job),
     * the outbound ones too if a signal's drain kept them */
    (void)proxy_pool_drain(d->pool, drain_s(d->o), false);
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
    l[1].value = "denied";
    m->out_denied = weft_metrics_counter(m->reg, name, help, l, 2);
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
    for (int in = 0; in < 2; in++) {
        for (int out = 0; out < 2; out++) {
            struct weft_label bl[2] = {{"direction", in ? "inbound" : "outbound"},
                                       {"way", out ? "out" : "in"}};
            m->bytes[in][out] = weft_metrics_counter(
                m->reg, "weft_proxy_bytes_total",
                "Bytes relayed; way=in: from the side that connected, out: to it", bl, 2);
        }
    }
    m->handshake_failures = weft_metrics_counter(
        m->reg, "weft_proxy_handshake_failures_total",
        "TLS handshakes that did not complete: the peer or its certificate refused, a protocol "
        "error, a timeout (not those cut by a drain)",
        NULL, 0);
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    for (int in = 0; in < 2; in++) {
        for (int res = 0; res < 2; res++) {
            struct weft_label hl[2] = {{"direction", in ? "inbound" : "outbound"},
                                       {"kind", res ? "resumed" : "full"}};
            m->hs_seconds[in][res] =
                weft_metrics_histogram(m->reg, "weft_proxy_handshake_seconds",
                                       "TLS handshake time, from its start to the peer verified",
                                       hl, 2, bounds, nitems(bounds));
        }
    }
    m->ready = weft_metrics_gauge(
        m->reg, "weft_proxy_ready",
        "1 when a valid SVID and a configuration for its workload are held", NULL, 0);
    m->svid_not_after = weft_metrics_gauge(m->reg, "weft_proxy_svid_not_after_seconds",
                                           "notAfter of the SVID in use", NULL, 0);
    m->config_sequence = weft_metrics_gauge(m->reg, "weft_proxy_config_sequence",
                                            "Sequence of the configuration in force", NULL, 0);
    m->open =
        weft_metrics_gauge(m->reg, "weft_proxy_open_connections", "Connections open", NULL, 0);
    m->buffered = weft_metrics_gauge(m->reg, "weft_proxy_relay_buffer_bytes",
                                     "Relay buffer memory held by open connections", NULL, 0);
    pthread_mutex_init(&m->series_mu, NULL);
}

static void metrics_free(struct metrics *m)
{
    for (size_t i = 0; i < SERIES_SLOTS; i++) {
        free(m->series[i].key);
    }
    pthread_mutex_destroy(&m->series_mu);
    weft_metrics_free(m->reg);
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
    proxy_probes_init(&d->app_probes);
    char err[512];
    int rc = 1;
    const char *probes_env = getenv(PROXY_PROBES_ENV);
    if (probes_env != NULL && *probes_env != '\0') {
        if (o->probe_listen == NULL) {
            weft_log(WEFT_LOG_WARN, PROXY_PROBES_ENV " is ignored without --probe-listen", 0);
        } else if (proxy_probes_parse(&d->app_probes, probes_env, strlen(probes_env), err,
                                      sizeof(err)) != WEFT_OK) {
            rc = fail("--probe-listen", err);
            metrics_free(&d->m);
            return rc;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    /* from the start: a SIGTERM while the agent is still being reached ends in a clean stop */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
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
        /* a drain stops inbound; the app may still be running and calling out */
        .keep_on_drain = 1u << ADDR_OUT4 | 1u << ADDR_OUT6,
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
    if (o->probe_listen != NULL) {
        struct proxy_probe_server_config pc = {.listen = o->probe_listen,
                                               .probes = &d->app_probes,
                                               .ready = http_ready,
                                               .ready_arg = d,
                                               .metrics = d->m.reg};
        if (proxy_probe_server_start(&d->probes, &pc, err, sizeof(err)) != WEFT_OK) {
            rc = fail("--probe-listen", err);
            goto out;
        }
        char num[16];
        snprintf(num, sizeof(num), "%zu", d->app_probes.num_probes);
        weft_log(WEFT_LOG_INFO, "weft-proxy probe port", 2, "listen", o->probe_listen, "app_probes",
                 num);
    }
    char ports[64];
    snprintf(ports, sizeof(ports), "%d/%d", out_port, in_port);
    weft_log(WEFT_LOG_INFO, "weft-proxy serving", 3, "agent", acfg.socket, "outbound/inbound",
             ports, "admin", hc.listen);
    while (atomic_load(&stop_signal) == 0 && !atomic_load(&d->quit)) {
        struct proxy_state *s = proxy_agent_state(d->agent);
        weft_gauge_set(d->m.ready, proxy_state_ready(s, (int64_t)time(NULL)) ? 1 : 0);
        proxy_state_unref(s);
        weft_gauge_set(d->m.open, (double)proxy_pool_open_conns(d->pool));
        weft_gauge_set(d->m.buffered, (double)proxy_pool_buffered_bytes(d->pool));
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double drain = drain_s(o);
    char ds[24];
    snprintf(ds, sizeof(ds), "%.1f", drain);
    /* a signal: the pod is stopping and its app may still be running, so the outbound
     * listeners serve it until the deadline; /quitquitquit: the app is done (a Job), and the
     * proxy leaves as soon as its connections are */
    bool keep = !atomic_load(&d->quit); /* a signal, and no /quitquitquit before it */
    atomic_store(&d->quit, true);
    keep = proxy_pool_drain(d->pool, drain, keep); /* what is in force, whoever asked first */
    weft_log(WEFT_LOG_INFO, "weft-proxy draining", 2, "deadline_s", ds, "outbound",
             keep ? "served until the deadline (POST /quitquitquit ends it)" : "closed");
    double give_up = mono_s() + drain + 5;
    while (!proxy_pool_exited(d->pool)) {
        weft_gauge_set(d->m.open, (double)proxy_pool_open_conns(d->pool));
        weft_gauge_set(d->m.buffered, (double)proxy_pool_buffered_bytes(d->pool));
        if (mono_s() > give_up) {
            /* a worker stuck past its deadline: joining it would hang the pod's stop */
            weft_log(WEFT_LOG_ERROR,
                     "weft-proxy workers did not stop after the drain deadline; "
                     "exiting without them",
                     0);
            _exit(1);
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    weft_log(WEFT_LOG_INFO, "weft-proxy stopped", 0);
    rc = 0;
out:
    proxy_probe_server_stop(d->probes);
    proxy_probes_cleanup(&d->app_probes);
    httpadmin_stop(d->http);
    proxy_pool_free(d->pool);
    proxy_agent_stop(d->agent);
    tls_creds_unref(d->creds);
    proxy_identity_unref(d->creds_id);
    metrics_free(&d->m);
    grpc_shutdown();
    return rc;
}

int proxy_egress_parse(const char *s, bool allow, struct proxy_egress_rule *out, char *err,
                       size_t err_len)
{
    memset(out, 0, sizeof(*out));
    out->allow = allow;
    out->port_lo = 1;
    out->port_hi = 65535;
    char net[WEFT_ADDR_MAX + 8];
    const char *slash = strchr(s, '/');
    const char *colon = slash != NULL ? strchr(slash, ':') : NULL;
    size_t net_len = colon != NULL ? (size_t)(colon - s) : strlen(s);
    if (slash == NULL || net_len >= sizeof(net)) {
        snprintf(err, err_len, "want CIDR[:PORT[-PORT]], e.g. 10.0.0.0/8:443 or fd00::/8");
        return WEFT_EINVAL;
    }
    snprintf(net, sizeof(net), "%.*s", (int)net_len, s);
    if (weft_cidr_parse(net, &out->net) != WEFT_OK) {
        snprintf(err, err_len, "%.80s is not a network (IP/BITS, host bits zero)", net);
        return WEFT_EINVAL;
    }
    if (colon == NULL) {
        return WEFT_OK;
    }
    unsigned lo, hi;
    int used = 0;
    if (sscanf(colon + 1, "%5u%n", &lo, &used) != 1 || strspn(colon + 1, "0123456789") == 0) {
        snprintf(err, err_len, "ports after the network: PORT or LO-HI, 1 to 65535");
        return WEFT_EINVAL;
    }
    hi = lo;
    const char *rest = colon + 1 + used;
    if (*rest == '-') {
        int more = 0;
        if (strspn(rest + 1, "0123456789") == 0 || sscanf(rest + 1, "%5u%n", &hi, &more) != 1) {
            snprintf(err, err_len, "ports after the network: PORT or LO-HI, 1 to 65535");
            return WEFT_EINVAL;
        }
        rest += 1 + more;
    }
    if (*rest != '\0' || lo < 1 || hi > 65535 || lo > hi) {
        snprintf(err, err_len, "ports after the network: PORT or LO-HI, 1 to 65535, LO <= HI");
        return WEFT_EINVAL;
    }
    out->port_lo = (uint16_t)lo;
    out->port_hi = (uint16_t)hi;
    return WEFT_OK;
}
