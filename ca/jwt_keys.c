/* The published JWT-SVID keys (ca/jwt_keys.h). */
#include "ca/jwt_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/base64.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>

#include "lib/base/mem.h"

#define ENCODING_HEADER "weft-jwt-keys 1"
#define MAX_LINE (64 + 4 * ((CA_JWT_MAX_SPKI + 2) / 3))
#define MAX_TIME 253402300799LL /* 9999-12-31T23:59:59Z, as ca/rotation.h */

static EVP_PKEY *parse_p256(const uint8_t *spki, size_t len);
static int find(const struct ca_jwt_keys *k, const char *kid);
static void drop(struct ca_jwt_keys *k, size_t i);
static size_t make_room(struct ca_jwt_keys *k);
static void order(struct ca_jwt_keys *k);

const char *ca_jwt_keys_role_name(enum ca_jwt_role r)
{
    switch (r) {
    case CA_JWT_CURRENT:
        return "current";
    case CA_JWT_NEXT:
        return "next";
    case CA_JWT_RETIRED:
        return "retired";
    }
    return "?";
}

/* held_key fills |out| (role |role|) from what the signer holds; false when it holds nothing
 * there, WEFT_EINVAL in |*rc| for a key that is not EC P-256. */
static bool held_key(struct ca_jwt_key *out, const struct ca_jwt_held *h, enum ca_jwt_role role,
                     int *rc)
{
    if (h == NULL || h->spki_len == 0) {
        return false;
    }
    EVP_PKEY *pub = h->spki_len <= CA_JWT_MAX_SPKI ? parse_p256(h->spki, h->spki_len) : NULL;
    memset(out, 0, sizeof(*out));
    if (pub == NULL || spiffe_jwt_kid(pub, out->kid) != WEFT_OK) {
        EVP_PKEY_free(pub);
        *rc = WEFT_EINVAL;
        return false;
    }
    EVP_PKEY_free(pub);
    out->role = role;
    memcpy(out->spki, h->spki, h->spki_len);
    out->spki_len = h->spki_len;
    out->not_after = h->not_after;
    return true;
}

int ca_jwt_keys_sync(struct ca_jwt_keys *k, const struct ca_jwt_held *cur,
                     const struct ca_jwt_held *next, int64_t now, int64_t ttl_s, bool *out_changed,
                     size_t *out_evicted)
{
    *out_changed = false;
    *out_evicted = 0;
    struct ca_jwt_key c, n;
    int rc = WEFT_OK;
    bool has_c = held_key(&c, cur, CA_JWT_CURRENT, &rc);
    bool has_n = held_key(&n, next, CA_JWT_NEXT, &rc);
    if (rc != WEFT_OK) {
        return rc;
    }
    struct ca_jwt_keys before = *k;
    for (size_t i = 0; i < k->num;) {
        struct ca_jwt_key *key = &k->keys[i];
        if (has_c && strcmp(key->kid, c.kid) == 0) {
            key->role = CA_JWT_CURRENT;
            key->not_after = c.not_after;
        } else if (has_n && strcmp(key->kid, n.kid) == 0) {
            key->role = CA_JWT_NEXT;
            key->not_after = n.not_after;
        } else if (key->role == CA_JWT_CURRENT) {
            /* it signed until now: its tokens live at most |ttl_s| more */
            key->role = CA_JWT_RETIRED;
            key->not_after = now + ttl_s < key->not_after ? now + ttl_s : key->not_after;
        } else if (key->role == CA_JWT_NEXT) {
            drop(k, i); /* replaced before it signed anything */
            continue;
        }
        i++;
    }
    if (has_c && find(k, c.kid) < 0) {
        *out_evicted += make_room(k);
        k->keys[k->num++] = c;
    }
    if (has_n && find(k, n.kid) < 0) {
        *out_evicted += make_room(k);
        k->keys[k->num++] = n;
    }
    order(k);
    *out_changed = k->num != before.num;
    for (size_t i = 0; i < k->num && !*out_changed; i++) {
        const struct ca_jwt_key *a = &k->keys[i], *b = &before.keys[i];
        *out_changed =
            a->role != b->role || a->not_after != b->not_after || strcmp(a->kid, b->kid) != 0;
    }
    return WEFT_OK;
}

