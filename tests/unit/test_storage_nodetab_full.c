/* test_storage_nodetab_full.c — a service shard whose stack-node table is
 * full (max_stack_nodes) keeps taking writes: new stacks fold into "other"
 * nodes (under their deepest known caller while the reserve lasts, then
 * under the root), totals stay exact, the count of folded nodes is a
 * metric, and it survives a reopen. Before, about 64 pushes of fresh stacks
 * filled a table and every later stack of the service was refused. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "storage/storage_int.h"

static int64_t merged(storage_t *s, const labels_t *l, calltree_t *out)
{
    storage_merger_t *m;
    uint64_t id = labels_hash(l);
    CHECK_EQ_INT(storage_merger_new(s, "t", &m), 0);
    CHECK_EQ_INT(storage_merger_add(m, id >> 1, id, 4, 0, INT64_MAX / 2), 0);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_merger_finish(m, out, &em), 0);
    storage_merger_free(m);
    return calltree_root_total(out);
}

/* Nodes named "other" in t and the total under them. */
static size_t others(const calltree_t *t, int64_t *total)
{
    size_t n = 0;
    *total = 0;
    for (uint32_t i = 1; i < calltree_node_count(t); i++)
        if (calltree_sym(t, i) == SYM_OTHER) {
            n++;
            *total += calltree_total(t, i);
        }
    return n;
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    f.opts.max_stack_nodes = 1024;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *l = fx_labels("svc", NULL);
    symtab_t *st = symtab_new();
    int64_t want = 0;
    /* 64 pushes of 40 fresh stacks of depth 3: ~7,700 nodes for a 1,024 table */
    for (int push = 0; push < 64; push++) {
        calltree_t *t = calltree_new(0);
        for (int k = 0; k < 40; k++) {
            char stack[96];
            snprintf(stack, sizeof stack, "main;handler%d;work%d_%d", push % 8, push, k);
            fx_add(t, st, stack, 1 + k % 3);
            want += 1 + k % 3;
        }
        size_t written = 0;
        int rc = fx_write(f.s, "t", l, t, st, (uint64_t)push + 1, (f.now - 600) * NS, &written);
        CHECK_EQ_INT(rc, 0); /* never refused */
        CHECK_EQ_INT(written, 1);
        calltree_free(t);
    }
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
    CHECK(stats.folded_stacks > 0);
    for (int round = 0; round < 2; round++) { /* before and after a reopen */
        calltree_t *got = calltree_new(0);
        CHECK_EQ_INT(merged(f.s, l, got), want);
        int64_t other_total;
        size_t n = others(got, &other_total);
        CHECK(n >= 1);
        CHECK(other_total > 0 && other_total < want);
        calltree_free(got);
        CHECK_EQ_INT(fx_reopen(&f), 0);
    }
    /* the table stays within the limit plus its reserve of "other" nodes */
    nodetab_t *t;
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_nodetab_acquire(f.s, labels_hash(l) >> 1, "t", &t, &em), 0);
    CHECK(storage_nodetab_count(t) <= 1024 + 1024 / 64 + 1);
    storage_nodetab_release(f.s, t, 0);
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
    return check_exit();
}
