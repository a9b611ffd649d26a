/* k8s/yamljson.c: YAML streams <-> JSON trees, on libyaml's event API (so that limits are
 * checked as the parser goes, before a tree of any size is built). */
#include "k8s/yamljson.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "lib/base/mem.h"

#define TAG_STR "tag:yaml.org,2002:str"
#define MAX_NUMBER_LEN 64 /* longer plain scalars are never numbers */

struct frame {
    json_t *node; /* array or object */
    char *key;    /* objects: the key read, waiting for its value; owned */
};

struct reader {
    struct frame stack[K8S_YAML_MAX_DEPTH];
    size_t depth;
    size_t num_nodes;
    json_t *root; /* the current document's value */
    char *err;
    size_t err_len;
};

static bool word_in(const char *s, size_t len, const char *const *words);
static json_t *resolve_number(const char *s, size_t len);
static int fail(struct reader *r, const yaml_mark_t *mark, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int on_scalar(struct reader *r, const yaml_event_t *ev);
static int push(struct reader *r, const yaml_event_t *ev, json_t *node);
static int add(struct reader *r, const yaml_event_t *ev, json_t *v);
static void reader_reset(struct reader *r);

static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
static const char *const trues[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
                                    "True", "TRUE", "on",  "On",  "ON",  NULL};
static const char *const falses[] = {"n",     "N",     "no",  "No",  "NO",  "false",
                                     "False", "FALSE", "off", "Off", "OFF", NULL};
static const char *const specials[] = {".inf",  ".Inf",  ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
                                       "-.Inf", "-.INF", ".nan", ".NaN",  ".NAN",  NULL};

static bool word_in(const char *s, size_t len, const char *const *words)
{
    for (size_t i = 0; words[i] != NULL; i++) {
        if (strlen(words[i]) == len && memcmp(words[i], s, len) == 0) {
            return true;
        }
    }
    return false;
}

/* float_syntax: go-yaml v2's yamlStyleFloat, ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
 */
static bool float_syntax(const char *s)
{
    size_t i = 0, n = 0;
    if (s[i] == '+' || s[i] == '-') {
        i++;
    }
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9') {
            i++, n++;
        }
        if (n == 0) {
            return false;
        }
    } else {
        while (s[i] >= '0' && s[i] <= '9') {
            i++, n++;
        }
        if (n == 0) {
            return false;
        }
        if (s[i] == '.') {
            i++;
            while (s[i] >= '0' && s[i] <= '9') {
                i++;
            }
        }
    }
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '+' || s[i] == '-') {
            i++;
        }
        n = 0;
        while (s[i] >= '0' && s[i] <= '9') {
            i++, n++;
        }
        if (n == 0) {
            return false;
        }
    }
    return s[i] == '\0';
}

/* parse_int is Go's strconv.ParseInt(s, 0, 64), as go-yaml v2 calls it: an optional sign, then
 * 0x/0X hex, 0b/0B binary, 0o/0O or a leading 0 octal, or decimal. Returns 1 and the value, 0
 * when |s| is not an integer, -1 when it is one out of range. */
static int parse_int(const char *s, json_int_t *out)
{
    bool neg = false;
    unsigned base = 10;
    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        s++;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16, s += 2;
    } else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
        base = 2, s += 2;
    } else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
        base = 8, s += 2;
    } else if (s[0] == '0' && s[1] != '\0') {
        base = 8, s += 1;
    }
    if (*s == '\0') {
        return 0;
    }
    uint64_t v = 0;
    bool over = false;
    for (; *s != '\0'; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9') {
            d = (unsigned)(*s - '0');
        } else if (*s >= 'a' && *s <= 'f') {
            d = (unsigned)(*s - 'a' + 10);
        } else if (*s >= 'A' && *s <= 'F') {
            d = (unsigned)(*s - 'A' + 10);
        } else {
            return 0;
        }
        if (d >= base) {
            return 0;
        }
        if (v > (UINT64_MAX - d) / base) {
            over = true;
        } else {
            v = v * base + d;
        }
    }
    if (over || v > (uint64_t)INT64_MAX + (neg ? 1 : 0)) {
        return -1;
    }
    *out = neg ? (json_int_t)(0 - v) : (json_int_t)v;
    return 1;
}

