#include "lib/base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/mem.h"

int weft_file_read(uint8_t **out, size_t *out_len, const char *path, size_t max_len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return WEFT_EIO;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = weft_xmalloc(cap + 1);
    int rc = WEFT_OK;
    for (;;) {
        if (len == cap) {
            if (cap > max_len) {
                rc = WEFT_ELIMIT;
                break;
            }
            cap *= 2;
            buf = weft_xrealloc(buf, cap + 1);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = WEFT_EIO;
            break;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    if (rc == WEFT_OK && len > max_len) {
        rc = WEFT_ELIMIT;
    }
    int saved = errno;
    if (fd != STDIN_FILENO) {
        close(fd);
    }
    errno = saved;
    if (rc != WEFT_OK) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return WEFT_OK;
}

int weft_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return WEFT_EIO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        return WEFT_EIO;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            goto fail;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return WEFT_EIO;
    }
    return WEFT_OK;
fail:;
    int saved = errno;
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    errno = saved;
    return WEFT_EIO;
}
