/* sorted.c — a call tree's children ordered by (name, file, symbol id).
 *
 * Node indices in a merged tree depend on the order blocks were merged in;
 * ordering children by content makes every encoder's bytes depend only on the
 * tree's content, so every node of a cluster renders the same answer.
 */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

typedef struct sort_ctx {
    const calltree_t *t;
    const char **name, **file;
} sort_ctx_t;

static int kid_cmp(const void *a, const void *b, void *arg)
{
    const sort_ctx_t *c = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int r = strcmp(c->name[x], c->name[y]);
    if (r == 0) r = strcmp(c->file[x], c->file[y]);
    if (r == 0) {
        uint64_t sx = calltree_sym(c->t, x), sy = calltree_sym(c->t, y);
        r = sx < sy ? -1 : sx > sy;
    }
    return r;
}

/* Resolves names once per node; unknown symbols get text in st->unk. */
static int resolve_names(sorted_tree_t *st, const char **name, const char **file, char **unk)
{
    *unk = NULL;
    for (size_t i = 0; i < st->n; i++) {
        uint64_t sym = calltree_sym(st->t, (uint32_t)i);
        if (st->syms != NULL && symtab_get(st->syms, sym, &name[i], &file[i])) {
            if (file[i] == NULL) file[i] = "";
            continue;
        }
        if (*unk == NULL && (*unk = malloc(st->n * 32)) == NULL) return ERR_NOMEM;
        query_sym_name(NULL, sym, *unk + i * 32, &name[i], &file[i]);
    }
    return 0;
}

int query_sorted_tree_build(sorted_tree_t *st, const calltree_t *t, const symtab_t *syms)
{
    memset(st, 0, sizeof *st);
    st->t = t;
    st->syms = syms;
    st->n = calltree_node_count(t);
    st->off = calloc(st->n + 1, sizeof *st->off);
    st->kids = malloc((st->n + 1) * sizeof *st->kids);
    st->name = malloc(st->n * sizeof *st->name);
    st->file = malloc(st->n * sizeof *st->file);
    if (!st->off || !st->kids || !st->name || !st->file) {
        query_sorted_tree_free(st);
        return ERR_NOMEM;
    }
    int rc = resolve_names(st, st->name, st->file, &st->unk);
    if (rc != 0) {
        query_sorted_tree_free(st);
        return rc;
    }
    for (uint32_t i = 1; i < st->n; i++)
        st->off[calltree_parent(t, i) + 1]++;
    for (size_t i = 0; i < st->n; i++)
        st->off[i + 1] += st->off[i];
    uint32_t *fill = calloc(st->n, sizeof *fill);
    if (fill == NULL) {
        query_sorted_tree_free(st);
        return ERR_NOMEM;
    }
    for (uint32_t i = 1; i < st->n; i++) {
        uint32_t p = calltree_parent(t, i);
        st->kids[st->off[p] + fill[p]++] = i;
    }
    free(fill);
    sort_ctx_t c = {.t = t, .name = st->name, .file = st->file};
    for (size_t i = 0; i < st->n; i++)
        if (st->off[i + 1] - st->off[i] > 1)
            qsort_r(st->kids + st->off[i], st->off[i + 1] - st->off[i], sizeof(uint32_t), kid_cmp,
                    &c);
    return 0;
}

void query_sorted_tree_free(sorted_tree_t *st)
{
    free(st->off);
    free(st->kids);
    free(st->name);
    free(st->file);
    free(st->unk);
    memset(st, 0, sizeof *st);
}
