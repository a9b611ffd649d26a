/* Kubernetes projected service account tokens (ca/psat.h). The JWS mechanics (base64url, JWK
 * import, signature checks, ES256's R || S) are lib/spiffe/jwt.h's; what is here is the
 * policy: which algorithms, keys, issuer, audience, times and Kubernetes claims are accepted.
 * The claim layout is that of kube-apiserver's serviceaccount.privateClaims
 * (pkg/serviceaccount/claims.go): {"kubernetes.io": {"namespace", "node": {"name", "uid"},
 * "pod": {"name", "uid"}, "serviceaccount": {"name", "uid"}}}. */
#include "ca/psat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "ca/core.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/spiffe/jwt.h"

#define SHOWN 64                            /* bytes of an outside string shown in a message */
#define MAX_NUMERIC_DATE ((int64_t)1 << 40) /* seconds: year 36812 */

static bool depth_ok(const uint8_t *s, size_t len, size_t max);
static json_t *parse_object(const uint8_t *s, size_t len, const char *what, char *err,
                            size_t err_len);
static const char *shown(char buf[SHOWN + 3], const json_t *v);
static const char *shown_str(char buf[SHOWN + 1], const char *s, size_t len);
static int load_key(struct ca_psat *p, const json_t *jwk, size_t i, char *err, size_t err_len);

/* depth_ok reports whether the JSON text |s| nests arrays and objects at most |max| deep.
 * jansson's own bound is 2048; a token or JWKS needs far less, and this runs before parsing. */
