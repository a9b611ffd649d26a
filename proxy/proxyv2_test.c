/* proxy/proxyv2_test.c: the contract of proxyv2_encode() and proxyv2_decode(), against a vector
 * computed by hand from HAProxy's proxy-protocol.txt §2.2. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "proxy/proxyv2.h"

#define ID "spiffe://example.org/web"

/* 192.0.2.1:56324 -> 198.51.100.7:8080, carrying ID. */
static const uint8_t VECTOR4[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
    0x21,                                                                   /* v2, PROXY */
    0x11,                                                                   /* INET, STREAM */
    0x00, 0x39,             /* 57 = 12 (addresses) + 27 (TLV 0xE0) + 18 (TLV 0x20) */
    0xc0, 0x00, 0x02, 0x01, /* src 192.0.2.1 */
    0xc6, 0x33, 0x64, 0x07, /* dst 198.51.100.7 */
    0xdc, 0x04,             /* src port 56324 */
    0x1f, 0x90,             /* dst port 8080 */
    0xe0, 0x00, 0x18,       /* weft SPIFFE ID, 24 bytes */
    's',  'p',  'i',  'f',  'f',  'e',  ':',  '/',  '/',  'e',  'x',  'a',  'm',  'p',
    'l',  'e',  '.',  'o',  'r',  'g',  '/',  'w',  'e',  'b',  0x20, 0x00, 0x0f, /* PP2_TYPE_SSL,
                                                                                     15 bytes */
    0x03,                   /* PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN */
    0x00, 0x00, 0x00, 0x00, /* verify: 0, verified */
    0x21, 0x00, 0x07,       /* PP2_SUBTYPE_SSL_VERSION, 7 bytes */
    'T',  'L',  'S',  'v',  '1',  '.',  '3',
};

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    cr_assert_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

/* encode runs proxyv2_encode into a fresh buffer (freed by the caller with OPENSSL_free). */
static int encode(uint8_t **out, size_t *out_len, const void *src, const void *dst, const char *id)
{
    CBB cbb;
    cr_assert(CBB_init(&cbb, 64));
    int rc = proxyv2_encode(&cbb, src, dst, id);
    if (rc == WEFT_OK) {
        cr_assert(CBB_finish(&cbb, out, out_len));
    } else {
        CBB_cleanup(&cbb);
    }
    return rc;
}

static int decode(struct proxyv2 *out, const uint8_t *p, size_t len)
{
    CBS in;
    CBS_init(&in, p, len);
    int rc = proxyv2_decode(&in, out);
    if (rc == WEFT_OK) {
        cr_assert_eq(CBS_data(&in), p + out->header_len);
    } else {
        cr_assert_eq(CBS_data(&in), p); /* untouched */
        cr_assert_eq(CBS_len(&in), len);
    }
    return rc;
}

static void assert_invalid(const uint8_t *p, size_t len, const char *why)
{
    struct proxyv2 h;
    cr_assert_eq(decode(&h, p, len), WEFT_EPROTO, "rc for %s", why);
    cr_assert_str_eq(h.reason, why);
}

Test(proxyv2, encodes_the_hand_computed_vector)
{
    struct sockaddr_in src = v4("192.0.2.1", 56324), dst = v4("198.51.100.7", 8080);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(encode(&buf, &len, &src, &dst, ID), WEFT_OK);
    cr_assert_eq(len, sizeof(VECTOR4));
    cr_assert_eq(memcmp(buf, VECTOR4, len), 0);
    OPENSSL_free(buf);
}

