/* repair_parts.c — one window's residual and profile lists in parts
 * (repair_int.h; docs/cluster.md, "Streaming whole windows").
 *
 * A window whose residual tree with its symbols and profile lists takes
 * more than a share of --max-message-bytes cannot travel in one STREAM
 * answer. Its nodes are laid out in preorder, followed by its kept and
 * untreed profiles, and cut into runs of at most a budget of bytes each:
 * PART_NODE_BYTES a node, plus its symbol's name, file and
 * PART_SYMBOL_BYTES at the first node of the window that names it (the
 * part holding that node carries the symbol; the receiver keeps the
 * window's symbols across its parts, so a symbol travels once however many
 * parts name it); a profile its entry's bytes. A part is the path from the
 * root to its run's first node (those ancestors without their values and
 * without their names, sent by earlier parts: PART_NODE_BYTES each) and
 * the run with its values: in preorder every ancestor of a run's node that
 * lies before the run is an ancestor of its first node, so the part is a
 * tree, and the parts merged are the residual exactly. A run holds one
 * unit at least, so one node whose path and name take more than the budget
 * is a part alone. When even that part would pass the limit (what a
 * message can hold) for its symbol, the symbol's name and file go before it
 * in pieces, one per part of no node (psym, poff), when the asker takes
 * them; a part over the limit otherwise (a path of ancestors alone, or no
 * pieces) refuses the plan (ERR_LIMIT, with the node's position). With
 * z->anchors (an asker that takes them) a part is rooted instead at the
 * shallowest ancestor its run needs (anchor, by depth), which lies on the
 * path of the previous part's last node: a part opens with no path at all
 * (rooted at its first node's parent, one node earlier in preorder or one
 * of its ancestors) and pays PART_NODE_BYTES for each level its run climbs
 * above that, so no path refuses a plan. The plan depends only on
 * the tree, the symbol names and the list lengths, so a source that builds
 * the same residual again cuts it the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "node/cluster/repair_int.h"

void repair_parts_free(repair_parts_t *p)
{
    free(p->order);
    free(p->cut);
    free(p->pcut);
    free(p->first);
    free(p->map);
    free(p->psym);
    free(p->poff);
    free(p->anchor);
    memset(p, 0, sizeof *p);
}

/* The tree's nodes in preorder (children in the tree's own sibling order). */
static int preorder(const calltree_t *t, uint32_t *order, size_t n)
{
    uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
    if (stack == NULL) return ERR_NOMEM;
    size_t top = 0, k = 0;
    stack[top++] = 0;
    while (top > 0 && k < n) {
        uint32_t v = stack[--top];
        order[k++] = v;
        /* the next sibling after the subtree: pushed before the first child */
        uint32_t c = calltree_first_child(t, v);
        size_t from = top;
        for (; c != CALLTREE_NONE && top < n; c = calltree_next_sibling(t, c))
            stack[top++] = c;
        for (size_t i = from, j = top; i + 1 < j; i++, j--) { /* first child on top */
            uint32_t tmp = stack[i];
            stack[i] = stack[j - 1];
            stack[j - 1] = tmp;
        }
    }
    free(stack);
    return k == n ? 0 : ERR_INTERNAL;
}

size_t repair_parts_sym_cost(const symtab_t *names, uint64_t id)
{
    const char *name = NULL, *file = NULL;
    size_t c = PART_SYMBOL_BYTES;
    if (names != NULL && symtab_get(names, id, &name, &file) == 1)
        c += (name ? strlen(name) : 0) + (file ? strlen(file) : 0);
    return c;
}

size_t repair_parts_whole_cost(const calltree_t *t, const symtab_t *names,
                               const repair_parts_sizes_t *z)
{
    size_t nsyms = calltree_sym_count(t), c = calltree_node_count(t) * PART_NODE_BYTES;
    const uint64_t *syms = calltree_syms(t);
    for (size_t si = 1; si < nsyms; si++)
        c += repair_parts_sym_cost(names, syms[si]);
    return c + z->nkept * z->kept_bytes + z->nuntreed * z->untreed_bytes;
}

