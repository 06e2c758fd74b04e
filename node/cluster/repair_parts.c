/* repair_parts.c — one window's residual in parts (repair_int.h;
 * docs/cluster.md, "Streaming whole windows").
 *
 * A window whose residual tree with its symbols takes more than a share of
 * --max-message-bytes cannot travel in one STREAM answer. Its nodes are
 * laid out in preorder and cut into runs of at most a budget of bytes each
 * (PART_NODE_BYTES a node, a symbol's name, file and PART_SYMBOL_BYTES the
 * first time a run names it). A part is the path from the root to its run's
 * first node (those ancestors without their values) and the run with its
 * values: in preorder every ancestor of a run's node that lies before the
 * run is an ancestor of its first node, so the part is a tree, and the
 * parts merged are the residual exactly. The plan depends only on the tree
 * and the symbol names, so a source that builds the same residual again
 * (a later request) cuts it the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "node/cluster/repair_int.h"

void repair_parts_free(repair_parts_t *p)
{
    free(p->order);
    free(p->cut);
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

static size_t sym_cost(const symtab_t *names, uint64_t id)
{
    const char *name = NULL, *file = NULL;
    size_t c = PART_SYMBOL_BYTES;
    if (names != NULL && symtab_get(names, id, &name, &file) == 0)
        c += (name ? strlen(name) : 0) + (file ? strlen(file) : 0);
    return c;
}

int repair_parts_plan(const calltree_t *t, const symtab_t *names, size_t budget, repair_parts_t *p)
{
    memset(p, 0, sizeof *p);
    size_t n = calltree_node_count(t), nsyms = calltree_sym_count(t);
    const calltree_node_t *nodes = calltree_nodes(t);
    const uint64_t *syms = calltree_syms(t);
    p->order = malloc((n ? n : 1) * sizeof *p->order);
    p->cut = malloc((n + 2) * sizeof *p->cut);
    uint32_t *seen = calloc(nsyms ? nsyms : 1, sizeof *seen); /* 1 + the last part naming it */
    int rc = p->order != NULL && p->cut != NULL && seen != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) rc = preorder(t, p->order, n);
    p->n = n;
    size_t used = 0;
    p->cut[0] = 0;
    p->nparts = 1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint32_t v = p->order[i], si = nodes[v].sym_index;
        size_t c = PART_NODE_BYTES + (seen[si] != p->nparts ? sym_cost(names, syms[si]) : 0);
        if (used > 0 && used + c > budget) { /* a new part from v */
            p->cut[p->nparts++] = (uint32_t)i;
            used = 0;
            c = PART_NODE_BYTES + sym_cost(names, syms[si]);
        }
        seen[si] = p->nparts;
        used += c;
    }
    if (rc == 0) p->cut[p->nparts] = (uint32_t)n;
    free(seen);
    if (rc != 0) repair_parts_free(p);
    return rc;
}

int repair_parts_build(const calltree_t *t, const repair_parts_t *p, uint32_t k, calltree_t *dst)
{
    if (k >= p->nparts) return ERR_INVALID_ARGUMENT;
    size_t n = p->n;
    uint32_t *map = malloc((n ? n : 1) * sizeof *map), *path = malloc((n ? n : 1) * sizeof *path);
    int rc = map != NULL && path != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        map[i] = CALLTREE_NONE;
    uint32_t a = p->cut[k], b = p->cut[k + 1];
    if (rc == 0 && a < b) { /* the path to the run's first node, without values */
        size_t len = 0;
        for (uint32_t v = calltree_parent(t, p->order[a]); v != CALLTREE_NONE;
             v = calltree_parent(t, v))
            path[len++] = v;
        while (rc == 0 && len > 0) {
            uint32_t v = path[--len], up = calltree_parent(t, v);
            if (up == CALLTREE_NONE)
                map[v] = 0;
            else
                rc = calltree_child(dst, map[up], calltree_sym(t, v), &map[v]);
        }
    }
    for (uint32_t i = a; rc == 0 && i < b; i++) {
        uint32_t v = p->order[i], up = calltree_parent(t, v);
        if (up == CALLTREE_NONE)
            map[v] = 0;
        else if (map[up] == CALLTREE_NONE)
            rc = ERR_INTERNAL; /* not in preorder */
        else
            rc = calltree_child(dst, map[up], calltree_sym(t, v), &map[v]);
        if (rc == 0 && calltree_self(t, v) != 0)
            calltree_add_self(dst, map[v], calltree_self(t, v));
    }
    free(map);
    free(path);
    return rc;
}
