/* policy/policy.h: weft's authorization model (DESIGN.md §5; the language of issue 3).
 *
 * Three kinds, API group security.weft.dev/v1alpha1, Kubernetes resource shape:
 *   AuthorizationPolicy  who may call which workloads on which ports (ALLOW, DENY or AUDIT;
 *                        enforce or dry-run);
 *   PeerAuthentication   whether a workload's ports take plaintext (PERMISSIVE) or only mTLS
 *                        (STRICT);
 *   MeshConfig           mesh-wide settings: root namespace, default action, default mTLS mode.
 *
 * The flow: policy_set_load_* parse YAML into a policy_set (every error with file, line, column
 * and field path); policy_compile turns a set into the snapshot of one destination workload;
 * policy_eval decides a connection against a snapshot with a bounded number of lookups,
 * without allocating. policy_explain (explain.h) says why, policy by policy. */
#ifndef WEFT_POLICY_POLICY_H
#define WEFT_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/arena.h"
#include "lib/base/err.h"

#define POLICY_API_VERSION "security.weft.dev/v1alpha1"
#define POLICY_DEFAULT_ROOT_NAMESPACE "weft-system"

/* Limits on what a policy source may make us hold. */
#define POLICY_MAX_FILE_BYTES (4u << 20) /* one YAML file */
#define POLICY_MAX_FILES 10000           /* files in one directory */
#define POLICY_MAX_OBJECTS 100000        /* policies in one set */
#define POLICY_MAX_LIST 4096             /* entries in any one list */
#define POLICY_MAX_NODES 1000000         /* YAML nodes visited per document (alias bombs) */
#define POLICY_MAX_ERRORS 100            /* errors kept; more are counted */
#define POLICY_MAX_CLOSE_GRACE_S 3600u   /* spec.closeGraceSeconds: one hour */

enum policy_action {
    POLICY_ACTION_ALLOW = 0,
    POLICY_ACTION_DENY,
    POLICY_ACTION_AUDIT,
};

enum policy_mode {
    POLICY_MODE_ENFORCE = 0,
    POLICY_MODE_DRY_RUN,
};

enum policy_mtls {
    POLICY_MTLS_UNSET = 0, /* inherit from the less specific level */
    POLICY_MTLS_PERMISSIVE,
    POLICY_MTLS_STRICT,
};

/* Where an object (or a value) came from. */
struct policy_loc {
    const char *file;
    unsigned line, column; /* 1-based */
};

enum policy_principal_kind {
    POLICY_PRINCIPAL_EXACT = 0, /* the SPIFFE ID itself */
    POLICY_PRINCIPAL_PREFIX,    /* "spiffe://td/a/" then '*': |value| is "spiffe://td/a/" */
    POLICY_PRINCIPAL_ANY,       /* "*": any authenticated peer */
};

struct policy_principal {
    enum policy_principal_kind kind;
    const char *value; /* NUL-terminated; "" for ANY */
    size_t len;
};

struct policy_port_range {
    uint16_t lo, hi; /* inclusive, 1 <= lo <= hi */
};

/* struct policy_source is one `from` entry: every field that is set must match (AND). An empty
 * list is a field that is not set. */
struct policy_source {
    const struct policy_principal *principals;
    size_t num_principals;
    const struct policy_principal *not_principals;
    size_t num_not_principals;
    const char *const *namespaces;
    size_t num_namespaces;
    const char *const *not_namespaces;
    size_t num_not_namespaces;
};

/* struct policy_target is one `to` entry. */
struct policy_target {
    const struct policy_port_range *ports;
    size_t num_ports;
    const struct policy_port_range *not_ports;
    size_t num_not_ports;
};

/* struct policy_rule matches when one of |from| and one of |to| match; no `from` is any peer,
 * no `to` any port. */
struct policy_rule {
    const struct policy_source *from;
    size_t num_from;
    const struct policy_target *to;
    size_t num_to;
    struct policy_loc loc;
};

/* struct policy_selector picks workloads of the policy's namespace (of every namespace, for the
 * root namespace). An absent selector picks them all. */
struct policy_selector {
    bool present;
    const char *const *label_keys; /* matchLabels, sorted by key */
    const char *const *label_values;
    size_t num_labels;
    const char *const *service_accounts;
    size_t num_service_accounts;
};

struct policy_authz {
    const char *namespace_;
    const char *name;
    struct policy_selector selector;
    enum policy_action action;
    enum policy_mode mode;
    /* spec.closeGraceSeconds, 0..POLICY_MAX_CLOSE_GRACE_S (0 when absent): when a change of
     * the policy set makes this policy the one that denies a live connection, the proxy keeps
     * the connection this long before closing it. New connections are refused at once. */
    uint32_t close_grace_s;
    const struct policy_rule *rules;
    size_t num_rules;
    struct policy_loc loc;
    size_t load_order; /* the order objects were read in: the first of two duplicates wins */
};