static json_t *resolve_number(const char *s, size_t len)
{
    char buf[MAX_NUMBER_LEN];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0') {
            return json_stringn(s, len);
        }
        if (s[i] != '_') {
            buf[n++] = s[i];
        }
    }
    buf[n] = '\0';
    json_int_t iv;
    int rc = parse_int(buf, &iv);
    if (rc == 1) {
        return json_integer(iv);
    }
    if (float_syntax(buf)) {
        errno = 0;
        double d = strtod(buf, NULL);
        if (!isfinite(d)) {
            return NULL;
        }
        return json_real(d);
    }
    return json_stringn(s, len);
}

json_t *k8s_yaml_scalar_resolve(const char *s, size_t len)
{
    if (len == 0 || word_in(s, len, nulls)) {
        return json_null();
    }
    if (word_in(s, len, trues)) {
        return json_true();
    }
    if (word_in(s, len, falses)) {
        return json_false();
    }
    if (word_in(s, len, specials)) {
        return NULL;
    }
    /* go-yaml v2 tries numbers only for scalars that start like one */
    if (len < MAX_NUMBER_LEN && strchr("+-.0123456789", s[0]) != NULL) {
        return resolve_number(s, len);
    }
    return json_stringn(s, len);
}

/* ---- reading ---- */

