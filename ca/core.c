/* The CA's admin operations on its store. */
#include "ca/core.h"

#include <stdio.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define TOKEN_PREFIX "weft1."
#define TOKEN_RANDOM 32

static bool is_dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CA_NODE_NAME_MAX || s[0] == '.' || s[n - 1] == '.' || s[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        if (!ok || (c == '.' && (s[i + 1] == '.' || s[i + 1] == '-' || s[i - 1] == '-'))) {
            return false;
        }
    }
    return s[n - 1] != '-';
}

bool ca_node_name_valid(const char *name) { return is_dns_subdomain(name); }

int ca_token_create(struct ca_store *s, const char *node, int64_t ttl_s, int64_t now,
                    char out[CA_TOKEN_TEXT_LEN + 1], char *err, size_t err_len)
{
    if (!is_dns_subdomain(node)) {
        snprintf(err, err_len, "\"%.64s\" is not a node name (a DNS subdomain)", node);
        return WEFT_EINVAL;
    }
    if (ttl_s <= 0 || ttl_s > CA_TOKEN_MAX_TTL_S) {
        snprintf(err, err_len, "a join token lives 1 s to 7 days, not %llds", (long long)ttl_s);
        return WEFT_EINVAL;
    }
    uint8_t random[TOKEN_RANDOM], hash[CA_TOKEN_HASH_LEN];
    char b64[64];
    RAND_bytes(random, sizeof(random));
    size_t n = EVP_EncodeBlock((uint8_t *)b64, random, sizeof(random));
    /* base64url without padding: the token goes on command lines and in files */
    while (n > 0 && b64[n - 1] == '=') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    }
    snprintf(out, CA_TOKEN_TEXT_LEN + 1, "%s%.*s", TOKEN_PREFIX, (int)n, b64);
    SHA256((const uint8_t *)out, strlen(out), hash);
    OPENSSL_cleanse(random, sizeof(random));
    int rc = ca_store_token_add(s, hash, node, now + ttl_s, now);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.250s", s->err);
        OPENSSL_cleanse(out, CA_TOKEN_TEXT_LEN + 1);
    }
    return rc;
}

int ca_token_hash(uint8_t out[CA_TOKEN_HASH_LEN], const char *token, char *err, size_t err_len)
{
    size_t len = strnlen(token, CA_TOKEN_TEXT_LEN + 1);
    if (len != CA_TOKEN_TEXT_LEN || strncmp(token, TOKEN_PREFIX, 6) != 0) {
        snprintf(err, err_len, "malformed join token");
        return WEFT_EPOLICY;
    }
    SHA256((const uint8_t *)token, len, out);
    return WEFT_OK;
}

int ca_token_redeem(struct ca_store *s, const char *token, int64_t now,
                    char node_out[CA_NODE_NAME_MAX + 1], char *err, size_t err_len)
{
    uint8_t hash[CA_TOKEN_HASH_LEN];
    TRY(ca_token_hash(hash, token, err, err_len));
    int rc = ca_store_token_use(s, hash, now, node_out);
    if (rc == WEFT_OK) {
        return WEFT_OK;
    }
    snprintf(err, err_len, "%.250s", s->err);
    return rc == WEFT_EIO ? WEFT_EIO : WEFT_EPOLICY;
}

