/* test/integration/scan_sources_test.c: where `weftctl scan` finds its endpoints and its own
 * identity (issue 9): weft-ca's directory (Admin ListDirectory, `--from-ca`) and the SPIFFE
 * Workload API (`--workload-api`). A real weft-ca (and, for the Workload API, a real
 * weft-agent), a node reporting workload addresses as an agent would, and TLS servers this test
 * runs on loopback with certificates it mints now. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ca/client.h"
#include "lib/base/file.h"
#include "lib/rpc/rpc.h"
#include "lib/spiffe/x509svid.h"
#include "proto/ca.pb-c.h"
#include "test/testlib/agent_proc.h"
#include "test/testlib/ca_proc.h"
#include "test/testlib/certs.h"

#define WEFTCTL "cli/weftctl" /* in the runfiles of data = ["//cli:weftctl"] */
#define T_MS 10000
#define ID_A "spiffe://" CA_PROC_TD "/ns/demo/sa/a"
#define ID_B "spiffe://" CA_PROC_TD "/ns/demo/sa/b"
#define ID_OTHER "spiffe://" CA_PROC_TD "/ns/demo/sa/impostor"
#define ID_SCANNER "spiffe://" CA_PROC_TD "/ns/ops/sa/scanner"

static struct ca_proc ca;
static struct agent_proc ag; /* stopped by the teardown too, whatever a test left */
static pid_t watch_pid;      /* a `weftctl scan --watch` a test runs, killed by the teardown */

static void setup(void)
{
    memset(&ag, 0, sizeof(ag));
    watch_pid = 0;
    grpc_init();
    cr_assert_eq(ca_proc_init(&ca), WEFT_OK);
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "weft-ca did not start; see %s/ca.log", ca.dir);
}

static void teardown(void)
{
    if (watch_pid > 0) {
        kill(-watch_pid, SIGKILL);
        waitpid(watch_pid, NULL, 0);
        watch_pid = 0;
    }
    agent_proc_stop(&ag);
    ca_proc_cleanup(&ca);
    grpc_shutdown();
}

TestSuite(scan_sources, .init = setup, .fini = teardown, .timeout = 120);

/* --- a TLS server on loopback ------------------------------------------------------------------
 * One thread accepts connections one at a time until stopped: a handshake (each at most 2 s of
 * silence), then reads until the client closes. It counts the handshakes that completed with a
 * client certificate and keeps the last one's SPIFFE ID. */

struct tls_server {
    int fd, port;
    SSL_CTX *ctx;
    pthread_t thread;
    atomic_bool stop;
    atomic_int with_client_cert;
    char client_id[256]; /* the last client certificate's URI SAN, set before the count grows */
};

static void uri_of(X509 *x, char *out, size_t len)
{
    out[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (size_t i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_URI) {
            snprintf(out, len, "%.*s", (int)ASN1_STRING_length(gn->d.uniformResourceIdentifier),
                     (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
        }
    }
    GENERAL_NAMES_free(names);
}

static void serve_one(struct tls_server *s, int fd)
{
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL *ssl = SSL_new(s->ctx);
    if (ssl != NULL && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
        X509 *peer = SSL_get_peer_certificate(ssl);
        if (peer != NULL) {
            uri_of(peer, s->client_id, sizeof(s->client_id));
            X509_free(peer);
            atomic_fetch_add(&s->with_client_cert, 1);
        }
        char buf[512];
        while (!atomic_load(&s->stop) && SSL_read(ssl, buf, sizeof(buf)) > 0) {
        }
    }
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
}

static void *serve(void *arg)
{
    struct tls_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 100) == 1) {
            int fd = accept(s->fd, NULL, NULL);
            if (fd >= 0) {
                serve_one(s, fd);
            }
        }
    }
    return NULL;
}

/* server_start listens on 127.0.0.1 (|port| 0: any free one) presenting |leaf| (and |extra|
 * after it when not NULL), speaking TLS 1.3 only or TLS 1.2 only (|max_version|); with
 * |client_roots| it requires a client certificate that verifies to one of them. */
