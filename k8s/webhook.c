/* k8s/webhook.c: one AdmissionReview in, one out (see webhook.h for what is answered when). */
#include "k8s/webhook.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>

#include "lib/base/mem.h"

static char *dup_str(const json_t *v);
static void set_reason(struct k8s_webhook_review *r, enum k8s_webhook_result result,
                       const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void respond(struct k8s_webhook_review *r, const char *api_version, const char *uid,
                    const json_t *patch, const char *warning);

const char *k8s_webhook_result_name(enum k8s_webhook_result r)
{
    switch (r) {
    case K8S_WEBHOOK_INJECTED:
        return "injected";
    case K8S_WEBHOOK_SKIPPED:
        return "skipped";
    case K8S_WEBHOOK_REFUSED:
        return "refused";
    case K8S_WEBHOOK_BAD_REQUEST:
        return "bad-request";
    }
    return "unknown";
}

void k8s_webhook_review_init(struct k8s_webhook_review *r) { memset(r, 0, sizeof(*r)); }

void k8s_webhook_review_cleanup(struct k8s_webhook_review *r)
{
    free(r->response);
    free(r->uid);
    free(r->namespace);
    free(r->kind);
    free(r->name);
    free(r->operation);
    memset(r, 0, sizeof(*r));
}

static char *dup_str(const json_t *v)
{
    const char *s = json_string_value(v);
    return s != NULL ? weft_xstrndup(s, strlen(s)) : NULL;
}

static void set_reason(struct k8s_webhook_review *r, enum k8s_webhook_result result,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    r->result = result;
}

/* respond writes the AdmissionReview answer: always allowed (webhook.h says why), with the
 * patch when there is one and a warning when injection was refused. */
static void respond(struct k8s_webhook_review *r, const char *api_version, const char *uid,
                    const json_t *patch, const char *warning)
{
    json_t *resp = json_object();
    json_object_set_new(resp, "uid", json_string(uid));
    json_object_set_new(resp, "allowed", json_true());
    if (patch != NULL) {
        char *text = json_dumps(patch, JSON_COMPACT);
        if (text == NULL) {
            abort(); /* jansson fails only when out of memory; weft_xmalloc's rule */
        }
        size_t text_len = strlen(text);
        size_t b64_len;
        if (!EVP_EncodedLength(&b64_len, text_len)) {
            abort();
        }
        char *b64 = weft_xmalloc(b64_len);
        EVP_EncodeBlock((uint8_t *)b64, (const uint8_t *)text, text_len);
        json_object_set_new(resp, "patchType", json_string("JSONPatch"));
        json_object_set_new(resp, "patch", json_string(b64));
        free(b64);
        free(text);
    }
    if (warning != NULL) {
        json_t *warnings = json_array();
        json_array_append_new(warnings, json_string(warning));
        json_object_set_new(resp, "warnings", warnings);
    }
    json_t *review = json_object();
    json_object_set_new(review, "apiVersion", json_string(api_version));
    json_object_set_new(review, "kind", json_string("AdmissionReview"));
    json_object_set_new(review, "response", resp);
    r->response = json_dumps(review, JSON_COMPACT);
    if (r->response == NULL) {
        abort();
    }
    r->response_len = strlen(r->response);
    json_decref(review);
}

/* json_tokens_over says whether the JSON text |s| (|len| bytes) holds more than |max| of the
 * tokens that make tree nodes ('{', '[', ',' and ':' outside strings), counted before jansson
 * builds the tree. Not a parser: text that is not JSON is jansson's to refuse. */
static bool json_tokens_over(const char *s, size_t len, size_t max)
{
    size_t n = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\') {
                i++; /* the escaped character, a quote included */
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if ((c == '{' || c == '[' || c == ',' || c == ':') && ++n > max) {
            return true;
        }
    }
    return false;
}