Test(proxyv2, decodes_the_hand_computed_vector)
{
    struct proxyv2 h;
    cr_assert_eq(decode(&h, VECTOR4, sizeof(VECTOR4)), WEFT_OK);
    cr_assert_eq(h.header_len, sizeof(VECTOR4));
    cr_assert_eq(h.command, PROXYV2_CMD_PROXY);
    cr_assert_eq(h.family, PROXYV2_FAM_TCP4);
    const struct sockaddr_in *s = (const struct sockaddr_in *)&h.src;
    const struct sockaddr_in *d = (const struct sockaddr_in *)&h.dst;
    struct sockaddr_in ws = v4("192.0.2.1", 56324), wd = v4("198.51.100.7", 8080);
    cr_assert_eq(s->sin_family, AF_INET);
    cr_assert_eq(s->sin_addr.s_addr, ws.sin_addr.s_addr);
    cr_assert_eq(s->sin_port, ws.sin_port);
    cr_assert_eq(d->sin_addr.s_addr, wd.sin_addr.s_addr);
    cr_assert_eq(d->sin_port, wd.sin_port);
    cr_assert_eq(h.spiffe_id_len, strlen(ID));
    cr_assert_eq(memcmp(h.spiffe_id, ID, h.spiffe_id_len), 0);
    cr_assert(h.has_ssl);
    cr_assert_eq(h.ssl_client, PROXYV2_CLIENT_SSL | PROXYV2_CLIENT_CERT_CONN);
    cr_assert_eq(h.ssl_verify, 0);
    cr_assert_eq(h.ssl_version_len, 7);
    cr_assert_eq(memcmp(h.ssl_version, "TLSv1.3", 7), 0);
}

Test(proxyv2, round_trip_v6)
{
    struct sockaddr_in6 src = v6("2001:db8::1", 443), dst = v6("2001:db8:0:1::77", 65535);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(encode(&buf, &len, &src, &dst, ID), WEFT_OK);
    cr_assert_eq(len, 16 + 36 + 27 + 18);
    cr_assert_eq(buf[13], PROXYV2_FAM_TCP6);
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, len), WEFT_OK);
    cr_assert_eq(h.family, PROXYV2_FAM_TCP6);
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h.src;
    const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)&h.dst;
    cr_assert_eq(s->sin6_family, AF_INET6);
    cr_assert_eq(memcmp(&s->sin6_addr, &src.sin6_addr, 16), 0);
    cr_assert_eq(memcmp(&d->sin6_addr, &dst.sin6_addr, 16), 0);
    cr_assert_eq(s->sin6_port, src.sin6_port);
    cr_assert_eq(d->sin6_port, dst.sin6_port);
    cr_assert_eq(h.spiffe_id_len, strlen(ID));
    OPENSSL_free(buf);
}

Test(proxyv2, mixed_families_become_v4_mapped_v6)
{
    struct sockaddr_in src = v4("192.0.2.1", 1000);
    struct sockaddr_in6 dst = v6("2001:db8::2", 80);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(encode(&buf, &len, &src, &dst, NULL), WEFT_OK);
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, len), WEFT_OK);
    cr_assert_eq(h.family, PROXYV2_FAM_TCP6);
    struct sockaddr_in6 mapped = v6("::ffff:192.0.2.1", 1000);
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h.src;
    cr_assert_eq(memcmp(&s->sin6_addr, &mapped.sin6_addr, 16), 0);
    cr_assert_eq(s->sin6_port, htons(1000));
    OPENSSL_free(buf);
}

Test(proxyv2, without_an_id_no_tlvs)
{
    struct sockaddr_in src = v4("10.0.0.1", 1), dst = v4("10.0.0.2", 2);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(encode(&buf, &len, &src, &dst, NULL), WEFT_OK);
    cr_assert_eq(len, 16 + 12);
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, len), WEFT_OK);
    cr_assert_null(h.spiffe_id);
    cr_assert(!h.has_ssl);
    OPENSSL_free(buf);
}

