/* lib/base/arena_test.c: the contract of the region allocator. */
#include <criterion/criterion.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/base/arena.h"

Test(arena, allocations_are_zeroed_aligned_and_distinct)
{
    struct weft_arena a;
    weft_arena_init(&a);
    char *prev = NULL;
    for (size_t n = 1; n < 3000; n += 7) {
        unsigned char *p = weft_arena_alloc(&a, n);
        cr_assert_eq((uintptr_t)p % alignof(max_align_t), 0);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(p[i], 0);
        }
        memset(p, 0xab, n);
        cr_assert_neq((char *)p, prev);
        prev = (char *)p;
    }
    cr_assert_gt(a.total, 0);
    weft_arena_cleanup(&a);
    cr_assert_null(a.head);
    cr_assert_eq(a.total, 0);
}

Test(arena, large_allocations_keep_the_current_chunk)
{
    struct weft_arena a;
    weft_arena_init(&a);
    char *small1 = weft_arena_alloc(&a, 16);
    char *big = weft_arena_alloc(&a, 1 << 20);
    char *small2 = weft_arena_alloc(&a, 16);
    memset(big, 1, 1 << 20);
    cr_assert_eq(small2, small1 + 16, "the small chunk goes on being used");
    weft_arena_cleanup(&a);
}

Test(arena, strings)
{
    struct weft_arena a = {0};
    char *s = weft_arena_strdup(&a, "spiffe://example.org");
    cr_assert_str_eq(s, "spiffe://example.org");
    char *t = weft_arena_strndup(&a, "abcdef", 3);
    cr_assert_str_eq(t, "abc");
    weft_arena_cleanup(&a);
}
