/* Deciding one connection against a compiled snapshot. Pure: no allocation, no I/O, no lock. */
#include "policy/compile.h"

#include <stdio.h>
#include <string.h>

struct search {
    const struct policy_snapshot *snap;
    const struct policy_request *req;
    size_t peer_len;
    uint32_t best[POLICY_NUM_CLASSES]; /* the first matching clause of each class */
    uint32_t lookups;
};

static bool clause_matches(const struct policy_clause *c, const struct policy_request *req)
{
    if (c->source != NULL && !policy_source_matches(c->source, req->peer_id)) {
        return false;
    }
    if (c->num_to == 0) {
        return true;
    }
    for (size_t i = 0; i < c->num_to; i++) {
        if (policy_target_matches(&c->to[i], req->port)) {
            return true;
        }
    }
    return false;
}

/* consider checks clauses |ids| (in id order) and keeps the first match of each class. A class
 * that already has a match earlier than a candidate costs no check. */
static void consider(struct search *s, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct policy_clause *c = &s->snap->clauses[ids[i]];
        if (ids[i] >= s->best[c->klass]) {
            continue;
        }
        s->lookups++;
        if (clause_matches(c, s->req)) {
            s->best[c->klass] = ids[i];
        }
    }
}

static void probe(struct search *s, const struct policy_table *t, const char *key, size_t len)
{
    s->lookups++;
    size_t h = policy_table_hash(t, key, len) & t->mask;
    for (;;) {
        const struct policy_table_slot *slot = &t->slots[h];
        if (slot->key == NULL) {
            return;
        }
        if (slot->len == len && memcmp(slot->key, key, len) == 0) {
            consider(s, t->clauses + slot->first, slot->count);
            return;
        }
        h = (h + 1) & t->mask;
    }
}

enum policy_mtls policy_mtls_mode(const struct policy_snapshot *snap, uint16_t port,
                                  uint32_t *out_source)
{
    size_t lo = 0, hi = snap->num_mtls_ports;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (snap->mtls_ports[mid].port == port) {
            *out_source = snap->mtls_port_sources[mid];
            return snap->mtls_ports[mid].mode;
        }
        if (snap->mtls_ports[mid].port < port) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *out_source = snap->mtls_mode_source;
    return snap->mtls_mode;
}

/* first_of returns, of two matching clauses of different classes (or POLICY_NONE), the one
 * whose policy comes first in (namespace, name) order: in the dry-run view an enforced and a
 * dry-run policy are peers, and a tie names the first policy, as the enforced view does. */
static uint32_t first_of(const struct policy_snapshot *snap, uint32_t a, uint32_t b)
{
    if (a == POLICY_NONE || b == POLICY_NONE) {
        return a < b ? a : b;
    }
    const struct policy_clause *x = &snap->clauses[a], *y = &snap->clauses[b];
    if (x->policy != y->policy) {
        return x->policy < y->policy ? a : b;
    }
    return x->rule <= y->rule ? a : b;
}

/* verdict applies DESIGN.md §5's order to the first matches |deny| and |allow|. */
static void verdict(struct policy_verdict *v, const struct policy_snapshot *snap, uint32_t deny,
                    uint32_t allow, bool has_allow_policy, uint32_t first_allow_policy)
{
    v->rule = POLICY_NONE;
    v->policy = POLICY_NONE;
    if (deny != POLICY_NONE) {
        v->decision = POLICY_DENY;
        v->reason = POLICY_REASON_DENY_MATCHED;
    } else if (allow != POLICY_NONE) {
        v->decision = POLICY_ALLOW;
        v->reason = POLICY_REASON_ALLOW_MATCHED;
    } else if (has_allow_policy) {
        v->decision = POLICY_DENY;
        v->reason = POLICY_REASON_NO_ALLOW_MATCHED;
        v->policy = first_allow_policy;
        return;
    } else {
        bool deny_default = snap->config.default_action == POLICY_ACTION_DENY;
        v->decision = deny_default ? POLICY_DENY : POLICY_ALLOW;
        v->reason = deny_default ? POLICY_REASON_DEFAULT_DENY : POLICY_REASON_DEFAULT_ALLOW;
        return;
    }
    const struct policy_clause *c = &snap->clauses[deny != POLICY_NONE ? deny : allow];
    v->policy = c->policy;
    v->rule = c->rule;
}

