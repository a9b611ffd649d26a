/* A compiled snapshot on the wire (proto/policy.proto). Decoding trusts nothing: every field is
 * checked as the YAML loader checks it, then the index is rebuilt here. The protobuf-c structs
 * never leave this file. (STYLE.md puts such adapters in proto/; this one lives beside the
 * snapshot because it must build the snapshot's private index.) */
#include "policy/compile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"
#include "lib/spiffe/id.h"
#include "proto/policy.pb-c.h"

#define FORMAT 1
#define MAX_MTLS_SOURCES 8

/* --- encode ------------------------------------------------------------------------------- */

static Weft__Policy__V1__Principal **enc_principals(struct weft_arena *a,
                                                    const struct policy_principal *p, size_t n)
{
    Weft__Policy__V1__Principal **out = weft_arena_array(a, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = weft_arena_alloc(a, sizeof(**out));
        weft__policy__v1__principal__init(out[i]);
        out[i]->kind = (Weft__Policy__V1__Principal__Kind)p[i].kind;
        out[i]->value = (char *)p[i].value;
    }
    return out;
}

static Weft__Policy__V1__PortRange **enc_ports(struct weft_arena *a,
                                               const struct policy_port_range *p, size_t n)
{
    Weft__Policy__V1__PortRange **out = weft_arena_array(a, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = weft_arena_alloc(a, sizeof(**out));
        weft__policy__v1__port_range__init(out[i]);
        out[i]->lo = p[i].lo;
        out[i]->hi = p[i].hi;
    }
    return out;
}

static Weft__Policy__V1__Rule *enc_rule(struct weft_arena *a, const struct policy_rule *r)
{
    Weft__Policy__V1__Rule *out = weft_arena_alloc(a, sizeof(*out));
    weft__policy__v1__rule__init(out);
    out->n_from = r->num_from;
    out->from = weft_arena_array(a, r->num_from, sizeof(*out->from));
    for (size_t i = 0; i < r->num_from; i++) {
        const struct policy_source *s = &r->from[i];
        Weft__Policy__V1__Source *src = weft_arena_alloc(a, sizeof(*src));
        weft__policy__v1__source__init(src);
        src->n_principals = s->num_principals;
        src->principals = enc_principals(a, s->principals, s->num_principals);
        src->n_not_principals = s->num_not_principals;
        src->not_principals = enc_principals(a, s->not_principals, s->num_not_principals);
        src->n_namespaces = s->num_namespaces;
        src->namespaces = (char **)s->namespaces;
        src->n_not_namespaces = s->num_not_namespaces;
        src->not_namespaces = (char **)s->not_namespaces;
        out->from[i] = src;
    }
    out->n_to = r->num_to;
    out->to = weft_arena_array(a, r->num_to, sizeof(*out->to));
    for (size_t i = 0; i < r->num_to; i++) {
        Weft__Policy__V1__Target *t = weft_arena_alloc(a, sizeof(*t));
        weft__policy__v1__target__init(t);
        t->n_ports = r->to[i].num_ports;
        t->ports = enc_ports(a, r->to[i].ports, r->to[i].num_ports);
        t->n_not_ports = r->to[i].num_not_ports;
        t->not_ports = enc_ports(a, r->to[i].not_ports, r->to[i].num_not_ports);
        out->to[i] = t;
    }
    return out;
}

