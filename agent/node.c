/* agent/node.c: see node.h. */
#include "agent/node.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"

#define NODE_PATH_PREFIX "/weft/node/"
#define MAX_RESPONSE (1 << 20)

struct agent_node {
    char dir[256];
    struct ca_client *client;
    pthread_mutex_t ch_mu; /* over |ch|'s dial and drop, and over agent_node_call */
    grpc_channel *ch;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;
    int64_t not_before, not_after;
    char name[256];
    /* the key of an attestation that did not succeed, kept for a retry with the same token: the
     * CA binds a service account token to the first key it attested (ca/psat.h), and may have
     * done so even though this side saw a failure (a lost response, its identity not stored) */
    EVP_PKEY *retry_key;
    uint8_t retry_token[SHA256_DIGEST_LENGTH]; /* SHA-256 of the token it was made for */
    /* SHA-256 of the token of the last attestation that succeeded, in this process: the CA
     * bound it to that attestation's key (ca/psat.h), so attesting again with it takes the
     * same key, or it would be a replay */
    uint8_t joined_token[SHA256_DIGEST_LENGTH];
    EVP_PKEY *joined_key; /* that attestation's key; NULL before one succeeded */
};

static void path_of(const struct agent_node *n, const char *file, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", n->dir, file);
}

/* adopt_identity takes |key| and |chain| (both owned now) as the node's identity after checking
 * the chain names a node of the trust domain and holds |key|'s public half. */
static int adopt_identity(struct agent_node *n, EVP_PKEY *key, STACK_OF(X509) * chain, char *err,
                          size_t err_len)
{
    struct spiffe_why why;
    struct spiffe_id id;
    int64_t nb, na;
    X509 *leaf = sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    const char *path = "";
    spiffe_why_clear(&why);
    if (leaf == NULL || spiffe_cert_uri_id(&id, leaf, &why) != WEFT_OK ||
        spiffe_x509svid_check_key(leaf, key, &why) != WEFT_OK ||
        spiffe_cert_validity(&nb, &na, leaf) != WEFT_OK ||
        strlen(path = spiffe_id_path(&id)) <= strlen(NODE_PATH_PREFIX) ||
        strncmp(path, NODE_PATH_PREFIX, strlen(NODE_PATH_PREFIX)) != 0) {
        snprintf(err, err_len, "the node SVID is not one: %s",
                 leaf == NULL ? "empty chain" : why.msg);
        EVP_PKEY_free(key);
        sk_X509_pop_free(chain, X509_free);
        return WEFT_EINVAL;
    }
    EVP_PKEY_free(n->key);
    sk_X509_pop_free(n->chain, X509_free);
    n->key = key;
    n->chain = chain;
    n->not_before = nb;
    n->not_after = na;
    snprintf(n->name, sizeof(n->name), "%.250s", path + strlen(NODE_PATH_PREFIX));
    return WEFT_OK;
}

/* store_identity writes key and chain into one file, atomically: a crash leaves the old pair or
 * the new one, never a key next to another key's chain. node.pem (the chain alone) is a copy
 * for operators, never read back. */
static int store_identity(struct agent_node *n, char *err, size_t err_len)
{
    char *key_pem = NULL, *chain_pem = NULL;
    size_t key_len = 0, chain_len = 0;
    char kp[320], cp[320];
    path_of(n, AGENT_NODE_KEY, kp, sizeof(kp));
    path_of(n, AGENT_NODE_CHAIN, cp, sizeof(cp));
    int rc = WEFT_ECRYPTO;
    if (spiffe_key_to_pem(&key_pem, &key_len, n->key) == WEFT_OK &&
        spiffe_certs_to_pem(&chain_pem, &chain_len, n->chain) == WEFT_OK) {
        char *both = weft_xmalloc(key_len + chain_len);
        memcpy(both, key_pem, key_len);
        memcpy(both + key_len, chain_pem, chain_len);
        rc = weft_file_write_atomic(kp, both, key_len + chain_len, 0600) == WEFT_OK ? WEFT_OK
                                                                                    : WEFT_EIO;
        OPENSSL_cleanse(both, key_len + chain_len);
        free(both);
        if (rc != WEFT_OK) {
            snprintf(err, err_len, "cannot store the node identity in %.200s: %s", n->dir,
                     strerror(errno));
        } else if (weft_file_write_atomic(cp, chain_pem, chain_len, 0644) != WEFT_OK) {
            weft_log(WEFT_LOG_WARN, "cannot write the operators' copy of the node SVID", 1, "file",
                     cp);
        }
    } else {
        snprintf(err, err_len, "cannot encode the node identity");
    }
    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, key_len);
    }
    free(key_pem);
    free(chain_pem);
    return rc;
}

