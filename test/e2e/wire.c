/* test/e2e/wire.c: see wire.h. */
#include "test/e2e/wire.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>

#include "lib/base/file.h"
#include "lib/base/mem.h"

#define PCAP_MAGIC_US 0xa1b2c3d4u /* microsecond timestamps, in the writer's byte order */
#define PCAP_MAGIC_NS 0xa1b23c4du
#define LINKTYPE_ETHERNET 1
#define ETHERTYPE_IPV4 0x0800
#define TCP_SYN 0x02

struct tcp_seg {
    uint32_t saddr, daddr;
    uint16_t sport, dport;
    uint32_t seq;
    uint8_t flags;
    CBS payload;
};

/* parse_frame reads one Ethernet frame carrying IPv4 and TCP; false for anything else. */
static bool parse_frame(CBS *frame, struct tcp_seg *out)
{
    uint16_t ethertype, total, frag;
    uint8_t vihl, proto, off, flags;
    CBS ip, opts, tcp;
    if (!CBS_skip(frame, 12) || !CBS_get_u16(frame, &ethertype) || ethertype != ETHERTYPE_IPV4 ||
        !CBS_get_u8(frame, &vihl) || (vihl >> 4) != 4 || (vihl & 0xf) < 5 || !CBS_skip(frame, 1) ||
        !CBS_get_u16(frame, &total) || total < (vihl & 0xf) * 4 || !CBS_skip(frame, 2) ||
        !CBS_get_u16(frame, &frag) || !CBS_skip(frame, 1) || !CBS_get_u8(frame, &proto) ||
        !CBS_skip(frame, 2) || !CBS_get_u32(frame, &out->saddr) ||
        !CBS_get_u32(frame, &out->daddr) || !CBS_get_bytes(frame, &opts, (vihl & 0xf) * 4u - 20) ||
        !CBS_get_bytes(frame, &ip, total - (vihl & 0xf) * 4u) || proto != 6 ||
        (frag & 0x3fff) != 0) {
        return false;
    }
    /* RFC 9293 §3.1: ports, sequence number, acknowledgment, data offset, flags */
    if (!CBS_get_u16(&ip, &out->sport) || !CBS_get_u16(&ip, &out->dport) ||
        !CBS_get_u32(&ip, &out->seq) || !CBS_skip(&ip, 4) || !CBS_get_u8(&ip, &off) ||
        !CBS_get_u8(&ip, &flags) || (off >> 4) < 5 || !CBS_skip(&ip, 6) ||
        !CBS_get_bytes(&ip, &tcp, (off >> 4) * 4u - 20)) {
        return false;
    }
    out->flags = flags;
    out->payload = ip;
    return true;
}

/* place writes |seg| at its offset from |isn| into |*buf|, growing |*len| to the end of the
 * bytes written (a retransmission writes the same bytes again). */
static void place(uint8_t *buf, size_t *len, uint32_t isn, const struct tcp_seg *seg)
{
    uint32_t at = seg->seq - (isn + 1); /* the SYN takes one sequence number */
    size_t n = CBS_len(&seg->payload);
    if (n == 0 || at >= WIRE_MAX_STREAM || n > WIRE_MAX_STREAM - at) {
        return;
    }
    memcpy(buf + at, CBS_data(&seg->payload), n);
    if (at + n > *len) {
        *len = at + n;
    }
}

