/* Fuzzes weft-injector's AdmissionReview handling (k8s_webhook_review), without TLS: the input
 * is the POST body. Every answer that is not a bad request is an AdmissionReview that allows
 * the object, and its patch, decoded, applies to the request's object. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>

#include "k8s/jsonpatch.h"
#include "k8s/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_patch(const json_t *request, const char *b64)
{
    size_t max, len;
    if (!EVP_DecodedLength(&max, strlen(b64))) {
        abort();
    }
    uint8_t *raw = malloc(max > 0 ? max : 1);
    if (!EVP_DecodeBase64(raw, &len, max, (const uint8_t *)b64, strlen(b64))) {
        abort();
    }
    json_t *patch = json_loadb((const char *)raw, len, 0, NULL);
    free(raw);
    json_t *obj = json_deep_copy(json_object_get(json_object_get(request, "request"), "object"));
    char err[512];
    if (patch == NULL || obj == NULL ||
        k8s_jsonpatch_apply(&obj, patch, err, sizeof(err)) != WEFT_OK) {
        abort();
    }
    json_decref(obj);
    json_decref(patch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct k8s_inject_opts opts;
    k8s_inject_opts_init(&opts);
    struct k8s_webhook_review r;
    k8s_webhook_review_init(&r);
    k8s_webhook_review(&r, (const char *)data, size, &opts);
    if (r.result == K8S_WEBHOOK_BAD_REQUEST) {
        if (r.response != NULL) {
            abort();
        }
    } else {
        json_t *out = json_loadb(r.response, r.response_len, 0, NULL);
        const json_t *resp = json_object_get(out, "response");
        if (out == NULL || !json_is_true(json_object_get(resp, "allowed")) ||
            (r.result == K8S_WEBHOOK_INJECTED) != (json_object_get(resp, "patch") != NULL)) {
            abort();
        }
        if (r.result == K8S_WEBHOOK_INJECTED) {
            json_t *in = json_loadb((const char *)data, size, 0, NULL);
            check_patch(in, json_string_value(json_object_get(resp, "patch")));
            json_decref(in);
        }
        json_decref(out);
    }
    k8s_webhook_review_cleanup(&r);
    return 0;
}
