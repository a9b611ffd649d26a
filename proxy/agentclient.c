/* proxy/agentclient.c: see agentclient.h. */
#include "proxy/agentclient.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"
#include "proto/agent.pb-c.h"
#include "proto/workload.pb-c.h"

#define MAX_MESSAGE (64 << 20) /* a directory of a large mesh */
#define RECV_SLICE_MS 100      /* each stream is polled this long in turn */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000

/* --- states ---------------------------------------------------------------------------------- */

void proxy_identity_unref(struct proxy_identity *id)
{
    if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1) {
        return;
    }
    free(id->chain);
    if (id->key != NULL) {
        OPENSSL_cleanse(id->key, id->key_len);
        free(id->key);
    }
    spiffe_bundle_set_cleanup(&id->bundles);
    free(id);
}

static void config_unref(struct proxy_config *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) {
        return;
    }
    policy_snapshot_free(c->policy);
    for (size_t i = 0; i < c->num_dir; i++) {
        free(c->dir[i].spiffe_id);
    }
    free(c->dir);
    for (size_t i = 0; i < c->num_deny_ids; i++) {
        free(c->deny_ids[i]);
    }
    for (size_t i = 0; i < c->num_deny_serials; i++) {
        free(c->deny_serials[i]);
    }
    free(c->deny_ids);
    free(c->deny_serials);
    free(c);
}

struct proxy_identity *proxy_identity_ref(struct proxy_identity *id)
{
    atomic_fetch_add(&id->refs, 1);
    return id;
}

struct proxy_state *proxy_state_ref(struct proxy_state *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void proxy_state_unref(struct proxy_state *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) {
        return;
    }
    proxy_identity_unref(s->id);
    config_unref(s->cfg);
    free(s);
}

bool proxy_state_ready(const struct proxy_state *s, int64_t now)
{
    return s->id != NULL && s->cfg != NULL && !s->foreign_cfg && now >= s->id->not_before &&
           now < s->id->not_after;
}

/* names_workload: |id|'s path is /ns/NS/sa/SA of the workload |w| the policy was compiled for
 * (the agent derives the workload from the same ID; a mismatch is a bug or a mix-up, and the
 * proxy would judge its peers by another workload's rules). */
static bool names_workload(const char *id, const struct policy_workload *w)
{
    const char *path = strstr(id, "://");
    path = path != NULL ? strchr(path + 3, '/') : NULL;
    char want[600];
    snprintf(want, sizeof(want), "/ns/%s/sa/%s", w->namespace_ != NULL ? w->namespace_ : "",
             w->service_account != NULL ? w->service_account : "");
    return path != NULL && strcmp(path, want) == 0;
}

static int dir_order(const void *a, const void *b)
{
    return strcmp(((const struct proxy_dir_entry *)a)->address,
                  ((const struct proxy_dir_entry *)b)->address);
}

static const char *dir_find(const struct proxy_config *c, const char *address)
{
    struct proxy_dir_entry key;
    snprintf(key.address, sizeof(key.address), "%s", address);
    const struct proxy_dir_entry *e = bsearch(&key, c->dir, c->num_dir, sizeof(*c->dir), dir_order);
    return e != NULL ? e->spiffe_id : NULL;
}

const char *proxy_state_lookup(const struct proxy_state *s, const struct sockaddr *addr)
{
    if (s->cfg == NULL) {
        return NULL;
    }
    char ip[INET6_ADDRSTRLEN], with_port[WEFT_ADDR_MAX];
    unsigned port;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(with_port, sizeof(with_port), "%s:%u", ip, port);
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(with_port, sizeof(with_port), "[%s]:%u", ip, port);
    } else {
        return NULL;
    }
    /* the directory's own spelling (an IPv4-mapped IPv6 address is its IPv4 form) */
    char canon[WEFT_ADDR_MAX], canon_ip[WEFT_ADDR_MAX];
    if (weft_addr_canonical(canon, with_port, NULL) != WEFT_OK ||
        weft_addr_canonical(canon_ip, ip, NULL) != WEFT_OK) {
        return NULL;
    }
    const char *id = dir_find(s->cfg, canon);
    return id != NULL ? id : dir_find(s->cfg, canon_ip);
}