void k8s_webhook_review(struct k8s_webhook_review *out, const char *body, size_t len,
                        const struct k8s_inject_opts *opts)
{
    json_error_t jerr;
    json_t *root = NULL;
    json_t *patch = NULL;
    if (len > K8S_WEBHOOK_MAX_BODY) {
        set_reason(out, K8S_WEBHOOK_BAD_REQUEST, "body of %zu bytes is over the limit of %u", len,
                   K8S_WEBHOOK_MAX_BODY);
        goto out;
    }
    if (json_tokens_over(body, len, K8S_WEBHOOK_MAX_JSON_TOKENS)) {
        set_reason(out, K8S_WEBHOOK_BAD_REQUEST,
                   "body has over %u JSON values and keys, the limit (a pod spec has a few "
                   "thousand)",
                   K8S_WEBHOOK_MAX_JSON_TOKENS);
        goto out;
    }
    /* JSON_REJECT_DUPLICATES: two "uid" or two "object" keys would let us answer about a
     * different object than the API server meant. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_reason(out, K8S_WEBHOOK_BAD_REQUEST, "body is not JSON: %s at line %d column %d",
                   jerr.text, jerr.line, jerr.column);
        goto out;
    }
    const char *api = json_string_value(json_object_get(root, "apiVersion"));
    const char *kind = json_string_value(json_object_get(root, "kind"));
    if (api == NULL || kind == NULL || strcmp(kind, "AdmissionReview") != 0 ||
        (strcmp(api, "admission.k8s.io/v1") != 0 && strcmp(api, "admission.k8s.io/v1beta1") != 0)) {
        set_reason(out, K8S_WEBHOOK_BAD_REQUEST,
                   "not an AdmissionReview of admission.k8s.io/v1 or v1beta1 (apiVersion %.64s, "
                   "kind %.64s)",
                   api != NULL ? api : "missing", kind != NULL ? kind : "missing");
        goto out;
    }
    const json_t *req = json_object_get(root, "request");
    const char *uid = json_string_value(json_object_get(req, "uid"));
    if (!json_is_object(req) || uid == NULL || uid[0] == '\0' ||
        strlen(uid) > K8S_WEBHOOK_MAX_UID) {
        set_reason(out, K8S_WEBHOOK_BAD_REQUEST,
                   "AdmissionReview has no request, or its request.uid is missing, empty or "
                   "over %d bytes",
                   K8S_WEBHOOK_MAX_UID);
        goto out;
    }
    const json_t *obj = json_object_get(req, "object");
    const json_t *meta = json_object_get(obj, "metadata");
    out->uid = weft_xstrndup(uid, strlen(uid));
    out->namespace = dup_str(json_object_get(req, "namespace"));
    out->kind = dup_str(json_object_get(json_object_get(req, "kind"), "kind"));
    out->operation = dup_str(json_object_get(req, "operation"));
    const char *name = json_string_value(json_object_get(req, "name"));
    if (name == NULL || name[0] == '\0') {
        name = json_string_value(json_object_get(meta, "name"));
    }
    if (name == NULL || name[0] == '\0') {
        name = json_string_value(json_object_get(meta, "generateName"));
    }
    out->name = name != NULL ? weft_xstrndup(name, strlen(name)) : NULL;

    const char *sub = json_string_value(json_object_get(req, "subResource"));
    const char *warning = NULL;
    char warn_buf[sizeof(out->reason) + 64];
    if (out->operation == NULL || strcmp(out->operation, "CREATE") != 0) {
        set_reason(out, K8S_WEBHOOK_SKIPPED, "operation %.32s",
                   out->operation != NULL ? out->operation : "missing");
    } else if (json_is_true(json_object_get(req, "dryRun"))) {
        set_reason(out, K8S_WEBHOOK_SKIPPED, "dryRun");
    } else if (sub != NULL && sub[0] != '\0') {
        set_reason(out, K8S_WEBHOOK_SKIPPED, "subresource %.64s", sub);
    } else if (out->kind == NULL || strcmp(out->kind, "Pod") != 0) {
        set_reason(out, K8S_WEBHOOK_SKIPPED, "kind %.64s",
                   out->kind != NULL ? out->kind : "missing");
    } else if (!json_is_object(obj)) {
        set_reason(out, K8S_WEBHOOK_SKIPPED, "no object");
    } else {
        struct k8s_inject_opts o = *opts;
        if (out->namespace != NULL && out->namespace[0] != '\0') {
            o.namespace = out->namespace;
        }
        const char *skipped = NULL;
        char err[sizeof(out->reason)];
        err[0] = '\0';
        int rc = k8s_inject_patch(&patch, &skipped, obj, &o, err, sizeof(err));
        if (rc != WEFT_OK) {
            set_reason(out, K8S_WEBHOOK_REFUSED, "%s", err[0] != '\0' ? err : weft_strerror(rc));
            snprintf(warn_buf, sizeof(warn_buf),
                     "weft-injector: not injected, the pod runs "
                     "outside the mesh: %s",
                     out->reason);
            warning = warn_buf;
        } else if (patch == NULL) {
            set_reason(out, K8S_WEBHOOK_SKIPPED, "%s", skipped != NULL ? skipped : "left alone");
        } else {
            set_reason(out, K8S_WEBHOOK_INJECTED, "injected");
        }
    }
    respond(out, api, uid, patch, warning);
out:
    json_decref(patch);
    json_decref(root);
}
