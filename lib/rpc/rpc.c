/* lib/rpc/rpc.c: see rpc.h. */
#include "lib/rpc/rpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include "lib/base/log.h"
#include "lib/base/mem.h"
#include "lib/transport/grpcfd.h"

#define MAX_SERVERS 4
#define WAIT_LIMIT_S 10 /* the longest any teardown waits for gRPC */

/* struct tag is what every batch and call request carries: the function its completion goes
 * to, on the poll thread. */
struct tag {
    void (*done)(void *self, bool ok);
    void *self;
};

struct reg {
    struct srv *srv;
    const struct rpc_method *m; /* NULL: the catch-all for unregistered methods */
    void *handle;
};

struct srv {
    struct rpc_server *owner;
    grpc_server *gs;
    struct rpc_service svc;
    struct reg regs[RPC_MAX_METHODS + 1];
    size_t num_regs;
    struct tag shutdown_tag;
    bool shut_down;
};

struct rpc_server {
    grpc_completion_queue *cq;
    struct srv srvs[MAX_SERVERS];
    size_t num_srvs;
    size_t live; /* outstanding call requests, unary answers and streams */
    bool started, stopping;
};

/* struct incoming is one outstanding grpc_server_request_(registered_)call. */
struct incoming {
    struct tag tag;
    struct reg *reg;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
};

/* struct answer is a unary call's final batch. */
struct answer {
    struct tag tag;
    struct rpc_server *owner;
    grpc_call *call;
    grpc_byte_buffer *resp;
    grpc_slice details;
    int cancelled;
};

struct rpc_stream {
    struct rpc_server *owner;
    const struct rpc_method *m;
    void *arg;
    grpc_call *call;
    struct rpc_ctx ctx;
    char method[128];
    void *user;
    int refs; /* batches in flight */
    struct tag close_tag, recv_tag, send_tag, status_tag;
    int cancelled;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *sending, *pending;
    bool over;      /* the call is over (|closed| was called unless |refused|) */
    bool refused;   /* open() refused the call */
    bool finishing; /* rpc_stream_finish was called */
    bool status_sent;
    grpc_status_code fin_status;
    grpc_slice fin_details;
};

static gpr_timespec deadline_ms(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int rpc_fail(struct rpc_reply *r, grpc_status_code status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->details, sizeof(r->details), fmt, ap);
    va_end(ap);
    r->status = status;
    return (int)status;
}

/* pack_buffer serializes |m| into a new byte buffer. */
static grpc_byte_buffer *pack_buffer(const ProtobufCMessage *m)
{
    size_t len = m != NULL ? protobuf_c_message_get_packed_size(m) : 0;
    grpc_slice slice = grpc_slice_malloc(len);
    if (len > 0) {
        protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(slice));
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

/* flatten returns |bb|'s bytes as one slice (a reference the caller drops). */
static bool flatten(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        return false;
    }
    *out = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    return true;
}

/* --- server: answering unary calls -------------------------------------------------------- */

static void answer_done(void *self, bool ok)
{
    (void)ok; /* a client gone before its answer changes nothing here */
    struct answer *a = self;
    if (a->resp != NULL) {
        grpc_byte_buffer_destroy(a->resp);
    }
    grpc_slice_unref(a->details);
    grpc_call_unref(a->call);
    a->owner->live--;
    free(a);
}

/* answer ends |call| with |status| (and |msg| when OK); the call reference passes to it. */
static void answer(struct rpc_server *owner, grpc_call *call, grpc_status_code status,
                   const char *details, const ProtobufCMessage *msg)
{
    struct answer *a = weft_xcalloc(1, sizeof(*a));
    a->tag = (struct tag){answer_done, a};
    a->owner = owner;
    a->call = call;
    a->details = grpc_slice_from_copied_string(details);
    grpc_op ops[4] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA},
        {.op = GRPC_OP_RECV_CLOSE_ON_SERVER, .data.recv_close_on_server.cancelled = &a->cancelled},
        {.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
         .data.send_status_from_server = {.status = status, .status_details = &a->details}},
    };
    size_t n = 3;
    if (status == GRPC_STATUS_OK) {
        a->resp = pack_buffer(msg);
        ops[n++] = (grpc_op){.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = a->resp};
    }
    owner->live++;
    if (grpc_call_start_batch(call, ops, n, &a->tag, NULL) != GRPC_CALL_OK) {
        weft_log(WEFT_LOG_ERROR, "rpc: gRPC refused an answer batch", 0);
        answer_done(a, false);
    }
}

