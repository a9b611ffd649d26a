/* Attesting nodes and minting SVIDs: check, sign (in the signer), record, log. */
#include "ca/issuer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/spiffe/x509svid.h"

/* pubkey_of_csr checks the CSR's signature and returns its key as SubjectPublicKeyInfo DER. */
static int pubkey_of_csr(const uint8_t *csr, size_t csr_len, uint8_t **out, size_t *out_len,
                         char *err, size_t err_len)
{
    if (csr_len == 0 || csr_len > CA_MAX_CSR) {
        snprintf(err, err_len, "a CSR of %zu bytes (1 to %d)", csr_len, CA_MAX_CSR);
        return WEFT_ELIMIT;
    }
    EVP_PKEY *pub = NULL;
    struct spiffe_why why;
    if (spiffe_csr_decode(&pub, csr, csr_len, &why) != WEFT_OK) {
        snprintf(err, err_len, "%s", why.msg);
        return WEFT_EINVAL;
    }
    CBB cbb;
    int ok =
        CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, pub) && CBB_finish(&cbb, out, out_len);
    EVP_PKEY_free(pub);
    if (!ok) {
        CBB_cleanup(&cbb);
        snprintf(err, err_len, "cannot encode the CSR's public key");
        return WEFT_ECRYPTO;
    }
    return WEFT_OK;
}

/* sign_leaf signs |spiffe_id| for the CSR's key, appends the signing CA to the chain and fills
 * the inventory row |rec|; nothing is recorded yet. */
static int sign_leaf(struct ca_issuer *ca, enum ca_issuance_kind kind, const char *spiffe_id,
                     const char *node, const char *entry_id, int64_t ttl_s, const uint8_t *csr,
                     size_t csr_len, int64_t now, struct ca_svid *out, struct ca_issuance *rec,
                     char *err, size_t err_len)
{
    uint8_t *pub = NULL;
    size_t pub_len;
    TRY(pubkey_of_csr(csr, csr_len, &pub, &pub_len, err, err_len));
    memset(out, 0, sizeof(*out));
    /* a minute back: a peer whose clock is slightly behind accepts the SVID at once */
    struct ca_signer_request req = {pub, pub_len, spiffe_id, now - 60, ttl_s, NULL, 0};
    size_t leaf_len = 0;
    int rc = ca_signer_sign_leaf(ca->signer, &req, out->chain, CA_SIGNER_MAX_CERT, &leaf_len, err,
                                 err_len);
    OPENSSL_free(pub);
    if (rc != WEFT_OK) {
        return rc;
    }
    const uint8_t *p = out->chain;
    X509 *leaf = d2i_X509(NULL, &p, (long)leaf_len);
    uint8_t *ca_der = NULL;
    int ca_len = i2d_X509(ca->signing_cert, &ca_der);
    memset(rec, 0, sizeof(*rec));
    struct spiffe_id got;
    if (leaf == NULL || ca_len <= 0 || leaf_len + (size_t)ca_len > sizeof(out->chain) ||
        spiffe_cert_validity(&rec->not_before, &rec->not_after, leaf) != WEFT_OK ||
        spiffe_cert_uri_id(&got, leaf, NULL) != WEFT_OK || strcmp(got.str, spiffe_id) != 0) {
        X509_free(leaf);
        OPENSSL_free(ca_der);
        snprintf(err, err_len, "the signer returned a certificate that is not the one asked for");
        return WEFT_EINTERNAL;
    }
    memcpy(out->chain + leaf_len, ca_der, (size_t)ca_len);
    out->chain_len = leaf_len + (size_t)ca_len;
    OPENSSL_free(ca_der);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    rec->serial_len = (size_t)ASN1_STRING_length(serial) <= CA_SERIAL_MAX
                          ? (size_t)ASN1_STRING_length(serial)
                          : CA_SERIAL_MAX;
    memcpy(rec->serial, ASN1_STRING_get0_data(serial), rec->serial_len);
    X509_free(leaf);
    rec->kind = kind;
    snprintf(rec->spiffe_id, sizeof(rec->spiffe_id), "%s", spiffe_id);
    snprintf(rec->node, sizeof(rec->node), "%s", node);
    snprintf(rec->entry_id, sizeof(rec->entry_id), "%s", entry_id);
    SHA256(out->chain, leaf_len, rec->sha256);
    snprintf(out->spiffe_id, sizeof(out->spiffe_id), "%s", spiffe_id);
    snprintf(out->entry_id, sizeof(out->entry_id), "%s", entry_id);
    out->not_after = rec->not_after;
    return WEFT_OK;
}

