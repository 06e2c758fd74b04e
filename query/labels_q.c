/* labels_q.c — the label-names / label-values partial of one node.
 *
 * Without `match`, answers come from the label index (every series still
 * retained; from/until are validated but do not filter, because the index is
 * not bucketed by time). A node asked for only some token ranges keeps a name
 * or value only when one of its postings has a token in them. With
 * match={selector}, only series that match it, lie in the ranges AND have at
 * least one window in [from, until) count, so the answer follows the time
 * range the way a flame graph does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "query/query_int.h"

/* A growing list of owned strings, bounded in total bytes. */
typedef struct strlist {
    char **v;
    size_t n, cap;
    size_t bytes, max_bytes;
} strlist_t;

static int list_push(strlist_t *l, const char *s)
{
    size_t len = strlen(s);
    if (l->bytes + len + 3 > l->max_bytes) return ERR_TOO_LARGE;
    if (GROW_FROM(l->v, l->cap, l->n + 1, GROW_UNLIMITED, 64) != 0) return ERR_NOMEM;
    if ((l->v[l->n] = strdup(s)) == NULL) return ERR_NOMEM;
    l->n++;
    l->bytes += len + 3; /* quotes and comma of the JSON answer */
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts and drops duplicates. */
static void list_sort_unique(strlist_t *l)
{
    if (l->n < 2) return;
    qsort(l->v, l->n, sizeof *l->v, str_cmp);
    size_t k = 1;
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->v[i], l->v[k - 1]) == 0)
            free(l->v[i]);
        else
            l->v[k++] = l->v[i];
    }
    l->n = k;
}

int query_labels_write_array(char *const *v, size_t n, buf_t *out)
{
    int rc = buf_append_byte(out, '[');
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_json_string(out, v[i], strlen(v[i]));
    }
    return rc != 0 ? rc : buf_append_byte(out, ']');
}

/* ---- the answer as a stream ---- */

typedef struct labels_stream {
    strmap_t values; /* its strings owned here */
    size_t next;     /* the value written next; n + 1 once the ']' is */
} labels_stream_t;

static int values_next(void *impl, buf_t *out, size_t want, int *done)
{
    labels_stream_t *l = impl;
    size_t start = out->len, n = l->values.n;
    int rc = l->next == 0 ? buf_append_byte(out, '[') : 0;
    for (; rc == 0 && l->next < n && out->len - start < want; l->next++) {
        const char *v = l->values.strs[l->next];
        if (l->next > 0) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_json_string(out, v, l->values.lens[l->next]);
    }
    if (rc == 0 && l->next == n) {
        rc = buf_append_byte(out, ']');
        l->next++;
    }
    *done = rc == 0 && l->next > n;
    return rc;
}

static void values_free(void *impl)
{
    labels_stream_t *l = impl;
    for (size_t i = 0; i < l->values.n; i++)
        free((char *)l->values.strs[i]);
    strmap_free(&l->values);
    free(l);
}

static const query_stream_ops_t values_ops = {values_next, values_free};

int query_labels_open(strmap_t *values, size_t bytes, query_stream_t **out)
{
    labels_stream_t *l = malloc(sizeof *l);
    if (l == NULL) {
        for (size_t i = 0; i < values->n; i++)
            free((char *)values->strs[i]);
        strmap_free(values);
        strmap_init(values);
        return ERR_NOMEM;
    }
    l->values = *values;
    l->next = 0;
    strmap_init(values);
    return query_stream_new(&values_ops, l, QUERY_STREAM_LENGTH_UNKNOWN, bytes + sizeof *l, out);
}

/* ---- with a match selector ---- */

static int stop_fn(void *ctx, int64_t w, int64_t total)
{
    return 1;
}

static int has_data(storage_t *st, const char *tenant, uint64_t token, uint64_t sid,
                    const query_plan_t *plan, int *yes)
{
    *yes = 0;
    for (size_t k = 0; k < plan->n; k++) {
        int rc = storage_scan_totals(st, tenant, token, sid, plan->piece[k].res,
                                     plan->piece[k].from_s, plan->piece[k].until_s, stop_fn, NULL);
        if (rc == 1) {
            *yes = 1;
            return 0;
        }
        if (rc != 0) return rc;
    }
    return 0;
}

