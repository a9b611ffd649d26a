/* policy/compile.h: the compiled form inside a snapshot (compile.c builds it, eval.c reads it,
 * pb.c rebuilds it from the wire). Private to policy/. */
#ifndef WEFT_POLICY_COMPILE_H
#define WEFT_POLICY_COMPILE_H

#include <openssl/siphash.h>

#include "policy/internal.h"
#include "policy/snapshot.h"

/* Precedence classes, in the order a decision consults them. */
enum policy_clause_class {
    POLICY_CLASS_DENY = 0,  /* enforced DENY */
    POLICY_CLASS_ALLOW,     /* enforced ALLOW */
    POLICY_CLASS_DRY_DENY,  /* dry-run DENY */
    POLICY_CLASS_DRY_ALLOW, /* dry-run ALLOW */
    POLICY_CLASS_AUDIT,     /* AUDIT, enforced or dry-run alike */
    POLICY_NUM_CLASSES,
};

/* struct policy_clause is one `from` entry of one rule (or a rule without `from`) with the
 * rule's `to` list: it matches when its source and one of its targets match. */
struct policy_clause {
    enum policy_clause_class klass;
    uint32_t policy, rule;
    const struct policy_source *source; /* NULL: any peer */
    const struct policy_target *to;
    size_t num_to;
};

struct policy_table_slot {
    const char *key; /* NULL: empty */
    size_t len;
    uint32_t first, count; /* into policy_table.clauses */
};

/* struct policy_table maps a string to clause ids, in id order; open addressing, SipHash with a
 * random key per table so no peer can choose colliding IDs. */
struct policy_table {
    uint64_t sipkey[2];
    size_t mask;
    struct policy_table_slot *slots;
    uint32_t *clauses;
};

struct policy_index {
    struct policy_table exact;      /* exact principals */
    struct policy_table prefix;     /* principal prefixes, each ending in '/' */
    struct policy_table namespaces; /* `namespaces` of entries without principals */
    uint32_t *any;                  /* entries whose principals include "*" */
    size_t num_any;
    uint32_t *generic; /* entries that name no peer (or rules without `from`) */
    size_t num_generic;
};

uint64_t policy_table_hash(const struct policy_table *t, const char *key, size_t len);

/* policy_snapshot_index builds snap->clauses and snap->index from snap->policies. */
void policy_snapshot_index(struct policy_snapshot *snap, size_t num_clauses);

/* policy_copy_rules deep-copies |n| rules into |a|. */
const struct policy_rule *policy_copy_rules(struct weft_arena *a, const struct policy_rule *rules,
                                            size_t n);

#endif