size_t ca_jwt_keys_prune(struct ca_jwt_keys *k, int64_t now)
{
    size_t gone = 0;
    for (size_t i = 0; i < k->num;) {
        if (k->keys[i].not_after <= now) {
            drop(k, i);
            gone++;
        } else {
            i++;
        }
    }
    return gone;
}

const struct ca_jwt_key *ca_jwt_keys_current(const struct ca_jwt_keys *k)
{
    return k->num > 0 && k->keys[0].role == CA_JWT_CURRENT ? &k->keys[0] : NULL;
}

int ca_jwt_keys_encode(char **out, size_t *out_len, const struct ca_jwt_keys *k, int64_t ttl_s)
{
    size_t cap = 64 + k->num * MAX_LINE;
    char *buf = weft_xmalloc(cap);
    size_t pos = (size_t)snprintf(buf, cap, "%s ttl=%lld\n", ENCODING_HEADER, (long long)ttl_s);
    for (size_t i = 0; i < k->num; i++) {
        const struct ca_jwt_key *key = &k->keys[i];
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s %lld ", ca_jwt_keys_role_name(key->role),
                                (long long)key->not_after);
        size_t b64_len;
        if (!EVP_EncodedLength(&b64_len, key->spki_len) || pos + b64_len + 1 > cap) {
            free(buf);
            return WEFT_EINTERNAL;
        }
        pos += EVP_EncodeBlock((uint8_t *)buf + pos, key->spki, key->spki_len);
        buf[pos++] = '\n';
        buf[pos] = '\0';
    }
    *out = buf;
    *out_len = pos;
    return WEFT_OK;
}

/* restore_line parses "ROLE NOT_AFTER BASE64-SPKI" (|len| bytes, no newline) into |out|. */
static bool restore_line(struct ca_jwt_key *out, const char *line, size_t len)
{
    char copy[MAX_LINE];
    if (len >= sizeof(copy)) {
        return false;
    }
    memcpy(copy, line, len);
    copy[len] = '\0';
    char *sp1 = strchr(copy, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp2 == NULL) {
        return false;
    }
    *sp1 = *sp2 = '\0';
    const char *role = copy, *b64 = sp2 + 1;
    char *end;
    long long not_after = strtoll(sp1 + 1, &end, 10);
    if (*end != '\0' || end == sp1 + 1 || not_after < 0 || not_after > MAX_TIME) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    if (strcmp(role, "current") == 0) {
        out->role = CA_JWT_CURRENT;
    } else if (strcmp(role, "next") == 0) {
        out->role = CA_JWT_NEXT;
    } else if (strcmp(role, "retired") == 0) {
        out->role = CA_JWT_RETIRED;
    } else {
        return false;
    }
    size_t spki_len;
    if (!EVP_DecodeBase64(out->spki, &spki_len, sizeof(out->spki), (const uint8_t *)b64,
                          strlen(b64))) {
        ERR_clear_error();
        return false;
    }
    EVP_PKEY *pub = parse_p256(out->spki, spki_len);
    bool ok = pub != NULL && spiffe_jwt_kid(pub, out->kid) == WEFT_OK;
    EVP_PKEY_free(pub);
    out->spki_len = spki_len;
    out->not_after = not_after;
    return ok;
}

