/* Loading policies: YAML (libyaml's document API) into validated structures. Every error names
 * the file, line and column, the field path, and what is wrong; unknown fields are errors,
 * because a typo must never silently widen access. */
#include "policy/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "lib/base/file.h"
#include "lib/base/mem.h"
#include "lib/spiffe/id.h"

/* struct loader walks one YAML document. */
struct loader {
    struct policy_set *set;
    const char *file; /* arena copy */
    yaml_document_t *doc;
    size_t nodes_visited;
    bool budget_reported;
    int num_errors; /* in the current object */
    char path[512];
    size_t path_len;
};

/* One entry of a mapping's field table. */
struct field {
    const char *name;
    yaml_node_t *value; /* filled by read_fields */
    struct policy_loc key_loc;
};

static void loc_of(struct loader *ld, const yaml_node_t *n, struct policy_loc *out);
static void fail(struct loader *ld, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- errors and paths --------------------------------------------------------------------- */

void policy_set_add_error(struct policy_set *set, const struct policy_loc *loc, const char *path,
                          const char *fmt, ...)
{
    if (set->num_errors >= POLICY_MAX_ERRORS) {
        set->num_errors_dropped++;
        return;
    }
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char text[1400];
    if (path != NULL && path[0] != '\0') {
        snprintf(text, sizeof(text), "%s:%u:%u: %s: %s", loc->file, loc->line, loc->column, path,
                 msg);
    } else {
        snprintf(text, sizeof(text), "%s:%u:%u: %s", loc->file, loc->line, loc->column, msg);
    }
    if (set->errors == NULL) {
        set->errors = weft_arena_array(&set->arena, POLICY_MAX_ERRORS, sizeof(*set->errors));
    }
    set->errors[set->num_errors++].text = weft_arena_strdup(&set->arena, text);
}

static void loc_of(struct loader *ld, const yaml_node_t *n, struct policy_loc *out)
{
    out->file = ld->file;
    out->line = n != NULL ? (unsigned)n->start_mark.line + 1 : 1;
    out->column = n != NULL ? (unsigned)n->start_mark.column + 1 : 1;
}

static void fail(struct loader *ld, const yaml_node_t *n, const char *fmt, ...)
{
    struct policy_loc loc;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    loc_of(ld, n, &loc);
    policy_set_add_error(ld->set, &loc, ld->path, "%s", msg);
    ld->num_errors++;
}

static size_t path_push_field(struct loader *ld, const char *name)
{
    size_t saved = ld->path_len;
    int n = snprintf(ld->path + ld->path_len, sizeof(ld->path) - ld->path_len, "%s%s",
                     ld->path_len > 0 ? "." : "", name);
    if (n > 0 && (size_t)n < sizeof(ld->path) - ld->path_len) {
        ld->path_len += (size_t)n;
    }
    return saved;
}

static size_t path_push_index(struct loader *ld, size_t i)
{
    size_t saved = ld->path_len;
    int n = snprintf(ld->path + ld->path_len, sizeof(ld->path) - ld->path_len, "[%zu]", i);
    if (n > 0 && (size_t)n < sizeof(ld->path) - ld->path_len) {
        ld->path_len += (size_t)n;
    }
    return saved;
}

static size_t path_push_key(struct loader *ld, const char *key)
{
    size_t saved = ld->path_len;
    int n = snprintf(ld->path + ld->path_len, sizeof(ld->path) - ld->path_len, "[\"%.64s\"]", key);
    if (n > 0 && (size_t)n < sizeof(ld->path) - ld->path_len) {
        ld->path_len += (size_t)n;
    }
    return saved;
}

static void path_pop(struct loader *ld, size_t saved)
{
    ld->path_len = saved;
    ld->path[saved] = '\0';
}

/* --- nodes -------------------------------------------------------------------------------- */

/* node fetches node |i|, charging the visit budget that stops alias bombs (one anchored node
 * referenced again and again costs a visit each time). */
static yaml_node_t *node(struct loader *ld, int i)
{
    if (++ld->nodes_visited > POLICY_MAX_NODES) {
        if (!ld->budget_reported) {
            ld->budget_reported = true;
            fail(ld, yaml_document_get_root_node(ld->doc),
                 "document is too large or too deeply aliased (over %d nodes)", POLICY_MAX_NODES);
        }
        return NULL;
    }
    return yaml_document_get_node(ld->doc, i);
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

/* is_null reports whether |n| is YAML's null (an empty plain scalar, ~ or null). */
static bool is_null(const yaml_node_t *n)
{
    if (n == NULL) {
        return true;
    }
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* want_string returns the text of a scalar node, or NULL after reporting what it was instead. */
static const char *want_string(struct loader *ld, const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        fail(ld, n, "expected a string, found %s", is_null(n) ? "null" : node_kind(n));
        return NULL;
    }
    if (strlen(scalar(n)) != n->data.scalar.length) {
        fail(ld, n, "a NUL byte inside a string");
        return NULL;
    }
    return scalar(n);
}

static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) {
        return 99;
    }
    size_t d[41][41];
    for (size_t i = 0; i <= la; i++) {
        d[i][0] = i;
    }
    for (size_t j = 0; j <= lb; j++) {
        d[0][j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return d[la][lb];
}

/* read_fields matches the keys of mapping |n| against |fields| (terminated by a NULL name).
 * Unknown and duplicate keys are errors; |ignored| lists keys accepted and not read. Returns
 * false when |n| is not a mapping. */
static bool read_fields(struct loader *ld, yaml_node_t *n, struct field *fields,
                        const char *const *ignored)
{
    for (struct field *f = fields; f->name != NULL; f++) {
        f->value = NULL;
    }
    if (n->type != YAML_MAPPING_NODE) {
        fail(ld, n, "expected a mapping, found %s", is_null(n) ? "null" : node_kind(n));
        return false;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
        if (k == NULL || v == NULL) {
            return false;
        }
        if (k->type != YAML_SCALAR_NODE) {
            fail(ld, k, "a mapping key must be a string, found %s", node_kind(k));
            continue;
        }
        const char *key = scalar(k);
        struct field *match = NULL;
        for (struct field *f = fields; f->name != NULL; f++) {
            if (strcmp(f->name, key) == 0) {
                match = f;
            }
        }
        if (match != NULL) {
            if (match->value != NULL) {
                size_t saved = path_push_field(ld, key);
                fail(ld, k, "field appears twice (first at line %u)", match->key_loc.line);
                path_pop(ld, saved);
                continue;
            }
            match->value = v;
            loc_of(ld, k, &match->key_loc);
            continue;
        }
        bool skip = false;
        for (const char *const *i = ignored; i != NULL && *i != NULL; i++) {
            skip |= strcmp(*i, key) == 0;
        }
        if (skip) {
            continue;
        }
        const char *best = NULL;
        size_t best_d = 3;
        for (struct field *f = fields; f->name != NULL; f++) {
            size_t d = levenshtein(key, f->name);
            if (d < best_d) {
                best_d = d;
                best = f->name;
            }
        }
        size_t saved = path_push_field(ld, key);
        if (best != NULL) {
            fail(ld, k, "unknown field \"%.64s\" (did you mean \"%s\"?)", key, best);
        } else {
            char known[256] = "";
            for (struct field *f = fields; f->name != NULL; f++) {
                size_t l = strlen(known);
                snprintf(known + l, sizeof(known) - l, "%s%s", l ? ", " : "", f->name);
            }
            fail(ld, k, "unknown field \"%.64s\" (known here: %s)", key, known);
        }
        path_pop(ld, saved);
    }
    return true;
}

static yaml_node_t *field(struct field *fields, const char *name)
{
    for (struct field *f = fields; f->name != NULL; f++) {
        if (strcmp(f->name, name) == 0) {
            return is_null(f->value) ? NULL : f->value;
        }
    }
    return NULL;
}

/* seq_items returns the items of a sequence (null is an empty one), or -1 after an error. */
static long seq_len(struct loader *ld, yaml_node_t *n)
{
    if (n == NULL || is_null(n)) {
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        fail(ld, n, "expected a list, found %s", node_kind(n));
        return -1;
    }
    long len = n->data.sequence.items.top - n->data.sequence.items.start;
    if (len > POLICY_MAX_LIST) {
        fail(ld, n, "a list of %ld entries, over the limit of %d", len, POLICY_MAX_LIST);
        return -1;
    }
    return len;
}

/* --- names and values --------------------------------------------------------------------- */

bool policy_is_dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i < n - 1)) {
            return false;
        }
    }
    return true;
}

