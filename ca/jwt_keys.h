/* ca/jwt_keys.h: the JWT-SVID signing keys a trust domain publishes (issue 11), as weft-ca
 * keeps the list: what NodeSnapshot.jwt_keys and bundle.json carry, and what the store keeps
 * across a restart.
 *
 * The private keys live only in the signer (ca/signer.h). The list holds their public halves:
 *   CURRENT  the key the signer signs with (at most one, always first);
 *   NEXT     the prepared successor, published before it signs anything, so that every agent
 *            trusts it before a token it signed exists (at most one, second);
 *   RETIRED  keys that signed tokens which may still be valid: a key that stops signing at
 *            time t stays published until t + the JWT-SVID lifetime, then it is pruned.
 * Each key's not_after is the time until which it is published: no token it signed (or will
 * sign) expires later. For CURRENT and NEXT that is the bound the signer itself enforces; it
 * shrinks to retirement + lifetime when the key retires.
 *
 * A restart loses the signer's keys. ca_jwt_keys_restore turns the list stored by the previous
 * process into RETIRED keys: its CURRENT key may have signed until the crash, so it is kept
 * for one lifetime (the one stored with it) from the restart, and its NEXT key never signed, so
 * it goes.
 *
 * Nothing here reads the clock, talks to the signer or does I/O: the daemon passes |now| and
 * what the signer holds (struct ca_signer_info), and stores what ca_jwt_keys_encode returns. */
#ifndef WEFT_CA_JWT_KEYS_H
#define WEFT_CA_JWT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/jwt.h"

#define CA_JWT_MAX_KEYS 64 /* published at once; the oldest retired key goes past this */
#define CA_JWT_MAX_SPKI 512
#define CA_JWT_DEFAULT_TTL_S 300 /* a JWT-SVID's lifetime (--jwt-ttl) */
#define CA_JWT_MIN_TTL_S 30
#define CA_JWT_MAX_TTL_S 3600

enum ca_jwt_role {
    CA_JWT_CURRENT = 0,
    CA_JWT_NEXT,
    CA_JWT_RETIRED,
};

struct ca_jwt_key {
    enum ca_jwt_role role;
    char kid[SPIFFE_JWT_KID_LEN + 1]; /* spiffe_jwt_kid of the key */
    uint8_t spki[CA_JWT_MAX_SPKI];    /* DER SubjectPublicKeyInfo */
    size_t spki_len;
    int64_t not_after; /* published until then */
};

/* struct ca_jwt_keys: CURRENT first, then NEXT, then RETIRED keys, latest not_after first. A
 * zeroed struct is an empty list. */
struct ca_jwt_keys {
    struct ca_jwt_key keys[CA_JWT_MAX_KEYS];
    size_t num;
};

/* struct ca_jwt_held is one key the signer holds: its public key and not_after (see
 * struct ca_signer_info). */
struct ca_jwt_held {
    const uint8_t *spki;
    size_t spki_len;
    int64_t not_after;
};

/* ca_jwt_keys_role_name returns "current", "next" or "retired" ("?" otherwise); static. */
const char *ca_jwt_keys_role_name(enum ca_jwt_role r);

/* ca_jwt_keys_sync makes |k| agree with what the signer holds at |now|: |cur| the key it signs
 * with, |next| its prepared successor (either NULL or of length 0 for none).
 *  - |cur| and |next| are listed in their roles with their not_after (added if new);
 *  - a CURRENT key that is no longer the signer's retires: published until
 *    min(its not_after, |now| + |ttl_s|), |ttl_s| being the longest JWT-SVID lifetime the
 *    signer allowed;
 *  - a NEXT key the signer no longer holds never signed anything: it is dropped.
 * |*out_changed| says whether anything published changed (a key, a role, a not_after or the
 * order). When a new key finds the list full, the retired key with the earliest not_after is
 * dropped and counted in |*out_evicted|. WEFT_EINVAL (|k| unchanged) for a key that is not an
 * EC P-256 SubjectPublicKeyInfo of at most CA_JWT_MAX_SPKI bytes. */
WEFT_MUST_USE int ca_jwt_keys_sync(struct ca_jwt_keys *k, const struct ca_jwt_held *cur,
                                   const struct ca_jwt_held *next, int64_t now, int64_t ttl_s,
                                   bool *out_changed, size_t *out_evicted);

/* ca_jwt_keys_prune drops the keys whose not_after is at or before |now| (every token they
 * signed has expired); returns how many went. */
size_t ca_jwt_keys_prune(struct ca_jwt_keys *k, int64_t now);

/* ca_jwt_keys_current returns the CURRENT key, or NULL. */
const struct ca_jwt_key *ca_jwt_keys_current(const struct ca_jwt_keys *k);

/* ca_jwt_keys_encode writes |k| for the store, with |ttl_s| (the lifetime tokens are signed
 * with now, which ca_jwt_keys_restore needs): text, one key a line. Free |*out| with free(). */
WEFT_MUST_USE int ca_jwt_keys_encode(char **out, size_t *out_len, const struct ca_jwt_keys *k,
                                     int64_t ttl_s);

/* ca_jwt_keys_restore reads what ca_jwt_keys_encode wrote, as a process that starts at |now|
 * with no key in its signer finds it (see the top of this file): every key kept is RETIRED, a
 * CURRENT one published until min(its not_after, |now| + its stored lifetime), NEXT ones and
 * expired ones dropped. On WEFT_EINVAL (data that does not parse, a key whose kid does not
 * match, |err| says which line) |k| is left empty. */
WEFT_MUST_USE int ca_jwt_keys_restore(struct ca_jwt_keys *k, const uint8_t *data, size_t len,
                                      int64_t now, char *err, size_t err_len);

/* ca_jwt_keys_add_to_bundle appends a jwt-svid JWK (spiffe_jwt_jwk) for each key of |k| to
 * |b|->other_keys. */
WEFT_MUST_USE int ca_jwt_keys_add_to_bundle(const struct ca_jwt_keys *k, struct spiffe_bundle *b);

#endif
