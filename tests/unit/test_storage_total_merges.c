/* test_storage_total_merges.c — a window's total is exact whether its
 * memtable operands are folded at write or not (total-successive-merges).
 *
 * Many pushes of one series into one window at every resolution: with
 * total_successive_merges 0 (the default) every total stays an operand until
 * a flush, with 3 a write folds them every 3 merges. Either way the series'
 * totals at the five resolutions, its service aggregate's with its anchor
 * (the series itself, so the aggregate holds none) and the root total of
 * its blocks are the sum of what was pushed: read from the memtable, then
 * after a compaction, then after a reopen (recovered from the WAL when the
 * memtables were not flushed). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

#define PUSHES 70 /* past the blocks' 64: they fold at write meanwhile */

static int64_t push(fixture_t *f, const labels_t *l, symtab_t *st, uint64_t id, int i)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int k = 0; k < 3 + i % 5; k++) {
        snprintf(stack, sizeof stack, "main;f%d;g%d", k % 4, (k + i) % 9);
        fx_add(t, st, stack, 7 + k * (i + 1));
    }
    int64_t total = calltree_root_total(t);
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
    return total;
}

static void check_totals(fixture_t *f, const labels_t *l, int64_t want, const char *when)
{
    uint64_t sid = labels_hash(l), agg = 0;
    CHECK_EQ_INT(storage_aggregate_of(l, &agg), 1);
    int64_t from = f->now - 2 * 86400, until = f->now + 86400;
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) {
        int windows = 0;
        int64_t got = fx_totals(f->s, "t", l, r, from, until, &windows);
        if (got != want || windows != 1)
            fprintf(stderr, "%s: res %d: total %lld in %d windows, want %lld\n", when, r,
                    (long long)got, windows, (long long)want);
        CHECK(got == want && windows == 1);
        fx_scan_t sc = {0}; /* the aggregate with its anchor (this series) */
        uint64_t anchor = 0;
        CHECK_EQ_INT(storage_aggregate_anchors(f->s, "t", sid >> 1, agg, &anchor, 1), 1);
        CHECK(anchor == sid);
        CHECK_EQ_INT(
            storage_scan_totals(f->s, "t", sid >> 1, agg, r, from, until, fx_total_cb, &sc), 0);
        CHECK_EQ_INT(sc.windows, 0);
        CHECK_EQ_INT(
            storage_scan_totals(f->s, "t", sid >> 1, anchor, r, from, until, fx_total_cb, &sc), 0);
        CHECK(sc.total == want && sc.windows == 1);
    }
    CHECK(fx_block_total(f->s, "t", l, 0, from, until, NULL) == want);
}

static void run(fixture_t *f, uint32_t merges, const char *env)
{
    f->opts.total_successive_merges = merges;
    CHECK_EQ_INT(fx_reopen(f), 0);
    symtab_t *st = symtab_new();
    labels_t *l = fx_labels("svc", env);
    int64_t want = 0;
    for (int i = 0; i < PUSHES; i++)
        want += push(f, l, st, 1000 * merges + (uint64_t)i, i);
    check_totals(f, l, want, "memtable");
    /* a repeated profile id counts once */
    push(f, l, st, 1000 * merges, 0);
    check_totals(f, l, want, "repeat");
    CHECK_EQ_INT(fx_reopen(f), 0);
    check_totals(f, l, want, "reopened");
    CHECK_EQ_INT(storage_compact(f->s), 0);
    check_totals(f, l, want, "compacted");
    labels_free(l);
    symtab_free(st);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    CHECK_EQ_INT((int)f.opts.total_successive_merges, 0); /* the default: never at write */
    run(&f, 0, "never");
    run(&f, 3, "every3");
    fx_done(&f);
    return check_exit();
}