bool policy_is_dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253) {
        return false;
    }
    char label[254];
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t l = dot != NULL ? (size_t)(dot - p) : strlen(p);
        memcpy(label, p, l);
        label[l] = '\0';
        if (!policy_is_dns_label(label)) {
            return false;
        }
        if (dot == NULL) {
            return true;
        }
        p = dot + 1;
    }
}

/* Kubernetes label keys: an optional DNS subdomain prefix and '/', then a name of up to 63
 * characters [A-Za-z0-9._-] that starts and ends alphanumeric. Values: the same name, or "". */
static bool is_label_name(const char *s, bool allow_empty)
{
    size_t n = strlen(s);
    if (n == 0) {
        return allow_empty;
    }
    if (n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i < n - 1)) {
            return false;
        }
    }
    return true;
}

static bool is_label_key(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL) {
        return is_label_name(s, false);
    }
    char prefix[254];
    size_t l = (size_t)(slash - s);
    if (l == 0 || l > 253) {
        return false;
    }
    memcpy(prefix, s, l);
    prefix[l] = '\0';
    return policy_is_dns_subdomain(prefix) && is_label_name(slash + 1, false);
}

bool policy_is_valid_namespace(const char *s) { return policy_is_dns_label(s); }

bool policy_is_valid_workload(const struct policy_workload *w)
{
    if (!policy_is_dns_label(w->namespace_) || !policy_is_dns_subdomain(w->service_account)) {
        return false;
    }
    for (size_t i = 0; i < w->num_labels; i++) {
        if (!is_label_key(w->label_keys[i]) || !is_label_name(w->label_values[i], true)) {
            return false;
        }
    }
    return true;
}

static const char *copy(struct loader *ld, const char *s)
{
    return weft_arena_strdup(&ld->set->arena, s);
}

/* parse_port reads "N" (1-65535). */
static bool parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) {
        return false;
    }
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535 || (len > 1 && s[0] == '0')) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

static bool read_port_range(struct loader *ld, yaml_node_t *n, struct policy_port_range *out)
{
    const char *s = want_string(ld, n);
    if (s == NULL) {
        return false;
    }
    const char *dash = strchr(s, '-');
    size_t len = strlen(s);
    if (dash == NULL) {
        if (!parse_port(s, len, &out->lo)) {
            fail(ld, n, "not a port: \"%.64s\" (a decimal port 1-65535, or a range \"N-M\")", s);
            return false;
        }
        out->hi = out->lo;
        return true;
    }
    if (!parse_port(s, (size_t)(dash - s), &out->lo) ||
        !parse_port(dash + 1, len - (size_t)(dash - s) - 1, &out->hi)) {
        fail(ld, n,
             "not a port range: \"%.64s\" (two decimal ports 1-65535 joined by '-', as in "
             "\"9000-9100\")",
             s);
        return false;
    }
    if (out->lo > out->hi) {
        fail(ld, n, "port range \"%.64s\" is reversed: %u is above %u", s, out->lo, out->hi);
        return false;
    }
    return true;
}

static bool read_principal(struct loader *ld, yaml_node_t *n, struct policy_principal *out)
{
    const char *s = want_string(ld, n);
    if (s == NULL) {
        return false;
    }
    size_t len = strlen(s);
    if (strcmp(s, "*") == 0) {
        out->kind = POLICY_PRINCIPAL_ANY;
        out->value = "";
        out->len = 0;
        return true;
    }
    bool prefix = len >= 2 && strcmp(s + len - 2, "/*") == 0;
    size_t base_len = prefix ? len - 2 : len;
    const char *star = memchr(s, '*', base_len);
    if (star != NULL || (prefix && strcmp(s, "spiffe://*") == 0)) {
        fail(ld, n,
             "misplaced wildcard in \"%.128s\": '*' may only be the whole entry (any "
             "authenticated peer) or a trailing \"/*\" (any ID below a path)",
             s);
        return false;
    }
    struct spiffe_id id;
    struct spiffe_why why;
    if (spiffe_id_parse(&id, s, base_len, &why) != WEFT_OK) {
        fail(ld, n, "not a SPIFFE ID: \"%.128s\": %s", s, why.msg);
        return false;
    }
    if (!prefix && spiffe_id_is_td(&id)) {
        fail(ld, n,
             "\"%.128s\" names a trust domain, and no workload has that ID; write \"%.128s/*\" "
             "for every ID of the trust domain",
             s, s);
        return false;
    }
    out->kind = prefix ? POLICY_PRINCIPAL_PREFIX : POLICY_PRINCIPAL_EXACT;
    out->len = prefix ? base_len + 1 : len;
    out->value = weft_arena_strndup(&ld->set->arena, s, out->len); /* prefix keeps its '/' */
    return true;
}

