/* bench_ingest.c — `flamedb-bench ingest`: ingest CPU against the CPU of only
 * gunzipping and protobuf-decoding the same profiles, and bytes on disk against
 * the gzipped bytes ingested.
 *
 * The ingest path measured here is the library path of a node: ingest_parse()
 * (gunzip, decode, split into series, build call trees) followed by
 * storage_write_profile() into a real RocksDB in a temporary directory. CPU is
 * counted for the whole process (so RocksDB's background flushes and
 * compactions during the loop are included) and for the calling thread alone.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"
#include "common/err.h"
#include "node/ingest/ingest.h"
#include "storage/storage.h"

typedef struct ingest_stats {
    size_t ok, failed, series;
    size_t stack_hits, stack_lookups; /* samples given by stack-node id, and looked up */
    double cpu_process, cpu_thread, wall;
    double parse, write, release; /* the calling thread's CPU in each step */
    struct rusage ru0, ru1;       /* the process's, around the pass */
    uint8_t *accepted;            /* per profile: 1 if ingested */
} ingest_stats_t;

/* Real profiles carry their own (old) time_nanos: accept any age and keep every
 * resolution forever, so they are stored like fresh ones. */
typedef struct ingest_mode {
    int real;
    int64_t successive_merges; /* window-successive-merges, or -1: the default */
    int64_t total_merges;      /* total-successive-merges, or -1: the default */
    int by_profile;            /* shard-by-profile */
    uint32_t anchors;          /* aggregate-anchors, or 0: the default */
    uint64_t node_cache;       /* node-cache-bytes, or 0: the default */
    int64_t whole_read;        /* node-whole-read-percent, or -1: the default */
    int64_t dict_bytes;        /* node-table-dict-bytes, or -1: the default */
    size_t stack_cache;        /* ingest-stack-cache-bytes (0: off) */
} ingest_mode_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Ingests one profile the way the node's HTTP handler does. */
static int ingest_one(storage_t *st, const ingest_limits_t *lim, ingest_stack_cache_t *cache,
                      const bench_profile_t *p, ingest_stats_t *s, errmsg_t *em)
{
    char from[32], until[32];
    snprintf(from, sizeof from, "%lld", (long long)p->time_s);
    snprintf(until, sizeof until, "%lld", (long long)p->time_s + 10);
    ingest_request_t req = {
        .tenant = "bench",
        .name = p->name,
        .from = from,
        .until = until,
        .format = "pprof",
        .spy_name = "gospy",
        .content_type = "application/octet-stream",
        .body = p->gz,
        .body_len = p->gz_len,
        .now_ns = now_ns(),
        .stack_cache = cache,
    };
    ingest_profile_t *prof = NULL;
    double t0 = clock_thread();
    int rc = ingest_parse(&req, lim, &prof, em);
    double t1 = clock_thread();
    s->parse += t1 - t0;
    if (rc != 0) return rc;
    size_t written = 0, hits, lookups;
    ingest_profile_stack_hits(prof, &hits, &lookups);
    s->stack_hits += hits;
    s->stack_lookups += lookups;
    rc = storage_write_profile(st, ingest_profile_write(prof), &written, em);
    if (rc == ERR_CONFLICT) { /* the node generation moved since the parse: as the node does */
        ingest_profile_free(prof);
        prof = NULL;
        req.stack_cache = NULL;
        rc = ingest_parse(&req, lim, &prof, em);
        if (rc == 0) rc = storage_write_profile(st, ingest_profile_write(prof), &written, em);
    }
    double t2 = clock_thread();
    ingest_profile_free(prof);
    s->write += t2 - t1;
    s->release += clock_thread() - t2;
    s->series += written;
    return rc;
}

