/* ca/daemon.c: see daemon.h. Everything after start-up runs on the main thread: gRPC handlers
 * (lib/rpc), WatchNode pushes, the policy poll, directory expiry and the serving SVID's
 * renewal. The relay and the HTTP admin port run threads of their own and touch none of this
 * state. */
#include "ca/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "ca/core.h"
#include "ca/directory.h"
#include "ca/issuer.h"
#include "ca/jwt_keys.h"
#include "ca/material.h"
#include "ca/kube_client.h"
#include "ca/policy_source.h"
#include "ca/psat.h"
#include "ca/root_rotation.h"
#include "ca/rotation.h"
#include "ca/signer.h"
#include "ca/store.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/metrics.h"
#include "lib/base/netaddr.h"
#include "lib/base/timefmt.h"
#include "lib/httpadmin/httpadmin.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/bundle.h"
#include "lib/transport/grpcfd.h"
#include "lib/transport/tls_relay.h"
#include "proto/ca.pb-c.h"

#define NODE_PATH_PREFIX "/weft/node/"
#define CA_SERVING_PATH "/weft/ca"
#define SERVING_TTL_S (24 * 3600)
#define DEFAULT_DIRECTORY_TTL_S 120
#define DEFAULT_POLICY_POLL_MS 2000
#define DEFAULT_KUBE_POLL_MS 250 /* a look at what the watchers saw: cheap, so often */
#define DEFAULT_STREAMS_PER_NODE 4
#define MAX_DIRECTORY 100000
#define MAX_DIRECTORY_PER_NODE 4096
#define MAX_LIST_ROWS 10000
#define MAX_WATCHERS 20000
#define MAX_SNAPSHOT_ENTRIES 4096
#define TICK_MS 250

static atomic_int stop_signal;

static void on_signal(int sig) { atomic_store(&stop_signal, sig); }

struct watcher {
    struct watcher *next;
    struct rpc_stream *s;
    struct ca_caller caller;
    uint64_t sent_seq; /* the snapshot sequence last sent */
};

/* why a MintJWTSVID call failed, for weft_ca_jwt_svids_refused_total{reason} */
enum jwt_refusal {
    JWT_INVALID_ARGUMENT = 0,
    JWT_PERMISSION_DENIED,
    JWT_UNAVAILABLE,
    JWT_INTERNAL,
    JWT_NUM_REFUSALS,
};

struct metrics {
    struct weft_metrics *reg;
    struct weft_counter *issued_node, *issued_workload, *refused, *store_errors, *joins;
    struct weft_counter *jwt_minted, *jwt_refused[JWT_NUM_REFUSALS];
    struct weft_gauge *jwt_keys;
    struct weft_histogram *sign_seconds;
    struct weft_gauge *int_not_after, *root_not_after, *serving_not_after, *agents, *behind,
        *policy_version, *policy_refusals, *policy_api_failures, *dir_entries, *dir_conflicts,
        *snapshot_seq;
};

struct daemon {
    const struct ca_daemon_opts *o;
    struct spiffe_id td;
    char data_dir[200]; /* main.c refuses longer */

    struct ca_store *store;
    struct ca_signer *signer;
    struct ca_issuer issuer;
    struct ca_psat psat; /* node attestation by service account token, when psat_on */
    bool psat_on;
    struct timespec psat_mtime; /* of the JWKS file read last (or refused last) */
    off_t psat_size;
    X509 *intermediate;
    STACK_OF(X509) * roots;
    uint8_t *bundle_der;
    size_t bundle_der_len;
    struct spiffe_bundle_set bundles;
    int64_t int_not_after, root_not_after, int_lifetime;

    /* rotation (ca/rotation.h, ca/root_rotation.h; the keys are the signer's) */
    unsigned signing_slot; /* the signer's root slot that signs intermediates */
    bool root_online;      /* its key is there: the intermediate rotates */
    struct ca_int_schedule int_sched;
    struct ca_int_policy int_policy;
    int64_t int_lifetime_max;  /* the most an intermediate's notAfter was ever ahead of the
                                * time it began to sign: no SVID outlives it */
    int64_t rotation_retry_at; /* after a failed rotation step */
    char rotation_error[256];  /* the last failure, for status; "" when the last step worked */
    int bundle_fds[2];         /* bundle.pem and bundle.json, opened before the privileges go */
    bool state_unsaved;        /* the last root rotation step or JWT key change is not in the
                                * store yet (no JWT-SVID is signed until it is) */

    /* JWT-SVID keys (issue 11): the signer holds them, this is what is published; they rotate
     * on the intermediate's policy (lifetime, 40 % / 50 %) with a window of their own */
    struct ca_jwt_keys jwt;
    struct ca_int_policy jwt_policy;
    struct ca_int_schedule jwt_sched;
    int64_t jwt_retry_at;
    char jwt_error[256];
    bool fatal; /* stop now, exit non-zero (the signer died) */

    struct tls_relay *relay;
    struct grpcfd_server *fds;
    struct rpc_server *rpc;
    struct httpadmin *http;

    struct ca_directory *dir;
    struct ca_policy_source *policy;
    uint64_t policy_version;
    struct ca_root_rot *rot;

    struct watcher *watchers;
    size_t num_watchers;
    uint64_t snapshot_seq; /* goes up with every change a snapshot shows */

    EVP_PKEY *serving_key;
    STACK_OF(X509) * serving_chain;
    int64_t serving_not_after, serving_renew_at;

    struct metrics m;
    atomic_bool ready;
    char not_ready[256];
};

static int64_t now_s(void) { return (int64_t)time(NULL); }

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- start-up helpers ------------------------------------------------------------------------ */

/* listen_tcp binds "IPV4:PORT" or "[IPV6]:PORT" ("0.0.0.0:8443", "[::]:8443"). */
static int listen_tcp(const char *hostport, char *err, size_t err_len)
{
    union weft_sockaddr a;
    socklen_t len;
    char why[128];
    if (weft_sockaddr_parse(hostport, false, &a, &len, why, sizeof(why)) != WEFT_OK) {
        snprintf(err, err_len, "%.200s: %s", hostport, why);
        return -1;
    }
    int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, &a.sa, len) != 0 || listen(fd, 512) != 0) {
        snprintf(err, err_len, "cannot listen on %.200s: %s", hostport, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

static int read_certs(STACK_OF(X509) * *out, const char *dir, const char *name, char *err,
                      size_t err_len)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    uint8_t *data = NULL;
    size_t len = 0;
    if (weft_file_read(&data, &len, path, SPIFFE_MAX_PEM_INPUT) != WEFT_OK) {
        snprintf(err, err_len, "cannot read %.250s: %s", path, strerror(errno));
        return WEFT_EIO;
    }
    struct spiffe_why why;
    int rc = spiffe_certs_decode(out, data, len, SPIFFE_MAX_CHAIN, 0, &why);
    free(data);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.200s: %.300s", path, why.msg);
    }
    return rc;
}

/* roots_adopt makes |roots| (taken over) the trust bundle: what snapshots and AttestNode send,
 * what the relay verifies node SVIDs against, and the root gauges. */
static int roots_adopt(struct daemon *d, STACK_OF(X509) * roots, char *err, size_t err_len)
{
    struct spiffe_bundle *b = spiffe_bundle_new(&d->td);
    int64_t earliest = INT64_MAX;
    uint8_t *der = NULL;
    size_t der_len = 0;
    for (size_t i = 0; i < sk_X509_num(roots); i++) {
        X509 *root = sk_X509_value(roots, i);
        int64_t nb, na;
        struct spiffe_id id;
        struct spiffe_why why;
        if (spiffe_bundle_add_x509(b, root) != WEFT_OK ||
            spiffe_cert_validity(&nb, &na, root) != WEFT_OK ||
            spiffe_cert_uri_id(&id, root, &why) != WEFT_OK || !spiffe_id_equal(&id, &d->td)) {
            spiffe_bundle_free(b);
            sk_X509_pop_free(roots, X509_free);
            snprintf(err, err_len, "root %zu of the bundle is not a root of %.200s", i + 1,
                     d->td.str);
            return WEFT_EINVAL;
        }
        earliest = na < earliest ? na : earliest;
    }
    if (sk_X509_num(roots) == 0 || spiffe_certs_to_der(&der, &der_len, roots) != WEFT_OK) {
        spiffe_bundle_free(b);
        b = NULL;
    }
    if (b == NULL || spiffe_bundle_set_put(&d->bundles, b) != WEFT_OK) {
        free(der);
        sk_X509_pop_free(roots, X509_free);
        snprintf(err, err_len, "the bundle is empty or does not encode");
        return WEFT_EINVAL;
    }
    sk_X509_pop_free(d->roots, X509_free);
    free(d->bundle_der);
    d->roots = roots;
    d->bundle_der = der;
    d->bundle_der_len = der_len;
    d->root_not_after = earliest;
    weft_gauge_set(d->m.root_not_after, (double)earliest);
    if (d->relay != NULL && d->serving_chain != NULL) {
        /* the bundle is adopted either way; the relay takes it again with the next serving SVID */
        struct tls_relay_creds creds = {d->serving_chain, d->serving_key, &d->bundles};
        int rc = tls_relay_set_server_creds(d->relay, &creds);
        if (rc != WEFT_OK) {
            weft_log(WEFT_LOG_ERROR, "the relay refused the new bundle", 1, "error",
                     weft_strerror(rc));
            d->serving_renew_at = 0;
        }
    }
    return WEFT_OK;
}

/* load_roots reads the bundle: the one the root rotation last stored (|stored|, PEM), else
 * bundle.pem. The trust domain is --trust-domain, else the first root's. */
static int load_roots(struct daemon *d, const uint8_t *stored, size_t stored_len, char *err,
                      size_t err_len)
{
    STACK_OF(X509) *roots = NULL;
    struct spiffe_why why;
    if (stored != NULL) {
        if (spiffe_certs_decode(&roots, stored, stored_len, SPIFFE_MAX_CHAIN, 0, &why) != WEFT_OK) {
            snprintf(err, err_len, "the bundle in the store: %.300s", why.msg);
            return WEFT_EINVAL;
        }
    } else {
        TRY(read_certs(&roots, d->data_dir, CA_FILE_BUNDLE_PEM, err, err_len));
    }
    struct spiffe_id root_id;
    if (spiffe_cert_uri_id(&root_id, sk_X509_value(roots, 0), &why) != WEFT_OK) {
        sk_X509_pop_free(roots, X509_free);
        snprintf(err, err_len, "%.150s/%s: the root carries no SPIFFE ID: %.200s", d->data_dir,
                 CA_FILE_BUNDLE_PEM, why.msg);
        return WEFT_EINVAL;
    }
    if (d->o->trust_domain != NULL) {
        if (spiffe_td_parse(&d->td, d->o->trust_domain, strlen(d->o->trust_domain), &why) !=
            WEFT_OK) {
            sk_X509_pop_free(roots, X509_free);
            snprintf(err, err_len, "--trust-domain %s: %s", d->o->trust_domain, why.msg);
            return WEFT_EINVAL;
        }
        if (!spiffe_id_equal(&d->td, &root_id)) {
            snprintf(err, err_len, "--trust-domain %.100s, but %.150s/%s holds roots of %.100s",
                     d->td.str, d->data_dir, CA_FILE_BUNDLE_PEM, root_id.str);
            sk_X509_pop_free(roots, X509_free);
            return WEFT_EINVAL;
        }
    } else {
        d->td = root_id;
    }
    return roots_adopt(d, roots, err, err_len);
}

/* intermediate_adopt takes the signer's current intermediate: it must chain to the bundle now.
 * Leaves signed from here on carry it in their chains. */
static int intermediate_adopt(struct daemon *d, char *err, size_t err_len)
{
    struct ca_signer_info info;
    ca_signer_info(d->signer, &info);
    const uint8_t *p = info.intermediate;
    X509 *x = d2i_X509(NULL, &p, (long)info.intermediate_len);
    int64_t nb, na;
    if (x == NULL || spiffe_cert_validity(&nb, &na, x) != WEFT_OK) {
        X509_free(x);
        snprintf(err, err_len, "the signer's intermediate does not decode");
        return WEFT_ECRYPTO;
    }
    X509_STORE *xs = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    for (size_t i = 0; i < sk_X509_num(d->roots); i++) {
        X509_STORE_add_cert(xs, sk_X509_value(d->roots, i));
    }
    bool ok = X509_STORE_CTX_init(ctx, xs, x, NULL) && X509_verify_cert(ctx) == 1;
    int verr = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(xs);
    if (!ok) {
        X509_free(x);
        snprintf(err, err_len,
                 "the signing intermediate (%s) does not verify against the bundle: %s",
                 info.intermediate_slot < 0 ? CA_FILE_INT_CERT : "minted at start",
                 X509_verify_cert_error_string(verr));
        return WEFT_EINVAL;
    }
    X509_free(d->intermediate);
    d->intermediate = x;
    d->issuer.signing_cert = x;
    d->int_not_after = na;
    d->int_lifetime = na - nb;
    d->root_online = info.intermediate_slot >= 0;
    weft_gauge_set(d->m.int_not_after, (double)na);
    return WEFT_OK;
}

/* drop_privileges switches a root-started process to |user| for good. */
static int drop_privileges(const char *user, char *err, size_t err_len)
{
    if (geteuid() != 0) {
        return WEFT_OK;
    }
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, err_len, "--user %s: no such user", user);
        return WEFT_EINVAL;
    }
    if (setgroups(0, NULL) != 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0) {
        snprintf(err, err_len, "cannot become %s: %s", user, strerror(errno));
        return WEFT_EIO;
    }
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return WEFT_OK;
}

/* --- the serving SVID ---------------------------------------------------------------------- */

/* serving_renew has the signer sign a fresh spiffe://TD/weft/ca for a new key held only here,
 * and hands it to the relay. */
static int serving_renew(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    uint8_t *spki = NULL;
    size_t spki_len = 0;
    CBB cbb;
    if (key == NULL || !CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
        !CBB_finish(&cbb, &spki, &spki_len)) {
        EVP_PKEY_free(key);
        snprintf(err, err_len, "cannot make the serving key");
        return WEFT_ECRYPTO;
    }
    char id[SPIFFE_ID_MAX_LEN + 16];
    snprintf(id, sizeof(id), "%s%s", d->td.str, CA_SERVING_PATH);
    int64_t ttl = SERVING_TTL_S; /* the signer caps it at its intermediate's notAfter */
    struct ca_signer_request req = {
        .pubkey_der = spki,
        .pubkey_len = spki_len,
        .spiffe_id = id,
        .not_before = now - 60,
        .ttl_s = ttl,
    };
    uint8_t der[CA_SIGNER_MAX_CERT];
    size_t der_len = 0;
    int rc = ca_signer_sign_leaf(d->signer, &req, der, sizeof(der), &der_len, err, err_len);
    OPENSSL_free(spki);
    if (rc != WEFT_OK) {
        EVP_PKEY_free(key);
        return rc;
    }
    const uint8_t *p = der;
    X509 *leaf = d2i_X509(NULL, &p, (long)der_len);
    STACK_OF(X509) *chain = sk_X509_new_null();
    int64_t nb, na;
    if (leaf == NULL || chain == NULL || !sk_X509_push(chain, leaf) ||
        !sk_X509_push(chain, X509_up_ref(d->intermediate) ? d->intermediate : NULL) ||
        spiffe_cert_validity(&nb, &na, leaf) != WEFT_OK) {
        snprintf(err, err_len, "the signer's serving certificate does not decode");
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
        return WEFT_ECRYPTO;
    }
    struct tls_relay_creds creds = {.chain = chain, .key = key, .bundles = &d->bundles};
    if (d->serving_chain != NULL) {
        rc = tls_relay_set_server_creds(d->relay, &creds);
        if (rc != WEFT_OK) {
            snprintf(err, err_len, "the relay refused the renewed serving SVID: %s",
                     weft_strerror(rc));
            sk_X509_pop_free(chain, X509_free);
            EVP_PKEY_free(key);
            return rc;
        }
        sk_X509_pop_free(d->serving_chain, X509_free);
        EVP_PKEY_free(d->serving_key);
    }
    d->serving_chain = chain;
    d->serving_key = key;
    d->serving_not_after = na;
    d->serving_renew_at = now + (na - now) / 2;
    weft_gauge_set(d->m.serving_not_after, (double)na);
    char until[32];
    snprintf(until, sizeof(until), "%lld", (long long)na);
    weft_log(WEFT_LOG_INFO, "serving svid renewed", 2, "id", id, "not_after", until);
    return WEFT_OK;
}

