/* bench_main.c — flamedb-bench: subcommand dispatch, `gen` and `decode`.
 *
 *   flamedb-bench gen    --out DIR [generator flags]   write a fleet's profiles + index.tsv
 *   flamedb-bench decode --index F [--rounds N]        decode-only CPU per profile
 *   flamedb-bench ingest (--index F | generator flags) decode-only vs ingest+store CPU,
 *                                                      bytes on disk vs gzipped bytes
 *                       [--node-table-dict-bytes B]    (0: node tables without a dictionary)
 *   flamedb-bench ingest --spans N [generator flags] [--rounds R]  the same fleet without
 *                                                      and with span_id labels (N per
 *                                                      profile): CPU of each, ratio
 *   flamedb-bench query  --index F --service S          flame-graph query times
 *                        [--forests-only N]             (--service '': the whole fleet;
 *                                                      --forests-only: the forest figures
 *                                                      alone, N times, for a profiler)
 *                        [--pair-only N]                a coordinator's gather over two halves
 *                                                      of the ring beside one node's, N times
 *                        [--data-dir D [--tenant T]]   renders of a stopped node's store D
 *                                                      (T: "anonymous" for a node without
 *                                                      auth), the same state over HTTP
 *   flamedb-bench fleet  [--pods 100,300,1000] [--profiles N]  one service of many pods:
 *                                                      service vs one-pod flame graph
 *   flamedb-bench nodecliff [--pushes N] [--stacks N] [--others N] [--other-stacks N]
 *                           [--node-cache-bytes B]     push cost as a service's stack-node
 *                                                      table outgrows the node cache
 *   flamedb-bench spanstream [--tokens N] [--spans N] [--share N] [--rounds N]
 *                                                      the span trees of one token interval:
 *                                                      span_index vs a whole-family scan
 *   flamedb-bench render --url U --query Q [--from F --until U] [--runs N] [--gap-ms MS]
 *                                                      GET /pyroscope/render of a running
 *                                                      node timed by the client library
 *   flamedb-bench idle [--kib N] [--gap-ms MS] [--runs N]  the machine alone: a pointer
 *                                                      chase back to back vs after a sleep
 *
 * Generator flags (give --kind first): --kind cpu|heap --seed N --services N
 * --pods N --profiles N --step S --start UNIX_S --funcs N --paths N --samples N
 * --gzip-level N --no-time. Every figure is printed as `key: value`.
 */
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "bench.h"
#include "common/err.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: flamedb-bench gen|decode|ingest|query|fleet|nodecliff|spanstream|render|idle "
            "[flags] "
            "(see "
            "bench_main.c)\n");
    return 2;
}

/* Default start: recent, 10 s aligned, so every profile is inside the node's
 * accepted time window and the last one ends a minute ago. */
static void default_start(gen_options_t *o)
{
    if (o->start_s != 0) return;
    int64_t now = (int64_t)time(NULL);
    o->start_s = (now - (int64_t)o->profiles * o->step_s - 60) / 10 * 10;
}

int cmd_gen(int argc, char **argv)
{
    gen_options_t o;
    gen_options_default(&o, GEN_CPU);
    const char *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!gen_flag(argc, argv, &i, &o) && !flag_str(argc, argv, &i, "--out", &out)) {
            fprintf(stderr, "gen: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (out == NULL) return usage();
    default_start(&o);
    profile_set_t set = {0};
    int rc = gen_fleet(&o, &set);
    if (rc == 0) rc = profile_set_write(&set, out);
    size_t raw = 0;
    for (size_t i = 0; i < set.n; i++)
        raw += set.p[i].raw_len;
    printf("gen_profiles: %zu\ngen_gz_bytes: %zu\ngen_raw_bytes: %zu\ngen_seed: %llu\n", set.n,
           profile_set_gz_bytes(&set), raw, (unsigned long long)o.seed);
    printf("gen_start_s: %lld\ngen_end_s: %lld\n", (long long)o.start_s,
           (long long)(o.start_s + (int64_t)o.profiles * o.step_s));
    profile_set_free(&set);
    if (rc != 0) fprintf(stderr, "gen: %s\n", err_message(rc));
    return rc == 0 ? 0 : 1;
}

double decode_cpu_each(const profile_set_t *set, int rounds, double *each)
{
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    buf_t scratch;
    buf_init(&scratch, BUF_UNLIMITED);
    for (size_t i = 0; i < set->n; i++)
        each[i] = 0;
    double all = 0;
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < set->n; i++) {
            double t0 = clock_thread();
            int rc = d != NULL ? decode_only(d, &set->p[i], &scratch) : -1;
            double t = clock_thread() - t0;
            all += t;
            if (rc < 0 || each[i] < 0)
                each[i] = -1;
            else
                each[i] += t / rounds;
        }
    buf_free(&scratch);
    libdeflate_free_decompressor(d);
    return set->n ? all / ((double)rounds * (double)set->n) : 0;
}

int cmd_decode(int argc, char **argv)
{
    const char *index = NULL;
    uint64_t rounds = 3;
    for (int i = 0; i < argc; i++) {
        if (!flag_str(argc, argv, &i, "--index", &index) &&
            !flag_u64(argc, argv, &i, "--rounds", &rounds))
            return usage();
    }
    profile_set_t set = {0};
    if (index == NULL || profile_set_load_index(&set, index) != 0) {
        fprintf(stderr, "decode: cannot load index %s\n", index ? index : "(none)");
        return 1;
    }
    double *each = calloc(set.n ? set.n : 1, sizeof *each);
    if (each == NULL) {
        profile_set_free(&set);
        return 1;
    }
    double per = decode_cpu_each(&set, rounds ? (int)rounds : 1, each);
    int errors = 0;
    for (size_t i = 0; i < set.n; i++)
        errors += each[i] < 0;
    free(each);
    printf("decode_profiles: %zu\ndecode_errors: %d\n", set.n, errors);
    printf("decode_cpu_per_profile_us: %.1f\n", per * 1e6);
    profile_set_free(&set);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    alloc_tune_for_server(); /* as the node does, so the library path measures alike */
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "gen") == 0) return cmd_gen(argc - 2, argv + 2);
    if (strcmp(cmd, "decode") == 0) return cmd_decode(argc - 2, argv + 2);
    if (strcmp(cmd, "ingest") == 0) return cmd_ingest(argc - 2, argv + 2);
    if (strcmp(cmd, "query") == 0) return cmd_query(argc - 2, argv + 2);
    if (strcmp(cmd, "fleet") == 0) return cmd_fleet(argc - 2, argv + 2);
    if (strcmp(cmd, "nodecliff") == 0) return cmd_nodecliff(argc - 2, argv + 2);
    if (strcmp(cmd, "spanstream") == 0) return cmd_spanstream(argc - 2, argv + 2);
    if (strcmp(cmd, "render") == 0) return cmd_render(argc - 2, argv + 2);
    if (strcmp(cmd, "idle") == 0) return cmd_idle(argc - 2, argv + 2);
    return usage();
}
