/* bench_idle.c — `flamedb-bench idle`: what this machine makes a short
 * piece of work pay after its thread slept, with no flamedb code in it.
 *
 *   flamedb-bench idle [--kib N] [--gap-ms MS] [--runs N]
 *
 * Each run follows a random cycle of pointers through N KiB (512 by
 * default: about what one render touches hot) for a fixed number of
 * steps, first back to back, then with a sleep of MS (50) before each run,
 * as an interactive user's renders find a node. Prints the median of each
 * and their ratio. On a machine of dedicated cores the ratio is near 1; on
 * a shared virtual machine whose idle vCPU gives its caches to others it is
 * not, and a node's renders after a pause pay the same (run.py prints it
 * beside the render of an idle node).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#define IDLE_STEPS 100000u /* pointer steps a run */
#define IDLE_MAX_KIB (1u << 20)
#define IDLE_MAX_RUNS 10000u
#define IDLE_MAX_GAP_MS 10000u

/* A random cycle through all n slots (Sattolo's shuffle), from seed. */
static void make_cycle(uint32_t *next, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        next[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t j = (size_t)((seed >> 33) % i);
        uint32_t t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
}

/* The median seconds of runs walks of next[], gap_ms before each (0: none). */
static double median_walk(const uint32_t *next, size_t runs, uint64_t gap_ms, double *t)
{
    volatile uint32_t sink = 0;
    for (size_t r = 0; r < runs; r++) {
        if (gap_ms > 0) pause_ms(gap_ms);
        double t0 = clock_wall();
        uint32_t at = 0;
        for (uint32_t k = 0; k < IDLE_STEPS; k++)
            at = next[at];
        t[r] = clock_wall() - t0;
        sink += at;
    }
    (void)sink;
    qsort(t, runs, sizeof *t, cmp_double);
    return t[runs / 2];
}

int cmd_idle(int argc, char **argv)
{
    uint64_t kib = 512, gap_ms = 50, runs = 60;
    for (int i = 0; i < argc; i++) {
        if (!flag_u64(argc, argv, &i, "--kib", &kib) &&
            !flag_u64(argc, argv, &i, "--gap-ms", &gap_ms) &&
            !flag_u64(argc, argv, &i, "--runs", &runs)) {
            fprintf(stderr, "idle: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (kib < 4 || kib > IDLE_MAX_KIB || runs == 0 || runs > IDLE_MAX_RUNS || gap_ms == 0 ||
        gap_ms > IDLE_MAX_GAP_MS) {
        fprintf(stderr, "idle: --kib from 4 to %u; --runs from 1 to %u; --gap-ms from 1 to %u\n",
                IDLE_MAX_KIB, IDLE_MAX_RUNS, IDLE_MAX_GAP_MS);
        return 2;
    }
    size_t n = (size_t)kib * 1024 / sizeof(uint32_t);
    uint32_t *next = malloc(n * sizeof *next);
    double *t = malloc(runs * sizeof *t);
    if (next == NULL || t == NULL) {
        fprintf(stderr, "idle: out of memory\n");
        free(next);
        free(t);
        return 1;
    }
    make_cycle(next, n, 1);
    median_walk(next, runs < 5 ? runs : 5, 0, t); /* caches and pages warm */
    double busy = median_walk(next, runs, 0, t);
    double idle = median_walk(next, runs, gap_ms, t);
    printf("idle_kib: %llu\nidle_gap_ms: %llu\nidle_runs: %llu\n", (unsigned long long)kib,
           (unsigned long long)gap_ms, (unsigned long long)runs);
    printf("idle_back_to_back_ms: %.3f\nidle_after_gap_ms: %.3f\nidle_ratio: %.2f\n", busy * 1e3,
           idle * 1e3, busy > 0 ? idle / busy : 0);
    free(next);
    free(t);
    return 0;
}
