/* top.c — the top functions answer (GET /api/top, docs/api.md): self and
 * total per function with percentages and, for CPU types, cores.
 *
 * Computed from the merged tree before any maxNodes truncation: truncation
 * folds small frames into `other`, which would move their values out of
 * their functions. A function is a symbol (symbol ids are content hashes of
 * name and file). Its self is the sum of the selves of its nodes; its total
 * is the sum of the totals of its outermost nodes only (a node with no
 * ancestor of the same function), so a stack in which the function recurses
 * counts once. One walk in preorder keeps, per function, how many of the
 * current node's ancestors belong to it.
 *
 * A search keeps the functions whose name contains it, compared as the web
 * UI's flame-graph search compares (search.c), so the table and the graph
 * find the same functions.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/u64map.h"
#include "common/varint.h"
#include "query/query_int.h"

typedef query_fn_t fn_t;

typedef struct top {
    const calltree_t *t;
    fn_t *fns;
    size_t nfns, capfns;
    size_t count;     /* functions in the tree (nfns is fewer after a search) */
    uint32_t *fn_of;  /* per node: index into fns (root unused) */
    uint32_t *active; /* per function: ancestors of the walk's node in it */
    char *unk;        /* names of unknown symbols: 32 bytes per function, or NULL */
    size_t unk_held;  /* its bytes taken from charge */
    int64_t total;    /* the tree's root's, plus the functions added beside it (add_extra) */
    const query_report_charge_t *charge; /* or NULL: fns is charged to it as it grows */
    size_t fns_held;                     /* the bytes of fns taken from charge */
} top_t;

/* Takes n bytes from tp's charge (none: nothing); a refusal is what take returned. */
static int top_take(const top_t *tp, size_t n)
{
    if (tp->charge == NULL || tp->charge->take == NULL || n == 0) return 0;
    return tp->charge->take(tp->charge->ctx, n);
}

static void top_give(const top_t *tp, size_t n)
{
    if (tp->charge != NULL && tp->charge->take != NULL && tp->charge->give != NULL && n > 0)
        tp->charge->give(tp->charge->ctx, n);
}

/* Makes room for one more function: first for every symbol t names (its
 * functions are at most those: the table then never grows), then twice
 * as many; the grown table is taken from the charge first, beside the old
 * one (realloc may copy it), then the old one given back. */
static int fns_room(top_t *tp)
{
    if (tp->nfns < tp->capfns) return 0;
    size_t was = tp->capfns, syms = calltree_sym_count(tp->t);
    size_t cap = was > 0 ? was * 2 : syms > 256 ? syms : 256;
    int rc = top_take(tp, cap * sizeof *tp->fns);
    if (rc != 0) return rc;
    rc = GROW_FROM(tp->fns, tp->capfns, tp->nfns + 1, GROW_UNLIMITED, cap);
    top_give(tp, (rc == 0 ? was : cap) * sizeof *tp->fns);
    if (rc == 0 && tp->charge != NULL && tp->charge->take != NULL)
        tp->fns_held += (tp->capfns - was) * sizeof *tp->fns;
    return rc;
}

/* fn_of for every node, and one fn_t per distinct symbol, numbered in the
 * order the nodes first name them: by the tree's own symbol index (its
 * symbols are distinct), so no hash of a symbol id per node. */
