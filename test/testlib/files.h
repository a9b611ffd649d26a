/* test/testlib/files.h: reading test data. */
#ifndef WEFT_TEST_TESTLIB_FILES_H
#define WEFT_TEST_TESTLIB_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "lib/base/err.h"

/* testlib_read_file reads the file at |path| (relative to the workspace root, which is the
 * test's working directory under `bazel test`) into a new buffer the caller frees with free().
 * One byte more is allocated and set to NUL, so text can be used as a C string. Returns
 * WEFT_EIO if the file cannot be read. */
WEFT_MUST_USE int testlib_read_file(uint8_t **out, size_t *out_len, const char *path);

#endif
