/* agent/proxycfg.c: see proxycfg.h. */
#include "agent/proxycfg.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/netns.h"
#include "lib/base/hash.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "policy/policy.h"
#include "policy/snapshot.h"

/* --- verifying claims ------------------------------------------------------------------------ */

/* names_no_one says why |ip| cannot be any one workload's address, or NULL when it can be. */
static const char *names_no_one(const struct weft_ip *ip)
{
    const unsigned char *b = ip->bytes;
    static const unsigned char zero[16];
    if (!ip->v6) {
        if (b[0] == 127) {
            return "a loopback address is every host's own";
        }
        if (b[0] == 0) {
            return "an address in 0.0.0.0/8 names no one";
        }
        if (b[0] == 169 && b[1] == 254) {
            return "a link-local address is not unique in the mesh";
        }
        if (b[0] >= 224) {
            return "a multicast or broadcast address names no one workload";
        }
        return NULL;
    }
    if (memcmp(b, zero, 12) == 0) { /* ::, ::1 and the deprecated ::a.b.c.d */
        return b[15] == 1 && memcmp(b, zero, 15) == 0 ? "a loopback address is every host's own"
                                                      : "an address in ::/96 names no one";
    }
    if (b[0] == 0xfe && (b[1] & 0x80) == 0x80) {
        return "a link-local or site-local address is not unique in the mesh";
    }
    if (b[0] == 0xff) {
        return "a multicast address names no one workload";
    }
    return NULL;
}

static bool is_k8s(const struct agent_selectors *sel)
{
    for (size_t i = 0; i < sel->num; i++) {
        if (strncmp(sel->sel[i], "k8s:pod-uid:", 12) == 0) {
            return true;
        }
    }
    return false;
}

/* echo copies a refused claim's text for the verdict: printable ASCII only, so the answer is
 * valid UTF-8 whatever the workload sent. */
static void echo(char *out, size_t cap, const char *in)
{
    size_t n = 0;
    for (; *in != '\0' && n + 1 < cap; in++) {
        out[n++] = *in > 0x20 && *in < 0x7f ? *in : '?';
    }
    out[n] = '\0';
}

/* namespaces holds what was read of the caller's network namespace and of the node's, once per
 * verification. */
struct namespaces {
    bool read;
    int rc;
    char err[256];
    struct agent_netns_addrs caller, node;
};

static void read_namespaces(struct namespaces *ns, const char *proc, pid_t pid)
{
    if (ns->read) {
        return;
    }
    ns->read = true;
    ns->rc = agent_netns_addresses(proc, pid, &ns->caller, ns->err, sizeof(ns->err));
    if (ns->rc == WEFT_OK) {
        ns->rc = agent_netns_addresses(proc, getpid(), &ns->node, ns->err, sizeof(ns->err));
    }
}

/* verify_netns judges a claim outside Kubernetes; |text| is the IP as text. */
static void verify_netns(struct agent_claim_verdict *v, const struct agent_claim_rules *rules,
                         struct namespaces *ns, const struct weft_ip *ip, const char *text)
{
    size_t c = 0;
    while (c < rules->num_cidrs && !weft_cidr_contains(&rules->cidrs[c], ip)) {
        c++;
    }
    if (c == rules->num_cidrs) {
        snprintf(v->reason, sizeof(v->reason), "%s",
                 rules->num_cidrs == 0 ? "outside Kubernetes the agent accepts claims only in "
                                         "the ranges of --claim-cidr, and none is set"
                                       : "outside every --claim-cidr range");
    } else if (ns->rc != WEFT_OK) {
        snprintf(v->reason, sizeof(v->reason), "cannot read the caller's addresses: %.150s",
                 ns->err);
    } else if (ns->caller.node) {
        snprintf(v->reason, sizeof(v->reason),
                 "the caller runs in the node's network namespace, whose addresses every "
                 "process there shares");
    } else if (ns->caller.foreign_owner) {
        snprintf(v->reason, sizeof(v->reason),
                 "the caller's network namespace belongs to a user namespace other than the "
                 "node's: an unprivileged process may have made it");
    } else if (!agent_netns_has(&ns->caller, ip)) {
        snprintf(v->reason, sizeof(v->reason),
                 "%s is not configured on an interface that is up in the caller's network "
                 "namespace",
                 text);
    } else if (agent_netns_has(&ns->node, ip)) {
        snprintf(v->reason, sizeof(v->reason), "%s is one of the node's own addresses", text);
    } else {
        v->accepted = true;
    }
}