/* load_identity reads a kept identity; WEFT_ENOTFOUND when there is none. */
static int load_identity(struct agent_node *n, char *err, size_t err_len)
{
    char kp[320];
    path_of(n, AGENT_NODE_KEY, kp, sizeof(kp));
    uint8_t *data = NULL;
    size_t len;
    if (weft_file_read(&data, &len, kp, SPIFFE_MAX_PEM_INPUT) != WEFT_OK) {
        if (errno == ENOENT) {
            return WEFT_ENOTFOUND;
        }
        snprintf(err, err_len, "cannot read the node identity %.250s: %s", kp, strerror(errno));
        return WEFT_EIO;
    }
    struct stat st;
    if (stat(kp, &st) == 0 && (st.st_mode & 077) != 0) {
        OPENSSL_cleanse(data, len);
        free(data);
        snprintf(err, err_len, "%.250s is readable by group or others: chmod 600 it", kp);
        return WEFT_EPOLICY;
    }
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    struct spiffe_why why;
    int rc = spiffe_key_decode(&key, data, len, &why);
    if (rc == WEFT_OK) {
        rc = spiffe_certs_decode(&chain, data, len, SPIFFE_MAX_CHAIN, 0, &why);
    }
    OPENSSL_cleanse(data, len);
    free(data);
    if (rc != WEFT_OK) {
        EVP_PKEY_free(key);
        snprintf(err, err_len, "the node identity %.200s: %s", kp, why.msg);
        return rc;
    }
    return adopt_identity(n, key, chain, err, err_len);
}

int agent_node_open(struct agent_node **out, const struct agent_node_config *cfg, char *err,
                    size_t err_len)
{
    *out = NULL;
    if (strlen(cfg->state_dir) >= sizeof(((struct agent_node *)0)->dir)) {
        snprintf(err, err_len, "the state directory's path is over 255 bytes");
        return WEFT_EINVAL;
    }
    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "%.200s: %s", cfg->state_dir, strerror(errno));
        return WEFT_EIO;
    }
    struct agent_node *n = weft_xcalloc(1, sizeof(*n));
    pthread_mutex_init(&n->ch_mu, NULL);
    snprintf(n->dir, sizeof(n->dir), "%s", cfg->state_dir);
    /* the bundle the CA last sent, else the bootstrap bundle */
    char bp[320];
    path_of(n, AGENT_NODE_BUNDLE, bp, sizeof(bp));
    uint8_t *bundle = NULL;
    size_t len = 0;
    int rc = weft_file_read(&bundle, &len, bp, SPIFFE_MAX_PEM_INPUT);
    if (rc != WEFT_OK && cfg->bootstrap_bundle != NULL &&
        weft_file_read(&bundle, &len, cfg->bootstrap_bundle, SPIFFE_MAX_PEM_INPUT) != WEFT_OK) {
        snprintf(err, err_len, "the bootstrap bundle %.200s: %s", cfg->bootstrap_bundle,
                 strerror(errno));
        agent_node_free(n);
        return WEFT_EIO;
    }
    if (bundle == NULL) {
        snprintf(err, err_len, "no trust bundle: give the bootstrap bundle (the CA's bundle.pem)");
        agent_node_free(n);
        return WEFT_EINVAL;
    }
    rc = ca_client_new(&n->client, cfg->ca_addr, cfg->trust_domain, bundle, len, err, err_len);
    free(bundle);
    if (rc == WEFT_OK) {
        rc = load_identity(n, err, err_len);
        rc = rc == WEFT_ENOTFOUND ? WEFT_OK : rc;
    }
    if (rc != WEFT_OK) {
        agent_node_free(n);
        return rc;
    }
    *out = n;
    return WEFT_OK;
}

void agent_node_free(struct agent_node *n)
{
    if (n == NULL) {
        return;
    }
    agent_node_drop_channel(n);
    ca_client_free(n->client);
    EVP_PKEY_free(n->key);
    EVP_PKEY_free(n->retry_key);
    EVP_PKEY_free(n->joined_key);
    sk_X509_pop_free(n->chain, X509_free);
    pthread_mutex_destroy(&n->ch_mu);
    free(n);
}

bool agent_node_has_identity(const struct agent_node *n, int64_t now)
{
    return n->chain != NULL && now >= n->not_before && now < n->not_after;
}

