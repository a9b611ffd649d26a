/* proxy/proxyv2.c: PROXY protocol v2 headers (see proxyv2.h; HAProxy proxy-protocol.txt §2.2). */
#include "proxy/proxyv2.h"

#include <string.h>
#include <netinet/in.h>

#define ADDR4_LEN 12 /* §2.2: src, dst (4 bytes each), src port, dst port */
#define ADDR6_LEN 36 /* §2.2: src, dst (16 bytes each), src port, dst port */

static int fail(struct proxyv2 *out, const char *reason);
static bool to_v6(const struct sockaddr *sa, uint8_t out_addr[16], uint16_t *out_port);
static int add_tlv(CBB *cbb, uint8_t type, const uint8_t *value, size_t len);
static int add_ssl_tlv(CBB *cbb);
static int decode_addresses(struct proxyv2 *out, CBS *block);
static int decode_tlvs(struct proxyv2 *out, CBS *tlvs);
static int decode_ssl(struct proxyv2 *out, CBS *value);

static int fail(struct proxyv2 *out, const char *reason)
{
    out->reason = reason;
    return WEFT_EPROTO;
}

bool proxyv2_spiffe_id_ok(const uint8_t *id, size_t len)
{
    /* RFC 3629 §3-4: the lead byte gives the length; the shortest form only; no surrogates. */
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (len == 0 || len > PROXYV2_SPIFFE_ID_MAX) {
        return false;
    }
    size_t i = 0;
    while (i < len) {
        uint8_t c = id[i];
        uint32_t cp;
        size_t n;
        if (c < 0x80) {
            cp = c;
            n = 1;
        } else if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            n = 2;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            n = 3;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            n = 4;
        } else {
            return false;
        }
        if (n > len - i) {
            return false;
        }
        for (size_t k = 1; k < n; k++) {
            if ((id[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (id[i + k] & 0x3F);
        }
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
            return false; /* C0, DEL, C1: not printable */
        }
        i += n;
    }
    return true;
}

/* to_v6 writes |sa|'s address as 16 bytes (IPv4 as ::ffff:a.b.c.d, RFC 4291 §2.5.5.2). */
static bool to_v6(const struct sockaddr *sa, uint8_t out_addr[16], uint16_t *out_port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(out_addr, &in6->sin6_addr, 16);
        *out_port = ntohs(in6->sin6_port);
        return true;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(out_addr, 0, 10);
        out_addr[10] = out_addr[11] = 0xff;
        memcpy(out_addr + 12, &in->sin_addr, 4);
        *out_port = ntohs(in->sin_port);
        return true;
    }
    return false;
}

static int add_tlv(CBB *cbb, uint8_t type, const uint8_t *value, size_t len)
{
    CBB v;
    if (!CBB_add_u8(cbb, type) || !CBB_add_u16_length_prefixed(cbb, &v) ||
        !CBB_add_bytes(&v, value, len) || !CBB_flush(cbb)) {
        return WEFT_EINTERNAL;
    }
    return WEFT_OK;
}

/* §2.2.5 PP2_TYPE_SSL: uint8 client, uint32 verify (0: the client certificate verified), then
 * sub-TLVs. The mesh's inbound TLS is always mutual and 1.3 (issue 6, "Inbound"). */
static int add_ssl_tlv(CBB *cbb)
{
    static const char version[] = "TLSv1.3";
    CBB v;
    if (!CBB_add_u8(cbb, PROXYV2_TLV_SSL) || !CBB_add_u16_length_prefixed(cbb, &v) ||
        !CBB_add_u8(&v, PROXYV2_CLIENT_SSL | PROXYV2_CLIENT_CERT_CONN) || !CBB_add_u32(&v, 0) ||
        add_tlv(&v, PROXYV2_SUBTYPE_SSL_VERSION, (const uint8_t *)version, strlen(version)) !=
            WEFT_OK ||
        !CBB_flush(cbb)) {
        return WEFT_EINTERNAL;
    }
    return WEFT_OK;
}