static int index_functions(top_t *tp)
{
    size_t n = calltree_node_count(tp->t), nsyms = calltree_sym_count(tp->t);
    const calltree_node_t *nodes = calltree_nodes(tp->t);
    const uint64_t *syms = calltree_syms(tp->t);
    uint32_t *fn_of_sym = malloc((nsyms ? nsyms : 1) * sizeof *fn_of_sym);
    tp->fn_of = malloc(n * sizeof *tp->fn_of);
    int rc = fn_of_sym != NULL && tp->fn_of != NULL ? 0 : ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < nsyms; i++)
        fn_of_sym[i] = UINT32_MAX;
    for (uint32_t i = 1; rc == 0 && i < n; i++) {
        uint32_t si = nodes[i].sym_index, *f = &fn_of_sym[si];
        if (*f == UINT32_MAX && (rc = fns_room(tp)) == 0) {
            *f = (uint32_t)tp->nfns;
            tp->fns[tp->nfns++] = (fn_t){.sym = syms[si]};
        }
        tp->fn_of[i] = *f;
    }
    free(fn_of_sym);
    if (rc == 0 && (tp->active = calloc(tp->nfns + 1, sizeof *tp->active)) == NULL) rc = ERR_NOMEM;
    return rc;
}

/* Preorder over the tree's first-child / next-sibling links, leaving each
 * node (and its function's ancestor count) once its subtree is done. The
 * walk reads the tree's arrays: ERR_NOMEM when they cannot be made. */
static int walk(top_t *tp)
{
    const calltree_t *t = tp->t;
    const calltree_links_t *links = calltree_links(t);
    const calltree_node_t *nodes = calltree_nodes(t);
    const int64_t *totals = calltree_totals(t), *self = NULL;
    int64_t scale = 1;
    if (links == NULL || totals == NULL || calltree_selves_scaled(t, &self, &scale) != 0 ||
        self == NULL)
        return ERR_NOMEM;
    const uint32_t *fn_of = tp->fn_of;
    uint32_t *active = tp->active;
    fn_t *fns = tp->fns;
    uint32_t v = links[0].first_child;
    while (v != CALLTREE_NONE) {
        fn_t *f = &fns[fn_of[v]];
        f->self += (int64_t)((uint64_t)self[v] * (uint64_t)scale); /* calltree_self's */
        if (active[fn_of[v]]++ == 0) f->total += totals[v];
        if (links[v].first_child != CALLTREE_NONE) {
            v = links[v].first_child;
            continue;
        }
        for (;;) {
            active[fn_of[v]]--;
            if (links[v].next_sibling != CALLTREE_NONE) {
                v = links[v].next_sibling;
                break;
            }
            v = nodes[v].parent;
            if (v == 0) {
                v = CALLTREE_NONE;
                break;
            }
        }
    }
    return 0;
}

/* ---- functions of forests: a share's sums without its tree ----
 *
 * A function's self and total over a merged tree are sums over the paths
 * it is on (outermost ones for total), and a merged node's values are the
 * sums of that path's values in every part merged; so a function's values
 * over the merge are the sums of its values over each part. A share sums
 * them over its tokens' forests and never builds their tree. */

typedef struct fns_acc {
    query_fn_t *v;
    size_t n, cap; /* cap: a bound set once (every forest's distinct symbols) */
    u64map_t map;  /* symbol -> index in v, over the forests so far (more than one) */
    int64_t total; /* the forests' roots' totals */
} fns_acc_t;

/* Adds forest f's functions to a: a preorder walk over its kid lists
 * counting, per function, how many of the node's ancestors are in it (as
 * walk does over a tree); fn_of (f->nsyms) and active (a->cap) scratch. */