static bool depth_ok(const uint8_t *s, size_t len, size_t max)
{
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (in_string) {
            if (c == '\\') {
                i++; /* the escaped character cannot end the string */
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                return false;
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return true;
}

static json_t *parse_object(const uint8_t *s, size_t len, const char *what, char *err,
                            size_t err_len)
{
    if (!depth_ok(s, len, CA_PSAT_MAX_DEPTH)) {
        snprintf(err, err_len, "%s nests JSON deeper than %d", what, CA_PSAT_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb((const char *)s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        snprintf(err, err_len, "%s is not JSON: %s (line %d, column %d)", what, jerr.text,
                 jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(err, err_len, "%s is not a JSON object", what);
        return NULL;
    }
    return v;
}

/* shown copies at most SHOWN bytes of the string |v| for a message, anything outside printable
 * ASCII replaced by '?' (an outside party's string must not write control characters into a
 * log); "(missing)" or "(not a string)" otherwise. */
static const char *shown(char buf[SHOWN + 3], const json_t *v)
{
    if (v == NULL) {
        return "(missing)";
    }
    if (!json_is_string(v)) {
        return "(not a string)";
    }
    buf[0] = '"';
    shown_str(buf + 1, json_string_value(v), json_string_length(v));
    strcat(buf, "\"");
    return buf;
}

static const char *shown_str(char buf[SHOWN + 1], const char *s, size_t len)
{
    size_t n = len < SHOWN ? len : SHOWN;
    for (size_t i = 0; i < n; i++) {
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    }
    buf[n] = '\0';
    return buf;
}

/* --- configuration ------------------------------------------------------------------------ */

/* skip_key warns that keys[|i|] of the JWKS is left out, and why. */
static void skip_key(const json_t *kid, size_t i, const char *why)
{
    char idx[24], buf[SHOWN + 1];
    snprintf(idx, sizeof(idx), "%zu", i);
    weft_log(WEFT_LOG_WARN, "JWKS key skipped: not usable for service account tokens", 3, "key",
             idx, "kid",
             kid != NULL ? shown_str(buf, json_string_value(kid), json_string_length(kid)) : "",
             "reason", why);
}

/* load_key adds keys[|i|] of the JWKS to |p|. A key this validator cannot use (another `use`,
 * an algorithm other than RS256 and ES256, a key type or curve neither suits, a JWK BoringSSL
 * does not import) is skipped with a warning: kube-apiserver may publish such keys next to
 * the ones it signs with, and they must not make the whole JWKS unusable. A JWKS that is not
 * well formed (a key that is not an object, a bad or repeated kid) is refused. */
static int load_key(struct ca_psat *p, const json_t *jwk, size_t i, char *err, size_t err_len)
{
    char buf[SHOWN + 3], why_skip[320];
    if (!json_is_object(jwk)) {
        snprintf(err, err_len, "JWKS keys[%zu] is not an object", i);
        return WEFT_EINVAL;
    }
    const json_t *kid = json_object_get(jwk, "kid"), *use = json_object_get(jwk, "use"),
                 *alg = json_object_get(jwk, "alg");
    if (kid != NULL && (!json_is_string(kid) || json_string_length(kid) == 0 ||
                        json_string_length(kid) > CA_PSAT_KID_MAX ||
                        strlen(json_string_value(kid)) != json_string_length(kid))) {
        snprintf(err, err_len, "JWKS keys[%zu]: kid must be a string of 1 to %d bytes", i,
                 CA_PSAT_KID_MAX);
        return WEFT_EINVAL;
    }
    for (size_t k = 0; kid != NULL && k < p->num_keys; k++) {
        if (strcmp(p->keys[k].kid, json_string_value(kid)) == 0) {
            snprintf(err, err_len, "JWKS keys[%zu]: kid %s is there twice", i, shown(buf, kid));
            return WEFT_EINVAL;
        }
    }
    if (use != NULL && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0)) {
        snprintf(why_skip, sizeof(why_skip), "use %s is not \"sig\"", shown(buf, use));
        skip_key(kid, i, why_skip);
        return WEFT_OK;
    }
    if (alg != NULL && (!json_is_string(alg) || (strcmp(json_string_value(alg), "RS256") != 0 &&
                                                 strcmp(json_string_value(alg), "ES256") != 0))) {
        snprintf(why_skip, sizeof(why_skip), "alg %s is not RS256 or ES256", shown(buf, alg));
        skip_key(kid, i, why_skip);
        return WEFT_OK;
    }
    struct spiffe_why why;
    spiffe_why_clear(&why);
    EVP_PKEY *pub = spiffe_jwk_import(jwk, &why);
    if (pub == NULL) {
        skip_key(kid, i, why.msg);
        return WEFT_OK;
    }
    if (!spiffe_jws_alg_suits("RS256", pub) && !spiffe_jws_alg_suits("ES256", pub)) {
        EVP_PKEY_free(pub);
        skip_key(kid, i, "neither RS256 nor ES256 can use this key (ES384's P-384, say)");
        return WEFT_OK;
    }
    struct ca_psat_key *key = &p->keys[p->num_keys++];
    snprintf(key->kid, sizeof(key->kid), "%s", kid != NULL ? json_string_value(kid) : "");
    snprintf(key->alg, sizeof(key->alg), "%s", alg != NULL ? json_string_value(alg) : "");
    key->pub = pub;
    return WEFT_OK;
}

/* valid_name checks the |len| bytes at |s|: 1 to |max| lowercase letters, digits, '-' and '.'
 * (a Kubernetes name's alphabet). */
static bool valid_name(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
            return false;
        }
    }
    return true;
}

/* valid_sa checks "NS:NAME", both Kubernetes names. */
static bool valid_sa(const char *sa)
{
    const char *colon = strchr(sa, ':');
    return colon != NULL && valid_name(sa, (size_t)(colon - sa), CA_PSAT_NAME_MAX) &&
           valid_name(colon + 1, strlen(colon + 1), CA_PSAT_NAME_MAX);
}

int ca_psat_init(struct ca_psat *p, const struct ca_psat_config *cfg, char *err, size_t err_len)
{
    memset(p, 0, sizeof(*p));
    const char *audience = cfg->audience != NULL ? cfg->audience : CA_PSAT_DEFAULT_AUDIENCE;
    if (cfg->issuer == NULL || cfg->issuer[0] == '\0' || strlen(cfg->issuer) > CA_PSAT_ISSUER_MAX) {
        snprintf(err, err_len, "--psat-issuer: an issuer URL of 1 to %d bytes is needed",
                 CA_PSAT_ISSUER_MAX);
        return WEFT_EINVAL;
    }
    if (audience[0] == '\0' || strlen(audience) > CA_PSAT_AUDIENCE_MAX) {
        snprintf(err, err_len, "--psat-audience: 1 to %d bytes", CA_PSAT_AUDIENCE_MAX);
        return WEFT_EINVAL;
    }
    if (cfg->num_allowed_sa > CA_PSAT_MAX_ALLOWED) {
        snprintf(err, err_len, "--psat-allowed-sa: at most %d", CA_PSAT_MAX_ALLOWED);
        return WEFT_ELIMIT;
    }
    const char *cluster = cfg->cluster != NULL ? cfg->cluster : CA_PSAT_DEFAULT_CLUSTER;
    if (!valid_name(cluster, strlen(cluster), CA_PSAT_CLUSTER_MAX)) {
        snprintf(err, err_len,
                 "--psat-cluster %.80s: 1 to %d lowercase letters, digits, '-' and '.'", cluster,
                 CA_PSAT_CLUSTER_MAX);
        return WEFT_EINVAL;
    }
    snprintf(p->issuer, sizeof(p->issuer), "%s", cfg->issuer);
    snprintf(p->audience, sizeof(p->audience), "%s", audience);
    snprintf(p->cluster, sizeof(p->cluster), "%s", cluster);
    for (size_t i = 0; i < cfg->num_allowed_sa; i++) {
        if (!valid_sa(cfg->allowed_sa[i])) {
            snprintf(err, err_len, "--psat-allowed-sa %.80s: not NAMESPACE:SERVICEACCOUNT",
                     cfg->allowed_sa[i]);
            return WEFT_EINVAL;
        }
        snprintf(p->allowed[i], sizeof(p->allowed[i]), "%s", cfg->allowed_sa[i]);
    }
    p->num_allowed = cfg->num_allowed_sa;
    if (p->num_allowed == 0) {
        snprintf(p->allowed[0], sizeof(p->allowed[0]), "%s", CA_PSAT_DEFAULT_SA);
        p->num_allowed = 1;
    }
    if (cfg->jwks_len > CA_PSAT_MAX_JWKS) {
        snprintf(err, err_len, "the JWKS is %zu bytes, over %d", cfg->jwks_len, CA_PSAT_MAX_JWKS);
        return WEFT_ELIMIT;
    }
    json_t *doc = parse_object(cfg->jwks, cfg->jwks_len, "the JWKS", err, err_len);
    if (doc == NULL) {
        return WEFT_EINVAL;
    }
    int rc = WEFT_EINVAL;
    const json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0) {
        snprintf(err, err_len, "the JWKS needs a non-empty \"keys\" array");
        goto out;
    }
    if (json_array_size(keys) > CA_PSAT_MAX_KEYS) {
        snprintf(err, err_len, "the JWKS has %zu keys, over %d", json_array_size(keys),
                 CA_PSAT_MAX_KEYS);
        rc = WEFT_ELIMIT;
        goto out;
    }
    for (size_t i = 0; i < json_array_size(keys); i++) {
        if ((rc = load_key(p, json_array_get(keys, i), i, err, err_len)) != WEFT_OK) {
            goto out;
        }
    }
    if (p->num_keys == 0) {
        snprintf(err, err_len,
                 "the JWKS has no key usable for service account tokens (RS256 or ES256, use "
                 "\"sig\"): see the warnings above for each key skipped");
        rc = WEFT_EINVAL;
        goto out;
    }
    rc = WEFT_OK;
out:
    json_decref(doc);
    if (rc != WEFT_OK) {
        ca_psat_cleanup(p);
    }
    return rc;
}

void ca_psat_cleanup(struct ca_psat *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->num_keys; i++) {
        EVP_PKEY_free(p->keys[i].pub);
    }
    free(p->bindings);
    memset(p, 0, sizeof(*p));
}

