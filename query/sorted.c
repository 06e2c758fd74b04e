/* sorted.c — a call tree's children ordered by (name, file, symbol id).
 *
 * Node indices in a merged tree depend on the order blocks were merged in;
 * ordering children by content makes every encoder's bytes depend only on the
 * tree's content, so every node of a cluster renders the same answer.
 */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>
#include <string.h>

#include "common/assist.h"
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

/* A symbol number the symbols do not name, until the build's thread
 * writes its text (name_unnamed). */
static const char sym_unnamed[] = "";

/* Every node's name and file by its symbol number, each number looked up
 * once (sname, sfile: per number, NULL until met); a number the symbols
 * lack gets sym_unnamed. Reads st->syms only: a helper may run it. */
static void name_by_sid(const sorted_tree_t *st, const char **sname, const char **sfile)
{
    for (size_t i = 0; i < st->n; i++) {
        uint32_t s = st->sid[i];
        if (sname[s] == NULL) {
            if (st->syms == NULL ||
                !symtab_get(st->syms, sym_of(st, (uint32_t)i), &sname[s], &sfile[s])) {
                sname[s] = sym_unnamed;
                sfile[s] = "";
            } else if (sfile[s] == NULL) {
                sfile[s] = "";
            }
        }
        st->name[i] = sname[s];
        st->file[i] = sfile[s];
    }
}

/* The text of the symbols name_by_sid left unnamed ("unknown 0x<id>", in
 * st->unk, 32 bytes a symbol number). */
static int name_unnamed(sorted_tree_t *st, const char **sname, const char **sfile)
{
    for (size_t i = 0; i < st->n; i++) {
        if (st->name[i] != sym_unnamed) continue;
        uint32_t s = st->sid[i];
        if (sname[s] == sym_unnamed) {
            int rc = st->unk == NULL ? take(st, st->nsid * 32) : 0;
            if (rc != 0) return rc;
            if (st->unk == NULL && (st->unk = malloc(st->nsid * 32)) == NULL) return ERR_NOMEM;
            query_sym_name(NULL, sym_of(st, (uint32_t)i), st->unk + (size_t)s * 32, &sname[s],
                           &sfile[s]);
        }
        st->name[i] = sname[s];
        st->file[i] = sfile[s];
    }
    return 0;
}

/* Trees of fewer nodes than this are built on one thread: a part handed
 * to a helper costs a few microseconds, about what such a tree's names
 * and sorts take. */
#define SORTED_ASSIST_MIN_NODES 2048

/* A build's parts beside a helper (assist_start; run here when none is
 * idle): the names by symbol number while this thread links the children,
 * then the later half of the children's sorts. */
typedef struct build_part {
    sorted_tree_t *st;
    const char **sname, **sfile;
    size_t lo, hi; /* the nodes whose children it sorts */
} build_part_t;

static void names_run(void *arg)
{
    build_part_t *p = arg;
    name_by_sid(p->st, p->sname, p->sfile);
}

static void sort_range(sorted_tree_t *st, size_t lo, size_t hi)
{
    sort_ctx_t c = {.st = st, .name = st->name, .file = st->file};
    for (size_t i = lo; i < hi; i++)
        sort_kids(st->kids + st->off[i], st->off[i + 1] - st->off[i], &c);
}

static void sort_run(void *arg)
{
    build_part_t *p = arg;
    sort_range(p->st, p->lo, p->hi);
}

/* Each node's children in kids, grouped by parent (off). */
static int link_kids(sorted_tree_t *st)
{
    for (uint32_t i = 1; i < st->n; i++)
        st->off[parent_of(st, i) + 1]++;
    for (size_t i = 0; i < st->n; i++)
        st->off[i + 1] += st->off[i];
    int rc = take(st, st->n * sizeof(uint32_t));
    uint32_t *fill = rc == 0 ? calloc(st->n, sizeof *fill) : NULL;
    if (fill == NULL) {
        if (rc == 0) give(st, st->n * sizeof(uint32_t));
        return rc != 0 ? rc : ERR_NOMEM;
    }
    for (uint32_t i = 1; i < st->n; i++) {
        uint32_t p = parent_of(st, i);
        st->kids[st->off[p] + fill[p]++] = i;
    }
    free(fill);
    give(st, st->n * sizeof(uint32_t));
    return 0;
}

/* The names by symbol number (st->sid): on a helper of assist (NULL: none)
 * while this thread links the children. */
static int names_and_links_sid(sorted_tree_t *st, assist_t *assist)
{
    size_t tables = (st->nsid ? st->nsid : 1) * 2 * sizeof(char *);
    int rc = take(st, tables);
    if (rc != 0) return rc;
    build_part_t part = {.st = st};
    part.sname = calloc(st->nsid ? st->nsid : 1, sizeof *part.sname);
    part.sfile = malloc((st->nsid ? st->nsid : 1) * sizeof *part.sfile);
    if (part.sname == NULL || part.sfile == NULL) {
        rc = ERR_NOMEM;
    } else if (assist != NULL) {
        assist_task_t task;
        assist_start(assist, &task, names_run, &part);
        rc = link_kids(st);
        assist_join(assist, &task);
    } else {
        names_run(&part);
        rc = link_kids(st);
    }
    if (rc == 0) rc = name_unnamed(st, part.sname, part.sfile);
    free(part.sname);
    free(part.sfile);
    give(st, tables);
    return rc;
}

/* Every node's children sorted: the later half (by children) on a helper
 * of assist (NULL: none). */
static void sort_all(sorted_tree_t *st, assist_t *assist)
{
    if (assist == NULL) {
        sort_range(st, 0, st->n);
        return;
    }
    size_t mid = 0;
    while (mid < st->n && st->off[mid] < (st->n - 1) / 2)
        mid++;
    build_part_t part = {.st = st, .lo = mid, .hi = st->n};
    assist_task_t task;
    assist_start(assist, &task, sort_run, &part);
    sort_range(st, 0, mid);
    assist_join(assist, &task);
}

/* st->t or st->sym and st->parent, st->syms and st->n set; with st->sid
 * and a large tree, parts on a helper of assist (NULL: none). */
static int build(sorted_tree_t *st, assist_t *assist)
{
    /* off, kids, name and file (and fill while the children are linked) */
    size_t arrays = 2 * (st->n + 1) * sizeof(uint32_t) + 2 * st->n * sizeof(char *);
    int rc = take(st, arrays);
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
    if (st->sid == NULL || st->n < SORTED_ASSIST_MIN_NODES) assist = NULL;
    if (st->sid != NULL) {
        rc = names_and_links_sid(st, assist);
    } else {
        rc = resolve_names(st, st->name, st->file, &st->unk);
        if (rc == 0) rc = link_kids(st);
    }
    if (rc != 0) {
        query_sorted_tree_free(st);
        return rc;
    }
    sort_all(st, assist);
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
    return build(st, NULL);
}

int query_sorted_tree_build_kept(sorted_tree_t *st, const query_kept_t *k, const symtab_t *syms,
                                 assist_t *assist, buf_t *out)
{
    memset(st, 0, sizeof *st);
    st->out = out;
    st->sym = k->sym;
    st->parent = k->parent;
    st->sid = k->sid;
    st->nsid = k->nsid;
    st->syms = syms;
    st->n = k->n;
    return build(st, assist);
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
