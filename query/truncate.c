/* truncate.c — maxNodes truncation.
 *
 * Best-first expansion from the root: the frontier (children of kept nodes)
 * sits in a max-heap ordered by |total|, ties broken by a hash of the node's
 * path (content, not node index, so every replica and merge order gives the
 * same shape). A node is kept while the budget — kept nodes plus one `other`
 * per kept node that still hides children — stays within max_nodes. The kept
 * nodes are copied into a new tree with their own self values, and each kept
 * parent gets one SYM_OTHER child carrying the summed totals of the children
 * it hides. So every kept node keeps its exact total and the root total is the
 * original one.
 *
 * Nodes whose total is 0 are dropped with their subtrees, truncated or not: a
 * stack can exist in a merged tree with nothing in the range (a zero value
 * stored for one sample type, a stack of the node table that a merge touched),
 * and whether such an empty node is present depends on the order trees were
 * merged in. Dropping them keeps every answer the same bytes whatever the
 * merge order (and they would be zero-width frames anyway).
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "query/query_int.h"

typedef struct trunc {
    const calltree_t *t;
    size_t n;
    uint64_t *pkey;   /* path hash per node */
    uint32_t *hidden; /* children not (yet) kept, for kept nodes */
    uint8_t *kept;
    uint32_t *heap;
    size_t hn;
} trunc_t;