int ca_psat_reload(struct ca_psat *p, const struct ca_psat_config *cfg, char *err, size_t err_len)
{
    struct ca_psat *fresh = weft_xmalloc(sizeof(*fresh));
    int rc = ca_psat_init(fresh, cfg, err, err_len);
    if (rc == WEFT_OK) {
        fresh->bindings = p->bindings;
        fresh->num_bindings = p->num_bindings;
        fresh->next_seq = p->next_seq;
        p->bindings = NULL;
        p->num_bindings = 0;
        ca_psat_cleanup(p);
        memcpy(p, fresh, sizeof(*p));
    }
    free(fresh);
    return rc;
}

bool ca_psat_allows(const struct ca_psat *p, const char *ns_sa)
{
    for (size_t i = 0; i < p->num_allowed; i++) {
        if (strcmp(p->allowed[i], ns_sa) == 0) {
            return true;
        }
    }
    return false;
}

/* --- node selectors ----------------------------------------------------------------------- */

/* The keys of the node selectors a token reports, in the order ca_psat_node_selectors writes
 * them. */
static const char *const selector_keys[CA_PSAT_NUM_NODE_SELECTORS] = {"cluster", "agent_ns",
                                                                      "agent_sa"};

size_t ca_psat_node_selectors(const struct ca_psat *p, const struct ca_psat_claims *c,
                              char out[CA_PSAT_NUM_NODE_SELECTORS][CA_SELECTOR_MAX + 1])
{
    const char *values[CA_PSAT_NUM_NODE_SELECTORS] = {p->cluster, c->namespace, c->service_account};
    size_t num = 0;
    for (size_t i = 0; i < CA_PSAT_NUM_NODE_SELECTORS; i++) {
        int n = snprintf(out[num], CA_SELECTOR_MAX + 1, CA_PSAT_SELECTOR_TYPE ":%s:%s",
                         selector_keys[i], values[i]);
        /* one longer than an entry's node selector can be would match no entry */
        if (n > 0 && n <= CA_SELECTOR_MAX) {
            num++;
        }
    }
    return num;
}

