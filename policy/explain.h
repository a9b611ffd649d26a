/* policy/explain.h: a decision explained for a person, policy by policy. */
#ifndef WEFT_POLICY_EXPLAIN_H
#define WEFT_POLICY_EXPLAIN_H

#include <stdio.h>

#include "policy/snapshot.h"

/* policy_explain prints to |out|: the verdict line of |r| (policy_result_format), the request
 * and mesh settings, then every policy of |set| with whether it applies to |w| and, for those
 * that do, whether each rule matches |req| and why not. |snap| and |r| are the compiled
 * snapshot of |w| and its evaluation of |req|. */
void policy_explain(FILE *out, const struct policy_set *set, const struct policy_config *cfg,
                    const struct policy_workload *w, const struct policy_request *req,
                    const struct policy_snapshot *snap, const struct policy_result *r);

#endif