/* --- server: streams --------------------------------------------------------------------- */

static void stream_maybe_free(struct rpc_stream *s)
{
    if (s->refs > 0 || !s->over) {
        return;
    }
    if (s->recv_buf != NULL) {
        grpc_byte_buffer_destroy(s->recv_buf);
    }
    if (s->sending != NULL) {
        grpc_byte_buffer_destroy(s->sending);
    }
    if (s->pending != NULL) {
        grpc_byte_buffer_destroy(s->pending);
    }
    grpc_slice_unref(s->fin_details);
    grpc_call_unref(s->call);
    s->owner->live--;
    free(s);
}

static bool stream_batch(struct rpc_stream *s, const grpc_op *ops, size_t n, struct tag *t)
{
    if (grpc_call_start_batch(s->call, ops, n, t, NULL) != GRPC_CALL_OK) {
        weft_log(WEFT_LOG_ERROR, "rpc: gRPC refused a stream batch", 1, "method", s->method);
        grpc_call_cancel(s->call, NULL); /* the close batch then ends the stream */
        return false;
    }
    s->refs++;
    return true;
}

static void stream_send_status(struct rpc_stream *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
                  .data.send_status_from_server = {.status = s->fin_status,
                                                   .status_details = &s->fin_details}};
    s->status_sent = true;
    (void)stream_batch(s, &op, 1, &s->status_tag);
}

static void stream_start_send(struct rpc_stream *s, grpc_byte_buffer *bb)
{
    s->sending = bb;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = bb};
    (void)stream_batch(s, &op, 1, &s->send_tag);
}

static void stream_recv(struct rpc_stream *s)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &s->recv_buf};
    (void)stream_batch(s, &op, 1, &s->recv_tag);
}

static void stream_closed(void *self, bool ok)
{
    (void)ok;
    struct rpc_stream *s = self;
    s->refs--;
    if (!s->over) {
        s->over = true;
        if (!s->refused) {
            s->m->closed(s->arg, s);
        }
    }
    stream_maybe_free(s);
}

