/* ca/root_rotation.h: root rotation as one state machine (issue 4), driven by the admin's
 * `weftctl ca rotate-root`, with no restart anywhere:
 *
 *   IDLE -> ADD_NEW_ROOT -> WAIT_ACKS -> SWITCH_SIGNING -> WAIT_OLD_SVIDS -> DROP_OLD_ROOT -> IDLE
 *
 *   ADD_NEW_ROOT    the caller mints (or loads) the new root and adds it to the bundle, beside
 *                   the old one; when it reports that done, the bundle sequence goes up by one.
 *   WAIT_ACKS       every connected agent must acknowledge a bundle sequence at least that new
 *                   one, so that it trusts SVIDs under either root before any exists.
 *   SWITCH_SIGNING  the caller has the signer mint an intermediate under the new root and
 *                   sign with it (a fresh ca/rotation.h schedule starts with it, dropping any
 *                   successor prepared under the old root); it reports that done.
 *   WAIT_OLD_SVIDS  until no SVID under the old root can still be valid: the longest SVID
 *                   lifetime, max(workload max TTL, node TTL), after the switch.
 *   DROP_OLD_ROOT   the caller removes the old root from the bundle; when it reports that done,
 *                   the bundle sequence goes up by one and the machine is IDLE again.
 *
 * The three phases that need work from the caller (minting, the signer, the store) wait for
 * ca_root_rot_done(); the two WAIT phases end by themselves on the events that satisfy them.
 * Everything is an event with the time it happened: the command, done, node connected,
 * disconnected, acked, and tick. Nothing here reads the clock, allocates past a bound, or does
 * I/O: the caller learns of each phase change through a callback, which is where it persists
 * the state, writes the audit line and starts the phase's work.
 *
 * Which nodes block WAIT_ACKS (the issue says only "every connected agent"):
 *  - The caller reports a node connected when its first WatchNode stream opens and disconnected
 *    when its last one closes. Only connected nodes block; a node that disconnects stops
 *    blocking at once.
 *  - A node is tracked only while connected. One that (re)connects starts as having
 *    acknowledged nothing: it gets a full snapshot, with the current bundle, at once, and
 *    blocks WAIT_ACKS until it acknowledges it.
 *  - The set of connected nodes is only trusted once the machine has existed for the reconnect
 *    grace (60 s by default): right after the CA starts (or restores this state after a
 *    restart) no agent has reconnected yet, and "no node is behind" would be vacuously true.
 *  - Acknowledgements do not matter outside WAIT_ACKS; the status still shows who is behind.
 *
 * The machine owns the bundle's sequence number. Root rotation changes the roots (intermediate
 * rotation leaves them alone); the caller reports any other change of the bundle's content (the
 * JWT-SVID keys it publishes, issue 11) with ca_root_rot_bundle_changed, so that the sequence
 * changes whenever the content does (SPIFFE bundle rule E2) and an agent's acknowledgement
 * always names the content it holds. */
#ifndef WEFT_CA_ROOT_ROTATION_H
#define WEFT_CA_ROOT_ROTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define CA_ROOT_ROT_NODE_MAX 253 /* bytes of a node name: CA_NODE_NAME_MAX of ca/store.h */
#define CA_ROOT_ROT_DEFAULT_WORKLOAD_TTL_S (24 * 3600) /* CA_MAX_SVID_TTL_S of ca/core.h */
#define CA_ROOT_ROT_DEFAULT_NODE_TTL_S (24 * 3600)     /* CA_DEFAULT_NODE_TTL_S of ca/issuer.h */
#define CA_ROOT_ROT_DEFAULT_GRACE_S 60
#define CA_ROOT_ROT_NO_GRACE (-1)
#define CA_ROOT_ROT_DEFAULT_MAX_NODES 10000
#define CA_ROOT_ROT_MAX_TTL_S (366 * 24 * 3600) /* refuse longer SVID lifetimes as nonsense */

enum ca_root_rot_phase {
    CA_ROOT_ROT_IDLE = 0,
    CA_ROOT_ROT_ADD_NEW_ROOT,
    CA_ROOT_ROT_WAIT_ACKS,
    CA_ROOT_ROT_SWITCH_SIGNING,
    CA_ROOT_ROT_WAIT_OLD_SVIDS,
    CA_ROOT_ROT_DROP_OLD_ROOT,
};

