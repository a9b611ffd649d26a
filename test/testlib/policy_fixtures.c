/* test/testlib/policy_fixtures.c: see policy_fixtures.h. The reference evaluator is written
 * from issue 3's text, not from policy/eval.c: it walks the policies in (namespace, name) order
 * and asks, of each, only "does it select the workload" and "does this rule match". */
#include "test/testlib/policy_fixtures.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/base/mem.h"

int fixture_load_yaml(struct policy_set *set, const char *name, const char *yaml)
{
    return policy_set_load_buffer(set, name, (const uint8_t *)yaml, strlen(yaml));
}

int fixture_set_from_yaml(struct policy_set *set, const char *yaml)
{
    int rc = fixture_load_yaml(set, "t.yaml", yaml);
    int rc2 = policy_set_finish(set);
    return rc != WEFT_OK ? rc : rc2;
}

const char *fixture_errors(const struct policy_set *set, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < set->num_errors && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? "\n" : "", set->errors[i].text);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
    return buf;
}

void fixture_text_append(struct fixture_text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s != NULL ? t->s + t->len : NULL, t->s != NULL ? t->cap - t->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            return;
        }
        if (t->s != NULL && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = (t->cap + (size_t)n + 1) * 2;
        t->s = weft_xrealloc(t->s, t->cap);
    }
}

int fixture_workload_parse(struct fixture_workload *out, const char *spec)
{
    memset(out, 0, sizeof(*out));
    if (strlen(spec) >= sizeof(out->text)) {
        return WEFT_ELIMIT;
    }
    strcpy(out->text, spec);
    char *slash = strchr(out->text, '/');
    if (slash == NULL) {
        return WEFT_EINVAL;
    }
    *slash = '\0';
    out->w.namespace_ = out->text;
    out->w.service_account = slash + 1;
    char *p = strchr(slash + 1, ',');
    while (p != NULL) {
        *p = '\0';
        char *kv = p + 1, *eq = strchr(kv, '=');
        if (eq == NULL) {
            return WEFT_EINVAL;
        }
        if (out->w.num_labels == FIXTURE_MAX_LABELS) {
            return WEFT_ELIMIT;
        }
        *eq = '\0';
        out->keys[out->w.num_labels] = kv;
        out->values[out->w.num_labels] = eq + 1;
        out->w.num_labels++;
        p = strchr(eq + 1, ',');
    }
    out->w.label_keys = out->keys;
    out->w.label_values = out->values;
    return WEFT_OK;
}

const struct policy_authz *fixture_find_authz(const struct policy_set *set, const char *ns,
                                              const char *name)
{
    for (size_t i = 0; i < set->num_authz; i++) {
        if (strcmp(set->authz[i].namespace_, ns) == 0 && strcmp(set->authz[i].name, name) == 0) {
            return &set->authz[i];
        }
    }
    return NULL;
}

/* --- the reference evaluator -------------------------------------------------------------- */

/* The precedence of PeerAuthentication, most specific first: a selecting policy of the
 * workload's own namespace (its port-level mode for the port, then its mode), that namespace's
 * namespace-wide policy, the root namespace's selecting policy (ports, then mode), the root
 * namespace's namespace-wide policy, the mesh default. Of two policies at one level, the first
 * in (namespace, name) order. */
enum policy_mtls fixture_reference_mtls(const struct policy_set *set,
                                        const struct policy_config *cfg,
                                        const struct policy_workload *w, uint16_t port,
                                        char *source, size_t source_len)
{
    const struct policy_peerauthn *levels[4] = {NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < set->num_peerauthn; i++) {
        const struct policy_peerauthn *p = &set->peerauthn[i];
        bool own = strcmp(p->namespace_, w->namespace_) == 0;
        bool root = strcmp(p->namespace_, cfg->root_namespace) == 0;
        if ((!own && !root) ||
            !policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            continue;
        }
        int level = (own ? 0 : 2) + (p->selector.present ? 0 : 1);
        if (levels[level] == NULL) {
            levels[level] = p;
        }
    }
    for (int l = 0; l < 4; l++) {
        const struct policy_peerauthn *p = levels[l];
        if (p == NULL) {
            continue;
        }
        enum policy_mtls mode = POLICY_MTLS_UNSET;
        for (size_t i = 0; i < p->num_ports; i++) {
            if (p->ports[i].port == port) {
                mode = p->ports[i].mode;
            }
        }
        if (mode == POLICY_MTLS_UNSET) {
            mode = p->mode;
        }
        if (mode != POLICY_MTLS_UNSET) {
            snprintf(source, source_len, "%s/%s", p->namespace_, p->name);
            return mode;
        }
    }
    snprintf(source, source_len, "mesh default");
    return cfg->default_mtls;
}

