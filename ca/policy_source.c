/* The CA's directory policy source: fingerprint, reload, keep the last good set. */
#include "ca/policy_source.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/sha.h>

#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"

/* struct snapshot is the directory's files as read once: hashed for the fingerprint and, when
 * that changed, loaded from these same bytes, so what is accepted is what was fingerprinted. */
struct snapshot {
    SHA256_CTX hash;
    struct file {
        char *path;
        uint8_t *data;
        size_t len;
    } * files;
    size_t num, cap;
};

struct ca_policy_source {
    char *dir;
    struct policy_set current;
    struct snapshot current_files; /* the bytes |current| was loaded from */
    uint64_t version;
    uint8_t fingerprint[SHA256_DIGEST_LENGTH]; /* of the content last looked at */
    int looked;                                /* fingerprint is valid */
    char error[1024];
    uint64_t refusals;
};

static int read_file(void *arg, const char *path)
{
    struct snapshot *snap = arg;
    uint8_t *data = NULL;
    size_t len = 0;
    SHA256_Update(&snap->hash, path, strlen(path) + 1);
    if (weft_file_read(&data, &len, path, POLICY_MAX_FILE_BYTES) != WEFT_OK) {
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
    SHA256_Update(&snap->hash, path, strlen(path) + 1);
    SHA256_Update(&snap->hash, what, strlen(what) + 1);
}

static void snapshot_free(struct snapshot *snap)
{
    for (size_t i = 0; i < snap->num; i++) {
        free(snap->files[i].path);
        free(snap->files[i].data);
    }
    free(snap->files);
}

struct ca_policy_source *ca_policy_source_new(const char *dir)
{
    struct ca_policy_source *src = weft_xcalloc(1, sizeof(*src));
    src->dir = weft_xstrndup(dir, strlen(dir));
    policy_set_init(&src->current);
    return src;
}

void ca_policy_source_free(struct ca_policy_source *src)
{
    if (src == NULL) {
        return;
    }
    policy_set_cleanup(&src->current);
    snapshot_free(&src->current_files);
    free(src->dir);
    free(src);
}

int ca_policy_source_poll(struct ca_policy_source *src)
{
    struct snapshot snap = {.num = 0};
    SHA256_Init(&snap.hash);
    struct stat st;
    bool present = stat(src->dir, &st) == 0;
    if (present) {
        struct policy_walk_ops ops = {read_file, walk_error, &snap};
        if (policy_dir_walk(src->dir, &ops) != WEFT_OK) {
            /* walk errors went into the fingerprint; the loader reports them below */
        }
    }
    uint8_t fp[SHA256_DIGEST_LENGTH];
    SHA256_Update(&snap.hash, present ? "dir" : "none", present ? 3 : 4);
    SHA256_Final(fp, &snap.hash);
    if (src->looked && memcmp(fp, src->fingerprint, sizeof(fp)) == 0) {
        snapshot_free(&snap);
        return src->error[0] == '\0' ? WEFT_OK : WEFT_EINVAL; /* nothing new */
    }
    memcpy(src->fingerprint, fp, sizeof(fp));
    src->looked = 1;
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
    /* every load error is also in next.errors, which policy_set_finish reports */
    if (policy_set_finish(&next) != WEFT_OK || rc != WEFT_OK) {
        snprintf(src->error, sizeof(src->error), "%s (%zu error%s in all); keeping version %llu",
                 next.num_errors ? next.errors[0].text : "refused",
                 next.num_errors + next.num_errors_dropped,
                 next.num_errors + next.num_errors_dropped == 1 ? "" : "s",
                 (unsigned long long)src->version);
        src->refusals++;
        char version[32];
        snprintf(version, sizeof(version), "%llu", (unsigned long long)src->version);
        weft_log(WEFT_LOG_ERROR, "policy change refused", 3, "dir", src->dir, "error",
                 next.num_errors ? next.errors[0].text : "refused", "kept_version", version);
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
    *out_version = src->version;
    return &src->current;
}

const char *ca_policy_source_error(const struct ca_policy_source *src) { return src->error; }

uint64_t ca_policy_source_refusals(const struct ca_policy_source *src) { return src->refusals; }

size_t ca_policy_source_num_files(const struct ca_policy_source *src)
{
    return src->current_files.num;
}

void ca_policy_source_file(const struct ca_policy_source *src, size_t i, const char **name,
                           const uint8_t **data, size_t *len)
{
    const struct file *f = &src->current_files.files[i];
    size_t dir_len = strlen(src->dir);
    *name = f->path;
    if (strncmp(f->path, src->dir, dir_len) == 0 && f->path[dir_len] == '/') {
        *name = f->path + dir_len + 1;
    }
    *data = f->data;
    *len = f->len;
}
