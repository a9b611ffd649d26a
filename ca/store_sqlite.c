/* The CA store on SQLite: WAL, synchronous=FULL (a write acknowledged is a write on disk),
 * every state change in one transaction, schema versions in PRAGMA user_version. */
#include "ca/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "lib/base/mem.h"

struct sqlite_store {
    struct ca_store base; /* first: a struct ca_store * is a struct sqlite_store * */
    sqlite3 *db;
};

/* Schema migrations: migrations[i] takes user_version i to i + 1. Never edit one that has
 * shipped; add the next. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE join_tokens ("
    "  hash BLOB PRIMARY KEY, node TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL, used_at INTEGER);"
    "CREATE TABLE nodes ("
    "  name TEXT PRIMARY KEY, first_attested_at INTEGER NOT NULL,"
    "  last_attested_at INTEGER NOT NULL);"
    "CREATE TABLE entries ("
    "  id TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL, node TEXT NOT NULL,"
    "  node_selector TEXT NOT NULL, selectors TEXT NOT NULL, ttl_s INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX entries_node ON entries(node);"
    "CREATE TABLE issuances ("
    "  serial BLOB PRIMARY KEY, kind INTEGER NOT NULL, spiffe_id TEXT NOT NULL,"
    "  node TEXT NOT NULL, entry_id TEXT NOT NULL, not_before INTEGER NOT NULL,"
    "  not_after INTEGER NOT NULL, sha256 BLOB NOT NULL);"
    "CREATE INDEX issuances_id ON issuances(spiffe_id);"
    "CREATE INDEX issuances_node ON issuances(node);"
    "CREATE INDEX issuances_not_after ON issuances(not_after);"
    "CREATE TABLE revocations ("
    "  kind INTEGER NOT NULL, value TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  drop_after INTEGER NOT NULL, PRIMARY KEY (kind, value));",
    /* 1 -> 2 */
    "CREATE TABLE ca_state (name TEXT PRIMARY KEY, value BLOB NOT NULL);",
    /* 2 -> 3: how each node joined (enum ca_attest_method); every node before was a join
     * token's */
    "ALTER TABLE nodes ADD COLUMN attested_by INTEGER NOT NULL DEFAULT 0;",
    /* 3 -> 4: the node selectors each node's last attestation reported (a join token reports
     * none) */
    "CREATE TABLE node_selectors ("
    "  node TEXT NOT NULL, selector TEXT NOT NULL, PRIMARY KEY (node, selector));"
    "CREATE INDEX node_selectors_selector ON node_selectors(selector);",
    /* 4 -> 5: who a node last attested as (a token's service account, NS:NAME; "" for a join
     * token, and for nodes of token before this version until their next attestation) */
    "ALTER TABLE nodes ADD COLUMN attested_as TEXT NOT NULL DEFAULT '';",
};

static struct sqlite_store *impl(struct ca_store *s) { return (struct sqlite_store *)s; }

static int fail(struct ca_store *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ca_store *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return rc;
}

static int db_fail(struct ca_store *s, const char *what)
{
    return fail(s, WEFT_EIO, "store: %s: %s", what, sqlite3_errmsg(impl(s)->db));
}

static int exec(struct ca_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(impl(s)->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail(s, WEFT_EIO, "store: %s", msg != NULL ? msg : "sqlite3_exec failed");
        sqlite3_free(msg);
        return WEFT_EIO;
    }
    return WEFT_OK;
}

/* prepare compiles |sql| into |*st|; the caller finalizes it. */
static int prepare(struct ca_store *s, sqlite3_stmt **st, const char *sql)
{
    if (sqlite3_prepare_v2(impl(s)->db, sql, -1, st, NULL) != SQLITE_OK) {
        return db_fail(s, "prepare");
    }
    return WEFT_OK;
}

/* step_done runs a statement that returns no rows and finalizes it. */
static int step_done(struct ca_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ret = WEFT_OK;
    if (rc == SQLITE_CONSTRAINT) {
        ret = fail(s, WEFT_EINVAL, "store: %s: already there (%s)", what,
                   sqlite3_errmsg(impl(s)->db));
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(s, what);
    }
    sqlite3_finalize(st);
    return ret;
}

static void text_col(char *out, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t != NULL ? (const char *)t : "");
}

/* --- tokens and nodes --------------------------------------------------------------------- */

