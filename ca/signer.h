/* ca/signer.h: the process that holds the CA's signing key (STYLE.md §8).
 *
 * ca_signer_start forks a child that loads the intermediate key and certificate, drops its
 * privileges (a separate uid when started as root, no new privileges, not dumpable), closes
 * every other descriptor and then only answers fixed-size, size-checked requests on a
 * SOCK_SEQPACKET socketpair. The network-facing process never reads the key: it asks the signer
 * for leaf SVIDs, and the signer itself refuses what a leaf of its trust domain may not be.
 *
 * Rotation (issue 4). The signer also holds the root keys it may sign intermediates with, in
 * two slots: files it opens (creating them empty, mode 0600) before it drops its privileges, so
 * that it alone can later write a new root's key into one without needing to write the
 * directory. An empty slot file holds no key (the root is kept offline). When the signing
 * slot's key is there, the signer mints a fresh intermediate at start, whose key lives only in
 * its memory, and the caller rotates it with ca_signer_mint_intermediate and
 * ca_signer_activate; intermediate keys never touch the disk. Otherwise it signs with the
 * intermediate files, and only a root rotation (which makes a new root, with its key in the
 * other slot) lets it rotate. The signer refuses to overwrite or drop the slot of the root its
 * current or prepared intermediate is under.
 *
 * JWT-SVIDs (issue 11). The signer also holds the trust domain's JWT-SVID signing key (EC P-256),
 * only in its memory, like an intermediate's: ca_signer_jwt_new_key makes a successor and
 * returns its public key (to be published before it signs anything), ca_signer_jwt_activate
 * makes it the key tokens are signed with, and ca_signer_sign_jwt signs one JWT-SVID. The
 * signer itself builds the token from a SPIFFE ID of its trust domain, audiences and a lifetime
 * it checks, so the caller cannot have it sign arbitrary bytes, a foreign ID, or a token that
 * outlives the key's publication.
 *
 * Start it before the process makes any thread (the child is forked, not exec'd, and must not
 * inherit another thread's locks), and then drop the parent's own privileges: the separation
 * only holds when the parent cannot read the key file itself. One thread at a time talks to a
 * signer: a request and its reply are not tagged. */
#ifndef WEFT_CA_SIGNER_H
#define WEFT_CA_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/x509.h>

#include "lib/base/err.h"
#include "lib/spiffe/jwt.h"
#include "lib/spiffe/x509svid.h"

#define CA_SIGNER_MAX_PUBKEY 512        /* DER SubjectPublicKeyInfo */
#define CA_SIGNER_MAX_CERT 4096         /* DER certificate in a reply */
#define CA_SIGNER_SLOTS 2               /* root key slots */
#define CA_SIGNER_JWT_MIN_TTL_S 30      /* JWT-SVID lifetimes the signer allows, default */
#define CA_SIGNER_JWT_MAX_TTL_S 3600    /* ... and the most any configuration may allow */
#define CA_SIGNER_JWT_MAX_IAT_BACK_S 60 /* how far in the past a token's iat may be */

struct ca_signer_config {
    const char *key_path;  /* PKCS#8 private key of the signing CA; mode 0600 or stricter */
    const char *cert_path; /* its certificate (PEM, first certificate) */
    /* Root rotation, optional (NULL paths: no slots, the intermediate files only). */
    const char *root_key_paths[CA_SIGNER_SLOTS]; /* the slot files */
    const STACK_OF(X509) * roots; /* the bundle's roots, to know which root a slot's key is */
    unsigned signing_slot;        /* the slot whose root signs intermediates */
    int64_t intermediate_ttl_s;   /* of the intermediate minted at start (default 7 days) */
    int64_t min_ttl_s;            /* leaf lifetimes allowed: default 5 min .. 24 h (issue 4) */
    int64_t max_ttl_s;
    int64_t jwt_min_ttl_s; /* JWT-SVID lifetimes allowed: 0 takes CA_SIGNER_JWT_MIN_TTL_S .. */
    int64_t jwt_max_ttl_s; /* ... CA_SIGNER_JWT_MAX_TTL_S; never more than that */
    uid_t run_as_uid; /* when started as root: the uid/gid the child drops to (default 65534) */
    gid_t run_as_gid;
};

/* struct ca_signer_request: one leaf to sign. */
struct ca_signer_request {
    const uint8_t *pubkey_der; /* SubjectPublicKeyInfo of the workload's or node's key */
    size_t pubkey_len;
    const char *spiffe_id; /* must be in the signing CA's trust domain, with a path */
    int64_t not_before;
    int64_t ttl_s;
    const uint8_t *serial; /* NULL or zero length: the signer picks 16 random bytes */
    size_t serial_len;
};

struct ca_signer;

/* ca_signer_start checks the key file's mode, forks the signer and waits for it to say it has
 * loaded the key. On failure |err| says why (for example "key file ca.key is readable by group
 * or others (mode 0644): chmod 600 it"). */
WEFT_MUST_USE int ca_signer_start(struct ca_signer **out, const struct ca_signer_config *cfg,
                                  char *err, size_t err_len);

/* ca_signer_sign_leaf asks for one leaf SVID; its DER goes to |out| (|cap| bytes). */
WEFT_MUST_USE int ca_signer_sign_leaf(struct ca_signer *s, const struct ca_signer_request *req,
                                      uint8_t *out, size_t cap, size_t *out_len, char *err,
                                      size_t err_len);