static void server_start(struct tls_server *s, int port, const struct testlib_cred *leaf,
                         X509 *extra, uint16_t max_version, STACK_OF(X509) * client_roots)
{
    memset(s, 0, sizeof(*s));
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s->fd, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "bind 127.0.0.1:%d", port);
    cr_assert_eq(listen(s->fd, 16), 0);
    socklen_t sl = sizeof(sin);
    cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
    s->ctx = SSL_CTX_new(TLS_method());
    cr_assert_not_null(s->ctx);
    cr_assert(SSL_CTX_set_min_proto_version(
        s->ctx, max_version == TLS1_3_VERSION ? TLS1_3_VERSION : TLS1_2_VERSION));
    cr_assert(SSL_CTX_set_max_proto_version(s->ctx, max_version));
    cr_assert(SSL_CTX_use_certificate(s->ctx, leaf->cert));
    cr_assert(SSL_CTX_use_PrivateKey(s->ctx, leaf->key));
    if (extra != NULL) {
        cr_assert(SSL_CTX_add1_chain_cert(s->ctx, extra));
    }
    if (client_roots != NULL) {
        X509_STORE *store = SSL_CTX_get_cert_store(s->ctx);
        for (size_t i = 0; i < sk_X509_num(client_roots); i++) {
            cr_assert(X509_STORE_add_cert(store, sk_X509_value(client_roots, i)));
        }
        SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    cr_assert_eq(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct tls_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
    SSL_CTX_free(s->ctx);
}

/* free_port returns a loopback port nothing listens on (bound, read, closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* mint makes a root (a year) and a leaf for |id| under it, valid from a minute ago for a day:
 * nothing near expiry or past its renewal point for the scanner. */
static void mint(struct testlib_cred *root, struct testlib_cred *leaf, const char *id)
{
    int64_t now = time(NULL);
    cr_assert_eq(testlib_mint_root(root, CA_PROC_TD, SPIFFE_KEY_EC_P256, now - 60, 365 * 86400),
                 WEFT_OK);
    cr_assert_eq(testlib_mint_leaf(leaf, root, id, SPIFFE_KEY_EC_P256, now - 60, 86400), WEFT_OK);
}

/* --- the CA's side -----------------------------------------------------------------------------
 */

static void entry_for(const char *id)
{
    Weft__Ca__V1__Entry e = WEFT__CA__V1__ENTRY__INIT;
    char *sel = "unix:uid:1001";
    e.spiffe_id = (char *)id;
    e.node = AGENT_PROC_NODE;
    e.selectors = &sel;
    e.n_selectors = 1;
    Weft__Ca__V1__CreateEntryRequest req = WEFT__CA__V1__CREATE_ENTRY_REQUEST__INIT;
    req.entry = &e;
    ProtobufCMessage *resp;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&ca, "CreateEntry", &req.base,
                               &weft__ca__v1__create_entry_response__descriptor, &resp, &st),
                 WEFT_OK, "%s", st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* struct node is AGENT_PROC_NODE joined to the CA as an agent joins: its join token, then its
 * node SVID over mTLS. */
struct node {
    struct ca_client *client;
    grpc_channel *ch;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

static void node_join(struct node *n)
{
    char path[160], err[512];
    snprintf(path, sizeof(path), "%s/bundle.pem", ca.dir);
    uint8_t *bundle;
    size_t len;
    cr_assert_eq(weft_file_read(&bundle, &len, path, 1 << 20), WEFT_OK, "%s", path);
    cr_assert_eq(ca_client_new(&n->client, ca.listen, CA_PROC_TD, bundle, len, err, sizeof(err)),
                 WEFT_OK, "%s", err);
    free(bundle);

    grpc_channel *anon;
    cr_assert_eq(ca_client_dial(n->client, NULL, NULL, &anon, err, sizeof(err)), WEFT_OK, "%s",
                 err);
    char *token = ca_proc_token(&ca, AGENT_PROC_NODE, 600);
    cr_assert_not_null(token);
    n->key = spiffe_key_generate(SPIFFE_KEY_EC_P256);
    Weft__Ca__V1__AttestNodeRequest areq = WEFT__CA__V1__ATTEST_NODE_REQUEST__INIT;
    areq.join_token = token;
    uint8_t *csr;
    cr_assert_eq(ca_csr_new(n->key, &csr, &areq.csr.len), WEFT_OK);
    areq.csr.data = csr;
    Weft__Ca__V1__AttestNodeResponse *aresp = NULL;
    struct rpc_status st;
    cr_assert_eq(rpc_call_unary(anon, "/weft.ca.v1.CA/AttestNode", &areq.base,
                                &weft__ca__v1__attest_node_response__descriptor, 1 << 20, T_MS,
                                (ProtobufCMessage **)&aresp, &st),
                 WEFT_OK, "%s", st.details);
    OPENSSL_free(csr);
    free(token);
    grpc_channel_destroy(anon);
    cr_assert_eq(spiffe_certs_decode(&n->chain, aresp->node_svid->chain.data,
                                     aresp->node_svid->chain.len, 4, 0, NULL),
                 WEFT_OK);
    protobuf_c_message_free_unpacked(&aresp->base, NULL);
    cr_assert_eq(ca_client_dial(n->client, n->chain, n->key, &n->ch, err, sizeof(err)), WEFT_OK,
                 "%s", err);
}

static void node_free(struct node *n)
{
    grpc_channel_destroy(n->ch);
    sk_X509_pop_free(n->chain, X509_free);
    EVP_PKEY_free(n->key);
    ca_client_free(n->client);
}

/* node_report reports the node's complete list of |num| workload addresses with their IDs. */
static void node_report(struct node *n, const char *const *addrs, const char *const *ids,
                        size_t num)
{
    Weft__Ca__V1__DirectoryEntry items[4], *ptrs[4];
    cr_assert_leq(num, 4);
    for (size_t i = 0; i < num; i++) {
        weft__ca__v1__directory_entry__init(&items[i]);
        items[i].address = (char *)addrs[i];
        items[i].spiffe_id = (char *)ids[i];
        ptrs[i] = &items[i];
    }
    Weft__Ca__V1__ReportWorkloadsRequest rreq = WEFT__CA__V1__REPORT_WORKLOADS_REQUEST__INIT;
    rreq.workloads = ptrs;
    rreq.n_workloads = num;
    Weft__Ca__V1__ReportWorkloadsResponse *rresp = NULL;
    struct rpc_status st;
    cr_assert_eq(rpc_call_unary(n->ch, "/weft.ca.v1.CA/ReportWorkloads", &rreq.base,
                                &weft__ca__v1__report_workloads_response__descriptor, 1 << 20, T_MS,
                                (ProtobufCMessage **)&rresp, &st),
                 WEFT_OK, "%s", st.details);
    cr_assert_eq(rresp->n_conflicts, 0, "the CA refused: %s",
                 rresp->n_conflicts ? rresp->conflicts[0] : "");
    protobuf_c_message_free_unpacked(&rresp->base, NULL);
}

/* report joins as the node and reports once. */
static void report(const char *const *addrs, const char *const *ids, size_t num)
{
    struct node n = {0};
    node_join(&n);
    node_report(&n, addrs, ids, num);
    node_free(&n);
}

static Weft__Ca__V1__ListDirectoryResponse *list_directory(void)
{
    Weft__Ca__V1__ListDirectoryRequest req = WEFT__CA__V1__LIST_DIRECTORY_REQUEST__INIT;
    Weft__Ca__V1__ListDirectoryResponse *resp = NULL;
    struct rpc_status st;
    cr_assert_eq(ca_proc_admin(&ca, "ListDirectory", &req.base,
                               &weft__ca__v1__list_directory_response__descriptor,
                               (ProtobufCMessage **)&resp, &st),
                 WEFT_OK, "%s", st.details);
    return resp;
}

/* --- weftctl scan ------------------------------------------------------------------------------
 */

/* scan runs `weftctl scan --format json ARGS` (stderr into DIR/scan.err, then |err|); returns
 * its exit code and the report in |*out| (NULL when stdout was not JSON). */
static int scan(const char *args, json_t **out, char *err, size_t err_len)
{
    char cmd[1024], buf[1 << 16], path[160];
    snprintf(path, sizeof(path), "%s/scan.err", ca.dir);
    snprintf(cmd, sizeof(cmd), "%s scan --format json --timeout 2s %s 2>%s", WEFTCTL, args, path);
    int status = -1;
    cr_assert_eq(agent_proc_run(0, cmd, false, 60000, buf, sizeof(buf), &status), WEFT_OK,
                 "%s did not finish", cmd);
    uint8_t *e = NULL;
    size_t elen = 0;
    err[0] = '\0';
    if (weft_file_read(&e, &elen, path, 1 << 20) == WEFT_OK) {
        snprintf(err, err_len, "%.*s", (int)elen, (const char *)e);
        free(e);
    }
    *out = json_loads(buf, 0, NULL);
    cr_assert(WIFEXITED(status), "%s: wait status %d", cmd, status);
    return WEXITSTATUS(status);
}

/* endpoint_of returns the report's object for |name|, or NULL. */
static json_t *endpoint_of(json_t *report, const char *name)
{
    json_t *eps = json_object_get(report, "endpoints"), *ep;
    size_t i;
    json_array_foreach(eps, i, ep)
    {
        if (strcmp(json_string_value(json_object_get(ep, "endpoint")), name) == 0) {
            return ep;
        }
    }
    return NULL;
}

/* codes_of writes the endpoint's finding codes, space-separated, into |out|. */
static const char *codes_of(json_t *ep, char *out, size_t len)
{
    out[0] = '\0';
    json_t *f;
    size_t i;
    json_array_foreach(json_object_get(ep, "findings"), i, f)
    {
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%s%s", l ? " " : "",
                 json_string_value(json_object_get(f, "code")));
    }
    return out;
}

static const char *leaf_id(json_t *ep)
{
    json_t *leaf = json_array_get(json_object_get(ep, "chain"), 0);
    return leaf != NULL ? json_string_value(json_object_get(leaf, "spiffe_id")) : "";
}

/* --- tests -------------------------------------------------------------------------------------
 */

Test(scan_sources, list_directory_lists_the_live_addresses_and_from_ca_scans_each)
{
    entry_for(ID_A);
    entry_for(ID_B);
    struct testlib_cred root = {0}, leaf_a = {0}, leaf_other = {0}, root2 = {0};
    mint(&root, &leaf_a, ID_A);
    mint(&root2, &leaf_other, ID_OTHER);
    /* A at 127.0.0.1:PORT presents A; B is reported by IP alone, dialled at --from-ca-port, and
     * what answers there presents another ID */
    struct tls_server a, b;
    server_start(&a, 0, &leaf_a, NULL, TLS1_3_VERSION, NULL);
    server_start(&b, 0, &leaf_other, NULL, TLS1_3_VERSION, NULL);
    char addr_a[32];
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%d", a.port);
    const char *addrs[] = {addr_a, "127.0.0.1"}, *ids[] = {ID_A, ID_B};
    report(addrs, ids, 2);

    Weft__Ca__V1__ListDirectoryResponse *dir = list_directory();
    cr_assert_eq(dir->n_entries, 2);
    cr_assert_not(dir->truncated);
    cr_assert_gt(dir->directory_version, 0);
    int64_t now = time(NULL);
    /* address order: "127.0.0.1" sorts before "127.0.0.1:PORT" */
    cr_assert_str_eq(dir->entries[0]->address, "127.0.0.1");
    cr_assert_str_eq(dir->entries[0]->spiffe_id, ID_B);
    cr_assert_str_eq(dir->entries[1]->address, addr_a);
    cr_assert_str_eq(dir->entries[1]->spiffe_id, ID_A);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_str_eq(dir->entries[i]->node, AGENT_PROC_NODE);
        cr_assert(dir->entries[i]->last_seen <= now && dir->entries[i]->last_seen > now - 60);
    }
    protobuf_c_message_free_unpacked(&dir->base, NULL);

    char args[512], err[4096], codes[512], name_b[32];
    snprintf(name_b, sizeof(name_b), "127.0.0.1:%d", b.port);
    snprintf(args, sizeof(args), "--from-ca --socket %s --from-ca-port %d --no-mtls", ca.sock,
             b.port);
    json_t *rep;
    int code = scan(args, &rep, err, sizeof(err));
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    cr_assert_eq(json_array_size(json_object_get(rep, "endpoints")), 2, "%s", err);
    json_t *ea = endpoint_of(rep, addr_a), *eb = endpoint_of(rep, name_b);
    cr_assert_not_null(ea, "%s not scanned", addr_a);
    cr_assert_not_null(eb, "%s not scanned", name_b);
    cr_assert(json_is_true(json_object_get(ea, "reached")));
    cr_assert(json_is_true(json_object_get(eb, "reached")));
    cr_assert_str_eq(leaf_id(ea), ID_A);
    cr_assert_str_eq(leaf_id(eb), ID_OTHER);
    /* weft/1 was offered; these servers negotiate no ALPN, and none is required */
    cr_assert_str_eq(codes_of(ea, codes, sizeof(codes)), "");
    cr_assert_str_eq(codes_of(eb, codes, sizeof(codes)), "unexpected-id");
    json_t *f = json_array_get(json_object_get(eb, "findings"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(f, "severity")), "page");
    cr_assert(strstr(json_string_value(json_object_get(f, "message")), ID_B) != NULL);
    cr_assert_eq(code, 2, "exit %d; stderr: %s", code, err);
    json_decref(rep);

    /* the same list, by WEFT_CA_SOCKET, with an endpoint of the command line besides */
    snprintf(args, sizeof(args), "127.0.0.1:%d --from-ca --from-ca-port %d --no-mtls", a.port,
             b.port);
    char env_args[700];
    snprintf(env_args, sizeof(env_args), "%s", args);
    setenv("WEFT_CA_SOCKET", ca.sock, 1);
    code = scan(env_args, &rep, err, sizeof(err));
    unsetenv("WEFT_CA_SOCKET");
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    cr_assert_eq(json_array_size(json_object_get(rep, "endpoints")), 3, "%s", err);
    cr_assert_eq(code, 2);
    json_decref(rep);

    /* "127.0.0.1" dialled at A's port is A's "127.0.0.1:PORT" entry, which names its port: it
     * is scanned once, expecting A (weft-proxy's lookup takes IP:port before IP) */
    snprintf(args, sizeof(args), "--from-ca --socket %s --from-ca-port %d --no-mtls", ca.sock,
             a.port);
    code = scan(args, &rep, err, sizeof(err));
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    cr_assert_eq(json_array_size(json_object_get(rep, "endpoints")), 1, "%s", err);
    cr_assert_str_eq(codes_of(endpoint_of(rep, addr_a), codes, sizeof(codes)), "");
    cr_assert_eq(code, 0, "exit %d; stderr: %s", code, err);
    json_decref(rep);

    server_stop(&a);
    server_stop(&b);
    testlib_cred_cleanup(&root);
    testlib_cred_cleanup(&root2);
    testlib_cred_cleanup(&leaf_a);
    testlib_cred_cleanup(&leaf_other);
}

