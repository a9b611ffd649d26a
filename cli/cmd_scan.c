/* weftctl scan: the out-of-band expiry and TLS-policy monitor (issue 9; scan/scan.h says what
 * each part does). This file is the command: flags, endpoints, a bounded pool of workers for a
 * pass, the report, alerts, and --watch. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/internal.h"
#include "lib/base/mem.h"
#include "lib/base/timefmt.h"
#include "lib/rpc/rpc.h"
#include "proto/ca.pb-c.h"
#include "proto/workload.pb-c.h"
#include "scan/alert.h"
#include "scan/evaluate.h"
#include "scan/probe.h"
#include "scan/report.h"

#define SCAN_MAX_ENDPOINTS 10000
#define SCAN_MAX_CONCURRENCY 64
#define SCAN_DEFAULT_CONCURRENCY 8
#define SCAN_MAX_PEM_CERTS 64 /* certificates of --bundle or --client-cert */
#define SCAN_MIN_WATCH_S 10
#define SCAN_DEFAULT_KEEP_S (24 * 3600) /* --from-ca-keep: the longest SVID lifetime */
#define SCAN_DEFAULT_MESH_PORT 8080     /* --from-ca-port: the demo mesh's application port */
#define SCAN_CA_CALL_TIMEOUT_MS 10000   /* ListDirectory on the admin socket */
#define SCAN_CA_MAX_RESPONSE (64 << 20) /* 10000 entries with IDs of up to 2048 bytes, and more */
#define SCAN_WLAPI_TIMEOUT_MS 10000     /* the first X509SVIDResponse */
#define SCAN_WLAPI_MAX_RESPONSE (4 << 20)
#define SCAN_DEFAULT_PASS_TIMEOUT_S 600
/* A usage error is a scan that could not happen: 3, not weftctl's usual 2, which here means a
 * page-level finding (a script must not page on a typo, nor miss a page) */
#define SCAN_EXIT_USAGE SCAN_EXIT_UNREACHABLE

static const char usage[] =
    "usage: weftctl scan [ENDPOINT...] [--file FILE] [--from-ca] [options]\n"
    "\n"
    "Connects to each endpoint (HOST:PORT, [IPV6]:PORT or https://HOST[:PORT]/), reads the\n"
    "certificate chain it presents and how it speaks TLS, and reports what needs a person:\n"
    "certificates near expiry (leaf, intermediates and the root when --bundle names it), a leaf\n"
    "past its renewal point (renewal loop stuck?), TLS versions, keys, ALPN, plaintext or\n"
    "clients without a certificate accepted where they should not be. It shares no code with\n"
    "weft's renewal: its own TLS client, its own reading of the chain.\n"
    "\n"
    "Endpoints:\n"
    "  ENDPOINT...                on the command line, and/or\n"
    "  --file FILE                one per line ('#' starts a comment); and/or\n"
    "  --from-ca                  every live address of weft-ca's mesh directory (Admin\n"
    "                             ListDirectory on its admin socket: --socket PATH, else\n"
    "                             $WEFT_CA_SOCKET), read again before each --watch pass; at most\n"
    "                             10000 endpoints in all. The leaf must present the SPIFFE ID the\n"
    "                             directory names there: another one is a page (unexpected-id).\n"
    "                             Unless --alpn is given, weft/1 is offered (weft-proxy refuses a\n"
    "                             ClientHello without it on STRICT ports)\n"
    "  --from-ca-port N           the port dialled for directory addresses without one (default\n"
    "                             8080). weft-proxy reports its pod's bare IP; its mTLS is\n"
    "                             reached through any port iptables redirects to it (an\n"
    "                             application port, 8080 in the demo mesh), never by dialling\n"
    "                             the inbound listener (15006) itself, which it refuses as\n"
    "                             \"addressed to the proxy itself\"\n"
    "  --from-ca-keep DUR         with --watch, an address the directory no longer lists (its\n"
    "                             agent stopped reporting?) is scanned still for DUR after it\n"
    "                             was last listed while it answers, with a warning (default\n"
    "                             24h, the longest SVID lifetime; 0: not at all); one that no\n"
    "                             longer answers is gone (a deleted pod) and forgotten. A\n"
    "                             single run knows only the current list\n"
    "Expiry (of each certificate's own lifetime; one rule for 1-hour SVIDs and 1-year roots):\n"
    "  --warn-left PCT            warn below PCT % left (default 40)\n"
    "  --page-left PCT            page below PCT % left (default 20)\n"
    "  --critical-left PCT        critical below PCT % left (default 5) ...\n"
    "  --critical-floor DUR       ... or below DUR left, whichever is more (default 2m)\n"
    "  --renew-at PCT             a leaf is expected to be renewed at PCT % of its life\n"
    "                             (default 50; weft renews at 50 +-10); past it plus\n"
    "  --renew-grace PCT          PCT % more (default 15) is a warning: renewal loop stuck?\n"
    "  --backdate DUR             how far the issuer backdates notBefore for lagging clocks\n"
    "                             (weft's CA: 1m; Let's Encrypt: 1h): life is counted from\n"
    "                             notBefore + DUR, when it was issued (default 0)\n"
    "Policy (defaults: a mesh port: TLS 1.3 only, mTLS required, no plaintext):\n"
    "  --allow-tls12              TLS 1.2 accepted is no finding\n"
    "  --no-mtls                  a client without a certificate accepted is no finding\n"
    "  --no-strict                plaintext accepted is no finding\n"
    "  --alpn PROTO               offer PROTO; another one negotiated is a warning\n"
    "  --https                    an HTTPS edge: check Strict-Transport-Security (max-age at\n"
    "                             least 180 days) and that plain HTTP on --http-port (default\n"
    "                             80) redirects to https://; implies --no-mtls --no-strict\n"
    "  --http-port N\n"
    "Identity:\n"
    "  --bundle FILE              PEM roots: names the root each chain ends at, whose expiry\n"
    "                             is then judged too\n"
    "  --client-cert FILE --client-key FILE\n"
    "                             PEM chain and key presented when a server asks (an SVID,\n"
    "                             to reach mTLS-only ports)\n"
    "  --workload-api unix:///PATH\n"
    "                             fetch the scanner's own X.509-SVID (the first one) and its\n"
    "                             trust domain's bundle from a SPIFFE Workload API socket, and\n"
    "                             present it when a server asks; the bundle serves as --bundle\n"
    "                             when none is given. Fetched again before each --watch pass\n"
    "Output and alerts:\n"
    "  --format table|json        (default table)\n"
    "  --prometheus FILE          also write a node_exporter textfile-collector file\n"
    "  --alert-url URL            POST page and critical findings to Alertmanager (v2 API),\n"
    "                             and resolves once they clear (with --state)\n"
    "  --alert-ca FILE            CAs for an https --alert-url\n"
    "  --alert-exec CMD           run `sh -c CMD` with the alerts (JSON) on stdin\n"
    "  --state FILE               what is firing, across runs\n"
    "Running:\n"
    "  --concurrency N            endpoints probed at once (default 8, at most 64)\n"
    "  --timeout DUR              each connection (default 5s; an endpoint makes up to 7)\n"
    "  --pass-timeout DUR         no endpoint is started after DUR (default 10m): those left\n"
    "                             are reported as not scanned (exit 3); the ones under way\n"
    "                             finish, each within its connections' --timeout\n"
    "  --watch DUR                scan again every DUR (+-10 %, at least 10s) until SIGTERM\n"
    "\n"
    "Exit: 0 nothing found, 1 warnings, 2 page or critical findings, 3 an endpoint could not\n"
    "be scanned (itself a finding); the highest that applies. A usage error is 3 too (nothing\n"
    "was scanned), with a message on stderr. With --watch, the last finished pass's code; a\n"
    "pass cut short by SIGTERM or SIGINT is neither reported nor alerted. weft-ca's directory\n"
    "or the Workload API unreadable: 3 with a message on stderr and no report (with --watch,\n"
    "after the first pass: the last list or SVID is used and the pass ends no better than 3).\n";

