/* test_storage_profile_spans.c — the span trees of stored profiles, as an
 * anti-entropy FETCH reads them (storage_profile_spans): each profile of a
 * token gets exactly its own members of the trees of its series and 10 s
 * window, by one scan for several profiles; a tree whose profiles are in an
 * anonymous rest (max_span_members 0) names the profile's trees with no
 * member (unknown); and a write of an unknown span (what a fetched profile
 * stores for it) marks the stored tree possibly short without changing its
 * total, and makes a tree of no member that reads partial. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#define B0 1700000000LL
#define S1 0x51
#define S2 0x52
#define S3 0x53
#define NREFS 3
#define TOKEN 0x1234 /* every series here: a scan must tell them apart */

static symtab_t *ST;

static calltree_t *tree_of(int v)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, ST, "main;serve;db", v);
    return t;
}

/* Profile id with span trees spans[0..n) (each a tree of weight v + k) of
 * series l at time t_s; unknown: the spans go without a tree. */
static void write_spans(fixture_t *f, const labels_t *l, uint64_t id, int64_t t_s, int v,
                        const uint64_t *spans, size_t n, int unknown)
{
    calltree_t *t = tree_of(v), *st[4];
    storage_span_tree_t sp[4];
    for (size_t k = 0; k < n; k++) {
        st[k] = tree_of(v + (int)k);
        sp[k] = (storage_span_tree_t){STORAGE_SPAN_KIND_SPAN, spans[k], unknown ? NULL : st[k]};
        sp[k].unknown = unknown;
    }
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = t, .spans = sp, .nspans = n};
    sw.token = TOKEN;
    storage_profile_write_t p = {
        .tenant = "m", .time_ns = t_s * NS, .series = &sw, .nseries = 1, .symbols = ST};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    for (size_t k = 0; k < n; k++)
        calltree_free(st[k]);
    calltree_free(t);
}

typedef struct got {
    int n[NREFS], unknown[NREFS];
    uint64_t sum_ids[NREFS];
    int64_t total[NREFS];
} got_t;

static int got_cb(void *ctx, size_t ref, uint8_t kind, uint64_t id, const uint8_t *tree, size_t len)
{
    got_t *g = ctx;
    CHECK(ref < NREFS && kind == STORAGE_SPAN_KIND_SPAN);
    if (ref >= NREFS) return 0;
    g->sum_ids[ref] += id;
    if (tree == NULL) {
        g->unknown[ref]++;
        return 0;
    }
    g->n[ref]++;
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, tree, len), 0);
    g->total[ref] += calltree_root_total(t);
    calltree_free(t);
    return 0;
}

static got_t profile_spans(fixture_t *f, const labels_t *l, const int64_t *t_s, size_t n)
{
    got_t g = {{0}};
    uint8_t ids[NREFS][16];
    storage_profile_ref_t refs[NREFS];
    for (size_t i = 0; i < n; i++) {
        fx_id(ids[i], i + 1);
        refs[i] = (storage_profile_ref_t){labels_hash(l), t_s[i] * NS, ids[i]};
    }
    CHECK_EQ_INT(storage_profile_spans(f->s, "m", TOKEN, refs, n, got_cb, &g), 0);
    return g;
}

static int partial_cb(void *ctx, uint64_t token, uint64_t series, int64_t w, unsigned flags,
                      const uint8_t *v, size_t n)
{
    int *x = ctx;
    x[0] += (flags & STORAGE_SPAN_PARTIAL) != 0;
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    x[1] += (int)calltree_root_total(t);
    calltree_free(t);
    return 0;
}

/* {trees read possibly short, total} of span id over the last hour. */
static void span_read(fixture_t *f, uint64_t span, int *partial, int *total)
{
    int x[2] = {0, 0};
    CHECK_EQ_INT(storage_scan_spans(f->s, "m", STORAGE_SPAN_KIND_SPAN, span, B0 - 3600, B0 + 60,
                                    partial_cb, x),
                 0);
    *partial = x[0];
    *total = x[1];
}

