#include "test/testlib/files.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/base/mem.h"

int testlib_read_file(uint8_t **out, size_t *out_len, const char *path)
{
    int rc = WEFT_EIO;
    size_t cap = 4096, len = 0;
    uint8_t *buf = weft_xmalloc(cap);
    FILE *f = fopen(path, "rb");
    *out = NULL;
    *out_len = 0;
    if (f == NULL) {
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = weft_xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = WEFT_OK;
out:
    if (f != NULL) {
        fclose(f);
    }
    free(buf);
    return rc;
}