static void stream_received(void *self, bool ok)
{
    struct rpc_stream *s = self;
    s->refs--;
    grpc_byte_buffer *bb = s->recv_buf;
    s->recv_buf = NULL;
    if (ok && bb != NULL && !s->over && !s->finishing) {
        size_t max = s->m->max_request != 0 ? s->m->max_request : RPC_DEFAULT_MAX_REQUEST;
        grpc_slice all;
        if (grpc_byte_buffer_length(bb) > max) {
            char why[RPC_DETAILS_LEN];
            snprintf(why, sizeof(why), "message of %zu bytes is over the limit of %zu",
                     grpc_byte_buffer_length(bb), max);
            rpc_stream_finish(s, GRPC_STATUS_RESOURCE_EXHAUSTED, why);
        } else if (flatten(bb, &all)) {
            s->m->message(s->arg, s, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
            grpc_slice_unref(all);
            if (!s->over && !s->finishing) {
                stream_recv(s);
            }
        }
    }
    if (bb != NULL) {
        grpc_byte_buffer_destroy(bb);
    }
    stream_maybe_free(s);
}

static void stream_sent(void *self, bool ok)
{
    struct rpc_stream *s = self;
    s->refs--;
    grpc_byte_buffer_destroy(s->sending);
    s->sending = NULL;
    if (ok && s->pending != NULL && !s->over) {
        grpc_byte_buffer *next = s->pending;
        s->pending = NULL;
        stream_start_send(s, next);
    } else if (ok && s->finishing && !s->status_sent && !s->over) {
        stream_send_status(s);
    }
    stream_maybe_free(s);
}

static void stream_status_sent(void *self, bool ok)
{
    (void)ok;
    struct rpc_stream *s = self;
    s->refs--;
    stream_maybe_free(s);
}

int rpc_stream_send(struct rpc_stream *s, const ProtobufCMessage *m)
{
    ENSURE(!s->over && !s->finishing, WEFT_EIO);
    grpc_byte_buffer *bb = pack_buffer(m);
    if (s->sending == NULL) {
        stream_start_send(s, bb);
    } else {
        if (s->pending != NULL) {
            grpc_byte_buffer_destroy(s->pending);
        }
        s->pending = bb;
    }
    return WEFT_OK;
}

void rpc_stream_finish(struct rpc_stream *s, grpc_status_code status, const char *details)
{
    if (s->over || s->finishing) {
        return;
    }
    s->finishing = true;
    s->fin_status = status;
    grpc_slice_unref(s->fin_details);
    s->fin_details = grpc_slice_from_copied_string(details != NULL ? details : "");
    if (s->sending == NULL) {
        stream_send_status(s);
    }
}

void rpc_stream_set_user(struct rpc_stream *s, void *user) { s->user = user; }
void *rpc_stream_user(const struct rpc_stream *s) { return s->user; }
const struct rpc_ctx *rpc_stream_ctx(const struct rpc_stream *s) { return &s->ctx; }

/* stream_open takes over |call| for a stream method. */
static void stream_open(struct reg *reg, grpc_call *call, const struct rpc_ctx *ctx)
{
    struct rpc_stream *s = weft_xcalloc(1, sizeof(*s));
    s->owner = reg->srv->owner;
    s->m = reg->m;
    s->arg = reg->srv->svc.arg;
    s->call = call;
    s->ctx = *ctx;
    snprintf(s->method, sizeof(s->method), "%s", reg->m->path);
    s->ctx.method = s->method;
    s->close_tag = (struct tag){stream_closed, s};
    s->recv_tag = (struct tag){stream_received, s};
    s->send_tag = (struct tag){stream_sent, s};
    s->status_tag = (struct tag){stream_status_sent, s};
    s->fin_details = grpc_empty_slice();
    s->owner->live++;

    /* Initial metadata goes first, so that open() may send at once. */
    grpc_op close_op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER,
                        .data.recv_close_on_server.cancelled = &s->cancelled};
    grpc_op first[] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA},
        {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &s->recv_buf},
    };
    if (!stream_batch(s, &close_op, 1, &s->close_tag)) {
        s->over = true; /* no close will come, and open() was never called */
        stream_maybe_free(s);
        return;
    }
    (void)stream_batch(s, first, nitems(first), &s->recv_tag);

    char details[RPC_DETAILS_LEN] = "";
    grpc_status_code st = reg->m->open(s->arg, &s->ctx, s, details);
    s->ctx.metadata = NULL; /* the request's metadata goes with the incoming call */
    if (st != GRPC_STATUS_OK) {
        s->refused = true; /* |closed| is not called for a call open() refused */
        rpc_stream_finish(s, st, details);
    }
}

/* --- server: dispatching calls ------------------------------------------------------------ */

static void request_call(struct reg *reg);

static void incoming_free(struct incoming *in)
{
    grpc_metadata_array_destroy(&in->md);
    grpc_call_details_destroy(&in->details);
    if (in->payload != NULL) {
        grpc_byte_buffer_destroy(in->payload);
    }
    in->reg->srv->owner->live--;
    free(in);
}

static void serve_unary(struct reg *reg, grpc_call *call, const struct rpc_ctx *ctx,
                        grpc_byte_buffer *payload)
{
    const struct rpc_method *m = reg->m;
    size_t max = m->max_request != 0 ? m->max_request : RPC_DEFAULT_MAX_REQUEST;
    struct rpc_reply reply = {.status = GRPC_STATUS_OK};
    grpc_slice all = grpc_empty_slice();
    if (payload == NULL) {
        rpc_fail(&reply, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
    } else if (grpc_byte_buffer_length(payload) > max) {
        rpc_fail(&reply, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "request of %zu bytes is over the limit of %zu", grpc_byte_buffer_length(payload),
                 max);
    } else if (!flatten(payload, &all)) {
        rpc_fail(&reply, GRPC_STATUS_INTERNAL, "cannot read the request");
    } else {
        m->unary(reg->srv->svc.arg, ctx, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), &reply);
    }
    answer(reg->srv->owner, call, reply.status, reply.details, reply.msg);
    grpc_slice_unref(all);
}