static size_t depth_of(const calltree_t *t, uint32_t v)
{
    size_t d = 0;
    for (v = calltree_parent(t, v); v != CALLTREE_NONE; v = calltree_parent(t, v))
        d++;
    return d;
}

/* Where each symbol is first named in preorder (p->first, by symbol index). */
static int first_namings(const calltree_t *t, repair_parts_t *p)
{
    size_t nsyms = calltree_sym_count(t);
    const calltree_node_t *nodes = calltree_nodes(t);
    p->first = malloc((nsyms ? nsyms : 1) * sizeof *p->first);
    if (p->first == NULL) return ERR_NOMEM;
    for (size_t si = 0; si < nsyms; si++)
        p->first[si] = UINT32_MAX;
    for (size_t i = p->n; i-- > 0;)
        p->first[nodes[p->order[i]].sym_index] = (uint32_t)i;
    return 0;
}

/* Opens part p->nparts at tree position i, profile position j. */
static int open_part(repair_parts_t *p, uint32_t i, uint32_t j)
{
    size_t need = p->nparts + 2, cap = p->cap;
    int rc = GROW(p->cut, cap, need, GROW_UNLIMITED);
    cap = p->cap;
    if (rc == 0) rc = GROW(p->pcut, cap, need, GROW_UNLIMITED);
    cap = p->cap;
    if (rc == 0) rc = GROW(p->psym, cap, need, GROW_UNLIMITED);
    cap = p->cap;
    if (rc == 0) rc = GROW(p->poff, cap, need, GROW_UNLIMITED);
    cap = p->cap;
    if (rc == 0) rc = GROW(p->anchor, cap, need, GROW_UNLIMITED);
    if (rc != 0) return rc;
    p->cap = cap;
    p->cut[p->nparts] = i;
    p->pcut[p->nparts] = j;
    p->psym[p->nparts] = UINT32_MAX;
    p->poff[p->nparts] = 0;
    p->anchor[p->nparts] = 0;
    p->nparts++;
    return 0;
}

static int over(repair_parts_t *p, uint32_t i, size_t used)
{
    p->over = i < p->n ? i : UINT32_MAX;
    p->over_bytes = used;
    return ERR_LIMIT;
}

/* Adds one unit of cost c to the running part; a new part (at tree
 * position i, profile position j) when it does not fit, whose path costs
 * path. ERR_LIMIT when a part of that one unit exceeds the limit. */
static int add_unit(repair_parts_t *p, const repair_parts_sizes_t *z, size_t *used, size_t c,
                    size_t path, uint32_t i, uint32_t j)
{
    if (*used > 0 && *used + c > z->budget) {
        int rc = open_part(p, i, j);
        if (rc != 0) return rc;
        *used = path;
    }
    *used += c;
    return *used > z->limit ? over(p, i, *used) : 0;
}

/* Symbol index si (its name and file take bytes), named first by the node
 * at position i, in pieces of a budget each: parts of no node from the
 * running part's end, then a part for the node itself. */
static int add_pieces(repair_parts_t *p, const repair_parts_sizes_t *z, size_t *used, uint32_t si,
                      size_t bytes, uint32_t i)
{
    size_t piece = z->budget > PART_SYMBOL_BYTES ? z->budget - PART_SYMBOL_BYTES : 1;
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < bytes; off += piece) {
        rc = open_part(p, i, 0);
        if (rc == 0) {
            p->psym[p->nparts - 1] = si;
            p->poff[p->nparts - 1] = (uint32_t)off;
        }
    }
    if (rc == 0) rc = open_part(p, i, 0);
    p->first[si] = UINT32_MAX; /* sent in pieces: no part carries it whole */
    *used = 0;
    return rc;
}

