/* scan/report_test.c: the table, JSON and the Prometheus textfile, on hand-built passes. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/base/file.h"
#include "scan/report.h"

#define NOW INT64_C(1800000000) /* 2027-01-15T08:00:00Z */

static struct scan_result results[3];
static struct scan_finding findings0[3], findings1[1];
static const struct scan_finding *findings[3];
static size_t num_findings[3];
static struct scan_pass pass;
static char dir[] = "/tmp/weft-report-XXXXXX";

static void set_cert(struct scan_cert *c, const char *subject, const char *id, const char *serial,
                     int64_t nb, int64_t na)
{
    snprintf(c->subject, sizeof(c->subject), "%s", subject);
    snprintf(c->spiffe_id, sizeof(c->spiffe_id), "%s", id);
    snprintf(c->serial_hex, sizeof(c->serial_hex), "%s", serial);
    c->not_before = nb;
    c->not_after = na;
    snprintf(c->key_type, sizeof(c->key_type), "EC");
    c->key_bits = 256;
}

static void set_finding(struct scan_finding *f, enum scan_severity s, const char *ep,
                        const char *code, const char *subject, const char *msg)
{
    f->severity = s;
    snprintf(f->endpoint, sizeof(f->endpoint), "%s", ep);
    snprintf(f->code, sizeof(f->code), "%s", code);
    snprintf(f->subject, sizeof(f->subject), "%s", subject);
    snprintf(f->message, sizeof(f->message), "%s", msg);
}

/* setup: api:8443 presents a leaf (3h12m left), an intermediate (41 days left) and an expired
 * self-signed root, and names the bundle's root; db:5432 was not reached. */
static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    memset(results, 0, sizeof(results));
    struct scan_result *r = &results[0];
    snprintf(r->endpoint, sizeof(r->endpoint), "api:8443");
    r->reached = true;
    snprintf(r->version, sizeof(r->version), "TLSv1.3");
    snprintf(r->cipher, sizeof(r->cipher), "TLS_AES_128_GCM_SHA256");
    snprintf(r->alpn, sizeof(r->alpn), "h2");
    set_cert(&r->chain[0], "", "spiffe://example.org/ns/web/sa/api", "0a1b", NOW - 3600,
             NOW + 3 * 3600 + 12 * 60);
    set_cert(&r->chain[1], "CN=weft intermediate", "", "02", NOW - 86400,
             NOW + 41 * 86400 + 7 * 3600);
    r->chain[1].is_ca = true;
    set_cert(&r->chain[2], "CN=old \"root\" \\ with\na newline", "", "03", NOW - 400 * 86400,
             NOW - 2 * 86400);
    r->chain[2].is_ca = r->chain[2].self_signed = true;
    r->chain_len = 3;
    r->root_found = true;
    set_cert(&r->root, "CN=weft root", "", "01", NOW - 86400, NOW + 365 * 86400);
    r->accepts_tls10 = 0, r->accepts_tls11 = 0, r->accepts_tls12 = 1;
    r->accepts_no_client_cert = 0;
    r->accepts_plaintext = -1;
    r->hsts_present = -1;
    r->http_redirects_to_https = -1;

    r = &results[1];
    snprintf(r->endpoint, sizeof(r->endpoint), "db:5432");
    snprintf(r->error, sizeof(r->error), "connect: refused\x1b[31m\nforged line");
    r->accepts_tls10 = r->accepts_tls11 = r->accepts_tls12 = -1;
    r->accepts_no_client_cert = r->accepts_plaintext = r->hsts_present = -1;
    r->http_redirects_to_https = -1;

    set_finding(&findings0[0], SCAN_SEV_WARN, "api:8443", "tls12-accepted", "",
                "TLS 1.2 is still accepted");
    set_finding(&findings0[1], SCAN_SEV_CRITICAL, "api:8443", "expired", "CN=old \"root\"",
                "expired 2d ago");
    set_finding(&findings0[2], SCAN_SEV_PAGE, "api:8443", "leaf-expiring",
                "spiffe://example.org/ns/web/sa/api", "3h12m left of 4h12m");
    set_finding(&findings1[0], SCAN_SEV_PAGE, "db:5432", "unreachable", "", "connect: refused");
    findings[0] = findings0, num_findings[0] = 3;
    findings[1] = findings1, num_findings[1] = 1;
    pass = (struct scan_pass){.scanned_at = NOW,
                              .results = results,
                              .findings = findings,
                              .num_findings = num_findings,
                              .num = 2,
                              .exit_code = 3};
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

