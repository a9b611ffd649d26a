/* agent/svids.h: the workload SVIDs the agent holds for its node's entries (issue 5, "Workload
 * SVIDs").
 *
 * For each entry the CA assigns to the node (WatchNode), the agent makes an ECDSA P-256 key,
 * has the CA sign it (MintWorkloadSVIDs, at most 64 per call) and keeps key and chain in
 * memory only. Each SVID is renewed at half-life +-10 % (agent/schedule.h); a failed mint is
 * retried with backoff. Entries that appear at once (a start) are minted at about 20 a second,
 * over at most 10 s, rather than in one burst. An SVID past its notAfter is never served: if it
 * could not be renewed in time it is dropped, loudly, and the workload's stream loses it.
 *
 * The set is shared by two threads: the agent's CA thread mints (agent_svids_mint_due) and the
 * Workload API thread reads (agent_svids_x509, agent_svids_bundles). A mutex guards it; the
 * minting RPC runs outside it. */
#ifndef WEFT_AGENT_SVIDS_H
#define WEFT_AGENT_SVIDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/node.h"
#include "agent/selectors.h"
#include "lib/base/err.h"
#include "proto/ca.pb-c.h"
#include "proto/workload.pb-c.h"

#define AGENT_MAX_ENTRIES 4096
#define AGENT_MINT_BATCH 64
#define AGENT_START_SPREAD_S 10 /* many entries that appear together: minted over at most this */

struct agent_svids;

struct agent_svids_stats {
    size_t entries, held;
    uint64_t minted, mint_failures, expired_unrenewed;
    int64_t earliest_not_after; /* among SVIDs held; 0 when none: the node's runway */
    /* when that same SVID's life began: the later of its notBefore and its arrival (the CA
     * backdates notBefore a minute for lagging clocks, which is no part of its life here) */
    int64_t earliest_life_from;
    unsigned max_failures; /* the most consecutive failed mints of one entry */
    size_t lapsed;         /* entries whose SVID expired unrenewed and is not back */
};

struct agent_svids *agent_svids_new(const char *trust_domain);
void agent_svids_free(struct agent_svids *s);

/* agent_svids_set_entries takes the node's entries from a snapshot: new ones are scheduled
 * (spread), removed ones and their SVIDs dropped, changed ones re-minted. Returns whether what
 * workloads are served changed. */
bool agent_svids_set_entries(struct agent_svids *s, Weft__Ca__V1__Entry *const *entries, size_t num,
                             int64_t now);

/* agent_svids_set_deny takes the deny list: an SVID whose ID or serial is on it is dropped at
 * once and not minted again while it is listed (a NODE item naming this node drops them all).
 * Returns whether what workloads are served changed. */
bool agent_svids_set_deny(struct agent_svids *s, Weft__Ca__V1__DenyItem *const *items, size_t num,
                          const char *node);

/* agent_svids_set_bundle takes the trust bundle (DER roots); returns whether it changed. */
bool agent_svids_set_bundle(struct agent_svids *s, const uint8_t *der, size_t len);

/* agent_svids_ready: a bundle is held (the Workload API may answer). */
bool agent_svids_ready(struct agent_svids *s);

/* agent_svids_mint_due mints every SVID due at |now| through |n|'s channel, in batches.
 * Returns whether anything workloads are served changed (new SVIDs, or expired ones dropped).
 * |err| holds the last failure, if any. */
bool agent_svids_mint_due(struct agent_svids *s, struct agent_node *n, int64_t now, char *err,
                          size_t err_len);

/* agent_svids_next_due returns when agent_svids_mint_due next has work (or INT64_MAX). */
int64_t agent_svids_next_due(struct agent_svids *s);

/* agent_svids_x509 fills |resp| with the SVIDs of every entry whose selectors are all in |sel|
 * and that is valid at |now|, oldest entry first; returns how many. |resp| points into storage
 * kept until the next call (one thread calls it: the Workload API's). */
size_t agent_svids_x509(struct agent_svids *s, const struct agent_selectors *sel, int64_t now,
                        X509SVIDResponse *resp);

/* agent_svids_bundles fills |resp| with the trust bundle (for a caller entitled to at least one
 * SVID); returns how many bundles (0 or 1). Same storage rule as agent_svids_x509. */
size_t agent_svids_bundles(struct agent_svids *s, const struct agent_selectors *sel, int64_t now,
                           X509BundlesResponse *resp);

/* struct agent_identity is one identity a workload holds: its entry and SPIFFE ID. */
struct agent_identity {
    char entry_id[64];
    char spiffe_id[2049];
};

/* agent_svids_identities writes the identities a workload with |sel| holds a valid SVID for at
 * |now| (those agent_svids_x509 would serve, in the same order) into |out|, at most |cap|;
 * returns how many. */
size_t agent_svids_identities(struct agent_svids *s, const struct agent_selectors *sel, int64_t now,
                              struct agent_identity *out, size_t cap);

/* agent_svids_holds reports whether a workload with |sel| holds a valid SVID for |spiffe_id| at
 * |now|; if so, |out| (may be NULL) gets that identity. */
bool agent_svids_holds(struct agent_svids *s, const struct agent_selectors *sel,
                       const char *spiffe_id, int64_t now, struct agent_identity *out);

void agent_svids_stats(struct agent_svids *s, int64_t now, struct agent_svids_stats *out);

/* agent_svids_each calls |fn| for every entry, under the lock, with its SPIFFE ID and the
 * notAfter of the SVID held (0: none valid at |now|). |fn| must not call back in here. */
void agent_svids_each(struct agent_svids *s, int64_t now,
                      void (*fn)(void *arg, const char *spiffe_id, int64_t not_after), void *arg);

#endif