/* issued takes an SVID the CA sent for |key| (owned now). */
static int issued(struct agent_node *n, EVP_PKEY *key, const Weft__Ca__V1__Svid *svid, char *err,
                  size_t err_len)
{
    STACK_OF(X509) *chain = NULL;
    struct spiffe_why why;
    if (svid == NULL || spiffe_certs_decode(&chain, svid->chain.data, svid->chain.len,
                                            SPIFFE_MAX_CHAIN, 0, &why) != WEFT_OK) {
        EVP_PKEY_free(key);
        snprintf(err, err_len, "the CA sent no usable node SVID");
        return WEFT_EPROTO;
    }
    TRY(adopt_identity(n, key, chain, err, err_len));
    agent_node_drop_channel(n); /* the next dial presents the new SVID */
    return store_identity(n, err, err_len);
}

static int csr_for(EVP_PKEY **key, ProtobufCBinaryData *csr)
{
    *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    ENSURE(*key != NULL, WEFT_ECRYPTO);
    if (ca_csr_new(*key, &csr->data, &csr->len) != WEFT_OK) {
        EVP_PKEY_free(*key);
        *key = NULL;
        return WEFT_ECRYPTO;
    }
    return WEFT_OK;
}

/* token_hash is the SHA-256 that names the credential of an attestation. */
static void token_hash(uint8_t out[SHA256_DIGEST_LENGTH], const char *join_token, const char *psat)
{
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, join_token, strlen(join_token) + 1); /* with its NUL: no ambiguity */
    SHA256_Update(&ctx, psat, strlen(psat));
    SHA256_Final(out, &ctx);
}

/* attest_key returns (a reference to) the key to attest with |join_token| or |psat|: the key
 * of the last attempt that did not succeed when it was made for the same token, so that a
 * retry presents the key the CA may have bound the token to; or the key of the last attestation
 * that succeeded when it was made with the same token (the CA bound it so); else a new one,
 * kept for the retries. */
static int attest_key(struct agent_node *n, EVP_PKEY **key, ProtobufCBinaryData *csr,
                      const char *join_token, const char *psat)
{
    uint8_t token[SHA256_DIGEST_LENGTH];
    token_hash(token, join_token, psat);
    if (n->retry_key == NULL && n->joined_key != NULL &&
        CRYPTO_memcmp(token, n->joined_token, sizeof(token)) == 0) {
        /* the token this node joined with, again (a re-attestation before the kubelet
         * rotated it): the key the CA bound it to */
        EVP_PKEY_up_ref(n->joined_key);
        n->retry_key = n->joined_key;
        memcpy(n->retry_token, token, sizeof(token));
    }
    if (n->retry_key == NULL || CRYPTO_memcmp(token, n->retry_token, sizeof(token)) != 0) {
        EVP_PKEY_free(n->retry_key);
        n->retry_key = NULL;
        TRY(csr_for(key, csr));
        n->retry_key = *key;
        memcpy(n->retry_token, token, sizeof(token));
    } else {
        *key = n->retry_key;
        if (ca_csr_new(*key, &csr->data, &csr->len) != WEFT_OK) {
            return WEFT_ECRYPTO;
        }
    }
    EVP_PKEY_up_ref(*key);
    return WEFT_OK;
}

