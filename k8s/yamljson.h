/* k8s/yamljson.h: Kubernetes manifests between YAML and jansson JSON trees.
 *
 * Scalars resolve the way Kubernetes' own YAML reader does (sigs.k8s.io/yaml over go-yaml v2,
 * YAML 1.1 rules, with no type hints, as `kubectl apply -f` reads a file):
 *   - quoted, literal (|) and folded (>) scalars, and any scalar tagged !!str or "!", are strings;
 *   - plain ~, null, Null, NULL and the empty scalar are null;
 *   - plain y Y yes Yes YES true True TRUE on On ON are true, and n N no No NO false False FALSE
 *     off Off OFF are false (YAML 1.1: so an annotation written `weft.dev/inject: yes` is a
 *     boolean, which Kubernetes refuses for a string field; quote it);
 *   - plain integers (decimal, 0x hex, 0o or leading-0 octal, 0b binary, '_' ignored) are
 *     integers, and past int64 are reals; plain decimals with '.' or an exponent are reals;
 *     .inf and .nan are refused (JSON has no such numbers);
 *   - anything else is a string.
 * Mapping keys keep their order; a repeated key is an error; a key that is not a scalar is an
 * error. Anchors are ignored, aliases and merge keys (<<) are refused: they let a few bytes
 * expand into a huge tree, and no manifest of ours needs them.
 *
 * Writing YAML, a string that would read back as anything but the same string is quoted, so
 * k8s_yaml_parse(k8s_yaml_emit(docs)) == docs. Comments are not kept. */
#ifndef WEFT_K8S_YAMLJSON_H
#define WEFT_K8S_YAMLJSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/base/err.h"

#define K8S_YAML_MAX_INPUT (8 << 20) /* bytes of one YAML stream */
#define K8S_YAML_MAX_DEPTH 64        /* nested mappings and sequences */
#define K8S_YAML_MAX_NODES 500000    /* scalars, mappings and sequences in one stream */
#define K8S_YAML_MAX_DOCS 10000      /* documents in one stream */

/* k8s_yaml_parse reads every document of the YAML stream |data| (|len| bytes, need not be
 * NUL-terminated) into a new JSON array, one element per document (an empty document is a JSON
 * null), which the caller frees with json_decref. On failure it returns WEFT_EINVAL (bad YAML,
 * or YAML JSON cannot hold) or WEFT_ELIMIT (over a K8S_YAML_MAX_* limit), leaves |*out| NULL
 * and writes "line L column C: why" to |err|. */
WEFT_MUST_USE int k8s_yaml_parse(json_t **out, const uint8_t *data, size_t len, char *err,
                                 size_t err_len);

/* k8s_yaml_emit writes each element of the JSON array |docs| as a YAML document ("---" before
 * each) into a new NUL-terminated buffer |*out| of |*out_len| bytes, freed with free(). Reals
 * that are not finite are refused with WEFT_EINVAL; WEFT_ELIMIT past K8S_YAML_MAX_DEPTH. */
WEFT_MUST_USE int k8s_yaml_emit(char **out, size_t *out_len, const json_t *docs);

/* k8s_yaml_scalar_resolve returns the JSON value a plain (unquoted, untagged) scalar |s| of
 * |len| bytes means, as described above, or NULL when it is a number JSON cannot hold. */
json_t *k8s_yaml_scalar_resolve(const char *s, size_t len);

#endif
