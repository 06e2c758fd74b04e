/* test_storage_gc.c — series collection: once retention has dropped every
 * block of a series (all resolutions finite), storage_gc_series deletes the
 * series and its postings, so label queries stop listing it; a series with a
 * live block stays; a write after the collection brings the series back
 * (the series cache was cleared). Before, series and postings stayed forever.
 * A 10 s window of trees kept in no block (no block key, a total) keeps its
 * series alive when it outlives the coarser windows. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

static int count_cb(void *ctx, uint64_t token, uint64_t series_id)
{
    (void)token;
    (void)series_id;
    (*(int *)ctx)++;
    return 0;
}

static int postings(fixture_t *f, const char *svc)
{
    int n = 0;
    CHECK_EQ_INT(storage_postings(f->s, "t", LABEL_SERVICE_NAME, svc, count_cb, &n), 0);
    return n;
}

static void write_one(fixture_t *f, const labels_t *l, symtab_t *st, uint64_t id)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;work", 7);
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) /* every resolution expires */
        f.opts.retention_seconds[r] = 3600;
    f.opts.series_gc_interval_seconds = 0; /* run by hand here */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *old = fx_labels("oldsvc", NULL), *live = fx_labels("livesvc", NULL);
    symtab_t *st = symtab_new();
    write_one(&f, old, st, 1);
    CHECK_EQ_INT(postings(&f, "oldsvc"), 1);
    size_t removed = 9;
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(removed, 0); /* its blocks are alive */

    f.now += 3 * 86400; /* every window of oldsvc is past retention */
    write_one(&f, live, st, 2);
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(removed, 1);
    CHECK_EQ_INT(postings(&f, "oldsvc"), 0);
    CHECK_EQ_INT(postings(&f, "livesvc"), 1);
    labels_t *got = NULL;
    uint64_t id = labels_hash(old);
    CHECK_EQ_INT(storage_series_labels(f.s, "t", id >> 1, id, &got), ERR_NOT_FOUND);
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK_EQ_INT(stats.gc_series, 1);

    write_one(&f, old, st, 3); /* it comes back with new data */
    CHECK_EQ_INT(postings(&f, "oldsvc"), 1);
    CHECK_EQ_INT(storage_series_labels(f.s, "t", id >> 1, id, &got), 0);
    labels_free(got);
    CHECK_EQ_INT(fx_reopen(&f), 0);
    CHECK_EQ_INT(postings(&f, "oldsvc"), 1);

    /* the background collector: runs by itself every interval */
    f.now += 3 * 86400;
    f.opts.series_gc_interval_seconds = 1;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    for (int i = 0; i < 50 && postings(&f, "oldsvc") != 0; i++)
        usleep(100000);
    CHECK_EQ_INT(postings(&f, "oldsvc"), 0);

    /* 10 s windows kept longer than every coarser one: a window of a tree
     * kept in no block (format 11) has a total and no block key, and its
     * series stays while it lives */
    f.opts.series_gc_interval_seconds = 0;
    f.opts.retention_seconds[0] = 3 * 86400;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *fine = fx_labels("finesvc", NULL);
    write_one(&f, fine, st, 4);
    f.now += 2 * 86400; /* the coarser windows are past retention, the 10 s one is not */
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(postings(&f, "finesvc"), 1);
    CHECK_EQ_INT(fx_block_total(f.s, "t", fine, 0, f.now - 3 * 86400, f.now, NULL), 7);
    f.now += 2 * 86400;
    CHECK_EQ_INT(storage_gc_series(f.s, &removed), 0);
    CHECK_EQ_INT(postings(&f, "finesvc"), 0);
    labels_free(fine);
    symtab_free(st);
    labels_free(old);
    labels_free(live);
    fx_done(&f);
    return check_exit();
}