/* What the receiver's path holds after the running part (repair_partsin.c
 * keeps the path to the last node it decoded: the encoding walks a part's
 * children last added first, so that is the end of the run's first chain
 * of children, order[a], order[a + 1], ... while each is the parent of the
 * next; every later node of the run hangs below the minimum depth of their
 * parents, minpd, on that path). */
typedef struct anchoring {
    const uint32_t *depth; /* by node */
    uint32_t tail;         /* the chain's last node (CALLTREE_NONE: the part has no node) */
    int chain;             /* every node of the run so far is the chain */
    uint32_t minpd;
} anchoring_t;

/* The deepest anchor a part opened at node v (parent at depth pd) may have. */
static uint32_t anchor_for(const anchoring_t *s, uint32_t pd)
{
    return s->tail == CALLTREE_NONE || s->chain || pd <= s->minpd ? pd : s->minpd;
}

static void anchoring_add(anchoring_t *s, const calltree_t *t, uint32_t v, uint32_t pd, int fresh)
{
    if (fresh || s->tail == CALLTREE_NONE) {
        s->tail = v;
        s->chain = 1;
        s->minpd = UINT32_MAX;
    } else if (s->chain && calltree_parent(t, v) == s->tail) {
        s->tail = v;
    } else {
        s->chain = 0;
        if (pd < s->minpd) s->minpd = pd;
    }
}

/* plan_nodes with z->anchors: node i (v, its parent at depth pd; cost c,
 * its symbol's sc) added to the running part, whose anchor climbs to pd
 * when v's parent lies above it (the path gains those levels), or opening
 * a part rooted at the deepest ancestor of v on the receiver's path
 * (anchor_for), its path from there to v paid for. */
static int add_anchored(repair_parts_t *p, const repair_parts_sizes_t *z, anchoring_t *s,
                        const calltree_t *t, size_t *used, size_t c, size_t sc, uint32_t si,
                        uint32_t v, uint32_t i)
{
    uint32_t pd = s->depth[v] > 0 ? s->depth[v] - 1 : 0, an = anchor_for(s, pd);
    size_t path = (size_t)(pd - an) * PART_NODE_BYTES;
    uint32_t *anchor = &p->anchor[p->nparts - 1];
    size_t climb = i > 0 && pd < *anchor ? (size_t)(*anchor - pd) * PART_NODE_BYTES : 0;
    int rc = 0;
    if (z->pieces && c + sc + path > z->limit) { /* too large even alone: the symbol in pieces */
        rc = add_pieces(p, z, used, si, sc - PART_SYMBOL_BYTES, i);
        p->anchor[p->nparts - 1] = an;
        anchoring_add(s, t, v, pd, 1);
        *used = path + c;
        return rc == 0 && *used > z->limit ? over(p, i, *used) : rc;
    }
    int fresh = *used > 0 && *used + c + sc + climb > z->budget;
    if (fresh) {
        if ((rc = open_part(p, i, 0)) != 0) return rc;
        p->anchor[p->nparts - 1] = an;
        *used = path;
        climb = 0;
    } else if (climb > 0) {
        *anchor = pd;
    }
    anchoring_add(s, t, v, pd, fresh);
    *used += c + sc + climb;
    return *used > z->limit ? over(p, i, *used) : 0;
}

/* The depth of every node (by node index), from the preorder. */
static uint32_t *depths(const calltree_t *t, const repair_parts_t *p)
{
    uint32_t *d = malloc((p->n ? p->n : 1) * sizeof *d);
    for (size_t i = 0; d != NULL && i < p->n; i++) {
        uint32_t v = p->order[i], up = calltree_parent(t, v);
        d[v] = up == CALLTREE_NONE ? 0 : d[up] + 1; /* the parent comes first */
    }
    return d;
}