/* struct ca_signer_info is what the signer holds, as of its last answer. */
struct ca_signer_info {
    uint8_t intermediate[CA_SIGNER_MAX_CERT]; /* DER of the intermediate leaves are signed by */
    size_t intermediate_len;
    int intermediate_slot;               /* the root slot it is under; -1: the files' */
    bool slot_has_key[CA_SIGNER_SLOTS];  /* a root key is in the slot */
    bool slot_has_root[CA_SIGNER_SLOTS]; /* ... and it is the key of a root the signer knows */
    /* the JWT-SVID signing key (DER SubjectPublicKeyInfo; length 0: none) and the prepared
     * successor, each with the not_after it was made with: no token it signs outlives that */
    uint8_t jwt_key[CA_SIGNER_MAX_PUBKEY];
    size_t jwt_key_len;
    int64_t jwt_key_not_after;
    uint8_t jwt_next[CA_SIGNER_MAX_PUBKEY];
    size_t jwt_next_len;
    int64_t jwt_next_not_after;
};

/* ca_signer_info copies what |s| holds. */
void ca_signer_info(const struct ca_signer *s, struct ca_signer_info *out);

/* ca_signer_mint_intermediate has the signer make a key and an intermediate for it under the
 * root in |slot| (valid from |not_before| for |ttl_s|, capped at the root's notAfter), kept as
 * the prepared successor (replacing one prepared before); its DER goes to |out|. */
WEFT_MUST_USE int ca_signer_mint_intermediate(struct ca_signer *s, unsigned slot,
                                              int64_t not_before, int64_t ttl_s, uint8_t *out,
                                              size_t cap, size_t *out_len, char *err,
                                              size_t err_len);

/* ca_signer_activate makes the prepared intermediate the one leaves are signed by; the retired
 * one's key is erased. WEFT_ENOTFOUND when none is prepared. */
WEFT_MUST_USE int ca_signer_activate(struct ca_signer *s, char *err, size_t err_len);

/* ca_signer_new_root has the signer make a new root of |key_type| (valid from |not_before| for
 * |ttl_s|) whose key it writes, durably, into |slot|'s file; its DER goes to |out|. */
WEFT_MUST_USE int ca_signer_new_root(struct ca_signer *s, unsigned slot,
                                     enum spiffe_key_type key_type, int64_t not_before,
                                     int64_t ttl_s, uint8_t *out, size_t cap, size_t *out_len,
                                     char *err, size_t err_len);

/* ca_signer_drop_root erases |slot|'s key, in memory and in its file (an empty slot is fine). */
WEFT_MUST_USE int ca_signer_drop_root(struct ca_signer *s, unsigned slot, char *err,
                                      size_t err_len);

/* ca_signer_jwt_new_key has the signer make a JWT-SVID signing key (EC P-256) as the prepared
 * successor (replacing, and erasing, one prepared before); no token it signs will expire after
 * |not_after| (later than now, at most 100 years ahead). Its DER SubjectPublicKeyInfo goes to
 * |out| (|cap| bytes). The key signs nothing until ca_signer_jwt_activate. */
WEFT_MUST_USE int ca_signer_jwt_new_key(struct ca_signer *s, int64_t not_after, uint8_t *out,
                                        size_t cap, size_t *out_len, char *err, size_t err_len);

/* ca_signer_jwt_activate makes the prepared JWT key the one tokens are signed with; the retired
 * one is erased. WEFT_ENOTFOUND when none is prepared. */
WEFT_MUST_USE int ca_signer_jwt_activate(struct ca_signer *s, char *err, size_t err_len);

/* struct ca_signer_jwt_request: one JWT-SVID to sign. */
struct ca_signer_jwt_request {
    const char *spiffe_id;       /* in the signer's trust domain, with a path */
    const char *const *audience; /* 1..SPIFFE_JWT_MAX_AUDIENCES, each 1..SPIFFE_JWT_MAX_AUDIENCE
                                  * bytes */
    size_t num_audience;
    int64_t iat; /* the signer's now, or up to CA_SIGNER_JWT_MAX_IAT_BACK_S before it */
    int64_t exp; /* exp - iat within the configured JWT lifetimes, and no later than the
                  * signing key's not_after */
};

/* ca_signer_sign_jwt asks for one JWT-SVID, signed ES256 by the active JWT key with its kid
 * (spiffe_jwt_sign); the token goes to |out| (|cap| bytes, NUL-terminated, |*out_len| without
 * the NUL). The signer refuses (|err| says why): WEFT_ENOTFOUND with no active key, WEFT_EINVAL
 * for a malformed ID or audience, WEFT_EPOLICY for an ID of another trust domain or without a
 * path, or times out of bounds; WEFT_ELIMIT for a request or token over a limit. */
WEFT_MUST_USE int ca_signer_sign_jwt(struct ca_signer *s, const struct ca_signer_jwt_request *req,
                                     char *out, size_t cap, size_t *out_len, char *err,
                                     size_t err_len);

/* ca_signer_alive reports whether the child still runs (it is not reaped: stop does that). */
bool ca_signer_alive(const struct ca_signer *s);

/* ca_signer_pid returns the child's pid (for tests and status). */
pid_t ca_signer_pid(const struct ca_signer *s);

/* ca_signer_stop closes the channel, which ends the child, and reaps it. NULL does nothing. */
void ca_signer_stop(struct ca_signer *s);

#endif
