/* proxy/sniff.c: classify an inbound connection's first bytes (see sniff.h).
 *
 * The bytes may stop anywhere, so every read can end three ways: the field is there (STEP_OK),
 * the field lies past what the declared lengths allow (STEP_BAD: no later byte can fix that),
 * or it lies within the declared lengths but past what has arrived (STEP_MORE). A struct rd is a
 * CBS over the bytes of a structure that have arrived plus the count of its declared bytes that
 * have not, so a length prefix is checked against its parent's declared length as soon as it is
 * read, and a malformed hello is refused from the first byte that shows it. A verdict other than
 * NEED_MORE therefore never changes when more bytes arrive (the fuzz target checks this). */
#include "proxy/sniff.h"

#include <string.h>

enum step { STEP_OK, STEP_MORE, STEP_BAD };

struct rd {
    CBS cbs;        /* the bytes that have arrived */
    size_t missing; /* declared bytes that have not arrived yet, after |cbs| */
};

struct hello_info {
    bool has_alpn;
    bool offers_weft;
    const uint8_t *sni;
    size_t sni_len;
};

#define TRY_STEP(expr)                                                                             \
    do {                                                                                           \
        enum step s_ = (expr);                                                                     \
        if (s_ != STEP_OK) {                                                                       \
            return s_;                                                                             \
        }                                                                                          \
    } while (0)

static size_t rd_left(const struct rd *r);
static enum step bad(const char **why, const char *reason);
static enum step rd_bytes(struct rd *r, CBS *out, size_t n, const char *past_end, const char **why);
static enum step rd_uint(struct rd *r, uint32_t *out, size_t num_bytes, const char *past_end,
                         const char **why);
static enum step rd_sub(struct rd *r, struct rd *out, size_t n, const char *past_end,
                        const char **why);
static enum step rd_prefixed(struct rd *r, struct rd *out, size_t num_bytes, const char *past_end,
                             const char **why);
static enum step parse_hello(struct hello_info *info, struct rd *h, const char **why);
static enum step parse_extensions(struct hello_info *info, struct rd *exts, const char **why);
static enum step parse_alpn(struct hello_info *info, struct rd *body, const char **why);
static enum step parse_sni(struct hello_info *info, struct rd *body, const char **why);
static enum sniff_verdict finish(struct sniff_result *out, enum sniff_verdict v,
                                 const char *reason);
static enum sniff_verdict need_more(struct sniff_result *out, size_t have, size_t want,
                                    bool at_eof);

/* The declared bytes of |r| not read yet, arrived or not. */
static size_t rd_left(const struct rd *r) { return CBS_len(&r->cbs) + r->missing; }

static enum step bad(const char **why, const char *reason)
{
    *why = reason;
    return STEP_BAD;
}

static enum step rd_bytes(struct rd *r, CBS *out, size_t n, const char *past_end, const char **why)
{
    if (n > rd_left(r)) {
        return bad(why, past_end);
    }
    if (!CBS_get_bytes(&r->cbs, out, n)) {
        return STEP_MORE;
    }
    return STEP_OK;
}

/* rd_uint reads a big-endian integer of 1 to 3 bytes. */
static enum step rd_uint(struct rd *r, uint32_t *out, size_t num_bytes, const char *past_end,
                         const char **why)
{
    CBS b;
    TRY_STEP(rd_bytes(r, &b, num_bytes, past_end, why));
    uint32_t v = 0;
    for (size_t i = 0; i < num_bytes; i++) {
        v = (v << 8) | CBS_data(&b)[i];
    }
    *out = v;
    return STEP_OK;
}

/* rd_sub takes the next |n| declared bytes of |r| as a structure of their own, |out|, whether or
 * not they have all arrived: |r| continues after them. */
static enum step rd_sub(struct rd *r, struct rd *out, size_t n, const char *past_end,
                        const char **why)
{
    if (n > rd_left(r)) {
        return bad(why, past_end);
    }
    size_t have = n < CBS_len(&r->cbs) ? n : CBS_len(&r->cbs);
    if (!CBS_get_bytes(&r->cbs, &out->cbs, have)) {
        return bad(why, past_end); /* cannot happen: have <= CBS_len */
    }
    out->missing = n - have;
    r->missing -= out->missing;
    return STEP_OK;
}

static enum step rd_prefixed(struct rd *r, struct rd *out, size_t num_bytes, const char *past_end,
                             const char **why)
{
    uint32_t n;
    TRY_STEP(rd_uint(r, &n, num_bytes, past_end, why));
    return rd_sub(r, out, n, past_end, why);
}

/* RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2 for TLS 1.0-1.2, whose extensions block may be
 * absent). */