static int tab_functions(fns_acc_t *a, const storage_merged_tab_t *f, int mapped, uint32_t *fn_of,
                         uint32_t *active)
{
    for (size_t i = 0; i < f->nsyms; i++)
        fn_of[i] = UINT32_MAX;
    a->total = (int64_t)((uint64_t)a->total + (uint64_t)f->total[0]);
    uint32_t v = f->first_kid[0];
    while (v != STORAGE_NO_KID) {
        uint32_t *fi = &fn_of[f->symno[v]];
        if (*fi == UINT32_MAX) { /* the forest's first node of this symbol */
            uint32_t at = (uint32_t)a->n;
            int put = mapped ? u64map_get_or_put(&a->map, f->sym[v], at, &at) : 1;
            if (put < 0) return put;
            if (put == 1) {
                if (a->n == a->cap) return ERR_INTERNAL; /* past the bound: cannot be */
                a->v[a->n++] = (query_fn_t){.sym = f->sym[v]};
            }
            *fi = at;
        }
        query_fn_t *fn = &a->v[*fi];
        fn->self = (int64_t)((uint64_t)fn->self + (uint64_t)f->self[v]);
        if (active[*fi]++ == 0) fn->total = (int64_t)((uint64_t)fn->total + (uint64_t)f->total[v]);
        if (f->first_kid[v] != STORAGE_NO_KID) {
            v = f->first_kid[v];
            continue;
        }
        for (;;) {
            active[fn_of[f->symno[v]]]--;
            if (f->next_sib[v] != STORAGE_NO_KID) {
                v = f->next_sib[v];
                break;
            }
            v = f->parent[v];
            if (v == 0) {
                v = STORAGE_NO_KID;
                break;
            }
        }
    }
    return 0;
}

/* Bytes fns_of_tabs holds at most besides the table it answers. */
static size_t tabs_scratch_bytes(size_t most, size_t nsyms, int mapped)
{
    return (mapped ? u64map_init_bytes(most) : 0) + (nsyms + most) * sizeof(uint32_t);
}

int query_fns_of_tabs(const storage_merged_tab_t *tabs, size_t ntabs, alloc_charge_t *charge,
                      query_fn_t **out, size_t *n, int64_t *total)
{
    *out = NULL;
    *n = 0;
    *total = 0;
    size_t most = 0, nsyms = 0;
    for (size_t i = 0; i < ntabs; i++) {
        if (tabs[i].symno == NULL || tabs[i].parent == NULL || !tabs[i].nonneg)
            return ERR_INVALID_ARGUMENT;
        most += tabs[i].nsyms;
        if (tabs[i].nsyms > nsyms) nsyms = tabs[i].nsyms;
    }
    int mapped = ntabs > 1;
    size_t table = most * sizeof(query_fn_t), scratch = tabs_scratch_bytes(most, nsyms, mapped);
    int rc = charge != NULL ? alloc_charge_add(charge, table + scratch) : 0;
    if (rc != 0) return rc;
    fns_acc_t a = {.cap = most};
    a.v = malloc((most ? most : 1) * sizeof *a.v);
    uint32_t *fn_of = malloc((nsyms ? nsyms : 1) * sizeof *fn_of);
    uint32_t *active = calloc(most ? most : 1, sizeof *active);
    rc = a.v != NULL && fn_of != NULL && active != NULL ? 0 : ERR_NOMEM;
    if (rc == 0 && mapped) rc = u64map_init(&a.map, most);
    for (size_t i = 0; rc == 0 && i < ntabs; i++)
        rc = tab_functions(&a, &tabs[i], mapped, fn_of, active);
    u64map_free(&a.map);
    free(fn_of);
    free(active);
    if (charge != NULL) alloc_charge_sub(charge, scratch);
    if (rc != 0) {
        free(a.v);
        if (charge != NULL) alloc_charge_sub(charge, table);
        return rc;
    }
    query_fn_t *fit = a.n > 0 ? realloc(a.v, a.n * sizeof *a.v) : NULL;
    if (fit != NULL || a.n == 0) {
        if (a.n == 0) free(a.v);
        a.v = fit;
        if (charge != NULL) alloc_charge_sub(charge, (most - a.n) * sizeof *a.v);
    } /* else it stays as large, and charged so */
    *out = a.v;
    *n = a.n;
    *total = a.total;
    return 0;
}

static int resolve_names(top_t *tp, const symtab_t *syms)
{
    for (size_t i = 0; i < tp->nfns; i++) {
        fn_t *f = &tp->fns[i];
        if (syms != NULL && symtab_get(syms, f->sym, &f->name, &f->file)) {
            if (f->file == NULL) f->file = "";
            continue;
        }
        if (tp->unk == NULL) { /* taken from the charge first, given back with it */
            int rc = top_take(tp, tp->nfns * 32);
            if (rc != 0) return rc;
            tp->unk_held = tp->nfns * 32;
            if ((tp->unk = malloc(tp->unk_held)) == NULL) return ERR_NOMEM;
        }
        query_sym_name(NULL, f->sym, tp->unk + i * 32, &f->name, &f->file);
    }
    return 0;
}