int proxyv2_encode(CBB *cbb, const struct sockaddr *src, const struct sockaddr *dst,
                   const char *spiffe_id)
{
    ENSURE(src->sa_family == AF_INET || src->sa_family == AF_INET6, WEFT_EINVAL);
    ENSURE(dst->sa_family == AF_INET || dst->sa_family == AF_INET6, WEFT_EINVAL);
    size_t id_len = spiffe_id != NULL ? strnlen(spiffe_id, PROXYV2_SPIFFE_ID_MAX + 1) : 0;
    ENSURE(spiffe_id == NULL || proxyv2_spiffe_id_ok((const uint8_t *)spiffe_id, id_len),
           WEFT_EINVAL);

    bool v4 = src->sa_family == AF_INET && dst->sa_family == AF_INET;
    CBB body;
    if (!CBB_add_bytes(cbb, (const uint8_t *)PROXYV2_SIG, PROXYV2_SIG_LEN) ||
        !CBB_add_u8(cbb, 0x20 | PROXYV2_CMD_PROXY) ||
        !CBB_add_u8(cbb, v4 ? PROXYV2_FAM_TCP4 : PROXYV2_FAM_TCP6) ||
        !CBB_add_u16_length_prefixed(cbb, &body)) {
        return WEFT_EINTERNAL;
    }
    if (v4) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
        /* sin_addr and sin_port are in network order already, as the header wants them. */
        if (!CBB_add_bytes(&body, (const uint8_t *)&s->sin_addr, 4) ||
            !CBB_add_bytes(&body, (const uint8_t *)&d->sin_addr, 4) ||
            !CBB_add_u16(&body, ntohs(s->sin_port)) || !CBB_add_u16(&body, ntohs(d->sin_port))) {
            return WEFT_EINTERNAL;
        }
    } else {
        uint8_t s[16], d[16];
        uint16_t sport, dport;
        if (!to_v6(src, s, &sport) || !to_v6(dst, d, &dport) || !CBB_add_bytes(&body, s, 16) ||
            !CBB_add_bytes(&body, d, 16) || !CBB_add_u16(&body, sport) ||
            !CBB_add_u16(&body, dport)) {
            return WEFT_EINTERNAL;
        }
    }
    if (spiffe_id != NULL) {
        TRY(add_tlv(&body, PROXYV2_TLV_WEFT_SPIFFE_ID, (const uint8_t *)spiffe_id, id_len));
        TRY(add_ssl_tlv(&body));
    }
    ENSURE(CBB_flush(cbb), WEFT_EINTERNAL);
    return WEFT_OK;
}

static int decode_addresses(struct proxyv2 *out, CBS *block)
{
    if (out->family == PROXYV2_FAM_TCP4) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;
        uint16_t sport, dport;
        s->sin_family = d->sin_family = AF_INET;
        if (!CBS_copy_bytes(block, (uint8_t *)&s->sin_addr, 4) ||
            !CBS_copy_bytes(block, (uint8_t *)&d->sin_addr, 4) || !CBS_get_u16(block, &sport) ||
            !CBS_get_u16(block, &dport)) {
            return fail(out, "length shorter than the address block");
        }
        s->sin_port = htons(sport);
        d->sin_port = htons(dport);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
        uint16_t sport, dport;
        s->sin6_family = d->sin6_family = AF_INET6;
        if (!CBS_copy_bytes(block, (uint8_t *)&s->sin6_addr, 16) ||
            !CBS_copy_bytes(block, (uint8_t *)&d->sin6_addr, 16) || !CBS_get_u16(block, &sport) ||
            !CBS_get_u16(block, &dport)) {
            return fail(out, "length shorter than the address block");
        }
        s->sin6_port = htons(sport);
        d->sin6_port = htons(dport);
    }
    return WEFT_OK;
}

/* §2.2.5 PP2_TYPE_SSL: uint8 client, uint32 verify, sub-TLVs filling the rest. */
static int decode_ssl(struct proxyv2 *out, CBS *value)
{
    ENSURE(!out->has_ssl, fail(out, "SSL TLV twice"));
    out->has_ssl = true;
    if (!CBS_get_u8(value, &out->ssl_client) || !CBS_get_u32(value, &out->ssl_verify)) {
        return fail(out, "SSL TLV shorter than 5 bytes");
    }
    while (CBS_len(value) > 0) {
        uint8_t type;
        CBS sub;
        if (!CBS_get_u8(value, &type) || !CBS_get_u16_length_prefixed(value, &sub)) {
            return fail(out, "SSL sub-TLV past end of SSL TLV");
        }
        if (type == PROXYV2_SUBTYPE_SSL_VERSION) {
            out->ssl_version = CBS_data(&sub);
            out->ssl_version_len = CBS_len(&sub);
        }
    }
    return WEFT_OK;
}

