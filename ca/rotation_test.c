/* ca/rotation_test.c: the intermediate rotation schedule with an injected clock: its edges to
 * the second, a daemon driven by one timer, restarts from every persisted state, and real
 * certificates minted on that schedule verifying against a bundle that never changes. */
#include <criterion/criterion.h>
#include <string.h>

#include "ca/rotation.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"

#define T0 INT64_C(1700000000)
#define DAY INT64_C(86400)
#define LIFE (7 * DAY)
#define PREPARE_OFF (LIFE * 40 / 100) /* 241920 s: 2.8 days */
#define ACTIVATE_OFF (LIFE / 2)       /* 302400 s: 3.5 days */

static const struct ca_int_policy DEFAULTS = {0};
static char err[512];

static struct ca_int_step step_at(const struct ca_int_schedule *s, int64_t now)
{
    struct ca_int_step st;
    cr_assert_eq(ca_int_schedule_step(s, &DEFAULTS, now, &st), WEFT_OK);
    return st;
}

static void expect_step(const struct ca_int_schedule *s, int64_t now, enum ca_int_action action,
                        int64_t at)
{
    struct ca_int_step st = step_at(s, now);
    cr_assert_eq(st.action, action, "at T0%+lld: %s, want %s", (long long)(now - T0),
                 ca_int_action_name(st.action), ca_int_action_name(action));
    cr_assert_eq(st.at, at, "at T0%+lld: next step at T0%+lld, want T0%+lld", (long long)(now - T0),
                 (long long)(st.at - T0), (long long)(at - T0));
}

static void init_at(struct ca_int_schedule *s, int64_t not_before)
{
    struct ca_int_window w;
    ca_int_next_window(&w, &DEFAULTS, not_before);
    cr_assert_eq(ca_int_schedule_init(s, &w, err, sizeof(err)), WEFT_OK, "%s", err);
}

static void expect_same(const struct ca_int_schedule *a, const struct ca_int_schedule *b)
{
    cr_assert_eq(a->current.not_before, b->current.not_before);
    cr_assert_eq(a->current.not_after, b->current.not_after);
    cr_assert_eq(a->has_next, b->has_next);
    if (a->has_next) {
        cr_assert_eq(a->next.not_before, b->next.not_before);
        cr_assert_eq(a->next.not_after, b->next.not_after);
    }
}

/* catch_up does what a daemon does when its timer fires at |now|: every due action, with the
 * successor minted for the default lifetime, until nothing is due. Returns how many actions. */
static int catch_up(struct ca_int_schedule *s, int64_t now)
{
    int n = 0;
    for (;;) {
        struct ca_int_step st = step_at(s, now);
        if (st.action == CA_INT_NONE) {
            cr_assert_gt(st.at, now, "nothing due, so the next step is later");
            return n;
        }
        cr_assert_eq(st.at, now);
        cr_assert_leq(++n, 3, "a schedule converges within ACTIVATE, PREPARE, ACTIVATE");
        if (st.action == CA_INT_PREPARE_NEXT) {
            struct ca_int_window w;
            ca_int_next_window(&w, &DEFAULTS, now);
            cr_assert_eq(ca_int_schedule_set_next(s, &w, now, err, sizeof(err)), WEFT_OK, "%s",
                         err);
        } else {
            cr_assert_eq(ca_int_schedule_activate(s, &DEFAULTS, now, err, sizeof(err)), WEFT_OK,
                         "%s", err);
        }
    }
}

Test(ca_rotation, policy_defaults_and_refusals)
{
    cr_assert_eq(ca_int_policy_check(&DEFAULTS, err, sizeof(err)), WEFT_OK);
    struct ca_int_policy p = {.lifetime_s = 60, .prepare_pct = 40, .activate_pct = 50};
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_OK, "%s", err);
    p.prepare_pct = 50; /* prepared and activated at once: nothing to activate */
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "prepare"), "%s", err);
    p = (struct ca_int_policy){.prepare_pct = 40, .activate_pct = 100};
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_EINVAL);
    p = (struct ca_int_policy){.prepare_pct = 60}; /* after the default half-life */
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_EINVAL);
    p = (struct ca_int_policy){.lifetime_s = -1};
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "lives"), "%s", err);
    p = (struct ca_int_policy){.lifetime_s = CA_INT_MAX_LIFETIME_S};
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_OK);
    p.lifetime_s++;
    cr_assert_eq(ca_int_policy_check(&p, err, sizeof(err)), WEFT_EINVAL);
    /* a policy that fails the check fails the step too */
    struct ca_int_schedule s;
    struct ca_int_step st;
    init_at(&s, T0);
    p = (struct ca_int_policy){.prepare_pct = 50};
    cr_assert_eq(ca_int_schedule_step(&s, &p, T0, &st), WEFT_EINVAL);
    cr_assert_eq(st.action, CA_INT_NONE);
    cr_assert_eq(st.at, INT64_MAX);
}

