/* test_query_report_heap.c — what the regression report (GET /api/diff,
 * query_report_run) allocates while it reads its buckets is what it
 * charges to query-memory-bytes while it runs.
 *
 * Each bucket's body is its functions (self, total and name each: the
 * render summed them, query_encode_functions); the table decoded from it
 * is charged before it is made, and so are the symbols it adds to the
 * report's table and the map from symbol to row: a report over buckets of
 * WIDE functions with long names, whose symbols and map outweigh the
 * tables, shows them.
 * malloc, calloc, realloc and free are replaced (test_heap_count.h) to
 * follow the bytes in use, and the highest heap use of a report is
 * compared with the peak it charged (within peak/64 and the allocator's
 * rounding); a budget below that peak refuses it with ERR_UNAVAILABLE.
 * Skipped under AddressSanitizer, which replaces the allocator itself.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/calltree.h"
#include "common/symtab.h"
#include "query/query.h"

#include "test_budget.h"
#include "test_heap_count.h"
#include "test_share_body.h"

#define FNS 50
#define WIDE 40000 /* functions of a wide bucket */
#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

/* A bucket's body as its render answers it (merged_functions): every
 * stack main;fnA;fnB;fnC of FNS functions, FNS^3 leaves: a tree of many
 * nodes and few functions, answered as those few. */
static void bucket_body(query_result_t *out)
{
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    CHECK(t != NULL && st != NULL);
    uint64_t fn[FNS], stack[4];
    char name[32];
    CHECK_EQ_INT(symtab_intern(st, "main", 4, "m.c", 3, &stack[0]), 0);
    for (int i = 0; i < FNS; i++) {
        int n = snprintf(name, sizeof name, "fn%d", i);
        CHECK_EQ_INT(symtab_intern(st, name, (size_t)n, "f.c", 3, &fn[i]), 0);
    }
    for (int i = 0; i < FNS * FNS * FNS; i++) {
        stack[1] = fn[i % FNS];
        stack[2] = fn[i / FNS % FNS];
        stack[3] = fn[i / FNS / FNS];
        CHECK_EQ_INT(calltree_add_stack(t, stack, 4, 1 + i % 7), 0);
    }
    share_body_of(t, st, out);
    calltree_free(t);
    symtab_free(st);
}

/* A bucket whose every stack main;pkg/fnI, of WIDE functions with long
 * names (as C++ and Java ones are), is a leaf: few nodes a symbol, so the
 * symbols and the rows outweigh the tree. */
static void wide_body(query_result_t *out)
{
    calltree_t *t = calltree_new(0);
    symtab_t *st = symtab_new();
    CHECK(t != NULL && st != NULL);
    uint64_t stack[2];
    char name[128];
    CHECK_EQ_INT(symtab_intern(st, "main", 4, "m.c", 3, &stack[0]), 0);
    for (int i = 0; i < WIDE; i++) {
        int n = snprintf(name, sizeof name, "org/example/service/handlers/Handler%d.process", i);
        CHECK_EQ_INT(symtab_intern(st, name, (size_t)n, "Handler.java", 12, &stack[1]), 0);
        CHECK_EQ_INT(calltree_add_stack(t, stack, 2, 1 + i % 5), 0);
    }
    share_body_of(t, st, out);
    calltree_free(t);
    symtab_free(st);
}

/* The report over the same bucket body on both sides, on a budget of
 * limit bytes (0: none): its status, *most the peak it charged; while it
 * runs the heap counted from heap_start is watched against the budget
 * (heap_gap_most: the most allocated before it was charged). */
static int report(const query_result_t *bucket, size_t limit, size_t *most, errmsg_t *em)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_diff_params_t d = {0};
    d.left = (query_params_t){.query = CPU "{}", .from = "1700000000", .until = "1700000010"};
    d.right = (query_params_t){.query = CPU "{}", .from = "1700000010", .until = "1700000020"};
    query_report_plan_t p;
    CHECK_EQ_INT(query_report_plan(&d, "1", NULL, &lim, 1700004000000LL, &p, em), 0);
    const uint8_t *bodies[2][QUERY_REPORT_MAX_BUCKETS];
    size_t lens[2][QUERY_REPORT_MAX_BUCKETS];
    for (int s = 0; s < 2; s++)
        for (size_t b = 0; b < p.nbuckets[s]; b++) {
            bodies[s][b] = bucket->body.data;
            lens[s][b] = bucket->body.len;
        }
    const uint8_t *const *body[2] = {bodies[0], bodies[1]};
    const size_t *len[2] = {lens[0], lens[1]};
    budget_t b = {.limit = limit};
    query_report_charge_t charge = {budget_take, budget_give, &b};
    query_result_t out;
    query_result_init(&out);
    heap_watch(&b.used);
    int rc = query_report_run(&p, &lim, body, len, NULL, NULL, &charge, NULL, NULL, NULL, &out, em);
    heap_watch(NULL);
    CHECK_EQ_INT(b.used, 0); /* everything given back */
    query_result_free(&out);
    *most = b.most;
    return rc;
}

/* The report over buckets of one body: its charged peak within peak/64
 * (and the allocator's rounding) of the heap's, and not a multiple of it;
 * a budget below it refused. */
static void check_body(const char *what, const query_result_t *bucket)
{
    size_t peak;
    errmsg_t em = {{0}};
    heap_start();
    int rc = report(bucket, 0, &peak, &em);
    long most = heap_stop(), gap = heap_gap_most;
    if (rc != 0) fprintf(stderr, "report: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    fprintf(stderr, "report over %s: charged peak %zu B, heap peak %ld B, most ahead %ld B\n", what,
            peak, most, gap);
    CHECK(peak > 0);
    /* at no moment did the heap run ahead of the charge by more than the
     * allocator's rounding and the few small blocks made before they are
     * counted (a bucket's tree grows while it is decoded: charged first) */
    if (HEAP_COUNTED) CHECK(gap <= (64 << 10));
    /* what it allocated and did not count: allocator rounding (the trees,
     * their decoding, the symbols, the map, the function tables and their
     * working memory, the report and the answer count before they are made) */
    if (HEAP_COUNTED) CHECK((size_t)most <= peak + peak / 64 + (64u << 10));
    /* and what it counts is about what it takes, not a multiple (a decoded
     * tree is charged as it will be read, its totals included, beside the
     * table's working memory, freed before the totals are made; what the
     * symbols may grow by is charged before and given back after) */
    if (HEAP_COUNTED) CHECK(peak <= (size_t)most + (size_t)most / 4);
    /* a budget below that peak: refused, nothing kept */
    size_t ignored;
    em = (errmsg_t){{0}};
    rc = report(bucket, peak / 2, &ignored, &em);
    CHECK_EQ_INT(rc, ERR_UNAVAILABLE);
    CHECK(strstr(em.text, "query-memory-bytes") != NULL);
}

int main(void)
{
    if (!HEAP_COUNTED) fprintf(stderr, "SKIP heap counts: the allocator is AddressSanitizer's\n");
    query_result_t bucket;
    bucket_body(&bucket);
    check_body("buckets of 50^3 stacks", &bucket);
    query_result_free(&bucket);
    wide_body(&bucket);
    check_body("buckets of 40000 long-named functions", &bucket);
    query_result_free(&bucket);
    return check_exit();
}
