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
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/spiffe/x509svid.h"

enum msg_type {
    MSG_SIGN_LEAF = 2,         /* parent -> child: struct msg_sign_leaf */
    MSG_REPLY = 3,             /* child -> parent, for every request and once at start */
    MSG_MINT_INTERMEDIATE = 4, /* parent -> child: struct msg_ca_op, and the three below */
    MSG_ACTIVATE = 5,
    MSG_NEW_ROOT = 6,
    MSG_DROP_ROOT = 7,
    MSG_JWT_NEW_KEY = 8,  /* parent -> child: struct msg_jwt_key */
    MSG_JWT_ACTIVATE = 9, /* parent -> child: struct msg_jwt_key (not_after unused) */
    MSG_SIGN_JWT = 10,    /* parent -> child: struct msg_sign_jwt */
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

struct msg_ca_op {
    struct msg_hdr hdr;
    uint32_t slot;
    uint32_t key_type;
    int64_t not_before;
    int64_t ttl_s;
};

struct msg_jwt_key {
    struct msg_hdr hdr;
    int64_t not_after;
};

/* Strings are NUL-terminated inside their arrays; the child checks that before reading one. */
struct msg_sign_jwt {
    struct msg_hdr hdr;
    char spiffe_id[SPIFFE_ID_MAX_LEN + 1];
    uint32_t num_audience;
    char audience[SPIFFE_JWT_MAX_AUDIENCES][SPIFFE_JWT_MAX_AUDIENCE + 1];
    int64_t iat;
    int64_t exp;
};

/* Every reply also says what the signer holds now (struct ca_signer_info). */
struct msg_reply {
    struct msg_hdr hdr;
    int32_t rc;
    char err[256];
    uint32_t der_len;
    uint8_t der[CA_SIGNER_MAX_CERT];
    int32_t int_slot;
    uint32_t slot_keys, slot_roots; /* bit i: slot i */
    uint32_t int_len;
    uint8_t intermediate[CA_SIGNER_MAX_CERT];
    uint32_t jwt_key_len, jwt_next_len;
    uint8_t jwt_key[CA_SIGNER_MAX_PUBKEY];
    uint8_t jwt_next[CA_SIGNER_MAX_PUBKEY];
    int64_t jwt_key_not_after, jwt_next_not_after;
    uint32_t token_len; /* a signed JWT-SVID, not NUL-terminated here */
    char token[SPIFFE_JWT_MAX_TOKEN];
};

struct ca_signer {
    int fd;
    pid_t pid;
    struct ca_signer_info info;
};

/* --- the child ---------------------------------------------------------------------------- */

struct root_slot {
    int fd; /* the slot file, opened before the privileges went */
    bool writable;
    EVP_PKEY *key;
    X509 *cert; /* the root |key| is the key of; NULL when the signer knows none */
};

struct child {
    X509 *cert; /* the intermediate leaves are signed by, and its key */
    EVP_PKEY *key;
    int cert_slot; /* the root slot it is under; -1: loaded from the intermediate files */
    X509 *next;    /* the prepared successor, and its key */
    EVP_PKEY *next_key;
    int next_slot;
    struct root_slot slots[CA_SIGNER_SLOTS];
    struct spiffe_id td;
    int64_t min_ttl_s, max_ttl_s;
    /* the JWT-SVID key tokens are signed with, and its prepared successor */
    EVP_PKEY *jwt_key;
    char jwt_kid[SPIFFE_JWT_KID_LEN + 1];
    int64_t jwt_not_after;
    EVP_PKEY *jwt_next;
    int64_t jwt_next_not_after;
    int64_t jwt_min_ttl_s, jwt_max_ttl_s;
};

static struct child *the_child; /* what reply() reports */

static void reply(int fd, int rc, const uint8_t *der, size_t der_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* spki_of writes |key|'s DER SubjectPublicKeyInfo into |out|; returns its length, 0 when there
 * is no key or it does not fit. */
static size_t spki_of(const EVP_PKEY *key, uint8_t *out, size_t cap)
{
    CBB cbb;
    CBB_zero(&cbb);
    size_t len = 0;
    if (key == NULL || !CBB_init_fixed(&cbb, out, cap) ||
        !EVP_marshal_public_key(&cbb, (EVP_PKEY *)key) || !CBB_finish(&cbb, NULL, &len)) {
        CBB_cleanup(&cbb);
        return 0;
    }
    return len;
}

/* send_reply adds what the signer holds now to |r|, sends it and frees it. */
static void send_reply(int fd, struct msg_reply *r);

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
    send_reply(fd, r);
}

/* reply_token answers a JWT-SVID request with the token (|len| <= SPIFFE_JWT_MAX_TOKEN). */
static void reply_token(int fd, const char *token, size_t len)
{
    struct msg_reply *r = weft_xcalloc(1, sizeof(*r));
    r->hdr.type = MSG_REPLY;
    r->rc = WEFT_OK;
    snprintf(r->err, sizeof(r->err), "ok");
    memcpy(r->token, token, len);
    r->token_len = (uint32_t)len;
    send_reply(fd, r);
}

static void send_reply(int fd, struct msg_reply *r)
{
    const struct child *c = the_child;
    r->int_slot = c->cert_slot;
    for (unsigned i = 0; i < CA_SIGNER_SLOTS; i++) {
        r->slot_keys |= (c->slots[i].key != NULL) << i;
        r->slot_roots |= (c->slots[i].cert != NULL) << i;
    }
    uint8_t *p = r->intermediate;
    int len = c->cert != NULL ? i2d_X509(c->cert, NULL) : 0;
    if (len > 0 && (size_t)len <= sizeof(r->intermediate) && i2d_X509(c->cert, &p) == len) {
        r->int_len = (uint32_t)len;
    }
    r->jwt_key_len = (uint32_t)spki_of(c->jwt_key, r->jwt_key, sizeof(r->jwt_key));
    r->jwt_key_not_after = c->jwt_not_after;
    r->jwt_next_len = (uint32_t)spki_of(c->jwt_next, r->jwt_next, sizeof(r->jwt_next));
    r->jwt_next_not_after = c->jwt_next_not_after;
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

/* cert_der encodes |x| into a malloc'd buffer, or returns NULL when it does not fit a reply. */
static uint8_t *cert_der(X509 *x, size_t *len)
{
    uint8_t *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0 || (size_t)n > CA_SIGNER_MAX_CERT) {
        OPENSSL_free(der);
        return NULL;
    }
    *len = (size_t)n;
    return der;
}

static void reply_cert(int fd, X509 *x)
{
    size_t len;
    uint8_t *der = cert_der(x, &len);
    if (der == NULL) {
        reply(fd, WEFT_EINTERNAL, NULL, 0, "the certificate does not fit a reply");
        return;
    }
    reply(fd, WEFT_OK, der, len, "ok");
    OPENSSL_free(der);
}

/* key_type_of: an intermediate's key is of its root's type. */
static enum spiffe_key_type key_type_of(const EVP_PKEY *key)
{
    return EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? SPIFFE_KEY_ED25519 : SPIFFE_KEY_EC_P256;
}

/* times_ok: 0 .. 9999-12-31 for a CA's window, so notBefore + TTL cannot overflow. */
static bool times_ok(int64_t not_before, int64_t ttl_s)
{
    return not_before >= 0 && ttl_s > 0 && ttl_s <= INT64_C(100) * 366 * 86400 &&
           not_before <= INT64_C(253402300799) - ttl_s;
}

static void handle_mint_intermediate(struct child *c, int fd, const struct msg_ca_op *m)
{
    if (m->slot >= CA_SIGNER_SLOTS || c->slots[m->slot].cert == NULL) {
        reply(fd, WEFT_ENOTFOUND, NULL, 0, "root slot %u holds no root key", m->slot);
        return;
    }
    if (!times_ok(m->not_before, m->ttl_s)) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "intermediate window out of range");
        return;
    }
    struct root_slot *r = &c->slots[m->slot];
    EVP_PKEY *key = spiffe_key_generate(key_type_of(r->key));
    struct spiffe_mint_params p = {.not_before = m->not_before, .ttl_s = m->ttl_s};
    X509 *x = NULL;
    struct spiffe_why why;
    spiffe_why_clear(&why);
    if (key == NULL ||
        spiffe_mint_signing_ca(&x, r->cert, r->key, key, &c->td, &p, &why) != WEFT_OK) {
        EVP_PKEY_free(key);
        reply(fd, WEFT_ECRYPTO, NULL, 0, "cannot mint an intermediate: %s", why.msg);
        return;
    }
    X509_free(c->next);
    EVP_PKEY_free(c->next_key);
    c->next = x;
    c->next_key = key;
    c->next_slot = (int)m->slot;
    reply_cert(fd, x);
}

