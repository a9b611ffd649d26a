/* agent/alert.h: the agent's pages (issue 5, "the expired-certificate outage must be impossible
 * to miss").
 *
 * Two alerts, each firing once when its condition starts to hold and resolved once when it no
 * longer does:
 *   WeftSVIDRunwayLow      the earliest notAfter among the SVIDs served is closer than the
 *                          threshold (default a quarter of that SVID's lifetime): if the CA stays
 *                          unreachable, workloads lose their identity then; and it keeps firing
 *                          while any SVID has expired unrenewed;
 *   WeftSVIDRenewalFailing renewal (node or workload SVIDs) failed N times in a row (default 3).
 *
 * Sinks: a command run with the alert as JSON on stdin (`{"status":"firing"|"resolved",
 * "alert":{...}}`), and/or an Alertmanager v2 compatible POST of `[{labels, annotations,
 * startsAt, endsAt}]` to a URL (POST /api/v2/alerts). A failed delivery is logged and tried
 * again on the next evaluation. */
#ifndef WEFT_AGENT_ALERT_H
#define WEFT_AGENT_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define AGENT_ALERT_DEFAULT_FRACTION 0.25
#define AGENT_ALERT_DEFAULT_FAILURES 3

enum agent_alert_kind { AGENT_ALERT_RUNWAY = 0, AGENT_ALERT_RENEWAL, AGENT_ALERT_KINDS };

struct agent_alert_config {
    const char *command;    /* NULL: no command sink */
    const char *url;        /* NULL: no Alertmanager sink; "http://host:9093/api/v2/alerts" */
    const char *node;       /* a label on every alert */
    double runway_fraction; /* 0: AGENT_ALERT_DEFAULT_FRACTION */
    unsigned failures;      /* 0: AGENT_ALERT_DEFAULT_FAILURES */
    int timeout_ms;         /* per delivery; 0: 5000 */
};

/* struct agent_alert_input is what one evaluation looks at. */
struct agent_alert_input {
    int64_t now;
    /* of the SVID that expires first (0: none): when its life began (agent_svids_stats) and
     * its notAfter */
    int64_t earliest_life_from, earliest_not_after;
    size_t lapsed; /* SVIDs that expired unrenewed: the runway is gone (the alert keeps firing) */
    unsigned consecutive_failures;
};

struct agent_alerts;

struct agent_alerts *agent_alerts_new(const struct agent_alert_config *cfg);
void agent_alerts_free(struct agent_alerts *a);

/* agent_alerts_evaluate updates both alerts from |in| and delivers what changed (blocking, at
 * most the sinks' timeouts). Returns how many deliveries failed. */
int agent_alerts_evaluate(struct agent_alerts *a, const struct agent_alert_input *in);

/* agent_alerts_firing reports whether alert |k| fires now. */
bool agent_alerts_firing(const struct agent_alerts *a, enum agent_alert_kind k);

#endif
