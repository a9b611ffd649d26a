/* Fuzzes sniff_classify: any bytes in, a verdict out. The verdict is bounded (NEED_MORE never
 * asks past SNIFF_MAX_BYTES), borrows only from the input, and is final: once a prefix has a
 * verdict other than NEED_MORE, every longer input starting with it has the same verdict and
 * reason, and a TLS_WEFT verdict never comes before the prefix's |need| was met. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const struct sniff_result *r, const uint8_t *data, size_t size)
{
    if (r->reason == NULL || r->reason[0] == '\0') {
        abort();
    }
    if (r->verdict == SNIFF_NEED_MORE) {
        if (r->need == 0 || r->need > SNIFF_MAX_BYTES - size || size >= SNIFF_MAX_BYTES) {
            abort();
        }
    } else if (r->need != 0) {
        abort();
    }
    if (r->sni != NULL) {
        if ((r->verdict != SNIFF_TLS_WEFT && r->verdict != SNIFF_TLS_OTHER) || r->sni < data ||
            r->sni_len == 0 || r->sni_len > 255 || r->sni_len > size ||
            r->sni > data + size - r->sni_len || memchr(r->sni, 0, r->sni_len) != NULL) {
            abort();
        }
    } else if (r->sni_len != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CBS in;
    struct sniff_result full, eof;
    CBS_init(&in, data, size);
    sniff_classify(&full, &in, false);
    if (CBS_data(&in) != data || CBS_len(&in) != size) {
        abort(); /* nothing consumed */
    }
    check_one(&full, data, size);
    sniff_classify(&eof, &in, true);
    check_one(&eof, data, size);
    if (full.verdict == SNIFF_NEED_MORE
            ? eof.verdict != SNIFF_PLAINTEXT
            : (eof.verdict != full.verdict || eof.reason != full.reason)) {
        abort();
    }

    /* Prefixes: a final verdict stays final. */
    size_t cuts[3] = {size / 2, size > 0 ? size - 1 : 0, size > 9 ? 9 : size};
    for (size_t i = 0; i < 3; i++) {
        struct sniff_result part;
        CBS_init(&in, data, cuts[i]);
        sniff_classify(&part, &in, false);
        check_one(&part, data, cuts[i]);
        if (part.verdict != SNIFF_NEED_MORE &&
            (part.verdict != full.verdict || part.reason != full.reason)) {
            abort();
        }
        if (part.verdict == SNIFF_NEED_MORE && full.verdict == SNIFF_TLS_WEFT &&
            size < cuts[i] + part.need) {
            abort();
        }
    }
    return 0;
}
