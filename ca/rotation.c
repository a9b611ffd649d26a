/* The intermediate rotation schedule (ca/rotation.h). */
#include "ca/rotation.h"

#include <stdio.h>

struct resolved_policy {
    int64_t lifetime_s;
    int64_t prepare_pct, activate_pct;
};

static int resolve(struct resolved_policy *out, const struct ca_int_policy *p, char *err,
                   size_t err_len);
static int window_check(const struct ca_int_window *w, const char *what, char *err, size_t err_len);
static int successor_check(const struct ca_int_window *cur, const struct ca_int_window *next,
                           int64_t now, char *err, size_t err_len);
static int64_t life_point(const struct ca_int_window *w, int64_t pct);
static int64_t activation_time(const struct ca_int_schedule *s, const struct resolved_policy *p);

const char *ca_int_action_name(enum ca_int_action a)
{
    switch (a) {
    case CA_INT_NONE:
        return "NONE";
    case CA_INT_PREPARE_NEXT:
        return "PREPARE_NEXT";
    case CA_INT_ACTIVATE_NEXT:
        return "ACTIVATE_NEXT";
    }
    return "?";
}

int ca_int_policy_check(const struct ca_int_policy *p, char *err, size_t err_len)
{
    struct resolved_policy r;
    return resolve(&r, p, err, err_len);
}

int ca_int_schedule_init(struct ca_int_schedule *s, const struct ca_int_window *w, char *err,
                         size_t err_len)
{
    TRY(window_check(w, "intermediate", err, err_len));
    *s = (struct ca_int_schedule){.current = *w};
    return WEFT_OK;
}

int ca_int_schedule_check(const struct ca_int_schedule *s, int64_t now, char *err, size_t err_len)
{
    TRY(window_check(&s->current, "current intermediate", err, err_len));
    if (s->has_next) {
        TRY(window_check(&s->next, "next intermediate", err, err_len));
        TRY(successor_check(&s->current, &s->next, now, err, err_len));
    }
    return WEFT_OK;
}

int ca_int_schedule_step(const struct ca_int_schedule *s, const struct ca_int_policy *p,
                         int64_t now, struct ca_int_step *out)
{
    struct resolved_policy rp;
    *out = (struct ca_int_step){CA_INT_NONE, INT64_MAX};
    TRY(resolve(&rp, p, NULL, 0));
    TRY(ca_int_schedule_check(s, now, NULL, 0));
    /* After an outage the prepared successor may itself have expired: it can never sign, so
     * the schedule goes back to "no successor" and a fresh one is due at once. */
    if (!s->has_next || now >= s->next.not_after) {
        int64_t due = life_point(&s->current, rp.prepare_pct);
        *out = now >= due ? (struct ca_int_step){CA_INT_PREPARE_NEXT, now}
                          : (struct ca_int_step){CA_INT_NONE, due};
        return WEFT_OK;
    }
    int64_t due = activation_time(s, &rp);
    *out = now >= due ? (struct ca_int_step){CA_INT_ACTIVATE_NEXT, now}
                      : (struct ca_int_step){CA_INT_NONE, due};
    return WEFT_OK;
}

void ca_int_next_window(struct ca_int_window *out, const struct ca_int_policy *p, int64_t now)
{
    int64_t life = p->lifetime_s > 0 ? p->lifetime_s : CA_INT_DEFAULT_LIFETIME_S;
    out->not_before = now;
    /* written so it cannot overflow whatever |now| and |life| are */
    out->not_after = now > CA_INT_MAX_TIME - life ? CA_INT_MAX_TIME : now + life;
}

int ca_int_schedule_set_next(struct ca_int_schedule *s, const struct ca_int_window *next,
                             int64_t now, char *err, size_t err_len)
{
    TRY(ca_int_schedule_check(s, now, err, err_len));
    TRY(window_check(next, "next intermediate", err, err_len));
    TRY(successor_check(&s->current, next, now, err, err_len));
    if (now >= next->not_after) {
        snprintf(err, err_len, "the next intermediate expired at %lld, before now (%lld)",
                 (long long)next->not_after, (long long)now);
        return WEFT_ESTALE;
    }
    /* Preparing twice is a bug in the caller (it would throw away a minted key); replacing an
     * expired successor is the outage case ca_int_schedule_step asks for. */
    if (s->has_next && now < s->next.not_after) {
        snprintf(err, err_len, "a next intermediate is already prepared (valid until %lld)",
                 (long long)s->next.not_after);
        return WEFT_EPOLICY;
    }
    s->next = *next;
    s->has_next = true;
    return WEFT_OK;
}

