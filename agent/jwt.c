/* agent/jwt.c: see jwt.h. */
#include "agent/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>

#include "lib/base/hash.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"

struct cached {
    uint64_t key;    /* hash of the identity and the audiences; 0: a free slot */
    char *entry_id;  /* "ENTRY SPIFFE_ID": an entry's ID may change */
    char *audiences; /* joined with NUL bytes, |aud_len| bytes */
    size_t aud_len;
    char *token;
    int64_t received, exp;
};

struct agent_jwt {
    char td[300]; /* "spiffe://example.org" */
    struct spiffe_bundle_set set;
    uint64_t keys_digest;
    char *jwks; /* the JWKS document FetchJWTBundles sends */
    size_t jwks_len;
    struct cached cache[AGENT_JWT_CACHE];
    struct bucket {
        uint64_t entry; /* hash of the entry ID */
        int64_t second;
        unsigned mints;
    } buckets[AGENT_JWT_BUCKETS];
    /* what the last answer points into */
    JWTBundlesResponse__BundlesEntry out_entry, *out_entry_ptr;
    Google__Protobuf__Struct *out_claims;
    char *out_sub;
};

struct agent_jwt *agent_jwt_new(const char *trust_domain)
{
    struct agent_jwt *j = weft_xcalloc(1, sizeof(*j));
    snprintf(j->td, sizeof(j->td), "spiffe://%s", trust_domain);
    spiffe_bundle_set_init(&j->set);
    return j;
}

static void cache_clear(struct agent_jwt *j)
{
    for (size_t i = 0; i < AGENT_JWT_CACHE; i++) {
        struct cached *c = &j->cache[i];
        free(c->entry_id);
        free(c->audiences);
        if (c->token != NULL) {
            memset(c->token, 0, strlen(c->token));
            free(c->token);
        }
        memset(c, 0, sizeof(*c));
    }
}

static void out_reset(struct agent_jwt *j)
{
    /* built with malloc throughout, so protobuf-c's own free takes it apart */
    if (j->out_claims != NULL) {
        protobuf_c_message_free_unpacked(&j->out_claims->base, NULL);
    }
    j->out_claims = NULL;
    free(j->out_sub);
    j->out_sub = NULL;
}

void agent_jwt_free(struct agent_jwt *j)
{
    if (j == NULL) {
        return;
    }
    cache_clear(j);
    out_reset(j);
    spiffe_bundle_set_cleanup(&j->set);
    free(j->jwks);
    free(j);
}

bool agent_jwt_set_keys(struct agent_jwt *j, Weft__Ca__V1__JwtKey *const *keys, size_t num,
                        int64_t now)
{
    uint64_t d = WEFT_FNV1A_INIT;
    for (size_t i = 0; i < num; i++) {
        if (keys[i]->not_after > now) {
            d = weft_fnv1a_str(d, keys[i]->kid);
            d = weft_fnv1a(d, keys[i]->public_key.data, keys[i]->public_key.len);
        }
    }
    if (d == j->keys_digest && j->jwks != NULL) {
        return false;
    }
    struct spiffe_id td;
    struct spiffe_why why;
    struct spiffe_bundle *b = NULL;
    if (spiffe_id_parse(&td, j->td, strlen(j->td), &why) != WEFT_OK ||
        (b = spiffe_bundle_new(&td)) == NULL) {
        weft_log(WEFT_LOG_ERROR, "cannot hold the JWT keys", 1, "trust_domain", j->td);
        return false;
    }
    for (size_t i = 0; i < num; i++) {
        const Weft__Ca__V1__JwtKey *k = keys[i];
        CBS cbs;
        CBS_init(&cbs, k->public_key.data, k->public_key.len);
        EVP_PKEY *pub = k->not_after > now ? EVP_parse_public_key(&cbs) : NULL;
        json_t *jwk = pub != NULL && CBS_len(&cbs) == 0 ? spiffe_jwt_jwk(pub, k->kid) : NULL;
        if (jwk == NULL || json_array_append_new(b->other_keys, jwk) != 0) {
            if (k->not_after > now) {
                weft_log(WEFT_LOG_ERROR, "a JWT key from the CA does not decode; left out", 1,
                         "kid", k->kid);
            }
        }
        EVP_PKEY_free(pub);
    }
    char *jwks = NULL;
    size_t len = 0;
    if (spiffe_jwt_bundle_json(&jwks, &len, b) != WEFT_OK) {
        spiffe_bundle_free(b);
    }
    /* spiffe_bundle_set_put frees |b| when it fails */
    if (jwks == NULL || spiffe_bundle_set_put(&j->set, b) != WEFT_OK) {
        weft_log(WEFT_LOG_ERROR, "cannot hold the JWT keys", 1, "trust_domain", j->td);
        free(jwks);
        return false;
    }
    free(j->jwks);
    j->jwks = jwks;
    j->jwks_len = len;
    j->keys_digest = d;
    cache_clear(j); /* a token signed by a key no longer published is not handed out */
    return true;
}

