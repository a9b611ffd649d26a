/* Compiling a policy set for one workload: keep what applies, order it, index it. */
#include "policy/compile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "lib/base/mem.h"

/* --- copies into the snapshot's arena ----------------------------------------------------- */

static const char **copy_strs(struct weft_arena *a, const char *const *s, size_t n)
{
    const char **out = weft_arena_array(a, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = weft_arena_strdup(a, s[i]);
    }
    return out;
}

static struct policy_principal *copy_principals(struct weft_arena *a,
                                                const struct policy_principal *p, size_t n)
{
    struct policy_principal *out = weft_arena_array(a, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        out[i] = p[i];
        out[i].value = weft_arena_strndup(a, p[i].value, p[i].len);
    }
    return out;
}

static struct policy_port_range *copy_ports(struct weft_arena *a, const struct policy_port_range *p,
                                            size_t n)
{
    struct policy_port_range *out = weft_arena_array(a, n, sizeof(*out));
    if (n > 0) {
        memcpy(out, p, n * sizeof(*out));
    }
    return out;
}

const struct policy_rule *policy_copy_rules(struct weft_arena *a, const struct policy_rule *rules,
                                            size_t n)
{
    struct policy_rule *out = weft_arena_array(a, n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const struct policy_rule *r = &rules[i];
        struct policy_source *from = weft_arena_array(a, r->num_from, sizeof(*from));
        for (size_t j = 0; j < r->num_from; j++) {
            const struct policy_source *s = &r->from[j];
            from[j].principals = copy_principals(a, s->principals, s->num_principals);
            from[j].num_principals = s->num_principals;
            from[j].not_principals = copy_principals(a, s->not_principals, s->num_not_principals);
            from[j].num_not_principals = s->num_not_principals;
            from[j].namespaces = copy_strs(a, s->namespaces, s->num_namespaces);
            from[j].num_namespaces = s->num_namespaces;
            from[j].not_namespaces = copy_strs(a, s->not_namespaces, s->num_not_namespaces);
            from[j].num_not_namespaces = s->num_not_namespaces;
        }
        struct policy_target *to = weft_arena_array(a, r->num_to, sizeof(*to));
        for (size_t j = 0; j < r->num_to; j++) {
            to[j].ports = copy_ports(a, r->to[j].ports, r->to[j].num_ports);
            to[j].num_ports = r->to[j].num_ports;
            to[j].not_ports = copy_ports(a, r->to[j].not_ports, r->to[j].num_not_ports);
            to[j].num_not_ports = r->to[j].num_not_ports;
        }
        out[i].from = from;
        out[i].num_from = r->num_from;
        out[i].to = to;
        out[i].num_to = r->num_to;
        out[i].loc.file = r->loc.file != NULL ? weft_arena_strdup(a, r->loc.file) : NULL;
        out[i].loc.line = r->loc.line;
        out[i].loc.column = r->loc.column;
    }
    return out;
}

/* --- the index ---------------------------------------------------------------------------- */

struct posting {
    const char *key;
    size_t len;
    uint32_t clause;
};

static int cmp_posting(const void *a, const void *b)
{
    const struct posting *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0) {
        return c;
    }
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return x->clause < y->clause ? -1 : x->clause > y->clause;
}

struct postings {
    struct posting *items;
    size_t num, cap;
};

static void postings_add(struct postings *p, const char *key, size_t len, uint32_t clause)
{
    if (p->num == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->items = weft_xrealloc(p->items, p->cap * sizeof(*p->items));
    }
    p->items[p->num++] = (struct posting){key, len, clause};
}

uint64_t policy_table_hash(const struct policy_table *t, const char *key, size_t len)
{
    return SIPHASH_24(t->sipkey, (const uint8_t *)key, len);
}