TestSuite(report, .init = setup, .fini = teardown, .timeout = 30);

static char *render(int (*fn)(FILE *, const struct scan_pass *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(fn(f, &pass), WEFT_OK);
    fclose(f);
    return buf;
}

/* line_of returns the line of |text| that holds |needle| (a copy), or NULL. */
static char *line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    if (at == NULL) {
        return NULL;
    }
    const char *start = at;
    while (start > text && start[-1] != '\n') {
        start--;
    }
    const char *end = strchr(at, '\n');
    return strndup(start, end != NULL ? (size_t)(end - start) : strlen(start));
}

Test(report, table_shows_each_certificate_with_time_left_humanized)
{
    char *t = render(scan_report_table);
    char *leaf = line_of(t, "spiffe://example.org/ns/web/sa/api");
    cr_assert_not_null(leaf, "%s", t);
    cr_assert(strncmp(leaf, "  leaf ", 7) == 0, "%s", leaf);
    cr_assert(strstr(leaf, " 0a1b ") != NULL, "%s", leaf);
    cr_assert(strstr(leaf, " 2027-01-15T07:00:00Z ") != NULL, "%s", leaf);
    cr_assert(strstr(leaf, " 2027-01-15T11:12:00Z ") != NULL, "%s", leaf);
    cr_assert(strcmp(leaf + strlen(leaf) - 7, " 3h12m") == 0 ||
                  strcmp(leaf + strlen(leaf) - 6, " 3h12m") == 0,
              "%s", leaf);
    char *inter = line_of(t, "CN=weft intermediate");
    cr_assert(strncmp(inter, "  intermediate ", 15) == 0, "%s", inter);
    cr_assert(strcmp(inter + strlen(inter) - 4, " 41d") == 0, "%s", inter);
    char *old = line_of(t, "root-presented");
    cr_assert(strcmp(old + strlen(old) - 4, " -2d") == 0, "%s", old);
    char *root = line_of(t, "CN=weft root");
    cr_assert(strncmp(root, "  root ", 7) == 0, "%s", root);
    cr_assert(strcmp(root + strlen(root) - 5, " 365d") == 0, "%s", root);
    char *hs = line_of(t, "api:8443: ");
    cr_assert_str_eq(hs, "api:8443: TLSv1.3 TLS_AES_128_GCM_SHA256, ALPN h2");
    char *old_versions = line_of(t, "older versions");
    cr_assert_str_eq(old_versions,
                     "  older versions: TLSv1.0 refused TLSv1.1 refused TLSv1.2 accepted");
    free(leaf), free(inter), free(old), free(root), free(hs), free(old_versions), free(t);
}

Test(report, table_columns_line_up)
{
    char *t = render(scan_report_table);
    char *head = line_of(t, "POSITION");
    const char *cols[] = {"SUBJECT", "SERIAL", "NOT BEFORE", "NOT AFTER", "LEFT"};
    const char *rows[] = {"spiffe://example.org", "CN=weft intermediate", "CN=weft root"};
    const char *vals[][5] = {
        {"spiffe://", "0a1b", "2027-01-15T07:00:00Z", "2027-01-15T11:12:00Z", "3h12m"},
        {"CN=weft intermediate", "02", "2027-01-14T08:00:00Z", "2027-02-25T15:00:00Z", "41d"},
        {"CN=weft root", "01", "2027-01-14T08:00:00Z", "2028-01-15T08:00:00Z", "365d"},
    };
    for (size_t r = 0; r < 3; r++) {
        char *line = line_of(t, rows[r]);
        for (size_t c = 0; c < 5; c++) {
            size_t col = (size_t)(strstr(head, cols[c]) - head);
            cr_assert(strlen(line) > col, "%s", line);
            cr_assert(strncmp(line + col, vals[r][c], strlen(vals[r][c])) == 0,
                      "column %s of \"%s\" under \"%s\"", cols[c], line, head);
            cr_assert_eq(line[col - 1], ' ');
        }
        free(line);
    }
    free(head);
    free(t);
}

