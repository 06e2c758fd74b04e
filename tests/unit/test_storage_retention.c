/* Unit tests for storage retention: with a fake clock, windows older than the
 * retention of their resolution are dropped by the compaction filter (and not
 * even written when already expired), coarser resolutions outlive finer ones,
 * and profile ids are forgotten after seen_retention_seconds. */
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
    f.now = T0;
    if (fx_reopen(&f) != 0) return 1;
    test_windows(&f);
    test_seen(&f);
    fx_done(&f);
    return check_exit();
}
