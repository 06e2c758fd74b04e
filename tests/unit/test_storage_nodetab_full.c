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

/* Writes the given series (all on token) as one profile. */
static int write_series(storage_t *s, uint64_t token, labels_t **l, calltree_t **t, size_t n,
                        const symtab_t *st, uint64_t id, int64_t time_ns)
{
    storage_series_write_t sw[4];
    for (size_t i = 0; i < n; i++)
        sw[i] = (storage_series_write_t){
            .labels = l[i], .series_id = labels_hash(l[i]), .token = token, .tree = t[i]};
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = time_ns, .series = sw, .nseries = n, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    size_t written = 0;
    int rc = storage_write_profile(s, &p, &written, &em);
    CHECK_EQ_INT(written, n);
    return rc;
}

static uint64_t folded_now(storage_t *s)
{
    storage_stats_t stats;
    CHECK_EQ_INT(storage_stats(s, &stats), 0);
    return stats.folded_stacks;
}

/* Series of one write whose trees have the same shape on the same table
 * (a profile's sample types) reuse one mapping onto the full table: each
 * reads back exactly, and each counts its folded nodes, as a write of that
 * shape alone does. */
static void test_same_shape(storage_t *s, labels_t *full, symtab_t *st, int64_t time_ns)
{
    uint64_t token = labels_hash(full) >> 1;
    labels_t *l[3] = {fx_labels("svc", "shape-a"), fx_labels("svc", "shape-b"),
                      fx_labels("svc", "shape-d")};
    calltree_t *t[3] = {calltree_new(0), calltree_new(0), calltree_new(0)};
    for (int k = 0; k < 30; k++) {
        char stack[96];
        snprintf(stack, sizeof stack, "main;handler%d;fresh_%d", k % 4, k);
        fx_add(t[0], st, stack, 1 + k % 3);
    }
    for (int i = 1; i < 3; i++) { /* same shape, values x 5 */
        CHECK_EQ_INT(calltree_copy_shape(t[i], t[0]), 0);
        for (uint32_t n = 0; n < calltree_node_count(t[0]); n++)
            calltree_add_self(t[i], n, 5 * calltree_self(t[0], n));
    }
    uint64_t f0 = folded_now(s);
    CHECK_EQ_INT(write_series(s, token, l, t, 2, st, 1000, time_ns), 0);
    uint64_t f1 = folded_now(s);
    CHECK_EQ_INT(write_series(s, token, l + 2, t + 2, 1, st, 1001, time_ns), 0);
    uint64_t f2 = folded_now(s);
    CHECK(f2 > f1);
    CHECK_EQ_INT(f1 - f0, 2 * (f2 - f1));
    calltree_t *got[3];
    for (int i = 0; i < 3; i++) {
        got[i] = calltree_new(0);
        storage_merger_t *m;
        CHECK_EQ_INT(storage_merger_new(s, "t", &m), 0);
        CHECK_EQ_INT(storage_merger_add(m, token, labels_hash(l[i]), 4, 0, INT64_MAX / 2), 0);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_merger_finish(m, got[i], &em), 0);
        storage_merger_free(m);
        CHECK_EQ_INT(calltree_root_total(got[i]), calltree_root_total(t[i]));
    }
    CHECK(calltree_same_shape(got[1], got[2]));
    CHECK_EQ_INT(calltree_node_count(got[0]), calltree_node_count(got[1]));
    for (uint32_t n = 0; n < calltree_node_count(got[0]); n++) {
        CHECK_EQ_INT(5 * calltree_total(got[0], n), calltree_total(got[1], n));
        CHECK_EQ_INT(calltree_total(got[1], n), calltree_total(got[2], n));
    }
    for (int i = 0; i < 3; i++) {
        calltree_free(got[i]);
        calltree_free(t[i]);
        labels_free(l[i]);
    }
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
    test_same_shape(f.s, l, st, (f.now - 600) * NS);
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
    return check_exit();
}
