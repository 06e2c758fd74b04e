/* test_query_gather_heap.c — what a coordinator's gather allocates while
 * it merges the shares' answers and finishes (selection, encoding) is what
 * it charges to query-memory-bytes while it runs.
 *
 * A render-diff's sides are renders answered as merged trees, and a render
 * truncated to maxNodes selects over its shares' forests: in both the
 * coordinator's gather grows far beyond the encoded answers it was sent.
 * Memory allocated and not counted is memory concurrent queries can hold
 * beyond the budget. As test_query_render_heap does for a share, malloc,
 * calloc, realloc and free are replaced (test_heap_count.h) to follow the
 * bytes in use, and the highest heap use of a gather taking two shares'
 * trees of STACKS distinct stacks each (half of them shared) and finishing
 * is compared with the peak it charged. A budget below that peak refuses
 * the query with ERR_UNAVAILABLE naming query-memory-bytes. Skipped under
 * AddressSanitizer, which replaces the allocator itself.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h"
#include "common/calltree.h"
#include "common/symtab.h"
#include "query/query.h"

#include "test_budget.h"
#include "test_folded_stack.h"
#include "test_heap_count.h"

#define STACKS 40000
#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

/* One share's answer: its encoded tree and its symbols. */
typedef struct share {
    buf_t tree;
    symtab_t *syms;
} share_t;

static void add_stack(calltree_t *t, symtab_t *st, const char *folded)
{
    folded_stack_add(t, st, folded, 1);
}

/* A share of stacks [from, to). */
static void share_range(share_t *s, int from, int to)
{
    calltree_t *t = calltree_new(0);
    s->syms = symtab_new();
    char stack[96];
    for (int i = from; i < to; i++) {
        snprintf(stack, sizeof stack, "main;mod%d;fn%d;leaf%d", i % 50, i, i);
        add_stack(t, s->syms, stack);
    }
    buf_init(&s->tree, BUF_UNLIMITED);
    CHECK_EQ_INT(calltree_encode(t, &s->tree), 0);
    calltree_free(t);
}

/* Share k: stacks [k * STACKS / 2, k * STACKS / 2 + STACKS). */
static void share_make(share_t *s, int k)
{
    share_range(s, k * STACKS / 2, k * STACKS / 2 + STACKS);
}

static void share_free(share_t *s)
{
    buf_free(&s->tree);
    symtab_free(s->syms);
}

/* Share s as the coordinator's own share hands it over when its gather
 * merges a tree (not forests): its merged tree and symbols, made before the
 * heap is counted (the share's owner counts them; the gather takes them). */
static void local_make(const share_t *s, query_partial_t *p)
{
    memset(p, 0, sizeof *p);
    p->kind = QUERY_KIND_RENDER;
    p->nseries = 1;
    p->tree = calltree_new(0);
    p->syms = symtab_new();
    CHECK(p->tree != NULL && p->syms != NULL);
    CHECK_EQ_INT(calltree_decode_merge(p->tree, s->tree.data, s->tree.len), 0);
    for (size_t i = 0; i < symtab_count(s->syms); i++) {
        uint64_t id = symtab_id_at(s->syms, i);
        const char *name, *file;
        CHECK(symtab_get(s->syms, id, &name, &file));
        CHECK_EQ_INT(symtab_put(p->syms, id, name, strlen(name), file, strlen(file)), 0);
    }
}

/* As a coordinator's merge job adds a remote answer (scatter_merge.c). */
static int add_share(query_gather_t *g, const share_t *s, errmsg_t *em)
{
    const uint8_t *enc = s->tree.data;
    size_t len = s->tree.len;
    int rc = query_gather_add_trees(g, &enc, &len, 1, em);
    for (size_t i = 0; rc == 0 && i < symtab_count(s->syms); i++) {
        uint64_t id = symtab_id_at(s->syms, i);
        const char *name, *file;
        CHECK(symtab_get(s->syms, id, &name, &file));
        rc = query_gather_add_symbol(g, id, name, strlen(name), file, strlen(file));
    }
    return rc != 0 ? rc : query_gather_add_series(g, 1, NULL, em);
}

