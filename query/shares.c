/* shares.c — GET /api/label-shares: each value of one label with its total
 * over a selection (the tag explorer's data; docs/api.md).
 *
 * A node's share: the series the selector picks in its token ranges, each
 * one's total over the plan from the totals column family (one integer per
 * window, no tree is decoded), summed per value of the label, and its
 * timeline (query_timeline_build: the buckets of a render's timeline over the
 * same plan), summed per value too. Partials carry "TOTAL S1,...,Sn VALUE"
 * strings (n: the plan's bucket count, at most ~1500, so an entry stays far
 * below the wire's string limit); the gather sums them per value, so every
 * series is counted by the one node that answers for its range.
 *
 * An averaged type (query_type_average) also counts each value's profiles
 * (query_timeline_count over each series) when the coordinator reads counts
 * (query_partial_args_t.counts, QueryRequest.share_counts): its entries are
 * then "TOTAL/COUNT S1/C1,...,Sn/Cn VALUE", exact sums and counts that the
 * gather adds before it divides, never averages. Without it (an older
 * coordinator) they are the summed "TOTAL S1,...,Sn VALUE" that one reads.
 * A push split into pieces (several series of one type) counts once per
 * value: a coordinator that unites them (query_partial_args_t.pushes,
 * QueryRequest.share_pushes) gets "+TOTAL/COUNT S1/C1,... PUSHES VALUE"
 * entries listing them by id, others the counts with each counted once
 * among the series this node answers for.
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
    size_t nb;    /* timeline buckets per value */
    int64_t *tls; /* value i's buckets at tls[i * nb] */
    size_t tls_cap;
    int average;  /* an averaged type: the counts below are kept */
    int64_t *cnt; /* value i's profiles (indexed like totals) */
    size_t cnt_cap;
    int64_t *tlc; /* value i's profiles per bucket at tlc[i * nb] */
    size_t tlc_cap;
    /* an averaged type's pushes split into pieces: one id list whose
     * bucket is value * nb + bucket, so a push counts once per value
     * however many of its series hold it (group_unite adds them to cnt
     * and tlc) */
    query_timeline_t ptl;
    int pushes;             /* the entries carry them (query_partial_args_t.pushes) */
    size_t pnext;           /* entry_of's place in ptl (sorted) */
    alloc_charge_t *charge; /* the share's working memory is charged here; NULL: not charged */
    size_t charged;
} group_t;

/* What one more value costs here besides its name: its total, its timeline
 * and its place in the map. */
#define GROUP_VALUE_BYTES(nb) ((nb) * sizeof(int64_t) + sizeof(int64_t) + 32)
/* An averaged type's value also holds its counts. */
#define GROUP_COUNT_BYTES(nb) (((nb) + 1) * sizeof(int64_t))

/* Charges n more bytes of the share's working memory (values x buckets can
 * reach query-max-series x ~1,500: far more than the partial a render
 * holds); ERR_UNAVAILABLE when it does not fit. */
static int group_charge(group_t *g, size_t n)
{
    if (g->charge == NULL || n == 0) return 0;
    int rc = alloc_charge_add(g->charge, n);
    if (rc == 0) g->charged += n;
    return rc == ERR_TOO_LARGE ? ERR_UNAVAILABLE : rc;
}

/* Frees g and gives back what it charged (the entries it answered are
 * charged again by the caller, as the partial's result). */
static void group_free(group_t *g)
{
    for (size_t i = 0; i < g->names.n; i++)
        free((char *)g->names.strs[i]);
    strmap_free(&g->names);
    free(g->totals);
    free(g->tls);
    free(g->cnt);
    free(g->tlc);
    free(g->ptl.pushes);
    if (g->charge != NULL) alloc_charge_sub(g->charge, g->charged);
    g->charged = 0;
}

/* Gives a new value idx its zeroed counts (an averaged type). */
static int group_counts_slot(group_t *g, uint32_t idx)
{
    int rc = GROW(g->cnt, g->cnt_cap, g->names.n, GROW_UNLIMITED);
    if (rc == 0) g->cnt[idx] = 0;
    if (rc == 0 && g->nb > 0) rc = GROW(g->tlc, g->tlc_cap, g->names.n * g->nb, GROW_UNLIMITED);
    if (rc == 0 && g->nb > 0) memset(g->tlc + (size_t)idx * g->nb, 0, g->nb * sizeof *g->tlc);
    return rc;
}

/* Adds one series' total and timeline (tl: its samples, and its counts for
 * an averaged type) under value. */