int ca_psat_node_selector_check(const struct ca_psat *p, const char *sel, char *err, size_t err_len)
{
    static const char type[] = CA_PSAT_SELECTOR_TYPE ":";
    bool typed = strncmp(sel, type, sizeof(type) - 1) == 0;
    const char *key = typed ? sel + sizeof(type) - 1 : sel;
    const char *colon = typed ? strchr(key, ':') : NULL;
    if (colon == NULL) {
        snprintf(err, err_len,
                 "--node-selector %.64s: nodes report " CA_PSAT_SELECTOR_TYPE
                 ":cluster:NAME, " CA_PSAT_SELECTOR_TYPE ":agent_ns:NS and " CA_PSAT_SELECTOR_TYPE
                 ":agent_sa:NAME (from their service account token)",
                 sel);
        return WEFT_EINVAL;
    }
    const char *value = colon + 1;
    size_t key_len = (size_t)(colon - key), k;
    for (k = 0; k < CA_PSAT_NUM_NODE_SELECTORS; k++) {
        if (strlen(selector_keys[k]) == key_len && strncmp(key, selector_keys[k], key_len) == 0) {
            break;
        }
    }
    if (k == CA_PSAT_NUM_NODE_SELECTORS) {
        snprintf(err, err_len,
                 "--node-selector %.64s: no such key; " CA_PSAT_SELECTOR_TYPE
                 " has cluster, agent_ns and agent_sa",
                 sel);
        return WEFT_EINVAL;
    }
    if (!valid_name(value, strlen(value), k == 0 ? CA_PSAT_CLUSTER_MAX : CA_PSAT_NAME_MAX)) {
        snprintf(err, err_len, "--node-selector %.64s: the value is not a Kubernetes name", sel);
        return WEFT_EINVAL;
    }
    if (k == 0 && strcmp(value, p->cluster) != 0) {
        snprintf(err, err_len,
                 "--node-selector %.64s: this CA's nodes report cluster %s (weft-ca "
                 "--psat-cluster); no node would match",
                 sel, p->cluster);
        return WEFT_EINVAL;
    }
    /* agent_ns and agent_sa: one of the service accounts allowed to attest must have it */
    size_t value_len = strlen(value);
    for (size_t i = 0; k != 0 && i < p->num_allowed; i++) {
        const char *colon_sa = strchr(p->allowed[i], ':');
        const char *part = k == 1 ? p->allowed[i] : colon_sa + 1;
        size_t part_len = k == 1 ? (size_t)(colon_sa - p->allowed[i]) : strlen(part);
        if (part_len == value_len && memcmp(part, value, value_len) == 0) {
            return WEFT_OK;
        }
    }
    if (k != 0) {
        snprintf(err, err_len,
                 "--node-selector %.64s: no service account allowed to attest nodes (weft-ca "
                 "--psat-allowed-sa) has that %s; no node would match",
                 sel, k == 1 ? "namespace" : "name");
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* --- validation --------------------------------------------------------------------------- */

/* check_header accepts RS256 and ES256 only, and says which keys to try: the one named by
 * `kid`, or (|*out_kid| NULL) all of them. */
static int check_header(const struct ca_psat *p, const json_t *header, const char **out_alg,
                        const char **out_kid, char *err, size_t err_len)
{
    char buf[SHOWN + 3];
    const json_t *alg = json_object_get(header, "alg"), *kid = json_object_get(header, "kid"),
                 *typ = json_object_get(header, "typ");
    /* RFC 8725 §3.1: the algorithms are ours to choose. "none", HS256 (which a verifier holding
     * an RSA public key might be tricked into using as an HMAC secret) and the rest stop here. */
    if (!json_is_string(alg) ||
        (strcmp(json_string_value(alg), "RS256") != 0 &&
         strcmp(json_string_value(alg), "ES256") != 0) ||
        json_string_length(alg) != 5) {
        snprintf(err, err_len, "alg %s is not accepted: RS256 or ES256 only", shown(buf, alg));
        return WEFT_EPOLICY;
    }
    if (typ != NULL && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0)) {
        snprintf(err, err_len, "typ %s is not \"JWT\"", shown(buf, typ));
        return WEFT_EPOLICY;
    }
    if (json_object_get(header, "crit") != NULL) {
        snprintf(err, err_len, "the header has crit: no JWS extension is understood");
        return WEFT_EPOLICY;
    }
    *out_alg = json_string_value(alg);
    *out_kid = NULL;
    if (kid != NULL) {
        if (!json_is_string(kid) || json_string_length(kid) == 0 ||
            strlen(json_string_value(kid)) != json_string_length(kid)) {
            snprintf(err, err_len, "kid %s is not a non-empty string", shown(buf, kid));
            return WEFT_EPOLICY;
        }
        bool known = false;
        for (size_t i = 0; i < p->num_keys && !known; i++) {
            known = strcmp(p->keys[i].kid, json_string_value(kid)) == 0;
        }
        if (!known) {
            snprintf(err, err_len, "kid %s is not in the JWKS", shown(buf, kid));
            return WEFT_EPOLICY;
        }
        *out_kid = json_string_value(kid);
    }
    return WEFT_OK;
}

/* verify tries the keys |kid| selects that suit |alg| (a JWK naming its own alg only for it). */
static bool verify(const struct ca_psat *p, const struct spiffe_jws *j, const char *alg,
                   const char *kid)
{
    for (size_t i = 0; i < p->num_keys; i++) {
        const struct ca_psat_key *k = &p->keys[i];
        if ((kid != NULL && strcmp(k->kid, kid) != 0) ||
            (k->alg[0] != '\0' && strcmp(k->alg, alg) != 0)) {
            continue;
        }
        if (spiffe_jws_verify(j, alg, k->pub)) {
            return true;
        }
    }
    return false;
}

/* get_int reads the integer claim |name|: WEFT_ENOTFOUND when absent. */
static int get_int(const json_t *claims, const char *name, int64_t *out, char *err, size_t err_len)
{
    const json_t *v = json_object_get(claims, name);
    if (v == NULL) {
        snprintf(err, err_len, "the claims need %s", name);
        return WEFT_ENOTFOUND;
    }
    /* bounded, so that no sum or difference of times below can overflow */
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > MAX_NUMERIC_DATE) {
        snprintf(err, err_len, "%s is not an integer NumericDate from 0 to 2^40", name);
        return WEFT_EPOLICY;
    }
    *out = json_integer_value(v);
    return WEFT_OK;
}