static enum step parse_hello(struct hello_info *info, struct rd *h, const char **why)
{
    uint32_t v;
    CBS random;
    struct rd session_id, suites, compression, exts;
    TRY_STEP(rd_uint(h, &v, 2, "ClientHello shorter than its version", why));
    if (v < 0x0301 || v > 0x0303) {
        return bad(why, "ClientHello version not TLS 1.0-1.2");
    }
    TRY_STEP(rd_bytes(h, &random, 32, "ClientHello shorter than its random", why));
    TRY_STEP(rd_uint(h, &v, 1, "ClientHello ends before session_id", why));
    if (v > 32) {
        return bad(why, "session_id longer than 32 bytes");
    }
    TRY_STEP(rd_sub(h, &session_id, v, "session_id past end of ClientHello", why));
    TRY_STEP(rd_uint(h, &v, 2, "ClientHello ends before cipher_suites", why));
    if (v < 2 || v % 2 != 0) {
        return bad(why, "cipher_suites empty or of odd length");
    }
    TRY_STEP(rd_sub(h, &suites, v, "cipher_suites past end of ClientHello", why));
    TRY_STEP(rd_uint(h, &v, 1, "ClientHello ends before compression_methods", why));
    if (v < 1) {
        return bad(why, "compression_methods empty");
    }
    TRY_STEP(rd_sub(h, &compression, v, "compression_methods past end of ClientHello", why));
    if (rd_left(h) == 0) {
        return STEP_OK; /* no extensions block: no ALPN */
    }
    TRY_STEP(rd_prefixed(h, &exts, 2, "extensions past end of ClientHello", why));
    if (rd_left(h) != 0) {
        return bad(why, "bytes after the extensions block");
    }
    return parse_extensions(info, &exts, why);
}

static enum step parse_extensions(struct hello_info *info, struct rd *exts, const char **why)
{
    bool seen_sni = false;
    while (rd_left(exts) > 0) {
        CBS header;
        uint16_t type, len;
        struct rd body;
        TRY_STEP(rd_bytes(exts, &header, 4, "extension header past end of extensions", why));
        if (!CBS_get_u16(&header, &type) || !CBS_get_u16(&header, &len)) {
            return bad(why, "extension header past end of extensions"); /* cannot happen */
        }
        TRY_STEP(rd_sub(exts, &body, len, "extension past end of extensions", why));
        /* RFC 8446 §4.2: at most one extension of each type; we look at two of them. */
        if (type == 16) { /* application_layer_protocol_negotiation, RFC 7301 */
            if (info->has_alpn) {
                return bad(why, "ALPN extension twice");
            }
            info->has_alpn = true;
            TRY_STEP(parse_alpn(info, &body, why));
        } else if (type == 0) { /* server_name, RFC 6066 §3 */
            if (seen_sni) {
                return bad(why, "server_name extension twice");
            }
            seen_sni = true;
            TRY_STEP(parse_sni(info, &body, why));
        }
    }
    return STEP_OK;
}

/* RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName opaque<1..2^8-1>. */
static enum step parse_alpn(struct hello_info *info, struct rd *body, const char **why)
{
    struct rd list;
    TRY_STEP(rd_prefixed(body, &list, 2, "ALPN list past end of extension", why));
    if (rd_left(body) != 0) {
        return bad(why, "bytes after the ALPN list");
    }
    if (rd_left(&list) == 0) {
        return bad(why, "ALPN list empty");
    }
    while (rd_left(&list) > 0) {
        uint32_t n;
        CBS name;
        TRY_STEP(rd_uint(&list, &n, 1, "ALPN list past end of extension", why));
        if (n == 0) {
            return bad(why, "ALPN protocol name empty");
        }
        TRY_STEP(rd_bytes(&list, &name, n, "ALPN protocol name past end of list", why));
        if (CBS_mem_equal(&name, (const uint8_t *)SNIFF_ALPN, strlen(SNIFF_ALPN))) {
            info->offers_weft = true;
        }
    }
    return STEP_OK;
}

/* RFC 6066 §3: ServerName server_name_list<1..2^16-1>, each a NameType and a HostName
 * opaque<1..2^16-1>. Like BoringSSL, a host_name over 255 bytes or holding a NUL is refused. */