static int token_add(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], const char *node,
                     int64_t expires_at, int64_t now)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "INSERT INTO join_tokens (hash, node, created_at, expires_at) VALUES (?,?,?,?)"));
    sqlite3_bind_blob(st, 1, hash, CA_TOKEN_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, expires_at);
    return step_done(s, st, "add join token");
}

static int rollback(struct ca_store *s, int rc)
{
    (void)sqlite3_exec(impl(s)->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* commit ends a transaction; if COMMIT itself fails, what is left of the transaction is rolled
 * back, so no later statement can silently join it. */
static int commit(struct ca_store *s)
{
    int rc = exec(s, "COMMIT");
    if (rc != WEFT_OK && !sqlite3_get_autocommit(impl(s)->db)) {
        return rollback(s, rc);
    }
    return rc;
}

/* check_token reads a token inside the caller's transaction: WEFT_OK with its node, or why
 * not. */
static int check_token(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                       char node_out[CA_NODE_NAME_MAX + 1])
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "SELECT node, expires_at, used_at FROM join_tokens WHERE hash = ?"));
    sqlite3_bind_blob(st, 1, hash, CA_TOKEN_HASH_LEN, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = WEFT_OK;
    if (step == SQLITE_DONE) {
        rc = fail(s, WEFT_ENOTFOUND, "unknown join token");
    } else if (step != SQLITE_ROW) {
        rc = db_fail(s, "read join token");
    } else if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
        rc = fail(s, WEFT_EPOLICY, "join token was already used (at %lld)",
                  (long long)sqlite3_column_int64(st, 2));
    } else if (sqlite3_column_int64(st, 1) <= now) {
        rc = fail(s, WEFT_ESTALE, "join token expired (at %lld)",
                  (long long)sqlite3_column_int64(st, 1));
    } else {
        text_col(node_out, CA_NODE_NAME_MAX + 1, st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

static int mark_token_used(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "UPDATE join_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL"));
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_blob(st, 2, hash, CA_TOKEN_HASH_LEN, SQLITE_STATIC);
    TRY(step_done(s, st, "use join token"));
    return sqlite3_changes(impl(s)->db) == 1 ? WEFT_OK
                                             : fail(s, WEFT_EPOLICY, "join token was already used");
}

static int token_peek(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                      char node_out[CA_NODE_NAME_MAX + 1])
{
    return check_token(s, hash, now, node_out);
}

static int token_use(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                     char node_out[CA_NODE_NAME_MAX + 1])
{
    /* BEGIN IMMEDIATE takes the write lock first: of two callers racing with one token, the
     * second sees it used. */
    TRY(exec(s, "BEGIN IMMEDIATE"));
    int rc = check_token(s, hash, now, node_out);
    if (rc == WEFT_OK) {
        rc = mark_token_used(s, hash, now);
    }
    return rc == WEFT_OK ? commit(s) : rollback(s, rc);
}

static int node_record(struct ca_store *s, const char *node, enum ca_attest_method method,
                       const char *as, int64_t now, size_t *revoked);
static int issuance_add(struct ca_store *s, const struct ca_issuance *i);

static int attest_commit(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                         const struct ca_issuance *node_svid)
{
    char node[CA_NODE_NAME_MAX + 1];
    TRY(exec(s, "BEGIN IMMEDIATE"));
    int rc = check_token(s, hash, now, node);
    if (rc == WEFT_OK && strcmp(node, node_svid->node) != 0) {
        rc = fail(s, WEFT_EPOLICY, "join token is for node %s, not %s", node, node_svid->node);
    }
    if (rc == WEFT_OK) {
        rc = mark_token_used(s, hash, now);
    }
    if (rc == WEFT_OK) {
        size_t revoked;
        rc = node_record(s, node, CA_ATTEST_JOIN_TOKEN, "", now, &revoked);
    }
    if (rc == WEFT_OK) {
        rc = issuance_add(s, node_svid);
    }
    return rc == WEFT_OK ? commit(s) : rollback(s, rc);
}

/* node_selectors_replace sets |node|'s selectors to |sel| inside the caller's transaction. */
static int node_selectors_replace(struct ca_store *s, const char *node, const char *const *sel,
                                  size_t num)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "DELETE FROM node_selectors WHERE node = ?"));
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    TRY(step_done(s, st, "replace node selectors"));
    for (size_t i = 0; i < num; i++) {
        TRY(prepare(s, &st, "INSERT OR IGNORE INTO node_selectors (node, selector) VALUES (?,?)"));
        sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, sel[i], -1, SQLITE_STATIC);
        TRY(step_done(s, st, "record node selector"));
    }
    return WEFT_OK;
}

