/* test_query_aggregate.c — whole-service render partials read the service
 * aggregates (query/aggregate.c) and answer exactly what the per-series path
 * answers: the same call tree and timeline for time ranges cutting across
 * windows and resolutions, for a partial's token ranges, with the spy name
 * the series share, with each aggregate's anchors (three here; a service
 * of one pod: the anchor alone); selectors that are not exactly a service (another
 * label, a regex, a negation, no service) take the per-series path. The
 * 10 s windows mix trees kept in no block (storage format 11), scaled ones
 * and ones over max_profile_tree_bytes. Each timeline is also built by two
 * threads taking its items from both ends (ends_t), and added: the
 * same samples. Prints its seed; argv[1] replays. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/hash.h"
#include "query/query_int.h"
#include "storage/storage_int.h"
#include "tests/unit/check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define SAMPLES "process_cpu:samples:count:cpu:nanoseconds"
#define DAY 86400LL
#define T0 (19000 * DAY)
#define PODS 40
#define SHARDS 4

static symtab_t *syms;

/* The store's clock: the end of the data, so its 10 s windows (1 day of
 * retention) and its profile trees are alive. */
static int64_t fake_now(void *ctx)
{
    (void)ctx;
    return (T0 + 2 * DAY) * 1000000000LL;
}
static uint64_t sym_ids[16];

static uint64_t token_of(const char *svc, uint64_t id)
{
    char b[64];
    snprintf(b, sizeof b, "%s/%llu", svc, (unsigned long long)(id % SHARDS));
    return hash_bytes64(b, strlen(b));
}

static labels_t *pod_labels(const char *svc, int pod, const char *spy, const char *type)
{
    char name[32];
    labels_t *l = labels_new();
    labels_set_str(l, LABEL_NAME, "process_cpu");
    labels_set_str(l, LABEL_PROFILE_TYPE, type);
    labels_set_str(l, LABEL_SERVICE_NAME, svc);
    snprintf(name, sizeof name, "pod-%d", pod);
    labels_set_str(l, "pod", name);
    if (spy != NULL) labels_set_str(l, STORAGE_LABEL_SPY, spy);
    return l;
}

/* One profile of a pod: its CPU series, and with samples a samples series
 * on the same token whose tree is the CPU tree / 3 (stored scaled: the
 * CPU tree is written second, 3 times the first). Trees of 1 to 4 stacks,
 * some over max_profile_tree_bytes (main). */
static void write_one(storage_t *st, const char *svc, int pod, const char *spy, uint64_t pid,
                      int64_t t_s, int samples)
{
    labels_t *l = pod_labels(svc, pod, spy, CPU), *ls = pod_labels(svc, pod, spy, SAMPLES);
    calltree_t *t = calltree_new(0), *ts = calltree_new(0);
    int n = 1 + (int)(check_rng() % 4);
    for (int i = 0; i < n; i++) {
        uint64_t stack[6];
        size_t d = 1 + check_rng() % 6;
        stack[0] = sym_ids[check_rng() % 2];
        for (size_t k = 1; k < d; k++)
            stack[k] = sym_ids[2 + check_rng() % 14];
        int64_t v = 1 + (int64_t)(check_rng() % 1000);
        calltree_add_stack(ts, stack, d, v);
        calltree_add_stack(t, stack, d, 3 * v);
    }
    storage_series_write_t sw[2] = {{.labels = ls, .series_id = labels_hash(ls), .tree = ts},
                                    {.labels = l, .series_id = labels_hash(l), .tree = t}};
    sw[1].token = token_of(svc, sw[1].series_id);
    sw[0].token = sw[1].token;
    storage_profile_write_t p = {.tenant = "t",
                                 .time_ns = t_s * 1000000000LL,
                                 .series = samples ? sw : sw + 1,
                                 .nseries = samples ? 2 : 1,
                                 .symbols = syms};
    for (int i = 0; i < 8; i++)
        p.profile_id[15 - i] = (uint8_t)(pid >> (8 * i));
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(st, &p, NULL, &em), 0);
    calltree_free(t);
    calltree_free(ts);
    labels_free(l);
    labels_free(ls);
}