static bool read_namespace_value(struct loader *ld, yaml_node_t *n, const char **out)
{
    const char *s = want_string(ld, n);
    if (s == NULL) {
        return false;
    }
    if (!policy_is_dns_label(s)) {
        fail(ld, n,
             "not a namespace name: \"%.64s\" (lowercase letters, digits and '-', at most 63; "
             "no wildcards)",
             s);
        return false;
    }
    *out = copy(ld, s);
    return true;
}

/* read_list reads the sequence |n| (null: empty) with |one| for each item into an arena array
 * of |size|-byte elements. */
static bool read_list(struct loader *ld, yaml_node_t *n, size_t size,
                      bool (*one)(struct loader *, yaml_node_t *, void *), void **out,
                      size_t *out_num)
{
    long len = seq_len(ld, n);
    *out = NULL;
    *out_num = 0;
    if (len <= 0) {
        return len == 0;
    }
    char *items = weft_arena_array(&ld->set->arena, (size_t)len, size);
    bool ok = true;
    for (long i = 0; i < len; i++) {
        yaml_node_t *item = node(ld, n->data.sequence.items.start[i]);
        if (item == NULL) {
            return false;
        }
        size_t saved = path_push_index(ld, (size_t)i);
        ok &= one(ld, item, items + (size_t)i * size);
        path_pop(ld, saved);
    }
    *out = items;
    *out_num = (size_t)len;
    return ok;
}

static bool one_principal(struct loader *ld, yaml_node_t *n, void *out)
{
    return read_principal(ld, n, out);
}

static bool one_namespace(struct loader *ld, yaml_node_t *n, void *out)
{
    return read_namespace_value(ld, n, out);
}

static bool one_port(struct loader *ld, yaml_node_t *n, void *out)
{
    return read_port_range(ld, n, out);
}

static bool one_service_account(struct loader *ld, yaml_node_t *n, void *out)
{
    const char *s = want_string(ld, n);
    if (s == NULL) {
        return false;
    }
    if (!policy_is_dns_subdomain(s)) {
        fail(ld, n, "not a service account name: \"%.64s\"", s);
        return false;
    }
    *(const char **)out = copy(ld, s);
    return true;
}

/* read_list_field reads fields[name] as a list, with the path extended by the field name. */
static bool read_list_field(struct loader *ld, struct field *fields, const char *name, size_t size,
                            bool (*one)(struct loader *, yaml_node_t *, void *), const void **out,
                            size_t *out_num)
{
    size_t saved = path_push_field(ld, name);
    void *items;
    bool ok = read_list(ld, field(fields, name), size, one, &items, out_num);
    *out = items;
    path_pop(ld, saved);
    return ok;
}

/* --- spec parts --------------------------------------------------------------------------- */

static bool one_source(struct loader *ld, yaml_node_t *n, void *out)
{
    struct policy_source *src = out;
    struct field f[] = {{.name = "principals"},
                        {.name = "notPrincipals"},
                        {.name = "namespaces"},
                        {.name = "notNamespaces"},
                        {.name = NULL}};
    if (!read_fields(ld, n, f, NULL)) {
        return false;
    }
    bool ok = read_list_field(ld, f, "principals", sizeof(struct policy_principal), one_principal,
                              (const void **)&src->principals, &src->num_principals);
    ok &= read_list_field(ld, f, "notPrincipals", sizeof(struct policy_principal), one_principal,
                          (const void **)&src->not_principals, &src->num_not_principals);
    ok &= read_list_field(ld, f, "namespaces", sizeof(char *), one_namespace,
                          (const void **)&src->namespaces, &src->num_namespaces);
    ok &= read_list_field(ld, f, "notNamespaces", sizeof(char *), one_namespace,
                          (const void **)&src->not_namespaces, &src->num_not_namespaces);
    return ok;
}

static bool one_target(struct loader *ld, yaml_node_t *n, void *out)
{
    struct policy_target *dst = out;
    struct field f[] = {{.name = "ports"}, {.name = "notPorts"}, {.name = NULL}};
    if (!read_fields(ld, n, f, NULL)) {
        return false;
    }
    bool ok = read_list_field(ld, f, "ports", sizeof(struct policy_port_range), one_port,
                              (const void **)&dst->ports, &dst->num_ports);
    ok &= read_list_field(ld, f, "notPorts", sizeof(struct policy_port_range), one_port,
                          (const void **)&dst->not_ports, &dst->num_not_ports);
    return ok;
}

static bool one_rule(struct loader *ld, yaml_node_t *n, void *out)
{
    struct policy_rule *rule = out;
    struct field f[] = {{.name = "from"}, {.name = "to"}, {.name = NULL}};
    loc_of(ld, n, &rule->loc);
    if (!read_fields(ld, n, f, NULL)) {
        return false;
    }
    bool ok = read_list_field(ld, f, "from", sizeof(struct policy_source), one_source,
                              (const void **)&rule->from, &rule->num_from);
    ok &= read_list_field(ld, f, "to", sizeof(struct policy_target), one_target,
                          (const void **)&rule->to, &rule->num_to);
    return ok;
}

static int cmp_labels(const void *a, const void *b)
{
    return strcmp(((const char *const *)a)[0], ((const char *const *)b)[0]);
}

