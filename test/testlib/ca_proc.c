/* test/testlib/ca_proc.c: see ca_proc.h. */
#include "test/testlib/ca_proc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/rpc/rpc.h"
#include "proto/ca.pb-c.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

int ca_proc_init(struct ca_proc *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/weft-ca-proc-XXXXXX");
    ENSURE(mkdtemp(p->dir) != NULL, WEFT_EIO);
    snprintf(p->sock, sizeof(p->sock), "%s/admin.sock", p->dir);
    int port = free_port();
    ENSURE(port > 0, WEFT_EIO);
    snprintf(p->listen, sizeof(p->listen), "127.0.0.1:%d", port);
    return WEFT_OK;
}

int ca_proc_start(struct ca_proc *p, const char *node_ttl)
{
    char log[128];
    snprintf(log, sizeof(log), "%s/ca.log", p->dir);
    p->pid = fork();
    ENSURE(p->pid >= 0, WEFT_EIO);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that crashes takes its CA with it */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        char *argv[32] = {"weft-ca",        "--data-dir", p->dir,      "--self-signed",
                          "--trust-domain", CA_PROC_TD,   "--listen",  p->listen,
                          "--http",         "",           "--node-ttl"};
        size_t n = 11;
        argv[n++] = (char *)(node_ttl != NULL ? node_ttl : "24h");
        for (size_t i = 0; i < 8 && p->extra[i] != NULL; i++) {
            argv[n++] = (char *)p->extra[i];
        }
        execv(CA_PROC_BIN, argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        Weft__Ca__V1__StatusRequest req = WEFT__CA__V1__STATUS_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        struct rpc_status st;
        grpc_channel *ch = rpc_channel_unix(p->sock);
        if (rpc_call_unary(ch, "/weft.ca.v1.Admin/Status", &req.base,
                           &weft__ca__v1__status_response__descriptor, 1 << 20, 500, &resp,
                           &st) == WEFT_OK) {
            protobuf_c_message_free_unpacked(resp, NULL);
            p->admin = ch;
            return WEFT_OK;
        }
        grpc_channel_destroy(ch);
        if (waitpid(p->pid, NULL, WNOHANG) != 0) {
            p->pid = 0;
            return WEFT_EIO; /* it exited */
        }
        usleep(50 * 1000);
    }
    return WEFT_EIO;
}

int ca_proc_reap(struct ca_proc *p)
{
    if (p->admin != NULL) {
        grpc_channel_destroy(p->admin);
        p->admin = NULL;
    }
    int status = 0;
    if (p->pid > 0) {
        waitpid(p->pid, &status, 0);
        p->pid = 0;
    }
    return status;
}

void ca_proc_stop(struct ca_proc *p, int sig)
{
    if (p->pid > 0) {
        kill(p->pid, sig);
    }
    (void)ca_proc_reap(p);
}

void ca_proc_cleanup(struct ca_proc *p)
{
    ca_proc_stop(p, SIGTERM);
    if (p->dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", p->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", p->dir);
        }
    }
}

int ca_proc_admin(struct ca_proc *p, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                  struct rpc_status *st)
{
    char path[128];
    snprintf(path, sizeof(path), "/weft.ca.v1.Admin/%s", method);
    return rpc_call_unary(p->admin, path, req, desc, 16 << 20, 10000, resp, st);
}

char *ca_proc_token(struct ca_proc *p, const char *node, int64_t ttl_s)
{
    Weft__Ca__V1__CreateTokenRequest req = WEFT__CA__V1__CREATE_TOKEN_REQUEST__INIT;
    req.node = (char *)node;
    req.ttl_seconds = ttl_s;
    Weft__Ca__V1__CreateTokenResponse *resp = NULL;
    struct rpc_status st;
    if (ca_proc_admin(p, "CreateToken", &req.base, &weft__ca__v1__create_token_response__descriptor,
                      (ProtobufCMessage **)&resp, &st) != WEFT_OK) {
        fprintf(stderr, "CreateToken: %s\n", st.details);
        return NULL;
    }
    char *t = strdup(resp->token);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return t;
}