/* Tree equality whatever the node order: sorted (path hash, self) pairs. */
static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static uint64_t *pairs(const calltree_t *t, size_t *n)
{
    size_t nn = calltree_node_count(t);
    uint64_t *h = calloc(nn, sizeof *h), *out = calloc(2 * nn, sizeof *out);
    *n = 0;
    for (uint32_t i = 1; i < nn; i++) {
        uint64_t w[2] = {h[calltree_parent(t, i)], calltree_sym(t, i)};
        h[i] = hash_bytes64(w, sizeof w);
        if (calltree_self(t, i) == 0) continue;
        out[2 * *n] = h[i];
        out[2 * (*n)++ + 1] = (uint64_t)calltree_self(t, i);
    }
    qsort(out, *n, 2 * sizeof *out, cmp_pair);
    free(h);
    return out;
}

static int same_tree(const calltree_t *a, const calltree_t *b)
{
    size_t na, nb;
    uint64_t *pa = pairs(a, &na), *pb = pairs(b, &nb);
    int same = na == nb && memcmp(pa, pb, 2 * na * sizeof *pa) == 0 &&
               calltree_root_total(a) == calltree_root_total(b) &&
               calltree_self(a, 0) == calltree_self(b, 0);
    free(pa);
    free(pb);
    return same;
}

typedef struct answer {
    calltree_t *tree;
    query_timeline_t tl;
    char *spy;
    size_t nseries;
} answer_t;

/* The timeline's items taken from both ends by two threads (as a render
 * and its helper take them, ends_t) and added: want's samples. */
typedef struct back_half {
    storage_t *st;
    const query_series_t *ser;
    const query_plan_t *plan;
    ends_t *ends;
    query_timeline_t tl;
    int rc;
} back_half_t;

static void *back_main(void *arg)
{
    back_half_t *b = arg;
    errmsg_t em = {{0}};
    b->rc = query_timeline_build_from(b->st, "t", b->ser, b->plan, b->ends, 1, &b->tl, &em);
    return NULL;
}

static void check_two_threads(storage_t *st, const query_series_t *ser, const query_plan_t *plan,
                              const query_timeline_t *want)
{
    ends_t ends;
    CHECK(ends_init(&ends, ser->n * query_timeline_pieces(plan)));
    back_half_t b = {st, ser, plan, &ends, {0}, 0};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, back_main, &b), 0);
    query_timeline_t mine;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_timeline_build_from(st, "t", ser, plan, &ends, 0, &mine, &em), 0);
    pthread_join(th, NULL);
    CHECK_EQ_INT(b.rc, 0);
    query_timeline_add(&mine, &b.tl);
    CHECK(mine.n == want->n && mine.start_s == want->start_s && mine.step_s == want->step_s);
    CHECK(mine.n == 0 || memcmp(mine.samples, want->samples, mine.n * sizeof *mine.samples) == 0);
    query_timeline_free(&mine);
    query_timeline_free(&b.tl);
}

/* The per-series answer: select, merge, timeline. */
static answer_t per_series(storage_t *st, const char *sel_text, const rangeset_t *rs,
                           const query_plan_t *plan, const query_limits_t *lim)
{
    answer_t a = {.tree = calltree_new(0)};
    query_series_t ser;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_series_select_text(st, "t", "query", sel_text, rs, lim, &ser, &em), 0);
    CHECK_EQ_INT(query_merge_series(st, "t", &ser, plan, 0, a.tree, &em), 0);
    CHECK_EQ_INT(query_timeline_build(st, "t", &ser, plan, &a.tl, &em), 0);
    check_two_threads(st, &ser, plan, &a.tl);
    a.spy = ser.spy_name != NULL ? strdup(ser.spy_name) : NULL;
    a.nseries = ser.n;
    query_series_free(&ser);
    return a;
}

