/* labels_q.c — /pyroscope/label-names and /pyroscope/label-values.
 *
 * Without `match`, answers come straight from the label index (every series
 * still retained; from/until are validated but do not filter, because the
 * index is not bucketed by time). With match={selector}, only series that
 * match it AND have at least one window in [from, until) count, so the
 * answer follows the time range the way a flame graph does.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query_int.h"

typedef struct strset {
    strmap_t map; /* strings owned by the set (strdup) */
} strset_t;

static int set_add(strset_t *s, const char *v)
{
    size_t before = s->map.n;
    uint32_t idx;
    int rc = strmap_intern(&s->map, v, strlen(v), &idx);
    if (rc != 0 || s->map.n == before) return rc;
    char *copy = strdup(v); /* the map borrowed v; own a copy instead */
    if (copy == NULL) return ERR_NOMEM;
    s->map.strs[idx] = copy;
    return 0;
}

static void set_free(strset_t *s)
{
    for (size_t i = 0; i < s->map.n; i++)
        free((char *)s->map.strs[i]);
    strmap_free(&s->map);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int write_set(strset_t *s, buf_t *out)
{
    /* Sorting the borrowed array breaks the map's slots; it is not used after. */
    if (s->map.n > 1) qsort(s->map.strs, s->map.n, sizeof *s->map.strs, str_cmp);
    int rc = buf_append_byte(out, '[');
    for (size_t i = 0; rc == 0 && i < s->map.n; i++) {
        if (i) rc = buf_append_byte(out, ',');
        if (rc == 0) rc = buf_append_json_string(out, s->map.strs[i], strlen(s->map.strs[i]));
    }
    return rc != 0 ? rc : buf_append_byte(out, ']');
}

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

/* Adds the names (label == NULL) or the values of label of every matching
 * series with data in the range. */
static int collect_matching(storage_t *st, const char *tenant, const query_params_t *p,
                            const query_limits_t *lim, int64_t now_ms, const char *label,
                            strset_t *set, errmsg_t *em)
{
    query_selector_t *sel;
    int64_t from, until;
    int rc = query_selector_parse("match", p->match, strlen(p->match), &sel, em);
    if (rc != 0) return rc;
    query_series_t ser;
    query_plan_t plan;
    rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc == 0) {
        query_plan_make(from, until, now_ms, lim, &plan);
        rc = query_series_select(st, tenant, sel, lim, &ser, em);
    }
    query_selector_free(sel);
    if (rc != 0) return rc;
    for (size_t i = 0; rc == 0 && i < ser.n; i++) {
        int yes;
        labels_t *l = NULL;
        rc = has_data(st, tenant, ser.token[i], ser.series_id[i], &plan, &yes);
        if (rc != 0 || !yes) continue;
        rc = storage_series_labels(st, tenant, ser.token[i], ser.series_id[i], &l);
        if (rc == ERR_NOT_FOUND) {
            rc = 0;
            continue;
        }
        for (size_t k = 0; rc == 0 && k < labels_count(l); k++) {
            if (label == NULL)
                rc = set_add(set, labels_name(l, k));
            else if (strcmp(labels_name(l, k), label) == 0)
                rc = set_add(set, labels_value(l, k));
        }
        labels_free(l);
    }
    query_series_free(&ser);
    return rc;
}

typedef struct arr_ctx {
    buf_t *out;
    int first;
} arr_ctx_t;

static int arr_fn(void *ctx, const char *s)
{
    arr_ctx_t *a = ctx;
    int rc = a->first ? 0 : buf_append_byte(a->out, ',');
    a->first = 0;
    return rc != 0 ? rc : buf_append_json_string(a->out, s, strlen(s));
}

static int answer(storage_t *st, const char *tenant, const query_params_t *p,
                  const query_limits_t *lim, int64_t now_ms, const char *label, query_result_t *out,
                  errmsg_t *em)
{
    buf_free(&out->body);
    buf_init(&out->body, lim->max_output_bytes);
    out->content_type = "application/json";
    int64_t from, until;
    int rc;
    if (p->match != NULL && p->match[0] != 0) {
        strset_t set;
        strmap_init(&set.map);
        rc = collect_matching(st, tenant, p, lim, now_ms, label, &set, em);
        if (rc == 0) rc = out_err(write_set(&set, &out->body), &out->body, em);
        set_free(&set);
        return rc;
    }
    rc = query_time_range(p, now_ms, &from, &until, em);
    if (rc != 0) return rc;
    arr_ctx_t a = {.out = &out->body, .first = 1};
    rc = buf_append_byte(&out->body, '[');
    if (rc == 0)
        rc = label ? storage_label_values(st, tenant, label, arr_fn, &a)
                   : storage_label_names(st, tenant, arr_fn, &a);
    if (rc == 0) rc = buf_append_byte(&out->body, ']');
    return out_err(rc, &out->body, em);
}

int query_label_names(storage_t *st, const char *tenant, const query_params_t *p,
                      const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    return answer(st, tenant, p, lim, now_ms, NULL, out, em);
}

int query_label_values(storage_t *st, const char *tenant, const query_params_t *p,
                       const query_limits_t *lim, int64_t now_ms, query_result_t *out, errmsg_t *em)
{
    if (p->label == NULL || p->label[0] == 0)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'label': required");
    if (strlen(p->label) > QUERY_LABEL_NAME_MAX)
        return errmsg_set(em, ERR_INVALID_ARGUMENT, "parameter 'label': longer than %d bytes",
                          QUERY_LABEL_NAME_MAX);
    return answer(st, tenant, p, lim, now_ms, p->label, out, em);
}
