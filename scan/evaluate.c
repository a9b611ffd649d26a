/* scan/evaluate.c: a probe's facts judged against the policy (evaluate.h). Pure: no clock, no
 * I/O, no allocation. */
#include "scan/evaluate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The longest part of a certificate's name put in a message, so the sentence always ends. */
#define NAME_IN_MESSAGE 120
#define ENDPOINT_IN_MESSAGE 100

struct sink {
    const struct scan_result *r;
    struct scan_finding *out;
    size_t cap, num;
};

static void add(struct sink *s, enum scan_severity sev, const char *code, const char *subject,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static const char *cert_name(const struct scan_cert *c);
static void fmt_duration(char *buf, size_t len, int64_t s);
static void judge_cert(struct sink *s, const struct scan_policy *p, const struct scan_cert *c,
                       const char *position, bool leaf, int64_t now);

void scan_policy_default(struct scan_policy *p)
{
    memset(p, 0, sizeof(*p));
    scan_thresholds_default(&p->thresholds);
    p->tls13_only = true;
    p->require_client_cert = true;
    p->strict = true;
    p->min_rsa_bits = 2048;
    p->min_ec_bits = 256;
    p->want_alpn = NULL;
    p->require_hsts = false;
    p->min_hsts_max_age = 15552000;
}

/* add counts a finding, and writes it while there is room. */
static void add(struct sink *s, enum scan_severity sev, const char *code, const char *subject,
                const char *fmt, ...)
{
    if (s->num < s->cap) {
        struct scan_finding *f = &s->out[s->num];
        memset(f, 0, sizeof(*f));
        f->severity = sev;
        snprintf(f->endpoint, sizeof(f->endpoint), "%s", s->r->endpoint);
        snprintf(f->code, sizeof(f->code), "%s", code);
        snprintf(f->subject, sizeof(f->subject), "%s", subject);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->message, sizeof(f->message), fmt, ap);
        va_end(ap);
    }
    s->num++;
}

/* fmt_duration writes |s| (>= 0) as its two largest units, leaving out a zero second one:
 * "3d", "3h12m", "20m", "45s". lib/base's weft_duration_format keeps the zero ("3d0h"). */
static void fmt_duration(char *buf, size_t len, int64_t s)
{
    static const struct {
        int64_t secs;
        char unit;
    } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    if (s <= 0) {
        snprintf(buf, len, "0s");
        return;
    }
    for (size_t i = 0; i < nitems(units); i++) {
        if (s >= units[i].secs) {
            int64_t big = s / units[i].secs, rest = 0;
            if (i + 1 < nitems(units)) {
                rest = s % units[i].secs / units[i + 1].secs;
            }
            if (rest > 0) {
                snprintf(buf, len, "%lld%c%lld%c", (long long)big, units[i].unit, (long long)rest,
                         units[i + 1].unit);
            } else {
                snprintf(buf, len, "%lld%c", (long long)big, units[i].unit);
            }
            return;
        }
    }
}

/* cert_name is how a person recognises |c|: its subject, else its SPIFFE ID (SVIDs have an
 * empty subject), else its serial. */
static const char *cert_name(const struct scan_cert *c)
{
    if (c->subject[0] != '\0') {
        return c->subject;
    }
    if (c->spiffe_id[0] != '\0') {
        return c->spiffe_id;
    }
    return c->serial_hex[0] != '\0' ? c->serial_hex : "(no name)";
}

/* position_of names chain[i]: the first is the leaf; a self-signed CA is a root; the rest are
 * intermediates. */
static const char *position_of(const struct scan_result *r, size_t i)
{
    if (i == 0) {
        return "leaf";
    }
    const struct scan_cert *c = &r->chain[i];
    return c->is_ca && c->self_signed ? "root" : "intermediate";
}