Test(ca_rotation, one_rotation_at_exact_edges)
{
    struct ca_int_schedule s;
    init_at(&s, T0);
    cr_assert_eq(s.current.not_after, T0 + LIFE, "7 days by default");
    expect_step(&s, T0, CA_INT_NONE, T0 + PREPARE_OFF);
    expect_step(&s, T0 + PREPARE_OFF - 1, CA_INT_NONE, T0 + PREPARE_OFF);
    expect_step(&s, T0 + PREPARE_OFF, CA_INT_PREPARE_NEXT, T0 + PREPARE_OFF);
    expect_step(&s, T0 + ACTIVATE_OFF, CA_INT_PREPARE_NEXT, T0 + ACTIVATE_OFF);

    /* nothing to activate before a successor is prepared */
    cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, T0 + ACTIVATE_OFF, err, sizeof(err)),
                 WEFT_ENOTFOUND);

    int64_t prep = T0 + PREPARE_OFF;
    struct ca_int_window next;
    ca_int_next_window(&next, &DEFAULTS, prep);
    cr_assert_eq(next.not_before, prep);
    cr_assert_eq(next.not_after, prep + LIFE);
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, prep, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert(s.has_next);
    expect_step(&s, prep, CA_INT_NONE, T0 + ACTIVATE_OFF);
    expect_step(&s, T0 + ACTIVATE_OFF - 1, CA_INT_NONE, T0 + ACTIVATE_OFF);
    cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, T0 + ACTIVATE_OFF - 1, err, sizeof(err)),
                 WEFT_EPOLICY, "never before the half-life");
    cr_assert_not_null(strstr(err, "not due"), "%s", err);
    cr_assert_eq(s.current.not_before, T0, "a refused activation changes nothing");
    expect_step(&s, T0 + ACTIVATE_OFF, CA_INT_ACTIVATE_NEXT, T0 + ACTIVATE_OFF);

    cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, T0 + ACTIVATE_OFF, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    cr_assert_eq(s.current.not_before, next.not_before);
    cr_assert_eq(s.current.not_after, next.not_after);
    cr_assert_not(s.has_next);
    /* the new intermediate's own schedule: prepared at 40% of its life */
    expect_step(&s, T0 + ACTIVATE_OFF, CA_INT_NONE, prep + PREPARE_OFF);
    expect_step(&s, prep + PREPARE_OFF, CA_INT_PREPARE_NEXT, prep + PREPARE_OFF);
}

Test(ca_rotation, ten_weeks_on_one_timer)
{
    /* A daemon that only ever sleeps until the returned time. Intermediate k is prepared at
     * 40% of k-1's life and activated at k-1's half-life, so rotations follow every 2.8 days
     * and each retired intermediate still has 3.5 days for the SVIDs (24 h at most) it signed. */
    struct ca_int_schedule s;
    init_at(&s, T0);
    int64_t now = T0, last_activation = 0;
    int activations = 0, prepares = 0;
    while (now < T0 + 70 * DAY) {
        struct ca_int_step st = step_at(&s, now);
        cr_assert(s.current.not_before <= now && now < s.current.not_after,
                  "there is always a valid intermediate to sign with");
        if (st.action == CA_INT_NONE) {
            cr_assert_gt(st.at, now);
            now = st.at;
            continue;
        }
        if (st.action == CA_INT_PREPARE_NEXT) {
            cr_assert_eq(now, s.current.not_before + PREPARE_OFF);
            struct ca_int_window w;
            ca_int_next_window(&w, &DEFAULTS, now);
            cr_assert_eq(ca_int_schedule_set_next(&s, &w, now, err, sizeof(err)), WEFT_OK);
            prepares++;
        } else {
            cr_assert_eq(now, s.current.not_before + ACTIVATE_OFF, "at the half-life exactly");
            int64_t retired_left = s.current.not_after - now;
            cr_assert_eq(retired_left, LIFE - ACTIVATE_OFF);
            cr_assert_geq(retired_left, DAY, "outlives every SVID it signed");
            cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, now, err, sizeof(err)), WEFT_OK);
            if (last_activation != 0) {
                cr_assert_eq(now - last_activation, PREPARE_OFF);
            } else {
                cr_assert_eq(now, T0 + ACTIVATE_OFF);
            }
            last_activation = now;
            activations++;
        }
    }
    /* 3.5 d, then every 2.8 d: 3.5 + 23 * 2.8 = 67.9 <= 70 */
    cr_assert_eq(activations, 24);
    cr_assert(prepares == activations || prepares == activations + 1);
}

