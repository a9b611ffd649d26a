/* lib/base/metrics.h: Prometheus metrics (DESIGN.md §7), written in the text exposition format
 * 0.0.4 that every scraper reads.
 *
 * A registry holds counters, gauges and histograms, each a family name with optional labels.
 * Registration takes a lock and happens at start-up; updates are lock-free atomics, safe from
 * any thread, and cost a few nanoseconds on the hot path. Label values are escaped when
 * written, so a value a peer influences (a SPIFFE ID, a reason) cannot break the format. */
#ifndef WEFT_LIB_BASE_METRICS_H
#define WEFT_LIB_BASE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define WEFT_METRICS_MAX_LABELS 4
#define WEFT_METRICS_MAX_BUCKETS 16

struct weft_metrics;
struct weft_counter;
struct weft_gauge;
struct weft_histogram;

/* struct weft_label is one label; the registry copies both strings. */
struct weft_label {
    const char *name;
    const char *value;
};

struct weft_metrics *weft_metrics_new(void);
void weft_metrics_free(struct weft_metrics *m);

/* weft_metrics_counter returns the counter |name|{labels}, registering it (with |help|) the
 * first time; the same name and labels give the same counter. NULL when |name| or a label name
 * is not a Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*, labels without ':'), when the name is
 * already a family of another type, or past WEFT_METRICS_MAX_LABELS labels. */
struct weft_counter *weft_metrics_counter(struct weft_metrics *m, const char *name,
                                          const char *help, const struct weft_label *labels,
                                          size_t num_labels);
struct weft_gauge *weft_metrics_gauge(struct weft_metrics *m, const char *name, const char *help,
                                      const struct weft_label *labels, size_t num_labels);

/* weft_metrics_histogram also takes the upper bounds of its buckets, strictly increasing (at most
 * WEFT_METRICS_MAX_BUCKETS; +Inf is implied). A family's buckets are those of its first
 * histogram; another set of bounds for the same name returns NULL. */
struct weft_histogram *weft_metrics_histogram(struct weft_metrics *m, const char *name,
                                              const char *help, const struct weft_label *labels,
                                              size_t num_labels, const double *bounds,
                                              size_t num_bounds);

void weft_counter_add(struct weft_counter *c, uint64_t n);
void weft_gauge_set(struct weft_gauge *g, double v);
void weft_gauge_add(struct weft_gauge *g, double delta);
void weft_histogram_observe(struct weft_histogram *h, double v);

/* weft_metrics_write renders every family, in registration order, into a new NUL-terminated
 * buffer the caller frees with free(). */
WEFT_MUST_USE int weft_metrics_write(struct weft_metrics *m, char **out, size_t *out_len);

#endif