struct ref_verdict {
    bool allow;
    const char *reason;
    char policy[300]; /* "-", "NS/NAME" or "mesh default" */
    long rule;        /* -1: none */
};

static void name_of(char *buf, size_t len, const struct policy_authz *p)
{
    if (p == NULL) {
        snprintf(buf, len, "-");
    } else {
        snprintf(buf, len, "%s/%s", p->namespace_, p->name);
    }
}

static bool counts(const struct policy_authz *p, enum policy_action action, bool dry_view)
{
    return p->action == action && (dry_view || p->mode == POLICY_MODE_ENFORCE);
}

/* first_match finds the first policy of |action| that selects |w| and has a rule matching the
 * connection, and that rule. */
static const struct policy_authz *first_match(const struct policy_set *set,
                                              const struct policy_config *cfg,
                                              const struct policy_workload *w,
                                              enum policy_action action, bool dry_view,
                                              const char *peer, uint16_t port, long *rule)
{
    for (size_t i = 0; i < set->num_authz; i++) {
        const struct policy_authz *p = &set->authz[i];
        if (!counts(p, action, dry_view) ||
            !policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            continue;
        }
        for (size_t r = 0; r < p->num_rules; r++) {
            if (policy_rule_matches(&p->rules[r], peer, port)) {
                *rule = (long)r;
                return p;
            }
        }
    }
    *rule = -1;
    return NULL;
}

static void ref_verdict(struct ref_verdict *v, const struct policy_set *set,
                        const struct policy_config *cfg, const struct policy_workload *w,
                        bool dry_view, const char *peer, uint16_t port)
{
    long rule;
    const struct policy_authz *p =
        first_match(set, cfg, w, POLICY_ACTION_DENY, dry_view, peer, port, &rule);
    if (p != NULL) {
        v->allow = false;
        v->reason = "deny-matched";
        name_of(v->policy, sizeof(v->policy), p);
        v->rule = rule;
        return;
    }
    p = first_match(set, cfg, w, POLICY_ACTION_ALLOW, dry_view, peer, port, &rule);
    if (p != NULL) {
        v->allow = true;
        v->reason = "allow-matched";
        name_of(v->policy, sizeof(v->policy), p);
        v->rule = rule;
        return;
    }
    v->rule = -1;
    for (size_t i = 0; i < set->num_authz; i++) {
        p = &set->authz[i];
        if (counts(p, POLICY_ACTION_ALLOW, dry_view) &&
            policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            v->allow = false;
            v->reason = "no-allow-matched";
            name_of(v->policy, sizeof(v->policy), p);
            return;
        }
    }
    v->allow = cfg->default_action != POLICY_ACTION_DENY;
    v->reason = v->allow ? "default-allow" : "default-deny";
    name_of(v->policy, sizeof(v->policy), NULL);
}

static size_t format_ref_verdict(char *buf, size_t len, const struct ref_verdict *v, bool quote)
{
    char rule[24] = "-";
    if (v->rule >= 0) {
        snprintf(rule, sizeof(rule), "%ld", v->rule);
    }
    const char *q = quote && strchr(v->policy, ' ') != NULL ? "\"" : "";
    int n = snprintf(buf, len, "%s%s%s rule=%s reason=%s", q, v->policy, q, rule, v->reason);
    return n < 0 ? 0 : (size_t)n;
}

