/* The root rotation state machine (ca/root_rotation.h). */
#include "ca/root_rotation.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"
#include "lib/base/timefmt.h"

#define MAX_GRACE_S 3600         /* a longer grace would stall a rotation for nothing */
#define MAX_NODES_LIMIT 1000000u /* far past any mesh we expect; bounds the table */
#define FIRST_NODES_CAP 16

struct node {
    char name[CA_ROOT_ROT_NODE_MAX + 1];
    uint64_t acked_seq; /* 0: nothing acknowledged since it connected */
};

struct ca_root_rot {
    struct ca_root_rot_state st;
    int64_t longest_svid_s; /* max(workload max TTL, node TTL) */
    int64_t trusted_from;   /* the connected set means something from here on */
    bool trusted;           /* an event at or after |trusted_from| was seen */
    size_t max_nodes;
    void (*on_phase)(void *arg, enum ca_root_rot_phase from, const struct ca_root_rot_state *st);
    void *arg;
    struct node *nodes; /* connected nodes, in the order they connected */
    size_t num_nodes, cap_nodes;
};

static int configure(struct ca_root_rot *r, const struct ca_root_rot_config *cfg, int64_t now,
                     char *err, size_t err_len);
static int state_check(const struct ca_root_rot_state *st, char *err, size_t err_len);
static unsigned bumps_left(enum ca_root_rot_phase p);
static bool phase_valid(enum ca_root_rot_phase p);
static void enter(struct ca_root_rot *r, enum ca_root_rot_phase phase, int64_t now);
static void advance(struct ca_root_rot *r, int64_t now);
static size_t count_behind(const struct ca_root_rot *r);
static bool name_ok(const char *node);
static struct node *find(const struct ca_root_rot *r, const char *node);
static int64_t add_sat(int64_t a, int64_t b);
static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

const char *ca_root_rot_phase_name(enum ca_root_rot_phase p)
{
    switch (p) {
    case CA_ROOT_ROT_IDLE:
        return "IDLE";
    case CA_ROOT_ROT_ADD_NEW_ROOT:
        return "ADD_NEW_ROOT";
    case CA_ROOT_ROT_WAIT_ACKS:
        return "WAIT_ACKS";
    case CA_ROOT_ROT_SWITCH_SIGNING:
        return "SWITCH_SIGNING";
    case CA_ROOT_ROT_WAIT_OLD_SVIDS:
        return "WAIT_OLD_SVIDS";
    case CA_ROOT_ROT_DROP_OLD_ROOT:
        return "DROP_OLD_ROOT";
    }
    return "?";
}

int ca_root_rot_new(struct ca_root_rot **out, const struct ca_root_rot_config *cfg,
                    uint64_t bundle_seq, int64_t now, char *err, size_t err_len)
{
    struct ca_root_rot_state st = {
        .phase = CA_ROOT_ROT_IDLE,
        .bundle_seq = bundle_seq,
        .phase_started_at = now,
    };
    return ca_root_rot_restore(out, cfg, &st, now, err, err_len);
}

int ca_root_rot_restore(struct ca_root_rot **out, const struct ca_root_rot_config *cfg,
                        const struct ca_root_rot_state *st, int64_t now, char *err, size_t err_len)
{
    *out = NULL;
    struct ca_root_rot tmp = {0};
    TRY(configure(&tmp, cfg, now, err, err_len));
    TRY(state_check(st, err, err_len));
    tmp.st = *st;
    struct ca_root_rot *r = weft_xmalloc(sizeof(*r));
    *r = tmp;
    *out = r;
    return WEFT_OK;
}

void ca_root_rot_free(struct ca_root_rot *r)
{
    if (r == NULL) {
        return;
    }
    free(r->nodes);
    free(r);
}

void ca_root_rot_save(const struct ca_root_rot *r, struct ca_root_rot_state *out) { *out = r->st; }

enum ca_root_rot_phase ca_root_rot_phase(const struct ca_root_rot *r) { return r->st.phase; }

uint64_t ca_root_rot_bundle_seq(const struct ca_root_rot *r) { return r->st.bundle_seq; }

