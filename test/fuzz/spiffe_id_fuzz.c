/* Fuzzes spiffe_id_parse and spiffe_td_parse: any bytes in, a verdict out, and when the verdict
 * is "valid" the ID must survive a second parse unchanged and obey the rules we promise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/spiffe/id.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spiffe_id id, again;
    struct spiffe_why why;
    if (spiffe_id_parse(&id, (const char *)data, size, &why) == WEFT_OK) {
        if (id.len != size || id.len > SPIFFE_ID_MAX_LEN || id.td_len == 0 ||
            id.td_len > SPIFFE_TD_MAX_LEN || memchr(id.str, '%', id.len) != NULL ||
            spiffe_id_parse(&again, id.str, id.len, NULL) != WEFT_OK ||
            !spiffe_id_equal(&id, &again)) {
            abort();
        }
        struct spiffe_id td;
        spiffe_id_td_id(&td, &id);
        if (!spiffe_id_is_td(&td) || !spiffe_id_same_td(&td, &id)) {
            abort();
        }
    } else if (why.rule == SPIFFE_RULE_NONE || why.msg[0] == '\0') {
        abort(); /* every rejection names its rule */
    }
    struct spiffe_id td;
    if (spiffe_td_parse(&td, (const char *)data, size, &why) == WEFT_OK && !spiffe_id_is_td(&td)) {
        abort(); /* a trust domain has no path (A14) */
    }
    return 0;
}