static void changed(struct daemon *d) { d->snapshot_seq++; }

/* --- rotation ------------------------------------------------------------------------------ */

#define STATE_ROOT_ROT "root_rotation"
#define STATE_SIGNING_SLOT "signing_slot"
#define STATE_BUNDLE "bundle"
#define STATE_INT_LIFETIME_MAX "intermediate_lifetime_max"
#define STATE_JWT_KEYS "jwt_keys"
#define ROTATION_RETRY_S 10
#define JWT_PUBLISH_LEAD_S (2 * ROTATION_RETRY_S + 1)

/* rewrite_fd replaces a file's content through a descriptor opened before the privileges went
 * (the directory may no longer be writable). It is a copy for operators: the store holds the
 * bundle of record. */
static int rewrite_fd(int fd, const void *data, size_t len)
{
    if (fd < 0) {
        return WEFT_OK;
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, len, 0) != (ssize_t)len || fsync(fd) != 0) {
        return WEFT_EIO;
    }
    return WEFT_OK;
}

/* state_save stores the root rotation's state (with the bundle sequence) with the signing slot,
 * the published JWT keys and, once a root rotation has changed it, the bundle, in one
 * transaction, and refreshes bundle.pem and bundle.json (the roots and the jwt-svid keys). */
static void state_save(struct daemon *d, const struct ca_root_rot_state *st)
{
    char rot[256], slot[8], life[24];
    snprintf(rot, sizeof(rot), "%d %llu %llu %lld %lld %lld %lld", (int)st->phase,
             (unsigned long long)st->bundle_seq, (unsigned long long)st->rotations,
             (long long)st->rotation_started_at, (long long)st->phase_started_at,
             (long long)st->switched_at, (long long)st->old_svids_until);
    snprintf(slot, sizeof(slot), "%u", d->signing_slot);
    snprintf(life, sizeof(life), "%lld", (long long)d->int_lifetime_max);
    char *pem = NULL, *json = NULL, *jwt = NULL;
    size_t pem_len = 0, json_len = 0, jwt_len = 0;
    struct spiffe_bundle *b = spiffe_bundle_new(&d->td);
    b->has_sequence = true;
    b->sequence = st->bundle_seq;
    bool ok = true;
    for (size_t i = 0; i < sk_X509_num(d->roots); i++) {
        ok = ok && spiffe_bundle_add_x509(b, sk_X509_value(d->roots, i)) == WEFT_OK;
    }
    if (!ok || ca_jwt_keys_add_to_bundle(&d->jwt, b) != WEFT_OK ||
        spiffe_certs_to_pem(&pem, &pem_len, d->roots) != WEFT_OK ||
        spiffe_bundle_to_json(&json, &json_len, b) != WEFT_OK ||
        ca_jwt_keys_encode(&jwt, &jwt_len, &d->jwt, d->o->jwt_ttl_s) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "cannot encode the bundle", 0);
        d->state_unsaved = true;
        goto out;
    }
    /* Until a root rotation changes it, bundle.pem stays the bundle of record (an operator may
     * replace the CA material); from then on the store is. */
    struct ca_state_item items[] = {
        {STATE_ROOT_ROT, rot, strlen(rot)},
        {STATE_SIGNING_SLOT, slot, strlen(slot)},
        {STATE_INT_LIFETIME_MAX, life, strlen(life)},
        {STATE_JWT_KEYS, jwt, jwt_len},
        {STATE_BUNDLE, pem, pem_len},
    };
    size_t num_items = st->rotations > 0 ? nitems(items) : nitems(items) - 1;
    d->state_unsaved = ca_store_state_put(d->store, items, num_items) != WEFT_OK;
    if (d->state_unsaved) {
        weft_counter_add(d->m.store_errors, 1);
        weft_log(WEFT_LOG_ERROR, "cannot store the rotation state", 1, "error", d->store->err);
    }
    if (rewrite_fd(d->bundle_fds[0], pem, pem_len) != WEFT_OK ||
        rewrite_fd(d->bundle_fds[1], json, json_len) != WEFT_OK) {
        weft_log(WEFT_LOG_WARN, "cannot refresh bundle.pem and bundle.json", 1, "error",
                 strerror(errno));
    }
out:
    free(pem);
    free(json);
    free(jwt);
    spiffe_bundle_free(b);
}

static int64_t state_int(struct ca_store *s, const char *name, int64_t dflt)
{
    uint8_t *v = NULL;
    size_t len;
    long long n = dflt;
    if (ca_store_state_get(s, name, &v, &len) == WEFT_OK && sscanf((char *)v, "%lld", &n) != 1) {
        n = dflt;
    }
    free(v);
    return n;
}

/* state_load reads the root rotation's state (WEFT_ENOTFOUND before the first rotation). */
static int state_load(struct daemon *d, struct ca_root_rot_state *st, char *err, size_t err_len)
{
    uint8_t *v = NULL;
    size_t len;
    int rc = ca_store_state_get(d->store, STATE_ROOT_ROT, &v, &len);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%s", d->store->err);
        return rc;
    }
    int phase;
    unsigned long long seq, rotations;
    long long started, phase_started, switched, until;
    int n = sscanf((char *)v, "%d %llu %llu %lld %lld %lld %lld", &phase, &seq, &rotations,
                   &started, &phase_started, &switched, &until);
    free(v);
    if (n != 7) {
        snprintf(err, err_len, "the stored root rotation state does not parse");
        return WEFT_EINVAL;
    }
    *st = (struct ca_root_rot_state){
        (enum ca_root_rot_phase)phase, seq, rotations, started, phase_started, switched, until};
    return WEFT_OK;
}

/* on_phase: every root rotation step is stored, logged and pushed (the bundle may have
 * changed). */
static void on_phase(void *arg, enum ca_root_rot_phase from, const struct ca_root_rot_state *st)
{
    struct daemon *d = arg;
    state_save(d, st);
    char seq[24], n[24];
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)st->bundle_seq);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)st->rotations);
    weft_log(WEFT_LOG_INFO, "root rotation step", 4, "rotation", n, "from",
             ca_root_rot_phase_name(from), "to", ca_root_rot_phase_name(st->phase),
             "bundle_sequence", seq);
    changed(d);
}

static X509 *cert_of(const uint8_t *der, size_t len)
{
    const uint8_t *p = der;
    return d2i_X509(NULL, &p, (long)len);
}

/* add_new_root: the signer makes a root, its key in the other slot; the bundle gets it. */
static int add_new_root(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    uint8_t der[CA_SIGNER_MAX_CERT];
    size_t len = 0;
    unsigned slot = 1 - d->signing_slot;
    TRY(ca_signer_new_root(d->signer, slot, d->o->key_type, now - 60, d->o->root_ttl_s, der,
                           sizeof(der), &len, err, err_len));
    X509 *root = cert_of(der, len);
    STACK_OF(X509) *roots = X509_chain_up_ref(d->roots);
    if (root == NULL || roots == NULL || !sk_X509_push(roots, root)) {
        X509_free(root);
        sk_X509_pop_free(roots, X509_free);
        snprintf(err, err_len, "the new root does not decode");
        return WEFT_ECRYPTO;
    }
    TRY(roots_adopt(d, roots, err, err_len));
    return ca_root_rot_done(d->rot, CA_ROOT_ROT_ADD_NEW_ROOT, now, err, err_len);
}

/* mint_window: from a little before |now| (a tenth of the lifetime, at most a minute, for
 * verifiers whose clocks lag) to the policy's lifetime after |now|. */
static void mint_window(const struct daemon *d, int64_t now, int64_t *not_before, int64_t *ttl_s)
{
    struct ca_int_window w;
    ca_int_next_window(&w, &d->int_policy, now);
    int64_t back = (w.not_after - w.not_before) / 10;
    back = back < 60 ? back : 60;
    *not_before = w.not_before - back;
    *ttl_s = w.not_after - w.not_before + back;
}

/* signer_ahead: the signer signs with an intermediate the daemon has not adopted yet (a step
 * that failed after the signer's part). */
static bool signer_ahead(const struct daemon *d)
{
    struct ca_signer_info info;
    ca_signer_info(d->signer, &info);
    uint8_t *der = NULL;
    int len = i2d_X509(d->intermediate, &der);
    bool ahead = len <= 0 || (size_t)len != info.intermediate_len ||
                 memcmp(der, info.intermediate, info.intermediate_len) != 0;
    OPENSSL_free(der);
    return ahead;
}

/* switch_signing: an intermediate under the new root, at once; a fresh schedule for it. Safe
 * to try again after a failure part way: the signing slot changes last. */
static int switch_signing(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    unsigned slot = 1 - d->signing_slot;
    struct ca_signer_info info;
    ca_signer_info(d->signer, &info);
    if (info.intermediate_slot != (int)slot) {
        uint8_t der[CA_SIGNER_MAX_CERT];
        size_t len = 0;
        int64_t nb, ttl;
        mint_window(d, now, &nb, &ttl);
        TRY(ca_signer_mint_intermediate(d->signer, slot, nb, ttl, der, sizeof(der), &len, err,
                                        err_len));
        TRY(ca_signer_activate(d->signer, err, err_len));
    }
    TRY(intermediate_adopt(d, err, err_len));
    struct ca_int_window w = {d->int_not_after - d->int_lifetime, d->int_not_after};
    TRY(ca_int_schedule_init(&d->int_sched, &w, err, err_len));
    d->serving_renew_at = now; /* the next tick: its chain names the new intermediate */
    d->signing_slot = slot;    /* stored by on_phase, with the phase */
    int rc = ca_root_rot_done(d->rot, CA_ROOT_ROT_SWITCH_SIGNING, now, err, err_len);
    if (rc != WEFT_OK) {
        d->signing_slot = 1 - slot;
    }
    return rc;
}

/* drop_old_root: the old root's key goes, and the bundle keeps only the root signing now. */
static int drop_old_root(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    TRY(ca_signer_drop_root(d->signer, 1 - d->signing_slot, err, err_len));
    STACK_OF(X509) *roots = sk_X509_new_null();
    for (size_t i = 0; i < sk_X509_num(d->roots); i++) {
        X509 *root = sk_X509_value(d->roots, i);
        EVP_PKEY *pub = X509_get_pubkey(root);
        if (pub != NULL && X509_verify(d->intermediate, pub) == 1 && X509_up_ref(root)) {
            sk_X509_push(roots, root);
        }
        EVP_PKEY_free(pub);
    }
    if (sk_X509_num(roots) == 0) { /* cannot be: the intermediate came from a bundle root */
        sk_X509_free(roots);
        snprintf(err, err_len, "no root of the bundle issued the signing intermediate");
        return WEFT_EINTERNAL;
    }
    TRY(roots_adopt(d, roots, err, err_len));
    return ca_root_rot_done(d->rot, CA_ROOT_ROT_DROP_OLD_ROOT, now, err, err_len);
}

/* intermediate_step prepares and activates intermediates on ca/rotation.h's schedule. */
static int intermediate_step(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    if (signer_ahead(d)) {
        TRY(intermediate_adopt(d, err, err_len)); /* left over from a failed activation */
        d->serving_renew_at = now;
    }
    if (!d->root_online) {
        return WEFT_OK; /* nothing to sign one with: status and the notAfter gauge say so */
    }
    struct ca_int_step step;
    TRY(ca_int_schedule_step(&d->int_sched, &d->int_policy, now, &step));
    if (step.action == CA_INT_PREPARE_NEXT) {
        struct ca_int_window w;
        int64_t nb, ttl;
        mint_window(d, now, &nb, &ttl);
        uint8_t der[CA_SIGNER_MAX_CERT];
        size_t len = 0;
        TRY(ca_signer_mint_intermediate(d->signer, d->signing_slot, nb, ttl, der, sizeof(der), &len,
                                        err, err_len));
        X509 *x = cert_of(der, len);
        int rc = x != NULL ? spiffe_cert_validity(&w.not_before, &w.not_after, x) : WEFT_ECRYPTO;
        X509_free(x);
        TRY(rc);
        TRY(ca_int_schedule_set_next(&d->int_sched, &w, now, err, err_len));
        char until[WEFT_RFC3339_LEN];
        weft_time_format_rfc3339(until, w.not_after);
        weft_log(WEFT_LOG_INFO, "intermediate prepared", 1, "not_after", until);
    } else if (step.action == CA_INT_ACTIVATE_NEXT) {
        /* the signer first, then the schedule: a failure in between is caught above */
        TRY(ca_signer_activate(d->signer, err, err_len));
        TRY(ca_int_schedule_activate(&d->int_sched, &d->int_policy, now, err, err_len));
        TRY(intermediate_adopt(d, err, err_len));
        char until[WEFT_RFC3339_LEN];
        weft_time_format_rfc3339(until, d->int_not_after);
        weft_log(WEFT_LOG_INFO, "intermediate activated", 1, "not_after", until);
        d->serving_renew_at = now; /* the next tick: its chain names the new intermediate */
    }
    return WEFT_OK;
}

/* rotation_tick does the rotation work that is due: the root rotation's action phases (only
 * once the last step is stored: the signer's part cannot be undone), then, whatever became of
 * that, the intermediate's schedule. A failed step is logged, shown in status and tried again
 * later. */
static void rotation_tick(struct daemon *d, int64_t now)
{
    if (now < d->rotation_retry_at) {
        return;
    }
    char err[256] = "", err2[256] = "";
    int rc = WEFT_OK;
    if (d->state_unsaved) {
        struct ca_root_rot_state st;
        ca_root_rot_save(d->rot, &st);
        state_save(d, &st);
        if (d->state_unsaved) {
            rc = WEFT_EIO;
            snprintf(err, sizeof(err), "the last step is not stored: %.200s", d->store->err);
        }
    }
    switch (rc == WEFT_OK ? ca_root_rot_phase(d->rot) : CA_ROOT_ROT_IDLE) {
    case CA_ROOT_ROT_ADD_NEW_ROOT:
        rc = add_new_root(d, now, err, sizeof(err));
        break;
    case CA_ROOT_ROT_SWITCH_SIGNING:
        rc = switch_signing(d, now, err, sizeof(err));
        break;
    case CA_ROOT_ROT_DROP_OLD_ROOT:
        rc = drop_old_root(d, now, err, sizeof(err));
        break;
    default:
        break;
    }
    int rc2 = intermediate_step(d, now, err2, sizeof(err2));
    if (rc != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "rotation step failed", 2, "step", "root rotation", "error", err);
    }
    if (rc2 != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "rotation step failed", 2, "step", "intermediate rotation",
                 "error", err2);
    }
    if (rc != WEFT_OK || rc2 != WEFT_OK) {
        snprintf(d->rotation_error, sizeof(d->rotation_error), "%s%.100s%s%s%.100s",
                 rc != WEFT_OK ? "root rotation: " : "", rc != WEFT_OK ? err : "",
                 rc != WEFT_OK && rc2 != WEFT_OK ? "; " : "",
                 rc2 != WEFT_OK ? "intermediate rotation: " : "", rc2 != WEFT_OK ? err2 : "");
        d->rotation_retry_at = now + ROTATION_RETRY_S;
    } else {
        d->rotation_error[0] = '\0';
    }
}