static atomic_int stop_signal;

static void on_signal(int sig) { atomic_store(&stop_signal, sig); }

/* struct scan_cfg is everything a pass needs. */
struct scan_cfg {
    const char **endpoints;
    const char **expected_ids;  /* per endpoint: the directory's SPIFFE ID, or NULL */
    int64_t *left_directory_at; /* per endpoint: when the directory last listed it, if it no
                                 * longer does; else 0 */
    bool *gone; /* per endpoint, set by the pass: left the directory and no longer answers */
    size_t num_endpoints;
    struct scan_policy policy;
    struct scan_probe_opts probe;
    const char *format, *prometheus;
    struct scan_alert_opts alert;
    bool alerting;
    size_t concurrency;
    int64_t pass_timeout_s;
};

/* struct pool is one pass: what each worker writes for endpoint i is results[i], found[i]
 * (malloc'd) and counts[i]. */
struct pool {
    const struct scan_cfg *cfg;
    struct scan_result *results;
    struct scan_finding **found;
    size_t *counts;
    atomic_size_t next, done;
    int64_t now;
    int64_t deadline_ms; /* monotonic: no endpoint is started after it */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* unexpected_id adds the finding "unexpected-id" (page) when |r|'s leaf does not carry the
 * SPIFFE ID the CA's directory names at the endpoint. The scanner keeps at most
 * SCAN_SUBJECT_MAX bytes of an ID, so longer IDs are compared on that many. */
static void unexpected_id(const struct scan_result *r, const char *expected,
                          struct scan_finding *out, size_t *num)
{
    if (!r->reached || r->chain_len == 0 ||
        strncmp(r->chain[0].spiffe_id, expected, SCAN_SUBJECT_MAX) == 0) {
        return;
    }
    memset(out, 0, sizeof(*out));
    out->severity = SCAN_SEV_PAGE;
    /* same-sized, NUL-terminated buffers of another object */
    memcpy(out->endpoint, r->endpoint, sizeof(out->endpoint));
    snprintf(out->code, sizeof(out->code), "unexpected-id");
    memcpy(out->subject, r->chain[0].spiffe_id[0] ? r->chain[0].spiffe_id : r->chain[0].subject,
           sizeof(out->subject));
    snprintf(out->message, sizeof(out->message),
             "presents %.100s where weft-ca's directory expects %.100s%s",
             r->chain[0].spiffe_id[0] ? r->chain[0].spiffe_id : "no SPIFFE ID", expected,
             strlen(expected) > 100 ? "..." : "");
    (*num)++;
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->cfg->num_endpoints || atomic_load(&stop_signal) != 0) {
            return NULL;
        }
        struct scan_result *r = &p->results[i];
        char err[256];
        int rc = WEFT_ELIMIT;
        if (mono_ms() >= p->deadline_ms) {
            snprintf(err, sizeof(err),
                     "not scanned: the pass ran out of time (--pass-timeout) before it");
        } else {
            rc = scan_probe(p->cfg->endpoints[i], &p->cfg->probe, r, err, sizeof(err));
        }
        if (rc != WEFT_OK) {
            /* reported as an endpoint that could not be scanned, never skipped */
            memset(r, 0, sizeof(*r));
            snprintf(r->endpoint, sizeof(r->endpoint), "%s", p->cfg->endpoints[i]);
            snprintf(r->error, sizeof(r->error), "%s", err);
        }
        static _Thread_local struct scan_finding found[SCAN_MAX_FINDINGS];
        size_t n = scan_evaluate(r, &p->cfg->policy, p->now, found, SCAN_MAX_FINDINGS);
        p->counts[i] = n < SCAN_MAX_FINDINGS ? n : SCAN_MAX_FINDINGS;
        if (p->cfg->expected_ids[i] != NULL && p->counts[i] < SCAN_MAX_FINDINGS) {
            unexpected_id(r, p->cfg->expected_ids[i], &found[p->counts[i]], &p->counts[i]);
        }
        if (p->cfg->left_directory_at[i] != 0 && !r->reached) {
            /* left the directory and does not answer: the pod is gone (deleted, moved), not
             * an agent that died with its proxies still serving; said once, then forgotten */
            p->cfg->gone[i] = true;
            p->counts[i] = 0;
        }
        if (p->cfg->left_directory_at[i] != 0 && p->counts[i] < SCAN_MAX_FINDINGS) {
            struct scan_finding *f = &found[p->counts[i]++];
            memset(f, 0, sizeof(*f));
            f->severity = SCAN_SEV_WARN;
            memcpy(f->endpoint, r->endpoint, sizeof(f->endpoint));
            snprintf(f->code, sizeof(f->code), "left-directory");
            char ago[32];
            weft_duration_format(ago, sizeof(ago), p->now - p->cfg->left_directory_at[i]);
            if (r->reached) {
                snprintf(f->message, sizeof(f->message),
                         "%.64s is no longer in weft-ca's directory (last listed %.16s ago) "
                         "but still answers: did its agent stop reporting? Scanned still "
                         "(--from-ca-keep).",
                         r->endpoint, ago);
            } else {
                f->severity = SCAN_SEV_INFO;
                snprintf(f->message, sizeof(f->message),
                         "%.64s left weft-ca's directory %.16s ago and no longer answers: "
                         "gone, forgotten.",
                         r->endpoint, ago);
            }
        }
        p->found[i] = weft_xmalloc((p->counts[i] + 1) * sizeof(*found));
        memcpy(p->found[i], found, p->counts[i] * sizeof(*found));
        atomic_fetch_add(&p->done, 1);
    }
}

