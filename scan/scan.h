/* scan/scan.h: `weftctl scan`, the out-of-band expiry and TLS-policy monitor (issue 9).
 *
 * The scanner is the second, independent system that catches a dead renewal loop: it connects
 * to endpoints, reads what they actually present, and reports. It shares no code path with
 * renewal: its TLS client is configured here (scan/probe.c), the chain is read here with
 * BoringSSL's X509 API (not lib/spiffe), and it reads no agent cache.
 *
 * The pieces:
 *   - scan/thresholds.{c,h}: expiry severity, relative to a certificate's own lifetime with
 *     absolute floors (pure arithmetic, no clock);
 *   - scan/probe.{c,h}: one endpoint: TLS handshakes (the main one, and one per protocol
 *     version to find what is still accepted, one without a client certificate, one in
 *     plaintext), the chain presented, HSTS for HTTPS endpoints;
 *   - scan/evaluate.{c,h}: a probe's result and the policy -> findings;
 *   - scan/report.{c,h}: the human table, JSON, the Prometheus textfile;
 *   - scan/alert.{c,h}: Alertmanager v2 POSTs and resolves (a state file), or a command.
 * This header holds the types they share. */
#ifndef WEFT_SCAN_SCAN_H
#define WEFT_SCAN_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCAN_MAX_CHAIN 8       /* certificates of a presented chain that are reported */
#define SCAN_MAX_FINDINGS 64   /* per endpoint */
#define SCAN_NAME_MAX 255      /* an endpoint as given: HOST:PORT or a URL */
#define SCAN_SUBJECT_MAX 255   /* a subject DN or SPIFFE ID, cut to this */
#define SCAN_SERIAL_HEX_MAX 40 /* 20 bytes */
#define SCAN_MESSAGE_MAX 255   /* one finding's sentence */

/* enum scan_severity orders findings; the exit code is the highest (scan_exit_code). */
enum scan_severity {
    SCAN_SEV_INFO = 0, /* reported, never alerted */
    SCAN_SEV_WARN,
    SCAN_SEV_PAGE,
    SCAN_SEV_CRITICAL,
};

/* scan_severity_name returns "info", "warn", "page" or "critical". */
const char *scan_severity_name(enum scan_severity s);

/* struct scan_cert is one certificate of a presented chain, as the scanner read it. */
struct scan_cert {
    char subject[SCAN_SUBJECT_MAX + 1];   /* one-line DN; "" when empty */
    char spiffe_id[SCAN_SUBJECT_MAX + 1]; /* the URI SAN when it is spiffe://..., else "" */
    char serial_hex[SCAN_SERIAL_HEX_MAX + 1];
    int64_t not_before, not_after; /* seconds since the epoch */
    bool is_ca;                    /* basicConstraints cA */
    bool self_signed;              /* subject == issuer and verifies with its own key */
    char key_type[8];              /* "EC", "RSA", "Ed25519", "other" */
    int key_bits;                  /* 256 for P-256, 2048 for RSA-2048 */
};

/* struct scan_result is what probing one endpoint found: the facts, before any judgement. */
struct scan_result {
    char endpoint[SCAN_NAME_MAX + 1];
    bool reached;                     /* the main TLS handshake completed */
    char error[SCAN_MESSAGE_MAX + 1]; /* why not, when !reached */
    /* the main handshake */
    char version[16];                       /* "TLSv1.3" */
    char cipher[64];                        /* BoringSSL's name */
    char alpn[32];                          /* negotiated, "" for none */
    struct scan_cert chain[SCAN_MAX_CHAIN]; /* as presented, leaf first */
    size_t chain_len;
    bool chain_truncated;  /* more than SCAN_MAX_CHAIN were presented */
    struct scan_cert root; /* the bundle's root the chain ends at, when root_found */
    bool root_found;
    /* the extra probes (each its own handshake); -1 not probed, 0 refused, 1 accepted */
    int accepts_tls10, accepts_tls11, accepts_tls12;
    int accepts_no_client_cert; /* a handshake and one read without presenting a certificate */
    int accepts_plaintext;      /* a plaintext HTTP request got an HTTP answer */
    /* HTTPS */
    bool http_probed;
    int hsts_present; /* -1 not probed */
    int64_t hsts_max_age;
    bool hsts_include_subdomains, hsts_preload;
    int http_redirects_to_https; /* -1 not probed */
};

/* struct scan_finding is one judgement about one endpoint. |code| is stable, for alert
 * deduplication and machines ("leaf-expiring", "renewal-overdue", "tls12-accepted", ...). */
struct scan_finding {
    enum scan_severity severity;
    char endpoint[SCAN_NAME_MAX + 1];
    char code[48];
    char subject[SCAN_SUBJECT_MAX + 1]; /* the certificate it is about, or "" */
    char message[SCAN_MESSAGE_MAX + 1]; /* one sentence for a person */
};

/* Exit codes of `weftctl scan`: the highest that applies. */
#define SCAN_EXIT_OK 0
#define SCAN_EXIT_WARN 1
#define SCAN_EXIT_PAGE 2
#define SCAN_EXIT_UNREACHABLE 3 /* an endpoint could not be scanned (itself a finding) */

#endif
