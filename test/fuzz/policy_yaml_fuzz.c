/* Fuzzes the policy loader: YAML bytes in, a validated set (or located errors) out. A set that
 * loads must compile for a workload and decide a few requests without tripping anything. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "policy/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_set set;
    policy_set_init(&set);
    int rc = policy_set_load_buffer(&set, "fuzz.yaml", data, size);
    if (policy_set_finish(&set) == WEFT_OK && rc == WEFT_OK) {
        static const char *const keys[] = {"app"}, *const values[] = {"backend"};
        struct policy_workload w = {"shop", "backend", keys, values, 1};
        struct policy_config cfg;
        struct policy_snapshot *snap = NULL;
        policy_config_resolve(&cfg, &set);
        if (policy_compile(&snap, &set, &cfg, &w) != WEFT_OK) {
            abort();
        }
        static const char *const peers[] = {NULL, "spiffe://cluster.local/ns/shop/sa/frontend",
                                            "spiffe://cluster.local/ns/ops/sa/x/y"};
        for (size_t i = 0; i < 3; i++) {
            struct policy_request req = {peers[i], (uint16_t)(8080 + i)};
            struct policy_result r;
            policy_eval(snap, &req, &r);
            char line[2048];
            policy_result_format(line, sizeof(line), snap, &r);
        }
        /* what compiles also survives the wire */
        uint8_t *wire;
        size_t len;
        struct policy_snapshot *back = NULL;
        char why[256];
        if (policy_snapshot_encode(&wire, &len, snap) != WEFT_OK ||
            policy_snapshot_decode(&back, wire, len, why, sizeof(why)) != WEFT_OK) {
            abort();
        }
        free(wire);
        policy_snapshot_free(back);
        policy_snapshot_free(snap);
    } else if (set.num_errors == 0 && set.num_errors_dropped == 0) {
        abort(); /* a refusal always says why */
    }
    policy_set_cleanup(&set);
    return 0;
}
