/* gather.c — the coordinator's side of a query: partials in, one answer out.
 *
 * Call trees are summed (calltree merge is associative and commutative),
 * symbols are content-addressed (a union), timeline buckets are summed, the
 * series count is summed and the spy name kept only while every series
 * agrees, label values are a union. Then the merged tree is truncated to
 * maxNodes and encoded by the encoders, whose bytes depend only on content:
 * however the ring was split, the answer is the same bytes.
 *
 * A render truncated to maxNodes (query_spec_forests) does not merge its
 * partials' trees: each is kept as a forest (forest.c; a local share hands
 * over its tokens' forests as they are) and the finish runs keep.c's
 * selection over all of them, which expands only the kept nodes of their
 * union: the tree query_truncate makes of the merge, without the merge. A
 * tree with a negative value (or a total past INT64_MAX), or forests whose
 * union might pass max_tree_nodes, turn the gather back to merging: what it
 * holds is merged into the tree and so is everything after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"
#include "common/hash.h"
#include "common/u64map.h"
#include "query/query_int.h"

struct query_gather {
    const query_spec_t *spec;
    query_limits_t lim;
    calltree_t *tree;
    symtab_t *syms;
    size_t nseries;
    char *spy_name;
    int spy_mixed;
    query_timeline_t tl; /* render as JSON: the timeline being summed */
    strmap_t values;     /* labels: strings owned by the gather */
    size_t value_bytes;
    int64_t *shares; /* label shares: total per value (indexed like values) */
    size_t shares_cap;
    int64_t *share_tls; /* label shares: value i's timeline at [i * tl.n] */
    size_t share_tls_cap;
    int share_avg;         /* label shares of an averaged type: the counts below are kept */
    int64_t *share_counts; /* value i's profiles */
    size_t share_counts_cap;
    int64_t *share_tlc; /* value i's profiles per bucket at [i * tl.n] */
    size_t share_tlc_cap;
    /* value i's pushes split into pieces, bucket k at i * tl.n + k, united
     * by id over every answer (share_unite) */
    query_timeline_t share_ptl;
    query_plist_t plist; /* profiles: the entries kept so far */
    int64_t p_time_ns;   /* profile: its time, from the partial that holds it */
    char *p_type;        /* profile: its profile type (that series' label), or NULL */
    int forests_on;      /* render: trees kept as forests, truncated together at the end */
    int broken;          /* going back to merging failed half way: no exact answer */
    storage_merged_tab_t *forests;
    size_t nforests, cap_forests;
    query_packed_t *packed; /* forests of encoding 4, read by the selection where they lie */
    size_t npacked, cap_packed;
    struct gather_hold_s { /* what keeps borrowed packed records alive (add_trees_held) */
        void *p;
        void (*free_fn)(void *);
    } * holds;
    size_t nholds, cap_holds;
    size_t forest_nodes; /* 1 + their nodes below the root (both kinds): a bound of their merge */
    size_t forest_bytes;
    query_cut_follow_t *filed;  /* the cut's first pass made beside query_gather_add_made's
                                   forest, or NULL */
    const int64_t *filed_total; /* that forest's totals: it is the one held whose are these */
    query_kept_t *kept;         /* render: one partial's kept nodes, the whole answer (then tree and
                                   forests hold nothing), or NULL */
    uint64_t partial_spans;     /* span trees that may leave profiles out */
    query_fn_t *fns;     /* top: functions summed by shares beside the tree (their forests'), */
    size_t nfns;         /* by symbol, in no order; NULL when none came */
    int64_t fns_total;   /* their forests' roots' totals */
    storage_t *names_st; /* where partials added with names_later have their names */
    const char *names_tenant;
    int names_due;           /* such a partial was added: its kept symbols' names load at the end */
    query_names_fn names_fn; /* or NULL: asked first for the names no partial brought */
    void *names_ctx;
    query_names_hold_fn lend_hold; /* or NULL: a table of names read in place (encode_kept) */
    query_names_release_fn lend_release;
    void *lend_ctx;
    alloc_charge_t *charge; /* query_gather_charge: growth beyond charge_base, or NULL */
    size_t charge_base;
    size_t charged;      /* on charge now */
    int refused;         /* the charge refused: the error names query-memory-bytes */
    errmsg_t *answer_em; /* while finishing: where a refused growth of the answer says so */
};

int query_gather_new(const query_spec_t *spec, const query_limits_t *lim, query_gather_t **out)
{
    query_gather_t *g = calloc(1, sizeof *g);
    if (g == NULL) return ERR_NOMEM;
    g->spec = spec;
    g->lim = *lim;
    g->forests_on = spec->kind == QUERY_KIND_RENDER && query_spec_forests(spec);
    strmap_init(&g->values);
    query_plist_init(&g->plist, spec->top_limit + 1); /* one more: a truncation shows */
    int rc = 0;
    if (spec->kind == QUERY_KIND_RENDER || spec->kind == QUERY_KIND_PROFILE) {
        int res;
        g->tree = calltree_new(lim->max_tree_nodes);
        g->syms = symtab_new();
        if (g->tree == NULL || g->syms == NULL) rc = ERR_NOMEM;
        int avg =
            spec->kind == QUERY_KIND_RENDER && query_type_average(query_selector_type(spec->sel));
        if (rc == 0 &&
            ((spec->format == QUERY_FORMAT_JSON && spec->kind == QUERY_KIND_RENDER) || avg))
            rc = query_timeline_init(&spec->plan, &g->tl, &res);
        if (rc == 0 && g->tl.n > 0 && avg) rc = query_timeline_average(&g->tl);
    } else if (spec->kind == QUERY_KIND_LABEL_SHARES) {
        int res; /* the shape of every value's timeline */
        rc = query_timeline_init(&spec->plan, &g->tl, &res);
        g->share_avg = query_type_average(query_selector_type(spec->sel));
    }
    if (rc != 0) {
        query_gather_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* Drops the packed forests. */
static void free_packed(query_gather_t *g)
{
    for (size_t i = 0; i < g->npacked; i++)
        query_packed_free(&g->packed[i]);
    free(g->packed);
    g->packed = NULL;
    g->npacked = g->cap_packed = 0;
}

void query_gather_free(query_gather_t *g)
{
    if (g == NULL) return;
    calltree_free(g->tree);
    storage_merged_tabs_free(g->forests, g->nforests);
    free_packed(g);
    for (size_t i = 0; i < g->nholds; i++) /* after the packed forests that read them */
        g->holds[i].free_fn(g->holds[i].p);
    free(g->holds);
    query_kept_free(g->kept);
    query_cut_follow_free(g->filed);
    free(g->fns);
    symtab_free(g->syms);
    free(g->spy_name);
    free(g->p_type);
    query_timeline_free(&g->tl);
    free(g->shares);
    free(g->share_tls);
    free(g->share_counts);
    free(g->share_tlc);
    free(g->share_ptl.pushes);
    query_plist_free(&g->plist);
    for (size_t i = 0; i < g->values.n; i++)
        free((char *)g->values.strs[i]);
    strmap_free(&g->values);
    free(g);
}

size_t query_gather_bytes(const query_gather_t *g)
{
    if (g == NULL) return 0;
    size_t n =
        sizeof *g + g->value_bytes + g->values.n * 2 * sizeof(void *) +
        (g->shares_cap + g->share_tls_cap + g->share_counts_cap + g->share_tlc_cap + g->tl.n) *
            sizeof(int64_t) +
        (g->tl.pushes_cap + g->share_ptl.pushes_cap) * sizeof(query_push_t) + g->forest_bytes +
        query_kept_bytes(g->kept) + query_plist_bytes(&g->plist) + g->nfns * sizeof(query_fn_t);
    if (g->tree != NULL) n += calltree_mem_bytes_read(g->tree);
    if (g->syms != NULL) n += symtab_mem_bytes(g->syms);
    return n;
}

size_t query_partial_bytes(const query_partial_t *p)
{
    size_t n = sizeof *p + p->tl.n * sizeof(int64_t) + p->nvalues * sizeof(char *) +
               p->tl.pushes_cap * sizeof(query_push_t) + query_kept_bytes(p->kept) +
               p->nfns * sizeof(query_fn_t);
    if (p->tree != NULL) n += calltree_mem_bytes_read(p->tree);
    if (p->syms != NULL) n += symtab_mem_bytes(p->syms);
    for (size_t i = 0; i < p->ntabs; i++)
        n += query_forest_bytes(&p->tabs[i]);
    for (size_t i = 0; i < p->nvalues; i++)
        n += strlen(p->values[i]) + 1;
    return n;
}

/* ---- the charge ---- */

void query_gather_charge(query_gather_t *g, alloc_charge_t *charge, size_t base)
{
    g->charge = charge;
    g->charge_base = base;
    g->charged = 0;
}

static int gather_refused(query_gather_t *g, int rc, errmsg_t *em);

/* Sets what g holds on its charge to what it holds now, plus extra bytes
 * held beside it (a tree or selection being built, the answer), less the
 * base its owner counts already. ERR_UNAVAILABLE (ERR_TOO_LARGE: it could
 * never fit) naming query-memory-bytes when that does not fit. */
static int gather_hold(query_gather_t *g, size_t extra, errmsg_t *em)
{
    if (g->charge == NULL) return 0;
    size_t now = query_gather_bytes(g) + extra;
    size_t want = now > g->charge_base ? now - g->charge_base : 0;
    if (want <= g->charged) {
        alloc_charge_sub(g->charge, g->charged - want);
        g->charged = want;
        return 0;
    }
    int rc = alloc_charge_add(g->charge, want - g->charged);
    if (rc == 0) {
        g->charged = want;
        return 0;
    }
    return gather_refused(g, rc, em);
}

/* The answer's buffer grows (buf_charge): what it holds while it does is
 * charged first, beside what it is encoded from. */
static int answer_grows(void *ctx, size_t held)
{
    query_gather_t *g = ctx;
    return gather_hold(g, held, g->answer_em);
}

/* A charge of g refused: rc, em naming query-memory-bytes. The text names
 * the limit, not the bytes held when it was passed: those depend on the
 * order the shares' answers came in, and the same query over the same data
 * answers the same bytes from every node, refusals included. */
static int gather_refused(query_gather_t *g, int rc, errmsg_t *em)
{
    size_t limit = g->charge->b != NULL ? g->charge->b->limit : 0;
    g->refused = 1;
    if (rc == ERR_UNAVAILABLE)
        return errmsg_set(em, rc,
                          "server busy: merging the answer does not fit in query-memory-bytes "
                          "(%zu bytes) beside the other queries; retry later or narrow the query",
                          limit);
    return errmsg_set(em, rc,
                      "query too large: merging the answer does not fit in query-memory-bytes "
                      "(%zu bytes); narrow the query or raise query-memory-bytes",
                      limit);
}

/* ---- pieces ---- */

static int tree_limit(const query_gather_t *g, errmsg_t *em)
{
    return errmsg_set(em, ERR_LIMIT,
                      "merged call tree exceeds %zu nodes (query-max-tree-nodes); narrow "
                      "the selector or the time range",
                      calltree_node_count(g->tree));
}

/* Back to merging: every forest held goes into the tree (a packed one
 * decoded whole first). */
static int spill_forests(query_gather_t *g, errmsg_t *em)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < g->nforests; i++)
        rc = query_forest_merge(g->tree, &g->forests[i]);
    for (size_t i = 0; rc == 0 && i < g->npacked; i++) {
        storage_merged_tab_t f;
        rc = query_packed_decode(&g->packed[i], &f);
        if (rc == 0) rc = query_forest_merge(g->tree, &f);
        query_forest_free(&f);
    }
    free_packed(g);
    storage_merged_tabs_free(g->forests, g->nforests);
    g->forests = NULL;
    g->nforests = g->cap_forests = g->forest_bytes = g->forest_nodes = 0;
    g->forests_on = 0;
    g->broken |= rc != 0; /* the tree holds part of what the forests held */
    if (rc == ERR_LIMIT) return tree_limit(g, em);
    return rc;
}