/* pass scans every endpoint once, reports and alerts; returns the exit code. */
static int pass(const struct scan_cfg *cfg)
{
    static struct pool p; /* outlives a pass cut short (see below) */
    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.now = cli_now();
    p.deadline_ms = mono_ms() + cfg->pass_timeout_s * 1000;
    p.results = calloc(cfg->num_endpoints + 1, sizeof(*p.results)); /* an empty directory: 0 */
    p.found = calloc(cfg->num_endpoints + 1, sizeof(*p.found));
    p.counts = calloc(cfg->num_endpoints + 1, sizeof(*p.counts));
    if (p.results == NULL || p.found == NULL || p.counts == NULL) {
        fprintf(stderr, "weftctl scan: out of memory for %zu endpoints\n", cfg->num_endpoints);
        free(p.results);
        free(p.found);
        free(p.counts);
        return SCAN_EXIT_UNREACHABLE;
    }
    atomic_init(&p.next, 0);
    atomic_init(&p.done, 0);
    size_t n = cfg->concurrency < cfg->num_endpoints ? cfg->concurrency : cfg->num_endpoints;
    pthread_t threads[SCAN_MAX_CONCURRENCY];
    size_t started = 0;
    for (; started < n; started++) {
        if (pthread_create(&threads[started], NULL, worker, &p) != 0) {
            break;
        }
    }
    if (started == 0) {
        worker(&p); /* no thread to be had: this one does it all */
    }
    /* wait for the pass, or a signal: a probe may wait out its timeout several times over, and
     * SIGTERM must not (Kubernetes' grace period is 30 s) */
    while (atomic_load(&p.done) < cfg->num_endpoints && atomic_load(&stop_signal) == 0) {
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    if (atomic_load(&p.done) < cfg->num_endpoints) {
        /* a signal cut the pass short: endpoints not probed must not read as unreached, nor
         * their alerts as resolved. The workers still run and use |p|: they end with the
         * process, which ends now */
        fprintf(stderr,
                "weftctl scan: stopped by a signal before the pass finished (%zu of %zu "
                "endpoints): nothing reported or alerted for it\n",
                atomic_load(&p.done), cfg->num_endpoints);
        return -1;
    }
    for (size_t i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }

    size_t total = 0;
    for (size_t i = 0; i < cfg->num_endpoints; i++) {
        total += p.counts[i];
    }
    struct scan_finding *all = weft_xmalloc((total + 1) * sizeof(*all)); /* scan_exit_code's */
    for (size_t i = 0, k = 0; i < cfg->num_endpoints; k += p.counts[i], i++) {
        memcpy(&all[k], p.found[i], p.counts[i] * sizeof(*all));
    }
    int code = scan_exit_code(p.results, cfg->num_endpoints, all, total);
    bool unreached_but_gone = code == SCAN_EXIT_UNREACHABLE;
    for (size_t i = 0; i < cfg->num_endpoints && unreached_but_gone; i++) {
        unreached_but_gone = p.results[i].reached || cfg->gone[i];
    }
    if (unreached_but_gone) {
        /* the only endpoints not reached are gone from the mesh: not "could not scan" */
        code = scan_exit_code(NULL, 0, all, total);
    }
    struct scan_pass sp = {
        .scanned_at = p.now,
        .results = p.results,
        .findings = (const struct scan_finding *const *)p.found,
        .num_findings = p.counts,
        .num = cfg->num_endpoints,
        .exit_code = code,
    };
    int rc = strcmp(cfg->format, "json") == 0 ? scan_report_json(stdout, &sp)
                                              : scan_report_table(stdout, &sp);
    fflush(stdout);
    if (rc != WEFT_OK) {
        fprintf(stderr, "weftctl scan: cannot write the report to stdout\n");
    }
    char err[512];
    if (cfg->prometheus != NULL &&
        scan_report_prometheus(cfg->prometheus, &sp, err, sizeof(err)) != WEFT_OK) {
        fprintf(stderr, "weftctl scan: --prometheus: %s\n", err);
    }
    if (cfg->alerting) {
        /* the clock when sending: with --watch, firing alerts must outlast the next pass,
         * however long this one took */
        int64_t sent_at = cli_now();
        struct scan_alert_opts ao = cfg->alert;
        if (ao.firing_for_s > 0) {
            ao.firing_for_s += 2 * (sent_at > p.now ? sent_at - p.now : 0);
        }
        if (scan_alert_send(&ao, &sp, sent_at, err, sizeof(err)) != WEFT_OK) {
            fprintf(stderr, "weftctl scan: alerts not delivered: %s\n", err);
        }
    }
    for (size_t i = 0; i < cfg->num_endpoints; i++) {
        free(p.found[i]);
    }
    free(all);
    free(p.results);
    free(p.found);
    free(p.counts);
    return code;
}

/* read_pem_certs reads every certificate of the PEM file |path| (at most SCAN_MAX_PEM_CERTS). */
static STACK_OF(X509) * read_pem_certs(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "weftctl scan: %s %s: %s\n", what, path, strerror(errno));
        return NULL;
    }
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509 *x;
    while (certs != NULL && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(certs) == SCAN_MAX_PEM_CERTS || !sk_X509_push(certs, x)) {
            X509_free(x);
            fprintf(stderr, "weftctl scan: %s %s: more than %d certificates\n", what, path,
                    SCAN_MAX_PEM_CERTS);
            sk_X509_pop_free(certs, X509_free);
            certs = NULL;
        }
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    fclose(f);
    if (certs != NULL && sk_X509_num(certs) == 0) {
        fprintf(stderr, "weftctl scan: %s %s: no PEM certificate in it\n", what, path);
        sk_X509_free(certs);
        certs = NULL;
    }
    return certs;
}

static EVP_PKEY *read_pem_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "weftctl scan: --client-key %s: %s\n", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (key == NULL) {
        fprintf(stderr, "weftctl scan: --client-key %s: no PEM private key in it\n", path);
    }
    return key;
}

/* read_endpoints appends the endpoints of |path| to |list|; returns SCAN_EXIT_USAGE on failure. */
static int read_endpoints(const char ***list, size_t *num, const char *path, char **keep)
{
    uint8_t *data;
    size_t len;
    if (cli_read(&data, &len, "--file", path) != EXIT_VALID) {
        return SCAN_EXIT_USAGE;
    }
    *keep = (char *)data; /* the endpoints point into it */
    size_t line_no = 0;
    for (char *save = NULL, *line = strtok_r((char *)data, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        while (*line == ' ' || *line == '\t') {
            line++;
        }
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == ' ' || line[l - 1] == '\t' || line[l - 1] == '\r')) {
            line[--l] = '\0';
        }
        if (l == 0) {
            continue;
        }
        if (l > SCAN_NAME_MAX || *num == SCAN_MAX_ENDPOINTS) {
            fprintf(stderr, "weftctl scan: --file %s:%zu: %s\n", path, line_no,
                    l > SCAN_NAME_MAX ? "endpoint longer than 255 bytes" : "over 10000 endpoints");
            return SCAN_EXIT_USAGE;
        }
        (*list)[(*num)++] = line;
    }
    return EXIT_VALID;
}

/* struct sources is what is read again before each --watch pass: the endpoints of weft-ca's
 * directory (--from-ca) and the scanner's own SVID from the Workload API (--workload-api). */