/* first_allow_policy_any_mode is the first ALLOW policy, enforced or dry-run, for the dry-run
 * view's no-allow-matched. */
static uint32_t first_allow_policy_any_mode(const struct policy_snapshot *snap)
{
    for (size_t i = 0; i < snap->num_policies; i++) {
        if (snap->policies[i].action == POLICY_ACTION_ALLOW) {
            return (uint32_t)i;
        }
    }
    return POLICY_NONE;
}

void policy_eval(const struct policy_snapshot *snap, const struct policy_request *req,
                 struct policy_result *r)
{
    struct search s = {.snap = snap, .req = req};
    for (int k = 0; k < POLICY_NUM_CLASSES; k++) {
        s.best[k] = POLICY_NONE;
    }
    memset(r, 0, sizeof(*r));
    uint32_t mtls_source;
    r->mtls = policy_mtls_mode(snap, req->port, &mtls_source);
    r->audit_policy = r->audit_rule = POLICY_NONE;
    if (req->peer_id == NULL && r->mtls == POLICY_MTLS_STRICT) {
        /* STRICT takes mTLS only: a plaintext peer is refused before any authorization. */
        struct policy_verdict v = {POLICY_DENY, POLICY_REASON_MTLS_STRICT, mtls_source,
                                   POLICY_NONE};
        r->enforced = v;
        r->dry_run = v;
        return;
    }

    const struct policy_index *ix = snap->index;
    consider(&s, ix->generic, ix->num_generic);
    if (req->peer_id != NULL) {
        s.peer_len = strlen(req->peer_id);
        consider(&s, ix->any, ix->num_any);
        probe(&s, &ix->exact, req->peer_id, s.peer_len);
        /* Prefixes "spiffe://td/", "spiffe://td/a/", ...: one probe per '/' after the trust
         * domain, each strictly shorter than the ID. The scheme is checked first: a shorter
         * string has no byte 9 to start from. */
        if (strncmp(req->peer_id, "spiffe://", 9) == 0) {
            const char *p = strchr(req->peer_id + sizeof("spiffe://") - 1, '/');
            while (p != NULL && (size_t)(p - req->peer_id) + 1 < s.peer_len) {
                probe(&s, &ix->prefix, req->peer_id, (size_t)(p - req->peer_id) + 1);
                p = strchr(p + 1, '/');
            }
        }
        const char *ns;
        size_t ns_len = policy_peer_namespace(req->peer_id, &ns);
        if (ns_len > 0) {
            probe(&s, &ix->namespaces, ns, ns_len);
        }
    }

    verdict(&r->enforced, snap, s.best[POLICY_CLASS_DENY], s.best[POLICY_CLASS_ALLOW],
            snap->first_enforced_allow != POLICY_NONE, snap->first_enforced_allow);
    verdict(&r->dry_run, snap,
            first_of(snap, s.best[POLICY_CLASS_DENY], s.best[POLICY_CLASS_DRY_DENY]),
            first_of(snap, s.best[POLICY_CLASS_ALLOW], s.best[POLICY_CLASS_DRY_ALLOW]),
            snap->first_enforced_allow != POLICY_NONE || snap->has_dry_run_allow,
            first_allow_policy_any_mode(snap));
    r->dry_run_matched = s.best[POLICY_CLASS_DRY_DENY] != POLICY_NONE ||
                         s.best[POLICY_CLASS_DRY_ALLOW] != POLICY_NONE;
    if (s.best[POLICY_CLASS_AUDIT] != POLICY_NONE) {
        r->audit_policy = snap->clauses[s.best[POLICY_CLASS_AUDIT]].policy;
        r->audit_rule = snap->clauses[s.best[POLICY_CLASS_AUDIT]].rule;
    }
    r->lookups = s.lookups;
}

/* --- text --------------------------------------------------------------------------------- */

