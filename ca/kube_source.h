/* ca/kube_source.h: the CA's policy from the Kubernetes API (issue 8), behind the functions of
 * ca/policy_source.h (which dispatches here for `--policy-source kubernetes`).
 *
 * The watchers (ca/kube_client.h) feed a store of objects; each object is converted into one
 * policy file (ca/kube_watch.h: "k8s/<plural>/<namespace>/<name>.json") and validated alone
 * with the loader as it arrives. An invalid object is logged (kind, namespace/name,
 * resourceVersion, the loader's error with file:line:column), counted as a refusal and left
 * out; if an earlier version of it was valid, that version stays in the set. (Chosen over
 * dropping the object: an edit with a typo must not silently lift a DENY policy, and this is
 * what the directory source does for a bad file: the last good content stays in force.) A
 * DELETED event, or an object missing from a relist, removes the object and any kept version.
 *
 * ca_kube_source_poll, from the owner's thread, turns the store into a policy set when it
 * changed: nothing until every kind has been listed once (version 0, an empty set), then a new
 * version for each change. A set whose objects are each valid but that fails as a whole (two
 * MeshConfigs) is refused and the last good set stays, as for a directory. */
#ifndef WEFT_CA_KUBE_SOURCE_H
#define WEFT_CA_KUBE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "ca/kube_client.h"
#include "lib/base/err.h"
#include "policy/policy.h"

struct ca_kube_source;

/* ca_kube_source_new starts watching; NULL with |err| set when |cfg| is unusable. */
struct ca_kube_source *ca_kube_source_new(const struct ca_kube_config *cfg, char *err,
                                          size_t err_len);
void ca_kube_source_free(struct ca_kube_source *ks);

/* ca_kube_source_poll takes in what the watchers saw since the last poll. Returns WEFT_OK when
 * nothing changed or the change was accepted, WEFT_EINVAL when the new set was refused as a
 * whole (the last good set stays) or some objects are refused (left out). */
WEFT_MUST_USE int ca_kube_source_poll(struct ca_kube_source *ks);

/* ca_kube_source_synced reports whether every kind has been listed once. */
bool ca_kube_source_synced(struct ca_kube_source *ks);

const struct policy_set *ca_kube_source_current(const struct ca_kube_source *ks,
                                                uint64_t *out_version);
size_t ca_kube_source_num_files(const struct ca_kube_source *ks);
void ca_kube_source_file(const struct ca_kube_source *ks, size_t i, const char **name,
                         const uint8_t **data, size_t *len);

/* ca_kube_source_error says what is refused as of the last poll ("" when nothing): the first
 * refused object's error and how many are refused, or why the set was refused. */
const char *ca_kube_source_error(const struct ca_kube_source *ks);

/* ca_kube_source_refusals counts refused objects and refused sets since creation. */
uint64_t ca_kube_source_refusals(const struct ca_kube_source *ks);

/* ca_kube_source_failures counts failed API requests since creation. */
uint64_t ca_kube_source_failures(const struct ca_kube_source *ks);

#endif
