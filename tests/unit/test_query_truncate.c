/* test_query_truncate.c — maxNodes truncation on random trees: the node
 * budget holds, every kept node keeps its exact self and total, `other` nodes
 * carry exactly what they hide, the heaviest nodes are the ones kept, and the
 * result does not depend on the order the tree was built in. Prints its seed;
 * pass a seed as argv[1] to replay. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hash.h"
#include "query/query.h"
#include "tests/unit/check.h"

typedef struct stack {
    uint64_t frames[12];
    size_t depth;
    int64_t value;
} stack_t_;

static void random_stacks(stack_t_ *st, size_t n, int negatives)
{
    for (size_t i = 0; i < n; i++) {
        st[i].depth = 1 + check_rng() % 10;
        for (size_t d = 0; d < st[i].depth; d++)
            st[i].frames[d] = 10 + check_rng() % (d < 2 ? 3 : 12); /* few roots, bushy below */
        st[i].value = (int64_t)(check_rng() % 1000) + 1;
        if (negatives && check_rng() % 5 == 0) st[i].value = -st[i].value;
        if (check_rng() % 7 == 0) st[i].value *= 1000; /* a few heavy stacks */
    }
}

static calltree_t *build(const stack_t_ *st, size_t n, int reverse)
{
    calltree_t *t = calltree_new(0);
    for (size_t i = 0; i < n; i++) {
        const stack_t_ *s = &st[reverse ? n - 1 - i : i];
        CHECK_EQ_INT(calltree_add_stack(t, s->frames, s->depth, s->value), 0);
    }
    return t;
}

/* Node of t at the same symbol path as node i of u, or CALLTREE_NONE. */
static uint32_t find_path(const calltree_t *t, const calltree_t *u, uint32_t i)
{
    if (i == 0) return 0;
    uint32_t p = find_path(t, u, calltree_parent(u, i));
    if (p == CALLTREE_NONE) return CALLTREE_NONE;
    for (uint32_t c = calltree_first_child(t, p); c != CALLTREE_NONE;
         c = calltree_next_sibling(t, c))
        if (calltree_sym(t, c) == calltree_sym(u, i)) return c;
    return CALLTREE_NONE;
}

static uint64_t mag(int64_t v)
{
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

static void check_truncated(const calltree_t *orig, const calltree_t *tr, size_t max_nodes,
                            int negatives)
{
    size_t n = calltree_node_count(tr);
    CHECK(n <= max_nodes);
    CHECK_EQ_INT(calltree_root_total(tr), calltree_root_total(orig));
    unsigned char *kept = calloc(calltree_node_count(orig), 1);
    uint64_t min_kept = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (calltree_sym(tr, i) == SYM_OTHER) {
            CHECK(calltree_first_child(tr, i) == CALLTREE_NONE);
            CHECK_EQ_INT(calltree_self(tr, i), calltree_total(tr, i));
            continue;
        }
        uint32_t o = find_path(orig, tr, i);
        CHECK(o != CALLTREE_NONE);
        if (o == CALLTREE_NONE) continue;
        kept[o] = 1;
        CHECK_EQ_INT(calltree_self(tr, i), calltree_self(orig, o));
        CHECK_EQ_INT(calltree_total(tr, i), calltree_total(orig, o)); /* exact, others included */
        if (i != 0 && mag(calltree_total(orig, o)) < min_kept)
            min_kept = mag(calltree_total(orig, o));
    }
    /* heaviest kept: no hidden child of a kept node is heavier than a kept
     * node (with negative values a child can outweigh its parent, so the
     * expansion order is not monotone there) */
    for (uint32_t o = 1; o < calltree_node_count(orig); o++)
        if (!negatives && !kept[o] && kept[calltree_parent(orig, o)])
            CHECK(mag(calltree_total(orig, o)) <= min_kept);
    free(kept);
}

static void fold(const calltree_t *t, uint32_t i, buf_t *path, buf_t *out)
{
    size_t len = path->len;
    if (i != 0) buf_printf(path, ";%llx", (unsigned long long)calltree_sym(t, i));
    /* order children by symbol so the text is canonical */
    uint64_t syms[64];
    uint32_t idx[64];
    size_t k = 0;
    for (uint32_t c = calltree_first_child(t, i); c != CALLTREE_NONE && k < 64;
         c = calltree_next_sibling(t, c)) {
        size_t j = k++;
        while (j > 0 && syms[j - 1] > calltree_sym(t, c)) {
            syms[j] = syms[j - 1];
            idx[j] = idx[j - 1];
            j--;
        }
        syms[j] = calltree_sym(t, c);
        idx[j] = c;
    }
    buf_printf(out, "%s %lld %lld\n", path->data ? (char *)path->data : "",
               (long long)calltree_self(t, i), (long long)calltree_total(t, i));
    for (size_t j = 0; j < k; j++)
        fold(t, idx[j], path, out);
    path->len = len;
    if (path->data) path->data[len] = 0;
}

