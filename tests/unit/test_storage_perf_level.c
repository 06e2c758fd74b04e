/* test_storage_perf_level.c — a profile write leaves RocksDB's per-thread
 * performance counters off for its thread: the key comparisons of its
 * memtable inserts are not counted (counting them is a thread-local access
 * each). The same thread's reads count again once the level is turned back
 * on, so the counter is live and the zero is the write's doing. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include <rocksdb/c.h>

#include "check.h"

static void write_one(fixture_t *f, int n)
{
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    fx_add(t, st, "main;svc.Handle;svc.work", 7 + n);
    fx_add(t, st, "main;svc.Handle;svc.idle", 3);
    fx_add(t, st, "main;svc.Serve;svc.read", 5);
    labels_t *l = labels_new();
    CHECK(l != NULL);
    CHECK_EQ_INT(labels_set_str(l, "__name__", "svc"), 0);
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = 42;
    storage_profile_write_t pw = {.tenant = "t",
                                  .time_ns = (f->now - 60 + 10 * n) * NS,
                                  .series = &sw,
                                  .nseries = 1,
                                  .symbols = st};
    fx_id(pw.profile_id, (uint8_t)(n + 1));
    errmsg_t em = {{0}};
    size_t written = 0;
    CHECK_EQ_INT(storage_write_profile(f->s, &pw, &written, &em), 0);
    CHECK_EQ_INT((int)written, 1);
    labels_free(l);
    calltree_free(t);
    symtab_free(st);
}

static int add_total(void *ctx, int64_t window_start, int64_t total)
{
    (void)window_start;
    *(int64_t *)ctx += total;
    return 0;
}

static uint64_t comparisons(rocksdb_perfcontext_t *pc)
{
    return rocksdb_perfcontext_metric(pc, rocksdb_user_key_comparison_count);
}

int main(void)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    rocksdb_perfcontext_t *pc = rocksdb_perfcontext_create();
    CHECK(pc != NULL);
    write_one(&f, 0);
    /* counting on, as a thread starts: the next write turns it off */
    rocksdb_set_perf_level(rocksdb_enable_count);
    rocksdb_perfcontext_reset(pc);
    write_one(&f, 1);
    CHECK(comparisons(pc) == 0);
    /* the same thread's reads count when counting is on */
    rocksdb_set_perf_level(rocksdb_enable_count);
    rocksdb_perfcontext_reset(pc);
    labels_t *l = labels_new();
    CHECK(l != NULL);
    CHECK_EQ_INT(labels_set_str(l, "__name__", "svc"), 0);
    int64_t sum = 0;
    CHECK_EQ_INT(
        storage_scan_totals(f.s, "t", 42, labels_hash(l), 0, f.now - 120, f.now, add_total, &sum),
        0);
    CHECK(sum == 7 + 3 + 5 + 8 + 3 + 5); /* both profiles: what was written is there */
    labels_free(l);
    CHECK(comparisons(pc) > 0);
    rocksdb_perfcontext_destroy(pc);
    fx_done(&f);
    return check_exit();
}
