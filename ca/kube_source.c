/* The Kubernetes policy source: a store the watcher threads feed, read into a policy set. */
#include "ca/kube_source.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/kube_watch.h"
#include "lib/base/log.h"
#include "lib/base/mem.h"

#define KEY_MAX 320 /* "<namespace>/<name>": 63 + 1 + 253, and a NUL */

/* struct entry is one object of the cluster as far as policy goes: its last valid version (if
 * any) and, when its latest version was refused, why. */
struct entry {
    size_t kind;
    char key[KEY_MAX];
    bool has_good;
    struct ca_kube_file good;
    char *bad;   /* the latest version's error; NULL when it was accepted */
    bool listed; /* seen in the list under way for its kind */
};

/* struct file is one file of the set in force, owned by the poller. */
struct file {
    char *name;
    uint8_t *data;
    size_t len;
};

struct ca_kube_source {
    struct ca_kube_client *client;

    pthread_mutex_t mu; /* guards everything down to |refused_objects| */
    struct entry *entries;
    size_t num, cap;
    uint64_t gen; /* bumped by every change of |entries| */
    bool synced[CA_KUBE_NUM_KINDS];
    size_t total_bytes; /* of the valid versions held */
    /* an object of the kind refused by a limit since its last list began: such an object has
     * no entry, and comes back only with the next list */
    char limit_note[CA_KUBE_NUM_KINDS][400];
    size_t max_objects, max_bytes;
    atomic_uint_fast64_t refused_objects; /* (read without the lock) */

    /* the poller's own */
    uint64_t built_gen;
    struct policy_set current;
    struct file *files;
    size_t num_files;
    uint64_t version;
    uint64_t refused_sets;
    char error[1200];
};

static struct entry *find(struct ca_kube_source *ks, size_t kind, const char *key)
{
    for (size_t i = 0; i < ks->num; i++) {
        if (ks->entries[i].kind == kind && strcmp(ks->entries[i].key, key) == 0) {
            return &ks->entries[i];
        }
    }
    return NULL;
}

static void entry_cleanup(struct entry *e)
{
    ca_kube_file_cleanup(&e->good);
    free(e->bad);
}

static void remove_at(struct ca_kube_source *ks, size_t i)
{
    ks->total_bytes -= ks->entries[i].has_good ? ks->entries[i].good.len : 0;
    entry_cleanup(&ks->entries[i]);
    ks->entries[i] = ks->entries[--ks->num];
}

static const char *rv_of(const json_t *obj)
{
    const char *rv =
        json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return rv != NULL ? rv : "";
}

