/* ca/rotation.h: when the CA's signing intermediate is replaced (issue 4, "Intermediate
 * rotation at half its lifetime").
 *
 * The intermediate lives 7 days by default. Its successor (the "next") is minted early, at 40%
 * of the current one's life, and becomes the signing intermediate at the current one's
 * half-life. Only the intermediate changes: the roots, and so the trust bundle, stay as they
 * are, and SVIDs already issued keep the chain they were issued with (the retired intermediate
 * still has half its life left, more than the longest SVID, 24 h).
 *
 * This is a pure schedule over a plain struct: nothing here reads the clock, mints, stores or
 * signs. The daemon asks ca_int_schedule_step() what is due at |now|, does it (mint the next
 * intermediate under the active root and store it, or hand the next one to the signer), records
 * the result with ca_int_schedule_set_next() or ca_int_schedule_activate(), persists the struct,
 * and arms one timer for the time the step returned. After a restart it loads the struct, checks
 * it with ca_int_schedule_check() and steps again: whatever was missed is due at once.
 *
 * Times are seconds since the Unix epoch. A certificate's window is [not_before, not_after] as
 * in RFC 5280 §4.1.2.5; for scheduling an intermediate counts as expired from its not_after on,
 * since one that is valid for a last second is no use to sign with. */
#ifndef WEFT_CA_ROTATION_H
#define WEFT_CA_ROTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define CA_INT_DEFAULT_LIFETIME_S (7 * 24 * 3600)
#define CA_INT_DEFAULT_PREPARE_PCT 40  /* of the current intermediate's life */
#define CA_INT_DEFAULT_ACTIVATE_PCT 50 /* the half-life */
#define CA_INT_MAX_LIFETIME_S (100LL * 365 * 24 * 3600)
/* 9999-12-31T23:59:59Z: the last instant an X.509 GeneralizedTime can say (RFC 5280
 * §4.1.2.5.2). Later times in a schedule are nonsense. */
#define CA_INT_MAX_TIME INT64_C(253402300799)

/* struct ca_int_window is the validity of one intermediate, as minted (read it back from the
 * certificate: the minting API caps notAfter at the root's). */
struct ca_int_window {
    int64_t not_before;
    int64_t not_after;
};

/* struct ca_int_policy: how long a new intermediate lives and when, as a percentage of the
 * current intermediate's own window, its successor is prepared and activated. Zero fields take
 * the defaults (7 days, 40%, 50%). */
struct ca_int_policy {
    int64_t lifetime_s;
    unsigned prepare_pct;
    unsigned activate_pct;
};

/* struct ca_int_schedule is the whole persisted state: the active (signing) intermediate and,
 * once prepared, its successor. A plain struct the caller stores as it likes. */
struct ca_int_schedule {
    struct ca_int_window current;
    bool has_next;
    struct ca_int_window next; /* meaningful only when |has_next| */
};

enum ca_int_action {
    CA_INT_NONE = 0,      /* nothing is due before |at| */
    CA_INT_PREPARE_NEXT,  /* mint a successor now (replacing a prepared one that expired) */
    CA_INT_ACTIVATE_NEXT, /* make the prepared successor the signing intermediate now */
};

/* struct ca_int_step is what ca_int_schedule_step() found: the action due at |now| and |at|,
 * the time to step again. When |action| is not CA_INT_NONE, |at| is |now|: do the action, then
 * step again for the next time. */
struct ca_int_step {
    enum ca_int_action action;
    int64_t at;
};

/* ca_int_action_name returns "NONE", "PREPARE_NEXT" or "ACTIVATE_NEXT" ("?" for anything
 * else); a static string. */
const char *ca_int_action_name(enum ca_int_action a);

/* ca_int_policy_check accepts a policy whose (defaulted) lifetime is 1 s to 100 years and whose
 * percentages satisfy 0 < prepare < activate < 100. Otherwise WEFT_EINVAL with the rule in
 * |err|. */
WEFT_MUST_USE int ca_int_policy_check(const struct ca_int_policy *p, char *err, size_t err_len);

/* ca_int_schedule_init starts a schedule whose signing intermediate has |w| and no successor.
 * WEFT_EINVAL (|*s| untouched) when |w| is empty or outside 0..CA_INT_MAX_TIME. */
WEFT_MUST_USE int ca_int_schedule_init(struct ca_int_schedule *s, const struct ca_int_window *w,
                                       char *err, size_t err_len);

/* ca_int_schedule_check validates a schedule read back from storage, at |now|. Refused
 * (WEFT_EINVAL, the rule in |err|): a window that is empty or outside 0..CA_INT_MAX_TIME, and a
 * successor that is no successor: one ending no later than the current intermediate (it would
 * buy no time), or one starting after the current intermediate ends (signing would have a gap)
 * unless the current one had already expired by |now| and the successor starts no later than
 * |now| (the recovery from an outage, where the gap lies in the past). */
WEFT_MUST_USE int ca_int_schedule_check(const struct ca_int_schedule *s, int64_t now, char *err,
                                        size_t err_len);

/* ca_int_schedule_step says what is due at |now| (see struct ca_int_step). With no successor,
 * PREPARE_NEXT is due from floor(life * prepare_pct / 100) seconds after current.not_before,
 * where life = current.not_after - current.not_before. With a successor, ACTIVATE_NEXT is due
 * from floor(life * activate_pct / 100) after current.not_before, or from next.not_before if
 * that is later (a certificate is never used before it is valid). A successor that has expired
 * by |now| (possible after a long outage) makes PREPARE_NEXT due: its replacement. The
 * schedule is not changed. Returns WEFT_EINVAL for a schedule or policy the check functions
 * refuse; |*out| is then NONE at INT64_MAX. */
WEFT_MUST_USE int ca_int_schedule_step(const struct ca_int_schedule *s,
                                       const struct ca_int_policy *p, int64_t now,
                                       struct ca_int_step *out);

/* ca_int_next_window proposes the window to mint a successor with at |now|: from |now| for
 * the policy's lifetime (capped at CA_INT_MAX_TIME). The minting API may cap it further at the
 * root's notAfter; pass the minted certificate's own window to ca_int_schedule_set_next. */
void ca_int_next_window(struct ca_int_window *out, const struct ca_int_policy *p, int64_t now);

/* ca_int_schedule_set_next records |next| as the prepared successor. Refused, leaving |*s| as
 * it was: WEFT_EINVAL for a window ca_int_schedule_check would refuse (for example a successor
 * that cannot outlive the current intermediate because both are capped by the same expiring
 * root: only a root rotation helps then); WEFT_ESTALE when |next| has expired by |now|;
 * WEFT_EPOLICY when a successor that has not expired is already prepared. */
WEFT_MUST_USE int ca_int_schedule_set_next(struct ca_int_schedule *s,
                                           const struct ca_int_window *next, int64_t now, char *err,
                                           size_t err_len);

/* ca_int_schedule_activate makes the prepared successor the signing intermediate and forgets
 * the retired one (its SVIDs carry it in their own chains). Refused, leaving |*s| as it was:
 * WEFT_ENOTFOUND with no successor, WEFT_ESTALE when it has expired by |now|, WEFT_EPOLICY
 * before ACTIVATE_NEXT is due. */
WEFT_MUST_USE int ca_int_schedule_activate(struct ca_int_schedule *s, const struct ca_int_policy *p,
                                           int64_t now, char *err, size_t err_len);

#endif