struct sources {
    const char *ca_socket;     /* --from-ca: the admin socket; NULL: not asked */
    int mesh_port;             /* --from-ca-port */
    size_t num_fixed;          /* endpoints from the command line and files, before the CA's */
    char **ca_names, **ca_ids; /* the CA's endpoints and the IDs expected there (malloc'd) */
    size_t num_ca;
    const char *wlapi;      /* --workload-api: the socket's path; NULL: not asked */
    bool bundle_from_wlapi; /* no --bundle: the fetched bundle names the roots */
    /* every endpoint the directory listed in this process, sorted by name, kept --from-ca-keep
     * after it was last listed while it still answers: an agent that died stops reporting its
     * pods, whose proxies still present certificates that run out, and their alerts must not
     * resolve; a pod that was deleted stops answering, and is forgotten */
    struct remembered {
        char *name, *id;
        int64_t listed_at;
        uint64_t listed_gen; /* the fetch that last listed it (a pinned clock stays put) */
        bool gone;           /* left the directory and no longer answers: forget it */
    } * mem;
    size_t num_mem;
    uint64_t gen; /* fetches so far */
    int64_t keep_s;
};

static int remembered_cmp(const void *a, const void *b)
{
    return strcmp(((const struct remembered *)a)->name, ((const struct remembered *)b)->name);
}

/* remember forgets what is gone or was last listed over src->keep_s before |now|, then
 * records the directory's current list (src->ca_names, ca_ids) as listed by fetch src->gen at
 * |now|. */
static void remember(struct sources *src, int64_t now)
{
    size_t kept = 0;
    for (size_t i = 0; i < src->num_mem; i++) {
        if (src->mem[i].gone || now - src->mem[i].listed_at > src->keep_s) {
            free(src->mem[i].name);
            free(src->mem[i].id);
        } else {
            src->mem[kept++] = src->mem[i];
        }
    }
    src->num_mem = kept;
    size_t sorted = src->num_mem, unremembered = 0;
    for (size_t i = 0; i < src->num_ca; i++) {
        struct remembered key = {.name = src->ca_names[i]};
        struct remembered *r = bsearch(&key, src->mem, sorted, sizeof(*r), remembered_cmp);
        if (r == NULL && src->num_mem < SCAN_MAX_ENDPOINTS) {
            r = &src->mem[src->num_mem++];
            r->name = weft_xstrndup(src->ca_names[i], strlen(src->ca_names[i]));
            r->id = NULL;
            r->gone = false;
        }
        if (r == NULL) {
            unremembered++;
            continue;
        }
        free(r->id);
        r->id = weft_xstrndup(src->ca_ids[i], strlen(src->ca_ids[i]));
        r->listed_at = now;
        r->listed_gen = src->gen;
    }
    qsort(src->mem, src->num_mem, sizeof(*src->mem), remembered_cmp);
    if (unremembered > 0) {
        fprintf(stderr,
                "weftctl scan: --from-ca: %zu addresses not remembered (%d are, within "
                "--from-ca-keep): if they leave the directory they leave the scan\n",
                unremembered, SCAN_MAX_ENDPOINTS);
    }
}

/* forget_gone marks as gone the remembered addresses the last pass found had left the
 * directory and no longer answer (|gone| per endpoint of |cfg|). */
static void forget_gone(struct sources *src, const struct scan_cfg *cfg)
{
    for (size_t k = src->num_fixed; k < cfg->num_endpoints; k++) {
        if (!cfg->gone[k]) {
            continue;
        }
        struct remembered key = {.name = (char *)cfg->endpoints[k]};
        struct remembered *r = bsearch(&key, src->mem, src->num_mem, sizeof(*r), remembered_cmp);
        if (r != NULL) {
            r->gone = true;
        }
    }
}

static void sources_free_ca(struct sources *src)
{
    for (size_t i = 0; i < src->num_ca; i++) {
        free(src->ca_names[i]);
        free(src->ca_ids[i]);
    }
    free(src->ca_names);
    free(src->ca_ids);
    src->ca_names = src->ca_ids = NULL;
    src->num_ca = 0;
}

/* endpoint_of_address turns a directory address ("IP", "IP:port", "[IPV6]:port" or a bare IPv6
 * address, lib/base/netaddr.h's canonical forms) into an endpoint, dialling |port| when the
 * address names none; returns whether it named none. */
static bool endpoint_of_address(char *out, size_t out_len, const char *addr, int port)
{
    const char *colon = strchr(addr, ':');
    if (addr[0] == '[' || (colon != NULL && strchr(colon + 1, ':') == NULL)) {
        snprintf(out, out_len, "%s", addr); /* "[V6]:port" or "V4:port" */
        return false;
    }
    if (colon == NULL) {
        snprintf(out, out_len, "%s:%d", addr, port);
    } else {
        snprintf(out, out_len, "[%s]:%d", addr, port);
    }
    return true;
}

/* struct ca_ep is one directory entry as an endpoint, while the list is being built. */
struct ca_ep {
    char *name, *id;
    bool bare; /* the address named no port */
};

/* ca_ep_cmp orders by endpoint, an entry that named its port before a bare one. */
static int ca_ep_cmp(const void *a, const void *b)
{
    const struct ca_ep *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : (int)x->bare - (int)y->bare;
}

/* ca_directory_fetch replaces the CA's endpoints of |cfg| with the live addresses of weft-ca's
 * directory (Admin ListDirectory). On failure |err| says why, and the endpoints are the last
 * list's (out of memory: the fixed ones only). */