Test(proxyv2, encoder_refuses_bad_input)
{
    struct sockaddr_in src = v4("10.0.0.1", 1), dst = v4("10.0.0.2", 2);
    struct sockaddr unspec = {.sa_family = AF_UNIX};
    uint8_t *buf;
    size_t len;
    cr_assert_eq(encode(&buf, &len, &unspec, &dst, NULL), WEFT_EINVAL);
    cr_assert_eq(encode(&buf, &len, &src, &unspec, NULL), WEFT_EINVAL);
    cr_assert_eq(encode(&buf, &len, &src, &dst, ""), WEFT_EINVAL);
    cr_assert_eq(encode(&buf, &len, &src, &dst, "spiffe://x/\n"), WEFT_EINVAL);
    cr_assert_eq(encode(&buf, &len, &src, &dst, "spiffe://x/\xc0\x80"), WEFT_EINVAL);
    static char id[PROXYV2_SPIFFE_ID_MAX + 2];
    memset(id, 'a', PROXYV2_SPIFFE_ID_MAX);
    cr_assert_eq(encode(&buf, &len, &src, &dst, id), WEFT_OK); /* at the limit */
    OPENSSL_free(buf);
    id[PROXYV2_SPIFFE_ID_MAX] = 'a'; /* one past */
    cr_assert_eq(encode(&buf, &len, &src, &dst, id), WEFT_EINVAL);
}

Test(proxyv2, every_truncation_needs_more)
{
    for (size_t i = 0; i < sizeof(VECTOR4); i++) {
        struct proxyv2 h;
        cr_assert_eq(decode(&h, VECTOR4, i), WEFT_EAGAIN, "prefix %zu", i);
        cr_assert(h.need >= 1 && i + h.need <= sizeof(VECTOR4));
        if (i >= PROXYV2_HEADER_LEN) {
            cr_assert_eq(i + h.need, sizeof(VECTOR4));
        }
    }
}

Test(proxyv2, stops_at_the_header_end)
{
    uint8_t buf[sizeof(VECTOR4) + 5];
    memcpy(buf, VECTOR4, sizeof(VECTOR4));
    memcpy(buf + sizeof(VECTOR4), "hello", 5);
    CBS in;
    CBS_init(&in, buf, sizeof(buf));
    struct proxyv2 h;
    cr_assert_eq(proxyv2_decode(&in, &h), WEFT_OK);
    cr_assert(CBS_mem_equal(&in, (const uint8_t *)"hello", 5));
}

Test(proxyv2, local_command_is_accepted_without_addresses)
{
    /* HAProxy's health checks: LOCAL, UNSPEC, no block. */
    uint8_t buf[64];
    memcpy(buf, VECTOR4, 16);
    buf[12] = 0x20;
    buf[13] = 0x00;
    buf[14] = buf[15] = 0;
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, 16), WEFT_OK);
    cr_assert_eq(h.command, PROXYV2_CMD_LOCAL);
    cr_assert_eq(h.family, PROXYV2_FAM_UNSPEC);
    cr_assert_eq(h.src.ss_family, AF_UNSPEC);
    cr_assert_eq(h.header_len, 16);
    /* LOCAL with any family and block: all of it skipped (§2.2). */
    uint8_t local[sizeof(VECTOR4)];
    memcpy(local, VECTOR4, sizeof(VECTOR4));
    local[12] = 0x20;
    local[13] = 0x31; /* UNIX: not ours, but LOCAL discards it */
    local[30] = 0xff; /* a broken TLV: not looked at */
    cr_assert_eq(decode(&h, local, sizeof(local)), WEFT_OK);
    cr_assert_eq(h.family, PROXYV2_FAM_UNSPEC);
    cr_assert_null(h.spiffe_id);
    cr_assert_eq(h.header_len, sizeof(VECTOR4));
}

Test(proxyv2, proxy_with_unspec_family_ignores_the_block)
{
    uint8_t buf[sizeof(VECTOR4)];
    memcpy(buf, VECTOR4, sizeof(VECTOR4));
    buf[13] = 0x00;
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, sizeof(buf)), WEFT_OK);
    cr_assert_eq(h.command, PROXYV2_CMD_PROXY);
    cr_assert_eq(h.family, PROXYV2_FAM_UNSPEC);
    cr_assert_null(h.spiffe_id);
}