int ca_jwt_keys_restore(struct ca_jwt_keys *k, const uint8_t *data, size_t len, int64_t now,
                        char *err, size_t err_len)
{
    memset(k, 0, sizeof(*k));
    const char *p = (const char *)data, *end = p + len;
    const char *nl = memchr(p, '\n', len);
    long long ttl = -1;
    size_t hlen = strlen(ENCODING_HEADER);
    if (nl == NULL || (size_t)(nl - p) <= hlen + 5 ||
        memcmp(p, ENCODING_HEADER " ttl=", hlen + 5) || sscanf(p + hlen + 5, "%lld", &ttl) != 1 ||
        ttl < 0 || ttl > CA_JWT_MAX_TTL_S) {
        snprintf(err, err_len, "the stored JWT keys: line 1 is not \"%s ttl=N\"", ENCODING_HEADER);
        return WEFT_EINVAL;
    }
    struct ca_jwt_keys got = {0};
    unsigned line_no = 1;
    for (p = nl + 1; p < end; p = nl + 1) {
        line_no++;
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            nl = end;
        }
        struct ca_jwt_key key;
        if (!restore_line(&key, p, (size_t)(nl - p)) || find(&got, key.kid) >= 0) {
            snprintf(err, err_len, "the stored JWT keys: line %u does not parse, or repeats a key",
                     line_no);
            return WEFT_EINVAL;
        }
        if (key.role == CA_JWT_NEXT) {
            continue; /* the signer that held it is gone, and it never signed */
        }
        if (key.role == CA_JWT_CURRENT) {
            /* it may have signed until the previous process ended, before |now| */
            key.not_after = now + ttl < key.not_after ? now + ttl : key.not_after;
            key.role = CA_JWT_RETIRED;
        }
        if (key.not_after <= now) {
            continue;
        }
        make_room(&got);
        got.keys[got.num++] = key;
    }
    order(&got);
    *k = got;
    return WEFT_OK;
}

int ca_jwt_keys_add_to_bundle(const struct ca_jwt_keys *k, struct spiffe_bundle *b)
{
    for (size_t i = 0; i < k->num; i++) {
        EVP_PKEY *pub = parse_p256(k->keys[i].spki, k->keys[i].spki_len);
        json_t *jwk = pub != NULL ? spiffe_jwt_jwk(pub, k->keys[i].kid) : NULL;
        EVP_PKEY_free(pub);
        if (jwk == NULL || json_array_append_new(b->other_keys, jwk) != 0) {
            return WEFT_EINTERNAL;
        }
    }
    return WEFT_OK;
}

/* parse_p256 returns the EC P-256 public key of |spki|, or NULL. */
static EVP_PKEY *parse_p256(const uint8_t *spki, size_t len)
{
    CBS cbs;
    CBS_init(&cbs, spki, len);
    EVP_PKEY *pub = EVP_parse_public_key(&cbs);
    ERR_clear_error();
    const EC_KEY *ec = pub != NULL ? EVP_PKEY_get0_EC_KEY(pub) : NULL;
    if (ec == NULL || CBS_len(&cbs) != 0 ||
        EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1) {
        EVP_PKEY_free(pub);
        return NULL;
    }
    return pub;
}

static int find(const struct ca_jwt_keys *k, const char *kid)
{
    for (size_t i = 0; i < k->num; i++) {
        if (strcmp(k->keys[i].kid, kid) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static void drop(struct ca_jwt_keys *k, size_t i)
{
    memmove(&k->keys[i], &k->keys[i + 1], (k->num - i - 1) * sizeof(k->keys[0]));
    k->num--;
}

/* make_room drops the retired key with the earliest not_after when the list is full; returns
 * how many keys went (0 or 1). The list never fills with CURRENT and NEXT keys alone. */
static size_t make_room(struct ca_jwt_keys *k)
{
    if (k->num < CA_JWT_MAX_KEYS) {
        return 0;
    }
    size_t oldest = k->num;
    for (size_t i = 0; i < k->num; i++) {
        if (k->keys[i].role == CA_JWT_RETIRED &&
            (oldest == k->num || k->keys[i].not_after < k->keys[oldest].not_after)) {
            oldest = i;
        }
    }
    drop(k, oldest < k->num ? oldest : k->num - 1);
    return 1;
}

static int by_role_then_not_after(const void *a, const void *b)
{
    const struct ca_jwt_key *x = a, *y = b;
    if (x->role != y->role) {
        return x->role < y->role ? -1 : 1;
    }
    if (x->not_after != y->not_after) {
        return x->not_after > y->not_after ? -1 : 1;
    }
    return strcmp(x->kid, y->kid);
}

static void order(struct ca_jwt_keys *k)
{
    qsort(k->keys, k->num, sizeof(k->keys[0]), by_role_then_not_after);
}