int agent_claims_verify(const char *proc, const struct agent_claim_rules *rules,
                        const struct agent_peer *p, const struct agent_selectors *sel,
                        char *const *addresses, size_t num, struct agent_claim_verdict *out,
                        char *err, size_t err_len)
{
    bool k8s = is_k8s(sel);
    struct namespaces *ns = weft_xcalloc(1, sizeof(*ns));
    for (size_t i = 0; i < num; i++) {
        struct agent_claim_verdict *v = &out[i];
        memset(v, 0, sizeof(*v));
        struct weft_ip ip;
        if (weft_addr_canonical(v->address, addresses[i], &ip) != WEFT_OK) {
            echo(v->address, sizeof(v->address), addresses[i]);
            snprintf(v->reason, sizeof(v->reason),
                     "not an IP address with an optional port (\"10.0.0.7\", \"10.0.0.7:8080\", "
                     "\"[fd00::7]:8080\")");
            continue;
        }
        const char *no_one = names_no_one(&ip);
        if (no_one != NULL) {
            snprintf(v->reason, sizeof(v->reason), "%s", no_one);
            continue;
        }
        char text[INET6_ADDRSTRLEN];
        inet_ntop(ip.v6 ? AF_INET6 : AF_INET, ip.bytes, text, sizeof(text));
        if (k8s) {
            char want[AGENT_SELECTOR_MAX + 1];
            snprintf(want, sizeof(want), "k8s:pod-ip:%s", text);
            v->accepted = agent_selectors_has(sel, want);
            if (!v->accepted) {
                snprintf(v->reason, sizeof(v->reason),
                         "%s is not an IP of the caller's pod as the kubelet lists it", text);
            }
        } else if (rules->k8s) {
            snprintf(v->reason, sizeof(v->reason),
                     "the agent attests pods (--kubelet-url), and the caller was not attested as "
                     "one (see the agent's log)");
        } else {
            read_namespaces(ns, proc, p->pid);
            verify_netns(v, rules, ns, &ip, text);
        }
    }
    free(ns);
    /* what was read of /proc/PID must have been the caller's */
    if (!agent_peer_same(p, proc)) {
        snprintf(err, err_len, "pid %d changed hands while its addresses were read", (int)p->pid);
        return WEFT_ESTALE;
    }
    return WEFT_OK;
}

/* --- the claims held, for the CA ------------------------------------------------------------ */

struct claim {
    const void *owner;
    char address[WEFT_ADDR_MAX];
    char *spiffe_id;
};

struct agent_claims {
    pthread_mutex_t mu;
    struct claim *c;
    size_t num;
    uint64_t changes;  /* bumped by every set or drop */
    uint64_t reported; /* |changes| as of the last report the CA took */
    int64_t reported_at;
    unsigned failures; /* reports in a row the CA did not take */
    int64_t retry_at;  /* after a failure, no report before then */
};

struct agent_claims *agent_claims_new(void)
{
    struct agent_claims *c = weft_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    c->c = weft_xcalloc(AGENT_CLAIMS_MAX, sizeof(*c->c));
    return c;
}

void agent_claims_free(struct agent_claims *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->num; i++) {
        free(c->c[i].spiffe_id);
    }
    free(c->c);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* drop_locked removes |owner|'s claims; returns how many. */
