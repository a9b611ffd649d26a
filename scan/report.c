#include "scan/report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/base/file.h"
#include "lib/base/mem.h"
#include "lib/base/timefmt.h"
#include "scan/outtext.h"

#define TABLE_COLS 6
#define CELL_MAX 1024 /* a cleaned subject (255 bytes, '?' for each bad one) fits */

struct table {
    size_t num_cols, num_rows;
    char (*cells)[TABLE_COLS][CELL_MAX]; /* row 0 is the heading */
};

static const char *cert_position(const struct scan_result *r, size_t i);
static const char *cert_name(const struct scan_cert *c);
static void humanize_left(char *buf, size_t len, int64_t s);
static size_t *findings_worst_first(const struct scan_finding *f, size_t n);
static void table_init(struct table *t, size_t num_cols, size_t max_rows,
                       const char *const *heading);
static void table_add(struct table *t, const char *const *cells);
static void table_print(FILE *f, const struct table *t, const char *indent);
static void table_cleanup(struct table *t);
static size_t text_width(const char *s);
static void cert_row(struct table *t, const char *position, const struct scan_cert *c, int64_t now);
static void print_probes(FILE *f, const struct scan_result *r);
static json_t *tri(int v);
static json_t *time_json(int64_t t);
static json_t *cert_json(const char *position, const struct scan_cert *c, int64_t now);
static json_t *result_json(const struct scan_result *r, const struct scan_finding *f, size_t n,
                           int64_t now);
static void prom_label(FILE *f, const char *name, const char *value, bool last);
static bool *endpoint_dups(const struct scan_pass *p);
static bool cert_seen(const struct scan_result *r, size_t upto, const char *position,
                      const struct scan_cert *c);
static void prom_cert_samples(FILE *f, const struct scan_pass *p, const bool *dup,
                              bool seconds_left);

/* cert_position names a presented certificate: the leaf first, then intermediates; a
 * self-signed certificate the server sends after the leaf is "root-presented" (the bundle's
 * root is "root"), so no two share a position and subject and serial in the textfile. */
static const char *cert_position(const struct scan_result *r, size_t i)
{
    if (i == 0) {
        return "leaf";
    }
    return r->chain[i].self_signed ? "root-presented" : "intermediate";
}

static const char *cert_name(const struct scan_cert *c)
{
    return c->spiffe_id[0] != '\0' ? c->spiffe_id : c->subject;
}

/* humanize_left: the two largest units for short times ("3h12m", "5m3s", "1d5h"; a second unit
 * of zero is left out: "2d"), whole days from a week on ("41d"); "-" before a time already
 * past. */
static void humanize_left(char *buf, size_t len, int64_t s)
{
    const char *sign = s < 0 ? "-" : "";
    uint64_t u = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    uint64_t parts[] = {u / 86400, u % 86400 / 3600, u % 3600 / 60, u % 60};
    static const char units[] = "dhms";
    size_t i = 0;
    while (i < 3 && parts[i] == 0) {
        i++;
    }
    int n = snprintf(buf, len, "%s%" PRIu64 "%c", sign, parts[i], units[i]);
    bool whole_days = i == 0 && parts[0] >= 7;
    if (i < 3 && !whole_days && parts[i + 1] != 0 && n > 0 && (size_t)n < len) {
        snprintf(buf + n, len - (size_t)n, "%" PRIu64 "%c", parts[i + 1], units[i + 1]);
    }
}

/* findings_worst_first returns the indices of |f| ordered by severity, highest first, ties in
 * their order (an insertion sort: an endpoint has at most SCAN_MAX_FINDINGS). */
static size_t *findings_worst_first(const struct scan_finding *f, size_t n)
{
    size_t *idx = weft_xcalloc(n > 0 ? n : 1, sizeof(*idx));
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && f[idx[j - 1]].severity < f[i].severity) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    return idx;
}