/* log_issuance writes the one audit line of an issuance. */
static void log_issuance(const struct ca_issuance *rec)
{
    char serial_hex[2 * CA_SERIAL_MAX + 1], not_after[32];
    for (size_t i = 0; i < rec->serial_len; i++) {
        snprintf(serial_hex + 2 * i, 3, "%02x", rec->serial[i]);
    }
    serial_hex[2 * rec->serial_len] = '\0';
    snprintf(not_after, sizeof(not_after), "%lld", (long long)rec->not_after);
    weft_log(WEFT_LOG_INFO,
             rec->kind == CA_ISSUANCE_NODE ? "issued node svid" : "issued workload svid", 5, "id",
             rec->spiffe_id, "node", rec->node, "entry", rec->entry_id, "serial", serial_hex,
             "not_after", not_after);
}

/* sign_and_record signs, records the issuance (before the SVID is handed out: an SVID the
 * inventory does not know never leaves) and logs it. */
static int sign_and_record(struct ca_issuer *ca, enum ca_issuance_kind kind, const char *spiffe_id,
                           const char *node, const char *entry_id, int64_t ttl_s,
                           const uint8_t *csr, size_t csr_len, int64_t now, struct ca_svid *out,
                           char *err, size_t err_len)
{
    struct ca_issuance rec;
    TRY(sign_leaf(ca, kind, spiffe_id, node, entry_id, ttl_s, csr, csr_len, now, out, &rec, err,
                  err_len));
    int rc = ca_store_issuance_add(ca->store, &rec);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.250s", ca->store->err);
        return rc;
    }
    log_issuance(&rec);
    return WEFT_OK;
}

static void node_id(char out[CA_SPIFFE_ID_MAX + 1], const struct spiffe_id *td, const char *node)
{
    /* a trust domain ID is at most 9 + 255 bytes and a node name 253: this always fits */
    snprintf(out, CA_SPIFFE_ID_MAX + 1, "%.264s/weft/node/%.253s", td->str, node);
}

int ca_attest_node(struct ca_issuer *ca, const char *token, const uint8_t *csr, size_t csr_len,
                   int64_t now, char node_out[CA_NODE_NAME_MAX + 1], struct ca_svid *out, char *err,
                   size_t err_len)
{
    /* The token is used in the same transaction that records the node SVID: a bad CSR, a
     * signer or store failure, or a crash leaves the token usable. */
    uint8_t hash[CA_TOKEN_HASH_LEN];
    int rc = ca_token_hash(hash, token, err, err_len);
    if (rc == WEFT_OK && (rc = ca_store_token_peek(ca->store, hash, now, node_out)) != WEFT_OK) {
        snprintf(err, err_len, "%.250s", ca->store->err);
        rc = rc == WEFT_EIO ? WEFT_EIO : WEFT_EPOLICY;
    }
    if (rc != WEFT_OK) {
        weft_log(WEFT_LOG_WARN, "join token refused", 1, "reason", err);
        return rc;
    }
    char id[CA_SPIFFE_ID_MAX + 1];
    node_id(id, &ca->td, node_out);
    TRY(ca_may_issue(ca->store, id, node_out, err, err_len));
    int64_t ttl = ca->node_ttl_s > 0 ? ca->node_ttl_s : CA_DEFAULT_NODE_TTL_S;
    struct ca_issuance rec;
    TRY(sign_leaf(ca, CA_ISSUANCE_NODE, id, node_out, "", ttl, csr, csr_len, now, out, &rec, err,
                  err_len));
    if ((rc = ca_store_attest_commit(ca->store, hash, now, &rec)) != WEFT_OK) {
        /* a racing attestation with the same token won: this SVID never leaves */
        snprintf(err, err_len, "%.250s", ca->store->err);
        weft_log(WEFT_LOG_WARN, "join token refused", 1, "reason", err);
        return rc == WEFT_EIO ? WEFT_EIO : WEFT_EPOLICY;
    }
    weft_log(WEFT_LOG_INFO, "join token used", 1, "node", node_out);
    log_issuance(&rec);
    return WEFT_OK;
}