static void handle_activate(struct child *c, int fd)
{
    if (c->next == NULL) {
        reply(fd, WEFT_ENOTFOUND, NULL, 0, "no intermediate is prepared");
        return;
    }
    X509_free(c->cert);
    EVP_PKEY_free(c->key); /* BoringSSL clears a freed key's memory */
    c->cert = c->next;
    c->key = c->next_key;
    c->cert_slot = c->next_slot;
    c->next = NULL;
    c->next_key = NULL;
    c->next_slot = -1;
    reply_cert(fd, c->cert);
}

/* slot_in_use: the slot of the root the current or prepared intermediate is under. */
static bool slot_in_use(const struct child *c, unsigned slot)
{
    return c->cert_slot == (int)slot || (c->next != NULL && c->next_slot == (int)slot);
}

/* slot_write replaces a slot file's content, durably. */
static int slot_write(int fd, const void *data, size_t len)
{
    if (ftruncate(fd, 0) != 0) {
        return WEFT_EIO;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = pwrite(fd, (const uint8_t *)data + off, len - off, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return WEFT_EIO;
        }
        off += (size_t)n;
    }
    return fsync(fd) == 0 ? WEFT_OK : WEFT_EIO;
}

/* spare_slot: |m| names a slot that exists and holds no root in use (the current or the
 * prepared intermediate's); otherwise the refusal is replied and it returns false. */
