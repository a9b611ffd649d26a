#!/usr/bin/env python3
"""tools/demo/tlsview.py PCAP --marker TEXT [--name IP=NAME ...]

Reads a tcpdump capture (classic pcap, Ethernet) and shows, for every TCP connection in it,
what the wire carried: each TLS record's 5-byte header as bytes, what the cleartext handshake
messages say (the ClientHello's offered versions, ALPN and key shares; the ServerHello's
chosen version and cipher suite), and how many records stayed opaque. Then it looks for
plaintext: HTTP/1.x anywhere in the TCP payloads, and the marker anywhere in the capture file.

Exit 0 when every connection is TLS 1.3 (a ClientHello offering 0x0304 answered by a
ServerHello choosing it; nothing after those but ChangeCipherSpec and encrypted records) and
neither HTTP nor the marker shows; 1 otherwise; 2 when the capture cannot be read.
Standard library only: it runs where Debian's python3 does.
"""
import argparse
import struct
import sys

REC_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
HS_TYPES = {1: "ClientHello", 2: "ServerHello"}
VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
GROUPS = {0x001D: "x25519", 0x0017: "secp256r1", 0x0018: "secp384r1", 0x11EC: "X25519MLKEM768",
          0x6399: "X25519Kyber768"}
SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
          0x1303: "TLS_CHACHA20_POLY1305_SHA256"}


