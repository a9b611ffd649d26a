/* The signer child and the parent's side of its channel. Messages are fixed-size structs over a
 * SOCK_SEQPACKET socketpair: one datagram per message, its size checked against the table
 * before any field is read (relayd's IMSG_SIZE_CHECK). */
#include "ca/signer.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "lib/base/file.h"
#include "lib/base/mem.h"
#include "lib/spiffe/x509svid.h"

enum msg_type {
    MSG_READY = 1,     /* child -> parent, once: the key is loaded (or why not) */
    MSG_SIGN_LEAF = 2, /* parent -> child */
    MSG_REPLY = 3,     /* child -> parent */
};

struct msg_hdr {
    uint32_t type;
};

struct msg_sign_leaf {
    struct msg_hdr hdr;
    uint32_t pubkey_len;
    uint8_t pubkey[CA_SIGNER_MAX_PUBKEY];
    char spiffe_id[SPIFFE_ID_MAX_LEN + 1];
    int64_t not_before;
    int64_t ttl_s;
    uint32_t serial_len;
    uint8_t serial[SPIFFE_SERIAL_MAX_LEN];
};

struct msg_reply {
    struct msg_hdr hdr;
    int32_t rc;
    char err[256];
    uint32_t der_len;
    uint8_t der[CA_SIGNER_MAX_CERT];
};

struct ca_signer {
    int fd;
    pid_t pid;
};

/* --- the child ---------------------------------------------------------------------------- */

struct child {
    X509 *cert;
    EVP_PKEY *key;
    struct spiffe_id td;
    int64_t min_ttl_s, max_ttl_s;
};

static void reply(int fd, int rc, const uint8_t *der, size_t der_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void reply(int fd, int rc, const uint8_t *der, size_t der_len, const char *fmt, ...)
{
    struct msg_reply *r = weft_xcalloc(1, sizeof(*r));
    r->hdr.type = MSG_REPLY;
    r->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    if (der != NULL && der_len <= sizeof(r->der)) {
        memcpy(r->der, der, der_len);
        r->der_len = (uint32_t)der_len;
    }
    ssize_t n;
    do {
        n = send(fd, r, sizeof(*r), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    free(r);
}

static void handle_sign_leaf(struct child *c, int fd, const struct msg_sign_leaf *m)
{
    /* Every field is checked here again: the signer trusts no caller. */
    if (m->pubkey_len == 0 || m->pubkey_len > sizeof(m->pubkey) ||
        m->serial_len > sizeof(m->serial) ||
        memchr(m->spiffe_id, '\0', sizeof(m->spiffe_id)) == NULL) {
        reply(fd, WEFT_EPROTO, NULL, 0, "malformed sign request");
        return;
    }
    struct spiffe_id id;
    struct spiffe_why why;
    if (spiffe_id_parse(&id, m->spiffe_id, strlen(m->spiffe_id), &why) != WEFT_OK) {
        reply(fd, WEFT_EINVAL, NULL, 0, "%s", why.msg);
        return;
    }
    if (!spiffe_id_same_td(&id, &c->td) || spiffe_id_is_td(&id)) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "%.200s is not a workload or node ID of %s", id.str,
              c->td.str);
        return;
    }
    /* 0 .. 9999-12-31: notBefore + TTL cannot overflow, and fits an X.509 time */
    if (m->not_before < 0 || m->not_before > INT64_C(253402300799) - c->max_ttl_s) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "notBefore %lld is out of range",
              (long long)m->not_before);
        return;
    }
    if (m->ttl_s < c->min_ttl_s || m->ttl_s > c->max_ttl_s) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "TTL %llds is outside %llds..%llds", (long long)m->ttl_s,
              (long long)c->min_ttl_s, (long long)c->max_ttl_s);
        return;
    }
    CBS cbs;
    CBS_init(&cbs, m->pubkey, m->pubkey_len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    ERR_clear_error();
    if (pub == NULL || CBS_len(&cbs) != 0) {
        EVP_PKEY_free(pub);
        reply(fd, WEFT_EINVAL, NULL, 0, "the public key is not a DER SubjectPublicKeyInfo");
        return;
    }
    struct spiffe_mint_params p = {
        .not_before = m->not_before, .ttl_s = m->ttl_s, .serial_len = m->serial_len};
    memcpy(p.serial, m->serial, m->serial_len);
    X509 *leaf = NULL;
    int rc = spiffe_mint_leaf(&leaf, c->cert, c->key, pub, &id, &p, &why);
    EVP_PKEY_free(pub);
    if (rc != WEFT_OK) {
        reply(fd, rc, NULL, 0, "%s", why.msg);
        return;
    }
    uint8_t *der = NULL;
    int len = i2d_X509(leaf, &der);
    X509_free(leaf);
    if (len <= 0 || (size_t)len > CA_SIGNER_MAX_CERT) {
        OPENSSL_free(der);
        reply(fd, WEFT_EINTERNAL, NULL, 0, "the certificate does not fit a reply");
        return;
    }
    reply(fd, WEFT_OK, der, (size_t)len, "ok");
    OPENSSL_free(der);
}

