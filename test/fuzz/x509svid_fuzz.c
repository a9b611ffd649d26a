/* Fuzzes what an SVID file or Workload API message feeds us: certificate decoding (PEM or DER),
 * the X509-SVID rules, key decoding, and bundle PEM. */
#include <stdint.h>
#include <stdlib.h>

#include "lib/spiffe/bundle.h"
#include "lib/spiffe/x509svid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    STACK_OF(X509) *chain = NULL;
    struct spiffe_why why;
    if (spiffe_certs_decode(&chain, data, size, SPIFFE_MAX_CHAIN, 0, &why) == WEFT_OK) {
        struct spiffe_id id;
        if (spiffe_x509svid_check(&id, chain, &why) == WEFT_OK && spiffe_id_is_td(&id)) {
            abort(); /* a leaf SVID always has a path (B2) */
        }
        if (spiffe_x509svid_check_time(chain, 1700000000, &why) != WEFT_OK && why.msg[0] == 0) {
            abort(); /* every rejection says why */
        }
        sk_X509_pop_free(chain, X509_free);
    } else if (chain != NULL) {
        abort();
    }
    EVP_PKEY *key = NULL;
    if (spiffe_key_decode(&key, data, size, &why) == WEFT_OK && key == NULL) {
        abort();
    }
    EVP_PKEY_free(key);
    struct spiffe_id td;
    struct spiffe_bundle *b = NULL;
    if (spiffe_td_parse(&td, "example.org", 11, NULL) != WEFT_OK) {
        abort();
    }
    if (spiffe_bundle_from_pem(&b, &td, data, size, &why) == WEFT_OK &&
        sk_X509_num(b->x509) > SPIFFE_BUNDLE_MAX_AUTHORITIES) {
        abort();
    }
    spiffe_bundle_free(b);
    return 0;
}
