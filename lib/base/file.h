/* lib/base/file.h: whole-file reads with a size limit, and atomic writes. */
#ifndef WEFT_LIB_BASE_FILE_H
#define WEFT_LIB_BASE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/base/err.h"

/* weft_file_read reads all of |path| ("-" is standard input) into a new buffer with a NUL after
 * the last byte, which the caller frees with free(). Returns WEFT_EIO (errno set) when the file
 * cannot be read and WEFT_ELIMIT when it holds more than |max_len| bytes. */
WEFT_MUST_USE int weft_file_read(uint8_t **out, size_t *out_len, const char *path, size_t max_len);

/* weft_file_write_atomic writes |len| bytes to a temporary file beside |path| with |mode|,
 * fsyncs it and renames it over |path|, so readers see the old or the new file, never half. */
WEFT_MUST_USE int weft_file_write_atomic(const char *path, const void *data, size_t len,
                                         mode_t mode);

#endif