static uint64_t mag(const calltree_t *t, uint32_t i)
{
    int64_t v = calltree_total(t, i);
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

/* 1 if node a should be expanded before node b. */
static int heavier(const trunc_t *tr, uint32_t a, uint32_t b)
{
    uint64_t ma = mag(tr->t, a), mb = mag(tr->t, b);
    if (ma != mb) return ma > mb;
    return tr->pkey[a] < tr->pkey[b];
}

static void heap_push(trunc_t *tr, uint32_t v)
{
    size_t i = tr->hn++;
    while (i > 0 && heavier(tr, v, tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = v;
}

static uint32_t heap_pop(trunc_t *tr)
{
    uint32_t top = tr->heap[0], v = tr->heap[--tr->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= tr->hn) break;
        if (c + 1 < tr->hn && heavier(tr, tr->heap[c + 1], tr->heap[c])) c++;
        if (!heavier(tr, tr->heap[c], v)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (tr->hn > 0) tr->heap[i] = v;
    return top;
}

int query_tree_has_empty(const calltree_t *t)
{
    size_t n = calltree_node_count(t);
    for (uint32_t i = 1; i < n; i++)
        if (calltree_total(t, i) == 0) return 1;
    return 0;
}

/* Keeps node i: its non-empty children join the frontier. Returns the
 * budget it uses. */
static size_t keep(trunc_t *tr, uint32_t i)
{
    const calltree_t *t = tr->t;
    tr->kept[i] = 1;
    tr->hidden[i] = 0;
    for (uint32_t c = calltree_first_child(t, i); c != CALLTREE_NONE;
         c = calltree_next_sibling(t, c)) {
        if (calltree_total(t, c) == 0) continue;
        tr->hidden[i]++;
        uint64_t s = calltree_sym(t, c);
        tr->pkey[c] = hash_bytes64((uint64_t[2]){tr->pkey[i], s}, 16);
        heap_push(tr, c);
    }
    return tr->hidden[i] > 0 ? 2 : 1;
}

static int has_nonempty_child(const calltree_t *t, uint32_t i)
{
    for (uint32_t c = calltree_first_child(t, i); c != CALLTREE_NONE;
         c = calltree_next_sibling(t, c))
        if (calltree_total(t, c) != 0) return 1;
    return 0;
}

static void select_nodes(trunc_t *tr, size_t max_nodes)
{
    tr->pkey[0] = 0;
    size_t used = keep(tr, 0);
    while (tr->hn > 0) {
        uint32_t c = tr->heap[0];
        uint32_t p = calltree_parent(tr->t, c);
        size_t cost = 1 + has_nonempty_child(tr->t, c);
        size_t frees = tr->hidden[p] == 1; /* the parent's `other` goes away */
        if (used + cost - frees > max_nodes) break;
        heap_pop(tr);
        tr->hidden[p]--;
        used += keep(tr, c) - frees; /* keep() returns cost */
    }
}

/* Copies the kept nodes (preorder, so parents exist first) into out; self
 * values are added in one pass at the end (calltree_add_selves). */
static int build(const trunc_t *tr, size_t max_nodes, calltree_t *out)
{
    const calltree_t *t = tr->t;
    uint32_t *map = malloc(tr->n * sizeof *map);
    uint32_t *stack = malloc(tr->n * sizeof *stack);
    /* at most one entry per node of t plus one `other` per kept node */
    uint32_t *nodes = malloc(2 * tr->n * sizeof *nodes);
    int64_t *vals = malloc(2 * tr->n * sizeof *vals);
    int rc = (map && stack && nodes && vals) ? calltree_reserve(out, max_nodes) : ERR_NOMEM;
    size_t sp = 0, nv = 0;
    if (rc == 0) {
        map[0] = 0;
        nodes[nv] = 0;
        vals[nv++] = calltree_self(t, 0);
        stack[sp++] = 0;
    }
    while (rc == 0 && sp > 0) {
        uint32_t i = stack[--sp];
        int64_t hidden_total = 0;
        for (uint32_t c = calltree_first_child(t, i); c != CALLTREE_NONE && rc == 0;
             c = calltree_next_sibling(t, c)) {
            if (!tr->kept[c]) {
                hidden_total += calltree_total(t, c); /* 0 for an empty node */
                continue;
            }
            rc = calltree_child(out, map[i], calltree_sym(t, c), &map[c]);
            if (rc == 0) {
                nodes[nv] = map[c];
                vals[nv++] = calltree_self(t, c);
            }
            stack[sp++] = c;
        }
        uint32_t o;
        if (rc == 0 && tr->hidden[i] > 0 &&
            (rc = calltree_child(out, map[i], SYM_OTHER, &o)) == 0) {
            nodes[nv] = o;
            vals[nv++] = hidden_total;
        }
    }
    if (rc == 0) rc = calltree_add_selves(out, nodes, vals, nv);
    free(map);
    free(stack);
    free(nodes);
    free(vals);
    return rc;
}

size_t query_truncate_scratch_bytes(const calltree_t *t)
{
    trunc_t *x = NULL;
    size_t per = sizeof *x->pkey + sizeof *x->hidden + sizeof *x->kept + sizeof *x->heap;
    return calltree_node_count(t) * per;
}

int query_truncate(const calltree_t *t, size_t max_nodes, calltree_t **out)
{
    *out = NULL;
    if (max_nodes < 2) return ERR_INVALID_ARGUMENT;
    calltree_t *res = calltree_new(0);
    if (res == NULL) return ERR_NOMEM;
    size_t n = calltree_node_count(t);
    if (n <= max_nodes && !query_tree_has_empty(t)) {
        int rc = calltree_merge(res, t);
        if (rc != 0)
            calltree_free(res);
        else
            *out = res;
        return rc;
    }
    trunc_t tr = {.t = t, .n = n};
    tr.pkey = malloc(n * sizeof *tr.pkey);
    tr.hidden = calloc(n, sizeof *tr.hidden);
    tr.kept = calloc(n, 1);
    tr.heap = malloc(n * sizeof *tr.heap);
    int rc = (tr.pkey && tr.hidden && tr.kept && tr.heap) ? 0 : ERR_NOMEM;
    if (rc == 0) {
        select_nodes(&tr, max_nodes);
        rc = build(&tr, max_nodes < n ? max_nodes : n, res);
    }
    free(tr.pkey);
    free(tr.hidden);
    free(tr.kept);
    free(tr.heap);
    if (rc != 0)
        calltree_free(res);
    else
        *out = res;
    return rc;
}
