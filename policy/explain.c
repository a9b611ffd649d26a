/* Explaining a decision, policy by policy, for people: `weftctl policy explain`. It walks the
 * parsed set with the same matching functions the compiled evaluator uses (match.c), and prints
 * the compiled evaluator's own verdict, so the two cannot drift apart unnoticed. */
#include "policy/explain.h"

#include <string.h>

#include "policy/internal.h"

static void print_principals(FILE *out, const struct policy_principal *p, size_t n)
{
    fputc('[', out);
    for (size_t i = 0; i < n; i++) {
        const char *sep = i ? ", " : "";
        if (p[i].kind == POLICY_PRINCIPAL_ANY) {
            fprintf(out, "%s*", sep);
        } else if (p[i].kind == POLICY_PRINCIPAL_PREFIX) {
            fprintf(out, "%s%s*", sep, p[i].value);
        } else {
            fprintf(out, "%s%s", sep, p[i].value);
        }
    }
    fputc(']', out);
}

static void print_strs(FILE *out, const char *const *s, size_t n)
{
    fputc('[', out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s%s", i ? ", " : "", s[i]);
    }
    fputc(']', out);
}

static void print_ports(FILE *out, const struct policy_port_range *r, size_t n)
{
    fputc('[', out);
    for (size_t i = 0; i < n; i++) {
        if (r[i].lo == r[i].hi) {
            fprintf(out, "%s%u", i ? ", " : "", r[i].lo);
        } else {
            fprintf(out, "%s%u-%u", i ? ", " : "", r[i].lo, r[i].hi);
        }
    }
    fputc(']', out);
}

/* explain_source prints why `from` entry |src| does or does not match. */
static bool explain_source(FILE *out, const struct policy_source *src, const char *peer)
{
    if (policy_source_matches(src, peer)) {
        fprintf(out, "matches");
        return true;
    }
    if (peer == NULL) {
        fprintf(out, "an unauthenticated peer matches no principals or namespaces, and no \"not\" "
                     "condition");
        return false;
    }
    struct policy_source one;
    const char *ns = NULL;
    size_t ns_len = policy_peer_namespace(peer, &ns);
    memset(&one, 0, sizeof(one));
    one.principals = src->principals;
    one.num_principals = src->num_principals;
    if (src->num_principals && !policy_source_matches(&one, peer)) {
        fprintf(out, "principals: the peer is none of ");
        print_principals(out, src->principals, src->num_principals);
        return false;
    }
    memset(&one, 0, sizeof(one));
    one.not_principals = src->not_principals;
    one.num_not_principals = src->num_not_principals;
    if (src->num_not_principals && !policy_source_matches(&one, peer)) {
        fprintf(out, "notPrincipals: the peer is one of ");
        print_principals(out, src->not_principals, src->num_not_principals);
        return false;
    }
    memset(&one, 0, sizeof(one));
    one.namespaces = src->namespaces;
    one.num_namespaces = src->num_namespaces;
    if (src->num_namespaces && !policy_source_matches(&one, peer)) {
        if (ns_len == 0) {
            fprintf(out, "namespaces: the peer's ID is not of the form spiffe://TD/ns/NS/sa/SA");
        } else {
            fprintf(out, "namespaces: the peer's namespace \"%.*s\" is not in ", (int)ns_len, ns);
            print_strs(out, src->namespaces, src->num_namespaces);
        }
        return false;
    }
    fprintf(out, "notNamespaces: the peer's namespace \"%.*s\" is in ", (int)ns_len, ns);
    print_strs(out, src->not_namespaces, src->num_not_namespaces);
    return false;
}

static bool explain_target(FILE *out, const struct policy_target *dst, uint16_t port)
{
    if (policy_target_matches(dst, port)) {
        fprintf(out, "matches");
        return true;
    }
    struct policy_target one = {dst->ports, dst->num_ports, NULL, 0};
    if (dst->num_ports && !policy_target_matches(&one, port)) {
        fprintf(out, "ports: %u is not in ", port);
        print_ports(out, dst->ports, dst->num_ports);
    } else {
        fprintf(out, "notPorts: %u is in ", port);
        print_ports(out, dst->not_ports, dst->num_not_ports);
    }
    return false;
}

static void explain_rule(FILE *out, const struct policy_rule *rule, size_t index,
                         const struct policy_request *req)
{
    bool match = policy_rule_matches(rule, req->peer_id, req->port);
    fprintf(out, "    rule %zu (line %u): %s\n", index, rule->loc.line,
            match ? "MATCHES" : "does not match");
    if (rule->num_from == 0) {
        fprintf(out, "      from: absent (any peer)\n");
    }
    for (size_t i = 0; i < rule->num_from; i++) {
        fprintf(out, "      from[%zu]: ", i);
        explain_source(out, &rule->from[i], req->peer_id);
        fputc('\n', out);
    }
    if (rule->num_to == 0) {
        fprintf(out, "      to: absent (any port)\n");
    }
    for (size_t i = 0; i < rule->num_to; i++) {
        fprintf(out, "      to[%zu]: ", i);
        explain_target(out, &rule->to[i], req->port);
        fputc('\n', out);
    }
}

