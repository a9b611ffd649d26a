/* Fuzzes the snapshot decoder: what an agent or proxy receives from upstream. A snapshot that
 * decodes must evaluate, and encode to bytes that decode again. */
#include <stdint.h>
#include <stdlib.h>

#include "policy/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_snapshot *snap = NULL;
    char why[256];
    if (policy_snapshot_decode(&snap, data, size, why, sizeof(why)) != WEFT_OK) {
        if (snap != NULL || why[0] == '\0') {
            abort();
        }
        return 0;
    }
    static const char *const peers[] = {NULL, "spiffe://td/ns/a/sa/b", "spiffe://td/x"};
    for (size_t i = 0; i < 3; i++) {
        struct policy_request req = {peers[i], (uint16_t)(1 + i * 4000)};
        struct policy_result r;
        policy_eval(snap, &req, &r);
    }
    uint8_t *wire;
    size_t len;
    struct policy_snapshot *again = NULL;
    if (policy_snapshot_encode(&wire, &len, snap) != WEFT_OK ||
        policy_snapshot_decode(&again, wire, len, why, sizeof(why)) != WEFT_OK) {
        abort();
    }
    free(wire);
    policy_snapshot_free(again);
    policy_snapshot_free(snap);
    return 0;
}