/* --- JWT-SVID keys --------------------------------------------------------------------------- *
 * The signer holds the keys; d->jwt is what is published (ca/jwt_keys.h). Every change of it
 * bumps the bundle sequence, is stored with it and pushed to every agent at once.
 *
 * Keys rotate on the intermediate's policy (ca/rotation.h: the next key is made, and published,
 * at 40 % of the current key's window and signs from 50 %), with a window of their own: the
 * intermediate's lifetime, but at least two JWT-SVID lifetimes, so that each key signs for at
 * least one token lifetime and about one retired key is published at a time. A window of its
 * own because the intermediate does not always rotate (its root's key offline) and a root
 * rotation restarts its schedule, while a JWT key, signed by no root, has no reason to follow.
 * Only the key made at start signs at once. */

static void jwt_log_keys(const struct daemon *d, const char *why)
{
    char keys[CA_JWT_MAX_KEYS * (SPIFFE_JWT_KID_LEN + 12) + 1] = "";
    size_t pos = 0;
    for (size_t i = 0; i < d->jwt.num && pos < sizeof(keys) - 1; i++) {
        int n = snprintf(keys + pos, sizeof(keys) - pos, "%s%s:%s", i ? "," : "",
                         d->jwt.keys[i].kid, ca_jwt_keys_role_name(d->jwt.keys[i].role));
        pos = n < 0 ? sizeof(keys) - 1 : pos + (size_t)n;
    }
    char seq[24];
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)ca_root_rot_bundle_seq(d->rot));
    weft_log(WEFT_LOG_INFO, "jwt-svid keys published", 3, "why", why, "keys", keys,
             "bundle_sequence", seq);
}

/* jwt_published: the published keys changed; a new bundle sequence, stored with them, pushed. */
static void jwt_published(struct daemon *d, int64_t now, const char *why)
{
    if (ca_root_rot_bundle_changed(d->rot, now) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "the bundle sequence is exhausted; publishing anyway", 0);
    }
    struct ca_root_rot_state st;
    ca_root_rot_save(d->rot, &st);
    state_save(d, &st);
    changed(d);
    weft_gauge_set(d->m.jwt_keys, (double)d->jwt.num);
    jwt_log_keys(d, why);
}

/* jwt_sync publishes what the signer holds now (its last answer): see ca_jwt_keys_sync. */
static int jwt_sync(struct daemon *d, int64_t now, const char *why, char *err, size_t err_len)
{
    struct ca_signer_info *info = weft_xmalloc(sizeof(*info));
    ca_signer_info(d->signer, info);
    struct ca_jwt_held cur = {info->jwt_key, info->jwt_key_len, info->jwt_key_not_after};
    struct ca_jwt_held next = {info->jwt_next, info->jwt_next_len, info->jwt_next_not_after};
    bool changed_keys = false;
    size_t evicted = 0;
    int rc = ca_jwt_keys_sync(&d->jwt, &cur, &next, now, d->o->jwt_ttl_s, &changed_keys, &evicted);
    free(info);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "the signer's JWT key is not an EC P-256 public key");
        return rc;
    }
    if (evicted > 0) {
        weft_log(WEFT_LOG_WARN,
                 "too many JWT keys published: the oldest retired one went before its tokens "
                 "expired (is the intermediate lifetime short beside --jwt-ttl?)",
                 0);
    }
    if (changed_keys) {
        jwt_published(d, now, why);
    }
    return WEFT_OK;
}

/* jwt_new_key has the signer prepare a key for the window |w|: it signs nothing that expires
 * after the window's end plus a token lifetime. */
static int jwt_new_key(struct daemon *d, const struct ca_int_window *w, char *err, size_t err_len)
{
    uint8_t spki[CA_JWT_MAX_SPKI];
    size_t len = 0;
    return ca_signer_jwt_new_key(d->signer, w->not_after + d->o->jwt_ttl_s, spki, sizeof(spki),
                                 &len, err, err_len);
}

/* jwt_start: the stored keys of the previous process (its tokens may still be valid), and a
 * fresh key that signs at once. This is the one time a key signs before agents could have
 * seen it: those connected to the previous process get it when they reconnect. */
static int jwt_start(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    uint8_t *v = NULL;
    size_t len = 0;
    int rc = ca_store_state_get(d->store, STATE_JWT_KEYS, &v, &len);
    if (rc == WEFT_OK && ca_jwt_keys_restore(&d->jwt, v, len, now, err, err_len) != WEFT_OK) {
        /* the keys are lost: tokens of the previous process fail to validate (fail closed) */
        weft_log(WEFT_LOG_ERROR, "dropping the stored JWT keys", 1, "error", err);
    } else if (rc != WEFT_OK && rc != WEFT_ENOTFOUND) {
        free(v);
        snprintf(err, err_len, "%s", d->store->err);
        return rc;
    }
    free(v);
    int64_t life =
        d->int_policy.lifetime_s > 0 ? d->int_policy.lifetime_s : CA_INT_DEFAULT_LIFETIME_S;
    d->jwt_policy = (struct ca_int_policy){
        .lifetime_s = life > 2 * d->o->jwt_ttl_s ? life : 2 * d->o->jwt_ttl_s};
    struct ca_int_window w;
    ca_int_next_window(&w, &d->jwt_policy, now);
    TRY(ca_int_schedule_init(&d->jwt_sched, &w, err, err_len));
    TRY(jwt_new_key(d, &w, err, err_len));
    TRY(ca_signer_jwt_activate(d->signer, err, err_len));
    TRY(jwt_sync(d, now, "start: a fresh key signs at once", err, err_len));
    return WEFT_OK;
}

/* jwt_step prepares and activates keys on the schedule and prunes the expired ones. */
static int jwt_step(struct daemon *d, int64_t now, char *err, size_t err_len)
{
    struct ca_int_step step;
    TRY(ca_int_schedule_step(&d->jwt_sched, &d->jwt_policy, now, &step));
    if (step.action == CA_INT_PREPARE_NEXT) {
        /* published now, signing no sooner than JWT_PUBLISH_LEAD_S from now (nor after the
         * current key's window ends): every connected agent holds it before its first token,
         * even when this step was late and activation is due at once */
        int64_t start = now + JWT_PUBLISH_LEAD_S, end = d->jwt_sched.current.not_after;
        if (start > end) {
            start = now > end ? now : end;
        }
        struct ca_int_window w;
        ca_int_next_window(&w, &d->jwt_policy, start);
        TRY(jwt_new_key(d, &w, err, err_len));
        TRY(jwt_sync(d, now, "next key prepared", err, err_len));
        TRY(ca_int_schedule_set_next(&d->jwt_sched, &w, now, err, err_len));
    } else if (step.action == CA_INT_ACTIVATE_NEXT) {
        /* the schedule's checks first, on a copy: once the signer has switched, it must follow */
        struct ca_int_schedule after = d->jwt_sched;
        TRY(ca_int_schedule_activate(&after, &d->jwt_policy, now, err, err_len));
        TRY(ca_signer_jwt_activate(d->signer, err, err_len));
        d->jwt_sched = after;
        TRY(jwt_sync(d, now, "next key signs now", err, err_len));
    }
    if (ca_jwt_keys_prune(&d->jwt, now) > 0) {
        jwt_published(d, now, "expired keys pruned");
    }
    return WEFT_OK;
}

static void jwt_tick(struct daemon *d, int64_t now)
{
    if (now < d->jwt_retry_at) {
        return;
    }
    char err[256] = "";
    if (jwt_step(d, now, err, sizeof(err)) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "rotation step failed", 2, "step", "jwt-svid key", "error", err);
        snprintf(d->jwt_error, sizeof(d->jwt_error), "%s", err);
        d->jwt_retry_at = now + ROTATION_RETRY_S;
    } else {
        d->jwt_error[0] = '\0';
    }
}

/* --- callers ----------------------------------------------------------------------------- */

/* node_of fills |c| from a verified peer when it is a node of our trust domain. */
static bool node_of(const struct daemon *d, const struct weft_peer *peer, struct ca_caller *c)
{
    memset(c, 0, sizeof(*c));
    if (peer->id.len == 0 || !spiffe_id_same_td(&peer->id, &d->td)) {
        return false;
    }
    const char *path = spiffe_id_path(&peer->id);
    size_t plen = strlen(NODE_PATH_PREFIX);
    if (strncmp(path, NODE_PATH_PREFIX, plen) != 0 || path[plen] == '\0' ||
        strchr(path + plen, '/') != NULL || strlen(path + plen) > CA_NODE_NAME_MAX) {
        return false;
    }
    snprintf(c->node, sizeof(c->node), "%s", path + plen);
    snprintf(c->serial_hex, sizeof(c->serial_hex), "%s", peer->serial_hex);
    c->not_after = peer->not_after;
    return true;
}

/* relay_authorize lets a handshake through for a client with no certificate (it may only
 * call AttestNode) or with a node SVID of this trust domain; a workload has no business here. */
static bool relay_authorize(void *arg, const struct weft_peer *peer)
{
    const struct daemon *d = arg;
    struct ca_caller c;
    return peer->id.len == 0 || node_of(d, peer, &c);
}

static void relay_on_peer(void *arg, int fd, const struct weft_peer *peer)
{
    struct daemon *d = arg;
    grpcfd_on_peer(d->fds, fd, peer); /* set before the relay listens, freed after it stops */
}

static void relay_refused(void *arg, const char *reason)
{
    (void)arg;
    weft_log(WEFT_LOG_INFO, "connection refused", 1, "reason", reason);
}

/* check_node is the first thing every node call does. */
static bool check_node(struct daemon *d, const struct rpc_ctx *ctx, struct ca_caller *c,
                       struct rpc_reply *reply)
{
    char err[256];
    if (!node_of(d, &ctx->peer, c)) {
        rpc_fail(reply, GRPC_STATUS_UNAUTHENTICATED, "present a node SVID of %s", d->td.str);
        weft_counter_add(d->m.refused, 1);
        return false;
    }
    int rc = ca_check_caller(&d->issuer, c, now_s(), err, sizeof(err));
    if (rc != WEFT_OK) {
        rpc_fail(reply, rc == WEFT_EIO ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_PERMISSION_DENIED,
                 "%s", err);
        weft_counter_add(rc == WEFT_EIO ? d->m.store_errors : d->m.refused, 1);
        weft_log(WEFT_LOG_WARN, "node call refused", 3, "node", c->node, "method", ctx->method,
                 "reason", err);
        return false;
    }
    return true;
}

/* --- snapshots --------------------------------------------------------------------------- */

struct snap_build {
    Weft__Ca__V1__NodeSnapshot snap;
    Weft__Ca__V1__Entry *entries;
    Weft__Ca__V1__Entry **entry_ptrs;
    char **selector_ptrs; /* CA_MAX_SELECTORS per entry */
    struct ca_entry *rows;
    size_t num_entries;
    Weft__Ca__V1__DenyItem *deny;
    Weft__Ca__V1__DenyItem **deny_ptrs;
    struct ca_revocation *revs;
    size_t num_deny, cap_deny;
    Weft__Ca__V1__PolicyFile *files;
    Weft__Ca__V1__PolicyFile **file_ptrs;
    Weft__Ca__V1__DirectoryEntry *dir;
    Weft__Ca__V1__DirectoryEntry **dir_ptrs;
    char (*dir_addrs)[CA_DIR_ADDR_MAX];
    size_t num_dir;
    Weft__Ca__V1__JwtKey jwt[CA_JWT_MAX_KEYS];
    Weft__Ca__V1__JwtKey *jwt_ptrs[CA_JWT_MAX_KEYS];
};

static void entry_to_pb(Weft__Ca__V1__Entry *pb, char **sel_ptrs, struct ca_entry *e)
{
    weft__ca__v1__entry__init(pb);
    pb->id = e->id;
    pb->spiffe_id = e->spiffe_id;
    pb->node = e->node;
    pb->node_selector = e->node_selector;
    for (size_t i = 0; i < e->num_selectors; i++) {
        sel_ptrs[i] = e->selectors[i];
    }
    pb->selectors = sel_ptrs;
    pb->n_selectors = e->num_selectors;
    pb->ttl_seconds = e->ttl_s;
}

static int collect_entry(void *arg, const struct ca_entry *e)
{
    struct snap_build *b = arg;
    ENSURE(b->num_entries < MAX_SNAPSHOT_ENTRIES, WEFT_ELIMIT);
    b->rows[b->num_entries++] = *e;
    return WEFT_OK;
}

static int collect_revocation(void *arg, const struct ca_revocation *r)
{
    struct snap_build *b = arg;
    if (b->num_deny == b->cap_deny) {
        b->cap_deny = b->cap_deny ? 2 * b->cap_deny : 16;
        b->revs = weft_xrealloc(b->revs, b->cap_deny * sizeof(*b->revs));
    }
    b->revs[b->num_deny++] = *r;
    return WEFT_OK;
}

static void count_dir(void *arg, const struct ca_dir_entry *e)
{
    (void)e;
    (*(size_t *)arg)++;
}

static void collect_dir(void *arg, const struct ca_dir_entry *e)
{
    struct snap_build *b = arg;
    Weft__Ca__V1__DirectoryEntry *pb = &b->dir[b->num_dir];
    weft__ca__v1__directory_entry__init(pb);
    memcpy(b->dir_addrs[b->num_dir], e->address, CA_DIR_ADDR_MAX);
    pb->address = b->dir_addrs[b->num_dir];
    pb->spiffe_id = (char *)e->spiffe_id;
    b->dir_ptrs[b->num_dir] = pb;
    b->num_dir++;
}

static const Weft__Ca__V1__DenyItem__Kind kind_to_pb[] = {
    [CA_REVOKE_ID] = WEFT__CA__V1__DENY_ITEM__KIND__SPIFFE_ID,
    [CA_REVOKE_SERIAL] = WEFT__CA__V1__DENY_ITEM__KIND__SERIAL,
    [CA_REVOKE_NODE] = WEFT__CA__V1__DENY_ITEM__KIND__NODE,
};

static void snap_free(struct snap_build *b)
{
    free(b->entries);
    free(b->entry_ptrs);
    free(b->selector_ptrs);
    free(b->rows);
    free(b->deny);
    free(b->deny_ptrs);
    free(b->revs);
    free(b->files);
    free(b->file_ptrs);
    free(b->dir);
    free(b->dir_ptrs);
    free(b->dir_addrs);
}

/* snap_build fills |b| with |node|'s complete snapshot: the bundle, its entries, the deny list,
 * the policy in force and the directory. */