static void judge_cert(struct sink *s, const struct scan_policy *p, const struct scan_cert *c,
                       const char *position, bool leaf, int64_t now)
{
    const struct scan_thresholds *t = &p->thresholds;
    const char *name = cert_name(c);
    char life[32], left[32], gone[32];
    /* the life the tiers measure: after the issuer's backdating (--backdate) */
    int64_t start = scan_life_start(t, c->not_before, c->not_after);
    fmt_duration(life, sizeof(life), c->not_after - start);
    enum scan_expiry e = scan_expiry_of(t, c->not_before, c->not_after, now, leaf);
    char code[48];
    snprintf(code, sizeof(code), "%s-expiring", position);
    switch (e) {
    case SCAN_EXPIRY_EXPIRED:
        fmt_duration(gone, sizeof(gone), now - c->not_after);
        add(s, SCAN_SEV_CRITICAL, "expired", name, "%s %.*s expired %s ago.", position,
            NAME_IN_MESSAGE, name, gone);
        break;
    case SCAN_EXPIRY_NOT_YET_VALID:
        fmt_duration(left, sizeof(left), c->not_before - now);
        add(s, SCAN_SEV_CRITICAL, "not-yet-valid", name,
            "%s %.*s is not valid for another %s (clock skew or a bad issuer?).", position,
            NAME_IN_MESSAGE, name, left);
        break;
    case SCAN_EXPIRY_CRITICAL:
    case SCAN_EXPIRY_PAGE:
    case SCAN_EXPIRY_WARN: {
        if (c->not_after <= c->not_before) {
            add(s, SCAN_SEV_CRITICAL, code, name,
                "%s %.*s has no validity period (notAfter is not after notBefore).", position,
                NAME_IN_MESSAGE, name);
            break;
        }
        int64_t l = c->not_after - start, rem = c->not_after - now;
        fmt_duration(left, sizeof(left), rem);
        /* whole percent, rounded down, so "0 %" means under one */
        long pct = (long)((double)rem * 100.0 / (double)l);
        add(s, scan_expiry_severity(e), code, name,
            "%s %.*s expires in %s (%ld %% of its %s "
            "lifetime left).",
            position, NAME_IN_MESSAGE, name, left, pct, life);
        break;
    }
    case SCAN_EXPIRY_RENEWAL_OVERDUE:
    case SCAN_EXPIRY_OK:
        break;
    }
    /* a leaf past its renewal point: said even under a tier (thresholds.h) */
    if (leaf && scan_renewal_overdue(t, c->not_before, c->not_after, now)) {
        int64_t due = start + (int64_t)((t->renew_frac + t->renew_grace_frac) *
                                        (double)(c->not_after - start));
        fmt_duration(gone, sizeof(gone), now - due);
        add(s, SCAN_SEV_WARN, "leaf-renewal-overdue", name,
            "leaf %.*s should have been renewed %s ago and was not (renewal loop stuck?).",
            NAME_IN_MESSAGE, name, gone);
    }
    int min_bits = 0;
    if (strcmp(c->key_type, "RSA") == 0) {
        min_bits = p->min_rsa_bits;
    } else if (strcmp(c->key_type, "EC") == 0) {
        min_bits = p->min_ec_bits;
    }
    if (c->key_bits < min_bits) {
        add(s, SCAN_SEV_WARN, "weak-key", name, "%s %.*s has a %d-bit %s key, under %d bits.",
            position, NAME_IN_MESSAGE, name, c->key_bits, c->key_type, min_bits);
    }
}

/* same_cert: the bundle's root is also in the presented chain (judged once). */
static bool same_cert(const struct scan_cert *a, const struct scan_cert *b)
{
    return strcmp(a->serial_hex, b->serial_hex) == 0 && strcmp(a->subject, b->subject) == 0 &&
           a->not_before == b->not_before && a->not_after == b->not_after;
}

