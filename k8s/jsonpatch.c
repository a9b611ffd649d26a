/* k8s/jsonpatch.c: RFC 6902 JSON Patch over RFC 6901 JSON Pointers, on jansson. */
#include "k8s/jsonpatch.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"

struct pointer {
    char *tokens[K8S_PATCH_MAX_TOKENS]; /* unescaped; owned */
    size_t num_tokens;
};

static void pointer_cleanup(struct pointer *p)
{
    for (size_t i = 0; i < p->num_tokens; i++) {
        free(p->tokens[i]);
    }
    p->num_tokens = 0;
}

char *k8s_jsonpatch_path(const char *base, const char *token)
{
    size_t blen = strlen(base), tlen = strlen(token), extra = 0;
    for (size_t i = 0; i < tlen; i++) {
        extra += token[i] == '~' || token[i] == '/';
    }
    char *out = weft_xmalloc(blen + 1 + tlen + extra + 1);
    char *w = out;
    memcpy(w, base, blen);
    w += blen;
    *w++ = '/';
    for (size_t i = 0; i < tlen; i++) {
        /* RFC 6901 §3: '~' first, so that "~1" written for '/' is not read back as '~' '1' */
        if (token[i] == '~') {
            *w++ = '~';
            *w++ = '0';
        } else if (token[i] == '/') {
            *w++ = '~';
            *w++ = '1';
        } else {
            *w++ = token[i];
        }
    }
    *w = '\0';
    return out;
}

char *k8s_jsonpatch_path_index(const char *base, size_t index)
{
    char num[24];
    snprintf(num, sizeof(num), "%zu", index);
    return k8s_jsonpatch_path(base, num);
}

void k8s_jsonpatch_append(json_t *patch, const char *op, const char *path, json_t *value)
{
    json_t *o = json_object();
    json_object_set_new(o, "op", json_string(op));
    json_object_set_new(o, "path", json_string(path));
    if (value != NULL) {
        json_object_set_new(o, "value", value);
    }
    json_array_append_new(patch, o);
}

/* pointer_parse splits an RFC 6901 pointer into unescaped tokens. */
static int pointer_parse(struct pointer *p, const char *s, char *err, size_t err_len)
{
    p->num_tokens = 0;
    if (*s == '\0') {
        return WEFT_OK; /* the whole document */
    }
    if (*s != '/') {
        snprintf(err, err_len, "path \"%.64s\" does not start with '/'", s);
        return WEFT_EINVAL;
    }
    while (*s == '/') {
        s++;
        size_t len = strcspn(s, "/");
        if (p->num_tokens == K8S_PATCH_MAX_TOKENS) {
            snprintf(err, err_len, "path has more than %d tokens", K8S_PATCH_MAX_TOKENS);
            return WEFT_ELIMIT;
        }
        char *t = weft_xmalloc(len + 1), *w = t;
        p->tokens[p->num_tokens++] = t;
        for (size_t i = 0; i < len; i++) {
            if (s[i] != '~') {
                *w++ = s[i];
            } else if (i + 1 < len && (s[i + 1] == '0' || s[i + 1] == '1')) {
                *w++ = s[i + 1] == '0' ? '~' : '/';
                i++;
            } else {
                snprintf(err, err_len, "path has '~' not followed by 0 or 1");
                return WEFT_EINVAL;
            }
        }
        *w = '\0';
        s += len;
    }
    return WEFT_OK;
}

/* array_index reads an RFC 6901 array index: "0" or digits without a leading zero. */
static bool array_index(const char *t, size_t *out)
{
    size_t len = strlen(t), v = 0;
    if (len == 0 || len > 9 || (len > 1 && t[0] == '0')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (t[i] < '0' || t[i] > '9') {
            return false;
        }
        v = v * 10 + (size_t)(t[i] - '0');
    }
    *out = v;
    return true;
}