/* close_other_fds leaves only stdin/out/err and |keep| open: nothing the parent held (sockets,
 * the store) reaches the key holder. */
static void close_other_fds(int keep)
{
    if (keep > 3) {
        close_range(3, (unsigned)keep - 1, 0);
    }
    close_range((unsigned)keep + 1, ~0u, 0);
}

static int load_credentials(struct child *c, const struct ca_signer_config *cfg, char *err,
                            size_t err_len)
{
    uint8_t *data;
    size_t len;
    struct spiffe_why why;
    STACK_OF(X509) *certs = NULL;
    if (weft_file_read(&data, &len, cfg->cert_path, SPIFFE_MAX_PEM_INPUT) != WEFT_OK) {
        snprintf(err, err_len, "cannot read %s: %s", cfg->cert_path, strerror(errno));
        return WEFT_EIO;
    }
    int rc = spiffe_certs_decode(&certs, data, len, SPIFFE_MAX_CHAIN, 0, &why);
    free(data);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.100s: %.150s", cfg->cert_path, why.msg);
        return rc;
    }
    c->cert = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    if (weft_file_read(&data, &len, cfg->key_path, SPIFFE_MAX_PEM_INPUT) != WEFT_OK) {
        snprintf(err, err_len, "cannot read %s: %s", cfg->key_path, strerror(errno));
        return WEFT_EIO;
    }
    rc = spiffe_key_decode(&c->key, data, len, &why);
    OPENSSL_cleanse(data, len);
    free(data);
    if (rc == WEFT_OK) {
        rc = spiffe_x509svid_check_key(c->cert, c->key, &why);
    }
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.100s: %.150s", cfg->key_path, why.msg);
        return rc;
    }
    struct spiffe_id ca_id;
    if (spiffe_cert_uri_id(&ca_id, c->cert, &why) != WEFT_OK || !spiffe_id_is_td(&ca_id)) {
        snprintf(err, err_len, "%s: the signing CA must carry its trust domain's ID (spiffe://TD)",
                 cfg->cert_path);
        return WEFT_EINVAL;
    }
    c->td = ca_id;
    return WEFT_OK;
}

static int drop_privileges(const struct ca_signer_config *cfg, char *err, size_t err_len)
{
    if (geteuid() == 0) {
        uid_t uid = cfg->run_as_uid != 0 ? cfg->run_as_uid : 65534;
        gid_t gid = cfg->run_as_gid != 0 ? cfg->run_as_gid : 65534;
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0) {
            snprintf(err, err_len, "cannot drop privileges to %u:%u: %s", uid, gid,
                     strerror(errno));
            return WEFT_EIO;
        }
    }
    /* no core dumps or ptrace of the key holder, and no way back up */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, err_len, "prctl: %s", strerror(errno));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

static void child_main(int fd, const struct ca_signer_config *cfg)
{
    struct child c = {.min_ttl_s = cfg->min_ttl_s ? cfg->min_ttl_s : 5 * 60,
                      .max_ttl_s = cfg->max_ttl_s ? cfg->max_ttl_s : 24 * 3600};
    char err[256] = "";
    signal(SIGINT, SIG_IGN); /* the parent decides when the signer ends: it closes the channel */
    signal(SIGTERM, SIG_IGN);
    close_other_fds(fd);
    int rc = load_credentials(&c, cfg, err, sizeof(err));
    if (rc == WEFT_OK) {
        rc = drop_privileges(cfg, err, sizeof(err));
    }
    reply(fd, rc, NULL, 0, "%s", err);
    if (rc != WEFT_OK) {
        _exit(1);
    }
    struct msg_sign_leaf *m = weft_xmalloc(sizeof(*m) + 1);
    for (;;) {
        /* one byte more than the largest message: a longer datagram shows up as too long */
        ssize_t n = recv(fd, m, sizeof(*m) + 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* the parent closed the channel: stop */
        }
        if ((size_t)n < sizeof(struct msg_hdr)) {
            reply(fd, WEFT_EPROTO, NULL, 0, "short message");
            continue;
        }
        if (m->hdr.type == MSG_SIGN_LEAF && (size_t)n == sizeof(*m)) {
            handle_sign_leaf(&c, fd, m);
        } else {
            reply(fd, WEFT_EPROTO, NULL, 0, "message type %u of %zd bytes is not one I take",
                  m->hdr.type, n);
        }
    }
    free(m);
    EVP_PKEY_free(c.key);
    X509_free(c.cert);
    _exit(0);
}