static int node_commit(struct ca_store *s, enum ca_attest_method method, const char *as,
                       const char *const *selectors, size_t num_selectors, int64_t now,
                       const struct ca_issuance *node_svid, size_t *revoked)
{
    if (num_selectors > CA_MAX_NODE_SELECTORS) {
        return fail(s, WEFT_ELIMIT, "%zu node selectors, over the limit of %d", num_selectors,
                    CA_MAX_NODE_SELECTORS);
    }
    TRY(exec(s, "BEGIN IMMEDIATE"));
    int rc = node_record(s, node_svid->node, method, as, now, revoked);
    if (rc == WEFT_OK) {
        rc = node_selectors_replace(s, node_svid->node, selectors, num_selectors);
    }
    if (rc == WEFT_OK) {
        rc = issuance_add(s, node_svid);
    }
    return rc == WEFT_OK ? commit(s) : rollback(s, rc);
}

static int node_get(struct ca_store *s, const char *node, enum ca_attest_method *method, char *as,
                    size_t as_len)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "SELECT attested_by, attested_as FROM nodes WHERE name = ?"));
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = WEFT_OK;
    if (step == SQLITE_ROW) {
        *method = (enum ca_attest_method)sqlite3_column_int(st, 0);
        text_col(as, as_len, st, 1);
    } else if (step == SQLITE_DONE) {
        rc = fail(s, WEFT_ENOTFOUND, "node %s never attested", node);
    } else {
        rc = db_fail(s, "read node");
    }
    sqlite3_finalize(st);
    return rc;
}

static int node_has_selector(struct ca_store *s, const char *node, const char *selector, bool *out)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "SELECT 1 FROM node_selectors WHERE node = ? AND selector = ?"));
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, selector, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        return db_fail(s, "read node selectors");
    }
    *out = step == SQLITE_ROW;
    return WEFT_OK;
}

const char *ca_attest_method_name(enum ca_attest_method m)
{
    switch (m) {
    case CA_ATTEST_JOIN_TOKEN:
        return "join token";
    case CA_ATTEST_PSAT:
        return "Kubernetes service account token";
    }
    return "an unknown method";
}

/* node_record records |node| attested by |method| as |as| ("" when the method names no one)
 * inside the caller's transaction, refusing a node that first joined by another method. A node
 * attested as someone else than the last time (another service account) has every unexpired
 * node SVID issued before revoked by serial, counted in |*revoked|: its identity follows its
 * latest attestation, and an SVID of the earlier one must not gain the new one's selectors. */
static int node_record(struct ca_store *s, const char *node, enum ca_attest_method method,
                       const char *as, int64_t now, size_t *revoked)
{
    sqlite3_stmt *st;
    *revoked = 0;
    TRY(prepare(s, &st, "SELECT attested_by, attested_as FROM nodes WHERE name = ?"));
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = WEFT_OK;
    bool changed_as = false;
    if (step == SQLITE_ROW) {
        int first = sqlite3_column_int(st, 0);
        const char *last_as = (const char *)sqlite3_column_text(st, 1);
        if (first != (int)method) {
            rc = fail(s, WEFT_EPOLICY,
                      "node %s joined by %s: it cannot attest by %s (a node keeps the method "
                      "it first joined with; revoke the node and give the new one another "
                      "name)",
                      node, ca_attest_method_name((enum ca_attest_method)first),
                      ca_attest_method_name(method));
        }
        changed_as = last_as != NULL && last_as[0] != '\0' && strcmp(last_as, as) != 0;
    } else if (step != SQLITE_DONE) {
        rc = db_fail(s, "read node");
    }
    sqlite3_finalize(st);
    TRY(rc);
    if (changed_as) {
        TRY(prepare(s, &st,
                    "INSERT INTO revocations (kind, value, created_at, drop_after) "
                    "SELECT ?1, lower(hex(serial)), ?2, not_after FROM issuances "
                    "WHERE node = ?3 AND kind = ?4 AND not_after > ?2 "
                    "ON CONFLICT(kind, value) DO UPDATE SET "
                    "drop_after = MAX(drop_after, excluded.drop_after)"));
        sqlite3_bind_int(st, 1, (int)CA_REVOKE_SERIAL);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_text(st, 3, node, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)CA_ISSUANCE_NODE);
        rc = sqlite3_step(st) == SQLITE_DONE ? WEFT_OK : db_fail(s, "revoke earlier node SVIDs");
        *revoked = (size_t)sqlite3_changes(impl(s)->db);
        sqlite3_finalize(st);
        TRY(rc);
    }
    TRY(prepare(s, &st,
                "INSERT INTO nodes (name, first_attested_at, last_attested_at, attested_by, "
                "attested_as) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET last_attested_at = excluded.last_attested_at, "
                "attested_as = excluded.attested_as"));
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int(st, 4, (int)method);
    sqlite3_bind_text(st, 5, as, -1, SQLITE_STATIC);
    return step_done(s, st, "record node");
}

