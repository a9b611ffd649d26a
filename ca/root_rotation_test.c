/* ca/root_rotation_test.c: the root rotation state machine with an injected clock and simulated
 * agents: the whole flow, a lagging agent, a disconnecting one, the refusals, WAIT_OLD_SVIDS to
 * the second, restores mid-rotation, and real certificates showing that no agent is ever handed
 * an SVID its bundle cannot verify. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ca/core.h"
#include "ca/issuer.h"
#include "ca/root_rotation.h"
#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"
#include "test/testlib/certs.h"

/* the defaults mirror the CA's own limits */
_Static_assert(CA_ROOT_ROT_NODE_MAX == CA_NODE_NAME_MAX, "node names");
_Static_assert(CA_ROOT_ROT_DEFAULT_WORKLOAD_TTL_S == CA_MAX_SVID_TTL_S, "workload max TTL");
_Static_assert(CA_ROOT_ROT_DEFAULT_NODE_TTL_S == CA_DEFAULT_NODE_TTL_S, "node TTL");

#define T0 INT64_C(1700000000)
#define HOUR INT64_C(3600)
#define DAY INT64_C(86400)

/* Every phase change, as the daemon would see it: the audit line and the state to persist. */
struct change {
    enum ca_root_rot_phase from;
    struct ca_root_rot_state st;
};
static struct change changes[64];
static size_t num_changes;
static char err[512];

static void on_phase(void *arg, enum ca_root_rot_phase from, const struct ca_root_rot_state *st)
{
    (void)arg;
    cr_assert_lt(num_changes, nitems(changes));
    changes[num_changes++] = (struct change){from, *st};
}

static struct ca_root_rot_config config(int64_t grace)
{
    return (struct ca_root_rot_config){.reconnect_grace_s = grace, .on_phase = on_phase};
}

static struct ca_root_rot *make(int64_t grace)
{
    struct ca_root_rot *r;
    struct ca_root_rot_config cfg = config(grace);
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_OK, "%s", err);
    return r;
}

static void expect_phase(const struct ca_root_rot *r, enum ca_root_rot_phase want)
{
    cr_assert_eq(ca_root_rot_phase(r), want, "phase %s, want %s",
                 ca_root_rot_phase_name(ca_root_rot_phase(r)), ca_root_rot_phase_name(want));
}

static void expect_last_change(enum ca_root_rot_phase from, enum ca_root_rot_phase to, int64_t at)
{
    cr_assert_gt(num_changes, 0);
    const struct change *c = &changes[num_changes - 1];
    cr_assert_eq(c->from, from, "from %s", ca_root_rot_phase_name(c->from));
    cr_assert_eq(c->st.phase, to, "to %s", ca_root_rot_phase_name(c->st.phase));
    cr_assert_eq(c->st.phase_started_at, at);
}

static void join(struct ca_root_rot *r, const char *node, uint64_t acked, int64_t now)
{
    cr_assert_eq(ca_root_rot_node_connected(r, node, now), WEFT_OK);
    if (acked != 0) {
        cr_assert_eq(ca_root_rot_node_acked(r, node, acked, now), WEFT_OK);
    }
}

static void done(struct ca_root_rot *r, enum ca_root_rot_phase phase, int64_t now)
{
    cr_assert_eq(ca_root_rot_done(r, phase, now, err, sizeof(err)), WEFT_OK, "%s", err);
}

struct behind_list {
    char text[512];
};

static int collect(void *arg, const char *node, uint64_t acked_seq)
{
    struct behind_list *l = arg;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof(l->text) - n, "%s%s@%llu", n == 0 ? "" : ",", node,
             (unsigned long long)acked_seq);
    return 0;
}

static void expect_behind(const struct ca_root_rot *r, const char *want)
{
    struct behind_list l = {{0}};
    cr_assert_eq(ca_root_rot_behind(r, collect, &l), WEFT_OK);
    cr_assert_str_eq(l.text, want);
}

/* run_to drives a fresh machine with agents a and b (both on bundle 1) into |phase| at T0+100
 * and later, and returns it. */
static struct ca_root_rot *run_to(enum ca_root_rot_phase phase, int64_t grace)
{
    struct ca_root_rot *r = make(grace);
    join(r, "node-a", 1, T0);
    join(r, "node-b", 1, T0);
    if (phase == CA_ROOT_ROT_IDLE) {
        return r;
    }
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 100, err, sizeof(err)), WEFT_OK, "%s", err);
    if (phase == CA_ROOT_ROT_ADD_NEW_ROOT) {
        return r;
    }
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 110);
    if (phase == CA_ROOT_ROT_WAIT_ACKS) {
        return r;
    }
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 120), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 2, T0 + 130), WEFT_OK);
    if (phase == CA_ROOT_ROT_SWITCH_SIGNING) {
        return r;
    }
    done(r, CA_ROOT_ROT_SWITCH_SIGNING, T0 + 140);
    if (phase == CA_ROOT_ROT_WAIT_OLD_SVIDS) {
        return r;
    }
    ca_root_rot_tick(r, T0 + 140 + DAY + 1);
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    return r;
}

