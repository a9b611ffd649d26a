/* test/bench/bench.c: see bench.h. */
#include "test/bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_die(const char *prog, const char *what, const char *err)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, err);
    exit(1);
}

double bench_raw_ecdsa_rate(EVP_PKEY *key)
{
    uint8_t msg[300], sig[80];
    memset(msg, 7, sizeof(msg));
    long n = 0;
    double start = bench_now_s(), elapsed = 0;
    while (n < BENCH_MAX_OPS && elapsed < BENCH_MAX_SECONDS) {
        for (int i = 0; i < 100; i++, n++) {
            EVP_MD_CTX ctx;
            size_t sig_len = sizeof(sig);
            EVP_MD_CTX_init(&ctx);
            if (!EVP_DigestSignInit(&ctx, NULL, EVP_sha256(), NULL, key) ||
                !EVP_DigestSign(&ctx, sig, &sig_len, msg, sizeof(msg))) {
                bench_die("bench", "sign", "EVP_DigestSign failed");
            }
            EVP_MD_CTX_cleanup(&ctx);
        }
        elapsed = bench_now_s() - start;
    }
    return (double)n / elapsed;
}

long bench_mem_kib(pid_t pid, bool private)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), private ? "/proc/%d/smaps_rollup" : "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = 0, v;
    int seen = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (private ? sscanf(line, "Private_Clean: %ld kB", &v) == 1 ||
                          sscanf(line, "Private_Dirty: %ld kB", &v) == 1
                    : sscanf(line, "VmRSS: %ld kB", &v) == 1) {
            kib += v;
            seen++;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return seen == (private ? 2 : 1) ? kib : -1;
}
