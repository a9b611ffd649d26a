/* ca/client.c: see client.h. */
#include "ca/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "lib/base/mem.h"
#include "lib/base/netaddr.h"
#include "lib/transport/grpcfd.h"

struct ca_client {
    struct tls_relay *relay;
    struct spiffe_bundle_set bundles;
    struct spiffe_id expect;
    union weft_sockaddr addr;
    socklen_t addr_len;
};

int ca_client_set_bundle(struct ca_client *c, const uint8_t *bundle, size_t bundle_len, char *err,
                         size_t err_len)
{
    struct spiffe_id td;
    struct spiffe_why why;
    spiffe_id_td_id(&td, &c->expect);
    int rc = spiffe_bundle_decode(&c->bundles, bundle, bundle_len, &td, &why);
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "trust bundle: %s", why.msg);
    }
    return rc;
}

int ca_client_new(struct ca_client **out, const char *addr, const char *td, const uint8_t *bundle,
                  size_t bundle_len, char *err, size_t err_len)
{
    *out = NULL;
    struct ca_client *c = weft_xcalloc(1, sizeof(*c));
    spiffe_bundle_set_init(&c->bundles);
    struct spiffe_id td_id;
    struct spiffe_why why;
    char why_addr[128];
    int rc = weft_sockaddr_parse(addr, false, &c->addr, &c->addr_len, why_addr, sizeof(why_addr));
    if (rc != WEFT_OK) {
        snprintf(err, err_len, "CA address %.200s: %s", addr, why_addr);
    }
    if (rc == WEFT_OK && (rc = spiffe_td_parse(&td_id, td, strlen(td), &why)) != WEFT_OK) {
        snprintf(err, err_len, "trust domain %.200s: %s", td, why.msg);
    }
    if (rc == WEFT_OK) {
        size_t td_len;
        const char *name = spiffe_id_td(&td_id, &td_len);
        char td_name[SPIFFE_ID_MAX_LEN + 1];
        snprintf(td_name, sizeof(td_name), "%.*s", (int)td_len, name);
        if ((rc = spiffe_id_from_td_path(&c->expect, td_name, CA_CLIENT_SERVER_PATH, &why)) !=
            WEFT_OK) {
            snprintf(err, err_len, "%s", why.msg);
        }
    }
    if (rc == WEFT_OK) {
        rc = ca_client_set_bundle(c, bundle, bundle_len, err, err_len);
    }
    if (rc == WEFT_OK && (rc = tls_relay_new(&c->relay, NULL)) != WEFT_OK) {
        snprintf(err, err_len, "cannot start the TLS relay");
    }
    if (rc != WEFT_OK) {
        ca_client_free(c);
        return rc;
    }
    *out = c;
    return WEFT_OK;
}

int ca_client_dial(struct ca_client *c, STACK_OF(X509) * chain, EVP_PKEY *key, grpc_channel **out,
                   char *err, size_t err_len)
{
    *out = NULL;
    int fd = socket(c->addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, &c->addr.sa, c->addr_len) != 0) {
        snprintf(err, err_len, "cannot connect to the CA: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return WEFT_EIO;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct tls_relay_creds creds = {.chain = chain, .key = key, .bundles = &c->bundles};
    struct weft_peer peer;
    int plain = -1;
    TRY(tls_relay_dial(c->relay, &plain, &peer, fd, &creds, &c->expect, err, err_len));
    *out = grpcfd_channel_new(plain, "weft-ca");
    if (*out == NULL) {
        snprintf(err, err_len, "gRPC refused the connection");
        return WEFT_EIO;
    }
    return WEFT_OK;
}

void ca_client_free(struct ca_client *c)
{
    if (c == NULL) {
        return;
    }
    tls_relay_free(c->relay);
    spiffe_bundle_set_cleanup(&c->bundles);
    free(c);
}

int ca_csr_new(EVP_PKEY *key, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    X509_REQ *req = X509_REQ_new();
    int len = -1;
    if (req != NULL && X509_REQ_set_pubkey(req, key) &&
        X509_REQ_sign(req, key, EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0) {
        len = i2d_X509_REQ(req, out);
    }
    X509_REQ_free(req);
    ENSURE(len > 0, WEFT_ECRYPTO);
    *out_len = (size_t)len;
    return WEFT_OK;
}
