/* test/e2e/wire.h: what a capture on a pod's veth says about one TCP connection: its bytes each
 * way, put back in order from a pcap file (tcpdump -w on an Ethernet interface), and whether
 * they are TLS 1.3 records. For the end-to-end tests only: no Criterion here. */
#ifndef WEFT_TEST_E2E_WIRE_H
#define WEFT_TEST_E2E_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

#define WIRE_MAX_STREAM (1 << 20) /* bytes kept of each way */

/* struct wire_conn: the first connection to a server port in a capture. */
struct wire_conn {
    uint8_t *to_server, *to_client; /* the payload each way, in sequence order (malloc'd) */
    size_t to_server_len, to_client_len;
    size_t num_packets; /* of this connection, either way */
    bool saw_syn;       /* the capture holds its start */
};

/* wire_conn_read fills |out| with the first connection (from its SYN) to TCP port |port| in the
 * pcap file |path|. WEFT_EPROTO when the file is not a pcap of Ethernet frames, WEFT_ENOTFOUND
 * when no such connection starts in it. Free |out| with wire_conn_cleanup either way. */
WEFT_MUST_USE int wire_conn_read(struct wire_conn *out, const char *path, uint16_t port);

void wire_conn_cleanup(struct wire_conn *c);

/* struct wire_tls: what the records of one way of a connection are. */
struct wire_tls {
    size_t num_records;
    size_t num_handshake;  /* content type 22, before the first application record */
    size_t num_ccs;        /* 20: TLS 1.3's middlebox compatibility record */
    size_t num_app_data;   /* 23 */
    size_t num_other;      /* any other type, or a handshake record after application data */
    bool version_ok;       /* every record's legacy_record_version is 0x0301 or 0x0303 */
    bool whole;            /* the bytes end at a record boundary */
    uint8_t first_hs_type; /* the first handshake message: 1 ClientHello, 2 ServerHello */
    uint16_t selected;     /* a ServerHello's supported_versions (RFC 8446 §4.2.1); 0: none */
};

/* wire_tls_scan reads |len| bytes of one way of a connection as TLS records (RFC 8446 §5.1). */
void wire_tls_scan(struct wire_tls *out, const uint8_t *data, size_t len);

#endif