Test(ca_root_rotation, the_whole_flow_with_two_agents_acknowledging)
{
    struct ca_root_rot *r = make(CA_ROOT_ROT_NO_GRACE);
    join(r, "node-a", 1, T0);
    join(r, "node-b", 1, T0);
    expect_phase(r, CA_ROOT_ROT_IDLE);
    expect_behind(r, "");
    cr_assert_eq(ca_root_rot_next_tick(r), INT64_MAX);

    cr_assert_eq(ca_root_rot_rotate(r, T0 + 10, err, sizeof(err)), WEFT_OK, "%s", err);
    expect_phase(r, CA_ROOT_ROT_ADD_NEW_ROOT);
    expect_last_change(CA_ROOT_ROT_IDLE, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 10);
    cr_assert_eq(changes[0].st.rotations, 1);
    cr_assert_eq(changes[0].st.rotation_started_at, T0 + 10);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 1, "the bundle is unchanged until the root is in");

    /* the caller adds the new root to the stored bundle and says so: a new bundle sequence */
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 20);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    expect_last_change(CA_ROOT_ROT_ADD_NEW_ROOT, CA_ROOT_ROT_WAIT_ACKS, T0 + 20);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 2);
    cr_assert_eq(changes[num_changes - 1].st.bundle_seq, 2, "the persisted state has it");
    expect_behind(r, "node-a@1,node-b@1");

    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 30), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    expect_behind(r, "node-b@1");
    struct ca_root_rot_status status;
    ca_root_rot_status(r, &status);
    cr_assert_eq(status.phase, CA_ROOT_ROT_WAIT_ACKS);
    cr_assert_eq(status.phase_started_at, T0 + 20);
    cr_assert_eq(status.rotation_started_at, T0 + 10);
    cr_assert_eq(status.num_connected, 2);
    cr_assert_eq(status.num_behind, 1);
    char text[512];
    ca_root_rot_format_status(r, text, sizeof(text));
    cr_assert_str_eq(text, "phase WAIT_ACKS since 2023-11-14T22:13:40Z (rotation 1 started "
                           "2023-11-14T22:13:30Z); bundle sequence 2; 1 of 2 connected nodes "
                           "behind: node-b (acked 1)");

    /* the last acknowledgement moves signing on, at that instant */
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 2, T0 + 40), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    expect_last_change(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_SWITCH_SIGNING, T0 + 40);
    expect_behind(r, "");

    done(r, CA_ROOT_ROT_SWITCH_SIGNING, T0 + 50);
    expect_phase(r, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    expect_last_change(CA_ROOT_ROT_SWITCH_SIGNING, CA_ROOT_ROT_WAIT_OLD_SVIDS, T0 + 50);
    cr_assert_eq(changes[num_changes - 1].st.switched_at, T0 + 50);
    cr_assert_eq(changes[num_changes - 1].st.old_svids_until, T0 + 50 + DAY);
    cr_assert_eq(ca_root_rot_next_tick(r), T0 + 50 + DAY + 1);
    ca_root_rot_status(r, &status);
    cr_assert_eq(status.waits_until, T0 + 50 + DAY + 1);
    ca_root_rot_format_status(r, text, sizeof(text));
    cr_assert_not_null(strstr(text, "the old root may go at 2023-11-15T22:14:11Z"), "%s", text);

    ca_root_rot_tick(r, ca_root_rot_next_tick(r));
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    cr_assert_eq(ca_root_rot_next_tick(r), INT64_MAX);
    done(r, CA_ROOT_ROT_DROP_OLD_ROOT, T0 + 2 * DAY);
    expect_phase(r, CA_ROOT_ROT_IDLE);
    expect_last_change(CA_ROOT_ROT_DROP_OLD_ROOT, CA_ROOT_ROT_IDLE, T0 + 2 * DAY);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 3, "the old root is gone: a new bundle");
    cr_assert_eq(num_changes, 6, "one change per step, each one persisted and audited");

    /* the agents are behind the new bundle, which blocks nothing while IDLE */
    expect_behind(r, "node-a@2,node-b@2");
    struct ca_root_rot_state st;
    ca_root_rot_save(r, &st);
    cr_assert_eq(st.rotation_started_at, 0);
    cr_assert_eq(st.switched_at, 0);
    cr_assert_eq(st.old_svids_until, 0);
    cr_assert_eq(st.rotations, 1);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 3, T0 + 2 * DAY), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 3, T0 + 2 * DAY), WEFT_OK);
    expect_behind(r, "");

    /* and a second rotation works the same way */
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 3 * DAY, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(changes[num_changes - 1].st.rotations, 2);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, a_lagging_agent_holds_wait_acks)
{
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 120), WEFT_OK);
    /* node-b keeps acknowledging the old bundle; days pass */
    for (int64_t t = T0 + 200; t < T0 + 10 * DAY; t += HOUR) {
        cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 1, t), WEFT_OK);
        ca_root_rot_tick(r, t);
        expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    }
    cr_assert_eq(ca_root_rot_next_tick(r), INT64_MAX, "no timer: only an event can end it");
    expect_behind(r, "node-b@1");
    char text[512];
    ca_root_rot_format_status(r, text, sizeof(text));
    cr_assert_not_null(strstr(text, "phase WAIT_ACKS since 2023-11-14T22:15:10Z"), "%s", text);
    cr_assert_not_null(strstr(text, "1 of 2 connected nodes behind: node-b (acked 1)"), "%s", text);
    /* an acknowledgement of an older bundle does not undo a newer one */
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 1, T0 + 10 * DAY), WEFT_OK);
    expect_behind(r, "node-b@1");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 2, T0 + 10 * DAY + 1), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    expect_last_change(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_SWITCH_SIGNING, T0 + 10 * DAY + 1);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, a_disconnected_agent_no_longer_blocks)
{
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 120), WEFT_OK);
    /* a node that connects now gets the full snapshot and must acknowledge it */
    join(r, "node-c", 0, T0 + 130);
    expect_behind(r, "node-b@1,node-c@0");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-c", 2, T0 + 131), WEFT_OK);
    /* node-a drops and comes back: it starts again from nothing and blocks again */
    cr_assert_eq(ca_root_rot_node_disconnected(r, "node-a", T0 + 140), WEFT_OK);
    join(r, "node-a", 0, T0 + 141);
    expect_behind(r, "node-b@1,node-a@0");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 142), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    /* node-b, the laggard, goes away: nobody connected is behind any more */
    cr_assert_eq(ca_root_rot_node_disconnected(r, "node-b", T0 + 150), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    expect_last_change(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_SWITCH_SIGNING, T0 + 150);
    /* when it comes back it is behind, and blocks nothing */
    join(r, "node-b", 0, T0 + 160);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    expect_behind(r, "node-b@0");
    cr_assert_eq(ca_root_rot_node_disconnected(r, "node-b", T0 + 170), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_disconnected(r, "node-b", T0 + 170), WEFT_ENOTFOUND);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, no_agent_connected_means_nothing_to_wait_for)
{
    struct ca_root_rot *r = make(CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_rotate(r, T0, err, sizeof(err)), WEFT_OK);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 1);
    /* one event, two changes: through WAIT_ACKS straight on to SWITCH_SIGNING */
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    cr_assert_eq(num_changes, 3);
    cr_assert_eq(changes[1].st.phase, CA_ROOT_ROT_WAIT_ACKS);
    cr_assert_eq(changes[2].from, CA_ROOT_ROT_WAIT_ACKS);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, rotate_root_while_rotating_is_refused)
{
    const enum ca_root_rot_phase busy[] = {
        CA_ROOT_ROT_ADD_NEW_ROOT,   CA_ROOT_ROT_WAIT_ACKS,     CA_ROOT_ROT_SWITCH_SIGNING,
        CA_ROOT_ROT_WAIT_OLD_SVIDS, CA_ROOT_ROT_DROP_OLD_ROOT,
    };
    for (size_t i = 0; i < nitems(busy); i++) {
        num_changes = 0;
        struct ca_root_rot *r = run_to(busy[i], CA_ROOT_ROT_NO_GRACE);
        struct ca_root_rot_state before, after;
        ca_root_rot_save(r, &before);
        size_t changes_before = num_changes;
        err[0] = '\0';
        cr_assert_eq(ca_root_rot_rotate(r, T0 + 5 * DAY, err, sizeof(err)), WEFT_EPOLICY);
        cr_assert_not_null(strstr(err, "a root rotation is already under way"), "%s", err);
        cr_assert_not_null(strstr(err, ca_root_rot_phase_name(busy[i])), "%s", err);
        cr_assert_not_null(strstr(err, "rotation 1"), "%s", err);
        ca_root_rot_save(r, &after);
        cr_assert_eq(after.phase, before.phase, "nothing changes");
        cr_assert_eq(after.rotations, before.rotations);
        cr_assert_eq(after.bundle_seq, before.bundle_seq);
        cr_assert_eq(after.phase_started_at, before.phase_started_at);
        cr_assert_eq(num_changes, changes_before);
        ca_root_rot_free(r);
    }
    /* in WAIT_ACKS the refusal says how many nodes it waits for */
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 200, err, sizeof(err)), WEFT_EPOLICY);
    cr_assert_str_eq(err, "a root rotation is already under way (rotation 1, phase WAIT_ACKS "
                          "since 2023-11-14T22:15:10Z, 2 connected node(s) behind bundle "
                          "sequence 2): wait for it to finish");
    ca_root_rot_free(r);
}