static int str_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* in_list looks |v| up in a sorted list (config_of sorts them: every live connection is checked
 * against them on every change). */
static bool in_list(char *const *list, size_t n, const char *v)
{
    return v != NULL && n > 0 && bsearch(&v, list, n, sizeof(*list), str_order) != NULL;
}

bool proxy_state_denied(const struct proxy_state *s, const char *spiffe_id, const char *serial_hex)
{
    return s->cfg != NULL && (in_list(s->cfg->deny_ids, s->cfg->num_deny_ids, spiffe_id) ||
                              in_list(s->cfg->deny_serials, s->cfg->num_deny_serials, serial_hex));
}

/* --- what comes from the agent --------------------------------------------------------------- */

/* identity_of turns the first SVID of |r| (or the one for |want|) into an identity, checking
 * what the agent sent: a chain that decodes, a key that matches its leaf, a bundle that decodes.
 * NULL with |why| set otherwise. */
static struct proxy_identity *identity_of(const X509SVIDResponse *r, const char *want, char *why,
                                          size_t why_len)
{
    const X509SVID *o = NULL;
    for (size_t i = 0; i < r->n_svids && o == NULL; i++) {
        if (want == NULL || strcmp(r->svids[i]->spiffe_id, want) == 0) {
            o = r->svids[i];
        }
    }
    if (o == NULL) {
        snprintf(why, why_len, "the agent sent no SVID for %.200s", want ? want : "the workload");
        return NULL;
    }
    struct spiffe_why w = {0};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    struct spiffe_id id, td;
    struct proxy_identity *out = NULL;
    if (spiffe_id_parse(&id, o->spiffe_id, strlen(o->spiffe_id), &w) != WEFT_OK ||
        spiffe_certs_decode(&chain, o->x509_svid.data, o->x509_svid.len, SPIFFE_MAX_CHAIN, 0, &w) !=
            WEFT_OK ||
        spiffe_key_decode(&key, o->x509_svid_key.data, o->x509_svid_key.len, &w) != WEFT_OK ||
        spiffe_x509svid_check_key(sk_X509_value(chain, 0), key, &w) != WEFT_OK) {
        snprintf(why, why_len, "the agent's SVID for %.100s: %.120s", o->spiffe_id, w.msg);
        goto out;
    }
    out = weft_xcalloc(1, sizeof(*out));
    atomic_init(&out->refs, 1);
    spiffe_bundle_set_init(&out->bundles);
    spiffe_id_td_id(&td, &id);
    if (spiffe_bundle_decode(&out->bundles, o->bundle.data, o->bundle.len, &td, &w) != WEFT_OK) {
        snprintf(why, why_len, "the agent's bundle for %.100s: %.120s", o->spiffe_id, w.msg);
        proxy_identity_unref(out);
        out = NULL;
        goto out;
    }
    for (size_t i = 0; i < r->n_federated_bundles; i++) {
        const X509SVIDResponse__FederatedBundlesEntry *f = r->federated_bundles[i];
        struct spiffe_id ftd;
        if (spiffe_id_parse(&ftd, f->key, strlen(f->key), &w) != WEFT_OK ||
            spiffe_bundle_decode(&out->bundles, f->value.data, f->value.len, &ftd, &w) != WEFT_OK) {
            weft_log(WEFT_LOG_WARN, "a federated bundle from the agent is left out", 2,
                     "trust_domain", f->key, "reason", w.msg);
        }
    }
    snprintf(out->spiffe_id, sizeof(out->spiffe_id), "%s", o->spiffe_id);
    out->chain = weft_xmalloc(o->x509_svid.len + 1);
    memcpy(out->chain, o->x509_svid.data, o->x509_svid.len);
    out->chain_len = o->x509_svid.len;
    out->key = weft_xmalloc(o->x509_svid_key.len + 1);
    memcpy(out->key, o->x509_svid_key.data, o->x509_svid_key.len);
    out->key_len = o->x509_svid_key.len;
    int64_t nb = 0, na = 0;
    if (spiffe_cert_validity(&nb, &na, sk_X509_value(chain, 0)) != WEFT_OK) {
        snprintf(why, why_len, "the agent's SVID for %.200s: unreadable validity", o->spiffe_id);
        proxy_identity_unref(out);
        out = NULL;
        goto out;
    }
    out->not_before = nb;
    out->not_after = na;
    spiffe_serial_hex(out->serial, sk_X509_value(chain, 0));
    for (size_t i = 0; i < sk_X509_num(chain) && i < SPIFFE_MAX_CHAIN; i++) {
        const X509 *cert = sk_X509_value(chain, i);
        struct proxy_cert_info *ci = &out->chain_info[out->num_chain++];
        if (i == 0) {
            snprintf(ci->name, sizeof(ci->name), "%.299s", out->spiffe_id);
        } else {
            X509_NAME_oneline(X509_get_subject_name(cert), ci->name, sizeof(ci->name));
        }
        spiffe_serial_hex(ci->serial, cert);
        if (spiffe_cert_validity(&ci->not_before, &ci->not_after, cert) != WEFT_OK) {
            ci->not_before = ci->not_after = 0;
        }
    }
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    return out;
}

