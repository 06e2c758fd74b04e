/* test_storage_gc_nodetabs.c — stack-node table collection: once retention
 * has dropped every block and profile tree of a service shard, its table is
 * deleted (storage_gc_nodetabs), and a later write of that service starts a
 * fresh table whose trees read back exactly, also after a reopen (the cached
 * table was emptied with it). A table whose blocks or profile trees are
 * alive stays. Reads skip windows past retention before compaction drops
 * them. Before, tables were never collected. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

static void write_stack(fixture_t *f, const labels_t *l, symtab_t *st, const char *stack, int64_t v,
                        uint64_t id)
{
    calltree_t *t = calltree_new(0);
    fx_add(t, st, stack, v);
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
}

/* The tree of the series' 10 s blocks in the last minute is exactly one
 * chain with the symbols of stack and value v at its leaf. */
static void check_chain(fixture_t *f, const labels_t *l, symtab_t *st, const char *stack, int64_t v)
{
    calltree_t *want = calltree_new(0);
    fx_add(want, st, stack, v);
    fx_scan_t sc = fx_blocks(f->s, "t", l, 0, f->now - 60, f->now + 10);
    CHECK_EQ_INT(calltree_node_count(sc.acc), calltree_node_count(want));
    CHECK_EQ_INT(calltree_root_total(sc.acc), v);
    uint32_t a = 0, b = 0;
    while (a != CALLTREE_NONE && b != CALLTREE_NONE) {
        CHECK_EQ_INT(calltree_sym(sc.acc, a) == calltree_sym(want, b), 1);
        CHECK_EQ_INT(calltree_total(sc.acc, a), calltree_total(want, b));
        a = calltree_first_child(sc.acc, a);
        b = calltree_first_child(want, b);
    }
    CHECK_EQ_INT(a == CALLTREE_NONE && b == CALLTREE_NONE, 1);
    calltree_free(sc.acc);
    calltree_free(want);
}

/* A tree of n distinct stacks, so the service's table spans several chunks
 * (a chunk holds 1024 ids): a table that was not emptied with its chunks
 * would then give new stacks ids in a chunk whose predecessors are gone. */
static void write_wide(fixture_t *f, const labels_t *l, symtab_t *st, int n, uint64_t id)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int i = 0; i < n; i++) {
        snprintf(stack, sizeof stack, "main;fn%d", i);
        fx_add(t, st, stack, 1);
    }
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
}

static size_t gc(fixture_t *f)
{
    size_t n = 99, tabs = 99;
    CHECK_EQ_INT(storage_gc_series(f->s, &n), 0);
    CHECK_EQ_INT(storage_gc_nodetabs(f->s, &tabs), 0);
    return tabs;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++) /* every resolution expires */
        f.opts.retention_seconds[r] = 3600;
    f.opts.profile_retention_seconds = 3600;
    f.opts.series_gc_interval_seconds = 0; /* run by hand here */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *old = fx_labels("oldsvc", NULL), *live = fx_labels("livesvc", NULL);
    symtab_t *st = symtab_new();
    write_wide(&f, old, st, 1500, 1);
    int64_t then = f.now;
    CHECK_EQ_INT(gc(&f), 0); /* alive */
    CHECK_EQ_INT(fx_block_total(f.s, "t", old, 0, then - 60, then + 10, NULL), 1500);

    /* profile trees alone keep a table: blocks expire first here */
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
        f.opts.retention_seconds[r] = 60;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    f.now += 600;
    CHECK_EQ_INT(gc(&f), 0);
    for (int r = 0; r < STORAGE_RESOLUTION_COUNT; r++)
        f.opts.retention_seconds[r] = 3600;
    CHECK_EQ_INT(fx_reopen(&f), 0);

    f.now = then + 3 * 86400; /* every window and profile of oldsvc is past retention */
    write_stack(&f, live, st, "main;serve", 3, 2);
    /* reads no longer see the expired windows, before any compaction */
    int windows = -1;
    CHECK_EQ_INT(fx_block_total(f.s, "t", old, 0, then - 60, then + 60, &windows), 0);
    CHECK_EQ_INT(windows, 0);
    CHECK_EQ_INT(fx_totals(f.s, "t", old, 0, then - 60, then + 60, &windows), 0);
    CHECK_EQ_INT(windows, 0);
    CHECK_EQ_INT(gc(&f), 1); /* oldsvc's table; livesvc's is in use */
    CHECK_EQ_INT(gc(&f), 0);
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK_EQ_INT(stats.gc_nodetabs, 1);

    /* the service comes back with another shape: a fresh table, exact */
    write_stack(&f, old, st, "main;idle", 5, 3);
    check_chain(&f, old, st, "main;idle", 5);
    check_chain(&f, live, st, "main;serve", 3);
    CHECK_EQ_INT(fx_reopen(&f), 0); /* loaded from disk, not from the cache */
    check_chain(&f, old, st, "main;idle", 5);
    write_stack(&f, old, st, "main;idle", 4, 4);
    check_chain(&f, old, st, "main;idle", 9);
    CHECK_EQ_INT(gc(&f), 0);

    symtab_free(st);
    labels_free(old);
    labels_free(live);
    fx_done(&f);
    return check_exit();
}