static int check_times(const json_t *claims, int64_t now, int64_t *out_exp, char *err,
                       size_t err_len)
{
    int64_t exp, iat, nbf;
    int rc;
    if ((rc = get_int(claims, "exp", &exp, err, err_len)) != WEFT_OK ||
        (rc = get_int(claims, "iat", &iat, err, err_len)) != WEFT_OK) {
        return WEFT_EPOLICY;
    }
    rc = get_int(claims, "nbf", &nbf, err, err_len);
    if (rc == WEFT_ENOTFOUND) {
        nbf = iat;
    } else if (rc != WEFT_OK) {
        return WEFT_EPOLICY;
    }
    /* every time is 0..2^40 (get_int) and |now| a clock reading: no sum below overflows */
    if (exp <= iat || exp - iat > CA_PSAT_MAX_LIFETIME_S) {
        snprintf(err, err_len, "the token lives %lld s (iat %lld, exp %lld): 1 s to %d s",
                 (long long)exp - (long long)iat, (long long)iat, (long long)exp,
                 CA_PSAT_MAX_LIFETIME_S);
        return WEFT_EPOLICY;
    }
    if (iat > now + CA_PSAT_CLOCK_SKEW_S || nbf > now + CA_PSAT_CLOCK_SKEW_S) {
        snprintf(err, err_len, "the token is not valid yet (iat %lld, nbf %lld, now %lld)",
                 (long long)iat, (long long)nbf, (long long)now);
        return WEFT_EPOLICY;
    }
    if (now >= exp + CA_PSAT_CLOCK_SKEW_S) {
        snprintf(err, err_len, "the token expired (exp %lld, now %lld)", (long long)exp,
                 (long long)now);
        return WEFT_EPOLICY;
    }
    *out_exp = exp;
    return WEFT_OK;
}

