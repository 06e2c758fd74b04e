/* Unit tests for common/calltree: building, merging, encoding, decoding,
 * limits and hostile encodings. Randomised cases print their seed; pass a
 * seed as argv[1] to replay. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/calltree.h"
#include "common/err.h"
#include "common/hash.h"
#include "check.h"

/* Sum of self over all nodes == root total; every node's total == self + children. */
static int tree_consistent(const calltree_t *t)
{
    int64_t sum_self = 0;
    for (uint32_t i = 0; i < calltree_node_count(t); i++) {
        int64_t kids = 0;
        for (uint32_t c = calltree_first_child(t, i); c != CALLTREE_NONE;
             c = calltree_next_sibling(t, c))
            kids += calltree_total(t, c);
        if (calltree_total(t, i) != calltree_self(t, i) + kids) return 0;
        sum_self += calltree_self(t, i);
    }
    return sum_self == calltree_root_total(t);
}

static void random_tree(calltree_t *t, int stacks, int64_t *sum)
{
    uint64_t st[12];
    for (int i = 0; i < stacks; i++) {
        size_t depth = check_rng() % 12;
        for (size_t d = 0; d < depth; d++)
            st[d] = 2 + check_rng() % 6;                 /* few symbols: lots of sharing */
        int64_t v = (int64_t)(check_rng() % 1000) - 100; /* some negative values */
        CHECK_EQ_INT(calltree_add_stack(t, st, depth, v), ERR_OK);
        *sum += v;
    }
}

static void test_basic(void)
{
    calltree_t *t = calltree_new(0);
    uint64_t a[] = {10, 11, 12}, b[] = {10, 11}, c[] = {20};
    CHECK_EQ_INT(calltree_add_stack(t, a, 3, 5), ERR_OK);
    CHECK_EQ_INT(calltree_add_stack(t, b, 2, 7), ERR_OK);
    CHECK_EQ_INT(calltree_add_stack(t, c, 1, 1), ERR_OK);
    CHECK_EQ_INT(calltree_add_stack(t, a, 0, 2), ERR_OK); /* empty stack -> root self */
    CHECK_EQ_INT(calltree_root_total(t), 15);
    CHECK_EQ_INT(calltree_node_count(t), 5);
    CHECK_EQ_INT(calltree_self(t, 0), 2);
    CHECK(tree_consistent(t));
    calltree_free(t);
}

static void test_roundtrip_and_merge(uint64_t seed)
{
    check_rng_state = seed;
    for (int round = 0; round < 50; round++) {
        calltree_t *a = calltree_new(0), *b = calltree_new(0), *m = calltree_new(0);
        int64_t sa = 0, sb = 0;
        random_tree(a, 1 + (int)(check_rng() % 200), &sa);
        random_tree(b, 1 + (int)(check_rng() % 200), &sb);
        CHECK_EQ_INT(calltree_root_total(a), sa);
        CHECK(tree_consistent(a));
        buf_t ea, eb;
        buf_init(&ea, BUF_UNLIMITED);
        buf_init(&eb, BUF_UNLIMITED);
        CHECK_EQ_INT(calltree_encode(a, &ea), ERR_OK);
        CHECK_EQ_INT(calltree_encode(b, &eb), ERR_OK);
        CHECK_EQ_INT(calltree_decode_merge(m, ea.data, ea.len), ERR_OK);
        CHECK_EQ_INT(calltree_decode_merge(m, eb.data, eb.len), ERR_OK);
        CHECK_EQ_INT(calltree_root_total(m), sa + sb);
        CHECK(tree_consistent(m));
        /* merge in memory gives the same encoding size and totals as decode-merge */
        calltree_t *m2 = calltree_new(0);
        CHECK_EQ_INT(calltree_merge(m2, b), ERR_OK);
        CHECK_EQ_INT(calltree_merge(m2, a), ERR_OK);
        CHECK_EQ_INT(calltree_node_count(m2), calltree_node_count(m));
        CHECK_EQ_INT(calltree_root_total(m2), sa + sb);
        CHECK(tree_consistent(m2));
        /* re-encode / decode is stable */
        buf_t e2;
        buf_init(&e2, BUF_UNLIMITED);
        CHECK_EQ_INT(calltree_encode(m, &e2), ERR_OK);
        calltree_t *m3 = calltree_new(0);
        CHECK_EQ_INT(calltree_decode_merge(m3, e2.data, e2.len), ERR_OK);
        CHECK_EQ_INT(calltree_node_count(m3), calltree_node_count(m));
        CHECK_EQ_INT(calltree_root_total(m3), sa + sb);
        buf_free(&ea);
        buf_free(&eb);
        buf_free(&e2);
        calltree_free(a);
        calltree_free(b);
        calltree_free(m);
        calltree_free(m2);
        calltree_free(m3);
    }
}

static void test_limits_and_corruption(uint64_t seed)
{
    calltree_t *t = calltree_new(3);
    uint64_t s[] = {5, 6, 7};
    CHECK_EQ_INT(calltree_add_stack(t, s, 3, 1), ERR_LIMIT);
    CHECK_EQ_INT(calltree_root_total(t), 0);
    CHECK_EQ_INT(calltree_add_stack(t, s, 2, 4), ERR_OK);
    CHECK_EQ_INT(calltree_root_total(t), 4);
    calltree_free(t);

    /* every truncation and every single-byte flip of a valid encoding is
     * either refused or decodes to a consistent tree; a refused one leaves dst
     * values unchanged */
    check_rng_state = seed;
    calltree_t *src = calltree_new(0);
    int64_t sum = 0;
    random_tree(src, 100, &sum);
    buf_t e;
    buf_init(&e, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(src, &e), ERR_OK);
    for (size_t cut = 0; cut < e.len; cut++) {
        calltree_t *d = calltree_new(0);
        int rc = calltree_decode_merge(d, e.data, cut);
        CHECK(rc == ERR_CORRUPT);
        CHECK_EQ_INT(calltree_root_total(d), 0);
        calltree_free(d);
    }
    for (size_t i = 0; i < e.len; i++) {
        uint8_t saved = e.data[i];
        e.data[i] ^= (uint8_t)(1u << (check_rng() % 8));
        calltree_t *d = calltree_new(0);
        int rc = calltree_decode_merge(d, e.data, e.len);
        CHECK(rc == ERR_OK || rc == ERR_CORRUPT);
        CHECK(tree_consistent(d));
        if (rc != ERR_OK) CHECK_EQ_INT(calltree_root_total(d), 0);
        calltree_free(d);
        e.data[i] = saved;
    }
    buf_free(&e);
    calltree_free(src);
}

