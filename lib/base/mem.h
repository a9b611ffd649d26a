/* lib/base/mem.h: allocation that never returns NULL (STYLE.md decision 1). Every size a peer
 * controls is checked against a limit before it reaches these. */
#ifndef WEFT_LIB_BASE_MEM_H
#define WEFT_LIB_BASE_MEM_H

#include <stddef.h>

/* weft_xmalloc returns |n| bytes or aborts the process. */
void *weft_xmalloc(size_t n);
/* weft_xcalloc returns |num| zeroed elements of |size| bytes or aborts (also on overflow). */
void *weft_xcalloc(size_t num, size_t size);
/* weft_xrealloc resizes |p| to |n| bytes or aborts. */
void *weft_xrealloc(void *p, size_t n);
/* weft_xstrndup copies |len| bytes of |s| and a terminating NUL, or aborts. */
char *weft_xstrndup(const char *s, size_t len);

#endif
