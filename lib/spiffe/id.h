/* lib/spiffe/id.h: SPIFFE IDs (SPIFFE-ID.md §2; checklist §A of shared/reference/spiffe.md).
 *
 * The parser is strict, like go-spiffe/SPIRE: the scheme and trust domain must already be
 * lowercase (A4), the trust domain is at most 255 bytes and the whole ID at most 2048 (A12). */
#ifndef WEFT_LIB_SPIFFE_ID_H
#define WEFT_LIB_SPIFFE_ID_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/base/err.h"
#include "lib/spiffe/why.h"

#define SPIFFE_ID_MAX_LEN 2048
#define SPIFFE_TD_MAX_LEN 255
#define SPIFFE_SCHEME_PREFIX "spiffe://"
#define SPIFFE_SCHEME_PREFIX_LEN 9

/* struct spiffe_id is a parsed, valid SPIFFE ID held inline (no allocation). |str| is
 * NUL-terminated; the trust domain is str[9 .. 9+td_len) and the path (possibly empty) follows. */
struct spiffe_id {
    size_t len;
    size_t td_len;
    char str[SPIFFE_ID_MAX_LEN + 1];
};

/* spiffe_id_parse checks the |len| bytes at |s| against every rule of §A and, on success, copies
 * them into |out| and returns WEFT_OK. Otherwise it returns WEFT_EINVAL (WEFT_ELIMIT for the length
 * rules), leaves |out| empty and says in |why| (may be NULL) which rule failed and at which byte.
 */
WEFT_MUST_USE int spiffe_id_parse(struct spiffe_id *out, const char *s, size_t len,
                                  struct spiffe_why *why);

/* spiffe_id_from_td_path builds spiffe://<td><path> and parses it; |path| is "" or starts with
 * '/'. Returns as spiffe_id_parse. */
WEFT_MUST_USE int spiffe_id_from_td_path(struct spiffe_id *out, const char *td, const char *path,
                                         struct spiffe_why *why);

/* spiffe_td_parse accepts a trust domain name on its own ("example.org") or in ID form with no
 * path ("spiffe://example.org") (A14) and stores the ID form spiffe://<td> in |out|. */
WEFT_MUST_USE int spiffe_td_parse(struct spiffe_id *out, const char *s, size_t len,
                                  struct spiffe_why *why);

/* spiffe_id_clear empties |id| (len 0, ""), the state every failed parse leaves. */
void spiffe_id_clear(struct spiffe_id *id);

/* spiffe_id_td returns the trust domain name of |id| (not NUL-terminated) and its length. */
const char *spiffe_id_td(const struct spiffe_id *id, size_t *out_len);

/* spiffe_id_path returns the path of |id| ("" for a trust domain ID). It is NUL-terminated. */
const char *spiffe_id_path(const struct spiffe_id *id);

/* spiffe_id_is_td reports whether |id| has no path, i.e. names a trust domain (A6, A15). */
bool spiffe_id_is_td(const struct spiffe_id *id);

/* spiffe_id_equal compares two parsed IDs (A13: both are lowercase up to the path by
 * construction, and the path compares byte for byte). */
bool spiffe_id_equal(const struct spiffe_id *a, const struct spiffe_id *b);

/* spiffe_id_same_td reports whether |a| and |b| belong to the same trust domain. */
bool spiffe_id_same_td(const struct spiffe_id *a, const struct spiffe_id *b);

/* spiffe_id_td_id writes the trust domain's own ID (spiffe://<td>) of |id| into |out|. */
void spiffe_id_td_id(struct spiffe_id *out, const struct spiffe_id *id);

#endif