/* Takes f (its arrays move into the gather; f is left empty). */
static int add_forest(query_gather_t *g, storage_merged_tab_t *f, errmsg_t *em)
{
    if (f->values_only) { /* values to add by id (scatter_spaces.h), no forest */
        query_forest_free(f);
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "a forest of values alone cannot be merged");
    }
    if (f->nonneg && f->n > 0 && f->total[0] == 0) { /* nothing in it (a share's empty tree) */
        query_forest_free(f);
        return 0;
    }
    size_t nodes = g->forest_nodes + (g->nforests + g->npacked > 0 ? 0 : 1) + f->nodes - 1;
    size_t cap = calltree_max_nodes(g->tree); /* 0: unlimited */
    int rc = 0;
    if (cap != 0 && nodes > cap && (rc = spill_forests(g, em)) == 0) {
        rc = query_forest_merge(g->tree, f); /* refused for its size as a merge would be */
        if (rc == ERR_LIMIT) rc = tree_limit(g, em);
    } else if (rc == 0 &&
               GROW_FROM(g->forests, g->cap_forests, g->nforests + 1, GROW_UNLIMITED, 8) != 0) {
        rc = ERR_NOMEM;
    } else if (rc == 0) {
        g->forest_nodes = nodes;
        g->forest_bytes += query_forest_bytes(f);
        g->forests[g->nforests++] = *f;
        memset(f, 0, sizeof *f);
    }
    query_forest_free(f);
    return rc;
}

/* Takes pk as add_forest takes a forest (pk is left empty): held as it
 * is while the union may be truncated without merging, else decoded and
 * merged. */
static int add_packed(query_gather_t *g, query_packed_t *pk, errmsg_t *em)
{
    size_t nodes = g->forest_nodes + (g->nforests + g->npacked > 0 ? 0 : 1) + pk->nodes - 1;
    size_t cap = calltree_max_nodes(g->tree); /* 0: unlimited */
    int rc = 0;
    if (cap != 0 && nodes > cap) {
        storage_merged_tab_t f;
        if ((rc = query_packed_decode(pk, &f)) == 0) rc = add_forest(g, &f, em); /* it spills */
        query_forest_free(&f);
    } else if (GROW_FROM(g->packed, g->cap_packed, g->npacked + 1, GROW_UNLIMITED, 8) != 0) {
        rc = ERR_NOMEM;
    } else {
        g->forest_nodes = nodes;
        g->forest_bytes += query_packed_bytes(pk);
        g->packed[g->npacked++] = *pk;
        memset(pk, 0, sizeof *pk);
    }
    query_packed_free(pk);
    return rc;
}

/* Merges the encodings (or their forests, when decoded) into the tree:
 * the gather merges from here on. A failure half way leaves it broken. */
static int merge_encoded(query_gather_t *g, const uint8_t *const *enc, const size_t *len,
                         storage_merged_tab_t *f, size_t n, errmsg_t *em)
{
    int rc = spill_forests(g, em);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = f[i].nonneg ? query_forest_merge(g->tree, &f[i])
                         : calltree_decode_merge(g->tree, enc[i], len[i]);
    if (rc == ERR_LIMIT) return tree_limit(g, em); /* decides the query */
    g->broken |= rc != 0 && n > 1;                 /* one encoding is merged whole or not at all */
    return rc != 0 ? errmsg_set(em, rc, "partial call tree: %s", err_message(rc)) : 0;
}

/* query_gather_add_trees; with borrow, forests of encoding 4 or 5 read
 * where they lie in enc. */
static int add_trees(query_gather_t *g, const uint8_t *const *enc, const size_t *len, size_t n,
                     int borrow, errmsg_t *em)
{
    if (g->tree == NULL) return errmsg_set(em, ERR_INVALID_ARGUMENT, "gather: not a render");
    if (!g->forests_on && n == 1) { /* merging: one encoding is merged whole or not at all */
        int rc = calltree_decode_merge(g->tree, enc[0], len[0]);
        if (rc == ERR_LIMIT) return tree_limit(g, em);
        if (rc != 0) return errmsg_set(em, rc, "partial call tree: %s", err_message(rc));
        return gather_hold(g, 0, em);
    }
    storage_merged_tab_t *f = calloc(n ? n : 1, sizeof *f);
    query_packed_t *pk = calloc(n ? n : 1, sizeof *pk);
    if (f == NULL || pk == NULL) {
        free(f);
        free(pk);
        return ERR_NOMEM;
    }
    int rc = 0, all_nonneg = 1;
    size_t max = calltree_max_nodes(g->tree);
    /* every encoding is checked before any is added; one of encoding 4
     * or 5 only as far as it is opened: the selection reads the rest */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (g->forests_on && len[i] > 0 &&
            (enc[i][0] == QUERY_FOREST_V4 || enc[i][0] == QUERY_FOREST_V5)) {
            rc = borrow ? query_packed_open_at(enc[i], len[i], max, &pk[i])
                        : query_packed_open(enc[i], len[i], max, &pk[i]);
            continue;
        }
        rc = query_forest_decode(enc[i], len[i], max, &f[i]);
        all_nonneg &= f[i].nonneg;
    }
    size_t decoded = 0; /* held beside the gather until added */
    for (size_t i = 0; rc == 0 && i < n; i++)
        decoded += query_forest_bytes(&f[i]) + query_packed_bytes(&pk[i]);
    if (rc == ERR_LIMIT) {
        rc = tree_limit(g, em);
    } else if (rc != 0) {
        rc = errmsg_set(em, rc, "partial call tree: %s", err_message(rc));
    } else if ((rc = gather_hold(g, decoded, em)) != 0) {
    } else if (g->forests_on && all_nonneg) {
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = pk[i].rec != NULL ? add_packed(g, &pk[i], em) : add_forest(g, &f[i], em);
        g->broken |= rc != 0 && rc != ERR_LIMIT && n > 1;
    } else {
        for (size_t i = 0; rc == 0 && i < n; i++) /* merged: the packed ones decoded whole */
            if (pk[i].rec != NULL) rc = query_packed_decode(&pk[i], &f[i]);
        if (rc != 0) rc = errmsg_set(em, rc, "partial call tree: %s", err_message(rc));
        if (rc == 0) rc = merge_encoded(g, enc, len, f, n, em);
    }
    for (size_t i = 0; i < n; i++) {
        query_forest_free(&f[i]);
        query_packed_free(&pk[i]);
    }
    free(f);
    free(pk);
    return rc == 0 ? gather_hold(g, 0, em) : rc;
}

