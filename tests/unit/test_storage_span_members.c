/* test_storage_span_members.c — span trees list their profiles (storage
 * format 8, storage/spanval.c): writes past max_span_members still count
 * every profile once on one node; a streamed tree meets a receiver's own
 * by profile id, and past the bound by the never-double-count fallback
 * (the side with more profiles whole; a streamed rest seals the value, as
 * does folding a streamed member into the rest, so a late write of a
 * profile that may be in it is left out and counted in span_dropped);
 * a read reports a tree that is sealed or had profiles left out as
 * possibly short (STORAGE_SPAN_PARTIAL), and an exact one never;
 * compaction and reopening keep the result; operands that do not parse are
 * skipped and counted; a stream of span trees pages in token order through
 * span_index; a format-7 directory (bare calltree values, no span_index) is
 * upgraded at open: its span trees read as before, stream through the
 * rebuilt index, and take new writes. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#define B0 1700000000LL
#define SPAN 0x5a

static symtab_t *ST;

static calltree_t *tree_of(int i)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    snprintf(stack, sizeof stack, "main;f%d;g", i % 3);
    fx_add(t, ST, stack, 100 + i);
    fx_add(t, ST, "main;common", i);
    return t;
}

static int64_t weight(int i)
{
    return 100 + 2 * (int64_t)i;
}

static int open_members(fixture_t *f, size_t members)
{
    if (fx_init(f) != 0) return -1;
    f->opts.max_span_members = members;
    f->now = B0;
    return fx_reopen(f);
}

static void write_span_id(fixture_t *f, const labels_t *l, int id, uint64_t span)
{
    calltree_t *t = tree_of(id);
    storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, span, t};
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = t, .spans = &sp, .nspans = 1};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {.tenant = "m",
                                 .time_ns = (B0 - 60 + id % 5) * NS,
                                 .series = &sw,
                                 .nseries = 1,
                                 .symbols = ST};
    fx_id(p.profile_id, (uint64_t)id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    calltree_free(t);
}

static void write_span(fixture_t *f, const labels_t *l, int id)
{
    write_span_id(f, l, id, SPAN);
}

static int64_t span_total(fixture_t *f)
{
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(storage_scan_spans(f->s, "m", STORAGE_SPAN_KIND_SPAN, SPAN, B0 - 3600, B0 + 60,
                                    fx_span_merge_cb, t),
                 0);
    int64_t total = calltree_root_total(t);
    calltree_free(t);
    return total;
}

static int partial_cb(void *ctx, uint64_t token, uint64_t series, int64_t w, unsigned flags,
                      const uint8_t *v, size_t n)
{
    *(int *)ctx += (flags & STORAGE_SPAN_PARTIAL) != 0;
    return 0;
}

/* How many of the span's trees a read reports as possibly short. */
static int span_partial(fixture_t *f)
{
    int n = 0;
    CHECK_EQ_INT(storage_scan_spans(f->s, "m", STORAGE_SPAN_KIND_SPAN, SPAN, B0 - 3600, B0 + 60,
                                    partial_cb, &n),
                 0);
    return n;
}

/* Checks the shape of f's one stored span value: members listed, profiles
 * in its rest, and whether it is sealed. */
static void check_shape(fixture_t *f, size_t listed, uint64_t rest, int sealed)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(f->s->db, f->s->ropts, f->s->cf[CF_SPANS]);
    rocksdb_iter_seek_to_first(it);
    CHECK(rocksdb_iter_valid(it));
    size_t vn = 0;
    const uint8_t *v = rocksdb_iter_valid(it) ? (const uint8_t *)rocksdb_iter_value(it, &vn) : NULL;
    spanval_t sv = {0};
    CHECK_EQ_INT(v != NULL ? storage_spanval_parse(v, vn, &sv) : ERR_CORRUPT, 0);
    CHECK_EQ_INT(sv.n, listed);
    CHECK_EQ_INT(sv.rest_count, rest);
    CHECK_EQ_INT((sv.flags & SPANVAL_SEALED) != 0, sealed);
    storage_spanval_free(&sv);
    rocksdb_iter_destroy(it);
}

/* Values read by a stream of everything, kept for a later merge. */
#define NREAD 4
typedef struct reads {
    int n;
    uint8_t *k[NREAD], *v[NREAD];
    size_t kn[NREAD], vn[NREAD];
} reads_t;

static int read_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant, const uint8_t *v,
                   size_t vn)
{
    reads_t *r = ctx;
    if (r->n >= NREAD) return 1;
    r->k[r->n] = malloc(klen);
    r->v[r->n] = malloc(vn);
    memcpy(r->k[r->n], key, klen);
    memcpy(r->v[r->n], v, vn);
    r->kn[r->n] = klen;
    r->vn[r->n++] = vn;
    return 0;
}

