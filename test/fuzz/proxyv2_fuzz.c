/* Fuzzes proxyv2_decode and proxyv2_encode. Decoding any bytes gives OK (the input advanced by a
 * bounded header), NEED_MORE (bounded, input untouched) or a named refusal (input untouched),
 * and a final answer on a prefix stays final. A decoded PROXY TCP4/TCP6 header encodes again,
 * and decode-encode-decode is stable: same addresses, same SPIFFE ID, same bytes. The encoder,
 * fed addresses and an ID from the input, accepts exactly the IDs the decoder accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <openssl/mem.h>

#include "proxy/proxyv2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_decode(int rc, const struct proxyv2 *h, const CBS *in, const uint8_t *data,
                         size_t size)
{
    if (rc == WEFT_OK) {
        if (h->header_len < PROXYV2_HEADER_LEN || h->header_len > size ||
            h->header_len > PROXYV2_MAX_LEN || CBS_data(in) != data + h->header_len ||
            CBS_len(in) != size - h->header_len) {
            abort();
        }
        if (h->spiffe_id != NULL && !proxyv2_spiffe_id_ok(h->spiffe_id, h->spiffe_id_len)) {
            abort();
        }
        if (h->family != PROXYV2_FAM_UNSPEC && h->family != PROXYV2_FAM_TCP4 &&
            h->family != PROXYV2_FAM_TCP6) {
            abort();
        }
        return;
    }
    if (CBS_data(in) != data || CBS_len(in) != size) {
        abort();
    }
    if (rc == WEFT_EAGAIN) {
        if (h->need == 0 || size + h->need > PROXYV2_MAX_LEN) {
            abort();
        }
    } else if (rc != WEFT_EPROTO || h->reason == NULL) {
        abort();
    }
}

/* encode_decoded writes |h| again; WEFT_OK or the encoder's refusal. */
static int encode_decoded(const struct proxyv2 *h, uint8_t **out, size_t *out_len)
{
    char id[PROXYV2_SPIFFE_ID_MAX + 1];
    if (h->spiffe_id != NULL) {
        memcpy(id, h->spiffe_id, h->spiffe_id_len);
        id[h->spiffe_id_len] = '\0';
    }
    CBB cbb;
    if (!CBB_init(&cbb, 64)) {
        abort();
    }
    int rc = proxyv2_encode(&cbb, (const struct sockaddr *)&h->src,
                            (const struct sockaddr *)&h->dst, h->spiffe_id ? id : NULL);
    if (rc != WEFT_OK || !CBB_finish(&cbb, out, out_len)) {
        CBB_cleanup(&cbb);
        return rc != WEFT_OK ? rc : WEFT_EINTERNAL;
    }
    return WEFT_OK;
}

static bool same(const struct proxyv2 *a, const struct proxyv2 *b)
{
    return a->command == b->command && a->family == b->family &&
           memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0 && a->spiffe_id_len == b->spiffe_id_len &&
           (a->spiffe_id_len == 0 || memcmp(a->spiffe_id, b->spiffe_id, a->spiffe_id_len) == 0);
}

static void round_trip(const struct proxyv2 *h)
{
    uint8_t *buf1 = NULL, *buf2 = NULL;
    size_t len1, len2;
    struct proxyv2 h1, h2;
    CBS in;
    if (encode_decoded(h, &buf1, &len1) != WEFT_OK) {
        abort(); /* a decoded TCP header always encodes */
    }
    CBS_init(&in, buf1, len1);
    if (proxyv2_decode(&in, &h1) != WEFT_OK || CBS_len(&in) != 0 || !same(h, &h1) ||
        h1.has_ssl != (h1.spiffe_id != NULL)) {
        abort();
    }
    if (encode_decoded(&h1, &buf2, &len2) != WEFT_OK || len1 != len2 ||
        memcmp(buf1, buf2, len1) != 0) {
        abort();
    }
    CBS_init(&in, buf2, len2);
    if (proxyv2_decode(&in, &h2) != WEFT_OK || !same(&h1, &h2)) {
        abort();
    }
    OPENSSL_free(buf1);
    OPENSSL_free(buf2);
}

