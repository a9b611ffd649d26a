/* proxy/sniff_test.c: the contract of sniff_classify(). Real ClientHellos come from BoringSSL's
 * own client at test time (a test may include <openssl/ssl.h>; the proxy's code may not); the
 * malformed ones are built field by field, one per limit. */
#include <criterion/criterion.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/ssl.h>

#include "proxy/sniff.h"

#define HELLO_CAP 4096

/* client_hello writes BoringSSL's first flight for a client offering the wire-format ALPN list
 * |alpn| (none when NULL) and SNI |sni| (none when NULL); |max_version| 0 for the default. */
static size_t client_hello(uint8_t *out, const char *alpn, size_t alpn_len, const char *sni,
                           uint16_t max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    cr_assert_not_null(ctx);
    if (max_version != 0) {
        cr_assert(SSL_CTX_set_max_proto_version(ctx, max_version));
    }
    SSL *ssl = SSL_new(ctx);
    cr_assert_not_null(ssl);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    cr_assert(rbio != NULL && wbio != NULL);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    if (alpn != NULL) {
        cr_assert_eq(SSL_set_alpn_protos(ssl, (const uint8_t *)alpn, alpn_len), 0);
    }
    if (sni != NULL) {
        cr_assert(SSL_set_tlsext_host_name(ssl, sni));
    }
    int rc = SSL_do_handshake(ssl);
    cr_assert_eq(SSL_get_error(ssl, rc), SSL_ERROR_WANT_READ);
    const uint8_t *data;
    size_t len;
    cr_assert(BIO_mem_contents(wbio, &data, &len));
    cr_assert(len > 9 && len <= HELLO_CAP);
    memcpy(out, data, len);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return len;
}

static enum sniff_verdict classify(struct sniff_result *r, const uint8_t *p, size_t len,
                                   bool at_eof)
{
    CBS in;
    CBS_init(&in, p, len);
    enum sniff_verdict v = sniff_classify(r, &in, at_eof);
    cr_assert_eq(v, r->verdict);
    cr_assert_not_null(r->reason);
    cr_assert_eq(CBS_data(&in), p); /* nothing consumed */
    cr_assert_eq(CBS_len(&in), len);
    return v;
}

static void assert_verdict(const uint8_t *p, size_t len, enum sniff_verdict want,
                           const char *reason)
{
    struct sniff_result r;
    classify(&r, p, len, false);
    cr_assert_eq(r.verdict, want, "verdict %d, want %d (%s)", r.verdict, want, r.reason);
    if (reason != NULL) {
        cr_assert_str_eq(r.reason, reason);
    }
}

/* Every proper prefix is NEED_MORE with a bounded |need| that never points past the hello's
 * end, and exactly the rest once the handshake header is in. */
static void assert_prefixes_need_more(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        struct sniff_result r;
        cr_assert_eq(classify(&r, p, i, false), SNIFF_NEED_MORE, "prefix %zu: %s", i, r.reason);
        cr_assert(r.need >= 1 && i + r.need <= len, "prefix %zu need %zu", i, r.need);
        cr_assert(i + r.need <= SNIFF_MAX_BYTES);
        if (i >= 9) {
            cr_assert_eq(i + r.need, len);
        }
        cr_assert_eq(classify(&r, p, i, true), SNIFF_PLAINTEXT);
    }
}

Test(sniff, boringssl_hello_with_weft_alpn)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, "\x06weft/1", 7, NULL, 0);
    struct sniff_result r;
    cr_assert_eq(classify(&r, h, n, false), SNIFF_TLS_WEFT);
    cr_assert_str_eq(r.reason, "ClientHello offers ALPN weft/1");
    cr_assert_eq(r.need, 0);
    cr_assert_null(r.sni);
    assert_prefixes_need_more(h, n);
}

Test(sniff, weft_among_other_protocols)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, "\x02h2\x08http/1.1\x06weft/1", 19, NULL, 0);
    assert_verdict(h, n, SNIFF_TLS_WEFT, NULL);
    n = client_hello(h, "\x06weft/1\x02h2", 10, NULL, 0);
    assert_verdict(h, n, SNIFF_TLS_WEFT, NULL);
}