static int ca_directory_fetch(struct scan_cfg *cfg, struct sources *src, char *err, size_t err_len)
{
    forget_gone(src, cfg);
    Weft__Ca__V1__ListDirectoryRequest req = WEFT__CA__V1__LIST_DIRECTORY_REQUEST__INIT;
    Weft__Ca__V1__ListDirectoryResponse *resp = NULL;
    struct rpc_status st;
    grpc_init();
    grpc_channel *ch = rpc_channel_unix(src->ca_socket);
    int rc =
        rpc_call_unary(ch, "/weft.ca.v1.Admin/ListDirectory", &req.base,
                       &weft__ca__v1__list_directory_response__descriptor, SCAN_CA_MAX_RESPONSE,
                       SCAN_CA_CALL_TIMEOUT_MS, (ProtobufCMessage **)&resp, &st);
    grpc_channel_destroy(ch);
    grpc_shutdown();
    if (rc != WEFT_OK) {
        if (st.code == GRPC_STATUS_UNAVAILABLE || st.code == GRPC_STATUS_DEADLINE_EXCEEDED) {
            snprintf(err, err_len, "cannot reach weft-ca at %s: %s", src->ca_socket, st.details);
        } else {
            snprintf(err, err_len, "weft-ca at %s refused ListDirectory: %s", src->ca_socket,
                     st.details);
        }
        return WEFT_EIO;
    }
    rc = WEFT_ELIMIT;
    if (resp->truncated) {
        snprintf(err, err_len,
                 "weft-ca's directory holds more than the %zu addresses it lists: refusing to "
                 "scan part of it",
                 resp->n_entries);
    } else if (resp->n_entries > SCAN_MAX_ENDPOINTS - src->num_fixed) {
        snprintf(err, err_len, "weft-ca's directory lists %zu addresses: over 10000 endpoints",
                 resp->n_entries);
    } else {
        rc = WEFT_OK;
    }
    if (rc != WEFT_OK) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return rc;
    }
    sources_free_ca(src);
    cfg->num_endpoints = src->num_fixed;
    size_t n = resp->n_entries;
    struct ca_ep *eps = calloc(n + 1, sizeof(*eps));
    src->ca_names = calloc(n + 1, sizeof(char *));
    src->ca_ids = calloc(n + 1, sizeof(char *));
    bool ok = eps != NULL && src->ca_names != NULL && src->ca_ids != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        char name[SCAN_NAME_MAX + 1];
        eps[i].bare =
            endpoint_of_address(name, sizeof(name), resp->entries[i]->address, src->mesh_port);
        eps[i].name = strdup(name);
        eps[i].id = strdup(resp->entries[i]->spiffe_id);
        ok = eps[i].name != NULL && eps[i].id != NULL;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (ok) {
        /* "IP" dialled at --from-ca-port is the "IP:port" another entry may name: that one is
         * what weft-proxy expects there (its lookup takes "IP:port" before "IP"), so it stays */
        qsort(eps, n, sizeof(*eps), ca_ep_cmp);
        for (size_t i = 0; i < n; i++) {
            if (src->num_ca > 0 && strcmp(src->ca_names[src->num_ca - 1], eps[i].name) == 0) {
                free(eps[i].name);
                free(eps[i].id);
                continue;
            }
            src->ca_names[src->num_ca] = eps[i].name;
            src->ca_ids[src->num_ca] = eps[i].id;
            src->num_ca++;
        }
    } else {
        for (size_t i = 0; eps != NULL && i < n; i++) {
            free(eps[i].name);
            free(eps[i].id);
        }
    }
    free(eps);
    if (!ok) {
        snprintf(err, err_len, "out of memory for %zu directory addresses", n);
        sources_free_ca(src);
        return WEFT_EINTERNAL;
    }
    size_t k = src->num_fixed;
    for (size_t i = 0; i < src->num_ca; i++, k++) {
        cfg->endpoints[k] = src->ca_names[i];
        cfg->expected_ids[k] = src->ca_ids[i];
        cfg->left_directory_at[k] = 0;
    }
    /* and those it listed before and no longer does, while they are remembered */
    src->gen++;
    remember(src, cli_now());
    size_t dropped = 0;
    for (size_t i = 0; i < src->num_mem; i++) {
        if (src->mem[i].listed_gen == src->gen) {
            continue;
        }
        if (k == SCAN_MAX_ENDPOINTS) {
            dropped++;
            continue;
        }
        cfg->endpoints[k] = src->mem[i].name;
        cfg->expected_ids[k] = src->mem[i].id;
        cfg->left_directory_at[k++] = src->mem[i].listed_at;
    }
    if (dropped > 0) {
        fprintf(stderr,
                "weftctl scan: --from-ca: %zu addresses that left the directory are not scanned: "
                "over 10000 endpoints\n",
                dropped);
    }
    cfg->num_endpoints = k;
    memset(cfg->gone, 0, cfg->num_endpoints * sizeof(*cfg->gone));
    return WEFT_OK;
}

/* der_certs reads DER certificates back to back (the Workload API's encoding) with BoringSSL's
 * X509 parser: the scanner reads the SVID itself, not through lib/spiffe. NULL when |der| holds
 * none, more than SCAN_MAX_PEM_CERTS, or anything that is not a certificate. */
static STACK_OF(X509) * der_certs(const uint8_t *der, size_t len)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    CBS cbs;
    CBS_init(&cbs, der, len);
    while (certs != NULL && CBS_len(&cbs) > 0) {
        CBS one;
        CBS_init(&one, NULL, 0);
        X509 *x = NULL;
        const uint8_t *p = NULL;
        if (sk_X509_num(certs) < SCAN_MAX_PEM_CERTS &&
            CBS_get_asn1_element(&cbs, &one, CBS_ASN1_SEQUENCE)) {
            p = CBS_data(&one);
            x = d2i_X509(NULL, &p, (long)CBS_len(&one));
        }
        if (x == NULL || p != CBS_data(&one) + CBS_len(&one) || !sk_X509_push(certs, x)) {
            X509_free(x);
            sk_X509_pop_free(certs, X509_free);
            certs = NULL;
        }
    }
    if (certs != NULL && sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        certs = NULL;
    }
    ERR_clear_error();
    return certs;
}

/* wlapi_fetch takes the first X.509-SVID of the SPIFFE Workload API at |src->wlapi| as the
 * client certificate of |cfg| (and its bundle as the roots, when --bundle was not given). It is
 * a fetch of its own, not proxy/agentclient: that client keeps an agent cache (reconnecting
 * streams, a published state, lib/spiffe's chain parsing) which the issue says the scanner must
 * not share with the renewal path. On failure nothing changes and |err| says why. */
static int wlapi_fetch(struct scan_cfg *cfg, const struct sources *src, char *err, size_t err_len)
{
    int rc = WEFT_EIO;
    STACK_OF(X509) *chain = NULL, *bundle = NULL;
    EVP_PKEY *key = NULL;
    X509SVIDResponse *resp = NULL;
    grpc_init();
    grpc_channel *ch = rpc_channel_unix(src->wlapi);
    grpc_metadata md = {.key = grpc_slice_from_static_string("workload.spiffe.io"),
                        .value = grpc_slice_from_static_string("true")};
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, "/SpiffeWorkloadAPI/FetchX509SVID",
                                                             SCAN_WLAPI_TIMEOUT_MS, &md, 1);
    X509SVIDRequest req = X509_SVIDREQUEST__INIT;
    if (cs == NULL) {
        snprintf(err, err_len, "Workload API at %s: the call could not start", src->wlapi);
        goto out;
    }
    if (rpc_client_stream_send(cs, &req.base, SCAN_WLAPI_TIMEOUT_MS) != WEFT_OK ||
        rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, SCAN_WLAPI_MAX_RESPONSE,
                               SCAN_WLAPI_TIMEOUT_MS, (ProtobufCMessage **)&resp) != WEFT_OK) {
        struct rpc_status st;
        rpc_client_stream_status(cs, 1000, &st);
        snprintf(err, err_len, "Workload API at %s: FetchX509SVID: %s (status %d)", src->wlapi,
                 st.details[0] ? st.details : "no answer", (int)st.code);
        goto out;
    }
    if (resp->n_svids == 0) {
        snprintf(err, err_len, "Workload API at %s: no X.509-SVID for this process", src->wlapi);
        goto out;
    }
    const X509SVID *svid = resp->svids[0];
    CBS pkcs8;
    CBS_init(&pkcs8, svid->x509_svid_key.data, svid->x509_svid_key.len);
    if ((chain = der_certs(svid->x509_svid.data, svid->x509_svid.len)) == NULL) {
        snprintf(err, err_len,
                 "Workload API at %s: the SVID of %.200s is not 1 to %d DER certificates",
                 src->wlapi, svid->spiffe_id, SCAN_MAX_PEM_CERTS);
        goto out;
    }
    if ((key = EVP_parse_private_key(&pkcs8)) == NULL || CBS_len(&pkcs8) != 0) {
        snprintf(err, err_len, "Workload API at %s: the key of %.200s is not PKCS#8 DER",
                 src->wlapi, svid->spiffe_id);
        goto out;
    }
    if (src->bundle_from_wlapi &&
        (bundle = der_certs(svid->bundle.data, svid->bundle.len)) == NULL) {
        snprintf(err, err_len,
                 "Workload API at %s: the bundle of %.200s is not 1 to %d DER certificates",
                 src->wlapi, svid->spiffe_id, SCAN_MAX_PEM_CERTS);
        goto out;
    }
    sk_X509_pop_free(cfg->probe.client_chain, X509_free);
    EVP_PKEY_free(cfg->probe.client_key);
    cfg->probe.client_chain = chain;
    cfg->probe.client_key = key;
    chain = NULL;
    key = NULL;
    if (bundle != NULL) {
        sk_X509_pop_free(cfg->probe.bundle_roots, X509_free);
        cfg->probe.bundle_roots = bundle;
        bundle = NULL;
    }
    rc = WEFT_OK;