int query_gather_add_trees(query_gather_t *g, const uint8_t *const *enc, const size_t *len,
                           size_t n, errmsg_t *em)
{
    return add_trees(g, enc, len, n, 0, em);
}

int query_gather_add_trees_held(query_gather_t *g, const uint8_t *const *enc, const size_t *len,
                                size_t n, void *hold, void (*hold_free)(void *), errmsg_t *em)
{
    if (GROW_FROM(g->holds, g->cap_holds, g->nholds + 1, GROW_UNLIMITED, 8) != 0) {
        hold_free(hold); /* nothing added: the caller reads nothing of it again */
        return errmsg_set(em, ERR_NOMEM, "out of memory");
    }
    g->holds[g->nholds++] = (struct gather_hold_s){hold, hold_free};
    return add_trees(g, enc, len, n, 1, em);
}

int query_gather_add_tree(query_gather_t *g, const uint8_t *enc, size_t n, errmsg_t *em)
{
    return query_gather_add_trees(g, &enc, &n, 1, em);
}

int query_gather_add_tab(query_gather_t *g, storage_merged_tab_t *t, errmsg_t *em)
{
    if (g->forests_on) {
        int rc = add_forest(g, t, em);
        return rc == ERR_LIMIT ? tree_limit(g, em) : rc;
    }
    int rc = query_forest_merge(g->tree, t);
    query_forest_free(t);
    return rc == ERR_LIMIT ? tree_limit(g, em) : rc;
}

/* 1 when the answer is the JSON flame graph of a render: written straight
 * from the kept nodes, without their tree. */
static int json_render(const query_gather_t *g)
{
    return g->spec->kind == QUERY_KIND_RENDER && g->spec->format == QUERY_FORMAT_JSON;
}

/* A follower for the cut's first pass beside the forest make makes: when
 * the gather truncates forests and holds none yet, with helpers. */
static query_cut_follow_t *made_follower(const query_gather_t *g)
{
    int alone = g->nforests == 0 && g->npacked == 0 && g->filed == NULL && g->kept == NULL;
    /* the helper's only part until the encoders': it files to the end */
    return g->forests_on && alone && g->lim.assist != NULL ? query_cut_follow_new(1) : NULL;
}

int query_gather_add_made(query_gather_t *g, query_make_tab_fn make, void *ctx, errmsg_t *em)
{
    storage_merged_tab_t t;
    memset(&t, 0, sizeof t);
    query_cut_follow_t *c = made_follower(g);
    assist_task_t task;
    /* the JSON encoders take the helper next (some 0.1 ms on): it waits
     * awake for them (woken from sleep it came 0.06 ms late); another
     * format's encoder takes none, so the filing is the render's last part */
    if (c != NULL)
        (json_render(g) ? assist_start : assist_start_last)(g->lim.assist, &task,
                                                            query_cut_follow_run, c);
    int rc = make(ctx, c != NULL ? query_cut_follow_storage(c) : NULL, &t, em);
    if (c != NULL) {
        storage_follow_close(query_cut_follow_storage(c)); /* make ended it: nothing */
        query_cut_follow_finish(c);                        /* the chunks the helper has not filed */
        assist_join(g->lim.assist, &task);
    }
    const int64_t *total = t.total; /* t is emptied as the gather takes it */
    if (rc == 0) rc = query_gather_add_tab(g, &t, em);
    if (rc == 0 && c != NULL && g->filed == NULL) { /* cut by keep_forests when it is alone */
        g->filed = c;
        g->filed_total = total;
        c = NULL;
    }
    query_cut_follow_free(c);
    return rc;
}

int query_gather_add_symbol(query_gather_t *g, uint64_t id, const char *name, size_t name_len,
                            const char *file, size_t file_len)
{
    if (g->syms == NULL) return ERR_INVALID_ARGUMENT;
    return symtab_put(g->syms, id, name, name_len, file, file_len);
}

int query_gather_add_series(query_gather_t *g, size_t nseries, const char *spy_name, errmsg_t *em)
{
    if (nseries == 0) return 0;
    if (g->spy_mixed) {
    } else if (spy_name == NULL || (g->nseries > 0 && g->spy_name == NULL) ||
               (g->spy_name != NULL && strcmp(g->spy_name, spy_name) != 0)) {
        g->spy_mixed = 1;
        free(g->spy_name);
        g->spy_name = NULL;
    } else if (g->spy_name == NULL && (g->spy_name = strdup(spy_name)) == NULL) {
        return ERR_NOMEM;
    }
    g->nseries += nseries;
    if (g->nseries > g->lim.max_series)
        return errmsg_set(
            em, ERR_LIMIT,
            "query selects more than %zu series (query-max-series); narrow the selector",
            g->lim.max_series);
    return gather_hold(g, 0, em); /* a share's symbols came just before */
}

int query_gather_add_total(query_gather_t *g, int64_t bucket_start_s, int64_t value, errmsg_t *em)
{
    const query_timeline_t *tl = &g->tl;
    if (g->spec->kind == QUERY_KIND_RENDER && g->spec->format != QUERY_FORMAT_JSON)
        return 0; /* partials carry totals; only the JSON answer shows them */
    int64_t off = bucket_start_s - tl->start_s;
    if (tl->n == 0 || off < 0 || off % tl->step_s != 0 || off / tl->step_s >= (int64_t)tl->n)
        return errmsg_set(em, ERR_CORRUPT, "partial timeline: bucket %lld is not on the grid",
                          (long long)bucket_start_s);
    g->tl.samples[off / tl->step_s] += value;
    return 0;
}

int query_gather_add_count(query_gather_t *g, int64_t bucket_start_s, int64_t count, errmsg_t *em)
{
    const query_timeline_t *tl = &g->tl;
    if (tl->counts == NULL || count == 0) return 0; /* a summed type, or a JSON-less answer */
    int64_t off = bucket_start_s - tl->start_s;
    if (count < 0 || off < 0 || off % tl->step_s != 0 || off / tl->step_s >= (int64_t)tl->n)
        return errmsg_set(em, ERR_CORRUPT, "partial timeline: count of bucket %lld is bad",
                          (long long)bucket_start_s);
    tl->counts[off / tl->step_s] += count;
    g->tl.profiles += count;
    return 0;
}

int query_gather_add_pushes(query_gather_t *g, int64_t bucket_start_s, int64_t count,
                            const uint8_t *ids, size_t len, errmsg_t *em)
{
    query_timeline_t *tl = &g->tl;
    size_t n = len / STORAGE_WPROF_ID_LEN;
    int64_t off = bucket_start_s - tl->start_s;
    if (len % STORAGE_WPROF_ID_LEN != 0 || (uint64_t)count < n ||
        (n > 0 && (off < 0 || off % tl->step_s != 0 || off / tl->step_s >= (int64_t)tl->n)))
        return errmsg_set(em, ERR_CORRUPT, "partial timeline: pushes of bucket %lld are bad",
                          (long long)bucket_start_s);
    if (tl->counts == NULL || n == 0) return query_gather_add_count(g, bucket_start_s, count, em);
    /* count holds the partial's own pushes once each: united here instead */
    int rc = query_gather_add_count(g, bucket_start_s, count - (int64_t)n, em);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc =
            query_timeline_add_push(tl, (size_t)(off / tl->step_s), ids + i * STORAGE_WPROF_ID_LEN);
    if (rc == ERR_NOMEM) return errmsg_set(em, rc, "out of memory");
    return rc == 0 ? gather_hold(g, 0, em) : rc;
}

/* Parses a signed decimal integer of s[0..n) into *out. */
static int parse_i64(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 20) return ERR_CORRUPT;
    char digits[24];
    memcpy(digits, s, n);
    digits[n] = 0;
    char *end;
    long long v = strtoll(digits, &end, 10);
    if (*end != 0 || digits[0] == ' ' || digits[0] == '+') return ERR_CORRUPT;
    *out = v;
    return 0;
}

/* Parses "SUM" or "SUM/COUNT" (an averaged type's, count >= 0) of s[0..n);
 * *count 0 without one. */
static int parse_sum(const char *s, size_t n, int64_t *sum, int64_t *count)
{
    const char *sl = memchr(s, '/', n);
    *count = 0;
    if (sl == NULL) return parse_i64(s, n, sum);
    size_t k = (size_t)(sl - s);
    if (parse_i64(s, k, sum) != 0 || parse_i64(sl + 1, n - k - 1, count) != 0 || *count < 0)
        return ERR_CORRUPT;
    return 0;
}