static void reference(struct fixture_outcome *out, const struct policy_set *set,
                      const struct policy_config *cfg, const struct policy_workload *w,
                      const char *peer, uint16_t port)
{
    char *buf = out->reference;
    size_t len = sizeof(out->reference), used = 0;
    struct ref_verdict enforced, dry;
    memset(&enforced, 0, sizeof(enforced));
    memset(&dry, 0, sizeof(dry));
    char source[300];
    out->reference_mtls = fixture_reference_mtls(set, cfg, w, port, source, sizeof(source));
    if (peer == NULL && out->reference_mtls == POLICY_MTLS_STRICT) {
        snprintf(enforced.policy, sizeof(enforced.policy), "%s", source);
        enforced.rule = -1;
        enforced.reason = "mtls-strict";
        used += (size_t)snprintf(buf, len, "decision=deny policy=");
        format_ref_verdict(buf + used, len - used, &enforced, true);
        return;
    }
    ref_verdict(&enforced, set, cfg, w, false, peer, port);
    ref_verdict(&dry, set, cfg, w, true, peer, port);
    bool dry_matched = false;
    for (size_t i = 0; i < set->num_authz; i++) {
        const struct policy_authz *p = &set->authz[i];
        if (p->mode != POLICY_MODE_DRY_RUN || p->action == POLICY_ACTION_AUDIT ||
            !policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            continue;
        }
        for (size_t r = 0; r < p->num_rules; r++) {
            dry_matched |= policy_rule_matches(&p->rules[r], peer, port);
        }
    }
    used += (size_t)snprintf(buf, len, "decision=%s policy=", enforced.allow ? "allow" : "deny");
    used += format_ref_verdict(buf + used, len - used, &enforced, true);
    if (dry_matched || dry.allow != enforced.allow) {
        used += (size_t)snprintf(buf + used, len - used,
                                 " dry_run=%s dry_run_policy=", dry.allow ? "allow" : "deny");
        char tail[400];
        format_ref_verdict(tail, sizeof(tail), &dry, false);
        /* "P rule=R reason=W" becomes "P dry_run_rule=R dry_run_reason=W" */
        char *r = strstr(tail, " rule="), *w_ = strstr(tail, " reason=");
        *r = '\0';
        *w_ = '\0';
        used += (size_t)snprintf(buf + used, len - used, "%s dry_run_rule=%s dry_run_reason=%s",
                                 tail, r + 6, w_ + 8);
    }
    for (size_t i = 0; i < set->num_authz; i++) {
        const struct policy_authz *p = &set->authz[i];
        if (p->action != POLICY_ACTION_AUDIT ||
            !policy_selects(&p->selector, p->namespace_, cfg->root_namespace, w)) {
            continue;
        }
        for (size_t r = 0; r < p->num_rules; r++) {
            if (policy_rule_matches(&p->rules[r], peer, port)) {
                snprintf(buf + used, len - used, " audit=%s/%s audit_rule=%zu", p->namespace_,
                         p->name, r);
                return;
            }
        }
    }
}

int fixture_decide(struct fixture_outcome *out, const struct policy_set *set,
                   const struct policy_config *cfg, const char *workload, const char *peer_id,
                   uint16_t port)
{
    memset(out, 0, sizeof(*out));
    struct policy_config resolved;
    if (cfg == NULL) {
        policy_config_resolve(&resolved, set);
        cfg = &resolved;
    }
    struct fixture_workload fw;
    int rc = fixture_workload_parse(&fw, workload);
    if (rc != WEFT_OK) {
        return rc;
    }
    struct policy_snapshot *snap = NULL;
    rc = policy_compile(&snap, set, cfg, &fw.w);
    if (rc != WEFT_OK) {
        return rc;
    }
    struct policy_request req = {peer_id, port};
    policy_eval(snap, &req, &out->result);
    policy_result_format(out->line, sizeof(out->line), snap, &out->result);
    out->num_policies = snap->num_policies;
    policy_snapshot_free(snap);
    reference(out, set, cfg, &fw.w, peer_id, port);
    return WEFT_OK;
}