Test(sniff, boringssl_hello_with_h2_only)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, "\x02h2", 3, NULL, 0);
    assert_verdict(h, n, SNIFF_TLS_OTHER, "ALPN without weft/1");
    assert_prefixes_need_more(h, n);
}

Test(sniff, near_misses_of_weft_are_other)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, "\x05weft/\x07weft/10\x06WEFT/1", 21, NULL, 0);
    assert_verdict(h, n, SNIFF_TLS_OTHER, "ALPN without weft/1");
}

Test(sniff, boringssl_hello_without_alpn)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, NULL, 0, NULL, 0);
    assert_verdict(h, n, SNIFF_TLS_OTHER, "ClientHello without ALPN");
    assert_prefixes_need_more(h, n);
}

Test(sniff, tls12_only_client)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, "\x06weft/1", 7, NULL, TLS1_2_VERSION);
    assert_verdict(h, n, SNIFF_TLS_WEFT, NULL);
}

Test(sniff, extracts_sni)
{
    uint8_t h[HELLO_CAP];
    size_t n = client_hello(h, "\x06weft/1", 7, "api.example.org", 0);
    struct sniff_result r;
    cr_assert_eq(classify(&r, h, n, false), SNIFF_TLS_WEFT);
    cr_assert_eq(r.sni_len, strlen("api.example.org"));
    cr_assert_eq(memcmp(r.sni, "api.example.org", r.sni_len), 0);
    cr_assert(r.sni > h && r.sni + r.sni_len <= h + n); /* borrowed from the input */
}

Test(sniff, bytes_after_the_hello_are_not_read)
{
    uint8_t h[HELLO_CAP + 16];
    size_t n = client_hello(h, "\x06weft/1", 7, NULL, 0);
    memcpy(h + n, "\x17\x03\x03\x00\x05hello", 10);
    assert_verdict(h, n + 10, SNIFF_TLS_WEFT, NULL);
}

/* Plaintext protocols, client-first and otherwise. */

Test(sniff, http_request_is_plaintext)
{
    const char *get = "GET / HTTP/1.1\r\nHost: web\r\n\r\n";
    assert_verdict((const uint8_t *)get, strlen(get), SNIFF_PLAINTEXT,
                   "not a TLS handshake record");
    assert_verdict((const uint8_t *)get, 1, SNIFF_PLAINTEXT, "not a TLS handshake record");
}

Test(sniff, smtp_ehlo_is_plaintext)
{
    const char *ehlo = "EHLO client.example.org\r\n";
    assert_verdict((const uint8_t *)ehlo, strlen(ehlo), SNIFF_PLAINTEXT,
                   "not a TLS handshake record");
}

