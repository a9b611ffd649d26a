/* test/testlib/policy_fixtures.h: policy sets from YAML text, workloads from one string, and a
 * reference evaluator (STYLE.md §10).
 *
 * The reference evaluator applies issue 3's evaluation order directly to a parsed policy set,
 * one policy at a time, with nothing but policy_selects and policy_rule_matches; fixture_decide
 * runs it beside the compiled evaluator (policy_compile + policy_eval) and gives both answers in
 * policy_result_format's text form, so every test of a decision also checks that the compiled
 * index and the plain meaning of the language agree.
 *
 * Nothing here asserts or aborts: every function returns WEFT_OK or a WEFT_E* code, or a value
 * a test asserts on. */
#ifndef WEFT_TEST_TESTLIB_POLICY_FIXTURES_H
#define WEFT_TEST_TESTLIB_POLICY_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "policy/snapshot.h"

#define FIXTURE_TD "spiffe://cluster.local"
#define FIXTURE_MAX_LABELS 8

/* fixture_load_yaml loads the NUL-terminated |yaml| into |set| as a stream named |name|;
 * returns what policy_set_load_buffer returns. */
int fixture_load_yaml(struct policy_set *set, const char *name, const char *yaml);

/* fixture_set_from_yaml loads |yaml| as "t.yaml" into the (initialized, usually empty) |set|
 * and finishes it. Returns WEFT_OK when the set has no error. */
int fixture_set_from_yaml(struct policy_set *set, const char *yaml);

/* fixture_errors joins the texts of set->errors with "\n" into |buf| (for assertion messages)
 * and returns |buf|. */
const char *fixture_errors(const struct policy_set *set, char *buf, size_t len);

/* struct fixture_text is a growing heap string, for documents too large to write by hand.
 * Zeroed is empty; free |s| with free(). */
struct fixture_text {
    char *s;
    size_t len, cap;
};

/* fixture_text_append appends printf-style text (aborting if memory runs out). */
void fixture_text_append(struct fixture_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* struct fixture_workload is a policy_workload with storage for its strings. */
struct fixture_workload {
    struct policy_workload w;
    const char *keys[FIXTURE_MAX_LABELS];
    const char *values[FIXTURE_MAX_LABELS];
    char text[256];
};

/* fixture_workload_parse reads "NAMESPACE/SERVICEACCOUNT[,KEY=VALUE...]" into |out|. Returns
 * WEFT_EINVAL for another shape, WEFT_ELIMIT for too long a spec or too many labels. */
int fixture_workload_parse(struct fixture_workload *out, const char *spec);

/* struct fixture_outcome is one connection decided twice. */
struct fixture_outcome {
    struct policy_result result; /* policy_eval's; indices are into a snapshot already freed */
    char line[1024];             /* policy_result_format of |result| */
    char reference[1024];        /* the reference evaluator's answer, in the same form */
    enum policy_mtls reference_mtls;
    size_t num_policies; /* policies the snapshot kept */
};

/* fixture_decide compiles |set| for |workload| (fixture_workload_parse form) under |cfg| (NULL:
 * policy_config_resolve of |set|), evaluates a connection from |peer_id| (NULL:
 * unauthenticated) to |port|, frees the snapshot, and runs the reference evaluator. */
int fixture_decide(struct fixture_outcome *out, const struct policy_set *set,
                   const struct policy_config *cfg, const char *workload, const char *peer_id,
                   uint16_t port);

/* fixture_reference_mtls is the reference's effective mTLS mode of |port| of |w|, and in
 * |source| ("NS/NAME" or "mesh default") the object that set it. */
enum policy_mtls fixture_reference_mtls(const struct policy_set *set,
                                        const struct policy_config *cfg,
                                        const struct policy_workload *w, uint16_t port,
                                        char *source, size_t source_len);

/* fixture_find_authz returns the AuthorizationPolicy NS/NAME of |set|, or NULL. */
const struct policy_authz *fixture_find_authz(const struct policy_set *set, const char *ns,
                                              const char *name);

#endif