/* explain_selection says why |sel| of a policy in |ns| does or does not pick |w|. */
static bool explain_selection(FILE *out, const struct policy_selector *sel, const char *ns,
                              const struct policy_config *cfg, const struct policy_workload *w)
{
    bool root = strcmp(ns, cfg->root_namespace) == 0;
    if (strcmp(ns, w->namespace_) != 0 && !root) {
        fprintf(out, "does not apply: it is in namespace %s, the workload in %s", ns,
                w->namespace_);
        return false;
    }
    if (policy_selects(sel, ns, cfg->root_namespace, w)) {
        fprintf(out, "applies%s%s", root ? " (root namespace: every namespace)" : "",
                sel->present ? ", its selector picks the workload" : ", no selector");
        return true;
    }
    size_t missing = policy_selector_missing_label(sel, w);
    if (missing < sel->num_labels) {
        fprintf(out, "does not apply: the workload lacks label %s=%s", sel->label_keys[missing],
                sel->label_values[missing]);
        return false;
    }
    fprintf(out, "does not apply: service account %s is not in ", w->service_account);
    print_strs(out, sel->service_accounts, sel->num_service_accounts);
    return false;
}

void policy_explain(FILE *out, const struct policy_set *set, const struct policy_config *cfg,
                    const struct policy_workload *w, const struct policy_request *req,
                    const struct policy_snapshot *snap, const struct policy_result *r)
{
    char line[2048];
    policy_result_format(line, sizeof(line), snap, r);
    fprintf(out, "%s\n\n", line);

    uint32_t src;
    enum policy_mtls mtls = policy_mtls_mode(snap, req->port, &src);
    fprintf(out, "request: from %s to %s/%s",
            req->peer_id != NULL ? req->peer_id : "an unauthenticated peer", w->namespace_,
            w->service_account);
    for (size_t i = 0; i < w->num_labels; i++) {
        fprintf(out, "%s%s=%s", i ? "," : " (", w->label_keys[i], w->label_values[i]);
    }
    fprintf(out, "%s port %u\n", w->num_labels ? ")" : "", req->port);
    fprintf(out,
            "mesh:    root namespace %s, default action %s, mTLS on this port %s (set by %s)\n",
            cfg->root_namespace, policy_action_str(cfg->default_action), policy_mtls_str(mtls),
            snap->mtls_sources[src]);
    fprintf(out, "order:   an enforced DENY that matches denies; else, if an enforced ALLOW "
                 "applies, one must match; else the default. AUDIT and dry-run never decide.\n");

    fprintf(out, "\nAuthorizationPolicies (%zu):\n", set->num_authz);
    for (size_t i = 0; i < set->num_authz; i++) {
        const struct policy_authz *p = &set->authz[i];
        fprintf(out, "  %s/%s  %s %s  ", p->namespace_, p->name, policy_action_str(p->action),
                policy_mode_str(p->mode));
        if (p->close_grace_s > 0) {
            fprintf(out, "closeGraceSeconds %u  ", p->close_grace_s);
        }
        fprintf(out, "(%s:%u)\n    ", p->loc.file, p->loc.line);
        bool applies = explain_selection(out, &p->selector, p->namespace_, cfg, w);
        fputc('\n', out);
        if (!applies) {
            continue;
        }
        if (p->num_rules == 0) {
            fprintf(out, "    no rules: it matches nothing%s\n",
                    p->action == POLICY_ACTION_ALLOW && p->mode == POLICY_MODE_ENFORCE
                        ? " (so this ALLOW policy lets nothing in)"
                        : "");
        }
        for (size_t r_i = 0; r_i < p->num_rules; r_i++) {
            explain_rule(out, &p->rules[r_i], r_i, req);
        }
    }
    if (set->num_peerauthn > 0) {
        fprintf(out, "\nPeerAuthentications (%zu):\n", set->num_peerauthn);
        for (size_t i = 0; i < set->num_peerauthn; i++) {
            const struct policy_peerauthn *p = &set->peerauthn[i];
            fprintf(out, "  %s/%s  mode %s%s  (%s:%u)\n    ", p->namespace_, p->name,
                    policy_mtls_str(p->mode), p->num_ports ? " + port-level modes" : "",
                    p->loc.file, p->loc.line);
            explain_selection(out, &p->selector, p->namespace_, cfg, w);
            fputc('\n', out);
        }
    }
}