int policy_snapshot_encode(uint8_t **out, size_t *out_len, const struct policy_snapshot *snap)
{
    struct weft_arena a;
    weft_arena_init(&a);
    Weft__Policy__V1__Snapshot m = WEFT__POLICY__V1__SNAPSHOT__INIT;
    Weft__Policy__V1__Workload w = WEFT__POLICY__V1__WORKLOAD__INIT;
    m.format = FORMAT;
    w.namespace_ = (char *)snap->workload.namespace_;
    w.service_account = (char *)snap->workload.service_account;
    w.n_labels = snap->workload.num_labels;
    w.labels = weft_arena_array(&a, w.n_labels, sizeof(*w.labels));
    for (size_t i = 0; i < w.n_labels; i++) {
        w.labels[i] = weft_arena_alloc(&a, sizeof(*w.labels[i]));
        weft__policy__v1__label__init(w.labels[i]);
        w.labels[i]->key = (char *)snap->workload.label_keys[i];
        w.labels[i]->value = (char *)snap->workload.label_values[i];
    }
    m.workload = &w;
    m.root_namespace = (char *)snap->config.root_namespace;
    m.default_action = (Weft__Policy__V1__Action)snap->config.default_action;
    m.default_mtls = (Weft__Policy__V1__Mtls)snap->config.default_mtls;
    m.n_policies = snap->num_policies;
    m.policies = weft_arena_array(&a, m.n_policies, sizeof(*m.policies));
    for (size_t i = 0; i < snap->num_policies; i++) {
        const struct policy_snapshot_policy *p = &snap->policies[i];
        Weft__Policy__V1__Policy *pp = weft_arena_alloc(&a, sizeof(*pp));
        weft__policy__v1__policy__init(pp);
        pp->namespace_ = (char *)p->namespace_;
        pp->name = (char *)p->name;
        pp->action = (Weft__Policy__V1__Action)p->action;
        pp->mode = (Weft__Policy__V1__Mode)p->mode;
        pp->close_grace_s = p->close_grace_s;
        pp->n_rules = p->num_rules;
        pp->rules = weft_arena_array(&a, p->num_rules, sizeof(*pp->rules));
        for (size_t r = 0; r < p->num_rules; r++) {
            pp->rules[r] = enc_rule(&a, &p->rules[r]);
        }
        m.policies[i] = pp;
    }
    m.mtls_mode = (Weft__Policy__V1__Mtls)snap->mtls_mode;
    m.mtls_mode_source = snap->mtls_mode_source;
    m.n_mtls_ports = snap->num_mtls_ports;
    m.mtls_ports = weft_arena_array(&a, m.n_mtls_ports, sizeof(*m.mtls_ports));
    for (size_t i = 0; i < snap->num_mtls_ports; i++) {
        Weft__Policy__V1__PortMtls *pm = weft_arena_alloc(&a, sizeof(*pm));
        weft__policy__v1__port_mtls__init(pm);
        pm->port = snap->mtls_ports[i].port;
        pm->mode = (Weft__Policy__V1__Mtls)snap->mtls_ports[i].mode;
        pm->source = snap->mtls_port_sources[i];
        m.mtls_ports[i] = pm;
    }
    m.n_mtls_sources = snap->num_mtls_sources;
    m.mtls_sources = (char **)snap->mtls_sources;
    size_t len = weft__policy__v1__snapshot__get_packed_size(&m);
    *out = weft_xmalloc(len);
    *out_len = weft__policy__v1__snapshot__pack(&m, *out);
    weft_arena_cleanup(&a);
    return *out_len == len ? WEFT_OK : WEFT_EINTERNAL;
}

/* --- decode ------------------------------------------------------------------------------- */

struct decoder {
    struct policy_snapshot *snap;
    char *why;
    size_t why_len;
};

static bool bad(struct decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool bad(struct decoder *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, d->why_len, fmt, ap);
    va_end(ap);
    return false;
}

static bool dec_principals(struct decoder *d, Weft__Policy__V1__Principal **in, size_t n,
                           const struct policy_principal **out, size_t *out_num)
{
    if (n > POLICY_MAX_LIST) {
        return bad(d, "%zu principals, over the limit of %d", n, POLICY_MAX_LIST);
    }
    struct policy_principal *p = weft_arena_array(&d->snap->arena, n, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        const char *v = in[i]->value;
        size_t len = strlen(v);
        struct spiffe_id id;
        switch (in[i]->kind) {
        case WEFT__POLICY__V1__PRINCIPAL__KIND__ANY:
            if (len != 0) {
                return bad(d, "an ANY principal with a value");
            }
            break;
        case WEFT__POLICY__V1__PRINCIPAL__KIND__EXACT:
            if (spiffe_id_parse(&id, v, len, NULL) != WEFT_OK || spiffe_id_is_td(&id)) {
                return bad(d, "principal \"%.128s\" is not a SPIFFE ID with a path", v);
            }
            break;
        case WEFT__POLICY__V1__PRINCIPAL__KIND__PREFIX:
            if (len < 2 || v[len - 1] != '/' || spiffe_id_parse(&id, v, len - 1, NULL) != WEFT_OK) {
                return bad(d, "principal prefix \"%.128s\" is not a SPIFFE ID and a '/'", v);
            }
            break;
        default:
            return bad(d, "unknown principal kind %d", (int)in[i]->kind);
        }
        p[i].kind = (enum policy_principal_kind)in[i]->kind;
        p[i].value = weft_arena_strndup(&d->snap->arena, v, len);
        p[i].len = len;
    }
    *out = p;
    *out_num = n;
    return true;
}