static int check_audience(const struct ca_psat *p, const json_t *aud, char *err, size_t err_len)
{
    size_t len = strlen(p->audience), i;
    const json_t *a;
    if (json_is_string(aud)) {
        if (json_string_length(aud) == len &&
            memcmp(json_string_value(aud), p->audience, len) == 0) {
            return WEFT_OK;
        }
    } else if (json_is_array(aud)) {
        json_array_foreach(aud, i, a)
        {
            if (json_is_string(a) && json_string_length(a) == len &&
                memcmp(json_string_value(a), p->audience, len) == 0) {
                return WEFT_OK;
            }
        }
    } else {
        snprintf(err, err_len, "aud must be a string or an array of strings");
        return WEFT_EPOLICY;
    }
    snprintf(err, err_len, "the audience \"%s\" is not in aud", p->audience);
    return WEFT_EPOLICY;
}

/* get_name copies the string member |name| of |obj| (1..|max| bytes, no NUL) into |out|. */
static int get_name(char *out, size_t max, const json_t *obj, const char *name, const char *what,
                    char *err, size_t err_len)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, err_len, "%s must be a string of 1 to %zu bytes", what, max);
        return WEFT_EPOLICY;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return WEFT_OK;
}

static int check_kubernetes(const struct ca_psat *p, const json_t *claims,
                            struct ca_psat_claims *out, char *err, size_t err_len)
{
    const json_t *k8s = json_object_get(claims, "kubernetes.io");
    if (!json_is_object(k8s)) {
        snprintf(err, err_len,
                 "the claims need a kubernetes.io object: not a service account "
                 "token");
        return WEFT_EPOLICY;
    }
    const json_t *sa = json_object_get(k8s, "serviceaccount"), *pod = json_object_get(k8s, "pod"),
                 *node = json_object_get(k8s, "node");
    if (!json_is_object(sa) || !json_is_object(pod)) {
        snprintf(err, err_len,
                 "kubernetes.io needs serviceaccount and pod objects: the token "
                 "must be a projected (pod-bound) one");
        return WEFT_EPOLICY;
    }
    if (!json_is_object(node)) {
        snprintf(err, err_len,
                 "kubernetes.io has no node object: the node name comes from it "
                 "(Kubernetes 1.30+, ServiceAccountTokenPodNodeInfo)");
        return WEFT_EPOLICY;
    }
    TRY(get_name(out->namespace, CA_PSAT_NAME_MAX, k8s, "namespace", "kubernetes.io.namespace", err,
                 err_len));
    TRY(get_name(out->service_account, CA_PSAT_NAME_MAX, sa, "name",
                 "kubernetes.io.serviceaccount.name", err, err_len));
    TRY(get_name(out->pod_name, CA_PSAT_NAME_MAX, pod, "name", "kubernetes.io.pod.name", err,
                 err_len));
    TRY(get_name(out->pod_uid, CA_PSAT_UID_MAX, pod, "uid", "kubernetes.io.pod.uid", err, err_len));
    TRY(get_name(out->node_name, CA_NODE_NAME_MAX, node, "name", "kubernetes.io.node.name", err,
                 err_len));
    TRY(get_name(out->node_uid, CA_PSAT_UID_MAX, node, "uid", "kubernetes.io.node.uid", err,
                 err_len));
    /* kube-apiserver sets sub to exactly this (serviceaccount.MakeUsername) */
    char sub[sizeof("system:serviceaccount:") + 2 * CA_PSAT_NAME_MAX + 1];
    snprintf(sub, sizeof(sub), "system:serviceaccount:%s:%s", out->namespace, out->service_account);
    const json_t *jsub = json_object_get(claims, "sub");
    if (!json_is_string(jsub) || strcmp(json_string_value(jsub), sub) != 0 ||
        json_string_length(jsub) != strlen(sub)) {
        snprintf(err, err_len, "sub does not match kubernetes.io (%.200s expected)", sub);
        return WEFT_EPOLICY;
    }
    char ns_sa[CA_PSAT_SA_MAX + 1];
    snprintf(ns_sa, sizeof(ns_sa), "%s:%s", out->namespace, out->service_account);
    if (!ca_psat_allows(p, ns_sa)) {
        char buf[SHOWN + 3];
        snprintf(err, err_len, "service account %s may not attest nodes (--psat-allowed-sa)",
                 shown_str(buf, ns_sa, strlen(ns_sa)));
        return WEFT_EPOLICY;
    }
    if (!ca_node_name_valid(out->node_name)) {
        snprintf(err, err_len, "kubernetes.io.node.name is not a node name (a DNS subdomain)");
        return WEFT_EPOLICY;
    }
    return WEFT_OK;
}