static int node_attested(struct ca_store *s, const char *node, enum ca_attest_method method,
                         int64_t now)
{
    TRY(exec(s, "BEGIN IMMEDIATE"));
    size_t revoked;
    int rc = node_record(s, node, method, "", now, &revoked);
    return rc == WEFT_OK ? commit(s) : rollback(s, rc);
}

/* --- entries ------------------------------------------------------------------------------ */

/* ENTRIES_OF_NODE is the condition on an entries row for it to be assigned to the node the
 * expression |n| names (see entry_list). */
#define ENTRIES_OF_NODE(n)                                                                         \
    "(e.node = " n " OR (e.node = '' AND e.node_selector IN "                                      \
    "(SELECT selector FROM node_selectors WHERE node = " n ")))"

static int entry_add(struct ca_store *s, const struct ca_entry *e)
{
    char selectors[CA_MAX_SELECTORS * (CA_SELECTOR_MAX + 1) + 1] = "";
    size_t used = 0;
    for (size_t i = 0; i < e->num_selectors && i < CA_MAX_SELECTORS; i++) {
        /* selectors never hold a newline (ca_entry_validate), so one per line */
        used += (size_t)snprintf(selectors + used, sizeof(selectors) - used, "%s%s", i ? "\n" : "",
                                 e->selectors[i]);
    }
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "INSERT INTO entries (id, spiffe_id, node, node_selector, selectors, ttl_s, "
                "created_at) VALUES (?,?,?,?,?,?,?)"));
    sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->spiffe_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, e->node_selector, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, selectors, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, e->ttl_s);
    sqlite3_bind_int64(st, 7, e->created_at);
    return step_done(s, st, "add entry");
}

static void read_entry(sqlite3_stmt *st, struct ca_entry *e)
{
    memset(e, 0, sizeof(*e));
    text_col(e->id, sizeof(e->id), st, 0);
    text_col(e->spiffe_id, sizeof(e->spiffe_id), st, 1);
    text_col(e->node, sizeof(e->node), st, 2);
    text_col(e->node_selector, sizeof(e->node_selector), st, 3);
    const unsigned char *sel = sqlite3_column_text(st, 4);
    const char *p = sel != NULL ? (const char *)sel : "";
    while (*p != '\0' && e->num_selectors < CA_MAX_SELECTORS) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        snprintf(e->selectors[e->num_selectors++], CA_SELECTOR_MAX + 1, "%.*s", (int)len, p);
        p += len + (nl != NULL);
    }
    e->ttl_s = sqlite3_column_int64(st, 5);
    e->created_at = sqlite3_column_int64(st, 6);
}

#define ENTRY_COLUMNS "id, spiffe_id, node, node_selector, selectors, ttl_s, created_at"

static int entry_get(struct ca_store *s, const char *id, struct ca_entry *out)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "SELECT " ENTRY_COLUMNS " FROM entries WHERE id = ?"));
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = WEFT_OK;
    if (step == SQLITE_ROW) {
        read_entry(st, out);
    } else if (step == SQLITE_DONE) {
        rc = fail(s, WEFT_ENOTFOUND, "no entry %s", id);
    } else {
        rc = db_fail(s, "read entry");
    }
    sqlite3_finalize(st);
    return rc;
}

static int entry_delete(struct ca_store *s, const char *id)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "DELETE FROM entries WHERE id = ?"));
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    TRY(step_done(s, st, "delete entry"));
    if (sqlite3_changes(impl(s)->db) == 0) {
        return fail(s, WEFT_ENOTFOUND, "no entry %s", id);
    }
    return WEFT_OK;
}

