/* test_storage_aggregate.c — service aggregates (storage/aggregate.c): at
 * every resolution and window, an aggregate's block is exactly the sum of
 * its member series' blocks and its total the sum of their totals, for
 * profiles that write several members in one batch, duplicates, members of
 * another service or type or spy on the same token (not members), after
 * retention and compaction, after series GC, with a write refused by
 * tenant-max-series, and after the upgrades that
 * rebuild aggregates (also over partial ones left by an interrupted run) and
 * that record format-9 aggregates as holding every member. An aggregate
 * does not hold its anchors (its first members on the token, up to
 * aggregate-anchors of them), which readers add: a member alone in its
 * aggregate is stored once.
 * The pseudo series is never listed nor counted as a series. Prints its
 * seed; argv[1] replays. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <time.h>

#include "check.h"

#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define MEM "memory:alloc_space:bytes:space:bytes"
#define TA 0x1111000000000000ull
#define TB 0x9999000000000000ull
#define NIDS 4096
#define MAXW 512
#define DAY 86400

typedef struct member {
    const char *service, *type, *spy, *pod;
    uint64_t token;
    labels_t *l;
    uint64_t id;
} member_t;

static member_t mem[] = {
    {"svc", CPU, "gospy", "p0", TA},   {"svc", CPU, "gospy", "p1", TB},
    {"svc", CPU, "gospy", "p2", TA},   {"svc", CPU, "gospy", "p3", TB},
    {"svc", CPU, NULL, "p4", TA},      {"svc", MEM, "gospy", "p0", TA},
    {"other", CPU, "gospy", "q0", TA},
};
#define NMEM (sizeof mem / sizeof *mem)

/* Per window: the dense sum of block vectors and of totals. */
typedef struct acc {
    int64_t w[MAXW], tot[MAXW];
    int64_t (*v)[NIDS];
    size_t n;
    int bad;
} acc_t;

static size_t slot(acc_t *a, int64_t w)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->w[i] == w) return i;
    CHECK(a->n < MAXW);
    a->w[a->n] = w;
    a->tot[a->n] = 0;
    memset(a->v[a->n], 0, sizeof a->v[0]);
    return a->n++;
}

static int block_fn(void *ctx, int64_t w, const uint8_t *p, size_t n)
{
    acc_t *a = ctx;
    sparse_vec_t v;
    storage_sparse_init(&v);
    if (storage_sparse_decode(p, n, &v) != 0) a->bad++;
    size_t i = slot(a, w);
    for (size_t k = 0; k < v.n; k++) {
        if (v.id[k] >= NIDS) {
            a->bad++;
            continue;
        }
        a->v[i][v.id[k]] += v.val[k];
    }
    storage_sparse_free(&v);
    return 0;
}

static int total_fn(void *ctx, int64_t w, const uint8_t *p, size_t n)
{
    acc_t *a = ctx;
    if (n != 8) a->bad++;
    a->tot[slot(a, w)] += storage_i64_get(p);
    return 0;
}

/* A 10 s window's tree kept in no block (format 11): part of the window. */
static int unblocked_fn(void *ctx, int64_t w, const uint8_t *enc, size_t len,
                        const sparse_vec_t *vec)
{
    acc_t *a = ctx;
    if (enc != NULL) return block_fn(ctx, w, enc, len);
    size_t i = slot(a, w);
    for (size_t k = 0; k < vec->n; k++) {
        if (vec->id[k] >= NIDS) {
            a->bad++;
            continue;
        }
        a->v[i][vec->id[k]] += vec->val[k];
    }
    return 0;
}