int ca_root_rot_rotate(struct ca_root_rot *r, int64_t now, char *err, size_t err_len)
{
    if (r->st.phase != CA_ROOT_ROT_IDLE) {
        char since[WEFT_RFC3339_LEN];
        weft_time_format_rfc3339(since, r->st.phase_started_at);
        snprintf(err, err_len,
                 "a root rotation is already under way (rotation %llu, phase %s since %s, %zu "
                 "connected node(s) behind bundle sequence %llu): wait for it to finish",
                 (unsigned long long)r->st.rotations, ca_root_rot_phase_name(r->st.phase), since,
                 count_behind(r), (unsigned long long)r->st.bundle_seq);
        return WEFT_EPOLICY;
    }
    /* the rotation bumps the sequence twice; a bundle document cannot carry more than
     * INT64_MAX (lib/spiffe/bundle.h) */
    if (r->st.bundle_seq > (uint64_t)INT64_MAX - 2) {
        snprintf(err, err_len, "the bundle sequence %llu has no room for a rotation",
                 (unsigned long long)r->st.bundle_seq);
        return WEFT_ELIMIT;
    }
    r->st.rotations++;
    r->st.rotation_started_at = now;
    enter(r, CA_ROOT_ROT_ADD_NEW_ROOT, now);
    advance(r, now);
    return WEFT_OK;
}

int ca_root_rot_done(struct ca_root_rot *r, enum ca_root_rot_phase phase, int64_t now, char *err,
                     size_t err_len)
{
    /* A report for another phase is a caller out of step with the machine (a late duplicate,
     * or work started from a stale state): refusing it keeps a phase from being skipped. */
    if (phase != r->st.phase) {
        snprintf(err, err_len, "%s reported done, but the root rotation is in phase %s",
                 ca_root_rot_phase_name(phase), ca_root_rot_phase_name(r->st.phase));
        return WEFT_EINVAL;
    }
    switch (phase) {
    case CA_ROOT_ROT_ADD_NEW_ROOT:
        /* one sequence per bundle content: before this the stored bundle may or may not hold
         * the new root yet, from here on it does */
        r->st.bundle_seq++;
        enter(r, CA_ROOT_ROT_WAIT_ACKS, now);
        break;
    case CA_ROOT_ROT_SWITCH_SIGNING:
        /* Every SVID under the old root was signed before this report, and lives at most
         * |longest_svid_s| (issuer.c even backdates notBefore, which only ends it sooner). */
        r->st.switched_at = now;
        r->st.old_svids_until = add_sat(now, r->longest_svid_s);
        enter(r, CA_ROOT_ROT_WAIT_OLD_SVIDS, now);
        break;
    case CA_ROOT_ROT_DROP_OLD_ROOT:
        r->st.bundle_seq++;
        r->st.rotation_started_at = 0;
        r->st.switched_at = 0;
        r->st.old_svids_until = 0;
        enter(r, CA_ROOT_ROT_IDLE, now);
        break;
    default:
        snprintf(err, err_len, "%s is not a phase the caller finishes",
                 ca_root_rot_phase_name(phase));
        return WEFT_EINVAL;
    }
    advance(r, now);
    return WEFT_OK;
}

int ca_root_rot_bundle_changed(struct ca_root_rot *r, int64_t now)
{
    /* room for this bump, the ones a rotation under way still makes, and a whole next rotation */
    ENSURE(r->st.bundle_seq < (uint64_t)INT64_MAX - 2 - bumps_left(r->st.phase), WEFT_ELIMIT);
    r->st.bundle_seq++;
    advance(r, now);
    return WEFT_OK;
}

int ca_root_rot_node_connected(struct ca_root_rot *r, const char *node, int64_t now)
{
    ENSURE(name_ok(node), WEFT_EINVAL);
    /* one node, several streams: the caller reports the first open and the last close, and a
     * repeat keeps what the node acknowledged */
    if (find(r, node) != NULL) {
        advance(r, now);
        return WEFT_OK;
    }
    ENSURE(r->num_nodes < r->max_nodes, WEFT_ELIMIT);
    if (r->num_nodes == r->cap_nodes) {
        size_t cap = r->cap_nodes == 0 ? FIRST_NODES_CAP : r->cap_nodes * 2;
        cap = cap > r->max_nodes ? r->max_nodes : cap;
        r->nodes = weft_xrealloc(r->nodes, cap * sizeof(*r->nodes));
        r->cap_nodes = cap;
    }
    struct node *n = &r->nodes[r->num_nodes++];
    memset(n, 0, sizeof(*n));
    memcpy(n->name, node, strlen(node));
    advance(r, now);
    return WEFT_OK;
}