out:
    if (resp != NULL) {
        for (size_t i = 0; i < resp->n_svids; i++) {
            OPENSSL_cleanse(resp->svids[i]->x509_svid_key.data, resp->svids[i]->x509_svid_key.len);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    ERR_clear_error();
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(bundle, X509_free);
    EVP_PKEY_free(key);
    rpc_client_stream_close(cs);
    grpc_channel_destroy(ch);
    grpc_shutdown();
    return rc;
}

/* wlapi_path returns the absolute path of a Workload API address "unix:///PATH" or
 * "unix:/PATH", or NULL. */
static const char *wlapi_path(const char *addr)
{
    if (strncmp(addr, "unix:///", 8) == 0) {
        return addr + 7;
    }
    if (strncmp(addr, "unix:/", 6) == 0 && addr[6] != '/') {
        return addr + 5;
    }
    return NULL;
}

/* duration_or_zero reads a duration such as 2m, or 0. */
static bool duration_or_zero(int64_t *out, const char *arg)
{
    if (strcmp(arg, "0") == 0) {
        *out = 0;
        return true;
    }
    return weft_duration_parse(out, arg) == WEFT_OK;
}

/* percent reads a percentage of 0 < p < 100 into a fraction. */
static bool percent(double *out, const char *arg)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || (*end != '\0' && strcmp(end, "%") != 0) || !(v > 0 && v < 100)) {
        return false;
    }
    *out = v / 100.0;
    return true;
}