int ca_psat_validate(const struct ca_psat *p, struct ca_psat_claims *out, const char *token,
                     size_t len, int64_t now, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (len > CA_PSAT_MAX_TOKEN) {
        snprintf(err, err_len, "the service account token is %zu bytes, over %d", len,
                 CA_PSAT_MAX_TOKEN);
        return WEFT_ELIMIT;
    }
    struct spiffe_jws j;
    struct spiffe_why why;
    json_t *header = NULL, *claims = NULL;
    spiffe_why_clear(&why);
    int rc = WEFT_EPOLICY;
    if (spiffe_jws_split(&j, token, len, "the service account token", &why) != WEFT_OK) {
        snprintf(err, err_len, "%s", why.msg);
        goto out;
    }
    if ((header = parse_object(j.header, j.header_len, "the token's header", err, err_len)) ==
            NULL ||
        (claims = parse_object(j.claims, j.claims_len, "the token's claims", err, err_len)) ==
            NULL) {
        goto out;
    }
    const char *alg, *kid;
    if (check_header(p, header, &alg, &kid, err, err_len) != WEFT_OK) {
        goto out;
    }
    /* the signature before any claim: nothing unauthenticated decides more than which key */
    if (!verify(p, &j, alg, kid)) {
        snprintf(err, err_len, "the %s signature does not verify with %s", alg,
                 kid != NULL ? "the key its kid names" : "any key of the JWKS");
        goto out;
    }
    const json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), p->issuer) != 0 ||
        json_string_length(iss) != strlen(p->issuer)) {
        char buf[SHOWN + 3];
        snprintf(err, err_len, "iss %s is not the issuer %.200s", shown(buf, iss), p->issuer);
        goto out;
    }
    if (check_audience(p, json_object_get(claims, "aud"), err, err_len) != WEFT_OK ||
        check_times(claims, now, &out->exp, err, err_len) != WEFT_OK ||
        check_kubernetes(p, claims, out, err, err_len) != WEFT_OK) {
        goto out;
    }
    const json_t *jti = json_object_get(claims, "jti");
    if (json_is_string(jti) && json_string_length(jti) > 0) {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, "jti:", 4);
        SHA256_Update(&ctx, json_string_value(jti), json_string_length(jti));
        SHA256_Final(out->token_id, &ctx);
    } else {
        /* The signing input (header.payload), never the whole token: ECDSA signatures are
         * malleable (with (r, s), (r, n - s) verifies too), so hashing the signature would give
         * one token two identities, and let it bind two keys. */
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, "jws:", 4);
        SHA256_Update(&ctx, j.signing_input, j.signing_input_len);
        SHA256_Final(out->token_id, &ctx);
    }
    rc = WEFT_OK;
