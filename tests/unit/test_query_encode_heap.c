/* test_query_encode_heap.c — what an encoder allocates while it writes an
 * answer is what the answer's buffer charges.
 *
 * A render's answer is charged to query-memory-bytes as its buffer grows
 * (buf_charge); the encoders' own working memory (the name-sorted tree,
 * flamebearer levels and name tables, the /api/top function table, the
 * SVG frames and speedscope weights written before they are copied in, the
 * folded path, pprof's tables and the packed profile it compresses) is held
 * beside it (buf_beside_take) and counted with it.
 * Memory allocated and not counted is memory concurrent queries can hold
 * beyond the budget. As test_query_gather_heap does for a gather, malloc,
 * calloc, realloc and free are replaced (test_heap_count.h), and the
 * highest heap use of each encoder over a tree of 2 x STACKS distinct
 * stacks is compared with the most its answer's buffer asked for. The
 * tree's own arrays read by every encoder (totals, child links) are made
 * before: the gather counts them with the tree. Skipped under
 * AddressSanitizer, which replaces the allocator itself.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/calltree.h"
#include "common/symtab.h"
#include "query/query.h"

#include "test_folded_stack.h"
#include "test_heap_count.h"

#define STACKS 40000
#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

static void add_stack(calltree_t *t, symtab_t *st, const char *folded)
{
    folded_stack_add(t, st, folded, (int64_t)(strlen(folded) % 7) + 1);
}

enum { F_JSON, F_FOLDED, F_SVG, F_SPEEDSCOPE, F_TOP, F_PPROF, F_COUNT };
static const char *const names[F_COUNT] = {"json", "folded", "svg", "speedscope", "top", "pprof"};

static int encode(int f, const calltree_t *t, const symtab_t *syms, buf_t *out)
{
    query_top_opts_t o = {QUERY_TOP_DEFAULT_LIMIT, 0, 3600, NULL};
    switch (f) {
    case F_JSON:
        return query_encode_flamebearer(t, syms, CPU, "go", NULL, out);
    case F_FOLDED:
        return query_encode_folded(t, syms, out);
    case F_SVG:
        return query_encode_svg(t, syms, CPU, "title", NULL, out);
    case F_SPEEDSCOPE:
        return query_encode_speedscope(t, syms, CPU, "name", out);
    case F_TOP:
        return query_encode_top(t, syms, CPU, &o, out);
    default:
        return query_encode_pprof(t, syms, CPU, 0, 3600000000000LL, out);
    }
}

/* Encodes t as f on a buffer charged to a budget of limit bytes (0: none):
 * the most it asked for, the heap's most, the status. */
static int run(int f, const calltree_t *t, const symtab_t *syms, size_t limit, size_t *charged,
               long *most)
{
    held_t h = {0, 0, limit};
    buf_t out;
    buf_init(&out, BUF_UNLIMITED);
    buf_charge(&out, held_fn, &h);
    heap_start();
    int rc = encode(f, t, syms, &out);
    buf_free(&out);
    *most = heap_stop();
    CHECK_EQ_INT(out.beside, 0); /* everything held beside it given back */
    *charged = h.most;
    return rc;
}

static void check_encoder(int f, const calltree_t *t, const symtab_t *syms)
{
    size_t charged;
    long most;
    int rc = run(f, t, syms, 0, &charged, &most);
    CHECK_EQ_INT(rc, 0);
    fprintf(stderr, "%s of %zu nodes: charged peak %zu B, heap peak %ld B\n", names[f],
            calltree_node_count(t), charged, most);
    /* what it allocated and did not count: allocator rounding, a sort's
     * scratch, the few small tables measured as they grow */
    if (HEAP_COUNTED) CHECK((size_t)most <= charged + charged / 64 + (64u << 10));
    /* and what it counts is about what it takes, not a multiple */
    if (HEAP_COUNTED) CHECK(charged <= (size_t)most + (size_t)most / 4);
    /* a budget below that: refused as it grows, nothing left held */
    rc = run(f, t, syms, charged / 2, &charged, &most);
    CHECK_EQ_INT(rc, ERR_UNAVAILABLE);
}

/* A small profile's pprof answer is mostly its compressor: what zlib
 * allocates (its state, window, hash chains, pending output), the packed
 * bytes gathered for it and its output are charged as they are made, so
 * the heap's peak is the charged one but the allocator's rounding of a
 * few blocks (a fixed estimate of the compressor missed it by 10 %). */
static void small_pprof(symtab_t *syms)
{
    calltree_t *t = calltree_new(0);
    add_stack(t, syms, "main;serve;handle");
    add_stack(t, syms, "main;serve;parse");
    CHECK(calltree_totals(t) != NULL);
    CHECK(calltree_links(t) != NULL);
    size_t charged;
    long most;
    CHECK_EQ_INT(run(F_PPROF, t, syms, 0, &charged, &most), 0);
    fprintf(stderr, "pprof of %zu nodes: charged peak %zu B, heap peak %ld B\n",
            calltree_node_count(t), charged, most);
    if (HEAP_COUNTED) CHECK((size_t)most <= charged + charged / 64);
    if (HEAP_COUNTED) CHECK(charged <= (size_t)most + (size_t)most / 8);
    CHECK_EQ_INT(run(F_PPROF, t, syms, charged / 2, &charged, &most), ERR_UNAVAILABLE);
    calltree_free(t);
}

int main(void)
{
    if (!HEAP_COUNTED) fprintf(stderr, "SKIP heap counts: the allocator is AddressSanitizer's\n");
    calltree_t *t = calltree_new(0);
    symtab_t *syms = symtab_new();
    char stack[96];
    for (int i = 0; i < 2 * STACKS; i++) {
        snprintf(stack, sizeof stack, "main;mod%d;fn%d;leaf%d", i % 50, i, i);
        add_stack(t, syms, stack);
    }
    /* the tree's own arrays, which the gather counts with it */
    CHECK(calltree_totals(t) != NULL);
    CHECK(calltree_links(t) != NULL);
    for (int f = 0; f < F_COUNT; f++)
        check_encoder(f, t, syms);
    calltree_free(t);
    /* many nodes over few functions (11 here; a real CPU profile: 425,000
     * nodes of 22,000): /api/top's function table is charged as it grows, not for a
     * function per node (that bound refused such a profile's table) */
    t = calltree_new(0);
    for (int i = 0; i < 2 * STACKS; i++) {
        snprintf(stack, sizeof stack, "main;f%d;f%d;f%d;f%d;f%d", i / 10000 % 10, i / 1000 % 10,
                 i / 100 % 10, i / 10 % 10, i % 10);
        add_stack(t, syms, stack);
    }
    CHECK(calltree_totals(t) != NULL);
    CHECK(calltree_links(t) != NULL);
    check_encoder(F_TOP, t, syms);
    calltree_free(t);
    small_pprof(syms);
    symtab_free(syms);
    return check_exit();
}