Test(report, table_findings_worst_first)
{
    char *t = render(scan_report_table);
    const char *crit = strstr(t, "critical  expired");
    const char *page = strstr(t, "page      leaf-expiring");
    const char *warn = strstr(t, "warn      tls12-accepted");
    cr_assert(crit != NULL && page != NULL && warn != NULL, "%s", t);
    cr_assert(crit < page && page < warn);
    cr_assert(strstr(t, "\n2 endpoints, 4 findings (1 critical, 2 page, 1 warn, 0 info); exit "
                        "code 3\n") != NULL,
              "%s", t);
    free(t);
}

Test(report, table_replaces_control_characters)
{
    char *t = render(scan_report_table);
    cr_assert_null(strchr(t, '\x1b'), "an escape sequence reached the table");
    char *db = line_of(t, "db:5432: ");
    cr_assert_str_eq(db, "db:5432: not reached: connect: refused?[31m?forged line");
    cr_assert_null(strstr(t, "\nforged line"));
    /* the subject with a newline stays on its row */
    char *old = line_of(t, "root-presented");
    cr_assert(strstr(old, "CN=old \"root\" \\ with?a newline") != NULL, "%s", old);
    free(db), free(old), free(t);
}

Test(report, table_invalid_utf8_is_replaced_and_columns_count_characters)
{
    snprintf(results[0].chain[1].subject, sizeof(results[0].chain[1].subject),
             "CN=caf\xc3\xa9 \xff\xc0\xaf end");
    char *t = render(scan_report_table);
    char *line = line_of(t, "CN=caf");
    cr_assert(strstr(line, "CN=caf\xc3\xa9 ??? end") != NULL, "%s", line);
    char *head = line_of(t, "POSITION");
    size_t col = (size_t)(strstr(head, "SERIAL") - head);
    /* one byte more than characters before the column: the é */
    cr_assert(strncmp(line + col + 1, "02 ", 3) == 0, "%s\n%s", head, line);
    free(line), free(head), free(t);
}