int ca_root_rot_node_disconnected(struct ca_root_rot *r, const char *node, int64_t now)
{
    struct node *n = name_ok(node) ? find(r, node) : NULL;
    ENSURE(n != NULL, WEFT_ENOTFOUND);
    /* keep connection order for the status list */
    size_t i = (size_t)(n - r->nodes);
    memmove(&r->nodes[i], &r->nodes[i + 1], (r->num_nodes - i - 1) * sizeof(*r->nodes));
    r->num_nodes--;
    advance(r, now);
    return WEFT_OK;
}

int ca_root_rot_node_acked(struct ca_root_rot *r, const char *node, uint64_t seq, int64_t now)
{
    struct node *n = name_ok(node) ? find(r, node) : NULL;
    ENSURE(n != NULL, WEFT_ENOTFOUND);
    ENSURE(seq <= r->st.bundle_seq, WEFT_EINVAL);
    /* acknowledgements only move forward: a late one for an older bundle says nothing new */
    if (seq > n->acked_seq) {
        n->acked_seq = seq;
    }
    advance(r, now);
    return WEFT_OK;
}

void ca_root_rot_tick(struct ca_root_rot *r, int64_t now) { advance(r, now); }

int64_t ca_root_rot_next_tick(const struct ca_root_rot *r)
{
    switch (r->st.phase) {
    case CA_ROOT_ROT_WAIT_ACKS:
        return r->trusted ? INT64_MAX : r->trusted_from;
    case CA_ROOT_ROT_WAIT_OLD_SVIDS:
        return add_sat(r->st.old_svids_until, 1);
    default:
        return INT64_MAX;
    }
}

void ca_root_rot_status(const struct ca_root_rot *r, struct ca_root_rot_status *out)
{
    *out = (struct ca_root_rot_status){
        .phase = r->st.phase,
        .phase_started_at = r->st.phase_started_at,
        .rotation_started_at = r->st.rotation_started_at,
        .bundle_seq = r->st.bundle_seq,
        .num_connected = r->num_nodes,
        .num_behind = count_behind(r),
        .waits_until =
            r->st.phase == CA_ROOT_ROT_WAIT_OLD_SVIDS ? add_sat(r->st.old_svids_until, 1) : 0,
    };
}

int ca_root_rot_behind(const struct ca_root_rot *r,
                       int (*fn)(void *arg, const char *node, uint64_t acked_seq), void *arg)
{
    for (size_t i = 0; i < r->num_nodes; i++) {
        if (r->nodes[i].acked_seq < r->st.bundle_seq) {
            TRY(fn(arg, r->nodes[i].name, r->nodes[i].acked_seq));
        }
    }
    return WEFT_OK;
}

void ca_root_rot_format_status(const struct ca_root_rot *r, char *buf, size_t len)
{
    if (len == 0) {
        return;
    }
    buf[0] = '\0';
    size_t pos = 0;
    char t[WEFT_RFC3339_LEN];
    weft_time_format_rfc3339(t, r->st.phase_started_at);
    appendf(buf, len, &pos, "phase %s since %s", ca_root_rot_phase_name(r->st.phase), t);
    if (r->st.phase != CA_ROOT_ROT_IDLE) {
        weft_time_format_rfc3339(t, r->st.rotation_started_at);
        appendf(buf, len, &pos, " (rotation %llu started %s)", (unsigned long long)r->st.rotations,
                t);
    }
    if (r->st.phase == CA_ROOT_ROT_WAIT_OLD_SVIDS) {
        weft_time_format_rfc3339(t, add_sat(r->st.old_svids_until, 1));
        appendf(buf, len, &pos, "; the old root may go at %s", t);
    }
    size_t behind = count_behind(r);
    appendf(buf, len, &pos, "; bundle sequence %llu; %zu of %zu connected nodes behind",
            (unsigned long long)r->st.bundle_seq, behind, r->num_nodes);
    /* Names as long as they fit, keeping room for the count of the rest, so a long list is
     * cut at a name and says so rather than ending mid-word. */
    const size_t reserve = sizeof(" ... and 18446744073709551615 more");
    size_t listed = 0;
    for (size_t i = 0; i < r->num_nodes; i++) {
        const struct node *n = &r->nodes[i];
        if (n->acked_seq >= r->st.bundle_seq) {
            continue;
        }
        int need = snprintf(NULL, 0, "%s%s (acked %llu)", listed == 0 ? ": " : ", ", n->name,
                            (unsigned long long)n->acked_seq);
        if (need < 0 || pos + (size_t)need + reserve >= len) {
            appendf(buf, len, &pos, " ... and %zu more", behind - listed);
            return;
        }
        appendf(buf, len, &pos, "%s%s (acked %llu)", listed == 0 ? ": " : ", ", n->name,
                (unsigned long long)n->acked_seq);
        listed++;
    }
}

