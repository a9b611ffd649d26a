/* Parsing the Kubernetes API's LIST pages and WATCH lines (reference/kubernetes.md §5.1). */
#include "ca/kube_watch.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"

void ca_kube_lines_init(struct ca_kube_lines *l, size_t max)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
}

void ca_kube_lines_cleanup(struct ca_kube_lines *l)
{
    size_t max = l->max;
    free(l->buf);
    ca_kube_lines_init(l, max);
}

int ca_kube_lines_feed(struct ca_kube_lines *l, const char *data, size_t len,
                       int (*fn)(void *arg, const char *line, size_t len), void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - data) : len;
        /* the limit is checked before anything is allocated: the peer chooses |take| */
        if (take > l->max || l->len > l->max - take) {
            return WEFT_ELIMIT;
        }
        if (l->len + take > l->cap) {
            size_t cap = l->cap ? l->cap : 4096;
            while (cap < l->len + take) {
                cap *= 2;
            }
            l->buf = weft_xrealloc(l->buf, cap);
            l->cap = cap;
        }
        if (take > 0) {
            memcpy(l->buf + l->len, data, take);
            l->len += take;
        }
        if (nl == NULL) {
            return WEFT_OK;
        }
        data += take + 1;
        len -= take + 1;
        size_t line_len = l->len;
        l->len = 0;
        if (line_len > 0 && l->buf[line_len - 1] == '\r') {
            line_len--;
        }
        if (line_len > 0) {
            TRY(fn(arg, l->buf, line_len));
        }
    }
    return WEFT_OK;
}

/* copy_rv copies a resourceVersion: a non-empty opaque string, compared for equality only. */
static bool copy_rv(char out[CA_KUBE_MAX_RV + 1], const json_t *rv)
{
    const char *s = json_string_value(rv);
    size_t n = s != NULL ? json_string_length(rv) : 0;
    if (s == NULL || n == 0 || n > CA_KUBE_MAX_RV || memchr(s, '\0', n) != NULL) {
        return false;
    }
    memcpy(out, s, n + 1);
    return true;
}

static const struct {
    const char *name;
    enum ca_kube_event_type type;
} event_types[] = {
    {"ADDED", CA_KUBE_ADDED},       {"MODIFIED", CA_KUBE_MODIFIED}, {"DELETED", CA_KUBE_DELETED},
    {"BOOKMARK", CA_KUBE_BOOKMARK}, {"ERROR", CA_KUBE_ERROR},
};

int ca_kube_event_parse(struct ca_kube_event *out, const char *line, size_t len, char *err,
                        size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (len > CA_KUBE_MAX_LINE) {
        snprintf(err, err_len, "watch event of %zu bytes is over the limit of %u", len,
                 CA_KUBE_MAX_LINE);
        return WEFT_EPROTO;
    }
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, err_len, "watch event is not JSON: %s at column %d", jerr.text, jerr.column);
        return WEFT_EPROTO;
    }
    int rc = WEFT_EPROTO;
    const char *type = json_string_value(json_object_get(root, "type"));
    json_t *obj = json_object_get(root, "object");
    if (!json_is_object(root) || type == NULL || !json_is_object(obj)) {
        snprintf(err, err_len, "watch event without a string \"type\" and an object \"object\"");
        goto out;
    }
    size_t i = 0;
    while (i < sizeof(event_types) / sizeof(event_types[0]) && strcmp(event_types[i].name, type)) {
        i++;
    }
    if (i == sizeof(event_types) / sizeof(event_types[0])) {
        snprintf(err, err_len, "watch event of unknown type \"%.40s\"", type);
        goto out;
    }
    out->type = event_types[i].type;
    if (out->type == CA_KUBE_ERROR) {
        /* the object is a Status: code 410 means the resourceVersion is too old */
        json_t *code = json_object_get(obj, "code");
        const char *msg = json_string_value(json_object_get(obj, "message"));
        out->code = json_is_integer(code) && json_integer_value(code) >= 0 &&
                            json_integer_value(code) < 1000
                        ? (int)json_integer_value(code)
                        : 0;
        snprintf(out->message, sizeof(out->message), "%s", msg != NULL ? msg : "");
        rc = WEFT_OK;
        goto out;
    }
    json_t *md = json_object_get(obj, "metadata");
    if (!copy_rv(out->rv, json_object_get(md, "resourceVersion"))) {
        snprintf(err, err_len, "%s event without a usable metadata.resourceVersion", type);
        goto out;
    }
    if (out->type != CA_KUBE_BOOKMARK) {
        char key[600];
        if (ca_kube_object_key(key, sizeof(key), obj) != WEFT_OK) {
            snprintf(err, err_len, "%s event without a string metadata.name", type);
            goto out;
        }
        out->object = json_incref(obj);
    }
    rc = WEFT_OK;
out:
    json_decref(root);
    return rc;
}

void ca_kube_event_cleanup(struct ca_kube_event *ev)
{
    json_decref(ev->object);
    ev->object = NULL;
}