int ca_attest_node_psat(struct ca_issuer *ca, struct ca_psat *psat, const char *token,
                        size_t token_len, const uint8_t *csr, size_t csr_len, int64_t now,
                        char node_out[CA_NODE_NAME_MAX + 1], struct ca_svid *out, char *err,
                        size_t err_len)
{
    struct ca_psat_claims c;
    int rc = ca_psat_validate(psat, &c, token, token_len, now, err, err_len);
    if (rc != WEFT_OK) {
        weft_log(WEFT_LOG_WARN, "service account token refused", 1, "reason", err);
        return WEFT_EPOLICY;
    }
    snprintf(node_out, CA_NODE_NAME_MAX + 1, "%s", c.node_name);
    char id[CA_SPIFFE_ID_MAX + 1];
    node_id(id, &ca->td, node_out);
    TRY(ca_may_issue(ca->store, id, node_out, err, err_len));
    /* the token is bound to the key it attests (ca/psat.h, "Replay"): the CSR's key, whose
     * possession the CSR's signature proves. A token bound to another key stops here; the
     * binding itself is made only once the SVID is recorded, so that any failure on the way
     * (the signer, the store) leaves the token free for the agent's retry, whatever its key. */
    uint8_t *pub = NULL, key_hash[SHA256_DIGEST_LENGTH];
    size_t pub_len;
    TRY(pubkey_of_csr(csr, csr_len, &pub, &pub_len, err, err_len));
    SHA256(pub, pub_len, key_hash);
    OPENSSL_free(pub);
    if ((rc = ca_psat_check(psat, &c, key_hash, now, err, err_len)) != WEFT_OK) {
        weft_log(WEFT_LOG_WARN, "service account token refused", 3, "reason", err, "pod",
                 c.pod_name, "pod_uid", c.pod_uid);
        return rc;
    }
    int64_t ttl = ca->node_ttl_s > 0 ? ca->node_ttl_s : CA_DEFAULT_NODE_TTL_S;
    struct ca_issuance rec;
    TRY(sign_leaf(ca, CA_ISSUANCE_NODE, id, node_out, "", ttl, csr, csr_len, now, out, &rec, err,
                  err_len));
    /* the node (refused if it joined by join token), its node selectors and its SVID, in one
     * transaction */
    char sel[CA_PSAT_NUM_NODE_SELECTORS][CA_SELECTOR_MAX + 1];
    const char *sel_ptrs[CA_PSAT_NUM_NODE_SELECTORS];
    size_t num_sel = ca_psat_node_selectors(psat, &c, sel);
    for (size_t i = 0; i < num_sel; i++) {
        sel_ptrs[i] = sel[i];
    }
    char as[CA_PSAT_SA_MAX + 1];
    snprintf(as, sizeof(as), "%s:%s", c.namespace, c.service_account);
    ca->revoked_by_last_attest = 0;
    if ((rc = ca_store_node_commit(ca->store, CA_ATTEST_PSAT, as, sel_ptrs, num_sel, now, &rec,
                                   &ca->revoked_by_last_attest)) != WEFT_OK) {
        snprintf(err, err_len, "%.250s", ca->store->err);
        weft_log(WEFT_LOG_WARN,
                 rc == WEFT_EIO ? "node attestation failed: the store"
                                : "service account token refused",
                 3, "reason", err, "pod", c.pod_name, "pod_uid", c.pod_uid);
        return rc == WEFT_EIO ? WEFT_EIO : WEFT_EPOLICY;
    }
    /* Nothing ran between ca_psat_check and here (the CA's handlers run on one thread, and
     * |psat| is the caller's alone), so this cannot refuse: ca_psat_check said it would not. If
     * it ever did, the SVID is recorded but never leaves, which is the safe side (the node's
     * selectors, replaced with it, are then those of a token that did validate, for the node
     * that token names). */
    if ((rc = ca_psat_bind(psat, &c, key_hash, now, err, err_len)) != WEFT_OK) {
        weft_log(WEFT_LOG_WARN, "service account token refused", 3, "reason", err, "pod",
                 c.pod_name, "pod_uid", c.pod_uid);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    char sel_list[CA_PSAT_NUM_NODE_SELECTORS * (CA_SELECTOR_MAX + 1)] = "";
    for (size_t i = 0, pos = 0; i < num_sel; i++) {
        pos +=
            (size_t)snprintf(sel_list + pos, sizeof(sel_list) - pos, "%s%s", i ? "," : "", sel[i]);
    }
    if (ca->revoked_by_last_attest > 0) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", ca->revoked_by_last_attest);
        weft_log(WEFT_LOG_WARN,
                 "node attested as another service account: its earlier node SVIDs revoked", 3,
                 "node", node_out, "service_account", as, "revoked", n);
    }
    weft_log(WEFT_LOG_INFO, "service account token used", 6, "node", node_out, "node_uid",
             c.node_uid, "pod", c.pod_name, "pod_uid", c.pod_uid, "service_account",
             c.service_account, "node_selectors", sel_list);
    log_issuance(&rec);
    return WEFT_OK;
}

