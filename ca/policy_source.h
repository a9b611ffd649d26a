/* ca/policy_source.h: the CA's embedded policy source (issue 4): a directory of policy YAML,
 * watched for changes. A change that loads without error becomes the current set with a new
 * version; a change with an error is reported (ca_policy_source_error) and the last good set
 * stays in force. The Kubernetes API source will sit behind the same functions.
 *
 * Watching is by fingerprint: ca_policy_source_poll reads the files the loader would read once,
 * hashes their names, sizes and contents, and loads those same bytes only when the hash
 * changed (so what is accepted is exactly what was fingerprinted). Polling every few seconds
 * notices editors that write in place and those that rename over the file, on any filesystem,
 * with no inotify limits to run into. Not thread-safe: one owner polls it.
 *
 * The Kubernetes API source (issue 8, ca/kube_source.h) sits behind the same functions: made
 * with ca_policy_source_new_kube, its files are the policy custom resources of the cluster, one
 * file per object, and its refusals count objects refused one by one. */
#ifndef WEFT_CA_POLICY_SOURCE_H
#define WEFT_CA_POLICY_SOURCE_H

#include <stdint.h>

#include "lib/base/err.h"
#include "policy/policy.h"

struct ca_policy_source;
struct ca_kube_config;

/* ca_policy_source_new watches |dir| (it may not exist yet: an empty set until it does). */
struct ca_policy_source *ca_policy_source_new(const char *dir);
void ca_policy_source_free(struct ca_policy_source *src);

/* ca_policy_source_new_kube lists and watches the cluster's weft policy objects (from other
 * threads; the set changes only in ca_policy_source_poll). Returns NULL with |err| set when
 * |cfg| is unusable. Until every kind has been listed once the set is empty, version 0. */
struct ca_policy_source *ca_policy_source_new_kube(const struct ca_kube_config *cfg, char *err,
                                                   size_t err_len);

/* ca_policy_source_poll looks at the directory and reloads it if it changed. Returns WEFT_OK
 * when nothing changed or the change was accepted (the version went up), WEFT_EINVAL when the
 * new content was refused (the last good set stays; see ca_policy_source_error), and WEFT_EIO
 * when it was refused because this process may not read the directory, a directory in it or
 * one of its files (the last good set stays; the error names the path, errno and the user it
 * reads as). Only "no such directory" counts as a directory not there yet. Refusals are logged,
 * an unreadable path as a warning, except on the first poll, whose caller decides. */
WEFT_MUST_USE int ca_policy_source_poll(struct ca_policy_source *src);

/* ca_policy_source_current returns the set in force (never NULL; empty before any good load)
 * and its version in |*out_version| (0 before the first good load). */
const struct policy_set *ca_policy_source_current(const struct ca_policy_source *src,
                                                  uint64_t *out_version);

/* ca_policy_source_num_files and ca_policy_source_file give the files the set in force was
 * loaded from, exactly as read (what WatchNode sends agents): file |i|'s name relative to the
 * directory and its bytes, valid until the next poll. */
size_t ca_policy_source_num_files(const struct ca_policy_source *src);
void ca_policy_source_file(const struct ca_policy_source *src, size_t i, const char **name,
                           const uint8_t **data, size_t *len);

/* ca_policy_source_error returns why the latest content was refused ("" when it was not):
 * the first error with FILE:LINE:COLUMN and the number of errors. */
const char *ca_policy_source_error(const struct ca_policy_source *src);

/* ca_policy_source_refusals counts refused changes since creation (a metric). */
uint64_t ca_policy_source_refusals(const struct ca_policy_source *src);

/* ca_policy_source_api_failures counts failed Kubernetes API requests (0 for a directory). */
uint64_t ca_policy_source_api_failures(const struct ca_policy_source *src);

#endif