static bool spare_slot(const struct child *c, int fd, const struct msg_ca_op *m)
{
    if (m->slot >= CA_SIGNER_SLOTS || c->slots[m->slot].fd < 0) {
        reply(fd, WEFT_EINVAL, NULL, 0, "no root slot %u", m->slot);
        return false;
    }
    if (slot_in_use(c, m->slot)) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "root slot %u holds the root in use", m->slot);
        return false;
    }
    return true;
}

static void handle_new_root(struct child *c, int fd, const struct msg_ca_op *m)
{
    if (!spare_slot(c, fd, m)) {
        return;
    }
    if (!c->slots[m->slot].writable) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "root slot %u is read-only: let the CA write it", m->slot);
        return;
    }
    if (!times_ok(m->not_before, m->ttl_s)) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "root window out of range");
        return;
    }
    EVP_PKEY *key = spiffe_key_generate((enum spiffe_key_type)m->key_type);
    struct spiffe_mint_params p = {.not_before = m->not_before, .ttl_s = m->ttl_s};
    X509 *x = NULL;
    struct spiffe_why why;
    spiffe_why_clear(&why);
    char *pem = NULL;
    size_t len = 0;
    if (key == NULL || spiffe_mint_root(&x, key, &c->td, &p, &why) != WEFT_OK ||
        spiffe_key_to_pem(&pem, &len, key) != WEFT_OK) {
        EVP_PKEY_free(key);
        X509_free(x);
        reply(fd, WEFT_ECRYPTO, NULL, 0, "cannot mint a root: %s", why.msg);
        return;
    }
    struct root_slot *r = &c->slots[m->slot];
    int rc = slot_write(r->fd, pem, len);
    int e = errno;
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (rc != WEFT_OK) {
        EVP_PKEY_free(key);
        X509_free(x);
        reply(fd, rc, NULL, 0, "cannot write root slot %u: %s", m->slot, strerror(e));
        return;
    }
    EVP_PKEY_free(r->key);
    X509_free(r->cert);
    r->key = key;
    r->cert = x;
    reply_cert(fd, x);
}

static void handle_drop_root(struct child *c, int fd, const struct msg_ca_op *m)
{
    if (!spare_slot(c, fd, m)) {
        return;
    }
    struct root_slot *r = &c->slots[m->slot];
    if (slot_write(r->fd, NULL, 0) != WEFT_OK) {
        reply(fd, WEFT_EIO, NULL, 0, "cannot empty root slot %u: %s", m->slot, strerror(errno));
        return;
    }
    EVP_PKEY_free(r->key);
    X509_free(r->cert);
    r->key = NULL;
    r->cert = NULL;
    reply(fd, WEFT_OK, NULL, 0, "ok");
}

/* --- JWT-SVIDs ------------------------------------------------------------------------------ */

static void handle_jwt_new_key(struct child *c, int fd, const struct msg_jwt_key *m)
{
    int64_t now = (int64_t)time(NULL);
    if (m->not_after <= now || m->not_after - now > INT64_C(100) * 366 * 86400) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "a JWT key's not_after %lld is not ahead of now (%lld)",
              (long long)m->not_after, (long long)now);
        return;
    }
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    uint8_t spki[CA_SIGNER_MAX_PUBKEY];
    size_t len = key != NULL ? spki_of(key, spki, sizeof(spki)) : 0;
    if (len == 0) {
        EVP_PKEY_free(key);
        reply(fd, WEFT_ECRYPTO, NULL, 0, "cannot make a JWT key");
        return;
    }
    EVP_PKEY_free(c->jwt_next); /* BoringSSL clears a freed key's memory */
    c->jwt_next = key;
    c->jwt_next_not_after = m->not_after;
    reply(fd, WEFT_OK, spki, len, "ok");
}

