/* test_storage_merger_needed.c — the merger creates exactly the stack nodes a
 * series' blocks need. A series whose blocks name only low node ids, in a
 * node table another series of the same token filled with thousands of
 * nodes, merges into a tree of its own few nodes, with room reserved for
 * about that many. Before, the marks past the blocks' largest id were left
 * as malloc gave them: with a reused (dirty) heap block the merge reserved
 * and created nodes for garbage (tens of MB per query, empty nodes in the
 * answer). The heap is dirtied on purpose before each merge. */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"

#define TOKEN 0x1234567890abcdefull

static void write_series(fixture_t *f, labels_t *l, symtab_t *st, int nstacks, uint64_t id)
{
    calltree_t *t = calltree_new(0);
    char stack[64];
    for (int i = 0; i < nstacks; i++) {
        snprintf(stack, sizeof stack, nstacks == 1 ? "main;only" : "main;f%d;g%d", i, i);
        fx_add(t, st, stack, 1);
    }
    storage_series_write_t sw = {.labels = l, .series_id = labels_hash(l), .tree = t};
    sw.token = TOKEN; /* both series share one stack-node table */
    storage_profile_write_t p = {
        .tenant = "t", .time_ns = (f->now - 5) * NS, .series = &sw, .nseries = 1, .symbols = st};
    fx_id(p.profile_id, id);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(storage_write_profile(f->s, &p, NULL, &em), 0);
    calltree_free(t);
}

/* Leaves freed heap blocks full of non-zero bytes, as a busy node has. */
static void dirty_heap(void)
{
    for (size_t n = 1024; n <= 256 * 1024; n *= 2) {
        unsigned char *p = malloc(n);
        memset(p, 0xab, n);
        free(p);
    }
}

int main(void)
{
    fixture_t f;
    if (fx_init(&f) != 0) return 1;
    symtab_t *st = symtab_new();
    labels_t *small = fx_labels("svc", "small"), *big = fx_labels("svc", "big");
    write_series(&f, small, st, 1, 1);   /* node ids 1, 2 */
    write_series(&f, big, st, 20000, 2); /* ids up to ~40000 */
    for (int round = 0; round < 3; round++) {
        storage_merger_t *m = NULL;
        CHECK_EQ_INT(storage_merger_new(f.s, "t", &m), 0);
        CHECK_EQ_INT(storage_merger_add(m, TOKEN, labels_hash(small), 0, f.now - 3600, f.now + 60),
                     0);
        calltree_t *t = calltree_new(0);
        errmsg_t em = {{0}};
        dirty_heap();
        CHECK_EQ_INT(storage_merger_finish(m, t, &em), 0);
        CHECK_EQ_INT(calltree_node_count(t), 3); /* root, main, only */
        CHECK(calltree_mem_bytes(t) < 64 * 1024);
        CHECK_EQ_INT(calltree_total(t, 0), 1);
        calltree_free(t);
        storage_merger_free(m);
    }
    labels_free(small);
    labels_free(big);
    symtab_free(st);
    fx_done(&f);
    return check_exit();
}