static answer_t partial(storage_t *st, const char *sel_text, const query_range_t *r, size_t nr,
                        const query_plan_t *plan, const query_limits_t *lim)
{
    query_partial_args_t args = {.kind = QUERY_KIND_RENDER,
                                 .selector = sel_text,
                                 .from_s = plan->from_s,
                                 .until_s = plan->until_s,
                                 .min_res = plan->min_res,
                                 .timeline = 1,
                                 .ranges = r,
                                 .nranges = nr};
    query_partial_t out;
    errmsg_t em = {{0}};
    int rc = query_partial_run(st, "t", &args, lim, &out, &em);
    if (rc != 0) fprintf(stderr, "partial %s: %s\n", sel_text, errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
    answer_t a = {.tree = out.tree, .tl = out.tl, .spy = out.spy_name, .nseries = out.nseries};
    out.tree = NULL;
    out.spy_name = NULL;
    memset(&out.tl, 0, sizeof out.tl);
    query_partial_free(&out);
    return a;
}

static void answer_free(answer_t *a)
{
    calltree_free(a->tree);
    query_timeline_free(&a->tl);
    free(a->spy);
}

static int same_answer(const answer_t *a, const answer_t *b)
{
    int spy = (a->spy == NULL) == (b->spy == NULL) && (a->spy == NULL || !strcmp(a->spy, b->spy));
    return same_tree(a->tree, b->tree) && a->tl.n == b->tl.n &&
           (a->tl.n == 0 || memcmp(a->tl.samples, b->tl.samples, a->tl.n * 8) == 0) && spy;
}

/* 1 if the selector reads the aggregates (over every token). */
static int uses_aggregate(storage_t *st, const char *text)
{
    query_selector_t *sel;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_selector_parse("query", text, strlen(text), &sel, &em), 0);
    rangeset_t all = {.all = 1};
    query_series_t ser;
    int used = query_aggregate_select(st, "t", sel, &all, &ser, &em);
    query_series_free(&ser);
    query_selector_free(sel);
    return used;
}

static void check_ranges(storage_t *st, const query_limits_t *lim)
{
    static const int64_t cases[][2] = {
        {T0 - 3600, T0 + 2 * DAY},          {T0 + 5, T0 + 35},
        {T0 + 3599, T0 + DAY + 7201},       {T0 + 600, T0 + 1200},
        {T0 - DAY, T0 + DAY + 4000},        {T0 + 3 * DAY, T0 + 4 * DAY},
        {T0 + DAY + 3605, T0 + DAY + 3655}, /* 10 s windows (alive: the last day) */
    };
    static const char *sels[] = {CPU "{service_name=\"svc\"}",
                                 CPU "{service_name=\"svc\", pyroscope_spy=\"gospy\"}",
                                 CPU "{__name__=\"process_cpu\", service_name=\"svc\"}",
                                 CPU "{service_name=\"mixed\"}", SAMPLES "{service_name=\"svc\"}"};
    rangeset_t all = {.all = 1};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t s = 0; s < sizeof sels / sizeof *sels; s++) {
            query_plan_t plan;
            query_plan_make(cases[c][0] * 1000, cases[c][1] * 1000, (T0 + 2 * DAY) * 1000, lim,
                            &plan);
            answer_t want = per_series(st, sels[s], &all, &plan, lim);
            answer_t got = partial(st, sels[s], NULL, 0, &plan, lim);
            CHECK(same_answer(&want, &got));
            CHECK(got.nseries <= 4 * SHARDS); /* aggregates and anchors, not pods */
            answer_free(&want);
            answer_free(&got);
        }
}