Test(scan_sources, a_directory_address_nothing_answers_is_a_finding_and_an_empty_one_scans_none)
{
    json_t *rep;
    char args[512], err[4096], codes[512];
    snprintf(args, sizeof(args), "--from-ca --socket %s", ca.sock);
    int code = scan(args, &rep, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d; stderr: %s", code, err);
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    cr_assert_eq(json_array_size(json_object_get(rep, "endpoints")), 0);
    cr_assert(strstr(err, "weft-ca's directory lists no address") != NULL, "%s", err);
    json_decref(rep);

    entry_for(ID_A);
    int port = free_port();
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    const char *addrs[] = {addr}, *ids[] = {ID_A};
    report(addrs, ids, 1);
    code = scan(args, &rep, err, sizeof(err));
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    json_t *ep = endpoint_of(rep, addr);
    cr_assert_not_null(ep, "%s not scanned; stderr: %s", addr, err);
    cr_assert_str_eq(codes_of(ep, codes, sizeof(codes)), "unreachable");
    cr_assert_eq(code, 3);
    json_decref(rep);
}

Test(scan_sources, from_ca_flags_are_checked_and_an_unreachable_ca_is_exit_3)
{
    /* usage errors are 3 as well: nothing was scanned */
    json_t *rep;
    char err[4096], args[512];
    cr_assert_eq(scan("--socket /x 127.0.0.1:1", &rep, err, sizeof(err)), 3);
    cr_assert(strstr(err, "--socket is for --from-ca") != NULL, "%s", err);
    cr_assert_eq(scan("--from-ca-port 9 127.0.0.1:1", &rep, err, sizeof(err)), 3);
    cr_assert(strstr(err, "--from-ca-port is for --from-ca") != NULL, "%s", err);
    cr_assert_eq(scan("--from-ca --socket /x --from-ca-port 0", &rep, err, sizeof(err)), 3);
    cr_assert(strstr(err, "--from-ca-port 0: want a port") != NULL, "%s", err);
    unsetenv("WEFT_CA_SOCKET");
    cr_assert_eq(scan("--from-ca", &rep, err, sizeof(err)), 3);
    cr_assert(strstr(err, "no admin socket") != NULL, "%s", err);
    snprintf(args, sizeof(args), "--from-ca --socket %s/absent.sock", ca.dir);
    cr_assert_eq(scan(args, &rep, err, sizeof(err)), 3);
    cr_assert(strstr(err, "--from-ca: cannot reach weft-ca at ") != NULL, "%s", err);
    cr_assert_null(rep, "no report when the endpoints are not known");
    cr_assert_eq(scan("--workload-api /tmp/x.sock 127.0.0.1:1", &rep, err, sizeof(err)), 3);
    cr_assert(strstr(err, "want unix:///PATH") != NULL, "%s", err);
    cr_assert_eq(scan("--workload-api unix:///x --client-cert a --client-key b 127.0.0.1:1", &rep,
                      err, sizeof(err)),
                 3);
    cr_assert(strstr(err, "--workload-api or --client-cert, not both") != NULL, "%s", err);
}

/* The Workload API: a real weft-agent serves this uid an SVID; a server that takes only clients
 * of the CA's trust domain. */
Test(scan_sources, workload_api_svid_reaches_an_mtls_only_port)
{
    cr_assert_eq(agent_proc_init(&ag, &ca), WEFT_OK);
    struct rpc_status st;
    cr_assert_eq(agent_proc_entry(&ca, ID_SCANNER, (unsigned)getuid(), &st), WEFT_OK, "%s",
                 st.details);
    cr_assert_eq(agent_proc_start(&ag, true), WEFT_OK);
    if (agent_proc_wait_served(&ag, 1, 30000) != WEFT_OK) {
        agent_proc_dump_logs(&ag);
        agent_proc_stop(&ag);
        cr_assert_fail("weft-agent did not serve an SVID");
    }

    char path[160];
    snprintf(path, sizeof(path), "%s/bundle.pem", ca.dir);
    uint8_t *pem;
    size_t len;
    cr_assert_eq(weft_file_read(&pem, &len, path, 1 << 20), WEFT_OK);
    STACK_OF(X509) * ca_roots;
    cr_assert_eq(spiffe_certs_decode(&ca_roots, pem, len, 8, 0, NULL), WEFT_OK);
    free(pem);
    struct testlib_cred root = {0}, leaf = {0};
    mint(&root, &leaf, ID_A);
    /* TLS 1.2 refuses a client without a certificate inside the handshake; the server also
     * sends the CA's root after its leaf, so that a bundle naming it shows as the chain's root
     * (the scanner names roots, it does not verify chains) */
    struct tls_server s12, s13;
    server_start(&s12, 0, &leaf, sk_X509_value(ca_roots, 0), TLS1_2_VERSION, ca_roots);
    server_start(&s13, 0, &leaf, NULL, TLS1_3_VERSION, ca_roots);

    char args[512], err[4096], codes[512], n12[32], n13[32];
    snprintf(n12, sizeof(n12), "127.0.0.1:%d", s12.port);
    snprintf(n13, sizeof(n13), "127.0.0.1:%d", s13.port);
    json_t *rep;
    snprintf(args, sizeof(args), "--allow-tls12 %s %s", n12, n13);
    int code = scan(args, &rep, err, sizeof(err));
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    json_t *e12 = endpoint_of(rep, n12);
    cr_assert(json_is_false(json_object_get(e12, "reached")));
    cr_assert(strstr(json_string_value(json_object_get(e12, "error")),
                     "the server asked for a client certificate and the scanner has none") != NULL,
              "%s", json_string_value(json_object_get(e12, "error")));
    cr_assert_str_eq(codes_of(e12, codes, sizeof(codes)), "unreachable");
    cr_assert_eq(code, 3);
    cr_assert_eq(atomic_load(&s12.with_client_cert), 0);
    cr_assert_eq(atomic_load(&s13.with_client_cert), 0);
    json_decref(rep);

    snprintf(args, sizeof(args), "--allow-tls12 --workload-api unix://%s %s %s", ag.sock, n12, n13);
    code = scan(args, &rep, err, sizeof(err));
    cr_assert_not_null(rep, "no JSON report; stderr: %s", err);
    e12 = endpoint_of(rep, n12);
    json_t *e13 = endpoint_of(rep, n13);
    cr_assert(json_is_true(json_object_get(e12, "reached")), "%s",
              json_string_value(json_object_get(e12, "error")));
    cr_assert(json_is_true(json_object_get(e13, "reached")));
    cr_assert_str_eq(leaf_id(e12), ID_A);
    cr_assert_str_eq(leaf_id(e13), ID_A);
    cr_assert_eq(json_array_size(json_object_get(e12, "chain")), 2);
    /* the Workload API's bundle served as --bundle: it names the CA's root */
    cr_assert(json_is_true(json_object_get(e12, "root_found")));
    cr_assert_not(json_is_true(json_object_get(e13, "root_found")));
    cr_assert_str_eq(codes_of(e12, codes, sizeof(codes)), "", "%s", codes);
    cr_assert_str_eq(codes_of(e13, codes, sizeof(codes)), "", "%s", codes);
    cr_assert_eq(code, 0, "exit %d; stderr: %s", code, err);
    cr_assert_gt(atomic_load(&s12.with_client_cert), 0);
    cr_assert_gt(atomic_load(&s13.with_client_cert), 0);
    cr_assert_str_eq(s12.client_id, ID_SCANNER);
    cr_assert_str_eq(s13.client_id, ID_SCANNER);
    json_decref(rep);

    /* a socket nothing serves: exit 3, said */
    snprintf(args, sizeof(args), "--workload-api unix://%s/absent.sock %s", ca.dir, n13);
    code = scan(args, &rep, err, sizeof(err));
    cr_assert_eq(code, 3);
    cr_assert(strstr(err, "--workload-api: Workload API at ") != NULL, "%s", err);
    cr_assert_null(rep);

    server_stop(&s12);
    server_stop(&s13);
    agent_proc_stop(&ag);
    sk_X509_pop_free(ca_roots, X509_free);
    testlib_cred_cleanup(&root);
    testlib_cred_cleanup(&leaf);
}

/* reports_in parses the JSON reports `weftctl scan --watch --format json` wrote to |path| so
 * far (one per pass, back to back) into |out|; returns how many are complete. */
static size_t reports_in(const char *path, json_t **out, size_t cap)
{
    uint8_t *data = NULL;
    size_t len = 0, n = 0, at = 0;
    if (weft_file_read(&data, &len, path, 1 << 22) != WEFT_OK) {
        return 0;
    }
    while (n < cap && at < len) {
        json_error_t e;
        json_t *doc = json_loadb((const char *)data + at, len - at, JSON_DISABLE_EOF_CHECK, &e);
        if (doc == NULL) {
            break;
        }
        out[n++] = doc;
        at += e.position;
        while (at < len && (data[at] == '\n' || data[at] == ' ')) {
            at++;
        }
    }
    free(data);
    return n;
}

static void reports_free(json_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(docs[i]);
    }
}