/* table_build groups |p| by key into |t|: one slot per distinct key, its clauses in order. */
static void table_build(struct weft_arena *a, struct policy_table *t, struct postings *p)
{
    if (p->num > 1) {
        qsort(p->items, p->num, sizeof(*p->items), cmp_posting);
    }
    size_t keys = 0;
    for (size_t i = 0; i < p->num; i++) {
        keys += i == 0 || p->items[i].len != p->items[i - 1].len ||
                memcmp(p->items[i].key, p->items[i - 1].key, p->items[i].len) != 0;
    }
    size_t cap = 8;
    while (cap < keys * 2) {
        cap *= 2;
    }
    RAND_bytes((uint8_t *)t->sipkey, sizeof(t->sipkey));
    t->mask = cap - 1;
    t->slots = weft_arena_array(a, cap, sizeof(*t->slots));
    t->clauses = weft_arena_array(a, p->num, sizeof(*t->clauses));
    for (size_t i = 0; i < p->num;) {
        size_t j = i;
        while (j < p->num && p->items[j].len == p->items[i].len &&
               memcmp(p->items[j].key, p->items[i].key, p->items[i].len) == 0) {
            t->clauses[j] = p->items[j].clause;
            j++;
        }
        /* linear probing; the table is at most half full */
        size_t h = policy_table_hash(t, p->items[i].key, p->items[i].len) & t->mask;
        while (t->slots[h].key != NULL) {
            h = (h + 1) & t->mask;
        }
        t->slots[h].key = p->items[i].key;
        t->slots[h].len = p->items[i].len;
        t->slots[h].first = (uint32_t)i;
        t->slots[h].count = (uint32_t)(j - i);
        i = j;
    }
    free(p->items);
    memset(p, 0, sizeof(*p));
}

static uint32_t *list_build(struct weft_arena *a, const uint32_t *ids, size_t n)
{
    uint32_t *out = weft_arena_array(a, n, sizeof(*out));
    memcpy(out, ids, n * sizeof(*out));
    return out;
}

/* index_clause files clause |c| under what its `from` entry asks of the peer. */
static void index_clause(const struct policy_clause *c, uint32_t id, struct postings *exact,
                         struct postings *prefix, struct postings *ns, uint32_t *any,
                         size_t *num_any, uint32_t *generic, size_t *num_generic)
{
    const struct policy_source *s = c->source;
    if (s == NULL || (s->num_principals == 0 && s->num_namespaces == 0)) {
        generic[(*num_generic)++] = id; /* any peer, or only "not" conditions */
        return;
    }
    if (s->num_principals > 0) {
        for (size_t i = 0; i < s->num_principals; i++) {
            if (s->principals[i].kind == POLICY_PRINCIPAL_ANY) {
                any[(*num_any)++] = id; /* "*" covers every other entry of the list */
                return;
            }
        }
        for (size_t i = 0; i < s->num_principals; i++) {
            const struct policy_principal *p = &s->principals[i];
            postings_add(p->kind == POLICY_PRINCIPAL_EXACT ? exact : prefix, p->value, p->len, id);
        }
        return;
    }
    for (size_t i = 0; i < s->num_namespaces; i++) {
        postings_add(ns, s->namespaces[i], strlen(s->namespaces[i]), id);
    }
}

/* --- compile ------------------------------------------------------------------------------ */

static enum policy_clause_class clause_class(const struct policy_snapshot_policy *p)
{
    if (p->action == POLICY_ACTION_AUDIT) {
        return POLICY_CLASS_AUDIT;
    }
    if (p->mode == POLICY_MODE_DRY_RUN) {
        return p->action == POLICY_ACTION_DENY ? POLICY_CLASS_DRY_DENY : POLICY_CLASS_DRY_ALLOW;
    }
    return p->action == POLICY_ACTION_DENY ? POLICY_CLASS_DENY : POLICY_CLASS_ALLOW;
}

static uint32_t add_mtls_source(struct policy_snapshot *snap, const char *ns, const char *name)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", ns, name);
    snap->mtls_sources[snap->num_mtls_sources] = weft_arena_strdup(&snap->arena, buf);
    return (uint32_t)snap->num_mtls_sources++;
}