static void test_members(const labels_t *l, const labels_t *other)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    f.now = B0;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    int64_t t[NREFS] = {B0 - 60, B0 - 58, B0 - 30}; /* 1 and 2 share a window */
    write_spans(&f, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0);
    write_spans(&f, l, 2, t[1], 200, (uint64_t[]){S1, S3}, 2, 0);
    write_spans(&f, l, 3, t[2], 300, (uint64_t[]){S1}, 1, 0);
    write_spans(&f, other, 1, t[0], 400, (uint64_t[]){S1, S2, S3}, 3,
                0); /* another series, same token */
    got_t g = profile_spans(&f, l, t, NREFS);
    CHECK_EQ_INT(g.n[0], 2);
    CHECK_EQ_INT(g.sum_ids[0], S1 + S2);
    CHECK_EQ_INT(g.total[0], 100 + 101);
    CHECK_EQ_INT(g.n[1], 2);
    CHECK_EQ_INT(g.sum_ids[1], S1 + S3);
    CHECK_EQ_INT(g.total[1], 200 + 201);
    CHECK_EQ_INT(g.n[2], 1);
    CHECK_EQ_INT(g.sum_ids[2], S1);
    CHECK_EQ_INT(g.total[2], 300);
    CHECK_EQ_INT(g.unknown[0] + g.unknown[1] + g.unknown[2], 0);
    /* one profile alone: the same as within the run */
    got_t one = profile_spans(&f, l, t, 1);
    CHECK_EQ_INT(one.n[0], 2);
    CHECK_EQ_INT(one.total[0], 201);
    fx_done(&f);
}

static void test_rest_is_unknown(const labels_t *l)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    f.opts.max_span_members = 0; /* every profile in the anonymous rest */
    f.now = B0;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    int64_t t[NREFS] = {B0 - 60, B0 - 58, B0 - 30};
    write_spans(&f, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0);
    write_spans(&f, l, 2, t[1], 200, (uint64_t[]){S1}, 1, 0);
    got_t g = profile_spans(&f, l, t, 2);
    /* the trees of the series and window are named, none with a member:
     * profile 2 may be in S2's rest as far as anyone can tell */
    CHECK_EQ_INT(g.n[0] + g.n[1], 0);
    CHECK_EQ_INT(g.unknown[0], 2);
    CHECK_EQ_INT(g.unknown[1], 2);
    CHECK_EQ_INT(g.sum_ids[1], S1 + S2);
    fx_done(&f);
}

static void test_unknown_write_marks_short(const labels_t *l)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    f.now = B0;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    int partial, total;
    write_spans(&f, l, 1, B0 - 60, 100, (uint64_t[]){S1}, 1, 0);
    span_read(&f, S1, &partial, &total);
    CHECK_EQ_INT(partial, 0);
    CHECK_EQ_INT(total, 100);
    /* a fetched profile of the same window whose member of S1 is unknown,
     * and of S2, which this store has no tree of */
    write_spans(&f, l, 2, B0 - 59, 200, (uint64_t[]){S1, S2}, 2, 1);
    span_read(&f, S1, &partial, &total);
    CHECK_EQ_INT(partial, 1);
    CHECK_EQ_INT(total, 100);
    span_read(&f, S2, &partial, &total);
    CHECK_EQ_INT(partial, 1);
    CHECK_EQ_INT(total, 0);
    /* kept through compaction and a later write of a known member */
    write_spans(&f, l, 3, B0 - 58, 300, (uint64_t[]){S1}, 1, 0);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    span_read(&f, S1, &partial, &total);
    CHECK_EQ_INT(partial, 1);
    CHECK_EQ_INT(total, 400);
    fx_done(&f);
}

int main(void)
{
    ST = symtab_new();
    labels_t *l = fx_labels("profilespans", NULL);
    labels_t *other = fx_labels("profilespans", "prod");
    test_members(l, other);
    test_rest_is_unknown(l);
    test_unknown_write_marks_short(l);
    labels_free(other);
    labels_free(l);
    symtab_free(ST);
    return check_exit();
}
