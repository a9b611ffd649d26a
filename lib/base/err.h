/* lib/base/err.h: the one error signal every weft function returns (STYLE.md §3). */
#ifndef WEFT_LIB_BASE_ERR_H
#define WEFT_LIB_BASE_ERR_H

#define WEFT_MUST_USE __attribute__((warn_unused_result))

/* enum weft_err: WEFT_OK is zero, every failure is negative. */
enum weft_err {
    WEFT_OK = 0,
    WEFT_EAGAIN = -1,    /* would block: an ordinary result for socket code */
    WEFT_EINVAL = -2,    /* the input breaks a rule; the caller's detail says which */
    WEFT_ELIMIT = -3,    /* the input is over a limit we set */
    WEFT_EIO = -4,       /* a read or write failed; errno says why */
    WEFT_ENOTFOUND = -5, /* the thing asked for is not there */
    WEFT_EPROTO = -6,    /* a peer broke the wire protocol */
    WEFT_ECRYPTO = -7,   /* BoringSSL refused an operation */
    WEFT_ESTALE = -8,    /* older than what we already hold */
    WEFT_EPOLICY = -9,   /* refused by policy */
    WEFT_EINTERNAL = -10,
};

/* weft_strerror returns a static, human-readable string for |err|. */
const char *weft_strerror(int err);

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != WEFT_OK) {                                                                      \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

#define ENSURE(cond, err)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            return (err);                                                                          \
        }                                                                                          \
    } while (0)

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

#endif