bool agent_jwt_ready(const struct agent_jwt *j) { return j->jwks != NULL; }

int agent_jwt_check_request(char *const *audience, size_t num, char *why, size_t why_len)
{
    if (num == 0) {
        snprintf(why, why_len, "audience is required");
        return WEFT_EINVAL;
    }
    if (num > SPIFFE_JWT_MAX_AUDIENCES) {
        snprintf(why, why_len, "%zu audiences; at most %d", num, SPIFFE_JWT_MAX_AUDIENCES);
        return WEFT_EINVAL;
    }
    for (size_t i = 0; i < num; i++) {
        size_t len = strlen(audience[i]);
        if (len == 0 || len > SPIFFE_JWT_MAX_AUDIENCE) {
            snprintf(why, why_len, "audience %zu is %s", i + 1,
                     len == 0 ? "empty" : "over 256 bytes");
            return WEFT_EINVAL;
        }
    }
    return WEFT_OK;
}

/* ident writes the cache's name for an identity: its entry and its SPIFFE ID. */
static void ident(char *out, size_t cap, const char *entry_id, const char *spiffe_id)
{
    snprintf(out, cap, "%s %s", entry_id, spiffe_id);
}

/* key_of hashes an identity and its audiences; never 0 (a free slot). */
static uint64_t key_of(const char *id, char *const *audience, size_t num)
{
    uint64_t h = weft_fnv1a_str(WEFT_FNV1A_INIT, id);
    for (size_t i = 0; i < num; i++) {
        h = weft_fnv1a_str(h, audience[i]);
    }
    return h != 0 ? h : 1;
}

bool agent_jwt_admit(struct agent_jwt *j, const char *entry_id, int64_t now)
{
    uint64_t e = weft_fnv1a_str(WEFT_FNV1A_INIT, entry_id);
    struct bucket *b = &j->buckets[e % AGENT_JWT_BUCKETS];
    if (b->entry != e || b->second != now) {
        b->entry = e;
        b->second = now;
        b->mints = 0;
    }
    return ++b->mints <= AGENT_JWT_MINTS_PER_S;
}

static bool same(const struct cached *c, const char *entry_id, char *const *audience, size_t num)
{
    if (strcmp(c->entry_id, entry_id) != 0) {
        return false;
    }
    size_t off = 0;
    for (size_t i = 0; i < num; i++) {
        size_t len = strlen(audience[i]) + 1;
        if (off + len > c->aud_len || memcmp(c->audiences + off, audience[i], len) != 0) {
            return false;
        }
        off += len;
    }
    return off == c->aud_len;
}

const char *agent_jwt_cached(struct agent_jwt *j, const char *entry_id, const char *spiffe_id,
                             char *const *audience, size_t num, int64_t now)
{
    char id[2200];
    ident(id, sizeof(id), entry_id, spiffe_id);
    uint64_t k = key_of(id, audience, num);
    for (size_t i = 0; i < AGENT_JWT_CACHE; i++) {
        const struct cached *c = &j->cache[i];
        if (c->key == k && same(c, id, audience, num)) {
            return now < c->received + (c->exp - c->received) / 2 ? c->token : NULL;
        }
    }
    return NULL;
}

