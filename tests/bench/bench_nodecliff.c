/* bench_nodecliff.c — `flamedb-bench nodecliff`: what a push costs as one
 * service's stack-node table grows past --node-cache-bytes.
 *
 * One service ("grown") receives --pushes pushes of --stacks never-seen
 * stacks each (main;mod;sub;leaf, the leaf unique), so its table grows to
 * pushes x stacks distinct stacks. Between two of its pushes, --others other
 * services push --other-stacks new stacks each: their tables are interleaved
 * with it in the node cache, which (--node-cache-bytes, small by default)
 * holds none of them whole. After each round two small probe pushes of the
 * grown service are measured: 8 stacks it already has (spread over all its
 * pushes so far) and 8 new ones — the pushes a live service sends most. The
 * writes go through the library path (storage_write_profile into a real
 * RocksDB in a temporary directory), single-threaded.
 *
 * Cost is counted in user-space instructions of the writing thread
 * (perf_event_open; CPU nanoseconds of the thread when the machine has no
 * such counter, as in most VMs). With --callgrind, run under
 * `valgrind --tool=callgrind --collect-atstart=no`, every measured write is
 * also collected alone and dumped with the label `nodecliff <round> <what>`,
 * so its exact instruction count is in that dump's totals (tests/bench/run.py
 * --nodecliff-callgrind reads them): a shared machine does not blur those. Per round it prints the
 * table's size, the big push's cost per new stack and each probe's cost; at
 * the end the ratios of the late rounds (median of the last quarter) to the
 * early rounds (of the first quarter, after the first): about 1 when the cost is flat, growing
 * with the table when the writer reads the table whole. Nothing is asserted.
 */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define CLIFF_HAVE_CALLGRIND 1
#endif
#endif

#include "bench.h"
#include "common/calltree.h"
#include "common/err.h"
#include "common/labels.h"
#include "common/symtab.h"
#include "storage/storage.h"

#define CLIFF_PROBE_STACKS 8
#define CLIFF_MAX_OTHERS 16

typedef struct cliff {
    storage_t *st;
    uint64_t pushes, stacks, others, other_stacks;
    labels_t *grown, *other[CLIFF_MAX_OTHERS];
    uint64_t other_next[CLIFF_MAX_OTHERS]; /* next new stack of each other service */
    uint64_t grown_next;                   /* next new stack of the grown service */
    uint64_t profile_seq;
    int perf_fd;   /* -1: CPU time instead */
    int callgrind; /* collect and dump each measured write (under callgrind) */
    uint64_t round;
} cliff_t;

typedef struct cliff_round {
    double push_per_stack, probe_known, probe_new;
} cliff_round_t;