static bool dec_namespaces(struct decoder *d, char **in, size_t n, const char *const **out,
                           size_t *out_num)
{
    if (n > POLICY_MAX_LIST) {
        return bad(d, "%zu namespaces, over the limit of %d", n, POLICY_MAX_LIST);
    }
    const char **s = weft_arena_array(&d->snap->arena, n, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        if (!policy_is_dns_label(in[i])) {
            return bad(d, "\"%.64s\" is not a namespace name", in[i]);
        }
        s[i] = weft_arena_strdup(&d->snap->arena, in[i]);
    }
    *out = s;
    *out_num = n;
    return true;
}

static bool dec_ports(struct decoder *d, Weft__Policy__V1__PortRange **in, size_t n,
                      const struct policy_port_range **out, size_t *out_num)
{
    if (n > POLICY_MAX_LIST) {
        return bad(d, "%zu ports, over the limit of %d", n, POLICY_MAX_LIST);
    }
    struct policy_port_range *p = weft_arena_array(&d->snap->arena, n, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        if (in[i]->lo < 1 || in[i]->hi > 65535 || in[i]->lo > in[i]->hi) {
            return bad(d, "port range %u-%u is not within 1-65535 in order", in[i]->lo, in[i]->hi);
        }
        p[i].lo = (uint16_t)in[i]->lo;
        p[i].hi = (uint16_t)in[i]->hi;
    }
    *out = p;
    *out_num = n;
    return true;
}

static bool dec_rule(struct decoder *d, const Weft__Policy__V1__Rule *in, struct policy_rule *out)
{
    struct weft_arena *a = &d->snap->arena;
    if (in->n_from > POLICY_MAX_LIST || in->n_to > POLICY_MAX_LIST) {
        return bad(d, "a rule with more than %d from or to entries", POLICY_MAX_LIST);
    }
    struct policy_source *from = weft_arena_array(a, in->n_from, sizeof(*from));
    for (size_t i = 0; i < in->n_from; i++) {
        const Weft__Policy__V1__Source *s = in->from[i];
        if (!dec_principals(d, s->principals, s->n_principals, &from[i].principals,
                            &from[i].num_principals) ||
            !dec_principals(d, s->not_principals, s->n_not_principals, &from[i].not_principals,
                            &from[i].num_not_principals) ||
            !dec_namespaces(d, s->namespaces, s->n_namespaces, &from[i].namespaces,
                            &from[i].num_namespaces) ||
            !dec_namespaces(d, s->not_namespaces, s->n_not_namespaces, &from[i].not_namespaces,
                            &from[i].num_not_namespaces)) {
            return false;
        }
    }
    struct policy_target *to = weft_arena_array(a, in->n_to, sizeof(*to));
    for (size_t i = 0; i < in->n_to; i++) {
        if (!dec_ports(d, in->to[i]->ports, in->to[i]->n_ports, &to[i].ports, &to[i].num_ports) ||
            !dec_ports(d, in->to[i]->not_ports, in->to[i]->n_not_ports, &to[i].not_ports,
                       &to[i].num_not_ports)) {
            return false;
        }
    }
    out->from = from;
    out->num_from = in->n_from;
    out->to = to;
    out->num_to = in->n_to;
    return true;
}