/* wait_reports polls |path| at most |timeout_ms| until it holds |want| reports. */
static size_t wait_reports(const char *path, size_t want, int timeout_ms, json_t **out)
{
    size_t n = 0;
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        n = reports_in(path, out, want);
        if (n == want) {
            return n;
        }
        reports_free(out, n);
        n = 0;
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    return n;
}

Test(scan_sources, watch_reads_the_directory_again_before_each_pass)
{
    entry_for(ID_A);
    entry_for(ID_B);
    struct testlib_cred root = {0}, leaf_a = {0}, leaf_b = {0}, root2 = {0};
    mint(&root, &leaf_a, ID_A);
    mint(&root2, &leaf_b, ID_B);
    struct tls_server a, b;
    server_start(&a, 0, &leaf_a, NULL, TLS1_3_VERSION, NULL);
    server_start(&b, 0, &leaf_b, NULL, TLS1_3_VERSION, NULL);
    char addr_a[32], addr_b[32];
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%d", a.port);
    snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%d", b.port);
    struct node n = {0};
    node_join(&n);
    const char *addrs[] = {addr_a, addr_b}, *ids[] = {ID_A, ID_B};
    node_report(&n, addrs, ids, 1);

    char out[160], errp[160];
    snprintf(out, sizeof(out), "%s/watch.json", ca.dir);
    snprintf(errp, sizeof(errp), "%s/watch.err", ca.dir);
    watch_pid = fork();
    cr_assert_geq(watch_pid, 0);
    if (watch_pid == 0) {
        setpgid(0, 0);
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) {
            _exit(127);
        }
        execl(WEFTCTL, WEFTCTL, "scan", "--format", "json", "--timeout", "2s", "--no-mtls",
              "--from-ca", "--socket", ca.sock, "--watch", "10s", (char *)NULL);
        _exit(127);
    }
    setpgid(watch_pid, watch_pid);
    json_t *docs[2];
    cr_assert_eq(wait_reports(out, 1, 15000, docs), 1, "no first pass; see %s", errp);
    cr_assert_eq(json_array_size(json_object_get(docs[0], "endpoints")), 1);
    cr_assert_not_null(endpoint_of(docs[0], addr_a));
    reports_free(docs, 1);

    /* B comes up: the next pass, 9 to 11 s later, finds it */
    node_report(&n, addrs, ids, 2);
    cr_assert_eq(wait_reports(out, 2, 20000, docs), 2, "no second pass; see %s", errp);
    cr_assert_eq(json_array_size(json_object_get(docs[1], "endpoints")), 2);
    cr_assert_not_null(endpoint_of(docs[1], addr_a));
    json_t *eb = endpoint_of(docs[1], addr_b);
    cr_assert_not_null(eb);
    cr_assert_str_eq(leaf_id(eb), ID_B);
    reports_free(docs, 2);

    /* B's agent stops reporting it: the directory drops it, the scan keeps it, and says so
     * (--from-ca-keep): a dead agent's pods still present certificates that run out */
    node_report(&n, addrs, ids, 1);
    json_t *three[3];
    cr_assert_eq(wait_reports(out, 3, 20000, three), 3, "no third pass; see %s", errp);
    cr_assert_eq(json_array_size(json_object_get(three[2], "endpoints")), 2);
    eb = endpoint_of(three[2], addr_b);
    cr_assert_not_null(eb, "B was dropped");
    char codes[200];
    cr_assert_str_eq(codes_of(eb, codes, sizeof(codes)), "left-directory");
    reports_free(three, 3);

    /* B is deleted for good: it stops answering. That is said once, without a page or exit 3
     * (a deleted pod is not an outage), and B is forgotten */
    server_stop(&b);
    json_t *five[5];
    cr_assert_eq(wait_reports(out, 4, 20000, five), 4, "no fourth pass; see %s", errp);
    eb = endpoint_of(five[3], addr_b);
    cr_assert_not_null(eb);
    cr_assert(!json_is_true(json_object_get(eb, "reached")));
    json_t *f = json_array_get(json_object_get(eb, "findings"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(f, "code")), "left-directory");
    cr_assert_str_eq(json_string_value(json_object_get(f, "severity")), "info");
    cr_assert_eq(json_integer_value(json_object_get(five[3], "exit_code")), 0);
    reports_free(five, 4);
    cr_assert_eq(wait_reports(out, 5, 20000, five), 5, "no fifth pass; see %s", errp);
    cr_assert_eq(json_array_size(json_object_get(five[4], "endpoints")), 1, "B is forgotten");
    reports_free(five, 5);

    kill(watch_pid, SIGTERM);
    int status = -1;
    for (int waited = 0; waited < 10000; waited += 50) {
        if (waitpid(watch_pid, &status, WNOHANG) == watch_pid) {
            watch_pid = 0;
            break;
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    cr_assert_eq(watch_pid, 0, "weftctl scan --watch did not end on SIGTERM");
    /* the last pass's code: A alone, clean */
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status %d", status);

    node_free(&n);
    server_stop(&a);
    testlib_cred_cleanup(&root);
    testlib_cred_cleanup(&root2);
    testlib_cred_cleanup(&leaf_a);
    testlib_cred_cleanup(&leaf_b);
}

Test(scan_sources, list_directory_leaves_out_addresses_past_their_ttl)
{
    ca_proc_stop(&ca, SIGTERM);
    ca.extra[0] = "--directory-ttl";
    ca.extra[1] = "2s";
    ca.extra[2] = NULL;
    cr_assert_eq(ca_proc_start(&ca, "1h"), WEFT_OK, "weft-ca did not restart; see %s/ca.log",
                 ca.dir);
    entry_for(ID_A);
    const char *addrs[] = {"127.0.0.1:9"}, *ids[] = {ID_A};
    report(addrs, ids, 1);
    Weft__Ca__V1__ListDirectoryResponse *dir = list_directory();
    cr_assert_eq(dir->n_entries, 1);
    uint64_t version = dir->directory_version;
    protobuf_c_message_free_unpacked(&dir->base, NULL);
    nanosleep(&(struct timespec){3, 0}, NULL); /* the node reports nothing more */
    dir = list_directory();
    cr_assert_eq(dir->n_entries, 0, "an address not reported for 3 s with a TTL of 2 s");
    cr_assert_gt(dir->directory_version, version);
    protobuf_c_message_free_unpacked(&dir->base, NULL);
}
