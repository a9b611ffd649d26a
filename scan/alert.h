/* scan/alert.h: page and critical findings to Alertmanager, or to a command (issue 9).
 *
 * Each page or critical finding is an alert: labels alertname="WeftScan<Code>" (the code in
 * CamelCase), endpoint, code, severity, subject; annotations summary (the message); startsAt
 * when it was first seen (kept in the state file). --alert-url URL POSTs the firing alerts as
 * an Alertmanager v2 array (POST URL/api/v2/alerts, application/json) on every pass, and when a
 * finding that fired is gone, posts it once more with endsAt = now (resolved) and forgets it.
 * --state FILE (JSON; written atomically) remembers what is firing across runs; without it
 * nothing is ever resolved, and the scan says so. --alert-exec CMD runs CMD (sh -c) once per
 * pass with the same JSON array on stdin, bounded in time. A failed POST or command is returned
 * as an error for the caller to report (weftctl scan: on stderr), never retried within the
 * pass.
 *
 * Which alerts a pass sends: each page/critical finding fires (one per endpoint+code+subject,
 * the highest severity when a pass has several), with the startsAt the state remembers for that
 * key, or now. A remembered alert whose finding is gone is resolved (also when its endpoint is
 * no longer in the pass), except when its endpoint was not reached in this pass (nothing can be
 * said about it then: it is sent again as firing, as remembered); one whose severity changed is
 * resolved under its old labels and fires under the new ones, keeping its startsAt. Nothing is sent
 * when nothing fires or resolves.
 *
 * The state file: {"version":1,"alerts":[{"endpoint","code","subject","severity","summary",
 * "starts_at" (RFC 3339)}]}, at most SCAN_ALERT_MAX_STATE alerts and SCAN_ALERT_MAX_STATE_BYTES.
 * A state file that cannot be read or parsed (corrupt, too large, unknown keys, duplicates) is
 * refused: the pass still sends what fires (startsAt = now), resolves nothing, leaves the file
 * as it is, and returns WEFT_EINVAL (WEFT_ELIMIT, WEFT_EIO) naming it; a person moves it away.
 * A missing file is an empty state. Without --state a warning is logged once per process.
 *
 * --alert-exec: `sh -c CMD` in a process group of its own, the JSON on its standard input, its
 * standard output sent to our standard error (it must not mix into a JSON report); peer strings
 * are only in the JSON, never on a command line. Past the time limit the whole group gets
 * SIGKILL; a non-zero exit status is a failure. */
#ifndef WEFT_SCAN_ALERT_H
#define WEFT_SCAN_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "scan/report.h"

#define SCAN_ALERT_TIMEOUT_MS 10000
#define SCAN_ALERT_MAX_STATE 4096 /* alerts remembered as firing */
#define SCAN_ALERT_MAX_STATE_BYTES (8 << 20)
#define SCAN_ALERT_MAX_RESPONSE 65536 /* of Alertmanager's answer, read */

struct scan_alert_opts {
    const char *url;           /* Alertmanager base URL, or NULL */
    const char *ca_file;       /* https: CAs for the URL */
    const char *exec;          /* command, or NULL */
    const char *state_path;    /* NULL: nothing remembered, nothing resolved */
    const char *generator_url; /* optional, put in each alert */
    int timeout_ms;            /* each POST, and the command; 0: SCAN_ALERT_TIMEOUT_MS */
    int64_t firing_for_s;      /* > 0: firing alerts carry endsAt = now + this (a few --watch
                                * intervals), so Alertmanager keeps them between passes however
                                * its resolve_timeout is set; 0: no endsAt while firing */
};

/* struct scan_alert_entry is one remembered alert. */
struct scan_alert_entry {
    char endpoint[SCAN_NAME_MAX + 1];
    char code[48];
    char subject[SCAN_SUBJECT_MAX + 1];
    enum scan_severity severity; /* page or critical */
    char summary[SCAN_MESSAGE_MAX + 1];
    int64_t starts_at;
};

/* struct scan_alert_state is the state file's content; zero is an empty state. */
struct scan_alert_state {
    struct scan_alert_entry *entries; /* |num| of them, owned */
    size_t num;
};

/* scan_alert_state_parse reads a state file's bytes into |out| (zeroed first; free it with
 * scan_alert_state_cleanup, also on failure). WEFT_EINVAL with |err| saying what is wrong where
 * (the alert's index and key), WEFT_ELIMIT over SCAN_ALERT_MAX_STATE_BYTES or
 * SCAN_ALERT_MAX_STATE alerts. */
WEFT_MUST_USE int scan_alert_state_parse(struct scan_alert_state *out, const uint8_t *data,
                                         size_t len, char *err, size_t err_len);

/* scan_alert_state_to_json writes |s| as a state file: a new NUL-terminated buffer in |*out|
 * (free with free()), |*out_len| bytes before the NUL. */
void scan_alert_state_to_json(char **out, size_t *out_len, const struct scan_alert_state *s);

void scan_alert_state_cleanup(struct scan_alert_state *s);

/* scan_alert_send sends |p|'s page and critical findings as above at |now|; reads and rewrites
 * the state file. WEFT_OK when every delivery succeeded; else the first failure's code with
 * |err| naming the URL or command and what went wrong (the state file is then left as it was,
 * so the next pass sends again). When more than SCAN_ALERT_MAX_STATE alerts fire, the state
 * keeps the first SCAN_ALERT_MAX_STATE by key and WEFT_ELIMIT says the others will not be
 * resolved. */
WEFT_MUST_USE int scan_alert_send(const struct scan_alert_opts *o, const struct scan_pass *p,
                                  int64_t now, char *err, size_t err_len);

#endif