/* apply_op applies one operation to |*root|. */
static int apply_op(json_t **root, const char *op, const struct pointer *p, const json_t *value,
                    char *err, size_t err_len)
{
    bool is_add = strcmp(op, "add") == 0, is_remove = strcmp(op, "remove") == 0;
    bool is_replace = strcmp(op, "replace") == 0, is_test = strcmp(op, "test") == 0;
    if (!is_add && !is_remove && !is_replace && !is_test) {
        snprintf(err, err_len, "op \"%.16s\" is not supported (add, remove, replace, test)", op);
        return WEFT_EINVAL;
    }
    if (!is_remove && value == NULL) {
        snprintf(err, err_len, "op %s has no value", op);
        return WEFT_EINVAL;
    }
    if (p->num_tokens == 0) {
        if (is_remove) {
            snprintf(err, err_len, "cannot remove the whole document");
            return WEFT_EINVAL;
        }
        if (is_test) {
            if (!json_equal(*root, (json_t *)value)) {
                snprintf(err, err_len, "test failed");
                return WEFT_EINVAL;
            }
            return WEFT_OK;
        }
        json_decref(*root);
        *root = json_deep_copy(value);
        return WEFT_OK;
    }
    json_t *parent = *root;
    for (size_t i = 0; i + 1 < p->num_tokens; i++) {
        json_t *next = NULL;
        size_t idx;
        if (json_is_object(parent)) {
            next = json_object_get(parent, p->tokens[i]);
        } else if (json_is_array(parent) && array_index(p->tokens[i], &idx)) {
            next = json_array_get(parent, idx);
        }
        if (next == NULL) {
            snprintf(err, err_len, "\"%.64s\" (token %zu of the path) is not there", p->tokens[i],
                     i + 1);
            return WEFT_EINVAL;
        }
        parent = next;
    }
    const char *last = p->tokens[p->num_tokens - 1];
    if (json_is_object(parent)) {
        json_t *cur = json_object_get(parent, last);
        if (!is_add && cur == NULL) {
            snprintf(err, err_len, "member \"%.64s\" is not there", last);
            return WEFT_EINVAL;
        }
        if (is_test) {
            if (!json_equal(cur, (json_t *)value)) {
                snprintf(err, err_len, "test failed");
                return WEFT_EINVAL;
            }
            return WEFT_OK;
        }
        if (is_remove) {
            json_object_del(parent, last);
            return WEFT_OK;
        }
        if (json_object_set_new(parent, last, json_deep_copy(value)) != 0) {
            snprintf(err, err_len, "member name is not valid UTF-8");
            return WEFT_EINVAL;
        }
        return WEFT_OK;
    }
    if (json_is_array(parent)) {
        size_t size = json_array_size(parent), idx;
        if (is_add && strcmp(last, "-") == 0) {
            json_array_append_new(parent, json_deep_copy(value));
            return WEFT_OK;
        }
        if (!array_index(last, &idx) || idx > size || (!is_add && idx == size)) {
            snprintf(err, err_len, "array index \"%.32s\" is not valid for %zu elements", last,
                     size);
            return WEFT_EINVAL;
        }
        if (is_add) {
            json_array_insert_new(parent, idx, json_deep_copy(value));
        } else if (is_remove) {
            json_array_remove(parent, idx);
        } else if (is_replace) {
            json_array_set_new(parent, idx, json_deep_copy(value));
        } else if (!json_equal(json_array_get(parent, idx), (json_t *)value)) {
            snprintf(err, err_len, "test failed");
            return WEFT_EINVAL;
        }
        return WEFT_OK;
    }
    snprintf(err, err_len, "the parent of \"%.64s\" is neither an object nor an array", last);
    return WEFT_EINVAL;
}

int k8s_jsonpatch_apply(json_t **doc, const json_t *patch, char *err, size_t err_len)
{
    char why[256] = "";
    if (!json_is_array(patch)) {
        snprintf(err, err_len, "a JSON Patch is an array of operations");
        return WEFT_EINVAL;
    }
    if (json_array_size(patch) > K8S_PATCH_MAX_OPS) {
        snprintf(err, err_len, "more than %d operations", K8S_PATCH_MAX_OPS);
        return WEFT_ELIMIT;
    }
    json_t *work = json_deep_copy(*doc);
    size_t i;
    json_t *o;
    json_array_foreach(patch, i, o)
    {
        struct pointer p = {.num_tokens = 0};
        const char *op = json_string_value(json_object_get(o, "op"));
        const char *path = json_string_value(json_object_get(o, "path"));
        int rc;
        if (op == NULL || path == NULL) {
            snprintf(why, sizeof(why), "needs string members \"op\" and \"path\"");
            rc = WEFT_EINVAL;
        } else if (strlen(path) > K8S_PATCH_MAX_PATH) {
            snprintf(why, sizeof(why), "path longer than %d bytes", K8S_PATCH_MAX_PATH);
            rc = WEFT_ELIMIT;
        } else if ((rc = pointer_parse(&p, path, why, sizeof(why))) == WEFT_OK) {
            rc = apply_op(&work, op, &p, json_object_get(o, "value"), why, sizeof(why));
        }
        pointer_cleanup(&p);
        if (rc != WEFT_OK) {
            snprintf(err, err_len, "operation %zu (%s %.100s): %s", i, op != NULL ? op : "?",
                     path != NULL ? path : "?", why);
            json_decref(work);
            return rc;
        }
    }
    json_decref(*doc);
    *doc = work;
    return WEFT_OK;
}
