/* partial.c — one node's share of a query: the series whose placement token
 * lies in given ring ranges, merged into an untruncated call tree with the
 * symbols it references, the timeline totals and the spy name they share (or
 * the label names / values of those series, in labels_q.c).
 *
 * Arguments arrive from other nodes, so they are checked here before use: a
 * plan that is not on its resolution's grid is refused rather than rounded,
 * because two nodes rounding differently would split windows between them.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "query/query_int.h"

/* ---- token ranges ---- */

int query_range_contains(query_range_t r, uint64_t token)
{
    if (r.start == r.end) return 1;
    if (r.start < r.end) return token > r.start && token <= r.end;
    return token > r.start || token <= r.end; /* wraps past UINT64_MAX */
}

typedef struct ival {
    uint64_t lo, hi;
} ival_t;

static int ival_cmp(const void *a, const void *b)
{
    const ival_t *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Appends the closed intervals of r (one, or two when it wraps). */
static size_t range_ivals(query_range_t r, ival_t *out)
{
    if (r.start < r.end) {
        out[0] = (ival_t){r.start + 1, r.end};
        return 1;
    }
    size_t n = 0;
    if (r.start != UINT64_MAX) out[n++] = (ival_t){r.start + 1, UINT64_MAX};
    out[n++] = (ival_t){0, r.end};
    return n;
}

int query_rangeset_build(rangeset_t *rs, const query_range_t *r, size_t n)
{
    memset(rs, 0, sizeof *rs);
    for (size_t i = 0; i < n; i++)
        if (r[i].start == r[i].end) n = 0; /* a whole-ring range covers everything */
    if (n == 0) {
        rs->all = 1;
        return 0;
    }
    ival_t *v = malloc(2 * n * sizeof *v);
    if (v == NULL) return ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += range_ivals(r[i], v + m);
    qsort(v, m, sizeof *v, ival_cmp);
    rs->lo = malloc(m * sizeof *rs->lo);
    rs->hi = malloc(m * sizeof *rs->hi);
    if (rs->lo == NULL || rs->hi == NULL) {
        free(v);
        query_rangeset_free(rs);
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < m; i++) { /* join overlapping or touching intervals */
        if (rs->n > 0 && (rs->hi[rs->n - 1] == UINT64_MAX || v[i].lo <= rs->hi[rs->n - 1] + 1)) {
            if (v[i].hi > rs->hi[rs->n - 1]) rs->hi[rs->n - 1] = v[i].hi;
            continue;
        }
        rs->lo[rs->n] = v[i].lo;
        rs->hi[rs->n++] = v[i].hi;
    }
    free(v);
    return 0;
}

int query_rangeset_has(const rangeset_t *rs, uint64_t token)
{
    if (rs->all) return 1;
    size_t a = 0, b = rs->n; /* first interval with hi >= token */
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (rs->hi[m] < token)
            a = m + 1;
        else
            b = m;
    }
    return a < rs->n && rs->lo[a] <= token;
}

void query_rangeset_free(rangeset_t *rs)
{
    free(rs->lo);
    free(rs->hi);
    memset(rs, 0, sizeof *rs);
}

/* ---- the render partial ---- */

/* Unix seconds a plan may reach: far beyond any real time, far from overflow. */
#define PLAN_MAX_ABS_S (1LL << 40)

static int check_plan_args(const query_partial_args_t *a, errmsg_t *em)
{
    if (a->min_res < 0 || a->min_res >= STORAGE_RESOLUTION_COUNT)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "partial query: resolution %d unknown",
                          a->min_res);
    int64_t w = storage_resolutions[a->min_res];
    if (a->from_s > a->until_s || a->from_s < -PLAN_MAX_ABS_S || a->until_s > PLAN_MAX_ABS_S ||
        a->from_s % w != 0 || a->until_s % w != 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT,
                          "partial query: range [%lld, %lld) is not on the %llds grid",
                          (long long)a->from_s, (long long)a->until_s, (long long)w);
    return 0;
}

/* The tree of the selected series: from their blocks, or, when the
 * selector names span or trace ids, from the span index (with its
 * timeline: timeline_run makes a block render's). */
/* A top share's forests summed per function (query_fns_of_tabs) with the
 * names of their symbols; a merge that makes no forests (a value below 0,
 * more nodes than the tree may hold) is left in out->tree as before. */