static char **copy_strings(size_t n) { return weft_xcalloc(n + 1, sizeof(char *)); }

/* config_of turns a ProxyConfig message into a configuration; NULL with |why| set when its
 * policy does not decode (it is checked again here, as everything that crosses a wire). */
static struct proxy_config *config_of(const Weft__Agent__V1__ProxyConfigResponse *r, char *why,
                                      size_t why_len)
{
    struct policy_snapshot *policy = NULL;
    if (policy_snapshot_decode(&policy, r->policy.data, r->policy.len, why, why_len) != WEFT_OK) {
        return NULL;
    }
    struct proxy_config *c = weft_xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    c->policy = policy;
    c->policy_version = r->policy_version;
    c->directory_version = r->directory_version;
    c->sequence = r->sequence;
    c->dir = weft_xcalloc(r->n_directory + 1, sizeof(*c->dir));
    for (size_t i = 0; i < r->n_directory; i++) {
        struct proxy_dir_entry *e = &c->dir[c->num_dir];
        if (weft_addr_canonical(e->address, r->directory[i]->address, NULL) != WEFT_OK) {
            continue; /* the CA keeps canonical forms: this cannot be one of its entries */
        }
        e->spiffe_id =
            weft_xstrndup(r->directory[i]->spiffe_id, strlen(r->directory[i]->spiffe_id));
        c->num_dir++;
    }
    qsort(c->dir, c->num_dir, sizeof(*c->dir), dir_order);
    c->deny_ids = copy_strings(r->n_deny_list);
    c->deny_serials = copy_strings(r->n_deny_list);
    for (size_t i = 0; i < r->n_deny_list; i++) {
        const Weft__Ca__V1__DenyItem *d = r->deny_list[i];
        if (d->kind == WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID) {
            c->deny_ids[c->num_deny_ids++] = weft_xstrndup(d->value, strlen(d->value));
        } else if (d->kind == WEFT__CA__V1__DENY_ITEM__KIND__SERIAL) {
            c->deny_serials[c->num_deny_serials++] = weft_xstrndup(d->value, strlen(d->value));
        } /* NODE items: the agent has already stopped serving that node's SVIDs */
    }
    qsort(c->deny_ids, c->num_deny_ids, sizeof(*c->deny_ids), str_order);
    qsort(c->deny_serials, c->num_deny_serials, sizeof(*c->deny_serials), str_order);
    return c;
}

/* --- the client thread ----------------------------------------------------------------------- */

struct proxy_agent {
    struct proxy_agent_config cfg;
    pthread_t thread;
    atomic_bool stop, x509_up, config_up;
    pthread_mutex_t mu; /* over |state| */
    struct proxy_state *state;
    uint64_t generation;
};

