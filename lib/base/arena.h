/* lib/base/arena.h: a region allocator. Many small allocations that live and die together (a
 * parsed policy set, a compiled snapshot) come from one arena and go with one cleanup. */
#ifndef WEFT_LIB_BASE_ARENA_H
#define WEFT_LIB_BASE_ARENA_H

#include <stddef.h>

struct weft_arena_chunk;

/* struct weft_arena: zeroed (or weft_arena_init) is empty and safe to clean up. */
struct weft_arena {
    struct weft_arena_chunk *head;
    size_t total; /* bytes handed out, for limits and metrics */
};

void weft_arena_init(struct weft_arena *a);

/* weft_arena_cleanup frees every allocation of |a| and leaves it empty. */
void weft_arena_cleanup(struct weft_arena *a);

/* weft_arena_alloc returns |n| zeroed bytes aligned for any type, or aborts on OOM. */
void *weft_arena_alloc(struct weft_arena *a, size_t n);

/* weft_arena_array returns |num| zeroed elements of |size| bytes, or aborts (also on overflow). */
void *weft_arena_array(struct weft_arena *a, size_t num, size_t size);

/* weft_arena_strndup copies |len| bytes of |s| and a NUL. */
char *weft_arena_strndup(struct weft_arena *a, const char *s, size_t len);

/* weft_arena_strdup copies the NUL-terminated |s|. */
char *weft_arena_strdup(struct weft_arena *a, const char *s);

#endif
