/* Prometheus metrics: a registry of families, lock-free updates, text exposition. */
#include "lib/base/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

struct series {
    struct series *next;
    struct weft_label labels[WEFT_METRICS_MAX_LABELS];
    size_t num_labels;
    _Atomic uint64_t count;                             /* counter; histogram observations */
    _Atomic uint64_t bits;                              /* gauge value; histogram sum (a double) */
    _Atomic uint64_t buckets[WEFT_METRICS_MAX_BUCKETS]; /* histogram: observations <= bound */
};

struct family {
    struct family *next;
    char *name, *help;
    enum kind kind;
    double bounds[WEFT_METRICS_MAX_BUCKETS];
    size_t num_bounds;
    struct series *series, *last;
};

struct weft_metrics {
    pthread_mutex_t mu;
    struct family *families, *last;
};

/* The public handles are the series themselves. */
struct weft_counter {
    struct series s;
};
struct weft_gauge {
    struct series s;
};
struct weft_histogram {
    struct series s;
    const struct family *f;
};

static bool valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

struct weft_metrics *weft_metrics_new(void)
{
    struct weft_metrics *m = weft_xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void series_free(struct series *s)
{
    for (size_t i = 0; i < s->num_labels; i++) {
        free((char *)s->labels[i].name);
        free((char *)s->labels[i].value);
    }
    free(s);
}

void weft_metrics_free(struct weft_metrics *m)
{
    if (m == NULL) {
        return;
    }
    for (struct family *f = m->families, *next; f != NULL; f = next) {
        next = f->next;
        for (struct series *s = f->series, *sn; s != NULL; s = sn) {
            sn = s->next;
            series_free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static bool same_labels(const struct series *s, const struct weft_label *labels, size_t n)
{
    if (s->num_labels != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->labels[i].name, labels[i].name) != 0 ||
            strcmp(s->labels[i].value, labels[i].value) != 0) {
            return false;
        }
    }
    return true;
}

/* get finds or registers the series |name|{labels} of |kind|. Series are allocated with room for
 * the largest handle (the histogram's), so one allocation serves every kind. */
static struct series *get(struct weft_metrics *m, enum kind kind, const char *name,
                          const char *help, const struct weft_label *labels, size_t n,
                          const double *bounds, size_t num_bounds, struct family **out_f)
{
    if (!valid_name(name, true) || n > WEFT_METRICS_MAX_LABELS ||
        num_bounds > WEFT_METRICS_MAX_BUCKETS) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!valid_name(labels[i].name, false) || labels[i].value == NULL ||
            strncmp(labels[i].name, "__", 2) == 0 || strcmp(labels[i].name, "le") == 0) {
            return NULL;
        }
    }
    for (size_t i = 1; i < num_bounds; i++) {
        if (!(bounds[i] > bounds[i - 1])) {
            return NULL;
        }
    }
    pthread_mutex_lock(&m->mu);
    struct family *f = m->families;
    while (f != NULL && strcmp(f->name, name) != 0) {
        f = f->next;
    }
    struct series *s = NULL;
    if (f == NULL) {
        f = weft_xcalloc(1, sizeof(*f));
        f->name = weft_xstrndup(name, strlen(name));
        f->help = weft_xstrndup(help != NULL ? help : "", strlen(help != NULL ? help : ""));
        f->kind = kind;
        if (num_bounds > 0) {
            memcpy(f->bounds, bounds, num_bounds * sizeof(*bounds));
        }
        f->num_bounds = num_bounds;
        if (m->last != NULL) {
            m->last->next = f;
        } else {
            m->families = f;
        }
        m->last = f;
    } else if (f->kind != kind ||
               (kind == KIND_HISTOGRAM &&
                (f->num_bounds != num_bounds ||
                 (num_bounds > 0 &&
                  memcmp(f->bounds, bounds, num_bounds * sizeof(*bounds)) != 0)))) {
        pthread_mutex_unlock(&m->mu);
        return NULL;
    }
    for (s = f->series; s != NULL && !same_labels(s, labels, n); s = s->next) {
    }
    if (s == NULL) {
        s = weft_xcalloc(1, sizeof(struct weft_histogram));
        for (size_t i = 0; i < n; i++) {
            s->labels[i].name = weft_xstrndup(labels[i].name, strlen(labels[i].name));
            s->labels[i].value = weft_xstrndup(labels[i].value, strlen(labels[i].value));
        }
        s->num_labels = n;
        if (f->last != NULL) {
            f->last->next = s;
        } else {
            f->series = s;
        }
        f->last = s;
    }
    pthread_mutex_unlock(&m->mu);
    *out_f = f;
    return s;
}

struct weft_counter *weft_metrics_counter(struct weft_metrics *m, const char *name,
                                          const char *help, const struct weft_label *labels,
                                          size_t num_labels)
{
    struct family *f;
    return (struct weft_counter *)get(m, KIND_COUNTER, name, help, labels, num_labels, NULL, 0, &f);
}

struct weft_gauge *weft_metrics_gauge(struct weft_metrics *m, const char *name, const char *help,
                                      const struct weft_label *labels, size_t num_labels)
{
    struct family *f;
    return (struct weft_gauge *)get(m, KIND_GAUGE, name, help, labels, num_labels, NULL, 0, &f);
}