static void add_series(storage_t *s, acc_t *a, uint64_t token, uint64_t id, int res)
{
    int64_t lo = -(1LL << 40), hi = 1LL << 40;
    CHECK_EQ_INT(storage_scan_window_values(s, CF_BLOCKS, "t", token, id, res, lo, hi, block_fn, a),
                 0);
    if (res == 0) /* the series' trees kept in no block */
        CHECK_EQ_INT(storage_scan_unblocked(s, NULL, "t", token, id, lo, hi, 0, unblocked_fn, a),
                     0);
    CHECK_EQ_INT(storage_scan_window_values(s, CF_TOTALS, "t", token, id, res, lo, hi, total_fn, a),
                 0);
}

/* a and b hold the same windows with the same sums. */
static int same(const acc_t *a, const acc_t *b)
{
    if (a->n != b->n || a->bad || b->bad) return 0;
    for (size_t i = 0; i < a->n; i++) {
        size_t j = 0;
        while (j < b->n && b->w[j] != a->w[i])
            j++;
        if (j == b->n || a->tot[i] != b->tot[j] || memcmp(a->v[i], b->v[j], sizeof a->v[0]) != 0)
            return 0;
    }
    return 1;
}

static acc_t *acc_new(void)
{
    acc_t *a = calloc(1, sizeof *a);
    a->v = calloc(MAXW, sizeof *a->v);
    return a;
}

static void acc_free(acc_t *a)
{
    free(a->v);
    free(a);
}

/* Every aggregate of every token with its anchor equals the sum of its
 * members, at every resolution (checked when strict; *equal counts the
 * equal ones); returns the number of windows seen. */
static size_t sums(storage_t *s, int strict, int *equal)
{
    uint64_t tokens[2] = {TA, TB};
    size_t seen = 0;
    acc_t *want = acc_new(), *got = acc_new();
    for (int ti = 0; ti < 2; ti++)
        for (size_t g = 0; g < NMEM; g++)
            for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
                uint64_t agg = storage_aggregate_id(mem[g].service, mem[g].type, mem[g].spy);
                want->n = got->n = 0;
                for (size_t m = 0; m < NMEM; m++)
                    if (mem[m].token == tokens[ti] &&
                        storage_aggregate_id(mem[m].service, mem[m].type, mem[m].spy) == agg)
                        add_series(s, want, tokens[ti], mem[m].id, r);
                add_series(s, got, tokens[ti], agg, r);
                uint64_t anchor[STORAGE_AGGREGATE_ANCHORS_MAX];
                int anchored = storage_aggregate_anchors(s, "t", tokens[ti], agg, anchor,
                                                         STORAGE_AGGREGATE_ANCHORS_MAX);
                CHECK(anchored >= 0);
                for (int a = 0; a < anchored; a++)
                    add_series(s, got, tokens[ti], anchor[a], r);
                if (strict) CHECK(same(want, got));
                *equal += same(want, got);
                seen += got->n;
            }
    acc_free(want);
    acc_free(got);
    return seen;
}

/* Whether the aggregate or one of its anchors holds a live window (what a
 * query reads for it), or an error. */
static int live_aggregate(storage_t *s, uint64_t token, uint64_t agg)
{
    uint64_t anchor[STORAGE_AGGREGATE_ANCHORS_MAX];
    int rc = storage_series_has_windows(s, "t", token, agg);
    int anchored =
        storage_aggregate_anchors(s, "t", token, agg, anchor, STORAGE_AGGREGATE_ANCHORS_MAX);
    for (int a = 0; rc == 0 && a < anchored; a++)
        rc = storage_series_has_windows(s, "t", token, anchor[a]);
    return rc != 0 || anchored >= 0 ? rc : anchored;
}

/* After one profile wrote every member in one batch: each aggregate's first
 * member in the batch is its anchor, and an aggregate whose only member is
 * its anchor holds no window (its windows are stored once, the member's). */
