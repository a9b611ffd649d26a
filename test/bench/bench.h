/* test/bench/bench.h: what the benchmarks share: a monotonic clock and the baseline every CA
 * figure is measured against, raw ECDSA P-256 signatures per second by BoringSSL. */
#ifndef WEFT_TEST_BENCH_BENCH_H
#define WEFT_TEST_BENCH_BENCH_H

#include <stdbool.h>
#include <sys/types.h>

#include <openssl/evp.h>

#define BENCH_MAX_SECONDS 3.0
#define BENCH_MAX_OPS 1000000

double bench_now_s(void);

/* bench_die prints "|prog|: |what|: |err|" and exits 1. */
void bench_die(const char *prog, const char *what, const char *err) __attribute__((noreturn));

/* bench_raw_ecdsa_rate signs a 300-byte message with |key| for at most BENCH_MAX_SECONDS (and
 * BENCH_MAX_OPS signatures) and returns signatures per second. */
double bench_raw_ecdsa_rate(EVP_PKEY *key);

/* bench_mem_kib returns the VmRSS of |pid| in KiB; with |private|, the memory no other process
 * shares instead: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup (VmRSS less the
 * shared libraries' pages, which every proxy on a node maps once). -1 when it cannot be read. */
long bench_mem_kib(pid_t pid, bool private);

#endif