/* Keeps, in place and in order, the functions whose name contains search. */
static int keep_matching(top_t *tp, const char *search)
{
    query_search_t m;
    int rc = query_search_init(&m, search);
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < tp->nfns; i++) {
        int hit;
        rc = query_search_match(&m, tp->fns[i].name, &hit);
        if (rc == 0 && hit) tp->fns[kept++] = tp->fns[i];
    }
    if (rc == 0) tp->nfns = kept;
    query_search_free(&m);
    return rc;
}

static int cmp_i64_desc(int64_t a, int64_t b)
{
    return a < b ? 1 : a > b ? -1 : 0;
}

static int by_self(const void *a, const void *b)
{
    const fn_t *x = a, *y = b;
    int r = cmp_i64_desc(x->self, y->self);
    if (r == 0) r = cmp_i64_desc(x->total, y->total);
    if (r == 0) r = strcmp(x->name, y->name);
    if (r == 0) r = strcmp(x->file, y->file);
    if (r == 0) r = x->sym < y->sym ? -1 : x->sym > y->sym;
    return r;
}

static int by_total(const void *a, const void *b)
{
    const fn_t *x = a, *y = b;
    int r = cmp_i64_desc(x->total, y->total);
    return r != 0 ? r : by_self(a, b);
}

static double pct(int64_t v, int64_t total)
{
    return total != 0 ? 100.0 * (double)v / (double)total : 0.0;
}

/* CPU-seconds per second of the range (0 for an empty range, which reads
 * no window either). */
static double cores(int64_t ns, int64_t range_s)
{
    return range_s > 0 ? (double)ns / 1e9 / (double)range_s : 0.0;
}

static int write_fn(buf_t *out, const fn_t *f, int64_t total, int cpu, int64_t range_s)
{
    int rc = buf_append_str(out, "{\"name\":");
    if (rc == 0) rc = buf_append_json_string(out, f->name, strlen(f->name));
    if (rc == 0 && f->file[0] != 0) rc = buf_append_str(out, ",\"file\":");
    if (rc == 0 && f->file[0] != 0) rc = buf_append_json_string(out, f->file, strlen(f->file));
    if (rc == 0)
        rc = buf_printf(out,
                        ",\"self\":%lld,\"total\":%lld,\"selfPercent\":%.15g,"
                        "\"totalPercent\":%.15g",
                        (long long)f->self, (long long)f->total, pct(f->self, total),
                        pct(f->total, total));
    if (rc == 0 && cpu)
        rc = buf_printf(out, ",\"selfCores\":%.15g,\"totalCores\":%.15g", cores(f->self, range_s),
                        cores(f->total, range_s));
    return rc != 0 ? rc : buf_append_byte(out, '}');
}