static int entry_list(struct ca_store *s, const char *node,
                      int (*fn)(void *arg, const struct ca_entry *e), void *arg)
{
    sqlite3_stmt *st;
    /* a node's entries: those naming it, and those whose node selector its last attestation
     * reported */
    TRY(prepare(s, &st,
                node != NULL ? "SELECT " ENTRY_COLUMNS
                               " FROM entries e WHERE " ENTRIES_OF_NODE("?1") " ORDER BY rowid"
                             : "SELECT " ENTRY_COLUMNS " FROM entries ORDER BY rowid"));
    if (node != NULL) {
        sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    }
    int rc = WEFT_OK, step = SQLITE_DONE;
    struct ca_entry *e = weft_xmalloc(sizeof(*e));
    while (rc == WEFT_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        read_entry(st, e);
        rc = fn(arg, e);
    }
    if (rc == WEFT_OK && step != SQLITE_DONE) {
        rc = db_fail(s, "list entries");
    }
    free(e);
    sqlite3_finalize(st);
    return rc;
}

static int entries_bound(struct ca_store *s, const char *node, size_t *out)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "SELECT (SELECT COUNT(*) FROM entries WHERE node = '') + "
                "(SELECT COALESCE(MAX(n), 0) FROM "
                "(SELECT COUNT(*) AS n FROM entries WHERE node != '' AND (?1 = '' OR node = ?1) "
                "GROUP BY node))"));
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int rc = WEFT_OK;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = (size_t)sqlite3_column_int64(st, 0);
    } else {
        rc = db_fail(s, "count entries");
    }
    sqlite3_finalize(st);
    return rc;
}

/* --- inventory ---------------------------------------------------------------------------- */

static int issuance_add(struct ca_store *s, const struct ca_issuance *i)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "INSERT INTO issuances (serial, kind, spiffe_id, node, entry_id, not_before, "
                "not_after, sha256) VALUES (?,?,?,?,?,?,?,?)"));
    sqlite3_bind_blob(st, 1, i->serial, (int)i->serial_len, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)i->kind);
    sqlite3_bind_text(st, 3, i->spiffe_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, i->node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, i->entry_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, i->not_before);
    sqlite3_bind_int64(st, 7, i->not_after);
    sqlite3_bind_blob(st, 8, i->sha256, sizeof(i->sha256), SQLITE_STATIC);
    return step_done(s, st, "record issuance");
}

static int issuance_add_many(struct ca_store *s, const struct ca_issuance *const *recs, size_t num)
{
    TRY(exec(s, "BEGIN IMMEDIATE"));
    int rc = WEFT_OK;
    for (size_t i = 0; i < num && rc == WEFT_OK; i++) {
        rc = issuance_add(s, recs[i]);
    }
    return rc == WEFT_OK ? commit(s) : rollback(s, rc);
}

static int issuance_list(struct ca_store *s, const struct ca_issuance_filter *f,
                         int (*fn)(void *arg, const struct ca_issuance *i), void *arg)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "SELECT serial, kind, spiffe_id, node, entry_id, not_before, not_after, sha256 "
                "FROM issuances WHERE (?1 IS NULL OR spiffe_id = ?1) AND (?2 IS NULL OR node = ?2) "
                "AND (?3 = 0 OR (not_after < ?3 AND not_after > ?4)) ORDER BY not_after, serial"));
    if (f->spiffe_id != NULL) {
        sqlite3_bind_text(st, 1, f->spiffe_id, -1, SQLITE_STATIC);
    }
    if (f->node != NULL) {
        sqlite3_bind_text(st, 2, f->node, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 3, f->not_after_before);
    sqlite3_bind_int64(st, 4, f->now);
    int rc = WEFT_OK, step = SQLITE_DONE;
    struct ca_issuance *i = weft_xcalloc(1, sizeof(*i));
    while (rc == WEFT_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        memset(i, 0, sizeof(*i));
        int n = sqlite3_column_bytes(st, 0);
        i->serial_len = n > CA_SERIAL_MAX ? CA_SERIAL_MAX : (size_t)n;
        memcpy(i->serial, sqlite3_column_blob(st, 0), i->serial_len);
        i->kind = (enum ca_issuance_kind)sqlite3_column_int(st, 1);
        text_col(i->spiffe_id, sizeof(i->spiffe_id), st, 2);
        text_col(i->node, sizeof(i->node), st, 3);
        text_col(i->entry_id, sizeof(i->entry_id), st, 4);
        i->not_before = sqlite3_column_int64(st, 5);
        i->not_after = sqlite3_column_int64(st, 6);
        if (sqlite3_column_bytes(st, 7) == (int)sizeof(i->sha256)) {
            memcpy(i->sha256, sqlite3_column_blob(st, 7), sizeof(i->sha256));
        }
        rc = fn(arg, i);
    }
    if (rc == WEFT_OK && step != SQLITE_DONE) {
        rc = db_fail(s, "list issuances");
    }
    free(i);
    sqlite3_finalize(st);
    return rc;
}

