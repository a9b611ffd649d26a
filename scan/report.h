/* scan/report.h: what a scan pass found, for people and machines (issue 9).
 *
 *   - the table (default): one block per endpoint: the handshake (version, cipher, ALPN), each
 *     certificate of the chain (subject or SPIFFE ID, serial, notBefore, notAfter, time left),
 *     the root when named, then the findings, worst first;
 *   - JSON (--format json): {"scanned_at":..., "endpoints":[{...result..., "findings":[...]}],
 *     "exit_code":N}, stable keys, times as RFC 3339 and epoch seconds;
 *   - the Prometheus textfile (--prometheus FILE, node_exporter's textfile collector; written
 *     to FILE.tmp.PID and renamed): weft_scan_cert_not_after_seconds{endpoint,position,subject,
 *     serial}, weft_scan_cert_seconds_left{...}, weft_scan_findings{endpoint,severity},
 *     weft_scan_endpoint_up{endpoint}, weft_scan_last_run_timestamp_seconds.
 * Every string that comes from a peer (subjects, IDs, errors) is escaped for its format: JSON by
 * jansson, Prometheus label values per the exposition format, the table with control
 * characters replaced. */
#ifndef WEFT_SCAN_REPORT_H
#define WEFT_SCAN_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/base/err.h"
#include "scan/scan.h"

/* struct scan_pass is one pass: |num| endpoints, each with its findings. */
struct scan_pass {
    int64_t scanned_at;
    const struct scan_result *results;          /* |num| of them */
    const struct scan_finding *const *findings; /* findings[i]: those of results[i] */
    const size_t *num_findings;
    size_t num;
    int exit_code;
};

WEFT_MUST_USE int scan_report_table(FILE *f, const struct scan_pass *p);
WEFT_MUST_USE int scan_report_json(FILE *f, const struct scan_pass *p);

/* scan_report_prometheus writes the textfile to |path| atomically (|path|.tmp.PID, fsync,
 * rename: weft_file_write_atomic); WEFT_EIO with |err| naming the path. */
WEFT_MUST_USE int scan_report_prometheus(const char *path, const struct scan_pass *p, char *err,
                                         size_t err_len);

#endif
