/* test_query_render_heap.c — what a render's merge allocates is what it
 * charges to query-memory-bytes.
 *
 * A render's merge charges its working memory to the node's budget (the
 * merger's dense vectors, forests and scratch, and the maxNodes selection
 * built beside them); memory allocated and not counted is memory a query can
 * hold beyond the budget. As test_ingest_heap does for pushes, malloc,
 * calloc, realloc and free are replaced (forwarding to glibc's) to follow
 * the bytes in use, and the highest heap use of one render's partial
 * (query_partial_run, stored blocks of 40,000 distinct stacks, maxNodes
 * keeping them all) is compared with the peak it charged. The node table
 * and the blocks are read once before, as a node's caches (node-cache-bytes,
 * block-cache-bytes, budgets of their own) hold them. Skipped under
 * AddressSanitizer, which replaces the allocator itself.
 */
#include "test_storage_fixture.h" /* first: it sets _GNU_SOURCE */

#include "check.h"
#include "common/alloc.h"
#include "query/query.h"

#include "test_heap_count.h"

#define STACKS 40000
#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

static void write_series(fixture_t *f)
{
    labels_t *l = fx_labels("heap", NULL);
    symtab_t *st = symtab_new();
    calltree_t *t = calltree_new(0);
    char stack[96];
    for (int i = 0; i < STACKS; i++) {
        snprintf(stack, sizeof stack, "main;mod%d;fn%d;leaf%d", i % 50, i, i);
        fx_add(t, st, stack, 1);
    }
    CHECK_EQ_INT(fx_write(f->s, "t", l, t, st, 1, (f->now - 5) * NS, NULL), 0);
    calltree_free(t);
    symtab_free(st);
    labels_free(l);
}

/* One render partial of the series, kept nodes answered; its charged peak. */
static int render(fixture_t *f, size_t *charged_peak)
{
    int64_t w = storage_resolutions[0];
    query_partial_args_t a = {.kind = QUERY_KIND_RENDER, .selector = CPU "{}"};
    a.from_s = (f->now - 3600) / w * w;
    a.until_s = (f->now + 60 + w - 1) / w * w;
    a.final_max_nodes = 4 * STACKS;
    a.kept = 1;
    query_limits_t lim;
    query_limits_default(&lim);
    alloc_budget_t b;
    alloc_budget_init(&b, 0);
    alloc_charge_t c;
    alloc_charge_init(&c, &b);
    a.charge = &c;
    query_partial_t p;
    errmsg_t em = {{0}};
    int rc = query_partial_run(f->s, "t", &a, &lim, &p, &em);
    if (rc != 0) fprintf(stderr, "render: %s\n", em.text);
    if (rc == 0) CHECK(p.kept != NULL);
    *charged_peak = c.peak;
    alloc_charge_done(&c);
    if (rc == 0) query_partial_free(&p);
    return rc;
}

static void test_render_heap(void)
{
    fixture_t f;
    CHECK_EQ_INT(fx_init(&f), 0);
    write_series(&f);
    size_t peak;
    CHECK_EQ_INT(render(&f, &peak), 0); /* the caches fill */
    heap_start();
    int rc = render(&f, &peak);
    long most = heap_stop();
    CHECK_EQ_INT(rc, 0);
    fprintf(stderr, "render of %d stacks: charged peak %zu B, heap peak %ld B\n", STACKS, peak,
            most);
    CHECK(peak > 0);
    /* what the render allocated and did not count: its selector, series
     * list, block reads and allocator rounding */
    if (HEAP_COUNTED) CHECK((size_t)most <= peak + peak / 32 + (128u << 10));
    /* and what it counts is about what it takes, not a multiple */
    if (HEAP_COUNTED) CHECK(peak <= (size_t)most + (size_t)most / 4);
    fx_done(&f);
}

int main(void)
{
    if (!HEAP_COUNTED) fprintf(stderr, "SKIP heap counts: the allocator is AddressSanitizer's\n");
    test_render_heap();
    return check_exit();
}