static int count_sym(void *ctx, uint64_t sym)
{
    (void)sym;
    (*(int *)ctx)++;
    return 0;
}

static void test_symbols(void)
{
    calltree_t *t = calltree_new(0);
    uint64_t a[] = {10, 11, 10}, b[] = {11, 12};
    calltree_add_stack(t, a, 3, 1);
    calltree_add_stack(t, b, 2, 1);
    int n = 0;
    CHECK_EQ_INT(calltree_for_each_symbol(t, count_sym, &n), ERR_OK);
    CHECK_EQ_INT(n, 3);
    calltree_free(t);
    /* reserved ids are never produced by hash_symbol */
    CHECK(hash_symbol("", 0, "", 0) > SYM_OTHER);
}

/* Totals are computed when read and follow every change after that read:
 * adds, merges, decodes, a shrink (which also drops the edge table: the
 * tree then finds its nodes again) and a clear. The computed array is held
 * only once read. */
static void test_totals_follow_changes(void)
{
    calltree_t *t = calltree_new(0), *u = calltree_new(0);
    const uint64_t ab[] = {10, 11}, a[] = {10}, ac[] = {10, 12};
    CHECK_EQ_INT(calltree_add_stack(t, ab, 2, 5), ERR_OK);
    size_t unread = calltree_mem_bytes(t);
    CHECK_EQ_INT(calltree_total(t, 1), 5);
    CHECK(calltree_mem_bytes(t) == unread + 64 * sizeof(int64_t) ||
          calltree_mem_bytes(t) == unread + 3 * sizeof(int64_t));
    CHECK_EQ_INT(calltree_add_stack(t, a, 1, 3), ERR_OK);
    CHECK_EQ_INT(calltree_total(t, 1), 8);
    calltree_add_self(t, 2, -2);
    CHECK_EQ_INT(calltree_total(t, 1), 6);
    CHECK_EQ_INT(calltree_root_total(t), 6);
    uint32_t node = 2;
    int64_t four = 4;
    CHECK_EQ_INT(calltree_add_selves(t, &node, &four, 1), ERR_OK);
    CHECK_EQ_INT(calltree_total(t, 1), 10);
    CHECK_EQ_INT(calltree_add_stack(u, ab, 2, 1), ERR_OK);
    CHECK_EQ_INT(calltree_merge(t, u), ERR_OK);
    CHECK_EQ_INT(calltree_total(t, 2), 8);
    buf_t e;
    buf_init(&e, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(u, &e), ERR_OK);
    CHECK_EQ_INT(calltree_decode_merge(t, e.data, e.len), ERR_OK);
    CHECK(calltree_totals(t) != NULL && calltree_totals(t)[1] == 12);
    CHECK_EQ_INT(calltree_root_total(t), 12);
    size_t read = calltree_mem_bytes(t);
    calltree_shrink(t);
    CHECK(calltree_mem_bytes(t) < read);
    CHECK_EQ_INT(calltree_total(t, 1), 12);
    CHECK_EQ_INT(calltree_add_stack(t, ab, 2, 1), ERR_OK); /* found, not added again */
    CHECK_EQ_INT(calltree_node_count(t), 3);
    CHECK_EQ_INT(calltree_add_stack(t, ac, 2, 1), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(t), 4);
    CHECK_EQ_INT(calltree_total(t, 1), 14);
    CHECK(tree_consistent(t));
    CHECK_EQ_INT(calltree_clear(t), ERR_OK);
    CHECK_EQ_INT(calltree_total(t, 0), 0);
    CHECK_EQ_INT(calltree_root_total(t), 0);
    buf_free(&e);
    calltree_free(t);
    calltree_free(u);
}

/* Nodes found with calltree_child and their selves added, and copied
 * shapes, give the trees calltree_add_stack gives. */
static void test_deferred_and_shape(void)
{
    calltree_t *a = calltree_new(0), *b = calltree_new(0), *c = calltree_new(0);
    uint64_t st[12];
    for (int i = 0; i < 500; i++) {
        size_t depth = check_rng() % 12;
        for (size_t d = 0; d < depth; d++)
            st[d] = 2 + check_rng() % 6;
        int64_t v = (int64_t)(check_rng() % 1000) - 300;
        if (i == 7) v = INT64_MAX; /* sums wrap alike in both */
        CHECK_EQ_INT(calltree_add_stack(a, st, depth, v), ERR_OK);
        uint32_t node = 0;
        for (size_t d = 0; d < depth; d++)
            CHECK_EQ_INT(calltree_child(b, node, st[d], &node), ERR_OK);
        calltree_add_self(b, node, v);
    }
    CHECK_EQ_INT(calltree_copy_shape(c, a), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(c), calltree_node_count(a));
    for (uint32_t i = 0; i < calltree_node_count(a); i++) {
        CHECK_EQ_INT(calltree_self(b, i), calltree_self(a, i));
        CHECK_EQ_INT(calltree_total(b, i), calltree_total(a, i));
        CHECK(calltree_sym(c, i) == calltree_sym(a, i) &&
              calltree_parent(c, i) == calltree_parent(a, i));
        CHECK(calltree_first_child(c, i) == calltree_first_child(a, i));
        CHECK(calltree_next_sibling(c, i) == calltree_next_sibling(a, i));
        CHECK_EQ_INT(calltree_total(c, i), 0);
        calltree_add_self(c, i, calltree_self(a, i));
    }
    buf_t ea, ec;
    buf_init(&ea, BUF_UNLIMITED);
    buf_init(&ec, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(a, &ea), ERR_OK);
    CHECK_EQ_INT(calltree_encode(c, &ec), ERR_OK);
    CHECK(ea.len == ec.len && memcmp(ea.data, ec.data, ea.len) == 0);
    /* the copy is a tree of its own: adding finds the copied edges */
    uint32_t before = (uint32_t)calltree_node_count(c);
    CHECK_EQ_INT(calltree_add_stack(c, st, 0, 1), ERR_OK);
    for (uint32_t i = 1; i < before; i++) {
        uint32_t got;
        CHECK_EQ_INT(calltree_child(c, calltree_parent(c, i), calltree_sym(c, i), &got), ERR_OK);
        CHECK_EQ_INT(got, i);
    }
    CHECK_EQ_INT(calltree_node_count(c), before);
    /* a shape larger than the destination's limit is refused */
    calltree_t *small = calltree_new(3);
    CHECK_EQ_INT(calltree_copy_shape(small, a), ERR_LIMIT);
    CHECK_EQ_INT(calltree_node_count(small), 1);
    calltree_free(small);
    buf_free(&ea);
    buf_free(&ec);
    calltree_free(a);
    calltree_free(b);
    calltree_free(c);
}