/* Gathers both shares and finishes a render (merged_tree: a render-diff's
 * side; else JSON truncated to max_nodes; with local not NULL, folded
 * truncated to max_nodes, the second share being that local tree) with a
 * charge on a budget of limit bytes (0: none); its charged peak. */
/* What a gather held just before it finished and the answer it wrote. */
typedef struct sizes {
    size_t held, answer, answer_cap;
} sizes_t;

static int gather_fmt(const share_t *sh, int merged_tree, const char *max_nodes,
                      query_partial_t *local, const char *format, size_t limit,
                      size_t *charged_peak, sizes_t *sz, errmsg_t *em);

static int gather(const share_t *sh, int merged_tree, const char *max_nodes, query_partial_t *local,
                  size_t limit, size_t *charged_peak, errmsg_t *em)
{
    sizes_t sz;
    return gather_fmt(sh, merged_tree, max_nodes, local, local != NULL ? "folded" : NULL, limit,
                      charged_peak, &sz, em);
}

static int gather_fmt(const share_t *sh, int merged_tree, const char *max_nodes,
                      query_partial_t *local, const char *format, size_t limit,
                      size_t *charged_peak, sizes_t *sz, errmsg_t *em)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_params_t p = {.query = CPU "{}", .from = "now-1h", .until = "now"};
    p.merged_tree = merged_tree;
    p.max_nodes = max_nodes;
    p.format = format;
    query_spec_t spec;
    memset(&spec, 0, sizeof spec);
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000, &spec, em), 0);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    alloc_budget_t b;
    alloc_budget_init(&b, limit);
    alloc_charge_t c;
    alloc_charge_init(&c, &b);
    query_gather_charge(g, &c, 0);
    query_result_t out;
    query_result_init(&out);
    int rc = add_share(g, &sh[0], em);
    if (rc == 0) rc = local != NULL ? query_gather_add(g, local, em) : add_share(g, &sh[1], em);
    sz->held = query_gather_bytes(g);
    if (rc == 0) rc = query_gather_finish(g, NULL, &out, em);
    if (rc == 0) CHECK(out.body.len > 0);
    sz->answer = out.body.len;
    sz->answer_cap = out.body.cap;
    query_result_free(&out);
    query_gather_free(g);
    *charged_peak = c.peak;
    alloc_charge_done(&c);
    CHECK_EQ_INT(alloc_budget_used(&b), 0);
    query_spec_free(&spec);
    return rc;
}

static void check_heap(const share_t *sh, int merged_tree, const char *max_nodes, int local)
{
    size_t peak;
    errmsg_t em = {{0}};
    query_partial_t lp;
    /* the local share's tree and symbols count from when they are made:
     * the gather takes them over and counts them as its own (a node's
     * local job charged them before) */
    heap_start();
    if (local) local_make(&sh[1], &lp);
    int rc = gather(sh, merged_tree, max_nodes, local ? &lp : NULL, 0, &peak, &em);
    long most = heap_stop();
    if (local) query_partial_free(&lp);
    if (rc != 0) fprintf(stderr, "gather: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    fprintf(stderr, "gather of 2 x %d stacks (%s%s): charged peak %zu B, heap peak %ld B\n", STACKS,
            merged_tree ? "merged tree" : "maxNodes ", merged_tree ? "" : max_nodes, peak, most);
    CHECK(peak > 0);
    /* what it allocated and did not count: the spec, the charge's steps
     * and allocator rounding (the selection's arrays, the kept nodes, the
     * tree built of them, the answer and the encoders' own arrays count
     * before they are made) */
    if (HEAP_COUNTED) CHECK((size_t)most <= peak + peak / 64 + (256u << 10));
    /* and what it counts is about what it takes, not a multiple */
    if (HEAP_COUNTED) CHECK(peak <= (size_t)most + (size_t)most / 8);

    /* a budget below that peak: refused, naming the setting, nothing kept */
    if (local) local_make(&sh[1], &lp);
    rc = gather(sh, merged_tree, max_nodes, local ? &lp : NULL, peak / 2, &peak, &em);
    if (local) query_partial_free(&lp);
    CHECK(rc == ERR_UNAVAILABLE || rc == ERR_TOO_LARGE);
    CHECK(strstr(em.text, "query-memory-bytes") != NULL);
}