static int group_add(group_t *g, const char *value, size_t len, int64_t total,
                     const query_timeline_t *tl)
{
    const int64_t *samples = tl->samples;
    uint32_t known;
    if (!strmap_find(&g->names, value, len, &known)) {
        size_t more = GROUP_VALUE_BYTES(g->nb) + (g->average ? GROUP_COUNT_BYTES(g->nb) : 0);
        int rc = group_charge(g, more + len + 1);
        if (rc != 0) return rc;
    }
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
        if (rc == 0 && g->nb > 0) rc = GROW(g->tls, g->tls_cap, g->names.n * g->nb, GROW_UNLIMITED);
        if (rc == 0 && g->nb > 0) memset(g->tls + (size_t)idx * g->nb, 0, g->nb * sizeof *g->tls);
        if (rc == 0 && g->average) rc = group_counts_slot(g, idx);
    }
    if (rc == 0) g->totals[idx] += total;
    for (size_t k = 0; rc == 0 && k < g->nb; k++)
        g->tls[(size_t)idx * g->nb + k] += samples[k];
    if (rc != 0 || !g->average || tl->counts == NULL) return rc;
    g->cnt[idx] += tl->profiles;
    for (size_t k = 0; k < g->nb; k++)
        g->tlc[(size_t)idx * g->nb + k] += tl->counts[k];
    /* pieces of split pushes: once per value, however many series hold them */
    for (size_t k = 0; rc == 0 && k < tl->npushes; k++) {
        uint8_t id[STORAGE_WPROF_ID_LEN];
        for (size_t b = 0; b < STORAGE_WPROF_ID_LEN; b++)
            id[b] = (uint8_t)(tl->pushes[k].id >> (8 * (STORAGE_WPROF_ID_LEN - 1 - b)));
        size_t before = g->ptl.pushes_cap;
        rc = query_timeline_add_push(&g->ptl, (size_t)idx * g->nb + tl->pushes[k].bucket, id);
        if (rc == 0) rc = group_charge(g, (g->ptl.pushes_cap - before) * sizeof *g->ptl.pushes);
    }
    return rc;
}

/* Counts each value's pushes split into pieces once (g->ptl) in its
 * profiles and buckets. */
static void group_unite(group_t *g)
{
    query_timeline_sort_pushes(&g->ptl);
    for (size_t k = 0; g->nb > 0 && k < g->ptl.npushes; k++) {
        size_t at = g->ptl.pushes[k].bucket;
        g->cnt[at / g->nb]++;
        g->tlc[at]++;
    }
    g->ptl.npushes = 0;
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

/* Sums each selected series' total and timeline under its value of the
 * label. The timeline is the render's (query_timeline_build) over a view of
 * that one series. */
static int collect(storage_t *st, const char *tenant, const query_partial_args_t *a,
                   const query_series_t *ser, const query_plan_t *plan, group_t *g, errmsg_t *em)
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
        query_series_t one = {1, &ser->token[i], &ser->series_id[i], NULL};
        query_timeline_t tl = {0};
        if (rc == 0) rc = query_timeline_build(st, tenant, &one, plan, &tl, em);
        if (rc == 0 && tl.n != g->nb) rc = ERR_INTERNAL;
        if (rc == 0 && g->average && (rc = query_timeline_average(&tl)) == 0)
            rc = query_timeline_count(st, tenant, &one, plan, &tl, em);
        const char *v = rc == 0 ? value_of(lb, a->label) : NULL;
        if (rc == 0) rc = group_add(g, v, strlen(v), total, &tl);
        query_timeline_free(&tl);
        labels_free(lb);
    }
    return rc;
}

/* Value i's split pushes (ptl sorted, from g->pnext on) as " -" or
 * " B:ID,..." (bucket index, 16 hex digits) into b. */
static int pushes_of(group_t *g, size_t i, buf_t *b)
{
    int rc = buf_append_byte(b, ' '), any = 0;
    const query_timeline_t *t = &g->ptl;
    for (; rc == 0 && g->pnext < t->npushes && t->pushes[g->pnext].bucket / g->nb == i; g->pnext++)
        rc = buf_printf(b, "%s%zu:%016" PRIx64, any++ ? "," : "",
                        (size_t)(t->pushes[g->pnext].bucket % g->nb), t->pushes[g->pnext].id);
    return rc == 0 && !any ? buf_append_byte(b, '-') : rc;
}

/* "TOTAL S1,...,Sn VALUE" (n == 0: "TOTAL  VALUE"); an averaged type's
 * "TOTAL/COUNT S1/C1,...,Sn/Cn VALUE", or with its split pushes by id
 * "+TOTAL/COUNT S1/C1,...,Sn/Cn PUSHES VALUE" (pushes_of). */
