/* captree.c — bounding the size of a stored call tree (span and trace trees).
 *
 * A span tree gains operands from every push that names its span id in its
 * 10-second window, so the merged tree is bounded by nothing but traffic.
 * Capping must never fail (it runs inside the merge operator, where a failure
 * stops RocksDB's background work), and must keep the total exact: the tree
 * keeps its heaviest nodes (by |total|, so negative delta values count too)
 * whose callers are kept as well, and every other node's self value goes to
 * an `other` child (SYM_OTHER) of its nearest kept caller. max / 2 nodes
 * are kept (the root included) and each may get one `other` child, so the
 * result holds at most max nodes (max >= 2; a smaller max counts as 2).
 */
#include <stdlib.h>

#include "common/calltree.h"
#include "common/hash.h"
#include "storage/storage_int.h"

typedef struct rank {
    uint64_t weight;
    uint32_t node;
} rank_t;

static int cmp_rank(const void *a, const void *b)
{
    const rank_t *x = a, *y = b;
    if (x->weight != y->weight) return x->weight > y->weight ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node; /* ties: older (shallower) first */
}

static uint64_t abs_total(const calltree_t *t, uint32_t i)
{
    int64_t v = calltree_total(t, i);
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

/* keep[i] = 1 for the root and the heaviest nodes (max in all) whose callers are kept. */
static int choose(const calltree_t *t, size_t max, unsigned char *keep)
{
    size_t n = calltree_node_count(t);
    rank_t *r = malloc(n * sizeof *r);
    unsigned char *top = calloc(n, 1);
    if (r == NULL || top == NULL) {
        free(r);
        free(top);
        return ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        r[i] = (rank_t){abs_total(t, i), i};
    qsort(r + 1, n - 1, sizeof *r, cmp_rank); /* the root (0) stays first */
    for (size_t k = 0; k < max && k < n; k++)
        top[r[k].node] = 1;
    keep[0] = 1;
    for (uint32_t i = 1; i < n; i++) /* parents precede children */
        keep[i] = top[i] && keep[calltree_parent(t, i)];
    free(r);
    free(top);
    return 0;
}

/* Builds the capped copy: kept nodes as they are, the rest folded. */
static int build(const calltree_t *t, const unsigned char *keep, calltree_t *out)
{
    size_t n = calltree_node_count(t);
    uint32_t *map = malloc(n * sizeof *map); /* node of t -> node of out */
    int64_t *vals = malloc(n * sizeof *vals);
    uint32_t *at = malloc(n * sizeof *at);
    int rc = map == NULL || vals == NULL || at == NULL ? ERR_NOMEM : 0;
    size_t nv = 0;
    if (rc == 0) map[0] = 0;
    for (uint32_t i = 1; rc == 0 && i < n; i++) {
        uint32_t pm = map[calltree_parent(t, i)];
        if (keep[i])
            rc = calltree_child(out, pm, calltree_sym(t, i), &map[i]);
        else if (calltree_sym(out, pm) == SYM_OTHER && pm != 0)
            map[i] = pm; /* below a fold: the same `other` */
        else
            rc = calltree_child(out, pm, SYM_OTHER, &map[i]);
    }
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        if (calltree_self(t, i) != 0) {
            at[nv] = map[i];
            vals[nv++] = calltree_self(t, i);
        }
    if (rc == 0) rc = calltree_add_selves(out, at, vals, nv);
    free(map);
    free(vals);
    free(at);
    return rc;
}

int storage_cap_tree(const calltree_t *t, size_t max, calltree_t **out)
{
    *out = NULL;
    size_t n = calltree_node_count(t);
    if (max == 0 || n <= max) return 0;
    if (max < 2) max = 2;
    unsigned char *keep = malloc(n);
    calltree_t *c = calltree_new(0);
    int rc = keep == NULL || c == NULL ? ERR_NOMEM : choose(t, max / 2, keep);
    if (rc == 0) rc = build(t, keep, c);
    free(keep);
    if (rc != 0) {
        calltree_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