void agent_jwt_keep(struct agent_jwt *j, const char *entry_id, const char *spiffe_id,
                    char *const *audience, size_t num, const char *token, int64_t now, int64_t exp)
{
    char id[2200];
    ident(id, sizeof(id), entry_id, spiffe_id);
    uint64_t k = key_of(id, audience, num);
    struct cached *slot = &j->cache[0];
    for (size_t i = 0; i < AGENT_JWT_CACHE; i++) {
        struct cached *c = &j->cache[i];
        if (c->key == k && same(c, id, audience, num)) {
            slot = c;
            break;
        }
        if (c->key == 0 || c->received < slot->received) {
            slot = c; /* a free slot, or else the oldest */
        }
    }
    free(slot->entry_id);
    free(slot->audiences);
    if (slot->token != NULL) {
        memset(slot->token, 0, strlen(slot->token));
        free(slot->token);
    }
    size_t aud_len = 0;
    for (size_t i = 0; i < num; i++) {
        aud_len += strlen(audience[i]) + 1;
    }
    slot->audiences = weft_xmalloc(aud_len + 1);
    size_t off = 0;
    for (size_t i = 0; i < num; i++) {
        size_t len = strlen(audience[i]) + 1;
        memcpy(slot->audiences + off, audience[i], len);
        off += len;
    }
    slot->aud_len = aud_len;
    slot->key = k;
    slot->entry_id = weft_xstrndup(id, strlen(id));
    slot->token = weft_xstrndup(token, strlen(token));
    slot->received = now;
    slot->exp = exp;
}

size_t agent_jwt_bundles(struct agent_jwt *j, JWTBundlesResponse *resp)
{
    if (j->jwks == NULL) {
        return 0;
    }
    jwtbundles_response__bundles_entry__init(&j->out_entry);
    j->out_entry.key = j->td;
    j->out_entry.value = (ProtobufCBinaryData){j->jwks_len, (uint8_t *)j->jwks};
    j->out_entry_ptr = &j->out_entry;
    resp->bundles = &j->out_entry_ptr;
    resp->n_bundles = 1;
    return 1;
}

/* --- claims as a google.protobuf.Struct ------------------------------------------------------ */

static Google__Protobuf__Struct *claims_struct(json_t *obj, int depth);

static Google__Protobuf__Value *claims_value(json_t *v, int depth)
{
    Google__Protobuf__Value *out = weft_xcalloc(1, sizeof(*out));
    google__protobuf__value__init(out);
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        out->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        out->struct_value = claims_struct(v, depth + 1);
        break;
    case JSON_ARRAY: {
        out->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        Google__Protobuf__ListValue *l = weft_xcalloc(1, sizeof(*l));
        google__protobuf__list_value__init(l);
        size_t n = depth < AGENT_JWT_CLAIMS_DEPTH ? json_array_size(v) : 0;
        l->values = weft_xcalloc(n + 1, sizeof(*l->values));
        for (size_t i = 0; i < n; i++) {
            l->values[l->n_values++] = claims_value(json_array_get(v, i), depth + 1);
        }
        out->list_value = l;
        break;
    }
    case JSON_STRING:
        out->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        out->string_value = weft_xstrndup(json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        out->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        out->number_value = json_number_value(v);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        out->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        out->bool_value = json_is_true(v);
        break;
    case JSON_NULL:
        out->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        out->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        break;
    }
    return out;
}

/* claims_struct converts a JSON object; below AGENT_JWT_CLAIMS_DEPTH levels nesting is cut
 * (an empty struct or list stands for what is deeper). */
static Google__Protobuf__Struct *claims_struct(json_t *obj, int depth)
{
    Google__Protobuf__Struct *s = weft_xcalloc(1, sizeof(*s));
    google__protobuf__struct__init(s);
    size_t n = depth < AGENT_JWT_CLAIMS_DEPTH ? json_object_size(obj) : 0;
    s->fields = weft_xcalloc(n + 1, sizeof(*s->fields));
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (s->n_fields == n) {
            break;
        }
        Google__Protobuf__Struct__FieldsEntry *e = weft_xcalloc(1, sizeof(*e));
        google__protobuf__struct__fields_entry__init(e);
        e->key = weft_xstrndup(key, strlen(key));
        e->value = claims_value(v, depth);
        s->fields[s->n_fields++] = e;
    }
    return s;
}

int agent_jwt_validate(struct agent_jwt *j, const char *token, const char *audience, int64_t now,
                       ValidateJWTSVIDResponse *resp, char *why, size_t why_len)
{
    out_reset(j);
    struct spiffe_jwt_svid svid;
    struct spiffe_why w;
    if (spiffe_jwt_validate(&svid, token, strlen(token), audience, &j->set, now, &w) != WEFT_OK) {
        snprintf(why, why_len, "%s (%s)", w.msg, spiffe_rule_ref(w.rule));
        return WEFT_EINVAL;
    }
    j->out_sub = weft_xstrndup(svid.sub.str, svid.sub.len);
    j->out_claims = claims_struct(svid.claims, 0);
    spiffe_jwt_svid_cleanup(&svid);
    resp->spiffe_id = j->out_sub;
    resp->claims = j->out_claims;
    return WEFT_OK;
}