Test(ca_root_rotation, done_out_of_step_is_refused)
{
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_WAIT_ACKS, CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 200, err, sizeof(err)),
                 WEFT_EINVAL, "a late duplicate");
    cr_assert_not_null(strstr(err, "in phase WAIT_ACKS"), "%s", err);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 2, "not bumped twice");
    cr_assert_eq(ca_root_rot_done(r, CA_ROOT_ROT_SWITCH_SIGNING, T0 + 200, err, sizeof(err)),
                 WEFT_EINVAL, "skipping WAIT_ACKS");
    cr_assert_eq(ca_root_rot_done(r, CA_ROOT_ROT_WAIT_ACKS, T0 + 200, err, sizeof(err)),
                 WEFT_EINVAL, "a WAIT phase is not the caller's to finish");
    cr_assert_not_null(strstr(err, "not a phase the caller finishes"), "%s", err);
    cr_assert_eq(ca_root_rot_done(r, (enum ca_root_rot_phase)42, T0 + 200, err, sizeof(err)),
                 WEFT_EINVAL);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    ca_root_rot_free(r);
    r = make(CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_done(r, CA_ROOT_ROT_IDLE, T0, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_root_rot_done(r, CA_ROOT_ROT_DROP_OLD_ROOT, T0, err, sizeof(err)), WEFT_EINVAL);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, wait_old_svids_at_exact_edges)
{
    /* longest lifetime = max(workload max TTL, node TTL): here the node's 48 h */
    struct ca_root_rot_config cfg = config(CA_ROOT_ROT_NO_GRACE);
    cfg.node_ttl_s = 2 * DAY;
    struct ca_root_rot *r;
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 7, T0, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_root_rot_rotate(r, T0, err, sizeof(err)), WEFT_OK);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 8);
    const int64_t sw = T0 + 1000;
    done(r, CA_ROOT_ROT_SWITCH_SIGNING, sw);
    /* an SVID signed under the old root in the switch's last second is valid through
     * sw + 48 h inclusive (RFC 5280 §4.1.2.5); the old root goes one second later */
    cr_assert_eq(ca_root_rot_next_tick(r), sw + 2 * DAY + 1);
    ca_root_rot_tick(r, sw);
    ca_root_rot_tick(r, sw + 2 * DAY - 1);
    ca_root_rot_tick(r, sw + 2 * DAY);
    expect_phase(r, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    ca_root_rot_tick(r, sw + 2 * DAY + 1);
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    expect_last_change(CA_ROOT_ROT_WAIT_OLD_SVIDS, CA_ROOT_ROT_DROP_OLD_ROOT, sw + 2 * DAY + 1);
    ca_root_rot_free(r);

    /* the workload maximum (24 h) when nodes live shorter; and any event carries time, so an
     * acknowledgement arriving after the deadline ends the wait as a tick would */
    num_changes = 0;
    cfg.node_ttl_s = HOUR;
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_OK, "%s", err);
    cr_assert_eq(ca_root_rot_rotate(r, T0, err, sizeof(err)), WEFT_OK);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0);
    done(r, CA_ROOT_ROT_SWITCH_SIGNING, sw);
    cr_assert_eq(ca_root_rot_next_tick(r), sw + DAY + 1);
    join(r, "node-a", 2, sw + DAY);
    expect_phase(r, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, sw + DAY + 1), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, the_reconnect_grace_holds_wait_acks_after_a_start)
{
    /* A CA that just started knows no agent yet: "nobody is behind" means nothing until
     * agents had the grace (default 60 s) to reconnect. */
    struct ca_root_rot *r = make(0);
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 1, err, sizeof(err)), WEFT_OK);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 2);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    cr_assert_eq(ca_root_rot_next_tick(r), T0 + CA_ROOT_ROT_DEFAULT_GRACE_S);
    join(r, "node-a", 2, T0 + 5);
    ca_root_rot_tick(r, T0 + 59);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    ca_root_rot_tick(r, T0 + 60);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    ca_root_rot_free(r);

    /* once the grace is over it does not hold anything again */
    num_changes = 0;
    r = make(0);
    ca_root_rot_tick(r, T0 + 60);
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 100, err, sizeof(err)), WEFT_OK);
    join(r, "node-a", 0, T0 + 100);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 101);
    cr_assert_eq(ca_root_rot_next_tick(r), INT64_MAX);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 102), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, restores_mid_rotation)
{
    /* A full rotation, persisting each change; then a restore from every saved state. */
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_DROP_OLD_ROOT, CA_ROOT_ROT_NO_GRACE);
    done(r, CA_ROOT_ROT_DROP_OLD_ROOT, T0 + 2 * DAY);
    ca_root_rot_free(r);
    cr_assert_eq(num_changes, 6);
    struct change saved[6];
    memcpy(saved, changes, sizeof(saved));
    struct ca_root_rot_config cfg = config(CA_ROOT_ROT_NO_GRACE);
    for (size_t i = 0; i < nitems(saved); i++) {
        cr_assert_eq(ca_root_rot_restore(&r, &cfg, &saved[i].st, T0 + 3 * DAY, err, sizeof(err)),
                     WEFT_OK, "state %zu: %s", i, err);
        struct ca_root_rot_state back;
        ca_root_rot_save(r, &back);
        cr_assert_eq(back.phase, saved[i].st.phase);
        cr_assert_eq(back.bundle_seq, saved[i].st.bundle_seq);
        cr_assert_eq(back.phase_started_at, saved[i].st.phase_started_at);
        cr_assert_eq(back.old_svids_until, saved[i].st.old_svids_until);
        struct ca_root_rot_status status;
        ca_root_rot_status(r, &status);
        cr_assert_eq(status.num_connected, 0, "no connection survives a restart");
        ca_root_rot_free(r);
    }

    /* restored in WAIT_ACKS: the agents reconnect within the grace and block as before */
    num_changes = 0;
    cfg = config(0);
    const int64_t up = T0 + 1000;
    cr_assert_eq(saved[1].st.phase, CA_ROOT_ROT_WAIT_ACKS);
    cr_assert_eq(ca_root_rot_restore(&r, &cfg, &saved[1].st, up, err, sizeof(err)), WEFT_OK);
    ca_root_rot_tick(r, up);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    cr_assert_eq(ca_root_rot_next_tick(r), up + 60);
    join(r, "node-a", 2, up + 5);
    join(r, "node-b", 1, up + 70); /* reconnects late, still on the old bundle */
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    expect_behind(r, "node-b@1");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 2, up + 71), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 2);
    ca_root_rot_free(r);

    /* restored in an action phase: the work is due again, and reporting it moves on */
    cr_assert_eq(saved[0].st.phase, CA_ROOT_ROT_ADD_NEW_ROOT);
    cfg = config(CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_restore(&r, &cfg, &saved[0].st, up, err, sizeof(err)), WEFT_OK);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, up + 1);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 2);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING); /* nobody connected, no grace */
    ca_root_rot_free(r);

    /* restored in WAIT_OLD_SVIDS: it ends when it always would, not later */
    cr_assert_eq(saved[3].st.phase, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    const int64_t until = saved[3].st.old_svids_until;
    cr_assert_eq(ca_root_rot_restore(&r, &cfg, &saved[3].st, until - HOUR, err, sizeof(err)),
                 WEFT_OK);
    cr_assert_eq(ca_root_rot_next_tick(r), until + 1);
    ca_root_rot_tick(r, until);
    expect_phase(r, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    ca_root_rot_tick(r, until + 1);
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    ca_root_rot_free(r);
    /* ... and at once when the CA was down past it */
    cr_assert_eq(ca_root_rot_restore(&r, &cfg, &saved[3].st, until + DAY, err, sizeof(err)),
                 WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    cr_assert_leq(ca_root_rot_next_tick(r), until + DAY, "the daemon's timer fires at once");
    ca_root_rot_tick(r, until + DAY);
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, refuses_states_it_could_not_have_saved)
{
    struct ca_root_rot_config cfg = config(CA_ROOT_ROT_NO_GRACE);
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_WAIT_OLD_SVIDS, CA_ROOT_ROT_NO_GRACE);
    struct ca_root_rot_state good, st;
    ca_root_rot_save(r, &good);
    ca_root_rot_free(r);
    cr_assert_eq(ca_root_rot_restore(&r, &cfg, &good, T0 + DAY, err, sizeof(err)), WEFT_OK);
    ca_root_rot_free(r);

#define REFUSED(stmt)                                                                              \
    do {                                                                                           \
        st = good;                                                                                 \
        stmt;                                                                                      \
        r = (struct ca_root_rot *)1;                                                               \
        cr_assert_eq(ca_root_rot_restore(&r, &cfg, &st, T0 + DAY, err, sizeof(err)), WEFT_EINVAL,  \
                     "%s", #stmt);                                                                 \
        cr_assert_null(r);                                                                         \
        cr_assert_not_null(strstr(err, "refusing a saved root rotation state"), "%s", err);        \
    } while (0)
    REFUSED(st.phase = (enum ca_root_rot_phase)6);
    REFUSED(st.phase = (enum ca_root_rot_phase)(-1));
    REFUSED(st.bundle_seq = 0);
    REFUSED(st.bundle_seq = UINT64_MAX);
    REFUSED(st.bundle_seq = 1); /* WAIT_OLD_SVIDS comes after a bump */
    REFUSED(st.rotations = 0);
    REFUSED(st.rotation_started_at = st.phase_started_at + 1);
    REFUSED(st.old_svids_until = st.switched_at);
    REFUSED(st.old_svids_until = st.switched_at + CA_ROOT_ROT_MAX_TTL_S + 1);
    REFUSED(st.switched_at = st.rotation_started_at - 1);
    REFUSED(st.phase_started_at = st.switched_at + 1);
    REFUSED(st.switched_at = -5);
    REFUSED((st.phase = CA_ROOT_ROT_WAIT_ACKS));     /* with switch times set */
    REFUSED((st.phase = CA_ROOT_ROT_DROP_OLD_ROOT)); /* before old SVIDs expired */
    REFUSED((st.phase = CA_ROOT_ROT_IDLE));          /* with rotation times set */
    REFUSED((st.phase = CA_ROOT_ROT_ADD_NEW_ROOT, st.switched_at = 0, st.old_svids_until = 0,
             st.bundle_seq = (uint64_t)INT64_MAX - 1)); /* no room for two bumps */
#undef REFUSED

    /* a fresh machine: a bundle sequence of 1 to INT64_MAX */
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 0, T0, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_eq(ca_root_rot_new(&r, &cfg, (uint64_t)INT64_MAX + 1, T0, err, sizeof(err)),
                 WEFT_EINVAL);
    cr_assert_eq(ca_root_rot_new(&r, &cfg, (uint64_t)INT64_MAX, T0, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(ca_root_rot_rotate(r, T0, err, sizeof(err)), WEFT_ELIMIT, "no room to bump");
    ca_root_rot_free(r);
    ca_root_rot_free(NULL);
}

Test(ca_root_rotation, refuses_bad_configs)
{
    struct ca_root_rot *r;
    struct ca_root_rot_config cfg = {.workload_max_ttl_s = -1};
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_EINVAL);
    cr_assert_not_null(strstr(err, "lifetimes"), "%s", err);
    cfg = (struct ca_root_rot_config){.node_ttl_s = CA_ROOT_ROT_MAX_TTL_S + 1};
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_EINVAL);
    cfg = (struct ca_root_rot_config){.reconnect_grace_s = -2};
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_EINVAL);
    cfg = (struct ca_root_rot_config){.reconnect_grace_s = 3601};
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_EINVAL);
    cfg = (struct ca_root_rot_config){.max_nodes = 1000001};
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_EINVAL);
    cfg = (struct ca_root_rot_config){.max_nodes = 1000000, .reconnect_grace_s = 3600};
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_OK, "%s", err);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, node_events_are_checked)
{
    struct ca_root_rot_config cfg = config(CA_ROOT_ROT_NO_GRACE);
    cfg.max_nodes = 2;
    struct ca_root_rot *r;
    cr_assert_eq(ca_root_rot_new(&r, &cfg, 1, T0, err, sizeof(err)), WEFT_OK);
    char longest[CA_ROOT_ROT_NODE_MAX + 2];
    memset(longest, 'n', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    cr_assert_eq(ca_root_rot_node_connected(r, longest, T0), WEFT_EINVAL, "254 bytes");
    longest[CA_ROOT_ROT_NODE_MAX] = '\0';
    cr_assert_eq(ca_root_rot_node_connected(r, longest, T0), WEFT_OK, "253 bytes");
    cr_assert_eq(ca_root_rot_node_connected(r, "", T0), WEFT_EINVAL);
    cr_assert_eq(ca_root_rot_node_connected(r, "node\n-x", T0), WEFT_EINVAL);
    cr_assert_eq(ca_root_rot_node_connected(r, "node-a", T0), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_connected(r, "node-c", T0), WEFT_ELIMIT, "one past max_nodes");
    /* a second stream of a connected node is no new node, and keeps its acknowledgement */
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 1, T0), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_connected(r, "node-a", T0), WEFT_OK);
    struct ca_root_rot_status status;
    ca_root_rot_status(r, &status);
    cr_assert_eq(status.num_connected, 2);
    cr_assert_eq(status.num_behind, 1, "only the long-named node");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0), WEFT_EINVAL,
                 "a bundle that does not exist");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-z", 1, T0), WEFT_ENOTFOUND);
    cr_assert_eq(ca_root_rot_node_acked(r, "", 1, T0), WEFT_ENOTFOUND);
    cr_assert_eq(ca_root_rot_node_disconnected(r, "node-z", T0), WEFT_ENOTFOUND);
    cr_assert_eq(ca_root_rot_node_disconnected(r, "node-a", T0), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_connected(r, "node-c", T0), WEFT_OK, "room again");
    ca_root_rot_free(r);
}

