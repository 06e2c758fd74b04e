/* test_common_calltree_wide.c — the call tree's wide edge slots.
 *
 * An edge table that may hold 2^24 nodes or more has 8-byte slots instead
 * of 4-byte ones; trees that large do not fit a unit test, so this one
 * compiles common/calltree.c itself with the switch at 64 nodes and checks
 * that trees on both sides of it, and crossing it as they grow, find every
 * child, copy, shrink and grow again alike. */
#define CT_NARROW_NODES 64u
#include "common/calltree.c"

#include <time.h>

#include "check.h"

/* Every node is found again as the child of its parent (no node added). */
static void check_tree(calltree_t *t)
{
    size_t n = calltree_node_count(t);
    for (uint32_t i = 1; i < n; i++) {
        uint32_t got = 0;
        CHECK_EQ_INT(calltree_child(t, calltree_parent(t, i), calltree_sym(t, i), &got), ERR_OK);
        CHECK_EQ_INT(got, i);
    }
    CHECK_EQ_INT(calltree_node_count(t), n);
}

static void random_stacks(calltree_t *t, calltree_t *ref, int stacks)
{
    uint64_t st[10];
    for (int i = 0; i < stacks; i++) {
        size_t depth = 1 + check_rng() % 10;
        for (size_t d = 0; d < depth; d++)
            st[d] = 2 + check_rng() % 9;
        int64_t v = (int64_t)(check_rng() % 100);
        CHECK_EQ_INT(calltree_add_stack(t, st, depth, v), ERR_OK);
        if (ref != NULL) CHECK_EQ_INT(calltree_add_stack(ref, st, depth, v), ERR_OK);
    }
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL) | 1;
    fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    check_rng_state = seed;
    calltree_t *small = calltree_new_small(0), *big = calltree_new(0), *c = calltree_new(0);
    random_stacks(small, NULL, 3);
    CHECK(calltree_node_count(small) < 40 && small->sh->narrow);
    check_tree(small);
    random_stacks(big, NULL, 2000); /* crosses to wide slots as it grows */
    CHECK(calltree_node_count(big) > 200 && !big->sh->narrow);
    check_tree(big);
    /* a copy of a wide shape grows (its own copy of the slots) like it */
    CHECK_EQ_INT(calltree_copy_shape(c, big), ERR_OK);
    calltree_t *ref = calltree_new(0);
    CHECK_EQ_INT(calltree_merge(ref, big), ERR_OK);
    random_stacks(c, ref, 500);
    check_tree(c);
    CHECK(calltree_same_shape(c, ref));
    CHECK_EQ_INT(calltree_root_total(c), calltree_root_total(ref) - calltree_root_total(big));
    /* a shrunk wide tree (no edge table) finds its nodes again */
    calltree_shrink(big);
    CHECK(big->sh->nslots == 0);
    check_tree(big);
    CHECK(!big->sh->narrow);
    CHECK_EQ_INT(calltree_clear(big), ERR_OK);
    CHECK_EQ_INT(calltree_node_count(big), 1);
    random_stacks(big, NULL, 2);
    check_tree(big);
    calltree_free(small);
    calltree_free(big);
    calltree_free(c);
    calltree_free(ref);
    return check_exit();
}