/* Trees that share a shape (calltree_copy_shape, calltree_adopt_shape)
 * stay trees of their own: a node added to one is not in the other, values
 * are apart, freeing either leaves the other whole; a shrunk tree answers
 * and grows the same; the shared shape counts once in the memory figures. */
static void test_shared_shape(void)
{
    calltree_t *a = calltree_new(0), *c = calltree_new(0), *d = calltree_new(0);
    int64_t sum = 0;
    random_tree(a, 300, &sum);
    size_t n = calltree_node_count(a);
    size_t alone = calltree_mem_bytes(a);
    CHECK_EQ_INT(calltree_copy_shape(c, a), ERR_OK);
    CHECK(calltree_same_shape(a, c));
    int64_t *selves = malloc(n / 2 * sizeof *selves);
    for (size_t i = 0; i < n / 2; i++)
        selves[i] = (int64_t)i;
    CHECK_EQ_INT(calltree_adopt_shape(d, a, selves, n / 2), ERR_OK);
    int64_t dsum = 0;
    for (uint32_t i = 0; i < n; i++) {
        CHECK_EQ_INT(calltree_self(d, i), i < n / 2 ? (int64_t)i : 0);
        dsum += calltree_self(d, i);
    }
    CHECK_EQ_INT(calltree_root_total(d), dsum);
    CHECK_EQ_INT(calltree_root_total(a), sum);
    /* three trees, one shape: each counts a third of it */
    CHECK(calltree_mem_bytes(a) < alone);
    /* c grows: it takes its own copy; a and d keep theirs unchanged */
    uint64_t st[2] = {9999, 9998};
    CHECK_EQ_INT(calltree_add_stack(c, st, 2, 5), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(c), n + 2);
    CHECK_EQ_INT(calltree_node_count(a), n);
    CHECK_EQ_INT(calltree_node_count(d), n);
    CHECK(!calltree_same_shape(a, c));
    CHECK(calltree_same_shape(a, d));
    CHECK_EQ_INT(calltree_root_total(c), 5);
    CHECK_EQ_INT(calltree_root_total(a), sum);
    /* a freed: d still reads the shape, then grows from it */
    calltree_free(a);
    calltree_shrink(d);
    CHECK_EQ_INT(calltree_root_total(d), dsum);
    CHECK_EQ_INT(calltree_add_stack(d, st, 2, 1), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(d), n + 2);
    uint32_t got;
    CHECK_EQ_INT(calltree_child(d, 0, 9999, &got), ERR_OK);
    CHECK_EQ_INT(got, (uint32_t)n);
    CHECK_EQ_INT(calltree_root_total(d), dsum + 1);
    CHECK_EQ_INT(calltree_clear(c), 0);
    CHECK_EQ_INT(calltree_node_count(c), 1);
    CHECK_EQ_INT(calltree_add_stack(c, st, 1, 2), ERR_OK);
    CHECK_EQ_INT(calltree_root_total(c), 2);
    calltree_free(c);
    calltree_free(d);
}

/* Allocation failure, where the build lets this test replace calloc (not
 * under a sanitizer, which owns the allocator): clearing a tree that shares
 * its shape needs a fresh shape, and when none can be had it reports
 * ERR_NOMEM and leaves the tree as it was (it used to abort the process). */
#if defined(__has_feature) /* clang names its sanitizers this way */
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) ||                         \
    __has_feature(thread_sanitizer)
#define TEST_SANITIZED_ALLOCATOR 1
#endif
#endif
/* Every node's child list (calltree_links, and the same through
 * calltree_first_child and calltree_next_sibling) is exactly the nodes
 * whose parent it is, newest first. */
static int links_exact(const calltree_t *t)
{
    size_t n = calltree_node_count(t), listed = 0;
    const calltree_links_t *l = calltree_links(t);
    const calltree_node_t *nd = calltree_nodes(t);
    if (l == NULL) return 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t prev = UINT32_MAX;
        if (l[i].first_child != calltree_first_child(t, i)) return 0;
        for (uint32_t c = l[i].first_child; c != CALLTREE_NONE; c = l[c].next_sibling) {
            if (c >= n || c >= prev || nd[c].parent != i) return 0;
            if (l[c].next_sibling != calltree_next_sibling(t, c)) return 0;
            prev = c;
            listed++;
        }
    }
    return listed == n - 1;
}

/* Adds nodes one at a time under random earlier ones until t has n. */
static void grow_to(calltree_t *t, size_t n, uint64_t *r)
{
    while (calltree_node_count(t) < n) {
        *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t parent = (uint32_t)((*r >> 33) % calltree_node_count(t)), child;
        CHECK_EQ_INT(calltree_child(t, parent, 100 + (*r >> 20) % 50, &child), ERR_OK);
    }
}