/* compile_mtls finds the workload's modes: port-level and mode of a selecting policy of its own
 * namespace, then its namespace-wide policy, then the root namespace's (selecting, then wide),
 * then the mesh default. Of two policies at one level, the first in name order counts. */
static void compile_mtls(struct policy_snapshot *snap, const struct policy_set *set,
                         const struct policy_config *cfg, const struct policy_workload *w)
{
    snap->mtls_sources = weft_arena_array(&snap->arena, 5, sizeof(char *));
    snap->mtls_sources[0] = "mesh default";
    snap->num_mtls_sources = 1;
    snap->mtls_mode = cfg->default_mtls;
    snap->mtls_mode_source = 0;
    const struct policy_peerauthn *levels[4] = {NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < set->num_peerauthn; i++) {
        const struct policy_peerauthn *p = &set->peerauthn[i];
        bool own = strcmp(p->namespace_, w->namespace_) == 0;
        bool root = strcmp(p->namespace_, cfg->root_namespace) == 0;
        if (!(own || root) ||
            !policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            continue;
        }
        int level = own ? (p->selector.present ? 0 : 1) : (p->selector.present ? 2 : 3);
        if (levels[level] == NULL) {
            levels[level] = p;
        }
    }
    /* Port-level modes come from the most specific selecting policy that has any, unless a
     * more specific level sets a mode: that mode then covers every port (a root-namespace
     * port-level mode does not override the workload's own namespace-wide one). */
    for (int l = 0; l < 4; l++) {
        const struct policy_peerauthn *p = levels[l];
        if (p != NULL && p->num_ports == 0 && p->mode != POLICY_MTLS_UNSET) {
            break;
        }
        if (p == NULL || p->num_ports == 0) {
            continue;
        }
        uint32_t src = add_mtls_source(snap, p->namespace_, p->name);
        snap->mtls_ports = weft_arena_array(&snap->arena, p->num_ports, sizeof(*snap->mtls_ports));
        snap->mtls_port_sources = weft_arena_array(&snap->arena, p->num_ports, sizeof(uint32_t));
        for (size_t i = 0; i < p->num_ports; i++) {
            snap->mtls_ports[i] = p->ports[i];
            snap->mtls_port_sources[i] = src;
        }
        snap->num_mtls_ports = p->num_ports;
        break;
    }
    for (int l = 0; l < 4; l++) {
        const struct policy_peerauthn *p = levels[l];
        if (p != NULL && p->mode != POLICY_MTLS_UNSET) {
            snap->mtls_mode = p->mode;
            snap->mtls_mode_source = add_mtls_source(snap, p->namespace_, p->name);
            break;
        }
    }
    /* A port-level UNSET inherits the workload's mode. */
    for (size_t i = 0; i < snap->num_mtls_ports; i++) {
        if (snap->mtls_ports[i].mode == POLICY_MTLS_UNSET) {
            snap->mtls_ports[i].mode = snap->mtls_mode;
            snap->mtls_port_sources[i] = snap->mtls_mode_source;
        }
    }
}