/* configure resolves the defaults and refuses nonsense; |now| starts the reconnect grace. */
static int configure(struct ca_root_rot *r, const struct ca_root_rot_config *cfg, int64_t now,
                     char *err, size_t err_len)
{
    int64_t wl =
        cfg->workload_max_ttl_s != 0 ? cfg->workload_max_ttl_s : CA_ROOT_ROT_DEFAULT_WORKLOAD_TTL_S;
    int64_t node = cfg->node_ttl_s != 0 ? cfg->node_ttl_s : CA_ROOT_ROT_DEFAULT_NODE_TTL_S;
    int64_t grace = cfg->reconnect_grace_s == 0                      ? CA_ROOT_ROT_DEFAULT_GRACE_S
                    : cfg->reconnect_grace_s == CA_ROOT_ROT_NO_GRACE ? 0
                                                                     : cfg->reconnect_grace_s;
    size_t max_nodes = cfg->max_nodes != 0 ? cfg->max_nodes : CA_ROOT_ROT_DEFAULT_MAX_NODES;
    if (wl < 1 || wl > CA_ROOT_ROT_MAX_TTL_S || node < 1 || node > CA_ROOT_ROT_MAX_TTL_S) {
        snprintf(err, err_len,
                 "SVID lifetimes are 1 s to 366 days, not %llds (workload) and %llds"
                 " (node)",
                 (long long)wl, (long long)node);
        return WEFT_EINVAL;
    }
    if (grace < 0 || grace > MAX_GRACE_S) {
        snprintf(err, err_len, "the reconnect grace is 0 to %d s, not %llds", MAX_GRACE_S,
                 (long long)grace);
        return WEFT_EINVAL;
    }
    if (max_nodes > MAX_NODES_LIMIT) {
        snprintf(err, err_len, "at most %u nodes can be tracked, not %zu", MAX_NODES_LIMIT,
                 max_nodes);
        return WEFT_EINVAL;
    }
    r->longest_svid_s = wl > node ? wl : node;
    r->trusted_from = add_sat(now, grace);
    r->trusted = grace == 0;
    r->max_nodes = max_nodes;
    r->on_phase = cfg->on_phase;
    r->arg = cfg->arg;
    return WEFT_OK;
}

/* state_check refuses a state this machine could never have saved: each phase has exactly the
 * fields that are set on the way into it. */
static int state_check(const struct ca_root_rot_state *st, char *err, size_t err_len)
{
    const char *why = NULL;
    enum ca_root_rot_phase p = st->phase;
    bool after_switch = p == CA_ROOT_ROT_WAIT_OLD_SVIDS || p == CA_ROOT_ROT_DROP_OLD_ROOT;
    if (!phase_valid(p)) {
        why = "an unknown phase";
    } else if (st->phase_started_at < 0 || st->rotation_started_at < 0 || st->switched_at < 0 ||
               st->old_svids_until < 0) {
        why = "a time before 1970";
    } else if (st->bundle_seq < 1 || st->bundle_seq > (uint64_t)INT64_MAX - bumps_left(p)) {
        why = "a bundle sequence of 0, or one with no room for the bumps still to come";
    } else if (p == CA_ROOT_ROT_IDLE) {
        if (st->rotation_started_at != 0 || st->switched_at != 0 || st->old_svids_until != 0) {
            why = "rotation times set while IDLE";
        }
    } else if (st->rotations < 1 || st->rotation_started_at > st->phase_started_at) {
        why = "a rotation under way that was never started, or a phase older than its rotation";
    } else if (p != CA_ROOT_ROT_ADD_NEW_ROOT && st->bundle_seq < 2) {
        why = "a new root added without a bundle sequence bump";
    } else if (!after_switch && (st->switched_at != 0 || st->old_svids_until != 0)) {
        why = "a switch time before signing switched";
    } else if (after_switch && (st->switched_at < st->rotation_started_at ||
                                st->old_svids_until <= st->switched_at ||
                                st->old_svids_until - st->switched_at > CA_ROOT_ROT_MAX_TTL_S)) {
        why = "switch times that contradict each other";
    } else if (p == CA_ROOT_ROT_WAIT_OLD_SVIDS && st->phase_started_at != st->switched_at) {
        why = "WAIT_OLD_SVIDS not starting at the switch";
    } else if (p == CA_ROOT_ROT_DROP_OLD_ROOT && st->phase_started_at <= st->old_svids_until) {
        why = "DROP_OLD_ROOT starting while old SVIDs may be valid";
    }
    if (why != NULL) {
        snprintf(err, err_len, "refusing a saved root rotation state (phase %s): %s",
                 ca_root_rot_phase_name(p), why);
        return WEFT_EINVAL;
    }
    return WEFT_OK;
}

