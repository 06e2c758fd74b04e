/* Unit tests for storage retention: with a fake clock, windows older than the
 * retention of their resolution are dropped by the compaction filter (and not
 * even written when already expired), coarser resolutions outlive finer ones,
 * profile ids are forgotten after seen_retention_seconds (and no longer
 * listed by storage_scan_profiles) and span trees after
 * span_retention_seconds. */
#include "test_storage_fixture.h"

#define T0 1700000000LL /* multiple of 10 and 100, not of 60 */

static void test_windows(fixture_t *f)
{
    labels_t *l = fx_labels("ret", NULL);
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "a;b", 4);
    size_t w = 0;
    int n = 0;
    /* already past the 10 s retention: only coarser windows are written */
    CHECK_EQ_INT(fx_write(f->s, "r", l, t, st, 1, (T0 - 200) * NS, &w), 0);
    CHECK_EQ_INT(w, 1);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 0, T0 - 1000, T0 + 1000, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 1, T0 - 1000, T0 + 1000, &n), 4);
    CHECK_EQ_INT(fx_write(f->s, "r", l, t, st, 2, T0 * NS, &w), 0);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 0, T0 - 1000, T0 + 1000, &n), 4);
    CHECK_EQ_INT(n, 1);

    /* nothing expired yet: compaction keeps everything */
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 0, T0 - 1000, T0 + 1000, &n), 4);
    CHECK_EQ_INT(fx_block_total(f->s, "r", l, 0, T0 - 1000, T0 + 1000, &n), 4);

    /* 10 s windows live 100 s after their end, 60 s windows 1000 s */
    f->now = T0 + 200;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 0, T0 - 1000, T0 + 1000, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(fx_block_total(f->s, "r", l, 0, T0 - 1000, T0 + 1000, &n), 0);
    CHECK_EQ_INT(n, 0);
    for (int r = 1; r < STORAGE_RESOLUTION_COUNT; r++) {
        CHECK_EQ_INT(fx_totals(f->s, "r", l, r, T0 - 86400, T0 + 86400, &n), 8);
        CHECK_EQ_INT(fx_block_total(f->s, "r", l, r, T0 - 86400, T0 + 86400, &n), 8);
    }

    f->now = T0 + 5000;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 1, T0 - 86400, T0 + 86400, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(fx_totals(f->s, "r", l, 2, T0 - 86400, T0 + 86400, &n), 8); /* forever */
    CHECK_EQ_INT(fx_block_total(f->s, "r", l, 4, T0 - 86400, T0 + 86400, &n), 8);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    CHECK(stats.expired_windows >= 4);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

static void test_seen(fixture_t *f)
{
    labels_t *l = fx_labels("seen", NULL);
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "x", 1);
    f->now = T0;
    size_t w = 0;
    /* an old profile (backfill) is remembered from when it arrived */
    CHECK_EQ_INT(fx_write(f->s, "s", l, t, st, 1, (T0 - 100000) * NS, &w), 0);
    CHECK_EQ_INT(w, 1);
    f->now = T0 + 400;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(fx_write(f->s, "s", l, t, st, 1, (T0 - 100000) * NS, &w), 0);
    CHECK_EQ_INT(w, 0);
    f->now = T0 + 600; /* past seen_retention_seconds = 500 */
    CHECK_EQ_INT(storage_compact(f->s), 0);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    CHECK(stats.expired_seen >= 1);
    /* forgotten: a retry this late would count again (hence the long default) */
    CHECK_EQ_INT(fx_write(f->s, "s", l, t, st, 1, (T0 - 100000) * NS, &w), 0);
    CHECK_EQ_INT(w, 1);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

typedef struct listed {
    int n;
    int64_t time_ns[8], total[8];
    uint8_t id_last[8];
} listed_t;

static int list_fn(void *ctx, const uint8_t profile_id[16], int64_t time_ns, int64_t total)
{
    listed_t *l = ctx;
    if (l->n < 8) {
        l->time_ns[l->n] = time_ns;
        l->total[l->n] = total;
        l->id_last[l->n++] = profile_id[15]; /* fx_id: the number ends the id */
    }
    return 0;
}

static listed_t list(fixture_t *f, const labels_t *l, int64_t from_s, int64_t until_s)
{
    listed_t out = {0};
    uint64_t sid = labels_hash(l);
    CHECK_EQ_INT(storage_scan_profiles(f->s, "p", sid >> 1, sid, from_s, until_s, list_fn, &out),
                 0);
    return out;
}

/* The seen index lists a series' profiles in [from, until) by id, with
 * their times and totals, until seen retention forgets them. */