Test(sniff, postgres_startup_is_plaintext)
{
    /* Int32 length, Int32 protocol 3.0 (196608), "user\0app\0\0". */
    static const uint8_t startup[] = {0,   0,   0, 19,  0,   3,   0, 0, 'u', 's',
                                      'e', 'r', 0, 'a', 'p', 'p', 0, 0, 0};
    assert_verdict(startup, sizeof(startup), SNIFF_PLAINTEXT, "not a TLS handshake record");
    static const uint8_t ssl_request[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    assert_verdict(ssl_request, sizeof(ssl_request), SNIFF_PLAINTEXT, NULL);
}

Test(sniff, empty_read)
{
    struct sniff_result r;
    cr_assert_eq(classify(&r, (const uint8_t *)"", 0, false), SNIFF_NEED_MORE);
    cr_assert_eq(r.need, 5);
    cr_assert_eq(classify(&r, (const uint8_t *)"", 0, true), SNIFF_PLAINTEXT);
    cr_assert_str_eq(r.reason, "no bytes before the end");
}

/* The record header, one limit at a time. */

Test(sniff, other_record_types_are_plaintext)
{
    assert_verdict((const uint8_t *)"\x17\x03\x03\x00\x10", 5, SNIFF_PLAINTEXT,
                   "not a TLS handshake record");
    /* SSL 2.0's CLIENT-HELLO (RFC 6101 appendix E) is not TLS. */
    assert_verdict((const uint8_t *)"\x80\x2e\x01\x03\x01", 5, SNIFF_PLAINTEXT, NULL);
}

Test(sniff, record_version_outside_tls10_to_12)
{
    const char *why = "record version not TLS 1.0-1.2";
    assert_verdict((const uint8_t *)"\x16\x02", 2, SNIFF_PLAINTEXT, why);
    assert_verdict((const uint8_t *)"\x16\x03\x00", 3, SNIFF_PLAINTEXT, why); /* SSL 3.0 */
    assert_verdict((const uint8_t *)"\x16\x03\x04", 3, SNIFF_PLAINTEXT, why);
    assert_verdict((const uint8_t *)"\x16\x03\x01", 3, SNIFF_NEED_MORE, NULL);
    assert_verdict((const uint8_t *)"\x16\x03\x03", 3, SNIFF_NEED_MORE, NULL);
}

Test(sniff, record_length_over_2_14)
{
    assert_verdict((const uint8_t *)"\x16\x03\x01\x40\x01", 5, SNIFF_PLAINTEXT,
                   "record longer than 2^14");
    assert_verdict((const uint8_t *)"\x16\x03\x01\x41", 4, SNIFF_PLAINTEXT,
                   "record longer than 2^14");
    struct sniff_result r;
    cr_assert_eq(classify(&r, (const uint8_t *)"\x16\x03\x01\x40\x00", 5, false), SNIFF_NEED_MORE);
    cr_assert_eq(r.need, 4); /* the handshake header first */
}

Test(sniff, empty_record)
{
    assert_verdict((const uint8_t *)"\x16\x03\x01\x00\x00", 5, SNIFF_PLAINTEXT, "empty TLS record");
}

Test(sniff, handshake_not_a_client_hello)
{
    assert_verdict((const uint8_t *)"\x16\x03\x03\x00\x30\x02", 6, SNIFF_PLAINTEXT,
                   "handshake message not a ClientHello");
}

Test(sniff, hello_spanning_records_is_other)
{
    /* The handshake message claims 0x100 bytes, its record holds 0x30. */
    assert_verdict((const uint8_t *)"\x16\x03\x01\x00\x30\x01\x00\x01\x00", 9, SNIFF_TLS_OTHER,
                   "ClientHello spans records");
    assert_verdict((const uint8_t *)"\x16\x03\x01\x00\x02", 5, SNIFF_TLS_OTHER,
                   "ClientHello spans records");
}

/* Hand-built ClientHellos: every field as given, in one record. */
struct hello {
    uint16_t version;
    size_t session_id_len;
    size_t suites_len;
    size_t compression_len;
    bool no_extensions;
    const char *exts; /* the extensions block's contents */
    size_t exts_len;
    const char *trailer; /* bytes after the extensions, inside the ClientHello */
    size_t trailer_len;
};

static size_t build(uint8_t *out, const struct hello *s)
{
    CBB cbb, rec, hs, body, v;
    uint8_t *data;
    size_t len;
    cr_assert(CBB_init(&cbb, 512));
    cr_assert(CBB_add_u8(&cbb, 0x16) && CBB_add_u16(&cbb, 0x0301) &&
              CBB_add_u16_length_prefixed(&cbb, &rec) && CBB_add_u8(&rec, 1) &&
              CBB_add_u24_length_prefixed(&rec, &hs));
    cr_assert(CBB_add_u16(&hs, s->version != 0 ? s->version : 0x0303) &&
              CBB_add_space(&hs, &data, 32));
    memset(data, 0xaa, 32);
    cr_assert(CBB_add_u8_length_prefixed(&hs, &v) && CBB_add_space(&v, &data, s->session_id_len));
    memset(data, 0x55, s->session_id_len);
    cr_assert(CBB_add_u16_length_prefixed(&hs, &v) && CBB_add_space(&v, &data, s->suites_len));
    memset(data, 0x13, s->suites_len);
    cr_assert(CBB_add_u8_length_prefixed(&hs, &v) && CBB_add_space(&v, &data, s->compression_len));
    memset(data, 0, s->compression_len);
    if (!s->no_extensions) {
        cr_assert(CBB_add_u16_length_prefixed(&hs, &body) &&
                  CBB_add_bytes(&body, (const uint8_t *)s->exts, s->exts_len));
    }
    cr_assert(CBB_add_bytes(&hs, (const uint8_t *)s->trailer, s->trailer_len));
    cr_assert(CBB_finish(&cbb, &data, &len));
    memcpy(out, data, len);
    OPENSSL_free(data);
    return len;
}

#define ALPN_WEFT "\x00\x10\x00\x09\x00\x07\x06weft/1"

static const struct hello GOOD = {
    .session_id_len = 32,
    .suites_len = 2,
    .compression_len = 1,
    .exts = ALPN_WEFT,
    .exts_len = 13,
};

/* assert_refused checks the verdict on the whole hello, and that the verdict came no later than
 * the first |at| bytes (the first byte that shows the fault). */
static void assert_refused(const struct hello *s, size_t at, const char *why)
{
    uint8_t h[1024];
    size_t n = build(h, s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, why);
    assert_verdict(h, at, SNIFF_PLAINTEXT, why);
    struct sniff_result r;
    cr_assert_eq(classify(&r, h, at - 1, false), SNIFF_NEED_MORE, "%s", r.reason);
}

Test(sniff, hand_built_hello_is_weft)
{
    uint8_t h[1024];
    size_t n = build(h, &GOOD);
    assert_verdict(h, n, SNIFF_TLS_WEFT, NULL);
    assert_prefixes_need_more(h, n);
    struct hello s = GOOD;
    s.no_extensions = true;
    n = build(h, &s);
    assert_verdict(h, n, SNIFF_TLS_OTHER, "ClientHello without ALPN");
}

Test(sniff, hello_version_outside_tls10_to_12)
{
    struct hello s = GOOD;
    s.version = 0x0300;
    assert_refused(&s, 11, "ClientHello version not TLS 1.0-1.2");
    s.version = 0x0304;
    assert_refused(&s, 11, "ClientHello version not TLS 1.0-1.2");
}

Test(sniff, session_id_33)
{
    struct hello s = GOOD;
    s.session_id_len = 33;
    assert_refused(&s, 5 + 4 + 2 + 32 + 1, "session_id longer than 32 bytes");
}

Test(sniff, cipher_suites_odd_or_empty)
{
    struct hello s = GOOD;
    s.session_id_len = 0;
    s.suites_len = 3;
    assert_refused(&s, 5 + 4 + 2 + 32 + 1 + 2, "cipher_suites empty or of odd length");
    s.suites_len = 0;
    assert_refused(&s, 5 + 4 + 2 + 32 + 1 + 2, "cipher_suites empty or of odd length");
}

Test(sniff, compression_methods_empty)
{
    struct hello s = GOOD;
    s.session_id_len = 0;
    s.compression_len = 0;
    assert_refused(&s, 5 + 4 + 2 + 32 + 1 + 2 + 2 + 1, "compression_methods empty");
}

Test(sniff, bytes_after_extensions)
{
    struct hello s = GOOD;
    s.trailer = "x";
    s.trailer_len = 1;
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "bytes after the extensions block");
}