static int perf_open(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

/* Instructions so far, or CPU nanoseconds of the thread. */
static double cost_now(const cliff_t *c)
{
    uint64_t v = 0;
    if (c->perf_fd >= 0 && read(c->perf_fd, &v, sizeof v) == (ssize_t)sizeof v) return (double)v;
    return clock_thread() * 1e9;
}

static labels_t *service(const char *name)
{
    labels_t *l = labels_new();
    if (l == NULL) return NULL;
    labels_set_str(l, LABEL_NAME, "process_cpu");
    labels_set_str(l, LABEL_PROFILE_TYPE, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    labels_set_str(l, LABEL_SERVICE_NAME, name);
    return l;
}

/* Adds stack number n of service svc (main;mod;sub;leaf) to t. */
static int add_stack(calltree_t *t, symtab_t *syms, const char *svc, uint64_t n, int64_t v)
{
    char name[4][96];
    int len[4];
    len[0] = snprintf(name[0], sizeof name[0], "main");
    len[1] = snprintf(name[1], sizeof name[1], "%s.mod%llu", svc, (unsigned long long)(n % 64));
    len[2] = snprintf(name[2], sizeof name[2], "%s.sub%llu", svc, (unsigned long long)(n % 4096));
    len[3] = snprintf(name[3], sizeof name[3], "%s.leaf%llu", svc, (unsigned long long)n);
    uint64_t ids[4];
    for (int i = 0; i < 4; i++) {
        int rc = symtab_intern(syms, name[i], (size_t)len[i], "gen.go", 6, &ids[i]);
        if (rc != 0) return rc;
    }
    return calltree_add_stack(t, ids, 4, v);
}

/* Writes stacks [first, first + n) of l's service (and, when known > 0,
 * `known` stacks spread over [0, first)); *cost = what the write cost. */
/* Around one measured write under callgrind: collects it alone, dumps it. */
static void callgrind_mark(const cliff_t *c, int start, const char *what)
{
#ifdef CLIFF_HAVE_CALLGRIND
    if (!c->callgrind) return;
    CALLGRIND_TOGGLE_COLLECT;
    if (!start) {
        char label[64];
        snprintf(label, sizeof label, "nodecliff %llu %s", (unsigned long long)c->round, what);
        CALLGRIND_DUMP_STATS_AT(label);
    }
#else
    (void)c;
    (void)start;
    (void)what;
#endif
}

static int push(cliff_t *c, const labels_t *l, uint64_t first, uint64_t n, uint64_t known,
                const char *what, double *cost)
{
    calltree_t *t = calltree_new(0);
    symtab_t *syms = symtab_new();
    const char *svc = labels_get(l, LABEL_SERVICE_NAME);
    int rc = t == NULL || syms == NULL ? ERR_NOMEM : 0;
    for (uint64_t i = 0; rc == 0 && i < n; i++)
        rc = add_stack(t, syms, svc, first + i, 1 + (int64_t)(i % 7));
    for (uint64_t k = 0; rc == 0 && k < known && first > 0; k++)
        rc = add_stack(t, syms, svc, (first - 1) * k / known, 3);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {.tenant = "bench",
                                 .time_ns = ((int64_t)time(NULL) - 60) * 1000000000LL,
                                 .series = &sw,
                                 .nseries = 1,
                                 .symbols = syms};
    uint64_t seq = ++c->profile_seq;
    memcpy(p.profile_id, &seq, sizeof seq);
    errmsg_t em = {{0}};
    double before = cost_now(c);
    if (what != NULL) callgrind_mark(c, 1, what);
    if (rc == 0) rc = storage_write_profile(c->st, &p, NULL, &em);
    if (what != NULL) callgrind_mark(c, 0, what);
    *cost = cost_now(c) - before;
    if (rc != 0) fprintf(stderr, "nodecliff: write: %s\n", errmsg_text(&em, rc));
    calltree_free(t);
    symtab_free(syms);
    return rc;
}

static int round_run(cliff_t *c, cliff_round_t *r)
{
    double cost;
    int rc = push(c, c->grown, c->grown_next, c->stacks, 0, "push", &cost);
    c->grown_next += c->stacks;
    r->push_per_stack = cost / (double)c->stacks;
    for (uint64_t o = 0; rc == 0 && o < c->others; o++) {
        rc = push(c, c->other[o], c->other_next[o], c->other_stacks, 0, NULL, &cost);
        c->other_next[o] += c->other_stacks;
    }
    /* known stacks only: the first argument range is empty */
    if (rc == 0)
        rc =
            push(c, c->grown, c->grown_next, 0, CLIFF_PROBE_STACKS, "probe_known", &r->probe_known);
    if (rc == 0) {
        for (uint64_t o = 0; rc == 0 && o < c->others; o++) /* the grown table leaves the cache */
            rc = push(c, c->other[o], c->other_next[o]++, 1, 0, NULL, &cost);
        if (rc == 0)
            rc =
                push(c, c->grown, c->grown_next, CLIFF_PROBE_STACKS, 0, "probe_new", &r->probe_new);
        c->grown_next += CLIFF_PROBE_STACKS;
    }
    return rc;
}

/* Median of one figure over rounds [lo, hi): a flush or compaction that
 * lands in one push does not move it. */
static double median(const cliff_round_t *r, size_t lo, size_t hi, size_t field)
{
    double v[64];
    size_t n = 0;
    for (size_t i = lo; i < hi && n < 64; i++)
        v[n++] = field == 0 ? r[i].push_per_stack : field == 1 ? r[i].probe_known : r[i].probe_new;
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void report(const cliff_t *c, const cliff_round_t *r, size_t n)
{
    /* early: rounds after the first (which creates the table) in the first quarter */
    size_t q = n / 4 ? n / 4 : 1, e0 = n > 2 ? 1 : 0, e1 = e0 + q, l0 = n - q;
    const char *unit = c->perf_fd >= 0 ? "instructions" : "cpu_ns";
    static const char *names[3] = {"push_per_new_stack", "probe_known", "probe_new"};
    printf("nodecliff_unit: %s\n", unit);
    printf("nodecliff_table_stacks: %llu\n", (unsigned long long)c->grown_next);
    for (size_t f = 0; f < 3; f++) {
        double early = median(r, e0, e1, f), late = median(r, l0, n, f);
        printf("nodecliff_%s_early: %.0f\nnodecliff_%s_late: %.0f\n", names[f], early, names[f],
               late);
        printf("nodecliff_%s_late_over_early: %.2f\n", names[f], early > 0 ? late / early : 0);
    }
}

static int run(cliff_t *c)
{
    cliff_round_t *r = calloc(c->pushes, sizeof *r);
    if (r == NULL) return 1;
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < c->pushes; i++) {
        c->round = i + 1;
        rc = round_run(c, &r[i]);
        storage_stats_t s;
        if (rc == 0) rc = storage_stats(c->st, &s);
        if (rc == 0)
            printf("nodecliff_round: %llu table_stacks=%llu push_per_new_stack=%.0f "
                   "probe_known=%.0f probe_new=%.0f whole_table_loads=%llu\n",
                   (unsigned long long)i + 1, (unsigned long long)c->grown_next,
                   r[i].push_per_stack, r[i].probe_known, r[i].probe_new,
                   (unsigned long long)s.node_table_loads);
        fflush(stdout);
    }
    if (rc == 0) report(c, r, c->pushes);
    free(r);
    return rc ? 1 : 0;
}

int cmd_nodecliff(int argc, char **argv)
{
    cliff_t c = {.pushes = 20, .stacks = 250000, .others = 2, .other_stacks = 100000};
    uint64_t cache = 16u << 20;
    for (int i = 0; i < argc; i++) {
        if (!flag_u64(argc, argv, &i, "--pushes", &c.pushes) &&
            !flag_u64(argc, argv, &i, "--stacks", &c.stacks) &&
            !flag_u64(argc, argv, &i, "--others", &c.others) &&
            !flag_u64(argc, argv, &i, "--other-stacks", &c.other_stacks) &&
            !flag_u64(argc, argv, &i, "--node-cache-bytes", &cache)) {
            if (strcmp(argv[i], "--callgrind") == 0) {
                c.callgrind = 1;
                continue;
            }
            fprintf(stderr, "nodecliff: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (c.pushes < 2 || c.stacks == 0 || c.others > CLIFF_MAX_OTHERS) {
        fprintf(stderr, "nodecliff: wants --pushes >= 2, --stacks >= 1, --others <= %d\n",
                CLIFF_MAX_OTHERS);
        return 2;
    }
    c.perf_fd = perf_open();
    c.grown = service("grown");
    for (uint64_t o = 0; o < c.others; o++) {
        char name[32];
        snprintf(name, sizeof name, "other%llu", (unsigned long long)o);
        c.other[o] = service(name);
    }
    char *dir = make_temp_dir("nodecliff");
    storage_options_t o;
    storage_options_default(&o);
    o.path = dir;
    o.node_cache_bytes = (size_t)cache;
    errmsg_t em = {{0}};
    int rc = 1;
    if (dir != NULL && storage_open(&o, &c.st, &em) == 0)
        rc = run(&c);
    else
        fprintf(stderr, "nodecliff: %s\n", em.text[0] ? em.text : "no temporary directory");
    storage_close(c.st);
    if (dir) rm_rf(dir);
    free(dir);
    labels_free(c.grown);
    for (uint64_t i = 0; i < c.others; i++)
        labels_free(c.other[i]);
    if (c.perf_fd >= 0) close(c.perf_fd);
    return rc;
}