/* refuse records that the latest version of |key| is refused (under the lock), and logs it. */
static void refuse(struct ca_kube_source *ks, size_t kind, const char *key, const char *rv,
                   const char *why)
{
    const char *kind_s = ca_kube_kinds[kind].kind;
    struct entry *e = find(ks, kind, key);
    if (e == NULL && ks->num < ks->max_objects) {
        if (ks->num == ks->cap) {
            ks->cap = ks->cap ? ks->cap * 2 : 64;
            ks->entries = weft_xrealloc(ks->entries, ks->cap * sizeof(*ks->entries));
        }
        e = &ks->entries[ks->num++];
        memset(e, 0, sizeof(*e));
        e->kind = kind;
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    if (e == NULL) {
        snprintf(ks->limit_note[kind], sizeof(ks->limit_note[kind]),
                 "%s %.100s (resourceVersion %.40s): %.200s", kind_s, key, rv, why);
    } else {
        size_t n = strlen(kind_s) + strlen(key) + strlen(rv) + strlen(why) + 64;
        char *text = weft_xmalloc(n);
        snprintf(text, n, "%s %s (resourceVersion %s): %s", kind_s, key, rv, why);
        free(e->bad);
        e->bad = text;
        e->listed = true; /* (its previous valid version, if any, is still there) */
    }
    ks->gen++; /* the error the next poll reports changed */
    atomic_fetch_add(&ks->refused_objects, 1);
    weft_log(WEFT_LOG_ERROR, "kubernetes policy object refused", 5, "kind", kind_s, "object", key,
             "resource_version", rv, "error", why, "kept",
             e != NULL && e->has_good ? "the previous valid version" : "nothing");
}

/* on_object validates |obj| alone, then stores it (its previous valid version stays when it is
 * refused). */
static void on_object(void *arg, size_t kind, const json_t *obj)
{
    struct ca_kube_source *ks = arg;
    char key[KEY_MAX], err[CA_KUBE_MAX_ERR];
    if (ca_kube_object_key(key, sizeof(key), obj) != WEFT_OK) {
        snprintf(key, sizeof(key), "(unnamed)");
    }
    const char *rv = rv_of(obj);
    const char *want = ca_kube_kinds[kind].kind;
    const char *kind_s = json_string_value(json_object_get(obj, "kind"));
    struct ca_kube_file f;
    int rc = WEFT_EINVAL;
    char *why = NULL;
    if (kind_s == NULL || strcmp(kind_s, want) != 0) {
        snprintf(err, sizeof(err), "the %s watch sent an object of kind \"%.40s\"", want,
                 kind_s != NULL ? kind_s : "");
        memset(&f, 0, sizeof(f));
    } else if (ca_kube_object_file(&f, obj, ca_kube_kinds[kind].plural, err, sizeof(err)) ==
               WEFT_OK) {
        /* alone, so that one bad object cannot take the others down with it */
        struct policy_set one;
        policy_set_init(&one);
        rc = policy_set_load_buffer(&one, f.name, (const uint8_t *)f.data, f.len);
        if (policy_set_finish(&one) != WEFT_OK || rc != WEFT_OK) {
            rc = WEFT_EINVAL;
            size_t n = one.num_errors + one.num_errors_dropped;
            const char *first = one.num_errors ? one.errors[0].text : "refused by the loader";
            size_t len = strlen(first) + 64;
            why = weft_xmalloc(len);
            snprintf(why, len, "%s (%zu error%s)", first, n, n == 1 ? "" : "s");
        }
        policy_set_cleanup(&one);
    }
    pthread_mutex_lock(&ks->mu);
    struct entry *e = find(ks, kind, key);
    if (rc != WEFT_OK) {
        refuse(ks, kind, key, rv, why != NULL ? why : err);
        ca_kube_file_cleanup(&f);
    } else if (e != NULL && e->has_good && e->good.len == f.len &&
               memcmp(e->good.data, f.data, f.len) == 0 && e->bad == NULL) {
        e->listed = true; /* a relist of what we hold */
        ca_kube_file_cleanup(&f);
    } else if (e == NULL && ks->num >= ks->max_objects) {
        char limit[128];
        snprintf(limit, sizeof(limit), "more than %zu policy objects", ks->max_objects);
        refuse(ks, kind, key, rv, limit);
        ca_kube_file_cleanup(&f);
    } else if (ks->total_bytes - (e != NULL && e->has_good ? e->good.len : 0) + f.len >
               ks->max_bytes) {
        char limit[128];
        snprintf(limit, sizeof(limit), "the policy objects would hold more than %zu bytes",
                 ks->max_bytes);
        refuse(ks, kind, key, rv, limit);
        ca_kube_file_cleanup(&f);
    } else {
        if (e == NULL) {
            if (ks->num == ks->cap) {
                ks->cap = ks->cap ? ks->cap * 2 : 64;
                ks->entries = weft_xrealloc(ks->entries, ks->cap * sizeof(*ks->entries));
            }
            e = &ks->entries[ks->num++];
            memset(e, 0, sizeof(*e));
            e->kind = kind;
            snprintf(e->key, sizeof(e->key), "%s", key);
        }
        ks->total_bytes += f.len - (e->has_good ? e->good.len : 0);
        ca_kube_file_cleanup(&e->good);
        e->good = f;
        e->has_good = true;
        free(e->bad);
        e->bad = NULL;
        e->listed = true;
        ks->gen++;
    }
    pthread_mutex_unlock(&ks->mu);
    free(why);
}

static void on_gone(void *arg, size_t kind, const json_t *obj)
{
    struct ca_kube_source *ks = arg;
    char key[KEY_MAX];
    if (ca_kube_object_key(key, sizeof(key), obj) != WEFT_OK) {
        return;
    }
    pthread_mutex_lock(&ks->mu);
    struct entry *e = find(ks, kind, key);
    if (e != NULL) {
        remove_at(ks, (size_t)(e - ks->entries));
        ks->gen++;
    }
    pthread_mutex_unlock(&ks->mu);
}

static void on_list_begin(void *arg, size_t kind)
{
    struct ca_kube_source *ks = arg;
    pthread_mutex_lock(&ks->mu);
    for (size_t i = 0; i < ks->num; i++) {
        if (ks->entries[i].kind == kind) {
            ks->entries[i].listed = false;
        }
    }
    ks->limit_note[kind][0] = '\0';
    pthread_mutex_unlock(&ks->mu);
}

/* on_list_end sweeps what the list did not have: deleted while no watch was running. */
static void on_list_end(void *arg, size_t kind)
{
    struct ca_kube_source *ks = arg;
    pthread_mutex_lock(&ks->mu);
    for (size_t i = 0; i < ks->num;) {
        if (ks->entries[i].kind == kind && !ks->entries[i].listed) {
            remove_at(ks, i);
            ks->gen++;
        } else {
            i++;
        }
    }
    if (!ks->synced[kind]) {
        ks->synced[kind] = true;
        ks->gen++;
    }
    pthread_mutex_unlock(&ks->mu);
}

struct ca_kube_source *ca_kube_source_new(const struct ca_kube_config *cfg, char *err,
                                          size_t err_len)
{
    struct ca_kube_source *ks = weft_xcalloc(1, sizeof(*ks));
    pthread_mutex_init(&ks->mu, NULL);
    policy_set_init(&ks->current);
    ks->max_objects = cfg->max_objects ? cfg->max_objects : POLICY_MAX_FILES;
    ks->max_bytes = cfg->max_bytes ? cfg->max_bytes : CA_KUBE_MAX_SET_BYTES;
    struct ca_kube_sink sink = {on_list_begin, on_object, on_gone, on_list_end, ks};
    ks->client = ca_kube_client_start(cfg, &sink, err, err_len);
    if (ks->client == NULL) {
        ca_kube_source_free(ks);
        return NULL;
    }
    return ks;
}

static void files_free(struct file *files, size_t num)
{
    for (size_t i = 0; i < num; i++) {
        free(files[i].name);
        free(files[i].data);
    }
    free(files);
}

void ca_kube_source_free(struct ca_kube_source *ks)
{
    if (ks == NULL) {
        return;
    }
    ca_kube_client_stop(ks->client); /* no thread touches the store after this */
    for (size_t i = 0; i < ks->num; i++) {
        entry_cleanup(&ks->entries[i]);
    }
    free(ks->entries);
    files_free(ks->files, ks->num_files);
    policy_set_cleanup(&ks->current);
    pthread_mutex_destroy(&ks->mu);
    free(ks);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct file *)a)->name, ((const struct file *)b)->name);
}