/* Parses the comma-separated buckets s[0..n) into out (their counts into
 * cnt): exactly nb of them, else ERR_CORRUPT. */
static int parse_buckets(const char *s, size_t n, size_t nb, int64_t *out, int64_t *cnt)
{
    size_t k = 0, at = 0;
    while (at < n) {
        const char *c = memchr(s + at, ',', n - at);
        size_t end = c != NULL ? (size_t)(c - s) : n;
        if (k >= nb || parse_sum(s + at, end - at, &out[k], &cnt[k]) != 0) return ERR_CORRUPT;
        k++;
        at = end + 1;
        if (c != NULL && at == n) return ERR_CORRUPT; /* a trailing comma */
    }
    return k == nb ? 0 : ERR_CORRUPT;
}

/* Interns value s[0..n) among the shares, zeroed when new; *idx its slot.
 * Each value costs at least 2 bytes per bucket in the answer ("0,"), so the
 * max_output_bytes check also bounds the memory the timelines take. */
static int share_slot(query_gather_t *g, const char *s, size_t n, uint32_t *idx)
{
    if (g->value_bytes + n + 64 + 2 * g->tl.n > g->lim.max_output_bytes) return ERR_LIMIT;
    char *copy = malloc(n + 1);
    if (copy == NULL) return ERR_NOMEM;
    memcpy(copy, s, n);
    copy[n] = 0;
    size_t before = g->values.n;
    int rc = strmap_intern(&g->values, copy, n, idx);
    if (rc != 0 || g->values.n == before) free(copy); /* known (or failed): the map has its own */
    if (rc != 0 || g->values.n == before) return rc;
    g->value_bytes += n + 64 + 2 * g->tl.n;
    rc = GROW(g->shares, g->shares_cap, g->values.n, GROW_UNLIMITED);
    if (rc == 0) g->shares[*idx] = 0;
    if (rc == 0 && g->tl.n > 0)
        rc = GROW(g->share_tls, g->share_tls_cap, g->values.n * g->tl.n, GROW_UNLIMITED);
    if (rc == 0 && g->tl.n > 0)
        memset(g->share_tls + (size_t)*idx * g->tl.n, 0, g->tl.n * sizeof *g->share_tls);
    if (rc != 0 || !g->share_avg) return rc;
    rc = GROW(g->share_counts, g->share_counts_cap, g->values.n, GROW_UNLIMITED);
    if (rc == 0) g->share_counts[*idx] = 0;
    if (rc == 0 && g->tl.n > 0)
        rc = GROW(g->share_tlc, g->share_tlc_cap, g->values.n * g->tl.n, GROW_UNLIMITED);
    if (rc == 0 && g->tl.n > 0)
        memset(g->share_tlc + (size_t)*idx * g->tl.n, 0, g->tl.n * sizeof *g->share_tlc);
    return rc;
}

/* Parses PUSHES ("-", or "B:ID,..." with B < nb, ID 16 hex digits) of
 * s[0..n) into out (reset; bucket B, the id's bytes); ERR_CORRUPT if bad. */
static int parse_pushes(const char *s, size_t n, size_t nb, query_timeline_t *out)
{
    out->npushes = 0;
    if (n == 1 && s[0] == '-') return 0;
    for (size_t at = 0; at < n;) {
        const char *c = memchr(s + at, ',', n - at);
        size_t end = c != NULL ? (size_t)(c - s) : n, colon = at;
        while (colon < end && s[colon] != ':')
            colon++;
        if (colon == at || colon - at > 9 || end - colon != 17) return ERR_CORRUPT;
        char d[24];
        size_t b = 0;
        uint8_t id[STORAGE_WPROF_ID_LEN];
        for (size_t k = at; k < colon; k++) {
            if (s[k] < '0' || s[k] > '9') return ERR_CORRUPT;
            b = b * 10 + (size_t)(s[k] - '0');
        }
        memcpy(d, s + colon + 1, 16);
        d[16] = 0;
        char *e;
        uint64_t v = strtoull(d, &e, 16);
        if (b >= nb || *e != 0 || d[0] == '-' || d[0] == '+' || d[0] == ' ') return ERR_CORRUPT;
        for (size_t k = 0; k < STORAGE_WPROF_ID_LEN; k++)
            id[k] = (uint8_t)(v >> (8 * (STORAGE_WPROF_ID_LEN - 1 - k)));
        if (query_timeline_add_push(out, b, id) != 0) return ERR_NOMEM;
        at = end + 1;
        if (c != NULL && at == n) return ERR_CORRUPT; /* a trailing comma */
    }
    return 0;
}

/* Counts each value's split pushes once (share_ptl) in its counts. */
static void share_unite(query_gather_t *g)
{
    size_t nb = g->tl.n;
    query_timeline_sort_pushes(&g->share_ptl);
    for (size_t k = 0; g->share_avg && nb > 0 && k < g->share_ptl.npushes; k++) {
        size_t at = g->share_ptl.pushes[k].bucket;
        g->share_counts[at / nb]++;
        g->share_tlc[at]++;
    }
    g->share_ptl.npushes = 0;
}

/* A label-shares entry "TOTAL S1,...,Sn VALUE": the value's total and its
 * timeline buckets are summed; an averaged type's "TOTAL/COUNT S1/C1,..."
 * adds its exact counts too (a summed type's gather takes none), and its
 * "+TOTAL/COUNT S1/C1,... PUSHES VALUE" the value's split pushes by id,
 * united over every answer (share_unite). The entry is checked whole
 * before anything is added. */
int query_gather_add_share(query_gather_t *g, const char *s, size_t n)
{
    if (memchr(s, 0, n) != NULL) return ERR_CORRUPT;
    int with = n > 0 && s[0] == '+';
    if (with && (!g->share_avg || g->tl.n == 0)) return ERR_CORRUPT;
    s += with;
    n -= (size_t)with;
    const char *sp1 = memchr(s, ' ', n);
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - s)) : NULL;
    const char *sp3 = sp2 != NULL && with ? memchr(sp2 + 1, ' ', n - (size_t)(sp2 + 1 - s)) : sp2;
    if (sp3 == NULL) return ERR_CORRUPT;
    query_timeline_t ids = {0};
    if (with && parse_pushes(sp2 + 1, (size_t)(sp3 - sp2 - 1), g->tl.n, &ids) != 0) {
        free(ids.pushes);
        return ERR_CORRUPT;
    }
    int64_t total, count;
    size_t nb = g->tl.n;
    int64_t *b = malloc((nb ? 2 * nb : 1) * sizeof *b); /* the buckets, then their counts */
    if (b == NULL) return ERR_NOMEM;
    int rc = parse_sum(s, (size_t)(sp1 - s), &total, &count);
    if (rc == 0) rc = parse_buckets(sp1 + 1, (size_t)(sp2 - sp1 - 1), nb, b, b + nb);
    for (size_t k = 0; rc == 0 && !g->share_avg && k < nb; k++)
        if (b[nb + k] != 0) rc = ERR_CORRUPT;
    if (rc == 0 && !g->share_avg && count != 0) rc = ERR_CORRUPT;
    uint32_t idx;
    if (rc == 0) rc = share_slot(g, sp3 + 1, n - (size_t)(sp3 + 1 - s), &idx);
    if (rc == 0) g->shares[idx] += total;
    for (size_t k = 0; rc == 0 && k < nb; k++)
        g->share_tls[(size_t)idx * nb + k] += b[k];
    if (rc == 0 && g->share_avg) g->share_counts[idx] += count;
    for (size_t k = 0; rc == 0 && g->share_avg && k < nb; k++)
        g->share_tlc[(size_t)idx * nb + k] += b[nb + k];
    for (size_t k = 0; rc == 0 && k < ids.npushes; k++) {
        uint8_t id[STORAGE_WPROF_ID_LEN];
        for (size_t j = 0; j < STORAGE_WPROF_ID_LEN; j++)
            id[j] = (uint8_t)(ids.pushes[k].id >> (8 * (STORAGE_WPROF_ID_LEN - 1 - j)));
        rc = query_timeline_add_push(&g->share_ptl, (size_t)idx * nb + ids.pushes[k].bucket, id);
    }
    free(ids.pushes);
    free(b);
    return rc;
}

/* A profile's "TIME_NS PROFILE_TYPE": one partial holds the profile, so a
 * second description is a corrupt answer. */
static int add_profile_desc(query_gather_t *g, const char *s, size_t n)
{
    const char *sp = memchr(s, ' ', n);
    if (g->p_type != NULL || sp == NULL || memchr(s, 0, n) != NULL) return ERR_CORRUPT;
    int64_t t;
    if (parse_i64(s, (size_t)(sp - s), &t) != 0) return ERR_CORRUPT;
    size_t tn = n - (size_t)(sp + 1 - s);
    if ((g->p_type = malloc(tn + 1)) == NULL) return ERR_NOMEM;
    memcpy(g->p_type, sp + 1, tn);
    g->p_type[tn] = 0;
    g->p_time_ns = t;
    return 0;
}

