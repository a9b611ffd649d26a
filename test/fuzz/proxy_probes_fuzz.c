/* Fuzzes proxy/probes.h's two parsers of outside bytes. The first byte picks one: even,
 * WEFT_APP_PROBES (proxy_probes_parse: on success every probe is within its limits and found
 * by its key; on failure nothing is held and the error says why); odd, a request head from the
 * probe port (proxy_probe_request_parse: a path within its limit, and a verdict that more bytes
 * never take back; proxy_probe_head_feed, given the same bytes in pieces of a size the first byte
 * also picks: the same verdict and request, or a refusal for a refusal). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/probes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_probes(const char *json, size_t len)
{
    struct proxy_probes p;
    char err[PROXY_PROBES_ERR_LEN];
    proxy_probes_init(&p);
    int rc = proxy_probes_parse(&p, json, len, err, sizeof(err));
    if (rc != WEFT_OK) {
        if ((rc != WEFT_EINVAL && rc != WEFT_ELIMIT) || err[0] == '\0' || p.probes != NULL ||
            p.num_probes != 0) {
            abort();
        }
        return;
    }
    if (p.num_probes > PROXY_PROBES_MAX) {
        abort();
    }
    for (size_t i = 0; i < p.num_probes; i++) {
        const struct proxy_probe *pr = &p.probes[i];
        if (proxy_probes_find(&p, pr->key, strlen(pr->key)) != pr || pr->port == 0 ||
            pr->timeout_s < 1 || pr->timeout_s > PROXY_PROBES_MAX_TIMEOUT_S || pr->path[0] != '/' ||
            strlen(pr->path) > PROXY_PROBES_MAX_PATH ||
            pr->num_headers > PROXY_PROBES_MAX_HEADERS) {
            abort();
        }
        for (size_t h = 0; h < pr->num_headers; h++) {
            if (strpbrk(pr->headers[h], "\r\n") != NULL) {
                abort();
            }
        }
    }
    proxy_probes_cleanup(&p);
}

/* fuzz_pieces feeds |head| to a proxy_probe_head in pieces of |piece| bytes (as the server's
 * loop reads it) and checks that the verdict, and the request, are those of the whole. */
static void fuzz_pieces(const char *head, size_t len, size_t piece, int whole_rc,
                        const struct proxy_probe_request *whole)
{
    struct proxy_probe_head *h = proxy_probe_head_new();
    struct proxy_probe_request r;
    memset(&r, 0, sizeof(r));
    int rc = WEFT_EAGAIN;
    for (size_t off = 0; off < len && rc == WEFT_EAGAIN; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        /* a copy of exactly |n| bytes, so that ASan sees any read past the piece */
        char *p = malloc(n);
        memcpy(p, head + off, n);
        rc = proxy_probe_head_feed(h, &r, p, n);
        free(p);
    }
    /* a head both too long and broken may be refused for either, whichever the parser meets
     * first: in pieces it meets the length early */
    bool refused = rc == WEFT_EPROTO || rc == WEFT_ELIMIT;
    bool whole_refused = whole_rc == WEFT_EPROTO || whole_rc == WEFT_ELIMIT;
    if ((rc != whole_rc && !(refused && whole_refused)) ||
        (rc == WEFT_OK &&
         (r.get != whole->get || r.has_body != whole->has_body || r.path_len != whole->path_len ||
          memcmp(r.path, whole->path, r.path_len + 1) != 0))) {
        abort();
    }
    /* a verdict stays */
    if (rc != WEFT_EAGAIN && proxy_probe_head_feed(h, &r, "x", 1) != rc) {
        abort();
    }
    proxy_probe_head_free(h);
}

static void fuzz_request(const char *head, size_t len, size_t piece)
{
    struct proxy_probe_request r;
    int rc = proxy_probe_request_parse(&r, head, len);
    fuzz_pieces(head, len, piece, rc, &r);
    if (rc == WEFT_OK) {
        if (r.path_len > PROXY_PROBES_MAX_PATH || r.path[r.path_len] != '\0') {
            abort();
        }
        /* a complete head stays complete, and the same, whatever follows it */
        char *more = malloc(len + 1);
        memcpy(more, head, len);
        more[len] = 'x';
        struct proxy_probe_request r2;
        if (proxy_probe_request_parse(&r2, more, len + 1) != WEFT_OK || r2.get != r.get ||
            r2.path_len != r.path_len || memcmp(r2.path, r.path, r.path_len) != 0) {
            abort();
        }
        free(more);
    } else if (rc == WEFT_EAGAIN) {
        if (len >= PROXY_PROBES_MAX_HEAD) {
            abort();
        }
    } else if (rc != WEFT_EPROTO && rc != WEFT_ELIMIT) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    /* a copy of exactly |size - 1| bytes, so that ASan sees any read past the end */
    char *in = malloc(size > 1 ? size - 1 : 1);
    memcpy(in, data + 1, size - 1);
    if (data[0] % 2 == 0) {
        fuzz_probes(in, size - 1);
    } else {
        fuzz_request(in, size - 1, (size_t)(data[0] >> 1) + 1); /* pieces of 1 to 128 bytes */
    }
    free(in);
    return 0;
}