static void ingest_all(storage_t *st, size_t stack_bytes, const profile_set_t *set,
                       const ingest_mode_t *mode, ingest_stats_t *s)
{
    ingest_limits_t lim;
    ingest_limits_default(&lim);
    if (mode->real) lim.max_past_seconds = 30LL * 366 * 86400;
    lim.shards.by_profile = mode->by_profile;
    memset(s, 0, sizeof *s);
    s->accepted = calloc(set->n ? set->n : 1, 1);
    ingest_stack_cache_t *cache = NULL;
    if (ingest_stack_cache_new(st, stack_bytes, &cache) != 0)
        fprintf(stderr, "ingest: no memory for the stack cache\n");
    getrusage(RUSAGE_SELF, &s->ru0);
    double p0 = clock_process(), t0 = clock_thread(), w0 = clock_wall();
    for (size_t i = 0; i < set->n; i++) {
        errmsg_t em = {{0}};
        int rc = ingest_one(st, &lim, cache, &set->p[i], s, &em);
        if (rc == 0) {
            s->ok++;
            if (s->accepted) s->accepted[i] = 1;
            continue;
        }
        if (s->failed++ < 20)
            fprintf(stderr, "ingest: %s (%s): %s\n", set->p[i].path[0] ? set->p[i].path : "",
                    set->p[i].name, errmsg_text(&em, rc));
    }
    s->cpu_process = clock_process() - p0;
    s->cpu_thread = clock_thread() - t0;
    s->wall = clock_wall() - w0;
    getrusage(RUSAGE_SELF, &s->ru1);
    ingest_stack_cache_free(cache);
}

/* The store as a node opens it: its node-table cache shares node-cache-bytes
 * with the stack cache and the shard unions (*stack: the stack cache's
 * bytes). */
static int open_store(const char *dir, const ingest_mode_t *mode, storage_t **st, size_t *stack)
{
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    if (mode->successive_merges >= 0)
        o.window_successive_merges = (uint32_t)mode->successive_merges;
    if (mode->total_merges >= 0) o.total_successive_merges = (uint32_t)mode->total_merges;
    if (mode->anchors > 0) o.aggregate_anchors = mode->anchors;
    if (mode->node_cache > 0) o.node_cache_bytes = mode->node_cache;
    if (mode->whole_read >= 0) o.node_whole_read_percent = (uint32_t)mode->whole_read;
    if (mode->dict_bytes >= 0) o.node_table_dict_bytes = (size_t)mode->dict_bytes;
    if (mode->real)
        for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
            o.retention_seconds[r] = 0;
    *stack = storage_options_share_node_cache(&o, mode->stack_cache);
    errmsg_t em = {{0}};
    int rc = storage_open(&o, st, &em);
    if (rc != 0) fprintf(stderr, "storage_open %s: %s\n", dir, errmsg_text(&em, rc));
    return rc;
}

/* The node-table cache over the pass: acquires that missed it, tables read
 * whole, reads of the edge index. */
static void report_nodetabs(storage_t *st)
{
    storage_stats_t ss;
    if (storage_stats(st, &ss) != 0) return;
    printf("node_table_misses: %" PRIu64 "\nnode_table_loads: %" PRIu64
           "\nnode_table_whole_reads: %" PRIu64 "\nnode_table_index_reads: %" PRIu64 "\n",
           ss.node_table_misses, ss.node_table_loads, ss.node_table_whole_reads,
           ss.node_table_index_reads);
}

static void report_disk(storage_t *st, const char *dir, const profile_set_t *set)
{
    double c0 = clock_process(), w0 = clock_wall();
    int rc = storage_compact(st);
    double ccpu = clock_process() - c0, cwall = clock_wall() - w0;
    uint64_t usage = 0;
    if (rc == 0) rc = storage_disk_usage(st, &usage);
    uint64_t all = dir_bytes(dir);
    size_t gz = profile_set_gz_bytes(set), raw = 0;
    for (size_t i = 0; i < set->n; i++)
        raw += set->p[i].raw_len;
    printf("compact_rc: %d\ncompact_cpu_s: %.3f\ncompact_wall_s: %.3f\n", rc, ccpu, cwall);
    printf("disk_bytes_sst_wal: %llu\ndisk_bytes_dir: %llu\n", (unsigned long long)usage,
           (unsigned long long)all);
    printf("ingested_gz_bytes: %zu\ningested_raw_bytes: %zu\n", gz, raw);
    storage_cf_bytes_t cfs[STORAGE_STATS_MAX_CFS];
    size_t ncfs = 0;
    storage_sst_bytes_by_cf(st, cfs, STORAGE_STATS_MAX_CFS, &ncfs);
    for (size_t i = 0; i < ncfs; i++) /* what the bytes on disk are made of */
        if (cfs[i].bytes > 0)
            printf("disk_cf_%s_per_profile_bytes: %.0f\n", cfs[i].cf,
                   set->n ? (double)cfs[i].bytes / (double)set->n : 0);
    printf("disk_per_profile_bytes: %.0f\ngz_per_profile_bytes: %.0f\n",
           set->n ? (double)usage / (double)set->n : 0, set->n ? (double)gz / (double)set->n : 0);
    printf("RATIO disk_over_gz: %.4f (target <= 0.10; whole directory incl. RocksDB logs: %.4f)\n",
           gz ? (double)usage / (double)gz : 0, gz ? (double)all / (double)gz : 0);
}

