/* ca/issuer.h: what the CA's RPCs do, apart from the transport (issue 4): attest a node with a
 * join token, renew a node SVID, mint workload SVIDs for the entries assigned to the calling
 * node, and JWT-SVIDs for them (issue 11). The caller's node name always comes from the TLS
 * layer (the verified node SVID), never from a request body. Every X.509 issuance is recorded
 * in the inventory and logged once; a JWT-SVID is logged once and not recorded (it has no
 * serial to revoke by, and the deny list revokes by ID; a bearer token is not kept). */
#ifndef WEFT_CA_ISSUER_H
#define WEFT_CA_ISSUER_H

#include <openssl/x509.h>

#include "ca/core.h"
#include "ca/psat.h"
#include "ca/signer.h"
#include "ca/store.h"

#define CA_MAX_CSR 4096                       /* bytes of one CSR */
#define CA_MAX_MINT_BATCH 64                  /* CSRs per MintWorkloadSVIDs call */
#define CA_CHAIN_MAX (2 * CA_SIGNER_MAX_CERT) /* leaf + signing CA, DER back to back */
#define CA_DEFAULT_NODE_TTL_S (24 * 3600)

struct ca_issuer {
    struct ca_store *store;   /* borrowed */
    struct ca_signer *signer; /* borrowed */
    struct spiffe_id td;      /* spiffe://<td> */
    X509 *signing_cert;       /* borrowed: the intermediate the signer holds, sent in chains */
    int64_t node_ttl_s;       /* 0: CA_DEFAULT_NODE_TTL_S */
    /* set by ca_attest_node_psat: the node SVIDs it revoked (a node that attested as another
     * service account than the last time), so that the caller pushes the deny list */
    size_t revoked_by_last_attest;
};

/* struct ca_svid is one issued SVID: its ID and its chain (leaf then signing CA, DER). */
struct ca_svid {
    char spiffe_id[CA_SPIFFE_ID_MAX + 1];
    uint8_t chain[CA_CHAIN_MAX];
    size_t chain_len;
    int64_t not_after;
    char entry_id[CA_ENTRY_ID_LEN + 1];
};

/* ca_attest_node redeems |token| and signs the node SVID spiffe://TD/weft/node/NAME for the key
 * of |csr| (DER or PEM PKCS#10; only its key is used). The token is used in the transaction
 * that records the SVID, so any failure leaves it usable. WEFT_EPOLICY for a bad token, with the
 * precise reason in |err| for the CA's log. */
WEFT_MUST_USE int ca_attest_node(struct ca_issuer *ca, const char *token, const uint8_t *csr,
                                 size_t csr_len, int64_t now, char node_out[CA_NODE_NAME_MAX + 1],
                                 struct ca_svid *out, char *err, size_t err_len);

/* ca_attest_node_psat is ca_attest_node with a Kubernetes service account token instead of a
 * join token (ca/psat.h): the token validates with |psat|, its node is not revoked nor a node
 * that joined by join token, and the token is not bound to another key (a token that attested
 * another key is refused). The node and its SVID are recorded in one transaction, and only then
 * is the token bound to the CSR's key: a failure leaves the token free for a retry. The node
 * SVID names the token's node; a node that attested as another service account before has
 * its earlier node SVIDs revoked (ca_store_node_commit; |ca->revoked_by_last_attest| says how
 * many). |psat| is the caller's alone for the call. WEFT_EPOLICY for a
 * token refused, with the reason in |err| for the CA's log; WEFT_EIO when the store failed. */
WEFT_MUST_USE int ca_attest_node_psat(struct ca_issuer *ca, struct ca_psat *psat, const char *token,
                                      size_t token_len, const uint8_t *csr, size_t csr_len,
                                      int64_t now, char node_out[CA_NODE_NAME_MAX + 1],
                                      struct ca_svid *out, char *err, size_t err_len);

/* struct ca_caller is who called, as the TLS layer verified it (lib/transport's weft_peer):
 * never taken from a request body. */
struct ca_caller {
    char node[CA_NODE_NAME_MAX + 1]; /* from spiffe://TD/weft/node/NAME; "" if not a node */
    char serial_hex[2 * CA_SERIAL_MAX + 1];
    int64_t not_after; /* of the presented chain */
};

/* ca_check_caller is what every call from a node checks first, since a connection outlives its
 * handshake: the caller is a node, its SVID has not expired, and neither its serial, its node
 * SVID's ID nor the node was revoked. */
WEFT_MUST_USE int ca_check_caller(struct ca_issuer *ca, const struct ca_caller *caller, int64_t now,
                                  char *err, size_t err_len);

/* ca_renew_node signs a fresh node SVID for the calling node (ca_check_caller first). */
WEFT_MUST_USE int ca_renew_node(struct ca_issuer *ca, const struct ca_caller *caller,
                                const uint8_t *csr, size_t csr_len, int64_t now,
                                struct ca_svid *out, char *err, size_t err_len);

struct ca_mint_request {
    const char *entry_id;
    const uint8_t *csr;
    size_t csr_len;
};

struct ca_mint_result {
    int rc; /* WEFT_OK, or why this one was refused */
    char err[256];
    struct ca_svid svid;
};

/* ca_mint_workloads signs one SVID per request for the calling node: each entry must exist and
 * be assigned to the node, and neither its ID nor the node may be revoked. Results are per
 * request (a store failure is WEFT_EIO for that request: retry, do not drop the workload). The
 * call fails as a whole, with |err|, for a batch over CA_MAX_MINT_BATCH (WEFT_ELIMIT) or a
 * caller ca_check_caller refuses. */
WEFT_MUST_USE int ca_mint_workloads(struct ca_issuer *ca, const struct ca_caller *caller,
                                    const struct ca_mint_request *reqs, size_t num,
                                    struct ca_mint_result *results, int64_t now, char *err,
                                    size_t err_len);

/* struct ca_jwt_svid is one signed JWT-SVID. */
struct ca_jwt_svid {
    char token[SPIFFE_JWT_MAX_TOKEN + 1];
    size_t token_len;
    char spiffe_id[CA_SPIFFE_ID_MAX + 1];
    char kid[SPIFFE_JWT_KID_LEN + 1]; /* of the key that signed it */
    int64_t expires_at;
};

/* ca_mint_jwt signs a JWT-SVID of entry |entry_id| for |audience| (1..SPIFFE_JWT_MAX_AUDIENCES
 * values of 1..SPIFFE_JWT_MAX_AUDIENCE bytes each) for the calling node, exactly as
 * ca_mint_workloads would an X.509 SVID: the caller passes ca_check_caller, the entry exists and
 * is assigned to the node, and neither its ID nor the node is revoked. The token is valid from
 * |now| for |ttl_s|, or the entry's TTL when that is shorter. Returns WEFT_EINVAL for audiences
 * out of bounds, WEFT_EPOLICY for a caller, entry or ID that may not have it (an entry of another
 * node reads "no entry": a node learns nothing of other nodes' entries), WEFT_EIO when the store
 * failed, WEFT_EAGAIN when the signer refused (its key is about to retire, say: the CA's state,
 * not the caller's), or another signer error; |err| says why. */
WEFT_MUST_USE int ca_mint_jwt(struct ca_issuer *ca, const struct ca_caller *caller,
                              const char *entry_id, const char *const *audience,
                              size_t num_audience, int64_t ttl_s, int64_t now,
                              struct ca_jwt_svid *out, char *err, size_t err_len);

#endif
