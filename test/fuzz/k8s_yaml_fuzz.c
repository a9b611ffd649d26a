/* Fuzzes k8s/yamljson with YAML bytes, and k8s/inject with what they hold: a stream that parses
 * must write back as YAML that parses to the same documents, and every patch the injector makes
 * must apply to the object it was made for. */
#include <stdint.h>
#include <stdlib.h>

#include "k8s/inject.h"
#include "k8s/jsonpatch.h"
#include "k8s/yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *docs = NULL;
    char err[512];
    if (k8s_yaml_parse(&docs, data, size, err, sizeof(err)) != WEFT_OK) {
        if (docs != NULL || err[0] == '\0') {
            abort(); /* a refusal leaves nothing behind and says why */
        }
        return 0;
    }
    char *yaml;
    size_t len;
    json_t *back = NULL;
    if (k8s_yaml_emit(&yaml, &len, docs) != WEFT_OK ||
        k8s_yaml_parse(&back, (const uint8_t *)yaml, len, err, sizeof(err)) != WEFT_OK ||
        !json_equal(back, docs)) {
        abort();
    }
    free(yaml);
    json_decref(back);
    struct k8s_inject_opts opts;
    k8s_inject_opts_init(&opts);
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *doc = json_incref(json_array_get(docs, i)), *patch = NULL;
        const char *skipped;
        opts.native_sidecar = (i & 1) == 0;
        if (k8s_inject_patch(&patch, &skipped, doc, &opts, err, sizeof(err)) == WEFT_OK &&
            patch != NULL) {
            if (k8s_jsonpatch_apply(&doc, patch, err, sizeof(err)) != WEFT_OK) {
                abort();
            }
            json_decref(patch);
            /* injected once is injected */
            if (k8s_inject_patch(&patch, &skipped, doc, &opts, err, sizeof(err)) != WEFT_OK ||
                patch != NULL) {
                abort();
            }
        }
        json_decref(doc);
    }
    json_decref(docs);
    return 0;
}