static int snap_build(struct daemon *d, const char *node, struct snap_build *b)
{
    memset(b, 0, sizeof(*b));
    weft__ca__v1__node_snapshot__init(&b->snap);
    b->snap.sequence = d->snapshot_seq;
    b->snap.bundle.data = d->bundle_der;
    b->snap.bundle.len = d->bundle_der_len;
    b->snap.bundle_sequence = ca_root_rot_bundle_seq(d->rot);

    b->rows = weft_xcalloc(MAX_SNAPSHOT_ENTRIES, sizeof(*b->rows));
    int rc = ca_store_entry_list(d->store, node, collect_entry, b);
    if (rc != WEFT_OK) {
        return rc;
    }
    b->entries = weft_xcalloc(b->num_entries + 1, sizeof(*b->entries));
    b->entry_ptrs = weft_xcalloc(b->num_entries + 1, sizeof(*b->entry_ptrs));
    b->selector_ptrs = weft_xcalloc((b->num_entries + 1) * CA_MAX_SELECTORS, sizeof(char *));
    for (size_t i = 0; i < b->num_entries; i++) {
        entry_to_pb(&b->entries[i], &b->selector_ptrs[i * CA_MAX_SELECTORS], &b->rows[i]);
        b->entry_ptrs[i] = &b->entries[i];
    }
    b->snap.entries = b->entry_ptrs;
    b->snap.n_entries = b->num_entries;

    TRY(ca_store_revocation_list(d->store, now_s(), collect_revocation, b));
    b->deny = weft_xcalloc(b->num_deny + 1, sizeof(*b->deny));
    b->deny_ptrs = weft_xcalloc(b->num_deny + 1, sizeof(*b->deny_ptrs));
    for (size_t i = 0; i < b->num_deny; i++) {
        weft__ca__v1__deny_item__init(&b->deny[i]);
        b->deny[i].kind = kind_to_pb[b->revs[i].kind];
        b->deny[i].value = b->revs[i].value;
        b->deny[i].drop_after = b->revs[i].drop_after;
        b->deny_ptrs[i] = &b->deny[i];
    }
    b->snap.deny_list = b->deny_ptrs;
    b->snap.n_deny_list = b->num_deny;

    size_t nf = d->policy != NULL ? ca_policy_source_num_files(d->policy) : 0;
    b->files = weft_xcalloc(nf + 1, sizeof(*b->files));
    b->file_ptrs = weft_xcalloc(nf + 1, sizeof(*b->file_ptrs));
    for (size_t i = 0; i < nf; i++) {
        const char *name;
        const uint8_t *data;
        size_t len;
        ca_policy_source_file(d->policy, i, &name, &data, &len);
        weft__ca__v1__policy_file__init(&b->files[i]);
        b->files[i].name = (char *)name;
        b->files[i].content.data = (uint8_t *)data;
        b->files[i].content.len = len;
        b->file_ptrs[i] = &b->files[i];
    }
    b->snap.policy = b->file_ptrs;
    b->snap.n_policy = nf;
    b->snap.policy_version = d->policy_version;

    size_t nd = 0;
    ca_directory_each(d->dir, count_dir, &nd);
    b->dir = weft_xcalloc(nd + 1, sizeof(*b->dir));
    b->dir_ptrs = weft_xcalloc(nd + 1, sizeof(*b->dir_ptrs));
    b->dir_addrs = weft_xcalloc(nd + 1, sizeof(*b->dir_addrs));
    ca_directory_each(d->dir, collect_dir, b);
    b->snap.directory = b->dir_ptrs;
    b->snap.n_directory = b->num_dir;
    b->snap.directory_version = ca_directory_version(d->dir);

    for (size_t i = 0; i < d->jwt.num; i++) {
        struct ca_jwt_key *k = &d->jwt.keys[i];
        weft__ca__v1__jwt_key__init(&b->jwt[i]);
        b->jwt[i].kid = k->kid;
        b->jwt[i].public_key.data = k->spki;
        b->jwt[i].public_key.len = k->spki_len;
        b->jwt[i].not_after = k->not_after;
        b->jwt_ptrs[i] = &b->jwt[i];
    }
    b->snap.jwt_keys = b->jwt_ptrs;
    b->snap.n_jwt_keys = d->jwt.num;
    return WEFT_OK;
}

static void watcher_push(struct daemon *d, struct watcher *w)
{
    struct snap_build b;
    int rc = snap_build(d, w->caller.node, &b);
    if (rc == WEFT_OK && rpc_stream_send(w->s, &b.snap.base) == WEFT_OK) {
        w->sent_seq = d->snapshot_seq;
    } else if (rc != WEFT_OK) {
        weft_counter_add(d->m.store_errors, rc == WEFT_EIO);
        weft_log(WEFT_LOG_ERROR, "cannot build a node snapshot", 2, "node", w->caller.node, "error",
                 rc == WEFT_ELIMIT ? "too many entries for one node" : d->store->err);
        rpc_stream_finish(w->s, GRPC_STATUS_UNAVAILABLE, "the CA cannot build your snapshot");
    }
    snap_free(&b);
}

/* push_all sends the current snapshot to every watcher that has not seen it, and ends the
 * streams of nodes that may no longer call (expired or revoked since they connected). */
static void push_all(struct daemon *d, bool recheck)
{
    int64_t now = now_s();
    for (struct watcher *w = d->watchers; w != NULL; w = w->next) {
        char err[256];
        if (w->caller.not_after < now ||
            (recheck &&
             ca_check_caller(&d->issuer, &w->caller, now, err, sizeof(err)) == WEFT_EPOLICY)) {
            weft_log(WEFT_LOG_WARN, "watch ended: node may no longer call", 1, "node",
                     w->caller.node);
            rpc_stream_finish(w->s, GRPC_STATUS_PERMISSION_DENIED,
                              "your node SVID expired or was revoked");
            continue;
        }
        if (w->sent_seq != d->snapshot_seq) {
            watcher_push(d, w);
        }
    }
}

/* --- the CA service ------------------------------------------------------------------------ *
 * Replies point into static storage: lib/rpc packs a reply as soon as its handler returns, on
 * this one thread, before any other handler runs. */

static void svid_to_pb(Weft__Ca__V1__Svid *pb, struct ca_svid *s)
{
    weft__ca__v1__svid__init(pb);
    pb->spiffe_id = s->spiffe_id;
    pb->chain.data = s->chain;
    pb->chain.len = s->chain_len;
    pb->not_after = s->not_after;
    pb->entry_id = s->entry_id;
}

static void observe_sign(struct daemon *d, double started, size_t n)
{
    if (n > 0) {
        double each = (mono_s() - started) / (double)n;
        for (size_t i = 0; i < n; i++) {
            weft_histogram_observe(d->m.sign_seconds, each);
        }
    }
}

static void psat_refresh(struct daemon *d); /* the JWKS file, when it changed */

static void attest_node(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                        struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__AttestNodeRequest *r = weft__ca__v1__attest_node_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "AttestNodeRequest does not decode");
        return;
    }
    static struct ca_svid svid;
    char node[CA_NODE_NAME_MAX + 1], err[256];
    double t0 = mono_s();
    bool by_psat = r->psat != NULL && r->psat[0] != '\0';
    int rc;
    if (by_psat && r->join_token != NULL && r->join_token[0] != '\0') {
        weft__ca__v1__attest_node_request__free_unpacked(r, NULL);
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "give join_token or psat, not both");
        return;
    }
    if (by_psat && !d->psat_on) {
        weft__ca__v1__attest_node_request__free_unpacked(r, NULL);
        weft_counter_add(d->m.refused, 1);
        rpc_fail(reply, GRPC_STATUS_FAILED_PRECONDITION,
                 "this CA does not attest nodes by service account token (no --psat-issuer)");
        return;
    }
    if (by_psat) {
        psat_refresh(d);
        rc = ca_attest_node_psat(&d->issuer, &d->psat, r->psat, strlen(r->psat), r->csr.data,
                                 r->csr.len, now_s(), node, &svid, err, sizeof(err));
    } else {
        rc = ca_attest_node(&d->issuer, r->join_token, r->csr.data, r->csr.len, now_s(), node,
                            &svid, err, sizeof(err));
    }
    weft__ca__v1__attest_node_request__free_unpacked(r, NULL);
    if (rc != WEFT_OK) {
        /* a peer learns nothing about which tokens exist; the log has the reason */
        weft_counter_add(rc == WEFT_EIO ? d->m.store_errors : d->m.refused, 1);
        if (rc == WEFT_EPOLICY) {
            rpc_fail(reply, GRPC_STATUS_PERMISSION_DENIED,
                     by_psat ? "service account token refused" : "join token refused");
        } else {
            rpc_fail(reply, rc == WEFT_EIO ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_INVALID_ARGUMENT,
                     "%s", err);
        }
        return;
    }
    observe_sign(d, t0, 1);
    weft_counter_add(d->m.issued_node, 1);
    weft_counter_add(d->m.joins, 1);
    if (by_psat && d->issuer.revoked_by_last_attest > 0) {
        /* the deny list grew: every node hears of it, and the streams of the revoked SVIDs'
         * holder end (it would otherwise get the snapshots of the node's new selectors) */
        changed(d);
        push_all(d, true);
    } else if (by_psat) {
        /* its node selectors were taken afresh and may have changed what it gets: its open
         * watches see the next push */
        for (struct watcher *w = d->watchers; w != NULL; w = w->next) {
            if (strcmp(w->caller.node, node) == 0) {
                w->sent_seq = d->snapshot_seq - 1;
            }
        }
    }
    static Weft__Ca__V1__AttestNodeResponse resp;
    static Weft__Ca__V1__Svid pb;
    weft__ca__v1__attest_node_response__init(&resp);
    svid_to_pb(&pb, &svid);
    resp.node_svid = &pb;
    resp.bundle.data = d->bundle_der;
    resp.bundle.len = d->bundle_der_len;
    reply->msg = &resp.base;
}

/* renewal_refused says why |node| may not renew (a gRPC status, |why| set), or returns
 * GRPC_STATUS_OK: a node that joined by service
 * account token renews only while its account may still attest (removing --psat-issuer or the
 * account from --psat-allowed-sa takes effect at the next renewal, not never). */
static grpc_status_code renewal_refused(struct daemon *d, const char *node, char *why, size_t len)
{
    enum ca_attest_method method;
    char as[CA_PSAT_SA_MAX + 1];
    int rc = ca_store_node_get(d->store, node, &method, as, sizeof(as));
    if (rc == WEFT_ENOTFOUND || (rc == WEFT_OK && method != CA_ATTEST_PSAT)) {
        return GRPC_STATUS_OK;
    }
    if (rc != WEFT_OK) {
        snprintf(why, len, "the CA's store failed: retry later");
        return GRPC_STATUS_UNAVAILABLE;
    }
    if (!d->psat_on) {
        snprintf(why, len,
                 "node %.64s joined by service account token, which this CA no longer accepts "
                 "(no --psat-issuer)",
                 node);
    } else if (as[0] != '\0' && !ca_psat_allows(&d->psat, as)) {
        snprintf(why, len,
                 "node %.64s attested as %.200s, which --psat-allowed-sa no longer allows", node,
                 as);
    } else {
        return GRPC_STATUS_OK;
    }
    return GRPC_STATUS_PERMISSION_DENIED;
}

static void renew_node(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                       struct rpc_reply *reply)
{
    struct daemon *d = arg;
    struct ca_caller c;
    if (!check_node(d, ctx, &c, reply)) {
        return;
    }
    char why[400];
    grpc_status_code refused = renewal_refused(d, c.node, why, sizeof(why));
    if (refused != GRPC_STATUS_OK) {
        weft_counter_add(refused == GRPC_STATUS_UNAVAILABLE ? d->m.store_errors : d->m.refused, 1);
        weft_log(WEFT_LOG_WARN, "node svid renewal refused", 2, "node", c.node, "reason", why);
        rpc_fail(reply, refused, "%s", why);
        return;
    }
    Weft__Ca__V1__RenewNodeRequest *r = weft__ca__v1__renew_node_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "RenewNodeRequest does not decode");
        return;
    }
    static struct ca_svid svid;
    char err[256];
    double t0 = mono_s();
    int rc =
        ca_renew_node(&d->issuer, &c, r->csr.data, r->csr.len, now_s(), &svid, err, sizeof(err));
    weft__ca__v1__renew_node_request__free_unpacked(r, NULL);
    if (rc != WEFT_OK) {
        weft_counter_add(rc == WEFT_EIO ? d->m.store_errors : d->m.refused, 1);
        rpc_fail(reply,
                 rc == WEFT_EIO       ? GRPC_STATUS_UNAVAILABLE
                 : rc == WEFT_EPOLICY ? GRPC_STATUS_PERMISSION_DENIED
                                      : GRPC_STATUS_INVALID_ARGUMENT,
                 "%s", err);
        return;
    }
    observe_sign(d, t0, 1);
    weft_counter_add(d->m.issued_node, 1);
    static Weft__Ca__V1__RenewNodeResponse resp;
    static Weft__Ca__V1__Svid pb;
    weft__ca__v1__renew_node_response__init(&resp);
    svid_to_pb(&pb, &svid);
    resp.node_svid = &pb;
    reply->msg = &resp.base;
}

static void mint_workloads(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                           struct rpc_reply *reply)
{
    struct daemon *d = arg;
    struct ca_caller c;
    if (!check_node(d, ctx, &c, reply)) {
        return;
    }
    Weft__Ca__V1__MintWorkloadSVIDsRequest *r =
        weft__ca__v1__mint_workload_svids_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "MintWorkloadSVIDsRequest does not decode");
        return;
    }
    if (r->n_requests > CA_MAX_MINT_BATCH) {
        rpc_fail(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "%zu CSRs in one call; at most %d",
                 r->n_requests, CA_MAX_MINT_BATCH);
        weft__ca__v1__mint_workload_svids_request__free_unpacked(r, NULL);
        return;
    }
    static struct ca_mint_request reqs[CA_MAX_MINT_BATCH];
    static struct ca_mint_result results[CA_MAX_MINT_BATCH];
    for (size_t i = 0; i < r->n_requests; i++) {
        reqs[i] = (struct ca_mint_request){r->requests[i]->entry_id, r->requests[i]->csr.data,
                                           r->requests[i]->csr.len};
    }
    char err[256];
    double t0 = mono_s();
    int rc =
        ca_mint_workloads(&d->issuer, &c, reqs, r->n_requests, results, now_s(), err, sizeof(err));
    size_t n = r->n_requests;
    weft__ca__v1__mint_workload_svids_request__free_unpacked(r, NULL);
    if (rc != WEFT_OK) {
        weft_counter_add(d->m.refused, 1);
        rpc_fail(reply,
                 rc == WEFT_ELIMIT ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_PERMISSION_DENIED,
                 "%s", err);
        return;
    }
    static Weft__Ca__V1__MintWorkloadSVIDsResponse resp;
    static Weft__Ca__V1__MintResult res[CA_MAX_MINT_BATCH], *res_ptrs[CA_MAX_MINT_BATCH];
    static Weft__Ca__V1__Svid svids[CA_MAX_MINT_BATCH];
    weft__ca__v1__mint_workload_svids_response__init(&resp);
    size_t issued = 0;
    for (size_t i = 0; i < n; i++) {
        weft__ca__v1__mint_result__init(&res[i]);
        if (results[i].rc == WEFT_OK) {
            svid_to_pb(&svids[i], &results[i].svid);
            res[i].svid = &svids[i];
            issued++;
        } else {
            res[i].error = results[i].err;
            weft_counter_add(results[i].rc == WEFT_EIO ? d->m.store_errors : d->m.refused, 1);
        }
        res_ptrs[i] = &res[i];
    }
    observe_sign(d, t0, issued);
    weft_counter_add(d->m.issued_workload, issued);
    resp.results = res_ptrs;
    resp.n_results = n;
    reply->msg = &resp.base;
}