/* Each field, one past what it may be. */

Test(proxyv2, bad_signature)
{
    assert_invalid((const uint8_t *)"PROXY TCP4 1.2.3.4", 18, "not a PROXY v2 signature");
    assert_invalid((const uint8_t *)"\r\n\r\n\0\r\nQUIX", 11, "not a PROXY v2 signature");
    assert_invalid((const uint8_t *)"G", 1, "not a PROXY v2 signature");
}

static void assert_byte_invalid(size_t at, uint8_t value, const char *why)
{
    uint8_t buf[sizeof(VECTOR4)];
    memcpy(buf, VECTOR4, sizeof(VECTOR4));
    buf[at] = value;
    assert_invalid(buf, sizeof(buf), why);
    assert_invalid(buf, at + 1, why); /* refused as soon as the byte is in */
}

Test(proxyv2, version_not_2)
{
    assert_byte_invalid(12, 0x11, "version not 2");
    assert_byte_invalid(12, 0x31, "version not 2");
}

Test(proxyv2, command_not_local_or_proxy)
{
    assert_byte_invalid(12, 0x22, "command not LOCAL or PROXY");
}

Test(proxyv2, family_not_tcp)
{
    const char *why = "family/transport not UNSPEC, TCP4 or TCP6";
    assert_byte_invalid(13, 0x12, why); /* UDP over IPv4 */
    assert_byte_invalid(13, 0x22, why); /* UDP over IPv6 */
    assert_byte_invalid(13, 0x31, why); /* UNIX stream */
    assert_byte_invalid(13, 0x10, why); /* INET, UNSPEC transport */
    assert_byte_invalid(13, 0x41, why);
}

Test(proxyv2, length_shorter_than_addresses)
{
    uint8_t buf[sizeof(VECTOR4)];
    memcpy(buf, VECTOR4, sizeof(VECTOR4));
    buf[15] = 11; /* TCP4 needs 12 */
    assert_invalid(buf, 16, "length shorter than the address block");
    buf[13] = PROXYV2_FAM_TCP6;
    buf[15] = 35; /* TCP6 needs 36 */
    assert_invalid(buf, 16, "length shorter than the address block");
    buf[15] = 36;
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, 16 + 36), WEFT_OK);
}

/* with_tlvs builds VECTOR4's addresses followed by |tlvs|. */
static size_t with_tlvs(uint8_t *out, const void *tlvs, size_t tlvs_len)
{
    memcpy(out, VECTOR4, 28);
    memcpy(out + 28, tlvs, tlvs_len);
    out[14] = (uint8_t)((12 + tlvs_len) >> 8);
    out[15] = (uint8_t)(12 + tlvs_len);
    return 28 + tlvs_len;
}

Test(proxyv2, tlv_past_end_of_header)
{
    uint8_t buf[128];
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x05"
                             "abcd",
                             7),
                   "TLV past end of header");
    assert_invalid(buf, with_tlvs(buf, "\x04\x00", 2), "TLV past end of header");
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, with_tlvs(buf, "\x04\x00\x02xx", 5)), WEFT_OK); /* NOOP */
}

Test(proxyv2, spiffe_id_tlv_limits)
{
    static uint8_t tlv[3 + PROXYV2_SPIFFE_ID_MAX + 1];
    static uint8_t buf[28 + sizeof(tlv)];
    assert_invalid(buf, with_tlvs(buf, "\xe0\x00\x00", 3),
                   "SPIFFE ID TLV empty or over 2048 bytes");
    tlv[0] = 0xe0;
    tlv[1] = (PROXYV2_SPIFFE_ID_MAX + 1) >> 8;
    tlv[2] = (PROXYV2_SPIFFE_ID_MAX + 1) & 0xff;
    memset(tlv + 3, 'a', PROXYV2_SPIFFE_ID_MAX + 1);
    assert_invalid(buf, with_tlvs(buf, tlv, sizeof(tlv)), "SPIFFE ID TLV empty or over 2048 bytes");
    tlv[2] -= 1;
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, with_tlvs(buf, tlv, sizeof(tlv) - 1)), WEFT_OK);
    cr_assert_eq(h.spiffe_id_len, PROXYV2_SPIFFE_ID_MAX);
}

