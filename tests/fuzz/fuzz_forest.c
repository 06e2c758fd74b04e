/* fuzz_forest.c — libFuzzer target for the forest decoder
 * (query_forest_decode, query/forest.c): what a coordinator reads from each
 * share of a truncating scatter-gather, in any forest encoding (version 2,
 * each node's kids; version 3, each node's parent; version 4, pre-order
 * with subtree totals and lengths) or as a call-tree encoding (any other
 * first byte). An input of version 4 is also opened where it lies
 * (query_packed_open) and selected over (query_truncate_mixed_charged):
 * refused, or a tree of its root's total.
 *
 * The input is decoded with a node limit large enough to show amplification.
 * Beyond "no crash, no leak, no UB": a refusal is ERR_CORRUPT, ERR_LIMIT or
 * ERR_NOMEM and leaves an empty forest; an accepted forest is well formed
 * (kids after their node, ascending, each node but the root one node's kid,
 * its recorded parent that node, depth bounded, every total its self plus its
 * kids' totals, non-zero below the root); a forest encoding asks for exactly
 * the nodes it holds (one fewer as the limit is ERR_LIMIT); the forest
 * re-encodes in versions 2 and 3 to bytes that decode to the same forest and
 * re-encode to the same bytes, and in version 4 to a forest of its total
 * that does the same, and whose selection read where it lies is the
 * decoded one's; and merged into a tree it keeps its total.
 * Seeds: tests/fuzz/corpus/forest, written by tests/fuzz/seed_forest.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/calltree.h"
#include "common/hash.h"
#include "query/query.h"
#include "query/query_int.h"

#define MAX_NODES 100000

static void check_empty(const storage_merged_tab_t *f)
{
    if (f->n != 0 || f->sym != NULL || f->self != NULL || f->total != NULL ||
        f->first_kid != NULL || f->next_sib != NULL || f->parent != NULL)
        abort();
}

/* The forest is a tree of depth <= CALLTREE_MAX_DEPTH whose totals add up. */
static void check_forest(const storage_merged_tab_t *f)
{
    if (f->n == 0 || f->nodes != f->n || f->sym[0] != SYM_ROOT) abort();
    uint32_t *depth = calloc(f->n, sizeof *depth);
    uint8_t *seen = calloc(f->n, 1);
    if (depth == NULL || seen == NULL) abort();
    for (size_t i = 0; i < f->n; i++) {
        if (f->self[i] < 0 || f->total[i] < 0 || (i > 0 && f->total[i] == 0)) abort();
        if (i > 0 && !seen[i]) abort(); /* a kid of an earlier node */
        uint64_t sum = (uint64_t)f->self[i];
        uint32_t prev = (uint32_t)i;
        for (uint32_t k = f->first_kid[i]; k != STORAGE_NO_KID; k = f->next_sib[k]) {
            if (k <= prev || k >= f->n || seen[k]) abort();
            if (f->parent != NULL && f->parent[k] != i) abort();
            if (depth[i] >= CALLTREE_MAX_DEPTH) abort();
            seen[k] = 1;
            depth[k] = depth[i] + 1;
            sum += (uint64_t)f->total[k];
            prev = k;
        }
        if (sum != (uint64_t)f->total[i]) abort();
    }
    free(depth);
    free(seen);
}

static void check_same(const storage_merged_tab_t *a, const storage_merged_tab_t *b)
{
    if (a->n != b->n || a->nodes != b->nodes || !b->nonneg) abort();
    for (size_t i = 0; i < a->n; i++) {
        if (a->sym[i] != b->sym[i] || a->self[i] != b->self[i] || a->total[i] != b->total[i] ||
            a->first_kid[i] != b->first_kid[i] || (i > 0 && a->next_sib[i] != b->next_sib[i]))
            abort();
    }
}