/* A tree that only grows holds no child links: 8 bytes a node for its
 * shape (its symbol's tree-local index and parent; 12 with the 64-bit id,
 * 20 when each node held its first child and next sibling too), 8 for its
 * value and its edge slots, and 8 bytes a distinct symbol (50 here) and
 * the symbol table's slots. They are made when first read
 * (8 bytes a node more), kept by appends while they have room, made again
 * after the tree outgrows it, and kept by calltree_shrink. */
static void test_links_made_when_read(uint64_t seed)
{
    enum { N = 20000 };
    uint64_t r = seed;
    calltree_t *empty = calltree_new(0);
    calltree_shrink(empty);
    size_t base = calltree_mem_bytes(empty);
    calltree_free(empty);
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_reserve(t, N - 1), ERR_OK); /* room for exactly N nodes */
    grow_to(t, N, &r);
    size_t grown = calltree_mem_bytes(t);
    fprintf(stderr, "%d nodes growing: %zu bytes (%.1f a node)\n", N, grown, (double)grown / N);
    CHECK(grown <= 1024 + 50 * (8 + 4 * 9 / 4) + (size_t)N * (8 + 8 + 4 * 9 / 4));
    /* what a reader will hold counts them before they are made */
    CHECK_EQ_INT(calltree_mem_bytes_read(t), grown + N * sizeof(calltree_links_t));
    CHECK(links_exact(t));
    CHECK_EQ_INT(calltree_mem_bytes(t), grown + N * sizeof(calltree_links_t));
    CHECK_EQ_INT(calltree_mem_bytes_read(t), calltree_mem_bytes(t));
    grow_to(t, N + N / 2, &r); /* past their room: dropped, then made again */
    CHECK(links_exact(t));
    CHECK(tree_consistent(t));
    calltree_shrink(t);
    CHECK(links_exact(t));
    size_t n = calltree_node_count(t);
    CHECK_EQ_INT(calltree_mem_bytes(t),
                 base + (n - 1) * (8 + 8 + sizeof(calltree_links_t)) + 50 * sizeof(uint64_t));
    grow_to(t, n + 10, &r); /* a shrunk tree grows again */
    CHECK(links_exact(t));
    CHECK_EQ_INT(calltree_clear(t), ERR_OK);
    CHECK(links_exact(t));
    grow_to(t, 100, &r);
    CHECK(links_exact(t));
    calltree_t *c = calltree_new(0);
    CHECK_EQ_INT(calltree_copy_shape(c, t), ERR_OK); /* shared: made before it is */
    CHECK(links_exact(c) && links_exact(t));
    calltree_free(c);
    calltree_free(t);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) &&                             \
    !defined(TEST_SANITIZED_ALLOCATOR)
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_malloc(size_t size);
static int fail_callocs, fail_reallocs, fail_mallocs;
void *calloc(size_t n, size_t size)
{
    return fail_callocs ? NULL : __libc_calloc(n, size);
}
void *malloc(size_t size)
{
    return fail_mallocs ? NULL : __libc_malloc(size);
}
void *realloc(void *p, size_t size)
{
    return fail_reallocs ? NULL : __libc_realloc(p, size);
}

/* Totals read when their array cannot be allocated: every node's is still
 * right (its subtree summed), calltree_totals says NULL, and the array is
 * made by the next read that can allocate it. */
static void test_totals_without_memory(void)
{
    calltree_t *t = calltree_new(0);
    int64_t sum = 0;
    random_tree(t, 300, &sum);
    calltree_t *want = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(want, t), ERR_OK);
    const int64_t *ref = calltree_totals(want);
    CHECK(ref != NULL);
    fail_reallocs = 1;
    const int64_t *none = calltree_totals(t);
    int same = 1;
    for (uint32_t i = 0; ref != NULL && i < calltree_node_count(t); i++)
        same &= calltree_total(t, i) == ref[i];
    fail_reallocs = 0;
    CHECK(none == NULL);
    CHECK(same);
    CHECK_EQ_INT(calltree_root_total(t), sum);
    CHECK(calltree_totals(t) != NULL && tree_consistent(t));
    calltree_free(t);
    calltree_free(want);
}

static void test_clear_without_memory(void)
{
    calltree_t *a = calltree_new(0), *b = calltree_new(0);
    const uint64_t st[] = {1, 2, 3};
    CHECK_EQ_INT(calltree_add_stack(a, st, 3, 7), ERR_OK);
    CHECK_EQ_INT(calltree_copy_shape(b, a), ERR_OK);
    fail_callocs = 1;
    int rc = calltree_clear(b);
    fail_callocs = 0;
    CHECK_EQ_INT(rc, ERR_NOMEM);
    CHECK(calltree_same_shape(a, b)); /* unchanged: still a's shape */
    CHECK_EQ_INT(calltree_clear(b), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(b), 1);
    CHECK_EQ_INT(calltree_node_count(a), 4);
    calltree_free(a);
    calltree_free(b);
}

/* Links and totals read when neither array can be allocated: the same
 * children in the same order (the nodes scanned), the same totals (every
 * later node's ancestors walked), calltree_links says NULL and encoding
 * fails cleanly; both are made by the next read that can allocate them. */
static void test_links_without_memory(uint64_t seed)
{
    calltree_t *t = calltree_new(0), *want = calltree_new(0);
    uint64_t r = seed;
    grow_to(t, 3000, &r);
    CHECK_EQ_INT(calltree_merge(want, t), ERR_OK);
    CHECK(links_exact(want) && calltree_totals(want) != NULL);
    int same = 1;
    buf_t e;
    buf_init(&e, BUF_UNLIMITED);
    fail_mallocs = fail_reallocs = 1;
    const calltree_links_t *none = calltree_links(t);
    const int64_t *no_totals = calltree_totals(t);
    for (uint32_t i = 0; i < calltree_node_count(t); i++)
        same &= calltree_first_child(t, i) == calltree_first_child(want, i) &&
                calltree_next_sibling(t, i) == calltree_next_sibling(want, i) &&
                calltree_total(t, i) == calltree_total(want, i);
    int rc = calltree_encode(t, &e);
    fail_mallocs = fail_reallocs = 0;
    CHECK(none == NULL && no_totals == NULL);
    CHECK(same);
    CHECK(rc != ERR_OK);
    CHECK(links_exact(t) && tree_consistent(t));
    buf_free(&e);
    calltree_free(t);
    calltree_free(want);
}
#else
static void test_links_without_memory(uint64_t seed)
{
    (void)seed;
    fprintf(stderr, "skip test_links_without_memory: the sanitizer owns malloc\n");
}
static void test_clear_without_memory(void)
{
    fprintf(stderr, "skip test_clear_without_memory: the sanitizer owns calloc\n");
}
static void test_totals_without_memory(void)
{
    fprintf(stderr, "skip test_totals_without_memory: the sanitizer owns realloc\n");
}
#endif