static void incoming_done(void *self, bool ok)
{
    struct incoming *in = self;
    struct reg *reg = in->reg;
    struct rpc_server *owner = reg->srv->owner;
    if (!ok) { /* the server is shutting down */
        incoming_free(in);
        return;
    }
    if (!owner->stopping) {
        request_call(reg); /* the next caller of this method */
    }
    grpc_call *call = in->call;
    if (reg->m == NULL) {
        char *method = grpc_slice_to_c_string(in->details.method);
        char why[RPC_DETAILS_LEN];
        snprintf(why, sizeof(why), "no method %.200s here", method);
        gpr_free(method);
        answer(owner, call, GRPC_STATUS_UNIMPLEMENTED, why, NULL);
        incoming_free(in);
        return;
    }
    struct rpc_ctx ctx = {.method = reg->m->path, .metadata = &in->md};
    if (reg->srv->svc.tls_peers) {
        ctx.has_peer = grpcfd_call_peer(call, &ctx.peer) == WEFT_OK;
        if (!ctx.has_peer) {
            answer(owner, call, GRPC_STATUS_UNAUTHENTICATED, "no verified TLS peer", NULL);
            incoming_free(in);
            return;
        }
    }
    if (reg->m->kind == RPC_UNARY) {
        serve_unary(reg, call, &ctx, in->payload);
    } else {
        stream_open(reg, call, &ctx);
    }
    incoming_free(in);
}

bool rpc_ctx_header(const struct rpc_ctx *ctx, const char *key, const char *value)
{
    if (ctx->metadata == NULL) {
        return false;
    }
    size_t vl = strlen(value);
    for (size_t i = 0; i < ctx->metadata->count; i++) {
        const grpc_metadata *m = &ctx->metadata->metadata[i];
        if (grpc_slice_str_cmp(m->key, key) == 0 && GRPC_SLICE_LENGTH(m->value) == vl &&
            memcmp(GRPC_SLICE_START_PTR(m->value), value, vl) == 0) {
            return true;
        }
    }
    return false;
}

static void request_call(struct reg *reg)
{
    struct rpc_server *owner = reg->srv->owner;
    struct incoming *in = weft_xcalloc(1, sizeof(*in));
    in->tag = (struct tag){incoming_done, in};
    in->reg = reg;
    grpc_metadata_array_init(&in->md);
    grpc_call_details_init(&in->details);
    owner->live++;
    grpc_call_error e;
    if (reg->m == NULL) {
        e = grpc_server_request_call(reg->srv->gs, &in->call, &in->details, &in->md, owner->cq,
                                     owner->cq, &in->tag);
    } else {
        e = grpc_server_request_registered_call(
            reg->srv->gs, reg->handle, &in->call, &in->deadline, &in->md,
            reg->m->kind == RPC_UNARY ? &in->payload : NULL, owner->cq, owner->cq, &in->tag);
    }
    if (e != GRPC_CALL_OK) {
        weft_log(WEFT_LOG_ERROR, "rpc: gRPC refused a call request", 1, "method",
                 reg->m != NULL ? reg->m->path : "(unregistered)");
        incoming_free(in);
    }
}

struct rpc_server *rpc_server_new(void)
{
    struct rpc_server *s = weft_xcalloc(1, sizeof(*s));
    s->cq = grpc_completion_queue_create_for_next(NULL);
    return s;
}

