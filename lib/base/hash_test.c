/* lib/base/hash_test.c: FNV-1a 64 against the published test vectors. */
#include <criterion/criterion.h>

#include "lib/base/hash.h"

Test(hash, fnv1a_64_matches_the_reference_vectors)
{
    cr_assert_eq(weft_fnv1a(WEFT_FNV1A_INIT, "", 0), UINT64_C(0xcbf29ce484222325));
    cr_assert_eq(weft_fnv1a(WEFT_FNV1A_INIT, "a", 1), UINT64_C(0xaf63dc4c8601ec8c));
    cr_assert_eq(weft_fnv1a(WEFT_FNV1A_INIT, "foobar", 6), UINT64_C(0x85944171f73967e8));
    cr_assert_neq(weft_fnv1a_str(weft_fnv1a_str(WEFT_FNV1A_INIT, "ab"), "c"),
                  weft_fnv1a_str(weft_fnv1a_str(WEFT_FNV1A_INIT, "a"), "bc"));
}
