/* k8s/jsonpatch.h: JSON Patch (RFC 6902) with JSON Pointer paths (RFC 6901), the form in which
 * a mutating admission webhook answers, built and applied on jansson trees. */
#ifndef WEFT_K8S_JSONPATCH_H
#define WEFT_K8S_JSONPATCH_H

#include <stddef.h>

#include <jansson.h>

#include "lib/base/err.h"

#define K8S_PATCH_MAX_OPS 10000  /* operations in one patch */
#define K8S_PATCH_MAX_PATH 4096  /* bytes of one JSON Pointer */
#define K8S_PATCH_MAX_TOKENS 128 /* reference tokens in one JSON Pointer */

/* k8s_jsonpatch_path returns a new JSON Pointer (free with free()) made of |base| (itself a
 * pointer, "" for the root) and the reference token |token|, escaped as RFC 6901 §3 asks:
 * "~" becomes "~0" and "/" becomes "~1" ("weft.dev/status" -> "/weft.dev~1status"). */
char *k8s_jsonpatch_path(const char *base, const char *token);

/* k8s_jsonpatch_path_index returns k8s_jsonpatch_path(base, the decimal |index|). */
char *k8s_jsonpatch_path_index(const char *base, size_t index);

/* k8s_jsonpatch_append appends {"op": |op|, "path": |path|, "value": |value|} to the array
 * |patch|. It takes the reference to |value|; |value| is NULL for "remove". */
void k8s_jsonpatch_append(json_t *patch, const char *op, const char *path, json_t *value);

/* k8s_jsonpatch_apply applies the RFC 6902 patch |patch| (an array of operations "add",
 * "remove", "replace" and "test"; "move" and "copy" are refused) to |*doc|. It is all or
 * nothing: on success |*doc| is replaced by the patched document (the old reference is
 * released); on failure |*doc| is untouched, and |err| says which operation failed and why.
 * Returns WEFT_OK, WEFT_EINVAL or WEFT_ELIMIT (over a K8S_PATCH_MAX_* limit). */
WEFT_MUST_USE int k8s_jsonpatch_apply(json_t **doc, const json_t *patch, char *err, size_t err_len);

#endif