static int fns_of_series(storage_t *st, const char *tenant, const query_series_t *ser,
                         const query_plan_t *plan, const query_help_t *help, query_partial_t *out,
                         errmsg_t *em)
{
    storage_merged_tab_t *tabs;
    size_t ntabs;
    int rc = query_merge_series_forests(st, tenant, ser, plan,
                                        STORAGE_TABS_PARENTS | STORAGE_TABS_SYMNOS, NULL, 0,
                                        out->tree, &tabs, &ntabs, help, em);
    if (rc != 0 || ntabs == 0) {
        storage_merged_tabs_free(tabs, ntabs); /* an empty array may come */
        return rc;
    }
    rc = query_fns_of_tabs(tabs, ntabs, plan->charge, &out->fns, &out->nfns, &out->fns_total);
    storage_merged_tabs_free(tabs, ntabs);
    uint64_t *ids = rc == 0 ? malloc((out->nfns ? out->nfns : 1) * sizeof *ids) : NULL;
    if (rc == 0 && ids == NULL) rc = ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < out->nfns; i++)
        ids[i] = out->fns[i].sym;
    if (rc == 0 && out->nfns > 0) rc = storage_load_symbols(st, tenant, ids, out->nfns, out->syms);
    free(ids);
    if (rc == ERR_UNAVAILABLE)
        return errmsg_set(em, rc,
                          "server busy: summing the functions needs more working memory than "
                          "query-memory-bytes leaves now; retry later or narrow the query");
    return rc != 0 ? errmsg_set(em, rc, "summing the functions: %s", err_message(rc)) : 0;
}

static int render_tree(storage_t *st, const char *tenant, const query_partial_args_t *a,
                       const query_span_sel_t *sp, const query_series_t *ser,
                       const query_plan_t *plan, query_share_t *share, assist_t *assist,
                       query_partial_t *out, errmsg_t *em)
{
    query_help_t help = {share, out->syms, assist};
    if (sp->kind == 0 && a->fns && a->final_max_nodes == 0)
        return fns_of_series(st, tenant, ser, plan, &help, out, em);
    if (sp->kind == 0 && a->forests && a->final_max_nodes == 0) {
        /* with space, a union's forest even of one token, of its values
         * alone (the coordinator adds them by id and makes the forest), and
         * the structure of its ids the coordinator lacks */
        unsigned flags = (a->parents ? STORAGE_TABS_PARENTS : 0) |
                         (a->symnos ? STORAGE_TABS_SYMNOS : 0) |
                         (a->space ? STORAGE_TABS_SPACE | STORAGE_TABS_VALUES : 0);
        return query_merge_series_forests(st, tenant, ser, plan, flags, a->known_spaces,
                                          a->nknown_spaces, out->tree, &out->tabs, &out->ntabs,
                                          &help, em);
    }
    if (sp->kind == 0)
        return query_merge_series_kept(st, tenant, ser, plan, a->final_max_nodes, out->tree,
                                       a->kept ? &out->kept : NULL, &help, em);
    int res, rc = a->timeline ? query_timeline_init(plan, &out->tl, &res) : 0;
    if (rc == 0)
        rc = query_merge_spans(st, tenant, sp, ser, plan, out->tree, a->timeline ? &out->tl : NULL,
                               &out->partial_spans, em);
    return rc;
}

/* A render's timeline, made beside its tree (query_limits_t.assist): its
 * per-step totals and, for an averaged type, the profiles counted. The
 * part reads the store and its own memory only; what it counts while
 * counting is charged apart on the same budget (a charge is one thread's). */
typedef struct timeline_part {
    query_share_t *share; /* the series it helps read first */
    ends_t *tl_ends;      /* the timeline's items, shared with the render's thread (or NULL) */
    storage_t *st;
    const char *tenant;
    const query_series_t *ser, *cnt;
    /* with members: the member series whose profiles it counts are selected
     * here (into own, then cnt) from the render's selector */
    const query_selector_t *sel;
    const rangeset_t *rs;
    const query_limits_t *lim;
    int members;
    query_series_t own;
    query_plan_t plan;
    int average;
    query_timeline_t *tl;
    alloc_charge_t charge;
    int rc;
    errmsg_t em;
} timeline_part_t;

static void timeline_run(void *arg)
{
    timeline_part_t *p = arg;
    /* the blocks first: the tree waits for them; the timeline's items not
     * taken when the render's thread has its tree it takes itself */
    query_share_help(p->share);
    p->rc =
        query_timeline_build_from(p->st, p->tenant, p->ser, &p->plan, p->tl_ends, 1, p->tl, &p->em);
    int count = p->rc == 0 && p->average && p->tl->n > 0;
    if (count && (p->rc = query_timeline_average(p->tl)) == 0 && p->members) {
        p->rc = query_series_select_in(p->st, p->tenant, p->sel, p->rs, p->lim, &p->own, &p->em);
        p->cnt = &p->own;
    }
    if (count && p->rc == 0)
        p->rc = query_timeline_count(p->st, p->tenant, p->cnt, &p->plan, p->tl, &p->em);
    query_share_run_offered(p->share); /* what the render offered meanwhile */
}