static void handle_jwt_activate(struct child *c, int fd)
{
    if (c->jwt_next == NULL) {
        reply(fd, WEFT_ENOTFOUND, NULL, 0, "no JWT key is prepared");
        return;
    }
    char kid[SPIFFE_JWT_KID_LEN + 1];
    if (spiffe_jwt_kid(c->jwt_next, kid) != WEFT_OK) {
        reply(fd, WEFT_ECRYPTO, NULL, 0, "cannot name the prepared JWT key");
        return;
    }
    EVP_PKEY_free(c->jwt_key);
    c->jwt_key = c->jwt_next;
    c->jwt_not_after = c->jwt_next_not_after;
    memcpy(c->jwt_kid, kid, sizeof(kid));
    c->jwt_next = NULL;
    c->jwt_next_not_after = 0;
    reply(fd, WEFT_OK, NULL, 0, "ok");
}

/* string_in: |s| is NUL-terminated within its |cap| bytes; its length goes to |*len|. */
static bool string_in(const char *s, size_t cap, size_t *len)
{
    const char *nul = memchr(s, '\0', cap);
    if (nul == NULL) {
        return false;
    }
    *len = (size_t)(nul - s);
    return true;
}

static void handle_sign_jwt(struct child *c, int fd, const struct msg_sign_jwt *m)
{
    /* Every field is checked here again: the signer trusts no caller. */
    size_t id_len;
    if (!string_in(m->spiffe_id, sizeof(m->spiffe_id), &id_len) || m->num_audience == 0 ||
        m->num_audience > SPIFFE_JWT_MAX_AUDIENCES) {
        reply(fd, WEFT_EINVAL, NULL, 0, "malformed JWT-SVID request (%u audiences; 1 to %d)",
              m->num_audience, SPIFFE_JWT_MAX_AUDIENCES);
        return;
    }
    const char *aud[SPIFFE_JWT_MAX_AUDIENCES];
    for (uint32_t i = 0; i < m->num_audience; i++) {
        size_t len;
        if (!string_in(m->audience[i], sizeof(m->audience[i]), &len) || len == 0) {
            reply(fd, WEFT_EINVAL, NULL, 0, "audience %u is empty or not terminated", i + 1);
            return;
        }
        aud[i] = m->audience[i];
    }
    struct spiffe_id id;
    struct spiffe_why why;
    if (spiffe_id_parse(&id, m->spiffe_id, id_len, &why) != WEFT_OK) {
        reply(fd, WEFT_EINVAL, NULL, 0, "%s", why.msg);
        return;
    }
    if (!spiffe_id_same_td(&id, &c->td) || spiffe_id_is_td(&id)) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "%.200s is not a workload ID of %s", id.str, c->td.str);
        return;
    }
    if (c->jwt_key == NULL) {
        reply(fd, WEFT_ENOTFOUND, NULL, 0, "no JWT-SVID signing key is active");
        return;
    }
    /* iat is now (a caller's clock a little behind is fine; ahead is not: with no nbf claim a
     * postdated token would be valid at once, for longer than its lifetime) */
    int64_t now = (int64_t)time(NULL);
    if (m->iat > now || m->iat < now - CA_SIGNER_JWT_MAX_IAT_BACK_S) {
        reply(fd, WEFT_EPOLICY, NULL, 0, "iat %lld is not now (%lld)", (long long)m->iat,
              (long long)now);
        return;
    }
    if (m->exp < m->iat + c->jwt_min_ttl_s || m->exp > m->iat + c->jwt_max_ttl_s) {
        reply(fd, WEFT_EPOLICY, NULL, 0,
              "JWT-SVID lifetime (iat %lld, exp %lld) is outside %llds..%llds", (long long)m->iat,
              (long long)m->exp, (long long)c->jwt_min_ttl_s, (long long)c->jwt_max_ttl_s);
        return;
    }
    if (m->exp > c->jwt_not_after) {
        reply(fd, WEFT_EPOLICY, NULL, 0,
              "the JWT key %s is published only until %lld, before exp %lld: it must rotate",
              c->jwt_kid, (long long)c->jwt_not_after, (long long)m->exp);
        return;
    }
    struct spiffe_jwt_request req = {
        .sub = &id, .audience = aud, .num_audience = m->num_audience, .iat = m->iat, .exp = m->exp};
    char *token = NULL;
    spiffe_why_clear(&why);
    int rc = spiffe_jwt_sign(&token, &req, c->jwt_key, c->jwt_kid, &why);
    size_t len = token != NULL ? strlen(token) : 0;
    if (rc == WEFT_OK && len > SPIFFE_JWT_MAX_TOKEN) {
        rc = WEFT_ELIMIT;
        snprintf(why.msg, sizeof(why.msg), "the token would be over %d bytes",
                 SPIFFE_JWT_MAX_TOKEN);
    }
    if (rc != WEFT_OK) {
        free(token);
        reply(fd, rc, NULL, 0, "cannot sign the JWT-SVID: %s", why.msg);
        return;
    }
    reply_token(fd, token, len);
    free(token);
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