/* publish makes a new state of |id| and |cfg| (references taken) the current one. */
static void publish(struct proxy_agent *pa, struct proxy_identity *id, struct proxy_config *cfg)
{
    struct proxy_state *s = weft_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    if (id != NULL) {
        atomic_fetch_add(&id->refs, 1);
    }
    if (cfg != NULL) {
        atomic_fetch_add(&cfg->refs, 1);
    }
    s->id = id;
    s->cfg = cfg;
    if (id != NULL && cfg != NULL && !names_workload(id->spiffe_id, &cfg->policy->workload)) {
        s->foreign_cfg = true;
        char wl[600];
        snprintf(wl, sizeof(wl), "%.250s/%.250s", cfg->policy->workload.namespace_,
                 cfg->policy->workload.service_account);
        weft_log(WEFT_LOG_ERROR,
                 "the agent's configuration is for another workload than the SVID; new "
                 "connections (in and out) are refused until they agree",
                 2, "spiffe_id", id->spiffe_id, "config_workload", wl);
    }
    pthread_mutex_lock(&pa->mu);
    s->generation = ++pa->generation;
    struct proxy_state *old = pa->state;
    pa->state = s;
    pthread_mutex_unlock(&pa->mu);
    proxy_state_unref(old);
    if (pa->cfg.on_update != NULL) {
        pa->cfg.on_update(pa->cfg.arg, s);
    }
}

struct proxy_state *proxy_agent_state(struct proxy_agent *pa)
{
    pthread_mutex_lock(&pa->mu);
    struct proxy_state *s = proxy_state_ref(pa->state);
    pthread_mutex_unlock(&pa->mu);
    return s;
}

bool proxy_agent_connected(struct proxy_agent *pa)
{
    return atomic_load(&pa->x509_up) && atomic_load(&pa->config_up);
}

static void nap(struct proxy_agent *pa, int ms)
{
    for (int left = ms; left > 0 && !atomic_load(&pa->stop); left -= 50) {
        struct timespec ts = {0, (long)(left < 50 ? left : 50) * 1000000};
        nanosleep(&ts, NULL);
    }
}

static struct rpc_client_stream *open_stream(grpc_channel *ch, const char *path,
                                             const ProtobufCMessage *req)
{
    grpc_metadata md = {.key = grpc_slice_from_static_string("workload.spiffe.io"),
                        .value = grpc_slice_from_static_string("true")};
    /* a stream lasts as long as the agent keeps it: the deadline is a day, then it reopens */
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, path, 86400 * 1000, &md, 1);
    if (cs != NULL && rpc_client_stream_send(cs, req, 5000) != WEFT_OK) {
        /* the next receive says how the call ended */
    }
    return cs;
}

/* current_parts returns references to the current state's parts. */
static void current_parts(struct proxy_agent *pa, struct proxy_identity **id,
                          struct proxy_config **cfg)
{
    struct proxy_state *s = proxy_agent_state(pa);
    *id = s->id;
    *cfg = s->cfg;
    if (*id != NULL) {
        atomic_fetch_add(&(*id)->refs, 1);
    }
    if (*cfg != NULL) {
        atomic_fetch_add(&(*cfg)->refs, 1);
    }
    proxy_state_unref(s);
}

/* ended logs how stream |what| ended and closes it. */
static void ended(struct rpc_client_stream **cs, const char *what, atomic_bool *up)
{
    struct rpc_status st = {0};
    rpc_client_stream_status(*cs, 1000, &st);
    rpc_client_stream_close(*cs);
    *cs = NULL;
    char code[16];
    snprintf(code, sizeof(code), "%d", (int)st.code);
    weft_log(atomic_exchange(up, false) ? WEFT_LOG_ERROR : WEFT_LOG_WARN,
             "the agent's stream ended; reconnecting", 3, "stream", what, "code", code, "detail",
             st.details);
}