static int plan_nodes(const calltree_t *t, const symtab_t *names, const repair_parts_sizes_t *z,
                      repair_parts_t *p, size_t *used)
{
    if (z->anchors) {
        const calltree_node_t *nodes = calltree_nodes(t);
        const uint64_t *syms = calltree_syms(t);
        uint32_t *d = depths(t, p);
        anchoring_t st = {.depth = d, .tail = CALLTREE_NONE};
        p->anchored = 1;
        int rc = d != NULL ? 0 : ERR_NOMEM;
        for (size_t i = 0; rc == 0 && i < p->n; i++) {
            uint32_t v = p->order[i], si = nodes[v].sym_index;
            size_t sc = 0;
            if (si != 0 && p->first[si] == i) sc = repair_parts_sym_cost(names, syms[si]);
            rc = add_anchored(p, z, &st, t, used, PART_NODE_BYTES, sc, si, v, (uint32_t)i);
        }
        free(d);
        return rc;
    }
    const calltree_node_t *nodes = calltree_nodes(t);
    const uint64_t *syms = calltree_syms(t);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        uint32_t v = p->order[i], si = nodes[v].sym_index;
        size_t c = PART_NODE_BYTES, sc = 0;
        if (si != 0 && p->first[si] == i) sc = repair_parts_sym_cost(names, syms[si]);
        int cut = *used > 0 && *used + c + sc > z->budget, big = z->pieces && c + sc > z->budget;
        size_t depth = cut || big ? depth_of(t, v) * PART_NODE_BYTES : 0; /* O(depth): rare */
        if (big && c + sc + depth > z->limit) { /* too large even alone: the symbol in pieces */
            rc = add_pieces(p, z, used, si, sc - PART_SYMBOL_BYTES, (uint32_t)i);
            *used = depth + c;
            if (rc == 0 && *used > z->limit) rc = over(p, (uint32_t)i, *used);
            continue;
        }
        size_t path = cut ? depth : 0;
        rc = add_unit(p, z, used, c + sc, path, (uint32_t)i, 0);
    }
    return rc;
}

int repair_parts_plan(const calltree_t *t, const symtab_t *names, const repair_parts_sizes_t *z,
                      repair_parts_t *p)
{
    memset(p, 0, sizeof *p);
    size_t n = calltree_node_count(t), np = z->nkept + z->nuntreed;
    p->n = n;
    p->order = malloc((n ? n : 1) * sizeof *p->order);
    p->map = malloc((n ? n : 1) * sizeof *p->map);
    int rc = p->order && p->map ? 0 : ERR_NOMEM;
    if (rc == 0) rc = preorder(t, p->order, n);
    if (rc == 0) rc = first_namings(t, p);
    for (size_t i = 0; rc == 0 && i < n; i++)
        p->map[i] = CALLTREE_NONE;
    size_t used = 0;
    if (rc == 0) rc = open_part(p, 0, 0);
    if (rc == 0) rc = plan_nodes(t, names, z, p, &used);
    for (size_t j = 0; rc == 0 && j < np; j++)
        rc = add_unit(p, z, &used, j < z->nkept ? z->kept_bytes : z->untreed_bytes, 0, (uint32_t)n,
                      (uint32_t)j);
    if (rc == 0) {
        p->cut[p->nparts] = (uint32_t)n;
        p->pcut[p->nparts] = (uint32_t)np;
        p->np = np;
    }
    if (rc != 0) {
        uint32_t o = p->over;
        size_t ob = p->over_bytes;
        repair_parts_free(p);
        p->over = o;
        p->over_bytes = ob;
    }
    return rc;
}

/* Sets (or, back to CALLTREE_NONE, clears) map for the path to order[a]
 * and the run order[a, b): what part building touched. */
static void unmap(const calltree_t *t, const repair_parts_t *p, uint32_t a, uint32_t b)
{
    if (a < b)
        for (uint32_t v = calltree_parent(t, p->order[a]); v != CALLTREE_NONE;
             v = calltree_parent(t, v))
            p->map[v] = CALLTREE_NONE;
    for (uint32_t i = a; i < b; i++)
        p->map[p->order[i]] = CALLTREE_NONE;
}

/* The path from v's ancestor at depth anchor (dst's root) to v (v
 * excluded) into dst, without values. */