/* --- revocation --------------------------------------------------------------------------- */

static int revoke(struct ca_store *s, const struct ca_revocation *r)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "INSERT INTO revocations (kind, value, created_at, drop_after) VALUES (?,?,?,?) "
                "ON CONFLICT(kind, value) DO UPDATE SET "
                "drop_after = MAX(drop_after, excluded.drop_after)"));
    sqlite3_bind_int(st, 1, (int)r->kind);
    sqlite3_bind_text(st, 2, r->value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->created_at);
    sqlite3_bind_int64(st, 4, r->drop_after);
    return step_done(s, st, "revoke");
}

static int revocation_list(struct ca_store *s, int64_t now,
                           int (*fn)(void *arg, const struct ca_revocation *r), void *arg)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st,
                "SELECT kind, value, created_at, drop_after FROM revocations "
                "WHERE drop_after > ? ORDER BY created_at, kind, value"));
    sqlite3_bind_int64(st, 1, now);
    int rc = WEFT_OK, step = SQLITE_DONE;
    struct ca_revocation *r = weft_xcalloc(1, sizeof(*r));
    while (rc == WEFT_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        r->kind = (enum ca_revocation_kind)sqlite3_column_int(st, 0);
        text_col(r->value, sizeof(r->value), st, 1);
        r->created_at = sqlite3_column_int64(st, 2);
        r->drop_after = sqlite3_column_int64(st, 3);
        rc = fn(arg, r);
    }
    if (rc == WEFT_OK && step != SQLITE_DONE) {
        rc = db_fail(s, "list revocations");
    }
    free(r);
    sqlite3_finalize(st);
    return rc;
}

static int latest_not_after(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                            int64_t *out)
{
    static const char *const sql[] = {
        [CA_REVOKE_ID] = "SELECT MAX(not_after) FROM issuances WHERE spiffe_id = ?",
        [CA_REVOKE_SERIAL] = ("SELECT MAX(not_after) FROM issuances WHERE lower(hex(serial)) = "
                              "lower(?)"),
        [CA_REVOKE_NODE] = "SELECT MAX(not_after) FROM issuances WHERE node = ?",
    };
    if ((unsigned)kind >= sizeof(sql) / sizeof(sql[0])) {
        return fail(s, WEFT_EINVAL, "unknown revocation kind %d", (int)kind);
    }
    sqlite3_stmt *st;
    TRY(prepare(s, &st, sql[kind]));
    sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
    int rc = WEFT_OK;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = db_fail(s, "find latest notAfter");
    } else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
        rc = fail(s, WEFT_ENOTFOUND, "no certificate was issued for %s", value);
    } else {
        *out = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

static int is_revoked(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                      bool *out)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "SELECT 1 FROM revocations WHERE kind = ? AND value = ?"));
    sqlite3_bind_int(st, 1, (int)kind);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = WEFT_OK;
    if (step == SQLITE_ROW || step == SQLITE_DONE) {
        *out = step == SQLITE_ROW;
    } else {
        rc = db_fail(s, "read revocations");
    }
    sqlite3_finalize(st);
    return rc;
}

/* --- settings ---------------------------------------------------------------------------- */

