/* series.c — resolving a selector to series through the label index.
 *
 * The postings of the first equality matcher (or of __profile_type__, or of
 * every profile type when the selector names neither) give the candidate set;
 * the postings of every further equality matcher only filter it, so memory is
 * bounded by one postings list. Each remaining candidate's labels are then
 * loaded and every matcher (regexes too) applied. A partial query keeps only
 * candidates whose token lies in its ranges, before any label is loaded.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "query/query_int.h"

/* Candidates one postings list may contribute, per allowed series. */
#define CANDIDATES_PER_SERIES 64

typedef struct cand {
    uint64_t token, sid;
    uint8_t hits; /* postings lists seen in this filtering round */
} cand_t;

typedef struct cand_set {
    cand_t *v;
    size_t n, cap, max;
    const rangeset_t *rs; /* only series with a token in these ranges count */
} cand_set_t;

static int cand_cmp(const void *a, const void *b);

static void cand_sort(cand_set_t *c)
{
    if (c->n > 1) qsort(c->v, c->n, sizeof *c->v, cand_cmp);
}

static int cand_cmp(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->token != y->token) return x->token < y->token ? -1 : 1;
    return x->sid < y->sid ? -1 : x->sid > y->sid;
}

static int collect_fn(void *ctx, uint64_t token, uint64_t sid)
{
    cand_set_t *c = ctx;
    if (!query_rangeset_has(c->rs, token)) return 0;
    if (c->n == c->max) return ERR_LIMIT;
    if (GROW_FROM(c->v, c->cap, c->n + 1, GROW_UNLIMITED, 256) != 0) return ERR_NOMEM;
    c->v[c->n++] = (cand_t){.token = token, .sid = sid};
    return 0;
}

static int mark_fn(void *ctx, uint64_t token, uint64_t sid)
{
    cand_set_t *c = ctx;
    cand_t key = {.token = token, .sid = sid};
    cand_t *hit = c->n ? bsearch(&key, c->v, c->n, sizeof key, cand_cmp) : NULL;
    if (hit != NULL) hit->hits = 1;
    return 0;
}

/* Keeps only the candidates marked in this round. */
static void keep_marked(cand_set_t *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].hits) c->v[k] = c->v[i], c->v[k++].hits = 0;
    c->n = k;
}

static int collect_all_types(storage_t *st, const char *tenant, cand_set_t *c);

typedef struct types_ctx {
    storage_t *st;
    const char *tenant;
    cand_set_t *c;
} types_ctx_t;

static int type_fn(void *ctx, const char *type)
{
    types_ctx_t *t = ctx;
    return storage_postings(t->st, t->tenant, LABEL_PROFILE_TYPE, type, collect_fn, t->c);
}

static int collect_all_types(storage_t *st, const char *tenant, cand_set_t *c)
{
    types_ctx_t t = {.st = st, .tenant = tenant, .c = c};
    return storage_label_values(st, tenant, LABEL_PROFILE_TYPE, type_fn, &t);
}

/* Builds the candidate set from postings; returns 0 or an error. */
static int candidates(storage_t *st, const char *tenant, const query_selector_t *sel, cand_set_t *c,
                      errmsg_t *em)
{
    int first = 1, rc = 0;
    const char *type = query_selector_type(sel);
    size_t n = query_selector_count(sel);
    for (size_t i = 0; i <= n && rc == 0; i++) {
        const char *name = LABEL_PROFILE_TYPE, *value = type;
        query_match_op_t op = QUERY_MATCH_EQ;
        if (i < n) query_selector_matcher(sel, i, &name, &op, &value);
        if (op != QUERY_MATCH_EQ || value == NULL || value[0] == 0) continue;
        if (first) {
            rc = storage_postings(st, tenant, name, value, collect_fn, c);
            cand_sort(c);
            first = 0;
        } else {
            rc = storage_postings(st, tenant, name, value, mark_fn, c);
            keep_marked(c);
        }
    }
    if (first && rc == 0) {
        rc = collect_all_types(st, tenant, c);
        cand_sort(c);
    }
    if (rc == ERR_LIMIT)
        return errmsg_set(em, ERR_LIMIT,
                          "selector matches more than %zu candidate series in "
                          "the label index; add an equality matcher",
                          c->max);
    return rc;
}