static void mint_jwt(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                     struct rpc_reply *reply)
{
    struct daemon *d = arg;
    struct ca_caller c;
    if (!check_node(d, ctx, &c, reply)) {
        weft_counter_add(
            d->m.jwt_refused[reply->status == GRPC_STATUS_UNAVAILABLE ? JWT_UNAVAILABLE
                                                                      : JWT_PERMISSION_DENIED],
            1);
        return;
    }
    Weft__Ca__V1__MintJWTSVIDRequest *r = weft__ca__v1__mint_jwtsvidrequest__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "MintJWTSVIDRequest does not decode");
        weft_counter_add(d->m.jwt_refused[JWT_INVALID_ARGUMENT], 1);
        return;
    }
    static struct ca_jwt_svid out;
    char err[256];
    int rc = WEFT_EIO;
    if (d->state_unsaved) {
        /* a key signs only once the store holds it, so that a restart keeps publishing it */
        snprintf(err, sizeof(err), "the CA cannot store its state; retry later");
    } else {
        rc = ca_mint_jwt(&d->issuer, &c, r->entry_id, (const char *const *)r->audience,
                         r->n_audience, d->o->jwt_ttl_s, now_s(), &out, err, sizeof(err));
    }
    char entry[CA_ENTRY_ID_LEN + 1];
    snprintf(entry, sizeof(entry), "%.32s", r->entry_id);
    weft__ca__v1__mint_jwtsvidrequest__free_unpacked(r, NULL);
    if (rc != WEFT_OK) {
        enum jwt_refusal why = rc == WEFT_EINVAL || rc == WEFT_ELIMIT ? JWT_INVALID_ARGUMENT
                               : rc == WEFT_EPOLICY                   ? JWT_PERMISSION_DENIED
                               : rc == WEFT_EIO || rc == WEFT_ENOTFOUND || rc == WEFT_EAGAIN
                                   ? JWT_UNAVAILABLE
                                   : JWT_INTERNAL;
        static const grpc_status_code codes[] = {
            [JWT_INVALID_ARGUMENT] = GRPC_STATUS_INVALID_ARGUMENT,
            [JWT_PERMISSION_DENIED] = GRPC_STATUS_PERMISSION_DENIED,
            [JWT_UNAVAILABLE] = GRPC_STATUS_UNAVAILABLE,
            [JWT_INTERNAL] = GRPC_STATUS_INTERNAL,
        };
        weft_counter_add(d->m.jwt_refused[why], 1);
        weft_counter_add(rc == WEFT_EIO ? d->m.store_errors : d->m.refused, 1);
        weft_log(WEFT_LOG_WARN, "jwt-svid refused", 3, "node", c.node, "entry", entry, "reason",
                 err);
        rpc_fail(reply, codes[why], "%s", err);
        return;
    }
    weft_counter_add(d->m.jwt_minted, 1);
    static Weft__Ca__V1__MintJWTSVIDResponse resp;
    weft__ca__v1__mint_jwtsvidresponse__init(&resp);
    resp.token = out.token;
    resp.spiffe_id = out.spiffe_id;
    resp.expires_at = out.expires_at;
    reply->msg = &resp.base;
}

struct serve_check {
    const char *spiffe_id;
    bool found;
};

static int match_entry_id(void *arg, const struct ca_entry *e)
{
    struct serve_check *c = arg;
    if (strcmp(e->spiffe_id, c->spiffe_id) == 0) {
        c->found = true;
        return 1; /* stop */
    }
    return WEFT_OK;
}

/* may_serve answers the directory: a node may claim addresses only for IDs it may mint. */
static bool may_serve(void *arg, const char *node, const char *spiffe_id)
{
    struct daemon *d = arg;
    struct serve_check c = {spiffe_id, false};
    int rc = ca_store_entry_list(d->store, node, match_entry_id, &c);
    return (rc == WEFT_OK || rc == 1) && c.found;
}

struct conflicts {
    char **list;
    size_t num;
};

static void on_conflict(void *arg, const struct ca_dir_item *item, const char *reason)
{
    struct conflicts *c = arg;
    char line[CA_DIR_ADDR_MAX + 300];
    snprintf(line, sizeof(line), "%.63s: %.250s", item->address, reason);
    c->list[c->num++] = weft_xstrndup(line, strlen(line));
}

static void report_workloads(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                             struct rpc_reply *reply)
{
    struct daemon *d = arg;
    struct ca_caller c;
    if (!check_node(d, ctx, &c, reply)) {
        return;
    }
    Weft__Ca__V1__ReportWorkloadsRequest *r =
        weft__ca__v1__report_workloads_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "ReportWorkloadsRequest does not decode");
        return;
    }
    if (r->n_workloads > CA_DIR_MAX_REPORT) {
        rpc_fail(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "%zu addresses in one report; at most %d",
                 r->n_workloads, CA_DIR_MAX_REPORT);
        weft__ca__v1__report_workloads_request__free_unpacked(r, NULL);
        return;
    }
    struct ca_dir_item *items = weft_xcalloc(r->n_workloads + 1, sizeof(*items));
    for (size_t i = 0; i < r->n_workloads; i++) {
        items[i] = (struct ca_dir_item){r->workloads[i]->address, r->workloads[i]->spiffe_id};
    }
    /* the reply points into |pending| until the next report (answers are packed at once) */
    static struct conflicts pending;
    for (size_t i = 0; i < pending.num; i++) {
        free(pending.list[i]);
    }
    free(pending.list);
    pending = (struct conflicts){weft_xcalloc(r->n_workloads + 1, sizeof(char *)), 0};
    uint64_t before = ca_directory_version(d->dir);
    int rc =
        ca_directory_report(d->dir, c.node, items, r->n_workloads, now_s(), on_conflict, &pending);
    weft__ca__v1__report_workloads_request__free_unpacked(r, NULL);
    free(items);
    if (rc != WEFT_OK) {
        rpc_fail(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "report refused: %s", weft_strerror(rc));
    } else {
        static Weft__Ca__V1__ReportWorkloadsResponse resp;
        weft__ca__v1__report_workloads_response__init(&resp);
        resp.conflicts = pending.list;
        resp.n_conflicts = pending.num;
        reply->msg = &resp.base;
        for (size_t i = 0; i < pending.num; i++) {
            weft_log(WEFT_LOG_WARN, "directory claim refused", 2, "node", c.node, "claim",
                     pending.list[i]);
        }
    }
    if (ca_directory_version(d->dir) != before) {
        changed(d);
    }
    weft_gauge_set(d->m.dir_entries, (double)ca_directory_size(d->dir));
    weft_gauge_set(d->m.dir_conflicts, (double)ca_directory_conflicts(d->dir));
}

/* --- WatchNode ------------------------------------------------------------------------------ */

static size_t node_streams(const struct daemon *d, const char *node)
{
    size_t n = 0;
    for (const struct watcher *w = d->watchers; w != NULL; w = w->next) {
        n += strcmp(w->caller.node, node) == 0;
    }
    return n;
}

static grpc_status_code watch_open(void *arg, const struct rpc_ctx *ctx, struct rpc_stream *s,
                                   char details[RPC_DETAILS_LEN])
{
    struct daemon *d = arg;
    struct ca_caller c;
    struct rpc_reply r = {.status = GRPC_STATUS_OK};
    if (!check_node(d, ctx, &c, &r)) {
        snprintf(details, RPC_DETAILS_LEN, "%s", r.details);
        return r.status;
    }
    unsigned max =
        d->o->max_streams_per_node ? d->o->max_streams_per_node : DEFAULT_STREAMS_PER_NODE;
    size_t have = node_streams(d, c.node);
    if (have >= max || d->num_watchers >= MAX_WATCHERS) {
        snprintf(details, RPC_DETAILS_LEN, "node %.200s already has %zu WatchNode streams", c.node,
                 have);
        weft_counter_add(d->m.refused, 1);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    if (have == 0 && ca_root_rot_node_connected(d->rot, c.node, now_s()) != WEFT_OK) {
        snprintf(details, RPC_DETAILS_LEN, "the CA tracks too many nodes");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    struct watcher *w = weft_xcalloc(1, sizeof(*w));
    w->s = s;
    w->caller = c;
    w->next = d->watchers;
    d->watchers = w;
    d->num_watchers++;
    rpc_stream_set_user(s, w);
    weft_log(WEFT_LOG_INFO, "node watching", 1, "node", c.node);
    watcher_push(d, w);
    return GRPC_STATUS_OK;
}

static void watch_message(void *arg, struct rpc_stream *s, const uint8_t *msg, size_t len)
{
    struct daemon *d = arg;
    struct watcher *w = rpc_stream_user(s);
    Weft__Ca__V1__WatchNodeRequest *r = weft__ca__v1__watch_node_request__unpack(NULL, len, msg);
    if (r == NULL) {
        rpc_stream_finish(s, GRPC_STATUS_INVALID_ARGUMENT, "WatchNodeRequest does not decode");
        return;
    }
    if (r->bundle_sequence_seen > 0 &&
        ca_root_rot_node_acked(d->rot, w->caller.node, r->bundle_sequence_seen, now_s()) ==
            WEFT_EINVAL) {
        weft_log(WEFT_LOG_WARN, "node acknowledged a bundle that does not exist", 1, "node",
                 w->caller.node);
    }
    weft__ca__v1__watch_node_request__free_unpacked(r, NULL);
}

static void watch_closed(void *arg, struct rpc_stream *s)
{
    struct daemon *d = arg;
    struct watcher *w = rpc_stream_user(s);
    if (w == NULL) {
        return;
    }
    for (struct watcher **p = &d->watchers; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            d->num_watchers--;
            break;
        }
    }
    if (node_streams(d, w->caller.node) == 0) {
        if (ca_root_rot_node_disconnected(d->rot, w->caller.node, now_s()) != WEFT_OK) {
            weft_log(WEFT_LOG_ERROR, "root rotation did not know a watching node", 1, "node",
                     w->caller.node);
        }
    }
    weft_log(WEFT_LOG_INFO, "node stopped watching", 1, "node", w->caller.node);
    free(w);
}

static const struct rpc_method ca_methods[] = {
    {.path = "/weft.ca.v1.CA/AttestNode",
     .kind = RPC_UNARY,
     .max_request = 8 * 1024,
     .unary = attest_node},
    {.path = "/weft.ca.v1.CA/RenewNode",
     .kind = RPC_UNARY,
     .max_request = 8 * 1024,
     .unary = renew_node},
    {.path = "/weft.ca.v1.CA/MintWorkloadSVIDs",
     .kind = RPC_UNARY,
     .max_request = CA_MAX_MINT_BATCH * (CA_MAX_CSR + 128),
     .unary = mint_workloads},
    {.path = "/weft.ca.v1.CA/WatchNode",
     .kind = RPC_STREAM,
     .max_request = 256,
     .open = watch_open,
     .message = watch_message,
     .closed = watch_closed},
    {.path = "/weft.ca.v1.CA/ReportWorkloads",
     .kind = RPC_UNARY,
     .max_request = CA_DIR_MAX_REPORT * (CA_DIR_ADDR_MAX + 300),
     .unary = report_workloads},
    /* room for audiences past the limits, so that the reply says which limit */
    {.path = "/weft.ca.v1.CA/MintJWTSVID",
     .kind = RPC_UNARY,
     .max_request = 4 * SPIFFE_JWT_MAX_AUDIENCES * (SPIFFE_JWT_MAX_AUDIENCE + 8),
     .unary = mint_jwt},
};

/* --- the Admin service ---------------------------------------------------------------------- */

static void create_token(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                         struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__CreateTokenRequest *r =
        weft__ca__v1__create_token_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "CreateTokenRequest does not decode");
        return;
    }
    int64_t now = now_s(), ttl = r->ttl_seconds > 0 ? r->ttl_seconds : 3600;
    static char token[CA_TOKEN_TEXT_LEN + 1];
    char err[256];
    int rc = ca_token_create(d->store, r->node, ttl, now, token, err, sizeof(err));
    if (rc != WEFT_OK) {
        rpc_fail(reply, rc == WEFT_EIO ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_INVALID_ARGUMENT,
                 "%s", err);
    } else {
        char until[32];
        snprintf(until, sizeof(until), "%lld", (long long)(now + ttl));
        weft_log(WEFT_LOG_INFO, "join token created", 2, "node", r->node, "expires_at", until);
        static Weft__Ca__V1__CreateTokenResponse resp;
        weft__ca__v1__create_token_response__init(&resp);
        resp.token = token;
        resp.expires_at = now + ttl;
        reply->msg = &resp.base;
    }
    weft__ca__v1__create_token_request__free_unpacked(r, NULL);
}

static int entry_from_pb(struct ca_entry *e, const Weft__Ca__V1__Entry *pb, char *err,
                         size_t err_len)
{
    memset(e, 0, sizeof(*e));
    if (pb == NULL) {
        snprintf(err, err_len, "no entry in the request");
        return WEFT_EINVAL;
    }
    if (strlen(pb->spiffe_id) > CA_SPIFFE_ID_MAX || strlen(pb->node) > CA_NODE_NAME_MAX ||
        strlen(pb->node_selector) > CA_SELECTOR_MAX || pb->n_selectors > CA_MAX_SELECTORS) {
        snprintf(err, err_len,
                 "entry over a limit (ID %d bytes, node %d, node selector %d, %d selectors of %d)",
                 CA_SPIFFE_ID_MAX, CA_NODE_NAME_MAX, CA_SELECTOR_MAX, CA_MAX_SELECTORS,
                 CA_SELECTOR_MAX);
        return WEFT_ELIMIT;
    }
    snprintf(e->spiffe_id, sizeof(e->spiffe_id), "%s", pb->spiffe_id);
    snprintf(e->node, sizeof(e->node), "%s", pb->node);
    snprintf(e->node_selector, sizeof(e->node_selector), "%s", pb->node_selector);
    for (size_t i = 0; i < pb->n_selectors; i++) {
        if (strlen(pb->selectors[i]) > CA_SELECTOR_MAX) {
            snprintf(err, err_len, "selector %zu is over %d bytes", i + 1, CA_SELECTOR_MAX);
            return WEFT_ELIMIT;
        }
        snprintf(e->selectors[i], sizeof(e->selectors[i]), "%s", pb->selectors[i]);
    }
    e->num_selectors = pb->n_selectors;
    e->ttl_s = pb->ttl_seconds > 0 ? pb->ttl_seconds : CA_DEFAULT_SVID_TTL_S;
    return WEFT_OK;
}

static void create_entry(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                         struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__CreateEntryRequest *r =
        weft__ca__v1__create_entry_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "CreateEntryRequest does not decode");
        return;
    }
    static struct ca_entry e;
    char err[512];
    int rc = entry_from_pb(&e, r->entry, err, sizeof(err));
    weft__ca__v1__create_entry_request__free_unpacked(r, NULL);
    if (rc == WEFT_OK) {
        rc = ca_entry_validate(&e, &d->td, err, sizeof(err));
    }
    if (rc == WEFT_OK && e.node_selector[0] != '\0') {
        /* one no node could report would be stored and never match: say so instead */
        if (!d->psat_on) {
            rpc_fail(reply, GRPC_STATUS_FAILED_PRECONDITION,
                     "--node-selector %.64s: only nodes attested by Kubernetes service account "
                     "token report node selectors, and this CA does not attest so (no "
                     "--psat-issuer); a join token gives only the node's name: use --node NAME",
                     e.node_selector);
            return;
        }
        rc = ca_psat_node_selector_check(&d->psat, e.node_selector, err, sizeof(err));
    }
    size_t bound = 0;
    if (rc == WEFT_OK && ca_store_entries_bound(d->store, e.node, &bound) != WEFT_OK) {
        rpc_fail(reply, GRPC_STATUS_UNAVAILABLE, "%s", d->store->err);
        return;
    }
    if (rc == WEFT_OK && bound >= MAX_SNAPSHOT_ENTRIES) {
        /* stored, it could make a node's snapshot fail, and that node would get nothing */
        rpc_fail(reply, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "%s %.64s: a node it would hold on could already get %zu entries (those naming "
                 "it and every node-selector entry), and a node takes at most %d: delete some "
                 "first",
                 e.node[0] ? "--node" : "--node-selector", e.node[0] ? e.node : e.node_selector,
                 bound, MAX_SNAPSHOT_ENTRIES);
        return;
    }
    if (rc == WEFT_OK) {
        ca_entry_new_id(e.id);
        e.created_at = now_s();
        if ((rc = ca_store_entry_add(d->store, &e)) != WEFT_OK) {
            snprintf(err, sizeof(err), "%s", d->store->err);
        }
    }
    if (rc != WEFT_OK) {
        rpc_fail(reply, rc == WEFT_EIO ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_INVALID_ARGUMENT,
                 "%s", err);
        return;
    }
    weft_log(WEFT_LOG_INFO, "entry created", 3, "entry", e.id, "id", e.spiffe_id, "node",
             e.node[0] ? e.node : e.node_selector);
    changed(d);
    static Weft__Ca__V1__CreateEntryResponse resp;
    static Weft__Ca__V1__Entry pb;
    static char *sels[CA_MAX_SELECTORS];
    weft__ca__v1__create_entry_response__init(&resp);
    entry_to_pb(&pb, sels, &e);
    resp.entry = &pb;
    reply->msg = &resp.base;
}

