/* bench.h — shared pieces of flamedb-bench, the benchmark tool of tests/bench.
 *
 * Owns: a seeded RNG, CPU/wall clocks, a fleet model that writes realistic
 * varied pprof profiles (bench_gen.c), the decode-only baseline (gunzip +
 * protobuf-c unpack), and the profile sets the subcommands ingest. Figures are
 * printed as `name: value` lines that tests/bench/run.py parses and that a
 * person can read; nothing here asserts a performance target.
 *
 * Single-threaded tool. Every profile_set_t and its bodies are owned by the
 * set (profile_set_free).
 */
#ifndef FLAMEDB_TESTS_BENCH_BENCH_H
#define FLAMEDB_TESTS_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "node/ingest/ingest.h"
#include "storage/storage.h"
#include "common/err.h"

/* ---- RNG (splitmix64 / xoshiro-free: small and reproducible) ---- */
typedef struct bench_rng {
    uint64_t s;
} bench_rng_t;
uint64_t rng_next(bench_rng_t *r);
double rng_unit(bench_rng_t *r);                    /* [0, 1) */
uint64_t rng_below(bench_rng_t *r, uint64_t n);     /* [0, n) */
double rng_lognormal(bench_rng_t *r, double sigma); /* median 1 */
uint64_t rng_poisson(bench_rng_t *r, double mean);

/* ---- clocks ---- */
double clock_wall(void);                      /* seconds, monotonic */
void pause_ms(uint64_t ms);                   /* sleeps ms (again after a signal) */
int cmp_double(const void *a, const void *b); /* qsort of doubles, ascending */
double clock_process(void);                   /* CPU seconds of the whole process (all threads) */
double clock_thread(void);                    /* CPU seconds of the calling thread */

/* ---- profile sets ---- */
#define BENCH_NAME_MAX 256
#define BENCH_MAX_TYPES 8

typedef struct bench_profile {
    char path[1024];           /* file it came from / was written to ("" if in memory) */
    char name[BENCH_NAME_MAX]; /* ingest name parameter: app{k=v,...} */
    int64_t time_s;            /* profile time (unix seconds) */
    uint8_t *gz;               /* gzipped pprof (owned) */
    size_t gz_len;
    size_t raw_len; /* uncompressed pprof bytes */
    size_t ntypes;
    char types[BENCH_MAX_TYPES][64]; /* "type/unit" */
    int64_t totals[BENCH_MAX_TYPES]; /* sum of each sample type's values */
} bench_profile_t;

typedef struct profile_set {
    bench_profile_t *p;
    size_t n, cap;
} profile_set_t;

void profile_set_free(profile_set_t *s);
bench_profile_t *profile_set_add(profile_set_t *s);
size_t profile_set_gz_bytes(const profile_set_t *s);
/* Reads an index.tsv written by `flamedb-bench gen` (paths relative to it). */
int profile_set_load_index(profile_set_t *s, const char *index_path);
/* Writes every profile under dir and an index.tsv describing them. */
int profile_set_write(const profile_set_t *s, const char *dir);

/* ---- the fleet model (bench_gen.c) ---- */
typedef enum { GEN_CPU, GEN_HEAP } gen_kind_t;

typedef struct gen_options {
    uint64_t seed;
    size_t services; /* distinct services */
    size_t pods;     /* pods per service */
    size_t profiles; /* profiles per pod */
    int64_t start_s; /* time of the first profile */
    int64_t step_s;  /* seconds between a pod's profiles */
    gen_kind_t kind;
    size_t funcs;   /* functions per service */
    size_t paths;   /* distinct call paths per service */
    size_t samples; /* draws per profile (CPU: 100 Hz x 10 s x cores) */
    int gzip_level; /* Go's runtime/pprof uses gzip.BestSpeed = 1 */
    int set_time;   /* 0: leave time_nanos unset (the pusher's from decides) */
    size_t spans;   /* > 0: each sample labelled span_id, one of this many per profile
                     * (same stacks and values as with 0) */
} gen_options_t;

void gen_options_default(gen_options_t *o, gen_kind_t kind);
/* Appends services*pods*profiles profiles to out, ordered by time. */
int gen_fleet(const gen_options_t *o, profile_set_t *out);

/* ---- decode-only baseline ---- */
/* gunzips (libdeflate, when the body has the gzip magic) and unpacks
 * (protobuf-c) one profile; returns the number of samples (>= 0) or a
 * negative ERR_*. d and scratch are reused across calls. */
struct libdeflate_decompressor;
int decode_only(struct libdeflate_decompressor *d, const bench_profile_t *p, buf_t *scratch);
/* The floor of the ingest figures: decode_only's CPU time (the calling
 * thread's) for each profile of set, the mean of rounds passes over the
 * whole set, in each[i] (negative when it did not decode); returns the
 * mean over all. Callers run it where nothing else runs in the process
 * (`decode`, and `ingest` before it opens its store), so the library and
 * the HTTP ratios divide by the same kind of figure. */
double decode_cpu_each(const profile_set_t *set, int rounds, double *each);

/* ---- helpers ---- */
int read_file(const char *path, size_t max, uint8_t **data, size_t *len);
int write_file(const char *path, const void *data, size_t len);
int mkdirs(const char *path);
int rm_rf(const char *path);
/* bytes of all regular files under path */
uint64_t dir_bytes(const char *path);
/* mkdtemp under $TMPDIR; caller frees */
char *make_temp_dir(const char *tag);

/* subcommands */
int cmd_gen(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_fleet(int argc, char **argv);
int cmd_nodecliff(int argc, char **argv);
int cmd_spanstream(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_idle(int argc, char **argv);

/* ---- the library path of ingest (bench_query.c) ---- */
/* Parses p as POST /ingest would (tenant "bench", its own 10 s window) and
 * stores it; 0 or an error with em set. */
int bench_store_profile(storage_t *st, const bench_profile_t *p, const ingest_limits_t *lim,
                        int64_t now_ns, errmsg_t *em);

/* shared flag parsing: returns 1 and sets *val when argv[*i] is --name VALUE */
int flag_str(int argc, char **argv, int *i, const char *name, const char **val);
int flag_u64(int argc, char **argv, int *i, const char *name, uint64_t *val);
/* generator flags (--seed --services --pods --profiles --step --kind ...) */
int gen_flag(int argc, char **argv, int *i, gen_options_t *o);

#endif
