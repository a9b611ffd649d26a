/* A main() for fuzz targets outside --config=fuzz: it replays each file named on the command
 * line through LLVMFuzzerTestOneInput once, so `bazel test` keeps every corpus entry (and every
 * crash ever found, once added to the corpus) as a regression test under gcc, ASan or UBSan. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/base/file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (4 << 20)

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        uint8_t *data;
        size_t len;
        if (weft_file_read(&data, &len, argv[i], MAX_INPUT) != WEFT_OK) {
            fprintf(stderr, "cannot read %s\n", argv[i]);
            return 2;
        }
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        n++;
    }
    /* The plain closing line CI reads: every input ran without a crash or sanitizer report. */
    printf("fuzz replay: %d passed, 0 failed\n", n);
    return n > 0 ? 0 : 1;
}
