/* ca/directory.h: the mesh directory (issue 4): which SPIFFE ID answers at which address.
 *
 * Agents report the verified addresses of their workloads; each report is the node's complete
 * list, so an address a node stops reporting leaves the directory. An address already held by
 * another ID stays with its first holder: the later claim is a conflict, returned, logged and
 * counted. Entries of a node that stops reporting expire after the directory's TTL. Every change
 * bumps the version that WatchNode streams carry. Not thread-safe: one owner calls it. */
#ifndef WEFT_CA_DIRECTORY_H
#define WEFT_CA_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"
#include "lib/base/netaddr.h"

#define CA_DIR_ADDR_MAX WEFT_ADDR_MAX
#define CA_DIR_MAX_REPORT 4096 /* addresses in one report */

struct ca_dir_item {
    const char *address;   /* "IP" or "IP:port", IPv6 as "[IP]:port" or bare */
    const char *spiffe_id; /* verified by the reporting agent */
};

struct ca_dir_entry {
    char address[CA_DIR_ADDR_MAX]; /* canonical form */
    const char *spiffe_id;
    const char *node;
    int64_t last_seen;
};

struct ca_directory;

/* ca_directory_new makes an empty directory holding at most |max_entries| addresses, at most
 * |max_per_node| of them from any one node (so no node can fill it for the others), whose
 * entries expire |ttl_s| seconds after their node last reported them. |may_serve| says whether a
 * node may claim an address for an ID: the CA answers from the entries it lets the node mint.
 * Without that check any node could claim, or take over, any address for any ID. */
struct ca_directory *ca_directory_new(size_t max_entries, size_t max_per_node, int64_t ttl_s,
                                      bool (*may_serve)(void *arg, const char *node,
                                                        const char *spiffe_id),
                                      void *may_serve_arg);
void ca_directory_free(struct ca_directory *d);

/* ca_directory_report applies |node|'s complete report. For each refused item |on_conflict|
 * (may be NULL) is called with the item and the reason (an ID the node may not serve, held by
 * another ID, malformed address, the node's share or the directory full). Returns WEFT_ELIMIT for a
 * report over CA_DIR_MAX_REPORT (nothing applied), else WEFT_OK. */
WEFT_MUST_USE int ca_directory_report(struct ca_directory *d, const char *node,
                                      const struct ca_dir_item *items, size_t num, int64_t now,
                                      void (*on_conflict)(void *arg, const struct ca_dir_item *item,
                                                          const char *reason),
                                      void *arg);

/* ca_directory_expire drops entries not reported since |now| - ttl; returns how many. */
size_t ca_directory_expire(struct ca_directory *d, int64_t now);

/* ca_directory_lookup returns the entry for |address| (any accepted spelling), or NULL. */
const struct ca_dir_entry *ca_directory_lookup(const struct ca_directory *d, const char *address);

/* ca_directory_each calls |fn| for every entry, in address order. */
void ca_directory_each(const struct ca_directory *d,
                       void (*fn)(void *arg, const struct ca_dir_entry *e), void *arg);

size_t ca_directory_size(const struct ca_directory *d);
uint64_t ca_directory_version(const struct ca_directory *d);
uint64_t ca_directory_conflicts(const struct ca_directory *d); /* refused claims so far */

/* ca_dir_canonical is weft_addr_canonical (lib/base/netaddr.h): the agent that verifies a claim
 * and the directory that keeps it read addresses the same way. */
WEFT_MUST_USE int ca_dir_canonical(char out[CA_DIR_ADDR_MAX], const char *address);

#endif