Test(ca_rotation, refuses_nonsense)
{
    struct ca_int_schedule s;
    struct ca_int_window w = {T0, T0};
    cr_assert_eq(ca_int_schedule_init(&s, &w, err, sizeof(err)), WEFT_EINVAL, "empty window");
    w = (struct ca_int_window){T0 + 1, T0};
    cr_assert_eq(ca_int_schedule_init(&s, &w, err, sizeof(err)), WEFT_EINVAL, "reversed");
    w = (struct ca_int_window){-1, T0};
    cr_assert_eq(ca_int_schedule_init(&s, &w, err, sizeof(err)), WEFT_EINVAL);
    w = (struct ca_int_window){T0, CA_INT_MAX_TIME + 1};
    cr_assert_eq(ca_int_schedule_init(&s, &w, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "9999"), "%s", err);
    w = (struct ca_int_window){T0, CA_INT_MAX_TIME};
    cr_assert_eq(ca_int_schedule_init(&s, &w, err, sizeof(err)), WEFT_OK);

    init_at(&s, T0);
    int64_t now = T0 + PREPARE_OFF;
    /* a successor starting one second after the current one ends would leave a gap */
    struct ca_int_window next = {T0 + LIFE + 1, T0 + 2 * LIFE};
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, now, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "after the current one ends"), "%s", err);
    cr_assert_not(s.has_next);
    /* one ending when the current one ends buys nothing */
    next = (struct ca_int_window){now, T0 + LIFE};
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, now, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "no successor"), "%s", err);
    next = (struct ca_int_window){now, now};
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, now, err, sizeof(err)), WEFT_EINVAL);
    /* the edges that are fine: starting the very second the current one ends, ending one
     * second after it, or starting before it (backdated) */
    struct ca_int_schedule t = s;
    next = (struct ca_int_window){T0 + LIFE, T0 + LIFE + 1};
    cr_assert_eq(ca_int_schedule_set_next(&t, &next, now, err, sizeof(err)), WEFT_OK, "%s", err);
    t = s;
    next = (struct ca_int_window){T0 - 60, T0 + 2 * LIFE};
    cr_assert_eq(ca_int_schedule_set_next(&t, &next, now, err, sizeof(err)), WEFT_OK, "%s", err);

    /* after an outage the current one has expired and the gap lies in the past: a successor
     * from now on is the way out, one starting later still would leave a gap ahead */
    t = (struct ca_int_schedule){.current = {T0, T0 + LIFE}};
    int64_t late = T0 + LIFE + DAY;
    next = (struct ca_int_window){late + 1, late + LIFE};
    cr_assert_eq(ca_int_schedule_set_next(&t, &next, late, err, sizeof(err)), WEFT_EINVAL);
    next.not_before = late;
    cr_assert_eq(ca_int_schedule_set_next(&t, &next, late, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_int_schedule_check(&t, late, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_int_schedule_check(&t, late + DAY, err, sizeof(err)), WEFT_OK, "%s", err);

    /* preparing twice would throw a minted key away */
    ca_int_next_window(&next, &DEFAULTS, now);
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, now, err, sizeof(err)), WEFT_OK);
    struct ca_int_window again;
    ca_int_next_window(&again, &DEFAULTS, now + 1);
    cr_assert_eq(ca_int_schedule_set_next(&s, &again, now + 1, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_not_null(strstr(err, "already prepared"), "%s", err);
    cr_assert_eq(s.next.not_before, now, "the prepared one stays");

    /* a successor that expired before it was recorded */
    init_at(&s, T0);
    next = (struct ca_int_window){T0 + DAY, T0 + LIFE + 10};
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, T0 + LIFE + 10, err, sizeof(err)),
                 WEFT_ESTALE);

    /* persisted garbage is refused by the check and by the step */
    struct ca_int_schedule bad = {.current = {T0, T0 + LIFE}, .has_next = true};
    cr_assert_eq(ca_int_schedule_check(&bad, T0, err, sizeof(err)), WEFT_EINVAL);
    struct ca_int_step st;
    cr_assert_eq(ca_int_schedule_step(&bad, &DEFAULTS, T0, &st), WEFT_EINVAL);
    cr_assert_eq(st.action, CA_INT_NONE);
    bad.next = (struct ca_int_window){T0 + LIFE + 1, T0 + 2 * LIFE};
    cr_assert_eq(ca_int_schedule_check(&bad, T0, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_int_schedule_activate(&bad, &DEFAULTS, T0 + LIFE, err, sizeof(err)),
                 WEFT_EINVAL);
    struct ca_int_schedule zero = {0};
    cr_assert_eq(ca_int_schedule_check(&zero, T0, err, sizeof(err)), WEFT_EINVAL);
}

