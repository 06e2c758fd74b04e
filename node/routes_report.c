/* routes_report.c — GET /api/diff: the regression report of two selections
 * (docs/api.md "Regression report").
 *
 * As render-diff (routes_diff.c) but with each side split into time buckets
 * (query_report_plan): every bucket of either side is one ordinary render
 * through the cluster (routes_fanout) asking for the merged, untruncated
 * tree, so each is exact from every node and says when it is partial; one
 * pool job computes the report (query_report_run).
 *
 * Every answer names its report (reportId: a hash of its exact inputs,
 * query_report_key), and a complete report is kept in the node's report
 * cache (report-cache-bytes). A request naming the id of its own inputs
 * (reportId equal to the one they hash to now) that finds it there is
 * answered from it by a short pool job, with no render: a search within a
 * report lists its rows. Any other request (no reportId, a stale or foreign
 * one, an evicted report) computes the report as without the cache.
 */
#include <stdlib.h>
#include <string.h>

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
    query_report_cache_t *cache;
    query_report_charge_t charge; /* the report's working memory: query-memory-bytes */
    size_t held;                  /* its answer, taken until the request is freed (sent) */
    buf_t key;                    /* the report's exact inputs (query_report_key) */
    char id[QUERY_REPORT_ID_LEN + 1];
} report_ctx_t;

static void report_ctx_free(void *ctx)
{
    report_ctx_t *d = ctx;
    if (d->held > 0) cluster_query_release(d->charge.ctx, d->held); /* the answer is sent */
    buf_free(&d->key);
    free(d);
}

/* The join's decoded buckets count in query-memory-bytes (pool thread). */
static int report_take(void *cluster, size_t n)
{
    return cluster_query_try_hold(cluster, n);
}

static void report_give(void *cluster, size_t n)
{
    cluster_query_release(cluster, n);
}

static const char *param_of(const void *req, const char *name)
{
    return http_request_param(req, name);
}

/* The bodies come left buckets first, then right ones. */
static int join_report(void *ctx, query_result_t *ans, const int *partial, query_result_t *out,
                       errmsg_t *em)
{
    report_ctx_t *d = ctx;
    const uint8_t *b[SIDES][QUERY_REPORT_MAX_BUCKETS] = {{0}};
    size_t len[SIDES][QUERY_REPORT_MAX_BUCKETS] = {{0}};
    size_t k = 0;
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < d->plan.nbuckets[s]; i++, k++) {
            b[s][i] = ans[k].body.data;
            len[s][i] = ans[k].body.len;
        }
    const uint8_t *const *bodies[SIDES] = {b[0], b[1]};
    const size_t *lens[SIDES] = {len[0], len[1]};
    int partial_any = partial[0] || partial[1];
    query_report_t keep = {0};
    size_t kept = 0; /* the kept report's bytes, taken until the cache takes them over */
    int rc = query_report_run(&d->plan, d->lim, bodies, lens, d->id,
                              partial_any ? "\"partial\":true" : NULL, &d->charge, &d->held,
                              partial_any ? NULL : &keep, &kept, out, em);
    int64_t sec[SIDES] = {d->plan.until_s[0] - d->plan.from_s[0],
                          d->plan.until_s[1] - d->plan.from_s[1]};
    int put = 0; /* a partial report is never kept; not kept: no harm */
    if (rc == 0 && keep.rows != NULL)
        put = query_report_cache_put(d->cache, &d->key, &keep, d->plan.type, sec, kept);
    query_report_free(&keep);
    if (put != 1 && kept > 0) d->charge.give(d->charge.ctx, kept);
    return rc;
}

/* ---------- an answer from the cache ---------- */

typedef struct cached_job {
    node_t *node;
    http_exchange_t *ex;
    const query_report_cached_t *entry;
    report_ctx_t *d;
    workq_job_t work;
    int rc;
    errmsg_t em;
    query_result_t result;
} cached_job_t;

static void cached_work(workq_job_t *w)
{
    cached_job_t *j = w->data;
    report_ctx_t *d = j->d;
    j->rc = query_report_cached_encode(j->entry, d->plan.limit, d->plan.search, d->id, d->lim,
                                       &d->charge, &d->held, &j->result, &j->em);
}

static void cached_free(cached_job_t *j)
{
    query_report_cache_release(j->node->report_cache, j->entry);
    query_result_free(&j->result);
    report_ctx_free(j->d);
    free(j);
}

static void cached_done(workq_job_t *w, int status)
{
    cached_job_t *j = w->data;
    if (status != 0 && j->rc == 0)
        j->rc = errmsg_set(&j->em, ERR_UNAVAILABLE, "request cancelled: the node is stopping");
    if (j->rc != 0) {
        routes_respond_error(j->node, j->ex, routes_query_error(j->rc), &j->em);
    } else {
        j->node->metrics.queries++;
        http_response_t resp = {
            .status = 200, .content_type = j->result.content_type, .body = j->result.body};
        buf_init(&j->result.body, 0);
        http_respond(j->ex, &resp);
    }
    cached_free(j);
}

/* Answers from the cache when the request names its own report and the
 * cache holds it: 1 when answered (d taken), 0 when it must be computed. */
static int answer_cached(node_t *n, http_exchange_t *ex, const http_request_t *r, report_ctx_t *d)
{
    const char *want = http_request_param(r, "reportId");
    if (want == NULL || strcmp(want, d->id) != 0) return 0;
    const query_report_cached_t *e = query_report_cache_get(n->report_cache, &d->key);
    if (e == NULL) return 0;
    cached_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        query_report_cache_release(n->report_cache, e);
        return 0;
    }
    *j = (cached_job_t){.node = n, .ex = ex, .entry = e, .d = d};
    query_result_init(&j->result);
    j->work.data = j;
    if (workq_submit(n->workq, WORKQ_QUERY, &j->work, cached_work, cached_done) != 0) {
        j->d = NULL; /* the caller keeps d and computes */
        query_report_cache_release(n->report_cache, e);
        query_result_free(&j->result);
        free(j);
        return 0;
    }
    return 1;
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
    d->cache = n->report_cache;
    d->charge = (query_report_charge_t){report_take, report_give, n->cluster};
    buf_init(&d->key, BUF_UNLIMITED); /* bounded: the queries, their ranges, 60 buckets */
    query_diff_params_read(&d->params, param_of, r);
    errmsg_t em = {{0}};
    int rc = query_report_plan(&d->params, http_request_param(r, "limit"),
                               http_request_param(r, "search"), &n->cfg.query,
                               clock_wall_ms(&n->clock), &d->plan, &em);
    if (rc == 0 && query_report_key(&d->plan, tenant, &d->key, d->id) != 0)
        rc = errmsg_set(&em, ERR_NOMEM, "out of memory");
    if (rc != 0) {
        routes_respond_error(n, ex, rc, &em);
        report_ctx_free(d);
        free(q);
        return;
    }
    if (answer_cached(n, ex, r, d)) {
        free(q);
        return;
    }
    size_t nq = 0;
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < d->plan.nbuckets[s]; i++)
            q[nq++] = (routes_fanout_query_t){QUERY_KIND_RENDER, d->plan.bucket[s][i].p, (size_t)s};
    routes_fanout_spec_t spec = {names, prefix, SIDES, REPORT_INFLIGHT, join_report, d,
                                 report_ctx_free,
                                 /* the report as a whole */
                                 n->cfg.report_timeout_ms, "report-timeout"};
    routes_fanout(n, ex, tenant, q, nq, &spec);
    free(q);
}