/* bumps_left: how many times the bundle sequence still goes up before IDLE. */
static unsigned bumps_left(enum ca_root_rot_phase p)
{
    switch (p) {
    case CA_ROOT_ROT_IDLE:
        return 0;
    case CA_ROOT_ROT_ADD_NEW_ROOT:
        return 2;
    default:
        return 1;
    }
}

static bool phase_valid(enum ca_root_rot_phase p)
{
    /* through int: a value read back from storage may be anything, even negative */
    return (int)p >= (int)CA_ROOT_ROT_IDLE && (int)p <= (int)CA_ROOT_ROT_DROP_OLD_ROOT;
}

/* enter records the move and tells the caller, who persists and starts the phase's work. */
static void enter(struct ca_root_rot *r, enum ca_root_rot_phase phase, int64_t now)
{
    enum ca_root_rot_phase from = r->st.phase;
    r->st.phase = phase;
    r->st.phase_started_at = now;
    if (r->on_phase != NULL) {
        r->on_phase(r->arg, from, &r->st);
    }
}

/* advance ends a WAIT phase whose condition holds at |now|. Every event calls it last, so a
 * condition met by an ack, a disconnect or the clock is acted on by whichever comes first. At
 * most one move: both WAIT phases lead to an action phase, which waits for the caller. */
static void advance(struct ca_root_rot *r, int64_t now)
{
    if (now >= r->trusted_from) {
        r->trusted = true;
    }
    switch (r->st.phase) {
    case CA_ROOT_ROT_WAIT_ACKS:
        if (r->trusted && count_behind(r) == 0) {
            enter(r, CA_ROOT_ROT_SWITCH_SIGNING, now);
        }
        break;
    case CA_ROOT_ROT_WAIT_OLD_SVIDS:
        /* RFC 5280 §4.1.2.5: a certificate is valid through its notAfter, inclusive; the old
         * root is needed until that second is over. */
        if (now > r->st.old_svids_until) {
            enter(r, CA_ROOT_ROT_DROP_OLD_ROOT, now);
        }
        break;
    default:
        break;
    }
}

static size_t count_behind(const struct ca_root_rot *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->num_nodes; i++) {
        n += r->nodes[i].acked_seq < r->st.bundle_seq;
    }
    return n;
}

/* name_ok: 1..CA_ROOT_ROT_NODE_MAX bytes with no control characters, since names end up in
 * the status text and the audit log. */
static bool name_ok(const char *node)
{
    size_t n = strnlen(node, CA_ROOT_ROT_NODE_MAX + 1);
    if (n == 0 || n > CA_ROOT_ROT_NODE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)node[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

static struct node *find(const struct ca_root_rot *r, const char *node)
{
    for (size_t i = 0; i < r->num_nodes; i++) {
        if (strcmp(r->nodes[i].name, node) == 0) {
            return &r->nodes[i];
        }
    }
    return NULL;
}

/* add_sat adds a non-negative |b|, stopping at INT64_MAX rather than overflowing. */
static int64_t add_sat(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }

/* appendf writes at |*pos| and moves it, never past the last byte of |buf|. */
static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    if (*pos + 1 >= len) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    *pos = *pos + (size_t)n >= len ? len - 1 : *pos + (size_t)n;
}
