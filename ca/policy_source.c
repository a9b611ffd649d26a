/* The CA's directory policy source: fingerprint, reload, keep the last good set. */
#include "ca/policy_source.h"

#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "ca/kube_source.h"
#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"

/* struct snapshot is the directory's files as read once: hashed for the fingerprint and, when
 * that changed, loaded from these same bytes, so what is accepted is what was fingerprinted.
 * What the walk could not do (a path this process may not read, a limit passed) is kept too:
 * a snapshot with any such error is never accepted, because the set it would make is missing
 * whatever could not be seen. */
struct snapshot {
    SHA256_CTX hash;
    struct file {
        char *path;
        uint8_t *data;
        size_t len;
    } * files;
    size_t num, cap;
    struct walk_error {
        char *path, *what;
    } * errors;
    size_t num_errors;
    char unreadable[700]; /* the first path that could not be read, and why; "" when none */
};

struct ca_policy_source {
    struct ca_kube_source *kube; /* the Kubernetes source: everything below is unused */
    char *dir;
    int unreadable; /* the content last looked at was refused as unreadable */
    struct policy_set current;
    struct snapshot current_files; /* the bytes |current| was loaded from */
    uint64_t version;
    uint8_t fingerprint[SHA256_DIGEST_LENGTH]; /* of the content last looked at */
    int looked;                                /* fingerprint is valid */
    char error[1024];
    uint64_t refusals;
};

/* note_unreadable keeps the first path that could not be read: the path, errno's text and
 * name, and the user this process reads as (weft-ca reads the policy after dropping root). */
static void note_unreadable(struct snapshot *snap, const char *path, int err)
{
    if (snap->unreadable[0] != '\0') {
        return;
    }
    const char *name = strerrorname_np(err);
    char user[64];
    struct passwd *pw = getpwuid(geteuid());
    snprintf(user, sizeof(user), "%s", pw != NULL ? pw->pw_name : "?");
    snprintf(snap->unreadable, sizeof(snap->unreadable),
             "cannot read %.400s: %s (%s), reading as user %s (uid %u)", path, strerror(err),
             name != NULL ? name : "errno", user, (unsigned)geteuid());
}

static int read_file(void *arg, const char *path)
{
    struct snapshot *snap = arg;
    uint8_t *data = NULL;
    size_t len = 0;
    SHA256_Update(&snap->hash, path, strlen(path) + 1);
    int rc = weft_file_read(&data, &len, path, POLICY_MAX_FILE_BYTES);
    if (rc == WEFT_EIO && errno != ENOENT) {
        /* (ENOENT: renamed away since the walk listed it, a change still being made) */
        note_unreadable(snap, path, errno);
    }
    if (rc != WEFT_OK) {
        data = NULL; /* the loader says why when it reads the path itself */
    }
    uint64_t n = data != NULL ? len : UINT64_MAX;
    SHA256_Update(&snap->hash, &n, sizeof(n));
    if (data != NULL) {
        SHA256_Update(&snap->hash, data, len);
    }
    if (snap->num == snap->cap) {
        snap->cap = snap->cap ? snap->cap * 2 : 16;
        snap->files = weft_xrealloc(snap->files, snap->cap * sizeof(*snap->files));
    }
    snap->files[snap->num++] = (struct file){weft_xstrndup(path, strlen(path)), data, len};
    return WEFT_OK;
}

static void walk_error(void *arg, const char *path, const char *what)
{
    struct snapshot *snap = arg;
    int err = errno; /* why |path| could not be read; 0 for a limit (policy_walk_ops) */
    SHA256_Update(&snap->hash, path, strlen(path) + 1);
    SHA256_Update(&snap->hash, what, strlen(what) + 1);
    if (err != 0) {
        note_unreadable(snap, path, err);
    }
    snap->errors = weft_xrealloc(snap->errors, (snap->num_errors + 1) * sizeof(*snap->errors));
    snap->errors[snap->num_errors++] =
        (struct walk_error){weft_xstrndup(path, strlen(path)), weft_xstrndup(what, strlen(what))};
}