/* The tree a scaled tree stands for: a's nodes with a's values times k. */
static calltree_t *scaled_copy(const calltree_t *a, int64_t k)
{
    calltree_t *c = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(c, a), ERR_OK);
    for (uint32_t i = 0; i < calltree_node_count(c); i++)
        calltree_add_self(c, i, calltree_self(c, i) * (k - 1));
    return c;
}

static int same_encoding(const calltree_t *a, const calltree_t *b)
{
    buf_t x, y;
    buf_init(&x, BUF_UNLIMITED);
    buf_init(&y, BUF_UNLIMITED);
    int same = calltree_encode(a, &x) == ERR_OK && calltree_encode(b, &y) == ERR_OK &&
               x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    buf_free(&x);
    buf_free(&y);
    return same;
}

/* A scaled tree (calltree_adopt_scaled) reads, encodes and merges as the
 * tree of its base's values times its scale while holding no values; any
 * change first gives it its own, and it then changes as that tree would. */
static void test_scaled_tree(void)
{
    calltree_t *a = calltree_new(0), *s = calltree_new(0);
    int64_t sum = 0;
    random_tree(a, 300, &sum);
    calltree_shrink(a);
    size_t n = calltree_node_count(a);
    calltree_t *want = scaled_copy(a, 3);
    calltree_t *cp = calltree_new(0);
    CHECK_EQ_INT(calltree_copy_shape(cp, a), ERR_OK);
    CHECK_EQ_INT(calltree_adopt_scaled(s, a, 3), ERR_OK);
    /* no values held: the shape counts as in a tree that shares it */
    CHECK(calltree_mem_bytes(s) + n * sizeof(int64_t) <= calltree_mem_bytes(cp));
    calltree_free(cp);
    CHECK(calltree_same_shape(a, s));
    CHECK_EQ_INT(calltree_node_count(s), n);
    CHECK_EQ_INT(calltree_root_total(s), 3 * sum);
    for (uint32_t i = 0; i < n; i++) {
        CHECK_EQ_INT(calltree_self(s, i), 3 * calltree_self(a, i));
        CHECK_EQ_INT(calltree_total(s, i), 3 * calltree_total(a, i));
    }
    CHECK(tree_consistent(s));
    int64_t k;
    const int64_t *base;
    CHECK_EQ_INT(calltree_selves_scaled(s, &base, &k), ERR_OK);
    CHECK_EQ_INT(k, 3);
    CHECK(base == calltree_selves(a));
    CHECK(same_encoding(s, want));
    /* merged from */
    calltree_t *m = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(m, s), ERR_OK);
    CHECK(same_encoding(m, want));
    /* merged into: values of its own, then the sum */
    CHECK_EQ_INT(calltree_merge(s, a), ERR_OK);
    CHECK_EQ_INT(calltree_selves_scaled(s, &base, &k), ERR_OK);
    CHECK_EQ_INT(k, 1);
    CHECK(base != calltree_selves(a));
    calltree_t *want4 = scaled_copy(a, 4);
    CHECK(same_encoding(s, want4));
    CHECK_EQ_INT(calltree_root_total(s), 4 * sum);
    /* a node added to a scaled tree: it gets its own values and shape */
    calltree_t *g = calltree_new(0);
    CHECK_EQ_INT(calltree_adopt_scaled(g, a, -2), ERR_OK);
    uint64_t st[2] = {9999, 9998};
    CHECK_EQ_INT(calltree_add_stack(g, st, 2, 7), ERR_OK);
    CHECK_EQ_INT(calltree_root_total(g), -2 * sum + 7);
    CHECK_EQ_INT(calltree_node_count(a), n);
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ_INT(calltree_self(g, i), -2 * calltree_self(a, i));
    CHECK(tree_consistent(g));
    /* decoded into, values added, cleared */
    calltree_t *h = calltree_new(0);
    CHECK_EQ_INT(calltree_adopt_scaled(h, a, 2), ERR_OK);
    buf_t e;
    buf_init(&e, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(a, &e), ERR_OK);
    CHECK_EQ_INT(calltree_decode_merge(h, e.data, e.len), ERR_OK);
    CHECK(calltree_selves(h) != NULL);
    calltree_t *want3 = scaled_copy(a, 3);
    CHECK(same_encoding(h, want3));
    calltree_free(want3);
    uint32_t one = 1;
    int64_t five = 5;
    calltree_t *f = calltree_new(0);
    CHECK_EQ_INT(calltree_adopt_scaled(f, a, 1), ERR_OK);
    CHECK_EQ_INT(calltree_add_selves(f, &one, &five, 1), ERR_OK);
    CHECK_EQ_INT(calltree_self(f, 1), calltree_self(a, 1) + 5);
    CHECK_EQ_INT(calltree_root_total(f), sum + 5);
    CHECK_EQ_INT(calltree_clear(f), 0);
    CHECK_EQ_INT(calltree_node_count(f), 1);
    CHECK_EQ_INT(calltree_root_total(f), 0);
    /* calltree_selves makes a scaled tree's values */
    calltree_t *v = calltree_new(0);
    CHECK_EQ_INT(calltree_adopt_scaled(v, a, 5), ERR_OK);
    const int64_t *vs = calltree_selves(v);
    CHECK(vs != NULL && vs != calltree_selves(a));
    for (uint32_t i = 0; vs != NULL && i < n; i++)
        CHECK_EQ_INT(vs[i], 5 * calltree_self(a, i));
    /* past max_nodes: refused, unchanged */
    calltree_t *small = calltree_new(2);
    CHECK_EQ_INT(calltree_adopt_scaled(small, a, 2), n > 2 ? ERR_LIMIT : ERR_OK);
    CHECK_EQ_INT(calltree_node_count(small), n > 2 ? 1 : n);
    buf_free(&e);
    calltree_free(small);
    calltree_free(v);
    calltree_free(f);
    calltree_free(h);
    calltree_free(g);
    calltree_free(want4);
    calltree_free(m);
    calltree_free(want);
    calltree_free(s);
    calltree_free(a);
}