Test(ca_root_rotation, the_status_text_is_cut_at_a_name)
{
    struct ca_root_rot *r = make(CA_ROOT_ROT_NO_GRACE);
    char name[64];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "node-with-a-rather-long-name-%02d", i);
        join(r, name, 0, T0);
    }
    char text[256];
    ca_root_rot_format_status(r, text, sizeof(text));
    cr_assert_lt(strlen(text), sizeof(text));
    cr_assert_not_null(strstr(text, "; bundle sequence 1; 40 of 40 connected nodes behind: "
                                    "node-with-a-rather-long-name-00 (acked 0), "),
                       "%s", text);
    const char *more = strstr(text, " ... and ");
    cr_assert_not_null(more, "%s", text);
    int listed = 0, rest = 0;
    for (const char *p = text; (p = strstr(p, "(acked 0)")) != NULL; p++) {
        listed++;
    }
    cr_assert_eq(sscanf(more, " ... and %d more", &rest), 1, "%s", more);
    cr_assert_eq(listed + rest, 40, "%s", text);
    /* tiny buffers still end in NUL */
    char tiny[8];
    ca_root_rot_format_status(r, tiny, sizeof(tiny));
    cr_assert_str_eq(tiny, "phase I");
    ca_root_rot_format_status(r, tiny, 1);
    cr_assert_str_eq(tiny, "");
    ca_root_rot_free(r);
}