static void check_anchors(storage_t *s)
{
    /* p0 and p2 share an aggregate on TA, p1 and p3 one on TB; the rest are alone */
    static const int first[NMEM] = {1, 1, 0, 0, 1, 1, 1};
    for (size_t m = 0; m < NMEM; m++) {
        uint64_t agg = storage_aggregate_id(mem[m].service, mem[m].type, mem[m].spy), anchor = 0;
        CHECK_EQ_INT(storage_aggregate_anchors(s, "t", mem[m].token, agg, &anchor, 1), 1);
        CHECK_EQ_INT(anchor == mem[m].id, first[m]);
        CHECK_EQ_INT(storage_series_has_windows(s, "t", mem[m].token, agg), m < 4);
    }
    /* one probe for them all, forwards and back (its iterator seeks past
     * other series' keys): the same answers, and every member holds windows */
    storage_probe_t *p = NULL;
    CHECK_EQ_INT(storage_probe_open(s, &p), 0);
    for (int round = 0; round < 2; round++)
        for (size_t k = 0; k < NMEM; k++) {
            size_t m = round ? NMEM - 1 - k : k;
            uint64_t agg = storage_aggregate_id(mem[m].service, mem[m].type, mem[m].spy);
            CHECK_EQ_INT(storage_probe_has_windows(p, "t", mem[m].token, agg), m < 4);
            CHECK_EQ_INT(storage_probe_has_windows(p, "t", mem[m].token, mem[m].id), 1);
            CHECK_EQ_INT(storage_probe_has_windows(p, "t", mem[m].token, mem[m].id + 1), 0);
        }
    storage_probe_close(p);
}

static size_t check_sums(storage_t *s)
{
    int equal = 0;
    return sums(s, 1, &equal);
}

static calltree_t *random_tree(symtab_t *st)
{
    static const char *frames[] = {"main;a;b", "main;a;c",   "main;d", "main;d;e;f",
                                   "g;h",      "main;a;b;x", "main;y"};
    calltree_t *t = calltree_new(0);
    int n = 1 + (int)(check_rng() % 4);
    for (int i = 0; i < n; i++)
        fx_add(t, st, frames[check_rng() % 7], 1 + (int64_t)(check_rng() % 1000) * 10000000);
    return t;
}

/* One profile writing a random non-empty subset of members (listed in
 * `only`, or all when NULL) at time t. */
static void write_profile(storage_t *s, symtab_t *st, uint64_t pid, int64_t t, const int *only)
{
    storage_series_write_t sw[NMEM];
    calltree_t *trees[NMEM];
    size_t n = 0;
    for (size_t m = 0; m < NMEM; m++) {
        if (only != NULL ? !only[m] : check_rng() % 3 == 0) continue;
        trees[n] = random_tree(st);
        sw[n] = (storage_series_write_t){
            .labels = mem[m].l, .series_id = mem[m].id, .token = mem[m].token, .tree = trees[n]};
        n++;
    }
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = t * NS, .series = sw, .nseries = n, .symbols = st};
    fx_id(p.profile_id, pid);
    errmsg_t em = {{0}};
    size_t written;
    int rc = storage_write_profile(s, &p, &written, &em);
    if (rc != 0) fprintf(stderr, "write: %s\n", errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
    for (size_t i = 0; i < n; i++)
        calltree_free(trees[i]);
}

static int count_fn(void *ctx, const char *name)
{
    (void)name;
    (*(int *)ctx)++;
    return 0;
}

static int series_fn(void *ctx, uint64_t token, uint64_t id)
{
    (void)token;
    for (size_t m = 0; m < NMEM; m++)
        if (mem[m].id == id) return 0;
    (*(int *)ctx)++; /* a series that is not a real member */
    return 0;
}

