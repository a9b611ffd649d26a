/* agent/daemon.c: see daemon.h. */
#include "agent/daemon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <openssl/mem.h>

#include "agent/alert.h"
#include "agent/jwt.h"
#include "agent/k8s.h"
#include "agent/node.h"
#include "agent/peer.h"
#include "agent/proxycfg.h"
#include "agent/schedule.h"
#include "agent/svids.h"
#include "agent/wlapi.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/metrics.h"
#include "lib/httpadmin/httpadmin.h"
#include "lib/rpc/rpc.h"
#include "proto/ca.pb-c.h"

#define WATCH_DEADLINE_MS (3600 * 1000) /* a WatchNode stream is re-opened at least hourly */
#define MAX_SNAPSHOT (64 << 20)
#define TOKEN_MAX 1024
#define PSAT_MAX 8192    /* a service account token (ca/psat.h: CA_PSAT_MAX_TOKEN) */
#define AGENT_POLL_MS 20 /* the Workload API thread's longest wait between pushes */
#define AGENT_JWT_MINT_TIMEOUT_MS 2000

static atomic_int stop_signal;
static void on_signal(int sig) { atomic_store(&stop_signal, sig); }

struct metrics {
    struct weft_metrics *reg;
    struct weft_gauge *held, *earliest, *runway, *node_not_after, *ca_connected, *streams, *entries;
    struct weft_counter *minted, *mint_failures, *expired, *renew_failures, *attest_refused,
        *attested, *claims_accepted, *claims_refused, *reports_failed, *jwt_served, *jwt_minted,
        *jwt_mint_failures, *jwt_valid, *jwt_invalid;
    uint64_t last_minted, last_failures, last_expired;
    /* per SVID: the IDs given a gauge so far (an ID no longer held is set to 0) */
    char **ids;
    struct weft_gauge **id_gauges;
    bool *id_held; /* in this update */
    size_t num_ids;
    int64_t ids_updated_ms;
};

struct agent {
    const struct agent_daemon_opts *o;
    char token[TOKEN_MAX + 1];
    struct agent_node *node; /* the CA thread's */
    struct agent_svids *svids;
    struct agent_k8s *k8s;
    pthread_mutex_t k8s_mu;
    struct rpc_server *rpc;
    struct agent_wlapi *api;
    struct httpadmin *http;
    struct metrics m;
    pthread_t ca_thread, alert_thread;
    bool ca_started, alert_started;
    struct agent_alerts *alerts;
    struct agent_proxycfg *pcfg; /* the Workload API thread's */
    struct agent_jwt *jwt;       /* the Workload API thread's */
    struct agent_claims *claims; /* shared: proxies claim, the CA thread reports */
    pthread_mutex_t snap_mu;
    Weft__Ca__V1__NodeSnapshot *pending_snap; /* from the CA thread, for the API thread */
    atomic_uint node_failures;                /* consecutive failed joins or node renewals */
    atomic_bool stop, changed, ca_connected, joined;
    atomic_llong node_not_after;
};

static int64_t now_s(void) { return (int64_t)time(NULL); }