def read_pcap(path):
    """Yields (src, sport, dst, dport, seq, flags, payload) for each IPv4 TCP segment."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("no pcap header (is the capture empty?)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a classic pcap file (magic %s)" % magic.hex())
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError("link type %d, not Ethernet" % linktype)
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        eth_type = struct.unpack(">H", frame[12:14])[0] if len(frame) >= 14 else 0
        ip = frame[14:]
        if eth_type == 0x8100 and len(frame) >= 18:  # one VLAN tag
            eth_type = struct.unpack(">H", frame[16:18])[0]
            ip = frame[18:]
        if eth_type != 0x0800 or len(ip) < 20 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        yield src, sport, dst, dport, seq, tcp[13], tcp[doff:]


def reassemble(segments):
    """The bytes of one direction, in sequence order (retransmissions and overlaps dropped)."""
    syn = [s for s in segments if s[0] & 0x02]
    base = (syn[0][1] + 1) if syn else min(s[1] for s in segments)
    out = bytearray()
    for _, seq, payload in sorted(segments, key=lambda s: (s[1] - base) & 0xFFFFFFFF):
        rel = (seq - base) & 0xFFFFFFFF
        if not payload or rel + len(payload) <= len(out):
            continue
        if rel > len(out):
            out += b"\0" * (rel - len(out))  # a segment the capture missed
        out += payload[len(out) - rel:]
    return bytes(out)


def records(stream):
    """Yields (type, version, header bytes, body) for each TLS record; stops at garbage."""
    off = 0
    while off + 5 <= len(stream):
        rtype, ver, length = struct.unpack(">BHH", stream[off:off + 5])
        if rtype not in REC_TYPES or ver >> 8 != 3:
            yield None, None, stream[off:off + 5], stream[off:]
            return
        yield rtype, ver, stream[off:off + 5], stream[off + 5:off + 5 + length]
        off += 5 + length


def extensions(buf):
    exts = {}
    off = 0
    while off + 4 <= len(buf):
        etype, elen = struct.unpack(">HH", buf[off:off + 4])
        exts[etype] = buf[off + 4:off + 4 + elen]
        off += 4 + elen
    return exts


def client_hello(body):
    """What a ClientHello offers: versions, ALPN protocols, key share groups."""
    off = 2 + 32
    off += 1 + body[off]
    off += 2 + struct.unpack(">H", body[off:off + 2])[0]
    off += 1 + body[off]
    exts = extensions(body[off + 2:])
    sv = exts.get(43, b"")
    versions = [struct.unpack(">H", sv[i:i + 2])[0] for i in range(1, 1 + (sv[0] if sv else 0), 2)]
    alpn, a = [], exts.get(16, b"")[2:]
    while a:
        alpn.append(a[1:1 + a[0]].decode("ascii", "replace"))
        a = a[1 + a[0]:]
    groups, ks = [], exts.get(51, b"")[2:]
    while len(ks) >= 4:
        group, klen = struct.unpack(">HH", ks[:4])
        groups.append(group)
        ks = ks[4 + klen:]
    return versions, alpn, groups


def server_hello(body):
    """What a ServerHello chose: version (supported_versions, else legacy), suite, group."""
    legacy = struct.unpack(">H", body[:2])[0]
    off = 2 + 32
    off += 1 + body[off]
    suite = struct.unpack(">H", body[off:off + 2])[0]
    exts = extensions(body[off + 5:])
    sv = exts.get(43)
    version = struct.unpack(">H", sv[:2])[0] if sv and len(sv) >= 2 else legacy
    ks = exts.get(51, b"")
    group = struct.unpack(">H", ks[:2])[0] if len(ks) >= 2 else None
    return version, suite, group


def name(table, value):
    return table.get(value, "0x%04x" % value) if value is not None else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--marker", required=True)
    ap.add_argument("--name", action="append", default=[], help="IP=NAME")
    ap.add_argument("--port", type=int, help="only connections to this port")
    args = ap.parse_args()
    names = dict(n.split("=", 1) for n in args.name)
    try:
        segs = list(read_pcap(args.pcap))
        with open(args.pcap, "rb") as f:
            raw = f.read()
    except (OSError, ValueError) as e:
        print("cannot read the capture %s: %s" % (args.pcap, e))
        return 2

    flows = {}
    for src, sport, dst, dport, seq, flags, payload in segs:
        flows.setdefault((src, sport, dst, dport), []).append((flags, seq, payload))
    conns = []  # (client, server) keys, the client being the side that sent the SYN
    for key, segments in flows.items():
        if any(f & 0x02 and not f & 0x10 for f, _, _ in segments):
            if args.port is None or key[3] == args.port:
                conns.append(key)

    ok = True
    if not conns:
        print("no TCP connection was opened in the capture")
        ok = False
    payload_all = b""
    for c in sorted(conns):
        rev = (c[2], c[3], c[0], c[1])
        who = lambda ip, port: "%s (%s:%d)" % (names.get(ip, ip), ip, port)
        print("connection %s -> %s" % (who(c[0], c[1]), who(c[2], c[3])))
        hello_ok = {"client": False, "server": False}
        for side, key in (("client", c), ("server", rev)):
            stream = reassemble(flows.get(key, []))
            payload_all += stream
            src = names.get(key[0], key[0])
            dst = names.get(key[2], key[2])
            counts = {}
            opaque_bytes = 0
            shown = 0
            for i, (rtype, ver, head, body) in enumerate(records(stream)):
                if rtype is None:
                    print("  %-9s -> %-9s %s  not a TLS record: the bytes are not TLS" %
                          (src, dst, head.hex(" ")))
                    ok = False
                    break
                counts[rtype] = counts.get(rtype, 0) + 1
                what = REC_TYPES[rtype]
                if rtype == 22 and i == 0 and body and body[0] in HS_TYPES:
                    hs = HS_TYPES[body[0]]
                    try:
                        if hs == "ClientHello" and side == "client":
                            versions, alpn, groups = client_hello(body[4:])
                            what = "%s: offers %s; ALPN %s; key share %s" % (
                                hs, ", ".join(name(VERSIONS, v) for v in versions) or "no versions",
                                ",".join(alpn) or "-", ",".join(name(GROUPS, g) for g in groups))
                            hello_ok["client"] = 0x0304 in versions
                        elif hs == "ServerHello" and side == "server":
                            version, suite, group = server_hello(body[4:])
                            what = "%s: chooses %s, %s, key share %s" % (
                                hs, name(VERSIONS, version), name(SUITES, suite),
                                name(GROUPS, group))
                            hello_ok["server"] = version == 0x0304
                    except (IndexError, struct.error):
                        what = hs + " (truncated in the capture)"
                elif rtype == 22:
                    what = "Handshake in the clear after the hello: not TLS 1.3"
                    ok = False
                elif rtype == 23:
                    opaque_bytes += len(body)
                    what = "ApplicationData, %d bytes, encrypted" % len(body)
                elif rtype == 20:
                    what = "ChangeCipherSpec (a no-op kept for middleboxes, RFC 8446 D.4)"
                elif rtype == 21:
                    what = "Alert in the clear"
                if shown < 4:
                    print("  %-9s -> %-9s %s  %s" % (src, dst, head.hex(" "), what))
                    shown += 1
            n = sum(counts.values())
            if n > shown:
                print("  %-9s -> %-9s ... %d records in all: %s; %d bytes of ciphertext" % (
                    src, dst, n, ", ".join("%d %s" % (v, REC_TYPES[k]) for k, v in
                                          sorted(counts.items())), opaque_bytes))
        if not (hello_ok["client"] and hello_ok["server"]):
            print("  no TLS 1.3 handshake seen on this connection")
            ok = False
        else:
            print("  => TLS 1.3: the version is agreed in the hellos; every byte after them is "
                  "an encrypted record")

    http = b"HTTP/1." in payload_all
    marker = args.marker.encode() in raw
    print("the text \"HTTP/1.\" in any TCP payload: %s" % ("FOUND" if http else "no"))
    print("the body's marker \"%s\" anywhere in the capture file (%d bytes): %s" % (
        args.marker, len(raw), "FOUND" if marker else "no"))
    return 0 if ok and not http and not marker else 1


if __name__ == "__main__":
    sys.exit(main())