static double tv_seconds(struct timeval a, struct timeval b)
{
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_usec - a.tv_usec) * 1e-6;
}

/* Where the ingest's CPU went: the calling thread's steps, the process's
 * user and system time, page faults and context switches (getrusage). */
static void report_steps(const ingest_stats_t *s, double n)
{
    const struct rusage *a = &s->ru0, *b = &s->ru1;
    printf("ingest_step_us: parse %.1f, write %.1f, free %.1f (calling thread, per profile)\n",
           s->parse / n * 1e6, s->write / n * 1e6, s->release / n * 1e6);
    printf("ingest_rusage_per_profile: user %.1f us, system %.1f us, minflt %.1f, majflt %.2f, "
           "vcsw %.2f, ivcsw %.2f\n",
           tv_seconds(a->ru_utime, b->ru_utime) / n * 1e6,
           tv_seconds(a->ru_stime, b->ru_stime) / n * 1e6,
           (double)(b->ru_minflt - a->ru_minflt) / n, (double)(b->ru_majflt - a->ru_majflt) / n,
           (double)(b->ru_nvcsw - a->ru_nvcsw) / n, (double)(b->ru_nivcsw - a->ru_nivcsw) / n);
}

static void report_cpu(const profile_set_t *set, const ingest_stats_t *s, double decode)
{
    double n = s->ok ? (double)s->ok : 1;
    printf("profiles: %zu\ningested_ok: %zu\ningest_failed: %zu\nseries_written: %zu\n", set->n,
           s->ok, s->failed, s->series);
    printf("stack_cache_hits: %zu of %zu samples looked up\n", s->stack_hits, s->stack_lookups);
    printf("decode_cpu_per_profile_us: %.1f\n", decode * 1e6);
    printf("ingest_cpu_per_profile_us: %.1f (calling thread %.1f)\n", s->cpu_process / n * 1e6,
           s->cpu_thread / n * 1e6);
    printf("ingest_wall_per_profile_us: %.1f\n", s->wall / n * 1e6);
    printf("RATIO ingest_over_decode_cpu: %.2f (target <= 2; calling thread only: %.2f)\n",
           decode > 0 ? s->cpu_process / n / decode : 0,
           decode > 0 ? s->cpu_thread / n / decode : 0);
    report_steps(s, n);
}

/* Loads the pprof files of the shared corpus that go tool pprof accepts
 * (MANIFEST.tsv column 5 "ok"), each as its own profile. */
static int load_real(profile_set_t *set, const char *dir)
{
    char path[4096], line[8192];
    snprintf(path, sizeof path, "%s/MANIFEST.tsv", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) return ERR_IO;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        char *col[5] = {0};
        char *save = NULL, *tok = strtok_r(line, "\t\n", &save);
        for (int c = 0; tok && c < 5; c++, tok = strtok_r(NULL, "\t\n", &save))
            col[c] = tok;
        if (!col[4] || strncmp(col[0], "pprof/", 6) != 0 || strcmp(col[4], "ok") != 0) continue;
        bench_profile_t *p = profile_set_add(set);
        if (p == NULL) return ERR_NOMEM;
        snprintf(p->path, sizeof p->path, "%s/%s", dir, col[0]);
        snprintf(p->name, sizeof p->name, "corpus{file=f%03zu}", set->n);
        p->time_s = (int64_t)time(NULL) - 120;
        rc = read_file(p->path, 64u << 20, &p->gz, &p->gz_len);
    }
    fclose(f);
    return rc;
}