static bool valid_mtls(int m) { return m == POLICY_MTLS_PERMISSIVE || m == POLICY_MTLS_STRICT; }

static bool dec_snapshot(struct decoder *d, const Weft__Policy__V1__Snapshot *m,
                         size_t *out_num_clauses)
{
    struct policy_snapshot *snap = d->snap;
    struct weft_arena *a = &snap->arena;
    if (m->format != FORMAT) {
        return bad(d, "format %u, expected %d", m->format, FORMAT);
    }
    const Weft__Policy__V1__Workload *w = m->workload;
    if (w == NULL || w->n_labels > POLICY_MAX_LIST) {
        return bad(d, "no workload, or too many labels");
    }
    const char **keys = weft_arena_array(a, w->n_labels, sizeof(char *));
    const char **values = weft_arena_array(a, w->n_labels, sizeof(char *));
    for (size_t i = 0; i < w->n_labels; i++) {
        keys[i] = weft_arena_strdup(a, w->labels[i]->key);
        values[i] = weft_arena_strdup(a, w->labels[i]->value);
    }
    snap->workload.namespace_ = weft_arena_strdup(a, w->namespace_);
    snap->workload.service_account = weft_arena_strdup(a, w->service_account);
    snap->workload.label_keys = keys;
    snap->workload.label_values = values;
    snap->workload.num_labels = w->n_labels;
    if (!policy_is_valid_workload(&snap->workload)) {
        return bad(d, "the workload's names are not valid Kubernetes names");
    }
    if (!policy_is_dns_label(m->root_namespace) ||
        (m->default_action != WEFT__POLICY__V1__ACTION__ALLOW &&
         m->default_action != WEFT__POLICY__V1__ACTION__DENY) ||
        !valid_mtls(m->default_mtls) || !valid_mtls(m->mtls_mode)) {
        return bad(d, "bad mesh settings (root namespace, default action or mTLS modes)");
    }
    snap->config.root_namespace = weft_arena_strdup(a, m->root_namespace);
    snap->config.default_action = (enum policy_action)m->default_action;
    snap->config.default_mtls = (enum policy_mtls)m->default_mtls;

    if (m->n_mtls_sources == 0 || m->n_mtls_sources > MAX_MTLS_SOURCES ||
        m->mtls_mode_source >= m->n_mtls_sources || m->n_mtls_ports > POLICY_MAX_LIST) {
        return bad(d, "bad mTLS sources");
    }
    snap->mtls_sources = weft_arena_array(a, m->n_mtls_sources, sizeof(char *));
    for (size_t i = 0; i < m->n_mtls_sources; i++) {
        if (strlen(m->mtls_sources[i]) > 512) {
            return bad(d, "an mTLS source name over 512 bytes");
        }
        snap->mtls_sources[i] = weft_arena_strdup(a, m->mtls_sources[i]);
    }
    snap->num_mtls_sources = m->n_mtls_sources;
    snap->mtls_mode = (enum policy_mtls)m->mtls_mode;
    snap->mtls_mode_source = m->mtls_mode_source;
    snap->mtls_ports = weft_arena_array(a, m->n_mtls_ports, sizeof(*snap->mtls_ports));
    snap->mtls_port_sources = weft_arena_array(a, m->n_mtls_ports, sizeof(uint32_t));
    for (size_t i = 0; i < m->n_mtls_ports; i++) {
        const Weft__Policy__V1__PortMtls *pm = m->mtls_ports[i];
        if (pm->port < 1 || pm->port > 65535 || !valid_mtls(pm->mode) ||
            pm->source >= m->n_mtls_sources || (i > 0 && pm->port <= m->mtls_ports[i - 1]->port)) {
            return bad(d, "bad port-level mTLS entry %zu", i);
        }
        snap->mtls_ports[i].port = (uint16_t)pm->port;
        snap->mtls_ports[i].mode = (enum policy_mtls)pm->mode;
        snap->mtls_port_sources[i] = pm->source;
    }
    snap->num_mtls_ports = m->n_mtls_ports;

    if (m->n_policies > POLICY_MAX_OBJECTS) {
        return bad(d, "%zu policies, over the limit of %d", m->n_policies, POLICY_MAX_OBJECTS);
    }
    snap->policies = weft_arena_array(a, m->n_policies, sizeof(*snap->policies));
    snap->first_enforced_allow = POLICY_NONE;
    size_t num_clauses = 0;
    for (size_t i = 0; i < m->n_policies; i++) {
        const Weft__Policy__V1__Policy *p = m->policies[i];
        if (!policy_is_dns_label(p->namespace_) || !policy_is_dns_subdomain(p->name) ||
            p->action < 0 || p->action > WEFT__POLICY__V1__ACTION__AUDIT || p->mode < 0 ||
            p->mode > WEFT__POLICY__V1__MODE__DRY_RUN || p->n_rules > POLICY_MAX_LIST) {
            return bad(d, "policy %zu has a bad name, action, mode or rule count", i);
        }
        if (p->close_grace_s > POLICY_MAX_CLOSE_GRACE_S) {
            return bad(d, "policy %zu has a close grace of %u s, over the limit of %u", i,
                       p->close_grace_s, POLICY_MAX_CLOSE_GRACE_S);
        }
        if (i > 0) {
            const Weft__Policy__V1__Policy *q = m->policies[i - 1];
            int c = strcmp(q->namespace_, p->namespace_);
            if (c > 0 || (c == 0 && strcmp(q->name, p->name) >= 0)) {
                return bad(d, "policies are not in namespace/name order at %zu", i);
            }
        }
        struct policy_snapshot_policy *sp = &snap->policies[i];
        sp->namespace_ = weft_arena_strdup(a, p->namespace_);
        sp->name = weft_arena_strdup(a, p->name);
        sp->action = (enum policy_action)p->action;
        sp->mode = (enum policy_mode)p->mode;
        sp->close_grace_s = p->close_grace_s;
        struct policy_rule *rules = weft_arena_array(a, p->n_rules, sizeof(*rules));
        for (size_t r = 0; r < p->n_rules; r++) {
            if (!dec_rule(d, p->rules[r], &rules[r])) {
                return false;
            }
            num_clauses += rules[r].num_from > 0 ? rules[r].num_from : 1;
        }
        sp->rules = rules;
        sp->num_rules = p->n_rules;
        if (sp->action == POLICY_ACTION_ALLOW && sp->mode == POLICY_MODE_ENFORCE &&
            snap->first_enforced_allow == POLICY_NONE) {
            snap->first_enforced_allow = (uint32_t)i;
        }
        snap->has_dry_run_allow |=
            sp->action == POLICY_ACTION_ALLOW && sp->mode == POLICY_MODE_DRY_RUN;
    }
    snap->num_policies = m->n_policies;
    *out_num_clauses = num_clauses;
    return true;
}

