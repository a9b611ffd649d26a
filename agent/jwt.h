/* agent/jwt.h: the agent's part of the JWT-SVID profile (issue 5; shared/reference/spiffe.md
 * §D9): the trust domain's JWT signing keys as the CA publishes them (NodeSnapshot.jwt_keys),
 * served as a JWKS by FetchJWTBundles and used by ValidateJWTSVID; and a cache of the tokens the
 * CA minted for FetchJWTSVID, so a workload that asks again for the same audience gets the same
 * token until half its life has passed, without a round trip to the CA.
 *
 * The agent never signs a JWT-SVID: the CA's signer does (MintJWTSVID), so a compromised node
 * can mint only for the entries the CA assigns to it, as with X.509-SVIDs.
 *
 * One thread uses an agent_jwt: the Workload API's. Answers point into it until the next call. */
#ifndef WEFT_AGENT_JWT_H
#define WEFT_AGENT_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "proto/ca.pb-c.h"
#include "proto/workload.pb-c.h"

#define AGENT_JWT_CACHE 256      /* tokens kept */
#define AGENT_JWT_MAX_IDS 8      /* identities one FetchJWTSVID answers for */
#define AGENT_JWT_CLAIMS_DEPTH 8 /* of the claims ValidateJWTSVID returns */
#define AGENT_JWT_MINTS_PER_S 10 /* CA mints one entry may cause in a second */
#define AGENT_JWT_BUCKETS 256

struct agent_jwt;

/* agent_jwt_new makes an empty key set for |trust_domain| ("example.org"). */
struct agent_jwt *agent_jwt_new(const char *trust_domain);
void agent_jwt_free(struct agent_jwt *j);

/* agent_jwt_set_keys takes the keys of a snapshot; returns whether they changed (then the
 * cached tokens, signed by a key perhaps no longer published, are dropped too). A key that does
 * not decode is left out and logged. */
bool agent_jwt_set_keys(struct agent_jwt *j, Weft__Ca__V1__JwtKey *const *keys, size_t num,
                        int64_t now);

/* agent_jwt_ready reports whether any key is held. */
bool agent_jwt_ready(const struct agent_jwt *j);

/* agent_jwt_check_request says what is wrong with a FetchJWTSVID's audiences (none, more than
 * SPIFFE_JWT_MAX_AUDIENCES, one empty or over SPIFFE_JWT_MAX_AUDIENCE bytes), or returns
 * WEFT_OK. */
WEFT_MUST_USE int agent_jwt_check_request(char *const *audience, size_t num, char *why,
                                          size_t why_len);

/* agent_jwt_cached returns the token kept for (|entry_id|, |spiffe_id|, |audience| in that
 * order) if it has more than half its life left at |now|, else NULL. */
const char *agent_jwt_cached(struct agent_jwt *j, const char *entry_id, const char *spiffe_id,
                             char *const *audience, size_t num, int64_t now);

/* agent_jwt_keep keeps |token| (expiring at |exp|, received at |now|) for (|entry_id|,
 * |spiffe_id|, |audience|), replacing the oldest when the cache is full. */
void agent_jwt_keep(struct agent_jwt *j, const char *entry_id, const char *spiffe_id,
                    char *const *audience, size_t num, const char *token, int64_t now, int64_t exp);

/* agent_jwt_admit counts one CA mint for |entry_id| in the second |now|; false past
 * AGENT_JWT_MINTS_PER_S (a workload asking for ever new audiences would otherwise have the
 * Workload API thread wait on the CA again and again). Entries may share a count. */
bool agent_jwt_admit(struct agent_jwt *j, const char *entry_id, int64_t now);

/* agent_jwt_bundles fills |resp| with the trust domain's JWKS (jwt-svid keys only); returns how
 * many bundles (0 before any key). */
size_t agent_jwt_bundles(struct agent_jwt *j, JWTBundlesResponse *resp);

/* agent_jwt_validate validates |token| for |audience| at |now| against the keys held and fills
 * |resp| (its spiffe_id and claims). WEFT_EINVAL with the reason in |why| when it does not
 * validate. */
WEFT_MUST_USE int agent_jwt_validate(struct agent_jwt *j, const char *token, const char *audience,
                                     int64_t now, ValidateJWTSVIDResponse *resp, char *why,
                                     size_t why_len);

#endif