static void delete_entry(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                         struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__DeleteEntryRequest *r =
        weft__ca__v1__delete_entry_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "DeleteEntryRequest does not decode");
        return;
    }
    int rc = ca_store_entry_delete(d->store, r->id);
    if (rc == WEFT_ENOTFOUND) {
        rpc_fail(reply, GRPC_STATUS_NOT_FOUND, "no entry %.64s", r->id);
    } else if (rc != WEFT_OK) {
        rpc_fail(reply, GRPC_STATUS_UNAVAILABLE, "%s", d->store->err);
    } else {
        weft_log(WEFT_LOG_INFO, "entry deleted", 1, "entry", r->id);
        changed(d);
        static Weft__Ca__V1__DeleteEntryResponse resp;
        weft__ca__v1__delete_entry_response__init(&resp);
        reply->msg = &resp.base;
    }
    weft__ca__v1__delete_entry_request__free_unpacked(r, NULL);
}

struct entry_list {
    struct ca_entry *rows;
    size_t num, cap;
    bool truncated;
};

static int list_entry(void *arg, const struct ca_entry *e)
{
    struct entry_list *l = arg;
    if (l->num == MAX_LIST_ROWS) {
        l->truncated = true;
        return 1;
    }
    if (l->num == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->rows = weft_xrealloc(l->rows, l->cap * sizeof(*l->rows));
    }
    l->rows[l->num++] = *e;
    return WEFT_OK;
}

/* The admin replies below point into these, kept until the next call of the same kind (the
 * reply is packed before the handler's next call can run). */
static struct entry_list listed;
static Weft__Ca__V1__Entry *listed_pb;
static Weft__Ca__V1__Entry **listed_ptrs;
static char **listed_sels;

static void list_entries(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                         struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__ListEntriesRequest *r =
        weft__ca__v1__list_entries_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "ListEntriesRequest does not decode");
        return;
    }
    free(listed.rows);
    free(listed_pb);
    free(listed_ptrs);
    free(listed_sels);
    memset(&listed, 0, sizeof(listed));
    int rc = ca_store_entry_list(d->store, r->node[0] ? r->node : NULL, list_entry, &listed);
    weft__ca__v1__list_entries_request__free_unpacked(r, NULL);
    if (rc != WEFT_OK && rc != 1) {
        rpc_fail(reply, GRPC_STATUS_UNAVAILABLE, "%s", d->store->err);
        listed_pb = NULL;
        listed_ptrs = NULL;
        listed_sels = NULL;
        return;
    }
    listed_pb = weft_xcalloc(listed.num + 1, sizeof(*listed_pb));
    listed_ptrs = weft_xcalloc(listed.num + 1, sizeof(*listed_ptrs));
    listed_sels = weft_xcalloc((listed.num + 1) * CA_MAX_SELECTORS, sizeof(char *));
    for (size_t i = 0; i < listed.num; i++) {
        entry_to_pb(&listed_pb[i], &listed_sels[i * CA_MAX_SELECTORS], &listed.rows[i]);
        listed_ptrs[i] = &listed_pb[i];
    }
    static Weft__Ca__V1__ListEntriesResponse resp;
    weft__ca__v1__list_entries_response__init(&resp);
    resp.entries = listed_ptrs;
    resp.n_entries = listed.num;
    reply->msg = &resp.base;
}

struct find_rev {
    enum ca_revocation_kind kind;
    const char *value;
    struct ca_revocation found;
};

static int find_revocation(void *arg, const struct ca_revocation *r)
{
    struct find_rev *f = arg;
    if (r->kind == f->kind && strcmp(r->value, f->value) == 0) {
        f->found = *r;
        return 1;
    }
    return WEFT_OK;
}

static void revoke_call(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                        struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__RevokeRequest *r = weft__ca__v1__revoke_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "RevokeRequest does not decode");
        return;
    }
    enum ca_revocation_kind kind = r->kind == WEFT__CA__V1__DENY_ITEM__KIND__SERIAL
                                       ? CA_REVOKE_SERIAL
                                   : r->kind == WEFT__CA__V1__DENY_ITEM__KIND__NODE ? CA_REVOKE_NODE
                                                                                    : CA_REVOKE_ID;
    char err[256];
    int64_t now = now_s();
    struct ca_revocation stored;
    int rc = ca_revoke(d->store, kind, r->value, now, &stored, err, sizeof(err));
    if (rc != WEFT_OK) {
        rpc_fail(reply, rc == WEFT_EIO ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_INVALID_ARGUMENT,
                 "%s", err);
        weft__ca__v1__revoke_request__free_unpacked(r, NULL);
        return;
    }
    /* an earlier item for the same value may keep a later drop time: report the stored one */
    struct find_rev f = {.kind = kind, .value = stored.value, .found = stored};
    if (ca_store_revocation_list(d->store, now, find_revocation, &f) < 0) {
        weft_counter_add(d->m.store_errors, 1);
    }
    static const char *kinds[] = {"id", "serial", "node"};
    weft_log(WEFT_LOG_INFO, "revoked", 2, "kind", kinds[kind], "value", stored.value);
    changed(d);
    push_all(d, true); /* within seconds: now */
    static Weft__Ca__V1__RevokeResponse resp;
    static Weft__Ca__V1__DenyItem item;
    static char value[CA_SPIFFE_ID_MAX + 1];
    weft__ca__v1__revoke_response__init(&resp);
    weft__ca__v1__deny_item__init(&item);
    snprintf(value, sizeof(value), "%s", f.found.value);
    item.kind = kind_to_pb[kind];
    item.value = value;
    item.drop_after = f.found.drop_after;
    resp.item = &item;
    reply->msg = &resp.base;
    weft__ca__v1__revoke_request__free_unpacked(r, NULL);
}

struct cert_list {
    struct ca_issuance *rows;
    size_t num, cap;
};

static int list_cert(void *arg, const struct ca_issuance *i)
{
    struct cert_list *l = arg;
    if (l->num == MAX_LIST_ROWS) {
        return 1;
    }
    if (l->num == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->rows = weft_xrealloc(l->rows, l->cap * sizeof(*l->rows));
    }
    l->rows[l->num++] = *i;
    return WEFT_OK;
}

static struct cert_list certs;
static Weft__Ca__V1__Certificate *certs_pb, **certs_ptrs;

static void list_certs(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                       struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__ListCertsRequest *r = weft__ca__v1__list_certs_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "ListCertsRequest does not decode");
        return;
    }
    free(certs.rows);
    free(certs_pb);
    free(certs_ptrs);
    memset(&certs, 0, sizeof(certs));
    int64_t now = now_s();
    struct ca_issuance_filter f = {
        .spiffe_id = r->spiffe_id[0] ? r->spiffe_id : NULL,
        .not_after_before = r->expiring_within_seconds > 0 ? now + r->expiring_within_seconds : 0,
        .now = now,
    };
    int rc = ca_store_issuance_list(d->store, &f, list_cert, &certs);
    weft__ca__v1__list_certs_request__free_unpacked(r, NULL);
    certs_pb = weft_xcalloc(certs.num + 1, sizeof(*certs_pb));
    certs_ptrs = weft_xcalloc(certs.num + 1, sizeof(*certs_ptrs));
    if (rc != WEFT_OK && rc != 1) {
        rpc_fail(reply, GRPC_STATUS_UNAVAILABLE, "%s", d->store->err);
        return;
    }
    for (size_t i = 0; i < certs.num; i++) {
        struct ca_issuance *row = &certs.rows[i];
        Weft__Ca__V1__Certificate *pb = &certs_pb[i];
        weft__ca__v1__certificate__init(pb);
        pb->serial.data = row->serial;
        pb->serial.len = row->serial_len;
        pb->spiffe_id = row->spiffe_id;
        pb->node = row->node;
        pb->entry_id = row->entry_id;
        pb->not_before = row->not_before;
        pb->not_after = row->not_after;
        pb->sha256.data = row->sha256;
        pb->sha256.len = sizeof(row->sha256);
        certs_ptrs[i] = pb;
    }
    static Weft__Ca__V1__ListCertsResponse resp;
    weft__ca__v1__list_certs_response__init(&resp);
    resp.certs = certs_ptrs;
    resp.n_certs = certs.num;
    reply->msg = &resp.base;
}

struct behind_list {
    char **names;
    size_t num, cap;
};

static int collect_behind(void *arg, const char *node, uint64_t acked)
{
    (void)acked;
    struct behind_list *b = arg;
    if (b->num < b->cap) {
        b->names[b->num++] = weft_xstrndup(node, strlen(node));
    }
    return WEFT_OK;
}

static struct behind_list behind, connected;

static void free_names(struct behind_list *b)
{
    for (size_t i = 0; i < b->num; i++) {
        free(b->names[i]);
    }
    free(b->names);
    memset(b, 0, sizeof(*b));
}

static void status(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                   struct rpc_reply *reply)
{
    (void)ctx, (void)req, (void)len;
    struct daemon *d = arg;
    free_names(&behind);
    free_names(&connected);
    behind.cap = MAX_LIST_ROWS;
    behind.names = weft_xcalloc(behind.cap, sizeof(char *));
    if (ca_root_rot_behind(d->rot, collect_behind, &behind) != WEFT_OK) {
        /* collect_behind stops nothing: the walk always completes */
    }
    connected.cap = d->num_watchers;
    connected.names = weft_xcalloc(connected.cap + 1, sizeof(char *));
    for (struct watcher *w = d->watchers; w != NULL; w = w->next) {
        bool seen = false;
        for (size_t i = 0; i < connected.num && !seen; i++) {
            seen = strcmp(connected.names[i], w->caller.node) == 0;
        }
        if (!seen) {
            connected.names[connected.num++] =
                weft_xstrndup(w->caller.node, strlen(w->caller.node));
        }
    }
    static char rot[1024];
    ca_root_rot_format_status(d->rot, rot, sizeof(rot));
    static Weft__Ca__V1__StatusResponse resp;
    weft__ca__v1__status_response__init(&resp);
    resp.trust_domain = d->td.str;
    resp.intermediate_not_after = d->int_not_after;
    resp.root_not_after = d->root_not_after;
    resp.root_rotation_phase = (char *)ca_root_rot_phase_name(ca_root_rot_phase(d->rot));
    resp.nodes_behind_on_bundle = behind.names;
    resp.n_nodes_behind_on_bundle = behind.num;
    resp.policy_error = d->policy != NULL ? (char *)ca_policy_source_error(d->policy) : "";
    resp.policy_version = d->policy_version;
    resp.nodes_connected = connected.names;
    resp.n_nodes_connected = connected.num;
    resp.bundle_sequence = ca_root_rot_bundle_seq(d->rot);
    resp.root_rotation = rot;
    resp.directory_version = ca_directory_version(d->dir);
    resp.directory_size = ca_directory_size(d->dir);
    resp.serving_not_after = d->serving_not_after;
    static char inter[768];
    snprintf(inter, sizeof(inter), "?");
    if (d->rotation_error[0] != '\0') {
        snprintf(inter, sizeof(inter), "FAILING (%s)", d->rotation_error);
    } else if (!d->root_online) {
        snprintf(inter, sizeof(inter),
                 "does not rotate: the signing root's key is offline (not in %s); a root "
                 "rotation brings one",
                 CA_FILE_ROOT_KEY);
    } else {
        struct ca_int_step step;
        char at[WEFT_RFC3339_LEN];
        if (ca_int_schedule_step(&d->int_sched, &d->int_policy, now_s(), &step) == WEFT_OK) {
            weft_time_format_rfc3339(at, step.at);
            snprintf(inter, sizeof(inter), "%s; next step %s",
                     d->int_sched.has_next ? "successor prepared" : "no successor yet",
                     step.at == INT64_MAX ? "never" : at);
        }
    }
    /* the JWT-SVID key here too: StatusResponse has no field of its own for it */
    const struct ca_jwt_key *jk = ca_jwt_keys_current(&d->jwt);
    struct ca_int_step jstep = {CA_INT_NONE, INT64_MAX};
    char jat[WEFT_RFC3339_LEN + 20] = "";
    if (ca_int_schedule_step(&d->jwt_sched, &d->jwt_policy, now_s(), &jstep) == WEFT_OK &&
        jstep.at != INT64_MAX) {
        char t[WEFT_RFC3339_LEN];
        weft_time_format_rfc3339(t, jstep.at);
        snprintf(jat, sizeof(jat), ", due to change at %s", t);
    }
    size_t pos = strlen(inter);
    snprintf(inter + pos, sizeof(inter) - pos, "; JWT-SVID key %s (%zu published%s%s%.150s)",
             jk != NULL ? jk->kid : "none", d->jwt.num, jat, d->jwt_error[0] ? "; FAILING: " : "",
             d->jwt_error);
    resp.intermediate_rotation = inter;
    reply->msg = &resp.base;
}

static void rotate_root(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                        struct rpc_reply *reply)
{
    (void)ctx, (void)req, (void)len;
    struct daemon *d = arg;
    static char err[512];
    int64_t now = now_s();
    if (ca_root_rot_rotate(d->rot, now, err, sizeof(err)) != WEFT_OK) {
        rpc_fail(reply, GRPC_STATUS_FAILED_PRECONDITION, "%s", err);
        return;
    }
    d->rotation_retry_at = 0;
    rotation_tick(d, now); /* the new root goes into the bundle now */
    static char phase[1024];
    ca_root_rot_format_status(d->rot, phase, sizeof(phase));
    weft_log(WEFT_LOG_INFO, "root rotation started", 1, "status", phase);
    static Weft__Ca__V1__RotateRootResponse resp;
    weft__ca__v1__rotate_root_response__init(&resp);
    resp.phase = phase;
    reply->msg = &resp.base;
}

/* ListDirectory: the mesh directory for `weftctl scan --from-ca` (issue 9). Entries past their
 * TTL are dropped first, as the tick would, so that only live addresses are listed; at most
 * MAX_LIST_ROWS, in address order, |truncated| saying there are more. */
struct dir_list {
    Weft__Ca__V1__ListDirectoryEntry *pb, **ptrs;
    char (*addrs)[CA_DIR_ADDR_MAX];
    char **ids, **nodes;
    size_t num, cap;
    bool truncated;
};

static struct dir_list dir_listed;

static void dir_list_free(struct dir_list *l)
{
    for (size_t i = 0; i < l->num; i++) {
        free(l->ids[i]);
        free(l->nodes[i]);
    }
    free(l->pb);
    free(l->ptrs);
    free(l->addrs);
    free(l->ids);
    free(l->nodes);
    memset(l, 0, sizeof(*l));
}