static void sleep_ms(int64_t ms, const atomic_bool *stop)
{
    for (int64_t left = ms; left > 0 && !atomic_load(stop); left -= 100) {
        struct timespec ts = {0, (long)(left < 100 ? left : 100) * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* --- the CA thread -----------------------------------------------------------------------------
 */

/* back_off waits |ms| after a failure to reach the CA, but no longer than until a workload SVID
 * or the node SVID (at |renew_at|, 0: none) is due: an outage shorter than the backoff must
 * not let the node SVID lapse (it could then only be replaced with a new join token). */
static void back_off(struct agent *a, int64_t ms, int64_t renew_at)
{
    for (int64_t left = ms; left > 0 && !atomic_load(&a->stop); left -= 100) {
        int64_t now = now_s();
        if (agent_svids_next_due(a->svids) <= now || (renew_at != 0 && now >= renew_at)) {
            return;
        }
        struct timespec ts = {0, (long)(left < 100 ? left : 100) * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* join_psat joins with the service account token in --psat-token-file, read afresh: the
 * kubelet rotates it (at 80 % of its life). */
static int join_psat(struct agent *a, char *err, size_t err_len)
{
    uint8_t *t = NULL;
    size_t len = 0;
    const char *path = a->o->psat_token_file;
    int rc = weft_file_read(&t, &len, path, PSAT_MAX);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "--psat-token-file %.200s: %s", path,
                 rc == WEFT_ELIMIT ? "over 8 KiB: not a service account token" : strerror(errno));
        return rc;
    }
    while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ')) {
        t[--len] = '\0';
    }
    if (len == 0 || memchr(t, '\0', len) != NULL) {
        snprintf(err, err_len, "--psat-token-file %.200s holds no token", path);
        rc = WEFT_EINVAL;
    } else {
        rc = agent_node_join_psat(a->node, (const char *)t, err, err_len);
    }
    OPENSSL_cleanse(t, len);
    free(t);
    return rc;
}

/* ensure_identity joins or renews when due; returns whether a node SVID is held. */
static bool ensure_identity(struct agent *a, int64_t *renew_at, uint32_t *failures)
{
    int64_t now = now_s();
    char err[512];
    if (!agent_node_has_identity(a->node, now)) {
        if (a->token[0] == '\0' && a->o->psat_token_file == NULL) {
            weft_log(WEFT_LOG_ERROR,
                     "no node identity and no join token: run `weftctl token create --node "
                     "NAME` and give it with --join-token or --join-token-file, or give the "
                     "pod's service account token with --psat-token-file",
                     0);
            sleep_ms(5000, &a->stop);
            return false;
        }
        int rc = a->o->psat_token_file != NULL
                     ? join_psat(a, err, sizeof(err))
                     : agent_node_join(a->node, a->token, err, sizeof(err));
        if (rc != WEFT_OK) {
            (*failures)++;
            atomic_store(&a->node_failures, *failures);
            weft_log(WEFT_LOG_ERROR, "cannot join the CA", 1, "error", err);
            sleep_ms(agent_backoff_ms(*failures, agent_random_unit()), &a->stop);
            return false;
        }
        weft_log(WEFT_LOG_INFO, "joined the CA", 1, "node", agent_node_name(a->node));
        *renew_at = 0;
        *failures = 0;
    }
    int64_t nb, na;
    agent_node_validity(a->node, &nb, &na);
    atomic_store(&a->node_not_after, na);
    atomic_store(&a->joined, true);
    if (*renew_at == 0) { /* half of the life it has from now (notBefore is backdated) */
        *renew_at = agent_renew_at(nb > now ? nb : now, na, agent_random_unit(), now);
    }
    if (now >= *renew_at) {
        /* A node of service account tokens attests again with the current token rather than
         * renewing, so that the CA takes its node selectors afresh (SPIRE's re-attestation);
         * when that is refused it renews, which keeps what it had. */
        const char *how = "renewal";
        int rc = WEFT_EINVAL;
        if (a->o->psat_token_file != NULL) {
            how = "token";
            if ((rc = join_psat(a, err, sizeof(err))) != WEFT_OK) {
                weft_log(WEFT_LOG_WARN, "cannot attest again with the token; renewing instead", 1,
                         "error", err);
                how = "renewal";
            }
        }
        if (rc == WEFT_OK || agent_node_renew(a->node, err, sizeof(err)) == WEFT_OK) {
            agent_node_validity(a->node, &nb, &na);
            atomic_store(&a->node_not_after, na);
            *renew_at = agent_renew_at(nb > now ? nb : now, na, agent_random_unit(), now);
            *failures = 0;
            atomic_store(&a->node_failures, 0);
            char until[24];
            snprintf(until, sizeof(until), "%lld", (long long)na);
            weft_log(WEFT_LOG_INFO, "node svid renewed", 2, "not_after", until, "by", how);
        } else {
            (*failures)++;
            atomic_store(&a->node_failures, *failures);
            weft_counter_add(a->m.renew_failures, 1);
            /* loud on the first failure, then with the backoff */
            weft_log(*failures == 1 ? WEFT_LOG_ERROR : WEFT_LOG_WARN, "cannot renew the node svid",
                     1, "error", err);
            *renew_at = now + agent_backoff_ms(*failures, agent_random_unit()) / 1000 + 1;
        }
    }
    return agent_node_has_identity(a->node, now_s());
}

/* hand_over passes |snap| to the Workload API thread (agent_proxycfg_update); one not yet taken
 * is replaced, as every snapshot is complete. */
static void hand_over(struct agent *a, Weft__Ca__V1__NodeSnapshot *snap)
{
    pthread_mutex_lock(&a->snap_mu);
    Weft__Ca__V1__NodeSnapshot *old = a->pending_snap;
    a->pending_snap = snap;
    pthread_mutex_unlock(&a->snap_mu);
    if (old != NULL) {
        protobuf_c_message_free_unpacked(&old->base, NULL);
    }
    atomic_store(&a->changed, true);
}

/* report_claims sends the node's directory claims to the CA when a report is due. */
static void report_claims(struct agent *a, grpc_channel *ch)
{
    int64_t now = now_s();
    Weft__Ca__V1__ReportWorkloadsRequest *r = agent_claims_report(a->claims, now);
    if (r == NULL) {
        return;
    }
    Weft__Ca__V1__ReportWorkloadsResponse *resp = NULL;
    struct rpc_status st;
    bool ok = rpc_call_unary(ch, "/weft.ca.v1.CA/ReportWorkloads", &r->base,
                             &weft__ca__v1__report_workloads_response__descriptor, 1 << 20, 5000,
                             (ProtobufCMessage **)&resp, &st) == WEFT_OK;
    if (ok) {
        for (size_t i = 0; i < resp->n_conflicts; i++) {
            weft_log(WEFT_LOG_WARN, "the CA refused a directory claim", 1, "claim",
                     resp->conflicts[i]);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    } else {
        weft_counter_add(a->m.reports_failed, 1);
        weft_log(WEFT_LOG_WARN, "cannot report workload addresses to the CA; will retry", 1,
                 "status", st.details);
    }
    agent_claims_reported(a->claims, r, ok, now);
    agent_claims_report_free(r);
}

/* apply takes one snapshot: the bundle (for the node's own dials too) and the entries. */
static void apply(struct agent *a, const Weft__Ca__V1__NodeSnapshot *snap)
{
    char err[256];
    bool changed = false;
    if (snap->bundle.len > 0) {
        changed |= agent_svids_set_bundle(a->svids, snap->bundle.data, snap->bundle.len);
        if (agent_node_set_bundle(a->node, snap->bundle.data, snap->bundle.len, err, sizeof(err)) !=
            WEFT_OK) {
            weft_log(WEFT_LOG_ERROR, "cannot take the bundle", 1, "error", err);
        }
    }
    changed |= agent_svids_set_entries(a->svids, snap->entries, snap->n_entries, now_s());
    changed |= agent_svids_set_deny(a->svids, snap->deny_list, snap->n_deny_list,
                                    agent_node_name(a->node));
    if (changed) {
        atomic_store(&a->changed, true);
    }
}

static void *ca_loop(void *arg)
{
    struct agent *a = arg;
    int64_t renew_at = 0;
    uint32_t id_failures = 0, watch_failures = 0;
    struct rpc_client_stream *watch = NULL;
    grpc_channel *watch_ch = NULL;
    while (!atomic_load(&a->stop)) {
        char err[512];
        /* due mints first, reachable CA or not: a failure counts towards the page, and an
         * SVID past notAfter is dropped (its workloads' streams learn of it) */
        if (agent_svids_next_due(a->svids) <= now_s() &&
            agent_svids_mint_due(a->svids, a->node, now_s(), err, sizeof(err))) {
            atomic_store(&a->changed, true);
        }
        if (!ensure_identity(a, &renew_at, &id_failures)) {
            continue;
        }
        grpc_channel *ch = NULL;
        if (agent_node_channel(a->node, &ch, err, sizeof(err)) != WEFT_OK) {
            watch_failures++;
            weft_log(watch_failures == 1 ? WEFT_LOG_ERROR : WEFT_LOG_WARN, "cannot reach the CA", 1,
                     "error", err);
            atomic_store(&a->ca_connected, false);
            back_off(a, agent_backoff_ms(watch_failures, agent_random_unit()), renew_at);
            continue;
        }
        if (watch != NULL && ch != watch_ch) { /* renewed: watch with the new identity */
            rpc_client_stream_close(watch);
            watch = NULL;
        }
        if (watch == NULL) {
            watch = rpc_client_stream_open(ch, "/weft.ca.v1.CA/WatchNode", WATCH_DEADLINE_MS);
            watch_ch = ch;
            Weft__Ca__V1__WatchNodeRequest hello = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
            if (watch == NULL || rpc_client_stream_send(watch, &hello.base, 5000) != WEFT_OK) {
                /* the status, read below, says why */
            }
        }
        if (watch != NULL && atomic_load(&a->ca_connected)) {
            report_claims(a, ch);
        }
        Weft__Ca__V1__NodeSnapshot *snap = NULL;
        int rc = watch != NULL
                     ? rpc_client_stream_recv(watch, &weft__ca__v1__node_snapshot__descriptor,
                                              MAX_SNAPSHOT, 500, (ProtobufCMessage **)&snap)
                     : WEFT_EIO;
        if (rc == WEFT_OK) {
            apply(a, snap);
            Weft__Ca__V1__WatchNodeRequest ack = WEFT__CA__V1__WATCH_NODE_REQUEST__INIT;
            ack.bundle_sequence_seen = snap->bundle_sequence;
            ack.snapshot_sequence_seen = snap->sequence;
            if (rpc_client_stream_send(watch, &ack.base, 5000) != WEFT_OK) {
                /* the next receive reports the stream's end */
            }
            hand_over(a, snap); /* the proxy config is built on the API thread */
            if (!atomic_exchange(&a->ca_connected, true)) {
                weft_log(WEFT_LOG_INFO, "watching the CA", 0);
            }
            watch_failures = 0;
        } else if (rc != WEFT_EAGAIN) {
            struct rpc_status st = {0};
            if (watch != NULL) {
                rpc_client_stream_status(watch, 1000, &st);
                rpc_client_stream_close(watch);
            }
            watch = NULL;
            if (st.code == GRPC_STATUS_UNAVAILABLE || st.code == GRPC_STATUS_UNAUTHENTICATED) {
                agent_node_drop_channel(a->node);
            }
            if (st.code == GRPC_STATUS_PERMISSION_DENIED) {
                /* the node SVID was revoked (or the node): attest again, or renew, now rather
                 * than at its half-life; the CA says whether it may */
                renew_at = now_s();
            }
            watch_failures++;
            atomic_store(&a->ca_connected, false);
            weft_log(watch_failures == 1 ? WEFT_LOG_ERROR : WEFT_LOG_WARN,
                     "the CA stream ended; reconnecting", 1, "status", st.details);
            back_off(a, agent_backoff_ms(watch_failures, agent_random_unit()), renew_at);
        }
    }
    if (watch != NULL) {
        rpc_client_stream_close(watch);
    }
    return NULL;
}

/* --- the alert thread --------------------------------------------------------------------------
 */

static void *alert_loop(void *arg)
{
    struct agent *a = arg;
    while (!atomic_load(&a->stop)) {
        struct agent_svids_stats st;
        int64_t now = now_s();
        agent_svids_stats(a->svids, now, &st);
        unsigned node_failures = atomic_load(&a->node_failures);
        struct agent_alert_input in = {
            .now = now,
            .earliest_life_from = st.earliest_life_from,
            .earliest_not_after = st.earliest_not_after,
            .lapsed = st.lapsed,
            .consecutive_failures =
                st.max_failures > node_failures ? st.max_failures : node_failures,
        };
        (void)agent_alerts_evaluate(a->alerts, &in); /* failures are logged, and retried */
        sleep_ms(1000, &a->stop);
    }
    return NULL;
}

/* --- the Workload API's answers ----------------------------------------------------------------
 */

static bool api_ready(void *arg)
{
    struct agent *a = arg;
    return atomic_load(&a->joined) && agent_svids_ready(a->svids);
}

static int api_attest(void *arg, const struct weft_peer *caller, struct agent_selectors *out,
                      char *why, size_t why_len)
{
    struct agent *a = arg;
    struct agent_peer p = agent_peer_from(caller);
    int rc = agent_attest_unix(&p, "/proc", out, why, why_len);
    if (rc == WEFT_OK && a->k8s != NULL) {
        char kerr[256];
        pthread_mutex_lock(&a->k8s_mu);
        int krc = agent_attest_k8s(a->k8s, &p, out, kerr, sizeof(kerr));
        pthread_mutex_unlock(&a->k8s_mu);
        if (krc == WEFT_ESTALE) {
            snprintf(why, why_len, "%s", kerr);
            rc = krc;
        } else if (krc != WEFT_OK && krc != WEFT_ENOTFOUND) {
            /* no k8s selectors: entries that need them do not match (fail closed) */
            weft_log(WEFT_LOG_WARN, "k8s attestation failed; unix selectors only", 1, "error",
                     kerr);
        }
    }
    weft_counter_add(rc == WEFT_OK ? a->m.attested : a->m.attest_refused, 1);
    return rc;
}

static size_t api_x509(void *arg, const struct agent_selectors *sel, X509SVIDResponse *resp)
{
    struct agent *a = arg;
    return agent_svids_x509(a->svids, sel, now_s(), resp);
}

static size_t api_bundles(void *arg, const struct agent_selectors *sel, X509BundlesResponse *resp)
{
    struct agent *a = arg;
    return agent_svids_bundles(a->svids, sel, now_s(), resp);
}

/* --- the proxy config stream ------------------------------------------------------------------
 */

static grpc_status_code api_proxy_open(void *arg, const struct weft_peer *caller,
                                       const struct agent_selectors *sel,
                                       const Weft__Agent__V1__ProxyConfigRequest *req, void **state,
                                       char details[RPC_DETAILS_LEN])
{
    struct agent *a = arg;
    struct agent_identity id;
    bool held = req->spiffe_id[0] != '\0'
                    ? agent_svids_holds(a->svids, sel, req->spiffe_id, now_s(), &id)
                    : agent_svids_identities(a->svids, sel, now_s(), &id, 1) == 1;
    if (!held) {
        snprintf(details, RPC_DETAILS_LEN, "%.200s is not an identity of the caller",
                 req->spiffe_id[0] != '\0' ? req->spiffe_id : "none");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    if (req->n_addresses > AGENT_CLAIMS_PER_STREAM) {
        snprintf(details, RPC_DETAILS_LEN, "%zu addresses claimed; at most %d", req->n_addresses,
                 AGENT_CLAIMS_PER_STREAM);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    struct agent_proxy_stream *ps = weft_xcalloc(1, sizeof(*ps));
    if (agent_proxy_stream_init(ps, id.spiffe_id, sel, details, RPC_DETAILS_LEN) != WEFT_OK) {
        free(ps);
        return GRPC_STATUS_FAILED_PRECONDITION;
    }
    struct agent_peer p = agent_peer_from(caller);
    struct agent_claim_rules rules = {
        .k8s = a->k8s != NULL, .cidrs = a->o->claim_cidrs, .num_cidrs = a->o->num_claim_cidrs};
    char err[256];
    if (agent_claims_verify("/proc", &rules, &p, sel, req->addresses, req->n_addresses, ps->claims,
                            err, sizeof(err)) != WEFT_OK) {
        agent_proxy_stream_cleanup(ps);
        free(ps);
        snprintf(details, RPC_DETAILS_LEN, "%s", err);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    ps->num_claims = req->n_addresses;
    if (agent_claims_set(a->claims, ps, ps->spiffe_id, ps->claims, ps->num_claims) != WEFT_OK) {
        for (size_t i = 0; i < ps->num_claims; i++) {
            if (ps->claims[i].accepted) {
                ps->claims[i].accepted = false;
                snprintf(ps->claims[i].reason, sizeof(ps->claims[i].reason),
                         "the node holds %d directory claims already", AGENT_CLAIMS_MAX);
            }
        }
    }
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)p.pid);
    for (size_t i = 0; i < ps->num_claims; i++) {
        const struct agent_claim_verdict *v = &ps->claims[i];
        weft_counter_add(v->accepted ? a->m.claims_accepted : a->m.claims_refused, 1);
        if (v->accepted) {
            weft_log(WEFT_LOG_INFO, "directory claim accepted", 3, "spiffe_id", ps->spiffe_id,
                     "address", v->address, "pid", pid);
        } else {
            weft_log(WEFT_LOG_WARN, "directory claim refused", 4, "spiffe_id", ps->spiffe_id,
                     "address", v->address, "pid", pid, "reason", v->reason);
        }
    }
    *state = ps;
    return GRPC_STATUS_OK;
}

static grpc_status_code api_proxy_config(void *arg, void *state, const struct agent_selectors *sel,
                                         Weft__Agent__V1__ProxyConfigResponse *resp, bool *wait,
                                         char details[RPC_DETAILS_LEN])
{
    struct agent *a = arg;
    struct agent_proxy_stream *ps = state;
    if (!agent_svids_holds(a->svids, sel, ps->spiffe_id, now_s(), NULL)) {
        snprintf(details, RPC_DETAILS_LEN, "%.200s is no longer issued to the caller",
                 ps->spiffe_id);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    int rc = agent_proxycfg_build(a->pcfg, ps, resp, details, RPC_DETAILS_LEN);
    if (rc == WEFT_EAGAIN) {
        *wait = true; /* the first snapshot from the CA is not here yet */
        return GRPC_STATUS_OK;
    }
    if (rc != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "no proxy config", 2, "spiffe_id", ps->spiffe_id, "reason",
                 details);
        return GRPC_STATUS_FAILED_PRECONDITION;
    }
    return GRPC_STATUS_OK;
}

static void api_proxy_close(void *arg, void *state)
{
    struct agent *a = arg;
    struct agent_proxy_stream *ps = state;
    agent_claims_drop(a->claims, ps);
    agent_proxy_stream_cleanup(ps);
    free(ps);
}

/* --- JWT-SVIDs -------------------------------------------------------------------------------- */

static size_t api_jwt_bundles(void *arg, const struct agent_selectors *sel,
                              JWTBundlesResponse *resp, bool *wait)
{
    struct agent *a = arg;
    struct agent_identity id;
    if (agent_svids_identities(a->svids, sel, now_s(), &id, 1) == 0) {
        return 0; /* a caller with no identity sees no bundle */
    }
    *wait = !agent_jwt_ready(a->jwt); /* the CA's keys are not here yet */
    return *wait ? 0 : agent_jwt_bundles(a->jwt, resp);
}

/* mint_jwt returns a JWT-SVID for |id|: the cached one, or one the CA mints (MintJWTSVID over
 * the node's channel), kept in the cache. NULL with |*status| and |details| when there is none:
 * UNAVAILABLE at once while the CA is unreachable (the Workload API thread does not wait on
 * it), RESOURCE_EXHAUSTED past the entry's mint rate, the CA's own refusal passed on. The
 * token stays valid until the next call. */
static const char *mint_jwt(struct agent *a, const struct agent_identity *id,
                            const JWTSVIDRequest *req, grpc_status_code *status,
                            char details[RPC_DETAILS_LEN])
{
    static char *token;
    int64_t now = now_s();
    const char *t =
        agent_jwt_cached(a->jwt, id->entry_id, id->spiffe_id, req->audience, req->n_audience, now);
    if (t != NULL) {
        return t;
    }
    *status = GRPC_STATUS_UNAVAILABLE;
    if (!atomic_load(&a->ca_connected)) {
        snprintf(details, RPC_DETAILS_LEN, "the CA is unreachable: no JWT-SVID can be minted");
        weft_counter_add(a->m.jwt_mint_failures, 1);
        return NULL;
    }
    if (!agent_jwt_admit(a->jwt, id->entry_id, now)) {
        *status = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(details, RPC_DETAILS_LEN,
                 "over %d new JWT-SVIDs a second for %.150s: reuse tokens, or retry",
                 AGENT_JWT_MINTS_PER_S, id->spiffe_id);
        return NULL;
    }
    Weft__Ca__V1__MintJWTSVIDRequest mr = WEFT__CA__V1__MINT_JWTSVIDREQUEST__INIT;
    mr.entry_id = (char *)id->entry_id;
    mr.audience = req->audience;
    mr.n_audience = req->n_audience;
    Weft__Ca__V1__MintJWTSVIDResponse *resp = NULL;
    struct rpc_status st;
    int rc = agent_node_call(a->node, "/weft.ca.v1.CA/MintJWTSVID", &mr.base,
                             &weft__ca__v1__mint_jwtsvidresponse__descriptor, 64 * 1024,
                             AGENT_JWT_MINT_TIMEOUT_MS, (ProtobufCMessage **)&resp, &st);
    if (rc == WEFT_OK && (resp->token[0] == '\0' || resp->expires_at <= now ||
                          strcmp(resp->spiffe_id, id->spiffe_id) != 0)) {
        snprintf(st.details, sizeof(st.details),
                 "the CA answered a token for %.100s expiring at %lld", resp->spiffe_id,
                 (long long)resp->expires_at);
        st.code = GRPC_STATUS_INTERNAL;
        rc = WEFT_EPROTO;
    }
    if (rc != WEFT_OK) {
        if (resp != NULL) {
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        weft_counter_add(a->m.jwt_mint_failures, 1);
        weft_log(WEFT_LOG_WARN, "cannot mint a JWT-SVID", 2, "spiffe_id", id->spiffe_id, "status",
                 st.details);
        /* the CA's refusals are the caller's answer; anything else is worth a retry */
        *status =
            st.code == GRPC_STATUS_PERMISSION_DENIED || st.code == GRPC_STATUS_INVALID_ARGUMENT
                ? st.code
                : GRPC_STATUS_UNAVAILABLE;
        snprintf(details, RPC_DETAILS_LEN, "the CA did not mint a JWT-SVID: %.200s", st.details);
        return NULL;
    }
    weft_counter_add(a->m.jwt_minted, 1);
    agent_jwt_keep(a->jwt, id->entry_id, id->spiffe_id, req->audience, req->n_audience, resp->token,
                   now, resp->expires_at);
    if (token != NULL) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    token = weft_xstrndup(resp->token, strlen(resp->token));
    OPENSSL_cleanse(resp->token, strlen(resp->token));
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return token;
}

static grpc_status_code api_jwt_svid(void *arg, const struct agent_selectors *sel,
                                     const JWTSVIDRequest *req, JWTSVIDResponse *resp,
                                     char details[RPC_DETAILS_LEN])
{
    struct agent *a = arg;
    if (agent_jwt_check_request(req->audience, req->n_audience, details, RPC_DETAILS_LEN) !=
        WEFT_OK) {
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    /* spiffe_id, when given, picks one identity; else every one (the first AGENT_JWT_MAX_IDS) */
    static struct agent_identity ids[AGENT_JWT_MAX_IDS];
    size_t kept = req->spiffe_id[0] != '\0'
                      ? agent_svids_holds(a->svids, sel, req->spiffe_id, now_s(), &ids[0])
                      : agent_svids_identities(a->svids, sel, now_s(), ids, nitems(ids));
    if (kept == 0) {
        snprintf(details, RPC_DETAILS_LEN, "%s",
                 req->spiffe_id[0] == '\0' ? "no identity issued"
                                           : "the caller does not hold that identity");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    static JWTSVID svids[AGENT_JWT_MAX_IDS], *ptrs[AGENT_JWT_MAX_IDS];
    static char *tokens[AGENT_JWT_MAX_IDS]; /* what the last answer points into */
    for (size_t i = 0; i < kept; i++) {
        grpc_status_code st = GRPC_STATUS_UNAVAILABLE;
        const char *t = mint_jwt(a, &ids[i], req, &st, details);
        if (tokens[i] != NULL) {
            OPENSSL_cleanse(tokens[i], strlen(tokens[i]));
            free(tokens[i]);
        }
        tokens[i] = t != NULL ? weft_xstrndup(t, strlen(t)) : NULL;
        if (t == NULL) {
            return st;
        }
        jwtsvid__init(&svids[i]);
        svids[i].spiffe_id = ids[i].spiffe_id;
        svids[i].svid = tokens[i];
        ptrs[i] = &svids[i];
    }
    resp->svids = ptrs;
    resp->n_svids = kept;
    weft_counter_add(a->m.jwt_served, kept);
    return GRPC_STATUS_OK;
}

static grpc_status_code api_jwt_validate(void *arg, const struct agent_selectors *sel,
                                         const ValidateJWTSVIDRequest *req,
                                         ValidateJWTSVIDResponse *resp,
                                         char details[RPC_DETAILS_LEN])
{
    struct agent *a = arg;
    struct agent_identity id;
    if (agent_svids_identities(a->svids, sel, now_s(), &id, 1) == 0) {
        snprintf(details, RPC_DETAILS_LEN, "no identity issued");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    if (agent_jwt_validate(a->jwt, req->svid, req->audience, now_s(), resp, details,
                           RPC_DETAILS_LEN) != WEFT_OK) {
        weft_counter_add(a->m.jwt_invalid, 1);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    weft_counter_add(a->m.jwt_valid, 1);
    return GRPC_STATUS_OK;
}

static bool http_ready(void *arg, char *why, size_t why_len)
{
    struct agent *a = arg;
    if (!atomic_load(&a->joined)) {
        snprintf(why, why_len, "no node identity yet");
        return false;
    }
    if (!agent_svids_ready(a->svids)) {
        snprintf(why, why_len, "no trust bundle from the CA yet");
        return false;
    }
    return true;
}

/* --- metrics -------------------------------------------------------------------------------- */

static void metrics_init(struct metrics *m)
{
    m->reg = weft_metrics_new();
    m->held = weft_metrics_gauge(m->reg, "weft_agent_svids_held", "Workload SVIDs held", NULL, 0);
    m->entries =
        weft_metrics_gauge(m->reg, "weft_agent_entries", "Entries assigned to the node", NULL, 0);
    m->earliest = weft_metrics_gauge(m->reg, "weft_agent_svid_earliest_not_after_seconds",
                                     "Earliest notAfter among the SVIDs held", NULL, 0);
    m->runway = weft_metrics_gauge(m->reg, "weft_agent_runway_seconds",
                                   "Seconds until the first SVID served expires if the CA stays "
                                   "unreachable",
                                   NULL, 0);
    m->node_not_after = weft_metrics_gauge(m->reg, "weft_agent_node_svid_not_after_seconds",
                                           "notAfter of the node SVID", NULL, 0);
    m->ca_connected = weft_metrics_gauge(m->reg, "weft_agent_ca_connected",
                                         "1 while the WatchNode stream to the CA is up", NULL, 0);
    m->streams = weft_metrics_gauge(m->reg, "weft_agent_workload_streams",
                                    "Workload API streams open", NULL, 0);
    m->minted = weft_metrics_counter(m->reg, "weft_agent_svids_minted_total",
                                     "Workload SVIDs minted (renewals included)", NULL, 0);
    m->mint_failures = weft_metrics_counter(m->reg, "weft_agent_svid_mint_failures_total",
                                            "Workload SVID mints that failed", NULL, 0);
    m->expired = weft_metrics_counter(m->reg, "weft_agent_svids_expired_unrenewed_total",
                                      "SVIDs that reached notAfter before renewal", NULL, 0);
    m->renew_failures = weft_metrics_counter(m->reg, "weft_agent_node_renewal_failures_total",
                                             "Node SVID renewals that failed", NULL, 0);
    m->attested = weft_metrics_counter(m->reg, "weft_agent_workloads_attested_total",
                                       "Workload API callers attested", NULL, 0);
    m->attest_refused =
        weft_metrics_counter(m->reg, "weft_agent_attestation_failures_total",
                             "Workload API callers that could not be attested", NULL, 0);
    m->claims_accepted =
        weft_metrics_counter(m->reg, "weft_agent_directory_claims_accepted_total",
                             "Addresses proxies claimed that the agent verified", NULL, 0);
    m->claims_refused =
        weft_metrics_counter(m->reg, "weft_agent_directory_claims_refused_total",
                             "Addresses proxies claimed that are not theirs", NULL, 0);
    m->jwt_served =
        weft_metrics_counter(m->reg, "weft_agent_jwt_svids_served_total",
                             "JWT-SVIDs handed to workloads (cached ones included)", NULL, 0);
    m->jwt_minted = weft_metrics_counter(m->reg, "weft_agent_jwt_svids_minted_total",
                                         "JWT-SVIDs the CA minted for workloads", NULL, 0);
    m->jwt_mint_failures =
        weft_metrics_counter(m->reg, "weft_agent_jwt_svid_mint_failures_total",
                             "FetchJWTSVID calls failed because the CA did not mint", NULL, 0);
    m->jwt_valid = weft_metrics_counter(m->reg, "weft_agent_jwt_validations_total",
                                        "ValidateJWTSVID calls whose token validated", NULL, 0);
    m->jwt_invalid =
        weft_metrics_counter(m->reg, "weft_agent_jwt_validation_failures_total",
                             "ValidateJWTSVID calls whose token did not validate", NULL, 0);
    m->reports_failed = weft_metrics_counter(m->reg, "weft_agent_directory_report_failures_total",
                                             "Directory reports the CA did not take", NULL, 0);
}

#define SVID_GAUGE "weft_agent_svid_not_after_seconds"
#define SVID_GAUGE_HELP "notAfter of each workload SVID held (0: none valid)"

/* seen_svid sets one entry's gauge, registering it the first time; |arg| is the metrics. */
static void seen_svid(void *arg, const char *spiffe_id, int64_t not_after)
{
    struct metrics *m = arg;
    size_t i = 0;
    while (i < m->num_ids && strcmp(m->ids[i], spiffe_id) != 0) {
        i++;
    }
    if (i == m->num_ids) {
        struct weft_label l = {"spiffe_id", spiffe_id};
        struct weft_gauge *g = weft_metrics_gauge(m->reg, SVID_GAUGE, SVID_GAUGE_HELP, &l, 1);
        if (g == NULL || m->num_ids >= AGENT_MAX_ENTRIES) {
            return;
        }
        m->ids = weft_xrealloc(m->ids, (i + 1) * sizeof(char *));
        m->id_gauges = weft_xrealloc(m->id_gauges, (i + 1) * sizeof(struct weft_gauge *));
        m->id_held = weft_xrealloc(m->id_held, (i + 1) * sizeof(bool));
        m->ids[i] = weft_xstrndup(spiffe_id, strlen(spiffe_id));
        m->id_gauges[i] = g;
        m->num_ids++;
    }
    m->id_held[i] = true;
    weft_gauge_set(m->id_gauges[i], (double)not_after);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* update_svid_gauges: those still held get their notAfter, those gone read 0 (never a flicker
 * to 0 for one held); every 5 s, as the walk is linear in the entries. */
static void update_svid_gauges(struct metrics *m, struct agent_svids *svids)
{
    int64_t ms = mono_ms();
    if (ms - m->ids_updated_ms < 5000 && m->ids_updated_ms != 0) {
        return;
    }
    m->ids_updated_ms = ms;
    for (size_t i = 0; i < m->num_ids; i++) {
        m->id_held[i] = false;
    }
    agent_svids_each(svids, now_s(), seen_svid, m);
    for (size_t i = 0; i < m->num_ids; i++) {
        if (!m->id_held[i]) {
            weft_gauge_set(m->id_gauges[i], 0);
        }
    }
}

/* metrics_update refreshes the gauges, at most every 250 ms (the loop turns every 20). */
static void metrics_update(struct agent *a)
{
    static int64_t last;
    int64_t ms = mono_ms();
    if (ms - last < 250) {
        return;
    }
    last = ms;
    update_svid_gauges(&a->m, a->svids);
    struct agent_svids_stats st;
    int64_t now = now_s();
    agent_svids_stats(a->svids, now, &st);
    weft_gauge_set(a->m.held, (double)st.held);
    weft_gauge_set(a->m.entries, (double)st.entries);
    weft_gauge_set(a->m.earliest, (double)st.earliest_not_after);
    weft_gauge_set(a->m.runway, st.earliest_not_after ? (double)(st.earliest_not_after - now) : 0);
    weft_gauge_set(a->m.node_not_after, (double)atomic_load(&a->node_not_after));
    weft_gauge_set(a->m.ca_connected, atomic_load(&a->ca_connected) ? 1 : 0);
    weft_gauge_set(a->m.streams, (double)agent_wlapi_streams(a->api));
    weft_counter_add(a->m.minted, st.minted - a->m.last_minted);
    weft_counter_add(a->m.mint_failures, st.mint_failures - a->m.last_failures);
    weft_counter_add(a->m.expired, st.expired_unrenewed - a->m.last_expired);
    a->m.last_minted = st.minted;
    a->m.last_failures = st.mint_failures;
    a->m.last_expired = st.expired_unrenewed;
}

/* --- the run -----------------------------------------------------------------------------------
 */

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "weft-agent: %s: %s\n", what, err);
    return 1;
}

static int read_token(struct agent *a, char *err, size_t err_len)
{
    if (a->o->join_token != NULL) {
        snprintf(a->token, sizeof(a->token), "%s", a->o->join_token);
    } else if (a->o->join_token_file != NULL) {
        uint8_t *t;
        size_t len;
        if (weft_file_read(&t, &len, a->o->join_token_file, TOKEN_MAX) != WEFT_OK) {
            snprintf(err, err_len, "%.200s: %s", a->o->join_token_file, strerror(errno));
            return WEFT_EIO;
        }
        /* the first line that is not empty or a comment: the file may hold what `weftctl token
         * create` printed, the token and a "# for node ..." line */
        const char *p = (const char *)t, *end = p + len;
        a->token[0] = '\0';
        while (p < end && a->token[0] == '\0') {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *eol = nl != NULL ? nl : end;
            const char *s = p, *e = eol;
            while (s < e && (*s == ' ' || *s == '\t' || *s == '\r')) {
                s++;
            }
            while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
                e--;
            }
            if (e > s && *s != '#') {
                snprintf(a->token, sizeof(a->token), "%.*s", (int)(e - s), s);
            }
            p = eol + 1;
        }
        free(t);
        if (a->token[0] == '\0') {
            snprintf(err, err_len, "%.200s holds no token", a->o->join_token_file);
            return WEFT_EINVAL;
        }
    }
    return WEFT_OK;
}

int agent_daemon_run(const struct agent_daemon_opts *o)
{
    static struct agent aa;
    struct agent *a = &aa;
    memset(a, 0, sizeof(*a));
    a->o = o;
    pthread_mutex_init(&a->k8s_mu, NULL);
    pthread_mutex_init(&a->snap_mu, NULL);
    metrics_init(&a->m);
    char err[512];
    int rc = 1;
    grpc_init();
    if (read_token(a, err, sizeof(err)) != WEFT_OK) {
        rc = fail("--join-token-file", err);
        goto out;
    }
    struct agent_node_config ncfg = {
        .state_dir = o->state_dir != NULL ? o->state_dir : AGENT_DEFAULT_STATE_DIR,
        .ca_addr = o->ca_addr,
        .trust_domain = o->trust_domain,
        .bootstrap_bundle = o->bootstrap_bundle,
    };
    if (agent_node_open(&a->node, &ncfg, err, sizeof(err)) != WEFT_OK) {
        rc = fail("node identity", err);
        goto out;
    }
    a->svids = agent_svids_new(o->trust_domain);
    if (o->kubelet_url != NULL) {
        struct agent_k8s_config kcfg = {
            .url = o->kubelet_url,
            .token_file = o->kubelet_token_file,
            .ca_file = o->kubelet_ca,
            .insecure_skip_verify = o->kubelet_insecure,
        };
        if (agent_k8s_new(&a->k8s, &kcfg, err, sizeof(err)) != WEFT_OK) {
            rc = fail("--kubelet-url", err);
            goto out;
        }
        if (o->kubelet_insecure) {
            weft_log(WEFT_LOG_WARN, "the kubelet's certificate is not verified", 1, "url",
                     o->kubelet_url);
        }
    }
    a->rpc = rpc_server_new();
    a->pcfg = agent_proxycfg_new();
    a->jwt = agent_jwt_new(o->trust_domain);
    a->claims = agent_claims_new();
    if (agent_node_has_identity(a->node, now_s())) {
        /* a restart (the node's identity is in --state-dir): its proxies were running and will
         * claim their addresses again; a first start has nothing in the directory to keep */
        agent_claims_hold(a->claims, now_s() + AGENT_CLAIMS_SETTLE_S);
    }
    struct agent_wlapi_ops ops = {.ready = api_ready,
                                  .attest = api_attest,
                                  .x509 = api_x509,
                                  .bundles = api_bundles,
                                  .proxy_open = api_proxy_open,
                                  .proxy_config = api_proxy_config,
                                  .proxy_close = api_proxy_close,
                                  .jwt_bundles = api_jwt_bundles,
                                  .jwt_svid = api_jwt_svid,
                                  .jwt_validate = api_jwt_validate,
                                  .arg = a};
    const char *sock = o->socket != NULL ? o->socket : AGENT_WLAPI_DEFAULT_SOCKET;
    if (agent_wlapi_start(&a->api, a->rpc, sock, &ops, err, sizeof(err)) != WEFT_OK) {
        rc = fail("--socket", err);
        goto out;
    }
    if (rpc_server_start(a->rpc) != WEFT_OK ||
        agent_wlapi_serve(a->api, err, sizeof(err)) != WEFT_OK) {
        rc = fail("Workload API", "cannot start serving");
        goto out;
    }
    const char *http = o->http != NULL ? o->http : AGENT_DEFAULT_HTTP;
    if (http[0] != '\0') {
        struct httpadmin_config hc = {
            .listen = http, .metrics = a->m.reg, .ready = http_ready, .ready_arg = a};
        if (httpadmin_start(&a->http, &hc, err, sizeof(err)) != WEFT_OK) {
            rc = fail("--http", err);
            goto out;
        }
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&a->ca_thread, NULL, ca_loop, a) != 0) {
        rc = fail("CA thread", "cannot start it");
        goto out;
    }
    a->ca_started = true;
    char host[256] = "";
    (void)gethostname(host, sizeof(host) - 1);
    struct agent_alert_config acfg = {
        .command = o->alert_command,
        .url = o->alert_url,
        .node = host, /* the alert's node label: the host the agent runs on */
        .runway_fraction = o->alert_runway_fraction,
        .failures = o->alert_failures,
    };
    a->alerts = agent_alerts_new(&acfg);
    if (pthread_create(&a->alert_thread, NULL, alert_loop, a) != 0) {
        rc = fail("alert thread", "cannot start it");
        goto out;
    }
    a->alert_started = true;
    weft_log(WEFT_LOG_INFO, "weft-agent serving", 4, "trust_domain", o->trust_domain, "ca",
             o->ca_addr, "socket", sock, "http", http);
    time_t last_sweep = 0;
    while (atomic_load(&stop_signal) == 0) {
        if (atomic_exchange(&a->changed, false)) {
            pthread_mutex_lock(&a->snap_mu);
            Weft__Ca__V1__NodeSnapshot *snap = a->pending_snap;
            a->pending_snap = NULL;
            pthread_mutex_unlock(&a->snap_mu);
            if (snap != NULL) { /* the pushes below compare what changed */
                (void)agent_jwt_set_keys(a->jwt, snap->jwt_keys, snap->n_jwt_keys, now_s());
                (void)agent_proxycfg_update(a->pcfg, snap); /* it keeps |snap| */
            }
            agent_wlapi_changed(a->api);
        }
        metrics_update(a);
        time_t now = time(NULL);
        if (now != last_sweep) { /* once a second is often enough */
            agent_wlapi_sweep(a->api, now);
            last_sweep = now;
        }
        /* short: nothing wakes the poll when the CA thread marks a change, and a new SVID should
         * reach its workload's stream within tens of milliseconds (test/bench:agent_bench) */
        rpc_server_poll(a->rpc, AGENT_POLL_MS);
    }
    weft_log(WEFT_LOG_INFO, "weft-agent stopping", 0);
    rc = 0;
out:
    atomic_store(&a->stop, true);
    if (a->ca_started) {
        pthread_join(a->ca_thread, NULL);
    }
    if (a->alert_started) {
        pthread_join(a->alert_thread, NULL);
    }
    agent_alerts_free(a->alerts);
    agent_wlapi_stop(a->api);
    rpc_server_free(a->rpc);
    agent_wlapi_free(a->api);
    httpadmin_stop(a->http);
    agent_k8s_free(a->k8s);
    agent_svids_free(a->svids);
    agent_proxycfg_free(a->pcfg);
    agent_jwt_free(a->jwt);
    agent_claims_free(a->claims);
    if (a->pending_snap != NULL) {
        protobuf_c_message_free_unpacked(&a->pending_snap->base, NULL);
    }
    agent_node_free(a->node);
    weft_metrics_free(a->m.reg);
    for (size_t i = 0; i < a->m.num_ids; i++) {
        free(a->m.ids[i]);
    }
    free(a->m.ids);
    free(a->m.id_gauges);
    free(a->m.id_held);
    memset(a->token, 0, sizeof(a->token));
    grpc_shutdown();
    return rc;
}