/* A partial over some token ranges answers for exactly those tokens. */
static void check_token_ranges(storage_t *st, const query_limits_t *lim)
{
    uint64_t t1 = token_of("svc", 1), t2 = token_of("svc", 2);
    query_range_t r[2] = {{t1 - 1, t1}, {t2 - 1, t2}};
    rangeset_t rs;
    CHECK_EQ_INT(query_rangeset_build(&rs, r, 2), 0);
    query_plan_t plan;
    query_plan_make((T0 - 3600) * 1000, (T0 + 2 * DAY) * 1000, (T0 + 2 * DAY) * 1000, lim, &plan);
    const char *sel = CPU "{service_name=\"svc\"}";
    answer_t want = per_series(st, sel, &rs, &plan, lim);
    answer_t got = partial(st, sel, r, 2, &plan, lim);
    CHECK(same_answer(&want, &got));
    CHECK(calltree_root_total(got.tree) > 0);
    CHECK_EQ_INT(got.nseries, 8); /* two aggregates and their three anchors each */
    answer_free(&want);
    answer_free(&got);
    query_rangeset_free(&rs);
}

/* A service of one pod: its aggregate holds nothing (the pod's series is
 * its anchor), and the whole-service answer is the anchor's, exactly. */
static void check_solo(storage_t *st, const query_limits_t *lim)
{
    rangeset_t all = {.all = 1};
    query_plan_t plan;
    query_plan_make((T0 - 3600) * 1000, (T0 + 2 * DAY) * 1000, (T0 + 2 * DAY) * 1000, lim, &plan);
    const char *sel = CPU "{service_name=\"solo\"}";
    CHECK_EQ_INT(uses_aggregate(st, sel), 1);
    answer_t want = per_series(st, sel, &all, &plan, lim);
    answer_t got = partial(st, sel, NULL, 0, &plan, lim);
    CHECK(same_answer(&want, &got));
    CHECK(calltree_root_total(got.tree) > 0);
    CHECK_EQ_INT(got.nseries, 1);
    answer_free(&want);
    answer_free(&got);
}

/* A render over 10 s windows scans profile_trees for each member series
 * (the anchors) and never for an aggregate, which holds no trees. */
static void check_unblocked_scans(storage_t *st, const query_limits_t *lim)
{
    const char *text = CPU "{service_name=\"svc\"}";
    query_selector_t *sel;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_selector_parse("query", text, strlen(text), &sel, &em), 0);
    rangeset_t all = {.all = 1};
    query_series_t ser;
    CHECK_EQ_INT(query_aggregate_select(st, "t", sel, &all, &ser, &em), 1);
    uint64_t agg = storage_aggregate_id("svc", CPU, "gospy");
    size_t members = 0;
    for (size_t i = 0; i < ser.n; i++)
        members += ser.series_id[i] != agg;
    CHECK(members > 0 && members < ser.n); /* both kinds are read */
    query_series_free(&ser);
    query_selector_free(sel);
    query_plan_t plan;
    query_plan_make((T0 + DAY + 3605) * 1000, (T0 + DAY + 3655) * 1000, (T0 + 2 * DAY) * 1000, lim,
                    &plan);
    size_t pieces = 0;
    for (size_t k = 0; k < plan.n; k++)
        pieces += plan.piece[k].res == 0;
    CHECK(pieces > 0);
    uint64_t before = atomic_load(&st->counters.unblocked_scans);
    answer_t got = partial(st, text, NULL, 0, &plan, lim);
    CHECK(calltree_root_total(got.tree) > 0);
    CHECK_EQ_INT(atomic_load(&st->counters.unblocked_scans) - before, members * pieces);
    answer_free(&got);
}