static int fail(struct reader *r, const yaml_mark_t *mark, int rc, const char *fmt, ...)
{
    int n = snprintf(r->err, r->err_len, "line %zu column %zu: ", mark->line + 1, mark->column + 1);
    if (n >= 0 && (size_t)n < r->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + n, r->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void reader_reset(struct reader *r)
{
    while (r->depth > 0) {
        r->depth--;
        json_decref(r->stack[r->depth].node);
        free(r->stack[r->depth].key);
    }
    json_decref(r->root);
    r->root = NULL;
}

/* key_text is what sigs.k8s.io/yaml makes of a mapping key: JSON keys are strings, so a key
 * that resolves to a bool, null or number is written as that value's text. */
static char *key_text(const yaml_event_t *ev, json_t *v)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    char num[32];
    if (json_is_string(v)) {
        return weft_xstrndup(json_string_value(v), json_string_length(v));
    }
    if (json_is_true(v)) {
        return weft_xstrndup("true", 4);
    }
    if (json_is_false(v)) {
        return weft_xstrndup("false", 5);
    }
    if (json_is_null(v)) {
        return weft_xstrndup("null", 4);
    }
    if (json_is_integer(v)) {
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return weft_xstrndup(num, (size_t)n);
    }
    return weft_xstrndup(s, len);
}

/* add places |v| (a reference it takes) in the open collection, or makes it the document. */
static int add(struct reader *r, const yaml_event_t *ev, json_t *v)
{
    if (r->depth == 0) {
        r->root = v;
        return WEFT_OK;
    }
    struct frame *f = &r->stack[r->depth - 1];
    if (json_is_array(f->node)) {
        json_array_append_new(f->node, v);
        return WEFT_OK;
    }
    if (f->key == NULL) {
        json_decref(v);
        return fail(r, &ev->start_mark, WEFT_EINVAL, "a mapping key must be a scalar");
    }
    if (json_object_get(f->node, f->key) != NULL) {
        json_decref(v);
        return fail(r, &ev->start_mark, WEFT_EINVAL, "mapping key \"%.64s\" repeated", f->key);
    }
    /* jansson refuses keys with bad UTF-8; libyaml has already checked it */
    if (json_object_set_new(f->node, f->key, v) != 0) {
        return fail(r, &ev->start_mark, WEFT_EINVAL, "mapping key not representable in JSON");
    }
    free(f->key);
    f->key = NULL;
    return WEFT_OK;
}

static int on_scalar(struct reader *r, const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    bool as_string =
        !plain || (tag != NULL && (strcmp(tag, TAG_STR) == 0 || strcmp(tag, "!") == 0));
    json_t *v;
    if (as_string) {
        v = json_stringn(s, len);
    } else {
        if (len == 2 && memcmp(s, "<<", 2) == 0) {
            return fail(r, &ev->start_mark, WEFT_EINVAL, "merge keys (<<) are not supported");
        }
        v = k8s_yaml_scalar_resolve(s, len);
        if (v == NULL) {
            return fail(r, &ev->start_mark, WEFT_EINVAL,
                        "\"%.32s\" is a number JSON cannot hold (infinity or NaN)", s);
        }
    }
    if (v == NULL) {
        return fail(r, &ev->start_mark, WEFT_EINVAL, "a string that is not valid UTF-8");
    }
    struct frame *f = r->depth > 0 ? &r->stack[r->depth - 1] : NULL;
    if (f != NULL && json_is_object(f->node) && f->key == NULL) {
        if (memchr(s, '\0', len) != NULL) {
            json_decref(v); /* C strings name jansson's members: "a\0b" would become "a" */
            return fail(r, &ev->start_mark, WEFT_EINVAL, "a mapping key holds a NUL byte");
        }
        f->key = key_text(ev, v);
        json_decref(v);
        return WEFT_OK;
    }
    return add(r, ev, v);
}

static int push(struct reader *r, const yaml_event_t *ev, json_t *node)
{
    struct frame *f = r->depth > 0 ? &r->stack[r->depth - 1] : NULL;
    if (f != NULL && json_is_object(f->node) && f->key == NULL) {
        json_decref(node);
        return fail(r, &ev->start_mark, WEFT_EINVAL, "a mapping key must be a scalar");
    }
    if (r->depth == K8S_YAML_MAX_DEPTH) {
        json_decref(node);
        return fail(r, &ev->start_mark, WEFT_ELIMIT, "nested deeper than %d", K8S_YAML_MAX_DEPTH);
    }
    r->stack[r->depth].node = node;
    r->stack[r->depth].key = NULL;
    r->depth++;
    return WEFT_OK;
}

static int pop(struct reader *r, const yaml_event_t *ev)
{
    r->depth--;
    json_t *node = r->stack[r->depth].node;
    free(r->stack[r->depth].key); /* NULL: the parser pairs every key with a value */
    r->stack[r->depth].key = NULL;
    return add(r, ev, node);
}

int k8s_yaml_parse(json_t **out, const uint8_t *data, size_t len, char *err, size_t err_len)
{
    struct reader r = {.err = err, .err_len = err_len};
    yaml_parser_t parser;
    yaml_event_t ev;
    json_t *docs = json_array();
    int rc = WEFT_OK;
    bool done = false;
    *out = NULL;
    if (err_len > 0) {
        err[0] = '\0';
    }
    if (len > K8S_YAML_MAX_INPUT) {
        snprintf(err, err_len, "larger than %d bytes", K8S_YAML_MAX_INPUT);
        json_decref(docs);
        return WEFT_ELIMIT;
    }
    if (!yaml_parser_initialize(&parser)) {
        json_decref(docs);
        return WEFT_EINTERNAL;
    }
    yaml_parser_set_input_string(&parser, data, len);
    while (!done && rc == WEFT_OK) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = fail(&r, &parser.problem_mark, WEFT_EINVAL, "%s%s%s",
                      parser.problem != NULL ? parser.problem : "invalid YAML",
                      parser.context != NULL ? " " : "",
                      parser.context != NULL ? parser.context : "");
            break;
        }
        if (ev.type == YAML_SCALAR_EVENT || ev.type == YAML_MAPPING_START_EVENT ||
            ev.type == YAML_SEQUENCE_START_EVENT) {
            if (++r.num_nodes > K8S_YAML_MAX_NODES) {
                rc =
                    fail(&r, &ev.start_mark, WEFT_ELIMIT, "more than %d nodes", K8S_YAML_MAX_NODES);
                yaml_event_delete(&ev);
                break;
            }
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (json_array_size(docs) == K8S_YAML_MAX_DOCS) {
                rc = fail(&r, &ev.start_mark, WEFT_ELIMIT, "more than %d documents",
                          K8S_YAML_MAX_DOCS);
            }
            break;
        case YAML_DOCUMENT_END_EVENT:
            json_array_append_new(docs, r.root != NULL ? r.root : json_null());
            r.root = NULL;
            break;
        case YAML_ALIAS_EVENT:
            rc = fail(&r, &ev.start_mark, WEFT_EINVAL, "aliases (*%s) are not supported",
                      (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            rc = on_scalar(&r, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = push(&r, &ev, json_array());
            break;
        case YAML_MAPPING_START_EVENT:
            rc = push(&r, &ev, json_object());
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            rc = pop(&r, &ev);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    reader_reset(&r);
    if (rc != WEFT_OK) {
        json_decref(docs);
        return rc;
    }
    *out = docs;
    return WEFT_OK;
}

/* ---- writing ---- */

struct outbuf {
    char *data;
    size_t len, cap;
};

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    struct outbuf *o = data;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap == 0 ? 4096 : o->cap;
        while (cap < o->len + size + 1) {
            cap *= 2;
        }
        o->data = weft_xrealloc(o->data, cap);
        o->cap = cap;
    }
    memcpy(o->data + o->len, buffer, size);
    o->len += size;
    o->data[o->len] = '\0';
    return 1;
}

static int emit_scalar(yaml_emitter_t *e, const char *s, size_t len, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style) ||
        !yaml_emitter_emit(e, &ev)) {
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* string_style keeps a string a string: when its plain form would read back as something else
 * ("yes", "8080", "", "null"), it is double-quoted. */
static yaml_scalar_style_t string_style(const char *s, size_t len)
{
    json_t *v = k8s_yaml_scalar_resolve(s, len);
    bool same = v != NULL && json_is_string(v);
    json_decref(v);
    /* plain "<<" is YAML 1.1's merge key, which the reader refuses */
    if (!same || len == 0 || (len == 2 && memcmp(s, "<<", 2) == 0)) {
        return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    }
    if (memchr(s, '\n', len) != NULL) {
        return YAML_LITERAL_SCALAR_STYLE; /* libyaml falls back to quoting when it must */
    }
    return YAML_ANY_SCALAR_STYLE;
}

static int emit_value(yaml_emitter_t *e, const json_t *v, size_t depth)
{
    yaml_event_t ev;
    char num[64];
    ENSURE(depth <= K8S_YAML_MAX_DEPTH, WEFT_ELIMIT);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev)) {
            return WEFT_EINVAL;
        }
        json_object_foreach((json_t *)v, key, val)
        {
            size_t klen = strlen(key);
            TRY(emit_scalar(e, key, klen, string_style(key, klen)));
            TRY(emit_value(e, val, depth + 1));
        }
        if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(e, &ev)) {
            return WEFT_EINVAL;
        }
        return WEFT_OK;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *val;
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev)) {
            return WEFT_EINVAL;
        }
        json_array_foreach(v, i, val) { TRY(emit_value(e, val, depth + 1)); }
        if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(e, &ev)) {
            return WEFT_EINVAL;
        }
        return WEFT_OK;
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        return emit_scalar(e, s, len, string_style(s, len));
    }
    case JSON_INTEGER: {
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return emit_scalar(e, num, (size_t)n, YAML_PLAIN_SCALAR_STYLE);
    }
    case JSON_REAL: {
        double d = json_real_value(v);
        ENSURE(isfinite(d), WEFT_EINVAL);
        int n = snprintf(num, sizeof(num), "%.15g", d);
        if (strtod(num, NULL) != d) {
            n = snprintf(num, sizeof(num), "%.17g", d);
        }
        if (strpbrk(num, ".e") == NULL) {
            n += snprintf(num + n, sizeof(num) - (size_t)n, ".0"); /* stays a real */
        }
        return emit_scalar(e, num, (size_t)n, YAML_PLAIN_SCALAR_STYLE);
    }
    case JSON_TRUE:
        return emit_scalar(e, "true", 4, YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE:
        return emit_scalar(e, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL:
        return emit_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    }
    return WEFT_EINVAL;
}

