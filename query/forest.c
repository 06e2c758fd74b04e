/* forest.c — call trees laid out as forests (storage_merged_tab_t), the
 * input of keep.c's maxNodes selection.
 *
 * A coordinator that truncates gets one tree per share (decoded from a
 * PartialResult, or a local share's tree) plus the local share's own token
 * forests. Merging them into one tree costs a hash lookup per node of every
 * share, a cache miss each, and then query_truncate walks the whole merge to
 * keep a few thousand nodes. Laid out as forests instead (linear passes, no
 * hashing), query_truncate_tabs expands only the kept nodes of their union:
 * the same answer, node for node, as truncating the merge (keep.c says when:
 * every value >= 0 and no total past INT64_MAX; else the caller merges).
 *
 * A forest holds only nodes whose total is non-zero, as storage's do: with
 * values >= 0 a node of total 0 has nothing under it, and query_truncate
 * drops such nodes anyway.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "query/query_int.h"

/* The forest of n nodes given by parent (parent[i] < i; node 0 the root),
 * sym and self. Sets out->nonneg = 0 (and no arrays) when a value is
 * negative or a total passes INT64_MAX. */
static int forest_build(size_t n, const uint32_t *parent, const uint64_t *sym, const int64_t *self,
                        storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    uint64_t *tot = calloc(n, sizeof *tot);
    uint32_t *map = malloc(n * sizeof *map);
    int rc = tot && map ? 0 : ERR_NOMEM;
    int nonneg = rc == 0;
    for (size_t i = n; rc == 0 && nonneg && i-- > 0;) {
        nonneg = self[i] >= 0 && tot[i] + (uint64_t)self[i] <= (uint64_t)INT64_MAX;
        tot[i] += (uint64_t)self[i]; /* each term at most INT64_MAX: no wrap */
        if (i > 0) {
            tot[parent[i]] += tot[i];
            nonneg &= tot[parent[i]] <= (uint64_t)INT64_MAX;
        }
    }
    size_t m = 0;
    for (size_t i = 0; rc == 0 && nonneg && i < n; i++)
        map[i] = i == 0 || tot[i] != 0 ? (uint32_t)m++ : UINT32_MAX;
    if (rc == 0 && nonneg) {
        out->sym = malloc(m * sizeof *out->sym);
        out->self = malloc(m * sizeof *out->self);
        out->total = malloc(m * sizeof *out->total);
        out->kid_off = calloc(m + 1, sizeof *out->kid_off);
        out->kids = malloc((m > 1 ? m - 1 : 1) * sizeof *out->kids);
        if (!out->sym || !out->self || !out->total || !out->kid_off || !out->kids) rc = ERR_NOMEM;
    }
    for (size_t i = 0; rc == 0 && nonneg && i < n; i++) {
        if (map[i] == UINT32_MAX) continue; /* a node of total 0 (so is its subtree) */
        out->sym[map[i]] = sym[i];
        out->self[map[i]] = self[i];
        out->total[map[i]] = (int64_t)tot[i];
        if (i > 0) out->kid_off[map[parent[i]] + 1]++;
    }
    for (size_t i = 0; rc == 0 && nonneg && i < m; i++) /* counts to offsets */
        out->kid_off[i + 1] += out->kid_off[i];
    for (size_t i = 1; rc == 0 && nonneg && i < n; i++) /* kid_off[p] moves past p's kids */
        if (map[i] != UINT32_MAX) out->kids[out->kid_off[map[parent[i]]]++] = map[i];
    for (size_t i = m; rc == 0 && nonneg && i > 0; i--) /* and back */
        out->kid_off[i] = out->kid_off[i - 1];
    if (rc == 0 && nonneg) out->kid_off[0] = 0;
    free(tot);
    free(map);
    if (rc == 0 && nonneg) {
        out->n = m;
        out->nonneg = 1;
        return 0;
    }
    query_forest_free(out);
    return rc;
}