static int write_top(buf_t *out, const top_t *tp, const char *profile_type,
                     const query_top_opts_t *o)
{
    ptype_t pt;
    int typed = profile_type != NULL && query_ptype_parse(profile_type, &pt) == 0;
    const char *unit = typed ? pt.sample_unit : "";
    int cpu = typed && strcmp(pt.sample_type, "cpu") == 0 && strcmp(unit, "nanoseconds") == 0;
    int64_t range_s = o->range_s;
    int64_t total = tp->total;
    int rc = buf_append_str(out, "{\"unit\":");
    if (rc == 0) rc = buf_append_json_string(out, unit, strlen(unit));
    if (rc == 0)
        rc = buf_printf(out, ",\"total\":%lld,\"rangeSeconds\":%lld", (long long)total,
                        (long long)range_s);
    if (rc == 0 && cpu) rc = buf_printf(out, ",\"cores\":%.15g", cores(total, range_s));
    if (rc == 0 && !cpu) rc = buf_append_str(out, ",\"cores\":null");
    if (rc == 0) /* average: the values are the average profile of the range (a gauge) */
        rc = buf_printf(out, ",\"aggregationType\":\"%s\"",
                        query_type_average(profile_type) ? "average" : "sum");
    if (rc == 0) rc = buf_printf(out, ",\"functionCount\":%zu", tp->count);
    if (rc == 0 && o->search != NULL && o->search[0] != 0)
        rc = buf_printf(out, ",\"matchCount\":%zu", tp->nfns);
    if (rc == 0) rc = buf_append_str(out, ",\"functions\":[");
    size_t n = o->limit < tp->nfns ? o->limit : tp->nfns;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = write_fn(out, &tp->fns[i], total, cpu, range_s);
    }
    return rc != 0 ? rc : buf_append_str(out, "]}");
}

/* What collect holds for t besides its function table (charged as it
 * grows): the function of each symbol and fn_of (one per node), then
 * fn_of and active (one per function). */
static size_t collect_bound(const calltree_t *t)
{
    return (calltree_node_count(t) + calltree_sym_count(t)) * sizeof(uint32_t);
}

/* Fills tp->fns (and tp->nfns) with t's functions, its working tables
 * taken from tp's charge while they are made (the function table is taken
 * as it grows and stays taken): their bound while the functions are
 * numbered, then fn_of and active while the walk runs. The walk's first read makes t's
 * totals (8 bytes a node) when it has none: taken before, and what t grew
 * by stays taken (*totals: t's from then on). */
static int collect_charged(top_t *tp, size_t *totals)
{
    size_t n = calltree_node_count(tp->t), work = collect_bound(tp->t);
    *totals = 0;
    int rc = top_take(tp, work);
    if (rc != 0) return rc;
    rc = index_functions(tp);                            /* the symbols' table is freed */
    size_t kept = (n + tp->nfns + 1) * sizeof(uint32_t); /* fn_of and active */
    if (work > kept) top_give(tp, work - kept);
    work = work > kept ? kept : work;
    size_t most = calltree_totals_bytes(tp->t), was = calltree_mem_bytes(tp->t);
    int took = rc == 0 && (rc = top_take(tp, most)) == 0;
    if (rc == 0) rc = walk(tp);
    size_t grew = calltree_mem_bytes(tp->t) - was;
    if (took) top_give(tp, most > grew ? most - grew : 0);
    if (took) *totals = most > grew ? grew : most;
    free(tp->fn_of);
    free(tp->active);
    tp->fn_of = tp->active = NULL;
    top_give(tp, work);
    return rc;
}

int query_fns_collect(const calltree_t *t, const query_report_charge_t *charge, query_fn_t **out,
                      size_t *n, size_t *held, size_t *totals)
{
    top_t tp = {.t = t, .charge = charge};
    int rc = collect_charged(&tp, totals);
    if (rc != 0) {
        free(tp.fns);
        top_give(&tp, tp.fns_held);
        return rc;
    }
    *out = tp.fns;
    *n = tp.nfns;
    *held = tp.fns_held;
    return 0;
}

/* A charge that takes beside the answer ctx (buf_beside_take). */
static int beside_take(void *ctx, size_t n)
{
    return buf_beside_take(ctx, n);
}

static void beside_give(void *ctx, size_t n)
{
    buf_beside_give(ctx, n);
}

/* A heap of function indices whose top is the one that sorts last. */
static void sift_down(const fn_t *fns, uint32_t *h, size_t n, size_t i,
                      int (*cmp)(const void *, const void *))
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && cmp(&fns[h[c + 1]], &fns[h[c]]) > 0) c++;
        if (cmp(&fns[h[c]], &fns[h[i]]) <= 0) return;
        uint32_t x = h[i];
        h[i] = h[c];
        h[c] = x;
        i = c;
    }
}