/* The pseudo series appears in no listing and counts as no series. */
static void check_unlisted(fixture_t *f, size_t live)
{
    static const char *names[] = {LABEL_SERVICE_NAME, LABEL_PROFILE_TYPE, LABEL_NAME, "pod",
                                  STORAGE_LABEL_SPY};
    int strangers = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (size_t m = 0; m < NMEM; m++) {
            const char *v = i == 0   ? mem[m].service
                            : i == 1 ? mem[m].type
                            : i == 3 ? mem[m].pod
                                     : "gospy";
            if (i == 2) v = mem[m].type[0] == 'p' ? "process_cpu" : "memory";
            CHECK_EQ_INT(storage_postings(f->s, "t", names[i], v, series_fn, &strangers), 0);
        }
    CHECK_EQ_INT(strangers, 0);
    int nnames = 0;
    CHECK_EQ_INT(storage_label_names(f->s, "t", count_fn, &nnames), 0);
    CHECK_EQ_INT(nnames, 5); /* __name__, __profile_type__, pod, pyroscope_spy, service_name */
    CHECK_EQ_INT(storage_tenant_series(f->s, "t"), live);
}

static void build_members(void)
{
    for (size_t m = 0; m < NMEM; m++) {
        labels_t *l = labels_new();
        labels_set_str(l, LABEL_NAME, mem[m].type[0] == 'p' ? "process_cpu" : "memory");
        labels_set_str(l, LABEL_PROFILE_TYPE, mem[m].type);
        labels_set_str(l, LABEL_SERVICE_NAME, mem[m].service);
        labels_set_str(l, "pod", mem[m].pod);
        if (mem[m].spy != NULL) labels_set_str(l, STORAGE_LABEL_SPY, mem[m].spy);
        mem[m].l = l;
        mem[m].id = labels_hash(l);
    }
}

/* A version-5 directory is upgraded: aggregates rebuilt from the series,
 * whether it had none (deleted here) or partial ones (kept here: a rebuild
 * that stopped half-way must not add twice). */
static void test_upgrade(fixture_t *f, size_t windows)
{
    fx_put_version(f, "5");
    CHECK_EQ_INT(fx_reopen(f), 0);
    CHECK_EQ_INT(check_sums(f->s), windows);
    skey_t lo, hi;
    uint64_t agg = storage_aggregate_id("svc", CPU, "gospy");
    storage_key_series(&lo, TA, "t", agg);
    hi = lo;
    hi.n = storage_prefix_successor(hi.b, hi.n);
    char *err = NULL;
    for (int cf = CF_BLOCKS; cf <= CF_TOTALS; cf++)
        rocksdb_delete_range_cf(f->s->db, f->s->wopts, f->s->cf[cf], (const char *)lo.b, lo.n,
                                (const char *)hi.b, hi.n, &err);
    CHECK(err == NULL);
    int equal = 0;
    CHECK(sums(f->s, 0, &equal) < windows); /* the check sees the loss */
    CHECK_EQ_INT(equal, 2 * NMEM * STORAGE_RESOLUTION_COUNT - 4 * STORAGE_RESOLUTION_COUNT);
    fx_put_version(f, "5");
    CHECK_EQ_INT(fx_reopen(f), 0);
    CHECK_EQ_INT(check_sums(f->s), windows);
    fx_check_version(f);
}

/* A version-9 directory: no anchors, every member in its aggregate (made
 * here by deleting the anchors and rebuilding the aggregates). The upgrade
 * records that, so the members written after it all add to their
 * aggregates and a reader adds no anchor: the sums hold. */
static void test_upgrade9(fixture_t *f, symtab_t *st, const int *all)
{
    static const uint8_t hi[9] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    char *err = NULL;
    rocksdb_delete_range_cf(f->s->db, f->s->wopts, f->s->cf[CF_ANCHORS], "", 0, (const char *)hi,
                            sizeof hi, &err);
    CHECK(err == NULL);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_aggregate_rebuild(f->s, &em), 0);
    size_t windows = check_sums(f->s);
    CHECK(windows > 0);
    fx_put_version(f, "9");
    CHECK_EQ_INT(fx_reopen(f), 0);
    for (size_t m = 0; m < NMEM; m++) {
        uint64_t agg = storage_aggregate_id(mem[m].service, mem[m].type, mem[m].spy), anchor;
        CHECK_EQ_INT(storage_aggregate_anchors(f->s, "t", mem[m].token, agg, &anchor, 1), 0);
    }
    for (uint64_t i = 4000; i < 4010; i++)
        write_profile(f->s, st, i, f->now - (int64_t)(check_rng() % 3000), i == 4000 ? all : NULL);
    CHECK(check_sums(f->s) >= windows);
    fx_check_version(f);
}