static bool read_selector(struct loader *ld, yaml_node_t *n, struct policy_selector *sel)
{
    memset(sel, 0, sizeof(*sel));
    if (n == NULL) {
        return true;
    }
    size_t saved = path_push_field(ld, "selector");
    struct field f[] = {{.name = "matchLabels"}, {.name = "serviceAccounts"}, {.name = NULL}};
    bool ok = read_fields(ld, n, f, NULL);
    sel->present = true;
    yaml_node_t *labels = ok ? field(f, "matchLabels") : NULL;
    if (labels != NULL) {
        size_t saved_l = path_push_field(ld, "matchLabels");
        if (labels->type != YAML_MAPPING_NODE) {
            fail(ld, labels, "expected a mapping of label keys to values, found %s",
                 node_kind(labels));
            ok = false;
        } else {
            long num = labels->data.mapping.pairs.top - labels->data.mapping.pairs.start;
            if (num > POLICY_MAX_LIST) {
                fail(ld, labels, "%ld labels, over the limit of %d", num, POLICY_MAX_LIST);
                num = 0;
                ok = false;
            }
            /* keys and values interleaved, so one sort keeps each pair together */
            const char **kv = weft_arena_array(&ld->set->arena, (size_t)num * 2, sizeof(char *));
            size_t got = 0;
            for (long i = 0; i < num; i++) {
                yaml_node_pair_t *p = &labels->data.mapping.pairs.start[i];
                yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
                if (k == NULL || v == NULL) {
                    ok = false;
                    break;
                }
                const char *key = k->type == YAML_SCALAR_NODE ? scalar(k) : "";
                size_t saved_k = path_push_key(ld, key);
                const char *val = v->type == YAML_SCALAR_NODE && !is_null(v) ? scalar(v)
                                  : is_null(v)                               ? ""
                                                                             : NULL;
                if (k->type != YAML_SCALAR_NODE || !is_label_key(key)) {
                    fail(ld, k, "not a label key: \"%.64s\"", key);
                    ok = false;
                } else if (val == NULL || !is_label_name(val, true)) {
                    fail(ld, v, "not a label value: %s",
                         val == NULL ? "expected a string" : "at most 63 of [A-Za-z0-9._-]");
                    ok = false;
                } else {
                    bool dup = false;
                    for (size_t j = 0; j < got; j++) {
                        dup |= strcmp(kv[2 * j], key) == 0;
                    }
                    if (dup) {
                        fail(ld, k, "label \"%.64s\" appears twice", key);
                        ok = false;
                    } else {
                        kv[2 * got] = copy(ld, key);
                        kv[2 * got + 1] = copy(ld, val);
                        got++;
                    }
                }
                path_pop(ld, saved_k);
            }
            if (got > 1) {
                qsort(kv, got, 2 * sizeof(char *), cmp_labels);
            }
            const char **keys = weft_arena_array(&ld->set->arena, got, sizeof(char *));
            const char **values = weft_arena_array(&ld->set->arena, got, sizeof(char *));
            for (size_t i = 0; i < got; i++) {
                keys[i] = kv[2 * i];
                values[i] = kv[2 * i + 1];
            }
            sel->label_keys = keys;
            sel->label_values = values;
            sel->num_labels = got;
        }
        path_pop(ld, saved_l);
    }
    if (ok) {
        ok = read_list_field(ld, f, "serviceAccounts", sizeof(char *), one_service_account,
                             (const void **)&sel->service_accounts, &sel->num_service_accounts);
    }
    path_pop(ld, saved);
    return ok;
}

static bool read_enum(struct loader *ld, struct field *f, const char *name,
                      const char *const *names, int *out, bool required, const yaml_node_t *parent)
{
    yaml_node_t *n = field(f, name);
    size_t saved = path_push_field(ld, name);
    bool ok = true;
    if (n == NULL) {
        if (required) {
            char list[128] = "";
            for (const char *const *p = names; *p != NULL; p++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", *p);
            }
            fail(ld, parent, "required field is missing (one of %s)", list);
            ok = false;
        }
    } else {
        const char *s = want_string(ld, n);
        int found = -1;
        for (int i = 0; s != NULL && names[i] != NULL; i++) {
            if (strcmp(s, names[i]) == 0) {
                found = i;
            }
        }
        if (s != NULL && found < 0) {
            char list[128] = "";
            for (const char *const *p = names; *p != NULL; p++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", *p);
            }
            fail(ld, n, "\"%.64s\" is not one of %s (case matters)", s, list);
        }
        ok = found >= 0;
        if (ok) {
            *out = found;
        }
    }
    path_pop(ld, saved);
    return ok;
}

/* read_seconds reads the optional field |name| of |f|, a whole number of seconds from 0 to
 * |max|, into |*out| (left alone when the field is absent or null). It takes what a YAML 1.2
 * parser and Kubernetes both read as that integer and nothing else: a plain scalar of decimal
 * digits without a leading zero (YAML 1.1 reads 010 as 8). Not a quoted "5", a sign, a float
 * or 1e3, so that the value seen here is the value the API server stored. */
static bool read_seconds(struct loader *ld, struct field *f, const char *name, uint32_t max,
                         uint32_t *out)
{
    yaml_node_t *n = field(f, name);
    if (n == NULL) {
        return true;
    }
    size_t saved = path_push_field(ld, name);
    bool ok = false;
    if (n->type != YAML_SCALAR_NODE) {
        fail(ld, n, "expected a whole number of seconds (0-%u), found %s", max, node_kind(n));
        goto out;
    }
    const char *s = scalar(n);
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        fail(ld, n,
             "expected a whole number of seconds (0-%u), found the string \"%.64s\" (write "
             "the number without quotes)",
             max, s);
        goto out;
    }
    /* an explicit tag other than !!int (!!float 5) is not an integer either */
    const char *tag = (const char *)n->tag;
    bool digits = len > 0 && strlen(s) == len && (len == 1 || s[0] != '0') &&
                  (tag == NULL || strcmp(tag, YAML_STR_TAG) == 0 || strcmp(tag, YAML_INT_TAG) == 0);
    for (size_t i = 0; digits && i < len; i++) {
        digits = s[i] >= '0' && s[i] <= '9';
    }
    if (!digits) {
        fail(ld, n,
             "not a whole number of seconds: \"%.64s\" (decimal digits 0-%u, no sign, no "
             "leading zero)",
             s, max);
        goto out;
    }
    if (len > 10 || strtoull(s, NULL, 10) > max) {
        fail(ld, n, "%.64s seconds is over the limit of %u", s, max);
        goto out;
    }
    *out = (uint32_t)strtoul(s, NULL, 10);
    ok = true;
out:
    path_pop(ld, saved);
    return ok;
}

static const char *const action_names[] = {"ALLOW", "DENY", "AUDIT", NULL};
static const char *const mode_names[] = {"enforce", "dry-run", NULL};
static const char *const mtls_names[] = {"UNSET", "PERMISSIVE", "STRICT", NULL};
static const char *const default_action_names[] = {"ALLOW", "DENY", NULL};

/* The metadata fields Kubernetes sets on stored objects: accepted and not read, so that the
 * output of `kubectl get -o yaml` loads. */
static const char *const server_metadata[] = {"uid",
                                              "resourceVersion",
                                              "generation",
                                              "creationTimestamp",
                                              "managedFields",
                                              "finalizers",
                                              "ownerReferences",
                                              "selfLink",
                                              "deletionTimestamp",
                                              "deletionGracePeriodSeconds",
                                              "generateName",
                                              NULL};

