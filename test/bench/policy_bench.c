/* policy_bench: decisions per second against snapshots compiled from 1, 100 and 10,000
 * policies that all select the destination, each allowing one exact principal (plus a few
 * prefix and namespace rules). Prints each rate and its ratio to the 1-policy baseline measured
 * in the same run. Every loop is bounded in count and in time.
 *
 *   bazel run -c opt //test/bench:policy_bench */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/policy.h"
#include "policy/snapshot.h"

#define MAX_DECISIONS 20000000L
#define MAX_SECONDS 2.0

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* make_policies writes |n| AuthorizationPolicies for shop/backend as one YAML stream. */
static char *make_policies(size_t n, size_t *out_len)
{
    size_t cap = 512 * (n + 1), len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        char from_buf[128];
        if (i % 50 == 49) {
            snprintf(from_buf, sizeof(from_buf), "namespaces: [\"ns%zu\"]", i);
        } else if (i % 50 == 48) {
            snprintf(from_buf, sizeof(from_buf),
                     "principals: [\"spiffe://cluster.local/ns/p%zu/*\"]", i);
        } else {
            snprintf(from_buf, sizeof(from_buf),
                     "principals: [\"spiffe://cluster.local/ns/n%zu/sa/c\"]", i);
        }
        len += (size_t)snprintf(buf + len, cap - len,
                                "apiVersion: security.weft.dev/v1alpha1\n"
                                "kind: AuthorizationPolicy\n"
                                "metadata: {name: p%zu, namespace: shop}\n"
                                "spec:\n"
                                "  action: ALLOW\n"
                                "  rules:\n"
                                "  - from:\n"
                                "    - %s\n"
                                "    to:\n"
                                "    - ports: [\"8080\"]\n"
                                "---\n",
                                i, from_buf);
    }
    *out_len = len;
    return buf;
}

static double bench(size_t n, unsigned *out_lookups)
{
    size_t len;
    char *yaml = make_policies(n, &len);
    struct policy_set set;
    policy_set_init(&set);
    if (policy_set_load_buffer(&set, "bench.yaml", (const uint8_t *)yaml, len) != WEFT_OK ||
        policy_set_finish(&set) != WEFT_OK) {
        fprintf(stderr, "policy_bench: generated policies do not load: %s\n",
                set.num_errors ? set.errors[0].text : "?");
        exit(1);
    }
    free(yaml);
    struct policy_config cfg;
    policy_config_resolve(&cfg, &set);
    struct policy_workload w = {"shop", "backend", NULL, NULL, 0};
    struct policy_snapshot *snap;
    if (policy_compile(&snap, &set, &cfg, &w) != WEFT_OK) {
        exit(1);
    }
    /* A mix: a matching exact principal, a non-matching peer, a prefix match. */
    char peers[3][128];
    snprintf(peers[0], sizeof(peers[0]), "spiffe://cluster.local/ns/n%zu/sa/c", n / 2 - n / 2 % 50);
    snprintf(peers[1], sizeof(peers[1]), "spiffe://cluster.local/ns/elsewhere/sa/x");
    snprintf(peers[2], sizeof(peers[2]), "spiffe://cluster.local/ns/p48/sa/y");
    long done = 0, allowed = 0;
    unsigned lookups = 0;
    double start = now(), elapsed = 0;
    while (done < MAX_DECISIONS && elapsed < MAX_SECONDS) {
        for (int i = 0; i < 3000; i++, done++) {
            struct policy_request req = {peers[i % 3], 8080};
            struct policy_result r;
            policy_eval(snap, &req, &r);
            allowed += r.enforced.decision == POLICY_ALLOW;
            lookups = r.lookups > lookups ? r.lookups : lookups;
        }
        elapsed = now() - start;
    }
    if (allowed == 0) {
        fprintf(stderr, "policy_bench: nothing was allowed; the benchmark is broken\n");
        exit(1);
    }
    policy_snapshot_free(snap);
    policy_set_cleanup(&set);
    *out_lookups = lookups;
    return (double)done / elapsed;
}

int main(void)
{
    static const size_t sizes[] = {1, 100, 10000};
    double base = 0;
    printf("%-10s %16s %12s %14s\n", "policies", "decisions/s", "vs 1 policy", "max lookups");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned lookups;
        double rate = bench(sizes[i], &lookups);
        if (i == 0) {
            base = rate;
        }
        printf("%-10zu %16.0f %11.2fx %14u\n", sizes[i], rate, rate / base, lookups);
    }
    return 0;
}