int ca_check_caller(struct ca_issuer *ca, const struct ca_caller *caller, int64_t now, char *err,
                    size_t err_len)
{
    /* The connection was verified at its handshake; this call may come much later. */
    if (caller->node[0] == '\0') {
        snprintf(err, err_len, "the caller is not a node");
        return WEFT_EPOLICY;
    }
    if (caller->not_after <= now) {
        snprintf(err, err_len, "the node's SVID expired at %lld; it must attest again",
                 (long long)caller->not_after);
        return WEFT_EPOLICY;
    }
    bool serial_revoked = false;
    if (ca_store_is_revoked(ca->store, CA_REVOKE_SERIAL, caller->serial_hex, &serial_revoked) !=
        WEFT_OK) {
        snprintf(err, err_len, "%.250s", ca->store->err);
        return WEFT_EIO;
    }
    if (serial_revoked) {
        snprintf(err, err_len, "the node's SVID (serial %s) is revoked", caller->serial_hex);
        return WEFT_EPOLICY;
    }
    char id[CA_SPIFFE_ID_MAX + 1];
    node_id(id, &ca->td, caller->node);
    return ca_may_issue(ca->store, id, caller->node, err, err_len);
}

int ca_renew_node(struct ca_issuer *ca, const struct ca_caller *caller, const uint8_t *csr,
                  size_t csr_len, int64_t now, struct ca_svid *out, char *err, size_t err_len)
{
    TRY(ca_check_caller(ca, caller, now, err, err_len));
    char id[CA_SPIFFE_ID_MAX + 1];
    node_id(id, &ca->td, caller->node);
    int64_t ttl = ca->node_ttl_s > 0 ? ca->node_ttl_s : CA_DEFAULT_NODE_TTL_S;
    return sign_and_record(ca, CA_ISSUANCE_NODE, id, caller->node, "", ttl, csr, csr_len, now, out,
                           err, err_len);
}

/* entry_assigned says whether |e| is |node|'s: it names the node, or its node selector is one
 * the node's last attestation reported. WEFT_EIO when the store fails. */
static int entry_assigned(struct ca_issuer *ca, const struct ca_entry *e, const char *node,
                          bool *out)
{
    if (e->node[0] != '\0') {
        *out = strcmp(e->node, node) == 0;
        return WEFT_OK;
    }
    return ca_store_node_has_selector(ca->store, node, e->node_selector, out) == WEFT_OK ? WEFT_OK
                                                                                         : WEFT_EIO;
}