/* Adds the names (label == NULL) or values of label of one series. */
static int add_series_labels(storage_t *st, const char *tenant, uint64_t token, uint64_t sid,
                             const char *label, strlist_t *l)
{
    labels_t *lb = NULL;
    int rc = storage_series_labels(st, tenant, token, sid, &lb);
    if (rc == ERR_NOT_FOUND) return 0;
    for (size_t k = 0; rc == 0 && k < labels_count(lb); k++) {
        if (label == NULL)
            rc = list_push(l, labels_name(lb, k));
        else if (strcmp(labels_name(lb, k), label) == 0)
            rc = list_push(l, labels_value(lb, k));
    }
    labels_free(lb);
    return rc;
}

/* ---- span_id / trace_id values: from the span index ---- */

typedef struct span_ids_ctx {
    const uint64_t *sids; /* the selected series of one token, sorted */
    size_t n;
    uint64_t last; /* the id pushed last (ids come in order within a token) */
    int any;
    size_t max_ids;
    strlist_t *l;
} span_ids_ctx_t;

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int span_id_fn(void *ctx, uint64_t id, uint64_t series_id, int64_t window)
{
    span_ids_ctx_t *x = ctx;
    (void)window; /* storage_span_ids kept the range's windows */
    if ((x->any && id == x->last) || !bsearch(&series_id, x->sids, x->n, sizeof *x->sids, u64_cmp))
        return 0;
    if (x->l->n >= x->max_ids) list_sort_unique(x->l); /* ids of other tokens may repeat */
    if (x->l->n >= x->max_ids) return ERR_LIMIT;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)id);
    x->last = id;
    x->any = 1;
    return list_push(x->l, hex);
}

/* The ids of kind recorded for the selected series (ser is sorted by token:
 * one scan of the span index per token) in the plan's range, as the 16 hex
 * digits a span_id selector takes (an id that was not 16 hex digits is
 * stored, and listed, as its hash: the listed form selects the same tree). */
static int collect_span_ids(storage_t *st, const char *tenant, const query_series_t *ser,
                            uint8_t kind, const query_plan_t *plan, const query_limits_t *lim,
                            strlist_t *l, errmsg_t *em)
{
    int64_t from = INT64_MAX, until = INT64_MIN;
    for (size_t k = 0; k < plan->n; k++) {
        if (plan->piece[k].from_s < from) from = plan->piece[k].from_s;
        if (plan->piece[k].until_s > until) until = plan->piece[k].until_s;
    }
    uint64_t *sids = malloc((ser->n ? ser->n : 1) * sizeof *sids);
    if (sids == NULL) return ERR_NOMEM;
    int rc = 0;
    for (size_t i = 0, j; rc == 0 && i < ser->n; i = j) {
        for (j = i; j < ser->n && ser->token[j] == ser->token[i]; j++)
            sids[j - i] = ser->series_id[j];
        qsort(sids, j - i, sizeof *sids, u64_cmp);
        span_ids_ctx_t x = {.sids = sids, .n = j - i, .max_ids = lim->max_span_ids, .l = l};
        rc = storage_span_ids(st, tenant, ser->token[i], kind, from, until, span_id_fn, &x);
    }
    free(sids);
    if (rc == ERR_LIMIT)
        errmsg_set(em, ERR_LIMIT,
                   "more than %zu span or trace ids match (query-max-span-ids): narrow the "
                   "match selector or the time range",
                   lim->max_span_ids);
    return rc;
}