Test(report, json_parses_back_with_every_field)
{
    char *t = render(scan_report_json);
    json_error_t je;
    json_t *root = json_loads(t, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(root, "%s: %s", je.text, t);
    cr_assert_str_eq(json_string_value(json_object_get(root, "scanned_at")),
                     "2027-01-15T08:00:00Z");
    cr_assert_eq(json_integer_value(json_object_get(root, "scanned_at_epoch")), NOW);
    cr_assert_eq(json_integer_value(json_object_get(root, "exit_code")), 3);
    json_t *eps = json_object_get(root, "endpoints");
    cr_assert_eq(json_array_size(eps), 2);
    json_t *api = json_array_get(eps, 0);
    cr_assert_str_eq(json_string_value(json_object_get(api, "endpoint")), "api:8443");
    cr_assert(json_is_true(json_object_get(api, "reached")));
    cr_assert_str_eq(json_string_value(json_object_get(api, "cipher")), "TLS_AES_128_GCM_SHA256");
    cr_assert_str_eq(json_string_value(json_object_get(api, "alpn")), "h2");
    cr_assert(json_is_false(json_object_get(api, "accepts_tls10")));
    cr_assert(json_is_true(json_object_get(api, "accepts_tls12")));
    cr_assert(json_is_null(json_object_get(api, "accepts_plaintext")), "not probed is null");
    cr_assert(json_is_null(json_object_get(api, "hsts_present")));
    cr_assert(json_is_false(json_object_get(api, "chain_truncated")));
    json_t *chain = json_object_get(api, "chain");
    cr_assert_eq(json_array_size(chain), 3);
    json_t *leaf = json_array_get(chain, 0);
    cr_assert_str_eq(json_string_value(json_object_get(leaf, "position")), "leaf");
    cr_assert_str_eq(json_string_value(json_object_get(leaf, "spiffe_id")),
                     "spiffe://example.org/ns/web/sa/api");
    cr_assert_str_eq(json_string_value(json_object_get(leaf, "serial")), "0a1b");
    cr_assert_str_eq(json_string_value(json_object_get(leaf, "not_after")), "2027-01-15T11:12:00Z");
    cr_assert_eq(json_integer_value(json_object_get(leaf, "not_after_epoch")), NOW + 11520);
    cr_assert_eq(json_integer_value(json_object_get(leaf, "not_before_epoch")), NOW - 3600);
    cr_assert_eq(json_integer_value(json_object_get(leaf, "seconds_left")), 11520);
    cr_assert_str_eq(json_string_value(json_object_get(leaf, "key_type")), "EC");
    cr_assert_eq(json_integer_value(json_object_get(leaf, "key_bits")), 256);
    json_t *old = json_array_get(chain, 2);
    cr_assert_str_eq(json_string_value(json_object_get(old, "subject")),
                     "CN=old \"root\" \\ with\na newline");
    cr_assert(json_is_true(json_object_get(old, "self_signed")));
    cr_assert_eq(json_integer_value(json_object_get(old, "seconds_left")), -2 * 86400);
    json_t *root_cert = json_object_get(api, "root");
    cr_assert_str_eq(json_string_value(json_object_get(root_cert, "position")), "root");
    cr_assert_str_eq(json_string_value(json_object_get(root_cert, "subject")), "CN=weft root");
    json_t *fs = json_object_get(api, "findings");
    cr_assert_eq(json_array_size(fs), 3);
    const char *order[] = {"critical", "page", "warn"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(fs, i), "severity")),
                         order[i]);
    }
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(fs, 0), "message")),
                     "expired 2d ago");
    json_t *db = json_array_get(eps, 1);
    cr_assert(json_is_false(json_object_get(db, "reached")));
    cr_assert_str_eq(json_string_value(json_object_get(db, "error")),
                     "connect: refused\x1b[31m\nforged line");
    cr_assert(json_is_null(json_object_get(db, "root")));
    cr_assert_eq(json_array_size(json_object_get(db, "chain")), 0);
    json_decref(root);
    free(t);
}

Test(report, json_replaces_invalid_utf8)
{
    snprintf(results[0].chain[0].spiffe_id, sizeof(results[0].chain[0].spiffe_id),
             "spiffe://x/\xed\xa0\x80");
    char *t = render(scan_report_json);
    json_t *root = json_loads(t, 0, NULL);
    cr_assert_not_null(root, "%s", t);
    json_t *leaf = json_array_get(
        json_object_get(json_array_get(json_object_get(root, "endpoints"), 0), "chain"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(leaf, "spiffe_id")), "spiffe://x/???");
    json_decref(root);
    free(t);
}

/* --- the Prometheus textfile ---------------------------------------------------------------- */

struct sample {
    char name[64];
    char labels[8][2][512]; /* unescaped name, value */
    size_t num_labels;
    char value[64];
};