static bool read_string_map(struct loader *ld, yaml_node_t *n, const char *what)
{
    if (n == NULL) {
        return true;
    }
    size_t saved = path_push_field(ld, what);
    bool ok = n->type == YAML_MAPPING_NODE;
    if (!ok) {
        fail(ld, n, "expected a mapping of strings, found %s", node_kind(n));
    }
    path_pop(ld, saved);
    return ok;
}

/* read_metadata reads name and namespace; |namespaced| kinds need a namespace, others may not
 * have one. */
static bool read_metadata(struct loader *ld, yaml_node_t *n, bool namespaced, const char **name,
                          const char **ns)
{
    size_t saved = path_push_field(ld, "metadata");
    struct field f[] = {{.name = "name"},
                        {.name = "namespace"},
                        {.name = "labels"},
                        {.name = "annotations"},
                        {.name = NULL}};
    bool ok = read_fields(ld, n, f, server_metadata);
    if (ok) {
        yaml_node_t *nm = field(f, "name"), *nsn = field(f, "namespace");
        size_t s2 = path_push_field(ld, "name");
        if (nm == NULL) {
            fail(ld, n, "required field is missing");
            ok = false;
        } else if ((*name = want_string(ld, nm)) == NULL) {
            ok = false;
        } else if (!policy_is_dns_subdomain(*name)) {
            fail(ld, nm,
                 "not a name: \"%.64s\" (lowercase letters, digits, '-' and '.', at most 253)",
                 *name);
            ok = false;
        }
        path_pop(ld, s2);
        s2 = path_push_field(ld, "namespace");
        if (namespaced && nsn == NULL) {
            fail(ld, n, "required field is missing (outside Kubernetes there is no default)");
            ok = false;
        } else if (!namespaced && nsn != NULL) {
            fail(ld, nsn, "a MeshConfig is cluster-scoped: it has no namespace");
            ok = false;
        } else if (nsn != NULL &&
                   ((*ns = want_string(ld, nsn)) == NULL || !policy_is_dns_label(*ns))) {
            if (*ns != NULL) {
                fail(ld, nsn, "not a namespace name: \"%.64s\"", *ns);
            }
            ok = false;
        }
        path_pop(ld, s2);
        ok &= read_string_map(ld, field(f, "labels"), "labels");
        ok &= read_string_map(ld, field(f, "annotations"), "annotations");
    }
    path_pop(ld, saved);
    return ok;
}

static bool read_mtls(struct loader *ld, yaml_node_t *n, enum policy_mtls *out)
{
    struct field f[] = {{.name = "mode"}, {.name = NULL}};
    int mode = POLICY_MTLS_UNSET;
    bool ok = read_fields(ld, n, f, NULL) && read_enum(ld, f, "mode", mtls_names, &mode, false, n);
    *out = (enum policy_mtls)mode;
    return ok;
}

static int cmp_port_mtls(const void *a, const void *b)
{
    const struct policy_port_mtls *x = a, *y = b;
    return (int)x->port - (int)y->port;
}

/* --- kinds -------------------------------------------------------------------------------- */

static struct policy_authz *add_authz(struct policy_set *set)
{
    if (set->num_authz == set->cap_authz) {
        set->cap_authz = set->cap_authz ? set->cap_authz * 2 : 16;
        set->authz = weft_xrealloc(set->authz, set->cap_authz * sizeof(*set->authz));
    }
    struct policy_authz *a = &set->authz[set->num_authz];
    memset(a, 0, sizeof(*a));
    return a;
}

static struct policy_peerauthn *add_peerauthn(struct policy_set *set)
{
    if (set->num_peerauthn == set->cap_peerauthn) {
        set->cap_peerauthn = set->cap_peerauthn ? set->cap_peerauthn * 2 : 16;
        set->peerauthn =
            weft_xrealloc(set->peerauthn, set->cap_peerauthn * sizeof(*set->peerauthn));
    }
    struct policy_peerauthn *p = &set->peerauthn[set->num_peerauthn];
    memset(p, 0, sizeof(*p));
    return p;
}

static void load_authz(struct loader *ld, yaml_node_t *root, struct field *top)
{
    struct policy_authz *a = add_authz(ld->set);
    loc_of(ld, root, &a->loc);
    bool ok = read_metadata(ld, field(top, "metadata"), true, &a->name, &a->namespace_);
    yaml_node_t *spec = field(top, "spec");
    size_t saved = path_push_field(ld, "spec");
    struct field f[] = {
        {.name = "selector"},          {.name = "action"}, {.name = "mode"}, {.name = "rules"},
        {.name = "closeGraceSeconds"}, {.name = NULL}};
    if (spec == NULL) {
        fail(ld, root, "required field is missing");
        ok = false;
    } else if (read_fields(ld, spec, f, NULL)) {
        int action = 0, mode = POLICY_MODE_ENFORCE;
        ok &= read_selector(ld, field(f, "selector"), &a->selector);
        ok &= read_enum(ld, f, "action", action_names, &action, true, spec);
        ok &= read_enum(ld, f, "mode", mode_names, &mode, false, spec);
        a->action = (enum policy_action)action;
        a->mode = (enum policy_mode)mode;
        ok &= read_seconds(ld, f, "closeGraceSeconds", POLICY_MAX_CLOSE_GRACE_S, &a->close_grace_s);
        ok &= read_list_field(ld, f, "rules", sizeof(struct policy_rule), one_rule,
                              (const void **)&a->rules, &a->num_rules);
    } else {
        ok = false;
    }
    path_pop(ld, saved);
    if (ok && ld->num_errors == 0) {
        a->namespace_ = copy(ld, a->namespace_);
        a->name = copy(ld, a->name);
        a->load_order = ld->set->num_loaded++;
        ld->set->num_authz++;
    }
}