/* calltree_child_hint gives the node calltree_child gives whatever the
 * hint holds (right, another symbol's index, out of range, CALLTREE_NONE)
 * and leaves the symbol's tree-local index in it; a node is its index and
 * parent, 8 bytes. */
static void test_child_hint(uint64_t seed)
{
    CHECK_EQ_INT(sizeof(calltree_node_t), 8);
    uint64_t r = seed;
    calltree_t *a = calltree_new(0), *b = calltree_new(0);
    uint32_t hints[64];
    memset(hints, 0xff, sizeof hints);
    for (int i = 0; i < 5000; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t parent = (uint32_t)((r >> 33) % calltree_node_count(a)), ca, cb;
        unsigned k = (unsigned)(r >> 20) % 64;
        uint64_t sym = 0x5000 + k * 0x10001ULL;
        if ((r >> 8) % 4 == 0) hints[k] = (uint32_t)(r >> 40) % 80; /* a wrong one, maybe */
        if ((r >> 8) % 16 == 1) hints[k] = CALLTREE_NONE;
        CHECK_EQ_INT(calltree_child(a, parent, sym, &ca), ERR_OK);
        CHECK_EQ_INT(calltree_child_hint(b, parent, sym, &hints[k], &cb), ERR_OK);
        CHECK_EQ_INT(ca, cb);
        CHECK(hints[k] < 65 && calltree_syms(b)[hints[k]] == sym);
        CHECK(calltree_syms(b)[calltree_nodes(b)[cb].sym_index] == sym);
    }
    CHECK(calltree_same_shape(a, b));
    CHECK(calltree_syms(b)[0] == SYM_ROOT && calltree_nodes(b)[0].sym_index == 0);
    /* a shrunk tree finds its symbols again, a cleared one forgets them */
    calltree_shrink(b);
    uint32_t c, h = CALLTREE_NONE;
    uint64_t last = calltree_sym(b, (uint32_t)calltree_node_count(b) - 1);
    uint32_t up = calltree_parent(b, (uint32_t)calltree_node_count(b) - 1);
    CHECK_EQ_INT(calltree_child_hint(b, up, last, &h, &c), ERR_OK);
    CHECK(c == calltree_node_count(a) - 1 && calltree_node_count(b) == calltree_node_count(a));
    CHECK(calltree_syms(b)[h] == last);
    CHECK_EQ_INT(calltree_clear(b), ERR_OK);
    CHECK_EQ_INT(calltree_child_hint(b, 0, 0x7777, &h, &c), ERR_OK);
    CHECK(c == 1 && h == 1 && calltree_syms(b)[1] == 0x7777);
    calltree_free(a);
    calltree_free(b);
}

static uint64_t unnamed_sym(const void *ctx, uint32_t si)
{
    return ((const uint64_t *)ctx)[si];
}

/* An unnamed tree (calltree_new_unnamed) grown by the caller's symbol
 * indices, some of which it never names, then named: the nodes, symbol
 * list (first use first) and encoding of the tree calltree_child makes
 * from the same symbols; the scratch comes back zero; it then grows and
 * merges as any tree. */
static void test_unnamed_tree(uint64_t seed)
{
    uint64_t r = seed, names[201];
    for (uint32_t k = 0; k < 201; k++)
        names[k] = 0x9000 + k * 0x10003ULL;
    calltree_t *a = calltree_new(0), *b = calltree_new_unnamed(0);
    uint32_t nodes[600];
    int64_t vals[600];
    size_t nv = 0;
    for (int i = 0; i < 3000; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t parent = (uint32_t)((r >> 33) % calltree_node_count(a)), ca, cb;
        uint32_t k = 1 + (uint32_t)((r >> 20) % 100) * 2; /* odd indices only */
        CHECK_EQ_INT(calltree_child(a, parent, names[k], &ca), ERR_OK);
        CHECK_EQ_INT(calltree_child_index(b, parent, k, &cb), ERR_OK);
        CHECK_EQ_INT(ca, cb);
        CHECK_EQ_INT(calltree_nodes(b)[cb].sym_index, k);
        if (i % 5 == 0 && nv < 600) {
            nodes[nv] = ca;
            vals[nv++] = (int64_t)(r >> 50) - 100;
        }
    }
    CHECK_EQ_INT(calltree_add_selves(a, nodes, vals, nv), ERR_OK);
    CHECK_EQ_INT(calltree_add_selves(b, nodes, vals, nv), ERR_OK);
    calltree_shrink(b);
    uint32_t mark[201] = {0};
    CHECK_EQ_INT(calltree_name_syms(b, unnamed_sym, names, mark), ERR_OK);
    int zero = 1;
    for (size_t k = 0; k < 201; k++)
        zero &= mark[k] == 0;
    CHECK(zero);
    CHECK(calltree_same_shape(a, b));
    CHECK_EQ_INT(calltree_sym_count(b), calltree_sym_count(a));
    CHECK(memcmp(calltree_syms(a), calltree_syms(b), calltree_sym_count(a) * 8) == 0);
    CHECK(same_encoding(a, b));
    CHECK(tree_consistent(b));
    /* an ordinary tree now: it finds and adds nodes by symbol, and merges */
    uint32_t c;
    uint64_t last = calltree_sym(b, (uint32_t)calltree_node_count(b) - 1);
    CHECK_EQ_INT(
        calltree_child(b, calltree_parent(b, (uint32_t)calltree_node_count(b) - 1), last, &c),
        ERR_OK);
    CHECK_EQ_INT(c, calltree_node_count(b) - 1);
    uint64_t st[3] = {names[2], names[4], names[1]};
    CHECK_EQ_INT(calltree_add_stack(a, st, 3, 7), ERR_OK);
    CHECK_EQ_INT(calltree_add_stack(b, st, 3, 7), ERR_OK);
    CHECK(same_encoding(a, b));
    calltree_t *m = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(m, b), ERR_OK);
    CHECK(same_encoding(m, a));
    calltree_free(m);
    calltree_free(a);
    calltree_free(b);
}