int query_gather_add_value(query_gather_t *g, const char *s, size_t n)
{
    if (g->spec->kind == QUERY_KIND_PROFILE) return add_profile_desc(g, s, n);
    if (g->spec->kind == QUERY_KIND_LABEL_SHARES) return query_gather_add_share(g, s, n);
    if (g->spec->kind == QUERY_KIND_PROFILES) return query_plist_add_entry(&g->plist, s, n);
    if (g->value_bytes + n + 3 > g->lim.max_output_bytes) return ERR_LIMIT;
    /* s may be a protobuf bytes field: exactly n bytes, no terminator, so no
     * strndup (which may look at byte n) */
    if (memchr(s, 0, n) != NULL) return ERR_CORRUPT;
    char *copy = malloc(n + 1);
    if (copy == NULL) return ERR_NOMEM;
    memcpy(copy, s, n);
    copy[n] = 0;
    size_t before = g->values.n;
    uint32_t idx;
    int rc = strmap_intern(&g->values, copy, strlen(copy), &idx);
    if (rc != 0 || g->values.n == before) {
        free(copy); /* already present (or failed): the map keeps its own */
        return rc;
    }
    g->value_bytes += n + 3;
    if (g->spec->label != NULL && query_span_label_kind(g->spec->label) != 0 &&
        g->values.n > g->lim.max_span_ids)
        return ERR_LIMIT;
    return 0;
}

int query_gather_limit_reason(const query_gather_t *g, errmsg_t *em)
{
    if (g->spec->label != NULL && query_span_label_kind(g->spec->label) != 0 &&
        g->values.n > g->lim.max_span_ids)
        return errmsg_set(em, ERR_LIMIT,
                          "more than %zu span or trace ids match (query-max-span-ids): narrow "
                          "the match selector or the time range",
                          g->lim.max_span_ids);
    return errmsg_set(em, ERR_LIMIT, "label answer exceeds %zu bytes (query-max-output-bytes)",
                      g->lim.max_output_bytes);
}

/* ---- a local partial ---- */

void query_gather_names_from(query_gather_t *g, storage_t *st, const char *tenant)
{
    g->names_st = st;
    g->names_tenant = tenant;
}

void query_gather_names_lent(query_gather_t *g, query_names_hold_fn hold,
                             query_names_release_fn release, void *ctx)
{
    g->lend_hold = hold;
    g->lend_release = release;
    g->lend_ctx = ctx;
}

void query_gather_names_via(query_gather_t *g, query_names_fn fn, void *ctx)
{
    g->names_fn = fn;
    g->names_ctx = ctx;
    g->names_due = fn != NULL;
}

typedef struct missing {
    const symtab_t *have;
    uint64_t *v;
    size_t n, cap;
} missing_t;