static void load_peerauthn(struct loader *ld, yaml_node_t *root, struct field *top)
{
    struct policy_peerauthn *p = add_peerauthn(ld->set);
    loc_of(ld, root, &p->loc);
    bool ok = read_metadata(ld, field(top, "metadata"), true, &p->name, &p->namespace_);
    yaml_node_t *spec = field(top, "spec");
    size_t saved = path_push_field(ld, "spec");
    struct field f[] = {
        {.name = "selector"}, {.name = "mtls"}, {.name = "portLevelMtls"}, {.name = NULL}};
    if (spec == NULL) {
        fail(ld, root, "required field is missing");
        ok = false;
    } else if (read_fields(ld, spec, f, NULL)) {
        ok &= read_selector(ld, field(f, "selector"), &p->selector);
        yaml_node_t *mtls = field(f, "mtls");
        if (mtls != NULL) {
            size_t s2 = path_push_field(ld, "mtls");
            ok &= read_mtls(ld, mtls, &p->mode);
            path_pop(ld, s2);
        }
        yaml_node_t *ports = field(f, "portLevelMtls");
        size_t s2 = path_push_field(ld, "portLevelMtls");
        if (ports != NULL && p->selector.num_labels == 0 && p->selector.num_service_accounts == 0) {
            fail(ld, ports,
                 "port-level modes need a selector that names workloads (matchLabels or "
                 "serviceAccounts): they apply to the ports of chosen workloads");
            ok = false;
        } else if (ports != NULL && ports->type != YAML_MAPPING_NODE) {
            fail(ld, ports, "expected a mapping of ports to {mode: ...}, found %s",
                 node_kind(ports));
            ok = false;
        } else if (ports != NULL) {
            long num = ports->data.mapping.pairs.top - ports->data.mapping.pairs.start;
            if (num > POLICY_MAX_LIST) {
                fail(ld, ports, "%ld ports, over the limit of %d", num, POLICY_MAX_LIST);
                num = 0;
                ok = false;
            }
            struct policy_port_mtls *pm =
                weft_arena_array(&ld->set->arena, (size_t)num, sizeof(*pm));
            size_t got = 0;
            for (long i = 0; i < num; i++) {
                yaml_node_pair_t *pair = &ports->data.mapping.pairs.start[i];
                yaml_node_t *k = node(ld, pair->key), *v = node(ld, pair->value);
                if (k == NULL || v == NULL) {
                    ok = false;
                    break;
                }
                const char *key = k->type == YAML_SCALAR_NODE ? scalar(k) : "";
                size_t s3 = path_push_key(ld, key);
                uint16_t port;
                enum policy_mtls mode;
                if (!parse_port(key, strlen(key), &port)) {
                    fail(ld, k, "not a port: \"%.64s\" (a decimal port 1-65535)", key);
                    ok = false;
                } else if (read_mtls(ld, v, &mode)) {
                    bool dup = false;
                    for (size_t j = 0; j < got; j++) {
                        dup |= pm[j].port == port;
                    }
                    if (dup) {
                        fail(ld, k, "port %u appears twice", port);
                        ok = false;
                    } else {
                        pm[got].port = port;
                        pm[got].mode = mode;
                        got++;
                    }
                } else {
                    ok = false;
                }
                path_pop(ld, s3);
            }
            if (got > 1) {
                qsort(pm, got, sizeof(*pm), cmp_port_mtls);
            }
            p->ports = pm;
            p->num_ports = got;
        }
        path_pop(ld, s2);
    } else {
        ok = false;
    }
    path_pop(ld, saved);
    if (ok && ld->num_errors == 0) {
        p->namespace_ = copy(ld, p->namespace_);
        p->name = copy(ld, p->name);
        p->load_order = ld->set->num_loaded++;
        ld->set->num_peerauthn++;
    }
}

static void load_meshconfig(struct loader *ld, yaml_node_t *root, struct field *top)
{
    struct policy_meshconfig m;
    memset(&m, 0, sizeof(m));
    loc_of(ld, root, &m.loc);
    const char *ns = NULL;
    bool ok = read_metadata(ld, field(top, "metadata"), false, &m.name, &ns);
    yaml_node_t *spec = field(top, "spec");
    size_t saved = path_push_field(ld, "spec");
    struct field f[] = {
        {.name = "rootNamespace"}, {.name = "defaultAction"}, {.name = "mtls"}, {.name = NULL}};
    if (spec != NULL && read_fields(ld, spec, f, NULL)) {
        yaml_node_t *root_ns = field(f, "rootNamespace");
        if (root_ns != NULL) {
            size_t s2 = path_push_field(ld, "rootNamespace");
            ok &= read_namespace_value(ld, root_ns, &m.config.root_namespace);
            m.has_root_namespace = true;
            path_pop(ld, s2);
        }
        int action = POLICY_ACTION_ALLOW;
        m.has_default_action = field(f, "defaultAction") != NULL;
        ok &= read_enum(ld, f, "defaultAction", default_action_names, &action, false, spec);
        m.config.default_action = (enum policy_action)action;
        yaml_node_t *mtls = field(f, "mtls");
        if (mtls != NULL) {
            size_t s2 = path_push_field(ld, "mtls");
            ok &= read_mtls(ld, mtls, &m.config.default_mtls);
            m.has_default_mtls = m.config.default_mtls != POLICY_MTLS_UNSET;
            path_pop(ld, s2);
        }
    } else if (spec != NULL) {
        ok = false;
    }
    path_pop(ld, saved);
    if (!ok || ld->num_errors != 0) {
        return;
    }
    if (ld->set->has_mesh) {
        fail(ld, root,
             "a second MeshConfig (\"%s\", the first is \"%s\" at %s:%u); there is one "
             "per mesh",
             m.name, ld->set->mesh.name, ld->set->mesh.loc.file, ld->set->mesh.loc.line);
        return;
    }
    m.name = copy(ld, m.name);
    ld->set->mesh = m;
    ld->set->has_mesh = true;
}