int ca_int_schedule_activate(struct ca_int_schedule *s, const struct ca_int_policy *p, int64_t now,
                             char *err, size_t err_len)
{
    struct resolved_policy rp;
    TRY(resolve(&rp, p, err, err_len));
    TRY(ca_int_schedule_check(s, now, err, err_len));
    if (!s->has_next) {
        snprintf(err, err_len, "no next intermediate is prepared");
        return WEFT_ENOTFOUND;
    }
    if (now >= s->next.not_after) {
        snprintf(err, err_len, "the next intermediate expired at %lld, before now (%lld)",
                 (long long)s->next.not_after, (long long)now);
        return WEFT_ESTALE;
    }
    int64_t due = activation_time(s, &rp);
    if (now < due) {
        snprintf(err, err_len, "the next intermediate is not due to sign before %lld (now %lld)",
                 (long long)due, (long long)now);
        return WEFT_EPOLICY;
    }
    *s = (struct ca_int_schedule){.current = s->next};
    return WEFT_OK;
}

/* resolve applies the defaults and checks the result. |err| may be NULL. */
static int resolve(struct resolved_policy *out, const struct ca_int_policy *p, char *err,
                   size_t err_len)
{
    out->lifetime_s = p->lifetime_s != 0 ? p->lifetime_s : CA_INT_DEFAULT_LIFETIME_S;
    out->prepare_pct = p->prepare_pct != 0 ? p->prepare_pct : CA_INT_DEFAULT_PREPARE_PCT;
    out->activate_pct = p->activate_pct != 0 ? p->activate_pct : CA_INT_DEFAULT_ACTIVATE_PCT;
    if (out->lifetime_s < 1 || out->lifetime_s > CA_INT_MAX_LIFETIME_S) {
        if (err != NULL) {
            snprintf(err, err_len, "an intermediate lives 1 s to 100 years, not %llds",
                     (long long)out->lifetime_s);
        }
        return WEFT_EINVAL;
    }
    /* Preparing at or after activation would leave nothing to activate; activating at 100%
     * would leave the retired intermediate no life for the SVIDs it signed. */
    if (!(out->prepare_pct < out->activate_pct && out->activate_pct < 100)) {
        if (err != NULL) {
            snprintf(err, err_len,
                     "the next intermediate must be prepared before it is activated, and both "
                     "before the current one ends: 0 < prepare (%lld%%) < activate (%lld%%) "
                     "< 100%%",
                     (long long)out->prepare_pct, (long long)out->activate_pct);
        }
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* window_check: non-empty, and inside what X.509 can express, which also keeps every sum this
 * file computes far from overflow. |err| may be NULL. */
static int window_check(const struct ca_int_window *w, const char *what, char *err, size_t err_len)
{
    if (w->not_before < 0 || w->not_after > CA_INT_MAX_TIME || w->not_before >= w->not_after) {
        if (err != NULL) {
            snprintf(err, err_len,
                     "the %s's validity [%lld, %lld] is empty or outside 0..%lld (9999-12-31)",
                     what, (long long)w->not_before, (long long)w->not_after,
                     (long long)CA_INT_MAX_TIME);
        }
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* successor_check: |next| must end after |cur|, and may start before it (a backdated
 * certificate is fine) but not after it ends: that would leave a second with nothing to sign
 * with. Once |cur| has expired (an outage) that gap is in the past and cannot be helped; what
 * stays nonsense is a successor starting after |now| as well, a gap still ahead. Whatever
 * set_next accepted at t1 therefore passes this check at every later |now|. |err| may be
 * NULL. */
static int successor_check(const struct ca_int_window *cur, const struct ca_int_window *next,
                           int64_t now, char *err, size_t err_len)
{
    if (next->not_before > cur->not_after && next->not_before > now) {
        if (err != NULL) {
            snprintf(err, err_len,
                     "the next intermediate starts (%lld) after the current one ends (%lld): "
                     "the CA would have nothing to sign with in between",
                     (long long)next->not_before, (long long)cur->not_after);
        }
        return WEFT_EINVAL;
    }
    if (next->not_after <= cur->not_after) {
        if (err != NULL) {
            snprintf(err, err_len,
                     "the next intermediate ends (%lld) no later than the current one (%lld): "
                     "it is no successor (is the root about to expire?)",
                     (long long)next->not_after, (long long)cur->not_after);
        }
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* life_point is the instant |pct| percent into |w|, rounded down to the second. A checked
 * window is under 2^38 s long, so the product cannot overflow. */
static int64_t life_point(const struct ca_int_window *w, int64_t pct)
{
    return w->not_before + (w->not_after - w->not_before) * pct / 100;
}

/* activation_time: the current intermediate's activation point, but never before the successor
 * is valid (a caller may postdate it). */
static int64_t activation_time(const struct ca_int_schedule *s, const struct resolved_policy *p)
{
    int64_t due = life_point(&s->current, p->activate_pct);
    return due > s->next.not_before ? due : s->next.not_before;
}