static int entry_of(group_t *g, size_t i, char **out)
{
    buf_t b;
    buf_init(&b, BUF_UNLIMITED);
    int with = g->average && g->pushes && g->nb > 0;
    int rc = with ? buf_append_byte(&b, '+') : 0;
    if (rc == 0) rc = buf_printf(&b, "%" PRId64, g->totals[i]);
    if (rc == 0 && g->average) rc = buf_printf(&b, "/%" PRId64, g->cnt[i]);
    if (rc == 0) rc = buf_append_byte(&b, ' ');
    for (size_t k = 0; rc == 0 && k < g->nb; k++) {
        rc = buf_printf(&b, k ? ",%" PRId64 : "%" PRId64, g->tls[i * g->nb + k]);
        if (rc == 0 && g->average) rc = buf_printf(&b, "/%" PRId64, g->tlc[i * g->nb + k]);
    }
    if (rc == 0 && with) rc = pushes_of(g, i, &b);
    if (rc == 0) rc = buf_append_byte(&b, ' ');
    if (rc == 0) rc = buf_append(&b, g->names.strs[i], g->names.lens[i]);
    size_t len;
    if (rc == 0) *out = (char *)buf_steal(&b, &len); /* NUL-terminated */
    buf_free(&b);
    return rc;
}