int ca_mint_workloads(struct ca_issuer *ca, const struct ca_caller *caller,
                      const struct ca_mint_request *reqs, size_t num,
                      struct ca_mint_result *results, int64_t now, char *err, size_t err_len)
{
    if (num > CA_MAX_MINT_BATCH) {
        snprintf(err, err_len, "%zu CSRs in one call, over the limit of %d", num,
                 CA_MAX_MINT_BATCH);
        return WEFT_ELIMIT;
    }
    TRY(ca_check_caller(ca, caller, now, err, err_len));
    const char *node = caller->node;
    /* about 2 KiB a row: on the heap, not on a handler thread's stack */
    struct ca_issuance *recs = weft_xcalloc(CA_MAX_MINT_BATCH, sizeof(*recs));
    const struct ca_issuance *rec_ptrs[CA_MAX_MINT_BATCH];
    size_t signed_index[CA_MAX_MINT_BATCH], num_signed = 0;
    for (size_t i = 0; i < num; i++) {
        struct ca_mint_result *r = &results[i];
        struct ca_entry e;
        memset(r, 0, sizeof(*r));
        bool assigned = false;
        r->rc = ca_store_entry_get(ca->store, reqs[i].entry_id, &e);
        if (r->rc == WEFT_OK) {
            r->rc = entry_assigned(ca, &e, node, &assigned);
        }
        if (r->rc == WEFT_EIO) {
            snprintf(r->err, sizeof(r->err), "the CA's store failed: retry later");
            continue;
        }
        if (r->rc != WEFT_OK) {
            snprintf(r->err, sizeof(r->err), "no entry %.64s", reqs[i].entry_id);
            r->rc = WEFT_EPOLICY; /* a node learns nothing about other nodes' entries */
            continue;
        }
        if (!assigned) {
            snprintf(r->err, sizeof(r->err), "no entry %.64s", reqs[i].entry_id);
            r->rc = WEFT_EPOLICY;
            weft_log(WEFT_LOG_WARN, "mint refused: entry not assigned to node", 2, "node", node,
                     "entry", e.id);
            continue;
        }
        if ((r->rc = ca_may_issue(ca->store, e.spiffe_id, node, r->err, sizeof(r->err))) !=
            WEFT_OK) {
            continue;
        }
        r->rc =
            sign_leaf(ca, CA_ISSUANCE_WORKLOAD, e.spiffe_id, node, e.id, e.ttl_s, reqs[i].csr,
                      reqs[i].csr_len, now, &r->svid, &recs[num_signed], r->err, sizeof(r->err));
        if (r->rc == WEFT_OK) {
            rec_ptrs[num_signed] = &recs[num_signed];
            signed_index[num_signed++] = i;
        }
    }
    /* The call's certificates go into the inventory in one transaction (one fsync for the
     * batch), before any of them is handed out; if that fails, none is. */
    if (num_signed > 0 && ca_store_issuance_add_many(ca->store, rec_ptrs, num_signed) != WEFT_OK) {
        for (size_t k = 0; k < num_signed; k++) {
            struct ca_mint_result *r = &results[signed_index[k]];
            r->rc = WEFT_EIO;
            snprintf(r->err, sizeof(r->err), "the CA's store failed: retry later (%.150s)",
                     ca->store->err);
            memset(&r->svid, 0, sizeof(r->svid));
        }
        free(recs);
        return WEFT_OK;
    }
    for (size_t k = 0; k < num_signed; k++) {
        log_issuance(&recs[k]);
    }
    free(recs);
    return WEFT_OK;
}

/* audiences_ok: 1..SPIFFE_JWT_MAX_AUDIENCES values, each 1..SPIFFE_JWT_MAX_AUDIENCE bytes. */
static int audiences_ok(const char *const *audience, size_t num, char *err, size_t err_len)
{
    if (num == 0 || num > SPIFFE_JWT_MAX_AUDIENCES) {
        snprintf(err, err_len, "a JWT-SVID needs 1 to %d audiences, not %zu",
                 SPIFFE_JWT_MAX_AUDIENCES, num);
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < num; i++) {
        size_t len = strlen(audience[i]);
        if (len == 0 || len > SPIFFE_JWT_MAX_AUDIENCE) {
            snprintf(err, err_len, "audience %zu is %zu bytes: 1 to %d", i + 1, len,
                     SPIFFE_JWT_MAX_AUDIENCE);
            return WEFT_EINVAL;
        }
    }
    return WEFT_OK;
}