int rpc_server_add(struct rpc_server *s, grpc_server *gs, const struct rpc_service *svc)
{
    ENSURE(s->num_srvs < MAX_SERVERS && svc->num_methods <= RPC_MAX_METHODS, WEFT_ELIMIT);
    ENSURE(!s->started, WEFT_EINVAL);
    struct srv *srv = &s->srvs[s->num_srvs++];
    srv->owner = s;
    srv->gs = gs;
    srv->svc = *svc;
    grpc_server_register_completion_queue(gs, s->cq, NULL);
    for (size_t i = 0; i < svc->num_methods; i++) {
        const struct rpc_method *m = &svc->methods[i];
        srv->regs[i] = (struct reg){
            .srv = srv,
            .m = m,
            .handle = grpc_server_register_method(gs, m->path, NULL,
                                                  m->kind == RPC_UNARY
                                                      ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                                                      : GRPC_SRM_PAYLOAD_NONE,
                                                  0),
        };
        ENSURE(srv->regs[i].handle != NULL, WEFT_EINVAL);
    }
    srv->regs[svc->num_methods] = (struct reg){.srv = srv}; /* the catch-all */
    srv->num_regs = svc->num_methods + 1;
    return WEFT_OK;
}

static void shutdown_done(void *self, bool ok)
{
    (void)ok;
    struct srv *srv = self;
    srv->shut_down = true;
}

int rpc_server_start(struct rpc_server *s)
{
    ENSURE(!s->started, WEFT_EINVAL);
    s->started = true;
    for (size_t i = 0; i < s->num_srvs; i++) {
        grpc_server_start(s->srvs[i].gs);
        for (size_t j = 0; j < s->srvs[i].num_regs; j++) {
            request_call(&s->srvs[i].regs[j]);
        }
    }
    return WEFT_OK;
}

void rpc_server_poll(struct rpc_server *s, int timeout_ms)
{
    gpr_timespec until = deadline_ms(timeout_ms);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, until, NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            return;
        }
        struct tag *t = ev.tag;
        t->done(t->self, ev.success != 0);
        until = gpr_inf_past(GPR_CLOCK_MONOTONIC); /* then only what is already there */
    }
}

void rpc_server_free(struct rpc_server *s)
{
    if (s == NULL) {
        return;
    }
    s->stopping = true;
    for (size_t i = 0; i < s->num_srvs; i++) {
        struct srv *srv = &s->srvs[i];
        srv->shutdown_tag = (struct tag){shutdown_done, srv};
        if (s->started) {
            grpc_server_shutdown_and_notify(srv->gs, s->cq, &srv->shutdown_tag);
            grpc_server_cancel_all_calls(srv->gs);
        } else {
            srv->shut_down = true;
        }
    }
    gpr_timespec limit = deadline_ms(WAIT_LIMIT_S * 1000);
    for (;;) {
        bool all_down = true;
        for (size_t i = 0; i < s->num_srvs; i++) {
            all_down = all_down && s->srvs[i].shut_down;
        }
        if (all_down && s->live == 0) {
            break;
        }
        grpc_event ev = grpc_completion_queue_next(s->cq, limit, NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            weft_log(WEFT_LOG_ERROR, "rpc: calls still alive at shutdown", 0);
            break;
        }
        struct tag *t = ev.tag;
        t->done(t->self, ev.success != 0);
    }
    for (size_t i = 0; i < s->num_srvs; i++) {
        grpc_server_destroy(s->srvs[i].gs);
    }
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, limit, NULL).type == GRPC_OP_COMPLETE) {
    }
    grpc_completion_queue_destroy(s->cq);
    free(s);
}

/* --- clients -------------------------------------------------------------------------------- */

/* run_batch starts |ops| and plucks their completion within |timeout_ms|; a batch that does
 * not end in time has its call cancelled and is waited for again, so nothing refers to it
 * after. */