static int to_entries(group_t *g, query_partial_t *out)
{
    int rc = group_charge(g, (g->names.n ? g->names.n : 1) * sizeof *out->values);
    if (rc != 0) return rc;
    out->values = calloc(g->names.n ? g->names.n : 1, sizeof *out->values);
    if (out->values == NULL) return ERR_NOMEM;
    for (size_t i = 0; i < g->names.n; i++) {
        rc = entry_of(g, i, &out->values[i]);
        if (rc == 0) rc = group_charge(g, strlen(out->values[i]) + 1);
        if (rc != 0) return rc;
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
    /* a coordinator that reads no counts gets the summed entries it reads */
    int average = a->counts && query_type_average(query_selector_type(sel));
    query_selector_free(sel);
    query_series_t ser;
    rc = query_series_select_text(st, tenant, "query", a->selector, rs, lim, &ser, em);
    if (rc != 0) return rc;
    query_plan_t plan;
    query_plan_range(a->from_s, a->until_s, a->min_res, STORAGE_RESOLUTION_COUNT - 1, &plan);
    group_t g;
    memset(&g, 0, sizeof g);
    strmap_init(&g.names);
    g.charge = a->charge;
    g.average = average;
    query_timeline_t shape;
    int res;
    rc = query_timeline_init(&plan, &shape, &res);
    g.nb = shape.n;
    query_timeline_free(&shape);
    if (rc == 0) rc = collect(st, tenant, a, &ser, &plan, &g, em);
    g.pushes = a->pushes;
    if (rc == 0 && g.pushes && g.nb > 0)
        query_timeline_sort_pushes(&g.ptl); /* sent by id (to_entries) */
    else if (rc == 0)
        group_unite(&g);
    if (rc == 0) rc = to_entries(&g, out);
    if (rc == ERR_UNAVAILABLE) /* the working memory passed its budget */
        errmsg_set(em, rc,
                   "server busy: label shares of %zu values over %zu buckets need more working "
                   "memory than query-memory-bytes leaves now; retry later or narrow the query",
                   g.names.n, g.nb);
    if (rc != 0 && em->text[0] == 0) errmsg_set(em, rc, "label shares: %s", err_message(rc));
    group_free(&g);
    query_series_free(&ser);
    return rc;
}

/* ---- the answer ---- */

typedef struct row {
    const char *value;
    int64_t total;
    const int64_t *samples; /* the value's timeline buckets */
} row_t;

static int row_cmp(const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    if (x->total != y->total) return x->total > y->total ? -1 : 1;
    return strcmp(x->value, y->value);
}

static int row_value_cmp(const void *a, const void *b)
{
    return strcmp(((const row_t *)a)->value, ((const row_t *)b)->value);
}

/* The rows of the gathered values, sorted by cmp; caller frees. */
static row_t *rows_of(const strmap_t *values, const int64_t *totals, const query_timeline_t *shape,
                      const int64_t *tls, int (*cmp)(const void *, const void *))
{
    size_t n = values->n;
    row_t *rows = malloc((n ? n : 1) * sizeof *rows);
    if (rows == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
        rows[i] = (row_t){values->strs[i], totals ? totals[i] : 0,
                          shape->n > 0 ? tls + i * shape->n : NULL};
    qsort(rows, n, sizeof *rows, cmp); /* the same bytes from any node */
    return rows;
}

/* An averaged type's values as the render's timeline shows them: each
 * value's total its profiles' sum / their number, each bucket its sum / its
 * profiles (0 without any), rounded down; a value with no profile counted
 * (past profile-retention) keeps its sums. *whole: the selection's sum / all
 * its profiles (the render's numTicks). Caller frees *tot and *avg. */
static int average_of(size_t n, const query_timeline_t *shape, const query_shares_t *sh,
                      int64_t **tot, int64_t **avg, int64_t *whole)
{
    size_t nb = shape->n;
    *tot = malloc((n ? n : 1) * sizeof **tot);
    *avg = malloc((n * nb > 0 ? n * nb : 1) * sizeof **avg);
    if (*tot == NULL || *avg == NULL) return ERR_NOMEM;
    int64_t sum = 0, count = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t c = sh->counts[i];
        sum += sh->totals[i];
        count += c;
        (*tot)[i] = c > 0 ? sh->totals[i] / c : sh->totals[i];
        for (size_t k = 0; k < nb; k++) {
            int64_t bc = sh->tl_counts[i * nb + k], v = sh->tls[i * nb + k];
            (*avg)[i * nb + k] = c == 0 ? v : bc > 0 ? v / bc : 0;
        }
    }
    *whole = count > 0 ? sum / count : sum;
    return 0;
}

/* What the writers hold beside the answer while they write it (taken
 * before it is made, buf_beside_take): the sorted rows and, for an
 * averaged type, each value's averaged total and timeline. */
static size_t write_work(size_t n, const query_timeline_t *shape, int average)
{
    size_t work = (n ? n : 1) * sizeof(row_t);
    if (average) work += ((n ? n : 1) + (n * shape->n > 0 ? n * shape->n : 1)) * sizeof(int64_t);
    return work;
}

int query_shares_write(const char *label, const strmap_t *values, const query_timeline_t *shape,
                       const query_shares_t *sh, buf_t *out)
{
    size_t n = values->n, work = write_work(n, shape, sh->average);
    int64_t *tot = NULL, *avg = NULL, whole = 0;
    int avg_type = sh->average;
    int rc = buf_beside_take(out, work);
    if (rc != 0) return rc;
    if (avg_type && average_of(n, shape, sh, &tot, &avg, &whole) != 0) {
        free(tot);
        free(avg);
        buf_beside_give(out, work);
        return ERR_NOMEM;
    }
    row_t *rows = rows_of(values, avg_type ? tot : sh->totals, shape, avg_type ? avg : sh->tls,
                          row_cmp); /* by total, then value */
    int64_t sum = 0;
    for (size_t i = 0; rows != NULL && i < n; i++)
        sum += rows[i].total;
    rc = rows == NULL ? ERR_NOMEM : buf_append_str(out, "{\"label\":");
    if (rc == 0) rc = buf_append_json_string(out, label, strlen(label));
    if (rc == 0)
        rc = buf_printf(out, ",\"aggregationType\":\"%s\",\"total\":%" PRId64 ",\"values\":[",
                        avg_type ? "average" : "sum", avg_type ? whole : sum);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = buf_append_str(out, i ? ",{\"value\":" : "{\"value\":");
        if (rc == 0) rc = buf_append_json_string(out, rows[i].value, strlen(rows[i].value));
        if (rc == 0)
            rc = buf_printf(out,
                            ",\"total\":%" PRId64 ",\"share\":%.6f,\"timeline\":", rows[i].total,
                            sum != 0 ? (double)rows[i].total / (double)sum : 0.0);
        if (rc == 0) rc = query_write_timeline(out, shape, rows[i].samples);
        if (rc == 0) rc = buf_append_byte(out, '}');
    }
    if (rc == 0) rc = buf_append_str(out, "]}");
    free(rows);
    free(tot);
    free(avg);
    buf_beside_give(out, work);
    return rc;
}

int query_shares_write_groups(const strmap_t *values, const query_timeline_t *shape,
                              const query_shares_t *sh, buf_t *out)
{
    int64_t *tot = NULL, *avg = NULL, whole;
    size_t work = write_work(values->n, shape, sh->average);
    int rc = buf_beside_take(out, work);
    if (rc != 0) return rc;
    if (sh->average && average_of(values->n, shape, sh, &tot, &avg, &whole) != 0) {
        free(tot);
        free(avg);
        buf_beside_give(out, work);
        return ERR_NOMEM;
    }
    row_t *rows = rows_of(values, NULL, shape, avg != NULL ? avg : sh->tls, row_value_cmp);
    free(tot);
    rc = rows == NULL ? ERR_NOMEM : buf_append_str(out, "\"groups\":{");
    for (size_t i = 0; rc == 0 && i < values->n; i++) {
        if (i) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_json_string(out, rows[i].value, strlen(rows[i].value));
        if (rc == 0) rc = buf_append_byte(out, ':');
        if (rc == 0) rc = query_write_timeline(out, shape, rows[i].samples);
    }
    if (rc == 0) rc = buf_append_byte(out, '}');
    free(rows);
    free(avg);
    buf_beside_give(out, work);
    return rc;
}