/* A valueless tree (calltree_new_valueless) grows the nodes a tree with
 * values grows, holding no values (8 bytes a node less); it reads as
 * zeros, and once given values (calltree_add_selves) it is the tree the
 * same stacks and values make. */
static void test_valueless_tree(void)
{
    calltree_t *v = calltree_new_valueless(0), *a = calltree_new(0);
    enum { N = 3000 };
    uint32_t *nodes = malloc(N * sizeof *nodes);
    int64_t *vals = malloc(N * sizeof *vals), sum = 0;
    uint64_t st[12];
    for (int i = 0; i < N; i++) {
        size_t depth = 1 + check_rng() % 11;
        for (size_t d = 0; d < depth; d++)
            st[d] = 2 + check_rng() % 40;
        vals[i] = (int64_t)(check_rng() % 1000) - 100;
        uint32_t node = 0;
        for (size_t d = 0; d < depth; d++)
            CHECK_EQ_INT(calltree_child(v, node, st[d], &node), ERR_OK);
        nodes[i] = node;
        CHECK_EQ_INT(calltree_add_stack(a, st, depth, vals[i]), ERR_OK);
        sum += vals[i];
    }
    size_t n = calltree_node_count(v);
    CHECK_EQ_INT(n, calltree_node_count(a));
    CHECK(calltree_same_shape(v, a));
    /* no values while it grew: the value array's room less */
    CHECK(calltree_mem_bytes(v) + n * sizeof(int64_t) <= calltree_mem_bytes(a));
    CHECK_EQ_INT(calltree_root_total(v), 0);
    for (uint32_t i = 0; i < n; i += 97) {
        CHECK_EQ_INT(calltree_self(v, i), 0);
        CHECK_EQ_INT(calltree_total(v, i), 0);
    }
    /* encoded as the zero tree of its nodes, without changing what it holds */
    calltree_t *zero = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(zero, v), ERR_OK);
    CHECK(same_encoding(v, zero));
    calltree_free(zero);
    CHECK_EQ_INT(calltree_add_selves(v, nodes, vals, N), ERR_OK);
    CHECK(same_encoding(v, a));
    CHECK_EQ_INT(calltree_root_total(v), sum);
    CHECK(tree_consistent(v));
    /* it grows and takes values as any tree once it holds them */
    uint64_t more[3] = {99, 98, 97};
    CHECK_EQ_INT(calltree_add_stack(v, more, 3, 5), ERR_OK);
    CHECK_EQ_INT(calltree_add_stack(a, more, 3, 5), ERR_OK);
    CHECK(same_encoding(v, a));
    /* a valueless tree given a shape, or scaled, as the trees of a push */
    calltree_t *w = calltree_new_valueless(0), *x = calltree_new_valueless(0);
    CHECK_EQ_INT(calltree_adopt_scaled(w, a, 2), ERR_OK);
    CHECK_EQ_INT(calltree_root_total(w), 2 * (sum + 5));
    int64_t *selves = calloc(calltree_node_count(a), sizeof *selves);
    selves[1] = 7;
    CHECK_EQ_INT(calltree_adopt_shape(x, a, selves, calltree_node_count(a)), ERR_OK);
    CHECK_EQ_INT(calltree_root_total(x), 7);
    CHECK(tree_consistent(x));
    calltree_free(w);
    calltree_free(x);
    calltree_free(v);
    calltree_free(a);
    free(nodes);
    free(vals);
}

/* An absent encoding (a protobuf bytes field that was not set: NULL, 0) is
 * refused as corrupt by every reader, without arithmetic on the NULL
 * pointer (UBSan; a stream part without a tree reached it, found by
 * fuzz_stream_parts). */
static void test_absent_encoding(void)
{
    calltree_t *t = calltree_new(0);
    CHECK_EQ_INT(calltree_decode_merge(t, NULL, 0), ERR_CORRUPT);
    CHECK_EQ_INT(calltree_root_total(t), 0);
    calltree_records_t r;
    CHECK_EQ_INT(calltree_decode_records(NULL, 0, 0, &r), ERR_CORRUPT);
    const uint8_t *syms;
    size_t nsyms, nnodes;
    CHECK_EQ_INT(calltree_encoded_header(NULL, 0, &syms, &nsyms, &nnodes), ERR_CORRUPT);
    calltree_free(t);
}

/* A tree decoded whole into an empty one (a replica's write, a repair's)
 * is made at its size at once: it holds no more than reserving for its
 * records would make, where growing node by node left up to half again of
 * slack after a dozen rehashes. Merged into a tree that holds nodes, the
 * encoding still adds up. */
static void test_decode_sized_at_once(void)
{
    calltree_t *src = calltree_new(0);
    for (uint64_t i = 0; i < 5000; i++) {
        uint64_t st[3] = {1000 + i % 7, 2000 + i % 300, 3000 + i};
        CHECK_EQ_INT(calltree_add_stack(src, st, 3, (int64_t)(i + 1)), 0);
    }
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(src, &b), 0);
    const uint8_t *syms;
    size_t nsyms, nnodes;
    CHECK_EQ_INT(calltree_encoded_header(b.data, b.len, &syms, &nsyms, &nnodes), 0);
    calltree_t *empty = calltree_new(0), *dst = calltree_new(0);
    size_t sized = calltree_mem_bytes(empty) + calltree_reserve_decode_bytes(empty, nnodes, nsyms);
    CHECK_EQ_INT(calltree_decode_merge(dst, b.data, b.len), 0);
    CHECK_EQ_INT(calltree_node_count(dst), calltree_node_count(src));
    CHECK_EQ_INT(calltree_root_total(dst), calltree_root_total(src));
    if (calltree_mem_bytes(dst) > sized)
        fprintf(stderr, "decoded %zu bytes, sized %zu\n", calltree_mem_bytes(dst), sized);
    CHECK(calltree_mem_bytes(dst) <= sized);
    CHECK_EQ_INT(calltree_decode_merge(dst, b.data, b.len), 0); /* into a tree with nodes */
    CHECK_EQ_INT(calltree_node_count(dst), calltree_node_count(src));
    CHECK_EQ_INT(calltree_root_total(dst), 2 * calltree_root_total(src));
    buf_free(&b);
    calltree_free(src);
    calltree_free(empty);
    calltree_free(dst);
}