/* fuzz_encoder: byte 0 picks the families, then 2 x 18 bytes of address and port, then the ID. */
static void fuzz_encoder(const uint8_t *data, size_t size)
{
    if (size < 37) {
        return;
    }
    struct sockaddr_storage ss[2];
    memset(ss, 0, sizeof(ss));
    for (int i = 0; i < 2; i++) {
        const uint8_t *a = data + 1 + 18 * i;
        if (data[0] & (1 << i)) {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss[i];
            s->sin6_family = AF_INET6;
            memcpy(&s->sin6_addr, a, 16);
            memcpy(&s->sin6_port, a + 16, 2);
        } else {
            struct sockaddr_in *s = (struct sockaddr_in *)&ss[i];
            s->sin_family = AF_INET;
            memcpy(&s->sin_addr, a, 4);
            memcpy(&s->sin_port, a + 16, 2);
        }
    }
    size_t id_len = size - 37;
    if (id_len > PROXYV2_SPIFFE_ID_MAX + 1) {
        id_len = PROXYV2_SPIFFE_ID_MAX + 1;
    }
    char id[PROXYV2_SPIFFE_ID_MAX + 2];
    memcpy(id, data + 37, id_len);
    id[id_len] = '\0';
    size_t str_len = strlen(id);
    CBB cbb;
    uint8_t *buf;
    size_t len;
    if (!CBB_init(&cbb, 64)) {
        abort();
    }
    int rc = proxyv2_encode(&cbb, (const struct sockaddr *)&ss[0], (const struct sockaddr *)&ss[1],
                            (data[0] & 4) ? NULL : id);
    bool want_ok = (data[0] & 4) || proxyv2_spiffe_id_ok((const uint8_t *)id, str_len);
    if ((rc == WEFT_OK) != want_ok || !(rc == WEFT_OK || rc == WEFT_EINVAL)) {
        abort();
    }
    if (rc != WEFT_OK) {
        CBB_cleanup(&cbb);
        return;
    }
    if (!CBB_finish(&cbb, &buf, &len)) {
        abort();
    }
    struct proxyv2 h;
    CBS in;
    CBS_init(&in, buf, len);
    if (proxyv2_decode(&in, &h) != WEFT_OK || CBS_len(&in) != 0 ||
        h.family != ((data[0] & 3) == 0 ? PROXYV2_FAM_TCP4 : PROXYV2_FAM_TCP6) ||
        ((data[0] & 4) ? h.spiffe_id != NULL
                       : (h.spiffe_id_len != str_len || memcmp(h.spiffe_id, id, str_len) != 0))) {
        abort();
    }
    OPENSSL_free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyv2 h;
    CBS in;
    CBS_init(&in, data, size);
    int rc = proxyv2_decode(&in, &h);
    check_decode(rc, &h, &in, data, size);
    if (rc == WEFT_OK && h.command == PROXYV2_CMD_PROXY && h.family != PROXYV2_FAM_UNSPEC) {
        round_trip(&h);
    }

    /* A final answer on a prefix stays final. */
    size_t cut = size / 2;
    struct proxyv2 part;
    CBS_init(&in, data, cut);
    int prc = proxyv2_decode(&in, &part);
    check_decode(prc, &part, &in, data, cut);
    if ((prc == WEFT_OK && (rc != WEFT_OK || part.header_len != h.header_len)) ||
        (prc == WEFT_EPROTO && (rc != WEFT_EPROTO || part.reason != h.reason)) ||
        (prc == WEFT_EAGAIN && rc == WEFT_OK && h.header_len < cut + part.need)) {
        abort();
    }

    fuzz_encoder(data, size);
    return 0;
}
