/* test_storage_profile_spans.c — the span trees of stored profiles, as an
 * anti-entropy FETCH reads them (storage_profile_spans): each profile of a
 * token gets exactly its own members of the trees of its series and 10 s
 * window, by one scan for several profiles; a tree whose profiles are in an
 * anonymous rest (max_span_members 0) names the profile's trees with no
 * member (unknown); and a write of an unknown span (what a fetched profile
 * stores for it) marks the stored tree possibly short without changing its
 * total, and makes a tree of no member that reads partial. The trees are
 * found through profile_span_index (format 12): a write files a profile's
 * trees under one key, a streamed tree brings the entries of its members
 * (and of its rest, unnamed), a profile filed both ways reads each tree
 * once, a range clear and retention take them off, and a format-11 store
 * gets them at open. */
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
    /* each profile's own trees are named, none with a member: they went
     * into the rest */
    CHECK_EQ_INT(g.n[0] + g.n[1], 0);
    CHECK_EQ_INT(g.unknown[0], 2);
    CHECK_EQ_INT(g.sum_ids[0], S1 + S2);
    CHECK_EQ_INT(g.unknown[1], 1);
    CHECK_EQ_INT(g.sum_ids[1], S1);
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

static int count_entries(fixture_t *f)
{
    int n = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(f->s->db, f->s->ropts, f->s->cf[CF_PSPAN_INDEX]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it))
        n++;
    rocksdb_iter_destroy(it);
    return n;
}

static int put_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant, const uint8_t *v,
                  size_t vn)
{
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_stream_span_put(((fixture_t *)ctx)->s, tenant, key, klen, v, vn, ST, &em),
                 0);
    return 0;
}

/* Every span tree of from streamed whole into to. */
static void stream_all(fixture_t *from, fixture_t *to)
{
    CHECK_EQ_INT(storage_stream_spans(from->s, 0, UINT64_MAX, NULL, 0, put_cb, to), 0);
}

static int open_at(fixture_t *f, size_t max_members)
{
    int rc = fx_init(f);
    CHECK_EQ_INT(rc, 0);
    f->opts.max_span_members = max_members;
    f->now = B0;
    return rc != 0 ? rc : fx_reopen(f);
}

/* A tree a stream brings names its members' trees on the receiver; one
 * with a rest names its tree for every profile of its series and window. */
static void test_streamed(const labels_t *l)
{
    fixture_t a, b, c, d;
    if (open_at(&a, 64) != 0 || open_at(&b, 64) != 0 || open_at(&c, 0) != 0 || open_at(&d, 64) != 0)
        return;
    int64_t t[NREFS] = {B0 - 60, B0 - 58, B0 - 30};
    write_spans(&a, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0);
    write_spans(&a, l, 2, t[1], 200, (uint64_t[]){S1}, 1, 0);
    write_spans(&b, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0); /* live to both */
    stream_all(&a, &b);
    /* 1 is filed twice (its write's list, the stream's entries): read once */
    got_t g = profile_spans(&b, l, t, 2);
    CHECK_EQ_INT(g.n[0], 2);
    CHECK_EQ_INT(g.total[0], 100 + 101);
    CHECK_EQ_INT(g.n[1], 1);
    CHECK_EQ_INT(g.total[1], 200);
    CHECK_EQ_INT(g.unknown[0] + g.unknown[1], 0);
    /* members in the source's rest: no id to file them under */
    write_spans(&c, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0);
    write_spans(&c, l, 2, t[1], 200, (uint64_t[]){S1}, 1, 0);
    write_spans(&d, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0); /* its own and unnamed */
    stream_all(&c, &d);
    g = profile_spans(&d, l, t, 3);
    CHECK_EQ_INT(g.n[1] + g.n[2], 0);
    CHECK_EQ_INT(g.n[0] + g.unknown[0], 2); /* each tree once, member or unknown */
    CHECK_EQ_INT(g.sum_ids[0], S1 + S2);
    CHECK_EQ_INT(g.unknown[1], 2); /* it may be in S2's rest as far as d can tell */
    CHECK_EQ_INT(g.sum_ids[1], S1 + S2);
    CHECK_EQ_INT(g.unknown[2], 0); /* another window */
    fx_done(&a);
    fx_done(&b);
    fx_done(&c);
    fx_done(&d);
}