static void test_profile_scan(fixture_t *f)
{
    labels_t *l = fx_labels("plist", NULL), *other = fx_labels("plist2", NULL);
    symtab_t *st = symtab_new();
    f->now = T0;
    size_t w = 0;
    int64_t times[] = {T0 - 101, T0 - 100, T0 - 1};
    for (int i = 0; i < 3; i++) {
        calltree_t *t = calltree_new(0);
        fx_add(t, st, "a;b", 10 + i);
        CHECK_EQ_INT(fx_write(f->s, "p", l, t, st, (uint64_t)(3 - i), times[i] * NS + 5, &w), 0);
        CHECK_EQ_INT(fx_write(f->s, "p", other, t, st, 9, times[i] * NS, &w), 0);
        calltree_free(t);
    }
    listed_t got = list(f, l, T0 - 100, T0); /* times floored: T0 - 101 is out */
    CHECK_EQ_INT(got.n, 2);
    CHECK_EQ_INT(got.id_last[0], 1); /* id order, not time order */
    CHECK_EQ_INT(got.time_ns[0], (T0 - 1) * NS + 5);
    CHECK_EQ_INT(got.total[0], 12);
    CHECK_EQ_INT(got.id_last[1], 2);
    CHECK_EQ_INT(got.total[1], 11);
    CHECK_EQ_INT(list(f, l, T0 - 1000, T0 + 1000).n, 3);
    CHECK_EQ_INT(list(f, l, T0, T0 + 1000).n, 0);
    CHECK_EQ_INT(list(f, other, T0 - 1000, T0 + 1000).n, 1); /* its own entries only */
    f->now = T0 + 600; /* past seen_retention_seconds = 500, not yet compacted */
    CHECK_EQ_INT(list(f, l, T0 - 1000, T0 + 1000).n, 0);
    f->now = T0;
    labels_free(l);
    labels_free(other);
    symtab_free(st);
}

static int span_total(void *ctx, uint64_t token, uint64_t series, int64_t window, unsigned flags,
                      const uint8_t *v, size_t n)
{
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    *(int64_t *)ctx += calltree_root_total(t);
    calltree_free(t);
    return 0;
}

static int64_t spans_in(storage_t *s, int64_t from_s, int64_t until_s)
{
    int64_t total = 0;
    CHECK_EQ_INT(
        storage_scan_spans(s, "sp", STORAGE_SPAN_KIND_SPAN, 7, from_s, until_s, span_total, &total),
        0);
    return total;
}

/* Writes one profile at time t_s whose series has span 7 with value v. */
static void write_span(storage_t *s, uint64_t pid, int64_t t_s, int64_t v)
{
    labels_t *l = fx_labels("spanret", NULL);
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    fx_add(t, st, "req;db", v);
    storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, 7, t};
    storage_series_write_t sw = {
        .labels = l, .series_id = labels_hash(l), .tree = t, .spans = &sp, .nspans = 1};
    sw.token = sw.series_id >> 1;
    storage_profile_write_t p = {
        .tenant = "sp", .time_ns = t_s * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, pid);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(s, &p, NULL, &em), 0);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

static void test_spans(fixture_t *f)
{
    f->now = T0;
    write_span(f->s, 1, T0 - 1000, 5); /* already past span retention: not written */
    write_span(f->s, 2, T0 - 20, 3);
    write_span(f->s, 3, T0 + 5, 2);
    CHECK_EQ_INT(spans_in(f->s, T0 - 2000, T0 + 100), 5);
    CHECK_EQ_INT(spans_in(f->s, T0, T0 + 10), 2); /* selected by window */
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(spans_in(f->s, T0 - 2000, T0 + 100), 5);
    f->now = T0 + 250; /* span retention 300 s: the window of T0-20 ends at T0-10 */
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(spans_in(f->s, T0 - 2000, T0 + 100), 5);
    f->now = T0 + 300;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(spans_in(f->s, T0 - 2000, T0 + 100), 2);
    storage_stats_t stats;
    storage_stats(f->s, &stats);
    CHECK(stats.expired_spans >= 1);
    f->now = T0 + 400;
    CHECK_EQ_INT(storage_compact(f->s), 0);
    CHECK_EQ_INT(spans_in(f->s, T0 - 2000, T0 + 100), 0);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.retention_seconds[0] = 100;
    f.opts.retention_seconds[1] = 1000;
    f.opts.retention_seconds[2] = 0;
    f.opts.retention_seconds[3] = 0;
    f.opts.retention_seconds[4] = 0;
    f.opts.seen_retention_seconds = 500;
    f.opts.span_retention_seconds = 300;
    f.now = T0;
    if (fx_reopen(&f) != 0) return 1;
    test_windows(&f);
    test_seen(&f);
    test_profile_scan(&f);
    test_spans(&f);
    fx_done(&f);
    return check_exit();
}