/* The tree, and a block render's timeline beside it: on a helper when one
 * is idle (query_limits_t.assist), else on this thread after the tree. The
 * helper first reads series with this thread (query_share_t), and this
 * thread, once it has its tree, takes the timeline's items the helper has
 * not (ends_t). */
static int tree_and_timeline(storage_t *st, const char *tenant, const query_partial_args_t *a,
                             const query_limits_t *lim, const query_span_sel_t *sp,
                             const query_series_t *ser, const query_selector_t *members,
                             const rangeset_t *rs, const query_plan_t *plan, int average,
                             query_partial_t *out, errmsg_t *em)
{
    if (sp->kind != 0 || !a->timeline)
        return render_tree(st, tenant, a, sp, ser, plan, NULL, lim->assist, out, em);
    query_share_t share;
    timeline_part_t tp = {.share = &share,
                          .st = st,
                          .tenant = tenant,
                          .ser = ser,
                          .cnt = ser,
                          .sel = members,
                          .rs = rs,
                          .lim = lim,
                          .members = members != NULL,
                          .plan = *plan,
                          .average = average,
                          .tl = &out->tl};
    alloc_charge_init(&tp.charge, plan->charge != NULL ? plan->charge->b : NULL);
    tp.plan.charge = plan->charge != NULL ? &tp.charge : NULL;
    /* the helper reads series beside this thread, then makes the timeline,
     * whose items this thread takes too once it has its tree */
    query_share_init(&share, st, tenant, ser, plan, plan->charge != NULL ? plan->charge->b : NULL);
    ends_t tl_ends;
    tp.tl_ends = ends_init(&tl_ends, ser->n * query_timeline_pieces(plan)) ? &tl_ends : NULL;
    assist_task_t task;
    if (a->remote)
        assist_start_last(lim->assist, &task, timeline_run, &tp);
    else
        assist_start(lim->assist, &task, timeline_run, &tp);
    int rc = render_tree(st, tenant, a, sp, ser, plan, &share, lim->assist, out, em);
    query_share_end(&share);
    query_timeline_t mine = {0};
    if (rc == 0 && tp.tl_ends != NULL)
        rc = query_timeline_build_from(st, tenant, ser, plan, tp.tl_ends, 0, &mine, em);
    if (rc != 0 && tp.tl_ends != NULL) ends_close(tp.tl_ends); /* the helper stops too */
    assist_join(lim->assist, &task);
    alloc_charge_done(&tp.charge);
    query_series_free(&tp.own);
    if (rc == 0 && tp.rc != 0) rc = errmsg_set(em, tp.rc, "%s", tp.em.text);
    if (rc == 0) query_timeline_add(&out->tl, &mine);
    query_timeline_free(&mine);
    return rc;
}

/* The series a render reads into *ser (a whole service: its aggregates, a
 * few blocks instead of one per series; *aggregates 1 then). An averaged
 * type read through aggregates (which keep no profile counts) has its
 * timeline count the profiles of the member series, which the timeline's
 * part selects beside the read (tree_and_timeline). */
static int select_render_series(storage_t *st, const char *tenant, const query_selector_t *sel,
                                const rangeset_t *rs, const query_limits_t *lim,
                                const query_span_sel_t *sp, query_series_t *ser, int *aggregates,
                                errmsg_t *em)
{
    int rc = sp->kind == 0 ? query_aggregate_select(st, tenant, sel, rs, ser, em) : 0;
    *aggregates = rc == 1;
    if (rc == 0) return query_series_select_in(st, tenant, sel, rs, lim, ser, em);
    return rc == 1 ? 0 : rc;
}

