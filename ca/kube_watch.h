/* ca/kube_watch.h: the bytes of the Kubernetes API that weft-ca reads, parsed without I/O
 * (reference/kubernetes.md §5.1): the lines of a WATCH stream, its events, a LIST page, and the
 * conversion of one weft custom resource into the policy "file" the loader and WatchNode take.
 * Everything here is pure and bounded, so it can be fuzzed (test/fuzz/kube_watch_fuzz.c). */
#ifndef WEFT_CA_KUBE_WATCH_H
#define WEFT_CA_KUBE_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/base/err.h"

/* Limits on what the API server may make us hold. */
#define CA_KUBE_MAX_LINE (4u << 20)  /* one watch event (an object is at most ~1.5 MiB in etcd) */
#define CA_KUBE_MAX_BODY (32u << 20) /* one LIST page */
#define CA_KUBE_MAX_RV 128           /* a resourceVersion */
#define CA_KUBE_MAX_ERR 512          /* the text of an error */

/* struct ca_kube_lines splits a stream into '\n'-terminated lines, none longer than |max|
 * bytes. Zeroed (or ca_kube_lines_init) is empty. */
struct ca_kube_lines {
    char *buf;
    size_t len, cap, max;
};

void ca_kube_lines_init(struct ca_kube_lines *l, size_t max);
void ca_kube_lines_cleanup(struct ca_kube_lines *l);

/* ca_kube_lines_feed appends |len| bytes and calls |fn| with each complete line (without its
 * '\n' or a trailing '\r'; empty lines are skipped), borrowed for the call. It stops at the
 * first result of |fn| other than WEFT_OK and returns it, or WEFT_ELIMIT when a line passes the
 * limit; after an error the splitter must be reset (ca_kube_lines_cleanup). */
WEFT_MUST_USE int ca_kube_lines_feed(struct ca_kube_lines *l, const char *data, size_t len,
                                     int (*fn)(void *arg, const char *line, size_t len), void *arg);

enum ca_kube_event_type {
    CA_KUBE_ADDED = 0,
    CA_KUBE_MODIFIED,
    CA_KUBE_DELETED,
    CA_KUBE_BOOKMARK,
    CA_KUBE_ERROR,
};

/* struct ca_kube_event is one watch event. |object| is owned by the event (NULL for an ERROR);
 * |rv| is the object's metadata.resourceVersion; an ERROR carries the Status's code and
 * message. */
struct ca_kube_event {
    enum ca_kube_event_type type;
    json_t *object;
    char rv[CA_KUBE_MAX_RV + 1];
    int code;
    char message[CA_KUBE_MAX_ERR];
};

/* ca_kube_event_parse parses one line of a WATCH stream. Returns WEFT_OK with |*out| filled
 * (free its object with ca_kube_event_cleanup), or WEFT_EPROTO with |err| saying what is
 * wrong. An ADDED, MODIFIED or DELETED object must have metadata.name and resourceVersion;
 * a BOOKMARK a resourceVersion. */
WEFT_MUST_USE int ca_kube_event_parse(struct ca_kube_event *out, const char *line, size_t len,
                                      char *err, size_t err_len);
void ca_kube_event_cleanup(struct ca_kube_event *ev);

/* struct ca_kube_list is one LIST page: its items (owned), metadata.resourceVersion and
 * metadata.continue ("" on the last page). */
struct ca_kube_list {
    json_t *items;
    char rv[CA_KUBE_MAX_RV + 1];
    char cont[1024];
};

/* ca_kube_list_parse parses a LIST response body. Returns WEFT_OK (free with
 * ca_kube_list_cleanup), WEFT_ELIMIT for a body over CA_KUBE_MAX_BODY or WEFT_EPROTO, with
 * |err| saying why. */
WEFT_MUST_USE int ca_kube_list_parse(struct ca_kube_list *out, const char *body, size_t len,
                                     char *err, size_t err_len);
void ca_kube_list_cleanup(struct ca_kube_list *l);

/* struct ca_kube_file is one object as a policy file: |name| is
 * "k8s/<plural>/<namespace>/<name>.json" ("k8s/<plural>/_cluster/<name>.json" for a
 * cluster-scoped kind), |data| the object as indented JSON keeping only apiVersion, kind,
 * metadata (name, namespace, labels, resourceVersion, generation) and spec. Both are owned. */
struct ca_kube_file {
    char *name;
    char *data;
    size_t len;
    char rv[CA_KUBE_MAX_RV + 1];
};

/* ca_kube_object_file converts |obj| of the resource |plural|. Returns WEFT_OK, or WEFT_EINVAL
 * with |err| saying why when the object has no usable name or namespace (these make its file
 * name, so they are checked here; everything else is the loader's to judge). */
WEFT_MUST_USE int ca_kube_object_file(struct ca_kube_file *out, const json_t *obj,
                                      const char *plural, char *err, size_t err_len);
void ca_kube_file_cleanup(struct ca_kube_file *f);

/* ca_kube_object_key writes "<namespace>/<name>" (or "<name>") of |obj| into |out|; returns
 * WEFT_EINVAL when the object has no string name. */
WEFT_MUST_USE int ca_kube_object_key(char *out, size_t out_len, const json_t *obj);

#endif
