/* spans.c — span selection: the span trees of the selected ids, summed over
 * the selected series and the query's windows.
 *
 * The span index is keyed by id first (storage: tenant|kind|id|token|
 * series_id|window), so each id is one range scan that yields every series
 * and window that sampled it. An entry counts when its series is one the
 * selector's other matchers picked (query_series_select_in, which already
 * kept only the partial's token ranges) and its window lies in the range:
 * each series lives in one token range, so every entry is counted by exactly
 * one partial of a scatter-gather.
 */
#include <stdlib.h>

#include "query/query_int.h"

typedef struct pair {
    uint64_t token, sid;
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    return x->sid < y->sid ? -1 : x->sid > y->sid;
}

typedef struct span_ctx {
    pair_t *series; /* sorted */
    size_t n;
    calltree_t *dst;
    query_timeline_t *tl;
    uint64_t partial; /* trees summed that may leave profiles out */
    const query_stop_t *stop;
    alloc_charge_t *charge; /* or NULL */
    size_t charged;         /* dst's bytes on charge */
    errmsg_t *em;
} span_ctx_t;

/* dst's growth onto the charge (after each tree: one tree's growth at most
 * is not counted yet). */
static int span_charge(span_ctx_t *c)
{
    if (c->charge == NULL) return 0;
    size_t now = calltree_mem_bytes_read(c->dst);
    if (now <= c->charged) return 0;
    if (alloc_charge_add(c->charge, now - c->charged) != 0)
        return errmsg_set(c->em, ERR_UNAVAILABLE,
                          "server busy: summing the selected span trees needs more memory than "
                          "query-memory-bytes leaves now; retry later or narrow the query");
    c->charged = now;
    return 0;
}

static int span_fn(void *ctx, uint64_t token, uint64_t series_id, int64_t window, unsigned flags,
                   const uint8_t *v, size_t n)
{
    span_ctx_t *c = ctx;
    pair_t key = {token, series_id};
    if (bsearch(&key, c->series, c->n, sizeof key, pair_cmp) == NULL) return 0;
    int src = query_stop_check(c->stop, c->em); /* cancelled or past its deadline */
    if (src != 0) return src;
    if (flags & STORAGE_SPAN_PARTIAL) c->partial++;
    int64_t before = calltree_root_total(c->dst);
    int rc = calltree_decode_merge(c->dst, v, n);
    query_timeline_t *tl = c->tl;
    if (rc == 0 && tl != NULL && tl->n > 0 && window >= tl->start_s) {
        int64_t i = (window - tl->start_s) / tl->step_s;
        if (i < (int64_t)tl->n) tl->samples[i] += calltree_root_total(c->dst) - before;
    }
    return rc != 0 ? rc : span_charge(c);
}

int query_merge_spans(storage_t *st, const char *tenant, const query_span_sel_t *sp,
                      const query_series_t *ser, const query_plan_t *plan, calltree_t *dst,
                      query_timeline_t *tl, uint64_t *partial_trees, errmsg_t *em)
{
    if (ser->n == 0 || sp->n == 0) return 0;
    span_ctx_t c = {.n = ser->n, .dst = dst, .tl = tl, .stop = plan->stop, .em = em};
    c.charge = plan->charge;
    size_t base = calltree_mem_bytes_read(dst); /* what it held: its owner's */
    c.charged = base;
    c.series = malloc(ser->n * sizeof *c.series);
    if (c.series == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < ser->n; i++)
        c.series[i] = (pair_t){ser->token[i], ser->series_id[i]};
    qsort(c.series, c.n, sizeof *c.series, pair_cmp);
    int rc = 0;
    for (size_t i = 0; i < sp->n && rc == 0; i++)
        rc = storage_scan_spans(st, tenant, sp->kind, sp->id[i], plan->from_s, plan->until_s,
                                span_fn, &c);
    free(c.series);
    if (c.charge != NULL) alloc_charge_sub(c.charge, c.charged - base); /* given back */
    if (partial_trees != NULL) *partial_trees += c.partial;
    if (rc == ERR_TIMEOUT || rc == ERR_UNAVAILABLE) return rc; /* em says why */
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "merged call tree exceeds %zu nodes (query-max-tree-nodes); select fewer "
                          "spans or narrow the selector",
                          calltree_node_count(dst));
    if (rc != 0) return errmsg_set(em, rc, "reading span trees: %s", err_message(rc));
    return 0;
}