static void table_init(struct table *t, size_t num_cols, size_t max_rows,
                       const char *const *heading)
{
    t->num_cols = num_cols;
    t->num_rows = 0;
    t->cells = weft_xcalloc(max_rows + 1, sizeof(*t->cells));
    table_add(t, heading);
}

/* table_add copies a row; every cell is made printable (peer strings: no escape sequences reach
 * the terminal, no newline breaks the table). */
static void table_add(struct table *t, const char *const *cells)
{
    for (size_t c = 0; c < t->num_cols; c++) {
        scan_text_printable(t->cells[t->num_rows][c], CELL_MAX, cells[c]);
    }
    t->num_rows++;
}

/* text_width counts code points (the text is valid UTF-8 by then), so columns line up for
 * subjects that are not ASCII. */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += ((unsigned char)*s & 0xc0) != 0x80;
    }
    return n;
}

static void table_print(FILE *f, const struct table *t, const char *indent)
{
    size_t width[TABLE_COLS] = {0};
    for (size_t r = 0; r < t->num_rows; r++) {
        for (size_t c = 0; c < t->num_cols; c++) {
            size_t w = text_width(t->cells[r][c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (size_t r = 0; r < t->num_rows; r++) {
        fputs(indent, f);
        for (size_t c = 0; c < t->num_cols; c++) {
            const char *cell = t->cells[r][c];
            fputs(cell, f);
            if (c + 1 < t->num_cols) {
                fprintf(f, "%*s", (int)(width[c] - text_width(cell) + 2), "");
            }
        }
        fputc('\n', f);
    }
}

static void table_cleanup(struct table *t)
{
    free(t->cells);
    t->cells = NULL;
}

static void cert_row(struct table *t, const char *position, const struct scan_cert *c, int64_t now)
{
    char nb[WEFT_RFC3339_LEN], na[WEFT_RFC3339_LEN], left[32];
    weft_time_format_rfc3339(nb, c->not_before);
    weft_time_format_rfc3339(na, c->not_after);
    humanize_left(left, sizeof(left), c->not_after - now);
    const char *name = cert_name(c);
    const char *row[] = {
        position, name[0] != '\0' ? name : "(empty subject)", c->serial_hex, nb, na, left};
    table_add(t, row);
}

/* print_probes writes one line per kind of extra probe that ran. */
static void print_probes(FILE *f, const struct scan_result *r)
{
    static const char *const verdict[] = {"refused", "accepted"};
    if (r->accepts_tls10 >= 0 || r->accepts_tls11 >= 0 || r->accepts_tls12 >= 0) {
        fprintf(f, "  older versions:");
        const struct {
            const char *name;
            int v;
        } vs[] = {{"TLSv1.0", r->accepts_tls10},
                  {"TLSv1.1", r->accepts_tls11},
                  {"TLSv1.2", r->accepts_tls12}};
        for (size_t i = 0; i < nitems(vs); i++) {
            if (vs[i].v >= 0) {
                fprintf(f, " %s %s", vs[i].name, verdict[vs[i].v != 0]);
            }
        }
        fputc('\n', f);
    }
    if (r->accepts_no_client_cert >= 0) {
        fprintf(f, "  without a client certificate: %s\n", verdict[r->accepts_no_client_cert != 0]);
    }
    if (r->accepts_plaintext >= 0) {
        fprintf(f, "  plaintext: %s\n", verdict[r->accepts_plaintext != 0]);
    }
    if (r->http_probed) {
        if (r->hsts_present > 0) {
            fprintf(f, "  HSTS: max-age=%" PRId64 "%s%s\n", r->hsts_max_age,
                    r->hsts_include_subdomains ? "; includeSubDomains" : "",
                    r->hsts_preload ? "; preload" : "");
        } else if (r->hsts_present == 0) {
            fprintf(f, "  HSTS: none\n");
        }
        if (r->http_redirects_to_https >= 0) {
            fprintf(f, "  plain HTTP redirects to HTTPS: %s\n",
                    r->http_redirects_to_https ? "yes" : "no");
        }
    }
}

int scan_report_table(FILE *f, const struct scan_pass *p)
{
    size_t counts[SCAN_SEV_CRITICAL + 1] = {0}, total = 0;
    for (size_t i = 0; i < p->num; i++) {
        const struct scan_result *r = &p->results[i];
        const struct scan_finding *fs = p->findings[i];
        size_t nf = p->num_findings[i];
        char ep[CELL_MAX];
        scan_text_printable(ep, sizeof(ep), r->endpoint);
        if (i > 0) {
            fputc('\n', f);
        }
        if (!r->reached) {
            char why[CELL_MAX];
            scan_text_printable(why, sizeof(why), r->error);
            fprintf(f, "%s: not reached: %s\n", ep, why[0] != '\0' ? why : "(no reason given)");
        } else {
            char v[64], c[128], a[128];
            scan_text_printable(v, sizeof(v), r->version);
            scan_text_printable(c, sizeof(c), r->cipher);
            scan_text_printable(a, sizeof(a), r->alpn);
            fprintf(f, "%s: %s %s, ALPN %s\n", ep, v, c, a[0] != '\0' ? a : "none");
            print_probes(f, r);
            size_t n = r->chain_len <= SCAN_MAX_CHAIN ? r->chain_len : SCAN_MAX_CHAIN;
            struct table t;
            const char *head[] = {"POSITION",   "SUBJECT",   "SERIAL",
                                  "NOT BEFORE", "NOT AFTER", "LEFT"};
            table_init(&t, 6, n + 1, head);
            for (size_t k = 0; k < n; k++) {
                cert_row(&t, cert_position(r, k), &r->chain[k], p->scanned_at);
            }
            if (r->root_found) {
                cert_row(&t, "root", &r->root, p->scanned_at);
            }
            table_print(f, &t, "  ");
            table_cleanup(&t);
            if (r->chain_truncated) {
                fprintf(f, "  (more than %d certificates presented; the first %d are shown)\n",
                        SCAN_MAX_CHAIN, SCAN_MAX_CHAIN);
            }
        }
        if (nf == 0) {
            fprintf(f, "  no findings\n");
            continue;
        }
        size_t *order = findings_worst_first(fs, nf);
        struct table t;
        const char *head[] = {"SEVERITY", "CODE", "SUBJECT", "MESSAGE"};
        table_init(&t, 4, nf, head);
        for (size_t k = 0; k < nf; k++) {
            const struct scan_finding *x = &fs[order[k]];
            const char *row[] = {scan_severity_name(x->severity), x->code,
                                 x->subject[0] != '\0' ? x->subject : "-", x->message};
            table_add(&t, row);
            if ((unsigned)x->severity <= SCAN_SEV_CRITICAL) {
                counts[x->severity]++;
            }
            total++;
        }
        table_print(f, &t, "  ");
        table_cleanup(&t);
        free(order);
    }
    fprintf(f,
            "%s%zu endpoint%s, %zu finding%s (%zu critical, %zu page, %zu warn, %zu info); "
            "exit code %d\n",
            p->num > 0 ? "\n" : "", p->num, p->num == 1 ? "" : "s", total, total == 1 ? "" : "s",
            counts[SCAN_SEV_CRITICAL], counts[SCAN_SEV_PAGE], counts[SCAN_SEV_WARN],
            counts[SCAN_SEV_INFO], p->exit_code);
    return fflush(f) == 0 && !ferror(f) ? WEFT_OK : WEFT_EIO;
}

/* --- JSON ----------------------------------------------------------------------------------- */

/* tri: an extra probe's answer: null when it did not run. */
static json_t *tri(int v) { return v < 0 ? json_null() : json_boolean(v != 0); }

static json_t *time_json(int64_t t)
{
    char buf[WEFT_RFC3339_LEN];
    weft_time_format_rfc3339(buf, t);
    return json_string(buf);
}

static json_t *cert_json(const char *position, const struct scan_cert *c, int64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "position", json_string(position));
    json_object_set_new(o, "subject", scan_text_json(c->subject));
    json_object_set_new(o, "spiffe_id", scan_text_json(c->spiffe_id));
    json_object_set_new(o, "serial", scan_text_json(c->serial_hex));
    json_object_set_new(o, "not_before", time_json(c->not_before));
    json_object_set_new(o, "not_before_epoch", json_integer(c->not_before));
    json_object_set_new(o, "not_after", time_json(c->not_after));
    json_object_set_new(o, "not_after_epoch", json_integer(c->not_after));
    json_object_set_new(o, "seconds_left", json_integer(c->not_after - now));
    json_object_set_new(o, "is_ca", json_boolean(c->is_ca));
    json_object_set_new(o, "self_signed", json_boolean(c->self_signed));
    json_object_set_new(o, "key_type", scan_text_json(c->key_type));
    json_object_set_new(o, "key_bits", json_integer(c->key_bits));
    return o;
}

static json_t *result_json(const struct scan_result *r, const struct scan_finding *f, size_t n,
                           int64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "endpoint", scan_text_json(r->endpoint));
    json_object_set_new(o, "reached", json_boolean(r->reached));
    json_object_set_new(o, "error", scan_text_json(r->error));
    json_object_set_new(o, "version", scan_text_json(r->version));
    json_object_set_new(o, "cipher", scan_text_json(r->cipher));
    json_object_set_new(o, "alpn", scan_text_json(r->alpn));
    json_t *chain = json_array();
    size_t len = r->chain_len <= SCAN_MAX_CHAIN ? r->chain_len : SCAN_MAX_CHAIN;
    for (size_t i = 0; i < len; i++) {
        json_array_append_new(chain, cert_json(cert_position(r, i), &r->chain[i], now));
    }
    json_object_set_new(o, "chain", chain);
    json_object_set_new(o, "chain_truncated", json_boolean(r->chain_truncated));
    json_object_set_new(o, "root_found", json_boolean(r->root_found));
    json_object_set_new(o, "root", r->root_found ? cert_json("root", &r->root, now) : json_null());
    json_object_set_new(o, "accepts_tls10", tri(r->accepts_tls10));
    json_object_set_new(o, "accepts_tls11", tri(r->accepts_tls11));
    json_object_set_new(o, "accepts_tls12", tri(r->accepts_tls12));
    json_object_set_new(o, "accepts_no_client_cert", tri(r->accepts_no_client_cert));
    json_object_set_new(o, "accepts_plaintext", tri(r->accepts_plaintext));
    json_object_set_new(o, "http_probed", json_boolean(r->http_probed));
    json_object_set_new(o, "hsts_present", tri(r->hsts_present));
    json_object_set_new(o, "hsts_max_age", json_integer(r->hsts_max_age));
    json_object_set_new(o, "hsts_include_subdomains", json_boolean(r->hsts_include_subdomains));
    json_object_set_new(o, "hsts_preload", json_boolean(r->hsts_preload));
    json_object_set_new(o, "http_redirects_to_https", tri(r->http_redirects_to_https));
    json_t *fa = json_array();
    size_t *order = findings_worst_first(f, n);
    for (size_t i = 0; i < n; i++) {
        const struct scan_finding *x = &f[order[i]];
        json_t *fo = json_object();
        json_object_set_new(fo, "severity", json_string(scan_severity_name(x->severity)));
        json_object_set_new(fo, "code", scan_text_json(x->code));
        json_object_set_new(fo, "endpoint", scan_text_json(x->endpoint));
        json_object_set_new(fo, "subject", scan_text_json(x->subject));
        json_object_set_new(fo, "message", scan_text_json(x->message));
        json_array_append_new(fa, fo);
    }
    free(order);
    json_object_set_new(o, "findings", fa);
    return o;
}

int scan_report_json(FILE *f, const struct scan_pass *p)
{
    json_t *root = json_object();
    json_object_set_new(root, "scanned_at", time_json(p->scanned_at));
    json_object_set_new(root, "scanned_at_epoch", json_integer(p->scanned_at));
    json_t *eps = json_array();
    for (size_t i = 0; i < p->num; i++) {
        json_array_append_new(
            eps, result_json(&p->results[i], p->findings[i], p->num_findings[i], p->scanned_at));
    }
    json_object_set_new(root, "endpoints", eps);
    json_object_set_new(root, "exit_code", json_integer(p->exit_code));
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0 || fputc('\n', f) == EOF || fflush(f) != 0 || ferror(f)) {
        return WEFT_EIO;
    }
    return WEFT_OK;
}

/* --- the Prometheus textfile ---------------------------------------------------------------- */

/* prom_label writes name="value" with the value escaped as the text exposition format says
 * (backslash, double quote and line feed as \\, \" and \n); other control characters, which the
 * format leaves raw, become '?' so that no reader is confused by them. */
static void prom_label(FILE *f, const char *name, const char *value, bool last)
{
    char clean[CELL_MAX];
    scan_text_utf8(clean, sizeof(clean), value);
    fprintf(f, "%s=\"", name);
    for (const char *s = clean; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') {
            fputs("\\\\", f);
        } else if (c == '"') {
            fputs("\\\"", f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c < 0x20 || c == 0x7f) {
            fputc('?', f);
        } else {
            fputc(c, f);
        }
    }
    fputs(last ? "\"" : "\",", f);
}

static int cmp_endpoint(const void *a, const void *b, void *arg);

static int cmp_endpoint(const void *a, const void *b, void *arg)
{
    const struct scan_pass *p = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(p->results[i].endpoint, p->results[j].endpoint);
    return c != 0 ? c : (i > j) - (i < j);
}

/* endpoint_dups marks each result whose endpoint an earlier result already has: one endpoint
 * twice would give the textfile duplicate series, which the textfile collector refuses
 * whole. */
static bool *endpoint_dups(const struct scan_pass *p)
{
    bool *dup = weft_xcalloc(p->num > 0 ? p->num : 1, sizeof(*dup));
    size_t *idx = weft_xcalloc(p->num > 0 ? p->num : 1, sizeof(*idx));
    for (size_t i = 0; i < p->num; i++) {
        idx[i] = i;
    }
    qsort_r(idx, p->num, sizeof(*idx), cmp_endpoint, (void *)p);
    for (size_t i = 1; i < p->num; i++) {
        if (strcmp(p->results[idx[i]].endpoint, p->results[idx[i - 1]].endpoint) == 0) {
            dup[idx[i]] = true;
        }
    }
    free(idx);
    return dup;
}

/* cert_seen: a server that sends one certificate twice must not make a duplicate series. */
static bool cert_seen(const struct scan_result *r, size_t upto, const char *position,
                      const struct scan_cert *c)
{
    for (size_t k = 0; k < upto; k++) {
        if (strcmp(cert_position(r, k), position) == 0 &&
            strcmp(cert_name(&r->chain[k]), cert_name(c)) == 0 &&
            strcmp(r->chain[k].serial_hex, c->serial_hex) == 0) {
            return true;
        }
    }
    return false;
}

static void prom_cert_samples(FILE *f, const struct scan_pass *p, const bool *dup,
                              bool seconds_left)
{
    for (size_t i = 0; i < p->num; i++) {
        const struct scan_result *r = &p->results[i];
        if (dup[i] || !r->reached) {
            continue;
        }
        size_t n = r->chain_len <= SCAN_MAX_CHAIN ? r->chain_len : SCAN_MAX_CHAIN;
        for (size_t k = 0; k <= n; k++) {
            const struct scan_cert *c = k < n ? &r->chain[k] : &r->root;
            const char *pos = k < n ? cert_position(r, k) : "root";
            if ((k == n && !r->root_found) || (k < n && cert_seen(r, k, pos, c))) {
                continue;
            }
            fputs(seconds_left ? "weft_scan_cert_seconds_left{"
                               : "weft_scan_cert_not_after_seconds{",
                  f);
            prom_label(f, "endpoint", r->endpoint, false);
            prom_label(f, "position", pos, false);
            prom_label(f, "subject", cert_name(c), false);
            prom_label(f, "serial", c->serial_hex, true);
            fprintf(f, "} %" PRId64 "\n",
                    seconds_left ? c->not_after - p->scanned_at : c->not_after);
        }
    }
}

int scan_report_prometheus(const char *path, const struct scan_pass *p, char *err, size_t err_len)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        snprintf(err, err_len, "cannot write the Prometheus textfile %s: %s", path,
                 strerror(errno));
        return WEFT_EIO;
    }
    bool *dup = endpoint_dups(p);
    fputs("# HELP weft_scan_cert_not_after_seconds notAfter of each certificate an endpoint "
          "presented (and of the bundle root its chain ends at), seconds since the epoch.\n"
          "# TYPE weft_scan_cert_not_after_seconds gauge\n",
          f);
    prom_cert_samples(f, p, dup, false);
    fputs("# HELP weft_scan_cert_seconds_left Seconds from the scan to each certificate's "
          "notAfter; negative once expired.\n"
          "# TYPE weft_scan_cert_seconds_left gauge\n",
          f);
    prom_cert_samples(f, p, dup, true);
    fputs("# HELP weft_scan_findings Findings of the last scan of an endpoint, by severity.\n"
          "# TYPE weft_scan_findings gauge\n",
          f);
    for (size_t i = 0; i < p->num; i++) {
        if (dup[i]) {
            continue;
        }
        size_t counts[SCAN_SEV_CRITICAL + 1] = {0};
        for (size_t k = 0; k < p->num_findings[i]; k++) {
            unsigned s = (unsigned)p->findings[i][k].severity;
            counts[s <= SCAN_SEV_CRITICAL ? s : SCAN_SEV_CRITICAL]++;
        }
        for (int s = SCAN_SEV_INFO; s <= SCAN_SEV_CRITICAL; s++) {
            fputs("weft_scan_findings{", f);
            prom_label(f, "endpoint", p->results[i].endpoint, false);
            prom_label(f, "severity", scan_severity_name((enum scan_severity)s), true);
            fprintf(f, "} %zu\n", counts[s]);
        }
    }
    fputs("# HELP weft_scan_endpoint_up 1 when the last scan completed a TLS handshake with the "
          "endpoint.\n"
          "# TYPE weft_scan_endpoint_up gauge\n",
          f);
    for (size_t i = 0; i < p->num; i++) {
        if (!dup[i]) {
            fputs("weft_scan_endpoint_up{", f);
            prom_label(f, "endpoint", p->results[i].endpoint, true);
            fprintf(f, "} %d\n", p->results[i].reached ? 1 : 0);
        }
    }
    fprintf(f,
            "# HELP weft_scan_last_run_timestamp_seconds When the last scan pass ran, seconds "
            "since the epoch.\n"
            "# TYPE weft_scan_last_run_timestamp_seconds gauge\n"
            "weft_scan_last_run_timestamp_seconds %" PRId64 "\n",
            p->scanned_at);
    free(dup);
    int rc = WEFT_OK;
    if (fclose(f) != 0) {
        snprintf(err, err_len, "cannot write the Prometheus textfile %s: %s", path,
                 strerror(errno));
        rc = WEFT_EIO;
    } else if (weft_file_write_atomic(path, buf, len, 0644) != WEFT_OK) {
        snprintf(err, err_len, "cannot write the Prometheus textfile %s: %s", path,
                 strerror(errno));
        rc = WEFT_EIO;
    }
    free(buf);
    return rc;
}