struct policy_port_mtls {
    uint16_t port;
    enum policy_mtls mode;
};

struct policy_peerauthn {
    const char *namespace_;
    const char *name;
    struct policy_selector selector;
    enum policy_mtls mode;                /* spec.mtls.mode; UNSET when absent */
    const struct policy_port_mtls *ports; /* spec.portLevelMtls, sorted by port */
    size_t num_ports;
    struct policy_loc loc;
    size_t load_order;
};

/* struct policy_config: the mesh-wide settings a decision depends on. */
struct policy_config {
    const char *root_namespace;
    enum policy_action default_action; /* ALLOW or DENY */
    enum policy_mtls default_mtls;     /* PERMISSIVE or STRICT */
};

struct policy_meshconfig {
    const char *name;
    bool has_root_namespace, has_default_action, has_default_mtls;
    struct policy_config config;
    struct policy_loc loc;
};

struct policy_error {
    char *text; /* "FILE:LINE:COLUMN: PATH: what is wrong" */
};

/* struct policy_set is a validated set of policies. Zeroed (or policy_set_init) is empty. The
 * arrays are sorted by (namespace, name) once policy_set_finish has run. */
struct policy_set {
    struct weft_arena arena;
    struct policy_authz *authz;
    size_t num_authz, cap_authz;
    struct policy_peerauthn *peerauthn;
    size_t num_peerauthn, cap_peerauthn;
    struct policy_meshconfig mesh; /* valid when has_mesh */
    bool has_mesh;
    struct policy_error *errors;
    size_t num_errors, num_errors_dropped;
    size_t num_loaded; /* objects read so far, for load_order */
};

void policy_set_init(struct policy_set *set);
void policy_set_cleanup(struct policy_set *set);

/* policy_set_load_buffer parses one YAML stream (any number of documents) named |name| into
 * |set|. Objects with errors are not added; every error is recorded in set->errors. Returns
 * WEFT_OK when this stream had no error, WEFT_EINVAL otherwise. */
WEFT_MUST_USE int policy_set_load_buffer(struct policy_set *set, const char *name,
                                         const uint8_t *data, size_t len);

/* policy_set_load_path loads a file, or every *.yaml and *.yml file of a directory and of its
 * subdirectories (in name order; hidden files and directories are skipped). */
WEFT_MUST_USE int policy_set_load_path(struct policy_set *set, const char *path);

/* struct policy_walk_ops: what policy_dir_walk calls. |file| gets the path of each file the
 * loader reads, in load order (its result is passed on: the walk goes on, and the first error
 * is returned); |error| gets a path that cannot be read, with errno saying why, or a limit
 * passed, with errno 0. */
struct policy_walk_ops {
    int (*file)(void *arg, const char *path);
    void (*error)(void *arg, const char *path, const char *what);
    void *arg;
};

/* policy_dir_walk visits the files policy_set_load_path reads for the directory |dir|: every
 * *.yaml and *.yml file, subdirectories included (at most 16 deep and POLICY_MAX_FILES files),
 * in name order, hidden files and directories skipped. */
WEFT_MUST_USE int policy_dir_walk(const char *dir, const struct policy_walk_ops *ops);

/* policy_set_finish runs the checks that span documents (duplicate names in a namespace, more
 * than one MeshConfig) and sorts the set. Returns WEFT_OK when the whole set has no error. */
WEFT_MUST_USE int policy_set_finish(struct policy_set *set);

/* policy_config_resolve fills |out| from the set's MeshConfig (if any) and the defaults. */
void policy_config_resolve(struct policy_config *out, const struct policy_set *set);

/* --- workloads and decisions ------------------------------------------------------------- */

/* struct policy_workload is a destination: namespace, service account, labels. */
struct policy_workload {
    const char *namespace_;
    const char *service_account;
    const char *const *label_keys;
    const char *const *label_values;
    size_t num_labels;
};

/* policy_is_valid_namespace / policy_is_valid_workload check names the way the loader does
 * (Kubernetes namespace, service account and label rules). */
bool policy_is_valid_namespace(const char *s);
bool policy_is_valid_workload(const struct policy_workload *w);

/* policy_selects reports whether |sel| of a policy in namespace |ns| picks |w|. */
bool policy_selects(const struct policy_selector *sel, const char *ns, const char *root_ns,
                    const struct policy_workload *w);

/* policy_rule_matches reports whether |rule| matches a connection from |peer_id| (NULL for an
 * unauthenticated peer) to |port|. */
bool policy_rule_matches(const struct policy_rule *rule, const char *peer_id, uint16_t port);

#endif