/* load_document reads one YAML document: apiVersion, kind, metadata, spec (status ignored). */
static void load_document(struct loader *ld)
{
    yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    if (root == NULL || is_null(root)) {
        return; /* an empty document, as after a trailing "---" */
    }
    ld->num_errors = 0;
    ld->path_len = 0;
    ld->path[0] = '\0';
    struct field top[] = {{.name = "apiVersion"},
                          {.name = "kind"},
                          {.name = "metadata"},
                          {.name = "spec"},
                          {.name = NULL}};
    static const char *const ignored[] = {"status", NULL};
    if (!read_fields(ld, root, top, ignored)) {
        return;
    }
    yaml_node_t *api = field(top, "apiVersion"), *kind = field(top, "kind");
    const char *api_s = api != NULL ? want_string(ld, api) : NULL;
    const char *kind_s = kind != NULL ? want_string(ld, kind) : NULL;
    if (api == NULL || kind == NULL) {
        fail(ld, root, "required field is missing: %s", api == NULL ? "apiVersion" : "kind");
        return;
    }
    if (api_s == NULL || kind_s == NULL) {
        return;
    }
    if (strcmp(api_s, POLICY_API_VERSION) != 0) {
        size_t saved = path_push_field(ld, "apiVersion");
        fail(ld, api, "\"%.64s\" is not %s", api_s, POLICY_API_VERSION);
        path_pop(ld, saved);
        return;
    }
    if (field(top, "metadata") == NULL) {
        fail(ld, root, "required field is missing: metadata");
        return;
    }
    if (ld->set->num_authz + ld->set->num_peerauthn >= POLICY_MAX_OBJECTS) {
        fail(ld, root, "more than %d policies in one set", POLICY_MAX_OBJECTS);
        return;
    }
    if (strcmp(kind_s, "AuthorizationPolicy") == 0) {
        load_authz(ld, root, top);
    } else if (strcmp(kind_s, "PeerAuthentication") == 0) {
        load_peerauthn(ld, root, top);
    } else if (strcmp(kind_s, "MeshConfig") == 0) {
        load_meshconfig(ld, root, top);
    } else {
        size_t saved = path_push_field(ld, "kind");
        fail(ld, kind,
             "\"%.64s\" is not a weft kind (AuthorizationPolicy, PeerAuthentication, MeshConfig)",
             kind_s);
        path_pop(ld, saved);
    }
}

/* --- a shape check before libyaml --------------------------------------------------------- */

#define MAX_FLOW_DEPTH 64
#define MAX_INDENT 256

/* check_shape refuses input nested deeper than any policy needs, before libyaml sees it:
 * libyaml's scanner is quadratic in nesting depth (200,000 '[' take minutes), so a 4 MiB file
 * could stall a loader for hours. Flow nesting ([ and {, outside quotes and comments) is capped
 * at MAX_FLOW_DEPTH and indentation, which bounds block nesting, at MAX_INDENT columns. A false
 * alarm needs dozens of unbalanced brackets in plain scalars, which no policy has. */
static bool check_shape(const uint8_t *data, size_t len, struct policy_loc *where,
                        const char **what)
{
    unsigned line = 1, col = 1, depth = 0, indent = 0;
    bool at_line_start = true, prev_space = true;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (c == '\n') {
            line++;
            col = 1;
            indent = 0;
            at_line_start = prev_space = true;
            continue;
        }
        if (at_line_start && c == ' ') {
            if (++indent > MAX_INDENT) {
                *what = "indented more than 256 columns";
                goto refuse;
            }
            col++;
            continue;
        }
        at_line_start = false;
        if (c == '#' && prev_space) {
            while (i + 1 < len && data[i + 1] != '\n') {
                i++;
            }
            continue;
        }
        if ((c == '\'' || c == '"') && prev_space) {
            /* a quoted scalar (it can only start a token): skip to its end ('' and \" are
             * escapes). A quote inside a plain scalar, as in don't, starts nothing. */
            for (i++; i < len; i++) {
                if (data[i] == '\n') {
                    line++;
                    col = 0;
                } else if (c == '"' && data[i] == '\\') {
                    i++;
                } else if (data[i] == c) {
                    if (c == '\'' && i + 1 < len && data[i + 1] == '\'') {
                        i++;
                    } else {
                        break;
                    }
                }
            }
            prev_space = false;
            continue;
        }
        if (c == '[' || c == '{') {
            if (++depth > MAX_FLOW_DEPTH) {
                *what = "nested more than 64 levels deep";
                goto refuse;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
        prev_space = c == ' ' || c == '\t' || c == ',' || c == '[' || c == '{';
        col++;
    }
    return true;
refuse:
    where->line = line;
    where->column = col;
    return false;
}

/* --- entry points ------------------------------------------------------------------------- */

void policy_set_init(struct policy_set *set)
{
    memset(set, 0, sizeof(*set));
    weft_arena_init(&set->arena);
}

void policy_set_cleanup(struct policy_set *set)
{
    free(set->authz);
    free(set->peerauthn);
    weft_arena_cleanup(&set->arena);
    memset(set, 0, sizeof(*set));
}

int policy_set_load_buffer(struct policy_set *set, const char *name, const uint8_t *data,
                           size_t len)
{
    size_t errors_before = set->num_errors + set->num_errors_dropped;
    struct loader ld;
    memset(&ld, 0, sizeof(ld));
    ld.set = set;
    ld.file = weft_arena_strdup(&set->arena, name);
    struct policy_loc loc = {ld.file, 1, 1};
    if (len > POLICY_MAX_FILE_BYTES) {
        policy_set_add_error(set, &loc, NULL, "file is %zu bytes, over the limit of %u", len,
                             POLICY_MAX_FILE_BYTES);
        return WEFT_ELIMIT;
    }
    const char *what;
    if (!check_shape(data, len, &loc, &what)) {
        policy_set_add_error(set, &loc, NULL, "refused before parsing: %s", what);
        return WEFT_ELIMIT;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        return WEFT_EINTERNAL;
    }
    yaml_parser_set_input_string(&parser, data, len);
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            loc.line = (unsigned)parser.problem_mark.line + 1;
            loc.column = (unsigned)parser.problem_mark.column + 1;
            policy_set_add_error(set, &loc, NULL, "broken YAML: %s%s%s",
                                 parser.problem != NULL ? parser.problem : "cannot parse",
                                 parser.context != NULL ? " " : "",
                                 parser.context != NULL ? parser.context : "");
            break;
        }
        if (yaml_document_get_root_node(&doc) == NULL) {
            yaml_document_delete(&doc);
            break; /* end of stream */
        }
        ld.doc = &doc;
        ld.nodes_visited = 0;
        ld.budget_reported = false;
        load_document(&ld);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return set->num_errors + set->num_errors_dropped == errors_before ? WEFT_OK : WEFT_EINVAL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool yaml_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
                              (n > 4 && strcmp(name + n - 4, ".yml") == 0));
}

