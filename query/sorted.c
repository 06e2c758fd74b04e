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
    const sorted_tree_t *st;
    const char **name, **file;
} sort_ctx_t;

static uint64_t sym_of(const sorted_tree_t *st, uint32_t i)
{
    return st->t ? calltree_sym(st->t, i) : st->sym[i];
}

static uint32_t parent_of(const sorted_tree_t *st, uint32_t i)
{
    return st->t ? calltree_parent(st->t, i) : st->parent[i];
}

static int kid_cmp(const void *a, const void *b, void *arg)
{
    const sort_ctx_t *c = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int r = strcmp(c->name[x], c->name[y]);
    if (r == 0) r = strcmp(c->file[x], c->file[y]);
    if (r == 0) {
        uint64_t sx = sym_of(c->st, x), sy = sym_of(c->st, y);
        r = sx < sy ? -1 : sx > sy;
    }
    return r;
}

/* Most nodes have a few children: those are sorted in place by insertion,
 * without qsort_r's setup and calls through a pointer per comparison. A
 * node's children have distinct symbols, so kid_cmp is a strict order and
 * either way gives the one same order. */
#define INSERTION_SORT_MAX 16

static void sort_kids(uint32_t *kids, size_t n, sort_ctx_t *c)
{
    if (n > INSERTION_SORT_MAX) {
        qsort_r(kids, n, sizeof *kids, kid_cmp, c);
        return;
    }
    for (size_t j = 1; j < n; j++) {
        uint32_t v = kids[j];
        size_t k = j;
        for (; k > 0 && kid_cmp(&kids[k - 1], &v, c) > 0; k--)
            kids[k] = kids[k - 1];
        kids[k] = v;
    }
}

/* Takes n bytes beside st's answer before they are allocated. */
static int take(sorted_tree_t *st, size_t n)
{
    int rc = st->out != NULL ? buf_beside_take(st->out, n) : 0;
    if (rc == 0) st->held += n;
    return rc;
}

static void give(sorted_tree_t *st, size_t n)
{
    if (st->out != NULL) buf_beside_give(st->out, n);
    st->held -= n;
}

/* Resolves names once per node; unknown symbols get text in st->unk. */
static int resolve_names(sorted_tree_t *st, const char **name, const char **file, char **unk)
{
    *unk = NULL;
    for (size_t i = 0; i < st->n; i++) {
        uint64_t sym = sym_of(st, (uint32_t)i);
        if (st->syms != NULL && symtab_get(st->syms, sym, &name[i], &file[i])) {
            if (file[i] == NULL) file[i] = "";
            continue;
        }
        int rc = *unk == NULL ? take(st, st->n * 32) : 0;
        if (rc != 0) return rc;
        if (*unk == NULL && (*unk = malloc(st->n * 32)) == NULL) return ERR_NOMEM;
        query_sym_name(NULL, sym, *unk + i * 32, &name[i], &file[i]);
    }
    return 0;
}

/* resolve_names once per symbol (st->sid): a kept tree names each of its
 * symbols at several nodes. */
static int resolve_names_sid(sorted_tree_t *st, const char **name, const char **file, char **unk)
{
    *unk = NULL;
    size_t tables = (st->nsid ? st->nsid : 1) * 2 * sizeof(char *);
    int rc = take(st, tables);
    if (rc != 0) return rc;
    const char **sname = calloc(st->nsid ? st->nsid : 1, sizeof *sname);
    const char **sfile = malloc((st->nsid ? st->nsid : 1) * sizeof *sfile);
    if (!sname || !sfile) rc = ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < st->n; i++) {
        uint32_t s = st->sid[i];
        if (sname[s] == NULL) {
            uint64_t sym = sym_of(st, (uint32_t)i);
            if (st->syms != NULL && symtab_get(st->syms, sym, &sname[s], &sfile[s])) {
                if (sfile[s] == NULL) sfile[s] = "";
            } else if (*unk == NULL && (rc = take(st, st->nsid * 32)) != 0) {
                break;
            } else if (*unk == NULL && (*unk = malloc(st->nsid * 32)) == NULL) {
                rc = ERR_NOMEM;
                break;
            } else {
                query_sym_name(NULL, sym, *unk + (size_t)s * 32, &sname[s], &sfile[s]);
            }
        }
        name[i] = sname[s];
        file[i] = sfile[s];
    }
    free(sname);
    free(sfile);
    give(st, tables);
    return rc;
}

/* st->t or st->sym and st->parent, st->syms and st->n set. */
static int build(sorted_tree_t *st)
{
    /* off, kids, name and file, and fill while the children are placed */
    size_t arrays = 2 * (st->n + 1) * sizeof(uint32_t) + 2 * st->n * sizeof(char *);
    int rc = take(st, arrays + st->n * sizeof(uint32_t));
    if (rc != 0) {
        query_sorted_tree_free(st);
        return rc;
    }
    st->off = calloc(st->n + 1, sizeof *st->off);
    st->kids = malloc((st->n + 1) * sizeof *st->kids);
    st->name = malloc(st->n * sizeof *st->name);
    st->file = malloc(st->n * sizeof *st->file);
    if (!st->off || !st->kids || !st->name || !st->file) {
        query_sorted_tree_free(st);
        return ERR_NOMEM;
    }
    rc = st->sid ? resolve_names_sid(st, st->name, st->file, &st->unk)
                 : resolve_names(st, st->name, st->file, &st->unk);
    if (rc != 0) {
        query_sorted_tree_free(st);
        return rc;
    }
    for (uint32_t i = 1; i < st->n; i++)
        st->off[parent_of(st, i) + 1]++;
    for (size_t i = 0; i < st->n; i++)
        st->off[i + 1] += st->off[i];
    uint32_t *fill = calloc(st->n, sizeof *fill);
    if (fill == NULL) {
        query_sorted_tree_free(st);
        return ERR_NOMEM;
    }
    for (uint32_t i = 1; i < st->n; i++) {
        uint32_t p = parent_of(st, i);
        st->kids[st->off[p] + fill[p]++] = i;
    }
    free(fill);
    give(st, st->n * sizeof(uint32_t));
    sort_ctx_t c = {.st = st, .name = st->name, .file = st->file};
    for (size_t i = 0; i < st->n; i++)
        sort_kids(st->kids + st->off[i], st->off[i + 1] - st->off[i], &c);
    return 0;
}

int query_sorted_tree_build(sorted_tree_t *st, const calltree_t *t, const symtab_t *syms,
                            buf_t *out)
{
    memset(st, 0, sizeof *st);
    st->out = out;
    st->t = t;
    st->syms = syms;
    st->n = calltree_node_count(t);
    return build(st);
}

int query_sorted_tree_build_kept(sorted_tree_t *st, const query_kept_t *k, const symtab_t *syms,
                                 buf_t *out)
{
    memset(st, 0, sizeof *st);
    st->out = out;
    st->sym = k->sym;
    st->parent = k->parent;
    st->sid = k->sid;
    st->nsid = k->nsid;
    st->syms = syms;
    st->n = k->n;
    return build(st);
}

void query_sorted_tree_free(sorted_tree_t *st)
{
    free(st->off);
    free(st->kids);
    free(st->name);
    free(st->file);
    free(st->unk);
    if (st->out != NULL) buf_beside_give(st->out, st->held);
    memset(st, 0, sizeof *st);
}
