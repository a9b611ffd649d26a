/* The CA's directory policy source: fingerprint, reload, keep the last good set. */
#include "ca/policy_source.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/sha.h>

#include "lib/base/file.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"

struct ca_policy_source {
    char *dir;
    struct policy_set current;
    uint64_t version;
    uint8_t fingerprint[SHA256_DIGEST_LENGTH]; /* of the content last looked at */
    int looked;                                /* fingerprint is valid */
    char error[1024];
    uint64_t refusals;
};

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int yaml_name(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

/* hash_dir feeds the loader's view of |dir| into |ctx|: names in order, then each file's size
 * and bytes. Files too large or unreadable count by name only: the loader will report them. */
static void hash_dir(SHA256_CTX *ctx, const char *dir, int depth)
{
    DIR *d = depth <= 16 ? opendir(dir) : NULL;
    if (d == NULL) {
        return;
    }
    char **names = NULL;
    size_t num = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (num == cap) {
            cap = cap ? cap * 2 : 32;
            names = weft_xrealloc(names, cap * sizeof(*names));
        }
        names[num++] = weft_xstrndup(e->d_name, strlen(e->d_name));
    }
    closedir(d);
    if (num > 1) {
        qsort(names, num, sizeof(*names), cmp_names);
    }
    for (size_t i = 0; i < num; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            SHA256_Update(ctx, "d", 1);
            SHA256_Update(ctx, path, strlen(path) + 1);
            hash_dir(ctx, path, depth + 1);
        } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && yaml_name(names[i])) {
            uint8_t *data;
            size_t len;
            SHA256_Update(ctx, "f", 1);
            SHA256_Update(ctx, path, strlen(path) + 1);
            if (weft_file_read(&data, &len, path, POLICY_MAX_FILE_BYTES) == WEFT_OK) {
                uint64_t n = len;
                SHA256_Update(ctx, &n, sizeof(n));
                SHA256_Update(ctx, data, len);
                free(data);
            }
        }
        free(names[i]);
    }
    free(names);
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
    free(src->dir);
    free(src);
}

int ca_policy_source_poll(struct ca_policy_source *src)
{
    uint8_t fp[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    hash_dir(&ctx, src->dir, 0);
    SHA256_Final(fp, &ctx);
    if (src->looked && memcmp(fp, src->fingerprint, sizeof(fp)) == 0) {
        return src->error[0] == '\0' ? WEFT_OK : WEFT_EINVAL; /* nothing new */
    }
    memcpy(src->fingerprint, fp, sizeof(fp));
    src->looked = 1;

    struct policy_set next;
    policy_set_init(&next);
    struct stat st;
    int rc = WEFT_OK;
    if (stat(src->dir, &st) == 0) {
        rc = policy_set_load_path(&next, src->dir);
    } else if (src->version > 0) {
        /* Gone after a good load: an unmounted volume or a directory swap half done, not an
         * operator's wish to drop every policy. */
        snprintf(src->error, sizeof(src->error),
                 "%.900s: the policy directory is gone; keeping version %llu", src->dir,
                 (unsigned long long)src->version);
        src->refusals++;
        weft_log(WEFT_LOG_ERROR, "policy change refused", 2, "dir", src->dir, "error",
                 "the policy directory is gone");
        policy_set_cleanup(&next);
        return WEFT_EINVAL;
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
        return WEFT_EINVAL;
    }
    policy_set_cleanup(&src->current);
    src->current = next;
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