static int walk(const char *dir, const struct policy_walk_ops *ops, size_t *num_files, int depth)
{
    if (depth > 16) {
        errno = 0;
        ops->error(ops->arg, dir, "directories nested more than 16 deep");
        return WEFT_ELIMIT;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        int err = errno;
        char what[300];
        snprintf(what, sizeof(what), "cannot read directory: %s", strerror(err));
        errno = err;
        ops->error(ops->arg, dir, what);
        return WEFT_EIO;
    }
    char **names = NULL;
    size_t num = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (num == cap) {
            cap = cap ? cap * 2 : 32;
            names = weft_xrealloc(names, cap * sizeof(*names));
        }
        names[num++] = weft_xstrndup(e->d_name, strlen(e->d_name));
    }
    closedir(d);
    if (num > 1) {
        qsort(names, num, sizeof(*names), cmp_names);
    }
    int rc = WEFT_OK;
    for (size_t i = 0; i < num; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        int r = WEFT_OK;
        if (stat(path, &st) != 0) {
            if (errno == ENOENT) {
                continue; /* a dangling link */
            }
            /* A name the directory lists but this user cannot look at (a directory readable
             * but not searchable, a link loop): skipping it would drop its policies unseen. */
            int err = errno;
            char what[300];
            snprintf(what, sizeof(what), "cannot read: %s", strerror(err));
            errno = err;
            ops->error(ops->arg, path, what);
            rc = rc == WEFT_OK ? WEFT_EIO : rc;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            r = walk(path, ops, num_files, depth + 1);
        } else if (S_ISREG(st.st_mode) && yaml_name(names[i])) {
            if (++*num_files > POLICY_MAX_FILES) {
                char what[64];
                snprintf(what, sizeof(what), "more than %d policy files", POLICY_MAX_FILES);
                errno = 0;
                ops->error(ops->arg, dir, what);
                r = WEFT_ELIMIT;
            } else {
                r = ops->file(ops->arg, path);
            }
        }
        if (rc == WEFT_OK) {
            rc = r;
        }
    }
    for (size_t i = 0; i < num; i++) {
        free(names[i]);
    }
    free(names);
    return rc;
}

int policy_dir_walk(const char *dir, const struct policy_walk_ops *ops)
{
    size_t num_files = 0;
    return walk(dir, ops, &num_files, 0);
}

static int load_file(void *arg, const char *path) { return policy_set_load_path(arg, path); }

static void load_error(void *arg, const char *path, const char *what)
{
    struct policy_set *set = arg;
    struct policy_loc loc = {weft_arena_strdup(&set->arena, path), 1, 1};
    policy_set_add_error(set, &loc, NULL, "%s", what);
}

int policy_set_load_path(struct policy_set *set, const char *path)
{
    struct stat st;
    struct policy_loc loc = {weft_arena_strdup(&set->arena, path), 1, 1};
    if (stat(path, &st) != 0) {
        policy_set_add_error(set, &loc, NULL, "cannot read: %s", strerror(errno));
        return WEFT_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        struct policy_walk_ops ops = {load_file, load_error, set};
        return policy_dir_walk(path, &ops);
    }
    uint8_t *data;
    size_t len;
    int rc = weft_file_read(&data, &len, path, POLICY_MAX_FILE_BYTES);
    if (rc == WEFT_ELIMIT) {
        policy_set_add_error(set, &loc, NULL, "file is over the limit of %u bytes",
                             POLICY_MAX_FILE_BYTES);
        return rc;
    }
    if (rc != WEFT_OK) {
        policy_set_add_error(set, &loc, NULL, "cannot read: %s", strerror(errno));
        return rc;
    }
    rc = policy_set_load_buffer(set, path, data, len);
    free(data);
    return rc;
}

static int cmp_key(const char *ns1, const char *n1, size_t o1, const char *ns2, const char *n2,
                   size_t o2, bool with_order)
{
    int c = strcmp(ns1, ns2);
    c = c != 0 ? c : strcmp(n1, n2);
    return c != 0 || !with_order ? c : (o1 < o2 ? -1 : o1 > o2);
}

static int cmp_authz(const void *a, const void *b)
{
    const struct policy_authz *x = a, *y = b;
    return cmp_key(x->namespace_, x->name, x->load_order, y->namespace_, y->name, y->load_order,
                   true);
}

static int cmp_peerauthn(const void *a, const void *b)
{
    const struct policy_peerauthn *x = a, *y = b;
    return cmp_key(x->namespace_, x->name, x->load_order, y->namespace_, y->name, y->load_order,
                   true);
}

int policy_set_finish(struct policy_set *set)
{
    /* Sorted by (namespace, name, load order): of two objects with one name, the one read
     * first stays and the later one is the error. */
    if (set->num_authz > 1) {
        qsort(set->authz, set->num_authz, sizeof(*set->authz), cmp_authz);
    }
    if (set->num_peerauthn > 1) {
        qsort(set->peerauthn, set->num_peerauthn, sizeof(*set->peerauthn), cmp_peerauthn);
    }
    size_t kept = 0;
    for (size_t i = 0; i < set->num_authz; i++) {
        const struct policy_authz *a = &set->authz[kept > 0 ? kept - 1 : 0], *b = &set->authz[i];
        if (kept > 0 && cmp_key(a->namespace_, a->name, 0, b->namespace_, b->name, 0, false) == 0) {
            policy_set_add_error(set, &b->loc, "metadata.name",
                                 "AuthorizationPolicy %s/%s is defined twice (also at %s:%u)",
                                 b->namespace_, b->name, a->loc.file, a->loc.line);
            continue;
        }
        set->authz[kept++] = set->authz[i];
    }
    set->num_authz = kept;
    kept = 0;
    for (size_t i = 0; i < set->num_peerauthn; i++) {
        const struct policy_peerauthn *a = &set->peerauthn[kept > 0 ? kept - 1 : 0],
                                      *b = &set->peerauthn[i];
        if (kept > 0 && cmp_key(a->namespace_, a->name, 0, b->namespace_, b->name, 0, false) == 0) {
            policy_set_add_error(set, &b->loc, "metadata.name",
                                 "PeerAuthentication %s/%s is defined twice (also at %s:%u)",
                                 b->namespace_, b->name, a->loc.file, a->loc.line);
            continue;
        }
        set->peerauthn[kept++] = set->peerauthn[i];
    }
    set->num_peerauthn = kept;
    return set->num_errors + set->num_errors_dropped == 0 ? WEFT_OK : WEFT_EINVAL;
}

void policy_config_resolve(struct policy_config *out, const struct policy_set *set)
{
    out->root_namespace = POLICY_DEFAULT_ROOT_NAMESPACE;
    out->default_action = POLICY_ACTION_ALLOW;
    out->default_mtls = POLICY_MTLS_PERMISSIVE;
    if (!set->has_mesh) {
        return;
    }
    if (set->mesh.has_root_namespace) {
        out->root_namespace = set->mesh.config.root_namespace;
    }
    if (set->mesh.has_default_action) {
        out->default_action = set->mesh.config.default_action;
    }
    if (set->mesh.has_default_mtls) {
        out->default_mtls = set->mesh.config.default_mtls;
    }
}
