/* lib/base/file_test.c: whole-file reads with limits, atomic writes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/file.h"

static char dir[] = "/tmp/weft-file-test-XXXXXX";

static void setup(void) { cr_assert_not_null(mkdtemp(dir)); }

static void teardown(void)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(file, .init = setup, .fini = teardown);

Test(file, write_then_read_round_trips_with_mode)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    cr_assert_eq(weft_file_write_atomic(path, "secret\n", 7, 0600), WEFT_OK);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(weft_file_read(&buf, &len, path, 7), WEFT_OK);
    cr_assert_eq(len, 7);
    cr_assert_eq(memcmp(buf, "secret\n", 8), 0, "content and trailing NUL");
    free(buf);
}

Test(file, read_refuses_one_byte_past_the_limit)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/big", dir);
    cr_assert_eq(weft_file_write_atomic(path, "12345678", 8, 0644), WEFT_OK);
    uint8_t *buf = NULL;
    size_t len;
    cr_assert_eq(weft_file_read(&buf, &len, path, 7), WEFT_ELIMIT);
    cr_assert_null(buf);
}

Test(file, read_of_missing_file_is_eio_with_errno)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/absent", dir);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(weft_file_read(&buf, &len, path, 100), WEFT_EIO);
    cr_assert_eq(errno, ENOENT);
}

Test(file, write_replaces_and_leaves_no_temp)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/f", dir);
    cr_assert_eq(weft_file_write_atomic(path, "old", 3, 0644), WEFT_OK);
    cr_assert_eq(weft_file_write_atomic(path, "new!", 4, 0644), WEFT_OK);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(weft_file_read(&buf, &len, path, 100), WEFT_OK);
    cr_assert_eq(len, 4);
    cr_assert_eq(memcmp(buf, "new!", 4), 0);
    free(buf);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "test $(ls %s | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0, "a temporary file was left behind");
}

Test(file, write_into_missing_dir_fails)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/no/such/dir/f", dir);
    cr_assert_eq(weft_file_write_atomic(path, "x", 1, 0644), WEFT_EIO);
}
