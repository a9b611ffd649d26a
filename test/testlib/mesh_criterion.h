/* test/testlib/mesh_criterion.h: what the Criterion suites on test/testlib/mesh.h share, as
 * assertions (the harness itself returns errors, for benchmarks too). */
#ifndef WEFT_TEST_TESTLIB_MESH_CRITERION_H
#define WEFT_TEST_TESTLIB_MESH_CRITERION_H

#include <criterion/criterion.h>

#include "test/testlib/mesh.h"

/* mesh_cr_fail_setup cleans up what a failed setup made (Criterion runs no .fini after a
 * failed .init), with the logs on stderr first, and fails with |why|. */
static inline void mesh_cr_fail_setup(struct mesh *m, const char *why)
{
    mesh_dump_logs(m);
    mesh_cleanup(m);
    cr_assert_fail("setup: %s (the logs are above)", why);
}

/* mesh_cr_wait_file_has asserts that |path| holds |needle| within |timeout_ms|. */
static inline void mesh_cr_wait_file_has(const char *path, const char *needle, int timeout_ms)
{
    cr_assert_eq(mesh_wait_file_has(path, needle, timeout_ms), WEFT_OK, "%s never said \"%s\"",
                 path, needle);
}

#endif