static reads_t read_all(fixture_t *f)
{
    reads_t r = {0};
    CHECK_EQ_INT(storage_stream_spans(f->s, 0, UINT64_MAX, NULL, 0, read_cb, &r), 0);
    CHECK_EQ_INT(r.n, 1);
    return r;
}

static void merge_reads(fixture_t *to, reads_t *r)
{
    errmsg_t em = {{0}};
    for (int i = 0; i < r->n; i++) {
        CHECK_EQ_INT(
            storage_stream_span_put(to->s, "m", r->k[i], r->kn[i], r->v[i], r->vn[i], ST, &em), 0);
        free(r->k[i]);
        free(r->v[i]);
    }
    r->n = 0;
}

/* Past the bound on one node: every write counts once, the rest local
 * (not sealed), also after compaction. */
static void test_local_overflow(const labels_t *l)
{
    fixture_t f;
    if (open_members(&f, 2) != 0) return;
    int64_t want = 0;
    for (int i = 1; i <= 6; i++) {
        write_span(&f, l, i);
        want += weight(i);
    }
    write_span(&f, l, 3); /* a retry: the seen index skips it */
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT(span_total(&f), want);
        CHECK_EQ_INT(storage_compact(f.s), 0);
    }
    check_shape(&f, 2, 4, 0);
    CHECK_EQ_INT(span_partial(&f), 0); /* exact: never reported short */
    fx_done(&f);
}

/* Within the bound: a live write during the stream and a late one, exact
 * (the union by id), and a union that overflows the bound stays exact but
 * seals: a late write of a profile the rest may hold is left out. */
static void test_union_then_seal(const labels_t *l)
{
    fixture_t a, b;
    if (open_members(&a, 3) != 0 || open_members(&b, 3) != 0) return;
    write_span(&a, l, 1);
    write_span(&a, l, 2);
    write_span(&a, l, 3);
    reads_t r = read_all(&a);
    write_span(&a, l, 4); /* live, between the read and the merge */
    write_span(&b, l, 4);
    merge_reads(&b, &r); /* {1,2,3} and {4}: four profiles, three listed */
    int64_t want = weight(1) + weight(2) + weight(3) + weight(4);
    CHECK_EQ_INT(span_total(&a), want);
    CHECK_EQ_INT(span_total(&b), want);
    check_shape(&b, 3, 1, 1);
    CHECK_EQ_INT(span_partial(&a), 0);
    CHECK_EQ_INT(span_partial(&b), 1); /* sealed: read as possibly short */
    storage_stats_t st0, st1;
    CHECK_EQ_INT(storage_stats(b.s, &st0), 0);
    write_span(&b, l, 3); /* late: listed or in the rest, counted once */
    CHECK_EQ_INT(span_total(&b), want);
    CHECK_EQ_INT(storage_compact(b.s), 0);
    CHECK(fx_reopen(&b) == 0);
    CHECK_EQ_INT(span_total(&b), want);
    write_span(&b, l, 9); /* a new profile on a sealed value: left out, counted */
    CHECK_EQ_INT(span_total(&b), want);
    CHECK_EQ_INT(storage_stats(b.s, &st1), 0);
    CHECK(st1.span_dropped > st0.span_dropped);
    CHECK_EQ_INT(span_partial(&b), 1); /* after compaction and reopening too */
    fx_done(&a);
    fx_done(&b);
}

/* Within the bound, a streamed member later folded into the rest by the
 * receiver's own writes: the value lists a member a stream brought, so the
 * fold seals it, and a late write of that profile (which this node never
 * recorded as seen) is not added again. */
static void test_foreign_fold(const labels_t *l)
{
    fixture_t a, b;
    if (open_members(&a, 3) != 0 || open_members(&b, 3) != 0) return;
    write_span(&a, l, 5);
    write_span(&a, l, 6);
    reads_t r = read_all(&a);
    merge_reads(&b, &r);  /* b lists 5 and 6, from the stream */
    write_span(&a, l, 1); /* live writes to both: b folds 6 into its rest */
    write_span(&b, l, 1);
    write_span(&a, l, 2);
    write_span(&b, l, 2);
    int64_t want = weight(1) + weight(2) + weight(5) + weight(6);
    CHECK_EQ_INT(span_total(&a), want);
    CHECK_EQ_INT(span_total(&b), want);
    check_shape(&b, 3, 1, 1);
    CHECK_EQ_INT(span_partial(&b), 1);
    write_span(&b, l, 6); /* late: in the rest now, not counted again */
    CHECK_EQ_INT(span_total(&b), want);
    CHECK_EQ_INT(storage_compact(b.s), 0);
    CHECK_EQ_INT(span_total(&b), want);
    fx_done(&a);
    fx_done(&b);
}