static int series_push(query_series_t *out, size_t *cap, uint64_t token, uint64_t sid)
{
    size_t c1 = *cap, c2 = *cap; /* parallel arrays: both grow alike */
    if (GROW_FROM(out->token, c1, out->n + 1, GROW_UNLIMITED, 64) != 0 ||
        GROW_FROM(out->series_id, c2, out->n + 1, GROW_UNLIMITED, 64) != 0)
        return ERR_NOMEM;
    *cap = c1;
    out->token[out->n] = token;
    out->series_id[out->n++] = sid;
    return 0;
}

/* Tracks the pyroscope_spy label: kept only while every series agrees. */
static void note_spy(query_series_t *out, const labels_t *l, int *spy_mixed)
{
    const char *spy = labels_get(l, "pyroscope_spy");
    if (*spy_mixed) return;
    if (spy == NULL || (out->spy_name != NULL && strcmp(out->spy_name, spy) != 0) ||
        (out->n > 1 && out->spy_name == NULL)) {
        *spy_mixed = 1;
        free(out->spy_name);
        out->spy_name = NULL;
    } else if (out->spy_name == NULL) {
        out->spy_name = strdup(spy);
    }
}

static int filter_labels(storage_t *st, const char *tenant, const query_selector_t *sel,
                         const cand_set_t *c, const query_limits_t *lim, query_series_t *out,
                         errmsg_t *em)
{
    size_t cap = 0;
    int spy_mixed = 0;
    for (size_t i = 0; i < c->n; i++) {
        labels_t *l = NULL;
        int rc = storage_series_labels(st, tenant, c->v[i].token, c->v[i].sid, &l);
        if (rc == ERR_NOT_FOUND) continue; /* postings without a series entry: nothing to read */
        if (rc != 0) return errmsg_set(em, rc, "reading series labels: %s", err_message(rc));
        const char *type = query_selector_type(sel);
        const char *have = labels_get(l, LABEL_PROFILE_TYPE);
        int ok = query_selector_matches(sel, l) &&
                 (type == NULL || (have != NULL && strcmp(have, type) == 0));
        if (ok && out->n == lim->max_series) {
            labels_free(l);
            return errmsg_set(em, ERR_LIMIT,
                              "query selects more than %zu series (query-max-series); "
                              "narrow the selector",
                              lim->max_series);
        }
        if (ok) rc = series_push(out, &cap, c->v[i].token, c->v[i].sid);
        if (ok && rc == 0) note_spy(out, l, &spy_mixed);
        labels_free(l);
        if (rc != 0) return rc;
    }
    return 0;
}

int query_series_select(storage_t *st, const char *tenant, const query_selector_t *sel,
                        const query_limits_t *lim, query_series_t *out, errmsg_t *em)
{
    rangeset_t all = {.all = 1};
    return query_series_select_in(st, tenant, sel, &all, lim, out, em);
}

int query_series_select_in(storage_t *st, const char *tenant, const query_selector_t *sel,
                           const rangeset_t *rs, const query_limits_t *lim, query_series_t *out,
                           errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    cand_set_t c = {.max = lim->max_series * CANDIDATES_PER_SERIES, .rs = rs};
    if (c.max < lim->max_series) c.max = SIZE_MAX;
    int rc = candidates(st, tenant, sel, &c, em);
    if (rc == 0) rc = filter_labels(st, tenant, sel, &c, lim, out, em);
    free(c.v);
    if (rc != 0) query_series_free(out);
    return rc;
}

void query_series_free(query_series_t *s)
{
    free(s->token);
    free(s->series_id);
    free(s->spy_name);
    free(s->aggregate);
    memset(s, 0, sizeof *s);
}

int query_series_select_text(storage_t *st, const char *tenant, const char *param, const char *text,
                             const rangeset_t *rs, const query_limits_t *lim, query_series_t *out,
                             errmsg_t *em)
{
    query_selector_t *sel;
    int rc = query_selector_parse(param, text, strlen(text), &sel, em);
    if (rc != 0) return rc;
    rc = query_series_select_in(st, tenant, sel, rs, lim, out, em);
    query_selector_free(sel);
    return rc;
}