static size_t drop_locked(struct agent_claims *c, const void *owner)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < c->num; i++) {
        if (c->c[i].owner == owner) {
            free(c->c[i].spiffe_id);
            dropped++;
        } else {
            c->c[kept++] = c->c[i];
        }
    }
    c->num = kept;
    return dropped;
}

int agent_claims_set(struct agent_claims *c, const void *owner, const char *spiffe_id,
                     const struct agent_claim_verdict *v, size_t num)
{
    pthread_mutex_lock(&c->mu);
    size_t dropped = drop_locked(c, owner);
    size_t accepted = 0;
    for (size_t i = 0; i < num; i++) {
        accepted += v[i].accepted;
    }
    int rc = WEFT_OK;
    if (c->num + accepted > AGENT_CLAIMS_MAX) {
        rc = WEFT_ELIMIT;
    } else {
        for (size_t i = 0; i < num; i++) {
            if (v[i].accepted) {
                struct claim *cl = &c->c[c->num++];
                cl->owner = owner;
                memcpy(cl->address, v[i].address, sizeof(cl->address));
                cl->spiffe_id = weft_xstrndup(spiffe_id, strlen(spiffe_id));
            }
        }
    }
    if (dropped > 0 || accepted > 0) {
        c->changes++;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void agent_claims_drop(struct agent_claims *c, const void *owner)
{
    pthread_mutex_lock(&c->mu);
    if (drop_locked(c, owner) > 0) {
        c->changes++;
    }
    pthread_mutex_unlock(&c->mu);
}

/* the report carries |changes| as of its making in a field of its own making: the caller hands
 * it back to agent_claims_reported */
struct report {
    Weft__Ca__V1__ReportWorkloadsRequest req;
    uint64_t changes;
};

static int claim_order(const void *a, const void *b)
{
    const struct claim *x = *(const struct claim *const *)a, *y = *(const struct claim *const *)b;
    int c = strcmp(x->address, y->address);
    return c != 0 ? c : strcmp(x->spiffe_id, y->spiffe_id);
}

Weft__Ca__V1__ReportWorkloadsRequest *agent_claims_report(struct agent_claims *c, int64_t now)
{
    pthread_mutex_lock(&c->mu);
    if ((c->changes == c->reported && now - c->reported_at < AGENT_CLAIMS_REFRESH_S) ||
        now < c->retry_at) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    struct report *r = weft_xcalloc(1, sizeof(*r));
    weft__ca__v1__report_workloads_request__init(&r->req);
    r->changes = c->changes;
    r->req.workloads = weft_xcalloc(c->num + 1, sizeof(*r->req.workloads));
    /* sorted, so that two streams of one workload claiming one address report it once */
    const struct claim **sorted = weft_xcalloc(c->num + 1, sizeof(*sorted));
    for (size_t i = 0; i < c->num; i++) {
        sorted[i] = &c->c[i];
    }
    qsort(sorted, c->num, sizeof(*sorted), claim_order);
    for (size_t i = 0; i < c->num; i++) {
        if (i > 0 && claim_order(&sorted[i - 1], &sorted[i]) == 0) {
            continue;
        }
        Weft__Ca__V1__DirectoryEntry *e = weft_xcalloc(1, sizeof(*e));
        weft__ca__v1__directory_entry__init(e);
        e->address = weft_xstrndup(sorted[i]->address, strlen(sorted[i]->address));
        e->spiffe_id = weft_xstrndup(sorted[i]->spiffe_id, strlen(sorted[i]->spiffe_id));
        r->req.workloads[r->req.n_workloads++] = e;
    }
    free(sorted);
    pthread_mutex_unlock(&c->mu);
    return &r->req;
}

void agent_claims_hold(struct agent_claims *c, int64_t until)
{
    pthread_mutex_lock(&c->mu);
    c->retry_at = until;
    pthread_mutex_unlock(&c->mu);
}

void agent_claims_reported(struct agent_claims *c, const Weft__Ca__V1__ReportWorkloadsRequest *req,
                           bool ok, int64_t now)
{
    const struct report *r = (const struct report *)req;
    pthread_mutex_lock(&c->mu);
    if (ok) {
        c->reported = r->changes;
        c->reported_at = now;
        c->failures = 0;
        c->retry_at = 0;
    } else { /* back off: 2, 4, 8 ... up to AGENT_CLAIMS_REFRESH_S seconds */
        c->failures += c->failures < 16;
        int64_t wait = (int64_t)1 << c->failures;
        c->retry_at = now + (wait < AGENT_CLAIMS_REFRESH_S ? wait : AGENT_CLAIMS_REFRESH_S);
    }
    pthread_mutex_unlock(&c->mu);
}

void agent_claims_report_free(Weft__Ca__V1__ReportWorkloadsRequest *req)
{
    if (req == NULL) {
        return;
    }
    for (size_t i = 0; i < req->n_workloads; i++) {
        free(req->workloads[i]->address);
        free(req->workloads[i]->spiffe_id);
        free(req->workloads[i]);
    }
    free(req->workloads);
    free((struct report *)req);
}

/* --- the config ------------------------------------------------------------------------------ */

struct agent_proxycfg {
    Weft__Ca__V1__NodeSnapshot *snap; /* the directory and deny list served point into it */
    uint64_t sequence;
    struct policy_set set; /* loaded from snap's policy files */
    struct policy_config config;
    bool loaded;             /* |set| came from the CA (not the empty one of the start) */
    uint64_t policy_version; /* the CA's number for |set|, as it said */
    /* what was served, by content: the CA's version numbers start again with each CA run */
    uint64_t policy_digest, failed_digest, dir_digest, deny_digest;
};

struct agent_proxycfg *agent_proxycfg_new(void)
{
    struct agent_proxycfg *pc = weft_xcalloc(1, sizeof(*pc));
    policy_set_init(&pc->set);
    return pc;
}

void agent_proxycfg_free(struct agent_proxycfg *pc)
{
    if (pc == NULL) {
        return;
    }
    if (pc->snap != NULL) {
        protobuf_c_message_free_unpacked(&pc->snap->base, NULL);
    }
    policy_set_cleanup(&pc->set);
    free(pc);
}

uint64_t agent_proxycfg_policy_version(const struct agent_proxycfg *pc)
{
    return pc->policy_version;
}

static uint64_t policy_digest(const Weft__Ca__V1__NodeSnapshot *snap)
{
    uint64_t h = WEFT_FNV1A_INIT;
    for (size_t i = 0; i < snap->n_policy; i++) {
        h = weft_fnv1a_str(h, snap->policy[i]->name);
        h = weft_fnv1a(h, &snap->policy[i]->content.len, sizeof(snap->policy[i]->content.len));
        h = weft_fnv1a(h, snap->policy[i]->content.data, snap->policy[i]->content.len);
    }
    return h;
}

static uint64_t dir_digest(const Weft__Ca__V1__NodeSnapshot *snap)
{
    uint64_t h = WEFT_FNV1A_INIT;
    for (size_t i = 0; i < snap->n_directory; i++) {
        h = weft_fnv1a_str(h, snap->directory[i]->address);
        h = weft_fnv1a_str(h, snap->directory[i]->spiffe_id);
    }
    return h;
}

static uint64_t deny_digest(const Weft__Ca__V1__NodeSnapshot *snap)
{
    uint64_t h = WEFT_FNV1A_INIT;
    for (size_t i = 0; i < snap->n_deny_list; i++) {
        const Weft__Ca__V1__DenyItem *d = snap->deny_list[i];
        h = weft_fnv1a(h, &d->kind, sizeof(d->kind));
        h = weft_fnv1a_str(h, d->value);
    }
    return h;
}

/* load_policy makes |pc|'s set the one in |snap| (whose content digest is |digest|); false
 * (the old set kept) when it fails, logged once per content. */
static bool load_policy(struct agent_proxycfg *pc, const Weft__Ca__V1__NodeSnapshot *snap,
                        uint64_t digest)
{
    if (digest == pc->failed_digest) {
        return false;
    }
    struct policy_set set;
    policy_set_init(&set);
    bool ok = true;
    for (size_t i = 0; i < snap->n_policy && ok; i++) {
        const Weft__Ca__V1__PolicyFile *f = snap->policy[i];
        ok = policy_set_load_buffer(&set, f->name, f->content.data, f->content.len) == WEFT_OK;
    }
    ok = ok && policy_set_finish(&set) == WEFT_OK;
    if (!ok) {
        weft_log(WEFT_LOG_ERROR,
                 pc->loaded ? "the CA's policy does not load here; the previous one stays"
                            : "the CA's policy does not load here; proxies get no configuration",
                 1, "error", set.num_errors > 0 ? set.errors[0].text : "?");
        policy_set_cleanup(&set);
        pc->failed_digest = digest;
        return false;
    }
    policy_set_cleanup(&pc->set);
    pc->set = set;
    policy_config_resolve(&pc->config, &pc->set);
    pc->policy_version = snap->policy_version;
    pc->policy_digest = digest;
    pc->loaded = true;
    return true;
}

bool agent_proxycfg_update(struct agent_proxycfg *pc, Weft__Ca__V1__NodeSnapshot *snap)
{
    bool changed = false;
    uint64_t pd = policy_digest(snap), dd = dir_digest(snap), nd = deny_digest(snap);
    if ((!pc->loaded || pd != pc->policy_digest) && load_policy(pc, snap, pd)) {
        changed = true;
    }
    changed |= pc->snap == NULL || dd != pc->dir_digest || nd != pc->deny_digest;
    if (pc->snap != NULL) {
        protobuf_c_message_free_unpacked(&pc->snap->base, NULL);
    }
    pc->snap = snap;
    pc->dir_digest = dd;
    pc->deny_digest = nd;
    if (changed) {
        pc->sequence++;
    }
    return changed;
}

int agent_proxy_stream_init(struct agent_proxy_stream *ps, const char *spiffe_id,
                            const struct agent_selectors *sel, char *why, size_t why_len)
{
    memset(ps, 0, sizeof(*ps));
    snprintf(ps->spiffe_id, sizeof(ps->spiffe_id), "%s", spiffe_id);
    const char *path = strncmp(spiffe_id, "spiffe://", 9) == 0 ? strchr(spiffe_id + 9, '/') : NULL;
    int ns_len = 0, sa_len = 0, end = 0;
    if (path == NULL || sscanf(path, "/ns/%*[^/]%n/sa/%n%*[^/]%n", &ns_len, &sa_len, &end) < 0 ||
        end == 0 || path[end] != '\0' || ns_len - 4 >= (int)sizeof(ps->ns) ||
        end - sa_len >= (int)sizeof(ps->sa)) {
        snprintf(why, why_len,
                 "%.200s: policy selects workloads by namespace and service account, so a "
                 "proxy's ID must have the path /ns/NAMESPACE/sa/SERVICE_ACCOUNT",
                 spiffe_id);
        return WEFT_EINVAL;
    }
    snprintf(ps->ns, sizeof(ps->ns), "%.*s", ns_len - 4, path + 4);
    snprintf(ps->sa, sizeof(ps->sa), "%.*s", end - sa_len, path + sa_len);
    for (size_t i = 0; i < sel->num; i++) {
        const char *kv = sel->sel[i];
        if (strncmp(kv, "k8s:pod-label:", 14) != 0 || strchr(kv + 14, ':') == NULL) {
            continue;
        }
        if (ps->num_labels == nitems(ps->label_keys)) { /* a policy on a label left out could
                                                           fail to apply: refuse instead */
            snprintf(why, why_len, "%.200s: the pod has over %zu labels", spiffe_id,
                     nitems(ps->label_keys));
            agent_proxy_stream_cleanup(ps);
            return WEFT_ELIMIT;
        }
        kv += 14;
        const char *colon = strchr(kv, ':');
        ps->label_keys[ps->num_labels] = weft_xstrndup(kv, (size_t)(colon - kv));
        ps->label_values[ps->num_labels] = weft_xstrndup(colon + 1, strlen(colon + 1));
        ps->num_labels++;
    }
    struct policy_workload w = {ps->ns, ps->sa, (const char *const *)ps->label_keys,
                                (const char *const *)ps->label_values, ps->num_labels};
    if (!policy_is_valid_workload(&w)) {
        snprintf(why, why_len,
                 "%.200s: namespace \"%s\" or service account \"%.60s\" (or a pod label) is "
                 "not a valid Kubernetes name",
                 spiffe_id, ps->ns, ps->sa);
        agent_proxy_stream_cleanup(ps);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

void agent_proxy_stream_cleanup(struct agent_proxy_stream *ps)
{
    for (size_t i = 0; i < ps->num_labels; i++) {
        free(ps->label_keys[i]);
        free(ps->label_values[i]);
    }
    ps->num_labels = 0;
    free(ps->policy);
    ps->policy = NULL;
}

int agent_proxycfg_build(struct agent_proxycfg *pc, struct agent_proxy_stream *ps,
                         Weft__Agent__V1__ProxyConfigResponse *resp, char *why, size_t why_len)
{
    if (pc->snap == NULL) {
        return WEFT_EAGAIN; /* nothing from the CA yet: nothing is sent, rather than defaults */
    }
    if (!pc->loaded) {
        snprintf(why, why_len, "the CA's policy does not load on this agent (see its log)");
        return WEFT_EINVAL;
    }
    if (!ps->compiled || ps->policy_digest != pc->policy_digest) {
        struct policy_workload w = {ps->ns, ps->sa, (const char *const *)ps->label_keys,
                                    (const char *const *)ps->label_values, ps->num_labels};
        struct policy_snapshot *snap = NULL;
        uint8_t *enc = NULL;
        size_t len = 0;
        if (policy_compile(&snap, &pc->set, &pc->config, &w) != WEFT_OK ||
            policy_snapshot_encode(&enc, &len, snap) != WEFT_OK) {
            policy_snapshot_free(snap);
            snprintf(why, why_len, "the policy does not compile for %.200s", ps->spiffe_id);
            return WEFT_EINVAL;
        }
        policy_snapshot_free(snap);
        free(ps->policy);
        ps->policy = enc;
        ps->policy_len = len;
        ps->policy_digest = pc->policy_digest;
        ps->compiled = true;
    }
    weft__agent__v1__proxy_config_response__init(resp);
    resp->sequence = pc->sequence;
    resp->spiffe_id = ps->spiffe_id;
    resp->policy = (ProtobufCBinaryData){ps->policy_len, ps->policy};
    resp->policy_version = pc->policy_version;
    resp->directory = pc->snap->directory;
    resp->n_directory = pc->snap->n_directory;
    resp->directory_version = pc->snap->directory_version;
    resp->deny_list = pc->snap->deny_list;
    resp->n_deny_list = pc->snap->n_deny_list;
    for (size_t i = 0; i < ps->num_claims; i++) {
        Weft__Agent__V1__AddressClaim *c = &ps->out_claims[i];
        weft__agent__v1__address_claim__init(c);
        c->address = ps->claims[i].address;
        c->accepted = ps->claims[i].accepted;
        c->reason = ps->claims[i].reason;
        ps->out_claim_ptrs[i] = c;
    }
    resp->addresses = ps->out_claim_ptrs;
    resp->n_addresses = ps->num_claims;
    return WEFT_OK;
}