int policy_compile(struct policy_snapshot **out, const struct policy_set *set,
                   const struct policy_config *cfg, const struct policy_workload *w)
{
    struct policy_snapshot *snap = weft_xcalloc(1, sizeof(*snap));
    struct weft_arena *a = &snap->arena;
    weft_arena_init(a);
    snap->config.root_namespace = weft_arena_strdup(a, cfg->root_namespace);
    snap->config.default_action = cfg->default_action;
    snap->config.default_mtls = cfg->default_mtls;
    snap->workload.namespace_ = weft_arena_strdup(a, w->namespace_);
    snap->workload.service_account = weft_arena_strdup(a, w->service_account);
    snap->workload.label_keys = copy_strs(a, w->label_keys, w->num_labels);
    snap->workload.label_values = copy_strs(a, w->label_values, w->num_labels);
    snap->workload.num_labels = w->num_labels;
    snap->first_enforced_allow = POLICY_NONE;

    /* The policies that select the workload, in the set's (namespace, name) order. */
    snap->policies = weft_arena_array(a, set->num_authz, sizeof(*snap->policies));
    size_t num_clauses = 0;
    for (size_t i = 0; i < set->num_authz; i++) {
        const struct policy_authz *p = &set->authz[i];
        if (!policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            continue;
        }
        struct policy_snapshot_policy *sp = &snap->policies[snap->num_policies];
        sp->namespace_ = weft_arena_strdup(a, p->namespace_);
        sp->name = weft_arena_strdup(a, p->name);
        sp->action = p->action;
        sp->mode = p->mode;
        sp->close_grace_s = p->close_grace_s;
        sp->rules = policy_copy_rules(a, p->rules, p->num_rules);
        sp->num_rules = p->num_rules;
        if (p->action == POLICY_ACTION_ALLOW && p->mode == POLICY_MODE_ENFORCE &&
            snap->first_enforced_allow == POLICY_NONE) {
            snap->first_enforced_allow = (uint32_t)snap->num_policies;
        }
        if (p->action == POLICY_ACTION_ALLOW && p->mode == POLICY_MODE_DRY_RUN) {
            snap->has_dry_run_allow = true;
        }
        for (size_t r = 0; r < p->num_rules; r++) {
            num_clauses += p->rules[r].num_from > 0 ? p->rules[r].num_from : 1;
        }
        snap->num_policies++;
    }
    compile_mtls(snap, set, cfg, w);
    policy_snapshot_index(snap, num_clauses);
    *out = snap;
    return WEFT_OK;
}

void policy_snapshot_index(struct policy_snapshot *snap, size_t num_clauses)
{
    struct weft_arena *a = &snap->arena;
    /* Clauses in precedence order: class, then policy, rule and `from` entry. Their ids are
     * their positions, so "the first match" is "the smallest id". */
    snap->clauses = weft_arena_array(a, num_clauses, sizeof(*snap->clauses));
    snap->num_clauses = 0;
    for (int k = 0; k < POLICY_NUM_CLASSES; k++) {
        for (size_t i = 0; i < snap->num_policies; i++) {
            const struct policy_snapshot_policy *p = &snap->policies[i];
            if ((int)clause_class(p) != k) {
                continue;
            }
            for (size_t r = 0; r < p->num_rules; r++) {
                const struct policy_rule *rule = &p->rules[r];
                size_t n = rule->num_from > 0 ? rule->num_from : 1;
                for (size_t f = 0; f < n; f++) {
                    struct policy_clause *c = &snap->clauses[snap->num_clauses++];
                    c->klass = (enum policy_clause_class)k;
                    c->policy = (uint32_t)i;
                    c->rule = (uint32_t)r;
                    c->source = rule->num_from > 0 ? &rule->from[f] : NULL;
                    c->to = rule->to;
                    c->num_to = rule->num_to;
                }
            }
        }
    }

    struct policy_index *ix = weft_arena_alloc(a, sizeof(*ix));
    struct postings exact = {0}, prefix = {0}, ns = {0};
    uint32_t *any = weft_xcalloc(snap->num_clauses + 1, sizeof(uint32_t));
    uint32_t *generic = weft_xcalloc(snap->num_clauses + 1, sizeof(uint32_t));
    size_t num_any = 0, num_generic = 0;
    for (size_t i = 0; i < snap->num_clauses; i++) {
        index_clause(&snap->clauses[i], (uint32_t)i, &exact, &prefix, &ns, any, &num_any, generic,
                     &num_generic);
    }
    table_build(a, &ix->exact, &exact);
    table_build(a, &ix->prefix, &prefix);
    table_build(a, &ix->namespaces, &ns);
    ix->any = list_build(a, any, num_any);
    ix->num_any = num_any;
    ix->generic = list_build(a, generic, num_generic);
    ix->num_generic = num_generic;
    free(any);
    free(generic);
    snap->index = ix;
}

void policy_snapshot_free(struct policy_snapshot *snap)
{
    if (snap == NULL) {
        return;
    }
    weft_arena_cleanup(&snap->arena);
    free(snap);
}