/* struct ca_root_rot_state is everything that must survive a restart: a plain struct the
 * caller stores as it likes (columns or a blob) whenever on_phase reports a change, and gives
 * back to ca_root_rot_restore. The node table is not in it: no connection survives a
 * restart. */
struct ca_root_rot_state {
    enum ca_root_rot_phase phase;
    uint64_t bundle_seq;         /* the bundle as published: +1 when a root is added or dropped */
    uint64_t rotations;          /* rotate-root commands accepted so far; names the rotation */
    int64_t rotation_started_at; /* when the command was accepted; 0 when IDLE */
    int64_t phase_started_at;
    int64_t switched_at;     /* WAIT_OLD_SVIDS, DROP_OLD_ROOT: when signing moved; else 0 */
    int64_t old_svids_until; /* ...: the latest notAfter an SVID under the old root can have */
};

/* struct ca_root_rot_config: zero fields take the defaults. The on_phase callback is called
 * after every phase change (a single event may cause two: ADD_NEW_ROOT done with no node
 * behind goes through WAIT_ACKS to SWITCH_SIGNING), with the phase left and the new state; it
 * must not call back into the machine. */
struct ca_root_rot_config {
    int64_t workload_max_ttl_s; /* 0: 24 h */
    int64_t node_ttl_s;         /* 0: 24 h */
    int64_t reconnect_grace_s;  /* 0: 60 s; CA_ROOT_ROT_NO_GRACE: none */
    size_t max_nodes;           /* connected nodes tracked at once; 0: 10000 */
    void (*on_phase)(void *arg, enum ca_root_rot_phase from, const struct ca_root_rot_state *st);
    void *arg;
};

struct ca_root_rot;

/* ca_root_rot_phase_name returns the phase's name as above ("WAIT_ACKS"), or "?"; static. */
const char *ca_root_rot_phase_name(enum ca_root_rot_phase p);

/* ca_root_rot_new makes an IDLE machine whose bundle has sequence |bundle_seq| (1 or more, at
 * most INT64_MAX, the most a SPIFFE bundle document carries), at |now|. The caller frees it
 * with ca_root_rot_free. WEFT_EINVAL for a bad config or sequence, with the reason in |err|;
 * |*out| is then NULL. */
WEFT_MUST_USE int ca_root_rot_new(struct ca_root_rot **out, const struct ca_root_rot_config *cfg,
                                  uint64_t bundle_seq, int64_t now, char *err, size_t err_len);

/* ca_root_rot_restore makes a machine from a state saved earlier, at |now|, with no node
 * connected. A rotation in progress goes on from its phase: an action phase wants its work
 * done (again: the caller's work must be idempotent, since it may have been done before the
 * crash and not yet reported), WAIT_ACKS waits for the nodes that reconnect (after the
 * reconnect grace), WAIT_OLD_SVIDS ends at the time it always would. Restoring moves nothing
 * and calls no callback: the first event does, so a daemon arms its timer from
 * ca_root_rot_next_tick (possibly already past) right away. WEFT_EINVAL for a state
 * this machine could never have saved (an unknown phase, times that contradict the phase),
 * with the reason in |err|. */
WEFT_MUST_USE int ca_root_rot_restore(struct ca_root_rot **out,
                                      const struct ca_root_rot_config *cfg,
                                      const struct ca_root_rot_state *st, int64_t now, char *err,
                                      size_t err_len);

/* ca_root_rot_free releases |r|; NULL does nothing. */
void ca_root_rot_free(struct ca_root_rot *r);

/* ca_root_rot_save copies the state to persist into |out|. */
void ca_root_rot_save(const struct ca_root_rot *r, struct ca_root_rot_state *out);

/* ca_root_rot_phase and ca_root_rot_bundle_seq: the current phase and bundle sequence. */
enum ca_root_rot_phase ca_root_rot_phase(const struct ca_root_rot *r);
uint64_t ca_root_rot_bundle_seq(const struct ca_root_rot *r);

/* ca_root_rot_rotate is the admin's rotate-root command: IDLE -> ADD_NEW_ROOT. Refused with
 * WEFT_EPOLICY while a rotation is under way, |err| naming its phase, since when, and how many
 * nodes it waits for; nothing changes then. */
WEFT_MUST_USE int ca_root_rot_rotate(struct ca_root_rot *r, int64_t now, char *err, size_t err_len);

