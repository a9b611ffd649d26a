/* lib/base/hash.h: FNV-1a, 64 bits: to tell changed content from the same (snapshots, key sets,
 * cache keys), never against an adversary who chooses inputs to collide. */
#ifndef WEFT_LIB_BASE_HASH_H
#define WEFT_LIB_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define WEFT_FNV1A_INIT UINT64_C(14695981039346656037)

/* weft_fnv1a continues hash |h| (WEFT_FNV1A_INIT to start) over |len| bytes at |data|. */
uint64_t weft_fnv1a(uint64_t h, const void *data, size_t len);

/* weft_fnv1a_str continues |h| over |s| and its terminating NUL (so "ab","c" != "a","bc"). */
uint64_t weft_fnv1a_str(uint64_t h, const char *s);

#endif