static void test_random(uint64_t seed)
{
    check_rng_state = seed ? seed : 1;
    fprintf(stderr, "test_query_truncate seed %llu\n", (unsigned long long)seed);
    for (int round = 0; round < 60; round++) {
        size_t n = 50 + check_rng() % 400;
        stack_t_ *st = malloc(n * sizeof *st);
        random_stacks(st, n, round % 3 == 0);
        calltree_t *a = build(st, n, 0), *b = build(st, n, 1);
        size_t nodes = calltree_node_count(a);
        size_t max_nodes = 2 + check_rng() % (nodes + 5);
        calltree_t *ta = NULL, *tb = NULL;
        CHECK_EQ_INT(query_truncate(a, max_nodes, &ta), 0);
        CHECK_EQ_INT(query_truncate(b, max_nodes, &tb), 0);
        if (ta && tb) {
            check_truncated(a, ta, max_nodes, round % 3 == 0);
            buf_t p1, p2, f1, f2;
            buf_init(&p1, BUF_UNLIMITED);
            buf_init(&p2, BUF_UNLIMITED);
            buf_init(&f1, BUF_UNLIMITED);
            buf_init(&f2, BUF_UNLIMITED);
            fold(ta, 0, &p1, &f1);
            fold(tb, 0, &p2, &f2);
            CHECK(f1.len == f2.len && memcmp(f1.data, f2.data, f1.len) == 0); /* order-free */
            buf_free(&p1);
            buf_free(&p2);
            buf_free(&f1);
            buf_free(&f2);
        }
        calltree_free(ta);
        calltree_free(tb);
        calltree_free(a);
        calltree_free(b);
        free(st);
    }
}

static void test_edges(void)
{
    calltree_t *t = calltree_new(0), *out = NULL;
    uint64_t s1[] = {10, 11}, s2[] = {10, 12}, s3[] = {13};
    calltree_add_stack(t, s1, 2, 5);
    calltree_add_stack(t, s2, 2, 3);
    calltree_add_stack(t, s3, 1, 1);
    CHECK_EQ_INT(query_truncate(t, 1, &out), ERR_INVALID_ARGUMENT);
    /* 2: root + one `other` holding everything */
    CHECK_EQ_INT(query_truncate(t, 2, &out), 0);
    CHECK_EQ_INT(calltree_node_count(out), 2);
    CHECK_EQ_INT(calltree_root_total(out), 9);
    CHECK_EQ_INT(calltree_sym(out, calltree_first_child(out, 0)), SYM_OTHER);
    calltree_free(out);
    /* big enough: unchanged */
    CHECK_EQ_INT(query_truncate(t, 100, &out), 0);
    CHECK_EQ_INT(calltree_node_count(out), calltree_node_count(t));
    calltree_free(out);
    /* 4: root, 10 (heaviest, total 8), its `other`, root's `other` for 13 */
    CHECK_EQ_INT(query_truncate(t, 4, &out), 0);
    CHECK_EQ_INT(calltree_node_count(out), 4);
    check_truncated(t, out, 4, 0);
    calltree_free(out);
    calltree_free(t);
}

/* A stack with nothing in the range (value 0) may or may not be in a merged
 * tree depending on merge order: truncation drops empty nodes, truncating or
 * not, so both trees give the same answer. */
static void test_empty_nodes(void)
{
    calltree_t *with = calltree_new(0), *without = calltree_new(0), *a = NULL, *b = NULL;
    uint64_t s1[] = {10, 11}, s2[] = {10, 12, 13}, s3[] = {14};
    calltree_add_stack(with, s1, 2, 5);
    calltree_add_stack(with, s2, 3, 0); /* 12 and 13: empty */
    calltree_add_stack(with, s3, 1, 0); /* 14: empty */
    calltree_add_stack(without, s1, 2, 5);
    CHECK(query_tree_has_empty(with));
    CHECK(!query_tree_has_empty(without));
    for (size_t max = 2; max <= 8; max++) {
        CHECK_EQ_INT(query_truncate(with, max, &a), 0);
        CHECK_EQ_INT(query_truncate(without, max, &b), 0);
        CHECK_EQ_INT(calltree_node_count(a), calltree_node_count(b));
        CHECK(!query_tree_has_empty(a));
        CHECK_EQ_INT(calltree_root_total(a), 5);
        calltree_free(a);
        calltree_free(b);
    }
    calltree_free(with);
    calltree_free(without);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    test_edges();
    test_empty_nodes();
    test_random(seed);
    return check_exit();
}