Test(sniff, extension_length_past_the_end)
{
    struct hello s = GOOD;
    s.exts = "\x00\x10\x00\x40\x00\x07\x06weft/1"; /* claims 64 bytes, 9 follow */
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "extension past end of extensions");
    /* Known as soon as the length is: the extensions block declares 13 bytes. */
    assert_verdict(h, n - 9, SNIFF_PLAINTEXT, "extension past end of extensions");
    s.exts = "\x00\x10\x00"; /* half an extension header */
    s.exts_len = 3;
    n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "extension header past end of extensions");
}

Test(sniff, alpn_list_empty)
{
    struct hello s = GOOD;
    s.exts = "\x00\x10\x00\x02\x00\x00";
    s.exts_len = 6;
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "ALPN list empty");
}

Test(sniff, alpn_protocol_name_empty)
{
    struct hello s = GOOD;
    s.exts = "\x00\x10\x00\x0a\x00\x08\x06weft/1\x00";
    s.exts_len = 14;
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "ALPN protocol name empty");
}

Test(sniff, alpn_name_past_end_of_list)
{
    struct hello s = GOOD;
    s.exts = "\x00\x10\x00\x09\x00\x07\x07weft/1";
    s.exts_len = 13;
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "ALPN protocol name past end of list");
}

Test(sniff, alpn_list_shorter_than_extension)
{
    struct hello s = GOOD;
    s.exts = "\x00\x10\x00\x0a\x00\x07\x06weft/1\x00";
    s.exts_len = 14;
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "bytes after the ALPN list");
}