static void snapshot_free(struct snapshot *snap)
{
    for (size_t i = 0; i < snap->num; i++) {
        free(snap->files[i].path);
        free(snap->files[i].data);
    }
    free(snap->files);
    for (size_t i = 0; i < snap->num_errors; i++) {
        free(snap->errors[i].path);
        free(snap->errors[i].what);
    }
    free(snap->errors);
    memset(snap, 0, sizeof(*snap));
}

struct ca_policy_source *ca_policy_source_new(const char *dir)
{
    struct ca_policy_source *src = weft_xcalloc(1, sizeof(*src));
    src->dir = weft_xstrndup(dir, strlen(dir));
    policy_set_init(&src->current);
    return src;
}

struct ca_policy_source *ca_policy_source_new_kube(const struct ca_kube_config *cfg, char *err,
                                                   size_t err_len)
{
    struct ca_kube_source *kube = ca_kube_source_new(cfg, err, err_len);
    if (kube == NULL) {
        return NULL;
    }
    struct ca_policy_source *src = ca_policy_source_new("");
    src->kube = kube;
    return src;
}

void ca_policy_source_free(struct ca_policy_source *src)
{
    if (src == NULL) {
        return;
    }
    ca_kube_source_free(src->kube);
    policy_set_cleanup(&src->current);
    snapshot_free(&src->current_files);
    free(src->dir);
    free(src);
}

int ca_policy_source_poll(struct ca_policy_source *src)
{
    if (src->kube != NULL) {
        return ca_kube_source_poll(src->kube);
    }
    struct snapshot snap = {.num = 0};
    SHA256_Init(&snap.hash);
    struct stat st;
    /* Only "no such directory" is a directory not there yet; any other failure (a parent this
     * user may not search) hides one that may well be there. */
    bool present = stat(src->dir, &st) == 0;
    if (!present && errno != ENOENT) {
        int err = errno;
        SHA256_Update(&snap.hash, &err, sizeof(err));
        note_unreadable(&snap, src->dir, err);
    }
    if (present) {
        struct policy_walk_ops ops = {read_file, walk_error, &snap};
        if (policy_dir_walk(src->dir, &ops) != WEFT_OK) {
            /* walk errors went into the snapshot and its fingerprint; refused below */
        }
    }
    uint8_t fp[SHA256_DIGEST_LENGTH];
    SHA256_Update(&snap.hash, present ? "dir" : "none", present ? 3 : 4);
    SHA256_Final(fp, &snap.hash);
    if (src->looked && memcmp(fp, src->fingerprint, sizeof(fp)) == 0) {
        snapshot_free(&snap);
        /* nothing new */
        return src->error[0] == '\0' ? WEFT_OK : src->unreadable ? WEFT_EIO : WEFT_EINVAL;
    }
    bool first = !src->looked;
    memcpy(src->fingerprint, fp, sizeof(fp));
    src->looked = 1;
    src->unreadable = 0;
    if (snap.unreadable[0] != '\0') {
        /* Not bad policy but a file or directory this process may not read: what it would load
         * lacks what it cannot see, so the set in force stays. The first look, with nothing
         * loaded yet to keep, does not log: its caller decides (weft-ca refuses to start). */
        if (first) {
            snprintf(src->error, sizeof(src->error), "%s", snap.unreadable);
        } else {
            snprintf(src->error, sizeof(src->error), "%s; keeping version %llu", snap.unreadable,
                     (unsigned long long)src->version);
        }
        src->refusals++;
        src->unreadable = 1;
        if (!first) {
            char version[32];
            snprintf(version, sizeof(version), "%llu", (unsigned long long)src->version);
            weft_log(WEFT_LOG_WARN, "policy directory unreadable; keeping the policy in force", 3,
                     "dir", src->dir, "error", snap.unreadable, "kept_version", version);
        }
        snapshot_free(&snap);
        return WEFT_EIO;
    }
    if (!present && src->version > 0) {
        /* Gone after a good load: an unmounted volume or a directory swap half done, not an
         * operator's wish to drop every policy. */
        snprintf(src->error, sizeof(src->error),
                 "%.900s: the policy directory is gone; keeping version %llu", src->dir,
                 (unsigned long long)src->version);
        src->refusals++;
        weft_log(WEFT_LOG_ERROR, "policy change refused", 2, "dir", src->dir, "error",
                 "the policy directory is gone");
        snapshot_free(&snap);
        return WEFT_EINVAL;
    }

    struct policy_set next;
    policy_set_init(&next);
    int rc = WEFT_OK;
    for (size_t i = 0; i < snap.num; i++) {
        const struct file *f = &snap.files[i];
        int r = f->data != NULL ? policy_set_load_buffer(&next, f->path, f->data, f->len)
                                : policy_set_load_path(&next, f->path);
        rc = rc == WEFT_OK ? r : rc;
    }
    /* every load error is also in next.errors, which policy_set_finish reports; a limit the
     * walk passed (the files past it were never read) comes first */
    if (policy_set_finish(&next) != WEFT_OK || rc != WEFT_OK || snap.num_errors > 0) {
        char why[1100];
        size_t num = next.num_errors + next.num_errors_dropped + snap.num_errors;
        if (snap.num_errors > 0) {
            snprintf(why, sizeof(why), "%.500s: %.500s", snap.errors[0].path, snap.errors[0].what);
        } else {
            snprintf(why, sizeof(why), "%s", next.num_errors ? next.errors[0].text : "refused");
        }
        snprintf(src->error, sizeof(src->error),
                 "%.900s (%zu error%s in all); keeping version %llu", why, num, num == 1 ? "" : "s",
                 (unsigned long long)src->version);
        src->refusals++;
        char version[32];
        snprintf(version, sizeof(version), "%llu", (unsigned long long)src->version);
        weft_log(WEFT_LOG_ERROR, "policy change refused", 3, "dir", src->dir, "error", why,
                 "kept_version", version);
        policy_set_cleanup(&next);
        snapshot_free(&snap);
        return WEFT_EINVAL;
    }
    policy_set_cleanup(&src->current);
    src->current = next;
    snapshot_free(&src->current_files);
    src->current_files = snap;
    src->version++;
    src->error[0] = '\0';
    char version[32], count[32];
    snprintf(version, sizeof(version), "%llu", (unsigned long long)src->version);
    snprintf(count, sizeof(count), "%zu", next.num_authz + next.num_peerauthn);
    weft_log(WEFT_LOG_INFO, "policy change accepted", 3, "dir", src->dir, "version", version,
             "objects", count);
    return WEFT_OK;
}