/* Selectors that are not exactly one service: per series, and exact. */
static void check_fallbacks(storage_t *st, const query_limits_t *lim)
{
    static const char *sels[] = {CPU "{service_name=\"svc\", pod=\"pod-3\"}",
                                 CPU "{service_name=~\"svc\"}",
                                 CPU "{service_name=\"svc\", pod!=\"pod-3\"}", CPU "{}",
                                 CPU "{service_name=\"svc\", __name__=\"memory\"}"};
    rangeset_t all = {.all = 1};
    query_plan_t plan;
    query_plan_make((T0 - 3600) * 1000, (T0 + 2 * DAY) * 1000, (T0 + 2 * DAY) * 1000, lim, &plan);
    for (size_t s = 0; s < sizeof sels / sizeof *sels; s++) {
        CHECK_EQ_INT(uses_aggregate(st, sels[s]), 0);
        answer_t want = per_series(st, sels[s], &all, &plan, lim);
        answer_t got = partial(st, sels[s], NULL, 0, &plan, lim);
        CHECK(same_answer(&want, &got));
        CHECK_EQ_INT(got.nseries, want.nseries);
        answer_free(&want);
        answer_free(&got);
    }
    CHECK_EQ_INT(uses_aggregate(st, CPU "{service_name=\"svc\"}"), 1);
    CHECK_EQ_INT(uses_aggregate(st, CPU "{service_name=\"svc\", pyroscope_spy=\"gospy\"}"), 1);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_query_aggregate seed %llu\n", (unsigned long long)seed);
    char dir[] = "/tmp/flamedb-qagg-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    storage_options_t so;
    storage_options_default(&so);
    so.path = dir;
    so.block_cache_bytes = 8 << 20;
    so.write_buffer_bytes = 16 << 20;
    /* some trees over it (in their 10 s block), the others kept in no
     * block (format 11), the samples ones mostly scaled */
    so.max_profile_tree_bytes = 14; /* blocks of one to about three stacks fit */
    /* svc's aggregates (10 pods a shard) hold some members, not all */
    so.aggregate_anchors = 3;
    storage_t *st;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_open(&so, &st, &em), 0);
    clock_source_t clock = {fake_now, fake_now, NULL};
    storage_set_clock(st, &clock);
    syms = symtab_new();
    for (int i = 0; i < 16; i++) {
        char name[32];
        snprintf(name, sizeof name, "pkg.fn%d", i);
        symtab_intern(syms, name, strlen(name), "f.go", 4, &sym_ids[i]);
    }
    /* 40 pods of svc (one spy), 6 of "mixed" (a spy or none), 3 of "other"
     * on svc's tokens too, 1 of "solo"; profiles over two days from T0 */
    uint64_t pid = 1;
    for (int i = 0; i < 600; i++) {
        int64_t t = T0 + (int64_t)(check_rng() % (2 * DAY));
        write_one(st, "svc", (int)(check_rng() % PODS), "gospy", pid++, t, i % 2);
        if (i % 10 == 0) write_one(st, "mixed", i % 6, i % 4 ? "pyspy" : NULL, pid++, t, 0);
        if (i % 20 == 0) write_one(st, "other", i % 3, "gospy", pid++, t, 0);
        if (i % 15 == 0) write_one(st, "solo", 0, "gospy", pid++, t, 0);
    }
    for (int i = 0; i < 60; i++) /* dense in a few 10 s windows */
        write_one(st, "svc", (int)(check_rng() % PODS), "gospy", pid++,
                  T0 + DAY + 3600 + (int64_t)(check_rng() % 60), i % 2);
    query_limits_t lim;
    query_limits_default(&lim);
    check_ranges(st, &lim);
    check_token_ranges(st, &lim);
    check_fallbacks(st, &lim);
    check_solo(st, &lim);
    check_unblocked_scans(st, &lim);
    storage_stats_t stats; /* the window mix this test is about */
    CHECK_EQ_INT(storage_stats(st, &stats), 0);
    CHECK(stats.oversize_ptrees > 0 && stats.oversize_ptrees < 600);

    /* max_series bounds the series a query reads: a service's aggregates
     * and their anchors are a handful whatever its pods, so its render is
     * answered */
    lim.max_series = SHARDS * (1 + so.aggregate_anchors);
    query_plan_t plan;
    query_plan_make((T0 - 3600) * 1000, (T0 + 2 * DAY) * 1000, (T0 + 2 * DAY) * 1000, &lim, &plan);
    answer_t got = partial(st, CPU "{service_name=\"svc\"}", NULL, 0, &plan, &lim);
    CHECK(calltree_root_total(got.tree) > 0);
    answer_free(&got);

    symtab_free(syms);
    storage_close(st);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
    return check_exit();
}