static enum step parse_sni(struct hello_info *info, struct rd *body, const char **why)
{
    struct rd list;
    TRY_STEP(rd_prefixed(body, &list, 2, "server_name list past end of extension", why));
    if (rd_left(body) != 0) {
        return bad(why, "bytes after the server_name list");
    }
    if (rd_left(&list) == 0) {
        return bad(why, "server_name list empty");
    }
    while (rd_left(&list) > 0) {
        uint32_t type, n;
        CBS name;
        TRY_STEP(rd_uint(&list, &type, 1, "server_name past end of list", why));
        TRY_STEP(rd_uint(&list, &n, 2, "server_name past end of list", why));
        if (n == 0) {
            return bad(why, "server_name empty");
        }
        TRY_STEP(rd_bytes(&list, &name, n, "server_name past end of list", why));
        if (type == 0 && info->sni == NULL) { /* host_name */
            if (n > 255) {
                return bad(why, "server_name longer than 255 bytes");
            }
            if (memchr(CBS_data(&name), 0, n) != NULL) {
                return bad(why, "server_name holds a NUL");
            }
            info->sni = CBS_data(&name);
            info->sni_len = n;
        }
    }
    return STEP_OK;
}

static enum sniff_verdict finish(struct sniff_result *out, enum sniff_verdict v, const char *reason)
{
    out->verdict = v;
    out->reason = reason;
    return v;
}

static enum sniff_verdict need_more(struct sniff_result *out, size_t have, size_t want, bool at_eof)
{
    if (at_eof) {
        return finish(out, SNIFF_PLAINTEXT,
                      have == 0 ? "no bytes before the end" : "ended inside a TLS ClientHello");
    }
    out->need = want - have;
    return finish(out, SNIFF_NEED_MORE, "need more bytes");
}

enum sniff_verdict sniff_classify(struct sniff_result *out, const CBS *in, bool at_eof)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *p = CBS_data(in);
    size_t len = CBS_len(in);

    /* RFC 8446 §5.1: ContentType handshake(22), legacy_record_version 0x0301 (0x0303 allowed),
     * uint16 length of at most 2^14. Each byte is judged as soon as it is here. */
    if (len >= 1 && p[0] != 0x16) {
        return finish(out, SNIFF_PLAINTEXT, "not a TLS handshake record");
    }
    if ((len >= 2 && p[1] != 0x03) || (len >= 3 && (p[2] < 0x01 || p[2] > 0x03))) {
        return finish(out, SNIFF_PLAINTEXT, "record version not TLS 1.0-1.2");
    }
    if (len >= 4 && p[3] > 0x40) {
        return finish(out, SNIFF_PLAINTEXT, "record longer than 2^14");
    }
    if (len < 5) {
        return need_more(out, len, 5, at_eof);
    }
    size_t rec_len = ((size_t)p[3] << 8) | p[4];
    if (rec_len > 16384) {
        return finish(out, SNIFF_PLAINTEXT, "record longer than 2^14");
    }
    if (rec_len == 0) {
        return finish(out, SNIFF_PLAINTEXT, "empty TLS record"); /* RFC 8446 §5.1 */
    }
    if (rec_len < 4) {
        return finish(out, SNIFF_TLS_OTHER, "ClientHello spans records");
    }

    size_t have = len - 5 < rec_len ? len - 5 : rec_len;
    struct rd rec = {.missing = rec_len - have};
    CBS_init(&rec.cbs, p + 5, have);
    const char *why = NULL;
    uint32_t type, hs_len;
    /* RFC 8446 §4: HandshakeType msg_type, uint24 length. rec_len >= 4, so neither is BAD. */
    if (rd_uint(&rec, &type, 1, "", &why) != STEP_OK) {
        return need_more(out, len, 9, at_eof);
    }
    if (type != 1) {
        return finish(out, SNIFF_PLAINTEXT, "handshake message not a ClientHello");
    }
    if (rd_uint(&rec, &hs_len, 3, "", &why) != STEP_OK) {
        return need_more(out, len, 9, at_eof);
    }
    if (hs_len > rd_left(&rec)) {
        return finish(out, SNIFF_TLS_OTHER, "ClientHello spans records");
    }
    struct rd hello;
    if (rd_sub(&rec, &hello, hs_len, "", &why) != STEP_OK) {
        return finish(out, SNIFF_PLAINTEXT, "internal: ClientHello past its record");
    }

    struct hello_info info = {0};
    switch (parse_hello(&info, &hello, &why)) {
    case STEP_MORE:
        return need_more(out, len, 9 + (size_t)hs_len, at_eof);
    case STEP_BAD:
        return finish(out, SNIFF_PLAINTEXT, why);
    case STEP_OK:
        break;
    }
    /* A verdict on a hello means all of it was seen, skipped fields included. */
    if (len < 9 + (size_t)hs_len) {
        return need_more(out, len, 9 + (size_t)hs_len, at_eof);
    }
    out->sni = info.sni;
    out->sni_len = info.sni_len;
    if (info.offers_weft) {
        return finish(out, SNIFF_TLS_WEFT, "ClientHello offers ALPN weft/1");
    }
    return finish(out, SNIFF_TLS_OTHER,
                  info.has_alpn ? "ALPN without weft/1" : "ClientHello without ALPN");
}
