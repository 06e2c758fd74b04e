/* test_storage_sync.c — sync_writes: with it on, every acknowledged write
 * batch has had its WAL fsynced (RocksDB's own count of WAL syncs grows with
 * the writes); with it off (the default), the WAL is written and never
 * synced. What each guarantees is in docs/operations.md (Durability). */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

static void write_some(fixture_t *f, uint64_t first, int n)
{
    labels_t *l = fx_labels("syncsvc", NULL);
    symtab_t *st = symtab_new();
    for (int i = 0; i < n; i++) {
        calltree_t *t = calltree_new(0);
        fx_add(t, st, "main;work", 10);
        CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, first + (uint64_t)i, (f->now - 60) * NS, NULL),
                     0);
        calltree_free(t);
    }
    symtab_free(st);
    labels_free(l);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    storage_stats_t a, b;
    CHECK_EQ_INT(f.opts.sync_writes, 0); /* the default */
    CHECK_EQ_INT(storage_stats(f.s, &a), 0);
    write_some(&f, 1, 3);
    CHECK_EQ_INT(storage_stats(f.s, &b), 0);
    CHECK(b.wal_writes >= a.wal_writes + 3);
    CHECK_EQ_INT(b.wal_syncs, 0);

    f.opts.sync_writes = 1;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    CHECK_EQ_INT(storage_stats(f.s, &a), 0);
    write_some(&f, 100, 3);
    CHECK_EQ_INT(storage_stats(f.s, &b), 0);
    CHECK(b.wal_syncs >= a.wal_syncs + 3); /* one write after another: one fsync each */
    CHECK(b.wal_syncs <= b.wal_writes);
    fx_done(&f);
    return check_exit();
}
