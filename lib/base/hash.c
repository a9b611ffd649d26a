/* lib/base/hash.c: see hash.h. */
#include "lib/base/hash.h"

#include <string.h>

uint64_t weft_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    }
    return h;
}

uint64_t weft_fnv1a_str(uint64_t h, const char *s) { return weft_fnv1a(h, s, strlen(s) + 1); }