static bool run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n,
                      void *tag, int timeout_ms)
{
    if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK) {
        return false;
    }
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, deadline_ms(timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        grpc_call_cancel(call, NULL);
        ev = grpc_completion_queue_pluck(cq, tag, deadline_ms(WAIT_LIMIT_S * 1000), NULL);
        return false;
    }
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void set_status(struct rpc_status *st, grpc_status_code code, grpc_slice details)
{
    st->code = code;
    snprintf(st->details, sizeof(st->details), "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
}

/* unpack_buffer unpacks |bb| (at most |max| bytes) as |desc|; NULL when it does not. */
static ProtobufCMessage *unpack_buffer(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                                       size_t max)
{
    grpc_slice all;
    if (bb == NULL || grpc_byte_buffer_length(bb) > max || !flatten(bb, &all)) {
        return NULL;
    }
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return m;
}

static void cq_free(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
}

int rpc_call_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, size_t max_response, int timeout_ms,
                   ProtobufCMessage **resp, struct rpc_status *st)
{
    *resp = NULL;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice path = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL,
                                               deadline_ms(timeout_ms), NULL);
    grpc_slice_unref(path);
    grpc_byte_buffer *request = pack_buffer(req), *reply = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA},
        {.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = request},
        {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT},
        {.op = GRPC_OP_RECV_INITIAL_METADATA,
         .data.recv_initial_metadata.recv_initial_metadata = &initial},
        {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &reply},
        {.op = GRPC_OP_RECV_STATUS_ON_CLIENT,
         .data.recv_status_on_client = {.trailing_metadata = &trailing,
                                        .status = &code,
                                        .status_details = &details}},
    };
    int tag;
    bool ok = run_batch(call, cq, ops, nitems(ops), &tag, timeout_ms + 1000);
    set_status(st, code, details);
    if (!ok && code == GRPC_STATUS_OK) { /* never report success for a batch that failed */
        set_status(st, GRPC_STATUS_UNAVAILABLE, grpc_slice_from_static_string("call failed"));
    }
    int rc = WEFT_EIO;
    if (ok && code == GRPC_STATUS_OK) {
        *resp = unpack_buffer(reply, resp_desc, max_response);
        if (*resp == NULL) {
            set_status(st, GRPC_STATUS_INTERNAL,
                       grpc_slice_from_static_string("the response does not unpack"));
        } else {
            rc = WEFT_OK;
        }
    }
    if (reply != NULL) {
        grpc_byte_buffer_destroy(reply);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_byte_buffer_destroy(request);
    grpc_call_unref(call);
    cq_free(cq);
    return rc;
}

struct rpc_client_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array initial, trailing;
    grpc_status_code code;
    grpc_slice details;
    grpc_byte_buffer *recv_buf;
    bool recv_pending, got_initial, status_done, dead, send_failed;
    int recv_tag, send_tag, status_tag;
};

struct rpc_client_stream *rpc_client_stream_open(grpc_channel *ch, const char *method,
                                                 int64_t deadline)
{
    return rpc_client_stream_open_md(ch, method, deadline, NULL, 0);
}

struct rpc_client_stream *rpc_client_stream_open_md(grpc_channel *ch, const char *method,
                                                    int64_t deadline, const grpc_metadata *md,
                                                    size_t num_md)
{
    struct rpc_client_stream *cs = weft_xcalloc(1, sizeof(*cs));
    cs->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice path = grpc_slice_from_copied_string(method);
    cs->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cs->cq, path, NULL,
                                        deadline_ms(deadline), NULL);
    grpc_slice_unref(path);
    grpc_metadata_array_init(&cs->initial);
    grpc_metadata_array_init(&cs->trailing);
    cs->details = grpc_empty_slice();
    cs->code = GRPC_STATUS_UNKNOWN;
    grpc_op status_op = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT,
                         .data.recv_status_on_client = {.trailing_metadata = &cs->trailing,
                                                        .status = &cs->code,
                                                        .status_details = &cs->details}};
    grpc_op init_op = {
        .op = GRPC_OP_SEND_INITIAL_METADATA,
        .data.send_initial_metadata = {.count = num_md, .metadata = (grpc_metadata *)md}};
    if (cs->call == NULL ||
        grpc_call_start_batch(cs->call, &status_op, 1, &cs->status_tag, NULL) != GRPC_CALL_OK) {
        if (cs->call != NULL) {
            grpc_call_unref(cs->call);
        }
        grpc_metadata_array_destroy(&cs->initial);
        grpc_metadata_array_destroy(&cs->trailing);
        cq_free(cs->cq);
        free(cs);
        return NULL;
    }
    if (!run_batch(cs->call, cs->cq, &init_op, 1, &cs->send_tag, WAIT_LIMIT_S * 1000)) {
        cs->dead = true;
    }
    return cs;
}