void ca_entry_new_id(char out[CA_ENTRY_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t r[CA_ENTRY_ID_LEN / 2];
    RAND_bytes(r, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[CA_ENTRY_ID_LEN] = '\0';
}

/* valid_selector checks "TYPE:KEY:VALUE", none of them empty, of printable ASCII without
 * spaces; with |workload|, TYPE is one an agent observes (unix or k8s). */
static bool valid_selector(const char *sel, bool workload)
{
    const char *c1 = strchr(sel, ':');
    if (c1 == NULL || c1 == sel || strchr(c1 + 1, ':') == NULL) {
        return false;
    }
    size_t type_len = (size_t)(c1 - sel);
    if (workload && !((type_len == 4 && strncmp(sel, "unix", 4) == 0) ||
                      (type_len == 3 && strncmp(sel, "k8s", 3) == 0))) {
        return false;
    }
    for (const char *p = sel; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            return false; /* no spaces, newlines or control characters */
        }
    }
    const char *c2 = strchr(c1 + 1, ':');
    return c2 > c1 + 1 && c2[1] != '\0';
}

int ca_entry_validate(const struct ca_entry *e, const struct spiffe_id *td, char *err,
                      size_t err_len)
{
    struct spiffe_id id;
    struct spiffe_why why;
    if (spiffe_id_parse(&id, e->spiffe_id, strlen(e->spiffe_id), &why) != WEFT_OK) {
        snprintf(err, err_len, "--id: %s", why.msg);
        return WEFT_EINVAL;
    }
    if (!spiffe_id_same_td(&id, td) || spiffe_id_is_td(&id)) {
        snprintf(err, err_len, "--id %.200s: a workload ID of %s, with a path, is needed", id.str,
                 td->str);
        return WEFT_EINVAL;
    }
    if (strncmp(spiffe_id_path(&id), "/weft/", 6) == 0) {
        snprintf(err, err_len, "--id %.200s: /weft/ IDs are the CA's and the nodes' own", id.str);
        return WEFT_EINVAL;
    }
    if ((e->node[0] == '\0') == (e->node_selector[0] == '\0')) {
        snprintf(err, err_len, "give exactly one of --node and --node-selector");
        return WEFT_EINVAL;
    }
    if (e->node[0] != '\0' && !is_dns_subdomain(e->node)) {
        snprintf(err, err_len, "--node %.64s: not a node name", e->node);
        return WEFT_EINVAL;
    }
    if (e->node_selector[0] != '\0' && !valid_selector(e->node_selector, false)) {
        snprintf(err, err_len, "--node-selector %.64s: not TYPE:KEY:VALUE", e->node_selector);
        return WEFT_EINVAL;
    }
    if (e->num_selectors == 0 || e->num_selectors > CA_MAX_SELECTORS) {
        snprintf(err, err_len, "an entry needs 1 to %d --selector", CA_MAX_SELECTORS);
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < e->num_selectors; i++) {
        if (!valid_selector(e->selectors[i], true)) {
            snprintf(err, err_len,
                     "--selector %.64s: not TYPE:KEY:VALUE with TYPE unix or k8s (e.g. "
                     "unix:uid:1001, k8s:ns:shop)",
                     e->selectors[i]);
            return WEFT_EINVAL;
        }
    }
    if (e->ttl_s < CA_MIN_SVID_TTL_S || e->ttl_s > CA_MAX_SVID_TTL_S) {
        snprintf(err, err_len, "--ttl %llds: SVIDs live 5 min to 24 h", (long long)e->ttl_s);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* canonical_revocation checks |value| for |kind| and writes the form the store keeps: a SPIFFE
 * ID as parsed, a serial as lowercase hex without separators (colons, as openssl prints them,
 * are dropped), a node name as given. */
static int canonical_revocation(char *out, size_t out_len, enum ca_revocation_kind kind,
                                const char *value, char *err, size_t err_len)
{
    struct spiffe_id id;
    struct spiffe_why why;
    switch (kind) {
    case CA_REVOKE_ID:
        if (spiffe_id_parse(&id, value, strlen(value), &why) != WEFT_OK || spiffe_id_is_td(&id)) {
            snprintf(err, err_len, "--id %.200s: not a SPIFFE ID with a path", value);
            return WEFT_EINVAL;
        }
        snprintf(out, out_len, "%s", id.str);
        return WEFT_OK;
    case CA_REVOKE_SERIAL: {
        size_t n = 0;
        for (const char *p = value; *p != '\0'; p++) {
            char c = *p >= 'A' && *p <= 'F' ? (char)(*p - 'A' + 'a') : *p;
            if (c == ':') {
                continue;
            }
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n + 1 >= out_len ||
                n >= 2 * CA_SERIAL_MAX) {
                snprintf(err, err_len, "--serial %.80s: not up to 20 bytes of hex", value);
                return WEFT_EINVAL;
            }
            out[n++] = c;
        }
        out[n] = '\0';
        if (n == 0) {
            snprintf(err, err_len, "--serial: empty");
            return WEFT_EINVAL;
        }
        return WEFT_OK;
    }
    case CA_REVOKE_NODE:
        if (!is_dns_subdomain(value)) {
            snprintf(err, err_len, "--node %.80s: not a node name", value);
            return WEFT_EINVAL;
        }
        snprintf(out, out_len, "%s", value);
        return WEFT_OK;
    }
    snprintf(err, err_len, "unknown revocation kind %d", (int)kind);
    return WEFT_EINVAL;
}

int ca_revoke(struct ca_store *s, enum ca_revocation_kind kind, const char *value, int64_t now,
              struct ca_revocation *out, char *err, size_t err_len)
{
    struct ca_revocation r = {.kind = kind, .created_at = now};
    TRY(canonical_revocation(r.value, sizeof(r.value), kind, value, err, err_len));
    /* The item lives until the latest notAfter among the certificates it affects, and at least
     * one longest SVID lifetime (plus the signer's minute of backdating) from now: a mint that
     * passed its revocation check just before this call may record its certificate just
     * after, and it must be covered too. */
    r.drop_after = now + CA_MAX_SVID_TTL_S + 60;
    int64_t latest;
    int rc = ca_store_latest_not_after(s, kind, r.value, &latest);
    if (rc == WEFT_OK && latest > r.drop_after) {
        r.drop_after = latest;
    } else if (rc != WEFT_OK && rc != WEFT_ENOTFOUND) {
        snprintf(err, err_len, "%.250s", s->err);
        return rc;
    }
    rc = ca_store_revoke(s, &r);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "%.250s", s->err);
    } else if (out != NULL) {
        *out = r;
    }
    return rc;
}

int ca_may_issue(struct ca_store *s, const char *spiffe_id, const char *node, char *err,
                 size_t err_len)
{
    bool id_revoked = false, node_revoked = false;
    if (ca_store_is_revoked(s, CA_REVOKE_ID, spiffe_id, &id_revoked) != WEFT_OK ||
        ca_store_is_revoked(s, CA_REVOKE_NODE, node, &node_revoked) != WEFT_OK) {
        snprintf(err, err_len, "%.250s", s->err);
        return WEFT_EIO;
    }
    if (id_revoked || node_revoked) {
        snprintf(err, err_len, "%.200s %s revoked", id_revoked ? spiffe_id : node,
                 id_revoked ? "is" : "(the node) is");
        return WEFT_EPOLICY;
    }
    return WEFT_OK;
}