static void *run(void *arg)
{
    struct proxy_agent *pa = arg;
    grpc_channel *ch = rpc_channel_unix(pa->cfg.socket);
    struct rpc_client_stream *x509 = NULL, *conf = NULL;
    int backoff = BACKOFF_MIN_MS;
    X509SVIDRequest xreq = X509_SVIDREQUEST__INIT;
    Weft__Agent__V1__ProxyConfigRequest creq = WEFT__AGENT__V1__PROXY_CONFIG_REQUEST__INIT;
    creq.addresses = (char **)pa->cfg.claims;
    creq.n_addresses = pa->cfg.num_claims;
    creq.spiffe_id = (char *)(pa->cfg.spiffe_id != NULL ? pa->cfg.spiffe_id : "");
    while (!atomic_load(&pa->stop)) {
        if (x509 == NULL) {
            x509 = open_stream(ch, "/SpiffeWorkloadAPI/FetchX509SVID", &xreq.base);
        }
        if (conf == NULL) {
            conf = open_stream(ch, "/weft.agent.v1.ProxyConfig/Watch", &creq.base);
        }
        bool failed = false;
        char why[256];
        ProtobufCMessage *m = NULL;
        int rc = x509 != NULL ? rpc_client_stream_recv(x509, &x509_svidresponse__descriptor,
                                                       MAX_MESSAGE, RECV_SLICE_MS, &m)
                              : WEFT_EIO;
        if (rc == WEFT_OK) {
            struct proxy_identity *id =
                identity_of((X509SVIDResponse *)m, pa->cfg.spiffe_id, why, sizeof(why));
            protobuf_c_message_free_unpacked(m, NULL);
            if (id == NULL) {
                weft_log(WEFT_LOG_ERROR, "an SVID from the agent is refused", 1, "reason", why);
            } else {
                struct proxy_identity *old_id;
                struct proxy_config *cfg;
                current_parts(pa, &old_id, &cfg);
                publish(pa, id, cfg);
                proxy_identity_unref(id);
                proxy_identity_unref(old_id);
                config_unref(cfg);
                atomic_store(&pa->x509_up, true);
            }
        } else if (rc != WEFT_EAGAIN) {
            if (x509 != NULL) {
                ended(&x509, "FetchX509SVID", &pa->x509_up);
            }
            failed = true;
        }
        m = NULL;
        rc = conf != NULL
                 ? rpc_client_stream_recv(conf, &weft__agent__v1__proxy_config_response__descriptor,
                                          MAX_MESSAGE, RECV_SLICE_MS, &m)
                 : WEFT_EIO;
        if (rc == WEFT_OK) {
            struct proxy_config *cfg =
                config_of((Weft__Agent__V1__ProxyConfigResponse *)m, why, sizeof(why));
            protobuf_c_message_free_unpacked(m, NULL);
            if (cfg == NULL) {
                weft_log(WEFT_LOG_ERROR, "a configuration from the agent is refused", 1, "reason",
                         why);
            } else {
                struct proxy_identity *id;
                struct proxy_config *old_cfg;
                current_parts(pa, &id, &old_cfg);
                publish(pa, id, cfg);
                config_unref(cfg);
                config_unref(old_cfg);
                proxy_identity_unref(id);
                atomic_store(&pa->config_up, true);
            }
        } else if (rc != WEFT_EAGAIN) {
            if (conf != NULL) {
                ended(&conf, "ProxyConfig", &pa->config_up);
            }
            failed = true;
        }
        if (failed) {
            nap(pa, backoff);
            backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
        } else if (proxy_agent_connected(pa)) {
            backoff = BACKOFF_MIN_MS;
        }
    }
    if (x509 != NULL) {
        rpc_client_stream_close(x509);
    }
    if (conf != NULL) {
        rpc_client_stream_close(conf);
    }
    grpc_channel_destroy(ch);
    return NULL;
}

int proxy_agent_start(struct proxy_agent **out, const struct proxy_agent_config *cfg, char *err,
                      size_t err_len)
{
    *out = NULL;
    if (cfg->socket == NULL || cfg->num_claims > PROXY_AGENT_MAX_CLAIMS) {
        snprintf(err, err_len, "the agent's socket is needed, and at most %d claims",
                 PROXY_AGENT_MAX_CLAIMS);
        return WEFT_EINVAL;
    }
    struct proxy_agent *pa = weft_xcalloc(1, sizeof(*pa));
    pa->cfg = *cfg;
    pthread_mutex_init(&pa->mu, NULL);
    pa->state = weft_xcalloc(1, sizeof(*pa->state));
    atomic_init(&pa->state->refs, 1);
    int rc = pthread_create(&pa->thread, NULL, run, pa);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the agent client's thread: %s", strerror(rc));
        proxy_state_unref(pa->state);
        pthread_mutex_destroy(&pa->mu);
        free(pa);
        return WEFT_EINTERNAL;
    }
    *out = pa;
    return WEFT_OK;
}

void proxy_agent_stop(struct proxy_agent *pa)
{
    if (pa == NULL) {
        return;
    }
    atomic_store(&pa->stop, true);
    pthread_join(pa->thread, NULL);
    proxy_state_unref(pa->state);
    pthread_mutex_destroy(&pa->mu);
    free(pa);
}