static int read_cert(X509 **out, const char *path, char *err, size_t err_len)
{
    uint8_t *data;
    size_t len;
    struct spiffe_why why;
    STACK_OF(X509) *certs = NULL;
    if (weft_file_read(&data, &len, path, SPIFFE_MAX_PEM_INPUT) != WEFT_OK) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
        return WEFT_EIO;
    }
    int rc = spiffe_certs_decode(&certs, data, len, SPIFFE_MAX_CHAIN, 0, &why);
    free(data);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.100s: %.150s", path, why.msg);
        return rc;
    }
    *out = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    return WEFT_OK;
}

/* read_key decodes the key in |fd| (from |path|); an empty file is no key (*out NULL). */
static int read_key(EVP_PKEY **out, int fd, const char *path, char *err, size_t err_len)
{
    *out = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size > SPIFFE_MAX_PEM_INPUT) {
        snprintf(err, err_len, "%s: unreadable or too large", path);
        return WEFT_EIO;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, err_len,
                 "key file %s is readable by group or others (mode %04o): refusing to use it; "
                 "chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
        return WEFT_EPOLICY;
    }
    if (st.st_size == 0) {
        return WEFT_OK;
    }
    uint8_t *data = weft_xmalloc((size_t)st.st_size);
    ssize_t n = pread(fd, data, (size_t)st.st_size, 0);
    struct spiffe_why why;
    int rc = n == st.st_size ? spiffe_key_decode(out, data, (size_t)n, &why) : WEFT_EIO;
    OPENSSL_cleanse(data, (size_t)st.st_size);
    free(data);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.100s: %.150s", path, n == st.st_size ? why.msg : "short read");
    }
    return rc;
}

/* open_key opens a slot file for reading and writing (made empty if missing), or for reading
 * only when that is all it allows (*writable false: no new root goes there). */
static int open_key(const char *path, bool *writable, char *err, size_t err_len)
{
    *writable = true;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) {
        *writable = false;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
    }
    return fd;
}

/* load_slots opens the root key slots and finds each key's root among |cfg->roots|. */
static int load_slots(struct child *c, const struct ca_signer_config *cfg, char *err,
                      size_t err_len)
{
    for (unsigned i = 0; i < CA_SIGNER_SLOTS; i++) {
        struct root_slot *r = &c->slots[i];
        r->fd = -1;
        if (cfg->root_key_paths[i] == NULL) {
            continue;
        }
        if ((r->fd = open_key(cfg->root_key_paths[i], &r->writable, err, err_len)) < 0) {
            return WEFT_EIO;
        }
        int rc = read_key(&r->key, r->fd, cfg->root_key_paths[i], err, err_len);
        if (rc == WEFT_EPOLICY || (rc != WEFT_OK && i == cfg->signing_slot)) {
            return rc; /* a key others may read, or the one we need */
        }
        if (rc != WEFT_OK) {
            /* a root rotation that stopped while writing it: the rotation writes it again */
            weft_log(WEFT_LOG_WARN, "ignoring an unreadable spare root key slot", 2, "file",
                     cfg->root_key_paths[i], "error", err);
            err[0] = '\0';
            continue;
        }
        struct spiffe_why why;
        for (size_t j = 0; r->key != NULL && j < sk_X509_num(cfg->roots); j++) {
            X509 *root = sk_X509_value(cfg->roots, j);
            if (spiffe_x509svid_check_key(root, r->key, &why) == WEFT_OK) {
                r->cert = X509_up_ref(root) ? root : NULL;
                break;
            }
        }
    }
    return WEFT_OK;
}