static int build_path(const calltree_t *t, const repair_parts_t *p, uint32_t v, uint32_t anchor,
                      calltree_t *dst)
{
    size_t len = depth_of(t, v) + 1;
    uint32_t *path = malloc(len * sizeof *path);
    if (path == NULL) return ERR_NOMEM;
    size_t k = 0;
    for (uint32_t u = calltree_parent(t, v); u != CALLTREE_NONE; u = calltree_parent(t, u))
        path[k++] = u; /* path[k] is at depth len - 2 - k */
    int rc = k > 0 && anchor > k - 1 ? ERR_INTERNAL : 0;
    if (rc == 0 && k > 0) {
        k -= anchor; /* the ancestors above the anchor are not sent */
        p->map[path[--k]] = 0;
    }
    while (rc == 0 && k > 0) {
        uint32_t u = path[--k];
        rc = calltree_child(dst, p->map[calltree_parent(t, u)], calltree_sym(t, u), &p->map[u]);
    }
    free(path);
    return rc;
}

/* The node dst's encoding ends with: the last child, down from the root. */
static uint32_t encoded_last(const calltree_t *dst)
{
    uint32_t v = 0;
    for (uint32_t c = calltree_first_child(dst, v); c != CALLTREE_NONE;
         c = calltree_first_child(dst, v)) {
        while (calltree_next_sibling(dst, c) != CALLTREE_NONE)
            c = calltree_next_sibling(dst, c);
        v = c;
    }
    return v;
}

/* Whether the receiver's path after the part of run order[a, b) built in
 * dst ends where the plan assumed (anchoring_t): at the end of the run's
 * first chain. */
static int ends_as_planned(const calltree_t *t, const repair_parts_t *p, uint32_t a, uint32_t b,
                           const calltree_t *dst)
{
    uint32_t c = a;
    while (c + 1 < b && calltree_parent(t, p->order[c + 1]) == p->order[c])
        c++;
    return encoded_last(dst) == p->map[p->order[c]];
}

int repair_parts_build(const calltree_t *t, repair_parts_t *p, uint32_t k, calltree_t *dst)
{
    if (k >= p->nparts) return ERR_INVALID_ARGUMENT;
    uint32_t a = p->cut[k], b = p->cut[k + 1];
    int rc = a < b ? build_path(t, p, p->order[a], p->anchor[k], dst) : 0;
    for (uint32_t i = a; rc == 0 && i < b; i++) {
        uint32_t v = p->order[i], up = calltree_parent(t, v);
        if (up == CALLTREE_NONE)
            p->map[v] = 0;
        else if (p->map[up] == CALLTREE_NONE)
            rc = ERR_INTERNAL; /* not in preorder */
        else
            rc = calltree_child(dst, p->map[up], calltree_sym(t, v), &p->map[v]);
        if (rc == 0 && calltree_self(t, v) != 0)
            calltree_add_self(dst, p->map[v], calltree_self(t, v));
    }
    /* a later part rooted below the root relies on where this one ends */
    if (rc == 0 && a < b && p->anchored && k + 1 < p->nparts && !ends_as_planned(t, p, a, b, dst))
        rc = ERR_INTERNAL;
    unmap(t, p, a, b);
    return rc;
}

int repair_parts_symbols(const calltree_t *t, const repair_parts_t *p, uint32_t k,
                         int (*fn)(void *ctx, uint64_t id), void *ctx)
{
    if (k >= p->nparts) return ERR_INVALID_ARGUMENT;
    const calltree_node_t *nodes = calltree_nodes(t);
    const uint64_t *syms = calltree_syms(t);
    int rc = 0;
    for (uint32_t i = p->cut[k]; rc == 0 && i < p->cut[k + 1]; i++) {
        uint32_t si = nodes[p->order[i]].sym_index;
        if (si != 0 && p->first[si] == i) rc = fn(ctx, syms[si]);
    }
    return rc;
}