/* --- real certificates: no agent is ever handed an SVID its bundle cannot verify ----------- */

struct agent {
    const char *name;
    uint64_t seq; /* the bundle it holds */
};

/* bundles[seq]: what each bundle sequence holds. */
static struct spiffe_bundle_set bundles[4];

static void bundle_publish(uint64_t seq, X509 *a, X509 *b)
{
    struct spiffe_id td;
    cr_assert_eq(spiffe_td_parse(&td, TESTLIB_TD, strlen(TESTLIB_TD), NULL), WEFT_OK);
    struct spiffe_bundle *bundle = spiffe_bundle_new(&td);
    cr_assert_not_null(bundle);
    cr_assert_eq(spiffe_bundle_add_x509(bundle, a), WEFT_OK);
    if (b != NULL) {
        cr_assert_eq(spiffe_bundle_add_x509(bundle, b), WEFT_OK);
    }
    spiffe_bundle_set_init(&bundles[seq]);
    cr_assert_eq(spiffe_bundle_set_put(&bundles[seq], bundle), WEFT_OK);
}

static int verify(const struct testlib_cred *leaf, const struct testlib_cred *inter, uint64_t seq,
                  int64_t at)
{
    X509 *certs[] = {leaf->cert, inter->cert};
    STACK_OF(X509) *chain = testlib_chain(certs, 2);
    cr_assert_not_null(chain);
    struct spiffe_id id;
    struct spiffe_why why = {0};
    int rc = spiffe_x509svid_verify(&id, chain, &bundles[seq], at, &why);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* deliver gives |a| the current bundle and has it acknowledge. */
static void deliver(struct ca_root_rot *r, struct agent *a, int64_t now)
{
    a->seq = ca_root_rot_bundle_seq(r);
    cr_assert_eq(ca_root_rot_node_acked(r, a->name, a->seq, now), WEFT_OK);
}

Test(ca_root_rotation, every_agent_verifies_every_svid_throughout)
{
    struct testlib_cred old_root = {0}, new_root = {0}, old_int = {0}, new_int = {0};
    struct testlib_cred before = {0}, last_old = {0}, after = {0};
    const int64_t year = 365 * DAY;
    cr_assert_eq(testlib_mint_root(&old_root, TESTLIB_TD, SPIFFE_KEY_EC_P256, T0 - DAY, year),
                 WEFT_OK);
    cr_assert_eq(testlib_mint_intermediate(&old_int, &old_root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                                           T0 - DAY, 7 * DAY),
                 WEFT_OK);
    bundle_publish(1, old_root.cert, NULL);
    struct ca_root_rot *r = make(CA_ROOT_ROT_NO_GRACE);
    struct agent a = {"node-a", 0}, b = {"node-b", 0};
    join(r, a.name, 0, T0);
    join(r, b.name, 0, T0);
    deliver(r, &a, T0);
    deliver(r, &b, T0);

    /* rotate-root: the caller mints the new root and adds it beside the old one */
    int64_t now = T0 + HOUR;
    cr_assert_eq(ca_root_rot_rotate(r, now, err, sizeof(err)), WEFT_OK);
    cr_assert_eq(testlib_mint_root(&new_root, TESTLIB_TD, SPIFFE_KEY_EC_P256, now - 60, year),
                 WEFT_OK);
    bundle_publish(2, old_root.cert, new_root.cert);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, now);
    deliver(r, &a, now + 1); /* node-b lags */

    /* still signing under the old root: both bundles verify it */
    now += 10;
    cr_assert_eq(
        testlib_mint_leaf(&before, &old_int, TESTLIB_LEAF_ID, SPIFFE_KEY_EC_P256, now - 60, DAY),
        WEFT_OK);
    cr_assert_eq(verify(&before, &old_int, a.seq, now), WEFT_OK);
    cr_assert_eq(verify(&before, &old_int, b.seq, now), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);

    /* node-b catches up: signing may switch; the last old-root SVID comes from that second */
    now += HOUR;
    deliver(r, &b, now);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);
    cr_assert_eq(
        testlib_mint_leaf(&last_old, &old_int, TESTLIB_LEAF_ID, SPIFFE_KEY_EC_P256, now - 60, DAY),
        WEFT_OK);
    cr_assert_eq(testlib_mint_intermediate(&new_int, &new_root, TESTLIB_TD, SPIFFE_KEY_EC_P256,
                                           now - 60, 7 * DAY),
                 WEFT_OK);
    done(r, CA_ROOT_ROT_SWITCH_SIGNING, now);
    const int64_t switched = now;

    /* under the new root: every connected agent holds bundle 2 and verifies it */
    cr_assert_eq(
        testlib_mint_leaf(&after, &new_int, TESTLIB_LEAF_ID, SPIFFE_KEY_EC_P256, now - 60, DAY),
        WEFT_OK);
    cr_assert_eq(verify(&after, &new_int, a.seq, now), WEFT_OK);
    cr_assert_eq(verify(&after, &new_int, b.seq, now), WEFT_OK);
    cr_assert_neq(verify(&after, &new_int, 1, now), WEFT_OK, "bundle 1 alone would not have");

    /* the old root stays as long as any SVID under it can be valid */
    int64_t last_old_end, nb;
    cr_assert_eq(spiffe_cert_validity(&nb, &last_old_end, last_old.cert), WEFT_OK);
    cr_assert_leq(last_old_end, switched + DAY);
    ca_root_rot_tick(r, last_old_end);
    expect_phase(r, CA_ROOT_ROT_WAIT_OLD_SVIDS);
    cr_assert_eq(verify(&last_old, &old_int, a.seq, last_old_end), WEFT_OK);
    now = ca_root_rot_next_tick(r);
    cr_assert_gt(now, last_old_end);
    ca_root_rot_tick(r, now);
    expect_phase(r, CA_ROOT_ROT_DROP_OLD_ROOT);
    cr_assert_neq(verify(&last_old, &old_int, a.seq, now), WEFT_OK, "expired by now anyway");

    /* drop the old root: bundle 3 holds the new root alone and still verifies new SVIDs */
    bundle_publish(3, new_root.cert, NULL);
    done(r, CA_ROOT_ROT_DROP_OLD_ROOT, now);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 3);
    deliver(r, &a, now);
    cr_assert_eq(verify(&after, &new_int, a.seq, switched + HOUR), WEFT_OK);
    cr_assert_neq(verify(&before, &old_int, a.seq, switched), WEFT_OK, "the old root is gone");

    ca_root_rot_free(r);
    struct testlib_cred *creds[] = {&old_root, &new_root, &old_int, &new_int,
                                    &before,   &last_old, &after};
    for (size_t i = 0; i < nitems(creds); i++) {
        testlib_cred_cleanup(creds[i]);
    }
    for (size_t i = 1; i < nitems(bundles); i++) {
        spiffe_bundle_set_cleanup(&bundles[i]);
    }
}

