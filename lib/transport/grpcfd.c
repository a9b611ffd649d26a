/* lib/transport/grpcfd.c: the fd -> peer record and the guarded adoption of fds by a server. */
#include "lib/transport/grpcfd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include "lib/base/mem.h"
#include "lib/transport/internal.h"

#define PEER_PREFIX "fd:"
#define PEER_PREFIX_LEN 3

struct grpcfd_server {
    pthread_mutex_t mu; /* held across adoption, so that close waits for one in progress */
    bool open;
    grpc_server *server;
    grpc_server_credentials *creds;
};

/* struct record_entry: who was verified on the socket that had this number when adopted. */
struct record_entry {
    const struct grpcfd_server *owner;
    dev_t dev; /* the socket's identity: a reused number names another inode */
    ino_t ino;
    struct weft_peer peer;
};

/* The record, indexed by descriptor number. Numbers are process-wide and the kernel hands out
 * the lowest free one, so the array stays about as long as the process's descriptor table. An
 * entry is replaced when its number is adopted again; until then the inode check keeps a stale
 * one from answering for another socket. */
static pthread_mutex_t record_mu = PTHREAD_MUTEX_INITIALIZER;
static struct record_entry **record;
static size_t record_cap;

int grpcfd_parse_peer_fd(int *out_fd, const char *peer_str)
{
    *out_fd = -1;
    ENSURE(peer_str != NULL && strncmp(peer_str, PEER_PREFIX, PEER_PREFIX_LEN) == 0,
           WEFT_ENOTFOUND);
    const char *p = peer_str + PEER_PREFIX_LEN;
    /* gRPC prints the number with "%d": one form per number, so anything else is not ours. */
    ENSURE(*p >= '0' && *p <= '9' && !(p[0] == '0' && p[1] != '\0'), WEFT_ENOTFOUND);
    long n = 0;
    for (; *p != '\0'; p++) {
        ENSURE(*p >= '0' && *p <= '9', WEFT_ENOTFOUND);
        n = n * 10 + (*p - '0');
        ENSURE(n < GRPCFD_MAX_FD, WEFT_ENOTFOUND);
    }
    *out_fd = (int)n;
    return WEFT_OK;
}

/* record_put fills the entry of |fd| from |st|. Called with record_mu held. */
static void record_put(const struct grpcfd_server *owner, int fd, const struct stat *st,
                       const struct weft_peer *peer)
{
    if ((size_t)fd >= record_cap) {
        size_t cap = record_cap != 0 ? record_cap : 64;
        while (cap <= (size_t)fd) {
            cap *= 2;
        }
        record = weft_xrealloc(record, cap * sizeof(*record));
        memset(record + record_cap, 0, (cap - record_cap) * sizeof(*record));
        record_cap = cap;
    }
    if (record[fd] == NULL) {
        record[fd] = weft_xmalloc(sizeof(*record[fd]));
    }
    *record[fd] =
        (struct record_entry){.owner = owner, .dev = st->st_dev, .ino = st->st_ino, .peer = *peer};
}

/* socket_stat checks that |fd| is a socket we can accept and describes it. */
static int socket_stat(struct stat *out, int fd)
{
    ENSURE(fd >= 0, WEFT_EINVAL);
    ENSURE(fd < GRPCFD_MAX_FD, WEFT_ELIMIT);
    ENSURE(fstat(fd, out) == 0 && S_ISSOCK(out->st_mode), WEFT_EINVAL);
    return WEFT_OK;
}

int grpcfd_record(const struct grpcfd_server *owner, int fd, const struct weft_peer *peer)
{
    struct stat st;
    TRY(socket_stat(&st, fd));
    pthread_mutex_lock(&record_mu);
    record_put(owner, fd, &st, peer);
    pthread_mutex_unlock(&record_mu);
    return WEFT_OK;
}

int grpcfd_peer_lookup(struct weft_peer *out, const char *peer_str)
{
    memset(out, 0, sizeof(*out));
    int fd;
    TRY(grpcfd_parse_peer_fd(&fd, peer_str));
    int rc = WEFT_ENOTFOUND;
    pthread_mutex_lock(&record_mu);
    const struct record_entry *e = (size_t)fd < record_cap ? record[fd] : NULL;
    struct stat st;
    /* The caller holds a live call, so gRPC holds |fd| open: fstat sees the adopted socket, or
     * the number was never adopted by us and the inode tells. */
    if (e != NULL && fstat(fd, &st) == 0 && st.st_dev == e->dev && st.st_ino == e->ino) {
        *out = e->peer;
        rc = WEFT_OK;
    }
    pthread_mutex_unlock(&record_mu);
    return rc;
}

int grpcfd_call_peer(grpc_call *call, struct weft_peer *out)
{
    char *peer_str = grpc_call_get_peer(call);
    int rc = grpcfd_peer_lookup(out, peer_str);
    gpr_free(peer_str);
    return rc;
}

struct grpcfd_server *grpcfd_server_new(grpc_server *server)
{
    struct grpcfd_server *s = weft_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->open = true;
    s->server = server;
    s->creds = grpc_insecure_server_credentials_create();
    return s;
}

int grpcfd_adopt(struct grpcfd_server *s, int fd, const struct weft_peer *peer)
{
    struct stat st;
    int rc = socket_stat(&st, fd);
    if (rc != WEFT_OK) {
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->open) {
        pthread_mutex_unlock(&s->mu);
        close(fd); /* the relay sees EOF and closes the TLS connection */
        return WEFT_EINVAL;
    }
    /* Recorded before gRPC can read the client's first byte, so no call can come first. */
    pthread_mutex_lock(&record_mu);
    record_put(s, fd, &st, peer);
    pthread_mutex_unlock(&record_mu);
    grpc_server_add_channel_from_fd(s->server, fd, s->creds);
    pthread_mutex_unlock(&s->mu);
    return WEFT_OK;
}

void grpcfd_on_peer(void *arg, int fd, const struct weft_peer *peer)
{
    /* On failure |fd| is already closed: that is the refusal, and all a callback can do. */
    if (grpcfd_adopt(arg, fd, peer) != WEFT_OK) {
        return;
    }
}

void grpcfd_server_close(struct grpcfd_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->open = false;
    pthread_mutex_unlock(&s->mu);
}

void grpcfd_server_free(struct grpcfd_server *s)
{
    if (s == NULL) {
        return;
    }
    grpcfd_server_close(s);
    pthread_mutex_lock(&record_mu);
    for (size_t i = 0; i < record_cap; i++) {
        if (record[i] != NULL && record[i]->owner == s) {
            free(record[i]);
            record[i] = NULL;
        }
    }
    pthread_mutex_unlock(&record_mu);
    grpc_server_credentials_release(s->creds);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

grpc_channel *grpcfd_channel_new(int fd, const char *authority)
{
    grpc_arg arg = {
        .type = GRPC_ARG_STRING,
        .key = GRPC_ARG_DEFAULT_AUTHORITY,
        .value.string = (char *)authority,
    };
    grpc_channel_args args = {.num_args = 1, .args = &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create_from_fd(authority, fd, creds, &args);
    grpc_channel_credentials_release(creds);
    return ch;
}
