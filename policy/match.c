/* The meaning of each piece of a policy, on its own: selectors, principals, `from` and `to`
 * entries, rules. The compiled evaluator (eval.c) and the explainer (explain.c) both use these,
 * so the two can never disagree about what a rule means. */
#include "policy/internal.h"

#include <string.h>

size_t policy_selector_missing_label(const struct policy_selector *sel,
                                     const struct policy_workload *w)
{
    for (size_t i = 0; i < sel->num_labels; i++) {
        bool found = false;
        for (size_t j = 0; j < w->num_labels && !found; j++) {
            found = strcmp(sel->label_keys[i], w->label_keys[j]) == 0 &&
                    strcmp(sel->label_values[i], w->label_values[j]) == 0;
        }
        if (!found) {
            return i;
        }
    }
    return sel->num_labels;
}

bool policy_selects(const struct policy_selector *sel, const char *ns, const char *root_ns,
                    const struct policy_workload *w)
{
    if (strcmp(ns, w->namespace_) != 0 && strcmp(ns, root_ns) != 0) {
        return false;
    }
    if (!sel->present) {
        return true;
    }
    if (policy_selector_missing_label(sel, w) < sel->num_labels) {
        return false;
    }
    if (sel->num_service_accounts == 0) {
        return true;
    }
    for (size_t i = 0; i < sel->num_service_accounts; i++) {
        if (strcmp(sel->service_accounts[i], w->service_account) == 0) {
            return true;
        }
    }
    return false;
}

size_t policy_peer_namespace(const char *peer_id, const char **out)
{
    /* spiffe://<td>/ns/<ns>/sa/<sa>: exactly four path segments, the first "ns", the third
     * "sa". */
    static const char scheme[] = "spiffe://";
    if (strncmp(peer_id, scheme, sizeof(scheme) - 1) != 0) {
        return 0;
    }
    const char *p = strchr(peer_id + sizeof(scheme) - 1, '/');
    if (p == NULL || strncmp(p, "/ns/", 4) != 0) {
        return 0;
    }
    const char *ns = p + 4, *end = strchr(ns, '/');
    if (end == NULL || end == ns || strncmp(end, "/sa/", 4) != 0) {
        return 0;
    }
    const char *sa = end + 4;
    if (*sa == '\0' || strchr(sa, '/') != NULL) {
        return 0;
    }
    *out = ns;
    return (size_t)(end - ns);
}

bool policy_principal_matches(const struct policy_principal *p, const char *peer_id,
                              size_t peer_len)
{
    switch (p->kind) {
    case POLICY_PRINCIPAL_ANY:
        return true;
    case POLICY_PRINCIPAL_EXACT:
        return p->len == peer_len && memcmp(p->value, peer_id, peer_len) == 0;
    case POLICY_PRINCIPAL_PREFIX:
        /* strictly below: the prefix keeps its trailing '/', and something must follow it */
        return peer_len > p->len && memcmp(p->value, peer_id, p->len) == 0;
    }
    return false;
}

static bool any_principal(const struct policy_principal *ps, size_t num, const char *peer_id)
{
    size_t len = strlen(peer_id);
    for (size_t i = 0; i < num; i++) {
        if (policy_principal_matches(&ps[i], peer_id, len)) {
            return true;
        }
    }
    return false;
}

static bool any_namespace(const char *const *list, size_t num, const char *ns, size_t ns_len)
{
    for (size_t i = 0; i < num; i++) {
        if (ns_len > 0 && strlen(list[i]) == ns_len && memcmp(list[i], ns, ns_len) == 0) {
            return true;
        }
    }
    return false;
}

bool policy_source_matches(const struct policy_source *src, const char *peer_id)
{
    bool has_any = src->num_principals || src->num_not_principals || src->num_namespaces ||
                   src->num_not_namespaces;
    if (peer_id == NULL) {
        /* An unauthenticated peer matches no principals or namespaces entry, and the "not"
         * forms are false for it too: only an entry with none of the four fields matches. */
        return !has_any;
    }
    const char *ns = NULL;
    size_t ns_len = policy_peer_namespace(peer_id, &ns);
    if (src->num_principals && !any_principal(src->principals, src->num_principals, peer_id)) {
        return false;
    }
    if (src->num_not_principals &&
        any_principal(src->not_principals, src->num_not_principals, peer_id)) {
        return false;
    }
    if (src->num_namespaces && !any_namespace(src->namespaces, src->num_namespaces, ns, ns_len)) {
        return false;
    }
    if (src->num_not_namespaces &&
        any_namespace(src->not_namespaces, src->num_not_namespaces, ns, ns_len)) {
        return false;
    }
    return true;
}

static bool any_port(const struct policy_port_range *r, size_t num, uint16_t port)
{
    for (size_t i = 0; i < num; i++) {
        if (port >= r[i].lo && port <= r[i].hi) {
            return true;
        }
    }
    return false;
}

bool policy_target_matches(const struct policy_target *dst, uint16_t port)
{
    if (dst->num_ports && !any_port(dst->ports, dst->num_ports, port)) {
        return false;
    }
    return !(dst->num_not_ports && any_port(dst->not_ports, dst->num_not_ports, port));
}

bool policy_rule_matches(const struct policy_rule *rule, const char *peer_id, uint16_t port)
{
    bool from = rule->num_from == 0;
    for (size_t i = 0; i < rule->num_from && !from; i++) {
        from = policy_source_matches(&rule->from[i], peer_id);
    }
    bool to = rule->num_to == 0;
    for (size_t i = 0; i < rule->num_to && !to; i++) {
        to = policy_target_matches(&rule->to[i], port);
    }
    return from && to;
}