/* A streamed value with a rest (the source past its bound) meets a
 * receiver with fewer profiles: the streamed one is kept whole (exact
 * here, since the receiver's profile is one of the source's), sealed. A
 * receiver with more profiles keeps its own. */
static void test_stream_rest(const labels_t *l)
{
    fixture_t a, b, c;
    if (open_members(&a, 2) != 0 || open_members(&b, 2) != 0 || open_members(&c, 2) != 0) return;
    int64_t want = 0;
    for (int i = 1; i <= 5; i++) {
        write_span(&a, l, i);
        want += weight(i);
    }
    write_span(&b, l, 5); /* live: reached both */
    reads_t r = read_all(&a);
    merge_reads(&b, &r);
    CHECK_EQ_INT(span_total(&b), want);
    write_span(&b, l, 4); /* late, in the source's rest: not counted again */
    CHECK_EQ_INT(span_total(&b), want);
    r = read_all(&a); /* streamed again: unchanged */
    merge_reads(&b, &r);
    CHECK_EQ_INT(storage_compact(b.s), 0);
    CHECK_EQ_INT(span_total(&b), want);
    for (int i = 10; i < 16; i++) /* c: six profiles of its own, more than a's five */
        write_span(&c, l, i);
    int64_t mine = span_total(&c);
    r = read_all(&a);
    merge_reads(&c, &r);
    CHECK_EQ_INT(span_total(&c), mine); /* never both: a profile could be on each side */
    /* c kept its own tree, not sealed, yet a's profiles were left out of it:
     * read as possibly short, also after compaction */
    check_shape(&c, 2, 4, 0);
    CHECK_EQ_INT(span_partial(&c), 1);
    CHECK_EQ_INT(storage_compact(c.s), 0);
    CHECK_EQ_INT(span_partial(&c), 1);
    CHECK_EQ_INT(span_partial(&b), 1);
    fx_done(&a);
    fx_done(&b);
    fx_done(&c);
}

/* Operands that do not parse (bad version, truncated member, ids out of
 * order, a length past the end) are skipped and counted: the merge never
 * fails, the good members still sum, at read and after compaction. */
static void test_corrupt_operands(const labels_t *l)
{
    fixture_t f;
    if (open_members(&f, 4) != 0) return;
    write_span(&f, l, 1);
    uint64_t series = labels_hash(l);
    skey_t k;
    storage_key_span(&k, "m", STORAGE_SPAN_KIND_SPAN, SPAN, series >> 1, series, B0 - 60);
    static const uint8_t bad[][24] = {
        {9, 0, 0},          /* unknown version */
        {2, 0, 1, 1, 2, 3}, /* truncated member */
        {2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, /* ids */
        {2, 0, 0, 5, 1}, /* rest past the end */
    };
    static const size_t lens[] = {3, 6, 24, 5};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        char *err = NULL;
        rocksdb_merge_cf(f.s->db, f.s->wopts, f.s->cf[CF_SPANS], (const char *)k.b, k.n,
                         (const char *)bad[i], lens[i], &err);
        CHECK(err == NULL);
        free(err);
    }
    write_span(&f, l, 2);
    /* a member whose tree does not decode (framing intact): the others
     * still read */
    static const uint8_t badtree[] = {2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 0, 0, 0, 7, 2, 1, 9, 0};
    char *err = NULL;
    rocksdb_merge_cf(f.s->db, f.s->wopts, f.s->cf[CF_SPANS], (const char *)k.b, k.n,
                     (const char *)badtree, sizeof badtree, &err);
    CHECK(err == NULL);
    int64_t want = weight(1) + weight(2);
    CHECK_EQ_INT(span_total(&f), want);
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(span_total(&f), want);
    storage_stats_t st;
    CHECK_EQ_INT(storage_stats(f.s, &st), 0);
    CHECK(st.corrupt_operands >= 3);
    fx_done(&f);
}

/* storage_stream_spans pages in token order: stopped after each tree and
 * resumed after its key, it yields every tree of the interval once, tokens
 * ascending, and none outside it. */
typedef struct page {
    uint8_t last[256];
    size_t last_len;
    uint64_t tokens[16];
    int n;
} page_t;

static int page_cb(void *ctx, const uint8_t *key, size_t klen, const char *tenant, const uint8_t *v,
                   size_t vn)
{
    page_t *p = ctx;
    int ok;
    CHECK(p->n < 16 && klen <= sizeof p->last);
    if (p->n >= 16 || klen > sizeof p->last) return -1;
    p->tokens[p->n++] = storage_span_key_token(key, klen, &ok);
    CHECK(ok);
    memcpy(p->last, key, klen);
    p->last_len = klen;
    return 1; /* one per call */
}

