/* test_storage_nodecache.c — a stack-node table larger than the node cache
 * (node_cache_bytes) stays cached while it is the most recently used one, so
 * the pushes and reads of its service do not load it whole from disk each
 * time (before, every push reloaded it: flamedb_storage_node_table_loads_total
 * grew by one per push). Tables beyond the most recent one still leave the
 * cache when it is over its bound; a push to such a table then reads only
 * its last chunk and the edge index, never the whole table (a read loads it
 * whole), and every tree stays exact. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

#define WIDE 6000 /* distinct stacks of the big service: ~300 KB of table */

static uint64_t loads(fixture_t *f)
{
    storage_stats_t st;
    CHECK_EQ_INT(storage_stats(f->s, &st), 0);
    return st.node_table_loads;
}

static storage_stats_t stats(fixture_t *f)
{
    storage_stats_t st;
    CHECK_EQ_INT(storage_stats(f->s, &st), 0);
    return st;
}

static void write_tree(fixture_t *f, const labels_t *l, symtab_t *st, int from, int n, uint64_t id)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int i = from; i < from + n; i++) {
        snprintf(stack, sizeof stack, "main;handler%d;work", i);
        fx_add(t, st, stack, 1);
    }
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, id, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.node_cache_bytes = 64 << 10; /* tables get 48 KiB */
    f.opts.node_index_min_nodes = 1;    /* every table indexed: the small one too */
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *big = fx_labels("bigsvc", NULL), *small = fx_labels("smallsvc", NULL);
    symtab_t *st = symtab_new();
    write_tree(&f, big, st, 0, WIDE, 1);
    uint64_t first = loads(&f);
    CHECK_EQ_INT(first, 0); /* a new table is not read from disk whole */
    storage_stats_t warm = stats(&f);
    CHECK_EQ_INT(warm.node_cache_limit, 48 << 10);
    CHECK(warm.node_cache_bytes > warm.node_cache_limit); /* the big table alone */
    for (int i = 0; i < 10; i++) /* pushes of known stacks, and of a new one */
        write_tree(&f, big, st, i * 7, i == 9 ? 2 : 50, 100 + (uint64_t)i);
    write_tree(&f, big, st, WIDE, 1, 200);
    CHECK_EQ_INT(fx_block_total(f.s, "t", big, 0, f.now - 60, f.now + 10, NULL),
                 WIDE + 9 * 50 + 2 + 1);
    CHECK_EQ_INT(loads(&f), first);  /* no reload: it stayed */
    storage_stats_t hot = stats(&f); /* eleven pushes and a read, all hits */
    CHECK_EQ_INT(hot.node_table_misses, warm.node_table_misses);
    CHECK(hot.node_table_hits >= warm.node_table_hits + 12);
    CHECK_EQ_INT(hot.node_table_evictions, warm.node_table_evictions);

    /* another service becomes the most recent: the big table leaves (the
     * cache is over its bound); a push to it reads what it needs, a read of
     * it loads it whole again */
    write_tree(&f, small, st, 0, 3, 300);
    CHECK_EQ_INT(stats(&f).node_table_evictions, hot.node_table_evictions + 1);
    CHECK_EQ_INT(stats(&f).node_table_misses, hot.node_table_misses + 1); /* new table */
    write_tree(&f, big, st, 0, 1, 301);
    CHECK_EQ_INT(stats(&f).node_table_misses, hot.node_table_misses + 2); /* evicted */
    write_tree(&f, small, st, 0, 3, 302);
    write_tree(&f, big, st, WIDE + 1, 1, 303);
    CHECK_EQ_INT(loads(&f), first);
    CHECK_EQ_INT(fx_block_total(f.s, "t", big, 0, f.now - 60, f.now + 10, NULL),
                 WIDE + 9 * 50 + 2 + 1 + 1 + 1);
    CHECK_EQ_INT(loads(&f), first + 1);
    CHECK_EQ_INT(fx_block_total(f.s, "t", small, 0, f.now - 60, f.now + 10, NULL), 6);

    symtab_free(st);
    labels_free(big);
    labels_free(small);
    fx_done(&f);
    return check_exit();
}