Test(ca_rotation, a_postdated_successor_is_activated_when_it_becomes_valid)
{
    struct ca_int_schedule s;
    init_at(&s, T0);
    struct ca_int_window next = {T0 + ACTIVATE_OFF + 100, T0 + ACTIVATE_OFF + 100 + LIFE};
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, T0 + PREPARE_OFF, err, sizeof(err)), WEFT_OK);
    expect_step(&s, T0 + ACTIVATE_OFF, CA_INT_NONE, next.not_before);
    expect_step(&s, next.not_before - 1, CA_INT_NONE, next.not_before);
    cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, next.not_before - 1, err, sizeof(err)),
                 WEFT_EPOLICY);
    expect_step(&s, next.not_before, CA_INT_ACTIVATE_NEXT, next.not_before);
}

Test(ca_rotation, after_an_outage_everything_missed_is_due_at_once)
{
    /* down from before the prepare point until after the current intermediate expired */
    struct ca_int_schedule s;
    init_at(&s, T0);
    int64_t back = T0 + LIFE + 5 * DAY;
    expect_step(&s, back, CA_INT_PREPARE_NEXT, back);
    cr_assert_eq(catch_up(&s, back), 2, "PREPARE, then ACTIVATE at once");
    cr_assert_eq(s.current.not_before, back);
    expect_step(&s, back, CA_INT_NONE, back + PREPARE_OFF);

    /* down after preparing, until the successor expired too: a new one replaces it */
    init_at(&s, T0);
    cr_assert_eq(catch_up(&s, T0 + PREPARE_OFF), 1);
    cr_assert(s.has_next);
    int64_t dead_next_end = s.next.not_after;
    back = dead_next_end + DAY;
    expect_step(&s, back, CA_INT_PREPARE_NEXT, back);
    cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, back, err, sizeof(err)), WEFT_ESTALE);
    cr_assert_eq(catch_up(&s, back), 2);
    cr_assert_eq(s.current.not_before, back);

    /* down after preparing, until the current one expired: the successor is activated but
     * is past its own half-life by then, so another is prepared and activated at once */
    init_at(&s, T0);
    cr_assert_eq(catch_up(&s, T0 + PREPARE_OFF), 1);
    back = T0 + LIFE;
    expect_step(&s, back, CA_INT_ACTIVATE_NEXT, back);
    cr_assert_eq(catch_up(&s, back), 3);
    cr_assert_eq(s.current.not_before, back);
    cr_assert_not(s.has_next);

    /* the edge: the successor's last second counts as expired for signing */
    init_at(&s, T0);
    cr_assert_eq(catch_up(&s, T0 + PREPARE_OFF), 1);
    expect_step(&s, s.next.not_after - 1, CA_INT_ACTIVATE_NEXT, s.next.not_after - 1);
    expect_step(&s, s.next.not_after, CA_INT_PREPARE_NEXT, s.next.not_after);
}

