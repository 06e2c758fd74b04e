/* routes_report.c — GET /api/diff: the regression report of two selections
 * (docs/api.md "Regression report").
 *
 * As render-diff (routes_diff.c) but with each side split into time buckets
 * (query_report_plan): every bucket of either side is one ordinary render
 * through the cluster (routes_fanout) asking for the merged, untruncated
 * tree, so each is exact from every node and says when it is partial; one
 * pool job computes the report (query_report_run).
 */
#include <stdlib.h>

#include "node/node_int.h"
#include "query/query.h"

#define SIDES 2
/* Buckets asked at once per request: a node serves at most 64 partials at
 * a time (scatter's max_serving) and refuses more, so a report's up to 60
 * buckets go a few at a time rather than all together. */
#define REPORT_INFLIGHT 8

typedef struct report_ctx {
    query_diff_params_t params; /* strings borrowed from the request until it is answered */
    query_report_plan_t plan;   /* each bucket's parameters point into it */
    const query_limits_t *lim;
} report_ctx_t;

static const char *param_of(const void *req, const char *name)
{
    return http_request_param(req, name);
}

/* The bodies come left buckets first, then right ones. */
static int join_report(void *ctx, const buf_t *body, const int *partial, query_result_t *out,
                       errmsg_t *em)
{
    report_ctx_t *d = ctx;
    const uint8_t *b[SIDES][QUERY_REPORT_MAX_BUCKETS] = {{0}};
    size_t len[SIDES][QUERY_REPORT_MAX_BUCKETS] = {{0}};
    size_t k = 0;
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < d->plan.nbuckets[s]; i++, k++) {
            b[s][i] = body[k].data;
            len[s][i] = body[k].len;
        }
    const uint8_t *const *bodies[SIDES] = {b[0], b[1]};
    const size_t *lens[SIDES] = {len[0], len[1]};
    return query_report_run(&d->plan, d->lim, bodies, lens,
                            partial[0] || partial[1] ? "\"partial\":true" : NULL, out, em);
}

void routes_report_diff(node_t *n, http_exchange_t *ex, const http_request_t *r)
{
    static const char *const names[] = {"left", "right"};
    static const char *const prefix[] = {"left side: ", "right side: "};
    const char *tenant = routes_tenant_of(n, ex, r);
    if (tenant == NULL) return;
    report_ctx_t *d = calloc(1, sizeof *d);
    routes_fanout_query_t *q = calloc(SIDES * QUERY_REPORT_MAX_BUCKETS, sizeof *q);
    if (d == NULL || q == NULL) {
        free(d);
        free(q);
        routes_respond_error(n, ex, ERR_NOMEM, NULL);
        return;
    }
    d->lim = &n->cfg.query;
    query_diff_params_read(&d->params, param_of, r);
    errmsg_t em = {{0}};
    int rc = query_report_plan(&d->params, http_request_param(r, "limit"),
                               http_request_param(r, "search"), &n->cfg.query,
                               clock_wall_ms(&n->clock), &d->plan, &em);
    if (rc != 0) {
        routes_respond_error(n, ex, rc, &em);
        free(d);
        free(q);
        return;
    }
    size_t nq = 0;
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < d->plan.nbuckets[s]; i++)
            q[nq++] = (routes_fanout_query_t){QUERY_KIND_RENDER, d->plan.bucket[s][i].p, (size_t)s};
    routes_fanout_spec_t spec = {names, prefix, SIDES, REPORT_INFLIGHT, join_report, d, free};
    routes_fanout(n, ex, tenant, q, nq, &spec);
    free(q);
}