/* parse_sample reads one sample line as the text exposition format defines it. */
static int parse_sample(const char *line, struct sample *s)
{
    memset(s, 0, sizeof(*s));
    size_t n = strcspn(line, "{ ");
    if (n == 0 || n >= sizeof(s->name)) {
        return -1;
    }
    memcpy(s->name, line, n);
    const char *p = line + n;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (s->num_labels == 8) {
                return -1;
            }
            size_t k = strcspn(p, "=");
            if (p[k] != '=' || p[k + 1] != '"' || k >= 512) {
                return -1;
            }
            memcpy(s->labels[s->num_labels][0], p, k);
            p += k + 2;
            char *v = s->labels[s->num_labels][1];
            size_t o = 0;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n' || o >= 511) {
                    return -1;
                }
                if (*p == '\\') {
                    p++;
                    if (*p == 'n') {
                        v[o++] = '\n';
                    } else if (*p == '\\' || *p == '"') {
                        v[o++] = *p;
                    } else {
                        return -1;
                    }
                } else {
                    v[o++] = *p;
                }
                p++;
            }
            p++;
            s->num_labels++;
            if (*p == ',') {
                p++;
            } else if (*p != '}') {
                return -1;
            }
        }
        p++;
    }
    if (*p != ' ') {
        return -1;
    }
    snprintf(s->value, sizeof(s->value), "%s", p + 1);
    return 0;
}

static const char *label(const struct sample *s, const char *name)
{
    for (size_t i = 0; i < s->num_labels; i++) {
        if (strcmp(s->labels[i][0], name) == 0) {
            return s->labels[i][1];
        }
    }
    return NULL;
}

static char *read_prom(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/weft.prom", dir);
    char err[256];
    cr_assert_eq(scan_report_prometheus(path, &pass, err, sizeof(err)), WEFT_OK, "%s", err);
    uint8_t *data;
    size_t len;
    cr_assert_eq(weft_file_read(&data, &len, path, 1 << 20), WEFT_OK);
    return (char *)data;
}

Test(report, prometheus_lines_parse_and_escape_label_values)
{
    char *text = read_prom();
    size_t samples = 0, helps = 0, types = 0;
    bool saw_escaped = false, saw_up_db = false, saw_left_leaf = false, saw_findings = false;
    char *save = NULL;
    char *copy = strdup(text);
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            helps++;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            cr_assert(strcmp(line + strlen(line) - 6, " gauge") == 0, "%s", line);
            types++;
            continue;
        }
        struct sample s;
        cr_assert_eq(parse_sample(line, &s), 0, "not a sample: %s", line);
        samples++;
        const char *subject = label(&s, "subject");
        if (subject != NULL && strcmp(subject, "CN=old \"root\" \\ with\na newline") == 0) {
            saw_escaped = true;
            cr_assert_str_eq(label(&s, "position"), "root-presented");
            cr_assert_str_eq(label(&s, "serial"), "03");
        }
        if (strcmp(s.name, "weft_scan_endpoint_up") == 0 &&
            strcmp(label(&s, "endpoint"), "db:5432") == 0) {
            saw_up_db = true;
            cr_assert_str_eq(s.value, "0");
        }
        if (strcmp(s.name, "weft_scan_cert_seconds_left") == 0 &&
            strcmp(label(&s, "position"), "leaf") == 0) {
            saw_left_leaf = true;
            cr_assert_str_eq(s.value, "11520");
            cr_assert_str_eq(label(&s, "subject"), "spiffe://example.org/ns/web/sa/api");
        }
        if (strcmp(s.name, "weft_scan_findings") == 0 &&
            strcmp(label(&s, "endpoint"), "api:8443") == 0 &&
            strcmp(label(&s, "severity"), "page") == 0) {
            saw_findings = true;
            cr_assert_str_eq(s.value, "1");
        }
    }
    cr_assert(saw_escaped && saw_up_db && saw_left_leaf && saw_findings, "%s", text);
    cr_assert_eq(helps, 5);
    cr_assert_eq(types, 5);
    /* 4 certificates twice, 4 severities for 2 endpoints, 2 up, the timestamp */
    cr_assert_eq(samples, 8 + 8 + 2 + 1, "%s", text);
    cr_assert(strstr(text, "\nweft_scan_last_run_timestamp_seconds 1800000000\n") != NULL);
    cr_assert(strstr(text, "subject=\"CN=old \\\"root\\\" \\\\ with\\na newline\"") != NULL, "%s",
              text);
    free(copy);
    free(text);
}

