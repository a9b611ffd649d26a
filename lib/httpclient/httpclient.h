/* lib/httpclient/httpclient.h: one HTTP/1.1 request, blocking and bounded, over plain TCP or TLS
 * by BoringSSL: what the agent needs to read the kubelet's pod list (GET with a bearer token,
 * HTTPS with the cluster's CA) and to post alerts (Alertmanager v2).
 *
 * The response is parsed by libhttp-parser (Content-Length, chunked, or to the end of the
 * connection). Everything the server controls is bounded: the whole exchange by |timeout_ms|,
 * the body by |max_body| (a longer one is an error, not a truncation). Every request says
 * "Connection: close": no connection is kept.
 *
 * HTTPS verifies the server's chain against |ca_file| (PEM) and its name against the URL's host
 * (DNS name or IP address), TLS 1.2 or 1.3. |insecure_skip_verify| turns both checks off, for a
 * kubelet whose serving certificate nobody signed (kind, minikube); the connection is then
 * encrypted but its peer is unknown, and the caller should say so in its logs. */
#ifndef WEFT_LIB_HTTPCLIENT_HTTPCLIENT_H
#define WEFT_LIB_HTTPCLIENT_HTTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define HTTPCLIENT_MAX_URL 2048
#define HTTPCLIENT_MAX_HEAD 16384 /* bytes of the request's head we build */
#define HTTPCLIENT_DEFAULT_TIMEOUT_MS 10000
#define HTTPCLIENT_DEFAULT_MAX_BODY (1 << 20)

struct httpclient_request {
    const char *method; /* "GET", "POST", ... */
    const char *url;    /* http://HOST[:PORT]/PATH or https://...; HOST a name, IPv4 or [IPv6] */
    const char *const *headers; /* "Name: value" lines, without CRLF; |num_headers| of them */
    size_t num_headers;
    const void *body; /* sent with a Content-Length; NULL and 0 for none */
    size_t body_len;
    int timeout_ms;      /* 0: HTTPCLIENT_DEFAULT_TIMEOUT_MS */
    size_t max_body;     /* 0: HTTPCLIENT_DEFAULT_MAX_BODY */
    const char *ca_file; /* https: the CAs to verify the server against (PEM) */
    bool insecure_skip_verify;
};

struct httpclient_response {
    int status;    /* 200, 404, ... */
    uint8_t *body; /* malloc'd, NUL-terminated after |body_len| bytes; free with free() */
    size_t body_len;
};

/* httpclient_do sends |req| and reads the whole response into |resp| (any status: the caller
 * decides what a 500 means). Failures before a complete response are errors with a sentence in
 * |err| naming the URL's host and what went wrong: WEFT_EINVAL for a bad URL or request,
 * WEFT_EIO for name lookup, connect, read or write failures and timeouts, WEFT_ECRYPTO for a
 * TLS handshake or verification failure, WEFT_EPROTO for a response that is not HTTP/1.x,
 * WEFT_ELIMIT for a body over |max_body|. |resp| is then empty. */
WEFT_MUST_USE int httpclient_do(const struct httpclient_request *req,
                                struct httpclient_response *resp, char *err, size_t err_len);

/* httpclient_response_free frees the body and zeroes |resp|. */
void httpclient_response_free(struct httpclient_response *resp);

#endif