const char *policy_reason_str(enum policy_reason reason)
{
    switch (reason) {
    case POLICY_REASON_ALLOW_MATCHED:
        return "allow-matched";
    case POLICY_REASON_DENY_MATCHED:
        return "deny-matched";
    case POLICY_REASON_NO_ALLOW_MATCHED:
        return "no-allow-matched";
    case POLICY_REASON_DEFAULT_ALLOW:
        return "default-allow";
    case POLICY_REASON_DEFAULT_DENY:
        return "default-deny";
    case POLICY_REASON_MTLS_STRICT:
        return "mtls-strict";
    case POLICY_REASON_NONE:
        break;
    }
    return "none";
}

const char *policy_action_str(enum policy_action action)
{
    return action == POLICY_ACTION_DENY    ? "DENY"
           : action == POLICY_ACTION_AUDIT ? "AUDIT"
                                           : "ALLOW";
}

const char *policy_mode_str(enum policy_mode mode)
{
    return mode == POLICY_MODE_DRY_RUN ? "dry-run" : "enforce";
}

const char *policy_mtls_str(enum policy_mtls mode)
{
    return mode == POLICY_MTLS_STRICT       ? "STRICT"
           : mode == POLICY_MTLS_PERMISSIVE ? "PERMISSIVE"
                                            : "UNSET";
}

void policy_verdict_name(char *buf, size_t len, const struct policy_snapshot *snap,
                         const struct policy_verdict *v)
{
    if (v->policy == POLICY_NONE) {
        snprintf(buf, len, "-");
    } else if (v->reason == POLICY_REASON_MTLS_STRICT) {
        snprintf(buf, len, "%s", snap->mtls_sources[v->policy]);
    } else {
        snprintf(buf, len, "%s/%s", snap->policies[v->policy].namespace_,
                 snap->policies[v->policy].name);
    }
}

int policy_verdict_format(char *buf, size_t len, const struct policy_snapshot *snap,
                          const struct policy_verdict *v)
{
    char name[600], rule[16];
    policy_verdict_name(name, sizeof(name), snap, v);
    if (v->rule == POLICY_NONE) {
        snprintf(rule, sizeof(rule), "-");
    } else {
        snprintf(rule, sizeof(rule), "%u", v->rule);
    }
    /* "mesh default" is two words; logfmt values with spaces are quoted. */
    const char *q = strchr(name, ' ') != NULL ? "\"" : "";
    return snprintf(buf, len, "decision=%s policy=%s%s%s rule=%s reason=%s",
                    v->decision == POLICY_ALLOW ? "allow" : "deny", q, name, q, rule,
                    policy_reason_str(v->reason));
}

int policy_result_format(char *buf, size_t len, const struct policy_snapshot *snap,
                         const struct policy_result *r)
{
    int n = policy_verdict_format(buf, len, snap, &r->enforced);
    if (n < 0 || (size_t)n >= len) {
        return n;
    }
    size_t used = (size_t)n;
    if (r->dry_run_matched || r->dry_run.decision != r->enforced.decision) {
        char name[600], rule[16];
        policy_verdict_name(name, sizeof(name), snap, &r->dry_run);
        if (r->dry_run.rule == POLICY_NONE) {
            snprintf(rule, sizeof(rule), "-");
        } else {
            snprintf(rule, sizeof(rule), "%u", r->dry_run.rule);
        }
        n = snprintf(buf + used, len - used,
                     " dry_run=%s dry_run_policy=%s dry_run_rule=%s dry_run_reason=%s",
                     r->dry_run.decision == POLICY_ALLOW ? "allow" : "deny", name, rule,
                     policy_reason_str(r->dry_run.reason));
        if (n < 0 || (size_t)n >= len - used) {
            return n < 0 ? n : (int)(used + (size_t)n);
        }
        used += (size_t)n;
    }
    if (r->audit_policy != POLICY_NONE) {
        n = snprintf(buf + used, len - used, " audit=%s/%s audit_rule=%u",
                     snap->policies[r->audit_policy].namespace_,
                     snap->policies[r->audit_policy].name, r->audit_rule);
        if (n < 0) {
            return n;
        }
        used += (size_t)n;
    }
    return (int)used;
}