static int load_credentials(struct child *c, const struct ca_signer_config *cfg, char *err,
                            size_t err_len)
{
    TRY(load_slots(c, cfg, err, err_len));
    struct spiffe_why why;
    struct root_slot *r = cfg->signing_slot < CA_SIGNER_SLOTS ? &c->slots[cfg->signing_slot] : NULL;
    if (r != NULL && r->cert != NULL) {
        /* the root's key is here: a fresh intermediate whose key only this process holds */
        struct spiffe_id id;
        if (spiffe_cert_uri_id(&id, r->cert, &why) != WEFT_OK || !spiffe_id_is_td(&id)) {
            snprintf(err, err_len, "%s: the root must carry its trust domain's ID",
                     cfg->root_key_paths[cfg->signing_slot]);
            return WEFT_EINVAL;
        }
        c->td = id;
        /* valid a little back (a tenth of its life, at most a minute) for verifiers whose
         * clocks lag, and the full lifetime ahead */
        int64_t life = cfg->intermediate_ttl_s ? cfg->intermediate_ttl_s : 7 * 24 * 3600;
        int64_t back = life / 10 < 60 ? life / 10 : 60;
        struct msg_ca_op m = {.slot = cfg->signing_slot,
                              .not_before = (int64_t)time(NULL) - back,
                              .ttl_s = life + back};
        spiffe_why_clear(&why);
        c->key = spiffe_key_generate(key_type_of(r->key));
        struct spiffe_mint_params p = {.not_before = m.not_before, .ttl_s = m.ttl_s};
        if (c->key == NULL ||
            spiffe_mint_signing_ca(&c->cert, r->cert, r->key, c->key, &id, &p, &why) != WEFT_OK) {
            snprintf(err, err_len, "cannot mint the intermediate: %.200s", why.msg);
            return WEFT_ECRYPTO;
        }
        c->cert_slot = (int)cfg->signing_slot;
        return WEFT_OK;
    }
    TRY(read_cert(&c->cert, cfg->cert_path, err, err_len));
    int fd = open(cfg->key_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot read %s: %s", cfg->key_path, strerror(errno));
        return WEFT_EIO;
    }
    int rc = read_key(&c->key, fd, cfg->key_path, err, err_len);
    close(fd);
    TRY(rc);
    if (c->key == NULL) {
        snprintf(err, err_len, "%s is empty", cfg->key_path);
        return WEFT_EINVAL;
    }
    if (spiffe_x509svid_check_key(c->cert, c->key, &why) != WEFT_OK) {
        snprintf(err, err_len, "%.100s: %.150s", cfg->key_path, why.msg);
        return WEFT_EINVAL;
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

static void child_free(struct child *c)
{
    EVP_PKEY_free(c->key);
    X509_free(c->cert);
    EVP_PKEY_free(c->next_key);
    X509_free(c->next);
    for (unsigned i = 0; i < CA_SIGNER_SLOTS; i++) {
        EVP_PKEY_free(c->slots[i].key);
        X509_free(c->slots[i].cert);
    }
    EVP_PKEY_free(c->jwt_key);
    EVP_PKEY_free(c->jwt_next);
}

/* The largest request: the receive buffer is one byte more, so a longer datagram shows up as
 * too long. */
union msg_any {
    struct msg_hdr hdr;
    struct msg_sign_leaf sign;
    struct msg_ca_op op;
    struct msg_jwt_key jwt_key;
    struct msg_sign_jwt sign_jwt;
};

static void child_main(int fd, const struct ca_signer_config *cfg)
{
    static struct child c;
    int64_t jwt_max = cfg->jwt_max_ttl_s ? cfg->jwt_max_ttl_s : CA_SIGNER_JWT_MAX_TTL_S;
    c = (struct child){
        .min_ttl_s = cfg->min_ttl_s ? cfg->min_ttl_s : 5 * 60,
        .max_ttl_s = cfg->max_ttl_s ? cfg->max_ttl_s : 24 * 3600,
        .jwt_min_ttl_s = cfg->jwt_min_ttl_s ? cfg->jwt_min_ttl_s : CA_SIGNER_JWT_MIN_TTL_S,
        .jwt_max_ttl_s = jwt_max < CA_SIGNER_JWT_MAX_TTL_S ? jwt_max : CA_SIGNER_JWT_MAX_TTL_S,
        .cert_slot = -1,
        .next_slot = -1};
    the_child = &c;
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
    union msg_any *m = weft_xmalloc(sizeof(*m) + 1);
    for (;;) {
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
        uint32_t type = m->hdr.type;
        if (type == MSG_SIGN_LEAF && (size_t)n == sizeof(m->sign)) {
            handle_sign_leaf(&c, fd, &m->sign);
        } else if (type == MSG_MINT_INTERMEDIATE && (size_t)n == sizeof(m->op)) {
            handle_mint_intermediate(&c, fd, &m->op);
        } else if (type == MSG_ACTIVATE && (size_t)n == sizeof(m->op)) {
            handle_activate(&c, fd);
        } else if (type == MSG_NEW_ROOT && (size_t)n == sizeof(m->op)) {
            handle_new_root(&c, fd, &m->op);
        } else if (type == MSG_DROP_ROOT && (size_t)n == sizeof(m->op)) {
            handle_drop_root(&c, fd, &m->op);
        } else if (type == MSG_JWT_NEW_KEY && (size_t)n == sizeof(m->jwt_key)) {
            handle_jwt_new_key(&c, fd, &m->jwt_key);
        } else if (type == MSG_JWT_ACTIVATE && (size_t)n == sizeof(m->jwt_key)) {
            handle_jwt_activate(&c, fd);
        } else if (type == MSG_SIGN_JWT && (size_t)n == sizeof(m->sign_jwt)) {
            handle_sign_jwt(&c, fd, &m->sign_jwt);
        } else {
            reply(fd, WEFT_EPROTO, NULL, 0, "message type %u of %zd bytes is not one I take", type,
                  n);
        }
    }
    free(m);
    child_free(&c);
    _exit(0);
}

/* --- the parent --------------------------------------------------------------------------- */

static int read_reply(struct ca_signer *s, struct msg_reply *r, char *err, size_t err_len)
{
    ssize_t n;
    do {
        n = recv(s->fd, r, sizeof(*r), 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(*r) || r->hdr.type != MSG_REPLY || r->der_len > sizeof(r->der) ||
        r->int_len > sizeof(r->intermediate) || r->jwt_key_len > sizeof(r->jwt_key) ||
        r->jwt_next_len > sizeof(r->jwt_next) || r->token_len > sizeof(r->token)) {
        snprintf(err, err_len, "the signer is gone or answered nonsense (%zd bytes)", n);
        return WEFT_EPROTO;
    }
    r->err[sizeof(r->err) - 1] = '\0';
    struct ca_signer_info *in = &s->info;
    memcpy(in->intermediate, r->intermediate, r->int_len);
    in->intermediate_len = r->int_len;
    in->intermediate_slot = r->int_slot;
    for (unsigned i = 0; i < CA_SIGNER_SLOTS; i++) {
        in->slot_has_key[i] = (r->slot_keys >> i) & 1;
        in->slot_has_root[i] = (r->slot_roots >> i) & 1;
    }
    memcpy(in->jwt_key, r->jwt_key, r->jwt_key_len);
    in->jwt_key_len = r->jwt_key_len;
    in->jwt_key_not_after = r->jwt_key_not_after;
    memcpy(in->jwt_next, r->jwt_next, r->jwt_next_len);
    in->jwt_next_len = r->jwt_next_len;
    in->jwt_next_not_after = r->jwt_next_not_after;
    return WEFT_OK;
}

/* exchange sends one request of |len| bytes and reads its reply into |r|; WEFT_OK only when
 * the signer did what was asked (else |err| says why). */
static int exchange(struct ca_signer *s, const void *req, size_t len, struct msg_reply *r,
                    char *err, size_t err_len)
{
    ssize_t n;
    do {
        n = send(s->fd, req, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len) {
        snprintf(err, err_len, "the signer is gone: %s", strerror(errno));
        return WEFT_EIO;
    }
    int rc = read_reply(s, r, err, err_len);
    if (rc == WEFT_OK && r->rc != WEFT_OK) {
        snprintf(err, err_len, "%s", r->err);
        rc = r->rc;
    }
    return rc;
}

/* call sends one request of |len| bytes and reads its reply; a certificate (or public key) in
 * it goes to |out| (|cap| bytes; NULL for none). */
static int call(struct ca_signer *s, const void *req, size_t len, uint8_t *out, size_t cap,
                size_t *out_len, char *err, size_t err_len)
{
    struct msg_reply *r = weft_xmalloc(sizeof(*r));
    int rc = exchange(s, req, len, r, err, err_len);
    if (rc == WEFT_OK && out != NULL && r->der_len > cap) {
        snprintf(err, err_len, "the certificate (%u bytes) does not fit the buffer", r->der_len);
        rc = WEFT_ELIMIT;
    } else if (rc == WEFT_OK && out != NULL) {
        memcpy(out, r->der, r->der_len);
        *out_len = r->der_len;
    }
    free(r);
    return rc;
}

int ca_signer_start(struct ca_signer **out, const struct ca_signer_config *cfg, char *err,
                    size_t err_len)
{
    *out = NULL;
    struct stat st;
    bool slots =
        cfg->signing_slot < CA_SIGNER_SLOTS && cfg->root_key_paths[cfg->signing_slot] != NULL;
    if (stat(cfg->key_path, &st) != 0) {
        if (!(errno == ENOENT && slots)) { /* unused when the root's key is there */
            snprintf(err, err_len, "key file %s: %s", cfg->key_path, strerror(errno));
            return WEFT_EIO;
        }
    } else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
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
    int rc = read_reply(s, r, err, err_len);
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
    int rc = call(s, m, sizeof(*m), out, cap, out_len, err, err_len);
    free(m);
    return rc;
}

static int ca_op(struct ca_signer *s, enum msg_type type, unsigned slot, uint32_t key_type,
                 int64_t not_before, int64_t ttl_s, uint8_t *out, size_t cap, size_t *out_len,
                 char *err, size_t err_len)
{
    struct msg_ca_op m = {.hdr.type = type,
                          .slot = slot,
                          .key_type = key_type,
                          .not_before = not_before,
                          .ttl_s = ttl_s};
    return call(s, &m, sizeof(m), out, cap, out_len, err, err_len);
}

int ca_signer_mint_intermediate(struct ca_signer *s, unsigned slot, int64_t not_before,
                                int64_t ttl_s, uint8_t *out, size_t cap, size_t *out_len, char *err,
                                size_t err_len)
{
    return ca_op(s, MSG_MINT_INTERMEDIATE, slot, 0, not_before, ttl_s, out, cap, out_len, err,
                 err_len);
}

int ca_signer_activate(struct ca_signer *s, char *err, size_t err_len)
{
    return ca_op(s, MSG_ACTIVATE, 0, 0, 0, 0, NULL, 0, NULL, err, err_len);
}

int ca_signer_new_root(struct ca_signer *s, unsigned slot, enum spiffe_key_type key_type,
                       int64_t not_before, int64_t ttl_s, uint8_t *out, size_t cap, size_t *out_len,
                       char *err, size_t err_len)
{
    return ca_op(s, MSG_NEW_ROOT, slot, (uint32_t)key_type, not_before, ttl_s, out, cap, out_len,
                 err, err_len);
}

int ca_signer_drop_root(struct ca_signer *s, unsigned slot, char *err, size_t err_len)
{
    return ca_op(s, MSG_DROP_ROOT, slot, 0, 0, 0, NULL, 0, NULL, err, err_len);
}

int ca_signer_jwt_new_key(struct ca_signer *s, int64_t not_after, uint8_t *out, size_t cap,
                          size_t *out_len, char *err, size_t err_len)
{
    struct msg_jwt_key m = {.hdr.type = MSG_JWT_NEW_KEY, .not_after = not_after};
    return call(s, &m, sizeof(m), out, cap, out_len, err, err_len);
}

int ca_signer_jwt_activate(struct ca_signer *s, char *err, size_t err_len)
{
    struct msg_jwt_key m = {.hdr.type = MSG_JWT_ACTIVATE};
    return call(s, &m, sizeof(m), NULL, 0, NULL, err, err_len);
}

int ca_signer_sign_jwt(struct ca_signer *s, const struct ca_signer_jwt_request *req, char *out,
                       size_t cap, size_t *out_len, char *err, size_t err_len)
{
    if (strlen(req->spiffe_id) > SPIFFE_ID_MAX_LEN || req->num_audience == 0 ||
        req->num_audience > SPIFFE_JWT_MAX_AUDIENCES) {
        snprintf(err, err_len,
                 "JWT-SVID request over a limit (an ID of %d bytes, 1 to %d audiences)",
                 SPIFFE_ID_MAX_LEN, SPIFFE_JWT_MAX_AUDIENCES);
        return WEFT_ELIMIT;
    }
    for (size_t i = 0; i < req->num_audience; i++) {
        size_t len = strlen(req->audience[i]);
        if (len == 0 || len > SPIFFE_JWT_MAX_AUDIENCE) {
            snprintf(err, err_len, "audience %zu is %zu bytes (1 to %d)", i + 1, len,
                     SPIFFE_JWT_MAX_AUDIENCE);
            return WEFT_ELIMIT;
        }
    }
    struct msg_sign_jwt *m = weft_xcalloc(1, sizeof(*m));
    m->hdr.type = MSG_SIGN_JWT;
    snprintf(m->spiffe_id, sizeof(m->spiffe_id), "%s", req->spiffe_id);
    m->num_audience = (uint32_t)req->num_audience;
    for (size_t i = 0; i < req->num_audience; i++) {
        snprintf(m->audience[i], sizeof(m->audience[i]), "%s", req->audience[i]);
    }
    m->iat = req->iat;
    m->exp = req->exp;
    struct msg_reply *r = weft_xmalloc(sizeof(*r));
    int rc = exchange(s, m, sizeof(*m), r, err, err_len);
    free(m);
    if (rc == WEFT_OK && (r->token_len == 0 || r->token_len >= cap)) {
        snprintf(err, err_len, "the token (%u bytes) does not fit the buffer", r->token_len);
        rc = WEFT_ELIMIT;
    } else if (rc == WEFT_OK) {
        memcpy(out, r->token, r->token_len);
        out[r->token_len] = '\0';
        *out_len = r->token_len;
    }
    free(r);
    return rc;
}

void ca_signer_info(const struct ca_signer *s, struct ca_signer_info *out) { *out = s->info; }

bool ca_signer_alive(const struct ca_signer *s)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    /* WNOWAIT: a child that ended stays for ca_signer_stop to reap */
    if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
        return false;
    }
    return si.si_pid == 0;
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