int ca_kube_list_parse(struct ca_kube_list *out, const char *body, size_t len, char *err,
                       size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (len > CA_KUBE_MAX_BODY) {
        snprintf(err, err_len, "list of %zu bytes is over the limit of %u", len, CA_KUBE_MAX_BODY);
        return WEFT_ELIMIT;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, err_len, "list is not JSON: %s at line %d column %d", jerr.text, jerr.line,
                 jerr.column);
        return WEFT_EPROTO;
    }
    int rc = WEFT_EPROTO;
    json_t *md = json_object_get(root, "metadata");
    json_t *items = json_object_get(root, "items");
    json_t *cont = json_object_get(md, "continue");
    if (!json_is_object(root) || !json_is_object(md)) {
        snprintf(err, err_len, "list without metadata");
        goto out;
    }
    if (!copy_rv(out->rv, json_object_get(md, "resourceVersion"))) {
        snprintf(err, err_len, "list without a usable metadata.resourceVersion");
        goto out;
    }
    if (cont != NULL && (!json_is_string(cont) || json_string_length(cont) >= sizeof(out->cont) ||
                         strlen(json_string_value(cont)) != json_string_length(cont))) {
        snprintf(err, err_len, "list with an unusable metadata.continue");
        goto out;
    }
    snprintf(out->cont, sizeof(out->cont), "%s", cont != NULL ? json_string_value(cont) : "");
    /* "items": null is how an empty list may come */
    if (items != NULL && !json_is_null(items) && !json_is_array(items)) {
        snprintf(err, err_len, "list whose items is not an array");
        goto out;
    }
    out->items = json_is_array(items) ? json_incref(items) : json_array();
    rc = WEFT_OK;
out:
    json_decref(root);
    return rc;
}

void ca_kube_list_cleanup(struct ca_kube_list *l)
{
    json_decref(l->items);
    l->items = NULL;
}

/* dns_label: RFC 1123 label, as Kubernetes checks a namespace: [a-z0-9]([-a-z0-9]*[a-z0-9])?,
 * at most |max| bytes. */
static bool dns_label(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max || s[0] == '-' || s[n - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

/* dns_subdomain: labels joined by '.', at most 253 bytes, as Kubernetes checks most object
 * names. Such a name is also a safe path component: no '/', never "." or "..". */
static bool dns_subdomain(const char *s, size_t n)
{
    if (n == 0 || n > 253) {
        return false;
    }
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!dns_label(s + start, i - start, 63)) {
                return false;
            }
            start = i + 1;
        }
    }
    return true;
}

int ca_kube_object_key(char *out, size_t out_len, const json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    json_t *name = json_object_get(md, "name"), *ns = json_object_get(md, "namespace");
    ENSURE(json_is_string(name), WEFT_EINVAL);
    ENSURE(ns == NULL || json_is_string(ns), WEFT_EINVAL);
    int n = ns != NULL
                ? snprintf(out, out_len, "%s/%s", json_string_value(ns), json_string_value(name))
                : snprintf(out, out_len, "%s", json_string_value(name));
    ENSURE(n >= 0 && (size_t)n < out_len, WEFT_EINVAL);
    return WEFT_OK;
}

int ca_kube_object_file(struct ca_kube_file *out, const json_t *obj, const char *plural, char *err,
                        size_t err_len)
{
    memset(out, 0, sizeof(*out));
    json_t *md = json_object_get(obj, "metadata");
    json_t *name = json_object_get(md, "name"), *ns = json_object_get(md, "namespace");
    const char *name_s = json_string_value(name), *ns_s = json_string_value(ns);
    if (name_s == NULL || strlen(name_s) != json_string_length(name) ||
        !dns_subdomain(name_s, json_string_length(name))) {
        snprintf(err, err_len, "%s: metadata.name is missing or not a Kubernetes name", plural);
        return WEFT_EINVAL;
    }
    if (ns != NULL && (ns_s == NULL || strlen(ns_s) != json_string_length(ns) ||
                       !dns_label(ns_s, json_string_length(ns), 63))) {
        snprintf(err, err_len, "%s %s: metadata.namespace is not a Kubernetes name", plural,
                 name_s);
        return WEFT_EINVAL;
    }
    if (!copy_rv(out->rv, json_object_get(md, "resourceVersion"))) {
        snprintf(err, err_len, "%s %s/%s: no usable metadata.resourceVersion", plural,
                 ns_s != NULL ? ns_s : "", name_s);
        return WEFT_EINVAL;
    }
    /* Only what the loader reads and what says which version this is; status, annotations
     * and managedFields stay behind (they change without the policy changing). Fields are
     * copied as they are, whatever their type: the loader says what is wrong with them. */
    json_t *file = json_object();
    json_t *fmd = json_object();
    static const char *const top[] = {"apiVersion", "kind"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(obj, top[i]);
        if (v != NULL) {
            json_object_set(file, top[i], v);
        }
    }
    static const char *const keep[] = {"name", "namespace", "labels", "resourceVersion",
                                       "generation"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        json_t *v = json_object_get(md, keep[i]);
        if (v != NULL) {
            json_object_set(fmd, keep[i], v);
        }
    }
    json_object_set_new(file, "metadata", fmd);
    json_t *spec = json_object_get(obj, "spec");
    if (spec != NULL) {
        json_object_set(file, "spec", spec);
    }
    /* indented, so that the loader's line:column points at one field */
    out->data = json_dumps(file, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(file);
    if (out->data == NULL) {
        snprintf(err, err_len, "%s %s: cannot serialize the object", plural, name_s);
        return WEFT_EINVAL;
    }
    out->len = strlen(out->data);
    size_t nlen = strlen(plural) + (ns_s ? strlen(ns_s) : 8) + strlen(name_s) + 16;
    out->name = weft_xmalloc(nlen);
    snprintf(out->name, nlen, "k8s/%s/%s/%s.json", plural, ns_s != NULL ? ns_s : "_cluster",
             name_s);
    return WEFT_OK;
}

void ca_kube_file_cleanup(struct ca_kube_file *f)
{
    free(f->name);
    free(f->data);
    memset(f, 0, sizeof(*f));
}