static void list_dir_entry(void *arg, const struct ca_dir_entry *e)
{
    struct dir_list *l = arg;
    if (l->num == l->cap) {
        l->truncated = true;
        return;
    }
    Weft__Ca__V1__ListDirectoryEntry *pb = &l->pb[l->num];
    weft__ca__v1__list_directory_entry__init(pb);
    memcpy(l->addrs[l->num], e->address, CA_DIR_ADDR_MAX);
    l->ids[l->num] = weft_xstrndup(e->spiffe_id, strlen(e->spiffe_id));
    l->nodes[l->num] = weft_xstrndup(e->node, strlen(e->node));
    pb->address = l->addrs[l->num];
    pb->spiffe_id = l->ids[l->num];
    pb->node = l->nodes[l->num];
    pb->last_seen = e->last_seen;
    l->ptrs[l->num] = pb;
    l->num++;
}

static void list_directory(void *arg, const struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                           struct rpc_reply *reply)
{
    (void)ctx;
    struct daemon *d = arg;
    Weft__Ca__V1__ListDirectoryRequest *r =
        weft__ca__v1__list_directory_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_fail(reply, GRPC_STATUS_INVALID_ARGUMENT, "ListDirectoryRequest does not decode");
        return;
    }
    weft__ca__v1__list_directory_request__free_unpacked(r, NULL);
    if (ca_directory_expire(d->dir, now_s()) > 0) {
        changed(d);
        weft_gauge_set(d->m.dir_entries, (double)ca_directory_size(d->dir));
    }
    dir_list_free(&dir_listed);
    size_t n = ca_directory_size(d->dir);
    dir_listed.cap = n < MAX_LIST_ROWS ? n : MAX_LIST_ROWS;
    dir_listed.pb = weft_xcalloc(dir_listed.cap + 1, sizeof(*dir_listed.pb));
    dir_listed.ptrs = weft_xcalloc(dir_listed.cap + 1, sizeof(*dir_listed.ptrs));
    dir_listed.addrs = weft_xcalloc(dir_listed.cap + 1, sizeof(*dir_listed.addrs));
    dir_listed.ids = weft_xcalloc(dir_listed.cap + 1, sizeof(*dir_listed.ids));
    dir_listed.nodes = weft_xcalloc(dir_listed.cap + 1, sizeof(*dir_listed.nodes));
    ca_directory_each(d->dir, list_dir_entry, &dir_listed);
    static Weft__Ca__V1__ListDirectoryResponse resp;
    weft__ca__v1__list_directory_response__init(&resp);
    resp.entries = dir_listed.ptrs;
    resp.n_entries = dir_listed.num;
    resp.truncated = dir_listed.truncated;
    resp.directory_version = ca_directory_version(d->dir);
    reply->msg = &resp.base;
}

static const struct rpc_method admin_methods[] = {
    {.path = "/weft.ca.v1.Admin/CreateToken", .kind = RPC_UNARY, .unary = create_token},
    {.path = "/weft.ca.v1.Admin/CreateEntry", .kind = RPC_UNARY, .unary = create_entry},
    {.path = "/weft.ca.v1.Admin/DeleteEntry", .kind = RPC_UNARY, .unary = delete_entry},
    {.path = "/weft.ca.v1.Admin/ListEntries", .kind = RPC_UNARY, .unary = list_entries},
    {.path = "/weft.ca.v1.Admin/Revoke", .kind = RPC_UNARY, .unary = revoke_call},
    {.path = "/weft.ca.v1.Admin/ListCerts", .kind = RPC_UNARY, .unary = list_certs},
    {.path = "/weft.ca.v1.Admin/Status", .kind = RPC_UNARY, .unary = status},
    {.path = "/weft.ca.v1.Admin/RotateRoot", .kind = RPC_UNARY, .unary = rotate_root},
    {.path = "/weft.ca.v1.Admin/ListDirectory", .kind = RPC_UNARY, .unary = list_directory},
};

/* --- metrics and readiness ------------------------------------------------------------------ */

static void metrics_init(struct metrics *m)
{
    static const double sign_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
                                         0.05,   0.1,   0.25,  0.5,   1};
    m->reg = weft_metrics_new();
    struct weft_label node = {"kind", "node"}, workload = {"kind", "workload"};
    m->issued_node = weft_metrics_counter(m->reg, "weft_ca_svids_issued_total",
                                          "SVIDs issued, by kind", &node, 1);
    m->issued_workload = weft_metrics_counter(m->reg, "weft_ca_svids_issued_total",
                                              "SVIDs issued, by kind", &workload, 1);
    m->joins =
        weft_metrics_counter(m->reg, "weft_ca_node_joins_total",
                             "Nodes attested (join token or service account token)", NULL, 0);
    m->refused = weft_metrics_counter(m->reg, "weft_ca_requests_refused_total",
                                      "Requests refused (bad token, unassigned entry, revoked, "
                                      "over a limit)",
                                      NULL, 0);
    m->store_errors = weft_metrics_counter(m->reg, "weft_ca_store_errors_total",
                                           "Store operations that failed", NULL, 0);
    m->sign_seconds =
        weft_metrics_histogram(m->reg, "weft_ca_sign_seconds", "Time to sign and record one SVID",
                               NULL, 0, sign_bounds, nitems(sign_bounds));
    m->int_not_after = weft_metrics_gauge(m->reg, "weft_ca_intermediate_not_after_seconds",
                                          "notAfter of the signing intermediate", NULL, 0);
    m->root_not_after = weft_metrics_gauge(m->reg, "weft_ca_root_not_after_seconds",
                                           "Earliest notAfter among the bundle's roots", NULL, 0);
    m->serving_not_after = weft_metrics_gauge(m->reg, "weft_ca_serving_svid_not_after_seconds",
                                              "notAfter of the CA's own TLS SVID", NULL, 0);
    m->agents = weft_metrics_gauge(m->reg, "weft_ca_connected_agents",
                                   "Nodes with a WatchNode stream open", NULL, 0);
    m->behind =
        weft_metrics_gauge(m->reg, "weft_ca_agents_behind_bundle",
                           "Connected nodes that have not acknowledged the bundle", NULL, 0);
    m->policy_version = weft_metrics_gauge(m->reg, "weft_ca_policy_version",
                                           "Version of the policy set in force", NULL, 0);
    m->policy_refusals = weft_metrics_gauge(m->reg, "weft_ca_policy_refused_changes",
                                            "Policy changes refused since start (with "
                                            "--policy-source kubernetes: objects refused)",
                                            NULL, 0);
    m->policy_api_failures = weft_metrics_gauge(
        m->reg, "weft_ca_policy_kube_api_failures",
        "Failed Kubernetes API requests since start (retried with backoff)", NULL, 0);
    m->dir_entries = weft_metrics_gauge(m->reg, "weft_ca_directory_entries",
                                        "Addresses in the mesh directory", NULL, 0);
    m->dir_conflicts = weft_metrics_gauge(m->reg, "weft_ca_directory_conflicts",
                                          "Directory claims refused since start", NULL, 0);
    m->snapshot_seq = weft_metrics_gauge(m->reg, "weft_ca_snapshot_sequence",
                                         "Sequence of the node snapshots", NULL, 0);
    m->jwt_minted =
        weft_metrics_counter(m->reg, "weft_ca_jwt_svids_minted_total", "JWT-SVIDs signed", NULL, 0);
    static const char *const reasons[] = {
        [JWT_INVALID_ARGUMENT] = "invalid_argument",
        [JWT_PERMISSION_DENIED] = "permission_denied",
        [JWT_UNAVAILABLE] = "unavailable",
        [JWT_INTERNAL] = "internal",
    };
    for (size_t i = 0; i < JWT_NUM_REFUSALS; i++) {
        struct weft_label reason = {"reason", reasons[i]};
        m->jwt_refused[i] = weft_metrics_counter(
            m->reg, "weft_ca_jwt_svids_refused_total",
            "MintJWTSVID calls refused, by gRPC status: invalid_argument (bad audiences), "
            "permission_denied (no node SVID, not the node's entry, revoked), unavailable "
            "(store, no key), internal",
            &reason, 1);
    }
    m->jwt_keys =
        weft_metrics_gauge(m->reg, "weft_ca_jwt_keys_published",
                           "JWT-SVID keys in the bundle (current, next, retired)", NULL, 0);
}

static bool is_ready(void *arg, char *why, size_t why_len)
{
    struct daemon *d = arg;
    if (!atomic_load(&d->ready)) {
        snprintf(why, why_len,
                 "not serving: starting, the signer is gone, or the signing "
                 "intermediate or the CA's own SVID expired");
        return false;
    }
    return true;
}

/* tick does what is due by the clock: the serving SVID, the policy, the directory, the root
 * rotation machine's waits, and the gauges. */
static void tick(struct daemon *d, int64_t *next_policy_ms, int64_t mono_ms)
{
    int64_t now = now_s();
    char err[256];
    if (!ca_signer_alive(d->signer)) {
        /* nothing can be signed any more: say so, and stop for the supervisor to restart us */
        atomic_store(&d->ready, false);
        weft_log(WEFT_LOG_ERROR, "the signer process died; stopping", 0);
        d->fatal = true;
        return;
    }
    if (now >= d->serving_renew_at && serving_renew(d, now, err, sizeof(err)) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "cannot renew the serving svid", 1, "error", err);
        d->serving_renew_at = now + 10;
    }
    if (d->policy != NULL && mono_ms >= *next_policy_ms) {
        *next_policy_ms = mono_ms + (d->o->policy_poll_ms ? d->o->policy_poll_ms
                                     : d->o->policy_kube  ? DEFAULT_KUBE_POLL_MS
                                                          : DEFAULT_POLICY_POLL_MS);
        if (ca_policy_source_poll(d->policy) != WEFT_OK) {
            /* refused: the source logged it and keeps the last good set */
        }
        uint64_t v;
        (void)ca_policy_source_current(d->policy, &v);
        if (v != d->policy_version) {
            d->policy_version = v;
            changed(d);
        }
        weft_gauge_set(d->m.policy_version, (double)d->policy_version);
        weft_gauge_set(d->m.policy_refusals, (double)ca_policy_source_refusals(d->policy));
        weft_gauge_set(d->m.policy_api_failures, (double)ca_policy_source_api_failures(d->policy));
    }
    if (ca_directory_expire(d->dir, now) > 0) {
        changed(d);
    }
    ca_root_rot_tick(d->rot, now);
    rotation_tick(d, now);
    jwt_tick(d, now);
    struct ca_root_rot_status st;
    ca_root_rot_status(d->rot, &st);
    weft_gauge_set(d->m.agents, (double)st.num_connected);
    weft_gauge_set(d->m.behind, (double)st.num_behind);
    weft_gauge_set(d->m.dir_entries, (double)ca_directory_size(d->dir));
    weft_gauge_set(d->m.snapshot_seq, (double)d->snapshot_seq);
    bool serving = d->serving_not_after > now && d->int_not_after > now;
    atomic_store(&d->ready, serving);
    weft_gauge_set(d->m.int_not_after, (double)d->int_not_after);
}

/* --- the run ------------------------------------------------------------------------------ */

static int admin_socket_mode(const char *path, const char *group, char *err, size_t err_len)
{
    mode_t mode = 0600;
    if (group != NULL) {
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            snprintf(err, err_len, "--admin-group %s: no such group", group);
            return WEFT_EINVAL;
        }
        if (chown(path, (uid_t)-1, gr->gr_gid) != 0) {
            snprintf(err, err_len, "cannot give %s to group %s: %s", path, group, strerror(errno));
            return WEFT_EIO;
        }
        mode = 0660;
    }
    if (chmod(path, mode) != 0) {
        snprintf(err, err_len, "cannot chmod %s: %s", path, strerror(errno));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

static void daemon_free(struct daemon *d)
{
    if (d->fds != NULL) {
        grpcfd_server_close(d->fds);
    }
    tls_relay_free(d->relay); /* no more fds to adopt */
    while (d->watchers != NULL) {
        struct watcher *w = d->watchers;
        d->watchers = w->next;
        rpc_stream_set_user(w->s, NULL);
        free(w);
    }
    rpc_server_free(d->rpc);
    grpcfd_server_free(d->fds);
    httpadmin_stop(d->http);
    ca_root_rot_free(d->rot);
    ca_policy_source_free(d->policy);
    ca_directory_free(d->dir);
    ca_signer_stop(d->signer);
    ca_store_close(d->store);
    ca_psat_cleanup(&d->psat);
    sk_X509_pop_free(d->serving_chain, X509_free);
    EVP_PKEY_free(d->serving_key);
    sk_X509_pop_free(d->roots, X509_free);
    X509_free(d->intermediate);
    free(d->bundle_der);
    spiffe_bundle_set_cleanup(&d->bundles);
    weft_metrics_free(d->m.reg);
    for (size_t i = 0; i < nitems(d->bundle_fds); i++) {
        if (d->bundle_fds[i] >= 0) {
            close(d->bundle_fds[i]);
        }
    }
}

/* load_psat reads the cluster's JWKS file and (re)configures attestation by service account
 * token. At start it runs before privileges go; afterwards it runs again whenever the file
 * changed (a ConfigMap the operator updates when the cluster rotates its keys), and a file it
 * cannot use then leaves the keys in force, with a warning. */
static int load_psat(struct daemon *d, char *err, size_t err_len)
{
    const struct ca_daemon_opts *o = d->o;
    uint8_t *jwks = NULL;
    size_t len = 0;
    struct stat st;
    if (o->psat_jwks == NULL) {
        snprintf(err, err_len, "needed with --psat-issuer");
        return WEFT_EINVAL;
    }
    if (stat(o->psat_jwks, &st) == 0) {
        d->psat_mtime = st.st_mtim;
        d->psat_size = st.st_size;
    }
    int rc = weft_file_read(&jwks, &len, o->psat_jwks, CA_PSAT_MAX_JWKS);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.300s: %s", o->psat_jwks,
                 rc == WEFT_ELIMIT ? "over 256 KiB" : strerror(errno));
        return rc;
    }
    struct ca_psat_config cfg = {
        .issuer = o->psat_issuer,
        .audience = o->psat_audience,
        .cluster = o->psat_cluster,
        .allowed_sa = o->psat_allowed_sa,
        .num_allowed_sa = o->num_psat_allowed_sa,
        .jwks = jwks,
        .jwks_len = len,
    };
    char why[400];
    rc = ca_psat_reload(&d->psat, &cfg, why, sizeof(why));
    free(jwks);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.100s: %s", o->psat_jwks, why);
        return rc;
    }
    char num[16];
    snprintf(num, sizeof(num), "%zu", d->psat.num_keys);
    weft_log(WEFT_LOG_INFO,
             d->psat_on ? "service account token keys reloaded"
                        : "service account token attestation on",
             4, "issuer", d->psat.issuer, "audience", d->psat.audience, "keys", num, "jwks",
             o->psat_jwks);
    d->psat_on = true;
    return WEFT_OK;
}

/* psat_refresh reloads the JWKS file when it changed since it was last read. */
static void psat_refresh(struct daemon *d)
{
    struct stat st;
    char err[512];
    if (stat(d->o->psat_jwks, &st) != 0) {
        weft_log(WEFT_LOG_WARN, "cannot stat the JWKS; the keys in force stay", 2, "jwks",
                 d->o->psat_jwks, "error", strerror(errno));
        return;
    }
    if (st.st_mtim.tv_sec == d->psat_mtime.tv_sec && st.st_mtim.tv_nsec == d->psat_mtime.tv_nsec &&
        st.st_size == d->psat_size) {
        return;
    }
    if (load_psat(d, err, sizeof(err)) != WEFT_OK) {
        weft_log(WEFT_LOG_WARN, "JWKS refused; the keys in force stay", 1, "error", err);
    }
}

