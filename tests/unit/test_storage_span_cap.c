/* test_storage_span_cap.c — stored span trees are bounded: storage_cap_tree
 * keeps the heaviest nodes and folds the rest into `other` with the total
 * exact; a span id named by many pushes of fresh stacks stays within
 * max_span_nodes nodes after its operands merge (at read and after a
 * compaction), and no write or merge fails. Before, span trees folded
 * without any node limit. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/hash.h"
#include "storage/storage_int.h"

static void test_cap_tree(void)
{
    calltree_t *t = calltree_new(0);
    int64_t sum = 0;
    for (uint64_t i = 0; i < 200; i++) { /* main;f_i;g_i with weight i+1 */
        uint64_t stack[3] = {100, 1000 + i, 5000 + i};
        CHECK_EQ_INT(calltree_add_stack(t, stack, 3, (int64_t)i + 1), 0);
        sum += (int64_t)i + 1;
    }
    calltree_t *c = NULL;
    CHECK_EQ_INT(storage_cap_tree(t, 1000, &c), 0);
    CHECK(c == NULL); /* within the cap: untouched */
    CHECK_EQ_INT(storage_cap_tree(t, 21, &c), 0);
    CHECK(c != NULL);
    if (c == NULL) return;
    CHECK(calltree_node_count(c) <= 21);
    CHECK_EQ_INT(calltree_root_total(c), sum);
    /* the heaviest stack (f_199) is kept whole; an `other` holds the rest */
    int heavy = 0, other = 0;
    for (uint32_t i = 1; i < calltree_node_count(c); i++) {
        if (calltree_sym(c, i) == 1000 + 199) heavy = 1;
        if (calltree_sym(c, i) == SYM_OTHER) other = 1;
    }
    CHECK(heavy && other);
    calltree_free(c);
    calltree_free(t);
}

typedef struct seen {
    size_t trees, max_nodes;
    int64_t total;
} seen_t;

static int span_cb(void *ctx, uint64_t token, uint64_t series_id, int64_t window, unsigned flags,
                   const uint8_t *v, size_t n)
{
    (void)token;
    (void)series_id;
    (void)window;
    seen_t *s = ctx;
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, v, n), 0);
    s->trees++;
    if (calltree_node_count(t) > s->max_nodes) s->max_nodes = calltree_node_count(t);
    s->total += calltree_root_total(t);
    calltree_free(t);
    return 0;
}

static void test_span_id_named_by_many_pushes(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return;
    f.opts.max_span_nodes = 64;
    CHECK_EQ_INT(fx_reopen(&f), 0);
    labels_t *l = fx_labels("spansvc", NULL);
    symtab_t *st = symtab_new();
    int64_t B = f.now - 600 - (f.now - 600) % 10, want = 0;
    for (int push = 0; push < 40; push++) { /* 40 pushes x 30 fresh stacks, one span id */
        calltree_t *t = calltree_new(0);
        for (int k = 0; k < 30; k++) {
            char stack[64];
            snprintf(stack, sizeof stack, "main;h%d;w%d_%d", push, push, k);
            fx_add(t, st, stack, 1 + k);
            want += 1 + k;
        }
        storage_span_tree_t sp = {STORAGE_SPAN_KIND_SPAN, 0xabc, t};
        storage_series_write_t sw = {
            .labels = l, .series_id = labels_hash(l), .tree = t, .spans = &sp, .nspans = 1};
        sw.token = sw.series_id >> 1;
        storage_profile_write_t p = {
            .tenant = "sp", .time_ns = B * NS, .series = &sw, .nseries = 1, .symbols = st};
        fx_id(p.profile_id, (uint64_t)push + 1);
        errmsg_t em = {{0}};
        CHECK_EQ_INT(storage_write_profile(f.s, &p, NULL, &em), 0);
        calltree_free(t);
    }
    for (int round = 0; round < 2; round++) { /* merged at read, then compacted */
        seen_t s = {0};
        CHECK_EQ_INT(
            storage_scan_spans(f.s, "sp", STORAGE_SPAN_KIND_SPAN, 0xabc, B, B + 10, span_cb, &s),
            0);
        CHECK_EQ_INT(s.trees, 1);
        CHECK_EQ_INT(s.total, want);
        CHECK(s.max_nodes <= 64);
        storage_stats_t stats;
        CHECK_EQ_INT(storage_stats(f.s, &stats), 0);
        if (round == 0) CHECK(stats.capped_spans > 0); /* the merge at read, counted */
        CHECK_EQ_INT(fx_reopen(&f), 0);
    }
    symtab_free(st);
    labels_free(l);
    fx_done(&f);
}

int main(void)
{
    test_cap_tree();
    test_span_id_named_by_many_pushes();
    return check_exit();
}