/* A range clear takes the entries off with their trees; retention too. */
static void test_clear(const labels_t *l)
{
    fixture_t f;
    if (open_at(&f, 64) != 0) return;
    int64_t t[NREFS] = {B0 - 60, B0 - 58, B0 - 30};
    write_spans(&f, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0);
    CHECK_EQ_INT(count_entries(&f), 1); /* one list key for both trees */
    uint64_t lo = TOKEN - 1, hi = TOKEN;
    storage_clear_stats_t st = {0};
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_range_clear(f.s, &lo, &hi, 1, &st, &em), 0);
    CHECK_EQ_INT(count_entries(&f), 0);
    CHECK_EQ_INT(st.spans, 2);
    storage_range_received(f.s);
    write_spans(&f, l, 2, t[1], 200, (uint64_t[]){S3}, 1, 0);
    got_t g = profile_spans(&f, l, t, 2);
    CHECK_EQ_INT(g.n[0] + g.unknown[0], 0);
    CHECK_EQ_INT(g.n[1], 1);
    /* retention drops an entry with its tree's window */
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(count_entries(&f), 1);
    f.now = t[1] + f.opts.span_retention_seconds + 20;
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(count_entries(&f), 0);
    fx_done(&f);
}

/* A format-11 store (no profile_span_index): the upgrade at open files
 * each stored tree under its members, and a format-7 value (a bare tree of
 * unknown members) as unnamed. */
static void test_upgrade(const labels_t *l)
{
    fixture_t f;
    if (open_at(&f, 64) != 0) return;
    int64_t t[NREFS] = {B0 - 60, B0 - 58, B0 - 30};
    write_spans(&f, l, 1, t[0], 100, (uint64_t[]){S1, S2}, 2, 0);
    write_spans(&f, l, 2, t[1], 200, (uint64_t[]){S1, S3}, 2, 0);
    calltree_t *bare = tree_of(7);
    buf_t enc;
    buf_init(&enc, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(bare, &enc), 0);
    skey_t k;
    storage_key_span(&k, "m", STORAGE_SPAN_KIND_SPAN, S2, TOKEN, labels_hash(l), B0 - 30);
    char *err = NULL;
    rocksdb_put_cf(f.s->db, f.s->wopts, f.s->cf[CF_SPANS], (const char *)k.b, k.n,
                   (const char *)enc.data, enc.len, &err);
    CHECK(err == NULL);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(f.s->db, f.s->ropts, f.s->cf[CF_PSPAN_INDEX]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn;
        const char *pk = rocksdb_iter_key(it, &kn);
        rocksdb_delete_cf(f.s->db, f.s->wopts, f.s->cf[CF_PSPAN_INDEX], pk, kn, &err);
        CHECK(err == NULL);
    }
    rocksdb_iter_destroy(it);
    fx_put_version(&f, "11");
    got_t g = profile_spans(&f, l, t, NREFS);
    CHECK_EQ_INT(g.n[0] + g.n[1] + g.unknown[2], 0); /* nothing filed yet */
    CHECK(fx_reopen(&f) == 0);                       /* the upgrade */
    fx_check_version(&f);
    g = profile_spans(&f, l, t, NREFS);
    CHECK_EQ_INT(g.n[0], 2); /* 1 and 2 share a window: S1 holds both */
    CHECK_EQ_INT(g.total[0], 100 + 101);
    CHECK_EQ_INT(g.n[1], 2);
    CHECK_EQ_INT(g.sum_ids[1], S1 + S3);
    CHECK_EQ_INT(g.unknown[0] + g.unknown[1], 0);
    CHECK_EQ_INT(g.n[2], 0);
    CHECK_EQ_INT(g.unknown[2], 1); /* the bare tree of its window */
    CHECK_EQ_INT(g.sum_ids[2], S2);
    CHECK_EQ_INT(count_entries(&f), 5);
    CHECK(fx_reopen(&f) == 0); /* nothing more at the next open */
    CHECK_EQ_INT(count_entries(&f), 5);
    buf_free(&enc);
    calltree_free(bare);
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
    test_streamed(l);
    test_clear(l);
    test_upgrade(l);
    labels_free(other);
    labels_free(l);
    symtab_free(ST);
    return check_exit();
}