out:
    if (rc != WEFT_OK) {
        memset(out, 0, sizeof(*out));
    }
    json_decref(header);
    json_decref(claims);
    spiffe_jws_cleanup(&j);
    return rc;
}

/* --- replay ------------------------------------------------------------------------------- */

static void node_hash_of(uint8_t out[32], const struct ca_psat_claims *c)
{
    SHA256((const uint8_t *)c->node_name, strlen(c->node_name), out);
}

/* forget_expired drops the bindings of tokens that expired: they cannot be presented again. */
static void forget_expired(struct ca_psat *p, int64_t now)
{
    size_t kept = 0;
    for (size_t i = 0; i < p->num_bindings; i++) {
        if (p->bindings[i].expires_at > now) {
            p->bindings[kept++] = p->bindings[i];
        }
    }
    p->num_bindings = kept;
}

/* lookup finds the binding of |c|'s token (NULL: none), and the oldest binding of its node and
 * how many that node has. */
static struct ca_psat_binding *lookup(struct ca_psat *p, const struct ca_psat_claims *c,
                                      const uint8_t node_hash[32], size_t *out_num_node,
                                      size_t *out_oldest)
{
    struct ca_psat_binding *found = NULL;
    *out_num_node = 0;
    *out_oldest = SIZE_MAX;
    for (size_t i = 0; i < p->num_bindings; i++) {
        struct ca_psat_binding *b = &p->bindings[i];
        if (memcmp(b->token_id, c->token_id, sizeof(b->token_id)) == 0) {
            found = b;
        }
        if (memcmp(b->node_hash, node_hash, sizeof(b->node_hash)) == 0) {
            if (*out_oldest == SIZE_MAX || b->seq < p->bindings[*out_oldest].seq) {
                *out_oldest = i;
            }
            (*out_num_node)++;
        }
    }
    return found;
}

/* check is ca_psat_check; |record| also records the binding. */
static int check(struct ca_psat *p, const struct ca_psat_claims *c, const uint8_t key_hash[32],
                 int64_t now, bool record, char *err, size_t err_len)
{
    forget_expired(p, now);
    uint8_t node_hash[32];
    node_hash_of(node_hash, c);
    size_t num_node, oldest;
    struct ca_psat_binding *b = lookup(p, c, node_hash, &num_node, &oldest);
    if (b != NULL) {
        if (CRYPTO_memcmp(b->key_hash, key_hash, sizeof(b->key_hash)) != 0) {
            snprintf(err, err_len,
                     "this service account token (pod %s, node %s) already attested another "
                     "key: a replay",
                     c->pod_name, c->node_name);
            return WEFT_EPOLICY;
        }
        return WEFT_OK;
    }
    /* a node at its cap replaces its own oldest binding: one node (a kubelet minting tokens)
     * cannot fill the table and lock every other node out */
    bool replace = num_node >= CA_PSAT_MAX_BINDINGS_PER_NODE;
    if (!replace && p->num_bindings == CA_PSAT_MAX_BINDINGS) {
        snprintf(err, err_len, "%d unexpired service account tokens are remembered already",
                 CA_PSAT_MAX_BINDINGS);
        return WEFT_EPOLICY;
    }
    if (!record) {
        return WEFT_OK;
    }
    if (p->bindings == NULL) {
        p->bindings = weft_xcalloc(CA_PSAT_MAX_BINDINGS, sizeof(*p->bindings));
    }
    b = replace ? &p->bindings[oldest] : &p->bindings[p->num_bindings++];
    memcpy(b->token_id, c->token_id, sizeof(b->token_id));
    memcpy(b->key_hash, key_hash, sizeof(b->key_hash));
    memcpy(b->node_hash, node_hash, sizeof(b->node_hash));
    b->expires_at = c->exp + CA_PSAT_CLOCK_SKEW_S;
    b->seq = ++p->next_seq;
    return WEFT_OK;
}

int ca_psat_check(struct ca_psat *p, const struct ca_psat_claims *c, const uint8_t key_hash[32],
                  int64_t now, char *err, size_t err_len)
{
    return check(p, c, key_hash, now, false, err, err_len);
}

int ca_psat_bind(struct ca_psat *p, const struct ca_psat_claims *c, const uint8_t key_hash[32],
                 int64_t now, char *err, size_t err_len)
{
    return check(p, c, key_hash, now, true, err, err_len);
}