static bool same_files(const struct file *a, size_t num_a, const struct file *b, size_t num_b)
{
    if (num_a != num_b) {
        return false;
    }
    for (size_t i = 0; i < num_a; i++) {
        if (strcmp(a[i].name, b[i].name) != 0 || a[i].len != b[i].len ||
            memcmp(a[i].data, b[i].data, a[i].len) != 0) {
            return false;
        }
    }
    return true;
}

bool ca_kube_source_synced(struct ca_kube_source *ks)
{
    pthread_mutex_lock(&ks->mu);
    bool all = true;
    for (size_t i = 0; i < CA_KUBE_NUM_KINDS; i++) {
        all &= ks->synced[i];
    }
    pthread_mutex_unlock(&ks->mu);
    return all;
}

int ca_kube_source_poll(struct ca_kube_source *ks)
{
    pthread_mutex_lock(&ks->mu);
    bool all = true;
    for (size_t i = 0; i < CA_KUBE_NUM_KINDS; i++) {
        all &= ks->synced[i];
    }
    if (!all || ks->gen == ks->built_gen) {
        pthread_mutex_unlock(&ks->mu);
        return ks->error[0] == '\0' ? WEFT_OK : WEFT_EINVAL;
    }
    ks->built_gen = ks->gen;
    /* copy out under the lock; load outside it, so the watchers are not held up */
    struct file *files = weft_xcalloc(ks->num + 1, sizeof(*files));
    size_t num = 0, num_bad = 0;
    char first_bad[700] = "";
    for (size_t i = 0; i < ks->num; i++) {
        const struct entry *e = &ks->entries[i];
        if (e->bad != NULL && num_bad++ == 0) {
            snprintf(first_bad, sizeof(first_bad), "%s", e->bad);
        }
        if (e->has_good) {
            files[num].name = weft_xstrndup(e->good.name, strlen(e->good.name));
            files[num].data = (uint8_t *)weft_xstrndup(e->good.data, e->good.len);
            files[num].len = e->good.len;
            num++;
        }
    }
    for (size_t i = 0; i < CA_KUBE_NUM_KINDS; i++) {
        if (ks->limit_note[i][0] != '\0' && num_bad++ == 0) {
            snprintf(first_bad, sizeof(first_bad), "%s", ks->limit_note[i]);
        }
    }
    pthread_mutex_unlock(&ks->mu);
    qsort(files, num, sizeof(*files), by_name); /* the same objects make the same set */

    if (num_bad > 0) {
        snprintf(ks->error, sizeof(ks->error), "%zu object%s refused; the first: %s", num_bad,
                 num_bad == 1 ? "" : "s", first_bad);
    } else {
        ks->error[0] = '\0';
    }
    if (ks->version > 0 && same_files(files, num, ks->files, ks->num_files)) {
        /* only a refusal changed: the set in force is still the right one */
        files_free(files, num);
        return num_bad > 0 ? WEFT_EINVAL : WEFT_OK;
    }

    struct policy_set next;
    policy_set_init(&next);
    int rc = WEFT_OK;
    for (size_t i = 0; i < num; i++) {
        int r = policy_set_load_buffer(&next, files[i].name, files[i].data, files[i].len);
        rc = rc == WEFT_OK ? r : rc;
    }
    char version[32];
    if (policy_set_finish(&next) != WEFT_OK || rc != WEFT_OK) {
        /* each object is valid alone, the set is not (a second MeshConfig) */
        size_t n = next.num_errors + next.num_errors_dropped;
        snprintf(ks->error, sizeof(ks->error), "%.900s (%zu error%s in all); keeping version %llu",
                 next.num_errors ? next.errors[0].text : "refused", n, n == 1 ? "" : "s",
                 (unsigned long long)ks->version);
        ks->refused_sets++;
        snprintf(version, sizeof(version), "%llu", (unsigned long long)ks->version);
        weft_log(WEFT_LOG_ERROR, "policy change refused", 3, "source", "kubernetes", "error",
                 ks->error, "kept_version", version);
        policy_set_cleanup(&next);
        files_free(files, num);
        return WEFT_EINVAL;
    }
    policy_set_cleanup(&ks->current);
    ks->current = next;
    files_free(ks->files, ks->num_files);
    ks->files = files;
    ks->num_files = num;
    ks->version++;
    char objects[32], authz[32], peerauthn[32], mesh[32], refused[32];
    snprintf(version, sizeof(version), "%llu", (unsigned long long)ks->version);
    snprintf(objects, sizeof(objects), "%zu", num);
    snprintf(authz, sizeof(authz), "%zu", next.num_authz);
    snprintf(peerauthn, sizeof(peerauthn), "%zu", next.num_peerauthn);
    snprintf(mesh, sizeof(mesh), "%d", next.has_mesh ? 1 : 0);
    snprintf(refused, sizeof(refused), "%zu", num_bad);
    weft_log(WEFT_LOG_INFO, "policy change accepted", 7, "source", "kubernetes", "version", version,
             "objects", objects, "authorization_policies", authz, "peer_authentications", peerauthn,
             "mesh_configs", mesh, "refused_objects", refused);
    return num_bad > 0 ? WEFT_EINVAL : WEFT_OK;
}

const struct policy_set *ca_kube_source_current(const struct ca_kube_source *ks,
                                                uint64_t *out_version)
{
    *out_version = ks->version;
    return &ks->current;
}

size_t ca_kube_source_num_files(const struct ca_kube_source *ks) { return ks->num_files; }

void ca_kube_source_file(const struct ca_kube_source *ks, size_t i, const char **name,
                         const uint8_t **data, size_t *len)
{
    *name = ks->files[i].name;
    *data = ks->files[i].data;
    *len = ks->files[i].len;
}

const char *ca_kube_source_error(const struct ca_kube_source *ks) { return ks->error; }

uint64_t ca_kube_source_refusals(const struct ca_kube_source *ks)
{
    return atomic_load(&ks->refused_objects) + ks->refused_sets;
}

uint64_t ca_kube_source_failures(const struct ca_kube_source *ks)
{
    return ca_kube_client_failures(ks->client);
}
