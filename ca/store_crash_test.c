/* ca/store_crash_test.c: kill -9 in the middle of a burst of issuances loses nothing that was
 * acknowledged (issue 4). A child records issuances and acknowledges each one on a pipe only
 * after the store returned; the parent kills it mid-burst and checks every acknowledged row. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ca/store.h"

#define MAX_ISSUANCES 100000

static char dir[] = "/tmp/weft-crash-test-XXXXXX";
static char path[256];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ca.db", dir);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ca_store_crash, .init = setup, .fini = teardown);

static struct ca_issuance issuance(uint32_t n)
{
    struct ca_issuance i;
    memset(&i, 0, sizeof(i));
    i.serial[0] = 0x40; /* never a leading zero byte */
    memcpy(i.serial + 1, &n, sizeof(n));
    i.serial_len = 1 + sizeof(n);
    snprintf(i.spiffe_id, sizeof(i.spiffe_id), "spiffe://example.org/ns/a/sa/w%u", n);
    snprintf(i.node, sizeof(i.node), "node-a");
    i.not_before = 1700000000;
    i.not_after = 1700003600;
    return i;
}

static void child(int ack_fd)
{
    struct ca_store *s;
    char err[512];
    if (ca_store_open_sqlite(&s, path, err, sizeof(err)) != WEFT_OK) {
        _exit(2);
    }
    for (uint32_t n = 0; n < MAX_ISSUANCES; n++) {
        struct ca_issuance i = issuance(n);
        if (ca_store_issuance_add(s, &i) != WEFT_OK) {
            _exit(3);
        }
        if (write(ack_fd, &n, sizeof(n)) != sizeof(n)) { /* acknowledged only now */
            _exit(4);
        }
    }
    _exit(0);
}

static int count(void *arg, const struct ca_issuance *i)
{
    (void)i;
    (*(uint32_t *)arg)++;
    return WEFT_OK;
}

Test(ca_store_crash, kill_9_mid_burst_loses_no_acknowledged_issuance)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        child(p[1]);
    }
    close(p[1]);
    /* let it write for a while (bounded in count and time), then kill it without warning */
    uint32_t acked = 0, n;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        ssize_t r = read(p[0], &n, sizeof(n));
        if (r != sizeof(n)) {
            break;
        }
        acked = n + 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (acked < 300 && now.tv_sec - start.tv_sec < 10);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    /* acknowledgements already in the pipe count too */
    while (read(p[0], &n, sizeof(n)) == sizeof(n)) {
        acked = n + 1;
    }
    close(p[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child was killed mid-burst");
    cr_assert_gt(acked, 0);

    struct ca_store *s;
    char err[512];
    cr_assert_eq(ca_store_open_sqlite(&s, path, err, sizeof(err)), WEFT_OK, "%s", err);
    for (uint32_t k = 0; k < acked; k++) {
        struct ca_issuance i = issuance(k);
        struct ca_issuance_filter f = {.spiffe_id = i.spiffe_id};
        uint32_t found = 0;
        cr_assert_eq(ca_store_issuance_list(s, &f, count, &found), WEFT_OK);
        cr_assert_eq(found, 1, "acknowledged issuance %u of %u is gone", k, acked);
    }
    /* and the store takes writes again */
    struct ca_issuance i = issuance(MAX_ISSUANCES + 1);
    cr_assert_eq(ca_store_issuance_add(s, &i), WEFT_OK, "%s", s->err);
    ca_store_close(s);
}