const struct policy_set *ca_policy_source_current(const struct ca_policy_source *src,
                                                  uint64_t *out_version)
{
    if (src->kube != NULL) {
        return ca_kube_source_current(src->kube, out_version);
    }
    *out_version = src->version;
    return &src->current;
}

const char *ca_policy_source_error(const struct ca_policy_source *src)
{
    return src->kube != NULL ? ca_kube_source_error(src->kube) : src->error;
}

uint64_t ca_policy_source_refusals(const struct ca_policy_source *src)
{
    return src->kube != NULL ? ca_kube_source_refusals(src->kube) : src->refusals;
}

uint64_t ca_policy_source_api_failures(const struct ca_policy_source *src)
{
    return src->kube != NULL ? ca_kube_source_failures(src->kube) : 0;
}

size_t ca_policy_source_num_files(const struct ca_policy_source *src)
{
    if (src->kube != NULL) {
        return ca_kube_source_num_files(src->kube);
    }
    return src->current_files.num;
}

void ca_policy_source_file(const struct ca_policy_source *src, size_t i, const char **name,
                           const uint8_t **data, size_t *len)
{
    if (src->kube != NULL) {
        ca_kube_source_file(src->kube, i, name, data, len);
        return;
    }
    const struct file *f = &src->current_files.files[i];
    size_t dir_len = strlen(src->dir);
    *name = f->path;
    if (strncmp(f->path, src->dir, dir_len) == 0 && f->path[dir_len] == '/') {
        *name = f->path + dir_len + 1;
    }
    *data = f->data;
    *len = f->len;
}