/* attest calls AttestNode with |join_token| or |psat| (the other ""). */
static int attest(struct agent_node *n, const char *join_token, const char *psat, char *err,
                  size_t err_len)
{
    grpc_channel *anon = NULL;
    TRY(ca_client_dial(n->client, NULL, NULL, &anon, err, err_len));
    EVP_PKEY *key = NULL;
    Weft__Ca__V1__AttestNodeRequest req = WEFT__CA__V1__ATTEST_NODE_REQUEST__INIT;
    req.join_token = (char *)join_token;
    req.psat = (char *)psat;
    int rc = attest_key(n, &key, &req.csr, join_token, psat);
    Weft__Ca__V1__AttestNodeResponse *resp = NULL;
    struct rpc_status st;
    if (rc == WEFT_OK) {
        rc = rpc_call_unary(anon, "/weft.ca.v1.CA/AttestNode", &req.base,
                            &weft__ca__v1__attest_node_response__descriptor, MAX_RESPONSE,
                            AGENT_NODE_RPC_TIMEOUT_MS, (ProtobufCMessage **)&resp, &st);
        if (rc != WEFT_OK) {
            snprintf(err, err_len, "the CA refused to attest this node: %s", st.details);
            EVP_PKEY_free(key);
        }
    } else {
        snprintf(err, err_len, "cannot make a key and CSR for the node");
    }
    OPENSSL_free(req.csr.data);
    grpc_channel_destroy(anon);
    TRY(rc);
    rc = agent_node_set_bundle(n, resp->bundle.data, resp->bundle.len, err, err_len);
    if (rc == WEFT_OK) {
        rc = issued(n, key, resp->node_svid, err, err_len);
    } else {
        EVP_PKEY_free(key);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (rc == WEFT_OK) {
        /* joined, and the identity stored: the next attestation (a new token) takes a new key */
        memcpy(n->joined_token, n->retry_token, sizeof(n->joined_token));
        EVP_PKEY_free(n->joined_key);
        n->joined_key = n->retry_key; /* its reference */
        n->retry_key = NULL;
    }
    return rc;
}

int agent_node_join(struct agent_node *n, const char *token, char *err, size_t err_len)
{
    return attest(n, token, "", err, err_len);
}

int agent_node_join_psat(struct agent_node *n, const char *psat, char *err, size_t err_len)
{
    return attest(n, "", psat, err, err_len);
}

int agent_node_renew(struct agent_node *n, char *err, size_t err_len)
{
    grpc_channel *ch;
    TRY(agent_node_channel(n, &ch, err, err_len));
    EVP_PKEY *key;
    Weft__Ca__V1__RenewNodeRequest req = WEFT__CA__V1__RENEW_NODE_REQUEST__INIT;
    TRY(csr_for(&key, &req.csr));
    Weft__Ca__V1__RenewNodeResponse *resp = NULL;
    struct rpc_status st;
    int rc = rpc_call_unary(ch, "/weft.ca.v1.CA/RenewNode", &req.base,
                            &weft__ca__v1__renew_node_response__descriptor, MAX_RESPONSE,
                            AGENT_NODE_RPC_TIMEOUT_MS, (ProtobufCMessage **)&resp, &st);
    OPENSSL_free(req.csr.data);
    if (rc != WEFT_OK) {
        EVP_PKEY_free(key);
        if (st.code == GRPC_STATUS_UNAVAILABLE) {
            agent_node_drop_channel(n);
        }
        snprintf(err, err_len, "renewing the node SVID: %s", st.details);
        return WEFT_EIO;
    }
    rc = issued(n, key, resp->node_svid, err, err_len);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int agent_node_set_bundle(struct agent_node *n, const uint8_t *der, size_t len, char *err,
                          size_t err_len)
{
    TRY(ca_client_set_bundle(n->client, der, len, err, err_len));
    char bp[320];
    path_of(n, AGENT_NODE_BUNDLE, bp, sizeof(bp));
    if (weft_file_write_atomic(bp, der, len, 0644) != WEFT_OK) {
        snprintf(err, err_len, "cannot store the bundle in %.200s: %s", n->dir, strerror(errno));
        return WEFT_EIO;
    }
    return WEFT_OK;
}

int agent_node_channel(struct agent_node *n, grpc_channel **out, char *err, size_t err_len)
{
    int rc = WEFT_OK;
    pthread_mutex_lock(&n->ch_mu);
    if (n->ch == NULL) {
        if (n->chain == NULL) {
            snprintf(err, err_len, "no node SVID yet: join with a token first");
            rc = WEFT_ENOTFOUND;
        } else {
            rc = ca_client_dial(n->client, n->chain, n->key, &n->ch, err, err_len);
        }
    }
    *out = n->ch;
    pthread_mutex_unlock(&n->ch_mu);
    return rc;
}

void agent_node_drop_channel(struct agent_node *n)
{
    pthread_mutex_lock(&n->ch_mu);
    if (n->ch != NULL) {
        grpc_channel_destroy(n->ch);
        n->ch = NULL;
    }
    pthread_mutex_unlock(&n->ch_mu);
}

int agent_node_call(struct agent_node *n, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, size_t max_response, int timeout_ms,
                    ProtobufCMessage **resp, struct rpc_status *st)
{
    *resp = NULL;
    pthread_mutex_lock(&n->ch_mu);
    int rc;
    if (n->ch == NULL) {
        st->code = GRPC_STATUS_UNAVAILABLE;
        snprintf(st->details, sizeof(st->details), "not connected to the CA");
        rc = WEFT_EAGAIN;
    } else {
        rc = rpc_call_unary(n->ch, method, req, desc, max_response, timeout_ms, resp, st);
    }
    pthread_mutex_unlock(&n->ch_mu);
    return rc;
}

const char *agent_node_name(const struct agent_node *n) { return n->name; }

void agent_node_validity(const struct agent_node *n, int64_t *not_before, int64_t *not_after)
{
    *not_before = n->not_before;
    *not_after = n->not_after;
}

STACK_OF(X509) * agent_node_chain(const struct agent_node *n) { return n->chain; }
EVP_PKEY *agent_node_key(const struct agent_node *n) { return n->key; }