/* The first n functions of the answer's order into fns[0..n): the n that
 * sort first are chosen with a heap of the best so far (the order is total:
 * name, file and symbol break ties, so they are the same n a sort of all
 * would put first), then sorted. Its tables (and the sort's: two pointers
 * an entry) are taken from the charge while they live. */
static int order_first(top_t *tp, size_t n, int (*cmp)(const void *, const void *))
{
    if (n == 0) return 0;
    size_t bytes = n * (sizeof(uint32_t) + sizeof(fn_t) + 2 * sizeof(void *));
    int rc = top_take(tp, bytes);
    if (rc != 0) return rc;
    uint32_t *h = malloc(n * sizeof *h);
    fn_t *best = malloc(n * sizeof *best);
    rc = h != NULL && best != NULL ? 0 : ERR_NOMEM;
    size_t hn = 0;
    for (uint32_t i = 0; rc == 0 && i < tp->nfns; i++) {
        if (hn < n) { /* up from the new leaf */
            size_t at = hn++;
            h[at] = i;
            while (at > 0 && cmp(&tp->fns[h[(at - 1) / 2]], &tp->fns[h[at]]) < 0) {
                uint32_t x = h[at];
                h[at] = h[(at - 1) / 2];
                h[(at - 1) / 2] = x;
                at = (at - 1) / 2;
            }
        } else if (cmp(&tp->fns[i], &tp->fns[h[0]]) < 0) {
            h[0] = i;
            sift_down(tp->fns, h, hn, 0, cmp);
        }
    }
    for (size_t i = 0; rc == 0 && i < hn; i++)
        best[i] = tp->fns[h[i]];
    if (rc == 0) qsort(best, hn, sizeof *best, cmp);
    if (rc == 0) memcpy(tp->fns, best, hn * sizeof *best);
    free(h);
    free(best);
    top_give(tp, bytes);
    return rc;
}

int query_fns_merge(query_fn_t *v, size_t *n, const query_fn_t *add, const uint64_t *syms,
                    const int64_t *selves, const int64_t *totals, size_t nadd)
{
    u64map_t map = {0};
    int rc = u64map_init(&map, *n + nadd);
    for (size_t i = 0; rc == 0 && i < *n; i++)
        rc = u64map_put(&map, v[i].sym, (uint32_t)i);
    for (size_t i = 0; rc == 0 && i < nadd; i++) {
        query_fn_t f =
            syms != NULL
                ? (query_fn_t){.sym = syms[i], .self = selves[i], .total = totals[i]}
                : (query_fn_t){.sym = add[i].sym, .self = add[i].self, .total = add[i].total};
        uint32_t at = (uint32_t)*n;
        int put = u64map_get_or_put(&map, f.sym, at, &at);
        if (put < 0) {
            rc = put;
        } else if (put == 1) {
            v[(*n)++] = f;
        } else {
            v[at].self = (int64_t)((uint64_t)v[at].self + (uint64_t)f.self);
            v[at].total = (int64_t)((uint64_t)v[at].total + (uint64_t)f.total);
        }
    }
    u64map_free(&map);
    return rc;
}

/* Adds extra's functions (a share's sums, query_fns_of_tabs) to the tree's:
 * by symbol, through a map of the tree's (taken from the charge while it
 * lives); the table grows to hold them all, taken before it does. */