/* --- several anchors (format 13) ------------------------------------------- */

#define NWIDE 7

/* The pods of service "wide" on token TA, one aggregate. */
static labels_t *wide[NWIDE];

static void write_wide(storage_t *s, symtab_t *st, uint64_t pid, int64_t t, const int *pods,
                       size_t n)
{
    storage_series_write_t sw[NWIDE];
    calltree_t *trees[NWIDE];
    for (size_t i = 0; i < n; i++) {
        trees[i] = random_tree(st);
        sw[i] = (storage_series_write_t){.labels = wide[pods[i]],
                                         .series_id = labels_hash(wide[pods[i]]),
                                         .token = TA,
                                         .tree = trees[i]};
    }
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = t * NS, .series = sw, .nseries = n, .symbols = st};
    fx_id(p.profile_id, pid);
    errmsg_t em = {{0}};
    int rc = storage_write_profile(s, &p, NULL, &em);
    if (rc != 0) fprintf(stderr, "write: %s\n", errmsg_text(&em, rc));
    CHECK_EQ_INT(rc, 0);
    for (size_t i = 0; i < n; i++)
        calltree_free(trees[i]);
}

/* The aggregate's anchors are exactly pods want[0..n) (in that order), it
 * holds windows exactly when held says so, and with its anchors it sums
 * every pod written at every resolution. */
static void check_wide(storage_t *s, const int *want, size_t n, int held)
{
    uint64_t agg = storage_aggregate_id("wide", CPU, NULL), anchor[STORAGE_AGGREGATE_ANCHORS_MAX];
    int got = storage_aggregate_anchors(s, "t", TA, agg, anchor, STORAGE_AGGREGATE_ANCHORS_MAX);
    CHECK_EQ_INT(got, (int)n);
    for (size_t i = 0; i < n && (size_t)got == n; i++)
        CHECK(anchor[i] == labels_hash(wide[want[i]]));
    CHECK_EQ_INT(storage_series_has_windows(s, "t", TA, agg), held);
    acc_t *a = acc_new(), *b = acc_new();
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        a->n = b->n = 0;
        for (size_t p = 0; p < NWIDE; p++)
            add_series(s, a, TA, labels_hash(wide[p]), r);
        add_series(s, b, TA, agg, r);
        for (int i = 0; i < got; i++)
            add_series(s, b, TA, anchor[i], r);
        CHECK(a->n > 0 && same(a, b));
    }
    acc_free(a);
    acc_free(b);
}

/* With aggregate-anchors 3 the first three pods written on the token (two
 * in one batch) are anchors and the aggregate holds only the others; raised
 * to 5, a pod already stored stays a member (its windows are in the
 * aggregate) and a new one becomes an anchor; lowered to 1, the recorded
 * anchors stay. A format-12 directory (one anchor or none) opens as it is. */