/* The profiles the store accepted, borrowed from set (for the decode baseline). */
static void accepted_subset(const profile_set_t *set, const uint8_t *accepted, profile_set_t *sub)
{
    memset(sub, 0, sizeof *sub);
    sub->p = calloc(set->n ? set->n : 1, sizeof *sub->p);
    for (size_t i = 0; sub->p && i < set->n; i++)
        if (accepted == NULL || accepted[i]) sub->p[sub->n++] = set->p[i];
}

static int load_profiles(profile_set_t *set, const char *index, const char *real, gen_options_t *o)
{
    if (index != NULL) return profile_set_load_index(set, index);
    if (real != NULL) return load_real(set, real);
    if (o->start_s == 0)
        o->start_s = ((int64_t)time(NULL) - (int64_t)o->profiles * o->step_s - 60) / 10 * 10;
    return gen_fleet(o, set);
}

/* One pass of a fleet into a fresh store; the store's process CPU per
 * profile (and the calling thread's) or a negative on failure. */
static int ingest_pass(const profile_set_t *set, const ingest_mode_t *mode, double *cpu,
                       double *thread)
{
    char *dir = make_temp_dir("spans");
    storage_t *st = NULL;
    size_t stack = 0;
    if (dir == NULL || open_store(dir, mode, &st, &stack) != 0) {
        free(dir);
        return -1;
    }
    ingest_stats_t s;
    ingest_all(st, stack, set, mode, &s);
    double n = s.ok ? (double)s.ok : 1;
    *cpu = s.cpu_process / n;
    *thread = s.cpu_thread / n;
    storage_close(st);
    rm_rf(dir);
    free(dir);
    free(s.accepted);
    return s.failed ? -1 : 0;
}

/* --spans N: the same fleet (same stacks and values) without span labels and
 * with each sample labelled by one of N span ids per profile, each ingested
 * --rounds times into a fresh store, alternating; the lowest CPU of each is
 * kept (other load on the machine only adds). */
static int span_compare(const gen_options_t *o, const ingest_mode_t *mode, uint64_t rounds)
{
    gen_options_t plain = *o;
    plain.spans = 0;
    profile_set_t a = {0}, b = {0};
    int rc = gen_fleet(&plain, &a);
    if (rc == 0) rc = gen_fleet(o, &b);
    double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}};
    for (uint64_t r = 0; rc == 0 && r < (rounds ? rounds : 1); r++)
        for (int k = 0; rc == 0 && k < 2; k++) {
            double cpu = 0, thread = 0;
            rc = ingest_pass(k ? &b : &a, mode, &cpu, &thread);
            if (rc != 0) break;
            if (cpu < best[k][0]) best[k][0] = cpu;
            if (thread < best[k][1]) best[k][1] = thread;
        }
    if (rc == 0) {
        printf("profiles: %zu\nspans_per_profile: %zu\n", a.n, o->spans);
        printf("plain_ingest_cpu_per_profile_us: %.1f (calling thread %.1f)\n", best[0][0] * 1e6,
               best[0][1] * 1e6);
        printf("spans_ingest_cpu_per_profile_us: %.1f (calling thread %.1f)\n", best[1][0] * 1e6,
               best[1][1] * 1e6);
        printf("RATIO spans_over_plain_cpu: %.3f (calling thread only: %.3f)\n",
               best[1][0] / best[0][0], best[1][1] / best[0][1]);
    } else {
        fprintf(stderr, "ingest --spans: a pass failed\n");
    }
    profile_set_free(&a);
    profile_set_free(&b);
    return rc == 0 ? 0 : 1;
}