int cmd_scan(int argc, char **argv)
{
    enum {
        O_FILE = 1000,
        O_WARN,
        O_PAGE,
        O_CRIT,
        O_FLOOR,
        O_RENEW,
        O_GRACE,
        O_BACKDATE,
        O_TLS12,
        O_NO_MTLS,
        O_NO_STRICT,
        O_ALPN,
        O_HTTPS,
        O_HTTP_PORT,
        O_BUNDLE,
        O_CERT,
        O_KEY,
        O_FORMAT,
        O_PROM,
        O_ALERT_URL,
        O_ALERT_CA,
        O_ALERT_EXEC,
        O_STATE,
        O_CONC,
        O_TIMEOUT,
        O_WATCH,
        O_PASS_TIMEOUT,
        O_FROM_CA,
        O_SOCKET,
        O_MESH_PORT,
        O_WLAPI,
        O_KEEP,
    };
    static const struct option opts[] = {
        {"file", required_argument, NULL, O_FILE},
        {"warn-left", required_argument, NULL, O_WARN},
        {"page-left", required_argument, NULL, O_PAGE},
        {"critical-left", required_argument, NULL, O_CRIT},
        {"critical-floor", required_argument, NULL, O_FLOOR},
        {"renew-at", required_argument, NULL, O_RENEW},
        {"renew-grace", required_argument, NULL, O_GRACE},
        {"backdate", required_argument, NULL, O_BACKDATE},
        {"allow-tls12", no_argument, NULL, O_TLS12},
        {"no-mtls", no_argument, NULL, O_NO_MTLS},
        {"no-strict", no_argument, NULL, O_NO_STRICT},
        {"alpn", required_argument, NULL, O_ALPN},
        {"https", no_argument, NULL, O_HTTPS},
        {"http-port", required_argument, NULL, O_HTTP_PORT},
        {"bundle", required_argument, NULL, O_BUNDLE},
        {"client-cert", required_argument, NULL, O_CERT},
        {"client-key", required_argument, NULL, O_KEY},
        {"format", required_argument, NULL, O_FORMAT},
        {"prometheus", required_argument, NULL, O_PROM},
        {"alert-url", required_argument, NULL, O_ALERT_URL},
        {"alert-ca", required_argument, NULL, O_ALERT_CA},
        {"alert-exec", required_argument, NULL, O_ALERT_EXEC},
        {"state", required_argument, NULL, O_STATE},
        {"concurrency", required_argument, NULL, O_CONC},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"watch", required_argument, NULL, O_WATCH},
        {"pass-timeout", required_argument, NULL, O_PASS_TIMEOUT},
        {"from-ca", no_argument, NULL, O_FROM_CA},
        {"socket", required_argument, NULL, O_SOCKET},
        {"from-ca-port", required_argument, NULL, O_MESH_PORT},
        {"workload-api", required_argument, NULL, O_WLAPI},
        {"from-ca-keep", required_argument, NULL, O_KEEP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct scan_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    scan_policy_default(&cfg.policy);
    cfg.format = "table";
    cfg.concurrency = SCAN_DEFAULT_CONCURRENCY;
    cfg.pass_timeout_s = SCAN_DEFAULT_PASS_TIMEOUT_S;
    cfg.probe.probe_versions = true;
    const char *files[16], *bundle = NULL, *cert = NULL, *key = NULL, *alpn = NULL;
    size_t num_files = 0;
    int64_t watch_s = 0, timeout_s = 0;
    bool https = false, from_ca = false, mesh_port_set = false;
    const char *ca_socket = NULL, *wlapi = NULL;
    static struct sources src;
    memset(&src, 0, sizeof(src));
    src.mesh_port = SCAN_DEFAULT_MESH_PORT;
    src.keep_s = SCAN_DEFAULT_KEEP_S;
    bool keep_set = false;
    int c;
    optind = 1;
    int idx = 0;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        struct scan_thresholds *t = &cfg.policy.thresholds;
        bool ok = true;
        const char *want = "see --help";
        switch (c) {
        case O_FILE:
            if (num_files == sizeof(files) / sizeof(files[0])) {
                fprintf(stderr, "weftctl scan: --file: at most 16\n");
                return SCAN_EXIT_USAGE;
            }
            files[num_files++] = optarg;
            break;
        case O_WARN:
            ok = percent(&t->warn_frac, optarg);
            want = "a percentage between 0 and 100";
            break;
        case O_PAGE:
            ok = percent(&t->page_frac, optarg);
            want = "a percentage between 0 and 100";
            break;
        case O_CRIT:
            ok = percent(&t->crit_frac, optarg);
            want = "a percentage between 0 and 100";
            break;
        case O_RENEW:
            ok = percent(&t->renew_frac, optarg);
            want = "a percentage between 0 and 100";
            break;
        case O_GRACE:
            ok = percent(&t->renew_grace_frac, optarg);
            want = "a percentage between 0 and 100";
            break;
        case O_BACKDATE:
            ok = duration_or_zero(&t->backdate_s, optarg);
            want = "a duration such as 1m";
            break;
        case O_FLOOR:
            ok = duration_or_zero(&t->crit_floor_s, optarg);
            want = "a duration such as 2m";
            break;
        case O_TLS12:
            cfg.policy.tls13_only = false;
            break;
        case O_NO_MTLS:
            cfg.policy.require_client_cert = false;
            break;
        case O_NO_STRICT:
            cfg.policy.strict = false;
            break;
        case O_ALPN:
            alpn = optarg;
            ok = strlen(optarg) > 0 && strlen(optarg) < 32;
            want = "1 to 31 bytes";
            break;
        case O_HTTPS:
            https = true;
            break;
        case O_HTTP_PORT: {
            char *end;
            long port = strtol(optarg, &end, 10);
            ok = *end == '\0' && end != optarg && port > 0 && port < 65536;
            want = "a port, 1 to 65535";
            cfg.probe.http_port = (int)port;
            break;
        }
        case O_BUNDLE:
            bundle = optarg;
            break;
        case O_CERT:
            cert = optarg;
            break;
        case O_KEY:
            key = optarg;
            break;
        case O_FORMAT:
            cfg.format = optarg;
            ok = strcmp(optarg, "table") == 0 || strcmp(optarg, "json") == 0;
            want = "table or json";
            break;
        case O_PROM:
            cfg.prometheus = optarg;
            break;
        case O_ALERT_URL:
            cfg.alert.url = optarg;
            break;
        case O_ALERT_CA:
            cfg.alert.ca_file = optarg;
            break;
        case O_ALERT_EXEC:
            cfg.alert.exec = optarg;
            break;
        case O_STATE:
            cfg.alert.state_path = optarg;
            break;
        case O_CONC: {
            char *end;
            long n = strtol(optarg, &end, 10);
            ok = *end == '\0' && end != optarg && n >= 1 && n <= SCAN_MAX_CONCURRENCY;
            want = "1 to 64";
            cfg.concurrency = (size_t)n;
            break;
        }
        case O_TIMEOUT:
            ok = weft_duration_parse(&timeout_s, optarg) == WEFT_OK && timeout_s <= 60;
            want = "a duration of 1s to 60s";
            cfg.probe.timeout_ms = (int)timeout_s * 1000;
            break;
        case O_PASS_TIMEOUT:
            ok = weft_duration_parse(&cfg.pass_timeout_s, optarg) == WEFT_OK;
            want = "a duration such as 10m";
            break;
        case O_WATCH:
            ok = weft_duration_parse(&watch_s, optarg) == WEFT_OK && watch_s >= SCAN_MIN_WATCH_S;
            want = "a duration of at least 10s";
            break;
        case O_FROM_CA:
            from_ca = true;
            break;
        case O_SOCKET:
            ca_socket = optarg;
            break;
        case O_MESH_PORT: {
            char *end;
            long port = strtol(optarg, &end, 10);
            ok = *end == '\0' && end != optarg && port > 0 && port < 65536;
            want = "a port, 1 to 65535";
            src.mesh_port = (int)port;
            mesh_port_set = true;
            break;
        }
        case O_KEEP:
            ok = duration_or_zero(&src.keep_s, optarg);
            want = "a duration such as 24h";
            keep_set = true;
            break;
        case O_WLAPI:
            wlapi = optarg;
            /* unix:///PATH or unix:/PATH, as SPIFFE_ENDPOINT_SOCKET may be written */
            ok = wlapi_path(optarg) != NULL;
            want = "unix:///PATH (an absolute path)";
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_VALID;
        default:
            fputs(usage, stderr);
            return SCAN_EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "weftctl scan: --%s %s: want %s\n", opts[idx].name, optarg, want);
            return SCAN_EXIT_USAGE;
        }
    }
    char why[256];
    if (scan_thresholds_check(&cfg.policy.thresholds, why, sizeof(why)) != WEFT_OK) {
        fprintf(stderr, "weftctl scan: %s\n", why);
        return SCAN_EXIT_USAGE;
    }
    if ((cert == NULL) != (key == NULL)) {
        fprintf(stderr, "weftctl scan: --client-cert and --client-key go together\n");
        return SCAN_EXIT_USAGE;
    }
    if (wlapi != NULL && cert != NULL) {
        fprintf(stderr, "weftctl scan: --workload-api or --client-cert, not both\n");
        return SCAN_EXIT_USAGE;
    }
    if (!from_ca && (ca_socket != NULL || mesh_port_set || keep_set)) {
        fprintf(stderr, "weftctl scan: --%s is for --from-ca\n",
                ca_socket != NULL ? "socket"
                : mesh_port_set   ? "from-ca-port"
                                  : "from-ca-keep");
        return SCAN_EXIT_USAGE;
    }
    if (from_ca) {
        src.mem = weft_xcalloc(SCAN_MAX_ENDPOINTS, sizeof(*src.mem));
        const char *env = getenv("WEFT_CA_SOCKET");
        src.ca_socket = ca_socket != NULL ? ca_socket : env != NULL && env[0] ? env : NULL;
        if (src.ca_socket == NULL) {
            fprintf(stderr,
                    "weftctl scan: --from-ca: no admin socket: pass --socket PATH or set "
                    "WEFT_CA_SOCKET (weft-ca's --admin-socket, by default DATA_DIR/admin.sock)\n");
            return SCAN_EXIT_USAGE;
        }
    }
    if (wlapi != NULL) {
        src.wlapi = wlapi_path(wlapi);
        src.bundle_from_wlapi = bundle == NULL;
    }
    if (cfg.alert.state_path != NULL && cfg.alert.url == NULL && cfg.alert.exec == NULL) {
        fprintf(stderr, "weftctl scan: --state is for --alert-url or --alert-exec\n");
        return SCAN_EXIT_USAGE;
    }
    if (cfg.alert.ca_file != NULL && cfg.alert.url == NULL) {
        fprintf(stderr, "weftctl scan: --alert-ca is for --alert-url\n");
        return SCAN_EXIT_USAGE;
    }
    cfg.alerting = cfg.alert.url != NULL || cfg.alert.exec != NULL;
    /* Alertmanager resolves an alert not heard of for its resolve_timeout (5 min by default):
     * between passes of a longer --watch, firing alerts say how long they stand */
    cfg.alert.firing_for_s = watch_s > 0 ? 3 * watch_s : 0;
    if (https) {
        cfg.policy.require_client_cert = false;
        cfg.policy.strict = false;
        cfg.policy.require_hsts = true;
        cfg.probe.probe_https = true;
    }
    cfg.probe.probe_no_client_cert = cfg.policy.require_client_cert;
    cfg.probe.probe_plaintext = cfg.policy.strict;
    if (alpn != NULL) {
        static const char *offered[1];
        offered[0] = alpn;
        cfg.probe.alpn = offered;
        cfg.probe.num_alpn = 1;
        cfg.policy.want_alpn = alpn;
    } else if (from_ca) {
        /* weft-proxy's STRICT ports refuse a ClientHello without weft/1; offered, not required */
        static const char *mesh_alpn[] = {"weft/1"};
        cfg.probe.alpn = mesh_alpn;
        cfg.probe.num_alpn = 1;
    }

    static const char *endpoints[SCAN_MAX_ENDPOINTS], *expected_ids[SCAN_MAX_ENDPOINTS];
    static int64_t left_directory_at[SCAN_MAX_ENDPOINTS];
    static bool gone[SCAN_MAX_ENDPOINTS];
    memset(expected_ids, 0, sizeof(expected_ids));
    memset(left_directory_at, 0, sizeof(left_directory_at));
    char *kept[16] = {0};
    cfg.endpoints = endpoints;
    cfg.expected_ids = expected_ids;
    cfg.left_directory_at = left_directory_at;
    cfg.gone = gone;
    int rc = EXIT_VALID;
    for (int i = optind; i < argc && rc == EXIT_VALID; i++) {
        if (strlen(argv[i]) > SCAN_NAME_MAX || cfg.num_endpoints == SCAN_MAX_ENDPOINTS) {
            fprintf(stderr, "weftctl scan: %.64s: %s\n", argv[i],
                    cfg.num_endpoints == SCAN_MAX_ENDPOINTS ? "over 10000 endpoints"
                                                            : "longer than 255 bytes");
            rc = SCAN_EXIT_USAGE;
        } else {
            endpoints[cfg.num_endpoints++] = argv[i];
        }
    }
    for (size_t i = 0; i < num_files && rc == EXIT_VALID; i++) {
        rc = read_endpoints(&cfg.endpoints, &cfg.num_endpoints, files[i], &kept[i]);
    }
    for (size_t i = 0; i < cfg.num_endpoints && rc == EXIT_VALID; i++) {
        struct scan_endpoint ep;
        char why_ep[300];
        if (scan_endpoint_parse(&ep, cfg.endpoints[i], why_ep, sizeof(why_ep)) != WEFT_OK) {
            fprintf(stderr, "weftctl %s\n", why_ep);
            rc = SCAN_EXIT_USAGE;
        }
    }
    if (rc == EXIT_VALID && cfg.num_endpoints == 0 && !from_ca) {
        fprintf(stderr, "weftctl scan: no endpoint: give HOST:PORT arguments or --file\n\n%s",
                usage);
        rc = SCAN_EXIT_USAGE;
    }
    if (rc == EXIT_VALID && bundle != NULL &&
        (cfg.probe.bundle_roots = read_pem_certs("--bundle", bundle)) == NULL) {
        rc = SCAN_EXIT_USAGE;
    }
    if (rc == EXIT_VALID && cert != NULL &&
        ((cfg.probe.client_chain = read_pem_certs("--client-cert", cert)) == NULL ||
         (cfg.probe.client_key = read_pem_key(key)) == NULL)) {
        rc = SCAN_EXIT_USAGE;
    }
    src.num_fixed = cfg.num_endpoints;
    char src_err[512];
    if (rc == EXIT_VALID && src.ca_socket != NULL &&
        ca_directory_fetch(&cfg, &src, src_err, sizeof(src_err)) != WEFT_OK) {
        fprintf(stderr, "weftctl scan: --from-ca: %s\n", src_err);
        rc = SCAN_EXIT_UNREACHABLE;
    }
    if (rc == EXIT_VALID && src.wlapi != NULL &&
        wlapi_fetch(&cfg, &src, src_err, sizeof(src_err)) != WEFT_OK) {
        fprintf(stderr, "weftctl scan: --workload-api: %s\n", src_err);
        rc = SCAN_EXIT_UNREACHABLE;
    }
    if (rc == EXIT_VALID && src.ca_socket != NULL && cfg.num_endpoints == 0) {
        fprintf(stderr, "weftctl scan: --from-ca: weft-ca's directory lists no address\n");
    }
    if (rc == EXIT_VALID) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN); /* a peer that closes mid-write is a probe result */
        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        rc = pass(&cfg);
        bool cut = rc < 0;
        int last = rc < 0 ? SCAN_EXIT_UNREACHABLE : rc; /* the last finished pass's */
        while (watch_s > 0 && atomic_load(&stop_signal) == 0) {
            /* the next pass in watch_s +-10 %, slept in steps so a signal ends it soon */
            int64_t wait_ms = watch_s * 1000 * (90 + rand() % 21) / 100;
            for (int64_t slept = 0; slept < wait_ms && atomic_load(&stop_signal) == 0;
                 slept += 200) {
                nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
            }
            if (atomic_load(&stop_signal) != 0) {
                break;
            }
            /* the directory and the SVID as they are now; on failure the last ones, and the
             * pass ends no better than 3 */
            bool stale = false;
            if (src.ca_socket != NULL &&
                ca_directory_fetch(&cfg, &src, src_err, sizeof(src_err)) != WEFT_OK) {
                fprintf(stderr, "weftctl scan: --from-ca: %s; scanning the last list\n", src_err);
                stale = true;
            }
            if (src.wlapi != NULL && wlapi_fetch(&cfg, &src, src_err, sizeof(src_err)) != WEFT_OK) {
                fprintf(stderr, "weftctl scan: --workload-api: %s; keeping the last SVID\n",
                        src_err);
                stale = true;
            }
            if ((rc = pass(&cfg)) >= 0) {
                last = stale && rc < SCAN_EXIT_UNREACHABLE ? SCAN_EXIT_UNREACHABLE : rc;
            }
            cut |= rc < 0;
        }
        if (cut) {
            /* workers of the pass cut short still read the flags' keys and certificates:
             * nothing is freed under them, the process ends here */
            fflush(NULL);
            _exit(last);
        }
        rc = last;
    }
    sk_X509_pop_free(cfg.probe.bundle_roots, X509_free);
    sk_X509_pop_free(cfg.probe.client_chain, X509_free);
    EVP_PKEY_free(cfg.probe.client_key);
    for (size_t i = 0; i < num_files; i++) {
        free(kept[i]);
    }
    sources_free_ca(&src);
    for (size_t i = 0; i < src.num_mem; i++) {
        free(src.mem[i].name);
        free(src.mem[i].id);
    }
    free(src.mem);
    return rc;
}
