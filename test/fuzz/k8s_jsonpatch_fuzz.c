/* Fuzzes the JSON Patch applier: the input is a JSON object {"doc": ..., "patch": [...]}. A
 * patch either applies whole or leaves the document exactly as it was. */
#include <stdint.h>
#include <stdlib.h>

#include "k8s/jsonpatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (in == NULL) {
        return 0;
    }
    json_t *doc = json_incref(json_object_get(in, "doc"));
    if (doc == NULL) {
        doc = json_null();
    }
    json_t *orig = json_deep_copy(doc);
    char err[512];
    if (k8s_jsonpatch_apply(&doc, json_object_get(in, "patch"), err, sizeof(err)) != WEFT_OK &&
        !json_equal(doc, orig)) {
        abort();
    }
    json_decref(orig);
    json_decref(doc);
    json_decref(in);
    return 0;
}