static int collect_matching(storage_t *st, const char *tenant, const query_partial_args_t *a,
                            const rangeset_t *rs, const query_plan_t *plan,
                            const query_limits_t *lim, strlist_t *l, errmsg_t *em)
{
    query_series_t ser;
    int rc = query_series_select_text(st, tenant, "match", a->selector, rs, lim, &ser, em);
    if (rc != 0) return rc;
    const char *label = a->kind == QUERY_KIND_LABEL_VALUES ? a->label : NULL;
    int kind = label != NULL ? query_span_label_kind(label) : 0;
    if (kind != 0) {
        rc = collect_span_ids(st, tenant, &ser, (uint8_t)kind, plan, lim, l, em);
        query_series_free(&ser);
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < ser.n; i++) {
        int yes;
        rc = has_data(st, tenant, ser.token[i], ser.series_id[i], plan, &yes);
        if (rc == 0 && yes)
            rc = add_series_labels(st, tenant, ser.token[i], ser.series_id[i], label, l);
    }
    query_series_free(&ser);
    return rc;
}

/* ---- from the label index ---- */

typedef struct index_ctx {
    storage_t *st;
    const char *tenant;
    const rangeset_t *rs;
    const char *name; /* values of this label; NULL: names */
    strlist_t *l;
} index_ctx_t;

static int in_range_fn(void *ctx, uint64_t token, uint64_t sid)
{
    return query_rangeset_has(ctx, token) ? 1 : 0;
}

/* 1 when some series with name=value lies in rs. */
static int value_in_ranges(index_ctx_t *x, const char *name, const char *value)
{
    int rc = storage_postings(x->st, x->tenant, name, value, in_range_fn, (void *)x->rs);
    return rc;
}

static int value_fn(void *ctx, const char *value)
{
    index_ctx_t *x = ctx;
    if (x->rs->all) return list_push(x->l, value);
    int rc = value_in_ranges(x, x->name, value);
    return rc == 1 ? list_push(x->l, value) : rc;
}

/* For label names: stops the scan of a name's values at the first one in range. */
static int any_value_fn(void *ctx, const char *value)
{
    index_ctx_t *x = ctx;
    int rc = value_in_ranges(x, x->name, value);
    return rc == 1 ? 1 : rc;
}

static int name_fn(void *ctx, const char *name)
{
    index_ctx_t *x = ctx;
    if (x->rs->all) return list_push(x->l, name);
    x->name = name;
    int rc = storage_label_values(x->st, x->tenant, name, any_value_fn, x);
    x->name = NULL;
    return rc == 1 ? list_push(x->l, name) : rc;
}

static int collect_index(storage_t *st, const char *tenant, const query_partial_args_t *a,
                         const rangeset_t *rs, strlist_t *l)
{
    index_ctx_t x = {.st = st, .tenant = tenant, .rs = rs, .l = l};
    if (a->kind == QUERY_KIND_LABEL_NAMES) return storage_label_names(st, tenant, name_fn, &x);
    x.name = a->label;
    return storage_label_values(st, tenant, a->label, value_fn, &x);
}

int query_labels_partial(storage_t *st, const char *tenant, const query_partial_args_t *a,
                         const rangeset_t *rs, const query_limits_t *lim, query_partial_t *out,
                         errmsg_t *em)
{
    if (a->kind == QUERY_KIND_LABEL_VALUES &&
        (a->label == NULL || a->label[0] == 0 || strlen(a->label) > QUERY_LABEL_NAME_MAX))
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "label values: bad label name");
    strlist_t l = {.max_bytes = lim->max_output_bytes};
    int rc;
    if (a->selector != NULL && a->selector[0] != 0) {
        query_plan_t plan;
        query_plan_range(a->from_s, a->until_s, a->min_res, STORAGE_RESOLUTION_COUNT - 1, &plan);
        rc = collect_matching(st, tenant, a, rs, &plan, lim, &l, em);
    } else {
        rc = collect_index(st, tenant, a, rs, &l);
    }
    if (rc == ERR_TOO_LARGE && em->text[0] == 0)
        errmsg_set(em, ERR_LIMIT, "label answer exceeds %zu bytes (query-max-output-bytes)",
                   lim->max_output_bytes);
    else if (rc != 0 && em->text[0] == 0)
        errmsg_set(em, rc, "reading the label index: %s", err_message(rc));
    if (rc == ERR_TOO_LARGE) rc = ERR_LIMIT;
    list_sort_unique(&l);
    out->values = l.v;
    out->nvalues = l.n;
    return rc;
}