/* --- the parent --------------------------------------------------------------------------- */

static int read_reply(int fd, struct msg_reply *r, char *err, size_t err_len)
{
    ssize_t n;
    do {
        n = recv(fd, r, sizeof(*r), 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(*r) || r->hdr.type != MSG_REPLY || r->der_len > sizeof(r->der)) {
        snprintf(err, err_len, "the signer is gone or answered nonsense (%zd bytes)", n);
        return WEFT_EPROTO;
    }
    r->err[sizeof(r->err) - 1] = '\0';
    return WEFT_OK;
}

int ca_signer_start(struct ca_signer **out, const struct ca_signer_config *cfg, char *err,
                    size_t err_len)
{
    *out = NULL;
    struct stat st;
    if (stat(cfg->key_path, &st) != 0) {
        snprintf(err, err_len, "key file %s: %s", cfg->key_path, strerror(errno));
        return WEFT_EIO;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, err_len,
                 "key file %s is readable by group or others (mode %04o): refusing to use it; "
                 "chmod 600 it",
                 cfg->key_path, (unsigned)(st.st_mode & 07777));
        return WEFT_EPOLICY;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, err_len, "socketpair: %s", strerror(errno));
        return WEFT_EIO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, err_len, "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return WEFT_EIO;
    }
    if (pid == 0) {
        close(sv[0]);
        child_main(sv[1], cfg);
    }
    close(sv[1]);
    struct ca_signer *s = weft_xcalloc(1, sizeof(*s));
    s->fd = sv[0];
    s->pid = pid;
    struct msg_reply *r = weft_xmalloc(sizeof(*r));
    int rc = read_reply(s->fd, r, err, err_len);
    if (rc == WEFT_OK && r->rc != WEFT_OK) {
        snprintf(err, err_len, "signer: %s", r->err);
        rc = r->rc;
    }
    free(r);
    if (rc != WEFT_OK) {
        ca_signer_stop(s);
        return rc;
    }
    *out = s;
    return WEFT_OK;
}

int ca_signer_sign_leaf(struct ca_signer *s, const struct ca_signer_request *req, uint8_t *out,
                        size_t cap, size_t *out_len, char *err, size_t err_len)
{
    if (req->pubkey_len == 0 || req->pubkey_len > CA_SIGNER_MAX_PUBKEY ||
        strlen(req->spiffe_id) > SPIFFE_ID_MAX_LEN || req->serial_len > SPIFFE_SERIAL_MAX_LEN) {
        snprintf(err, err_len, "sign request over a limit (key %zu bytes, serial %zu bytes)",
                 req->pubkey_len, req->serial_len);
        return WEFT_ELIMIT;
    }
    struct msg_sign_leaf *m = weft_xcalloc(1, sizeof(*m));
    m->hdr.type = MSG_SIGN_LEAF;
    m->pubkey_len = (uint32_t)req->pubkey_len;
    memcpy(m->pubkey, req->pubkey_der, req->pubkey_len);
    snprintf(m->spiffe_id, sizeof(m->spiffe_id), "%s", req->spiffe_id);
    m->not_before = req->not_before;
    m->ttl_s = req->ttl_s;
    m->serial_len = (uint32_t)(req->serial != NULL ? req->serial_len : 0);
    if (m->serial_len > 0) {
        memcpy(m->serial, req->serial, m->serial_len);
    }
    ssize_t n;
    do {
        n = send(s->fd, m, sizeof(*m), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    free(m);
    if (n != (ssize_t)sizeof(struct msg_sign_leaf)) {
        snprintf(err, err_len, "the signer is gone: %s", strerror(errno));
        return WEFT_EIO;
    }
    struct msg_reply *r = weft_xmalloc(sizeof(*r));
    int rc = read_reply(s->fd, r, err, err_len);
    if (rc == WEFT_OK && r->rc != WEFT_OK) {
        snprintf(err, err_len, "%s", r->err);
        rc = r->rc;
    } else if (rc == WEFT_OK && r->der_len > cap) {
        snprintf(err, err_len, "the certificate (%u bytes) does not fit the buffer", r->der_len);
        rc = WEFT_ELIMIT;
    } else if (rc == WEFT_OK) {
        memcpy(out, r->der, r->der_len);
        *out_len = r->der_len;
    }
    free(r);
    return rc;
}

pid_t ca_signer_pid(const struct ca_signer *s) { return s->pid; }

void ca_signer_stop(struct ca_signer *s)
{
    if (s == NULL) {
        return;
    }
    close(s->fd);
    int status;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
    free(s);
}
