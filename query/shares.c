/* shares.c — GET /api/label-shares: each value of one label with its total
 * over a selection (the tag explorer's data; docs/api.md).
 *
 * A node's share: the series the selector picks in its token ranges, each
 * one's total over the plan from the totals column family (one integer per
 * window, no tree is decoded), summed per value of the label. Partials carry
 * "TOTAL VALUE" strings; the gather sums them per value, so every series is
 * counted by the one node that answers for its range.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "query/query_int.h"

typedef struct group {
    strmap_t names; /* values; strings owned here */
    int64_t *totals;
    size_t cap;
} group_t;

static void group_free(group_t *g)
{
    for (size_t i = 0; i < g->names.n; i++)
        free((char *)g->names.strs[i]);
    strmap_free(&g->names);
    free(g->totals);
}

static int group_add(group_t *g, const char *value, size_t len, int64_t total)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) return ERR_NOMEM;
    memcpy(copy, value, len);
    copy[len] = 0;
    size_t before = g->names.n;
    uint32_t idx;
    int rc = strmap_intern(&g->names, copy, len, &idx);
    if (rc != 0 || g->names.n == before) free(copy); /* known (or failed): the map has its own */
    if (rc == 0 && g->names.n > before) {
        size_t cap = g->cap;
        rc = GROW(g->totals, cap, g->names.n, GROW_UNLIMITED);
        if (rc == 0) g->totals[idx] = 0;
        g->cap = cap;
    }
    if (rc == 0) g->totals[idx] += total;
    return rc;
}

static int sum_fn(void *ctx, int64_t window_start, int64_t total)
{
    *(int64_t *)ctx += total;
    return 0;
}

static int series_total(storage_t *st, const char *tenant, uint64_t token, uint64_t sid,
                        const query_plan_t *plan, int64_t *out)
{
    *out = 0;
    for (size_t k = 0; k < plan->n; k++) {
        int rc = storage_scan_totals(st, tenant, token, sid, plan->piece[k].res,
                                     plan->piece[k].from_s, plan->piece[k].until_s, sum_fn, out);
        if (rc != 0) return rc;
    }
    return 0;
}

static const char *value_of(const labels_t *lb, const char *label)
{
    for (size_t k = 0; k < labels_count(lb); k++)
        if (strcmp(labels_name(lb, k), label) == 0) return labels_value(lb, k);
    return "";
}

/* Sums each selected series' total under its value of the label. */
static int collect(storage_t *st, const char *tenant, const query_partial_args_t *a,
                   const query_series_t *ser, const query_plan_t *plan, group_t *g)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ser->n; i++) {
        int64_t total;
        rc = series_total(st, tenant, ser->token[i], ser->series_id[i], plan, &total);
        if (rc != 0 || total == 0) continue;
        labels_t *lb = NULL;
        rc = storage_series_labels(st, tenant, ser->token[i], ser->series_id[i], &lb);
        if (rc == ERR_NOT_FOUND) {
            rc = 0;
            continue;
        }
        const char *v = rc == 0 ? value_of(lb, a->label) : NULL;
        if (rc == 0) rc = group_add(g, v, strlen(v), total);
        labels_free(lb);
    }
    return rc;
}

static int to_entries(const group_t *g, query_partial_t *out)
{
    out->values = calloc(g->names.n ? g->names.n : 1, sizeof *out->values);
    if (out->values == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < g->names.n; i++) {
        size_t n = g->names.lens[i] + 24;
        if ((out->values[i] = malloc(n)) == NULL) return ERR_NOMEM;
        snprintf(out->values[i], n, "%" PRId64 " %s", g->totals[i], g->names.strs[i]);
        out->nvalues = i + 1;
    }
    return 0;
}

int query_shares_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                         const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                         errmsg_t *em)
{
    if (a->label == NULL || a->label[0] == 0 || a->selector == NULL)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "label shares: label and query required");
    query_selector_t *sel;
    int rc = query_selector_parse("query", a->selector, strlen(a->selector), &sel, em);
    if (rc != 0) return rc;
    query_series_t ser;
    rc = query_series_select_in(st, tenant, sel, rs, lim, &ser, em);
    query_selector_free(sel);
    if (rc != 0) return rc;
    query_plan_t plan;
    query_plan_range(a->from_s, a->until_s, a->min_res, STORAGE_RESOLUTION_COUNT - 1, &plan);
    group_t g;
    memset(&g, 0, sizeof g);
    strmap_init(&g.names);
    rc = collect(st, tenant, a, &ser, &plan, &g);
    if (rc == 0) rc = to_entries(&g, out);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "label shares: %s", err_message(rc));
    group_free(&g);
    query_series_free(&ser);
    return rc;
}

/* ---- the answer ---- */

typedef struct row {
    const char *value;
    int64_t total;
} row_t;

static int row_cmp(const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    if (x->total != y->total) return x->total > y->total ? -1 : 1;
    return strcmp(x->value, y->value);
}

int query_shares_write(const char *label, const strmap_t *values, const int64_t *totals, buf_t *out)
{
    size_t n = values->n;
    row_t *rows = malloc((n ? n : 1) * sizeof *rows);
    if (rows == NULL) return ERR_NOMEM;
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        rows[i] = (row_t){values->strs[i], totals[i]};
        sum += totals[i];
    }
    qsort(rows, n, sizeof *rows, row_cmp); /* by total, then value: the same bytes from any node */
    int rc = buf_append_str(out, "{\"label\":");
    if (rc == 0) rc = buf_append_json_string(out, label, strlen(label));
    if (rc == 0) rc = buf_printf(out, ",\"total\":%" PRId64 ",\"values\":[", sum);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = buf_append_str(out, i ? ",{\"value\":" : "{\"value\":");
        if (rc == 0) rc = buf_append_json_string(out, rows[i].value, strlen(rows[i].value));
        if (rc == 0)
            rc = buf_printf(out, ",\"total\":%" PRId64 ",\"share\":%.6f}", rows[i].total,
                            sum != 0 ? (double)rows[i].total / (double)sum : 0.0);
    }
    if (rc == 0) rc = buf_append_str(out, "]}");
    free(rows);
    return rc;
}