/* A render-diff side: share s's render as a merged tree (what the join
 * reads), made before the heap is counted. */
static void side_body(const share_t *s, query_result_t *out)
{
    query_limits_t lim;
    query_limits_default(&lim);
    query_params_t p = {.query = CPU "{}", .from = "now-1h", .until = "now"};
    p.merged_tree = 1;
    query_spec_t spec;
    memset(&spec, 0, sizeof spec);
    errmsg_t em = {{0}};
    CHECK_EQ_INT(query_spec_parse(QUERY_KIND_RENDER, &p, &lim, 1700000000000, &spec, &em), 0);
    query_gather_t *g;
    CHECK_EQ_INT(query_gather_new(&spec, &lim, &g), 0);
    query_result_init(out);
    CHECK_EQ_INT(add_share(g, s, &em), 0);
    CHECK_EQ_INT(query_gather_finish(g, NULL, out, &em), 0);
    query_gather_free(g);
    query_spec_free(&spec);
}

/* The render-diff's join of the two sides (format, max_nodes): what it
 * allocates is what it charges, within the same tolerance. */
static void check_diff(const share_t *sh, const char *format, const char *max_nodes)
{
    query_result_t side[2], out;
    side_body(&sh[0], &side[0]);
    side_body(&sh[1], &side[1]);
    query_limits_t lim;
    query_limits_default(&lim);
    lim.max_nodes_limit = 1u << 20; /* maxNodes 1000000: the whole union */
    query_diff_params_t d;
    memset(&d, 0, sizeof d);
    d.left.query = d.right.query = CPU "{}";
    d.max_nodes = max_nodes;
    d.format = format;
    budget_t b = {0};
    query_report_charge_t charge = {budget_take, budget_give, &b};
    errmsg_t em = {{0}};
    query_result_init(&out);
    size_t charged;
    heap_start();
    int rc =
        query_diff_render_charged(&d, &lim, side[0].body.data, side[0].body.len, side[1].body.data,
                                  side[1].body.len, NULL, &charge, &charged, &out, &em);
    long most = heap_stop();
    if (rc != 0) fprintf(stderr, "diff: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    /* the answer stays taken until it is sent, all else is given back */
    CHECK_EQ_INT(charged, out.body.cap);
    CHECK_EQ_INT(b.used, charged);
    budget_give(&b, charged);
    fprintf(stderr,
            "diff of 2 x %d stacks (%s, maxNodes %s): charged peak %zu B, heap peak %ld B\n",
            STACKS, format, max_nodes, b.most, most);
    if (HEAP_COUNTED) CHECK((size_t)most <= b.most + b.most / 64 + (256u << 10));
    if (HEAP_COUNTED) CHECK(b.most <= (size_t)most + (size_t)most / 8);
    /* two-column folded text: measured first too */
    if (strcmp(format, "folded") == 0) CHECK_EQ_INT(out.body.cap, out.body.len + 1);
    query_result_free(&out);
    query_result_free(&side[0]);
    query_result_free(&side[1]);
}

/* A refusal is the same answer whatever order the shares came in (a
 * coordinator merges them as they arrive): a small share and a large one,
 * on a budget below the query's peak, give the same status and text. */
static void check_same_refusal(void)
{
    share_t ab[2], ba[2];
    share_range(&ab[0], 0, STACKS / 8);
    share_range(&ab[1], STACKS / 16, STACKS / 16 + STACKS);
    ba[0] = ab[1];
    ba[1] = ab[0];
    for (int merged_tree = 0; merged_tree <= 1; merged_tree++) {
        size_t peak, ignored;
        errmsg_t em1 = {{0}}, em2 = {{0}};
        CHECK_EQ_INT(gather(ab, merged_tree, NULL, NULL, 0, &peak, &em1), 0);
        int rc1 = gather(ab, merged_tree, NULL, NULL, peak / 2, &ignored, &em1);
        int rc2 = gather(ba, merged_tree, NULL, NULL, peak / 2, &ignored, &em2);
        CHECK(rc1 == ERR_UNAVAILABLE || rc1 == ERR_TOO_LARGE);
        CHECK_EQ_INT(rc1, rc2);
        if (strcmp(em1.text, em2.text) != 0)
            fprintf(stderr, "refusals differ:\n  %s\n  %s\n", em1.text, em2.text);
        CHECK(strcmp(em1.text, em2.text) == 0);
        CHECK(strstr(em1.text, "query-memory-bytes") != NULL);
    }
    share_free(&ab[0]);
    share_free(&ab[1]);
}

/* A whole flame graph as folded text (no maxNodes: every path written out
 * whole, the text larger than the tree): measured first, its buffer is
 * reserved once at that size. Grown by doubling it held the old buffer and
 * one twice its size at once (for the bench fleet's 44 MB answer, 96 MiB:
 * refused at the default query-memory-bytes). */
static void check_folded_whole(const share_t *sh)
{
    size_t peak;
    sizes_t sz;
    errmsg_t em = {{0}};
    heap_start();
    int rc = gather_fmt(sh, 0, NULL, NULL, "folded", 0, &peak, &sz, &em);
    long most = heap_stop();
    if (rc != 0) fprintf(stderr, "gather: %s\n", em.text);
    CHECK_EQ_INT(rc, 0);
    fprintf(stderr,
            "whole folded answer of 2 x %d stacks: %zu B from a gather of %zu B: charged peak "
            "%zu B, heap peak %ld B\n",
            STACKS, sz.answer, sz.held, peak, most);
    /* one buffer of the answer's size (and its NUL), not a power of two */
    CHECK_EQ_INT(sz.answer_cap, sz.answer + 1);
    /* the merged tree, the encoder's working memory and the answer, all
     * charged (the heap beside it), never the old buffer and one twice its
     * size at once */
    if (HEAP_COUNTED) CHECK((size_t)most <= peak + peak / 64 + (256u << 10));
    if (HEAP_COUNTED) CHECK(peak <= (size_t)most + (size_t)most / 8);
}

int main(void)
{
    if (!HEAP_COUNTED) fprintf(stderr, "SKIP heap counts: the allocator is AddressSanitizer's\n");
    share_t sh[2];
    share_make(&sh[0], 0);
    share_make(&sh[1], 1);
    check_heap(sh, 1, NULL, 0);    /* a render-diff's side */
    check_heap(sh, 0, "1024", 0);  /* a flame graph truncated to maxNodes */
    check_heap(sh, 0, "65536", 0); /* ... keeping most of it */
    /* a local share's merged tree beside a remote share's forest: the
     * tree is copied into a forest before the selection */
    check_heap(sh, 0, "1024", 1);
    check_folded_whole(sh);
    check_diff(sh, "json", "65536"); /* a render-diff's join */
    check_diff(sh, "folded", "65536");
    /* untruncated: the encoders' working memory beside the answer is the peak */
    check_diff(sh, "json", "1000000");
    check_diff(sh, "svg", "1000000");
    check_same_refusal();
    share_free(&sh[0]);
    share_free(&sh[1]);
    return check_exit();
}