Test(sniff, alpn_twice)
{
    struct hello s = GOOD;
    s.exts = ALPN_WEFT ALPN_WEFT;
    s.exts_len = 26;
    uint8_t h[1024];
    size_t n = build(h, &s);
    assert_verdict(h, n, SNIFF_PLAINTEXT, "ALPN extension twice");
}

Test(sniff, server_name_limits)
{
    struct hello s = GOOD;
    uint8_t h[1024];
    s.exts = "\x00\x00\x00\x02\x00\x00" ALPN_WEFT;
    s.exts_len = 6 + 13;
    assert_verdict(h, build(h, &s), SNIFF_PLAINTEXT, "server_name list empty");
    s.exts = "\x00\x00\x00\x05\x00\x03\x00\x00\x00" ALPN_WEFT;
    s.exts_len = 9 + 13;
    assert_verdict(h, build(h, &s), SNIFF_PLAINTEXT, "server_name empty");
    s.exts = "\x00\x00\x00\x06\x00\x04\x00\x00\x01\x00" ALPN_WEFT;
    s.exts_len = 10 + 13;
    assert_verdict(h, build(h, &s), SNIFF_PLAINTEXT, "server_name holds a NUL");
    s.exts = "\x00\x00\x00\x06\x00\x04\x00\x00\x01w\x00\x00\x00\x06\x00\x04\x00\x00\x01w";
    s.exts_len = 20;
    assert_verdict(h, build(h, &s), SNIFF_PLAINTEXT, "server_name extension twice");
}

Test(sniff, server_name_over_255)
{
    char exts[300];
    memcpy(exts, "\x00\x00\x01\x05\x01\x03\x00\x01\x00", 9); /* ext 261, list 259, name 256 */
    memset(exts + 9, 'a', 256);
    struct hello s = GOOD;
    s.exts = exts;
    s.exts_len = 9 + 256;
    uint8_t h[1024];
    assert_verdict(h, build(h, &s), SNIFF_PLAINTEXT, "server_name longer than 255 bytes");
    exts[7] = 0x00; /* 255 bytes: fine */
    exts[8] = (char)0xff;
    exts[5] = 0x02;
    exts[3] = 0x04;
    s.exts_len = 9 + 255;
    struct sniff_result r;
    size_t n = build(h, &s);
    cr_assert_eq(classify(&r, h, n, false), SNIFF_TLS_OTHER, "%s", r.reason);
    cr_assert_eq(r.sni_len, 255);
}

Test(sniff, unknown_extensions_are_skipped)
{
    struct hello s = GOOD;
    s.exts = "\xfa\xfa\x00\x00\x00\x2b\x00\x03\x02\x03\x04" ALPN_WEFT;
    s.exts_len = 11 + 13;
    uint8_t h[1024];
    assert_verdict(h, build(h, &s), SNIFF_TLS_WEFT, NULL);
}

Test(sniff, largest_record_needs_at_most_the_cap)
{
    /* A 2^14-byte record whose hello fills it: NEED_MORE up to SNIFF_MAX_BYTES exactly. */
    static char exts[16384];
    size_t pad = 16384 - 4 - (2 + 32 + 1 + 2 + 2 + 1 + 1 + 2) - 13 - 4;
    memcpy(exts, ALPN_WEFT, 13);
    memcpy(exts + 13, "\x00\x15", 2); /* padding, RFC 7685 */
    exts[15] = (char)(pad >> 8);
    exts[16] = (char)pad;
    struct hello s = GOOD;
    s.session_id_len = 0;
    s.exts = exts;
    s.exts_len = 13 + 4 + pad;
    static uint8_t h[SNIFF_MAX_BYTES + 64];
    size_t n = build(h, &s);
    cr_assert_eq(n, SNIFF_MAX_BYTES);
    struct sniff_result r;
    cr_assert_eq(classify(&r, h, 5, false), SNIFF_NEED_MORE);
    cr_assert_eq(classify(&r, h, 9, false), SNIFF_NEED_MORE);
    cr_assert_eq(9 + r.need, SNIFF_MAX_BYTES);
    assert_verdict(h, n, SNIFF_TLS_WEFT, NULL);
}