Test(report, prometheus_families_are_not_interleaved_and_series_unique)
{
    pass.num = 3;
    results[2] = results[0]; /* the same endpoint listed twice */
    findings[2] = findings0, num_findings[2] = 3;
    results[0].chain[2] = results[0].chain[1]; /* and a certificate sent twice */
    char *text = read_prom();
    char *copy = strdup(text), *save = NULL;
    char seen_names[8][64];
    size_t num_names = 0;
    char series[64][1024];
    size_t num_series = 0;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            continue;
        }
        size_t n = strcspn(line, "{ ");
        if (num_names == 0 || strncmp(seen_names[num_names - 1], line, n) != 0 ||
            seen_names[num_names - 1][n] != '\0') {
            for (size_t i = 0; i < num_names; i++) {
                cr_assert(!(strncmp(seen_names[i], line, n) == 0 && seen_names[i][n] == '\0'),
                          "family %.*s comes back later", (int)n, line);
            }
            snprintf(seen_names[num_names++], 64, "%.*s", (int)n, line);
        }
        size_t key = strrchr(line, ' ') - line;
        cr_assert_lt(num_series, 64);
        snprintf(series[num_series], 1024, "%.*s", (int)key, line);
        for (size_t i = 0; i < num_series; i++) {
            cr_assert_str_neq(series[i], series[num_series], "duplicate series");
        }
        num_series++;
    }
    cr_assert_eq(num_names, 5);
    /* 3 certificates twice, 4 + 4 findings, 2 up, 1 timestamp */
    cr_assert_eq(num_series, 6 + 8 + 2 + 1, "%s", text);
    free(copy);
    free(text);
}

Test(report, prometheus_write_is_atomic_and_leaves_no_temporary)
{
    char *text = read_prom();
    free(text);
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            cr_assert_str_eq(e->d_name, "weft.prom");
            n++;
        }
    }
    closedir(d);
    cr_assert_eq(n, 1);
}

Test(report, prometheus_error_names_the_path)
{
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/no-such-dir/weft.prom", dir);
    cr_assert_eq(scan_report_prometheus(path, &pass, err, sizeof(err)), WEFT_EIO);
    cr_assert(strstr(err, path) != NULL, "%s", err);
    cr_assert(strstr(err, "No such file or directory") != NULL, "%s", err);
}

Test(report, time_left_units)
{
    const struct {
        int64_t left;
        const char *want;
    } cases[] = {
        {0, "0s"},
        {59, "59s"},
        {60, "1m"},
        {61, "1m1s"},
        {3600, "1h"},
        {3 * 3600 + 720, "3h12m"},
        {86400 + 3600, "1d1h"},
        {6 * 86400 + 86399, "6d23h"},
        {7 * 86400 + 3600, "7d"},
        {-90, "-1m30s"},
        {INT64_MIN / 2, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        results[0].chain[0].not_after = NOW + cases[i].left;
        char *t = render(scan_report_table);
        char *leaf = line_of(t, "spiffe://example.org");
        if (cases[i].want != NULL) {
            char want[32];
            snprintf(want, sizeof(want), " %s", cases[i].want);
            cr_assert_str_eq(leaf + strlen(leaf) - strlen(want), want, "%s", leaf);
        }
        free(leaf);
        free(t);
    }
}

Test(report, empty_pass)
{
    pass.num = 0;
    char *t = render(scan_report_table);
    cr_assert_str_eq(t, "0 endpoints, 0 findings (0 critical, 0 page, 0 warn, 0 info); exit "
                        "code 3\n");
    free(t);
    t = render(scan_report_json);
    json_t *root = json_loads(t, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(root, "endpoints")), 0);
    json_decref(root);
    free(t);
}
