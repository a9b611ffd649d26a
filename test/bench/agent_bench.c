/* agent_bench: the Workload API of a real weft-agent (issue 5), joined to a real weft-ca, both on
 * this host; this process is the workload (the entry names its uid).
 *
 * 1. Fetches per second. One fetch is a whole FetchX509SVID (or FetchX509Bundles) round: open
 *    the stream with "workload.spiffe.io: true", send the empty request, receive the first
 *    snapshot (unpacked, not verified), cancel. On the agent that is the header check, the
 *    per-call unix attestation (getpwuid_r, getgrgid_r, readlink /proc/PID/exe, the mount
 *    namespace and /proc/PID/stat again), copying and packing the snapshot (key, chain,
 *    bundle) and its digest, all on the agent's one Workload API thread. With a reused
 *    channel the connection is made once; with a fresh channel per fetch (a new workload, the
 *    worst case) every fetch also pays connect, the HTTP/2 handshake and the acceptor's
 *    per-connection SO_PEERCRED, /proc/PID/stat and /proc/PID/status reads. The baseline,
 *    same shape on the same socket and channel kind: FetchX509SVID without the header,
 *    answered INVALID_ARGUMENT before any attestation or SVID work; the ratio shows what
 *    attestation + snapshot cost over bare gRPC on the socket. 1 client, then 4 at once (a
 *    thread and a channel each; the agent serves them all on its one thread). A figure and
 *    its baseline are measured in turns, ROUNDS times, each turn bounded by
 *    BENCH_MAX_SECONDS / ROUNDS and BENCH_MAX_OPS fetches, so that other load on the host
 *    moves both alike.
 *
 * 2. From issuance to the SVID on the stream. With a FetchX509SVID stream open, t0 is just
 *    before an Admin CreateEntry for a new SPIFFE ID for our uid on the agent's node; t1 is
 *    when the stream's snapshot holds it. In between: CreateEntry (a row written with
 *    synchronous=FULL) -> the CA's poll loop pushes the node's new snapshot on WatchNode at
 *    once -> the agent's CA thread takes it; one new entry is due at once (agent/svids.c
 *    spreads new entries at 20 a second over a window of fresh / 20 s, at most
 *    AGENT_START_SPREAD_S = 10 s: that matters when 20 or more arrive in one snapshot, as at
 *    a start; for one entry the window is 0 and the spread adds nothing) -> a P-256 key and
 *    CSR -> MintWorkloadSVIDs over TLS -> the CA thread marks the set "changed" -> the
 *    Workload API thread sees the mark only between two rpc_server_poll(200 ms) calls
 *    (agent/daemon.c; nothing wakes it), so this step waits 0..200 ms -> the new snapshot
 *    is pushed on the stream. That poll restarts right after each push, so back-to-back
 *    trials would all land at its worst phase (~200 ms each); each trial first pauses a
 *    pseudo-random 0..ISSUE_PAUSE_MS, whole periods, so t0 is a random moment; the spread
 *    between min and max is that poll. A second run of trials has another client call the
 *    agent in a loop meanwhile (the no-header call): each call wakes the Workload API
 *    thread, so the wait all but vanishes and what is left is the path's own work (with the
 *    load's CPU). The baseline is the CA's part alone: a MintWorkloadSVIDs round trip of one
 *    CSR from a node of our own, over TLS as the agent makes it (ca_rpc_bench's path).
 *    ISSUE_TRIALS trials, each with a fresh SPIFFE ID, each waiting at most ISSUE_WAIT_S.
 *
 * Only loopback TCP and unix sockets; the agent and the CA are stopped by their PIDs at exit,
 * also on failure (atexit) and when this process is killed or crashes (a signal handler).
 * Figures, never a verdict.
 *
 *   bazel run -c opt //test/bench:agent_bench */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/mem.h>

#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"
#include "proto/workload.pb-c.h"
#include "test/bench/bench.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"

#define PROG "agent_bench"
#define T_MS 10000
#define MAX_SNAPSHOT (16 << 20)
#define MAX_CLIENTS 4
#define ROUNDS 3 /* a fetch figure and its baseline are measured in turns, this many times */
#define ISSUE_TRIALS 20
#define ISSUE_WAIT_S 10.0
#define ISSUE_PAUSE_MS 1000 /* before each trial: uniform in [0, this) */
#define MINT_NODE "bench-mint-node"
#define SVID_PATH "/SpiffeWorkloadAPI/FetchX509SVID"
#define BUNDLES_PATH "/SpiffeWorkloadAPI/FetchX509Bundles"