int cmd_ingest(int argc, char **argv)
{
    gen_options_t o;
    gen_options_default(&o, GEN_CPU);
    const char *index = NULL, *data = NULL, *real = NULL;
    uint64_t rounds = 3, keep = 0, merges = UINT64_MAX, total_merges = UINT64_MAX,
             by_profile = RING_DEFAULT_SHARD_BY_PROFILE, anchors = 0, node_cache = 0,
             whole_read = UINT64_MAX, dict_bytes = UINT64_MAX,
             stack_cache = INGEST_STACK_CACHE_BYTES;
    for (int i = 0; i < argc; i++) {
        if (gen_flag(argc, argv, &i, &o) || flag_str(argc, argv, &i, "--index", &index) ||
            flag_str(argc, argv, &i, "--real", &real) ||
            flag_str(argc, argv, &i, "--data", &data) ||
            flag_u64(argc, argv, &i, "--rounds", &rounds) ||
            flag_u64(argc, argv, &i, "--keep", &keep) ||
            flag_u64(argc, argv, &i, "--window-successive-merges", &merges) ||
            flag_u64(argc, argv, &i, "--total-successive-merges", &total_merges) ||
            flag_u64(argc, argv, &i, "--shard-by-profile", &by_profile) ||
            flag_u64(argc, argv, &i, "--aggregate-anchors", &anchors) ||
            flag_u64(argc, argv, &i, "--node-cache-bytes", &node_cache) ||
            flag_u64(argc, argv, &i, "--node-whole-read-percent", &whole_read) ||
            flag_u64(argc, argv, &i, "--node-table-dict-bytes", &dict_bytes) ||
            flag_u64(argc, argv, &i, "--stack-cache-bytes", &stack_cache))
            continue;
        fprintf(stderr, "ingest: unknown flag %s\n", argv[i]);
        return 2;
    }
    ingest_mode_t mode = {.real = real != NULL,
                          .successive_merges = merges <= UINT32_MAX ? (int64_t)merges : -1,
                          .total_merges = total_merges <= UINT32_MAX ? (int64_t)total_merges : -1,
                          .by_profile = by_profile != 0,
                          .anchors = anchors > UINT32_MAX ? UINT32_MAX : (uint32_t)anchors,
                          .node_cache = node_cache,
                          .whole_read = whole_read <= 100 ? (int64_t)whole_read : -1,
                          .dict_bytes = dict_bytes <= SIZE_MAX / 2 ? (int64_t)dict_bytes : -1,
                          .stack_cache = (size_t)stack_cache};
    if (o.spans > 0 && index == NULL && real == NULL) {
        if (o.start_s == 0)
            o.start_s = ((int64_t)time(NULL) - (int64_t)o.profiles * o.step_s - 60) / 10 * 10;
        return span_compare(&o, &mode, rounds);
    }
    profile_set_t set = {0};
    int rc = load_profiles(&set, index, real, &o);
    if (rc != 0 || set.n == 0) {
        fprintf(stderr, "ingest: no profiles (%s)\n", err_message(rc));
        return 1;
    }
    /* the floor first, while the process runs nothing else (no RocksDB
     * threads yet): as `flamedb-bench decode` measures it for the HTTP ratio */
    double *each = calloc(set.n, sizeof *each);
    char *dir = data ? strdup(data) : make_temp_dir("ingest");
    if (each != NULL) decode_cpu_each(&set, rounds ? (int)rounds : 1, each);
    storage_t *st = NULL;
    size_t stack = 0;
    if (each == NULL || dir == NULL || open_store(dir, &mode, &st, &stack) != 0) {
        profile_set_free(&set);
        free(each);
        free(dir);
        return 1;
    }
    ingest_stats_t s;
    ingest_all(st, stack, &set, &mode, &s);
    profile_set_t sub;
    accepted_subset(&set, s.accepted, &sub);
    int derr = 0;
    double decode = 0;
    for (size_t i = 0; i < set.n; i++) /* over the profiles the store accepted */
        if (s.accepted == NULL || s.accepted[i]) {
            derr += each[i] < 0;
            decode += each[i] < 0 ? 0 : each[i];
        }
    decode = sub.n ? decode / (double)sub.n : 0;
    free(each);
    report_cpu(&set, &s, decode);
    report_nodetabs(st);
    report_disk(st, dir, &sub);
    storage_close(st);
    if (!keep && data == NULL) rm_rf(dir);
    free(dir);
    free(sub.p); /* borrowed entries */
    free(s.accepted);
    profile_set_free(&set);
    /* refusals are expected in the real corpus (they are reported); not in a fleet */
    return ((s.failed && !mode.real) || derr) ? 1 : 0;
}