/* Whether a and b hold the same nodes in the same order: symbol, parent
 * and self value of each. */
static int same_nodes(const calltree_t *a, const calltree_t *b)
{
    if (calltree_node_count(a) != calltree_node_count(b)) return 0;
    if (calltree_root_total(a) != calltree_root_total(b)) return 0;
    for (uint32_t i = 0; i < calltree_node_count(a); i++)
        if (calltree_sym(a, i) != calltree_sym(b, i) ||
            calltree_self(a, i) != calltree_self(b, i) ||
            calltree_parent(a, i) != calltree_parent(b, i))
            return 0;
    return 1;
}

/* calltree_decode_new lays an encoding out without looking a child up:
 * the tree calltree_decode_merge makes of it in an empty one, node for
 * node, links and totals exact, in less memory (no tables), and it still
 * grows as that one does. Refused as decode_merge refuses (every
 * truncation, past max_nodes), with no tree. */
static void test_decode_new(uint64_t seed)
{
    check_rng_state = seed;
    for (int round = 0; round < 50; round++) {
        calltree_t *src = calltree_new(0), *m = calltree_new(0), *f = NULL;
        int64_t sum = 0;
        random_tree(src, 1 + (int)(check_rng() % 300), &sum);
        buf_t e;
        buf_init(&e, BUF_UNLIMITED);
        CHECK_EQ_INT(calltree_encode(src, &e), ERR_OK);
        CHECK_EQ_INT(calltree_decode_merge(m, e.data, e.len), ERR_OK);
        CHECK_EQ_INT(calltree_decode_new(e.data, e.len, 0, &f), ERR_OK);
        calltree_shrink(m); /* as a replica's decoded tree was held */
        CHECK(f != NULL && calltree_mem_bytes(f) <= calltree_mem_bytes(m));
        CHECK(same_nodes(f, m));
        CHECK(tree_consistent(f) && links_exact(f));
        CHECK(same_encoding(f, m));
        size_t n = calltree_node_count(f);
        calltree_t *g = NULL;
        if (n > 1) { /* a limit of 0 is none */
            CHECK_EQ_INT(calltree_decode_new(e.data, e.len, n - 1, &g), ERR_LIMIT);
            CHECK(g == NULL);
        }
        CHECK_EQ_INT(calltree_decode_new(e.data, e.len, n, &g), ERR_OK);
        calltree_free(g);
        uint64_t st[3] = {2, 3, 99}; /* grows: tables rebuilt from the nodes */
        CHECK_EQ_INT(calltree_add_stack(f, st, 3, 5), ERR_OK);
        CHECK_EQ_INT(calltree_add_stack(m, st, 3, 5), ERR_OK);
        CHECK(same_nodes(f, m) && tree_consistent(f));
        for (size_t cut = 0; round == 0 && cut < e.len; cut++) {
            CHECK_EQ_INT(calltree_decode_new(e.data, cut, 0, &g), ERR_CORRUPT);
            CHECK(g == NULL);
        }
        buf_free(&e);
        calltree_free(src);
        calltree_free(m);
        calltree_free(f);
    }
    calltree_t *g = (calltree_t *)1;
    CHECK_EQ_INT(calltree_decode_new(NULL, 0, 0, &g), ERR_CORRUPT);
    CHECK(g == NULL);
}

/* An encoding that names one child twice (never calltree_encode's): the
 * new tree keeps both nodes, the merge adds them into one; their values
 * add up to the same totals. */
static void test_decode_new_repeated_child(void)
{
    /* version, 1 symbol (7), root self 0, 2 records: depth 1, symbol 0,
     * self 3 (zigzag 6), twice */
    uint8_t enc[64], *p = enc;
    *p++ = CALLTREE_VERSION;
    *p++ = 1;
    memset(p, 0, 8); /* the dictionary entry, little-endian */
    *p = 7;
    p += 8;
    *p++ = 0;
    *p++ = 2;
    for (int k = 0; k < 2; k++) {
        *p++ = 1;
        *p++ = 0;
        *p++ = 6;
    }
    calltree_t *m = calltree_new(0), *f = NULL;
    CHECK_EQ_INT(calltree_decode_merge(m, enc, (size_t)(p - enc)), ERR_OK);
    CHECK_EQ_INT(calltree_decode_new(enc, (size_t)(p - enc), 0, &f), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(m), 2);
    CHECK_EQ_INT(calltree_node_count(f), 3);
    CHECK_EQ_INT(calltree_root_total(f), 6);
    CHECK_EQ_INT(calltree_total(m, 1), 6);
    calltree_t *u = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(u, f), ERR_OK);
    CHECK(same_nodes(u, m));
    calltree_free(u);
    calltree_free(m);
    calltree_free(f);
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL) | 1;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    test_basic();
    test_roundtrip_and_merge(seed);
    test_limits_and_corruption(seed);
    test_symbols();
    test_deferred_and_shape();
    test_totals_follow_changes();
    test_shared_shape();
    test_links_made_when_read(seed);
    test_clear_without_memory();
    test_totals_without_memory();
    test_links_without_memory(seed);
    test_scaled_tree();
    test_child_hint(seed);
    test_valueless_tree();
    test_unnamed_tree(seed);
    test_absent_encoding();
    test_decode_sized_at_once();
    test_decode_new(seed);
    test_decode_new_repeated_child();
    return check_exit();
}