int policy_snapshot_decode(struct policy_snapshot **out, const uint8_t *data, size_t len, char *why,
                           size_t why_len)
{
    *out = NULL;
    struct decoder d = {.why = why, .why_len = why_len};
    if (why_len > 0) {
        why[0] = '\0';
    }
    if (len > POLICY_SNAPSHOT_MAX_BYTES) {
        bad(&d, "snapshot is %zu bytes, over the limit of %u", len, POLICY_SNAPSHOT_MAX_BYTES);
        return WEFT_ELIMIT;
    }
    Weft__Policy__V1__Snapshot *m = weft__policy__v1__snapshot__unpack(NULL, len, data);
    if (m == NULL) {
        bad(&d, "not a weft.policy.v1.Snapshot protobuf message");
        return WEFT_EPROTO;
    }
    d.snap = weft_xcalloc(1, sizeof(*d.snap));
    weft_arena_init(&d.snap->arena);
    size_t num_clauses = 0;
    bool ok = dec_snapshot(&d, m, &num_clauses);
    weft__policy__v1__snapshot__free_unpacked(m, NULL);
    if (!ok) {
        policy_snapshot_free(d.snap);
        return WEFT_EPROTO;
    }
    policy_snapshot_index(d.snap, num_clauses);
    *out = d.snap;
    return WEFT_OK;
}
