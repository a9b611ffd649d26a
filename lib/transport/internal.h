/* lib/transport/internal.h: what lib/transport's own tests reach beyond the public headers. */
#ifndef WEFT_LIB_TRANSPORT_INTERNAL_H
#define WEFT_LIB_TRANSPORT_INTERNAL_H

#include "lib/base/err.h"
#include "lib/transport/grpcfd.h"
#include "lib/transport/peer.h"

/* grpcfd_parse_peer_fd reads |peer_str| as exactly "fd:<n>": n in decimal, no sign, no leading
 * zero, no space, below GRPCFD_MAX_FD. Returns WEFT_ENOTFOUND for anything else ("ipv4:...",
 * "unix:...", "fd:", "fd:01", ...), as no such fd can have been adopted. */
WEFT_MUST_USE int grpcfd_parse_peer_fd(int *out_fd, const char *peer_str);

/* grpcfd_record puts |fd| -> |peer| in the record under |owner| without giving |fd| to gRPC,
 * as grpcfd_adopt does first. The caller keeps |fd|. */
WEFT_MUST_USE int grpcfd_record(const struct grpcfd_server *owner, int fd,
                                const struct weft_peer *peer);

#endif