int rpc_client_stream_send(struct rpc_client_stream *cs, const ProtobufCMessage *m, int timeout_ms)
{
    ENSURE(!cs->dead && !cs->send_failed, WEFT_EIO);
    grpc_byte_buffer *bb = pack_buffer(m);
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = bb};
    bool ok = run_batch(cs->call, cs->cq, &op, 1, &cs->send_tag, timeout_ms);
    grpc_byte_buffer_destroy(bb);
    if (!ok) {
        /* The server may have ended the call already. Receiving still works, and must run:
         * gRPC delivers the status only once the initial metadata has been read. */
        cs->send_failed = true;
        return WEFT_EIO;
    }
    return WEFT_OK;
}

int rpc_client_stream_recv(struct rpc_client_stream *cs, const ProtobufCMessageDescriptor *desc,
                           size_t max_len, int timeout_ms, ProtobufCMessage **out)
{
    *out = NULL;
    if (!cs->recv_pending) {
        ENSURE(!cs->dead, WEFT_EIO);
        grpc_op ops[2] = {
            {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &cs->recv_buf},
            {.op = GRPC_OP_RECV_INITIAL_METADATA,
             .data.recv_initial_metadata.recv_initial_metadata = &cs->initial},
        };
        size_t n = cs->got_initial ? 1 : 2;
        if (grpc_call_start_batch(cs->call, ops, n, &cs->recv_tag, NULL) != GRPC_CALL_OK) {
            cs->dead = true;
            return WEFT_EIO;
        }
        cs->got_initial = true;
        cs->recv_pending = true;
    }
    grpc_event ev =
        grpc_completion_queue_pluck(cs->cq, &cs->recv_tag, deadline_ms(timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        return WEFT_EAGAIN;
    }
    cs->recv_pending = false;
    grpc_byte_buffer *bb = cs->recv_buf;
    cs->recv_buf = NULL;
    if (ev.type != GRPC_OP_COMPLETE || !ev.success || bb == NULL) {
        if (bb != NULL) {
            grpc_byte_buffer_destroy(bb);
        }
        cs->dead = true;
        return WEFT_EIO;
    }
    *out = unpack_buffer(bb, desc, max_len);
    grpc_byte_buffer_destroy(bb);
    return *out != NULL ? WEFT_OK : WEFT_EPROTO;
}

void rpc_client_stream_status(struct rpc_client_stream *cs, int timeout_ms, struct rpc_status *st)
{
    if (!cs->status_done) {
        grpc_event ev =
            grpc_completion_queue_pluck(cs->cq, &cs->status_tag, deadline_ms(timeout_ms), NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            set_status(st, GRPC_STATUS_DEADLINE_EXCEEDED,
                       grpc_slice_from_static_string("no status yet"));
            return;
        }
        cs->status_done = true;
        cs->dead = true;
    }
    set_status(st, cs->code, cs->details);
}

void rpc_client_stream_close(struct rpc_client_stream *cs)
{
    if (cs == NULL) {
        return;
    }
    if (!cs->status_done) {
        grpc_call_cancel(cs->call, NULL);
        (void)grpc_completion_queue_pluck(cs->cq, &cs->status_tag, deadline_ms(WAIT_LIMIT_S * 1000),
                                          NULL);
    }
    if (cs->recv_pending) {
        (void)grpc_completion_queue_pluck(cs->cq, &cs->recv_tag, deadline_ms(WAIT_LIMIT_S * 1000),
                                          NULL);
    }
    if (cs->recv_buf != NULL) {
        grpc_byte_buffer_destroy(cs->recv_buf);
    }
    grpc_slice_unref(cs->details);
    grpc_metadata_array_destroy(&cs->initial);
    grpc_metadata_array_destroy(&cs->trailing);
    grpc_call_unref(cs->call);
    cq_free(cs->cq);
    free(cs);
}

grpc_channel *rpc_channel_unix(const char *path)
{
    char target[4096 + 8];
    snprintf(target, sizeof(target), "unix:%s", path);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    return ch;
}