/* signing_kid names the key the signer signs JWT-SVIDs with, as its last answer says. */
static void signing_kid(struct ca_issuer *ca, char kid[SPIFFE_JWT_KID_LEN + 1])
{
    struct ca_signer_info *info = weft_xmalloc(sizeof(*info));
    ca_signer_info(ca->signer, info);
    CBS cbs;
    CBS_init(&cbs, info->jwt_key, info->jwt_key_len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    if (pub == NULL || spiffe_jwt_kid(pub, kid) != WEFT_OK) {
        snprintf(kid, SPIFFE_JWT_KID_LEN + 1, "?");
    }
    EVP_PKEY_free(pub);
    free(info);
}

int ca_mint_jwt(struct ca_issuer *ca, const struct ca_caller *caller, const char *entry_id,
                const char *const *audience, size_t num_audience, int64_t ttl_s, int64_t now,
                struct ca_jwt_svid *out, char *err, size_t err_len)
{
    TRY(audiences_ok(audience, num_audience, err, err_len));
    TRY(ca_check_caller(ca, caller, now, err, err_len));
    struct ca_entry *e = weft_xmalloc(sizeof(*e));
    bool assigned = false;
    int rc = ca_store_entry_get(ca->store, entry_id, e);
    if (rc == WEFT_OK) {
        rc = entry_assigned(ca, e, caller->node, &assigned);
    }
    if (rc == WEFT_EIO) {
        snprintf(err, err_len, "the CA's store failed: retry later");
    } else if (rc != WEFT_OK || !assigned) {
        if (rc == WEFT_OK) {
            weft_log(WEFT_LOG_WARN, "jwt-svid refused: entry not assigned to node", 2, "node",
                     caller->node, "entry", e->id);
        }
        snprintf(err, err_len, "no entry %.64s", entry_id);
        rc = WEFT_EPOLICY;
    } else {
        rc = ca_may_issue(ca->store, e->spiffe_id, caller->node, err, err_len);
    }
    if (rc != WEFT_OK) {
        free(e);
        return rc;
    }
    int64_t ttl = e->ttl_s > 0 && e->ttl_s < ttl_s ? e->ttl_s : ttl_s;
    struct ca_signer_jwt_request req = {
        .spiffe_id = e->spiffe_id,
        .audience = audience,
        .num_audience = num_audience,
        .iat = now,
        .exp = now + ttl,
    };
    memset(out, 0, sizeof(*out));
    rc = ca_signer_sign_jwt(ca->signer, &req, out->token, sizeof(out->token), &out->token_len, err,
                            err_len);
    if (rc == WEFT_EPOLICY) {
        rc = WEFT_EAGAIN; /* the signer's refusal is the CA's state (its key), not the caller's */
    }
    if (rc == WEFT_OK) {
        snprintf(out->spiffe_id, sizeof(out->spiffe_id), "%s", e->spiffe_id);
        out->expires_at = req.exp;
        signing_kid(ca, out->kid);
        /* the audit line: audiences as asked, cut to what a log line should carry */
        char aud[600] = "", exp[24];
        for (size_t i = 0, pos = 0; i < num_audience && pos < sizeof(aud) - 1; i++) {
            int n = snprintf(aud + pos, sizeof(aud) - pos, "%s%s", i ? "," : "", audience[i]);
            pos = n < 0 ? sizeof(aud) - 1 : pos + (size_t)n;
        }
        snprintf(exp, sizeof(exp), "%lld", (long long)req.exp);
        weft_log(WEFT_LOG_INFO, "issued jwt-svid", 6, "id", e->spiffe_id, "node", caller->node,
                 "entry", e->id, "kid", out->kid, "aud", aud, "exp", exp);
    }
    free(e);
    return rc;
}
