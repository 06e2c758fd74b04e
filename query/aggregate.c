/* aggregate.c — answering a whole-service selector from the service
 * aggregates storage keeps per placement token (docs/query.md, "Service
 * aggregates"), instead of reading one block per series and window.
 *
 * Used only when it selects exactly the same series: the selector's matchers
 * are all equalities on service_name (required, non-empty), on
 * __profile_type__ or __name__ agreeing with the profile type, and at most
 * one on pyroscope_spy. Those are the labels of an aggregate's identity, so
 * the union of the aggregates of (service, type[, spy]) over the service's
 * tokens in the partial's ranges, with each aggregate's anchor series,
 * holds exactly the selected series' sums, at the same windows the plan
 * reads. Anything else (another label, a regex, a
 * negation, spans) takes the per-series path.
 */
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "query/query_int.h"

/* Distinct pyroscope_spy values of a tenant past which the per-series path
 * is used (each token is probed once per value). */
#define AGG_MAX_SPIES 16

typedef struct agg_sel {
    const char *service, *type, *spy; /* spy NULL: any */
} agg_sel_t;

/* Whether value names the type's __name__ (its part before the first ':'). */
static int is_type_name(const char *type, const char *value)
{
    size_t n = strlen(value);
    return strncmp(type, value, n) == 0 && type[n] == ':';
}

static int eligible(const query_selector_t *sel, agg_sel_t *a)
{
    memset(a, 0, sizeof *a);
    a->type = query_selector_type(sel);
    if (a->type == NULL) return 0;
    for (size_t i = 0; i < query_selector_count(sel); i++) {
        const char *name, *value;
        query_match_op_t op;
        query_selector_matcher(sel, i, &name, &op, &value);
        if (op != QUERY_MATCH_EQ || value == NULL || value[0] == 0) return 0;
        if (strcmp(name, LABEL_SERVICE_NAME) == 0) {
            if (a->service != NULL && strcmp(a->service, value) != 0) return 0;
            a->service = value;
        } else if (strcmp(name, STORAGE_LABEL_SPY) == 0) {
            if (a->spy != NULL && strcmp(a->spy, value) != 0) return 0;
            a->spy = value;
        } else if (strcmp(name, LABEL_PROFILE_TYPE) == 0) {
            if (strcmp(value, a->type) != 0) return 0;
        } else if (strcmp(name, LABEL_NAME) != 0 || !is_type_name(a->type, value)) {
            return 0;
        }
    }
    return a->service != NULL;
}

typedef struct strs {
    char *v[AGG_MAX_SPIES + 1];
    size_t n;
} strs_t;

static int spy_fn(void *ctx, const char *value)
{
    strs_t *s = ctx;
    if (s->n == AGG_MAX_SPIES) return ERR_LIMIT;
    return (s->v[s->n++] = strdup(value)) == NULL ? ERR_NOMEM : 0;
}

typedef struct tokens {
    const rangeset_t *rs;
    uint64_t *v;
    size_t n, cap;
} tokens_t;

static int token_fn(void *ctx, uint64_t token)
{
    tokens_t *t = ctx;
    if (!query_rangeset_has(t->rs, token)) return 0;
    if (GROW_FROM(t->v, t->cap, t->n + 1, GROW_UNLIMITED, 16) != 0) return ERR_NOMEM;
    t->v[t->n++] = token;
    return 0;
}

static int push(query_series_t *out, size_t *cap, uint64_t token, uint64_t id, int aggregate)
{
    size_t c1 = *cap, c2 = *cap, c3 = *cap;
    if (GROW_FROM(out->token, c1, out->n + 1, GROW_UNLIMITED, 16) != 0 ||
        GROW_FROM(out->series_id, c2, out->n + 1, GROW_UNLIMITED, 16) != 0 ||
        GROW_FROM(out->aggregate, c3, out->n + 1, GROW_UNLIMITED, 16) != 0)
        return ERR_NOMEM;
    *cap = c1;
    out->token[out->n] = token;
    out->aggregate[out->n] = (uint8_t)aggregate;
    out->series_id[out->n++] = id;
    return 0;
}

/* The aggregate id of (token, spy) and its anchor series (which the
 * aggregate does not hold), each when it holds a window: 1 when any does,
 * 0 when none, or an error. */
static int push_aggregate(storage_t *st, storage_probe_t *probe, const char *tenant, uint64_t token,
                          uint64_t id, query_series_t *out, size_t *cap)
{
    uint64_t ids[1 + STORAGE_AGGREGATE_ANCHORS_MAX] = {id};
    int rc =
        storage_aggregate_anchors(st, tenant, token, id, ids + 1, STORAGE_AGGREGATE_ANCHORS_MAX);
    int n = rc >= 0 ? 1 + rc : 0, any = 0;
    for (int i = 0; i < n && rc >= 0; i++) {
        rc = storage_probe_has_windows(probe, tenant, token, ids[i]);
        if (rc > 0) {
            any = 1;
            rc = push(out, cap, token, ids[i], i == 0);
        }
    }
    return rc < 0 ? rc : any;
}

/* The aggregates of the service's tokens that hold any window, one per
 * (token, spy), with their anchors; spy_name as the per-series path sets it
 * (every member has the same non-empty pyroscope_spy). */
static int collect(storage_t *st, const char *tenant, const agg_sel_t *a, const tokens_t *tk,
                   const strs_t *spies, query_series_t *out)
{
    size_t cap = 0;
    const char *spy = NULL;
    int mixed = 0;
    storage_probe_t *probe = NULL; /* one iterator for every window probe */
    int rc = storage_probe_open(st, &probe);
    for (size_t i = 0; i < tk->n && rc == 0; i++)
        for (size_t k = 0; k < spies->n && rc == 0; k++) {
            uint64_t id = storage_aggregate_id(a->service, a->type, spies->v[k]);
            rc = push_aggregate(st, probe, tenant, tk->v[i], id, out, &cap);
            if (rc <= 0) continue;
            rc = 0;
            if (spies->v[k][0] == 0 || (spy != NULL && strcmp(spy, spies->v[k]) != 0)) mixed = 1;
            spy = spies->v[k];
        }
    storage_probe_close(probe);
    if (rc == 0 && !mixed && spy != NULL && (out->spy_name = strdup(spy)) == NULL) rc = ERR_NOMEM;
    return rc;
}

int query_aggregate_select(storage_t *st, const char *tenant, const query_selector_t *sel,
                           const rangeset_t *rs, query_series_t *out, errmsg_t *em)
{
    memset(out, 0, sizeof *out);
    agg_sel_t a;
    if (!eligible(sel, &a)) return 0;
    strs_t spies = {.n = 0};
    int rc = 0;
    if (a.spy != NULL)
        rc = spy_fn(&spies, a.spy);
    else if ((rc = spy_fn(&spies, "")) == 0) /* the members without the label */
        rc = storage_label_values(st, tenant, STORAGE_LABEL_SPY, spy_fn, &spies);
    tokens_t tk = {.rs = rs};
    if (rc == 0)
        rc = storage_posting_tokens(st, tenant, LABEL_SERVICE_NAME, a.service, token_fn, &tk);
    if (rc == 0) rc = collect(st, tenant, &a, &tk, &spies, out);
    for (size_t i = 0; i < spies.n; i++)
        free(spies.v[i]);
    free(tk.v);
    if (rc != 0) query_series_free(out);
    if (rc == ERR_LIMIT) return 0; /* too many spies: per series */
    if (rc != 0) return errmsg_set(em, rc, "reading service aggregates: %s", err_message(rc));
    return 1;
}