size_t scan_evaluate(const struct scan_result *r, const struct scan_policy *p, int64_t now,
                     struct scan_finding *out, size_t cap)
{
    struct sink s = {.r = r, .out = out, .cap = cap, .num = 0};
    if (!r->reached) {
        add(&s, SCAN_SEV_PAGE, "unreachable", "", "%.*s could not be scanned: %s.",
            ENDPOINT_IN_MESSAGE, r->endpoint, r->error[0] != '\0' ? r->error : "no reason given");
        return s.num;
    }
    size_t n = r->chain_len < SCAN_MAX_CHAIN ? r->chain_len : SCAN_MAX_CHAIN;
    if (n == 0) {
        add(&s, SCAN_SEV_CRITICAL, "no-certificate", "", "%.*s presented no certificate.",
            ENDPOINT_IN_MESSAGE, r->endpoint);
    }
    bool root_in_chain = false;
    for (size_t i = 0; i < n; i++) {
        judge_cert(&s, p, &r->chain[i], position_of(r, i), i == 0, now);
        root_in_chain = root_in_chain || (r->root_found && same_cert(&r->chain[i], &r->root));
    }
    if (r->root_found && !root_in_chain) {
        judge_cert(&s, p, &r->root, "root", false, now);
    }
    if (r->chain_truncated) {
        add(&s, SCAN_SEV_WARN, "chain-too-long", "",
            "%.*s presented more than %d certificates; only the first %d were judged.",
            ENDPOINT_IN_MESSAGE, r->endpoint, SCAN_MAX_CHAIN, SCAN_MAX_CHAIN);
    }
    if (p->tls13_only) {
        if (strcmp(r->version, "TLSv1.3") != 0) {
            add(&s, SCAN_SEV_PAGE, "old-tls-version", "",
                "%.*s negotiated %s, but the policy is TLS 1.3 only.", ENDPOINT_IN_MESSAGE,
                r->endpoint, r->version[0] != '\0' ? r->version : "an unknown version");
        }
        const struct {
            const char *code, *name;
            int accepted;
        } olds[] = {
            {"tls10-accepted", "TLS 1.0", r->accepts_tls10},
            {"tls11-accepted", "TLS 1.1", r->accepts_tls11},
            {"tls12-accepted", "TLS 1.2", r->accepts_tls12},
        };
        for (size_t i = 0; i < nitems(olds); i++) {
            if (olds[i].accepted == 1) {
                add(&s, SCAN_SEV_PAGE, olds[i].code, "",
                    "%.*s still accepts %s, but the policy is TLS 1.3 only.", ENDPOINT_IN_MESSAGE,
                    r->endpoint, olds[i].name);
            }
        }
    }
    if (p->require_client_cert && r->accepts_no_client_cert == 1) {
        add(&s, SCAN_SEV_CRITICAL, "no-client-cert-accepted", "",
            "%.*s accepts a client without a certificate, but the policy requires mTLS.",
            ENDPOINT_IN_MESSAGE, r->endpoint);
    }
    if (p->strict && r->accepts_plaintext == 1) {
        add(&s, SCAN_SEV_CRITICAL, "plaintext-accepted", "",
            "%.*s answers plaintext HTTP, but the policy is STRICT.", ENDPOINT_IN_MESSAGE,
            r->endpoint);
    }
    if (p->want_alpn != NULL && strcmp(p->want_alpn, r->alpn) != 0) {
        add(&s, SCAN_SEV_WARN, "alpn-mismatch", "", "%.*s negotiated ALPN \"%.*s\", not \"%.*s\".",
            ENDPOINT_IN_MESSAGE, r->endpoint, 31, r->alpn, 31, p->want_alpn);
    }
    if (r->http_probed) {
        enum scan_severity sev = p->require_hsts ? SCAN_SEV_WARN : SCAN_SEV_INFO;
        if (r->hsts_present == -1) {
            add(&s, sev, "https-no-answer", "",
                "%.*s gave no HTTP answer over TLS, so its Strict-Transport-Security header "
                "could not be checked.",
                ENDPOINT_IN_MESSAGE, r->endpoint);
        } else if (r->hsts_present == 0) {
            add(&s, sev, "hsts-missing", "",
                "%.*s sends no valid Strict-Transport-Security header.", ENDPOINT_IN_MESSAGE,
                r->endpoint);
        } else if (r->hsts_present == 1 && r->hsts_max_age < p->min_hsts_max_age) {
            add(&s, sev, "hsts-max-age-short", "",
                "%.*s sends Strict-Transport-Security max-age=%lld, under %lld.",
                ENDPOINT_IN_MESSAGE, r->endpoint, (long long)r->hsts_max_age,
                (long long)p->min_hsts_max_age);
        }
        if (r->http_redirects_to_https == 0) {
            add(&s, sev, "http-not-redirected", "",
                "%.*s: plain HTTP does not redirect to https://.", ENDPOINT_IN_MESSAGE,
                r->endpoint);
        }
    }
    return s.num;
}

int scan_exit_code(const struct scan_result *results, size_t num_results,
                   const struct scan_finding *findings, size_t num)
{
    for (size_t i = 0; i < num_results; i++) {
        if (!results[i].reached) {
            return SCAN_EXIT_UNREACHABLE;
        }
    }
    int code = SCAN_EXIT_OK;
    for (size_t i = 0; i < num; i++) {
        if (findings[i].severity >= SCAN_SEV_PAGE) {
            return SCAN_EXIT_PAGE;
        }
        if (findings[i].severity == SCAN_SEV_WARN) {
            code = SCAN_EXIT_WARN;
        }
    }
    return code;
}