/* ca_root_rot_done reports the work of action phase |phase| finished (ADD_NEW_ROOT: the new
 * root is in the stored bundle; SWITCH_SIGNING: the signer signs under the new root;
 * DROP_OLD_ROOT: the old root is out of the stored bundle), and moves on. WEFT_EINVAL when
 * |phase| is not the current phase or not an action phase: nothing changes then. */
WEFT_MUST_USE int ca_root_rot_done(struct ca_root_rot *r, enum ca_root_rot_phase phase, int64_t now,
                                   char *err, size_t err_len);

/* ca_root_rot_bundle_changed records that the bundle's content changed at |now| outside the
 * rotation's own steps: the sequence goes up by one, in whatever phase, and every connected node
 * is behind until it acknowledges the new one (in WAIT_ACKS, that is what the rotation then
 * waits for). Calls no callback: the caller persists the state with the content. WEFT_ELIMIT,
 * changing nothing, when the sequence has no room left beside the bumps a root rotation needs
 * (INT64_MAX, the most a bundle document carries). */
WEFT_MUST_USE int ca_root_rot_bundle_changed(struct ca_root_rot *r, int64_t now);

/* ca_root_rot_node_connected starts tracking |node| (1..CA_ROOT_ROT_NODE_MAX bytes; the name
 * from its verified node SVID) as having acknowledged nothing. Connecting a connected node
 * changes nothing. WEFT_EINVAL for a bad name, WEFT_ELIMIT past max_nodes. */
WEFT_MUST_USE int ca_root_rot_node_connected(struct ca_root_rot *r, const char *node, int64_t now);

/* ca_root_rot_node_disconnected stops tracking |node|; it no longer blocks WAIT_ACKS, which
 * may end now. WEFT_ENOTFOUND when it was not connected. */
WEFT_MUST_USE int ca_root_rot_node_disconnected(struct ca_root_rot *r, const char *node,
                                                int64_t now);

/* ca_root_rot_node_acked records that |node| holds the bundle with sequence |seq|; WAIT_ACKS
 * may end now. An acknowledgement older than one already recorded changes nothing.
 * WEFT_ENOTFOUND when |node| is not connected, WEFT_EINVAL for a sequence later than the
 * bundle's (a bundle that does not exist). */
WEFT_MUST_USE int ca_root_rot_node_acked(struct ca_root_rot *r, const char *node, uint64_t seq,
                                         int64_t now);

/* ca_root_rot_tick lets time pass: WAIT_OLD_SVIDS ends once |now| is past old_svids_until,
 * and the reconnect grace ends. */
void ca_root_rot_tick(struct ca_root_rot *r, int64_t now);

/* ca_root_rot_next_tick returns when a tick can next change something (the end of
 * WAIT_OLD_SVIDS, or of the reconnect grace during WAIT_ACKS), or INT64_MAX: the one timer a
 * daemon arms. */
int64_t ca_root_rot_next_tick(const struct ca_root_rot *r);

/* struct ca_root_rot_status is what `weftctl ca status` shows. A node is behind when it is
 * connected and has not acknowledged the current bundle sequence. */
struct ca_root_rot_status {
    enum ca_root_rot_phase phase;
    int64_t phase_started_at;
    int64_t rotation_started_at; /* 0 when IDLE */
    uint64_t bundle_seq;
    size_t num_connected;
    size_t num_behind;
    int64_t waits_until; /* WAIT_OLD_SVIDS: the first second the old root may go; else 0 */
};

/* ca_root_rot_status fills |out|. */
void ca_root_rot_status(const struct ca_root_rot *r, struct ca_root_rot_status *out);

/* ca_root_rot_behind calls |fn| for each node behind, in the order they connected, with the
 * last sequence it acknowledged (0: none since it connected). A non-zero return from |fn|
 * stops the walk and is returned. */
WEFT_MUST_USE int ca_root_rot_behind(const struct ca_root_rot *r,
                                     int (*fn)(void *arg, const char *node, uint64_t acked_seq),
                                     void *arg);

/* ca_root_rot_format_status writes the status for a person into |buf| (always NUL-terminated):
 * "phase WAIT_ACKS since 2023-11-14T22:13:20Z (rotation 1 started ...); bundle sequence 2;
 * 1 of 2 connected nodes behind: node-b (acked 1)". Names that do not fit are counted
 * ("... and 12 more"). */
void ca_root_rot_format_status(const struct ca_root_rot *r, char *buf, size_t len);

#endif
