#include "lib/base/err.h"

const char *weft_strerror(int err)
{
    switch (err) {
    case WEFT_OK:
        return "ok";
    case WEFT_EAGAIN:
        return "would block";
    case WEFT_EINVAL:
        return "invalid input";
    case WEFT_ELIMIT:
        return "over a limit";
    case WEFT_EIO:
        return "i/o error";
    case WEFT_ENOTFOUND:
        return "not found";
    case WEFT_EPROTO:
        return "protocol error";
    case WEFT_ECRYPTO:
        return "cryptographic operation failed";
    case WEFT_ESTALE:
        return "stale";
    case WEFT_EPOLICY:
        return "refused by policy";
    case WEFT_EINTERNAL:
        return "internal error";
    }
    return "unknown error";
}