/* --- other changes of the bundle (the JWT-SVID keys it publishes) ------------------------- */

Test(ca_root_rotation, a_bundle_change_outside_a_rotation_bumps_the_sequence_and_is_waited_for)
{
    struct ca_root_rot *r = run_to(CA_ROOT_ROT_IDLE, CA_ROOT_ROT_NO_GRACE);
    size_t changes_before = num_changes;
    cr_assert_eq(ca_root_rot_bundle_changed(r, T0 + 10), WEFT_OK);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 2);
    expect_phase(r, CA_ROOT_ROT_IDLE);
    cr_assert_eq(num_changes, changes_before, "no phase change: the caller persists it");
    expect_behind(r, "node-a@1,node-b@1");
    struct ca_root_rot_state st;
    ca_root_rot_save(r, &st);
    cr_assert_eq(st.bundle_seq, 2, "the state to persist has it");

    /* during WAIT_ACKS the rotation waits for the newest content: an ack of the bundle with the
     * new root but not the later change keeps a node behind */
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 2, T0 + 20), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 2, T0 + 20), WEFT_OK);
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 30, err, sizeof(err)), WEFT_OK, "%s", err);
    done(r, CA_ROOT_ROT_ADD_NEW_ROOT, T0 + 40);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 3);
    cr_assert_eq(ca_root_rot_bundle_changed(r, T0 + 50), WEFT_OK);
    cr_assert_eq(ca_root_rot_bundle_seq(r), 4);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 3, T0 + 60), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 3, T0 + 60), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_WAIT_ACKS);
    expect_behind(r, "node-a@3,node-b@3");
    cr_assert_eq(ca_root_rot_node_acked(r, "node-a", 4, T0 + 70), WEFT_OK);
    cr_assert_eq(ca_root_rot_node_acked(r, "node-b", 4, T0 + 70), WEFT_OK);
    expect_phase(r, CA_ROOT_ROT_SWITCH_SIGNING);

    /* a restore accepts the bumped sequence */
    ca_root_rot_save(r, &st);
    struct ca_root_rot *back;
    struct ca_root_rot_config cfg = config(CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_restore(&back, &cfg, &st, T0 + 80, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    cr_assert_eq(ca_root_rot_bundle_seq(back), 4);
    ca_root_rot_free(back);
    ca_root_rot_free(r);
}

Test(ca_root_rotation, a_bundle_change_keeps_room_for_a_rotation)
{
    struct ca_root_rot *r;
    struct ca_root_rot_config cfg = config(CA_ROOT_ROT_NO_GRACE);
    cr_assert_eq(ca_root_rot_new(&r, &cfg, (uint64_t)INT64_MAX - 2, T0, err, sizeof(err)), WEFT_OK,
                 "%s", err);
    cr_assert_eq(ca_root_rot_bundle_changed(r, T0), WEFT_ELIMIT, "a rotation needs the last two");
    cr_assert_eq(ca_root_rot_bundle_seq(r), (uint64_t)INT64_MAX - 2, "unchanged");
    cr_assert_eq(ca_root_rot_rotate(r, T0 + 1, err, sizeof(err)), WEFT_OK, "%s", err);
    ca_root_rot_free(r);
}