static int state_put(struct ca_store *s, const struct ca_state_item *items, size_t num)
{
    TRY(exec(s, "BEGIN IMMEDIATE"));
    for (size_t i = 0; i < num; i++) {
        sqlite3_stmt *st;
        int rc = prepare(s, &st, "INSERT OR REPLACE INTO ca_state (name, value) VALUES (?, ?)");
        if (rc != WEFT_OK) {
            return rollback(s, rc);
        }
        sqlite3_bind_text(st, 1, items[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, items[i].value, (int)items[i].len, SQLITE_STATIC);
        if ((rc = step_done(s, st, "write the CA state")) != WEFT_OK) {
            return rollback(s, rc);
        }
    }
    return commit(s);
}

static int state_get(struct ca_store *s, const char *name, uint8_t **out, size_t *out_len)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "SELECT value FROM ca_state WHERE name = ?"));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc = WEFT_OK;
    if (step == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        *out = weft_xmalloc(len + 1);
        if (len > 0) {
            memcpy(*out, sqlite3_column_blob(st, 0), len);
        }
        (*out)[len] = 0;
        *out_len = len;
    } else if (step == SQLITE_DONE) {
        rc = fail(s, WEFT_ENOTFOUND, "no state %s", name);
    } else {
        rc = db_fail(s, "read the CA state");
    }
    sqlite3_finalize(st);
    return rc;
}

static void close_store(struct ca_store *s)
{
    sqlite3_close(impl(s)->db);
    free(impl(s));
}

static const struct ca_store_ops sqlite_ops = {
    .close = close_store,
    .token_add = token_add,
    .token_use = token_use,
    .node_attested = node_attested,
    .entry_add = entry_add,
    .entry_delete = entry_delete,
    .entry_get = entry_get,
    .entry_list = entry_list,
    .issuance_add = issuance_add,
    .issuance_add_many = issuance_add_many,
    .issuance_list = issuance_list,
    .revoke = revoke,
    .revocation_list = revocation_list,
    .latest_not_after = latest_not_after,
    .is_revoked = is_revoked,
    .token_peek = token_peek,
    .attest_commit = attest_commit,
    .node_commit = node_commit,
    .node_has_selector = node_has_selector,
    .entries_bound = entries_bound,
    .node_get = node_get,
    .state_put = state_put,
    .state_get = state_get,
};

/* migrate brings the schema to the newest version, one transaction per step. */
static int migrate(struct ca_store *s)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "PRAGMA user_version"));
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    int newest = (int)(sizeof(migrations) / sizeof(migrations[0]));
    if (version < 0) {
        return db_fail(s, "read schema version");
    }
    if (version > newest) {
        return fail(s, WEFT_EINVAL,
                    "store schema version %d is newer than this weft-ca knows (%d): refusing to "
                    "touch it; run the newer weft-ca",
                    version, newest);
    }
    for (int v = version; v < newest; v++) {
        char set_version[64];
        snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d", v + 1);
        TRY(exec(s, "BEGIN IMMEDIATE"));
        if (exec(s, migrations[v]) != WEFT_OK || exec(s, set_version) != WEFT_OK) {
            return rollback(s, WEFT_EIO);
        }
        TRY(commit(s));
    }
    return WEFT_OK;
}

/* check_wal turns WAL on and checks that it took: on a filesystem without shared memory SQLite
 * keeps its old journal, and says so only in the pragma's answer. */
static int check_wal(struct ca_store *s)
{
    sqlite3_stmt *st;
    TRY(prepare(s, &st, "PRAGMA journal_mode = WAL"));
    int rc = WEFT_OK;
    if (sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        rc = fail(s, WEFT_EIO, "store: cannot use write-ahead logging here (journal mode %s)",
                  sqlite3_column_text(st, 0) != NULL ? (const char *)sqlite3_column_text(st, 0)
                                                     : "unknown");
    }
    sqlite3_finalize(st);
    return rc;
}

int ca_store_open_sqlite(struct ca_store **out, const char *path, char *err, size_t err_len)
{
    struct sqlite_store *st = weft_xcalloc(1, sizeof(*st));
    st->base.ops = &sqlite_ops;
    *out = NULL;
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "store %s: %s", path,
                 st->db != NULL ? sqlite3_errmsg(st->db) : "cannot open");
        sqlite3_close(st->db);
        free(st);
        return WEFT_EIO;
    }
    sqlite3_busy_timeout(st->db, 5000);
    struct ca_store *s = &st->base;
    if (check_wal(s) != WEFT_OK || exec(s, "PRAGMA synchronous = FULL") != WEFT_OK ||
        exec(s, "PRAGMA foreign_keys = ON") != WEFT_OK || migrate(s) != WEFT_OK) {
        snprintf(err, err_len, "store %s: %s", path, s->err);
        close_store(s);
        return WEFT_EIO;
    }
    *out = s;
    return WEFT_OK;
}

