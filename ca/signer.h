/* ca/signer.h: the process that holds the CA's signing key (STYLE.md §8).
 *
 * ca_signer_start forks a child that loads the intermediate key and certificate, drops its
 * privileges (a separate uid when started as root, no new privileges, not dumpable), closes
 * every other descriptor and then only answers fixed-size, size-checked requests on a
 * SOCK_SEQPACKET socketpair. The network-facing process never reads the key: it asks the signer
 * for leaf SVIDs, and the signer itself refuses what a leaf of its trust domain may not be.
 *
 * Start it before the process makes any thread (the child is forked, not exec'd, and must not
 * inherit another thread's locks), and then drop the parent's own privileges: the separation
 * only holds when the parent cannot read the key file itself. One thread at a time talks to a
 * signer: a request and its reply are not tagged. */
#ifndef WEFT_CA_SIGNER_H
#define WEFT_CA_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/base/err.h"

#define CA_SIGNER_MAX_PUBKEY 512 /* DER SubjectPublicKeyInfo */
#define CA_SIGNER_MAX_CERT 4096  /* DER certificate in a reply */

struct ca_signer_config {
    const char *key_path;  /* PKCS#8 private key of the signing CA; mode 0600 or stricter */
    const char *cert_path; /* its certificate (PEM, first certificate) */
    int64_t min_ttl_s;     /* leaf lifetimes allowed: default 5 min .. 24 h (issue 4) */
    int64_t max_ttl_s;
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

/* ca_signer_pid returns the child's pid (for tests and status). */
pid_t ca_signer_pid(const struct ca_signer *s);

/* ca_signer_stop closes the channel, which ends the child, and reaps it. NULL does nothing. */
void ca_signer_stop(struct ca_signer *s);

#endif