static int same_bytes(const buf_t *a, const buf_t *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* f encoded in version, decoded, re-encoded: the same forest, the same bytes. */
static void check_reencode(const storage_merged_tab_t *f, int version)
{
    buf_t a, b;
    buf_init(&a, BUF_UNLIMITED);
    buf_init(&b, BUF_UNLIMITED);
    uint64_t *dict;
    size_t nd;
    if (query_forest_encode_dict(f, version, &a, &dict, &nd) != 0) abort();
    if (nd == 0 || nd > f->n) abort();
    free(dict);
    storage_merged_tab_t g;
    if (query_forest_decode(a.data, a.len, f->n, &g) != 0) abort();
    check_same(f, &g);
    if (query_forest_encode_dict(&g, version, &b, &dict, &nd) != 0) abort();
    free(dict);
    if (!same_bytes(&a, &b)) abort();
    query_forest_free(&g);
    buf_free(&a);
    buf_free(&b);
}

/* The maxNodes selection of an encoding read where it lies: refused, or
 * (with want, the decoded forest) the same tree as over want. */
static void check_packed(const uint8_t *enc, size_t len, const storage_merged_tab_t *want)
{
    query_packed_t pk;
    if (query_packed_open(enc, len, MAX_NODES, &pk) != 0) {
        if (want != NULL) abort();
        return;
    }
    calltree_t *a = calltree_new(0), *b = calltree_new(0);
    if (a == NULL || b == NULL) abort();
    int rc = query_truncate_mixed_charged(NULL, 0, &pk, 1, 64, NULL, a);
    if (rc == 0 && calltree_root_total(a) != pk.root_total) abort();
    if (want != NULL) {
        if (rc != 0 || query_truncate_tabs(want, 1, 64, b) != 0) abort();
        buf_t x, y;
        buf_init(&x, BUF_UNLIMITED);
        buf_init(&y, BUF_UNLIMITED);
        if (calltree_encode(a, &x) != 0 || calltree_encode(b, &y) != 0 || !same_bytes(&x, &y))
            abort();
        buf_free(&x);
        buf_free(&y);
    }
    calltree_free(a);
    calltree_free(b);
    query_packed_free(&pk);
}

/* f encoded in version 4 or 5 (pre-order: ids renumbered) decodes to a
 * forest g of the same total and node count, which reads where it lies as
 * decoded; g itself (already in pre-order) re-encodes in that version to
 * bytes that decode to g and re-encode to the same bytes. */
static void check_v4(const storage_merged_tab_t *f, int version)
{
    buf_t a, b, c;
    buf_init(&a, BUF_UNLIMITED);
    buf_init(&b, BUF_UNLIMITED);
    buf_init(&c, BUF_UNLIMITED);
    uint64_t *dict;
    size_t nd;
    if (query_forest_encode_dict(f, version, &a, &dict, &nd) != 0) abort();
    free(dict);
    storage_merged_tab_t g, h;
    if (query_forest_decode(a.data, a.len, f->n, &g) != 0) abort();
    check_forest(&g);
    if (g.n != f->n || g.total[0] != f->total[0]) abort();
    check_packed(a.data, a.len, &g);
    if (query_forest_encode_dict(&g, version, &b, &dict, &nd) != 0) abort();
    free(dict);
    if (query_forest_decode(b.data, b.len, 0, &h) != 0) abort();
    check_same(&g, &h);
    if (query_forest_encode_dict(&h, version, &c, &dict, &nd) != 0) abort();
    free(dict);
    if (!same_bytes(&b, &c)) abort();
    query_forest_free(&g);
    query_forest_free(&h);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] == QUERY_FOREST_V4 || data[0] == QUERY_FOREST_V5))
        check_packed(data, size, NULL);
    storage_merged_tab_t f;
    int rc = query_forest_decode(data, size, MAX_NODES, &f);
    if (rc != 0) {
        if (rc != ERR_CORRUPT && rc != ERR_LIMIT && rc != ERR_NOMEM) abort();
        check_empty(&f);
        return 0;
    }
    if (!f.nonneg) { /* a call tree with a negative value or a total past INT64_MAX */
        check_empty(&f);
        return 0;
    }
    check_forest(&f);
    int forest = size > 0 && (data[0] == QUERY_FOREST_V2 || data[0] == QUERY_FOREST_V3 ||
                              data[0] == QUERY_FOREST_V4 || data[0] == QUERY_FOREST_V5);
    if (forest && f.n > 1) {
        storage_merged_tab_t g;
        if (query_forest_decode(data, size, f.n - 1, &g) != ERR_LIMIT) abort();
        check_empty(&g);
    }
    check_reencode(&f, QUERY_FOREST_V2);
    check_reencode(&f, QUERY_FOREST_V3);
    check_v4(&f, QUERY_FOREST_V4);
    check_v4(&f, QUERY_FOREST_V5);
    calltree_t *t = calltree_new(0);
    if (t == NULL || query_forest_merge(t, &f) != 0) abort();
    if (calltree_root_total(t) != f.total[0]) abort();
    calltree_free(t);
    query_forest_free(&f);
    return 0;
}