static int add_extra(top_t *tp, const query_fn_t *extra, size_t nextra, int64_t extra_total)
{
    tp->total = (int64_t)((uint64_t)tp->total + (uint64_t)extra_total);
    if (nextra == 0) return 0;
    size_t need = tp->nfns + nextra, was = tp->capfns;
    if (need > was) {
        int rc = top_take(tp, need * sizeof *tp->fns); /* beside the old while it is copied */
        if (rc != 0) return rc;
        fn_t *v = realloc(tp->fns, need * sizeof *v);
        top_give(tp, (v != NULL ? was : need) * sizeof *tp->fns);
        if (v == NULL) return ERR_NOMEM;
        tp->fns = v;
        tp->capfns = need;
        tp->fns_held += (need - was) * sizeof *v;
    }
    size_t map_bytes = u64map_init_bytes(tp->nfns + nextra);
    int rc = top_take(tp, map_bytes);
    if (rc != 0) return rc;
    rc = query_fns_merge(tp->fns, &tp->nfns, extra, NULL, NULL, NULL, nextra);
    top_give(tp, map_bytes);
    return rc;
}

int query_encode_top(const calltree_t *t, const symtab_t *syms, const char *profile_type,
                     const query_top_opts_t *o, buf_t *out)
{
    return query_encode_top_fns(t, NULL, 0, 0, syms, profile_type, o, out);
}

int query_encode_top_fns(const calltree_t *t, const query_fn_t *extra, size_t nextra,
                         int64_t extra_total, const symtab_t *syms, const char *profile_type,
                         const query_top_opts_t *o, buf_t *out)
{
    query_report_charge_t beside = {beside_take, beside_give, out};
    top_t tp = {.t = t, .charge = &beside, .total = calltree_root_total(t)};
    /* the tables are held beside the answer (buf_beside_take): their bound
     * while they are made, the function table as it grows, then beside it
     * the names of unknown symbols and the first functions' order */
    size_t totals; /* the tree's from here: its owner counts them */
    int rc = collect_charged(&tp, &totals);
    buf_beside_give(out, totals);
    if (rc == 0) rc = add_extra(&tp, extra, nextra, extra_total);
    if (rc == 0) rc = resolve_names(&tp, syms);
    tp.count = tp.nfns;
    if (rc == 0 && o->search != NULL && o->search[0] != 0) rc = keep_matching(&tp, o->search);
    if (rc == 0)
        rc = order_first(&tp, o->limit < tp.nfns ? o->limit : tp.nfns,
                         o->by_total ? by_total : by_self);
    if (rc == 0) rc = write_top(out, &tp, profile_type, o);
    free(tp.fns);
    free(tp.unk);
    buf_beside_give(out, tp.unk_held + tp.fns_held);
    return rc;
}

/* ---- a regression report's bucket: the functions as they are ---- */

#define FUNCTIONS_VERSION 1

static int put_function(buf_t *out, const fn_t *f, const symtab_t *syms)
{
    uint8_t id[8];
    for (int k = 0; k < 8; k++)
        id[k] = (uint8_t)(f->sym >> (8 * k));
    const char *name = NULL, *file = NULL;
    int named = syms != NULL && symtab_get(syms, f->sym, &name, &file);
    int rc = buf_append(out, id, sizeof id);
    if (rc == 0) rc = buf_append_svarint(out, f->self);
    if (rc == 0) rc = buf_append_svarint(out, f->total);
    if (rc == 0) rc = buf_append_byte(out, (uint8_t)named);
    if (rc != 0 || !named) return rc;
    size_t nl = strlen(name), fl = file != NULL ? strlen(file) : 0;
    rc = buf_append_uvarint(out, nl);
    if (rc == 0) rc = buf_append(out, name, nl);
    if (rc == 0) rc = buf_append_uvarint(out, fl);
    if (rc == 0 && fl > 0) rc = buf_append(out, file, fl);
    return rc;
}

int query_encode_functions(const calltree_t *t, const query_fn_t *extra, size_t nextra,
                           int64_t extra_total, const symtab_t *syms, buf_t *out)
{
    query_report_charge_t beside = {beside_take, beside_give, out};
    top_t tp = {.t = t, .charge = &beside, .total = calltree_root_total(t)};
    size_t totals;
    int rc = collect_charged(&tp, &totals);
    buf_beside_give(out, totals);
    if (rc == 0) rc = add_extra(&tp, extra, nextra, extra_total);
    if (rc == 0) rc = buf_append_byte(out, FUNCTIONS_VERSION);
    if (rc == 0) rc = buf_append_svarint(out, tp.total);
    if (rc == 0) rc = buf_append_uvarint(out, tp.nfns);
    for (size_t i = 0; rc == 0 && i < tp.nfns; i++)
        rc = put_function(out, &tp.fns[i], syms);
    free(tp.fns);
    buf_beside_give(out, tp.fns_held);
    return rc;
}