static struct ca_proc ca;
static struct agent_proc agent;

/* die shows the end of the agent's and the CA's logs (their directory goes at exit), then
 * exits through bench_die. */
static void die(const char *what, const char *err) __attribute__((noreturn));

/* stop_all stops the agent, then the CA (whose directory holds the agent's files), by their
 * PIDs; it runs at exit, also after die. */
static void stop_all(void)
{
    agent_proc_stop(&agent);
    ca_proc_cleanup(&ca);
}

static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGSEGV,
                                    SIGBUS, SIGFPE,  SIGILL, SIGABRT};
static struct sigaction old_actions[sizeof(fatal_signals) / sizeof(fatal_signals[0])];

/* on_fatal stops the agent and the CA by their PIDs when this process is killed or crashes,
 * where atexit does not run (their directory stays); then the signal takes its course, a
 * sanitizer's handler first if there was one. Async-signal-safe calls only. */
static void on_fatal(int sig, siginfo_t *info, void *uctx)
{
    if (agent.pid > 0) {
        kill(agent.pid, SIGTERM);
    }
    if (ca.pid > 0) {
        kill(ca.pid, SIGTERM);
    }
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
        const struct sigaction *old = &old_actions[i];
        if (fatal_signals[i] != sig) {
            continue;
        }
        if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction != NULL) {
            old->sa_sigaction(sig, info, uctx);
        } else if (!(old->sa_flags & SA_SIGINFO) && old->sa_handler != SIG_DFL &&
                   old->sa_handler != SIG_IGN) {
            old->sa_handler(sig);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_fatal(void)
{
    struct sigaction sa = {.sa_sigaction = on_fatal, .sa_flags = SA_SIGINFO | SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
        sigaction(fatal_signals[i], &sa, &old_actions[i]);
    }
}

static void show_log(const char *path)
{
    uint8_t *text;
    size_t len;
    if (weft_file_read(&text, &len, path, 1 << 24) != WEFT_OK) {
        return;
    }
    size_t from = len > 3000 ? len - 3000 : 0;
    fprintf(stderr, "--- the end of %s:\n%.*s\n", path, (int)(len - from), (char *)text + from);
    free(text);
}

static void die(const char *what, const char *err)
{
    char ca_log[128];
    snprintf(ca_log, sizeof(ca_log), "%s/ca.log", ca.dir);
    show_log(ca_log);
    show_log(agent.log);
    bench_die(PROG, what, err);
}

/* --- one fetch ------------------------------------------------------------------------------ */

enum call {
    CALL_SVID,      /* FetchX509SVID: the first snapshot */
    CALL_BUNDLES,   /* FetchX509Bundles: the first snapshot */
    CALL_NO_HEADER, /* FetchX509SVID without the header: INVALID_ARGUMENT (the baseline) */
};

/* fetch_once makes one round of |c| on |ch| and cancels the stream; whether it ended as it
 * should (a snapshot with something in it, or INVALID_ARGUMENT for the baseline). */
static bool fetch_once(grpc_channel *ch, enum call c)
{
    grpc_metadata md = {.key = grpc_slice_from_static_string("workload.spiffe.io"),
                        .value = grpc_slice_from_static_string("true")};
    struct rpc_client_stream *cs = rpc_client_stream_open_md(
        ch, c == CALL_BUNDLES ? BUNDLES_PATH : SVID_PATH, T_MS, &md, c == CALL_NO_HEADER ? 0 : 1);
    if (cs == NULL) {
        return false;
    }
    X509SVIDRequest sreq = X509_SVIDREQUEST__INIT;
    X509BundlesRequest breq = X509_BUNDLES_REQUEST__INIT;
    if (rpc_client_stream_send(cs, c == CALL_BUNDLES ? &breq.base : &sreq.base, T_MS) != WEFT_OK) {
        /* refused at once (the baseline): the status is read below */
    }
    ProtobufCMessage *m = NULL;
    int rc = rpc_client_stream_recv(
        cs, c == CALL_BUNDLES ? &x509_bundles_response__descriptor : &x509_svidresponse__descriptor,
        MAX_SNAPSHOT, T_MS, &m);
    bool ok;
    if (c == CALL_NO_HEADER) {
        struct rpc_status st;
        rpc_client_stream_status(cs, T_MS, &st);
        ok = rc == WEFT_EIO && st.code == GRPC_STATUS_INVALID_ARGUMENT;
    } else if (c == CALL_BUNDLES) {
        ok = rc == WEFT_OK && ((X509BundlesResponse *)m)->n_bundles > 0;
    } else {
        ok = rc == WEFT_OK && ((X509SVIDResponse *)m)->n_svids > 0;
    }
    if (m != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
    }
    rpc_client_stream_close(cs);
    return ok;
}

/* channel_new makes a channel to the agent's socket that shares no connection with any other
 * (a local subchannel pool), so a fresh channel is a fresh connection. */
static grpc_channel *channel_new(void)
{
    char target[200];
    snprintf(target, sizeof(target), "unix:%s", agent.sock);
    grpc_arg arg = {
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1};
    grpc_channel_args args = {1, &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &args);
    grpc_channel_credentials_release(creds);
    return ch;
}

/* --- fetches per second --------------------------------------------------------------------- */

struct client {
    pthread_t thread;
    enum call call;
    bool fresh;              /* a new channel (a new connection) for every fetch */
    long max_ops;            /* this client's share of BENCH_MAX_OPS */
    double max_s;            /* its time bound */
    const atomic_bool *stop; /* NULL, or ends the loop early once set */
    atomic_long n;           /* fetches done (read by others while it runs) */
    double elapsed;          /* seconds */
    bool failed;
};

static void *client_run(void *arg)
{
    struct client *c = arg;
    grpc_channel *ch = c->fresh ? NULL : channel_new();
    double start = bench_now_s();
    while (c->n < c->max_ops && c->elapsed < c->max_s &&
           (c->stop == NULL || !atomic_load(c->stop))) {
        if (c->fresh) {
            ch = channel_new();
        }
        if (!fetch_once(ch, c->call)) {
            c->failed = true;
            break;
        }
        if (c->fresh) {
            grpc_channel_destroy(ch);
            ch = NULL;
        }
        c->n++;
        c->elapsed = bench_now_s() - start;
    }
    if (ch != NULL) {
        grpc_channel_destroy(ch);
    }
    return NULL;
}

/* run_clients runs |num_clients| clients of |call| at once for at most |max_s| and
 * BENCH_MAX_OPS fetches in all; adds the fetches to |*n| and the time to |*elapsed|. */
static void run_clients(enum call call, bool fresh, int num_clients, double max_s, long *n,
                        double *elapsed)
{
    struct client cl[MAX_CLIENTS];
    for (int i = 0; i < num_clients; i++) {
        cl[i] = (struct client){
            .call = call, .fresh = fresh, .max_ops = BENCH_MAX_OPS / num_clients, .max_s = max_s};
        if (pthread_create(&cl[i].thread, NULL, client_run, &cl[i]) != 0) {
            die("client", "cannot start a thread");
        }
    }
    long done = 0;
    double took = 0;
    bool failed = false;
    for (int i = 0; i < num_clients; i++) {
        pthread_join(cl[i].thread, NULL);
        done += cl[i].n;
        took = cl[i].elapsed > took ? cl[i].elapsed : took;
        failed |= cl[i].failed;
    }
    if (failed || done == 0) {
        die("fetch", call == CALL_NO_HEADER ? "not INVALID_ARGUMENT" : "no snapshot");
    }
    *n += done;
    *elapsed += took;
}

/* fetch_rates measures |call| and its baseline (the same without the header) in turns,
 * ROUNDS times BENCH_MAX_SECONDS / ROUNDS each, so that a change in the machine's load (other
 * builds on a shared host) moves both; fetches per second of each. */
static void fetch_rates(enum call call, bool fresh, int num_clients, double *out_rate,
                        double *out_base)
{
    long n = 0, base_n = 0;
    double t = 0, base_t = 0;
    for (int r = 0; r < ROUNDS; r++) {
        run_clients(CALL_NO_HEADER, fresh, num_clients, BENCH_MAX_SECONDS / ROUNDS, &base_n,
                    &base_t);
        run_clients(call, fresh, num_clients, BENCH_MAX_SECONDS / ROUNDS, &n, &t);
    }
    *out_rate = (double)n / t;
    *out_base = (double)base_n / base_t;
}

/* --- latencies ------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median sorts |v| and returns its median. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static ProtobufCMessage *must_admin(const char *method, const ProtobufCMessage *req,
                                    const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *resp = NULL;
    struct rpc_status st;
    if (ca_proc_admin(&ca, method, req, desc, &resp, &st) != WEFT_OK) {
        die(method, st.details);
    }
    return resp;
}

/* entry_new creates an entry for |spiffe_id| on |node| for our uid; returns its ID (malloc'd).
 * (agent_proc_entry does this for the agent's node; this one is for the mint baseline's.) */
static char *entry_new(const char *spiffe_id, const char *node)
{
    char sel[32];
    snprintf(sel, sizeof(sel), "unix:uid:%u", (unsigned)geteuid());
    char *selp = sel;
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    e.spiffe_id = (char *)spiffe_id;
    e.node = (char *)node;
    e.selectors = &selp;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    Weft__Ca__V1__CreateEntryResponse *resp = (Weft__Ca__V1__CreateEntryResponse *)must_admin(
        "CreateEntry", &req.base, &weft__ca__v1__create_entry_response__descriptor);
    char *id = strdup(resp->entry->id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return id;
}

static bool holds(const X509SVIDResponse *r, const char *spiffe_id)
{
    for (size_t i = 0; i < r->n_svids; i++) {
        if (strcmp(r->svids[i]->spiffe_id, spiffe_id) == 0) {
            return true;
        }
    }
    return false;
}

/* issue_latency fills |out_total| (issuance to the SVID on the stream) and |out_admin| (the
 * CreateEntry round trip within it) for ISSUE_TRIALS new entries, in seconds. With |busy|,
 * another client calls the agent in a loop meanwhile, so its Workload API thread never waits
 * out a whole poll. */
static void issue_latency(double out_total[ISSUE_TRIALS], double out_admin[ISSUE_TRIALS], bool busy)
{
    atomic_bool stop = false;
    struct client other = {.call = CALL_NO_HEADER,
                           .max_ops = BENCH_MAX_OPS,
                           .max_s = ISSUE_TRIALS * ISSUE_WAIT_S,
                           .stop = &stop};
    if (busy && pthread_create(&other.thread, NULL, client_run, &other) != 0) {
        die("client", "cannot start a thread");
    }
    for (int i = 0; busy && i < 500 && atomic_load(&other.n) == 0; i++) {
        usleep(10 * 1000); /* until its calls flow (at most 5 s) */
    }
    grpc_channel *ch = channel_new();
    grpc_metadata md = {.key = grpc_slice_from_static_string("workload.spiffe.io"),
                        .value = grpc_slice_from_static_string("true")};
    struct rpc_client_stream *cs = rpc_client_stream_open_md(ch, SVID_PATH, 120000, &md, 1);
    X509SVIDRequest req = X509_SVIDREQUEST__INIT;
    X509SVIDResponse *r = NULL;
    if (cs == NULL || rpc_client_stream_send(cs, &req.base, T_MS) != WEFT_OK ||
        rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, MAX_SNAPSHOT, T_MS,
                               (ProtobufCMessage **)&r) != WEFT_OK) {
        die("FetchX509SVID", "no first snapshot");
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    uint32_t seed = 2463534242u; /* xorshift32: the same pauses every run */
    for (int i = 0; i < ISSUE_TRIALS; i++) {
        /* The agent's Workload API thread restarts its 200 ms poll right after it pushed the
         * previous snapshot; starting at once would land every trial at the same phase of it
         * (all ~200 ms). A pause, uniform over whole periods, makes t0 a random moment. */
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        if (!busy) {
            usleep((useconds_t)(seed % ISSUE_PAUSE_MS) * 1000);
        }
        char spiffe_id[128];
        snprintf(spiffe_id, sizeof(spiffe_id), "spiffe://%s/ns/bench/sa/new-%s-%d", CA_PROC_TD,
                 busy ? "busy" : "idle", i);
        struct rpc_status st;
        double t0 = bench_now_s();
        if (agent_proc_entry(&ca, spiffe_id, (unsigned)geteuid(), &st) != WEFT_OK) {
            die("CreateEntry", st.details);
        }
        out_admin[i] = bench_now_s() - t0;
        bool got = false;
        while (!got && bench_now_s() - t0 < ISSUE_WAIT_S) {
            int rc = rpc_client_stream_recv(cs, &x509_svidresponse__descriptor, MAX_SNAPSHOT, 100,
                                            (ProtobufCMessage **)&r);
            if (rc == WEFT_EAGAIN) {
                continue;
            }
            if (rc != WEFT_OK) {
                die("FetchX509SVID", "the stream ended");
            }
            got = holds(r, spiffe_id);
            protobuf_c_message_free_unpacked(&r->base, NULL);
        }
        out_total[i] = bench_now_s() - t0;
        if (!got) {
            die(spiffe_id, "not on the stream within 10 s");
        }
    }
    rpc_client_stream_close(cs);
    grpc_channel_destroy(ch);
    if (busy) {
        atomic_store(&stop, true);
        pthread_join(other.thread, NULL);
        if (other.failed) {
            die("fetch", "not INVALID_ARGUMENT");
        }
    }
}

static void csr_of(EVP_PKEY *key, ProtobufCBinaryData *out)
{
    if (ca_csr_new(key, &out->data, &out->len) != WEFT_OK) {
        die("csr", "cannot make a CSR");
    }
}

/* mint_latency fills |out| with ISSUE_TRIALS MintWorkloadSVIDs round trips of one CSR, in
 * seconds, made as a node of our own over TLS (what the agent does for a new entry). */
static void mint_latency(double out[ISSUE_TRIALS])
{
    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/bundle.pem", ca.dir);
    uint8_t *bundle;
    size_t bundle_len;
    struct ca_client *client = NULL;
    if (weft_file_read(&bundle, &bundle_len, path, 1 << 20) != WEFT_OK) {
        die(path, "cannot read it");
    }
    if (ca_client_new(&client, ca.listen, CA_PROC_TD, bundle, bundle_len, err, sizeof(err)) !=
        WEFT_OK) {
        die("ca client", err);
    }
    free(bundle);
    grpc_channel *anon = NULL, *node = NULL;
    if (ca_client_dial(client, NULL, NULL, &anon, err, sizeof(err)) != WEFT_OK) {
        die("dial", err);
    }
    char *token = ca_proc_token(&ca, MINT_NODE, 600);
    if (token == NULL) {
        die("CreateToken", "no token");
    }
    EVP_PKEY *node_key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__AttestNodeRequest areq = WEFT__CA__V1__ATTEST_NODE_REQUEST__INIT;
    areq.join_token = token;
    csr_of(node_key, &areq.csr);
    Weft__Ca__V1__AttestNodeResponse *att = NULL;
    struct rpc_status st;
    if (rpc_call_unary(anon, "/weft.ca.v1.CA/AttestNode", &areq.base,
                       &weft__ca__v1__attest_node_response__descriptor, 1 << 20, T_MS,
                       (ProtobufCMessage **)&att, &st) != WEFT_OK) {
        die("AttestNode", st.details);
    }
    STACK_OF(X509) *chain = NULL;
    if (spiffe_certs_decode(&chain, att->node_svid->chain.data, att->node_svid->chain.len, 4, 0,
                            NULL) != WEFT_OK ||
        ca_client_dial(client, chain, node_key, &node, err, sizeof(err)) != WEFT_OK) {
        die("node dial", err);
    }
    char spiffe_id[128];
    snprintf(spiffe_id, sizeof(spiffe_id), "spiffe://%s/ns/bench/sa/mint", CA_PROC_TD);
    char *entry_id = entry_new(spiffe_id, MINT_NODE);
    EVP_PKEY *key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__MintRequest one = WEFT__CA__V1__MINT_REQUEST__INIT, *ptr = &one;
    one.entry_id = entry_id;
    csr_of(key, &one.csr);
    Weft__Ca__V1__MintWorkloadSVIDsRequest req = WEFT__CA__V1__MINT_WORKLOAD_SVIDS_REQUEST__INIT;
    req.requests = &ptr;
    req.n_requests = 1;
    for (int i = 0; i < ISSUE_TRIALS; i++) {
        Weft__Ca__V1__MintWorkloadSVIDsResponse *resp = NULL;
        double t0 = bench_now_s();
        if (rpc_call_unary(node, "/weft.ca.v1.CA/MintWorkloadSVIDs", &req.base,
                           &weft__ca__v1__mint_workload_svids_response__descriptor, 1 << 20, T_MS,
                           (ProtobufCMessage **)&resp, &st) != WEFT_OK) {
            die("MintWorkloadSVIDs", st.details);
        }
        out[i] = bench_now_s() - t0;
        bool ok = resp->n_results == 1 && resp->results[0]->svid != NULL;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        if (!ok) {
            die("MintWorkloadSVIDs", "no SVID");
        }
    }
    OPENSSL_free(one.csr.data);
    OPENSSL_free(areq.csr.data);
    EVP_PKEY_free(key);
    EVP_PKEY_free(node_key);
    free(entry_id);
    free(token);
    sk_X509_pop_free(chain, X509_free);
    protobuf_c_message_free_unpacked(&att->base, NULL);
    grpc_channel_destroy(node);
    grpc_channel_destroy(anon);
    ca_client_free(client);
}

/* --- the run -------------------------------------------------------------------------------- */

int main(void)
{
    grpc_init();
    atexit(stop_all);
    catch_fatal();
    if (ca_proc_init(&ca) != WEFT_OK || ca_proc_start(&ca, NULL) != WEFT_OK) {
        die("weft-ca", "did not start");
    }
    char spiffe_id[128];
    snprintf(spiffe_id, sizeof(spiffe_id), "spiffe://%s/ns/bench/sa/workload", CA_PROC_TD);
    struct rpc_status st;
    if (agent_proc_init(&agent, &ca) != WEFT_OK) {
        die("weft-agent", "no join token");
    }
    if (agent_proc_entry(&ca, spiffe_id, (unsigned)geteuid(), &st) != WEFT_OK) {
        die("CreateEntry", st.details);
    }
    if (agent_proc_start(&agent, true) != WEFT_OK ||
        agent_proc_wait_served(&agent, 1, 30000) != WEFT_OK) {
        die("weft-agent", "never served an SVID");
    }

    struct {
        const char *what;
        enum call call;
        bool fresh;
        int clients;
        double rate, base;
    } rows[] = {
        {"FetchX509SVID, reused channel, 1 client", CALL_SVID, false, 1, 0, 0},
        {"FetchX509Bundles, reused channel, 1 client", CALL_BUNDLES, false, 1, 0, 0},
        {"FetchX509SVID, fresh channel per fetch, 1 client", CALL_SVID, true, 1, 0, 0},
        {"FetchX509SVID, reused channels, 4 clients at once", CALL_SVID, false, MAX_CLIENTS, 0, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        fetch_rates(rows[i].call, rows[i].fresh, rows[i].clients, &rows[i].rate, &rows[i].base);
    }

    double idle[ISSUE_TRIALS], admin[ISSUE_TRIALS], busy[ISSUE_TRIALS], busy_admin[ISSUE_TRIALS];
    double mint[ISSUE_TRIALS];
    issue_latency(idle, admin, false);
    issue_latency(busy, busy_admin, true);
    mint_latency(mint);

    printf("%-56s %10s %10s %10s\n", "fetches per second (open, first snapshot, cancel)", "fetches",
           "baseline", "ratio");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        printf("%-56s %10.0f %10.0f %9.2fx\n", rows[i].what, rows[i].rate, rows[i].base,
               rows[i].rate / rows[i].base);
    }
    printf("  (baseline: the same calls without the header, INVALID_ARGUMENT at once)\n");
    double mint_med = median(mint, ISSUE_TRIALS);
    const struct {
        const char *what;
        double *v;
        bool ratio;
    } lat[] = {
        {"baseline: CA MintWorkloadSVIDs round trip (1 CSR, TLS)", mint, true},
        {"CreateEntry -> new SVID on the open workload stream", idle, true},
        {"  of which the Admin CreateEntry round trip", admin, false},
        {"  the same while another workload calls in a loop", busy, true},
    };
    char head[64];
    snprintf(head, sizeof(head), "issuance -> SVID, ms (%d trials each)", ISSUE_TRIALS);
    printf("\n%-56s %8s %8s %8s %12s\n", head, "min", "median", "max", "vs baseline");
    for (size_t i = 0; i < sizeof(lat) / sizeof(lat[0]); i++) {
        double med = median(lat[i].v, ISSUE_TRIALS); /* sorts: [0] is the min */
        printf("%-56s %8.1f %8.1f %8.1f", lat[i].what, lat[i].v[0] * 1e3, med * 1e3,
               lat[i].v[ISSUE_TRIALS - 1] * 1e3);
        if (lat[i].ratio) {
            printf(" %11.2fx", med / mint_med);
        }
        printf("\n");
    }
    printf("\n  bazel run -c opt //test/bench:agent_bench\n");
    stop_all();
    grpc_shutdown();
    return 0;
}