int query_forest_decode(const uint8_t *enc, size_t len, size_t max_nodes, storage_merged_tab_t *out)
{
    memset(out, 0, sizeof *out);
    calltree_records_t r;
    int rc = calltree_decode_records(enc, len, max_nodes > 0 ? max_nodes - 1 : 0, &r);
    if (rc != 0) return rc;
    size_t n = r.n + 1;
    uint32_t *parent = malloc(n * sizeof *parent);
    uint64_t *sym = malloc(n * sizeof *sym);
    int64_t *self = malloc(n * sizeof *self);
    /* the last node seen at each depth; depths are checked (<= CALLTREE_MAX_DEPTH,
     * at most one deeper than the record before) */
    size_t deep = (r.n < CALLTREE_MAX_DEPTH ? r.n : CALLTREE_MAX_DEPTH) + 1;
    uint32_t *last = malloc(deep * sizeof *last);
    rc = parent && sym && self && last ? 0 : ERR_NOMEM;
    if (rc == 0) {
        parent[0] = 0;
        sym[0] = SYM_ROOT;
        self[0] = r.root_self;
        last[0] = 0;
        for (size_t i = 0; i < r.n; i++) {
            parent[i + 1] = last[r.depth[i] - 1];
            last[r.depth[i]] = (uint32_t)(i + 1);
            sym[i + 1] = r.sym[i];
            self[i + 1] = r.self[i];
        }
        rc = forest_build(n, parent, sym, self, out);
    }
    calltree_records_free(&r);
    free(parent);
    free(sym);
    free(self);
    free(last);
    return rc;
}

int query_forest_of_tree(const calltree_t *t, storage_merged_tab_t *out)
{
    size_t n = calltree_node_count(t);
    const calltree_node_t *nd = calltree_nodes(t);
    uint32_t *parent = malloc(n * sizeof *parent);
    uint64_t *sym = malloc(n * sizeof *sym);
    int64_t *self = malloc(n * sizeof *self);
    int rc = parent && sym && self ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        parent[i] = i == 0 ? 0 : nd[i].parent;
        sym[i] = nd[i].sym;
        self[i] = nd[i].self;
    }
    if (rc == 0)
        rc = forest_build(n, parent, sym, self, out);
    else
        memset(out, 0, sizeof *out);
    free(parent);
    free(sym);
    free(self);
    return rc;
}

int query_forest_merge(calltree_t *dst, const storage_merged_tab_t *f)
{
    if (f->n == 0) return 0;
    uint32_t *map = malloc(f->n * sizeof *map);
    if (map == NULL) return ERR_NOMEM;
    map[0] = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < f->n; i++) /* parents come first */
        for (uint32_t j = f->kid_off[i]; rc == 0 && j < f->kid_off[i + 1]; j++)
            rc = calltree_child(dst, map[i], f->sym[f->kids[j]], &map[f->kids[j]]);
    if (rc == 0) rc = calltree_add_selves(dst, map, f->self, f->n);
    free(map);
    return rc;
}

size_t query_forest_bytes(const storage_merged_tab_t *f)
{
    return f->n * (sizeof *f->sym + sizeof *f->self + sizeof *f->total + 2 * sizeof(uint32_t));
}

void query_forest_free(storage_merged_tab_t *f)
{
    free(f->sym);
    free(f->self);
    free(f->total);
    free(f->kid_off);
    free(f->kids);
    memset(f, 0, sizeof *f);
}

int query_forest_encode(const storage_merged_tab_t *f, buf_t *out)
{
    size_t n = f->n > 0 ? f->n - 1 : 0;
    calltree_records_t r = {.n = n, .root_self = f->n > 0 ? f->self[0] : 0};
    r.depth = malloc((n ? n : 1) * sizeof *r.depth);
    r.sym = malloc((n ? n : 1) * sizeof *r.sym);
    r.self = malloc((n ? n : 1) * sizeof *r.self);
    uint32_t *stack = malloc((f->n ? f->n : 1) * sizeof *stack); /* nodes to visit */
    uint32_t *depth = malloc((f->n ? f->n : 1) * sizeof *depth); /* per node */
    int rc = r.depth && r.sym && r.self && stack && depth ? 0 : ERR_NOMEM;
    size_t sp = 0, k = 0;
    if (rc == 0 && f->n > 0) {
        depth[0] = 0;
        stack[sp++] = 0;
    }
    while (rc == 0 && sp > 0) { /* preorder: a node's kids pushed last-first */
        uint32_t i = stack[--sp];
        if (i != 0) {
            r.depth[k] = depth[i];
            r.sym[k] = f->sym[i];
            r.self[k++] = f->self[i];
        }
        for (uint32_t j = f->kid_off[i + 1]; j-- > f->kid_off[i];) {
            depth[f->kids[j]] = depth[i] + 1;
            stack[sp++] = f->kids[j];
        }
    }
    if (rc == 0) rc = calltree_encode_records(&r, out);
    calltree_records_free(&r);
    free(stack);
    free(depth);
    return rc;
}