Test(ca_rotation, restarts_from_any_persisted_state)
{
    /* Run the daemon for three weeks, saving the schedule after every change, as the daemon
     * persists it. Then restart from each saved state at instants around every edge that
     * state has, and check that the restarted daemon agrees with the one that kept running. */
    struct saved {
        struct ca_int_schedule s;
        int64_t saved_at, due; /* the next step the running daemon took */
    } saved[64];
    size_t num_saved = 0;
    struct ca_int_schedule s;
    init_at(&s, T0);
    int64_t now = T0;
    saved[num_saved++] = (struct saved){s, now, 0};
    while (now < T0 + 21 * DAY) {
        struct ca_int_step st = step_at(&s, now);
        if (st.action == CA_INT_NONE) {
            saved[num_saved - 1].due = st.at;
            now = st.at;
            continue;
        }
        cr_assert_eq(catch_up(&s, now), 1, "a running daemon does one thing at a time");
        cr_assert_lt(num_saved, nitems(saved));
        saved[num_saved++] = (struct saved){s, now, 0};
    }
    cr_assert_geq(num_saved, 12);

    for (size_t i = 0; i + 1 < num_saved; i++) {
        const struct saved *sv = &saved[i];
        const int64_t cur_end = sv->s.current.not_after;
        const int64_t times[] = {
            sv->saved_at, sv->saved_at + 1, sv->due - 1,        sv->due, sv->due + 1, cur_end - 1,
            cur_end,      cur_end + 1,      cur_end + 30 * DAY,
        };
        for (size_t j = 0; j < nitems(times); j++) {
            int64_t t = times[j];
            if (t < sv->saved_at) {
                continue;
            }
            struct ca_int_schedule r = sv->s; /* read back from storage */
            cr_assert_eq(ca_int_schedule_check(&r, t, err, sizeof(err)), WEFT_OK, "%s", err);
            struct ca_int_step st = step_at(&r, t);
            if (t < sv->due) {
                cr_assert_eq(st.action, CA_INT_NONE, "state %zu at +%lld", i,
                             (long long)(t - sv->saved_at));
                cr_assert_eq(st.at, sv->due, "the same timer as the running daemon");
                continue;
            }
            if (t == sv->due) {
                /* exactly what the running daemon did next */
                cr_assert_eq(catch_up(&r, t), 1);
                expect_same(&r, &saved[i + 1].s);
                continue;
            }
            cr_assert_neq(st.action, CA_INT_NONE);
            /* at most: activate the prepared successor, find it past its own half-life by now,
             * prepare and activate another */
            cr_assert_leq(catch_up(&r, t), 3);
            cr_assert(r.current.not_before <= t && t < r.current.not_after,
                      "state %zu restarted at +%lld signs with a valid intermediate", i,
                      (long long)(t - sv->saved_at));
            cr_assert(!r.has_next || t < r.next.not_after);
        }
    }
}

Test(ca_rotation, a_successor_capped_by_an_expiring_root_is_refused)
{
    /* The minting API caps an intermediate's notAfter at its root's: near the root's end the
     * successor ends when the current one does, which only a root rotation can fix. */
    int64_t root_end = T0 + 5 * DAY;
    struct ca_int_schedule s;
    struct ca_int_window w = {T0 - DAY, root_end};
    cr_assert_eq(ca_int_schedule_init(&s, &w, err, sizeof(err)), WEFT_OK);
    int64_t now = w.not_before + (root_end - w.not_before) * 40 / 100;
    expect_step(&s, now, CA_INT_PREPARE_NEXT, now);
    struct ca_int_window next;
    ca_int_next_window(&next, &DEFAULTS, now);
    next.not_after = root_end; /* as minted */
    cr_assert_eq(ca_int_schedule_set_next(&s, &next, now, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "root"), "%s", err);
}

/* --- real certificates on the schedule --------------------------------------------------- */

static void mint_intermediate(struct testlib_cred *out, const struct testlib_cred *root,
                              const struct ca_int_window *want, struct ca_int_window *got)
{
    cr_assert_eq(testlib_mint_intermediate(out, root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                                           want->not_before, want->not_after - want->not_before),
                 WEFT_OK);
    cr_assert_eq(spiffe_cert_validity(&got->not_before, &got->not_after, out->cert), WEFT_OK);
}

static void verify(X509 *leaf, X509 *inter, const struct spiffe_bundle_set *set, int64_t at)
{
    X509 *certs[] = {leaf, inter};
    STACK_OF(X509) *chain = testlib_chain(certs, 2);
    cr_assert_not_null(chain);
    struct spiffe_id id;
    struct spiffe_why why = {0};
    cr_assert_eq(spiffe_x509svid_verify(&id, chain, set, at, &why), WEFT_OK, "at T0%+lld: %s",
                 (long long)(at - T0), why.msg);
    sk_X509_pop_free(chain, X509_free);
}