int wire_conn_read(struct wire_conn *out, const char *path, uint16_t port)
{
    memset(out, 0, sizeof(*out));
    uint8_t *file;
    size_t file_len;
    TRY(weft_file_read(&file, &file_len, path, 64 << 20));
    int rc = WEFT_EPROTO;
    CBS in, rec;
    uint32_t magic, link, incl;
    CBS_init(&in, file, file_len);
    /* the global header, little-endian as tcpdump writes it on this machine */
    if (!CBS_get_u32le(&in, &magic) || (magic != PCAP_MAGIC_US && magic != PCAP_MAGIC_NS) ||
        !CBS_skip(&in, 16) || !CBS_get_u32le(&in, &link) || link != LINKTYPE_ETHERNET) {
        goto out;
    }
    out->to_server = weft_xcalloc(1, WIRE_MAX_STREAM);
    out->to_client = weft_xcalloc(1, WIRE_MAX_STREAM);
    uint32_t client = 0, server = 0, isn_c = 0, isn_s = 0;
    uint16_t cport = 0;
    bool have_isn_s = false;
    rc = WEFT_ENOTFOUND;
    while (CBS_len(&in) > 0) {
        if (!CBS_skip(&in, 8) || !CBS_get_u32le(&in, &incl) || !CBS_skip(&in, 4) ||
            !CBS_get_bytes(&in, &rec, incl)) {
            rc = WEFT_EPROTO;
            goto out;
        }
        struct tcp_seg seg;
        if (!parse_frame(&rec, &seg)) {
            continue;
        }
        if (!out->saw_syn) {
            if (seg.dport == port && (seg.flags & TCP_SYN) && !(seg.flags & 0x10)) {
                out->saw_syn = true;
                client = seg.saddr;
                server = seg.daddr;
                cport = seg.sport;
                isn_c = seg.seq;
                out->num_packets++;
            }
            continue;
        }
        bool up =
            seg.saddr == client && seg.daddr == server && seg.sport == cport && seg.dport == port;
        bool down =
            seg.saddr == server && seg.daddr == client && seg.sport == port && seg.dport == cport;
        if (!up && !down) {
            continue;
        }
        out->num_packets++;
        if (down && (seg.flags & TCP_SYN)) {
            isn_s = seg.seq;
            have_isn_s = true;
            continue;
        }
        if (up) {
            place(out->to_server, &out->to_server_len, isn_c, &seg);
        } else if (have_isn_s) {
            place(out->to_client, &out->to_client_len, isn_s, &seg);
        }
    }
    rc = out->saw_syn ? WEFT_OK : WEFT_ENOTFOUND;
out:
    free(file);
    return rc;
}

void wire_conn_cleanup(struct wire_conn *c)
{
    free(c->to_server);
    free(c->to_client);
    memset(c, 0, sizeof(*c));
}

/* server_hello_version finds supported_versions in a ServerHello's body (RFC 8446 §4.1.3). */
static uint16_t server_hello_version(CBS body)
{
    CBS session, exts;
    if (!CBS_skip(&body, 2 + 32) || !CBS_get_u8_length_prefixed(&body, &session) ||
        !CBS_skip(&body, 2 + 1) || !CBS_get_u16_length_prefixed(&body, &exts)) {
        return 0;
    }
    while (CBS_len(&exts) > 0) {
        uint16_t type, version;
        CBS ext;
        if (!CBS_get_u16(&exts, &type) || !CBS_get_u16_length_prefixed(&exts, &ext)) {
            return 0;
        }
        if (type == 43 && CBS_get_u16(&ext, &version) && CBS_len(&ext) == 0) {
            return version;
        }
    }
    return 0;
}

void wire_tls_scan(struct wire_tls *out, const uint8_t *data, size_t len)
{
    memset(out, 0, sizeof(*out));
    out->version_ok = true;
    CBS in;
    CBS_init(&in, data, len);
    while (CBS_len(&in) > 0) {
        uint8_t type;
        uint16_t version;
        CBS frag;
        if (!CBS_get_u8(&in, &type) || !CBS_get_u16(&in, &version) ||
            !CBS_get_u16_length_prefixed(&in, &frag)) {
            return; /* cut inside a record: not whole */
        }
        out->num_records++;
        out->version_ok = out->version_ok && (version == 0x0301 || version == 0x0303);
        if (type == 22 && out->num_app_data == 0) {
            uint8_t hs;
            CBS body;
            if (out->num_handshake++ == 0 && CBS_get_u8(&frag, &hs) &&
                CBS_get_u24_length_prefixed(&frag, &body)) {
                out->first_hs_type = hs;
                out->selected = hs == 2 ? server_hello_version(body) : 0;
            }
        } else if (type == 20 && out->num_app_data == 0) {
            out->num_ccs++;
        } else if (type == 23) {
            out->num_app_data++;
        } else {
            out->num_other++;
        }
    }
    out->whole = true;
}