/* --- the interface ------------------------------------------------------------------------ */

void ca_store_close(struct ca_store *s)
{
    if (s != NULL) {
        s->ops->close(s);
    }
}

int ca_store_token_add(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], const char *node,
                       int64_t expires_at, int64_t now)
{
    return s->ops->token_add(s, hash, node, expires_at, now);
}

int ca_store_token_use(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                       char node_out[CA_NODE_NAME_MAX + 1])
{
    return s->ops->token_use(s, hash, now, node_out);
}

int ca_store_node_attested(struct ca_store *s, const char *node, enum ca_attest_method method,
                           int64_t now)
{
    return s->ops->node_attested(s, node, method, now);
}

int ca_store_node_commit(struct ca_store *s, enum ca_attest_method method, const char *as,
                         const char *const *selectors, size_t num_selectors, int64_t now,
                         const struct ca_issuance *node_svid, size_t *revoked)
{
    return s->ops->node_commit(s, method, as, selectors, num_selectors, now, node_svid, revoked);
}

int ca_store_entries_bound(struct ca_store *s, const char *node, size_t *out)
{
    return s->ops->entries_bound(s, node, out);
}

int ca_store_node_get(struct ca_store *s, const char *node, enum ca_attest_method *method, char *as,
                      size_t as_len)
{
    return s->ops->node_get(s, node, method, as, as_len);
}

int ca_store_node_has_selector(struct ca_store *s, const char *node, const char *selector,
                               bool *out)
{
    return s->ops->node_has_selector(s, node, selector, out);
}

int ca_store_entry_add(struct ca_store *s, const struct ca_entry *e)
{
    return s->ops->entry_add(s, e);
}

int ca_store_entry_delete(struct ca_store *s, const char *id)
{
    return s->ops->entry_delete(s, id);
}

int ca_store_entry_get(struct ca_store *s, const char *id, struct ca_entry *out)
{
    return s->ops->entry_get(s, id, out);
}

int ca_store_entry_list(struct ca_store *s, const char *node,
                        int (*fn)(void *arg, const struct ca_entry *e), void *arg)
{
    return s->ops->entry_list(s, node, fn, arg);
}

int ca_store_issuance_add(struct ca_store *s, const struct ca_issuance *i)
{
    return s->ops->issuance_add(s, i);
}

int ca_store_issuance_list(struct ca_store *s, const struct ca_issuance_filter *f,
                           int (*fn)(void *arg, const struct ca_issuance *i), void *arg)
{
    return s->ops->issuance_list(s, f, fn, arg);
}

int ca_store_revoke(struct ca_store *s, const struct ca_revocation *r)
{
    return s->ops->revoke(s, r);
}

int ca_store_revocation_list(struct ca_store *s, int64_t now,
                             int (*fn)(void *arg, const struct ca_revocation *r), void *arg)
{
    return s->ops->revocation_list(s, now, fn, arg);
}

int ca_store_latest_not_after(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                              int64_t *out)
{
    return s->ops->latest_not_after(s, kind, value, out);
}

int ca_store_is_revoked(struct ca_store *s, enum ca_revocation_kind kind, const char *value,
                        bool *out)
{
    return s->ops->is_revoked(s, kind, value, out);
}

int ca_store_token_peek(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                        char node_out[CA_NODE_NAME_MAX + 1])
{
    return s->ops->token_peek(s, hash, now, node_out);
}

int ca_store_attest_commit(struct ca_store *s, const uint8_t hash[CA_TOKEN_HASH_LEN], int64_t now,
                           const struct ca_issuance *node_svid)
{
    return s->ops->attest_commit(s, hash, now, node_svid);
}

int ca_store_issuance_add_many(struct ca_store *s, const struct ca_issuance *const *recs,
                               size_t num)
{
    return s->ops->issuance_add_many(s, recs, num);
}

int ca_store_state_put(struct ca_store *s, const struct ca_state_item *items, size_t num)
{
    return s->ops->state_put(s, items, num);
}

int ca_store_state_get(struct ca_store *s, const char *name, uint8_t **out, size_t *out_len)
{
    return s->ops->state_get(s, name, out, out_len);
}
