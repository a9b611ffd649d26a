/* test/testlib/ca_proc.h: a real weft-ca process for tests and benchmarks: started in a fresh
 * directory of its own (--self-signed, trust domain example.org, loopback only, no HTTP port),
 * ready once its admin socket answers, stopped by its PID. */
#ifndef WEFT_TEST_TESTLIB_CA_PROC_H
#define WEFT_TEST_TESTLIB_CA_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include <grpc/grpc.h>

#include "lib/base/err.h"
#include "lib/rpc/rpc.h"

#define CA_PROC_TD "example.org"
#define CA_PROC_BIN "ca/weft-ca" /* in the runfiles of a target with data = ["//ca:weft-ca"] */

struct ca_proc {
    char dir[64];    /* the data directory; its ca.log holds the CA's stderr */
    char sock[128];  /* the admin socket */
    char listen[64]; /* 127.0.0.1:PORT */
    pid_t pid;
    grpc_channel *admin;  /* to the admin socket, while the CA runs */
    const char *extra[8]; /* more flags for weft-ca, NULL-terminated ("--intermediate-ttl") */
};

/* ca_proc_init makes the directory and picks a free loopback port; call grpc_init first. */
WEFT_MUST_USE int ca_proc_init(struct ca_proc *p);

/* ca_proc_start runs weft-ca (again, for a restart) with the node TTL |node_ttl| ("1h"; NULL
 * for the default) and waits, at most 10 s, until its admin socket answers. WEFT_EIO when it
 * exits or never answers (its log is DIR/ca.log). */
WEFT_MUST_USE int ca_proc_start(struct ca_proc *p, const char *node_ttl);

/* ca_proc_stop sends |sig| and reaps the CA (SIGKILL for a crash). */
void ca_proc_stop(struct ca_proc *p, int sig);

/* ca_proc_reap waits for a CA that was killed from elsewhere; returns its wait status. */
int ca_proc_reap(struct ca_proc *p);

/* ca_proc_admin makes one call of the Admin service ("CreateToken", ...) on the running CA;
 * WEFT_OK with |*resp| (free it with protobuf_c_message_free_unpacked), else |st| says why. */
WEFT_MUST_USE int ca_proc_admin(struct ca_proc *p, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                                struct rpc_status *st);

/* ca_proc_token returns a join token for |node| valid |ttl_s| seconds (malloc'd), or NULL. */
char *ca_proc_token(struct ca_proc *p, const char *node, int64_t ttl_s);

/* ca_proc_cleanup stops the CA if it runs and removes the directory. */
void ca_proc_cleanup(struct ca_proc *p);

#endif