static int decode_tlvs(struct proxyv2 *out, CBS *tlvs)
{
    while (CBS_len(tlvs) > 0) {
        uint8_t type;
        CBS value;
        if (!CBS_get_u8(tlvs, &type) || !CBS_get_u16_length_prefixed(tlvs, &value)) {
            return fail(out, "TLV past end of header");
        }
        if (type == PROXYV2_TLV_WEFT_SPIFFE_ID) {
            ENSURE(out->spiffe_id == NULL, fail(out, "SPIFFE ID TLV twice"));
            ENSURE(CBS_len(&value) >= 1 && CBS_len(&value) <= PROXYV2_SPIFFE_ID_MAX,
                   fail(out, "SPIFFE ID TLV empty or over 2048 bytes"));
            ENSURE(proxyv2_spiffe_id_ok(CBS_data(&value), CBS_len(&value)),
                   fail(out, "SPIFFE ID TLV not printable UTF-8"));
            out->spiffe_id = CBS_data(&value);
            out->spiffe_id_len = CBS_len(&value);
        } else if (type == PROXYV2_TLV_SSL) {
            TRY(decode_ssl(out, &value));
        }
        /* Every other type (ALPN, AUTHORITY, CRC32C, NOOP, ...) is skipped: §2.2.7 lets a
         * receiver ignore TLVs it does not use. */
    }
    return WEFT_OK;
}

int proxyv2_decode(CBS *in, struct proxyv2 *out)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *p = CBS_data(in);
    size_t len = CBS_len(in);

    /* The fixed 16 bytes are judged as they arrive, so a peer that is not speaking PROXY v2 is
     * refused at its first wrong byte. */
    size_t sig = len < PROXYV2_SIG_LEN ? len : PROXYV2_SIG_LEN;
    ENSURE(memcmp(p, PROXYV2_SIG, sig) == 0, fail(out, "not a PROXY v2 signature"));
    if (len > 12) {
        ENSURE(p[12] >> 4 == 2, fail(out, "version not 2"));
        ENSURE((p[12] & 0x0F) <= PROXYV2_CMD_PROXY, fail(out, "command not LOCAL or PROXY"));
    }
    if (len > 13 && (p[12] & 0x0F) == PROXYV2_CMD_PROXY) {
        ENSURE(p[13] == PROXYV2_FAM_UNSPEC || p[13] == PROXYV2_FAM_TCP4 ||
                   p[13] == PROXYV2_FAM_TCP6,
               fail(out, "family/transport not UNSPEC, TCP4 or TCP6"));
    }
    if (len < PROXYV2_HEADER_LEN) {
        out->need = PROXYV2_HEADER_LEN - len;
        return WEFT_EAGAIN;
    }
    out->command = p[12] & 0x0F;
    out->family = out->command == PROXYV2_CMD_PROXY ? p[13] : PROXYV2_FAM_UNSPEC;
    size_t body_len = ((size_t)p[14] << 8) | p[15];
    ENSURE(out->family != PROXYV2_FAM_TCP4 || body_len >= ADDR4_LEN,
           fail(out, "length shorter than the address block"));
    ENSURE(out->family != PROXYV2_FAM_TCP6 || body_len >= ADDR6_LEN,
           fail(out, "length shorter than the address block"));
    if (len - PROXYV2_HEADER_LEN < body_len) {
        out->need = PROXYV2_HEADER_LEN + body_len - len;
        return WEFT_EAGAIN;
    }

    CBS rest = *in, body;
    if (!CBS_skip(&rest, PROXYV2_HEADER_LEN) || !CBS_get_bytes(&rest, &body, body_len)) {
        return fail(out, "internal: header past its length");
    }
    /* §2.2: LOCAL, and PROXY with AF_UNSPEC, carry nothing the receiver may use: the whole
     * block is skipped and the connection's own endpoints stand. */
    if (out->family != PROXYV2_FAM_UNSPEC) {
        TRY(decode_addresses(out, &body));
        TRY(decode_tlvs(out, &body));
    }
    out->header_len = PROXYV2_HEADER_LEN + body_len;
    *in = rest;
    return WEFT_OK;
}