static int render_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                          const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                          errmsg_t *em)
{
    if (a->selector == NULL || a->selector[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'query': required");
    query_selector_t *sel;
    int rc = query_selector_parse("query", a->selector, strlen(a->selector), &sel, em);
    if (rc != 0) return rc;
    query_plan_t plan;
    query_plan_range(a->from_s, a->until_s, a->min_res, STORAGE_RESOLUTION_COUNT - 1, &plan);
    plan.stop = a->stop;
    plan.charge = a->charge;
    query_span_sel_t sp;
    query_series_t ser;
    int average = 0, aggregates = 0;
    if (query_selector_type(sel) == NULL)
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'query': a profile type is required");
    else if ((rc = query_selector_take_spans("query", sel, &sp, em)) == 0) {
        average = sp.kind == 0 && query_type_average(query_selector_type(sel));
        rc = select_render_series(st, tenant, sel, rs, lim, &sp, &ser, &aggregates, em);
    }
    if (rc != 0) {
        query_selector_free(sel);
        return rc;
    }
    out->nseries = ser.n;
    out->spy_name = ser.spy_name;
    ser.spy_name = NULL;
    out->tree = calltree_new(lim->max_tree_nodes);
    out->syms = symtab_new();
    if (out->tree == NULL || out->syms == NULL) rc = ERR_NOMEM;
    /* an averaged type's functions are the average profile's: the tree */
    query_partial_args_t args = *a;
    args.fns = a->fns && !average;
    if (rc == 0)
        rc = tree_and_timeline(st, tenant, &args, lim, &sp, &ser,
                               average && aggregates ? sel : NULL, rs, &plan, average, out, em);
    query_selector_free(sel);
    if (rc == 0) rc = query_load_symbols(st, tenant, out->tree, out->syms);
    if (rc == 0 && out->kept != NULL)
        rc = query_load_symbols_kept(st, tenant, out->kept, out->syms);
    if (rc == 0 && out->tabs != NULL && a->names_later)
        out->names_later = 1; /* its gather loads the names it keeps */
    else if (rc == 0 && out->tabs != NULL)
        rc = query_load_symbols_tabs(st, tenant, out->tabs, out->ntabs, out->syms);
    query_series_free(&ser);
    return rc;
}

int query_partial_run(storage_t *st, const char *tenant, const query_partial_args_t *a,
                      const query_limits_t *lim, query_partial_t *out, errmsg_t *em)
{
    errmsg_t local = {{0}};
    if (em == NULL) em = &local;
    memset(out, 0, sizeof *out);
    out->kind = a->kind;
    em->text[0] = 0;
    int rc = check_plan_args(a, em);
    if (rc != 0) return rc;
    rangeset_t rs;
    if ((rc = query_rangeset_build(&rs, a->ranges, a->nranges)) != 0) return rc;
    if (a->kind == QUERY_KIND_RENDER)
        rc = render_partial(st, tenant, a, &rs, lim, out, em);
    else if (a->kind == QUERY_KIND_LABEL_NAMES || a->kind == QUERY_KIND_LABEL_VALUES)
        rc = query_labels_partial(st, tenant, a, &rs, lim, out, em);
    else if (a->kind == QUERY_KIND_LABEL_SHARES)
        rc = query_shares_partial(st, tenant, a, &rs, lim, out, em);
    else if (a->kind == QUERY_KIND_PROFILES)
        rc = query_profiles_partial(st, tenant, a, &rs, lim, out, em);
    else if (a->kind == QUERY_KIND_PROFILE)
        rc = query_profile_partial(st, tenant, a, &rs, lim, out, em);
    else
        rc = errmsg_set(em, ERR_INVALID_ARGUMENT, "partial query: unknown kind %d", (int)a->kind);
    query_rangeset_free(&rs);
    if (rc != 0 && em->text[0] == 0)
        errmsg_set(em, rc, "building the flame graph: %s", err_message(rc));
    if (rc != 0) query_partial_free(out);
    return rc;
}

int query_partial_merge_forests(query_partial_t *p, errmsg_t *em)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->ntabs; i++)
        rc = query_forest_merge(p->tree, &p->tabs[i]);
    storage_merged_tabs_free(p->tabs, p->ntabs);
    p->tabs = NULL;
    p->ntabs = 0;
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "merged call tree exceeds %zu nodes (query-max-tree-nodes); narrow "
                          "the selector or the time range",
                          calltree_node_count(p->tree));
    return rc != 0 ? errmsg_set(em, rc, "building the flame graph: %s", err_message(rc)) : 0;
}

int query_stop_check(const query_stop_t *st, errmsg_t *em)
{
    if (st == NULL) return 0;
    if (st->flag != NULL && atomic_load_explicit(st->flag, memory_order_relaxed))
        return errmsg_set(em, ERR_TIMEOUT, "the query was cancelled");
    clock_source_t real = clock_real();
    if (st->deadline_unix_ms > 0 && clock_wall_ms(&real) >= st->deadline_unix_ms)
        return errmsg_set(em, ERR_TIMEOUT, "the query's deadline passed while it ran");
    return 0;
}

void query_partial_free(query_partial_t *p)
{
    calltree_free(p->tree);
    storage_merged_tabs_free(p->tabs, p->ntabs);
    query_kept_free(p->kept);
    free(p->fns);
    symtab_free(p->syms);
    free(p->spy_name);
    query_timeline_free(&p->tl);
    for (size_t i = 0; i < p->nvalues; i++)
        free(p->values[i]);
    free(p->values);
    memset(p, 0, sizeof *p);
}
