/* lib/base/metrics_test.c: the text exposition format, exactly, and updates from threads. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/metrics.h"

static char *render(struct weft_metrics *m)
{
    char *out;
    size_t len;
    cr_assert_eq(weft_metrics_write(m, &out, &len), WEFT_OK);
    cr_assert_eq(strlen(out), len);
    return out;
}

Test(metrics, counters_gauges_and_histograms_in_the_text_format)
{
    struct weft_metrics *m = weft_metrics_new();
    struct weft_label node = {"kind", "node"}, workload = {"kind", "workload"};
    struct weft_counter *issued_node =
        weft_metrics_counter(m, "weft_ca_issued_total", "SVIDs issued.", &node, 1);
    struct weft_counter *issued_wl =
        weft_metrics_counter(m, "weft_ca_issued_total", "SVIDs issued.", &workload, 1);
    cr_assert_not_null(issued_node);
    cr_assert_eq(weft_metrics_counter(m, "weft_ca_issued_total", "x", &node, 1), issued_node,
                 "the same name and labels are the same counter");
    weft_counter_add(issued_node, 2);
    weft_counter_add(issued_wl, 40);
    struct weft_gauge *agents =
        weft_metrics_gauge(m, "weft_ca_agents", "Agents connected.", NULL, 0);
    weft_gauge_set(agents, 3);
    weft_gauge_add(agents, -1);
    static const double bounds[] = {0.001, 0.01, 0.1};
    struct weft_histogram *lat =
        weft_metrics_histogram(m, "weft_ca_sign_seconds", "Sign latency.", NULL, 0, bounds, 3);
    weft_histogram_observe(lat, 0.0005);
    weft_histogram_observe(lat, 0.05);
    weft_histogram_observe(lat, 2);
    char *out = render(m);
    cr_assert_str_eq(out, "# HELP weft_ca_issued_total SVIDs issued.\n"
                          "# TYPE weft_ca_issued_total counter\n"
                          "weft_ca_issued_total{kind=\"node\"} 2\n"
                          "weft_ca_issued_total{kind=\"workload\"} 40\n"
                          "# HELP weft_ca_agents Agents connected.\n"
                          "# TYPE weft_ca_agents gauge\n"
                          "weft_ca_agents 2\n"
                          "# HELP weft_ca_sign_seconds Sign latency.\n"
                          "# TYPE weft_ca_sign_seconds histogram\n"
                          "weft_ca_sign_seconds_bucket{le=\"0.001\"} 1\n"
                          "weft_ca_sign_seconds_bucket{le=\"0.01\"} 1\n"
                          "weft_ca_sign_seconds_bucket{le=\"0.10000000000000001\"} 2\n"
                          "weft_ca_sign_seconds_bucket{le=\"+Inf\"} 3\n"
                          "weft_ca_sign_seconds_sum 2.0505\n"
                          "weft_ca_sign_seconds_count 3\n");
    free(out);
    weft_metrics_free(m);
}

Test(metrics, label_values_and_help_are_escaped)
{
    struct weft_metrics *m = weft_metrics_new();
    struct weft_label l = {"reason", "bad \"id\"\\\nx"};
    weft_counter_add(weft_metrics_counter(m, "refused_total", "line\none \\ two", &l, 1), 1);
    char *out = render(m);
    cr_assert_str_eq(out, "# HELP refused_total line\\none \\\\ two\n"
                          "# TYPE refused_total counter\n"
                          "refused_total{reason=\"bad \\\"id\\\"\\\\\\nx\"} 1\n");
    free(out);
    weft_metrics_free(m);
}

Test(metrics, refuses_what_would_break_the_format)
{
    struct weft_metrics *m = weft_metrics_new();
    struct weft_label bad = {"a-b", "x"}, le = {"le", "1"}, reserved = {"__x", "1"};
    cr_assert_null(weft_metrics_counter(m, "9lives", "", NULL, 0));
    cr_assert_null(weft_metrics_counter(m, "a b", "", NULL, 0));
    cr_assert_null(weft_metrics_counter(m, "ok", "", &bad, 1));
    cr_assert_null(weft_metrics_histogram(m, "h", "", &le, 1, NULL, 0));
    cr_assert_null(weft_metrics_counter(m, "ok", "", &reserved, 1));
    cr_assert_not_null(weft_metrics_counter(m, "c", "", NULL, 0));
    cr_assert_null(weft_metrics_gauge(m, "c", "", NULL, 0), "one name, one type");
    static const double b1[] = {1, 2}, b2[] = {1, 3}, unordered[] = {2, 1};
    cr_assert_not_null(weft_metrics_histogram(m, "h", "", NULL, 0, b1, 2));
    cr_assert_null(weft_metrics_histogram(m, "h", "", NULL, 0, b2, 2),
                   "one family, one bucket set");
    cr_assert_null(weft_metrics_histogram(m, "h2", "", NULL, 0, unordered, 2));
    struct weft_label five[5] = {{"a", "1"}, {"b", "1"}, {"c", "1"}, {"d", "1"}, {"e", "1"}};
    cr_assert_not_null(weft_metrics_counter(m, "four", "", five, 4));
    cr_assert_null(weft_metrics_counter(m, "five", "", five, 5), "one label past the limit");
    weft_metrics_free(m);
}

static void *add_many(void *arg)
{
    for (int i = 0; i < 100000; i++) {
        weft_counter_add(arg, 1);
    }
    return NULL;
}

Test(metrics, updates_from_threads_are_all_counted)
{
    struct weft_metrics *m = weft_metrics_new();
    struct weft_counter *c = weft_metrics_counter(m, "n", "", NULL, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pthread_create(&t[i], NULL, add_many, c), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    char *out = render(m);
    cr_assert_not_null(strstr(out, "\nn 200000\n"), "%s", out);
    free(out);
    weft_metrics_free(m);
}