static int missing_fn(void *ctx, uint64_t sym)
{
    missing_t *m = ctx;
    const char *name, *file;
    if (sym == SYM_OTHER || sym == SYM_ROOT || symtab_get(m->have, sym, &name, &file)) return 0;
    if (GROW_FROM(m->v, m->cap, m->n + 1, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    m->v[m->n++] = sym;
    return 0;
}

/* The kept nodes' symbols g->syms lacks into m, each once when the kept
 * nodes number their symbols (a bit per number, a few bytes beside the
 * kept nodes' arrays), else once per node. */
static int missing_kept(const query_kept_t *k, missing_t *m)
{
    uint8_t *seen = k->sid != NULL ? calloc(k->nsid / 8 + 1, 1) : NULL;
    if (k->sid != NULL && seen == NULL) return ERR_NOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < k->n; i++) {
        if (seen != NULL) {
            uint32_t s = k->sid[i];
            if (seen[s / 8] & (1u << (s % 8))) continue;
            seen[s / 8] |= (uint8_t)(1u << (s % 8));
        }
        rc = missing_fn(m, k->sym[i]);
    }
    free(seen);
    return rc;
}

/* The names of g->tree's symbols (or g->kept's) that no partial brought
 * (those of local forests added with names_later, and those a share left
 * to the names_fn), from names_fn first, then from the storage that holds
 * them. */
static int load_due_names(query_gather_t *g)
{
    if (!g->names_due) return 0;
    missing_t m = {g->syms, NULL, 0, 0};
    int rc = 0;
    if (g->kept == NULL)
        rc = calltree_for_each_symbol(g->tree, missing_fn, &m);
    else if (!g->kept->named) /* else a local selection loaded them beside it */
        rc = missing_kept(g->kept, &m);
    if (rc == 0 && m.n > 0 && g->names_fn != NULL) {
        rc = g->names_fn(g->names_ctx, m.v, m.n, g->syms);
        size_t k = 0; /* those still missing */
        for (size_t i = 0; rc == 0 && i < m.n; i++) {
            const char *name, *file;
            if (!symtab_get(g->syms, m.v[i], &name, &file)) m.v[k++] = m.v[i];
        }
        m.n = k;
    }
    if (rc == 0 && m.n > 0 && g->names_st != NULL)
        rc = storage_load_symbols(g->names_st, g->names_tenant, m.v, m.n, g->syms);
    free(m.v);
    if (rc == 0) g->names_due = 0;
    return rc;
}

static int add_symbols(query_gather_t *g, query_partial_t *p)
{
    if (symtab_count(g->syms) == 0) { /* the first partial's table is taken whole */
        symtab_t *t = g->syms;
        g->syms = p->syms;
        p->syms = t;
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < symtab_count(p->syms); i++) {
        uint64_t id = symtab_id_at(p->syms, i);
        const char *name, *file;
        if (symtab_get(p->syms, id, &name, &file))
            rc = symtab_put(g->syms, id, name, strlen(name), file, strlen(file));
    }
    return rc;
}

/* The kept nodes added into the tree: for anything but the JSON of the
 * one partial that made them. */
static int kept_to_tree(calltree_t *tree, query_kept_t **kept)
{
    if (*kept == NULL) return 0;
    int rc = query_kept_tree(*kept, tree);
    query_kept_free(*kept);
    *kept = NULL;
    return rc;
}

/* A partial's kept nodes are taken as they are when they are all the
 * gather will hold (the partial alone is the answer); otherwise both sides'
 * are built into trees and added as trees. */
static int add_kept(query_gather_t *g, query_partial_t *p)
{
    if (p->kept != NULL && g->kept == NULL && g->nforests == 0 && g->npacked == 0 &&
        calltree_node_count(g->tree) == 1 && calltree_self(g->tree, 0) == 0) {
        g->kept = p->kept;
        p->kept = NULL;
        return 0;
    }
    int rc = kept_to_tree(g->tree, &g->kept);
    return rc != 0 ? rc : kept_to_tree(p->tree, &p->kept);
}

/* Adds n function sums by symbol (each from the arrays, or from fns when
 * syms is NULL) to the gather's: its table grown and the merge's map held
 * first (gather_hold). */
static int add_fn_sums(query_gather_t *g, const query_fn_t *fns, const uint64_t *syms,
                       const int64_t *selves, const int64_t *totals, size_t n, errmsg_t *em)
{
    size_t all = g->nfns + n;
    int rc = gather_hold(g, all * sizeof(query_fn_t) + u64map_init_bytes(all), em);
    if (rc != 0) return rc;
    query_fn_t *v = realloc(g->fns, all * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    g->fns = v;
    rc = query_fns_merge(g->fns, &g->nfns, fns, syms, selves, totals, n);
    return rc != 0 ? rc : gather_hold(g, 0, em);
}

/* A share's function sums (query_partial_t.fns) added to the gather's: the
 * first taken as they are, the next added by symbol. */
static int add_fns(query_gather_t *g, query_partial_t *p, errmsg_t *em)
{
    g->fns_total = (int64_t)((uint64_t)g->fns_total + (uint64_t)p->fns_total);
    if (p->nfns == 0) return 0;
    if (g->fns != NULL) return add_fn_sums(g, p->fns, NULL, NULL, NULL, p->nfns, em);
    g->fns = p->fns;
    g->nfns = p->nfns;
    p->fns = NULL;
    p->nfns = 0;
    return 0;
}

int query_gather_add_functions(query_gather_t *g, const uint64_t *syms, const int64_t *selves,
                               const int64_t *totals, size_t n, int64_t total, errmsg_t *em)
{
    g->fns_total = (int64_t)((uint64_t)g->fns_total + (uint64_t)total);
    return n > 0 ? add_fn_sums(g, NULL, syms, selves, totals, n, em) : 0;
}

static int add_render(query_gather_t *g, query_partial_t *p, errmsg_t *em)
{
    g->partial_spans += p->partial_spans;
    if (p->names_later && g->names_st == NULL)
        return errmsg_set(em, ERR_INTERNAL, "a partial without names and no storage for them");
    g->names_due |= p->names_later;
    int rc = query_gather_add_series(g, p->nseries, p->spy_name, em);
    if (rc == 0 && (rc = add_fns(g, p, em)) != 0)
        return g->refused ? rc : errmsg_set(em, rc, "adding the functions: %s", err_message(rc));
    if (rc != 0 || p->tree == NULL) return rc;
    if ((rc = add_kept(g, p)) != 0) return rc == ERR_LIMIT ? tree_limit(g, em) : rc;
    for (size_t i = 0; rc == 0 && i < p->ntabs; i++) /* nonneg, as the share checked */
        rc = g->forests_on ? add_forest(g, &p->tabs[i], em)
                           : query_forest_merge(g->tree, &p->tabs[i]);
    if (rc != 0) return rc == ERR_LIMIT ? tree_limit(g, em) : rc;
    if (calltree_node_count(g->tree) == 1 && calltree_self(g->tree, 0) == 0) {
        calltree_t *t = g->tree; /* still empty: take the partial's tree */
        g->tree = p->tree;
        p->tree = t;
    } else if ((rc = calltree_merge(g->tree, p->tree)) != 0) {
        return rc == ERR_LIMIT ? tree_limit(g, em) : rc;
    }
    if (p->syms != NULL && (rc = add_symbols(g, p)) != 0) return rc;
    if (g->tl.n == 0) return 0;
    if (p->tl.n != g->tl.n || p->tl.start_s != g->tl.start_s || p->tl.step_s != g->tl.step_s)
        return errmsg_set(em, ERR_INTERNAL, "partial timeline has another shape");
    for (size_t i = 0; i < g->tl.n; i++)
        g->tl.samples[i] += p->tl.samples[i];
    if (g->tl.counts == NULL || p->tl.counts == NULL) return 0;
    for (size_t i = 0; i < g->tl.n; i++) /* exact counts add; averages never do */
        g->tl.counts[i] += p->tl.counts[i];
    g->tl.profiles += p->tl.profiles;
    /* pushes split into pieces: united by id (query_timeline_unite) */
    if (GROW_FROM(g->tl.pushes, g->tl.pushes_cap, g->tl.npushes + p->tl.npushes, GROW_UNLIMITED,
                  64) != 0)
        return ERR_NOMEM;
    if (p->tl.npushes > 0)
        memcpy(g->tl.pushes + g->tl.npushes, p->tl.pushes, p->tl.npushes * sizeof *p->tl.pushes);
    g->tl.npushes += p->tl.npushes;
    query_timeline_sort_pushes(&g->tl); /* each push once */
    return 0;
}

int query_gather_add(query_gather_t *g, query_partial_t *p, errmsg_t *em)
{
    if (p->kind != g->spec->kind) return errmsg_set(em, ERR_INTERNAL, "partial of another kind");
    if (p->kind == QUERY_KIND_RENDER) {
        int rc = add_render(g, p, em);
        return rc == 0 ? gather_hold(g, 0, em) : rc;
    }
    int rc = 0;
    if (p->kind == QUERY_KIND_PROFILE && (rc = add_render(g, p, em)) != 0) return rc;
    for (size_t i = 0; rc == 0 && i < p->nvalues; i++)
        rc = query_gather_add_value(g, p->values[i], strlen(p->values[i]));
    if (rc == ERR_LIMIT) query_gather_limit_reason(g, em);
    return rc;
}

/* ---- the answer ---- */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int may_stream(const query_gather_t *g);
static int hold_stream(query_gather_t *g, int rc, query_result_t *out, errmsg_t *em);

/* The sorted values: a stream when their JSON is large
 * (query-stream-bytes), which takes them from g, else whole. */
static int finish_labels(query_gather_t *g, query_result_t *out, errmsg_t *em)
{
    /* Sorting the map's array breaks its slots; the map is not used after
     * (its lens are sorted with it: the stream reads them). */
    size_t n = g->values.n;
    if (n > 1) {
        qsort(g->values.strs, n, sizeof *g->values.strs, str_cmp);
        for (size_t i = 0; i < n; i++)
            g->values.lens[i] = strlen(g->values.strs[i]);
    }
    out->content_type = "application/json";
    if (!may_stream(g) || g->value_bytes + 2 < g->lim.stream_min_bytes)
        return query_labels_write_array((char *const *)g->values.strs, n, &out->body);
    size_t bytes = g->value_bytes + n * 2 * sizeof(void *); /* as query_gather_bytes counts */
    int rc = query_labels_open(&g->values, bytes, &out->stream);
    g->value_bytes = 0; /* the stream's now (or freed) */
    return hold_stream(g, rc, out, em);
}

/* Adds members before the closing brace of a JSON object. */
int query_add_json_members(buf_t *body, const char *members)
{
    if (body->len == 0 || body->data[body->len - 1] != '}') return ERR_INTERNAL;
    body->len--;
    int rc = buf_append_byte(body, ',');
    if (rc == 0) rc = buf_append_str(body, members);
    return rc != 0 ? rc : buf_append_byte(body, '}');
}

/* The red note of a partial svg: missing ranges (the "missing" member), or
 * else span trees that may leave profiles out. */
static const char *svg_note(const char *partial_json)
{
    if (partial_json == NULL) return NULL;
    if (strstr(partial_json, "\"missing\"") != NULL)
        return "(partial: some token ranges did not answer)";
    return "(partial: span trees left some profiles out)";
}

/* A large answer as a stream: it took the tree and the names, and holds
 * them (charged beside the gather) until its last byte is read. rc: what
 * opening it returned. */
static int hold_stream(query_gather_t *g, int rc, query_result_t *out, errmsg_t *em)
{
    if (rc != 0 || out->stream == NULL) return rc;
    return gather_hold(g, query_stream_bytes(out->stream), em);
}

/* 1 when this answer may be a stream (query-stream-bytes). */
static int may_stream(const query_gather_t *g)
{
    return g->spec->stream && g->lim.stream_min_bytes > 0;
}

/* The SVG: a stream when large (query_svg_open), else whole. */
static int encode_svg(query_gather_t *g, const char *type, const char *title, const char *note,
                      query_result_t *out, errmsg_t *em)
{
    if (!may_stream(g)) return query_encode_svg(g->tree, g->syms, type, title, note, &out->body);
    int rc = query_svg_open(&g->tree, &g->syms, type, title, note, NULL, g->lim.stream_min_bytes,
                            &out->body, &out->stream);
    return hold_stream(g, rc, out, em);
}

/* The speedscope file: a stream when large (query_speedscope_open), else
 * whole; a partial answer's members at its top level either way. */
static int encode_speedscope(query_gather_t *g, const char *type, const char *title,
                             const char *partial_json, query_result_t *out, errmsg_t *em)
{
    const char *name = title != NULL ? title : type != NULL ? type : "flamedb";
    int rc = 0;
    if (!may_stream(g)) {
        rc = query_encode_speedscope(g->tree, g->syms, type, name, &out->body);
        if (rc == 0 && partial_json != NULL) rc = query_add_json_members(&out->body, partial_json);
        return rc;
    }
    int64_t *self = NULL; /* the tree's own */
    rc = query_speedscope_open(&g->tree, &g->syms, type, name, &name, &self, 1, partial_json,
                               g->lim.stream_min_bytes, &out->body, &out->stream);
    return hold_stream(g, rc, out, em);
}

/* The gzipped pprof: a stream when large (query_pprof_open), else whole. */
static int encode_pprof(query_gather_t *g, const char *type, int64_t t0, int64_t dur,
                        query_result_t *out, errmsg_t *em)
{
    if (!may_stream(g)) return query_encode_pprof(g->tree, g->syms, type, t0, dur, &out->body);
    int rc = query_pprof_open(&g->tree, &g->syms, type, t0, dur, g->lim.stream_min_bytes,
                              &out->body, &out->stream);
    return hold_stream(g, rc, out, em);
}

/* An averaged type whose timeline has buckets with values and no profile
 * counted (profiles past profile-retention, or a span selection): the answer
 * says how many, as those buckets and the flame graph could not be averaged
 * over them ("uncountedBuckets", docs/api.md). */
static size_t uncounted_buckets(const query_gather_t *g)
{
    size_t n = 0;
    for (size_t i = 0; g->tl.counts != NULL && i < g->tl.n; i++)
        n += g->tl.samples[i] != 0 && g->tl.counts[i] == 0;
    return n;
}

static int add_uncounted(const query_gather_t *g, buf_t *body)
{
    size_t n = uncounted_buckets(g);
    if (n == 0) return 0;
    char m[48];
    snprintf(m, sizeof m, "\"uncountedBuckets\":%zu", n);
    return query_add_json_members(body, m);
}

/* A flamebearer answer (the kept nodes' when kept, else the tree's) as a
 * stream when large (query_flamebearer_open), with the members the whole
 * answer gets: uncountedBuckets (a render), then partial_json. */
static int encode_flamebearer_open(query_gather_t *g, int kept, const char *type, int one,
                                   const char *partial_json, query_result_t *out, errmsg_t *em)
{
    char m[48 + 1] = "";
    size_t n = one ? 0 : uncounted_buckets(g);
    if (n > 0) snprintf(m, sizeof m, "\"uncountedBuckets\":%zu", n);
    buf_t members;
    buf_init(&members, BUF_UNLIMITED);
    int rc = buf_append_str(&members, m);
    if (rc == 0 && partial_json != NULL && m[0] != 0) rc = buf_append_byte(&members, ',');
    if (rc == 0 && partial_json != NULL) rc = buf_append_str(&members, partial_json);
    if (rc == 0)
        rc = query_flamebearer_open(&g->tree, kept ? &g->kept : NULL, &g->syms, type, g->spy_name,
                                    one ? NULL : &g->tl, members.len ? (char *)members.data : NULL,
                                    g->lim.stream_min_bytes, g->lim.assist, &out->body,
                                    &out->stream);
    buf_free(&members);
    return hold_stream(g, rc, out, em);
}

/* An averaged type in a format other than the JSON flame graph (which
 * divides each node's total and self as it writes them): each stack's self
 * value divided by the profiles counted, rounded down. */
static int average_selves(query_gather_t *g, errmsg_t *em)
{
    int64_t n = g->tl.profiles;
    if (g->tl.counts == NULL || n <= 1) return 0;
    size_t nn = calltree_node_count(g->tree);
    /* in place: a tree whose values are another's (scaled, or a shape
     * shared) is given its own first, charged before they are made */
    int rc = gather_hold(g, nn * sizeof(int64_t), em);
    if (rc == 0) rc = calltree_add_selves(g->tree, NULL, NULL, 0);
    for (size_t i = 0; rc == 0 && i < nn; i++) {
        int64_t v = calltree_self(g->tree, (uint32_t)i);
        calltree_add_self(g->tree, (uint32_t)i, v / n - v); /* to v / n */
    }
    return rc == 0 ? gather_hold(g, 0, em) : rc;
}

/* Now on the monotonic clock (ns), for query_result_t's step times. */
static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The kept nodes' names (those no partial brought), timed into out. */
static int load_names_timed(query_gather_t *g, query_result_t *out)
{
    uint64_t t0 = mono_ns();
    int rc = load_due_names(g);
    out->names_ns += mono_ns() - t0;
    return rc;
}

static int encode_format(query_gather_t *g, const char *partial_json, query_result_t *out,
                         errmsg_t *em);

/* The answer in its format, its names loaded first: both timed into out. */
static int encode(query_gather_t *g, const char *partial_json, query_result_t *out, errmsg_t *em)
{
    int rc = load_names_timed(g, out); /* only the kept nodes' */
    if (rc != 0) return rc;
    uint64_t t0 = mono_ns();
    rc = encode_format(g, partial_json, out, em);
    out->encode_ns += mono_ns() - t0;
    return rc;
}

static int encode_format(query_gather_t *g, const char *partial_json, query_result_t *out,
                         errmsg_t *em)
{
    const query_spec_t *s = g->spec;
    int one = s->kind == QUERY_KIND_PROFILE;
    const char *type = one ? g->p_type : query_selector_type(s->sel);
    char name[QUERY_PROFILE_ID_HEX + 16]; /* a picture's title */
    snprintf(name, sizeof name, "profile %s", one ? s->label : "");
    const char *title = one ? name : s->selector;
    /* pprof: a range's start and length, or the one profile's time */
    int64_t t0 = one ? g->p_time_ns : s->plan.from_s * 1000000000LL;
    int64_t dur = one ? 0 : (s->plan.until_s - s->plan.from_s) * 1000000000LL;
    int rc = gather_hold(g, 0, em);
    if (rc != 0) return rc;
    if (s->format != QUERY_FORMAT_JSON && (rc = average_selves(g, em)) != 0) return rc;
    switch (s->format) {
    case QUERY_FORMAT_JSON:
        out->content_type = "application/json";
        if (may_stream(g)) return encode_flamebearer_open(g, 0, type, one, partial_json, out, em);
        rc = query_encode_flamebearer(g->tree, g->syms, type, g->spy_name, one ? NULL : &g->tl,
                                      &out->body);
        if (rc == 0 && !one) rc = add_uncounted(g, &out->body);
        if (rc == 0 && partial_json != NULL) rc = query_add_json_members(&out->body, partial_json);
        return rc;
    case QUERY_FORMAT_FOLDED:
        out->content_type = "text/plain; charset=utf-8";
        if (may_stream(g) && s->max_nodes == 0)
            return hold_stream(g,
                               query_folded_open(&g->tree, &g->syms, NULL, g->lim.stream_min_bytes,
                                                 &out->body, &out->stream),
                               out, em);
        return query_encode_folded(g->tree, g->syms, &out->body);
    case QUERY_FORMAT_TREE:
        out->content_type = "application/x-flamedb-tree";
        return query_encode_tree(g->tree, g->syms, &out->body);
    case QUERY_FORMAT_FUNCTIONS:
        out->content_type = "application/x-flamedb-functions";
        return query_encode_functions(g->tree, g->fns, g->nfns, g->fns_total, g->syms, &out->body);
    case QUERY_FORMAT_TOP: {
        query_top_opts_t o = {s->top_limit, s->top_by_total, s->plan.until_s - s->plan.from_s,
                              s->top_search};
        out->content_type = "application/json";
        rc = query_encode_top_fns(g->tree, g->fns, g->nfns, g->fns_total, g->syms, type, &o,
                                  &out->body);
        if (rc == 0 && partial_json != NULL) rc = query_add_json_members(&out->body, partial_json);
        return rc;
    }
    case QUERY_FORMAT_SVG:
        out->content_type = "image/svg+xml";
        return encode_svg(g, type, title, svg_note(partial_json), out, em);
    case QUERY_FORMAT_SPEEDSCOPE:
        out->content_type = "application/json";
        return encode_speedscope(g, type, title, partial_json, out, em);
    default:
        out->content_type = "application/octet-stream";
        return encode_pprof(g, type, t0, dur, out, em);
    }
}

/* The forests freed once their selection holds what the answer needs: 1. */
static int forests_taken(query_gather_t *g)
{
    storage_merged_tabs_free(g->forests, g->nforests);
    free_packed(g);
    g->forests = NULL;
    g->nforests = g->cap_forests = g->forest_bytes = 0;
    gather_hold(g, 0, NULL); /* less: cannot fail */
    return 1;
}

/* The forests' kept nodes as g->kept (for the JSON flame graph, written
 * straight from them), the forests freed: 1, or an error as
 * finish_forests. */
static int keep_forests(query_gather_t *g, errmsg_t *em)
{
    query_kept_t *k = NULL;
    int rc = 1;
    /* the one forest held, its nodes filed beside as it was made */
    if (g->filed != NULL && g->nforests == 1 && g->npacked == 0 &&
        g->forests[0].total == g->filed_total && query_cut_follow_moved(g->filed, &g->forests[0]))
        rc = query_keep_cut_filed(&g->forests[0], g->spec->max_nodes, g->charge, g->filed, &k);
    query_cut_follow_free(g->filed);
    g->filed = NULL;
    if (rc == 1)
        rc = query_keep_mixed_charged(g->forests, g->nforests, g->packed, g->npacked,
                                      g->spec->max_nodes, g->charge, &k);
    if (rc == ERR_UNAVAILABLE) return gather_refused(g, rc, em);
    if (rc == ERR_INVALID_ARGUMENT) return spill_forests(g, em); /* past INT64_MAX */
    if (rc != 0) return rc;
    g->kept = k;
    if ((rc = gather_hold(g, 0, em)) != 0) return rc; /* beside the forests, then alone */
    return forests_taken(g);
}

/* The truncation of the forests' union (with the tree's) into g->tree, or
 * with as_kept into g->kept: 1 when done, 0 when the gather merged instead
 * (a negative value in the tree, a total past INT64_MAX), or an error. */
static int finish_forests(query_gather_t *g, int as_kept, errmsg_t *em)
{
    int rc = 0;
    if (calltree_node_count(g->tree) > 1 || calltree_self(g->tree, 0) != 0) {
        storage_merged_tab_t f; /* what local partials merged into the tree */
        size_t copy = query_forest_of_tree_bytes(calltree_node_count(g->tree));
        if ((rc = gather_hold(g, copy, em)) != 0) return rc; /* the copy counts first */
        if ((rc = query_forest_of_tree(g->tree, &f)) != 0) return rc;
        if (!f.nonneg) return spill_forests(g, em); /* merge with the tree */
        if ((rc = calltree_clear(g->tree)) == 0) rc = add_forest(g, &f, em);
        if (rc != 0 || !g->forests_on) return rc;
    }
    if (as_kept) return keep_forests(g, em);
    /* the selection's arrays, charged as they grow, and the tree it builds
     * count beside the forests */
    calltree_t *small = calltree_new(0);
    if (small == NULL) return ERR_NOMEM;
    rc = query_truncate_mixed_charged(g->forests, g->nforests, g->packed, g->npacked,
                                      g->spec->max_nodes, g->charge, small);
    if (rc == ERR_UNAVAILABLE) rc = gather_refused(g, rc, em);
    if (rc == 0) rc = gather_hold(g, calltree_mem_bytes_read(small), em);
    if (rc == ERR_INVALID_ARGUMENT) { /* a total past INT64_MAX: only the merge is exact */
        calltree_free(small);
        return spill_forests(g, em);
    }
    if (rc != 0) {
        calltree_free(small);
        return rc;
    }
    calltree_free(g->tree);
    g->tree = small;
    return forests_taken(g);
}

/* The lent table of names, held, when the answer is written whole (a
 * stream would outlive the hold) and it names every kept node's symbol;
 * else NULL, nothing held. Timed into out as the names step. */
static const symtab_t *lent_names(query_gather_t *g, query_result_t *out)
{
    if (g->lend_hold == NULL || !g->names_due || g->kept == NULL) return NULL;
    uint64_t t0 = mono_ns();
    const symtab_t *t = NULL;
    if (!may_stream(g) ||
        !query_flamebearer_kept_streams(g->kept, &g->tl, g->lim.stream_min_bytes, &out->body)) {
        t = g->lend_hold(g->lend_ctx);
        missing_t m = {t, NULL, 0, 0};
        int whole = t != NULL && missing_kept(g->kept, &m) == 0 && m.n == 0;
        free(m.v);
        if (!whole) {
            g->lend_release(g->lend_ctx);
            t = NULL;
        }
    }
    out->names_ns += mono_ns() - t0;
    return t;
}

/* The answer written whole from the kept nodes and names (g's or lent). */
static int encode_kept_whole(query_gather_t *g, const symtab_t *names, const char *partial_json,
                             query_result_t *out)
{
    int rc = query_encode_flamebearer_kept(g->kept, names, query_selector_type(g->spec->sel),
                                           g->spy_name, &g->tl, g->lim.assist, &out->body);
    if (rc == 0) rc = add_uncounted(g, &out->body);
    if (rc == 0 && partial_json != NULL) rc = query_add_json_members(&out->body, partial_json);
    return rc;
}

/* The flamebearer JSON of the kept nodes, as encode writes it of their tree. */
static int encode_kept(query_gather_t *g, const char *partial_json, query_result_t *out,
                       errmsg_t *em)
{
    out->content_type = "application/json";
    const symtab_t *lent = lent_names(g, out);
    int rc = lent != NULL ? 0 : load_names_timed(g, out); /* forests bring no names */
    if (rc == 0) rc = gather_hold(g, 0, em);
    if (rc == 0 && lent != NULL) {
        uint64_t t0 = mono_ns();
        rc = encode_kept_whole(g, lent, partial_json, out);
        out->encode_ns += mono_ns() - t0;
    }
    if (lent != NULL) g->lend_release(g->lend_ctx);
    if (rc != 0 || lent != NULL) return rc;
    uint64_t t0 = mono_ns();
    if (may_stream(g)) {
        rc = encode_flamebearer_open(g, 1, query_selector_type(g->spec->sel), 0, partial_json, out,
                                     em);
    } else {
        rc = encode_kept_whole(g, g->syms, partial_json, out);
    }
    out->encode_ns += mono_ns() - t0;
    return rc;
}

static int finish_render(query_gather_t *g, const char *partial_json, query_result_t *out,
                         errmsg_t *em)
{
    query_timeline_unite(&g->tl); /* every answer's split pushes are in: each counts once */
    /* kept nodes alone: no more than maxNodes, none empty */
    if (g->kept != NULL && json_render(g) && g->nforests == 0 && g->npacked == 0 &&
        calltree_node_count(g->tree) == 1 && calltree_self(g->tree, 0) == 0)
        return encode_kept(g, partial_json, out, em);
    int krc = kept_to_tree(g->tree, &g->kept);
    if (krc != 0) return errmsg_set(em, krc, "building the flame graph: %s", err_message(krc));
    if ((krc = gather_hold(g, 0, em)) != 0) return krc;
    if (g->forests_on && g->nforests + g->npacked > 0) {
        int rc = finish_forests(g, json_render(g), em);
        if (rc == ERR_LIMIT) return rc; /* em says which */
        if (rc < 0 && !g->refused)
            return errmsg_set(em, rc, "building the flame graph: %s", err_message(rc));
        if (rc < 0) return rc; /* em names the budget */
        if (rc == 1 && g->kept != NULL) return encode_kept(g, partial_json, out, em);
        if (rc == 1) return encode(g, partial_json, out, em);
    }
    size_t max = g->spec->max_nodes;
    /* top sums per function over the whole tree: truncating would move
     * values into `other` */
    if (g->spec->format == QUERY_FORMAT_TOP || g->spec->format == QUERY_FORMAT_FUNCTIONS) max = 0;
    size_t n = calltree_node_count(g->tree);
    if (max == 0 || max > n) max = n; /* then only empty nodes are dropped */
    if (n > max || (n >= 2 && query_tree_has_empty(g->tree))) {
        /* the truncation's working memory and the tree it builds (at most
         * max nodes of about the size of the merged tree's) count beside it */
        size_t per = calltree_mem_bytes_read(g->tree) / n;
        int rc = gather_hold(g, query_truncate_scratch_bytes(g->tree) + max * per, em);
        if (rc != 0) return rc;
        calltree_t *small;
        rc = query_truncate(g->tree, max, &small);
        if (rc != 0) return errmsg_set(em, rc, "building the flame graph: %s", err_message(rc));
        calltree_free(g->tree);
        g->tree = small;
        if ((rc = gather_hold(g, 0, em)) != 0) return rc;
    }
    return encode(g, partial_json, out, em);
}

/* Not held by any partial: unknown (404), or, when the ranges of its
 * replicas did not answer, unavailable (503): it may well exist. */
static int finish_profile(query_gather_t *g, const char *partial_json, query_result_t *out,
                          errmsg_t *em)
{
    const char *id = g->spec->label;
    if (g->nseries > 0 && g->p_type != NULL) return finish_render(g, partial_json, out, em);
    if (partial_json != NULL)
        return errmsg_set(em, ERR_UNAVAILABLE,
                          "profile %s: no live replica of its series' token range answered", id);
    return errmsg_set(em, ERR_NOT_FOUND,
                      "profile %s is not stored: unknown id, past profile-retention, or its tree "
                      "was larger than max-profile-tree-bytes",
                      id);
}

int query_gather_finish(query_gather_t *g, const char *partial_json, query_result_t *out,
                        errmsg_t *em)
{
    buf_free(&out->body);
    buf_init(&out->body, g->lim.max_output_bytes);
    if (g->charge != NULL) { /* the answer counts as it grows */
        g->answer_em = em;
        buf_charge(&out->body, answer_grows, g);
    }
    int rc;
    if (g->broken) {
        rc = errmsg_set(em, ERR_NOMEM, "building the flame graph: out of memory");
    } else if (g->spec->kind == QUERY_KIND_RENDER) {
        rc = finish_render(g, partial_json, out, em);
    } else if (g->spec->kind == QUERY_KIND_PROFILE) {
        rc = finish_profile(g, partial_json, out, em);
    } else if (g->spec->kind == QUERY_KIND_LABEL_SHARES) {
        out->content_type = "application/json";
        share_unite(g); /* every answer's split pushes are in: each counts once per value */
        query_shares_t sh = {g->share_avg, g->shares, g->share_tls, g->share_counts, g->share_tlc};
        if (g->spec->groups) { /* a member for a render: its caller */
            rc = query_shares_write_groups(&g->values, &g->tl, &sh, &out->body);
        } else { /* shows partial answers */
            rc = query_shares_write(g->spec->label, &g->values, &g->tl, &sh, &out->body);
            if (rc == 0 && partial_json != NULL)
                rc = query_add_json_members(&out->body, partial_json);
        }
    } else if (g->spec->kind == QUERY_KIND_PROFILES) {
        out->content_type = "application/json";
        size_t min = may_stream(g) ? g->lim.stream_min_bytes : SIZE_MAX;
        rc = query_profiles_open(&g->plist, g->spec->top_limit, partial_json, min, &out->body,
                                 &out->stream);
        rc = hold_stream(g, rc, out, em);
    } else {
        rc = finish_labels(g, out, em);
    }
    if (rc == 0 || !g->refused)
        rc = query_out_err(rc, &out->body, em); /* else em names the budget */
    buf_charge(&out->body, NULL, NULL);         /* the owner counts it from here */
    g->answer_em = NULL;
    /* the answer beside what it was encoded from (charged as it grew) */
    size_t streamed = out->stream != NULL ? query_stream_bytes(out->stream) : 0;
    if (rc == 0) rc = gather_hold(g, out->body.cap + streamed, em);
    if (rc != 0) {
        buf_reset(&out->body);
        query_stream_free(out->stream);
        out->stream = NULL;
    }
    return rc;
}

void query_gather_add_partial_spans(query_gather_t *g, uint64_t n)
{
    g->partial_spans += n;
}

uint64_t query_gather_partial_spans(const query_gather_t *g)
{
    return g->partial_spans;
}
