/* test_pathidx.c — the (parent, symbol) index of a caller's tree: every
 * node found by its pair after the index grew many times, a pair not in
 * the tree finds an empty slot, a cleared index finds nothing, and the
 * root (node 0) is never indexed. */
#include <stdlib.h>

#include "check.h"
#include "common/pathidx.h"

#define NODES 5000

static void test_grow_and_find(void)
{
    uint32_t *parent = malloc(NODES * sizeof *parent);
    uint64_t *sym = malloc(NODES * sizeof *sym);
    CHECK(parent != NULL && sym != NULL);
    pathidx_t x = {0};
    parent[0] = 0;
    sym[0] = 1;
    size_t count = 1;
    for (uint32_t n = 1; n < NODES; n++) { /* a tree whose pairs repeat symbols under parents */
        uint32_t p = (uint32_t)(check_rng() % count);
        uint64_t s = 100 + check_rng() % 50;
        CHECK_EQ_INT(pathidx_reserve(&x, parent, sym, count, count + 1, 16), 0);
        size_t i = pathidx_find(&x, parent, sym, p, s);
        if (x.slot[i] != 0) continue; /* the pair is a node already */
        parent[count] = p;
        sym[count] = s;
        x.slot[i] = (uint32_t)count++;
    }
    CHECK(x.nslot >= 2 * count && (x.nslot & (x.nslot - 1)) == 0);
    for (uint32_t n = 1; n < count; n++)
        CHECK_EQ_INT(x.slot[pathidx_find(&x, parent, sym, parent[n], sym[n])], n);
    CHECK_EQ_INT(x.slot[pathidx_find(&x, parent, sym, 0, 99)], 0); /* no such pair */
    CHECK(pathidx_bytes(&x) == x.nslot * sizeof *x.slot);
    pathidx_clear(&x);
    CHECK_EQ_INT(x.slot[pathidx_find(&x, parent, sym, parent[1], sym[1])], 0);
    pathidx_free(&x);
    CHECK(x.slot == NULL && x.nslot == 0);
    free(parent);
    free(sym);
}

int main(void)
{
    test_grow_and_find();
    return check_exit();
}