static void test_paging(void)
{
    fixture_t f;
    if (open_members(&f, 4) != 0) return;
    labels_t *ls[4];
    uint64_t tok[4];
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "page%d", i);
        ls[i] = fx_labels(name, NULL);
        tok[i] = labels_hash(ls[i]) >> 1;
        write_span_id(&f, ls[i], 1 + i, SPAN); /* two span keys per token */
        write_span_id(&f, ls[i], 10 + i, SPAN + 1);
    }
    uint64_t lo = UINT64_MAX, hi = 0; /* the interval of the first three tokens by value */
    uint64_t sorted[4];
    memcpy(sorted, tok, sizeof tok);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            if (sorted[j] < sorted[i]) {
                uint64_t x = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = x;
            }
    lo = sorted[0];
    hi = sorted[2];
    page_t p = {0};
    int rc = 1, calls = 0;
    while (rc == 1 && calls++ < 20)
        rc = storage_stream_spans(f.s, lo, hi, p.last, p.last_len, page_cb, &p);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(p.n, 6);
    for (int i = 0; i < p.n; i++) {
        CHECK(p.tokens[i] >= lo && p.tokens[i] <= hi);
        if (i > 0) CHECK(p.tokens[i] >= p.tokens[i - 1]);
    }
    for (int i = 0; i < 4; i++)
        labels_free(ls[i]);
    fx_done(&f);
}

/* A format-7 directory: a bare calltree value, no span_index entry. */
static void test_upgrade(const labels_t *l)
{
    fixture_t f, g;
    if (open_members(&f, 4) != 0 || open_members(&g, 4) != 0) return;
    calltree_t *t = tree_of(7);
    buf_t enc;
    buf_init(&enc, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(t, &enc), 0);
    uint64_t series = labels_hash(l);
    skey_t k;
    storage_key_span(&k, "m", STORAGE_SPAN_KIND_SPAN, SPAN, series >> 1, series, B0 - 60);
    char *err = NULL;
    rocksdb_put_cf(f.s->db, f.s->wopts, f.s->cf[CF_SPANS], (const char *)k.b, k.n,
                   (const char *)enc.data, enc.len, &err);
    CHECK(err == NULL);
    fx_put_version(&f, "7");
    /* symbols of the old tree, as a format-7 write stored them */
    write_span(&f, l, 7);
    CHECK_EQ_INT(span_total(&f), 2 * weight(7)); /* (the member and the bare tree) */
    /* take the new write's members and index off again: only the old value */
    rocksdb_put_cf(f.s->db, f.s->wopts, f.s->cf[CF_SPANS], (const char *)k.b, k.n,
                   (const char *)enc.data, enc.len, &err);
    CHECK(err == NULL);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(f.s->db, f.s->ropts, f.s->cf[CF_SPAN_INDEX]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kn;
        const char *ik = rocksdb_iter_key(it, &kn);
        rocksdb_delete_cf(f.s->db, f.s->wopts, f.s->cf[CF_SPAN_INDEX], ik, kn, &err);
        CHECK(err == NULL);
    }
    rocksdb_iter_destroy(it);
    reads_t r = {0};
    CHECK_EQ_INT(storage_stream_spans(f.s, 0, UINT64_MAX, NULL, 0, read_cb, &r), 0);
    CHECK_EQ_INT(r.n, 0);      /* not indexed */
    CHECK(fx_reopen(&f) == 0); /* the upgrade */
    fx_check_version(&f);
    CHECK_EQ_INT(span_total(&f), weight(7));
    CHECK_EQ_INT(span_partial(&f), 0); /* an old value carries no seal */
    r = read_all(&f);                  /* found through the rebuilt index */
    merge_reads(&g, &r);
    CHECK_EQ_INT(span_total(&g), weight(7));
    write_span(&f, l, 8); /* a new write onto the old value: added */
    CHECK_EQ_INT(span_total(&f), weight(7) + weight(8));
    CHECK_EQ_INT(storage_compact(f.s), 0);
    CHECK_EQ_INT(span_total(&f), weight(7) + weight(8));
    buf_free(&enc);
    calltree_free(t);
    fx_done(&f);
    fx_done(&g);
}

int main(void)
{
    ST = symtab_new();
    labels_t *l = fx_labels("spanmembers", NULL);
    test_local_overflow(l);
    test_union_then_seal(l);
    test_foreign_fold(l);
    test_stream_rest(l);
    test_corrupt_operands(l);
    test_paging();
    test_upgrade(l);
    labels_free(l);
    symtab_free(ST);
    return check_exit();
}