Test(ca_rotation, issued_chains_use_the_active_intermediate_and_the_bundle_never_changes)
{
    /* One root for a year; intermediates minted and activated as the schedule says; a 24 h
     * SVID minted every 6 hours for three weeks with whatever intermediate is active. Every
     * SVID verifies against the bundle made on day one, from its first second to its last. */
    struct testlib_cred root = {0};
    cr_assert_eq(testlib_mint_root(&root, TESTLIB_TD, SPIFFE_KEY_EC_P256, T0 - DAY, 365 * DAY),
                 WEFT_OK);
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    cr_assert_eq(testlib_bundle_set_add(&set, TESTLIB_TD, root.cert), WEFT_OK);
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    const struct spiffe_bundle *bundle = spiffe_bundle_set_get0(&set, &td);
    cr_assert_not_null(bundle);

    struct testlib_cred inter[16] = {{0}}; /* inter[k]: the k-th intermediate minted */
    size_t num_inter = 0, active = 0;
    struct ca_int_schedule s;
    struct ca_int_window want, got;
    ca_int_next_window(&want, &DEFAULTS, T0);
    mint_intermediate(&inter[num_inter++], &root, &want, &got);
    cr_assert_eq(ca_int_schedule_init(&s, &got, err, sizeof(err)), WEFT_OK, "%s", err);

    int64_t next_leaf = T0;
    int64_t now = T0;
    size_t leaves = 0, rotations = 0;
    while (next_leaf < T0 + 21 * DAY) {
        struct ca_int_step st = step_at(&s, now);
        if (st.action == CA_INT_PREPARE_NEXT) {
            cr_assert_lt(num_inter, nitems(inter));
            ca_int_next_window(&want, &DEFAULTS, now);
            mint_intermediate(&inter[num_inter++], &root, &want, &got);
            cr_assert_eq(ca_int_schedule_set_next(&s, &got, now, err, sizeof(err)), WEFT_OK);
            continue;
        }
        if (st.action == CA_INT_ACTIVATE_NEXT) {
            cr_assert_eq(ca_int_schedule_activate(&s, &DEFAULTS, now, err, sizeof(err)), WEFT_OK);
            active = num_inter - 1; /* the one just prepared: the signer swaps keys here */
            rotations++;
            continue;
        }
        if (next_leaf < st.at) {
            now = next_leaf;
            /* the signer signs with the active intermediate, which is always valid */
            int64_t nb, na;
            cr_assert_eq(spiffe_cert_validity(&nb, &na, inter[active].cert), WEFT_OK);
            cr_assert_eq(nb, s.current.not_before);
            cr_assert_eq(na, s.current.not_after);
            struct testlib_cred leaf = {0};
            cr_assert_eq(testlib_mint_leaf(&leaf, &inter[active], TESTLIB_LEAF_ID,
                                           SPIFFE_KEY_EC_P256, now - 60, DAY),
                         WEFT_OK);
            int64_t leaf_end;
            cr_assert_eq(spiffe_cert_validity(&nb, &leaf_end, leaf.cert), WEFT_OK);
            cr_assert_eq(leaf_end, now - 60 + DAY, "never cut short by its intermediate");
            verify(leaf.cert, inter[active].cert, &set, now);
            verify(leaf.cert, inter[active].cert, &set, leaf_end);
            testlib_cred_cleanup(&leaf);
            leaves++;
            next_leaf += 6 * 3600;
        } else {
            now = st.at;
        }
    }
    cr_assert_eq(leaves, 84);
    cr_assert_eq(rotations, 7, "at 3.5 days, then every 2.8 days");
    /* the bundle is the one made on day one: same object, one authority, the same root */
    cr_assert_eq(spiffe_bundle_set_get0(&set, &td), bundle);
    cr_assert_eq(sk_X509_num(bundle->x509), 1);
    cr_assert_eq(X509_cmp(sk_X509_value(bundle->x509, 0), root.cert), 0);

    for (size_t k = 0; k < num_inter; k++) {
        testlib_cred_cleanup(&inter[k]);
    }
    testlib_cred_cleanup(&root);
    spiffe_bundle_set_cleanup(&set);
}
