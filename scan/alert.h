/* scan/alert.h: page and critical findings to Alertmanager, or to a command (issue 9).
 *
 * Each page or critical finding is an alert: labels alertname="WeftScan<Code>" (the code in
 * CamelCase), endpoint, code, severity, subject; annotations summary (the message); startsAt
 * when it was first seen (kept in the state file). --alert-url URL POSTs the firing alerts as
 * an Alertmanager v2 array (POST URL/api/v2/alerts, application/json) on every pass, and when a
 * finding that fired is gone, posts it once more with endsAt = now (resolved) and forgets it.
 * --state FILE (JSON; written atomically) remembers what is firing across runs; without it
 * nothing is ever resolved, and the scan says so. --alert-exec CMD runs CMD (sh -c) once per
 * pass with the same JSON array on stdin, bounded in time. A failed POST or command is reported
 * (stderr and a finding-free error count in the result), never retried within the pass. */
#ifndef WEFT_SCAN_ALERT_H
#define WEFT_SCAN_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "scan/report.h"

#define SCAN_ALERT_TIMEOUT_MS 10000
#define SCAN_ALERT_MAX_STATE 4096 /* alerts remembered as firing */

struct scan_alert_opts {
    const char *url;        /* Alertmanager base URL, or NULL */
    const char *ca_file;    /* https: CAs for the URL */
    const char *exec;       /* command, or NULL */
    const char *state_path; /* NULL: nothing remembered, nothing resolved */
    const char *generator_url; /* optional, put in each alert */
};

/* scan_alert_send sends |p|'s page and critical findings as above at |now|; reads and rewrites
 * the state file. WEFT_OK when every delivery succeeded; else the first failure's code with
 * |err| naming the URL or command and what went wrong (the state file is then left as it was,
 * so the next pass sends again). */
WEFT_MUST_USE int scan_alert_send(const struct scan_alert_opts *o, const struct scan_pass *p,
                                  int64_t now, char *err, size_t err_len);

#endif
