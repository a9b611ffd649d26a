/* Fuzzes the SPIFFE bundle JSON parser (single bundle and bundle map). A bundle that parses
 * must encode again, and the encoding must parse to the same authorities. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/spiffe/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spiffe_id td;
    if (spiffe_td_parse(&td, "example.org", 11, NULL) != WEFT_OK) {
        abort();
    }
    struct spiffe_bundle *b = NULL, *b2 = NULL;
    if (spiffe_bundle_from_json(&b, &td, data, size, NULL) == WEFT_OK) {
        char *json;
        size_t len;
        if (spiffe_bundle_to_json(&json, &len, b) != WEFT_OK) {
            abort(); /* whatever we accept, we can write back */
        }
        /* Re-encoding may grow a document past the input limit; only smaller ones must round
         * trip. */
        if (len <= SPIFFE_BUNDLE_MAX_JSON &&
            (spiffe_bundle_from_json(&b2, &td, (const uint8_t *)json, len, NULL) != WEFT_OK ||
             sk_X509_num(b2->x509) != sk_X509_num(b->x509) || b2->sequence != b->sequence)) {
            abort();
        }
        for (size_t i = 0; b2 != NULL && i < sk_X509_num(b->x509); i++) {
            if (X509_cmp(sk_X509_value(b->x509, i), sk_X509_value(b2->x509, i)) != 0) {
                abort();
            }
        }
        free(json);
    }
    spiffe_bundle_free(b);
    spiffe_bundle_free(b2);

    /* Every encoding through the one entry point weftctl uses. */
    struct spiffe_bundle_set set;
    spiffe_bundle_set_init(&set);
    if (spiffe_bundle_decode(&set, data, size, NULL, NULL) == WEFT_OK &&
        set.num_bundles > SPIFFE_BUNDLE_SET_MAX) {
        abort();
    }
    spiffe_bundle_set_cleanup(&set);
    if (spiffe_bundle_set_from_json_map(&set, data, size, NULL) == WEFT_OK &&
        set.num_bundles > SPIFFE_BUNDLE_SET_MAX) {
        abort();
    }
    spiffe_bundle_set_cleanup(&set);
    return 0;
}