struct weft_histogram *weft_metrics_histogram(struct weft_metrics *m, const char *name,
                                              const char *help, const struct weft_label *labels,
                                              size_t num_labels, const double *bounds,
                                              size_t num_bounds)
{
    struct family *f = NULL;
    struct weft_histogram *h = (struct weft_histogram *)get(m, KIND_HISTOGRAM, name, help, labels,
                                                            num_labels, bounds, num_bounds, &f);
    if (h != NULL) {
        h->f = f;
    }
    return h;
}

void weft_counter_add(struct weft_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->s.count, n, memory_order_relaxed);
}

static uint64_t to_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

/* add_double adds |delta| to the double stored in |bits| (a compare-and-swap loop). */
static void add_double(_Atomic uint64_t *bits, double delta)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, to_bits(from_bits(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void weft_gauge_set(struct weft_gauge *g, double v)
{
    atomic_store_explicit(&g->s.bits, to_bits(v), memory_order_relaxed);
}

void weft_gauge_add(struct weft_gauge *g, double delta) { add_double(&g->s.bits, delta); }

void weft_histogram_observe(struct weft_histogram *h, double v)
{
    for (size_t i = 0; i < h->f->num_bounds; i++) {
        if (v <= h->f->bounds[i]) {
            atomic_fetch_add_explicit(&h->s.buckets[i], 1, memory_order_relaxed);
        }
    }
    atomic_fetch_add_explicit(&h->s.count, 1, memory_order_relaxed);
    add_double(&h->s.bits, v);
}

/* --- exposition --------------------------------------------------------------------------- */

struct out {
    char *buf;
    size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        o->cap = o->cap * 2 + (n > 0 ? (size_t)n : 0);
        o->buf = weft_xrealloc(o->buf, o->cap);
    }
}

/* put_escaped writes |s| with \, " and newlines escaped (the exposition format's rules; HELP
 * text escapes only \ and newlines). */
static void put_escaped(struct out *o, const char *s, bool quotes)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\') {
            put(o, "\\\\");
        } else if (*p == '\n') {
            put(o, "\\n");
        } else if (*p == '"' && quotes) {
            put(o, "\\\"");
        } else {
            put(o, "%c", *p);
        }
    }
}

static void put_number(struct out *o, double v)
{
    if (isnan(v)) {
        put(o, "NaN");
    } else if (isinf(v)) {
        put(o, v > 0 ? "+Inf" : "-Inf");
    } else {
        put(o, "%.17g", v);
    }
}

/* put_labels writes {a="x",b="y"} plus an optional le="bound" (NULL: none). */
static void put_labels(struct out *o, const struct series *s, const char *le)
{
    if (s->num_labels == 0 && le == NULL) {
        return;
    }
    put(o, "{");
    for (size_t i = 0; i < s->num_labels; i++) {
        put(o, "%s%s=\"", i ? "," : "", s->labels[i].name);
        put_escaped(o, s->labels[i].value, true);
        put(o, "\"");
    }
    if (le != NULL) {
        put(o, "%sle=\"%s\"", s->num_labels ? "," : "", le);
    }
    put(o, "}");
}

int weft_metrics_write(struct weft_metrics *m, char **out, size_t *out_len)
{
    struct out o = {weft_xmalloc(4096), 0, 4096};
    o.buf[0] = '\0';
    static const char *const types[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&m->mu);
    for (const struct family *f = m->families; f != NULL; f = f->next) {
        put(&o, "# HELP %s ", f->name);
        put_escaped(&o, f->help, false);
        put(&o, "\n# TYPE %s %s\n", f->name, types[f->kind]);
        for (const struct series *s = f->series; s != NULL; s = s->next) {
            uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
            double value = from_bits(atomic_load_explicit(&s->bits, memory_order_relaxed));
            if (f->kind == KIND_COUNTER) {
                put(&o, "%s", f->name);
                put_labels(&o, s, NULL);
                put(&o, " %llu\n", (unsigned long long)count);
                continue;
            }
            if (f->kind == KIND_GAUGE) {
                put(&o, "%s", f->name);
                put_labels(&o, s, NULL);
                put(&o, " ");
                put_number(&o, value);
                put(&o, "\n");
                continue;
            }
            for (size_t i = 0; i < f->num_bounds; i++) {
                char le[40];
                snprintf(le, sizeof(le), "%.17g", f->bounds[i]);
                put(&o, "%s_bucket", f->name);
                put_labels(&o, s, le);
                put(&o, " %llu\n",
                    (unsigned long long)atomic_load_explicit(&s->buckets[i], memory_order_relaxed));
            }
            put(&o, "%s_bucket", f->name);
            put_labels(&o, s, "+Inf");
            put(&o, " %llu\n%s_sum", (unsigned long long)count, f->name);
            put_labels(&o, s, NULL);
            put(&o, " ");
            put_number(&o, value);
            put(&o, "\n%s_count", f->name);
            put_labels(&o, s, NULL);
            put(&o, " %llu\n", (unsigned long long)count);
        }
    }
    pthread_mutex_unlock(&m->mu);
    *out = o.buf;
    *out_len = o.len;
    return WEFT_OK;
}