Test(proxyv2, spiffe_id_tlv_not_printable_utf8)
{
    const char *why = "SPIFFE ID TLV not printable UTF-8";
    uint8_t buf[128];
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x03"
                             "a\x00"
                             "b",
                             6),
                   why);
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x02"
                             "a\x7f",
                             5),
                   why);
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x03"
                             "a\xc2\x85",
                             6),
                   why); /* C1 NEL */
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x03"
                             "a\xc0\xaf",
                             6),
                   why); /* overlong */
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x04"
                             "\xed\xa0\x80"
                             "a",
                             7),
                   why); /* surrogate */
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x02"
                             "a\xe2",
                             5),
                   why); /* cut short */
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x04"
                             "\xf4\x90\x80\x80",
                             7),
                   why); /* > U+10FFFF */
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x01"
                             "\xff",
                             4),
                   why);
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf,
                        with_tlvs(buf,
                                  "\xe0\x00\x05"
                                  "\xc3\xa9\xe2\x82\xac",
                                  8)),
                 WEFT_OK); /* é€ */
    cr_assert_eq(decode(&h, buf,
                        with_tlvs(buf,
                                  "\xe0\x00\x04"
                                  "\xf0\x9f\x98\x80",
                                  7)),
                 WEFT_OK);
}

Test(proxyv2, spiffe_id_tlv_twice)
{
    uint8_t buf[128];
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\xe0\x00\x01"
                             "a"
                             "\xe0\x00\x01"
                             "b",
                             8),
                   "SPIFFE ID TLV twice");
}

Test(proxyv2, ssl_tlv_limits)
{
    uint8_t buf[128];
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\x20\x00\x04"
                             "\x03\x00\x00\x00",
                             7),
                   "SSL TLV shorter than 5 bytes");
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\x20\x00\x08"
                             "\x03\x00\x00\x00\x00"
                             "\x21\x00\x01",
                             11),
                   "SSL sub-TLV past end of SSL TLV");
    assert_invalid(buf,
                   with_tlvs(buf,
                             "\x20\x00\x05"
                             "\x03\x00\x00\x00\x00"
                             "\x20\x00\x05"
                             "\x03\x00\x00\x00\x00",
                             16),
                   "SSL TLV twice");
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf,
                        with_tlvs(buf,
                                  "\x20\x00\x05"
                                  "\x01\x00\x00\x00\x01",
                                  8)),
                 WEFT_OK);
    cr_assert(h.has_ssl);
    cr_assert_eq(h.ssl_verify, 1);
    cr_assert_null(h.ssl_version);
}

Test(proxyv2, largest_header)
{
    /* A NOOP TLV filling the uint16 length: the longest header there is. */
    static uint8_t buf[PROXYV2_MAX_LEN];
    memcpy(buf, VECTOR4, 28);
    buf[14] = buf[15] = 0xff;
    size_t tlv = 65535 - 12 - 3;
    buf[28] = 0x04;
    buf[29] = (uint8_t)(tlv >> 8);
    buf[30] = (uint8_t)tlv;
    struct proxyv2 h;
    cr_assert_eq(decode(&h, buf, 16), WEFT_EAGAIN);
    cr_assert_eq(16 + h.need, PROXYV2_MAX_LEN);
    cr_assert_eq(decode(&h, buf, sizeof(buf)), WEFT_OK);
    cr_assert_eq(h.header_len, PROXYV2_MAX_LEN);
}