int k8s_yaml_emit(char **out, size_t *out_len, const json_t *docs)
{
    struct outbuf o = {NULL, 0, 0};
    yaml_emitter_t e;
    yaml_event_t ev;
    int rc = WEFT_EINVAL;
    size_t i;
    json_t *doc;
    *out = NULL;
    *out_len = 0;
    ENSURE(json_is_array(docs), WEFT_EINVAL);
    if (!yaml_emitter_initialize(&e)) {
        return WEFT_EINTERNAL;
    }
    yaml_emitter_set_output(&e, write_handler, &o);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1); /* never fold long lines (annotations hold JSON) */
    yaml_emitter_set_indent(&e, 2);
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ||
        !yaml_emitter_emit(&e, &ev)) {
        goto out;
    }
    json_array_foreach(docs, i, doc)
    {
        if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 0) ||
            !yaml_emitter_emit(&e, &ev)) {
            goto out;
        }
        if ((rc = emit_value(&e, doc, 0)) != WEFT_OK) {
            goto out;
        }
        rc = WEFT_EINVAL;
        if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&e, &ev)) {
            goto out;
        }
    }
    if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&e, &ev) ||
        !yaml_emitter_flush(&e)) {
        goto out;
    }
    if (o.data == NULL) {
        write_handler(&o, (unsigned char *)"", 0);
    }
    *out = o.data;
    *out_len = o.len;
    o.data = NULL;
    rc = WEFT_OK;
out:
    yaml_emitter_delete(&e);
    free(o.data);
    return rc;
}