/* A length-prefixed text at *p, read in place (*s points at it, *len its
 * bytes; symtab_put copies it). 0 on malformed input. */
static int read_text(const uint8_t **p, const uint8_t *end, const char **s, size_t *len)
{
    uint64_t n;
    if (!varint_read_u(p, end, &n) || n > (uint64_t)(end - *p)) return 0;
    *s = (const char *)*p;
    *len = (size_t)n;
    *p += n;
    return 1;
}

/* Puts a named function's symbol into syms: what syms may grow by taken
 * from charge before, what it did not grow by given back after. */
static int put_name(symtab_t *syms, uint64_t id, const char *name, size_t nl, const char *file,
                    size_t fl, const query_report_charge_t *charge)
{
    size_t was = symtab_mem_bytes(syms), rise = charge != NULL ? symtab_put_bytes(syms, nl, fl) : 0;
    if (charge != NULL && charge->take != NULL && rise > 0 && charge->take(charge->ctx, rise) != 0)
        return ERR_UNAVAILABLE;
    int rc = symtab_put(syms, id, name, nl, file, fl);
    size_t grew = symtab_mem_bytes(syms) - was;
    if (charge != NULL && charge->give != NULL && rise > grew)
        charge->give(charge->ctx, rise - grew);
    return rc;
}

int query_decode_functions(const uint8_t *p, size_t n, symtab_t *syms,
                           const query_report_charge_t *charge, query_fn_t **out, size_t *nfns,
                           int64_t *total)
{
    *out = NULL;
    *nfns = 0;
    *total = 0;
    const uint8_t *end = p + n;
    uint64_t count;
    if (n < 1 || *p++ != FUNCTIONS_VERSION || !varint_read_s(&p, end, total) ||
        !varint_read_u(&p, end, &count) || count > (uint64_t)(end - p) / 11)
        return ERR_CORRUPT; /* 11: the least bytes of one function */
    size_t table = (size_t)count * sizeof(query_fn_t);
    if (charge != NULL && charge->take != NULL && table > 0 &&
        charge->take(charge->ctx, table) != 0)
        return ERR_UNAVAILABLE;
    query_fn_t *v = malloc((count ? count : 1) * sizeof *v);
    if (v == NULL) {
        if (charge != NULL && charge->give != NULL && table > 0) charge->give(charge->ctx, table);
        return ERR_NOMEM;
    }
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
        query_fn_t *f = &v[i];
        *f = (query_fn_t){0};
        for (int k = 0; k < 8 && p < end; k++)
            f->sym |= (uint64_t)*p++ << (8 * k);
        const char *name, *file;
        size_t nl, fl;
        if (p >= end || !varint_read_s(&p, end, &f->self) || !varint_read_s(&p, end, &f->total) ||
            p >= end || *p > 1) {
            rc = ERR_CORRUPT;
        } else if (*p++ == 1) {
            if (!read_text(&p, end, &name, &nl) || !read_text(&p, end, &file, &fl))
                rc = ERR_CORRUPT;
            else if (syms != NULL)
                rc = put_name(syms, f->sym, name, nl, file, fl, charge);
        }
    }
    if (rc == 0 && p != end) rc = ERR_CORRUPT;
    if (rc != 0) {
        free(v);
        if (charge != NULL && charge->give != NULL && table > 0) charge->give(charge->ctx, table);
        return rc;
    }
    *out = v;
    *nfns = (size_t)count;
    return 0;
}
