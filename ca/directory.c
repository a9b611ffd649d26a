/* The mesh directory: a sorted array of addresses, small enough (a mesh's pods) for binary
 * search and insertion by memmove; IDs and node names are interned per entry. */
#include "ca/directory.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/base/netaddr.h"

struct entry {
    struct ca_dir_entry pub;
    char *spiffe_id;
    char *node;
    bool seen; /* in the report being applied */
};

struct ca_directory {
    struct entry *entries; /* sorted by pub.address */
    size_t num, cap, max, max_per_node;
    bool (*may_serve)(void *arg, const char *node, const char *spiffe_id);
    void *may_serve_arg;
    int64_t ttl_s;
    uint64_t version, conflicts;
};

int ca_dir_canonical(char out[CA_DIR_ADDR_MAX], const char *address)
{
    return weft_addr_canonical(out, address, NULL);
}

struct ca_directory *ca_directory_new(size_t max_entries, size_t max_per_node, int64_t ttl_s,
                                      bool (*may_serve)(void *arg, const char *node,
                                                        const char *spiffe_id),
                                      void *may_serve_arg)
{
    struct ca_directory *d = weft_xcalloc(1, sizeof(*d));
    d->max = max_entries;
    d->max_per_node = max_per_node;
    d->ttl_s = ttl_s;
    d->may_serve = may_serve;
    d->may_serve_arg = may_serve_arg;
    return d;
}

static size_t entries_of(const struct ca_directory *d, const char *node)
{
    size_t n = 0;
    for (size_t i = 0; i < d->num; i++) {
        n += strcmp(d->entries[i].node, node) == 0;
    }
    return n;
}

static void entry_free(struct entry *e)
{
    free(e->spiffe_id);
    free(e->node);
}

void ca_directory_free(struct ca_directory *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->num; i++) {
        entry_free(&d->entries[i]);
    }
    free(d->entries);
    free(d);
}

/* find returns the index of |addr| or, negated minus one, where it would go. */
static long find(const struct ca_directory *d, const char *addr)
{
    size_t lo = 0, hi = d->num;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->entries[mid].pub.address, addr);
        if (c == 0) {
            return (long)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -(long)lo - 1;
}

static void remove_at(struct ca_directory *d, size_t i)
{
    entry_free(&d->entries[i]);
    memmove(&d->entries[i], &d->entries[i + 1], (d->num - i - 1) * sizeof(*d->entries));
    d->num--;
}

static void conflict(struct ca_directory *d, const struct ca_dir_item *item, const char *node,
                     const char *reason,
                     void (*on_conflict)(void *, const struct ca_dir_item *, const char *),
                     void *arg)
{
    d->conflicts++;
    weft_log(WEFT_LOG_WARN, "directory claim refused", 4, "node", node, "address", item->address,
             "id", item->spiffe_id, "reason", reason);
    if (on_conflict != NULL) {
        on_conflict(arg, item, reason);
    }
}

int ca_directory_report(struct ca_directory *d, const char *node, const struct ca_dir_item *items,
                        size_t num, int64_t now,
                        void (*on_conflict)(void *arg, const struct ca_dir_item *item,
                                            const char *reason),
                        void *arg)
{
    if (num > CA_DIR_MAX_REPORT) {
        return WEFT_ELIMIT;
    }
    bool changed = false;
    for (size_t i = 0; i < d->num; i++) {
        d->entries[i].seen = false;
    }
    for (size_t k = 0; k < num; k++) {
        char addr[CA_DIR_ADDR_MAX];
        if (ca_dir_canonical(addr, items[k].address) != WEFT_OK) {
            conflict(d, &items[k], node, "not an IP address with an optional port", on_conflict,
                     arg);
            continue;
        }
        if (!d->may_serve(d->may_serve_arg, node, items[k].spiffe_id)) {
            conflict(d, &items[k], node, "an ID this node may not serve", on_conflict, arg);
            continue;
        }
        long at = find(d, addr);
        if (at >= 0) {
            struct entry *e = &d->entries[at];
            if (strcmp(e->spiffe_id, items[k].spiffe_id) != 0) {
                char reason[300];
                snprintf(reason, sizeof(reason), "held by %.200s", e->spiffe_id);
                conflict(d, &items[k], node, reason, on_conflict, arg);
                continue;
            }
            if (strcmp(e->node, node) != 0) {
                /* the same ID at the same address, now reported by another node: it moved */
                free(e->node);
                e->node = weft_xstrndup(node, strlen(node));
                e->pub.node = e->node;
                changed = true;
            }
            e->pub.last_seen = now;
            e->seen = true;
            continue;
        }
        if (d->num >= d->max) {
            conflict(d, &items[k], node, "the directory is full", on_conflict, arg);
            continue;
        }
        if (entries_of(d, node) >= d->max_per_node) {
            conflict(d, &items[k], node, "the node's share of the directory is full", on_conflict,
                     arg);
            continue;
        }
        if (d->num == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 64;
            d->entries = weft_xrealloc(d->entries, d->cap * sizeof(*d->entries));
        }
        size_t pos = (size_t)(-at - 1);
        memmove(&d->entries[pos + 1], &d->entries[pos], (d->num - pos) * sizeof(*d->entries));
        struct entry *e = &d->entries[pos];
        memset(e, 0, sizeof(*e));
        snprintf(e->pub.address, sizeof(e->pub.address), "%s", addr);
        e->spiffe_id = weft_xstrndup(items[k].spiffe_id, strlen(items[k].spiffe_id));
        e->node = weft_xstrndup(node, strlen(node));
        e->pub.spiffe_id = e->spiffe_id;
        e->pub.node = e->node;
        e->pub.last_seen = now;
        e->seen = true;
        d->num++;
        changed = true;
    }
    /* the report is the node's whole list: what it no longer reports goes */
    for (size_t i = d->num; i-- > 0;) {
        if (!d->entries[i].seen && strcmp(d->entries[i].node, node) == 0) {
            remove_at(d, i);
            changed = true;
        }
    }
    if (changed) {
        d->version++;
    }
    return WEFT_OK;
}

size_t ca_directory_expire(struct ca_directory *d, int64_t now)
{
    size_t dropped = 0;
    for (size_t i = d->num; i-- > 0;) {
        if (d->entries[i].pub.last_seen + d->ttl_s <= now) {
            remove_at(d, i);
            dropped++;
        }
    }
    if (dropped > 0) {
        d->version++;
    }
    return dropped;
}

const struct ca_dir_entry *ca_directory_lookup(const struct ca_directory *d, const char *address)
{
    char addr[CA_DIR_ADDR_MAX];
    if (ca_dir_canonical(addr, address) != WEFT_OK) {
        return NULL;
    }
    long at = find(d, addr);
    return at >= 0 ? &d->entries[at].pub : NULL;
}

void ca_directory_each(const struct ca_directory *d,
                       void (*fn)(void *arg, const struct ca_dir_entry *e), void *arg)
{
    for (size_t i = 0; i < d->num; i++) {
        fn(arg, &d->entries[i].pub);
    }
}

size_t ca_directory_size(const struct ca_directory *d) { return d->num; }

uint64_t ca_directory_version(const struct ca_directory *d) { return d->version; }

uint64_t ca_directory_conflicts(const struct ca_directory *d) { return d->conflicts; }
