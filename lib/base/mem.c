#include "lib/base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_oom(size_t n)
{
    fprintf(stderr, "level=fatal msg=\"out of memory\" bytes=%zu\n", n);
    abort();
}

void *weft_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        die_oom(n);
    }
    return p;
}

void *weft_xcalloc(size_t num, size_t size)
{
    void *p = calloc(num == 0 ? 1 : num, size == 0 ? 1 : size);
    if (p == NULL) {
        die_oom(num * size);
    }
    return p;
}

void *weft_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL) {
        die_oom(n);
    }
    return q;
}

char *weft_xstrndup(const char *s, size_t len)
{
    char *p = weft_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