static void test_many_anchors(symtab_t *st)
{
    for (size_t p = 0; p < NWIDE; p++) {
        char pod[8];
        snprintf(pod, sizeof pod, "w%zu", p);
        wide[p] = labels_new();
        labels_set_str(wide[p], LABEL_NAME, "process_cpu");
        labels_set_str(wide[p], LABEL_PROFILE_TYPE, CPU);
        labels_set_str(wide[p], LABEL_SERVICE_NAME, "wide");
        labels_set_str(wide[p], "pod", pod);
    }
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    int64_t keep[STORAGE_RESOLUTION_COUNT] = {3600, 6 * 3600, DAY, 3 * DAY, 6 * DAY};
    memcpy(f.opts.retention_seconds, keep, sizeof keep);
    f.opts.series_gc_interval_seconds = 0; /* run by hand */
    f.opts.aggregate_anchors = 3;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    static const int p01[] = {0, 1}, p2[] = {2}, p34[] = {3, 4}, p35[] = {3, 5}, p6[] = {6};
    write_wide(f.s, st, 1, f.now - 100, p01, 2);
    write_wide(f.s, st, 2, f.now - 90, p2, 1);
    check_wide(f.s, (const int[]){0, 1, 2}, 3, 0); /* three pods: stored once */
    write_wide(f.s, st, 3, f.now - 80, p34, 2);
    write_wide(f.s, st, 4, f.now - 75, p01, 2);
    check_wide(f.s, (const int[]){0, 1, 2}, 3, 1);

    f.opts.aggregate_anchors = 5;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    write_wide(f.s, st, 5, f.now - 70, p35, 2);
    check_wide(f.s, (const int[]){0, 1, 2, 5}, 4, 1);

    f.opts.aggregate_anchors = 1;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    write_wide(f.s, st, 6, f.now - 60, p6, 1);
    write_wide(f.s, st, 7, f.now - 50, p35, 2);
    check_wide(f.s, (const int[]){0, 1, 2, 5}, 4, 1);

    f.opts.aggregate_anchors = 0;
    CHECK_EQ_INT(fx_reopen(&f), ERR_INVALID_ARGUMENT);
    f.opts.aggregate_anchors = STORAGE_AGGREGATE_ANCHORS_MAX + 1;
    CHECK_EQ_INT(fx_reopen(&f), ERR_INVALID_ARGUMENT);
    f.opts.aggregate_anchors = 2;
    CHECK_EQ_INT(fx_open(&f), 0);
    fx_put_version(&f, "12");
    CHECK_EQ_INT(fx_reopen(&f), 0);
    check_wide(f.s, (const int[]){0, 1, 2, 5}, 4, 1);
    fx_check_version(&f);

    /* the series GC takes the pods it deletes off the list (their windows,
     * and their part of the aggregate's, expired): the places go to new
     * series; the last anchor stays (an empty list takes none) */
    f.now += 7 * DAY;
    static const int p1[] = {1}, p0[] = {0}, p3[] = {3};
    write_wide(f.s, st, 8, f.now - 5, p1, 1);
    size_t removed = 0;
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(removed, NWIDE - 1);
    check_wide(f.s, (const int[]){1}, 1, 0);
    write_wide(f.s, st, 9, f.now - 4, p0, 1);
    write_wide(f.s, st, 10, f.now - 3, p3, 1);
    check_wide(f.s, (const int[]){1, 0}, 2, 1);
    f.now += 7 * DAY;
    write_wide(f.s, st, 11, f.now - 5, p3, 1);
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(removed, 2); /* pods 1 and 0: the one deleted second stays */
    uint64_t agg = storage_aggregate_id("wide", CPU, NULL), last = 0;
    CHECK_EQ_INT(storage_aggregate_anchors(f.s, "t", TA, agg, &last, 1), 1);
    CHECK(last == labels_hash(wide[0]) || last == labels_hash(wide[1]));
    fx_done(&f);
    for (size_t p = 0; p < NWIDE; p++)
        labels_free(wide[p]);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_storage_aggregate seed %llu\n", (unsigned long long)seed);
    build_members();
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    int64_t keep[STORAGE_RESOLUTION_COUNT] = {3600, 6 * 3600, DAY, 3 * DAY, 6 * DAY};
    memcpy(f.opts.retention_seconds, keep, sizeof keep);
    f.opts.series_gc_interval_seconds = 0; /* run by hand */
    f.opts.tenant_max_series = 100;
    f.opts.aggregate_anchors = 1; /* aggregates holding members; several: below */
    f.now = 1700000000 / DAY * DAY + 3 * 3600;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    symtab_t *st = symtab_new();

    /* one profile of every member, then 80 over the last two days, plus 20
     * repeated (not counted again) */
    int all[NMEM];
    for (size_t m = 0; m < NMEM; m++)
        all[m] = 1;
    write_profile(f.s, st, 999, f.now - 5, all);
    check_anchors(f.s);
    CHECK(check_sums(f.s) > 0);
    for (uint64_t i = 0; i < 80; i++)
        write_profile(f.s, st, i, f.now - (int64_t)(check_rng() % (2 * DAY)), NULL);
    for (uint64_t i = 0; i < 20; i++)
        write_profile(f.s, st, i, f.now - (int64_t)(check_rng() % (2 * DAY)), NULL);
    size_t windows = check_sums(f.s);
    CHECK(windows > 100);
    check_unlisted(&f, NMEM);

    /* retention and compaction drop members' and aggregates' windows alike */
    f.now += DAY + 7200;
    int only0[NMEM] = {1}; /* from now on only p0 of svc gets data */
    write_profile(f.s, st, 1000, f.now - 5, only0);
    /* (the first pass folds operands into values, the second filters them) */
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    size_t after = check_sums(f.s);
    fprintf(stderr, "aggregate windows: %zu, after retention %zu\n", windows, after);
    CHECK(after > 0 && after < windows);

    /* series GC: every member but p0 has no live window left */
    f.now += 6 * DAY;
    write_profile(f.s, st, 1001, f.now - 5, only0);
    size_t removed = 0;
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(removed, NMEM - 1);
    check_unlisted(&f, 1);
    /* before compaction drops them, expired windows do not count as data */
    CHECK_EQ_INT(live_aggregate(f.s, TA, storage_aggregate_id("svc", CPU, NULL)), 0);
    CHECK_EQ_INT(live_aggregate(f.s, TB, storage_aggregate_id("svc", CPU, "gospy")), 0);
    CHECK_EQ_INT(live_aggregate(f.s, TA, storage_aggregate_id("svc", CPU, "gospy")), 1);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    size_t live = check_sums(f.s);
    CHECK(live > 0);
    /* the members come back: the aggregate keeps adding them up */
    for (uint64_t i = 2000; i < 2030; i++)
        write_profile(f.s, st, i, f.now - (int64_t)(check_rng() % 3000), NULL);
    windows = check_sums(f.s);
    CHECK(windows > live);

    /* tenant-max-series refuses a profile with one series too many: neither
     * the series nor its aggregate gets anything */
    f.opts.tenant_max_series = NMEM;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *extra = labels_new();
    labels_set_str(extra, LABEL_NAME, "process_cpu");
    labels_set_str(extra, LABEL_PROFILE_TYPE, CPU);
    labels_set_str(extra, LABEL_SERVICE_NAME, "svc");
    labels_set_str(extra, "pod", "p9");
    labels_set_str(extra, STORAGE_LABEL_SPY, "gospy");
    calltree_t *t = random_tree(st);
    storage_series_write_t sw[2] = {
        {.labels = mem[0].l, .series_id = mem[0].id, .token = TA, .tree = t},
        {.labels = extra, .series_id = labels_hash(extra), .token = TA, .tree = t}};
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (f.now - 5) * NS, .series = sw, .nseries = 2, .symbols = st};
    fx_id(p.profile_id, 3000);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f.s, &p, NULL, &em), ERR_LIMIT);
    CHECK_EQ_INT(check_sums(f.s), windows);
    calltree_free(t);
    labels_free(extra);

    test_upgrade(&f, windows);
    test_upgrade9(&f, st, all);
    test_many_anchors(st);
    symtab_free(st);
    for (size_t m = 0; m < NMEM; m++)
        labels_free(mem[m].l);
    fx_done(&f);
    return check_exit();
}