/* warn_unmatchable says, at start, which stored entries no node attesting from now on can hold:
 * their node selector was accepted under other flags (--psat-cluster renamed, --psat-issuer or
 * an allowed service account gone). They stay stored, and nodes that reported the selector
 * keep it until they attest again (an agent with --psat-token-file does so at each node SVID
 * renewal; when that is refused it renews and keeps it): a flag put back makes them whole. */
static int warn_unmatchable(void *arg, const struct ca_entry *e)
{
    struct daemon *d = arg;
    char why[300];
    if (e->node_selector[0] == '\0') {
        return WEFT_OK;
    }
    if (!d->psat_on) {
        snprintf(why, sizeof(why), "no node attests by token here (no --psat-issuer)");
    } else if (ca_psat_node_selector_check(&d->psat, e->node_selector, why, sizeof(why)) ==
               WEFT_OK) {
        return WEFT_OK;
    }
    weft_log(WEFT_LOG_WARN,
             "entry holds on no node attesting from now on; nodes that reported its selector "
             "keep it until they attest again",
             3, "entry", e->id, "id", e->spiffe_id, "reason", why);
    return WEFT_OK;
}

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "weft-ca: %s: %s\n", what, err);
    return 1;
}

int ca_daemon_run(const struct ca_daemon_opts *o)
{
    static struct daemon dd;
    struct daemon *d = &dd;
    memset(d, 0, sizeof(*d));
    d->o = o;
    if (strlen(o->data_dir) >= sizeof(d->data_dir)) {
        return fail("--data-dir", "longer than 199 bytes");
    }
    snprintf(d->data_dir, sizeof(d->data_dir), "%s", o->data_dir);
    d->bundle_fds[0] = d->bundle_fds[1] = -1;
    spiffe_bundle_set_init(&d->bundles);
    metrics_init(&d->m);
    char err[512];
    int rc = 1;
    bool grpc_started = false;

    if (mkdir(d->data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, sizeof(err), "%.300s: %s", d->data_dir, strerror(errno));
        rc = fail("--data-dir", err);
        goto out;
    }
    if (o->psat_issuer != NULL && load_psat(d, err, sizeof(err)) != WEFT_OK) {
        rc = fail("--psat-jwks", err);
        goto out;
    }
    if (o->self_signed && !ca_material_exists(d->data_dir)) {
        struct spiffe_id td;
        struct spiffe_why why;
        if (o->trust_domain == NULL ||
            spiffe_td_parse(&td, o->trust_domain, strlen(o->trust_domain), &why) != WEFT_OK) {
            rc = fail("--self-signed", "needs a valid --trust-domain");
            goto out;
        }
        struct ca_material_params p = {
            .td = &td,
            .not_before = now_s() - 60,
            .root_ttl_s = o->root_ttl_s,
            .intermediate_ttl_s = o->intermediate_ttl_s,
            .key_type = o->key_type,
        };
        if (ca_material_init(d->data_dir, &p, err, sizeof(err)) != WEFT_OK) {
            rc = fail("--self-signed", err);
            goto out;
        }
        weft_log(WEFT_LOG_INFO, "made a self-signed root and intermediate", 2, "trust_domain",
                 td.str, "dir", d->data_dir);
    }
    /* the store first (a file, no thread): it says which root signs and which roots are out */
    char key_path[300], cert_path[300], db_path[300], slot_paths[CA_SIGNER_SLOTS][300];
    snprintf(key_path, sizeof(key_path), "%.200s/%s", d->data_dir, CA_FILE_INT_KEY);
    snprintf(cert_path, sizeof(cert_path), "%.200s/%s", d->data_dir, CA_FILE_INT_CERT);
    snprintf(db_path, sizeof(db_path), "%.200s/%s", d->data_dir, CA_STORE_NAME);
    snprintf(slot_paths[0], sizeof(slot_paths[0]), "%.200s/%s", d->data_dir, CA_FILE_ROOT_KEY);
    snprintf(slot_paths[1], sizeof(slot_paths[1]), "%.200s/%s", d->data_dir, CA_FILE_ROOT_KEY_2);
    if (ca_store_open_sqlite(&d->store, db_path, err, sizeof(err)) != WEFT_OK) {
        rc = fail("store", err);
        goto out;
    }
    if (ca_store_entry_list(d->store, NULL, warn_unmatchable, d) != WEFT_OK) {
        rc = fail("store", d->store->err);
        goto out;
    }
    struct ca_root_rot_state rot_state;
    int have_state = state_load(d, &rot_state, err, sizeof(err));
    if (have_state != WEFT_OK && have_state != WEFT_ENOTFOUND) {
        rc = fail("store", err);
        goto out;
    }
    uint8_t *stored_bundle = NULL;
    size_t stored_len = 0;
    /* the bundle is stored from the first root rotation on; before that bundle.pem holds it */
    if (have_state == WEFT_OK && rot_state.rotations > 0 &&
        ca_store_state_get(d->store, STATE_BUNDLE, &stored_bundle, &stored_len) != WEFT_OK) {
        rc = fail("store", "a root rotation state without its bundle");
        goto out;
    }
    d->signing_slot = state_int(d->store, STATE_SIGNING_SLOT, 0) == 1 ? 1 : 0;
    d->int_lifetime_max = state_int(d->store, STATE_INT_LIFETIME_MAX, 0);
    rc = load_roots(d, stored_bundle, stored_len, err, sizeof(err));
    free(stored_bundle);
    if (rc != WEFT_OK) {
        rc = fail("CA material", err);
        goto out;
    }
    d->int_policy = (struct ca_int_policy){.lifetime_s = o->intermediate_ttl_s};
    if (ca_int_policy_check(&d->int_policy, err, sizeof(err)) != WEFT_OK) {
        rc = fail("--intermediate-ttl", err);
        goto out;
    }

    /* the signer next: it is forked, and no thread may exist yet */
    struct ca_signer_config scfg = {
        .key_path = key_path,
        .cert_path = cert_path,
        .root_key_paths = {slot_paths[0], slot_paths[1]},
        .roots = d->roots,
        .signing_slot = d->signing_slot,
        .intermediate_ttl_s = o->intermediate_ttl_s,
        .jwt_min_ttl_s = CA_JWT_MIN_TTL_S,
        .jwt_max_ttl_s = o->jwt_ttl_s,
    };
    if (ca_signer_start(&d->signer, &scfg, err, sizeof(err)) != WEFT_OK) {
        rc = fail("signer", err);
        goto out;
    }
    d->issuer = (struct ca_issuer){
        .store = d->store,
        .signer = d->signer,
        .td = d->td,
        .node_ttl_s = o->node_ttl_s,
    };
    if (intermediate_adopt(d, err, sizeof(err)) != WEFT_OK) {
        rc = fail("CA material", err);
        goto out;
    }
    struct ca_int_window first = {d->int_not_after - d->int_lifetime, d->int_not_after};
    if (ca_int_schedule_init(&d->int_sched, &first, err, sizeof(err)) != WEFT_OK) {
        rc = fail("intermediate", err);
        goto out;
    }
    /* how far ahead an intermediate's notAfter can be from when it starts being used: the
     * policy's lifetime for those minted here, what is left of the files' one */
    int64_t ahead = d->int_not_after - now_s();
    if (!d->root_online && ahead > d->int_lifetime_max) {
        d->int_lifetime_max = ahead;
    }
    if (o->intermediate_ttl_s > d->int_lifetime_max) {
        d->int_lifetime_max = o->intermediate_ttl_s;
    }
    char life[24];
    snprintf(life, sizeof(life), "%lld", (long long)d->int_lifetime_max);
    struct ca_state_item life_item = {STATE_INT_LIFETIME_MAX, life, strlen(life)};
    if (ca_store_state_put(d->store, &life_item, 1) != WEFT_OK) {
        rc = fail("store", d->store->err);
        goto out;
    }
    /* copies of the bundle for operators, kept current through descriptors opened now */
    const char *bundle_files[] = {CA_FILE_BUNDLE_PEM, CA_FILE_BUNDLE_JSON};
    for (size_t i = 0; i < nitems(bundle_files); i++) {
        char path[300];
        snprintf(path, sizeof(path), "%.200s/%s", d->data_dir, bundle_files[i]);
        d->bundle_fds[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (d->bundle_fds[i] < 0) {
            weft_log(WEFT_LOG_WARN, "cannot keep this copy of the bundle current", 2, "file", path,
                     "error", strerror(errno));
        }
    }
    int listen_fd = listen_tcp(o->listen, err, sizeof(err));
    if (listen_fd < 0) {
        rc = fail("--listen", err);
        goto out;
    }

    grpc_init();
    grpc_started = true;
    d->rpc = rpc_server_new();
    grpc_arg max_msg = {.type = GRPC_ARG_INTEGER,
                        .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                        .value.integer = CA_DIR_MAX_REPORT * (CA_DIR_ADDR_MAX + 300)};
    grpc_channel_args args = {.num_args = 1, .args = &max_msg};
    grpc_server *ca_gs = grpc_server_create(&args, NULL);
    grpc_server *admin_gs = grpc_server_create(&args, NULL);
    char target[1200];
    snprintf(target, sizeof(target), "unix:%s", o->admin_socket);
    unlink(o->admin_socket); /* a stale socket from a crash */
    mode_t old = umask(0177);
    grpc_server_credentials *insecure = grpc_insecure_server_credentials_create();
    int bound = grpc_server_add_http2_port(admin_gs, target, insecure);
    grpc_server_credentials_release(insecure);
    umask(old);
    struct rpc_service ca_svc = {ca_methods, nitems(ca_methods), d, true};
    struct rpc_service admin_svc = {admin_methods, nitems(admin_methods), d, false};
    if (rpc_server_add(d->rpc, ca_gs, &ca_svc) != WEFT_OK ||
        rpc_server_add(d->rpc, admin_gs, &admin_svc) != WEFT_OK) {
        close(listen_fd);
        rc = fail("gRPC", "cannot register the services");
        goto out;
    }
    if (bound == 0) {
        close(listen_fd);
        snprintf(err, sizeof(err), "cannot listen on %s", o->admin_socket);
        rc = fail("--admin-socket", err);
        goto out;
    }
    if (rpc_server_start(d->rpc) != WEFT_OK ||
        admin_socket_mode(o->admin_socket, o->admin_group, err, sizeof(err)) != WEFT_OK) {
        close(listen_fd);
        rc = fail("--admin-socket", err);
        goto out;
    }
    d->fds = grpcfd_server_new(ca_gs);

    if (o->http != NULL && o->http[0] != '\0') {
        struct httpadmin_config hc = {
            .listen = o->http,
            .metrics = d->m.reg,
            .ready = is_ready,
            .ready_arg = d,
        };
        if (httpadmin_start(&d->http, &hc, err, sizeof(err)) != WEFT_OK) {
            close(listen_fd);
            rc = fail("--http", err);
            goto out;
        }
    }
    if (drop_privileges(o->run_as != NULL ? o->run_as : "nobody", err, sizeof(err)) != WEFT_OK) {
        close(listen_fd);
        rc = fail("--user", err);
        goto out;
    }

    struct tls_relay_config rcfg = {.max_conns = o->max_conns};
    if (tls_relay_new(&d->relay, &rcfg) != WEFT_OK) {
        close(listen_fd);
        rc = fail("TLS", "cannot start the relay");
        goto out;
    }
    int64_t now = now_s();
    if (serving_renew(d, now, err, sizeof(err)) != WEFT_OK) {
        close(listen_fd);
        rc = fail("serving SVID", err);
        goto out;
    }
    struct tls_relay_creds creds = {d->serving_chain, d->serving_key, &d->bundles};
    struct tls_relay_server_ops ops = {
        .on_peer = relay_on_peer,
        .authorize = relay_authorize, /* reads only the trust domain, fixed after start */
        .on_refused = relay_refused,
        .arg = d,
        .client_cert_optional = true,
    };
    if (tls_relay_listen(d->relay, listen_fd, &creds, &ops) != WEFT_OK) {
        rc = fail("TLS", "the relay refused the serving SVID");
        goto out;
    }

    d->dir = ca_directory_new(MAX_DIRECTORY, MAX_DIRECTORY_PER_NODE,
                              o->directory_ttl_s ? o->directory_ttl_s : DEFAULT_DIRECTORY_TTL_S,
                              may_serve, d);
    if (o->policy_kube) {
        /* After the fork of the signer and the drop of root: the watchers are threads, and
         * they read the token file as the user the CA runs as. */
        struct ca_kube_config kc = {
            .api_url = o->kube_api,
            .token_file = o->kube_token_file,
            .ca_file = o->kube_ca_file,
        };
        char url[300];
        if (ca_kube_config_in_cluster(&kc, url, sizeof(url), err, sizeof(err)) != WEFT_OK ||
            (d->policy = ca_policy_source_new_kube(&kc, err, sizeof(err))) == NULL) {
            rc = fail("--policy-source kubernetes", err);
            goto out;
        }
        weft_log(WEFT_LOG_INFO, "policy from the kubernetes api", 3, "api", kc.api_url,
                 "token_file", kc.token_file != NULL ? kc.token_file : "(none)", "ca_file",
                 kc.ca_file != NULL ? kc.ca_file : "(system)");
    } else if (o->policy_dir != NULL) {
        /* The first look, as the user the CA now runs as: a directory or file it may not read
         * would otherwise serve an empty or partial policy set without a word. */
        d->policy = ca_policy_source_new(o->policy_dir);
        if (ca_policy_source_poll(d->policy) == WEFT_EIO) {
            rc = fail("--policy-dir", ca_policy_source_error(d->policy));
            goto out;
        }
    }
    /* no SVID outlives the intermediate it was signed by (the signer caps it) */
    int64_t longest = d->int_lifetime_max;
    struct ca_root_rot_config rr = {
        .workload_max_ttl_s = longest < CA_MAX_SVID_TTL_S ? longest : CA_MAX_SVID_TTL_S,
        .node_ttl_s = longest < o->node_ttl_s ? longest : o->node_ttl_s,
        .reconnect_grace_s = o->reconnect_grace_s,
        .on_phase = on_phase,
        .arg = d,
    };
    if ((have_state == WEFT_OK
             ? ca_root_rot_restore(&d->rot, &rr, &rot_state, now, err, sizeof(err))
             : ca_root_rot_new(&d->rot, &rr, 1, now, err, sizeof(err))) != WEFT_OK) {
        rc = fail("root rotation", err);
        goto out;
    }
    d->snapshot_seq = 1;
    /* the JWT-SVID keys: a new one, with the previous process's published beside it. Either
     * way the bundle changed: the state is stored (which heals bundle.pem after a crash
     * mid-write) */
    if (jwt_start(d, now, err, sizeof(err)) != WEFT_OK) {
        rc = fail("JWT-SVID key", err);
        goto out;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)ca_signer_pid(d->signer));
    weft_log(WEFT_LOG_INFO, "weft-ca serving", 5, "trust_domain", d->td.str, "listen", o->listen,
             "admin_socket", o->admin_socket, "http", o->http, "signer_pid", pid);

    int64_t next_policy_ms = 0;
    while (atomic_load(&stop_signal) == 0 && !d->fatal) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        tick(d, &next_policy_ms, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        push_all(d, false); /* what the tick or the handlers changed */
        rpc_server_poll(d->rpc, TICK_MS);
    }
    weft_log(WEFT_LOG_INFO, "weft-ca stopping", 0);
    rc = d->fatal ? 1 : 0;
out:
    daemon_free(d);
    if (grpc_started) {
        grpc_shutdown();
    }
    return rc;
}
