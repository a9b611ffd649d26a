/* ca/kube_client.h: list + watch of weft's policy custom resources from the Kubernetes API
 * (reference/kubernetes.md §5.1, §5.2), over libcurl (GnuTLS flavour: the OpenSSL one would
 * clash with BoringSSL's symbols in our process).
 *
 * One thread per kind LISTs the kind cluster-wide (paginated with limit/continue), then WATCHes
 * from the list's resourceVersion with allowWatchBookmarks. ADDED and MODIFIED objects and
 * DELETED ones go to the sink; a BOOKMARK only moves the resourceVersion; a 410 (an ERROR event
 * or the HTTP status at watch start) relists; any other failure reconnects after an exponential
 * backoff with jitter, resuming the watch from the last resourceVersion seen. The token file is
 * read again before every request (it rotates). */
#ifndef WEFT_CA_KUBE_CLIENT_H
#define WEFT_CA_KUBE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/base/err.h"

#define CA_KUBE_GROUP_VERSION "security.weft.dev/v1alpha1"
#define CA_KUBE_NUM_KINDS 3
#define CA_KUBE_MAX_TOKEN (64u << 10) /* a service account token file */
/* The policy files of all objects together. They all travel in every WatchNode snapshot, and
 * an agent's gRPC channel takes messages of at most 4 MiB (gRPC's default), so the set stays
 * well under that, with room for the snapshot's entries and directory. */
#define CA_KUBE_MAX_SET_BYTES (3u << 20)
#define CA_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* struct ca_kube_kind: a weft kind and its resource name in URLs. */
struct ca_kube_kind {
    const char *kind;
    const char *plural;
};

/* ca_kube_kinds lists the kinds watched, in deploy/crds/. */
extern const struct ca_kube_kind ca_kube_kinds[CA_KUBE_NUM_KINDS];

struct ca_kube_config {
    const char *api_url;      /* "https://host:port"; http:// only to a loopback address */
    const char *token_file;   /* NULL: no Authorization header */
    const char *ca_file;      /* NULL: the system's CAs */
    unsigned watch_timeout_s; /* timeoutSeconds of a watch; 0: 300 */
    unsigned backoff_min_ms;  /* first delay after a failure; 0: 500 */
    unsigned backoff_max_ms;  /* largest delay; 0: 30000 */
    unsigned page_limit;      /* items per LIST page; 0: 250 */
    size_t max_objects;       /* objects held (ca/kube_source.h); 0: POLICY_MAX_FILES */
    size_t max_bytes;         /* their policy files together; 0: CA_KUBE_MAX_SET_BYTES */
};

/* ca_kube_config_in_cluster fills the fields of |cfg| that are NULL from the pod's environment:
 * https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (an IPv6 host is bracketed, into
 * |url|), and the service account's token and ca.crt. Returns WEFT_EINVAL with |err| set when
 * no API URL is given and the environment names none. */
WEFT_MUST_USE int ca_kube_config_in_cluster(struct ca_kube_config *cfg, char *url, size_t url_len,
                                            char *err, size_t err_len);

/* struct ca_kube_sink receives what the watchers see, from their threads (one per kind, so
 * calls for different kinds may run at once). A LIST is reported as begin, one object per
 * item, end (the objects of the kind not reported in between are gone); watch events as
 * object or gone. Objects are borrowed for the call. */
struct ca_kube_sink {
    void (*list_begin)(void *arg, size_t kind);
    void (*object)(void *arg, size_t kind, const json_t *obj);
    void (*gone)(void *arg, size_t kind, const json_t *obj);
    void (*list_end)(void *arg, size_t kind);
    void *arg;
};

struct ca_kube_client;

/* ca_kube_client_start checks |cfg| and starts the watchers. Returns NULL with |err| set when
 * the configuration is unusable (a bad URL scheme, http:// to a host that is not loopback).
 * |cfg|'s strings are copied. */
struct ca_kube_client *ca_kube_client_start(const struct ca_kube_config *cfg,
                                            const struct ca_kube_sink *sink, char *err,
                                            size_t err_len);

/* ca_kube_client_stop ends the watchers (within about a second) and frees |c|; NULL is a
 * no-op. */
void ca_kube_client_stop(struct ca_kube_client *c);

/* ca_kube_client_failures counts failed requests since the start (a metric). */
uint64_t ca_kube_client_failures(const struct ca_kube_client *c);

#endif
