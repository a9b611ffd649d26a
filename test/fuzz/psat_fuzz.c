/* Fuzzes Kubernetes service account token validation (ca/psat.h). An input that starts with
 * '{' is a JWKS document for ca_psat_init (the operator's --psat-jwks file); anything else is a
 * token, validated at a fixed time against a fixed JWKS, so that seeds can be tokens that really
 * validate and the fuzzer reaches every check, the signature and the success path. The JWKS
 * holds a P-256 key (private scalar SHA-256("weft psat_fuzz P-256")) and the public half of a
 * throwaway RSA-2048 key; the seeds in corpus/psat were signed with them by an independent
 * implementation (Python's cryptography). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ca/psat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000

static const char FIXED_JWKS[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa-1\",\"use\":\"sig\",\"alg\":\"RS256\",\"e\":\""
    "AQAB\",\"n\":\"i4FMA1PbCoA8gnqHRQBwb-gX6q7hwiNzPDNwnytQab3HfZIQxuSU68mogiSkrUFRGmLaqpctj"
    "_TmelWaSUiaoBIxvTy9Gt90c_WrLL1vrXZ_fpj3BOJRfxfrWDgyr8qt4UaVrFEJCpYXOWSWtT2W_2YyK9fuPBGy8"
    "FTvQmI-ZyJUUUdEnD3aYPcgYvrOfipVWr-Mu_e1ewZ4s8hnYEho8H50bOo_XEezzqQMcbh0tgnpV9aDlwuyQJUzV"
    "LkyRmXb9GHthGwhCPwvk9n_qI1_N9fI2drRRA0-bJ8ec4H3d1ffe3CM4LfxBd8G65CPNnjIADBJHEG__gyTFAR-5"
    "OGc9w\"},{\"kty\":\"EC\",\"kid\":\"ec-1\",\"use\":\"sig\",\"crv\":\"P-256\",\"x\":\"ol3p"
    "x-espSUMsorRsPaBW3I2-rRKNWuA03I8J0eQDvE\",\"y\":\"rGN6iSOgwOu7pgDx4z3N9Pq6yNyzCkRRUkF7sG"
    "EjbZ0\"}]}";

static struct ca_psat *fixed(void)
{
    static struct ca_psat p;
    static int made;
    if (!made) {
        struct ca_psat_config cfg = {
            .issuer = "https://kubernetes.default.svc.cluster.local",
            .jwks = (const uint8_t *)FIXED_JWKS,
            .jwks_len = sizeof(FIXED_JWKS) - 1,
        };
        char err[256];
        if (ca_psat_init(&p, &cfg, err, sizeof(err)) != WEFT_OK || p.num_keys != 2) {
            abort(); /* the seeds would no longer reach the signature check */
        }
        made = 1;
    }
    return &p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (size > 0 && data[0] == '{') {
        struct ca_psat p;
        struct ca_psat_config cfg = {.issuer = "https://issuer", .jwks = data, .jwks_len = size};
        int rc = ca_psat_init(&p, &cfg, err, sizeof(err));
        if ((rc == WEFT_OK) != (p.num_keys > 0) || p.num_keys > CA_PSAT_MAX_KEYS ||
            (rc != WEFT_OK && err[0] == '\0')) {
            abort();
        }
        ca_psat_cleanup(&p);
        return 0;
    }
    struct ca_psat_claims c;
    err[0] = '\0';
    int rc = ca_psat_validate(fixed(), &c, (const char *)data, size, NOW, err, sizeof(err));
    if (rc != WEFT_OK) {
        /* a refusal says why and leaves no claims behind */
        if (err[0] == '\0' || c.node_name[0] != '\0' || c.exp != 0) {
            abort();
        }
        return 0;
    }
    if (c.node_name[0] == '\0' || c.pod_uid[0] == '\0' || c.exp + CA_PSAT_CLOCK_SKEW_S <= NOW ||
        strcmp(c.namespace, "weft-system") != 0 || strcmp(c.service_account, "weft-agent") != 0) {
        abort();
    }
    /* the same token after its expiry (and the skew) is refused */
    struct ca_psat_claims later;
    if (ca_psat_validate(fixed(), &later, (const char *)data, size, c.exp + CA_PSAT_CLOCK_SKEW_S,
                         err, sizeof(err)) == WEFT_OK ||
        strstr(err, "expired") == NULL) {
        abort();
    }
    return 0;
}
