#include "lib/base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/mem.h"

#define CHUNK_SIZE 16384

struct weft_arena_chunk {
    struct weft_arena_chunk *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
};

void weft_arena_init(struct weft_arena *a)
{
    a->head = NULL;
    a->total = 0;
}

void weft_arena_cleanup(struct weft_arena *a)
{
    struct weft_arena_chunk *c = a->head;
    while (c != NULL) {
        struct weft_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    weft_arena_init(a);
}

void *weft_arena_alloc(struct weft_arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    if (n > SIZE_MAX / 2) {
        fprintf(stderr, "level=fatal msg=\"arena allocation too large\" bytes=%zu\n", n);
        abort();
    }
    n = (n + align - 1) & ~(align - 1);
    struct weft_arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        /* Large requests get a chunk of their own, behind the current one so its free
         * space is not wasted. */
        size_t cap = n > CHUNK_SIZE / 4 ? n : CHUNK_SIZE;
        struct weft_arena_chunk *fresh = weft_xmalloc(sizeof(*fresh) + cap);
        fresh->cap = cap;
        fresh->used = 0;
        if (c != NULL && cap != CHUNK_SIZE) {
            fresh->next = c->next;
            c->next = fresh;
        } else {
            fresh->next = c;
            a->head = fresh;
        }
        c = fresh;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    memset(p, 0, n);
    return p;
}

void *weft_arena_array(struct weft_arena *a, size_t num, size_t size)
{
    if (size != 0 && num > SIZE_MAX / 2 / size) {
        fprintf(stderr, "level=fatal msg=\"arena array overflows\" num=%zu size=%zu\n", num, size);
        abort();
    }
    return weft_arena_alloc(a, num * size);
}

char *weft_arena_strndup(struct weft_arena *a, const char *s, size_t len)
{
    char *p = weft_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *weft_arena_strdup(struct weft_arena *a, const char *s)
{
    return weft_arena_strndup(a, s, strlen(s));
}
